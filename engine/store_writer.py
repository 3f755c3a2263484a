"""Group commit: one thread owns the write connection and commits queued writes together.

Concurrent runs each wait for their own step to be durable, but the writer commits every write
that queued up meanwhile in one transaction, each inside its own savepoint so that one failing
write does not undo the others. A write counts as done only once its transaction has committed.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from engine.errors import StoreUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_BATCH = 128

WriteFn = Callable[[Connection], Any]


class StoreWriter:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._queue: queue.SimpleQueue[tuple[WriteFn, Future[Any]] | None] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="stepkeeper-writer", daemon=True)
        self._thread.start()

    def submit(self, fn: WriteFn) -> Future[Any]:
        future: Future[Any] = Future()
        if self._closed:
            future.set_exception(StoreUnavailable("the store is closed"))
        else:
            self._queue.put((fn, future))
        return future

    def call(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` in a write transaction and return its result once committed."""
        return self.submit(fn).result()

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

    def _commit(self, connection: Connection, batch: list[tuple[WriteFn, Future[Any]]]) -> None:
        results: list[tuple[Future[Any], Any, BaseException | None]] = []
        try:
            with connection.begin():
                if len(batch) == 1:
                    fn, future = batch[0]
                    results.append((future, fn(connection), None))
                else:
                    for fn, future in batch:
                        results.append(self._in_savepoint(connection, fn, future))
        except BaseException as exc:  # the commit failed: nothing in the batch is stored
            error = _as_store_error(exc)
            for _, future in batch:
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


def _as_store_error(exc: BaseException) -> BaseException:
    if isinstance(exc, DBAPIError):
        log.warning("store write failed: %s", exc.orig)
        return StoreUnavailable(f"the database refused the write: {exc.orig}")
    return exc
