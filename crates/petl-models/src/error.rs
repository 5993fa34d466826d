use std::path::PathBuf;

/// Everything that can go wrong loading or running a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A file or directory petl needs is not there.
    #[error("missing {what} at {path}{}", hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    MissingFile {
        /// What the file is (e.g. "config.json").
        what: &'static str,
        /// Where it was expected.
        path: PathBuf,
        /// How to get it, when petl knows.
        hint: Option<String>,
    },
    /// Only a pickled PyTorch checkpoint exists; petl does not unpickle untrusted files.
    #[error(
        "{path} holds only a PyTorch pickle checkpoint (pytorch_model.bin); petl reads safetensors only. \
         Convert it with: python -c \"import torch; from safetensors.torch import save_file; \
         save_file({{k: v.contiguous() for k, v in torch.load('pytorch_model.bin').items()}}, 'model.safetensors')\""
    )]
    PickleCheckpoint {
        /// The model directory.
        path: PathBuf,
    },
    /// Reading a file failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file does not parse or lacks a required field.
    #[error("invalid JSON in {path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// A safetensors file is corrupt or truncated.
    #[error("invalid safetensors file {path}: {message}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What the reader reported.
        message: String,
    },
    /// The config names an architecture petl does not implement.
    #[error("unsupported model_type {model_type:?} (supported: {supported})")]
    UnsupportedModelType {
        /// The `model_type` in config.json.
        model_type: String,
        /// The supported values.
        supported: &'static str,
    },
    /// A config field has a value petl cannot use.
    #[error("config field `{field}` is invalid: {reason}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The checkpoint lacks a tensor the architecture needs.
    #[error("tensor `{name}` is missing from the checkpoint")]
    MissingTensor {
        /// Canonical tensor name.
        name: String,
    },
    /// A tensor has a different shape than the config implies.
    #[error("tensor `{name}` has shape {actual:?}, the config implies {expected:?}")]
    ShapeMismatch {
        /// Canonical tensor name.
        name: String,
        /// Shape implied by the config.
        expected: Vec<usize>,
        /// Shape found.
        actual: Vec<usize>,
    },
    /// A tensor is stored in a dtype petl cannot load.
    #[error("tensor `{name}` has unsupported dtype {dtype}")]
    UnsupportedDtype {
        /// Canonical tensor name.
        name: String,
        /// The stored dtype.
        dtype: String,
    },
    /// Two trainable parameters were registered under one name.
    #[error("parameter `{name}` is registered twice")]
    DuplicateParam {
        /// The name.
        name: String,
    },
    /// An input batch does not fit the model.
    #[error("bad input: {0}")]
    BadInput(String),
    /// A device name that is not `cpu`, `cuda` or `cuda:N`.
    #[error("unknown device `{spec}`: expected cpu, cuda or cuda:N")]
    UnknownDevice {
        /// The name as given.
        spec: String,
    },
    /// A CUDA device was asked for, but candle was built without CUDA.
    #[error("this petl was built without CUDA; rebuild with --features cuda (scripts/build-cuda.sh)")]
    CudaNotBuilt,
    /// The CUDA driver could not open the GPU.
    #[error("cannot open CUDA device {ordinal} (is an NVIDIA GPU present, and its driver on LD_LIBRARY_PATH?): {reason}")]
    CudaUnavailable {
        /// The GPU's ordinal.
        ordinal: usize,
        /// What the driver reported.
        reason: String,
    },
    /// Reading a GGUF file failed.
    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, ModelError>;
