#!/usr/bin/env python3
"""Golden files proving petl-generate's processors and searches match Hugging Face transformers.

Two files are written under --out (normally crates/petl-generate/tests/golden):

  hf-processors/golden.json
      transformers' LogitsProcessors (RepetitionPenalty, NoRepeatNGram, MinNewTokensLength,
      ForcedBOSToken, ForcedEOSToken, Temperature, TopK, TopP) and torch.log_softmax applied to
      fixed random float32 scores [4, 40], plus two whole processor lists built by transformers'
      own GenerationMixin._get_logits_processor (which fixes their order).

  hf-search/golden.json
      A toy decoder-only language model (`ToyLM` below, a transformers PreTrainedModel +
      GenerationMixin, use_cache=False) and the outputs of transformers' real `generate` on it:
      greedy decoding and `_beam_search` for several configurations (length penalties, all three
      early_stopping modes, one or two eos tokens, no-repeat n-grams, repetition penalty,
      min_new_tokens, forced BOS/EOS, several returned sequences). Each prompt is generated on
      its own (batch 1), so every row's result is independent of padding.

The toy model: vocabulary V = 12, positions P = 24. For a sequence x_0 .. x_{n-1} the next-token
logits are

    (bigram[x_{n-2} (or V when n = 1), x_{n-1}, :] + pos[n - 1, :]) + boost

float32 additions, left to right, of two seeded tables (bigram [V+1, V, V] ~ 2.5·N(0,1), pos
[P, V] ~ N(0,1) with a ramp on the eos tokens so hypotheses end at varied lengths) and a per-case
vector that is zero except on the case's eos tokens (the `early_*` cases boost them so beams finish
early enough for the early-stopping rules to end the search before max_new_tokens). The tables are
stored in the golden so the Rust test computes bit-identical logits.

JSON conventions: float32 values are written as Python floats (exact), -inf as null.

Usage (see README.md next to this file):
  PY=$(scripts/python-env.sh | tail -n1)
  $PY crates/petl-generate/tests/golden/gen/make_beam_golden.py --out crates/petl-generate/tests/golden
"""

import argparse
import json
import math
import os
from pathlib import Path

import torch
import transformers
from transformers import GenerationConfig, GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.generation.logits_process import (
    ForcedBOSTokenLogitsProcessor,
    ForcedEOSTokenLogitsProcessor,
    MinNewTokensLengthLogitsProcessor,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)
from transformers.modeling_outputs import CausalLMOutputWithPast

SEED = 20260
VOCAB = 12
POSITIONS = 24


def floats(t):
    """float32 tensor -> nested lists of floats, -inf as None."""
    if t.dim() == 0:
        v = float(t)
        if math.isnan(v) or v == math.inf:
            raise ValueError("NaN/+inf in a golden")
        return None if v == -math.inf else v
    return [floats(x) for x in t]


# ---------------------------------------------------------------------------------------------
# Processors
# ---------------------------------------------------------------------------------------------


