//! `petl serve`: one frozen base model answering for many tasks over HTTP.
//!
//! - Task artifacts of any kind (LoRA, adapters, prefixes, sparse diffs…) are the
//!   subdirectories of one directory, loaded on first use and evicted least-recently-used
//!   beyond a memory bound.
//! - Requests that arrive within a short window are batched across tasks: tasks whose deltas
//!   leave the base parameters and the sequence layout alone (LoRA, adapters, IA³, prefixes of
//!   one length, sparse diffs as per-row corrections) share one base forward; the others get
//!   forwards of their own. A forward of a single task folds LoRA into the weights or writes
//!   the sparse diff into the base, the fastest path for one hot task.
//! - The request queue is bounded (429 when full); bad input is a 4xx JSON error; shutdown
//!   drains what is in flight.
#![deny(missing_docs)]

pub mod client;
mod engine;
mod error;
mod http;
mod metrics;
mod registry;
mod worker;

pub use error::{ServeError, StartError};
pub use metrics::Metrics;
pub use registry::TaskInfo;

use petl_data::TextEncoder;
use petl_models::BaseModel;
use petl_models::EncoderModel;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Directory whose subdirectories are task artifacts, named by directory name.
    pub artifacts: PathBuf,
    /// Longest input in tokens (special tokens included); longer ones are refused unless the
    /// request asks for truncation.
    pub max_tokens: usize,
    /// Most inputs in one request.
    pub max_inputs_per_request: usize,
    /// Longest input text in bytes.
    pub max_input_bytes: usize,
    /// Most rows in one base forward.
    pub max_batch_rows: usize,
    /// How long the worker waits for more requests before running a batch.
    pub batch_window: Duration,
    /// Requests that may wait for the worker before new ones get 429.
    pub queue_capacity: usize,
    /// Memory bound on the loaded task artifacts (estimated); least recently used go first.
    pub max_loaded_bytes: usize,
    /// Whether a forward of a single task folds its delta into the weights.
    pub merge_single_task: bool,
}

impl ServeConfig {
    /// Defaults for serving the artifacts under `artifacts`.
    pub fn new(artifacts: PathBuf) -> Self {
        Self {
            artifacts,
            max_tokens: 128,
            max_inputs_per_request: 64,
            max_input_bytes: 64 * 1024,
            max_batch_rows: 32,
            batch_window: Duration::from_millis(2),
            queue_capacity: 1024,
            max_loaded_bytes: 4 << 30,
            merge_single_task: true,
        }
    }
}

/// A server bound to a model, ready to run on a listener.
pub struct Server {
    state: http::AppState,
    worker: std::thread::JoinHandle<()>,
    metrics: Arc<Metrics>,
}

impl Server {
    /// Starts the batching worker on `model`; `encoder` is the model's tokenizer.
    pub fn new(model: EncoderModel, encoder: &TextEncoder, config: ServeConfig) -> Result<Self, StartError> {
        let positions = model.config().max_input_len();
        if config.max_tokens < 3 || config.max_tokens > positions {
            return Err(StartError::Config {
                field: "max_tokens",
                reason: format!(
                    "{} is outside 3..={positions} (the model's positions)",
                    config.max_tokens
                ),
            });
        }
        for (field, v) in [
            ("max_batch_rows", config.max_batch_rows),
            ("queue_capacity", config.queue_capacity),
            ("max_inputs_per_request", config.max_inputs_per_request),
        ] {
            if v == 0 {
                return Err(StartError::Config {
                    field,
                    reason: "must be at least 1".into(),
                });
            }
        }
        std::fs::read_dir(&config.artifacts).map_err(|source| StartError::ArtifactDir {
            path: config.artifacts.clone(),
            source,
        })?;
        let tokenizer = |max_len| {
            TextEncoder::from_tokenizer(encoder.tokenizer().clone(), max_len).map_err(|e| {
                StartError::Config {
                    field: "max_tokens",
                    reason: e.to_string(),
                }
            })
        };
        let strict = Arc::new(tokenizer(config.max_tokens + 1)?);
        let truncating = Arc::new(tokenizer(config.max_tokens)?);
        let model_info = Arc::new(serde_json::json!({
            "model_type": model.config().model_type,
            "fingerprint": model.fingerprint(),
            "parameters": model.num_base_params(),
        }));
        let metrics = Arc::new(Metrics::default());
        let (jobs, receiver) = std::sync::mpsc::sync_channel(config.queue_capacity);
        let worker_config = worker::WorkerConfig {
            artifacts: config.artifacts.clone(),
            max_loaded_bytes: config.max_loaded_bytes,
            max_batch_rows: config.max_batch_rows,
            batch_window: config.batch_window,
            merge_single_task: config.merge_single_task,
            pad_id: encoder.pad_id(),
        };
        let worker_metrics = metrics.clone();
        let worker = std::thread::Builder::new()
            .name("petl-batcher".into())
            .spawn(move || worker::run(model, worker_config, receiver, worker_metrics))?;
        let state = http::AppState {
            jobs,
            strict,
            truncating,
            limits: http::Limits {
                max_tokens: config.max_tokens,
                max_inputs: config.max_inputs_per_request,
                max_input_bytes: config.max_input_bytes,
                queue_capacity: config.queue_capacity,
            },
            metrics: metrics.clone(),
            model_info,
        };
        Ok(Self {
            state,
            worker,
            metrics,
        })
    }

    /// The server's metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Serves on `listener` until `shutdown` completes, then stops accepting connections,
    /// answers every request already received, and stops the worker.
    pub async fn run(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let Self { state, worker, .. } = self;
        let app = http::router(state);
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await?;
        // The router (and with it the last job sender) is gone: the worker answers what is
        // queued and returns.
        tokio::task::spawn_blocking(move || worker.join())
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?
            .map_err(|_| std::io::Error::other("the batching worker panicked"))?;
        Ok(())
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: draining requests in flight");
}
