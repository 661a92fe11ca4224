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
import copy
import http.server
import io
import json
import random
import threading
from collections.abc import Iterator
from typing import Any, Self

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
from tests.terminal import report
from thinkmeter.instrumentation._endpoints import EndpointResolver
from thinkmeter.instrumentation._patch import _deliver
from thinkmeter.instrumentation._stream import TracedAsyncStream, TracedStream
from thinkmeter.instrumentation._telemetry import Call, Telemetry
from thinkmeter.instrumentation.openai_chat import ChatStreamAccumulator, ChatSurface
from thinkmeter.instrumentation.openai_responses import (
    ResponsesStreamAccumulator,
    ResponsesSurface,
)
from thinkmeter.schemas import semconv as sc
from thinkmeter.schemas.record import CallRecord

import thinkmeter
from thinkmeter.pricing import PriceTable


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


COUNTS = (
    sc.INPUT_TOKENS,
    sc.CACHE_READ_TOKENS,
    sc.CACHE_WRITE_TOKENS,
    sc.OUTPUT_TOKENS,
    sc.REASONING_TOKENS,
    sc.VISIBLE_OUTPUT_TOKENS,
)
TEXTS = (sc.RESPONSE_MODEL, sc.RESPONSE_ID, sc.REQUEST_MODEL)
cases = {"count": 0}


@pytest.fixture(scope="module", autouse=True)
def report_case_count(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    report(request, f"{cases['count']} generated cases")


# ---------------------------------------------------------------------------------------------- payloads

# JSON values a broken server may put anywhere: wrong types, negative and huge numbers, odd text.
SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=0, max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(
        [
            "",
            "stop",
            "length",
            "o4-mini",
            "\x00",
            "'; DROP TABLE otel_traces; --",
            "\ud800",
        ]
    ),
)
JSON = st.one_of(
    SCALAR,
    st.lists(SCALAR, max_size=2),
    st.dictionaries(st.sampled_from(["", "a", "type", "0"]), SCALAR, max_size=2),
)
COUNT = st.one_of(st.integers(min_value=0, max_value=10**7), JSON)


