"""Group commit: writes queued together commit together, and one failing write fails alone."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from pathlib import Path

import pytest
from sqlalchemy import event, text

from engine.records import Run
from engine.sql_events import _restorer
from engine.sql_store import SqlStore
from engine.sqlite import SqliteBackend
from engine.store_writer import StoreWriter


def _store_with_table(tmp_path: Path) -> tuple[SqlStore, str]:
    """A store whose database holds a table `t (k INTEGER PRIMARY KEY)`, and its URL."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    store = SqlStore(url)
    with store.sa_engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (k INTEGER PRIMARY KEY)"))
    return store, url


def _batch_of_inserts(writer: StoreWriter, keys: list[int]) -> list[Future[object]]:
    """Insert `keys` into `t`, one write each, queued while the writer is busy so that they form
    one batch; returns once all of them are done."""
    gate, holding = threading.Event(), threading.Event()
    first = writer.submit(lambda connection: (holding.set(), gate.wait(5)))
    holding.wait(5)
    futures = [writer.submit(lambda c, k=k: c.execute(text(f"INSERT INTO t VALUES ({k})"))) for k in keys]
    gate.set()
    first.result(5)
    for future in futures:
        future.exception(5)
    return futures


def _keys(store: SqlStore) -> list[int]:
    with store.sa_engine.connect() as connection:
        return [row[0] for row in connection.execute(text("SELECT k FROM t ORDER BY k"))]


def test_a_failing_write_in_a_batch_does_not_undo_the_others(tmp_path: Path) -> None:
    store, url = _store_with_table(tmp_path)
    writer = StoreWriter(store.sa_engine, SqliteBackend(url))
    good_1, good_2, bad, last = _batch_of_inserts(writer, [1, 2, 1, 3])  # the second 1 is a duplicate
    for future in [good_1, good_2, last]:
        future.result(5)
    with pytest.raises(Exception, match="UNIQUE"):
        bad.result(5)
    assert _keys(store) == [1, 2, 3]
    writer.close()
    store.close()


class FlakyBackend(SqliteBackend):
    """SQLite, but a `Transient` error counts as a deadlock victim (retried whole)."""

    def is_transient(self, error: BaseException) -> bool:
        return isinstance(error, Transient)


class Transient(Exception):
    pass


def test_a_transient_failure_reruns_the_whole_batch_from_fresh_inputs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    store = SqlStore(url)
    store.migrate()
    writer = StoreWriter(store.sa_engine, FlakyBackend(url))
    run = Run("run_1", "s", 1, "event", "queued", {"name": "e"}, 1.0, 1.0)
    restore = _restorer([run])
    attempts: list[str] = []

    def write(connection: object) -> str:
        restore()
        attempts.append(run.status)  # what this attempt starts from
        run.status = "skipped"  # a decision the attempt marks on its input
        if len(attempts) == 1:
            raise Transient("deadlock detected")
        return run.status

    assert writer.call(write) == "skipped"
    assert attempts == ["queued", "queued"]  # the retry did not start from the undone mark
    writer.close()
    store.close()


def test_a_write_on_an_idle_writer_commits_on_the_callers_thread(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    store = SqlStore(url)
    writer = StoreWriter(store.sa_engine, SqliteBackend(url))
    ran_on: list[int] = []
    writer.call(lambda connection: ran_on.append(threading.get_ident()))
    assert ran_on == [threading.get_ident()]  # no hand-off to the writer thread and back
    writer.close()
    with pytest.raises(Exception, match="closed"):
        writer.call(lambda connection: None)
    store.close()


def test_a_batch_takes_savepoints_only_when_one_of_its_writes_fails(tmp_path: Path) -> None:
    store, url = _store_with_table(tmp_path)
    statements: list[str] = []
    event.listen(store.sa_engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    writer = StoreWriter(store.sa_engine, SqliteBackend(url))
    _batch_of_inserts(writer, [1, 2, 3])
    assert not [s for s in statements if "SAVEPOINT" in s.upper()]
    assert sum("INSERT" in s for s in statements) == 3  # each write ran once
    statements.clear()
    failed = _batch_of_inserts(writer, [4, 1, 5])  # 1 is taken: undone, run again in savepoints
    assert [f.exception() is not None for f in failed] == [False, True, False]
    assert any("SAVEPOINT" in s.upper() for s in statements)
    assert _keys(store) == [1, 2, 3, 4, 5]
    writer.close()
    store.close()
