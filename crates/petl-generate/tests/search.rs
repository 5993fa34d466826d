//! Greedy decoding and beam search against independent references on toy models: the argmax
//! chain, exhaustive enumeration, and the invariants of the processors.

mod common;

use common::{bigram_model, hash_logits, hash_model, Call};
use petl_generate::processors::log_softmax;
use petl_generate::{
    generate, BeamConfig, EarlyStopping, FinishReason, GenerationConfig, Generator, Strategy,
};

fn beam(num_beams: usize, length_penalty: f64, early_stopping: EarlyStopping, returned: usize) -> Strategy {
    Strategy::Beam(BeamConfig {
        num_beams,
        length_penalty,
        early_stopping,
        num_return_sequences: returned,
    })
}

#[test]
fn greedy_is_the_argmax_chain() {
    let vocab = 7;
    let model = hash_model(vocab, None, 3.0);
    let prompts: [&[u32]; 3] = [&[1], &[2, 3, 4], &[6, 6]];
    let config = GenerationConfig {
        max_new_tokens: 12,
        stop_tokens: vec![0],
        ..Default::default()
    };
    let out = generate(&model, &prompts, &config).unwrap();
    for (prompt, generation) in prompts.iter().zip(&out) {
        let mut sequence = prompt.to_vec();
        let mut expected = Vec::new();
        loop {
            let logits = hash_logits(&sequence, vocab, 3.0);
            let best = (0..vocab).fold(0, |b, t| if logits[t] > logits[b] { t } else { b }) as u32;
            expected.push(best);
            sequence.push(best);
            if best == 0 || expected.len() == 12 {
                break;
            }
        }
        assert_eq!(generation.tokens, expected);
        let reason = if expected.last() == Some(&0) {
            FinishReason::StopToken(0)
        } else {
            FinishReason::MaxNewTokens
        };
        assert_eq!(generation.finish_reason, reason);
        assert_eq!(generation.score, None);
    }
}

/// Every sequence a search over `vocab` tokens can return within `max_len` new tokens, with its
/// transformers score: the sum of f32 log-probabilities / len^length_penalty.
fn enumerate(
    prompt: &[u32],
    vocab: usize,
    max_len: usize,
    stop: u32,
    length_penalty: f64,
) -> Vec<(Vec<u32>, f32)> {
    let mut out = Vec::new();
    let mut frontier = vec![(Vec::<u32>::new(), 0.0f32)];
    for len in 1..=max_len {
        let mut next = Vec::new();
        for (tokens, score) in frontier {
            let mut sequence = prompt.to_vec();
            sequence.extend(&tokens);
            let mut log_probs = hash_logits(&sequence, vocab, 2.0);
            log_softmax(&mut log_probs);
            for t in 0..vocab as u32 {
                let mut extended = tokens.clone();
                extended.push(t);
                let total = score + log_probs[t as usize];
                if t == stop || len == max_len {
                    out.push((extended, total / (len as f64).powf(length_penalty) as f32));
                } else {
                    next.push((extended, total));
                }
            }
        }
        frontier = next;
    }
    out.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap());
    out
}

#[test]
fn wide_beam_search_equals_exhaustive_search() {
    let vocab = 4;
    let max_len = 4;
    let model = hash_model(vocab, None, 2.0);
    // 1 + 3 + 9 + 108 finished sequences in all: 400 beams keep everything.
    for length_penalty in [1.0, 0.0, 2.0, -0.5] {
        for early_stopping in [
            EarlyStopping::Heuristic,
            EarlyStopping::WhenFull,
            EarlyStopping::Never,
        ] {
            for prompt in [&[1u32][..], &[3, 2, 1]] {
                let config = GenerationConfig {
                    max_new_tokens: max_len,
                    stop_tokens: vec![0],
                    strategy: beam(400, length_penalty, early_stopping, 6),
                    ..Default::default()
                };
                let out = generate(&model, &[prompt], &config).unwrap();
                let all = enumerate(prompt, vocab, max_len, 0, length_penalty);
                assert_eq!(all.len(), 1 + 3 + 9 + 108);
                let ours: Vec<(Vec<u32>, f32)> =
                    std::iter::once((out[0].tokens.clone(), out[0].score.unwrap()))
                        .chain(out[0].runner_ups.iter().map(|h| (h.tokens.clone(), h.score)))
                        .collect();
                assert_eq!(ours.len(), 6);
                for (rank, ((tokens, score), (want_tokens, want_score))) in ours.iter().zip(&all).enumerate()
                {
                    let label =
                        format!("lp {length_penalty} {early_stopping:?} prompt {prompt:?} rank {rank}");
                    assert_eq!(tokens, want_tokens, "{label}");
                    assert!(
                        (score - want_score).abs() <= 1e-6,
                        "{label}: {score} vs {want_score}"
                    );
                }
            }
        }
    }
}

