//! Training, evaluation and prediction for parameter-efficient fine-tuning.
//!
//! - [`RunConfig`] / [`TrainConfig`]: what to train and how (TOML/JSON, unknown keys rejected).
//! - [`train`]: the loop — AdamW ([`AdamW`]), warmup + decay ([`Schedule`]), clipping,
//!   accumulation, periodic evaluation with best-checkpoint selection, resumable checkpoints,
//!   `log.jsonl`, a progress bar and a `training.svg` plot.
//! - [`TaskModel`]: a base model with one task's delta and head, for evaluation and prediction
//!   from a saved artifact.
//! - [`apply_overrides`]: `PATH=VALUE` assignments into a configuration (`petl train --set`).
//! - [`generation`]: text-generation tasks (summarization, translation, prompt → response) on
//!   decoder models: token-weighted LM loss, decoding, ROUGE/BLEU evaluation.
//! - [`mod@bench`]: training-step throughput and peak memory of one method (`petl bench`).
//! - [`sweep`]: a grid of runs over one base configuration, resumable, with results tables and
//!   a budget-versus-metric plot (`petl sweep`).
//!
//! A run directory holds `config.toml`, `log.jsonl`, `metrics.json`, `training.svg`,
//! `artifact/` (the best trainable state) and the current resumable checkpoint.
#![deny(missing_docs)]

mod artifact_io;
pub mod bench;
mod checkpoint;
mod config;
pub mod diff_pipeline;
mod error;
pub mod generation;
mod log;
mod loss_scale;
mod optim;
mod overrides;
pub mod plot;
mod schedule;
mod session;
mod step;
pub mod sweep;
mod trainer;

pub use config::{RunConfig, TaskSource, TrainConfig};
pub use error::{Result, TrainError};
pub use log::{read_log, LogRecord};
pub use loss_scale::{LossScaler, ScaledStep};
pub use optim::{clip_grad_norm, exempt_from_decay, AdamW, AdamWConfig};
pub use overrides::{apply_overrides, Assignment};
pub use schedule::Schedule;
pub use session::{EvalOutcome, Prediction, TaskModel};
pub use sweep::{run_sweep, Grid, SweepEvent, SweepReport, SweepSpec};
pub use trainer::{train, RunSummary, TrainOptions};
