use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// Why a request failed; each maps to one HTTP status and a JSON body `{"error": {...}}`.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The body is not the JSON the endpoint expects.
    #[error("malformed request: {0}")]
    BadRequest(String),
    /// No artifact of that name is in the artifact directory.
    #[error("unknown task `{0}`: no artifact directory of that name (GET /v1/artifacts lists them)")]
    UnknownTask(String),
    /// An input, or the request, exceeds a configured limit.
    #[error("{0}")]
    TooLarge(String),
    /// The artifact exists but cannot be served on this base (another base model, corrupt files).
    #[error("cannot load task `{task}`: {reason}")]
    Unloadable {
        /// The task.
        task: String,
        /// What the loader reported.
        reason: String,
    },
    /// The request queue is full; retry later.
    #[error("the server is busy: {0} requests are queued; retry later")]
    Busy(usize),
    /// The server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The endpoint exists but this server has no model for it.
    #[error("{0}")]
    NotAvailable(String),
    /// A failure inside the server.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServeError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::UnknownTask(_) => StatusCode::NOT_FOUND,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unloadable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            Self::NotAvailable(_) => StatusCode::NOT_IMPLEMENTED,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short machine-readable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::UnknownTask(_) => "unknown_task",
            Self::TooLarge(_) => "too_large",
            Self::Unloadable { .. } => "unloadable_artifact",
            Self::Busy(_) => "busy",
            Self::ShuttingDown => "shutting_down",
            Self::NotAvailable(_) => "not_available",
            Self::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for ServeError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"kind": self.kind(), "message": self.to_string()}});
        (self.status(), Json(body)).into_response()
    }
}

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The artifact directory cannot be read.
    #[error("cannot read artifact directory {path}: {source}")]
    ArtifactDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A setting is out of range.
    #[error("invalid server setting {field}: {reason}")]
    Config {
        /// The setting.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The listener failed.
    #[error("server I/O: {0}")]
    Io(#[from] std::io::Error),
}
