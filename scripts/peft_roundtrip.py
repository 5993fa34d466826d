#!/usr/bin/env python3
"""Proof that petl's peft export and import are exact, run against torch + transformers + peft.

Two directions, each compared on the same inputs by max |Δ logits| (tolerance 1e-4):

  petl → peft   adapters TRAINED by petl (`petl train`, a short real run on MiniLM, 3 epochs of 200
                SST-2 rows:
                LoRA, prefix tuning with its MLP ejected, IA3, prompt tuning) are exported with
                `petl peft export` and loaded with
                `PeftModel.from_pretrained(BertForSequenceClassification.from_pretrained(minilm,
                num_labels=2), export_dir)` (eval, float32, eager attention); their logits are
                compared with `petl predict --logits`.
  peft → petl   adapters CREATED by peft (`get_peft_model`, task SEQ_CLS, so the classifier is in
                modules_to_save; LoRA on query/value, IA3, prefix tuning with and without
                prefix_projection, prompt tuning), every trainable tensor overwritten with seeded
                random non-zero values (LoRA's lora_B included, which peft starts at zero), saved
                with `save_pretrained`, reloaded with `PeftModel.from_pretrained`, imported with
                `petl peft import` and compared the same way.

Inputs: the first 12 SST-2 dev sentences and the first 4 RTE dev sentence pairs (token types 1 on
the second sentence), tokenised with MiniLM's tokenizer.json, padded batch. The script prints a
table of max |Δ logits| per case and exits 1 if any case exceeds the tolerance or fails.

  --make-fixture DIR   instead writes the small peft-created adapters (LoRA, IA3, prefix,
                       prefix with projection, prompt) on the tiny random BERT of petl-models and
                       peft's logits for a fixed token batch (DIR/golden.safetensors), the fixture
                       of crates/petl-peft/tests/peft_fixture.rs. No petl binary needed.

Usage (scripts/peft-roundtrip.sh does all of this):
  PY=$(scripts/python-env.sh | tail -n1)
  $PY scripts/peft_roundtrip.py --petl target/release/petl --model-dir ~/.cache/petl/models/minilm \\
      --glue /path/to/glue --work runs/peft-roundtrip
  $PY scripts/peft_roundtrip.py --make-fixture crates/petl-peft/tests/golden/peft-fixture
"""

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import peft
import tokenizers
import torch
import transformers
from peft import IA3Config, LoraConfig, PeftModel, PrefixTuningConfig, PromptTuningConfig, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import BertForSequenceClassification

TOL = 1e-4
SEED = 0
ATTN_IMPL = "eager"
MAX_LEN = 256  # petl predict's truncation; every input is shorter, so neither side truncates
REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_BERT = REPO_ROOT / "crates/petl-models/tests/golden/tiny-bert"
GENERATOR = "scripts/peft_roundtrip.py --make-fixture"

PEFT_CASES = ["lora", "ia3", "prefix", "prefix-projection", "prompt"]

# name, petl method, --set overrides, learning rate
PETL_CASES = [
    ("lora", "lora", [], "2e-3"),
    ("prefix", "prefix", ["method.delta.0.form.length=16", "method.delta.0.form.shift_positions=true"], "2e-3"),
    ("ia3", "ia3", [], "1e-2"),
    ("prompt", "prompt", ["method.delta.0.form.length=8"], "1e-2"),
]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--petl", type=Path, help="the petl binary")
    p.add_argument("--model-dir", type=Path, help="MiniLM directory (`petl model fetch minilm`)")
    p.add_argument("--glue", type=Path, help="GLUE root (SST-2/, RTE/)")
    p.add_argument("--work", type=Path, help="directory for runs, exports and imports")
    p.add_argument("--retrain", action="store_true", help="train again even if a run exists")
    p.add_argument("--make-fixture", type=Path, help="write the tiny-bert fixture here and exit")
    return p.parse_args()


# ----------------------------------------------------------------------------- peft side

def load_base(model_dir, num_labels):
    model = BertForSequenceClassification.from_pretrained(
        str(model_dir), num_labels=num_labels, dtype=torch.float32, attn_implementation=ATTN_IMPL)
    return model.eval()


def load_peft(model_dir, num_labels, adapter_dir):
    return PeftModel.from_pretrained(load_base(model_dir, num_labels), str(adapter_dir)).eval()


def peft_config(kind, small):
    n = 5 if small else 10
    if kind == "lora":
        return LoraConfig(task_type="SEQ_CLS", r=4 if small else 8, lora_alpha=8 if small else 16,
                          target_modules=["query", "value"])
    if kind == "ia3":
        # "output.dense" also matches attention.output.dense: peft scales both inputs.
        return IA3Config(task_type="SEQ_CLS", target_modules=["key", "value", "output.dense"],
                         feedforward_modules=["output.dense"])
    if kind == "prefix":
        return PrefixTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=n)
    if kind == "prefix-projection":
        return PrefixTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=n, prefix_projection=True,
                                  encoder_hidden_size=16 if small else 64)
    if kind == "prompt":
        return PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=3 if small else 8)
    raise ValueError(kind)


