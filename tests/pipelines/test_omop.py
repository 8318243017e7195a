"""OMOP NOTE → NOTE_NLP on a real PostgreSQL server: exactly once, even through kill -9."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kinpath.common import InputError
from kinpath.pipelines.batch import load_model
from kinpath.pipelines.cdm import init_schema
from kinpath.pipelines.notes import NoteSelection
from kinpath.pipelines.omop import score_notes
from kinpath.pipelines.synthetic import synthetic_reports
from tests.pipelines.conftest import ROOT, Registered

TASKS = 6
CHAMPION_C34 = """
SELECT n.note_id
FROM note n JOIN note_nlp x ON x.note_id = n.note_id
WHERE x.nlp_system = %(system)s
  AND x.lexical_variant = 'C34'
  AND x.term_modifiers LIKE 'task=site;%%'
  AND x.term_modifiers LIKE '%%;abstain=false;%%'
ORDER BY n.note_id
"""


def _database(admin_uri: str, name: str) -> str:
    """A fresh SQL_ASCII database (so that a note can hold bytes that are not UTF-8)."""
    import psycopg

    with psycopg.connect(admin_uri, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name}")
        c.execute(
            f"CREATE DATABASE {name} ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
        )
    return admin_uri.replace("/postgres?", f"/{name}?")


def _load_notes(uri: str, n: int) -> list[int]:
    """n synthetic notes plus three bad ones; returns the bad notes' ids."""
    import psycopg

    init_schema(uri)
    df = synthetic_reports(n, seed=21)
    rows = [(i + 1, 1000 + i % 50, dt.date(2026, 11, 1 + i % 28), 44814645, 44814639, text, 32678, 4180186)
            for i, text in enumerate(df["text"])]  # fmt: skip
    with psycopg.connect(uri) as c:
        c.execute(
            "ALTER TABLE note ALTER COLUMN note_text DROP NOT NULL"
        )  # a warehouse that lets NULL in
        with c.cursor() as cur:
            cur.executemany(
                "INSERT INTO note (note_id, person_id, note_date, note_type_concept_id, "
                "note_class_concept_id, note_text, encoding_concept_id, language_concept_id) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                rows,
            )
        bad = [n + 1, n + 2, n + 3]
        cols = ("INSERT INTO note (note_id, person_id, note_date, note_type_concept_id, "
                "note_class_concept_id, encoding_concept_id, language_concept_id, note_text) "
                "VALUES (%s, 1, '2026-11-02', 44814645, 44814639, 32678, 4180186, ")  # fmt: skip
        c.execute(cols + "NULL)", (bad[0],))
        c.execute(cols + "'  ')", (bad[1],))
        c.execute(cols + "E'Carcinoma \\xff')", (bad[2],))  # not UTF-8
    return bad


