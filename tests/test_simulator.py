"""The loopback simulator, driven by the real openai SDK: wire formats, ground truth, timings, failures."""

from __future__ import annotations

import http.client
import json
import statistics
import threading
import time
import typing
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import BaseModel, ValidationError

from thinkmeter.simulator import (
    SCENARIO_HEADER,
    TASK_CLASSES,
    UNPRICED_MODEL,
    Scenario,
    Simulator,
    TrafficMix,
    derived_scenario,
    start_simulator,
)

SCALE = 0.01  # 1 simulated second = 10 ms
# Scheduling slack for a loaded 2-core machine; the server never sends early, so only the upper
# bound needs room.
LATE_TOLERANCE_S = 0.25
MESSAGES = [{"role": "user", "content": "How many primes are below one hundred?"}]

THINKER = Scenario(
    model="o4-mini",
    input_tokens=1500,
    cached_input_tokens=1152,
    cache_write_tokens=128,
    reasoning_tokens=900,
    visible_tokens=12,
    prefill_s=2.0,
    thinking_s=6.0,
    visible_tokens_per_s=100.0,
)


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with start_simulator(time_scale=SCALE) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def client(sim: Simulator) -> OpenAI:
    return OpenAI(base_url=sim.base_url, api_key="x", max_retries=0)


def _expect_chat_usage(usage: Any, scenario: Scenario) -> None:
    assert usage.prompt_tokens == scenario.input_tokens
    assert usage.prompt_tokens_details.cached_tokens == scenario.cached_input_tokens
    assert usage.prompt_tokens_details.cache_write_tokens == scenario.cache_write_tokens
    assert usage.completion_tokens == scenario.reasoning_tokens + scenario.visible_tokens
    assert usage.completion_tokens_details.reasoning_tokens == scenario.reasoning_tokens
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def _expect_responses_usage(usage: Any, scenario: Scenario) -> None:
    assert usage.input_tokens == scenario.input_tokens
    assert usage.input_tokens_details.cached_tokens == scenario.cached_input_tokens
    assert usage.input_tokens_details.cache_write_tokens == scenario.cache_write_tokens
    assert usage.output_tokens == scenario.reasoning_tokens + scenario.visible_tokens
    assert usage.output_tokens_details.reasoning_tokens == scenario.reasoning_tokens
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens


def _warm_up(client: OpenAI) -> None:
    """The SDK builds its stream types on first use (a quarter second on a busy machine): keep that
    out of timed calls."""
    quick = Scenario(prefill_s=0, reasoning_tokens=1, visible_tokens=1).headers()
    list(client.chat.completions.create(model="o4-mini", messages=MESSAGES, stream=True, extra_headers=quick))
    with client.responses.stream(model="gpt-5", input="warm up", extra_headers=quick) as stream:
        stream.until_done()


def _on_time(measured: float, planned: float) -> bool:
    return planned - 0.002 <= measured <= planned + LATE_TOLERANCE_S


# --- Chat Completions ---------------------------------------------------------------------------


def test_chat_non_stream_reports_the_scenario(sim: Simulator, client: OpenAI) -> None:
    completion = client.chat.completions.create(model="o4-mini", messages=MESSAGES, extra_headers=THINKER.headers())
    _expect_chat_usage(completion.usage, THINKER)
    assert completion.choices[0].finish_reason == "stop"
    assert len(completion.choices[0].message.content.split()) == THINKER.visible_tokens
    reply = sim.reply(completion.id)
    assert reply is not None and reply.outcome == "completed" and reply.scenario == THINKER
    assert reply.visible_sent == THINKER.visible_tokens


def test_chat_stream_without_include_usage_sends_no_usage_chunk(client: OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(model="o4-mini", messages=MESSAGES, stream=True, extra_headers=THINKER.headers())
    )
    assert all(chunk.choices and chunk.usage is None for chunk in chunks)
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content == ""
    contents = [chunk.choices[0].delta.content for chunk in chunks[1:-1]]
    assert len(contents) == THINKER.visible_tokens and all(contents)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_chat_stream_with_include_usage_ends_with_a_usage_only_chunk(client: OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="o4-mini",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers=THINKER.headers(),
        )
    )
    final = chunks[-1]
    assert final.choices == [] and final.usage is not None
    _expect_chat_usage(final.usage, THINKER)
    assert all(chunk.usage is None for chunk in chunks[:-1])
    assert sum(1 for chunk in chunks[:-1] if chunk.choices[0].delta.content) == THINKER.visible_tokens


