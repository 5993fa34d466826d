//! Tokenized generation examples, unpadded.

/// Which end of an over-long source is cut. The prompt template is never cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TruncationSide {
    /// Drop the end of the source, keeping its beginning (an article's lead,
    /// which is where news summaries come from). The default.
    #[default]
    Right,
    /// Drop the beginning of the source, keeping its end (left truncation:
    /// the most recent context).
    Left,
}

/// One causal-LM training sequence: `[bos] + prompt + target + eos`, where
/// only the target part (target tokens and eos) is scored.
///
/// Built only by the encoders or [`CausalEncoded::from_parts`], so the
/// prompt/target boundary always lies inside the sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CausalEncoded {
    input_ids: Vec<u32>,
    prompt_len: usize,
    source_truncated: bool,
    target_truncated: bool,
}

impl CausalEncoded {
    /// Joins a prompt (bos included, if any) and a target (eos included).
    pub fn from_parts(prompt: &[u32], target: &[u32]) -> Self {
        let mut input_ids = Vec::with_capacity(prompt.len() + target.len());
        input_ids.extend_from_slice(prompt);
        input_ids.extend_from_slice(target);
        CausalEncoded {
            input_ids,
            prompt_len: prompt.len(),
            source_truncated: false,
            target_truncated: false,
        }
    }

    pub(crate) fn with_flags(mut self, source_truncated: bool, target_truncated: bool) -> Self {
        self.source_truncated = source_truncated;
        self.target_truncated = target_truncated;
        self
    }

    /// All token ids.
    pub fn input_ids(&self) -> &[u32] {
        &self.input_ids
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }

    /// Tokens before the target: bos (if any) and the prompt.
    pub fn prompt_len(&self) -> usize {
        self.prompt_len
    }

    /// The prompt part of [`input_ids`](Self::input_ids).
    pub fn prompt(&self) -> &[u32] {
        &self.input_ids[..self.prompt_len]
    }

    /// The target part, eos included: what the loss covers.
    pub fn target(&self) -> &[u32] {
        &self.input_ids[self.prompt_len..]
    }

    /// First position whose label is scored. Equal to the prompt length,
    /// except that position 0 is never scored: a causal LM predicts token
    /// `t` from positions before `t`, and nothing precedes position 0.
    pub fn loss_start(&self) -> usize {
        self.prompt_len.max(1)
    }

    /// Number of scored tokens.
    pub fn loss_tokens(&self) -> usize {
        self.input_ids.len().saturating_sub(self.loss_start())
    }

    /// Whether source tokens were cut to fit the maximum length.
    pub fn source_truncated(&self) -> bool {
        self.source_truncated
    }

    /// Whether the target was cut to its own maximum length.
    pub fn target_truncated(&self) -> bool {
        self.target_truncated
    }
}

/// The input a model generates from: a causal LM's `[bos] + prompt`, or an
/// encoder-decoder's source ids with the tokenizer's special tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptEncoded {
    /// Token ids.
    pub input_ids: Vec<u32>,
    /// Whether source tokens were cut to fit.
    pub source_truncated: bool,
}

impl PromptEncoded {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }
}

/// One encoder-decoder training example.
///
/// `labels` are what the decoder must produce (`[prefix] + target + eos +
/// [suffix]`); `decoder_input_ids` are the labels shifted right by one with
/// the decoder start token in front (teacher forcing), so both have the same
/// length. Built only by the encoder or [`Seq2SeqEncoded::from_parts`], so the
/// two always agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seq2SeqEncoded {
    source_ids: Vec<u32>,
    labels: Vec<u32>,
    decoder_input_ids: Vec<u32>,
    source_truncated: bool,
    target_truncated: bool,
}

impl Seq2SeqEncoded {
    /// Builds an example from encoder ids and labels, deriving the decoder
    /// inputs as `[decoder_start_id] + labels[..len - 1]`.
    pub fn from_parts(source_ids: Vec<u32>, labels: Vec<u32>, decoder_start_id: u32) -> Self {
        let mut decoder_input_ids = Vec::with_capacity(labels.len());
        if !labels.is_empty() {
            decoder_input_ids.push(decoder_start_id);
            decoder_input_ids.extend_from_slice(&labels[..labels.len() - 1]);
        }
        Seq2SeqEncoded {
            source_ids,
            labels,
            decoder_input_ids,
            source_truncated: false,
            target_truncated: false,
        }
    }

    pub(crate) fn with_flags(mut self, source_truncated: bool, target_truncated: bool) -> Self {
        self.source_truncated = source_truncated;
        self.target_truncated = target_truncated;
        self
    }

    /// Encoder input ids, with the tokenizer's special tokens.
    pub fn source_ids(&self) -> &[u32] {
        &self.source_ids
    }

    /// Decoder targets; every one is scored.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// Decoder inputs: the labels shifted right behind the start token.
    pub fn decoder_input_ids(&self) -> &[u32] {
        &self.decoder_input_ids
    }

    /// `(source length, target length)`, for [`crate::plan_seq2seq_batches`].
    pub fn lengths(&self) -> (usize, usize) {
        (self.source_ids.len(), self.labels.len())
    }

    /// Whether source tokens were cut to fit.
    pub fn source_truncated(&self) -> bool {
        self.source_truncated
    }

    /// Whether the target was cut to its maximum length.
    pub fn target_truncated(&self) -> bool {
        self.target_truncated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causal_parts() {
        let e = CausalEncoded::from_parts(&[1, 5, 6], &[7, 2]);
        assert_eq!(e.input_ids(), [1, 5, 6, 7, 2]);
        assert_eq!((e.prompt(), e.target()), (&[1, 5, 6][..], &[7, 2][..]));
        assert_eq!((e.loss_start(), e.loss_tokens()), (3, 2));
        // Nothing predicts position 0.
        let e = CausalEncoded::from_parts(&[], &[7, 2]);
        assert_eq!((e.loss_start(), e.loss_tokens()), (1, 1));
    }

    #[test]
    fn seq2seq_shift_right() {
        let e = Seq2SeqEncoded::from_parts(vec![0, 9, 2], vec![11, 12, 2], 2);
        assert_eq!(e.decoder_input_ids(), [2, 11, 12]);
        assert_eq!(e.lengths(), (3, 3));
        let e = Seq2SeqEncoded::from_parts(vec![0], vec![], 2);
        assert!(e.decoder_input_ids().is_empty());
    }
}
