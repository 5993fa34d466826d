use super::cache::LayerKv;
use super::config::DecoderConfig;
use super::pass::Pass;
use crate::base::{BaseLinear, Loader};
use crate::{ForwardCtx, HeadsSite, Hooks, ModelError, Proj, Result, Sublayer};
use candle_core::Tensor;
use petl_ops::Dropout;

/// Where a layer's keys and values come from and go to.
pub(super) enum Kv<'a> {
    /// A forward without a cache: prefixes from [`Hooks::kv_prefix`], nothing kept.
    Discard,
    /// Prefill: prefixes from the hook; the layer's keys and values (prefix included) are
    /// written here.
    Record(&'a mut Option<LayerKv>),
    /// A cached step: the new keys and values follow `past`; the extended cache is written to
    /// `next` (committed by the caller once every layer succeeded).
    Extend {
        past: &'a LayerKv,
        next: &'a mut Option<LayerKv>,
    },
}

/// Causal grouped-query self-attention with rotary positions (`LlamaAttention`).
#[derive(Debug, Clone)]
pub(super) struct SelfAttention {
    query: BaseLinear,
    key: BaseLinear,
    value: BaseLinear,
    out: BaseLinear,
    probs_dropout: Dropout,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
}

impl SelfAttention {
    pub(super) fn load(loader: &mut Loader<'_>, c: &DecoderConfig, prefix: &str) -> Result<Self> {
        let d = c.hidden_size;
        let (q, kv) = (c.q_dim(), c.kv_dim());
        Ok(Self {
            query: loader.linear_with_bias(&format!("{prefix}.q_proj"), q, d, c.qkv_bias)?,
            key: loader.linear_with_bias(&format!("{prefix}.k_proj"), kv, d, c.qkv_bias)?,
            value: loader.linear_with_bias(&format!("{prefix}.v_proj"), kv, d, c.qkv_bias)?,
            out: loader.linear_with_bias(&format!("{prefix}.o_proj"), d, q, c.o_bias)?,
            probs_dropout: Dropout::new(c.attention_dropout),
            num_heads: c.num_heads,
            num_kv_heads: c.num_kv_heads,
            head_dim: c.head_dim,
        })
    }

