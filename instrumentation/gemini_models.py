"""Google GenAI models: generate_content and generate_content_stream, sync and async (chat sessions
go through them)."""

from __future__ import annotations

import time
from enum import Enum
from typing import Any

from pydantic import BaseModel

from thinkmeter.budgets.policy import ClassBudget, gemini_level
from thinkmeter.instrumentation._content import capture, capture_output, streamed_answers
from thinkmeter.instrumentation._endpoints import EndpointResolver
from thinkmeter.instrumentation._stream import record_reply_identity, traced
from thinkmeter.instrumentation._telemetry import Call, Telemetry, mark_tokens
from thinkmeter.instrumentation._values import field, known_text
from thinkmeter.instrumentation.gemini_content import answer_parts, input_messages
from thinkmeter.instrumentation.gemini_usage import gemini_usage
from thinkmeter.schemas import semconv as sc
from thinkmeter.schemas.record import CallRecord

OPERATION = "generate_content"


def _name(value: Any) -> str | None:
    """An SDK enum (or the string a caller or server gave for one) as a lower-case name."""
    text = known_text(value.value if isinstance(value, Enum) else value)
    return text.lower() if text else None


class GenerateContentSurface:
    """One surface per method kind: generate_content_stream is a stream whatever its arguments."""

    def __init__(self, telemetry: Telemetry, resolver: EndpointResolver, stream: bool) -> None:
        self.telemetry = telemetry
        self.resolver = resolver
        self.stream = stream

    def begin(self, instance: Any, kwargs: dict[str, Any]) -> Call:
        config = kwargs.get("config")
        thinking = field(config, "thinking_config")
        level = _name(field(thinking, "thinking_level"))
        budget = field(thinking, "thinking_budget")
        client = instance._api_client
        base_url = field(field(config, "http_options"), "base_url") or field(client._http_options, "base_url")
        endpoint = self.resolver.resolve(base_url, "gcp.vertex_ai" if client.vertexai else "gcp.gemini")
        record = CallRecord(
            operation=OPERATION,
            provider=endpoint.provider,
            engine=endpoint.engine,
            server_address=endpoint.address,
            server_port=endpoint.port,
            request_model=kwargs.get("model"),
            stream=self.stream,
            max_tokens=field(config, "max_output_tokens"),
            reasoning_level=None if level == "thinking_level_unspecified" else level,
            # -1 asks for a dynamic budget: no number to record.
            thinking_budget_tokens=budget if isinstance(budget, int) and budget >= 0 else None,
        )
        content = self.telemetry.capture_content
        if content is not None:
            contents, system = kwargs.get("contents"), field(config, "system_instruction")
            capture(record, sc.INPUT_MESSAGES, lambda: content.input_messages(input_messages(contents, system)))
        # The call starts here even for streams, whose request goes out on the first iteration.
        return Call(self.telemetry, record)

    def inject(self, record: CallRecord, kwargs: dict[str, Any], caps: ClassBudget) -> list[str]:
        """thinking_config.thinking_budget on Gemini 2.5, thinking_level on Gemini 3 (the class's
        reasoning_effort, else the level that covers its reasoning cap); other models are left alone.
        The caller's config object is copied, never changed."""
        model = kwargs.get("model")
        name = model.rsplit("/", 1)[-1] if isinstance(model, str) else ""
        config = kwargs.get("config")
        thinking = field(config, "thinking_config")
        if field(thinking, "thinking_budget") is not None or field(thinking, "thinking_level") is not None:
            return []
        if name.startswith("gemini-3"):
            if caps.reasoning_effort is None and caps.max_reasoning_tokens is None:
                return []
            knob, value = "thinking_level", caps.reasoning_effort or gemini_level(caps.max_reasoning_tokens or 0)
            record.reasoning_level = value
        elif name.startswith("gemini-2.5"):
            if caps.max_reasoning_tokens is None:
                return []
            knob, value = "thinking_budget", caps.max_reasoning_tokens
            record.thinking_budget_tokens = value
        else:
            return []
        kwargs["config"] = _with_thinking(config, thinking, knob, value)
        return [f"thinking_config.{knob}={value}"]

    def deliver(self, call: Call, result: Any, kwargs: dict[str, Any], is_async: bool) -> Any:
        if self.stream:
            return traced(result, GenerateContentStreamAccumulator(call), is_async)
        read_response(call.record, result)
        content = self.telemetry.capture_content
        if content is not None:
            capture_output(
                content, call.record, lambda: [(answer_parts(c.content), None, _name(c.finish_reason)) for c in result.candidates or ()]
            )
        call.finish()
        return result