def maybe(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field that may be missing, null, of the right shape, or any JSON at all."""
    return st.one_of(st.just(...), st.none(), value, value, value, JSON)


def obj(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {}, optional={k: maybe(v) for k, v in fields.items()}
    ).map(lambda d: {k: v for k, v in d.items() if v is not ...})


CHAT_USAGE = obj(
    prompt_tokens=COUNT,
    completion_tokens=COUNT,
    total_tokens=COUNT,
    completion_tokens_details=obj(
        reasoning_tokens=COUNT, rejected_prediction_tokens=COUNT
    ),
    prompt_tokens_details=obj(cached_tokens=COUNT),
)
RESPONSES_USAGE = obj(
    input_tokens=COUNT,
    output_tokens=COUNT,
    total_tokens=COUNT,
    output_tokens_details=obj(reasoning_tokens=COUNT),
    input_tokens_details=obj(cached_tokens=COUNT),
)
TOOL_CALL = obj(
    index=COUNT,
    id=JSON,
    type=JSON,
    function=obj(name=JSON, arguments=st.text(max_size=20)),
)
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
    choices=st.lists(
        obj(
            index=st.integers(0, 3),
            delta=DELTA,
            finish_reason=st.sampled_from(["stop", "length"]),
        ),
        max_size=3,
    ),
    usage=CHAT_USAGE,
)
MESSAGE = obj(
    role=JSON,
    content=st.text(max_size=20),
    refusal=JSON,
    tool_calls=st.lists(TOOL_CALL, max_size=2),
    reasoning_content=JSON,
)
COMPLETION = obj(
    id=st.text(max_size=8),
    model=st.text(max_size=8),
    choices=st.lists(
        obj(
            index=COUNT,
            message=MESSAGE,
            finish_reason=st.sampled_from(["stop", "length", "tool_calls"]),
        ),
        max_size=3,
    ),
    usage=CHAT_USAGE,
)
OUTPUT_ITEM = obj(
    type=st.sampled_from(["message", "reasoning", "function_call", "weird"]),
    content=st.lists(
        obj(
            type=st.sampled_from(["output_text", "refusal"]), text=st.text(max_size=10)
        ),
        max_size=2,
    ),
)
RESPONSE = obj(
    id=st.text(max_size=8),
    model=st.text(max_size=8),
    status=st.sampled_from(
        ["completed", "incomplete", "failed", "in_progress", "queued"]
    ),
    incomplete_details=obj(
        reason=st.sampled_from(["max_output_tokens", "content_filter"])
    ),
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
EVENT = obj(
    type=st.sampled_from(EVENT_TYPES),
    delta=st.text(max_size=10),
    response=RESPONSE,
    sequence_number=COUNT,
)


def sdk_error() -> st.SearchStrategy[BaseException]:
    request = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    return st.sampled_from(
        [
            lambda: openai.APIConnectionError(request=request),
            lambda: openai.APITimeoutError(request=request),
            lambda: httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body"
            ),
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
        return Call(
            self.telemetry,
            CallRecord(provider="openai", request_model="o4-mini", stream=stream),
        )

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
            assert type(attrs[key]) is int and 0 <= attrs[key] < 2**63, (
                key,
                attrs[key],
            )
    for key in TEXTS:
        if key in attrs:
            assert isinstance(attrs[key], str), (key, attrs[key])
    if sc.REASONING_TOKENS not in attrs:
        assert attrs[sc.REASONING_SOURCE] != "reported"
    if sc.OUTPUT_TOKENS not in attrs:
        assert (
            attrs[sc.OUTPUT_SOURCE] in ("unknown", "estimated", "derived")
            and attrs[sc.OUTPUT_SOURCE] != "reported"
        )
    if attrs.get(sc.COST_SOURCE) == "price_table":  # priced only from known counts
        assert sc.INPUT_TOKENS in attrs and sc.OUTPUT_TOKENS in attrs


def drain(stream: Any, source: list[Any]) -> tuple[list[Any], BaseException | None]:
    seen: list[Any] = []
    try:
        for item in stream:
            seen.append(item)  # noqa: PERF402  (keeps what came before an error)
    except BaseException as error:  # noqa: BLE001  (the SDK's error, re-raised by the proxy, is the outcome)
        return seen, error
    return seen, None


def failing(items: list[Any], error: BaseException | None, at: int) -> Iterator[Any]:
    for i, item in enumerate(items):
        if error is not None and i == at:
            raise error
        yield item
    if error is not None:
        raise error


def check_stream(
    harness: Harness,
    call: Call,
    items: list[Any],
    seen: list[Any],
    raised: BaseException | None,
    error: BaseException | None,
) -> None:
    assert raised is error  # the very object the SDK raised, or nothing
    assert all(any(s is i for i in items) for s in seen)  # only what the SDK yielded
    attrs = harness.only_span_attributes()
    if error is not None:
        assert attrs[sc.ERROR_TYPE] == type(error).__qualname__
    assert_honest(attrs)


# ---------------------------------------------------------------------------------------------- parsers


# A realistic reply of each kind; each generated case also runs MUTANTS copies of it with 1-3 fields
# deleted or replaced by hostile values, which is cheap enough for thousands of cases per second.
MUTANTS = 10
HOSTILE_VALUES = (
    None,
    True,
    False,
    -1,
    -(2**63),
    2**63,
    2**70,
    0.5,
    float("nan"),
    float("inf"),
    "",
    "12",
    "\ud800",
    "'; DROP TABLE otel_traces; --",
    "x" * 500,
    [],
    {},
    [1, "a"],
    {"a": None},
)
COMPLETION_TEMPLATE = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "o4-mini-2025-04-16",
    "choices": [
        {
            "index": 0,
            "finish_reason": "stop",
            "message": {
                "role": "assistant",
                "content": "4",
                "reasoning_content": "2+2",
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "f", "arguments": "{}"},
                    }
                ],
            },
        }
    ],
    "usage": {
        "prompt_tokens": 1500,
        "completion_tokens": 912,
        "total_tokens": 2412,
        "prompt_tokens_details": {"cached_tokens": 1024},
        "completion_tokens_details": {"reasoning_tokens": 900},
    },
}
CHUNK_TEMPLATES = [
    {
        "id": "c",
        "model": "o4-mini",
        "choices": [
            {"index": 0, "delta": {"role": "assistant", "reasoning_content": "hm"}}
        ],
    },
    {
        "id": "c",
        "model": "o4-mini",
        "choices": [{"index": 0, "delta": {"content": "4"}, "finish_reason": "stop"}],
    },
    {
        "id": "c",
        "model": "o4-mini",
        "choices": [],
        "usage": COMPLETION_TEMPLATE["usage"],
    },
]
RESPONSE_TEMPLATE = {
    "id": "resp_1",
    "object": "response",
    "model": "o3",
    "status": "incomplete",
    "incomplete_details": {"reason": "max_output_tokens"},
    "output": [
        {"type": "reasoning", "id": "r"},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "4"}],
        },
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
    ],
    "usage": {
        "input_tokens": 1500,
        "output_tokens": 912,
        "total_tokens": 2412,
        "input_tokens_details": {"cached_tokens": 1024},
        "output_tokens_details": {"reasoning_tokens": 900},
    },
}
EVENT_TEMPLATES = [
    {
        "type": "response.created",
        "sequence_number": 0,
        "response": {**RESPONSE_TEMPLATE, "status": "in_progress", "usage": None},
    },
    {
        "type": "response.reasoning_summary_text.delta",
        "delta": "hm",
        "sequence_number": 1,
    },
    {"type": "response.output_text.delta", "delta": "4", "sequence_number": 2},
    {"type": "response.completed", "sequence_number": 3, "response": RESPONSE_TEMPLATE},
]


def _slots(doc: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) of a JSON document."""
    found = []
    keys = (
        list(doc)
        if isinstance(doc, dict)
        else range(len(doc))
        if isinstance(doc, list)
        else ()
    )
    for key in keys:
        found.append((doc, key))
        found += _slots(doc[key])
    return found


def mutants(template: Any, seed: int) -> Iterator[Any]:
    rng = random.Random(seed)
    for _ in range(MUTANTS):
        doc = copy.deepcopy(template)
        for _ in range(rng.randint(1, 3)):
            slots = _slots(doc)
            if not slots:
                break
            container, key = rng.choice(slots)
            if isinstance(container, dict) and rng.random() < 0.25:
                del container[key]
            else:
                container[key] = copy.deepcopy(rng.choice(HOSTILE_VALUES))
        yield doc


def check_reply(
    harness: Harness,
    surface_type: Any,
    reply_type: Any,
    payload: Any,
    usage_field: str,
    attribute: str,
) -> None:
    reply = construct_type(type_=reply_type, value=payload)
    call = harness.call(stream=False)
    assert (
        _deliver(
            surface_type(harness.telemetry, harness.resolver), call, reply, {}, False
        )
        is reply
    )
    attrs = harness.only_span_attributes()
    assert_honest(attrs)
    # The count as the SDK handed it over (it turns a JSON false into 0 itself): kept if plausible.
    usage = getattr(reply, "usage", None)
    count = getattr(usage, usage_field, None)
    if type(count) is int and 0 <= count < 2**63:
        assert attrs[attribute] == count
    elif usage_field == "output_tokens" or not isinstance(
        getattr(usage, "prompt_cache_hit_tokens", None), int
    ):
        assert attribute not in attrs


def check_stream_case(
    harness: Harness,
    accumulator: Any,
    item_type: Any,
    docs: list[Any],
    hide: bool,
    error: BaseException | None,
    at: int,
) -> None:
    items = [construct_type(type_=item_type, value=d) for d in docs]
    call = harness.call(stream=True)
    call.hide_usage_chunk = hide
    seen, raised = drain(
        TracedStream(failing(items, error, at), accumulator(call)), items
    )
    check_stream(harness, call, items, seen, raised, error)
    if not hide:
        assert len(seen) == (len(items) if error is None else min(at, len(items)))


@fuzz(300)
@given(payload=COMPLETION, seed=st.integers())
def test_chat_completion_reply(
    harness: Harness, payload: dict[str, Any], seed: int
) -> None:
    for doc in [payload, *mutants(COMPLETION_TEMPLATE, seed)]:
        check_reply(
            harness, ChatSurface, ChatCompletion, doc, "prompt_tokens", sc.INPUT_TOKENS
        )


@fuzz(200)
@given(payload=RESPONSE, seed=st.integers())
def test_responses_reply(harness: Harness, payload: dict[str, Any], seed: int) -> None:
    for doc in [payload, *mutants(RESPONSE_TEMPLATE, seed)]:
        check_reply(
            harness, ResponsesSurface, Response, doc, "output_tokens", sc.OUTPUT_TOKENS
        )


@fuzz(300)
@given(
    chunks=st.lists(CHUNK, max_size=4),
    hide=st.booleans(),
    error=st.none() | sdk_error(),
    at=st.integers(0, 6),
    seed=st.integers(),
)
def test_chat_stream(
    harness: Harness,
    chunks: list[dict[str, Any]],
    hide: bool,
    error: BaseException | None,
    at: int,
    seed: int,
) -> None:
    for docs in [chunks, *mutants(CHUNK_TEMPLATES, seed)]:
        check_stream_case(
            harness, ChatStreamAccumulator, ChatCompletionChunk, docs, hide, error, at
        )


@fuzz(120)
@given(
    events=st.lists(EVENT, max_size=4),
    error=st.none() | sdk_error(),
    at=st.integers(0, 6),
    seed=st.integers(),
)
def test_responses_stream(
    harness: Harness,
    events: list[dict[str, Any]],
    error: BaseException | None,
    at: int,
    seed: int,
) -> None:
    for docs in [events, *mutants(EVENT_TEMPLATES, seed)]:
        check_stream_case(
            harness,
            ResponsesStreamAccumulator,
            ResponseStreamEvent,
            docs,
            False,
            error,
            at,
        )


_loop = asyncio.new_event_loop()


@fuzz(300)
@given(
    chunks=st.lists(CHUNK, max_size=5),
    error=st.none() | sdk_error(),
    at=st.integers(0, 5),
    cancel=st.booleans(),
)
def test_async_chat_stream(
    harness: Harness,
    chunks: list[dict[str, Any]],
    error: BaseException | None,
    at: int,
    cancel: bool,
) -> None:
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
        except BaseException as raised:  # noqa: BLE001  (compared with what the SDK raised)
            return seen, raised
        return seen, None

    call = harness.call(stream=True)
    seen, raised = _loop.run_until_complete(consume())
    check_stream(harness, call, items, seen, raised, error)


@fuzz(300)
@given(
    chunks=st.lists(CHUNK, min_size=1, max_size=5),
    stop_after=st.integers(0, 4),
    how=st.sampled_from(["close", "abandon", "with"]),
)
def test_chat_stream_left_early(
    harness: Harness, chunks: list[dict[str, Any]], stop_after: int, how: str
) -> None:
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

        def __enter__(self) -> Self:
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
            del stream  # the last reference: the proxy's __del__ runs now
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
    st.just(b'event: error\ndata: {"error": {"message": "overloaded"}}\n\n'),
    st.just(b": keep-alive\n\n"),
    st.binary(max_size=20),
)


