"""A database written by the first released stepkeeper is upgraded with every run and skill intact.

The fixture `fixtures/first_release.sqlite` was written by the old code itself (see
`fixtures/make_first_release_db.py`, whose constants say what it holds). Each test works on a
copy, so the committed file stays at revision 0001.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from engine import Engine, SkillNotFound, SqlStore, migrate
from engine.records import Run
from engine.schema import metadata
from tests.conftest import finished, wait_status
from tests.migration.fixtures.make_first_release_db import (
    CONFIGS,
    DELETED_SKILL,
    EXPECTED_RUNS,
    FAR_FUTURE_EPOCH,
    FIXTURE,
    INPUTS,
    LOOP,
    LOOP_DATA,
    ROUTED_EVENT_ID,
    SKILLS,
    TRIGGERS,
    UNROUTED_EVENT,
    label_of,
)

FIRST_TABLES = (
    "skills",
    "skill_versions",
    "runs",
    "steps",
    "step_attempts",
    "events",
    "run_logs",
    "schedules",
)


@pytest.fixture
def old_db(tmp_path: Path) -> Path:
    """A copy of the fixture, still at the first released schema."""
    copy = tmp_path / "first_release.sqlite"
    shutil.copyfile(FIXTURE, copy)
    assert _revision(copy) == "0001"
    return copy


@pytest.fixture
async def upgraded(old_db: Path) -> AsyncIterator[Engine]:
    """The current engine on the old database (not started: it migrates on first use)."""
    engine = Engine(SqlStore(f"sqlite:///{old_db}"), poll_seconds=0.2, http_allow=[])
    yield engine
    await engine.close()


def _revision(path: Path) -> str:
    with sqlite3.connect(path) as connection:
        return str(connection.execute("SELECT version_num FROM alembic_version").fetchone()[0])


def _rows(path: Path, columns: dict[str, list[str]]) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the first schema's tables, in the first schema's columns, in a fixed order."""
    with sqlite3.connect(path) as connection:
        return {
            table: sorted(
                connection.execute(f"SELECT {', '.join(names)} FROM {table}").fetchall(),
                key=repr,
            )
            for table, names in columns.items()
        }


def _first_columns(path: Path) -> dict[str, list[str]]:
    with sqlite3.connect(path) as connection:
        return {
            table: [row[1] for row in connection.execute(f"PRAGMA table_info({table})")]
            for table in FIRST_TABLES
        }


async def _runs_by_label(engine: Engine) -> dict[str, Run]:
    page = await engine.list_runs(limit=200)
    assert page.next_cursor is None
    runs = {label_of(run): run for run in page.runs}
    assert len(runs) == len(page.runs)
    return runs


def test_every_stored_value_survives_the_upgrade(old_db: Path) -> None:
    columns = _first_columns(old_db)
    before = _rows(old_db, columns)
    assert len(before["runs"]) == len(EXPECTED_RUNS)
    assert len(before["skill_versions"]) == sum(len(codes) for codes in SKILLS.values()) + 1

    store = SqlStore(f"sqlite:///{old_db}")
    store.migrate()
    with store.sa_engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    store.close()

    assert _revision(old_db) == migrate.head_revision() == migrate.HEAD
    assert differences == []  # the upgraded schema is exactly the declared one
    assert _rows(old_db, columns) == before  # no row lost, no value changed, in any old column


async def test_skills_and_versions_keep_their_code(upgraded: Engine) -> None:
    skills = {skill.name: skill for skill in await upgraded.list_skills()}
    assert set(skills) == set(SKILLS)
    for name, codes in SKILLS.items():
        assert skills[name].latest_version == len(codes)
        for number, code in enumerate(codes, start=1):
            details = await upgraded.get_skill(name, number)
            assert details.versions == list(range(1, len(codes) + 1))
            assert details.version.code == code
            assert details.version.triggers == TRIGGERS.get(name, [])
            assert details.version.config == CONFIGS.get(name, {})
            assert details.version.has_on_failure == ("def on_failure" in code)
    assert (await upgraded.get_skill("order-total")).version.description == "order-total, third"
    assert (await upgraded.get_skill("nap")).version.description == "nap skill"
    with pytest.raises(SkillNotFound):
        await upgraded.get_skill(DELETED_SKILL)


