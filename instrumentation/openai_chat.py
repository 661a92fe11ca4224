"""OpenAI Chat Completions: create / parse / stream(), sync and async, streamed or not."""

from __future__ import annotations

import time
from typing import Any

from thinkmeter.budgets.policy import ClassBudget
from thinkmeter.instrumentation._budget import set_absent
from thinkmeter.instrumentation._content import capture_input, capture_output, streamed_answers
from thinkmeter.instrumentation._endpoints import EndpointResolver
from thinkmeter.instrumentation._patch import given
from thinkmeter.instrumentation._stainless import deliver_raw, raw_response_mode, start_call
from thinkmeter.instrumentation._stream import HOLD, record_reply_identity, traced
from thinkmeter.instrumentation._telemetry import Call, Telemetry, mark_tokens
from thinkmeter.instrumentation._values import as_count, field, known_text
from thinkmeter.instrumentation.openai_usage import ChatFlavour, read_chat_usage, reasoning_text
from thinkmeter.schemas.record import CallRecord


# Providers whose chat API takes max_completion_tokens; OpenAI-compatible servers take max_tokens.
MAX_COMPLETION_TOKENS_PROVIDERS = frozenset({"openai", "azure.ai.openai"})


class ChatSurface:
    def __init__(self, telemetry: Telemetry, resolver: EndpointResolver) -> None:
        self.telemetry = telemetry
        self.resolver = resolver

    def begin(self, instance: Any, kwargs: dict[str, Any]) -> Call:
        stream = bool(given(kwargs.get("stream")))
        record = CallRecord(
            operation="chat",
            provider="",
            request_model=known_text(given(kwargs.get("model"))),
            stream=stream,
            max_tokens=as_count(given(kwargs.get("max_completion_tokens")) or given(kwargs.get("max_tokens"))),
            reasoning_level=known_text(given(kwargs.get("reasoning_effort"))),
        )
        capture_input(self.telemetry.capture_content, record, given(kwargs.get("messages")))
        call = start_call(self.telemetry, self.resolver, instance, record)
        if stream and raw_response_mode(kwargs) is None:
            ask_for_stream_usage(call, kwargs)
        return call

    def inject(self, record: CallRecord, kwargs: dict[str, Any], caps: ClassBudget) -> list[str]:
        """max_completion_tokens (OpenAI, Azure) or max_tokens (vLLM, SGLang and other compatible servers),
        both counting reasoning; reasoning_effort."""
        injected: list[str] = []
        cap = caps.output_cap
        if cap is not None and given(kwargs.get("max_tokens")) is None:
            name = "max_completion_tokens" if record.provider in MAX_COMPLETION_TOKENS_PROVIDERS else "max_tokens"
            if given(kwargs.get("max_completion_tokens")) is None and set_absent(kwargs, name, cap, injected):
                record.max_tokens = cap
        if caps.reasoning_effort is not None and set_absent(kwargs, "reasoning_effort", caps.reasoning_effort, injected):
            record.reasoning_level = caps.reasoning_effort
        return injected

    def deliver(self, call: Call, result: Any, kwargs: dict[str, Any], is_async: bool) -> Any:
        mode = raw_response_mode(kwargs)
        if mode is not None:
            return deliver_raw(call, result, mode, read_completion)
        if call.record.stream:
            return traced(result, ChatStreamAccumulator(call), is_async)
        reasoning = read_completion(call.record, result)
        if call.engine_origin is not None:
            call.reasoning_text = reasoning
        content = self.telemetry.capture_content
        if content is not None:
            capture_output(content, call.record, lambda: [(c.message.content, c.message.tool_calls, c.finish_reason) for c in result.choices])
        call.finish()
        return result


def ask_for_stream_usage(call: Call, kwargs: dict[str, Any]) -> None:
    """Exact counts need a stream's final usage chunk: ask for it when the caller did not (the stream
    proxy then hides it again)."""
    options = given(kwargs.get("stream_options")) or {}
    if not options.get("include_usage"):
        kwargs["stream_options"] = {**options, "include_usage": True}
        call.hide_usage_chunk = True


def read_completion(record: CallRecord, completion: Any, flavour: ChatFlavour | None = None) -> str:
    """Read a completion into the record (`flavour`: how to read its usage, default the provider's);
    returns its reasoning text (empty when none)."""
    # Only text where text belongs: a broken server's numbers or objects there are left unknown.
    record.response_model = known_text(completion.model)
    record.response_id = known_text(completion.id)
    choices = completion.choices if isinstance(completion.choices, list) else []
    record.finish_reasons = tuple(known_text(field(c, "finish_reason")) or "" for c in choices)
    reasoning = ""
    visible = 0
    try:
        for choice in choices:
            reasoning += reasoning_text(choice.message) or ""
            visible += answer_chars(choice.message)
    except (AttributeError, TypeError):
        reasoning, visible = "", 0  # a malformed message: no text sizes, but the usage is still read
    read_chat_usage(
        record, completion.usage, field(completion, "timings"), len(reasoning), visible, field(completion, "metrics"), flavour
    )
    return reasoning


