"""The HTTP surface of one real `stepkeeper serve --http`, fuzzed: the dashboard's pages and
buttons, the JSON API and `POST /mcp`, with arbitrary path segments, query strings, form and
JSON bodies and headers.

Properties: never a 5xx, never a traceback in a body, a refusal (4xx) says what was refused,
the server answers the next request, a refused request (and any GET) leaves the store as it was.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import httpx
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from tests.fuzz.common import (
    BARE,
    JSON_VALUES,
    NASTY_STRINGS,
    ODD_TEXT,
    PYTHON_EXCEPTION,
    TIMEOUT,
    TRACEBACK,
    Snapshot,
    changed_tables,
    fuzz_settings,
    settled,
    snapshot,
)
from tests.support.http_server import base_env, start_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(TIMEOUT)]

# -- the routes fuzzed: extend these lists as routes are added -----------------------------
# `{run}`, `{skill}`, `{loop}` and `{action}` are filled with known ids and names, or odd text.
DASHBOARD_GET = [
    "/",
    "/runs",
    "/runs/{run}",
    "/runs/{run}/body",
    "/runs/{run}/otel.json",
    "/skills",
    "/skills/{skill}",
    "/loops",
    "/events",
]
DASHBOARD_POST = [
    "/runs/{run}/cancel",
    "/runs/{run}/rerun",
    "/skills/{skill}/update",
    "/skills/{skill}/delete",
    "/loops/{loop}/{action}",
]
API_GET = [
    "/api/runs",
    "/api/runs/{run}",
    "/api/runs/{run}/trace",
    "/api/skills",
    "/api/skills/{skill}",
    "/api/stats",
]
API_POST = ["/api/events"]
QUERY_KEYS = [
    "skill",
    "status",
    "since",
    "until",
    "cursor",
    "version",
    "a",
    "b",
    "message",
    "function",
    "limit",
]
FORM_KEYS = ["code", "from_step", "name", "data"]
# -------------------------------------------------------------------------------------------

SKILL = "fz-http"
EVENT = "fz.http"
OK_BODY = "def handler(ctx, step):\n    return step.run('first', lambda: ctx.event['data'])\n"
PROTOCOL = "2025-11-25"
SSE_DATA = re.compile(r"^data: ?(.*)$", re.MULTILINE)
H1 = re.compile(r"<h1[^>]*>(.*?)</h1>", re.DOTALL)


class HttpServed:
    """The server process, a client bound to it, its MCP session, and the ids it gave out."""

    def __init__(self, home: Path) -> None:
        self.server = start_server(home, base_env(home), inherit_env=False)
        self.database = home / "stepkeeper.db"
        self.client = httpx.Client(base_url=self.server.base, timeout=60, follow_redirects=False)
        self.session_id = ""
        self.runs: list[str] = []
        self.loops: list[str] = []
        self.state: Snapshot = {}

    def __repr__(self) -> str:  # hypothesis prints it with every failing example
        return f"HttpServed({self.server.base}, pid={self.server.process.pid})"

    def mcp_headers(self) -> dict[str, str]:
        headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
        if self.session_id:
            headers |= {"mcp-session-id": self.session_id, "mcp-protocol-version": PROTOCOL}
        return headers

    def mcp(self, method: str, params: dict[str, Any] | None = None, id: int | None = 1) -> Any:
        """One JSON-RPC message over Streamable HTTP (2025-11-25), its answer parsed."""
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if id is not None:
            message["id"] = id
        if params is not None:
            message["params"] = params
        response = self.client.post("/mcp", json=message, headers=self.mcp_headers())
        assert response.status_code < 300, response.text
        self.session_id = self.session_id or response.headers.get("mcp-session-id", "")
        return json_rpc_answer(response)

    def remember(self, found: Any) -> None:
        if isinstance(found, dict):
            for key, value in found.items():
                if key in ("run_id", "run_ids", "loop_id") and isinstance(value, str | list):
                    ids = value if isinstance(value, list) else [value]
                    known = self.loops if key == "loop_id" else self.runs
                    known.extend(item for item in ids if isinstance(item, str) and item not in known)
                    del known[:-30]
                else:
                    self.remember(value)
        elif isinstance(found, list):
            for item in found:
                self.remember(item)

    def stop(self) -> None:
        self.client.close()
        self.server.stop()


def json_rpc_answer(response: httpx.Response) -> Any:
    """The JSON-RPC message of a response: the body, or the last `data:` of an event stream."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        found = [json.loads(data) for data in SSE_DATA.findall(response.text) if data.strip()]
        return found[-1] if found else None
    try:
        return response.json()
    except ValueError:
        return None


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServed]:
    server = HttpServed(tmp_path_factory.mktemp("fuzz-http"))
    try:
        server.mcp(
            "initialize",
            {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "fuzz", "version": "1"}},
        )
        server.mcp("notifications/initialized", id=None)
        for name, arguments in [
            ("create_skill", {"name": SKILL, "code": OK_BODY, "triggers": [{"event": EVENT}]}),
            ("invoke_function", {"name": SKILL, "data": {"n": 1}}),
            ("schedule_loop", {"skill": SKILL, "cron": "0 0 1 1 *"}),
        ]:
            answer = server.mcp("tools/call", {"name": name, "arguments": arguments})
            assert not answer["result"].get("isError"), answer
            server.remember(answer["result"].get("structuredContent"))
        assert server.runs and server.loops
        server.state = settled(server.database)
        yield server
    finally:
        server.stop()


