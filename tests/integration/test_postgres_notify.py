"""LISTEN/NOTIFY on PostgreSQL: what one process stores wakes the others at once (on SQLite they
find it at their poll). Each announcement below must arrive, and a store never hears itself."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.ids import new_id
from engine.records import Event, EventRoute, Loop, Run
from engine.sql_store import SqlStore
from tests.support.postgres import database_url

NOW = 1_800_000_000.0


class Heard:
    def __init__(self) -> None:
        self.kinds: list[set[str]] = []
        self.changed = threading.Condition()

    def __call__(self, kinds: set[str]) -> None:
        with self.changed:
            self.kinds.append(kinds)
            self.changed.notify_all()

    def wait_for(self, kind: str, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not any(kind in kinds for kinds in self.kinds):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(left)
            return True

    def clear(self) -> None:
        with self.changed:
            self.kinds.clear()


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[SqlStore, SqlStore]]:
    with database_url("postgresql", tmp_path) as url:
        writer, listener = SqlStore(url), SqlStore(url)
        writer.migrate()
        yield writer, listener
        writer.close()
        listener.close()


def run(**fields: object) -> Run:
    return Run(new_id("run"), "s", 1, "event", "queued", {"name": "e"}, NOW, NOW, wake_at=NOW, **fields)  # type: ignore[arg-type]


def test_another_process_hears_work_events_loops_and_freed_slots(stores: tuple[SqlStore, SqlStore]) -> None:
    writer, listener = stores
    heard, own = Heard(), Heard()
    listener.watch(heard)
    writer.watch(own)
    assert heard.wait_for("work")  # on connecting it looks at everything once
    own.wait_for("work")
    heard.clear()
    own.clear()

    event = Event("e1", "ping", {}, NOW, NOW)
    writer.append_events(
        [event], NOW, plan=lambda reads, stored: [EventRoute("e1", [run(event_id="e1")], [])]
    )
    assert heard.wait_for("work")
    writer.append_events([Event("e2", "ping", {}, NOW, NOW)])  # stored unrouted
    assert heard.wait_for("events")
    loop = Loop("loop_1", "s", "* * * * *", "UTC", {}, "latest", False, NOW + 60, None, NOW, NOW)
    writer.add_loop(loop)
    assert heard.wait_for("loops")

    writer.create_runs([run()])
    [claimed] = [r for r in writer.claim_due_runs("me", NOW, NOW + 30, 10, lambda _: [("s:k", 1)])]
    heard.clear()
    assert writer.finish_run(claimed.id, "me", "completed", NOW)  # its slot is free now
    assert heard.wait_for("work")
    time.sleep(0.3)
    assert own.kinds == []  # a store's own announcements are not echoed back to it
