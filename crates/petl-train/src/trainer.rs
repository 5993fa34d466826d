//! The training loop.

use crate::checkpoint::{self, LoopState};
use crate::config::{RunConfig, TaskSource};
use crate::log::{read_log, JsonlLog, LogRecord};
use crate::session::{EvalOutcome, TaskModel};
use crate::step::{
    add_gradient, add_scaled_backward, optimizer_step, Accumulated, Optimizers, StepOutcome, StepSettings,
};
use crate::{plot, Result, TrainError};
use candle_core::{Device, Tensor};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use petl_data::{collate, plan_batches, BatchOrder, Dataset, Encoded, Split, TextEncoder};
use petl_models::BaseModel;
use petl_models::{EncoderModel, ForwardCtx, ModelDir};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How to run: what the CLI adds to the configuration.
///
/// The device is an option, not part of [`RunConfig`]: a run trained on a GPU is resumed,
/// reproduced or evaluated on the CPU from the same configuration.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Continue from the run directory's last checkpoint.
    pub resume: bool,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Stop after this many optimizer steps in this process (tests simulate a crash with it).
    pub stop_after: Option<u64>,
    /// Where the model, the trainable parameters and the batches live [default: the CPU].
    pub device: Device,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            resume: false,
            progress: false,
            stop_after: None,
            device: Device::Cpu,
        }
    }
}

/// `metrics.json`: the summary of a finished run.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RunSummary {
    /// Task name.
    pub task: String,
    /// Method name.
    pub method: String,
    /// Trained scalar parameters: delta (prefix generators included) plus head.
    pub trainable_params: usize,
    /// Scalar parameters the artifact stores: delta plus head.
    pub stored_params: usize,
    /// Stored parameters of the delta alone, without the head: He et al.'s budget.
    pub delta_params: usize,
    /// `delta_params / base_params` in percent (the "#params" column of He et al.).
    pub delta_percent: f64,
    /// Scalar parameters of the frozen base.
    pub base_params: usize,
    /// Scalar parameters of the whole task model: base plus the head's new parameters.
    pub total_params: usize,
    /// `trainable / total` in percent.
    pub trainable_percent: f64,
    /// Name of the headline metric.
    pub headline_metric: String,
    /// Dev metrics of the best evaluation (the saved artifact).
    pub dev: petl_metrics::Scores,
    /// Headline of the best evaluation.
    pub dev_headline: Option<f64>,
    /// Step of the best evaluation.
    pub best_step: u64,
    /// Dev metrics after the last step.
    pub final_dev: petl_metrics::Scores,
    /// Optimizer steps taken.
    pub steps: u64,
    /// Training examples.
    pub train_examples: usize,
    /// Dev examples.
    pub dev_examples: usize,
    /// Training throughput (examples per second of training steps).
    pub train_examples_per_s: f64,
    /// Evaluation throughput.
    pub eval_examples_per_s: f64,
    /// Wall time of this process, seconds.
    pub wall_seconds: f64,
    /// Training-step seconds summed over restarts.
    pub train_seconds: f64,
}

