"""Validation of what a caller registers: skill names, triggers and config."""

from __future__ import annotations

import re
from typing import Any

from engine import cron, flow
from engine.errors import InvalidInput
from engine.limits import MAX_DESCRIPTION_CHARS, MAX_TRIGGERS
from engine.retry import RetryPolicy

SKILL_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
EVENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,255}$")
CONFIG_KEYS = frozenset(
    {
        "retries",
        "retry_backoff",
        "concurrency",
        "priority",
        "idempotency",
        "rate_limit",
        "throttle",
        "debounce",
        "batch_events",
        "singleton",
        "timeouts",
        "cancel_on",
        "expose_as_tool",
        "input_schema",
    }
)


def check_skill_name(name: Any) -> str:
    if not isinstance(name, str) or not SKILL_NAME.match(name):
        raise InvalidInput(
            f"invalid skill name {name!r}: use 1-64 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


MAX_VERSION = 2**63 - 1  # the store keeps versions as 64-bit integers


def check_version(version: Any) -> int | None:
    """A version to look up, or None for the latest; a number past 64 bits would reach the
    database driver and fail there, not as a refusal."""
    if version is not None and (
        isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= MAX_VERSION
    ):
        raise InvalidInput(f"version must be a whole number from 1 to {MAX_VERSION}, got {version!r:.40}")
    return version


def check_event_name(name: Any) -> str:
    if not isinstance(name, str) or not EVENT_NAME.match(name):
        raise InvalidInput(
            f"invalid event name {name!r}: use 1-256 letters, digits and '_.:/-', "
            "starting with a letter or digit"
        )
    return name


def check_description(description: Any) -> str:
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_CHARS:
        raise InvalidInput(f"description must be a string of at most {MAX_DESCRIPTION_CHARS} characters")
    return description


def check_triggers(triggers: Any) -> list[dict[str, Any]]:
    if not isinstance(triggers, list) or len(triggers) > MAX_TRIGGERS:
        raise InvalidInput(f"triggers must be a list of at most {MAX_TRIGGERS} items")
    checked = []
    for index, trigger in enumerate(triggers):
        where = f"triggers[{index}]"
        if not isinstance(trigger, dict):
            raise InvalidInput(f'{where} must be an object like {{"event": "name"}}')
        if "cron" in trigger:
            checked.append(_cron_trigger(trigger, where))
            continue
        if set(trigger) - {"event", "if"} or "event" not in trigger:
            raise InvalidInput(f"{where} takes 'event' and optionally 'if', got {sorted(trigger)}")
        check_event_name(trigger["event"])
        if trigger.get("if") is not None:
            flow.check_expression(trigger["if"], f"{where}.if")
        checked.append({key: value for key, value in trigger.items() if value is not None})
    return checked


def _cron_trigger(trigger: dict[str, Any], where: str) -> dict[str, Any]:
    if set(trigger) - {"cron", "timezone", "catch_up"}:
        raise InvalidInput(
            f"{where} takes 'cron' and optionally 'timezone' and 'catch_up', got {sorted(trigger)}"
        )
    try:
        return {
            "cron": cron.check_cron(trigger["cron"]),
            "timezone": cron.check_timezone(trigger.get("timezone") or "UTC"),
            "catch_up": cron.check_catch_up(trigger.get("catch_up") or "latest"),
        }
    except InvalidInput as exc:
        raise InvalidInput(f"{where}: {exc}") from None


def check_config(config: Any) -> dict[str, Any]:
    if not isinstance(config, dict):
        raise InvalidInput("config must be an object")
    for key in config:
        if key not in CONFIG_KEYS:
            raise InvalidInput(f"unknown config key {key!r}; known keys: {sorted(CONFIG_KEYS)}")
    RetryPolicy.from_config(config)
    if "concurrency" in config:
        config = {**config, "concurrency": flow.check_concurrency(config["concurrency"])}
    if "priority" in config:
        flow.check_priority(config["priority"])
    flow.check_gates(config)
    if "timeouts" in config:
        flow.check_timeouts(config["timeouts"])
    if "cancel_on" in config:
        config = {**config, "cancel_on": flow.check_cancel_on(config["cancel_on"])}
        for rule in config["cancel_on"]:
            check_event_name(rule["event"])
    if "expose_as_tool" in config and not isinstance(config["expose_as_tool"], bool):
        raise InvalidInput("config.expose_as_tool must be true or false")
    if "input_schema" in config:
        check_input_schema(config["input_schema"])
    return config


IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def check_input_schema(schema: Any) -> None:
    """`config.input_schema`: the JSON Schema of the data a skill exposed as a tool takes: an
    object whose property names are identifiers (they become the tool's arguments)."""
    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise InvalidInput('config.input_schema must be a JSON Schema with "type": "object"')
    import jsonschema  # on first use: a costly import for every process start

    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise InvalidInput(f"config.input_schema is not a valid JSON Schema: {exc.message}") from None
    for name in schema.get("properties") or {}:
        if not IDENTIFIER.match(name):
            raise InvalidInput(
                f"config.input_schema property {name!r} must be an identifier (letters, digits, _)"
            )
