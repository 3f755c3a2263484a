"""One table of medians for people, and the same figures as JSON for machines."""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Figure:
    name: str
    unit: str
    stepkeeper: float
    baseline: float | None = None  # what the figure is compared with, side by side
    baseline_name: str | None = None

    @property
    def ratio(self) -> float | None:
        return None if not self.baseline else self.stepkeeper / self.baseline


def table(figures: list[Figure]) -> str:
    lines = [f"{'figure':<28} {'unit':<8} {'stepkeeper':>11} {'baseline':>10} {'ratio':>7}  baseline is"]
    for figure in figures:
        baseline = "" if figure.baseline is None else f"{figure.baseline:10.3f}"
        ratio = "" if figure.ratio is None else f"{figure.ratio:7.2f}"
        lines.append(
            f"{figure.name:<28} {figure.unit:<8} {figure.stepkeeper:11.3f} {baseline:>10} {ratio:>7}  "
            f"{figure.baseline_name or ''}"
        )
    return "\n".join(lines)


def write_json(path: Path, figures: list[Figure], meta: dict[str, Any]) -> None:
    results = [{**asdict(figure), "ratio": figure.ratio} for figure in figures]
    path.write_text(json.dumps({"results": results, "meta": meta}, indent=2) + "\n")


def machine() -> dict[str, Any]:
    import os

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
