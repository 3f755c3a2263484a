"""What differs between the store's databases: connections, cross-process locks, wake-ups.

`SqlStore` speaks portable SQLAlchemy Core; a backend supplies the engines it runs on and the
few things SQL itself does not say the same way everywhere. SQLite serializes every write
transaction already (BEGIN IMMEDIATE) and has no notifications, so its hooks do nothing;
PostgreSQL (`engine.postgres`) takes an advisory lock and sends NOTIFY.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from engine.errors import InvalidInput, StoreBusy, StoreFull, StoreUnavailable

# What a write announces to other processes: "work" (runs became due or a slot came free),
# "events" (events stored for the scheduler to route), "loops" (a loop was added, changed or
# deleted).
WORK, EVENTS, LOOPS = "work", "events", "loops"
Listener = Callable[[set[str]], None]


class SqlBackend(Protocol):
    name: str
    notifies: bool  # whether `announce` reaches other processes
    busy_seconds: float | None  # how long a write waits for another's lock before it fails

    def engines(self) -> tuple[Engine, Engine]:
        """(readers, the writer): readers never hold a write lock across statements."""

    def serialize(self, connection: Connection) -> None:
        """Make this write transaction the only one deciding from what it reads, across every
        process on the database (taken before any row lock, so it cannot deadlock with one)."""

    def announce(self, connection: Connection, kinds: set[str]) -> None:
        """Tell other processes, when this transaction commits, what it changed."""

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` with what other processes announced; returns a function that stops."""

    def is_transient(self, error: BaseException) -> bool:
        """True for a failure that retrying the whole transaction cures (a deadlock victim)."""


# SQLite's messages (sqlite3_errstr) and PostgreSQL's SQLSTATEs for the faults a caller can act on.
_BUSY = ("database is locked", "database table is locked")
_FULL = ("database or disk is full", "no space left on device")
_IO = ("disk i/o error",)
_PG_BUSY = ("55P03", "57014")  # lock_not_available, query_canceled (lock_timeout, statement_timeout)
_PG_FULL = ("53100",)  # disk_full


def store_error(error: DBAPIError, action: str, busy_seconds: float | None = None) -> StoreUnavailable:
    """Say which fault refused the store's `action`, and that nothing of it was kept: a write
    that fails is rolled back whole, so the caller may retry it once the fault is gone."""
    text = str(error.orig).strip().splitlines()[0] if str(error.orig).strip() else type(error.orig).__name__
    lowered, sqlstate = (
        text.lower(),
        getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None),
    )
    outcome = "nothing was written" if action == "write" else "nothing was read"
    if any(part in lowered for part in _BUSY) or sqlstate in _PG_BUSY:
        waited = f" (waited {busy_seconds:g} s for it)" if busy_seconds is not None else ""
        return StoreBusy(
            f"the database is locked by another connection or process{waited}; {outcome}: "
            f"retry once it is released ({text})"
        )
    if any(part in lowered for part in _FULL) or sqlstate in _PG_FULL:
        return StoreFull(f"the disk holding the database is full; {outcome}: free space and retry ({text})")
    if any(part in lowered for part in _IO):
        return StoreUnavailable(f"disk I/O error on the database file; {outcome} ({text})")
    return StoreUnavailable(f"the database refused the {action}: {text}")


def backend_for(url: str) -> SqlBackend:
    """The backend for a database URL, or a clear error naming the URLs this build speaks."""
    if url.startswith("sqlite"):
        from engine.sqlite import SqliteBackend

        return SqliteBackend(url)
    if url.startswith(("postgresql", "postgres:")):
        from engine.postgres import PostgresBackend

        return PostgresBackend(url)
    raise InvalidInput(f"unsupported database URL {url!r}: use sqlite:///path or postgresql://user@host/db")
