//! Parity with transformers 5.23: the processors on fixed scores, and greedy / beam search on the
//! toy model of `golden/gen/make_beam_golden.py` (see the README next to it).

mod common;

use common::{float, floats, golden, ids, Call, ToyModel};
use petl_generate::processors::{
    apply_repetition_penalty, apply_temperature, ban_repeated_ngrams, ban_tokens, force_token, log_softmax,
    top_k_filter, top_p_filter,
};
use petl_generate::{generate, GenerationConfig, Pipeline, RowPosition, Strategy};
use serde_json::Value;

/// Largest |a - b| over two rows whose -inf entries must coincide.
fn max_diff(name: &str, row: usize, got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "{name} row {row}: length");
    let mut worst = 0.0f32;
    for (t, (&g, &w)) in got.iter().zip(want).enumerate() {
        if w == f32::NEG_INFINITY || g == f32::NEG_INFINITY {
            assert_eq!(g, w, "{name} row {row} token {t}: got {g}, transformers {w}");
        } else {
            worst = worst.max((g - w).abs());
        }
    }
    worst
}

fn apply(params: &Value, history: &[u32], scores: &mut [f32]) {
    let kind = params["kind"].as_str().unwrap();
    let f = |key: &str| params[key].as_f64().unwrap();
    let n = |key: &str| params[key].as_u64().unwrap() as usize;
    match kind {
        "repetition_penalty" => apply_repetition_penalty(scores, history, f("penalty") as f32),
        "no_repeat_ngram" => ban_repeated_ngrams(scores, history, n("n")),
        "min_new_tokens" => {
            if history.len() - n("prompt_len") < n("min_new_tokens") {
                ban_tokens(scores, &ids(&params["eos"]));
            }
        }
        "forced_bos" => {
            if history.len() == 1 {
                force_token(scores, n("token") as u32);
            }
        }
        "forced_eos" => {
            if history.len() == n("max_length") - 1 {
                force_token(scores, n("token") as u32);
            }
        }
        "temperature" => apply_temperature(scores, f("temperature") as f32),
        "top_k" => top_k_filter(scores, n("top_k"), n("min_tokens_to_keep")),
        "top_p" => top_p_filter(scores, f("top_p"), n("min_tokens_to_keep")),
        "log_softmax" => log_softmax(scores),
        "pipeline" => {
            let config: GenerationConfig = serde_json::from_value(params["config"].clone()).unwrap();
            config.validate().unwrap();
            let pipeline = Pipeline::new(&config);
            let prompt_len = n("prompt_len");
            let at = RowPosition {
                sequence: history,
                generated: history.len() - prompt_len,
                budget: config.max_new_tokens,
            };
            pipeline.process(scores, at);
            pipeline.warp(scores);
        }
        other => panic!("unknown processor {other}"),
    }
}

