"""thinkmeter against a real llama.cpp server.

`llama-server` is built CPU-only from the llama.cpp sources inside the llama-cpp-python sdist
(tests/llama_server/build.sh, cached under .cache/) and serves the designed GGUF of
tests/llama_server/model.py, whose reply is known token by token. It runs on 127.0.0.1 with
`--metrics --slots --reasoning-format deepseek`, with one slot and with the default slots (4 slots
over one unified KV pool). Spans are checked against the server's own usage and timings and the
designed reply; engine snapshots and collector rows against /metrics and /slots read around them; the
caller's chunks against the same request made without thinkmeter.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

import thinkmeter
from tests.instrumented import Spans, _into_memory
from tests.llama_server import LlamaServer, build_llama_server, missing_build_tools
from tests.llama_server import model as bigram
from thinkmeter.collectors import context
from thinkmeter.collectors.engines import EngineScraper
from thinkmeter.collectors.metrics import engine_points
from thinkmeter.collectors.prometheus_text import parse
from thinkmeter.collectors.runner import CollectorRunner, StoreSink
from thinkmeter.config import Settings
from thinkmeter.schemas import semconv as sc

MESSAGES = [{"role": "user", "content": "Hi"}]
PROMPT_TOKENS = bigram.prompt_tokens(MESSAGES)
VISIBLE_TOKENS = bigram.COMPLETION_TOKENS - bigram.REASONING_TOKENS  # the answer and EOS


@pytest.fixture(scope="module")
def binary():
    reason = missing_build_tools()
    if reason:
        pytest.skip(reason)
    return build_llama_server()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory):
    return bigram.write_model(tmp_path_factory.mktemp("gguf") / "bigram.gguf")


@pytest.fixture(scope="module", params=[1, None], ids=["one-slot", "default-slots"])
def server(request: pytest.FixtureRequest, binary, model_file) -> Iterator[LlamaServer]:
    with LlamaServer(binary, model_file, request.param) as running:
        yield running


@pytest.fixture
def traced(server: LlamaServer) -> Iterator[Spans]:
    """thinkmeter into memory, with the server's address mapped to llama.cpp."""
    yield from _into_memory(providers={f"127.0.0.1:{server.port}": "llama.cpp"})


def _client(server: LlamaServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0)


def _chat(server: LlamaServer, stream: bool, **options: Any) -> Any:
    reply = _client(server).chat.completions.create(model="bigram", messages=MESSAGES, stream=stream, **options)
    return list(reply) if stream else reply


