"""Ollama instrumentation: the real ollama client (sync, async, module functions) against the
simulator's /api/chat and /api/generate, streamed (NDJSON) and not.

Ollama reports eval_count (thinking included) and no thinking count: the split is estimated from the
thinking text, so the test checks it against the documented estimate, and the reported counts, the
durations and the timings exactly or within a tolerance.
"""

from __future__ import annotations

import asyncio
import gc

import ollama
import pytest

from tests.instrumented import instrumented  # noqa: F401  (fixture)
from tests.simulated import assert_at
from thinkmeter.instrumentation._estimate import estimated_tokens
from thinkmeter.schemas import semconv as sc
from thinkmeter.simulator import Scenario, start_simulator
from thinkmeter.simulator.ollama import durations
from thinkmeter.simulator.scenario import reasoning_words


TIME_SCALE = 0.1
MESSAGES = [{"role": "user", "content": "Why is the sky blue?"}]
THINKER = Scenario(
    input_tokens=30,
    reasoning_tokens=40,
    visible_tokens=60,
    prefill_s=1.0,
    thinking_s=8.0,
    visible_tokens_per_s=100.0,
)


@pytest.fixture(scope="module")
def simulator():
    with start_simulator(time_scale=TIME_SCALE) as sim:
        yield sim


@pytest.fixture
def client(simulator):
    return ollama.Client(host=simulator.url, headers=THINKER.headers())


def reasoning_estimate(scenario: Scenario) -> int:
    thinking = "".join(reasoning_words(scenario.reasoning_tokens))
    return min(scenario.output_tokens, estimated_tokens(len(thinking)))


def assert_counts(attrs: dict, scenario: Scenario = THINKER, thinking: bool = True) -> None:
    assert attrs[sc.PROVIDER] == attrs[sc.ENGINE] == "ollama"
    assert attrs[sc.INPUT_TOKENS] == scenario.input_tokens  # prompt_eval_count
    assert attrs[sc.OUTPUT_TOKENS] == scenario.output_tokens  # eval_count, thinking included
    assert attrs[sc.OUTPUT_SOURCE] == "reported"
    reasoning = reasoning_estimate(scenario) if thinking else 0
    assert attrs[sc.REASONING_TOKENS] == reasoning
    assert attrs[sc.VISIBLE_OUTPUT_TOKENS] == scenario.output_tokens - reasoning
    assert attrs[sc.REASONING_SOURCE] == "estimated"
    expected_ns = durations(scenario)
    assert attrs[sc.OLLAMA_LOAD_DURATION] == expected_ns["load_duration"] / 1e9
    assert attrs[sc.OLLAMA_PROMPT_EVAL_DURATION] == expected_ns["prompt_eval_duration"] / 1e9
    assert attrs[sc.OLLAMA_EVAL_DURATION] == expected_ns["eval_duration"] / 1e9
    assert attrs[sc.OLLAMA_TOTAL_DURATION] == expected_ns["total_duration"] / 1e9
    assert attrs[sc.RESPONSE_FINISH_REASONS] == ("stop",)


def assert_stream_timings(attrs: dict, simulator, thinking: bool = True) -> None:
    reply = simulator.replies[-1]
    first = reply.first_token_wall_s if thinking else reply.first_visible_wall_s
    assert_at(attrs[sc.TIME_TO_FIRST_TOKEN], first)
    assert_at(attrs[sc.TIME_TO_FIRST_VISIBLE_TOKEN], reply.first_visible_wall_s)
    assert attrs[sc.TIME_TO_FIRST_CHUNK] <= attrs[sc.TIME_TO_FIRST_TOKEN]


def test_chat(instrumented, client, simulator):
    response = client.chat("qwen3", MESSAGES, think=True, options={"num_predict": 4096})  # positional, as often
    assert response.message.thinking and response.message.content
    span = instrumented.only_span()
    attrs = dict(span.attributes)
    assert span.name == "chat qwen3"
    assert_counts(attrs)
    assert attrs[sc.REQUEST_MODEL] == attrs[sc.RESPONSE_MODEL] == "qwen3"
    assert attrs[sc.REQUEST_MAX_TOKENS] == 4096
    assert attrs[sc.SERVER_ADDRESS] == "127.0.0.1" and attrs[sc.SERVER_PORT] == simulator.port
    assert attrs[sc.REQUEST_STREAM] is False and sc.TIME_TO_FIRST_CHUNK not in attrs
    assert attrs[sc.COST_SOURCE] == "unknown_price"
    duration = (span.end_time - span.start_time) / 1e9
    assert_at(duration, simulator.replies[-1].end_wall_s)


