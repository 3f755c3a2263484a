"""Group commit: one write connection per store, and queued writes committed together.

Concurrent runs each wait for their own step to be durable, but the writer commits every write
that queued up meanwhile in one transaction. A write counts as done only once its transaction has
committed. A caller that finds the connection idle commits its own write (and whatever queued up)
on its own thread: at low concurrency a step then costs no hand-off to the writer thread and back.
A batch runs without savepoints; if one write in it fails, the batch is undone and run again with
each write inside its own savepoint, so that the failing write does not undo the others.
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
Item = tuple[WriteFn, "Future[Any] | Settled", bool]
Result = tuple["Future[Any] | Settled", Any, BaseException | None]


class Settled:
    """The outcome of a write that its caller commits on its own thread: a `Future` without
    the lock and condition no other thread will ever wait on."""

    __slots__ = ("_done", "_error", "_value")

    def __init__(self) -> None:
        self._done, self._value, self._error = False, None, None

    def done(self) -> bool:
        return self._done

    def set_result(self, value: Any) -> None:
        self._done, self._value = True, value

    def set_exception(self, error: BaseException) -> None:
        self._done, self._error = True, error

    def result(self) -> Any:
        if not self._done:
            raise StoreUnavailable("the write was not committed")
        if self._error is not None:
            raise self._error
        return self._value


class _OneFailed(Exception):
    """A write in a batch run without savepoints failed: the batch is undone and run again."""


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
        self._busy = threading.Lock()  # held by whichever thread is using the connection
        self._connection: Connection | None = None
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
        if self._busy.acquire(blocking=False):
            future = Settled()
            try:
                if self._closed:
                    raise StoreUnavailable("the store is closed")
                self._commit(self._connect(), [(fn, future, serial), *self._queued()])
            finally:
                self._busy.release()
            return future.result()
        return self.submit(fn, serial=serial).result()

    def close(self) -> None:
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=10)
        self._fail_queued()
        with self._busy:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

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
        while True:
            item = self._queue.get()
            if item is None:
                return
            with self._busy:
                self._commit(self._connect(), [item, *self._queued()])

    def _connect(self) -> Connection:
        """The write connection, opened by the first write (the caller holds `_busy`)."""
        if self._connection is None:
            self._connection = self._engine.connect()
        return self._connection

    def _queued(self) -> list[Item]:
        """The writes queued up meanwhile, to commit with the one in hand. The end-of-queue
        marker stays queued for the writer thread."""
        batch: list[Item] = []
        while len(batch) < MAX_BATCH - 1:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)
                break
            batch.append(item)
        return batch

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

    def _transaction(self, connection: Connection, batch: list[Item]) -> list[Result]:
        if len(batch) == 1:  # its failure is its own: it reaches the caller
            fn, future, _ = batch[0]
            return self._in_transaction(connection, batch, lambda: [(future, fn(connection), None)])
        try:
            return self._in_transaction(connection, batch, lambda: self._together(connection, batch))
        except _OneFailed:  # undone whole: run again, each write in its own savepoint
            return self._in_transaction(
                connection,
                batch,
                lambda: [self._in_savepoint(connection, fn, future) for fn, future, _ in batch],
            )

    def _in_transaction(
        self, connection: Connection, batch: list[Item], writes: Callable[[], list[Result]]
    ) -> list[Result]:
        connection.info.pop(ANNOUNCED, None)
        connection.info[NOTIFIES] = self._backend.notifies
        with connection.begin():
            if any(serial for _, _, serial in batch):
                self._backend.serialize(connection)
            results = writes()
            announced = connection.info.pop(ANNOUNCED, None)
            if announced:
                self._backend.announce(connection, announced)
        return results

    @staticmethod
    def _together(connection: Connection, batch: list[Item]) -> list[Result]:
        results: list[Result] = []
        for fn, future, _ in batch:
            try:
                results.append((future, fn(connection), None))
            except OperationalError:
                raise  # the connection itself is in trouble: fail the whole batch
            except Exception as exc:
                raise _OneFailed from exc
        return results

    @staticmethod
    def _in_savepoint(connection: Connection, fn: WriteFn, future: Future[Any] | Settled) -> Result:
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
