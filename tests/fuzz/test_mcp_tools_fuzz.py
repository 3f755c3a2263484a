"""Every MCP tool, resource and prompt of one real `stepkeeper serve` (stdio), called by the SDK's
client with arbitrary JSON, with arguments shaped like each tool's input schema but wrong, and
with plausible calls.

Properties: the server process lives through every call and answers the next one; a refused
call comes back as a tool error (`isError`; the SDK's own argument validation answers the same
way) or, for resources and prompts, as a JSON-RPC error, whose text says what was wrong with
the input; and a refused call leaves every table of the store as it was. Hypothesis tests are
synchronous, so one thread runs the event loop that owns the session (an anyio blocking portal).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import currently_in_test_context, event, given
from hypothesis import strategies as st
from mcp import Client
from mcp.client.stdio import StdioServerParameters, get_default_environment, stdio_client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, Tool

from engine.records import RUN_STATUSES
from tests.fuzz.common import (
    EDGE_VALUES,
    JSON_VALUES,
    NASTY_STRINGS,
    ODD_TEXT,
    TIMEOUT,
    Snapshot,
    changed_tables,
    fuzz_settings,
    settled,
    snapshot,
    unspecific,
    words_about,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(TIMEOUT)]

CALL_SECONDS = 60.0
MAX_ERROR_CHARS = 2000  # our refusals quote the input, but never a huge input whole
# The SDK's own argument validation lists one problem per bad item (pydantic's format), so its
# message grows with the input; that is the SDK's to bound, not ours.
SDK_VALIDATION = re.compile(r"^Error executing tool [\w-]+: \d+ validation errors? for \w+Arguments\n")
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
POOL = ("fz-a", "fz-b", "fz-c")  # skills the plausible calls create, change and delete
EXPOSED = "fz-exposed"  # a skill exposed as its own tool (until a fuzzed call deletes it)
SKILL_NAMES = (*POOL, EXPOSED)
EVENT = "fz.ping"
YEARLY = "0 0 1 1 *"  # loops made here must not tick while the store is compared
OK_BODY = "def handler(ctx, step):\n    return step.run('first', lambda: ctx.event['data'])\n"
BODIES = (
    OK_BODY,
    "def handler(ctx, step):\n    raise NonRetriableError('refused on purpose')\n",
    "def handler(ctx, step:\n    pass\n",
    "import os\ndef handler(ctx, step):\n    return 1\n",
    "def handler(ctx, step):\n    return step.run('t', lambda: step.now('n'))\n",
)
EXPOSED_SCHEMA = {
    "type": "object",
    "properties": {"n": {"type": "integer", "minimum": 0}, "label": {"type": "string", "maxLength": 20}},
    "required": ["n"],
}


class Served:
    """The server under test and what the fuzzing has learnt about it (run and loop ids)."""

    def __init__(
        self, portal: BlockingPortal, session: Client, database: Path, pid: int, tools: dict[str, Tool]
    ) -> None:
        self.portal = portal
        self.session = session
        self.database = database
        self.pid = pid
        self.tools = tools
        self.state: Snapshot = settled(database)
        self.runs: list[str] = []
        self.loops: list[str] = []

    def __repr__(self) -> str:  # hypothesis prints it with every failing example
        return f"Served(pid={self.pid}, database={self.database})"

    def call_tool(self, name: str, arguments: dict[str, Any]) -> CallToolResult:
        return self.portal.call(partial(self.session.call_tool, name, arguments))

    def remember(self, found: Any) -> None:
        """Keep the run and loop ids a result names, for later calls to aim at."""
        if isinstance(found, dict):
            for key, value in found.items():
                if key in ("run_id", "run_ids"):
                    given = value if isinstance(value, list) else [value]
                    self.runs = [*self.runs, *(item for item in given if isinstance(item, str))][-30:]
                elif key == "loop_id" and isinstance(value, str):
                    self.loops = [*self.loops, value][-30:]
                else:
                    self.remember(value)
        elif isinstance(found, list):
            for item in found:
                self.remember(item)


def _server_pid(home: Path) -> int:
    """The `serve` process the client started: our child, with the home in its command line."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent == os.getpid() and str(home).encode() in cmdline and b"serve" in cmdline:
            return int(entry.name)
    raise AssertionError(f"no serve process for {home}")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("fuzz-mcp")
    env = {**get_default_environment(), "STEPKEEPER_HOME": str(home)}
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "mcp_server", "--home", str(home), "serve"], env=env
    )
    with ExitStack() as stack:
        log = stack.enter_context((home / "serve.log").open("w"))
        portal = stack.enter_context(start_blocking_portal())
        client = Client(
            stdio_client(params, errlog=log), mode="legacy", cache=None, read_timeout_seconds=CALL_SECONDS
        )
        session = stack.enter_context(portal.wrap_async_context_manager(client))
        created = portal.call(
            partial(
                session.call_tool,
                "create_skill",
                {
                    "name": EXPOSED,
                    "code": OK_BODY,
                    "config": {"expose_as_tool": True, "input_schema": EXPOSED_SCHEMA},
                },
            )
        )
        assert not created.is_error, created.content
        tools = {tool.name: tool for tool in portal.call(session.list_tools).tools}
        assert "skill_" + EXPOSED in tools and "create_skill" in tools
        database = home / "stepkeeper.db"
        yield Served(portal, session, database, _server_pid(home), tools)


