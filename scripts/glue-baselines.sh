#!/usr/bin/env bash
# Reproduces the foundation issue's figures on 2 CPU cores: MiniLM full fine-tuning on the first
# 10,000 SST-2 rows next to the PyTorch/transformers twin (scripts/reference/train_glue_torch.py),
# then BitFit and head-only on SST-2 and RTE. Runs go to runs/glue/<task>-<method>/.
#
# Usage: scripts/glue-baselines.sh GLUE_DIR [step...]   (steps: petl-sst2-full torch-sst2-full
#        petl-sst2-head-only petl-sst2-bitfit petl-rte-head-only petl-rte-bitfit; default all)
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
[ ${#steps[@]} -gt 0 ] || steps=(petl-sst2-full torch-sst2-full petl-sst2-head-only petl-sst2-bitfit petl-rte-head-only petl-rte-bitfit)

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
    petl-sst2-bitfit)    $petl train "${common[@]}" "${sst2[@]}" --method bitfit --lr 1e-3 --out "$out/sst2-bitfit" ;;
    petl-rte-head-only)  $petl train "${common[@]}" "${rte[@]}" --method head-only --lr 1e-3 --out "$out/rte-head-only" ;;
    petl-rte-bitfit)     $petl train "${common[@]}" "${rte[@]}" --method bitfit --lr 1e-3 --out "$out/rte-bitfit" ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
