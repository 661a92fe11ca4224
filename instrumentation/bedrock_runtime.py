"""Amazon Bedrock Runtime through botocore: Converse / ConverseStream for every model, InvokeModel /
InvokeModelWithResponseStream with the model's native body (read for Claude, whose body is Anthropic's
Messages format; any other model gets Bedrock's invocation-metrics counts).

Replies are plain dicts; streams are botocore EventStreams, replaced in the reply by a traced proxy.
"""

from __future__ import annotations

import io
import json
import re
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from thinkmeter.instrumentation._endpoints import EndpointResolver
from thinkmeter.instrumentation._stream import traced
from thinkmeter.instrumentation._telemetry import Call, Telemetry, mark_tokens
from thinkmeter.instrumentation._values import field, known_text, number
from thinkmeter.instrumentation.anthropic_messages import MessagesStreamAccumulator, read_message
from thinkmeter.instrumentation.bedrock_usage import INPUT_COUNT_HEADER, OUTPUT_COUNT_HEADER, converse_usage, invocation_usage
from thinkmeter.schemas import semconv as sc
from thinkmeter.schemas.record import CallRecord

PROVIDER = "aws.bedrock"
# Claude's model ids, cross-region inference profiles included (us.anthropic.claude-..., global.anthropic...).
CLAUDE = re.compile(r"(^|[.:/])anthropic\.")
# The key of Bedrock's own counts on the last chunk of an InvokeModelWithResponseStream reply.
INVOCATION_METRICS = "amazon-bedrock-invocationMetrics"
_INVOCATION_METRICS_BYTES = INVOCATION_METRICS.encode()


@dataclass(frozen=True, slots=True)
class Modeled:
    """Which Converse fields the installed botocore parses (it drops fields its model lacks)."""

    cache: bool = True
    reasoning: bool = True


class BedrockSurface:
    """One per operation: `stream` and `converse` say which reply shape comes back."""

    def __init__(self, telemetry: Telemetry, resolver: EndpointResolver, *, converse: bool, stream: bool) -> None:
        self.telemetry = telemetry
        self.resolver = resolver
        self.converse = converse
        self.stream = stream
        self.modeled: Modeled | None = None  # learnt from the first client's service model

    def _learn_model(self, instance: Any) -> None:
        """What this botocore reads off Converse replies: older ones (1.35) drop the cache counts and
        reasoningContent blocks, which then are unknown rather than absent."""
        if self.modeled is None:
            model = instance._service_model
            self.modeled = Modeled(
                cache="cacheReadInputTokens" in model.shape_for("TokenUsage").members,
                reasoning="reasoningContent" in model.shape_for("ContentBlock").members,
            )

    def begin(self, instance: Any, kwargs: dict[str, Any]) -> Call:
        params = kwargs["api_params"]
        endpoint = self.resolver.resolve(instance.meta.endpoint_url, PROVIDER)
        record = CallRecord(
            operation="chat",
            **endpoint.record_fields(),
            request_model=known_text(field(params, "modelId")),
            stream=self.stream,
        )
        if self.converse:
            _read_converse_request(record, params)
            self._learn_model(instance)
        return Call(self.telemetry, record)

    def deliver(self, call: Call, result: Any, kwargs: dict[str, Any], is_async: bool) -> Any:
        record = call.record
        record.response_id = known_text(field(field(result, "ResponseMetadata"), "RequestId"))
        claude = bool(record.request_model and CLAUDE.search(record.request_model))
        if self.converse and self.stream:
            result["stream"] = traced(result["stream"], ConverseStreamAccumulator(call, self.modeled or Modeled()), is_async)
            return result
        if self.stream:
            result["body"] = traced(result["body"], InvokeStreamAccumulator(call, claude), is_async)
            return result
        if self.converse:
            read_converse(record, result, self.modeled or Modeled())
        else:
            _read_invoke(call, result, claude)
        call.finish()
        return result


def _read_converse_request(record: CallRecord, params: Any) -> None:
    record.max_tokens = field(field(params, "inferenceConfig"), "maxTokens")
    extra = field(params, "additionalModelRequestFields")
    # Claude: thinking (older docs: reasoning_config) with a budget; Nova: reasoningConfig with an
    # effort; gpt-oss: reasoning_effort.
    for name in ("thinking", "reasoning_config"):
        thinking = field(extra, name)
        if field(thinking, "type") == "enabled":
            record.thinking_budget_tokens = field(thinking, "budget_tokens")
    level = field(field(extra, "reasoningConfig"), "maxReasoningEffort") or field(extra, "reasoning_effort")
    record.reasoning_level = known_text(level)


def _content_shape(content: Any) -> tuple[bool | None, int]:
    """(whether a reasoningContent block came back, characters of answer text and tool input);
    (None, 0) for content that cannot be read."""
    thought, visible = False, 0
    try:
        for block in content or ():
            if "reasoningContent" in block:
                thought = True
            elif "text" in block:
                visible += len(block["text"])
            elif "toolUse" in block:
                visible += len(json.dumps(field(block["toolUse"], "input"), separators=(",", ":"), default=str))
    except (TypeError, ValueError):
        return None, 0
    return thought, visible


def _latency(record: CallRecord, metrics: Any) -> None:
    """Converse's metrics.latencyMs: the time Bedrock spent on the call."""
    latency_ms = number(metrics, "latencyMs")
    if latency_ms is not None:
        record.attributes[sc.SERVER_TOTAL_TIME] = latency_ms / 1000


