"""The google-genai SDK against the simulator: exact counts, costs and timed phases on every surface."""

from __future__ import annotations

import asyncio
import gc
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from google import genai
from google.genai import errors, types

from tests.instrumented import Spans, capturing, instrumented  # noqa: F401  (pytest fixtures)
from tests.simulated import assert_at, assert_stream_timings, cancel_mid_stream, expected_cost, sim  # noqa: F401  (pytest fixture)
from thinkmeter.schemas import semconv as sc
from thinkmeter.simulator import Scenario, Simulator
from thinkmeter.simulator.scenario import answer_words

MODEL = "gemini-2.5-flash"
SCENARIO = Scenario(
    input_tokens=1200,
    cached_input_tokens=800,
    reasoning_tokens=700,
    visible_tokens=12,
    prefill_s=0.15,
    thinking_s=0.8,
    visible_tokens_per_s=200,
)
STREAMED = {"generate_content_stream", "chat_stream"}
PROMPT = "Why is the sky blue?"


@pytest.fixture(scope="module")
def client(sim: Simulator) -> Iterator[genai.Client]:
    sync_client = _new_client(sim)
    # The SDK builds its types on first use: no latency under test.
    SYNC_MODES["generate_content_stream"](sync_client, _config(Scenario(prefill_s=0.0, reasoning_tokens=40, visible_tokens=2)))
    yield sync_client
    if hasattr(sync_client, "close"):  # older google-genai (1.20) has none
        sync_client.close()


def _new_client(sim: Simulator, **options: Any) -> genai.Client:
    """A client of its own, for async tests: its aio connections belong to one event loop."""
    return genai.Client(api_key="x", http_options=types.HttpOptions(base_url=sim.url), **options)


async def _aclose(client: genai.Client) -> None:
    if hasattr(client.aio, "aclose"):  # older google-genai (1.20) has none
        await client.aio.aclose()


def _config(scenario: Scenario = SCENARIO, include_thoughts: bool = True, **thinking: Any) -> types.GenerateContentConfig:
    return types.GenerateContentConfig(
        thinking_config=types.ThinkingConfig(include_thoughts=include_thoughts, **thinking),
        http_options=types.HttpOptions(headers=scenario.headers()),
    )


SYNC_MODES: dict[str, Callable[[genai.Client, types.GenerateContentConfig], Any]] = {
    "generate_content": lambda client, config: client.models.generate_content(model=MODEL, contents=PROMPT, config=config),
    "generate_content_stream": lambda client, config: list(
        client.models.generate_content_stream(model=MODEL, contents=PROMPT, config=config)
    )[-1],
    # Chat sessions go through models.generate_content(_stream): one span each, nothing doubled.
    "chat": lambda client, config: client.chats.create(model=MODEL, config=config).send_message(PROMPT),
    "chat_stream": lambda client, config: list(client.chats.create(model=MODEL, config=config).send_message_stream(PROMPT))[-1],
}


async def _async_stream(client: genai.Client, config: types.GenerateContentConfig) -> Any:
    stream = await client.aio.models.generate_content_stream(model=MODEL, contents=PROMPT, config=config)
    return [chunk async for chunk in stream][-1]


async def _async_chat_stream(client: genai.Client, config: types.GenerateContentConfig) -> Any:
    chat = client.aio.chats.create(model=MODEL, config=config)
    return [chunk async for chunk in await chat.send_message_stream(PROMPT)][-1]


ASYNC_MODES: dict[str, Callable[[genai.Client, types.GenerateContentConfig], Awaitable[Any]]] = {
    "generate_content": lambda client, config: client.aio.models.generate_content(model=MODEL, contents=PROMPT, config=config),
    "generate_content_stream": _async_stream,
    "chat": lambda client, config: client.aio.chats.create(model=MODEL, config=config).send_message(PROMPT),
    "chat_stream": _async_chat_stream,
}


def _thoughts_source(last: Any) -> str:
    """Older google-genai (1.0) drops thoughtsTokenCount: the span then derives it from the total."""
    return "reported" if getattr(last.usage_metadata, "thoughts_token_count", None) is not None else "derived"


