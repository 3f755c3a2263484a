"""`step.ai` against a scripted model on 127.0.0.1 that speaks both APIs: text and JSON-schema
answers, 429 with Retry-After, 5xx then success, an invalid answer then a valid one, a refused
request, the fallback provider, no provider at all, and checkpointing (an answer is paid once)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from engine import Engine
from engine.llm_config import LlmProvider, LlmSettings
from tests.conftest import EngineFactory, finished
from tests.support.model_server import ModelServer, Reply

KEY = "sk-test-canary-4242"
SCHEMA = {
    "type": "object",
    "properties": {"status": {"type": "string", "enum": ["normal", "degraded"]}},
    "required": ["status"],
}
FAST_RETRIES = {"retries": 2, "retry_backoff": {"initial": "50ms", "jitter": 0}}


@pytest.fixture
def model() -> Iterator[ModelServer]:
    server = ModelServer()
    yield server
    server.close()


def anthropic(model: ModelServer) -> LlmProvider:
    return LlmProvider("anthropic", model.base, "claude-test", KEY)


def openai(model: ModelServer, name: str = "gpt-test") -> LlmProvider:
    return LlmProvider("openai", f"{model.base}/v1", name, KEY)


async def started(make_engine: EngineFactory, settings: LlmSettings | None, **options: object) -> Engine:
    engine = make_engine(llm=settings, **options)
    await engine.start()
    return engine


async def run_skill(
    engine: Engine, code: str, config: dict | None = None, name: str = "ask"
) -> tuple[object, dict]:
    await engine.create_skill(name, code, config=config or {})
    run = await engine.invoke(name)
    done = await finished(engine, run.id)
    return done, await engine.get_run_trace(run.id)


async def test_a_text_answer_from_the_messages_api_is_stored_with_model_tokens_and_latency(
    make_engine: EngineFactory, model: ModelServer
) -> None:
    engine = await started(make_engine, LlmSettings(anthropic(model)))
    model.script = [Reply("all quiet on the api")]
    code = "def handler(ctx, step):\n    return step.ai('say', prompt='how is the api', system='be brief')\n"
    run, trace = await run_skill(engine, code)
    assert run.status == "completed" and run.output == "all quiet on the api"
    [call] = model.calls("/v1/messages")
    assert call.headers["x-api-key"] == KEY and call.headers["anthropic-version"] == "2023-06-01"
    assert call.body["system"] == "be brief" and call.body["model"] == "claude-test"
    assert call.body["messages"] == [{"role": "user", "content": "how is the api"}]
    [span] = trace["spans"]
    assert span["op"] == "ai" and span["input"]["prompt"] == "how is the api"
    llm = span["llm"]
    assert llm["provider"] == "anthropic" and llm["model"] == "claude-test" and llm["fallback"] is False
    assert llm["input_tokens"] == 4 and llm["output_tokens"] == 5 and llm["latency_ms"] > 0
    assert KEY not in str(trace)


async def test_a_schema_answer_uses_structured_output_on_both_apis(
    make_engine: EngineFactory, model: ModelServer
) -> None:
    code = f"def handler(ctx, step):\n    return step.ai('assess', prompt='metrics: ok', schema={SCHEMA!r})\n"
    for provider, path in ((openai(model), "/v1/chat/completions"), (anthropic(model), "/v1/messages")):
        engine = await started(make_engine, LlmSettings(provider))
        model.script = [Reply({"status": "degraded"})]
        run, _ = await run_skill(engine, code, name=f"assess-{provider.kind}")
        assert run.output == {"status": "degraded"}
        body = model.calls(path)[-1].body
        if provider.kind == "openai":
            assert body["response_format"]["json_schema"]["schema"] == SCHEMA
        else:
            assert body["tool_choice"] == {"type": "tool", "name": "answer"}
            assert body["tools"][0]["input_schema"] == SCHEMA
        await engine.close()


async def test_a_429_is_retried_after_its_retry_after(make_engine: EngineFactory, model: ModelServer) -> None:
    engine = await started(make_engine, LlmSettings(openai(model)))
    model.script = [Reply(status=429, headers={"Retry-After": "1"}, message="slow down"), Reply("now fine")]
    run, trace = await run_skill(engine, "def handler(ctx, step):\n    return step.ai('a', prompt='hi')\n")
    assert run.output == "now fine"
    first, second = trace["spans"][0]["attempts"]
    assert first["error"]["type"] == "LlmUnavailable" and "429: slow down" in first["error"]["message"]
    waited = _seconds_between(first["ended_at"], second["started_at"])
    assert 0.9 <= waited < 5, waited
    assert len(model.calls()) == 2


async def test_a_500_then_success(make_engine: EngineFactory, model: ModelServer) -> None:
    engine = await started(make_engine, LlmSettings(anthropic(model)))
    model.script = [Reply(status=500, message="overloaded"), Reply("recovered")]
    code = "def handler(ctx, step):\n    return step.ai('a', prompt='hi')\n"
    run, trace = await run_skill(engine, code, FAST_RETRIES)
    assert run.output == "recovered" and len(model.calls()) == 2
    assert [a["status"] for a in trace["spans"][0]["attempts"]] == ["failed", "completed"]


async def test_an_invalid_answer_is_asked_again_then_fails_with_the_validation_error(
    make_engine: EngineFactory, model: ModelServer
) -> None:
    engine = await started(make_engine, LlmSettings(openai(model)))
    model.script = [Reply("not json at all"), Reply({"status": "normal"})]
    code = f"def handler(ctx, step):\n    return step.ai('a', prompt='x', schema={SCHEMA!r})\n"
    run, trace = await run_skill(engine, code, FAST_RETRIES)
    assert run.output == {"status": "normal"}
    assert trace["spans"][0]["attempts"][0]["error"]["type"] == "LlmInvalidAnswer"

    model.script = [Reply({"status": "on fire"})] * 3  # retries: 2, so three answers in all
    fallback = (
        "def handler(ctx, step):\n"
        "    try:\n"
        f"        return step.ai('b', prompt='x', schema={SCHEMA!r})\n"
        "    except StepError as e:\n"
        "        return 'rules: ' + e.error_type + ': ' + e.message\n"
    )
    await engine.update_skill("ask", code=fallback)
    done = await finished(engine, (await engine.invoke("ask")).id)
    assert done.output.startswith("rules: LlmInvalidAnswer: the answer does not match the schema")
    assert len(model.calls()) == 2 + 3


async def test_a_refused_request_fails_the_step_at_once_with_the_providers_message(
    make_engine: EngineFactory, model: ModelServer
) -> None:
    engine = await started(make_engine, LlmSettings(anthropic(model)))
    model.script = [Reply(status=400, message="max_tokens: too large")]
    code = (
        "def handler(ctx, step):\n"
        "    try:\n"
        "        return step.ai('a', prompt='x')\n"
        "    except StepError as e:\n"
        "        return e.message\n"
    )
    run, _ = await run_skill(engine, code, FAST_RETRIES)
    assert "refused the request (400): max_tokens: too large" in run.output
    assert len(model.calls()) == 1


async def test_the_fallback_provider_answers_from_the_configured_attempt_on(
    make_engine: EngineFactory, model: ModelServer
) -> None:
    settings = LlmSettings(anthropic(model), fallback=openai(model, "local-llama"), fallback_from_attempt=2)
    engine = await started(make_engine, settings)
    model.script = [Reply(status=503, message="down"), Reply("from the fallback")]
    code = "def handler(ctx, step):\n    return step.ai('a', prompt='hi', model='claude-pinned')\n"
    run, trace = await run_skill(engine, code, FAST_RETRIES)
    assert run.output == "from the fallback"
    first, second = model.calls()
    assert first.path == "/v1/messages" and first.body["model"] == "claude-pinned"
    assert second.path == "/v1/chat/completions" and second.body["model"] == "local-llama"
    llm = trace["spans"][0]["llm"]
    assert llm["fallback"] is True and llm["provider"] == "openai" and llm["attempt"] == 2


async def test_without_a_provider_step_ai_fails_clearly_and_the_skill_can_fall_back_to_rules(
    make_engine: EngineFactory,
) -> None:
    engine = await started(make_engine, None)
    code = (
        "def handler(ctx, step):\n"
        "    try:\n"
        "        return step.ai('assess', prompt='cpu 97%')\n"
        "    except StepError as e:\n"
        "        return {'severity': 'high', 'why': e.error_type, 'how': e.message}\n"
    )
    run, trace = await run_skill(engine, code)
    assert run.output["severity"] == "high" and run.output["why"] == "LlmNotConfigured"
    assert "STEPKEEPER_LLM_PROVIDER" in run.output["how"]
    assert trace["spans"][0]["attempts"][0]["status"] == "failed"  # one attempt: not retried


async def test_bad_arguments_fail_the_step_without_calling_the_model(
    make_engine: EngineFactory, model: ModelServer
) -> None:
    engine = await started(make_engine, LlmSettings(openai(model)))
    cases = {
        "step.ai('a')": "needs prompt= or messages=",
        "step.ai('a', prompt='x', messages=[])": "needs prompt= or messages=",
        "step.ai('a', prompt='x', schema={'type': 'nonsense'})": "not a valid JSON Schema",
        "step.ai('a', prompt='x', max_tokens=10**9)": "max_tokens must be an integer",
        "step.ai('a', messages=[{'role': 'system', 'content': 'x'}])": "role is user or assistant",
        "step.ai('a', prompt='x', tools=[])": "unknown arguments: tools",
        "step.ai('a', prompt='x', schema=deep)": "nested too deeply",
    }
    for n, (call, expected) in enumerate(cases.items()):
        code = (
            "def handler(ctx, step):\n    deep = {}\n"
            "    for i in range(400):\n        deep = {'items': deep}\n"
            f"    try:\n        return {call}\n"
            "    except StepError as e:\n        return e.message\n"
        )
        print("CASE", n, flush=True)
        await engine.create_skill(f"bad-{n}", code)
        done = await finished(engine, (await engine.invoke(f"bad-{n}")).id)
        assert expected in done.output, (call, done.output)
    assert model.calls() == []


async def test_an_answer_is_paid_once_replays_read_it_from_the_store_and_stats_sum_tokens(
    make_engine: EngineFactory, model: ModelServer
) -> None:
    engine = await started(make_engine, LlmSettings(anthropic(model)))
    model.script = [Reply("first answer")]
    code = (
        "def handler(ctx, step):\n"
        "    a = step.ai('a', prompt='one two three')\n"
        "    step.sleep('pause', 0.2)\n"  # a second activation replays the ai step
        "    return a\n"
    )
    run, _ = await run_skill(engine, code)
    assert run.output == "first answer" and len(model.calls()) == 1
    stats = await engine.get_stats(function="ask")
    assert stats["ask"]["tokens"] == {"input": 3, "output": 2}


def _seconds_between(earlier: str, later: str) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


async def test_a_slow_provider_times_out_and_is_retried(
    make_engine: EngineFactory, model: ModelServer
) -> None:
    engine = await started(make_engine, LlmSettings(openai(model), timeout_s=0.3))
    model.script = [Reply("too late", delay=1.0), Reply("in time")]
    run, trace = await run_skill(
        engine, "def handler(ctx, step):\n    return step.ai('a', prompt='hi')\n", FAST_RETRIES
    )
    assert run.output == "in time"
    error = trace["spans"][0]["attempts"][0]["error"]
    assert error["type"] == "LlmTimeout" and "did not answer within 0.3 s" in error["message"]


async def test_secrets_in_prompts_and_answers_are_redacted_in_the_trace(
    make_engine: EngineFactory, model: ModelServer
) -> None:
    secret = "canary-secret-7731"
    engine = await started(make_engine, LlmSettings(anthropic(model)), secrets={"TOKEN": secret})
    model.script = [Reply(f"echo {secret}")]
    code = "def handler(ctx, step):\n    return step.ai('a', prompt='token is ' + secrets['TOKEN'])\n"
    run, trace = await run_skill(engine, code)
    assert model.calls()[0].body["messages"][0]["content"] == f"token is {secret}"  # the skill sent it
    assert secret not in str(trace) and secret not in str(run.output)
