"""`step.ai`: one LLM call, made by the engine (the worker only sends the request).

The outcome of one attempt is either an answer to store as the step's result (with the model,
latency and token counts for the trace) or a failure the activation records under the step's
retry rules: 429 and 5xx, timeouts, connection errors and answers that break the schema are
retried (after `Retry-After` when the provider sends one); other 4xx answers fail the step with
the provider's message; no provider configured fails it with how to configure one.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

from engine.http_effect import import_httpx
from engine.limits import MAX_HTTP_RESPONSE_BYTES
from engine.llm_config import LlmProvider, LlmSettings
from engine.llm_providers import (
    LlmAnswer,
    LlmCall,
    MalformedAnswer,
    error_message,
    http_request,
    parse_answer,
)

MAX_TOKENS_DEFAULT = 1024
MAX_TOKENS_LIMIT = 64_000
MAX_RETRY_AFTER_S = 3600.0
MAX_SCHEMA_DEPTH = 32
NOT_CONFIGURED = (
    "step.ai has no LLM provider configured: set STEPKEEPER_LLM_PROVIDER (anthropic or openai), "
    "STEPKEEPER_LLM_MODEL, STEPKEEPER_LLM_API_KEY and, for a local or compatible server, "
    "STEPKEEPER_LLM_BASE_URL"
)
REQUEST_FIELDS = {"prompt", "messages", "system", "model", "schema", "max_tokens", "temperature"}


@dataclass
class AiOutcome:
    output: Any = None
    meta: dict[str, Any] = field(default_factory=dict)
    input_tokens: int | None = None
    output_tokens: int | None = None
    error: dict[str, Any] | None = None
    retriable: bool = False
    retry_after: float | None = None


class BadRequest(Exception):
    """The skill's `step.ai` arguments are malformed: the step fails without retries."""


class AiEffect:
    def __init__(self, settings: LlmSettings | None) -> None:
        self.settings = settings
        self._client: Any = None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def perform(self, request: Any, attempt: int) -> AiOutcome:
        """Make the `attempt`-th try (1 is the first) of a `step.ai` request."""
        try:
            call = check_request(request)
        except BadRequest as exc:
            return _failure("NonRetriableError", str(exc), retriable=False)
        if self.settings is None:
            return _failure("LlmNotConfigured", NOT_CONFIGURED, retriable=False)
        provider = self.settings.provider_for(attempt)
        if provider is not self.settings.primary:
            call = LlmCall(call.messages, call.system, None, call.schema, call.max_tokens, call.temperature)
        started = time.perf_counter()
        outcome = self._attempt(provider, call)
        outcome.meta = {
            "provider": provider.kind,
            "model": outcome.meta.get("model") or call.model or provider.model,
            "latency_ms": round((time.perf_counter() - started) * 1000, 1),
            "attempt": attempt,
            "fallback": provider is not self.settings.primary,
        }
        return outcome

    def _attempt(self, provider: LlmProvider, call: LlmCall) -> AiOutcome:
        httpx = import_httpx()
        if self._client is None:
            self._client = httpx.Client(follow_redirects=False)
        url, headers, body = http_request(provider, call)
        assert self.settings is not None
        try:
            response = self._client.post(url, json=body, headers=headers, timeout=self.settings.timeout_s)
        except httpx.TimeoutException:
            message = f"{provider.describe()} did not answer within {self.settings.timeout_s:g} s"
            return _failure("LlmTimeout", message, retriable=True)
        except httpx.HTTPError as exc:
            return _failure(
                "LlmUnavailable", f"{provider.describe()}: {type(exc).__name__}: {exc}", retriable=True
            )
        if len(response.content) > MAX_HTTP_RESPONSE_BYTES:
            return _failure("LlmError", "the provider's answer is over 1 MiB", retriable=False)
        payload = _json_or_text(response)
        if response.status_code == 429 or response.status_code >= 500:
            message = f"{provider.describe()} answered {response.status_code}: " + error_message(
                payload, response.reason_phrase
            )
            outcome = _failure("LlmUnavailable", message, retriable=True)
            outcome.retry_after = retry_after_seconds(response.headers.get("retry-after"))
            return outcome
        if 300 <= response.status_code < 400:
            where = response.headers.get("location", "?")
            message = (
                f"{provider.describe()} redirected the request to {where}: set STEPKEEPER_LLM_BASE_URL to it"
            )
            return _failure("LlmRequestRefused", message, retriable=False)
        if response.status_code >= 400:
            message = f"{provider.describe()} refused the request ({response.status_code}): " + error_message(
                payload, response.reason_phrase
            )
            return _failure("LlmRequestRefused", message, retriable=False)
        import jsonschema  # on first use: a costly import for every process start

        try:
            answer = parse_answer(provider, call, payload)
            if call.schema is not None:
                jsonschema.validate(answer.output, call.schema)
        except MalformedAnswer as exc:
            return _invalid_answer(str(exc))
        except jsonschema.ValidationError as exc:
            return _invalid_answer(f"the answer does not match the schema: {exc.message}")
        return _answered(answer)


