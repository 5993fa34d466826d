use crate::base::{BaseLayerNorm, BaseParam, Loader};
use crate::config::{EncoderConfig, Family};
use crate::{EncoderInput, ForwardCtx, Hooks, ModelError, Result};
use candle_core::Tensor;
use petl_ops::Dropout;

/// Word + position + token-type embeddings, LayerNorm, dropout.
#[derive(Debug, Clone)]
pub(super) struct Embeddings {
    word: BaseParam,
    position: BaseParam,
    token_type: BaseParam,
    norm: BaseLayerNorm,
    dropout: Dropout,
}

impl Embeddings {
    pub(super) fn load(loader: &mut Loader<'_>, c: &EncoderConfig) -> Result<Self> {
        let d = c.hidden_size;
        Ok(Self {
            word: loader.param("embeddings.word_embeddings.weight", &[c.vocab_size, d])?,
            position: loader.param(
                "embeddings.position_embeddings.weight",
                &[c.max_position_embeddings, d],
            )?,
            token_type: loader.param("embeddings.token_type_embeddings.weight", &[c.type_vocab_size, d])?,
            norm: loader.layer_norm("embeddings.LayerNorm", d, c.layer_norm_eps)?,
            dropout: Dropout::new(c.hidden_dropout),
        })
    }

    /// The embedded sequence and its attention mask, both longer than the input when
    /// [`Hooks::embeddings`] prepends rows (prompt tuning).
    pub(super) fn forward(
        &self,
        input: &EncoderInput,
        c: &EncoderConfig,
        hooks: &dyn Hooks,
        ctx: &mut ForwardCtx,
    ) -> Result<(Tensor, Tensor)> {
        let (batch, seq) = input.input_ids.dims2()?;
        let ids = input.input_ids.flatten_all()?;
        check_range(&ids, c.vocab_size, "token id")?;
        check_range(&input.type_ids.flatten_all()?, c.type_vocab_size, "token type id")?;
        let words =
            self.word
                .resolve(hooks, ctx)?
                .index_select(&ids, 0)?
                .reshape((batch, seq, c.hidden_size))?;
        let words = hooks.base_lookup(self.word.name(), &input.input_ids, words, ctx)?;
        let (words, mask) = hooks.embeddings(words, input.attention_mask.clone(), ctx)?;
        let total = words.dim(1)?;
        let added = total.checked_sub(seq).ok_or_else(|| {
            ModelError::BadInput("an embeddings hook may only prepend positions, not remove them".into())
        })?;
        let offset = hooks.position_offset();
        if total + offset > c.max_input_len() {
            return Err(ModelError::BadInput(format!(
                "sequence length {seq} plus {} prompt/prefix positions exceeds the model's {} positions",
                added + offset,
                c.max_input_len()
            )));
        }
        let positions = positions(input, c, added, hooks.position_offset())?;
        let types = if added == 0 {
            input.type_ids.clone()
        } else {
            let zeros = Tensor::zeros((batch, added), input.type_ids.dtype(), input.type_ids.device())?;
            Tensor::cat(&[&zeros, &input.type_ids], 1)?
        };
        let shape = (batch, total, c.hidden_size);
        let pos = self
            .position
            .resolve(hooks, ctx)?
            .index_select(&positions, 0)?
            .reshape(shape)?;
        let pos = hooks.base_lookup(
            self.position.name(),
            &positions.reshape((batch, total))?,
            pos,
            ctx,
        )?;
        let typ = self
            .token_type
            .resolve(hooks, ctx)?
            .index_select(&types.flatten_all()?, 0)?
            .reshape(shape)?;
        let typ = hooks.base_lookup(self.token_type.name(), &types, typ, ctx)?;
        let sum = (words + (pos + typ)?)?;
        let normed = self.norm.forward(&sum, hooks, ctx)?;
        Ok((ctx.dropout(&self.dropout, &normed)?, mask))
    }
}

/// Position ids `[batch · (added + seq)]` for `added` prepended rows followed by the input, all
/// shifted by `offset`. Prepended rows take the first positions and shift the input's along, as
/// when Hugging Face embeds `inputs_embeds` that begin with a prompt.
fn positions(input: &EncoderInput, c: &EncoderConfig, added: usize, offset: usize) -> Result<Tensor> {
    let (batch, seq) = input.input_ids.dims2()?;
    let device = input.input_ids.device();
    let total = added + seq;
    match c.family {
        Family::Bert => {
            let start = offset as u32;
            let row: Vec<u32> = (start..start + total as u32).collect();
            Ok(Tensor::from_vec(row.repeat(batch), batch * total, device)?)
        }
        Family::Roberta => {
            let pad = c.pad_token_id;
            let shift = (added + offset) as u32;
            let real = roberta_positions(&input.input_ids, pad)?.to_vec1::<u32>()?;
            let mut out = Vec::with_capacity(batch * total);
            for row in real.chunks(seq.max(1)) {
                out.extend((1..=added as u32).map(|i| pad + offset as u32 + i));
                out.extend(row.iter().map(|&p| if p == pad { pad } else { p + shift }));
            }
            Ok(Tensor::from_vec(out, batch * total, device)?)
        }
    }
}

/// RoBERTa numbers real tokens from `pad + 1` and gives padding the padding index, as
/// `create_position_ids_from_input_ids` in transformers does.
fn roberta_positions(ids: &Tensor, pad: u32) -> Result<Tensor> {
    let rows = ids.to_vec2::<u32>()?;
    let (batch, seq) = (rows.len(), rows.first().map_or(0, Vec::len));
    let mut out = Vec::with_capacity(batch * seq);
    for row in rows {
        let mut count = 0u32;
        for id in row {
            if id == pad {
                out.push(pad);
            } else {
                count += 1;
                out.push(pad + count);
            }
        }
    }
    Ok(Tensor::from_vec(out, batch * seq, ids.device())?)
}

/// An out-of-range id would make `index_select` read past the table; reject it with the value.
fn check_range(ids: &Tensor, limit: usize, what: &str) -> Result<()> {
    let max = ids.max(0)?.to_scalar::<u32>()?;
    if max as usize >= limit {
        return Err(ModelError::BadInput(format!(
            "{what} {max} is out of range (size {limit})"
        )));
    }
    Ok(())
}
