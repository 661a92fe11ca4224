"""CPU of thinkmeter's own steps per call and per chunk, on SDK objects built once, in one process.

    python benchmarks/hot_path.py [--repeat N]

`overhead.py` measures what a whole SDK call gains end to end; this one splits that figure into its
steps (record, parse, span) so a change to one of them shows without the SDK's noise. Replies are
the canned bodies of `_payloads.py`, turned into SDK objects the way each SDK does it
(`construct_type`, no validation). Spans go to an SDK TracerProvider with no processor.
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


def per_op_us(fn: Callable[[], Any], loops: int, repeat: int) -> float:
    """Median over `repeat` runs of the CPU per call of fn, in microseconds."""
    runs = []
    for _ in range(repeat):
        start = time.thread_time_ns()
        for _ in range(loops):
            fn()
        runs.append((time.thread_time_ns() - start) / loops / 1000)
    return statistics.median(runs)


def _sse_objects(body: bytes, construct: Callable[[Any], Any]) -> list[Any]:
    items = []
    for block in body.decode().split("\n\n"):
        data = next((line[6:] for line in block.splitlines() if line.startswith("data: ")), None)
        if data and data != "[DONE]":
            items.append(construct(json.loads(data)))
    return items


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
    from opentelemetry.sdk.trace import TracerProvider

    from thinkmeter.instrumentation._endpoints import EndpointResolver
    from thinkmeter.instrumentation._telemetry import Call, Telemetry, record_attributes
    from thinkmeter.instrumentation.anthropic_messages import MessagesStreamAccumulator, MessagesSurface, read_message
    from thinkmeter.instrumentation.openai_chat import ChatStreamAccumulator, ChatSurface, read_completion
    from thinkmeter.instrumentation.openai_responses import ResponsesSurface, read_response
    from thinkmeter.pricing import PriceTable
    from thinkmeter.schemas.record import CallRecord

    telemetry = Telemetry(TracerProvider(), None, PriceTable.load())
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
    responses = ResponsesSurface(telemetry, resolver)
    messages = MessagesSurface(telemetry, resolver)

    def record() -> CallRecord:
        return CallRecord(operation="chat", provider="openai", request_model=MODEL, stream=False)

    finished = record()
    read_completion(finished, completion)
    call = Call(telemetry, finished)
    call.finish()  # prices it: the span below carries every attribute a priced chat call has

    def chat_call() -> None:
        kwargs = {"model": MODEL, "messages": MESSAGES}
        chat.deliver(chat.begin(oa.chat.completions, kwargs), completion, kwargs, False)

    def responses_call() -> None:
        kwargs = {"model": MODEL, "input": "What is 2 + 2?"}
        responses.deliver(responses.begin(oa.responses, kwargs), response, kwargs, False)

    def anthropic_call() -> None:
        kwargs = {"model": ANTHROPIC_MODEL, "max_tokens": 1024, "messages": MESSAGES}
        messages.deliver(messages.begin(an.messages, kwargs), message, kwargs, False)

    def chat_stream() -> None:
        accumulator = ChatStreamAccumulator(Call(telemetry, record()))
        for chunk in chunks:
            accumulator.on_item(chunk)

    def anthropic_stream() -> None:
        accumulator = MessagesStreamAccumulator(Call(telemetry, record()))
        for event in events:
            accumulator.on_item(event)

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
        ("Responses call: begin + deliver", per_op_us(responses_call, loops, repeat)),
        ("Anthropic call: begin + deliver", per_op_us(anthropic_call, loops, repeat)),
        ("chat stream, per chunk", per_op_us(chat_stream, 20, repeat) / len(chunks)),
        ("Anthropic stream, per event", per_op_us(anthropic_stream, 20, repeat) / len(events)),
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
        print(f"  {name:<34}{us:8.2f} us")


if __name__ == "__main__":
    main()
