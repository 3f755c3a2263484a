"""A worker entry that runs plain, unrestricted Python: the RestrictedPython policy bypassed on
purpose, to show what the OS layer (descriptors, rlimits, uid, seccomp) refuses on its own.

Only tests start a zygote with this entry; the engine's zygote always runs `sandbox.worker:serve`.
"""

from __future__ import annotations

import socket
from typing import Any

from sandbox.channel import Channel
from sandbox.confine import CHANNEL_FD

MAX_COMMAND_BYTES = 1024 * 1024


def serve() -> None:
    channel = Channel(socket.socket(fileno=CHANNEL_FD), MAX_COMMAND_BYTES)
    command = channel.receive()
    namespace: dict[str, Any] = {}
    exec(command["source"], namespace)  # deliberately unrestricted
    channel.send(namespace["probe"]())
