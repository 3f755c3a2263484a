"""Compiling and running untrusted skill code. Imports nothing from `engine` or `mcp_server`."""

from sandbox.errors import CompileError, NonRetriableError, RetryAfterError, StepError
from sandbox.inprocess import InProcessRunner
from sandbox.runner import PreparedSkill, SkillRunner

__all__ = [
    "CompileError",
    "InProcessRunner",
    "NonRetriableError",
    "PreparedSkill",
    "RetryAfterError",
    "SkillRunner",
    "StepError",
]
