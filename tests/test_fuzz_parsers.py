"""Hostile replies: generated malformed payloads through every OpenAI parser and stream accumulator.

Payloads are built the way the SDK builds them from a server's JSON (`construct_type`, which keeps wrong
types as they come), so the parsers see exactly what a broken or hostile server would hand them. Each
case checks: no exception of ours reaches the caller, the SDK's own exception reaches it unchanged (the
same object), the caller sees the same items it would see untraced, exactly one span ends, and every
figure on it is either a plausible count or absent (unknown), never a made-up value.
The end-to-end cases drive the real SDK against a loopback server that sends hostile bodies and SSE.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai._models import construct_type
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import thinkmeter
from thinkmeter.instrumentation._patch import _deliver
from thinkmeter.instrumentation._stream import TracedAsyncStream, TracedStream
from thinkmeter.instrumentation._telemetry import Call, Telemetry
from thinkmeter.instrumentation.openai_chat import ChatStreamAccumulator, ChatSurface
from thinkmeter.instrumentation.openai_responses import ResponsesStreamAccumulator, ResponsesSurface
from thinkmeter.instrumentation._endpoints import EndpointResolver
from thinkmeter.pricing import PriceTable
from thinkmeter.schemas import semconv as sc
from thinkmeter.schemas.record import CallRecord

def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
COUNTS = (sc.INPUT_TOKENS, sc.CACHE_READ_TOKENS, sc.CACHE_WRITE_TOKENS, sc.OUTPUT_TOKENS, sc.REASONING_TOKENS, sc.VISIBLE_OUTPUT_TOKENS)
TEXTS = (sc.RESPONSE_MODEL, sc.RESPONSE_ID, sc.REQUEST_MODEL)
cases = {"count": 0}


@pytest.fixture(scope="module", autouse=True)
def report_case_count(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"test_fuzz_parsers: {cases['count']} generated cases")


# ---------------------------------------------------------------------------------------------- payloads

# JSON values a broken server may put anywhere: wrong types, negative and huge numbers, odd text.
SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=0, max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["", "stop", "length", "o4-mini", "\x00", "'; DROP TABLE otel_traces; --", "\ud800"]),
)
JSON = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)
COUNT = st.one_of(st.integers(min_value=0, max_value=10**7), JSON)


def maybe(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field that may be missing, null, of the right shape, or any JSON at all."""
    return st.one_of(st.just(...), st.none(), value, value, JSON)


def obj(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional={k: maybe(v) for k, v in fields.items()}).map(
        lambda d: {k: v for k, v in d.items() if v is not ...}
    )


CHAT_USAGE = obj(
    prompt_tokens=COUNT,
    completion_tokens=COUNT,
    total_tokens=COUNT,
    completion_tokens_details=obj(reasoning_tokens=COUNT, rejected_prediction_tokens=COUNT),
    prompt_tokens_details=obj(cached_tokens=COUNT),
)
RESPONSES_USAGE = obj(
    input_tokens=COUNT,
    output_tokens=COUNT,
    total_tokens=COUNT,
    output_tokens_details=obj(reasoning_tokens=COUNT),
    input_tokens_details=obj(cached_tokens=COUNT),
)
TOOL_CALL = obj(index=COUNT, id=JSON, type=JSON, function=obj(name=JSON, arguments=st.text(max_size=20)))
DELTA = obj(
    role=JSON,
    content=st.text(max_size=20),
    refusal=st.text(max_size=5),
    reasoning_content=st.text(max_size=20),
    reasoning=st.text(max_size=20),
    tool_calls=st.lists(TOOL_CALL, max_size=2),
)
CHUNK = obj(
    id=st.text(max_size=8),
    model=st.text(max_size=8),
    object=JSON,
    choices=st.lists(obj(index=st.integers(0, 3), delta=DELTA, finish_reason=st.sampled_from(["stop", "length"])), max_size=3),
    usage=CHAT_USAGE,
)
MESSAGE = obj(role=JSON, content=st.text(max_size=20), refusal=JSON, tool_calls=st.lists(TOOL_CALL, max_size=2), reasoning_content=JSON)
COMPLETION = obj(
    id=st.text(max_size=8),
    model=st.text(max_size=8),
    choices=st.lists(obj(index=COUNT, message=MESSAGE, finish_reason=st.sampled_from(["stop", "length", "tool_calls"])), max_size=3),
    usage=CHAT_USAGE,
)
OUTPUT_ITEM = obj(
    type=st.sampled_from(["message", "reasoning", "function_call", "weird"]),
    content=st.lists(obj(type=st.sampled_from(["output_text", "refusal"]), text=st.text(max_size=10)), max_size=2),
)
RESPONSE = obj(
    id=st.text(max_size=8),
    model=st.text(max_size=8),
    status=st.sampled_from(["completed", "incomplete", "failed", "in_progress", "queued"]),
    incomplete_details=obj(reason=st.sampled_from(["max_output_tokens", "content_filter"])),
    output=st.lists(OUTPUT_ITEM, max_size=3),
    usage=RESPONSES_USAGE,
)
EVENT_TYPES = [
    "response.created",
    "response.in_progress",
    "response.output_text.delta",
    "response.refusal.delta",
    "response.function_call_arguments.delta",
    "response.reasoning_summary_text.delta",
    "response.reasoning_text.delta",
    "response.completed",
    "response.incomplete",
    "response.failed",
    "response.brand_new_event",
    "error",
]
EVENT = obj(type=st.sampled_from(EVENT_TYPES), delta=st.text(max_size=10), response=RESPONSE, sequence_number=COUNT)


