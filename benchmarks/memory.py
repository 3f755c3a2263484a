"""Peak memory of a process and every process it started (the engine, the zygote, its sandbox
workers), sampled every 20 ms while a workload runs.

Each process counts its proportional set size (PSS: private pages, plus shared pages divided by
the number of processes sharing them), so forked workers that share the zygote's pages
copy-on-write are not counted many times over, as summing RSS would.

The sampler is a process of its own (`python -m benchmarks.memory ROOT`), for stepkeeper as for
DBOS: reading /proc every 20 ms from a thread of the measured process would take that
process's interpreter lock from the workload it measures.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
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


def tree_mb(root: int, leave_out: int | None = None) -> float:
    tree, total, todo = _children(), 0, [root]
    while todo:
        pid = todo.pop()
        if pid != leave_out:
            total += _pss_kb(pid)
            todo.extend(tree.get(pid, []))
    return total / 1024


class PeakMemory:
    """`with PeakMemory() as peak: ...` then `peak.mb`."""

    def __init__(self, root: int | None = None) -> None:
        self.root = root or os.getpid()
        self.mb = 0.0
        self._sampler: subprocess.Popen[str] | None = None

    def __enter__(self) -> PeakMemory:
        self._sampler = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.memory", str(self.root)],
            cwd=Path(__file__).resolve().parent.parent,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        assert self._sampler is not None
        stdout, _ = self._sampler.communicate(timeout=30)  # closing its stdin ends the sampling
        self.mb = float(stdout.strip() or 0)


def sample(root: int) -> float:
    """The peak of `tree_mb(root)` (leaving this process out) until stdin closes."""
    peak = 0.0
    while True:
        peak = max(peak, tree_mb(root, leave_out=os.getpid()))
        if select.select([sys.stdin], [], [], SAMPLE_S)[0]:
            return peak  # the only thing that comes on stdin is its end


if __name__ == "__main__":
    print(sample(int(sys.argv[1])))
