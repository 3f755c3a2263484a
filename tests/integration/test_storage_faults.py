"""Storage faults: a database locked by another process, a full disk, a corrupt row.

Each fault must give the caller a specific error rather than a hang or a crash, leave nothing
half-written, and stop mattering once it is gone: the same calls then succeed and the runs that
were in flight finish. Everything is real: another OS process holds the lock, a real tmpfs fills
up, and sqlite3 writes the garbage into the engine's own file.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine import Engine, SqlStore
from engine.errors import CorruptRecord, InvalidInput, StoreBusy, StoreFull, StoreUnavailable
from engine.records import FINAL_STATUSES, Run
from tests.conftest import finished, wait_status
from tests.support.scale import scaled

BUSY_SECONDS = 1.0  # the store's busy timeout in these tests (`?timeout=` in the SQLite URL)
LEASE_SECONDS = 2.0  # a run whose activation lost the store is recovered this soon

STEPS = """
def handler(ctx, step):
    first = step.run("first", lambda: {"n": ctx.event["data"]["n"]})
    step.sleep("pause", ctx.event["data"].get("pause", "1s"))
    second = step.run("second", lambda: first["n"] * 10)
    return {"n": first["n"], "tenfold": second}
"""
OTHER = "def handler(ctx, step):\n    return step.run('only', lambda: 'ok')\n"

LOCKER = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
connection.execute("ROLLBACK")
"""


def _engine(url: str) -> Engine:
    return Engine(SqlStore(url), poll_seconds=0.2, lease_seconds=LEASE_SECONDS, http_allow=[])


@pytest.fixture
async def make(tmp_path: Path) -> AsyncIterator[Any]:
    """Started engines on a database path, closed at the end (before any mount goes away)."""
    built: list[Engine] = []

    async def build(path: Path, busy: float = BUSY_SECONDS) -> Engine:
        engine = _engine(f"sqlite:///{path}?timeout={busy:g}")
        built.append(engine)
        await engine.start()
        return engine

    yield build
    for engine in built:
        await engine.close()


async def _refused(call: Awaitable[Any], error: type[StoreUnavailable], words: str) -> float:
    """The call fails with `error` naming the fault, within a bound (never hangs); its seconds."""
    started = time.monotonic()
    with pytest.raises(error) as info:
        await asyncio.wait_for(call, timeout=30)
    assert info.value.code == "store_unavailable"  # what MCP and HTTP callers see
    assert words in str(info.value) and "nothing was written" in str(info.value)
    return time.monotonic() - started


async def _all_finished(engine: Engine, run_ids: list[str], timeout: float = 30.0) -> list[Run]:
    return [await finished(engine, run_id, timeout) for run_id in run_ids]


