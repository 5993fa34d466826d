#!/usr/bin/env python3
"""Generate the golden files that petl's BART / mBART / Marian parity tests compare against.

Written under --out (normally crates/petl-models/tests/golden), for each of tiny-bart,
tiny-mbart and tiny-marian (--models picks a subset):

  {config.json, model.safetensors}
      A tiny random-init BartForConditionalGeneration / MBartForConditionalGeneration /
      MarianMTModel (d_model 32, 2 encoder + 2 decoder layers, 4 heads, ffn 64, vocab 96,
      64 positions), every trainable parameter re-drawn from N(0, 0.2) (LayerNorm weights
      1 + N(0, 0.1)) and final_logits_bias from N(0, 0.2), so mistakes are not hidden by
      near-zero weights. BART is post-LN without embedding scaling; mBART is pre-LN with final
      layer norms and sqrt(d) embedding scaling; Marian is post-LN with sqrt(d) embedding
      scaling, swish, no layernorm_embedding and frozen sinusoidal positions (kept as
      transformers makes them, and left out of model.safetensors as transformers saves it).
      Special ids: BART / mBART pad 1, bos 0, eos 2 (mBART's decoder start 3 stands in for a
      language code); Marian pad 95 (the last id, as in opus-mt), eos 0, no bos, decoder start
      = pad.

  golden.safetensors
      A padded batch (input_ids / attention_mask [3, 9]: row lengths 9, 6, 3; labels
      [3, 7] right-padded with pad (BART `<s> … </s>`, mBART `… </s> <lang>`, Marian
      `… </s>`), decoder_input_ids = the model's own shift_tokens_right of labels,
      decoder_attention_mask = 1 where the label is real, plus 1 at the start):
        encoder_last_hidden_state [3, 9, 32], logits [3, 7, 96]
      LoRA (peft LoraConfig r=4, lora_alpha=8, target_modules q_proj + v_proj, which peft
      applies to encoder self_attn and to decoder self_attn AND encoder_attn; lora_B re-drawn
      from N(0, 0.3) so the delta is not zero):
        logits_lora [3, 7, 96], loss_lora (mean cross-entropy over real label tokens),
        the factors under petl's parameter names (delta0.layer{L}.{query,value,cross_query,
        cross_value}.{down,up}.weight, L counted over encoder then decoder blocks;
        down = lora_A [4, 32], up = lora_B [32, 4]; scale alpha/r = 2) and their gradients
        `grad.<name>` from torch autograd.
      Prefix tuning (3 prefix vectors per layer for every attention: encoder self-attention,
      decoder self-attention and cross-attention, drawn from N(0, 0.5)), under petl's names
      delta0.layer{L}.prefix.{keys,values} (self-attention, L = 0..3) and
      delta0.layer{L}.cross_prefix.{keys,values} (cross-attention, L = 2..3), [3, 32] each:
        logits_prefix [3, 7, 96]: every attention's keys/values get the prefix prepended and
          the mask gets zeros (always attended) in front, through a small monkeypatch of
          {Bart,MBart,Marian}Attention.forward (`prefixed_attention` below), positions unchanged
          (He et al.'s code); loss_prefix and `grad.<name>` for every prefix tensor.
        logits_prefix_pkv [3, 7, 96]: the decoder's self- and cross-attention prefixes passed
          the Hugging Face way, as an EncoderDecoderCache in past_key_values (is_updated
          cleared as peft does, the cross mask extended by the prefix), the encoder prefix
          through the same monkeypatch. transformers then numbers the decoder positions after
          the prefix (petl's `shift_positions = true`).
      Marian only: embed_positions [64, 32], transformers' sinusoidal table (the same in both
        stacks; not in model.safetensors), for the test of checkpoints that store it.

  generate.json
      For decoding tests: the encoder batch, the generation settings, greedy ids
      (max_new_tokens 12; plain, and with no_repeat_ngram_size 2) and beam-search ids +
      sequence scores (num_beams 3, no_repeat_ngram_size 2, length_penalty 1.0 and 2.0).

Every golden.safetensors carries string metadata: torch / transformers / peft versions, seed,
attention implementation, the inputs (JSON) and the sha256 of model.safetensors.

Usage:
  PY=$(scripts/python-env.sh | tail -n1)
  $PY crates/petl-models/tests/golden/gen/make_seq2seq_golden.py --out crates/petl-models/tests/golden
  (add e.g. `--models marian` to rewrite only tiny-marian)
"""

