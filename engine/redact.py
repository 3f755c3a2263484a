"""Secrets never reach the store: every stored text has their values replaced by a marker."""

from __future__ import annotations

from typing import Any

MIN_SECRET_CHARS = 4  # shorter values would redact ordinary words


class Redactor:
    def __init__(self, secrets: dict[str, str]) -> None:
        pairs = [
            (value, f"[secret:{name}]") for name, value in secrets.items() if len(value) >= MIN_SECRET_CHARS
        ]
        self._pairs = sorted(pairs, key=lambda pair: -len(pair[0]))

    def __call__(self, value: Any) -> Any:
        if not self._pairs:
            return value
        if isinstance(value, str):
            for secret, marker in self._pairs:
                value = value.replace(secret, marker)
            return value
        if isinstance(value, list):
            return [self(item) for item in value]
        if isinstance(value, dict):
            return {self(key): self(item) for key, item in value.items()}
        return value
