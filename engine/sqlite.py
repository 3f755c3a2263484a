"""SQLite connections for the store: WAL, durable commits, and the write lock taken up front."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url

from engine.errors import InvalidInput
from engine.sql_compiled import execute_driver_sql

BUSY_TIMEOUT_MS = 10_000


def busy_seconds(url: str) -> float:
    """How long a statement waits for another connection's lock before it fails with "database
    is locked": `?timeout=<seconds>` in the URL (the sqlite3 driver's own name), else 10 s."""
    given = make_url(url).query.get("timeout")
    if given is None:
        return BUSY_TIMEOUT_MS / 1000
    try:
        seconds = float(given if isinstance(given, str) else given[-1])
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 3600:
        raise InvalidInput(f"the SQLite URL's timeout must be 0 to 3600 seconds, got {given!r}")
    return seconds


def sqlite_engine(url: str, *, writer: bool) -> Engine:
    """An engine for the writer (BEGIN IMMEDIATE) or for readers (autocommit snapshots)."""
    path = make_url(url).database or ""
    if path and path != ":memory:":
        Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
    pool = {"pool_size": 1, "max_overflow": 2} if writer else {"pool_size": 16, "max_overflow": 64}
    wait = busy_seconds(url)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": wait}, **pool)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver: writers then BEGIN IMMEDIATE (the write lock
        # up front, no deadlock-prone lock upgrades, working savepoints); readers run each
        # statement on its own WAL snapshot and never take the write lock.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={round(wait * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    if writer:

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Connection) -> None:
            execute_driver_sql(connection, "BEGIN IMMEDIATE")  # once per write transaction: no frills

    return engine


class SqliteBackend:
    """The embedded default: one file, writers serialized by SQLite itself, no notifications
    (other processes' work is found by the scheduler's poll)."""

    name = "sqlite"
    notifies = False

    def __init__(self, url: str) -> None:
        self.url = url
        self.busy_seconds: float | None = busy_seconds(url)

    def engines(self) -> tuple[Engine, Engine]:
        return sqlite_engine(self.url, writer=False), sqlite_engine(self.url, writer=True)

    def serialize(self, connection: Connection) -> None:
        """BEGIN IMMEDIATE already made this transaction the only writer."""

    def announce(self, connection: Connection, kinds: set[str]) -> None:
        """No notifications in SQLite: other processes poll."""

    def listen(self, listener: Callable[[set[str]], None]) -> Callable[[], None]:
        return lambda: None

    def is_transient(self, error: BaseException) -> bool:
        return False  # "database is locked" comes only after the busy timeout: no retry cures it
