"""The JSON API (`POST /api/events` and the read views) of a real `serve --http` process: events
stored and routed, specific errors that change nothing, bursts of events under load, and
back-pressure (429 with `Retry-After`) when the documented backlog limit is reached."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.support.http_server import ServerProcess, http_server
from tests.support.mcp_http import call_tool, tool_result
from tests.support.recorder import Recorder
from tests.support.scale import scaled
from tests.support.sqlite_file import row_counts, scalar

pytestmark = pytest.mark.slow
ECHO = "def handler(ctx, step):\n    return step.run('echo', lambda: ctx.event['data']['n'] * 2)\n"


def database(home: Path) -> Path:
    return home / "stepkeeper.db"


async def create_skill(base: str, name: str, code: str, **options: Any) -> None:
    await tool_result(base, "create_skill", {"name": name, "code": code, **options})


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def server(tmp_path: Path) -> Any:
    with http_server(tmp_path) as running:
        yield running


async def test_posted_events_start_runs_that_the_api_shows(server: ServerProcess) -> None:
    await create_skill(server.base, "echo", ECHO, triggers=[{"event": "api/ping"}])
    async with httpx.AsyncClient(base_url=server.base) as http:
        one = (await http.post("/api/events", json={"name": "api/ping", "data": {"n": 1}, "id": "a"})).json()
        many = await http.post(
            "/api/events",
            json=[{"name": "api/ping", "data": {"n": 2}}, {"name": "api/ping", "data": {"n": 3}, "id": "a"}],
        )
        assert many.status_code == 200, many.text
        assert len(one["event_ids"]) == 1 and one["event_ids"][0] == "a" and len(one["run_ids"]) == 1
        # the repeated id "a" starts nothing new: it answers with the runs it started the first time
        assert many.json()["event_ids"][1] == "a" and many.json()["run_ids"][1] == one["run_ids"][0]
        run_id = one["run_ids"][0]
        wait_until(
            lambda: httpx.get(f"{server.base}/api/runs/{run_id}").json()["status"] == "completed", 20, "run"
        )
        run = (await http.get(f"/api/runs/{run_id}")).json()
        assert run["output"] == 2 and run["function"] == "echo" and run["trigger"] == "event"
        trace = (await http.get(f"/api/runs/{run_id}/trace")).json()
        assert [span["key"] for span in trace["spans"]] == ["echo"]
        page = (await http.get("/api/runs", params={"function": "echo", "limit": 1})).json()
        assert len(page["runs"]) == 1 and page["next_cursor"]
        skills = (await http.get("/api/skills")).json()["skills"]
        assert [skill["name"] for skill in skills] == ["echo"]
        detail = (await http.get("/api/skills/echo", params={"version": 1})).json()
        assert detail["code"] == ECHO and detail["triggers"] == [{"event": "api/ping"}]
        stats = (await http.get("/api/stats", params={"function": "echo"})).json()
        assert stats["skills"]["echo"]["runs"] >= 1


JSON = {"content-type": "application/json"}
BAD_REQUESTS = [
    ("POST", "/api/events", JSON, b"{not json", 400, "not valid JSON"),
    ("POST", "/api/events", {"content-type": "text/plain"}, b'{"name": "x"}', 415, "Content-Type"),
    ("POST", "/api/events", JSON, b"[]", 400, "1 to 100 events"),
    ("POST", "/api/events", JSON, b'{"data": {}}', 400, "'name'"),
    ("POST", "/api/events", JSON, b'{"name": "x", "data": 5}', 400, "JSON object"),
    ("POST", "/api/events", JSON, b'{"name": ""}', 400, "event name"),
    ("POST", "/api/events", JSON, b'{"name": "x", "id": 7}', 400, "event id"),
    ("POST", "/api/events", JSON, b'[{"name": "ok"}, 3]', 400, "an event is"),
    (
        "POST", "/api/events", {"content-type": "application/json", "origin": "https://evil.example"},
        b'{"name": "x"}', 403, "another site",
    ),
    ("GET", "/api/runs/run_nope", {}, b"", 404, "run_not_found"),
    ("GET", "/api/runs/run_nope/trace", {}, b"", 404, "run_not_found"),
    ("GET", "/api/skills/nope", {}, b"", 404, "skill_not_found"),
    ("GET", "/api/skills/echo?version=x", {}, b"", 400, "version must be a whole number"),
    ("GET", "/api/runs?limit=-1", {}, b"", 400, "limit"),
    ("GET", "/api/runs?status=dancing", {}, b"", 400, "status"),
    ("GET", "/api/runs?colour=red", {}, b"", 400, "unknown parameter 'colour'"),
    ("GET", "/api/stats?since=yesterday", {}, b"", 400, "invalid time 'yesterday'"),
]  # fmt: skip


async def test_bad_requests_get_specific_errors_and_change_nothing(
    server: ServerProcess, tmp_path: Path
) -> None:
    await create_skill(server.base, "echo", ECHO, triggers=[{"event": "api/ping"}])
    before = row_counts(database(tmp_path))
    oversized = {"name": "x", "data": {"blob": "x" * (300 * 1024)}}
    async with httpx.AsyncClient(base_url=server.base) as http:
        for method, path, headers, body, status, fragment in BAD_REQUESTS:
            answer = await http.request(method, path, headers=headers, content=body)
            assert answer.status_code == status, (path, body, answer.text)
            assert fragment in answer.json()["error"], (path, body, answer.text)
        too_big = await http.post("/api/events", json=oversized)
        assert too_big.status_code == 413 and "event data" in too_big.json()["error"]
        too_many = await http.post("/api/events", json=[{"name": "x"}] * 101)
        assert too_many.status_code == 400 and "1 to 100" in too_many.json()["error"]
    assert row_counts(database(tmp_path)) == before


TRIGGER_EVERY_20TH = [{"event": "load/ping", "if": "event.data.n % 20 == 0"}]


async def test_a_burst_of_ten_thousand_events_over_http_is_all_stored_and_processed(
    server: ServerProcess, tmp_path: Path
) -> None:
    """10,000 events at once (bounded: in batches of 50 plus 500 single posts; long: every one
    its own POST); every one is stored once and routed; the runs they start all complete;
    the server's memory stays bounded."""
    await create_skill(server.base, "echo", ECHO, triggers=TRIGGER_EVERY_20TH)
    total, single = 10_000, scaled(500, 10_000)
    bodies: list[Any] = [{"name": "load/ping", "data": {"n": n}, "id": f"load-{n}"} for n in range(single)]
    bodies += [
        [
            {"name": "load/ping", "data": {"n": n}, "id": f"load-{n}"}
            for n in range(start, min(start + 50, total))
        ]
        for start in range(single, total, 50)
    ]
    statuses = await post_all(server.base, bodies, concurrency=32)
    assert statuses == {200: len(bodies)}
    db = database(tmp_path)
    assert scalar(db, "SELECT count(DISTINCT id) FROM events WHERE name = 'load/ping'") == total
    wait_until(
        lambda: scalar(db, "SELECT count(*) FROM events WHERE processed_at IS NULL") == 0, 60, "routing"
    )
    assert scalar(db, "SELECT count(*) FROM runs WHERE function = 'echo'") == total // 20
    wait_until(
        lambda: scalar(db, "SELECT count(*) FROM runs WHERE status = 'completed'") == total // 20,
        scaled(120, 600),
        "the runs to complete",
    )
    outputs = scalar(db, "SELECT sum(CAST(output AS INTEGER)) FROM runs WHERE function = 'echo'")
    assert outputs == sum(n * 2 for n in range(0, total, 20))
    # What the server holds is bounded by its work in flight, not by how many events came.
    assert server.peak_rss_mb() < 400, server.peak_rss_mb()