def _consistent(path: Path) -> None:
    """What the engine stored holds together: no run without its event, no steps or attempts
    without their run, and the file itself is sound."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        orphans = {
            "runs without their event": "SELECT count(*) FROM runs WHERE trigger = 'event' "
            "AND event_id NOT IN (SELECT id FROM events)",
            "steps without their run": "SELECT count(*) FROM steps WHERE run_id NOT IN (SELECT id FROM runs)",
            "attempts without their run": "SELECT count(*) FROM step_attempts "
            "WHERE run_id NOT IN (SELECT id FROM runs)",
            "versions without their skill": "SELECT count(*) FROM skill_versions "
            "WHERE name NOT IN (SELECT name FROM skills)",
        }
        found = {what: db.execute(query).fetchone()[0] for what, query in orphans.items()}
        assert found == dict.fromkeys(orphans, 0)
        finished_steps = db.execute(
            "SELECT count(*) FROM runs JOIN steps ON steps.run_id = runs.id "
            "WHERE runs.status = 'completed' AND steps.status != 'completed'"
        ).fetchone()[0]
        assert finished_steps == 0


# the database locked by another process -------------------------------------------------------


@pytest.fixture
def locker(tmp_path: Path) -> Iterator[Any]:
    """Start another OS process that holds `BEGIN EXCLUSIVE` on a database until released."""
    holders: list[subprocess.Popen[str]] = []

    def lock(path: Path) -> subprocess.Popen[str]:
        holder = subprocess.Popen(
            [sys.executable, "-c", LOCKER, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        holders.append(holder)
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        return holder

    yield lock
    for holder in holders:
        if holder.poll() is None:
            holder.kill()
        holder.wait()


def _release(holder: subprocess.Popen[str]) -> None:
    assert holder.stdin is not None
    holder.stdin.write("\n")
    holder.stdin.flush()
    assert holder.wait(timeout=10) == 0


async def test_a_database_locked_by_another_process(make: Any, locker: Any, tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    engine = await make(path)
    await engine.create_skill("steps", STEPS, triggers=[{"event": "job.start"}])
    in_flight = [(await engine.invoke("steps", {"n": n, "pause": "1500ms"})).id for n in range(scaled(3, 20))]
    for run_id in in_flight:
        await wait_status(engine, run_id, "sleeping")
    before = await engine.counts()

    holder = locker(path)
    waits = [
        await _refused(engine.send_event("job.start", {"n": 100}), StoreBusy, "locked by another"),
        await _refused(engine.create_skill("other", OTHER), StoreBusy, "locked by another"),
        await _refused(engine.invoke("steps", {"n": 101}), StoreBusy, "locked by another"),
    ]
    assert all(BUSY_SECONDS * 0.9 <= wait < BUSY_SECONDS * 10 for wait in waits), waits
    await asyncio.sleep(LEASE_SECONDS)  # the in-flight runs wake meanwhile, and cannot store a step
    assert await engine.counts() == before  # nothing half-written
    page = await engine.list_runs(function="steps", limit=50)  # reads go on under the lock
    assert {run.id for run in page.runs} == set(in_flight)
    assert (await engine.get_run_trace(in_flight[0]))["spans"][0]["output"] == {"n": 0}

    _release(holder)
    sent = await engine.send_event("job.start", {"n": 100})
    await engine.create_skill("other", OTHER)
    invoked = await engine.invoke("steps", {"n": 101})
    other = await engine.invoke("other", wait=True)
    assert (other.status, other.output) == ("completed", "ok")
    runs = await _all_finished(engine, [*in_flight, *sent.run_ids, invoked.id])
    assert [run.status for run in runs] == ["completed"] * len(runs)
    assert [run.output["tenfold"] for run in runs] == [n * 10 for n in range(len(in_flight))] + [1000, 1010]
    _consistent(path)


@pytest.mark.parametrize("timeout", ["soon", "-1", "7200"])
def test_a_busy_timeout_out_of_range_is_refused(tmp_path: Path, timeout: str) -> None:
    with pytest.raises(InvalidInput, match="timeout must be 0 to 3600 seconds"):
        SqlStore(f"sqlite:///{tmp_path / 'x.db'}?timeout={timeout}")


# the disk full ---------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs of our own (we run as root); unmounted at the end."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        reason = f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}"
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI must run the disk-full test)")
        pytest.skip(reason)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)


def _fill(mount_point: Path) -> None:
    """Take every free byte of the mount with a file of our own."""
    descriptor = os.open(mount_point / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 512, 1):  # down to the last partial page
            while True:
                try:
                    os.write(descriptor, b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    finally:
        os.close(descriptor)
    assert os.statvfs(mount_point).f_bavail == 0


def _truncate_wal(path: Path) -> None:
    """Empty the write-ahead log, so that the next commit must grow it (a WAL that is already
    large takes new commits in place of old frames, without asking the disk for space)."""
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as db:
        busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0
    assert Path(f"{path}-wal").stat().st_size == 0


async def test_a_full_disk(make: Any, small_disk: Path) -> None:
    path = small_disk / "stepkeeper.db"
    engine = await make(path)
    await engine.create_skill("steps", STEPS, triggers=[{"event": "job.start"}])
    pending = [(await engine.send_event("job.start", {"n": n, "pause": "2s"})).run_ids[0] for n in range(3)]
    for run_id in pending:
        await wait_status(engine, run_id, "sleeping")
    _truncate_wal(path)
    _fill(small_disk)
    before = await engine.counts()

    blob = "x" * 100_000
    await _refused(engine.send_event("job.start", {"n": 7, "blob": blob}), StoreFull, "disk holding")
    await _refused(engine.create_skill("other", OTHER), StoreFull, "disk holding")
    await _refused(engine.invoke("steps", {"n": 8}), StoreFull, "disk holding")
    await asyncio.sleep(LEASE_SECONDS)  # the pending runs wake meanwhile, and cannot store a step
    assert await engine.counts() == before
    assert {run.id for run in (await engine.list_runs(limit=50)).runs} == set(pending)  # reads go on
    assert (await engine.get_run_trace(pending[0]))["spans"][0]["output"] == {"n": 0}
    assert (await engine.get_skill("steps")).version.code == STEPS
    _consistent(path)

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    sent = await engine.send_event("job.start", {"n": 7, "blob": blob})
    await engine.create_skill("other", OTHER)
    invoked = await engine.invoke("steps", {"n": 8, "pause": "10ms"})
    runs = await _all_finished(engine, [*pending, *sent.run_ids, invoked.id])
    assert [run.status for run in runs] == ["completed"] * 5
    assert [run.output["tenfold"] for run in runs] == [0, 10, 20, 70, 80]
    assert (await engine.invoke("other", wait=True)).output == "ok"
    _consistent(path)


# a corrupt row ---------------------------------------------------------------------------------


def _corrupt(path: Path, statement: str, *args: Any) -> None:
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as db, db:
        assert db.execute(statement, args).rowcount == 1


async def test_a_corrupt_row_fails_its_run_and_nothing_else(make: Any, tmp_path: Path) -> None:
    path = tmp_path / "corrupt.db"
    engine = await make(path)
    await engine.create_skill("steps", STEPS)
    await engine.create_skill("broken", OTHER)
    runs = {
        name: (await engine.invoke("steps", {"n": n, "pause": "1500ms"})).id
        for n, name in enumerate(["bad-step", "bad-input", "healthy", "healthy-too"])
    }
    for run_id in runs.values():
        await wait_status(engine, run_id, "sleeping")

    _corrupt(
        path, "UPDATE steps SET output = ? WHERE run_id = ? AND key = 'first'", '{"n": 0', runs["bad-step"]
    )
    _corrupt(path, "UPDATE runs SET event = ? WHERE id = ?", "\x00garbage", runs["bad-input"])
    _corrupt(
        path, "UPDATE skill_versions SET code = ? WHERE name = 'broken'", "def handler(ctx, step:\n  ???"
    )

    with pytest.raises(CorruptRecord) as info:  # the trace of the run with the bad step says so
        await engine.get_run_trace(runs["bad-step"])
    assert info.value.code == "corrupt_record"
    assert f"step 'first' of run {runs['bad-step']} is corrupt: steps.output is not valid JSON" in str(
        info.value
    )
    listed = {run.id: run for run in (await engine.list_runs(function="steps", limit=50)).runs}
    assert set(listed) == set(runs.values())  # one bad row does not hide the others
    assert listed[runs["bad-input"]].error["type"] == "CorruptRecord"
    assert "runs.event is not valid JSON" in listed[runs["bad-input"]].error["message"]
    assert (await engine.get_run_trace(runs["healthy"]))["spans"][0]["output"] == {"n": 2}

    ended = {name: await finished(engine, run_id, 30) for name, run_id in runs.items()}
    assert {name: run.status for name, run in ended.items()} == {
        "bad-step": "failed",
        "bad-input": "failed",
        "healthy": "completed",
        "healthy-too": "completed",
    }
    assert ended["bad-step"].error["type"] == "CorruptRecord"
    assert "step 'first'" in ended["bad-step"].error["message"]
    assert ended["bad-input"].error["type"] == "CorruptRecord"
    assert f"run {runs['bad-input']} is corrupt: runs.event" in ended["bad-input"].error["message"]
    assert (ended["healthy"].output, ended["healthy-too"].output) == (
        {"n": 2, "tenfold": 20},
        {"n": 3, "tenfold": 30},
    )
    trace = await engine.get_run_trace(runs["bad-input"])  # still readable, and says what is wrong
    assert trace["run"]["status"] == "failed" and trace["spans"][0]["output"] == {"n": 1}

    broken = await engine.invoke("broken", wait=True)
    assert broken.status == "failed" and broken.error["type"] == "CompileError"
    after = await engine.invoke("steps", {"n": 9, "pause": "10ms"}, wait=True)  # the engine goes on
    assert (after.status, after.output) == ("completed", {"n": 9, "tenfold": 90})
    assert all(run.status in FINAL_STATUSES for run in (await engine.list_runs(limit=50)).runs)