def check_request(request: Any) -> LlmCall:
    if not isinstance(request, dict):
        raise BadRequest("step.ai takes keyword arguments")
    unknown = set(request) - REQUEST_FIELDS
    if unknown:
        raise BadRequest(f"step.ai got unknown arguments: {', '.join(sorted(unknown))}")
    prompt, messages = request.get("prompt"), request.get("messages")
    if (prompt is None) == (messages is None):
        raise BadRequest("step.ai needs prompt= or messages= (one of them)")
    if prompt is not None:
        if not isinstance(prompt, str) or not prompt:
            raise BadRequest("prompt must be a non-empty string")
        messages = [{"role": "user", "content": prompt}]
    _check_messages(messages)
    system, model, schema = request.get("system"), request.get("model"), request.get("schema")
    if system is not None and not isinstance(system, str):
        raise BadRequest("system must be a string")
    if model is not None and (not isinstance(model, str) or not model):
        raise BadRequest("model must be a non-empty string")
    if schema is not None:
        _check_schema(schema)
    return LlmCall(
        messages=messages,
        system=system,
        model=model,
        schema=schema,
        max_tokens=_max_tokens(request.get("max_tokens")),
        temperature=_temperature(request.get("temperature")),
    )


def retry_after_seconds(header: str | None) -> float | None:
    """`Retry-After` as seconds from now (it may be seconds or an HTTP date), capped at an hour."""
    if not header:
        return None
    try:
        seconds = float(header)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(header).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_S)


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty list of {role, content}")
    for message in messages:
        if not isinstance(message, dict) or set(message) != {"role", "content"}:
            raise BadRequest("each message must be {role, content}")
        if message["role"] not in ("user", "assistant") or not isinstance(message["content"], str):
            raise BadRequest("a message's role is user or assistant and its content a string")


def _check_schema(schema: Any) -> None:
    import jsonschema

    if not isinstance(schema, dict):
        raise BadRequest("schema must be a JSON Schema object")
    if _depth(schema) > MAX_SCHEMA_DEPTH:
        raise BadRequest(f"schema is nested too deeply (over {MAX_SCHEMA_DEPTH} levels)")
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise BadRequest(f"schema is not a valid JSON Schema: {exc.message}") from None
    except RecursionError:
        raise BadRequest("schema is nested too deeply") from None


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in `value`, found without recursion."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth <= MAX_SCHEMA_DEPTH:  # past the limit there is no need to look further
                todo.extend(
                    (child, depth + 1) for child in (item.values() if isinstance(item, dict) else item)
                )
    return deepest


def _max_tokens(value: Any) -> int:
    if value is None:
        return MAX_TOKENS_DEFAULT
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOKENS_LIMIT:
        raise BadRequest(f"max_tokens must be an integer from 1 to {MAX_TOKENS_LIMIT}")
    return value


def _temperature(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 2:
        raise BadRequest("temperature must be a number from 0 to 2")
    return float(value)


def _json_or_text(response: Any) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text[:500]


def _failure(kind: str, message: str, *, retriable: bool) -> AiOutcome:
    return AiOutcome(error={"type": kind, "message": message}, retriable=retriable)


def _invalid_answer(message: str) -> AiOutcome:
    outcome = _failure("LlmInvalidAnswer", message, retriable=True)
    outcome.retry_after = 0.0  # ask again at once: waiting does not make an answer valid
    return outcome


def _token_count(value: Any) -> int | None:
    """A provider's token count, if it is a plausible one (it is stored in an integer column)."""
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31
    return value if ok else None


def _answered(answer: LlmAnswer) -> AiOutcome:
    return AiOutcome(
        output=answer.output,
        meta={"model": answer.model},
        input_tokens=_token_count(answer.input_tokens),
        output_tokens=_token_count(answer.output_tokens),
    )
