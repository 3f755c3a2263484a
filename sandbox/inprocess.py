"""The in-process runner: RestrictedPython policy only, in the engine's own process.

THIS IS NOT AN ISOLATION BOUNDARY. It runs skill code in a thread of the engine process with
RestrictedPython's compile-time policy and runtime guards, which have a long history of
escapes; there are no CPU, memory or wall-clock limits. It exists so the engine can be built
and tested before the confined worker pool; use it only for code you trust.
"""

from __future__ import annotations

import json
from typing import Any

from sandbox import errors
from sandbox.guards import restricted_globals
from sandbox.helpers import helper_globals
from sandbox.policy import compile_skill
from sandbox.protocol import Host, Message, error_dict
from sandbox.runner import PreparedSkill
from sandbox.skill_api import Context, Http, Logger, Step

MAX_OUTPUT_BYTES = 1024 * 1024


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
        step = Step(host, dict(activation.get("memo") or {}))
        namespace = restricted_globals()
        namespace.update(helper_globals())
        namespace["http"] = Http(host, step)
        namespace["secrets"] = dict(activation.get("secrets") or {})
        entry = "on_failure" if activation.get("kind") == "on_failure" else "handler"
        try:
            exec(skill.compiled, namespace)  # fresh globals per activation: runs share no state
            outcome = _completed(namespace[entry](Context(activation, Logger(host, step)), step))
        except errors.Suspend:
            outcome = {"status": "suspended"}
        except errors.Abort as exc:
            outcome = {"status": "aborted", "reason": str(exc)}
        except errors.NonDeterminismError as exc:
            outcome = _failed(exc, retriable=False)
        except (errors.StepError, errors.NonRetriableError) as exc:
            outcome = _failed(exc, retriable=False)
        except errors.RetryAfterError as exc:
            outcome = {**_failed(exc, retriable=True), "retry_after": exc.retry_after}
        except Exception as exc:  # any other error in skill code: the handler may be retried
            outcome = _failed(exc, retriable=True)
        if step.ended is not None:  # skill code swallowed a suspension: it still counts
            ended = step.ended
            if isinstance(ended, errors.Suspend):
                return {"status": "suspended"}
            if isinstance(ended, errors.Abort):
                return {"status": "aborted", "reason": str(ended)}
            return _failed(ended, retriable=False)
        return outcome

    def close(self) -> None:
        pass


def _completed(value: Any) -> Message:
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return _failed(
            errors.NonRetriableError(f"the handler must return plain JSON: {exc}"), retriable=False
        )
    if len(text.encode()) > MAX_OUTPUT_BYTES:
        return _failed(
            errors.NonRetriableError(f"the handler's result is over {MAX_OUTPUT_BYTES} bytes"),
            retriable=False,
        )
    return {"status": "completed", "output": json.loads(text)}


def _failed(exc: BaseException, *, retriable: bool) -> Message:
    return {
        "status": "failed",
        "error": error_dict(exc),
        "retriable": retriable,
        "retry_after": None,
    }