def _note_nlp(uri: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(uri) as c:  # a SQL_ASCII database returns text as bytes
        rows = c.execute(
            "SELECT note_id, lexical_variant, note_nlp_concept_id, nlp_system, term_exists, "
            'term_modifiers, snippet, "offset" FROM note_nlp ORDER BY note_id, term_modifiers'
        ).fetchall()
    return [tuple(v.decode() if isinstance(v, bytes) else v for v in r) for r in rows]


def _wait_for_chunks(uri: str, n: int, seconds: float) -> int:
    """Wait until a running job has committed ``n`` chunks (or time is up); how many it has."""
    import psycopg

    deadline, done = time.time() + seconds, 0
    while time.time() < deadline and done < n:
        time.sleep(0.05)
        try:
            with psycopg.connect(uri) as c:
                done = c.execute("SELECT count(*) FROM kinpath_nlp_progress").fetchone()[0]  # type: ignore[index]
        except psycopg.errors.UndefinedTable:
            continue
    return done


@pytest.mark.parametrize("n", [2000])
def test_note_nlp_exactly_once_through_kill_9(
    registered: Registered, postgres: str, tmp_path: Path, n: int
) -> None:
    import psycopg

    full, killed = _database(postgres, "full_run"), _database(postgres, "killed_run")
    bad = _load_notes(full, n)
    _load_notes(killed, n)
    model = load_model(registered.champion, registered.tracking_uri)
    env = {**os.environ, "MLFLOW_TRACKING_URI": registered.tracking_uri}
    cmd = [sys.executable, "-m", "kinpath.pipelines.cli", "predict", "--model", registered.champion,
           "--chunk-size", "200", "--input"]  # fmt: skip
    # both runs are real processes, as a nightly job is: the uninterrupted one ...
    r = subprocess.run([*cmd, full], env=env, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads(r.stdout)
    assert summary["notes_scored_now"] == n + 3
    assert summary["errors_by_kind"] == {"empty_text": 2, "undecodable": 1}
    assert summary["precision"] == model.bundle.precision
    rows = _note_nlp(full)
    assert len(rows) == n * TASKS  # one row per good note and task, none for the bad ones
    per_note: dict[int, int] = {}
    for r_ in rows:
        per_note[r_[0]] = per_note.get(r_[0], 0) + 1
    assert set(per_note.values()) == {TASKS} and not set(bad) & set(per_note)
    with psycopg.connect(full) as c:
        errors = [e for (es,) in c.execute("SELECT errors FROM kinpath_nlp_progress") for e in es]
    assert sorted(int(e["note_id"]) for e in errors) == bad

    # ... and one killed halfway, then run again
    p = subprocess.Popen([*cmd, killed], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    done = _wait_for_chunks(killed, 3, 180)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert 3 <= done < 10  # killed halfway
    r = subprocess.run([*cmd, killed], env=env, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert _note_nlp(killed) == rows  # the same table as the uninterrupted run's

    again = score_notes(model, killed, chunk_size=200)  # a finished job writes nothing
    assert again["notes_scored_now"] == 0 and len(_note_nlp(killed)) == n * TASKS

    # the deploy guide's query (docs/guides/deploy.md): notes whose site the champion auto-coded as C34
    system = f"kinpath {model.version}"
    with psycopg.connect(full) as c:
        got = [i for (i,) in c.execute(CHAMPION_C34, {"system": system})]
    expected = sorted(
        note for note, code, _, _, _, mods, _, _ in rows
        if mods.startswith("task=site;") and code == "C34" and ";abstain=false;" in mods
    )  # fmt: skip
    assert got == expected

    # no report text: no snippet, the offset of the code's evidence in the note, nothing of a
    # note's text in any column
    texts = synthetic_reports(n, seed=21)["text"]
    blob = json.dumps([list(map(str, r)) for r in rows]).lower()
    assert all(r[6] is None and (r[7] is None or r[7].isdigit()) for r in rows)
    assert sum(r[7] is not None for r in rows) > len(rows) / 2  # most codes have evidence
    for t in texts[:200]:
        t = " ".join(t.lower().split())
        for i in range(0, len(t) - 30, 30):
            assert t[i : i + 30] not in blob


def test_a_moved_alias_is_refused_for_an_unfinished_job(
    registered: Registered, postgres: str
) -> None:
    import psycopg

    uri = _database(postgres, "moved")
    _load_notes(uri, 10)
    model = load_model(registered.champion, registered.tracking_uri)
    key = __import__("kinpath.pipelines.omop", fromlist=["_selection_key"])._selection_key(
        NoteSelection()
    )
    with psycopg.connect(uri) as c:  # another version started this selection and did not finish
        c.execute("CREATE SEQUENCE IF NOT EXISTS kinpath_note_nlp_id")
    init_schema(uri)
    with psycopg.connect(uri) as c:
        c.execute(
            "INSERT INTO kinpath_nlp_progress (selection, model_version, chunk, last_note_id, notes, "
            "rows_written, errors) VALUES (%s, 'kinpath-test/99', 0, 5, 5, 30, '[]')",
            (key,),
        )
    with pytest.raises(InputError, match="alias moved"):
        score_notes(model, uri)


def test_a_warehouse_without_the_cdm_tables_is_a_clear_error(
    registered: Registered, postgres: str
) -> None:
    uri = _database(postgres, "empty")
    model = load_model(registered.champion, registered.tracking_uri)
    with pytest.raises(InputError, match=r"no table public\.note .*init-schema"):
        score_notes(model, uri)


def test_only_unscored_notes_of_the_selection(registered: Registered, postgres: str) -> None:
    uri = _database(postgres, "selection")
    _load_notes(uri, 30)
    model = load_model(registered.champion, registered.tracking_uri)
    first = score_notes(model, uri, NoteSelection(date_from="2026-11-01", date_to="2026-11-05"))
    # days 1-4: notes 1-4 and 29-30 (the dates cycle over 28 days), and the three bad ones
    assert first["notes_scored_now"] == 6 + 3
    later = score_notes(model, uri, NoteSelection(unscored=True))
    assert later["notes_scored_now"] == 24 + 3  # the good notes not scored yet, and the bad again
    assert len(_note_nlp(uri)) == 30 * TASKS
    # the next night: new notes arrive, and the same command scores them (and only them)
    import psycopg

    with psycopg.connect(uri) as c:
        c.execute(
            "INSERT INTO note (note_id, person_id, note_date, note_type_concept_id, "
            "note_class_concept_id, note_text, encoding_concept_id, language_concept_id) "
            "SELECT note_id + 1000, person_id, note_date, note_type_concept_id, "
            "note_class_concept_id, note_text, encoding_concept_id, language_concept_id "
            "FROM note WHERE note_id <= 5"
        )
    night = score_notes(model, uri, NoteSelection(unscored=True))
    assert night["notes_scored_now"] == 5 + 3 and "finished_before" not in night
    assert len(_note_nlp(uri)) == 35 * TASKS
    assert score_notes(model, uri, NoteSelection(unscored=True))["notes_scored_now"] == 3


def test_mlflow_backend_on_postgresql_trains_registers_and_loads(
    postgres: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    import psycopg

    from kinpath.phenotyping.cli import cli
    from kinpath.pipelines import registry

    with psycopg.connect(postgres, autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS mlflow")
        c.execute("CREATE DATABASE mlflow")
    uri = postgres.replace("postgresql://", "postgresql+psycopg://").replace(
        "/postgres?", "/mlflow?"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    c = cli(["fit", "-c", str(ROOT / "configs/mtcnn.yaml"), "--trainer.max_epochs=1",
             "--data.data", str(ROOT / "tests/fixtures/reports.csv"),
             "--model.filters=8", "--data.max_length=100"])  # fmt: skip
    run_id = c.trainer.logger.run_id  # type: ignore[union-attr]
    r = registry.register(run_id, "kinpath-pg", uri)
    registry.promote("kinpath-pg", r.version, "champion", uri)
    mlflow.set_tracking_uri(uri)
    assert mlflow.MlflowClient().get_run(run_id).data.metrics["test/site/macro_f1"] >= 0
    scored = mlflow.pyfunc.load_model("models:/kinpath-pg@champion").predict(
        synthetic_reports(3, seed=1)[["report_id", "text"]]
    )
    assert len(scored) == 3


def test_the_schema_name_is_an_identifier_never_sql(registered: Registered, postgres: str) -> None:
    """A schema that closes the sequence name's quote and reads a note must read nothing."""
    uri = _database(postgres, "injection")
    _load_notes(uri, 5)
    model = load_model(registered.champion, registered.tracking_uri)
    attack = "x'||(SELECT note_text FROM public.note LIMIT 1)||'"
    with pytest.raises(InputError) as e:
        score_notes(model, uri, NoteSelection(schema=attack))
    assert "no table" in str(e.value)
    first = synthetic_reports(5, seed=21)["text"][0]
    assert first[:20] not in str(e.value)
    # a schema whose name holds a quote is a schema like any other
    init_schema(uri, "o'brien")
    import psycopg
    from psycopg import sql

    with psycopg.connect(uri) as c:
        c.execute(sql.SQL("INSERT INTO {} SELECT * FROM public.note WHERE note_text IS NOT NULL")
                  .format(sql.Identifier("o'brien", "note")))  # fmt: skip
    done = score_notes(model, uri, NoteSelection(schema="o'brien", unscored=True))
    assert done["notes_scored_now"] == 5 + 2
    with psycopg.connect(uri) as c:
        n = c.execute('SELECT count(*) FROM "o\'brien".note_nlp').fetchone()
    assert n == (5 * TASKS,)


def test_a_password_in_a_uri_is_never_printed(registered: Registered, tmp_path: Path) -> None:
    env = {**os.environ, "MLFLOW_TRACKING_URI": registered.tracking_uri}
    # the last with a model that is not registered: the warehouse is reached first, before a
    # model is loaded
    for uri, model in (("postgresql://postgres:S3cretPW9z@[bad/postgres", registered.champion),
                       ("postgresql://postgres:S3cretPW9z@127.0.0.1:1/postgres", registered.champion),
                       ("postgresql://postgres@127.0.0.1:1/postgres?password=S3cretPW9z&connect_timeout=2",
                        registered.champion),
                       ("postgresql://postgres@127.0.0.1:1/postgres?no_such_option=1",
                        "models:/not-registered@champion")):  # fmt: skip
        r = subprocess.run([sys.executable, "-m", "kinpath.pipelines.cli", "predict", "--model", model,
                            "--input", uri], env=env, capture_output=True, text=True, check=False,
                           timeout=120)  # fmt: skip
        assert r.returncode == 2, r.stderr[-2000:]
        assert "Traceback" not in r.stderr and "cannot connect to the warehouse" in r.stderr
        assert "S3cretPW9z" not in r.stderr + r.stdout
        if "S3cret" in uri:
            assert "carries a password" in r.stderr  # and says where it belongs instead


def test_a_second_job_on_the_same_notes_is_told_so(registered: Registered, postgres: str) -> None:
    import psycopg

    from kinpath.pipelines.omop import _selection_key

    uri = _database(postgres, "two_jobs")
    _load_notes(uri, 5)
    model = load_model(registered.champion, registered.tracking_uri)
    key = f"kinpath:public:{_selection_key(NoteSelection())}"
    with psycopg.connect(uri) as first:  # a first job holds the selection
        first.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (key,))
        with pytest.raises(InputError, match="another job is scoring these notes"):
            score_notes(model, uri)
    assert score_notes(model, uri)["notes_scored_now"] == 8  # once it is gone, the job runs


def test_a_warehouse_job_killed_alone_leaves_no_session(
    registered: Registered, postgres: str
) -> None:
    """Killing the main process ends every session of the job: no orphan worker keeps a
    transaction (and NOTE_NLP's locks) open, and the rerun finishes the notes exactly once."""
    import psycopg

    uri = _database(postgres, "killed_alone")
    _load_notes(uri, 1500)
    env = {**os.environ, "MLFLOW_TRACKING_URI": registered.tracking_uri}
    cmd = [sys.executable, "-m", "kinpath.pipelines.cli", "predict", "--model", registered.champion,
           "--chunk-size", "100", "--workers", "1", "--input", uri]  # fmt: skip
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)  # fmt: skip

    # one watching session for the whole test: a probe that connected and closed each time
    # would count its own previous backend while that one is still shutting down
    monitor = psycopg.connect(uri, autocommit=True)

    def sessions() -> int:
        return monitor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                               "AND backend_type = 'client backend' AND pid <> pg_backend_pid()").fetchone()[0]  # type: ignore[index]  # fmt: skip

    try:
        assert _wait_for_chunks(uri, 2, 240) >= 2
        os.kill(p.pid, signal.SIGKILL)  # the main process only
        p.wait()
        deadline = time.time() + 30
        while time.time() < deadline and sessions():
            time.sleep(0.1)
        assert sessions() == 0, "a session of the killed job is still open"
    finally:
        monitor.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    with psycopg.connect(uri) as c:
        per_note = c.execute("SELECT count(*), count(DISTINCT note_id) FROM note_nlp").fetchone()
    assert per_note == (1500 * TASKS, 1500)
