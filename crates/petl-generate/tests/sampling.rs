//! Seeded sampling: reproducible, row-independent, and drawing from the filtered softmax.

mod common;

use common::{bigram_model, hash_model};
use petl_generate::{generate, GenerationConfig, SampleConfig, Strategy};

fn sample(temperature: f64, top_k: usize, top_p: f64, seed: u64) -> Strategy {
    Strategy::Sample(SampleConfig {
        temperature,
        top_k,
        top_p,
        seed,
    })
}

#[test]
fn same_seed_same_tokens_other_seed_other_tokens() {
    let model = hash_model(50, None, 2.0);
    let prompts: [&[u32]; 3] = [&[1], &[2, 3], &[4]];
    let config = |seed| GenerationConfig {
        max_new_tokens: 16,
        strategy: sample(1.0, 0, 1.0, seed),
        ..Default::default()
    };
    let a = generate(&model, &prompts, &config(11)).unwrap();
    assert_eq!(a, generate(&model, &prompts, &config(11)).unwrap());
    let b = generate(&model, &prompts, &config(12)).unwrap();
    assert!(a.iter().zip(&b).all(|(x, y)| x.tokens != y.tokens), "{a:?} {b:?}");
}

#[test]
fn a_row_depends_on_its_seed_and_index_only() {
    let model = hash_model(50, None, 2.0);
    let config = GenerationConfig {
        max_new_tokens: 12,
        strategy: sample(0.9, 20, 0.95, 3),
        ..Default::default()
    };
    let pair = generate(&model, &[&[7], &[8, 9]], &config).unwrap();
    let other_first = generate(&model, &[&[30, 31, 32], &[8, 9]], &config).unwrap();
    let alone = generate(&model, &[&[7]], &config).unwrap();
    assert_eq!(pair[0], alone[0]);
    assert_eq!(pair[1], other_first[1]);
}

#[test]
fn top_k_one_is_greedy() {
    let model = hash_model(40, None, 2.0);
    let prompts: [&[u32]; 2] = [&[5], &[6, 7, 8]];
    let greedy = GenerationConfig {
        max_new_tokens: 15,
        stop_tokens: vec![0, 1],
        repetition_penalty: 1.4,
        no_repeat_ngram_size: 2,
        min_new_tokens: 3,
        ..Default::default()
    };
    let expected = generate(&model, &prompts, &greedy).unwrap();
    for seed in 0..5 {
        for temperature in [0.3, 1.0, 2.5] {
            let config = GenerationConfig {
                strategy: sample(temperature, 1, 1.0, seed),
                ..greedy.clone()
            };
            assert_eq!(generate(&model, &prompts, &config).unwrap(), expected);
        }
    }
}

/// Frequencies of the single token drawn by `rows` identical rows (each its own stream).
fn first_token_shares(probabilities: &[f32], strategy: Strategy, rows: usize) -> Vec<f64> {
    let table = vec![probabilities.iter().map(|p| p.ln()).collect::<Vec<f32>>(); probabilities.len()];
    let model = bigram_model(table, None);
    let prompts: Vec<&[u32]> = vec![&[0]; rows];
    let config = GenerationConfig {
        max_new_tokens: 1,
        strategy,
        ..Default::default()
    };
    let out = generate(&model, &prompts, &config).unwrap();
    let mut counts = vec![0usize; probabilities.len()];
    for generation in out {
        counts[generation.tokens[0] as usize] += 1;
    }
    counts.iter().map(|&c| c as f64 / rows as f64).collect()
}

#[test]
fn top_p_samples_inside_the_nucleus_in_proportion() {
    // mass of {0, 1} = 0.8 ≥ 0.75 while {0} = 0.5 < 0.75: the nucleus is {0, 1}
    let shares = first_token_shares(&[0.5, 0.3, 0.15, 0.05], sample(1.0, 0, 0.75, 9), 4000);
    assert_eq!(&shares[2..], [0.0, 0.0]);
    assert!((shares[0] - 0.625).abs() < 0.03, "{shares:?}");
}

#[test]
fn filters_apply_in_order_temperature_top_k_top_p() {
    // Temperature 0.5 squares the probabilities: 0.4 0.3 0.2 0.1 → 16:9:4:1 / 30. top_k 3 drops
    // token 3; top_p 0.8 on 16/29, 9/29, 4/29 keeps {0, 1} (25/29 ≥ 0.8 > 16/29). Had top-p
    // run on the unsharpened distribution it would have kept token 2 too.
    let shares = first_token_shares(&[0.4, 0.3, 0.2, 0.1], sample(0.5, 3, 0.8, 1), 4000);
    assert_eq!(&shares[2..], [0.0, 0.0]);
    assert!((shares[0] - 16.0 / 25.0).abs() < 0.03, "{shares:?}");
}

#[test]
fn plain_sampling_follows_the_softmax() {
    let probabilities = [0.1, 0.2, 0.3, 0.4];
    let shares = first_token_shares(&probabilities, sample(1.0, 0, 1.0, 2), 6000);
    for (share, p) in shares.iter().zip(probabilities) {
        assert!((share - f64::from(p)).abs() < 0.025, "{shares:?}");
    }
}
