"""Usage parser for the Anthropic Messages API (also spoken by Anthropic-compatible servers)."""

from __future__ import annotations

from typing import Any

from thinkmeter.instrumentation._estimate import estimate_reasoning
from thinkmeter.instrumentation._values import count, field
from thinkmeter.schemas.record import CallRecord, Source, Usage

THINKING_BLOCKS = frozenset({"thinking", "redacted_thinking"})


def _latest(final: Any, first: Any, name: str) -> int | None:
    value = count(final, name)
    return value if value is not None else count(first, name)


def _counts(uncached: int | None, cache_read: int | None, cache_write: int | None, output: int | None) -> Usage:
    # Anthropic's input_tokens exclude cache reads and writes: input is their sum.
    return Usage(
        input_tokens=None if uncached is None else uncached + (cache_read or 0) + (cache_write or 0),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        output_tokens=output,
        output_source=Source.REPORTED if output is not None else Source.UNKNOWN,
    )


def input_tokens(usage: Any) -> int | None:
    """All input of one usage object (a stream's message_start): uncached + cache reads + cache writes."""
    uncached = count(usage, "input_tokens")
    if uncached is None:
        return None
    return uncached + (count(usage, "cache_read_input_tokens") or 0) + (count(usage, "cache_creation_input_tokens") or 0)


def _iterations_usage(iterations: list[Any]) -> Usage | None:
    """The summed counts of sampling passes; None when one of them lacks its input or output count."""
    uncached = [count(i, "input_tokens") for i in iterations]
    output = [count(i, "output_tokens") for i in iterations]
    if None in uncached or None in output:
        return None
    return _counts(
        sum(uncached),  # type: ignore[arg-type]
        sum(count(i, "cache_read_input_tokens") or 0 for i in iterations),
        sum(count(i, "cache_creation_input_tokens") or 0 for i in iterations),
        sum(output),  # type: ignore[arg-type]
    )


def read_anthropic_usage(record: CallRecord, first: Any, final: Any | None, thought: bool | None, visible_chars: int) -> None:
    """A message's usage into the record.

    `first` carries the input counts (a stream's message_start usage, or the message's usage) and
    `final` the output counts (a stream's last message_delta usage, or the message's usage again);
    stream usage is cumulative, so the last value of each field wins and nothing is added up.
    With `usage.iterations` (server-side compaction, the advisor tool) the top-level counts cover one
    pass while Anthropic bills every pass: counts are the sums over the iterations, and passes run by
    another model (the advisor) are priced at that model's rates (`record.usage_by_model`).
    Output includes thinking. Without `output_tokens_details.thinking_tokens` (SDK < 0.105, older
    models, other servers) reasoning is 0 when no thinking block came back (`thought`), else output
    minus an estimate of the visible text (`visible_chars`), marked estimated; `thought` None (content
    that could not be read) leaves it unknown. Counts come through `field`, which also reads the plain
    dict an older SDK keeps for a field it predates (`output_tokens_details` before 0.105).
    """
    iterations = field(final, "iterations") or field(first, "iterations")
    iterations = iterations if isinstance(iterations, list) else None
    usage = _iterations_usage(iterations) if iterations else None
    if usage is None:
        iterations = None
        usage = _counts(
            _latest(final, first, "input_tokens"),
            _latest(final, first, "cache_read_input_tokens"),
            _latest(final, first, "cache_creation_input_tokens"),
            count(final, "output_tokens"),
        )
    thinking = count(field(final, "output_tokens_details"), "thinking_tokens")
    if thinking is not None:
        usage.reasoning_tokens, usage.reasoning_source = thinking, Source.REPORTED
    elif usage.output_tokens is not None and thought is not None:
        if thought:
            estimate_reasoning(usage, visible_chars)
        else:
            # No thinking block came back: the model did not think, exactly.
            usage.reasoning_tokens, usage.reasoning_source = 0, Source.DERIVED
    record.usage = usage
    if iterations:
        record.usage_by_model = _by_model(iterations, record.response_model, usage.reasoning_tokens)


def _by_model(iterations: list[Any], own_model: str | None, reasoning: int | None) -> tuple[tuple[str | None, Usage], ...]:
    """Parts billed at another model's rates, with the call's own part (model None) holding the
    reported reasoning; () when every pass ran on the call's model."""
    groups: dict[str | None, list[Any]] = {}
    for iteration in iterations:
        model = field(iteration, "model")
        groups.setdefault(model if isinstance(model, str) and model != own_model else None, []).append(iteration)
    if list(groups) == [None]:
        return ()
    parts = []
    for model, group in groups.items():
        part = _iterations_usage(group)
        if part is None:
            return ()
        if model is None:
            part.reasoning_tokens = reasoning
        parts.append((model, part))
    return tuple(parts)
