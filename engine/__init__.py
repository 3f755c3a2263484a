"""The durable core: store, replay, scheduler, events. Surfaces use `Engine` only.

The names below are imported on first use (PEP 562), so that importing one light module of the
package (`engine.errors`, `engine.durations`, ...) does not load the store and SQLAlchemy: a
`stepkeeper worker` starts its sandbox before it pays for those imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.clock import Clock, ManualClock, SystemClock
    from engine.engine import Engine, Registration, SendResult, SkillDetails
    from engine.errors import (
        BacklogFull,
        CompileFailed,
        InvalidInput,
        InvalidState,
        LoopNotFound,
        PayloadTooLarge,
        RunNotFound,
        SkillExists,
        SkillNotFound,
        StepkeeperError,
        StoreUnavailable,
    )
    from engine.records import Loop
    from engine.sql_store import SqlStore

_HOMES = {
    "engine.clock": ("Clock", "ManualClock", "SystemClock"),
    "engine.engine": ("Engine", "Registration", "SendResult", "SkillDetails"),
    "engine.errors": (
        "BacklogFull",
        "CompileFailed",
        "InvalidInput",
        "InvalidState",
        "LoopNotFound",
        "PayloadTooLarge",
        "RunNotFound",
        "SkillExists",
        "SkillNotFound",
        "StepkeeperError",
        "StoreUnavailable",
    ),
    "engine.records": ("Loop",),
    "engine.sql_store": ("SqlStore",),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "BacklogFull",
    "Clock",
    "CompileFailed",
    "Engine",
    "InvalidInput",
    "InvalidState",
    "Loop",
    "LoopNotFound",
    "ManualClock",
    "PayloadTooLarge",
    "Registration",
    "RunNotFound",
    "SendResult",
    "SkillDetails",
    "SkillExists",
    "SkillNotFound",
    "SqlStore",
    "StepkeeperError",
    "StoreUnavailable",
    "SystemClock",
]


def __getattr__(name: str) -> Any:
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
