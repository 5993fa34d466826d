#!/usr/bin/env python3
"""PyTorch twin of one `petl bench` measurement.

`petl bench --torch PYTHON` runs this once per method, in a process of its own, next to petl's
own measurement (`petl bench-one`), and prints a table of both. It does the same work per step
on the same model directory. What the step trains depends on the model's config.json, as in
petl (`BenchArch` in crates/petl-train/src/bench/models.rs): a decoder-only model (model_type
llama, mistral, qwen2, or a *ForCausalLM architecture) is trained as a causal language model,
anything else as a 2-class classifier on an encoder.

Encoders:

  - BertForSequenceClassification: BERT (with its pooler) + dropout + a 2-class linear head,
    the layout of petl's `ClassificationHead` with CLS pooling; the head starts N(0, 0.02²)
    with a zero bias in both;
  - one random batch: seeded token ids within the vocabulary, [CLS] (101) first, attention mask
    all ones, token types 0, random labels (same shapes as petl's, not the same draws);
  - the loss is the cross-entropy of the 2-class logits.

Decoders (petl's generation training, `GenTaskModel::loss_sum`):

  - AutoModelForCausalLM (LlamaForCausalLM for SmolLM2), tied head as the config says;
  - one random batch: SplitMix64 ids from the seed, modulo the vocabulary, row after row —
    the same ids petl draws (`random_token_ids`), so both sides score the very same batch;
    attention mask all ones, no padding;
  - the loss is transformers' `labels=input_ids` loss: the mean token cross-entropy at every
    position after the first, what petl computes (logits at t - 1 against the token at t).

Per step, in both cases, in training mode (dropout on, the config's probabilities): forward,
the loss, backward, gradient clipping at norm 1, AdamW (lr 1e-4, betas 0.9/0.999, eps 1e-8,
weight decay 0.01 except on biases and LayerNorm weights, petl's defaults) over the method's
trainable parameters only. Inference: a no-grad forward of the same batch in eval mode, up to
the logits (a decoder's at every position).

Methods mirror petl's presets (crates/petl-methods/src/presets.rs) in what trains and how it
starts ("+ the head" on encoders only; a decoder's LM head is the frozen base's):

  full          every parameter (pooler and embeddings included; a tied LM head once)
  bitfit        every bias (LayerNorm β and the pooler's included) + the head; refused on a
                model without biases (Llama), as petl refuses it
  lora          peft LoRA r=16, alpha=32, dropout 0.1, on query and value (encoders) or
                q_proj and v_proj (decoders) + the head
  pa-ffn        parallel adapter at the FFN, r=200: FFN-input -> down -> ReLU -> up, added to
                the FFN output (encoders: before the residual and LayerNorm; decoders: the
                gated MLP's output, reading the MLP's input, i.e. the post-attention RMSNorm's
                output, before the residual); N(0, 0.02²) weights, zero biases + the head
  mam           peft prefix tuning l=30 with the MLP generator (800) + scaled parallel adapter
                at the FFN (placed as pa-ffn) r=512, s=4, LoRA init (Kaiming-uniform down,
                zero up and biases), dropout 0.1 after the ReLU + the head
  prefix        peft prefix tuning l=200 with the MLP generator (800) + the head
  diff-pruning  stage 1 of diff pruning: every base tensor w0 becomes w0 + z*w, w trained from
                0, z a hard-concrete gate per entry (l=-1.5, r=1.5, beta=1, log-alpha from 5),
                loss + 1.25e-7 * sum P(z != 0); the log-alphas step with their own AdamW at a
                constant 0.1 without decay, as petl's trainer does (run through
                torch.func.functional_call)

Prefixes: petl numbers the input tokens from 0 whatever the prefix length (He et al.'s code,
the presets' `shift_positions = false`); Hugging Face BERT and Llama would number them after
peft's prefix, so the position ids passed in are shifted back to match petl exactly.

Prints exactly one JSON line (the fields of petl's `BenchResult`); peak RSS is this process's
ru_maxrss.

Example:
  PY=$(scripts/python-env.sh | tail -n1)
  $PY scripts/bench_torch.py --model ~/.cache/petl/models/minilm --method lora --threads 2
"""

