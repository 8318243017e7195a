"""Reading OMOP ``NOTE`` and writing ``NOTE_NLP`` on a PostgreSQL warehouse, exactly once.

A hospital's research warehouse keeps notes in the OMOP Common Data Model
(CDM v5.4) ``NOTE`` table; NLP results go to ``NOTE_NLP``, where cohort tools
query them. :func:`score_notes` selects notes (by ``note_type_concept_id``,
``note_class_concept_id``, a ``note_date`` window, or only those without a
``NOTE_NLP`` row from this model version yet), reads them through a
server-side cursor in ``note_id`` order (never the whole table in memory),
scores each chunk with :func:`pipelines.batch.score_records` and writes, in
**one transaction per chunk**, the chunk's ``NOTE_NLP`` rows together with a
row of kinpath's own progress table. A ``kill -9`` at any moment therefore
leaves whole chunks only, and a rerun resumes after the last committed
``note_id``: every note is scored once. A finished job writes nothing when
run again; an unfinished job's selection scored by another model version (the
``champion`` alias moved) is refused.

One ``NOTE_NLP`` row per note and task, abstentions included (so "needs
review" is queryable):

==========================  ===================================================
``lexical_variant``         the code: ``C34.1``, ``8140/3`` (histology with the
                            behavior), ``Left``, ``G2``
``note_nlp_concept_id``,    the OMOP concept of that ICD-O-3 code from the
``note_nlp_source_concept_id``  warehouse's ``CONCEPT`` table (vocabulary
                            ``ICDO3``) when ``concepts`` is on; 0 otherwise
``nlp_system``              ``kinpath <model name>/<version>``
``nlp_date``/``nlp_datetime``  when it was scored
``term_exists``             ``Y``
``term_modifiers``          ``task=site;prob=0.9731;abstain=false;backoff=false;
                            edit_checks=;out_of_scope=false`` (``;``-separated
                            ``key=value``, the task first)
``snippet``, ``offset``     empty: no report text leaves ``NOTE``
==========================  ===================================================

A note with NULL or empty text, or bytes that are not UTF-8, gets no
``NOTE_NLP`` row; its error (kind and note id, no text) is in the progress
row's ``errors``. The tables' columns follow the CDM v5.4 definition
(OHDSI/CommonDataModel, ``inst/ddl/5.4/postgresql/OMOPCDM_postgresql_5.4_ddl.sql``);
:func:`init_schema` creates ``note`` and ``note_nlp`` only when asked
(``kinpath omop init-schema``), and kinpath's progress table and id sequence
whenever a job starts.

Connection strings: a ``postgresql://user@host/db`` URI without a password;
psycopg (libpq) reads the password from ``PGPASSWORD`` or ``~/.pgpass``, so it
never sits in a config or a log.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict
from typing import TYPE_CHECKING

from kg.errors import InputError
from pipelines.notes import NoteSelection
from pipelines.notes import quote_ident as _q

if TYPE_CHECKING:  # the heavy imports wait until a job runs: `kinpath predict --help` stays quick
    import psycopg

    from pipelines.batch import LoadedModel
    from pipelines.records import Record

log = logging.getLogger(__name__)

# CDM v5.4 columns, in the definition's order (name, PostgreSQL type, NOT NULL)
NOTE = (
    ("note_id", "integer", True), ("person_id", "integer", True), ("note_date", "date", True),
    ("note_datetime", "timestamp", False), ("note_type_concept_id", "integer", True),
    ("note_class_concept_id", "integer", True), ("note_title", "varchar(250)", False),
    ("note_text", "text", True), ("encoding_concept_id", "integer", True),
    ("language_concept_id", "integer", True), ("provider_id", "integer", False),
    ("visit_occurrence_id", "integer", False), ("visit_detail_id", "integer", False),
    ("note_source_value", "varchar(50)", False), ("note_event_id", "integer", False),
    ("note_event_field_concept_id", "integer", False),
)  # fmt: skip
NOTE_NLP = (
    ("note_nlp_id", "integer", True), ("note_id", "integer", True),
    ("section_concept_id", "integer", False), ("snippet", "varchar(250)", False),
    ('"offset"', "varchar(50)", False), ("lexical_variant", "varchar(250)", True),
    ("note_nlp_concept_id", "integer", False), ("note_nlp_source_concept_id", "integer", False),
    ("nlp_system", "varchar(250)", False), ("nlp_date", "date", True),
    ("nlp_datetime", "timestamp", False), ("term_exists", "varchar(1)", False),
    ("term_temporal", "varchar(50)", False), ("term_modifiers", "varchar(2000)", False),
)  # fmt: skip
PROGRESS = "kinpath_nlp_progress"
SEQUENCE = "kinpath_note_nlp_id"


def connect(uri: str) -> psycopg.Connection:
    import psycopg

    if not uri.startswith(("postgresql://", "postgres://")):
        raise InputError("a warehouse is a postgresql://user@host/database URI")
    try:
        return psycopg.connect(uri, autocommit=False)
    except psycopg.OperationalError as e:
        # libpq's message names the host and user, not the password
        raise InputError(
            f"cannot connect to the warehouse: {str(e).strip().splitlines()[0]}"
        ) from None


def _ddl(table: str, schema: str, cols: tuple[tuple[str, str, bool], ...]) -> str:
    body = ",\n  ".join(f"{c} {t}{' NOT NULL' if nn else ''}" for c, t, nn in cols)
    return f"CREATE TABLE IF NOT EXISTS {_q(schema)}.{table} (\n  {body}\n)"


def init_schema(uri: str, schema: str = "public") -> list[str]:
    """Create the CDM v5.4 ``note`` and ``note_nlp`` tables (if absent) and kinpath's own."""
    with connect(uri) as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_q(schema)}")
        conn.execute(_ddl("note", schema, NOTE))
        conn.execute(_ddl("note_nlp", schema, NOTE_NLP))
        _own_tables(conn, schema)
    return [f"{schema}.note", f"{schema}.note_nlp", f"{schema}.{PROGRESS}"]


