//! Named hook points: the places in a transformer where a parameter-efficient delta acts.
//!
//! Every model calls the same [`Hooks`] methods at the same places, so a method (adapter,
//! prefix, LoRA, sparse diff, BitFit…) is written once against this trait and works on every
//! architecture. Each default is the identity: a model run with [`NoHooks`] is the frozen base.
//!
//! Where the calls happen inside one post-LN block (BERT/RoBERTa):
//!
//! ```text
//! ids ─▶ word embeddings ─▶ embeddings() ─▶ + positions + types ─▶ LayerNorm ─▶ x
//! x ─▶ input(Attention) ─▶ Q,K,V = linear(Query|Key|Value)        ◀── param(name) on every weight
//!      kv_prefix() concatenated to K,V ─▶ softmax(QKᵀ/√d)V ─▶ heads()
//!      ─▶ linear(AttnOut) ─▶ dropout ─▶ output(Attention, x, ·) ─▶ LayerNorm(x + ·) = a
//! a ─▶ input(Ffn) ─▶ linear(FfnUp) ─▶ act ─▶ linear(FfnDown) ─▶ dropout
//!      ─▶ output(Ffn, a, ·) ─▶ LayerNorm(a + ·)
//! ```
//!
//! Every projection `linear(P)` is `linear_input(P)` on its input, then the frozen matmul, then
//! `linear(P)` on its output.
//!
//! Pre-LN blocks (Llama, BART's mBART variant) call the same hooks around the same sub-layers;
//! only where the norm sits differs. A decoder block of an encoder-decoder adds a
//! [`Sublayer::CrossAttention`] between self-attention and the FFN, whose keys and values come
//! from the encoder output and whose projections are the `Cross*` members of [`Proj`].

use crate::Result;
use candle_core::Tensor;
use petl_ops::{Dropout, DropoutRng, KeepMask};

/// A sub-layer of a transformer block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sublayer {
    /// Multi-head self-attention (causal in a decoder).
    Attention,
    /// The position-wise feed-forward network.
    Ffn,
    /// Decoder-to-encoder attention of an encoder-decoder (BART's `encoder_attn`).
    CrossAttention,
}

/// A weight matrix of a transformer block, by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Proj {
    /// W_q.
    Query,
    /// W_k.
    Key,
    /// W_v.
    Value,
    /// W_o, the attention output projection.
    AttnOut,
    /// W_1, the FFN up-projection.
    FfnUp,
    /// W_2, the FFN down-projection.
    FfnDown,
    /// The gate of a gated FFN (SwiGLU's `gate_proj`: `down(act(gate·x) ⊙ up·x)`).
    FfnGate,
    /// W_q of cross-attention (queries from the decoder).
    CrossQuery,
    /// W_k of cross-attention (keys from the encoder output).
    CrossKey,
    /// W_v of cross-attention (values from the encoder output).
    CrossValue,
    /// W_o of cross-attention.
    CrossOut,
}

impl Proj {
    /// All projections, in block order. A model has a subset ([`crate::ModelShape::has_proj`]).
    pub const ALL: [Proj; 11] = [
        Self::Query,
        Self::Key,
        Self::Value,
        Self::AttnOut,
        Self::CrossQuery,
        Self::CrossKey,
        Self::CrossValue,
        Self::CrossOut,
        Self::FfnGate,
        Self::FfnUp,
        Self::FfnDown,
    ];

    /// The cross-attention projection with the same role as a self-attention one (`Query` →
    /// `CrossQuery`…), or `None` for the others. A method that names `query` acts on both
    /// attentions of a decoder block, as peft's `q_proj` target does on BART.
    pub fn cross_counterpart(self) -> Option<Proj> {
        match self {
            Self::Query => Some(Self::CrossQuery),
            Self::Key => Some(Self::CrossKey),
            Self::Value => Some(Self::CrossValue),
            Self::AttnOut => Some(Self::CrossOut),
            _ => None,
        }
    }

    /// The attention sub-layer the projection belongs to, or `None` for FFN projections.
    pub fn attention(self) -> Option<Sublayer> {
        match self {
            Self::Query | Self::Key | Self::Value | Self::AttnOut => Some(Sublayer::Attention),
            Self::CrossQuery | Self::CrossKey | Self::CrossValue | Self::CrossOut => {
                Some(Sublayer::CrossAttention)
            }
            Self::FfnGate | Self::FfnUp | Self::FfnDown => None,
        }
    }
}

/// Extra per-layer keys and values prepended to attention (prefix tuning), each
/// `[batch, heads, prefix_len, head_dim]`.
#[derive(Debug, Clone)]
pub struct KvPrefix {
    /// P_k.
    pub keys: Tensor,
    /// P_v.
    pub values: Tensor,
}

