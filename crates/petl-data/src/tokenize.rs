//! Tokenization with a Hugging Face `tokenizer.json`.

use std::path::Path;

use tokenizers::tokenizer::PostProcessor;
use tokenizers::{EncodeInput, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::{DataError, Result};
use crate::example::{Dataset, Example, Label};

/// Examples per `encode_batch` call in [`TextEncoder::encode_all`]: large
/// enough to amortise thread dispatch, small enough that the intermediate
/// `Encoding`s (which carry offsets and token strings) stay bounded.
const ENCODE_CHUNK: usize = 4096;

/// One tokenized example, unpadded.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// Token ids including special tokens.
    pub input_ids: Vec<u32>,
    /// Segment ids: 0 for the first text, 1 for the second.
    pub type_ids: Vec<u32>,
    /// The example's target.
    pub label: Label,
}

impl Encoded {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }
}

/// A tokenizer configured for classification inputs: no padding (batches
/// are padded dynamically by [`crate::collate`]) and longest-first
/// truncation to a fixed maximum length.
#[derive(Clone)]
pub struct TextEncoder {
    tokenizer: Tokenizer,
    pad_id: u32,
    max_len: usize,
}

impl std::fmt::Debug for TextEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The wrapped tokenizer's Debug prints the whole vocabulary.
        f.debug_struct("TextEncoder")
            .field("pad_id", &self.pad_id)
            .field("max_len", &self.max_len)
            .finish_non_exhaustive()
    }
}

impl TextEncoder {
    /// Loads `tokenizer.json` and truncates to `max_len` tokens (special
    /// tokens included), matching `tokenizer(a, b, truncation=True,
    /// max_length=max_len)` in Hugging Face Transformers.
    pub fn from_file(path: &Path, max_len: usize) -> Result<Self> {
        if !path.exists() {
            return Err(DataError::MissingFile {
                path: path.to_path_buf(),
                hint: Some("expected a Hugging Face tokenizer.json".to_string()),
            });
        }
        let tokenizer = Tokenizer::from_file(path).map_err(|source| DataError::TokenizerLoad {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_tokenizer(tokenizer, max_len).map_err(|e| match e {
            DataError::Tokenize { source } => DataError::TokenizerLoad {
                path: path.to_path_buf(),
                source,
            },
            other => other,
        })
    }

    /// Configures an already-built tokenizer (see [`TextEncoder::from_file`]).
    pub fn from_tokenizer(mut tokenizer: Tokenizer, max_len: usize) -> Result<Self> {
        let pad_id = pad_id_of(&tokenizer);
        let special_tokens = tokenizer.get_post_processor().map_or(0, |p| p.added_tokens(true));
        // tokenizers subtracts the special-token count from max_length
        // without checking, so too small a value would underflow.
        if max_len <= special_tokens {
            return Err(DataError::MaxLenTooSmall {
                max_len,
                special_tokens,
            });
        }
        // Exported tokenizer.json files often carry fixed-length padding;
        // padding every example to it would defeat dynamic padding.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: max_len,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|source| DataError::Tokenize { source })?;
        Ok(TextEncoder {
            tokenizer,
            pad_id,
            max_len,
        })
    }

    /// Id used to pad batches: the tokenizer's configured pad id, else the
    /// id of `[PAD]` or `<pad>`, else 0.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Maximum sequence length, special tokens included.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// The configured tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Tokenizes one example.
    pub fn encode(&self, ex: &Example) -> Result<Encoded> {
        let enc = self
            .tokenizer
            .encode_fast(input_of(ex), true)
            .map_err(|source| DataError::Tokenize { source })?;
        Ok(Encoded {
            input_ids: enc.get_ids().to_vec(),
            type_ids: enc.get_type_ids().to_vec(),
            label: ex.label,
        })
    }

    /// Tokenizes a whole dataset, in order, using the tokenizer's batch
    /// (multi-threaded) path.
    pub fn encode_all(&self, ds: &Dataset) -> Result<Vec<Encoded>> {
        let mut out = Vec::with_capacity(ds.examples.len());
        for chunk in ds.examples.chunks(ENCODE_CHUNK) {
            let inputs: Vec<EncodeInput<'_>> = chunk.iter().map(input_of).collect();
            let encodings = self
                .tokenizer
                .encode_batch_fast(inputs, true)
                .map_err(|source| DataError::Tokenize { source })?;
            out.extend(chunk.iter().zip(encodings).map(|(ex, enc)| Encoded {
                input_ids: enc.get_ids().to_vec(),
                type_ids: enc.get_type_ids().to_vec(),
                label: ex.label,
            }));
        }
        Ok(out)
    }
}

fn input_of(ex: &Example) -> EncodeInput<'_> {
    match &ex.text_b {
        Some(b) => (ex.text_a.as_str(), b.as_str()).into(),
        None => ex.text_a.as_str().into(),
    }
}

fn pad_id_of(tokenizer: &Tokenizer) -> u32 {
    if let Some(p) = tokenizer.get_padding() {
        return p.pad_id;
    }
    ["[PAD]", "<pad>"]
        .iter()
        .find_map(|t| tokenizer.token_to_id(t))
        .unwrap_or(0)
}
