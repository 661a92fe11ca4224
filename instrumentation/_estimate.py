"""Token estimates for providers whose usage lacks a reasoning count; every estimate says so.

No tokenizer is bundled (a provider's tokenizer is large, often private, and would cost a download or
CPU on the caller's path), so text is estimated at about 4 characters per token, the rule of thumb
OpenAI and Anthropic give for English text.
"""

from __future__ import annotations

from thinkmeter.schemas.record import Source, Usage

CHARS_PER_TOKEN = 4


def estimated_tokens(chars: int) -> int:
    """Tokens in a text of `chars` characters, rounded up (any text is at least one token)."""
    return -(-chars // CHARS_PER_TOKEN)


def estimate_reasoning(usage: Usage, visible_chars: int) -> None:
    """Set reasoning to output minus the estimated tokens of the visible text, marked estimated.

    For providers whose output count includes reasoning but who do not split it out. The reasoning
    text is never tokenized instead: what comes back is often a summary of a longer raw reasoning,
    or nothing at all (redacted, omitted).
    """
    if usage.output_tokens is None:
        return
    usage.reasoning_tokens = max(0, usage.output_tokens - estimated_tokens(visible_chars))
    usage.reasoning_source = Source.ESTIMATED


def estimate_missing_reasoning(usage: Usage, reasoning_chars: int, visible_chars: int) -> None:
    """A reply that carried reasoning text but no reasoning count (SGLang, llama.cpp, older vLLM), or a
    count of 0 that its own text contradicts (vLLM with a reasoning template injected into the prompt),
    gets reasoning = output - tokens(answer text), marked estimated; the reasoning text's own estimate
    when the answer's ate it all."""
    if reasoning_chars and usage.output_tokens is not None and not usage.reasoning_tokens:
        estimate_reasoning(usage, visible_chars)
        if not usage.reasoning_tokens:
            estimate_reasoning_from_text(usage, reasoning_chars)


def estimate_reasoning_from_text(usage: Usage, reasoning_chars: int) -> None:
    """Set reasoning to the estimated tokens of the reasoning text (at most the output), marked estimated.

    For engines that return their raw reasoning, every token of it, as text but count none of it
    apart (Ollama's `thinking`; SGLang, llama.cpp and older vLLM's `reasoning_content`).
    """
    reasoning = estimated_tokens(reasoning_chars)
    usage.reasoning_tokens = reasoning if usage.output_tokens is None else min(usage.output_tokens, reasoning)
    usage.reasoning_source = Source.ESTIMATED
