//! The training loop of a generation task: token-weighted language-modelling loss on the
//! targets, evaluation by decoding, the best state kept as an artifact.

use super::base::GenBase;
use super::codec::{EncodedSet, GenBatch, TextCodec};
use super::eval::{evaluate_generation, EvalSettings, GenEvalOutcome, GenPrediction};
use super::model::{CausalLm, GenTaskModel};
use super::task::GenTask;
use crate::checkpoint::{self, LoopState};
use crate::log::{JsonlLog, LogRecord};
use crate::step::{
    add_gradient, add_scaled_backward, optimizer_step, Accumulated, Optimizers, StepOutcome, StepSettings,
};
use crate::trainer::{eval_due, format_scores, prepare_run_dir, progress_bar, write_plot, TrainOptions};
use crate::{Result, RunConfig, TrainError};
use candle_core::Tensor;
use petl_data::{BatchOrder, CausalBatch};
use petl_models::{BaseModel, ForwardCtx, ParamStore};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

/// What a generation run reports (`metrics.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GenRunSummary {
    /// Task name.
    pub task: String,
    /// Method name.
    pub method: String,
    /// Where the base came from.
    pub model: String,
    /// Scalar parameters trained.
    pub trainable_params: usize,
    /// Scalar parameters of the base.
    pub base_params: usize,
    /// `trainable_params` as a percentage of `base_params`.
    pub trainable_percent: f64,
    /// The frozen base's scores on the evaluation set, when `eval_base` asked for them.
    pub base_eval: Option<BTreeMap<String, f64>>,
    /// The best evaluation's scores.
    pub dev: BTreeMap<String, f64>,
    /// Its headline (ROUGE-2 or BLEU).
    pub dev_headline: f64,
    /// The headline's name.
    pub headline_metric: String,
    /// The step of the best evaluation.
    pub best_step: u64,
    /// Optimizer steps taken.
    pub steps: u64,
    /// Training examples and target tokens per epoch.
    pub train_examples: usize,
    /// Target tokens per epoch (what the loss averages over).
    pub train_target_tokens: usize,
    /// Evaluation examples.
    pub dev_examples: usize,
    /// Training throughput.
    pub train_examples_per_s: f64,
    /// Generation throughput of the last evaluation.
    pub eval_tokens_per_s: f64,
    /// Seconds in the optimizer steps.
    pub train_seconds: f64,
    /// Seconds in the whole run, loading and evaluation included.
    pub wall_seconds: f64,
}

