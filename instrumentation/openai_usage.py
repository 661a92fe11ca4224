"""Usage parsers for the OpenAI wire formats (also spoken by OpenAI-compatible servers)."""

from __future__ import annotations

from typing import Any

from thinkmeter.schemas.record import Source, Usage


def _known(source: Any, name: str) -> int | None:
    value = getattr(source, name, None) if source is not None else None
    return value if isinstance(value, int) else None


def _source(value: int | None) -> Source:
    return Source.REPORTED if value is not None else Source.UNKNOWN


def chat_usage(usage: Any) -> Usage:
    """Chat Completions `usage`: completion_tokens include reasoning; prompt_tokens include cached."""
    completion = usage.completion_tokens_details
    prompt = usage.prompt_tokens_details
    reasoning = _known(completion, "reasoning_tokens")
    output = _known(usage, "completion_tokens")
    return Usage(
        input_tokens=_known(usage, "prompt_tokens"),
        cache_read_tokens=_known(prompt, "cached_tokens"),
        cache_write_tokens=_known(prompt, "cache_write_tokens"),
        output_tokens=output,
        reasoning_tokens=reasoning,
        rejected_prediction_tokens=_known(completion, "rejected_prediction_tokens"),
        output_source=_source(output),
        reasoning_source=_source(reasoning),
    )


def responses_usage(usage: Any) -> Usage:
    """Responses `usage`: output_tokens include reasoning; input_tokens include cached."""
    output = usage.output_tokens_details
    prompt = usage.input_tokens_details
    reasoning = _known(output, "reasoning_tokens")
    output_tokens = _known(usage, "output_tokens")
    return Usage(
        input_tokens=_known(usage, "input_tokens"),
        cache_read_tokens=_known(prompt, "cached_tokens"),
        cache_write_tokens=_known(prompt, "cache_write_tokens"),
        output_tokens=output_tokens,
        reasoning_tokens=reasoning,
        output_source=_source(output_tokens),
        reasoning_source=_source(reasoning),
    )
