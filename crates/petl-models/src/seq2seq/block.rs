//! Encoder and decoder blocks, post-LN (BART) or pre-LN (mBART).
//!
//! Every sub-layer runs through [`Residual::run`], so both placements call the hooks the same
//! way: `input` on what the sub-layer reads, `output` on what it adds to the residual stream
//! (given what it read). Post-LN: `LN(x' + f(x'))` with `x' = input(x)`. Pre-LN:
//! `x + f(n')` with `n' = input(LN(x))` — the normalised tensor is the sub-layer's input, as in
//! He et al.'s mBART code, where parallel adapters read the LayerNorm's output.

use super::attention::{Attention, Memory, SelfKeys};
use super::config::Seq2SeqConfig;
use crate::base::{BaseLayerNorm, BaseLinear, Loader};
use crate::{ForwardCtx, Hooks, Proj, Result, Sublayer};
use candle_core::Tensor;
use petl_ops::{Activation, Dropout};

/// A sub-layer's LayerNorm and where it sits.
#[derive(Debug, Clone)]
struct Residual {
    norm: BaseLayerNorm,
    pre_norm: bool,
    dropout: Dropout,
}

impl Residual {
    fn load(loader: &mut Loader<'_>, c: &Seq2SeqConfig, name: &str) -> Result<Self> {
        Ok(Self {
            norm: loader.layer_norm(name, c.d_model, c.layer_norm_eps)?,
            pre_norm: c.family.pre_norm(),
            dropout: Dropout::new(c.dropout),
        })
    }

    /// The residual stream after sub-layer `sublayer` of block `layer`, computed by `f` from
    /// its input.
    fn run(
        &self,
        layer: usize,
        sublayer: Sublayer,
        x: &Tensor,
        hooks: &dyn Hooks,
        ctx: &mut ForwardCtx,
        f: impl FnOnce(&Tensor, &mut ForwardCtx) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let input = if self.pre_norm {
            self.norm.forward(x, hooks, ctx)?
        } else {
            x.clone()
        };
        let input = hooks.input(layer, sublayer, input, ctx)?;
        let h = f(&input, ctx)?;
        let h = ctx.dropout(&self.dropout, &h)?;
        let h = hooks.output(layer, sublayer, &input, h, ctx)?;
        if self.pre_norm {
            Ok((x + h)?)
        } else {
            self.norm.forward(&(input + h)?, hooks, ctx)
        }
    }
}

/// `fc2(dropout(act(fc1(x))))`.
#[derive(Debug, Clone)]
struct Ffn {
    up: BaseLinear,
    down: BaseLinear,
    activation: Activation,
    dropout: Dropout,
}

impl Ffn {
    fn load(loader: &mut Loader<'_>, c: &Seq2SeqConfig, prefix: &str) -> Result<Self> {
        let (d, m) = (c.d_model, c.ffn_dim);
        Ok(Self {
            up: loader.linear(&format!("{prefix}.fc1"), m, d)?,
            down: loader.linear(&format!("{prefix}.fc2"), d, m)?,
            activation: c.activation,
            dropout: Dropout::new(c.activation_dropout),
        })
    }

    fn forward(&self, layer: usize, x: &Tensor, hooks: &dyn Hooks, ctx: &mut ForwardCtx) -> Result<Tensor> {
        let up = self.up.project(layer, Proj::FfnUp, x, hooks, ctx)?;
        let act = ctx.dropout(&self.dropout, &self.activation.forward(&up)?)?;
        self.down.project(layer, Proj::FfnDown, &act, hooks, ctx)
    }
}

/// An encoder block: self-attention, then FFN.
#[derive(Debug, Clone)]
pub(super) struct EncoderBlock {
    attention: Attention,
    attention_res: Residual,
    ffn: Ffn,
    ffn_res: Residual,
}

impl EncoderBlock {
    pub(super) fn load(loader: &mut Loader<'_>, c: &Seq2SeqConfig, index: usize) -> Result<Self> {
        let p = format!("encoder.layers.{index}");
        Ok(Self {
            attention: Attention::load(loader, c, &format!("{p}.self_attn"), Sublayer::Attention)?,
            attention_res: Residual::load(loader, c, &format!("{p}.self_attn_layer_norm"))?,
            ffn: Ffn::load(loader, c, &p)?,
            ffn_res: Residual::load(loader, c, &format!("{p}.final_layer_norm"))?,
        })
    }

