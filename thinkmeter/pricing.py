"""Offline price table: per-call cost of a usage record, or None when the model has no known price.

Prices are per provider: the same open-weight model costs different amounts on Groq, OpenRouter,
Bedrock or a self-hosted engine. `providers` holds each provider's prices, keyed by the
gen_ai.provider.name thinkmeter records (`groq`, `openrouter`, `vllm`, ...); `models` holds the
provider-less entries, only for models with one seller, which apply whichever provider serves them.
A model priced for one provider is unpriced on another.

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


_FILE_SHAPE = '{"models": {"<model>": {"input": 1.25, "output": 10}}, "providers": {"<provider>": {"<model>": {...}}}}'


def _entries(document: object, origin: object) -> tuple[dict[str, dict], dict[str, dict[str, dict]]]:
    """(provider-less entries, {provider: entries}) of a price document; an old-style file is one mapping of models."""
    if not isinstance(document, dict):
        raise ValueError(f"price file {origin} is not like {_FILE_SHAPE}")
    if "models" not in document and "providers" not in document:
        document = {"models": document}
    models, providers = document.get("models", {}), document.get("providers", {})
    tables = [models, *providers.values()] if isinstance(providers, dict) else [None]
    if not all(isinstance(t, dict) and all(isinstance(e, dict) for e in t.values()) for t in tables):
        raise ValueError(f"price file {origin} is not like {_FILE_SHAPE}")
    return models, providers


class PriceTable:
    def __init__(self, prices: dict[str, Price], provider_prices: dict[str, dict[str, Price]] | None = None) -> None:
        self._prices = prices
        self._provider_prices = provider_prices or {}
        self._resolved: dict[tuple[str, str], Price | None] = {}

    @classmethod
    def load(cls, override_file: Path | None = None) -> PriceTable:
        shipped = json.loads(resources.files("thinkmeter").joinpath("prices.json").read_text())
        models, providers = _entries(shipped, "prices.json")
        models = dict(models)
        providers = {name: dict(entries) for name, entries in providers.items()}
        if override_file is not None:
            try:
                user = json.loads(Path(override_file).read_text())
            except (OSError, ValueError) as exc:
                raise ValueError(f"cannot read price file {override_file}: {exc}") from exc
            user_models, user_providers = _entries(user, override_file)
            models.update(user_models)
            for name, entries in user_providers.items():
                providers.setdefault(name, {}).update(entries)
        return cls(
            {model.lower(): Price.from_per_million(entry) for model, entry in models.items()},
            {
                provider: {model.lower(): Price.from_per_million(entry) for model, entry in entries.items()}
                for provider, entries in providers.items()
            },
        )

    def lookup(self, provider: str | None, model: str | None) -> Price | None:
        if not model:
            return None
        key = (provider or "", model)
        try:
            return self._resolved[key]
        except KeyError:
            pass
        price = self._match(self._provider_prices.get(provider or ""), model.lower())
        if len(self._resolved) < 10_000:  # model names come from replies: keep the memo bounded
            self._resolved[key] = price
        return price

    def _match(self, provider_prices: dict[str, Price] | None, name: str) -> Price | None:
        candidates = [name, name.rsplit("/", 1)[-1]]
        candidates += [_SNAPSHOT_SUFFIX.sub("", c) for c in candidates]
        for table in (provider_prices, self._prices):
            for candidate in candidates:
                if table and candidate in table:
                    return table[candidate]
        return None

    def cost(self, provider: str | None, model: str | None, usage: Usage) -> Cost | None:
        """Cost of one call served by `provider`; None when the price or a count it needs is unknown."""
        price = self.lookup(provider, model)
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
