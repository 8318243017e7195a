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
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from kg.errors import InputError
from kg.graph import file_sha256

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
    """Checksum of a report table: the file's bytes, or each .txt file's name and checksum.

    Of several tables: the checksum of their checksums, in order."""
    paths = table_paths(path)
    if len(paths) > 1:
        return hashlib.sha256("".join(table_sha256(p) for p in paths).encode()).hexdigest()
    path = paths[0]
    if not path.is_dir():
        return file_sha256(path)
    h = hashlib.sha256()
    for f in sorted(path.glob("*.txt")):
        h.update(f.name.encode() + file_sha256(f).encode())
    return h.hexdigest()


def read_texts(path: Tables, text_col: str = "text", **kw: object) -> Iterator[str]:
    """Just the texts of a report table, one at a time."""
    for chunk in read_reports(path, text_col=text_col, **kw):  # type: ignore[arg-type]
        yield from chunk[text_col]


def _chunks(path: Path, chunk_size: int) -> Iterator[pd.DataFrame]:
    if path.is_dir():
        files = sorted(path.glob("*.txt"))
        if not files:
            raise InputError("folder holds no .txt reports", path=path)
        for i in range(0, len(files), chunk_size):
            part = files[i : i + chunk_size]
            yield pd.DataFrame(
                {"report_id": [f.stem for f in part], "text": [_read_txt(f) for f in part]}
            )
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


def _read_txt(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"bytes are not UTF-8 at offset {e.start}", path=path) from None