/// Trains as configured, writing the run directory; returns the summary also saved as
/// `metrics.json`.
pub fn train(cfg: &RunConfig, run_dir: &Path, opts: &TrainOptions) -> Result<RunSummary> {
    if let Some(projection) = crate::diff_pipeline::projection_of(&cfg.method) {
        cfg.train.validate()?;
        return crate::diff_pipeline::run(cfg, run_dir, opts, &projection.clone());
    }
    if let TaskSource::Generation(task) = &cfg.task {
        return Err(TrainError::Config {
            field: "task",
            reason: format!(
                "{} is a generation task; it trains with `generation::train_generation`",
                task.name
            ),
        });
    }
    let wall = Instant::now();
    let t = &cfg.train;
    t.validate()?;
    prepare_run_dir(cfg, run_dir, opts.resume)?;
    let device = opts.device.clone();
    cfg.check_precision()?;

    let model_dir = ModelDir::open(&cfg.model)?;
    let model = EncoderModel::load_with_precision(&model_dir, &device, t.precision)?;
    let encoder = TextEncoder::from_file(
        &model_dir.tokenizer_path()?,
        t.max_len.min(model.config().max_input_len()),
    )?;
    let (mut train_set, mut dev_set) = read_datasets(&cfg.task, t.seed)?;
    if let Some(n) = t.train_rows {
        train_set.truncate(n);
    }
    if let Some(n) = t.eval_rows {
        dev_set.truncate(n);
    }
    let train_enc = encoder.encode_all(&train_set)?;
    let dev_enc = encoder.encode_all(&dev_set)?;
    let pad = encoder.pad_id();
    tracing::info!(
        "{}: {} training and {} dev examples, max_len {}",
        train_set.spec.name,
        train_enc.len(),
        dev_enc.len(),
        encoder.max_len()
    );

    let tm = match &cfg.init {
        Some(dir) => start_from(&model, dir, cfg, &train_set.spec)?,
        None => TaskModel::new(&model, &cfg.method, train_set.spec.clone(), cfg.pooling, t.seed)?,
    };
    let mut optims = Optimizers::new(tm.trained(), t.adam(), t.precision)?;
    let trainable = tm.params().num_elements();
    let base = model.num_base_params();
    // Head parameters that are new (not copies of base tensors) add to the model's size.
    let added: usize = tm
        .params()
        .iter()
        .filter(|(name, _)| !model.base_params().contains_key(*name))
        .map(|(_, v)| v.elem_count())
        .sum();
    let total = base + added;
    let sparse_nnz = tm.delta().sparse_diff()?.map(|d| d.nnz() as usize);
    let delta_params = sparse_nnz.unwrap_or_else(|| cfg.method.count(&model.shape()).stored);
    let stored: usize = tm
        .stored_tensors()?
        .values()
        .map(|t| t.elem_count())
        .sum::<usize>()
        + sparse_nnz.unwrap_or(0);
    tracing::info!(
        "method {}: {} trainable of {} parameters ({:.4}%)",
        cfg.method.name,
        trainable,
        total,
        100.0 * trainable as f64 / total as f64
    );

    let lengths: Vec<usize> = train_enc.iter().map(Encoded::len).collect();
    let micro_per_epoch = lengths.len().div_ceil(t.batch_size) as u64;
    let steps_per_epoch = micro_per_epoch.div_ceil(t.grad_accum as u64);
    let total_steps = steps_per_epoch * t.epochs;
    let warmup = (t.warmup_ratio * total_steps as f64).ceil() as u64;

    let mut state = LoopState::default();
    let log_path = run_dir.join("log.jsonl");
    let mut log = if opts.resume {
        match checkpoint::load(run_dir, &device)? {
            Some(ck) => {
                tm.params().assign(&ck.params)?;
                optims.restore(&ck.optim, ck.state.global_step)?;
                state = ck.state;
                tracing::info!("resuming at step {} of {}", state.global_step, total_steps);
                JsonlLog::open(&log_path, Some(state.global_step))?
            }
            None => JsonlLog::open(&log_path, None)?,
        }
    } else {
        JsonlLog::open(&log_path, None)?
    };

    let bar = progress_bar(opts.progress, total_steps, state.global_step);
    let mut last_eval: Option<(u64, EvalOutcome)> = None;
    let mut steps_this_process = 0u64;
    while state.epoch < t.epochs {
        let plan = plan_batches(
            &lengths,
            t.batch_size,
            BatchOrder::Bucketed {
                seed: t.seed,
                epoch: state.epoch,
            },
        );
        let steps: Vec<&[Vec<usize>]> = plan.chunks(t.grad_accum).collect();
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
            let StepOutcome {
                loss,
                units: n_examples,
                penalty,
                grad_norm,
            } = classification_step(&tm, &train_enc, micro, pad, settings, &mut optims)?;
            state.global_step += 1;
            state.step_in_epoch += 1;
            state.examples_seen += n_examples as u64;
            state.train_seconds += started.elapsed().as_secs_f64();
            state.pending_loss.0 += loss;
            state.pending_loss.1 += 1;
            steps_this_process += 1;
            if steps_this_process == 1 {
                tracing::debug!(
                    "first step done {:.2} s after start",
                    wall.elapsed().as_secs_f64()
                );
            }
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
                    penalty: penalty.map(|p| p.0),
                    expected_density: penalty.map(|p| p.1),
                })?;
                state.pending_loss = (0.0, 0);
            }
            let eval_due = eval_due(t.eval_every, state.global_step, total_steps, end_of_epoch);
            if eval_due {
                let outcome = tm.evaluate(&dev_enc, t.eval_batch_size, pad)?;
                let improved = record_if_best(&mut state, &outcome);
                if improved {
                    tm.save_artifact(&run_dir.join("artifact"))?;
                }
                bar.println(format!(
                    "step {}/{}: dev {}{}",
                    state.global_step,
                    total_steps,
                    format_scores(&outcome.scores),
                    if improved { " (best)" } else { "" }
                ));
                log.write(&LogRecord::Eval {
                    step: state.global_step,
                    epoch: state.epoch,
                    metrics: outcome.scores.clone(),
                    headline: outcome.headline,
                    best: improved,
                    examples_per_s: outcome.examples_per_s,
                })?;
                last_eval = Some((state.global_step, outcome));
            }
            if end_of_epoch {
                state.epoch += 1;
                state.step_in_epoch = 0;
            }
            let ckpt_due = if t.checkpoint_every == 0 {
                eval_due
            } else {
                state.global_step % t.checkpoint_every == 0
            };
            if ckpt_due && state.global_step < total_steps {
                checkpoint::save(run_dir, &state, &tm.params().to_tensors()?, &optims.state()?)?;
                log.write(&LogRecord::Checkpoint {
                    step: state.global_step,
                })?;
            }
            if opts.stop_after.is_some_and(|n| steps_this_process >= n) {
                bar.abandon();
                return Err(TrainError::Resume {
                    path: run_dir.to_path_buf(),
                    reason: format!("stopped after {n} steps as requested", n = steps_this_process),
                });
            }
            if end_of_epoch {
                break;
            }
        }
    }
    bar.finish_and_clear();

    let final_eval = match last_eval {
        Some((step, outcome)) if step == state.global_step => outcome,
        _ => tm.evaluate(&dev_enc, t.eval_batch_size, pad)?,
    };
    if state.best.is_none() {
        tm.save_artifact(&run_dir.join("artifact"))?;
    }
    let (dev_headline, best_step) = match state.best {
        Some((h, s)) => (Some(h).filter(|h| h.is_finite()), s),
        None => (final_eval.headline, state.global_step),
    };
    let summary = RunSummary {
        task: train_set.spec.name.clone(),
        method: cfg.method.name.clone(),
        trainable_params: trainable,
        stored_params: stored,
        delta_params,
        delta_percent: 100.0 * delta_params as f64 / base as f64,
        base_params: base,
        total_params: total,
        trainable_percent: 100.0 * trainable as f64 / total as f64,
        headline_metric: train_set.spec.headline.name(),
        dev: state
            .best_metrics
            .clone()
            .unwrap_or_else(|| final_eval.scores.clone()),
        dev_headline,
        best_step,
        final_dev: final_eval.scores.clone(),
        steps: state.global_step,
        train_examples: train_enc.len(),
        dev_examples: dev_enc.len(),
        train_examples_per_s: state.examples_seen as f64 / state.train_seconds.max(1e-9),
        eval_examples_per_s: final_eval.examples_per_s,
        wall_seconds: wall.elapsed().as_secs_f64(),
        train_seconds: state.train_seconds,
    };
    petl_artifact::write_json_atomic(&run_dir.join("metrics.json"), &summary)?;
    write_plot(run_dir, &log_path, &summary.headline_metric)?;
    Ok(summary)
}

