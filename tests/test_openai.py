"""OpenAI instrumentation: the real openai SDK against the loopback simulator, every surface and mode.

Each test sends a scenario with known counts and timed phases and checks the finished span exactly
(tokens, cost, source) and the timings within a tolerance.
"""

from __future__ import annotations

import asyncio
import gc

import openai
import pytest
from pydantic import BaseModel

import thinkmeter
from tests.instrumented import instrumented  # noqa: F401  (fixture)
from tests.simulated import assert_at, expected_cost
from thinkmeter.schemas import semconv as sc
from thinkmeter.simulator import Scenario, start_simulator

TIME_SCALE = 0.1
PROMPT = [{"role": "user", "content": "What is 2 + 2?"}]
SCENARIO = Scenario(
    input_tokens=1500,
    cached_input_tokens=1024,
    reasoning_tokens=900,
    visible_tokens=12,
    prefill_s=1.0,
    thinking_s=8.0,
    visible_tokens_per_s=100.0,
)


@pytest.fixture(scope="module")
def simulator():
    with start_simulator(time_scale=TIME_SCALE) as sim:
        # The SDK builds its streaming event types on first use (a few hundred ms): do that untimed.
        warm = openai.OpenAI(base_url=sim.base_url, api_key="test", max_retries=0)
        for _ in warm.responses.create(model="o4-mini", input="warm up", stream=True):
            pass
        for _ in warm.chat.completions.create(model="o4-mini", messages=PROMPT, stream=True):
            pass
        with warm.responses.stream(model="o4-mini", input="warm up") as helper_stream:
            for _ in helper_stream:
                pass
        yield sim


@pytest.fixture
def client(simulator):
    return openai.OpenAI(base_url=simulator.base_url, api_key="test", max_retries=0)


@pytest.fixture
def async_client(simulator):
    return openai.AsyncOpenAI(base_url=simulator.base_url, api_key="test", max_retries=0)


def assert_usage(attrs: dict, scenario: Scenario = SCENARIO, model: str = "o4-mini") -> None:
    assert attrs[sc.INPUT_TOKENS] == scenario.input_tokens
    assert attrs[sc.CACHE_READ_TOKENS] == scenario.cached_input_tokens
    assert attrs[sc.OUTPUT_TOKENS] == scenario.output_tokens
    assert attrs[sc.REASONING_TOKENS] == scenario.reasoning_tokens
    assert attrs[sc.VISIBLE_OUTPUT_TOKENS] == scenario.visible_tokens
    assert attrs[sc.REASONING_SOURCE] == "reported"
    total, reasoning = expected_cost(model, scenario)
    assert attrs[sc.COST_USD] == pytest.approx(total, rel=1e-12)
    assert attrs[sc.REASONING_COST_USD] == pytest.approx(reasoning, rel=1e-12)
    assert attrs[sc.COST_SOURCE] == "price_table"


def assert_stream_timings(attrs: dict, simulator, reasoning_streamed: bool) -> None:
    reply = simulator.replies[-1]
    assert attrs[sc.REQUEST_STREAM] is True
    assert_at(attrs[sc.TIME_TO_FIRST_VISIBLE_TOKEN], reply.first_visible_wall_s)
    first_token = reply.first_token_wall_s if reasoning_streamed else reply.first_visible_wall_s
    assert_at(attrs[sc.TIME_TO_FIRST_TOKEN], first_token)
    assert attrs[sc.TIME_TO_FIRST_CHUNK] <= attrs[sc.TIME_TO_FIRST_TOKEN]
    assert attrs[sc.TIME_PER_OUTPUT_TOKEN] > 0


def test_chat_create(instrumented, client, simulator):
    with thinkmeter.tags(tenant="acme", feature="search", task_class="lookup"):
        completion = client.chat.completions.create(
            model="o4-mini", messages=PROMPT, reasoning_effort="high", max_completion_tokens=5000, extra_headers=SCENARIO.headers()
        )
    span = instrumented.only_span()
    attrs = dict(span.attributes)
    assert span.name == "chat o4-mini"
    assert span.kind.name == "CLIENT"
    assert_usage(attrs)
    assert attrs[sc.PROVIDER] == "openai_compatible"  # loopback host, no provider mapping given
    assert attrs[sc.REQUEST_REASONING_LEVEL] == "high"
    assert attrs[sc.REQUEST_MAX_TOKENS] == 5000
    assert attrs[sc.RESPONSE_ID] == completion.id
    assert attrs[sc.RESPONSE_FINISH_REASONS] == ("stop",)
    assert attrs[sc.TENANT] == "acme" and attrs[sc.TASK_CLASS] == "lookup"
    assert sc.TIME_TO_FIRST_CHUNK not in attrs  # non-streamed calls have no first chunk
    duration = (span.end_time - span.start_time) / 1e9
    assert_at(duration, simulator.replies[-1].end_wall_s)