def asks_for_usage(request: bytes) -> bool:
    try:
        return bool(json.loads(request)["stream_options"]["include_usage"])
    except (ValueError, KeyError, TypeError):
        return False


def blank_usage_only_events(body: bytes) -> bytes:
    """Hostile in every way but one: a usage-only chunk (usage, no choices) comes only when the request asked
    for it. thinkmeter asks when the caller did not and hides that chunk; an unasked one at the same place
    cannot be told from it, so the untraced and traced runs would see different servers. The chunk becomes an
    SSE comment of the same length, so byte counts in the SDK's errors stay the same."""
    events = body.split(b"\n\n")
    for index, event in enumerate(events):
        try:
            chunk = json.loads(event[len(b"data: "):]) if event.startswith(b"data: ") else None
        except ValueError:
            chunk = None
        if isinstance(chunk, dict) and chunk.get("usage") is not None and not chunk.get("choices"):
            events[index] = b":" + b" " * (len(event) - 1)
    return b"\n\n".join(events)


class HostileServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    reply: tuple[int, str, bytes, bool] = (200, "application/json", b"{}", False)


class HostileHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        request = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, content_type, body, cut = self.server.reply  # type: ignore[attr-defined]
        if status == 200 and content_type == "text/event-stream" and not asks_for_usage(request):
            body = blank_usage_only_events(body)
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
            result = client.chat.completions.create(
                model="o4-mini",
                messages=[{"role": "user", "content": "hi"}],
                stream=True,
            )
            return "items", [chunk.to_dict() for chunk in result]
        result = client.chat.completions.create(
            model="o4-mini", messages=[{"role": "user", "content": "hi"}]
        )
        return "reply", result.to_dict() if hasattr(result, "to_dict") else result
    except Exception as error:  # noqa: BLE001  (the SDK's error is the outcome)
        return "error", (type(error), str(error))


