"""The seed's own scenario, end to end on a real loopback server.

A health-check loop on a cron reads a metrics endpoint; when a service is degraded it invokes
the triage skill. Two degraded checks for one service queue the second triage behind the first
(`concurrency: [{limit: 1, key: "event.data.service"}]`). Triage's notification endpoint keeps
failing, so it exhausts its retries and its `on_failure` posts the original event to ops.
"""

from __future__ import annotations

import asyncio
import threading
import time

from engine import Engine
from tests.conftest import finished
from tests.support.recorder import Recorder

HEALTH_CHECK = """
def handler(ctx, step):
    service = ctx.event["data"]["service"]
    status = step.run("metrics", lambda: http.get(BASE + "/metrics/" + service).status_code)
    if status == 200:
        return {"service": service, "healthy": True}
    try:
        verdict = step.invoke(
            "triage", function="incident-triage", data={"service": service, "status": status}
        )
    except StepError as err:
        return {"service": service, "healthy": False, "triage": "failed: " + str(err)}
    return {"service": service, "healthy": False, "triage": verdict}
"""

TRIAGE = """
def handler(ctx, step):
    service = ctx.event["data"]["service"]
    diagnosis = step.run(
        "diagnose", lambda: http.post(BASE + "/diagnose", json={"service": service}).status_code
    )
    step.run("notify", lambda: notify(service))
    return {"diagnosis": diagnosis}

def notify(service):
    response = http.post(BASE + "/notify", json={"service": service})
    if response.status_code >= 500:
        raise RuntimeError("notification endpoint answered " + str(response.status_code))
    return response.status_code

def on_failure(ctx, step):
    page = {"error": ctx.error["message"], "event": ctx.event}
    step.run("page-ops", lambda: http.post(BASE + "/ops", json=page).status_code)
"""


class InFlight:
    """Counts /diagnose requests being served at once; each takes a while."""

    def __init__(self) -> None:
        self.now = self.peak = 0
        self.lock = threading.Lock()

    def __call__(self, path: str) -> None:
        if path != "/diagnose":
            return
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        time.sleep(1.5)  # longer than the loop's period: the next check's triage comes meanwhile
        with self.lock:
            self.now -= 1


async def test_health_loop_triage_queueing_and_on_failure(engine: Engine, recorder: Recorder) -> None:
    in_flight = InFlight()
    recorder.on_call = in_flight
    recorder.scripts["/metrics/api"] = [503, 503]  # degraded on two checks, healthy after
    recorder.scripts["/notify"] = [500] * 10
    base = f"BASE = {recorder.base!r}\n"
    await engine.create_skill(
        "incident-triage",
        base + TRIAGE,
        config={
            "concurrency": [{"limit": 1, "key": "event.data.service"}],
            "retries": 1,
            "retry_backoff": {"initial": "0s"},
        },
    )
    await engine.create_skill("infra-health-check", base + HEALTH_CHECK)
    loop = await engine.schedule_loop("infra-health-check", "* * * * * *", data={"service": "api"})
    checks = []
    for _ in range(200):
        checks = [
            r for r in (await engine.list_runs(function="infra-health-check")).runs if r.trigger == "cron"
        ]
        if len(checks) >= 3:
            break
        await asyncio.sleep(0.05)
    await engine.update_loop(loop.id, paused=True)
    done = [await finished(engine, run.id, timeout=30) for run in checks]
    outputs = sorted((run.output for run in done), key=lambda out: out["healthy"])
    degraded = [out for out in outputs if not out["healthy"]]
    assert len(degraded) == 2 and all(out["triage"].startswith("failed: ") for out in degraded)
    assert recorder.count("/diagnose") == 2
    assert in_flight.peak == 1  # the second triage waited for the first
    assert recorder.count("/notify") == 4  # two attempts each: the first try and one retry

    triages = (await engine.list_runs(function="incident-triage")).runs
    by_kind = {kind: [r for r in triages if r.kind == kind] for kind in ("handler", "on_failure")}
    assert len(by_kind["handler"]) == 2 and all(r.status == "failed" for r in by_kind["handler"])
    for run in by_kind["on_failure"]:
        assert (await finished(engine, run.id)).status == "completed"
    pages = [payload for _, path, payload in recorder.calls if path == "/ops"]
    assert len(pages) == 2
    assert all(page["event"]["data"]["service"] == "api" for page in pages)
    assert all("notification endpoint answered 500" in page["error"] for page in pages)
