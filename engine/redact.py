"""Secrets never reach the store: every stored text has their values replaced by a marker.

A value is replaced as it is and in the encodings it takes on its way through text that skill
code may keep: JSON-escaped (an HTTP response's text echoing a request), URL-encoded (a URL in
an error message) and base64 (a `Basic` credential echoed back), so the stored text cannot be
decoded back to the secret either.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote, quote_plus

MIN_SECRET_CHARS = 4  # shorter values would redact ordinary words
MIN_BASE64_CHARS = 16  # an encoded fragment shorter than this could occur in ordinary text


def encoded_forms(secret: str) -> set[str]:
    """`secret` and the forms it takes when escaped, URL-encoded or base64-encoded inside
    longer data (base64: the characters that depend on the secret alone, at each alignment)."""
    forms = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    forms |= {quote(secret, safe=""), quote(secret), quote_plus(secret)}
    data = secret.encode()
    for shift, skip in ((0, 0), (1, 2), (2, 3)):  # leading bytes of other data, chars they touch
        encoded = base64.b64encode(bytes(shift) + data).decode()
        core = encoded[skip : 4 * ((shift + len(data)) // 3)]
        if len(core) >= MIN_BASE64_CHARS:
            forms |= {core, core.translate(str.maketrans("+/", "-_"))}
    return {form for form in forms if len(form) >= MIN_SECRET_CHARS}


class Redactor:
    def __init__(self, secrets: dict[str, str]) -> None:
        pairs = {
            (form, f"[secret:{name}]")
            for name, value in secrets.items()
            if len(value) >= MIN_SECRET_CHARS
            for form in encoded_forms(value)
        }
        self._pairs = sorted(pairs, key=lambda pair: (-len(pair[0]), pair))

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

    def secret_in(self, text: Any) -> str | None:
        """The name of a secret whose value (in any form) is in `text`, else None: for names and
        ids, which are keys and cannot be replaced by a marker."""
        if isinstance(text, str):
            for secret, marker in self._pairs:
                if secret in text:
                    return marker[len("[secret:") : -1]
        return None

    def _text(self, text: str) -> str:
        for secret, marker in self._pairs:
            text = text.replace(secret, marker)
        return text
