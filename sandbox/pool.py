"""The engine side of the worker processes: starts the zygote and hands out pre-forked workers.

`acquire()` returns a confined worker that is already waiting for its command, and asks the
zygote for a replacement, so `warm` workers are always ready. Workers are single-use: the caller
kills one when its activation ends. The pool restarts the zygote if it ever goes away.
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
from dataclasses import asdict, dataclass
from pathlib import Path

from sandbox.channel import Channel
from sandbox.limits import MAX_MESSAGE_BYTES, WorkerLimits

log = logging.getLogger(__name__)
WORKER_ENTRY = "sandbox.worker:serve"
ACQUIRE_TIMEOUT_SECONDS = 10.0
_PROJECT_ROOT = str(Path(__file__).resolve().parent.parent)


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

    def kill(self) -> None:
        """End the process (race-free through its pidfd) and close the channel."""
        if self._pidfd is not None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            os.close(self._pidfd)
            self._pidfd = None
        self.channel.close()


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