async def post_all(base: str, bodies: list[Any], concurrency: int) -> dict[int, int]:
    gate = asyncio.Semaphore(concurrency)
    statuses: dict[int, int] = {}
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:

        async def post(body: Any) -> None:
            async with gate:
                answer = await http.post("/api/events", json=body)
                statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1

        await asyncio.gather(*(post(body) for body in bodies))
    return statuses


async def test_a_burst_of_send_event_tool_calls_is_all_stored(server: ServerProcess, tmp_path: Path) -> None:
    """`send_event` through one MCP session, many calls in flight at once."""
    count = scaled(1_000, 10_000)
    http = httpx2.AsyncClient(timeout=60)
    async with Client(streamable_http_client(f"{server.base}/mcp", http_client=http)) as session:
        gate = asyncio.Semaphore(16)

        async def send(n: int) -> bool:
            async with gate:
                result = await session.call_tool(
                    "send_event", {"name": "tool/ping", "id": f"t-{n}", "data": {"n": n}}
                )
                return not result.is_error

        sent = await asyncio.gather(*(send(n) for n in range(count)))
    assert all(sent)
    assert (
        scalar(database(tmp_path), "SELECT count(DISTINCT id) FROM events WHERE name = 'tool/ping'") == count
    )


HELD = """
def handler(ctx, step):
    data = ctx.event["data"]
    return step.run("call", lambda: http.post(data["url"], json={"n": data["n"]}).status_code)
"""


