"""The review queue of an OMOP warehouse: ``NOTE_NLP`` rows of one model version, ``NOTE`` text.

``kinpath predict --input postgresql://...`` writes one ``NOTE_NLP`` row per note and task;
its ``term_modifiers`` hold what the batch job's columns hold (confidence, abstain,
back-off, edit checks, out of scope, top 3, evidence). :func:`load` rebuilds the scored
rows from them for one ``nlp_system`` (``kinpath NAME/VERSION``: the newest one when none
is named). A note's text is read from ``NOTE`` when its page is opened, exactly as the
scoring job read it (``textsend``, UTF-8), so the evidence's offsets point at the same
characters. Decisions go to kinpath's table in the same schema.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from typing import Any

from kinpath.common import InputError

TASK_OF_LEXICAL = {"histology"}  # lexical_variant 8140/3: the histology with its behavior


def _modifiers(text: str) -> dict[str, str]:
    out = {}
    for part in (text or "").split(";"):
        k, _, v = part.partition("=")
        out[k] = v
    return out


class NoteTexts(Mapping[str, str]):
    """Note id → its text, read from ``NOTE`` on demand (never all at once)."""

    def __init__(self, uri: str, schema: str, ids: set[str]):
        self.uri, self.schema, self.ids = uri, schema, ids

    def __getitem__(self, note_id: str) -> str:
        from psycopg import sql

        from kinpath.pipelines.cdm import connect, name
        from kinpath.pipelines.omop import _record

        if note_id not in self.ids:
            raise KeyError(note_id)
        with connect(self.uri) as conn:
            row = conn.execute(
                sql.SQL("SELECT textsend(note_text) FROM {} WHERE note_id = %s").format(
                    name(self.schema, "note")
                ),
                [int(note_id)],
            ).fetchone()
        if row is None:
            raise KeyError(note_id)
        rec = _record(1, int(note_id), row[0])
        if rec.error:
            raise KeyError(note_id)
        return rec.text

    def __contains__(self, note_id: object) -> bool:
        return note_id in self.ids

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids)

    def __len__(self) -> int:
        return len(self.ids)


def load(
    uri: str, schema: str = "public", system: str | None = None
) -> tuple[dict[str, dict[str, Any]], list[str], str]:
    """The scored rows (by note id) of ``system``'s ``NOTE_NLP`` rows, the tasks, and the system."""
    from psycopg import sql

    from kinpath.pipelines.cdm import connect, name

    nlp = name(schema, "note_nlp")
    with connect(uri) as conn:
        if system is None:
            row = conn.execute(
                sql.SQL("SELECT nlp_system FROM {} WHERE nlp_system LIKE 'kinpath %%' "
                        "ORDER BY nlp_datetime DESC NULLS LAST, note_nlp_id DESC LIMIT 1").format(nlp)
            ).fetchone()  # fmt: skip
            if row is None:
                raise InputError(f"no kinpath NOTE_NLP rows in schema {schema!r}")
            system = str(row[0])
        found = conn.execute(
            sql.SQL("SELECT note_id, lexical_variant, term_modifiers FROM {} WHERE nlp_system = %s "
                    "ORDER BY note_id, note_nlp_id").format(nlp),
            [system],
        ).fetchall()  # fmt: skip
    if not found:
        raise InputError(f"no NOTE_NLP rows of {system!r} in schema {schema!r}")
    rows: dict[str, dict[str, Any]] = {}
    tasks: list[str] = []
    for note_id, lexical, modifiers in found:
        m = _modifiers(modifiers)
        t = m.get("task", "")
        if not t:
            continue
        if t not in tasks:
            tasks.append(t)
        code = str(lexical or "")
        if t in TASK_OF_LEXICAL:
            code = code.split("/", 1)[0]
        r = rows.setdefault(str(note_id), {"report_id": str(note_id), "status": "ok"})
        r[f"{t}_label"] = code
        r[f"{t}_prob"] = float(m.get("prob") or 0.0)
        r[f"{t}_abstain"] = m.get("abstain") == "true"
        r[f"{t}_backoff"] = m.get("backoff") == "true"
        r[f"{t}_top3"] = m.get("top3") or "[]"
        r[f"{t}_evidence"] = m.get("evidence") or "[]"
        r["edit_checks"] = m.get("edit_checks", "")
        r["out_of_scope"] = m.get("out_of_scope") == "true"
    return rows, tasks, system


def selection_checksum(system: str, note_ids: list[str]) -> str:
    """What a decision in warehouse mode was made on: the model's rows for these notes."""
    blob = json.dumps([system, sorted(note_ids, key=int)]).encode()
    return hashlib.sha256(blob).hexdigest()
