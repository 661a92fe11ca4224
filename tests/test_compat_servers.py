"""OpenAI-compatible servers through the real openai SDK: DeepSeek, xAI, Groq, OpenRouter, vLLM, SGLang,
llama.cpp, each played by the loopback simulator in its own usage dialect.

The provider comes from the base URL through the `providers` mapping, as it would for a self-hosted
server; each test checks the stored counts exactly (estimates against the documented estimate), the
count sources, cost, and the timings within a tolerance.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from contextlib import contextmanager

import openai
import pytest

from tests.instrumented import instrumented  # noqa: F401  (fixture)
from tests.simulated import assert_at
from thinkmeter.instrumentation._estimate import estimated_tokens
from thinkmeter.pricing import PriceTable
from thinkmeter.schemas import semconv as sc
from thinkmeter.schemas.record import Usage
from thinkmeter.simulator import Scenario, Simulator, start_simulator
from thinkmeter.simulator.openai_chat import openrouter_cost
from thinkmeter.simulator.scenario import answer_words


TIME_SCALE = 0.1
PROMPT = [{"role": "user", "content": "What is 2 + 2?"}]
THINKER = Scenario(
    input_tokens=1500,
    cached_input_tokens=1024,
    reasoning_tokens=90,
    visible_tokens=12,
    reasoning_text="raw",
    prefill_s=1.0,
    thinking_s=8.0,
    visible_tokens_per_s=100.0,
)
UNCOUNTED = THINKER.model_copy(update={"reasoning_reported": False})


def mapped(provider: str) -> pytest.MarkDecorator:
    """Run the test with the simulator's host mapped to `provider`, as a user configures a server."""
    return pytest.mark.parametrize("instrumented", [{"127.0.0.1": provider}], indirect=True)


@contextmanager
def server(**options: object) -> Iterator[tuple[Simulator, openai.OpenAI]]:
    with start_simulator(time_scale=TIME_SCALE, **options) as sim:
        yield sim, openai.OpenAI(base_url=sim.base_url, api_key="test", max_retries=0)


@pytest.fixture(scope="module", autouse=True)
def warm_sdk() -> None:
    """The SDK builds its streaming types on first use (a few hundred ms): do that untimed."""
    with server(reasoning_field="reasoning") as (_, client):
        for _ in client.chat.completions.create(model="m", messages=PROMPT, stream=True, extra_headers=THINKER.headers()):
            pass


def chat(client: openai.OpenAI, scenario: Scenario, model: str, stream: bool) -> list:
    """One call; a stream is read to its end. Returns the chunks the caller saw (or the completion)."""
    reply = client.chat.completions.create(model=model, messages=PROMPT, stream=stream, extra_headers=scenario.headers())
    return list(reply) if stream else [reply]


def price_table_cost(model: str, usage: Usage) -> float:
    cost = PriceTable.load().cost(None, model, usage)
    assert cost is not None
    return cost.total_usd


def assert_stream_timings(attrs: dict, sim: Simulator, reasoning_streamed: bool = True) -> None:
    reply = sim.replies[-1]
    first = reply.first_token_wall_s if reasoning_streamed else reply.first_visible_wall_s
    assert_at(attrs[sc.TIME_TO_FIRST_TOKEN], first)
    assert_at(attrs[sc.TIME_TO_FIRST_VISIBLE_TOKEN], reply.first_visible_wall_s)


def answer_estimate(scenario: Scenario) -> int:
    return estimated_tokens(len("".join(answer_words(scenario.visible_tokens))))