def read_converse(record: CallRecord, reply: Any, modeled: Modeled) -> None:
    reason = known_text(field(reply, "stopReason"))
    if reason:
        record.finish_reasons = (reason,)
    thought, visible_chars = _content_shape(field(field(field(reply, "output"), "message"), "content"))
    usage = field(reply, "usage")
    if usage is not None:
        record.usage = converse_usage(usage, thought if modeled.reasoning else None, visible_chars, modeled.cache)
    _latency(record, field(reply, "metrics"))


def _read_invoke(call: Call, reply: dict[str, Any], claude: bool) -> None:
    """Claude's body is read (and put back, as a body the caller reads the same way); any other
    model's is left unread and the counts come from Bedrock's response headers."""
    from botocore.response import StreamingBody  # imported by botocore itself by now

    record = call.record
    if claude:
        body = reply["body"]
        try:
            data = body.read()
        except Exception as error:
            reply["body"] = StreamingBody(_Failed(error), None)  # the caller's read fails as it would have
            record.error_type = type(error).__qualname__
            return
        reply["body"] = StreamingBody(io.BytesIO(data), len(data))
        read_message(record, json.loads(data, object_hook=_namespace))
        # Bedrock bills the model id asked for (a regional or global inference profile), which the
        # body's Anthropic model name cannot tell apart: that id is the model of the call.
        record.response_model = None
    if record.usage.output_tokens is None:
        headers = field(field(reply, "ResponseMetadata"), "HTTPHeaders")
        record.usage = invocation_usage(field(headers, INPUT_COUNT_HEADER), field(headers, OUTPUT_COUNT_HEADER))


def _namespace(values: dict[str, Any]) -> SimpleNamespace:
    """A JSON object read as attributes, as the anthropic SDK's models are (its readers expect those)."""
    return SimpleNamespace(**values)


class _Failed(io.RawIOBase):
    """A body whose read raises the error that reading the real one raised."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        raise self.error


class ConverseStreamAccumulator:
    """reasoningContent deltas with text are reasoning tokens (redacted ones only say reasoning
    happened); text and tool-input deltas are visible. messageStop carries the stop reason, the
    closing metadata event the usage."""

    __slots__ = ("call", "metrics", "modeled", "stop_reason", "thought", "usage", "visible_chars")

    def __init__(self, call: Call, modeled: Modeled) -> None:
        self.call = call
        self.modeled = modeled
        self.stop_reason: str | None = None
        self.usage: Any = None
        self.metrics: Any = None
        self.thought = False
        self.visible_chars = 0

    def on_item(self, event: Any) -> bool:
        now = time.perf_counter()
        call = self.call
        if call.first_chunk is None:
            call.first_chunk = now
        block = event.get("contentBlockDelta")
        if block is not None:
            delta = block["delta"]
            text = delta.get("text")
            if text and isinstance(text, str):
                self.visible_chars += len(text)
                mark_tokens(call, now, True, len(text))
            elif "reasoningContent" in delta:
                self.thought = True
                thought = delta["reasoningContent"].get("text")
                if thought:
                    mark_tokens(call, now, False, len(thought) if isinstance(thought, str) else 0)
            elif "toolUse" in delta:
                tool_input = delta["toolUse"].get("input")
                if tool_input and isinstance(tool_input, str):
                    self.visible_chars += len(tool_input)
                    mark_tokens(call, now, True, len(tool_input))
            return False
        if "messageStop" in event:
            self.stop_reason = known_text(field(event["messageStop"], "stopReason"))
        elif "metadata" in event:
            self.usage = field(event["metadata"], "usage")
            self.metrics = field(event["metadata"], "metrics")
        return False

    def on_end(self) -> None:
        record = self.call.record
        if self.stop_reason:
            record.finish_reasons = (self.stop_reason,)
        if self.usage is not None:
            modeled = self.modeled
            thought = self.thought if modeled.reasoning else None
            record.usage = converse_usage(self.usage, thought, self.visible_chars, modeled.cache)
        _latency(record, self.metrics)


class InvokeStreamAccumulator:
    """Each event is {"chunk": {"bytes": <the model's own stream event, JSON>}}. Claude's events are
    Anthropic's, read by the anthropic accumulator; for any model the last chunk carries Bedrock's
    invocation metrics, which give the counts when the body has none."""

    __slots__ = ("call", "messages", "metrics")

    def __init__(self, call: Call, claude: bool) -> None:
        self.call = call
        self.messages = MessagesStreamAccumulator(call) if claude else None
        self.metrics: Any = None

    def on_item(self, event: Any) -> bool:
        call = self.call
        if call.first_chunk is None:
            call.first_chunk = time.perf_counter()
        data = event["chunk"]["bytes"]
        if self.messages is not None:
            payload = json.loads(data, object_hook=_namespace)
            self.messages.on_item(payload)
        elif _INVOCATION_METRICS_BYTES in data:  # only the last chunk is parsed
            payload = json.loads(data, object_hook=_namespace)
        else:
            return False
        metrics = getattr(payload, INVOCATION_METRICS, None)
        if metrics is not None:
            self.metrics = metrics
        return False

    def on_end(self) -> None:
        record = self.call.record
        if self.messages is not None:
            self.messages.on_end()
            record.response_model = None  # as for InvokeModel: the model id asked for is billed
        if record.usage.output_tokens is None and self.metrics is not None:
            record.usage = invocation_usage(field(self.metrics, "inputTokenCount"), field(self.metrics, "outputTokenCount"))
