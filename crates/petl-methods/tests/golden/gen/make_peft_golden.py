#!/usr/bin/env python3
"""Generate golden files proving petl's LoRA / IA3 / prefix / prompt tuning match Hugging Face peft.

For each case a peft model is built over the tiny random BERT of petl-models
(crates/petl-models/tests/golden/tiny-bert, loaded as BertModel, float32, eager
attention, eval mode) with `get_peft_model(base, config)` and
task_type="FEATURE_EXTRACTION". EVERY adapter parameter is then overwritten with
seeded random non-zero values (torch.Generator(seed), N(0, 0.2); IA3 vectors
1 + N(0, 0.2)) so that a wrong parameter mapping cannot hide behind peft's zero /
identity initialisation. The peft model is run on a fixed padded batch and its
last_hidden_state is recorded.

Every case is also recomputed by an independent, from-scratch BERT forward in this
file (`manual_bert`, plain torch ops on the base state dict, using petl's parameter
names) and, for prefix tuning, by calling BertModel directly with a hand-built
DynamicCache; the script asserts these agree with peft (max abs diff <= 1e-5).

Written under --out (normally crates/petl-methods/tests/golden), one directory per
case, peft-<case>/ for case in lora, ia3, prefix, prefix-mlp, prompt:

  peft-<case>/golden.safetensors
      input_ids, token_type_ids, attention_mask   int64 [3, 11] (what is handed to peft)
      hidden            float32 peft's last_hidden_state, [3, 11, 32]
                        ([3, 3 + 11, 32] for prompt: the 3 virtual tokens come first)
      hidden_with_token_types   (prefix, prefix-mlp, prompt only) float32, NOT a peft
                        output: the same computation with token_type_ids honoured
                        (peft drops them for prompt-learning methods, see `notes`)
      adapter weights under petl's parameter names (float32), e.g.
        lora:       delta0.layer{l}.{query,value}.{down,up}.weight  [4,32] / [32,4]
        ia3:        delta0.layer{l}.{key,value}.scale [32], delta0.layer{l}.ffn_down.scale [37]
        prefix:     delta0.layer{l}.prefix.{keys,values} [5, 32]
        prefix-mlp: delta0.prefix_mlp.{embedding [5,32], hidden.weight [16,32], hidden.bias [16],
                    out.weight [128,16], out.bias [128]} and the generated flat prefixes
                    ejected.layer{l}.prefix.{keys,values} [5, 32]
        prompt:     delta0.prompt [3, 32]
  peft-<case>/method.json
      the petl method configuration of the case.

String metadata in each golden.safetensors: torch / transformers / peft versions,
seed, generator, case, peft_config (JSON), peft parameter name -> petl name map
(JSON), max_abs_hidden, and `notes` (positions, masks, token types, scaling).

Usage (see README.md next to this file):
  PY=$(scripts/python-env.sh | tail -n1)
  $PY crates/petl-methods/tests/golden/gen/make_peft_golden.py --out crates/petl-methods/tests/golden
"""

import argparse
import json
import math
from pathlib import Path

import peft
import torch
import transformers
from peft import (
    IA3Config,
    LoraConfig,
    PrefixTuningConfig,
    PromptTuningConfig,
    get_peft_model,
)
from safetensors.torch import save_file
from transformers import BertModel, DynamicCache

SEED = 0
ATTN_IMPL = "eager"
ROW_LENGTHS = [11, 7, 4]
SEQ_LEN = 11
VOCAB = 99
MIN_ID = 3
PAD_ID = 0
SECOND_SEGMENT = 4  # row 0: the last 4 real tokens have token type 1
ADAPTER_STD = 0.2
TOL = 1e-5

REPO_ROOT = Path(__file__).resolve().parents[5]
TINY_BERT = REPO_ROOT / "crates/petl-models/tests/golden/tiny-bert"
GENERATOR = "crates/petl-methods/tests/golden/gen/make_peft_golden.py"

LAYERS = 2
D = 32
HEADS = 4
HEAD_DIM = D // HEADS
INTER = 37

