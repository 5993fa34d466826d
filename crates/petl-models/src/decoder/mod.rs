//! The pre-norm decoder-only transformer of the Llama family (Llama, Mistral, Qwen2, SmolLM2):
//! RMSNorm, rotary positions, grouped-query attention, SwiGLU, tied or untied LM head.
//!
//! The forward pass calls the same [`Hooks`] at the same places as the encoder, so every
//! method acts on a decoder unchanged:
//!
//! ```text
//! ids ─▶ embed_tokens ─▶ base_lookup() ─▶ embeddings() ─▶ x         (positions from the mask)
//! x ─▶ RMSNorm ─▶ input(Attention) = a ─▶ Q,K,V = linear(Query|Key|Value)
//!      rotary(Q, K) ─▶ kv_prefix() before K,V (not rotated) ─▶ causal softmax(QKᵀ/√d)V
//!      ─▶ heads() ─▶ linear(AttnOut) ─▶ output(Attention, a, ·) ─▶ h = x + ·
//! h ─▶ RMSNorm ─▶ input(Ffn) = f ─▶ linear(FfnGate), linear(FfnUp) ─▶ silu(g)⊙u
//!      ─▶ linear(FfnDown) ─▶ output(Ffn, f, ·) ─▶ h + ·
//! last block ─▶ RMSNorm ─▶ hidden ─▶ lm_logits() / logits_at()
//! ```
//!
//! Incremental decoding: [`DecoderModel::prefill`] runs the prompts and keeps every layer's
//! keys and values in a [`DecoderCache`]; [`DecoderModel::step`] feeds one token per row;
//! [`DecoderCache::select_rows`] reorders rows for beam search. Prefixes and prompt-tuning
//! rows enter the cache at prefill, once.

mod attention;
mod block;
mod cache;
mod config;
mod pass;
mod rotary;

pub use cache::DecoderCache;
pub use config::{DecoderConfig, DecoderFamily, RopeConfig, RopeScaling};

use crate::base::{BaseLinear, BaseParam, BaseRmsNorm, Loader};
use crate::encoder::upstream_grad;
use crate::model_dir::ModelDir;
use crate::weights::{Checkpoint, Fingerprint};
use crate::{
    BaseModel, CheckpointedBackward, ForwardCtx, Hooks, ModelError, ModelShape, Precision, Proj, Result,
};
use attention::Kv;
use block::Block;
use candle_core::{DType, Device, Tensor};
use pass::{Layout, Pass};
use rotary::Rotary;
use std::collections::BTreeMap;

/// One batch of token ids for a decoder, row-major `[batch, seq]` u32 tensors. Rows may be
/// padded on either side: positions are counted over the real tokens, as `generate` does.
#[derive(Debug, Clone)]
pub struct DecoderInput {
    /// Token ids.
    pub input_ids: Tensor,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Tensor,
}

impl DecoderInput {
    /// Builds the tensors from flat row-major host buffers.
    pub fn from_host(
        input_ids: &[u32],
        attention_mask: &[u32],
        batch: usize,
        seq: usize,
        device: &Device,
    ) -> Result<Self> {
        let n = batch * seq;
        if input_ids.len() != n || attention_mask.len() != n {
            return Err(ModelError::BadInput(format!(
                "batch {batch}×{seq} needs {n} ids and mask entries, got {} and {}",
                input_ids.len(),
                attention_mask.len()
            )));
        }
        Ok(Self {
            input_ids: Tensor::from_slice(input_ids, (batch, seq), device)?,
            attention_mask: Tensor::from_slice(attention_mask, (batch, seq), device)?,
        })
    }