def _long_request(server: LlamaServer, tokens: int) -> threading.Thread:
    """A request that generates `tokens` tokens (EOS banned: " zzz" after the designed reply), in a thread."""
    body = {"model": "bigram", "messages": MESSAGES, "max_tokens": tokens, "ignore_eos": True}
    thread = threading.Thread(target=server.post, args=("/v1/chat/completions", body), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not _busy(server.get("/slots")):
        assert time.monotonic() < deadline and thread.is_alive(), "the long request never started"
        time.sleep(0.01)
    return thread


def _busy(slots: list[dict]) -> list[dict]:
    return [slot for slot in slots if slot["is_processing"]]


def _held(slots: list[dict]) -> int:
    return sum(slot["n_prompt_tokens"] for slot in _busy(slots))


def _predicted_total(server: LlamaServer) -> float:
    return parse(server.get_text("/metrics")).series("llamacpp:tokens_predicted_total")[0].value


# --------------------------------------------------------------------------------------------- spans


def _check_reply_span(attrs: dict[str, Any], timings: dict[str, Any], usage: Any) -> None:
    assert attrs[sc.ENGINE] == attrs[sc.PROVIDER] == "llama.cpp"
    # The server's own counts, and the designed truth they must equal.
    assert (usage.prompt_tokens, usage.completion_tokens) == (PROMPT_TOKENS, bigram.COMPLETION_TOKENS)
    assert attrs[sc.INPUT_TOKENS] == usage.prompt_tokens
    assert attrs[sc.OUTPUT_TOKENS] == usage.completion_tokens
    assert attrs[sc.CACHE_READ_TOKENS] == timings["cache_n"] == usage.prompt_tokens_details.cached_tokens
    # Reasoning: "<think> Let me carefully consider sheep </think>", counted by the server's tokenizer.
    assert attrs[sc.REASONING_TOKENS] == bigram.REASONING_TOKENS
    assert attrs[sc.REASONING_SOURCE] == "tokenized"
    assert attrs[sc.VISIBLE_OUTPUT_TOKENS] == VISIBLE_TOKENS
    assert attrs[sc.SERVER_PROMPT_TIME] == pytest.approx(timings["prompt_ms"] / 1e3)
    assert attrs[sc.SERVER_DECODE_TIME] == pytest.approx(timings["predicted_ms"] / 1e3)


def test_chat_span_matches_the_server_and_the_designed_reply(traced: Spans, server: LlamaServer) -> None:
    completion = _chat(server, stream=False)
    message = completion.choices[0].message
    assert (message.reasoning_content, message.content) == (bigram.REASONING_TEXT, bigram.ANSWER_TEXT)
    attrs = traced.only_attributes()
    _check_reply_span(attrs, completion.timings, completion.usage)
    assert attrs[sc.RESPONSE_FINISH_REASONS] == ("stop",)
    assert attrs[sc.RESPONSE_ID] == completion.id and attrs[sc.RESPONSE_MODEL] == completion.model


def test_streamed_chat_span_and_the_callers_last_chunk(traced: Spans, server: LlamaServer) -> None:
    chunks = _chat(server, stream=True)
    attrs = traced.only_attributes()
    # The caller did not ask for usage: thinkmeter did, and hid the usage chunk; llama.cpp's timings
    # are on the caller's last chunk, where they are without thinkmeter.
    assert all(chunk.usage is None for chunk in chunks)
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop" and last.timings["predicted_n"] == bigram.COMPLETION_TOKENS
    reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in chunks if c.choices)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert (reasoning, content) == (bigram.REASONING_TEXT, bigram.ANSWER_TEXT)
    usage = openai.types.CompletionUsage(
        prompt_tokens=PROMPT_TOKENS,
        completion_tokens=last.timings["predicted_n"],
        total_tokens=PROMPT_TOKENS + last.timings["predicted_n"],
        prompt_tokens_details={"cached_tokens": last.timings["cache_n"]},
    )
    _check_reply_span(attrs, last.timings, usage)
    assert attrs[sc.TIME_TO_FIRST_TOKEN] <= attrs[sc.TIME_TO_FIRST_VISIBLE_TOKEN]


def _shape(chunks: list[Any]) -> list[dict[str, Any]]:
    """The chunks as the caller sees them, with what differs between two runs of one request blanked."""
    shapes = []
    for chunk in chunks:
        data = chunk.model_dump(exclude_unset=True)
        data["id"] = data["created"] = None
        if "timings" in data:
            data["timings"] = sorted(data["timings"])
        if data.get("usage"):
            data["usage"] = {k: v for k, v in data["usage"].items() if k != "completion_tokens_details"}
        shapes.append({"type": type(chunk).__name__, **data})
    return shapes


@pytest.mark.parametrize("include_usage", [False, True])
def test_the_callers_chunks_are_the_chunks_it_gets_without_thinkmeter(
    traced: Spans, server: LlamaServer, include_usage: bool
) -> None:
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    with_thinkmeter = _chat(server, stream=True, **options)
    assert traced.only_attributes()[sc.OUTPUT_TOKENS] == bigram.COMPLETION_TOKENS
    thinkmeter.uninstrument()
    without = _chat(server, stream=True, **options)
    assert _shape(with_thinkmeter) == _shape(without)
    assert "timings" in _shape(without)[-1]


