//! Token sinks, stop strings, streamed text, and the encoder-decoder layout.

mod common;

use common::{bigram_model, hash_logits, hash_model, ToyModel};
use petl_generate::{
    generate, BeamConfig, EarlyStopping, FinishReason, Flow, GenerationConfig, Generator,
    IncrementalDetokenizer, Strategy, TokenSink,
};

/// Records everything a sink is told and can stop one row after a number of tokens.
#[derive(Default)]
struct Recorder {
    tokens: Vec<(usize, u32)>,
    finished: Vec<(usize, FinishReason)>,
    stop_row_after: Option<(usize, usize)>,
}

impl TokenSink for Recorder {
    fn token(&mut self, row: usize, token: u32) -> Flow {
        assert!(
            !self.finished.iter().any(|(r, _)| *r == row),
            "token after finish for row {row}"
        );
        self.tokens.push((row, token));
        match self.stop_row_after {
            Some((stop_row, n)) if stop_row == row && self.tokens_of(row).len() >= n => Flow::Stop,
            _ => Flow::Continue,
        }
    }

    fn finished(&mut self, row: usize, reason: FinishReason) {
        self.finished.push((row, reason));
    }
}

impl Recorder {
    fn tokens_of(&self, row: usize) -> Vec<u32> {
        self.tokens
            .iter()
            .filter(|(r, _)| *r == row)
            .map(|(_, t)| *t)
            .collect()
    }
}

fn beam(num_beams: usize) -> Strategy {
    Strategy::Beam(BeamConfig {
        num_beams,
        early_stopping: EarlyStopping::WhenFull,
        ..Default::default()
    })
}

#[test]
fn sink_sees_every_token_as_produced_and_each_end_once() {
    let model = hash_model(8, None, 3.0);
    let prompts: [&[u32]; 3] = [&[1], &[2, 3], &[4]];
    for strategy in [Strategy::Greedy, beam(3)] {
        let config = GenerationConfig {
            max_new_tokens: 9,
            stop_tokens: vec![0, 5],
            strategy,
            ..Default::default()
        };
        let mut sink = Recorder::default();
        let out = Generator::new(&model, &config)
            .unwrap()
            .generate_streaming(&prompts, &mut sink)
            .unwrap();
        for (row, generation) in out.iter().enumerate() {
            assert_eq!(sink.tokens_of(row), generation.tokens);
            let ends: Vec<_> = sink.finished.iter().filter(|(r, _)| *r == row).collect();
            assert_eq!(ends, [&(row, generation.finish_reason)]);
        }
        if config.strategy == Strategy::Greedy {
            // tokens arrive interleaved step by step, not row after row
            assert_eq!(
                sink.tokens[..3].iter().map(|(r, _)| *r).collect::<Vec<_>>(),
                [0, 1, 2]
            );
        }
    }
}

#[test]
fn a_closure_is_a_sink() {
    let model = hash_model(8, None, 3.0);
    let config = GenerationConfig {
        max_new_tokens: 4,
        ..Default::default()
    };
    let mut seen = Vec::new();
    let mut sink = |row: usize, token: u32| seen.push((row, token));
    let out = Generator::new(&model, &config)
        .unwrap()
        .generate_streaming(&[&[1]], &mut sink)
        .unwrap();
    assert_eq!(seen.iter().map(|(_, t)| *t).collect::<Vec<_>>(), out[0].tokens);
}

#[test]
fn a_sink_can_cancel_one_row() {
    let model = hash_model(8, None, 3.0);
    let config = GenerationConfig {
        max_new_tokens: 10,
        ..Default::default()
    };
    let mut sink = Recorder {
        stop_row_after: Some((1, 2)),
        ..Default::default()
    };
    let generator = Generator::new(&model, &config).unwrap();
    let out = generator
        .generate_streaming(&[&[1], &[2], &[3]], &mut sink)
        .unwrap();
    assert_eq!(out[1].tokens.len(), 2);
    assert_eq!(out[1].finish_reason, FinishReason::Cancelled);
    let plain = generator.generate(&[&[1], &[2], &[3]]).unwrap();
    assert_eq!(out[0], plain[0]);
    assert_eq!(out[2], plain[2]);
    assert_eq!(out[1].tokens, plain[1].tokens[..2]);
}

/// A byte-level vocabulary of 128 tokens: token t is the ASCII character t.
fn ascii(ids: &[u32]) -> String {
    ids.iter().map(|&t| char::from(t as u8)).collect()
}

