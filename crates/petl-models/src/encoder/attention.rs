use crate::base::{BaseLinear, Loader};
use crate::config::EncoderConfig;
use crate::{ForwardCtx, HeadsSite, Hooks, Proj, Result, Sublayer};
use candle_core::Tensor;
use petl_ops::Dropout;

/// Multi-head self-attention (`BertSelfAttention` + the `dense` of `BertSelfOutput`).
#[derive(Debug, Clone)]
pub(super) struct SelfAttention {
    query: BaseLinear,
    key: BaseLinear,
    value: BaseLinear,
    out: BaseLinear,
    probs_dropout: Dropout,
    num_heads: usize,
    head_dim: usize,
}

impl SelfAttention {
    pub(super) fn load(loader: &mut Loader<'_>, c: &EncoderConfig, prefix: &str) -> Result<Self> {
        let d = c.hidden_size;
        Ok(Self {
            query: loader.linear(&format!("{prefix}.self.query"), d, d)?,
            key: loader.linear(&format!("{prefix}.self.key"), d, d)?,
            value: loader.linear(&format!("{prefix}.self.value"), d, d)?,
            out: loader.linear(&format!("{prefix}.output.dense"), d, d)?,
            probs_dropout: Dropout::new(c.attention_dropout),
            num_heads: c.num_heads,
            head_dim: c.head_dim(),
        })
    }

    /// `x` `[batch, seq, d]`, `bias` `[batch, 1, 1, seq]`; returns `[batch, seq, d]` after W_o.
    pub(super) fn forward(
        &self,
        layer: usize,
        x: &Tensor,
        bias: &Tensor,
        hooks: &dyn Hooks,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        let (batch, seq, _) = x.dims3()?;
        let q = self.query.project(layer, Proj::Query, x, hooks, ctx)?;
        let mut k = self.key.project(layer, Proj::Key, x, hooks, ctx)?;
        let mut v = self.value.project(layer, Proj::Value, x, hooks, ctx)?;
        let mut bias = bias.clone();
        if let Some(prefix) = hooks.kv_prefix(layer, Sublayer::Attention, batch, ctx)? {
            let plen = prefix.keys.dim(2)?;
            k = Tensor::cat(&[&petl_ops::merge_heads(&prefix.keys)?, &k], 1)?;
            v = Tensor::cat(&[&petl_ops::merge_heads(&prefix.values)?, &v], 1)?;
            // Prefix positions are always attended.
            let open = Tensor::zeros((batch, 1, 1, plen), bias.dtype(), bias.device())?;
            bias = Tensor::cat(&[&open, &bias], 3)?;
        }
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let dropout = ctx.dropout_mask(&self.probs_dropout, batch * self.num_heads * seq * k.dim(1)?);
        let merged = if hooks.changes_heads(layer, Sublayer::Attention) {
            // The per-head tensors a heads hook reads, materialised.
            let heads = |t: &Tensor| petl_ops::split_heads(t, self.num_heads);
            let q = heads(&q)?;
            let scores = petl_ops::scale_add_mask(&q.matmul(&heads(&k)?.t()?)?, scale, &bias)?;
            let probs = petl_ops::softmax_last_dim(&scores)?;
            let probs = match &dropout {
                Some(mask) => mask.apply(&probs)?,
                None => probs,
            };
            let site = HeadsSite {
                sublayer: Sublayer::Attention,
                input: x,
                query: &q,
                scores: &scores,
            };
            let out = hooks.heads(layer, site, probs.matmul(&heads(&v)?)?, ctx)?;
            petl_ops::merge_heads(&out)?
        } else {
            let spec = petl_ops::AttentionSpec {
                heads: self.num_heads,
                scale,
                bias: Some(&bias),
                dropout: dropout.as_ref(),
            };
            petl_ops::attention(&q, &k, &v, &spec)?
        };
        self.out.project(layer, Proj::AttnOut, &merged, hooks, ctx)
    }
}
