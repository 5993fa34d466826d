//! A task model: one shared frozen base plus one task's delta and head.

use crate::artifact_io::{self, bad_meta, ArtifactRecord, StoredDelta};
use crate::{Result, TrainError};
use candle_core::Tensor;
use petl_data::{collate, plan_batches, Batch, BatchLabels, BatchOrder, Encoded, Label, TaskSpec};
use petl_methods::{Delta, Method};
use petl_metrics::{Predictions, Scores};
use petl_models::BaseModel;
use petl_models::{
    argmax_rows, ClassificationHead, EncoderInput, EncoderModel, ForwardCtx, ParamStore, Pooling,
};
use petl_sparse::{SparseDiff, ValueDType};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

/// A base model with one task's trainable state attached.
pub struct TaskModel<'m> {
    model: &'m EncoderModel,
    spec: TaskSpec,
    store: ParamStore,
    delta: Delta,
    head: ClassificationHead,
    /// Names of the head's parameters in `store`.
    head_names: Vec<String>,
    /// Precision a sparse diff is saved in.
    value_dtype: ValueDType,
}

/// What evaluating a dataset gives.
#[derive(Debug, Clone)]
pub struct EvalOutcome {
    /// Every metric of the task.
    pub scores: Scores,
    /// The task's headline number (e.g. mean of F1 and accuracy for MRPC).
    pub headline: Option<f64>,
    /// Evaluation throughput.
    pub examples_per_s: f64,
    /// Number of examples evaluated.
    pub examples: usize,
}

/// A prediction for one input.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Prediction {
    /// The predicted class id (classification) or `None` (regression).
    pub class: Option<usize>,
    /// The predicted label name (classification) or `None` (regression).
    pub label: Option<String>,
    /// Class probabilities in label order (classification), or the single predicted score.
    pub scores: Vec<f32>,
}

/// A batch's training targets.
enum Targets {
    /// Class ids: cross-entropy.
    Classes(Tensor),
    /// Regression targets: MSE.
    Scores(Tensor),
}

impl Targets {
    /// The task loss of `logits` against these targets.
    fn loss(&self, logits: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Classes(c) => petl_ops::cross_entropy(logits, c),
            Self::Scores(s) => petl_ops::mse(logits, s),
        }
    }
}

impl<'m> TaskModel<'m> {
    /// Fresh trainable state for `method` on `spec` with a `pooling` head, initialised from `seed`.
    pub fn new(
        model: &'m EncoderModel,
        method: &Method,
        spec: TaskSpec,
        pooling: Pooling,
        seed: u64,
    ) -> Result<Self> {
        Self::with_sparse_diff(model, method, spec, pooling, seed, None)
    }

    /// As [`TaskModel::new`], giving a [`petl_methods::Form::SparseDiff`] delta its positions
    /// and starting values.
    pub fn with_sparse_diff(
        model: &'m EncoderModel,
        method: &Method,
        spec: TaskSpec,
        pooling: Pooling,
        seed: u64,
        sparse: Option<&SparseDiff>,
    ) -> Result<Self> {
        let mut store = ParamStore::new(model.device(), seed);
        let delta = Delta::build_with_diff(method, model, &mut store, sparse)?;
        let before: Vec<String> = store.iter().map(|(n, _)| n.to_string()).collect();
        let head = ClassificationHead::create(model, spec.num_outputs(), pooling, &mut store)?;
        let head_names = store
            .iter()
            .map(|(n, _)| n.to_string())
            .filter(|n| !before.contains(n))
            .collect();
        let value_dtype = crate::artifact_io::value_dtype_of(method);
        Ok(Self {
            model,
            spec,
            store,
            delta,
            head,
            head_names,
            value_dtype,
        })
    }

    /// Loads an artifact for in-place serving: a diff-pruning artifact comes back as a task
    /// model without its sparse diff (head and any other deltas only) plus the diff, to be
    /// written into the base with [`petl_methods::diff::apply_diff`] while the task runs.
    /// Other artifacts come back whole, with no diff.
    pub fn from_artifact_detached(model: &'m EncoderModel, dir: &Path) -> Result<(Self, Option<SparseDiff>)> {
        let meta = petl_artifact::load_meta(dir)?;
        if meta.sparse_diff.is_none() {
            return Ok((Self::from_artifact(model, dir)?, None));
        }
        let whole = Self::from_artifact(model, dir)?;
        let diff = whole.delta.sparse_diff()?;
        let mut method = whole.method().clone();
        method
            .deltas
            .retain(|d| d.form != petl_methods::Form::SparseDiff {});
        let tm = Self::new(model, &method, whole.spec.clone(), whole.head_pooling(), 0)?;
        let mut tensors = whole.store.to_tensors()?;
        tensors.retain(|name, _| tm.store.get(name).is_some());
        tm.store.assign(&tensors)?;
        Ok((tm, diff))
    }

