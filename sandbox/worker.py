"""The worker side: one confined process serves commands from the engine.

Commands arrive on the channel (descriptor 3):
- `{"cmd": "compile", "source": ...}` → `{"compiled": {"has_on_failure", "warnings"}}` or
  `{"compile_error": {"message", "line", "column"}}`;
- `{"cmd": "run", "code": <marshalled code, base64>, "activation": {...}}` → any number of
  `{"call": op}` (answered by the engine) and `{"notify": op}`, then `{"outcome": ...}`.

When the engine records a suspension (sleep, wait, invoke, retry) or an abort, it does not
answer: it ends this process, so skill code cannot swallow the suspension and carry on. After an
outcome the engine either sends the next run of the same skill version or ends the process.
"""

from __future__ import annotations

import base64
import marshal
import signal
import socket
import time
from typing import Any

from sandbox.channel import Channel, ChannelClosed
from sandbox.confine import CHANNEL_FD
from sandbox.errors import CompileError, NonRetriableError
from sandbox.execution import execute, failed
from sandbox.limits import MAX_ACTIVATION_BYTES
from sandbox.policy import compile_skill
from sandbox.protocol import OP_STEP_START, Message

START_NOTICE_DELAY = 0.002  # seconds a step body runs before its start notice goes out alone


class ChannelHost:
    """`sandbox.protocol.Host` over the channel to the engine.

    A step's start notice is held back and goes out with the step's result, in one write, so a
    fast step costs one round trip, not a round trip and a notice. If the step body is still
    running after `START_NOTICE_DELAY`, a timer sends the notice on its own, so the engine knows
    which step it was in should the worker die there. The notice carries how long the step had
    been running, for the trace.
    """

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self._held: tuple[Message, float] | None = None
        self._sending = False
        signal.signal(signal.SIGALRM, self._on_timer)

    def call(self, message: Message) -> Message:
        self._send({"call": message})
        reply = self.channel.receive()
        if not isinstance(reply, dict):
            raise NonRetriableError("the engine sent a malformed reply")
        return reply

    def notify(self, message: Message) -> None:
        if message.get("op") == OP_STEP_START:
            self._held = (message, time.monotonic())
            signal.setitimer(signal.ITIMER_REAL, START_NOTICE_DELAY)
            return
        self._send({"notify": message})

    def _send(self, message: Message) -> None:
        self._sending = True  # the timer must not write a frame into the middle of this one
        try:
            self.channel.send_all([*self._take_held(), message])
        finally:
            self._sending = False

    def _take_held(self) -> list[Message]:
        if self._held is None:
            return []
        signal.setitimer(signal.ITIMER_REAL, 0)
        notice, started = self._held
        self._held = None
        return [{"notify": {**notice, "elapsed": time.monotonic() - started}}]

    def _on_timer(self, signum: int, frame: object) -> None:
        if not self._sending and self._held is not None:
            self.channel.send_all(self._take_held())


def serve() -> None:
    """Serve commands on the channel until it closes; the zygote's child calls this after
    confining itself. A compile is the worker's only command; after a run, the engine may send
    the next run of the same skill version, or end the process."""
    channel = Channel(socket.socket(fileno=CHANNEL_FD), MAX_ACTIVATION_BYTES)
    _warm_up()
    while True:
        try:
            command = channel.receive()
        except ChannelClosed:
            return
        if not isinstance(command, dict) or command.get("cmd") not in ("compile", "run"):
            return
        if command["cmd"] == "compile":
            channel.send(_compile(command.get("source")))
            return
        channel.send({"outcome": _run(command, ChannelHost(channel))})
        signal.setitimer(signal.ITIMER_REAL, 0)  # no start notice of this run may fire in the next


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
