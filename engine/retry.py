"""Retry policy: how many attempts a step (or a failing handler) gets, and how long between them.

Default: 4 retries (5 attempts), waiting 1 s, 2 s, 4 s, 8 s ... capped at 5 min, each delay
spread by ±20 % jitter so that many runs failing together do not retry in lockstep.
Per skill: `config.retries` (0-20) and `config.retry_backoff` {initial, factor, max, jitter}.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from engine.durations import parse_duration
from engine.errors import InvalidInput
from engine.limits import DEFAULT_RETRIES, MAX_RETRIES

BACKOFF_KEYS = frozenset({"initial", "factor", "max", "jitter"})


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = DEFAULT_RETRIES
    initial: float = 1.0
    factor: float = 2.0
    maximum: float = 300.0
    jitter: float = 0.2

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> RetryPolicy:
        retries = config.get("retries", DEFAULT_RETRIES)
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES:
            raise InvalidInput(f"config.retries must be an integer from 0 to {MAX_RETRIES}, got {retries!r}")
        backoff = config.get("retry_backoff") or {}
        if not isinstance(backoff, dict) or not set(backoff) <= BACKOFF_KEYS:
            raise InvalidInput(f"config.retry_backoff takes only {sorted(BACKOFF_KEYS)}, got {backoff!r}")
        policy = cls(
            retries=retries,
            initial=parse_duration(backoff.get("initial", cls.initial)),
            factor=_number(backoff.get("factor", cls.factor), "factor", 1.0, 10.0),
            maximum=parse_duration(backoff.get("max", cls.maximum)),
            jitter=_number(backoff.get("jitter", cls.jitter), "jitter", 0.0, 1.0),
        )
        return policy

    def attempts_left(self, failed_attempts: int) -> bool:
        return failed_attempts <= self.retries

    def delay(self, failed_attempts: int) -> float:
        """Seconds to wait after the `failed_attempts`-th failure (1-based)."""
        base = min(self.initial * self.factor ** (failed_attempts - 1), self.maximum)
        return max(0.0, base * random.uniform(1 - self.jitter, 1 + self.jitter))


def _number(value: Any, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InvalidInput(
            f"config.retry_backoff.{name} must be a number from {low} to {high}, got {value!r}"
        )
    return float(value)
