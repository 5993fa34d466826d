//! Running one base forward for rows of one or many tasks.

use crate::registry::LoadedTask;
use candle_core::Tensor;
use petl_data::{collate, Encoded};
use petl_methods::diff::{apply_diff, CorrectionGroups};
use petl_models::BaseModel;
use petl_models::{Chain, EncoderInput, ForwardCtx, Hooks, NoHooks, RowGroups};
use petl_train::Prediction;
use std::ops::Range;

/// Errors of a forward, as text for the JSON answer.
pub(crate) type EngineResult<T> = Result<T, String>;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn input_of(items: &[&Encoded], pad_id: u32, task: &LoadedTask<'_>) -> EngineResult<EncoderInput> {
    let batch = collate(items, pad_id).map_err(err)?;
    EncoderInput::from_host(
        &batch.input_ids,
        &batch.type_ids,
        &batch.attention_mask,
        batch.batch_size,
        batch.seq_len,
        task.model.model().device(),
    )
    .map_err(err)
}

/// Rows of a single task. With `merge`, LoRA/IA³ are folded into the weights and a sparse diff
/// is written into the base for the forward and taken out after it: the fastest path when one
/// task is hot.
pub(crate) fn run_alone(
    task: &LoadedTask<'_>,
    items: &[&Encoded],
    pad_id: u32,
    merge: bool,
) -> EngineResult<Vec<Prediction>> {
    let input = input_of(items, pad_id, task)?;
    let tm = &task.model;
    let model = tm.model();
    let mut ctx = ForwardCtx::eval();
    let forward = |hooks: &dyn Hooks, ctx: &mut ForwardCtx| -> EngineResult<Tensor> {
        let out = model.forward(&input, hooks, ctx).map_err(err)?;
        tm.head_logits(&out.hidden, &out.mask, hooks, ctx).map_err(err)
    };
    let logits = match (&task.diff, &task.correction) {
        (Some(diff), _) if merge => {
            let applied = apply_diff(model, diff).map_err(err)?;
            let logits = forward(tm.delta(), &mut ctx);
            // The base is shared by every task: restore it even when the forward failed.
            applied.remove(model).map_err(err)?;
            logits?
        }
        (_, Some(correction)) => forward(&Chain(tm.delta(), correction), &mut ctx)?,
        _ if merge => {
            let merged = tm.delta().merged(model).map_err(err)?;
            forward(&merged, &mut ctx)?
        }
        _ => forward(tm.delta(), &mut ctx)?,
    };
    predictions(task, &logits)
}

/// Rows of several tasks that share a layout, in one base forward: each task's delta (and
/// sparse-diff correction) acts on its own rows only. `tasks[i].1` are task `i`'s rows.
pub(crate) fn run_shared(
    tasks: &[(&LoadedTask<'_>, Vec<&Encoded>)],
    pad_id: u32,
) -> EngineResult<Vec<Vec<Prediction>>> {
    let Some((first, _)) = tasks.first() else {
        return Ok(Vec::new());
    };
    let model = first.model.model();
    let chains: Vec<Chain<'_>> = tasks
        .iter()
        .map(|(t, _)| {
            let correction: &dyn Hooks = match &t.correction {
                Some(c) => c,
                None => &NoHooks,
            };
            Chain(t.model.delta(), correction)
        })
        .collect();
    let mut ranges: Vec<Range<usize>> = Vec::with_capacity(tasks.len());
    let mut items: Vec<&Encoded> = Vec::new();
    for (_, rows) in tasks {
        ranges.push(items.len()..items.len() + rows.len());
        items.extend(rows.iter().copied());
    }
    // Deltas act per task through row groups; sparse diffs' corrections act in one pass per
    // hook point for all tasks at once.
    let deltas = RowGroups::new(
        ranges
            .iter()
            .cloned()
            .zip(tasks.iter().map(|(t, _)| t.model.delta() as &dyn Hooks))
            .collect(),
    )
    .map_err(err)?;
    let corrections = CorrectionGroups::new(
        ranges
            .iter()
            .zip(tasks)
            .filter_map(|(r, (t, _))| t.correction.as_ref().map(|c| (r.clone(), c)))
            .collect(),
    )
    .map_err(err)?;
    let input = input_of(&items, pad_id, first)?;
    let mut ctx = ForwardCtx::eval();
    let out = model
        .forward(&input, &Chain(&deltas, &corrections), &mut ctx)
        .map_err(err)?;
    let mut answers = Vec::with_capacity(tasks.len());
    for (((task, _), rows), chain) in tasks.iter().zip(&ranges).zip(&chains) {
        let hidden = out.hidden.narrow(0, rows.start, rows.len()).map_err(err)?;
        let mask = out.mask.narrow(0, rows.start, rows.len()).map_err(err)?;
        let logits = task
            .model
            .head_logits(&hidden, &mask, chain, &mut ctx)
            .map_err(err)?;
        answers.push(predictions(task, &logits)?);
    }
    Ok(answers)
}

fn predictions(task: &LoadedTask<'_>, logits: &Tensor) -> EngineResult<Vec<Prediction>> {
    task.model.predictions(logits).map_err(err)
}