/// Trains `cfg.method` on the generation task `task`; writes `config.toml`, `log.jsonl`,
/// `metrics.json`, `training.svg`, `predictions.jsonl` (the best evaluation's outputs) and
/// `artifact/`. With `eval_base`, the frozen base is evaluated first (the "before" number).
///
/// A diff-pruning method with a projection runs all three stages of
/// [`crate::diff_pipeline`] in subdirectories, the sparse diff ending up in `artifact/`.
pub fn train_generation(
    cfg: &RunConfig,
    task: &GenTask,
    run_dir: &Path,
    opts: &TrainOptions,
    eval_base: bool,
) -> Result<GenRunSummary> {
    if let Some(projection) = crate::diff_pipeline::projection_of(&cfg.method) {
        cfg.train.validate()?;
        let stages = super::diff::GenerationStages {
            task,
            opts,
            eval_base,
        };
        return crate::diff_pipeline::run_stages(&stages, cfg, run_dir, opts.resume, &projection.clone());
    }
    let wall = Instant::now();
    let t = &cfg.train;
    t.validate()?;
    prepare_run_dir(cfg, run_dir, opts.resume)?;
    let base = GenBase::load(&cfg.model, &opts.device, t.precision)?;
    if t.checkpoint_activations && base.is_encoder_decoder() {
        return Err(TrainError::Config {
            field: "train.checkpoint_activations",
            reason: format!(
                "activation checkpointing is implemented for decoder-only bases, not {}",
                base.model_type()
            ),
        });
    }
    let (mut train_set, mut dev_set) = task.split()?;
    if let Some(n) = t.train_rows {
        train_set.truncate(n);
    }
    if let Some(n) = t.eval_rows {
        dev_set.truncate(n);
    }
    let codec = TextCodec::for_task(&base, task, &train_set.kind, t.max_len)?;
    let train_enc = codec.encode_all(&train_set.examples)?;
    let metric = task.metric(&train_set.kind);
    let generation = task.generation(&base.special().eos);
    let max_prompt = max_prompt_len(&base, t.max_len, &generation);
    let target_tokens = train_enc.total_loss_tokens();
    tracing::info!(
        "{}: {} training examples ({} target tokens), {} evaluation examples",
        task.name,
        train_enc.len(),
        target_tokens,
        dev_set.len()
    );

    let task_json = serde_json::json!({"kind": "generation", "task": task});
    let tm = match &cfg.init {
        Some(dir) => GenTaskModel::from_artifact(&base, dir)?,
        None => GenTaskModel::new(&base, &cfg.method, task_json.clone(), t.seed)?,
    };
    let trainable = tm.params().num_elements();
    let base_params = base.num_base_params();
    tracing::info!(
        "method {}: {trainable} trainable parameters, {:.4}% of the base's {base_params}",
        cfg.method.name,
        100.0 * trainable as f64 / base_params as f64
    );
    let mut optims = Optimizers::new(tm.trained(), t.adam(), t.precision)?;
    let log_path = run_dir.join("log.jsonl");
    let mut state = LoopState::default();
    let resumed = match opts.resume {
        true => checkpoint::load(run_dir, &opts.device)?,
        false => None,
    };
    let mut log = match resumed {
        Some(ck) => {
            tm.params().assign(&ck.params)?;
            optims.restore(&ck.optim, ck.state.global_step)?;
            state = ck.state;
            JsonlLog::open(&log_path, Some(state.global_step))?
        }
        None => JsonlLog::open(&log_path, None)?,
    };

    let evaluate = |tm: &GenTaskModel<'_>, what: &str| -> Result<GenEvalOutcome> {
        let bar = progress_bar(opts.progress, dev_set.len() as u64, 0);
        bar.set_message(what.to_string());
        let settings = EvalSettings {
            metric,
            config: &generation,
            batch_size: t.eval_batch_size,
            max_prompt_len: max_prompt,
        };
        let out = evaluate_generation(tm, &codec, &dev_set.examples, settings, &bar);
        bar.finish_and_clear();
        out
    };
    let base_eval = match (eval_base, state.global_step) {
        (false, _) => None,
        // A resumed run scored the base before its first step; the log has the numbers.
        (true, 1..) => base_scores_from_log(&log_path)?,
        (true, 0) => {
            let frozen = GenTaskModel::frozen(&base, task_json.clone())?;
            let outcome = evaluate(&frozen, "evaluating the frozen base")?;
            eprintln!("frozen base: {}", format_scores(&outcome.scores));
            write_predictions(&run_dir.join("predictions-base.jsonl"), &outcome.predictions)?;
            log.write(&LogRecord::Eval {
                step: 0,
                epoch: 0,
                metrics: outcome.scores.clone(),
                headline: Some(outcome.headline),
                best: false,
                examples_per_s: outcome.examples_per_s,
            })?;
            Some(outcome.scores.0)
        }
    };

    let plan = |epoch: u64| -> Vec<Vec<usize>> {
        let order = BatchOrder::Bucketed { seed: t.seed, epoch };
        train_enc.plan(t.batch_size, t.max_tokens, order)
    };
    let total_steps: u64 = (0..t.epochs)
        .map(|e| plan(e).len().div_ceil(t.grad_accum) as u64)
        .sum();
    let warmup = (t.warmup_ratio * total_steps as f64).ceil() as u64;
    if state.global_step > 0 {
        tracing::info!("resuming at step {} of {total_steps}", state.global_step);
    }

    let bar = progress_bar(opts.progress, total_steps, state.global_step);
    let mut last_eval: Option<GenEvalOutcome> = None;
    let mut steps_this_process = 0u64;
    while state.epoch < t.epochs {
        let batches = plan(state.epoch);
        let steps: Vec<&[Vec<usize>]> = batches.chunks(t.grad_accum).collect();
        while (state.step_in_epoch as usize) < steps.len() {
            let micro = steps[state.step_in_epoch as usize];
            let started = Instant::now();
            let lr = t.schedule.lr_at(state.global_step, total_steps, warmup, t.lr);
            let settings = StepSettings {
                seed: t.seed,
                step: state.global_step,
                lr,
                max_grad_norm: t.max_grad_norm,
                checkpoint: t.checkpoint_activations,
            };
            let passes = TokenPasses {
                pad: base.special().pad,
                label_smoothing: t.label_smoothing,
                checkpoint: t.checkpoint_activations,
            };
            let StepOutcome { loss, grad_norm, .. } =
                optimizer_step(tm.trained(), settings, &mut optims, |scale, ctx| {
                    passes.run(&tm, &train_enc, micro, scale, ctx)
                })?;
            state.global_step += 1;
            state.step_in_epoch += 1;
            state.examples_seen += micro.iter().map(Vec::len).sum::<usize>() as u64;
            state.train_seconds += started.elapsed().as_secs_f64();
            state.pending_loss = (state.pending_loss.0 + loss, state.pending_loss.1 + 1);
            steps_this_process += 1;
            bar.set_position(state.global_step);
            bar.set_message(format!("loss {loss:.4} lr {lr:.2e}"));
            let end_of_epoch = state.step_in_epoch as usize == steps.len();
            if state.global_step % t.log_every.max(1) == 0 || state.global_step == total_steps {
                let (sum, n) = state.pending_loss;
                log.write(&LogRecord::Train {
                    step: state.global_step,
                    epoch: state.epoch,
                    loss: sum / n.max(1) as f64,
                    lr,
                    grad_norm,
                    examples_per_s: state.examples_seen as f64 / state.train_seconds.max(1e-9),
                    elapsed_s: Some(wall.elapsed().as_secs_f64()),
                    penalty: None,
                    expected_density: None,
                })?;
                state.pending_loss = (0.0, 0);
            }
            let due = eval_due(t.eval_every, state.global_step, total_steps, end_of_epoch);
            if due {
                let outcome = evaluate(&tm, &format!("evaluating at step {}", state.global_step))?;
                let improved = state.best.is_none_or(|(h, _)| outcome.headline > h);
                bar.println(format!(
                    "step {}/{total_steps}: dev {}{}",
                    state.global_step,
                    format_scores(&outcome.scores),
                    if improved { " (best)" } else { "" }
                ));
                log.write(&LogRecord::Eval {
                    step: state.global_step,
                    epoch: state.epoch,
                    metrics: outcome.scores.clone(),
                    headline: Some(outcome.headline),
                    best: improved,
                    examples_per_s: outcome.examples_per_s,
                })?;
                if improved {
                    tm.save_artifact(&run_dir.join("artifact"))?;
                    write_predictions(&run_dir.join("predictions.jsonl"), &outcome.predictions)?;
                    state.best = Some((outcome.headline, state.global_step));
                    state.best_metrics = Some(outcome.scores.clone());
                }
                last_eval = Some(outcome);
            }
            if end_of_epoch {
                state.epoch += 1;
                state.step_in_epoch = 0;
            }
            let checkpoint_due = match t.checkpoint_every {
                0 => due,
                every => state.global_step % every == 0,
            };
            if checkpoint_due && state.global_step < total_steps {
                checkpoint::save(run_dir, &state, &tm.params().to_tensors()?, &optims.state()?)?;
                log.write(&LogRecord::Checkpoint {
                    step: state.global_step,
                })?;
            }
            if opts.stop_after.is_some_and(|n| steps_this_process >= n) {
                bar.abandon();
                return Err(TrainError::Resume {
                    path: run_dir.to_path_buf(),
                    reason: format!("stopped after {steps_this_process} steps as requested"),
                });
            }
            if end_of_epoch {
                break;
            }
        }
    }
    bar.finish_and_clear();
    let (Some((dev_headline, best_step)), Some(best_scores)) = (state.best, state.best_metrics.clone())
    else {
        return Err(TrainError::Config {
            field: "train",
            reason: "the run took no optimizer step".into(),
        });
    };
    let summary = GenRunSummary {
        task: task.name.clone(),
        method: cfg.method.name.clone(),
        model: cfg.model.display().to_string(),
        trainable_params: trainable,
        base_params,
        trainable_percent: 100.0 * trainable as f64 / base_params as f64,
        base_eval,
        dev: best_scores.0,
        dev_headline,
        headline_metric: metric.headline_name().into(),
        best_step,
        steps: state.global_step,
        train_examples: train_enc.len(),
        train_target_tokens: target_tokens,
        dev_examples: dev_set.len(),
        train_examples_per_s: state.examples_seen as f64 / state.train_seconds.max(1e-9),
        eval_tokens_per_s: last_eval.map_or(f64::NAN, |e| e.tokens_per_s),
        train_seconds: state.train_seconds,
        wall_seconds: wall.elapsed().as_secs_f64(),
    };
    petl_artifact::write_json_atomic(&run_dir.join("metrics.json"), &summary)?;
    write_plot(run_dir, &log_path, metric.headline_name())?;
    Ok(summary)
}

