"""The workloads on DBOS Transact, one per fresh interpreter (DBOS is a process-wide singleton):
`python -m benchmarks.dbos_runner WORKLOAD ARG DBFILE` prints one JSON object.

DBOS runs with its best settings for these workloads: the SQLite file in WAL mode before launch,
queue polling every 1 ms, the notification listener polling every 1 ms.
"""

from __future__ import annotations

import json
import os
import resource
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

from dbos import DBOS, DBOSConfig, SetEnqueueOptions, SetWorkflowID

POLL_S = 0.001
first_step_at: dict[str, float] = {}
LOG: list[Path] = []
PHASE: list[str] = []


@DBOS.step()
def trivial(i: int) -> int:
    return i


@DBOS.step()
def first(marker: str) -> int:
    first_step_at[marker] = time.time()
    return 1


@DBOS.step()
def logged(i: int) -> int:
    with LOG[0].open("a") as log:
        log.write(f"{i}\n")
    if i == 6 and PHASE == ["start"]:  # step 5 is stored: tell the parent to kill us now
        (LOG[0].parent / "at-step-6").write_text("now")
        time.sleep(30)
    return i


@DBOS.workflow()
def many(n: int) -> int:
    for i in range(n):
        trivial(i)
    return n


@DBOS.workflow()
def ping(marker: str) -> int:
    return first(marker)


@DBOS.workflow()
def ten() -> int:
    return sum(logged(i) for i in range(1, 11))


def launch(path: str) -> None:
    with sqlite3.connect(path) as connection:  # WAL before DBOS opens the file
        connection.execute("PRAGMA journal_mode=WAL")
    config: DBOSConfig = {
        "name": "bench",
        "system_database_url": f"sqlite:///{path}",
        "notification_listener_polling_interval_sec": POLL_S,
        "log_level": "WARNING",
    }
    DBOS(config=config)
    DBOS.launch()


def steps(n: int) -> dict[str, Any]:
    started = time.perf_counter()
    DBOS.start_workflow(many, n).get_result()
    return {"step_overhead_ms": (time.perf_counter() - started) * 1000 / n}


def throughput(runs: int, keyed: bool = False) -> dict[str, Any]:
    if keyed:
        queue = DBOS.register_queue("keyed", partition_concurrency=5, polling_interval_sec=POLL_S)
    else:
        queue = DBOS.register_queue("work", global_concurrency=8, polling_interval_sec=POLL_S)
    started = time.perf_counter()
    handles = []
    for n in range(runs):
        if keyed:
            with SetEnqueueOptions(queue_partition_key=f"svc-{n % 10}"):
                handles.append(queue.enqueue(many, 5))
        else:
            handles.append(queue.enqueue(many, 5))
    for handle in handles:
        handle.get_result()
    elapsed = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"throughput_runs_per_s": runs / elapsed, "peak_rss_mb": peak_mb}


def latency(samples: int) -> dict[str, Any]:
    values = []
    for n in range(samples + 1):
        marker = f"m{n}"
        sent = time.time()
        DBOS.start_workflow(ping, marker).get_result()
        if n:  # the first warms up
            values.append((first_step_at[marker] - sent) * 1000)
        time.sleep(0.01)
    return {"latencies_ms": values}


def recover(log: str, phase: str) -> dict[str, Any]:
    LOG.append(Path(log))
    PHASE.append(phase)
    if phase == "start":
        with SetWorkflowID("ten-steps"):
            DBOS.start_workflow(ten)
        threading.Event().wait()  # killed by the parent at step 6
    result = DBOS.retrieve_workflow("ten-steps").get_result()  # launch() resumed it
    return {"result": result, "completed_at": time.time()}


def main() -> None:
    workload, arg, path = sys.argv[1], sys.argv[2], sys.argv[3]
    launch(path)
    if workload == "steps":
        found = steps(int(arg))
    elif workload in ("throughput", "keyed"):
        found = throughput(int(arg), keyed=workload == "keyed")
    elif workload == "latency":
        found = latency(int(arg))
    else:
        found = recover(arg, workload)
    print(json.dumps(found), flush=True)
    DBOS.destroy()
    os._exit(0)  # DBOS's background threads need not be waited for


if __name__ == "__main__":
    main()
