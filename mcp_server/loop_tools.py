"""The MCP tools for loops: cron schedules that run a skill (the seed's loop layer)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server import MCPServer
from mcp.server.mcpserver import Context

from engine import Engine
from engine.records import Loop
from mcp_server import views
from mcp_server.tools import DESTROY, READ, WRITE, answer


def loop_view(loop: Loop) -> views.LoopView:
    return views.LoopView.of(loop, Engine.upcoming_ticks(loop))


async def _quiet(ctx: Context) -> None:
    return None


def register_loop_tools(
    server: MCPServer,
    engine_of: Callable[[], Engine],
    loops_changed: Callable[[Context], Awaitable[None]] = _quiet,
) -> None:
    @server.tool(annotations=WRITE)
    async def schedule_loop(
        skill: str,
        cron: str,
        ctx: Context,
        timezone: str = "UTC",
        data: dict[str, Any] | None = None,
        name: str | None = None,
        catch_up: str = "latest",
    ) -> views.LoopView:
        """Run `skill` on a cron schedule: 5 fields (minute hour day month weekday) or 6 with
        seconds first, in an IANA `timezone` (DST-correct). Each run's `ctx.event.data` is
        `data`. `catch_up` says what happens to ticks missed while no server ran: `none`,
        `latest` (fire the most recent once) or `all` (each, at most 100). Returns the loop id
        and the next three fire times."""
        loop = await answer(engine_of().schedule_loop(skill, cron, timezone, data or {}, name, catch_up))
        await loops_changed(ctx)
        return loop_view(loop)

    @server.tool(annotations=READ)
    async def list_loops() -> views.LoopList:
        """List every loop with its schedule, state and next fire times."""
        return views.LoopList(loops=[loop_view(loop) for loop in await answer(engine_of().list_loops())])

    @server.tool(annotations=WRITE)
    async def update_loop(
        loop_id: str,
        cron: str | None = None,
        timezone: str | None = None,
        paused: bool | None = None,
        data: dict[str, Any] | None = None,
    ) -> views.LoopView:
        """Change a loop's schedule or data, or pause (`paused=true`) and resume it. Resuming
        starts from the next tick; ticks that passed while paused are not fired."""
        changes = {"cron": cron, "timezone": timezone, "paused": paused, "data": data}
        loop = await answer(engine_of().update_loop(loop_id, **changes))
        return loop_view(loop)

    @server.tool(annotations=DESTROY)
    async def delete_loop(loop_id: str, ctx: Context) -> views.LoopDeleted:
        """Delete a loop; runs it started stay in the history."""
        await answer(engine_of().delete_loop(loop_id))
        await loops_changed(ctx)
        return views.LoopDeleted(loop_id=loop_id, deleted=True)
