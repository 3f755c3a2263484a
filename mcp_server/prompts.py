"""MCP prompts: how to write a skill, how to review one, how to triage a run."""

from __future__ import annotations

import inspect
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from mcp.server import MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS

from engine import Engine, InvalidInput, RunNotFound, SkillNotFound, StepkeeperError

T = TypeVar("T")

REVIEW_WINDOW = 100

SKILL_API = """You are writing a stepkeeper skill: one Python source text with `def handler(ctx, step)`
(and optionally `def on_failure(ctx, step)`), registered with the `create_skill` tool.

Rules that make a skill correct on the first try:
- The handler is replayed from the top after every sleep, wait, retry or crash; only work inside
  steps is remembered. Put every side effect (http calls, anything that reads the clock or
  randomness) inside `step.run(id, fn)`, `step.now(id)` or `step.uuid(id)`.
- Step results must be plain JSON (dict, list, str, number, bool, None).
- The language is plain functions, lambdas, comprehensions, try/except and f-strings: no imports,
  classes, generators, async, `global`, or names starting with `_`.
- Available: `http.get/post/put/patch/delete(url, json=, headers=, params=, timeout=)` (inside a
  step, to allowed hosts; response has status_code, headers, text, json()), `secrets["NAME"]`,
  `json`, `math`, `re` (RE2), `datetime`, `NonRetriableError`, `RetryAfterError(msg, "30s")`,
  `StepError`.

Step ops: step.run(id, fn, *args); step.sleep(id, "5m"); step.sleep_until(id, iso_time);
step.wait_for_event(id, event="name", timeout="1h", if_="async.data.id == event.data.id")
(returns the event or None); step.invoke(id, function="skill", data={...}) (child result, or
StepError); step.send_event(id, "name", {...}); step.parallel(id, [("a", fn), ("b", fn)]);
step.now(id); step.uuid(id). ctx: event {id, name, data, ts}, run_id, attempt, log.info(...).

Complete example:

def handler(ctx, step):
    service = ctx.event["data"]["service"]
    metrics = step.run("fetch-metrics", lambda: http.get(
        "https://metrics.example/api/" + service).json())
    if metrics["error_rate"] > 0.05:
        summary = step.invoke("triage", function="incident-triage",
                              data={"service": service, "metrics": metrics})
        step.run("notify", lambda: http.post(secrets["OPS_WEBHOOK"],
                                             json={"text": summary["text"]}).status_code)
        return {"status": "degraded", "summary": summary}
    return {"status": "normal"}

def on_failure(ctx, step):
    ctx.log.error("health check failed: " + ctx.error["message"])

Register with: create_skill(name="service-health", code=..., triggers=[{"event": "health.check"}],
config={"retries": 3}). Then invoke_function(name=..., data={...}) and read get_run_trace(run_id).
"""


async def answer(call: Awaitable[T]) -> T:
    """The SDK turns any exception in a prompt into a bare "Error rendering prompt"; say what
    was wrong instead (an unknown skill or run is the caller's to fix: invalid params)."""
    try:
        return await call
    except StepkeeperError as exc:
        mistake = isinstance(exc, SkillNotFound | RunNotFound | InvalidInput)
        raise MCPError(INVALID_PARAMS if mistake else INTERNAL_ERROR, f"{exc.code}: {exc}") from None


def _known_arguments_only(server: MCPServer) -> None:
    """Refuse an argument a prompt does not take by name (the SDK would fail the call with a
    bare "Error rendering prompt")."""
    for prompt in server._prompt_manager.list_prompts():
        known = [argument.name for argument in prompt.arguments or []]
        prompt.fn = _checked(prompt.name, prompt.fn, known)


def _checked(name: str, fn: Callable[..., Any], known: list[str]) -> Callable[..., Any]:
    async def call(**arguments: Any) -> Any:
        unknown = sorted(set(arguments) - set(known))
        if unknown:
            takes = ", ".join(known) or "none"
            raise MCPError(
                INVALID_PARAMS, f"prompt {name} has no argument {unknown[0]!r:.60}; its arguments: {takes}"
            )
        result = fn(**arguments)
        return await result if inspect.isawaitable(result) else result

    return call


def register_prompts(server: MCPServer, engine_of: Callable[[], Engine]) -> None:
    @server.prompt(description="The skill API with a complete example, for writing a correct skill")
    def write_skill(goal: str = "") -> str:
        return SKILL_API + (f"\nThe skill to write: {goal}\n" if goal else "")

    @server.prompt(description="A skill's recent results and failures, framed for deciding what to change")
    async def review_skill(name: str) -> str:
        engine = engine_of()
        details = await answer(engine.get_skill(name))
        runs = (await answer(engine.list_runs(function=name, limit=REVIEW_WINDOW))).runs
        by_status = Counter(run.status for run in runs)
        errors = Counter(
            f"{(run.error or {}).get('type')}: {(run.error or {}).get('message')}"
            for run in runs
            if run.error
        )
        return (
            f"Review the stepkeeper skill {name!r} (version {details.version.version}) and decide what to "
            f"change. Of its last {len(runs)} runs: {dict(by_status)}.\n"
            f"Most common errors: {json.dumps(errors.most_common(5))}\n\n"
            f"Code:\n{details.version.code}\n\nConfig: {json.dumps(details.version.config)}\n"
            "Use get_run_trace on a failed run to see which step failed, with what input and after "
            "how many attempts; then update_skill with a fix and rerun the failed runs."
        )

    @server.prompt(description="A run's trace, framed for finding why it failed or stalled")
    async def triage_run(run_id: str) -> str:
        trace = await answer(engine_of().get_run_trace(run_id))
        return (
            f"Triage stepkeeper run {run_id} of skill {trace['run']['function']!r} "
            f"(status {trace['run']['status']}). Find the step that failed or is stuck, explain why "
            "from its input, error and attempts, and propose a fix (update_skill, then rerun with "
            f"from_step).\n\nTrace:\n{json.dumps(trace, indent=2)}"
        )

    _known_arguments_only(server)
