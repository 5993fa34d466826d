//! Model-agnostic decoding for petl's generation models, with transformers' semantics.
//!
//! The principal types are:
//!
//! - [`StepModel`]: what a model implements — prefill a batch of prompts, append one token per
//!   row, reorder cache rows. Logits cross it as host `Vec<f32>` rows, so this crate has no tensor
//!   dependency. [`SequenceLayout`] says whether the prompt is the decoder's prefix (Llama) or an
//!   encoder input (BART, mBART).
//! - [`GenerationConfig`]: length limits, a [`Strategy`] (greedy, seeded sampling with
//!   temperature / top-k / top-p, or beam search), stop tokens and strings, no-repeat n-grams,
//!   repetition penalty, forced BOS/EOS, and the prompt overflow policy.
//! - [`Generator`] (or the shortcut [`generate`]): checks config, model and prompts, runs the
//!   search and returns one [`Generation`] per prompt; [`TokenSink`] receives tokens as they come.
//! - [`IncrementalDetokenizer`]: turns streamed tokens into streamed text.
//! - [`processors`]: the individual logit processors, matching transformers' `LogitsProcessor`s.
//!
//! Data flow per step: model logits → checked (shape, no NaN/+inf) → (beam search: log-softmax)
//! → processors in transformers' order → (sampling: temperature, top-k, top-p) → next token(s)
//! → stop checks → the cache rows that go on are selected and stepped.
//!
//! ```
//! use petl_generate::{generate, GenerationConfig, StepModel, Strategy, BeamConfig};
//!
//! /// A bigram model over 3 tokens whose cache is each row's last token.
//! struct Bigram;
//! const TABLE: [[f32; 3]; 3] = [[0.0, 2.0, 1.0], [0.5, 0.0, 3.0], [1.0, 0.0, 0.0]];
//!
//! impl StepModel for Bigram {
//!     type Cache = Vec<u32>;
//!     type Error = std::convert::Infallible;
//!     fn vocab_size(&self) -> usize { 3 }
//!     fn max_positions(&self) -> Option<usize> { Some(16) }
//!     fn prefill(&self, prompts: &[&[u32]]) -> Result<(Vec<u32>, Vec<Vec<f32>>), Self::Error> {
//!         let last: Vec<u32> = prompts.iter().map(|p| p[p.len() - 1]).collect();
//!         let logits = last.iter().map(|&t| TABLE[t as usize].to_vec()).collect();
//!         Ok((last, logits))
//!     }
//!     fn step(&self, cache: &mut Vec<u32>, tokens: &[u32]) -> Result<Vec<Vec<f32>>, Self::Error> {
//!         cache.copy_from_slice(tokens);
//!         Ok(tokens.iter().map(|&t| TABLE[t as usize].to_vec()).collect())
//!     }
//!     fn select_rows(&self, cache: &mut Vec<u32>, rows: &[usize]) -> Result<(), Self::Error> {
//!         *cache = rows.iter().map(|&r| cache[r]).collect();
//!         Ok(())
//!     }
//! }
//!
//! let config = GenerationConfig { max_new_tokens: 5, stop_tokens: vec![2], ..Default::default() };
//! let out = generate(&Bigram, &[&[0], &[2, 2]], &config)?;
//! assert_eq!(out[0].tokens, [1, 2]); // 0 → 1 → 2 (stop)
//! assert_eq!(out[1].tokens, [0, 1, 2]);
//!
//! let beam = GenerationConfig {
//!     strategy: Strategy::Beam(BeamConfig { num_beams: 2, ..Default::default() }),
//!     ..config
//! };
//! let out = generate(&Bigram, &[&[0]], &beam)?;
//! assert_eq!(out[0].tokens, [1, 2]);
//! assert!(out[0].score.unwrap() < 0.0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod beam;
mod config;
mod detok;
mod error;
mod generate;
mod logits;
mod model;
mod output;
mod pipeline;
mod prepare;
pub mod processors;
mod sequential;
mod stop;
mod stream;

pub use config::{BeamConfig, EarlyStopping, GenerationConfig, PromptOverflow, SampleConfig, Strategy};
pub use detok::IncrementalDetokenizer;
pub use error::{ConfigError, GenerateError};
pub use generate::{generate, Generator};
pub use model::{LogitRows, SequenceLayout, StepModel};
pub use output::{FinishReason, Generation, Hypothesis};
pub use pipeline::{Pipeline, RowPosition};
pub use stream::{Flow, NoSink, TokenSink};
