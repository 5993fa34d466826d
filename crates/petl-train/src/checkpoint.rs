//! Resumable checkpoints: trainable parameters, optimizer state and loop position, written so
//! a run killed at any instant resumes from the last complete checkpoint.
//!
//! Each checkpoint is a directory `checkpoint-<step>/`; the file `checkpoint.json` names the
//! current one and is replaced atomically only after that directory is complete.

use crate::{Result, TrainError};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where the training loop stands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoopState {
    /// Optimizer steps completed.
    pub global_step: u64,
    /// Epoch the next step belongs to.
    pub epoch: u64,
    /// Index of the next optimizer step within that epoch.
    pub step_in_epoch: u64,
    /// Best headline metric so far and its step.
    pub best: Option<(f64, u64)>,
    /// Metrics of the best evaluation.
    pub best_metrics: Option<petl_metrics::Scores>,
    /// Seconds spent in training steps (not evaluation), across restarts.
    pub train_seconds: f64,
    /// Training examples processed, across restarts.
    pub examples_seen: u64,
    /// Sum and count of losses not yet logged.
    pub pending_loss: (f64, u64),
}

#[derive(Serialize, Deserialize)]
struct Pointer {
    dir: String,
    step: u64,
}

const POINTER: &str = "checkpoint.json";

/// Writes a checkpoint into `run_dir` and makes it current.
pub fn save(
    run_dir: &Path,
    state: &LoopState,
    params: &BTreeMap<String, Tensor>,
    optim: &BTreeMap<String, Tensor>,
) -> Result<()> {
    let name = format!("checkpoint-{}", state.global_step);
    let dir = run_dir.join(&name);
    std::fs::create_dir_all(&dir).map_err(|source| TrainError::Io {
        path: dir.clone(),
        source,
    })?;
    petl_artifact::write_safetensors_atomic(&dir.join("params.safetensors"), params)?;
    petl_artifact::write_safetensors_atomic(&dir.join("optimizer.safetensors"), optim)?;
    petl_artifact::write_json_atomic(&dir.join("state.json"), state)?;
    let previous = current_dir(run_dir);
    petl_artifact::write_json_atomic(
        &run_dir.join(POINTER),
        &Pointer {
            dir: name.clone(),
            step: state.global_step,
        },
    )?;
    if let Some(prev) = previous {
        if prev != dir {
            // Best effort: a stale directory only costs disk, never correctness.
            let _ = std::fs::remove_dir_all(prev);
        }
    }
    Ok(())
}

fn current_dir(run_dir: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(run_dir.join(POINTER)).ok()?;
    let p: Pointer = serde_json::from_str(&text).ok()?;
    Some(run_dir.join(p.dir))
}

/// A loaded checkpoint.
pub struct Loaded {
    /// Loop position.
    pub state: LoopState,
    /// Trainable parameters.
    pub params: BTreeMap<String, Tensor>,
    /// Optimizer moments.
    pub optim: BTreeMap<String, Tensor>,
}

/// Loads the current checkpoint of `run_dir`, or `None` if the run never wrote one.
pub fn load(run_dir: &Path, device: &Device) -> Result<Option<Loaded>> {
    let Some(dir) = current_dir(run_dir) else {
        return Ok(None);
    };
    let bad = |reason: String| TrainError::Resume {
        path: run_dir.to_path_buf(),
        reason,
    };
    let state_text = std::fs::read_to_string(dir.join("state.json"))
        .map_err(|e| bad(format!("cannot read {}: {e}", dir.join("state.json").display())))?;
    let state: LoopState =
        serde_json::from_str(&state_text).map_err(|e| bad(format!("corrupt state.json: {e}")))?;
    let params = petl_artifact::load_tensors(&dir.join("params.safetensors"), device)?;
    let optim = petl_artifact::load_tensors(&dir.join("optimizer.safetensors"), device)?;
    Ok(Some(Loaded { state, params, optim }))
}
