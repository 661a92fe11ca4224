"""In-process transformers: generate() on a tiny randomly initialised Llama built from a config, on the
CPU, offline. A scripted logits processor (the caller's own) makes the model write known tokens, so
input, output, reasoning and visible counts are known exactly, and the KV cache is checked against
2 x layers x kv_heads x head_dim x bytes x tokens. A caller's streamer times the true first tokens.
"""

from __future__ import annotations

import os
import time

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedTokenizerFast,
    StoppingCriteria,
    StoppingCriteriaList,
)
from transformers.generation.streamers import BaseStreamer

import thinkmeter
from tests.instrumented import instrumented  # noqa: F401  (fixture)
from thinkmeter.schemas import semconv as sc

PAD, EOS, THINK, END = 0, 1, 3, 4
WORDS = ["<pad>", "<eos>", "<unk>", "<think>", "</think>", *(f"w{i}" for i in range(27))]
LAYERS, KV_HEADS, HEAD_DIM = 2, 2, 16
KV_BYTES_PER_TOKEN = 2 * LAYERS * KV_HEADS * HEAD_DIM * 4  # float32
TIMING_TOLERANCE_S = 0.05


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tokenizer and a 2-layer Llama saved side by side, loaded back the way applications load them."""
    path = tmp_path_factory.mktemp("tiny-llama")
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    tokenizer.padding_side = "left"
    tokenizer.save_pretrained(path)
    config = LlamaConfig(
        vocab_size=len(WORDS),
        hidden_size=LAYERS * 32,
        intermediate_size=128,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        num_key_value_heads=KV_HEADS,
        max_position_embeddings=128,
        pad_token_id=PAD,
        eos_token_id=EOS,
        bos_token_id=None,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def model(model_dir):
    return AutoModelForCausalLM.from_pretrained(model_dir).eval()


@pytest.fixture
def tokenizer(instrumented, model_dir):
    """Loaded while instrumented: thinkmeter learns the <think> / </think> ids of the model's tokenizer."""
    return AutoTokenizer.from_pretrained(model_dir)


class Script(LogitsProcessor):
    """The caller's processor: row r writes rows[r][step] (its last token once the script runs out)."""

    def __init__(self, rows: list[list[int]]) -> None:
        self.rows = rows
        self.step = 0

    def __call__(self, input_ids, scores):
        forced = torch.full_like(scores, -1e9)
        for row, tokens in enumerate(self.rows):
            forced[row, tokens[min(self.step, len(tokens) - 1)]] = 0
        self.step += 1
        return forced


