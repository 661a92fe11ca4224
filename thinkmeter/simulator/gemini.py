"""Gemini API `POST /v1beta/models/{model}:generateContent` and `:streamGenerateContent?alt=sse` (also
under `/v1/`, google-genai 3.x's default, and Vertex AI's `/v1beta1/[projects/P/locations/L/]publishers/
google/models/...`, which speaks the same body).

Thought summaries come back as parts with `"thought": true`, only when the request sets
`thinkingConfig.includeThoughts` (as the API does) and the scenario does not hide them. Gemini counts
thoughts outside `candidatesTokenCount`, leaves zero counts out of `usageMetadata`, and streams a
running total of the usage in every chunk.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from .routes import Ask, BadRequest, Emit, Plan, Reply, Request, Route, dumps, optional_int, sse
from .scenario import Scenario, answer_words, reasoning_words

_FINISH_REASONS = {"stop": "STOP", "length": "MAX_TOKENS", "content_filter": "SAFETY"}
_ERROR_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def gemini_error_body(status: int, message: str) -> dict[str, Any]:
    return {"error": {"code": status, "message": message, "status": _ERROR_STATUSES.get(status, "INTERNAL")}}


def _config(request: Request) -> dict[str, Any]:
    config = request.json().get("generationConfig") or {}
    if not isinstance(config, dict):
        raise BadRequest("generationConfig must be a JSON object")
    return config


def _read(request: Request) -> Ask:
    stream = request.params["method"] == "streamGenerateContent"
    if stream and request.query.get("alt") != "sse":
        raise BadRequest("the simulator streams server-sent events only: add ?alt=sse")
    body = request.json()
    thinking = _config(request).get("thinkingConfig") or {}
    budget = optional_int(thinking, "thinkingBudget", "thinking_budget") if isinstance(thinking, dict) else None
    return Ask(
        model=request.params["model"],
        prompt=[body.get("systemInstruction"), body.get("contents")],
        stream=stream,
        max_output_tokens=optional_int(_config(request), "maxOutputTokens"),
        thinking_budget=budget if budget is not None and budget >= 0 else None,  # -1: dynamic
    )


def _thought_count(request: Request, scenario: Scenario) -> int:
    """How many thought-summary parts go out."""
    thinking = _config(request).get("thinkingConfig") or {}
    # Proto JSON takes either spelling; google-genai 3.x sends this one in snake_case.
    include = thinking.get("includeThoughts", thinking.get("include_thoughts"))
    return scenario.reasoning_text_tokens if include else 0


def _usage(scenario: Scenario, thoughts: int, candidates: int) -> dict[str, Any]:
    """Running totals; zero counts are left out, as the API does (and the thoughts count too when the
    scenario does not report reasoning). The total always includes the thoughts."""
    usage: dict[str, Any] = {"promptTokenCount": scenario.input_tokens}
    if candidates:
        usage["candidatesTokenCount"] = candidates
    if thoughts and scenario.reasoning_reported:
        usage["thoughtsTokenCount"] = thoughts
    if scenario.cached_input_tokens:
        usage["cachedContentTokenCount"] = scenario.cached_input_tokens
    usage["totalTokenCount"] = scenario.input_tokens + thoughts + candidates
    return usage


def _response(reply: Reply, parts: list[dict[str, Any]], usage: dict[str, Any], finished: bool) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finished:
        candidate["finishReason"] = _FINISH_REASONS[reply.scenario.finish_reason]
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": reply.model, "responseId": reply.id}


def _render(request: Request, reply: Reply) -> Plan:
    scenario = reply.scenario
    thoughts = _thought_count(request, scenario)
    if reply.ask.stream:
        return Plan(stream=True, content_type="text/event-stream", emits=_chunks(reply, thoughts))
    parts = []
    if thoughts:
        parts.append({"text": "".join(reasoning_words(thoughts)), "thought": True})
    if scenario.visible_tokens:
        parts.append({"text": "".join(answer_words(scenario.visible_tokens))})
    body = _response(reply, parts, _usage(scenario, scenario.reasoning_tokens, scenario.visible_tokens), True)
    return Plan(stream=False, content_type="application/json", emits=[Emit(scenario.end_s, dumps(body), scenario.visible_tokens)])


def _chunks(reply: Reply, thought_parts: int) -> Iterator[Emit]:
    scenario = reply.scenario
    reasoning = scenario.reasoning_tokens
    for index, word in enumerate(reasoning_words(thought_parts)):
        usage = _usage(scenario, reasoning * (index + 1) // thought_parts, 0)
        chunk = _response(reply, [{"text": word, "thought": True}], usage, False)
        yield Emit(scenario.reasoning_text_at(index), sse(chunk))
    last = scenario.visible_tokens - 1
    for index, word in enumerate(answer_words(scenario.visible_tokens)):
        chunk = _response(reply, [{"text": word}], _usage(scenario, reasoning, index + 1), index == last)
        yield Emit(scenario.visible_at(index), sse(chunk), 1)
    if not scenario.visible_tokens:
        yield Emit(scenario.end_s, sse(_response(reply, [], _usage(scenario, reasoning, 0), True)))


ROUTES = (
    Route(
        name="gemini.generate_content",
        method="POST",
        path=re.compile(
            r"/(?:v1|v1beta|v1beta1)/(?:projects/[^/]+/locations/[^/]+/)?(?:publishers/google/)?"
            r"models/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent)"
        ),
        read=_read,
        render=_render,
        error_body=gemini_error_body,
        id_prefix="gem-",
    ),
)