IA3_TARGETS = r".*\.(key|value)$|.*layer\.\d+\.output\.dense$"
IA3_FFN = r".*layer\.\d+\.output\.dense$"

METHODS = {
    "lora": {"name": "lora", "delta": [{"form": {"kind": "low_rank", "r": 4},
                                        "site": {"weights": ["query", "value"]},
                                        "composition": {"scaled": 2.0}, "init": "lora"}]},
    "ia3": {"name": "ia3", "delta": [{"form": {"kind": "scaling", "scale_input": ["ffn_down"]},
                                      "site": {"weights": ["key", "value", "ffn_down"]}}]},
    "prefix": {"name": "prefix", "delta": [{"form": {"kind": "prefix", "length": 5, "shift_positions": True},
                                            "site": "heads", "composition": "gated"}]},
    "prefix-mlp": {"name": "prefix-mlp", "delta": [{"form": {"kind": "prefix", "length": 5, "reparam": 16, "shift_positions": True},
                                                    "site": "heads", "composition": "gated"}]},
    "prompt": {"name": "prompt", "delta": [{"form": {"kind": "prompt", "length": 3},
                                            "site": "embeddings"}]},
}

NOTE_PREFIX = (
    "peft PeftModelForFeatureExtraction (prefix tuning): get_prompt views the prefix encoder output "
    "[batch, 5, L*2*d] as [batch, 5, L*2, heads, head_dim], permutes to [L*2, batch, heads, 5, head_dim] and "
    "splits in pairs, so for flat row t (virtual token) layer l's keys are columns [2l*d, (2l+1)*d) and its "
    "values columns [(2l+1)*d, (2l+2)*d), column = head*head_dim + j inside each block; these are passed as a "
    "DynamicCache and BertSelfAttention prepends them (cache.update) to every layer's own keys/values: "
    "keys = [prefix(5); tokens(11)]. "
    "Attention mask: peft prepends ones(batch, 5) to the 2-D attention_mask, so every query (padded ones too) "
    "attends to all 5 prefix positions; padded token keys stay masked (additive finfo(float32).min, eager). "
    "Positions: BertModel takes past_key_values_length = cache.get_seq_length() = 5 and BertEmbeddings uses "
    "position_ids 5..15 for the 11 real positions, i.e. positions ARE offset by the prefix length. "
    "Token types: peft's _adjust_prompt_learning_kwargs sets token_type_ids=None (with a warning) for all "
    "prompt-learning methods, so BERT uses its all-zero buffer: the stored token_type_ids are NOT used by "
    "`hidden`; `hidden_with_token_types` is the same computation with them honoured (not a peft output). "
    "Prefixes are not passed through LayerNorm or the key/value projections; no scaling."
)

NOTE_PROMPT = (
    "peft PeftModelForFeatureExtraction (prompt tuning): inputs_embeds = word_embeddings(input_ids) (the raw "
    "word embedding lookup only), the 3 prompt vectors are concatenated IN FRONT of it and the result is "
    "passed to BertModel as inputs_embeds, so BertEmbeddings then adds token-type and position embeddings "
    "and applies LayerNorm to the prompt rows as well. Sequence length becomes 3 + 11 = 14; `hidden` has "
    "14 positions, the 3 virtual tokens first. "
    "Positions: position_ids=None, no cache, so positions are 0..13: prompts get 0, 1, 2 and the real tokens "
    "3..13 (real tokens are shifted by the prompt length). "
    "Token types: peft sets token_type_ids=None (with a warning), so ALL 14 positions get token type 0; the "
    "stored token_type_ids are NOT used by `hidden`. `hidden_with_token_types` (not a peft output) uses "
    "type 0 for the prompt rows and the stored token_type_ids for the real tokens. "
    "Attention mask: peft prepends ones(batch, 3), so the prompt positions are always attended."
)

NOTE_LORA = (
    "peft LoRA Linear on encoder.layer.N.attention.self.{query,value}: y = W x + b + scaling * B(A(x)), "
    "scaling = lora_alpha / r = 8 / 4 = 2.0 (no rslora, dropout 0). petl down = lora_A.weight [r, in], "
    "up = lora_B.weight [out, r]. token_type_ids, attention_mask and positions pass through unchanged "
    "(not a prompt-learning method)."
)