# -- what to send --------------------------------------------------------------------------


def _known(known: list[str], fallback: str) -> st.SearchStrategy[str]:
    """A known id by position (so the draws stay alike while ids are learnt), or the fallback."""
    return st.integers(0, 31).map(lambda index: known[index % len(known)] if known else fallback)


def _segment(served: HttpServed, kind: str) -> st.SearchStrategy[str]:
    known = {
        "run": _known(served.runs, "run_x"),
        "loop": _known(served.loops, "loop_x"),
        "skill": st.sampled_from([SKILL, "ghost"]),
        "action": st.sampled_from(["pause", "resume", "delete", "PAUSE"]),
    }[kind]
    return known | st.sampled_from(NASTY_STRINGS) | ODD_TEXT


def _path(served: HttpServed, template: str, draw: st.DrawFn) -> str:
    """The route with each placeholder filled and percent-encoded (every byte a segment)."""
    path = template
    for kind in re.findall(r"\{(\w+)\}", template):
        segment = draw(_segment(served, kind), label=kind)
        path = path.replace("{" + kind + "}", quote(segment, safe="") or "%20", 1)
    return path


def _query(draw: st.DrawFn) -> dict[str, str]:
    keys = st.sampled_from(QUERY_KEYS) | ODD_TEXT
    values = st.sampled_from(["", "7d", "1", "0", "-1", "99999999999", "2020-01-01T00:00:00Z", "completed"])
    return draw(st.dictionaries(keys, values | st.sampled_from(NASTY_STRINGS) | ODD_TEXT, max_size=4))


def _origin(served: HttpServed) -> st.SearchStrategy[dict[str, str]]:
    """Mostly the dashboard's own pages (so the action runs); sometimes another site, or none."""
    own = {"origin": served.server.base}
    return st.sampled_from(
        [own, own, own, {"referer": served.server.base + "/runs"}, {}, {"origin": "http://evil.test"}]
    )


def _body(draw: st.DrawFn, keys: list[str]) -> dict[str, Any]:
    """httpx keyword arguments for a form, a JSON body, raw bytes, or nothing."""
    kind = draw(st.sampled_from(["form", "json", "raw", "none"]), label="body kind")
    if kind == "form":
        fields = st.dictionaries(st.sampled_from(keys) | ODD_TEXT, ODD_TEXT | st.sampled_from(NASTY_STRINGS))
        return {"data": draw(fields)}
    if kind == "json":
        return {"content": json.dumps(draw(JSON_VALUES)), "headers": {"content-type": "application/json"}}
    if kind == "raw":
        content_type = draw(
            st.sampled_from(["application/x-www-form-urlencoded", "multipart/form-data", "text/plain", "a/b"])
        )
        return {"content": draw(st.binary(max_size=300)), "headers": {"content-type": content_type}}
    return {}


