//! Training-step throughput and memory of one method on one model: what `petl bench` measures
//! in a child process per method, next to the PyTorch twin `scripts/bench_torch.py`.
//!
//! A measurement draws one random batch (seeded token ids, `[CLS]` first, no padding, random
//! labels of a 2-class task), then times optimizer steps exactly as [`crate::train`] takes them
//! (dropout on, cross-entropy, backward, the L0 penalty where the method has one, clipping,
//! AdamW over the trainable parameters only) and no-grad evaluation forwards of the same batch.
//! Peak memory is the process's, so one process should run one measurement; spawning processes
//! is left to the caller.
//!
//! [`BenchModel::BertBase`] is a randomly initialised BERT-base written once, deterministically,
//! in Hugging Face's layout, so PyTorch loads the very same weights.

use crate::session::TaskModel;
use crate::step::{Optimizers, StepSettings};
use crate::trainer::classification_step;
use crate::{Result, TrainConfig, TrainError};
use candle_core::{Device, Tensor};
use petl_data::{collate, Encoded, Label, TaskKind, TaskSpec};
use petl_models::{EncoderModel, ForwardCtx, Init, ModelDir, ParamStore, Pooling, Precision};
use petl_ops::DropoutRng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The learning rate of every measurement: the step's cost does not depend on it, but a rate
/// that keeps the loss finite over a few steps keeps [`crate::TrainError::NonFiniteLoss`] away.
pub const BENCH_LR: f64 = 1e-4;

/// BERT's `[CLS]` id in the uncased WordPiece vocabulary every bench model uses.
const CLS_ID: u32 = 101;

/// The seed of the random BERT-base weights: fixed, so every machine benchmarks the same model.
pub const RANDOM_BERT_SEED: u64 = 20_220_125;

/// The model a benchmark runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BenchModel {
    /// all-MiniLM-L6-v2 from petl's cache (fetched on first use).
    MiniLm,
    /// A randomly initialised BERT-base ([`RandomBert::base`]), written once into the cache.
    BertBase,
    /// A local Hugging Face model directory.
    Dir(PathBuf),
}

impl BenchModel {
    /// `minilm`, `bert-base`, or a directory.
    pub fn parse(text: &str) -> Self {
        match text {
            "minilm" => Self::MiniLm,
            "bert-base" => Self::BertBase,
            dir => Self::Dir(PathBuf::from(dir)),
        }
    }

    /// A short name for tables.
    pub fn label(&self) -> String {
        match self {
            Self::MiniLm => "minilm".into(),
            Self::BertBase => "bert-base (random init)".into(),
            Self::Dir(d) => d.display().to_string(),
        }
    }

    /// The model directory, fetching MiniLM or writing the random BERT-base first if needed.
    pub fn resolve(&self) -> Result<PathBuf> {
        match self {
            Self::MiniLm => Ok(petl_hub::ensure("minilm")?),
            Self::BertBase => {
                let dir = petl_hub::petl_home().join("bench").join("bert-base-random");
                write_random_bert(&RandomBert::base(), RANDOM_BERT_SEED, &dir)?;
                Ok(dir)
            }
            Self::Dir(d) => {
                ModelDir::open(d)?;
                Ok(d.clone())
            }
        }
    }
}

/// The shape of a randomly initialised BERT encoder (GELU, post-LN, absolute positions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandomBert {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// Transformer blocks.
    pub num_layers: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// FFN inner width.
    pub intermediate_size: usize,
    /// Position embeddings.
    pub max_position_embeddings: usize,
}

impl RandomBert {
    /// BERT-base: 12 layers, width 768, 12 heads, FFN 3072, the uncased vocabulary.
    pub fn base() -> Self {
        Self {
            vocab_size: 30522,
            hidden_size: 768,
            num_layers: 12,
            num_heads: 12,
            intermediate_size: 3072,
            max_position_embeddings: 512,
        }
    }

    /// A 2-layer, 64-wide BERT for tests.
    pub fn tiny() -> Self {
        Self {
            vocab_size: 200,
            hidden_size: 64,
            num_layers: 2,
            num_heads: 4,
            intermediate_size: 128,
            max_position_embeddings: 64,
        }
    }

    /// The `config.json` of this shape: a complete Hugging Face `BertConfig`.
    pub fn config_json(&self) -> serde_json::Value {
        serde_json::json!({
            "architectures": ["BertModel"],
            "model_type": "bert",
            "attention_probs_dropout_prob": 0.1,
            "classifier_dropout": null,
            "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1,
            "hidden_size": self.hidden_size,
            "initializer_range": 0.02,
            "intermediate_size": self.intermediate_size,
            "layer_norm_eps": 1e-12,
            "max_position_embeddings": self.max_position_embeddings,
            "num_attention_heads": self.num_heads,
            "num_hidden_layers": self.num_layers,
            "pad_token_id": 0,
            "position_embedding_type": "absolute",
            "type_vocab_size": 2,
            "use_cache": true,
            "vocab_size": self.vocab_size,
        })
    }

