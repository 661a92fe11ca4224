"""Usage parsers for the OpenAI wire formats, and what OpenAI-compatible servers do differently.

One parser serves every server; the differences are small and explicit: a `ChatFlavour` per provider
for what cannot be seen in the reply itself (xAI leaves reasoning out of completion_tokens), and
extra fields read wherever they appear (DeepSeek's prompt_cache_hit_tokens, Groq's usage timings,
OpenRouter's usage.cost, llama.cpp's `timings`). The SDK keeps unknown fields as extras, and a nested
extra as a plain dict (Groq's x_groq.usage): `field` reads both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from thinkmeter.instrumentation._estimate import estimate_missing_reasoning
from thinkmeter.instrumentation._values import count, field, number
from thinkmeter.schemas import semconv as sc
from thinkmeter.schemas.record import CallRecord, Source, Usage


@dataclass(frozen=True, slots=True)
class ChatFlavour:
    # completion_tokens leave reasoning out, so output = completion + reasoning (total_tokens counts both).
    reasoning_outside_completion: bool = False


OPENAI_FLAVOUR = ChatFlavour()
# Provider name -> how its chat usage differs from OpenAI's. Gemini's OpenAI-compatible endpoint, like
# xAI, keeps thoughts out of completion_tokens.
CHAT_FLAVOURS = {
    "x_ai": ChatFlavour(reasoning_outside_completion=True),
    "gcp.gemini": ChatFlavour(reasoning_outside_completion=True),
}
# Reasoning-text fields of OpenAI-compatible servers, in the order to check: vLLM (current), Groq and
# OpenRouter say `reasoning`; DeepSeek, xAI, SGLang, llama.cpp and older vLLM `reasoning_content`.
# vLLM sent both for a while, with the same text: the first non-empty one is the reasoning.
REASONING_FIELDS = ("reasoning", "reasoning_content")
# Server-side timings: Groq's usage fields (seconds) and llama.cpp's `timings` (milliseconds).
GROQ_USAGE_TIMES = (
    ("queue_time", sc.SERVER_QUEUE_TIME),
    ("prompt_time", sc.SERVER_PROMPT_TIME),
    ("completion_time", sc.SERVER_DECODE_TIME),
    ("total_time", sc.SERVER_TOTAL_TIME),
)
LLAMA_CPP_TIMINGS_MS = (("prompt_ms", sc.SERVER_PROMPT_TIME), ("predicted_ms", sc.SERVER_DECODE_TIME))
# vLLM's per-request `metrics` (--enable-per-request-metrics; milliseconds, and tokens per second).
VLLM_METRICS_MS = (
    ("queue_time_ms", sc.SERVER_QUEUE_TIME),
    ("time_to_first_token_ms", sc.SERVER_TIME_TO_FIRST_TOKEN),
    ("generation_time_ms", sc.SERVER_DECODE_TIME),
    ("mean_itl_ms", sc.SERVER_INTER_TOKEN_LATENCY),
)
VLLM_METRICS_RATE = (("tokens_per_second", sc.SERVER_OUTPUT_TOKENS_PER_S),)


def chat_flavour(provider: str) -> ChatFlavour:
    return CHAT_FLAVOURS.get(provider, OPENAI_FLAVOUR)


def _source(value: int | None) -> Source:
    return Source.REPORTED if value is not None else Source.UNKNOWN


def reasoning_text(message: Any) -> str | None:
    """The reasoning text an OpenAI-compatible server put on a message or a stream delta."""
    extra = message.__pydantic_extra__
    if extra:
        for name in REASONING_FIELDS:
            text = extra.get(name)
            if text and isinstance(text, str):
                return text
    return None


def chat_usage(usage: Any, flavour: ChatFlavour = OPENAI_FLAVOUR) -> Usage:
    """Chat Completions `usage`: completion_tokens include reasoning (unless the flavour says not);
    prompt_tokens include cached."""
    completion = field(usage, "completion_tokens_details")
    prompt = field(usage, "prompt_tokens_details")
    reasoning = count(completion, "reasoning_tokens")
    output = count(usage, "completion_tokens")
    output_source = _source(output)
    if flavour.reasoning_outside_completion and output is not None and reasoning is not None:
        output += reasoning
        output_source = Source.DERIVED
    # DeepSeek: prompt_tokens = prompt_cache_hit_tokens + prompt_cache_miss_tokens.
    cache_hit = count(usage, "prompt_cache_hit_tokens")
    input_tokens = count(usage, "prompt_tokens")
    if input_tokens is None and cache_hit is not None:
        cache_miss = count(usage, "prompt_cache_miss_tokens")
        input_tokens = cache_hit + cache_miss if cache_miss is not None else None
    cache_read = count(prompt, "cached_tokens")
    cache_write = count(prompt, "cache_write_tokens")  # OpenRouter; vLLM says created_cache_tokens
    return Usage(
        input_tokens=input_tokens,
        cache_read_tokens=cache_read if cache_read is not None else cache_hit,
        cache_write_tokens=cache_write if cache_write is not None else count(prompt, "created_cache_tokens"),
        output_tokens=output,
        reasoning_tokens=reasoning,
        rejected_prediction_tokens=count(completion, "rejected_prediction_tokens"),
        output_source=output_source,
        reasoning_source=_source(reasoning),
    )


def read_chat_usage(
    record: CallRecord, usage: Any, timings: Any, reasoning_chars: int, visible_chars: int, metrics: Any = None
) -> None:
    """Everything a chat reply's usage (and llama.cpp's `timings`, vLLM's `metrics`) says, into the record.

    `reasoning_chars` / `visible_chars`: how much reasoning and answer text the reply carried, for
    servers that count no reasoning (see estimate_missing_reasoning).
    """
    if usage is not None:
        record.usage = chat_usage(usage, chat_flavour(record.provider))
        read_reported_cost(record, usage)
        _set_seconds(record, usage, GROQ_USAGE_TIMES)
    read_llama_cpp_timings(record, timings)
    if metrics is not None:
        _set_seconds(record, metrics, VLLM_METRICS_MS, 1e-3)
        _set_seconds(record, metrics, VLLM_METRICS_RATE)
    estimate_missing_reasoning(record.usage, reasoning_chars, visible_chars)


def read_llama_cpp_timings(record: CallRecord, timings: Any) -> None:
    """llama.cpp's per-request `timings` (milliseconds): prefill and decode time, cached prompt tokens."""
    if timings is None:
        return
    if record.usage.cache_read_tokens is None:
        record.usage.cache_read_tokens = count(timings, "cache_n")
    _set_seconds(record, timings, LLAMA_CPP_TIMINGS_MS, 1e-3)


def read_reported_cost(record: CallRecord, usage: Any) -> None:
    """OpenRouter bills the call in its usage (`usage.cost`, USD), on chat completions and Responses."""
    cost = number(usage, "cost")
    if cost is not None:
        record.cost_usd, record.cost_source = cost, "reported"


def _set_seconds(record: CallRecord, source: Any, names: tuple[tuple[str, str], ...], scale: float = 1.0) -> None:
    for name, attribute in names:
        value = number(source, name)
        if value is not None:
            record.attributes[attribute] = value * scale


def responses_usage(usage: Any) -> Usage:
    """Responses `usage`: output_tokens include reasoning; input_tokens include cached."""
    output = usage.output_tokens_details
    prompt = usage.input_tokens_details
    reasoning = count(output, "reasoning_tokens")
    output_tokens = count(usage, "output_tokens")
    return Usage(
        input_tokens=count(usage, "input_tokens"),
        cache_read_tokens=count(prompt, "cached_tokens"),
        cache_write_tokens=count(prompt, "cache_write_tokens"),
        output_tokens=output_tokens,
        reasoning_tokens=reasoning,
        output_source=_source(output_tokens),
        reasoning_source=_source(reasoning),
    )
