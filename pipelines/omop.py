"""Reading OMOP ``NOTE`` and writing ``NOTE_NLP`` on a PostgreSQL warehouse, exactly once.

A hospital's research warehouse keeps notes in the OMOP Common Data Model
(CDM v5.4) ``NOTE`` table; NLP results go to ``NOTE_NLP``, where cohort tools
query them. :func:`score_notes` selects notes (by ``note_type_concept_id``,
``note_class_concept_id``, a ``note_date`` window, or only those without a
``NOTE_NLP`` row from this model version yet), reads them through a
server-side cursor in ``note_id`` order (never the whole table in memory),
scores each chunk with :func:`kinpath.pipelines.batch.score_records` and writes, in
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
                            edit_checks=;out_of_scope=false;top3=[...];evidence=[...]``
                            (``;``-separated ``key=value``, the task first; ``top3``
                            and ``evidence`` as the batch job's JSON columns: what
                            ``kinpath review serve --warehouse`` shows)
``offset``                  where in the note the code's best evidence starts
                            (character offset; empty when it has none)
``snippet``                 empty: no report text leaves ``NOTE``
==========================  ===================================================

A note with NULL or empty text, or bytes that are not UTF-8, gets no
``NOTE_NLP`` row; its error (kind and note id, no text) is in the progress
row's ``errors``. The tables, the connection and quoted names are in
:mod:`kinpath.pipelines.cdm`, whose :func:`~kinpath.pipelines.cdm.init_schema` creates
``note`` and ``note_nlp`` only when asked (``kinpath omop init-schema``); a job creates
kinpath's progress table and id sequence whenever it starts.
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

from kinpath.common import InputError
from kinpath.pipelines.cdm import PROGRESS, SEQUENCE, connect, own_tables
from kinpath.pipelines.cdm import name as identifier
from kinpath.pipelines.notes import NoteSelection, check_schema

if TYPE_CHECKING:  # the heavy imports wait until a job runs: `kinpath predict --help` stays quick
    import psycopg

    from kinpath.kg.reports import Record
    from kinpath.pipelines.batch import LoadedModel

log = logging.getLogger(__name__)


def _selection_key(sel: NoteSelection) -> str:
    blob = json.dumps(asdict(sel), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _notes(
    conn: psycopg.Connection, sel: NoteSelection, nlp_system: str, after: int | None, size: int
) -> Iterator[list[Record]]:
    """Chunks of notes in ``note_id`` order from a server-side cursor; text read as bytes."""
    from psycopg import sql

    cond, params = sel.where(nlp_system)
    if after is not None:
        cond = sql.SQL("{} AND n.note_id > %s").format(cond)
        params.append(after)
    query = sql.SQL(
        "SELECT n.note_id, textsend(n.note_text) FROM {} n WHERE {} ORDER BY n.note_id"
    ).format(identifier(sel.schema, "note"), cond)
    with conn.cursor(name="kinpath_notes") as cur:  # server-side: rows arrive a chunk at a time
        cur.itersize = size
        cur.execute(query, params)
        n = 0
        while rows := cur.fetchmany(size):
            chunk = []
            for note_id, raw in rows:
                n += 1
                chunk.append(_record(n, note_id, raw))
            yield chunk


def _record(n: int, note_id: int, raw: bytes | None) -> Record:
    from kinpath.kg.reports import Record

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
    from psycopg import sql

    rows = conn.execute(
        sql.SQL("SELECT concept_code, concept_id FROM {} WHERE vocabulary_id = 'ICDO3'").format(
            identifier(schema, "concept")
        )
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
                f"out_of_scope={str(bool(r.get('out_of_scope'))).lower()};"
                f"top3={r.get(f'{t}_top3') or '[]'};evidence={r.get(f'{t}_evidence') or '[]'}"
            )
            cid = concepts.get(code, 0)
            spans = json.loads(r.get(f"{t}_evidence") or "[]")
            offset = str(spans[0][0]) if spans else None
            rows.append(
                (int(r["report_id"]), code, cid, cid, system, now.date(), now, "Y", mods, offset)
            )
    return rows


def _job_key(conn: psycopg.Connection, schema: str, sel: NoteSelection, version: str) -> str:
    """The progress rows' key of this run. A selection is one job: once finished, running it
    again writes nothing. An ``unscored`` selection means "the notes this version has not
    scored yet", which changes as notes arrive: each run after a finished one is a new job
    (``KEY#N``), and an unfinished one is resumed."""
    from psycopg import sql

    base = _selection_key(sel)
    if not sel.unscored:
        return base
    rows = conn.execute(
        sql.SQL(
            "SELECT selection, bool_or(finished) FROM {} WHERE model_version = %s "
            "AND split_part(selection, '#', 1) = %s GROUP BY selection"
        ).format(identifier(schema, PROGRESS)),
        (version, base),
    ).fetchall()
    keys = [(k.decode() if isinstance(k, bytes) else k, bool(done)) for k, done in rows]
    runs = {0 if "#" not in k else int(k.split("#", 1)[1]): done for k, done in keys}
    if not runs:
        return base
    last = max(runs)
    n = last + 1 if runs[last] else last
    return base if n == 0 else f"{base}#{n}"


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
    import psycopg
    from psycopg import sql

    from kinpath.phenotyping.drift import Accumulator
    from kinpath.pipelines.batch import drift_summary, encoded_ahead, score_records
    from kinpath.pipelines.jobfiles import parent_only, release

    if chunk_size < 1 or batch_size < 1:
        raise InputError(
            f"--chunk-size and --batch-size must be at least 1 (got {chunk_size}, {batch_size})"
        )
    system = f"kinpath {model.version}"
    schema = check_schema(selection.schema)
    progress, nlp = identifier(schema, PROGRESS), identifier(schema, "note_nlp")
    tasks = model.bundle.tasks
    drift = Accumulator() if model.bundle.drift is not None else None
    t0 = time.perf_counter()
    with connect(uri) as conn, connect(uri) as reader:
        held = [conn.fileno(), reader.fileno()]
        for fd in held:  # a tokenizer worker never keeps a session open (pipelines.batch)
            parent_only(fd)
        try:
            for table in ("note", "note_nlp"):
                qualified = identifier(schema, table).as_string(conn)
                if conn.execute("SELECT to_regclass(%s)", (qualified,)).fetchone() == (None,):
                    raise InputError(f"no table {schema}.{table} in the warehouse: create the "
                                     "CDM tables (kinpath omop init-schema) or name the schema")  # fmt: skip
            own_tables(conn, schema)
            base = _selection_key(selection)
            # one job per selection at a time: a session lock, gone with the session
            got = conn.execute(
                "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))",
                (f"kinpath:{schema}:{base}",),
            ).fetchone()
            if not got or not got[0]:
                raise InputError(_BUSY)
            other = conn.execute(
                sql.SQL(
                    "SELECT model_version FROM {p} p WHERE split_part(selection, '#', 1) = %s "
                    "AND model_version <> %s AND NOT EXISTS (SELECT 1 FROM {p} q "
                    "WHERE q.selection = p.selection AND q.model_version = p.model_version "
                    "AND q.finished) LIMIT 1"
                ).format(p=progress),
                (base, model.version),
            ).fetchone()
            if other:
                raise InputError(f"cannot resume: this selection's unfinished job was scored by {other[0]}, "
                                 f"not {model.version} (the alias moved); finish it with that version")  # fmt: skip
            key = _job_key(conn, schema, selection, model.version)
            last_chunk, after, finished = conn.execute(
                sql.SQL(
                    "SELECT max(chunk), max(last_note_id), coalesce(bool_or(finished), false) "
                    "FROM {} WHERE selection = %s AND model_version = %s"
                ).format(progress),
                (key, model.version),
            ).fetchone() or (None, None, False)
            conn.commit()
            summary: dict[str, object] = {"input": "warehouse note table", "model": model.uri,
                                          "model_version": model.version,
                                          "precision": model.bundle.precision,
                                          "device": str(model.bundle.device),
                                          "selection": asdict(selection), "job": key}  # fmt: skip
            if finished:
                return summary | {"notes_scored_now": 0, "finished_before": True}
            cmap = _concepts(conn, schema) if concepts else {}
            chunk_no = -1 if last_chunk is None else int(last_chunk)
            notes = rows_written = 0
            kinds: Counter[str] = Counter()
            insert_nlp = sql.SQL(
                "INSERT INTO {} (note_nlp_id, note_id, lexical_variant, note_nlp_concept_id, "
                "note_nlp_source_concept_id, nlp_system, nlp_date, nlp_datetime, term_exists, "
                'term_modifiers, "offset") VALUES (nextval({}), %s, %s, %s, %s, %s, %s, %s, %s, '
                "%s, %s)"
            ).format(nlp, sql.Literal(identifier(schema, SEQUENCE).as_string(conn)))
            insert_progress = sql.SQL(
                "INSERT INTO {} (selection, model_version, chunk, last_note_id, notes, "
                "rows_written, errors) VALUES (%s, %s, %s, %s, %s, %s, %s)"
            ).format(progress)
            notes_read = _notes(reader, selection, system, after, chunk_size)
            try:
                for _, chunk, encoded in encoded_ahead(model.bundle, notes_read, workers):
                    chunk_no += 1
                    assert encoded is not None  # no chunk is skipped: progress resumes the cursor
                    df = score_records(model, chunk, batch_size, tasks, encoded, drift=drift)
                    good = df[df["status"] != "error"].to_dict("records")
                    errors = [
                        {"note_id": r.report_id, "kind": r.error, "detail": r.detail}
                        for r in chunk
                        if r.error
                    ]
                    rows = _nlp_rows(good, tasks, system, cmap, dt.datetime.now())
                    with (
                        conn.cursor() as cur
                    ):  # the chunk's rows and its progress row: one transaction
                        cur.executemany(insert_nlp, rows)
                        cur.execute(insert_progress, (key, model.version, chunk_no,
                                                      int(chunk[-1].report_id), len(chunk),
                                                      len(rows), json.dumps(errors)))  # fmt: skip
                    conn.commit()
                    notes += len(chunk)
                    rows_written += len(rows)
                    kinds.update(e["kind"] for e in errors)
                    log.info("chunk %d: %d notes, %d NOTE_NLP rows committed", chunk_no,
                             len(chunk), len(rows))  # fmt: skip
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {} (selection, model_version, chunk, notes, rows_written, "
                        "errors, finished) VALUES (%s, %s, %s, 0, 0, '[]', true)"
                    ).format(progress),
                    (key, model.version, chunk_no + 1),
                )
                conn.commit()
            except psycopg.errors.UniqueViolation:
                raise InputError(_BUSY) from None
        finally:
            for fd in held:
                release(fd)
    seconds = time.perf_counter() - t0
    return summary | {
        "notes_scored_now": notes,
        "note_nlp_rows_written": rows_written,
        "errors_by_kind": dict(sorted(kinds.items())),
        "seconds": round(seconds, 2),
        "notes_per_second": round(notes / seconds, 1) if seconds > 0 else None,
        "drift": drift_summary(model.bundle, drift),
    }


_BUSY = ("another job is scoring these notes (the same selection in the same schema); "
         "wait for it to finish, then run again: nothing it wrote is lost or written twice")  # fmt: skip
