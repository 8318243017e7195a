"""Streaming readers of report tables, shared by every stage that reads reports.

A report table has an id column and a text column (names configurable) and,
for training, task columns where an empty cell is a missing label. Accepted
inputs:

* ``.csv`` (UTF-8, RFC 4180 quoting: report text may hold newlines and commas),
* ``.parquet``,
* ``.jsonl`` / ``.ndjson`` (one JSON object a line),
* a folder of ``.txt`` files, one report each, id = the file name without suffix.

Every reader yields :class:`pandas.DataFrame` chunks of string columns, so a
night's reports never need to fit in memory at once. Linking (``kinpath kg
link``) reads corpora before the embedding stage exists, which is why the
reader lives here, at the start of the chain.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from kg.errors import InputError
from kg.graph import file_sha256

FORMATS = (".csv", ".parquet", ".jsonl", ".ndjson")


def read_reports(
    path: str | Path,
    id_col: str = "report_id",
    text_col: str = "text",
    where: Mapping[str, str] | None = None,
    chunk_size: int = 1000,
) -> Iterator[pd.DataFrame]:
    """Yield chunks of a report table, all columns as strings, missing as ``""``.

    ``where`` keeps rows whose columns equal the given values (``{"split": "train"}``).
    """
    path = Path(path)
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


def table_sha256(path: str | Path) -> str:
    """Checksum of a report table: the file's bytes, or each .txt file's name and checksum."""
    path = Path(path)
    if not path.is_dir():
        return file_sha256(path)
    h = hashlib.sha256()
    for f in sorted(path.glob("*.txt")):
        h.update(f.name.encode() + file_sha256(f).encode())
    return h.hexdigest()


def read_texts(path: str | Path, text_col: str = "text", **kw: object) -> Iterator[str]:
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
            path, dtype=str, keep_default_na=False, chunksize=chunk_size, encoding="utf-8"
        )
    elif suffix == ".parquet":
        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_size):
            yield batch.to_pandas()
    elif suffix in (".jsonl", ".ndjson"):
        yield from pd.read_json(path, lines=True, dtype=str, chunksize=chunk_size)
    else:
        raise InputError(f"unknown report format {suffix!r}; expected one of {FORMATS} or a folder")


def _read_txt(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"bytes are not UTF-8 at offset {e.start}", path=path) from None
