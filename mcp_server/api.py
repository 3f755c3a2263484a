"""The JSON API beside `/mcp`: `POST /api/events` for outside producers (webhooks), and read-only
views of runs, traces, skills and stats for scripts.

Answers are the MCP tools' shapes (`views`). Errors are `{"error": "<code>: <message>"}` with a
specific status: 400 bad input, 404 unknown, 409 wrong state, 413 too large, 415 not JSON,
429 back-pressure (with `Retry-After`), 503 the database unavailable, 500 a corrupt record.
A browser page of another site cannot post events: a POST must be `application/json` (which
needs a CORS preflight that is never granted), and a foreign `Origin` is refused.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from engine import BacklogFull, Engine, StepkeeperError
from engine.limits import MAX_EVENTS_PER_SEND
from mcp_server import views
from mcp_server.server import EngineHolder

STATUS_OF_CODE = {
    "invalid_input": 400,
    "compile_error": 400,
    "payload_too_large": 413,
    "skill_not_found": 404,
    "run_not_found": 404,
    "loop_not_found": 404,
    "skill_exists": 409,
    "invalid_state": 409,
    "backlog_full": 429,
    "store_unavailable": 503,
    "corrupt_record": 500,
}
RUN_FILTERS = ("function", "status", "since", "until", "limit", "cursor")


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _refusal(exc: StepkeeperError) -> JSONResponse:
    headers = {"Retry-After": str(math.ceil(exc.retry_after))} if isinstance(exc, BacklogFull) else None
    return error(STATUS_OF_CODE.get(exc.code, 400), f"{exc.code}: {exc}", headers)


Handler = Callable[[Request, Engine], Awaitable[BaseModel]]


class JsonApi:
    def __init__(self, holder: EngineHolder) -> None:
        self.holder = holder

    def routes(self) -> list[Route]:
        return [
            Route("/api/events", self._answer(self.send_events), methods=["POST"]),
            Route("/api/runs", self._answer(self.list_runs)),
            Route("/api/runs/{run_id}", self._answer(self.get_run)),
            Route("/api/runs/{run_id}/trace", self._answer(self.get_run_trace)),
            Route("/api/skills", self._answer(self.list_skills)),
            Route("/api/skills/{name}", self._answer(self.get_skill)),
            Route("/api/stats", self._answer(self.get_stats)),
        ]

    def _answer(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                found = await handler(request, self.holder())
            except _Refused as refused:
                return refused.response
            except StepkeeperError as exc:
                return _refusal(exc)
            return JSONResponse(found.model_dump(mode="json"))

        return endpoint

    async def send_events(self, request: Request, engine: Engine) -> views.EventsSent:
        """One event object, or a list of up to MAX_EVENTS_PER_SEND; all stored or none."""
        origin = request.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
            raise _Refused(error(403, "refused: events cannot be posted from another site's pages"))
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            raise _Refused(error(415, "send the events as JSON with Content-Type: application/json"))
        body = await _json_body(request)
        items = body if isinstance(body, list) else [body]
        if not 1 <= len(items) <= MAX_EVENTS_PER_SEND:
            raise _Refused(error(400, f"invalid_input: send 1 to {MAX_EVENTS_PER_SEND} events at a time"))
        sent = await engine.send_events(items)
        return views.EventsSent(event_ids=sent.event_ids, run_ids=sent.run_ids)

    async def list_runs(self, request: Request, engine: Engine) -> views.RunPageView:
        query = _query(request, RUN_FILTERS)
        limit = _whole_number(query.pop("limit", "20"), "limit")
        filters = [query.get(name) for name in ("function", "status", "since", "until")]
        return views.RunPageView.of(await engine.list_runs(*filters, limit, query.get("cursor")))

    async def get_run(self, request: Request, engine: Engine) -> views.RunSummary:
        return views.RunSummary.of(await engine.get_run(request.path_params["run_id"]))

    async def get_run_trace(self, request: Request, engine: Engine) -> views.Trace:
        return views.Trace(**await engine.get_run_trace(request.path_params["run_id"]))

    async def list_skills(self, request: Request, engine: Engine) -> views.SkillList:
        return views.SkillList(skills=[views.SkillSummary.of(skill) for skill in await engine.list_skills()])

    async def get_skill(self, request: Request, engine: Engine) -> views.SkillDetail:
        version = _query(request, ("version",)).get("version")
        number = None if version is None else _whole_number(version, "version")
        return views.SkillDetail.of(await engine.get_skill(request.path_params["name"], number))

    async def get_stats(self, request: Request, engine: Engine) -> views.Stats:
        query = _query(request, ("function", "since"))
        found = await engine.get_stats(query.get("function"), query.get("since"))
        return views.Stats(skills={name: views.SkillStats(**figures) for name, figures in found.items()})


class _Refused(Exception):
    """A request refused before it reaches the engine, with its answer."""

    def __init__(self, response: JSONResponse) -> None:
        self.response = response


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (ValueError, RecursionError):
        raise _Refused(error(400, "invalid_input: the body is not valid JSON")) from None


def _query(request: Request, known: tuple[str, ...]) -> dict[str, str]:
    unknown = sorted(set(request.query_params) - set(known))
    if unknown:
        known_list = ", ".join(known)
        raise _Refused(error(400, f"invalid_input: unknown parameter {unknown[0]!r}; known: {known_list}"))
    return dict(request.query_params)


def _whole_number(text: str, name: str) -> int:
    if not text.isdigit() or len(text) > 9:
        raise _Refused(error(400, f"invalid_input: {name} must be a whole number, not {text[:40]!r}"))
    return int(text)