/// A model that spells "abcd" over and over.
fn speller() -> ToyModel {
    let table: Vec<Vec<f32>> = (0..128u32)
        .map(|t| {
            let next = match t as u8 {
                b'a' => b'b',
                b'b' => b'c',
                b'c' => b'd',
                _ => b'a',
            };
            (0..128)
                .map(|v| if v == u32::from(next) { 2.0 } else { 0.0 })
                .collect()
        })
        .collect();
    bigram_model(table, None)
}

#[test]
fn stop_strings_end_rows_once_the_text_contains_them() {
    let model = speller();
    for strategy in [Strategy::Greedy, beam(2)] {
        let config = GenerationConfig {
            max_new_tokens: 20,
            stop_strings: vec!["zz".into(), "da".into(), "cd".into()],
            strategy,
            ..Default::default()
        };
        let out = Generator::new(&model, &config)
            .unwrap()
            .with_detokenizer(&ascii)
            .generate(&[&[u32::from(b'c')], &[u32::from(b'a')]])
            .unwrap();
        // from "c": d a → "da" (index 1), even though "cd" spans the prompt and first token
        assert_eq!(ascii(&out[0].tokens), "da");
        assert_eq!(out[0].finish_reason, FinishReason::StopString(1));
        assert_eq!(ascii(&out[1].tokens), "bcd");
        assert_eq!(out[1].finish_reason, FinishReason::StopString(2));
    }
}

#[test]
fn incremental_detokenizer_streams_the_generated_text() {
    let model = speller();
    let config = GenerationConfig {
        max_new_tokens: 7,
        ..Default::default()
    };
    let mut detok = IncrementalDetokenizer::with_context(ascii, &[u32::from(b'x')]);
    let mut text = String::new();
    let mut sink = |_row: usize, token: u32| text.push_str(&detok.push(token));
    let out = Generator::new(&model, &config)
        .unwrap()
        .generate_streaming(&[&[u32::from(b'x')]], &mut sink)
        .unwrap();
    text.push_str(&detok.finish());
    assert_eq!(text, "abcdabc");
    assert_eq!(text, ascii(&out[0].tokens));
}

#[test]
fn encoder_decoder_rows_decode_from_the_decoder_start() {
    // The logits favour the source's first token and the token after the last decoded one.
    let vocab = 10;
    let logits = move |source: &[u32], sequence: &[u32]| {
        let mut l = hash_logits(sequence, vocab, 0.1);
        l[source[0] as usize] += 5.0;
        l[(*sequence.last().unwrap() as usize + 1) % vocab] += 2.0;
        l
    };
    let model = ToyModel::encoder_decoder(vocab, Some(6), vec![2], Some(8), logits);
    let config = GenerationConfig {
        max_new_tokens: 10,
        ..Default::default()
    };
    let out = generate(&model, &[&[7, 1, 1], &[4]], &config).unwrap();
    // the decoder start is not returned; the budget is max_positions − 1
    assert_eq!(out[0].tokens, [7, 7, 7, 7, 7]);
    assert_eq!(out[0].finish_reason, FinishReason::MaxPositions);
    // the repetition penalty sees decoded tokens only, not the source
    let penalised = GenerationConfig {
        repetition_penalty: 100.0,
        ..config.clone()
    };
    let out = generate(&model, &[&[7, 1, 1]], &penalised).unwrap();
    assert_eq!(out[0].tokens[0], 7);
    assert_ne!(out[0].tokens[1], 7);
    // forced BOS acts on the first generated token (the decoded sequence has length 1)
    let forced = GenerationConfig {
        forced_bos_token_id: Some(9),
        ..config.clone()
    };
    for strategy in [Strategy::Greedy, beam(2)] {
        let out = generate(
            &model,
            &[&[7, 1, 1]],
            &GenerationConfig {
                strategy,
                ..forced.clone()
            },
        )
        .unwrap();
        assert_eq!(out[0].tokens[0], 9);
        assert_eq!(out[0].tokens[1], 7);
    }
    // min_new_tokens counts generated tokens, not the decoder start
    let stopping = GenerationConfig {
        stop_tokens: vec![7],
        min_new_tokens: 2,
        ..config
    };
    let out = generate(&model, &[&[7]], &stopping).unwrap();
    assert_eq!(out[0].tokens.len(), 3);
    assert_eq!(out[0].finish_reason, FinishReason::StopToken(7));
}