/// The frozen base's scores a run logged before its first step (the step-0 evaluation).
fn base_scores_from_log(log_path: &Path) -> Result<Option<BTreeMap<String, f64>>> {
    Ok(crate::log::read_log(log_path)?.into_iter().find_map(|r| match r {
        LogRecord::Eval { step: 0, metrics, .. } => Some(metrics.0),
        _ => None,
    }))
}

/// Decodes the evaluation split of `task` (its first `eval_rows`, when given) with `tm` and
/// scores it: what `petl eval` runs on a generation artifact (or on the frozen base).
pub fn evaluate_task(
    tm: &GenTaskModel<'_>,
    task: &GenTask,
    max_len: usize,
    eval_rows: Option<usize>,
    batch_size: usize,
    progress: bool,
) -> Result<GenEvalOutcome> {
    let base = tm.base();
    let (_, mut dev_set) = task.split()?;
    if let Some(n) = eval_rows {
        dev_set.truncate(n);
    }
    let codec = TextCodec::for_task(base, task, &dev_set.kind, max_len)?;
    let generation = task.generation(&base.special().eos);
    let max_prompt = max_prompt_len(base, max_len, &generation);
    let bar = progress_bar(progress, dev_set.len() as u64, 0);
    let settings = EvalSettings {
        metric: task.metric(&dev_set.kind),
        config: &generation,
        batch_size,
        max_prompt_len: max_prompt,
    };
    let out = evaluate_generation(tm, &codec, &dev_set.examples, settings, &bar);
    bar.finish_and_clear();
    out
}

