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

from engine.errors import InvalidInput

# What a write announces to other processes: "work" (runs became due or a slot came free),
# "events" (events stored for the scheduler to route), "loops" (a loop was added, changed or
# deleted).
WORK, EVENTS, LOOPS = "work", "events", "loops"
Listener = Callable[[set[str]], None]


class SqlBackend(Protocol):
    name: str
    notifies: bool  # whether `announce` reaches other processes

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


def backend_for(url: str) -> SqlBackend:
    """The backend for a database URL, or a clear error naming the URLs this build speaks."""
    if url.startswith("sqlite"):
        from engine.sqlite import SqliteBackend

        return SqliteBackend(url)
    if url.startswith(("postgresql", "postgres:")):
        from engine.postgres import PostgresBackend

        return PostgresBackend(url)
    raise InvalidInput(f"unsupported database URL {url!r}: use sqlite:///path or postgresql://user@host/db")
