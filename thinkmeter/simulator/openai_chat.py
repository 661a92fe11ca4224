"""OpenAI Chat Completions (`POST /v1/chat/completions`), plus the reasoning-text field of
OpenAI-compatible servers (vLLM, DeepSeek, SGLang) when `SimOptions.reasoning_field` is set.

OpenAI itself never streams reasoning text here: thinking shows only as a long wait between the role
chunk and the first content delta.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from .routes import Ask, Emit, Plan, Reply, Request, Route, dumps, optional_int, sse
from .scenario import Scenario, answer_words, reasoning_words

_ERROR_KINDS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


def openai_error_body(status: int, message: str) -> dict[str, Any]:
    kind, code = _ERROR_KINDS.get(status, ("server_error", None))
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _read(request: Request) -> Ask:
    body = request.json()
    return Ask(
        model=body.get("model"),
        prompt=body.get("messages"),
        stream=bool(body.get("stream")),
        max_output_tokens=optional_int(body, "max_completion_tokens", "max_tokens"),
    )


def _usage(scenario: Scenario) -> dict[str, Any]:
    return {
        "prompt_tokens": scenario.input_tokens,
        "completion_tokens": scenario.output_tokens,
        "total_tokens": scenario.input_tokens + scenario.output_tokens,
        "prompt_tokens_details": {
            "cached_tokens": scenario.cached_input_tokens,
            "cache_write_tokens": scenario.cache_write_tokens,
            "audio_tokens": 0,
        },
        "completion_tokens_details": {
            "reasoning_tokens": scenario.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _render(request: Request, reply: Reply) -> Plan:
    scenario = reply.scenario
    reasoning_field = request.options.reasoning_field
    reasoning_count = scenario.reasoning_text_tokens if reasoning_field else 0
    if reply.ask.stream:
        stream_options = request.json().get("stream_options") or {}
        chunks = _chunks(reply, reasoning_field, reasoning_count, bool(stream_options.get("include_usage")))
        return Plan(stream=True, content_type="text/event-stream", emits=chunks)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(answer_words(scenario.visible_tokens)),
        "refusal": None,
        "annotations": [],
    }
    if reasoning_field and reasoning_count:
        message[reasoning_field] = "".join(reasoning_words(reasoning_count))
    body = {
        "id": reply.id,
        "object": "chat.completion",
        "created": int(reply.arrival_unix),
        "model": reply.model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": scenario.finish_reason}],
        "usage": _usage(scenario),
        "service_tier": "default",
        "system_fingerprint": None,
    }
    return Plan(stream=False, content_type="application/json", emits=[Emit(scenario.end_s, dumps(body), scenario.visible_tokens)])


def _chunks(reply: Reply, reasoning_field: str | None, reasoning_count: int, include_usage: bool) -> Iterator[Emit]:
    scenario = reply.scenario
    base: dict[str, Any] = {
        "id": reply.id,
        "object": "chat.completion.chunk",
        "created": int(reply.arrival_unix),
        "model": reply.model,
        "service_tier": "default",
        "system_fingerprint": None,
    }
    if include_usage:
        base["usage"] = None  # every chunk but the last carries a null usage

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return sse({**base, "choices": [choice]})

    yield Emit(scenario.prefill_s, chunk({"role": "assistant", "content": "", "refusal": None}))
    if reasoning_field:
        for index, word in enumerate(reasoning_words(reasoning_count)):
            yield Emit(scenario.reasoning_text_at(index), chunk({reasoning_field: word}))
    for index, word in enumerate(answer_words(scenario.visible_tokens)):
        yield Emit(scenario.visible_at(index), chunk({"content": word}), 1)
    yield Emit(scenario.end_s, chunk({}, scenario.finish_reason))
    if include_usage:
        yield Emit(scenario.end_s, sse({**base, "choices": [], "usage": _usage(scenario)}))
    yield Emit(scenario.end_s, b"data: [DONE]\n\n")


ROUTES = (
    Route(
        name="openai.chat",
        method="POST",
        path=re.compile(r"/v1/chat/completions"),
        read=_read,
        render=_render,
        error_body=openai_error_body,
        id_prefix="chatcmpl-",
    ),
)