/// The task model a run with `init` starts from: the artifact's trained state, which must be
/// of this run's method and task.
fn start_from<'m>(
    model: &'m EncoderModel,
    dir: &Path,
    cfg: &RunConfig,
    spec: &petl_data::TaskSpec,
) -> Result<TaskModel<'m>> {
    let tm = TaskModel::from_artifact(model, dir)?;
    if tm.method().deltas != cfg.method.ejected().deltas {
        return Err(TrainError::Config {
            field: "init",
            reason: format!(
                "artifact {} holds method {:?}, not this run's {:?}",
                dir.display(),
                tm.method().name,
                cfg.method.name
            ),
        });
    }
    if tm.spec().name != spec.name || tm.spec().num_outputs() != spec.num_outputs() {
        return Err(TrainError::Config {
            field: "init",
            reason: format!(
                "artifact {} was trained for task {}, not {}",
                dir.display(),
                tm.spec().name,
                spec.name
            ),
        });
    }
    Ok(tm)
}

/// Whether an evaluation is due after `step` of `total`: every `every` steps and after the last,
/// or, with `every == 0`, at the end of each epoch.
pub(crate) fn eval_due(every: u64, step: u64, total: u64, end_of_epoch: bool) -> bool {
    if every == 0 {
        end_of_epoch
    } else {
        step % every == 0 || step == total
    }
}

