"""A real `stepkeeper serve --http` process for tests, with its own home and environment."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class ServerProcess:
    base: str
    process: subprocess.Popen[bytes]
    log: Path

    def peak_rss_mb(self) -> float:
        """The server process's high-water resident memory (VmHWM), in MB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmHWM in /proc status")

    def kill(self) -> None:
        """SIGKILL the server and its worker processes at once, as a crash would."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.kill()


def start_server(home: Path, env: dict[str, str] | None = None, *options: str) -> ServerProcess:
    """Start the server on a free loopback port, in a session of its own (so that its worker
    processes can be killed with it), and wait until it answers."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "mcp_server",
        "--home",
        str(home),
        "serve",
        "--http",
        "--port",
        str(port),
    ]
    log = home / "server.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [*command, *options],
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = ServerProcess(f"http://127.0.0.1:{port}", process, log)
    try:
        _wait_until_up(server.base, process, log)
    except BaseException:
        server.kill()
        raise
    return server


@contextmanager
def http_server(home: Path, env: dict[str, str] | None = None, *options: str) -> Iterator[ServerProcess]:
    """A started server, stopped at the end."""
    server = start_server(home, env, *options)
    try:
        yield server
    finally:
        server.stop()


def _wait_until_up(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{base}/api/skills", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the server did not answer in 30 s: {log.read_text()[-2000:]}")
