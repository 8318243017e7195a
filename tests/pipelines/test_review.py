"""The registrar's desk: the review server, its safety, decisions that survive, and the export
that trains the next model."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest

from kinpath.kg.graph import build_graph
from kinpath.pipelines.batch import load_model, predict
from kinpath.pipelines.review.auth import add_user
from kinpath.pipelines.review.store import DecisionStore
from kinpath.pipelines.synthetic import synthetic_reports, write_mini_graph
from tests.pipelines.conftest import ROOT, Registered, _inside

NAME = "Ottoline Quillfeather"  # a made-up patient name planted in every report
PASSWORD = "correct horse battery"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@dataclass
class Desk:
    folder: Path
    scored: Path
    reports: Path
    graph: Path
    users: Path

    def args(self, store: str, port: int) -> list[str]:
        return [sys.executable, "-m", "kinpath.pipelines.cli", "review", "serve", "--scored", str(self.scored),
                "--reports", str(self.reports), "--graph", str(self.graph), "--users",
                str(self.users), "--store", store, "--port", str(port)]  # fmt: skip


@pytest.fixture(scope="module")
def desk(registered: Registered, tmp_path_factory: pytest.TempPathFactory) -> Desk:
    folder = tmp_path_factory.mktemp("desk")
    reports = synthetic_reports(30, seed=8)
    reports["text"] = "Patient: " + NAME + ".\n" + reports["text"]
    reports[["report_id", "text"]].to_csv(folder / "tonight.csv", index=False)
    model = load_model(registered.champion, registered.tracking_uri)
    predict(model, folder / "tonight.csv", folder / "scored.parquet")
    build_graph(folder / "graph", umls_dirs=[write_mini_graph(folder / "META")])
    add_user(folder / "users.txt", "rita", PASSWORD)
    return Desk(folder, folder / "scored.parquet", folder / "tonight.csv", folder / "graph",
                folder / "users.txt")  # fmt: skip


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path


def _start(desk: Desk, store: str, log: Path) -> Server:
    port = _port()
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    with open(log, "ab") as out:
        p = subprocess.Popen(desk.args(store, port), stdout=out, stderr=subprocess.STDOUT,
                             env=env, start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(url + "/healthz").status_code == 200:
                return Server(url, p, log)
        except httpx.TransportError:
            pass
        if p.poll() is not None:
            raise AssertionError(f"the server exited: {log.read_text()[-2000:]}")
        time.sleep(0.1)
    raise AssertionError("the server did not answer in 30 s")


def _stop(server: Server) -> None:
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait()


@pytest.fixture(scope="module")
def server(desk: Desk) -> Iterator[Server]:
    s = _start(desk, f"sqlite:///{desk.folder / 'review.db'}", desk.folder / "server.log")
    yield s
    _stop(s)


def _login(url: str) -> httpx.Client:
    c = httpx.Client(base_url=url)
    r = c.post("/login", data={"name": "rita", "password": PASSWORD, "next": "/queue"})
    assert r.status_code == 303 and r.headers["location"] == "/queue"
    return c


def _csrf(page: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', page)
    assert m, "no CSRF token in the page"
    return m.group(1)


def _first_in_queue(c: httpx.Client) -> str:
    m = re.search(r'href="/report/([^"]+)"', c.get("/queue").text)
    assert m, "the queue is empty"
    return m.group(1)


def test_every_page_needs_a_login(server: Server) -> None:
    for path in ("/queue", "/report/SYN-8-00000"):
        r = httpx.get(server.url + path)
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert httpx.get(server.url + "/api/codes?task=site&q=lung").status_code == 401
    r = httpx.post(
        server.url + "/report/SYN-8-00000/decide", data={"task": "site", "action": "accept"}
    )
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    bad = httpx.post(server.url + "/login", data={"name": "rita", "password": "wrong password"})
    assert bad.status_code == 401


def test_a_post_without_this_sessions_csrf_token_is_refused(server: Server, desk: Desk) -> None:
    c = _login(server.url)
    rid = _first_in_queue(c)
    before = len(DecisionStore(f"sqlite:///{desk.folder / 'review.db'}").all())
    for data in ({"task": "site", "action": "accept"},
                 {"task": "site", "action": "accept", "csrf": "forged"}):  # fmt: skip
        assert c.post(f"/report/{rid}/decide", data=data).status_code == 403
    other = _login(server.url)  # another session's token is not this one's
    token = _csrf(other.get(f"/report/{rid}").text)
    if token != _csrf(c.get(f"/report/{rid}").text):
        assert c.post(f"/report/{rid}/decide", data={"task": "site", "action": "accept",
                                                    "csrf": token}).status_code == 403  # fmt: skip
    assert len(DecisionStore(f"sqlite:///{desk.folder / 'review.db'}").all()) == before


def test_an_unknown_record_is_a_404_page(server: Server) -> None:
    c = _login(server.url)
    r = c.get("/report/NO-SUCH-REPORT")
    assert r.status_code == 404 and "Traceback" not in r.text and "No such" in r.text


def test_the_report_page_shows_codes_with_evidence_and_names(server: Server) -> None:
    c = _login(server.url)
    rid = _first_in_queue(c)
    page = c.get(f"/report/{rid}").text
    assert NAME in page  # the registrar reads the report...
    assert page.count('<mark class="ev') >= 3  # ...with the evidence highlighted
    hits = c.get("/api/codes", params={"task": "histology", "q": "lobular"}).json()
    assert hits and hits[0]["code"] == "8520" and "obular" in hits[0]["name"]


def test_a_planted_name_never_reaches_the_log_or_the_store(server: Server, desk: Desk) -> None:
    c = _login(server.url)
    rid = _first_in_queue(c)
    page = c.get(f"/report/{rid}").text
    c.post(f"/report/{rid}/decide", data={"task": "grade", "action": "correct", "code": "G2",
                                          "csrf": _csrf(page)})  # fmt: skip
    c.get("/api/codes", params={"task": "site", "q": "breast"})
    c.post(f"/report/{rid}/decide", data={"task": "nope", "action": "accept", "csrf": _csrf(page)})
    c.get("/report/" + NAME.replace(" ", "%20"))  # a name typed into the address: an id, a 404
    log = server.log.read_text()
    assert "GET /report/" in log and "decision:" in log  # the log says what happened...
    text = pd.read_csv(desk.reports)["text"].iloc[0]
    assert "Ottoline" not in log.replace(
        "/report/Ottoline%20Quillfeather", ""
    )  # ...not what was read
    assert "Quillfeather" not in log.replace("/report/Ottoline%20Quillfeather", "")
    assert text[40:80] not in log
    db = b"".join(f.read_bytes() for f in desk.folder.glob("review.db*"))
    assert b"Quillfeather" not in db and text[40:80].encode() not in db


def test_a_killed_server_keeps_every_decision_it_answered(desk: Desk, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'kill.db'}"
    s = _start(desk, store, tmp_path / "kill.log")
    c = _login(s.url)
    rid = _first_in_queue(c)
    page = c.get(f"/report/{rid}").text
    r = c.post(
        f"/report/{rid}/decide", data={"task": "site", "action": "accept", "csrf": _csrf(page)}
    )
    assert r.status_code == 303
    _stop(s)  # kill -9 between two decisions
    assert [(d.record_id, d.task, d.action) for d in DecisionStore(store).all()] == [
        (rid, "site", "accept")
    ]
    s = _start(desk, store, tmp_path / "kill.log")
    try:
        c = _login(s.url)
        page = c.get(f"/report/{rid}").text
        assert "decided: <b>" in page  # the first decision is shown after the restart
        c.post(f"/report/{rid}/decide", data={"task": "grade", "action": "correct", "code": "G3",
                                              "csrf": _csrf(page)})  # fmt: skip
    finally:
        _stop(s)
    assert [d.task for d in DecisionStore(store).all()] == ["site", "grade"]


@pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="needs Debian's chromium (.ci/run installs it)"
)
def test_a_registrar_accepts_and_corrects_in_a_real_browser(desk: Desk, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    store = f"sqlite:///{tmp_path / 'browser.db'}"
    s = _start(desk, store, tmp_path / "browser.log")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"])  # fmt: skip
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.goto(s.url + "/queue")
            assert "/login" in page.url
            page.fill("input[name=name]", "rita")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url("**/queue")
            page.click("#queue tbody tr:first-child a")
            page.wait_for_selector("#report-text")
            rid = page.url.rsplit("/", 1)[-1]
            first = page.locator("article.field.review").first.get_attribute("data-task")
            page.keyboard.press("a")  # accept the first field to review
            page.wait_for_selector(f"article#{first}.decided")
            histology = page.locator("article#histology")
            histology.locator("input.search").fill("lobular")
            histology.locator("ul.hits button.hit").first.click()
            assert histology.locator("input.search").input_value() == "8520"
            histology.locator("form.correct button[type=submit]").click()
            page.wait_for_selector("article#histology.decided")
            page.reload()
            assert page.locator("article.field.decided").count() >= 2
            # everything a registrar needs is on one 1366x768 screen: no sideways scrolling
            assert page.evaluate("document.documentElement.scrollWidth") <= 1366
            shots = Path(os.environ.get("KINPATH_SCREENSHOTS", tmp_path))
            shots.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shots / "review-report.png"))
            browser.close()
    finally:
        _stop(s)
    latest = DecisionStore(store).latest()
    assert latest[(rid, first)].action == "accept"
    assert latest[(rid, "histology")].registrar_code == "8520"
    assert latest[(rid, "histology")].reviewer == "rita"


def test_export_trains_beside_the_other_tables(
    desk: Desk, registered: Registered, tmp_path: Path
) -> None:
    from kinpath.phenotyping.cli import cli
    from kinpath.pipelines.review.export import export
    from kinpath.pipelines.review.store import Decision, now

    store = f"sqlite:///{tmp_path / 'export.db'}"
    ds = DecisionStore(store)
    truth = synthetic_reports(30, seed=8).set_index("report_id")
    ids = list(truth.index[:12])
    for rid in ids:
        ds.append(Decision(rid, "site", "C00", "C00", "accept", "rita", now(), "m/1", "x"))
        ds.append(
            Decision(
                rid, "site", "C00", truth.loc[rid, "site"], "correct", "sam", now(), "m/1", "x"
            )
        )
        ds.append(
            Decision(
                rid,
                "histology",
                "",
                truth.loc[rid, "histology"],
                "correct",
                "rita",
                now(),
                "m/1",
                "x",
            )
        )
    summary = export(store, desk.reports, tmp_path / "reviewed.csv")
    table = pd.read_csv(tmp_path / "reviewed.csv", dtype=str, keep_default_na=False)
    assert summary["reports"] == 12 and sorted(table["report_id"]) == sorted(ids)
    assert (table.set_index("report_id")["site"] == truth.loc[ids, "site"]).all()  # the latest wins
    assert (table["grade"] == "").all()  # nobody decided it: empty, masked in the loss
    assert table["text"].str.contains(NAME).all()  # read from the reports at export time
    assert set(table["split"]) <= {"train", "val"}
    with _inside(tmp_path, f"sqlite:///{tmp_path / 'mlruns.db'}"):
        c = cli(["fit", "-c", str(ROOT / "configs/mtcnn.yaml"), "--data.data",
                 f"[{ROOT / 'tests/fixtures/reports.csv'}, {tmp_path / 'reviewed.csv'}]",
                 "--trainer.max_epochs=1", "--model.filters=16", "--data.max_length=200"],
                quiet=True)  # fmt: skip
    dm = c.datamodule
    assert "reviewed" in set(dm.source_of) and c.trainer.current_epoch == 1


def test_a_warehouse_is_reviewed_from_note_nlp_and_exported_from_note(
    registered: Registered, postgres: str, tmp_path: Path
) -> None:
    """NOTE_NLP rows of the model's version make the queue, NOTE gives the text, decisions go to
    a kinpath table in the warehouse, and the export reads the notes' text and persons."""
    import psycopg

    from kinpath.pipelines.cdm import init_schema
    from kinpath.pipelines.omop import score_notes
    from kinpath.pipelines.review.export import export

    with psycopg.connect(postgres, autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS review_wh")
        c.execute("CREATE DATABASE review_wh")
    uri = postgres.replace("/postgres?", "/review_wh?")
    init_schema(uri)
    texts = ("Patient: " + NAME + ".\n" + synthetic_reports(12, seed=9)["text"]).tolist()
    with psycopg.connect(uri) as c:
        for i, text in enumerate(texts, start=1):
            c.execute("INSERT INTO note (note_id, person_id, note_date, note_type_concept_id, "
                      "note_class_concept_id, note_text, encoding_concept_id, language_concept_id) "
                      "VALUES (%s, %s, '2026-12-01', 1, 1, %s, 0, 0)", (i, 500 + i, text))  # fmt: skip
    score_notes(load_model(registered.champion, registered.tracking_uri), uri)
    (tmp_path / "token").write_text("a-shared-token-for-the-team\n")
    port = _port()
    cmd = [sys.executable, "-m", "kinpath.pipelines.cli", "review", "serve", "--warehouse", uri,
           "--token-file", str(tmp_path / "token"), "--port", str(port)]  # fmt: skip
    with open(tmp_path / "wh.log", "wb") as out:
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                             env=os.environ | {"PYTHONPATH": str(ROOT)})  # fmt: skip
    s = Server(f"http://127.0.0.1:{port}", p, tmp_path / "wh.log")
    try:
        for _ in range(300):
            try:
                if httpx.get(s.url + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        c = httpx.Client(base_url=s.url)
        r = c.post("/login", data={"name": "sam", "password": "a-shared-token-for-the-team"})
        assert r.status_code == 303
        rid = _first_in_queue(c)
        page = c.get(f"/report/{rid}").text
        assert NAME in page and '<mark class="ev' in page  # NOTE's text, NOTE_NLP's evidence
        r = c.post(f"/report/{rid}/decide", data={"task": "site", "action": "correct",
                                                  "code": "C50", "csrf": _csrf(page)})  # fmt: skip
        assert r.status_code == 303
    finally:
        _stop(s)
    (d,) = DecisionStore(uri).all()
    assert (d.record_id, d.task, d.registrar_code, d.reviewer) == (rid, "site", "C50", "sam")
    assert d.model.startswith("kinpath-test/")
    summary = export(uri, None, tmp_path / "reviewed.csv", warehouse=uri)
    table = pd.read_csv(tmp_path / "reviewed.csv", dtype=str, keep_default_na=False)
    assert summary["reports"] == 1 and table.loc[0, "text"] == texts[int(rid) - 1]
    assert table.loc[0, "patient_id"] == str(500 + int(rid)) and table.loc[0, "site"] == "C50"
    assert NAME not in s.log.read_text()