/// What attention computed for one layer, for deltas acting on the per-head output.
#[derive(Debug, Clone, Copy)]
pub struct HeadsSite<'a> {
    /// Which attention: self-attention, or cross-attention in an encoder-decoder's decoder.
    pub sublayer: Sublayer,
    /// The attention sub-layer input `[batch, seq, d]`.
    pub input: &'a Tensor,
    /// The per-head queries `[batch, heads, seq, head_dim]`, unscaled.
    pub query: &'a Tensor,
    /// The scaled, masked attention logits `[batch, heads, seq, keys]` the softmax was taken
    /// over (prefix columns first when [`Hooks::kv_prefix`] added some): the normaliser a gated
    /// composition needs.
    pub scores: &'a Tensor,
}

/// Per-forward state: whether this is a training pass and, if so, where dropout draws from.
#[derive(Debug)]
pub struct ForwardCtx {
    rng: Option<DropoutRng>,
    /// Values computed once per pass (see [`ForwardCtx::once_per_pass`]).
    memo: std::collections::HashMap<usize, Tensor>,
}

impl ForwardCtx {
    /// An evaluation pass: dropout is the identity.
    pub fn eval() -> Self {
        Self {
            rng: None,
            memo: Default::default(),
        }
    }

    /// A training pass drawing dropout masks from `rng`.
    pub fn train(rng: DropoutRng) -> Self {
        Self {
            rng: Some(rng),
            memo: Default::default(),
        }
    }

    /// Whether dropout is active.
    pub fn is_train(&self) -> bool {
        self.rng.is_some()
    }

    /// The pass's random stream (training passes only), for noise other than dropout.
    pub fn rng(&mut self) -> Option<&mut DropoutRng> {
        self.rng.as_mut()
    }

    /// A copy of this context at its current point in the random stream: a recomputation
    /// started from it draws the same dropout masks and noise again (activation checkpointing).
    pub fn fork(&self) -> Self {
        Self {
            rng: self.rng.clone(),
            memo: Default::default(),
        }
    }

    /// The value `owner` computes once per pass: `make` runs on the first call and later calls
    /// in the same pass (other layers) get its result. A prefix generator computes every
    /// layer's prefixes in one product this way instead of one slice of its weights per layer.
    /// `owner` is the object the value belongs to (its address keys it, so two deltas in one
    /// batch never share a value); a fork starts empty, so a recomputation builds its own.
    pub fn once_per_pass<T>(&mut self, owner: &T, make: impl FnOnce() -> Result<Tensor>) -> Result<Tensor> {
        let key = std::ptr::from_ref(owner) as usize;
        if let Some(t) = self.memo.get(&key) {
            return Ok(t.clone());
        }
        let t = make()?;
        self.memo.insert(key, t.clone());
        Ok(t)
    }

    /// The mask `dropout` draws for `n` elements in a training pass, `None` where it is the
    /// identity: for fused ops that apply dropout inside (attention probabilities).
    pub fn dropout_mask(&mut self, dropout: &Dropout, n: usize) -> Option<KeepMask> {
        dropout.mask(n, self.rng.as_mut())
    }

    /// Applies `dropout` in training passes.
    pub fn dropout(&mut self, dropout: &Dropout, x: &Tensor) -> Result<Tensor> {
        Ok(dropout.forward(x, self.rng.as_mut())?)
    }
}

/// The hook points a delta can implement. All methods default to "no change".
///
/// `layer` is the 0-based block index, counted over all stacks: an encoder-decoder's encoder
/// blocks come first, then its decoder blocks (BART-base: 0–5 encoder, 6–11 decoder), as in
/// [`crate::ModelShape::stacks`]. Implementations must not change shapes except where a
/// method says so.
pub trait Hooks {
    /// Returns the tensor to use in place of the base parameter `name` (canonical checkpoint
    /// name, e.g. `encoder.layer.3.attention.self.query.weight`), or `None` to use `base`.
    /// Full fine-tuning and BitFit return trainable copies; diff pruning returns `base + δ`.
    /// `ctx` carries the pass's random stream: stochastic gates (diff pruning's hard-concrete
    /// gates) draw from it like dropout.
    fn param(&self, name: &str, base: &Tensor, ctx: &mut ForwardCtx) -> Result<Option<Tensor>> {
        let _ = (name, base, ctx);
        Ok(None)
    }

    /// Corrects the output `[batch, …, out]` of the frozen linear whose weight is the base
    /// parameter `weight`, given its input (after [`Hooks::linear_input`]); runs before
    /// [`Hooks::linear`], and for linears outside the blocks (the pooler) too.
    ///
    /// [`Hooks::param`] swaps a tensor for the whole batch; a correction may differ per row,
    /// which is how one batch serves tasks with different sparse diffs (`x·δᵀ` added to the
    /// shared `x·Wᵀ`).
    fn base_linear(
        &self,
        weight: &str,
        input: &Tensor,
        output: Tensor,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        let _ = (weight, input, ctx);
        Ok(output)
    }