class Clock(BaseStreamer):
    """The caller's streamer: when each put() came (the first holds the prompt)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.values: list[list[int]] = []

    def put(self, value) -> None:
        self.times.append(time.perf_counter())
        self.values.append(value.flatten().tolist())

    def end(self) -> None:
        pass


def scripted(rows: list[list[int]]) -> LogitsProcessorList:
    return LogitsProcessorList([Script(rows)])


def test_batch_counts_reasoning_and_kv_cache(instrumented, model, tokenizer):
    batch = tokenizer(["w1 w2 w3", "w4 w5"], return_tensors="pt", padding=True)
    rows = [
        [THINK, 10, 11, 12, END, 13, 14, EOS],  # 5 reasoning, 3 visible (the end-of-sequence included)
        [THINK, 10, END, 15, EOS],  # 3 reasoning, 2 visible, then padding
    ]
    out = model.generate(**batch, max_new_tokens=8, logits_processor=scripted(rows), return_dict_in_generate=True)
    assert out.sequences[1, -3:].tolist() == [PAD, PAD, PAD]
    attrs = instrumented.only_attributes()
    assert attrs[sc.PROVIDER] == attrs[sc.ENGINE] == "transformers"
    assert attrs[sc.OPERATION] == "text_completion"
    assert attrs[sc.REQUEST_MODEL] == model.config.name_or_path
    assert attrs[sc.REQUEST_MAX_TOKENS] == 8
    assert attrs[sc.INPUT_TOKENS] == 5  # the pad of the shorter prompt excluded
    assert attrs[sc.OUTPUT_TOKENS] == 13
    assert attrs[sc.REASONING_TOKENS] == 8
    assert attrs[sc.VISIBLE_OUTPUT_TOKENS] == 5
    assert attrs[sc.OUTPUT_SOURCE] == "reported" and attrs[sc.REASONING_SOURCE] == "derived"
    assert attrs[sc.RESPONSE_FINISH_REASONS] == ("stop", "stop")
    # The cache holds prompt + new - 1 positions per sequence (the last token's K/V is never computed).
    cached = out.past_key_values.get_seq_length()
    assert cached == 3 + 8 - 1
    assert attrs[sc.KV_CACHE_TOKENS] == 2 * cached
    assert attrs[sc.KV_CACHE_BYTES] == KV_BYTES_PER_TOKEN * 2 * cached


def test_timings_match_the_callers_streamer(instrumented, model, tokenizer):
    prompt = tokenizer(["w1 w2"], return_tensors="pt")
    streamer = Clock()
    script = [THINK, 10, 11, 12, 13, END, 14, 15, EOS]
    called = time.perf_counter()
    model.generate(prompt.input_ids, max_new_tokens=12, logits_processor=scripted([script]), streamer=streamer)
    assert streamer.values[1:] == [[token] for token in script]  # the caller's streamer saw every token
    attrs = instrumented.only_attributes()
    # put() number 0 carries the prompt, number i the i-th generated token.
    assert attrs[sc.TIME_TO_FIRST_TOKEN] == pytest.approx(streamer.times[1] - called, abs=TIMING_TOLERANCE_S)
    first_visible = streamer.times[1 + script.index(END) + 1] - called
    assert attrs[sc.TIME_TO_FIRST_VISIBLE_TOKEN] == pytest.approx(first_visible, abs=TIMING_TOLERANCE_S)
    steps = streamer.times[-1] - streamer.times[1]
    assert attrs[sc.TIME_PER_OUTPUT_TOKEN] == pytest.approx(steps / (len(script) - 1), abs=TIMING_TOLERANCE_S)
    assert attrs[sc.REQUEST_STREAM] is True
    assert attrs[sc.OUTPUT_TOKENS] == len(script) and attrs[sc.REASONING_TOKENS] == script.index(END) + 1


def test_kv_cache_without_return_dict_and_callers_criteria(instrumented, model, tokenizer):
    class StopAfter(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), input_ids.shape[1] >= 6, dtype=torch.bool)

    prompt = tokenizer(["w1 w2 w3"], return_tensors="pt")
    sequences = model.generate(
        **prompt,
        max_new_tokens=10,
        logits_processor=scripted([[20, 21, 22, 23, 24, 25]]),
        stopping_criteria=StoppingCriteriaList([StopAfter()]),
    )
    assert sequences.shape[1] == 6  # the caller's criterion still stops the call
    attrs = instrumented.only_attributes()
    assert attrs[sc.OUTPUT_TOKENS] == 3
    assert attrs[sc.REASONING_TOKENS] == 0 and attrs[sc.VISIBLE_OUTPUT_TOKENS] == 3
    assert attrs[sc.RESPONSE_FINISH_REASONS] == ("length",)  # no end-of-sequence token
    assert attrs[sc.KV_CACHE_BYTES] == KV_BYTES_PER_TOKEN * (6 - 1)
    assert attrs[sc.TIME_TO_FIRST_VISIBLE_TOKEN] == attrs[sc.TIME_TO_FIRST_TOKEN]


def test_a_second_turn_reads_the_first_turns_cache(instrumented, model, tokenizer):
    first = tokenizer(["w1 w2 w3"], return_tensors="pt").input_ids
    turn = model.generate(first, max_new_tokens=3, logits_processor=scripted([[10, 11, 12]]), return_dict_in_generate=True)
    held = turn.past_key_values.get_seq_length()
    second = torch.cat([turn.sequences, tokenizer(["w5 w6"], return_tensors="pt").input_ids], dim=1)
    model.generate(second, past_key_values=turn.past_key_values, max_new_tokens=2, logits_processor=scripted([[13, 14]]))
    opening, follow_up = sorted(instrumented.all(), key=lambda span: span.start_time)
    assert opening.attributes[sc.CACHE_READ_TOKENS] == 0
    assert follow_up.attributes[sc.INPUT_TOKENS] == second.shape[1]
    assert follow_up.attributes[sc.CACHE_READ_TOKENS] == held == 3 + 3 - 1
    assert follow_up.attributes[sc.KV_CACHE_BYTES] == KV_BYTES_PER_TOKEN * (second.shape[1] + 2 - 1)


def test_thinking_opened_by_the_prompt(instrumented, model, tokenizer):
    """Chat templates of thinking models often end the prompt with <think>: generation starts inside it."""
    prompt = tokenizer(["w1 w2 <think>"], return_tensors="pt")
    model.generate(**prompt, max_new_tokens=6, logits_processor=scripted([[10, 11, END, 12, EOS]]))
    attrs = instrumented.only_attributes()
    assert attrs[sc.OUTPUT_TOKENS] == 5
    assert attrs[sc.REASONING_TOKENS] == 3
    assert attrs[sc.TIME_TO_FIRST_VISIBLE_TOKEN] > attrs[sc.TIME_TO_FIRST_TOKEN]


def test_pipeline_and_tokenizer_argument(instrumented, model, tokenizer):
    generator = transformers.pipeline("text-generation", model=model, tokenizer=tokenizer)
    generator("w1 w2", max_new_tokens=4, logits_processor=scripted([[THINK, 10, END, 11]]), do_sample=False)
    # A model whose name matches no loaded tokenizer: the caller's tokenizer= gives the tags.
    anonymous = LlamaForCausalLM(model.config.__class__(**{**model.config.to_dict(), "_name_or_path": ""})).eval()
    anonymous.generate(
        tokenizer(["w1"], return_tensors="pt").input_ids,
        max_new_tokens=4,
        logits_processor=scripted([[THINK, END, 11, 12]]),
        tokenizer=tokenizer,
    )
    anonymous.generate(tokenizer(["w1"], return_tensors="pt").input_ids, max_new_tokens=2, logits_processor=scripted([[THINK, END]]))
    piped, with_tokenizer, untagged = sorted(instrumented.all(), key=lambda span: span.start_time)
    assert piped.attributes[sc.REASONING_TOKENS] == 3 and piped.attributes[sc.OUTPUT_TOKENS] == 4
    assert with_tokenizer.attributes[sc.REASONING_TOKENS] == 2 and sc.REQUEST_MODEL not in with_tokenizer.attributes
    assert sc.REASONING_TOKENS not in untagged.attributes and untagged.attributes[sc.REASONING_SOURCE] == "unknown"


def test_failure_is_the_callers_and_later_calls_are_traced(instrumented, model, tokenizer):
    class Broken(LogitsProcessor):
        def __call__(self, input_ids, scores):
            raise RuntimeError("the caller's processor failed")

    prompt = tokenizer(["w1"], return_tensors="pt")
    with pytest.raises(RuntimeError, match="caller's processor"):
        model.generate(**prompt, max_new_tokens=3, logits_processor=LogitsProcessorList([Broken()]))
    model.generate(**prompt, max_new_tokens=2, logits_processor=scripted([[10, 11]]))
    failed, ok = sorted(instrumented.all(), key=lambda span: span.start_time)
    assert failed.attributes[sc.ERROR_TYPE] == "RuntimeError" and sc.OUTPUT_TOKENS not in failed.attributes
    assert ok.attributes[sc.OUTPUT_TOKENS] == 2


def test_uninstrument_restores_generate(instrumented, model, tokenizer):
    thinkmeter.uninstrument()
    model.generate(**tokenizer(["w1"], return_tensors="pt"), max_new_tokens=2, logits_processor=scripted([[10, 11]]))
    assert instrumented.all() == []
