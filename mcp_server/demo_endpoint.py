"""The demo's outside world, on 127.0.0.1: simulated metrics, a pager that fails its first call,
and an ops channel, so the demo needs no network and shows retries for real."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any

from mcp_server.loopback import reply_json, serve

METRICS = {
    "api": {"error_rate": 0.07, "p99_ms": 840},
    "db": {"error_rate": 0.001, "p99_ms": 12},
    "queue": {"error_rate": 0.0, "p99_ms": 3},
}


class DemoEndpoint:
    def __init__(self) -> None:
        self.pages: list[Any] = []
        self.pager_failures_left = 1
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    self._answer(200, METRICS)
                else:
                    self._answer(404, {"error": "no such page"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                if self.path == "/pager":
                    with endpoint._lock:
                        failing = endpoint.pager_failures_left > 0
                        endpoint.pager_failures_left -= 1
                        if not failing:
                            endpoint.pages.append(body)
                    self._answer(503 if failing else 200, {"paged": not failing})
                elif self.path == "/ops":
                    self._answer(200, {"posted": True})
                else:
                    self._answer(404, {"error": "no such page"})

            def _answer(self, status: int, payload: Any) -> None:
                reply_json(self, status, payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = serve(Handler)
        self.allow = f"127.0.0.1:{self.server.server_address[1]}"
        self.base = f"http://{self.allow}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
