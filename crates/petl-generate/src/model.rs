//! The interface a generation model implements: prefill, one step, and cache row selection.

/// One row of `vocab_size` next-token logits per cache row, in cache order.
pub type LogitRows = Vec<Vec<f32>>;

/// How a model's prompt relates to the sequence it decodes.
///
/// The decoded sequence (what Hugging Face calls `input_ids` inside `generate`) is what the
/// repetition penalty and the no-repeat-n-gram ban look at, and what `forced_bos_token_id` and
/// lengths are counted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SequenceLayout {
    /// The prompt is the start of the decoded sequence (Llama and other decoder-only models):
    /// `max_positions` bounds prompt plus generated tokens.
    DecoderOnly,
    /// The prompt goes to an encoder (BART, mBART); the decoder starts from `decoder_start`
    /// (e.g. BART's `[decoder_start_token_id]`), which [`StepModel::prefill`] feeds itself.
    /// `max_positions` bounds `decoder_start` plus generated tokens.
    EncoderDecoder {
        /// The decoder's first tokens; never empty.
        decoder_start: Vec<u32>,
        /// Longest encoder input, if bounded.
        max_source_positions: Option<usize>,
    },
}

/// A model that decodes one token at a time over a batch of rows with a key/value cache.
///
/// Logits cross this trait as host rows of `vocab_size` floats, so decoding stays independent of
/// the tensor library. Rows are identified by their position in the cache: [`prefill`] creates
/// one row per prompt, in order; [`step`] takes one token per current row; [`select_rows`]
/// rebuilds the row list (beam reordering and expansion, or dropping finished rows).
///
/// [`prefill`]: StepModel::prefill
/// [`step`]: StepModel::step
/// [`select_rows`]: StepModel::select_rows
pub trait StepModel {
    /// The model's per-row state (key/value cache, encoder output, …).
    type Cache;
    /// Why a forward pass failed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Number of logits per row.
    fn vocab_size(&self) -> usize;

    /// Longest decoded sequence (prompt + generated for decoder-only models, decoder start +
    /// generated for encoder-decoder models) the model can attend over, if bounded.
    fn max_positions(&self) -> Option<usize>;

    /// Where the prompt goes; decoder-only unless overridden.
    fn layout(&self) -> SequenceLayout {
        SequenceLayout::DecoderOnly
    }

    /// Runs each row's prompt (unpadded; rows may differ in length, none is empty) and returns
    /// the cache with one row per prompt and each row's next-token logits (`vocab_size` floats).
    fn prefill(&self, prompts: &[&[u32]]) -> Result<(Self::Cache, LogitRows), Self::Error>;

    /// Appends `tokens[i]` to cache row `i` (one token per row) and returns each row's
    /// next-token logits.
    fn step(&self, cache: &mut Self::Cache, tokens: &[u32]) -> Result<LogitRows, Self::Error>;

    /// Rebuilds the cache so that its row `j` is the former row `rows[j]`. Rows may repeat
    /// (beam expansion) or be left out (finished rows); every index is below the current row count.
    fn select_rows(&self, cache: &mut Self::Cache, rows: &[usize]) -> Result<(), Self::Error>;
}
