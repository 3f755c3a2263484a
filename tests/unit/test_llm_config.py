"""LLM settings from the environment, and Retry-After in both of its forms."""

from __future__ import annotations

import time
from email.utils import formatdate

import pytest

from engine.ai_effect import retry_after_seconds
from engine.errors import InvalidInput
from engine.llm_config import llm_settings_from


def test_no_provider_means_no_settings() -> None:
    assert llm_settings_from({}) is None


def test_a_primary_and_a_fallback_with_their_defaults() -> None:
    settings = llm_settings_from(
        {
            "STEPKEEPER_LLM_PROVIDER": "Anthropic",
            "STEPKEEPER_LLM_MODEL": "claude-x",
            "STEPKEEPER_LLM_API_KEY": "k1-secret",
            "STEPKEEPER_LLM_FALLBACK_PROVIDER": "openai",
            "STEPKEEPER_LLM_FALLBACK_BASE_URL": "http://127.0.0.1:11434/v1/",
            "STEPKEEPER_LLM_FALLBACK_MODEL": "llama3",
            "STEPKEEPER_LLM_FALLBACK_FROM_ATTEMPT": "3",
        }
    )
    assert settings is not None and settings.primary.base_url == "https://api.anthropic.com"
    assert settings.fallback is not None and settings.fallback.base_url == "http://127.0.0.1:11434/v1"
    assert [settings.provider_for(n).model for n in (1, 2, 3, 4)] == [
        "claude-x",
        "claude-x",
        "llama3",
        "llama3",
    ]
    assert settings.secrets() == {"LLM_API_KEY": "k1-secret"}
    assert settings.timeout_s == 60


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"STEPKEEPER_LLM_PROVIDER": "gemini", "STEPKEEPER_LLM_MODEL": "m"},
            "must be one of anthropic, openai",
        ),
        ({"STEPKEEPER_LLM_PROVIDER": "openai"}, "STEPKEEPER_LLM_MODEL must name the model"),
        (
            {
                "STEPKEEPER_LLM_PROVIDER": "openai",
                "STEPKEEPER_LLM_MODEL": "m",
                "STEPKEEPER_LLM_BASE_URL": "ftp://x",
            },
            "must be an http(s) URL",
        ),
        (
            {"STEPKEEPER_LLM_PROVIDER": "openai", "STEPKEEPER_LLM_MODEL": "m", "STEPKEEPER_LLM_TIMEOUT": "0"},
            "STEPKEEPER_LLM_TIMEOUT must be a number from 1 to 600",
        ),
    ],
)
def test_bad_settings_are_refused_with_the_variable_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        llm_settings_from(env)


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    assert retry_after_seconds("2") == 2.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    in_ten = retry_after_seconds(formatdate(time.time() + 10, usegmt=True))
    assert in_ten is not None and 8 <= in_ten <= 11
    assert retry_after_seconds("999999") == 3600.0  # capped