/// Makes `outcome` the best so far if its headline beats the previous best (the first
/// evaluation always counts, so a run always has an artifact); returns whether it did.
fn record_if_best(state: &mut LoopState, outcome: &EvalOutcome) -> bool {
    let improved = match (outcome.headline, state.best) {
        (Some(h), Some((b, _))) => h > b,
        (Some(_), None) => true,
        (None, _) => state.best.is_none(),
    };
    if improved {
        state.best = Some((outcome.headline.unwrap_or(f64::NAN), state.global_step));
        state.best_metrics = Some(outcome.scores.clone());
    }
    improved
}

/// Runs the micro-batches of one optimizer step and sums their gradients. Each micro-batch's
/// loss is weighted by its share of the step's examples, so the step's gradient is that of the
/// mean loss over all its examples whatever the accumulation.
///
/// `loss_scale` multiplies each loss before backward (f16 loss scaling); the returned loss is
/// unscaled, the gradients are not.
fn accumulate(
    tm: &TaskModel<'_>,
    data: &[Encoded],
    micro: &[Vec<usize>],
    pad: u32,
    loss_scale: f64,
    checkpoint: bool,
    ctx: &mut ForwardCtx,
) -> Result<Accumulated> {
    let total: usize = micro.iter().map(Vec::len).sum();
    let mut grads: BTreeMap<String, Tensor> = BTreeMap::new();
    let mut loss_sum = 0f64;
    for indices in micro {
        let items: Vec<&Encoded> = indices.iter().map(|&i| &data[i]).collect();
        let batch = collate(&items, pad)?;
        let weight = indices.len() as f64 / total as f64;
        if checkpoint {
            let (loss, store) = tm.loss_and_grads_checkpointed(&batch, weight * loss_scale, ctx)?;
            loss_sum += loss.to_scalar::<f32>()? as f64;
            for (name, g) in store {
                add_gradient(&mut grads, &name, g)?;
            }
            continue;
        }
        let loss = (tm.loss(&batch, ctx)? * weight)?;
        loss_sum += loss.to_scalar::<f32>()? as f64;
        add_scaled_backward(tm.params(), loss, loss_scale, &mut grads)?;
    }
    Ok(Accumulated {
        loss: loss_sum,
        units: total,
        grads,
    })
}

/// One optimizer step of classification training over the micro-batches `micro` of `data`.
/// The training loop and `petl bench` both run exactly this.
pub(crate) fn classification_step(
    tm: &TaskModel<'_>,
    data: &[Encoded],
    micro: &[Vec<usize>],
    pad: u32,
    settings: StepSettings,
    optims: &mut Optimizers,
) -> Result<StepOutcome> {
    optimizer_step(tm.trained(), settings, optims, |scale, ctx| {
        accumulate(tm, data, micro, pad, scale, settings.checkpoint, ctx)
    })
}

/// The encoded dev set of `cfg`'s task for `model`, and the padding id.
pub(crate) fn read_dev_set(cfg: &RunConfig, model: &EncoderModel) -> Result<(Vec<Encoded>, u32)> {
    let model_dir = ModelDir::open(&cfg.model)?;
    let encoder = TextEncoder::from_file(
        &model_dir.tokenizer_path()?,
        cfg.train.max_len.min(model.config().max_input_len()),
    )?;
    let (_, mut dev) = read_datasets(&cfg.task, cfg.train.seed)?;
    if let Some(n) = cfg.train.eval_rows {
        dev.truncate(n);
    }
    Ok((encoder.encode_all(&dev)?, encoder.pad_id()))
}

