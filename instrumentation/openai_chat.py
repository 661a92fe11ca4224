"""OpenAI Chat Completions: create / parse / stream(), sync and async, streamed or not."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from thinkmeter.instrumentation._content import ContentCapture, capture, capture_input
from thinkmeter.instrumentation._endpoints import EndpointResolver
from thinkmeter.instrumentation._patch import given
from thinkmeter.instrumentation._stream import TracedAsyncStream, TracedStream
from thinkmeter.instrumentation._telemetry import Call, Telemetry, mark_tokens
from thinkmeter.instrumentation.openai_usage import (
    field,
    known_text,
    read_chat_usage,
    reasoning_text,
)
from thinkmeter.schemas import semconv as sc
from thinkmeter.schemas.record import CallRecord

RAW_RESPONSE_HEADER = "X-Stainless-Raw-Response"


def raw_response_mode(kwargs: dict[str, Any]) -> str | None:
    """"true" for with_raw_response, "stream" for with_streaming_response, else None."""
    headers = kwargs.get("extra_headers")
    return headers.get(RAW_RESPONSE_HEADER) if headers else None


def start_call(
    telemetry: Telemetry, resolver: EndpointResolver, instance: Any, record: CallRecord, default: str | None = None
) -> Call:
    """Start a call of a Stainless-generated SDK resource (openai, anthropic); `default` as in resolve()."""
    endpoint = resolver.resolve(instance._client.base_url, default)
    record.provider = endpoint.provider
    record.engine = endpoint.engine
    record.server_address = endpoint.address
    record.server_port = endpoint.port
    return Call(telemetry, record)


def deliver_raw(call: Call, result: Any, mode: str, read: Any) -> Any:
    """with_raw_response: the parsed body is cached by the SDK, so reading it here costs the caller
    nothing. with_streaming_response and raw streams keep their body unread: no usage, said so."""
    if mode == "true" and not call.record.stream:
        read(call.record, result.parse())
    call.finish()
    return result


class ChatSurface:
    def __init__(self, telemetry: Telemetry, resolver: EndpointResolver) -> None:
        self.telemetry = telemetry
        self.resolver = resolver

    def begin(self, instance: Any, kwargs: dict[str, Any]) -> Call:
        stream = bool(given(kwargs.get("stream")))
        record = CallRecord(
            operation="chat",
            provider="",
            request_model=given(kwargs.get("model")),
            stream=stream,
            max_tokens=given(kwargs.get("max_completion_tokens")) or given(kwargs.get("max_tokens")),
            reasoning_level=given(kwargs.get("reasoning_effort")),
        )
        capture_input(self.telemetry.capture_content, record, given(kwargs.get("messages")))
        call = start_call(self.telemetry, self.resolver, instance, record)
        if stream and raw_response_mode(kwargs) is None:
            options = given(kwargs.get("stream_options")) or {}
            if not options.get("include_usage"):
                # Exact counts need the final usage chunk; the caller did not ask for it, so the
                # stream proxy hides it again.
                kwargs["stream_options"] = {**options, "include_usage": True}
                call.hide_usage_chunk = True
        return call

    def deliver(self, call: Call, result: Any, kwargs: dict[str, Any], is_async: bool) -> Any:
        mode = raw_response_mode(kwargs)
        if mode is not None:
            return deliver_raw(call, result, mode, read_completion)
        if call.record.stream:
            accumulator = ChatStreamAccumulator(call)
            return TracedAsyncStream(result, accumulator) if is_async else TracedStream(result, accumulator)
        read_completion(call.record, result)
        content = self.telemetry.capture_content
        if content is not None:
            capture_output(content, call.record, lambda: [(c.message.content, c.message.tool_calls, c.finish_reason) for c in result.choices])
        call.finish()
        return result


def capture_output(content: ContentCapture, record: CallRecord, outputs: Callable[[], Iterable[tuple[Any, Any, str | None]]]) -> None:
    """`outputs` is read inside the guard: an odd reply drops the content, never the call."""
    capture(record, sc.OUTPUT_MESSAGES, lambda: content.output_messages(outputs()))


def read_completion(record: CallRecord, completion: Any) -> None:
    # Only text where text belongs: a broken server's numbers or objects there are left unknown.
    record.response_model = known_text(completion.model)
    record.response_id = known_text(completion.id)
    choices = completion.choices if isinstance(completion.choices, list) else []
    record.finish_reasons = tuple(known_text(field(c, "finish_reason")) or "" for c in choices)
    reasoning = visible = 0
    try:
        for choice in choices:
            reasoning += len(reasoning_text(choice.message) or "")
            visible += answer_chars(choice.message)
    except (AttributeError, TypeError):
        reasoning = visible = 0  # a malformed message: no text sizes, but the usage is still read
    read_chat_usage(record, completion.usage, field(completion, "timings"), reasoning, visible)


def answer_chars(message: Any) -> int:
    """Characters of generated answer in a message or a stream delta: content, refusal, tool arguments."""
    chars = len(message.content or "") + len(message.refusal or "")
    for tool_call in message.tool_calls or ():
        chars += len(field(field(tool_call, "function"), "arguments") or "")
    return chars


class ChatStreamAccumulator:
    """Times the first chunk, first token and first visible token; keeps the usage chunk (and the
    answer text, only while content capture is on)."""

    __slots__ = (
        "call",
        "finish_reasons",
        "model",
        "reasoning_chars",
        "response_id",
        "text_room",
        "texts",
        "timings",
        "usage",
        "visible_chars",
    )

    def __init__(self, call: Call) -> None:
        self.call = call
        self.model: str | None = None
        self.response_id: str | None = None
        self.finish_reasons: dict[int, str] = {}
        self.usage: Any = None
        self.timings: Any = None  # llama.cpp's per-request server timings
        # Sizes of the streamed reasoning and answer text, for servers that count no reasoning.
        self.reasoning_chars = 0
        self.visible_chars = 0
        content = call.telemetry.capture_content
        self.texts: dict[int, list[str]] | None = {} if content is not None else None
        # Text beyond the capture limit would be cut anyway: keep memory flat on long answers.
        self.text_room = content.max_chars if content is not None else 0

    def on_item(self, chunk: Any) -> bool:
        now = time.perf_counter()
        call = self.call
        if call.first_chunk is None:
            call.first_chunk = now
            self.model = known_text(chunk.model)
            self.response_id = known_text(chunk.id)
        choices = chunk.choices
        for choice in choices:
            delta = choice.delta
            if delta is not None:
                # OpenAI-compatible servers stream reasoning text in fields the SDK keeps as extras.
                reasoning = reasoning_text(delta) if delta.__pydantic_extra__ else None
                if reasoning:
                    self.reasoning_chars += len(reasoning)
                content = delta.content
                if content or delta.refusal or delta.tool_calls:
                    # A delta carries text or a refusal or tool calls: the common one costs a len().
                    self.visible_chars += len(content) if content else answer_chars(delta)
                    mark_tokens(call, now, visible=True)
                    if self.texts is not None and delta.content and self.text_room > 0:
                        self.texts.setdefault(choice.index, []).append(delta.content[: self.text_room + 1])
                        self.text_room -= len(delta.content)
                elif reasoning:
                    mark_tokens(call, now, visible=False)
            reason = known_text(choice.finish_reason)
            if reason and type(choice.index) is int:
                self.finish_reasons[choice.index] = reason
        usage = chunk.usage
        extra = chunk.__pydantic_extra__
        if extra:
            if usage is None:  # Groq puts the usage of a stream on its last chunk's x_groq
                usage = field(extra.get("x_groq"), "usage")
            self.timings = extra.get("timings", self.timings)
        if usage is not None:
            self.usage = usage
            return not choices and call.hide_usage_chunk
        return False

    def on_end(self) -> None:
        record = self.call.record
        record.response_model = self.model
        record.response_id = self.response_id
        if self.finish_reasons:
            record.finish_reasons = tuple(self.finish_reasons[i] for i in sorted(self.finish_reasons))
        read_chat_usage(record, self.usage, self.timings, self.reasoning_chars, self.visible_chars)
        content = self.call.telemetry.capture_content
        if self.texts is not None and content is not None:
            indexes = sorted(set(self.texts) | set(self.finish_reasons))
            outputs = [("".join(self.texts.get(i, ())), None, self.finish_reasons.get(i)) for i in indexes]
            capture_output(content, record, lambda: outputs)
