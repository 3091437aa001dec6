//! The admin HTTP API: `/health` and Prometheus `/metrics`. Bound to loopback by default (`[api] listen`).

use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use std::future::Future;

/// Serves the admin API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    prometheus: PrometheusHandle,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/metrics", get(move || std::future::ready(prometheus.render())));
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
