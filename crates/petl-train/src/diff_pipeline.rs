//! Diff pruning as one run (Guo et al. 2021): L0 training of a dense gated diff, projection
//! to an exact number of entries, then fine-tuning of those entries with the mask fixed.
//!
//! Each stage is a run of its own in a subdirectory — `stage1/`, `projected/`, `stage3/` —
//! so each can be inspected, resumed or rerun alone; the pipeline's directory gets the final
//! artifact, `metrics.json` (the last stage's, under the pipeline's method name) and
//! `diff-pruning.json` with every stage's figures.

use crate::config::RunConfig;
use crate::session::TaskModel;
use crate::trainer::{read_dev_set, train, RunSummary, TrainOptions};
use crate::{Result, TrainError};
use petl_methods::diff::{project, Projection};
use petl_methods::{Delta, Form, Method};
use petl_models::BaseModel;
use petl_models::{EncoderModel, ModelDir};
use petl_sparse::{SizeReport, SparseDiff};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

/// What the projection stage did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProjectionSummary {
    /// Entries of the diff before projection that were nonzero.
    pub nonzero_before: usize,
    /// Entries the diff could have (the covered base parameters).
    pub total: usize,
    /// `nonzero_before / total`: the sparsity L0 training reached on its own.
    pub density_before: f64,
    /// Entries kept: exactly `round(density · base parameters)`.
    pub kept: usize,
    /// The smallest kept magnitude.
    pub threshold: f32,
    /// Bytes of the sparse diff file.
    pub sparse_bytes: u64,
    /// Bytes of the whole artifact directory (diff, head, metadata).
    pub artifact_bytes: u64,
    /// The sparse file's size report (positions vs. the information-theoretic bound).
    pub size: petl_sparse::SizeReport,
    /// Seconds the projection took.
    pub seconds: f64,
}

/// `diff-pruning.json`: every stage of one pipeline run (`S`: a classification run's
/// [`RunSummary`] or a generation run's summary).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiffPruningReport<S = RunSummary> {
    /// The first stage (L0 or dense training).
    pub stage1: S,
    /// The projection.
    pub projection: ProjectionSummary,
    /// Dev headline of the projected diff before fine-tuning.
    pub projected_dev_headline: Option<f64>,
    /// The fixed-mask fine-tuning stage.
    pub stage3: S,
}

/// What one kind of task (classification, generation) supplies to the pipeline.
pub(crate) trait Stages {
    /// A stage's `metrics.json`.
    type Summary: Clone + Serialize + DeserializeOwned;

    /// Trains `cfg` into `dir`.
    fn train(&self, cfg: &RunConfig, dir: &Path) -> Result<Self::Summary>;

    /// Projects the artifact in `from` into `out` and evaluates the projected diff: the
    /// projection's figures and the dev headline before fine-tuning.
    fn project(
        &self,
        cfg: &RunConfig,
        from: &Path,
        projection: &Projection,
        out: &Path,
    ) -> Result<(ProjectionSummary, Option<f64>)>;

    /// The pipeline's own summary: stage 3's figures under the pipeline's method name, with
    /// both stages' times.
    fn whole(&self, method: &str, stage1: &Self::Summary, stage3: &Self::Summary) -> Self::Summary;
}

/// The classification pipeline's stages.
struct Classification<'a> {
    opts: &'a TrainOptions,
}

impl Stages for Classification<'_> {
    type Summary = RunSummary;

    fn train(&self, cfg: &RunConfig, dir: &Path) -> Result<RunSummary> {
        train(cfg, dir, self.opts)
    }

    fn project(
        &self,
        cfg: &RunConfig,
        from: &Path,
        projection: &Projection,
        out: &Path,
    ) -> Result<(ProjectionSummary, Option<f64>)> {
        let model = EncoderModel::load(&ModelDir::open(&cfg.model)?, &self.opts.device)?;
        let summary = project_artifact(&model, from, projection, out)?;
        let projected = TaskModel::from_artifact(&model, out)?;
        let (dev, pad) = read_dev_set(cfg, &model)?;
        let dev = projected.evaluate(&dev, cfg.train.eval_batch_size, pad)?;
        Ok((summary, dev.headline))
    }

    fn whole(&self, method: &str, stage1: &RunSummary, stage3: &RunSummary) -> RunSummary {
        RunSummary {
            method: method.to_string(),
            wall_seconds: stage1.wall_seconds + stage3.wall_seconds,
            train_seconds: stage1.train_seconds + stage3.train_seconds,
            ..stage3.clone()
        }
    }
}

