//! One generation task's trainable state on a shared base: the language-modelling loss and
//! decoding.

use super::base::{GenArch, GenBase, Seq2SeqFormat};
use super::codec::GenBatch;
use super::stepper::{DecoderStepper, Seq2SeqStepper};
use super::task::GenTask;
use crate::artifact_io::{self, bad_meta, ArtifactRecord, StoredDelta};
use crate::{Result, TrainError};
use candle_core::Tensor;
use petl_data::{CausalBatch, Seq2SeqBatch, IGNORE_INDEX};
use petl_generate::{GenerateError, Generation, GenerationConfig, Generator, StepModel, TokenSink};
use petl_methods::{Delta, Method};
use petl_models::{BaseModel, DecoderInput, DecoderModel, ForwardCtx, ModelError, ParamStore, Seq2SeqInput};
use petl_sparse::{SizeReport, SparseDiff, ValueDType};
use std::collections::BTreeMap;
use std::path::Path;

/// A generation base with one task's delta: what trains, what an artifact stores, and the
/// hooks decoding runs with.
#[derive(Debug)]
pub struct GenTaskModel<'m> {
    base: &'m GenBase,
    store: ParamStore,
    delta: Delta,
    /// The task description an artifact records.
    task: serde_json::Value,
    /// How targets are laid out, for an encoder-decoder base.
    format: Option<Seq2SeqFormat>,
    /// How a sparse diff's values are stored.
    value_dtype: ValueDType,
}

impl<'m> GenTaskModel<'m> {
    /// A fresh delta of `method` on `base`, initialised from `seed`. `task` is what the
    /// artifact records (`{"kind": "generation", "task": …}`); a translation task's target
    /// language picks mBART's language code.
    pub fn new(base: &'m GenBase, method: &Method, task: serde_json::Value, seed: u64) -> Result<Self> {
        Self::with_sparse_diff(base, method, task, seed, None)
    }

    /// [`GenTaskModel::new`] with the sparse diff's positions and values given (a method with a
    /// `sparse_diff` delta needs them).
    pub fn with_sparse_diff(
        base: &'m GenBase,
        method: &Method,
        task: serde_json::Value,
        seed: u64,
        sparse: Option<&SparseDiff>,
    ) -> Result<Self> {
        let mut store = ParamStore::new(base.device(), seed);
        let delta = Delta::build_with_diff(method, base, &mut store, sparse)?;
        let target_language = task
            .get("task")
            .and_then(|t| serde_json::from_value::<GenTask>(t.clone()).ok())
            .and_then(|t| t.target_language().map(str::to_string));
        let format = base.seq2seq_format(target_language.as_deref())?;
        Ok(Self {
            base,
            store,
            delta,
            task,
            format,
            value_dtype: artifact_io::value_dtype_of(method),
        })
    }

    /// The frozen base alone (no delta): what a task scores before any tuning.
    pub fn frozen(base: &'m GenBase, task: serde_json::Value) -> Result<Self> {
        let none = Method {
            name: "frozen".into(),
            deltas: Vec::new(),
        };
        Self::new(base, &none, task, 0)
    }

    /// The base model.
    pub fn base(&self) -> &GenBase {
        self.base
    }

    /// The method.
    pub fn method(&self) -> &Method {
        self.delta.method()
    }

    /// The delta (the hooks the model runs with).
    pub fn delta(&self) -> &Delta {
        &self.delta
    }

    /// The trainable parameters.
    pub fn params(&self) -> &ParamStore {
        &self.store
    }

    /// The task description an artifact records.
    pub fn task(&self) -> &serde_json::Value {
        &self.task
    }

    /// Sets how a sparse diff's values are written.
    pub fn set_value_dtype(&mut self, dtype: ValueDType) {
        self.value_dtype = dtype;
    }

    /// Copies every parameter of `other` this model also has — all but a sparse diff's
    /// values — so that a projected model keeps the method's other deltas.
    pub(crate) fn copy_dense_params_from(&self, other: &GenTaskModel<'_>) -> Result<()> {
        for (name, var) in self.store.iter() {
            if self.delta.is_sparse_param(name) {
                continue;
            }
            match other.store.get(name) {
                Some(src) if src.dims() == var.dims() => var.set(src.as_tensor())?,
                _ => {
                    return Err(TrainError::Config {
                        field: "method",
                        reason: format!(
                            "the source model has no parameter `{name}` of shape {:?}",
                            var.dims()
                        ),
                    })
                }
            }
        }
        Ok(())
    }

