"""A tiny GGUF whose replies are known before it runs: the exact ground truth for the llama.cpp tests.

The model is a llama-architecture network of one layer whose attention and FFN output projections are
zero, so the hidden state is the current token's embedding and the next token depends on the current
token alone: a designed bigram table. The margin between the designed next token and any other is 80
logits, so every sampler setting picks it. The chat template ends the prompt with a newline, and the
newline's successor opens the reasoning:

    <think> Let me carefully consider sheep </think> Sheep are extraordinarily woolly . <|im_end|>

The vocabulary is byte-level BPE (the 256 GPT-2 byte symbols, no merges) plus whole-word tokens that
the llama-bpe pre-tokenizer takes as they are, so any text the tests send is one token per UTF-8 byte
unless it is one of the reply's words. With EOS banned (`ignore_eos`) the reply runs on with " zzz"
repeated until max_tokens: a request as long as a test needs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"  # end of turn: the EOS token
THINK = "<think>"
END_THINK = "</think>"
REASONING_WORDS = ("Let", " me", " carefully", " consider", " sheep")
ANSWER_WORDS = ("Sheep", " are", " extraordinarily", " woolly", ".")
FILLER = " zzz"  # what the model says once EOS is banned

REASONING_TEXT = "".join(REASONING_WORDS)
ANSWER_TEXT = "".join(ANSWER_WORDS)
# Generated tokens of the designed reply: the reasoning span with its tags, the answer, EOS.
REASONING_TOKENS = 1 + len(REASONING_WORDS) + 1
ANSWER_TOKENS = len(ANSWER_WORDS)
COMPLETION_TOKENS = REASONING_TOKENS + ANSWER_TOKENS + 1
CONTEXT_LENGTH = 8192

# A ChatML template that renders an assistant's reasoning between <think> tags, so llama.cpp's chat
# parser learns the reasoning markers from it and splits reasoning_content off the reply.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message.role + '\\n' -}}"
    "{%- if message.role == 'assistant' and message.reasoning_content -%}"
    "{{- '<think>' + message.reasoning_content + '</think>' -}}"
    "{%- endif -%}"
    "{{- (message.content or '') + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

_N_EMBD = 64
_N_FF = 64
_N_HEAD = 4
_TOP = 10.0  # output weight of the designed successor; x sqrt(n_embd) after the RMS norm = 80 logits
_SECOND = 5.0  # the successor when the first is banned (EOS under ignore_eos): 40 logits


def _byte_symbols() -> list[str]:
    """GPT-2's byte-to-unicode table: the printable symbol byte-level BPE uses for each byte."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    table = dict(zip(printable, codes))
    return [chr(table[byte]) for byte in range(256)]


_BYTES = _byte_symbols()


def _symbol(text: str) -> str:
    return "".join(_BYTES[b] for b in text.encode("utf-8"))


def _vocabulary() -> tuple[list[str], list[int]]:
    """Token strings and types (1 normal, 3 control, 4 user-defined): bytes, specials, words."""
    tokens = list(_BYTES)
    types = [1] * 256
    for special, kind in ((IM_START, 3), (IM_END, 3), (THINK, 4), (END_THINK, 4)):
        tokens.append(special)
        types.append(kind)
    for word in (*REASONING_WORDS, *ANSWER_WORDS, FILLER):
        symbol = _symbol(word)
        if symbol not in tokens:
            tokens.append(symbol)
            types.append(1)
    return tokens, types


def prompt_tokens(messages: list[dict[str, str]]) -> int:
    """Tokens of the chat prompt the template renders: one per special token, one per UTF-8 byte of
    the rest (the tests' prompts use none of the reply's words)."""
    total = 0
    for message in messages:
        total += 2 + len((message["role"] + "\n" + message["content"] + "\n").encode("utf-8"))
    return total + 1 + len("assistant\n".encode("utf-8"))


def write_model(path: Path) -> Path:
    """Write the GGUF to `path` and return it."""
    import gguf

    tokens, types = _vocabulary()
    index = {token: i for i, token in enumerate(tokens)}
    eos = index[IM_END]
    filler = index[_symbol(FILLER)]
    reply = [index[THINK], *(index[_symbol(w)] for w in REASONING_WORDS), index[END_THINK]]
    reply += [*(index[_symbol(w)] for w in ANSWER_WORDS), eos]
    # state of each token -> its successor; every token not in the chain shares state 0 (-> EOS)
    chain = [index[_symbol("\n")], *reply[:-1]]
    n_vocab = len(tokens)
    embeddings = np.zeros((n_vocab, _N_EMBD), dtype=np.float32)
    embeddings[:, 0] = 1.0
    output = np.zeros((n_vocab, _N_EMBD), dtype=np.float32)
    output[eos, 0] = _TOP
    output[filler, 0] = _SECOND
    for state, (token, successor) in enumerate(zip(chain, reply), start=1):
        embeddings[token] = 0.0
        embeddings[token, state] = 1.0
        output[successor, state] = _TOP
        if successor == eos:
            output[filler, state] = _SECOND
    assert len(chain) < _N_EMBD

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("thinkmeter-bigram")
    writer.add_context_length(CONTEXT_LENGTH)
    writer.add_embedding_length(_N_EMBD)
    writer.add_block_count(1)
    writer.add_feed_forward_length(_N_FF)
    writer.add_head_count(_N_HEAD)
    writer.add_head_count_kv(_N_HEAD)
    writer.add_rope_dimension_count(_N_EMBD // _N_HEAD)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_vocab_size(n_vocab)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("llama-bpe")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges([_symbol(" ") + _symbol("z")])  # llama.cpp wants the key; words come whole
    writer.add_bos_token_id(index[IM_START])
    writer.add_eos_token_id(eos)
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)

    zeros = np.zeros
    writer.add_tensor("token_embd.weight", embeddings)
    writer.add_tensor("output_norm.weight", np.ones(_N_EMBD, dtype=np.float32))
    writer.add_tensor("output.weight", output)
    writer.add_tensor("blk.0.attn_norm.weight", np.ones(_N_EMBD, dtype=np.float32))
    for name in ("attn_q", "attn_k", "attn_v"):
        writer.add_tensor(f"blk.0.{name}.weight", np.full((_N_EMBD, _N_EMBD), 0.01, dtype=np.float32))
    writer.add_tensor("blk.0.attn_output.weight", zeros((_N_EMBD, _N_EMBD), dtype=np.float32))
    writer.add_tensor("blk.0.ffn_norm.weight", np.ones(_N_EMBD, dtype=np.float32))
    writer.add_tensor("blk.0.ffn_gate.weight", np.full((_N_FF, _N_EMBD), 0.01, dtype=np.float32))
    writer.add_tensor("blk.0.ffn_up.weight", np.full((_N_FF, _N_EMBD), 0.01, dtype=np.float32))
    writer.add_tensor("blk.0.ffn_down.weight", zeros((_N_EMBD, _N_FF), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
