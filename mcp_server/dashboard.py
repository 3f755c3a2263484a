"""The dashboard: server-rendered pages (Jinja2) in the same Starlette app as `/mcp`.

Runs (filter, paginate), a run (waterfall of steps and attempts, input/output/error/logs per
step, cancel, rerun, rerun from a step), skills (highlighted code, versions and diffs, edit,
delete, stats), loops (pause/resume), events. Pages with `data-live` refresh their fragment
every second until the run is final, so they follow runs without reloading.

Every POST must come from the dashboard itself (its `Origin`, or `Referer`, names the host the
request was sent to), so another site open in the same browser cannot press its buttons.
"""

from __future__ import annotations

import difflib
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from jinja2 import Environment, FileSystemLoader
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import DiffLexer, PythonLexer
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from engine import Engine, StepkeeperError
from engine.errors import RunNotFound, SkillNotFound
from engine.otel import otel_trace
from engine.records import FINAL_STATUSES, RUN_STATUSES, Run
from engine.run_history import since_time
from mcp_server.server import EngineHolder

TEMPLATES = Path(__file__).parent / "templates"
PAGE_SIZE = 50
TRACKED_TABS = ("input", "output", "error", "attempts", "logs", "llm")
# Starlette caps a form field at 1 MiB with a 400; the HTTP body limit (413) is the cap that counts.
MAX_FORM_FIELD_BYTES = 4 * 1024 * 1024


def _when(value: Any) -> str:
    if value is None or value == "":
        return "—"
    moment = datetime.fromtimestamp(value, UTC) if isinstance(value, int | float) else _parse(value)
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else str(value)


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _duration(run: Run) -> str:
    if run.started_at is None:
        return "—"
    seconds = (run.ended_at or time.time()) - run.started_at
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _pretty(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, indent=2, default=str)


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True)
    env.filters.update(
        when=_when,
        duration=_duration,
        pretty=_pretty,
        compact=lambda value: json.dumps(value, default=str),
        percent=lambda value: f"{value * 100:.1f} %" if isinstance(value, int | float) else "—",
        ms=lambda value: f"{value:.0f} ms" if isinstance(value, int | float) else "—",
        tab_id=lambda key: "step-" + re.sub(r"[^A-Za-z0-9_-]", "_", key),
    )
    return env


def _version(text: str | None) -> int | None:
    if not text:
        return None
    number = int(text)
    if not 1 <= number <= 1_000_000:
        raise ValueError(text)
    return number


