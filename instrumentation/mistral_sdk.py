"""The mistralai SDK (1.x to 3.x): Chat.complete / stream and their async twins, streamed or not.

parse() and parse_stream() call complete() and stream(), and are covered by them.
"""

from __future__ import annotations

import time
from typing import Any

from thinkmeter.instrumentation._endpoints import EndpointResolver
from thinkmeter.instrumentation._patch import Patcher, async_wrapper, given, sync_wrapper
from thinkmeter.instrumentation._stream import record_reply_identity, traced
from thinkmeter.instrumentation._telemetry import Call, Telemetry, mark_tokens
from thinkmeter.instrumentation._values import field, known_text
from thinkmeter.instrumentation.mistral_usage import content_sizes, mistral_usage
from thinkmeter.schemas.record import CallRecord

PROVIDER = "mistral_ai"
# mistralai 2.x and 3.x keep their resources under mistralai.client; 1.x at the top.
CHAT_MODULES = ("mistralai.client.chat", "mistralai.chat")


def instrument(patcher: Patcher, telemetry: Telemetry, resolver: EndpointResolver) -> None:
    for stream, methods in ((False, ("complete", "complete_async")), (True, ("stream", "stream_async"))):
        surface = MistralChatSurface(telemetry, resolver, stream)
        sync_method, async_method = methods
        for module in CHAT_MODULES:  # patched when the application imports them (1.2 s)
            patcher.wrap_on_import(module, f"Chat.{sync_method}", sync_wrapper(surface))
            patcher.wrap_on_import(module, f"Chat.{async_method}", async_wrapper(surface))


def _text(value: Any) -> str | None:
    """A str, or the value of a str enum (mistralai's ReasoningEffort, MistralPromptMode)."""
    value = getattr(value, "value", value)
    return value if isinstance(value, str) else None


class MistralChatSurface:
    def __init__(self, telemetry: Telemetry, resolver: EndpointResolver, stream: bool) -> None:
        self.telemetry = telemetry
        self.resolver = resolver
        self.stream = stream

    def begin(self, instance: Any, kwargs: dict[str, Any]) -> Call:
        server_url, _ = instance.sdk_configuration.get_server_details()
        endpoint = self.resolver.resolve(server_url, PROVIDER)
        effort = _text(given(kwargs.get("reasoning_effort")))
        if effort is None and _text(given(kwargs.get("prompt_mode"))) == "reasoning":
            effort = "reasoning"  # Magistral's prompt_mode: reasoning on, no level given
        max_tokens = given(kwargs.get("max_tokens"))
        record = CallRecord(
            operation="chat",
            **endpoint.record_fields(),
            request_model=known_text(kwargs.get("model")),
            stream=self.stream,
            max_tokens=max_tokens if type(max_tokens) is int else None,
            reasoning_level=effort,
        )
        return Call(self.telemetry, record)

    def deliver(self, call: Call, result: Any, kwargs: dict[str, Any], is_async: bool) -> Any:
        if self.stream:
            return traced(result, MistralStreamAccumulator(call), is_async)
        read_response(call.record, result)
        call.finish()
        return result


def _answer_chars(message: Any, visible: int) -> int:
    for tool_call in field(message, "tool_calls") or ():
        arguments = field(field(tool_call, "function"), "arguments")
        visible += len(arguments) if isinstance(arguments, str) else 0
    return visible


def read_response(record: CallRecord, response: Any) -> None:
    record.response_model = known_text(response.model)
    record.response_id = known_text(response.id)
    reasoning = visible = 0
    reasons = []
    for choice in response.choices or ():
        message = field(choice, "message")
        chars = content_sizes(field(message, "content"))
        reasoning += chars[0]
        visible += _answer_chars(message, chars[1])
        reasons.append(known_text(_text(field(choice, "finish_reason"))) or "")
    if reasons:
        record.finish_reasons = tuple(reasons)
    if response.usage is not None:
        record.usage = mistral_usage(response.usage, reasoning)


class MistralStreamAccumulator:
    """Each event's data is a chunk: a thinking chunk in the delta content is the first token, text
    or a tool call the first visible one; the last chunk carries the usage."""

    __slots__ = ("call", "finish_reasons", "model", "reasoning_chars", "response_id", "usage")

    def __init__(self, call: Call) -> None:
        self.call = call
        self.model: str | None = None
        self.response_id: str | None = None
        self.finish_reasons: dict[int, str] = {}
        self.reasoning_chars = 0
        self.usage: Any = None

    def on_item(self, event: Any) -> bool:
        now = time.perf_counter()
        call = self.call
        chunk = event.data
        if call.first_chunk is None:
            call.first_chunk = now
            self.model = known_text(chunk.model)
            self.response_id = known_text(chunk.id)
        for choice in chunk.choices or ():
            delta = choice.delta
            reasoning, visible = content_sizes(field(delta, "content"))
            if reasoning:
                self.reasoning_chars += reasoning
            if visible or field(delta, "tool_calls"):
                mark_tokens(call, now, True, visible)
            elif reasoning:
                mark_tokens(call, now, False, reasoning)
            reason = _text(field(choice, "finish_reason"))
            if reason and type(choice.index) is int:
                self.finish_reasons[choice.index] = reason
        if chunk.usage is not None:
            self.usage = chunk.usage
        return False

    def on_end(self) -> None:
        record = self.call.record
        record_reply_identity(record, self.model, self.response_id, self.finish_reasons)
        if self.usage is not None:
            record.usage = mistral_usage(self.usage, self.reasoning_chars)
