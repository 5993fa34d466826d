//! The batching worker: one thread owns the base model and the loaded tasks, collects the
//! requests that arrive within a short window, and answers them with as few base forwards as
//! the tasks' layouts allow.

use crate::engine::{run_alone, run_shared};
use crate::error::ServeError;
use crate::metrics::Metrics;
use crate::registry::{LoadedTask, Registry, Sharing, TaskInfo};
use petl_data::Encoded;
use petl_models::{EncoderModel, Layout};
use petl_train::Prediction;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

pub(crate) type Reply<T> = oneshot::Sender<Result<T, ServeError>>;

/// Work for the worker.
pub(crate) enum Job {
    Classify {
        task: String,
        inputs: Vec<Encoded>,
        reply: Reply<Vec<Prediction>>,
    },
    Load {
        task: String,
        reply: Reply<TaskInfo>,
    },
    Unload {
        task: String,
        reply: Reply<bool>,
    },
    List {
        reply: Reply<Vec<TaskInfo>>,
    },
}

impl Job {
    fn rows(&self) -> usize {
        match self {
            Job::Classify { inputs, .. } => inputs.len(),
            _ => 0,
        }
    }
}

/// The worker's settings.
#[derive(Debug, Clone)]
pub(crate) struct WorkerConfig {
    pub(crate) artifacts: PathBuf,
    pub(crate) max_loaded_bytes: usize,
    pub(crate) max_batch_rows: usize,
    pub(crate) batch_window: Duration,
    pub(crate) merge_single_task: bool,
    pub(crate) pad_id: u32,
}

/// Runs until every sender is dropped, then answers what is left and returns.
pub(crate) fn run(model: EncoderModel, config: WorkerConfig, jobs: Receiver<Job>, metrics: Arc<Metrics>) {
    let mut registry = Registry::new(&model, config.artifacts.clone(), config.max_loaded_bytes);
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        let mut rows = batch[0].rows();
        let deadline = Instant::now() + config.batch_window;
        while rows < config.max_batch_rows {
            let next = match jobs.try_recv() {
                Ok(job) => job,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    match jobs.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                        Ok(job) => job,
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            rows += next.rows();
            batch.push(next);
        }
        metrics.queue_change(-(batch.len() as i64));
        process(&mut registry, &config, batch, &metrics);
    }
}

/// Updates the loaded-artifact gauges; called before any answer that follows a change, so a
/// client reading `/metrics` after its answer sees the change.
fn publish(registry: &Registry<'_>, metrics: &Metrics) {
    metrics.loaded(registry.loaded_count(), registry.loaded_bytes());
}

struct Pending {
    task: String,
    inputs: Vec<Encoded>,
    reply: Reply<Vec<Prediction>>,
    answers: Vec<Option<Prediction>>,
    failed: Option<ServeError>,
}