def answer_chars(message: Any) -> int:
    """Characters of generated answer in a message or a stream delta: content, refusal, tool arguments."""
    chars = len(message.content or "") + len(field(message, "refusal") or "")  # LiteLLM's deltas have no refusal
    for tool_call in message.tool_calls or ():
        chars += len(field(field(tool_call, "function"), "arguments") or "")
    return chars


class ChatStreamAccumulator:
    """Times the first chunk, first token and first visible token; keeps the usage chunk (and the
    answer text, only while content capture is on)."""

    __slots__ = (
        "answers",
        "call",
        "finish_reasons",
        "flavour",
        "last_shown",
        "metrics",
        "model",
        "reasoning_chars",
        "reasoning_parts",
        "response_id",
        "timings",
        "usage",
        "visible_chars",
    )

    def __init__(self, call: Call, flavour: ChatFlavour | None = None) -> None:
        self.call = call
        self.flavour = flavour  # None: the provider's
        self.model: str | None = None
        self.response_id: str | None = None
        self.finish_reasons: dict[int, str] = {}
        self.usage: Any = None
        self.timings: Any = None  # llama.cpp's per-request server timings
        self.last_shown: Any = None  # the finishing chunk, held back while a hidden usage chunk may follow
        self.metrics: Any = None  # vLLM's, on the final usage chunk
        # Sizes of the streamed reasoning and answer text, for servers that count no reasoning.
        self.reasoning_chars = 0
        self.visible_chars = 0
        # The reasoning text itself, kept only where the engine's tokenizer can count it.
        self.reasoning_parts: list[str] | None = [] if call.engine_origin is not None else None
        self.answers = streamed_answers(call.telemetry.capture_content)

    def on_item(self, chunk: Any) -> bool:
        # Runs once per chunk on the caller's thread: the common chunk (one choice, answer text, no
        # extras) takes the shortest way through.
        now = time.perf_counter()
        call = self.call
        if call.first_chunk is None:
            call.first_chunk = now
            self.model = known_text(field(chunk, "model"))
            self.response_id = known_text(field(chunk, "id"))
        choices = field(chunk, "choices") or ()  # a hostile server's chunk may lack them (usage alone)
        hold = False
        for choice in choices:
            delta = choice.delta
            if delta is not None:
                # OpenAI-compatible servers stream reasoning text in fields the SDK keeps as extras.
                reasoning = reasoning_text(delta) if delta.__pydantic_extra__ else None
                if reasoning:
                    self.reasoning_chars += len(reasoning)
                    if self.reasoning_parts is not None:
                        self.reasoning_parts.append(reasoning)
                content = delta.content
                if content:
                    self.visible_chars += len(content)
                    if call.first_visible is None:
                        mark_tokens(call, now, True, len(content))
                    else:
                        call.last_token = now
                        if call.meter is not None:
                            call.meter.visible(len(content))
                    if self.answers is not None:
                        self.answers.add(choice.index, content)
                elif delta.tool_calls or field(delta, "refusal"):
                    chars = answer_chars(delta)
                    self.visible_chars += chars
                    mark_tokens(call, now, True, chars)
                elif reasoning:
                    mark_tokens(call, now, False, len(reasoning))
            reason = choice.finish_reason
            if isinstance(reason, str) and reason and type(choice.index) is int:
                self.finish_reasons[choice.index] = reason
                if call.hide_usage_chunk:
                    self.last_shown = chunk
                    hold = True
        usage = getattr(chunk, "usage", None)  # LiteLLM's chunks have it only when it is there
        extra = chunk.__pydantic_extra__
        if extra:
            if usage is None:  # Groq puts the usage of a stream on its last chunk's x_groq
                usage = field(extra.get("x_groq"), "usage")
            self.timings = extra.get("timings", self.timings)
            self.metrics = extra.get("metrics", self.metrics)
        if usage is not None:
            self.usage = usage
            if not choices and call.hide_usage_chunk:
                self._restore_last_chunk(extra)
                return True
            return False
        return HOLD if hold else False

    def _restore_last_chunk(self, hidden_extra: dict[str, Any] | None) -> None:
        """Without the usage chunk we asked for, llama.cpp puts its `timings` on the finishing chunk:
        give them back to it, so the caller's last chunk is what it would be without us."""
        timings = hidden_extra.get("timings") if hidden_extra else None
        shown = self.last_shown
        if timings is None or shown is None:
            return
        extra = shown.__pydantic_extra__
        if extra is not None and "timings" not in extra:
            extra["timings"] = timings

    def on_end(self) -> None:
        record = self.call.record
        record_reply_identity(record, self.model, self.response_id, self.finish_reasons)
        read_chat_usage(
            record, self.usage, self.timings, self.reasoning_chars, self.visible_chars, self.metrics, self.flavour
        )
        if self.reasoning_parts:
            self.call.reasoning_text = "".join(self.reasoning_parts)
        if self.answers is not None:
            self.answers.capture(record, self.finish_reasons)
