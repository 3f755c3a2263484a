"""A canary secret, used by skill code in every way it can, never shows up anywhere stepkeeper
keeps or shows things: the database file and its WAL, the server's log, every dashboard page and
JSON API answer, every MCP tool result, resource and prompt, the CLI views, error texts.

It is searched for as it is and in the forms it takes when escaped or encoded (JSON, URL,
HTML, base64). The recorder and the scripted model must receive it: that proves the skills
really used it. Step ids, event names and ids and wait conditions that hold a secret are
refused (they are keys, which no marker can replace); event data is redacted like any stored
value, so a receiver of the event sees the marker and reads `secrets` itself.
"""

from __future__ import annotations

import base64
import html
import json
import secrets
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus, urlsplit

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from tests.support.http_server import base_env, start_server
from tests.support.model_server import ModelServer, Reply
from tests.support.recorder import Recorder

pytestmark = pytest.mark.slow
# Characters that JSON, URLs and HTML each escape, so every encoded form differs from the raw one.
CANARY = secrets.token_hex(13)[:24] + '/+=&<"' + secrets.token_hex(1)
PLAIN = secrets.token_hex(16)  # a second secret, for names and ids (which allow only plain characters)
LLM_KEY = "sk-" + secrets.token_hex(15)[:29]
FINAL = {"completed", "failed", "cancelled", "skipped"}

USES = """
def refused_call(s):
    try:
        http.get("https://not-allowed.example/x?k=" + s)
    except Exception as exc:
        return str(exc)


def handler(ctx, step):
    s = secrets["CANARY"]
    base = ctx.event["data"]["base"]
    ctx.log.info("canary outside a step: " + s)

    def call():
        ctx.log.warning("canary inside a step: " + s)
        headers = {"X-Token": s, "Authorization": "Bearer " + s}
        return http.post(base + "/hook", json={"token": s}, headers=headers, params={"key": s}).text

    echoed = step.run("post", call)
    plain = step.run("plain", lambda: s)
    length = step.run("args", lambda text: len(text), s)
    refused = step.run("refused", lambda: refused_call(s))
    step.send_event("tell", "canary/told", {"token": s, "nested": [{"deep": "x" + s + "y"}]})
    said = step.ai("ask", prompt="the key is " + s, system="never say " + s, model="m-" + secrets["PLAIN"])
    step.sleep("nap", "1s")
    child = step.invoke("child", function="child", data={"token": s})
    return {"secret": s, "echoed": echoed, "plain": plain, "length": length, "refused": refused,
            "said": said, "child": child}
"""
CHILD = """
def handler(ctx, step):
    ctx.log.info("child got " + json.dumps(ctx.event["data"]))
    return step.run("echo", lambda: ctx.event["data"])
"""
LISTENER = 'def handler(ctx, step):\n    return step.run("got", lambda: ctx.event["data"])\n'
FLAKY = """
def handler(ctx, step):
    s = secrets["CANARY"]

    def call():
        status = http.get(ctx.event["data"]["base"] + "/flaky").status_code
        if status >= 500:
            raise ValueError("upstream failed for " + s)
        return status

    return step.run("call", call)
"""
FAILS = """
def handler(ctx, step):
    step.run("ok", lambda: 1)
    raise NonRetriableError("gave up with " + secrets["CANARY"])


def on_failure(ctx, step):
    ctx.log.error("failure handler saw: " + ctx.error["message"] + " / " + secrets["CANARY"])
    step.run("report", lambda: {"error": ctx.error, "secret": secrets["CANARY"]})
"""
# Names and ids are keys: a secret in one is refused, with a message that names the secret only.
REFUSED = {
    "stepid": 'step.run("id-" + secrets["PLAIN"], lambda: 1)',
    "eventname": 'step.send_event("e", "n-" + secrets["PLAIN"], {})',
    "eventid": 'step.send_event("e", [{"name": "canary/other", "id": secrets["PLAIN"], "data": {}}])',
    "waitif": 'step.wait_for_event("w", event="canary/never", timeout="5s", '
    'if_="async.data.token == \'" + secrets["PLAIN"] + "\'")',
}
RETRY_FAST = {"retries": 2, "retry_backoff": {"initial": "50ms", "jitter": 0}}