@mapped("deepseek")
@pytest.mark.parametrize("stream", [False, True])
def test_deepseek_cache_hit_miss_and_reasoning_content(instrumented, stream):
    with server(reasoning_field="reasoning_content", chat_flavour="deepseek") as (sim, client):
        seen = chat(client, THINKER, "deepseek-reasoner", stream)
    attrs = instrumented.only_attributes()
    assert attrs[sc.PROVIDER] == "deepseek" and sc.ENGINE not in attrs
    assert attrs[sc.INPUT_TOKENS] == THINKER.input_tokens
    assert attrs[sc.CACHE_READ_TOKENS] == THINKER.cached_input_tokens  # prompt_cache_hit_tokens
    assert attrs[sc.OUTPUT_TOKENS] == THINKER.output_tokens
    assert attrs[sc.REASONING_TOKENS] == THINKER.reasoning_tokens
    assert attrs[sc.VISIBLE_OUTPUT_TOKENS] == THINKER.visible_tokens
    assert attrs[sc.REASONING_SOURCE] == attrs[sc.OUTPUT_SOURCE] == "reported"
    usage = Usage(
        input_tokens=THINKER.input_tokens,
        cache_read_tokens=THINKER.cached_input_tokens,
        output_tokens=THINKER.output_tokens,
        reasoning_tokens=THINKER.reasoning_tokens,
    )
    assert attrs[sc.COST_USD] == pytest.approx(price_table_cost("deepseek-reasoner", usage), rel=1e-12)
    if stream:
        assert all(chunk.choices for chunk in seen), "the usage chunk thinkmeter asked for stays hidden"
        assert_stream_timings(attrs, sim)


@mapped("x_ai")
@pytest.mark.parametrize("stream", [False, True])
def test_xai_reasoning_is_added_to_completion_tokens(instrumented, stream):
    with server(reasoning_field="reasoning_content", chat_flavour="xai") as (_, client):
        seen = chat(client, THINKER, "grok-3-mini", stream)
    if not stream:
        assert seen[0].usage.completion_tokens == THINKER.visible_tokens  # what the server says
    attrs = instrumented.only_attributes()
    assert attrs[sc.OUTPUT_TOKENS] == THINKER.output_tokens
    assert attrs[sc.OUTPUT_SOURCE] == "derived"
    assert attrs[sc.REASONING_TOKENS] == THINKER.reasoning_tokens
    assert attrs[sc.REASONING_SOURCE] == "reported"
    assert attrs[sc.VISIBLE_OUTPUT_TOKENS] == THINKER.visible_tokens
    usage = Usage(
        input_tokens=THINKER.input_tokens,
        cache_read_tokens=THINKER.cached_input_tokens,
        output_tokens=THINKER.output_tokens,
        reasoning_tokens=THINKER.reasoning_tokens,
    )
    # The reasoning is billed: the cost covers completion + reasoning.
    assert attrs[sc.COST_USD] == pytest.approx(price_table_cost("grok-3-mini", usage), rel=1e-12)


@mapped("groq")
@pytest.mark.parametrize("stream", [False, True])
def test_groq_x_groq_usage_and_server_timings(instrumented, stream):
    with server(reasoning_field="reasoning", chat_flavour="groq") as (sim, client):
        seen = chat(client, THINKER, "qwen/qwen3-32b", stream)
    if stream:
        assert seen[-1].usage is None and seen[-1].x_groq["usage"]  # the usage rides on x_groq only
    attrs = instrumented.only_attributes()
    assert attrs[sc.OUTPUT_TOKENS] == THINKER.output_tokens
    assert attrs[sc.REASONING_TOKENS] == THINKER.reasoning_tokens
    assert attrs[sc.CACHE_READ_TOKENS] == THINKER.cached_input_tokens
    assert attrs[sc.SERVER_QUEUE_TIME] == 0.0
    assert attrs[sc.SERVER_PROMPT_TIME] == pytest.approx(THINKER.prefill_s)
    assert attrs[sc.SERVER_DECODE_TIME] == pytest.approx(THINKER.end_s - THINKER.prefill_s)
    assert attrs[sc.SERVER_TOTAL_TIME] == pytest.approx(THINKER.end_s)
    if stream:
        assert_stream_timings(attrs, sim)


