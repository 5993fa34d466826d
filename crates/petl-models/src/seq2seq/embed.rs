//! Token and position embeddings of one stack: BART's learned positions and
//! `layernorm_embedding`, or Marian's fixed sinusoidal positions without a LayerNorm.

use super::config::Seq2SeqConfig;
use crate::base::{BaseLayerNorm, BaseParam, Loader};
use crate::{ForwardCtx, Hooks, ModelError, Result};
use candle_core::{DType, Device, Tensor};
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

/// Where a stack's position vectors come from.
#[derive(Debug, Clone)]
enum Positions {
    /// BART / mBART: a learned table whose row `p + 2` embeds position `p`.
    Learned(BaseParam),
    /// Marian: a fixed table `[max_position_embeddings, d]`, row `p` for position `p`. Not a
    /// parameter (transformers freezes it and leaves it out of saved checkpoints), so no hook
    /// sees it.
    Sinusoidal(Tensor),
}

impl Positions {
    fn load(loader: &mut Loader<'_>, c: &Seq2SeqConfig, stack: &str, device: &Device) -> Result<Self> {
        let (n, d) = (c.max_position_embeddings, c.d_model);
        let name = format!("{stack}.embed_positions.weight");
        if !c.family.sinusoidal_positions() {
            return Ok(Self::Learned(loader.param(&name, &[n + POSITION_OFFSET, d])?));
        }
        // transformers loads a stored table when a checkpoint has one (older conversions do)
        // and computes it otherwise.
        Ok(Self::Sinusoidal(match loader.buffer(&name, &[n, d])? {
            Some(table) => table,
            None => sinusoidal_table(n, d, device)?,
        }))
    }

    /// The vectors of positions `first..first + seq`, `[batch, seq, d]`.
    fn lookup(
        &self,
        first: usize,
        (batch, seq, d): (usize, usize, usize),
        hooks: &dyn Hooks,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        let spread = |rows: Tensor| -> Result<Tensor> {
            Ok(rows.unsqueeze(0)?.broadcast_as((batch, seq, d))?.contiguous()?)
        };
        match self {
            Self::Learned(param) => {
                let rows: Vec<u32> = (first..first + seq)
                    .map(|p| (p + POSITION_OFFSET) as u32)
                    .collect();
                let table = param.resolve(hooks, ctx)?;
                let rows = Tensor::from_vec(rows, seq, table.device())?;
                let pos = spread(table.index_select(&rows, 0)?)?;
                let ids = rows.unsqueeze(0)?.broadcast_as((batch, seq))?.contiguous()?;
                hooks.base_lookup(param.name(), &ids, pos, ctx)
            }
            Self::Sinusoidal(table) => spread(table.narrow(0, first, seq)?),
        }
    }
}

/// `MarianSinusoidalPositionalEmbedding.create_weight`: row `p` holds `sin(p·ω_k)` in its first
/// ⌈d/2⌉ columns and `cos(p·ω_k)` in the rest, `ω_k = 10000^(-2k/d)` (not interleaved),
/// computed in f64 as numpy does and rounded to f32.
fn sinusoidal_table(positions: usize, d: usize, device: &Device) -> Result<Tensor> {
    let sines = d.div_ceil(2);
    let mut data = Vec::with_capacity(positions * d);
    for p in 0..positions {
        let angle = |k: usize| p as f64 / 10000f64.powf((2 * k) as f64 / d as f64);
        data.extend((0..sines).map(|k| angle(k).sin() as f32));
        data.extend((0..d - sines).map(|k| angle(k).cos() as f32));
    }
    Ok(Tensor::from_vec(data, (positions, d), device)?)
}

/// One stack's positions, `layernorm_embedding` (BART / mBART) and dropout.
#[derive(Debug, Clone)]
pub(super) struct StackEmbeddings {
    positions: Positions,
    norm: Option<BaseLayerNorm>,
    dropout: Dropout,
}

impl StackEmbeddings {
    pub(super) fn load(
        loader: &mut Loader<'_>,
        c: &Seq2SeqConfig,
        stack: &str,
        device: &Device,
    ) -> Result<Self> {
        let norm = if c.family.embedding_norm() {
            Some(loader.layer_norm(
                &format!("{stack}.layernorm_embedding"),
                c.d_model,
                c.layer_norm_eps,
            )?)
        } else {
            None
        };
        Ok(Self {
            positions: Positions::load(loader, c, stack, device)?,
            norm,
            dropout: Dropout::new(c.dropout),
        })
    }

    /// `LN(words + positions)` (Marian: `words + positions`) for `words` `[batch, seq, d]` at
    /// positions `first..first + seq`.
    pub(super) fn forward(
        &self,
        words: &Tensor,
        first: usize,
        c: &Seq2SeqConfig,
        what: &str,
        hooks: &dyn Hooks,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        let dims = words.dims3()?;
        let seq = dims.1;
        if first + seq > c.max_position_embeddings {
            return Err(ModelError::BadInput(format!(
                "{what} positions {first}..{} exceed the model's {} positions",
                first + seq,
                c.max_position_embeddings
            )));
        }
        let pos = self.positions.lookup(first, dims, hooks, ctx)?;
        let summed = words.broadcast_add(&pos)?;
        let normed = match &self.norm {
            Some(norm) => norm.forward(&summed, hooks, ctx)?,
            None => summed,
        };
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