def test_responses_api_reasoning_and_streamed_timings(traced: Spans, server: LlamaServer) -> None:
    client = _client(server)
    response = client.responses.create(model="bigram", input="Hi")
    reasoning = next(item for item in response.output if item.type == "reasoning")
    assert reasoning.content[0].text == bigram.REASONING_TEXT and response.output_text == bigram.ANSWER_TEXT
    attrs = traced.only_attributes()
    assert attrs[sc.OUTPUT_TOKENS] == response.usage.output_tokens == bigram.COMPLETION_TOKENS
    assert attrs[sc.INPUT_TOKENS] == response.usage.input_tokens == PROMPT_TOKENS
    assert (attrs[sc.REASONING_TOKENS], attrs[sc.REASONING_SOURCE]) == (bigram.REASONING_TOKENS, "tokenized")
    traced.clear()

    events = list(client.responses.create(model="bigram", input="Hi", stream=True))
    completed = events[-1]
    assert completed.type == "response.completed"
    timings = completed.model_extra["timings"]
    attrs = traced.only_attributes()
    assert attrs[sc.OUTPUT_TOKENS] == completed.response.usage.output_tokens == bigram.COMPLETION_TOKENS
    assert (attrs[sc.REASONING_TOKENS], attrs[sc.REASONING_SOURCE]) == (bigram.REASONING_TOKENS, "tokenized")
    assert attrs[sc.SERVER_PROMPT_TIME] == pytest.approx(timings["prompt_ms"] / 1e3)
    assert attrs[sc.SERVER_DECODE_TIME] == pytest.approx(timings["predicted_ms"] / 1e3)
    assert attrs[sc.CACHE_READ_TOKENS] == completed.response.usage.input_tokens_details.cached_tokens


def test_reasoning_count_is_cached_per_engine(traced: Spans, server: LlamaServer) -> None:
    _chat(server, stream=False)
    _chat(server, stream=True)
    spans = traced.all()
    assert [s.attributes[sc.REASONING_SOURCE] for s in spans] == ["tokenized", "tokenized"]
    assert [s.attributes[sc.REASONING_TOKENS] for s in spans] == [bigram.REASONING_TOKENS] * 2


