use super::attention::SelfAttention;
use crate::base::{BaseLayerNorm, BaseLinear, Loader};
use crate::config::EncoderConfig;
use crate::{ForwardCtx, Hooks, Proj, Result, Sublayer};
use candle_core::Tensor;
use petl_ops::{Activation, Dropout};

/// One post-LN transformer block: `LN(x + Attn(x))`, then `LN(a + FFN(a))`.
#[derive(Debug, Clone)]
pub(super) struct Block {
    attention: SelfAttention,
    attention_norm: BaseLayerNorm,
    ffn_up: BaseLinear,
    ffn_down: BaseLinear,
    ffn_norm: BaseLayerNorm,
    activation: Activation,
    dropout: Dropout,
}

impl Block {
    pub(super) fn load(loader: &mut Loader<'_>, c: &EncoderConfig, index: usize) -> Result<Self> {
        let p = format!("encoder.layer.{index}");
        let (d, m) = (c.hidden_size, c.intermediate_size);
        Ok(Self {
            attention: SelfAttention::load(loader, c, &format!("{p}.attention"))?,
            attention_norm: loader.layer_norm(
                &format!("{p}.attention.output.LayerNorm"),
                d,
                c.layer_norm_eps,
            )?,
            ffn_up: loader.linear(&format!("{p}.intermediate.dense"), m, d)?,
            ffn_down: loader.linear(&format!("{p}.output.dense"), d, m)?,
            ffn_norm: loader.layer_norm(&format!("{p}.output.LayerNorm"), d, c.layer_norm_eps)?,
            activation: c.activation,
            dropout: Dropout::new(c.hidden_dropout),
        })
    }

    pub(super) fn forward(
        &self,
        layer: usize,
        x: &Tensor,
        bias: &Tensor,
        hooks: &dyn Hooks,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        let x = hooks.input(layer, Sublayer::Attention, x.clone(), ctx)?;
        let h = self.attention.forward(layer, &x, bias, hooks, ctx)?;
        let h = ctx.dropout(&self.dropout, &h)?;
        let h = hooks.output(layer, Sublayer::Attention, &x, h, ctx)?;
        let a = self.attention_norm.forward(&(x + h)?, hooks, ctx)?;

        let a = hooks.input(layer, Sublayer::Ffn, a, ctx)?;
        let down = if hooks.changes_linear(layer, Proj::FfnUp) || hooks.changes_linear(layer, Proj::FfnDown) {
            let up = self.ffn_up.project(layer, Proj::FfnUp, &a, hooks, ctx)?;
            let act = self.activation.forward(&up)?;
            self.ffn_down.project(layer, Proj::FfnDown, &act, hooks, ctx)?
        } else {
            petl_ops::feed_forward(&a, self.ffn_up.base(), self.activation, self.ffn_down.base())?
        };
        let f = ctx.dropout(&self.dropout, &down)?;
        let f = hooks.output(layer, Sublayer::Ffn, &a, f, ctx)?;
        self.ffn_norm.forward(&(a + f)?, hooks, ctx)
    }
}