class Dashboard:
    def __init__(self, holder: EngineHolder) -> None:
        self.holder = holder
        self.env = _environment()

    @property
    def engine(self) -> Engine:
        return self.holder()

    def routes(self) -> list[Route]:
        return [
            Route("/", lambda _: RedirectResponse("/runs", status_code=307)),
            Route("/runs", self.runs),
            Route("/runs/{run_id}", self.run),
            Route("/runs/{run_id}/body", self.run_body),
            Route("/runs/{run_id}/otel.json", self.run_otel),
            Route("/runs/{run_id}/cancel", self.cancel, methods=["POST"]),
            Route("/runs/{run_id}/rerun", self.rerun, methods=["POST"]),
            Route("/skills", self.skills),
            Route("/skills/{name}", self.skill),
            Route("/skills/{name}/update", self.update_skill, methods=["POST"]),
            Route("/skills/{name}/delete", self.delete_skill, methods=["POST"]),
            Route("/loops", self.loops),
            Route("/loops/{loop_id}/{action:str}", self.pause_or_resume, methods=["POST"]),
            Route("/events", self.events),
        ]

    def render(self, template: str, **values: Any) -> HTMLResponse:
        return HTMLResponse(self.env.get_template(template).render(**values))

    def problem(self, status: int, message: str) -> HTMLResponse:
        page = "{% extends 'base.html' %}{% block main %}<h1>{{ m }}</h1>{% endblock %}"
        return HTMLResponse(self.env.from_string(page).render(m=message, section=""), status_code=status)

    # runs ----------------------------------------------------------------------------------

    async def runs(self, request: Request) -> Response:
        query = request.query_params
        skill, status = query.get("skill") or None, query.get("status") or None
        since, cursor = query.get("since") or None, query.get("cursor") or None
        try:
            start = None if since is None else since_time(since, time.time())
            page = await self.engine.list_runs(
                function=skill, status=status, since=start, limit=PAGE_SIZE, cursor=cursor
            )
        except StepkeeperError as exc:
            return self.problem(400, str(exc))
        filters = {k: v for k, v in {"skill": skill, "status": status, "since": since}.items() if v}
        values = {
            "runs": page.runs,
            "next_url": f"/runs?{urlencode({**filters, 'cursor': page.next_cursor})}"
            if page.next_cursor
            else None,
        }
        if request.headers.get("x-fragment"):
            return self.render("runs_table.html", **values)
        skills = sorted(s.name for s in await self.engine.list_skills())
        live_url = f"/runs?{urlencode(filters)}" if cursor is None else ""
        return self.render(
            "runs.html",
            section="Runs",
            skills=skills,
            statuses=sorted(RUN_STATUSES),
            skill=skill,
            status=status,
            since=since,
            live_url=live_url,
            **values,
        )

    async def run(self, request: Request) -> Response:
        try:
            values = await self._run_values(request.path_params["run_id"])
        except RunNotFound as exc:
            return self.problem(404, str(exc))
        return self.render("run.html", section="Runs", **values)

    async def run_body(self, request: Request) -> Response:
        try:
            values = await self._run_values(request.path_params["run_id"])
        except RunNotFound as exc:
            return self.problem(404, str(exc))
        return self.render("run_body.html", **values)

    async def run_otel(self, request: Request) -> Response:
        try:
            trace = await self.engine.get_run_trace(request.path_params["run_id"])
        except RunNotFound as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        return JSONResponse(otel_trace(trace))

    async def _run_values(self, run_id: str) -> dict[str, Any]:
        run = await self.engine.get_run(run_id)
        trace = await self.engine.get_run_trace(run_id)
        spans = [self._span(span, run, trace["logs"]) for span in trace["spans"]]
        return {
            "run": run,
            "final": run.status in FINAL_STATUSES,
            "spans": spans,
            "logs": trace["logs"],
            "children": trace["children"],
        }

    @staticmethod
    def _span(span: dict[str, Any], run: Run, logs: list[dict[str, Any]]) -> dict[str, Any]:
        """A trace span with its waterfall bars, placed on the run's time line in percent."""
        origin = run.created_at
        total = max((run.ended_at or time.time()) - origin, 1e-3)

        def bar(kind: str, start: datetime | None, end: datetime | None, status: str, title: str) -> dict:
            begin = (start.timestamp() if start else origin) - origin
            finish = (end.timestamp() if end else time.time()) - origin
            left = min(max(begin / total * 100, 0.0), 100.0)
            width = min(max((finish - begin) / total * 100, 0.6), 100.0 - left)
            return {
                "kind": kind,
                "left": round(left, 2),
                "width": round(width, 2),
                "status": status,
                "title": title,
            }

        attempts = span.get("attempts") or []
        first_start = _parse(attempts[0].get("started_at")) if attempts else _parse(span.get("started_at"))
        bars = [bar("queued", _parse(span.get("queued_at")), first_start, "", "queued")]
        for attempt in attempts:
            title = f"attempt {attempt['attempt']}: {attempt['status']}"
            bars.append(
                bar(
                    "working",
                    _parse(attempt.get("started_at")),
                    _parse(attempt.get("ended_at")),
                    attempt["status"],
                    title,
                )
            )
        view = {**span, "bars": bars}
        view["attempts"] = attempts
        lines = [
            f"{line['ts']} {line['level'].upper()} {line['message']}"
            for line in logs
            if line["step"] == span["key"]
        ]
        view["logs"] = "\n".join(lines) or None
        for name in TRACKED_TABS:
            view.setdefault(name, None)
        return view

    async def cancel(self, request: Request) -> Response:
        return await self._act(
            request, lambda: self.engine.cancel_run(request.path_params["run_id"], "dashboard")
        )

    async def rerun(self, request: Request) -> Response:
        refused = self._foreign(request)
        if refused:
            return refused
        form = await request.form(max_part_size=MAX_FORM_FIELD_BYTES)
        from_step = str(form.get("from_step") or "") or None
        try:
            new = await self.engine.rerun(request.path_params["run_id"], from_step=from_step)
        except StepkeeperError as exc:
            return self.problem(400, str(exc))
        return RedirectResponse(f"/runs/{new.id}", status_code=303)

    # skills --------------------------------------------------------------------------------

    async def skills(self, request: Request) -> Response:
        skills = await self.engine.list_skills()
        stats = await self.engine.get_stats(since="7d")
        return self.render("skills.html", section="Skills", skills=skills, stats=stats)

    async def skill(self, request: Request) -> Response:
        name, query = request.path_params["name"], request.query_params
        try:
            version = _version(query.get("version"))
            details = await self.engine.get_skill(name, version)
            diff_a = _version(query.get("a")) or max(1, details.skill.latest_version - 1)
            diff_b = _version(query.get("b")) or details.skill.latest_version
            diff_html = await self._diff(name, diff_a, diff_b)
        except ValueError:
            return self.problem(400, "versions are whole numbers from 1 to 1,000,000")
        except (SkillNotFound, StepkeeperError) as exc:
            return self.problem(404, str(exc))
        runs = (await self.engine.list_runs(function=name, limit=20)).runs
        figures = (await self.engine.get_stats(function=name, since="7d")).get(name)
        formatter = HtmlFormatter(noclasses=True, linenos="table")
        return self.render(
            "skill.html",
            section="Skills",
            details=details,
            code_html=highlight(details.version.code, PythonLexer(), formatter),
            diff_a=diff_a,
            diff_b=diff_b,
            diff_html=diff_html,
            runs=runs,
            figures=figures,
            message=query.get("message"),
            next_url=None,
        )

    async def _diff(self, name: str, a: int, b: int) -> str | None:
        if a == b:
            return None
        old = (await self.engine.get_skill(name, a)).version.code
        new = (await self.engine.get_skill(name, b)).version.code
        lines = difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), f"v{a}", f"v{b}"
        )
        text = "".join(lines) or "(no change in code)\n"
        return highlight(text, DiffLexer(), HtmlFormatter(noclasses=True))

    async def update_skill(self, request: Request) -> Response:
        refused = self._foreign(request)
        if refused:
            return refused
        name = request.path_params["name"]
        code = str((await request.form(max_part_size=MAX_FORM_FIELD_BYTES)).get("code") or "")
        try:
            await self.engine.update_skill(name, code=code.replace("\r\n", "\n"))
        except StepkeeperError as exc:
            return RedirectResponse(f"/skills/{name}?{urlencode({'message': str(exc)})}", status_code=303)
        return RedirectResponse(f"/skills/{name}", status_code=303)

    async def delete_skill(self, request: Request) -> Response:
        return await self._act(
            request, lambda: self.engine.delete_skill(request.path_params["name"]), "/skills"
        )

    # loops and events ----------------------------------------------------------------------

    async def loops(self, request: Request) -> Response:
        items = []
        for loop in await self.engine.list_loops():
            recent = (await self.engine.list_runs(function=loop.skill, limit=3)).runs
            items.append({"loop": loop, "next": self.engine.upcoming_ticks(loop), "runs": recent})
        return self.render("loops.html", section="Loops", loops=items)

    async def pause_or_resume(self, request: Request) -> Response:
        action = request.path_params["action"]
        if action not in ("pause", "resume"):
            return self.problem(404, f"no action {action!r}: pause or resume")
        loop_id = request.path_params["loop_id"]
        return await self._act(
            request, lambda: self.engine.update_loop(loop_id, paused=action == "pause"), "/loops"
        )

    async def events(self, request: Request) -> Response:
        events = await self.engine.list_events(limit=100)
        items = [{"event": event, "runs": await self.engine.run_ids_for_event(event.id)} for event in events]
        return self.render("events.html", section="Events", events=items)

    # actions -------------------------------------------------------------------------------

    async def _act(self, request: Request, action: Any, then: str | None = None) -> Response:
        refused = self._foreign(request)
        if refused:
            return refused
        await request.body()  # read before acting, so an oversized body is refused (413), not acted on
        try:
            await action()
        except StepkeeperError as exc:
            return self.problem(400, str(exc))
        return RedirectResponse(then or f"/runs/{request.path_params['run_id']}", status_code=303)

    def _foreign(self, request: Request) -> Response | None:
        """403 unless the request comes from one of this server's own pages: its Origin (or
        Referer) names the host the request was sent to (already checked against the allowed
        hosts)."""
        source = request.headers.get("origin") or request.headers.get("referer") or ""
        parts = urlsplit(source)
        if parts.scheme in ("http", "https") and parts.netloc and parts.netloc == request.headers.get("host"):
            return None
        return self.problem(403, "refused: dashboard actions must come from the dashboard's own pages")