import argparse
import contextlib
import json
import math
import os
import resource
import statistics
import sys
import time
import warnings

import peft
import torch
import transformers
from torch import nn
from transformers import AutoModelForCausalLM, BertForSequenceClassification

CLS_ID = 101
# petl's decoder families (crates/petl-models/src/decoder/config.rs).
DECODER_TYPES = ("llama", "mistral", "qwen2")
LR = 1e-4
BETAS = (0.9, 0.999)
EPS = 1e-8
WEIGHT_DECAY = 0.01
MAX_GRAD_NORM = 1.0
PREFIX_MLP = 800
# petl's L0Gates defaults (crates/petl-methods/src/diff/config.rs).
L0_LOWER, L0_UPPER, L0_TEMPERATURE = -1.5, 1.5, 1.0
L0_ALPHA_INIT, L0_LAMBDA, L0_ALPHA_LR = 5.0, 1.25e-7, 0.1
METHODS = ("full", "bitfit", "lora", "pa-ffn", "mam", "prefix", "diff-pruning")


def parse_args():
    p = argparse.ArgumentParser(description="PyTorch twin of one `petl bench` measurement.")
    p.add_argument("--model", required=True,
                   help="Hugging Face model directory: a BERT-family encoder or a decoder-only LM")
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--precision", default="f32", choices=["f32", "f16", "bf16"],
                   help="autocast dtype of the step (f16 with a GradScaler), as petl's --precision")
    p.add_argument("--checkpoint-activations", action="store_true",
                   help="transformers' gradient checkpointing (per layer)")
    args = p.parse_args()
    if min(args.batch, args.seq, args.steps) < 1 or args.warmup < 0 or args.threads < 1:
        p.error("--batch, --seq, --steps and --threads must be at least 1, --warmup at least 0")
    return args


def exempt_from_decay(name):
    """petl's rule (crates/petl-train/src/optim.rs): no decay on biases and LayerNorm weights."""
    return name.endswith(".bias") or "LayerNorm" in name or "layer_norm" in name


def adamw(named, lr, weight_decay):
    decay = [p for n, p in named if not exempt_from_decay(n)]
    no_decay = [p for n, p in named if exempt_from_decay(n)]
    groups = [g for g in ({"params": decay, "weight_decay": weight_decay},
                          {"params": no_decay, "weight_decay": 0.0}) if g["params"]]
    return torch.optim.AdamW(groups, lr=lr, betas=BETAS, eps=EPS) if groups else None


# ----------------------------------------------------------------------------- adapters

class Adapter(nn.Module):
    """down -> ReLU -> dropout -> up, as petl's bottleneck (dropout after the nonlinearity)."""

    def __init__(self, d, r, dropout, lora_init):
        super().__init__()
        self.down = nn.Linear(d, r)
        self.up = nn.Linear(r, d)
        self.dropout = nn.Dropout(dropout)
        with torch.no_grad():
            if lora_init:
                # PyTorch's kaiming_uniform_(a=sqrt(5)) on [r, d]: bound 1/sqrt(d); petl's too.
                bound = 1.0 / math.sqrt(d)
                self.down.weight.uniform_(-bound, bound)
                self.up.weight.zero_()
            else:
                self.down.weight.normal_(0.0, 0.02)
                self.up.weight.normal_(0.0, 0.02)
            self.down.bias.zero_()
            self.up.bias.zero_()

    def forward(self, x):
        return self.up(self.dropout(torch.relu(self.down(x))))


class ParallelAdapterOutput(nn.Module):
    """BertOutput with a parallel adapter reading the FFN input:
    LayerNorm(a + dropout(W2 h) + s * adapter(a)), petl's `output(Ffn, a, .)` hook."""

    def __init__(self, out, adapter, scale):
        super().__init__()
        # The same attribute names keep the base weights' keys unchanged.
        self.dense, self.dropout, self.LayerNorm = out.dense, out.dropout, out.LayerNorm
        self.adapter = adapter
        self.scale = scale

    def forward(self, hidden_states, input_tensor):
        h = self.dropout(self.dense(hidden_states))
        h = h + self.scale * self.adapter(input_tensor)
        return self.LayerNorm(h + input_tensor)


