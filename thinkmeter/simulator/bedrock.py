"""Amazon Bedrock Runtime: `POST /model/{modelId}/converse`, `/converse-stream`, `/invoke` and
`/invoke-with-response-stream`.

Converse speaks one shape for every model: reasoning comes back as `reasoningContent` blocks
(`reasoningText` with text and signature, or `redactedContent` when the scenario hides it), and usage
as `inputTokens` (cache reads and writes left out) / `outputTokens` (reasoning included, never split
out) / `cacheReadInputTokens` / `cacheWriteInputTokens`. Invoke passes the model's native body
through: Anthropic Messages for `anthropic.*` models, Nova's own for `amazon.nova*` (the two families
simulated there), with Bedrock's invocation metrics in response headers, or, streamed, on the last
chunk.

Streams use AWS's binary event-stream framing (application/vnd.amazon.eventstream), built here from
AWS's documentation of the encoding: each message is a 12-byte prelude (total length, headers
length, CRC-32 of those 8 bytes; big-endian), headers (name length, name, value type 7 = string,
16-bit value length, value), the payload, and a CRC-32 of everything before it.
"""

from __future__ import annotations

import base64
import re
import struct
import zlib
from collections.abc import Iterator
from typing import Any

from . import anthropic
from .routes import Ask, BadRequest, Emit, Plan, Reply, Request, Route, dumps, optional_int
from .scenario import Scenario, answer_words, reasoning_words

EVENT_STREAM = "application/vnd.amazon.eventstream"
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "content_filter": "content_filtered"}
_ERROR_CODES = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    503: "ServiceUnavailableException",
}
_STRING_HEADER = 7
# anthropic.claude-*, and the cross-region inference profiles us.anthropic.claude-*, global.anthropic...
_ANTHROPIC = re.compile(r"(^|\.)anthropic\.")
_NOVA = re.compile(r"(^|\.)amazon\.nova")


def bedrock_error_body(status: int, message: str) -> dict[str, Any]:
    return {"code": _ERROR_CODES.get(status, "InternalServerException"), "message": message}


def event_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One message of AWS's event-stream encoding."""
    encoded = b"".join(
        struct.pack(">B", len(name)) + name + struct.pack(">BH", _STRING_HEADER, len(value)) + value
        for name, value in ((n.encode(), v.encode()) for n, v in headers.items())
    )
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def event(event_type: str, payload: dict[str, Any]) -> bytes:
    return event_message(
        {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}, dumps(payload)
    )


def _read(request: Request) -> Ask:
    operation = request.params["operation"]
    body = request.json()
    if operation.startswith("converse"):
        config = body.get("inferenceConfig") or {}
        if not isinstance(config, dict):
            raise BadRequest("inferenceConfig must be a JSON object")
        limit = optional_int(config, "maxTokens")
        prompt: Any = [body.get("system"), body.get("messages")]
    else:
        model = request.params["model"]
        if not (_ANTHROPIC.search(model) or _NOVA.search(model)):
            raise BadRequest("the simulator renders invoke bodies for anthropic.* and amazon.nova* models only; use converse")
        config = body.get("inferenceConfig") if _NOVA.search(model) else body
        limit = optional_int(config if isinstance(config, dict) else {}, "max_tokens", "maxTokens", "max_new_tokens")
        prompt = [body.get("system"), body.get("messages")]
    return Ask(model=request.params["model"], prompt=prompt, stream=operation.endswith("stream"), max_output_tokens=limit)


def _usage(scenario: Scenario) -> dict[str, int]:
    uncached = scenario.input_tokens - scenario.cached_input_tokens - scenario.cache_write_tokens
    return {
        "inputTokens": uncached,
        "outputTokens": scenario.output_tokens,
        "totalTokens": scenario.input_tokens + scenario.output_tokens,
        "cacheReadInputTokens": scenario.cached_input_tokens,
        "cacheWriteInputTokens": scenario.cache_write_tokens,
    }


def _latency_ms(scenario: Scenario, reply: Reply) -> int:
    return round(scenario.end_s * reply.time_scale * 1000)


def _signature(reply: Reply) -> str:
    return "sig_" + reply.id


def _redacted(reply: Reply) -> str:
    return base64.b64encode(b"redacted_" + reply.id.encode()).decode()


def _converse_body(reply: Reply) -> dict[str, Any]:
    scenario = reply.scenario
    content: list[dict[str, Any]] = []
    if scenario.reasoning_tokens:
        if scenario.reasoning_text == "hidden":
            content.append({"reasoningContent": {"redactedContent": _redacted(reply)}})
        else:
            text = "".join(reasoning_words(scenario.reasoning_text_tokens))
            content.append({"reasoningContent": {"reasoningText": {"text": text, "signature": _signature(reply)}}})
    if scenario.visible_tokens:
        content.append({"text": "".join(answer_words(scenario.visible_tokens))})
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": _STOP_REASONS[scenario.finish_reason],
        "usage": _usage(scenario),
        "metrics": {"latencyMs": _latency_ms(scenario, reply)},
    }