NOTE_IA3 = (
    "peft IA3 on encoder.layer.N.attention.self.{key,value} (not feedforward: y = (W x + b) * l, bias scaled "
    "too) and encoder.layer.N.output.dense = the FFN down-projection (feedforward: y = W (x * l) + b, bias NOT "
    "scaled). attention.output.dense is NOT wrapped (target_modules is the regex "
    + IA3_TARGETS + ", feedforward_modules " + IA3_FFN + "). peft ia3_l is [out, 1] (key/value) or [1, in] "
    "(ffn), flattened here. token_type_ids, attention_mask and positions pass through unchanged."
)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, type=Path,
                   help="golden output dir, e.g. crates/petl-methods/tests/golden")
    p.add_argument("--tiny-bert", type=Path, default=TINY_BERT,
                   help="dir with the tiny random BERT (config.json, model.safetensors)")
    return p.parse_args()


# ----------------------------------------------------------------------------- inputs / base

def make_inputs():
    """input_ids / token_type_ids / attention_mask, int64 [3, 11], right padded with 0."""
    g = torch.Generator().manual_seed(SEED)
    b, t = len(ROW_LENGTHS), SEQ_LEN
    ids = torch.randint(MIN_ID, VOCAB, (b, t), generator=g, dtype=torch.int64)
    mask = torch.zeros(b, t, dtype=torch.int64)
    types = torch.zeros(b, t, dtype=torch.int64)
    for r, n in enumerate(ROW_LENGTHS):
        mask[r, :n] = 1
        ids[r, n:] = PAD_ID
    n0 = ROW_LENGTHS[0]
    types[0, n0 - SECOND_SEGMENT:n0] = 1
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}


def load_base(tiny_bert):
    base = BertModel.from_pretrained(str(tiny_bert), dtype=torch.float32, attn_implementation=ATTN_IMPL)
    base.eval()
    cfg = base.config
    assert (cfg.hidden_size, cfg.num_attention_heads, cfg.num_hidden_layers, cfg.intermediate_size) == \
        (D, HEADS, LAYERS, INTER), cfg
    assert not cfg.is_decoder
    return base


def base_state(tiny_bert):
    """A detached copy of the base BertModel weights (BertModel names, no `bert.` prefix)."""
    return {k: v.detach().clone() for k, v in load_base(tiny_bert).state_dict().items()}


def randomize_adapters(model, expected_names, ia3=False):
    """Overwrite every trainable (= adapter) parameter, in name order, with seeded N(0, 0.2) (IA3: 1 + N)."""
    g = torch.Generator().manual_seed(SEED)
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert sorted(params) == sorted(expected_names), (sorted(params), sorted(expected_names))
    with torch.no_grad():
        for n in sorted(params):
            p = params[n]
            draw = ADAPTER_STD * torch.randn(p.shape, generator=g, dtype=torch.float32)
            p.copy_(1.0 + draw if ia3 else draw)
    return {n: params[n].detach().clone() for n in params}


def wrapped_modules(model, cls_name_part):
    return sorted(n for n, m in model.base_model.model.named_modules()
                  if cls_name_part in type(m).__module__ and hasattr(m, "base_layer"))


# ----------------------------------------------------------------------------- independent reference

def _linear(x, w, b=None):
    y = x @ w.t()
    return y + b if b is not None else y


def _layer_norm(x, w, b, eps=1e-12):
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), w, b, eps)


