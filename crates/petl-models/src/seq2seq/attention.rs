//! Multi-head attention of BART blocks: encoder self-attention, causal decoder self-attention
//! with a key/value cache, and decoder-to-encoder cross-attention.

use super::config::Seq2SeqConfig;
use crate::base::{BaseLinear, Loader};
use crate::{ForwardCtx, HeadsSite, Hooks, KvPrefix, Proj, Result, Sublayer};
use candle_core::{DType, Tensor};
use petl_ops::Dropout;

/// Keys and values an attention reads, `[batch, heads, n, head_dim]`, and the additive key
/// mask over them `[batch, 1, 1, n]` (0 where attended, -1e9 where padding). A prefix, when a
/// hook gives one, is its first columns, always attended.
#[derive(Debug, Clone)]
pub(super) struct Memory {
    pub(super) keys: Tensor,
    pub(super) values: Tensor,
    pub(super) bias: Tensor,
}

impl Memory {
    /// The prefix of `layer`'s `sublayer` (if a hook gives one) in front of `keys`/`values`.
    fn with_prefix(
        layer: usize,
        sublayer: Sublayer,
        keys: Tensor,
        values: Tensor,
        bias: Tensor,
        hooks: &dyn Hooks,
        ctx: &mut ForwardCtx,
    ) -> Result<Self> {
        let batch = keys.dim(0)?;
        Ok(match hooks.kv_prefix(layer, sublayer, batch, ctx)? {
            Some(KvPrefix { keys: pk, values: pv }) => {
                let open = Tensor::zeros((batch, 1, 1, pk.dim(2)?), bias.dtype(), bias.device())?;
                Self {
                    keys: Tensor::cat(&[&pk, &keys], 2)?,
                    values: Tensor::cat(&[&pv, &values], 2)?,
                    bias: Tensor::cat(&[&open, &bias], 3)?,
                }
            }
            None => Self { keys, values, bias },
        })
    }

    /// Number of key columns.
    pub(super) fn len(&self) -> Result<usize> {
        Ok(self.keys.dim(2)?)
    }

    /// Rows `rows` of the batch (beam reordering).
    pub(super) fn select(&self, rows: &Tensor) -> Result<Self> {
        Ok(Self {
            keys: self.keys.index_select(rows, 0)?,
            values: self.values.index_select(rows, 0)?,
            bias: self.bias.index_select(rows, 0)?,
        })
    }
}

/// One attention sub-layer's four projections.
#[derive(Debug, Clone)]
pub(super) struct Attention {
    query: BaseLinear,
    key: BaseLinear,
    value: BaseLinear,
    out: BaseLinear,
    /// `Attention` or `CrossAttention`: which hook points and projections it reports as.
    sublayer: Sublayer,
    probs_dropout: Dropout,
    num_heads: usize,
    head_dim: usize,
}

impl Attention {
    /// Loads `{prefix}.{q,k,v,out}_proj`.
    pub(super) fn load(
        loader: &mut Loader<'_>,
        c: &Seq2SeqConfig,
        prefix: &str,
        sublayer: Sublayer,
    ) -> Result<Self> {
        let d = c.d_model;
        let mut lin = |name: &str| loader.linear(&format!("{prefix}.{name}"), d, d);
        Ok(Self {
            query: lin("q_proj")?,
            key: lin("k_proj")?,
            value: lin("v_proj")?,
            out: lin("out_proj")?,
            sublayer,
            probs_dropout: Dropout::new(c.attention_dropout),
            num_heads: c.num_heads,
            head_dim: c.head_dim(),
        })
    }

    fn projs(&self) -> [Proj; 4] {
        match self.sublayer {
            Sublayer::CrossAttention => [Proj::CrossQuery, Proj::CrossKey, Proj::CrossValue, Proj::CrossOut],
            _ => [Proj::Query, Proj::Key, Proj::Value, Proj::AttnOut],
        }
    }

