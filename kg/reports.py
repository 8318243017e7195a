"""Streaming readers of report tables, shared by every stage that reads reports.

A report table has an id column and a text column (names configurable) and,
for training, task columns where an empty cell is a missing label. Accepted
inputs:

* ``.csv`` (UTF-8, RFC 4180 quoting: report text may hold newlines and commas),
* ``.parquet``,
* ``.jsonl`` / ``.ndjson`` (one JSON object a line),
* a folder of ``.txt`` files, one report each, id = the file name without suffix.

A byte-order mark at the start of a file (Excel's UTF-8 export) is dropped.

Every reader yields :class:`pandas.DataFrame` chunks of string columns, so a
night's reports never need to fit in memory at once. Several tables (a list of
paths) read as one, in the given order, each row with a ``source`` column that
names its table (:func:`source_names`), so that splits and results stay per
table. Linking (``kinpath kg
link``) reads corpora before the embedding stage exists, which is why the
reader lives here, at the start of the chain.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from kinpath.common import InputError
from kinpath.kg.graph import file_sha256

FORMATS = (".csv", ".parquet", ".jsonl", ".ndjson")
SOURCE = "source"  # the column that names a row's table when several are read as one

Tables = str | Path | Sequence[str | Path]  # one report table, or several read as one


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


def read_reports(
    path: Tables,
    id_col: str = "report_id",
    text_col: str = "text",
    where: Mapping[str, str] | None = None,
    chunk_size: int = 1000,
) -> Iterator[pd.DataFrame]:
    """Yield chunks of a report table, all columns as strings, missing as ``""``.

    ``where`` keeps rows whose columns equal the given values (``{"split": "train"}``).
    Given several tables, each chunk also has a ``source`` column with its table's name.
    """
    paths = table_paths(path)
    names = source_names(paths) if len(paths) > 1 else [None]
    for p, name in zip(paths, names, strict=True):
        for chunk in _read_one(p, id_col, text_col, where, chunk_size):
            if name is not None:
                chunk[SOURCE] = name
            yield chunk


def _read_one(
    path: Path, id_col: str, text_col: str, where: Mapping[str, str] | None, chunk_size: int
) -> Iterator[pd.DataFrame]:
    if not path.exists():
        raise InputError("no such file or folder", path=path)
    for chunk in _chunks(path, chunk_size):
        for col in (id_col, text_col, *(where or {})):
            if col not in chunk.columns:
                raise InputError(
                    f"no column {col!r} (columns: {', '.join(map(str, chunk.columns))})", path=path
                )
        chunk = chunk.fillna("").astype(str)
        for col, value in (where or {}).items():
            chunk = chunk[chunk[col] == value]
        if len(chunk):
            yield chunk.reset_index(drop=True)


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


def read_texts(path: Tables, text_col: str = "text", **kw: object) -> Iterator[str]:
    """Just the texts of a report table, one at a time."""
    for chunk in read_reports(path, text_col=text_col, **kw):  # type: ignore[arg-type]
        yield from chunk[text_col]


def _chunks(path: Path, chunk_size: int) -> Iterator[pd.DataFrame]:
    if path.is_dir():
        entries, empty = txt_entries(path), True
        while part := list(islice(entries, chunk_size)):
            empty = False
            yield pd.DataFrame(
                {"report_id": [Path(e.name).stem for e in part],
                 "text": [_txt_text(path, e) for e in part]}
            )  # fmt: skip
        if empty:
            raise InputError("folder holds no .txt reports", path=path)
        return
    suffix = path.suffix.lower()
    if suffix == ".csv":
        yield from pd.read_csv(
            path, dtype=str, keep_default_na=False, chunksize=chunk_size, encoding="utf-8-sig"
        )
    elif suffix == ".parquet":
        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_size):
            yield batch.to_pandas()
    elif suffix in (".jsonl", ".ndjson"):
        yield from pd.read_json(
            path, lines=True, dtype=str, chunksize=chunk_size, encoding="utf-8-sig"
        )
    else:
        raise InputError(f"unknown report format {suffix!r}; expected one of {FORMATS} or a folder")


def _txt_text(folder: Path, entry: TxtEntry) -> str:
    """A training report's text; a folder entry that cannot be read stops the reading."""
    if entry.data is None:
        raise InputError(f"cannot read: {entry.problem}", path=folder / entry.name)
    try:
        return entry.data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        raise InputError(
            f"bytes are not UTF-8 at offset {e.start}", path=folder / entry.name
        ) from None
