"""The store conformance suite runs against every backend listed here.

A new backend (PostgreSQL, issue 8) adds itself to `BACKENDS` with a factory that returns a
fresh, migrated store; every test in this folder then runs against it too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engine.sql_store import SqlStore
from engine.store import Store


def _sqlite(tmp_path: Path) -> SqlStore:
    return SqlStore(f"sqlite:///{tmp_path / 'conformance.db'}")


BACKENDS: dict[str, Callable[[Path], Store]] = {"sqlite": _sqlite}


@pytest.fixture(params=sorted(BACKENDS))
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Store]]:
    """Opens stores on one database (several may be open at once, like several processes)."""
    opened: list[Store] = []

    def open_store() -> Store:
        store = BACKENDS[request.param](tmp_path)
        store.migrate()
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        store.close()


@pytest.fixture
def store(store_factory: Callable[[], Store]) -> Store:
    return store_factory()
