#!/usr/bin/env python3
"""Check that a directory written by petl's GGUF export loads in transformers like the GGUF itself.

petl's `GgufModel::export_hf_dir` writes config.json, generation_config.json, model.safetensors (f32),
tokenizer.json and tokenizer_config.json. This script loads that directory with the plain Hugging Face
classes and the original .gguf with transformers' GGUF loader, and compares:

  * the config fields that define the computation,
  * every weight (max |diff|),
  * tokenizer ids on a set of strings, and the chat template,
  * the logits of a short chat prompt.

It exits non-zero on any mismatch.

Usage:
  cargo run --release -p petl-models --example gguf_export -- smollm2 /tmp/smollm2-hf
  PY=$(scripts/python-env.sh | tail -n1)
  $PY crates/petl-models/tests/golden/gen/check_gguf_export.py \
      --gguf ~/.cache/petl/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf --export /tmp/smollm2-hf
"""

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

STRINGS = [
    "Hello, world!",
    "Numbers: 0 7 42 1234567890 3.14159",
    "Unicode: café naïve — “quotes” 日本語 😀",
    "def foo(x):\n    return x ** 2\n",
    "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
    "   \t \n  whitespace   ",
]
CONFIG_KEYS = [
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", type=Path, required=True)
    ap.add_argument("--export", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(2)
    failures = []

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / args.gguf.name).symlink_to(args.gguf.resolve())
        ref_config = AutoConfig.from_pretrained(d, gguf_file=args.gguf.name)
        ref_tok = AutoTokenizer.from_pretrained(d, gguf_file=args.gguf.name)
        ref = AutoModelForCausalLM.from_pretrained(d, gguf_file=args.gguf.name, dtype=torch.float32).eval()
    config = AutoConfig.from_pretrained(args.export)
    tok = AutoTokenizer.from_pretrained(args.export)
    model = AutoModelForCausalLM.from_pretrained(args.export, dtype=torch.float32).eval()

    a, b = config.to_dict(), ref_config.to_dict()
    for key in CONFIG_KEYS:
        if a.get(key) != b.get(key):
            failures.append(f"config {key}: export {a.get(key)!r}, gguf {b.get(key)!r}")
    if a["rope_parameters"]["rope_theta"] != b["rope_parameters"]["rope_theta"]:
        failures.append(f"rope_theta: export {a['rope_parameters']}, gguf {b['rope_parameters']}")

    ref_sd, sd = ref.state_dict(), model.state_dict()
    if sorted(ref_sd) != sorted(sd):
        failures.append(f"weight names differ: {sorted(set(ref_sd) ^ set(sd))[:5]}")
    worst = max((ref_sd[k] - sd[k]).abs().max().item() for k in ref_sd if k in sd)
    print(f"weights: {len(sd)} tensors, max |diff| = {worst:.2e}")
    if worst > 0:
        failures.append(f"weights differ by up to {worst}")

    for s in STRINGS:
        x, y = tok(s)["input_ids"], ref_tok(s)["input_ids"]
        if x != y:
            failures.append(f"ids of {s!r}: export {x}, gguf {y}")
        if tok.decode(x) != ref_tok.decode(y):
            failures.append(f"decode of {s!r} differs")
    print(f"tokenizer: {len(STRINGS)} strings compared")
    if tok.chat_template != ref_tok.chat_template:
        failures.append("chat templates differ")

    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = ref_tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = torch.tensor([ref_tok(prompt)["input_ids"]])
    with torch.no_grad():
        diff = (model(ids).logits - ref(ids).logits).abs().max().item()
    print(f"logits on a {ids.shape[1]}-token chat prompt: max |diff| = {diff:.2e}")
    if diff > 1e-4:
        failures.append(f"logits differ by {diff}")

    for f in failures:
        print("MISMATCH:", f)
    print("OK" if not failures else f"{len(failures)} mismatches")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
