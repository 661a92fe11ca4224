"""The mistralai SDK against the simulator's Mistral dialect: exact counts, Magistral's thinking chunks
estimated from their raw text, costs and timed phases, sync and async, streamed or not."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import pytest

try:
    from mistralai.client import Mistral  # mistralai 2.x, 3.x
except ImportError:
    from mistralai import Mistral  # mistralai 1.x

from tests.instrumented import Spans, instrumented  # noqa: F401  (pytest fixture)
from tests.simulated import assert_at, assert_stream_timings, cancel_mid_stream, expected_cost
from thinkmeter.instrumentation._estimate import estimated_tokens
from thinkmeter.schemas import semconv as sc
from thinkmeter.simulator import Scenario, Simulator, start_simulator
from thinkmeter.simulator.scenario import reasoning_words

MODEL = "magistral-medium-2509"
# Magistral streams every reasoning token as text.
SCENARIO = Scenario(
    input_tokens=900,
    reasoning_tokens=120,
    reasoning_text="raw",
    visible_tokens=12,
    prefill_s=0.15,
    thinking_s=0.8,
    visible_tokens_per_s=200,
)
MESSAGES = [{"role": "user", "content": "Why is the sky blue?"}]


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with start_simulator(chat_flavour="mistral") as simulator:
        yield simulator


@pytest.fixture(scope="module")
def client(sim: Simulator) -> Iterator[Mistral]:
    with Mistral(api_key="x", server_url=sim.url) as sync_client:
        yield sync_client


def _reasoning_estimate(scenario: Scenario) -> int:
    return min(scenario.output_tokens, estimated_tokens(len("".join(reasoning_words(scenario.reasoning_text_tokens)))))


def assert_exact(attrs: dict[str, Any], sim: Simulator, *, stream: bool, scenario: Scenario = SCENARIO) -> None:
    assert attrs[sc.OPERATION] == "chat" and attrs[sc.PROVIDER] == "mistral_ai"
    assert attrs[sc.REQUEST_MODEL] == MODEL and attrs[sc.RESPONSE_MODEL] == MODEL
    assert attrs[sc.RESPONSE_ID] == sim.replies[-1].id
    assert attrs[sc.REQUEST_STREAM] is stream
    assert tuple(attrs[sc.RESPONSE_FINISH_REASONS]) == ("stop",)
    assert attrs[sc.SERVER_ADDRESS] == "127.0.0.1" and attrs[sc.SERVER_PORT] == sim.port
    assert attrs[sc.INPUT_TOKENS] == scenario.input_tokens
    assert attrs[sc.OUTPUT_TOKENS] == scenario.output_tokens and attrs[sc.OUTPUT_SOURCE] == "reported"
    reasoning = _reasoning_estimate(scenario)
    assert attrs[sc.REASONING_TOKENS] == reasoning and attrs[sc.REASONING_SOURCE] == "estimated"
    assert attrs[sc.VISIBLE_OUTPUT_TOKENS] == scenario.output_tokens - reasoning
    split = scenario.model_copy(update={"reasoning_tokens": reasoning, "visible_tokens": scenario.output_tokens - reasoning})
    total, reasoning_cost = expected_cost(MODEL, split, "mistral_ai")
    assert attrs[sc.COST_USD] == pytest.approx(total) and attrs[sc.REASONING_COST_USD] == pytest.approx(reasoning_cost)
    if stream:
        assert_stream_timings(attrs, scenario, reasoning_streamed=True)
    else:
        assert sc.TIME_TO_FIRST_TOKEN not in attrs


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
def test_sync(instrumented: Spans, sim: Simulator, client: Mistral, stream: bool) -> None:
    if stream:
        with client.chat.stream(model=MODEL, messages=MESSAGES, http_headers=SCENARIO.headers()) as events:
            assert [event.data for event in events]
    else:
        reply = client.chat.complete(model=MODEL, messages=MESSAGES, http_headers=SCENARIO.headers())
        assert reply.choices[0].message.content[0].type == "thinking"
    assert_exact(instrumented.only_attributes(), sim, stream=stream)


@pytest.mark.parametrize("stream", [False, True], ids=["complete_async", "stream_async"])
def test_async(instrumented: Spans, sim: Simulator, stream: bool) -> None:
    async def run() -> None:
        async with Mistral(api_key="x", server_url=sim.url) as async_client:
            if stream:
                events = await async_client.chat.stream_async(model=MODEL, messages=MESSAGES, http_headers=SCENARIO.headers())
                assert [event async for event in events]
            else:
                assert await async_client.chat.complete_async(model=MODEL, messages=MESSAGES, http_headers=SCENARIO.headers())

    asyncio.run(run())
    assert_exact(instrumented.only_attributes(), sim, stream=stream)


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
def test_no_thinking_is_zero_reasoning(instrumented: Spans, client: Mistral, stream: bool) -> None:
    scenario = SCENARIO.model_copy(update={"reasoning_tokens": 0, "thinking_s": 0.0})
    kwargs = {"model": "mistral-medium-2508", "messages": MESSAGES, "http_headers": scenario.headers()}
    if stream:
        list(client.chat.stream(**kwargs))
    else:
        client.chat.complete(**kwargs)
    attrs = instrumented.only_attributes()
    assert attrs[sc.REASONING_TOKENS] == 0 and attrs[sc.REASONING_SOURCE] == "derived"
    assert attrs[sc.VISIBLE_OUTPUT_TOKENS] == scenario.visible_tokens


def test_request_options_are_recorded(instrumented: Spans, client: Mistral) -> None:
    client.chat.complete(model=MODEL, messages=MESSAGES, max_tokens=4096, prompt_mode="reasoning", http_headers=SCENARIO.headers())
    attrs = instrumented.only_attributes()
    assert attrs[sc.REQUEST_MAX_TOKENS] == 4096 and attrs[sc.REQUEST_REASONING_LEVEL] == "reasoning"


def test_http_error_ends_the_span_with_its_type(instrumented: Spans, client: Mistral) -> None:
    scenario = SCENARIO.model_copy(update={"error_status": 429})
    with pytest.raises(Exception) as raised:
        list(client.chat.stream(model=MODEL, messages=MESSAGES, http_headers=scenario.headers()))
    attrs = instrumented.only_attributes()
    assert attrs[sc.ERROR_TYPE] == type(raised.value).__qualname__
    assert sc.OUTPUT_TOKENS not in attrs


def test_early_break_ends_the_span_on_exit(instrumented: Spans, client: Mistral) -> None:
    with client.chat.stream(model=MODEL, messages=MESSAGES, http_headers=SCENARIO.headers()) as events:
        for event in events:
            if isinstance(event.data.choices[0].delta.content, str) and event.data.choices[0].delta.content:
                break
        assert instrumented.all() == []
    (span,) = instrumented.all()
    attrs = dict(span.attributes or {})
    assert sc.OUTPUT_TOKENS not in attrs and attrs[sc.OUTPUT_SOURCE] == "unknown"
    assert_at(attrs.get(sc.TIME_TO_FIRST_TOKEN), SCENARIO.first_token_s)
    assert_at(attrs.get(sc.TIME_TO_FIRST_VISIBLE_TOKEN), SCENARIO.first_visible_s)


def test_exception_mid_stream_ends_the_span_with_the_error(instrumented: Spans, client: Mistral) -> None:
    scenario = SCENARIO.model_copy(update={"disconnect_after_visible": 3})
    with pytest.raises(Exception) as raised:
        list(client.chat.stream(model=MODEL, messages=MESSAGES, http_headers=scenario.headers()))
    attrs = instrumented.only_attributes()
    assert attrs[sc.ERROR_TYPE] == type(raised.value).__qualname__


def test_async_cancellation_ends_the_span(instrumented: Spans, sim: Simulator) -> None:
    client = Mistral(api_key="x", server_url=sim.url)
    cancel_mid_stream(lambda: client.chat.stream_async(model=MODEL, messages=MESSAGES, http_headers=SCENARIO.headers()))
    (span,) = instrumented.all()
    assert dict(span.attributes or {})[sc.ERROR_TYPE] == "CancelledError"


def test_unconsumed_stream_ends_its_span_when_collected(instrumented: Spans, client: Mistral) -> None:
    stream = client.chat.stream(model=MODEL, messages=MESSAGES, http_headers=SCENARIO.headers())
    assert instrumented.all() == []
    del stream
    gc.collect()
    attrs = instrumented.only_attributes()
    assert attrs[sc.REQUEST_STREAM] is True and sc.OUTPUT_TOKENS not in attrs