def sdk_error() -> st.SearchStrategy[BaseException]:
    request = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    return st.sampled_from(
        [
            lambda: openai.APIConnectionError(request=request),
            lambda: openai.APITimeoutError(request=request),
            lambda: httpx.RemoteProtocolError("peer closed connection without sending complete message body"),
            lambda: json.JSONDecodeError("Expecting value", "data: {", 6),
            lambda: KeyboardInterrupt(),
        ]
    ).map(lambda make: make())


# ------------------------------------------------------------------------------------------------ harness


class Harness:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.telemetry = Telemetry(provider, None, PriceTable.load())
        self.resolver = EndpointResolver()

    def call(self, stream: bool) -> Call:
        self.exporter.clear()
        return Call(self.telemetry, CallRecord(provider="openai", request_model="o4-mini", stream=stream))

    def only_span_attributes(self) -> dict[str, Any]:
        spans = self.exporter.get_finished_spans()
        assert len(spans) == 1, f"expected one ended span, got {len(spans)}"
        return dict(spans[0].attributes or {})


@pytest.fixture(scope="module")
def harness() -> Harness:
    return Harness()


def assert_honest(attrs: dict[str, Any]) -> None:
    """Counts are plausible or absent; names are text; an absent count is never called reported."""
    cases["count"] += 1
    for key in COUNTS:
        if key in attrs:
            assert type(attrs[key]) is int and 0 <= attrs[key] < 2**63, (key, attrs[key])
    for key in TEXTS:
        if key in attrs:
            assert isinstance(attrs[key], str), (key, attrs[key])
    if sc.REASONING_TOKENS not in attrs:
        assert attrs[sc.REASONING_SOURCE] != "reported"
    if sc.OUTPUT_TOKENS not in attrs:
        assert attrs[sc.OUTPUT_SOURCE] in ("unknown", "estimated", "derived") and attrs[sc.OUTPUT_SOURCE] != "reported"
    if sc.COST_USD in attrs:
        assert attrs[sc.INPUT_TOKENS] is not None and attrs[sc.OUTPUT_TOKENS] is not None


def drain(stream: Any, source: list[Any]) -> tuple[list[Any], BaseException | None]:
    seen: list[Any] = []
    try:
        for item in stream:
            seen.append(item)
    except BaseException as error:  # the SDK's error, re-raised by the proxy
        return seen, error
    return seen, None


def failing(items: list[Any], error: BaseException | None, at: int) -> Iterator[Any]:
    for i, item in enumerate(items):
        if error is not None and i == at:
            raise error
        yield item
    if error is not None:
        raise error


def check_stream(harness: Harness, call: Call, items: list[Any], seen: list[Any], raised: BaseException | None, error: BaseException | None) -> None:
    assert raised is error  # the very object the SDK raised, or nothing
    assert all(any(s is i for i in items) for s in seen)  # only what the SDK yielded, in order
    assert [id(s) for s in seen] == [id(i) for i in items if any(i is s for s in seen)]
    attrs = harness.only_span_attributes()
    if error is not None:
        assert attrs[sc.ERROR_TYPE] == type(error).__qualname__
    assert_honest(attrs)


