"""Group commit: one thread owns the write connection and commits queued writes together.

Concurrent runs each wait for their own step to be durable, but the writer commits every write
that queued up meanwhile in one transaction, each inside its own savepoint so that one failing
write does not undo the others. A write counts as done only once its transaction has committed.
A write that decides from what it reads across processes asks for `serial`: the batch then takes
the backend's cross-process lock first. A batch that a deadlock or serialization failure undid is
run again as a whole (its writes are functions of the database, so they can be).
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from engine.errors import StoreUnavailable
from engine.sql_backend import SqlBackend, store_error

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_BATCH = 128
TRANSIENT_RETRIES = 8
ANNOUNCED = "stepkeeper.announced"
NOTIFIES = "stepkeeper.notifies"

WriteFn = Callable[[Connection], Any]
Item = tuple[WriteFn, "Future[Any]", bool]


def announce(connection: Connection, kind: str) -> None:
    """Have this write transaction tell other processes, once committed, what it changed."""
    connection.info.setdefault(ANNOUNCED, set()).add(kind)


def announcing(connection: Connection) -> bool:
    """Whether announcements reach other processes (worth a query to decide one)."""
    return bool(connection.info.get(NOTIFIES))


class StoreWriter:
    def __init__(self, engine: Engine, backend: SqlBackend) -> None:
        self._engine = engine
        self._backend = backend
        self._queue: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="stepkeeper-writer", daemon=True)
        self._thread.start()

    def submit(self, fn: WriteFn, *, serial: bool = False) -> Future[Any]:
        future: Future[Any] = Future()
        if self._closed:
            future.set_exception(StoreUnavailable("the store is closed"))
        else:
            self._queue.put((fn, future, serial))
        return future

    def call(self, fn: Callable[[Connection], T], *, serial: bool = False) -> T:
        """Run `fn` in a write transaction and return its result once committed."""
        return self.submit(fn, serial=serial).result()

    def close(self) -> None:
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=10)
        self._fail_queued()

    def _fail_queued(self) -> None:
        """Writes that arrived after close get an error rather than waiting forever."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None and not item[1].done():
                item[1].set_exception(StoreUnavailable("the store is closed"))

    def _loop(self) -> None:
        connection = self._engine.connect()
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                batch = [item]
                while len(batch) < MAX_BATCH:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        self._commit(connection, batch)
                        return
                    batch.append(more)
                self._commit(connection, batch)
        finally:
            connection.close()

    def _commit(self, connection: Connection, batch: list[Item]) -> None:
        for attempt in range(TRANSIENT_RETRIES + 1):
            try:
                results = self._transaction(connection, batch)
                break
            except BaseException as exc:  # the commit failed: nothing in the batch is stored
                if attempt < TRANSIENT_RETRIES and self._backend.is_transient(exc):
                    time.sleep(random.uniform(0, 0.002 * 2**attempt))
                    continue
                error = self._as_store_error(exc)
                for _, future, _ in batch:
                    if not future.done():
                        future.set_exception(error)
                if not isinstance(exc, Exception):
                    raise
                return
        for future, value, error in results:
            if error is None:
                future.set_result(value)
            else:
                future.set_exception(error)

    def _transaction(
        self, connection: Connection, batch: list[Item]
    ) -> list[tuple[Future[Any], Any, BaseException | None]]:
        results: list[tuple[Future[Any], Any, BaseException | None]] = []
        connection.info.pop(ANNOUNCED, None)
        connection.info[NOTIFIES] = self._backend.notifies
        with connection.begin():
            if any(serial for _, _, serial in batch):
                self._backend.serialize(connection)
            if len(batch) == 1:
                fn, future, _ = batch[0]
                results.append((future, fn(connection), None))
            else:
                for fn, future, _ in batch:
                    results.append(self._in_savepoint(connection, fn, future))
            announced = connection.info.pop(ANNOUNCED, None)
            if announced:
                self._backend.announce(connection, announced)
        return results

    @staticmethod
    def _in_savepoint(
        connection: Connection, fn: WriteFn, future: Future[Any]
    ) -> tuple[Future[Any], Any, BaseException | None]:
        savepoint = connection.begin_nested()
        try:
            value = fn(connection)
        except Exception as exc:
            savepoint.rollback()
            if isinstance(exc, OperationalError):
                raise  # the connection itself is in trouble: fail the whole batch
            return future, None, exc
        savepoint.commit()
        return future, value, None

    def _as_store_error(self, exc: BaseException) -> BaseException:
        """A database fault becomes a `StoreUnavailable` that names it (locked, full, I/O)."""
        if isinstance(exc, DBAPIError):
            log.warning("store write failed: %s", exc.orig)
            return store_error(exc, "write", self._backend.busy_seconds)
        return exc
