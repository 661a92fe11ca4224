"""LiteLLM: litellm.completion / litellm.acompletion, streamed or not.

LiteLLM reaches some providers with its own HTTP code (Anthropic, Bedrock, Vertex AI among them) and
others through the openai SDK: the call is traced here, once, with LiteLLM's provider and model, and
SDK calls made inside it stay untraced. LiteLLM normalizes every provider's reply to OpenAI's chat
shape (usage with reasoning_tokens and cached_tokens, `reasoning_content`), read by the chat readers.
The request is made inside completion(), so a stream's call is already marked when it is read.
"""

from __future__ import annotations

from typing import Any

from thinkmeter.instrumentation._endpoints import EndpointResolver
from thinkmeter.instrumentation._patch import Patcher, async_wrapper, by_keyword, given, sync_wrapper
from thinkmeter.instrumentation._stream import traced
from thinkmeter.instrumentation._telemetry import Call, Telemetry
from thinkmeter.instrumentation._values import field, known_text
from thinkmeter.instrumentation.openai_chat import ChatStreamAccumulator, ask_for_stream_usage, read_completion
from thinkmeter.instrumentation.openai_usage import LITELLM_FLAVOUR, LITELLM_UNCOUNTED_FLAVOUR
from thinkmeter.schemas.record import CallRecord

# LiteLLM's provider names -> gen_ai.provider.name where the GenAI semconv names the provider.
PROVIDERS = {
    "anthropic": "anthropic",
    "azure": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "bedrock": "aws.bedrock",
    "cohere": "cohere",
    "cohere_chat": "cohere",
    "deepseek": "deepseek",
    "gemini": "gcp.gemini",
    "groq": "groq",
    "hosted_vllm": "vllm",
    "mistral": "mistral_ai",
    "ollama": "ollama",
    "ollama_chat": "ollama",
    "openai": "openai",
    "perplexity": "perplexity",
    "vertex_ai": "gcp.vertex_ai",
    "vertex_ai_beta": "gcp.vertex_ai",
    "watsonx": "ibm.watsonx.ai",
    "xai": "x_ai",
}
# Providers whose APIs count no reasoning apart: LiteLLM's reasoning_tokens for them is its own
# tokenization of the (often summarized) reasoning text, so reasoning is estimated here instead.
UNCOUNTED_REASONING = frozenset({"aws.bedrock", "mistral_ai", "ollama"})


def instrument(patcher: Patcher, telemetry: Telemetry, resolver: EndpointResolver) -> None:
    surface = LiteLLMSurface(telemetry, resolver)
    # The package's own names: acompletion runs litellm.main.completion in a thread, which stays unpatched.
    patcher.wrap_on_import("litellm", "completion", by_keyword(sync_wrapper(surface, outer=True)))
    patcher.wrap_on_import("litellm", "acompletion", by_keyword(async_wrapper(surface, outer=True)))


def _provider(model: str, kwargs: dict[str, Any]) -> tuple[str, str, Any]:
    """(LiteLLM provider, model as sent to it, API base), as LiteLLM works them out."""
    from litellm import get_llm_provider

    model, provider, _, api_base = get_llm_provider(
        model=model, custom_llm_provider=given(kwargs.get("custom_llm_provider")), api_base=given(kwargs.get("api_base"))
    )
    if provider == "bedrock" and "arn:" not in model:
        model = model.rsplit("/", 1)[-1]  # LiteLLM's route (converse/, invoke/, ...) before Bedrock's model id
    return provider, model, api_base


class LiteLLMSurface:
    def __init__(self, telemetry: Telemetry, resolver: EndpointResolver) -> None:
        self.telemetry = telemetry
        self.resolver = resolver

    def begin(self, instance: Any, kwargs: dict[str, Any]) -> Call:
        provider, model, api_base = _provider(kwargs["model"], kwargs)
        endpoint = self.resolver.resolve(api_base or "", PROVIDERS.get(provider, provider))
        stream = bool(given(kwargs.get("stream")))
        thinking = given(kwargs.get("thinking"))
        budget = field(thinking, "budget_tokens") if field(thinking, "type") == "enabled" else None
        record = CallRecord(
            operation="chat",
            **endpoint.record_fields(),
            request_model=known_text(model),
            stream=stream,
            max_tokens=given(kwargs.get("max_completion_tokens")) or given(kwargs.get("max_tokens")),
            reasoning_level=known_text(given(kwargs.get("reasoning_effort"))),
            thinking_budget_tokens=budget if type(budget) is int else None,
        )
        call = Call(self.telemetry, record)
        if stream:
            ask_for_stream_usage(call, kwargs)  # LiteLLM adds its usage chunk only when asked
        return call

    def deliver(self, call: Call, result: Any, kwargs: dict[str, Any], is_async: bool) -> Any:
        # LiteLLM's usage is OpenAI's whatever the provider: no provider dialect applies, and its
        # usage.cost is LiteLLM's own estimate, not a bill.
        flavour = LITELLM_UNCOUNTED_FLAVOUR if call.record.provider in UNCOUNTED_REASONING else LITELLM_FLAVOUR
        if call.record.stream:
            return traced(result, ChatStreamAccumulator(call, flavour), is_async)
        read_completion(call.record, result, flavour)
        call.finish()
        return result
