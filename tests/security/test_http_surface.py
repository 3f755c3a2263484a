"""Every route of the HTTP app against the HTTP rules, systematically: the bearer token, binding
beyond loopback, foreign `Host` and `Origin` headers, and the request body limit.

ROUTES is checked against the app's own routes, so a route added later is covered or fails the
first test. Everything runs against real `serve --http` processes.
"""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from engine import Engine, SqlStore
from mcp_server.config import Settings
from mcp_server.http_app import MAX_BODY_BYTES, build_http_app
from tests.support.http_server import ServerProcess, base_env, start_server

pytestmark = pytest.mark.slow
TOKEN = "surface-token-3b9d71e0c4"
# Every route of the app, with its methods (Starlette adds HEAD to GET). `/login` is answered by
# the token middleware, so it is not a route and is checked on its own.
ROUTES: dict[str, set[str] | None] = {
    "/mcp": None,  # every method: the SDK's transport answers GET, POST and DELETE
    "/api/events": {"POST"},
    "/api/runs": {"GET", "HEAD"},
    "/api/runs/{run_id}": {"GET", "HEAD"},
    "/api/runs/{run_id}/trace": {"GET", "HEAD"},
    "/api/skills": {"GET", "HEAD"},
    "/api/skills/{name}": {"GET", "HEAD"},
    "/api/stats": {"GET", "HEAD"},
    "/": {"GET", "HEAD"},
    "/runs": {"GET", "HEAD"},
    "/runs/{run_id}": {"GET", "HEAD"},
    "/runs/{run_id}/body": {"GET", "HEAD"},
    "/runs/{run_id}/otel.json": {"GET", "HEAD"},
    "/runs/{run_id}/cancel": {"POST"},
    "/runs/{run_id}/rerun": {"POST"},
    "/skills": {"GET", "HEAD"},
    "/skills/{name}": {"GET", "HEAD"},
    "/skills/{name}/update": {"POST"},
    "/skills/{name}/delete": {"POST"},
    "/loops": {"GET", "HEAD"},
    "/loops/{loop_id}/{action:str}": {"POST"},
    "/events": {"GET", "HEAD"},
}
PATHS = [re.sub(r"\{[^}]+\}", "nosuch", route) for route in ROUTES]
DASHBOARD_ACTIONS = [r for r, methods in ROUTES.items() if methods == {"POST"} and not r.startswith("/api")]
SLEEPER = 'def handler(ctx, step):\n    step.sleep("nap", "1h")\n    return 1\n'
QUICK = 'def handler(ctx, step):\n    return step.run("one", lambda: 1)\n'
MCP_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}


def initialized(response: httpx.Response) -> bool:
    """An MCP `initialize` answered (as JSON or as an event stream)."""
    return response.status_code == 200 and '"serverInfo"' in response.text


def machine_address() -> str | None:
    """This machine's address on its network (not loopback), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.255", 9))  # no packet is sent: only picks the outgoing interface
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server on loopback with a token."""
    home = tmp_path_factory.mktemp("guarded")
    server = start_server(home, base_env(home, STEPKEEPER_TOKEN=TOKEN), inherit_env=False)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server on loopback without a token: the Host and Origin rules are what protect it."""
    home = tmp_path_factory.mktemp("open")
    server = start_server(home, base_env(home), inherit_env=False)
    yield server
    server.stop()


def test_the_route_table_names_every_route_of_the_app(tmp_path: Path) -> None:
    app = build_http_app(Settings(home=tmp_path, token=TOKEN), "127.0.0.1", 8788)
    found = {route.path: getattr(route, "methods", None) for route in app.routes}
    assert found == ROUTES, "a route was added or changed: add it to ROUTES so its rules are tested"


@pytest.mark.parametrize("path", PATHS)
def test_with_a_token_every_route_refuses_requests_without_it(guarded: ServerProcess, path: str) -> None:
    url = f"{guarded.base}{path}"
    for method in ("GET", "POST"):
        assert httpx.request(method, url).status_code == 401, method
        wrong = httpx.request(method, url, headers={"Authorization": f"Bearer {TOKEN}x"})
        assert wrong.status_code == 401, method
        bare = httpx.request(method, url, headers={"Authorization": TOKEN})  # no "Bearer "
        assert bare.status_code == 401, method
        forged = httpx.request(method, url, headers={"Cookie": f"stepkeeper_session={TOKEN}"})
        assert forged.status_code == 401, method
        right = httpx.request(method, url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert right.status_code != 401 and right.status_code < 500, (method, right.status_code, right.text)


def test_with_a_token_the_login_page_needs_it_and_any_host_name_may_reach_the_server(
    guarded: ServerProcess,
) -> None:
    assert httpx.get(f"{guarded.base}/login").status_code == 401
    assert httpx.post(f"{guarded.base}/login", params={"token": TOKEN}).status_code == 303
    auth = {"Authorization": f"Bearer {TOKEN}"}
    # The token protects the server, so any name reaches it: /mcp as well as the dashboard.
    renamed = {**auth, **MCP_HEADERS, "Host": f"stepkeeper.internal:{guarded.port}"}
    assert initialized(httpx.post(f"{guarded.base}/mcp", json=INIT, headers=renamed))
    assert httpx.get(f"{guarded.base}/runs", headers=renamed).status_code == 200
    # The token does not make a page of another site welcome.
    for path in ("/mcp", *DASHBOARD_ACTIONS, "/api/events"):
        foreign = {**auth, **MCP_HEADERS, "Origin": "http://evil.example"}
        assert httpx.post(f"{guarded.base}{path}", json=INIT, headers=foreign).status_code == 403, path


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server bound to every address, with a token, reached by this machine's own address."""
    address = machine_address() or "127.0.0.1"
    env = base_env(tmp_path, STEPKEEPER_TOKEN=TOKEN)
    server = start_server(tmp_path, env, "--host", "0.0.0.0", reach=address, inherit_env=False)
    yield server
    server.stop()


