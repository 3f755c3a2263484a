"""`stepkeeper demo`: the seed's loop in miniature, run on the embedded SQLite default.

A health-check skill fetches (simulated) metrics, sleeps, classifies them, and invokes a
triage skill when something is wrong; the triage skill announces its result with an event
that a third skill picks up. Everything is checkpointed; the trace is printed at the end.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from engine import Engine, SkillNotFound

HEALTH_CHECK = """
def handler(ctx, step):
    metrics = step.run("fetch-metrics", lambda: {"api": {"error_rate": 0.07}, "db": {"error_rate": 0.001}})
    step.sleep("settle", "1s")
    degraded = step.run("assess", lambda: [n for n, m in sorted(metrics.items()) if m["error_rate"] > 0.05])
    ctx.log.info("degraded services: " + ", ".join(degraded))
    if degraded:
        triage = step.invoke("triage", function="incident-triage", data={"services": degraded})
        return {"status": "degraded", "triage": triage}
    return {"status": "normal"}
"""

INCIDENT_TRIAGE = """
def handler(ctx, step):
    services = ctx.event["data"]["services"]
    summary = step.run("correlate", lambda: {"likely_cause": "deploy of " + services[0], "severity": "high"})
    step.send_event("announce", "incident.triaged", {"services": services, "summary": summary})
    return summary
"""

NOTIFIER = """
def handler(ctx, step):
    return step.run("post-summary", lambda: "posted: " + ctx.event["data"]["summary"]["likely_cause"])
"""

SKILLS = {
    "infra-health-check": (HEALTH_CHECK, []),
    "incident-triage": (INCIDENT_TRIAGE, []),
    "notify-oncall": (NOTIFIER, [{"event": "incident.triaged"}]),
}


async def register(engine: Engine) -> None:
    for name, (code, triggers) in SKILLS.items():
        try:
            await engine.update_skill(name, code=code, triggers=triggers)
        except SkillNotFound:
            await engine.create_skill(name, code, triggers=triggers)


async def run_demo(engine: Engine, out: TextIO = sys.stdout) -> int:
    await register(engine)
    run = await engine.invoke("infra-health-check", wait=True, timeout=30)
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
    out.write(f"\nrun {run.id}: {run.status}; database: {engine.database}\n")
    return 0 if run.status == "completed" else 1


def _print_trace(trace: dict[str, Any], out: TextIO, indent: str = "") -> None:
    run = trace["run"]
    out.write(f"{indent}{run['function']} v{run['version']} [{run['status']}] {run['duration_ms']} ms\n")
    for span in trace["spans"]:
        out.write(f"{indent}  {span['op']:<14} {span['key']:<16} {span['status']:<10} -> {span['output']}\n")
    for line in trace["logs"]:
        out.write(f"{indent}  log {line['level']}: {line['message']}\n")
    out.write(f"{indent}  result: {run['output'] if run['status'] == 'completed' else run['error']}\n")
