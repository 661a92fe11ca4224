"""Usage parser for Mistral's chat completions: OpenAI's usage shape, with no reasoning count.

Magistral returns its raw reasoning (every token, never a summary) as `thinking` chunks in the
message content, so reasoning is estimated from that text, at most the output; no thinking chunk
means no reasoning, exactly.
"""

from __future__ import annotations

from typing import Any

from thinkmeter.instrumentation._estimate import estimate_reasoning_from_text
from thinkmeter.instrumentation._values import field
from thinkmeter.instrumentation.openai_usage import chat_usage
from thinkmeter.schemas.record import Source, Usage


def content_sizes(content: Any) -> tuple[int, int]:
    """(reasoning characters, answer characters) of a message's or a delta's content: a string, or a
    list of chunks where `thinking` chunks hold the reasoning as a list of text chunks."""
    if isinstance(content, str):
        return 0, len(content)
    reasoning = visible = 0
    for chunk in content or ():
        kind = field(chunk, "type")
        if kind == "thinking":
            for part in field(chunk, "thinking") or ():
                text = field(part, "text")
                reasoning += len(text) if isinstance(text, str) else 0
        elif kind == "text":
            text = field(chunk, "text")
            visible += len(text) if isinstance(text, str) else 0
    return reasoning, visible


def mistral_usage(usage: Any, reasoning_chars: int) -> Usage:
    counted = chat_usage(usage)
    if counted.output_tokens is not None and counted.reasoning_tokens is None:
        if reasoning_chars:
            estimate_reasoning_from_text(counted, reasoning_chars)
        else:
            counted.reasoning_tokens, counted.reasoning_source = 0, Source.DERIVED
    return counted
