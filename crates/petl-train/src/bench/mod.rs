//! Training-step throughput and memory of one method on one model: what `petl bench` measures
//! in a child process per method, next to the PyTorch twin `scripts/bench_torch.py`.
//!
//! A measurement draws one random batch, then times optimizer steps exactly as the trainers
//! take them (dropout on, the task loss, backward, the L0 penalty where the method has one,
//! clipping, AdamW over the trainable parameters only) and no-grad evaluation forwards of the
//! same batch. What the step computes depends on the model ([`BenchArch`]):
//!
//! - an **encoder** (BERT family) gets a 2-class classifier, as [`crate::train`] trains one:
//!   seeded token ids with `[CLS]` first, random labels, cross-entropy ([`random_batch`]);
//! - a **decoder** (Llama family) is trained as a causal language model, as
//!   [`crate::generation::train_generation`] trains one: seeded token ids
//!   ([`random_token_ids`]), the mean token cross-entropy of every position after the first
//!   (labels = inputs, nothing masked), inference up to the logits of every position.
//!
//! Both run through one timing loop; only the step and the forward differ. Peak memory is the
//! process's, so one process should run one measurement; spawning processes is left to the
//! caller.
//!
//! [`BenchModel::BertBase`] is a randomly initialised BERT-base written once, deterministically,
//! in Hugging Face's layout, and [`BenchModel::SmolLm2`] the cached SmolLM2 GGUF exported once
//! as a Hugging Face directory, so PyTorch loads the very same weights.

mod decoder;
mod encoder;
mod models;
mod random_bert;

pub use decoder::random_token_ids;
pub use encoder::random_batch;
pub use models::{export_gguf_once, BenchArch, BenchModel};
pub use random_bert::{write_random_bert, RandomBert, RANDOM_BERT_SEED};

use crate::step::{Optimizers, StepOutcome, StepSettings, Trained};
use crate::{Result, TrainConfig, TrainError};
use petl_methods::Method;
use petl_models::{DecoderModel, EncoderModel, ModelDir, Precision};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

/// The learning rate of every measurement: the step's cost does not depend on it, but a rate
/// that keeps the loss finite over a few steps keeps [`crate::TrainError::NonFiniteLoss`] away.
pub const BENCH_LR: f64 = 1e-4;

/// One measurement: a method on a model at one batch shape.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchSpec {
    /// Model directory (see [`BenchModel::resolve`]).
    pub model_dir: PathBuf,
    /// Method preset name.
    pub method: String,
    /// Examples per step.
    pub batch: usize,
    /// Tokens per example.
    pub seq: usize,
    /// Untimed steps first (allocator and caches warm up).
    pub warmup: usize,
    /// Timed steps.
    pub steps: usize,
    /// Seed of the data, the head and delta initialisation, and dropout.
    pub seed: u64,
    /// Activation checkpointing per block (`petl train --checkpoint-activations`).
    pub checkpoint: bool,
    /// Where to compute: `cpu`, `cuda` or `cuda:N` (see [`petl_models::device::parse`]).
    pub device: String,
    /// Precision of the frozen linears (`petl train --precision`).
    pub precision: Precision,
}

