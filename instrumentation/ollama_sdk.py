"""The ollama python client: chat / generate on Client and AsyncClient (and the module functions,
bound to a default Client), streamed or not.

Ollama counts no thinking apart: `eval_count` is every generated token, thinking included. The split
is estimated from the thinking text (raw, never a summary); visible = eval_count - that estimate.
"""

from __future__ import annotations

import functools
import sys
import time
import types
from typing import Any

from thinkmeter.instrumentation._endpoints import EndpointResolver
from thinkmeter.instrumentation._estimate import estimate_reasoning_from_text
from thinkmeter.instrumentation._patch import Patcher, async_wrapper, by_keyword, sync_wrapper
from thinkmeter.instrumentation._stream import traced
from thinkmeter.instrumentation._telemetry import Call, Telemetry, mark_tokens
from thinkmeter.instrumentation._values import as_count, known_text
from thinkmeter.schemas import semconv as sc
from thinkmeter.schemas.record import CallRecord, Source, Usage

PROVIDER = sc.ENGINE_OLLAMA
DURATIONS_NS = (
    ("load_duration", sc.OLLAMA_LOAD_DURATION),
    ("prompt_eval_duration", sc.OLLAMA_PROMPT_EVAL_DURATION),
    ("eval_duration", sc.OLLAMA_EVAL_DURATION),
    ("total_duration", sc.OLLAMA_TOTAL_DURATION),
)


def instrument(patcher: Patcher, telemetry: Telemetry, resolver: EndpointResolver) -> None:
    for method, operation in (("chat", "chat"), ("generate", "text_completion")):
        surface = OllamaSurface(telemetry, resolver, operation)
        sync, asynchronous = by_keyword(sync_wrapper(surface)), by_keyword(async_wrapper(surface))
        patcher.wrap_on_import("ollama._client", f"Client.{method}", sync)
        patcher.wrap_on_import("ollama._client", f"AsyncClient.{method}", asynchronous)
        patcher.on_import("ollama", functools.partial(_wrap_default_client, patcher, method, sync))


def _wrap_default_client(patcher: Patcher, method: str, wrapper: Any) -> None:
    """ollama.chat / ollama.generate are bound to a default Client when ollama is imported: traced
    already when Client was patched first, wrapped here when ollama was imported before instrument()."""
    module = sys.modules["ollama"]
    if type(getattr(module, method, None)) is types.MethodType:  # a wrapper proxies isinstance, not type()
        patcher.wrap("ollama", method, wrapper)


class OllamaSurface:
    def __init__(self, telemetry: Telemetry, resolver: EndpointResolver, operation: str) -> None:
        self.telemetry = telemetry
        self.resolver = resolver
        self.operation = operation

    def begin(self, instance: Any, kwargs: dict[str, Any]) -> Call:
        think = kwargs.get("think")
        endpoint = self.resolver.resolve(instance._client.base_url)
        record = CallRecord(
            operation=self.operation,
            provider=PROVIDER,
            engine=PROVIDER,
            request_model=known_text(kwargs.get("model")) or None,
            stream=bool(kwargs.get("stream")),
            max_tokens=_num_predict(kwargs.get("options")),
            # think=True only switches thinking on; gpt-oss takes a level ("low", "medium", "high").
            reasoning_level=think if isinstance(think, str) else None,
            server_address=endpoint.address,
            server_port=endpoint.port,
        )
        return Call(self.telemetry, record)

    def deliver(self, call: Call, result: Any, kwargs: dict[str, Any], is_async: bool) -> Any:
        if call.record.stream:
            return traced(result, OllamaStreamAccumulator(call), is_async)
        read_final(call.record, result, len(_thinking(result) or ""))
        call.finish()
        return result


def _num_predict(options: Any) -> int | None:
    """options.num_predict (a dict or an ollama.Options); negative means no limit."""
    value = options.get("num_predict") if isinstance(options, dict) else getattr(options, "num_predict", None)
    return as_count(value)


def _thinking(part: Any) -> str | None:
    """The thinking text of a ChatResponse (on its message) or a GenerateResponse."""
    message = getattr(part, "message", None)
    return message.thinking if message is not None else part.thinking


def _answers(part: Any) -> bool:
    """Whether a streamed part carries answer tokens: text, or a tool call."""
    message = getattr(part, "message", None)
    if message is not None:
        return bool(message.content or message.tool_calls)
    return bool(part.response)


def read_final(record: CallRecord, final: Any, thinking_chars: int) -> None:
    """The final (done) object: counts, durations, model and done reason."""
    record.response_model = final.model or None
    if final.done_reason:
        record.finish_reasons = (final.done_reason,)
    output = final.eval_count
    usage = Usage(
        input_tokens=final.prompt_eval_count,
        output_tokens=output,
        output_source=Source.REPORTED if output is not None else Source.UNKNOWN,
    )
    if output is not None:
        # Ollama returns every thinking token as text: no thinking text means no thinking.
        estimate_reasoning_from_text(usage, thinking_chars)
    record.usage = usage
    for name, attribute in DURATIONS_NS:
        value = getattr(final, name, None)
        if isinstance(value, int):
            record.attributes[attribute] = value / 1e9


class OllamaStreamAccumulator:
    """First non-empty thinking = first reasoning token; first non-empty content = first visible."""

    __slots__ = ("call", "final", "thinking_chars")

    def __init__(self, call: Call) -> None:
        self.call = call
        self.thinking_chars = 0
        self.final: Any = None

    def on_item(self, part: Any) -> bool:
        now = time.perf_counter()
        call = self.call
        if call.first_chunk is None:
            call.first_chunk = now
        thinking = _thinking(part)
        if thinking:
            self.thinking_chars += len(thinking)
        if _answers(part):
            mark_tokens(call, now, visible=True)
        elif thinking:
            mark_tokens(call, now, False, len(thinking))
        if part.done:
            self.final = part
        return False

    def on_end(self) -> None:
        if self.final is not None:
            read_final(self.call.record, self.final, self.thinking_chars)