@pytest.mark.parametrize("instrumented", [{"127.0.0.1": "openai"}], indirect=True)
def test_provider_mapping(instrumented, client):
    client.chat.completions.create(model="o4-mini", messages=PROMPT, extra_headers=SCENARIO.headers())
    assert instrumented.only_attributes()[sc.PROVIDER] == "openai"


def test_chat_stream_hides_injected_usage_chunk(instrumented, client, simulator):
    stream = client.chat.completions.create(model="o4-mini", messages=PROMPT, stream=True, extra_headers=SCENARIO.headers())
    assert isinstance(stream, openai.Stream)
    chunks = list(stream)
    assert all(chunk.choices for chunk in chunks), "the usage chunk the caller did not ask for must stay hidden"
    attrs = instrumented.only_attributes()
    assert_usage(attrs)
    assert_stream_timings(attrs, simulator, reasoning_streamed=False)


def test_chat_stream_keeps_usage_chunk_when_asked(instrumented, client):
    stream = client.chat.completions.create(
        model="o4-mini", messages=PROMPT, stream=True, stream_options={"include_usage": True}, extra_headers=SCENARIO.headers()
    )
    chunks = list(stream)
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == SCENARIO.output_tokens
    assert_usage(instrumented.only_attributes())


def test_chat_stream_helper(instrumented, client, simulator):
    with client.chat.completions.stream(model="o4-mini", messages=PROMPT, extra_headers=SCENARIO.headers()) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    assert final.choices[0].message.content
    attrs = instrumented.only_attributes()
    assert_usage(attrs)
    assert_stream_timings(attrs, simulator, reasoning_streamed=False)


def test_chat_parse(instrumented, client):
    parsed = client.chat.completions.parse(model="o4-mini", messages=PROMPT, extra_headers=SCENARIO.headers())
    assert parsed.choices[0].message.parsed is None
    assert_usage(instrumented.only_attributes())


def test_chat_parse_failure_is_the_callers_error(instrumented, client):
    class Answer(BaseModel):
        value: str

    # The simulator answers in prose, not Answer's JSON: the SDK's own error reaches the caller.
    with pytest.raises(Exception) as raised:
        client.chat.completions.parse(model="o4-mini", messages=PROMPT, response_format=Answer, extra_headers=SCENARIO.headers())
    assert instrumented.only_attributes()[sc.ERROR_TYPE] == type(raised.value).__qualname__


def test_responses_parse(instrumented, client):
    client.responses.parse(model="o4-mini", input="What is 2 + 2?", extra_headers=SCENARIO.headers())
    assert_usage(instrumented.only_attributes())


def test_chat_with_raw_response(instrumented, client):
    raw = client.chat.completions.with_raw_response.create(model="o4-mini", messages=PROMPT, extra_headers=SCENARIO.headers())
    assert raw.headers.get("content-type", "").startswith("application/json")
    assert raw.parse().usage.completion_tokens == SCENARIO.output_tokens
    assert_usage(instrumented.only_attributes())


def test_responses_create(instrumented, client, simulator):
    response = client.responses.create(
        model="o4-mini", input="What is 2 + 2?", reasoning={"effort": "low"}, max_output_tokens=8000, extra_headers=SCENARIO.headers()
    )
    attrs = instrumented.only_attributes()
    assert_usage(attrs)
    assert attrs[sc.RESPONSE_ID] == response.id
    assert attrs[sc.REQUEST_REASONING_LEVEL] == "low"
    assert attrs[sc.REQUEST_MAX_TOKENS] == 8000
    assert attrs[sc.RESPONSE_FINISH_REASONS] == ("completed",)


def test_responses_stream(instrumented, client, simulator):
    stream = client.responses.create(model="o4-mini", input="What is 2 + 2?", stream=True, extra_headers=SCENARIO.headers())
    assert isinstance(stream, openai.Stream)
    for _ in stream:
        pass
    attrs = instrumented.only_attributes()
    assert_usage(attrs)
    assert_stream_timings(attrs, simulator, reasoning_streamed=True)


def test_responses_stream_helper(instrumented, client, simulator):
    with client.responses.stream(model="o4-mini", input="What is 2 + 2?", extra_headers=SCENARIO.headers()) as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    assert final.usage.output_tokens == SCENARIO.output_tokens
    attrs = instrumented.only_attributes()
    assert_usage(attrs)
    assert_stream_timings(attrs, simulator, reasoning_streamed=True)


