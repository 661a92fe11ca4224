"""The ground truth of one simulated reply: token counts, timed phases and failure modes.

Times are simulated seconds from the moment the server has read the request; the server multiplies
them by its `time_scale` before sleeping. The model's timeline:

    0 ── prefill_s ─────────── first_visible_s ───────────────── end_s
         first token            first visible token              last visible token
         (reasoning or answer)  (= prefill_s + thinking_s)       (1 / visible_tokens_per_s apart)

Reasoning text, when a flavour streams it, is spread evenly over the thinking phase.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCENARIO_HEADER = "x-thinkmeter-sim-scenario"

# A summary is much shorter than the raw reasoning behind it, and its length saturates.
_SUMMARY_RATIO = 20
_SUMMARY_MAX_TOKENS = 120

_ANSWER_WORDS = (
    "The answer follows from the given facts and the stated constraints so the result holds for every "
    "case we checked including the edge cases near zero and the large inputs at the end of the range"
).split()
_REASONING_WORDS = (
    "First consider what is asked then list the known quantities check each candidate against the "
    "constraints discard the ones that fail and verify the remaining one twice before answering"
).split()


class Scenario(BaseModel):
    """What the simulated model does for one request; the server reports exactly these figures."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = None  # None: the model named in the request
    input_tokens: int = Field(default=100, ge=0)  # all input, cache reads and writes included
    cached_input_tokens: int = Field(default=0, ge=0)
    cache_write_tokens: int = Field(default=0, ge=0)
    reasoning_tokens: int = Field(default=0, ge=0)
    visible_tokens: int = Field(default=20, ge=0)
    # Reasoning text the server streams: none, a short summary, or every reasoning token.
    reasoning_text: Literal["hidden", "summary", "raw"] = "summary"
    # False: the usage carries no reasoning count (older APIs and servers); clients must derive it.
    reasoning_reported: bool = True
    finish_reason: Literal["stop", "length", "content_filter"] = "stop"
    prefill_s: float = Field(default=0.2, ge=0)
    thinking_s: float = Field(default=0.0, ge=0)
    visible_tokens_per_s: float = Field(default=50.0, gt=0)
    # Failure modes: reply with this HTTP status at prefill_s, or drop the connection when the next
    # chunk would carry visible token number disconnect_after_visible + 1.
    error_status: int | None = Field(default=None, ge=400, le=599)
    disconnect_after_visible: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _cache_within_input(self) -> Scenario:
        if self.cached_input_tokens + self.cache_write_tokens > self.input_tokens:
            raise ValueError(
                "cached_input_tokens + cache_write_tokens must not exceed input_tokens (input includes them)"
            )
        return self

    @property
    def output_tokens(self) -> int:
        return self.reasoning_tokens + self.visible_tokens

    @property
    def reasoning_text_tokens(self) -> int:
        """How many reasoning-text deltas a flavour that streams reasoning sends."""
        if self.reasoning_text == "hidden" or self.reasoning_tokens == 0:
            return 0
        if self.reasoning_text == "raw":
            return self.reasoning_tokens
        return min(self.reasoning_tokens, max(1, self.reasoning_tokens // _SUMMARY_RATIO), _SUMMARY_MAX_TOKENS)

    @property
    def first_token_s(self) -> float:
        return self.prefill_s

    @property
    def first_visible_s(self) -> float:
        return self.prefill_s + self.thinking_s

    @property
    def end_s(self) -> float:
        return self.visible_at(self.visible_tokens - 1) if self.visible_tokens else self.first_visible_s

    def visible_at(self, index: int) -> float:
        return self.first_visible_s + index / self.visible_tokens_per_s

    def reasoning_text_at(self, index: int) -> float:
        return self.prefill_s + self.thinking_s * index / self.reasoning_text_tokens

    def capped(self, max_output_tokens: int | None, thinking_budget: int | None = None) -> Scenario:
        """The scenario as generated under an output budget (reasoning spends it first) and a thinking
        budget (the model thinks at most that much, then answers)."""
        if thinking_budget is not None and self.reasoning_tokens > thinking_budget:
            scale = thinking_budget / self.reasoning_tokens
            thought = self.model_copy(update={"reasoning_tokens": thinking_budget, "thinking_s": self.thinking_s * scale})
            return thought.capped(max_output_tokens)
        if max_output_tokens is None or self.output_tokens <= max_output_tokens:
            return self
        reasoning = min(self.reasoning_tokens, max_output_tokens)
        thinking_s = self.thinking_s * reasoning / self.reasoning_tokens if self.reasoning_tokens else self.thinking_s
        return self.model_copy(
            update={
                "reasoning_tokens": reasoning,
                "visible_tokens": max_output_tokens - reasoning,
                "thinking_s": thinking_s,
                "finish_reason": "length",
            }
        )

    def header_value(self) -> str:
        return self.model_dump_json(exclude_defaults=True)

    def headers(self) -> dict[str, str]:
        """Request headers that make the simulator play this scenario (`extra_headers=` in the SDKs)."""
        return {SCENARIO_HEADER: self.header_value()}

    @classmethod
    def from_header(cls, value: str) -> Scenario:
        return cls.model_validate(json.loads(value))


def answer_words(count: int) -> Iterator[str]:
    """`count` one-token words of answer text, each after the first with a leading space."""
    return _words(_ANSWER_WORDS, count)


def reasoning_words(count: int) -> Iterator[str]:
    return _words(_REASONING_WORDS, count)


def _words(vocabulary: list[str], count: int) -> Iterator[str]:
    size = len(vocabulary)
    for index in range(count):
        word = vocabulary[index % size]
        yield word if index == 0 else " " + word
