#!/usr/bin/env bash
# He et al.'s method comparison on all-MiniLM-L6-v2 over five GLUE tasks, sized for 2 CPU cores:
# every method of the design-space issue at a matched budget (~0.33% of the base for one
# delta, ~0.66% for LoRA-on-two-matrices-equivalents and MAM), plus the insertion/site ablation
# (Table 3's SA/PA × attention/FFN) on SST-2. Runs go to runs/design-space/<task>/<method>/;
# finished runs are skipped, so the script resumes where it stopped. The table is then written
# by scripts/design-space-table.py into docs/results-design-space.md.
#
# Usage: scripts/design-space-results.sh GLUE_DIR [task...]   (tasks: sst2 rte mrpc stsb cola)
# Recipe (all runs): first 1,000 training rows, 3 epochs, batch 16, warmup 6%, weight decay 0.01,
# mean pooling, seed 1, dev metrics on the first 500 dev rows; lr 1e-4 for full fine-tuning and
# 1e-3 for every parameter-efficient method. One seed: three would triple a ~2.5 h CPU run.
set -euo pipefail
glue=${1:?usage: scripts/design-space-results.sh GLUE_DIR [task...]}
shift
cd "$(dirname "$0")/.."
# PETL_BIN runs a prebuilt binary instead of building one.
petl=${PETL_BIN:-target/release/petl}
[ -n "${PETL_BIN:-}" ] || cargo build --release -q -p petl-cli
model=$($petl -q model fetch minilm)
out=runs/design-space
tasks=("$@")
[ ${#tasks[@]} -gt 0 ] || tasks=(sst2 rte mrpc stsb cola)
methods=(full bitfit prefix-l16 lora-r8 houlsby-r8 pa-ffn-r16 scaled-pa-r16 mh-pa-l16 mam-glue)
ablation=(sa-ffn-r16 pa-attn-r16 sa-attn-r16)

run() {
  local task=$1 method=$2 len=$3
  local dir="$out/$task/$method"
  [ -f "$dir/metrics.json" ] && return 0
  local spec=$method lr=1e-3
  [ -f "scripts/design-space/$method.json" ] && spec="scripts/design-space/$method.json"
  [ "$method" = full ] && lr=1e-4
  local resume=()
  [ -f "$dir/config.toml" ] && resume=(--resume)
  echo "== $task $method"
  $petl train --model "$model" --data-dir "$glue" --task "$task" --method "$spec" --pooling mean \
    --train-rows 1000 --eval-rows 500 --epochs 3 --batch-size 16 --lr "$lr" --warmup-ratio 0.06 \
    --weight-decay 0.01 --seed 1 --max-len "$len" --no-progress --out "$dir" "${resume[@]}" \
    > "$out/$task/$method.log" 2>&1 || echo "   failed: see $out/$task/$method.log"
}

for task in "${tasks[@]}"; do
  mkdir -p "$out/$task"
  case $task in sst2|cola) len=64 ;; *) len=128 ;; esac
  for m in "${methods[@]}"; do run "$task" "$m" "$len"; done
  if [ "$task" = sst2 ]; then for m in "${ablation[@]}"; do run "$task" "$m" "$len"; done; fi
done
python3 scripts/design-space-table.py "$out" > docs/results-design-space.table.md
echo "table: docs/results-design-space.table.md"
