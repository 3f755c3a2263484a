"""`runs` in skill code: a review loop reads the figures of the workload the test produced."""

from __future__ import annotations

from engine import Engine
from tests.conftest import finished

FLAKY = """
def handler(ctx, step):
    if not ctx.event["data"]["ok"]:
        raise NonRetriableError("bad input " + str(ctx.event["data"]["n"]))
    return step.run("work", lambda: ctx.event["data"]["n"])
"""

REVIEW = """
def handler(ctx, step):
    figures = step.run("stats", lambda: runs.stats(function="flaky", since="1h"))
    failed = step.run("failed", lambda: runs.list(function="flaky", status="failed", limit=50))
    return {"stats": figures["flaky"], "failed": sorted([r["run_id"] for r in failed]),
            "errors": [r["error"]["message"] for r in failed]}
"""


async def test_a_review_skill_reads_the_stats_and_failures_of_the_workload(engine: Engine) -> None:
    await engine.create_skill("flaky", FLAKY, triggers=[{"event": "job"}], config={"retries": 0})
    run_ids = []
    for n in range(10):
        sent = await engine.send_event("job", {"n": n, "ok": n % 4 != 3})  # n = 3 and 7 fail
        run_ids += sent.run_ids
    done = [await finished(engine, run_id) for run_id in run_ids]
    failed_ids = sorted(run.id for run in done if run.status == "failed")
    assert len(failed_ids) == 2

    await engine.create_skill("review-skill-performance", REVIEW)
    review = await finished(engine, (await engine.invoke("review-skill-performance")).id)
    assert review.status == "completed", review.error
    stats = review.output["stats"]
    assert stats["runs"] == 10 and stats["by_status"] == {"completed": 8, "failed": 2}
    assert stats["success_rate"] == 0.8
    assert review.output["failed"] == failed_ids
    assert sorted(review.output["errors"]) == ["bad input 3", "bad input 7"]


async def test_runs_outside_a_step_and_bad_queries_are_refused(engine: Engine) -> None:
    code = """
def handler(ctx, step):
    out = []
    for call in [lambda: runs.stats(), lambda: step.run("bad", lambda: runs.list(status="nope"))]:
        try:
            call()
        except (NonRetriableError, StepError) as e:
            out.append(str(e))
    return out
"""
    await engine.create_skill("nosy", code)
    run = await finished(engine, (await engine.invoke("nosy")).id)
    assert "runs must be read inside step.run" in run.output[0]
    assert "unknown status 'nope'" in run.output[1]


async def test_a_direct_runs_call_in_the_handler_is_warned_about_at_registration(engine: Engine) -> None:
    code = "def handler(ctx, step):\n    return runs.stats()\n"
    registration = await engine.create_skill("eager", code)
    assert registration.warnings and "runs call outside step.run" in registration.warnings[0]


async def test_hostile_runs_arguments_fail_the_step_instead_of_wedging_the_run(engine: Engine) -> None:
    code = """
def handler(ctx, step):
    out = []
    calls = [("since", lambda: runs.stats(since=10**400)), ("status", lambda: runs.list(status=["x"]))]
    for name, call in calls + [("limit", lambda: runs.list(limit=10**6))]:
        try:
            step.run(name, call)
        except StepError as e:
            out.append(e.message)
    return out
"""
    await engine.create_skill("hostile", code, config={"retries": 0})
    run = await finished(engine, (await engine.invoke("hostile")).id)
    assert run.status == "completed", run.error
    since, status, limit = run.output
    assert "since must be epoch seconds" in since
    assert "status must be a string" in status
    assert "limit must be an integer from 1 to 200" in limit
