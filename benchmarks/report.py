"""The figures as one table for people and as JSON for machines, with what they ran on."""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

PRIMARY = "stepkeeper"
COMPARED = "dbos"


@dataclass(frozen=True)
class Figure:
    """One measured quantity: a median per engine ("stepkeeper" first; a compared engine adds
    its own column), optionally set beside a baseline such as the bare SQLite commit."""

    name: str
    unit: str
    values: dict[str, float]
    baseline: float | None = None
    baseline_name: str | None = None

    @property
    def ratio(self) -> float | None:
        """stepkeeper's figure over the baseline's (how many floors one step costs)."""
        if not self.baseline or PRIMARY not in self.values:
            return None
        return self.values[PRIMARY] / self.baseline

    @property
    def versus(self) -> float | None:
        """stepkeeper's figure over the compared engine's, when one was measured."""
        other = self.values.get(COMPARED)
        if not other or PRIMARY not in self.values:
            return None
        return self.values[PRIMARY] / other

    def as_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "name": self.name,
            "unit": self.unit,
            PRIMARY: self.values.get(PRIMARY),
            COMPARED: self.values.get(COMPARED),
            "ratio": self.versus,
        }
        if self.baseline is not None:
            row.update(baseline=self.baseline, baseline_name=self.baseline_name, baseline_ratio=self.ratio)
        return row


def table(figures: list[Figure], baselines: dict[str, str]) -> str:
    """The figures, one row each, then what each baseline named in them is."""
    engines = list(dict.fromkeys(engine for figure in figures for engine in figure.values))
    header = ["figure", "unit", *engines, "baseline", "ratio", *(["÷ dbos"] if COMPARED in engines else [])]
    rows = [header, *(_row(figure, engines) for figure in figures)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(width) if column < 2 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    named = dict.fromkeys(figure.baseline_name for figure in figures if figure.baseline_name)
    notes = [f"baseline {name}: {baselines.get(name, '')}" for name in named]
    return "\n".join([*lines, *notes])


def _row(figure: Figure, engines: list[str]) -> list[str]:
    values = [_number(figure.values.get(engine)) for engine in engines]
    ratio = "" if figure.ratio is None else f"{figure.ratio:.2f}x"
    versus = ["" if figure.versus is None else f"{figure.versus:.2f}x"] if COMPARED in engines else []
    return [figure.name, figure.unit, *values, _number(figure.baseline), ratio, *versus]


def _number(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:,.1f}" if value >= 100 else f"{value:.3f}"


def write_json(path: Path, figures: list[Figure], meta: dict[str, Any]) -> None:
    document = {"results": [figure.as_json() for figure in figures], "meta": meta}
    path.write_text(json.dumps(document, indent=2) + "\n")


def machine() -> dict[str, Any]:
    """What the figures were measured on, so that two result files can be compared fairly."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpus": os.cpu_count(),
        "sqlite": sqlite3.sqlite_version,
        "sqlalchemy": _version("sqlalchemy"),
        "temp_dir": tempfile.gettempdir(),
        "temp_filesystem": _filesystem(tempfile.gettempdir()),
        "commit": _git_commit(),
    }


def _filesystem(path: str) -> str | None:
    """The type of the file system holding `path` (ext4, tmpfs...), from /proc/mounts on Linux."""
    try:
        mounts = [line.split()[1:3] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return None
    resolved = Path(path).resolve()
    holding = [(point, kind) for point, kind in mounts if resolved.is_relative_to(point)]
    return max(holding, key=lambda mount: len(mount[0]))[1] if holding else None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    """HEAD of the working tree, marked "+dirty" when it has changes; None outside git."""
    try:
        head = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{head}+dirty" if dirty else head


def _git(*args: str) -> str:
    folder = Path(__file__).resolve().parent
    result = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, check=True)
    return result.stdout.strip()