@fuzz(80)
@given(
    stream=st.booleans(),
    status=st.sampled_from([200, 200, 200, 500, 429]),
    body=HOSTILE_BODIES,
    lines=st.lists(SSE_LINES, max_size=5),
    cut=st.booleans(),
)
def test_real_sdk_against_hostile_server(
    hostile_server: HostileServer,
    stream: bool,
    status: int,
    body: bytes,
    lines: list[bytes],
    cut: bool,
) -> None:
    """Whatever the server sends, the traced caller sees exactly what an untraced one sees."""
    payload = b"".join(lines) if stream else body
    hostile_server.reply = (
        status,
        "text/event-stream" if stream else "application/json",
        payload,
        cut,
    )
    client = openai.OpenAI(
        base_url=f"http://127.0.0.1:{hostile_server.server_port}/v1",
        api_key="k",
        max_retries=0,
    )
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


# ------------------------------------------------------------------------------- Anthropic and Gemini

ANTHROPIC_MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "stop_reason": "end_turn",
    "content": [
        {"type": "thinking", "thinking": "hm", "signature": "s"},
        {"type": "text", "text": "4"},
    ],
    "usage": {
        "input_tokens": 100,
        "output_tokens": 50,
        "cache_read_input_tokens": 10,
        "cache_creation_input_tokens": 5,
    },
}
ANTHROPIC_EVENTS = [
    {
        "type": "message_start",
        "message": {
            **ANTHROPIC_MESSAGE,
            "content": [],
            "usage": {"input_tokens": 100, "output_tokens": 1},
        },
    },
    {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "thinking", "thinking": "", "signature": ""},
    },
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "thinking_delta", "thinking": "hm"},
    },
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "text_delta", "text": "4"},
    },
    {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn"},
        "usage": {"output_tokens": 50},
    },
    {"type": "message_stop"},
]
GEMINI_RESPONSE = {
    "response_id": "r1",
    "model_version": "gemini-2.5-pro",
    "candidates": [
        {
            "index": 0,
            "finish_reason": "STOP",
            "content": {
                "role": "model",
                "parts": [{"text": "hm", "thought": True}, {"text": "4"}],
            },
        }
    ],
    "usage_metadata": {
        "prompt_token_count": 100,
        "candidates_token_count": 10,
        "thoughts_token_count": 40,
        "total_token_count": 150,
    },
}


