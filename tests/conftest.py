"""Shared fixtures: a real SQLite file per test, real engines, a real loopback HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import pkgutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine import Engine, ManualClock, SqlStore
from engine.records import FINAL_STATUSES, Run
from tests.support.postgres import BACKENDS, database_url
from tests.support.recorder import Recorder


def _import_anyio_eagerly() -> None:
    """pytest rewrites the modules of plugin packages (anyio is one) as they are imported, and
    anyio imports some lazily, from whatever thread first needs them. Two threads parsing at
    once trips a CPython 3.11 bug (gh-106905: "AST constructor recursion depth mismatch"), so
    import them all now, on one thread."""
    import anyio
    import hypothesis  # its pytest plugin imports it lazily, at the session's end

    for module in pkgutil.walk_packages(anyio.__path__, "anyio."):
        with contextlib.suppress(ImportError):  # optional backends (trio) that are not installed
            importlib.import_module(module.name)
    del hypothesis


_import_anyio_eagerly()


@pytest.fixture
def db_url(tmp_path: Path) -> Iterator[str]:
    """A new database per test: a SQLite file, or with `STEPKEEPER_TEST_BACKEND=postgresql` a
    fresh schema on the machine's PostgreSQL (to run the whole suite on that backend)."""
    with database_url(os.environ.get("STEPKEEPER_TEST_BACKEND", "sqlite"), tmp_path) as url:
        yield url


@pytest.fixture(params=BACKENDS)
def shared_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new database on each backend in turn, for tests of what several processes share."""
    with database_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    yield server
    server.close()


EngineFactory = Callable[..., Engine]


@pytest.fixture
async def make_engine(db_url: str, recorder: Recorder) -> AsyncIterator[EngineFactory]:
    """Build engines on the test's database; every one is closed at the end of the test."""
    built: list[Engine] = []

    def build(**options: Any) -> Engine:
        options.setdefault("poll_seconds", 0.2)
        options.setdefault("http_allow", [recorder.allow])
        engine = Engine(SqlStore(db_url), **options)
        built.append(engine)
        return engine

    yield build
    for engine in built:
        await engine.close()


@pytest.fixture
async def engine(make_engine: EngineFactory) -> AsyncIterator[Engine]:
    engine = make_engine()
    await engine.start()
    yield engine


@pytest.fixture
async def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def manual_engine(make_engine: EngineFactory, clock: ManualClock) -> AsyncIterator[Engine]:
    engine = make_engine(clock=clock)
    await engine.start()
    yield engine


async def wait_status(engine: Engine, run_id: str, statuses: set[str] | str, timeout: float = 10.0) -> Run:
    """Poll until the run reaches one of `statuses` (real time; fails the test on timeout)."""
    wanted = {statuses} if isinstance(statuses, str) else statuses
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        run = await engine.get_run(run_id)
        if run.status in wanted:
            return run
        if loop.time() > deadline:
            raise AssertionError(f"run {run_id} is {run.status}, expected {sorted(wanted)}")
        await asyncio.sleep(0.01)


async def finished(engine: Engine, run_id: str, timeout: float = 10.0) -> Run:
    return await wait_status(engine, run_id, set(FINAL_STATUSES), timeout)
