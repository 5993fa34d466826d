"""Golden for crates/petl-train/tests/smollm2.rs: SmolLM2-135M-Instruct's greedy continuation
of a chat prompt, as transformers computes it from the same GGUF file petl loads.

    PY=$(scripts/python-env.sh | tail -n1)
    $PY crates/petl-train/tests/golden/make_smollm2_greedy.py \
        ~/.cache/petl/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
        crates/petl-train/tests/golden/smollm2_greedy.json

transformers dequantizes the GGUF to float32 itself (its own loader, independent of petl's);
the prompt is built with the GGUF's chat template; decoding is greedy for 48 new tokens.
"""
import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

gguf_path, out = sys.argv[1], sys.argv[2]
folder, name = os.path.split(os.path.abspath(gguf_path))
tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
model.eval()
messages = [{"role": "user", "content": "Write a short paragraph about the history of the city of Paris."}]
text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
ids = tok(text, add_special_tokens=False, return_tensors="pt").input_ids
with torch.no_grad():
    logits = model(ids).logits[0, -1]
    gen = model.generate(ids, do_sample=False, max_new_tokens=48, num_beams=1)
new = gen[0, ids.shape[1]:].tolist()
top = torch.topk(logits, 5)
json.dump(
    {
        "prompt_text": text,
        "prompt_ids": ids[0].tolist(),
        "top5_last": {"ids": top.indices.tolist(), "logits": top.values.tolist()},
        "greedy_new_tokens": new,
        "greedy_text": tok.decode(new, skip_special_tokens=True),
        "max_new_tokens": 48,
        "transformers": __import__("transformers").__version__,
        "torch": torch.__version__,
    },
    open(out, "w"),
    indent=1,
)
print(len(new), tok.decode(new, skip_special_tokens=True))
