//! Toy models for the decoding tests. Their caches hold each row's whole token history, and the
//! logits are computed from that history, so a wrong `select_rows` or a token sent to the wrong
//! row changes the logits and shows up in the results.

#![allow(dead_code)]

use std::cell::RefCell;
use std::path::PathBuf;

use petl_generate::{SequenceLayout, StepModel};

/// A toy model failure (bad call from the decoder, or an injected fault).
#[derive(Debug, Clone, PartialEq)]
pub struct ToyError(pub String);

impl std::fmt::Display for ToyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ToyError {}

/// One cache row: the encoder input (encoder-decoder layout) and the decoded sequence so far.
#[derive(Debug, Clone, PartialEq)]
pub struct RowState {
    pub source: Vec<u32>,
    pub sequence: Vec<u32>,
}

/// What the decoder asked of the model, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Prefill(usize),
    Step(usize),
    Select(Vec<usize>),
}

/// A fault injected at a given step (0 = prefill).
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    Logit { step: usize, token: usize, value: f32 },
    Width { step: usize, width: usize },
    MissingRow { step: usize },
    Error { step: usize },
}

/// Logits for the next token given the encoder input and the decoded sequence.
pub type LogitFn = Box<dyn Fn(&[u32], &[u32]) -> Vec<f32>>;

/// A [`StepModel`] whose cache is the token history of each row.
pub struct ToyModel {
    pub vocab: usize,
    pub max_positions: Option<usize>,
    pub layout: SequenceLayout,
    pub logits: LogitFn,
    pub fault: Option<Fault>,
    pub calls: RefCell<Vec<Call>>,
    steps: RefCell<usize>,
}

impl ToyModel {
    pub fn new(
        vocab: usize,
        max_positions: Option<usize>,
        logits: impl Fn(&[u32]) -> Vec<f32> + 'static,
    ) -> Self {
        Self {
            vocab,
            max_positions,
            layout: SequenceLayout::DecoderOnly,
            logits: Box::new(move |_source, sequence| logits(sequence)),
            fault: None,
            calls: RefCell::new(Vec::new()),
            steps: RefCell::new(0),
        }
    }

    pub fn encoder_decoder(
        vocab: usize,
        max_positions: Option<usize>,
        decoder_start: Vec<u32>,
        max_source_positions: Option<usize>,
        logits: impl Fn(&[u32], &[u32]) -> Vec<f32> + 'static,
    ) -> Self {
        Self {
            vocab,
            max_positions,
            layout: SequenceLayout::EncoderDecoder {
                decoder_start,
                max_source_positions,
            },
            logits: Box::new(logits),
            fault: None,
            calls: RefCell::new(Vec::new()),
            steps: RefCell::new(0),
        }
    }

    pub fn with_fault(mut self, fault: Fault) -> Self {
        self.fault = Some(fault);
        self
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }

    fn outputs(&self, step: usize, rows: &[RowState]) -> Result<Vec<Vec<f32>>, ToyError> {
        if let Some(limit) = self.max_positions {
            if let Some(row) = rows.iter().find(|r| r.sequence.len() > limit) {
                return Err(ToyError(format!(
                    "attended over {} > {limit} positions",
                    row.sequence.len()
                )));
            }
        }
        let mut out: Vec<Vec<f32>> = rows
            .iter()
            .map(|r| (self.logits)(&r.source, &r.sequence))
            .collect();
        match self.fault {
            Some(Fault::Logit {
                step: s,
                token,
                value,
            }) if s == step => out[0][token] = value,
            Some(Fault::Width { step: s, width }) if s == step => out[0].resize(width, 0.0),
            Some(Fault::MissingRow { step: s }) if s == step => {
                out.pop();
            }
            Some(Fault::Error { step: s }) if s == step => {
                return Err(ToyError(format!("injected failure at {s}")))
            }
            _ => {}
        }
        Ok(out)
    }
}

impl StepModel for ToyModel {
    type Cache = Vec<RowState>;
    type Error = ToyError;