def manual_bert(sd, input_ids, token_type_ids, attention_mask, *, prompt=None, prefix=None,
                position_offset=0, lora=None, ia3=None):
    """From-scratch BERT encoder forward (eval), written against the math, not transformers' code.

    prompt:  [P, d] vectors prepended to the WORD embeddings (positions 0..P-1, token type 0,
             key mask 1); real tokens then take positions P.. .
    prefix:  {layer: (keys [P, d], values [P, d])} prepended to that layer's keys/values
             (key mask 1, no LayerNorm / projection).
    position_offset: first position id of the real tokens (prefix tuning: P).
    lora:    {(layer, "query"|"value"): (down [r, in], up [out, r], scaling)}.
    ia3:     {(layer, "key"|"value"|"ffn_down"): vector}; key/value scale outputs, ffn_down its input.
    """
    lora = lora or {}
    ia3 = ia3 or {}
    b, t = input_ids.shape
    words = sd["embeddings.word_embeddings.weight"][input_ids]
    types = token_type_ids
    key_mask = attention_mask.to(torch.float32)
    if prompt is not None:
        p = prompt.shape[0]
        words = torch.cat([prompt.unsqueeze(0).expand(b, -1, -1), words], dim=1)
        types = torch.cat([torch.zeros(b, p, dtype=torch.int64), types], dim=1)
        key_mask = torch.cat([torch.ones(b, p), key_mask], dim=1)
    n = words.shape[1]
    pos = torch.arange(position_offset, position_offset + n)
    x = words + sd["embeddings.token_type_embeddings.weight"][types] \
        + sd["embeddings.position_embeddings.weight"][pos].unsqueeze(0)
    x = _layer_norm(x, sd["embeddings.LayerNorm.weight"], sd["embeddings.LayerNorm.bias"])

    for l in range(LAYERS):
        pre = f"encoder.layer.{l}."

        def proj(name, inp, module):
            y = _linear(inp, sd[pre + module + ".weight"], sd[pre + module + ".bias"])
            if (l, name) in lora:
                down, up, s = lora[(l, name)]
                y = y + s * _linear(_linear(inp, down), up)
            if (l, name) in ia3:
                y = y * ia3[(l, name)]
            return y

        q = proj("query", x, "attention.self.query")
        k = proj("key", x, "attention.self.key")
        v = proj("value", x, "attention.self.value")
        mask = key_mask
        if prefix is not None and l in prefix:
            pk, pv = prefix[l]
            k = torch.cat([pk.unsqueeze(0).expand(b, -1, -1), k], dim=1)
            v = torch.cat([pv.unsqueeze(0).expand(b, -1, -1), v], dim=1)
            mask = torch.cat([torch.ones(b, pk.shape[0]), key_mask], dim=1)

        def heads(z):
            return z.view(b, z.shape[1], HEADS, HEAD_DIM).transpose(1, 2)

        scores = heads(q) @ heads(k).transpose(-1, -2) / math.sqrt(HEAD_DIM)
        scores = scores + (1.0 - mask)[:, None, None, :] * torch.finfo(torch.float32).min
        ctx = (scores.softmax(-1) @ heads(v)).transpose(1, 2).reshape(b, n, D)
        attn = _linear(ctx, sd[pre + "attention.output.dense.weight"], sd[pre + "attention.output.dense.bias"])
        x = _layer_norm(attn + x, sd[pre + "attention.output.LayerNorm.weight"],
                        sd[pre + "attention.output.LayerNorm.bias"])
        h = torch.nn.functional.gelu(_linear(x, sd[pre + "intermediate.dense.weight"],
                                             sd[pre + "intermediate.dense.bias"]))
        if (l, "ffn_down") in ia3:
            h = h * ia3[(l, "ffn_down")]
        out = _linear(h, sd[pre + "output.dense.weight"], sd[pre + "output.dense.bias"])
        x = _layer_norm(out + x, sd[pre + "output.LayerNorm.weight"], sd[pre + "output.LayerNorm.bias"])
    return x


def assert_close(name, got, want):
    diff = (got - want).abs().max().item()
    print(f"  check {name}: max |diff| = {diff:.3e}")
    assert got.shape == want.shape, (name, got.shape, want.shape)
    assert diff <= TOL, f"{name}: max |diff| {diff} > {TOL}"


def split_prefix(flat):
    """peft's prefix layout: flat [P, L*2*d] -> {layer: (keys [P, d], values [P, d])}."""
    p = flat.shape[0]
    v = flat.view(p, LAYERS * 2, HEADS, HEAD_DIM).reshape(p, LAYERS * 2, D)
    return {l: (v[:, 2 * l].contiguous(), v[:, 2 * l + 1].contiguous()) for l in range(LAYERS)}