# ---------------------------------------------------------------------------------------------- parsers


@fuzz(2500)
@given(payload=COMPLETION)
def test_chat_completion_reply(harness: Harness, payload: dict[str, Any]) -> None:
    completion = construct_type(type_=ChatCompletion, value=payload)
    call = harness.call(stream=False)
    surface = ChatSurface(harness.telemetry, harness.resolver)
    assert _deliver(surface, call, completion, {}, False) is completion
    attrs = harness.only_span_attributes()
    assert_honest(attrs)
    usage = payload.get("usage")
    prompt = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    if type(prompt) is int and 0 <= prompt < 2**63:
        assert attrs[sc.INPUT_TOKENS] == prompt
    else:
        assert sc.INPUT_TOKENS not in attrs or isinstance(usage, dict) and "prompt_cache_hit_tokens" in usage


@fuzz(2000)
@given(payload=RESPONSE)
def test_responses_reply(harness: Harness, payload: dict[str, Any]) -> None:
    response = construct_type(type_=Response, value=payload)
    call = harness.call(stream=False)
    surface = ResponsesSurface(harness.telemetry, harness.resolver)
    assert _deliver(surface, call, response, {}, False) is response
    attrs = harness.only_span_attributes()
    assert_honest(attrs)
    usage = payload.get("usage")
    output = usage.get("output_tokens") if isinstance(usage, dict) else None
    if not (type(output) is int and 0 <= output < 2**63):
        assert sc.OUTPUT_TOKENS not in attrs


@fuzz(2000)
@given(chunks=st.lists(CHUNK, max_size=6), hide=st.booleans(), error=st.none() | sdk_error(), at=st.integers(0, 6))
def test_chat_stream(harness: Harness, chunks: list[dict[str, Any]], hide: bool, error: BaseException | None, at: int) -> None:
    items = [construct_type(type_=ChatCompletionChunk, value=c) for c in chunks]
    call = harness.call(stream=True)
    call.hide_usage_chunk = hide
    stream = TracedStream(failing(items, error, at), ChatStreamAccumulator(call))
    seen, raised = drain(stream, items)
    check_stream(harness, call, items, seen, raised, error)
    if not hide:
        assert seen == items[: len(seen)] and (error is not None or len(seen) == len(items))


@fuzz(2000)
@given(events=st.lists(EVENT, max_size=6), error=st.none() | sdk_error(), at=st.integers(0, 6))
def test_responses_stream(harness: Harness, events: list[dict[str, Any]], error: BaseException | None, at: int) -> None:
    items = [construct_type(type_=ResponseStreamEvent, value=e) for e in events]
    call = harness.call(stream=True)
    seen, raised = drain(TracedStream(failing(items, error, at), ResponsesStreamAccumulator(call)), items)
    check_stream(harness, call, items, seen, raised, error)
    assert len(seen) == (len(items) if error is None else min(at, len(items)))


_loop = asyncio.new_event_loop()


@fuzz(800)
@given(chunks=st.lists(CHUNK, max_size=5), error=st.none() | sdk_error(), at=st.integers(0, 5), cancel=st.booleans())
def test_async_chat_stream(harness: Harness, chunks: list[dict[str, Any]], error: BaseException | None, at: int, cancel: bool) -> None:
    items = [construct_type(type_=ChatCompletionChunk, value=c) for c in chunks]
    if cancel:
        error = asyncio.CancelledError()

    async def source() -> Any:
        for item in failing(items, error, at):
            yield item

    async def consume() -> tuple[list[Any], BaseException | None]:
        seen: list[Any] = []
        try:
            async for item in TracedAsyncStream(source(), ChatStreamAccumulator(call)):
                seen.append(item)
        except BaseException as raised:
            return seen, raised
        return seen, None

    call = harness.call(stream=True)
    seen, raised = _loop.run_until_complete(consume())
    check_stream(harness, call, items, seen, raised, error)


