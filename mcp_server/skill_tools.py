"""Skills exposed as tools: a skill whose config has `"expose_as_tool": true` appears as its own
tool `skill_<name>`, whose arguments (described by the skill's `input_schema`) become the run's
event data. Clients are told when the tool list changes (a `ToolsListChanged` event on the
listen bus, and `notifications/tools/list_changed` to the 2025-era session that made the change).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from jsonschema import Draft202012Validator
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.subscriptions import InMemorySubscriptionBus, ToolsListChanged

from engine import Engine, SkillNotFound
from engine.records import SkillVersion
from mcp_server import views
from mcp_server.run_updates import RunUpdates
from mcp_server.tools import RUN, answer

PREFIX = "skill_"
EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}
WAIT_SECONDS = 30.0
MAX_PROBLEM_CHARS = 300


def _brief(message: str) -> str:
    """jsonschema quotes the whole offending value; keep its start and the rule at its end."""
    if len(message) <= MAX_PROBLEM_CHARS:
        return message
    half = MAX_PROBLEM_CHARS // 2
    return f"{message[:half]}…{message[-half:]}"


class ExposedSkills:
    def __init__(
        self, server: MCPServer, engine_of: Callable[[], Engine], bus: InMemorySubscriptionBus
    ) -> None:
        self.server = server
        self.engine_of = engine_of
        self.bus = bus
        self.versions: dict[str, int] = {}  # skill name -> version its tool was built from

    async def sync_all(self) -> None:
        for skill in await self.engine_of().list_skills():
            await self.sync(skill.name, announce=False)

    async def sync(self, name: str, ctx: Context | None = None, *, announce: bool = True) -> None:
        """Make the tool of skill `name` match its latest version (or remove it)."""
        try:
            version = (await self.engine_of().get_skill(name)).version
        except SkillNotFound:
            version = None
        exposed = version is not None and bool(version.config.get("expose_as_tool"))
        known = self.versions.get(name)
        if exposed and version is not None and known != version.version:
            self._add(version)
        elif not exposed and known is not None:
            self.server.remove_tool(PREFIX + name)
            del self.versions[name]
        else:
            return
        if announce:
            await self._announce(ctx)

    def _add(self, version: SkillVersion) -> None:
        tool_name = PREFIX + version.name
        if version.name in self.versions:
            self.server.remove_tool(tool_name)
        schema = version.config.get("input_schema") or EMPTY_SCHEMA
        self.server.add_tool(
            self._invoker(version.name, schema),
            name=tool_name,
            description=version.description or f"Run the skill {version.name!r} and return its result.",
            annotations=RUN,
        )
        tool = self.server._tool_manager.get_tool(tool_name)  # the SDK derives the schema from the signature
        assert tool is not None
        tool.parameters = schema  # clients see the skill's own schema
        self.versions[version.name] = version.version

    def _invoker(self, skill: str, schema: dict[str, Any]) -> Callable[..., Any]:
        validator = Draft202012Validator(schema)
        engine_of = self.engine_of

        async def invoke(**arguments: Any) -> views.RunSummary:
            data = {key: value for key, value in arguments.items() if value is not None}
            problems = sorted(validator.iter_errors(data), key=lambda error: list(error.path))
            if problems:
                where = ".".join(str(part) for part in problems[0].path) or "arguments"
                raise ToolError(
                    f"invalid arguments for {PREFIX}{skill}: {where}: {_brief(problems[0].message)}"
                )
            run = await answer(engine_of().invoke(skill, data, wait=True, timeout=WAIT_SECONDS))
            return views.RunSummary.of(run)

        # One keyword parameter per schema property, so the SDK passes the arguments through.
        names = list((schema.get("properties") or {}).keys())
        invoke.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [
                inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Any)
                for n in names
            ],
            return_annotation=views.RunSummary,
        )
        return invoke

    async def _announce(self, ctx: Context | None) -> None:
        await self.bus.publish(ToolsListChanged())
        if ctx is not None:
            await RunUpdates.tell_session(ctx, "send_tool_list_changed")