def _converse_events(reply: Reply) -> Iterator[Emit]:
    scenario = reply.scenario
    yield Emit(0.0, event("messageStart", {"role": "assistant"}))
    index = 0
    if scenario.reasoning_tokens:
        thought = scenario.first_visible_s
        if scenario.reasoning_text == "hidden":
            delta = {"reasoningContent": {"redactedContent": _redacted(reply)}}
            yield Emit(thought, event("contentBlockDelta", {"contentBlockIndex": index, "delta": delta}))
        else:
            for position, word in enumerate(reasoning_words(scenario.reasoning_text_tokens)):
                delta = {"reasoningContent": {"text": word}}
                yield Emit(scenario.reasoning_text_at(position), event("contentBlockDelta", {"contentBlockIndex": index, "delta": delta}))
            delta = {"reasoningContent": {"signature": _signature(reply)}}
            yield Emit(thought, event("contentBlockDelta", {"contentBlockIndex": index, "delta": delta}))
        yield Emit(thought, event("contentBlockStop", {"contentBlockIndex": index}))
        index += 1
    for position, word in enumerate(answer_words(scenario.visible_tokens)):
        yield Emit(scenario.visible_at(position), event("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": word}}), 1)
    end = scenario.end_s
    if scenario.visible_tokens:
        yield Emit(end, event("contentBlockStop", {"contentBlockIndex": index}))
    yield Emit(end, event("messageStop", {"stopReason": _STOP_REASONS[scenario.finish_reason]}))
    metadata = {"usage": _usage(scenario), "metrics": {"latencyMs": _latency_ms(scenario, reply)}}
    yield Emit(end, event("metadata", metadata))


def _invocation_metrics(reply: Reply) -> dict[str, int]:
    scenario = reply.scenario
    return {
        "inputTokenCount": scenario.input_tokens - scenario.cached_input_tokens - scenario.cache_write_tokens,
        "outputTokenCount": scenario.output_tokens,
        "invocationLatency": _latency_ms(scenario, reply),
        "firstByteLatency": round(scenario.prefill_s * reply.time_scale * 1000),
    }


def _nova_body(reply: Reply) -> dict[str, Any]:
    """Nova's native InvokeModel body: Converse's shape, its cache counts named *Count."""
    body = _converse_body(reply)
    usage = body["usage"]
    body["usage"] = {
        "inputTokens": usage["inputTokens"],
        "outputTokens": usage["outputTokens"],
        "totalTokens": usage["totalTokens"],
        "cacheReadInputTokenCount": usage["cacheReadInputTokens"],
        "cacheWriteInputTokenCount": usage["cacheWriteInputTokens"],
    }
    del body["metrics"]
    return body


def _nova_events(reply: Reply) -> Iterator[tuple[float, dict[str, Any], int]]:
    """Nova's native stream: Converse's events, each as a one-key object of its own."""
    scenario = reply.scenario
    yield 0.0, {"messageStart": {"role": "assistant"}}, 0
    for position, word in enumerate(answer_words(scenario.visible_tokens)):
        yield scenario.visible_at(position), {"contentBlockDelta": {"delta": {"text": word}, "contentBlockIndex": 0}}, 1
    end = scenario.end_s
    yield end, {"contentBlockStop": {"contentBlockIndex": 0}}, 0
    yield end, {"messageStop": {"stopReason": _STOP_REASONS[scenario.finish_reason]}}, 0
    yield end, {"metadata": {"usage": _nova_body(reply)["usage"]}}, 0


def _invoke_chunks(reply: Reply) -> Iterator[Emit]:
    claude = _ANTHROPIC.search(reply.model) is not None
    events = anthropic.message_events(reply) if claude else _nova_events(reply)
    for at_s, payload, visible in events:
        if payload.get("type") == "message_stop" or "metadata" in payload:
            payload = {**payload, "amazon-bedrock-invocationMetrics": _invocation_metrics(reply)}
        yield Emit(at_s, event("chunk", {"bytes": base64.b64encode(dumps(payload)).decode()}), visible)


def _render(request: Request, reply: Reply) -> Plan:
    operation = request.params["operation"]
    scenario = reply.scenario
    headers: tuple[tuple[str, str], ...] = (("x-amzn-requestid", reply.id),)
    if operation == "converse":
        body = dumps(_converse_body(reply))
        return Plan(stream=False, content_type="application/json", emits=[Emit(scenario.end_s, body, scenario.visible_tokens)], headers=headers)
    if operation == "converse-stream":
        return Plan(stream=True, content_type=EVENT_STREAM, emits=_converse_events(reply), headers=headers)
    if operation == "invoke":
        # InvokeModel reports Bedrock's invocation metrics in response headers.
        metrics = _invocation_metrics(reply)
        headers += (
            ("x-amzn-bedrock-input-token-count", str(metrics["inputTokenCount"])),
            ("x-amzn-bedrock-output-token-count", str(metrics["outputTokenCount"])),
            ("x-amzn-bedrock-invocation-latency", str(metrics["invocationLatency"])),
        )
        native = anthropic.message(reply, done=True) if _ANTHROPIC.search(reply.model) else _nova_body(reply)
        body = dumps(native)
        return Plan(stream=False, content_type="application/json", emits=[Emit(scenario.end_s, body, scenario.visible_tokens)], headers=headers)
    return Plan(stream=True, content_type=EVENT_STREAM, emits=_invoke_chunks(reply), headers=headers)


ROUTES = (
    Route(
        name="bedrock.runtime",
        method="POST",
        path=re.compile(r"/model/(?P<model>.+)/(?P<operation>converse|converse-stream|invoke|invoke-with-response-stream)"),
        read=_read,
        render=_render,
        error_body=bedrock_error_body,
        id_prefix="bedrock-",
    ),
)
