"""``kinpath review serve``: the review queue as a web application (FastAPI, Jinja2 pages).

Pages: ``/login``; ``/queue`` (filters ``task`` and ``reason``, counts at the top);
``/report/{report_id}`` (the text with each task's evidence highlighted, per task the
code, its ICD-O-3 name, confidence, back-off mark, top-3 alternatives, the edit check;
accept or correct, keyboard ``a`` accept, ``n`` next, ``/`` search);
``POST /report/{report_id}/decide``; ``/api/codes`` (the search box);
``/healthz`` (no login: for the hospital's monitoring). Everything it serves ships
in the package (``templates/``, ``static/``): no CDN.

What never leaves: report text appears in the report page only. The server's own
log lines name method, route (with the report id where it is the batch's; no
query), status and user; errors are logged by type
with an id, and the error page shows that id, never a message or traceback.
"""

from __future__ import annotations

import itertools
import json
import logging
import secrets
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from kinpath.common import InputError
from kinpath.pipelines.review.auth import COOKIE, Auth, Session
from kinpath.pipelines.review.codes import FIXED, CodeBook, valid_code
from kinpath.pipelines.review.queue import REASONS, Item, ordered
from kinpath.pipelines.review.store import Decision, DecisionStore, now

log = logging.getLogger("kinpath.review")
HERE = Path(__file__).parent
COLOURS = {"site": "#fde68a", "subsite": "#fcd34d", "laterality": "#bfdbfe",
           "behavior": "#ddd6fe", "histology": "#bbf7d0", "grade": "#fbcfe8"}  # fmt: skip


@dataclass
class Batch:
    """A night's scored table and the reports it was read from."""

    rows: dict[str, dict[str, Any]]  # report id → its scored row
    texts: Mapping[str, str]  # report id → the text the job read
    tasks: list[str]
    model: str
    input_sha256: str

    @classmethod
    def load(cls, scored: Path, reports: Path, id_column: str = "report_id",
             text_column: str = "text") -> Batch:  # fmt: skip
        from kinpath.kg.reports import read_records, table_sha256

        scored, reports = Path(scored), Path(reports)
        if not scored.exists():
            raise InputError("no such scored table", path=scored)
        df = (
            pd.read_parquet(scored)
            if scored.suffix.lower() == ".parquet"
            else pd.read_csv(scored, dtype=str, keep_default_na=False)
        )
        tasks = [c.removesuffix("_abstain") for c in df.columns if c.endswith("_abstain")]
        if "report_id" not in df.columns or not tasks:
            raise InputError("not a kinpath predict output (no report_id, no <task>_abstain)",
                             path=scored)  # fmt: skip
        job_file = scored.with_name(f".{scored.name}.job.json")
        job = json.loads(job_file.read_text()) if job_file.exists() else {}
        checksum = table_sha256(reports)
        if job.get("input_sha256") and job["input_sha256"] != checksum:
            raise InputError(
                f"these are not the reports {scored.name} was scored from (checksum differs): "
                "the evidence would point at other words",
                path=reports,
            )
        texts = {
            r.report_id: r.text
            for r in read_records(reports, id_column, text_column)
            if not r.error
        }
        rows = {str(r["report_id"]): r for r in df.to_dict("records") if r.get("status") != "error"}
        return cls(rows, texts, tasks, str(job.get("model", "unknown")), checksum)

    @classmethod
    def from_warehouse(cls, uri: str, schema: str = "public", system: str | None = None) -> Batch:
        """The ``NOTE_NLP`` rows of one model version (the newest when none is named); the
        notes' text is read from ``NOTE`` when a page needs it."""
        from kinpath.pipelines.review.warehouse import NoteTexts, load, selection_checksum

        rows, tasks, system = load(uri, schema, system)
        texts = NoteTexts(uri, schema, set(rows))
        model = system.removeprefix("kinpath ")
        return cls(rows, texts, tasks, model, selection_checksum(system, list(rows)))


def _true(v: object) -> bool:
    return bool(v) and str(v).lower() not in ("false", "0", "nan", "none")


def segments(text: str, evidence: dict[str, list[list[float]]]) -> list[dict[str, Any]]:
    """The text cut where any task's evidence starts or ends: each piece with the tasks (and
    the rank of their span, 0 = best) that cover it."""
    cuts = {0, len(text)}
    spans = []
    for task, ev in evidence.items():
        for rank, (a, b, _) in enumerate(ev):
            a, b = max(0, int(a)), min(len(text), int(b))
            if a < b:
                spans.append((a, b, task, rank))
                cuts |= {a, b}
    points = sorted(cuts)
    out = []
    for a, b in itertools.pairwise(points):
        cover = [(t, r) for s, e, t, r in spans if s <= a and b <= e]
        out.append({"text": text[a:b], "tasks": cover})
    return out


