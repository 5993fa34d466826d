//! BART, mBART and Marian encoder-decoders: the same hook points as the BERT encoder, over two
//! stacks. The families differ only in LayerNorm placement (`block.rs`), position embeddings
//! and `layernorm_embedding` (`embed.rs`) and the decoder's first token
//! ([`Seq2SeqModel::shift_right`]).
//!
//! Blocks are numbered over both stacks, encoder first ([`crate::ModelShape::stacks`]): with
//! `Le` encoder blocks, decoder block `n` is hook `layer` `Le + n`. A decoder block calls the
//! hooks of three sub-layers, [`crate::Sublayer::Attention`] (causal self-attention),
//! [`crate::Sublayer::CrossAttention`] (queries from the decoder, keys and values from the encoder
//! output, the `Cross*` projections) and [`crate::Sublayer::Ffn`]. [`Hooks::kv_prefix`] is asked once
//! per attention: encoder self-attention, decoder self-attention (prefix columns are visible to
//! every decoder token) and cross-attention.
//!
//! [`Hooks::embeddings`] acts on the encoder's token embeddings (prompt tuning), after
//! `scale_embedding`; [`Hooks::position_offset`] shifts the decoder's positions, as
//! transformers does when prefixes arrive as past keys and values (the encoder's never move).
//!
//! Decoding: [`Seq2SeqModel::encode`] once, [`Seq2SeqModel::prefill`] with the decoder's start
//! tokens (computing every cross-attention's keys and values, prefixes included, once), then
//! [`Seq2SeqModel::step`] per token; [`Seq2SeqModel::select_rows`] reorders or expands the
//! cache for beam search. [`Seq2SeqModel::lm_logits`] turns only the hidden states a caller
//! needs into logits.

mod attention;
mod block;
mod config;
mod embed;

pub use config::{Seq2SeqConfig, Seq2SeqFamily};

use crate::base::{BaseLayerNorm, BaseParam, Loader};
use crate::model_dir::ModelDir;
use crate::weights::{Checkpoint, Fingerprint};
use crate::{
    AttentionKind, BaseModel, EncoderOutput, ForwardCtx, Hooks, ModelError, ModelShape, Precision, Proj,
    Result, StackShape,
};
use attention::key_bias;
use block::{BlockCache, CrossInput, DecoderBlock, EncoderBlock};
use candle_core::{DType, Device, Tensor};
use embed::StackEmbeddings;
use std::collections::BTreeMap;

/// One batch for a full forward, row-major u32 tensors.
#[derive(Debug, Clone)]
pub struct Seq2SeqInput {
    /// Encoder token ids `[batch, s]`.
    pub input_ids: Tensor,
    /// 1 for real encoder tokens, 0 for padding `[batch, s]`.
    pub attention_mask: Tensor,
    /// Decoder token ids `[batch, t]` (the labels shifted right: [`Seq2SeqModel::shift_right`]).
    pub decoder_input_ids: Tensor,
    /// 1 for real decoder tokens, 0 for padding `[batch, t]`; `None` attends every earlier
    /// token, as transformers does without a `decoder_attention_mask`.
    pub decoder_attention_mask: Option<Tensor>,
}

/// The decoder's state between decoding steps: per decoder block, the self-attention keys and
/// values so far and the cross-attention keys and values (prefixes included), one row per
/// hypothesis.
#[derive(Debug, Clone)]
pub struct Seq2SeqCache {
    blocks: Vec<BlockCache>,
    /// Decoder tokens seen so far (their positions are `offset..offset + len`).
    len: usize,
    /// The position shift the hooks asked for at prefill.
    offset: usize,
}

impl Seq2SeqCache {
    /// Number of rows (hypotheses).
    pub fn rows(&self) -> Result<usize> {
        match self.blocks.first() {
            Some(b) => Ok(b.own.keys.dim(0)?),
            None => Ok(0),
        }
    }

