"""What an activation needs from the engine around it, in one place."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from engine.ai_effect import AiEffect
from engine.clock import Clock
from engine.http_effect import HttpEffect
from engine.redact import Redactor
from engine.store import Store


@dataclass
class Runtime:
    store: Store
    clock: Clock
    owner: str  # this engine's lease-holder id: host:pid:nonce
    http: HttpEffect
    ai: AiEffect = field(default_factory=lambda: AiEffect(None))
    secrets: dict[str, str] = field(default_factory=dict)
    redact: Redactor = field(default_factory=lambda: Redactor({}))
    wake: Callable[[], None] = lambda: None  # thread-safe: new work is queued
    events_added: Callable[[], None] = lambda: None  # thread-safe: events await routing
    run_changed: Callable[[str], None] = lambda run_id: None  # any thread: a run's state or steps changed
