#!/usr/bin/env python3
"""Generate the golden files that petl-models' Rust parity tests compare against.

petl reimplements BERT/RoBERTa encoders in Rust. Its parity tests load the same
weights and inputs as the files written here and check that petl's outputs match
the PyTorch/transformers reference within a small tolerance.

Written under --out (normally crates/petl-models/tests/golden):

  minilm/golden.safetensors
      A padded batch tokenised with the model's tokenizer.json, plus BertModel's
      last_hidden_state / pooler_output and a seeded random 2-way classifier head
      (classifier.weight / classifier.bias) with the resulting logits.
      The MiniLM weights themselves are NOT copied; the metadata records the
      sha256 of the model.safetensors used so tests can detect a mismatch.

  tiny-bert/{config.json, model.safetensors, golden.safetensors}
  tiny-roberta/{config.json, model.safetensors, golden.safetensors}
      Tiny random-init sequence-classification models (no download), weights
      re-drawn from N(0, 0.2) (LayerNorm weights 1 + N(0, 0.1)) so that mistakes
      are not hidden by near-zero weights, with hand-made padded inputs and the
      reference last_hidden_state (base model) and logits (full model).

Every golden.safetensors carries string metadata: torch / transformers versions,
seed, attention implementation, the inputs (JSON) and the sha256 of the weights.

Usage (see README.md next to this file):
  PY=$(scripts/python-env.sh | tail -n1)
  $PY crates/petl-models/tests/golden/gen/make_golden.py \
      --minilm /path/to/all-MiniLM-L6-v2 --out crates/petl-models/tests/golden
"""

import argparse
import hashlib
import json
import math
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    RobertaConfig,
    RobertaForSequenceClassification,
)

SEED = 0
ATTN_IMPL = "eager"
MINILM_MAX_LEN = 32
MINILM_INPUTS = [
    "The quick brown fox jumps over the lazy dog.",
    "petl adapts frozen transformers.",
    "A",
    ["A man is playing a guitar.", "Someone plays an instrument."],
]
TINY_ROW_LENGTHS = [11, 7, 4]
TINY_SEQ_LEN = 11
TINY_VOCAB = 99
TINY_MIN_ID = 3
INIT_STD = 0.2
LN_STD = 0.1


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minilm", type=Path,
                   help="local HF dir of all-MiniLM-L6-v2 (config.json, model.safetensors, tokenizer.json)")
    p.add_argument("--out", required=True, type=Path,
                   help="golden output dir, e.g. crates/petl-models/tests/golden")
    p.add_argument("--skip-minilm", action="store_true",
                   help="only regenerate the tiny random-init models")
    args = p.parse_args()
    if args.minilm is None and not args.skip_minilm:
        p.error("--minilm is required unless --skip-minilm is given")
    return args


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def base_metadata(extra):
    meta = {
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "seed": str(SEED),
        "dtype": "float32",
        "attn_implementation": ATTN_IMPL,
        "generator": "crates/petl-models/tests/golden/gen/make_golden.py",
    }
    meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in extra.items()})
    return meta


def save_golden(path, tensors, metadata):
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    save_file(tensors, str(path), metadata=metadata)
    print(f"wrote {path} ({path.stat().st_size} bytes)")


# ----------------------------------------------------------------------------- MiniLM

def tokenize_minilm(model_dir):
    """One right-padded batch (mixing single sentences and a pair)."""
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    encs = []
    for item in MINILM_INPUTS:
        if isinstance(item, str):
            encs.append(tok(item, truncation=True, max_length=MINILM_MAX_LEN,
                            return_token_type_ids=True, return_attention_mask=True))
        else:
            encs.append(tok(item[0], item[1], truncation=True, max_length=MINILM_MAX_LEN,
                            return_token_type_ids=True, return_attention_mask=True))
    feats = [{k: e[k] for k in ("input_ids", "token_type_ids", "attention_mask")} for e in encs]
    batch = tok.pad(feats, padding=True, return_tensors="pt")
    return {k: batch[k].to(torch.int64) for k in ("input_ids", "token_type_ids", "attention_mask")}


