"""The `stepkeeper` command as a user runs it: the demo, the read-only views, clear errors."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow


def stepkeeper(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mcp_server", "--home", str(home), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_demo_runs_the_three_skills_and_the_views_show_them(tmp_path: Path) -> None:
    demo = stepkeeper(tmp_path, "demo")
    assert demo.returncode == 0, demo.stderr
    assert "infra-health-check v1 [completed]" in demo.stdout
    assert "invoke         triage           completed" in demo.stdout
    assert (
        "notify-oncall (started by event incident.triaged): completed -> posted: deploy of api" in demo.stdout
    )
    assert "page-oncall      completed  (2 attempts)" in demo.stdout  # the pager failed once
    assert "review-skill-performance: completed -> {'incident-triage': {'runs': 1" in demo.stdout
    assert (tmp_path / "stepkeeper.db").exists()

    runs = stepkeeper(tmp_path, "runs", "--status", "completed")
    assert runs.returncode == 0
    assert len(runs.stdout.splitlines()) == 2 + 4  # header, rule, four runs
    skills = stepkeeper(tmp_path, "skills")
    assert [line.split()[0] for line in skills.stdout.splitlines()[2:]] == [
        "incident-triage",
        "infra-health-check",
        "notify-oncall",
        "review-skill-performance",
    ]
    again = stepkeeper(tmp_path, "demo")  # a second demo updates the skills to version 2
    assert again.returncode == 0 and "infra-health-check v2 [completed]" in again.stdout


def test_runs_show_draws_a_tree_and_every_view_has_json(tmp_path: Path) -> None:
    assert stepkeeper(tmp_path, "demo").returncode == 0
    listed = json.loads(stepkeeper(tmp_path, "runs", "--json", "--skill", "infra-health-check").stdout)
    [health] = listed
    assert health["status"] == "completed" and health["function"] == "infra-health-check"
    tree = stepkeeper(tmp_path, "runs", "show", health["run_id"]).stdout.splitlines()
    assert tree[0].startswith(f"{health['run_id']}  infra-health-check v1  completed")
    assert tree[2].startswith("├─ fetch-metrics  [run]  completed  1 attempt")
    assert any(line.startswith("└─ triage  [invoke]  completed") for line in tree)
    table = stepkeeper(tmp_path, "runs", "--since", "1h", "--status", "completed").stdout.splitlines()
    assert table[0].split()[:3] == ["run", "skill", "status"] and len(table) == 2 + 4
    skills = json.loads(stepkeeper(tmp_path, "skills", "--json").stdout)
    assert [s["stats"]["runs"] for s in skills] == [1, 1, 1, 1]
    otel = json.loads(stepkeeper(tmp_path, "trace", health["run_id"], "--otel").stdout)
    spans = otel["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert spans[0]["name"] == "run infra-health-check" and spans[0]["status"]["code"] == 1
    assert {span.get("parentSpanId") for span in spans[1:]} == {spans[0]["spanId"]}
    assert json.loads(stepkeeper(tmp_path, "loops", "--json").stdout) == []
    usage = stepkeeper(tmp_path, "runs", "show")
    assert usage.returncode == 1 and "stepkeeper runs show RUN_ID" in usage.stderr


def test_bad_input_gets_an_exit_code_and_a_message_on_stderr(tmp_path: Path) -> None:
    missing = stepkeeper(tmp_path, "trace", "run_nope")
    assert missing.returncode == 1
    assert missing.stdout == "" and "run 'run_nope' does not exist" in missing.stderr
    status = stepkeeper(tmp_path, "runs", "--status", "bogus")
    assert status.returncode == 1 and "unknown status 'bogus'" in status.stderr
    url = stepkeeper(tmp_path, "--database-url", "mysql://x", "skills")
    assert url.returncode == 2 and "unsupported database URL" in url.stderr
    down = stepkeeper(tmp_path, "--database-url", "postgresql://me:hunter22@127.0.0.1:1/db", "skills")
    assert (
        down.returncode == 1 and "cannot open the database postgresql://me:***@127.0.0.1:1/db" in down.stderr
    )
    assert "hunter22" not in down.stderr and "Traceback" not in down.stderr


async def test_the_loops_view_lists_loops_with_their_next_ticks(tmp_path: Path) -> None:
    from engine import Engine, SqlStore

    engine = Engine(SqlStore(f"sqlite:///{tmp_path / 'stepkeeper.db'}"))
    await engine.create_skill("check", "def handler(ctx, step):\n    return 1\n")
    loop = await engine.schedule_loop("check", "0 9 * * 1-5", timezone="Europe/Paris")
    await engine.update_loop(loop.id, paused=False)
    await engine.close()
    shown = stepkeeper(tmp_path, "loops")
    assert shown.returncode == 0, shown.stderr
    [line] = shown.stdout.splitlines()[2:]  # below the header and its rule
    assert line.startswith(loop.id) and "0 9 * * 1-5" in line and "Europe/Paris" in line
    assert line.count("T08:00:00") + line.count("T07:00:00") == 3  # 09:00 Paris in UTC


def test_demo_serve_keeps_the_dashboard_up_with_its_loops_until_interrupted(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "mcp_server",
        "--home",
        str(tmp_path),
        "demo",
        "--serve",
        "--port",
        str(port),
    ]
    demo = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        page = None
        for _ in range(300):
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/loops", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert page is not None and page.status_code == 200
        assert "demo: health check every minute" in page.text and "demo: weekly review" in page.text
        runs = httpx.get(f"http://127.0.0.1:{port}/runs", params={"skill": "incident-triage"}).text
        assert "completed" in runs
    finally:
        demo.send_signal(signal.SIGINT)
        output, _ = demo.communicate(timeout=30)
    assert demo.returncode == 0 and f"dashboard: http://127.0.0.1:{port}/" in output
    assert stepkeeper(tmp_path, "loops", "--json").stdout.strip() == "[]"  # removed with the demo
