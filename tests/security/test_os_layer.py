"""The OS layer alone: unrestricted Python in a confined worker still cannot reach the host."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.limits import REUSE_CPU_SECONDS, WorkerLimits
from sandbox.pool import WorkerPool

# Each probe tries one thing and reports the errno it met, or what it got.
PROBES = """
import errno, os, resource, socket, threading

def attempt(action):
    try:
        return {"ok": repr(action())[:200]}
    except OSError as exc:
        return {"errno": exc.errno}
    except Exception as exc:
        return {"error": type(exc).__name__}

def probe():
    return {
        "read_secret": attempt(lambda: open(SECRET_PATH).read()),
        "read_world_readable": attempt(lambda: open("/etc/hostname").read()),
        "write_file": attempt(lambda: open("/tmp/stepkeeper-escape", "w")),
        "list_directory": attempt(lambda: os.listdir("/")),
        "socket_inet": attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM)),
        "socket_unix": attempt(lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)),
        "fork": attempt(os.fork),
        "exec": attempt(lambda: os.execv("/bin/true", ["true"])),
        "kill_parent": attempt(lambda: os.kill(os.getppid(), 0)),
        "kill_init": attempt(lambda: os.kill(1, 0)),
        "thread": attempt(lambda: threading.Thread(target=lambda: None).start()),
        "dup_new_descriptor": attempt(lambda: os.dup(0)),
        "open_descriptors": sorted(int(fd) for fd in range(64) if _is_open(fd)),
        "uid": os.getuid(),
        "gid": os.getgid(),
        "groups": os.getgroups(),
        "environment": sorted(os.environ),
        "cpu_limit": resource.getrlimit(resource.RLIMIT_CPU)[0],
        "memory_limit": resource.getrlimit(resource.RLIMIT_AS)[0],
        "file_size_limit": resource.getrlimit(resource.RLIMIT_FSIZE)[0],
        "process_limit": resource.getrlimit(resource.RLIMIT_NPROC)[0],
    }

def _is_open(fd):
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False
"""


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "host-secret.txt"
    path.write_text("CANARY-host-secret-3141")
    path.chmod(0o600)
    return path


@pytest.fixture
def pool() -> Iterator[WorkerPool]:
    os.environ["STEPKEEPER_SECRET_CANARY"] = "CANARY-env-secret-2718"  # the engine's environment
    pool = WorkerPool(entry="tests.support.unrestricted:serve")
    yield pool
    pool.close()
    del os.environ["STEPKEEPER_SECRET_CANARY"]


def run_probes(pool: WorkerPool, secret: Path) -> dict[str, Any]:
    worker = pool.acquire()
    try:
        worker.channel.send({"source": f"SECRET_PATH = {str(secret)!r}\n" + PROBES})
        return worker.channel.receive(timeout=30)
    finally:
        pool.release(worker)


def test_unrestricted_code_in_a_confined_worker_meets_the_os_layer(
    pool: WorkerPool, secret_file: Path
) -> None:
    found = run_probes(pool, secret_file)
    refused = {"errno": 1}  # EPERM: the seccomp filter, not file permissions
    for name in (
        "read_secret",
        "read_world_readable",
        "write_file",
        "list_directory",
        "socket_inet",
        "socket_unix",
        "fork",
        "exec",
        "kill_parent",
        "kill_init",
    ):
        assert found[name] == refused, (name, found[name])
    assert "ok" not in found["thread"]  # clone is refused, so no thread starts
    assert "ok" not in found["dup_new_descriptor"]  # RLIMIT_NOFILE: no descriptor beyond 0-3
    assert found["open_descriptors"] == [0, 1, 2, 3]  # /dev/null x3 and the channel
    assert found["environment"] == ["LANG"]  # no secrets, no configuration
    assert found["cpu_limit"] == WorkerLimits().cpu_seconds + REUSE_CPU_SECONDS  # an activation's, + reuse
    assert found["memory_limit"] == 512 * 1024 * 1024
    assert found["file_size_limit"] == 0
    assert found["process_limit"] == 0
    if os.getuid() == 0:
        assert (found["uid"], found["gid"], found["groups"]) == (65534, 65534, [])
    assert "CANARY" not in repr(found)
