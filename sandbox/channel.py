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
_READ_SIZE = 64 * 1024


class ChannelError(Exception):
    """The peer broke the protocol: an oversized or malformed frame."""


class ChannelClosed(ChannelError):
    """The peer went away (end of stream or a reset)."""


class Channel:
    def __init__(self, sock: socket.socket, max_incoming: int) -> None:
        self.sock = sock
        self.max_incoming = max_incoming
        self._buffer = bytearray()
        self._timeout: float | None = sock.gettimeout()

    def send(self, message: Any) -> None:
        self.send_all([message])

    def send_all(self, messages: list[Any]) -> None:
        """Send messages as consecutive frames in one write."""
        frames = bytearray()
        for message in messages:
            payload = _ENCODER.encode(message).encode()
            frames += _HEADER.pack(len(payload))
            frames += payload
        try:
            self.sock.sendall(frames)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise ChannelClosed(str(exc)) from exc

    def receive(self, timeout: float | None = None) -> Any:
        """The next message; `socket.timeout` (TimeoutError) when none arrives within `timeout`."""
        if timeout != self._timeout:  # a socket with a timeout polls before each read: set only when needed
            self.sock.settimeout(timeout)
            self._timeout = timeout
        self._fill(_HEADER.size)
        (size,) = _HEADER.unpack_from(self._buffer)
        if size > self.max_incoming:
            raise ChannelError(f"a message of {size} bytes is over the limit of {self.max_incoming}")
        self._fill(_HEADER.size + size)
        payload = bytes(self._buffer[_HEADER.size : _HEADER.size + size])
        del self._buffer[: _HEADER.size + size]
        try:
            return _DECODER.decode(payload.decode())
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise ChannelError(f"a message is not valid JSON: {exc}") from exc

    def _fill(self, wanted: int) -> None:
        """Read until the buffer holds `wanted` bytes; one read often brings a whole message."""
        while len(self._buffer) < wanted:
            try:
                chunk = self.sock.recv(max(_READ_SIZE, wanted - len(self._buffer)))
            except ConnectionResetError as exc:
                raise ChannelClosed(str(exc)) from exc
            if not chunk:
                raise ChannelClosed("the peer closed the channel")
            self._buffer += chunk

    def idle(self) -> bool:
        """Nothing received and not yet read: the peer sent no more than was asked of it."""
        if self._buffer:
            return False
        self.sock.settimeout(0.0)  # a socket with a timeout would wait for data before peeking
        try:
            self.sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return True
        except OSError:
            return False
        finally:
            self.sock.settimeout(self._timeout)
        return False  # data waiting, or the peer closed

    def close(self) -> None:
        self.sock.close()


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)
_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))
