"""Outbound HTTP for skill code, performed by the engine with httpx, to allowed hosts only.

Hosts are allowed by `STEPKEEPER_HTTP_ALLOW` (`host` or `host:port`). Loopback, private and
link-local addresses are refused unless named there exactly (`host:port`), so a skill cannot
reach the machine's own services by accident or by a DNS trick.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
from typing import Any
from urllib.parse import urlsplit

from engine.durations import parse_duration
from engine.limits import MAX_HTTP_RESPONSE_BYTES

DEFAULT_TIMEOUT_S = 30.0
MAX_TIMEOUT_S = 300.0
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"})


class HttpRefused(Exception):
    """The call is not allowed or malformed; it fails the step without retries."""


class HttpFailed(Exception):
    """The call was made and failed (connection refused, timeout...): a retriable failure."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def import_httpx() -> Any:
    """httpx, imported on first use (it costs a process start ~60 ms), without its command-line
    client: `httpx/__init__` imports `httpx._main` when rich, click and pygments are installed
    (~70 ms more), and falls back to a stub `httpx.main` when that import fails. The engine never
    runs that client, so the import is made to fail while httpx loads; afterwards
    `import httpx._main` works again for anyone who wants it."""
    if "httpx" not in sys.modules:
        sys.modules.setdefault("httpx._main", None)  # type: ignore[assignment]
    import httpx

    if "httpx._main" in sys.modules and sys.modules["httpx._main"] is None:
        sys.modules.pop("httpx._main", None)
    return httpx


class HttpEffect:
    def __init__(self, allow: list[str] | None = None) -> None:
        self._allow = {entry.strip().lower() for entry in allow or [] if entry.strip()}
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._closed = False

    def close(self) -> None:
        with self._client_lock:
            self._closed = True
            if self._client is not None:
                self._client.close()

    def warm(self) -> None:
        """Import httpx and make the client (its TLS context costs ~40 ms) ahead of the first
        call: an engine about to run skills calls this from a thread of its own at start."""
        self._get_client(warming=True)

    def _get_client(self, *, warming: bool = False) -> Any:
        with self._client_lock:
            if self._client is None and not (warming and self._closed):
                self._client = import_httpx().Client(follow_redirects=False)
            return self._client

    def perform(self, request: dict[str, Any]) -> dict[str, Any]:
        httpx = import_httpx()
        self._get_client()
        try:
            return self._perform(request)
        except httpx.HTTPError as exc:
            raise HttpFailed(type(exc).__name__, str(exc)) from None

    def _perform(self, request: dict[str, Any]) -> dict[str, Any]:
        method = str(request.get("method", "GET")).upper()
        if method not in METHODS:
            raise HttpRefused(f"HTTP method {method!r} is not allowed")
        url = request.get("url")
        if not isinstance(url, str):
            raise HttpRefused("url must be a string")
        self._check_destination(url)
        timeout = request.get("timeout")
        seconds = DEFAULT_TIMEOUT_S if timeout is None else min(parse_duration(timeout), MAX_TIMEOUT_S)
        with self._client.stream(
            method,
            url,
            json=request.get("json"),
            content=request.get("data"),
            headers=request.get("headers") or None,
            params=request.get("params") or None,
            timeout=seconds,
        ) as response:
            body = b""
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_HTTP_RESPONSE_BYTES:
                    raise HttpRefused(f"response is over the limit of {MAX_HTTP_RESPONSE_BYTES} bytes")
            text = body.decode(response.encoding or "utf-8", errors="replace")
            return {
                "status_code": response.status_code,
                "headers": dict(response.headers),
                "text": text,
            }

    def _check_destination(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise HttpRefused(f"only http and https URLs are allowed, got {url!r}")
        host = parts.hostname.lower()
        port = parts.port or (443 if parts.scheme == "https" else 80)
        exact = f"{host}:{port}" in self._allow
        if not exact and host not in self._allow:
            raise HttpRefused(f"host {host!r} is not allowed; add it to STEPKEEPER_HTTP_ALLOW")
        if not exact and _is_internal(host, port):
            raise HttpRefused(
                f"{host} resolves to a loopback or private address; allow it as '{host}:{port}' "
                "in STEPKEEPER_HTTP_ALLOW"
            )


def _is_internal(host: str, port: int) -> bool:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return False  # the request itself will fail with a clear connection error
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if address.is_loopback or address.is_private or address.is_link_local or address.is_reserved:
            return True
    return False