    /// `x` `[batch, seq, d]` (the normed sub-layer input); returns `[batch, seq, d]` after W_o.
    pub(super) fn forward(
        &self,
        layer: usize,
        x: &Tensor,
        pass: &Pass,
        kv: Kv<'_>,
        hooks: &dyn Hooks,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        let (batch, seq, _) = x.dims3()?;
        let (nh, hd) = (self.num_heads, self.head_dim);
        let q = self.query.project(layer, Proj::Query, x, hooks, ctx)?;
        let k = self.key.project(layer, Proj::Key, x, hooks, ctx)?;
        let v = self.value.project(layer, Proj::Value, x, hooks, ctx)?;
        // Rotary positions on the new queries and keys only: cached keys were rotated when
        // they were new, and prefix keys are never rotated (as Hugging Face treats past keys).
        let q = petl_ops::rotary_heads(&q, nh, &pass.cos, &pass.sin)?;
        let k = petl_ops::rotary_heads(&k, self.num_kv_heads, &pass.cos, &pass.sin)?;
        let v = petl_ops::split_heads(&v, self.num_kv_heads)?;
        let (keys, values, prefix) = match kv {
            Kv::Discard | Kv::Record(_) => {
                let (keys, values, prefix) = match hooks.kv_prefix(layer, Sublayer::Attention, batch, ctx)? {
                    None => (k, v, 0),
                    Some(p) => {
                        let heads = self.prefix_heads(&p.keys, &p.values, batch)?;
                        let (k, v) = (self.repeat_to(k, heads)?, self.repeat_to(v, heads)?);
                        let plen = p.keys.dim(2)?;
                        (
                            Tensor::cat(&[&p.keys, &k], 2)?,
                            Tensor::cat(&[&p.values, &v], 2)?,
                            plen,
                        )
                    }
                };
                if let Kv::Record(slot) = kv {
                    *slot = Some(LayerKv::new(&keys, &values, prefix));
                }
                (keys, values, prefix)
            }
            Kv::Extend { past, next } => {
                let heads = past.heads()?;
                let (k, v) = (self.repeat_to(k, heads)?, self.repeat_to(v, heads)?);
                let keys = Tensor::cat(&[past.keys(), &k], 2)?;
                let values = Tensor::cat(&[past.values(), &v], 2)?;
                *next = Some(LayerKv::new(&keys, &values, past.prefix_len()));
                (keys, values, past.prefix_len())
            }
        };
        let (kv_heads, total) = (keys.dim(1)?, keys.dim(2)?);
        pass.check_window(total)?;
        let bias = pass.bias(prefix)?;
        let scale = 1.0 / (hd as f64).sqrt();
        if !hooks.changes_heads(layer, Sublayer::Attention) {
            let dropout = ctx.dropout_mask(&self.probs_dropout, batch * nh * seq * total);
            let spec = petl_ops::AttentionSpec {
                heads: nh,
                scale,
                bias: Some(&bias),
                dropout: dropout.as_ref(),
            };
            let merged = petl_ops::attention_heads(&q, &keys, &values, &spec)?;
            return self.out.project(layer, Proj::AttnOut, &merged, hooks, ctx);
        }
        // Grouped-query attention without copying keys: the query heads sharing a key head
        // are stacked along the rows, `[batch, kv_heads, group·seq, head_dim]`, and stay so
        // through the mask and softmax (the mask's rows cycle through the queries).
        let group = nh / kv_heads;
        let grouped = |t: &Tensor, rows: usize, width: usize| -> Result<Tensor> {
            Ok(if group == 1 {
                t.clone()
            } else {
                t.reshape((batch, kv_heads, group * rows, width))?
            })
        };
        let per_head = |t: &Tensor, width: usize| -> Result<Tensor> {
            Ok(if group == 1 {
                t.clone()
            } else {
                t.reshape((batch, nh, seq, width))?
            })
        };
        let scores = grouped(&q, seq, hd)?.matmul(&keys.t()?)?;
        let scores = petl_ops::scale_add_mask(&scores, scale, &bias)?;
        let probs = petl_ops::softmax_last_dim(&scores)?;
        let probs = ctx.dropout(&self.probs_dropout, &probs)?;
        let heads = per_head(&probs.matmul(&values)?, hd)?;
        // Per query head, as the site promises; a view no gradient flows through unless a
        // hook reads it.
        let head_scores = per_head(&scores, total)?;
        let site = HeadsSite {
            sublayer: Sublayer::Attention,
            input: x,
            query: &q,
            scores: &head_scores,
        };
        let heads = hooks.heads(layer, site, heads, ctx)?;
        let merged = petl_ops::merge_heads(&heads)?;
        self.out.project(layer, Proj::AttnOut, &merged, hooks, ctx)
    }

    /// The head count of a prefix: the key/value heads (shared like the model's keys), or
    /// every query head (one prefix per head, the model's keys repeated to match).
    fn prefix_heads(&self, keys: &Tensor, values: &Tensor, batch: usize) -> Result<usize> {
        let dims = keys.dims();
        let ok = |heads: usize| {
            dims.len() == 4 && dims[0] == batch && dims[1] == heads && dims[3] == self.head_dim
        };
        let heads = if ok(self.num_kv_heads) {
            self.num_kv_heads
        } else if ok(self.num_heads) {
            self.num_heads
        } else {
            return Err(ModelError::BadInput(format!(
                "prefix keys have shape {dims:?}; expected [{batch}, {} or {}, length, {}]",
                self.num_kv_heads, self.num_heads, self.head_dim
            )));
        };
        if values.dims() != dims {
            return Err(ModelError::BadInput(format!(
                "prefix values have shape {:?}, keys {dims:?}",
                values.dims()
            )));
        }
        Ok(heads)
    }

    /// `[batch, kv_heads, seq, hd]` repeated per query group to `heads` heads (`repeat_kv`).
    fn repeat_to(&self, t: Tensor, heads: usize) -> Result<Tensor> {
        let (b, kvh, s, hd) = t.dims4()?;
        if heads == kvh {
            return Ok(t);
        }
        let group = heads / kvh;
        Ok(t.unsqueeze(2)?
            .broadcast_as((b, kvh, group, s, hd))?
            .contiguous()?
            .reshape((b, heads, s, hd))?)
    }
}
