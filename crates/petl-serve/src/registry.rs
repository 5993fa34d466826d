//! The task artifacts a server can answer for: every subdirectory of the artifact directory
//! that holds an `artifact.json`, loaded on first use and evicted least-recently-used when the
//! loaded tasks exceed a memory bound.

use crate::error::ServeError;
use petl_methods::diff::SparseCorrection;
use petl_methods::Form;
use petl_models::{EncoderModel, Layout, RowGroups};
use petl_sparse::SparseDiff;
use petl_train::TaskModel;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// How a task's rows can be batched with other tasks' rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Sharing {
    /// In one base forward with every task of the same layout.
    Shared(Layout),
    /// Only in batches of its own: it replaces base parameters (full fine-tuning, BitFit) or
    /// changes the sequence (prompt tuning).
    Alone,
}

/// A task ready to run.
pub(crate) struct LoadedTask<'m> {
    pub(crate) model: TaskModel<'m>,
    /// For a diff-pruning task: the diff as per-row corrections (mixed batches)...
    pub(crate) correction: Option<SparseCorrection>,
    /// ...and as entries written into the base (batches of this task alone).
    pub(crate) diff: Option<SparseDiff>,
    pub(crate) sharing: Sharing,
    pub(crate) bytes: usize,
    method: String,
    last_used: u64,
}

/// What `GET /v1/artifacts` reports per task.
#[derive(Debug, Clone, Serialize)]
pub struct TaskInfo {
    /// The task name (its directory name).
    pub name: String,
    /// Whether it is in memory.
    pub loaded: bool,
    /// The method's name.
    pub method: Option<String>,
    /// Estimated memory held while loaded.
    pub bytes: Option<usize>,
    /// Whether its rows share base forwards with other tasks.
    pub shares_batches: Option<bool>,
}

pub(crate) struct Registry<'m> {
    model: &'m EncoderModel,
    dir: PathBuf,
    loaded: HashMap<String, LoadedTask<'m>>,
    clock: u64,
    max_bytes: usize,
}

impl<'m> Registry<'m> {
    pub(crate) fn new(model: &'m EncoderModel, dir: PathBuf, max_bytes: usize) -> Self {
        Self {
            model,
            dir,
            loaded: HashMap::new(),
            clock: 0,
            max_bytes,
        }
    }

    /// The artifact directory of task `name`; names are plain directory names, so a request can
    /// never reach outside the artifact directory.
    fn artifact_dir(&self, name: &str) -> Result<PathBuf, ServeError> {
        let plain = !name.is_empty()
            && name.len() <= 200
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !name.starts_with('.');
        let dir = self.dir.join(name);
        if plain && dir.join("artifact.json").is_file() {
            Ok(dir)
        } else {
            Err(ServeError::UnknownTask(name.to_string()))
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&LoadedTask<'m>> {
        self.loaded.get(name)
    }

    pub(crate) fn loaded_count(&self) -> usize {
        self.loaded.len()
    }

    pub(crate) fn loaded_bytes(&self) -> usize {
        self.loaded.values().map(|t| t.bytes).sum()
    }

    /// Loads `name` if needed and marks it used; evicts least-recently-used tasks outside
    /// `pinned` (the tasks of the batch being assembled) while over the memory bound.
    pub(crate) fn ensure_loaded(&mut self, name: &str, pinned: &HashSet<&str>) -> Result<(), ServeError> {
        self.clock += 1;
        if let Some(t) = self.loaded.get_mut(name) {
            t.last_used = self.clock;
            return Ok(());
        }
        let dir = self.artifact_dir(name)?;
        let mut task = load(self.model, &dir).map_err(|reason| ServeError::Unloadable {
            task: name.to_string(),
            reason,
        })?;
        task.last_used = self.clock;
        let incoming = task.bytes;
        while self.loaded_bytes() + incoming > self.max_bytes {
            let victim = self
                .loaded
                .iter()
                .filter(|(n, _)| !pinned.contains(n.as_str()))
                .min_by_key(|(_, t)| t.last_used)
                .map(|(n, _)| n.clone());
            match victim {
                Some(v) => {
                    tracing::debug!(task = %v, "evicting least recently used task");
                    self.loaded.remove(&v);
                }
                None => break,
            }
        }
        tracing::info!(task = name, bytes = incoming, method = %task.method, "loaded task");
        self.loaded.insert(name.to_string(), task);
        Ok(())
    }

    pub(crate) fn unload(&mut self, name: &str) -> Result<bool, ServeError> {
        self.artifact_dir(name)?;
        Ok(self.loaded.remove(name).is_some())
    }

    pub(crate) fn info(&self, name: &str) -> Result<TaskInfo, ServeError> {
        let dir = self.artifact_dir(name)?;
        Ok(match self.loaded.get(name) {
            Some(t) => TaskInfo {
                name: name.to_string(),
                loaded: true,
                method: Some(t.method.clone()),
                bytes: Some(t.bytes),
                shares_batches: Some(t.sharing != Sharing::Alone),
            },
            None => TaskInfo {
                name: name.to_string(),
                loaded: false,
                method: method_name(&dir),
                bytes: None,
                shares_batches: None,
            },
        })
    }

    /// Every task of the artifact directory, sorted by name.
    pub(crate) fn list(&self) -> Result<Vec<TaskInfo>, ServeError> {
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| ServeError::Internal(format!("cannot read {}: {e}", self.dir.display())))?;
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("artifact.json").is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        names
            .iter()
            .filter_map(|n| match self.info(n) {
                Err(ServeError::UnknownTask(_)) => None,
                other => Some(other),
            })
            .collect()
    }
}

fn method_name(dir: &Path) -> Option<String> {
    let meta = petl_artifact::load_meta(dir).ok()?;
    match meta.method {
        serde_json::Value::String(s) => Some(s),
        v => v.get("name").and_then(|n| n.as_str()).map(str::to_string),
    }
}

fn load<'m>(model: &'m EncoderModel, dir: &Path) -> Result<LoadedTask<'m>, String> {
    let (tm, diff) = TaskModel::from_artifact_detached(model, dir).map_err(|e| e.to_string())?;
    let correction = diff
        .as_ref()
        .map(|d| SparseCorrection::new(model, d))
        .transpose()
        .map_err(|e| e.to_string())?;
    let alone = tm
        .method()
        .deltas
        .iter()
        .any(|d| d.form.replaces_params() || matches!(d.form, Form::Prompt { .. }));
    let sharing = if alone {
        Sharing::Alone
    } else {
        Sharing::Shared(RowGroups::layout(tm.delta()).map_err(|e| e.to_string())?)
    };
    // Parameters in f32, and each diff entry twice (correction and position/value lists).
    let nnz = correction.as_ref().map_or(0, SparseCorrection::nnz);
    let bytes = tm.params().num_elements() * 4 + nnz * 16 + 4096;
    Ok(LoadedTask {
        method: tm.method().name.clone(),
        model: tm,
        correction,
        diff,
        sharing,
        bytes,
        last_used: 0,
    })
}