async def test_back_pressure_answers_429_then_takes_the_events_once_the_backlog_drains(
    tmp_path: Path,
) -> None:
    """With STEPKEEPER_MAX_BACKLOG=40 and runs held one at a time, producers get 429 with
    Retry-After (and send_event a `backlog_full` tool error) and nothing is stored for them;
    retrying after the backlog drains stores every event exactly once and every run completes."""
    recorder = Recorder()
    recorder.hold = 2.0  # the backlog drains by one run per 2 s until released
    env = {"STEPKEEPER_MAX_BACKLOG": "40", "STEPKEEPER_HTTP_ALLOW": recorder.allow}
    try:
        with http_server(tmp_path, env) as server:
            await create_skill(
                server.base,
                "held",
                HELD,
                triggers=[{"event": "slow/job"}],
                config={"concurrency": [{"limit": 1}]},
            )
            events = [
                {"name": "slow/job", "id": f"job-{n}", "data": {"n": n, "url": f"{recorder.base}/job"}}
                for n in range(120)
            ]
            db = database(tmp_path)
            first = await post_each(server.base, events)
            refused = [
                event for event, answer in zip(events, first, strict=True) if answer.status_code == 429
            ]
            assert refused, "the backlog limit was never reached"
            assert all(answer.status_code in (200, 429) for answer in first)
            sample = next(answer for answer in first if answer.status_code == 429)
            assert sample.headers["retry-after"] == "1"
            assert (
                "backlog_full" in sample.json()["error"]
                and "STEPKEEPER_MAX_BACKLOG" in sample.json()["error"]
            )
            stored = scalar(db, "SELECT count(*) FROM events WHERE name = 'slow/job'")
            assert stored == len(events) - len(refused)  # a refused event is not stored
            tool = await call_tool(server.base, "send_event", {"name": "slow/job", "id": "tool-job"})
            assert tool.is_error and "backlog_full" in tool.content[0].text
            recorder.hold = 0.0  # let the backlog drain, then retry as a producer would
            pending = refused
            for _ in range(120):
                if not pending:
                    break
                await asyncio.sleep(1)
                answers = await post_each(server.base, pending)
                pending = [
                    event for event, answer in zip(pending, answers, strict=True) if answer.status_code == 429
                ]
            assert not pending
            assert scalar(db, "SELECT count(DISTINCT id) FROM events WHERE name = 'slow/job'") == len(events)
            wait_until(
                lambda: scalar(db, "SELECT count(*) FROM runs WHERE status = 'completed'") == len(events),
                120,
                "every held run to complete",
            )
            assert sorted(payload["n"] for _, _, payload in recorder.calls) == list(range(120))
    finally:
        recorder.close()


async def post_each(base: str, events: list[dict[str, Any]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        return [await http.post("/api/events", json=event) for event in events]
