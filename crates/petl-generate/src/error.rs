//! Why a configuration is invalid or a generation could not run.

/// A [`crate::GenerationConfig`] field outside its documented range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A numeric field outside its range.
    #[error("{field} = {value} is out of range: must be {allowed}")]
    OutOfRange {
        /// The field's name.
        field: &'static str,
        /// The value given.
        value: f64,
        /// The allowed range, in words.
        allowed: &'static str,
    },
    /// `min_new_tokens` above `max_new_tokens`.
    #[error("min_new_tokens ({min}) exceeds max_new_tokens ({max})")]
    MinAboveMax {
        /// `min_new_tokens`.
        min: usize,
        /// `max_new_tokens`.
        max: usize,
    },
    /// `num_return_sequences` is 0 or above `num_beams`.
    #[error("num_return_sequences = {requested} must be in 1..={num_beams} (num_beams)")]
    ReturnSequences {
        /// `num_return_sequences`.
        requested: usize,
        /// `num_beams`.
        num_beams: usize,
    },
    /// An empty stop string (it would match before any token).
    #[error("stop string {index} is empty")]
    EmptyStopString {
        /// Its index in `stop_strings`.
        index: usize,
    },
}

/// Why generation failed. `E` is the model's error type.
///
/// Steps are numbered by the generated token they produce: step 0 is the prefill, whose logits
/// choose the first generated token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GenerateError<E: std::error::Error + 'static> {
    /// The configuration is invalid.
    #[error("invalid generation config: {0}")]
    Config(#[from] ConfigError),
    /// The model reports an empty vocabulary.
    #[error("the model has an empty vocabulary")]
    EmptyVocabulary,
    /// A token id in the configuration (or the model's decoder start) is not in the vocabulary.
    #[error("{field} token {token} is outside the vocabulary (size {vocab_size})")]
    ConfigTokenOutOfVocab {
        /// Where the token comes from (`stop_tokens`, `forced_bos_token_id`, …).
        field: &'static str,
        /// The token id.
        token: u32,
        /// The model's vocabulary size.
        vocab_size: usize,
    },
    /// The model's encoder-decoder layout has no decoder start tokens.
    #[error("the model's decoder start sequence is empty")]
    EmptyDecoderStart,
    /// The model's decoder start sequence leaves no room to generate.
    #[error(
        "the decoder start sequence ({len} tokens) leaves no room within max_positions = {max_positions}"
    )]
    DecoderStartTooLong {
        /// Decoder start length.
        len: usize,
        /// The model's `max_positions`.
        max_positions: usize,
    },
    /// `stop_strings` are set but no detokenizer was given.
    #[error("stop_strings need a detokenizer (Generator::with_detokenizer)")]
    StopStringsNeedDetokenizer,
    /// A prompt with no tokens (pass at least a BOS token).
    #[error("prompt {row} is empty (pass at least a BOS token)")]
    EmptyPrompt {
        /// The prompt's row.
        row: usize,
    },
    /// A prompt token id is not in the vocabulary.
    #[error(
        "prompt {row} has token {token} at position {position}, outside the vocabulary (size {vocab_size})"
    )]
    TokenOutOfVocab {
        /// The prompt's row.
        row: usize,
        /// Index of the token in the prompt.
        position: usize,
        /// The token id.
        token: u32,
        /// The model's vocabulary size.
        vocab_size: usize,
    },
    /// A prompt does not fit: a decoder-only prompt must leave room for one new token, an
    /// encoder prompt must fit `max_source_positions`. See [`crate::PromptOverflow`].
    #[error("prompt {row} has {prompt_len} tokens but the model takes at most {limit} here ({why})")]
    PromptTooLong {
        /// The prompt's row.
        row: usize,
        /// The prompt's length.
        prompt_len: usize,
        /// The largest prompt length accepted.
        limit: usize,
        /// Which model bound sets the limit.
        why: &'static str,
    },
    /// Truncation was asked for, but `max_new_tokens` alone fills the model's positions.
    #[error("max_new_tokens = {max_new_tokens} leaves no room for a prompt within max_positions = {max_positions}")]
    NoRoomForPrompt {
        /// The configured `max_new_tokens`.
        max_new_tokens: usize,
        /// The model's `max_positions`.
        max_positions: usize,
    },
    /// The model returned a different number of logit rows than it has cache rows.
    #[error("step {step}: the model returned {got} logit rows, expected {expected}")]
    LogitRows {
        /// The step.
        step: usize,
        /// Rows expected.
        expected: usize,
        /// Rows returned.
        got: usize,
    },
    /// A logit row is not `vocab_size` long.
    #[error("step {step}: logit row {row} has {got} values, expected vocab_size = {expected}")]
    LogitWidth {
        /// The step.
        step: usize,
        /// The prompt row.
        row: usize,
        /// `vocab_size`.
        expected: usize,
        /// The row's length.
        got: usize,
    },
    /// A logit is NaN or +inf (-inf is allowed: a token the model rules out).
    #[error("step {step}: prompt row {row} has logit {value} for token {token}")]
    NonFiniteLogit {
        /// The step.
        step: usize,
        /// The prompt row.
        row: usize,
        /// The token whose logit is bad.
        token: usize,
        /// The logit.
        value: f32,
    },
    /// Every token is ruled out (by the model or the processors) and the row has nothing to return.
    #[error("step {step}: every token is ruled out for prompt row {row}")]
    NoAllowedToken {
        /// The step.
        step: usize,
        /// The prompt row.
        row: usize,
    },
    /// The model failed.
    #[error("model failed at step {step}")]
    Model {
        /// The step.
        step: usize,
        /// The model's error.
        source: E,
    },
}