async def test_runs_keep_status_input_output_and_steps(upgraded: Engine) -> None:
    runs = await _runs_by_label(upgraded)
    assert set(runs) == set(EXPECTED_RUNS)
    for label, expected in EXPECTED_RUNS.items():
        run = runs[label]
        trace = await upgraded.get_run_trace(run.id)
        spans = trace["spans"]
        assert (run.function, run.status, run.version) == (
            expected["function"],
            expected["status"],
            expected["version"],
        ), label
        if "trigger" in expected:
            assert run.trigger == expected["trigger"], label
        if label in INPUTS:
            assert run.event["data"] == INPUTS[label], label
        if expected["output"] is not None:
            assert run.output == expected["output"], label
        assert [(s["key"], s["op"], s["status"]) for s in spans] == [s[:3] for s in expected["steps"]], label
        for span, (_, _, _, output) in zip(spans, expected["steps"], strict=True):
            if output is not None:
                assert span["output"] == output, (label, span["key"])
        assert [line["message"] for line in trace["logs"]] == expected.get("logs", []), label
        retried = {s["key"]: len(s["attempts"]) for s in spans if len(s["attempts"]) > 1}
        assert retried == expected.get("step_attempts", {}), label

    assert runs["fail"].error is not None and "division by zero" in runs["fail"].error["message"]
    assert runs["on-failure"].kind == "on_failure"
    notify = (await upgraded.get_run_trace(runs["on-failure"].id))["spans"][0]
    assert notify["output"] == "told ops about " + runs["fail"].id
    assert runs["cancelled"].cancel_reason == "changed my mind"
    assert runs["rerun"].rerun_of == runs["total-v1"].id
    assert runs["child"].parent_run_id == runs["parent"].id
    parent_trace = await upgraded.get_run_trace(runs["parent"].id)
    assert [child["run_id"] for child in parent_trace["children"]] == [runs["child"].id]
    assert parent_trace["spans"][0]["child_run_id"] == runs["child"].id
    assert runs["sleeper"].wake_at == FAR_FUTURE_EPOCH
    assert runs["total-v2"].event["id"] == ROUTED_EVENT_ID
    assert await upgraded.run_ids_for_event(ROUTED_EVENT_ID) == [runs["total-v2"].id]


async def test_events_and_loops_survive(upgraded: Engine) -> None:
    events = {event.id: event for event in await upgraded.list_events(limit=50)}
    assert len(events) == 3
    name, data, event_id = UNROUTED_EVENT
    assert (events[event_id].name, events[event_id].data) == (name, data)
    assert events[ROUTED_EVENT_ID].data == INPUTS["total-v2"]
    assert all(event.processed_at is not None for event in events.values())
    announced = [event for event in events.values() if event.source_run_id is not None]
    assert [event.data for event in announced] == [INPUTS["total-from-announcer"]]

    [loop] = await upgraded.list_loops()
    assert (loop.skill, loop.cron, loop.timezone, loop.name, loop.catch_up, loop.paused) == (
        LOOP["skill"],
        LOOP["cron"],
        LOOP["timezone"],
        LOOP["name"],
        "none",
        False,
    )
    assert loop.data == LOOP_DATA


async def test_old_runs_go_on_and_old_skills_run_on_the_current_engine(upgraded: Engine) -> None:
    await upgraded.start()
    runs = await _runs_by_label(upgraded)

    await upgraded.send_event("order.approved", {"order": "o-1", "by": "ann"})
    waiter = await finished(upgraded, runs["waiter"].id)
    assert (waiter.status, waiter.output) == ("completed", {"order": "o-1", "approved_by": "ann"})

    await upgraded.send_event("order.approved", {"order": "o-2", "by": "bob"})
    parent = await finished(upgraded, runs["parent"].id)
    assert (parent.status, parent.output) == ("completed", {"child": {"order": "o-2", "approved_by": "bob"}})
    assert (await upgraded.get_run(runs["child"].id)).status == "completed"

    fresh = await upgraded.invoke("order-total", {"label": "after-upgrade", "items": [4, 5]}, wait=True)
    assert (fresh.status, fresh.version, fresh.output) == ("completed", 3, {"total": 27, "version": 3})
    sent = await upgraded.send_event("order.placed", {"label": "by-event", "items": [1]})
    [routed] = sent.run_ids
    assert (await finished(upgraded, routed)).output == {"total": 3, "version": 3}

    rerun = await upgraded.rerun(runs["fail"].id)
    failed_again = await finished(upgraded, rerun.id)
    assert failed_again.status == "failed" and "division by zero" in str(failed_again.error)

    sleeper = await wait_status(upgraded, runs["sleeper"].id, "sleeping")
    assert sleeper.wake_at == FAR_FUTURE_EPOCH
    assert (await upgraded.get_run(runs["cancelled"].id)).status == "cancelled"
