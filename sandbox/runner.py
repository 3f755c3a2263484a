"""The seam between the engine and skill code: prepare once, then run activations.

An activation is a plain dict (run id, function, version, event, memo of finished steps, ...);
the runner executes the skill's entry point against a `Host` and returns a plain outcome dict
(see `sandbox.protocol`). Implementations are interchangeable; the engine depends on this only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from sandbox.protocol import Host, Message


@dataclass(frozen=True)
class PreparedSkill:
    """Compiled, validated skill code; opaque to the engine apart from these facts."""

    source: str
    has_on_failure: bool
    warnings: tuple[str, ...]
    compiled: Any = None


class SkillRunner(Protocol):
    def prepare(self, source: str) -> PreparedSkill:
        """Compile and validate; raises `sandbox.errors.CompileError` with line and column."""

    def run(self, skill: PreparedSkill, activation: dict[str, Any], host: Host) -> Message:
        """Run one activation to its end, a suspension or an abort; never raises for skill errors."""

    def close(self) -> None: ...
