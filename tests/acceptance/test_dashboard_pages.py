"""The dashboard's pages and actions over real HTTP: skills with versions and a diff, editing and
deleting, loops paused and resumed, events with the runs they started, pagination, and the
refusals (a foreign origin, an unknown run, a bad filter)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from engine import Engine, SqlStore

pytestmark = pytest.mark.slow

V1 = "def handler(ctx, step):\n    return step.run('a', lambda: 1)\n"
V2 = "def handler(ctx, step):\n    return step.run('a', lambda: 2)\n"


async def test_skills_versions_diff_edit_and_delete(dashboard: str, tmp_path: Path) -> None:
    offline = Engine(SqlStore(f"sqlite:///{tmp_path / 'stepkeeper.db'}"))
    await offline.create_skill("calc", V1, description="adds things")
    await offline.update_skill("calc", code=V2)
    origin = {"Origin": dashboard}
    async with httpx.AsyncClient(base_url=dashboard) as http:
        listing = await http.get("/skills")
        assert "calc" in listing.text and "v2" in listing.text and "adds things" in listing.text
        page = await http.get("/skills/calc", params={"a": 1, "b": 2})
        assert page.status_code == 200
        assert "lambda" in page.text and "<span" in page.text  # highlighted code
        diff = page.text.split('id="diff"')[1]
        assert "lambda: 1)" in diff and "lambda: 2)" in diff and "v1" in diff and "v2" in diff
        bad_code = {"code": "def handler(ctx, step:\n"}
        broken = await http.post("/skills/calc/update", data=bad_code, headers=origin)
        assert broken.status_code == 303 and "message=" in broken.headers["location"]
        shown = await http.get(broken.headers["location"])
        assert "line 1" in shown.text  # the compile error, with its position
        saved = await http.post("/skills/calc/update", data={"code": V1}, headers=origin)
        assert saved.status_code == 303
        assert (await offline.get_skill("calc")).version.version == 3
        foreign = await http.post("/skills/calc/delete", headers={"Origin": "http://evil.example"})
        assert foreign.status_code == 403 and (await offline.get_skill("calc")) is not None
        deleted = await http.post("/skills/calc/delete", headers=origin)
        assert deleted.status_code == 303
        assert "calc" not in (await http.get("/skills")).text
    await offline.close()


async def test_loops_pause_and_resume_and_events_show_their_runs(dashboard: str, tmp_path: Path) -> None:
    offline = Engine(SqlStore(f"sqlite:///{tmp_path / 'stepkeeper.db'}"))
    await offline.create_skill("tick", V1, triggers=[{"event": "poke"}])
    loop = await offline.schedule_loop("tick", "0 9 * * 1-5", timezone="Europe/Paris", name="weekday-nine")
    sent = await offline.send_event("poke", {"n": 1})
    async with httpx.AsyncClient(base_url=dashboard, headers={"Origin": dashboard}) as http:
        page = (await http.get("/loops")).text
        assert "weekday-nine" in page and "Europe/Paris" in page and "Pause" in page
        assert (await http.post(f"/loops/{loop.id}/pause")).status_code == 303
        assert (await offline.get_loop(loop.id)).paused is True
        assert "Resume" in (await http.get("/loops")).text
        assert (await http.post(f"/loops/{loop.id}/resume")).status_code == 303
        assert (await offline.get_loop(loop.id)).paused is False
        assert (await http.post(f"/loops/{loop.id}/explode")).status_code == 404
        events = (await http.get("/events")).text
        assert sent.event_ids[0] in events and sent.run_ids[0] in events
    await offline.close()


async def test_pages_paginate_and_refuse_bad_requests(dashboard: str, tmp_path: Path) -> None:
    offline = Engine(SqlStore(f"sqlite:///{tmp_path / 'stepkeeper.db'}"))
    await offline.create_skill("many", V1)
    for _ in range(55):
        await offline.invoke("many")
    async with httpx.AsyncClient(base_url=dashboard) as http:
        first = await http.get("/runs", params={"skill": "many"})
        assert first.text.count('<td><a href="/runs/run_') == 50 and 'id="older"' in first.text
        older = first.text.split('id="older"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
        second = await http.get(older)
        assert second.text.count('<td><a href="/runs/run_') == 5 and 'id="older"' not in second.text
        assert (await http.get("/runs/run_nope")).status_code == 404
        newest = first.text.split('<td><a href="/runs/')[1].split('"')[0]
        otel = (await http.get(f"/runs/{newest}/otel.json")).json()
        assert otel["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["name"] == "run many"
        assert (await http.get("/runs", params={"status": "bogus"})).status_code == 400
        assert (await http.get("/runs", params={"since": "yesterday-ish"})).status_code == 400
        assert (await http.get("/skills/nope")).status_code == 404
        assert (await http.post("/runs/run_nope/cancel")).status_code == 403  # no origin: refused
        rebinding = await http.get("/runs", headers={"Host": "evil.example:8765"})
        assert rebinding.status_code == 400  # a foreign Host is refused on every page
        assert (await http.get("/skills/many", params={"version": "9" * 30})).status_code == 400
        fragment = await http.get("/runs", params={"skill": "many"}, headers={"x-fragment": "1"})
        assert fragment.text.lstrip().startswith('<table id="runs">')
    await offline.close()


async def test_a_steps_logs_are_shown_in_its_own_tab(dashboard: str, tmp_path: Path) -> None:
    offline = Engine(SqlStore(f"sqlite:///{tmp_path / 'stepkeeper.db'}"))
    code = (
        "def handler(ctx, step):\n"
        "    ctx.log.info('before the step')\n"
        "    return step.run('work', work, ctx)\n"
        "def work(ctx):\n"
        "    ctx.log.warning('inside work')\n"
        "    return 1\n"
    )
    await offline.create_skill("chatty", code)
    run = await offline.invoke("chatty")
    async with httpx.AsyncClient(base_url=dashboard) as http:
        for _ in range(100):
            page = (await http.get(f"/runs/{run.id}")).text
            if 'id="run-status">completed' in page:
                break
            await asyncio.sleep(0.1)
        tab = page.split('id="step-work-logs"')[1].split("</div>")[0]
        assert "WARNING inside work" in tab and "before the step" not in tab
        assert "before the step" in page.split('id="logs"')[1]  # the run's log shows every line
    trace = await offline.get_run_trace(run.id)
    assert [(line["step"], line["message"]) for line in trace["logs"]] == [
        (None, "before the step"),
        ("work", "inside work"),
    ]
    await offline.close()