def gemini_response(doc: Any) -> Any:
    """What google-genai hands over: a validated response, or (for what validation would refuse) the
    same fields unvalidated, so the parser also meets wrong types."""
    from google.genai import types

    try:
        return types.GenerateContentResponse.model_validate(doc)
    except Exception:  # noqa: BLE001  (ValidationError, or the SDK's own enum parsing failing on a non-string)
        return (
            types.GenerateContentResponse.model_construct(**doc)
            if isinstance(doc, dict)
            else doc
        )


@fuzz(100)
@given(seed=st.integers(), error=st.none() | sdk_error(), at=st.integers(0, 6))
def test_anthropic_reply_and_stream(
    harness: Harness, seed: int, error: BaseException | None, at: int
) -> None:
    from anthropic._models import construct_type as anthropic_construct
    from anthropic.types import Message, RawMessageStreamEvent
    from thinkmeter.instrumentation.anthropic_messages import (
        MessagesStreamAccumulator,
        MessagesSurface,
    )

    for doc in mutants(ANTHROPIC_MESSAGE, seed):
        message = anthropic_construct(type_=Message, value=doc)
        assert (
            _deliver(
                MessagesSurface(harness.telemetry, harness.resolver),
                harness.call(stream=False),
                message,
                {},
                False,
            )
            is message
        )
        assert_honest(harness.only_span_attributes())
    for docs in mutants(ANTHROPIC_EVENTS, seed):
        items = [
            anthropic_construct(type_=RawMessageStreamEvent, value=d) for d in docs
        ]
        call = harness.call(stream=True)
        seen, raised = drain(
            TracedStream(failing(items, error, at), MessagesStreamAccumulator(call)),
            items,
        )
        check_stream(harness, call, items, seen, raised, error)