@fuzz(1000)
@given(chunks=st.lists(CHUNK, min_size=1, max_size=5), stop_after=st.integers(0, 4), how=st.sampled_from(["close", "abandon", "with"]))
def test_chat_stream_left_early(harness: Harness, chunks: list[dict[str, Any]], stop_after: int, how: str) -> None:
    """The caller stops reading (close, context exit, dropping the stream): the span still ends once."""
    items = [construct_type(type_=ChatCompletionChunk, value=c) for c in chunks]

    class SdkStream:
        def __init__(self) -> None:
            self.iterator = iter(items)
            self.closed = False

        def __next__(self) -> Any:
            return next(self.iterator)

        def close(self) -> None:
            self.closed = True

        def __enter__(self) -> SdkStream:
            return self

        def __exit__(self, *exc: object) -> None:
            self.close()

    sdk = SdkStream()
    call = harness.call(stream=True)
    stream = TracedStream(sdk, ChatStreamAccumulator(call))
    if how == "with":
        with stream as entered:
            for _, _item in zip(range(stop_after), entered):
                pass
    else:
        for _, _item in zip(range(stop_after), stream):
            pass
        if how == "close":
            stream.close()
        else:
            del stream
            import gc

            gc.collect()
    assert sdk.closed == (how != "abandon")
    assert_honest(harness.only_span_attributes())


# ----------------------------------------------------------------------------- end to end: hostile server

HOSTILE_BODIES = st.one_of(
    st.binary(max_size=40),
    JSON.map(lambda v: json.dumps(v).encode()),
    COMPLETION.map(lambda v: json.dumps(v).encode()),
    st.just(b'{"id": "x", "choices": [{"message": {"content": "hi"}'),  # truncated JSON
)
SSE_LINES = st.one_of(
    CHUNK.map(lambda c: b"data: " + json.dumps(c).encode() + b"\n\n"),
    st.just(b"data: {not json\n\n"),
    st.just(b"data: [DONE]\n\n"),
    st.just(b"event: error\ndata: {\"error\": {\"message\": \"overloaded\"}}\n\n"),
    st.just(b": keep-alive\n\n"),
    st.binary(max_size=20),
)


class HostileServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    reply: tuple[int, str, bytes, bool] = (200, "application/json", b"{}", False)


class HostileHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, content_type, body, cut = self.server.reply  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        # A server that closes early announces more than it sends.
        self.send_header("Content-Length", str(len(body) + (50 if cut else 0)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = True


@pytest.fixture(scope="module")
def hostile_server() -> Iterator[HostileServer]:
    server = HostileServer(("127.0.0.1", 0), HostileHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def outcome(client: openai.OpenAI, stream: bool) -> tuple[str, Any]:
    """What the caller sees: the items / the reply body, or the exception type and message."""
    try:
        if stream:
            result = client.chat.completions.create(model="o4-mini", messages=[{"role": "user", "content": "hi"}], stream=True)
            return "items", [chunk.to_dict() for chunk in result]
        result = client.chat.completions.create(model="o4-mini", messages=[{"role": "user", "content": "hi"}])
        return "reply", result.to_dict() if hasattr(result, "to_dict") else result
    except Exception as error:  # the SDK's error is the outcome
        return "error", (type(error), str(error))


@fuzz(300)
@given(
    stream=st.booleans(),
    status=st.sampled_from([200, 200, 200, 500, 429]),
    body=HOSTILE_BODIES,
    lines=st.lists(SSE_LINES, max_size=5),
    cut=st.booleans(),
)
def test_real_sdk_against_hostile_server(hostile_server: HostileServer, stream: bool, status: int, body: bytes, lines: list[bytes], cut: bool) -> None:
    """Whatever the server sends, the traced caller sees exactly what an untraced one sees."""
    payload = b"".join(lines) if stream else body
    hostile_server.reply = (status, "text/event-stream" if stream else "application/json", payload, cut)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{hostile_server.server_port}/v1", api_key="k", max_retries=0)
    thinkmeter.uninstrument()
    untraced = outcome(client, stream)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    thinkmeter.instrument(tracer_provider=provider, exporter="none")
    try:
        traced = outcome(client, stream)
    finally:
        thinkmeter.uninstrument()
    assert traced == untraced
    spans = exporter.get_finished_spans()
    assert len(spans) == 1
    assert_honest(dict(spans[0].attributes or {}))
