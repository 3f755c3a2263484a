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
        """A copy of `value` with every secret replaced, walked without recursion (a value from
        skill code may nest deeper than Python's recursion limit)."""
        if not self._pairs:
            return value
        root: list[Any] = [None]
        todo: list[tuple[Any, Any, Any]] = [(value, root, 0)]
        while todo:
            item, parent, slot = todo.pop()
            if isinstance(item, str):
                parent[slot] = self._text(item)
            elif isinstance(item, list):
                parent[slot] = copy = [None] * len(item)
                todo.extend((child, copy, index) for index, child in enumerate(item))
            elif isinstance(item, dict):
                parent[slot] = mapping = {}
                for key, child in item.items():
                    new_key = self._text(key) if isinstance(key, str) else key
                    mapping[new_key] = None
                    todo.append((child, mapping, new_key))
            else:
                parent[slot] = item
        return root[0]

    def _text(self, text: str) -> str:
        for secret, marker in self._pairs:
            text = text.replace(secret, marker)
        return text
