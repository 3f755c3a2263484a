"""Running one activation of compiled skill code against a `Host`: the same in every runner.

The outcome is a plain dict (see `sandbox.protocol`). Skill errors never escape as exceptions;
a suspension or abort that skill code swallowed with a bare `except:` still ends the activation,
because the step object remembers it.
"""

from __future__ import annotations

import json
from types import CodeType
from typing import Any

from sandbox import errors
from sandbox.guards import restricted_globals
from sandbox.helpers import helper_globals
from sandbox.limits import MAX_RESULT_BYTES
from sandbox.protocol import Host, Message, error_dict
from sandbox.skill_api import Context, Http, Logger, Runs, Step


def execute(code: CodeType, activation: dict[str, Any], host: Host) -> Message:
    step = Step(host, dict(activation.get("memo") or {}))
    namespace = restricted_globals()
    namespace.update(helper_globals())
    namespace["http"] = Http(host, step)
    namespace["runs"] = Runs(host, step)
    namespace["secrets"] = dict(activation.get("secrets") or {})
    entry = "on_failure" if activation.get("kind") == "on_failure" else "handler"
    try:
        exec(code, namespace)  # fresh globals per activation: runs share no state
        outcome = completed(namespace[entry](Context(activation, Logger(host, step)), step))
    except errors.Suspend:
        outcome = {"status": "suspended"}
    except errors.Abort as exc:
        outcome = {"status": "aborted", "reason": str(exc)}
    except errors.NonDeterminismError as exc:
        outcome = failed(exc, retriable=False)
    except (errors.StepError, errors.NonRetriableError) as exc:
        outcome = failed(exc, retriable=False)
    except errors.RetryAfterError as exc:
        outcome = {**failed(exc, retriable=True), "retry_after": exc.retry_after}
    except Exception as exc:  # any other error in skill code: the handler may be retried
        outcome = failed(exc, retriable=True)
    if step.ended is not None:  # skill code swallowed a suspension: it still counts
        ended = step.ended
        if isinstance(ended, errors.Suspend):
            return {"status": "suspended"}
        if isinstance(ended, errors.Abort):
            return {"status": "aborted", "reason": str(ended)}
        return failed(ended, retriable=False)
    return outcome


def completed(value: Any) -> Message:
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        return failed(errors.NonRetriableError(f"the handler must return plain JSON: {exc}"), retriable=False)
    if len(text.encode()) > MAX_RESULT_BYTES:
        return failed(
            errors.NonRetriableError(f"the handler's result is over {MAX_RESULT_BYTES} bytes"),
            retriable=False,
        )
    return {"status": "completed", "output": json.loads(text)}


def failed(exc: BaseException, *, retriable: bool) -> Message:
    return {"status": "failed", "error": error_dict(exc), "retriable": retriable, "retry_after": None}
