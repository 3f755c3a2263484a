"""The durable core: store, replay, scheduler, events. Surfaces use `Engine` only."""

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