def test_chat_stream_timings_follow_the_scenario(sim: Simulator, client: OpenAI) -> None:
    scenario = THINKER.model_copy(update={"prefill_s": 15.0, "thinking_s": 40.0})  # 150 ms, then 400 ms
    _warm_up(client)
    started = time.monotonic()
    stream = client.chat.completions.create(
        model="o4-mini", messages=MESSAGES, stream=True, extra_headers=scenario.headers()
    )
    first_chunk = first_visible = None
    for chunk in stream:
        now = time.monotonic() - started
        first_chunk = first_chunk if first_chunk is not None else now
        if first_visible is None and chunk.choices and chunk.choices[0].delta.content:
            first_visible = now
    reply = sim.reply(stream.response.headers["x-request-id"].removeprefix("req_"))
    assert reply is not None
    assert reply.first_chunk_wall_s == pytest.approx(0.15) and reply.first_visible_wall_s == pytest.approx(0.55)
    assert first_chunk is not None and _on_time(first_chunk, reply.first_chunk_wall_s)
    assert first_visible is not None and _on_time(first_visible, reply.first_visible_wall_s)
    assert reply.first_visible_sent_s is not None and _on_time(reply.first_visible_sent_s, reply.first_visible_wall_s)


@pytest.mark.parametrize("field", ["reasoning", "reasoning_content"])
def test_openai_compatible_servers_stream_reasoning_text(field: str) -> None:
    scenario = THINKER.model_copy(update={"reasoning_text": "raw", "reasoning_tokens": 40})
    with start_simulator(time_scale=SCALE, reasoning_field=field) as server:
        client = OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        chunks = list(
            client.chat.completions.create(
                model="deepseek-reasoner", messages=MESSAGES, stream=True, extra_headers=scenario.headers()
            )
        )
        reasoning = [getattr(chunk.choices[0].delta, field, None) for chunk in chunks]
        assert sum(1 for text in reasoning if text) == scenario.reasoning_tokens
        first_reasoning = next(i for i, text in enumerate(reasoning) if text)
        first_content = next(i for i, chunk in enumerate(chunks) if chunk.choices[0].delta.content)
        assert first_reasoning < first_content
        message = (
            client.chat.completions.create(
                model="deepseek-reasoner", messages=MESSAGES, extra_headers=scenario.headers()
            )
            .choices[0]
            .message
        )
        assert len(message.model_extra[field].split()) == scenario.reasoning_tokens


# --- Responses ----------------------------------------------------------------------------------


def test_responses_non_stream_reports_the_scenario(sim: Simulator, client: OpenAI) -> None:
    response = client.responses.create(model="gpt-5", input="Plan the migration.", extra_headers=THINKER.headers())
    assert response.status == "completed"
    _expect_responses_usage(response.usage, THINKER)
    assert len(response.output_text.split()) == THINKER.visible_tokens
    reasoning = response.output[0]
    assert reasoning.type == "reasoning" and len(reasoning.summary[0].text.split()) == THINKER.reasoning_text_tokens
    assert sim.reply(response.id).scenario == THINKER


def test_responses_stream_helper_sends_the_full_event_order(sim: Simulator, client: OpenAI) -> None:
    scenario = THINKER.model_copy(update={"prefill_s": 15.0, "thinking_s": 40.0})
    _warm_up(client)
    started = time.monotonic()
    seen: list[tuple[float, Any]] = []
    with client.responses.stream(
        model="gpt-5", input="Plan the migration.", extra_headers=scenario.headers()
    ) as stream:
        for event in stream:
            seen.append((time.monotonic() - started, event))
        final = stream.get_final_response()
    events = [event for _, event in seen]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    collapsed = [t for i, t in enumerate(event.type for event in events) if i == 0 or events[i - 1].type != t]
    assert collapsed == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    summary = [event for event in events if event.type == "response.reasoning_summary_text.delta"]
    deltas = [event for event in events if event.type == "response.output_text.delta"]
    assert len(summary) == scenario.reasoning_text_tokens and len(deltas) == scenario.visible_tokens
    assert final.output_text == "".join(event.delta for event in deltas)
    _expect_responses_usage(final.usage, scenario)
    reply = sim.reply(final.id)
    first_reasoning = next(at for at, event in seen if event.type == "response.reasoning_summary_text.delta")
    first_visible = next(at for at, event in seen if event.type == "response.output_text.delta")
    assert _on_time(seen[0][0], reply.first_chunk_wall_s)
    assert _on_time(first_reasoning, reply.first_token_wall_s)
    assert _on_time(first_visible, reply.first_visible_wall_s)