def _own_tables(conn: psycopg.Connection, schema: str) -> None:
    """kinpath's progress table and NOTE_NLP id sequence (kinpath's, never the CDM's)."""
    s = _q(schema)
    conn.execute(f"CREATE SEQUENCE IF NOT EXISTS {s}.{SEQUENCE}")
    conn.execute(
        f"""CREATE TABLE IF NOT EXISTS {s}.{PROGRESS} (
          selection text NOT NULL,      -- checksum of the note selection
          model_version text NOT NULL,  -- NAME/VERSION that scored it
          chunk integer NOT NULL,
          last_note_id bigint,          -- the chunk's last note: a resume starts after it
          notes integer NOT NULL,
          rows_written integer NOT NULL,
          errors jsonb NOT NULL,        -- [{{"note_id": .., "kind": .., "detail": ..}}], no text
          finished boolean NOT NULL DEFAULT false,  -- the job's closing row
          written_at timestamptz NOT NULL DEFAULT now(),
          PRIMARY KEY (selection, model_version, chunk))"""
    )
    conn.commit()


def _selection_key(sel: NoteSelection) -> str:
    blob = json.dumps(asdict(sel), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _notes(
    conn: psycopg.Connection, sel: NoteSelection, nlp_system: str, after: int | None, size: int
) -> Iterator[list[Record]]:
    """Chunks of notes in ``note_id`` order from a server-side cursor; text read as bytes."""
    cond, params = sel.where(nlp_system)
    if after is not None:
        cond += " AND n.note_id > %s"
        params.append(after)
    sql = (
        f"SELECT n.note_id, textsend(n.note_text) FROM {_q(sel.schema)}.note n "
        f"WHERE {cond} ORDER BY n.note_id"
    )
    with conn.cursor(name="kinpath_notes") as cur:  # server-side: rows arrive a chunk at a time
        cur.itersize = size
        cur.execute(sql, params)
        n = 0
        while rows := cur.fetchmany(size):
            chunk = []
            for note_id, raw in rows:
                n += 1
                chunk.append(_record(n, note_id, raw))
            yield chunk


def _record(n: int, note_id: int, raw: bytes | None) -> Record:
    from pipelines.records import Record

    rid = str(note_id)
    if raw is None:
        return Record(n, rid, "", "empty_text", f"note {rid}: note_text is NULL")
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError as e:
        return Record(n, rid, "", "undecodable", f"note {rid}: byte {e.start} is not UTF-8")
    if not text.strip():
        return Record(n, rid, "", "empty_text", f"note {rid}: empty note_text")
    return Record(n, rid, text)


def _concepts(conn: psycopg.Connection, schema: str) -> dict[str, int]:
    """ICD-O-3 code → OMOP concept_id from the warehouse's CONCEPT table."""
    rows = conn.execute(
        f"SELECT concept_code, concept_id FROM {_q(schema)}.concept WHERE vocabulary_id = 'ICDO3'"
    ).fetchall()
    return {code: cid for code, cid in rows}


def _nlp_rows(
    scored: list[dict], tasks: list[str], system: str, concepts: dict[str, int], now: dt.datetime
) -> list[tuple]:
    rows = []
    for r in scored:
        for t in tasks:
            label = r.get(f"{t}_label") or ""
            if not label:
                continue
            code = label
            if t == "histology" and r.get("behavior_label"):
                code = f"{label}/{r['behavior_label']}"
            mods = (
                f"task={t};prob={float(r[f'{t}_prob']):.4f};abstain={str(bool(r[f'{t}_abstain'])).lower()};"
                f"backoff={str(bool(r[f'{t}_backoff'])).lower()};edit_checks={r.get('edit_checks') or ''};"
                f"out_of_scope={str(bool(r.get('out_of_scope'))).lower()}"
            )
            cid = concepts.get(code, 0)
            rows.append((int(r["report_id"]), code, cid, cid, system, now.date(), now, "Y", mods))
    return rows


def score_notes(
    model: LoadedModel,
    uri: str,
    selection: NoteSelection = NoteSelection(),
    chunk_size: int = 500,
    batch_size: int = 32,
    concepts: bool = False,
    workers: int = 1,
) -> dict[str, object]:
    """Score the selected notes into NOTE_NLP, one transaction per chunk; returns a summary.
    ``workers``: processes tokenizing the next chunks while one is scored (0: none)."""
    from pipelines.batch import encoded_ahead, score_records

    if chunk_size < 1 or batch_size < 1:
        raise InputError(
            f"--chunk-size and --batch-size must be at least 1 (got {chunk_size}, {batch_size})"
        )
    system = f"kinpath {model.version}"
    key = _selection_key(selection)
    tasks = model.bundle.tasks
    t0 = time.perf_counter()
    with connect(uri) as conn, connect(uri) as reader:
        s = _q(selection.schema)
        for table in ("note", "note_nlp"):
            if conn.execute("SELECT to_regclass(%s)", (f"{s}.{table}",)).fetchone() == (None,):
                raise InputError(f"no table {selection.schema}.{table} in the warehouse: create "
                                 "the CDM tables (kinpath omop init-schema) or name the schema")  # fmt: skip
        _own_tables(conn, selection.schema)
        other = conn.execute(
            f"SELECT model_version FROM {s}.{PROGRESS} p WHERE selection = %s AND model_version <> %s "
            f"AND NOT EXISTS (SELECT 1 FROM {s}.{PROGRESS} q WHERE q.selection = p.selection "
            "AND q.model_version = p.model_version AND q.finished) LIMIT 1",
            (key, model.version),
        ).fetchone()
        if other:
            raise InputError(f"cannot resume: this selection's unfinished job was scored by {other[0]}, "
                             f"not {model.version} (the alias moved); finish it with that version")  # fmt: skip
        last_chunk, after, finished = conn.execute(
            f"SELECT max(chunk), max(last_note_id), coalesce(bool_or(finished), false) "
            f"FROM {s}.{PROGRESS} WHERE selection = %s AND model_version = %s",
            (key, model.version),
        ).fetchone() or (None, None, False)
        conn.commit()
        summary: dict[str, object] = {"input": "warehouse note table", "model": model.uri,
                                      "model_version": model.version,
                                      "precision": model.bundle.precision,
                                      "selection": asdict(selection)}  # fmt: skip
        if finished:
            return summary | {"notes_scored_now": 0, "finished_before": True}
        cmap = _concepts(conn, selection.schema) if concepts else {}
        chunk_no = -1 if last_chunk is None else int(last_chunk)
        notes = rows_written = 0
        kinds: Counter[str] = Counter()
        notes_read = _notes(reader, selection, system, after, chunk_size)
        for _, chunk, encoded in encoded_ahead(model.bundle, notes_read, workers):
            chunk_no += 1
            assert encoded is not None  # no chunk is skipped here: progress resumes the cursor
            df = score_records(model, chunk, batch_size, tasks, encoded)
            good = df[df["status"] != "error"].to_dict("records")
            errors = [
                {"note_id": r.report_id, "kind": r.error, "detail": r.detail}
                for r in chunk
                if r.error
            ]
            rows = _nlp_rows(good, tasks, system, cmap, dt.datetime.now())
            with conn.cursor() as cur:  # the chunk's rows and its progress row: one transaction
                cur.executemany(
                    f"INSERT INTO {s}.note_nlp (note_nlp_id, note_id, lexical_variant, "
                    "note_nlp_concept_id, note_nlp_source_concept_id, nlp_system, nlp_date, "
                    f"nlp_datetime, term_exists, term_modifiers) VALUES (nextval('{s}.{SEQUENCE}'), "
                    "%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    rows,
                )
                cur.execute(
                    f"INSERT INTO {s}.{PROGRESS} (selection, model_version, chunk, last_note_id, notes, "
                    "rows_written, errors) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (key, model.version, chunk_no, int(chunk[-1].report_id), len(chunk), len(rows),
                     json.dumps(errors)),
                )  # fmt: skip
            conn.commit()
            notes += len(chunk)
            rows_written += len(rows)
            kinds.update(e["kind"] for e in errors)
            log.info(
                "chunk %d: %d notes, %d NOTE_NLP rows committed", chunk_no, len(chunk), len(rows)
            )
        conn.execute(
            f"INSERT INTO {s}.{PROGRESS} (selection, model_version, chunk, notes, rows_written, "
            "errors, finished) VALUES (%s, %s, %s, 0, 0, '[]', true)",
            (key, model.version, chunk_no + 1),
        )
        conn.commit()
    seconds = time.perf_counter() - t0
    return summary | {
        "notes_scored_now": notes,
        "note_nlp_rows_written": rows_written,
        "errors_by_kind": dict(sorted(kinds.items())),
        "seconds": round(seconds, 2),
        "notes_per_second": round(notes / seconds, 1) if seconds > 0 else None,
    }
