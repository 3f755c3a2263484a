"""The HTTP surface: Streamable HTTP MCP at `/mcp` in a Starlette app, loopback unless a token is set.

The SDK's transport security refuses foreign `Host` and `Origin` headers (DNS rebinding); a
bearer token, when configured, is required on every request.
"""

from __future__ import annotations

import hmac
import json

from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from engine import InvalidInput
from mcp_server.config import Settings
from mcp_server.server import build_server

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class BearerToken:
    """ASGI middleware: 401 for any HTTP request without `Authorization: Bearer <token>`."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                body = json.dumps(
                    {"error": "unauthorized: send Authorization: Bearer <STEPKEEPER_TOKEN>"}
                ).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def check_binding(host: str, token: str | None) -> None:
    if host not in LOOPBACK and not token:
        raise InvalidInput(f"refusing to serve on {host} without a token: set STEPKEEPER_TOKEN (or --token)")


def build_http_app(settings: Settings, host: str, port: int) -> Starlette:
    check_binding(host, settings.token)
    names = sorted(LOOPBACK | {host})
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[f"{name}:{port}" for name in names] + [f"[::1]:{port}"],
        allowed_origins=[f"http://{name}:{port}" for name in names],
    )
    app = build_server(settings).streamable_http_app(
        streamable_http_path="/mcp", transport_security=security, host=host
    )
    if settings.token:
        app.add_middleware(BearerToken, token=settings.token)
    return app
