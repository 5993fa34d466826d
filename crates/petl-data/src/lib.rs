//! Datasets for sequence classification and regression with transformer encoders.
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
//! Errors are reported as [`DataError`], with file path and line number for
//! bad rows.

#![deny(missing_docs)]

mod batch;
mod error;
mod example;
mod glue;
mod table;
mod task;
mod tokenize;

pub use batch::{collate, plan_batches, Batch, BatchLabels, BatchOrder};
pub use error::{DataError, Result};
pub use example::{Dataset, Example, Label};
pub use glue::{GlueTask, Split};
pub use table::{read_table, TableFormat, TableKind, TableSpec};
pub use task::{TaskKind, TaskSpec};
pub use tokenize::{Encoded, TextEncoder};