    /// Copies the head's trained state from `other` (same task and pooling).
    pub fn copy_head_from(&self, other: &TaskModel<'_>) -> Result<()> {
        for name in &self.head_names {
            let (Some(dst), Some(src)) = (self.store.get(name), other.store.get(name)) else {
                return Err(TrainError::Config {
                    field: "head",
                    reason: format!("the other model has no head parameter `{name}`"),
                });
            };
            dst.set(src.as_tensor())?;
        }
        Ok(())
    }

    /// How the head pools the sequence.
    pub fn head_pooling(&self) -> Pooling {
        self.head.pooling()
    }

    /// The precision a sparse diff is saved in.
    pub fn set_value_dtype(&mut self, dtype: ValueDType) {
        self.value_dtype = dtype;
    }

    /// Loads a saved artifact onto `model`; refuses an artifact trained on another base, and
    /// checks every field of `artifact.json` against the base, the method and the files (see
    /// `docs/artifact-format.md`): a wrong field, a missing, extra or mis-shaped tensor is an
    /// error naming it.
    pub fn from_artifact(model: &'m EncoderModel, dir: &Path) -> Result<Self> {
        let stored = StoredDelta::read(dir, model, &model.config().model_type)?;
        let meta = &stored.meta;
        let spec: TaskSpec = serde_json::from_value(meta.task.clone()).map_err(|e| TrainError::Config {
            field: "task",
            reason: format!(
                "artifact {} has an unreadable task description: {e}",
                dir.display()
            ),
        })?;
        if let Some(labels) = spec.labels() {
            if labels.is_empty() {
                return Err(bad_meta(dir, "`task` has no labels".into()));
            }
            let mut seen = std::collections::BTreeSet::new();
            if let Some(dup) = labels.iter().find(|l| !seen.insert(l.as_str())) {
                return Err(bad_meta(dir, format!("`task` lists label {dup:?} twice")));
            }
        }
        if meta.num_outputs != spec.num_outputs() {
            return Err(bad_meta(
                dir,
                format!(
                    "`num_outputs` is {}, but the task `{}` has {} outputs",
                    meta.num_outputs,
                    spec.name,
                    spec.num_outputs()
                ),
            ));
        }
        let mut tm = Self::with_sparse_diff(
            model,
            &stored.method,
            spec,
            meta.pooling,
            0,
            stored.sparse.as_ref().map(|d| &d.diff),
        )?;
        if let Some(d) = &stored.sparse {
            tm.value_dtype = d.dtype;
        }
        stored.fill(&tm.store, &tm.delta, dir)?;
        Ok(tm)
    }

    /// What an artifact stores: the head and the delta in its stored form (prefix generators
    /// replaced by the prefixes they generate).
    pub fn stored_tensors(&self) -> Result<BTreeMap<String, Tensor>> {
        Ok(self.delta.stored_tensors(&self.store)?)
    }

    /// Writes the stored state as an artifact directory; returns the sparse diff file's size
    /// report when the method stores one.
    pub fn save_artifact(&self, dir: &Path) -> Result<Option<petl_sparse::SizeReport>> {
        let record = ArtifactRecord {
            task: serde_json::to_value(&self.spec).map_err(|e| TrainError::Config {
                field: "task",
                reason: e.to_string(),
            })?,
            num_outputs: self.head.num_outputs(),
            pooling: self.head.pooling(),
            base: self.model,
            base_model_type: &self.model.config().model_type,
            value_dtype: self.value_dtype,
        };
        artifact_io::write(dir, &self.delta, &self.store, record)
    }

    /// The base model.
    pub fn model(&self) -> &EncoderModel {
        self.model
    }

    /// The task.
    pub fn spec(&self) -> &TaskSpec {
        &self.spec
    }

    /// The method.
    pub fn method(&self) -> &Method {
        self.delta.method()
    }

