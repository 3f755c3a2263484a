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


def base_env(home: Path, **extra: str) -> dict[str, str]:
    """Only what the server needs: no variable of the machine's own may change its behaviour."""
    return {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": str(home),
        "STEPKEEPER_HOME": str(home),
        **extra,
    }


@dataclass
class ServerProcess:
    base: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        """What the server wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")

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


def start_server(
    home: Path,
    env: dict[str, str] | None = None,
    *options: str,
    reach: str = "127.0.0.1",
    inherit_env: bool = True,
) -> ServerProcess:
    """Start the server on a free port, in a session of its own (so that its worker processes
    can be killed with it), and wait until it answers at `reach`. `inherit_env=False` runs it
    with `env` alone (see `base_env`)."""
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
    log_path = home / "serve.log"
    with log_path.open("ab") as out:
        process = subprocess.Popen(
            [*command, *options],
            env={**os.environ, **(env or {})} if inherit_env else env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = ServerProcess(f"http://{reach}:{port}", port, process, log_path)
    try:
        _wait_until_up(server)
    except BaseException:
        server.kill()
        raise
    return server


@contextmanager
def http_server(
    home: Path, env: dict[str, str] | None = None, *options: str, inherit_env: bool = True
) -> Iterator[ServerProcess]:
    """A started server, stopped at the end."""
    server = start_server(home, env, *options, inherit_env=inherit_env)
    try:
        yield server
    finally:
        server.stop()


def _wait_until_up(server: ServerProcess) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(
                f"the server exited with {server.process.returncode}: {server.log()[-2000:]}"
            )
        try:
            httpx.get(f"{server.base}/runs", timeout=1)  # any answer will do: it may need a token
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"the server did not answer in 30 s: {server.log()[-2000:]}")