    /// Every tensor name (Hugging Face `BertModel` keys, pooler included) with its shape.
    pub fn tensor_shapes(&self) -> BTreeMap<String, Vec<usize>> {
        let (d, m) = (self.hidden_size, self.intermediate_size);
        let mut out = BTreeMap::new();
        let mut linear = |name: String, o: usize, i: usize| {
            out.insert(format!("{name}.weight"), vec![o, i]);
            out.insert(format!("{name}.bias"), vec![o]);
        };
        for l in 0..self.num_layers {
            let p = format!("encoder.layer.{l}");
            for proj in ["query", "key", "value"] {
                linear(format!("{p}.attention.self.{proj}"), d, d);
            }
            linear(format!("{p}.attention.output.dense"), d, d);
            linear(format!("{p}.intermediate.dense"), m, d);
            linear(format!("{p}.output.dense"), d, m);
        }
        linear("pooler.dense".into(), d, d);
        let norms = (0..self.num_layers)
            .flat_map(|l| {
                [
                    format!("encoder.layer.{l}.attention.output.LayerNorm"),
                    format!("encoder.layer.{l}.output.LayerNorm"),
                ]
            })
            .chain(["embeddings.LayerNorm".to_string()]);
        for n in norms {
            out.insert(format!("{n}.weight"), vec![d]);
            out.insert(format!("{n}.bias"), vec![d]);
        }
        out.insert(
            "embeddings.word_embeddings.weight".into(),
            vec![self.vocab_size, d],
        );
        out.insert(
            "embeddings.position_embeddings.weight".into(),
            vec![self.max_position_embeddings, d],
        );
        out.insert("embeddings.token_type_embeddings.weight".into(), vec![2, d]);
        out
    }
}

/// Writes a randomly initialised BERT of shape `shape` into `dir` as `config.json` and
/// `model.safetensors`: weights N(0, 0.02²), LayerNorm γ = 1 and β = 0, biases 0, drawn from
/// `seed` in name order, so the same arguments give the same bytes on every machine. A `dir`
/// that already holds this configuration and weights is left alone; otherwise both files are
/// written into a fresh directory that is then renamed into place, so a reader never sees half
/// a model.
pub fn write_random_bert(shape: &RandomBert, seed: u64, dir: &Path) -> Result<()> {
    let config = serde_json::to_string_pretty(&shape.config_json()).map_err(|e| TrainError::Config {
        field: "model",
        reason: format!("cannot render the random model's config.json: {e}"),
    })? + "\n";
    let weights = dir.join("model.safetensors");
    if weights.is_file() && std::fs::read_to_string(dir.join("config.json")).ok().as_deref() == Some(&config)
    {
        return Ok(());
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TrainError::Io { path, source }
    };
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let written = write_random_files(shape, seed, &tmp, &config).and_then(|()| {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(io(dir))?;
        }
        std::fs::rename(&tmp, dir).map_err(io(dir))
    });
    if written.is_err() {
        // Best effort: a leftover temporary directory is harmless but wastes disk.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    written
}

fn write_random_files(shape: &RandomBert, seed: u64, dir: &Path, config: &str) -> Result<()> {
    petl_artifact::write_atomic(&dir.join("config.json"), config.as_bytes())?;
    let mut store = ParamStore::new(&Device::Cpu, seed);
    let mut tensors: BTreeMap<String, Tensor> = BTreeMap::new();
    for (name, dims) in shape.tensor_shapes() {
        let init = if name.ends_with(".bias") {
            Init::Zeros
        } else if name.contains("LayerNorm") {
            Init::Ones
        } else {
            Init::Normal { std: 0.02 }
        };
        let var = store.create(&name, &dims, init)?;
        tensors.insert(name, var.as_tensor().clone());
    }
    let path = dir.join("model.safetensors");
    // transformers refuses safetensors files whose metadata lacks the framework tag.
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(tensors.iter(), Some(metadata), &path).map_err(|e| {
        TrainError::Artifact(petl_artifact::ArtifactError::BadWeights {
            path: path.clone(),
            message: e.to_string(),
        })
    })
}

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
    /// Task loss of the first step (warm-up included).
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

/// The batch of a measurement: `batch` rows of `seq` random ids (`[CLS]` first where the
/// vocabulary has it), no padding, random labels of 2 classes.
pub fn random_batch(batch: usize, seq: usize, vocab: usize, seed: u64) -> Vec<Encoded> {
    let mut rng = DropoutRng::new(seed);
    (0..batch)
        .map(|_| {
            let draws = rng.uniform(seq + 1);
            let mut ids: Vec<u32> = draws[..seq]
                .iter()
                .map(|u| ((u * vocab as f32) as u32).min(vocab as u32 - 1))
                .collect();
            ids[0] = if (CLS_ID as usize) < vocab { CLS_ID } else { 0 };
            Encoded {
                input_ids: ids,
                type_ids: vec![0; seq],
                label: Label::Class(usize::from(draws[seq] >= 0.5)),
            }
        })
        .collect()
}

