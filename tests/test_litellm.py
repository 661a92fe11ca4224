"""LiteLLM against the simulator: each call traced exactly once, with LiteLLM's provider and model,
whether LiteLLM speaks to the provider with its own HTTP code (Anthropic, Bedrock) or through the
openai SDK (which thinkmeter also patches), streamed or not, sync and async."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import litellm  # conftest has set LITELLM_LOCAL_MODEL_COST_MAP: no price-map download at import
import pytest

from tests.instrumented import Spans, instrumented  # noqa: F401  (pytest fixture)
from tests.simulated import (  # noqa: F401  (sim: pytest fixture)
    THINKING_SCENARIO,
    assert_at,
    assert_stream_timings,
    cancel_mid_stream,
    expected_cost,
    sim,
)
from thinkmeter.instrumentation._estimate import estimated_tokens
from thinkmeter.schemas import semconv as sc
from thinkmeter.simulator import Scenario, Simulator
from thinkmeter.simulator.scenario import answer_words

SCENARIO = THINKING_SCENARIO
MESSAGES = [{"role": "user", "content": "Why is the sky blue?"}]
# (LiteLLM model, provider recorded, model sent, how LiteLLM reaches it)
BEDROCK_MODEL = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
ROUTES = {
    "anthropic": ("anthropic/claude-opus-4-5", "anthropic", "claude-opus-4-5"),  # LiteLLM's own HTTP code
    "openai": ("openai/o4-mini", "openai", "o4-mini"),  # through the openai SDK
}


def _kwargs(sim: Simulator, route: str, scenario: Scenario = SCENARIO, **extra: Any) -> dict[str, Any]:
    model = ROUTES[route][0]
    api_base = sim.url if route == "anthropic" else sim.base_url
    return {"model": model, "messages": MESSAGES, "api_base": api_base, "api_key": "x", "max_tokens": 4096, "extra_headers": scenario.headers(), **extra}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_bedrock_through_litellms_own_http_code(instrumented: Spans, sim: Simulator, stream: bool) -> None:
    """LiteLLM signs and sends Bedrock Converse requests itself and decodes AWS's event-stream framing
    itself (an independent client of the simulator's framing). Bedrock counts no reasoning; LiteLLM's
    reasoning_tokens is its own count of the summary text, so thinkmeter estimates instead."""
    reply = litellm.completion(
        model=f"bedrock/converse/{BEDROCK_MODEL}",
        messages=MESSAGES,
        aws_access_key_id="dummy",
        aws_secret_access_key="dummy",
        aws_region_name="us-east-1",
        aws_bedrock_runtime_endpoint=sim.url,
        extra_headers=SCENARIO.headers(),
        stream=stream,
    )
    if stream:
        assert list(reply)
    attrs = instrumented.only_attributes()
    assert attrs[sc.PROVIDER] == "aws.bedrock" and attrs[sc.REQUEST_MODEL] == BEDROCK_MODEL
    assert attrs[sc.INPUT_TOKENS] == SCENARIO.input_tokens and attrs[sc.CACHE_READ_TOKENS] == SCENARIO.cached_input_tokens
    assert attrs[sc.OUTPUT_TOKENS] == SCENARIO.output_tokens
    visible = estimated_tokens(len("".join(answer_words(SCENARIO.visible_tokens))))
    assert attrs[sc.REASONING_TOKENS] == SCENARIO.output_tokens - visible and attrs[sc.REASONING_SOURCE] == "estimated"
    total, _ = expected_cost(BEDROCK_MODEL, SCENARIO, "aws.bedrock")
    assert attrs[sc.COST_USD] == pytest.approx(total)
    if stream:
        assert_stream_timings(attrs, SCENARIO, reasoning_streamed=True)


def assert_once(spans: Spans, sim: Simulator, route: str, *, stream: bool) -> dict[str, Any]:
    attrs = spans.only_attributes()  # one span: the openai SDK's own call inside LiteLLM is not traced again
    _, provider, model = ROUTES[route]
    assert attrs[sc.PROVIDER] == provider and attrs[sc.REQUEST_MODEL] == model and attrs[sc.RESPONSE_MODEL] == model
    assert attrs[sc.SERVER_ADDRESS] == "127.0.0.1" and attrs[sc.SERVER_PORT] == sim.port
    assert attrs[sc.REQUEST_STREAM] is stream
    assert attrs[sc.INPUT_TOKENS] == SCENARIO.input_tokens
    assert attrs[sc.CACHE_READ_TOKENS] == SCENARIO.cached_input_tokens
    assert attrs[sc.CACHE_WRITE_TOKENS] == SCENARIO.cache_write_tokens
    assert attrs[sc.OUTPUT_TOKENS] == SCENARIO.output_tokens
    assert attrs[sc.REASONING_TOKENS] == SCENARIO.reasoning_tokens and attrs[sc.REASONING_SOURCE] == "reported"
    assert attrs[sc.VISIBLE_OUTPUT_TOKENS] == SCENARIO.visible_tokens
    total, reasoning = expected_cost(model, SCENARIO)
    assert attrs[sc.COST_USD] == pytest.approx(total) and attrs[sc.REASONING_COST_USD] == pytest.approx(reasoning)
    assert sc.ERROR_TYPE not in attrs
    if stream:
        # Anthropic streams its thinking (LiteLLM: reasoning_content); OpenAI's reasoning is hidden.
        assert_stream_timings(attrs, SCENARIO, reasoning_streamed=route == "anthropic")
    return attrs


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("route", list(ROUTES))
def test_completion_is_traced_once(instrumented: Spans, sim: Simulator, route: str, stream: bool) -> None:
    reply = litellm.completion(stream=stream, **_kwargs(sim, route))
    if stream:
        chunks = list(reply)
        # The usage chunk thinkmeter asked for is not shown to a caller who did not ask for it.
        assert all(chunk.choices for chunk in chunks)
    assert_once(instrumented, sim, route, stream=stream)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("route", list(ROUTES))
def test_acompletion_is_traced_once(instrumented: Spans, sim: Simulator, route: str, stream: bool) -> None:
    async def run() -> None:
        reply = await litellm.acompletion(stream=stream, **_kwargs(sim, route))
        if stream:
            assert [chunk async for chunk in reply]

    asyncio.run(run())
    assert_once(instrumented, sim, route, stream=stream)


def test_positional_model_and_messages(instrumented: Spans, sim: Simulator) -> None:
    kwargs = _kwargs(sim, "anthropic")
    litellm.completion(kwargs.pop("model"), kwargs.pop("messages"), **kwargs)
    assert_once(instrumented, sim, "anthropic", stream=False)


def test_usage_chunk_asked_for_is_kept(instrumented: Spans, sim: Simulator) -> None:
    chunks = list(litellm.completion(stream=True, stream_options={"include_usage": True}, **_kwargs(sim, "anthropic")))
    assert chunks[-1].usage.completion_tokens == SCENARIO.output_tokens
    assert_once(instrumented, sim, "anthropic", stream=True)


def test_plain_openai_sdk_calls_are_still_traced_after_litellm(instrumented: Spans, sim: Simulator) -> None:
    """The guard against counting twice lasts for LiteLLM's call only."""
    import openai

    litellm.completion(**_kwargs(sim, "openai"))
    instrumented.clear()
    client = openai.OpenAI(base_url=sim.base_url, api_key="x", max_retries=0)
    client.chat.completions.create(model="o4-mini", messages=MESSAGES, extra_headers=SCENARIO.headers())
    assert instrumented.only_attributes()[sc.OUTPUT_TOKENS] == SCENARIO.output_tokens


def test_http_error_ends_the_span_with_its_type(instrumented: Spans, sim: Simulator) -> None:
    scenario = SCENARIO.model_copy(update={"error_status": 429})
    with pytest.raises(litellm.RateLimitError):
        litellm.completion(**_kwargs(sim, "anthropic", scenario))
    attrs = instrumented.only_attributes()
    assert attrs[sc.ERROR_TYPE] == "RateLimitError" and attrs[sc.PROVIDER] == "anthropic"


def test_early_break_ends_the_span_when_collected(instrumented: Spans, sim: Simulator) -> None:
    stream = litellm.completion(stream=True, **_kwargs(sim, "anthropic"))
    for chunk in stream:
        if chunk.choices[0].delta.content:
            break
    del stream, chunk
    gc.collect()
    attrs = instrumented.only_attributes()
    assert sc.OUTPUT_TOKENS not in attrs and attrs[sc.OUTPUT_SOURCE] == "unknown"
    assert_at(attrs.get(sc.TIME_TO_FIRST_VISIBLE_TOKEN), SCENARIO.first_visible_s)


def test_async_cancellation_ends_the_span(instrumented: Spans, sim: Simulator) -> None:
    cancel_mid_stream(lambda: litellm.acompletion(stream=True, **_kwargs(sim, "anthropic")))
    (span,) = instrumented.all()
    assert dict(span.attributes or {})[sc.ERROR_TYPE] == "CancelledError"
