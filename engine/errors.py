"""Errors the engine raises to its callers. Every surface maps them to a specific answer."""

from __future__ import annotations

MAX_MESSAGE_CHARS = 1000


class StepkeeperError(Exception):
    """Base of every error the engine reports to a caller.

    Messages quote the caller's input; one over `MAX_MESSAGE_CHARS` (a 300 KB name, say) keeps
    its start and its end, where the hint is, so a refusal never echoes a huge input whole."""

    code = "error"

    def __init__(self, message: object = "", *args: object) -> None:
        if isinstance(message, str) and len(message) > MAX_MESSAGE_CHARS:
            half = MAX_MESSAGE_CHARS // 2
            left_out = len(message) - 2 * half
            message = f"{message[:half]}…({left_out} characters left out)…{message[-half:]}"
        super().__init__(message, *args)


class InvalidInput(StepkeeperError):
    """The caller's input is malformed; nothing was changed."""

    code = "invalid_input"


class PayloadTooLarge(InvalidInput):
    """A payload is over a documented limit; nothing was changed."""

    code = "payload_too_large"


class SkillNotFound(StepkeeperError):
    code = "skill_not_found"

    def __init__(self, name: str, version: int | None = None) -> None:
        what = f"skill {name!r}" if version is None else f"version {version} of skill {name!r}"
        super().__init__(f"{what} does not exist")
        self.name = name


class SkillExists(StepkeeperError):
    code = "skill_exists"

    def __init__(self, name: str) -> None:
        super().__init__(f"skill {name!r} already exists; use update_skill to change it")
        self.name = name


class RunNotFound(StepkeeperError):
    code = "run_not_found"

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id!r} does not exist")
        self.run_id = run_id


class LoopNotFound(StepkeeperError):
    code = "loop_not_found"

    def __init__(self, loop_id: str) -> None:
        super().__init__(f"loop {loop_id!r} does not exist")
        self.loop_id = loop_id


class InvalidState(StepkeeperError):
    """The request does not fit the object's current state (e.g. cancelling a finished run)."""

    code = "invalid_state"


class CompileFailed(InvalidInput):
    """Skill code was refused at registration, with the position of the first problem."""

    code = "compile_error"

    def __init__(self, message: str, line: int | None, column: int | None) -> None:
        where = f"line {line}, column {column}: " if line is not None else ""
        super().__init__(f"{where}{message}")
        self.line = line
        self.column = column
        self.reason = message


class StoreUnavailable(StepkeeperError):
    """The database could not be reached or written (locked, full, corrupt)."""

    code = "store_unavailable"


class BacklogFull(StepkeeperError):
    """Too much accepted work is waiting to start; the producer should retry later."""

    code = "backlog_full"

    def __init__(self, waiting: int, limit: int, retry_after: float) -> None:
        super().__init__(
            f"{waiting} queued runs and unrouted events are waiting (limit {limit}, "
            f"STEPKEEPER_MAX_BACKLOG); nothing was stored: retry after {retry_after:g} s"
        )
        self.retry_after = retry_after


class StoreBusy(StoreUnavailable):
    """Another connection or process held the database's write lock past the busy timeout."""


class StoreFull(StoreUnavailable):
    """The disk (or the quota) holding the database is full."""


class CorruptRecord(StepkeeperError):
    """A stored value the engine reads back is not what it wrote (e.g. not valid JSON); retrying
    cannot help, so the run it belongs to fails with this error and the others go on."""

    code = "corrupt_record"