    /// `x` `[batch, seq, d]`, `bias` `[batch, 1, 1, seq]` masking padding.
    pub(super) fn forward(
        &self,
        layer: usize,
        x: &Tensor,
        bias: &Tensor,
        hooks: &dyn Hooks,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        let a = self
            .attention_res
            .run(layer, Sublayer::Attention, x, hooks, ctx, |x, ctx| {
                let keys = SelfKeys {
                    bias,
                    past: None,
                    causal: false,
                };
                let (out, _) = self.attention.self_attention(layer, x, keys, hooks, ctx)?;
                Ok(out)
            })?;
        self.ffn_res.run(layer, Sublayer::Ffn, &a, hooks, ctx, |x, ctx| {
            self.ffn.forward(layer, x, hooks, ctx)
        })
    }
}

/// What a decoder block keeps between decoding steps: its self-attention keys and values so
/// far (prefix first) and its cross-attention keys and values (computed once).
#[derive(Debug, Clone)]
pub(super) struct BlockCache {
    pub(super) own: Memory,
    pub(super) cross: Memory,
}

/// What a decoder block's cross-attention reads.
#[derive(Clone, Copy)]
pub(super) enum CrossInput<'a> {
    /// The encoder output `[batch, s, d]` and the key mask over it `[batch, 1, 1, s]`: the
    /// keys and values are computed (and the prefix asked for); the block starts from an
    /// empty cache.
    Source {
        /// Encoder hidden states.
        hidden: &'a Tensor,
        /// Additive key mask.
        bias: &'a Tensor,
    },
    /// A decoding step: the block continues from its cache.
    Cached(&'a BlockCache),
}

/// A decoder block: causal self-attention, cross-attention, FFN.
#[derive(Debug, Clone)]
pub(super) struct DecoderBlock {
    attention: Attention,
    attention_res: Residual,
    cross: Attention,
    cross_res: Residual,
    ffn: Ffn,
    ffn_res: Residual,
}

impl DecoderBlock {
    pub(super) fn load(loader: &mut Loader<'_>, c: &Seq2SeqConfig, index: usize) -> Result<Self> {
        let p = format!("decoder.layers.{index}");
        Ok(Self {
            attention: Attention::load(loader, c, &format!("{p}.self_attn"), Sublayer::Attention)?,
            attention_res: Residual::load(loader, c, &format!("{p}.self_attn_layer_norm"))?,
            cross: Attention::load(loader, c, &format!("{p}.encoder_attn"), Sublayer::CrossAttention)?,
            cross_res: Residual::load(loader, c, &format!("{p}.encoder_attn_layer_norm"))?,
            ffn: Ffn::load(loader, c, &p)?,
            ffn_res: Residual::load(loader, c, &format!("{p}.final_layer_norm"))?,
        })
    }

    /// `x` `[batch, t, d]`: new decoder tokens whose own keys are masked by `bias`
    /// `[batch, 1, 1, t]`, following the cached tokens when `cross` is a cache. Returns the
    /// block output and the (extended) cache.
    pub(super) fn forward(
        &self,
        layer: usize,
        x: &Tensor,
        bias: &Tensor,
        cross: CrossInput<'_>,
        hooks: &dyn Hooks,
        ctx: &mut ForwardCtx,
    ) -> Result<(Tensor, BlockCache)> {
        let cache = match cross {
            CrossInput::Cached(c) => Some(c),
            CrossInput::Source { .. } => None,
        };
        let mut own = None;
        let a = self
            .attention_res
            .run(layer, Sublayer::Attention, x, hooks, ctx, |x, ctx| {
                let keys = SelfKeys {
                    bias,
                    past: cache.map(|c| &c.own),
                    causal: true,
                };
                let (out, memory) = self.attention.self_attention(layer, x, keys, hooks, ctx)?;
                own = Some(memory);
                Ok(out)
            })?;
        let mut kept = None;
        let c = self
            .cross_res
            .run(layer, Sublayer::CrossAttention, &a, hooks, ctx, |x, ctx| {
                let memory = match cross {
                    CrossInput::Cached(c) => c.cross.clone(),
                    CrossInput::Source { hidden, bias } => {
                        self.cross.memory(layer, hidden, bias, hooks, ctx)?
                    }
                };
                let out = self.cross.cross_attention(layer, x, &memory, hooks, ctx)?;
                kept = Some(memory);
                Ok(out)
            })?;
        let out = self.ffn_res.run(layer, Sublayer::Ffn, &c, hooks, ctx, |x, ctx| {
            self.ffn.forward(layer, x, hooks, ctx)
        })?;
        let (Some(own), Some(cross)) = (own, kept) else {
            unreachable!("Residual::run calls its sub-layer exactly once")
        };
        Ok((out, BlockCache { own, cross }))
    }
}