def randomize(model):
    """Overwrites every trainable tensor (adapter and classifier), in name order, with seeded values."""
    g = torch.Generator().manual_seed(SEED)
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    with torch.no_grad():
        for name in sorted(params):
            p = params[name]
            z = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if "lora_A" in name:
                p.copy_(z / p.shape[1] ** 0.5)
            elif "lora_B" in name:
                p.copy_(0.1 * z)  # non-zero: peft starts lora_B at 0
            elif "ia3_l" in name:
                p.copy_(1.0 + 0.2 * z)
            else:  # classifier, prefix / prompt embeddings, the prefix MLP
                p.copy_(0.5 * z)
    return sorted(params)


def make_peft_adapter(kind, model_dir, num_labels, out_dir, small):
    torch.manual_seed(SEED)
    model = get_peft_model(load_base(model_dir, num_labels), peft_config(kind, small))
    names = randomize(model)
    model.save_pretrained(str(out_dir))
    return names


def peft_logits(model_dir, num_labels, adapter_dir, batch):
    """Logits of the reloaded adapter, and how far they are from those of the base model with
    the adapter's classifier but without its encoder delta: evidence that the delta is no no-op."""
    model = load_peft(model_dir, num_labels, adapter_dir)
    base = load_base(model_dir, num_labels)
    saved = load_file(str(adapter_dir / "adapter_model.safetensors"))
    head = {k.split("classifier.")[-1]: v for k, v in saved.items() if ".classifier." in f".{k}"}
    base.classifier.load_state_dict(head)
    with torch.no_grad():
        logits = model(**batch).logits.float()
        plain = base(**batch).logits.float()
    return logits, (logits - plain).abs().max().item()


# ----------------------------------------------------------------------------- inputs

def sentences(glue):
    rows = []
    with open(glue / "SST-2" / "dev.tsv", encoding="utf-8") as f:
        next(f)
        for line in f:
            rows.append((line.rstrip("\n").split("\t")[0], None))
            if len(rows) == 12:
                break
    with open(glue / "RTE" / "dev.tsv", encoding="utf-8") as f:
        next(f)
        for line in f:
            _, a, b, _ = line.rstrip("\n").split("\t")
            rows.append((a, b))
            if len(rows) == 16:
                break
    return rows


def tokenize(model_dir, rows):
    tok = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    encs = [tok.encode(a, b) if b is not None else tok.encode(a) for a, b in rows]
    t = max(len(e.ids) for e in encs)
    assert t <= MAX_LEN, f"longest input has {t} tokens; petl predict truncates at {MAX_LEN}"
    batch = {k: torch.zeros(len(encs), t, dtype=torch.int64)
             for k in ("input_ids", "token_type_ids", "attention_mask")}
    for i, e in enumerate(encs):
        n = len(e.ids)
        batch["input_ids"][i, :n] = torch.tensor(e.ids)
        batch["token_type_ids"][i, :n] = torch.tensor(e.type_ids)
        batch["attention_mask"][i, :n] = 1
    return batch


# ----------------------------------------------------------------------------- petl side

def petl(binary, *args, stdin=None):
    r = subprocess.run([str(binary), *map(str, args)], input=stdin, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"petl {' '.join(map(str, args))} failed:\n{r.stderr.strip()}")
    return r.stdout


def petl_logits(binary, model_dir, artifact, rows):
    text = "\n".join(a if b is None else f"{a}\t{b}" for a, b in rows) + "\n"
    out = petl(binary, "predict", "--artifact", artifact, "--model", model_dir, "--max-len", MAX_LEN, "--logits",
               "--json", stdin=text)
    return torch.tensor([json.loads(line)["logits"] for line in out.splitlines()], dtype=torch.float32)


def train(args, name, method, sets, lr):
    run = args.work / f"petl-{name}"
    if (run / "artifact" / "artifact.json").is_file() and not args.retrain:
        return run
    if run.exists():  # a stale or unfinished run: petl train refuses to overwrite it
        shutil.rmtree(run)
    cmd = ["train", "--task", "sst2", "--data-dir", args.glue, "--model", args.model_dir, "--method", method,
           "--train-rows", "200", "--eval-rows", "64", "--epochs", "3", "--batch-size", "16", "--lr", lr,
           "--seed", "0",
           "--max-len", "128", "--no-progress", "--out", run]
    for s in sets:
        cmd += ["--set", s]
    print(f"  training petl {name} ({method}): 3 epochs of 200 SST-2 rows …", flush=True)
    petl(args.petl, *cmd)
    return run


# ----------------------------------------------------------------------------- cases

def compare(table, case, direction, ours, theirs, effect):
    diff = (ours - theirs).abs().max().item()
    table.append((case, direction, ours.shape[0], diff, theirs.abs().max().item(), effect, diff <= TOL))


