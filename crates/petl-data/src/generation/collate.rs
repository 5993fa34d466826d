//! Padding generation examples into row-major host buffers.

use crate::error::{DataError, Result};
use crate::generation::encoded::{CausalEncoded, PromptEncoded, Seq2SeqEncoded};

/// Label value of positions the loss ignores (prompt, padding), as in
/// PyTorch's `cross_entropy(ignore_index=-100)`.
pub const IGNORE_INDEX: i64 = -100;

/// A padded causal-LM training batch, row-major `[batch_size, seq_len]`,
/// right-padded.
///
/// `labels` follow the Hugging Face convention: aligned with `input_ids`
/// (not shifted), [`IGNORE_INDEX`] on prompt and padding positions. The loss
/// compares the logits at position `t - 1` with `labels[t]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CausalBatch {
    /// Token ids, padded with the pad id.
    pub input_ids: Vec<u32>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<u32>,
    /// The input id where scored, else [`IGNORE_INDEX`].
    pub labels: Vec<i64>,
    /// Number of rows.
    pub batch_size: usize,
    /// Length of the longest row.
    pub seq_len: usize,
    /// Number of scored labels (target tokens and eos); divide the summed
    /// loss by the total over accumulated batches for a per-token mean.
    pub target_tokens: usize,
}

/// Pads causal-LM examples to the longest one (on the right) and stacks them.
///
/// # Errors
///
/// [`DataError::EmptyBatch`] for no items.
pub fn collate_causal(items: &[&CausalEncoded], pad_id: u32) -> Result<CausalBatch> {
    if items.is_empty() {
        return Err(DataError::EmptyBatch);
    }
    let batch_size = items.len();
    let seq_len = items.iter().map(|it| it.len()).max().unwrap_or(0);
    let mut input_ids = vec![pad_id; batch_size * seq_len];
    let mut attention_mask = vec![0; batch_size * seq_len];
    let mut labels = vec![IGNORE_INDEX; batch_size * seq_len];
    let mut target_tokens = 0;
    for (row, it) in items.iter().enumerate() {
        let start = row * seq_len;
        let ids = it.input_ids();
        input_ids[start..start + ids.len()].copy_from_slice(ids);
        attention_mask[start..start + ids.len()].fill(1);
        for (t, &id) in ids.iter().enumerate().skip(it.loss_start()) {
            labels[start + t] = i64::from(id);
        }
        target_tokens += it.loss_tokens();
    }
    Ok(CausalBatch {
        input_ids,
        attention_mask,
        labels,
        batch_size,
        seq_len,
        target_tokens,
    })
}

/// A padded encoder-decoder training batch: encoder tensors
/// `[batch_size, source_len]`, decoder tensors `[batch_size, target_len]`,
/// row-major and right-padded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seq2SeqBatch {
    /// Encoder token ids, padded with the pad id.
    pub input_ids: Vec<u32>,
    /// Encoder mask: 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<u32>,
    /// Decoder inputs (labels shifted right), padded with the pad id.
    pub decoder_input_ids: Vec<u32>,
    /// Decoder mask: 1 for real tokens, 0 for padding.
    pub decoder_attention_mask: Vec<u32>,
    /// Decoder targets, [`IGNORE_INDEX`] on padding. Aligned with
    /// `decoder_input_ids`: the logits at position `t` are scored against
    /// `labels[t]` (no further shift).
    pub labels: Vec<i64>,
    /// Number of rows.
    pub batch_size: usize,
    /// Length of the longest source.
    pub source_len: usize,
    /// Length of the longest label sequence.
    pub target_len: usize,
    /// Number of scored labels.
    pub target_tokens: usize,
}

/// Pads encoder-decoder examples and stacks them.
///
/// # Errors
///
/// [`DataError::EmptyBatch`] for no items.
pub fn collate_seq2seq(items: &[&Seq2SeqEncoded], pad_id: u32) -> Result<Seq2SeqBatch> {
    if items.is_empty() {
        return Err(DataError::EmptyBatch);
    }
    let batch_size = items.len();
    let source_len = items.iter().map(|it| it.source_ids().len()).max().unwrap_or(0);
    let target_len = items.iter().map(|it| it.labels().len()).max().unwrap_or(0);
    let mut input_ids = vec![pad_id; batch_size * source_len];
    let mut attention_mask = vec![0; batch_size * source_len];
    let mut decoder_input_ids = vec![pad_id; batch_size * target_len];
    let mut decoder_attention_mask = vec![0; batch_size * target_len];
    let mut labels = vec![IGNORE_INDEX; batch_size * target_len];
    let mut target_tokens = 0;
    for (row, it) in items.iter().enumerate() {
        let (s, n) = (row * source_len, it.source_ids().len());
        input_ids[s..s + n].copy_from_slice(it.source_ids());
        attention_mask[s..s + n].fill(1);
        let (t, m) = (row * target_len, it.labels().len());
        decoder_input_ids[t..t + m].copy_from_slice(it.decoder_input_ids());
        decoder_attention_mask[t..t + m].fill(1);
        for (dst, &id) in labels[t..t + m].iter_mut().zip(it.labels()) {
            *dst = i64::from(id);
        }
        target_tokens += m;
    }
    Ok(Seq2SeqBatch {
        input_ids,
        attention_mask,
        decoder_input_ids,
        decoder_attention_mask,
        labels,
        batch_size,
        source_len,
        target_len,
        target_tokens,
    })
}

