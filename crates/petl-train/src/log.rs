//! What a run reports while it trains: JSON-lines records and the progress bar.

use crate::Result;
use petl_metrics::Scores;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One line of `log.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum LogRecord {
    /// Training loss, averaged over the optimizer steps since the previous record.
    Train {
        /// Optimizer step (1-based: the step just completed).
        step: u64,
        /// Epoch (0-based).
        epoch: u64,
        /// Mean loss.
        loss: f64,
        /// Learning rate of the step.
        lr: f64,
        /// Gradient norm before clipping.
        grad_norm: f64,
        /// Training throughput so far.
        examples_per_s: f64,
        /// Seconds since the run started (model loading and tokenisation included).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        elapsed_s: Option<f64>,
        /// Diff pruning: the λ-weighted expected-L0 penalty of the last step.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        penalty: Option<f64>,
        /// Diff pruning: the expected fraction of nonzero diff entries after the last step.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expected_density: Option<f64>,
    },
    /// A dev-set evaluation.
    Eval {
        /// Optimizer step.
        step: u64,
        /// Epoch (0-based).
        epoch: u64,
        /// Every metric.
        metrics: Scores,
        /// The headline metric, the one best-checkpoint selection uses.
        headline: Option<f64>,
        /// Whether this is the best evaluation so far.
        best: bool,
        /// Evaluation throughput.
        examples_per_s: f64,
    },
    /// A resumable checkpoint was written.
    Checkpoint {
        /// Optimizer step.
        step: u64,
    },
}

impl LogRecord {
    /// The step a record belongs to.
    pub fn step(&self) -> u64 {
        match self {
            Self::Train { step, .. } | Self::Eval { step, .. } | Self::Checkpoint { step } => *step,
        }
    }
}

/// Appends records to `log.jsonl`, flushing each line so a killed run keeps its log.
pub struct JsonlLog {
    path: PathBuf,
    file: std::fs::File,
}

impl JsonlLog {
    /// Opens the log. With `keep_through = Some(k)` (resuming from step `k`) records after `k`
    /// are dropped, since the resumed run writes them again; otherwise the log starts empty.
    pub fn open(path: &Path, keep_through: Option<u64>) -> Result<Self> {
        let io = |source| crate::TrainError::Io {
            path: path.to_path_buf(),
            source,
        };
        let kept = match keep_through {
            Some(k) => read_log(path)?.into_iter().filter(|r| r.step() <= k).collect(),
            None => Vec::new(),
        };
        let mut text = String::new();
        for r in &kept {
            text.push_str(&serde_json::to_string(r).unwrap_or_default());
            text.push('\n');
        }
        petl_artifact::write_atomic(path, text.as_bytes())?;
        let file = std::fs::OpenOptions::new().append(true).open(path).map_err(io)?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends one record.
    pub fn write(&mut self, record: &LogRecord) -> Result<()> {
        let mut line = serde_json::to_string(record).unwrap_or_default();
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.flush())
            .map_err(|source| crate::TrainError::Io {
                path: self.path.clone(),
                source,
            })
    }
}

/// Reads `log.jsonl`; a missing file is an empty log and a torn last line (a kill mid-write)
/// is ignored.
pub fn read_log(path: &Path) -> Result<Vec<LogRecord>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(crate::TrainError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}
