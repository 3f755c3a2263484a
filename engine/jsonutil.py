"""The one JSON form the engine stores and compares: compact, UTF-8, no NaN."""

from __future__ import annotations

import json
from typing import Any

from engine.errors import InvalidInput, PayloadTooLarge


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def encode_limited(value: Any, limit: int, what: str) -> str:
    """Serialize `value`, refusing what is not plain JSON or is larger than `limit` bytes."""
    try:
        text = dumps(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{what} must be plain JSON: {exc}") from None
    size = len(text.encode())
    if size > limit:
        raise PayloadTooLarge(f"{what} is {size} bytes, over the limit of {limit} bytes")
    return text
