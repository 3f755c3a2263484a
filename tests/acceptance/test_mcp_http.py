"""The MCP server over Streamable HTTP: the SDK client in both eras, the token and host rules."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPDeprecationWarning

from tests.acceptance.test_mcp_stdio import SLEEPER, count_updates_until_done
from tests.support.http_server import base_env
from tests.support.http_server import http_server as http_server_process

pytestmark = pytest.mark.slow
TOKEN = "test-token-8c1f"
SKILL = 'def handler(ctx, step):\n    return step.run("hi", lambda: "hello " + ctx.event["data"]["who"])\n'


def serve_command(home: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "mcp_server", "--home", str(home), "serve", "--http", *options]


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[str]:
    with http_server_process(
        tmp_path, base_env(tmp_path, STEPKEEPER_TOKEN=TOKEN), inherit_env=False
    ) as server:
        yield server.base


def client(url: str, mode: str, token: str = TOKEN) -> Client:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"})
    return Client(streamable_http_client(f"{url}/mcp", http_client=http), mode=mode)


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_create_and_invoke_over_http(http_server: str, mode: str) -> None:
    async with client(http_server, mode) as session:
        names = {tool.name for tool in (await session.list_tools()).tools}
        assert {"create_skill", "invoke_function", "get_run_trace"} <= names
        created = await session.call_tool("create_skill", {"name": "greet", "code": SKILL})
        assert not created.is_error, created.content
        run = await session.call_tool("invoke_function", {"name": "greet", "data": {"who": "http"}})
        assert run.structured_content["output"] == "hello http"


def test_requests_without_the_token_or_from_a_foreign_origin_are_refused(http_server: str) -> None:
    assert httpx.post(f"{http_server}/mcp", json={}).status_code == 401
    wrong = httpx.post(f"{http_server}/mcp", json={}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    foreign = httpx.post(
        f"{http_server}/mcp",
        json={},
        headers={"Authorization": f"Bearer {TOKEN}", "Origin": "http://evil.example"},
    )
    assert foreign.status_code == 403  # with a token any Host may reach it (tests/security)


def test_the_dashboard_needs_the_token_too_and_a_browser_logs_in_for_a_cookie(http_server: str) -> None:
    assert httpx.get(f"{http_server}/runs").status_code == 401
    assert httpx.get(f"{http_server}/login", params={"token": "nope"}).status_code == 401
    login = httpx.get(f"{http_server}/login", params={"token": TOKEN})
    assert login.status_code == 303 and login.headers["location"] == "/runs"
    assert "HttpOnly" in login.headers["set-cookie"] and "SameSite=Strict" in login.headers["set-cookie"]
    page = httpx.get(f"{http_server}/runs", cookies=login.cookies)
    assert page.status_code == 200 and "<h1>Runs</h1>" in page.text
    bearer = httpx.get(f"{http_server}/skills", headers={"Authorization": f"Bearer {TOKEN}"})
    assert bearer.status_code == 200
    forged = httpx.get(f"{http_server}/runs", cookies={"stepkeeper_session": "nope"})
    assert forged.status_code == 401
    assert TOKEN not in login.headers["set-cookie"]  # the cookie holds an HMAC, not the token
    session = login.cookies["stepkeeper_session"]
    messy = {"Cookie": f'prefs={{"x":1}}; $x=1; a b=c; stepkeeper_session={session}'}
    assert httpx.get(f"{http_server}/runs", headers=messy).status_code == 200  # others skipped


def test_request_bodies_over_the_limit_are_refused_with_413(http_server: str) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    huge = b"x" * (4 * 1024 * 1024 + 1)
    declared = httpx.post(f"{http_server}/mcp", content=huge, headers=auth)
    assert declared.status_code == 413 and "over the limit" in declared.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(5):
            yield b"y" * (1024 * 1024)

    json_headers = {
        **auth,
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
    }
    streamed = httpx.post(f"{http_server}/mcp", content=chunks(), headers=json_headers)
    assert streamed.status_code == 413
    form = {**auth, "Origin": http_server, "Content-Type": "application/x-www-form-urlencoded"}
    edited = httpx.post(f"{http_server}/skills/calc/update", content=chunks(), headers=form)
    assert edited.status_code in (400, 413)  # Starlette caps a form field at 1 MiB before us


def test_binding_beyond_loopback_needs_a_token(tmp_path: Path) -> None:
    command = serve_command(tmp_path, "--host", "0.0.0.0")
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, env={"PATH": ""})
    assert result.returncode == 2
    assert "without a token" in result.stderr


async def test_a_run_subscription_hears_changes_over_http(http_server: str) -> None:
    async with client(http_server, "2026-07-28") as session:
        created = await session.call_tool("create_skill", {"name": "sleeper", "code": SLEEPER})
        assert not created.is_error, created.content
        run = await session.call_tool("invoke_function", {"name": "sleeper", "wait": False})
        with anyio.fail_after(20):
            seen = await count_updates_until_done(session, f"run://{run.structured_content['run_id']}")
    assert seen >= 2


async def test_a_legacy_session_hears_run_updates_over_http(http_server: str) -> None:
    updated: list[str] = []

    async def on_message(message: Any) -> None:
        uri = getattr(getattr(message, "params", None), "uri", None)
        if uri is not None:
            updated.append(str(uri))

    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"})
    transport = streamable_http_client(f"{http_server}/mcp", http_client=http)
    async with Client(transport, mode="legacy", message_handler=on_message) as session:
        created = await session.call_tool("create_skill", {"name": "sleeper", "code": SLEEPER})
        assert not created.is_error, created.content
        run = await session.call_tool("invoke_function", {"name": "sleeper", "wait": False})
        uri = f"run://{run.structured_content['run_id']}"
        with pytest.warns(MCPDeprecationWarning):
            await session.session.subscribe_resource(uri)
        with anyio.fail_after(20):
            while uri not in updated:
                await anyio.sleep(0.05)
    assert set(updated) == {uri}