def run_with_cache(base, inputs, prefix, token_type_ids=None):
    """BertModel with a hand-built DynamicCache holding `prefix` (independent of peft's get_prompt)."""
    b = inputs["input_ids"].shape[0]
    cache = DynamicCache(config=base.config)
    for l in range(LAYERS):
        k, v = prefix[l]
        kk = k.view(-1, HEADS, HEAD_DIM).permute(1, 0, 2).unsqueeze(0).expand(b, -1, -1, -1).contiguous()
        vv = v.view(-1, HEADS, HEAD_DIM).permute(1, 0, 2).unsqueeze(0).expand(b, -1, -1, -1).contiguous()
        cache.update(kk, vv, l)
    plen = prefix[0][0].shape[0]
    mask = torch.cat([torch.ones(b, plen, dtype=torch.int64), inputs["attention_mask"]], dim=1)
    return base(input_ids=inputs["input_ids"], attention_mask=mask, token_type_ids=token_type_ids,
                past_key_values=cache, use_cache=False).last_hidden_state


# ----------------------------------------------------------------------------- cases

def run_peft(model, inputs):
    with torch.no_grad():
        return model(**inputs).last_hidden_state


def case_lora(args, inputs, sd):
    cfg = LoraConfig(task_type="FEATURE_EXTRACTION", r=4, lora_alpha=8, target_modules=["query", "value"],
                     lora_dropout=0.0)
    model = get_peft_model(load_base(args.tiny_bert), cfg)
    names = {}
    for l in range(LAYERS):
        for p in ("query", "value"):
            mod = f"base_model.model.encoder.layer.{l}.attention.self.{p}"
            names[f"{mod}.lora_A.default.weight"] = f"delta0.layer{l}.{p}.down.weight"
            names[f"{mod}.lora_B.default.weight"] = f"delta0.layer{l}.{p}.up.weight"
    params = randomize_adapters(model, names)
    model.eval()
    wrapped = wrapped_modules(model, "peft.tuners.lora")
    assert wrapped == sorted(f"encoder.layer.{l}.attention.self.{p}" for l in range(LAYERS)
                             for p in ("query", "value")), wrapped
    hidden = run_peft(model, inputs)
    tensors = {names[n]: params[n] for n in names}
    for n, t in tensors.items():
        assert t.shape == ((4, D) if ".down." in n else (D, 4)), (n, t.shape)
    scaling = model.base_model.model.encoder.layer[0].attention.self.query.scaling["default"]
    assert scaling == 2.0, scaling
    lora = {(l, p): (tensors[f"delta0.layer{l}.{p}.down.weight"], tensors[f"delta0.layer{l}.{p}.up.weight"], 2.0)
            for l in range(LAYERS) for p in ("query", "value")}
    assert_close("manual", manual_bert(sd, **inputs, lora=lora), hidden)
    return hidden, tensors, cfg, names, NOTE_LORA, {}


def case_ia3(args, inputs, sd):
    cfg = IA3Config(task_type="FEATURE_EXTRACTION", target_modules=IA3_TARGETS, feedforward_modules=IA3_FFN)
    model = get_peft_model(load_base(args.tiny_bert), cfg)
    wrapped = wrapped_modules(model, "peft.tuners.ia3")
    want = sorted([f"encoder.layer.{l}.attention.self.{p}" for l in range(LAYERS) for p in ("key", "value")]
                  + [f"encoder.layer.{l}.output.dense" for l in range(LAYERS)])
    assert wrapped == want, wrapped
    enc = model.base_model.model.encoder
    for l in range(LAYERS):
        assert enc.layer[l].output.dense.is_feedforward
        assert not enc.layer[l].attention.self.key.is_feedforward
        assert not enc.layer[l].attention.self.value.is_feedforward
    names, shapes = {}, {}
    for l in range(LAYERS):
        for p in ("key", "value"):
            names[f"base_model.model.encoder.layer.{l}.attention.self.{p}.ia3_l.default"] = \
                f"delta0.layer{l}.{p}.scale"
            shapes[f"delta0.layer{l}.{p}.scale"] = (D, 1)
        names[f"base_model.model.encoder.layer.{l}.output.dense.ia3_l.default"] = f"delta0.layer{l}.ffn_down.scale"
        shapes[f"delta0.layer{l}.ffn_down.scale"] = (1, INTER)
    params = randomize_adapters(model, names, ia3=True)
    model.eval()
    hidden = run_peft(model, inputs)
    tensors = {}
    for n, petl in names.items():
        assert tuple(params[n].shape) == shapes[petl], (n, params[n].shape)
        tensors[petl] = params[n].flatten()
    ia3 = {(l, p): tensors[f"delta0.layer{l}.{p}.scale"] for l in range(LAYERS) for p in ("key", "value", "ffn_down")}
    assert_close("manual", manual_bert(sd, **inputs, ia3=ia3), hidden)
    return hidden, tensors, cfg, names, NOTE_IA3, {}


