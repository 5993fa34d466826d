//! Tokenizer loading and settings shared by the generation encoders.

use std::path::Path;

use tokenizers::Tokenizer;

use crate::error::{DataError, Result};

/// Examples per batch-encode call: amortises thread dispatch while keeping
/// the intermediate `Encoding`s (offsets, token strings) bounded.
pub(crate) const ENCODE_CHUNK: usize = 1024;

/// Loads a `tokenizer.json`, mapping absence to [`DataError::MissingFile`].
pub(crate) fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    if !path.exists() {
        return Err(DataError::MissingFile {
            path: path.to_path_buf(),
            hint: Some("expected a Hugging Face tokenizer.json".to_string()),
        });
    }
    Tokenizer::from_file(path).map_err(|source| DataError::TokenizerLoad {
        path: path.to_path_buf(),
        source,
    })
}

/// The tokenizer without its own padding and truncation: exported files
/// often carry them (fixed padding, `max_length` 512), and either would
/// silently change what the encoders compute.
pub(crate) fn plain_tokenizer(mut tokenizer: Tokenizer) -> Tokenizer {
    tokenizer.with_padding(None);
    // Clearing truncation cannot fail (only setting a stride can).
    let _ = tokenizer.with_truncation(None);
    tokenizer
}

pub(crate) fn tokenize_err(source: tokenizers::Error) -> DataError {
    DataError::Tokenize { source }
}