def make_minilm(model_dir, out_dir):
    inputs = tokenize_minilm(model_dir)
    base = BertModel.from_pretrained(str(model_dir), dtype=torch.float32,
                                     attn_implementation=ATTN_IMPL).eval()
    torch.manual_seed(SEED)
    clf = BertForSequenceClassification.from_pretrained(
        str(model_dir), num_labels=2, dtype=torch.float32, attn_implementation=ATTN_IMPL).eval()
    with torch.no_grad():
        out = base(**inputs)
        logits = clf(**inputs).logits
    tensors = dict(inputs)
    tensors.update({
        "last_hidden_state": out.last_hidden_state,
        "pooler_output": out.pooler_output,
        "classifier.weight": clf.classifier.weight,
        "classifier.bias": clf.classifier.bias,
        "logits": logits,
    })
    meta = base_metadata({
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "model_safetensors_sha256": sha256_file(model_dir / "model.safetensors"),
        "input_texts": MINILM_INPUTS,
        "max_length": str(MINILM_MAX_LEN),
        "padding": "right, to longest in batch",
        "num_labels": "2",
    })
    save_golden(out_dir / "minilm" / "golden.safetensors", tensors, meta)


# ----------------------------------------------------------------------------- tiny models

def tiny_common():
    return dict(vocab_size=TINY_VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=37, max_position_embeddings=64, hidden_act="gelu")


def tiny_bert_model():
    cfg = BertConfig(**tiny_common(), layer_norm_eps=1e-12, type_vocab_size=2, pad_token_id=0,
                     num_labels=3, attn_implementation=ATTN_IMPL)
    return BertForSequenceClassification(cfg)


def tiny_roberta_model():
    cfg = RobertaConfig(**tiny_common(), layer_norm_eps=1e-5, type_vocab_size=1, pad_token_id=1,
                        bos_token_id=0, eos_token_id=2, num_labels=2, attn_implementation=ATTN_IMPL)
    return RobertaForSequenceClassification(cfg)


def reinit_(model):
    """Every parameter ~ N(0, INIT_STD); LayerNorm weights ~ 1 + N(0, LN_STD)."""
    ln_weights = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.LayerNorm)}
    with torch.no_grad():
        for _, p in model.named_parameters():
            if id(p) in ln_weights:
                p.copy_(1.0 + LN_STD * torch.randn_like(p))
            else:
                p.copy_(INIT_STD * torch.randn_like(p))


def tiny_inputs(kind):
    """input_ids / attention_mask / token_type_ids [3, 11], right padded."""
    g = torch.Generator().manual_seed(SEED)
    b, t = len(TINY_ROW_LENGTHS), TINY_SEQ_LEN
    pad = 0 if kind == "bert" else 1
    ids = torch.randint(TINY_MIN_ID, TINY_VOCAB, (b, t), generator=g, dtype=torch.int64)
    mask = torch.zeros(b, t, dtype=torch.int64)
    for r, n in enumerate(TINY_ROW_LENGTHS):
        mask[r, :n] = 1
        ids[r, n:] = pad
        if kind == "roberta":
            ids[r, 0] = 0  # <s>
            ids[r, n - 1] = 2  # </s>
    types = torch.zeros(b, t, dtype=torch.int64)
    if kind == "bert":
        types[0, t // 2:] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def make_tiny(kind, out_dir):
    torch.manual_seed(SEED)
    model = tiny_bert_model() if kind == "bert" else tiny_roberta_model()
    reinit_(model)
    model.eval()
    model_dir = out_dir / f"tiny-{kind}"
    model_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(model_dir))  # transformers 5 always writes safetensors
    inputs = tiny_inputs(kind)
    base = getattr(model, model.base_model_prefix)
    with torch.no_grad():
        base_out = base(**inputs)
        logits = model(**inputs).logits
    tensors = dict(inputs)
    tensors["last_hidden_state"] = base_out.last_hidden_state
    if base_out.pooler_output is not None:
        tensors["pooler_output"] = base_out.pooler_output
    tensors["logits"] = logits
    meta = base_metadata({
        "model": f"tiny-{kind} (random init, N(0,{INIT_STD}), LayerNorm weight 1+N(0,{LN_STD}))",
        "model_safetensors_sha256": sha256_file(model_dir / "model.safetensors"),
        "row_lengths": TINY_ROW_LENGTHS,
        "input_ids": inputs["input_ids"].tolist(),
        "num_labels": str(model.config.num_labels),
    })
    save_golden(model_dir / "golden.safetensors", tensors, meta)
    for f in sorted(model_dir.iterdir()):
        print(f"  {f.name}: {f.stat().st_size} bytes")


def main():
    args = parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(SEED)
    torch.set_default_dtype(torch.float32)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.skip_minilm:
        make_minilm(args.minilm, args.out)
    make_tiny("bert", args.out)
    make_tiny("roberta", args.out)


if __name__ == "__main__":
    main()
