"""A real `stepkeeper serve --http` process on a free port, with a clean environment and its
output in a log file (what the security tests search and assert on)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
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


class HttpServer:
    def __init__(self, home: Path, env: dict[str, str], *options: str, reach: str = "127.0.0.1") -> None:
        self.port = free_port()
        self.log_path = home / "serve.log"
        command = [sys.executable, "-m", "mcp_server", "serve", "--http", "--port", str(self.port), *options]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.base = f"http://{reach}:{self.port}"
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited {self.process.returncode}: {self.log()}")
            try:
                httpx.get(f"{self.base}/runs", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError(f"the server did not answer in 30 s: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(20)
