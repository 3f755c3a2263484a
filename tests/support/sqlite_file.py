"""Read a running server's SQLite file from the test, read-only, without disturbing its writes."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any


def scalar(database: Path, sql: str, *params: Any) -> Any:
    """The first column of the first row of `sql`."""
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)) as connection:
        return connection.execute(sql, params).fetchone()[0]


def row_counts(database: Path) -> dict[str, int]:
    """Rows per table."""
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)) as connection:
        names = [
            row[0]
            for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        return {name: connection.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in names}