def _prefix_checks(model, args, inputs, sd, prefix, hidden):
    """Independent checks of the prefix slicing, positions and masks; returns hidden_with_token_types."""
    plen = prefix[0][0].shape[0]
    with torch.no_grad():
        # the cache peft builds must hold exactly our per-layer keys / values
        cache = model.get_prompt(batch_size=inputs["input_ids"].shape[0])
        assert isinstance(cache, DynamicCache), type(cache)
        for l in range(LAYERS):
            k, v = prefix[l]
            ck, cv = cache.layers[l].keys, cache.layers[l].values
            assert torch.equal(ck[1].transpose(0, 1).reshape(plen, D), k), l
            assert torch.equal(cv[2].transpose(0, 1).reshape(plen, D), v), l
        base = load_base(args.tiny_bert)
        direct = run_with_cache(base, inputs, prefix)  # token_type_ids=None, as peft does
        assert_close("BertModel + hand-built DynamicCache", direct, hidden)
        assert_close("manual (positions offset by prefix, token types dropped)",
                     manual_bert(sd, inputs["input_ids"], torch.zeros_like(inputs["token_type_ids"]),
                                 inputs["attention_mask"], prefix=prefix, position_offset=plen), hidden)
        with_types = manual_bert(sd, **inputs, prefix=prefix, position_offset=plen)
        assert_close("BertModel + cache with token_type_ids vs manual",
                     run_with_cache(base, inputs, prefix, inputs["token_type_ids"]), with_types)
        # make sure the choices matter for this batch (so the golden pins them down)
        no_offset = manual_bert(sd, inputs["input_ids"], torch.zeros_like(inputs["token_type_ids"]),
                                inputs["attention_mask"], prefix=prefix, position_offset=0)
        assert (no_offset - hidden).abs().max() > 1e-2
        assert (with_types - hidden).abs().max() > 1e-2
    return with_types


def case_prefix(args, inputs, sd):
    cfg = PrefixTuningConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=5, prefix_projection=False)
    model = get_peft_model(load_base(args.tiny_bert), cfg)
    assert model.peft_config["default"].num_transformer_submodules == 1
    assert (model.peft_config["default"].num_layers, model.peft_config["default"].token_dim,
            model.peft_config["default"].num_attention_heads) == (LAYERS, D, HEADS)
    pname = "prompt_encoder.default.embedding.weight"
    params = randomize_adapters(model, [pname])
    model.eval()
    hidden = run_peft(model, inputs)
    flat = params[pname]
    assert flat.shape == (5, LAYERS * 2 * D), flat.shape
    prefix = split_prefix(flat)
    tensors, names = {}, {}
    for l in range(LAYERS):
        tensors[f"delta0.layer{l}.prefix.keys"], tensors[f"delta0.layer{l}.prefix.values"] = prefix[l]
        names[f"{pname}[:, {2 * l * D}:{(2 * l + 1) * D}]"] = f"delta0.layer{l}.prefix.keys"
        names[f"{pname}[:, {(2 * l + 1) * D}:{(2 * l + 2) * D}]"] = f"delta0.layer{l}.prefix.values"
    with_types = _prefix_checks(model, args, inputs, sd, prefix, hidden)
    return hidden, tensors, cfg, names, NOTE_PREFIX, {"hidden_with_token_types": with_types}


