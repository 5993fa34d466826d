#!/usr/bin/env python3
"""PyTorch/transformers twin of petl's GLUE full fine-tuning.

petl fine-tunes encoders on GLUE tasks in Rust. This script runs the same recipe
in PyTorch + transformers on the same machine (same data files, tokenisation
limits, optimizer, schedule, clipping, batching and metrics), so that petl's
accuracy and throughput can be compared against a well-known reference.
Its JSON output (--out) is what petl's comparison reports read:

  {task, model, train_rows, hyperparameters, dev_metrics_per_epoch,
   final_dev_metrics, train_examples_per_s, eval_examples_per_s, wall_s,
   versions: {torch, transformers}, threads}

Recipe: AutoModelForSequenceClassification (BERT-style pooler + dropout 0.1 +
linear head), AdamW (0.9/0.999, eps 1e-8; no weight decay on biases and
LayerNorm weights), linear warmup for ceil(warmup_ratio * total_steps) then
linear decay to 0, gradient clipping, cross-entropy (MSE for STS-B).
Each epoch: shuffle with a generator seeded seed+epoch, cut into chunks of
50*batch, sort each chunk by length, cut into batches, shuffle the batches;
pad each batch to its longest row. Dev evaluation after every epoch.

Example:
  PY=$(scripts/python-env.sh | tail -n1)
  $PY scripts/reference/train_glue_torch.py --model /path/to/all-MiniLM-L6-v2 \
      --data-dir /path/to/glue --task sst2 --out runs/torch-sst2.json
"""

import argparse
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import transformers
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score, matthews_corrcoef
from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

TASK_DIRS = {"sst2": "SST-2", "rte": "RTE", "mrpc": "MRPC", "cola": "CoLA", "stsb": "STS-B"}
RTE_LABELS = {"entailment": 0, "not_entailment": 1}
EVAL_BATCH = 64
PROGRESS_EVERY = 50
BUCKET_FACTOR = 50


# ----------------------------------------------------------------------------- args

def parse_args():
    p = argparse.ArgumentParser(description="PyTorch reference for petl's GLUE full fine-tuning.")
    p.add_argument("--model", required=True, type=Path, help="local HF model dir (config, weights, tokenizer)")
    p.add_argument("--data-dir", required=True, type=Path, help="GLUE root holding SST-2/, RTE/, MRPC/, CoLA/, STS-B/")
    p.add_argument("--task", required=True, choices=sorted(TASK_DIRS), help="GLUE task")
    p.add_argument("--train-rows", type=int, default=None, help="use only the first N rows of train.tsv (default: all)")
    p.add_argument("--max-len", type=int, default=64, help="max tokens per example (truncation)")
    p.add_argument("--epochs", type=int, default=2, help="training epochs")
    p.add_argument("--batch-size", type=int, default=32, help="training batch size")
    p.add_argument("--lr", type=float, default=5e-5, help="peak learning rate")
    p.add_argument("--warmup-ratio", type=float, default=0.06, help="fraction of total steps for linear warmup")
    p.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (not on biases/LayerNorm)")
    p.add_argument("--max-grad-norm", type=float, default=1.0, help="gradient clipping norm")
    p.add_argument("--seed", type=int, default=42, help="seed for init, dropout and shuffling")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--out", required=True, type=Path, help="JSON result file")
    return p.parse_args()


# ----------------------------------------------------------------------------- data

def read_tsv(path, header=True):
    """Rows of a GLUE TSV split on tabs (no quote handling: GLUE text contains quotes)."""
    with open(path, encoding="utf-8-sig") as f:
        lines = [line.rstrip("\n").rstrip("\r") for line in f if line.strip()]
    rows = [line.split("\t") for line in lines]
    if not header:
        return None, rows
    return rows[0], rows[1:]


def load_split(data_dir, task, split):
    """[(text_a, text_b or None, label)] for one split; label int, or float for stsb."""
    path = data_dir / TASK_DIRS[task] / f"{split}.tsv"
    if task == "cola":
        _, rows = read_tsv(path, header=False)
        return [(r[3], None, int(r[1])) for r in rows]
    head, rows = read_tsv(path)
    if task == "mrpc":
        return [(r[3], r[4], int(r[0])) for r in rows]
    col = {name: i for i, name in enumerate(head)}
    if task == "sst2":
        return [(r[col["sentence"]], None, int(r[col["label"]])) for r in rows]
    if task == "rte":
        return [(r[col["sentence1"]], r[col["sentence2"]], RTE_LABELS[r[col["label"]]]) for r in rows]
    if task == "stsb":
        return [(r[col["sentence1"]], r[col["sentence2"]], float(r[col["score"]])) for r in rows]
    raise ValueError(task)


