//! Training, evaluation and prediction for parameter-efficient fine-tuning.
//!
//! - [`RunConfig`] / [`TrainConfig`]: what to train and how (TOML/JSON, unknown keys rejected).
//! - [`train`]: the loop — AdamW ([`AdamW`]), warmup + decay ([`Schedule`]), clipping,
//!   accumulation, periodic evaluation with best-checkpoint selection, resumable checkpoints,
//!   `log.jsonl`, a progress bar and a `training.svg` plot.
//! - [`TaskModel`]: a base model with one task's delta and head, for evaluation and prediction
//!   from a saved artifact.
//!
//! A run directory holds `config.toml`, `log.jsonl`, `metrics.json`, `training.svg`,
//! `artifact/` (the best trainable state) and the current resumable checkpoint.
#![deny(missing_docs)]

mod checkpoint;
mod config;
mod error;
mod log;
mod optim;
pub mod plot;
mod schedule;
mod session;
mod trainer;

pub use config::{RunConfig, TaskSource, TrainConfig};
pub use error::{Result, TrainError};
pub use log::{read_log, LogRecord};
pub use optim::{clip_grad_norm, exempt_from_decay, AdamW, AdamWConfig};
pub use schedule::Schedule;
pub use session::{EvalOutcome, Prediction, TaskModel};
pub use trainer::{train, RunSummary, TrainOptions};