    /// Corrects the output of the frozen LayerNorm whose scale is the base parameter `weight`,
    /// given its input and epsilon (per-row corrections, as [`Hooks::base_linear`]).
    fn base_norm(
        &self,
        weight: &str,
        input: &Tensor,
        eps: f64,
        output: Tensor,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        let _ = (weight, input, eps, ctx);
        Ok(output)
    }

    /// Corrects an embedding lookup: `output` `[batch, seq, d]` holds the rows `ids`
    /// `[batch, seq]` of the base parameter `table` (per-row corrections, as
    /// [`Hooks::base_linear`]).
    fn base_lookup(&self, table: &str, ids: &Tensor, output: Tensor, ctx: &mut ForwardCtx) -> Result<Tensor> {
        let _ = (table, ids, ctx);
        Ok(output)
    }

    /// Modifies the word embeddings `[batch, seq, d]` and the attention mask `[batch, seq]`
    /// before position and token-type embeddings are added. Prompt tuning prepends `p` rows to
    /// both; the model then numbers positions over the longer sequence and gives the new rows
    /// token type 0, as Hugging Face does for `inputs_embeds`.
    fn embeddings(&self, words: Tensor, mask: Tensor, ctx: &mut ForwardCtx) -> Result<(Tensor, Tensor)> {
        let _ = ctx;
        Ok((words, mask))
    }

    /// Modifies a sub-layer's input before the sub-layer reads it.
    fn input(&self, layer: usize, sublayer: Sublayer, x: Tensor, ctx: &mut ForwardCtx) -> Result<Tensor> {
        let _ = (layer, sublayer, ctx);
        Ok(x)
    }

    /// How far to shift the input tokens' position ids (prefixes that Hugging Face models
    /// receive as past keys and values push positions along by their length).
    fn position_offset(&self) -> usize {
        0
    }

    /// Modifies the input of projection `proj` before the frozen matmul (IA³ on the FFN's
    /// inner activation).
    fn linear_input(&self, layer: usize, proj: Proj, input: Tensor, ctx: &mut ForwardCtx) -> Result<Tensor> {
        let _ = (layer, proj, ctx);
        Ok(input)
    }

    /// Whether any hook acts on projection `proj` of `layer`: [`Hooks::linear_input`],
    /// [`Hooks::base_linear`] or [`Hooks::linear`] there, or [`Hooks::param`] replacing its
    /// weight or bias. Where none does, models may run the frozen projections of a sub-layer as
    /// one fused op (the feed-forward network). The default, `true`, keeps any implementation
    /// correct; implementations that know better say so.
    fn changes_linear(&self, layer: usize, proj: Proj) -> bool {
        let _ = (layer, proj);
        true
    }

    /// Modifies the output of projection `proj` given its input (LoRA, IA³).
    fn linear(
        &self,
        layer: usize,
        proj: Proj,
        input: &Tensor,
        output: Tensor,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        let _ = (layer, proj, input, ctx);
        Ok(output)
    }

    /// Keys and values to prepend in the attention `sublayer` ([`Sublayer::Attention`] or
    /// [`Sublayer::CrossAttention`]) of `layer` for a batch of `batch` rows.
    fn kv_prefix(
        &self,
        layer: usize,
        sublayer: Sublayer,
        batch: usize,
        ctx: &mut ForwardCtx,
    ) -> Result<Option<KvPrefix>> {
        let _ = (layer, sublayer, batch, ctx);
        Ok(None)
    }

    /// Whether [`Hooks::heads`] acts in the attention `sublayer` of `layer`. Where it does not,
    /// models run attention as one fused op that never materialises the per-head queries,
    /// scores and outputs a [`HeadsSite`] shows. The default, `true`, keeps any implementation
    /// that overrides [`Hooks::heads`] correct; implementations that never change heads say so.
    fn changes_heads(&self, layer: usize, sublayer: Sublayer) -> bool {
        let _ = (layer, sublayer);
        true
    }

    /// Modifies the per-head attention output `[batch, heads, seq, head_dim]` before W_o
    /// (multi-head parallel adapters, prefix tuning in its gated-adapter form).
    fn heads(
        &self,
        layer: usize,
        site: HeadsSite<'_>,
        heads: Tensor,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        let _ = (layer, site, ctx);
        Ok(heads)
    }

    /// Modifies a sub-layer's output `h` (before the residual add and LayerNorm) given the
    /// sub-layer's input `x`: the site of sequential (`h + f(h)`) and parallel (`h + f(x)`)
    /// adapters.
    fn output(
        &self,
        layer: usize,
        sublayer: Sublayer,
        input: &Tensor,
        output: Tensor,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        let _ = (layer, sublayer, input, ctx);
        Ok(output)
    }
}

/// No delta: the frozen base model.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHooks;

impl Hooks for NoHooks {
    fn changes_heads(&self, _layer: usize, _sublayer: Sublayer) -> bool {
        false
    }

    fn changes_linear(&self, _layer: usize, _proj: Proj) -> bool {
        false
    }
}
