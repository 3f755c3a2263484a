"""The two wire formats `step.ai` speaks, as plain JSON over httpx (no provider SDK):
Anthropic's Messages API and the OpenAI chat-completions API (which Ollama, vLLM and most local
servers also speak). A JSON-schema answer uses each one's native structured output: a forced
tool call on Anthropic, `response_format: json_schema` on OpenAI.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from engine.llm_config import LlmProvider

ANTHROPIC_VERSION = "2023-06-01"
ANSWER_TOOL = "answer"
WRAPPED = "value"  # both APIs want an object at the root of a schema: others are wrapped in one


@dataclass(frozen=True)
class LlmCall:
    """A checked `step.ai` request."""

    messages: list[dict[str, str]]
    system: str | None
    model: str | None
    schema: dict[str, Any] | None
    max_tokens: int
    temperature: float | None


@dataclass(frozen=True)
class LlmAnswer:
    output: Any  # the text, or the JSON value for a schema (not yet checked against it)
    model: str
    input_tokens: int | None
    output_tokens: int | None


class MalformedAnswer(Exception):
    """The provider answered 2xx with something that is not an answer of the asked shape."""


def root_schema(schema: dict[str, Any]) -> dict[str, Any]:
    if schema.get("type") == "object":
        return schema
    return {"type": "object", "properties": {WRAPPED: schema}, "required": [WRAPPED]}


def unwrap(schema: dict[str, Any], value: Any) -> Any:
    if schema.get("type") == "object":
        return value
    if not isinstance(value, dict) or WRAPPED not in value:
        raise MalformedAnswer(f"the structured answer has no {WRAPPED!r} field")
    return value[WRAPPED]


def http_request(provider: LlmProvider, call: LlmCall) -> tuple[str, dict[str, str], dict[str, Any]]:
    """(url, headers, JSON body) for one call."""
    if provider.kind == "anthropic":
        return _anthropic_request(provider, call)
    return _openai_request(provider, call)


def parse_answer(provider: LlmProvider, call: LlmCall, body: Any) -> LlmAnswer:
    try:
        if provider.kind == "anthropic":
            return _anthropic_answer(provider, call, body)
        return _openai_answer(provider, call, body)
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise MalformedAnswer(
            f"the provider's answer is not in the {provider.kind} format ({exc!r})"
        ) from None


def error_message(body: Any, fallback: str) -> str:
    """The provider's own words for an error (both formats put them in `error.message`)."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    if isinstance(error, str):
        return error
    return fallback


def _anthropic_request(provider: LlmProvider, call: LlmCall) -> tuple[str, dict[str, str], dict[str, Any]]:
    body: dict[str, Any] = {
        "model": call.model or provider.model,
        "max_tokens": call.max_tokens,
        "messages": call.messages,
    }
    if call.system:
        body["system"] = call.system
    if call.temperature is not None:
        body["temperature"] = call.temperature
    if call.schema is not None:
        body["tools"] = [
            {
                "name": ANSWER_TOOL,
                "description": "Give your answer in this structure.",
                "input_schema": root_schema(call.schema),
            }
        ]
        body["tool_choice"] = {"type": "tool", "name": ANSWER_TOOL}
    headers = {"anthropic-version": ANTHROPIC_VERSION}
    if provider.api_key:
        headers["x-api-key"] = provider.api_key
    return f"{provider.base_url}/v1/messages", headers, body


def _anthropic_answer(provider: LlmProvider, call: LlmCall, body: dict[str, Any]) -> LlmAnswer:
    blocks = body["content"]
    if call.schema is not None:
        uses = [block for block in blocks if block.get("type") == "tool_use"]
        if not uses:
            raise MalformedAnswer("the answer has no tool_use block with the structured answer")
        output = unwrap(call.schema, uses[0]["input"])
    else:
        output = "".join(block.get("text", "") for block in blocks if block.get("type") == "text")
    usage = body.get("usage") or {}
    return LlmAnswer(
        output, body.get("model") or provider.model, usage.get("input_tokens"), usage.get("output_tokens")
    )


def _openai_request(provider: LlmProvider, call: LlmCall) -> tuple[str, dict[str, str], dict[str, Any]]:
    messages = ([{"role": "system", "content": call.system}] if call.system else []) + call.messages
    body: dict[str, Any] = {
        "model": call.model or provider.model,
        "max_tokens": call.max_tokens,
        "messages": messages,
    }
    if call.temperature is not None:
        body["temperature"] = call.temperature
    if call.schema is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": ANSWER_TOOL, "schema": root_schema(call.schema)},
        }
    headers = {"authorization": f"Bearer {provider.api_key}"} if provider.api_key else {}
    return f"{provider.base_url}/chat/completions", headers, body


def _openai_answer(provider: LlmProvider, call: LlmCall, body: dict[str, Any]) -> LlmAnswer:
    content = body["choices"][0]["message"]["content"]
    if not isinstance(content, str):
        raise MalformedAnswer("the answer's message has no text content")
    output: Any = content
    if call.schema is not None:
        try:
            output = unwrap(call.schema, json.loads(content))
        except json.JSONDecodeError as exc:
            raise MalformedAnswer(f"the answer is not JSON: {exc}") from None
    usage = body.get("usage") or {}
    return LlmAnswer(
        output,
        body.get("model") or provider.model,
        usage.get("prompt_tokens"),
        usage.get("completion_tokens"),
    )