def test_a_call_inside_a_task_keeps_the_estimate(traced: Spans, server: LlamaServer) -> None:
    # A task's totals are summed when its block ends, on the caller's thread: its calls are not held
    # back for the engine's tokenizer, and say their reasoning count is an estimate.
    with thinkmeter.task("sheep-1"):
        completion = _chat(server, stream=False)
    call = next(s for s in traced.all() if s.attributes.get(sc.OUTPUT_TOKENS) is not None)
    answer_estimate = -(-len(completion.choices[0].message.content) // 4)
    assert call.attributes[sc.REASONING_SOURCE] == "estimated"
    assert call.attributes[sc.REASONING_TOKENS] == bigram.COMPLETION_TOKENS - answer_estimate


# ----------------------------------------------------------------------------------- engine collector


def test_engine_snapshot_against_slots_and_metrics(server: LlamaServer) -> None:
    scraper = EngineScraper(server.url)
    idle = scraper.scrape()
    slots = server.get("/slots")
    model_id = server.get("/v1/models")["data"][0]["id"]
    unified = len(slots) == 4
    assert (idle.engine, idle.model) == ("llama.cpp", model_id)
    assert idle.kv_cache_layout == ("unified" if unified else "per_slot")
    assert idle.kv_cache_capacity_tokens == (slots[0]["n_ctx"] if unified else sum(s["n_ctx"] for s in slots))
    assert (idle.kv_cache_usage, idle.requests_running, idle.requests_waiting) == (0.0, 0, 0)

    thread = _long_request(server, 6000)
    before = server.get("/slots")
    busy = scraper.scrape()
    after = server.get("/slots")
    # Tokens held only grow while the request generates: the scrape's reading lies between.
    capacity = busy.kv_cache_capacity_tokens
    assert _held(before) / capacity <= busy.kv_cache_usage <= _held(after) / capacity
    assert busy.kv_cache_usage > 0 and busy.requests_running == 1
    thread.join(60)
    done = scraper.scrape()
    assert (done.kv_cache_usage, done.requests_running) == (0.0, 0)


def test_generation_rate_counts_tokens_while_they_are_generated(server: LlamaServer) -> None:
    scraper = EngineScraper(server.url)
    scraper.scrape()
    start_total = _predicted_total(server)
    thread = _long_request(server, 6000)
    snapshots = []
    while thread.is_alive():
        snapshots.append(scraper.scrape())
        time.sleep(0.1)
    snapshots.append(scraper.scrape())
    # While the request ran, llama.cpp's counter stood still; the rate did not.
    during = [s for s in snapshots[:-2] if s.requests_running]
    assert any(s.generation_tokens_rate > 0 for s in during)
    # Over the whole run the rate adds up to the tokens the counter took in at the request's end.
    counted = sum(s.generation_tokens_rate * (s.time_unix_nano - s.interval_start_unix_nano) / 1e9 for s in snapshots)
    assert counted == pytest.approx(_predicted_total(server) - start_total, rel=1e-3)


def test_collector_rows_and_span_engine_attributes(
    server: LlamaServer, store_settings: Settings, service_name: str
) -> None:
    runner = CollectorRunner(
        engines=[EngineScraper(server.url)], sink=StoreSink(store_settings, {"service.name": service_name})
    )
    thread = _long_request(server, 6000)
    before = server.get("/slots")
    points = runner.collect_once()
    after = server.get("/slots")
    snapshot = context.latest_engine_snapshot("127.0.0.1", server.port)
    assert snapshot is not None and points == engine_points(snapshot)

    # A call made now carries what a collector watching the server last saw.
    with contextlib.contextmanager(_into_memory)(
        providers={f"127.0.0.1:{server.port}": "llama.cpp"}, engines=[server.url]
    ) as spans:
        while context.latest_engine_snapshot("127.0.0.1", server.port) is snapshot:
            time.sleep(0.01)  # the collector's own first scrape
        seen = context.latest_engine_snapshot("127.0.0.1", server.port)
        _chat(server, stream=False)  # with one slot, it waits for the long request to end
        attrs = spans.only_attributes()
    assert attrs[sc.ENGINE_KV_CACHE_USAGE] == seen.kv_cache_usage > 0
    assert attrs[sc.ENGINE_KV_CACHE_LAYOUT] == seen.kv_cache_layout
    assert attrs[sc.ENGINE_REQUESTS_RUNNING] == seen.requests_running == 1
    thread.join(60)
    assert runner.flush()
    runner.stop()

    from thinkmeter.store import store_session

    with store_session(store_settings) as client:
        rows = client.query(
            "SELECT MetricName, Attributes, Value FROM otel_metrics_gauge WHERE ServiceName = {s:String}",
            parameters={"s": service_name},
        ).result_rows
    stored = {name: (dict(attributes), value) for name, attributes, value in rows}
    model_id = server.get("/v1/models")["data"][0]["id"]
    usage_attributes, usage = stored[sc.METRIC_ENGINE_KV_CACHE_USAGE]
    assert usage_attributes[sc.ENGINE] == "llama.cpp" and usage_attributes[sc.REQUEST_MODEL] == model_id
    assert usage_attributes[sc.ENGINE_KV_CACHE_LAYOUT] == snapshot.kv_cache_layout
    capacity = stored[sc.METRIC_ENGINE_KV_CACHE_CAPACITY][1]
    assert _held(before) / capacity <= usage <= _held(after) / capacity
    assert stored[sc.METRIC_ENGINE_REQUESTS_RUNNING][1] == 1
    assert stored[sc.METRIC_ENGINE_UP][1] == 1
