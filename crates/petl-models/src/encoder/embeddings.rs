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

    pub(super) fn forward(
        &self,
        input: &EncoderInput,
        c: &EncoderConfig,
        hooks: &dyn Hooks,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        let (batch, seq) = input.input_ids.dims2()?;
        let device = input.input_ids.device();
        let ids = input.input_ids.flatten_all()?;
        check_range(&ids, c.vocab_size, "token id")?;
        let types = input.type_ids.flatten_all()?;
        check_range(&types, c.type_vocab_size, "token type id")?;
        let positions = match c.family {
            Family::Bert => {
                let row: Vec<u32> = (0..seq as u32).collect();
                Tensor::from_vec(row.repeat(batch), batch * seq, device)?
            }
            Family::Roberta => roberta_positions(&input.input_ids, c.pad_token_id)?,
        };
        let word = self.word.resolve(hooks)?.index_select(&ids, 0)?;
        let pos = self.position.resolve(hooks)?.index_select(&positions, 0)?;
        let typ = self.token_type.resolve(hooks)?.index_select(&types, 0)?;
        let sum = ((word + pos)? + typ)?.reshape((batch, seq, c.hidden_size))?;
        let normed = self.norm.forward(&sum, hooks)?;
        ctx.dropout(&self.dropout, &normed)
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
