"""Length-prefixed JSON messages over a stream socket, with a size cap on what is received.

A frame is a 4-byte big-endian length and that many bytes of UTF-8 JSON. The receiving side
states the largest frame it accepts, so a flooding peer is refused before its bytes are read.
Only plain JSON crosses: decoding produces dicts, lists, strings, numbers, booleans and None.
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

_HEADER = struct.Struct(">I")


class ChannelError(Exception):
    """The peer broke the protocol: an oversized or malformed frame."""


class ChannelClosed(ChannelError):
    """The peer went away (end of stream or a reset)."""


class Channel:
    def __init__(self, sock: socket.socket, max_incoming: int) -> None:
        self.sock = sock
        self.max_incoming = max_incoming

    def send(self, message: Any) -> None:
        payload = json.dumps(message, allow_nan=False, separators=(",", ":")).encode()
        try:
            self.sock.sendall(_HEADER.pack(len(payload)) + payload)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise ChannelClosed(str(exc)) from exc

    def receive(self, timeout: float | None = None) -> Any:
        """The next message; `socket.timeout` (TimeoutError) when none arrives within `timeout`."""
        self.sock.settimeout(timeout)
        (size,) = _HEADER.unpack(self._read(_HEADER.size))
        if size > self.max_incoming:
            raise ChannelError(f"a message of {size} bytes is over the limit of {self.max_incoming}")
        try:
            return json.loads(self._read(size), parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as exc:
            raise ChannelError(f"a message is not valid JSON: {exc}") from exc

    def _read(self, size: int) -> bytes:
        view = memoryview(bytearray(size))
        got = 0
        while got < size:
            try:
                count = self.sock.recv_into(view[got:], size - got)
            except ConnectionResetError as exc:
                raise ChannelClosed(str(exc)) from exc
            if count == 0:
                raise ChannelClosed("the peer closed the channel")
            got += count
        return view.tobytes()

    def close(self) -> None:
        self.sock.close()


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
