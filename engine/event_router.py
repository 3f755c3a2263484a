"""Routes stored events: starts the runs their triggers ask for and ends the waits they match.

Each event is marked processed in the same transaction that creates its runs, so an event is
routed exactly once, even with several engines on one database.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from engine.expressions import matches
from engine.flow import cancellations, gates_for, priority_seconds, slots_for
from engine.ids import new_id
from engine.records import Event, EventRoute, Run, SkillVersion, StepResolution, Wait
from engine.store import RouteReads, Store

log = logging.getLogger(__name__)
ROUTE_BATCH = 200

# Called with the runs about to be created; may mark some as claimed by this engine.
ClaimLocally = Callable[[list[Run]], None]


def runs_for(event: Event, skills: list[SkillVersion], now: float) -> list[Run]:
    payload = event.payload()
    started = []
    for skill in skills:
        for trigger in skill.triggers:
            if trigger.get("event") == event.name and matches(trigger.get("if"), {"event": payload}):
                started.append(
                    Run(
                        id=new_id("run"),
                        function=skill.name,
                        version=skill.version,
                        trigger="event",
                        status="queued",
                        event=payload,
                        event_id=event.id,
                        created_at=now,
                        updated_at=now,
                        wake_at=now - priority_seconds(skill.config, payload),
                    )
                )
                break  # one run per skill per event, however many of its triggers match
    return started


def _resolutions(event: Event, waits: list[Wait]) -> list[StepResolution]:
    payload = event.payload()
    return [
        StepResolution(wait.run_id, wait.key, "completed", output=payload)
        for wait in waits
        if wait.event_name == event.name
        and matches(wait.condition, {"event": wait.run_event, "async": payload})
    ]


def plan_routes(reads: RouteReads, batch: list[Event], now: float) -> list[EventRoute]:
    """What each event will do: the runs its triggers start and the waits it ends."""
    if not batch:
        return []
    skills = reads.live_skill_versions()
    configs = {skill.name: skill.config for skill in skills}
    waits = reads.waits_for({event.name for event in batch})
    routes = []
    for event in batch:
        resolutions = _resolutions(event, waits)
        ended = {(r.run_id, r.key) for r in resolutions}
        waits = [w for w in waits if (w.run_id, w.key) not in ended]  # a wait takes one event
        cancels = cancellations(reads, event.payload(), skills, now)
        new_runs = runs_for(event, skills, now)
        gates = [gate for run in new_runs for gate in gates_for(run, configs[run.function])]
        slots = {run.id: slots_for(run, configs[run.function]) for run in new_runs}
        routes.append(EventRoute(event.id, new_runs, resolutions, cancels, gates, slots))
    return routes


def started_runs(routes: list[EventRoute], applied: list[bool]) -> dict[str, list[str]]:
    done = zip(routes, applied, strict=True)
    return {item.event_id: [run.id for run in item.new_runs] for item, ok in done if ok}


@dataclass(frozen=True)
class Routed:
    started: dict[str, list[str]]  # the runs each stored event started, by event id
    other_work: bool  # waits ended or runs cancelled too: work for a scheduler beyond new runs


def append_and_route(
    store: Store, batch: list[Event], now: float, claim: ClaimLocally | None = None
) -> Routed:
    """Store new events and route them in one transaction; returns what they started.

    The routes are planned inside that transaction (from what it reads), for the events it
    stored: a duplicate id is not stored again and starts nothing.
    """
    planned: list[EventRoute] = []

    def plan(reads: RouteReads, stored: list[Event]) -> list[EventRoute]:
        routes = plan_routes(reads, stored, now)
        if claim is not None:  # a retried transaction plans new runs: the earlier ones are never stored
            claim([run for item in routes for run in item.new_runs])
        planned[:] = routes
        return routes

    store.append_events(batch, now=now, plan=plan)
    return Routed(
        started={item.event_id: [run.id for run in item.new_runs] for item in planned},
        other_work=any(item.resolutions or item.cancels for item in planned),
    )


def route_pending(store: Store, now: float) -> dict[str, list[str]]:
    """Route every unprocessed event (sent while no engine ran, or by another process)."""
    started: dict[str, list[str]] = {}
    while pending := store.pending_events(ROUTE_BATCH):
        routes = plan_routes(store, pending, now)
        started.update(started_runs(routes, store.apply_events(routes, now)))
        if len(pending) < ROUTE_BATCH:
            break
    return started