    /// Unequal prompts padded on the left with `pad` to the longest (how decoders batch
    /// prompts for generation).
    pub fn left_padded(prompts: &[&[u32]], pad: u32, device: &Device) -> Result<Self> {
        let seq = prompts.iter().map(|p| p.len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(prompts.len() * seq);
        let mut mask = Vec::with_capacity(prompts.len() * seq);
        for p in prompts {
            ids.extend(std::iter::repeat_n(pad, seq - p.len()).chain(p.iter().copied()));
            mask.extend(std::iter::repeat_n(0, seq - p.len()).chain(std::iter::repeat_n(1, p.len())));
        }
        Self::from_host(&ids, &mask, prompts.len(), seq, device)
    }
}

/// What the decoder returns.
#[derive(Debug, Clone)]
pub struct DecoderOutput {
    /// The last hidden state after the final norm `[batch, seq', d]`.
    pub hidden: Tensor,
    /// The attention mask over `hidden` `[batch, seq']`: the input's, with the rows a hook
    /// prepended (prompt tuning) in front, so `seq' ≥ seq`.
    pub mask: Tensor,
}

/// A pretrained Llama-family decoder: frozen weights plus the forward pass with hook points,
/// the LM head, and cached incremental decoding.
#[derive(Debug)]
pub struct DecoderModel {
    config: DecoderConfig,
    embed: BaseParam,
    blocks: Vec<Block>,
    norm: BaseRmsNorm,
    /// `lm_head`, or the embedding matrix when tied.
    head: BaseLinear,
    rotary: Rotary,
    base: BTreeMap<String, Tensor>,
    extra: BTreeMap<String, Tensor>,
    fingerprint: Fingerprint,
    device: Device,
    precision: Precision,
}

impl DecoderModel {
    /// Loads the model in `dir` (`config.json` + safetensors with Hugging Face names) onto
    /// `device`.
    pub fn load(dir: &ModelDir, device: &Device) -> Result<Self> {
        Self::load_with_precision(dir, device, Precision::F32)
    }

    /// Loads the model in `dir` onto `device` with its frozen linears in `precision`.
    pub fn load_with_precision(dir: &ModelDir, device: &Device, precision: Precision) -> Result<Self> {
        precision.check(device)?;
        let config = DecoderConfig::from_file(&dir.config_path())?;
        let ckpt = Checkpoint::load(dir.weight_files(), "", device)?;
        Self::from_checkpoint_with_precision(config, ckpt, device, precision)
    }

    /// Builds the model from an already-read config and checkpoint (Hugging Face names:
    /// `model.embed_tokens.weight`, `model.layers.N.self_attn.q_proj.weight`, …), e.g. from
    /// [`Checkpoint::from_tensors`] over a GGUF file's dequantized tensors.
    pub fn from_checkpoint(config: DecoderConfig, ckpt: Checkpoint, device: &Device) -> Result<Self> {
        Self::from_checkpoint_with_precision(config, ckpt, device, Precision::F32)
    }