/// The longest prompt decoding starts from: for a decoder-only base, what leaves room for the
/// generated tokens within `max_len` (at most half of it goes to them).
fn max_prompt_len(base: &GenBase, max_len: usize, generation: &petl_generate::GenerationConfig) -> usize {
    max_len.min(base.max_positions()) - generation.max_new_tokens.min(max_len / 2)
}

/// What the token-weighted passes of a step need of a model: its trainable parameters and the
/// summed token loss of a batch, plain or with activation checkpointing.
pub(crate) trait TokenLoss {
    /// The parameters gradients are collected for.
    fn params(&self) -> &ParamStore;

    /// The summed per-token loss of `batch` and the number of scored tokens.
    fn loss_sum(
        &self,
        batch: &GenBatch,
        label_smoothing: f64,
        ctx: &mut ForwardCtx,
    ) -> Result<(Tensor, usize)>;

    /// `weight ·` that loss with every parameter's gradient, by activation checkpointing;
    /// returns the unweighted sum and the scored tokens too.
    fn loss_and_grads_checkpointed(
        &self,
        batch: &GenBatch,
        label_smoothing: f64,
        weight: f64,
        ctx: &mut ForwardCtx,
    ) -> Result<(f64, usize, BTreeMap<String, Tensor>)>;
}

