#!/usr/bin/env bash
# Reproduces the foundation issue's figures on 2 CPU cores: MiniLM full fine-tuning on the first
# 10,000 SST-2 rows next to the PyTorch/transformers twin (scripts/reference/train_glue_torch.py),
# then BitFit and head-only on SST-2 and RTE. Runs go to runs/glue/<task>-<method>/.
#
# Usage: scripts/glue-baselines.sh GLUE_DIR [step...]   (steps: petl-sst2-full torch-sst2-full
#        petl-sst2-head-only petl-sst2-head-only-mean petl-sst2-bitfit petl-rte-head-only
#        petl-rte-bitfit petl-rte-full torch-rte-full speed; default all)
# `speed` times full fine-tuning on 2,000 SST-2 rows for one epoch in petl and in PyTorch back to
# back; run it on an otherwise idle machine, since both use every core.
set -euo pipefail
glue=${1:?usage: scripts/glue-baselines.sh GLUE_DIR [step...]}
shift
cd "$(dirname "$0")/.."
cargo build --release -q -p petl-cli
petl=target/release/petl
model=$($petl -q model fetch minilm)
out=runs/glue
mkdir -p "$out"
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(petl-sst2-full torch-sst2-full petl-sst2-head-only petl-sst2-head-only-mean
  petl-sst2-bitfit petl-rte-head-only petl-rte-bitfit petl-rte-full torch-rte-full speed)

# The shared recipe: batch 32, warmup 6%, weight decay 0.01, clip 1.0, seed 42, linear decay.
common=(--model "$model" --data-dir "$glue" --batch-size 32 --warmup-ratio 0.06 --weight-decay 0.01 --seed 42 --no-progress)
sst2=(--task sst2 --train-rows 10000 --max-len 64 --epochs 2)
rte=(--task rte --max-len 128 --epochs 3)

for step in "${steps[@]}"; do
  echo "== $step"
  case $step in
    petl-sst2-full)      $petl train "${common[@]}" "${sst2[@]}" --method full --lr 5e-5 --out "$out/sst2-full" ;;
    torch-sst2-full)
      py=$(scripts/python-env.sh | tail -1)
      "$py" scripts/reference/train_glue_torch.py --model "$model" --data-dir "$glue" --task sst2 \
        --train-rows 10000 --max-len 64 --epochs 2 --batch-size 32 --lr 5e-5 --warmup-ratio 0.06 \
        --weight-decay 0.01 --seed 42 --threads 2 --out "$out/sst2-full-torch.json" ;;
    petl-sst2-head-only) $petl train "${common[@]}" "${sst2[@]}" --method head-only --lr 1e-3 --out "$out/sst2-head-only" ;;
    petl-sst2-head-only-mean) $petl train "${common[@]}" "${sst2[@]}" --method head-only --pooling mean --lr 1e-3 --out "$out/sst2-head-only-mean" ;;
    petl-sst2-bitfit)    $petl train "${common[@]}" "${sst2[@]}" --method bitfit --lr 1e-3 --out "$out/sst2-bitfit" ;;
    petl-rte-head-only)  $petl train "${common[@]}" "${rte[@]}" --method head-only --lr 1e-3 --out "$out/rte-head-only" ;;
    petl-rte-bitfit)     $petl train "${common[@]}" "${rte[@]}" --method bitfit --lr 1e-3 --out "$out/rte-bitfit" ;;
    petl-rte-full)       $petl train "${common[@]}" "${rte[@]}" --method full --lr 5e-5 --out "$out/rte-full" ;;
    torch-rte-full)
      py=$(scripts/python-env.sh | tail -1)
      "$py" scripts/reference/train_glue_torch.py --model "$model" --data-dir "$glue" --task rte \
        --max-len 128 --epochs 3 --batch-size 32 --lr 5e-5 --warmup-ratio 0.06 \
        --weight-decay 0.01 --seed 42 --threads 2 --out "$out/rte-full-torch.json" ;;
    speed)
      py=$(scripts/python-env.sh | tail -1)
      rm -rf "$out/speed-petl"
      $petl train "${common[@]}" --task sst2 --train-rows 2000 --max-len 64 --epochs 1 --method full --lr 5e-5 --out "$out/speed-petl"
      "$py" scripts/reference/train_glue_torch.py --model "$model" --data-dir "$glue" --task sst2 \
        --train-rows 2000 --max-len 64 --epochs 1 --batch-size 32 --lr 5e-5 --warmup-ratio 0.06 \
        --weight-decay 0.01 --seed 42 --threads 2 --out "$out/speed-torch.json"
      python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
p = json.load(open(f"{out}/speed-petl/metrics.json"))
t = json.load(open(f"{out}/speed-torch.json"))
print(f"train examples/s: petl {p['train_examples_per_s']:.1f}, PyTorch {t['train_examples_per_s']:.1f}, "
      f"ratio petl/PyTorch {p['train_examples_per_s'] / t['train_examples_per_s']:.2f}")
print(f"eval examples/s:  petl {p['eval_examples_per_s']:.1f}, PyTorch {t['eval_examples_per_s']:.1f}, "
      f"ratio {p['eval_examples_per_s'] / t['eval_examples_per_s']:.2f}")
PY
      ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
