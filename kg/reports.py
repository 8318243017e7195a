"""Reading report tables: one reader, a strict mode for training and a lenient one for batches.

A report table has an id column and a text column (names configurable) and,
for training, task columns where an empty cell is a missing label. Accepted
inputs:

* ``.csv`` (UTF-8, RFC 4180 quoting: report text may hold newlines and commas),
* ``.parquet``,
* ``.jsonl`` / ``.ndjson`` (one JSON object a line),
* a folder of ``.txt`` files, one report each, id = the file name without
  suffix (subfolders are not read; the log says how many were passed over).

A byte-order mark at the start of a file (Excel's UTF-8 export) is dropped.

:func:`read_records` is the one format dispatch. It yields one :class:`Record`
per input record, in input order, numbered from 1; a record that cannot be
read carries an error kind and a detail that names where it is (line, file)
but never quotes its text:

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

Lenient (a night's batch, :func:`read_records`): every record comes out, good
or bad, so the job scores every good report and accounts for every bad one.
Strict (training data a person prepared, :func:`read_reports`): the first bad
record stops the reading with an :class:`~kinpath.common.InputError` naming the
file, the line and the problem; the good records come as
:class:`pandas.DataFrame` chunks of string columns (missing as ``""``), so a
table never needs to fit in memory at once. Several tables (a list of paths)
read as one, in the given order, each row with a ``source`` column that names
its table (:func:`source_names`), so that splits and results stay per table.

Linking (``kinpath kg link``) reads corpora before the embedding stage exists,
which is why the reader lives here, at the start of the chain.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import re
import stat
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from kinpath.common import InputError
from kinpath.kg.graph import file_sha256

log = logging.getLogger(__name__)

csv.field_size_limit(sys.maxsize)  # a long report is a big field, not a malformed one
FORMATS = (".csv", ".parquet", ".jsonl", ".ndjson")
SOURCE = "source"  # the column that names a row's table when several are read as one
BOM = "\ufeff"

Tables = str | Path | Sequence[str | Path]  # one report table, or several read as one


@dataclass(frozen=True)
class Record:
    """One input record: its id and text, or the error that kept them from being read."""

    number: int
    report_id: str
    text: str
    error: str = ""  # kind, empty when the record is good
    detail: str = ""
    # every column of the record as read (labels, split; id and text unstripped), as strings,
    # in the file's order; read only when asked for
    columns: Mapping[str, str] = field(default_factory=dict)


# --- tables and their checksums ------------------------------------------------------------


def table_paths(tables: Tables) -> list[Path]:
    """The tables as a list of paths (a single path is a list of one)."""
    if isinstance(tables, str | Path):
        return [Path(tables)]
    paths = [Path(t) for t in tables]
    if not paths:
        raise InputError("no report table given")
    return paths


def source_names(tables: Tables) -> list[str]:
    """A short, distinct name per table: the file's stem, or its folder's name where
    stems repeat (``tcga-reports/reports.csv`` and ``tcga-ocr/reports.csv`` are
    ``tcga-reports`` and ``tcga-ocr``)."""
    paths = table_paths(tables)
    names = [p.stem for p in paths]
    if len(set(names)) < len(names):
        names = [p.resolve().parent.name if p.is_file() else p.name for p in paths]
    if len(set(names)) < len(names):
        names = [str(p) for p in paths]
    return names


def table_sha256(path: Tables) -> str:
    """Checksum of a report table: the file's bytes, or each .txt entry's name and what the
    reader gets from it (:func:`txt_entries`: its bytes, or why it cannot be read).

    Of several tables: the checksum of their checksums, in order."""
    paths = table_paths(path)
    if len(paths) > 1:
        return hashlib.sha256("".join(table_sha256(p) for p in paths).encode()).hexdigest()
    path = paths[0]
    if not path.is_dir():
        if not path.is_file():
            raise InputError("not a regular file", path=path)
        return file_sha256(path)
    h = hashlib.sha256()
    for e in txt_entries(path):
        h.update(e.name.encode() + b"\0")
        h.update(hashlib.sha256(e.data).digest() if e.data is not None else e.problem.encode())
        h.update(b"\0")
    return h.hexdigest()


# --- strict: training tables -----------------------------------------------------------------


def read_reports(
    path: Tables,
    id_col: str = "report_id",
    text_col: str = "text",
    where: Mapping[str, str] | None = None,
    chunk_size: int = 1000,
) -> Iterator[pd.DataFrame]:
    """Yield chunks of a report table, all columns as strings, missing as ``""``; the first
    bad record (see the module's table) stops the reading with an error naming it.

    ``where`` keeps rows whose columns equal the given values (``{"split": "train"}``).
    Given several tables, each chunk also has a ``source`` column with its table's name.
    """
    paths = table_paths(path)
    names = source_names(paths) if len(paths) > 1 else [None]
    for p, name in zip(paths, names, strict=True):
        rows: list[dict[str, str]] = []
        for r in read_records(p, id_col, text_col, columns=True):
            if r.error:
                raise InputError(f"{r.detail} ({r.error})", path=p)
            if r.number == 1:
                _check_columns(r, where or {}, p)
            if all(r.columns.get(c) == v for c, v in (where or {}).items()):
                rows.append(dict(r.columns) | {id_col: r.report_id, text_col: r.text})
            if len(rows) == chunk_size:
                yield _frame(rows, name)
                rows = []
        if rows:
            yield _frame(rows, name)
        elif p.is_dir() and not any(p.glob("*.txt")):
            raise InputError("folder holds no .txt reports", path=p)


def _check_columns(first: Record, wanted: Iterable[str], path: Path) -> None:
    for col in wanted:
        if col not in first.columns:
            raise InputError(f"no column {col!r} (columns: {', '.join(first.columns)})", path=path)


def _frame(rows: list[dict[str, str]], source: str | None) -> pd.DataFrame:
    chunk = pd.DataFrame(rows, dtype=str).fillna("")
    if source is not None:
        chunk[SOURCE] = source
    return chunk


def read_texts(path: Tables, text_col: str = "text", **kw: object) -> Iterator[str]:
    """Just the texts of a report table, one at a time."""
    for chunk in read_reports(path, text_col=text_col, **kw):  # type: ignore[arg-type]
        yield from chunk[text_col]


# --- lenient: every record, good or bad ----------------------------------------------------


def read_records(
    path: str | Path, id_col: str = "report_id", text_col: str = "text", columns: bool = False
) -> Iterator[Record]:
    """Every record of the input, good or bad, in order; ids checked for presence and
    duplicates. ``columns``: also read each record's other columns."""
    path = Path(path)
    if not path.exists():
        raise InputError("no such file or folder", path=path)
    yield from checked(_raw_records(path, id_col, text_col, columns), id_col)


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
            yield Record(r.number, r.report_id, "", "duplicate_id",
                         f"record {r.number}: id seen earlier in this input")  # fmt: skip
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


def _text(v: object) -> str:
    return "" if _missing(v) else str(v)


def _raw_records(path: Path, id_col: str, text_col: str, columns: bool) -> Iterator[Record]:
    if path.is_dir():
        yield from _txt_records(path)
        return
    suffix = path.suffix.lower()
    if suffix == ".csv":
        yield from _csv_records(path, id_col, text_col, columns)
    elif suffix in (".jsonl", ".ndjson"):
        yield from _jsonl_records(path, id_col, text_col, columns)
    elif suffix == ".parquet":
        yield from _parquet_records(path, id_col, text_col, columns)
    else:
        raise InputError(
            f"unknown report format {suffix!r}; expected one of {', '.join(FORMATS)} or a "
            "folder of .txt files",
            path=path,
        )


def _parquet_records(path: Path, id_col: str, text_col: str, columns: bool) -> Iterator[Record]:
    pf = pq.ParquetFile(path)
    names = pf.schema_arrow.names
    for col in (id_col, text_col):
        if col not in names:
            raise InputError(f"no column {col!r} in the parquet schema", path=path)
    n = 0
    for batch in pf.iter_batches(columns=None if columns else [id_col, text_col],
                                 batch_size=10_000):  # fmt: skip
        d = batch.to_pydict()
        for j, (pid, body) in enumerate(zip(d[id_col], d[text_col], strict=True)):
            n += 1
            row = {c: _text(d[c][j]) for c in d} if columns else {}
            yield Record(n, _text(pid).strip(), _text(body), columns=row)


# --- .txt folders ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TxtEntry:
    """One ``*.txt`` entry of a report folder: its bytes, or why it is not read."""

    name: str
    data: bytes | None
    problem: str = ""  # set when data is None


def txt_entries(folder: Path) -> Iterator[TxtEntry]:
    """The folder's ``*.txt`` entries in name order, each read once, exactly as every reader of
    reports (and the input checksum) sees it. Not read: a link that leads out of the folder
    (never followed), a dangling link, and anything that is not a regular file (a folder, a
    FIFO, a device: opening those could hang or read forever)."""
    inside = folder.resolve()
    for f in sorted(folder.glob("*.txt")):
        if f.is_symlink() and not f.resolve().is_relative_to(inside):
            yield TxtEntry(f.name, None, "a link out of the folder, not followed")
            continue
        try:
            mode = os.stat(f).st_mode  # follows a link inside the folder
        except OSError as e:
            yield TxtEntry(f.name, None, e.strerror or type(e).__name__)
            continue
        if not stat.S_ISREG(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
            yield TxtEntry(f.name, None, kind)
            continue
        yield _read_regular(f)


def _read_regular(f: Path) -> TxtEntry:
    try:
        # O_NONBLOCK: an entry swapped for a FIFO since the stat still cannot hang the job
        with os.fdopen(os.open(f, os.O_RDONLY | os.O_NONBLOCK), "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                return TxtEntry(f.name, None, "not a regular file")
            return TxtEntry(f.name, fh.read())
    except OSError as e:
        return TxtEntry(f.name, None, e.strerror or type(e).__name__)


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


# --- CSV and JSON lines ----------------------------------------------------------------------


_SURROGATE = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of a non-UTF-8 byte


def _undecodable(s: str) -> bool:
    return _SURROGATE.search(s) is not None


def _clean_id(s: str) -> str:
    return (
        s.encode("utf-8", "replace").decode("utf-8", "replace").strip()
        if _undecodable(s)
        else s.strip()
    )


def _csv_records(path: Path, id_col: str, text_col: str, columns: bool) -> Iterator[Record]:
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
                raise InputError(f"no column {col!r} in the CSV header (columns: "
                                 f"{', '.join(header)})", path=path, line=1)  # fmt: skip
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
            elif any(map(_undecodable, row if columns else (row[i], row[t]))):
                yield Record(n, _clean_id(row[i]), "", "undecodable",
                             f"line {start}: bytes are not UTF-8")  # fmt: skip
            else:
                row_columns = dict(zip(header, row, strict=True)) if columns else {}
                yield Record(n, row[i].strip(), row[t], columns=row_columns)


def _jsonl_records(path: Path, id_col: str, text_col: str, columns: bool) -> Iterator[Record]:
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
            jid, body = _text(obj.get(id_col)).strip(), obj.get(text_col)
            if isinstance(body, dict | list):
                yield Record(n, jid, "", "malformed_row",
                             f"line {lineno}: {text_col!r} is not a string")  # fmt: skip
                continue
            row = {c: _text(v) for c, v in obj.items()} if columns else {}
            yield Record(n, jid, _text(body), columns=row)
