"""The anthropic SDK against the simulator: exact counts, costs and timed phases on every surface."""

from __future__ import annotations

import asyncio
import gc
import inspect
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anthropic
import pytest

from tests.instrumented import Spans, capturing, instrumented  # noqa: F401  (pytest fixtures)
from tests.simulated import THINKING_SCENARIO, assert_at, assert_stream_timings, expected_cost, sim  # noqa: F401  (pytest fixture)
from thinkmeter.instrumentation._estimate import estimated_tokens
from thinkmeter.schemas import semconv as sc
from thinkmeter.simulator import Scenario, Simulator
from thinkmeter.simulator.scenario import answer_words

MODEL = "claude-opus-4-5"
SCENARIO = THINKING_SCENARIO
STREAMED = {"create_stream", "stream_helper"}
# The resource method each mode calls; older SDKs lack some (messages.parse, beta stream in 0.40).
METHODS = {"create": "create", "parse": "parse", "create_stream": "create", "stream_helper": "stream"}


def _kwargs(scenario: Scenario = SCENARIO, **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": "Why is the sky blue?"}],
        "extra_headers": scenario.headers(),
        **extra,
    }


@pytest.fixture(scope="module")
def client(sim: Simulator) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=sim.url, api_key="x", max_retries=0) as sync_client:
        _warm_up(sync_client)
        yield sync_client


def _warm_up(client: anthropic.Anthropic) -> None:
    """The SDK builds its event types on first use (0.3 s for the beta ones): no latency under test."""
    quick = _kwargs(Scenario(prefill_s=0.0, reasoning_tokens=40, visible_tokens=2))
    for resource in (client.messages, client.beta.messages):
        list(resource.create(stream=True, **quick))
        if hasattr(resource, "stream"):
            _stream_helper(resource, quick)


def _async_client(sim: Simulator) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=sim.url, api_key="x", max_retries=0)


def _resource(client: Any, beta: bool, mode: str = "create") -> Any:
    resource = client.beta.messages if beta else client.messages
    if not hasattr(resource, METHODS[mode]):
        pytest.skip(f"anthropic {anthropic.__version__} has no {'beta.' if beta else ''}messages.{METHODS[mode]}")
    return resource


def _stream_helper(resource: Any, kwargs: dict[str, Any]) -> None:
    with resource.stream(**kwargs) as stream:
        # text_stream reads the SDK's MessageStream, not our proxy: the raw stream under it is traced.
        assert "".join(stream.text_stream)


SYNC_MODES: dict[str, Callable[[Any, dict[str, Any]], Any]] = {
    "create": lambda resource, kwargs: resource.create(**kwargs),
    "parse": lambda resource, kwargs: resource.parse(**kwargs),
    "create_stream": lambda resource, kwargs: list(resource.create(stream=True, **kwargs)),
    "stream_helper": _stream_helper,
}


async def _async_create_stream(resource: Any, kwargs: dict[str, Any]) -> None:
    stream = await resource.create(stream=True, **kwargs)
    assert [event async for event in stream]


async def _async_stream_helper(resource: Any, kwargs: dict[str, Any]) -> None:
    async with resource.stream(**kwargs) as stream:
        assert (await stream.get_final_message()).content


ASYNC_MODES: dict[str, Callable[[Any, dict[str, Any]], Awaitable[Any]]] = {
    "create": lambda resource, kwargs: resource.create(**kwargs),
    "parse": lambda resource, kwargs: resource.parse(**kwargs),
    "create_stream": _async_create_stream,
    "stream_helper": _async_stream_helper,
}


