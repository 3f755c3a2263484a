"""The worker side: one confined process serves one command from the engine, then ends.

Commands arrive on the channel (descriptor 3):
- `{"cmd": "compile", "source": ...}` → `{"compiled": {"has_on_failure", "warnings"}}` or
  `{"compile_error": {"message", "line", "column"}}`;
- `{"cmd": "run", "code": <marshalled code, base64>, "activation": {...}}` → any number of
  `{"call": op}` (answered by the engine) and `{"notify": op}`, then `{"outcome": ...}`.

When the engine records a suspension (sleep, wait, invoke, retry) or an abort, it does not
answer: it ends this process, so skill code cannot swallow the suspension and carry on.
"""

from __future__ import annotations

import base64
import marshal
import socket
from typing import Any

from sandbox.channel import Channel
from sandbox.confine import CHANNEL_FD
from sandbox.errors import CompileError, NonRetriableError
from sandbox.execution import execute, failed
from sandbox.limits import MAX_ACTIVATION_BYTES
from sandbox.policy import compile_skill
from sandbox.protocol import Message


class ChannelHost:
    """`sandbox.protocol.Host` over the channel to the engine."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    def call(self, message: Message) -> Message:
        self.channel.send({"call": message})
        reply = self.channel.receive()
        if not isinstance(reply, dict):
            raise NonRetriableError("the engine sent a malformed reply")
        return reply

    def notify(self, message: Message) -> None:
        self.channel.send({"notify": message})


def serve() -> None:
    """Serve one command on the channel; the zygote's child calls this after confining itself."""
    channel = Channel(socket.socket(fileno=CHANNEL_FD), MAX_ACTIVATION_BYTES)
    _warm_up()
    command = channel.receive()
    if command.get("cmd") == "compile":
        channel.send(_compile(command.get("source")))
    elif command.get("cmd") == "run":
        channel.send({"outcome": _run(command, ChannelHost(channel))})


_WARM_UP_SKILL = compile_skill("def handler(ctx, step):\n    return step.run('warm', lambda: {'ok': [1]})\n")


class _NullHost:
    def call(self, message: Message) -> Message:
        return {"action": "continue"}

    def notify(self, message: Message) -> None:
        pass


def _warm_up() -> None:
    """Run a trivial skill before the real command arrives: the memory pages an activation
    touches are copied from the zygote now (copy-on-write), not while the engine waits."""
    event = {"id": "warm-up", "name": "warm-up", "data": {}, "ts": 0}
    activation = {"run_id": "warm-up", "function": "warm-up", "version": 1, "event": event, "memo": {}}
    execute(_WARM_UP_SKILL.code, activation, _NullHost())


def _compile(source: Any) -> Message:
    try:
        compiled = compile_skill(source)
    except CompileError as exc:
        return {"compile_error": {"message": exc.message, "line": exc.line, "column": exc.column}}
    return {"compiled": {"has_on_failure": compiled.has_on_failure, "warnings": list(compiled.warnings)}}


def _run(command: Message, host: ChannelHost) -> Message:
    try:
        code = marshal.loads(base64.b64decode(command["code"]))
    except (KeyError, TypeError, ValueError, EOFError) as exc:
        return failed(NonRetriableError(f"the engine sent unusable code: {exc}"), retriable=False)
    return execute(code, command.get("activation") or {}, host)