def processor_cases(model):
    g = torch.Generator().manual_seed(SEED)
    scores = (torch.randn(4, 40, generator=g) * 3).float()
    # rows 0-1 draw ids from a small alphabet so n-grams repeat; rows 2-3 from the whole vocab
    ids = torch.cat(
        [torch.randint(0, 4, (2, 14), generator=g), torch.randint(0, 40, (2, 14), generator=g)]
    )
    ties = torch.tensor([[1.0, 3.0, 2.0, 2.0, 0.0, 2.0, -1.0, 3.0] + [-5.0] * 32] * 4)
    cases = []

    def add(name, params, processor, input_ids=ids, inp=scores):
        out = processor(input_ids.clone(), inp.clone())
        cases.append(
            {
                "name": name,
                "params": params,
                "input_ids": input_ids.tolist(),
                "scores": floats(inp),
                "expected": floats(out),
            }
        )

    for penalty in (1.3, 0.75):
        add(f"repetition_penalty_{penalty}", {"kind": "repetition_penalty", "penalty": penalty},
            RepetitionPenaltyLogitsProcessor(penalty))
    for n in (1, 2, 3, 4):
        add(f"no_repeat_ngram_{n}", {"kind": "no_repeat_ngram", "n": n}, NoRepeatNGramLogitsProcessor(n))
    # 14 ids with a 10-token prompt: 4 generated
    for min_new in (6, 4):
        add(
            f"min_new_tokens_{min_new}",
            {"kind": "min_new_tokens", "prompt_len": 10, "min_new_tokens": min_new, "eos": [3, 7]},
            MinNewTokensLengthLogitsProcessor(10, min_new, [3, 7]),
        )
    add("forced_bos_first", {"kind": "forced_bos", "token": 5}, ForcedBOSTokenLogitsProcessor(5), input_ids=ids[:, :1])
    add("forced_bos_later", {"kind": "forced_bos", "token": 5}, ForcedBOSTokenLogitsProcessor(5))
    # max_length 15 with 14 ids: the next token is the last one
    add("forced_eos_last", {"kind": "forced_eos", "token": 9, "max_length": 15}, ForcedEOSTokenLogitsProcessor(15, 9))
    add("forced_eos_early", {"kind": "forced_eos", "token": 9, "max_length": 20}, ForcedEOSTokenLogitsProcessor(20, 9))
    for t in (0.7, 1.6):
        add(f"temperature_{t}", {"kind": "temperature", "temperature": t}, TemperatureLogitsWarper(t))
    for k in (1, 5, 40, 100):
        add(f"top_k_{k}", {"kind": "top_k", "top_k": k, "min_tokens_to_keep": 1}, TopKLogitsWarper(k))
    add("top_k_ties", {"kind": "top_k", "top_k": 3, "min_tokens_to_keep": 1}, TopKLogitsWarper(3), inp=ties)
    add("top_k_min_keep", {"kind": "top_k", "top_k": 2, "min_tokens_to_keep": 4},
        TopKLogitsWarper(2, min_tokens_to_keep=4))
    for p in (0.1, 0.5, 0.9, 0.99):
        add(f"top_p_{p}", {"kind": "top_p", "top_p": p, "min_tokens_to_keep": 1}, TopPLogitsWarper(p))
    add("top_p_min_keep", {"kind": "top_p", "top_p": 0.3, "min_tokens_to_keep": 3},
        TopPLogitsWarper(0.3, min_tokens_to_keep=3))
    add("log_softmax", {"kind": "log_softmax"}, lambda _ids, s: torch.log_softmax(s, dim=-1))

    # Whole lists, in the order transformers builds them. The petl config of each is stored too.
    pipelines = [
        (
            "pipeline_sample",
            dict(do_sample=True, temperature=0.8, top_k=10, top_p=0.9, repetition_penalty=1.2,
                 no_repeat_ngram_size=2, min_new_tokens=5, eos_token_id=[3, 7], max_new_tokens=8),
            {
                "max_new_tokens": 8, "min_new_tokens": 5, "stop_tokens": [3, 7],
                "repetition_penalty": 1.2, "no_repeat_ngram_size": 2,
                "strategy": {"type": "sample", "temperature": 0.8, "top_k": 10, "top_p": 0.9, "seed": 0},
            },
        ),
        (
            "pipeline_greedy_forced_eos",
            dict(do_sample=False, repetition_penalty=0.9, no_repeat_ngram_size=3, forced_eos_token_id=9,
                 eos_token_id=[9], max_new_tokens=5),
            {
                "max_new_tokens": 5, "stop_tokens": [9], "repetition_penalty": 0.9,
                "no_repeat_ngram_size": 3, "forced_eos_token_id": 9, "strategy": {"type": "greedy"},
            },
        ),
    ]
    prompt_len = 10
    for name, hf_kwargs, petl_config in pipelines:
        gc = GenerationConfig(**hf_kwargs)
        gc._eos_token_tensor = torch.tensor(hf_kwargs["eos_token_id"])
        gc.max_length = prompt_len + hf_kwargs["max_new_tokens"]
        procs = model._get_logits_processor(gc, input_ids_seq_length=prompt_len, device="cpu", model_kwargs={})
        out = procs(ids.clone(), scores.clone())
        cases.append(
            {
                "name": name,
                "params": {"kind": "pipeline", "prompt_len": prompt_len, "config": petl_config,
                           "hf_processors": [type(p).__name__ for p in procs]},
                "input_ids": ids.tolist(),
                "scores": floats(scores),
                "expected": floats(out),
            }
        )
    return cases


# ---------------------------------------------------------------------------------------------
# Toy model and searches
# ---------------------------------------------------------------------------------------------


class ToyConfig(PretrainedConfig):
    model_type = "petl_generate_toy"

    def __init__(self, vocab_size=VOCAB, max_position_embeddings=POSITIONS, **kwargs):
        self.vocab_size = vocab_size
        self.max_position_embeddings = max_position_embeddings
        super().__init__(**kwargs)


