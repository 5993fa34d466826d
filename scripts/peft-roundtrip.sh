#!/usr/bin/env bash
# Proof of petl ↔ Hugging Face peft interop (see scripts/peft_roundtrip.py): builds petl
# (release), fetches MiniLM, trains short LoRA / prefix / IA3 / prompt runs on SST-2, exports
# them with `petl peft export` and loads them in peft; creates random peft adapters, imports
# them with `petl peft import`; prints max |Δ logits| per case and exits nonzero if any case
# exceeds 1e-4 or fails.
#
# Usage: scripts/peft-roundtrip.sh GLUE_DIR [WORK_DIR]     (or set PETL_GLUE_DIR)
#   GLUE_DIR  the GLUE root holding SST-2/ and RTE/
#   WORK_DIR  runs, exports and imports [default: runs/peft-roundtrip]; rerunning reuses the
#             trained runs (pass --retrain through PEFT_ROUNDTRIP_ARGS to train again)
# About 5 minutes on 2 CPU cores after the build; needs PyPI for MiniLM and the pinned venv.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
glue="${1:-${PETL_GLUE_DIR:-}}"
work="${2:-runs/peft-roundtrip}"
if [[ -z "$glue" || ! -f "$glue/SST-2/dev.tsv" || ! -f "$glue/RTE/dev.tsv" ]]; then
  echo "usage: $0 GLUE_DIR [WORK_DIR]  (GLUE_DIR must hold SST-2/ and RTE/)" >&2
  exit 2
fi

cargo build --release -p petl-cli >&2
petl="${CARGO_TARGET_DIR:-$repo_root/target}/release/petl"
model_dir="$("$petl" model fetch minilm | tail -n1)"
py="$(scripts/python-env.sh | tail -n1)"
# shellcheck disable=SC2086
"$py" scripts/peft_roundtrip.py --petl "$petl" --model-dir "$model_dir" --glue "$glue" \
  --work "$work" ${PEFT_ROUNDTRIP_ARGS:-}
