"""OpenAI Responses: create / parse / stream() / retrieve(stream=True), sync and async."""

from __future__ import annotations

import time
from typing import Any

from thinkmeter.budgets.policy import ClassBudget
from thinkmeter.instrumentation._budget import set_absent
from thinkmeter.instrumentation._content import ContentCapture, capture_input, capture_output
from thinkmeter.instrumentation._endpoints import EndpointResolver
from thinkmeter.instrumentation._patch import given
from thinkmeter.instrumentation._stainless import deliver_raw, raw_response_mode, start_call
from thinkmeter.instrumentation._stream import traced
from thinkmeter.instrumentation._telemetry import Call, Telemetry, mark_tokens
from thinkmeter.instrumentation._values import field, known_text
from thinkmeter.instrumentation._estimate import estimate_missing_reasoning
from thinkmeter.instrumentation.openai_usage import read_llama_cpp_timings, read_reported_cost, responses_usage
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

    def inject(self, record: CallRecord, kwargs: dict[str, Any], caps: ClassBudget) -> list[str]:
        """max_output_tokens (reasoning included) and reasoning.effort."""
        injected: list[str] = []
        cap = caps.output_cap
        if cap is not None and set_absent(kwargs, "max_output_tokens", cap, injected):
            record.max_tokens = cap
        effort = caps.reasoning_effort
        reasoning = given(kwargs.get("reasoning"))
        if effort is not None and (reasoning is None or (isinstance(reasoning, dict) and reasoning.get("effort") is None)):
            kwargs["reasoning"] = {**(reasoning or {}), "effort": effort}
            injected.append(f"reasoning.effort={effort}")
            record.reasoning_level = effort
        return injected

    def deliver(self, call: Call, result: Any, kwargs: dict[str, Any], is_async: bool) -> Any:
        mode = raw_response_mode(kwargs)
        if mode is not None:
            return deliver_raw(call, result, mode, read_response)
        if call.record.stream:
            return traced(result, ResponsesStreamAccumulator(call), is_async)
        reasoning = read_response(call.record, result)
        if call.engine_origin is not None:
            call.reasoning_text = reasoning
        capture_response_output(self.telemetry.capture_content, call.record, result)
        call.finish()
        return result


class ResumedStreamSurface(ResponsesSurface):
    """`responses.retrieve(id, stream=True)`: resuming a stream by response id. Plain retrieves of a
    stored response are no new LLM call and stay untraced."""

    def inject(self, record: CallRecord, kwargs: dict[str, Any], caps: ClassBudget) -> list[str]:
        return []  # a resumed reply was asked for already

    def begin(self, instance: Any, kwargs: dict[str, Any]) -> Call | None:
        if not given(kwargs.get("stream")):
            return None
        return start_call(self.telemetry, self.resolver, instance, CallRecord(operation="chat", provider="", stream=True))


def read_response(record: CallRecord, response: Any) -> str:
    """Read a response into the record; returns the raw reasoning text it carried (empty when none)."""
    record.response_model = known_text(response.model)
    record.response_id = known_text(response.id)
    reason = known_text(field(response.incomplete_details, "reason"))
    status = known_text(response.status)
    if reason or status not in (None, "queued", "in_progress"):
        record.finish_reasons = (reason or status,)
    if response.usage is None:
        return ""
    record.usage = responses_usage(response.usage)
    read_reported_cost(record, response.usage)
    reasoning, visible = _output_text(response.output)
    # Engines that return their raw reasoning (llama.cpp) count none of it apart.
    estimate_missing_reasoning(record.usage, len(reasoning), visible)
    return reasoning


def _output_text(output: Any) -> tuple[str, int]:
    """The raw reasoning text of a response's reasoning items, and the characters of its answer."""
    reasoning = ""
    visible = 0
    for item in output if isinstance(output, list) else ():
        kind = field(item, "type")
        if kind == "reasoning":
            for part in field(item, "content") or ():
                if field(part, "type") == "reasoning_text":
                    reasoning += known_text(field(part, "text")) or ""
        elif kind == "message":
            for part in field(item, "content") or ():
                visible += len(known_text(field(part, "text")) or known_text(field(part, "refusal")) or "")
        elif kind == "function_call":
            visible += len(known_text(field(item, "arguments")) or "")
    return reasoning, visible


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
    __slots__ = ("call", "response", "timings")

    def __init__(self, call: Call) -> None:
        self.call = call
        self.response: Any = None
        self.timings: Any = None  # llama.cpp's server timings, on its response.completed event

    def on_item(self, event: Any) -> bool:
        now = time.perf_counter()
        call = self.call
        if call.first_chunk is None:
            call.first_chunk = now
        kind = event.type
        if kind in VISIBLE_DELTAS:
            if event.delta:
                mark_tokens(call, now, True, len(event.delta))
        elif kind in REASONING_DELTAS:
            if event.delta:
                mark_tokens(call, now, False, len(event.delta))
        elif kind in CARRY_RESPONSE:
            self.response = event.response
            extra = event.__pydantic_extra__
            if extra:
                self.timings = extra.get("timings", self.timings)
        return False

    def on_end(self) -> None:
        call = self.call
        if self.response is not None:
            reasoning = read_response(call.record, self.response)
            if call.engine_origin is not None:
                call.reasoning_text = reasoning
            read_llama_cpp_timings(call.record, self.timings)
            capture_response_output(call.telemetry.capture_content, call.record, self.response)