/// What one measurement found; the PyTorch twin prints the same fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchResult {
    /// `petl` or `torch`.
    #[serde(rename = "impl")]
    pub implementation: String,
    /// Method preset name.
    pub method: String,
    /// Model directory.
    pub model: String,
    /// Examples per step.
    pub batch: usize,
    /// Tokens per example.
    pub seq: usize,
    /// Untimed steps.
    pub warmup: usize,
    /// Timed steps.
    pub steps: usize,
    /// Compute threads.
    pub threads: usize,
    /// Scalar parameters the optimizers update (delta, prefix generator and head).
    pub trainable_params: usize,
    /// Median wall time of a timed training step, ms.
    pub step_ms_median: f64,
    /// Mean wall time of a timed training step, ms.
    pub step_ms_mean: f64,
    /// Every timed step, ms.
    pub step_ms: Vec<f64>,
    /// `batch / median step`.
    pub examples_per_s: f64,
    /// `batch · seq / median step`.
    pub tokens_per_s: f64,
    /// Peak resident memory of the process, MB (10⁶ bytes); `None` where the OS does not say.
    pub peak_rss_mb: Option<f64>,
    /// Median wall time of an evaluation-mode forward of the same batch, ms.
    pub infer_ms_median: f64,
    /// Task loss of the first step (warm-up included): the batch's mean cross-entropy (an
    /// encoder's classifier) or mean token cross-entropy (a decoder's next-token predictions).
    pub loss_first: f64,
    /// Task loss of the last step.
    pub loss_last: f64,
    /// Software versions.
    pub versions: BTreeMap<String, String>,
    /// The device the step ran on.
    #[serde(default)]
    pub device: Option<String>,
    /// The precision of the step (`f32`, `f16`, `bf16`).
    #[serde(default)]
    pub precision: Option<String>,
    /// How this implementation's method differs from the other's, or anything else a reader
    /// of the numbers should know.
    #[serde(default)]
    pub notes: Vec<String>,
}

impl BenchSpec {
    fn check(&self) -> Result<()> {
        let bad = |field, reason: &str| {
            Err(TrainError::Config {
                field,
                reason: reason.into(),
            })
        };
        if self.batch == 0 {
            return bad("batch", "must be at least 1");
        }
        if self.seq == 0 {
            return bad("seq", "must be at least 1");
        }
        if self.steps == 0 {
            return bad("steps", "must be at least 1 (timed steps)");
        }
        Ok(())
    }
}

/// What differs between a measurement on an encoder and one on a decoder: the trainable
/// state, one optimizer step over the measurement's batch, and one evaluation forward of it.
trait Workload {
    /// The parameters the optimizers update.
    fn trained(&self) -> Trained<'_>;

    /// One optimizer step over the batch, exactly as the trainer takes it.
    fn train_step(&self, settings: StepSettings, optims: &mut Optimizers) -> Result<StepOutcome>;

    /// One no-grad evaluation forward of the batch up to its logits, finished when it returns.
    fn infer(&self) -> Result<()>;
}

/// Runs one measurement in this process.
pub fn measure(spec: &BenchSpec) -> Result<BenchResult> {
    spec.check()?;
    let device = petl_models::device::parse(&spec.device)?;
    let (method, notes) = bench_method(&spec.method)?;
    let dir = ModelDir::open(&spec.model_dir)?;
    match BenchArch::of_dir(&spec.model_dir)? {
        BenchArch::Encoder => {
            let model = EncoderModel::load_with_precision(&dir, &device, spec.precision)?;
            let work = encoder::EncoderWork::new(&model, &method, spec)?;
            time_steps(spec, &work, notes)
        }
        BenchArch::Decoder => {
            let model = DecoderModel::load_with_precision(&dir, &device, spec.precision)?;
            let work = decoder::DecoderWork::new(&model, &method, spec)?;
            time_steps(spec, &work, notes)
        }
    }
}

/// The method a measurement trains, and what a reader should know about it.
fn bench_method(name: &str) -> Result<(Method, Vec<String>)> {
    let method = petl_methods::preset(name)?;
    if crate::diff_pipeline::projection_of(&method).is_some() {
        // The projection and fixed-mask stages are short and cheap; the cost of diff pruning
        // is its first stage, L0 training of a dense gated diff.
        let notes = vec!["stage 1 only (L0-gated dense diff); gates step with their own AdamW".into()];
        return Ok((crate::diff_pipeline::without_projection(&method), notes));
    }
    Ok((method, Vec::new()))
}