def test_responses_create_stream_with_hidden_reasoning(client: OpenAI) -> None:
    scenario = THINKER.model_copy(update={"reasoning_text": "hidden"})
    events = list(client.responses.create(model="gpt-5", input="x", stream=True, extra_headers=scenario.headers()))
    types = [event.type for event in events]
    assert not any("reasoning_summary" in t for t in types)
    assert types.count("response.output_text.delta") == scenario.visible_tokens
    assert events[-1].type == "response.completed"
    _expect_responses_usage(events[-1].response.usage, scenario)


def test_responses_incomplete_when_max_output_tokens_runs_out(sim: Simulator, client: OpenAI) -> None:
    budget = THINKER.reasoning_tokens + 5
    events = list(
        client.responses.create(
            model="gpt-5", input="x", stream=True, max_output_tokens=budget, extra_headers=THINKER.headers()
        )
    )
    final = events[-1]
    assert final.type == "response.incomplete"
    assert final.response.status == "incomplete"
    assert final.response.incomplete_details.reason == "max_output_tokens"
    assert final.response.usage.output_tokens == budget
    assert [event.type for event in events].count("response.output_text.delta") == 5
    truth = sim.reply(final.response.id).scenario
    assert (
        truth.finish_reason == "length"
        and truth.visible_tokens == 5
        and truth.reasoning_tokens == THINKER.reasoning_tokens
    )

    completion = client.chat.completions.create(
        model="o4-mini", messages=MESSAGES, max_completion_tokens=100, extra_headers=THINKER.headers()
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == completion.usage.completion_tokens_details.reasoning_tokens == 100


def test_stream_resumes_by_response_id(sim: Simulator, client: OpenAI) -> None:
    scenario = THINKER.model_copy(update={"visible_tokens": 60, "visible_tokens_per_s": 5.0})  # answer takes ~120 ms
    stream = client.responses.create(model="gpt-5", input="x", stream=True, extra_headers=scenario.headers())
    first_part = []
    for event in stream:
        first_part.append(event)
        if event.type == "response.output_text.delta":
            break
    stream.close()
    response_id, last_seen = first_part[0].response.id, first_part[-1].sequence_number

    with client.responses.stream(response_id=response_id, starting_after=last_seen) as resumed:
        rest = list(resumed)
        final = resumed.get_final_response()
    assert [event.sequence_number for event in rest] == list(range(last_seen + 1, last_seen + 1 + len(rest)))
    texts = [event.delta for event in first_part + rest if event.type == "response.output_text.delta"]
    assert len(texts) == scenario.visible_tokens and final.output_text == "".join(texts)
    _expect_responses_usage(final.usage, scenario)

    raw = list(client.responses.retrieve(response_id, stream=True, starting_after=last_seen))
    assert raw[0].sequence_number == last_seen + 1 and raw[-1].type == "response.completed"
    assert client.responses.retrieve(response_id).status == "completed"
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("resp_unknown")


# --- Failure modes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [(429, openai.RateLimitError), (500, openai.InternalServerError), (503, openai.InternalServerError)],
)
def test_error_status_raises_api_status_error(
    sim: Simulator, client: OpenAI, status: int, error: type[Exception]
) -> None:
    scenario = Scenario(error_status=status, prefill_s=1.0)
    with pytest.raises(error) as raised:
        client.chat.completions.create(model="o4-mini", messages=MESSAGES, extra_headers=scenario.headers())
    assert isinstance(raised.value, openai.APIStatusError) and raised.value.status_code == status
    with pytest.raises(openai.APIStatusError):
        client.responses.create(model="gpt-5", input="x", stream=True, extra_headers=scenario.headers())
    assert [reply.outcome for reply in sim.replies[-2:]] == ["error", "error"]


