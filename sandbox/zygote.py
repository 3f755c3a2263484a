"""The zygote: a pre-started parent that has imported everything and forks confined workers.

The engine starts it as a fresh interpreter with an empty environment (so it holds no secrets
and no database handle) and talks to it over a SOCK_SEQPACKET control socket:
- the engine sends `{"spawn": n}`; for each worker the zygote makes a socketpair, forks, and
  sends back `{"spawned": pid}` with the engine's end of the pair attached (SCM_RIGHTS);
- when a worker ends, the zygote reaps it and sends `{"exited": pid, "signal": n|None, "code": n|None}`;
- when the engine goes away (end of the control stream) it kills its workers and exits.

The forked child confines itself at once (`sandbox.confine`) and then waits for its command,
so an invocation never waits for a fork.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import select
import signal
import socket
import sys
from collections.abc import Callable

from sandbox.confine import confine
from sandbox.limits import WorkerLimits

# Imported here, once, because a confined worker cannot open files to import anything later.
PRELOAD = ("_strptime", "encodings.idna", "unicodedata", "sandbox.worker", "sandbox.execution")
MAX_SPAWN_PER_REQUEST = 64


def main(argv: list[str]) -> None:
    control_fd, entry, limits_json = int(argv[0]), argv[1], argv[2]
    control = socket.socket(fileno=control_fd)
    limits = WorkerLimits(**json.loads(limits_json))
    for module in PRELOAD:
        importlib.import_module(module)
    target = _resolve(entry)
    gc.freeze()  # objects made so far are never collected: a worker's GC does not copy their pages
    Zygote(control, target, limits).serve()


def _resolve(entry: str) -> Callable[[], None]:
    module, _, name = entry.partition(":")
    return getattr(importlib.import_module(module), name)


class Zygote:
    def __init__(self, control: socket.socket, target: Callable[[], None], limits: WorkerLimits) -> None:
        self.control = control
        self.target = target
        self.limits = limits
        self.children: set[int] = set()
        self.wakeup_read, wakeup_write = os.pipe()
        os.set_blocking(wakeup_write, False)
        signal.set_wakeup_fd(wakeup_write)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wake-up fd is written

    def serve(self) -> None:
        while True:
            ready, _, _ = select.select([self.control, self.wakeup_read], [], [])
            if self.wakeup_read in ready:
                os.read(self.wakeup_read, 4096)
                self._reap()
            if self.control in ready:
                try:
                    data = self.control.recv(4096)
                except ConnectionResetError:
                    data = b""
                if not data:
                    self._shutdown()
                    return
                request = json.loads(data)
                for _ in range(min(int(request.get("spawn", 0)), MAX_SPAWN_PER_REQUEST)):
                    self._spawn()

    def _spawn(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:
            self._become_worker(ours, theirs)
        theirs.close()
        self.children.add(pid)
        socket.send_fds(self.control, [json.dumps({"spawned": pid}).encode()], [ours.fileno()])
        ours.close()

    def _become_worker(self, ours: socket.socket, theirs: socket.socket) -> None:
        """Never returns: the child serves one command and exits."""
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            ours.close()
            self.control.close()
            os.close(self.wakeup_read)
            confine(theirs.detach(), self.limits)
            self.target()
            code = 0
        finally:
            os._exit(code)

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.children.discard(pid)
            report = {
                "exited": pid,
                "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
            }
            try:
                self.control.send(json.dumps(report).encode())
            except OSError:
                return

    def _shutdown(self) -> None:
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    main(sys.argv[1:])
