#!/usr/bin/env bash
# Create (if missing) a throwaway Python virtual environment holding the pinned
# reference packages that petl's Python reference scripts need:
#   - crates/petl-models/tests/golden/gen/make_golden.py (golden files for Rust parity tests)
#   - scripts/reference/train_glue_torch.py (PyTorch twin of petl's GLUE fine-tuning)
#   - crates/petl-methods/tests/golden/gen/make_peft_golden.py (peft parity goldens)
#   - generation goldens (ROUGE/BLEU reference values, GGUF dequantization, decoder and
#     encoder-decoder parity), each script named next to the golden files it writes
#
# Usage: scripts/python-env.sh            # venv at <repo>/.venv-ref
#        PETL_PY_VENV=/some/dir scripts/python-env.sh
# Prints the venv's python path on the last line, e.g.
#        PY=$(scripts/python-env.sh | tail -n1)
#
# Idempotent: re-running only (re)installs when the pins are not yet satisfied.
# torch comes from plain PyPI (CPU use only; the wheel may pull CUDA libraries).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${PETL_PY_VENV:-$repo_root/.venv-ref}"
python_bin="${PETL_PYTHON:-python3}"

pins=(
  "torch==2.15.0"
  "transformers==5.23.0"
  "safetensors==0.8.0"
  "numpy==2.4.6"
  "scipy==1.17.1"
  "scikit-learn==1.9.1"
  "tokenizers==0.23.3"
  "peft==0.21.2"
  "rouge-score==0.1.2"
  "nltk==3.10.4"
  "sacrebleu==2.6.0"
  "gguf==0.19.0"
)

if [[ ! -x "$venv/bin/python" ]]; then
  echo "creating venv at $venv" >&2
  "$python_bin" -m venv "$venv"
fi

py="$venv/bin/python"
stamp="$venv/.petl-pins"
want="$(printf '%s\n' "${pins[@]}")"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] \
   && "$py" -c 'import torch, transformers, safetensors, numpy, scipy, sklearn, tokenizers, peft' 2>/dev/null; then
  echo "pinned packages already installed in $venv" >&2
else
  echo "installing pinned packages into $venv" >&2
  "$py" -m pip install --disable-pip-version-check --quiet "${pins[@]}" >&2
  printf '%s\n' "$want" > "$stamp"
fi

echo "$py"
