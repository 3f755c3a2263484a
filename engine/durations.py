"""Durations and instants as skills and configuration write them."""

from __future__ import annotations

import datetime as dt
import re

from engine.errors import InvalidInput

_SHORT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_ISO = re.compile(
    r"^P(?:(?P<w>\d+(?:\.\d+)?)W)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: object) -> float:
    """Seconds from a number, a short form (`500ms`, `30s`, `5m`, `2h`, `1d`) or ISO-8601 (`PT5M`)."""
    if isinstance(value, bool):
        raise InvalidInput(f"duration must be seconds or a string like '5m', got {value!r}")
    if isinstance(value, int | float):
        if value < 0 or value != value:
            raise InvalidInput(f"duration must not be negative, got {value!r}")
        return float(value)
    if isinstance(value, str):
        short = _SHORT.match(value)
        if short:
            return float(short.group(1)) * _UNIT_SECONDS[short.group(2)]
        iso = _ISO.match(value.strip().upper())
        if iso and value.strip().upper() not in ("P", "PT"):
            parts = {k: float(v) for k, v in iso.groupdict().items() if v}
            return (
                parts.get("w", 0) * 604800
                + parts.get("d", 0) * 86400
                + parts.get("h", 0) * 3600
                + parts.get("m", 0) * 60
                + parts.get("s", 0)
            )
    raise InvalidInput(
        f"invalid duration {value!r}: use seconds, '500ms', '30s', '5m', '2h', '1d' or ISO-8601 'PT5M'"
    )


def parse_instant(value: object) -> float:
    """Epoch seconds from an ISO-8601 timestamp (naive ones are UTC) or a number of epoch seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=dt.UTC)
            return parsed.timestamp()
    raise InvalidInput(f"invalid time {value!r}: use ISO-8601, e.g. '2026-01-31T09:00:00Z'")


def iso(ts: float | None) -> str | None:
    """ISO-8601 in UTC with milliseconds, the form every surface shows."""
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
