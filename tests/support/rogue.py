"""A worker entry that breaks the protocol on purpose, as a compromised worker would.

It compiles like the real worker (so skills register), and on `run` misbehaves as the event's
`data.mode` says. Only tests start a zygote with this entry.
"""

from __future__ import annotations

import os
import socket
import struct
import time

from sandbox.channel import Channel
from sandbox.confine import CHANNEL_FD
from sandbox.limits import MAX_ACTIVATION_BYTES
from sandbox.worker import _compile


def serve() -> None:
    sock = socket.socket(fileno=CHANNEL_FD)
    channel = Channel(sock, MAX_ACTIVATION_BYTES)
    command = channel.receive()
    if command.get("cmd") != "run":
        channel.send(_compile(command.get("source")))
        return
    mode = command["activation"]["event"]["data"]["mode"]
    MISBEHAVIOURS[mode](channel, sock)


def _oversized(channel: Channel, sock: socket.socket) -> None:
    sock.sendall(struct.pack(">I", 50 * 1024 * 1024) + b"x" * 1024)


def _garbage(channel: Channel, sock: socket.socket) -> None:
    payload = b"{not json"
    sock.sendall(struct.pack(">I", len(payload)) + payload)


def _claims_suspended(channel: Channel, sock: socket.socket) -> None:
    channel.send({"outcome": {"status": "suspended"}})


def _malformed_step(channel: Channel, sock: socket.socket) -> None:
    channel.send({"call": {"op": "step", "status": "completed"}})  # no key


def _bad_outcome(channel: Channel, sock: socket.socket) -> None:
    channel.send({"outcome": {"status": "failed", "error": ["not", "an", "object"]}})


def _unknown_op(channel: Channel, sock: socket.socket) -> None:
    channel.send({"call": {"op": "read_database", "key": "x"}})


def _flood(channel: Channel, sock: socket.socket) -> None:
    for i in range(25_000):
        channel.send({"notify": {"op": "log", "level": "info", "message": str(i)}})
    time.sleep(60)


def _dies(channel: Channel, sock: socket.socket) -> None:
    os._exit(3)


def _hangs(channel: Channel, sock: socket.socket) -> None:
    while True:
        time.sleep(1)


MISBEHAVIOURS = {
    "oversized": _oversized,
    "garbage": _garbage,
    "claims_suspended": _claims_suspended,
    "malformed_step": _malformed_step,
    "bad_outcome": _bad_outcome,
    "unknown_op": _unknown_op,
    "flood": _flood,
    "dies": _dies,
    "hangs": _hangs,
}
