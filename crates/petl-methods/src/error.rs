//! Errors building a method on a model.

use crate::spec::SpecError;

/// Why a method could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MethodError {
    /// The configuration is outside the design space or does not fit the model.
    #[error("invalid method configuration: {0}")]
    Spec(#[from] SpecError),
    /// An unknown preset name.
    #[error("unknown method {name:?} (known: {known})")]
    UnknownPreset {
        /// The name given.
        name: String,
        /// The preset names.
        known: String,
    },
    /// The model or a tensor operation failed.
    #[error(transparent)]
    Model(#[from] petl_models::ModelError),
}

impl From<candle_core::Error> for MethodError {
    fn from(e: candle_core::Error) -> Self {
        Self::Model(e.into())
    }
}

/// A method error for input that does not fit (a diff naming a tensor the base lacks, a position
/// past a tensor's end…), in the model's error type so hooks can pass it through unchanged.
pub(crate) fn bad_input(reason: impl Into<String>) -> MethodError {
    MethodError::Model(petl_models::ModelError::BadInput(reason.into()))
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, MethodError>;
