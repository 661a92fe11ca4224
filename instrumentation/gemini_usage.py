"""Usage parser for Gemini's `usageMetadata` (google-genai, Gemini API and Vertex AI)."""

from __future__ import annotations

from typing import Any

from thinkmeter.instrumentation._values import count
from thinkmeter.schemas.record import Source, Usage


def gemini_usage(metadata: Any) -> Usage:
    """Gemini counts thoughts outside the candidates: output = candidates + thoughts, reasoning =
    thoughts. Input = prompt (cached content included) + tool-use prompt, as the total counts them.

    The API leaves zero counts out, so when candidates or thoughts are missing the output is
    recovered exactly as total - input, and a missing thoughts count as that minus candidates
    (both marked derived).
    """
    prompt = count(metadata, "prompt_token_count")
    input_tokens = None if prompt is None else prompt + (count(metadata, "tool_use_prompt_token_count") or 0)
    total = count(metadata, "total_token_count")
    candidates = count(metadata, "candidates_token_count")
    thoughts = count(metadata, "thoughts_token_count")
    usage = Usage(
        input_tokens=input_tokens,
        cache_read_tokens=count(metadata, "cached_content_token_count"),
        reasoning_tokens=thoughts,
        reasoning_source=Source.REPORTED if thoughts is not None else Source.UNKNOWN,
    )
    if candidates is not None and thoughts is not None:
        usage.output_tokens, usage.output_source = candidates + thoughts, Source.REPORTED
        return usage
    if total is None or input_tokens is None or total < input_tokens:
        return usage
    generated = total - input_tokens
    usage.output_tokens, usage.output_source = generated, Source.DERIVED
    if thoughts is None and (candidates is not None or generated == 0) and generated >= (candidates or 0):
        usage.reasoning_tokens, usage.reasoning_source = generated - (candidates or 0), Source.DERIVED
    return usage
