"""Bounded and long variants of the fault and load tests.

CI runs the bounded variant, which finishes in seconds to a minute per test. Set
`STEPKEEPER_LONG_TESTS=1` to run the long variants (more rounds, more events, more examples).
"""

from __future__ import annotations

import os

LONG = os.environ.get("STEPKEEPER_LONG_TESTS", "") not in ("", "0")


def scaled(bounded: int, long: int) -> int:
    """`long` under STEPKEEPER_LONG_TESTS=1, else `bounded`."""
    return long if LONG else bounded
