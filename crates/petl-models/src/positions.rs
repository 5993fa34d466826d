//! Picking the hidden states of a few positions out of a batch: the LM head runs only where a
//! loss is scored, so prompts and padding never reach the vocabulary projection.

use crate::{ModelError, Result};
use candle_core::Tensor;

/// The rows of `hidden` `[batch, seq, d]` at `positions` (`(row, position)` pairs), in order, as
/// `[positions.len(), d]`.
pub(crate) fn gather_positions(hidden: &Tensor, positions: &[(usize, usize)]) -> Result<Tensor> {
    let (batch, seq, d) = hidden.dims3()?;
    if positions.is_empty() {
        return Err(ModelError::BadInput(
            "logits_at needs at least one position".into(),
        ));
    }
    let mut index = Vec::with_capacity(positions.len());
    for &(row, pos) in positions {
        if row >= batch || pos >= seq {
            return Err(ModelError::BadInput(format!(
                "position ({row}, {pos}) is outside the hidden states [{batch}, {seq}]"
            )));
        }
        index.push((row * seq + pos) as u32);
    }
    let index = Tensor::from_vec(index, positions.len(), hidden.device())?;
    Ok(hidden.reshape((batch * seq, d))?.index_select(&index, 0)?)
}