@mapped("openrouter")
@pytest.mark.parametrize("stream", [False, True])
def test_openrouter_reported_cost_wins(instrumented, stream):
    with server(reasoning_field="reasoning", chat_flavour="openrouter") as (_, client):
        seen = chat(client, THINKER, "openai/o4-mini", stream)
    if stream:
        assert all(chunk.choices for chunk in seen)
    attrs = instrumented.only_attributes()
    assert attrs[sc.COST_USD] == pytest.approx(openrouter_cost(THINKER), rel=1e-12)
    assert attrs[sc.COST_SOURCE] == "reported"
    assert attrs[sc.OUTPUT_TOKENS] == THINKER.output_tokens
    assert attrs[sc.REASONING_TOKENS] == THINKER.reasoning_tokens


@mapped("vllm")
@pytest.mark.parametrize("reasoning_field", ["reasoning", "reasoning_content"])
def test_vllm_reported_reasoning_either_field(instrumented, reasoning_field):
    with server(reasoning_field=reasoning_field) as (sim, client):
        chat(client, THINKER, "Qwen/Qwen3-8B", stream=True)
    attrs = instrumented.only_attributes()
    assert attrs[sc.PROVIDER] == attrs[sc.ENGINE] == "vllm"  # a self-hosted engine, named by configuration
    assert attrs[sc.REASONING_TOKENS] == THINKER.reasoning_tokens
    assert attrs[sc.REASONING_SOURCE] == "reported"
    assert attrs[sc.COST_SOURCE] == "unknown_price"
    assert_stream_timings(attrs, sim)


@mapped("sglang")
@pytest.mark.parametrize("stream", [False, True])
def test_uncounted_reasoning_is_estimated_from_the_answer_text(instrumented, stream):
    """SGLang and older vLLM stream reasoning_content but count none of it."""
    with server(reasoning_field="reasoning_content") as (sim, client):
        chat(client, UNCOUNTED, "Qwen/Qwen3-8B", stream)
    attrs = instrumented.only_attributes()
    assert attrs[sc.ENGINE] == "sglang"
    assert attrs[sc.OUTPUT_TOKENS] == UNCOUNTED.output_tokens
    assert attrs[sc.OUTPUT_SOURCE] == "reported"
    assert attrs[sc.REASONING_TOKENS] == UNCOUNTED.output_tokens - answer_estimate(UNCOUNTED)
    assert attrs[sc.REASONING_SOURCE] == "estimated"
    assert attrs[sc.REASONING_TOKENS] + attrs[sc.VISIBLE_OUTPUT_TOKENS] == attrs[sc.OUTPUT_TOKENS]
    if stream:
        assert_stream_timings(attrs, sim)


@mapped("sglang")
def test_no_reasoning_text_and_no_count_stays_unknown(instrumented):
    scenario = UNCOUNTED.model_copy(update={"reasoning_text": "hidden"})
    with server(reasoning_field="reasoning_content") as (_, client):
        chat(client, scenario, "Qwen/Qwen3-8B", stream=True)
    attrs = instrumented.only_attributes()
    assert attrs[sc.OUTPUT_TOKENS] == scenario.output_tokens
    assert sc.REASONING_TOKENS not in attrs and sc.VISIBLE_OUTPUT_TOKENS not in attrs
    assert attrs[sc.REASONING_SOURCE] == "unknown"


@mapped("llama.cpp")
@pytest.mark.parametrize("stream", [False, True])
def test_llama_cpp_timings(instrumented, stream):
    with server(reasoning_field="reasoning_content", chat_flavour="llama.cpp") as (_, client):
        chat(client, THINKER, "qwen3-8b-q4", stream)
    attrs = instrumented.only_attributes()
    assert attrs[sc.ENGINE] == "llama.cpp"
    assert attrs[sc.INPUT_TOKENS] == THINKER.input_tokens
    assert attrs[sc.CACHE_READ_TOKENS] == THINKER.cached_input_tokens  # timings.cache_n
    assert attrs[sc.SERVER_PROMPT_TIME] == pytest.approx(THINKER.prefill_s)
    assert attrs[sc.SERVER_DECODE_TIME] == pytest.approx(THINKER.end_s - THINKER.prefill_s)
    assert attrs[sc.OUTPUT_TOKENS] == THINKER.output_tokens
    assert attrs[sc.REASONING_TOKENS] == THINKER.output_tokens - answer_estimate(THINKER)
    assert attrs[sc.REASONING_SOURCE] == "estimated"