impl TokenLoss for GenTaskModel<'_> {
    fn params(&self) -> &ParamStore {
        GenTaskModel::params(self)
    }

    fn loss_sum(
        &self,
        batch: &GenBatch,
        label_smoothing: f64,
        ctx: &mut ForwardCtx,
    ) -> Result<(Tensor, usize)> {
        GenTaskModel::loss_sum(self, batch, label_smoothing, ctx)
    }

    fn loss_and_grads_checkpointed(
        &self,
        batch: &GenBatch,
        label_smoothing: f64,
        weight: f64,
        ctx: &mut ForwardCtx,
    ) -> Result<(f64, usize, BTreeMap<String, Tensor>)> {
        GenTaskModel::loss_and_grads_checkpointed(self, batch, label_smoothing, weight, ctx)
    }
}

impl TokenLoss for CausalLm<'_> {
    fn params(&self) -> &ParamStore {
        self.params
    }

    fn loss_sum(
        &self,
        batch: &GenBatch,
        label_smoothing: f64,
        ctx: &mut ForwardCtx,
    ) -> Result<(Tensor, usize)> {
        CausalLm::loss_sum(self, causal_batch(batch)?, label_smoothing, ctx)
    }

    fn loss_and_grads_checkpointed(
        &self,
        batch: &GenBatch,
        label_smoothing: f64,
        weight: f64,
        ctx: &mut ForwardCtx,
    ) -> Result<(f64, usize, BTreeMap<String, Tensor>)> {
        CausalLm::loss_and_grads_checkpointed(self, causal_batch(batch)?, label_smoothing, weight, ctx)
    }
}

/// The causal-LM batch in `batch`, which a decoder-only model needs.
fn causal_batch(batch: &GenBatch) -> Result<&CausalBatch> {
    match batch {
        GenBatch::Causal(b) => Ok(b),
        GenBatch::Seq2Seq(_) => Err(TrainError::Config {
            field: "data",
            reason: "a decoder-only model got a batch encoded for an encoder-decoder".into(),
        }),
    }
}

/// Forward and backward over the micro-batches of one step, each micro-batch's summed token
/// loss divided by the step's total target tokens: the gradient of the mean loss per target
/// token, however the tokens fall into micro-batches (gradient accumulation by tokens).
#[derive(Clone, Copy)]
pub(crate) struct TokenPasses {
    /// The padding id.
    pub(crate) pad: u32,
    /// Label smoothing of the token loss.
    pub(crate) label_smoothing: f64,
    /// Recompute each block in the backward instead of keeping its activations.
    pub(crate) checkpoint: bool,
}

impl TokenPasses {
    pub(crate) fn run(
        &self,
        tm: &impl TokenLoss,
        data: &EncodedSet,
        micro: &[Vec<usize>],
        loss_scale: f64,
        ctx: &mut ForwardCtx,
    ) -> Result<Accumulated> {
        let TokenPasses {
            pad,
            label_smoothing,
            checkpoint,
        } = *self;
        let total: usize = micro.iter().flatten().map(|&i| data.loss_tokens(i)).sum();
        let mut grads: BTreeMap<String, Tensor> = BTreeMap::new();
        let mut loss_sum = 0f64;
        for indices in micro {
            let batch = data.collate(indices, pad)?;
            if checkpoint {
                let weight = loss_scale / total.max(1) as f64;
                let (sum, _, store) = tm.loss_and_grads_checkpointed(&batch, label_smoothing, weight, ctx)?;
                loss_sum += sum / total.max(1) as f64;
                for (name, g) in store {
                    add_gradient(&mut grads, &name, g)?;
                }
                continue;
            }
            let (sum, _) = tm.loss_sum(&batch, label_smoothing, ctx)?;
            let loss = (sum / total.max(1) as f64)?;
            loss_sum += loss.to_scalar::<f32>()? as f64;
            add_scaled_backward(tm.params(), loss, loss_scale, &mut grads)?;
        }
        Ok(Accumulated {
            loss: loss_sum,
            units: total,
            grads,
        })
    }
}

/// Writes one JSON line per prediction, atomically.
pub(crate) fn write_predictions(path: &Path, predictions: &[GenPrediction]) -> Result<()> {
    let mut text = String::new();
    for p in predictions {
        let line = serde_json::to_string(p).map_err(|e| TrainError::Config {
            field: "predictions",
            reason: e.to_string(),
        })?;
        text.push_str(&line);
        text.push('\n');
    }
    petl_artifact::write_atomic(path, text.as_bytes())?;
    Ok(())
}
