"""OpenAI Responses: `POST /v1/responses` and `GET /v1/responses/{id}` (retrieve, or resume the event
stream with `?stream=true&starting_after=N`).

The event stream is a pure function of the recorded reply, so a resumed stream replays it against the
original deadlines: events already due arrive at once, the rest at their scheduled times.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from .openai_chat import openai_error_body
from .routes import Ask, BadRequest, Emit, Plan, Reply, Request, Route, dumps, optional_int, sse
from .scenario import Scenario, answer_words, reasoning_words

_INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _read_create(request: Request) -> Ask:
    body = request.json()
    return Ask(
        model=body.get("model"),
        prompt=[body.get("instructions"), body.get("input")],
        stream=bool(body.get("stream")),
        max_output_tokens=optional_int(body, "max_output_tokens"),
    )


def _read_retrieve(request: Request) -> Ask:
    return Ask(resume_id=request.params["response_id"], stream=request.query.get("stream") == "true")


def _render(request: Request, reply: Reply) -> Plan:
    stream = reply.ask.stream if request.method == "POST" else request.query.get("stream") == "true"
    if not stream:
        body = _response(reply, _final_status(reply.scenario), _output(reply, done=True))
        return Plan(
            stream=False,
            content_type="application/json",
            emits=[Emit(reply.scenario.end_s, dumps(body), reply.scenario.visible_tokens)],
        )
    try:
        starting_after = int(request.query.get("starting_after", -1))
    except ValueError:
        raise BadRequest("starting_after must be an integer") from None
    return Plan(stream=True, content_type="text/event-stream", emits=_events(reply, starting_after))


def _final_status(scenario: Scenario) -> str:
    return "completed" if scenario.finish_reason == "stop" else "incomplete"


def _ids(reply: Reply) -> tuple[str, str]:
    suffix = reply.id.removeprefix("resp_")
    return "rs_" + suffix, "msg_" + suffix


def _reasoning_item(reply: Reply, *, done: bool) -> dict[str, Any]:
    scenario = reply.scenario
    item: dict[str, Any] = {"id": _ids(reply)[0], "type": "reasoning", "summary": []}
    if not done:
        return item
    text = "".join(reasoning_words(scenario.reasoning_text_tokens))
    if scenario.reasoning_text == "summary":
        item["summary"] = [{"type": "summary_text", "text": text}]
    elif scenario.reasoning_text == "raw":
        item["content"] = [{"type": "reasoning_text", "text": text}]
    return item


def _output_text(reply: Reply, *, done: bool) -> dict[str, Any]:
    text = "".join(answer_words(reply.scenario.visible_tokens)) if done else ""
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message_item(reply: Reply, *, done: bool) -> dict[str, Any]:
    status = _final_status(reply.scenario) if done else "in_progress"
    content = [_output_text(reply, done=True)] if done else []
    return {"id": _ids(reply)[1], "type": "message", "status": status, "role": "assistant", "content": content}


def _output(reply: Reply, *, done: bool) -> list[dict[str, Any]]:
    output = []
    if reply.scenario.reasoning_tokens:
        output.append(_reasoning_item(reply, done=done))
    if reply.scenario.visible_tokens:
        output.append(_message_item(reply, done=done))
    return output


def _usage(scenario: Scenario) -> dict[str, Any]:
    return {
        "input_tokens": scenario.input_tokens,
        "input_tokens_details": {
            "cached_tokens": scenario.cached_input_tokens,
            "cache_write_tokens": scenario.cache_write_tokens,
        },
        "output_tokens": scenario.output_tokens,
        "output_tokens_details": {"reasoning_tokens": scenario.reasoning_tokens},
        "total_tokens": scenario.input_tokens + scenario.output_tokens,
    }


def _response(reply: Reply, status: str, output: list[dict[str, Any]]) -> dict[str, Any]:
    scenario = reply.scenario
    finished = status != "in_progress"
    incomplete = _INCOMPLETE_REASONS.get(scenario.finish_reason) if finished else None
    return {
        "id": reply.id,
        "object": "response",
        "created_at": int(reply.arrival_unix),
        "completed_at": int(reply.arrival_unix + reply.end_wall_s) if status == "completed" else None,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "instructions": None,
        "max_output_tokens": reply.ask.max_output_tokens,
        "model": reply.model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": _usage(scenario) if finished else None,
        "user": None,
        "metadata": {},
    }


_Timed = tuple[float, dict[str, Any], int]  # (simulated seconds, event, visible tokens carried)


def _events(reply: Reply, starting_after: int = -1) -> Iterator[Emit]:
    """The full event stream, numbered from 0; events up to `starting_after` are skipped."""
    for sequence, (at_s, event, visible) in enumerate(_timeline(reply)):
        if sequence > starting_after:
            event["sequence_number"] = sequence
            yield Emit(at_s, sse(event, event["type"]), visible)


def _event(at_s: float, kind: str, visible: int = 0, /, **fields: Any) -> _Timed:
    return at_s, {"type": "response." + kind, **fields}, visible


def _timeline(reply: Reply) -> Iterator[_Timed]:
    scenario = reply.scenario
    start, thought, end = scenario.prefill_s, scenario.first_visible_s, scenario.end_s
    snapshot = _response(reply, "in_progress", [])
    yield _event(start, "created", response=snapshot)
    yield _event(start, "in_progress", response=snapshot)
    index = 0
    if scenario.reasoning_tokens:
        yield from _reasoning_events(reply, index)
        index += 1
    if scenario.visible_tokens:
        where: dict[str, Any] = {"item_id": _ids(reply)[1], "output_index": index, "content_index": 0}
        yield _event(thought, "output_item.added", output_index=index, item=_message_item(reply, done=False))
        yield _event(thought, "content_part.added", **where, part=_output_text(reply, done=False))
        for position, word in enumerate(answer_words(scenario.visible_tokens)):
            yield _event(scenario.visible_at(position), "output_text.delta", 1, **where, delta=word, logprobs=[])
        done_text = _output_text(reply, done=True)
        yield _event(end, "output_text.done", **where, text=done_text["text"], logprobs=[])
        yield _event(end, "content_part.done", **where, part=done_text)
        yield _event(end, "output_item.done", output_index=index, item=_message_item(reply, done=True))
    status = _final_status(scenario)
    yield _event(end, status, response=_response(reply, status, _output(reply, done=True)))


def _reasoning_events(reply: Reply, index: int) -> Iterator[_Timed]:
    scenario = reply.scenario
    start, thought = scenario.prefill_s, scenario.first_visible_s
    yield _event(start, "output_item.added", output_index=index, item=_reasoning_item(reply, done=False))
    count = scenario.reasoning_text_tokens
    text = "".join(reasoning_words(count))
    item_id = _ids(reply)[0]
    if scenario.reasoning_text == "summary" and count:
        where: dict[str, Any] = {"item_id": item_id, "output_index": index, "summary_index": 0}
        yield _event(start, "reasoning_summary_part.added", **where, part={"type": "summary_text", "text": ""})
        for position, word in enumerate(reasoning_words(count)):
            yield _event(scenario.reasoning_text_at(position), "reasoning_summary_text.delta", **where, delta=word)
        yield _event(thought, "reasoning_summary_text.done", **where, text=text)
        yield _event(thought, "reasoning_summary_part.done", **where, part={"type": "summary_text", "text": text})
    elif scenario.reasoning_text == "raw" and count:
        where = {"item_id": item_id, "output_index": index, "content_index": 0}
        yield _event(start, "content_part.added", **where, part={"type": "reasoning_text", "text": ""})
        for position, word in enumerate(reasoning_words(count)):
            yield _event(scenario.reasoning_text_at(position), "reasoning_text.delta", **where, delta=word)
        yield _event(thought, "reasoning_text.done", **where, text=text)
        yield _event(thought, "content_part.done", **where, part={"type": "reasoning_text", "text": text})
    yield _event(thought, "output_item.done", output_index=index, item=_reasoning_item(reply, done=True))


ROUTES = (
    Route(
        name="openai.responses",
        method="POST",
        path=re.compile(r"/v1/responses"),
        read=_read_create,
        render=_render,
        error_body=openai_error_body,
        id_prefix="resp_",
    ),
    Route(
        name="openai.responses",
        method="GET",
        path=re.compile(r"/v1/responses/(?P<response_id>[^/]+)"),
        read=_read_retrieve,
        render=_render,
        error_body=openai_error_body,
    ),
)
