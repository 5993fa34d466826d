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
        let (batch, seq, d) = x.dims3()?;
        let project = |lin: &BaseLinear, proj: Proj, ctx: &mut ForwardCtx| -> Result<Tensor> {
            let y = lin.project(layer, proj, x, hooks, ctx)?;
            Ok(y.reshape((batch, seq, self.num_heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let q = project(&self.query, Proj::Query, ctx)?;
        let mut k = project(&self.key, Proj::Key, ctx)?;
        let mut v = project(&self.value, Proj::Value, ctx)?;
        let mut bias = bias.clone();
        if let Some(prefix) = hooks.kv_prefix(layer, Sublayer::Attention, batch, ctx)? {
            let plen = prefix.keys.dim(2)?;
            k = Tensor::cat(&[&prefix.keys, &k], 2)?;
            v = Tensor::cat(&[&prefix.values, &v], 2)?;
            // Prefix positions are always attended.
            let open = Tensor::zeros((batch, 1, 1, plen), bias.dtype(), bias.device())?;
            bias = Tensor::cat(&[&open, &bias], 3)?;
        }
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let scores = petl_ops::scale_add_mask(&q.matmul(&k.t()?)?, scale, &bias)?;
        let probs = petl_ops::softmax_last_dim(&scores)?;
        let probs = ctx.dropout(&self.probs_dropout, &probs)?;
        let heads = probs.matmul(&v)?;
        let site = HeadsSite {
            sublayer: Sublayer::Attention,
            input: x,
            query: &q,
            scores: &scores,
        };
        let heads = hooks.heads(layer, site, heads, ctx)?;
        let merged = heads.transpose(1, 2)?.contiguous()?.reshape((batch, seq, d))?;
        self.out.project(layer, Proj::AttnOut, &merged, hooks, ctx)
    }
}