def forms(secret: str) -> dict[str, str]:
    """The secret as it is and as escaped or encoded inside longer text. Base64: the characters
    that depend on the secret alone, for each of the three alignments it can have in the data."""
    found = {
        "raw": secret,
        "json": json.dumps(secret)[1:-1],
        "url": quote(secret, safe=""),
        "url-path": quote(secret),
        "url-form": quote_plus(secret),
        "html": html.escape(secret),
        "html-text": html.escape(secret, quote=False),
    }
    for shift, skip in ((0, 0), (1, 2), (2, 3)):
        encoded = base64.b64encode(bytes(shift) + secret.encode()).decode()
        core = encoded[skip : 4 * ((shift + len(secret)) // 3)]
        found[f"base64/{shift}"] = core
        found[f"base64url/{shift}"] = core.translate(str.maketrans("+/", "-_"))
    return found


NEEDLES = {
    f"{label} {kind}": form
    for label, secret in (("CANARY", CANARY), ("PLAIN", PLAIN), ("LLM key", LLM_KEY))
    for kind, form in forms(secret).items()
}


def leaks(haystacks: dict[str, bytes | str]) -> list[str]:
    found = []
    for where, text in haystacks.items():
        data = text.encode() if isinstance(text, str) else text
        found += [f"{needle} in {where}" for needle, form in NEEDLES.items() if form.encode() in data]
    return found


@dataclass
class World:
    """Everything the secret could have reached, collected once for the module's tests."""

    recorder: Recorder
    model: ModelServer
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)  # run id → its get_run answer
    mcp: dict[str, str] = field(default_factory=dict)
    pages: dict[str, bytes] = field(default_factory=dict)
    cli: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    log: str = ""


def server_env(home: Path, recorder: Recorder, model: ModelServer) -> dict[str, str]:
    return base_env(
        home,
        STEPKEEPER_SECRET_CANARY=CANARY,
        STEPKEEPER_SECRET_PLAIN=PLAIN,
        STEPKEEPER_HTTP_ALLOW=recorder.allow,
        STEPKEEPER_LLM_PROVIDER="anthropic",
        STEPKEEPER_LLM_BASE_URL=model.base,
        STEPKEEPER_LLM_MODEL="claude-test",
        STEPKEEPER_LLM_API_KEY=LLM_KEY,
        STEPKEEPER_WORKERS="2",
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("canary")
    recorder, model = Recorder(), ModelServer()
    recorder.scripts["/flaky"] = [500]
    model.script = [Reply(f"echo: the key is {CANARY}")]  # a model that repeats the secret
    server = start_server(home, server_env(home, recorder, model), inherit_env=False)
    world = World(recorder, model)
    try:
        anyio.run(_drive, server.base, world)
        _read_pages(server.base, world)
        _read_cli(home, world)
        _read_files(home, world, "while serving")
        _checkpoint(home)
        _read_files(home, world, "after a checkpoint")
    finally:
        server.stop()
        recorder.close()
        model.close()
    _read_files(home, world, "after the server stopped")
    world.log = server.log()
    yield world


async def _drive(base: str, world: World) -> None:
    http = httpx2.AsyncClient()
    async with Client(streamable_http_client(f"{base}/mcp", http_client=http), mode="legacy") as session:
        skills = {"uses": USES, "child": CHILD, "flaky": FLAKY, "fails": FAILS}
        skills |= {
            name: f"def handler(ctx, step):\n    {line}\n    return 1\n" for name, line in REFUSED.items()
        }
        for name, code in skills.items():
            config = RETRY_FAST if name == "flaky" else {}
            await _tool(session, "create_skill", {"name": name, "code": code, "config": config})
        listener = {"name": "listener", "code": LISTENER, "triggers": [{"event": "canary/told"}]}
        await _tool(session, "create_skill", listener)
        data = {"base": world.recorder.base}
        first = await _tool(session, "invoke_function", {"name": "uses", "data": data, "timeout_s": 60})
        for name in ("flaky", "fails", *REFUSED):
            await _tool(session, "invoke_function", {"name": name, "data": data, "wait": False})
        await _tool(session, "rerun", {"run_id": first["run_id"]})
        await _tool(session, "rerun", {"run_id": first["run_id"], "from_step": "nap"})
        await _tool(session, "schedule_loop", {"skill": "child", "cron": "0 9 * * *", "data": data})
        with anyio.fail_after(90):
            while True:  # every run, children and event-started ones included, has ended
                listed = await _tool(session, "list_runs", {"limit": 100})
                # uses 3 (two reruns), child 3, listener 2, flaky, fails and its on_failure, 4 refused
                if len(listed["runs"]) >= 15 and {run["status"] for run in listed["runs"]} <= FINAL:
                    break
                await anyio.sleep(0.2)
        await _read_mcp(session, world, listed["runs"])


async def _tool(session: Client, name: str, arguments: dict[str, Any]) -> Any:
    result = await session.call_tool(name, arguments)
    assert not result.is_error, (name, result.content)
    return result.structured_content


async def _read_mcp(session: Client, world: World, runs: list[dict[str, Any]]) -> None:
    """Every tool that reads, every resource and the prompts about skills and runs."""
    out = world.mcp
    for run in runs:
        run_id = run["run_id"]
        world.runs[run_id] = await _tool(session, "get_run", {"run_id": run_id})
        for tool in ("get_run", "get_run_trace"):
            out[f"{tool} {run_id}"] = (await session.call_tool(tool, {"run_id": run_id})).model_dump_json()
        out[f"run://{run_id}"] = (await session.read_resource(f"run://{run_id}")).model_dump_json()
        prompt = await session.get_prompt("triage_run", {"run_id": run_id})
        out[f"triage_run {run_id}"] = prompt.model_dump_json()
    for tool, arguments in (
        ("list_runs", {"limit": 100}),
        ("list_runs", {"status": "failed"}),
        ("get_stats", {}),
        ("list_skills", {}),
        ("list_loops", {}),
    ):
        out[f"{tool} {arguments}"] = (await session.call_tool(tool, arguments)).model_dump_json()
    for uri in ("runs://recent", "loops://all"):
        out[uri] = (await session.read_resource(uri)).model_dump_json()
    for name in ("uses", "child", "listener", "flaky", "fails", *REFUSED):
        out[f"get_skill {name}"] = (await session.call_tool("get_skill", {"name": name})).model_dump_json()
        out[f"review_skill {name}"] = (
            await session.get_prompt("review_skill", {"name": name})
        ).model_dump_json()
    missing = await session.call_tool("get_run", {"run_id": "run_nosuch"})  # an error text
    assert missing.is_error
    out["an error"] = missing.model_dump_json()


def _read_pages(base: str, world: World) -> None:
    paths = ["/runs", "/runs?status=failed", "/skills", "/loops", "/events"]
    paths += ["/api/runs?limit=100", "/api/stats", "/api/skills"]
    for run_id in world.runs:
        paths += [f"/runs/{run_id}", f"/runs/{run_id}/body", f"/runs/{run_id}/otel.json"]
        paths += [f"/api/runs/{run_id}", f"/api/runs/{run_id}/trace"]
    paths += [f"/skills/{name}" for name in ("uses", "child", "listener", "flaky", "fails", *REFUSED)]
    with httpx.Client(base_url=base, timeout=30) as http:
        for path in paths:
            page = http.get(path)
            assert page.status_code == 200, (path, page.status_code)
            world.pages[path] = page.content
        fragment = http.get("/runs", headers={"x-fragment": "1"})
        world.pages["/runs (fragment)"] = fragment.content


def _read_cli(home: Path, world: World) -> None:
    env = base_env(home)
    commands = [["runs"], ["runs", "--json", "--limit", "100"], ["skills", "--json"], ["loops", "--json"]]
    shown: set[str] = set()  # one run of each skill: every CLI start costs a second or two
    for run_id, run in world.runs.items():
        if run["function"] in {"uses", "fails", "flaky", "child", "listener"} - shown:
            shown.add(run["function"])
            commands += [["runs", "show", run_id], ["trace", run_id], ["trace", run_id, "--otel"]]
    for command in commands:
        done = subprocess.run(
            [sys.executable, "-m", "mcp_server", *command],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert done.returncode == 0, (command, done.stderr)
        world.cli[" ".join(command)] = done.stdout + done.stderr


def _read_files(home: Path, world: World, moment: str) -> None:
    for path in home.glob("stepkeeper.db*"):
        world.files[f"{path.name} {moment}"] = path.read_bytes()


def _checkpoint(home: Path) -> None:
    with sqlite3.connect(home / "stepkeeper.db", timeout=30) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _run_of(world: World, function: str, on_failure: bool = False) -> dict[str, Any]:
    """The oldest run of `function` (its handler's, or its `on_failure` run's)."""
    found = [
        run
        for run in world.runs.values()
        if run["function"] == function and (run["trigger"] == "on_failure") == on_failure
    ]
    assert found, function
    return found[-1]


def test_the_skills_really_used_the_secret(world: World) -> None:
    hooks = [(path, headers, body) for path, headers, body in world.recorder.raw if path.startswith("/hook")]
    assert len(hooks) >= 2  # the first run and the full rerun
    path, headers, body = hooks[0]
    assert parse_qs(urlsplit(path).query)["key"] == [CANARY]
    assert headers["X-Token"] == CANARY and headers["Authorization"] == f"Bearer {CANARY}"
    assert json.loads(body) == {"token": CANARY}
    assert world.recorder.count("/flaky") == 2  # failed once, then retried
    asked = world.model.calls("/v1/messages")[0]
    assert asked.headers["x-api-key"] == LLM_KEY and asked.body["model"] == f"m-{PLAIN}"
    assert asked.body["messages"][0]["content"] == f"the key is {CANARY}"
    assert CANARY in str(asked.body["system"])


def test_what_was_stored_holds_the_marker_in_the_secrets_place(world: World) -> None:
    uses = _run_of(world, "uses")
    assert uses["status"] == "completed", uses
    output = uses["output"]
    assert output["secret"] == "[secret:CANARY]" and output["plain"] == "[secret:CANARY]"
    assert output["length"] == len(CANARY)
    assert "[secret:CANARY]" in output["echoed"] and "[secret:CANARY]" in output["said"]
    assert "not-allowed.example" in output["refused"]
    # Event and invoke data are redacted when stored: their receivers see the marker.
    assert output["child"] == {"token": "[secret:CANARY]"}
    listener = _run_of(world, "listener")
    assert listener["output"]["token"] == "[secret:CANARY]"
    assert listener["output"]["nested"] == [{"deep": "x[secret:CANARY]y"}]
    assert _run_of(world, "flaky")["output"] == 200
    fails = _run_of(world, "fails")
    assert fails["status"] == "failed" and fails["error"]["message"] == "gave up with [secret:CANARY]"
    assert _run_of(world, "fails", on_failure=True)["status"] == "completed"
    assert len([r for r in world.runs.values() if r["function"] == "uses"]) == 3  # and two reruns


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_secret_in_a_name_or_id_is_refused_naming_only_the_secret(world: World, name: str) -> None:
    run = _run_of(world, name)
    assert run["status"] == "failed"
    assert "contains the value of secret 'PLAIN'" in run["error"]["message"], run["error"]


def test_no_secret_in_the_database_files_or_their_wal(world: World) -> None:
    assert any("wal" in name for name in world.files) and any(
        name.startswith("stepkeeper.db ") for name in world.files
    )
    assert leaks(world.files) == []


def test_no_secret_in_the_servers_log(world: World) -> None:
    assert "StreamableHTTP session manager started" in world.log  # the log is the server's
    assert leaks({"serve.log": world.log}) == []


def test_no_secret_in_dashboard_pages_or_json_api_answers(world: World) -> None:
    assert b"[secret:CANARY]" in world.pages["/runs/" + _run_of(world, "uses")["run_id"]]
    assert leaks(world.pages) == []


def test_no_secret_in_mcp_tool_results_resources_prompts_or_errors(world: World) -> None:
    assert len(world.mcp) > 50
    assert leaks(world.mcp) == []


def test_no_secret_in_the_cli_views(world: World) -> None:
    assert any("[secret:CANARY]" in text for text in world.cli.values())
    assert leaks(world.cli) == []


async def test_over_stdio_the_secret_stays_out_of_stderr_and_the_store(tmp_path: Path) -> None:
    recorder, model = Recorder(), ModelServer()
    env = server_env(tmp_path, recorder, model)
    command = [sys.executable, "-m", "mcp_server", "serve"]
    params = StdioServerParameters(command=command[0], args=command[1:], env=env)
    code = (
        "def handler(ctx, step):\n"
        "    ctx.log.error('stdio ' + secrets['CANARY'])\n"
        "    body = {'t': secrets['CANARY']}\n"
        "    step.run('say', lambda: http.post(ctx.event['data']['base'], json=body).text)\n"
        "    raise NonRetriableError('stdio failed: ' + secrets['CANARY'])\n"
    )
    try:
        with (tmp_path / "stderr.log").open("w") as errlog:
            async with Client(stdio_client(params, errlog=errlog), mode="legacy") as session:
                await _tool(session, "create_skill", {"name": "stdio", "code": code})
                run = await _tool(
                    session, "invoke_function", {"name": "stdio", "data": {"base": recorder.base}}
                )
                trace = (
                    await session.call_tool("get_run_trace", {"run_id": run["run_id"]})
                ).model_dump_json()
    finally:
        recorder.close()
        model.close()
    assert run["status"] == "failed" and run["error"]["message"] == "stdio failed: [secret:CANARY]"
    assert recorder.calls[0][2] == {"t": CANARY}
    stderr = (tmp_path / "stderr.log").read_text()
    haystacks = {"stderr": stderr, "run": json.dumps(run), "trace": trace}
    haystacks |= {path.name: path.read_bytes() for path in tmp_path.glob("stepkeeper.db*")}
    assert any(name.startswith("stepkeeper.db") for name in haystacks)
    assert leaks(haystacks) == []