class ToyLM(PreTrainedModel, GenerationMixin):
    config_class = ToyConfig

    def __init__(self, config, bigram, pos):
        super().__init__(config)
        self.register_buffer("bigram", bigram)
        self.register_buffer("pos", pos)
        self.register_buffer("boost", torch.zeros(config.vocab_size))
        self.unused = torch.nn.Parameter(torch.zeros(1))  # PreTrainedModel wants a parameter

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        batch, n = input_ids.shape
        previous = torch.cat(
            [torch.full((batch, 1), self.config.vocab_size, dtype=input_ids.dtype), input_ids[:, :-1]], dim=1
        )
        logits = self.bigram[previous, input_ids] + self.pos[:n][None] + self.boost
        return CausalLMOutputWithPast(logits=logits)


def toy_tables():
    g = torch.Generator().manual_seed(SEED + 1)
    bigram = (torch.randn(VOCAB + 1, VOCAB, VOCAB, generator=g) * 2.5).float()
    pos = torch.randn(POSITIONS, VOCAB, generator=g).float()
    # eos candidates (1 and 2) grow likelier with position, so hypotheses end at varied lengths
    pos[:, 1] += torch.linspace(-3.0, 3.0, POSITIONS)
    pos[:, 2] += torch.linspace(-2.0, 2.0, POSITIONS)
    return bigram, pos


def search_cases():
    # name, HF generate kwargs, petl GenerationConfig (JSON)
    def beam(num_beams, length_penalty, early_stopping, num_return=1):
        return {"type": "beam", "num_beams": num_beams, "length_penalty": length_penalty,
                "early_stopping": early_stopping, "num_return_sequences": num_return}

    def early(name, num_beams, length_penalty, early_stopping, num_return, boost, stops=(1,)):
        hf = dict(max_new_tokens=16, eos_token_id=list(stops), num_beams=num_beams, length_penalty=length_penalty,
                  early_stopping=early_stopping, num_return_sequences=num_return)
        petl = {"max_new_tokens": 16, "stop_tokens": list(stops),
                "strategy": beam(num_beams, length_penalty, early_stopping, num_return)}
        return (name, hf, petl, {t: boost for t in stops})

    return [
        early("early_heuristic", 3, 1.0, False, 3, 2.0),
        early("early_heuristic_length_penalty_2", 4, 2.0, False, 2, 2.5),
        early("early_when_full", 3, 1.0, True, 3, 2.0),
        early("early_never", 3, 1.0, "never", 3, 2.0),
        early("early_never_negative", 3, -0.5, "never", 2, 2.0),
        early("early_heuristic_negative", 4, -0.5, False, 1, 3.0),
        # These three separate rules the others leave untested: "never" with a positive length
        # penalty estimates at max_new_tokens; only the first num_beams ranks may finish; two
        # eos tokens keep 3·num_beams candidates.
        early("early_never_length_penalty_2", 2, 2.0, "never", 2, 2.0),
        early("early_when_full_weak_eos", 3, 1.0, True, 3, 1.0),
        early("early_two_stop_tokens", 2, 2.0, "never", 2, 3.0, stops=(1, 2)),
    ] + [(name, hf, petl, {}) for name, hf, petl in [
        ("greedy_plain", dict(max_new_tokens=10, eos_token_id=[1]),
         {"max_new_tokens": 10, "stop_tokens": [1]}),
        ("greedy_processors",
         dict(max_new_tokens=12, eos_token_id=[1, 2], repetition_penalty=1.3, no_repeat_ngram_size=2, min_new_tokens=4),
         {"max_new_tokens": 12, "stop_tokens": [1, 2], "repetition_penalty": 1.3, "no_repeat_ngram_size": 2,
          "min_new_tokens": 4}),
        ("greedy_forced", dict(max_new_tokens=6, eos_token_id=[1], forced_bos_token_id=7, forced_eos_token_id=1),
         {"max_new_tokens": 6, "stop_tokens": [1], "forced_bos_token_id": 7, "forced_eos_token_id": 1}),
        ("beam_heuristic",
         dict(max_new_tokens=10, eos_token_id=[1], num_beams=3, length_penalty=1.0, early_stopping=False,
              num_return_sequences=3),
         {"max_new_tokens": 10, "stop_tokens": [1], "strategy": beam(3, 1.0, False, 3)}),
        ("beam_when_full",
         dict(max_new_tokens=12, eos_token_id=[1], num_beams=4, length_penalty=2.0, early_stopping=True,
              no_repeat_ngram_size=3, min_new_tokens=3, num_return_sequences=4),
         {"max_new_tokens": 12, "stop_tokens": [1], "no_repeat_ngram_size": 3, "min_new_tokens": 3,
          "strategy": beam(4, 2.0, True, 4)}),
        ("beam_never",
         dict(max_new_tokens=10, eos_token_id=[1, 2], num_beams=3, length_penalty=0.5, early_stopping="never",
              repetition_penalty=1.5, num_return_sequences=2),
         {"max_new_tokens": 10, "stop_tokens": [1, 2], "repetition_penalty": 1.5,
          "strategy": beam(3, 0.5, "never", 2)}),
        ("beam_negative_length_penalty",
         dict(max_new_tokens=8, eos_token_id=[1], num_beams=5, length_penalty=-0.7, early_stopping=False,
              num_return_sequences=5),
         {"max_new_tokens": 8, "stop_tokens": [1], "strategy": beam(5, -0.7, False, 5)}),
        ("beam_never_no_penalty",
         dict(max_new_tokens=9, eos_token_id=[1], num_beams=2, length_penalty=0.0, early_stopping="never"),
         {"max_new_tokens": 9, "stop_tokens": [1], "strategy": beam(2, 0.0, "never")}),
        ("beam_forced",
         dict(max_new_tokens=7, eos_token_id=[1], num_beams=3, forced_bos_token_id=4, forced_eos_token_id=1,
              num_return_sequences=3),
         {"max_new_tokens": 7, "stop_tokens": [1], "forced_bos_token_id": 4, "forced_eos_token_id": 1,
          "strategy": beam(3, 1.0, False, 3)}),
        ("beam_no_stop_token",
         dict(max_new_tokens=6, eos_token_id=None, num_beams=3, num_return_sequences=2),
         {"max_new_tokens": 6, "strategy": beam(3, 1.0, False, 2)}),
    ]]