def assert_exact(attrs: dict[str, Any], sim: Simulator, last: Any, *, stream: bool, scenario: Scenario = SCENARIO) -> None:
    """`last`: the (last) response the caller got. Older SDKs drop some fields of it: the span then
    says nothing of them either (response id) or derives them (thoughts, from the total)."""
    assert attrs[sc.OPERATION] == "generate_content"
    assert attrs[sc.PROVIDER] == "gcp.gemini"
    assert attrs[sc.REQUEST_MODEL] == MODEL and attrs[sc.RESPONSE_MODEL] == MODEL
    assert attrs.get(sc.RESPONSE_ID) == getattr(last, "response_id", None) in (sim.replies[-1].id, None)
    assert attrs[sc.REQUEST_STREAM] is stream
    assert tuple(attrs[sc.RESPONSE_FINISH_REASONS]) == ("stop",)
    assert attrs[sc.SERVER_ADDRESS] == "127.0.0.1" and attrs[sc.SERVER_PORT] == sim.port
    # prompt_token_count includes the cached content.
    assert attrs[sc.INPUT_TOKENS] == scenario.input_tokens
    assert attrs[sc.CACHE_READ_TOKENS] == scenario.cached_input_tokens
    # Candidates exclude thoughts: output = candidates + thoughts, however many running totals came.
    assert attrs[sc.OUTPUT_TOKENS] == scenario.output_tokens
    assert attrs[sc.REASONING_TOKENS] == scenario.reasoning_tokens
    assert attrs[sc.VISIBLE_OUTPUT_TOKENS] == scenario.visible_tokens
    assert attrs[sc.REASONING_SOURCE] == attrs[sc.OUTPUT_SOURCE] == _thoughts_source(last)
    total, reasoning = expected_cost(MODEL, scenario)
    assert attrs[sc.COST_USD] == pytest.approx(total) and attrs[sc.REASONING_COST_USD] == pytest.approx(reasoning)
    if stream:
        assert_stream_timings(attrs, scenario, reasoning_streamed=True)
    else:
        assert sc.TIME_TO_FIRST_TOKEN not in attrs and sc.TIME_TO_FIRST_CHUNK not in attrs


@pytest.mark.parametrize("mode", list(SYNC_MODES))
def test_sync_surfaces(instrumented: Spans, sim: Simulator, client: genai.Client, mode: str) -> None:
    last = SYNC_MODES[mode](client, _config())
    assert_exact(instrumented.only_attributes(), sim, last, stream=mode in STREAMED)


@pytest.mark.parametrize("mode", list(ASYNC_MODES))
def test_async_surfaces(instrumented: Spans, sim: Simulator, mode: str) -> None:
    async def run() -> Any:
        client = _new_client(sim)
        last = await ASYNC_MODES[mode](client, _config())
        await _aclose(client)
        return last

    last = asyncio.run(run())
    assert_exact(instrumented.only_attributes(), sim, last, stream=mode in STREAMED)


def test_cost_prices_thoughts_at_the_output_rate(instrumented: Spans, client: genai.Client) -> None:
    """Billed output is candidates + thoughts; pricing the candidates alone would miss most of it."""
    SYNC_MODES["generate_content"](client, _config())
    attrs = instrumented.only_attributes()
    price = (0.3, 0.03, 2.5)  # gemini-2.5-flash USD per 1M: input, cache read, output (thinking included)
    uncached = SCENARIO.input_tokens - SCENARIO.cached_input_tokens
    input_usd = (uncached * price[0] + SCENARIO.cached_input_tokens * price[1]) / 1e6
    assert attrs[sc.COST_USD] == pytest.approx(input_usd + (12 + 700) * price[2] / 1e6)
    assert attrs[sc.REASONING_COST_USD] == pytest.approx(700 * price[2] / 1e6)
    assert attrs[sc.COST_USD] > 10 * (input_usd + 12 * price[2] / 1e6)


