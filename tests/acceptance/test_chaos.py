"""Chaos: a seeded, randomized mixed workload against a real `serve --http` process that is
killed with SIGKILL (with its worker processes) at random moments and restarted, round after
round. Afterwards the invariants are checked against the database and the external side-effect
log (a real HTTP server on loopback that every step calls):

- every accepted event is stored once, routed, and started one run per matching skill;
- every run reached a final state (here: completed);
- no step ran again after its result was stored (at-least-once allows a re-run only of a step
  that was in flight at a kill);
- no concurrency limit was exceeded;
- every tick of a per-second cron loop fired exactly once, none skipped.

Bounded in CI (a few rounds); `STEPKEEPER_LONG_TESTS=1` runs many more. `STEPKEEPER_CHAOS_SEED`
replays a failing run: the seed is printed with the counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import sqlite3
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.http_server import ServerProcess, start_server
from tests.support.mcp_http import call_tool, tool_result
from tests.support.overlap import most_at_once
from tests.support.recorder import Recorder
from tests.support.scale import scaled
from tests.support.sqlite_file import scalar

pytestmark = pytest.mark.slow

RECORD = """
def record(ctx, url, key):
    return http.post(url, json={"run": ctx.run_id, "key": key}).status_code
"""
CHAIN = """
def handler(ctx, step):
    url = ctx.event["data"]["url"]
    step.run("a", lambda: record(ctx, url, "a"))
    step.sleep("nap", 0.3)
    step.run("b", lambda: record(ctx, url, "b"))
    return step.run("c", lambda: record(ctx, url, "c"))
"""
WAITER = """
def handler(ctx, step):
    step.wait_for_event("signal", "chaos/signal", timeout="20s", if_="async.data.k == event.data.k")
    return step.run("after", lambda: record(ctx, ctx.event["data"]["url"], "after"))
"""
PARENT = """
def handler(ctx, step):
    url = ctx.event["data"]["url"]
    step.invoke("child", "child", data={"url": url})
    return step.run("after", lambda: record(ctx, url, "after"))
"""
FLAKY = """
def handler(ctx, step):
    url = ctx.event["data"]["url"]
    def once():
        if ctx.attempt < 1:
            raise ValueError("the first attempt fails")
        return record(ctx, url, "flaky")
    return step.run("flaky", once)
