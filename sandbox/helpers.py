"""Read-only helpers for skill code, in place of raw modules (which reach `os` and `sys`)."""

from __future__ import annotations

import datetime as dt
import json as _json
import math as _math
from typing import Any

import re2

from sandbox.guards import Capability

MAX_JSON_CHARS = 1024 * 1024


class JsonHelper(Capability):
    exposed = frozenset({"dumps", "loads"})

    def dumps(self, value: Any, indent: int | None = None, sort_keys: bool = False) -> str:
        text = _json.dumps(value, indent=indent, sort_keys=sort_keys, ensure_ascii=False)
        if len(text) > MAX_JSON_CHARS:
            raise ValueError(f"JSON text is over the limit of {MAX_JSON_CHARS} characters")
        return text

    def loads(self, text: str | bytes) -> Any:
        if len(text) > MAX_JSON_CHARS:
            raise ValueError(f"JSON text is over the limit of {MAX_JSON_CHARS} characters")
        return _json.loads(text)


_MATH_NAMES = [
    "ceil",
    "floor",
    "sqrt",
    "exp",
    "log",
    "log10",
    "log2",
    "sin",
    "cos",
    "tan",
    "asin",
    "acos",
    "atan",
    "atan2",
    "hypot",
    "fabs",
    "fsum",
    "isclose",
    "isfinite",
    "isinf",
    "isnan",
    "trunc",
    "gcd",
    "comb",
    "perm",
    "prod",
    "dist",
    "degrees",
    "radians",
    "copysign",
]


class MathHelper(Capability):
    exposed = frozenset({*_MATH_NAMES, "pi", "e", "inf", "nan", "tau"})
    pi, e, inf, nan, tau = _math.pi, _math.e, _math.inf, _math.nan, _math.tau

    def __getattr__(self, name: str) -> Any:
        if name in _MATH_NAMES:
            return getattr(_math, name)
        raise AttributeError(name)


class MatchResult(Capability):
    """A regular-expression match as plain values."""

    exposed = frozenset({"group", "groups", "groupdict", "start", "end", "span"})

    def __init__(self, match: Any) -> None:
        self._match = match

    def group(self, *indexes: int | str) -> Any:
        return self._match.group(*indexes)

    def groups(self) -> tuple[Any, ...]:
        return self._match.groups()

    def groupdict(self) -> dict[str, Any]:
        return self._match.groupdict()

    def start(self, group: int | str = 0) -> int:
        return self._match.start(group)

    def end(self, group: int | str = 0) -> int:
        return self._match.end(group)

    def span(self, group: int | str = 0) -> tuple[int, int]:
        return self._match.span(group)


class RegexHelper(Capability):
    """`re` backed by RE2: linear time, so no pattern can backtrack catastrophically."""

    exposed = frozenset({"search", "match", "fullmatch", "findall", "sub", "split", "escape"})

    @staticmethod
    def _wrap(match: Any) -> MatchResult | None:
        return None if match is None else MatchResult(match)

    def search(self, pattern: str, text: str) -> MatchResult | None:
        return self._wrap(re2.search(pattern, text))

    def match(self, pattern: str, text: str) -> MatchResult | None:
        return self._wrap(re2.match(pattern, text))

    def fullmatch(self, pattern: str, text: str) -> MatchResult | None:
        return self._wrap(re2.fullmatch(pattern, text))

    def findall(self, pattern: str, text: str) -> list[Any]:
        return list(re2.findall(pattern, text))

    def sub(self, pattern: str, replacement: str, text: str, count: int = 0) -> str:
        return re2.sub(pattern, replacement, text, count=count)

    def split(self, pattern: str, text: str, maxsplit: int = 0) -> list[str]:
        return list(re2.split(pattern, text, maxsplit=maxsplit))

    def escape(self, text: str) -> str:
        return re2.escape(text)


class DatetimeHelper(Capability):
    """Date and time values; reading the clock is `step.now(id)`, so it is replay-safe."""

    exposed = frozenset({"fromisoformat", "timedelta", "date", "utc", "fromtimestamp"})
    timedelta = dt.timedelta
    utc = dt.UTC

    def fromisoformat(self, text: str) -> dt.datetime:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)

    def fromtimestamp(self, seconds: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(seconds, dt.UTC)

    def date(self, year: int, month: int, day: int) -> dt.date:
        return dt.date(year, month, day)


def helper_globals() -> dict[str, Any]:
    return {
        "json": JsonHelper(),
        "math": MathHelper(),
        "re": RegexHelper(),
        "datetime": DatetimeHelper(),
    }
