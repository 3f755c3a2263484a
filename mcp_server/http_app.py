"""The HTTP surface: Streamable HTTP MCP at `/mcp` and the dashboard in one Starlette app, loopback
unless a token is set.

Without a token, every route refuses a `Host` that does not name this server (DNS rebinding);
with one, any name may reach it and the token is what protects it. On every route a request
whose `Origin` names another site is refused, token or not (a browser's cross-site request).
A bearer token, when configured, is required on every request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from urllib.parse import parse_qs, urlsplit

from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine import InvalidInput
from mcp_server.api import JsonApi
from mcp_server.config import Settings
from mcp_server.dashboard import Dashboard
from mcp_server.server import EngineHolder, build_server

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
MAX_BODY_BYTES = 4 * 1024 * 1024  # a tool call's largest legitimate body is ~1.5 MiB (code, escaped)


class BearerToken:
    """ASGI middleware: 401 for any HTTP request without the token.

    Programs send `Authorization: Bearer <token>`. A browser opens `/login?token=<token>` once
    and gets a cookie (HttpOnly, SameSite=Strict) that the dashboard's pages then send; it holds
    an HMAC of the token, not the token.
    """

    COOKIE = "stepkeeper_session"

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()
        self.expected = b"Bearer " + self.token
        self.session = hmac.new(self.token, b"stepkeeper dashboard session", hashlib.sha256).hexdigest()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == "/login":
            await self._login(scope, send)
        elif self._authorized(dict(scope["headers"])):
            await self.app(scope, receive, send)
        else:
            await _refuse(
                send, "unauthorized: send Authorization: Bearer <STEPKEEPER_TOKEN>, or open /login?token=…"
            )

    def _authorized(self, headers: dict[bytes, bytes]) -> bool:
        if hmac.compare_digest(headers.get(b"authorization", b""), self.expected):
            return True
        given = _cookie(headers.get(b"cookie", b"").decode("latin-1"), self.COOKIE)
        return given is not None and hmac.compare_digest(given.encode(), self.session.encode())

    async def _login(self, scope: Scope, send: Send) -> None:
        given = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[0]
        if not hmac.compare_digest(given.encode(), self.token):
            await _refuse(send, "unauthorized: wrong token")
            return
        cookie = f"{self.COOKIE}={self.session}; HttpOnly; SameSite=Strict; Path=/"
        headers = [(b"location", b"/runs"), (b"set-cookie", cookie.encode())]
        await send({"type": "http.response.start", "status": 303, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


class SameOrigin:
    """ASGI middleware: 403 for a request whose `Origin` does not name the host it was sent to.

    Browsers send `Origin` on cross-site requests, other clients leave it out; so a page of
    another site cannot drive `/mcp` or the dashboard, whatever name the server is reached by.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"]) if scope["type"] == "http" else {}
        origin = headers.get(b"origin")
        if origin is not None and urlsplit(origin.decode("latin-1")).netloc.encode() != headers.get(b"host"):
            await _json_error(send, 403, "refused: a request from another site's page (Origin)")
            return
        await self.app(scope, receive, send)


class BodyLimit:
    """ASGI middleware: 413 for a request body over `limit` bytes, by its Content-Length at once,
    or as soon as a chunked body passes the limit; the body is never buffered beyond it."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.limit:
            await _too_large(send, self.limit)
            return
        seen, started = 0, False

        async def bounded_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, bounded_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await _too_large(send, self.limit)


class _BodyTooLarge(Exception):
    pass


async def _too_large(send: Send, limit: int) -> None:
    await _json_error(send, 413, f"request body over the limit of {limit} bytes")


def _cookie(header: str, name: str) -> str | None:
    """One cookie's value, read leniently (other cookies of any shape are skipped, not errors)."""
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value.strip().strip('"')
    return None


async def _refuse(send: Send, message: str) -> None:
    await _json_error(send, 401, message, [(b"www-authenticate", b"Bearer")])


async def _json_error(
    send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"error": message}).encode()
    start = [(b"content-type", b"application/json"), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": body})


def check_binding(host: str, token: str | None) -> None:
    if host not in LOOPBACK and not token:
        raise InvalidInput(f"refusing to serve on {host} without a token: set STEPKEEPER_TOKEN (or --token)")


def build_http_app(settings: Settings, host: str, port: int) -> Starlette:
    check_binding(host, settings.token)
    names = sorted(LOOPBACK | {host})
    security = TransportSecuritySettings(  # with a token, any Host (as below); SameOrigin checks Origin
        enable_dns_rebinding_protection=not settings.token,
        allowed_hosts=[f"{name}:{port}" for name in names] + [f"[::1]:{port}"],
        allowed_origins=[f"http://{name}:{port}" for name in names],
    )
    holder = EngineHolder()
    app = build_server(settings, holder).streamable_http_app(
        streamable_http_path="/mcp", transport_security=security, host=host
    )
    app.router.routes.extend([*JsonApi(holder).routes(), *Dashboard(holder).routes()])
    # Every route, not only /mcp, refuses a foreign Host (DNS rebinding); with a token set the
    # server may be reached by any name, and the token is what protects it.
    allowed = ["*"] if settings.token else [*names, "[::1]"]
    app.add_middleware(SameOrigin)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed)
    if settings.token:
        app.add_middleware(BearerToken, token=settings.token)
    app.add_middleware(BodyLimit)  # outermost: nothing reads an oversized body
    return app
