"""SQLite connections for the store: WAL, durable commits, and the write lock taken up front."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine

BUSY_TIMEOUT_MS = 10_000


def sqlite_engine(url: str, *, writer: bool) -> Engine:
    """An engine for the writer (BEGIN IMMEDIATE) or for readers (autocommit snapshots)."""
    path = url.split("///", 1)[1] if "///" in url else ""
    if path and path != ":memory:":
        Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
    pool = {"pool_size": 1, "max_overflow": 2} if writer else {"pool_size": 16, "max_overflow": 64}
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **pool)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver: writers then BEGIN IMMEDIATE (the write lock
        # up front, no deadlock-prone lock upgrades, working savepoints); readers run each
        # statement on its own WAL snapshot and never take the write lock.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    if writer:

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Connection) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