# -- the properties ------------------------------------------------------------------------


def _text(result: CallToolResult) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


def _short(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) < 300 else shown[:300] + f"... ({len(shown)} chars)"


def _still_serving(served: Served, after: str) -> None:
    assert _alive(served.pid), f"the server process died after {after}"
    answer = served.call_tool("list_skills", {})
    assert not answer.is_error, f"list_skills failed after {after}: {_text(answer)}"


def check_tool_call(served: Served, tool: str, arguments: dict[str, Any]) -> CallToolResult:
    """Call `tool`; hold the properties; on success take the store as the new reference."""
    before = served.state
    result = served.call_tool(tool, arguments)
    call = f"{tool}({_short(arguments)})"
    _still_serving(served, call)
    if currently_in_test_context():
        event(f"{tool}: {'refused' if result.is_error else 'done'}")
    if result.is_error:
        text = _text(result)
        schema = served.tools[tool].input_schema if tool in served.tools else {}
        names = [tool, *(schema.get("properties") or {}), *SKILL_NAMES]  # e.g. a rerun's skill is gone
        reason = unspecific(text, words_about(arguments, names))
        assert reason is None, f"{call} -> {text[:500]!r}: {reason}"
        bounded = len(text) <= MAX_ERROR_CHARS or SDK_VALIDATION.match(text)
        assert bounded, f"{call} -> an error of {len(text)} characters: {text[:200]!r}"
        changed = changed_tables(before, snapshot(served.database))
        assert not changed, f"{call} was refused ({text[:300]!r}) but changed {changed}"
        return result
    assert result.structured_content is not None, f"{call} succeeded without structured content"
    served.remember(result.structured_content)
    after = settled(served.database)
    annotations = served.tools[tool].annotations if tool in served.tools else None
    if annotations is not None and annotations.read_only_hint:
        assert not changed_tables(before, after), f"read-only {call} changed {changed_tables(before, after)}"
    served.state = after
    return result


def check_read(served: Served, what: str, about: Any, read: Callable[[], Any]) -> None:
    """A resource read or prompt: an answer or a specific JSON-RPC error (about `about`), never
    a change to the store."""
    before = served.state
    try:
        read()
    except MCPError as error:
        assert error.code != INTERNAL_ERROR, f"{what} -> internal error for bad input: {error.message!r}"
        reason = unspecific(error.message, words_about(about, ["uri", "resource", "prompt"]))
        assert reason is None, f"{what} -> {error.message[:500]!r}: {reason}"
        assert len(error.message) <= MAX_ERROR_CHARS, f"{what} -> {len(error.message)} characters"
    _still_serving(served, what)
    changed = changed_tables(before, snapshot(served.database))
    assert not changed, f"{what} changed {changed}"


# -- what to call --------------------------------------------------------------------------


