//! The admin HTTP API: `/health`, Prometheus `/metrics`, and for a pair `GET /ha` and `POST /ha/demote`. Bound to
//! loopback by default (`[api] listen`); it has no authentication.

use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use std::future::Future;
use std::sync::{Arc, Mutex};

/// What the admin API needs of a pair.
#[derive(Debug, Clone)]
pub struct HaApi {
    /// The status `/ha` shows.
    pub status: Arc<Mutex<crate::ha::HaStatus>>,
    /// Where `/ha/demote` asks for a demotion.
    pub demote: tokio::sync::mpsc::Sender<()>,
}

/// Serves the admin API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    prometheus: PrometheusHandle,
    ha: Option<HaApi>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut app = Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/metrics", get(move || std::future::ready(prometheus.render())));
    if let Some(ha) = ha {
        let (status, demote) = (ha.status.clone(), ha.demote.clone());
        app = app
            .route(
                "/ha",
                get(move || {
                    let s = status.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
                    std::future::ready(serde_json::to_string(&s).unwrap_or_default() + "\n")
                }),
            )
            .route(
                "/ha/demote",
                post(move || {
                    let demote = demote.clone();
                    async move {
                        match demote.try_send(()) {
                            Ok(()) => "demoting: the peer takes over\n",
                            Err(_) => "a demotion is already under way\n",
                        }
                    }
                }),
            );
    }
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
