"""In-process Hugging Face transformers: a span per `generate()` call (pipelines call it too).

Counts are exact, read off the token tensors: input = prompt tokens (padding excluded), output =
generated tokens per sequence up to its end-of-sequence token (padding excluded). Between `<think>`
and `</think>` (token ids learnt from the tokenizer) generated tokens are reasoning, derived exactly.
The time of every decoding step comes from a stopping criterion appended to the caller's own, which
never stops anything; the KV cache the call held is measured at its end. Nothing here imports torch
or transformers: the patches go on when the application imports transformers.
"""

from __future__ import annotations

import contextvars
import functools
import time
from typing import Any

from thinkmeter.instrumentation._endpoints import EndpointResolver
from thinkmeter.instrumentation._patch import Patcher, by_keyword
from thinkmeter.instrumentation._safety import dont_throw
from thinkmeter.instrumentation._telemetry import Call, Telemetry
from thinkmeter.schemas import semconv as sc
from thinkmeter.schemas.record import CallRecord, Source, Usage

PROVIDER = sc.ENGINE_TRANSFORMERS
THINK_START, THINK_END = "<think>", "</think>"
GENERATION = "transformers.generation.utils"
TOKENIZATION = "transformers.tokenization_utils_base"
_MAX_TOKENIZERS = 256

# Tokenizer name_or_path -> (<think> id, </think> id), filled as tokenizers load.
_think_ids: dict[str, tuple[int, int]] = {}
# The generate() call running in this context: nested ones (a draft model's) belong to it.
_current: contextvars.ContextVar[GenerateRun | None] = contextvars.ContextVar("thinkmeter_generate", default=None)


def instrument(patcher: Patcher, telemetry: Telemetry, resolver: EndpointResolver) -> None:
    patcher.wrap_on_import(GENERATION, "GenerationMixin.generate", by_keyword(generate_wrapper(telemetry)))
    patcher.wrap_on_import(GENERATION, "GenerationMixin._prepare_cache_for_generation", by_keyword(_keep_cache))
    patcher.wrap_on_import(TOKENIZATION, "PreTrainedTokenizerBase.from_pretrained", _learn_think_ids)


def generate_wrapper(telemetry: Telemetry) -> Any:
    def wrapper(wrapped: Any, instance: Any, args: tuple, kwargs: dict[str, Any]) -> Any:
        if _current.get() is not None:
            return wrapped(*args, **kwargs)
        run = _begin(telemetry, instance, kwargs)
        if run is None:
            return wrapped(*args, **kwargs)
        token = _current.set(run)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as error:
            _end(run, None, error)
            raise
        finally:
            _current.reset(token)
        _end(run, result, None)
        return result

    return wrapper


@dont_throw
def _begin(telemetry: Telemetry, model: Any, kwargs: dict[str, Any]) -> GenerateRun:
    return GenerateRun(telemetry, model, kwargs)


@dont_throw
def _end(run: GenerateRun, result: Any, error: BaseException | None) -> None:
    run.finish(result, error)


def _keep_cache(wrapped: Any, instance: Any, args: tuple, kwargs: dict[str, Any]) -> Any:
    """generate() makes its KV cache here (once per call) unless the caller passed one: keep it."""
    result = wrapped(*args, **kwargs)
    run = _current.get()
    if run is not None and run.cache is None:
        model_kwargs = kwargs.get("model_kwargs")
        if isinstance(model_kwargs, dict):
            run.cache = model_kwargs.get("past_key_values")
    return result


def _learn_think_ids(wrapped: Any, instance: Any, args: tuple, kwargs: dict[str, Any]) -> Any:
    tokenizer = wrapped(*args, **kwargs)
    _remember_think_ids(tokenizer)
    return tokenizer


@dont_throw
def _remember_think_ids(tokenizer: Any) -> None:
    ids = think_ids(tokenizer)
    name = getattr(tokenizer, "name_or_path", None)
    if ids is not None and name and len(_think_ids) < _MAX_TOKENIZERS:
        _think_ids[str(name)] = ids


def think_ids(tokenizer: Any) -> tuple[int, int] | None:
    """The ids of `<think>` and `</think>` when the tokenizer has each as one token."""
    ids = tokenizer.convert_tokens_to_ids([THINK_START, THINK_END])
    unknown = getattr(tokenizer, "unk_token_id", None)
    if len(ids) == 2 and all(isinstance(i, int) and i != unknown for i in ids):
        return ids[0], ids[1]
    return None