def _names(served: Served) -> st.SearchStrategy[str]:
    return st.sampled_from([*POOL, EXPOSED, "ghost", *NASTY_STRINGS]) | ODD_TEXT


def _ids(known: list[str], prefix: str) -> st.SearchStrategy[str]:
    """An id the server gave (drawn by position, so that the draws stay alike while ids are
    learnt between examples), a well-formed one it never gave, or odd text."""
    fake = [f"{prefix}_00000000000000000000000000", f"{prefix}_", prefix, *NASTY_STRINGS]
    given = st.integers(0, 63).map(lambda index: known[index % len(known)] if known else fake[0])
    return given | st.sampled_from(fake) | ODD_TEXT


def _right_typed(schema: dict[str, Any], served: Served) -> st.SearchStrategy[Any]:
    """A value of the property's declared type, plausible or at an edge."""
    kinds = [option.get("type") for option in schema.get("anyOf", [schema])]
    options: list[st.SearchStrategy[Any]] = []
    for kind in kinds:
        if kind == "string":
            options.append(_names(served) | _ids(served.runs, "run") | _ids(served.loops, "loop"))
        elif kind == "integer":
            options.append(st.integers(-3, 600) | st.integers())
        elif kind == "number":
            options.append(st.floats(-1, 700, allow_nan=False) | st.integers(-(2**70), 2**70))
        elif kind == "boolean":
            options.append(st.booleans())
        elif kind == "object":
            options.append(st.dictionaries(ODD_TEXT, JSON_VALUES, max_size=4))
        elif kind == "array":
            options.append(st.lists(st.dictionaries(ODD_TEXT, JSON_VALUES, max_size=3), max_size=3))
        elif kind == "null":
            options.append(st.none())
    return st.one_of(options) if options else JSON_VALUES


@st.composite
def _schema_shaped(draw: st.DrawFn, tool: Tool, served: Served) -> dict[str, Any]:
    """The tool's own fields, each left out, right-typed, or replaced by an edge value."""
    schema = tool.input_schema
    required = set(schema.get("required") or [])
    arguments: dict[str, Any] = {}
    for name, prop in (schema.get("properties") or {}).items():
        choice = draw(st.sampled_from(["omit", "typed", "edge", "edge"]))
        if choice == "omit" and (name not in required or draw(st.integers(0, 9)) == 0):
            continue
        arguments[name] = draw(_right_typed(prop, served) if choice == "typed" else EDGE_VALUES)
    return arguments


