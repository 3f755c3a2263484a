"""The attack suite: every attempt goes through the real engine path (registration in a worker,
a run in a confined worker process), fails as specified, leaves the host's secrets unread, and
the engine serves the next run."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from engine import CompileFailed, Engine, SkillNotFound
from sandbox.limits import WorkerLimits
from sandbox.process_runner import ProcessRunner
from tests.conftest import EngineFactory, wait_status
from tests.security.attacks import ATTACKS, Attack

FILE_CANARY = "CANARY-file-5f1c9e"
ENV_CANARY = "CANARY-env-8d02b7"
# Tight limits keep the CPU and wall-clock attacks short; the mechanism is the production one.
LIMITS = WorkerLimits(cpu_seconds=2, wall_seconds=5)
PING = "def handler(ctx, step):\n    return step.run('pong', lambda: {'pong': ctx.event['data']['n']})\n"


@pytest.fixture
def secret_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "host-secret.txt"
    path.write_text(FILE_CANARY)
    path.chmod(0o600)
    os.environ["STEPKEEPER_HOST_CANARY"] = ENV_CANARY
    yield path
    del os.environ["STEPKEEPER_HOST_CANARY"]


@pytest.fixture
async def sandboxed(make_engine: EngineFactory, secret_file: Path) -> AsyncIterator[Engine]:
    engine = make_engine(runner=ProcessRunner(LIMITS))
    await engine.start()
    await engine.create_skill("ping", PING)
    yield engine


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
async def test_attack_is_stopped(
    sandboxed: Engine, make_engine: EngineFactory, secret_file: Path, attack: Attack
) -> None:
    if attack.cpu_seconds is not None:
        await sandboxed.stop()  # one engine on the database: this one, with the attack's own limits
        limits = WorkerLimits(cpu_seconds=attack.cpu_seconds, wall_seconds=attack.cpu_seconds * 2)
        sandboxed = make_engine(runner=ProcessRunner(limits))
        await sandboxed.start()
    code = f"SECRET = {str(secret_file)!r}\n\n" + attack.code
    if attack.expect == "compile":
        with pytest.raises(CompileFailed):
            await sandboxed.create_skill("attack", code, config={"retries": 0})
        with pytest.raises(SkillNotFound):
            await sandboxed.get_skill("attack")
    else:
        await sandboxed.create_skill("attack", code, config={"retries": 0})
        started = await sandboxed.invoke("attack", {}, wait=False)
        wanted = "sleeping" if attack.expect == "sleeping" else {"completed", "failed"}
        run = await wait_status(sandboxed, started.id, wanted, timeout=60)
        trace = json.dumps(await sandboxed.get_run_trace(run.id))
        assert FILE_CANARY not in trace and ENV_CANARY not in trace
        if attack.expect in ("completed", "failed"):
            assert run.status == attack.expect, trace[:2000]
        if attack.error:
            assert attack.error in json.dumps(run.error), trace[:2000]
        if attack.expect == "sleeping":  # nothing ran after the suspension
            assert [span["step_id"] for span in json.loads(trace)["spans"]] == ["nap"]
    survivor = await sandboxed.invoke("ping", {"n": attack.name}, wait=True, timeout=30)
    assert (survivor.status, survivor.output) == ("completed", {"pong": attack.name})


def test_the_suite_covers_every_family_with_at_least_fifty_attacks() -> None:
    families = {a.family for a in ATTACKS}
    assert len(ATTACKS) >= 50 and len({a.name for a in ATTACKS}) == len(ATTACKS)
    assert {
        "dunder",
        "getattr",
        "format",
        "frames",
        "shadowing",
        "host-objects",
        "raw-modules",
        "pickle",
        "memory",
        "cpu",
        "recursion",
        "results",
        "after-end",
        "exit",
    } <= families