/// Times `spec.warmup + spec.steps` optimizer steps of `work` and `spec.steps` inference
/// forwards (after one untimed one), and reports them.
fn time_steps(spec: &BenchSpec, work: &dyn Workload, notes: Vec<String>) -> Result<BenchResult> {
    let defaults = TrainConfig::default();
    let trainable_params = work.trained().params.num_elements();
    let mut optims = Optimizers::new(work.trained(), defaults.adam(), spec.precision)?;
    let mut times = Vec::with_capacity(spec.steps);
    let (mut loss_first, mut loss_last) = (f64::NAN, f64::NAN);
    for step in 0..spec.warmup + spec.steps {
        let started = Instant::now();
        let settings = StepSettings {
            seed: spec.seed,
            step: step as u64,
            lr: BENCH_LR,
            max_grad_norm: defaults.max_grad_norm,
            checkpoint: spec.checkpoint,
        };
        let outcome = work.train_step(settings, &mut optims)?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        if step == 0 {
            loss_first = outcome.loss;
        }
        loss_last = outcome.loss;
        if step >= spec.warmup {
            times.push(ms);
        }
    }

    let mut infer = Vec::with_capacity(spec.steps);
    // One untimed forward first, as the training steps have their warm-up.
    for rep in 0..=spec.steps {
        let started = Instant::now();
        work.infer()?;
        if rep > 0 {
            infer.push(started.elapsed().as_secs_f64() * 1e3);
        }
    }

    let step_ms_median = median(&times);
    let step_ms_mean = times.iter().sum::<f64>() / times.len() as f64;
    Ok(BenchResult {
        implementation: "petl".into(),
        method: spec.method.clone(),
        model: spec.model_dir.display().to_string(),
        batch: spec.batch,
        seq: spec.seq,
        warmup: spec.warmup,
        steps: spec.steps,
        threads: candle_core::utils::get_num_threads(),
        trainable_params,
        step_ms_median,
        step_ms_mean,
        step_ms: times,
        examples_per_s: spec.batch as f64 * 1e3 / step_ms_median,
        tokens_per_s: (spec.batch * spec.seq) as f64 * 1e3 / step_ms_median,
        peak_rss_mb: peak_rss_mb(),
        infer_ms_median: median(&infer),
        loss_first,
        loss_last,
        versions: BTreeMap::from([("petl".to_string(), env!("CARGO_PKG_VERSION").to_string())]),
        device: Some(spec.device.clone()),
        precision: Some(spec.precision.to_string()),
        notes,
    })
}

/// The median of `values` (the mean of the middle two for an even count); NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// This process's peak resident set size (`VmHWM`), MB; `None` off Linux.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use petl_models::BaseModel;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    /// One tiny MiniLM measurement: sane times, memory, and exactly the method's trainable
    /// parameters plus the 2-class classifier.
    #[test]
    fn one_minilm_lora_measurement() -> Result<()> {
        let dir = BenchModel::MiniLm.resolve()?;
        let r = measure(&BenchSpec {
            model_dir: dir.clone(),
            method: "lora".into(),
            batch: 2,
            seq: 16,
            warmup: 1,
            steps: 1,
            seed: 3,
            checkpoint: false,
            device: "cpu".into(),
            precision: Precision::F32,
        })?;
        let model = EncoderModel::load(&ModelDir::open(&dir)?, &Device::Cpu)?;
        let method = petl_methods::preset("lora")?;
        let head = 2 * model.config().hidden_size + 2;
        assert_eq!(r.trainable_params, method.count(&model.shape()).trainable + head);
        assert_eq!(r.step_ms.len(), 1);
        assert!(r.step_ms_median > 0.0 && r.step_ms_mean > 0.0 && r.infer_ms_median > 0.0);
        assert!((r.examples_per_s - 2e3 / r.step_ms_median).abs() < 1e-6);
        assert!((r.tokens_per_s - 32e3 / r.step_ms_median).abs() < 1e-6);
        assert!(r.peak_rss_mb.is_some_and(|m| m > 0.0));
        assert!(r.loss_first.is_finite() && r.loss_last.is_finite());
        let line = serde_json::to_string(&r).map_err(|e| TrainError::Config {
            field: "result",
            reason: e.to_string(),
        })?;
        assert!(line.contains("\"impl\":\"petl\""));
        Ok(())
    }
}
