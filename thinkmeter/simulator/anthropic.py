"""Anthropic Messages (`POST /v1/messages`), JSON or server-sent events.

Thinking comes back as a `thinking` block (summary or raw text, then a signature), or as a
`redacted_thinking` block with no text when the scenario hides it. Like the API, the stream opens
with `message_start` (input counts) as soon as the headers are out, before any token, and ends with
`message_delta` carrying the cumulative usage.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from .routes import Ask, Emit, Plan, Reply, Request, Route, dumps, optional_int, sse
from .scenario import Scenario, answer_words, reasoning_words

_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "content_filter": "refusal"}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def anthropic_error_body(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": _ERROR_TYPES.get(status, "api_error"), "message": message}}


def _read(request: Request) -> Ask:
    body = request.json()
    thinking = body.get("thinking") or {}
    enabled = isinstance(thinking, dict) and thinking.get("type") == "enabled"
    return Ask(
        model=body.get("model"),
        prompt=[body.get("system"), body.get("messages")],
        stream=bool(body.get("stream")),
        max_output_tokens=optional_int(body, "max_tokens"),
        thinking_budget=optional_int(thinking, "budget_tokens") if enabled else None,
    )


def _usage(scenario: Scenario, *, final: bool) -> dict[str, Any]:
    """Anthropic's input_tokens leave out cache reads and writes. The stream's first usage counts a
    token of output, as the API's does; the final one replaces it (it is cumulative, never added)."""
    usage: dict[str, Any] = {
        "input_tokens": scenario.input_tokens - scenario.cached_input_tokens - scenario.cache_write_tokens,
        "cache_creation_input_tokens": scenario.cache_write_tokens,
        "cache_read_input_tokens": scenario.cached_input_tokens,
        "output_tokens": scenario.output_tokens if final else 1,
    }
    if final and scenario.reasoning_reported:
        usage["output_tokens_details"] = {"thinking_tokens": scenario.reasoning_tokens}
    return usage


def _signature(reply: Reply) -> str:
    return "sig_" + reply.id


def _thinking_block(reply: Reply, *, done: bool) -> dict[str, Any] | None:
    scenario = reply.scenario
    if not scenario.reasoning_tokens:
        return None
    if scenario.reasoning_text == "hidden":
        return {"type": "redacted_thinking", "data": "redacted_" + reply.id}
    text = "".join(reasoning_words(scenario.reasoning_text_tokens)) if done else ""
    return {"type": "thinking", "thinking": text, "signature": _signature(reply) if done else ""}


def _message(reply: Reply, *, done: bool) -> dict[str, Any]:
    scenario = reply.scenario
    content: list[dict[str, Any]] = []
    if done:
        thinking = _thinking_block(reply, done=True)
        if thinking is not None:
            content.append(thinking)
        if scenario.visible_tokens:
            content.append({"type": "text", "text": "".join(answer_words(scenario.visible_tokens)), "citations": None})
    return {
        "id": reply.id,
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": content,
        "stop_reason": _STOP_REASONS[scenario.finish_reason] if done else None,
        "stop_sequence": None,
        "usage": _usage(scenario, final=done),
    }


def _render(request: Request, reply: Reply) -> Plan:
    if reply.ask.stream:
        return Plan(stream=True, content_type="text/event-stream", emits=_events(reply))
    scenario = reply.scenario
    return Plan(stream=False, content_type="application/json", emits=[Emit(scenario.end_s, dumps(_message(reply, done=True)), scenario.visible_tokens)])


def _event(data: dict[str, Any]) -> bytes:
    return sse(data, data["type"])


def _events(reply: Reply) -> Iterator[Emit]:
    scenario = reply.scenario
    yield Emit(0.0, _event({"type": "message_start", "message": _message(reply, done=False)}))
    yield Emit(0.0, _event({"type": "ping"}))
    index = 0
    thinking = _thinking_block(reply, done=False)
    if thinking is not None:
        yield from _thinking_events(reply, thinking, index)
        index += 1
    if scenario.visible_tokens:
        start = scenario.first_visible_s
        yield Emit(start, _event({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": "", "citations": None}}))
        for position, word in enumerate(answer_words(scenario.visible_tokens)):
            delta = {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": word}}
            yield Emit(scenario.visible_at(position), _event(delta), 1)
        yield Emit(scenario.end_s, _event({"type": "content_block_stop", "index": index}))
    end = scenario.end_s
    delta = {"stop_reason": _STOP_REASONS[scenario.finish_reason], "stop_sequence": None}
    yield Emit(end, _event({"type": "message_delta", "delta": delta, "usage": _usage(scenario, final=True)}))
    yield Emit(end, _event({"type": "message_stop"}))


def _thinking_events(reply: Reply, block: dict[str, Any], index: int) -> Iterator[Emit]:
    scenario = reply.scenario
    thought = scenario.first_visible_s
    if block["type"] == "redacted_thinking":
        # Opaque data, no text: the block only shows that reasoning happened, once it is over.
        yield Emit(thought, _event({"type": "content_block_start", "index": index, "content_block": block}))
        yield Emit(thought, _event({"type": "content_block_stop", "index": index}))
        return
    yield Emit(scenario.prefill_s, _event({"type": "content_block_start", "index": index, "content_block": block}))
    for position, word in enumerate(reasoning_words(scenario.reasoning_text_tokens)):
        delta = {"type": "content_block_delta", "index": index, "delta": {"type": "thinking_delta", "thinking": word}}
        yield Emit(scenario.reasoning_text_at(position), _event(delta))
    signature = {"type": "content_block_delta", "index": index, "delta": {"type": "signature_delta", "signature": _signature(reply)}}
    yield Emit(thought, _event(signature))
    yield Emit(thought, _event({"type": "content_block_stop", "index": index}))


ROUTES = (
    Route(
        name="anthropic.messages",
        method="POST",
        path=re.compile(r"/v1/messages"),
        read=_read,
        render=_render,
        error_body=anthropic_error_body,
        id_prefix="msg_",
    ),
)
