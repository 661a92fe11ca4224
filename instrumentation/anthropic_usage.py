"""Usage parser for the Anthropic Messages API (also spoken by Anthropic-compatible servers)."""

from __future__ import annotations

from typing import Any

from thinkmeter.instrumentation._estimate import reasoning_from_blocks
from thinkmeter.instrumentation._values import count, field
from thinkmeter.schemas.record import Source, Usage

THINKING_BLOCKS = frozenset({"thinking", "redacted_thinking"})


def _latest(final: Any, first: Any, name: str) -> int | None:
    value = count(final, name)
    return value if value is not None else count(first, name)


def anthropic_usage(first: Any, final: Any | None, thought: bool | None, visible_chars: int) -> Usage:
    """Usage of one message.

    `first` carries the input counts (a stream's message_start usage, or the message's usage) and
    `final` the output counts (a stream's last message_delta usage, or the message's usage again);
    stream usage is cumulative, so the last value of each field wins and nothing is added up.
    Anthropic's input_tokens exclude cache reads and writes: input is their sum. Output includes
    thinking. Without `output_tokens_details.thinking_tokens` (SDK < 0.105, older models, other
    servers) reasoning is 0 when no thinking block came back (`thought`), else output minus an
    estimate of the visible text (`visible_chars`), marked estimated; `thought` None (content that
    could not be read) leaves it unknown. Counts come through `field`, which also reads the plain
    dict an older SDK keeps for a field it predates (`output_tokens_details` before 0.105).
    """
    uncached = _latest(final, first, "input_tokens")
    cache_read = _latest(final, first, "cache_read_input_tokens")
    cache_write = _latest(final, first, "cache_creation_input_tokens")
    output = count(final, "output_tokens")
    thinking = count(field(final, "output_tokens_details"), "thinking_tokens")
    usage = Usage(
        input_tokens=None if uncached is None else uncached + (cache_read or 0) + (cache_write or 0),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        output_tokens=output,
        reasoning_tokens=thinking,
        output_source=Source.REPORTED if output is not None else Source.UNKNOWN,
        reasoning_source=Source.REPORTED if thinking is not None else Source.UNKNOWN,
    )
    if thinking is None:
        reasoning_from_blocks(usage, thought, visible_chars)
    return usage
