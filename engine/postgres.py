"""PostgreSQL for scale-out: psycopg 3 connections, an advisory lock for the writes that decide
from what they read, and LISTEN/NOTIFY so work stored by one process wakes the others at once.

Row-level concurrency is left to PostgreSQL: claims take due runs with `FOR UPDATE SKIP LOCKED`
and step writes lock their run's row, so lease checks see the newest owner. Writes that decide
from counts and earlier rows (routing events through flow-control gates, admitting runs to
concurrency slots, numbering skill versions) hold one transaction-scoped advisory lock, which
makes those decisions the database's, not a process's.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import quote

import psycopg
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError

from engine.sql_backend import EVENTS, LOOPS, WORK

log = logging.getLogger(__name__)

CHANNEL = "stepkeeper"
DECIDING_LOCK = 0x5354_4B50  # the advisory lock key of deciding writes ("STKP")
TRANSIENT_STATES = {"40001", "40P01"}  # serialization failure, deadlock detected
LISTEN_TIMEOUT_S = 1.0
RECONNECT_S = 1.0


def sqlalchemy_url(url: str) -> str:
    """`postgresql://…` (what users write) as the URL of SQLAlchemy's psycopg 3 dialect."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class PostgresBackend:
    name = "postgresql"
    notifies = True
    busy_seconds: float | None = None  # the server's lock_timeout decides (none by default)

    def __init__(self, url: str) -> None:
        self.url = sqlalchemy_url(url)
        self._sender = secrets.token_hex(6)  # tells this store's own notifications apart

    def engines(self) -> tuple[Engine, Engine]:
        connect_args = {"connect_timeout": 10, "application_name": "stepkeeper"}
        readers = create_engine(
            self.url,
            isolation_level="AUTOCOMMIT",
            pool_size=4,
            max_overflow=12,
            pool_pre_ping=True,
            connect_args=connect_args,
        )
        writer = create_engine(
            self.url, pool_size=1, max_overflow=2, pool_pre_ping=True, connect_args=connect_args
        )
        return readers, writer

    def serialize(self, connection: Connection) -> None:
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({DECIDING_LOCK})")

    def announce(self, connection: Connection, kinds: set[str]) -> None:
        payload = f"{self._sender}:{','.join(sorted(kinds))}"  # kinds are fixed words, no quoting
        connection.exec_driver_sql(f"SELECT pg_notify('{CHANNEL}', '{payload}')")

    def listen(self, listener: Callable[[set[str]], None]) -> Callable[[], None]:
        stop = threading.Event()
        thread = threading.Thread(
            target=self._listen_loop, args=(listener, stop), name="stepkeeper-listen", daemon=True
        )
        thread.start()

        def stop_listening() -> None:
            stop.set()
            thread.join(timeout=LISTEN_TIMEOUT_S * 3)

        return stop_listening

    def is_transient(self, error: BaseException) -> bool:
        cause = error.orig if isinstance(error, DBAPIError) else error
        return getattr(cause, "sqlstate", None) in TRANSIENT_STATES

    def _conninfo(self) -> str:
        return make_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False)

    def _listen_loop(self, listener: Callable[[set[str]], None], stop: threading.Event) -> None:
        """Hold a LISTEN connection; reconnect when it drops (a missed notification is made
        good by the scheduler's poll)."""
        while not stop.is_set():
            try:
                with psycopg.connect(self._conninfo(), autocommit=True, connect_timeout=10) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    _tell(listener, {WORK, EVENTS, LOOPS})  # anything sent while we were not listening
                    while not stop.is_set():
                        for note in conn.notifies(timeout=LISTEN_TIMEOUT_S):
                            sender, _, kinds = note.payload.partition(":")
                            if sender != self._sender:
                                _tell(listener, set(kinds.split(",")))
            except psycopg.Error as exc:
                log.warning("LISTEN connection lost (%s); reconnecting", exc)
                stop.wait(RECONNECT_S)


def _tell(listener: Callable[[set[str]], None], kinds: set[str]) -> None:
    try:
        listener(kinds)
    except Exception:  # the listener's trouble must not end the LISTEN thread
        log.exception("a store listener failed")


@contextmanager
def scratch_schema(server_url: str, prefix: str = "sk") -> Iterator[str]:
    """A new, empty schema on a server, dropped on exit; yields a URL whose connections see only
    it (through `search_path`). For tests and benchmarks, which want a fresh database each."""
    schema = f"{prefix}_{secrets.token_hex(6)}"
    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in server_url else "?"
    try:
        yield f"{server_url}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(server_url, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")
