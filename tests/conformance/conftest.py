"""The store conformance suite runs against every backend listed here: the embedded SQLite
file and the machine's real PostgreSQL (a fresh schema per test; see `tests/support/postgres`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engine.sql_store import SqlStore
from engine.store import Store
from tests.support.postgres import BACKENDS, database_url


@pytest.fixture(params=BACKENDS)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Store]]:
    """Opens stores on one database (several may be open at once, like several processes)."""
    opened: list[Store] = []
    with database_url(request.param, tmp_path) as url:

        def open_store() -> Store:
            store = SqlStore(url)
            store.migrate()
            opened.append(store)
            return store

        yield open_store
        for store in opened:
            store.close()


@pytest.fixture
def store(store_factory: Callable[[], Store]) -> Store:
    return store_factory()
