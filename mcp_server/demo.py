"""`stepkeeper demo`: the seed's scenario on the embedded SQLite default, with no MCP client.

A local endpoint the demo starts (simulated metrics, a pager, an ops channel) stands in for the
world. `infra-health-check` (run once here; a loop every minute while the demo serves) fetches the
metrics, waits durably, classifies them and invokes `incident-triage` for a degraded service;
triage (one at a time per service) correlates, pages on-call through a pager that fails its
first call (the step retries), and announces the result with an event that starts
`notify-oncall`; a failing triage would post to ops from `on_failure`.
`review-skill-performance` (a weekly loop while serving) reads run history with `runs.stats`.
The traces are printed; with `--serve` the dashboard stays up at http://127.0.0.1:8788/ until
Ctrl-C, and the demo's loops are removed when it stops.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from engine import Engine, SkillNotFound

HEALTH_CHECK = """
def handler(ctx, step):
    metrics = step.run("fetch-metrics", lambda: http.get("BASE/metrics").json())
    step.sleep("settle", "1s")
    degraded = step.run("assess", lambda: [n for n, m in sorted(metrics.items()) if m["error_rate"] > 0.05])
    ctx.log.info("degraded services: " + (", ".join(degraded) or "none"))
    if degraded:
        data = {"service": degraded[0], "metrics": metrics}
        triage = step.invoke("triage", function="incident-triage", data=data)
        return {"status": "degraded", "triage": triage}
    return {"status": "normal"}
"""

INCIDENT_TRIAGE = """
def handler(ctx, step):
    service = ctx.event["data"]["service"]
    summary = step.run("correlate", lambda: {"likely_cause": "deploy of " + service, "severity": "high"})
    step.run("page-oncall", lambda: page(service, summary))
    step.send_event("announce", "incident.triaged", {"service": service, "summary": summary})
    return summary

def page(service, summary):
    response = http.post("BASE/pager", json={"service": service, "summary": summary})
    if response.status_code >= 500:
        raise ValueError("pager answered " + str(response.status_code))
    return response.json()

def on_failure(ctx, step):
    report = {"failed": ctx.failed_run_id, "error": ctx.error}
    step.run("tell-ops", lambda: http.post("BASE/ops", json=report).status_code)
"""

NOTIFIER = """
def handler(ctx, step):
    return step.run("post-summary", lambda: "posted: " + ctx.event["data"]["summary"]["likely_cause"])
"""

REVIEW = """
def handler(ctx, step):
    figures = step.run("read-history", lambda: runs.stats(since="7d"))
    return {name: {"runs": f["runs"], "success_rate": f["success_rate"], "retries": f["retries"]}
            for name, f in figures.items()}
"""

FAST_RETRIES = {"retries": 3, "retry_backoff": {"initial": "200ms"}}
SKILLS: dict[str, tuple[str, list[dict[str, Any]], dict[str, Any]]] = {
    "infra-health-check": (HEALTH_CHECK, [], {}),
    "incident-triage": (
        INCIDENT_TRIAGE,
        [],
        {**FAST_RETRIES, "concurrency": [{"limit": 1, "key": "event.data.service"}]},
    ),
    "notify-oncall": (NOTIFIER, [{"event": "incident.triaged"}], {}),
    "review-skill-performance": (REVIEW, [], {}),
}
LOOPS = {
    "demo: health check every minute": ("infra-health-check", "* * * * *"),
    "demo: weekly review": ("review-skill-performance", "0 9 * * 1"),
}


async def schedule_loops(engine: Engine) -> list[str]:
    """The demo's loops, while it serves the dashboard (its endpoint goes away with it); any left
    by a demo that was killed are replaced, not doubled."""
    for loop in await engine.list_loops():
        if loop.name in LOOPS:
            await engine.delete_loop(loop.id)
    return [(await engine.schedule_loop(skill, cron, name=name)).id for name, (skill, cron) in LOOPS.items()]


async def remove_loops(engine: Engine, loop_ids: list[str]) -> None:
    for loop_id in loop_ids:
        await engine.delete_loop(loop_id)


async def register(engine: Engine, base: str) -> None:
    for name, (code, triggers, config) in SKILLS.items():
        code = code.replace("BASE", base)
        try:
            await engine.update_skill(name, code=code, triggers=triggers, config=config)
        except SkillNotFound:
            await engine.create_skill(name, code, triggers=triggers, config=config)


async def run_demo(engine: Engine, base: str, out: TextIO = sys.stdout) -> int:
    await register(engine, base)
    run = await engine.invoke("infra-health-check", wait=True, timeout=60)
    trace = await engine.get_run_trace(run.id)
    _print_trace(trace, out)
    for child in trace["children"]:
        _print_trace(await engine.get_run_trace(child["run_id"]), out, indent="    ")
    page = await engine.list_runs(function="notify-oncall", limit=1)
    if page.runs:
        notified = await engine.wait_for_run(page.runs[0].id, timeout=10)
        out.write(
            f"\nnotify-oncall (started by event incident.triaged): {notified.status} -> {notified.output}\n"
        )
    review = await engine.invoke("review-skill-performance", wait=True, timeout=30)
    out.write(f"\nreview-skill-performance: {review.status} -> {review.output}\n")
    out.write(f"\nrun {run.id}: {run.status}; database: {engine.database}\n")
    return 0 if run.status == review.status == "completed" else 1


def _print_trace(trace: dict[str, Any], out: TextIO, indent: str = "") -> None:
    run = trace["run"]
    out.write(f"{indent}{run['function']} v{run['version']} [{run['status']}] {run['duration_ms']} ms\n")
    for span in trace["spans"]:
        attempts = len(span.get("attempts") or [])
        tries = f" ({attempts} attempts)" if attempts > 1 else ""
        out.write(
            f"{indent}  {span['op']:<14} {span['key']:<16} {span['status']:<10}{tries} -> {span['output']}\n"
        )
    for line in trace["logs"]:
        out.write(f"{indent}  log {line['level']}: {line['message']}\n")
    out.write(f"{indent}  result: {run['output'] if run['status'] == 'completed' else run['error']}\n")