@mapped("vllm")
def test_early_break_in_the_reasoning_ends_the_span(instrumented):
    with server(reasoning_field="reasoning") as (sim, client), client.chat.completions.create(
        model="Qwen/Qwen3-8B", messages=PROMPT, stream=True, extra_headers=THINKER.headers()
    ) as stream:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.model_extra.get("reasoning"):
                break
    attrs = instrumented.only_attributes()
    assert_at(attrs[sc.TIME_TO_FIRST_TOKEN], sim.replies[-1].first_token_wall_s)
    assert sc.TIME_TO_FIRST_VISIBLE_TOKEN not in attrs
    assert sc.OUTPUT_TOKENS not in attrs and sc.REASONING_TOKENS not in attrs  # unknown, never 0


@mapped("vllm")
def test_abandoned_and_failing_streams_end_their_spans(instrumented):
    dropped = UNCOUNTED.model_copy(update={"disconnect_after_visible": 2})
    with server(reasoning_field="reasoning") as (_, client):
        abandoned = client.chat.completions.create(
            model="m", messages=PROMPT, stream=True, extra_headers=THINKER.headers()
        )
        next(iter(abandoned))
        del abandoned
        gc.collect()
        with pytest.raises(Exception) as raised:
            chat(client, dropped, "m", stream=True)
    spans = sorted(instrumented.all(), key=lambda span: span.start_time)
    assert len(spans) == 2
    assert spans[1].attributes[sc.ERROR_TYPE] == type(raised.value).__qualname__
    assert sc.REASONING_TOKENS not in spans[1].attributes


@mapped("deepseek")
def test_async_stream_and_cancellation(instrumented):
    async def run(base_url: str) -> None:
        client = openai.AsyncOpenAI(base_url=base_url, api_key="test", max_retries=0)
        stream = await client.chat.completions.create(
            model="deepseek-reasoner", messages=PROMPT, stream=True, extra_headers=THINKER.headers()
        )
        async for _ in stream:
            pass
        stream = await client.chat.completions.create(
            model="deepseek-reasoner", messages=PROMPT, stream=True, extra_headers=THINKER.headers()
        )

        async def consume() -> None:
            async for _ in stream:
                pass

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.15)  # inside the thinking phase
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with server(reasoning_field="reasoning_content", chat_flavour="deepseek") as (sim, _):
        asyncio.run(run(sim.base_url))
    finished, cancelled = sorted(instrumented.all(), key=lambda span: span.start_time)
    assert finished.attributes[sc.REASONING_TOKENS] == THINKER.reasoning_tokens
    assert finished.attributes[sc.CACHE_READ_TOKENS] == THINKER.cached_input_tokens
    assert cancelled.attributes[sc.ERROR_TYPE] == "CancelledError"
    assert sc.TIME_TO_FIRST_TOKEN in cancelled.attributes and sc.TIME_TO_FIRST_VISIBLE_TOKEN not in cancelled.attributes


@mapped("vllm")
def test_stream_iterated_without_a_name(instrumented):
    """`for chunk in client.chat.completions.create(..., stream=True)`: nothing holds the stream but the loop."""
    with server(reasoning_field="reasoning") as (sim, client):
        for _ in client.chat.completions.create(model="m", messages=PROMPT, stream=True, extra_headers=THINKER.headers()):
            pass
    attrs = instrumented.only_attributes()
    assert attrs[sc.REASONING_TOKENS] == THINKER.reasoning_tokens
    assert_stream_timings(attrs, sim)