import argparse
import hashlib
import json
from pathlib import Path

import peft
import torch
import transformers
from safetensors.torch import save_file
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    MarianConfig,
    MarianMTModel,
    MBartConfig,
    MBartForConditionalGeneration,
)
from transformers.cache_utils import DynamicCache, EncoderDecoderCache
from transformers.models.bart import modeling_bart
from transformers.models.bart.modeling_bart import shift_tokens_right as bart_shift
from transformers.models.marian import modeling_marian
from transformers.models.marian.modeling_marian import shift_tokens_right as marian_shift
from transformers.models.mbart import modeling_mbart
from transformers.models.mbart.modeling_mbart import shift_tokens_right as mbart_shift

SEED = 0
ATTN_IMPL = "eager"
VOCAB = 96
D = 32
ENC_LAYERS = 2
DEC_LAYERS = 2
HEADS = 4
FFN = 64
MAX_POS = 64
PAD, BOS, EOS = 1, 0, 2
MBART_START = 3  # stands in for mBART's target-language code
MARIAN_PAD, MARIAN_EOS = VOCAB - 1, 0  # opus-mt: </s> = 0, <pad> = the last id = decoder start
MIN_ID = 4
KINDS = ("bart", "mbart", "marian")
SRC_LENGTHS = [9, 6, 3]
TGT_LENGTHS = [7, 5, 2]
INIT_STD = 0.2
LN_STD = 0.1
LORA_R, LORA_ALPHA = 4, 8
LORA_B_STD = 0.3
PREFIX_LEN = 3
PREFIX_STD = 0.5
MAX_NEW_TOKENS = 12
NUM_BEAMS = 3
NO_REPEAT_NGRAM = 2
LENGTH_PENALTIES = [1.0, 2.0]


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pad_id(kind):
    return MARIAN_PAD if kind == "marian" else PAD


def make_model(kind):
    shape = dict(
        vocab_size=VOCAB, d_model=D, encoder_layers=ENC_LAYERS, decoder_layers=DEC_LAYERS,
        encoder_attention_heads=HEADS, decoder_attention_heads=HEADS, encoder_ffn_dim=FFN,
        decoder_ffn_dim=FFN, max_position_embeddings=MAX_POS, attn_implementation=ATTN_IMPL,
    )
    if kind == "marian":
        cfg = MarianConfig(**shape, activation_function="swish", pad_token_id=MARIAN_PAD,
                           bos_token_id=None, eos_token_id=MARIAN_EOS, forced_eos_token_id=MARIAN_EOS,
                           decoder_start_token_id=MARIAN_PAD, scale_embedding=True,
                           share_encoder_decoder_embeddings=True)
        return MarianMTModel(cfg)
    common = dict(
        **shape, activation_function="gelu",
        pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS, forced_eos_token_id=EOS,
    )
    if kind == "bart":
        cfg = BartConfig(**common, scale_embedding=False, decoder_start_token_id=EOS)
        return BartForConditionalGeneration(cfg)
    cfg = MBartConfig(**common, scale_embedding=True, decoder_start_token_id=MBART_START)
    return MBartForConditionalGeneration(cfg)


def reinit_(model):
    """Every trainable parameter ~ N(0, INIT_STD); LayerNorm weights ~ 1 + N(0, LN_STD); the logits
    bias too. Frozen ones (Marian's sinusoidal positions) keep what transformers computed."""
    ln_weights = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.LayerNorm)}
    with torch.no_grad():
        for _, p in model.named_parameters():
            if not p.requires_grad:
                continue
            if id(p) in ln_weights:
                p.copy_(1.0 + LN_STD * torch.randn_like(p))
            else:
                p.copy_(INIT_STD * torch.randn_like(p))
        model.final_logits_bias.copy_(INIT_STD * torch.randn_like(model.final_logits_bias))


