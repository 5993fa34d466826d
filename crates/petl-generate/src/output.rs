//! What generation returns per prompt.

use serde::Serialize;

/// Why a row (or a beam hypothesis) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", content = "value", rename_all = "snake_case")]
pub enum FinishReason {
    /// It generated this stop token (kept as its last token).
    StopToken(u32),
    /// Its text came to contain `stop_strings[index]`.
    StopString(usize),
    /// It generated `max_new_tokens` tokens.
    MaxNewTokens,
    /// It filled the model's `max_positions` before reaching `max_new_tokens`.
    MaxPositions,
    /// The token sink asked to stop it.
    Cancelled,
}

/// One finished beam-search hypothesis.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hypothesis {
    /// Generated token ids, prompt excluded.
    pub tokens: Vec<u32>,
    /// Sum of the token log-probabilities (after the processors) divided by
    /// `tokens.len()^length_penalty`: transformers' `sequences_scores`.
    pub score: f32,
    /// Why it ended.
    pub finish_reason: FinishReason,
}

/// The result for one prompt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Generation {
    /// Generated token ids, prompt excluded; ends with the stop token when one ended the row.
    /// For beam search, the best hypothesis.
    pub tokens: Vec<u32>,
    /// Why the row (or the best hypothesis) ended.
    pub finish_reason: FinishReason,
    /// Beam search: the best hypothesis' score (see [`Hypothesis::score`]); `None` otherwise.
    pub score: Option<f32>,
    /// Beam search with `num_return_sequences > 1`: the next best hypotheses, best first (fewer
    /// when the search finished fewer). Empty otherwise.
    pub runner_ups: Vec<Hypothesis>,
    /// Prompt tokens removed by [`crate::PromptOverflow`] truncation (0 when none).
    pub prompt_tokens_dropped: usize,
}