def run_roundtrip(args):
    for need in ("petl", "model_dir", "glue", "work"):
        if getattr(args, need) is None:
            sys.exit(f"--{need.replace('_', '-')} is required (or use --make-fixture)")
    args.work.mkdir(parents=True, exist_ok=True)
    rows = sentences(args.glue)
    batch = tokenize(args.model_dir, rows)
    table, errors = [], []

    for name, method, sets, lr in PETL_CASES:
        case = f"petl {name} (trained)"
        print(f"case {case}", flush=True)
        try:
            run = train(args, name, method, sets, lr)
            export = args.work / f"export-{name}"
            petl(args.petl, "peft", "export", run, "--model", args.model_dir, "--out", export)
            theirs, effect = peft_logits(args.model_dir, 2, export, batch)
            ours = petl_logits(args.petl, args.model_dir, run, rows)
            compare(table, case, "petl -> peft", ours, theirs, effect)
        except Exception as e:  # noqa: BLE001 - every failure is reported in the table
            errors.append((case, str(e)))

    for kind in PEFT_CASES:
        case = f"peft {kind} (random)"
        print(f"case {case}", flush=True)
        try:
            adapter = args.work / f"peft-{kind}"
            make_peft_adapter(kind, args.model_dir, 2, adapter, small=False)
            theirs, effect = peft_logits(args.model_dir, 2, adapter, batch)
            artifact = args.work / f"import-{kind}"
            petl(args.petl, "peft", "import", adapter, "--model", args.model_dir, "--task", "sst2",
                 "--out", artifact)
            ours = petl_logits(args.petl, args.model_dir, artifact, rows)
            compare(table, case, "peft -> petl", ours, theirs, effect)
        except Exception as e:  # noqa: BLE001
            errors.append((case, str(e)))

    print()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}; "
          f"{len(rows)} inputs ({sum(b is not None for _, b in rows)} pairs), tolerance {TOL:g}")
    print(f"{'case':<32} {'direction':<13} {'rows':>4} {'max |Δ logits|':>15} {'max |logits|':>13} "
          f"{'delta effect':>13}  result")
    for case, direction, n, diff, scale, effect, ok in table:
        print(f"{case:<32} {direction:<13} {n:>4} {diff:>15.3e} {scale:>13.4f} {effect:>13.4f}  "
              f"{'ok' if ok else 'FAIL'}")
    for case, msg in errors:
        print(f"{case:<32} ERROR: {msg}")
    print("(delta effect: max |logits − logits of the base with the adapter's classifier but no encoder delta|)")
    if errors or not all(ok for *_, ok in table):
        sys.exit(1)


# ----------------------------------------------------------------------------- fixture

def fixture_inputs():
    """A fixed padded batch for the tiny BERT (vocab 99): rows of 11, 7 and 4 tokens, pad id 0,
    row 0's last 4 tokens of token type 1."""
    g = torch.Generator().manual_seed(SEED)
    lengths = [11, 7, 4]
    ids = torch.randint(3, 99, (3, 11), generator=g, dtype=torch.int64)
    mask = torch.zeros(3, 11, dtype=torch.int64)
    types = torch.zeros(3, 11, dtype=torch.int64)
    for r, n in enumerate(lengths):
        mask[r, :n] = 1
        ids[r, n:] = 0
    types[0, 7:11] = 1
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}


def make_fixture(out):
    out.mkdir(parents=True, exist_ok=True)
    batch = fixture_inputs()
    golden = dict(batch)
    notes = {}
    for kind in PEFT_CASES:
        adapter = out / kind
        names = make_peft_adapter(kind, TINY_BERT, 3, adapter, small=True)
        (adapter / "README.md").unlink(missing_ok=True)  # peft's model card template
        config_path = adapter / "adapter_config.json"
        config = json.loads(config_path.read_text())
        config["base_model_name_or_path"] = "crates/petl-models/tests/golden/tiny-bert"
        for key in ("target_modules", "feedforward_modules"):  # sets in peft: sorted for stable files
            if isinstance(config.get(key), list):
                config[key] = sorted(config[key])
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        logits, effect = peft_logits(TINY_BERT, 3, adapter, batch)
        assert effect > 1e-2, (kind, effect)  # the encoder delta must matter
        golden[f"logits.{kind}"] = logits.contiguous()
        notes[kind] = {"trainable": names, "adapter_effect": round(effect, 6)}
        print(f"  {kind}: logits {tuple(logits.shape)}, delta effect {effect:.4f}")
    meta = {
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "peft_version": peft.__version__,
        "seed": str(SEED),
        "generator": GENERATOR,
        "base_model": "crates/petl-models/tests/golden/tiny-bert (BertForSequenceClassification, "
                      "num_labels=3, float32, eager attention, eval)",
        "cases": json.dumps(notes, sort_keys=True),
    }
    save_file({k: v.contiguous() for k, v in golden.items()}, str(out / "golden.safetensors"), metadata=meta)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out} ({total} bytes)")
    assert total < 100_000, total


def main():
    args = parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(SEED)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    if args.make_fixture:
        make_fixture(args.make_fixture)
    else:
        run_roundtrip(args)


if __name__ == "__main__":
    main()
