"""What every store must do: the engine relies on each of these behaviours."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest

from engine.errors import InvalidInput, SkillExists, SkillNotFound
from engine.ids import new_id
from engine.records import (
    Event,
    EventRoute,
    LogLine,
    Run,
    RunGate,
    SkillVersion,
    Step,
    StepCommit,
    StepResolution,
)
from engine.store import RouteReads, Store

NOW = 1_800_000_000.0


def version(name: str = "s", triggers: list | None = None) -> SkillVersion:
    return SkillVersion(name, 0, "def handler(ctx, step):\n    pass\n", "", triggers or [], {}, False, NOW)


def run(status: str = "queued", wake_at: float | None = NOW, **fields: object) -> Run:
    return Run(
        id=new_id("run"),
        function="s",
        version=1,
        trigger="invoke",
        status=status,
        event={"name": "e", "data": {}},
        created_at=fields.pop("created_at", NOW),  # type: ignore[arg-type]
        updated_at=NOW,
        wake_at=wake_at,
        **fields,  # type: ignore[arg-type]
    )


def step(run_id: str, key: str, status: str = "completed", seq: int = 0, **fields: object) -> Step:
    return Step(
        run_id=run_id,
        key=key,
        step_id=key,
        op=str(fields.pop("op", "run")),
        seq=seq,
        status=status,
        created_at=NOW,
        **fields,
    )  # type: ignore[arg-type]


def claimed(store: Store, owner: str = "me", now: float = NOW) -> Run:
    [one] = store.claim_due_runs(owner, now, now + 30, 10)
    return one


# skills ------------------------------------------------------------------------------------


def test_skill_versions_are_numbered_and_immutable(store: Store) -> None:
    assert store.add_skill_version(version(), new_skill=True).version == 1
    assert store.add_skill_version(version(), new_skill=False).version == 2
    assert [v.version for v in store.list_skill_versions("s")] == [1, 2]
    assert store.get_skill("s").latest_version == 2
    with pytest.raises(SkillExists):
        store.add_skill_version(version(), new_skill=True)
    with pytest.raises(SkillNotFound):
        store.add_skill_version(version("other"), new_skill=False)


def test_deleted_skill_keeps_versions_and_numbering(store: Store) -> None:
    store.add_skill_version(version(triggers=[{"event": "e"}]), new_skill=True)
    assert store.delete_skill("s", NOW) is True
    assert store.delete_skill("s", NOW) is False
    assert store.get_skill("s") is None and store.live_skill_versions() == []
    assert store.get_skill_version("s", 1) is not None
    assert store.add_skill_version(version(), new_skill=True).version == 2


# events ------------------------------------------------------------------------------------


def test_duplicate_event_ids_are_not_inserted(store: Store) -> None:
    event = Event("e1", "ping", {"a": 1}, NOW, NOW)
    assert store.append_events([event, Event("e2", "ping", {}, NOW, NOW)]) == [True, True]
    assert store.append_events([Event("e1", "ping", {"a": 2}, NOW, NOW)]) == [False]
    assert store.get_events(["e1"])[0].data == {"a": 1}
    assert [e.id for e in store.pending_events(10)] == ["e1", "e2"]


def test_an_event_is_applied_exactly_once(store_factory: Callable[[], Store]) -> None:
    first, second = store_factory(), store_factory()
    first.append_events([Event("e1", "ping", {}, NOW, NOW)])
    results: list[bool] = []
    barrier = threading.Barrier(2)

    def apply(store: Store) -> None:
        barrier.wait()
        results.extend(store.apply_events([EventRoute("e1", [run(event_id="e1")], [])], NOW))

    threads = [threading.Thread(target=apply, args=(s,)) for s in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, True]
    assert len(first.runs_for_event("e1")) == 1
    assert first.pending_events(10) == []


def test_a_rate_limit_holds_across_processes_routing_at_once(store_factory: Callable[[], Store]) -> None:
    """Four processes route 20 events each, at once, for a skill limited to 5 runs per key and
    hour: 5 runs are stored to start and 75 as skipped (the gate reads what others stored)."""
    stores = [store_factory() for _ in range(4)]
    barrier = threading.Barrier(len(stores))

    def route(index: int, store: Store) -> None:
        barrier.wait()
        for n in range(20):
            store.append_events([Event(f"e{index}-{n}", "ping", {}, NOW, NOW)], NOW, plan=gated)

    def gated(reads: RouteReads, stored: list[Event]) -> list[EventRoute]:
        new = run(event_id=stored[0].id)  # planned afresh if a deadlock undoes the transaction
        gate = RunGate(new.id, "rate_limit", "s:k", window=3600, limit=5)
        return [EventRoute(stored[0].id, [new], [], gates=[gate])]

    threads = [threading.Thread(target=route, args=pair) for pair in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    statuses = Counter(r.status for r in stores[0].list_runs(function="s", limit=100).runs)
    assert statuses == {"queued": 5, "skipped": 75}


def test_a_plan_routes_the_new_events_in_their_transaction(store: Store) -> None:
    """With `plan`, the store stores the events, then asks for the routes of those it stored
    (not of a duplicate id), reading what that transaction sees, and applies them."""
    store.add_skill_version(version(triggers=[{"event": "ping"}]), new_skill=True)
    store.append_events([Event("old", "ping", {}, NOW, NOW)], NOW, plan=lambda reads, stored: [])
    asked: list[list[str]] = []

    def plan(reads: RouteReads, stored: list[Event]) -> list[EventRoute]:
        asked.append([event.id for event in stored])
        assert [skill.name for skill in reads.live_skill_versions()] == ["s"]
        assert reads.waits_for({"ping"}) == [] and reads.unfinished_runs("s", 10) == []
        return [EventRoute(event.id, [run(event_id=event.id)], []) for event in stored]

    events = [Event("old", "ping", {}, NOW, NOW), Event("new", "ping", {}, NOW, NOW)]
    assert store.append_events(events, now=NOW, plan=plan) == [False, True]
    assert asked == [["new"]]
    assert len(store.runs_for_event("new")) == 1 and store.runs_for_event("old") == []
    assert store.pending_events(10) == []  # stored already routed
    assert store.append_events([Event("new", "ping", {}, NOW, NOW)], now=NOW, plan=plan) == [False]
    assert asked == [["new"]]  # nothing new: no plan


def test_live_skill_versions_follow_other_processes(store_factory: Callable[[], Store]) -> None:
    """Versions read once may be kept (they never change), but which version is live is read
    each time: a skill added, updated or deleted by another process shows at once."""
    first, second = store_factory(), store_factory()
    assert first.live_skill_versions() == []
    second.add_skill_version(version(triggers=[{"event": "a"}]), new_skill=True)
    assert [v.triggers for v in first.live_skill_versions()] == [[{"event": "a"}]]
    second.add_skill_version(version(triggers=[{"event": "b"}]), new_skill=False)
    assert [(v.version, v.triggers) for v in first.live_skill_versions()] == [(2, [{"event": "b"}])]
    second.delete_skill("s", NOW)
    assert first.live_skill_versions() == []


def test_waits_are_found_by_event_name_and_resolved_once(store: Store) -> None:
    waiting = run(status="waiting", wake_at=None)
    store.create_runs(
        [waiting], [step(waiting.id, "w", "waiting", op="wait_for_event", wait_event="go", wait_if="true")]
    )
    [wait] = store.waits_for({"go", "other"})
    assert (wait.run_id, wait.key, wait.condition) == (waiting.id, "w", "true")
    store.append_events([Event("e1", "go", {}, NOW, NOW), Event("e2", "go", {}, NOW, NOW)])
    resolution = StepResolution(waiting.id, "w", "completed", output={"name": "go"})
    late = StepResolution(waiting.id, "w", "completed", output="second")
    assert store.apply_events([EventRoute("e1", [], [resolution]), EventRoute("e2", [], [late])], NOW) == [
        True,
        True,
    ]
    assert store.apply_events([EventRoute("e1", [run()], [])], NOW) == [False]  # already routed
    [resolved] = store.load_steps(waiting.id)
    assert resolved.status == "completed" and resolved.output == {"name": "go"}
    assert store.get_run(waiting.id).status == "queued"
    assert store.waits_for({"go"}) == []


# runs --------------------------------------------------------------------------------------


def test_claims_take_due_runs_in_wake_order_only(store: Store) -> None:
    late, early, future = run(wake_at=NOW - 1), run(wake_at=NOW - 5), run(wake_at=NOW + 60)
    store.create_runs([late, early, future])
    got = store.claim_due_runs("me", NOW, NOW + 30, 10)
    assert [r.id for r in got] == [early.id, late.id]
    assert all(r.status == "running" and r.lease_owner == "me" for r in got)
    assert store.claim_due_runs("other", NOW, NOW + 30, 10) == []
    assert store.next_wake_at() == NOW + 60


def test_concurrent_claimants_never_share_a_run(store_factory: Callable[[], Store]) -> None:
    stores = [store_factory() for _ in range(4)]
    stores[0].create_runs([run() for _ in range(200)])
    taken: dict[str, list[str]] = {}
    barrier = threading.Barrier(len(stores))

    def claim(index: int, store: Store) -> None:
        barrier.wait()
        owner = f"owner-{index}"
        taken[owner] = []
        while batch := store.claim_due_runs(owner, NOW, NOW + 30, 7):
            taken[owner].extend(r.id for r in batch)

    threads = [threading.Thread(target=claim, args=pair) for pair in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [run_id for ids in taken.values() for run_id in ids]
    assert len(everything) == 200 == len(set(everything))


def test_concurrent_claimants_share_a_concurrency_slot_limit(store_factory: Callable[[], Store]) -> None:
    """Four processes claim and finish 120 runs that share one slot of capacity 3: at no time
    do more than 3 hold it (the store decides, not a process's memory)."""
    stores = [store_factory() for _ in range(4)]
    stores[0].create_runs([run() for _ in range(120)])
    lock, holding, most = threading.Lock(), set(), [0]
    done: list[str] = []
    barrier = threading.Barrier(len(stores))

    def slots_of(_: Run) -> list[tuple[str, int]]:
        return [("s:key", 3)]

    def work(index: int, store: Store) -> None:
        barrier.wait()
        owner = f"owner-{index}"
        while len(done) < 120:
            got_runs = store.claim_due_runs(owner, NOW, NOW + 30, 3, slots_of)
            if not got_runs:  # as a scheduler does, wait before asking again: SQLite's busy
                time.sleep(0.002)  # handler is unfair to a writer that waits among hot loops
            for got in got_runs:
                with lock:
                    holding.add(got.id)
                    most[0] = max(most[0], len(holding))
                time.sleep(0.02)  # hold the slot a while, as a running run does
                with lock:  # leave the slot before the store frees it, so `holding` never lags
                    holding.discard(got.id)
                    done.append(got.id)
                assert store.finish_run(got.id, owner, "completed", NOW)

    threads = [threading.Thread(target=work, args=pair) for pair in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(done) == sorted(set(done)) and len(done) == 120
    assert 1 <= most[0] <= 3


def test_step_commits_need_the_lease(store: Store) -> None:
    store.create_runs([run()])
    mine = claimed(store)
    assert store.commit_step("me", StepCommit(mine.id, step(mine.id, "a", output=1)), NOW)
    assert not store.commit_step("thief", StepCommit(mine.id, step(mine.id, "b")), NOW)
    assert [s.key for s in store.load_steps(mine.id)] == ["a"]
    assert store.load_steps(mine.id)[0].output == 1


def test_a_step_commit_is_atomic_with_its_events_runs_and_suspension(store: Store) -> None:
    store.create_runs([run()])
    mine = claimed(store)
    child = run(parent_run_id=mine.id, parent_step_key="c")
    commit = StepCommit(
        mine.id,
        step(mine.id, "c", "waiting", op="invoke", child_run_id=child.id),
        new_events=[Event("sent-1", "x", {}, NOW, NOW)],
        new_runs=[child],
        suspend=("waiting", None),
    )
    assert store.commit_step("me", commit, NOW)
    parent = store.get_run(mine.id)
    assert parent.status == "waiting" and parent.lease_owner is None
    assert store.children(mine.id)[0].id == child.id
    assert store.get_events(["sent-1"])[0].name == "x"


def test_finishing_a_child_resolves_the_parent_step(store: Store) -> None:
    parent = run(status="waiting", wake_at=None)
    child = run(parent_run_id=parent.id, parent_step_key="c")
    store.create_runs([parent, child], [step(parent.id, "c", "waiting", op="invoke", child_run_id=child.id)])
    mine = claimed(store)
    assert mine.id == child.id
    resolution = StepResolution(parent.id, "c", "completed", output=42)
    assert store.finish_run(child.id, "me", "completed", NOW, output={"r": 42}, resolution=resolution)
    assert store.get_run(child.id).output == {"r": 42}
    assert store.load_steps(parent.id)[0].output == 42
    assert store.get_run(parent.id).status == "queued"
    assert not store.finish_run(child.id, "me", "failed", NOW)  # already final


def test_cancel_touches_only_live_runs(store: Store) -> None:
    live, done = run(), run(status="completed", wake_at=None)
    store.create_runs([live, done])
    assert store.cancel_runs([live.id, done.id], "stop", NOW, None) == [live.id]
    assert store.get_run(live.id).status == "cancelled"
    assert store.get_run(done.id).status == "completed"


def test_due_sleeps_end_and_waits_time_out(store: Store) -> None:
    sleeping = run(status="sleeping", wake_at=NOW)
    store.create_runs(
        [sleeping],
        [
            step(sleeping.id, "nap", "sleeping", 0, op="sleep", wake_at=NOW - 1),
            step(sleeping.id, "w", "waiting", 1, op="wait_for_event", wait_event="e", wake_at=NOW - 1),
            step(sleeping.id, "i", "waiting", 2, op="invoke", wake_at=NOW - 1),
            step(sleeping.id, "later", "sleeping", 3, op="sleep", wake_at=NOW + 100),
        ],
    )
    assert store.resolve_due_steps(sleeping.id, NOW) == 3
    states = {s.key: (s.status, s.output, (s.error or {}).get("type")) for s in store.load_steps(sleeping.id)}
    assert states == {
        "nap": ("completed", None, None),
        "w": ("completed", None, None),
        "i": ("failed", None, "TimeoutError"),
        "later": ("sleeping", None, None),
    }


def test_expired_and_dead_owner_leases_are_released(store: Store) -> None:
    store.create_runs([run(), run()])
    store.claim_due_runs("a", NOW, NOW + 10, 1)
    store.claim_due_runs("b", NOW, NOW + 100, 1)
    assert sorted(store.lease_owners()) == ["a", "b"]
    a_run = store.list_runs(status="running").runs
    assert store.extend_leases("a", NOW + 20, [r.id for r in a_run]) == 1  # only a's run is a's
    assert store.release_leases(NOW + 50, expired_before=NOW + 50) == 1
    assert store.release_leases(NOW + 50, owner="b") == 1
    assert store.lease_owners() == []
    assert len(store.claim_due_runs("c", NOW + 50, NOW + 80, 10)) == 2


def test_requeue_and_suspend_give_the_run_back(store: Store) -> None:
    store.create_runs([run()])
    mine = claimed(store)
    assert store.requeue_run(mine.id, "me", NOW + 5, 1, NOW)
    again = store.get_run(mine.id)
    assert (again.status, again.wake_at, again.attempt, again.lease_owner) == ("queued", NOW + 5, 1, None)
    assert not store.suspend_run(mine.id, "me", "sleeping", NOW + 9, NOW)  # not ours any more


def test_list_runs_filters_and_pages_newest_first(store: Store) -> None:
    runs = [run(created_at=NOW + i) for i in range(7)]
    runs.append(run(status="completed", wake_at=None, created_at=NOW + 100))
    store.create_runs(runs)
    page = store.list_runs(limit=3)
    assert [r.created_at for r in page.runs] == [NOW + 100, NOW + 6, NOW + 5]
    seen = [r.id for r in page.runs]
    while page.next_cursor:
        page = store.list_runs(limit=3, cursor=page.next_cursor)
        seen.extend(r.id for r in page.runs)
    assert len(seen) == 8 == len(set(seen))
    assert [r.status for r in store.list_runs(status="completed").runs] == ["completed"]
    assert len(store.list_runs(since=NOW + 3, until=NOW + 6).runs) == 3
    assert store.list_runs(function="nobody").runs == []
    with pytest.raises(InvalidInput):
        store.list_runs(cursor="not-a-cursor")


def test_logs_are_kept_in_order(store: Store) -> None:
    store.create_runs([run()])
    store.append_logs([LogLine("r1", NOW, "info", "one"), LogLine("r1", NOW, "error", "two")])
    store.append_logs([LogLine("r1", NOW, "info", "three")])
    store.create_runs([run()])  # a later write: earlier queued logs are committed before it
    assert [line.message for line in store.load_logs("r1")] == ["one", "two", "three"]


def test_a_closed_store_refuses_writes_at_once(store_factory: Callable[[], Store]) -> None:
    from engine.errors import StoreUnavailable

    store = store_factory()
    store.create_runs([run()])
    store.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        store.create_runs([run()])


# concurrency slots ---------------------------------------------------------------------------


def by_key(item: Run) -> list[tuple[str, int]]:
    return [(f"s/0/{item.event['data']['key']}", 2)]


def keyed(key: str, created: float) -> Run:
    item = run(created_at=created)
    item.event = {"name": "e", "data": {"key": key}}
    return item


def test_claims_admit_runs_only_while_their_slots_have_room(store: Store) -> None:
    a = [keyed("a", NOW + n) for n in range(4)]
    b = [keyed("b", NOW + n) for n in range(1)]
    store.create_runs([*a, b[0]])
    first = store.claim_due_runs("me", NOW, NOW + 30, 10, by_key)
    assert [r.id for r in first] == [a[0].id, b[0].id, a[1].id]  # two of "a" (oldest first), one "b"
    assert store.claim_due_runs("other", NOW, NOW + 30, 10, by_key) == []  # slots are shared
    store.finish_run(a[0].id, "me", "completed", NOW + 1, output=1)
    [next_a] = store.claim_due_runs("other", NOW + 1, NOW + 31, 10, by_key)
    assert next_a.id == a[2].id  # FIFO within the key
    assert store.suspend_run(a[1].id, "me", "sleeping", NOW + 100, NOW + 1)  # sleeping holds none
    [after] = store.claim_due_runs("other", NOW + 1, NOW + 31, 10, by_key)
    assert after.id == a[3].id


def test_the_backlog_counts_queued_runs_and_unrouted_events(store: Store) -> None:
    """What back-pressure limits: work accepted but not started, and nothing else."""
    assert store.backlog_size() == 0
    store.add_skill_version(version(), new_skill=True)
    store.create_runs([run(), run(), run(status="sleeping", wake_at=NOW + 60)])
    store.append_events([Event("unrouted", "ping", {}, NOW, NOW)])
    routed = Event("routed", "ping", {}, NOW, NOW)
    store.append_events([routed], NOW, plan=lambda reads, stored: [])  # stored routed, starting nothing
    assert store.backlog_size() == 3  # two queued runs and the one event not yet routed