def case_prefix_mlp(args, inputs, sd):
    cfg = PrefixTuningConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=5, prefix_projection=True,
                             encoder_hidden_size=16)
    model = get_peft_model(load_base(args.tiny_bert), cfg)
    assert model.peft_config["default"].num_transformer_submodules == 1
    enc = model.prompt_encoder["default"]
    assert isinstance(enc.transform[1], torch.nn.Tanh)
    pre = "prompt_encoder.default."
    names = {
        pre + "embedding.weight": "delta0.prefix_mlp.embedding",
        pre + "transform.0.weight": "delta0.prefix_mlp.hidden.weight",
        pre + "transform.0.bias": "delta0.prefix_mlp.hidden.bias",
        pre + "transform.2.weight": "delta0.prefix_mlp.out.weight",
        pre + "transform.2.bias": "delta0.prefix_mlp.out.bias",
    }
    params = randomize_adapters(model, names)
    model.eval()
    hidden = run_peft(model, inputs)
    tensors = {names[n]: params[n] for n in names}
    want = {"delta0.prefix_mlp.embedding": (5, D), "delta0.prefix_mlp.hidden.weight": (16, D),
            "delta0.prefix_mlp.hidden.bias": (16,), "delta0.prefix_mlp.out.weight": (LAYERS * 2 * D, 16),
            "delta0.prefix_mlp.out.bias": (LAYERS * 2 * D,)}
    for n, s in want.items():
        assert tuple(tensors[n].shape) == s, (n, tensors[n].shape)
    # eject: Linear -> tanh -> Linear, computed here from the petl-named tensors
    with torch.no_grad():
        h = torch.tanh(_linear(tensors["delta0.prefix_mlp.embedding"], tensors["delta0.prefix_mlp.hidden.weight"],
                               tensors["delta0.prefix_mlp.hidden.bias"]))
        flat = _linear(h, tensors["delta0.prefix_mlp.out.weight"], tensors["delta0.prefix_mlp.out.bias"])
        assert torch.allclose(flat, enc(torch.arange(5).unsqueeze(0))[0], atol=1e-6)
    prefix = split_prefix(flat)
    for l in range(LAYERS):
        tensors[f"ejected.layer{l}.prefix.keys"], tensors[f"ejected.layer{l}.prefix.values"] = prefix[l]
    with_types = _prefix_checks(model, args, inputs, sd, prefix, hidden)
    return hidden, tensors, cfg, names, NOTE_PREFIX, {"hidden_with_token_types": with_types}


def case_prompt(args, inputs, sd):
    cfg = PromptTuningConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=3)
    model = get_peft_model(load_base(args.tiny_bert), cfg)
    assert model.word_embeddings is model.base_model.embeddings.word_embeddings
    pname = "prompt_encoder.default.embedding.weight"
    names = {pname: "delta0.prompt"}
    params = randomize_adapters(model, names)
    model.eval()
    hidden = run_peft(model, inputs)
    prompt = params[pname]
    assert prompt.shape == (3, D), prompt.shape
    b, t = inputs["input_ids"].shape
    assert hidden.shape == (b, 3 + t, D), hidden.shape
    with torch.no_grad():
        assert_close("manual (prompt positions 0..2, tokens 3.., token types dropped)",
                     manual_bert(sd, inputs["input_ids"], torch.zeros_like(inputs["token_type_ids"]),
                                 inputs["attention_mask"], prompt=prompt), hidden)
        # the same through BertModel directly: prompts in front of the raw word embeddings
        base = load_base(args.tiny_bert)
        emb = torch.cat([prompt.unsqueeze(0).expand(b, -1, -1), base.embeddings.word_embeddings(inputs["input_ids"])],
                        dim=1)
        mask = torch.cat([torch.ones(b, 3, dtype=torch.int64), inputs["attention_mask"]], dim=1)
        assert_close("BertModel(inputs_embeds=[prompt; words])",
                     base(inputs_embeds=emb, attention_mask=mask).last_hidden_state, hidden)
        with_types = manual_bert(sd, **inputs, prompt=prompt)
        types = torch.cat([torch.zeros(b, 3, dtype=torch.int64), inputs["token_type_ids"]], dim=1)
        assert_close("BertModel with token types vs manual",
                     base(inputs_embeds=emb, attention_mask=mask, token_type_ids=types).last_hidden_state, with_types)
        assert (with_types - hidden).abs().max() > 1e-2
    return hidden, {"delta0.prompt": prompt}, cfg, names, NOTE_PROMPT, {"hidden_with_token_types": with_types}


