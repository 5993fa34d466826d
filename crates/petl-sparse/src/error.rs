//! The one error type of the crate.

/// Errors building, encoding or decoding a sparse diff.
///
/// Decoding errors say which check failed so a user can tell a file from another program
/// ([`SparseError::BadMagic`]) from a newer writer ([`SparseError::UnsupportedVersion`]) from a
/// damaged copy ([`SparseError::Truncated`], [`SparseError::ChecksumMismatch`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SparseError {
    /// The bytes do not start with the magic `PETLSDIF`.
    #[error("not a petl sparse diff: the data does not start with the magic bytes \"PETLSDIF\"")]
    BadMagic,
    /// The file was written in a format version this reader does not understand.
    #[error("unsupported sparse diff format version {found} (this reader supports version {supported})")]
    UnsupportedVersion {
        /// The version stored in the file.
        found: u32,
        /// The version this reader reads.
        supported: u32,
    },
    /// The file ends before a part its own framing announces.
    #[error("truncated sparse diff: needs at least {needed} bytes but has {len}")]
    Truncated {
        /// Bytes the framing requires.
        needed: u64,
        /// Bytes present.
        len: u64,
    },
    /// The CRC-32 at the end of the file does not match its contents.
    #[error(
        "checksum mismatch: stored CRC-32 {stored:#010x}, computed {computed:#010x} (the file is corrupted)"
    )]
    ChecksumMismatch {
        /// The CRC stored in the last four bytes.
        stored: u32,
        /// The CRC of the bytes before it.
        computed: u32,
    },
    /// The JSON header is missing, malformed, or contradicts itself.
    #[error("bad sparse diff header: {0}")]
    BadHeader(String),
    /// A tensor's content is inconsistent: positions out of range or not increasing, lengths
    /// that disagree, a shape whose element count overflows, a section outside the file, etc.
    #[error("invalid tensor {tensor:?}: {reason}")]
    Invalid {
        /// The tensor's name (`(unnamed)` when it has none yet).
        tensor: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A value dtype name is not one of `f32`, `f16`, `bf16`.
    #[error("unknown value dtype {0:?} (expected f32, f16 or bf16)")]
    UnknownDType(String),
}

/// Result alias for this crate.
pub type Result<T, E = SparseError> = std::result::Result<T, E>;

/// Shorthand for [`SparseError::Invalid`].
pub(crate) fn invalid(tensor: &str, reason: impl Into<String>) -> SparseError {
    SparseError::Invalid {
        tensor: tensor.to_owned(),
        reason: reason.into(),
    }
}
