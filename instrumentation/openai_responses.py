"""OpenAI Responses: create / parse / stream() / retrieve(stream=True), sync and async."""

from __future__ import annotations

import time
from typing import Any

from thinkmeter.instrumentation._content import ContentCapture, capture_input, capture_output
from thinkmeter.instrumentation._endpoints import EndpointResolver
from thinkmeter.instrumentation._patch import given
from thinkmeter.instrumentation._stainless import deliver_raw, raw_response_mode, start_call
from thinkmeter.instrumentation._stream import traced
from thinkmeter.instrumentation._telemetry import Call, Telemetry, mark_tokens
from thinkmeter.instrumentation._values import field, known_text
from thinkmeter.instrumentation.openai_usage import read_reported_cost, responses_usage
from thinkmeter.schemas.record import CallRecord

REASONING_DELTAS = frozenset({"response.reasoning_summary_text.delta", "response.reasoning_text.delta"})
# Tool-call arguments are generated, non-reasoning output: they count as visible.
VISIBLE_DELTAS = frozenset(
    {
        "response.output_text.delta",
        "response.refusal.delta",
        "response.function_call_arguments.delta",
        "response.custom_tool_call_input.delta",
    }
)
CARRY_RESPONSE = frozenset({"response.created", "response.completed", "response.incomplete", "response.failed"})


class ResponsesSurface:
    def __init__(self, telemetry: Telemetry, resolver: EndpointResolver) -> None:
        self.telemetry = telemetry
        self.resolver = resolver

    def begin(self, instance: Any, kwargs: dict[str, Any]) -> Call:
        reasoning = given(kwargs.get("reasoning")) or {}
        record = CallRecord(
            operation="chat",
            provider="",
            request_model=given(kwargs.get("model")),
            stream=bool(given(kwargs.get("stream"))),
            max_tokens=given(kwargs.get("max_output_tokens")),
            reasoning_level=reasoning.get("effort") if isinstance(reasoning, dict) else None,
        )
        capture_input(self.telemetry.capture_content, record, given(kwargs.get("input")), given(kwargs.get("instructions")))
        return start_call(self.telemetry, self.resolver, instance, record)

    def deliver(self, call: Call, result: Any, kwargs: dict[str, Any], is_async: bool) -> Any:
        mode = raw_response_mode(kwargs)
        if mode is not None:
            return deliver_raw(call, result, mode, read_response)
        if call.record.stream:
            return traced(result, ResponsesStreamAccumulator(call), is_async)
        read_response(call.record, result)
        capture_response_output(self.telemetry.capture_content, call.record, result)
        call.finish()
        return result


class ResumedStreamSurface(ResponsesSurface):
    """`responses.retrieve(id, stream=True)`: resuming a stream by response id. Plain retrieves of a
    stored response are no new LLM call and stay untraced."""

    def begin(self, instance: Any, kwargs: dict[str, Any]) -> Call | None:
        if not given(kwargs.get("stream")):
            return None
        return start_call(self.telemetry, self.resolver, instance, CallRecord(operation="chat", provider="", stream=True))


def read_response(record: CallRecord, response: Any) -> None:
    record.response_model = known_text(response.model)
    record.response_id = known_text(response.id)
    reason = known_text(field(response.incomplete_details, "reason"))
    status = known_text(response.status)
    if reason or status not in (None, "queued", "in_progress"):
        record.finish_reasons = (reason or status,)
    if response.usage is not None:
        record.usage = responses_usage(response.usage)
        read_reported_cost(record, response.usage)


def capture_response_output(content: ContentCapture | None, record: CallRecord, response: Any) -> None:
    """gen_ai.output.messages of a Responses reply: its message items (text, refusals) and tool calls."""
    if content is None:
        return
    finish = record.finish_reasons[0] if record.finish_reasons else None
    capture_output(
        content,
        record,
        lambda: [
            (item.content, None, finish) if item.type == "message" else (None, [item], finish)
            for item in response.output or ()
            if item.type in ("message", "function_call")
        ],
    )


class ResponsesStreamAccumulator:
    __slots__ = ("call", "response")

    def __init__(self, call: Call) -> None:
        self.call = call
        self.response: Any = None

    def on_item(self, event: Any) -> bool:
        now = time.perf_counter()
        call = self.call
        if call.first_chunk is None:
            call.first_chunk = now
        kind = event.type
        if kind in VISIBLE_DELTAS:
            if event.delta:
                mark_tokens(call, now, visible=True)
        elif kind in REASONING_DELTAS:
            if event.delta:
                mark_tokens(call, now, visible=False)
        elif kind in CARRY_RESPONSE:
            self.response = event.response
        return False

    def on_end(self) -> None:
        if self.response is not None:
            read_response(self.call.record, self.response)
            capture_response_output(self.call.telemetry.capture_content, self.call.record, self.response)
