"""SQLite connections for the store: WAL, durable commits, and the write lock taken up front."""

from __future__ import annotations

from collections.abc import Callable
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


class SqliteBackend:
    """The embedded default: one file, writers serialized by SQLite itself, no notifications
    (other processes' work is found by the scheduler's poll)."""

    name = "sqlite"
    notifies = False

    def __init__(self, url: str) -> None:
        self.url = url

    def engines(self) -> tuple[Engine, Engine]:
        return sqlite_engine(self.url, writer=False), sqlite_engine(self.url, writer=True)

    def serialize(self, connection: Connection) -> None:
        """BEGIN IMMEDIATE already made this transaction the only writer."""

    def announce(self, connection: Connection, kinds: set[str]) -> None:
        """No notifications in SQLite: other processes poll."""

    def listen(self, listener: Callable[[set[str]], None]) -> Callable[[], None]:
        return lambda: None

    def is_transient(self, error: BaseException) -> bool:
        return False
