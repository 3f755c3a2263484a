"""The example inside the `write_skill` prompt must itself be a correct skill."""

from __future__ import annotations

from mcp_server.prompts import SKILL_API
from sandbox.policy import compile_skill


def test_write_skill_example_compiles_without_warnings() -> None:
    example = SKILL_API.split("Complete example:\n", 1)[1].split("\nRegister with:", 1)[0]
    compiled = compile_skill(example)
    assert compiled.has_on_failure and compiled.warnings == ()