    /// The parameters and delta an optimizer step updates.
    pub(crate) fn trained(&self) -> crate::step::Trained<'_> {
        crate::step::Trained {
            params: &self.store,
            delta: &self.delta,
        }
    }

    /// The summed per-token loss of `batch` (cross-entropy with `label_smoothing` at every
    /// scored label) and the number of scored tokens. The LM head runs at the scored positions
    /// only: prompts and padding never reach the vocabulary projection.
    pub fn loss_sum(
        &self,
        batch: &GenBatch,
        label_smoothing: f64,
        ctx: &mut ForwardCtx,
    ) -> Result<(Tensor, usize)> {
        match (self.base.arch(), batch) {
            (GenArch::Decoder(model), GenBatch::Causal(b)) => {
                self.causal(model).loss_sum(b, label_smoothing, ctx)
            }
            (GenArch::Seq2Seq(model), GenBatch::Seq2Seq(b)) => {
                let (logits, targets) = self.seq2seq_logits(model, b, ctx)?;
                token_loss_sum(&logits, targets, label_smoothing)
            }
            _ => Err(TrainError::Config {
                field: "data",
                reason: format!(
                    "the batch was encoded for another architecture than the base's ({})",
                    self.base.model_type()
                ),
            }),
        }
    }

    /// `weight ·` the summed token loss of a decoder-only `batch` (what [`GenTaskModel::loss_sum`]
    /// computes) and the gradient of every trainable parameter, with activation checkpointing
    /// per block ([`petl_models::DecoderModel::backward_checkpointed`]): the same gradients at a
    /// fraction of the activation memory, for one extra forward of the blocks. Returns the
    /// unweighted sum and the scored tokens too.
    pub fn loss_and_grads_checkpointed(
        &self,
        batch: &GenBatch,
        label_smoothing: f64,
        weight: f64,
        ctx: &mut ForwardCtx,
    ) -> Result<(f64, usize, BTreeMap<String, Tensor>)> {
        let (GenArch::Decoder(model), GenBatch::Causal(b)) = (self.base.arch(), batch) else {
            return Err(TrainError::Config {
                field: "train.checkpoint_activations",
                reason: format!(
                    "activation checkpointing is implemented for decoder-only bases, not {}",
                    self.base.model_type()
                ),
            });
        };
        self.causal(model)
            .loss_and_grads_checkpointed(b, label_smoothing, weight, ctx)
    }

    /// The decoder base `model` with this task's delta, as a causal language model.
    fn causal<'a>(&'a self, model: &'a DecoderModel) -> CausalLm<'a> {
        CausalLm {
            model,
            delta: &self.delta,
            params: &self.store,
        }
    }

    /// Encoder-decoder: the decoder's logits at t are scored against the label at t (its
    /// inputs are the labels shifted right).
    fn seq2seq_logits(
        &self,
        model: &petl_models::Seq2SeqModel,
        batch: &Seq2SeqBatch,
        ctx: &mut ForwardCtx,
    ) -> Result<(Tensor, Vec<u32>)> {
        let device = self.base.device();
        let (rows, s, t) = (batch.batch_size, batch.source_len, batch.target_len);
        let input = Seq2SeqInput {
            input_ids: Tensor::from_slice(&batch.input_ids, (rows, s), device)?,
            attention_mask: Tensor::from_slice(&batch.attention_mask, (rows, s), device)?,
            decoder_input_ids: Tensor::from_slice(&batch.decoder_input_ids, (rows, t), device)?,
            decoder_attention_mask: Some(Tensor::from_slice(
                &batch.decoder_attention_mask,
                (rows, t),
                device,
            )?),
        };
        let (_, hidden) = model.forward(&input, &self.delta, ctx)?;
        let (positions, targets) = scored(&batch.labels, rows, t, 0)?;
        let logits = model.logits_at(&hidden, &positions, &self.delta, ctx)?;
        Ok((logits, targets))
    }

    /// Decodes continuations of `prompts` (for an encoder-decoder: the encoder's sources) with
    /// this task's delta, sending tokens to `sink` as they are chosen.
    pub fn generate(
        &self,
        prompts: &[&[u32]],
        config: &GenerationConfig,
        sink: &mut dyn TokenSink,
    ) -> Result<Vec<Generation>> {
        let pad = self.base.special().pad;
        match (self.base.arch(), &self.format) {
            (GenArch::Decoder(model), _) => {
                let stepper = DecoderStepper {
                    model,
                    hooks: &self.delta,
                    pad,
                };
                run_generator(&stepper, prompts, config, sink)
            }
            (GenArch::Seq2Seq(model), Some(format)) => {
                let stepper = Seq2SeqStepper {
                    model,
                    hooks: &self.delta,
                    pad,
                    decoder_start: format.decoder_start,
                };
                // The config's forced tokens, as transformers' `generate` applies them.
                let mut config = config.clone();
                config.forced_bos_token_id = config.forced_bos_token_id.or(format.forced_bos);
                config.forced_eos_token_id = config.forced_eos_token_id.or(format.forced_eos);
                run_generator(&stepper, prompts, &config, sink)
            }
            (GenArch::Seq2Seq(_), None) => Err(TrainError::Config {
                field: "model",
                reason: "an encoder-decoder base without a target layout".into(),
            }),
        }
    }

    /// What an artifact stores: the delta in its stored form (a sparse diff is written to its
    /// own file).
    pub fn stored_tensors(&self) -> Result<BTreeMap<String, Tensor>> {
        Ok(self.delta.stored_tensors(&self.store)?)
    }

    /// Writes the stored state as an artifact directory; returns the sparse diff file's size
    /// report when the method stores one.
    pub fn save_artifact(&self, dir: &Path) -> Result<Option<SizeReport>> {
        let record = ArtifactRecord {
            task: self.task.clone(),
            // The LM head is the base's; its width is the vocabulary.
            num_outputs: self.base.vocab_size(),
            pooling: Default::default(),
            base: self.base,
            base_model_type: self.base.model_type(),
            value_dtype: self.value_dtype,
        };
        artifact_io::write(dir, &self.delta, &self.store, record)
    }

    /// Loads an artifact written by [`GenTaskModel::save_artifact`] onto `base`; refuses one
    /// trained on another base, a classification artifact, or tensors that do not fit.
    pub fn from_artifact(base: &'m GenBase, dir: &Path) -> Result<Self> {
        let stored = StoredDelta::read(dir, base, base.model_type())?;
        let meta = &stored.meta;
        if meta.task.get("kind").and_then(|k| k.as_str()) != Some("generation") {
            return Err(TrainError::Config {
                field: "artifact",
                reason: format!(
                    "{} is not a generation artifact (its task is {})",
                    dir.display(),
                    meta.task
                ),
            });
        }
        if meta.num_outputs != base.vocab_size() {
            return Err(bad_meta(
                dir,
                format!(
                    "`num_outputs` is {}, but the base's vocabulary has {} tokens",
                    meta.num_outputs,
                    base.vocab_size()
                ),
            ));
        }
        let mut tm = Self::with_sparse_diff(
            base,
            &stored.method,
            meta.task.clone(),
            0,
            stored.sparse.as_ref().map(|d| &d.diff),
        )?;
        if let Some(d) = &stored.sparse {
            tm.value_dtype = d.dtype;
        }
        stored.fill(&tm.store, &tm.delta, dir)?;
        Ok(tm)
    }
}