def test_server_closing_mid_stream_breaks_the_sdk_stream(sim: Simulator, client: OpenAI) -> None:
    scenario = THINKER.model_copy(update={"disconnect_after_visible": 3})
    received = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in client.chat.completions.create(
            model="o4-mini", messages=MESSAGES, stream=True, extra_headers=scenario.headers()
        ):
            received.append(chunk.choices[0].delta.content)
    assert [text for text in received if text] == ["The", " answer", " follows"]
    reply = sim.replies[-1]
    assert reply.outcome == "disconnected" and reply.visible_sent == 3

    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="o4-mini", messages=MESSAGES, extra_headers=scenario.headers())
    with pytest.raises(openai.APIConnectionError):
        list(client.responses.create(model="gpt-5", input="x", stream=True, extra_headers=scenario.headers()))


def test_invalid_scenario_header_is_a_bad_request(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match=SCENARIO_HEADER):
        client.chat.completions.create(
            model="o4-mini",
            messages=MESSAGES,
            extra_headers={SCENARIO_HEADER: '{"input_tokens": 1, "cached_input_tokens": 5}'},
        )
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-3-small", input="x")


# --- Plain SDK calls and concurrency ------------------------------------------------------------


def test_requests_without_a_scenario_get_a_deterministic_one(sim: Simulator, client: OpenAI) -> None:
    first = client.chat.completions.create(model="gpt-5-mini", messages=MESSAGES)
    again = client.chat.completions.create(
        model="gpt-5-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    usage_again = list(again)[-1].usage
    assert first.usage == usage_again
    expected = derived_scenario("gpt-5-mini", MESSAGES)
    _expect_chat_usage(first.usage, expected)
    assert first.usage.prompt_tokens == 1 + len(MESSAGES[0]["content"].split())  # words of role + content
    assert sim.reply(first.id).scenario == expected
    other = derived_scenario("gpt-5-mini", [{"role": "user", "content": "Something else entirely."}])
    assert other != expected


def test_serves_many_concurrent_streams(sim: Simulator, client: OpenAI) -> None:
    scenario = Scenario(prefill_s=80.0, visible_tokens=20, visible_tokens_per_s=100.0)  # each stream lasts ~1 s
    clients = 60
    start = threading.Barrier(clients)
    failures: list[BaseException] = []

    def stream_once() -> None:
        try:
            start.wait()
            chunks = client.chat.completions.create(
                model="o4-mini", messages=MESSAGES, stream=True, extra_headers=scenario.headers()
            )
            assert sum(1 for chunk in chunks if chunk.choices[0].delta.content) == scenario.visible_tokens
        except BaseException as exc:  # collected for the main thread
            failures.append(exc)

    before = len(sim.replies)
    threads = [threading.Thread(target=stream_once) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    replies = sim.replies[before:]
    assert len(replies) == clients
    # A serial server would read each request only after finishing the previous reply; here most
    # replies were in flight at the same moment.
    changes = sorted([(r.arrival, 1) for r in replies] + [(r.arrival + r.end_wall_s, -1) for r in replies])
    in_flight = peak = 0
    for _, change in changes:
        in_flight += change
        peak = max(peak, in_flight)
    assert peak >= clients // 2


# --- Raw wire format against the SDK's own types, validated (not just constructed) --------------


def _post(sim: Simulator, path: str, body: dict[str, Any], scenario: Scenario) -> bytes:
    connection = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=10)
    connection.request("POST", path, json.dumps(body), {"content-type": "application/json", **scenario.headers()})
    data = connection.getresponse().read()
    connection.close()
    return data


def _sse_data(raw: bytes) -> list[tuple[str | None, str]]:
    events = []
    for block in raw.decode().split("\n\n"):
        if not block:
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((fields.get("event"), fields["data"]))
    return events


def _strict(model: type[BaseModel], data: dict[str, Any]) -> BaseModel:
    unknown = set(data) - set(model.model_fields)
    assert not unknown, f"{model.__name__} has no fields {unknown}"
    return model.model_validate(data)


_EVENT_TYPES: dict[str, type[BaseModel]] = {
    cls.model_fields["type"].annotation.__args__[0]: cls
    for cls in typing.get_args(typing.get_args(ResponseStreamEvent)[0])
}


@pytest.mark.parametrize("reasoning_text", ["summary", "raw", "hidden"])
def test_responses_wire_events_validate_against_sdk_types(sim: Simulator, reasoning_text: str) -> None:
    scenario = THINKER.model_copy(update={"reasoning_text": reasoning_text, "reasoning_tokens": 30})
    events = _sse_data(_post(sim, "/v1/responses", {"model": "gpt-5", "input": "x", "stream": True}, scenario))
    for name, data in events:
        payload = json.loads(data)
        assert name == payload["type"]
        event = _strict(_EVENT_TYPES[name], payload)
        if "response" in payload:
            _strict(Response, payload["response"])
        assert event.sequence_number == events.index((name, data))
    raw_deltas = [data for name, data in events if name == "response.reasoning_text.delta"]
    assert len(raw_deltas) == (scenario.reasoning_tokens if reasoning_text == "raw" else 0)
    body = json.loads(_post(sim, "/v1/responses", {"model": "gpt-5", "input": "x"}, scenario))
    _strict(Response, body)


def test_chat_wire_chunks_validate_against_sdk_types(sim: Simulator) -> None:
    body = {"model": "o4-mini", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}
    events = _sse_data(_post(sim, "/v1/chat/completions", body, THINKER))
    assert events[-1] == (None, "[DONE]")
    for _, data in events[:-1]:
        _strict(ChatCompletionChunk, json.loads(data))
    _strict(
        ChatCompletion,
        json.loads(_post(sim, "/v1/chat/completions", {"model": "o4-mini", "messages": MESSAGES}, THINKER)),
    )


# --- Scenario and traffic mix -------------------------------------------------------------------


def test_scenario_rules() -> None:
    with pytest.raises(ValidationError):
        Scenario(input_tokens=10, cached_input_tokens=8, cache_write_tokens=4)
    assert Scenario.from_header(THINKER.header_value()) == THINKER
    capped = THINKER.capped(THINKER.reasoning_tokens // 2)
    assert (capped.reasoning_tokens, capped.visible_tokens, capped.finish_reason) == (450, 0, "length")
    assert capped.thinking_s == pytest.approx(THINKER.thinking_s / 2)
    assert THINKER.capped(10_000) is THINKER
    assert THINKER.end_s == pytest.approx(2.0 + 6.0 + 11 / 100)


def test_traffic_mix_is_deterministic_per_seed() -> None:
    first, again, other = TrafficMix(42), TrafficMix(42), TrafficMix(43)
    draws = [first.draw() for _ in range(300)]
    assert draws == [again.draw() for _ in range(300)]
    assert draws != [other.draw() for _ in range(300)]
    assert all(set(tags) == {"tenant", "user", "feature", "task_class"} for tags, _ in draws)


def test_traffic_mix_has_heavy_tails_runaways_and_failures() -> None:
    mix = TrafficMix(7)
    draws = [mix.draw() for _ in range(20_000)]
    by_class: dict[str, list[int]] = defaultdict(list)
    for tags, scenario in draws:
        by_class[tags["task_class"]].append(scenario.reasoning_tokens)
    assert set(by_class) == {task.name for task in TASK_CLASSES}
    medians = {}
    for name, reasoning in by_class.items():
        reasoning.sort()
        medians[name] = statistics.median(reasoning)
        assert reasoning[int(0.99 * len(reasoning))] / medians[name] > 5, name
    assert medians["lookup"] < medians["summarize"] < medians["code"] < medians["math"]

    p95 = {task.name: task.reasoning.p95 for task in TASK_CLASSES}
    runaways = [s for tags, s in draws if s.reasoning_tokens >= 10 * p95[tags["task_class"]]]
    assert 0.003 < len(runaways) / len(draws) < 0.03
    assert any(s.finish_reason == "length" for s in runaways)  # some hit the model's output limit
    scenarios = [s for _, s in draws]
    assert {s.model for s in scenarios} == {"o4-mini", "gpt-5", "gpt-5-mini", UNPRICED_MODEL}
    assert {s.error_status for s in scenarios} >= {429, 500, 503}
    assert any(s.disconnect_after_visible is not None for s in scenarios)
    assert any(s.cached_input_tokens for s in scenarios) and any(s.reasoning_text == "hidden" for s in scenarios)