class ParallelAdapterMlp(nn.Module):
    """A decoder's gated MLP with a parallel adapter reading the MLP's input f (the
    post-attention RMSNorm's output): mlp(f) + s * adapter(f), added before the residual —
    petl's `output(Ffn, f, .)` hook on a decoder block (crates/petl-models/src/decoder/block.rs)."""

    def __init__(self, mlp, adapter, scale):
        super().__init__()
        self.mlp = mlp
        self.adapter = adapter
        self.scale = scale

    def forward(self, f):
        return self.mlp(f) + self.scale * self.adapter(f)


def add_parallel_adapters(model, r, scale, dropout, lora_init):
    d = model.config.hidden_size
    if hasattr(model, "bert"):
        for layer in model.bert.encoder.layer:
            layer.output = ParallelAdapterOutput(layer.output, Adapter(d, r, dropout, lora_init), scale)
    else:
        for layer in model.model.layers:
            layer.mlp = ParallelAdapterMlp(layer.mlp, Adapter(d, r, dropout, lora_init), scale)


def adapter_params(model):
    return [(n, p) for n, p in model.named_parameters() if ".adapter." in n]


# ----------------------------------------------------------------------------- diff pruning

class GatedDiff(nn.Module):
    """Diff pruning's first stage on every base tensor: theta = w0 + z * w."""

    def __init__(self, base, prefix):
        """`base`: the module whose every parameter gets a gated diff (BERT without the new
        head; a decoder whole, a tied head once); `prefix`: its name in the model."""
        super().__init__()
        self.prefix = prefix
        self.names = [n for n, _ in base.named_parameters()]
        self.base = [p.detach() for _, p in base.named_parameters()]
        self.w = nn.ParameterList([nn.Parameter(torch.zeros_like(b)) for b in self.base])
        self.log_alpha = nn.ParameterList(
            [nn.Parameter(torch.full_like(b, L0_ALPHA_INIT)) for b in self.base])

    def params(self, training):
        # petl draws fresh noise in training and one fixed draw (seed 0) for evaluation.
        gen = None if training else torch.Generator().manual_seed(0)
        out = {}
        for name, b, w, a in zip(self.names, self.base, self.w, self.log_alpha):
            u = torch.rand(a.shape, generator=gen).clamp_(1e-4, 1 - 1e-4)
            s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + a) / L0_TEMPERATURE)
            z = (s * (L0_UPPER - L0_LOWER) + L0_LOWER).clamp(0.0, 1.0)
            out[self.prefix + name] = b + z * w
        return out

    def penalty(self):
        shift = L0_TEMPERATURE * math.log(-L0_LOWER / L0_UPPER)
        return L0_LAMBDA * sum(torch.sigmoid(a - shift).sum() for a in self.log_alpha)


# ----------------------------------------------------------------------------- methods

