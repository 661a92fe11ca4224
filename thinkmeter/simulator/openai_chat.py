"""OpenAI Chat Completions (`POST /v1/chat/completions`), plus the reasoning-text field of
OpenAI-compatible servers (vLLM, DeepSeek, SGLang) when `SimOptions.reasoning_field` is set, and their
usage dialects when `SimOptions.chat_flavour` is:

- "deepseek": `prompt_cache_hit_tokens` / `prompt_cache_miss_tokens` instead of prompt_tokens_details;
- "xai": completion_tokens leave reasoning out (total_tokens = prompt + completion + reasoning);
- "groq": usage carries queue/prompt/completion/total times (seconds); a stream carries its usage only
  in the last content chunk's `x_groq.usage`, whatever stream_options say;
- "openrouter": usage carries the billed `cost` (see `openrouter_cost`); a stream always ends with it;
- "llama.cpp": bare usage counts plus a `timings` object (prompt_n, cache_n, predicted_n, *_ms);
- "mistral": Mistral's own dialect, rendered by simulator/mistral.py.

A scenario with `reasoning_reported=False` leaves the reasoning count out (SGLang, older vLLM).

OpenAI itself never streams reasoning text here: thinking shows only as a long wait between the role
chunk and the first content delta.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from . import mistral
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


# What the simulated OpenRouter bills, USD per input token and per output token.
OPENROUTER_USD_PER_TOKEN = (0.5e-6, 2e-6)


def openrouter_cost(scenario: Scenario) -> float:
    input_price, output_price = OPENROUTER_USD_PER_TOKEN
    return scenario.input_tokens * input_price + scenario.output_tokens * output_price


def _usage(scenario: Scenario, flavour: str) -> dict[str, Any]:
    if flavour == "llama.cpp":
        total = scenario.input_tokens + scenario.output_tokens
        return {"prompt_tokens": scenario.input_tokens, "completion_tokens": scenario.output_tokens, "total_tokens": total}
    usage = _openai_usage(scenario)
    if not scenario.reasoning_reported:
        del usage["completion_tokens_details"]["reasoning_tokens"]
    if flavour == "deepseek":
        del usage["prompt_tokens_details"]
        usage["prompt_cache_hit_tokens"] = scenario.cached_input_tokens
        usage["prompt_cache_miss_tokens"] = scenario.input_tokens - scenario.cached_input_tokens
    elif flavour == "xai":
        usage["completion_tokens"] = scenario.visible_tokens
    elif flavour == "groq":
        usage.update(
            queue_time=0.0,
            prompt_time=scenario.prefill_s,
            completion_time=scenario.end_s - scenario.prefill_s,
            total_time=scenario.end_s,
        )
    elif flavour == "openrouter":
        usage["cost"] = openrouter_cost(scenario)
    return usage


def _llama_cpp_timings(scenario: Scenario) -> dict[str, Any]:
    return {
        "cache_n": scenario.cached_input_tokens,
        "prompt_n": scenario.input_tokens - scenario.cached_input_tokens,
        "prompt_ms": scenario.prefill_s * 1000,
        "predicted_n": scenario.output_tokens,
        "predicted_ms": (scenario.end_s - scenario.prefill_s) * 1000,
    }


def _openai_usage(scenario: Scenario) -> dict[str, Any]:
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
    if request.options.chat_flavour == "mistral":
        return mistral.render(reply)
    scenario = reply.scenario
    reasoning_field = request.options.reasoning_field
    reasoning_count = scenario.reasoning_text_tokens if reasoning_field else 0
    flavour = request.options.chat_flavour
    if reply.ask.stream:
        stream_options = request.json().get("stream_options") or {}
        include_usage = bool(stream_options.get("include_usage"))
        chunks = _chunks(reply, reasoning_field, reasoning_count, include_usage, flavour)
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
        "usage": _usage(scenario, flavour),
        "service_tier": "default",
        "system_fingerprint": None,
    }
    if flavour == "llama.cpp":
        body["timings"] = _llama_cpp_timings(scenario)
    return Plan(
        stream=False,
        content_type="application/json",
        emits=[Emit(scenario.end_s, dumps(body), scenario.visible_tokens)],
    )


def _chunks(
    reply: Reply, reasoning_field: str | None, reasoning_count: int, include_usage: bool, flavour: str
) -> Iterator[Emit]:
    scenario = reply.scenario
    usage_chunk = (include_usage or flavour == "openrouter") and flavour != "groq"
    base: dict[str, Any] = {
        "id": reply.id,
        "object": "chat.completion.chunk",
        "created": int(reply.arrival_unix),
        "model": reply.model,
        "service_tier": "default",
        "system_fingerprint": None,
    }
    if usage_chunk:
        base["usage"] = None  # every chunk but the last carries a null usage

    def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return sse({**base, "choices": [choice], **extra})

    yield Emit(scenario.prefill_s, chunk({"role": "assistant", "content": "", "refusal": None}))
    if reasoning_field:
        for index, word in enumerate(reasoning_words(reasoning_count)):
            yield Emit(scenario.reasoning_text_at(index), chunk({reasoning_field: word}))
    for index, word in enumerate(answer_words(scenario.visible_tokens)):
        yield Emit(scenario.visible_at(index), chunk({"content": word}), 1)
    last: dict[str, Any] = {}
    if flavour == "groq":
        last["x_groq"] = {"id": f"req_{reply.id}", "usage": _usage(scenario, flavour)}
    elif flavour == "llama.cpp":
        last["timings"] = _llama_cpp_timings(scenario)
    yield Emit(scenario.end_s, chunk({}, scenario.finish_reason, **last))
    if usage_chunk:
        yield Emit(scenario.end_s, sse({**base, "choices": [], "usage": _usage(scenario, flavour)}))
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
