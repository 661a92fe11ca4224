"""Ollama's native API: `POST /api/chat` and `POST /api/generate`, one JSON body or an NDJSON stream.

Thinking text goes out only when the request sets `think` and the scenario does not hide it, and then
every reasoning token of it, one word each, spread over the thinking phase: Ollama returns raw thinking,
never a summary. Counts and durations come on the final
`done: true` object only; `eval_count` includes the thinking tokens, and nothing counts them apart.
Durations are nanoseconds: load = 10% and prompt evaluation = 90% of the prefill time, eval = the
rest of the reply.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from .routes import Ask, BadRequest, Emit, Plan, Reply, Request, Route, dumps
from .scenario import Scenario, answer_words, reasoning_words

_DONE_REASONS = {"stop": "stop", "length": "length", "content_filter": "stop"}
LOAD_SHARE_OF_PREFILL = 0.1
_NS = 1_000_000_000


def ollama_error_body(status: int, message: str) -> dict[str, Any]:
    return {"error": message}


def _chat(request: Request) -> bool:
    return request.path.endswith("/chat")


def _read(request: Request) -> Ask:
    body = request.json()
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise BadRequest("options must be a JSON object")
    num_predict = options.get("num_predict")
    if num_predict is not None and (not isinstance(num_predict, int) or isinstance(num_predict, bool)):
        raise BadRequest("options.num_predict must be an integer")
    return Ask(
        model=body.get("model"),
        prompt=body.get("messages") if _chat(request) else [body.get("system"), body.get("prompt")],
        stream=body.get("stream", True) is not False,  # Ollama streams unless told not to
        # num_predict -1 (or below): no limit
        max_output_tokens=num_predict if num_predict is not None and num_predict >= 0 else None,
    )


def durations(scenario: Scenario) -> dict[str, int]:
    """The nanosecond durations the final object carries."""
    load_s = scenario.prefill_s * LOAD_SHARE_OF_PREFILL
    return {
        "total_duration": round(scenario.end_s * _NS),
        "load_duration": round(load_s * _NS),
        "prompt_eval_duration": round((scenario.prefill_s - load_s) * _NS),
        "eval_duration": round((scenario.end_s - scenario.prefill_s) * _NS),
    }


def _render(request: Request, reply: Reply) -> Plan:
    scenario = reply.scenario
    chat = _chat(request)
    think = request.json().get("think")
    thinks = think not in (None, False) and scenario.reasoning_text != "hidden"
    thinking_count = scenario.reasoning_tokens if thinks else 0
    created_at = datetime.fromtimestamp(reply.arrival_unix, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    base = {"model": reply.model, "created_at": created_at}

    def part(content: str, thinking: str | None = None) -> dict[str, Any]:
        if chat:
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if thinking is not None:
                message["thinking"] = thinking
            return {**base, "message": message}
        fields: dict[str, Any] = {"response": content}
        if thinking is not None:
            fields["thinking"] = thinking
        return {**base, **fields}

    final = {
        "done": True,
        "done_reason": _DONE_REASONS[scenario.finish_reason],
        **durations(scenario),
        "prompt_eval_count": scenario.input_tokens,
        "eval_count": scenario.output_tokens,
    }
    if not chat:
        final["context"] = list(range(min(scenario.input_tokens + scenario.output_tokens, 64)))
    if not reply.ask.stream:
        thinking = "".join(reasoning_words(thinking_count)) if thinking_count else None
        body = {**part("".join(answer_words(scenario.visible_tokens)), thinking), **final}
        emits = [Emit(scenario.end_s, dumps(body), scenario.visible_tokens)]
        return Plan(stream=False, content_type="application/json", emits=emits)
    return Plan(stream=True, content_type="application/x-ndjson", emits=_lines(scenario, thinking_count, part, final))


def _lines(scenario: Scenario, thinking_count: int, part: Any, final: dict[str, Any]) -> Iterator[Emit]:
    for index, word in enumerate(reasoning_words(thinking_count)):
        at_s = scenario.prefill_s + scenario.thinking_s * index / thinking_count
        yield Emit(at_s, _line({**part("", word), "done": False}))
    for index, word in enumerate(answer_words(scenario.visible_tokens)):
        yield Emit(scenario.visible_at(index), _line({**part(word), "done": False}), 1)
    yield Emit(scenario.end_s, _line({**part(""), **final}))


def _line(value: dict[str, Any]) -> bytes:
    return dumps(value) + b"\n"


ROUTES = tuple(
    Route(name=f"ollama.{name}", method="POST", path=re.compile(f"/api/{name}"), read=_read, render=_render,
          error_body=ollama_error_body)
    for name in ("chat", "generate")
)