# -- the properties ------------------------------------------------------------------------


def message_of(response: httpx.Response) -> str:
    """What a refusal says: the JSON error, the page's heading, or the text."""
    body = response.text
    answer = json_rpc_answer(response) if "json" in response.headers.get("content-type", "") else None
    if isinstance(answer, dict) and isinstance(answer.get("error"), dict | str):
        found = answer["error"]
        return str(found.get("message", "") if isinstance(found, dict) else found)
    heading = H1.search(body)
    if heading:
        return html.unescape(re.sub(r"<[^>]+>", "", heading.group(1))).strip()
    return body.strip()


def refused(response: httpx.Response) -> bool:
    """A 4xx, a dashboard form sent back with its error, or a JSON-RPC error or tool error."""
    if response.status_code >= 400:
        return True
    if "message=" in response.headers.get("location", ""):
        return True
    answer = json_rpc_answer(response) if response.request.url.path == "/mcp" else None
    if isinstance(answer, dict):
        return "error" in answer or bool((answer.get("result") or {}).get("isError"))
    return False


def check(served: HttpServed, method: str, path: str, route: str, **options: Any) -> httpx.Response:
    before = served.state
    response = served.client.request(method, path, **options)
    request = f"{method} {path} {_short(options)}"
    event(f"{method} {route} -> {response.status_code}")
    assert response.status_code < 500, f"{request} -> {response.status_code}: {response.text[:500]}"
    assert not TRACEBACK.search(response.text), f"{request} -> a traceback: {response.text[:2000]}"
    assert served.server.process.poll() is None, f"the server exited after {request}"
    alive = served.client.get("/api/skills")
    assert alive.status_code == 200, f"GET /api/skills -> {alive.status_code} after {request}"
    if response.status_code >= 400:
        said = message_of(response)
        assert said.lower() not in BARE, f"{request} -> {response.status_code} with a bare {said!r}"
        if path != "/mcp":  # the SDK's JSON-RPC envelope errors name its pydantic models, at any length
            sent = unquote(path) + repr(options)  # an exception-like name the request itself carried is fine
            named = [
                found.group(0) for found in PYTHON_EXCEPTION.finditer(said) if found.group(0) not in sent
            ]
            assert not named, f"{request} -> {response.status_code}: {said[:300]!r}"
            assert len(said) <= 2000, f"{request} -> a message of {len(said)} characters"
    if refused(response) or method == "GET":
        changed = changed_tables(before, snapshot(served.database))
        assert not changed, f"{request} -> {response.status_code} changed {changed}: {response.text[:300]}"
        return response
    served.remember(json_rpc_answer(response))
    location = response.headers.get("location", "")
    served.remember({"run_id": location.removeprefix("/runs/")} if location.startswith("/runs/") else {})
    served.state = settled(served.database)
    return response


def _short(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) < 300 else shown[:300] + f"... ({len(shown)} chars)"


# -- the tests -----------------------------------------------------------------------------


@fuzz_settings(bounded=60, long=3000)
@given(data=st.data())
def test_dashboard_and_api_gets(served: HttpServed, data: st.DataObject) -> None:
    template = data.draw(st.sampled_from(DASHBOARD_GET + API_GET), label="route")
    path = _path(served, template, data.draw)
    headers = data.draw(st.sampled_from([{}, {"x-fragment": "1"}]), label="headers")
    check(served, "GET", path, template, params=_query(data.draw), headers=headers)


