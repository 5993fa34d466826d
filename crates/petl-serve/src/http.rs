//! The HTTP JSON API.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/health` | liveness and the base model |
//! | POST | `/v1/classify` | `{"task", "inputs": ["text" \| {"text", "text_pair"}], "truncate"?}` → predictions |
//! | POST | `/v1/score` | the same, for regression tasks (one score per input) |
//! | POST | `/v1/generate` | 501 until petl serves generation models |
//! | GET | `/v1/artifacts` | every task of the artifact directory |
//! | POST | `/v1/artifacts/{task}/load`, `/v1/artifacts/{task}/unload` | load or drop one now |
//! | GET | `/metrics` | Prometheus text format |

use crate::error::ServeError;
use crate::metrics::Metrics;
use crate::registry::TaskInfo;
use crate::worker::{Job, Reply};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use petl_data::{Encoded, Example, Label, TextEncoder};
use petl_train::Prediction;
use serde::{Deserialize, Serialize};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// Request limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_tokens: usize,
    pub(crate) max_inputs: usize,
    pub(crate) max_input_bytes: usize,
    pub(crate) queue_capacity: usize,
}

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) jobs: SyncSender<Job>,
    /// Truncates at `max_tokens + 1`, so an input over the limit is detected, not cut.
    pub(crate) strict: Arc<TextEncoder>,
    /// Truncates at `max_tokens`, for requests that ask for truncation.
    pub(crate) truncating: Arc<TextEncoder>,
    pub(crate) limits: Limits,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) model_info: Arc<serde_json::Value>,
}

