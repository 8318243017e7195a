"""The files of a batch job: atomic parquet parts, the pinned job, the output's lock, and
descriptors a forked tokenizer worker must not keep.

A part is written to a temporary file, fsynced and renamed, so a killed job leaves whole
parts only. ``job.json`` pins what the parts were made with, and a resume with anything else
is refused. A job holds an exclusive lock on its parts folder; a worker forked later points
its copies of the lock (and of a database session) at /dev/null. CSV cells that a
spreadsheet would run as a formula get a leading apostrophe.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from kinpath.common import InputError


def write_atomic(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def same_job(pinned: Path, job: dict) -> None:
    """Refuse to resume with another input, model or chunking than ``pinned`` records."""
    before = json.loads(pinned.read_text())
    changed = [k for k in job if before.get(k) != job[k]]
    if changed:
        raise InputError(f"cannot resume: {', '.join(changed)} changed since the output was written "
                         f"(was {[before.get(k) for k in changed]}, now {[job[k] for k in changed]})")  # fmt: skip


_PARENT_ONLY: set[int] = set()  # descriptors a forked worker must not keep


def parent_only(fd: int) -> None:
    """Mark a descriptor (the output's lock, a database socket) as this process's own: a
    tokenizer worker forked later points its copy at /dev/null, so that it never holds the
    lock or the session, even for the moment it outlives a killed job."""
    _PARENT_ONLY.add(fd)


def release(fd: int) -> None:
    _PARENT_ONLY.discard(fd)


def _drop_in_child() -> None:
    if not _PARENT_ONLY:
        return
    null = os.open(os.devnull, os.O_RDWR)
    for fd in _PARENT_ONLY:
        os.dup2(null, fd, inheritable=False)
    os.close(null)
    _PARENT_ONLY.clear()


os.register_at_fork(after_in_child=_drop_in_child)


@contextmanager
def locked(parts: Path) -> Iterator[None]:
    """Hold an exclusive lock on the parts folder; a second job on the same output stops.

    If the job fails before writing any chunk, the folder is removed, so the
    corrected command is not refused as an unfinished job.
    """
    fresh = not parts.exists()
    parts.mkdir(parents=True, exist_ok=True)
    fd = os.open(parts, os.O_RDONLY)
    parent_only(fd)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(
                f"another job is writing this output (its parts folder {parts} is locked)"
            ) from None
        try:
            yield
        except BaseException:
            if fresh and parts.exists() and not any(parts.glob("part-*.parquet")):
                shutil.rmtree(parts)
            raise
    finally:
        release(fd)
        os.close(fd)


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Text cells that a spreadsheet would run as a formula get a leading apostrophe (OWASP)."""
    out = df.copy()
    for c in out.columns:
        if pd.api.types.is_string_dtype(out[c]) or out[c].dtype == object:
            out[c] = out[c].map(
                lambda v: f"'{v}" if isinstance(v, str) and v.startswith(FORMULA_START) else v
            )
    return out
