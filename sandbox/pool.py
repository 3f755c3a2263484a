"""The engine side of the worker processes: starts the zygote and hands out pre-forked workers.

`acquire()` returns a confined worker that is already waiting for its command, and asks the
zygote for a replacement, so `warm` workers are always ready. A worker whose activation ended
cleanly may be parked (`park`) and serve the next activation of the same skill version
(`take_parked`), until it has used a little of its limits; any other worker is ended
(`release`). The pool restarts the zygote if it ever goes away.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import asdict, dataclass
from pathlib import Path

from sandbox.channel import Channel
from sandbox.limits import (
    MAX_MESSAGE_BYTES,
    MAX_PARKED_WORKERS,
    REUSE_CPU_SECONDS,
    REUSE_MAX_ACTIVATIONS,
    REUSE_MAX_RSS_BYTES,
    WorkerLimits,
)

log = logging.getLogger(__name__)
WORKER_ENTRY = "sandbox.worker:serve"
ACQUIRE_TIMEOUT_SECONDS = 10.0
_PROJECT_ROOT = str(Path(__file__).resolve().parent.parent)
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


class PoolUnavailable(RuntimeError):
    """No worker could be had: the zygote did not start or keeps dying."""


@dataclass(frozen=True)
class ExitStatus:
    signal: int | None
    code: int | None

    def describe(self) -> str:
        if self.signal is not None:
            return f"was killed by {signal.Signals(self.signal).name}"
        return f"exited with code {self.code}"


class Worker:
    """One confined worker process and the engine's end of its channel."""

    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid = pid
        self.channel = Channel(sock, MAX_MESSAGE_BYTES)
        self._pidfd = _open_pidfd(pid)
        self._stat = _open_stat(pid)  # read again before each reuse: what the kernel counts
        self.served = 0  # activations run to an outcome

    def reusable(self) -> bool:
        """Whether this worker may be parked for another activation: it is alive and has used
        little of its CPU and memory limits (as the kernel counts). Whether it left anything
        unread on its channel is checked when it is taken (`ProcessRunner._parked_worker`)."""
        if self._pidfd is None or self._stat is None or self.served >= REUSE_MAX_ACTIVATIONS:
            return False
        try:
            fields = os.pread(self._stat, 1024, 0).decode().rsplit(")", 1)[1].split()
        except OSError:
            return False
        cpu_seconds = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime + stime
        rss_bytes = int(fields[21]) * _PAGE_BYTES
        alive = fields[0] not in ("Z", "X")
        return alive and cpu_seconds < REUSE_CPU_SECONDS and rss_bytes < REUSE_MAX_RSS_BYTES

    def kill(self) -> None:
        """End the process (race-free through its pidfd) and close the channel."""
        if self._pidfd is not None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            os.close(self._pidfd)
            self._pidfd = None
        if self._stat is not None:
            os.close(self._stat)
            self._stat = None
        self.channel.close()


def _open_stat(pid: int) -> int | None:
    try:
        return os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:  # gone already
        return None


def _open_pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:  # died while confining itself; its exit report says why
        return None