    /// As [`DecoderModel::from_checkpoint`], with the frozen linears in `precision`.
    pub fn from_checkpoint_with_precision(
        config: DecoderConfig,
        mut ckpt: Checkpoint,
        device: &Device,
        precision: Precision,
    ) -> Result<Self> {
        precision.check(device)?;
        let fingerprint = ckpt.fingerprint().clone();
        let d = config.hidden_size;
        let mut loader = Loader::new(&mut ckpt, precision.linear_dtype());
        let embed = loader.param("model.embed_tokens.weight", &[config.vocab_size, d])?;
        let blocks = (0..config.num_layers)
            .map(|i| Block::load(&mut loader, &config, i))
            .collect::<Result<Vec<_>>>()?;
        let norm = loader.rms_norm("model.norm", d, config.rms_norm_eps)?;
        let head = if config.tie_word_embeddings {
            BaseLinear::from_weight(embed.clone())
        } else {
            loader.linear_with_bias("lm_head", config.vocab_size, d, false)?
        };
        let base = loader.into_taken();
        // A tied checkpoint may still carry a copy of the embedding as `lm_head.weight`.
        let extra = ckpt.into_remaining();
        let rotary = Rotary::new(&config.rope, config.head_dim);
        Ok(Self {
            config,
            embed,
            blocks,
            norm,
            head,
            rotary,
            base,
            extra,
            fingerprint,
            device: device.clone(),
            precision,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// The precision the frozen linears compute in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Checkpoint tensors the architecture did not use.
    pub fn extra_tensors(&self) -> &BTreeMap<String, Tensor> {
        &self.extra
    }

    /// The last hidden state (after the final norm) and the mask over it.
    ///
    /// Shapes: `input` `[batch, seq]`; `hidden` `[batch, seq', d]` with `seq' = seq` plus the
    /// rows [`Hooks::embeddings`] prepends.
    ///
    /// # Errors
    /// An empty batch, a token id outside the vocabulary, a sequence (with prompt rows and the
    /// prefix shift) longer than `max_position_embeddings` or the sliding window.
    pub fn forward(
        &self,
        input: &DecoderInput,
        hooks: &dyn Hooks,
        ctx: &mut ForwardCtx,
    ) -> Result<DecoderOutput> {
        let (hidden, mask, _) = self.run_fresh(input, None, hooks, ctx)?;
        Ok(DecoderOutput { hidden, mask })
    }

    /// Runs the prompts and returns the cache for [`DecoderModel::step`] with the next-token
    /// logits of each row's last real token `[batch, vocab]`. Prefixes ([`Hooks::kv_prefix`])
    /// and prompt-tuning rows ([`Hooks::embeddings`]) are taken here, once.
    ///
    /// # Errors
    /// As [`DecoderModel::forward`], and a row without real tokens.
    pub fn prefill(
        &self,
        input: &DecoderInput,
        hooks: &dyn Hooks,
        ctx: &mut ForwardCtx,
    ) -> Result<(DecoderCache, Tensor)> {
        let mut slots = vec![None; self.blocks.len()];
        let (hidden, _, layout) = self.run_fresh(input, Some(&mut slots), hooks, ctx)?;
        let mut last = Vec::with_capacity(layout.batch);
        for (row, open) in layout.open.chunks(layout.keys).enumerate() {
            let at = open.iter().rposition(|&o| o).ok_or_else(|| {
                ModelError::BadInput(format!("row {row} of the prompt batch has no tokens"))
            })?;
            last.push((row, at));
        }
        let logits = self.logits_at(&hidden, &last, hooks, ctx)?;
        let layers = slots
            .into_iter()
            .map(|s| s.ok_or_else(|| ModelError::BadInput("a layer kept no keys".into())))
            .collect::<Result<Vec<_>>>()?;
        let cache = DecoderCache {
            layers,
            layout,
            device: self.device.clone(),
        };
        Ok((cache, logits))
    }

    /// Appends `tokens[i]` to row `i` of `cache` and returns each row's next-token logits
    /// `[rows, vocab]`. The cache changes only when the step succeeds.
    ///
    /// # Errors
    /// A token count other than the cache's rows, an id outside the vocabulary, or a row
    /// reaching `max_position_embeddings` or the sliding window.
    pub fn step(
        &self,
        cache: &mut DecoderCache,
        tokens: &[u32],
        hooks: &dyn Hooks,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        let rows = cache.rows();
        if tokens.len() != rows {
            return Err(ModelError::BadInput(format!(
                "step got {} tokens for a cache of {rows} rows",
                tokens.len()
            )));
        }
        self.check_ids(tokens)?;
        let layout = cache.layout.push_token();
        self.check_positions(layout.positions_used())?;
        let pass = Pass::new(
            &layout,
            1,
            &cache.layout.next_position,
            &self.rotary,
            self.config.sliding_window,
            &self.device,
        )?;
        let ids = Tensor::from_slice(tokens, (rows, 1), &self.device)?;
        let mut x = self.embed_tokens(&ids, hooks, ctx)?;
        let mut next = vec![None; self.blocks.len()];
        for (i, (block, slot)) in self.blocks.iter().zip(next.iter_mut()).enumerate() {
            let kv = Kv::Extend {
                past: &cache.layers[i],
                next: slot,
            };
            x = block.forward(i, &x, &pass, kv, hooks, ctx)?;
        }
        let hidden = self.norm.forward(&x, hooks, ctx)?;
        let logits = self.lm_logits(&hidden.squeeze(1)?, hooks, ctx)?;
        let layers = next
            .into_iter()
            .map(|s| s.ok_or_else(|| ModelError::BadInput("a layer kept no keys".into())))
            .collect::<Result<Vec<_>>>()?;
        cache.layers = layers;
        cache.layout = layout;
        Ok(logits)
    }

    /// The LM head on any hidden states `[…, d]` → `[…, vocab]` (tied to the embedding when
    /// the config says so; the head's weight passes through [`Hooks::param`] and
    /// [`Hooks::base_linear`] like every base linear).
    pub fn lm_logits(&self, hidden: &Tensor, hooks: &dyn Hooks, ctx: &mut ForwardCtx) -> Result<Tensor> {
        self.head.forward(hidden, hooks, ctx)
    }

    /// The LM head at chosen `(row, position)` pairs of `hidden` `[batch, seq', d]` only:
    /// `[pairs, vocab]`. Training needs logits at the target positions alone, and the head is
    /// the model's largest matmul.
    pub fn logits_at(
        &self,
        hidden: &Tensor,
        positions: &[(usize, usize)],
        hooks: &dyn Hooks,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        let picked = crate::positions::gather_positions(hidden, positions)?;
        self.lm_logits(&picked, hooks, ctx)
    }

    /// Embeds `ids` `[batch, seq]` through the (hookable) embedding table.
    fn embed_tokens(&self, ids: &Tensor, hooks: &dyn Hooks, ctx: &mut ForwardCtx) -> Result<Tensor> {
        let (batch, seq) = ids.dims2()?;
        let table = self.embed.resolve(hooks, ctx)?;
        let words =
            table
                .index_select(&ids.flatten_all()?, 0)?
                .reshape((batch, seq, self.config.hidden_size))?;
        hooks.base_lookup(self.embed.name(), ids, words, ctx)
    }

    /// A pass over fresh sequences (forward and prefill): the final hidden state, the mask
    /// over it, and the layout of its keys. With `record`, every layer's keys and values are
    /// kept there.
    fn run_fresh(
        &self,
        input: &DecoderInput,
        mut record: Option<&mut Vec<Option<cache::LayerKv>>>,
        hooks: &dyn Hooks,
        ctx: &mut ForwardCtx,
    ) -> Result<(Tensor, Tensor, Layout)> {
        let fresh = self.embed_fresh(input, hooks, ctx)?;
        let mut x = fresh.embedded;
        for (i, block) in self.blocks.iter().enumerate() {
            let kv = match record.as_deref_mut() {
                Some(slots) => Kv::Record(&mut slots[i]),
                None => Kv::Discard,
            };
            x = block.forward(i, &x, &fresh.pass, kv, hooks, ctx)?;
        }
        let hidden = self.norm.forward(&x, hooks, ctx)?;
        Ok((hidden, fresh.mask, fresh.layout))
    }

    /// Validates a batch of fresh sequences and embeds it: the blocks' input, the mask over it
    /// (prompt rows included) and the pass's tables.
    fn embed_fresh(&self, input: &DecoderInput, hooks: &dyn Hooks, ctx: &mut ForwardCtx) -> Result<Fresh> {
        let (batch, seq) = input.input_ids.dims2()?;
        if batch == 0 || seq == 0 {
            return Err(ModelError::BadInput("empty batch".into()));
        }
        if input.attention_mask.dims() != [batch, seq] {
            return Err(ModelError::BadInput(format!(
                "attention mask has shape {:?}, input ids [{batch}, {seq}]",
                input.attention_mask.dims()
            )));
        }
        let ids = input.input_ids.to_dtype(DType::U32)?;
        self.check_ids(&ids.flatten_all()?.to_vec1::<u32>()?)?;
        let words = self.embed_tokens(&ids, hooks, ctx)?;
        let (embedded, mask) = hooks.embeddings(words, input.attention_mask.clone(), ctx)?;
        let total = embedded.dim(1)?;
        if total < seq || mask.dims() != [batch, total] {
            return Err(ModelError::BadInput(
                "an embeddings hook may only prepend positions (to the embeddings and the mask alike)".into(),
            ));
        }
        let host_mask = mask.to_dtype(DType::U32)?.flatten_all()?.to_vec1::<u32>()?;
        let (layout, positions) = Layout::fresh(&host_mask, batch, total, hooks.position_offset());
        self.check_positions(layout.positions_used())?;
        let pass = Pass::new(
            &layout,
            total,
            &positions,
            &self.rotary,
            self.config.sliding_window,
            &self.device,
        )?;
        Ok(Fresh {
            embedded,
            mask,
            layout,
            pass,
        })
    }

    /// An id past the vocabulary would make the lookup read outside the table.
    fn check_ids(&self, ids: &[u32]) -> Result<()> {
        let vocab = self.config.vocab_size;
        match ids.iter().find(|&&id| id as usize >= vocab) {
            Some(bad) => Err(ModelError::BadInput(format!(
                "token id {bad} is out of range (vocabulary size {vocab})"
            ))),
            None => Ok(()),
        }
    }

    fn check_positions(&self, used: usize) -> Result<()> {
        let max = self.config.max_position_embeddings;
        if used > max {
            return Err(ModelError::BadInput(format!(
                "the sequence needs {used} positions (prompt rows, prefix shift and tokens), \
                 more than the model's {max} (max_position_embeddings)"
            )));
        }
        Ok(())
    }
}

/// A batch of fresh sequences, embedded: what every block of the pass shares.
struct Fresh {
    embedded: Tensor,
    mask: Tensor,
    layout: Layout,
    pass: Pass,
}

impl DecoderModel {
    /// Forward and backward with activation checkpointing per block, as
    /// [`crate::EncoderModel::backward_checkpointed`]: the forward keeps only each block's input
    /// and random stream, and the backward recomputes one block at a time, so the gradients are
    /// those of the plain forward for one extra forward of the blocks.
    ///
    /// `tail` maps the last hidden state (after the final norm, as [`DecoderModel::forward`]
    /// returns it) and its mask to the scalar loss (typically [`DecoderModel::logits_at`] and a
    /// cross-entropy); gradients are returned for `vars`, summed over every place they are used.
    pub fn backward_checkpointed(
        &self,
        input: &DecoderInput,
        hooks: &dyn Hooks,
        ctx: &mut ForwardCtx,
        vars: &[&candle_core::Var],
        tail: &mut dyn FnMut(&Tensor, &Tensor, &mut ForwardCtx) -> Result<Tensor>,
    ) -> Result<CheckpointedBackward> {
        let fresh = self.embed_fresh(input, hooks, ctx)?;
        let mut saved = Vec::with_capacity(self.blocks.len());
        let mut hidden = fresh.embedded.detach();
        for (i, block) in self.blocks.iter().enumerate() {
            saved.push((hidden.clone(), ctx.fork()));
            hidden = block
                .forward(i, &hidden, &fresh.pass, Kv::Discard, hooks, ctx)?
                .detach();
        }
        let mut grads: Vec<Option<Tensor>> = vec![None; vars.len()];
        let mut collect = |store: &candle_core::backprop::GradStore| -> Result<()> {
            for (acc, var) in grads.iter_mut().zip(vars) {
                if let Some(g) = store.get(var) {
                    *acc = Some(match acc.take() {
                        Some(a) => (a + g)?,
                        None => g.clone(),
                    });
                }
            }
            Ok(())
        };
        // The final norm belongs to the tail's graph: its (hookable) scale gets its gradient there.
        let last = candle_core::Var::from_tensor(&hidden)?;
        let normed = self.norm.forward(last.as_tensor(), hooks, ctx)?;
        let loss = tail(&normed, &fresh.mask, ctx)?;
        let store = loss.backward()?;
        collect(&store)?;
        let mut upstream = upstream_grad(&store, &last)?;
        drop(store);
        for (i, (input, mut block_ctx)) in saved.into_iter().enumerate().rev() {
            let x = candle_core::Var::from_tensor(&input)?;
            let y =
                self.blocks[i].forward(i, x.as_tensor(), &fresh.pass, Kv::Discard, hooks, &mut block_ctx)?;
            let store = (y * &upstream)?.sum_all()?.backward()?;
            collect(&store)?;
            upstream = upstream_grad(&store, &x)?;
        }
        if fresh.embedded.track_op() {
            collect(&(fresh.embedded * &upstream)?.sum_all()?.backward()?)?;
        }
        Ok(CheckpointedBackward { loss, grads })
    }
}

impl BaseModel for DecoderModel {
    fn shape(&self) -> ModelShape {
        let mut shape = ModelShape::of_decoder(&self.config);
        shape.base_params = self.num_base_params();
        shape.base_tensors = self.base.len();
        shape
    }

    fn base_params(&self) -> &BTreeMap<String, Tensor> {
        &self.base
    }

    fn weight_name(&self, layer: usize, proj: Proj) -> Option<String> {
        let module = match proj {
            Proj::Query => "self_attn.q_proj",
            Proj::Key => "self_attn.k_proj",
            Proj::Value => "self_attn.v_proj",
            Proj::AttnOut => "self_attn.o_proj",
            Proj::FfnGate => "mlp.gate_proj",
            Proj::FfnUp => "mlp.up_proj",
            Proj::FfnDown => "mlp.down_proj",
            Proj::CrossQuery | Proj::CrossKey | Proj::CrossValue | Proj::CrossOut => return None,
        };
        (layer < self.config.num_layers).then(|| format!("model.layers.{layer}.{module}.weight"))
    }

    fn layer_of(&self, name: &str) -> Option<usize> {
        name.strip_prefix("model.layers.")?
            .split('.')
            .next()?
            .parse()
            .ok()
    }

    fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    fn device(&self) -> &Device {
        &self.device
    }
}
