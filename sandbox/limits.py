"""The sandbox's documented limits (README: Limits). Each is enforced by the layer named."""

from __future__ import annotations

from dataclasses import dataclass

KIB = 1024
MIB = 1024 * KIB

MAX_RESULT_BYTES = 1 * MIB  # a handler's or step's result, as JSON (checked in the worker and the engine)
MAX_MESSAGE_BYTES = MAX_RESULT_BYTES + 64 * KIB  # one message from a worker: a result plus its envelope
MAX_ACTIVATION_BYTES = 64 * MIB  # one message to a worker: the activation with its step history
MAX_LOGS_PER_ACTIVATION = 1000  # further log lines are dropped in the worker
MAX_LOG_CHARS = 8 * KIB  # one log line
MAX_CALLS_PER_ACTIVATION = 20_000  # messages a worker may send in one activation

# A worker whose activation ended cleanly serves the next activation of the same skill version,
# while it has used less than this much CPU and memory, and served fewer activations than this.
REUSE_CPU_SECONDS = 1  # its CPU limit is raised by this much, so each activation keeps its own
REUSE_MAX_RSS_BYTES = 128 * MIB
REUSE_MAX_ACTIVATIONS = 1000
MAX_PARKED_WORKERS = 16  # idle workers kept for reuse, over all skill versions


@dataclass(frozen=True)
class WorkerLimits:
    """What the OS and the engine enforce on one worker process (one activation)."""

    cpu_seconds: int = 5  # per activation; RLIMIT_CPU (+ REUSE_CPU_SECONDS): SIGXCPU, SIGKILL 1 s later
    wall_seconds: float = 30.0  # the engine kills the worker; time spent in host calls is not counted
    memory_bytes: int = 512 * MIB  # RLIMIT_AS
    max_open_files: int = 4  # RLIMIT_NOFILE: stdin, stdout, stderr and the channel; nothing new
    unprivileged_uid: int = 65534  # `nobody`, used only when the engine runs as root
    unprivileged_gid: int = 65534
