"""Google GenAI models: generate_content and generate_content_stream, sync and async (chat sessions
go through them)."""

from __future__ import annotations

import time
from typing import Any

from thinkmeter.instrumentation._endpoints import EndpointResolver
from thinkmeter.instrumentation._stream import TracedAsyncStream, TracedStream
from thinkmeter.instrumentation._telemetry import Call, Telemetry, mark_tokens
from thinkmeter.instrumentation.gemini_usage import gemini_usage
from thinkmeter.schemas.record import CallRecord

OPERATION = "generate_content"


def _field(value: Any, name: str) -> Any:
    """A field of a config given as a pydantic object or as a plain dict."""
    if value is None:
        return None
    return value.get(name) if isinstance(value, dict) else getattr(value, name, None)


def _name(value: Any) -> str | None:
    """An SDK enum (or the string a caller passed for one) as a lower-case name."""
    if value is None:
        return None
    return str(getattr(value, "value", value)).lower()


class GenerateContentSurface:
    """One surface per method kind: generate_content_stream is a stream whatever its arguments."""

    def __init__(self, telemetry: Telemetry, resolver: EndpointResolver, stream: bool) -> None:
        self.telemetry = telemetry
        self.resolver = resolver
        self.stream = stream

    def begin(self, instance: Any, kwargs: dict[str, Any]) -> Call:
        config = kwargs.get("config")
        thinking = _field(config, "thinking_config")
        level = _name(_field(thinking, "thinking_level"))
        budget = _field(thinking, "thinking_budget")
        client = instance._api_client
        base_url = _field(_field(config, "http_options"), "base_url") or client._http_options.base_url
        endpoint = self.resolver.resolve(base_url, "gcp.vertex_ai" if client.vertexai else "gcp.gemini")
        record = CallRecord(
            operation=OPERATION,
            provider=endpoint.provider,
            engine=endpoint.engine,
            server_address=endpoint.address,
            server_port=endpoint.port,
            request_model=kwargs.get("model"),
            stream=self.stream,
            max_tokens=_field(config, "max_output_tokens"),
            reasoning_level=None if level == "thinking_level_unspecified" else level,
            # -1 asks for a dynamic budget: no number to record.
            thinking_budget_tokens=budget if isinstance(budget, int) and budget >= 0 else None,
        )
        # The call starts here even for streams, whose request goes out on the first iteration.
        return Call(self.telemetry, record)

    def deliver(self, call: Call, result: Any, kwargs: dict[str, Any], is_async: bool) -> Any:
        if self.stream:
            accumulator = GenerateContentStreamAccumulator(call)
            return TracedAsyncStream(result, accumulator) if is_async else TracedStream(result, accumulator)
        read_response(call.record, result)
        call.finish()
        return result


def _finish_reasons(candidates: Any) -> dict[int, str]:
    return {c.index or 0: _name(c.finish_reason) for c in candidates or () if c.finish_reason is not None}


def read_response(record: CallRecord, response: Any) -> None:
    record.response_model = response.model_version
    record.response_id = response.response_id
    reasons = _finish_reasons(response.candidates)
    if reasons:
        record.finish_reasons = tuple(reasons[i] for i in sorted(reasons))
    if response.usage_metadata is not None:
        record.usage = gemini_usage(response.usage_metadata)


class GenerateContentStreamAccumulator:
    """A part with thought=True and text marks reasoning; other text or a function call is visible.
    Each chunk's usage is the running total so far: the last one wins."""

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
        for candidate in chunk.candidates or ():
            content = candidate.content
            for part in (content.parts if content is not None else None) or ():
                if part.text:
                    mark_tokens(call, now, visible=not part.thought)
                elif part.function_call is not None:
                    mark_tokens(call, now, visible=True)
        self.finish_reasons.update(_finish_reasons(chunk.candidates))
        self.model = chunk.model_version or self.model
        self.response_id = chunk.response_id or self.response_id
        if chunk.usage_metadata is not None:
            self.usage = chunk.usage_metadata
        return False

    def on_end(self) -> None:
        record = self.call.record
        record.response_model = self.model
        record.response_id = self.response_id
        if self.finish_reasons:
            record.finish_reasons = tuple(self.finish_reasons[i] for i in sorted(self.finish_reasons))
        if self.usage is not None:
            record.usage = gemini_usage(self.usage)