fn read_datasets(task: &TaskSource, seed: u64) -> Result<(Dataset, Dataset)> {
    Ok(match task {
        TaskSource::Glue { data_dir, .. } => {
            let glue = task.glue()?.ok_or_else(|| TrainError::Config {
                field: "task",
                reason: "not a GLUE task".into(),
            })?;
            (
                glue.read(data_dir, Split::Train)?,
                glue.read(data_dir, Split::Dev)?,
            )
        }
        TaskSource::Table {
            name,
            train,
            dev,
            holdout,
        } => {
            let train_set = petl_data::read_table(train, name)?;
            match (dev, holdout) {
                (Some(dev), _) => {
                    let mut dev_spec = dev.clone();
                    // The dev table must use the training table's label ids, whatever labels it holds.
                    if let (petl_data::TableKind::Classification { labels: None }, Some(l)) =
                        (&dev_spec.kind, train_set.spec.labels())
                    {
                        dev_spec.kind = petl_data::TableKind::Classification {
                            labels: Some(l.to_vec()),
                        };
                    }
                    let dev_set = petl_data::read_table(&dev_spec, name)?;
                    (train_set, dev_set)
                }
                (None, Some(n)) => split_holdout(train_set, *n, seed)?,
                (None, None) => {
                    return Err(TrainError::Config {
                        field: "task.dev",
                        reason: "a table task needs a dev table or a holdout row count".into(),
                    })
                }
            }
        }
        TaskSource::Generation(task) => {
            return Err(TrainError::Config {
                field: "task",
                reason: format!("{} is a generation task, not a classification table", task.name),
            })
        }
    })
}

/// Shuffles `data` with `seed` and moves `n` rows into a dev set: files are often sorted by
/// label or source, so the last rows are no fair sample.
fn split_holdout(mut data: Dataset, n: usize, seed: u64) -> Result<(Dataset, Dataset)> {
    if n == 0 || n >= data.examples.len() {
        return Err(TrainError::Config {
            field: "task.holdout",
            reason: format!("{n} rows cannot be held out of {} ", data.examples.len()),
        });
    }
    let lengths = vec![1usize; data.examples.len()];
    let order: Vec<usize> = plan_batches(
        &lengths,
        1,
        BatchOrder::Shuffled {
            seed,
            epoch: u64::MAX,
        },
    )
    .into_iter()
    .flatten()
    .collect();
    let mut examples: Vec<Option<petl_data::Example>> = data.examples.drain(..).map(Some).collect();
    let shuffled: Vec<petl_data::Example> = order.iter().filter_map(|&i| examples[i].take()).collect();
    let split = shuffled.len() - n;
    let mut dev = Dataset {
        spec: data.spec.clone(),
        examples: shuffled[split..].to_vec(),
        source: data.source.clone(),
    };
    data.examples = shuffled[..split].to_vec();
    dev.examples.shrink_to_fit();
    Ok((data, dev))
}

/// Creates the run directory and records the configuration. A directory holding another
/// run's checkpoint is never overwritten: a fresh run needs an empty or new directory, and a
/// resumed run needs the same configuration.
pub(crate) fn prepare_run_dir(cfg: &RunConfig, run_dir: &Path, resume: bool) -> Result<()> {
    std::fs::create_dir_all(run_dir).map_err(|source| TrainError::Io {
        path: run_dir.to_path_buf(),
        source,
    })?;
    let config_path = run_dir.join("config.toml");
    let text = cfg.to_toml();
    if config_path.exists() {
        let existing = std::fs::read_to_string(&config_path).unwrap_or_default();
        if resume && existing != text {
            return Err(TrainError::Resume {
                path: run_dir.to_path_buf(),
                reason: "its config.toml differs from this run's configuration".into(),
            });
        }
        if !resume {
            return Err(TrainError::Resume {
                path: run_dir.to_path_buf(),
                reason: "it already holds a run; pass --resume to continue it or choose another --out".into(),
            });
        }
    }
    petl_artifact::write_atomic(&config_path, text.as_bytes())?;
    Ok(())
}

