"""A real HTTP server on 127.0.0.1 that records every call skill code makes through `http`.

It is the external side-effect log of the tests: a step that runs twice is seen twice here.
Responses can be scripted per path: a list of status codes served in turn (then 200). With
`hold` set, each call is held that long and its span (arrival, departure) is kept in `spans`, so
a test can tell how many calls were in progress at any instant.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.raw: list[tuple[str, dict[str, str], bytes]] = []  # path, headers and body as received
        self.arrivals: list[tuple[str, Any, float]] = []  # path, payload, arrival time
        self.hold = 0.0
        self.spans: list[tuple[str, Any, float, float]] = []
        self.scripts: dict[str, list[int]] = {}
        self.on_call: Callable[[str], None] | None = None
        self._lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                arrived = time.time()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                payload = json.loads(body) if body else None
                with recorder._lock:
                    recorder.calls.append((self.command, self.path, payload))
                    recorder.arrivals.append((self.path, payload, arrived))
                    recorder.raw.append((self.path, dict(self.headers.items()), body))
                    script = recorder.scripts.get(self.path)
                    status = script.pop(0) if script else 200
                if recorder.on_call is not None:
                    recorder.on_call(self.path)
                if recorder.hold:
                    time.sleep(recorder.hold)
                    with recorder._lock:
                        recorder.spans.append((self.path, payload, arrived, time.time()))
                data = json.dumps({"path": self.path, "got": payload}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def allow(self) -> str:
        return f"127.0.0.1:{self.port}"

    def count(self, path: str) -> int:
        with self._lock:
            return sum(1 for _, p, _ in self.calls if p == path)

    def paths(self) -> list[str]:
        with self._lock:
            return [p for _, p, _ in self.calls]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