@fuzz(100)
@given(seed=st.integers(), error=st.none() | sdk_error(), at=st.integers(0, 3))
def test_gemini_reply_and_stream(
    harness: Harness, seed: int, error: BaseException | None, at: int
) -> None:
    from thinkmeter.instrumentation.gemini_models import (
        GenerateContentStreamAccumulator,
        GenerateContentSurface,
    )

    for doc in mutants(GEMINI_RESPONSE, seed):
        response = gemini_response(doc)
        surface = GenerateContentSurface(
            harness.telemetry, harness.resolver, stream=False
        )
        assert (
            _deliver(surface, harness.call(stream=False), response, {}, False)
            is response
        )
        assert_honest(harness.only_span_attributes())
    for docs in mutants([GEMINI_RESPONSE, GEMINI_RESPONSE, GEMINI_RESPONSE], seed):
        items = [gemini_response(d) for d in docs]
        call = harness.call(stream=True)
        seen, raised = drain(
            TracedStream(
                failing(items, error, at), GenerateContentStreamAccumulator(call)
            ),
            items,
        )
        check_stream(harness, call, items, seen, raised, error)


# ------------------------------------------------------------------------------- Bedrock, Mistral

BEDROCK_CLAUDE = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
CONVERSE_REPLY = {
    "ResponseMetadata": {"RequestId": "r-1", "HTTPHeaders": {"x-amzn-requestid": "r-1"}},
    "output": {
        "message": {
            "role": "assistant",
            "content": [
                {"reasoningContent": {"reasoningText": {"text": "hm", "signature": "s"}}},
                {"text": "4"},
                {"toolUse": {"toolUseId": "t", "name": "f", "input": {"a": 1}}},
            ],
        }
    },
    "stopReason": "end_turn",
    "usage": {"inputTokens": 10, "outputTokens": 90, "totalTokens": 1100, "cacheReadInputTokens": 1000, "cacheWriteInputTokens": 0},
    "metrics": {"latencyMs": 1200},
}
CONVERSE_EVENTS = [
    {"messageStart": {"role": "assistant"}},
    {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "hm"}}}},
    {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"reasoningContent": {"redactedContent": b"x"}}}},
    {"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"text": "4"}}},
    {"contentBlockDelta": {"contentBlockIndex": 2, "delta": {"toolUse": {"input": "{\"a\""}}}},
    {"messageStop": {"stopReason": "end_turn"}},
    {"metadata": {"usage": {"inputTokens": 10, "outputTokens": 90, "cacheReadInputTokens": 5}, "metrics": {"latencyMs": 3}}},
]


def bedrock_call(harness: Harness, stream: bool) -> Call:
    harness.exporter.clear()
    return Call(harness.telemetry, CallRecord(provider="aws.bedrock", request_model=BEDROCK_CLAUDE, stream=stream))


def bedrock_surface(harness: Harness, converse: bool, stream: bool) -> Any:
    from thinkmeter.instrumentation.bedrock_runtime import BedrockSurface

    return BedrockSurface(harness.telemetry, harness.resolver, converse=converse, stream=stream)