def test_chat_stream(instrumented, client, simulator):
    parts = list(client.chat(model="qwen3", messages=MESSAGES, think=True, stream=True))
    assert parts[-1].done
    attrs = instrumented.only_attributes()
    assert_counts(attrs)
    assert attrs[sc.REQUEST_STREAM] is True
    assert_stream_timings(attrs, simulator)


@pytest.mark.parametrize("stream", [False, True])
def test_generate(instrumented, client, simulator, stream):
    reply = client.generate("qwen3", "Why is the sky blue?", think="high", stream=stream)
    if stream:
        reply = list(reply)
    attrs = instrumented.only_attributes()
    assert attrs[sc.OPERATION] == "text_completion"
    assert attrs[sc.REQUEST_REASONING_LEVEL] == "high"
    assert_counts(attrs)
    if stream:
        assert_stream_timings(attrs, simulator)


def test_without_thinking_all_output_is_visible(instrumented, client, simulator):
    list(client.chat(model="llama3.2", messages=MESSAGES, stream=True))
    attrs = instrumented.only_attributes()
    assert_counts(attrs, thinking=False)
    assert_stream_timings(attrs, simulator, thinking=False)


def test_module_functions_use_the_default_client(instrumented, simulator):
    default = ollama.chat.__self__._client  # the httpx client of ollama's module-level Client
    saved_url, saved_headers = default.base_url, default.headers.copy()
    default.base_url = simulator.url
    default.headers.update(THINKER.headers())
    try:
        ollama.chat(model="qwen3", messages=MESSAGES, think=True)
    finally:
        default.base_url, default.headers = saved_url, saved_headers
    assert_counts(instrumented.only_attributes())


def test_async_client(instrumented, simulator):
    async def run() -> None:
        client = ollama.AsyncClient(host=simulator.url, headers=THINKER.headers())
        await client.chat(model="qwen3", messages=MESSAGES, think=True)
        async for _ in await client.generate(model="qwen3", prompt="x", think=True, stream=True):
            pass

    asyncio.run(run())
    plain, streamed = sorted(instrumented.all(), key=lambda span: span.start_time)
    assert_counts(dict(plain.attributes))
    assert_counts(dict(streamed.attributes))
    assert_stream_timings(dict(streamed.attributes), simulator)


def test_async_cancellation_ends_span(instrumented, simulator):
    async def run() -> None:
        client = ollama.AsyncClient(host=simulator.url, headers=THINKER.headers())
        stream = await client.chat(model="qwen3", messages=MESSAGES, think=True, stream=True)

        async def consume() -> None:
            async for _ in stream:
                pass

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.15)  # inside the thinking phase
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    attrs = instrumented.only_attributes()
    assert attrs[sc.ERROR_TYPE] == "CancelledError"
    assert sc.TIME_TO_FIRST_TOKEN in attrs and sc.TIME_TO_FIRST_VISIBLE_TOKEN not in attrs
    assert sc.OUTPUT_TOKENS not in attrs and attrs[sc.REASONING_SOURCE] == "unknown"


def test_early_break_ends_span_when_the_stream_goes(instrumented, client, simulator):
    stream = client.chat(model="qwen3", messages=MESSAGES, think=True, stream=True)
    for part in stream:
        if part.message.content:
            break
    del stream, part
    gc.collect()
    attrs = instrumented.only_attributes()
    assert sc.ERROR_TYPE not in attrs
    assert_at(attrs[sc.TIME_TO_FIRST_VISIBLE_TOKEN], simulator.replies[-1].first_visible_wall_s)
    assert sc.OUTPUT_TOKENS not in attrs  # the final counts never came: unknown, not 0


@pytest.mark.parametrize("stream", [False, True])
def test_http_error_reaches_caller_unchanged(instrumented, simulator, stream):
    failing = THINKER.model_copy(update={"error_status": 500})
    client = ollama.Client(host=simulator.url, headers=failing.headers())
    with pytest.raises(ollama.ResponseError) as raised:
        reply = client.chat(model="qwen3", messages=MESSAGES, stream=stream)
        if stream:
            list(reply)  # the request goes out on the first read
    assert raised.value.status_code == 500
    attrs = instrumented.only_attributes()
    assert attrs[sc.ERROR_TYPE] == "ResponseError"
    assert sc.INPUT_TOKENS not in attrs


def test_dropped_stream_records_the_error(instrumented, simulator):
    dropped = THINKER.model_copy(update={"disconnect_after_visible": 5})
    client = ollama.Client(host=simulator.url, headers=dropped.headers())
    with pytest.raises(Exception) as raised:
        for _ in client.chat(model="qwen3", messages=MESSAGES, think=True, stream=True):
            pass
    span = instrumented.only_span()
    assert span.status.status_code.name == "ERROR"
    assert span.attributes[sc.ERROR_TYPE] == type(raised.value).__qualname__
