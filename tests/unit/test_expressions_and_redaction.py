from __future__ import annotations

import pytest

from engine.errors import InvalidInput
from engine.expressions import compile_expression, matches
from engine.ids import new_id
from engine.redact import Redactor


def test_conditions_see_event_and_async() -> None:
    variables = {"event": {"data": {"id": 7}}, "async": {"data": {"id": 7, "ok": True}}}
    assert matches("async.data.id == event.data.id && async.data.ok", variables)
    assert not matches("async.data.id == 8", variables)
    assert not matches("async.data.missing == 1", variables)  # a missing field is no match, not a crash
    assert matches(None, variables)


def test_invalid_expressions_say_where() -> None:
    with pytest.raises(InvalidInput, match=r"1:16"):
        compile_expression("event.data.x ==")


def test_redactor_replaces_secret_values_everywhere() -> None:
    redact = Redactor({"TOKEN": "s3cr3t-value", "SHORT": "ab"})
    assert redact({"k": ["Bearer s3cr3t-value"], "s3cr3t-value": 1}) == {
        "k": ["Bearer [secret:TOKEN]"],
        "[secret:TOKEN]": 1,
    }
    assert redact("about") == "about"  # values under 4 characters are not redacted


def test_ids_are_unique_and_time_ordered() -> None:
    ids = [new_id("run") for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(i.startswith("run_") and len(i) == 30 for i in ids)
