"""``kinpath review serve|export|add-user``: option parsing and printing; the work is in
:mod:`kinpath.pipelines.review.app` and :mod:`kinpath.pipelines.review.export`."""

from __future__ import annotations

import getpass
import json
import logging
import sys
from pathlib import Path

from kinpath.common import InputError, redact

log = logging.getLogger("kinpath.review")


def serve(
    scored: Path | None = None,
    reports: Path | None = None,
    warehouse: str | None = None,
    schema: str = "public",
    nlp_system: str | None = None,
    store: str | None = None,
    graph: Path | None = None,
    users: Path | None = None,
    token_file: Path | None = None,
    trust_proxy: bool = False,
    secret_file: Path | None = None,
    host: str = "127.0.0.1",
    port: int = 8765,
    id_column: str = "report_id",
    text_column: str = "text",
) -> None:
    """Serve the review queue of a scored batch to registrars, in the browser.

    Args:
        scored: The kinpath predict output (.parquet or .csv) to review (required).
        reports: The reports it was scored from: the same file (its checksum is checked
            against the job's), read for the text and the evidence's offsets.
        warehouse: Instead of --scored/--reports: an OMOP warehouse,
            postgresql://user@host/db, whose NOTE_NLP rows (from kinpath predict) are
            reviewed with NOTE's text; decisions go to a kinpath table beside them.
        schema: The warehouse's schema (NOTE, NOTE_NLP, and the decisions table).
        nlp_system: The warehouse's model version to review, "kinpath NAME/VERSION"
            (default: the newest).
        store: Where decisions are appended: sqlite:///FILE or postgresql://user@host/db
            (default: sqlite:///review.db; with --warehouse, the warehouse).
        graph: The knowledge graph folder (kinpath kg build): ICD-O-3 names and synonyms
            for the codes and the search box.
        users: File of name:scrypt-hash lines (kinpath review add-user writes it).
        token_file: File holding one shared login token (at least 16 characters).
        trust_proxy: Take the user from a reverse proxy's X-Remote-User header (only
            behind such a proxy).
        secret_file: Key that signs the session cookies (default: random per start, so a
            restart logs everyone out).
        host: Interface to listen on; 127.0.0.1 unless the server must be reached from
            other machines (then put it behind the hospital's TLS proxy).
        port: Port to listen on.
        id_column: The reports' id column.
        text_column: The reports' text column.
    """
    if warehouse is None and (scored is None or reports is None):
        raise InputError("--scored and --reports are required (or --warehouse)")
    if warehouse is not None and (scored is not None or reports is not None):
        raise InputError("review either --warehouse or --scored/--reports, not both")
    import uvicorn

    from kinpath.pipelines.review.app import Batch, create_app
    from kinpath.pipelines.review.auth import Auth
    from kinpath.pipelines.review.codes import CodeBook
    from kinpath.pipelines.review.store import DecisionStore

    if warehouse is not None:
        batch = Batch.from_warehouse(warehouse, schema, nlp_system)
        store = store or warehouse
    else:
        assert scored is not None and reports is not None
        batch = Batch.load(scored, reports, id_column, text_column)
        store = store or "sqlite:///review.db"
    known = {t: {str(r.get(f"{t}_label") or "") for r in batch.rows.values()} for t in batch.tasks}
    app = create_app(
        batch,
        DecisionStore(store, schema),
        Auth.configure(users, token_file, trust_proxy, secret_file),
        CodeBook.from_graph(graph, known),
    )
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s: reachable from other machines; serve it behind TLS", host)
    print(f"kinpath review: http://{host}:{port}/queue ({len(batch.rows)} reports, store "
          f"{redact(store)})", flush=True)  # fmt: skip
    # uvicorn's own access log prints query strings: kinpath logs each request itself
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning")


def export(
    store: str = "sqlite:///review.db",
    reports: Path | None = None,
    warehouse: str | None = None,
    schema: str = "public",
    out: Path | None = None,
    id_column: str = "report_id",
    text_column: str = "text",
    patient_column: str = "patient_id",
) -> None:
    """Write the reviewed reports as a training table (the latest decision per field wins).

    Args:
        store: The review store: sqlite:///FILE or postgresql://user@host/db.
        reports: The reports file the decisions were made on; the text is read from it now.
        warehouse: Instead of --reports: the OMOP warehouse whose NOTE holds the text
            (patients are NOTE.person_id).
        schema: The warehouse's schema.
        out: The .csv table to write (train with --data.data beside the other tables).
        id_column: The reports' id column.
        text_column: The reports' text column.
        patient_column: The reports' patient id column, if any (splits are drawn by patient).
    """
    from kinpath.pipelines.review.export import export as run_export

    if (reports is None) == (warehouse is None) or out is None:
        raise InputError("--out and one of --reports or --warehouse are required")
    summary = run_export(store, reports, out, id_column, text_column, patient_column,
                         warehouse=warehouse, schema=schema)  # fmt: skip
    print(json.dumps(summary, indent=2))


def add_user(users: Path | None = None, name: str = "", password_stdin: bool = False) -> None:
    """Add a registrar (or change their password) in a user file.

    Args:
        users: The user file (created readable by its owner only).
        name: The registrar's login name.
        password_stdin: Read the password from standard input instead of asking.
    """
    from kinpath.pipelines.review.auth import add_user as add

    if users is None or not name:
        raise InputError("--users and --name are required")
    password = (
        sys.stdin.readline().rstrip("\n") if password_stdin else getpass.getpass("password: ")
    )
    add(users, name, password)
    print(f"{name} can log in ({users})")


COMMANDS = {"serve": serve, "export": export, "add-user": add_user}
