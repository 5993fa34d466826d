use std::path::PathBuf;

/// Errors of training, evaluation and prediction.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// A model could not be loaded or run.
    #[error(transparent)]
    Model(#[from] petl_models::ModelError),
    /// A method configuration is invalid for the model.
    #[error(transparent)]
    Method(#[from] petl_methods::MethodError),
    /// Data could not be read or tokenised.
    #[error(transparent)]
    Data(#[from] petl_data::DataError),
    /// An artifact or checkpoint could not be read or written.
    #[error(transparent)]
    Artifact(#[from] petl_artifact::ArtifactError),
    /// A cached model could not be fetched.
    #[error(transparent)]
    Hub(#[from] petl_hub::HubError),
    /// Metrics could not be computed.
    #[error(transparent)]
    Metrics(#[from] petl_metrics::MetricsError),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Decoding failed (a model error during generation, or a bad generation setting).
    #[error("generation failed: {0}")]
    Generation(String),
    /// A GGUF model file could not be read.
    #[error(transparent)]
    Gguf(#[from] petl_models::gguf::GgufError),
    /// A configuration field is out of range or inconsistent.
    #[error("invalid configuration: `{field}` {reason}")]
    Config {
        /// The offending field.
        field: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// A configuration file could not be parsed.
    #[error("cannot parse {path}: {message}")]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// The parser's message (names unknown keys).
        message: String,
    },
    /// The loss became NaN or infinite; training stops rather than write garbage.
    #[error("loss is {loss} at step {step}; lower the learning rate or check the data")]
    NonFiniteLoss {
        /// The optimizer step.
        step: u64,
        /// The value.
        loss: f32,
    },
    /// `--resume` found no usable checkpoint, or one for a different configuration.
    #[error("cannot resume from {path}: {reason}")]
    Resume {
        /// The run directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A file could not be written or read.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, TrainError>;
