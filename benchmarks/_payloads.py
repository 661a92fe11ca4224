"""Canned provider replies for the benchmarks: realistic bodies, built once, served in-process."""

from __future__ import annotations

import json
from typing import Any

WORDS = ("The", " answer", " is", " four", ",", " because", " two", " plus", " two", " makes", " four", ".")


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _chat_usage(output: int) -> dict[str, Any]:
    return {
        "prompt_tokens": 1200,
        "completion_tokens": output,
        "total_tokens": 1200 + output,
        "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": output // 2,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def chat_completion(model: str) -> bytes:
    body = {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_760_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(WORDS), "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _chat_usage(400),
        "service_tier": "default",
        "system_fingerprint": None,
    }
    return json.dumps(body).encode()


def chat_stream(model: str, chunks: int) -> bytes:
    """A role chunk, `chunks` content chunks, a finish chunk, the usage chunk and [DONE]."""
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1_760_000_000, "model": model,
            "service_tier": "default", "system_fingerprint": None, "usage": None}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _sse({**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]})

    parts = [chunk({"role": "assistant", "content": "", "refusal": None})]
    parts += [chunk({"content": WORDS[i % len(WORDS)]}) for i in range(chunks)]
    parts.append(chunk({}, "stop"))
    parts.append(_sse({**base, "choices": [], "usage": _chat_usage(2 * chunks)}))
    parts.append(b"data: [DONE]\n\n")
    return b"".join(parts)


def _responses_usage(output: int) -> dict[str, Any]:
    return {
        "input_tokens": 1200,
        "input_tokens_details": {"cached_tokens": 1024},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": output // 2},
        "total_tokens": 1200 + output,
    }


def _response(model: str, status: str, output_tokens: int | None) -> dict[str, Any]:
    done = status == "completed"
    output: list[dict[str, Any]] = []
    if done:
        output = [
            {"id": "rs_bench", "type": "reasoning", "summary": []},
            {
                "id": "msg_bench",
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "".join(WORDS), "annotations": [], "logprobs": []}],
            },
        ]
    return {
        "id": "resp_bench",
        "object": "response",
        "created_at": 1_760_000_000,
        "status": status,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "temperature": 1.0,
        "top_p": 1.0,
        "reasoning": {"effort": "medium", "summary": None},
        "incomplete_details": None,
        "error": None,
        "instructions": None,
        "metadata": {},
        "text": {"format": {"type": "text"}},
        "truncation": "disabled",
        "usage": _responses_usage(output_tokens) if output_tokens is not None else None,
    }


def response(model: str) -> bytes:
    return json.dumps(_response(model, "completed", 400)).encode()


def responses_stream(model: str, chunks: int) -> bytes:
    seq = iter(range(1_000_000))
    parts = [
        _sse({"type": "response.created", "sequence_number": next(seq), "response": _response(model, "in_progress", None)},
             "response.created")
    ]
    for i in range(chunks):
        event = {"type": "response.output_text.delta", "sequence_number": next(seq), "item_id": "msg_bench",
                 "output_index": 1, "content_index": 0, "delta": WORDS[i % len(WORDS)], "logprobs": []}
        parts.append(_sse(event, "response.output_text.delta"))
    parts.append(_sse({"type": "response.completed", "sequence_number": next(seq),
                       "response": _response(model, "completed", 2 * chunks)}, "response.completed"))
    return b"".join(parts)


def anthropic_message(model: str) -> bytes:
    body = {
        "id": "msg_bench",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [
            {"type": "thinking", "thinking": "Two plus two.", "signature": "sig"},
            {"type": "text", "text": "".join(WORDS)},
        ],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 176, "cache_read_input_tokens": 1024, "cache_creation_input_tokens": 0,
                  "output_tokens": 400},
    }
    return json.dumps(body).encode()


def anthropic_stream(model: str, chunks: int) -> bytes:
    start = json.loads(anthropic_message(model))
    start.update(content=[], stop_reason=None, usage={"input_tokens": 176, "cache_read_input_tokens": 1024,
                                                      "cache_creation_input_tokens": 0, "output_tokens": 1})
    parts = [_sse({"type": "message_start", "message": start}, "message_start"),
             _sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                  "content_block_start")]
    for i in range(chunks):
        parts.append(_sse({"type": "content_block_delta", "index": 0,
                           "delta": {"type": "text_delta", "text": WORDS[i % len(WORDS)]}}, "content_block_delta"))
    parts.append(_sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
    parts.append(_sse({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                       "usage": {"output_tokens": 2 * chunks}}, "message_delta"))
    parts.append(_sse({"type": "message_stop"}, "message_stop"))
    return b"".join(parts)
