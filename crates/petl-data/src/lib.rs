//! Datasets for transformer fine-tuning: sequence classification and
//! regression with encoders, and text generation with decoder-only and
//! encoder-decoder models.
//!
//! # Classification and regression
//!
//! Data flows through four steps:
//!
//! 1. **read** — [`GlueTask::read`] parses a GLUE task's TSV files and
//!    [`read_table`] a user CSV / TSV / JSONL file ([`TableSpec`]), giving a
//!    [`Dataset`]: a [`TaskSpec`] (labels, metrics) plus [`Example`]s.
//! 2. **encode** — [`TextEncoder`] wraps a Hugging Face `tokenizer.json`
//!    and turns examples into unpadded [`Encoded`] token ids, truncated to a
//!    maximum length.
//! 3. **plan** — [`plan_batches`] groups example indices into batches,
//!    sequentially, shuffled, or length-bucketed ([`BatchOrder`]),
//!    deterministically from a seed and epoch.
//! 4. **collate** — [`collate`] pads one planned batch to its longest item
//!    and produces the row-major [`Batch`] tensors the model consumes.
//!
//! # Text generation
//!
//! The same four steps, for source → target pairs:
//!
//! 1. **read** — [`read_xsum`] (XSum JSONL), [`read_wmt16_en_ro`] /
//!    [`read_parallel`] (line-aligned translation files, either direction)
//!    and [`read_gen_jsonl`] (any JSONL with configurable [`JsonlFields`],
//!    default `prompt` / `response`) give a [`GenDataset`] of
//!    [`GenExample`]s. Rows with an empty side are not kept but listed in
//!    [`GenDataset::dropped`]. [`GenDataset::split_at`] takes the first N
//!    examples for training and leaves the rest for evaluation;
//!    [`GenDataset::truncate`] applies a `--limit`.
//! 2. **encode** — [`CausalLmEncoder`] (decoder-only) renders a
//!    [`PromptTemplate`] (`{source}` placeholder; summarization,
//!    translation, identity presets, optional ChatML wrapping for instruct
//!    models) and builds `[bos] + prompt + target + eos` as a
//!    [`CausalEncoded`] whose loss covers only the target; over-long inputs
//!    lose source tokens, never the instruction, and targets are capped on
//!    their own. [`Seq2SeqEncoder`] (BART / mBART) builds a
//!    [`Seq2SeqEncoded`]: source ids with the tokenizer's special tokens,
//!    labels ending in eos, and decoder inputs shifted right behind the
//!    decoder start token. Both also encode the input alone for generation
//!    ([`PromptEncoded`]). Token ids such as bos, eos and the decoder start
//!    come from the model and are passed in ([`CausalLmSpec`],
//!    [`Seq2SeqSpec`]).
//! 3. **plan** — [`plan_token_batches`] / [`plan_seq2seq_batches`] group
//!    examples into batches by a padded-token budget (same [`BatchOrder`]s),
//!    for gradient accumulation by tokens.
//! 4. **collate** — [`collate_causal`] and [`collate_seq2seq`] pad on the
//!    right into row-major `u32` ids and masks and `i64` labels with
//!    [`IGNORE_INDEX`] on ignored positions, and count the batch's target
//!    tokens; [`collate_prompts`] pads generation inputs on either side.
//!
//! Prompt masking and token-budget batching, on ids an encoder would give:
//!
//! ```
//! use petl_data::{collate_causal, plan_token_batches, BatchOrder, CausalEncoded, IGNORE_INDEX};
//!
//! let bos = 1;
//! let eos = 2;
//! // [bos] + prompt, then target + eos: only the latter is scored.
//! let a = CausalEncoded::from_parts(&[bos, 10, 11, 12], &[20, eos]);
//! let b = CausalEncoded::from_parts(&[bos, 13], &[21, 22, eos]);
//! let items = [a, b];
//!
//! let lengths: Vec<usize> = items.iter().map(CausalEncoded::len).collect();
//! let plan = plan_token_batches(&lengths, 12, BatchOrder::Sequential);
//! assert_eq!(plan, vec![vec![0, 1]]); // 2 rows × 6 tokens fit a budget of 12
//!
//! let rows: Vec<&CausalEncoded> = plan[0].iter().map(|&i| &items[i]).collect();
//! let batch = collate_causal(&rows, 0).unwrap();
//! let x = IGNORE_INDEX;
//! assert_eq!(batch.labels, vec![x, x, x, x, 20, 2, x, x, 21, 22, 2, x]);
//! assert_eq!(batch.target_tokens, 5);
//! ```
//!
//! Errors are reported as [`DataError`], with file path and line number for
//! bad rows.

#![deny(missing_docs)]

mod batch;
mod error;
mod example;
mod generation;
mod glue;
mod table;
mod task;
mod tokenize;

pub use batch::{collate, plan_batches, Batch, BatchLabels, BatchOrder};
pub use error::{DataError, Result};
pub use example::{Dataset, Example, Label};
pub use generation::{
    collate_causal, collate_prompts, collate_seq2seq, padded_tokens, plan_seq2seq_batches,
    plan_token_batches, read_gen_jsonl, read_parallel, read_wmt16_en_ro, read_xsum, CausalBatch,
    CausalEncoded, CausalLmEncoder, CausalLmSpec, DroppedRow, EmptySide, EnRoDirection, GenDataset,
    GenExample, GenKind, JsonlFields, PadSide, ParallelSpec, PromptBatch, PromptEncoded, PromptTemplate,
    Seq2SeqBatch, Seq2SeqEncoded, Seq2SeqEncoder, Seq2SeqSpec, TruncationSide, IGNORE_INDEX,
    SOURCE_PLACEHOLDER,
};
pub use glue::{GlueTask, Split};
pub use table::{read_table, TableFormat, TableKind, TableSpec};
pub use task::{TaskKind, TaskSpec};
pub use tokenize::{Encoded, TextEncoder};
