//! What can go wrong reading or writing peft adapters.

use std::path::PathBuf;

/// Errors of the peft interop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeftError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `adapter_config.json` does not parse, lacks a field or has a wrong type.
    #[error("invalid peft adapter config {path}: {message}")]
    BadConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The adapter uses a peft method or option petl does not implement.
    #[error("{path}: {what} cannot be imported: {reason}")]
    UnsupportedPeft {
        /// The adapter config (or weights) file.
        path: PathBuf,
        /// The method or option, as peft names it (e.g. `use_dora = true`).
        what: String,
        /// Why, and what to do instead.
        reason: String,
    },
    /// The adapter's weights do not match its config or the base model.
    #[error("invalid peft adapter weights {path}: {message}")]
    BadWeights {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the tensor.
        message: String,
    },
    /// Only a pickled `adapter_model.bin` exists.
    #[error(
        "{path} holds only a pickled adapter_model.bin; petl reads safetensors only. Convert it with: \
         python -c \"import torch; from safetensors.torch import save_file; \
         save_file(torch.load('adapter_model.bin'), 'adapter_model.safetensors')\""
    )]
    PickleAdapter {
        /// The adapter directory.
        path: PathBuf,
    },
    /// The petl method (or head) has no peft equivalent.
    #[error("cannot export to peft: {what}: {reason}")]
    NotRepresentable {
        /// The part of the method or task that peft cannot hold.
        what: String,
        /// Why, and what to do instead.
        reason: String,
    },
    /// Building, loading or saving the petl task model failed.
    #[error(transparent)]
    Train(#[from] petl_train::TrainError),
    /// Writing a file failed.
    #[error(transparent)]
    Artifact(#[from] petl_artifact::ArtifactError),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, PeftError>;