def test_beyond_loopback_requests_need_the_token_and_mcp_answers_by_the_machines_address(
    remote: ServerProcess,
) -> None:
    for path in [*PATHS, "/login"]:
        for method in ("GET", "POST"):
            assert httpx.request(method, f"{remote.base}{path}").status_code == 401, (method, path)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(f"{remote.base}/runs", headers=auth).status_code == 200
    assert initialized(httpx.post(f"{remote.base}/mcp", json=INIT, headers={**auth, **MCP_HEADERS}))


async def test_an_mcp_client_works_beyond_loopback_with_the_token(remote: ServerProcess) -> None:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"})
    async with Client(streamable_http_client(f"{remote.base}/mcp", http_client=http)) as session:
        created = await session.call_tool("create_skill", {"name": "quick", "code": QUICK})
        assert not created.is_error, created.content
        run = await session.call_tool("invoke_function", {"name": "quick"})
        assert run.structured_content["output"] == 1


@pytest.mark.parametrize("host", ["::", "192.0.2.10", "localhost.evil.example"])
@pytest.mark.parametrize("token", [None, ""])
def test_binding_beyond_loopback_without_a_token_exits_2_with_a_message(
    tmp_path: Path, host: str, token: str | None
) -> None:
    env = base_env(tmp_path) if token is None else base_env(tmp_path, STEPKEEPER_TOKEN=token)
    command = [sys.executable, "-m", "mcp_server", "serve", "--http", "--host", host, "--port", "1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2, done.stderr
    assert f"refusing to serve on {host} without a token" in done.stderr and "STEPKEEPER_TOKEN" in done.stderr


@pytest.mark.parametrize("path", PATHS)
def test_without_a_token_a_foreign_host_is_refused_on_every_route(
    open_server: ServerProcess, path: str
) -> None:
    url = f"{open_server.base}{path}"
    for host in ("evil.example", f"evil.example:{open_server.port}", "127.0.0.1.evil.example"):
        for method in ("GET", "POST"):
            refused = httpx.request(method, url, headers={"Host": host}, timeout=10)
            assert refused.status_code in (400, 421), (method, host, refused.status_code)
    named = {**MCP_HEADERS, "Host": f"localhost:{open_server.port}"}
    ours = httpx.post(url, json=INIT, headers=named) if path == "/mcp" else httpx.get(url, headers=named)
    assert ours.status_code not in (400, 421), ours.status_code


@pytest.mark.parametrize("path", PATHS)
def test_without_a_token_a_foreign_origin_is_refused_on_every_post(
    open_server: ServerProcess, path: str
) -> None:
    url = f"{open_server.base}{path}"
    for origin in ("http://evil.example", f"http://evil.example:{open_server.port}", "null"):
        refused = httpx.post(url, json=INIT, headers={**MCP_HEADERS, "Origin": origin})
        assert refused.status_code == 403, (origin, refused.status_code)


async def test_same_origin_dashboard_actions_and_mcp_are_accepted(open_server: ServerProcess) -> None:
    offline = Engine(SqlStore(f"sqlite:///{open_server.log_path.parent / 'stepkeeper.db'}"))
    try:
        targets = await _targets(offline)
        async with httpx.AsyncClient(base_url=open_server.base, timeout=10) as http:
            ours = {"Origin": open_server.base}
            by_referer = {"Referer": f"{open_server.base}/runs/{targets['sleeping']}"}
            cancel = await http.post(f"/runs/{targets['sleeping']}/cancel", headers=by_referer)
            assert cancel.status_code == 303
            assert (await offline.get_run(targets["sleeping"])).status == "cancelled"
            rerun = await http.post(f"/runs/{targets['sleeping']}/rerun", headers=ours)
            assert rerun.status_code == 303 and rerun.headers["location"].startswith("/runs/run")
            paused = await http.post(f"/loops/{targets['loop']}/pause", headers=ours)
            assert paused.status_code == 303 and (await offline.get_loop(targets["loop"])).paused
            edited = await http.post("/skills/doomed/update", data={"code": QUICK}, headers=ours)
            assert edited.status_code == 303 and "message" not in edited.headers["location"]
            assert (await offline.get_skill("doomed")).version.code == QUICK
            deleted = await http.post("/skills/doomed/delete", headers=ours)
            assert deleted.status_code == 303
            assert "doomed" not in {skill.name for skill in await offline.list_skills()}
            assert initialized(await http.post("/mcp", json=INIT, headers={**MCP_HEADERS, **ours}))
    finally:
        await offline.close()


async def test_bodies_over_the_limit_are_refused_on_every_post_and_the_server_keeps_serving(
    open_server: ServerProcess,
) -> None:
    offline = Engine(SqlStore(f"sqlite:///{open_server.log_path.parent / 'stepkeeper.db'}"))
    try:
        targets = await _targets(offline)
        runs_before = len((await offline.list_runs(function="sleeper")).runs)
        version_before = (await offline.get_skill("doomed")).version.version
        posts = {
            "/mcp": MCP_HEADERS,
            "/api/events": MCP_HEADERS,
            f"/runs/{targets['sleeping']}/cancel": {},
            f"/runs/{targets['sleeping']}/rerun": {},
            "/skills/doomed/update": {},
            "/skills/doomed/delete": {},
            f"/loops/{targets['loop']}/pause": {},
        }
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        huge = b"code=" + b"x" * MAX_BODY_BYTES

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield b"code="
            for _ in range(5):
                yield b"y" * (1024 * 1024)

        for path, headers in posts.items():
            sent = {**form, **headers, "Origin": open_server.base}
            declared = httpx.post(f"{open_server.base}{path}", content=huge, headers=sent, timeout=30)
            assert declared.status_code == 413 and "over the limit" in declared.json()["error"], path
            streamed = httpx.post(f"{open_server.base}{path}", content=chunks(), headers=sent, timeout=30)
            assert streamed.status_code == 413, (path, streamed.status_code, streamed.text[:200])
        # Nothing was acted on, and the server still serves.
        assert (await offline.get_run(targets["sleeping"])).status == "sleeping"
        assert (await offline.get_skill("doomed")).version.version == version_before
        assert not (await offline.get_loop(targets["loop"])).paused
        assert len((await offline.list_runs(function="sleeper")).runs) == runs_before
        assert httpx.get(f"{open_server.base}/runs").status_code == 200
        assert initialized(httpx.post(f"{open_server.base}/mcp", json=INIT, headers=MCP_HEADERS))
    finally:
        await offline.close()


async def _targets(offline: Engine) -> dict[str, str]:
    """A sleeping run, a loop and a skill for the dashboard's actions to act on (fresh each time)."""
    for name in ("sleeper", "doomed"):
        if name in {skill.name for skill in await offline.list_skills()}:
            await offline.delete_skill(name)
    await offline.create_skill("sleeper", SLEEPER)
    await offline.create_skill("doomed", SLEEPER)
    for loop in await offline.list_loops():
        await offline.delete_loop(loop.id)
    loop = await offline.schedule_loop("doomed", "0 9 * * *")
    run = await offline.invoke("sleeper")
    for _ in range(200):  # the server's engine runs it to its sleep
        if (await offline.get_run(run.id)).status == "sleeping":
            break
        await asyncio.sleep(0.05)
    assert (await offline.get_run(run.id)).status == "sleeping"
    return {"sleeping": run.id, "loop": loop.id}
