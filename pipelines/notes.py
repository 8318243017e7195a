"""Which OMOP ``NOTE`` rows a warehouse job scores (kept apart from :mod:`kinpath.pipelines.omop`
so that ``kinpath predict --help`` reads it without loading the scoring code)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kinpath.common import InputError

if TYPE_CHECKING:
    from psycopg import sql


def check_schema(schema: str) -> str:
    """A schema name PostgreSQL can hold; it is always quoted as an identifier, never pasted."""
    if not schema or "\x00" in schema or len(schema.encode()) > 63:
        raise InputError(f"not a usable schema name ({len(schema)} characters): 1 to 63 bytes, "
                         "no NUL")  # fmt: skip
    return schema


@dataclass(frozen=True)
class NoteSelection:
    """Which notes a job scores; part of the job's identity."""

    schema: str = "public"
    note_type_concept_id: int | None = None
    note_class_concept_id: int | None = None
    date_from: str | None = None  # note_date >= this (YYYY-MM-DD)
    date_to: str | None = None  # note_date < this
    unscored: bool = False  # only notes with no NOTE_NLP row from this model version

    def where(self, nlp_system: str) -> tuple[sql.Composed, list[Any]]:
        """The SQL condition (on ``n``, the NOTE table) and its parameters."""
        from psycopg import sql

        parts: list[sql.Composable] = [sql.SQL("TRUE")]
        params: list[Any] = []
        for col, v in (("note_type_concept_id", self.note_type_concept_id),
                       ("note_class_concept_id", self.note_class_concept_id)):  # fmt: skip
            if v is not None:
                parts.append(sql.SQL("n.{} = %s").format(sql.Identifier(col)))
                params.append(v)
        if self.date_from:
            parts.append(sql.SQL("n.note_date >= %s"))
            params.append(self.date_from)
        if self.date_to:
            parts.append(sql.SQL("n.note_date < %s"))
            params.append(self.date_to)
        if self.unscored:
            parts.append(
                sql.SQL(
                    "NOT EXISTS (SELECT 1 FROM {} x WHERE x.note_id = n.note_id "
                    "AND x.nlp_system = %s)"
                ).format(sql.Identifier(check_schema(self.schema), "note_nlp"))
            )
            params.append(nlp_system)
        return sql.SQL(" AND ").join(parts), params
