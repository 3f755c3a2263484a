"""Resource updates for `run://{run_id}`: clients hear about every change of a run they watch.

Both protocol eras: 2026-07-28 clients open `subscriptions/listen` with the run's URI (the SDK's
listen handler filters what each stream asked for, so every change is published on the bus);
2025-11-25 clients send `resources/subscribe` and get `notifications/resources/updated` on
their session. The engine reports changes from its threads; they are coalesced per run and
delivered from the server's event loop.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from mcp.server import MCPServer
from mcp.server.session import ServerSession
from mcp.server.subscriptions import InMemorySubscriptionBus, ResourceUpdated
from mcp_types import EmptyResult, SubscribeRequestParams, UnsubscribeRequestParams

from engine import Engine

log = logging.getLogger(__name__)
RUN_URI = "run://{}"
MAX_WATCHED_URIS = 10_000


class RunUpdates:
    def __init__(self) -> None:
        self.bus = InMemorySubscriptionBus()
        self._sessions: dict[str, set[ServerSession]] = {}  # legacy subscriptions by URI
        self._pending: set[str] = set()
        self._tasks: set[asyncio.Future[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(self, engine: Engine) -> None:
        """Start reporting `engine`'s run changes (call from the server's event loop)."""
        self._loop = asyncio.get_running_loop()
        engine.on_run_changed(self.changed)

    def detach(self, engine: Engine) -> None:
        engine.on_run_changed(lambda run_id: None)
        self._loop = None

    def register_legacy_handlers(self, server: MCPServer) -> None:
        lowlevel = server._lowlevel_server  # the SDK offers no public hook for resources/subscribe
        lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, self._subscribe)
        lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, self._unsubscribe)

    # engine side (any thread) --------------------------------------------------------------

    def changed(self, run_id: str) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._schedule, RUN_URI.format(run_id))

    def _schedule(self, uri: str) -> None:
        if uri in self._pending:  # an update for this run is already on its way: coalesce
            return
        self._pending.add(uri)
        task = asyncio.ensure_future(self._publish(uri))
        self._tasks.add(task)  # held until done, so it is not collected mid-flight
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, uri: str) -> None:
        self._pending.discard(uri)
        await self.bus.publish(ResourceUpdated(uri=uri))
        for session in list(self._sessions.get(uri, ())):
            try:
                await session.send_resource_updated(uri)
            except Exception:  # the client went away: forget its subscriptions
                self._forget(session)

    @staticmethod
    async def tell_session(ctx: Any, notification: str) -> None:
        """Send a list-changed notification to the 2025-era session of `ctx`; a 2026-07-28
        session hears the same on its listen stream instead."""
        try:
            await getattr(ctx.session, notification)()
        except Exception:
            log.debug("%s not sent on this session", notification, exc_info=True)

    # legacy handlers (the server's event loop) --------------------------------------------------

    async def _subscribe(self, ctx: Any, params: SubscribeRequestParams) -> EmptyResult:
        uri = str(params.uri)
        if len(self._sessions) < MAX_WATCHED_URIS or uri in self._sessions:
            self._sessions.setdefault(uri, set()).add(ctx.session)
        return EmptyResult()

    async def _unsubscribe(self, ctx: Any, params: UnsubscribeRequestParams) -> EmptyResult:
        watchers = self._sessions.get(str(params.uri))
        if watchers is not None:
            watchers.discard(ctx.session)
            if not watchers:
                del self._sessions[str(params.uri)]
        return EmptyResult()

    def _forget(self, session: ServerSession) -> None:
        for uri in list(self._sessions):
            self._sessions[uri].discard(session)
            if not self._sessions[uri]:
                del self._sessions[uri]
