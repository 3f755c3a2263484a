"""MCP resources: a skill's code, a run's trace, and the recent runs, readable by URI."""

from __future__ import annotations

import json
from collections.abc import Callable

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError

from engine import Engine, InvalidInput, RunNotFound, SkillNotFound, StepkeeperError
from mcp_server.views import LoopView, RunSummary

RECENT_RUNS = 50


def refusal(exc: StepkeeperError) -> ResourceError:
    """A URI that names no skill or run (or not a valid one) is the caller's mistake: "not
    found" (JSON-RPC invalid params), not the internal error a bare `ResourceError` becomes."""
    if isinstance(exc, SkillNotFound | RunNotFound | InvalidInput):
        return ResourceNotFoundError(f"{exc.code}: {exc}")
    return ResourceError(f"{exc.code}: {exc}")


def register_resources(server: MCPServer, engine_of: Callable[[], Engine]) -> None:
    @server.resource("skill://{name}", mime_type="text/x-python", description="A skill's latest code")
    async def skill_code(name: str) -> str:
        try:
            return (await engine_of().get_skill(name)).version.code
        except StepkeeperError as exc:
            raise refusal(exc) from None

    @server.resource("run://{run_id}", mime_type="application/json", description="A run's trace")
    async def run_trace(run_id: str) -> str:
        try:
            return json.dumps(await engine_of().get_run_trace(run_id), indent=2)
        except StepkeeperError as exc:
            raise refusal(exc) from None

    @server.resource("loops://all", mime_type="application/json", description="Every loop and its next ticks")
    async def all_loops() -> str:
        loops = await engine_of().list_loops()
        return json.dumps(
            [LoopView.of(loop, Engine.upcoming_ticks(loop)).model_dump() for loop in loops], indent=2
        )

    @server.resource("runs://recent", mime_type="application/json", description="The 50 newest runs")
    async def recent_runs() -> str:
        page = await engine_of().list_runs(limit=RECENT_RUNS)
        return json.dumps([RunSummary.of(run).model_dump() for run in page.runs], indent=2)