    /// Decoder tokens seen so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no token has been decoded (never true of a cache from [`Seq2SeqModel::prefill`]).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A pretrained BART, mBART or Marian: frozen weights plus the encoder and decoder forward
/// passes with hook points.
#[derive(Debug)]
pub struct Seq2SeqModel {
    config: Seq2SeqConfig,
    shared: BaseParam,
    /// The LM head's weight: `shared` itself when tied.
    lm_head: Option<BaseParam>,
    /// `final_logits_bias` `[1, vocab]`: a buffer in transformers, not a parameter.
    logits_bias: Tensor,
    encoder_embed: StackEmbeddings,
    decoder_embed: StackEmbeddings,
    encoder: Vec<EncoderBlock>,
    decoder: Vec<DecoderBlock>,
    encoder_norm: Option<BaseLayerNorm>,
    decoder_norm: Option<BaseLayerNorm>,
    base: BTreeMap<String, Tensor>,
    extra: BTreeMap<String, Tensor>,
    fingerprint: Fingerprint,
    device: Device,
    precision: Precision,
}

/// Checkpoint copies of the shared table that transformers ties to it instead of loading.
const TIED_COPIES: [&str; 3] = [
    "encoder.embed_tokens.weight",
    "decoder.embed_tokens.weight",
    "lm_head.weight",
];

impl Seq2SeqModel {
    /// Loads the model in `dir` onto `device`.
    pub fn load(dir: &ModelDir, device: &Device) -> Result<Self> {
        Self::load_with_precision(dir, device, Precision::F32)
    }

    /// Loads the model in `dir` onto `device` with its frozen linears in `precision`.
    pub fn load_with_precision(dir: &ModelDir, device: &Device, precision: Precision) -> Result<Self> {
        precision.check(device)?;
        let config = Seq2SeqConfig::from_file(&dir.config_path())?;
        // `BartForConditionalGeneration` nests everything but the LM head under `model.`.
        let ckpt = Checkpoint::load(dir.weight_files(), "model.", device)?;
        Self::build(config, ckpt, device, precision)
    }

    /// Builds the model from an already-read config and checkpoint (names without `model.`).
    pub fn from_checkpoint(config: Seq2SeqConfig, ckpt: Checkpoint, device: &Device) -> Result<Self> {
        Self::build(config, ckpt, device, Precision::F32)
    }

