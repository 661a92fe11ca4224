"""OpenAI Chat Completions: create / parse / stream(), sync and async, streamed or not."""

from __future__ import annotations

import time
from typing import Any

from thinkmeter.instrumentation._endpoints import EndpointResolver
from thinkmeter.instrumentation._patch import given
from thinkmeter.instrumentation._stream import TracedAsyncStream, TracedStream
from thinkmeter.instrumentation._telemetry import Call, Telemetry, mark_tokens
from thinkmeter.instrumentation.openai_usage import chat_usage
from thinkmeter.schemas.record import CallRecord

RAW_RESPONSE_HEADER = "X-Stainless-Raw-Response"


def raw_response_mode(kwargs: dict[str, Any]) -> str | None:
    """"true" for with_raw_response, "stream" for with_streaming_response, else None."""
    headers = kwargs.get("extra_headers")
    return headers.get(RAW_RESPONSE_HEADER) if headers else None


def start_call(telemetry: Telemetry, resolver: EndpointResolver, instance: Any, record: CallRecord) -> Call:
    endpoint = resolver.resolve(instance._client.base_url)
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
        call.finish()
        return result


def read_completion(record: CallRecord, completion: Any) -> None:
    record.response_model = completion.model
    record.response_id = completion.id
    record.finish_reasons = tuple(c.finish_reason or "" for c in completion.choices)
    if completion.usage is not None:
        record.usage = chat_usage(completion.usage)


class ChatStreamAccumulator:
    """Times the first chunk, first token and first visible token; keeps the usage chunk."""

    __slots__ = ("call", "model", "response_id", "finish_reasons", "usage")

    def __init__(self, call: Call) -> None:
        self.call = call
        self.model: str | None = None
        self.response_id: str | None = None
        self.finish_reasons: dict[int, str] = {}
        self.usage: Any = None

    def on_item(self, chunk: Any) -> bool:
        now = time.perf_counter()
        call = self.call
        if call.first_chunk is None:
            call.first_chunk = now
            self.model = chunk.model
            self.response_id = chunk.id
        choices = chunk.choices
        for choice in choices:
            delta = choice.delta
            if delta is not None:
                if delta.content or delta.refusal or delta.tool_calls:
                    mark_tokens(call, now, visible=True)
                else:
                    # OpenAI-compatible servers stream reasoning text in fields the SDK keeps as extras.
                    extra = delta.__pydantic_extra__
                    if extra and (extra.get("reasoning") or extra.get("reasoning_content")):
                        mark_tokens(call, now, visible=False)
            if choice.finish_reason:
                self.finish_reasons[choice.index] = choice.finish_reason
        usage = chunk.usage
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
        if self.usage is not None:
            record.usage = chat_usage(self.usage)
