//! The crate's error type.

use std::path::PathBuf;

/// Result alias used throughout `petl-data`.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

/// Everything that can go wrong while reading, tokenizing or batching data.
///
/// Row-level variants carry the file path and the 1-based line number so a
/// user can jump straight to the offending line of a multi-gigabyte file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// A dataset or tokenizer file does not exist.
    #[error("file not found: {}{}", .path.display(), hint_suffix(.hint))]
    MissingFile {
        /// The path that was tried.
        path: PathBuf,
        /// What the caller should provide instead (e.g. the expected GLUE layout).
        hint: Option<String>,
    },

    /// Reading a file failed for a reason other than it being absent.
    #[error("cannot read {}", .path.display())]
    Io {
        /// The file being read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The file extension does not identify a supported table format.
    #[error("unknown table format for {} (expected .csv, .tsv, .jsonl or .json)", .path.display())]
    UnknownFormat {
        /// The file whose format could not be inferred.
        path: PathBuf,
    },

    /// A required column is absent from the header.
    #[error("missing column `{column}` in {} (header: {})", .path.display(), .header.join(", "))]
    MissingColumn {
        /// The file being read.
        path: PathBuf,
        /// The column that was looked for.
        column: String,
        /// The column names actually found.
        header: Vec<String>,
    },

    /// A row has a different number of fields than the header (or layout) requires.
    #[error("{}:{line}: expected {expected} fields, found {found}", .path.display())]
    FieldCount {
        /// The file being read.
        path: PathBuf,
        /// 1-based line number where the row starts.
        line: u64,
        /// Number of fields required.
        expected: usize,
        /// Number of fields present.
        found: usize,
    },

    /// A classification label is not one of the task's labels.
    #[error("{}:{line}: unknown label `{label}` (expected one of: {})", .path.display(), .known.join(", "))]
    UnknownLabel {
        /// The file being read.
        path: PathBuf,
        /// 1-based line number where the row starts.
        line: u64,
        /// The label as written in the file.
        label: String,
        /// The task's labels, in id order.
        known: Vec<String>,
    },

    /// A regression target is not a finite number.
    #[error("{}:{line}: unparsable score `{value}`", .path.display())]
    BadScore {
        /// The file being read.
        path: PathBuf,
        /// 1-based line number where the row starts.
        line: u64,
        /// The value as written in the file.
        value: String,
    },

    /// A row cannot be interpreted for some other reason (invalid UTF-8,
    /// invalid JSON, a field of the wrong type, ...).
    #[error("{}:{line}: malformed row: {reason}", .path.display())]
    MalformedRow {
        /// The file being read.
        path: PathBuf,
        /// 1-based line number where the row starts.
        line: u64,
        /// What is wrong with the row.
        reason: String,
    },

    /// The file contains a header (or nothing) but no examples.
    #[error("no examples in {}", .path.display())]
    EmptyDataset {
        /// The file that was read.
        path: PathBuf,
    },

    /// A `tokenizer.json` could not be loaded or configured.
    #[error("cannot load tokenizer {}", .path.display())]
    TokenizerLoad {
        /// The tokenizer file.
        path: PathBuf,
        /// The tokenizers-library error.
        #[source]
        source: tokenizers::Error,
    },

    /// The requested maximum sequence length cannot hold the special tokens
    /// of a sentence pair plus any text.
    #[error(
        "max length {max_len} is too small: the tokenizer adds {special_tokens} special tokens to a pair"
    )]
    MaxLenTooSmall {
        /// The requested maximum length.
        max_len: usize,
        /// Special tokens the tokenizer adds to a sentence pair.
        special_tokens: usize,
    },

    /// Tokenizing an example failed.
    #[error("tokenization failed")]
    Tokenize {
        /// The tokenizers-library error.
        #[source]
        source: tokenizers::Error,
    },

    /// `collate` was called with no items.
    #[error("cannot collate an empty batch")]
    EmptyBatch,

    /// Two line-aligned files (parallel text) have different numbers of lines.
    #[error(
        "line counts differ: {} has {source_lines} lines but {} has {target_lines}",
        .source_path.display(),
        .target_path.display()
    )]
    LineCountMismatch {
        /// The source-side file.
        source_path: PathBuf,
        /// Its number of lines (trailing blank lines not counted).
        source_lines: usize,
        /// The target-side file.
        target_path: PathBuf,
        /// Its number of lines (trailing blank lines not counted).
        target_lines: usize,
    },

    /// A prompt template cannot be used.
    #[error("bad prompt template {template:?}: {reason}")]
    BadTemplate {
        /// The template as given.
        template: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The maximum length cannot hold a prompt template's own tokens plus
    /// the tokens reserved for bos and the target.
    #[error(
        "max length {max_len} is too small: the prompt template alone has {template_tokens} tokens \
         and {reserved} more are reserved (bos, target)"
    )]
    TemplateTooLong {
        /// The requested maximum length.
        max_len: usize,
        /// Tokens of the template with an empty source.
        template_tokens: usize,
        /// Tokens reserved besides the template.
        reserved: usize,
    },

    /// A dataset split point leaves one side empty.
    #[error("cannot split {len} examples after the first {at}: both parts must be non-empty")]
    BadSplit {
        /// The requested size of the first part.
        at: usize,
        /// The number of examples.
        len: usize,
    },

    /// A length or size setting is out of range.
    #[error("invalid {setting}: {reason}")]
    InvalidSetting {
        /// The setting's name.
        setting: &'static str,
        /// The allowed range or the conflict.
        reason: String,
    },

    /// `collate` was given items with different label kinds.
    #[error("batch mixes label kinds: item 0 is {first}, item {index} is {other}")]
    MixedLabels {
        /// Label kind of the first item.
        first: &'static str,
        /// Index (within the batch) of the first item that disagrees.
        index: usize,
        /// Label kind of that item.
        other: &'static str,
    },
}

fn hint_suffix(hint: &Option<String>) -> String {
    match hint {
        Some(h) => format!(" ({h})"),
        None => String::new(),
    }
}

impl DataError {
    /// Maps an `open` failure so that absence gets its own, hintable variant.
    pub(crate) fn from_open(path: PathBuf, err: std::io::Error, hint: Option<String>) -> Self {
        if err.kind() == std::io::ErrorKind::NotFound {
            DataError::MissingFile { path, hint }
        } else {
            DataError::Io { path, source: err }
        }
    }
}
