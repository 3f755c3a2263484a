"""The `stepkeeper` command as a user runs it: the demo, the read-only views, clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
    assert (tmp_path / "stepkeeper.db").exists()

    runs = stepkeeper(tmp_path, "runs", "--status", "completed")
    assert runs.returncode == 0
    assert len(runs.stdout.splitlines()) == 3
    skills = stepkeeper(tmp_path, "skills")
    assert [line.split()[0] for line in skills.stdout.splitlines()] == [
        "incident-triage",
        "infra-health-check",
        "notify-oncall",
    ]
    again = stepkeeper(tmp_path, "demo")  # a second demo updates the skills to version 2
    assert again.returncode == 0 and "infra-health-check v2 [completed]" in again.stdout


def test_bad_input_gets_an_exit_code_and_a_message_on_stderr(tmp_path: Path) -> None:
    missing = stepkeeper(tmp_path, "trace", "run_nope")
    assert missing.returncode == 1
    assert missing.stdout == "" and "run 'run_nope' does not exist" in missing.stderr
    status = stepkeeper(tmp_path, "runs", "--status", "bogus")
    assert status.returncode == 1 and "unknown status 'bogus'" in status.stderr
    url = stepkeeper(tmp_path, "--database-url", "mysql://x", "skills")
    assert url.returncode == 2 and "unsupported database URL" in url.stderr
