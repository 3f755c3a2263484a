"""The skill language's compile-time policy and the in-process runner's guards."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox import CompileError, InProcessRunner
from sandbox.policy import compile_skill


class RecordingHost:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def call(self, message: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(message)
        return {"action": "continue"}

    def notify(self, message: dict[str, Any]) -> None:
        pass


def run(source: str) -> dict[str, Any]:
    runner = InProcessRunner()
    activation = {"run_id": "r", "function": "f", "version": 1, "event": {"name": "e", "data": {}}}
    return runner.run(runner.prepare(source), activation, RecordingHost())


@pytest.mark.parametrize(
    "body",
    [
        "return ().__class__",
        "return getattr(ctx, '__class__')",
        "return '{0.__class__}'.format(1)",
        "return step.run.__self__",
        "return type(1)",
        "return ctx.log.host",
        "return step.host",
        "return [x for x in (1,)].__len__()",
    ],
)
def test_host_objects_stay_out_of_reach(body: str) -> None:
    source = f"def handler(ctx, step):\n    {body}\n"
    try:
        outcome = run(source)
    except CompileError:
        return
    assert outcome["status"] == "failed", outcome


def test_warnings_name_http_and_clock_use_outside_steps() -> None:
    compiled = compile_skill(
        "def handler(ctx, step):\n    http.get('https://x')\n    t = datetime.now()\n"
        "    step.run('ok', lambda: http.get('https://x'))\n"
    )
    assert len(compiled.warnings) == 2
    assert "line 2: http call outside step.run" in compiled.warnings[0]
    assert "line 3" in compiled.warnings[1] and "step.now" in compiled.warnings[1]


def test_allowed_language_runs() -> None:
    source = """
def helper(values):
    try:
        return {"total": sum(values), "text": f"{len(values)} items", "sq": [v * v for v in values]}
    except ValueError as err:
        return str(err)

def handler(ctx, step):
    data = {"a": 1}
    data["b"] = 2
    x = 1
    x += 2
    first, second = (1, 2)
    return [helper([1, 2, 3]), data, x, first + second, math.sqrt(16), re.findall("[0-9]+", "a1b22")]
"""
    outcome = run(source)
    assert outcome == {
        "status": "completed",
        "output": [
            {"total": 6, "text": "3 items", "sq": [1, 4, 9]},
            {"a": 1, "b": 2},
            3,
            3,
            4.0,
            ["1", "22"],
        ],
    }


def test_bounded_builtins_refuse_huge_work() -> None:
    for body in ["return len(range(10**9))", "return pow(10, 10**8)"]:
        outcome = run(f"def handler(ctx, step):\n    {body}\n")
        assert outcome["status"] == "failed"
        assert "limit" in outcome["error"]["message"] or "too large" in outcome["error"]["message"]


def test_http_outside_a_step_is_refused_at_run_time() -> None:
    outcome = run("def handler(ctx, step):\n    return http.get('https://example.com')\n")
    assert outcome["status"] == "failed"
    assert "inside step.run" in outcome["error"]["message"]