def _plausible(served: Served) -> dict[str, Callable[[st.DrawFn], dict[str, Any]]]:
    """Per tool, calls a careful agent might make (many succeed; some are still refused)."""
    pool = st.sampled_from(POOL)
    maybe = st.none()  # `maybe | x`: the optional field is left out half the time
    numbered = st.fixed_dictionaries({"n": st.integers(-5, 5)})
    data = numbered | st.dictionaries(ODD_TEXT, JSON_VALUES, max_size=3)
    config = st.sampled_from(
        [
            {},
            {"retries": 0},
            {"retries": 2, "priority": {"run": "event.data.n"}},
            {"concurrency": [{"limit": 2, "key": "event.data.n"}]},
            {
                "expose_as_tool": True,
                "input_schema": {"type": "object", "properties": {"n": {"type": "number"}}},
            },
            {"retries": 21},
            {"unknown": 1},
        ]
    )
    triggers = st.sampled_from(
        [
            [],
            [{"event": EVENT}],
            [{"event": EVENT, "if": "event.data.n > 1"}],
            [{"cron": YEARLY}],
            [{"event": ""}],
        ]
    )
    bodies = st.sampled_from(BODIES)
    run_ids = _ids(served.runs, "run")
    loop_ids = _ids(served.loops, "loop")
    since = st.sampled_from(["7d", "1h", "2020-01-01T00:00:00Z", "2999-01-01T00:00:00Z", "yesterday"])
    zones = st.sampled_from(["UTC", "Europe/Paris", "Asia/Kathmandu", "America/St_Johns", "Mars/Olympus"])

    def pick(draw: st.DrawFn, **fields: st.SearchStrategy[Any]) -> dict[str, Any]:
        drawn = {name: draw(strategy) for name, strategy in fields.items()}
        return {name: value for name, value in drawn.items() if value is not None}

    return {
        "create_skill": lambda d: pick(
            d, name=pool, code=bodies, description=maybe | ODD_TEXT, triggers=triggers, config=config
        ),
        "update_skill": lambda d: pick(
            d, name=pool, code=maybe | bodies, triggers=maybe | triggers, config=maybe | config
        ),
        "delete_skill": lambda d: pick(d, name=pool),
        "list_skills": lambda d: {},
        "get_skill": lambda d: pick(d, name=pool | st.just(EXPOSED), version=maybe | st.integers(0, 4)),
        "invoke_function": lambda d: pick(
            d, name=pool | st.just(EXPOSED), data=data, wait=st.booleans(), timeout_s=st.floats(0.05, 10)
        ),
        "send_event": lambda d: pick(
            d, name=st.sampled_from([EVENT, "fz.other"]), data=data, id=maybe | st.sampled_from(["e1", "e2"])
        ),
        "list_runs": lambda d: pick(
            d,
            function=maybe | pool,
            status=maybe | st.sampled_from([*sorted(RUN_STATUSES), "sideways"]),
            since=maybe | since,
            until=maybe | since,
            limit=st.integers(0, 501),
            cursor=maybe | st.just("bogus"),
        ),
        "get_run": lambda d: pick(d, run_id=run_ids),
        "get_run_trace": lambda d: pick(d, run_id=run_ids),
        "cancel_run": lambda d: pick(d, run_id=run_ids, reason=maybe | ODD_TEXT),
        "rerun": lambda d: pick(
            d, run_id=run_ids, from_step=maybe | st.sampled_from(["first", "nope"]), data=maybe | data
        ),
        "get_stats": lambda d: pick(d, function=maybe | pool, since=maybe | since),
        "schedule_loop": lambda d: pick(
            d,
            skill=pool | st.just(EXPOSED),
            cron=st.sampled_from([YEARLY, "0 0 29 2 *", "0 0 31 2 *", "61 * * * *", "0 0 1 1 * 2030"]),
            timezone=maybe | zones,
            data=maybe | data,
            name=maybe | ODD_TEXT,
            catch_up=maybe | st.sampled_from(["none", "latest", "all", "some"]),
        ),
        "list_loops": lambda d: {},
        "update_loop": lambda d: pick(
            d,
            loop_id=loop_ids,
            cron=maybe | st.sampled_from([YEARLY, "0 0 31 2 *", "bad"]),
            timezone=maybe | zones,
            paused=maybe | st.booleans(),
            data=maybe | data,
        ),
        "delete_loop": lambda d: pick(d, loop_id=loop_ids),
        "skill_" + EXPOSED: lambda d: pick(d, n=st.integers(-2, 5) | JSON_VALUES, label=maybe | ODD_TEXT),
    }


# -- the tests -----------------------------------------------------------------------------