class WorkerPool:
    def __init__(self, limits: WorkerLimits | None = None, warm: int = 2, entry: str = WORKER_ENTRY) -> None:
        self.limits = limits or WorkerLimits()
        self.warm = max(1, warm)
        self.entry = entry
        self._spares: queue.Queue[Worker] = queue.Queue()
        self._exits: dict[int, ExitStatus] = {}
        self._exited = threading.Condition()
        self._lock = threading.RLock()  # start() asks for the first workers while holding it
        self._control: socket.socket | None = None
        self._zygote: subprocess.Popen[bytes] | None = None
        self._closed = False
        self._pending = 0  # forks asked for and not yet arrived
        self._waiting = 0  # callers of acquire() waiting for a worker
        self._parked: OrderedDict[Hashable, list[Worker]] = OrderedDict()  # idle, by skill version
        self._parked_count = 0

    # lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._zygote is None or self._zygote.poll() is not None:
                self._start_zygote()

    def _start_zygote(self) -> None:
        if self._closed:
            raise PoolUnavailable("the worker pool is closed")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        bootstrap = (
            f"import sys; sys.path.insert(0, {_PROJECT_ROOT!r}); "
            "from sandbox.zygote import main; main(sys.argv[1:])"
        )
        self._zygote = subprocess.Popen(
            [
                sys.executable,
                "-I",
                "-c",
                bootstrap,
                str(theirs.fileno()),
                self.entry,
                json.dumps(asdict(self.limits)),
            ],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # stdout may be the MCP stdio channel: never write there
            env={"LANG": "C.UTF-8"},  # no secrets, no configuration: the zygote needs none
        )
        theirs.close()
        self._control = ours
        threading.Thread(
            target=self._read_control, args=(ours,), name="stepkeeper-zygote", daemon=True
        ).start()
        self._pending = 0
        self._top_up(self.warm)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._control is not None:
                self._control.close()  # the zygote sees the end of the stream and kills its workers
            zygote, self._zygote = self._zygote, None
        while True:
            try:
                self._spares.get_nowait().kill()
            except queue.Empty:
                break
        parked = self.parked_workers()
        with self._lock:
            self._parked.clear()
            self._parked_count = 0
        for worker in parked:
            worker.kill()
        if zygote is not None:
            try:
                zygote.wait(timeout=5)
            except subprocess.TimeoutExpired:
                zygote.kill()
                zygote.wait()

    # workers -------------------------------------------------------------------------------

    def acquire(self) -> Worker:
        """A ready worker; when demand outruns the spares, forks are asked for at once."""
        self.start()
        with self._lock:
            self._waiting += 1
            self._top_up(self._waiting)
        try:
            return self._spares.get(timeout=ACQUIRE_TIMEOUT_SECONDS)
        except queue.Empty:
            raise PoolUnavailable(
                f"no sandbox worker became ready within {ACQUIRE_TIMEOUT_SECONDS} s"
            ) from None
        finally:
            with self._lock:
                self._waiting -= 1

    def release(self, worker: Worker) -> None:
        """End a worker's process and restore the spares. In steady use the replacement is
        forked only now, so the fork does not compete with the activation it would serve."""
        worker.kill()
        with self._lock:
            self._top_up(self.warm + self._waiting)

    def take_parked(self, key: Hashable) -> Worker | None:
        """An idle worker that last served `key` (a skill version), if one is parked."""
        with self._lock:
            workers = self._parked.get(key)
            if not workers:
                return None
            worker = workers.pop()
            if not workers:
                del self._parked[key]
            self._parked_count -= 1
            return worker

    def park(self, worker: Worker, key: Hashable) -> None:
        """Keep a worker whose activation ended cleanly for the next activation of `key`; the
        workers parked longest ago make room (ended) when too many are parked."""
        evicted: list[Worker] = []
        with self._lock:
            if self._closed:
                evicted.append(worker)
            else:
                self._parked.setdefault(key, []).append(worker)
                self._parked.move_to_end(key)
                self._parked_count += 1
                while self._parked_count > MAX_PARKED_WORKERS:
                    oldest_key, oldest = next(iter(self._parked.items()))
                    evicted.append(oldest.pop(0))
                    self._parked_count -= 1
                    if not oldest:
                        del self._parked[oldest_key]
        for old in evicted:
            old.kill()

    def parked_workers(self) -> list[Worker]:
        with self._lock:
            return [worker for workers in self._parked.values() for worker in workers]

    def exit_status(self, pid: int, timeout: float = 2.0) -> ExitStatus | None:
        """How a worker ended, as the zygote reported it (None if no report came in time)."""
        with self._exited:
            self._exited.wait_for(lambda: pid in self._exits, timeout=timeout)
            return self._exits.pop(pid, None)

    def _top_up(self, wanted: int) -> None:
        """Ask for forks until ready plus coming workers make `wanted` (caller holds the lock)."""
        missing = wanted - self._spares.qsize() - self._pending
        if missing <= 0 or self._control is None:
            return
        self._pending += missing
        try:
            self._control.send(json.dumps({"spawn": missing}).encode())
        except OSError as exc:
            log.warning("sandbox zygote is gone (%s); it restarts on the next activation", exc)

    def _read_control(self, control: socket.socket) -> None:
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(control, 4096, 1)
            except OSError:
                return
            if not data:
                log.warning("sandbox zygote ended")
                return
            report = json.loads(data)
            if "spawned" in report and fds:
                with self._lock:
                    self._pending = max(0, self._pending - 1)
                self._spares.put(Worker(report["spawned"], socket.socket(fileno=fds[0])))
            elif "exited" in report:
                with self._exited:
                    self._exits[report["exited"]] = ExitStatus(report["signal"], report["code"])
                    if len(self._exits) > 10_000:  # reports nobody asked for (normal ends)
                        self._exits.pop(next(iter(self._exits)))
                    self._exited.notify_all()
