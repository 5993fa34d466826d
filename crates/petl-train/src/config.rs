//! Run configuration: what to train (model, task, method) and how (hyperparameters).
//!
//! Written to every run directory as `config.toml`, and accepted back with `--config`. Unknown
//! keys are rejected with the key's name: a misspelt hyperparameter silently ignored is a
//! wasted run.

use crate::schedule::Schedule;
use crate::{Result, TrainError};
use petl_data::{GlueTask, TableSpec};
use petl_methods::Method;
use petl_models::{Pooling, Precision};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Everything a run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Local Hugging Face model directory.
    pub model: PathBuf,
    /// The task and where its data is.
    pub task: TaskSource,
    /// What trains: a preset name (`method = "lora"`) or a full design-space configuration
    /// (`[method]` + `[[method.delta]]`); written back resolved, so a run records exactly what
    /// it trained.
    #[serde(deserialize_with = "Method::deserialize_named_or_full")]
    pub method: Method,
    /// How the head pools the sequence: `cls` (HF layout, default) or `mean`.
    #[serde(default)]
    pub pooling: Pooling,
    /// Start from this artifact's trained state (delta and head) instead of a fresh one; its
    /// method must be this run's. Diff pruning's fixed-mask stage starts from the projection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<PathBuf>,
    /// Hyperparameters.
    #[serde(default)]
    pub train: TrainConfig,
}

/// Where a task's data comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum TaskSource {
    /// A GLUE task in the standard TSV layout (`<data_dir>/<TASK>/{train,dev}.tsv`).
    Glue {
        /// Task name (`cola`, `sst2`, `mrpc`, `stsb`, `qqp`, `mnli`, `mnli-mm`, `qnli`, `rte`, `wnli`).
        name: String,
        /// The GLUE root directory.
        data_dir: PathBuf,
    },
    /// A CSV / TSV / JSONL table for training and one for evaluation.
    Table {
        /// Task name used in reports.
        name: String,
        /// Training table.
        train: Box<TableSpec>,
        /// Evaluation table (same columns); without one, `holdout` rows of the training table
        /// are set aside.
        #[serde(default)]
        dev: Option<TableSpec>,
        /// Rows held out of a shuffled training table as the dev set when `dev` is absent.
        #[serde(default)]
        holdout: Option<usize>,
    },
    /// A text-generation task (summarization, translation, prompt → response).
    Generation(Box<crate::generation::GenTask>),
}

impl TaskSource {
    /// The task's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Glue { name, .. } | Self::Table { name, .. } => name,
            Self::Generation(task) => &task.name,
        }
    }

    /// The GLUE task, if this is one.
    pub fn glue(&self) -> Result<Option<GlueTask>> {
        match self {
            Self::Glue { name, .. } => {
                GlueTask::from_name(name)
                    .map(Some)
                    .ok_or_else(|| TrainError::Config {
                        field: "task.name",
                        reason: format!(
                            "{name:?} is not a GLUE task (known: {})",
                            GlueTask::all()
                                .iter()
                                .map(|t| t.name())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    })
            }
            Self::Table { .. } | Self::Generation(_) => Ok(None),
        }
    }
}

