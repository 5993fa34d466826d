//! Fixtures shared by the generation tests: the tiny random models of petl-models' parity
//! goldens (whose forward passes match transformers), given a word-level tokenizer over the
//! commonest words of the real WMT16 en-ro test set so that real text can train them.
#![allow(dead_code)]

use petl_train::generation::{GenData, GenTask};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub fn shared_data() -> PathBuf {
    let dir = std::env::var_os("PETL_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    assert!(
        dir.join("wmt16_en_ro").is_dir(),
        "WMT16 en-ro not found under {} (set PETL_SHARED_DATA to the folder holding wmt16_en_ro/)",
        dir.display()
    );
    dir
}

/// Lines in the test set.
pub const WMT_LINES: usize = 1999;
/// Pairs trained on.
pub const TRAIN: usize = 24;

/// Splits like the `Whitespace` pre-tokenizer: runs of word characters, runs of punctuation.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut cur_word = None;
    for c in line.to_lowercase().chars() {
        if c.is_whitespace() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            cur_word = None;
            continue;
        }
        let is_word = c.is_alphanumeric() || c == '_';
        if cur_word.is_some_and(|w| w != is_word) && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        cur.push(c);
        cur_word = Some(is_word);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// BART's special tokens in BART's order (`<s>` 0, `<pad>` 1, `</s>` 2, `<unk>` 3).
pub const BART_SPECIALS: [&str; 4] = ["<s>", "<pad>", "</s>", "<unk>"];
/// Marian's order (`</s>` 0, `<unk>` 1; the tiny Marian's padding is its last id, 95, which
/// the tokenizer never needs to produce).
pub const MARIAN_SPECIALS: [&str; 4] = ["</s>", "<unk>", "<s>", "<pad>"];
/// The tiny Llama's (`<pad>` 0, `<s>` 1, `</s>` 2, `<unk>` 3).
pub const LLAMA_SPECIALS: [&str; 4] = ["<pad>", "<s>", "</s>", "<unk>"];

/// A copy of the golden tiny model in `name` with a `tokenizer.json` whose vocabulary is the
/// model's: `specials`, `codes` (mBART language codes) and the commonest words of the training
/// pairs. The post-processor frames a source as `<s> … </s>`, or ends it with `suffix` when
/// that is given.
pub fn model_dir(root: &Path, name: &str, specials: [&str; 4], codes: &[&str], suffix: &[&str]) -> PathBuf {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../petl-models/tests/golden")
        .join(name);
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(golden.join(f), dir.join(f)).unwrap();
    }
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let vocab_size = config["vocab_size"].as_u64().unwrap() as usize;

    let data = shared_data().join("wmt16_en_ro");
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for lang in ["en", "ro"] {
        let text = std::fs::read_to_string(data.join(format!("newstest2016.{lang}"))).unwrap();
        for line in text.lines().take(TRAIN + 40) {
            for w in words(line) {
                *counts.entry(w).or_default() += 1;
            }
        }
    }
    let mut ranked: Vec<(String, usize)> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut vocab: Vec<String> = specials.iter().chain(codes).map(|s| s.to_string()).collect();
    let room = vocab_size - vocab.len();
    vocab.extend(ranked.into_iter().take(room).map(|(w, _)| w));
    assert_eq!(vocab.len(), vocab_size);

    let ids: serde_json::Map<String, Value> = vocab
        .iter()
        .enumerate()
        .map(|(i, w)| (w.clone(), json!(i)))
        .collect();
    let added: Vec<Value> = vocab[..specials.len() + codes.len()]
        .iter()
        .enumerate()
        .map(|(i, w)| {
            json!({"id": i, "content": w, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": true})
        })
        .collect();
    let special_ids =
        |t: &str| json!({"id": t, "ids": [vocab.iter().position(|w| w == t).unwrap()], "tokens": [t]});
    let mut single = Vec::new();
    let mut template_specials = serde_json::Map::new();
    if suffix.is_empty() {
        single.push(json!({"SpecialToken": {"id": "<s>", "type_id": 0}}));
        template_specials.insert("<s>".into(), special_ids("<s>"));
    }
    single.push(json!({"Sequence": {"id": "A", "type_id": 0}}));
    let tail: Vec<&str> = if suffix.is_empty() {
        vec!["</s>"]
    } else {
        suffix.to_vec()
    };
    for t in tail {
        single.push(json!({"SpecialToken": {"id": t, "type_id": 0}}));
        template_specials.insert(t.into(), special_ids(t));
    }
    let tokenizer = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": single,
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": template_specials,
        },
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": ids, "unk_token": "<unk>"},
    });
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string()).unwrap();
    dir
}

/// The `prediction` of every line of a run's `predictions.jsonl` (at `path`).
pub fn saved_predictions(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["prediction"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// Every `(step, loss)` of a run's `log.jsonl` training records.
pub fn logged_losses(run: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(run.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["event"] == "train")
        .map(|v| (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap()))
        .collect()
}

/// WMT16 en→ro on newstest2016: the first [`TRAIN`] pairs train, the rest are held out;
/// targets of at most `max_target_len` tokens.
pub fn wmt_en_ro(max_target_len: usize) -> GenTask {
    GenTask {
        name: "wmt16-en-ro".into(),
        data: GenData::Wmt16 {
            dir: shared_data().join("wmt16_en_ro"),
            stem: "newstest2016".into(),
            direction: "en-ro".into(),
        },
        holdout: WMT_LINES - TRAIN,
        template: None,
        chat: false,
        max_target_len,
        metric: None,
        generation: None,
    }
}