"""


def one_step(key: str, url_field: str = "url") -> str:
    body = f"record(ctx, ctx.event['data'][{url_field!r}], {key!r})"
    return f"def handler(ctx, step):\n    return step.run({key!r}, lambda: {body})\n"


SKILLS: dict[str, tuple[str, dict[str, Any]]] = {
    "chain": (CHAIN, {"triggers": [{"event": "chaos/chain"}]}),
    "waiter": (WAITER, {"triggers": [{"event": "chaos/wait"}]}),
    "parent": (PARENT, {"triggers": [{"event": "chaos/parent"}]}),
    "child": (one_step("work"), {}),
    "flaky": (
        FLAKY,
        {"triggers": [{"event": "chaos/flaky"}], "config": {"retries": 3, "retry_backoff": {"initial": 0.2}}},
    ),
    "keyed": (
        one_step("held", "held_url"),
        {
            "triggers": [{"event": "chaos/keyed"}],
            "config": {"concurrency": [{"limit": 1, "key": "event.data.key"}]},
        },
    ),
    "ticker": (one_step("tick"), {}),
}
UNFINISHED = "SELECT count(*) FROM runs WHERE status NOT IN ('completed', 'failed', 'cancelled', 'skipped')"
KINDS = ["chain", "wait", "parent", "flaky", "keyed"]


@dataclass
class Workload:
    """What the producer did: the events the server acknowledged, and those still to resend."""

    rng: random.Random
    url: str
    held_url: str
    accepted: dict[str, str] = field(default_factory=dict)  # event id -> name
    unacknowledged: list[dict[str, Any]] = field(default_factory=list)
    invoked: list[str] = field(default_factory=list)
    waiters: list[str] = field(default_factory=list)
    counter: itertools.count[int] = field(default_factory=itertools.count)

    def new_events(self, count: int) -> list[dict[str, Any]]:
        events = []
        for _ in range(count):
            kind, n = self.rng.choice(KINDS), next(self.counter)
            data: dict[str, Any] = {"url": self.url, "n": n}
            if kind == "wait":
                data["k"] = f"k{n}"
                self.waiters.append(f"k{n}")
            if kind == "keyed":
                data.update(key=self.rng.choice("xy"), held_url=self.held_url)
            events.append({"name": f"chaos/{kind}", "id": f"ev-{n}", "data": data})
        return events

    async def post(self, base: str, events: list[dict[str, Any]]) -> None:
        """Post in batches; a batch the server did not acknowledge (it was killed) is sent again later."""
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            while events:
                size = self.rng.randint(1, 5)
                batch, events = events[:size], events[size:]
                try:
                    answer = await http.post("/api/events", json=batch)
                    answer.raise_for_status()
                except httpx.HTTPError:
                    self.unacknowledged.extend(batch)
                    self.unacknowledged.extend(events)
                    return
                self.accepted.update({event["id"]: event["name"] for event in batch})


async def one_round(home: Path, env: dict[str, str], work: Workload) -> ServerProcess:
    """Start the server, resend what was not acknowledged, produce new work, and leave the
    server running (the caller kills it at a random moment)."""
    server = start_server(home, env)
    resend, work.unacknowledged = work.unacknowledged, []
    await work.post(server.base, resend)
    return server


async def produce(server: ServerProcess, work: Workload) -> None:
    with contextlib.suppress(Exception):  # the server may die under us: that is the point
        await work.post(server.base, work.new_events(work.rng.randint(4, 12)))
        if work.rng.random() < 0.5:
            result = await call_tool(
                server.base, "invoke_function", {"name": "chain", "data": {"url": work.url}, "wait": False}
            )
            if not result.is_error:
                work.invoked.append(result.structured_content["run_id"])


@pytest.mark.timeout(scaled(300, 3600))
async def test_killed_and_restarted_at_random_the_invariants_hold(tmp_path: Path) -> None:
    seed = int(os.environ.get("STEPKEEPER_CHAOS_SEED") or random.randrange(1_000_000))
    rounds = scaled(5, 40)
    recorder, held = Recorder(), Recorder()
    held.hold = 0.1  # calls under the concurrency key last long enough to overlap if unlimited
    env = {"STEPKEEPER_HTTP_ALLOW": f"{recorder.allow},{held.allow}", "STEPKEEPER_WORKERS": "2"}
    work = Workload(random.Random(seed), f"{recorder.base}/step", f"{held.base}/held")
    kills = 0
    try:
        server = start_server(tmp_path, env)
        for name, (code, options) in SKILLS.items():
            await tool_result(server.base, "create_skill", {"name": name, "code": RECORD + code, **options})
        loop = await tool_result(
            server.base,
            "schedule_loop",
            {
                "skill": "ticker",
                "cron": "* * * * * *",
                "catch_up": "all",
                "data": {"url": f"{recorder.base}/tick"},
            },
        )
        for _ in range(rounds):
            producing = asyncio.create_task(produce(server, work))
            await asyncio.sleep(work.rng.uniform(0.2, 2.5))
            server.kill()
            kills += 1
            await producing
            server = await one_round(tmp_path, env, work)
        await settle(server, work, loop["loop_id"])
        server.stop()
        report = check_invariants(tmp_path / "stepkeeper.db", work, recorder, held)
    finally:
        with contextlib.suppress(Exception):
            server.kill()
        recorder.close()
        held.close()
    print(
        f"chaos seed={seed} rounds={rounds} kills={kills} " + " ".join(f"{k}={v}" for k, v in report.items())
    )
    assert report["violations"] == 0, (seed, report)
    # the invariants were checked on real work: events routed, steps stored, ticks fired
    assert report["events"] and report["steps"] and report["ticks"], (seed, report)


async def settle(server: ServerProcess, work: Workload, loop_id: str) -> None:
    """Stop the loop, end every wait with its signal, and wait until every run is final."""
    await tool_result(server.base, "update_loop", {"loop_id": loop_id, "paused": True})
    signals = [{"name": "chaos/signal", "id": f"sig-{k}", "data": {"k": k}} for k in work.waiters]
    database = server.log_path.parent / "stepkeeper.db"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        await work.post(server.base, work.unacknowledged)
        waiting = scalar(database, "SELECT count(*) FROM runs WHERE status = 'waiting'")
        if waiting:  # a signal sent before its wait was stored does not count: send again
            for start in range(0, len(signals), 50):
                resent = [
                    dict(s, id=f"{s['id']}-{int(time.monotonic() * 10)}") for s in signals[start : start + 50]
                ]
                async with httpx.AsyncClient(base_url=server.base, timeout=10) as http:
                    await http.post("/api/events", json=resent)
        if (
            scalar(
                database,
                UNFINISHED,
            )
            == 0
        ):
            return
        await asyncio.sleep(0.5)
    raise AssertionError("runs still unfinished after 120 s")


def check_invariants(database: Path, work: Workload, recorder: Recorder, held: Recorder) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        db.row_factory = sqlite3.Row
        events = {row["id"]: row for row in db.execute("SELECT id, name, processed_at FROM events")}
        runs = list(db.execute("SELECT id, function, status, event_id, event, error FROM runs"))
        steps = {
            (row["run_id"], row["key"]): row
            for row in db.execute("SELECT run_id, key, status, ended_at FROM steps")
        }
    violations: list[str] = []
    runs_of_event = Counter(run["event_id"] for run in runs if run["event_id"])
    for event_id, name in work.accepted.items():
        stored = events.get(event_id)
        if stored is None or stored["processed_at"] is None:
            violations.append(f"accepted event {event_id} not stored or not routed")
        elif runs_of_event[event_id] != 1:
            violations.append(f"event {event_id} ({name}) started {runs_of_event[event_id]} runs")
    known = {run["id"] for run in runs}
    violations += [f"invoked run {run_id} missing" for run_id in work.invoked if run_id not in known]
    violations += [
        f"run {run['id']} ({run['function']}) ended {run['status']}: {run['error']}"
        for run in runs
        if run["status"] != "completed"
    ]
    executions: dict[tuple[str, str], list[float]] = defaultdict(list)
    for _, payload, arrived in recorder.arrivals + held.arrivals:
        executions[(payload["run"], payload["key"])].append(arrived)
    for (run_id, key), times in executions.items():
        stored = steps.get((run_id, key))
        if stored is not None and stored["ended_at"] is not None and max(times) > stored["ended_at"]:
            violations.append(f"step {key} of {run_id} ran again after its result was stored")
    completed_steps = {(run_id, key) for (run_id, key), row in steps.items() if row["status"] == "completed"}
    recorded_keys = {"a", "b", "c", "after", "work", "flaky", "held", "tick"}
    unseen = [k for k in completed_steps if k[1] in recorded_keys and (k[0], k[1]) not in executions]
    violations += [f"step {key} of {run_id} completed without running" for run_id, key in unseen]
    spans_by_key: dict[str, list[tuple[float, float]]] = defaultdict(list)
    run_key = {
        run["id"]: json.loads(run["event"])["data"].get("key") for run in runs if run["function"] == "keyed"
    }
    for _, payload, arrived, departed in held.spans:
        spans_by_key[run_key[payload["run"]]].append((arrived, departed))
    violations += [
        f"key {k}: {most_at_once(s)} at once" for k, s in spans_by_key.items() if most_at_once(s) > 1
    ]
    ticks = Counter(json.loads(run["event"])["ts"] for run in runs if run["function"] == "ticker")
    violations += [f"tick {tick} fired {count} times" for tick, count in ticks.items() if count > 1]
    ordered = sorted(ticks)
    violations += [f"ticks {a} to {b} skipped" for a, b in itertools.pairwise(ordered) if b - a != 1]
    for violation in violations[:20]:
        print("VIOLATION", violation)
    return {
        "events": len(work.accepted),
        "runs": len(runs),
        "steps": len(steps),
        "ticks": len(ticks),
        "reexecuted": sum(len(times) - 1 for times in executions.values()),
        "violations": len(violations),
    }