def create_app(
    batch: Batch,
    store: DecisionStore,
    auth: Auth,
    codes: CodeBook,
) -> FastAPI:
    app = FastAPI(title="kinpath review", docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    queue_rows = [{"record": i, **r} for i, r in enumerate(batch.rows.values())]
    queue: list[Item] = ordered(queue_rows, batch.tasks)
    position = {item.report_id: n for n, item in enumerate(queue)}

    def session(request: Request) -> Session | None:
        s = auth.session(request.cookies.get(COOKIE))
        if s is None and auth.trust_proxy and request.headers.get("x-remote-user"):
            user = request.headers["x-remote-user"]
            return Session(user, auth.proxy_csrf(user))
        return s

    @app.middleware("http")
    async def access_log(request: Request, call_next: Any) -> Response:
        try:
            response = await call_next(request)
        except Exception as e:  # no message: it could quote a report
            ref = secrets.token_hex(4)
            log.error(
                "error %s: %s on %s %s", ref, type(e).__name__, request.method, request.url.path
            )
            return HTMLResponse(templates.get_template("error.html").render(
                status=500, message=f"Something went wrong (reference {ref}); the server log has "
                "its type.", user=None), status_code=500)  # fmt: skip
        s = session(request)
        log.info("%s %s %d %s", request.method, _logged_path(request, batch), response.status_code,
                 s.user if s else "-")  # fmt: skip
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 401 and request.url.path.startswith("/api/"):
            return JSONResponse({"error": "log in first"}, status_code=401)
        if exc.status_code == 401:
            return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
        text = {404: "No such page or record in this queue.", 403: "Refused: the form was stale "
                "or not this session's (CSRF check). Reload the page and try again.",
                400: str(exc.detail)}.get(exc.status_code, "Refused.")  # fmt: skip
        page = templates.get_template("error.html").render(status=exc.status_code, message=text,
                                                           user=None)  # fmt: skip
        return HTMLResponse(page, status_code=exc.status_code)

    def need(request: Request) -> Session:
        s = session(request)
        if s is None:
            raise StarletteHTTPException(401)
        return s

    async def form(request: Request) -> dict[str, str]:
        body = (await request.body()).decode("utf-8", "replace")
        return {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}

    def check_csrf(s: Session, got: str) -> None:
        if not s.csrf or not secrets.compare_digest(got, s.csrf):
            raise StarletteHTTPException(403)

    @app.get("/healthz")
    def healthz() -> dict[str, object]:
        return {"ok": True, "queue": len(queue)}

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next: str = "/queue") -> Response:
        return templates.TemplateResponse(
            request, "login.html", {"next": _local(next), "error": "", "user": None}
        )

    @app.post("/login")
    async def login(request: Request) -> Response:
        f = await form(request)
        name, password = f.get("name", "").strip(), f.get("password", "")
        if not auth.login(name, password):
            log.warning("failed login for %r", name[:64])
            return templates.TemplateResponse(
                request, "login.html",
                {"next": _local(f.get("next", "/queue")), "error": "Wrong name or password.", "user": None},
                status_code=401,
            )  # fmt: skip
        response = RedirectResponse(_local(f.get("next", "/queue")), status_code=303)
        response.set_cookie(COOKIE, auth.cookie(name), httponly=True, samesite="strict")
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        s = need(request)
        check_csrf(s, (await form(request)).get("csrf", ""))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    @app.get("/")
    def root() -> Response:
        return RedirectResponse("/queue", status_code=303)

    def decided() -> dict[tuple[str, str], Decision]:
        return store.latest()

    @app.get("/queue", response_class=HTMLResponse)
    def queue_page(request: Request, task: str = "", reason: str = "") -> Response:
        s = need(request)
        done = decided()
        shown = [
            i
            for i in queue
            if (not task or task in i.fields) and (not reason or reason in i.reasons)
        ]
        items = []
        for i in shown:
            open_fields = [t for t in i.fields if (i.report_id, t) not in done]
            items.append({"item": i, "open": open_fields})
        fields = sum(len(i.fields) for i in queue)
        left = sum(1 for i in queue for t in i.fields if (i.report_id, t) not in done)
        counts = {
            "records": len(queue), "fields": fields, "decided": fields - left, "left": left,
            "by_task": Counter(t for i in queue for t in i.fields),
            "by_reason": Counter(r for i in queue for r in i.reasons),
            "scored": len(batch.rows),
        }  # fmt: skip
        return templates.TemplateResponse(request, "queue.html", {
            "user": s.user, "items": items, "counts": counts, "tasks": batch.tasks,
            "reasons": REASONS, "task": task, "reason": reason, "model": batch.model,
            "csrf": s.csrf,
        })  # fmt: skip

    @app.get("/report/{report_id}", response_class=HTMLResponse)
    def report_page(request: Request, report_id: str) -> Response:
        s = need(request)
        row = batch.rows.get(report_id)
        if row is None or report_id not in batch.texts:
            raise StarletteHTTPException(404)
        text = batch.texts[report_id]
        done = decided()
        evidence = {t: json.loads(row.get(f"{t}_evidence") or "[]") for t in batch.tasks}
        panels = []
        for t in batch.tasks:
            code = str(row.get(f"{t}_label") or "")
            top3 = json.loads(row.get(f"{t}_top3") or "[]")
            prob = row.get(f"{t}_prob")
            panels.append({
                "task": t, "code": code, "name": codes.name(t, code),
                "prob": None if prob is None or prob != prob else float(prob),
                "abstain": _true(row.get(f"{t}_abstain")), "backoff": _true(row.get(f"{t}_backoff")),
                "top3": [{"code": c, "prob": p, "name": codes.name(t, c)} for c, p in top3],
                "decision": done.get((report_id, t)), "colour": COLOURS.get(t, "#e5e7eb"),
                "has_evidence": bool(evidence[t]),
                "fixed": list(FIXED.get(t, {})),
            })  # fmt: skip
        n = position.get(report_id)
        nxt = next((i.report_id for i in queue[(n + 1 if n is not None else 0):]
                    if any((i.report_id, t) not in done for t in i.fields)), None)  # fmt: skip
        return templates.TemplateResponse(request, "report.html", {
            "user": s.user, "report_id": report_id, "segments": segments(text, evidence),
            "panels": panels, "edit_checks": str(row.get("edit_checks") or ""),
            "out_of_scope": _true(row.get("out_of_scope")), "colours": COLOURS,
            "next": nxt, "csrf": s.csrf, "model": batch.model,
            "in_queue": n is not None,
        })  # fmt: skip

    @app.post("/report/{report_id}/decide")
    async def decide(request: Request, report_id: str) -> Response:
        s = need(request)
        f = await form(request)
        check_csrf(s, f.get("csrf", ""))
        row = batch.rows.get(report_id)
        if row is None:
            raise StarletteHTTPException(404)
        task, action = f.get("task", ""), f.get("action", "")
        if task not in batch.tasks:
            raise StarletteHTTPException(400, f"no task {task[:40]!r}")
        model_code = str(row.get(f"{task}_label") or "")
        if action == "accept":
            if not model_code:
                raise StarletteHTTPException(400, "the model gave no code to accept: choose one")
            code = model_code
        elif action == "correct":
            code = f.get("code", "").strip()
            if not valid_code(task, code, codes):
                raise StarletteHTTPException(400, f"{code[:40]!r} is not a {task} code")
        else:
            raise StarletteHTTPException(400, "the action is accept or correct")
        store.append(Decision(report_id, task, model_code, code, action, s.user, now(),
                              batch.model, batch.input_sha256))  # fmt: skip
        log.info("decision: %s %s %s by %s", report_id, task, action, s.user)
        return RedirectResponse(f"/report/{quote(report_id)}#{task}", status_code=303)

    @app.get("/api/codes")
    def search(request: Request, task: str, q: str = "") -> Response:
        need(request)
        if task not in batch.tasks:
            raise StarletteHTTPException(404)
        return JSONResponse(codes.search(task, q))

    return app


def _logged_path(request: Request, batch: Batch) -> str:
    """The path as the log may show it: the route, with the report id only where it is one of
    the batch's (an address typed by hand may hold anything, a name too)."""
    route = request.scope.get("route")
    template = getattr(route, "path", None)
    if template is None:
        return "(no such page)"
    rid = request.path_params.get("report_id")
    if rid is None:
        return str(template)
    return str(template).replace("{report_id}", rid if rid in batch.rows else "(unknown id)")


def _local(path: str) -> str:
    """Only a path on this server (no open redirect to another host)."""
    return path if path.startswith("/") and not path.startswith("//") else "/queue"
