"""CPU of thinkmeter's own steps per call and per chunk, on SDK objects built once, in one process.

    python benchmarks/hot_path.py [--repeat N]

`overhead.py` measures what a whole SDK call gains end to end; this one splits that figure into its
steps (record, parse, span) so a change to one of them shows without the SDK's noise. Replies are
the canned bodies of `_payloads.py`, turned into SDK objects the way each SDK does it
(`construct_type`, no validation). Spans go to an SDK TracerProvider with no processor.

A whole call (begin + deliver) is measured three ways: the span built on the caller's thread (an
application's own tracer provider), the same plus metrics into an SDK MeterProvider (recorded on the
background thread), and the end of the call handed to the background thread (thinkmeter's own
provider: `instrument()` with no provider set). For the last two, "caller" is the calling thread's
CPU and "all threads" the process CPU, the background thread's work included.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _payloads  # noqa: E402

MODEL = "o4-mini"
ANTHROPIC_MODEL = "claude-sonnet-4-5"
MESSAGES = [{"role": "user", "content": "What is 2 + 2?"}]


def per_op_us(fn: Callable[[], Any], loops: int, repeat: int, clock: Callable[[], int] = time.thread_time_ns,
              after: Callable[[], Any] = lambda: None) -> float:
    """Median over `repeat` runs of the CPU per call of fn (calling thread, or `clock`), in microseconds;
    `after` runs inside each timed run (e.g. waiting for a background thread)."""
    runs = []
    for _ in range(repeat):
        start = clock()
        for _ in range(loops):
            fn()
        after()
        runs.append((clock() - start) / loops / 1000)
    return statistics.median(runs)


def _sse_objects(body: bytes, construct: Callable[[Any], Any]) -> list[Any]:
    items = []
    for block in body.decode().split("\n\n"):
        data = next((line[6:] for line in block.splitlines() if line.startswith("data: ")), None)
        if data and data != "[DONE]":
            items.append(construct(json.loads(data)))
    return items


def _botocore_event_parse(chunks: list[dict[str, Any]]) -> Callable[[], Any]:
    """What botocore itself does per chunk of an InvokeModelWithResponseStream reply, untraced: frame,
    CRC and JSON decoding of the wire bytes (made by the simulator's AWS event-stream encoder)."""
    import base64

    import botocore.session
    from botocore.eventstream import EventStream
    from botocore.parsers import EventStreamJSONParser

    from thinkmeter.simulator.bedrock import event

    wire = b"".join(event("chunk", {"bytes": base64.b64encode(c["chunk"]["bytes"]).decode()}) for c in chunks)
    operation = botocore.session.get_session().get_service_model("bedrock-runtime").operation_model("InvokeModelWithResponseStream")
    shape = operation.output_shape.members["body"]

    class Raw:
        def stream(self) -> list[bytes]:
            return [wire]

    def parse() -> None:
        for _ in EventStream(Raw(), shape, EventStreamJSONParser(), operation.name):
            pass

    return parse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7, help="runs per figure; the median is printed")
    args = parser.parse_args()

    import anthropic
    import openai
    from anthropic._models import construct_type as anthropic_construct
    from anthropic.types import Message, RawMessageStreamEvent
    from openai._models import construct_type as openai_construct
    from openai.types.chat import ChatCompletion, ChatCompletionChunk
    from openai.types.responses import Response
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider

    from thinkmeter.instrumentation._endpoints import EndpointResolver
    from thinkmeter.instrumentation._stream import traced
    from thinkmeter.instrumentation._telemetry import Call, Telemetry, record_attributes
    from thinkmeter.instrumentation.anthropic_messages import MessagesStreamAccumulator, MessagesSurface, read_message
    from thinkmeter.instrumentation.bedrock_runtime import ConverseStreamAccumulator, InvokeStreamAccumulator, Modeled
    from thinkmeter.instrumentation.openai_chat import ChatStreamAccumulator, ChatSurface, read_completion
    from thinkmeter.instrumentation.openai_responses import ResponsesSurface, read_response
    from thinkmeter.pricing import PriceTable
    from thinkmeter.schemas.record import CallRecord

    prices = PriceTable.load()
    telemetry = Telemetry(TracerProvider(), None, prices)
    metered = Telemetry(TracerProvider(), MeterProvider(metric_readers=[InMemoryMetricReader()]), prices)
    background = Telemetry(TracerProvider(), None, prices, background=True)
    resolver = EndpointResolver()
    oa = openai.OpenAI(api_key="sk-bench", base_url="https://api.openai.com/v1")
    an = anthropic.Anthropic(api_key="sk-bench")
    completion = openai_construct(type_=ChatCompletion, value=json.loads(_payloads.chat_completion(MODEL)))
    response = openai_construct(type_=Response, value=json.loads(_payloads.response(MODEL)))
    message = anthropic_construct(type_=Message, value=json.loads(_payloads.anthropic_message(ANTHROPIC_MODEL)))
    chunks = _sse_objects(_payloads.chat_stream(MODEL, 400), lambda d: openai_construct(type_=ChatCompletionChunk, value=d))
    events = _sse_objects(
        _payloads.anthropic_stream(ANTHROPIC_MODEL, 400), lambda d: anthropic_construct(type_=RawMessageStreamEvent, value=d)
    )
    chat = ChatSurface(telemetry, resolver)
    chat_metered = ChatSurface(metered, resolver)
    chat_background = ChatSurface(background, resolver)
    responses = ResponsesSurface(telemetry, resolver)
    responses_background = ResponsesSurface(background, resolver)
    messages = MessagesSurface(telemetry, resolver)
    messages_background = MessagesSurface(background, resolver)

    def record() -> CallRecord:
        return CallRecord(operation="chat", provider="openai", request_model=MODEL, stream=False)

    finished = record()
    read_completion(finished, completion)
    call = Call(telemetry, finished)
    call.finish()  # prices it: the span below carries every attribute a priced chat call has

    def chat_call(surface: ChatSurface = chat) -> None:
        kwargs = {"model": MODEL, "messages": MESSAGES}
        surface.deliver(surface.begin(oa.chat.completions, kwargs), completion, kwargs, False)

    def responses_call(surface: ResponsesSurface = responses) -> None:
        kwargs = {"model": MODEL, "input": "What is 2 + 2?"}
        surface.deliver(surface.begin(oa.responses, kwargs), response, kwargs, False)

    def anthropic_call(surface: MessagesSurface = messages) -> None:
        kwargs = {"model": ANTHROPIC_MODEL, "max_tokens": 1024, "messages": MESSAGES}
        surface.deliver(surface.begin(an.messages, kwargs), message, kwargs, False)

    def in_background(call: Callable[[Any], None], surface: Any) -> list[tuple[str, float]]:
        """Caller's thread and all threads, for a call whose end (or its metrics) goes to the background thread."""
        drain = lambda: surface.telemetry.background.drain(60)  # noqa: E731
        return [
            ("  caller", per_op_us(lambda: call(surface), loops, repeat, after=drain)),
            ("  all threads", per_op_us(lambda: call(surface), loops, repeat, clock=time.process_time_ns, after=drain)),
        ]

    def chat_stream() -> None:
        accumulator = ChatStreamAccumulator(Call(telemetry, record()))
        for chunk in chunks:
            accumulator.on_item(chunk)

    def plain_stream(items: list[Any]) -> Callable[[], None]:
        def run() -> None:
            for _ in iter(items):
                pass

        return run

    def proxied_stream(items: list[Any], accumulator: Callable[[Call], Any]) -> Callable[[], None]:
        """What the caller's `for chunk in stream` runs: the proxy, then the accumulator; the call ends
        at exhaustion (once per stream, on the background thread)."""

        def run() -> None:
            for _ in traced(iter(items), accumulator(Call(background, record())), False):
                pass

        return run

    def anthropic_stream() -> None:
        accumulator = MessagesStreamAccumulator(Call(telemetry, record()))
        for event in events:
            accumulator.on_item(event)

    # Bedrock's streams as botocore hands them over: Converse events as dicts, and InvokeModel chunks
    # holding Claude's own events as JSON bytes.
    converse_events = [{"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": " word"}}}] * 400
    invoke_chunks = [{"chunk": {"bytes": json.dumps(e.model_dump(mode="json")).encode()}} for e in events]

    def converse_stream() -> None:
        accumulator = ConverseStreamAccumulator(Call(telemetry, record()), Modeled())
        for event in converse_events:
            accumulator.on_item(event)

    def invoke_stream() -> None:
        accumulator = InvokeStreamAccumulator(Call(telemetry, record()), claude=True)
        for chunk in invoke_chunks:
            accumulator.on_item(chunk)

    botocore_invoke_stream = _botocore_event_parse(invoke_chunks)

    loops, repeat = 2000, args.repeat
    figures = [
        ("CallRecord(...)", per_op_us(record, loops, repeat)),
        ("read_completion (chat)", per_op_us(lambda: read_completion(record(), completion), loops, repeat)),
        ("read_response (Responses)", per_op_us(lambda: read_response(record(), response), loops, repeat)),
        ("read_message (Anthropic)", per_op_us(lambda: read_message(record(), message), loops, repeat)),
        ("Call(...) start", per_op_us(lambda: Call(telemetry, record()), loops, repeat)),
        ("record_attributes", per_op_us(lambda: record_attributes(finished), loops, repeat)),
        (
            "span start + end (emit_span)",
            per_op_us(lambda: telemetry.emit_span(finished, call.parent, call.start_ns, record_attributes(finished)), loops, repeat),
        ),
        ("chat call: begin + deliver", per_op_us(chat_call, loops, repeat)),
        ("  + metrics (SDK MeterProvider):", None),
        *in_background(chat_call, chat_metered),
        ("  span in the background:", None),
        *in_background(chat_call, chat_background),
        ("Responses call: begin + deliver", per_op_us(responses_call, loops, repeat)),
        ("  span in the background:", None),
        *in_background(responses_call, responses_background),
        ("Anthropic call: begin + deliver", per_op_us(anthropic_call, loops, repeat)),
        ("  span in the background:", None),
        *in_background(anthropic_call, messages_background),
        ("chat stream, accumulator per chunk", per_op_us(chat_stream, 20, repeat) / len(chunks)),
        ("Anthropic stream, per event", per_op_us(anthropic_stream, 20, repeat) / len(events)),
        ("chat stream, per chunk: plain loop", per_op_us(plain_stream(chunks), 20, repeat) / len(chunks)),
        ("  through the proxy", per_op_us(proxied_stream(chunks, ChatStreamAccumulator), 20, repeat) / len(chunks)),
        ("Anthropic stream, per event: plain", per_op_us(plain_stream(events), 20, repeat) / len(events)),
        ("  through the proxy", per_op_us(proxied_stream(events, MessagesStreamAccumulator), 20, repeat) / len(events)),
        ("Bedrock Converse stream, per event", per_op_us(converse_stream, 20, repeat) / len(converse_events)),
        ("Bedrock InvokeModel stream (Claude), per chunk", per_op_us(invoke_stream, 20, repeat) / len(invoke_chunks)),
        ("  botocore's own decoding of that chunk (plain)", per_op_us(botocore_invoke_stream, 20, repeat) / len(invoke_chunks)),
    ]
    # Tasks, side by side with the plain chat call above: the same call inside an open task (tags and
    # running totals), and a task block itself (its span start and end, with the totals).
    import thinkmeter
    from thinkmeter.instrumentation._task import use_tracer

    use_tracer(telemetry.tracer)

    def task_block() -> None:
        with thinkmeter.task("bench-block", task_class="math"):
            pass

    # Alternated run by run with the plain call, so machine noise hits both alike.
    plain, in_task = [], []
    for _ in range(repeat):
        plain.append(per_op_us(chat_call, loops, 1))
        with thinkmeter.task("bench-open", task_class="math"):
            in_task.append(per_op_us(chat_call, loops, 1))
    figures.append(("chat call (again, alternated)", statistics.median(plain)))
    figures.append(("same call inside a task", statistics.median(in_task)))
    figures.append(("task block (span + totals), no calls", per_op_us(task_block, loops, repeat)))
    attributes = len(record_attributes(finished))
    print(f"thinkmeter hot path, CPU per operation (median of {repeat} runs); span with {attributes} attributes")
    for name, us in figures:
        print(f"  {name:<48}" + ("" if us is None else f"{us:8.2f} us"))


if __name__ == "__main__":
    main()