pub(crate) fn router(state: AppState) -> Router {
    let body_limit = body_limit(&state.limits);
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/classify", post(classify))
        .route("/v1/score", post(score))
        .route("/v1/generate", post(generate))
        .route("/v1/artifacts", get(list))
        .route("/v1/artifacts/{task}/load", post(load))
        .route("/v1/artifacts/{task}/unload", post(unload))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// The largest request body: room for the most inputs of the longest size, plus JSON syntax.
fn body_limit(limits: &Limits) -> usize {
    limits.max_inputs * (limits.max_input_bytes + 64) + 4096
}

/// A request's body, refused (413) on its declared Content-Length before any of it is read
/// when that is over the limit: a client that sent `Expect: 100-continue` then never sends
/// it. Refusing only after reading part of it leaves the rest unread, and closing a socket
/// with unread data resets the connection, which can destroy the 413 before the client
/// reads it.
async fn read_body(s: &AppState, request: axum::extract::Request) -> Result<Bytes, ServeError> {
    let limit = body_limit(&s.limits);
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(n) = declared.filter(|&n| n > limit) {
        return Err(ServeError::TooLarge(format!(
            "request body too large: {n} bytes; the limit is {limit}"
        )));
    }
    axum::body::to_bytes(request.into_body(), limit)
        .await
        .map_err(|e| ServeError::TooLarge(format!("request body too large or unreadable: {e}")))
}

/// One input: a text, or a text pair.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Input {
    Text(String),
    Pair {
        text: String,
        #[serde(default)]
        text_pair: Option<String>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassifyRequest {
    task: String,
    inputs: Vec<Input>,
    /// Cut inputs longer than the limit instead of refusing them.
    #[serde(default)]
    truncate: bool,
}

#[derive(Debug, Serialize)]
struct ClassifyResponse {
    task: String,
    predictions: Vec<Prediction>,
}

/// Records the request in the metrics whatever its outcome.
fn answered<T: IntoResponse>(
    state: &AppState,
    endpoint: &'static str,
    start: Instant,
    r: Result<T, ServeError>,
) -> Response {
    let response = match r {
        Ok(ok) => ok.into_response(),
        Err(e) => {
            if e.status().is_server_error() {
                tracing::warn!(endpoint, error = %e, "request failed");
            }
            e.into_response()
        }
    };
    state.metrics.request(
        endpoint,
        response.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    response
}

async fn health(State(s): State<AppState>) -> Response {
    let start = Instant::now();
    let body = serde_json::json!({"status": "ok", "model": *s.model_info});
    answered(&s, "health", start, Ok(Json(body)))
}

async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

async fn classify(State(s): State<AppState>, request: axum::extract::Request) -> Response {
    let start = Instant::now();
    let r = predict(&s, request).await;
    answered(&s, "classify", start, r)
}

async fn score(State(s): State<AppState>, request: axum::extract::Request) -> Response {
    let start = Instant::now();
    let r = predict(&s, request).await;
    answered(&s, "score", start, r)
}

async fn generate(State(s): State<AppState>) -> Response {
    let start = Instant::now();
    let r: Result<Json<()>, _> = Err(ServeError::NotAvailable(
        "this server holds an encoder model, which classifies and scores; generation needs a \
         decoder or encoder-decoder base model"
            .into(),
    ));
    answered(&s, "generate", start, r)
}

async fn list(State(s): State<AppState>) -> Response {
    let start = Instant::now();
    let r = ask(&s, |reply| Job::List { reply })
        .await
        .map(|tasks: Vec<TaskInfo>| Json(serde_json::json!({ "artifacts": tasks })));
    answered(&s, "artifacts", start, r)
}

async fn load(State(s): State<AppState>, Path(task): Path<String>) -> Response {
    let start = Instant::now();
    let r = ask(&s, |reply| Job::Load { task, reply }).await.map(Json);
    answered(&s, "load", start, r)
}

async fn unload(State(s): State<AppState>, Path(task): Path<String>) -> Response {
    let start = Instant::now();
    let r = ask(&s, |reply| Job::Unload {
        task: task.clone(),
        reply,
    })
    .await
    .map(|was_loaded| Json(serde_json::json!({"task": task, "unloaded": was_loaded})));
    answered(&s, "unload", start, r)
}

async fn predict(
    s: &AppState,
    request: axum::extract::Request,
) -> Result<Json<ClassifyResponse>, ServeError> {
    // Parsed here rather than by axum's `Json`, so a client that omits the content type is
    // still understood and every parse error is a JSON answer.
    let bytes = read_body(s, request).await?;
    let req: ClassifyRequest = serde_json::from_slice(&bytes)
        .map_err(|e| ServeError::BadRequest(format!("invalid JSON body: {e}")))?;
    let limits = s.limits;
    if req.inputs.is_empty() {
        return Err(ServeError::BadRequest("`inputs` is empty".into()));
    }
    if req.inputs.len() > limits.max_inputs {
        return Err(ServeError::TooLarge(format!(
            "{} inputs in one request; the limit is {}",
            req.inputs.len(),
            limits.max_inputs
        )));
    }
    let encoder = if req.truncate { &s.truncating } else { &s.strict };
    let mut encoded: Vec<Encoded> = Vec::with_capacity(req.inputs.len());
    for (i, input) in req.inputs.into_iter().enumerate() {
        let (text_a, text_b) = match input {
            Input::Text(t) => (t, None),
            Input::Pair { text, text_pair } => (text, text_pair),
        };
        let bytes = text_a.len() + text_b.as_ref().map_or(0, String::len);
        if bytes > limits.max_input_bytes {
            return Err(ServeError::TooLarge(format!(
                "input {i} is {bytes} bytes; the limit is {}",
                limits.max_input_bytes
            )));
        }
        let ex = Example {
            text_a,
            text_b,
            label: Label::Unlabeled,
        };
        let e = encoder
            .encode(&ex)
            .map_err(|e| ServeError::BadRequest(format!("input {i} cannot be tokenized: {e}")))?;
        if e.len() > limits.max_tokens {
            return Err(ServeError::TooLarge(format!(
                "input {i} has more than {} tokens, the limit; shorten it or send \"truncate\": true",
                limits.max_tokens
            )));
        }
        encoded.push(e);
    }
    let task = req.task;
    let predictions = ask(s, |reply| Job::Classify {
        task: task.clone(),
        inputs: encoded,
        reply,
    })
    .await?;
    Ok(Json(ClassifyResponse { task, predictions }))
}

/// Queues a job for the worker and waits for its answer; a full queue is answered at once.
async fn ask<T>(s: &AppState, job: impl FnOnce(Reply<T>) -> Job) -> Result<T, ServeError> {
    let (tx, rx) = oneshot::channel();
    match s.jobs.try_send(job(tx)) {
        Ok(()) => s.metrics.queue_change(1),
        Err(TrySendError::Full(_)) => return Err(ServeError::Busy(s.limits.queue_capacity)),
        Err(TrySendError::Disconnected(_)) => return Err(ServeError::ShuttingDown),
    }
    rx.await.map_err(|_| ServeError::ShuttingDown)?
}