/// The method with its change to the base parameters made sparse — a diff-pruning diff, a
/// full fine-tuning or a BitFit delta: what the fixed-mask stage trains and the artifact
/// records.
pub fn sparse_method(method: &Method) -> Method {
    let mut m = method.clone();
    for d in &mut m.deltas {
        if d.form.replaces_params() {
            d.form = Form::SparseDiff {};
        }
    }
    m
}

/// The projection settings of a method's diff, when it has a diff that is projected.
pub fn projection_of(method: &Method) -> Option<&Projection> {
    method.deltas.iter().find_map(|d| match &d.form {
        Form::Diff {
            projection: Some(p), ..
        } => Some(p),
        _ => None,
    })
}

/// The method with its projection removed: diff pruning's first stage.
pub(crate) fn without_projection(method: &Method) -> Method {
    let mut m = method.clone();
    for d in &mut m.deltas {
        if let Form::Diff { projection, .. } = &mut d.form {
            *projection = None;
        }
    }
    m
}

/// Runs all three stages of a classification run in `run_dir`.
pub(crate) fn run(
    cfg: &RunConfig,
    run_dir: &Path,
    opts: &TrainOptions,
    projection: &Projection,
) -> Result<RunSummary> {
    run_stages(&Classification { opts }, cfg, run_dir, opts.resume, projection)
}

/// Runs the three stages with `stages` in `run_dir`.
pub(crate) fn run_stages<S: Stages>(
    stages: &S,
    cfg: &RunConfig,
    run_dir: &Path,
    resume: bool,
    projection: &Projection,
) -> Result<S::Summary> {
    crate::trainer::prepare_run_dir(cfg, run_dir, resume)?;

    let mut cfg1 = cfg.clone();
    cfg1.method = without_projection(&cfg.method);
    let stage1 = finished_or(run_dir.join("stage1"), resume, |dir| stages.train(&cfg1, dir))?;

    let projected_dir = run_dir.join("projected");
    let (projection_summary, projected_dev) =
        stages.project(cfg, &run_dir.join("stage1/artifact"), projection, &projected_dir)?;

    let mut cfg3 = cfg.clone();
    cfg3.method = sparse_method(&cfg.method);
    cfg3.init = Some(projected_dir.clone());
    cfg3.train.lr = projection.finetune_lr;
    cfg3.train.epochs = projection.finetune_epochs.unwrap_or(cfg.train.epochs);
    // The reference fixed-mask script: linear decay from the start, no weight decay.
    cfg3.train.warmup_ratio = 0.0;
    cfg3.train.weight_decay = 0.0;
    let stage3 = finished_or(run_dir.join("stage3"), resume, |dir| stages.train(&cfg3, dir))?;

    copy_dir(&run_dir.join("stage3/artifact"), &run_dir.join("artifact"))?;
    let report = DiffPruningReport {
        stage1: stage1.clone(),
        projection: projection_summary,
        projected_dev_headline: projected_dev,
        stage3: stage3.clone(),
    };
    petl_artifact::write_json_atomic(&run_dir.join("diff-pruning.json"), &report)?;
    // The task's figures are the stored diff's (stage 3); stage 1's dense training state is in
    // `diff-pruning.json`.
    let summary = stages.whole(&cfg.method.name, &stage1, &stage3);
    petl_artifact::write_json_atomic(&run_dir.join("metrics.json"), &summary)?;
    Ok(summary)
}

/// The summary of the run in `dir` if it finished (and `resume` allows reuse), else runs it.
fn finished_or<T: DeserializeOwned>(
    dir: std::path::PathBuf,
    resume: bool,
    run: impl FnOnce(&Path) -> Result<T>,
) -> Result<T> {
    let metrics = dir.join("metrics.json");
    if resume && metrics.is_file() {
        let text = std::fs::read_to_string(&metrics).map_err(|source| TrainError::Io {
            path: metrics.clone(),
            source,
        })?;
        return serde_json::from_str(&text).map_err(|e| TrainError::ConfigFile {
            path: metrics,
            message: e.to_string(),
        });
    }
    run(&dir)
}