@fuzz_settings(bounded=60, long=3000)
@given(data=st.data())
def test_dashboard_posts(served: HttpServed, data: st.DataObject) -> None:
    template = data.draw(st.sampled_from(DASHBOARD_POST), label="route")
    path = _path(served, template, data.draw)
    body = _body(data.draw, FORM_KEYS)
    headers = {**body.pop("headers", {}), **data.draw(_origin(served), label="origin")}
    check(served, "POST", path, template, params=_query(data.draw), headers=headers, **body)


@fuzz_settings(bounded=40, long=2000)
@given(data=st.data())
def test_api_posts(served: HttpServed, data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(API_POST), label="route")
    event_like = st.fixed_dictionaries(
        {"name": st.sampled_from([EVENT, "fz.other", ""]) | ODD_TEXT},
        optional={"data": st.dictionaries(ODD_TEXT, JSON_VALUES, max_size=3) | JSON_VALUES, "id": ODD_TEXT},
    )
    payload = data.draw(event_like | st.lists(event_like, max_size=3) | JSON_VALUES, label="payload")
    content_type = data.draw(
        st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain"])
    )
    raw = data.draw(st.sampled_from(["json", "json", "bytes"]), label="encoding")
    content = json.dumps(payload).encode() if raw == "json" else data.draw(st.binary(max_size=200))
    headers = {
        "content-type": content_type,
        **data.draw(st.sampled_from([{}, {"origin": "http://evil.test"}])),
    }
    check(served, "POST", path, path, content=content, headers=headers)


@fuzz_settings(bounded=60, long=3000)
@given(data=st.data())
def test_mcp_posts(served: HttpServed, data: st.DataObject) -> None:
    methods = ["tools/call", "tools/list", "resources/read", "prompts/get", "initialize", "ping", "nope/x"]
    tools = [
        "get_run",
        "list_runs",
        "cancel_run",
        "send_event",
        "create_skill",
        "delete_loop",
        "rerun",
        "nope",
    ]
    arguments = st.dictionaries(
        st.sampled_from(["run_id", "name", "loop_id", "data"]) | ODD_TEXT, JSON_VALUES
    )
    uris = st.sampled_from(["run://", "skill://", "runs://recent", "x://"]).flatmap(
        lambda scheme: (ODD_TEXT | st.sampled_from(NASTY_STRINGS)).map(lambda rest: scheme + rest)
    )
    params = {
        "tools/call": st.fixed_dictionaries({"name": st.sampled_from(tools), "arguments": arguments}),
        "resources/read": st.fixed_dictionaries({"uri": uris}),
        "prompts/get": st.fixed_dictionaries(
            {"name": st.sampled_from(["review_skill", "triage_run", "write_skill"]), "arguments": arguments}
        ),
    }
    method = data.draw(st.sampled_from(methods), label="method")
    well_formed = st.fixed_dictionaries(
        {
            "jsonrpc": st.just("2.0"),
            "id": st.integers(1, 10**6),
            "method": st.just(method),
            "params": params.get(method, JSON_VALUES) | JSON_VALUES,
        }
    )
    wild = st.fixed_dictionaries(
        {"jsonrpc": st.sampled_from(["2.0", "1.0"]) | JSON_VALUES},
        optional={
            "id": st.integers() | JSON_VALUES,
            "method": st.just(method) | ODD_TEXT,
            "params": JSON_VALUES,
        },
    )
    body = data.draw(
        well_formed | well_formed | wild | st.lists(wild, max_size=3) | JSON_VALUES, label="body"
    )
    encoding = data.draw(st.sampled_from(["json"] * 9 + ["bytes"]), label="encoding")
    encoded = (
        json.dumps(body).encode() if encoding == "json" else data.draw(st.binary(min_size=1), label="bytes")
    )
    headers = served.mcp_headers()
    if data.draw(st.sampled_from(["session"] * 3 + ["none"]), label="session") == "none":
        headers = {key: value for key, value in headers.items() if not key.startswith("mcp-")}
    check(served, "POST", "/mcp", "/mcp " + method, content=encoded, headers=headers)
