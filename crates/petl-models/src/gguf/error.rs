use std::path::PathBuf;

/// Everything that can go wrong reading a GGUF file or turning it into a Hugging Face model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    /// Opening, mapping or writing a file failed.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The header (magic, metadata or tensor table) does not parse: not a GGUF file, or cut short.
    #[error("{path} is not a readable GGUF file (truncated or corrupt?): {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the parser reported.
        message: String,
    },
    /// A tensor's data lies (partly) beyond the end of the file.
    #[error(
        "{path}: tensor `{tensor}` needs bytes {start}..{end} but the file has only {file_len} bytes \
         (truncated?)"
    )]
    TensorOutOfBounds {
        /// The file.
        path: PathBuf,
        /// The tensor's GGUF name.
        tensor: String,
        /// First byte of the tensor's data.
        start: u64,
        /// One past its last byte.
        end: u64,
        /// Size of the file.
        file_len: u64,
    },
    /// A tensor's dimensions cannot describe stored data (overflow, rank 0, rows not whole blocks).
    #[error("tensor `{tensor}` has an unusable shape {shape:?}: {reason}")]
    BadTensorShape {
        /// The tensor's GGUF name.
        tensor: String,
        /// Its dimensions, outermost first.
        shape: Vec<usize>,
        /// What is wrong with them.
        reason: String,
    },
    /// A tensor is stored in a type petl cannot dequantize.
    #[error("tensor `{tensor}` is stored as {type_name} (GGML type {type_id}), which petl cannot dequantize (supported: {supported})")]
    UnsupportedTensorType {
        /// The tensor's GGUF name.
        tensor: String,
        /// llama.cpp's name for the type, e.g. `IQ4_NL`.
        type_name: String,
        /// The numeric GGML type id in the file.
        type_id: u32,
        /// The supported types.
        supported: &'static str,
    },
    /// No tensor has the asked-for name.
    #[error("no tensor named `{name}`")]
    NoSuchTensor {
        /// The name asked for.
        name: String,
    },
    /// A metadata key petl needs is absent.
    #[error("GGUF metadata key `{key}` is missing")]
    MissingMetadata {
        /// The key.
        key: String,
    },
    /// A metadata value has the wrong type.
    #[error("GGUF metadata key `{key}` should be {expected}, found {found}")]
    MetadataType {
        /// The key.
        key: String,
        /// The type petl expects.
        expected: &'static str,
        /// What the file holds.
        found: String,
    },
    /// A metadata value has the right type but cannot be used.
    #[error("GGUF metadata key `{key}` is invalid: {reason}")]
    InvalidMetadata {
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
    /// `general.architecture` names a model family petl does not map.
    #[error("GGUF architecture `{architecture}` is not supported (supported: {supported})")]
    UnsupportedArchitecture {
        /// The architecture in the file.
        architecture: String,
        /// The supported values.
        supported: &'static str,
    },
    /// A tensor has no Hugging Face counterpart in the architecture petl maps.
    #[error("tensor `{tensor}` has no Hugging Face counterpart{}", reason.map(|r| format!(": {r}")).unwrap_or_default())]
    UnknownTensor {
        /// The tensor's GGUF name.
        tensor: String,
        /// What the tensor is, when petl recognises it.
        reason: Option<&'static str>,
    },
    /// A tensor the architecture needs is absent.
    #[error("tensor `{hf_name}` (GGUF `{gguf_name}`) is missing from the file")]
    MissingTensor {
        /// The Hugging Face name.
        hf_name: String,
        /// The GGUF name it would have.
        gguf_name: String,
    },
    /// A tensor's shape disagrees with the metadata.
    #[error("tensor `{hf_name}` has shape {actual:?}, the metadata implies {expected:?}")]
    ShapeMismatch {
        /// The Hugging Face name.
        hf_name: String,
        /// Shape implied by the metadata.
        expected: Vec<usize>,
        /// Shape found.
        actual: Vec<usize>,
    },
    /// Q/K rows cannot be split into `heads` groups of rotary pairs.
    #[error(
        "cannot reorder {rows} rows as {heads} heads of rotary pairs (rows must be a multiple of 2 × heads)"
    )]
    QkRows {
        /// Rows of the projection.
        rows: usize,
        /// Heads it was split into.
        heads: usize,
    },
    /// `tokenizer.ggml.model` names a tokenizer kind petl cannot build.
    #[error("GGUF tokenizer model `{model}` is not supported (supported: {supported})")]
    UnsupportedTokenizer {
        /// The value of `tokenizer.ggml.model`.
        model: String,
        /// The supported values.
        supported: &'static str,
    },
    /// The `tokenizers` library rejected the tokenizer described by the metadata.
    #[error("cannot build the tokenizer ({what}): {message}")]
    Tokenizer {
        /// The step that failed.
        what: &'static str,
        /// What the library reported.
        message: String,
    },
    /// The export destination already exists.
    #[error("{path} already exists; export writes a new directory")]
    OutputExists {
        /// The destination.
        path: PathBuf,
    },
    /// Writing the exported safetensors file failed.
    #[error("cannot write {path}: {message}")]
    SafetensorsWrite {
        /// The file.
        path: PathBuf,
        /// What the writer reported.
        message: String,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result alias for the GGUF module.
pub type Result<T> = std::result::Result<T, GgufError>;