def prompts_for(name):
    g = torch.Generator().manual_seed(SEED + sum(map(ord, name)))
    if "forced" in name:
        lengths = (1, 1, 1)  # ForcedBOS acts when the sequence has length 1
    elif name.startswith("early"):
        lengths = (1, 2, 3, 4, 5, 3)
    else:
        lengths = (1, 3, 5)
    # prompts avoid the eos tokens 1 and 2
    return [[int(x) for x in torch.randint(3, VOCAB, (n,), generator=g)] for n in lengths]


def run_search(model, prompt, hf_kwargs):
    kwargs = dict(hf_kwargs)
    num_beams = kwargs.get("num_beams", 1)
    gc = GenerationConfig(
        do_sample=False, pad_token_id=0, use_cache=False, return_dict_in_generate=True, output_scores=True, **kwargs
    )
    out = model.generate(torch.tensor([prompt]), generation_config=gc)
    n = len(prompt)
    results = []
    if num_beams == 1:
        results.append({"tokens": out.sequences[0, n:].tolist(), "score": None})
        return results
    for i in range(out.sequences.shape[0]):
        generated = int((out.beam_indices[i] != -1).sum())
        results.append(
            {"tokens": out.sequences[i, n : n + generated].tolist(), "score": float(out.sequences_scores[i])}
        )
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    torch.manual_seed(SEED)
    torch.set_num_threads(2)

    bigram, pos = toy_tables()
    model = ToyLM(ToyConfig(), bigram, pos).eval()
    meta = {
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "seed": SEED,
        "generator": "crates/petl-generate/tests/golden/gen/make_beam_golden.py",
    }

    processors = {"meta": meta, "vocab_size": 40, "cases": processor_cases(model)}

    cases = []
    for name, hf_kwargs, petl_config, boost in search_cases():
        prompts = prompts_for(name)
        model.boost.zero_()
        for token, value in boost.items():
            model.boost[token] = value
        results = [run_search(model, p, hf_kwargs) for p in prompts]
        cases.append({"name": name, "hf_kwargs": hf_kwargs, "config": petl_config, "boost": floats(model.boost),
                      "prompts": prompts, "results": results})
        for p, r in zip(prompts, results):
            print(f"{name:32s} prompt {p}: " + "; ".join(f"{x['tokens']} {x['score']}" for x in r))
    search = {
        "meta": meta,
        "vocab_size": VOCAB,
        "max_positions": POSITIONS,
        "bigram": floats(bigram),
        "pos": floats(pos),
        "cases": cases,
    }

    for sub, payload in (("hf-processors", processors), ("hf-search", search)):
        directory = args.out / sub
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / "golden.json.tmp"
        tmp.write_text(json.dumps(payload, indent=None, separators=(",", ":")) + "\n")
        os.replace(tmp, directory / "golden.json")
        print(f"wrote {directory / 'golden.json'}")


if __name__ == "__main__":
    main()
