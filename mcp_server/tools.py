"""The MCP tools: the public contract an agent programs stepkeeper with.

Each tool is a thin translation to one `Engine` call; engine errors become tool errors
(`isError`) with the engine's specific message, and nothing is changed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations

from engine import Engine, StepkeeperError
from engine.records import FINAL_STATUSES
from mcp_server import views

T = TypeVar("T")
READ = ToolAnnotations(readOnlyHint=True, destructiveHint=False, idempotentHint=True, openWorldHint=False)
WRITE = ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=False, openWorldHint=False)
DESTROY = ToolAnnotations(readOnlyHint=False, destructiveHint=True, idempotentHint=True, openWorldHint=False)
RUN = ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=False, openWorldHint=True)
PROGRESS_POLL_SECONDS = 0.2


async def answer(call: Awaitable[T]) -> T:
    """The engine's own errors are the caller's to fix: say so as a tool error."""
    try:
        return await call
    except StepkeeperError as exc:
        raise ToolError(f"{exc.code}: {exc}") from None


SkillChanged = Callable[[str, Context], Awaitable[None]]


async def _nothing(name: str, ctx: Context) -> None:
    return None


def register_tools(
    server: MCPServer, engine_of: Callable[[], Engine], skill_changed: SkillChanged = _nothing
) -> None:
    @server.tool(annotations=WRITE)
    async def create_skill(
        name: str,
        code: str,
        ctx: Context,
        description: str = "",
        triggers: list[dict[str, Any]] | None = None,
        config: dict[str, Any] | None = None,
    ) -> views.SkillRegistered:
        """Register a new skill: Python source with `def handler(ctx, step)`. Triggers are
        `[{"event": name, "if": CEL condition}]` or `[{"cron": "0 9 * * *", "timezone": tz}]`;
        config holds `retries`, `retry_backoff`, `concurrency` ([{limit, key}]), and
        `expose_as_tool` with `input_schema` to make the skill its own tool `skill_<name>`.
        Compile errors come back with line and column; warnings flag replay hazards."""
        registration = await answer(
            engine_of().create_skill(name, code, description, triggers or [], config or {})
        )
        await skill_changed(name, ctx)
        return views.SkillRegistered.of(registration)

    @server.tool(annotations=WRITE)
    async def update_skill(
        name: str,
        ctx: Context,
        code: str | None = None,
        description: str | None = None,
        triggers: list[dict[str, Any]] | None = None,
        config: dict[str, Any] | None = None,
    ) -> views.SkillRegistered:
        """Make version N+1 of a skill; fields left out are kept. Runs in flight finish on their version."""
        registration = await answer(engine_of().update_skill(name, code, description, triggers, config))
        await skill_changed(name, ctx)
        return views.SkillRegistered.of(registration)

    @server.tool(annotations=DESTROY)
    async def delete_skill(name: str, ctx: Context) -> views.Deleted:
        """Delete a skill: it is no longer triggered; its runs and versions stay readable."""
        await answer(engine_of().delete_skill(name))
        await skill_changed(name, ctx)
        return views.Deleted(name=name, deleted=True)

    @server.tool(annotations=READ)
    async def list_skills() -> views.SkillList:
        """List registered skills with their latest version."""
        skills = await answer(engine_of().list_skills())
        return views.SkillList(skills=[views.SkillSummary.of(skill) for skill in skills])

    @server.tool(annotations=READ)
    async def get_skill(name: str, version: int | None = None) -> views.SkillDetail:
        """A skill's code, triggers and config (the latest version unless `version` is given)."""
        return views.SkillDetail.of(await answer(engine_of().get_skill(name, version)))

    @server.tool(annotations=RUN)
    async def invoke_function(
        name: str, ctx: Context, data: dict[str, Any] | None = None, wait: bool = True, timeout_s: float = 30
    ) -> views.RunSummary:
        """Run a skill now with `data` as its event data. With `wait`, returns the result, or the
        run as it stands at the timeout (not an error); progress is reported as steps finish."""
        engine = engine_of()
        if not 0 < timeout_s <= 600:
            raise ToolError("invalid_input: timeout_s must be between 0 and 600 seconds")
        run = await answer(engine.invoke(name, data or {}))
        if wait:
            run = await _wait_with_progress(engine, run.id, timeout_s, ctx)
        return views.RunSummary.of(run)

    @server.tool(annotations=RUN)
    async def send_event(
        name: str, data: dict[str, Any] | None = None, id: str | None = None
    ) -> views.EventSent:
        """Send an event; it is stored before this returns. An id sent twice starts its runs once."""
        sent = await answer(engine_of().send_event(name, data or {}, id))
        return views.EventSent(event_id=sent.event_ids[0], run_ids=sent.run_ids)

    @server.tool(annotations=READ)
    async def list_runs(
        function: str | None = None,
        status: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> views.RunPageView:
        """Runs, newest first, filtered by skill, status and ISO-8601 creation time; paginated."""
        return views.RunPageView.of(
            await answer(engine_of().list_runs(function, status, since, until, limit, cursor))
        )

    @server.tool(annotations=READ)
    async def get_run(run_id: str) -> views.RunSummary:
        """One run: status, output or error."""
        return views.RunSummary.of(await answer(engine_of().get_run(run_id)))

    @server.tool(annotations=READ)
    async def get_run_trace(run_id: str) -> views.Trace:
        """A run's steps as spans (op, status, every attempt, input, output, error, times), its logs
        and its child runs."""
        return views.Trace(**await answer(engine_of().get_run_trace(run_id)))

    @server.tool(annotations=READ)
    async def get_stats(function: str | None = None, since: str | None = None) -> views.Stats:
        """Per skill: runs by status, success rate, p50/p95 duration, retries and top errors,
        for runs created since `since` (ISO-8601 time, or a duration back from now like `7d`).
        What a review loop reads to decide how to improve a skill."""
        found = await answer(engine_of().get_stats(function, since))
        return views.Stats(skills={name: views.SkillStats(**figures) for name, figures in found.items()})

    @server.tool(annotations=DESTROY)
    async def cancel_run(run_id: str, reason: str | None = None) -> views.Cancelled:
        """Cancel a run and the runs it invoked; sleeping and waiting runs are cancelled too."""
        return views.Cancelled(cancelled=await answer(engine_of().cancel_run(run_id, reason)))

    @server.tool(annotations=RUN)
    async def rerun(
        run_id: str, from_step: str | None = None, data: dict[str, Any] | None = None
    ) -> views.RunSummary:
        """Run the skill's latest version again with the run's event (or new `data`). With
        `from_step`, the steps finished before that step are reused, not run again."""
        return views.RunSummary.of(await answer(engine_of().rerun(run_id, from_step, data)))


async def _wait_with_progress(engine: Engine, run_id: str, timeout_s: float, ctx: Context) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    reported = 0
    while True:
        run = await engine.wait_for_run(run_id, min(PROGRESS_POLL_SECONDS, max(0.0, deadline - loop.time())))
        finished = sum(
            1 for span in (await engine.get_run_trace(run_id))["spans"] if span["status"] == "completed"
        )
        if finished > reported:
            reported = finished
            await ctx.report_progress(finished, message=f"{finished} steps finished; run is {run.status}")
        if run.status in FINAL_STATUSES or loop.time() >= deadline:
            return run