/// Training hyperparameters. Defaults follow the usual BERT GLUE recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Passes over the training set. Default 3.
    pub epochs: u64,
    /// Examples per micro-batch. Default 32.
    pub batch_size: usize,
    /// Micro-batches per optimizer step. Default 1.
    pub grad_accum: usize,
    /// Examples per evaluation batch. Default 64.
    pub eval_batch_size: usize,
    /// Peak learning rate. Default 2e-5.
    pub lr: f64,
    /// Fraction of steps spent in linear warmup. Default 0.06.
    pub warmup_ratio: f64,
    /// Decay after warmup. Default linear.
    pub schedule: Schedule,
    /// Decoupled weight decay (not on biases and LayerNorm). Default 0.01.
    pub weight_decay: f64,
    /// Global gradient-norm clip; 0 disables. Default 1.0.
    pub max_grad_norm: f64,
    /// Adam β₁. Default 0.9.
    pub adam_beta1: f64,
    /// Adam β₂. Default 0.999.
    pub adam_beta2: f64,
    /// Adam ε. Default 1e-8.
    pub adam_eps: f64,
    /// Seed for head initialisation, batch order and dropout. Default 42.
    pub seed: u64,
    /// Maximum tokens per example (longest-first truncation). Default 128.
    pub max_len: usize,
    /// Use only the first N training rows. Default: all.
    pub train_rows: Option<usize>,
    /// Use only the first N evaluation rows. Default: all.
    pub eval_rows: Option<usize>,
    /// Evaluate every N optimizer steps; 0 evaluates at the end of each epoch. Default 0.
    pub eval_every: u64,
    /// Log the training loss every N optimizer steps. Default 10.
    pub log_every: u64,
    /// Save a resumable checkpoint every N optimizer steps; 0 checkpoints at each evaluation.
    /// Default 0.
    pub checkpoint_every: u64,
    /// Precision of the frozen linears (mixed precision, see [`Precision`]). f16 trains with
    /// dynamic loss scaling. Default f32.
    pub precision: Precision,
    /// Keep only each block's input during the forward and recompute the block in the
    /// backward (activation checkpointing): less activation memory for one more forward.
    /// Default false.
    pub checkpoint_activations: bool,
    /// Generation tasks: label smoothing ε of the token loss. Default 0.
    pub label_smoothing: f64,
    /// Generation tasks: fill micro-batches up to this many (padded) tokens instead of
    /// `batch_size` examples; with `grad_accum`, the loss is averaged over the step's target
    /// tokens. Default: batches of `batch_size` examples.
    pub max_tokens: Option<usize>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 3,
            batch_size: 32,
            grad_accum: 1,
            eval_batch_size: 64,
            lr: 2e-5,
            warmup_ratio: 0.06,
            schedule: Schedule::Linear,
            weight_decay: 0.01,
            max_grad_norm: 1.0,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_eps: 1e-8,
            seed: 42,
            max_len: 128,
            train_rows: None,
            eval_rows: None,
            eval_every: 0,
            log_every: 10,
            checkpoint_every: 0,
            precision: Precision::F32,
            checkpoint_activations: false,
            label_smoothing: 0.0,
            max_tokens: None,
        }
    }
}

impl TrainConfig {
    /// The AdamW settings of the run's optimizer.
    pub fn adam(&self) -> crate::AdamWConfig {
        crate::AdamWConfig {
            beta1: self.adam_beta1,
            beta2: self.adam_beta2,
            eps: self.adam_eps,
            weight_decay: self.weight_decay,
        }
    }

    /// Checks every field's range.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, reason: String| Err(TrainError::Config { field, reason });
        if self.epochs == 0 {
            return bad("epochs", "must be at least 1".into());
        }
        for (field, v) in [
            ("batch_size", self.batch_size),
            ("grad_accum", self.grad_accum),
            ("eval_batch_size", self.eval_batch_size),
        ] {
            if v == 0 {
                return bad(field, "must be at least 1".into());
            }
        }
        if self.max_len < 4 {
            return bad("max_len", format!("{} leaves no room for text", self.max_len));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", format!("{} is not a positive number", self.lr));
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad(
                "label_smoothing",
                format!("{} is not in [0, 1)", self.label_smoothing),
            );
        }
        if self.max_tokens == Some(0) {
            return bad("max_tokens", "must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.warmup_ratio) {
            return bad("warmup_ratio", format!("{} is not in [0, 1)", self.warmup_ratio));
        }
        if !self.weight_decay.is_finite() || self.weight_decay < 0.0 {
            return bad("weight_decay", format!("{} is negative", self.weight_decay));
        }
        if self.max_grad_norm.is_nan() || self.max_grad_norm < 0.0 {
            return bad("max_grad_norm", format!("{} is negative", self.max_grad_norm));
        }
        for (field, b) in [("adam_beta1", self.adam_beta1), ("adam_beta2", self.adam_beta2)] {
            if !(0.0..1.0).contains(&b) {
                return bad(field, format!("{b} is not in [0, 1)"));
            }
        }
        if matches!(self.train_rows, Some(0)) || matches!(self.eval_rows, Some(0)) {
            return bad("train_rows", "must be at least 1 when set".into());
        }
        Ok(())
    }
}

impl RunConfig {
    /// Mixed precision keeps the frozen linears in half precision, so a method that trains
    /// base parameters themselves (full fine-tuning, BitFit, diffs) would train half-precision
    /// copies: refused, naming the delta.
    pub fn check_precision(&self) -> Result<()> {
        if self.train.precision == Precision::F32 {
            return Ok(());
        }
        if let Some(d) = self
            .method
            .deltas
            .iter()
            .find(|d| d.site == petl_methods::Site::Params)
        {
            return Err(TrainError::Config {
                field: "precision",
                reason: format!(
                    "{} keeps frozen weights in half precision, but method {:?} trains base parameters \
                     ({}); use f32",
                    self.train.precision,
                    self.method.name,
                    d.form.kind()
                ),
            });
        }
        Ok(())
    }

