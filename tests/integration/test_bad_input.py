"""Bad input gets a specific error and leaves the store unchanged."""

from __future__ import annotations

import ast
from typing import Any

import pytest

from engine import (
    CompileFailed,
    Engine,
    InvalidInput,
    PayloadTooLarge,
    RunNotFound,
    SkillExists,
    SkillNotFound,
)
from engine.limits import MAX_CODE_BYTES, MAX_EVENT_DATA_BYTES

GOOD = "def handler(ctx, step):\n    return 1\n"


async def refused(engine: Engine, error: type[Exception], call: Any, match: str) -> None:
    before = await engine.counts()
    with pytest.raises(error, match=match):
        await call
    assert await engine.counts() == before


async def test_syntax_error_reports_line_and_column(engine: Engine) -> None:
    code = "def handler(ctx, step):\n    x = (1 +\n    return x\n"
    before = await engine.counts()
    with pytest.raises(CompileFailed) as info:
        await engine.create_skill("broken", code)
    assert (info.value.line, info.value.column) == (2, 9)
    assert "line 2, column 9" in str(info.value)
    assert await engine.counts() == before


@pytest.mark.parametrize(
    ("code", "line", "words"),
    [
        ("import os\ndef handler(ctx, step):\n    pass\n", 1, "imports are not allowed"),
        ("def handler(ctx, step):\n    return ctx.__class__\n", 2, "'_' are not allowed"),
        ("def handler(ctx):\n    pass\n", 1, "two arguments"),
        ("def main(ctx, step):\n    pass\n", 1, "must define 'def handler"),
        ("class A:\n    pass\ndef handler(ctx, step):\n    pass\n", 1, "classes are not allowed"),
    ],
)
async def test_policy_violations_are_refused_with_their_line(
    engine: Engine, code: str, line: int, words: str
) -> None:
    with pytest.raises(CompileFailed, match=words) as info:
        await engine.create_skill("bad", code)
    assert info.value.line == line


async def test_pathological_nesting_is_refused_without_crashing(engine: Engine) -> None:
    code = "def handler(ctx, step):\n    return " + "(" * 5000 + "1" + ")" * 5000 + "\n"
    await refused(engine, CompileFailed, engine.create_skill("deep", code), "nests brackets")
    long_sum = "def handler(ctx, step):\n    return " + "+".join(["1"] * 60000) + "\n"
    await refused(engine, CompileFailed, engine.create_skill("wide", long_sum), "more than 1000 operators")
    unary = "def handler(ctx, step):\n    return " + "-" * 5000 + "1\n"
    await refused(engine, CompileFailed, engine.create_skill("unary", unary), "more than 1000 operators")
    # The host's own parser is still healthy (a RecursionError inside it would corrupt it).
    assert ast.dump(ast.parse("x = [(1 + 2) * 3 for _ in range(2)]"))
    assert (await engine.create_skill("fine", GOOD)).version.version == 1


async def test_oversized_code_and_payloads_are_refused(engine: Engine) -> None:
    big = GOOD + "#" * MAX_CODE_BYTES
    await refused(engine, InvalidInput, engine.create_skill("big", big), "over the limit")
    await engine.create_skill("ok", GOOD, triggers=[{"event": "e"}])
    blob = {"x": "a" * MAX_EVENT_DATA_BYTES}
    await refused(engine, PayloadTooLarge, engine.send_event("e", blob), "over the limit")
    await refused(engine, PayloadTooLarge, engine.invoke("ok", blob), "over the limit")


async def test_unknown_names_get_specific_errors(engine: Engine) -> None:
    await refused(engine, SkillNotFound, engine.invoke("ghost"), "'ghost' does not exist")
    await refused(engine, SkillNotFound, engine.update_skill("ghost", code=GOOD), "does not exist")
    await refused(engine, RunNotFound, engine.get_run("run_nope"), "run_nope")
    await refused(engine, RunNotFound, engine.cancel_run("run_nope"), "run_nope")
    await engine.create_skill("once", GOOD)
    await refused(engine, SkillExists, engine.create_skill("once", GOOD), "already exists")


@pytest.mark.parametrize(
    ("items", "match"),
    [
        ([{"data": {}}], "'name'"),
        ([{"name": "has space"}], "invalid event name"),
        ([{"name": "ok", "data": [1, 2]}], "must be a JSON object"),
        ([{"name": "ok", "data": {"x": float("nan")}}], "plain JSON"),
        ([{"name": "ok", "id": 7}], "event id"),
        ([{"name": "ok", "ts": "yesterday"}], "invalid time"),
        ([{"name": "ok", "colour": "red"}], "optional 'data'"),
        ([], "1 to 100"),
    ],
)
async def test_malformed_events_are_refused(engine: Engine, items: list[Any], match: str) -> None:
    await refused(engine, InvalidInput, engine.send_events(items), match)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "Bad Name"}, "invalid skill name"),
        ({"triggers": [{"event": "x", "if": "event.data. =="}]}, "invalid expression"),
        ({"triggers": [{"cron": "* * *"}]}, "has 3 fields"),
        ({"triggers": [{"cron": "* * * * *", "timezone": "Nowhere/Land"}]}, "unknown timezone"),
        ({"triggers": [{"cron": "* * * * *", "every": 2}]}, "takes 'cron'"),
        ({"triggers": "x"}, "must be a list"),
        ({"config": {"retries": 99}}, "retries"),
        ({"config": {"colour": 1}}, "unknown config key"),
    ],
)
async def test_bad_registrations_are_refused(engine: Engine, kwargs: dict[str, Any], match: str) -> None:
    arguments = {"name": "skill", "code": GOOD, **kwargs}
    await refused(engine, InvalidInput, engine.create_skill(**arguments), match)
