"""What both fuzz suites share: JSON strategies, hypothesis settings, a read-only snapshot of the
store, and the judge of whether an error message is specific.

A refusal is only useful to an agent if it says what was wrong with the call, and only safe if
it changed nothing; these helpers state both properties once.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.support.scale import scaled

CI = os.environ.get("CI", "") not in ("", "0", "false")


# pytest-timeout bounds a whole test, however many examples it runs.
TIMEOUT = scaled(170, 3 * 3600)


def fuzz_settings(bounded: int, long: int) -> settings:
    """Few examples in CI (and derandomized, so a failure replays as is), thousands when long."""
    return settings(
        max_examples=scaled(bounded, long),
        deadline=None,
        derandomize=CI,
        database=None if CI else settings.default.database,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# -- JSON values ---------------------------------------------------------------------------

# Text the transports can carry (no lone surrogates), with the odd corners of Unicode in it.
ODD_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
NASTY_STRINGS = [
    "",
    " ",
    "\x00",
    "\x00abc",
    "null",
    "-1",
    "0",
    "../../etc/passwd",
    "%00",
    "%2e%2e%2f",
    "a/b",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "\u202egnp.exe",
    "e\u0301\u0301\u0301",
    "\U0001f4a5" * 8,
    "\ufeffname",
    "NaN",
    "Infinity",
    "1e400",
    "99999999999999999999d",
    "P99999999999999999999D",
    "9" * 40,
    "{{ 7 * 7 }}",
    "${jndi:x}",
    "x" * 300,
    "é" * 70,
]
HUGE_INTS = [2**31, 2**63, -(2**63) - 1, 2**64, 10**30, -(10**30), 2**1000]
EDGE_NUMBERS = [0, -1, 1, 0.5, -0.0, 1e308, -1e308, 5e-324, 600, 600.0001, 1e-9]

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(HUGE_INTS),
    st.floats(allow_nan=False, allow_infinity=False),
    ODD_TEXT,
    st.sampled_from(NASTY_STRINGS),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(ODD_TEXT, children, max_size=4),
    max_leaves=16,
)


def deep_list(depth: int) -> Any:
    """Lists nested `depth` deep; the SDK's client serializes up to about 250 levels."""
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


EDGE_VALUES = st.one_of(
    st.sampled_from(NASTY_STRINGS),
    st.sampled_from(HUGE_INTS),
    st.sampled_from(EDGE_NUMBERS),
    st.booleans(),
    st.none(),
    st.just([]),
    st.just({}),
    st.integers(2, 120).map(deep_list),
    st.integers(2, 120).map(lambda depth: {"a": deep_list(depth)}),
    st.integers(100, 2000).map(lambda n: list(range(n))),
    st.integers(1_000, 300_000).map(lambda n: "x" * n),
    JSON_VALUES,
)


# -- the store -----------------------------------------------------------------------------

# Tables whose every byte is compared; the others are compared by row count.
CHECKSUMMED = ("skills", "skill_versions", "runs", "events", "schedules", "steps")
BUSY_STATUSES = ("queued", "running", "sleeping", "waiting")  # the fuzzed skills never wait long

Snapshot = dict[str, tuple[int, str]]


def snapshot(database: Path) -> Snapshot:
    """Row count of every table, and a digest of the rows of the tables that matter most,
    read through a read-only connection (the server's own writes are not disturbed)."""
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)
    try:
        listed = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        names = sorted(row[0] for row in connection.execute(listed))
        found: Snapshot = {}
        for name in names:
            count = connection.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
            digest = hashlib.sha256()
            if name in CHECKSUMMED:
                for row in connection.execute(f'SELECT * FROM "{name}" ORDER BY rowid'):
                    digest.update(repr(row).encode())
            found[name] = (count, digest.hexdigest()[:16])
        return found
    finally:
        connection.close()


def busy_runs(database: Path) -> int:
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)
    try:
        marks = ", ".join("?" for _ in BUSY_STATUSES)
        query = f"SELECT count(*) FROM runs WHERE status IN ({marks})"
        return connection.execute(query, BUSY_STATUSES).fetchone()[0]
    finally:
        connection.close()


def settled(database: Path, timeout: float = 15.0) -> Snapshot:
    """The store once the work a successful call started has finished: no run left unfinished,
    and two snapshots 50 ms apart alike."""
    deadline = time.monotonic() + timeout
    last = snapshot(database)
    while True:
        time.sleep(0.05)
        now = snapshot(database)
        if now == last and busy_runs(database) == 0:
            return now
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the store did not settle within {timeout} s ({busy_runs(database)} runs busy)"
            )
        last = now


def changed_tables(before: Snapshot, after: Snapshot) -> list[str]:
    return sorted(name for name in set(before) | set(after) if before.get(name) != after.get(name))


# -- error messages ------------------------------------------------------------------------

TOOL_PREFIX = re.compile(r"^Error executing tool [\w-]+(: |$)")
# A Python exception's class name says what broke inside, not what was wrong with the call;
# a compile error of skill code is the exception: its SyntaxError is the caller's problem.
PYTHON_EXCEPTION = re.compile(
    r"(?<![\w.])(?!SyntaxError|IndentationError|TabError)[A-Z][A-Za-z0-9]*(Error|Exception)\b"
)
POSITION = re.compile(r"\bline \d+, column \d+")
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+")
BARE = {"", "error", "internal error", "internal server error", "unknown error", "bad request", "none"}


def words_about(arguments: Any, names: Iterable[str]) -> set[str]:
    """What a message may mention to show it is about this input: the field names (and their
    parts), and the argument values (4 characters or more) as given or as Python quotes them
    (quoted, even short: `''` is how a message names an empty value)."""
    found = {name for name in names if len(name) >= 2}
    found |= {part for name in names for part in name.split("_") if len(part) >= 3}
    values: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                values.add(str(key)[:30])
                walk(item)
        elif isinstance(value, list):
            for item in value[:20]:
                walk(item)
        elif isinstance(value, str):
            values.update({value[:30], repr(value)[1:31], repr(value)[:30]})
        elif isinstance(value, bool | int | float):
            values.add(str(value)[:30])

    walk(arguments)
    quoted = {value for value in values if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\""}
    return found | quoted | {value for value in values if len(value) >= 4}


def unspecific(message: str, about: set[str]) -> str | None:
    """Why `message` is not a specific answer to a bad call, or None when it is one."""
    body = TOOL_PREFIX.sub("", message, count=1).strip()
    if body.lower() in BARE:
        return "empty or bare message"
    if TRACEBACK.search(message):
        return "a Python traceback"
    quoted_input = " ".join(about)
    if any(name.group(0) not in quoted_input for name in PYTHON_EXCEPTION.finditer(body)):
        return "names a Python exception class instead of the problem"
    lowered = body.lower()
    if POSITION.search(body):  # where in the caller's code the problem is
        return None
    if not any(word.lower() in lowered for word in about):
        return "mentions neither a field nor a value of the call"
    return None