#[test]
fn narrow_beam_finds_what_greedy_misses() {
    // From 0, greedy takes 1 (p ≈ 0.5) but 1 leads only to weak continuations; 2 (p ≈ 0.4) leads
    // to a near-certain 3. Beam search with 2 beams keeps both and prefers 0 → 2 → 3.
    let neg = -20.0;
    let table = vec![
        vec![neg, 0.5f32.ln(), 0.4f32.ln(), 0.1f32.ln()],
        vec![neg, 0.34f32.ln(), 0.33f32.ln(), 0.33f32.ln()],
        vec![neg, 0.01f32.ln(), 0.01f32.ln(), 0.98f32.ln()],
        vec![neg, 0.34f32.ln(), 0.33f32.ln(), 0.33f32.ln()],
    ];
    let model = bigram_model(table, None);
    let greedy = GenerationConfig {
        max_new_tokens: 2,
        ..Default::default()
    };
    assert_eq!(generate(&model, &[&[0]], &greedy).unwrap()[0].tokens, [1, 1]);
    let config = GenerationConfig {
        strategy: beam(2, 0.0, EarlyStopping::Heuristic, 1),
        ..greedy
    };
    let out = generate(&model, &[&[0]], &config).unwrap();
    assert_eq!(out[0].tokens, [2, 3]);
    assert_eq!(out[0].finish_reason, FinishReason::MaxNewTokens);
}

fn has_repeated_ngram(sequence: &[u32], n: usize) -> bool {
    let windows: Vec<&[u32]> = sequence.windows(n).collect();
    windows
        .iter()
        .enumerate()
        .any(|(i, w)| windows[i + 1..].contains(w))
}

#[test]
fn no_repeat_ngram_never_repeats() {
    // A model that loves the cycle 0 1 2 0 1 2 … (strong bias to last + 1).
    let vocab = 6;
    let table: Vec<Vec<f32>> = (0..vocab)
        .map(|t| {
            (0..vocab)
                .map(|v| if v == (t + 1) % 3 { 5.0 } else { (v as f32) * 0.1 })
                .collect()
        })
        .collect();
    let model = bigram_model(table, None);
    let prompts: [&[u32]; 2] = [&[0], &[3, 0, 1]];
    for n in [1, 2, 3] {
        for strategy in [
            Strategy::Greedy,
            beam(3, 1.0, EarlyStopping::Heuristic, 3),
            Strategy::Sample(petl_generate::SampleConfig {
                seed: 5,
                top_k: 0,
                ..Default::default()
            }),
        ] {
            // n = 1 bans every token seen; 3 new tokens leave the prompts something to choose
            let max_new_tokens = if n == 1 { 3 } else { 14 };
            let config = GenerationConfig {
                max_new_tokens,
                no_repeat_ngram_size: n,
                strategy,
                ..Default::default()
            };
            let without = GenerationConfig {
                no_repeat_ngram_size: 0,
                ..config.clone()
            };
            let out = generate(&model, &prompts, &config).unwrap();
            let plain = generate(&model, &prompts, &without).unwrap();
            for ((prompt, generation), plain) in prompts.iter().zip(&out).zip(&plain) {
                let hypotheses = std::iter::once(&generation.tokens)
                    .chain(generation.runner_ups.iter().map(|h| &h.tokens));
                for tokens in hypotheses {
                    let full: Vec<u32> = prompt.iter().chain(tokens).copied().collect();
                    assert!(
                        !has_repeated_ngram(&full, n),
                        "n={n} {:?}: {full:?}",
                        config.strategy
                    );
                }
                // the ban is not vacuous: without it the model repeats
                let full: Vec<u32> = prompt.iter().chain(&plain.tokens).copied().collect();
                assert!(has_repeated_ngram(&full, n), "n={n}: {full:?}");
            }
        }
    }
}

