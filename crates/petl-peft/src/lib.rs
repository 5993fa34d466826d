//! Interop with Hugging Face `peft`'s adapter format.
//!
//! A peft adapter is a directory with `adapter_config.json` ([`AdapterConfig`]) and
//! `adapter_model.safetensors` (tensors under peft's key names, see [`names`]). petl converts
//! the four peft methods it implements — LoRA, IA³, prefix tuning and prompt tuning — both
//! ways, with the task head as peft's `modules_to_save`:
//!
//! - [`export`] writes a loaded [`petl_train::TaskModel`] (e.g. from
//!   `TaskModel::from_artifact`) as a peft adapter that `PeftModel.from_pretrained` loads onto
//!   `BertForSequenceClassification` (task type `SEQ_CLS`) and that computes the same logits;
//! - [`import()`] reads a peft adapter onto a loaded base model as a `TaskModel`, whose
//!   `save_artifact` writes a petl artifact recording that base's fingerprint.
//!
//! What peft has no format for — bottleneck and parallel adapters, MAM and other
//! combinations, BitFit, full fine-tuning, diffs, learned or gated scales, a mean-pooling
//! head — is refused by [`export`] with [`PeftError::NotRepresentable`]; petl's own artifact
//! format (`docs/artifact-format.md`) holds all of them. peft options that change the forward
//! pass and have no petl form (`use_dora`, `alpha_pattern`, `bias`, …) are refused by
//! [`import()`] with [`PeftError::UnsupportedPeft`]; keys from newer peft versions are ignored
//! with a warning.
#![deny(missing_docs)]

pub mod config;
mod error;
mod export;
mod import;
pub mod names;

pub use config::{AdapterConfig, MethodConfig, PeftType, TargetModules, TaskType, CONFIG_FILE, WEIGHTS_FILE};
pub use error::{PeftError, Result};
pub use export::{export, to_peft, ExportOptions, ExportReport};
pub use import::{import, Imported};