def test_hidden_thoughts_are_counted_but_not_timed(instrumented: Spans, client: genai.Client) -> None:
    """Without include_thoughts nothing arrives while the model thinks: TTFT is the first visible token."""
    last = SYNC_MODES["generate_content_stream"](client, _config(include_thoughts=False))
    attrs = instrumented.only_attributes()
    assert attrs[sc.REASONING_TOKENS] == SCENARIO.reasoning_tokens
    assert attrs[sc.REASONING_SOURCE] == _thoughts_source(last)
    assert_stream_timings(attrs, SCENARIO, reasoning_streamed=False)
    assert attrs[sc.TIME_TO_FIRST_TOKEN] == attrs[sc.TIME_TO_FIRST_VISIBLE_TOKEN]


@pytest.mark.parametrize("reasoning_tokens", [700, 0])
@pytest.mark.parametrize("mode", ["generate_content", "generate_content_stream"])
def test_missing_thoughts_count_is_derived_from_the_total(
    instrumented: Spans, client: genai.Client, mode: str, reasoning_tokens: int
) -> None:
    """The API leaves zero counts out; a missing thoughts count is total - prompt - candidates."""
    scenario = SCENARIO.model_copy(update={"reasoning_reported": False, "reasoning_tokens": reasoning_tokens})
    SYNC_MODES[mode](client, _config(scenario))
    attrs = instrumented.only_attributes()
    assert attrs[sc.OUTPUT_TOKENS] == scenario.output_tokens and attrs[sc.OUTPUT_SOURCE] == "derived"
    assert attrs[sc.REASONING_TOKENS] == reasoning_tokens and attrs[sc.REASONING_SOURCE] == "derived"


def test_thinking_config_is_recorded(instrumented: Spans, client: genai.Client) -> None:
    if not hasattr(types, "ThinkingLevel"):
        pytest.skip(f"google-genai {genai.__version__} has no thinking_level")
    SYNC_MODES["generate_content"](client, _config(thinking_budget=1024))
    attrs = instrumented.only_attributes()
    assert attrs[sc.REQUEST_THINKING_BUDGET] == 1024 and sc.REQUEST_REASONING_LEVEL not in attrs
    instrumented.clear()
    SYNC_MODES["generate_content"](client, _config(thinking_level=types.ThinkingLevel.HIGH))
    assert instrumented.only_attributes()[sc.REQUEST_REASONING_LEVEL] == "high"
    instrumented.clear()
    config = {"thinking_config": {"thinking_budget": -1}, "max_output_tokens": 8000, "http_options": {"headers": SCENARIO.headers()}}
    client.models.generate_content(model=MODEL, contents=PROMPT, config=config)
    attrs = instrumented.only_attributes()
    assert sc.REQUEST_THINKING_BUDGET not in attrs and attrs[sc.REQUEST_MAX_TOKENS] == 8000


def test_vertex_mode_names_vertex_ai(instrumented: Spans, sim: Simulator) -> None:
    client = _new_client(sim, vertexai=True)
    SYNC_MODES["generate_content"](client, _config())
    attrs = instrumented.only_attributes()
    assert attrs[sc.PROVIDER] == "gcp.vertex_ai" and attrs[sc.OUTPUT_TOKENS] == SCENARIO.output_tokens


def test_stream_timer_starts_at_the_call(instrumented: Spans, client: genai.Client) -> None:
    """The stream is lazy (the request goes out on the first iteration), yet timings count from the call."""
    stream = client.models.generate_content_stream(model=MODEL, contents=PROMPT, config=_config())
    time.sleep(0.1)
    assert list(stream)
    attrs = instrumented.only_attributes()
    assert_at(attrs.get(sc.TIME_TO_FIRST_TOKEN), 0.1 + SCENARIO.first_token_s)


def test_http_error_ends_the_span_with_its_type(instrumented: Spans, client: genai.Client) -> None:
    with pytest.raises(errors.ClientError):
        SYNC_MODES["generate_content_stream"](client, _config(SCENARIO.model_copy(update={"error_status": 429})))
    attrs = instrumented.only_attributes()
    assert attrs[sc.ERROR_TYPE] == "ClientError" and sc.OUTPUT_TOKENS not in attrs


def _first_visible(stream: Any) -> None:
    for chunk in stream:
        if chunk.text:
            return


