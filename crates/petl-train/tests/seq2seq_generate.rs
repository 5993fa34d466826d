//! Decoding an encoder-decoder through `GenTaskModel::generate` (petl-generate driving
//! `Seq2SeqModel` with its cache) equals transformers' `generate` on the tiny random BART,
//! mBART and Marian: greedy, greedy with no-repeat-2-gram, and beam search (3 beams, length penalty 1 and
//! 2) — token ids, and beam scores within 1e-4. The config's `forced_eos_token_id` applies at
//! the length limit, as in transformers. Goldens: `tiny-{bart,mbart,marian}/generate.json`, written by
//! `crates/petl-models/tests/golden/gen/make_seq2seq_golden.py`.

mod common;

use candle_core::Device;
use common::{model_dir, BART_SPECIALS, MARIAN_SPECIALS};
use petl_generate::{BeamConfig, EarlyStopping, GenerationConfig, NoSink, Strategy};
use petl_models::Precision;
use petl_train::generation::{GenBase, GenTaskModel};
use serde_json::{json, Value};
use std::path::Path;

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// transformers' sequence without the decoder start and the padding after eos.
fn generated(sequence: &Value, pad: u32, eos: u32) -> Vec<u32> {
    let mut out: Vec<u32> = ids(sequence)[1..].to_vec();
    if let Some(end) = out.iter().position(|&t| t == eos) {
        out.truncate(end + 1);
    } else {
        while out.last() == Some(&pad) {
            out.pop();
        }
    }
    out
}

fn check(name: &str, specials: [&str; 4]) {
    let golden_dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../petl-models/tests/golden")
        .join(name);
    let g: Value =
        serde_json::from_str(&std::fs::read_to_string(golden_dir.join("generate.json")).unwrap()).unwrap();
    let root = tempfile::tempdir().unwrap();
    let dir = model_dir(root.path(), name, specials, &[], &[]);
    let base = GenBase::load(&dir, &Device::Cpu, Precision::F32).unwrap();
    let tm = GenTaskModel::frozen(&base, json!({"kind": "generation"})).unwrap();
    let (pad, eos) = (
        g["pad_token_id"].as_u64().unwrap() as u32,
        g["eos_token_id"].as_u64().unwrap() as u32,
    );
    let prompts: Vec<Vec<u32>> = g["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .zip(g["attention_mask"].as_array().unwrap())
        .map(|(row, mask)| {
            ids(row)
                .into_iter()
                .zip(ids(mask))
                .filter(|&(_, m)| m == 1)
                .map(|(t, _)| t)
                .collect()
        })
        .collect();
    let prompts: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
    let max_new_tokens = g["max_new_tokens"].as_u64().unwrap() as usize;
    let base_config = GenerationConfig {
        max_new_tokens,
        stop_tokens: vec![eos],
        ..GenerationConfig::default()
    };

    let mut cases: Vec<(String, GenerationConfig, &Value)> = vec![
        ("greedy".into(), base_config.clone(), &g["greedy"]),
        (
            "greedy, no-repeat-2-gram".into(),
            GenerationConfig {
                no_repeat_ngram_size: 2,
                ..base_config.clone()
            },
            &g["greedy_no_repeat"],
        ),
    ];
    for beam in g["beam"].as_array().unwrap() {
        cases.push((
            format!("beam, length penalty {}", beam["length_penalty"]),
            GenerationConfig {
                no_repeat_ngram_size: beam["no_repeat_ngram_size"].as_u64().unwrap() as usize,
                strategy: Strategy::Beam(BeamConfig {
                    num_beams: beam["num_beams"].as_u64().unwrap() as usize,
                    length_penalty: beam["length_penalty"].as_f64().unwrap(),
                    early_stopping: EarlyStopping::Heuristic,
                    num_return_sequences: 1,
                }),
                ..base_config.clone()
            },
            beam,
        ));
    }
    for (what, config, want) in cases {
        let out = tm.generate(&prompts, &config, &mut NoSink).unwrap();
        for (row, (got, seq)) in out.iter().zip(want["sequences"].as_array().unwrap()).enumerate() {
            assert_eq!(got.tokens, generated(seq, pad, eos), "{name}, {what}, row {row}");
        }
        if let Some(scores) = want.get("sequences_scores").and_then(Value::as_array) {
            for (row, (got, s)) in out.iter().zip(scores).enumerate() {
                let (a, b) = (got.score.unwrap() as f64, s.as_f64().unwrap());
                assert!(
                    (a - b).abs() < 1e-4,
                    "{name}, {what}, row {row}: score {a} vs {b}"
                );
            }
        }
    }
}

#[test]
fn bart_decoding_equals_transformers_generate() {
    check("tiny-bart", BART_SPECIALS);
}

#[test]
fn mbart_decoding_equals_transformers_generate() {
    check("tiny-mbart", BART_SPECIALS);
}

#[test]
fn marian_decoding_equals_transformers_generate() {
    check("tiny-marian", MARIAN_SPECIALS);
}

/// Odd input to an encoder-decoder is a named error, never a panic: an empty source, a source
/// longer than the position table, an id outside the vocabulary.
#[test]
fn odd_sources_are_named_errors() {
    let root = tempfile::tempdir().unwrap();
    let dir = model_dir(root.path(), "tiny-bart", BART_SPECIALS, &[], &[]);
    let base = GenBase::load(&dir, &Device::Cpu, Precision::F32).unwrap();
    let tm = GenTaskModel::frozen(&base, json!({"kind": "generation"})).unwrap();
    let config = GenerationConfig {
        max_new_tokens: 4,
        stop_tokens: vec![2],
        ..GenerationConfig::default()
    };
    let long: Vec<u32> = (0..70).map(|i| 4 + i % 90).collect();
    let cases: [(&str, Vec<u32>, &str); 3] = [
        ("empty", vec![], "empty"),
        ("too long", long, "64"),
        ("unknown id", vec![0, 500, 2], "500"),
    ];
    for (what, source, says) in cases {
        let err = tm
            .generate(&[source.as_slice()], &config, &mut NoSink)
            .unwrap_err()
            .to_string();
        assert!(err.contains(says), "{what}: {err}");
    }
}
