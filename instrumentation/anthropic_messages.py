"""Anthropic Messages: create / parse / stream(), plain and beta, sync and async, streamed or not."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import wrapt

from thinkmeter.budgets.policy import ANSWER_ROOM_TOKENS, ANTHROPIC_MIN_BUDGET, ClassBudget
from thinkmeter.instrumentation._content import capture, capture_output, streamed_answers
from thinkmeter.instrumentation._endpoints import EndpointResolver
from thinkmeter.instrumentation._patch import Surface, begin_call, end_call, given
from thinkmeter.instrumentation._safety import dont_throw, log_once
from thinkmeter.instrumentation._stainless import deliver_raw, raw_response_mode, start_call
from thinkmeter.instrumentation._stream import finish_stream, traced
from thinkmeter.instrumentation._telemetry import Call, Telemetry, mark_tokens
from thinkmeter.instrumentation._values import field, known_text
from thinkmeter.instrumentation.anthropic_usage import THINKING_BLOCKS, input_tokens, read_anthropic_usage
from thinkmeter.schemas import semconv as sc
from thinkmeter.schemas.record import CallRecord

PROVIDER = "anthropic"


def _option(value: Any, name: str) -> Any:
    value = given(value)
    return value.get(name) if isinstance(value, dict) else None


class MessagesSurface:
    def __init__(self, telemetry: Telemetry, resolver: EndpointResolver) -> None:
        self.telemetry = telemetry
        self.resolver = resolver

    def begin(self, instance: Any, kwargs: dict[str, Any]) -> Call:
        thinking = kwargs.get("thinking")
        budget = _option(thinking, "budget_tokens") if _option(thinking, "type") == "enabled" else None
        record = CallRecord(
            operation="chat",
            provider="",
            request_model=given(kwargs.get("model")),
            stream=bool(given(kwargs.get("stream"))),
            max_tokens=given(kwargs.get("max_tokens")),
            reasoning_level=_option(kwargs.get("output_config"), "effort"),
            thinking_budget_tokens=budget,
        )
        content = self.telemetry.capture_content
        messages, system = given(kwargs.get("messages")), given(kwargs.get("system"))
        # Only a list is read: any other iterable would be used up before the SDK sends it.
        if content is not None and isinstance(messages, (list, tuple)):
            turns = messages if system is None else [{"role": "system", "content": system}, *messages]
            capture(record, sc.INPUT_MESSAGES, lambda: content.input_messages(turns))
        return start_call(self.telemetry, self.resolver, instance, record, default=PROVIDER)

    def inject(self, record: CallRecord, kwargs: dict[str, Any], caps: ClassBudget) -> list[str]:
        """Extended thinking with the class's budget (Anthropic's minimum is 1,024: a smaller cap is kept
        by the stream cut-off), and max_tokens above it. A call that set `thinking` (enabled or disabled),
        or a temperature / top_k that thinking does not allow, is left as it is."""
        cap = caps.max_reasoning_tokens
        if cap is None or given(kwargs.get("thinking")) is not None:
            return []
        if given(kwargs.get("temperature")) not in (None, 1) or given(kwargs.get("top_k")) is not None:
            return []
        budget = max(ANTHROPIC_MIN_BUDGET, cap)
        kwargs["thinking"] = {"type": "enabled", "budget_tokens": budget}
        injected = [f"thinking.budget_tokens={budget}"]
        record.thinking_budget_tokens = budget
        max_tokens = given(kwargs.get("max_tokens"))
        if not isinstance(max_tokens, int) or max_tokens <= budget:
            # The caller's max_tokens was room for the answer alone: it stays that, above the thinking.
            wanted = caps.max_output_tokens if caps.max_output_tokens and caps.max_output_tokens > budget else None
            kwargs["max_tokens"] = wanted or budget + (max_tokens if isinstance(max_tokens, int) else ANSWER_ROOM_TOKENS)
            injected.append(f"max_tokens={kwargs['max_tokens']}")
            record.max_tokens = kwargs["max_tokens"]
        return injected

    def deliver(self, call: Call, result: Any, kwargs: dict[str, Any], is_async: bool) -> Any:
        mode = raw_response_mode(kwargs)
        if mode is not None:
            return deliver_raw(call, result, mode, read_message)
        if call.record.stream:
            return traced(result, MessagesStreamAccumulator(call), is_async)
        read_message(call.record, result)
        content = self.telemetry.capture_content
        if content is not None:
            # Thinking blocks keep their type only: captured output is the answer.
            capture_output(content, call.record, lambda: [(result.content, None, result.stop_reason)])
        call.finish()
        return result


def _content_shape(content: Any) -> tuple[bool | None, int]:
    """(whether a thinking block came back, characters of generated non-reasoning output: answer
    text and tool input); (None, 0) for content that cannot be read."""
    thought, visible = False, 0
    try:
        for block in content or ():
            kind = field(block, "type")
            if kind in THINKING_BLOCKS:
                thought = True
            elif kind == "text":
                visible += len(field(block, "text"))
            elif isinstance(kind, str) and kind.endswith("tool_use"):
                visible += len(json.dumps(field(block, "input"), separators=(",", ":"), default=str))
    except (TypeError, ValueError):
        return None, 0
    return thought, visible


def read_message(record: CallRecord, message: Any) -> None:
    record.response_model = known_text(message.model)
    record.response_id = known_text(message.id)
    reason = known_text(message.stop_reason)
    if reason:
        record.finish_reasons = (reason,)
    thought, visible_chars = _content_shape(message.content)
    read_anthropic_usage(record, message.usage, message.usage, thought, visible_chars)


class MessagesStreamAccumulator:
    """Reads the raw event stream: first thinking_delta is the first token, first text or tool-input
    delta the first visible one; message_start carries input counts, the last message_delta the
    cumulative output counts."""

    __slots__ = (
        "answers",
        "call",
        "final_usage",
        "first_usage",
        "model",
        "response_id",
        "stop_reason",
        "thought",
        "visible_chars",
    )

    def __init__(self, call: Call) -> None:
        self.call = call
        self.model: str | None = None
        self.response_id: str | None = None
        self.stop_reason: str | None = None
        self.first_usage: Any = None
        self.final_usage: Any = None
        self.thought = False
        self.visible_chars = 0
        self.answers = streamed_answers(call.telemetry.capture_content)

    def on_item(self, event: Any) -> bool:
        now = time.perf_counter()
        call = self.call
        if call.first_chunk is None:
            call.first_chunk = now
        kind = event.type
        if kind == "content_block_delta":
            delta = event.delta
            if delta.type == "text_delta":
                self._visible(now, delta.text)
                if self.answers is not None and isinstance(delta.text, str):
                    self.answers.add(0, delta.text)
            elif delta.type == "input_json_delta":
                self._visible(now, delta.partial_json)
            elif delta.type == "thinking_delta" and delta.thinking:
                mark_tokens(call, now, False, len(delta.thinking))
        elif kind == "content_block_start":
            # A redacted (or omitted) thinking block says reasoning happened without timing it.
            if event.content_block.type in THINKING_BLOCKS:
                self.thought = True
        elif kind == "message_start":
            message = event.message
            self.model = known_text(message.model)
            self.response_id = known_text(message.id)
            self.first_usage = message.usage
            if call.meter is not None:
                call.meter.reported(input_tokens=input_tokens(message.usage))
        elif kind == "message_delta":
            self.final_usage = event.usage
            self.stop_reason = known_text(field(event.delta, "stop_reason")) or self.stop_reason
        return False

    def _visible(self, now: float, text: Any) -> None:
        if text and isinstance(text, str):
            mark_tokens(self.call, now, True, len(text))
            self.visible_chars += len(text)

    def on_end(self) -> None:
        record = self.call.record
        record.response_model = self.model
        record.response_id = self.response_id
        if self.stop_reason:
            record.finish_reasons = (self.stop_reason,)
        if self.first_usage is not None or self.final_usage is not None:
            read_anthropic_usage(record, self.first_usage, self.final_usage, self.thought, self.visible_chars)
        if self.answers is not None:
            self.answers.capture(record, {0: self.stop_reason})


class TracedStreamManager(wrapt.ObjectProxy):
    """What messages.stream() returns. The request goes out on enter, so the call starts there; the
    SDK's MessageStream then reads a traced raw stream, so the span sees every event whichever way
    the caller consumes it (events, text_stream, get_final_message, until_done)."""

    def __init__(self, wrapped: Any, surface: Surface, instance: Any, kwargs: dict[str, Any], injected: list[str]) -> None:
        super().__init__(wrapped)
        self._self_surface = surface
        self._self_instance = instance
        self._self_kwargs = kwargs
        self._self_injected = injected  # budget knobs put into the request when the manager was made
        self._self_accumulator: MessagesStreamAccumulator | None = None

    def _start_call(self) -> Call | None:
        call = begin_call(self._self_surface, self._self_instance, self._self_kwargs)
        budgets = call.telemetry.budgets if call is not None else None
        if budgets is not None:
            rejection = budgets.admit(self._self_surface, call, self._self_kwargs, injected=self._self_injected)
            if rejection is not None:
                end_call(call, None)
                raise rejection
        return call

    @dont_throw
    def _trace(self, call: Call, stream: Any, is_async: bool) -> None:
        raw = getattr(stream, "_raw_stream", None)
        if raw is None:
            log_once("anthropic.stream", "thinkmeter: this anthropic SDK's stream() has no raw stream; its calls go without usage")
            call.finish()
            return
        accumulator = MessagesStreamAccumulator(call)
        stream._raw_stream = traced(raw, accumulator, is_async)
        self._self_accumulator = accumulator

    def _exited(self) -> None:
        # Older SDKs close the response rather than the raw stream: the span ends with the manager.
        if self._self_accumulator is not None:
            finish_stream(self._self_accumulator, None)

    def __enter__(self) -> Any:
        call = self._start_call()
        try:
            stream = self.__wrapped__.__enter__()
        except BaseException as error:
            if call is not None:
                end_call(call, error)
            raise
        if call is not None:
            self._trace(call, stream, False)
        return stream

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(*exc_info)
        finally:
            self._exited()

    async def __aenter__(self) -> Any:
        call = self._start_call()
        try:
            stream = await self.__wrapped__.__aenter__()
        except BaseException as error:
            if call is not None:
                end_call(call, error)
            raise
        if call is not None:
            self._trace(call, stream, True)
        return stream

    async def __aexit__(self, *exc_info: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(*exc_info)
        finally:
            self._exited()


@dont_throw
def _inject_early(surface: Surface, kwargs: dict[str, Any]) -> list[str]:
    budgets = surface.telemetry.budgets  # type: ignore[attr-defined]
    if budgets is None or not budgets.enforce:
        return []
    return budgets.inject(surface, CallRecord(provider=PROVIDER), kwargs)


def stream_manager_wrapper(surface: Surface) -> Callable[..., Any]:
    """For messages.stream(): it sends nothing itself, so the call begins when its manager is entered."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict[str, Any]) -> Any:
        # The manager holds the request it will send: budget knobs go in now, the call starts on enter.
        injected = _inject_early(surface, kwargs) or []
        manager = wrapped(*args, **kwargs)
        return TracedStreamManager(manager, surface, instance, {**kwargs, "stream": True}, injected)

    return wrapper