    fn build(
        config: Seq2SeqConfig,
        mut ckpt: Checkpoint,
        device: &Device,
        precision: Precision,
    ) -> Result<Self> {
        let fingerprint = ckpt.fingerprint().clone();
        let (v, d) = (config.vocab_size, config.d_model);
        let logits_bias = match ckpt.take_optional("final_logits_bias", &[1, v])? {
            Some(t) => t,
            // transformers lists it in `_keys_to_ignore_on_load_missing` and starts it at zero.
            None => Tensor::zeros((1, v), DType::F32, device)?,
        };
        // Older checkpoints may store the table only under a stack's name.
        let shared_name = ["shared.weight", TIED_COPIES[0], TIED_COPIES[1]]
            .into_iter()
            .find(|n| ckpt.contains(n))
            .unwrap_or("shared.weight");
        let mut loader = Loader::new(&mut ckpt, precision.linear_dtype());
        let shared = loader.param(shared_name, &[v, d])?;
        let lm_head = if config.tie_word_embeddings {
            None
        } else {
            Some(loader.param("lm_head.weight", &[v, d])?)
        };
        let encoder_embed = StackEmbeddings::load(&mut loader, &config, "encoder", device)?;
        let decoder_embed = StackEmbeddings::load(&mut loader, &config, "decoder", device)?;
        let encoder = (0..config.encoder_layers)
            .map(|i| EncoderBlock::load(&mut loader, &config, i))
            .collect::<Result<Vec<_>>>()?;
        let decoder = (0..config.decoder_layers)
            .map(|i| DecoderBlock::load(&mut loader, &config, i))
            .collect::<Result<Vec<_>>>()?;
        let (encoder_norm, decoder_norm) = if config.family.pre_norm() {
            (
                Some(loader.layer_norm("encoder.layer_norm", d, config.layer_norm_eps)?),
                Some(loader.layer_norm("decoder.layer_norm", d, config.layer_norm_eps)?),
            )
        } else {
            (None, None)
        };
        let base = loader.into_taken();
        let mut extra = ckpt.into_remaining();
        if config.tie_word_embeddings {
            for name in TIED_COPIES {
                extra.remove(name);
            }
        }
        Ok(Self {
            config,
            shared,
            lm_head,
            logits_bias,
            encoder_embed,
            decoder_embed,
            encoder,
            decoder,
            encoder_norm,
            decoder_norm,
            base,
            extra,
            fingerprint,
            device: device.clone(),
            precision,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Seq2SeqConfig {
        &self.config
    }

    /// The precision the frozen linears compute in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Checkpoint tensors the architecture does not use (heads of other tasks).
    pub fn extra_tensors(&self) -> &BTreeMap<String, Tensor> {
        &self.extra
    }

    /// The encoder's last hidden state `[batch, s', d]` and the mask over it (longer than the
    /// input when [`Hooks::embeddings`] prepends prompt rows).
    ///
    /// Errors: an empty batch, mismatched shapes, a token id outside the vocabulary, a source
    /// longer than the position table.
    pub fn encode(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        hooks: &dyn Hooks,
        ctx: &mut ForwardCtx,
    ) -> Result<EncoderOutput> {
        let (batch, seq) = check_batch("input_ids", input_ids)?;
        check_mask("attention_mask", attention_mask, (batch, seq))?;
        let c = &self.config;
        let words = embed::lookup_tokens(&self.shared, input_ids, c, hooks, ctx)?;
        let (words, mask) = hooks.embeddings(words, attention_mask.clone(), ctx)?;
        if words.dim(1)? < seq || mask.dims() != [batch, words.dim(1)?] {
            return Err(ModelError::BadInput(
                "an embeddings hook may only prepend positions, to the words and the mask alike".into(),
            ));
        }
        let mut hidden = self.encoder_embed.forward(&words, 0, c, "source", hooks, ctx)?;
        let bias = key_bias(&mask)?;
        for (i, block) in self.encoder.iter().enumerate() {
            hidden = block.forward(i, &hidden, &bias, hooks, ctx)?;
        }
        if let Some(norm) = &self.encoder_norm {
            hidden = norm.forward(&hidden, hooks, ctx)?;
        }
        Ok(EncoderOutput { hidden, mask })
    }

    /// The decoder's last hidden state `[batch, t, d]` for `decoder_input_ids` `[batch, t]`
    /// attending to `encoded` (teacher forcing: every position at once, causally masked).
    pub fn decode(
        &self,
        encoded: &EncoderOutput,
        decoder_input_ids: &Tensor,
        decoder_attention_mask: Option<&Tensor>,
        hooks: &dyn Hooks,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        Ok(self
            .run_decoder(encoded, decoder_input_ids, decoder_attention_mask, hooks, ctx)?
            .0)
    }

    /// Encoder and decoder over one batch: the encoder output and the decoder's last hidden
    /// state (turn the positions you need into logits with [`Seq2SeqModel::lm_logits`]).
    pub fn forward(
        &self,
        input: &Seq2SeqInput,
        hooks: &dyn Hooks,
        ctx: &mut ForwardCtx,
    ) -> Result<(EncoderOutput, Tensor)> {
        let encoded = self.encode(&input.input_ids, &input.attention_mask, hooks, ctx)?;
        let hidden = self.decode(
            &encoded,
            &input.decoder_input_ids,
            input.decoder_attention_mask.as_ref(),
            hooks,
            ctx,
        )?;
        Ok((encoded, hidden))
    }

    /// LM logits `[…, vocab]` of decoder hidden states `[…, d]`: the (tied) LM head plus
    /// `final_logits_bias`.
    pub fn lm_logits(&self, hidden: &Tensor, hooks: &dyn Hooks, ctx: &mut ForwardCtx) -> Result<Tensor> {
        let head = self.lm_head.as_ref().unwrap_or(&self.shared);
        let w = head.resolve(hooks, ctx)?;
        let y = petl_ops::linear(hidden, &w, None)?;
        let y = hooks.base_linear(head.name(), hidden, y, ctx)?;
        Ok(y.broadcast_add(&self.logits_bias)?)
    }

    /// LM logits `[positions.len(), vocab]` of the decoder hidden states `[batch, t, d]` at
    /// `(row, position)` pairs: the head only where a loss is scored.
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

    /// Starts decoding: runs `decoder_start` `[batch, t]` (t ≥ 1, e.g. BART's
    /// `[[decoder_start_token_id]]` per row) over `encoded` and returns the cache and the
    /// next-token logits of each row `[batch, vocab]`.
    pub fn prefill(
        &self,
        encoded: &EncoderOutput,
        decoder_start: &Tensor,
        hooks: &dyn Hooks,
        ctx: &mut ForwardCtx,
    ) -> Result<(Seq2SeqCache, Tensor)> {
        let (hidden, cache) = self.run_decoder(encoded, decoder_start, None, hooks, ctx)?;
        let t = hidden.dim(1)?;
        let last = hidden.narrow(1, t - 1, 1)?.squeeze(1)?;
        Ok((cache, self.lm_logits(&last, hooks, ctx)?))
    }

    /// Appends `tokens[i]` to row `i` of `cache` and returns each row's next-token logits
    /// `[rows, vocab]`. Cross-attention reuses the cached keys and values; prefixes are not
    /// asked for again.
    pub fn step(
        &self,
        cache: &mut Seq2SeqCache,
        tokens: &[u32],
        hooks: &dyn Hooks,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        let rows = cache.rows()?;
        if tokens.len() != rows {
            return Err(ModelError::BadInput(format!(
                "a decoding step needs one token per cache row: {} tokens for {rows} rows",
                tokens.len()
            )));
        }
        let ids = Tensor::from_slice(tokens, (rows, 1), &self.device)?;
        let c = &self.config;
        let words = embed::lookup_tokens(&self.shared, &ids, c, hooks, ctx)?;
        let first = cache.offset + cache.len;
        let mut hidden = self
            .decoder_embed
            .forward(&words, first, c, "decoder", hooks, ctx)?;
        let bias = Tensor::zeros((rows, 1, 1, 1), DType::F32, &self.device)?;
        let le = self.config.encoder_layers;
        for (i, block) in self.decoder.iter().enumerate() {
            let cross = CrossInput::Cached(&cache.blocks[i]);
            let (h, next) = block.forward(le + i, &hidden, &bias, cross, hooks, ctx)?;
            hidden = h;
            cache.blocks[i] = next;
        }
        cache.len += 1;
        if let Some(norm) = &self.decoder_norm {
            hidden = norm.forward(&hidden, hooks, ctx)?;
        }
        self.lm_logits(&hidden.squeeze(1)?, hooks, ctx)
    }

    /// Rebuilds `cache` so that its row `j` is the former row `rows[j]`: beam reordering and
    /// expansion (rows may repeat) or dropping finished rows.
    pub fn select_rows(&self, cache: &mut Seq2SeqCache, rows: &[usize]) -> Result<()> {
        let n = cache.rows()?;
        if let Some(&bad) = rows.iter().find(|&&r| r >= n) {
            return Err(ModelError::BadInput(format!(
                "cache row {bad} does not exist (the cache has {n} rows)"
            )));
        }
        if rows.is_empty() {
            return Err(ModelError::BadInput("a cache needs at least one row".into()));
        }
        let index: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
        let index = Tensor::from_vec(index, rows.len(), &self.device)?;
        for block in &mut cache.blocks {
            *block = BlockCache {
                own: block.own.select(&index)?,
                cross: block.cross.select(&index)?,
            };
        }
        Ok(())
    }

    /// The decoder inputs for `labels` `[batch, t]` (right-padded with `pad_token_id`), as
    /// transformers' `shift_tokens_right` makes them: BART and Marian put
    /// `decoder_start_token_id` first (Marian's is the padding token); mBART moves each row's
    /// last non-pad token (its language code) to the front.
    pub fn shift_right(&self, labels: &Tensor) -> Result<Tensor> {
        let (batch, t) = check_batch("labels", labels)?;
        let pad = self.config.pad_token_id;
        let rows = labels.to_vec2::<u32>()?;
        let mut out = Vec::with_capacity(batch * t);
        for row in rows {
            let start = match self.config.family {
                Seq2SeqFamily::Bart | Seq2SeqFamily::Marian => self
                    .config
                    .decoder_start_token_id
                    .ok_or_else(|| ModelError::InvalidConfig {
                        field: "decoder_start_token_id",
                        reason: format!("{} needs it to shift labels right", self.config.model_type),
                    })?,
                Seq2SeqFamily::Mbart => {
                    let real = row.iter().filter(|&&id| id != pad).count();
                    row[real.saturating_sub(1)]
                }
            };
            out.push(start);
            out.extend_from_slice(&row[..t - 1]);
        }
        Ok(Tensor::from_vec(out, (batch, t), labels.device())?)
    }

    /// The decoder over `ids` `[batch, t]` from an empty cache: hidden states and the cache.
    fn run_decoder(
        &self,
        encoded: &EncoderOutput,
        ids: &Tensor,
        mask: Option<&Tensor>,
        hooks: &dyn Hooks,
        ctx: &mut ForwardCtx,
    ) -> Result<(Tensor, Seq2SeqCache)> {
        let (batch, t) = check_batch("decoder_input_ids", ids)?;
        let (eb, es, ed) = encoded.hidden.dims3()?;
        if eb != batch || ed != self.config.d_model {
            return Err(ModelError::BadInput(format!(
                "the encoder output is [{eb}, {es}, {ed}]; the decoder batch needs [{batch}, _, {}]",
                self.config.d_model
            )));
        }
        check_mask("encoder mask", &encoded.mask, (batch, es))?;
        let bias = match mask {
            Some(m) => {
                check_mask("decoder_attention_mask", m, (batch, t))?;
                key_bias(m)?
            }
            None => Tensor::zeros((batch, 1, 1, t), DType::F32, &self.device)?,
        };
        let c = &self.config;
        let offset = hooks.position_offset();
        let words = embed::lookup_tokens(&self.shared, ids, c, hooks, ctx)?;
        let mut hidden = self
            .decoder_embed
            .forward(&words, offset, c, "decoder", hooks, ctx)?;
        let source_bias = key_bias(&encoded.mask)?;
        let le = self.config.encoder_layers;
        let mut blocks = Vec::with_capacity(self.decoder.len());
        for (i, block) in self.decoder.iter().enumerate() {
            let cross = CrossInput::Source {
                hidden: &encoded.hidden,
                bias: &source_bias,
            };
            let (h, cache) = block.forward(le + i, &hidden, &bias, cross, hooks, ctx)?;
            hidden = h;
            blocks.push(cache);
        }
        if let Some(norm) = &self.decoder_norm {
            hidden = norm.forward(&hidden, hooks, ctx)?;
        }
        Ok((
            hidden,
            Seq2SeqCache {
                blocks,
                len: t,
                offset,
            },
        ))
    }
}

/// `[batch, seq]` u32 ids with both dimensions non-zero.
fn check_batch(what: &str, ids: &Tensor) -> Result<(usize, usize)> {
    let (batch, seq) = ids.dims2().map_err(|_| {
        ModelError::BadInput(format!("{what} must be [batch, seq], got shape {:?}", ids.dims()))
    })?;
    if batch == 0 || seq == 0 {
        return Err(ModelError::BadInput(format!(
            "{what} is empty ([{batch}, {seq}])"
        )));
    }
    if ids.dtype() != DType::U32 {
        return Err(ModelError::BadInput(format!(
            "{what} must be u32, got {:?}",
            ids.dtype()
        )));
    }
    Ok((batch, seq))
}

fn check_mask(what: &str, mask: &Tensor, dims: (usize, usize)) -> Result<()> {
    if mask.dims() != [dims.0, dims.1] {
        return Err(ModelError::BadInput(format!(
            "{what} has shape {:?}, the ids {:?}",
            mask.dims(),
            [dims.0, dims.1]
        )));
    }
    Ok(())
}

impl BaseModel for Seq2SeqModel {
    fn shape(&self) -> ModelShape {
        let c = &self.config;
        let d = c.d_model;
        ModelShape {
            model_type: c.model_type.clone(),
            hidden_size: d,
            num_heads: c.num_heads,
            head_dim: c.head_dim(),
            kv_dim: d,
            intermediate_size: c.ffn_dim,
            gated_ffn: false,
            stacks: vec![
                StackShape {
                    name: "encoder",
                    layers: c.encoder_layers,
                    attention: vec![AttentionKind::SelfAttention],
                },
                StackShape {
                    name: "decoder",
                    layers: c.decoder_layers,
                    attention: vec![AttentionKind::SelfAttention, AttentionKind::CrossAttention],
                },
            ],
            base_params: self.num_base_params(),
            bias_params: self
                .base
                .iter()
                .filter(|(n, _)| n.ends_with(".bias"))
                .map(|(_, t)| t.elem_count())
                .sum(),
            base_tensors: self.base.len(),
        }
    }

    fn base_params(&self) -> &BTreeMap<String, Tensor> {
        &self.base
    }

    fn weight_name(&self, layer: usize, proj: Proj) -> Option<String> {
        let le = self.config.encoder_layers;
        let (stack, index) = if layer < le {
            ("encoder", layer)
        } else if layer < le + self.config.decoder_layers {
            ("decoder", layer - le)
        } else {
            return None;
        };
        let module = match proj {
            Proj::Query => "self_attn.q_proj",
            Proj::Key => "self_attn.k_proj",
            Proj::Value => "self_attn.v_proj",
            Proj::AttnOut => "self_attn.out_proj",
            Proj::FfnUp => "fc1",
            Proj::FfnDown => "fc2",
            Proj::CrossQuery if stack == "decoder" => "encoder_attn.q_proj",
            Proj::CrossKey if stack == "decoder" => "encoder_attn.k_proj",
            Proj::CrossValue if stack == "decoder" => "encoder_attn.v_proj",
            Proj::CrossOut if stack == "decoder" => "encoder_attn.out_proj",
            _ => return None,
        };
        Some(format!("{stack}.layers.{index}.{module}.weight"))
    }

    fn layer_of(&self, name: &str) -> Option<usize> {
        let block = |rest: &str| rest.split('.').next()?.parse::<usize>().ok();
        if let Some(rest) = name.strip_prefix("encoder.layers.") {
            block(rest).filter(|&n| n < self.config.encoder_layers)
        } else if let Some(rest) = name.strip_prefix("decoder.layers.") {
            block(rest)
                .filter(|&n| n < self.config.decoder_layers)
                .map(|n| self.config.encoder_layers + n)
        } else {
            None
        }
    }

    fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    fn device(&self) -> &Device {
        &self.device
    }
}
