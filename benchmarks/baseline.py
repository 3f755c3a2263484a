"""The floor every durable step pays: one row inserted and committed by bare `sqlite3`."""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path

NAME = "sqlite_commit_ms"
DESCRIPTION = "bare sqlite3 INSERT + COMMIT per row, WAL, synchronous=FULL, same temp dir"


def sqlite_commit_ms(commits: int) -> float:
    """Milliseconds per committed one-row insert, on a fresh file in the temp dir."""
    with tempfile.TemporaryDirectory(prefix="stepkeeper-bench-") as folder:
        connection = sqlite3.connect(Path(folder) / "floor.db", isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
            started = time.perf_counter()
            for n in range(commits):
                connection.execute("BEGIN IMMEDIATE")
                connection.execute("INSERT INTO t (body) VALUES (?)", (f"step {n}",))
                connection.execute("COMMIT")
            elapsed = time.perf_counter() - started
        finally:
            connection.close()
    return elapsed * 1000 / commits