    /// `x` `[batch, seq, d]` through projection `which` (0 = Q, 1 = K, 2 = V), split per head.
    fn project_heads(
        &self,
        layer: usize,
        which: usize,
        x: &Tensor,
        hooks: &dyn Hooks,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        let (batch, seq, _) = x.dims3()?;
        let lin = [&self.query, &self.key, &self.value][which];
        let y = lin.project(layer, self.projs()[which], x, hooks, ctx)?;
        Ok(y.reshape((batch, seq, self.num_heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()?)
    }

    /// Keys and values of `source` (the encoder output, for cross-attention) with the layer's
    /// prefix in front; `bias` `[batch, 1, 1, seq]` masks `source`'s padding.
    pub(super) fn memory(
        &self,
        layer: usize,
        source: &Tensor,
        bias: &Tensor,
        hooks: &dyn Hooks,
        ctx: &mut ForwardCtx,
    ) -> Result<Memory> {
        let k = self.project_heads(layer, 1, source, hooks, ctx)?;
        let v = self.project_heads(layer, 2, source, hooks, ctx)?;
        Memory::with_prefix(layer, self.sublayer, k, v, bias.clone(), hooks, ctx)
    }

    /// Self-attention of `x` `[batch, t, d]` over its own keys and `keys.past`. Returns the
    /// output after W_o and the memory extended by `x`'s keys.
    pub(super) fn self_attention(
        &self,
        layer: usize,
        x: &Tensor,
        keys: SelfKeys<'_>,
        hooks: &dyn Hooks,
        ctx: &mut ForwardCtx,
    ) -> Result<(Tensor, Memory)> {
        let q = self.project_heads(layer, 0, x, hooks, ctx)?;
        let k = self.project_heads(layer, 1, x, hooks, ctx)?;
        let v = self.project_heads(layer, 2, x, hooks, ctx)?;
        let memory = match keys.past {
            Some(p) => Memory {
                keys: Tensor::cat(&[&p.keys, &k], 2)?,
                values: Tensor::cat(&[&p.values, &v], 2)?,
                bias: Tensor::cat(&[&p.bias, keys.bias], 3)?,
            },
            None => Memory::with_prefix(layer, self.sublayer, k, v, keys.bias.clone(), hooks, ctx)?,
        };
        let t = x.dim(1)?;
        let out = if keys.causal && t > 1 {
            let causal = causal_bias(t, memory.len()?, x.device())?;
            let masked = Memory {
                bias: memory.bias.broadcast_add(&causal)?,
                ..memory.clone()
            };
            self.attend(layer, x, &q, &masked, hooks, ctx)?
        } else {
            self.attend(layer, x, &q, &memory, hooks, ctx)?
        };
        Ok((out, memory))
    }

    /// Attention of `x`'s queries over a fixed memory (cross-attention).
    pub(super) fn cross_attention(
        &self,
        layer: usize,
        x: &Tensor,
        memory: &Memory,
        hooks: &dyn Hooks,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        let q = self.project_heads(layer, 0, x, hooks, ctx)?;
        self.attend(layer, x, &q, memory, hooks, ctx)
    }

    /// `softmax(QKᵀ/√d_h + mask)V` over `memory` (its bias may have a query dimension), the
    /// heads hook, then W_o.
    fn attend(
        &self,
        layer: usize,
        input: &Tensor,
        q: &Tensor,
        memory: &Memory,
        hooks: &dyn Hooks,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        let (batch, seq, d) = input.dims3()?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let scores = petl_ops::scale_add_mask(&q.matmul(&memory.keys.t()?)?, scale, &memory.bias)?;
        let probs = petl_ops::softmax_last_dim(&scores)?;
        let probs = ctx.dropout(&self.probs_dropout, &probs)?;
        let heads = probs.matmul(&memory.values)?;
        let site = HeadsSite {
            sublayer: self.sublayer,
            input,
            query: q,
            scores: &scores,
        };
        let heads = hooks.heads(layer, site, heads, ctx)?;
        let merged = heads.transpose(1, 2)?.contiguous()?.reshape((batch, seq, d))?;
        self.out.project(layer, self.projs()[3], &merged, hooks, ctx)
    }
}

/// What the new tokens of a self-attention attend besides themselves.
#[derive(Debug, Clone, Copy)]
pub(super) struct SelfKeys<'a> {
    /// The additive mask over the new tokens' own keys `[batch, 1, 1, t]`.
    pub(super) bias: &'a Tensor,
    /// Earlier tokens of a cached decode (prefix first); `None` asks the hooks for the prefix.
    pub(super) past: Option<&'a Memory>,
    /// Token i sees only keys up to its own (decoder self-attention).
    pub(super) causal: bool,
}

/// `[1, 1, t, total]`: 0 where query i (the last t of `total` positions) may see key j, -1e9
/// after it. Keys before the t new ones (prefix, cached tokens) are always visible.
fn causal_bias(t: usize, total: usize, device: &candle_core::Device) -> Result<Tensor> {
    let before = total - t;
    let data: Vec<f32> = (0..t)
        .flat_map(|i| (0..total).map(move |j| if j > before + i { -1e9 } else { 0.0 }))
        .collect();
    Ok(Tensor::from_vec(data, (1, 1, t, total), device)?)
}

/// Additive key mask `[batch, 1, 1, seq]` from a `[batch, seq]` 0/1 mask.
pub(super) fn key_bias(mask: &Tensor) -> Result<Tensor> {
    let (b, t) = mask.dims2()?;
    let keep = mask.to_dtype(DType::F32)?;
    // -1e9 rather than f32::MIN keeps the sum with the causal mask finite.
    Ok(((keep - 1.0)? * 1e9)?.reshape((b, 1, 1, t))?)
}
