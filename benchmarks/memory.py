"""Peak memory of a process and every process it started (the engine, the zygote, its sandbox
workers), sampled every 20 ms while a workload runs.

Each process counts its proportional set size (PSS: private pages, plus shared pages divided by
the number of processes sharing them), so forked workers that share the zygote's pages
copy-on-write are not counted many times over, as summing RSS would."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import TracebackType

SAMPLE_S = 0.02


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:  # gone already, or not ours to read
        pass
    return 0


def tree_mb(root: int) -> float:
    tree, total, todo = _children(), 0, [root]
    while todo:
        pid = todo.pop()
        total += _pss_kb(pid)
        todo.extend(tree.get(pid, []))
    return total / 1024


class PeakMemory:
    """`with PeakMemory() as peak: ...` then `peak.mb`."""

    def __init__(self, root: int | None = None) -> None:
        self.root = root or os.getpid()
        self.mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.mb = max(self.mb, tree_mb(self.root))
            self._stop.wait(SAMPLE_S)
