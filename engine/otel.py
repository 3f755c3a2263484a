"""A run's trace as OpenTelemetry-shaped JSON (the OTLP/JSON layout of `resourceSpans`), so it
can be loaded into tools that read traces: the run is the root span, each step a child span,
each failed attempt an event on its step, and a child run's id an attribute of its step."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

OK, ERROR, UNSET = 1, 2, 0
FAILED = {"failed", "cancelled"}


def _nanos(value: str | None) -> str | None:
    if not value:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return str(int(moment.timestamp() * 1_000_000_000))


def _hex_id(text: str, length: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _attribute(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    if isinstance(value, float):
        return {"key": key, "value": {"doubleValue": value}}
    return {"key": key, "value": {"stringValue": str(value)}}


def _status(status: str, error: dict[str, Any] | None) -> dict[str, Any]:
    if status in FAILED:
        message = f"{error.get('type')}: {error.get('message')}" if error else status
        return {"code": ERROR, "message": message}
    return {"code": OK if status == "completed" else UNSET}


def otel_trace(trace: dict[str, Any]) -> dict[str, Any]:
    run = trace["run"]
    trace_id = _hex_id(run["run_id"], 32)
    root_id = _hex_id(run["run_id"] + "/run", 16)
    root = {
        "traceId": trace_id,
        "spanId": root_id,
        "name": f"run {run['function']}",
        "kind": 1,
        "startTimeUnixNano": _nanos(run["started_at"] or run["created_at"]),
        "endTimeUnixNano": _nanos(run["ended_at"]),
        "attributes": [
            _attribute("stepkeeper.run_id", run["run_id"]),
            _attribute("stepkeeper.function", run["function"]),
            _attribute("stepkeeper.version", run["version"]),
            _attribute("stepkeeper.trigger", run["trigger"]),
            _attribute("stepkeeper.status", run["status"]),
        ],
        "status": _status(run["status"], run["error"]),
    }
    if run.get("parent_run_id"):
        root["attributes"].append(_attribute("stepkeeper.parent_run_id", run["parent_run_id"]))
    spans = [root, *(_step_span(span, trace_id, root_id, run["run_id"]) for span in trace["spans"])]
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [_attribute("service.name", "stepkeeper")]},
                "scopeSpans": [{"scope": {"name": "stepkeeper"}, "spans": spans}],
            }
        ]
    }


def _step_span(span: dict[str, Any], trace_id: str, parent_id: str, run_id: str) -> dict[str, Any]:
    attempts = span.get("attempts") or []
    attributes = [
        _attribute("stepkeeper.step", span["key"]),
        _attribute("stepkeeper.op", span["op"]),
        _attribute("stepkeeper.status", span["status"]),
        _attribute("stepkeeper.attempts", len(attempts)),
    ]
    if span.get("child_run_id"):
        attributes.append(_attribute("stepkeeper.child_run_id", span["child_run_id"]))
    for name, value in (span.get("llm") or {}).items():
        if value is not None:
            attributes.append(_attribute(f"gen_ai.{name}", value))
    events = [
        {
            "name": f"attempt {attempt['attempt']} failed",
            "timeUnixNano": _nanos(attempt.get("ended_at")),
            "attributes": [_attribute("exception.message", (attempt.get("error") or {}).get("message", ""))],
        }
        for attempt in attempts
        if attempt.get("status") == "failed" and attempt.get("error")
    ]
    started = (
        span.get("started_at")
        or span.get("queued_at")
        or (attempts[0].get("started_at") if attempts else None)
    )
    return {
        "traceId": trace_id,
        "spanId": _hex_id(f"{run_id}/{span['key']}", 16),
        "parentSpanId": parent_id,
        "name": f"{span['op']} {span['key']}",
        "kind": 1,
        "startTimeUnixNano": _nanos(started),
        "endTimeUnixNano": _nanos(span.get("ended_at")),
        "attributes": attributes,
        "events": events,
        "status": _status(span["status"], span.get("error")),
    }