/// A decoder-only model with a delta and its trainable parameters, as a causal language model:
/// the loss the generation trainer steps on, plain or with activation checkpointing. What
/// [`GenTaskModel`] computes on a decoder base, and what `petl bench` times on a bare decoder.
#[derive(Clone, Copy)]
pub(crate) struct CausalLm<'a> {
    /// The frozen decoder.
    pub(crate) model: &'a DecoderModel,
    /// The delta's hooks.
    pub(crate) delta: &'a Delta,
    /// The delta's trainable parameters.
    pub(crate) params: &'a ParamStore,
}

impl CausalLm<'_> {
    /// The summed per-token loss of `batch` and the number of scored tokens: logits at t − 1
    /// predict the label at t; the LM head runs at the scored positions only, so prompts and
    /// padding never reach the vocabulary projection.
    pub(crate) fn loss_sum(
        &self,
        batch: &CausalBatch,
        label_smoothing: f64,
        ctx: &mut ForwardCtx,
    ) -> Result<(Tensor, usize)> {
        let model = self.model;
        let (rows, seq) = (batch.batch_size, batch.seq_len);
        let input =
            DecoderInput::from_host(&batch.input_ids, &batch.attention_mask, rows, seq, model.device())?;
        let out = model.forward(&input, self.delta, ctx)?;
        // Prompt tuning prepends rows; the text's positions move along by as many.
        let shift = out.hidden.dim(1)? - seq;
        let (positions, targets) = scored(&batch.labels, rows, seq, 1)?;
        let positions: Vec<(usize, usize)> = positions.into_iter().map(|(r, t)| (r, shift + t)).collect();
        let logits = model.logits_at(&out.hidden, &positions, self.delta, ctx)?;
        token_loss_sum(&logits, targets, label_smoothing)
    }

    /// `weight ·` [`CausalLm::loss_sum`]'s loss and the gradient of every trainable parameter,
    /// with activation checkpointing per block; returns the unweighted sum and the scored
    /// tokens too.
    pub(crate) fn loss_and_grads_checkpointed(
        &self,
        batch: &CausalBatch,
        label_smoothing: f64,
        weight: f64,
        ctx: &mut ForwardCtx,
    ) -> Result<(f64, usize, BTreeMap<String, Tensor>)> {
        let (model, b) = (self.model, batch);
        let (rows, seq) = (b.batch_size, b.seq_len);
        let input = DecoderInput::from_host(&b.input_ids, &b.attention_mask, rows, seq, model.device())?;
        let (positions, targets) = scored(&b.labels, rows, seq, 1)?;
        let n = targets.len();
        let targets = Tensor::from_vec(targets, n, model.device())?;
        let (names, vars): (Vec<&str>, Vec<&candle_core::Var>) = self.params.iter().unzip();
        let mut tail =
            |hidden: &Tensor, _mask: &Tensor, ctx: &mut ForwardCtx| -> petl_models::Result<Tensor> {
                let shift = hidden.dim(1)? - seq;
                let at: Vec<(usize, usize)> = positions.iter().map(|&(r, t)| (r, shift + t)).collect();
                let logits = model.logits_at(hidden, &at, self.delta, ctx)?;
                let losses = petl_ops::token_cross_entropy(&logits, &targets, label_smoothing)?;
                Ok((losses.sum_all()? * weight)?)
            };
        let out = model.backward_checkpointed(&input, self.delta, ctx, &vars, &mut tail)?;
        let grads = names
            .into_iter()
            .zip(out.grads)
            .filter_map(|(name, g)| g.map(|g| (name.to_string(), g)))
            .collect();
        let sum = out.loss.to_scalar::<f32>()? as f64 / weight;
        Ok((sum, n, grads))
    }
}

