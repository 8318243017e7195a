"""Which OMOP ``NOTE`` rows a warehouse job scores (kept apart from :mod:`pipelines.omop`
so that ``kinpath predict --help`` reads it without loading the scoring code)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kg.errors import InputError


def quote_ident(identifier: str) -> str:
    """A schema name as a quoted SQL identifier."""
    if not identifier or '"' in identifier or "\x00" in identifier:
        raise InputError(f"not a usable schema name: {identifier!r}")
    return f'"{identifier}"'


@dataclass(frozen=True)
class NoteSelection:
    """Which notes a job scores; part of the job's identity."""

    schema: str = "public"
    note_type_concept_id: int | None = None
    note_class_concept_id: int | None = None
    date_from: str | None = None  # note_date >= this (YYYY-MM-DD)
    date_to: str | None = None  # note_date < this
    unscored: bool = False  # only notes with no NOTE_NLP row from this model version

    def where(self, nlp_system: str) -> tuple[str, list[Any]]:
        """The SQL condition (on ``n``, the NOTE table) and its parameters."""
        parts: list[str] = ["TRUE"]
        params: list[Any] = []
        for col, v in (("note_type_concept_id", self.note_type_concept_id),
                       ("note_class_concept_id", self.note_class_concept_id)):  # fmt: skip
            if v is not None:
                parts.append(f"n.{col} = %s")
                params.append(v)
        if self.date_from:
            parts.append("n.note_date >= %s")
            params.append(self.date_from)
        if self.date_to:
            parts.append("n.note_date < %s")
            params.append(self.date_to)
        if self.unscored:
            parts.append(
                f"NOT EXISTS (SELECT 1 FROM {quote_ident(self.schema)}.note_nlp x "
                "WHERE x.note_id = n.note_id AND x.nlp_system = %s)"
            )
            params.append(nlp_system)
        return " AND ".join(parts), params