    /// The parameters and delta an optimizer step updates.
    pub(crate) fn trained(&self) -> crate::step::Trained<'_> {
        crate::step::Trained {
            params: &self.store,
            delta: &self.delta,
        }
    }

    /// The delta (the hooks the model runs with).
    pub fn delta(&self) -> &Delta {
        &self.delta
    }

    /// The trainable parameters (delta and head).
    pub fn params(&self) -> &ParamStore {
        &self.store
    }

    /// Logits `[batch, outputs]` for one collated batch.
    pub fn logits(&self, batch: &Batch, ctx: &mut ForwardCtx) -> Result<Tensor> {
        let input = self.encoder_input(batch)?;
        let out = self.model.forward(&input, &self.delta, ctx)?;
        Ok(self
            .head
            .forward(self.model, &out.hidden, &out.mask, &self.delta, ctx)?)
    }

    /// Logits `[batch, outputs]` from the base's last hidden state and mask, with the head's
    /// base-parameter reads going through `hooks` (the delta, or a batch's row groups).
    pub fn head_logits(
        &self,
        hidden: &Tensor,
        mask: &Tensor,
        hooks: &dyn petl_models::Hooks,
        ctx: &mut ForwardCtx,
    ) -> Result<Tensor> {
        Ok(self.head.forward(self.model, hidden, mask, hooks, ctx)?)
    }

    /// The task loss of one batch: cross-entropy for classification, MSE for regression.
    pub fn loss(&self, batch: &Batch, ctx: &mut ForwardCtx) -> Result<Tensor> {
        let targets = self.targets(batch)?;
        let logits = self.logits(batch, ctx)?;
        Ok(targets.loss(&logits)?)
    }

    /// `scale ·` the loss of one batch and the gradient of every trainable parameter, with
    /// activation checkpointing per block ([`EncoderModel::backward_checkpointed`]): the
    /// gradients of [`TaskModel::loss`]'s backward at a fraction of its activation memory.
    pub fn loss_and_grads_checkpointed(
        &self,
        batch: &Batch,
        scale: f64,
        ctx: &mut ForwardCtx,
    ) -> Result<(Tensor, BTreeMap<String, Tensor>)> {
        let input = self.encoder_input(batch)?;
        let (names, vars): (Vec<&str>, Vec<&candle_core::Var>) = self.store.iter().unzip();
        let targets = self.targets(batch)?;
        let mut tail =
            |hidden: &Tensor, mask: &Tensor, ctx: &mut ForwardCtx| -> petl_models::Result<Tensor> {
                let logits = self.head.forward(self.model, hidden, mask, &self.delta, ctx)?;
                Ok((targets.loss(&logits)? * scale)?)
            };
        let out = self
            .model
            .backward_checkpointed(&input, &self.delta, ctx, &vars, &mut tail)?;
        let grads = names
            .into_iter()
            .zip(out.grads)
            .filter_map(|(name, g)| g.map(|g| (name.to_string(), g)))
            .collect();
        Ok(((out.loss * (1.0 / scale))?, grads))
    }

    /// A collated batch as tensors on the model's device.
    fn encoder_input(&self, batch: &Batch) -> Result<EncoderInput> {
        Ok(EncoderInput::from_host(
            &batch.input_ids,
            &batch.type_ids,
            &batch.attention_mask,
            batch.batch_size,
            batch.seq_len,
            self.model.device(),
        )?)
    }

    /// The batch's targets on the model's device; a batch without labels cannot be trained on.
    fn targets(&self, batch: &Batch) -> Result<Targets> {
        let device = self.model.device();
        Ok(match &batch.labels {
            BatchLabels::Classes(c) => Targets::Classes(Tensor::new(c.as_slice(), device)?),
            BatchLabels::Scores(s) => Targets::Scores(Tensor::new(s.as_slice(), device)?),
            BatchLabels::None => {
                return Err(TrainError::Config {
                    field: "task",
                    reason: "training data has no labels".into(),
                })
            }
        })
    }

    /// Predictions for `encoded` in input order, batched by length for speed.
    pub fn predict(&self, encoded: &[Encoded], batch_size: usize, pad_id: u32) -> Result<Vec<Prediction>> {
        let mut out: Vec<Option<Prediction>> = vec![None; encoded.len()];
        self.for_each_batch(encoded, batch_size, pad_id, |rows_in, logits| {
            for (&i, p) in rows_in.iter().zip(self.predictions(logits)?) {
                out[i] = Some(p);
            }
            Ok(())
        })?;
        Ok(out.into_iter().flatten().collect())
    }

    /// Predictions from the head's logits `[rows, outputs]`: class probabilities and the
    /// label (classification), or the predicted score (regression).
    pub fn predictions(&self, logits: &Tensor) -> Result<Vec<Prediction>> {
        let rows: Vec<Vec<f32>> = if self.spec.is_regression() {
            logits.to_vec2::<f32>()?
        } else {
            petl_ops::softmax_last_dim(logits)?.to_vec2::<f32>()?
        };
        let argmax = argmax_rows(logits)?;
        Ok(rows
            .into_iter()
            .zip(argmax)
            .map(|(scores, am)| {
                let (class, label) = match self.spec.labels() {
                    Some(labels) => (Some(am), labels.get(am).cloned()),
                    None => (None, None),
                };
                Prediction { class, label, scores }
            })
            .collect())
    }

    /// The head's raw outputs (logits, before any softmax) for `encoded`, in input order,
    /// computed exactly as [`TaskModel::predict`] batches them.
    pub fn predict_logits(
        &self,
        encoded: &[Encoded],
        batch_size: usize,
        pad_id: u32,
    ) -> Result<Vec<Vec<f32>>> {
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); encoded.len()];
        self.for_each_batch(encoded, batch_size, pad_id, |rows_in, logits| {
            for (&i, row) in rows_in.iter().zip(logits.to_vec2::<f32>()?) {
                out[i] = row;
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Runs `encoded` in length-sorted batches (sorting cuts padding), handing `f` each
    /// batch's input indices and logits `[rows, outputs]`.
    fn for_each_batch(
        &self,
        encoded: &[Encoded],
        batch_size: usize,
        pad_id: u32,
        mut f: impl FnMut(&[usize], &Tensor) -> Result<()>,
    ) -> Result<()> {
        let mut order: Vec<usize> = (0..encoded.len()).collect();
        order.sort_by_key(|&i| encoded[i].len());
        let lengths: Vec<usize> = order.iter().map(|&i| encoded[i].len()).collect();
        for plan in plan_batches(&lengths, batch_size.max(1), BatchOrder::Sequential) {
            let rows: Vec<usize> = plan.iter().map(|&j| order[j]).collect();
            let items: Vec<&Encoded> = rows.iter().map(|&i| &encoded[i]).collect();
            let batch = collate(&items, pad_id)?;
            let logits = self.logits(&batch, &mut ForwardCtx::eval())?;
            f(&rows, &logits)?;
        }
        Ok(())
    }

    /// Evaluates on labelled `encoded` examples with the task's metrics.
    pub fn evaluate(&self, encoded: &[Encoded], batch_size: usize, pad_id: u32) -> Result<EvalOutcome> {
        let start = Instant::now();
        let preds = self.predict(encoded, batch_size, pad_id)?;
        let elapsed = start.elapsed().as_secs_f64();
        let scores = if self.spec.is_regression() {
            let predicted: Vec<f64> = preds.iter().map(|p| p.scores[0] as f64).collect();
            let gold: Vec<f64> = encoded
                .iter()
                .map(|e| match e.label {
                    Label::Score(s) => Ok(s as f64),
                    _ => Err(unlabelled()),
                })
                .collect::<Result<_>>()?;
            petl_metrics::evaluate(
                &Predictions::Scores {
                    predicted: &predicted,
                    gold: &gold,
                },
                &self.spec.metrics,
            )?
        } else {
            let predicted: Vec<usize> = preds.iter().map(|p| p.class.unwrap_or(0)).collect();
            let gold: Vec<usize> = encoded
                .iter()
                .map(|e| match e.label {
                    Label::Class(c) => Ok(c),
                    _ => Err(unlabelled()),
                })
                .collect::<Result<_>>()?;
            petl_metrics::evaluate(
                &Predictions::Classes {
                    predicted: &predicted,
                    gold: &gold,
                },
                &self.spec.metrics,
            )?
        };
        let headline = self.spec.headline.compute(&scores);
        Ok(EvalOutcome {
            scores,
            headline,
            examples_per_s: encoded.len() as f64 / elapsed.max(1e-9),
            examples: encoded.len(),
        })
    }
}

/// Whether `tensors` holds exactly the parameters of `store`, each with its shape; names the
/// first tensor that is missing, extra or mis-shaped.
pub(crate) fn check_tensors(
    store: &ParamStore,
    tensors: &BTreeMap<String, Tensor>,
    method: &str,
) -> std::result::Result<(), String> {
    for (name, var) in store.iter() {
        match tensors.get(name) {
            None => {
                return Err(format!(
                    "tensor `{name}` {:?} of method `{method}` (or of the head) is missing",
                    var.dims()
                ))
            }
            Some(t) if t.dims() != var.dims() => {
                return Err(format!(
                    "tensor `{name}` has shape {:?}; method `{method}` on this base needs {:?}",
                    t.dims(),
                    var.dims()
                ))
            }
            Some(_) => {}
        }
    }
    if let Some(name) = tensors.keys().find(|n| store.get(n).is_none()) {
        return Err(format!(
            "tensor `{name}` is not a parameter of method `{method}` or of the head"
        ));
    }
    Ok(())
}

fn unlabelled() -> TrainError {
    TrainError::Config {
        field: "task",
        reason: "evaluation data has no labels (GLUE test splits are unlabelled; use dev)".into(),
    }
}
