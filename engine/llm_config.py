"""Which LLM provider `step.ai` calls: a primary and, optionally, a fallback used from a given
attempt on. Read from `STEPKEEPER_LLM_*` (the key only from the environment, never a flag)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from engine.errors import InvalidInput

PROVIDERS = ("anthropic", "openai")
DEFAULT_BASE_URLS = {"anthropic": "https://api.anthropic.com", "openai": "https://api.openai.com/v1"}
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_FALLBACK_FROM_ATTEMPT = 2


@dataclass(frozen=True)
class LlmProvider:
    """One endpoint: `anthropic` (the Messages API) or `openai` (any chat-completions API,
    which also covers Ollama, vLLM and other local servers)."""

    kind: str
    base_url: str
    model: str
    api_key: str = ""

    def describe(self) -> str:
        return f"{self.kind}:{self.model}"


@dataclass(frozen=True)
class LlmSettings:
    primary: LlmProvider
    fallback: LlmProvider | None = None
    fallback_from_attempt: int = DEFAULT_FALLBACK_FROM_ATTEMPT
    timeout_s: float = DEFAULT_TIMEOUT_S

    def provider_for(self, attempt: int) -> LlmProvider:
        """The provider for the `attempt`-th try of a step (1 is the first)."""
        if self.fallback is not None and attempt >= self.fallback_from_attempt:
            return self.fallback
        return self.primary

    def secrets(self) -> dict[str, str]:
        """The API keys, so traces and errors redact them like any secret."""
        keys = {"LLM_API_KEY": self.primary.api_key}
        if self.fallback is not None:
            keys["LLM_FALLBACK_API_KEY"] = self.fallback.api_key
        return {name: key for name, key in keys.items() if key}


def llm_settings_from(env: Mapping[str, str]) -> LlmSettings | None:
    """The settings in `env`, None when no provider is named; InvalidInput for a bad value."""
    primary = _provider(env, "STEPKEEPER_LLM_")
    if primary is None:
        return None
    return LlmSettings(
        primary=primary,
        fallback=_provider(env, "STEPKEEPER_LLM_FALLBACK_"),
        fallback_from_attempt=_number(env, "STEPKEEPER_LLM_FALLBACK_FROM_ATTEMPT", 1, 21, 2),
        timeout_s=float(_number(env, "STEPKEEPER_LLM_TIMEOUT", 1, 600, DEFAULT_TIMEOUT_S)),
    )


def _provider(env: Mapping[str, str], prefix: str) -> LlmProvider | None:
    kind = env.get(f"{prefix}PROVIDER", "").strip().lower()
    if not kind:
        return None
    if kind not in PROVIDERS:
        raise InvalidInput(f"{prefix}PROVIDER must be one of {', '.join(PROVIDERS)}, not {kind!r}")
    model = env.get(f"{prefix}MODEL", "").strip()
    if not model:
        raise InvalidInput(f"{prefix}MODEL must name the model to call (the provider is {kind})")
    base_url = env.get(f"{prefix}BASE_URL", "").strip() or DEFAULT_BASE_URLS[kind]
    if not base_url.startswith(("http://", "https://")):
        raise InvalidInput(f"{prefix}BASE_URL must be an http(s) URL, not {base_url!r}")
    return LlmProvider(kind, base_url.rstrip("/"), model, env.get(f"{prefix}API_KEY", "").strip())


def _number(env: Mapping[str, str], name: str, low: float, high: float, default: float) -> int | float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise InvalidInput(f"{name} must be a number from {low:g} to {high:g}, not {text!r}")
    return int(value) if value.is_integer() else value
