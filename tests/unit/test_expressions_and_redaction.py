from __future__ import annotations

import base64
import json
from urllib.parse import quote, quote_plus

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


def test_redactor_replaces_the_escaped_and_encoded_forms_a_secret_takes_in_echoed_text() -> None:
    secret = 'k3y/with+odd="chars"&more'
    redact = Redactor({"KEY": secret})
    echoed = json.dumps({"got": {"token": secret}, "path": "/hook?key=" + quote_plus(secret)})
    basic = "Basic " + base64.b64encode(b"user:" + secret.encode()).decode()
    redacted = redact({"text": echoed, "header": basic, "url": "/x/" + quote(secret, safe="")})
    assert secret not in json.dumps(redacted) and "[secret:KEY]" in redacted["text"]
    assert json.dumps(secret)[1:-1] not in redacted["text"] and quote_plus(secret) not in redacted["text"]
    assert redacted["url"] == "/x/[secret:KEY]" and "[secret:KEY]" in redacted["header"]
    assert redact.secret_in("step-" + secret) == "KEY" and redact.secret_in("plain words") is None


def test_ids_are_unique_and_time_ordered() -> None:
    ids = [new_id("run") for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(i.startswith("run_") and len(i) == 30 for i in ids)
