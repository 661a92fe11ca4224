"""Usage parsers for Amazon Bedrock Runtime: Converse's `usage`, and the invocation metrics Bedrock
adds to InvokeModel replies of any model (response headers, or the last chunk of a stream)."""

from __future__ import annotations

from typing import Any

from thinkmeter.instrumentation._estimate import reasoning_from_blocks
from thinkmeter.instrumentation._values import count
from thinkmeter.schemas.record import Source, Usage

# InvokeModel's response headers with Bedrock's own counts (botocore lower-cases header names).
INPUT_COUNT_HEADER = "x-amzn-bedrock-input-token-count"
OUTPUT_COUNT_HEADER = "x-amzn-bedrock-output-token-count"


def converse_usage(usage: Any, thought: bool | None, visible_chars: int, cache_readable: bool = True) -> Usage:
    """Converse `usage`: inputTokens leave cache reads and writes out, so input is the three added;
    outputTokens include reasoning, which Bedrock never counts apart: it is 0 when no reasoningContent
    block came back (`thought`), else output minus an estimate of the visible text.

    `cache_readable` False: this botocore predates the cache counts and drops them from the reply,
    so the input, which includes them, is unknown (never just inputTokens)."""
    uncached = count(usage, "inputTokens") if cache_readable else None
    cache_read = count(usage, "cacheReadInputTokens")
    cache_write = count(usage, "cacheWriteInputTokens")
    output = count(usage, "outputTokens")
    counted = Usage(
        input_tokens=None if uncached is None else uncached + (cache_read or 0) + (cache_write or 0),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        output_tokens=output,
        output_source=Source.REPORTED if output is not None else Source.UNKNOWN,
    )
    reasoning_from_blocks(counted, thought, visible_chars)
    return counted


def invocation_usage(input_count: Any, output_count: Any) -> Usage:
    """Bedrock's invocation metrics (any model): input and output counts only; reasoning unknown."""
    output = _int(output_count)
    return Usage(
        input_tokens=_int(input_count),
        output_tokens=output,
        output_source=Source.REPORTED if output is not None else Source.UNKNOWN,
    )


def _int(value: Any) -> int | None:
    """A count given as a number (stream metrics) or as header text."""
    if isinstance(value, str) and value.isdigit() and len(value) < 19:
        return int(value)
    return value if type(value) is int and 0 <= value < 2**63 else None