/// The summed cross-entropy of `logits` `[n, vocab]` against `targets` (with
/// `label_smoothing`), and `n`.
fn token_loss_sum(logits: &Tensor, targets: Vec<u32>, label_smoothing: f64) -> Result<(Tensor, usize)> {
    let n = targets.len();
    let targets = Tensor::from_vec(targets, n, logits.device())?;
    let losses = petl_ops::token_cross_entropy(logits, &targets, label_smoothing)?;
    Ok((losses.sum_all()?, n))
}

/// Where a batch is scored: `(row, position)` pairs and the token expected at each.
type Scored = (Vec<(usize, usize)>, Vec<u32>);

/// The `(row, position)` of every scored label of `labels` `[rows, seq]` and its token, the
/// position moved back by `lag` (1 when the logits at t − 1 predict the token at t).
fn scored(labels: &[i64], rows: usize, seq: usize, lag: usize) -> Result<Scored> {
    let mut positions = Vec::new();
    let mut targets = Vec::new();
    for row in 0..rows {
        for t in lag..seq {
            let label = labels[row * seq + t];
            if label != IGNORE_INDEX {
                positions.push((row, t - lag));
                targets.push(label as u32);
            }
        }
    }
    if positions.is_empty() {
        return Err(TrainError::Config {
            field: "data",
            reason: "a training batch has no target tokens (every label is masked)".into(),
        });
    }
    Ok((positions, targets))
}

fn run_generator<M: StepModel<Error = ModelError>>(
    model: &M,
    prompts: &[&[u32]],
    config: &GenerationConfig,
    sink: &mut dyn TokenSink,
) -> Result<Vec<Generation>> {
    let generation_error = |e: GenerateError<ModelError>| TrainError::Generation(e.to_string());
    let generator = Generator::new(model, config).map_err(generation_error)?;
    generator
        .generate_streaming(prompts, sink)
        .map_err(generation_error)
}
