"""One normalized record per LLM call, filled by the per-provider parsers.

Conventions (OTel GenAI): input counts every input token, cache reads and writes included; output
counts every generated token, reasoning included; reasoning is a subset of output. A count nobody
reported is None, never 0, and every count that is not read straight off the provider's reply says so
through its source.
"""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict, Field


class Source(str, Enum):
    """Where a token count came from."""

    REPORTED = "reported"  # read off the provider's usage
    DERIVED = "derived"  # computed exactly from reported counts (e.g. output - visible)
    TOKENIZED = "tokenized"  # the returned text counted with the engine's own tokenizer
    ESTIMATED = "estimated"  # estimated from the text's length (a documented characters-per-token rule)
    UNKNOWN = "unknown"


class Usage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    output_tokens: int | None = None
    reasoning_tokens: int | None = None
    # OpenAI predicted outputs: billed as output, never shown.
    rejected_prediction_tokens: int | None = None
    output_source: Source = Source.UNKNOWN
    reasoning_source: Source = Source.UNKNOWN

    @property
    def visible_output_tokens(self) -> int | None:
        if self.output_tokens is None or self.reasoning_tokens is None:
            return None
        return max(0, self.output_tokens - self.reasoning_tokens - (self.rejected_prediction_tokens or 0))


# Finish reasons that mean "stopped at the output cap": chat `length`, Anthropic `max_tokens`, Gemini
# `MAX_TOKENS` (recorded in lower case), Responses `incomplete_details.reason = max_output_tokens`.
LENGTH_CAP_REASONS = frozenset({"length", "max_tokens", "max_output_tokens"})


class CallRecord(BaseModel):
    """Everything thinkmeter knows about one call; turned into span attributes in one place."""

    model_config = ConfigDict(extra="forbid")

    # Request
    operation: str = "chat"
    provider: str
    request_model: str | None = None
    stream: bool = False
    max_tokens: int | None = None
    reasoning_level: str | None = None
    thinking_budget_tokens: int | None = None
    server_address: str | None = None
    server_port: int | None = None
    engine: str | None = None

    # Response
    response_model: str | None = None
    response_id: str | None = None
    finish_reasons: tuple[str, ...] | None = None
    usage: Usage = Field(default_factory=Usage)
    # Parts of `usage` billed at another model's rates (Anthropic's advisor iterations), each with its
    # model (None: the call's own); empty when the call's model priced all of it.
    usage_by_model: tuple[tuple[str | None, Usage], ...] = ()

    # Seconds from the start of the SDK call (not from the response headers)
    time_to_first_chunk: float | None = None
    time_to_first_token: float | None = None
    time_to_first_visible_token: float | None = None
    time_per_output_token: float | None = None

    # USD; None when the model has no known price
    cost_usd: float | None = None
    reasoning_cost_usd: float | None = None
    cost_source: str | None = None  # "price_table" or "reported" (the provider billed it in the reply)

    error_type: str | None = None

    @property
    def answer_lost(self) -> bool | None:
        """The call hit its output cap while still thinking: true when it ended on the length cap with no
        visible output tokens; None when the finish reason or the visible count is unknown."""
        if not self.finish_reasons:
            return None
        if not LENGTH_CAP_REASONS.intersection(self.finish_reasons):
            return False
        visible = self.usage.visible_output_tokens
        return None if visible is None else visible == 0

    # Figures a provider or engine reports beyond the common ones (server-side timings, KV-cache
    # bytes), keyed by their semconv attribute name: span attributes only, no column of their own.
    attributes: dict[str, bool | float | int | str | tuple[str, ...]] = Field(default_factory=dict)