/// Projects the diff of the artifact in `from` — a diff-pruning first stage, or a full
/// fine-tuning run (whose diff is `θ − θ₀`) — to `projection.density` of the base
/// parameters, and saves the result as a sparse artifact in `out` with the same head.
pub fn project_artifact(
    model: &EncoderModel,
    from: &Path,
    projection: &Projection,
    out: &Path,
) -> Result<ProjectionSummary> {
    let started = Instant::now();
    let source = TaskModel::from_artifact(model, from)?;
    let projected = project_delta(source.delta(), model, projection, from)?;
    let mut target = TaskModel::with_sparse_diff(
        model,
        &sparse_method(source.method()),
        source.spec().clone(),
        source.head_pooling(),
        0,
        Some(&projected.sparse),
    )?;
    target.copy_head_from(&source)?;
    target.set_value_dtype(projection.value_dtype);
    let size = target.save_artifact(out)?;
    projected.summary(size, out, started)
}

/// A diff projected to its kept entries, and what the projection did.
pub(crate) struct ProjectedDiff {
    /// The kept entries.
    pub sparse: SparseDiff,
    nonzero_before: usize,
    total: usize,
    kept: usize,
    threshold: f32,
}

/// Projects the dense diff of `delta` (loaded from the artifact in `from`) on `base` to
/// `projection.density` of the base parameters: the largest magnitudes are kept.
pub(crate) fn project_delta(
    delta: &Delta,
    base: &dyn BaseModel,
    projection: &Projection,
    from: &Path,
) -> Result<ProjectedDiff> {
    projection.validate().map_err(|reason| TrainError::Config {
        field: "projection",
        reason,
    })?;
    let diffs = delta.dense_diffs(base)?.ok_or_else(|| TrainError::Config {
        field: "method",
        reason: format!(
            "artifact {} ({}) changes no base parameter, so it has no diff to project",
            from.display(),
            delta.method().name
        ),
    })?;
    let total: usize = diffs.values().map(|d| d.values.len()).sum();
    let nonzero_before: usize = diffs
        .values()
        .map(|d| d.values.iter().filter(|v| **v != 0.0).count())
        .sum();
    let kept = projection.keep_count(base.num_base_params()).min(total);
    let sparse = project(&diffs, kept).map_err(|e| TrainError::Config {
        field: "projection",
        reason: e.to_string(),
    })?;
    let threshold = sparse
        .tensors
        .values()
        .flat_map(|t| t.values.iter().map(|v| v.abs()))
        .fold(f32::INFINITY, f32::min);
    Ok(ProjectedDiff {
        sparse,
        nonzero_before,
        total,
        kept,
        threshold,
    })
}

impl ProjectedDiff {
    /// The projection's figures, once the projected artifact is written to `out` (`size`: its
    /// sparse file's report).
    pub(crate) fn summary(
        &self,
        size: Option<SizeReport>,
        out: &Path,
        started: Instant,
    ) -> Result<ProjectionSummary> {
        let size = size.ok_or_else(|| TrainError::Config {
            field: "method",
            reason: "the projected method stores no sparse diff".into(),
        })?;
        Ok(ProjectionSummary {
            nonzero_before: self.nonzero_before,
            total: self.total,
            density_before: self.nonzero_before as f64 / self.total.max(1) as f64,
            kept: self.kept,
            threshold: self.threshold,
            sparse_bytes: size.file_bytes,
            artifact_bytes: dir_bytes(out),
            size,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

/// Total size of the files directly in `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TrainError::Io { path, source }
    };
    std::fs::create_dir_all(to).map_err(io(to))?;
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        if entry.path().is_file() {
            let bytes = std::fs::read(entry.path()).map_err(io(&entry.path()))?;
            petl_artifact::write_atomic(&to.join(entry.file_name()), &bytes)?;
        }
    }
    Ok(())
}