/// Runs one measurement in this process.
pub fn measure(spec: &BenchSpec) -> Result<BenchResult> {
    spec.check()?;
    let device = petl_models::device::parse(&spec.device)?;
    let model =
        EncoderModel::load_with_precision(&ModelDir::open(&spec.model_dir)?, &device, spec.precision)?;
    let mut method = petl_methods::preset(&spec.method)?;
    let mut notes = Vec::new();
    if crate::diff_pipeline::projection_of(&method).is_some() {
        // The projection and fixed-mask stages are short and cheap; the cost of diff pruning
        // is its first stage, L0 training of a dense gated diff.
        method = crate::diff_pipeline::without_projection(&method);
        notes.push("stage 1 only (L0-gated dense diff); gates step with their own AdamW".into());
    }
    let spec_task = TaskSpec::default_for(
        "bench",
        TaskKind::Classification {
            labels: vec!["0".into(), "1".into()],
        },
    );
    let tm = TaskModel::new(&model, &method, spec_task, Pooling::Cls, spec.seed)?;
    let defaults = TrainConfig::default();
    let mut optims = Optimizers::new(tm.trained(), defaults.adam(), spec.precision)?;
    let data = random_batch(spec.batch, spec.seq, model.config().vocab_size, spec.seed);
    let micro = [(0..data.len()).collect::<Vec<_>>()];

    let mut times = Vec::with_capacity(spec.steps);
    let (mut loss_first, mut loss_last) = (f64::NAN, f64::NAN);
    for step in 0..spec.warmup + spec.steps {
        let started = Instant::now();
        let outcome = classification_step(
            &tm,
            &data,
            &micro,
            0,
            StepSettings {
                seed: spec.seed,
                step: step as u64,
                lr: BENCH_LR,
                max_grad_norm: defaults.max_grad_norm,
                checkpoint: spec.checkpoint,
            },
            &mut optims,
        )?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        if step == 0 {
            loss_first = outcome.loss;
        }
        loss_last = outcome.loss;
        if step >= spec.warmup {
            times.push(ms);
        }
    }

    let batch = collate(&data.iter().collect::<Vec<_>>(), 0)?;
    let mut infer = Vec::with_capacity(spec.steps);
    // One untimed forward first, as the training steps have their warm-up.
    for rep in 0..=spec.steps {
        let started = Instant::now();
        let logits = tm.logits(&batch, &mut ForwardCtx::eval())?;
        // Reading the logits back makes sure the forward has finished.
        logits.to_vec2::<f32>()?;
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
        trainable_params: tm.params().num_elements(),
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
    use petl_models::BaseModel;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn random_batch_is_seeded_and_in_range() {
        let a = random_batch(3, 7, 120, 5);
        assert_eq!(a, random_batch(3, 7, 120, 5));
        assert_ne!(a, random_batch(3, 7, 120, 6));
        for e in &a {
            assert_eq!((e.input_ids.len(), e.input_ids[0]), (7, CLS_ID));
            assert!(e.input_ids.iter().all(|&i| i < 120));
        }
        assert!(random_batch(2, 4, 50, 1).iter().all(|e| e.input_ids[0] == 0));
    }

    /// The random writer gives the same bytes twice, keeps a finished directory, and writes
    /// what the encoder loads: every base tensor (pooler included), LayerNorm γ = 1.
    #[test]
    fn random_bert_is_deterministic_and_loads() -> Result<()> {
        let root = tempfile::tempdir().map_err(|source| TrainError::Io {
            path: std::env::temp_dir(),
            source,
        })?;
        let shape = RandomBert::tiny();
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        write_random_bert(&shape, 7, &a)?;
        write_random_bert(&shape, 7, &b)?;
        let read = |p: &Path| std::fs::read(p).unwrap_or_default();
        let bytes = read(&a.join("model.safetensors"));
        assert!(!bytes.is_empty());
        assert_eq!(bytes, read(&b.join("model.safetensors")));
        let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let before = modified(&a.join("model.safetensors"));
        write_random_bert(&shape, 7, &a)?;
        assert_eq!(before, modified(&a.join("model.safetensors")), "rewritten");

        let model = EncoderModel::load(&ModelDir::open(&a)?, &Device::Cpu)?;
        let expected: usize = shape
            .tensor_shapes()
            .values()
            .map(|s| s.iter().product::<usize>())
            .sum();
        assert_eq!(model.num_base_params(), expected);
        assert_eq!(model.base_params().len(), shape.tensor_shapes().len());
        assert!(model.extra_tensors().is_empty());
        let gamma = model.base_params()["encoder.layer.1.output.LayerNorm.weight"].to_vec1::<f32>()?;
        assert!(gamma.iter().all(|&g| g == 1.0));
        let w = model.base_params()["encoder.layer.0.intermediate.dense.weight"]
            .flatten_all()?
            .to_vec1::<f32>()?;
        let std = (w.iter().map(|x| x * x).sum::<f32>() / w.len() as f32).sqrt();
        assert!((std - 0.02).abs() < 0.002, "weight std {std}");
        assert!(std::fs::read_dir(root.path())
            .map_err(|source| TrainError::Io {
                path: root.path().to_path_buf(),
                source
            })?
            .filter_map(|e| e.ok())
            .all(|e| !e.file_name().to_string_lossy().starts_with('.')));
        Ok(())
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
