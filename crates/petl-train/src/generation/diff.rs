//! Diff pruning on a generation task: the three stages of [`crate::diff_pipeline`] with the
//! generation loop, the projection applied to a language model's diff.

use super::base::GenBase;
use super::model::GenTaskModel;
use super::task::GenTask;
use super::trainer::{evaluate_task, train_generation, GenRunSummary};
use crate::diff_pipeline::{project_delta, sparse_method, ProjectionSummary, Stages};
use crate::trainer::TrainOptions;
use crate::{Result, RunConfig};
use petl_methods::diff::Projection;
use std::path::Path;
use std::time::Instant;

/// The generation pipeline's stages.
pub(crate) struct GenerationStages<'a> {
    pub task: &'a GenTask,
    pub opts: &'a TrainOptions,
    /// Score the frozen base in the first stage.
    pub eval_base: bool,
}

impl Stages for GenerationStages<'_> {
    type Summary = GenRunSummary;

    fn train(&self, cfg: &RunConfig, dir: &Path) -> Result<GenRunSummary> {
        // The frozen base is scored once, before the first stage.
        let eval_base = self.eval_base && cfg.init.is_none();
        train_generation(cfg, self.task, dir, self.opts, eval_base)
    }

    fn project(
        &self,
        cfg: &RunConfig,
        from: &Path,
        projection: &Projection,
        out: &Path,
    ) -> Result<(ProjectionSummary, Option<f64>)> {
        let started = Instant::now();
        let base = GenBase::load(&cfg.model, &self.opts.device, cfg.train.precision)?;
        let source = GenTaskModel::from_artifact(&base, from)?;
        let projected = project_delta(source.delta(), &base, projection, from)?;
        let mut target = GenTaskModel::with_sparse_diff(
            &base,
            &sparse_method(source.method()),
            source.task().clone(),
            0,
            Some(&projected.sparse),
        )?;
        target.copy_dense_params_from(&source)?;
        target.set_value_dtype(projection.value_dtype);
        let size = target.save_artifact(out)?;
        let summary = projected.summary(size, out, started)?;
        let t = &cfg.train;
        let dev = evaluate_task(
            &target,
            self.task,
            t.max_len,
            t.eval_rows,
            t.eval_batch_size,
            self.opts.progress,
        )?;
        Ok((summary, Some(dev.headline)))
    }

    fn whole(&self, method: &str, stage1: &GenRunSummary, stage3: &GenRunSummary) -> GenRunSummary {
        GenRunSummary {
            method: method.to_string(),
            base_eval: stage1.base_eval.clone(),
            wall_seconds: stage1.wall_seconds + stage3.wall_seconds,
            train_seconds: stage1.train_seconds + stage3.train_seconds,
            ..stage3.clone()
        }
    }
}
