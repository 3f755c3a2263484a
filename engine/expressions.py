"""Expressions over events, in CEL (Common Expression Language, the language Inngest uses too).

We use `common-expression-language`, Python bindings to the Rust `cel` crate: maintained,
fast, and its parse errors carry line and column. Expressions see `event` (the run's trigger)
and `async` (an incoming event, for waits).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from engine.errors import InvalidInput

MAX_EXPRESSION_CHARS = 2000


@lru_cache(maxsize=1024)
def compile_expression(source: str) -> Any:
    """Compile (and so validate) an expression; InvalidInput says where it is wrong."""
    if not isinstance(source, str) or not source.strip():
        raise InvalidInput("an expression must be a non-empty string")
    if len(source) > MAX_EXPRESSION_CHARS:
        raise InvalidInput(f"expression is over {MAX_EXPRESSION_CHARS} characters")
    import cel  # imported on first use: it pulls in a CLI toolkit, costly for every process start

    try:
        return cel.compile(source)
    except (ValueError, RuntimeError) as exc:
        detail = str(exc).split("ERROR: ", 1)[-1]
        raise InvalidInput(f"invalid expression {source!r}: {detail}") from None


def evaluate(source: str, variables: dict[str, Any]) -> Any:
    return compile_expression(source).execute(variables)


def matches(source: str | None, variables: dict[str, Any]) -> bool:
    """A condition: true only when it evaluates to true (a missing field or an error is false)."""
    if source is None:
        return True
    try:
        return evaluate(source, variables) is True
    except Exception:
        return False
