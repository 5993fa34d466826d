//! Odd input gives a clear error (or documented behaviour), never a panic.

mod common;

use common::{bigram_model, hash_model, Fault, ToyModel};
use petl_generate::{
    generate, BeamConfig, FinishReason, GenerateError, GenerationConfig, Generator, PromptOverflow,
    SampleConfig, Strategy,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type Error = GenerateError<common::ToyError>;

fn greedy(max_new_tokens: usize) -> GenerationConfig {
    GenerationConfig {
        max_new_tokens,
        ..Default::default()
    }
}

fn beam(max_new_tokens: usize, num_beams: usize) -> GenerationConfig {
    GenerationConfig {
        max_new_tokens,
        strategy: Strategy::Beam(BeamConfig {
            num_beams,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn err(model: &ToyModel, prompts: &[&[u32]], config: &GenerationConfig) -> Error {
    match generate(model, prompts, config) {
        Ok(out) => panic!("expected an error, got {out:?}"),
        Err(e) => e,
    }
}

#[test]
fn no_prompts_no_model_call() {
    let model = hash_model(5, Some(8), 1.0);
    assert_eq!(generate(&model, &[], &greedy(3)).unwrap(), []);
    assert_eq!(generate(&model, &[], &beam(3, 2)).unwrap(), []);
    assert_eq!(model.calls(), []);
}

#[test]
fn empty_prompt_and_unknown_tokens_are_refused_before_the_model_runs() {
    let model = hash_model(5, Some(8), 1.0);
    for config in [greedy(3), beam(3, 2)] {
        let e = err(&model, &[&[1], &[]], &config);
        assert!(matches!(e, GenerateError::EmptyPrompt { row: 1 }), "{e:?}");
        assert!(e.to_string().contains("BOS"), "{e}");
        let e = err(&model, &[&[1, 2, 5]], &config);
        assert!(
            matches!(
                e,
                GenerateError::TokenOutOfVocab {
                    row: 0,
                    position: 2,
                    token: 5,
                    vocab_size: 5
                }
            ),
            "{e:?}"
        );
        let e = err(&model, &[&[u32::MAX]], &config);
        assert!(
            matches!(e, GenerateError::TokenOutOfVocab { token: u32::MAX, .. }),
            "{e:?}"
        );
    }
    assert_eq!(model.calls(), []);
}

#[test]
fn a_prompt_without_room_names_both_lengths() {
    let model = hash_model(5, Some(8), 1.0);
    let e = err(&model, &[&[1, 1], &[1; 8]], &greedy(3));
    assert!(
        matches!(
            e,
            GenerateError::PromptTooLong {
                row: 1,
                prompt_len: 8,
                limit: 7,
                ..
            }
        ),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(text.contains("8 tokens") && text.contains("at most 7"), "{text}");
}

#[test]
fn max_new_tokens_is_clipped_to_the_position_budget() {
    // The toy model errors if it ever attends over more than max_positions tokens.
    let model = hash_model(5, Some(8), 1.0);
    for config in [greedy(10), beam(10, 3)] {
        let out = generate(&model, &[&[1; 5], &[1; 7], &[2]], &config).unwrap();
        assert_eq!(out[0].tokens.len(), 3);
        assert_eq!(out[0].finish_reason, FinishReason::MaxPositions);
        assert_eq!(out[1].tokens.len(), 1);
        assert_eq!(out[2].tokens.len(), 7);
    }
    let out = generate(&model, &[&[1; 3]], &greedy(5)).unwrap();
    assert_eq!(out[0].finish_reason, FinishReason::MaxNewTokens);
}

#[test]
fn truncation_keeps_room_for_every_new_token() {
    let model = hash_model(20, Some(8), 1.0);
    let prompt: Vec<u32> = (0..12).collect();
    for (side, kept) in [
        (PromptOverflow::TruncateLeft, 7..12),
        (PromptOverflow::TruncateRight, 0..5),
    ] {
        let config = GenerationConfig {
            prompt_overflow: side,
            ..greedy(3)
        };
        let out = generate(&model, &[&prompt, &[3]], &config).unwrap();
        assert_eq!(out[0].prompt_tokens_dropped, 7);
        assert_eq!(out[0].tokens.len(), 3);
        assert_eq!(out[0].finish_reason, FinishReason::MaxNewTokens);
        assert_eq!(out[1].prompt_tokens_dropped, 0);
        // same as giving the kept part directly
        let kept: Vec<u32> = kept.collect();
        assert_eq!(
            out[0].tokens,
            generate(&model, &[&kept], &greedy(3)).unwrap()[0].tokens
        );
    }
    let config = GenerationConfig {
        prompt_overflow: PromptOverflow::TruncateLeft,
        ..greedy(8)
    };
    let e = err(&model, &[&prompt], &config);
    assert!(
        matches!(
            e,
            GenerateError::NoRoomForPrompt {
                max_new_tokens: 8,
                max_positions: 8
            }
        ),
        "{e:?}"
    );
}

#[test]
fn bad_logits_name_the_step() {
    for config in [greedy(6), beam(6, 2)] {
        for (fault, check) in [
            (
                Fault::Logit {
                    step: 2,
                    token: 3,
                    value: f32::NAN,
                },
                "NaN",
            ),
            (
                Fault::Logit {
                    step: 0,
                    token: 1,
                    value: f32::INFINITY,
                },
                "inf",
            ),
            (Fault::Width { step: 1, width: 4 }, "4 values"),
            (Fault::MissingRow { step: 3 }, "logit rows"),
            (Fault::Error { step: 2 }, "model failed"),
        ] {
            let model = hash_model(6, None, 1.0).with_fault(fault.clone());
            let e = err(&model, &[&[1], &[2]], &config);
            let text = e.to_string();
            let step = match fault {
                Fault::Logit { step, .. }
                | Fault::Width { step, .. }
                | Fault::MissingRow { step }
                | Fault::Error { step } => step,
            };
            assert!(text.contains(&format!("step {step}")), "{text}");
            assert!(text.contains(check), "{text}");
            if let GenerateError::Model { source, .. } = &e {
                assert_eq!(source.0, "injected failure at 2");
                assert!(std::error::Error::source(&e).is_some());
            }
        }
    }
}

#[test]
fn minus_infinity_is_a_ruled_out_token() {
    let model = hash_model(6, None, 1.0).with_fault(Fault::Logit {
        step: 0,
        token: 3,
        value: f32::NEG_INFINITY,
    });
    let out = generate(&model, &[&[1]], &greedy(2)).unwrap();
    assert_eq!(out[0].tokens.len(), 2);
}

#[test]
fn a_row_with_every_token_ruled_out_is_an_error() {
    let model = bigram_model(vec![vec![f32::NEG_INFINITY; 3]; 3], None);
    for config in [
        greedy(2),
        beam(2, 2),
        GenerationConfig {
            strategy: Strategy::Sample(SampleConfig::default()),
            ..greedy(2)
        },
    ] {
        let e = err(&model, &[&[0]], &config);
        assert!(
            matches!(e, GenerateError::NoAllowedToken { step: 0, row: 0 }),
            "{e:?}"
        );
    }
    // the n-gram ban can exhaust a small vocabulary: 1-grams ban every token seen
    let model = hash_model(4, None, 1.0);
    let config = GenerationConfig {
        no_repeat_ngram_size: 1,
        ..greedy(4)
    };
    let e = err(&model, &[&[0, 1]], &config);
    assert!(
        matches!(e, GenerateError::NoAllowedToken { step: 2, row: 0 }),
        "{e:?}"
    );
    let config = GenerationConfig {
        no_repeat_ngram_size: 1,
        ..beam(4, 2)
    };
    let e = err(&model, &[&[0, 1]], &config);
    assert!(
        matches!(e, GenerateError::NoAllowedToken { step: 2, row: 0 }),
        "{e:?}"
    );
}

#[test]
fn config_and_model_must_fit_together() {
    let empty = hash_model(0, None, 1.0);
    assert!(matches!(
        err(&empty, &[&[0]], &greedy(2)),
        GenerateError::EmptyVocabulary
    ));
    let model = hash_model(5, None, 1.0);
    let config = GenerationConfig {
        stop_tokens: vec![2, 5],
        ..greedy(2)
    };
    let e = err(&model, &[&[0]], &config);
    assert!(matches!(
        e,
        GenerateError::ConfigTokenOutOfVocab {
            field: "stop_tokens",
            token: 5,
            vocab_size: 5
        }
    ));
    let config = GenerationConfig {
        forced_bos_token_id: Some(9),
        ..greedy(2)
    };
    assert!(err(&model, &[&[0]], &config)
        .to_string()
        .contains("forced_bos_token_id token 9"));
    let config = GenerationConfig {
        stop_strings: vec!["x".into()],
        ..greedy(2)
    };
    assert!(matches!(
        err(&model, &[&[0]], &config),
        GenerateError::StopStringsNeedDetokenizer
    ));
    let config = GenerationConfig {
        max_new_tokens: 0,
        ..greedy(2)
    };
    assert!(matches!(
        Generator::new(&model, &config),
        Err(GenerateError::Config(_))
    ));
    assert_eq!(model.calls(), []);
}

#[test]
fn encoder_decoder_start_and_source_limits() {
    let logits = |_: &[u32], seq: &[u32]| common::hash_logits(seq, 6, 1.0);
    let model = ToyModel::encoder_decoder(6, Some(4), vec![], None, logits);
    assert!(matches!(
        err(&model, &[&[1]], &greedy(2)),
        GenerateError::EmptyDecoderStart
    ));
    let model = ToyModel::encoder_decoder(6, Some(2), vec![0, 1], None, logits);
    assert!(matches!(
        err(&model, &[&[1]], &greedy(2)),
        GenerateError::DecoderStartTooLong {
            len: 2,
            max_positions: 2
        }
    ));
    let model = ToyModel::encoder_decoder(6, Some(4), vec![7], None, logits);
    assert!(matches!(
        err(&model, &[&[1]], &greedy(2)),
        GenerateError::ConfigTokenOutOfVocab {
            field: "decoder_start",
            ..
        }
    ));

    let model = ToyModel::encoder_decoder(6, Some(4), vec![0], Some(3), logits);
    let e = err(&model, &[&[1, 2, 3, 4]], &greedy(2));
    assert!(matches!(
        e,
        GenerateError::PromptTooLong {
            prompt_len: 4,
            limit: 3,
            why: "max_source_positions",
            ..
        }
    ));
    let config = GenerationConfig {
        prompt_overflow: PromptOverflow::TruncateRight,
        ..greedy(9)
    };
    let out = generate(&model, &[&[1, 2, 3, 4]], &config).unwrap();
    assert_eq!(out[0].prompt_tokens_dropped, 1);
    // the decoder budget is max_positions - decoder start length, whatever the source length
    assert_eq!(out[0].tokens.len(), 3);
    assert_eq!(out[0].finish_reason, FinishReason::MaxPositions);
}

#[test]
fn random_odd_inputs_never_panic() {
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let mut errors = 0;
    let mut successes = 0;
    for _ in 0..400 {
        let vocab = rng.random_range(0..12);
        let max_positions = if rng.random_bool(0.7) {
            Some(rng.random_range(0..20))
        } else {
            None
        };
        let model = hash_model(vocab, max_positions, 3.0);
        let rows = rng.random_range(0..4);
        let prompts: Vec<Vec<u32>> = (0..rows)
            .map(|_| {
                (0..rng.random_range(0..6))
                    .map(|_| rng.random_range(0..12))
                    .collect()
            })
            .collect();
        let prompt_refs: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
        let strategy = match rng.random_range(0..3) {
            0 => Strategy::Greedy,
            1 => Strategy::Sample(SampleConfig {
                temperature: rng.random_range(0.0..3.0),
                top_k: rng.random_range(0..4),
                top_p: rng.random_range(0.0..1.2),
                seed: rng.random(),
            }),
            _ => {
                let num_beams = rng.random_range(0..12);
                Strategy::Beam(BeamConfig {
                    num_beams,
                    length_penalty: rng.random_range(-2.0..3.0),
                    early_stopping: [
                        petl_generate::EarlyStopping::Heuristic,
                        petl_generate::EarlyStopping::WhenFull,
                        petl_generate::EarlyStopping::Never,
                    ][rng.random_range(0..3)],
                    num_return_sequences: rng.random_range(0..num_beams + 2),
                })
            }
        };
        let config = GenerationConfig {
            max_new_tokens: rng.random_range(0..10),
            min_new_tokens: rng.random_range(0..3),
            strategy,
            stop_tokens: (0..rng.random_range(0..3))
                .map(|_| rng.random_range(0..7))
                .collect(),
            no_repeat_ngram_size: rng.random_range(0..4),
            repetition_penalty: rng.random_range(0.0..2.0),
            forced_bos_token_id: rng.random_bool(0.2).then(|| rng.random_range(0..7)),
            forced_eos_token_id: rng.random_bool(0.2).then(|| rng.random_range(0..7)),
            prompt_overflow: [
                PromptOverflow::Error,
                PromptOverflow::TruncateLeft,
                PromptOverflow::TruncateRight,
            ][rng.random_range(0..3)],
            ..Default::default()
        };
        match generate(&model, &prompt_refs, &config) {
            Ok(out) => {
                successes += 1;
                assert_eq!(out.len(), rows);
                for generation in &out {
                    assert!(
                        !generation.tokens.is_empty() && generation.tokens.len() <= config.max_new_tokens
                    );
                    assert!(generation.tokens.iter().all(|&t| (t as usize) < vocab));
                }
                // the model was never asked to go past its positions (it would have errored)
                assert!(!model.calls().is_empty() || rows == 0);
            }
            Err(e) => {
                errors += 1;
                assert!(!e.to_string().is_empty());
            }
        }
    }
    // both outcomes are exercised
    assert!(
        errors > 50 && successes > 50,
        "{errors} errors, {successes} successes"
    );
}

#[test]
fn huge_settings_allocate_only_what_is_used() {
    let model = hash_model(5, None, 1.0);
    let config = GenerationConfig {
        strategy: Strategy::Beam(BeamConfig {
            num_beams: 1 << 40,
            num_return_sequences: 1 << 40,
            ..Default::default()
        }),
        ..greedy(2)
    };
    let out = generate(&model, &[&[1]], &config).unwrap();
    assert_eq!(1 + out[0].runner_ups.len(), 5 * 5);
    let config = GenerationConfig {
        strategy: Strategy::Sample(SampleConfig {
            top_k: usize::MAX,
            ..Default::default()
        }),
        ..greedy(3)
    };
    assert_eq!(generate(&model, &[&[1]], &config).unwrap()[0].tokens.len(), 3);
    // an unbounded model with stop tokens: max_new_tokens is only an upper bound
    let table = vec![vec![0.0, 5.0], vec![0.0, 5.0]];
    let config = GenerationConfig {
        max_new_tokens: usize::MAX,
        stop_tokens: vec![1],
        ..Default::default()
    };
    assert_eq!(
        generate(&bigram_model(table, None), &[&[0]], &config).unwrap()[0].tokens,
        [1]
    );
}
