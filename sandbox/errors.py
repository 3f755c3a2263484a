"""Exceptions that skill code sees and raises, and the ones that end an activation."""

from __future__ import annotations


class SandboxError(Exception):
    """Base of the sandbox package's own errors."""


class CompileError(SandboxError):
    """Skill code was refused; `line` and `column` point at the first problem (1-based)."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


class NonRetriableError(Exception):
    """Raised by skill code: fail the step (or run) now, without further attempts."""


class RetryAfterError(Exception):
    """Raised by skill code: retry the step after `retry_after` (seconds, '30s', or ISO time)."""

    def __init__(self, message: str = "", retry_after: object = None) -> None:
        super().__init__(message, retry_after)
        self.message = message
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message


class StepError(Exception):
    """Raised into the handler when a step failed for good (its retries are spent)."""

    def __init__(self, message: str, error_type: str = "Error", step_id: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type
        self.step_id = step_id

    def __str__(self) -> str:
        return self.message


class Suspend(BaseException):
    """Ends the activation: the engine recorded why (sleep, wait, invoke, retry).

    A BaseException so that `except Exception` in skill code does not swallow it; a bare
    `except:` could, which is why the step object also refuses every op after a suspension.
    """


class Abort(BaseException):
    """Ends the activation because the run was cancelled or is no longer ours."""


class NonDeterminismError(BaseException):
    """The code took a different path than the stored history (a step's op changed)."""
