"""Mistral's chat completions (`POST /v1/chat/completions` with `SimOptions(chat_flavour="mistral")`):
OpenAI's shape, except that Magistral's reasoning comes as `thinking` chunks in the message content
(raw reasoning text, every token of it: scenarios for it say reasoning_text="raw") and that the usage
counts no reasoning apart. A stream's last content chunk carries the usage, whatever was asked.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .routes import Emit, Plan, Reply, dumps, sse
from .scenario import Scenario, answer_words, reasoning_words


def _usage(scenario: Scenario) -> dict[str, int]:
    return {
        "prompt_tokens": scenario.input_tokens,
        "completion_tokens": scenario.output_tokens,
        "total_tokens": scenario.input_tokens + scenario.output_tokens,
    }


def _thinking(text: str) -> dict[str, Any]:
    return {"type": "thinking", "thinking": [{"type": "text", "text": text}]}


def render(reply: Reply) -> Plan:
    scenario = reply.scenario
    base = {"id": reply.id, "object": "chat.completion", "created": int(reply.arrival_unix), "model": reply.model}
    if reply.ask.stream:
        return Plan(stream=True, content_type="text/event-stream", emits=_chunks(reply, {**base, "object": "chat.completion.chunk"}))
    answer = "".join(answer_words(scenario.visible_tokens))
    content: Any = answer
    if scenario.reasoning_text_tokens:
        content = [_thinking("".join(reasoning_words(scenario.reasoning_text_tokens))), {"type": "text", "text": answer}]
    message = {"role": "assistant", "content": content, "tool_calls": None, "prefix": False}
    body = {**base, "choices": [{"index": 0, "message": message, "finish_reason": scenario.finish_reason}], "usage": _usage(scenario)}
    return Plan(stream=False, content_type="application/json", emits=[Emit(scenario.end_s, dumps(body), scenario.visible_tokens)])


def _chunks(reply: Reply, base: dict[str, Any]) -> Iterator[Emit]:
    scenario = reply.scenario

    def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> bytes:
        return sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}], **extra})

    yield Emit(scenario.prefill_s, chunk({"role": "assistant", "content": ""}))
    for index, word in enumerate(reasoning_words(scenario.reasoning_text_tokens)):
        yield Emit(scenario.reasoning_text_at(index), chunk({"content": [_thinking(word)]}))
    for index, word in enumerate(answer_words(scenario.visible_tokens)):
        yield Emit(scenario.visible_at(index), chunk({"content": word}), 1)
    yield Emit(scenario.end_s, chunk({"content": ""}, scenario.finish_reason, usage=_usage(scenario)))
    yield Emit(scenario.end_s, b"data: [DONE]\n\n")