def make_inputs(kind):
    g = torch.Generator().manual_seed(SEED)
    b, s, t = len(SRC_LENGTHS), max(SRC_LENGTHS), max(TGT_LENGTHS)
    pad = pad_id(kind)
    top = MARIAN_PAD if kind == "marian" else VOCAB  # Marian's pad is the last id: never draw it
    ids = torch.randint(MIN_ID, top, (b, s), generator=g, dtype=torch.int64)
    mask = torch.zeros(b, s, dtype=torch.int64)
    labels = torch.randint(MIN_ID, top, (b, t), generator=g, dtype=torch.int64)
    for r, (n, m) in enumerate(zip(SRC_LENGTHS, TGT_LENGTHS)):
        mask[r, :n] = 1
        if kind == "bart":
            ids[r, n - 1] = EOS
            ids[r, 0] = BOS
            labels[r, m - 1] = EOS
        elif kind == "mbart":
            ids[r, n - 1] = EOS
            # mBART: `tokens </s> <lang>`; shift_tokens_right wraps the language code to the front.
            labels[r, m - 2] = EOS
            labels[r, m - 1] = MBART_START
        else:
            # Marian (opus-mt): source and target are `tokens </s>`.
            ids[r, n - 1] = MARIAN_EOS
            labels[r, m - 1] = MARIAN_EOS
        ids[r, n:] = pad
        labels[r, m:] = pad
    if kind == "bart":
        dec = bart_shift(labels, PAD, EOS)
    elif kind == "mbart":
        dec = mbart_shift(labels, PAD)
    else:
        dec = marian_shift(labels, MARIAN_PAD, MARIAN_PAD)
    dec_mask = torch.zeros(b, t, dtype=torch.int64)
    for r, m in enumerate(TGT_LENGTHS):
        dec_mask[r, :m] = 1
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "labels": labels,
        "decoder_input_ids": dec,
        "decoder_attention_mask": dec_mask,
    }


def lm_loss(logits, labels, pad):
    """Mean cross-entropy over real (non-pad) label tokens."""
    target = labels.masked_fill(labels == pad, -100)
    return torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), target.reshape(-1), ignore_index=-100)


# ----------------------------------------------------------------------------- prefix attention

# id(attention module) -> (keys [P, d], values [P, d]) to prepend; empty means no patching.
PREFIXES = {}


def prefixed_attention(self, hidden_states, key_value_states=None, past_key_values=None,
                       attention_mask=None, **kwargs):
    """{Bart,MBart,Marian}Attention.forward without a cache, with this module's prefix (if any)
    prepended to its keys and values and zeros (always attended) prepended to its mask.

    Modules without an entry in PREFIXES run the original forward, so the decoder can still
    take its prefixes through past_key_values (logits_prefix_pkv)."""
    if id(self) not in PREFIXES:
        return ORIGINAL_FORWARD[type(self)](self, hidden_states, key_value_states=key_value_states,
                                            past_key_values=past_key_values,
                                            attention_mask=attention_mask, **kwargs)
    assert past_key_values is None
    bsz, tgt = hidden_states.shape[:2]
    src_states = key_value_states if key_value_states is not None else hidden_states

    def heads(x):
        return x.view(bsz, x.shape[1], -1, self.head_dim).transpose(1, 2)

    q = heads(self.q_proj(hidden_states))
    k = heads(self.k_proj(src_states))
    v = heads(self.v_proj(src_states))
    pk, pv = PREFIXES[id(self)]
    plen = pk.shape[0]
    pk = pk.view(1, plen, -1, self.head_dim).transpose(1, 2).expand(bsz, -1, -1, -1)
    pv = pv.view(1, plen, -1, self.head_dim).transpose(1, 2).expand(bsz, -1, -1, -1)
    k = torch.cat([pk, k], dim=2)
    v = torch.cat([pv, v], dim=2)
    if attention_mask is None:
        attention_mask = torch.zeros(bsz, 1, tgt, src_states.shape[1], dtype=q.dtype)
    assert attention_mask.dtype.is_floating_point, attention_mask.dtype
    open_cols = torch.zeros(*attention_mask.shape[:-1], plen, dtype=attention_mask.dtype)
    attention_mask = torch.cat([open_cols, attention_mask], dim=-1)
    out, weights = modeling_bart.eager_attention_forward(self, q, k, v, attention_mask,
                                                         scaling=self.scaling, dropout=0.0)
    return self.out_proj(out.reshape(bsz, tgt, -1).contiguous()), weights


