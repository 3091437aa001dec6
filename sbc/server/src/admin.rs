//! The admin HTTP API: `/health`, Prometheus `/metrics`, `POST /drain` and `GET /drain` ([`crate::drain`]), the
//! configuration's routes of [`crate::reload`], for a pair `GET /ha` and `POST /ha/demote`, and the operator's
//! routes of [`crate::api`] (calls, trunks, route lookup). Bound to loopback by default (`[api] listen`); off
//! loopback every request but `/health` needs the bearer token (docs/admin-api.md).

use axum::extract::RawQuery;
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
    /// Where `/ha/demote` asks for a demotion (of one group by name, or of every group this box is active for).
    pub demote: tokio::sync::mpsc::Sender<Option<String>>,
    /// keepalived mode: where `/ha/active` and `/ha/standby` set the role.
    pub set_role: Option<tokio::sync::mpsc::Sender<sbc_proto::ha::Role>>,
}

/// Serves the admin API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    prometheus: PrometheusHandle,
    ha: Option<HaApi>,
    operator: axum::Router,
    token: Option<crate::config::ApiToken>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut app = Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/metrics", get(move || std::future::ready(prometheus.render())));
    if let Some(ha) = ha {
        if let Some(set) = ha.set_role.clone() {
            for (path, role) in
                [("/ha/active", sbc_proto::ha::Role::Active), ("/ha/standby", sbc_proto::ha::Role::Standby)]
            {
                let set = set.clone();
                app = app.route(
                    path,
                    post(move || {
                        let set = set.clone();
                        async move {
                            match set.send(role).await {
                                Ok(()) => "ok\n",
                                Err(_) => "the HA task has stopped\n",
                            }
                        }
                    }),
                );
            }
        }
        let (status, demote) = (ha.status.clone(), ha.demote.clone());
        let external = ha.set_role.is_some();
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
                post(move |RawQuery(query): RawQuery| {
                    let demote = demote.clone();
                    async move {
                        if external {
                            return "keepalived mode: keepalived decides; demote through it (or POST /ha/standby)\n";
                        }
                        // `?group=NAME`: one group of an active/active pair; without it, every group.
                        let group =
                            query.as_deref().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("group=")));
                        match demote.try_send(group.map(str::to_owned)) {
                            Ok(()) => "demoting: the peer takes over\n",
                            Err(_) => "a demotion is already under way\n",
                        }
                    }
                }),
            );
    }
    let app = crate::api::require_token(app.merge(operator).fallback(crate::api::not_found), token);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
