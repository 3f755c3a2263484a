"""The MCP server: an `MCPServer` whose lifespan owns one started `Engine`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version as package_version

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.subscriptions import ResourcesListChanged

from engine import Engine
from mcp_server.config import Settings
from mcp_server.loop_tools import register_loop_tools
from mcp_server.prompts import register_prompts
from mcp_server.resources import register_resources
from mcp_server.run_updates import RunUpdates
from mcp_server.skill_tools import ExposedSkills
from mcp_server.tools import register_tools

INSTRUCTIONS = (
    "stepkeeper runs durable skills: small Python programs with `def handler(ctx, step)` whose "
    "steps are checkpointed. Register one with create_skill, run it with invoke_function or "
    "send_event, and inspect runs with list_runs and get_run_trace."
)


class EngineHolder:
    """The engine the lifespan started, for the tools to reach."""

    def __init__(self) -> None:
        self.engine: Engine | None = None

    def __call__(self) -> Engine:
        if self.engine is None:
            raise RuntimeError("the engine is not running")
        return self.engine


def build_server(settings: Settings, holder: EngineHolder | None = None) -> MCPServer:
    """The MCP server; `holder` receives the engine its lifespan starts (the dashboard uses it)."""
    holder = holder or EngineHolder()
    updates = RunUpdates()

    @asynccontextmanager
    async def lifespan(_server: MCPServer) -> AsyncIterator[dict[str, Engine]]:
        engine = settings.build_engine()
        await engine.start()
        holder.engine = engine
        updates.attach(engine)
        await exposed.sync_all()
        try:
            yield {"engine": engine}
        finally:
            updates.detach(engine)
            holder.engine = None
            await engine.close()

    server = MCPServer(
        "stepkeeper",
        version=package_version("stepkeeper"),
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        log_level="WARNING",
        subscriptions=updates.bus,
    )
    updates.register_legacy_handlers(server)
    exposed = ExposedSkills(server, holder, updates.bus)

    async def skill_changed(name: str, ctx: Context) -> None:
        await exposed.sync(name, ctx)
        await resources_changed(ctx)  # skill://{name} resources changed

    async def resources_changed(ctx: Context) -> None:
        await updates.bus.publish(ResourcesListChanged())
        await updates.tell_session(ctx, "send_resource_list_changed")

    register_tools(server, holder, skill_changed)
    register_loop_tools(server, holder, resources_changed)
    register_resources(server, holder)
    register_prompts(server, holder)
    return server