class GenerateRun:
    """One traced generate() call: what it was asked, its step clock, and the cache it held."""

    def __init__(self, telemetry: Telemetry, model: Any, kwargs: dict[str, Any]) -> None:
        import torch
        from transformers import StoppingCriteriaList

        config = model.config
        generation = kwargs.get("generation_config") or model.generation_config
        self.encoder_decoder = bool(getattr(config, "is_encoder_decoder", False))
        self.eos = _id_list(kwargs.get("eos_token_id", generation.eos_token_id))
        self.pad = kwargs.get("pad_token_id", generation.pad_token_id)
        tokenizer = kwargs.get("tokenizer")
        name = str(getattr(config, "name_or_path", "") or "")
        self.think = think_ids(tokenizer) if tokenizer is not None else _think_ids.get(name)
        prompt = kwargs.get("inputs")
        if prompt is None:
            prompt = kwargs.get("input_ids")
        integer_prompt = torch.is_tensor(prompt) and prompt.dim() == 2 and not prompt.is_floating_point()
        self.prompt_ids = prompt if integer_prompt else None
        self.input_tokens = _input_tokens(self.prompt_ids, kwargs.get("inputs_embeds"), kwargs.get("attention_mask"))
        self.cache: Any = kwargs.get("past_key_values")  # the caller's own, else the one generate() makes
        # Prompt tokens whose K/V a caller's cache already holds (an earlier turn) are not computed
        # again: cache reads. Without one, generate() reuses nothing.
        rows = self.prompt_ids.shape[0] if self.prompt_ids is not None else 1
        self.cache_read = int(self.cache.get_seq_length()) * rows if self.cache is not None else 0
        self.clock = _step_clock_class()(self.think, [*self.eos, *([self.pad] if self.pad is not None else [])])
        max_new_tokens = kwargs.get("max_new_tokens", generation.max_new_tokens)
        record = CallRecord(
            operation="text_completion",
            provider=PROVIDER,
            engine=PROVIDER,
            request_model=name or None,
            response_model=name or None,
            stream=kwargs.get("streamer") is not None,
            max_tokens=max_new_tokens if isinstance(max_new_tokens, int) else None,
        )
        self.call = Call(telemetry, record)
        # Last, once nothing can fail: the caller's criteria keep working, the clock only watches.
        kwargs["stopping_criteria"] = StoppingCriteriaList([*(kwargs.get("stopping_criteria") or ()), self.clock])

    def finish(self, result: Any, error: BaseException | None) -> None:
        import torch

        record = self.call.record
        cache = self.cache
        self.cache = None
        if result is not None:
            sequences = result if torch.is_tensor(result) else getattr(result, "sequences", None)
            if sequences is not None:
                self._count(record, sequences)
            returned = getattr(result, "past_key_values", None)
            cache = returned if returned is not None else cache
        if cache is not None:
            size = kv_cache_size(cache)
            if size is not None:
                record.attributes[sc.KV_CACHE_BYTES], record.attributes[sc.KV_CACHE_TOKENS] = size
        self._set_timings(record)
        self.call.finish(error)

    def _count(self, record: CallRecord, sequences: Any) -> None:
        import torch

        if self.encoder_decoder:
            generated = sequences[:, 1:]  # after the decoder start token
        elif self.prompt_ids is not None:
            generated = sequences[:, self.prompt_ids.shape[1] :]
        else:
            generated = sequences  # from inputs_embeds only: the output holds new tokens alone
        lengths, ended = sequence_lengths(generated, self.eos, self.pad)
        reasoning = None
        if self.think is not None:
            start, end = self.think
            initial = torch.zeros(generated.shape[0], dtype=torch.bool, device=generated.device)
            if self.prompt_ids is not None and not self.encoder_decoder:
                opened = open_at_end(self.prompt_ids, start, end).to(generated.device)
                initial = opened.repeat_interleave(generated.shape[0] // max(1, opened.shape[0]))
            positions = torch.arange(generated.shape[1], device=generated.device)
            counted = positions.unsqueeze(0) < lengths.unsqueeze(1)
            reasoning = int((reasoning_mask(generated, start, end, initial) & counted).sum())
        record.usage = Usage(
            input_tokens=self.input_tokens,
            cache_read_tokens=self.cache_read,
            output_tokens=int(lengths.sum()),
            reasoning_tokens=reasoning,
            output_source=Source.REPORTED,
            # Exact, but computed by thinkmeter from token ids rather than read off a report.
            reasoning_source=Source.DERIVED if reasoning is not None else Source.UNKNOWN,
        )
        full = generated.shape[1]
        record.finish_reasons = tuple(
            "stop" if stop or length < full else "length" for stop, length in zip(ended.tolist(), lengths.tolist())
        )

    def _set_timings(self, record: CallRecord) -> None:
        clock, started = self.clock, self.call.started
        if clock.first is None:
            return
        record.time_to_first_token = clock.first - started
        if clock.first_visible is not None:
            record.time_to_first_visible_token = clock.first_visible - started
        if clock.steps > 1 and clock.last is not None:
            record.time_per_output_token = (clock.last - clock.first) / (clock.steps - 1)


def _id_list(value: Any) -> list[int]:
    if value is None:
        return []
    if isinstance(value, int):
        return [value]
    if hasattr(value, "tolist"):
        value = value.tolist()
    return [int(v) for v in (value if isinstance(value, (list, tuple)) else [value])]


def _input_tokens(prompt_ids: Any, embeds: Any, mask: Any) -> int | None:
    """Prompt tokens without padding: the attention mask's ones, else every position."""
    import torch

    if torch.is_tensor(mask) and mask.dim() == 2:
        return int(mask.sum())
    shape = prompt_ids.shape if prompt_ids is not None else embeds.shape[:2] if torch.is_tensor(embeds) else None
    return int(shape[0] * shape[1]) if shape is not None else None


def sequence_lengths(generated: Any, eos: list[int], pad: int | None) -> tuple[Any, Any]:
    """Per sequence: tokens generated (up to and including its first end-of-sequence token; trailing
    padding of a sequence that stopped early excluded), and whether it ended on end-of-sequence."""
    import torch

    rows, width = generated.shape
    lengths = torch.full((rows,), width, dtype=torch.long, device=generated.device)
    if pad is not None and width:
        trailing_pad = (generated == pad).flip(1).long().cumprod(1).sum(1)
        lengths = lengths - trailing_pad
    ended = torch.zeros(rows, dtype=torch.bool, device=generated.device)
    if eos and width:
        is_eos = torch.isin(generated, torch.tensor(eos, device=generated.device))
        ended = is_eos.any(1)
        lengths = torch.where(ended, is_eos.long().argmax(1) + 1, lengths)
    return lengths, ended


def thinking_after(ids: Any, start: int, end: int, initial: Any) -> Any:
    """Per position: whether a `<think>` is open after that token. The last tag so far decides;
    before any tag, `initial` (per sequence) does."""
    import torch

    positions = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
    last_start = torch.where(ids == start, positions, -1).cummax(dim=1).values
    last_end = torch.where(ids == end, positions, -1).cummax(dim=1).values
    untagged = (last_start < 0) & (last_end < 0)
    return (last_start > last_end) | (untagged & initial.unsqueeze(1))


def open_at_end(ids: Any, start: int, end: int) -> Any:
    """Per sequence: whether it ends inside `<think>` (a chat template that opens the thinking)."""
    import torch

    closed = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    return thinking_after(ids, start, end, closed)[:, -1] if ids.shape[1] else closed


def reasoning_mask(ids: Any, start: int, end: int, initial: Any) -> Any:
    """Per position: a reasoning token (inside `<think>`...`</think>`, the tags included)."""
    import torch

    before = torch.cat([initial.unsqueeze(1), thinking_after(ids, start, end, initial)[:, :-1]], dim=1)
    return before | (ids == start) | (ids == end)


def kv_cache_size(cache: Any) -> tuple[int, int] | None:
    """(bytes of the cache's key/value tensors, token positions cached = sequences x cached length)."""
    tensors = list(_kv_tensors(cache))
    if not tensors:
        return None
    unique = {id(t): t for t in tensors}.values()
    size = sum(t.numel() * t.element_size() for t in unique)
    return size, int(cache.get_seq_length()) * int(tensors[0].shape[0])


def _kv_tensors(cache: Any) -> Any:
    import torch

    if hasattr(cache, "self_attention_cache"):  # encoder-decoder: self- and cross-attention caches
        yield from _kv_tensors(cache.self_attention_cache)
        yield from _kv_tensors(cache.cross_attention_cache)
        return
    layers = getattr(cache, "layers", None)
    if layers is not None:
        for layer in layers:
            # keys / values, and a quantized layer's _quantized_keys / _quantized_values
            for name, value in vars(layer).items():
                if ("key" in name or "value" in name) and torch.is_tensor(value):
                    yield value
    elif hasattr(cache, "key_cache"):  # transformers 4.x
        yield from (t for t in (*cache.key_cache, *cache.value_cache) if torch.is_tensor(t))


@functools.cache
def _step_clock_class() -> type:
    import torch
    from transformers import StoppingCriteria

    class StepClock(StoppingCriteria):
        """Notes when each decoding step ends, and the first that yields a visible token. Never stops."""

        def __init__(self, think: tuple[int, int] | None, not_visible: list[int]) -> None:
            self.think = think
            self.not_visible = not_visible  # end-of-sequence and padding ids
            self.steps = 0
            self.first: float | None = None
            self.last: float | None = None
            self.first_visible: float | None = None
            self.thinking: Any = None  # per sequence: inside <think>...</think>

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            now = time.perf_counter()
            self.steps += 1
            self.last = now
            if self.first is None:
                self.first = now
            if self.first_visible is None:
                self._watch(input_ids, now)
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

        def _watch(self, input_ids: Any, now: float) -> None:
            if self.think is None:
                self.first_visible = now
                return
            start, end = self.think
            if self.thinking is None:
                self.thinking = open_at_end(input_ids[:, :-1], start, end)
            new = input_ids[:, -1]
            visible = ~(self.thinking | (new == start) | (new == end))
            if self.not_visible:
                visible &= ~torch.isin(new, torch.tensor(self.not_visible, device=new.device))
            if bool(visible.any()):
                self.first_visible = now
            self.thinking = (self.thinking | (new == start)) & (new != end)

    return StepClock
