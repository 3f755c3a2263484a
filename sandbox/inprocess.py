"""The in-process runner: RestrictedPython policy only, in the engine's own process.

THIS IS NOT AN ISOLATION BOUNDARY, and the engine does not use it (see `process_runner`). It
runs skill code in a thread of the engine process with RestrictedPython's compile-time policy
and runtime guards, which have a long history of escapes, and without CPU, memory or
wall-clock limits. The unit tests of the policy use it; use it only for code you trust.
"""

from __future__ import annotations

from typing import Any

from sandbox.execution import execute
from sandbox.policy import compile_skill
from sandbox.protocol import Host, Message
from sandbox.runner import PreparedSkill


class InProcessRunner:
    def prepare(self, source: str) -> PreparedSkill:
        compiled = compile_skill(source)
        return PreparedSkill(
            source=source,
            has_on_failure=compiled.has_on_failure,
            warnings=compiled.warnings,
            compiled=compiled.code,
        )

    def run(self, skill: PreparedSkill, activation: dict[str, Any], host: Host) -> Message:
        return execute(skill.compiled, activation, host)

    def close(self) -> None:
        pass