def tokenize(tokenizer, examples, max_len):
    """Per-example token lists (no padding) plus labels."""
    a = [e[0] for e in examples]
    b = [e[1] for e in examples]
    if all(x is None for x in b):
        enc = tokenizer(a, truncation=True, max_length=max_len)
    else:
        enc = tokenizer(a, b, truncation=True, max_length=max_len)
    feats = []
    for i, ex in enumerate(examples):
        f = {"input_ids": enc["input_ids"][i], "label": ex[2]}
        if "token_type_ids" in enc:
            f["token_type_ids"] = enc["token_type_ids"][i]
        feats.append(f)
    return feats


def collate(feats, pad_id, regression):
    """Right-pad a list of features to the longest row."""
    t = max(len(f["input_ids"]) for f in feats)
    ids = torch.full((len(feats), t), pad_id, dtype=torch.long)
    mask = torch.zeros((len(feats), t), dtype=torch.long)
    types = torch.zeros((len(feats), t), dtype=torch.long)
    for i, f in enumerate(feats):
        n = len(f["input_ids"])
        ids[i, :n] = torch.tensor(f["input_ids"])
        mask[i, :n] = 1
        if "token_type_ids" in f:
            types[i, :n] = torch.tensor(f["token_type_ids"])
    labels = torch.tensor([f["label"] for f in feats], dtype=torch.float if regression else torch.long)
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    if "token_type_ids" in feats[0]:
        batch["token_type_ids"] = types
    return batch