def _with_thinking(config: Any, thinking: Any, knob: str, value: Any) -> Any:
    """A copy of a generate_content config (None, a dict or an SDK model) with one thinking setting added."""
    current = thinking.model_dump(exclude_none=True) if isinstance(thinking, BaseModel) else dict(thinking or {})
    if isinstance(config, BaseModel):
        from google.genai import types

        return config.model_copy(update={"thinking_config": types.ThinkingConfig(**{**current, knob: value})})
    return {**(config or {}), "thinking_config": {**current, knob: value}}


def _finish_reasons(candidates: Any) -> dict[int, str]:
    reasons = {}
    for candidate in candidates or ():
        reason = _name(candidate.finish_reason)
        if reason:
            reasons[candidate.index if type(candidate.index) is int else 0] = reason
    return reasons


def read_response(record: CallRecord, response: Any) -> None:
    record.response_model = known_text(field(response, "model_version"))
    record.response_id = known_text(field(response, "response_id"))
    reasons = _finish_reasons(response.candidates)
    if reasons:
        record.finish_reasons = tuple(reasons[i] for i in sorted(reasons))
    if response.usage_metadata is not None:
        record.usage = gemini_usage(response.usage_metadata)


class GenerateContentStreamAccumulator:
    """A part with thought=True and text marks reasoning; other text or a function call is visible.
    Each chunk's usage is the running total so far: the last one wins. The answer text is kept only
    while content capture is on, up to its limit."""

    __slots__ = ("answers", "call", "finish_reasons", "model", "response_id", "usage")

    def __init__(self, call: Call) -> None:
        self.call = call
        self.model: str | None = None
        self.response_id: str | None = None
        self.finish_reasons: dict[int, str] = {}
        self.usage: Any = None
        self.answers = streamed_answers(call.telemetry.capture_content)

    def on_item(self, chunk: Any) -> bool:
        now = time.perf_counter()
        call = self.call
        if call.first_chunk is None:
            call.first_chunk = now
        for candidate in chunk.candidates or ():
            content = candidate.content
            for part in (content.parts if content is not None else None) or ():
                text = part.text
                if text:
                    answer = not field(part, "thought")
                    mark_tokens(call, now, answer, len(text) if isinstance(text, str) else 0)
                    if answer and self.answers is not None and isinstance(text, str):
                        self.answers.add(candidate.index if type(candidate.index) is int else 0, text)
                elif part.function_call is not None:
                    mark_tokens(call, now, visible=True)
        self.finish_reasons.update(_finish_reasons(chunk.candidates))
        self.model = known_text(field(chunk, "model_version")) or self.model
        self.response_id = known_text(field(chunk, "response_id")) or self.response_id
        if chunk.usage_metadata is not None:
            self.usage = chunk.usage_metadata
            if call.meter is not None:  # a running total in every chunk: exact figures so far
                usage = gemini_usage(self.usage)
                call.meter.reported(usage.input_tokens, usage.reasoning_tokens, usage.output_tokens)
        return False

    def on_end(self) -> None:
        record = self.call.record
        record_reply_identity(record, self.model, self.response_id, self.finish_reasons)
        if self.usage is not None:
            record.usage = gemini_usage(self.usage)
        if self.answers is not None:
            self.answers.capture(record, self.finish_reasons)