def test_responses_incomplete_at_budget(instrumented, client):
    client.responses.create(model="o4-mini", input="Think hard.", max_output_tokens=500, extra_headers=SCENARIO.headers())
    attrs = instrumented.only_attributes()
    assert attrs[sc.OUTPUT_TOKENS] == 500
    assert attrs[sc.REASONING_TOKENS] == 500
    assert attrs[sc.VISIBLE_OUTPUT_TOKENS] == 0
    assert attrs[sc.RESPONSE_FINISH_REASONS] == ("max_output_tokens",)


def test_responses_resume_stream_by_id(instrumented, client, simulator):
    first = client.responses.create(model="o4-mini", input="x", stream=True, background=True, extra_headers=SCENARIO.headers())
    events = []
    for event in first:
        events.append(event)
        if len(events) == 3:
            break
    response_id = events[0].response.id
    first.close()
    instrumented.clear()
    with client.responses.stream(response_id=response_id, starting_after=events[-1].sequence_number) as resumed:
        for _ in resumed:
            pass
    attrs = instrumented.only_attributes()
    assert attrs[sc.RESPONSE_ID] == response_id
    assert_usage(attrs)


def test_async_chat_and_stream(instrumented, async_client, simulator):
    async def run():
        await async_client.chat.completions.create(model="o4-mini", messages=PROMPT, extra_headers=SCENARIO.headers())
        stream = await async_client.chat.completions.create(
            model="o4-mini", messages=PROMPT, stream=True, extra_headers=SCENARIO.headers()
        )
        assert isinstance(stream, openai.AsyncStream)
        async with stream:
            async for _ in stream:
                pass
        async with async_client.responses.stream(model="o4-mini", input="x", extra_headers=SCENARIO.headers()) as resp:
            async for _ in resp:
                pass

    asyncio.run(run())
    spans = instrumented.all()
    assert len(spans) == 3
    for span in spans:
        assert_usage(dict(span.attributes))
    assert [s.attributes[sc.REQUEST_STREAM] for s in spans] == [False, True, True]


def test_early_break_ends_span_with_context_manager(instrumented, client):
    with client.chat.completions.create(model="o4-mini", messages=PROMPT, stream=True, extra_headers=SCENARIO.headers()) as stream:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                break
    attrs = instrumented.only_attributes()
    assert sc.TIME_TO_FIRST_VISIBLE_TOKEN in attrs
    # The stream stopped before its usage chunk: counts are unknown, never 0.
    assert sc.OUTPUT_TOKENS not in attrs and sc.COST_USD not in attrs
    assert attrs[sc.REASONING_SOURCE] == "unknown"


def test_abandoned_stream_ends_span_when_collected(instrumented, client):
    def consume_a_little():
        stream = client.chat.completions.create(model="o4-mini", messages=PROMPT, stream=True, extra_headers=SCENARIO.headers())
        next(iter(stream))

    consume_a_little()
    gc.collect()
    assert len(instrumented.all()) == 1


def test_stream_dropped_mid_way_records_error_and_reraises(instrumented, client):
    scenario = SCENARIO.model_copy(update={"disconnect_after_visible": 3})
    stream = client.chat.completions.create(model="o4-mini", messages=PROMPT, stream=True, extra_headers=scenario.headers())
    with pytest.raises(Exception) as raised:
        for _ in stream:
            pass
    span = instrumented.only_span()
    assert span.status.status_code.name == "ERROR"
    assert span.attributes[sc.ERROR_TYPE] == type(raised.value).__qualname__


def test_http_error_reaches_caller_unchanged(instrumented, client):
    scenario = SCENARIO.model_copy(update={"error_status": 429})
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="o4-mini", messages=PROMPT, extra_headers=scenario.headers())
    attrs = instrumented.only_attributes()
    assert attrs[sc.ERROR_TYPE] == "RateLimitError"
    assert sc.INPUT_TOKENS not in attrs


def test_async_cancellation_ends_span(instrumented, async_client):
    async def run():
        stream = await async_client.chat.completions.create(
            model="o4-mini", messages=PROMPT, stream=True, extra_headers=SCENARIO.headers()
        )

        async def consume():
            async for _ in stream:
                pass

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    assert instrumented.only_attributes()[sc.ERROR_TYPE] == "CancelledError"


def test_unknown_model_gets_no_cost(instrumented, client):
    client.chat.completions.create(model="acme-reasoner-1", messages=PROMPT, extra_headers=SCENARIO.headers())
    attrs = instrumented.only_attributes()
    assert sc.COST_USD not in attrs
    assert attrs[sc.COST_SOURCE] == "unknown_price"
    assert attrs[sc.OUTPUT_TOKENS] == SCENARIO.output_tokens


def test_uninstrument_restores_sdk(client):
    original = openai.resources.chat.completions.Completions.create
    thinkmeter.instrument(exporter="none")
    assert openai.resources.chat.completions.Completions.create is not original
    thinkmeter.uninstrument()
    assert openai.resources.chat.completions.Completions.create is original
