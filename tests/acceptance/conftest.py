"""Fixtures of the acceptance tests: a real `stepkeeper serve --http` process."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.support.recorder import Recorder


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
async def dashboard(tmp_path: Path, recorder: Recorder) -> AsyncIterator[str]:
    """`serve --http` on a free port with its database in `tmp_path` (the MCP app and the
    dashboard); skills may call `recorder`. Yields the base URL."""
    port = free_port()
    env = {**os.environ, "STEPKEEPER_HOME": str(tmp_path), "STEPKEEPER_HTTP_ALLOW": recorder.allow}
    command = [sys.executable, "-m", "mcp_server", "serve", "--http", "--port", str(port)]
    with (tmp_path / "serve.log").open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(200):
                try:
                    if (await client.get(f"{base}/skills")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=20)
