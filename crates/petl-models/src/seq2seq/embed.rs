//! Token and learned position embeddings of one stack, with BART's `layernorm_embedding`.

use super::config::Seq2SeqConfig;
use crate::base::{BaseLayerNorm, BaseParam, Loader};
use crate::{ForwardCtx, Hooks, ModelError, Result};
use candle_core::{DType, Tensor};
use petl_ops::Dropout;

/// BART's position tables start their numbering at row 2 (a fairseq padding-index artefact
/// transformers keeps as `BartLearnedPositionalEmbedding.offset`).
const POSITION_OFFSET: usize = 2;

/// The shared token table's lookup, scaled: both stacks read the same base parameter.
pub(super) fn lookup_tokens(
    table: &BaseParam,
    ids: &Tensor,
    c: &Seq2SeqConfig,
    hooks: &dyn Hooks,
    ctx: &mut ForwardCtx,
) -> Result<Tensor> {
    let (batch, seq) = ids.dims2()?;
    check_ids(ids, c.vocab_size)?;
    let words = table
        .resolve(hooks, ctx)?
        .index_select(&ids.flatten_all()?, 0)?
        .reshape((batch, seq, c.d_model))?;
    // The correction is to the table, so it is scaled with the rows it corrects.
    let words = hooks.base_lookup(table.name(), ids, words, ctx)?;
    let scale = c.embed_scale();
    Ok(if scale == 1.0 { words } else { (words * scale)? })
}

/// One stack's positions, `layernorm_embedding` and dropout.
#[derive(Debug, Clone)]
pub(super) struct StackEmbeddings {
    positions: BaseParam,
    norm: BaseLayerNorm,
    dropout: Dropout,
}

impl StackEmbeddings {
    pub(super) fn load(loader: &mut Loader<'_>, c: &Seq2SeqConfig, stack: &str) -> Result<Self> {
        let d = c.d_model;
        Ok(Self {
            positions: loader.param(
                &format!("{stack}.embed_positions.weight"),
                &[c.max_position_embeddings + POSITION_OFFSET, d],
            )?,
            norm: loader.layer_norm(&format!("{stack}.layernorm_embedding"), d, c.layer_norm_eps)?,
            dropout: Dropout::new(c.dropout),
        })
    }

    /// `LN(words + positions)` for `words` `[batch, seq, d]` at positions `first..first + seq`.
    pub(super) fn forward(
        &self,
        words: &Tensor,
        first: usize,
        c: &Seq2SeqConfig,
        what: &str,
        hooks: &dyn Hooks,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        let (batch, seq, d) = words.dims3()?;
        if first + seq > c.max_position_embeddings {
            return Err(ModelError::BadInput(format!(
                "{what} positions {first}..{} exceed the model's {} positions",
                first + seq,
                c.max_position_embeddings
            )));
        }
        let rows: Vec<u32> = (first..first + seq)
            .map(|p| (p + POSITION_OFFSET) as u32)
            .collect();
        let rows = Tensor::from_vec(rows, seq, words.device())?;
        let pos = self
            .positions
            .resolve(hooks, ctx)?
            .index_select(&rows, 0)?
            .unsqueeze(0)?
            .broadcast_as((batch, seq, d))?
            .contiguous()?;
        let ids = rows.unsqueeze(0)?.broadcast_as((batch, seq))?.contiguous()?;
        let pos = hooks.base_lookup(self.positions.name(), &ids, pos, ctx)?;
        let normed = self.norm.forward(&words.broadcast_add(&pos)?, hooks, ctx)?;
        ctx.dropout(&self.dropout, &normed)
    }
}

/// An out-of-range id would make `index_select` read past the table; reject it with the value.
pub(super) fn check_ids(ids: &Tensor, vocab: usize) -> Result<()> {
    if ids.dtype() != DType::U32 {
        return Err(ModelError::BadInput(format!(
            "token ids must be u32, got {:?}",
            ids.dtype()
        )));
    }
    let max = ids.flatten_all()?.max(0)?.to_scalar::<u32>()?;
    if max as usize >= vocab {
        return Err(ModelError::BadInput(format!(
            "token id {max} is out of range (vocab_size {vocab})"
        )));
    }
    Ok(())
}