ORIGINAL_FORWARD = {
    modeling_bart.BartAttention: modeling_bart.BartAttention.forward,
    modeling_mbart.MBartAttention: modeling_mbart.MBartAttention.forward,
    modeling_marian.MarianAttention: modeling_marian.MarianAttention.forward,
}
modeling_bart.BartAttention.forward = prefixed_attention
modeling_mbart.MBartAttention.forward = prefixed_attention
modeling_marian.MarianAttention.forward = prefixed_attention


def draw_prefixes(g):
    """petl name -> tensor, for encoder self (blocks 0..1), decoder self and cross (blocks 2..3)."""
    out = {}
    for layer in range(ENC_LAYERS + DEC_LAYERS):
        kinds = ["prefix"] if layer < ENC_LAYERS else ["prefix", "cross_prefix"]
        for kind in kinds:
            for part in ("keys", "values"):
                t = PREFIX_STD * torch.randn(PREFIX_LEN, D, generator=g)
                out[f"delta0.layer{layer}.{kind}.{part}"] = t.requires_grad_(True)
    return out


def install_prefixes(model, prefixes, decoder_too):
    PREFIXES.clear()
    for i, layer in enumerate(model.model.encoder.layers):
        PREFIXES[id(layer.self_attn)] = (prefixes[f"delta0.layer{i}.prefix.keys"],
                                         prefixes[f"delta0.layer{i}.prefix.values"])
    if decoder_too:
        for i, layer in enumerate(model.model.decoder.layers):
            g = ENC_LAYERS + i
            PREFIXES[id(layer.self_attn)] = (prefixes[f"delta0.layer{g}.prefix.keys"],
                                             prefixes[f"delta0.layer{g}.prefix.values"])
            PREFIXES[id(layer.encoder_attn)] = (prefixes[f"delta0.layer{g}.cross_prefix.keys"],
                                                prefixes[f"delta0.layer{g}.cross_prefix.values"])


def prefix_logits_patch(model, inputs, prefixes):
    install_prefixes(model, prefixes, decoder_too=True)
    try:
        return model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                     decoder_input_ids=inputs["decoder_input_ids"],
                     decoder_attention_mask=inputs["decoder_attention_mask"], use_cache=False).logits
    finally:
        PREFIXES.clear()


