//! The operator's half of the admin API (docs/admin-api.md): calls, trunks and route lookup, JSON in and out,
//! errors as `{"error": "<one-line reason>"}`, and the bearer token that guards the whole API off loopback.
//!
//! The handlers never touch the core: each sends a [`Request`] to the driver task, which owns the `Endpoint`,
//! and awaits its oneshot reply ([`driver_side`] answers them between two inputs).

mod auth;
mod calls;
pub mod driver_side;
mod render;
mod trunks;

pub use auth::require_token;
pub use driver_side::{FigureWaiters, Request};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use tokio::sync::{mpsc, oneshot};

/// How many admin requests may wait for the driver; beyond that the API answers 503 rather than queue.
pub const QUEUE: usize = 64;

/// How long a handler waits for the driver (and the relay's figures) before answering 503.
const DRIVER_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The API's end of the driver channel.
#[derive(Debug, Clone)]
pub struct DriverHandle {
    tx: mpsc::Sender<Request>,
}

impl DriverHandle {
    /// A handle and the receiver the driver polls (`driver::Records::with_admin`).
    pub fn channel() -> (Self, mpsc::Receiver<Request>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Self { tx }, rx)
    }

    /// Sends the request `make` builds around a reply channel and waits for the answer.
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Request) -> Result<T, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.tx.try_send(make(reply)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ApiError::unavailable("the SBC is busy: too many admin requests"),
            mpsc::error::TrySendError::Closed(_) => ApiError::unavailable("the SBC is stopping"),
        })?;
        match tokio::time::timeout(DRIVER_WAIT, answer).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err(ApiError::unavailable("the SBC is stopping")),
            Err(_) => Err(ApiError::unavailable("the SBC did not answer in time")),
        }
    }
}

/// Every route of this part: `/calls…`, `/trunks…`, `/route/{number}`.
pub fn routes(driver: DriverHandle) -> axum::Router {
    calls::routes(driver.clone()).merge(trunks::routes(driver))
}

/// An error answer: a status and a one-line reason, as `{"error": reason}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    reason: String,
}

impl ApiError {
    /// An error with `status`.
    pub fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Self { status, reason: reason.into() }
    }

    fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, reason)
    }

    fn not_found(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, reason)
    }

    fn unavailable(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, reason)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        metrics::counter!(crate::metrics::API_ERRORS, "status" => self.status.as_str().to_owned()).increment(1);
        (self.status, Json(serde_json::json!({ "error": self.reason }))).into_response()
    }
}

/// The answer to a path no route has.
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no such API path: {}", uri.path()))
}
