use super::attention::{Kv, SelfAttention};
use super::config::DecoderConfig;
use super::pass::Pass;
use crate::base::{BaseLinear, BaseRmsNorm, Loader};
use crate::{ForwardCtx, Hooks, Proj, Result, Sublayer};
use candle_core::Tensor;

/// One pre-norm block (`LlamaDecoderLayer`): `h = x + Attn(RMSNorm(x))`, then
/// `h + MLP(RMSNorm(h))` with the SwiGLU MLP `down(silu(gate·x) ⊙ up·x)`.
#[derive(Debug, Clone)]
pub(super) struct Block {
    attention_norm: BaseRmsNorm,
    attention: SelfAttention,
    ffn_norm: BaseRmsNorm,
    gate: BaseLinear,
    up: BaseLinear,
    down: BaseLinear,
}

impl Block {
    pub(super) fn load(loader: &mut Loader<'_>, c: &DecoderConfig, index: usize) -> Result<Self> {
        let p = format!("model.layers.{index}");
        let (d, m, eps) = (c.hidden_size, c.intermediate_size, c.rms_norm_eps);
        Ok(Self {
            attention_norm: loader.rms_norm(&format!("{p}.input_layernorm"), d, eps)?,
            attention: SelfAttention::load(loader, c, &format!("{p}.self_attn"))?,
            ffn_norm: loader.rms_norm(&format!("{p}.post_attention_layernorm"), d, eps)?,
            gate: loader.linear_with_bias(&format!("{p}.mlp.gate_proj"), m, d, c.mlp_bias)?,
            up: loader.linear_with_bias(&format!("{p}.mlp.up_proj"), m, d, c.mlp_bias)?,
            down: loader.linear_with_bias(&format!("{p}.mlp.down_proj"), d, m, c.mlp_bias)?,
        })
    }

    /// The hooks see each sub-layer as in a post-LN encoder: `input` and `output` bracket the
    /// sub-layer proper (after its norm, before the residual add).
    pub(super) fn forward(
        &self,
        layer: usize,
        x: &Tensor,
        pass: &Pass,
        kv: Kv<'_>,
        hooks: &dyn Hooks,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        let a = self.attention_norm.forward(x, hooks, ctx)?;
        let a = hooks.input(layer, Sublayer::Attention, a, ctx)?;
        let h = self.attention.forward(layer, &a, pass, kv, hooks, ctx)?;
        let h = hooks.output(layer, Sublayer::Attention, &a, h, ctx)?;
        let h = (x + h)?;

        let f = self.ffn_norm.forward(&h, hooks, ctx)?;
        let f = hooks.input(layer, Sublayer::Ffn, f, ctx)?;
        let touched = [Proj::FfnGate, Proj::FfnUp, Proj::FfnDown]
            .into_iter()
            .any(|p| hooks.changes_linear(layer, p));
        let down = if touched {
            let gate = self.gate.project(layer, Proj::FfnGate, &f, hooks, ctx)?;
            let up = self.up.project(layer, Proj::FfnUp, &f, hooks, ctx)?;
            let inner = petl_ops::swiglu(&gate, &up)?;
            self.down.project(layer, Proj::FfnDown, &inner, hooks, ctx)?
        } else {
            petl_ops::gated_feed_forward(&f, self.gate.base(), self.up.base(), self.down.base())?
        };
        let down = hooks.output(layer, Sublayer::Ffn, &f, down, ctx)?;
        Ok((h + down)?)
    }
}