fn process(registry: &mut Registry<'_>, config: &WorkerConfig, batch: Vec<Job>, metrics: &Metrics) {
    let mut pending = Vec::new();
    for job in batch {
        match job {
            Job::Classify { task, inputs, reply } => pending.push(Pending {
                answers: vec![None; inputs.len()],
                task,
                inputs,
                reply,
                failed: None,
            }),
            Job::Load { task, reply } => {
                let r = registry
                    .ensure_loaded(&task, &HashSet::new())
                    .and_then(|()| registry.info(&task));
                publish(registry, metrics);
                let _ = reply.send(r);
            }
            Job::Unload { task, reply } => {
                let r = registry.unload(&task);
                publish(registry, metrics);
                let _ = reply.send(r);
            }
            Job::List { reply } => {
                let _ = reply.send(registry.list());
            }
        }
    }
    if pending.is_empty() {
        return;
    }
    // Load every task of the batch first, pinning them so none evicts another.
    let names: Vec<String> = pending.iter().map(|p| p.task.clone()).collect();
    let pinned: HashSet<&str> = names.iter().map(String::as_str).collect();
    for p in &mut pending {
        if let Err(e) = registry.ensure_loaded(&p.task, &pinned) {
            p.failed = Some(e);
        }
    }
    publish(registry, metrics);
    // Rows per task, then tasks per layout class: one class is one series of base forwards.
    let mut by_task: BTreeMap<&str, Rows> = BTreeMap::new();
    for (j, p) in pending.iter().enumerate() {
        if p.failed.is_none() {
            by_task
                .entry(p.task.as_str())
                .or_default()
                .extend((0..p.inputs.len()).map(|i| (j, i)));
        }
    }
    let mut classes: Vec<Vec<(&str, Rows)>> = Vec::new();
    let mut shared: HashMap<Layout, usize> = HashMap::new();
    for (task, rows) in by_task {
        let Some(loaded) = registry.get(task) else {
            continue;
        };
        match loaded.sharing {
            Sharing::Shared(layout) => {
                let class = *shared.entry(layout).or_insert_with(|| {
                    classes.push(Vec::new());
                    classes.len() - 1
                });
                classes[class].push((task, rows));
            }
            Sharing::Alone => classes.push(vec![(task, rows)]),
        }
    }
    let mut results: Vec<RowResult> = Vec::new();
    for class in &classes {
        for chunk in chunks(class, config.max_batch_rows) {
            run_chunk(registry, config, &pending, &chunk, metrics, &mut results);
        }
    }
    for (j, i, r) in results {
        match r {
            Ok(pred) => pending[j].answers[i] = Some(pred),
            Err(e) => pending[j].failed = Some(ServeError::Internal(e)),
        }
    }
    for p in pending {
        let answer = match p.failed {
            Some(e) => Err(e),
            None => p
                .answers
                .into_iter()
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| ServeError::Internal("a row was not answered".into())),
        };
        let _ = p.reply.send(answer);
    }
}

/// Rows as `(request, input)` indices.
type Rows = Vec<(usize, usize)>;

/// One row's answer.
type RowResult = (usize, usize, Result<Prediction, String>);

/// Splits a class's tasks into forwards of at most `max_rows` rows, keeping each task's rows
/// together where they fit.
fn chunks<'a>(class: &[(&'a str, Rows)], max_rows: usize) -> Vec<Vec<(&'a str, Rows)>> {
    let mut out: Vec<Vec<(&str, Rows)>> = vec![Vec::new()];
    let mut used = 0;
    for (task, rows) in class {
        for part in rows.chunks(max_rows.max(1)) {
            if used + part.len() > max_rows && used > 0 {
                out.push(Vec::new());
                used = 0;
            }
            if let Some(last) = out.last_mut() {
                last.push((*task, part.to_vec()));
            }
            used += part.len();
        }
    }
    out.retain(|c| !c.is_empty());
    out
}

fn run_chunk(
    registry: &Registry<'_>,
    config: &WorkerConfig,
    pending: &[Pending],
    chunk: &[(&str, Rows)],
    metrics: &Metrics,
    results: &mut Vec<RowResult>,
) {
    let tasks: Vec<(&LoadedTask<'_>, Vec<&Encoded>)> = chunk
        .iter()
        .filter_map(|(task, rows)| {
            let t = registry.get(task)?;
            Some((t, rows.iter().map(|&(j, i)| &pending[j].inputs[i]).collect()))
        })
        .collect();
    let rows: usize = chunk.iter().map(|(_, r)| r.len()).sum();
    metrics.batch(rows, chunk.len());
    let answers = match tasks.as_slice() {
        [(task, items)] => run_alone(task, items, config.pad_id, config.merge_single_task).map(|a| vec![a]),
        _ => run_shared(&tasks, config.pad_id),
    };
    match answers {
        Ok(per_task) => {
            for ((_, rows), preds) in chunk.iter().zip(per_task) {
                for (&(j, i), p) in rows.iter().zip(preds) {
                    results.push((j, i, Ok(p)));
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "batch failed");
            for (_, rows) in chunk {
                for &(j, i) in rows {
                    results.push((j, i, Err(e.clone())));
                }
            }
        }
    }
}
