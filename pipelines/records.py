"""Reading a night's reports record by record, turning bad records into error rows.

Unlike :mod:`kinpath.kg.reports` (which stops at the first problem, right for training
data a person prepared), a batch job must score every good report and account
for every bad one. :func:`read_records` yields one :class:`Record` per input
record, in input order, numbered from 1; a record that cannot be read carries
an error kind and a detail that names where it is (line, file) but never
quotes its text:

=================  ==========================================================
``malformed_row``  a CSV row with the wrong number of fields (no id is
                   reported: which field holds it is unknown); a CSV parser
                   error (a quote left open, a stray quote), after which the
                   rest of the file is this one row, since no later line can
                   be trusted to start a record; a JSON line that does not
                   parse or nests too deep
``undecodable``    bytes that are not UTF-8
``unreadable``     a ``.txt`` entry that is not a readable regular file (a
                   folder, a dangling link, a FIFO) or a link that leads out
                   of the folder (never followed)
``missing_id``     an empty id
``duplicate_id``   an id already seen earlier in this input (the first is kept)
``empty_text``     empty or white-space text
=================  ==========================================================

Inputs: CSV (RFC 4180, quoted newlines allowed), JSONL, parquet, or a folder
of ``.txt`` files (id = file name without suffix; subfolders are not read, and
the log says how many were passed over). A byte-order mark at the start of a
file (Excel's UTF-8 export) is dropped.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from kinpath.common import InputError
from kinpath.kg.reports import txt_entries

log = logging.getLogger(__name__)

csv.field_size_limit(sys.maxsize)  # a long report is a big field, not a malformed one
BOM = "\ufeff"


@dataclass(frozen=True)
class Record:
    number: int
    report_id: str
    text: str
    error: str = ""  # kind, empty when the record is good
    detail: str = ""


def _undecodable(s: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in s)


def _clean_id(s: str) -> str:
    return (
        s.encode("utf-8", "replace").decode("utf-8", "replace").strip()
        if _undecodable(s)
        else s.strip()
    )


def _raw_records(path: Path, id_col: str, text_col: str) -> Iterator[Record]:
    if path.is_dir():
        yield from _txt_records(path)
        return
    suffix = path.suffix.lower()
    if suffix == ".csv":
        yield from _csv_records(path, id_col, text_col)
    elif suffix in (".jsonl", ".ndjson"):
        yield from _jsonl_records(path, id_col, text_col)
    elif suffix == ".parquet":
        pf = pq.ParquetFile(path)
        names = pf.schema_arrow.names
        for col in (id_col, text_col):
            if col not in names:
                raise InputError(f"no column {col!r} in the parquet schema", path=path)
        n = 0
        for batch in pf.iter_batches(columns=[id_col, text_col], batch_size=10_000):
            d = batch.to_pydict()
            for pid, body in zip(d[id_col], d[text_col], strict=True):
                n += 1
                yield Record(
                    n, "" if pid is None else str(pid).strip(), "" if body is None else str(body)
                )
    else:
        raise InputError(
            f"unknown input format {suffix!r}; expected .csv, .jsonl, .parquet or a folder",
            path=path,
        )


def _txt_records(folder: Path) -> Iterator[Record]:
    subfolders = [d.name for d in folder.iterdir() if d.is_dir() and d.suffix.lower() != ".txt"]
    if subfolders:
        log.warning("%s: %d subfolder(s) not read (only the folder's own .txt files are)",
                    folder, len(subfolders))  # fmt: skip
    for n, e in enumerate(txt_entries(folder), 1):
        stem = Path(e.name).stem
        if e.data is None:
            yield Record(n, stem, "", "unreadable", f"{e.name}: {e.problem}")
            continue
        try:
            yield Record(n, stem, e.data.decode("utf-8").removeprefix(BOM))
        except UnicodeDecodeError as err:
            yield Record(n, stem, "", "undecodable", f"{e.name}: byte {err.start} is not UTF-8")


def _csv_records(path: Path, id_col: str, text_col: str) -> Iterator[Record]:
    """CSV rows. After a parser error (a quote that never closes, a stray quote) no later
    line can be trusted to start a record: a report's own lines would be read as records,
    pieces of its text as ids. The rest of the file is then one error row."""
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
        reader = csv.reader(fh, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise InputError(f"the header is not CSV ({e})", path=path, line=1) from None
        for col in (id_col, text_col):
            if col not in header:
                raise InputError(f"no column {col!r} in the CSV header", path=path, line=1)
        i, t, width = header.index(id_col), header.index(text_col), len(header)
        n = 0
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                problem = (
                    "a quote opened here is never closed"
                    if "unexpected end of data" in str(e)
                    else str(e)
                )
                yield Record(n + 1, "", "", "malformed_row",
                             f"line {start}: {problem}; the rest of the file, from line {start} "
                             "on, is not read (no later record boundary can be trusted)")  # fmt: skip
                return
            if not row:
                continue  # a blank line is no record
            n += 1
            if len(row) != width:  # which field is the id is unknown: none is reported
                yield Record(
                    n, "", "", "malformed_row", f"line {start}: {len(row)} fields, expected {width}"
                )
            elif _undecodable(row[t]) or _undecodable(row[i]):
                yield Record(n, _clean_id(row[i]), "", "undecodable",
                             f"line {start}: bytes are not UTF-8")  # fmt: skip
            else:
                yield Record(n, row[i].strip(), row[t])


def _jsonl_records(path: Path, id_col: str, text_col: str) -> Iterator[Record]:
    with open(path, "rb") as fh:
        n = 0
        for lineno, raw in enumerate(fh, 1):
            if lineno == 1:
                raw = raw.removeprefix(BOM.encode())
            if not raw.strip():
                continue
            n += 1
            try:
                obj = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                yield Record(n, "", "", "undecodable", f"line {lineno}: bytes are not UTF-8")
                continue
            except json.JSONDecodeError as e:
                yield Record(n, "", "", "malformed_row", f"line {lineno}: not JSON ({e.msg})")
                continue
            except RecursionError:
                yield Record(n, "", "", "malformed_row", f"line {lineno}: JSON nested too deep")
                continue
            if not isinstance(obj, dict):
                yield Record(n, "", "", "malformed_row", f"line {lineno}: not a JSON object")
                continue
            jid, body = obj.get(id_col), obj.get(text_col)
            if isinstance(body, dict | list):
                yield Record(n, "" if jid is None else str(jid).strip(), "", "malformed_row",
                             f"line {lineno}: {text_col!r} is not a string")  # fmt: skip
                continue
            yield Record(
                n, "" if jid is None else str(jid).strip(), "" if body is None else str(body)
            )


def read_records(
    path: str | Path, id_col: str = "report_id", text_col: str = "text"
) -> Iterator[Record]:
    """Every record of the input, good or bad, in order; ids checked for presence and duplicates."""
    path = Path(path)
    if not path.exists():
        raise InputError("no such file or folder", path=path)
    yield from checked(_raw_records(path, id_col, text_col), id_col)


def checked(records: Iterable[Record], id_col: str = "report_id") -> Iterator[Record]:
    """The records with the checks every reader of reports makes, the batch job's and the
    served model's alike: an empty id, an id seen before, an empty text are errors."""
    seen: set[str] = set()
    for r in records:
        if r.error:
            yield r
        elif not r.report_id:
            yield Record(r.number, "", "", "missing_id", f"record {r.number}: empty {id_col}")
        elif r.report_id in seen:
            yield Record(
                r.number,
                r.report_id,
                "",
                "duplicate_id",
                f"record {r.number}: id seen earlier in this input",
            )
        elif not r.text.strip():
            seen.add(r.report_id)
            yield Record(r.number, r.report_id, "", "empty_text", f"record {r.number}: empty text")
        else:
            seen.add(r.report_id)
            yield r


def frame_records(
    df: pd.DataFrame, id_col: str = "report_id", text_col: str = "text"
) -> list[Record]:
    """The rows of an in-memory table (the served model's input) as records, checked."""
    out = []
    for n, (rid, text) in enumerate(zip(df[id_col], df[text_col], strict=True), 1):
        rid = "" if _missing(rid) else str(rid).strip()
        if _missing(text):
            out.append(Record(n, rid, ""))
        elif not isinstance(text, str):
            out.append(
                Record(n, rid, "", "malformed_row", f"record {n}: {text_col!r} is not a string")
            )
        else:
            out.append(Record(n, rid, text))
    return list(checked(out, id_col))


def _missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA
