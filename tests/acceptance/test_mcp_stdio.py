"""The MCP server over stdio, driven by the SDK's own client in both protocol eras."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPDeprecationWarning

from tests.support.recorder import Recorder

pytestmark = pytest.mark.slow

ERAS = ["legacy", "2026-07-28"]  # the 2025-11-25 handshake era and the stateless era
TOOLS = {
    "create_skill", "update_skill", "delete_skill", "list_skills", "get_skill", "invoke_function",
    "send_event", "list_runs", "get_run", "get_run_trace", "cancel_run", "rerun",
    "schedule_loop", "list_loops", "update_loop", "delete_loop", "get_stats",
}  # fmt: skip
SKILL = """
def handler(ctx, step):
    a = step.run("first", lambda: ctx.event["data"]["n"] * 2)
    b = step.run("second", lambda: a + 1)
    return {"result": b}
"""


def client(home: Path, mode: str) -> Client:
    command = [sys.executable, "-m", "mcp_server", "--home", str(home), "serve"]
    return Client(StdioServerParameters(command=command[0], args=command[1:]), mode=mode)


async def call(session: Client, tool: str, arguments: dict[str, Any]) -> Any:
    result = await session.call_tool(tool, arguments)
    assert not result.is_error, result.content
    return result.structured_content


@pytest.mark.parametrize("mode", ERAS)
async def test_tools_are_listed_with_schemas_and_annotations(tmp_path: Path, mode: str) -> None:
    async with client(tmp_path, mode) as session:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
    assert set(tools) == TOOLS
    assert all(tool.output_schema for tool in tools.values())
    assert tools["list_runs"].annotations.read_only_hint is True
    assert tools["delete_skill"].annotations.destructive_hint is True
    assert tools["invoke_function"].annotations.read_only_hint is False
    assert set(tools["create_skill"].input_schema["required"]) == {"name", "code"}


@pytest.mark.parametrize("mode", ERAS)
async def test_create_invoke_with_progress_and_read_the_trace(tmp_path: Path, mode: str) -> None:
    progress: list[tuple[float, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, message))

    async with client(tmp_path, mode) as session:
        created = await call(session, "create_skill", {"name": "double", "code": SKILL})
        assert created == {"name": "double", "version": 1, "triggers": [], "warnings": []}
        result = await session.call_tool(
            "invoke_function", {"name": "double", "data": {"n": 20}}, progress_callback=on_progress
        )
        run = result.structured_content
        assert run["status"] == "completed" and run["output"] == {"result": 41}
        assert progress and progress[-1][0] == 2
        trace = await call(session, "get_run_trace", {"run_id": run["run_id"]})
        assert [(span["key"], span["output"]) for span in trace["spans"]] == [("first", 40), ("second", 41)]
        listed = await call(session, "list_runs", {"function": "double"})
        assert [item["run_id"] for item in listed["runs"]] == [run["run_id"]]


@pytest.mark.parametrize("mode", ERAS)
async def test_bad_input_gets_specific_tool_errors_and_changes_nothing(tmp_path: Path, mode: str) -> None:
    async with client(tmp_path, mode) as session:
        await call(session, "create_skill", {"name": "ok", "code": SKILL})
        cases = [
            (
                "create_skill",
                {"name": "broken", "code": "def handler(ctx, step:\n    pass\n"},
                "line 1, column 12",
            ),
            ("create_skill", {"name": "ok", "code": SKILL}, "already exists"),
            ("create_skill", {"name": 5, "code": SKILL}, "name"),
            ("create_skill", {"code": SKILL}, "name"),
            ("invoke_function", {"name": "ghost"}, "skill 'ghost' does not exist"),
            ("get_run", {"run_id": "run_nope"}, "run 'run_nope' does not exist"),
            ("list_runs", {"status": "sideways"}, "unknown status"),
            ("create_skill", {"name": "huge", "code": SKILL + "#" * 300_000}, "over the limit"),
            ("schedule_loop", {"skill": "ok", "cron": "every day"}, "use 5"),
            ("update_loop", {"loop_id": "loop_x", "paused": True}, "loop 'loop_x' does not exist"),
            ("get_stats", {"function": "Not A Name"}, "invalid skill name"),
        ]
        for tool, arguments, words in cases:
            result = await session.call_tool(tool, arguments)
            assert result.is_error, (tool, arguments)
            assert words in result.content[0].text, result.content[0].text
        skills = await call(session, "list_skills", {})
        assert [skill["name"] for skill in skills["skills"]] == ["ok"]
        assert (await call(session, "list_runs", {}))["runs"] == []
        assert (await call(session, "list_loops", {}))["loops"] == []


async def test_two_stdio_servers_on_one_database_run_each_step_once(
    tmp_path: Path, recorder: Recorder, shared_db_url: str
) -> None:
    env = {"STEPKEEPER_HTTP_ALLOW": recorder.allow, "STEPKEEPER_DATABASE_URL": shared_db_url}
    code = """
def handler(ctx, step):
    n = ctx.event["data"]["n"]
    return step.run("call", lambda: http.post("BASE/" + str(n)).status_code)
""".replace("BASE", recorder.base)

    def server() -> Client:
        command = [sys.executable, "-m", "mcp_server", "--home", str(tmp_path), "serve"]
        return Client(StdioServerParameters(command=command[0], args=command[1:], env=env), mode="legacy")

    async with server() as first, server() as second:
        await call(first, "create_skill", {"name": "ping", "code": code, "triggers": [{"event": "job"}]})
        run_ids = []
        for n in range(20):
            sent = await call(first if n % 2 else second, "send_event", {"name": "job", "data": {"n": n}})
            run_ids.extend(sent["run_ids"])
        for run_id in run_ids:
            for _ in range(200):
                run = await call(first, "get_run", {"run_id": run_id})
                if run["status"] == "completed":
                    break
                await asyncio.sleep(0.05)
            assert run["status"] == "completed", run
    assert sorted(recorder.paths()) == sorted(f"/{n}" for n in range(20))


@pytest.mark.parametrize("mode", ERAS)
async def test_resources_and_prompts(tmp_path: Path, mode: str) -> None:
    async with client(tmp_path, mode) as session:
        await call(session, "create_skill", {"name": "double", "code": SKILL})
        run = await call(session, "invoke_function", {"name": "double", "data": {"n": 1}})
        templates = {t.uri_template for t in (await session.list_resource_templates()).resource_templates}
        assert templates == {"skill://{name}", "run://{run_id}"}
        code = await session.read_resource("skill://double")
        assert code.contents[0].text == SKILL and code.contents[0].mime_type == "text/x-python"
        trace = json.loads((await session.read_resource(f"run://{run['run_id']}")).contents[0].text)
        assert [span["key"] for span in trace["spans"]] == ["first", "second"]
        recent = json.loads((await session.read_resource("runs://recent")).contents[0].text)
        assert [item["run_id"] for item in recent] == [run["run_id"]]

        prompts = {p.name for p in (await session.list_prompts()).prompts}
        assert prompts == {"write_skill", "review_skill", "triage_run"}
        guide = await session.get_prompt("write_skill", {"goal": "watch a queue"})
        assert "def handler(ctx, step)" in guide.messages[0].content.text
        review = await session.get_prompt("review_skill", {"name": "double"})
        assert "{'completed': 1}" in review.messages[0].content.text
        triage = await session.get_prompt("triage_run", {"run_id": run["run_id"]})
        assert run["run_id"] in triage.messages[0].content.text


@pytest.mark.parametrize("mode", ERAS)
async def test_loops_schedule_fire_pause_and_delete(tmp_path: Path, mode: str) -> None:
    async with client(tmp_path, mode) as session:
        await call(session, "create_skill", {"name": "double", "code": SKILL})
        loop = await call(
            session,
            "schedule_loop",
            {"skill": "double", "cron": "* * * * * *", "data": {"n": 4}, "name": "every second"},
        )
        assert len(loop["next_fire_times"]) == 3 and loop["catch_up"] == "latest"
        runs: list[dict[str, Any]] = []
        for _ in range(100):  # the first tick is at most a second away
            runs = (await call(session, "list_runs", {"function": "double", "status": "completed"}))["runs"]
            if runs:
                break
            await asyncio.sleep(0.05)
        assert runs and runs[0]["trigger"] == "cron" and runs[0]["output"] == {"result": 9}

        paused = await call(session, "update_loop", {"loop_id": loop["loop_id"], "paused": True})
        assert paused["paused"] is True and paused["next_fire_times"] == []
        listed = json.loads((await session.read_resource("loops://all")).contents[0].text)
        assert [item["loop_id"] for item in listed] == [loop["loop_id"]] and listed[0]["paused"]

        bad = await session.call_tool("schedule_loop", {"skill": "double", "cron": "99 * * * *"})
        assert bad.is_error and "invalid cron" in bad.content[0].text
        missing = await session.call_tool("schedule_loop", {"skill": "nope", "cron": "* * * * *"})
        assert missing.is_error and "skill_not_found" in missing.content[0].text

        await call(session, "delete_loop", {"loop_id": loop["loop_id"]})
        assert (await call(session, "list_loops", {}))["loops"] == []
        gone = await session.call_tool("delete_loop", {"loop_id": loop["loop_id"]})
        assert gone.is_error and "loop_not_found" in gone.content[0].text


# Two naps: whenever the watch starts, at least two changes after it lie 0.3 s apart (changes
# within one moment reach a watcher as one update).
SLEEPER = (
    "def handler(ctx, step):\n"
    "    step.sleep('nap', 0.5)\n"
    "    step.run('between', lambda: 1)\n"
    "    step.sleep('nap-2', 0.3)\n"
    "    return step.run('after', lambda: 1)\n"
)


async def test_a_run_subscription_hears_every_change_modern(tmp_path: Path) -> None:
    async with client(tmp_path, "2026-07-28") as session:
        await call(session, "create_skill", {"name": "sleeper", "code": SLEEPER})
        run = await call(session, "invoke_function", {"name": "sleeper", "wait": False})
        uri = f"run://{run['run_id']}"
        seen = 0
        with anyio.fail_after(20):
            seen = await count_updates_until_done(session, uri)
        assert seen >= 2  # it woke from the first nap, then from the second and completed


async def count_updates_until_done(session: Client, uri: str) -> int:
    seen = 0
    async with session.listen(resource_subscriptions=[uri]) as updates:
        async for event in updates:
            assert event.uri == uri
            seen += 1
            state = json.loads((await session.read_resource(uri)).contents[0].text)
            if state["run"]["status"] == "completed":
                break
    return seen


async def test_a_run_subscription_hears_every_change_legacy(tmp_path: Path) -> None:
    updated: list[str] = []
    done = asyncio.Event()

    async def on_message(message: Any) -> None:
        uri = getattr(getattr(message, "params", None), "uri", None)
        if uri is not None:
            updated.append(str(uri))
            done.set()

    command = [sys.executable, "-m", "mcp_server", "--home", str(tmp_path), "serve"]
    params = StdioServerParameters(command=command[0], args=command[1:])
    async with Client(params, mode="legacy", message_handler=on_message) as session:
        await call(session, "create_skill", {"name": "sleeper", "code": SLEEPER})
        run = await call(session, "invoke_function", {"name": "sleeper", "wait": False})
        uri = f"run://{run['run_id']}"
        with pytest.warns(MCPDeprecationWarning):  # the SDK marks the 2025-era method as such
            await session.session.subscribe_resource(uri)
        for _ in range(100):
            state = json.loads((await session.read_resource(uri)).contents[0].text)
            if state["run"]["status"] == "completed":
                break
            await asyncio.sleep(0.05)
        await asyncio.wait_for(done.wait(), 5)
    assert updated and set(updated) == {uri}


async def test_get_stats_sums_up_a_skills_runs(tmp_path: Path) -> None:
    flaky = (
        "def handler(ctx, step):\n"
        "    if ctx.event['data']['n'] % 3 == 0:\n"
        "        raise NonRetriableError('multiple of three')\n"
        "    return step.run('ok', lambda: ctx.event['data']['n'])\n"
    )
    async with client(tmp_path, "2026-07-28") as session:
        await call(session, "create_skill", {"name": "flaky", "code": flaky, "config": {"retries": 0}})
        for n in range(6):
            await call(session, "invoke_function", {"name": "flaky", "data": {"n": n}})
        found = (await call(session, "get_stats", {"function": "flaky", "since": "1h"}))["skills"]["flaky"]
        assert found["runs"] == 6 and found["by_status"] == {"completed": 4, "failed": 2}
        assert found["success_rate"] == round(4 / 6, 4)
        assert found["duration_p50_ms"] > 0 and found["duration_p95_ms"] >= found["duration_p50_ms"]
        assert found["top_errors"] == [{"error": "NonRetriableError: multiple of three", "count": 2}]
        bad = await session.call_tool("get_stats", {"since": "last tuesday"})
        assert bad.is_error


EXPOSED_CONFIG = {
    "expose_as_tool": True,
    "input_schema": {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 0}},
        "required": ["n"],
    },
}


async def test_a_skill_exposed_as_a_tool_appears_and_the_change_is_announced(tmp_path: Path) -> None:
    async with client(tmp_path, "2026-07-28") as session:
        with anyio.fail_after(20):
            async with session.listen(tools_list_changed=True) as changes:
                created = {
                    "name": "double",
                    "code": SKILL,
                    "description": "Doubles n",
                    "config": EXPOSED_CONFIG,
                }
                await call(session, "create_skill", created)
                async for _event in changes:
                    break  # the tool list changed
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert tools["skill_double"].input_schema == EXPOSED_CONFIG["input_schema"]
        assert tools["skill_double"].description == "Doubles n"
        run = await call(session, "skill_double", {"n": 5})
        assert run["status"] == "completed" and run["output"] == {"result": 11}
        bad = await session.call_tool("skill_double", {"n": -1})
        assert bad.is_error and "minimum" in bad.content[0].text
        await call(session, "update_skill", {"name": "double", "config": {}})
        assert "skill_double" not in {tool.name for tool in (await session.list_tools()).tools}


async def test_tool_list_changes_reach_a_legacy_session(tmp_path: Path) -> None:
    notices: list[str] = []

    async def on_message(message: Any) -> None:
        notices.append(type(message).__name__)

    command = [sys.executable, "-m", "mcp_server", "--home", str(tmp_path), "serve"]
    params = StdioServerParameters(command=command[0], args=command[1:])
    async with Client(params, mode="legacy", message_handler=on_message) as session:
        await call(session, "create_skill", {"name": "double", "code": SKILL, "config": EXPOSED_CONFIG})
        for _ in range(100):
            if "ToolListChangedNotification" in notices:
                break
            await asyncio.sleep(0.02)
        assert "ToolListChangedNotification" in notices
        assert "ResourceListChangedNotification" in notices  # the skill:// list changed too
        assert "skill_double" in {tool.name for tool in (await session.list_tools()).tools}
    async with client(tmp_path, "2026-07-28") as again:  # a new server process builds it at start
        assert "skill_double" in {tool.name for tool in (await again.list_tools()).tools}