    fn vocab_size(&self) -> usize {
        self.vocab
    }

    fn max_positions(&self) -> Option<usize> {
        self.max_positions
    }

    fn layout(&self) -> SequenceLayout {
        self.layout.clone()
    }

    fn prefill(&self, prompts: &[&[u32]]) -> Result<(Self::Cache, Vec<Vec<f32>>), Self::Error> {
        self.calls.borrow_mut().push(Call::Prefill(prompts.len()));
        *self.steps.borrow_mut() = 0;
        if prompts
            .iter()
            .any(|p| p.is_empty() || p.iter().any(|&t| t as usize >= self.vocab))
        {
            return Err(ToyError(
                "prefill got an empty prompt or an out-of-vocabulary id".into(),
            ));
        }
        let rows: Vec<RowState> = prompts
            .iter()
            .map(|p| match &self.layout {
                SequenceLayout::DecoderOnly => RowState {
                    source: Vec::new(),
                    sequence: p.to_vec(),
                },
                SequenceLayout::EncoderDecoder { decoder_start, .. } => RowState {
                    source: p.to_vec(),
                    sequence: decoder_start.clone(),
                },
            })
            .collect();
        let logits = self.outputs(0, &rows)?;
        Ok((rows, logits))
    }

    fn step(&self, cache: &mut Self::Cache, tokens: &[u32]) -> Result<Vec<Vec<f32>>, Self::Error> {
        self.calls.borrow_mut().push(Call::Step(tokens.len()));
        if tokens.len() != cache.len() {
            return Err(ToyError(format!(
                "step got {} tokens for {} rows",
                tokens.len(),
                cache.len()
            )));
        }
        for (row, &token) in cache.iter_mut().zip(tokens) {
            row.sequence.push(token);
        }
        let step = {
            let mut steps = self.steps.borrow_mut();
            *steps += 1;
            *steps
        };
        self.outputs(step, cache)
    }

    fn select_rows(&self, cache: &mut Self::Cache, rows: &[usize]) -> Result<(), Self::Error> {
        self.calls.borrow_mut().push(Call::Select(rows.to_vec()));
        if let Some(&bad) = rows.iter().find(|&&r| r >= cache.len()) {
            return Err(ToyError(format!("select_rows index {bad} >= {}", cache.len())));
        }
        *cache = rows.iter().map(|&r| cache[r].clone()).collect();
        Ok(())
    }
}

/// splitmix64: a well-mixed hash step.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Logits in [-scale, scale) that depend on the whole sequence (a hash of it), so every prefix
/// has its own distribution.
pub fn hash_logits(sequence: &[u32], vocab: usize, scale: f32) -> Vec<f32> {
    let h = sequence
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &t| mix(h ^ u64::from(t)));
    (0..vocab as u64)
        .map(|v| {
            let bits = mix(h ^ (v << 32) ^ 0x5555) >> 40; // 24 bits
            (bits as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// A decoder-only model over `vocab` tokens with hashed logits.
pub fn hash_model(vocab: usize, max_positions: Option<usize>, scale: f32) -> ToyModel {
    ToyModel::new(vocab, max_positions, move |seq| hash_logits(seq, vocab, scale))
}

/// A model whose logits depend only on the last token: `table[last]`.
pub fn bigram_model(table: Vec<Vec<f32>>, max_positions: Option<usize>) -> ToyModel {
    let vocab = table.len();
    ToyModel::new(vocab, max_positions, move |seq| {
        table[*seq.last().unwrap() as usize].clone()
    })
}

/// `crates/petl-generate/tests/golden/<name>/golden.json`, parsed.
pub fn golden(name: &str) -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
        .join("golden.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; regenerate with crates/petl-generate/tests/golden/gen/make_beam_golden.py",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap()
}

/// A golden float (null = -inf).
pub fn float(v: &serde_json::Value) -> f32 {
    v.as_f64().map_or(f32::NEG_INFINITY, |x| x as f32)
}

pub fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(float).collect()
}

pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}