def build(method, model, decoder):
    """(module to call, main named params, gate named params, gated diff or None, notes)."""
    notes = []
    for p in model.parameters():
        p.requires_grad_(False)
    head = [(n, p) for n, p in model.named_parameters() if n.startswith("classifier.")]
    task_type = peft.TaskType.CAUSAL_LM if decoder else peft.TaskType.SEQ_CLS
    if method == "full":
        return model, list(model.named_parameters()), [], None, notes
    if method == "bitfit":
        named = [(n, p) for n, p in model.named_parameters() if n.endswith(".bias")]
        if not named:
            sys.exit(f"`bitfit` trains bias terms, and this {model.config.model_type} model has none "
                     "(Llama-family decoders have no biases): there is nothing to train or measure")
        return model, named + [hp for hp in head if not hp[0].endswith(".bias")], [], None, notes
    if method == "lora":
        targets = ["q_proj", "v_proj"] if decoder else ["query", "value"]
        cfg = peft.LoraConfig(task_type=task_type, r=16, lora_alpha=32,
                              target_modules=targets, lora_dropout=0.1, bias="none")
        pm = peft.get_peft_model(model, cfg)
        return pm, [(n, p) for n, p in pm.named_parameters() if p.requires_grad], [], None, notes
    if method == "pa-ffn":
        add_parallel_adapters(model, r=200, scale=1.0, dropout=0.0, lora_init=False)
        return model, adapter_params(model) + head, [], None, notes
    if method in ("prefix", "mam"):
        length = 200 if method == "prefix" else 30
        if method == "mam":
            add_parallel_adapters(model, r=512, scale=4.0, dropout=0.1, lora_init=True)
            notes.append("prefix via peft (K/V concatenation = petl's gated prefix, the same "
                         "function) + hand-written scaled parallel adapter")
        cfg = peft.PrefixTuningConfig(task_type=task_type, num_virtual_tokens=length,
                                      prefix_projection=True, encoder_hidden_size=PREFIX_MLP)
        pm = peft.get_peft_model(model, cfg)
        for _, p in adapter_params(model):
            p.requires_grad_(True)
        return pm, [(n, p) for n, p in pm.named_parameters() if p.requires_grad], [], None, notes
    if method == "diff-pruning":
        diff = GatedDiff(model, "") if decoder else GatedDiff(model.bert, "bert.")
        if not decoder:
            for p in model.classifier.parameters():
                p.requires_grad_(True)
        main = [("diff." + n, w) for n, w in zip(diff.names, diff.w)] + head
        gates = [("log_alpha." + n, a) for n, a in zip(diff.names, diff.log_alpha)]
        notes.append("stage 1 only (L0-gated dense diff) via torch.func.functional_call")
        return model, main, gates, diff, notes
    raise ValueError(method)


def is_decoder(model_dir):
    """petl's `BenchArch::of_config`: a decoder family's model_type or a *ForCausalLM."""
    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    archs = cfg.get("architectures") or []
    return cfg.get("model_type") in DECODER_TYPES or any(a.endswith("ForCausalLM") for a in archs)


def splitmix64_ids(batch, seq, vocab, seed):
    """petl's `random_token_ids`: the SplitMix64 stream from `seed`, modulo `vocab`."""
    mask = (1 << 64) - 1
    state = seed & mask
    rows = []
    for _ in range(batch):
        row = []
        for _ in range(seq):
            state = (state + 0x9E3779B97F4A7C15) & mask
            z = state
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
            row.append((z ^ (z >> 31)) % vocab)
        rows.append(row)
    return torch.tensor(rows, dtype=torch.long)


def load(args, decoder, device):
    """The model (float32, still on the CPU), its batch on `device` and the task's loss:
    (model, inputs, loss_of(model output))."""
    if decoder:
        model, info = AutoModelForCausalLM.from_pretrained(
            args.model, dtype=torch.float32, output_loading_info=True)
        if info["missing_keys"]:
            sys.exit(f"{args.model}: {type(model).__name__} is missing {info['missing_keys']}")
        if args.checkpoint_activations:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if args.seq < 2:
            sys.exit("--seq must be at least 2 on a decoder: the first token is never predicted")
        ids = splitmix64_ids(args.batch, args.seq, model.config.vocab_size, args.seed).to(device)
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
        return model, inputs, lambda out: out.loss

    model, info = BertForSequenceClassification.from_pretrained(
        args.model, num_labels=2, dtype=torch.float32, output_loading_info=True)
    missing = [k for k in info["missing_keys"] if not k.startswith("classifier.")]
    if missing:
        sys.exit(f"{args.model}: BertForSequenceClassification is missing {missing}")
    if args.checkpoint_activations:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    g = torch.Generator().manual_seed(args.seed)
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (args.batch, args.seq), generator=g)
    ids[:, 0] = CLS_ID if CLS_ID < vocab else 0
    labels = torch.randint(0, 2, (args.batch,), generator=g)
    ids, labels = ids.to(device), labels.to(device)
    inputs = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "token_type_ids": torch.zeros_like(ids),
    }
    return model, inputs, lambda out: nn.functional.cross_entropy(out.logits.float(), labels)


