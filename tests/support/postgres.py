"""The machine's real PostgreSQL for tests: a fresh schema per test, dropped afterwards.

Set `STEPKEEPER_TEST_POSTGRES_URL` to use another server. Without a server, tests that need one
skip with the reason; under CI (`CI=true`) they fail instead, so CI never passes by skipping.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from engine.postgres import scratch_schema

SERVER_URL = os.environ.get("STEPKEEPER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def unavailable_reason() -> str | None:
    try:
        with psycopg.connect(SERVER_URL, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return f"PostgreSQL at {SERVER_URL} is not reachable ({exc.__class__.__name__}: {exc})"


def require_postgres() -> None:
    reason = unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the PostgreSQL tests (.ci/run starts the server)")
    pytest.skip(reason)


@contextmanager
def fresh_database_url() -> Iterator[str]:
    """A URL whose connections see only a new, empty schema (through `search_path`)."""
    require_postgres()
    with scratch_schema(SERVER_URL) as url:
        yield url


BACKENDS = ("sqlite", "postgresql")


@contextmanager
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A new, empty database on `backend` for one test: a SQLite file or a PostgreSQL schema."""
    if backend == "postgresql":
        with fresh_database_url() as url:
            yield url
    else:
        yield f"sqlite:///{tmp_path / 'stepkeeper.db'}"