CASES = {
    "lora": case_lora,
    "ia3": case_ia3,
    "prefix": case_prefix,
    "prefix-mlp": case_prefix_mlp,
    "prompt": case_prompt,
}


# ----------------------------------------------------------------------------- output

def peft_config_json(cfg):
    d = cfg.to_dict()
    if d.get("base_model_name_or_path"):  # machine-specific absolute path -> repo-relative
        try:
            d["base_model_name_or_path"] = str(Path(d["base_model_name_or_path"]).resolve().relative_to(REPO_ROOT))
        except ValueError:
            pass
    return json.dumps({k: (sorted(v) if isinstance(v, set) else v) for k, v in d.items()}, sort_keys=True,
                      default=str)


def write_case(out_dir, case, inputs, hidden, tensors, cfg, names, notes, extra):
    case_dir = out_dir / f"peft-{case}"
    case_dir.mkdir(parents=True, exist_ok=True)
    all_t = dict(inputs)
    all_t["hidden"] = hidden
    all_t.update(extra)
    for n, t in tensors.items():
        assert n not in all_t, n
        all_t[n] = t.to(torch.float32)
    all_t = {k: v.detach().contiguous().cpu() for k, v in all_t.items()}
    for k in ("input_ids", "token_type_ids", "attention_mask"):
        assert all_t[k].dtype == torch.int64 and all_t[k].shape == (len(ROW_LENGTHS), SEQ_LEN)
    max_abs = hidden.abs().max().item()
    meta = {
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "peft_version": peft.__version__,
        "seed": str(SEED),
        "dtype": "float32",
        "attn_implementation": ATTN_IMPL,
        "generator": GENERATOR,
        "case": case,
        "base_model": "crates/petl-models/tests/golden/tiny-bert (BertModel, eval)",
        "adapter_init": f"torch.Generator().manual_seed({SEED}), params in name order, "
                        f"N(0, {ADAPTER_STD})" + (" + 1" if case == "ia3" else ""),
        "peft_config": peft_config_json(cfg),
        "peft_to_petl_names": json.dumps(names, sort_keys=True),
        "row_lengths": json.dumps(ROW_LENGTHS),
        "max_abs_hidden": f"{max_abs:.6f}",
        "notes": notes,
    }
    path = case_dir / "golden.safetensors"
    save_file(all_t, str(path), metadata=meta)
    (case_dir / "method.json").write_text(json.dumps(METHODS[case]) + "\n")
    print(f"wrote {path} ({path.stat().st_size} bytes), hidden {tuple(hidden.shape)}, max |hidden| {max_abs:.4f}")
    for n in sorted(tensors):
        print(f"    {n}: {tuple(tensors[n].shape)}")


def main():
    args = parse_args()
    torch.set_num_threads(2)
    transformers.logging.set_verbosity_error()  # the LOAD REPORT lists the unused classifier.* keys
    transformers.logging.disable_progress_bar()
    torch.manual_seed(SEED)
    torch.set_default_dtype(torch.float32)
    inputs = make_inputs()
    sd = base_state(args.tiny_bert)
    with torch.no_grad():
        plain = load_base(args.tiny_bert)(**inputs).last_hidden_state
        assert_close("manual vs plain BertModel", manual_bert(sd, **inputs), plain)
    for case, fn in CASES.items():
        print(f"case {case}")
        with torch.no_grad():
            hidden, tensors, cfg, names, notes, extra = fn(args, inputs, sd)
        if hidden.shape == plain.shape:  # the adapter must visibly change the output
            assert (hidden - plain).abs().max() > 1e-2, case
        write_case(args.out, case, inputs, hidden, tensors, cfg, names, notes, extra)


if __name__ == "__main__":
    main()