#[test]
fn min_new_tokens_holds_back_every_stop_token() {
    // Stop tokens 4 and 5 dominate everywhere.
    let table: Vec<Vec<f32>> = (0..6)
        .map(|t| vec![0.0, 0.1 * t as f32, 0.2, 0.3, 4.0, 3.9])
        .collect();
    let model = bigram_model(table, None);
    for strategy in [Strategy::Greedy, beam(2, 1.0, EarlyStopping::WhenFull, 2)] {
        let base = GenerationConfig {
            max_new_tokens: 8,
            stop_tokens: vec![4, 5],
            strategy,
            ..Default::default()
        };
        let out = generate(&model, &[&[0]], &base).unwrap();
        assert_eq!(out[0].tokens, [4]);
        for min in [1, 3, 5] {
            let config = GenerationConfig {
                min_new_tokens: min,
                ..base.clone()
            };
            let out = generate(&model, &[&[0]], &config).unwrap();
            let hypotheses =
                std::iter::once(&out[0].tokens).chain(out[0].runner_ups.iter().map(|h| &h.tokens));
            for tokens in hypotheses {
                assert_eq!(tokens.len(), min + 1, "{tokens:?}");
                assert!(tokens[..min].iter().all(|t| *t < 4), "{tokens:?}");
                assert!([4, 5].contains(&tokens[min]));
            }
        }
    }
}

#[test]
fn any_stop_token_ends_a_row_on_its_own() {
    // 0 → 1 → 2 → 3 → 4 … (the next id), 5 → 5.
    let table: Vec<Vec<f32>> = (0..6)
        .map(|t| {
            (0..6)
                .map(|v| if v == (t + 1).min(5) { 1.0 } else { 0.0 })
                .collect()
        })
        .collect();
    let model = bigram_model(table, None);
    let config = GenerationConfig {
        max_new_tokens: 10,
        stop_tokens: vec![3, 5],
        ..Default::default()
    };
    let out = generate(&model, &[&[0], &[3], &[4], &[5, 5]], &config).unwrap();
    assert_eq!(out[0].tokens, [1, 2, 3]);
    assert_eq!(out[0].finish_reason, FinishReason::StopToken(3));
    assert_eq!(out[1].tokens, [4, 5]);
    assert_eq!(out[1].finish_reason, FinishReason::StopToken(5));
    assert_eq!(out[2].tokens, [5]);
    assert_eq!(out[3].tokens, [5]);
    // rows were dropped from the cache as they finished: 4 rows → 2 → 1
    assert_eq!(
        model.calls(),
        [
            Call::Prefill(4),
            Call::Select(vec![0, 1]),
            Call::Step(2),
            Call::Select(vec![0]),
            Call::Step(1)
        ]
    );
}

#[test]
fn beam_cache_rows_follow_their_beams() {
    // The toy cache is the token history and the logits hash it, so a beam continuing the wrong
    // cache row would get other logits: batched beams must equal each row run alone.
    let model = hash_model(9, Some(40), 3.0);
    let prompts: [&[u32]; 4] = [&[1], &[2, 3], &[4, 5, 6, 7], &[8]];
    let config = GenerationConfig {
        max_new_tokens: 10,
        stop_tokens: vec![0, 2],
        no_repeat_ngram_size: 2,
        strategy: beam(3, 1.2, EarlyStopping::Heuristic, 2),
        ..Default::default()
    };
    let batched = generate(&model, &prompts, &config).unwrap();
    for (prompt, expected) in prompts.iter().zip(&batched) {
        assert_eq!(&generate(&model, &[prompt], &config).unwrap()[0], expected);
    }
    // the first select expands each row's single prefill row to its beams
    let calls = model.calls();
    let Call::Select(first) = &calls[1] else {
        panic!("{calls:?}")
    };
    assert_eq!(first.len(), 12);
    assert!(
        first
            .chunks(3)
            .enumerate()
            .all(|(row, beams)| beams.iter().all(|&b| b == row)),
        "{first:?}"
    );
}

#[test]
fn beams_wider_than_the_vocabulary_work() {
    let model = hash_model(3, None, 2.0);
    let config = GenerationConfig {
        max_new_tokens: 3,
        stop_tokens: vec![0],
        strategy: beam(50, 1.0, EarlyStopping::Heuristic, 50),
        ..Default::default()
    };
    let out = Generator::new(&model, &config)
        .unwrap()
        .generate(&[&[1]])
        .unwrap();
    // every sequence ending in 0 within 3 tokens plus those of length 3: 1 + 2 + 12
    let all = enumerate(&[1], 3, 3, 0, 1.0);
    assert_eq!(1 + out[0].runner_ups.len(), all.len());
    assert_eq!(out[0].tokens, all[0].0);
}
