"""Offline price table: per-call cost of a usage record, or None when the model has no known price.

Models match on their exact name first, then on the name without a `provider/` prefix and without a
dated snapshot or `-latest`/`-preview` suffix (`claude-sonnet-4-20250514` -> `claude-sonnet-4`,
`gpt-5-2025-08-07` -> `gpt-5`). No looser matching: `claude-opus-4-7` is not priced as
`claude-opus-4`, because a wrong price is worse than an unknown one (which is counted, never $0).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from thinkmeter.schemas.record import Usage

# Bedrock's geographic cross-region inference profiles (us.anthropic.claude-..., eu.amazon.nova-...) bill
# as the model in the calling region; the global. profiles are priced apart.
_BEDROCK_GEO_PROFILE = re.compile(r"^(us|us-gov|eu|apac|jp|au|ca)\.(?=[a-z]+\.)")
_SNAPSHOT_SUFFIX = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{8}|-latest|-preview(-[\w.-]*)?|-exp(-[\w.-]*)?|@[\w.-]+)$")


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens, as in the file; costs divide by a million once, at the end."""

    input: float
    output: float
    cache_read: float
    cache_write: float
    reasoning: float

    @classmethod
    def from_per_million(cls, entry: dict[str, float]) -> Price:
        try:
            input_rate, output_rate = entry["input"], entry["output"]
        except KeyError as missing:
            raise ValueError(f"price entry {entry} lacks {missing}; 'input' and 'output' are required") from None
        rates = [input_rate, output_rate, *(entry.get(k, 0) for k in ("cache_read", "cache_write", "reasoning"))]
        if not all(isinstance(r, (int, float)) and not isinstance(r, bool) and r >= 0 for r in rates):
            raise ValueError(f"price entry {entry}: rates must be non-negative numbers (USD per million tokens)")
        return cls(
            input=input_rate,
            output=output_rate,
            cache_read=entry.get("cache_read", input_rate),
            cache_write=entry.get("cache_write", input_rate),
            reasoning=entry.get("reasoning", output_rate),
        )


@dataclass(frozen=True, slots=True)
class Cost:
    total_usd: float
    reasoning_usd: float | None


class PriceTable:
    def __init__(self, prices: dict[str, Price]) -> None:
        self._prices = prices
        self._resolved: dict[str, Price | None] = {}

    @classmethod
    def load(cls, override_file: Path | None = None) -> PriceTable:
        shipped = json.loads(resources.files("thinkmeter").joinpath("prices.json").read_text())
        entries = dict(shipped["models"])
        if override_file is not None:
            try:
                user = json.loads(Path(override_file).read_text())
            except (OSError, ValueError) as exc:
                raise ValueError(f"cannot read price file {override_file}: {exc}") from exc
            user = user.get("models", user) if isinstance(user, dict) else None
            if not isinstance(user, dict) or not all(isinstance(e, dict) for e in user.values()):
                raise ValueError(
                    f"price file {override_file} is not like {{\"models\": {{\"<model>\": {{\"input\": 1.25, \"output\": 10}}}}}}"
                )
            entries.update(user)
        return cls({name.lower(): Price.from_per_million(entry) for name, entry in entries.items()})

    def lookup(self, model: str | None) -> Price | None:
        if not model:
            return None
        try:
            return self._resolved[model]
        except KeyError:
            pass
        price = self._match(model.lower())
        if len(self._resolved) < 10_000:  # model names come from replies: keep the memo bounded
            self._resolved[model] = price
        return price

    def _match(self, name: str) -> Price | None:
        candidates = [name, name.rsplit("/", 1)[-1], _BEDROCK_GEO_PROFILE.sub("", name)]
        candidates += [_SNAPSHOT_SUFFIX.sub("", c) for c in candidates]
        for candidate in candidates:
            if candidate in self._prices:
                return self._prices[candidate]
        return None

    def cost(self, model: str | None, usage: Usage) -> Cost | None:
        """Cost of one call; None when the price or a count it needs is unknown."""
        price = self.lookup(model)
        if price is None or usage.input_tokens is None or usage.output_tokens is None:
            return None
        cache_read = usage.cache_read_tokens or 0
        cache_write = usage.cache_write_tokens or 0
        uncached_input = max(0, usage.input_tokens - cache_read - cache_write)
        reasoning = usage.reasoning_tokens
        reasoning_micro = None if reasoning is None else reasoning * price.reasoning
        non_reasoning_output = usage.output_tokens - (reasoning or 0)
        total_micro = (
            uncached_input * price.input
            + cache_read * price.cache_read
            + cache_write * price.cache_write
            + non_reasoning_output * price.output
            + (reasoning_micro or 0.0)
        )
        return Cost(
            total_usd=total_micro / 1e6,
            reasoning_usd=None if reasoning_micro is None else reasoning_micro / 1e6,
        )