def prefix_logits_pkv(model, inputs, prefixes):
    """Decoder prefixes as past_key_values, the way Hugging Face (and peft) feed them."""
    install_prefixes(model, prefixes, decoder_too=False)
    try:
        enc = model.model.encoder(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        bsz = inputs["input_ids"].shape[0]

        def per_head(t):
            return t.view(1, PREFIX_LEN, HEADS, D // HEADS).transpose(1, 2).expand(bsz, -1, -1, -1)

        self_cache, cross_cache = DynamicCache(), DynamicCache()
        for i in range(DEC_LAYERS):
            g = ENC_LAYERS + i
            self_cache.update(per_head(prefixes[f"delta0.layer{g}.prefix.keys"]),
                              per_head(prefixes[f"delta0.layer{g}.prefix.values"]), i)
            cross_cache.update(per_head(prefixes[f"delta0.layer{g}.cross_prefix.keys"]),
                               per_head(prefixes[f"delta0.layer{g}.cross_prefix.values"]), i)
        cache = EncoderDecoderCache(self_cache, cross_cache)
        for k in cache.is_updated:
            cache.is_updated[k] = False  # as peft does: append the encoder's K/V to the cross prefix
        ones = torch.ones(bsz, PREFIX_LEN, dtype=torch.int64)
        self_mask = torch.cat([ones, inputs["decoder_attention_mask"]], dim=1)
        src_mask = torch.cat([ones, inputs["attention_mask"]], dim=1).to(torch.float32)
        tgt = inputs["decoder_input_ids"].shape[1]
        cross_mask = ((1.0 - src_mask) * torch.finfo(torch.float32).min)[:, None, None, :].expand(-1, 1, tgt, -1)
        dec = model.model.decoder(input_ids=inputs["decoder_input_ids"], attention_mask=self_mask,
                                  encoder_hidden_states=enc.last_hidden_state,
                                  encoder_attention_mask=cross_mask, past_key_values=cache,
                                  use_cache=True)
        return model.lm_head(dec.last_hidden_state) + model.final_logits_bias
    finally:
        PREFIXES.clear()


# ----------------------------------------------------------------------------- LoRA

def lora_case(model, inputs, pad):
    """peft LoRA on q_proj + v_proj; returns (logits, loss, {petl name: tensor}, {grad.name: tensor})."""
    cfg = peft.LoraConfig(r=LORA_R, lora_alpha=LORA_ALPHA, target_modules=["q_proj", "v_proj"],
                          lora_dropout=0.0, bias="none")
    peft_model = peft.get_peft_model(model, cfg)
    g = torch.Generator().manual_seed(SEED + 1)
    named = {}
    roles = {("self_attn", "q_proj"): "query", ("self_attn", "v_proj"): "value",
             ("encoder_attn", "q_proj"): "cross_query", ("encoder_attn", "v_proj"): "cross_value"}
    for name, module in peft_model.named_modules():
        if not hasattr(module, "lora_A") or "default" not in module.lora_A:
            continue
        parts = name.split(".")
        stack = parts[parts.index("layers") - 1]
        index = int(parts[parts.index("layers") + 1])
        layer = index if stack == "encoder" else ENC_LAYERS + index
        role = roles[(parts[-2], parts[-1])]
        with torch.no_grad():
            module.lora_B["default"].weight.copy_(
                LORA_B_STD * torch.randn(module.lora_B["default"].weight.shape, generator=g))
        named[f"delta0.layer{layer}.{role}.down.weight"] = module.lora_A["default"].weight
        named[f"delta0.layer{layer}.{role}.up.weight"] = module.lora_B["default"].weight
    assert len(named) == 2 * (2 * ENC_LAYERS + 4 * DEC_LAYERS), sorted(named)
    logits = peft_model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                        decoder_input_ids=inputs["decoder_input_ids"],
                        decoder_attention_mask=inputs["decoder_attention_mask"], use_cache=False).logits
    loss = lm_loss(logits, inputs["labels"], pad)
    grads = torch.autograd.grad(loss, list(named.values()))
    tensors = {k: v.detach().clone() for k, v in named.items()}
    grad_tensors = {f"grad.{k}": gr for k, gr in zip(named, grads)}
    peft_model.unload()  # restores the plain modules for the generation runs
    return logits.detach(), loss.detach(), tensors, grad_tensors


# ----------------------------------------------------------------------------- generation

def generation(model, inputs):
    base = dict(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
    greedy = model.generate(**base, num_beams=1)
    greedy_no_repeat = model.generate(**base, num_beams=1, no_repeat_ngram_size=NO_REPEAT_NGRAM)
    beams = []
    for lp in LENGTH_PENALTIES:
        out = model.generate(**base, num_beams=NUM_BEAMS, no_repeat_ngram_size=NO_REPEAT_NGRAM,
                             length_penalty=lp, early_stopping=False, output_scores=True,
                             return_dict_in_generate=True)
        beams.append({
            "num_beams": NUM_BEAMS,
            "no_repeat_ngram_size": NO_REPEAT_NGRAM,
            "length_penalty": lp,
            "early_stopping": False,
            "sequences": out.sequences.tolist(),
            "sequences_scores": out.sequences_scores.tolist(),
        })
    gc = model.generation_config
    return {
        "input_ids": inputs["input_ids"].tolist(),
        "attention_mask": inputs["attention_mask"].tolist(),
        "max_new_tokens": MAX_NEW_TOKENS,
        "decoder_start_token_id": gc.decoder_start_token_id,
        "eos_token_id": gc.eos_token_id,
        "pad_token_id": gc.pad_token_id,
        "forced_bos_token_id": gc.forced_bos_token_id,
        "forced_eos_token_id": gc.forced_eos_token_id,
        "greedy": {"sequences": greedy.tolist()},
        "greedy_no_repeat": {"no_repeat_ngram_size": NO_REPEAT_NGRAM, "sequences": greedy_no_repeat.tolist()},
        "beam": beams,
    }


# ----------------------------------------------------------------------------- main

def make(kind, out_dir):
    torch.manual_seed(SEED)
    model = make_model(kind)
    reinit_(model)
    model.eval()
    model_dir = out_dir / f"tiny-{kind}"
    model_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(model_dir))
    gen_cfg = model_dir / "generation_config.json"
    if gen_cfg.exists():
        gen_cfg.unlink()  # the settings are recorded in generate.json
    inputs = make_inputs(kind)
    fwd = {k: inputs[k] for k in ("input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask")}
    with torch.no_grad():
        out = model(**fwd, use_cache=False)
    tensors = dict(inputs)
    tensors["encoder_last_hidden_state"] = out.encoder_last_hidden_state
    tensors["logits"] = out.logits
    if kind == "marian":
        enc_pos = model.model.encoder.embed_positions.weight
        dec_pos = model.model.decoder.embed_positions.weight
        assert torch.equal(enc_pos, dec_pos) and not enc_pos.requires_grad
        tensors["embed_positions"] = enc_pos.detach().clone()

    logits_lora, loss_lora, lora_tensors, lora_grads = lora_case(model, inputs, pad_id(kind))
    tensors.update(lora_tensors)
    tensors.update(lora_grads)
    tensors["logits_lora"] = logits_lora
    tensors["loss_lora"] = loss_lora.reshape(1)

    prefixes = draw_prefixes(torch.Generator().manual_seed(SEED + 2))
    logits_prefix = prefix_logits_patch(model, inputs, prefixes)
    loss_prefix = lm_loss(logits_prefix, inputs["labels"], pad_id(kind))
    grads = torch.autograd.grad(loss_prefix, list(prefixes.values()))
    with torch.no_grad():
        logits_pkv = prefix_logits_pkv(model, inputs, prefixes)
    tensors.update({k: v.detach() for k, v in prefixes.items()})
    tensors.update({f"grad.{k}": g for k, g in zip(prefixes, grads)})
    tensors["logits_prefix"] = logits_prefix.detach()
    tensors["loss_prefix"] = loss_prefix.detach().reshape(1)
    tensors["logits_prefix_pkv"] = logits_pkv

    with torch.no_grad():
        gen = generation(model, inputs)
    meta = {
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "peft_version": peft.__version__,
        "seed": str(SEED),
        "dtype": "float32",
        "attn_implementation": ATTN_IMPL,
        "generator": "crates/petl-models/tests/golden/gen/make_seq2seq_golden.py",
        "model": f"tiny-{kind} (random init, N(0,{INIT_STD}), LayerNorm weight 1+N(0,{LN_STD}))",
        "model_safetensors_sha256": sha256_file(model_dir / "model.safetensors"),
        "input_ids": json.dumps(inputs["input_ids"].tolist()),
        "labels": json.dumps(inputs["labels"].tolist()),
        "lora": json.dumps({"r": LORA_R, "lora_alpha": LORA_ALPHA, "target_modules": ["q_proj", "v_proj"]}),
        "prefix_length": str(PREFIX_LEN),
    }
    path = model_dir / "golden.safetensors"
    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(path), metadata=meta)
    gen["generator"] = meta["generator"]
    gen["transformers_version"] = transformers.__version__
    tmp = model_dir / "generate.json.tmp"
    # One entry per line, values compact: small diffs when a rerun changes one result.
    lines = [f" {json.dumps(k)}: {json.dumps(v)}" for k, v in gen.items()]
    tmp.write_text("{\n" + ",\n".join(lines) + "\n}\n")
    tmp.replace(model_dir / "generate.json")
    for f in sorted(model_dir.iterdir()):
        print(f"  {model_dir.name}/{f.name}: {f.stat().st_size} bytes")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, type=Path,
                   help="golden output dir, e.g. crates/petl-models/tests/golden")
    p.add_argument("--models", nargs="+", choices=KINDS, default=list(KINDS),
                   help="which tiny models to (re)write (default: all)")
    args = p.parse_args()
    torch.set_num_threads(2)
    torch.set_default_dtype(torch.float32)
    args.out.mkdir(parents=True, exist_ok=True)
    for kind in args.models:
        make(kind, args.out)


if __name__ == "__main__":
    main()