    /// Reads a TOML (`.toml`) or JSON (`.json`) run configuration.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| TrainError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let parsed: std::result::Result<Self, String> = match path.extension().and_then(|e| e.to_str()) {
            Some("json") => serde_json::from_str(&text).map_err(|e| e.to_string()),
            _ => toml::from_str(&text).map_err(|e| e.to_string()),
        };
        let cfg = parsed.map_err(|message| TrainError::ConfigFile {
            path: path.to_path_buf(),
            message,
        })?;
        cfg.train.validate()?;
        Ok(cfg)
    }

    /// The configuration as TOML.
    pub fn to_toml(&self) -> String {
        // Every field is a plain value, a table or an enum with a tag: serialisation cannot fail.
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

/// The `config.json` of the Hugging Face model directory `dir`, as JSON: what decides which
/// architecture loads it.
pub(crate) fn read_model_config(dir: &petl_models::ModelDir) -> Result<serde_json::Value> {
    let path = dir.config_path();
    let text = std::fs::read_to_string(&path).map_err(|source| TrainError::Io {
        path: path.clone(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| TrainError::ConfigFile {
        path,
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_refuses_methods_that_train_base_parameters() {
        let mut cfg = sample();
        cfg.train.precision = Precision::F16;
        for name in ["full", "bitfit", "diff-pruning"] {
            cfg.method = petl_methods::preset(name).unwrap();
            let e = cfg.check_precision().unwrap_err().to_string();
            assert!(e.contains("precision") && e.contains("use f32"), "{name}: {e}");
        }
        for name in ["lora", "mam", "prefix", "pa-ffn"] {
            cfg.method = petl_methods::preset(name).unwrap();
            cfg.check_precision().unwrap();
        }
        cfg.train.precision = Precision::F32;
        cfg.method = petl_methods::preset("full").unwrap();
        cfg.check_precision().unwrap();
    }

    fn sample() -> RunConfig {
        RunConfig {
            model: "m".into(),
            task: TaskSource::Glue {
                name: "sst2".into(),
                data_dir: "glue".into(),
            },
            method: petl_methods::preset("mam-glue").unwrap(),
            pooling: Pooling::Mean,
            init: None,
            train: TrainConfig::default(),
        }
    }

    #[test]
    fn toml_round_trips_and_unknown_keys_are_named() {
        let cfg = sample();
        let text = cfg.to_toml();
        let back: RunConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, cfg);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, text.replace("[train]", "[train]\nlearning_rate = 1.0")).unwrap();
        let e = RunConfig::from_file(&p).unwrap_err().to_string();
        assert!(e.contains("learning_rate"), "{e}");
        let j = dir.path().join("c.json");
        std::fs::write(&j, serde_json::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(RunConfig::from_file(&j).unwrap(), cfg);
    }

    #[test]
    fn a_preset_name_resolves_and_a_full_table_is_checked() {
        let text =
            "model = \"m\"\nmethod = \"lora\"\n[task]\nkind = \"glue\"\nname = \"rte\"\ndata_dir = \"g\"\n";
        let cfg: RunConfig = toml::from_str(text).unwrap();
        assert_eq!(cfg.method, petl_methods::preset("lora").unwrap());
        let bad = text.replace("\"lora\"", "\"lorax\"");
        let e = toml::from_str::<RunConfig>(&bad).unwrap_err().to_string();
        assert!(e.contains("lorax") && e.contains("mam"), "{e}");
        let table = "model = \"m\"\n[method]\nname = \"x\"\n[[method.delta]]\nform = { kind = \"bias\" }\nsite = \"params\"\nsites = 1\n[task]\nkind = \"glue\"\nname = \"rte\"\ndata_dir = \"g\"\n";
        let e = toml::from_str::<RunConfig>(table).unwrap_err().to_string();
        assert!(e.contains("sites"), "{e}");
    }

    #[test]
    fn validation_names_the_field() {
        let t = TrainConfig {
            batch_size: 0,
            ..TrainConfig::default()
        };
        assert!(t.validate().unwrap_err().to_string().contains("batch_size"));
        let t = TrainConfig {
            lr: f64::NAN,
            ..TrainConfig::default()
        };
        assert!(t.validate().unwrap_err().to_string().contains("`lr`"));
    }
}
