"""The scheduler: an asyncio loop that claims due runs and hands them to activation threads.

Local work starts without delay (in-process wake-ups); work another process stored wakes it
through the store's notifications where the backend has them (PostgreSQL LISTEN/NOTIFY); timers
are found from the store's next wake time; a slow poll is the safety net. Leases are renewed
by a heartbeat; runs whose lease expired, or whose holder on this host has died, go back to
the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from engine.errors import StoreUnavailable
from engine.event_router import route_pending
from engine.executor import Executor
from engine.flow import cancel_overdue
from engine.limits import LEASE_SECONDS
from engine.loops import fire_due_loops
from engine.records import Run
from engine.runtime import Runtime

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
STORE_RETRY_SECONDS = 0.5


def owner_id(nonce: str) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{nonce}"


def _dead_local_owner(owner: str, me: str) -> bool:
    """True for a holder on this host whose process is gone (so its runs need no lease wait)."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit() or owner == me:
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Scheduler:
    def __init__(
        self,
        rt: Runtime,
        executor: Executor,
        *,
        concurrency: int,
        lease_seconds: float = LEASE_SECONDS,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.rt = rt
        self.executor = executor
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self._threads = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="stepkeeper-run")
        self._active: dict[str, asyncio.Future[None]] = {}
        self._wake = asyncio.Event()
        self._events_pending = True
        self._loops_pending = True  # the next loop tick must be read again from the store
        self._next_tick_at: float | None = None
        self._next_overdue_check = 0.0
        self._next_poll = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._finished_listeners: list[asyncio.Event] = []
        self._stopping = False
        self._stop_watching: Callable[[], None] = lambda: None
        self._reserved = 0
        self._reserve_lock = threading.Lock()

    # thread-safe signals -------------------------------------------------------------------

    def wake(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    def events_added(self) -> None:
        self._events_pending = True
        self.wake()

    def loops_changed(self) -> None:
        self._loops_pending = True
        self.wake()

    def heard(self, kinds: set[str]) -> None:
        """Another process announced a change (PostgreSQL NOTIFY): look at once, not at the poll."""
        if "events" in kinds:
            self._events_pending = True
        if "loops" in kinds:
            self._loops_pending = True
        self.wake()

    def claim_locally(self, new_runs: list[Run]) -> list[Run]:
        """Mark as many new runs as there is room for as already claimed by this engine, so
        that once they are stored they start at once, without a claim round trip. Thread-safe;
        call `adopt` with the runs returned after the write. Runs under a concurrency limit may
        be claimed too: the store admits them only if their slots have room, else queues them."""
        if self._stopping:
            return []
        now = self.rt.clock.now()
        free_runs = [run for run in new_runs if not self.executor.must_queue(run)]
        with self._reserve_lock:
            room = self.concurrency - len(self._active) - self._reserved
            chosen = free_runs[: max(0, room)]
            self._reserved += len(chosen)
        for run in chosen:  # wake_at stays: the store needs the queue order if it queues the run
            run.status, run.started_at = "running", now
            run.lease_owner, run.lease_expires_at = self.rt.owner, now + self.lease_seconds
        return chosen

    def adopt(self, chosen: list[Run], stored: set[str]) -> set[str]:
        """Give back the room `claim_locally` reserved for `chosen`, and start those that were
        stored as claimed by this engine (the store may have queued some instead). Thread-safe:
        the activations start from the calling thread; a started run keeps its room reserved
        until the event loop counts it as active. Returns the ids started."""
        loop = self._loop
        starting = [
            run
            for run in chosen
            if run.lease_owner == self.rt.owner and run.status == "running" and run.id in stored
        ]
        if self._stopping or loop is None or loop.is_closed():
            starting = []
        with self._reserve_lock:
            self._reserved -= len(chosen) - len(starting)
        for run in starting:
            future = self._threads.submit(self._execute, run, True)
            loop.call_soon_threadsafe(self._track, run.id, future)  # type: ignore[union-attr]
        return {run.id for run in starting}

    def _track(self, run_id: str, future: Future[None]) -> None:
        """Count a run started by `adopt` as active (on the event loop)."""
        with self._reserve_lock:
            self._reserved -= 1
        self._watch(run_id, asyncio.wrap_future(future))

    def activation_ended(self) -> asyncio.Event:
        """An event set whenever any activation ends (for callers waiting on a result)."""
        event = asyncio.Event()
        self._finished_listeners.append(event)
        return event

    def forget(self, event: asyncio.Event) -> None:
        with contextlib.suppress(ValueError):
            self._finished_listeners.remove(event)

    # lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_watching = self.rt.store.watch(self.heard)
        await self._recover()
        self._tasks = [
            asyncio.create_task(self._claim_loop(), name="stepkeeper-claim"),
            asyncio.create_task(self._heartbeat_loop(), name="stepkeeper-heartbeat"),
        ]

    async def stop(self, grace_seconds: float = 10.0) -> None:
        self._stopping = True
        self._wake.set()
        for task in self._tasks:
            while not task.done():  # cancel until it takes: a cancellation can race a wake-up
                task.cancel()
                await asyncio.wait([task], timeout=0.1)
        self._tasks = []
        self._stop_watching()
        if self._active:
            await asyncio.wait(list(self._active.values()), timeout=grace_seconds)
        now = self.rt.clock.now()
        await asyncio.to_thread(self.rt.store.release_leases, now, owner=self.rt.owner)
        self._threads.shutdown(wait=False)

    @property
    def active_runs(self) -> int:
        return len(self._active)

    # loops ---------------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while not self._stopping:
            try:
                await self._claim_once()
            except StoreUnavailable as exc:
                log.warning("store unavailable, retrying: %s", exc)
                await asyncio.sleep(STORE_RETRY_SECONDS)
            except Exception:
                log.exception("scheduler iteration failed")
                await asyncio.sleep(STORE_RETRY_SECONDS)

    async def _claim_once(self) -> None:
        self._wake.clear()
        store, now = self.rt.store, self.rt.clock.now()
        self._look_at_others()
        if self._events_pending:
            self._events_pending = False
            await asyncio.to_thread(route_pending, store, now)
        await self._fire_loops(now)
        await self._cancel_overdue()  # before claiming: a run past its start timeout never starts
        free = self.concurrency - len(self._active)
        if free > 0:
            claimed = await asyncio.to_thread(
                store.claim_due_runs,
                self.rt.owner,
                now,
                now + self.lease_seconds,
                free,
                self.executor.slots_of,
            )
            for run in claimed:
                self._start(run)
            if len(claimed) == free:
                return  # more may be due: go round again at once
        next_wake = await asyncio.to_thread(store.next_wake_at) if free > 0 else None
        if next_wake is not None and next_wake <= now:
            next_wake = None  # due runs left behind wait for a slot: a run ending wakes us
        timeout = self.poll_seconds
        for due in (next_wake, self._next_tick_at):
            if due is not None:
                timeout = min(timeout, max(0.0, due - self.rt.clock.now()))
        if timeout <= 0 and free > 0:
            return
        await self.rt.clock.wait(self._wake, timeout)

    def _look_at_others(self) -> None:
        """Events and loops that other processes stored are looked for once per poll interval
        of real time, not on every wake-up (a busy engine wakes on every run's end); this
        engine's own changes set the flags at once (`events_added`, `loops_changed`)."""
        now = time.monotonic()
        if now >= self._next_poll:
            self._next_poll = now + self.poll_seconds
            self._events_pending = self._loops_pending = True

    async def _cancel_overdue(self) -> None:
        """Enforce `timeouts`, at most once per poll interval (it reads every live skill)."""
        now = self.rt.clock.now()
        if now >= self._next_overdue_check:
            self._next_overdue_check = now + self.poll_seconds
            await asyncio.to_thread(cancel_overdue, self.rt, now)

    async def _fire_loops(self, now: float) -> None:
        """Fire the loops whose tick has come (the store makes each tick fire once)."""
        if self._loops_pending:
            self._loops_pending = False
            self._next_tick_at = await asyncio.to_thread(self.rt.store.next_loop_fire_at)
        if self._next_tick_at is not None and self._next_tick_at <= now:
            await asyncio.to_thread(fire_due_loops, self.rt, now)
            self._next_tick_at = await asyncio.to_thread(self.rt.store.next_loop_fire_at)

    def _start(self, run: Run) -> None:
        assert self._loop is not None
        self._watch(run.id, asyncio.wrap_future(self._threads.submit(self._execute, run, False)))

    def _watch(self, run_id: str, future: asyncio.Future[None]) -> None:
        self._active[run_id] = future
        future.add_done_callback(lambda _: self._ended(run_id))

    def _execute(self, run: Run, fresh: bool) -> None:
        try:
            self.rt.run_changed(run.id)  # it is running
            self.executor.execute(run, fresh=fresh)
            self.rt.run_changed(run.id)  # it ended, suspended or was requeued
        except Exception:  # the run keeps its lease; it is recovered when the lease expires
            log.exception("activation of run %s failed in the engine", run.id)

    def _ended(self, run_id: str) -> None:
        self._active.pop(run_id, None)
        for listener in self._finished_listeners:
            listener.set()
        self._wake.set()

    async def _heartbeat_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                now = self.rt.clock.now()
                active = list(self._active)
                await asyncio.to_thread(
                    self.rt.store.extend_leases, self.rt.owner, now + self.lease_seconds, active
                )
                await self._recover()
            except StoreUnavailable as exc:
                log.warning("heartbeat could not reach the store: %s", exc)

    async def _recover(self) -> None:
        store, now = self.rt.store, self.rt.clock.now()
        released = await asyncio.to_thread(store.release_leases, now, expired_before=now)
        for owner in await asyncio.to_thread(store.lease_owners):
            if _dead_local_owner(owner, self.rt.owner):
                released += await asyncio.to_thread(store.release_leases, now, owner=owner)
        if released:
            log.info("recovered %d runs from expired or dead lease holders", released)
            self._wake.set()
