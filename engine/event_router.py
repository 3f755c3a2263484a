"""Routes stored events: starts the runs their triggers ask for and ends the waits they match.

Each event is applied in one transaction that also marks it processed, so an event is routed
exactly once, even with several engines on one database.
"""

from __future__ import annotations

import logging

from engine.expressions import matches
from engine.ids import new_id
from engine.records import Event, Run, SkillVersion, StepResolution
from engine.store import Store

log = logging.getLogger(__name__)
ROUTE_BATCH = 200


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
                        wake_at=now,
                    )
                )
                break  # one run per skill per event, however many of its triggers match
    return started


def route_pending(store: Store, now: float) -> dict[str, list[str]]:
    """Route every unprocessed event; returns the ids of the runs each one started."""
    started: dict[str, list[str]] = {}
    while True:
        pending = store.pending_events(ROUTE_BATCH)
        if not pending:
            return started
        skills = store.live_skill_versions()
        waits = store.waits_for({event.name for event in pending})
        for event in pending:
            new_runs = runs_for(event, skills, now)
            resolutions = []
            for wait in waits:
                if wait.event_name == event.name and matches(
                    wait.condition, {"event": wait.run_event, "async": event.payload()}
                ):
                    resolutions.append(
                        StepResolution(wait.run_id, wait.key, "completed", output=event.payload())
                    )
            if store.apply_event(event.id, now, new_runs, resolutions):
                started[event.id] = [run.id for run in new_runs]
                matched = {(r.run_id, r.key) for r in resolutions}
                waits = [w for w in waits if (w.run_id, w.key) not in matched]
        if len(pending) < ROUTE_BATCH:
            return started