def epoch_batches(n_rows, lengths, batch_size, seed):
    """Index lists: shuffle, chunks of BUCKET_FACTOR*batch sorted by length, batches shuffled."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n_rows, generator=g).tolist()
    chunk = BUCKET_FACTOR * batch_size
    batches = []
    for start in range(0, n_rows, chunk):
        part = sorted(perm[start:start + chunk], key=lambda i: lengths[i])
        batches.extend(part[j:j + batch_size] for j in range(0, len(part), batch_size))
    order = torch.randperm(len(batches), generator=g).tolist()
    return [batches[i] for i in order]


# ----------------------------------------------------------------------------- model / optimizer

def build_model(model_dir, task):
    regression = task == "stsb"
    kwargs = {"num_labels": 1 if regression else 2, "dtype": torch.float32}
    if regression:
        kwargs["problem_type"] = "regression"
    return AutoModelForSequenceClassification.from_pretrained(str(model_dir), **kwargs)


def param_groups(model, weight_decay):
    """Two AdamW groups: decayed weights; biases and LayerNorm weights without decay."""
    ln_params = {id(p) for m in model.modules() if isinstance(m, torch.nn.LayerNorm) for p in m.parameters()}
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.endswith("bias") or id(p) in ln_params:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def compute_loss(logits, labels, regression):
    if regression:
        return torch.nn.functional.mse_loss(logits.squeeze(-1), labels)
    return torch.nn.functional.cross_entropy(logits, labels)


# ----------------------------------------------------------------------------- eval

def metrics(task, preds, labels):
    if task == "stsb":
        return {"pearson": float(pearsonr(preds, labels)[0]), "spearman": float(spearmanr(preds, labels)[0])}
    out = {"accuracy": float(np.mean(preds == labels))}
    if task == "mrpc":
        out["f1"] = float(f1_score(labels, preds))
    if task == "cola":
        out["matthews"] = float(matthews_corrcoef(labels, preds))
    return out


@torch.no_grad()
def evaluate(model, feats, task, pad_id):
    """Dev metrics and (examples, seconds) of pure evaluation."""
    model.eval()
    regression = task == "stsb"
    preds = []
    t0 = time.perf_counter()
    for s in range(0, len(feats), EVAL_BATCH):
        batch = collate(feats[s:s + EVAL_BATCH], pad_id, regression)
        batch.pop("labels")
        logits = model(**batch).logits
        preds.append(logits.squeeze(-1) if regression else logits.argmax(-1))
    secs = time.perf_counter() - t0
    preds = torch.cat(preds).numpy()
    labels = np.array([f["label"] for f in feats])
    return metrics(task, preds, labels), len(feats), secs


# ----------------------------------------------------------------------------- train

def train_epoch(model, feats, batches, optimizer, scheduler, args, state):
    """One epoch; returns (examples, seconds) of training time."""
    model.train()
    regression = args.task == "stsb"
    pad_id = state["pad_id"]
    examples, t0 = 0, time.perf_counter()
    for idx in batches:
        batch = collate([feats[i] for i in idx], pad_id, regression)
        labels = batch.pop("labels")
        loss = compute_loss(model(**batch).logits, labels, regression)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        optimizer.step()
        scheduler.step()
        examples += len(idx)
        state["step"] += 1
        state["loss_sum"] += loss.item()
        state["loss_n"] += 1
        if state["step"] % PROGRESS_EVERY == 0:
            elapsed = state["train_s"] + time.perf_counter() - t0
            print(f"step {state['step']}/{state['total_steps']} epoch {state['epoch']} "
                  f"loss {state['loss_sum'] / state['loss_n']:.4f} lr {scheduler.get_last_lr()[0]:.3e} "
                  f"train_ex/s {(state['train_examples'] + examples) / elapsed:.1f}", flush=True)
            state["loss_sum"], state["loss_n"] = 0.0, 0
    return examples, time.perf_counter() - t0


def set_seed(seed, threads):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass


def hyperparameters(args):
    keys = ["max_len", "epochs", "batch_size", "lr", "warmup_ratio", "weight_decay", "max_grad_norm", "seed"]
    hp = {k: getattr(args, k) for k in keys}
    hp.update({"optimizer": "AdamW(0.9,0.999,eps=1e-8)", "schedule": "linear warmup + linear decay",
               "eval_batch_size": EVAL_BATCH, "bucket_factor": BUCKET_FACTOR})
    return hp


def main():
    args = parse_args()
    wall0 = time.perf_counter()
    set_seed(args.seed, args.threads)

    tokenizer = AutoTokenizer.from_pretrained(str(args.model))
    train_ex = load_split(args.data_dir, args.task, "train")
    if args.train_rows is not None:
        train_ex = train_ex[:args.train_rows]
    dev_ex = load_split(args.data_dir, args.task, "dev")
    train_feats = tokenize(tokenizer, train_ex, args.max_len)
    dev_feats = tokenize(tokenizer, dev_ex, args.max_len)
    lengths = [len(f["input_ids"]) for f in train_feats]
    print(f"task {args.task}: train {len(train_feats)} dev {len(dev_feats)} rows", flush=True)

    torch.manual_seed(args.seed)
    model = build_model(args.model, args.task)
    optimizer = torch.optim.AdamW(param_groups(model, args.weight_decay), lr=args.lr,
                                  betas=(0.9, 0.999), eps=1e-8)
    steps_per_epoch = math.ceil(len(train_feats) / args.batch_size)
    total_steps = steps_per_epoch * args.epochs
    warmup = math.ceil(args.warmup_ratio * total_steps)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total_steps)

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    state = {"step": 0, "total_steps": total_steps, "epoch": 0, "loss_sum": 0.0, "loss_n": 0,
             "train_examples": 0, "train_s": 0.0, "pad_id": pad_id}
    eval_examples, eval_s, per_epoch = 0, 0.0, []
    for epoch in range(args.epochs):
        state["epoch"] = epoch
        batches = epoch_batches(len(train_feats), lengths, args.batch_size, args.seed + epoch)
        n, secs = train_epoch(model, train_feats, batches, optimizer, scheduler, args, state)
        state["train_examples"] += n
        state["train_s"] += secs
        m, en, es = evaluate(model, dev_feats, args.task, pad_id)
        eval_examples += en
        eval_s += es
        per_epoch.append({"epoch": epoch + 1, **m})
        print(f"epoch {epoch + 1} dev {json.dumps(m)} train {secs:.1f}s eval {es:.1f}s", flush=True)

    result = {
        "task": args.task,
        "model": str(args.model),
        "train_rows": len(train_feats),
        "dev_rows": len(dev_feats),
        "hyperparameters": {**hyperparameters(args), "total_steps": total_steps, "warmup_steps": warmup},
        "dev_metrics_per_epoch": per_epoch,
        "final_dev_metrics": per_epoch[-1] if per_epoch else {},
        "train_examples_per_s": state["train_examples"] / state["train_s"] if state["train_s"] else None,
        "eval_examples_per_s": eval_examples / eval_s if eval_s else None,
        "train_s": state["train_s"],
        "eval_s": eval_s,
        "wall_s": time.perf_counter() - wall0,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "threads": args.threads,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