def assert_exact(attrs: dict[str, Any], sim: Simulator, *, stream: bool, scenario: Scenario = SCENARIO) -> None:
    reply = sim.replies[-1]
    assert attrs[sc.OPERATION] == "chat"
    assert attrs[sc.PROVIDER] == "anthropic"
    assert attrs[sc.REQUEST_MODEL] == MODEL and attrs[sc.RESPONSE_MODEL] == MODEL
    assert attrs[sc.RESPONSE_ID] == reply.id
    assert attrs[sc.REQUEST_STREAM] is stream
    assert tuple(attrs[sc.RESPONSE_FINISH_REASONS]) == ("end_turn",)
    assert attrs[sc.SERVER_ADDRESS] == "127.0.0.1" and attrs[sc.SERVER_PORT] == sim.port
    # Input adds Anthropic's uncached input_tokens, cache reads and cache writes.
    assert attrs[sc.INPUT_TOKENS] == scenario.input_tokens
    assert attrs[sc.CACHE_READ_TOKENS] == scenario.cached_input_tokens
    assert attrs[sc.CACHE_WRITE_TOKENS] == scenario.cache_write_tokens
    # Streams: message_start's output count is replaced by message_delta's cumulative one, not added.
    assert attrs[sc.OUTPUT_TOKENS] == scenario.output_tokens
    assert attrs[sc.REASONING_TOKENS] == scenario.reasoning_tokens
    assert attrs[sc.VISIBLE_OUTPUT_TOKENS] == scenario.visible_tokens
    assert attrs[sc.REASONING_SOURCE] == "reported" and attrs[sc.OUTPUT_SOURCE] == "reported"
    total, reasoning = expected_cost(MODEL, scenario)
    assert attrs[sc.COST_USD] == pytest.approx(total) and attrs[sc.REASONING_COST_USD] == pytest.approx(reasoning)
    assert attrs[sc.COST_SOURCE] == "price_table"
    if stream:
        assert_stream_timings(attrs, scenario, reasoning_streamed=True)
    else:
        assert sc.TIME_TO_FIRST_TOKEN not in attrs and sc.TIME_TO_FIRST_CHUNK not in attrs


@pytest.mark.parametrize("beta", [False, True], ids=["messages", "beta"])
@pytest.mark.parametrize("mode", list(SYNC_MODES))
def test_sync_surfaces(instrumented: Spans, sim: Simulator, client: anthropic.Anthropic, mode: str, beta: bool) -> None:
    SYNC_MODES[mode](_resource(client, beta, mode), _kwargs())
    assert_exact(instrumented.only_attributes(), sim, stream=mode in STREAMED)


@pytest.mark.parametrize("beta", [False, True], ids=["messages", "beta"])
@pytest.mark.parametrize("mode", list(ASYNC_MODES))
def test_async_surfaces(instrumented: Spans, sim: Simulator, mode: str, beta: bool) -> None:
    async def run() -> None:
        async with _async_client(sim) as client:
            await ASYNC_MODES[mode](_resource(client, beta, mode), _kwargs())

    asyncio.run(run())
    assert_exact(instrumented.only_attributes(), sim, stream=mode in STREAMED)


def test_raw_response_is_read(instrumented: Spans, sim: Simulator, client: anthropic.Anthropic) -> None:
    raw = client.messages.with_raw_response.create(**_kwargs())
    assert raw.parse().usage.output_tokens == SCENARIO.output_tokens
    assert_exact(instrumented.only_attributes(), sim, stream=False)


def test_thinking_budget_and_effort_are_recorded(instrumented: Spans, client: anthropic.Anthropic) -> None:
    if "output_config" not in inspect.signature(client.messages.create).parameters:
        pytest.skip(f"anthropic {anthropic.__version__} takes no output_config (effort)")
    client.messages.create(**_kwargs(thinking={"type": "enabled", "budget_tokens": 2048}, output_config={"effort": "high"}))
    attrs = instrumented.only_attributes()
    assert attrs[sc.REQUEST_THINKING_BUDGET] == 2048 and attrs[sc.REQUEST_REASONING_LEVEL] == "high"
    assert attrs[sc.REQUEST_MAX_TOKENS] == 4096
    instrumented.clear()
    client.messages.create(**_kwargs(thinking={"type": "adaptive"}))
    attrs = instrumented.only_attributes()
    assert sc.REQUEST_THINKING_BUDGET not in attrs and sc.REQUEST_REASONING_LEVEL not in attrs


def test_redacted_thinking_times_only_the_answer(instrumented: Spans, client: anthropic.Anthropic) -> None:
    """Redacted thinking carries no text: reasoning happened (and is counted) but cannot be timed."""
    scenario = SCENARIO.model_copy(update={"reasoning_text": "hidden"})
    events = list(client.messages.create(stream=True, **_kwargs(scenario)))
    assert any(e.type == "content_block_start" and e.content_block.type == "redacted_thinking" for e in events)
    attrs = instrumented.only_attributes()
    assert attrs[sc.REASONING_TOKENS] == scenario.reasoning_tokens and attrs[sc.REASONING_SOURCE] == "reported"
    assert_stream_timings(attrs, scenario, reasoning_streamed=False)
    assert attrs[sc.TIME_TO_FIRST_TOKEN] == attrs[sc.TIME_TO_FIRST_VISIBLE_TOKEN]


