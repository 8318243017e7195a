"""The OMOP CDM v5.4 tables kinpath reads and writes on a PostgreSQL warehouse.

The ``note`` and ``note_nlp`` columns as the CDM v5.4 definition has them
(OHDSI/CommonDataModel, ``inst/ddl/5.4/postgresql/OMOPCDM_postgresql_5.4_ddl.sql``), kinpath's
own progress table and id sequence, the connection (a URI without a password: libpq reads it
from ``PGPASSWORD`` or ``~/.pgpass``) and quoted names: every schema and table name is a
quoted identifier, never pasted into SQL. :func:`init_schema` is the only function that
creates ``note`` or ``note_nlp``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kinpath.common import InputError, redact, warn_if_password
from kinpath.pipelines.notes import check_schema

if TYPE_CHECKING:  # psycopg waits until a job runs: `kinpath predict --help` stays quick
    import psycopg
    from psycopg import sql

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
    ("offset", "varchar(50)", False), ("lexical_variant", "varchar(250)", True),
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
    warn_if_password(uri)
    try:
        return psycopg.connect(uri, autocommit=False)
    except psycopg.Error as e:
        # a malformed URI comes back whole in libpq's message, password and all
        first = redact(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
        raise InputError(f"cannot connect to the warehouse {redact(uri)}: {first}") from None


def name(schema: str, *parts: str) -> sql.Identifier:
    """``schema.table`` quoted as identifiers: nothing a user typed is ever pasted into SQL."""
    from psycopg import sql

    return sql.Identifier(check_schema(schema), *parts)


def _ddl(table: str, schema: str, cols: tuple[tuple[str, str, bool], ...]) -> sql.Composed:
    from psycopg import sql

    body = sql.SQL(",\n  ").join(
        sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t + (" NOT NULL" if nn else "")))
        for c, t, nn in cols
    )
    return sql.SQL("CREATE TABLE IF NOT EXISTS {} (\n  {}\n)").format(name(schema, table), body)


def init_schema(uri: str, schema: str = "public") -> list[str]:
    """Create the CDM v5.4 ``note`` and ``note_nlp`` tables (if absent) and kinpath's own."""
    from psycopg import sql

    with connect(uri) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(name(schema)))
        conn.execute(_ddl("note", schema, NOTE))
        conn.execute(_ddl("note_nlp", schema, NOTE_NLP))
        own_tables(conn, schema)
    return [f"{schema}.note", f"{schema}.note_nlp", f"{schema}.{PROGRESS}"]


def own_tables(conn: psycopg.Connection, schema: str) -> None:
    """kinpath's progress table and NOTE_NLP id sequence (kinpath's, never the CDM's)."""
    from psycopg import sql

    conn.execute(sql.SQL("CREATE SEQUENCE IF NOT EXISTS {}").format(name(schema, SEQUENCE)))
    conn.execute(
        sql.SQL("""CREATE TABLE IF NOT EXISTS {} (
          selection text NOT NULL,      -- checksum of the note selection (#N: its Nth run)
          model_version text NOT NULL,  -- NAME/VERSION that scored it
          chunk integer NOT NULL,
          last_note_id bigint,          -- the chunk's last note: a resume starts after it
          notes integer NOT NULL,
          rows_written integer NOT NULL,
          errors jsonb NOT NULL,        -- [{{"note_id": .., "kind": .., "detail": ..}}], no text
          finished boolean NOT NULL DEFAULT false,  -- the job's closing row
          written_at timestamptz NOT NULL DEFAULT now(),
          PRIMARY KEY (selection, model_version, chunk))""").format(name(schema, PROGRESS))
    )
    conn.commit()