def test_what_the_fuzzing_found_stays_fixed(served: Served) -> None:
    """One example of each bug the fuzzing found, run every time (the fuzzing may not draw them)."""
    served.call_tool("create_skill", {"name": EXPOSED, "code": OK_BODY, "config": {"expose_as_tool": True}})
    tool_errors = [
        ("get_skill", {"name": EXPOSED, "version": 10**30}, "version must be a whole number"),
        ("get_skill", {"name": EXPOSED, "version": 2**63}, "version must be a whole number"),
        ("schedule_loop", {"skill": EXPOSED, "cron": "0 0 31 2 *"}, "never fires"),
        (
            "create_skill",
            {"name": "fz-feb", "code": OK_BODY, "triggers": [{"cron": "0 0 30 2 *"}]},
            "never fires",
        ),
        ("delete_loop", {"loop_id": "x" * 5000}, "characters left out"),
        ("skill_" + EXPOSED, {"n": list(range(500))}, "invalid arguments for skill_fz-exposed: n:"),
    ]
    for tool, arguments, words in tool_errors:
        result = check_tool_call(served, tool, arguments)
        assert result.is_error and words in _text(result), (tool, _text(result)[:300])
    refusals: list[tuple[Callable[[], Any], int, str]] = [
        (
            partial(served.session.read_resource, "run://run_nope"),
            INVALID_PARAMS,
            "run_not_found: run 'run_nope'",
        ),
        (partial(served.session.read_resource, "skill://Bad Name"), INVALID_PARAMS, "invalid skill name"),
        (
            partial(served.session.get_prompt, "review_skill", {"name": "ghost"}),
            INVALID_PARAMS,
            "skill 'ghost'",
        ),
        (
            partial(served.session.get_prompt, "triage_run", {"run_id": "run_x"}),
            INVALID_PARAMS,
            "run 'run_x'",
        ),
        (partial(served.session.get_prompt, "write_skill", {"zz": "1"}), INVALID_PARAMS, "no argument 'zz'"),
    ]
    for call, code, words in refusals:
        with pytest.raises(MCPError) as refused:
            served.portal.call(call)
        assert refused.value.code == code and words in refused.value.message, refused.value
    written = served.portal.call(partial(served.session.get_prompt, "write_skill", {"goal": "count words"}))
    assert "The skill to write: count words" in written.messages[0].content.text


@fuzz_settings(bounded=60, long=3000)
@given(data=st.data())
def test_arbitrary_json_arguments(served: Served, data: st.DataObject) -> None:
    tool = data.draw(st.sampled_from([*sorted(served.tools), "no_such_tool", "skill_ghost"]), label="tool")
    fields = sorted({name for t in served.tools.values() for name in t.input_schema.get("properties") or {}})
    keys = st.sampled_from(fields) | ODD_TEXT
    arguments = data.draw(st.dictionaries(keys, JSON_VALUES, max_size=6), label="arguments")
    check_tool_call(served, tool, arguments)


@fuzz_settings(bounded=80, long=4000)
@given(data=st.data())
def test_schema_shaped_arguments(served: Served, data: st.DataObject) -> None:
    tool = data.draw(st.sampled_from(sorted(served.tools)), label="tool")
    arguments = data.draw(_schema_shaped(served.tools[tool], served), label="arguments")
    check_tool_call(served, tool, arguments)


@fuzz_settings(bounded=80, long=4000)
@given(data=st.data())
def test_plausible_calls(served: Served, data: st.DataObject) -> None:
    plausible = _plausible(served)
    tool = data.draw(st.sampled_from(sorted(plausible)), label="tool")
    arguments = plausible[tool](data.draw)
    check_tool_call(served, tool, arguments)


@fuzz_settings(bounded=40, long=2000)
@given(data=st.data())
def test_resource_reads(served: Served, data: st.DataObject) -> None:
    target = _ids(served.runs, "run") | _names(served)
    uri = data.draw(
        st.one_of(
            st.builds(lambda s, t: s + t, st.sampled_from(["run://", "skill://"]), target),
            st.sampled_from(["runs://recent", "loops://all", "run://", "skill://", "file:///etc/passwd"]),
            ODD_TEXT,
        ),
        label="uri",
    )
    named = uri.partition("://")[2]
    about = [uri, named, unquote(named)]  # the SDK percent-decodes what a template matches
    check_read(served, uri, about, lambda: served.portal.call(served.session.read_resource, uri))


@fuzz_settings(bounded=40, long=2000)
@given(data=st.data())
def test_prompt_gets(served: Served, data: st.DataObject) -> None:
    prompts = ["write_skill", "review_skill", "triage_run", "no_such_prompt"]
    name = data.draw(st.sampled_from(prompts), label="name")
    keys = st.sampled_from(["goal", "name", "run_id"]) | ODD_TEXT
    values = _names(served) | _ids(served.runs, "run")
    arguments = data.draw(st.dictionaries(keys, values, max_size=3), label="arguments")
    check_read(
        served,
        f"{name}({arguments})",
        [name, arguments, "name", "run_id", "goal"],
        lambda: served.portal.call(partial(served.session.get_prompt, name, arguments)),
    )