@pytest.mark.parametrize("reasoning_text", ["summary", "hidden"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_unreported_thinking_is_estimated_from_visible_text(
    instrumented: Spans, client: anthropic.Anthropic, stream: bool, reasoning_text: str
) -> None:
    """Without output_tokens_details the thinking is output minus the visible text's estimated tokens,
    never the (summarized) thinking text's."""
    scenario = SCENARIO.model_copy(update={"reasoning_reported": False, "reasoning_text": reasoning_text})
    resource = client.messages
    if stream:
        list(resource.create(stream=True, **_kwargs(scenario)))
    else:
        resource.create(**_kwargs(scenario))
    attrs = instrumented.only_attributes()
    visible = estimated_tokens(len("".join(answer_words(scenario.visible_tokens))))
    assert attrs[sc.OUTPUT_TOKENS] == scenario.output_tokens and attrs[sc.OUTPUT_SOURCE] == "reported"
    assert attrs[sc.REASONING_TOKENS] == scenario.output_tokens - visible
    assert attrs[sc.VISIBLE_OUTPUT_TOKENS] == visible
    assert attrs[sc.REASONING_SOURCE] == "estimated"


def test_unreported_without_thinking_block_is_zero(instrumented: Spans, client: anthropic.Anthropic) -> None:
    scenario = SCENARIO.model_copy(update={"reasoning_reported": False, "reasoning_tokens": 0, "thinking_s": 0.0})
    list(client.messages.create(stream=True, **_kwargs(scenario)))
    attrs = instrumented.only_attributes()
    assert attrs[sc.REASONING_TOKENS] == 0 and attrs[sc.REASONING_SOURCE] == "derived"
    assert attrs[sc.VISIBLE_OUTPUT_TOKENS] == scenario.visible_tokens


def test_http_error_ends_the_span_with_its_type(instrumented: Spans, client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(stream=True, **_kwargs(SCENARIO.model_copy(update={"error_status": 429})))
    attrs = instrumented.only_attributes()
    assert attrs[sc.ERROR_TYPE] == "RateLimitError"
    assert sc.OUTPUT_TOKENS not in attrs and sc.COST_USD not in attrs


def test_stream_helper_error_on_enter_ends_the_span(instrumented: Spans, client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.InternalServerError):
        with client.messages.stream(**_kwargs(SCENARIO.model_copy(update={"error_status": 500}))):
            pass
    assert instrumented.only_attributes()[sc.ERROR_TYPE] == "InternalServerError"


def _assert_cut_short(attrs: dict[str, Any]) -> None:
    """A stream left before message_delta: input is known from message_start, output is not."""
    assert attrs[sc.INPUT_TOKENS] == SCENARIO.input_tokens
    assert sc.OUTPUT_TOKENS not in attrs and sc.REASONING_TOKENS not in attrs
    assert attrs[sc.OUTPUT_SOURCE] == "unknown" and attrs[sc.REASONING_SOURCE] == "unknown"
    assert_at(attrs.get(sc.TIME_TO_FIRST_TOKEN), SCENARIO.first_token_s)


def test_early_break_ends_the_span_on_close(instrumented: Spans, client: anthropic.Anthropic) -> None:
    with client.messages.create(stream=True, **_kwargs()) as stream:
        for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                break
        assert instrumented.all() == []  # the stream is still open
    (span,) = instrumented.all()  # ended by close, no garbage collection needed
    attrs = dict(span.attributes or {})
    _assert_cut_short(attrs)
    assert_at(attrs.get(sc.TIME_TO_FIRST_VISIBLE_TOKEN), SCENARIO.first_visible_s)


@pytest.mark.parametrize("beta", [False, True], ids=["messages", "beta"])
def test_stream_helper_early_break_ends_the_span_on_exit(instrumented: Spans, client: anthropic.Anthropic, beta: bool) -> None:
    with _resource(client, beta, "stream_helper").stream(**_kwargs()) as stream:
        for event in stream:
            if event.type == "content_block_delta":  # the first thinking delta
                break
    (span,) = instrumented.all()
    _assert_cut_short(dict(span.attributes or {}))


def test_exception_mid_stream_ends_the_span_with_the_error(instrumented: Spans, client: anthropic.Anthropic) -> None:
    scenario = SCENARIO.model_copy(update={"disconnect_after_visible": 3})
    with pytest.raises(Exception) as raised:
        list(client.messages.create(stream=True, **_kwargs(scenario)))
    attrs = instrumented.only_attributes()
    assert attrs[sc.ERROR_TYPE] == type(raised.value).__qualname__
    assert_at(attrs.get(sc.TIME_TO_FIRST_VISIBLE_TOKEN), scenario.first_visible_s)
    assert sc.OUTPUT_TOKENS not in attrs


@pytest.mark.parametrize("helper", [False, True], ids=["create_stream", "stream_helper"])
def test_async_cancellation_ends_the_span(instrumented: Spans, sim: Simulator, helper: bool) -> None:
    async def consume(client: anthropic.AsyncAnthropic, started: asyncio.Event) -> None:
        if helper:
            async with client.messages.stream(**_kwargs()) as stream:
                async for _ in stream:
                    started.set()
        else:
            async for _ in await client.messages.create(stream=True, **_kwargs()):
                started.set()

    async def run() -> None:
        async with _async_client(sim) as client:
            started = asyncio.Event()
            task = asyncio.create_task(consume(client, started))
            await started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(run())
    (span,) = instrumented.all()
    assert dict(span.attributes or {})[sc.ERROR_TYPE] == "CancelledError"


def test_unconsumed_stream_ends_its_span_when_collected(instrumented: Spans, client: anthropic.Anthropic) -> None:
    stream = client.messages.create(stream=True, **_kwargs())
    assert instrumented.all() == []
    del stream
    gc.collect()
    attrs = instrumented.only_attributes()
    assert attrs[sc.REQUEST_STREAM] is True and sc.OUTPUT_TOKENS not in attrs and sc.ERROR_TYPE not in attrs


@pytest.mark.parametrize("instrumented", [{"127.0.0.1": "deepseek"}], indirect=True)
def test_providers_override_names_an_anthropic_compatible_server(instrumented: Spans, client: anthropic.Anthropic) -> None:
    client.messages.create(**_kwargs())
    assert instrumented.only_attributes()[sc.PROVIDER] == "deepseek"


def _mask_sky(text: str) -> str:
    return text.replace("sky", "[masked]")


@pytest.mark.parametrize("capturing", [{"redact": _mask_sky}], indirect=True)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_content_capture_records_redacted_prompt_and_answer(capturing: Spans, client: anthropic.Anthropic, stream: bool) -> None:
    kwargs = _kwargs(system="Answer briefly.")
    if stream:
        list(client.messages.create(stream=True, **kwargs))
    else:
        client.messages.create(**kwargs)
    attrs = capturing.only_attributes()
    assert json.loads(attrs[sc.INPUT_MESSAGES]) == [
        {"role": "system", "parts": [{"type": "text", "content": "Answer briefly."}]},
        {"role": "user", "parts": [{"type": "text", "content": "Why is the [masked] blue?"}]},
    ]
    (message,) = json.loads(attrs[sc.OUTPUT_MESSAGES])
    # The answer only: thinking text is never captured.
    assert [part for part in message["parts"] if part["type"] != "thinking"] == [
        {"type": "text", "content": "".join(answer_words(SCENARIO.visible_tokens))}
    ]
    assert message["finish_reason"] == "end_turn"


def test_async_raw_response_is_left_to_the_caller(instrumented: Spans, sim: Simulator) -> None:
    """Its parse() is a coroutine only the caller may await: the span ends without the usage."""

    async def run() -> Any:
        async with _async_client(sim) as client:
            raw = await client.messages.with_raw_response.create(**_kwargs())
            return await raw.parse() if inspect.iscoroutinefunction(raw.parse) else raw.parse()

    assert asyncio.run(run()).usage.output_tokens == SCENARIO.output_tokens
    attrs = instrumented.only_attributes()
    assert attrs[sc.PROVIDER] == "anthropic" and sc.ERROR_TYPE not in attrs