def test_early_break_ends_the_span_on_close(instrumented: Spans, client: genai.Client) -> None:
    stream = client.models.generate_content_stream(model=MODEL, contents=PROMPT, config=_config())
    _first_visible(stream)
    assert instrumented.all() == []
    stream.close()
    (span,) = instrumented.all()
    attrs = dict(span.attributes or {})
    # The running total of the last chunk read: all the thoughts and one visible token so far.
    assert attrs[sc.REASONING_TOKENS] == SCENARIO.reasoning_tokens and attrs[sc.OUTPUT_TOKENS] == SCENARIO.reasoning_tokens + 1
    assert_stream_timings(attrs, SCENARIO, reasoning_streamed=True)


def test_early_break_ends_the_span_when_dropped(instrumented: Spans, client: genai.Client) -> None:
    stream = client.models.generate_content_stream(model=MODEL, contents=PROMPT, config=_config())
    _first_visible(stream)
    del stream
    gc.collect()
    (span,) = instrumented.all()
    assert sc.ERROR_TYPE not in dict(span.attributes or {})


def test_unconsumed_stream_sends_nothing_and_ends_when_collected(instrumented: Spans, sim: Simulator, client: genai.Client) -> None:
    served = len(sim.replies)
    stream = client.models.generate_content_stream(model=MODEL, contents=PROMPT, config=_config())
    del stream
    gc.collect()
    attrs = instrumented.only_attributes()
    assert len(sim.replies) == served
    assert attrs[sc.REQUEST_STREAM] is True and sc.INPUT_TOKENS not in attrs


def test_exception_mid_stream_ends_the_span_with_the_error(instrumented: Spans, client: genai.Client) -> None:
    scenario = SCENARIO.model_copy(update={"disconnect_after_visible": 3})
    with pytest.raises(Exception) as raised:
        SYNC_MODES["generate_content_stream"](client, _config(scenario))
    attrs = instrumented.only_attributes()
    assert attrs[sc.ERROR_TYPE] == type(raised.value).__qualname__
    assert_at(attrs.get(sc.TIME_TO_FIRST_VISIBLE_TOKEN), scenario.first_visible_s)


def test_async_cancellation_ends_the_span(instrumented: Spans, sim: Simulator) -> None:
    client = _new_client(sim)
    cancel_mid_stream(lambda: client.aio.models.generate_content_stream(model=MODEL, contents=PROMPT, config=_config()))
    asyncio.run(_aclose(client))
    (span,) = instrumented.all()
    assert dict(span.attributes or {})[sc.ERROR_TYPE] == "CancelledError"


def test_async_aclose_ends_the_span(instrumented: Spans, sim: Simulator) -> None:
    client = _new_client(sim)

    async def run() -> None:
        stream = await client.aio.models.generate_content_stream(model=MODEL, contents=PROMPT, config=_config())
        async for _ in stream:
            break
        assert instrumented.all() == []
        await stream.aclose()
        await _aclose(client)

    asyncio.run(run())
    (span,) = instrumented.all()
    assert_at(dict(span.attributes or {}).get(sc.TIME_TO_FIRST_TOKEN), SCENARIO.first_token_s)


def _mask_sky(text: str) -> str:
    return text.replace("sky", "[masked]")


@pytest.mark.parametrize("capturing", [{"redact": _mask_sky}], indirect=True)
@pytest.mark.parametrize("mode", ["generate_content", "generate_content_stream"])
def test_content_capture_records_redacted_prompt_and_answer(capturing: Spans, client: genai.Client, mode: str) -> None:
    config = _config().model_copy(update={"system_instruction": "Answer briefly."})
    SYNC_MODES[mode](client, config)
    attrs = capturing.only_attributes()
    assert json.loads(attrs[sc.INPUT_MESSAGES]) == [
        {"role": "system", "parts": [{"type": "text", "content": "Answer briefly."}]},
        {"role": "user", "parts": [{"type": "text", "content": "Why is the [masked] blue?"}]},
    ]
    # The answer only: thought summaries are reasoning, never captured as output.
    assert json.loads(attrs[sc.OUTPUT_MESSAGES]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "".join(answer_words(SCENARIO.visible_tokens))}], "finish_reason": "stop"}
    ]