pub(crate) fn progress_bar(enabled: bool, total: u64, at: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(total),
        if enabled {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    let style = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps  {per_sec}  ETA {eta}  {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_position(at);
    bar
}

pub(crate) fn format_scores(scores: &petl_metrics::Scores) -> String {
    scores
        .0
        .iter()
        .map(|(k, v)| format!("{k} {v:.4}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn write_plot(run_dir: &Path, log_path: &Path, headline: &str) -> Result<PathBuf> {
    let records = read_log(log_path)?;
    let loss: Vec<(f64, f64)> = records
        .iter()
        .filter_map(|r| match r {
            LogRecord::Train { step, loss, .. } => Some((*step as f64, *loss)),
            _ => None,
        })
        .collect();
    let mut metric_series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for r in &records {
        if let LogRecord::Eval { step, metrics, .. } = r {
            for (k, v) in &metrics.0 {
                metric_series
                    .entry(k.clone())
                    .or_default()
                    .push((*step as f64, *v));
            }
        }
    }
    let panels = vec![
        plot::Panel {
            title: "Training loss".into(),
            x_label: "optimizer step".into(),
            y_label: "loss".into(),
            series: vec![
                plot::Series {
                    name: "loss".into(),
                    points: loss.clone(),
                },
                plot::Series {
                    name: "EMA(0.1)".into(),
                    points: plot::ema(&loss, 0.1),
                },
            ],
        },
        plot::Panel {
            title: format!("Dev metrics (selection: {headline})"),
            x_label: "optimizer step".into(),
            y_label: "metric".into(),
            series: metric_series
                .into_iter()
                .map(|(name, points)| plot::Series { name, points })
                .collect(),
        },
    ];
    let path = run_dir.join("training.svg");
    petl_artifact::write_atomic(&path, plot::render_svg(&panels).as_bytes())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use petl_data::{Label, TaskKind, TaskSpec};

    #[test]
    fn evaluation_schedule_and_best_selection() {
        assert!(eval_due(0, 7, 20, true) && !eval_due(0, 8, 20, false));
        assert!(eval_due(5, 10, 23, false) && eval_due(5, 23, 23, false) && !eval_due(5, 11, 23, true));
        let mut state = LoopState {
            global_step: 3,
            step_in_epoch: 3,
            ..LoopState::default()
        };
        let outcome = |h: f64| EvalOutcome {
            scores: petl_metrics::Scores::default(),
            headline: Some(h),
            examples_per_s: 1.0,
            examples: 1,
        };
        assert!(record_if_best(&mut state, &outcome(0.5)));
        state.global_step = 6;
        assert!(
            !record_if_best(&mut state, &outcome(0.5)),
            "a tie keeps the earlier best"
        );
        assert!(record_if_best(&mut state, &outcome(0.6)));
        assert_eq!(state.best, Some((0.6, 6)));
    }

    /// Two micro-batches of 4 accumulate to the gradient of one batch of 8 (uneven lengths, so
    /// padding differs between the two ways of batching).
    #[test]
    fn accumulation_equals_one_big_batch() -> Result<()> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../petl-models/tests/golden/tiny-bert");
        let model = EncoderModel::load(&ModelDir::open(dir)?, &Device::Cpu)?;
        let spec = TaskSpec::default_for(
            "t",
            TaskKind::Classification {
                labels: vec!["a".into(), "b".into()],
            },
        );
        let tm = TaskModel::new(
            &model,
            &petl_methods::preset("bitfit")?,
            spec,
            petl_models::Pooling::Cls,
            3,
        )?;
        let data: Vec<Encoded> = (0..8)
            .map(|i| Encoded {
                input_ids: (0..(3 + i % 4))
                    .map(|j| (5 + 7 * i + j) as u32 % 90 + 3)
                    .collect(),
                type_ids: vec![0; 3 + i % 4],
                label: Label::Class(i % 2),
            })
            .collect();
        let big = accumulate(
            &tm,
            &data,
            &[(0..8).collect()],
            0,
            1.0,
            false,
            &mut ForwardCtx::eval(),
        )?;
        let small = accumulate(
            &tm,
            &data,
            &[(0..4).collect(), (4..8).collect()],
            0,
            1.0,
            false,
            &mut ForwardCtx::eval(),
        )?;
        assert!(
            (big.loss - small.loss).abs() < 1e-5,
            "loss {} vs {}",
            big.loss,
            small.loss
        );
        assert_eq!(big.units, small.units);
        assert_eq!(big.grads.len(), small.grads.len());
        for (name, g) in &big.grads {
            let d = g
                .sub(&small.grads[name])?
                .abs()?
                .flatten_all()?
                .max(0)?
                .to_scalar::<f32>()?;
            let m = g.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
            assert!(
                d <= 1e-5 + 1e-4 * m,
                "{name}: accumulated gradient differs by {d}"
            );
        }
        Ok(())
    }
}