#[test]
fn processors_match_transformers() {
    let golden = golden("hf-processors");
    let cases = golden["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 28);
    let mut worst = 0.0f32;
    let mut banned = 0usize;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        for (row, ((history, scores), expected)) in case["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .zip(case["scores"].as_array().unwrap())
            .zip(case["expected"].as_array().unwrap())
            .enumerate()
        {
            let mut got = floats(scores);
            apply(&case["params"], &ids(history), &mut got);
            let want = floats(expected);
            banned += want.iter().filter(|w| **w == f32::NEG_INFINITY).count();
            let diff = max_diff(name, row, &got, &want);
            // Everything is the same f32 arithmetic as torch, so bit-exact; log_softmax sums its
            // normaliser in another order (≤ 1e-6).
            let tolerance = if case["params"]["kind"] == "log_softmax" {
                1e-6
            } else {
                0.0
            };
            assert!(
                diff <= tolerance,
                "{name} row {row}: max |diff| {diff:e} > {tolerance:e}"
            );
            worst = worst.max(diff);
        }
    }
    // The cases ban tokens (the comparison of -inf positions is not vacuous).
    assert!(banned > 500, "{banned}");
    eprintln!(
        "processors: {} cases bit-exact except log_softmax, max |diff| {worst:e}, {banned} banned entries agree",
        cases.len()
    );
}

/// The toy model of the golden script: `(bigram[prev or V][last] + pos[len - 1]) + boost` in f32,
/// with the case's `boost` vector.
fn toy_model(golden: &Value, boost: Vec<f32>) -> ToyModel {
    let vocab = golden["vocab_size"].as_u64().unwrap() as usize;
    let max_positions = golden["max_positions"].as_u64().unwrap() as usize;
    let bigram: Vec<Vec<Vec<f32>>> = golden["bigram"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_array().unwrap().iter().map(floats).collect())
        .collect();
    let pos: Vec<Vec<f32>> = golden["pos"].as_array().unwrap().iter().map(floats).collect();
    ToyModel::new(vocab, Some(max_positions), move |seq| {
        let n = seq.len();
        let prev = if n >= 2 { seq[n - 2] as usize } else { vocab };
        let last = seq[n - 1] as usize;
        bigram[prev][last]
            .iter()
            .zip(&pos[n - 1])
            .enumerate()
            .map(|(t, (a, b))| (a + b) + boost[t])
            .collect()
    })
}

#[test]
fn greedy_and_beam_search_match_transformers_generate() {
    let golden = golden("hf-search");
    let mut hypotheses = 0;
    let mut worst = 0.0f32;
    let mut stopped_early = 0;
    let cases = golden["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 19);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let model = toy_model(&golden, floats(&case["boost"]));
        let config: GenerationConfig = serde_json::from_value(case["config"].clone()).unwrap();
        let prompts: Vec<Vec<u32>> = case["prompts"].as_array().unwrap().iter().map(ids).collect();
        let prompt_refs: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
        // All prompts of a case in one batch; transformers ran each alone.
        let out = generate(&model, &prompt_refs, &config).unwrap_or_else(|e| panic!("{name}: {e}"));
        // Rows run alone give the same result; count the beam searches that ended before
        // max_new_tokens (fewer model steps than max_new_tokens - 1) on the early-stopping rules.
        for (row, prompt) in prompt_refs.iter().enumerate() {
            let single = toy_model(&golden, floats(&case["boost"]));
            assert_eq!(
                generate(&single, &[prompt], &config).unwrap()[0],
                out[row],
                "{name} row {row} alone"
            );
            let steps = single
                .calls()
                .iter()
                .filter(|c| matches!(c, Call::Step(_)))
                .count();
            if matches!(config.strategy, Strategy::Beam(_)) && steps < config.max_new_tokens - 1 {
                eprintln!("{name} row {row}: beam search ended after {steps} steps");
                stopped_early += 1;
            }
        }
        for (row, (generation, expected)) in out.iter().zip(case["results"].as_array().unwrap()).enumerate() {
            let expected = expected.as_array().unwrap();
            let ours: Vec<(Vec<u32>, Option<f32>)> =
                std::iter::once((generation.tokens.clone(), generation.score))
                    .chain(
                        generation
                            .runner_ups
                            .iter()
                            .map(|h| (h.tokens.clone(), Some(h.score))),
                    )
                    .collect();
            assert_eq!(
                ours.len(),
                expected.len(),
                "{name} row {row}: number of hypotheses"
            );
            for (rank, ((tokens, score), want)) in ours.iter().zip(expected).enumerate() {
                assert_eq!(
                    tokens,
                    &ids(&want["tokens"]),
                    "{name} row {row} hypothesis {rank}"
                );
                match (score, want["score"].is_null()) {
                    (None, true) => {}
                    (Some(score), false) => {
                        let diff = (score - float(&want["score"])).abs();
                        assert!(
                            diff <= 1e-5,
                            "{name} row {row} hypothesis {rank}: score {score} vs {}",
                            want["score"]
                        );
                        worst = worst.max(diff);
                    }
                    _ => panic!("{name} row {row}: score presence differs"),
                }
                hypotheses += 1;
            }
        }
    }
    // Every early-stopping mode ends some searches before max_new_tokens.
    assert!(stopped_early >= 20, "{stopped_early}");
    eprintln!(
        "search: {hypotheses} hypotheses identical to transformers ({stopped_early} beam rows ended early), \
         max |score diff| {worst:e}"
    );
}
