"""The registrars' decisions: appended, never overwritten, one transaction each.

A decision is one field of one record: the model's code, the registrar's code
(the same when accepted), who, when, and what was reviewed (model name/version,
the input's checksum). A second decision on the same field is a new row; the
latest wins (:meth:`DecisionStore.latest`). The store is a SQLite file
(``sqlite:///review.db``) or a PostgreSQL database (``postgresql://user@host/db``,
the password from ``PGPASSWORD`` or ``~/.pgpass``), table
``kinpath_review_decision`` (in a warehouse, in the schema of its ``NOTE`` table; the
schema name is checked and quoted, the table name is kinpath's own). Every :meth:`DecisionStore.append` commits before it
returns, so a server killed at any moment keeps every decision it answered.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

from kinpath.common import InputError

TABLE = "kinpath_review_decision"
ACTIONS = ("accept", "correct")


@dataclass(frozen=True)
class Decision:
    record_id: str
    task: str
    model_code: str
    registrar_code: str
    action: str  # accept / correct
    reviewer: str
    decided_at: str  # ISO 8601, UTC
    model: str  # name/version that made the model's code
    input_sha256: str  # of the reports the code was read from


COLUMNS = tuple(f.name for f in fields(Decision))


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class DecisionStore:
    """Append-only decisions in SQLite or PostgreSQL (see the module docstring)."""

    def __init__(self, uri: str, schema: str = "public"):
        """``schema``: PostgreSQL only, the schema of the decisions table (a warehouse's)."""
        self.uri = uri
        self.table = TABLE
        if uri.startswith("sqlite:///"):
            self.path: Path | None = Path(uri.removeprefix("sqlite:///"))
            if not self.path.parent.exists():
                raise InputError("its folder does not exist", path=self.path)
        elif uri.startswith(("postgresql://", "postgres://")):
            from kinpath.pipelines.notes import check_schema

            self.path = None
            quoted = check_schema(schema).replace('"', '""')
            self.table = f'"{quoted}".{TABLE}'
        else:
            raise InputError(
                f"a review store is sqlite:///FILE or postgresql://user@host/db, not {uri.split(':')[0]!r}"
            )
        self._create()

    @contextmanager
    def _connect(self) -> Iterator[Any]:
        if self.path is not None:
            with closing(sqlite3.connect(self.path, timeout=30)) as conn:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                yield conn
        else:
            from kinpath.pipelines.cdm import connect

            with connect(self.uri) as conn:
                yield conn

    def _create(self) -> None:
        serial = (
            "INTEGER PRIMARY KEY AUTOINCREMENT"
            if self.path is not None
            else "BIGSERIAL PRIMARY KEY"
        )
        cols = ", ".join(f"{c} TEXT NOT NULL" for c in COLUMNS)
        with self._connect() as conn:
            conn.execute(f"CREATE TABLE IF NOT EXISTS {self.table} (id {serial}, {cols})")
            conn.execute(
                f"CREATE INDEX IF NOT EXISTS {TABLE}_field ON {self.table} (record_id, task, id)"
            )
            conn.commit()

    def append(self, d: Decision) -> None:
        """Store one decision; committed when this returns."""
        if d.action not in ACTIONS:
            raise InputError(f"a decision is one of {ACTIONS}, not {d.action!r}")
        mark = "?" if self.path is not None else "%s"
        sql = f"INSERT INTO {self.table} ({', '.join(COLUMNS)}) VALUES ({', '.join([mark] * len(COLUMNS))})"
        with self._connect() as conn:
            conn.execute(sql, astuple(d))
            conn.commit()

    def all(self) -> list[Decision]:
        """Every decision, oldest first."""
        with self._connect() as conn:
            rows = conn.execute(
                f"SELECT {', '.join(COLUMNS)} FROM {self.table} ORDER BY id"
            ).fetchall()
        return [Decision(*r) for r in rows]

    def latest(self) -> dict[tuple[str, str], Decision]:
        """Per (record id, task), its latest decision."""
        return {(d.record_id, d.task): d for d in self.all()}