/// Where padding goes in a generation batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PadSide {
    /// After the tokens (encoders; decoders that track per-row lengths).
    Right,
    /// Before the tokens, so every row's next token is written at the same
    /// position (batched decoder-only generation).
    Left,
}

/// A padded batch of prompts for generation, row-major `[batch_size, seq_len]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptBatch {
    /// Token ids, padded with the pad id on `side`.
    pub input_ids: Vec<u32>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<u32>,
    /// Number of rows.
    pub batch_size: usize,
    /// Length of the longest prompt.
    pub seq_len: usize,
    /// Each row's number of real tokens.
    pub lengths: Vec<usize>,
    /// Where the padding is.
    pub side: PadSide,
}

/// Pads prompts (or encoder sources) for generation.
///
/// # Errors
///
/// [`DataError::EmptyBatch`] for no items.
pub fn collate_prompts(items: &[&PromptEncoded], pad_id: u32, side: PadSide) -> Result<PromptBatch> {
    if items.is_empty() {
        return Err(DataError::EmptyBatch);
    }
    let batch_size = items.len();
    let seq_len = items.iter().map(|it| it.len()).max().unwrap_or(0);
    let mut input_ids = vec![pad_id; batch_size * seq_len];
    let mut attention_mask = vec![0; batch_size * seq_len];
    for (row, it) in items.iter().enumerate() {
        let n = it.len();
        let start = match side {
            PadSide::Right => row * seq_len,
            PadSide::Left => row * seq_len + seq_len - n,
        };
        input_ids[start..start + n].copy_from_slice(&it.input_ids);
        attention_mask[start..start + n].fill(1);
    }
    Ok(PromptBatch {
        input_ids,
        attention_mask,
        batch_size,
        seq_len,
        lengths: items.iter().map(|it| it.len()).collect(),
        side,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causal_masks_prompt_and_padding() {
        let a = CausalEncoded::from_parts(&[1, 5, 6], &[7, 2]);
        let b = CausalEncoded::from_parts(&[1, 8], &[9, 9, 9, 2]);
        let batch = collate_causal(&[&a, &b], 0).unwrap();
        assert_eq!((batch.batch_size, batch.seq_len, batch.target_tokens), (2, 6, 6));
        #[rustfmt::skip]
        assert_eq!(batch.input_ids, vec![
            1, 5, 6, 7, 2, 0,
            1, 8, 9, 9, 9, 2,
        ]);
        #[rustfmt::skip]
        assert_eq!(batch.attention_mask, vec![
            1, 1, 1, 1, 1, 0,
            1, 1, 1, 1, 1, 1,
        ]);
        #[rustfmt::skip]
        assert_eq!(batch.labels, vec![
            -100, -100, -100, 7, 2, -100,
            -100, -100, 9, 9, 9, 2,
        ]);
        assert!(matches!(collate_causal(&[], 0), Err(DataError::EmptyBatch)));
    }

    #[test]
    fn seq2seq_pads_both_sides_independently() {
        let a = Seq2SeqEncoded::from_parts(vec![0, 4, 2], vec![5, 2], 2);
        let b = Seq2SeqEncoded::from_parts(vec![0, 2], vec![6, 7, 8, 2], 2);
        let batch = collate_seq2seq(&[&a, &b], 1).unwrap();
        assert_eq!(
            (batch.source_len, batch.target_len, batch.target_tokens),
            (3, 4, 6)
        );
        assert_eq!(batch.input_ids, vec![0, 4, 2, 0, 2, 1]);
        assert_eq!(batch.attention_mask, vec![1, 1, 1, 1, 1, 0]);
        assert_eq!(batch.decoder_input_ids, vec![2, 5, 1, 1, 2, 6, 7, 8]);
        assert_eq!(batch.decoder_attention_mask, vec![1, 1, 0, 0, 1, 1, 1, 1]);
        assert_eq!(batch.labels, vec![5, 2, -100, -100, 6, 7, 8, 2]);
        assert!(matches!(collate_seq2seq(&[], 0), Err(DataError::EmptyBatch)));
    }

    #[test]
    fn prompts_pad_left_or_right() {
        let p = |ids: &[u32]| PromptEncoded {
            input_ids: ids.to_vec(),
            source_truncated: false,
        };
        let (a, b) = (p(&[1, 2, 3]), p(&[4]));
        let left = collate_prompts(&[&a, &b], 0, PadSide::Left).unwrap();
        assert_eq!(left.input_ids, vec![1, 2, 3, 0, 0, 4]);
        assert_eq!(left.attention_mask, vec![1, 1, 1, 0, 0, 1]);
        assert_eq!(left.lengths, vec![3, 1]);
        let right = collate_prompts(&[&a, &b], 0, PadSide::Right).unwrap();
        assert_eq!(right.input_ids, vec![1, 2, 3, 4, 0, 0]);
        assert_eq!(right.attention_mask, vec![1, 1, 1, 1, 0, 0]);
        assert!(matches!(
            collate_prompts(&[], 0, PadSide::Left),
            Err(DataError::EmptyBatch)
        ));
    }
}
