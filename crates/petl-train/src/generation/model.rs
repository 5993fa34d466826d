//! One generation task's trainable state on a shared base: the language-modelling loss and
//! decoding.

use super::base::GenBase;
use crate::{Result, TrainError};
use candle_core::{Device, Tensor};
use petl_artifact::{ArtifactMeta, FORMAT_VERSION};
use petl_data::{CausalBatch, IGNORE_INDEX};
use petl_generate::{GenerateError, Generation, GenerationConfig, Generator, StepModel, TokenSink};
use petl_methods::{Delta, Method};
use petl_models::{BaseModel, DecoderCache, DecoderInput, ForwardCtx, Hooks, ModelError, ParamStore};
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
}

impl<'m> GenTaskModel<'m> {
    /// A fresh delta of `method` on `base`, initialised from `seed`.
    pub fn new(base: &'m GenBase, method: &Method, task: serde_json::Value, seed: u64) -> Result<Self> {
        let mut store = ParamStore::new(base.device(), seed);
        let delta = Delta::build(method, base, &mut store)?;
        Ok(Self {
            base,
            store,
            delta,
            task,
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

    /// The parameters and delta an optimizer step updates.
    pub(crate) fn trained(&self) -> crate::step::Trained<'_> {
        crate::step::Trained {
            params: &self.store,
            delta: &self.delta,
        }
    }

    /// The summed per-token loss of `batch` (cross-entropy with `label_smoothing` at every
    /// scored label) and the number of scored tokens. The LM head runs at the scored positions
    /// only: the prompt and padding never reach the vocabulary projection.
    pub fn loss_sum(
        &self,
        batch: &CausalBatch,
        label_smoothing: f64,
        ctx: &mut ForwardCtx,
    ) -> Result<(Tensor, usize)> {
        let device = self.base.device();
        let (rows, seq) = (batch.batch_size, batch.seq_len);
        let input = DecoderInput::from_host(&batch.input_ids, &batch.attention_mask, rows, seq, device)?;
        let decoder = self.base.decoder();
        let out = decoder.forward(&input, &self.delta, ctx)?;
        // Prompt tuning prepends rows; the text's positions move along by as many.
        let shift = out.hidden.dim(1)? - seq;
        let mut positions = Vec::with_capacity(batch.target_tokens);
        let mut targets = Vec::with_capacity(batch.target_tokens);
        for row in 0..rows {
            for t in 1..seq {
                let label = batch.labels[row * seq + t];
                if label != IGNORE_INDEX {
                    // The logits at t − 1 predict the token at t.
                    positions.push((row, shift + t - 1));
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
        let logits = decoder.logits_at(&out.hidden, &positions, &self.delta, ctx)?;
        let n = targets.len();
        let targets = Tensor::from_vec(targets, n, device)?;
        let losses = petl_ops::token_cross_entropy(&logits, &targets, label_smoothing)?;
        Ok((losses.sum_all()?, n))
    }

    /// Decodes continuations of `prompts` with this task's delta, sending tokens to `sink` as
    /// they are chosen.
    pub fn generate(
        &self,
        prompts: &[&[u32]],
        config: &GenerationConfig,
        sink: &mut dyn TokenSink,
    ) -> Result<Vec<Generation>> {
        let stepper = Stepper {
            base: self.base,
            hooks: &self.delta,
        };
        let generator = Generator::new(&stepper, config).map_err(generation_error)?;
        generator
            .generate_streaming(prompts, sink)
            .map_err(generation_error)
    }

    /// What an artifact stores: the delta in its stored form.
    pub fn stored_tensors(&self) -> Result<BTreeMap<String, Tensor>> {
        Ok(self.delta.stored_tensors(&self.store)?)
    }

    /// Writes the stored state as an artifact directory.
    pub fn save_artifact(&self, dir: &Path) -> Result<()> {
        if self.delta.sparse_diff()?.is_some() {
            return Err(TrainError::Config {
                field: "method",
                reason: "sparse-diff artifacts of generation models are not written yet; save the dense \
                         diff-pruning stage instead"
                    .into(),
            });
        }
        let tensors = self.stored_tensors()?;
        let method = self.delta.method().ejected();
        let meta = ArtifactMeta {
            format_version: FORMAT_VERSION,
            petl_version: env!("CARGO_PKG_VERSION").to_string(),
            method: serde_json::to_value(&method).map_err(|e| TrainError::Config {
                field: "method",
                reason: e.to_string(),
            })?,
            task: self.task.clone(),
            // The LM head is the base's; its width is the vocabulary.
            num_outputs: self.base.vocab_size(),
            pooling: Default::default(),
            base_fingerprint: self.base.fingerprint().clone(),
            base_model_type: self.base.model_type().to_string(),
            trainable_params: self.store.num_elements(),
            stored_params: tensors.values().map(Tensor::elem_count).sum(),
            base_params: self.base.num_base_params(),
            sparse_diff: None,
        };
        petl_artifact::save(dir, &meta, &tensors)?;
        Ok(())
    }

    /// Loads an artifact written by [`GenTaskModel::save_artifact`] onto `base`; refuses one
    /// trained on another base, a classification artifact, or tensors that do not fit.
    pub fn from_artifact(base: &'m GenBase, dir: &Path) -> Result<Self> {
        let (meta, tensors) = petl_artifact::load(dir, base.fingerprint(), base.device())?;
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
        let method: Method = serde_json::from_value(meta.method.clone()).map_err(|e| TrainError::Config {
            field: "method",
            reason: format!("artifact {} has an unusable method: {e}", dir.display()),
        })?;
        let tm = Self::new(base, &method, meta.task.clone(), 0)?;
        let expected: BTreeMap<String, Vec<usize>> = tm
            .store
            .iter()
            .map(|(n, v)| (n.to_string(), v.dims().to_vec()))
            .collect();
        for (name, t) in &tensors {
            match expected.get(name) {
                Some(shape) if shape.as_slice() == t.dims() => {}
                Some(shape) => {
                    return Err(TrainError::Config {
                        field: "artifact",
                        reason: format!(
                            "tensor {name} has shape {:?}; the method makes {shape:?}",
                            t.dims()
                        ),
                    })
                }
                None => {
                    return Err(TrainError::Config {
                        field: "artifact",
                        reason: format!("tensor {name} is not a parameter of the method"),
                    })
                }
            }
        }
        if let Some(missing) = expected.keys().find(|n| !tensors.contains_key(*n)) {
            return Err(TrainError::Config {
                field: "artifact",
                reason: format!("the artifact lacks the method's tensor {missing}"),
            });
        }
        tm.store.assign(&tensors)?;
        Ok(tm)
    }
}

fn generation_error(e: GenerateError<ModelError>) -> TrainError {
    TrainError::Generation(e.to_string())
}

/// The decoder with one task's hooks, as `petl-generate` drives it.
struct Stepper<'a> {
    base: &'a GenBase,
    hooks: &'a dyn Hooks,
}

fn rows_of(logits: &Tensor) -> std::result::Result<Vec<Vec<f32>>, ModelError> {
    Ok(logits.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?)
}

impl StepModel for Stepper<'_> {
    type Cache = DecoderCache;
    type Error = ModelError;

    fn vocab_size(&self) -> usize {
        self.base.vocab_size()
    }

    fn max_positions(&self) -> Option<usize> {
        Some(self.base.max_positions() - self.hooks.position_offset())
    }

    fn prefill(&self, prompts: &[&[u32]]) -> std::result::Result<(DecoderCache, Vec<Vec<f32>>), ModelError> {
        let device: &Device = self.base.device();
        let input = DecoderInput::left_padded(prompts, self.base.special().pad, device)?;
        let (cache, logits) = self
            .base
            .decoder()
            .prefill(&input, self.hooks, &mut ForwardCtx::eval())?;
        Ok((cache, rows_of(&logits)?))
    }

    fn step(
        &self,
        cache: &mut DecoderCache,
        tokens: &[u32],
    ) -> std::result::Result<Vec<Vec<f32>>, ModelError> {
        let logits = self
            .base
            .decoder()
            .step(cache, tokens, self.hooks, &mut ForwardCtx::eval())?;
        rows_of(&logits)
    }

    fn select_rows(&self, cache: &mut DecoderCache, rows: &[usize]) -> std::result::Result<(), ModelError> {
        cache.select_rows(rows)
    }
}