@fuzz(100)
@given(seed=st.integers(), error=st.none() | sdk_error(), at=st.integers(0, 8))
def test_bedrock_replies_and_streams(harness: Harness, seed: int, error: BaseException | None, at: int) -> None:
    from botocore.response import StreamingBody

    from thinkmeter.instrumentation.bedrock_runtime import ConverseStreamAccumulator, InvokeStreamAccumulator, Modeled

    for doc in mutants(CONVERSE_REPLY, seed):
        reply = doc if isinstance(doc, dict) else {"ResponseMetadata": doc}
        assert _deliver(bedrock_surface(harness, True, False), bedrock_call(harness, False), reply, {}, False) is reply
        assert_honest(harness.only_span_attributes())
    for doc in mutants({"headers": {"x-amzn-bedrock-output-token-count": "5"}, "body": ANTHROPIC_MESSAGE}, seed):
        # InvokeModel: Claude's body is Anthropic's JSON (or anything a broken server sends), and
        # the caller reads the same bytes after thinkmeter has.
        data = json.dumps(doc.get("body") if isinstance(doc, dict) else doc, default=str).encode()
        headers = doc.get("headers") if isinstance(doc, dict) else None
        reply = {"ResponseMetadata": {"HTTPHeaders": headers}, "body": StreamingBody(io.BytesIO(data), len(data))}
        assert _deliver(bedrock_surface(harness, False, False), bedrock_call(harness, False), reply, {}, False) is reply
        assert reply["body"].read() == data
        assert_honest(harness.only_span_attributes())
    for docs in mutants(CONVERSE_EVENTS, seed):
        call = bedrock_call(harness, True)
        seen, raised = drain(TracedStream(failing(docs, error, at), ConverseStreamAccumulator(call, Modeled())), docs)
        check_stream(harness, call, docs, seen, raised, error)
    metrics = {"type": "message_stop", "amazon-bedrock-invocationMetrics": {"inputTokenCount": 3, "outputTokenCount": 7}}
    for docs in mutants([*ANTHROPIC_EVENTS, metrics], seed):
        items = [{"chunk": {"bytes": json.dumps(d, default=str).encode()}} for d in docs]
        for claude in (True, False):
            call = bedrock_call(harness, True)
            seen, raised = drain(TracedStream(failing(items, error, at), InvokeStreamAccumulator(call, claude)), items)
            check_stream(harness, call, items, seen, raised, error)


MISTRAL_RESPONSE = {
    "id": "m-1",
    "object": "chat.completion",
    "model": "magistral-medium-2509",
    "created": 1,
    "choices": [
        {
            "index": 0,
            "finish_reason": "stop",
            "message": {
                "role": "assistant",
                "content": [{"type": "thinking", "thinking": [{"type": "text", "text": "hm hm"}]}, {"type": "text", "text": "4"}],
                "tool_calls": [{"id": "t", "function": {"name": "f", "arguments": "{}"}}],
            },
        }
    ],
    "usage": {"prompt_tokens": 20, "completion_tokens": 30, "total_tokens": 50},
}
MISTRAL_CHUNKS = [
    {"id": "m", "model": "magistral-medium-2509", "choices": [{"index": 0, "delta": {"content": [{"type": "thinking", "thinking": [{"type": "text", "text": "hm"}]}]}}]},
    {"id": "m", "model": "magistral-medium-2509", "choices": [{"index": 0, "delta": {"content": "4"}}]},
    {"id": "m", "model": "magistral-medium-2509", "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "stop"}], "usage": MISTRAL_RESPONSE["usage"]},
]


def mistral_model(model_type: Any, doc: Any) -> Any:
    """What mistralai hands over: a validated model, or the same fields unvalidated."""
    try:
        return model_type.model_validate(doc)
    except Exception:  # noqa: BLE001  (ValidationError)
        return model_type.model_construct(**doc) if isinstance(doc, dict) else doc


@fuzz(100)
@given(seed=st.integers(), error=st.none() | sdk_error(), at=st.integers(0, 3))
def test_mistral_reply_and_stream(harness: Harness, seed: int, error: BaseException | None, at: int) -> None:
    try:
        from mistralai.client.models import ChatCompletionResponse, CompletionChunk, CompletionEvent
    except ImportError:  # mistralai 1.x
        from mistralai.models import ChatCompletionResponse, CompletionChunk, CompletionEvent

    from thinkmeter.instrumentation.mistral_sdk import MistralChatSurface, MistralStreamAccumulator

    for doc in mutants(MISTRAL_RESPONSE, seed):
        response = mistral_model(ChatCompletionResponse, doc)
        surface = MistralChatSurface(harness.telemetry, harness.resolver, stream=False)
        assert _deliver(surface, harness.call(stream=False), response, {}, False) is response
        assert_honest(harness.only_span_attributes())
    for docs in mutants(MISTRAL_CHUNKS, seed):
        items = [CompletionEvent.model_construct(data=mistral_model(CompletionChunk, d)) for d in docs]
        call = harness.call(stream=True)
        seen, raised = drain(TracedStream(failing(items, error, at), MistralStreamAccumulator(call)), items)
        check_stream(harness, call, items, seen, raised, error)