def main():
    args = parse_args()
    # Load reports and deprecation notices would bury a real error in the stderr petl shows.
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    torch.manual_seed(args.seed)

    decoder = is_decoder(args.model)
    device = torch.device(args.device)
    model, inputs, loss_of = load(args, decoder, device)
    cfg = model.config
    module, main_named, gate_named, diff, notes = build(args.method, model, decoder)
    for _, p in main_named + gate_named:
        p.requires_grad_(True)

    model.to(device)
    # Inference computes the logits only.
    infer_inputs = {k: v for k, v in inputs.items() if k != "labels"}
    autocast_dtype = {"f32": None, "f16": torch.float16, "bf16": torch.bfloat16}[args.precision]
    scaler = torch.amp.GradScaler(device.type) if args.precision == "f16" else None

    def autocast():
        if autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=autocast_dtype)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    if args.method in ("prefix", "mam"):
        # peft adds the prefix length to given position ids; petl does not shift positions.
        length = module.active_peft_config.num_virtual_tokens
        positions = (torch.arange(args.seq).expand(args.batch, -1) - length).to(device)
        inputs["position_ids"] = infer_inputs["position_ids"] = positions

    def forward(training, kwargs):
        if diff is None:
            return module(**kwargs)
        return torch.func.functional_call(model, diff.params(training), args=(), kwargs=kwargs)

    optim = adamw(main_named, LR, WEIGHT_DECAY)
    gate_optim = adamw(gate_named, L0_ALPHA_LR, 0.0)
    main_params = [p for _, p in main_named]
    gate_params = [p for _, p in gate_named]

    module.train()
    times, losses = [], []
    for step in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        optim.zero_grad(set_to_none=True)
        if gate_optim is not None:
            gate_optim.zero_grad(set_to_none=True)
        with autocast():
            loss = loss_of(forward(True, inputs))
        total = loss + diff.penalty() if diff is not None else loss
        if scaler is not None:
            scaler.scale(total).backward()
            scaler.unscale_(optim)
        else:
            total.backward()
        torch.nn.utils.clip_grad_norm_(main_params, MAX_GRAD_NORM)
        if scaler is not None:
            scaler.step(optim)
            scaler.update()
        else:
            optim.step()
        if gate_optim is not None:
            torch.nn.utils.clip_grad_norm_(gate_params, MAX_GRAD_NORM)
            gate_optim.step()
        sync()
        ms = (time.perf_counter() - t0) * 1e3
        losses.append(loss.item())
        if step >= args.warmup:
            times.append(ms)

    module.eval()
    infer = []
    with torch.no_grad():
        for rep in range(args.steps + 1):
            t0 = time.perf_counter()
            with autocast():
                forward(False, infer_inputs).logits
            sync()
            if rep > 0:
                infer.append((time.perf_counter() - t0) * 1e3)

    median = statistics.median(times)
    result = {
        "impl": "torch",
        "method": args.method,
        "model": str(args.model),
        "batch": args.batch,
        "seq": args.seq,
        "warmup": args.warmup,
        "steps": args.steps,
        "threads": torch.get_num_threads(),
        "trainable_params": sum(p.numel() for p in main_params + gate_params),
        "step_ms_median": median,
        "step_ms_mean": statistics.fmean(times),
        "step_ms": times,
        "examples_per_s": args.batch * 1e3 / median,
        "tokens_per_s": args.batch * args.seq * 1e3 / median,
        # ru_maxrss is in KiB on Linux.
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6,
        "peak_gpu_mb": (torch.cuda.max_memory_allocated(device) / 1e6 if device.type == "cuda" else None),
        "infer_ms_median": statistics.median(infer),
        "device": str(device),
        "precision": args.precision,
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "peft": peft.__version__, "attention": cfg._attn_implementation},
        "notes": notes,
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
