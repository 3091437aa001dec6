//! Taking the SBC out of service gently: `POST /drain?deadline=SECS`, `GET /drain`, and SIGTERM.
//!
//! A drain stops new calls (the core answers new INVITEs and OPTIONS pings 503 with Retry-After, see
//! `Endpoint::set_draining`), lets the calls up end by themselves until the deadline, ends those left with BYE
//! (CDR cause `drain_deadline`), and then stops the process with exit status 0. The active of a pair instead
//! hands its calls to the peer (the `/ha/demote` path) and stops once the peer has taken over. The driver owns
//! the drain (`driver::run`); this module holds what is asked of it and the HTTP routes that ask.
//!
//! Signals: the first SIGTERM (what systemd sends) drains with `drain_deadline`; a second one stops at once, as
//! SIGINT always does.

use axum::extract::RawQuery;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// What the admin API and the signal handler ask of the driver.
#[derive(Debug)]
pub enum Request {
    /// Start draining (or, while draining, move the deadline to `deadline` from now); `None`: the configured
    /// `drain_deadline`. The reply is the state after.
    Start {
        /// How long calls get to end by themselves.
        deadline: Option<Duration>,
        /// Where the state goes.
        reply: Option<oneshot::Sender<Status>>,
    },
    /// The state now.
    Status {
        /// Where it goes.
        reply: oneshot::Sender<Status>,
    },
    /// Stop at once, as on SIGINT: a second SIGTERM during a drain.
    StopNow,
}

/// The state of a drain, as `GET /drain` and `POST /drain` show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    /// Whether the SBC is draining.
    pub draining: bool,
    /// Seconds left until the deadline while draining; otherwise the configured `drain_deadline`.
    pub deadline_secs: u64,
    /// Calls up on this box.
    pub calls: usize,
    /// `local`: calls end by themselves here; `handover`: the calls are being handed to the pair's peer. Absent
    /// when not draining.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<&'static str>,
}

/// How many drain requests may wait for the driver; more are refused with 503.
const QUEUE: usize = 16;

/// The channel between the admin API (and the signal handler) and the driver.
pub fn channel() -> (mpsc::Sender<Request>, mpsc::Receiver<Request>) {
    mpsc::channel(QUEUE)
}

/// `POST /drain?deadline=SECS` and `GET /drain`, asking the driver through `driver`.
pub fn routes(driver: mpsc::Sender<Request>) -> Router {
    let status_tx = driver.clone();
    Router::new().route(
        "/drain",
        get(move || {
            let driver = status_tx.clone();
            async move {
                let (reply, rx) = oneshot::channel();
                ask(&driver, Request::Status { reply }, rx, StatusCode::OK).await
            }
        })
        .post(move |RawQuery(query): RawQuery| {
            let driver = driver.clone();
            async move {
                let deadline = match parse_deadline(query.as_deref()) {
                    Ok(d) => d,
                    Err(e) => return error(StatusCode::BAD_REQUEST, &e),
                };
                let (reply, rx) = oneshot::channel();
                ask(&driver, Request::Start { deadline, reply: Some(reply) }, rx, StatusCode::ACCEPTED).await
            }
        }),
    )
}

async fn ask(
    driver: &mpsc::Sender<Request>,
    request: Request,
    rx: oneshot::Receiver<Status>,
    ok: StatusCode,
) -> Response {
    if driver.try_send(request).is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the driver is not taking requests (stopping or busy)");
    }
    match rx.await {
        Ok(status) => json(ok, &status),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "the driver stopped before answering"),
    }
}

fn error(status: StatusCode, reason: &str) -> Response {
    json(status, &serde_json::json!({ "error": reason }))
}

/// A JSON body by hand: the workspace's axum is built without its `json` feature.
fn json(status: StatusCode, body: &impl serde::Serialize) -> Response {
    let text = serde_json::to_string(body).unwrap_or_default() + "\n";
    (status, [(axum::http::header::CONTENT_TYPE, "application/json")], text).into_response()
}

/// `deadline=SECS` from the query string: 1 to 86400 seconds; absent: `None` (the configured one).
fn parse_deadline(query: Option<&str>) -> Result<Option<Duration>, String> {
    let mut deadline = None;
    for kv in query.unwrap_or("").split('&').filter(|kv| !kv.is_empty()) {
        match kv.split_once('=') {
            Some(("deadline", v)) => {
                let secs: u64 = v.parse().map_err(|_| format!("deadline={v}: expected whole seconds, e.g. 300"))?;
                let max = crate::config::MAX_DRAIN_DEADLINE.as_secs();
                if !(1..=max).contains(&secs) {
                    return Err(format!("deadline={secs}: must be from 1 to {max} seconds"));
                }
                deadline = Some(Duration::from_secs(secs));
            }
            _ => return Err(format!("unknown parameter {kv:?} (only deadline=SECS)")),
        }
    }
    Ok(deadline)
}

/// Turns SIGTERM into drains: the first starts one with the configured deadline, the next stops at once. Returns
/// without doing anything where signals cannot be had.
pub fn on_sigterm(driver: mpsc::Sender<Request>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot catch SIGTERM: it will end the process without a drain");
                return;
            }
        };
        tokio::spawn(async move {
            let mut first = true;
            while term.recv().await.is_some() {
                let request = if first {
                    tracing::info!("SIGTERM: draining (a second SIGTERM or SIGINT stops at once)");
                    Request::Start { deadline: None, reply: None }
                } else {
                    tracing::info!("SIGTERM again: stopping at once");
                    Request::StopNow
                };
                first = false;
                if driver.send(request).await.is_err() {
                    return;
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = driver;
}

/// The driver's end of the drain channel, with the configured deadline.
#[derive(Debug)]
pub struct DrainLink {
    /// What the admin API and SIGTERM ask.
    pub requests: mpsc::Receiver<Request>,
    /// `drain_deadline`: the deadline of a drain that names none.
    pub deadline: Duration,
}

/// A drain under way, held by the driver.
#[derive(Debug)]
pub struct Draining {
    /// When the calls still up are ended.
    pub deadline: tokio::time::Instant,
    /// The calls go to the pair's peer (this box was active and demoted itself) rather than end here.
    pub handover: bool,
    /// The calls up at the last log line, and when it was written.
    logged: (usize, tokio::time::Instant),
}

/// A log line at least this often while draining, and at most once a second when the count of calls changes.
const LOG_EVERY: Duration = Duration::from_secs(10);

impl Draining {
    /// A drain started now, ending calls at `deadline`, with `calls` up.
    pub fn new(deadline: tokio::time::Instant, handover: bool, calls: usize) -> Self {
        let now = tokio::time::Instant::now();
        let deadline_secs = deadline.saturating_duration_since(now).as_secs();
        if handover {
            tracing::info!(calls, deadline_secs, mode = mode(handover), "draining: handing the calls to the peer");
        } else {
            tracing::info!(
                calls,
                deadline_secs,
                mode = mode(handover),
                "draining: new calls refused with 503; calls remain"
            );
        }
        metrics::gauge!(DRAINING).set(1.0);
        // systemd shows the unit as deactivating while the calls drain.
        crate::service::stopping();
        Self { deadline, handover, logged: (calls, now) }
    }

    /// The state to show, with `calls` up.
    pub fn status(&self, calls: usize) -> Status {
        let left = self.deadline.saturating_duration_since(tokio::time::Instant::now());
        Status { draining: true, deadline_secs: left.as_secs(), calls, mode: Some(mode(self.handover)) }
    }

    /// Says how many calls remain, when that changed (at most once a second) or every [`LOG_EVERY`].
    pub fn report(&mut self, calls: usize) {
        let now = tokio::time::Instant::now();
        let since = now.saturating_duration_since(self.logged.1);
        if (calls != self.logged.0 && since >= Duration::from_secs(1)) || since >= LOG_EVERY {
            let left = self.deadline.saturating_duration_since(now).as_secs();
            tracing::info!(calls, deadline_secs = left, mode = mode(self.handover), "draining: calls remain");
            self.logged = (calls, now);
        }
    }
}

fn mode(handover: bool) -> &'static str {
    if handover {
        "handover"
    } else {
        "local"
    }
}

/// The state when not draining.
pub fn idle_status(configured: Duration, calls: usize) -> Status {
    Status { draining: false, deadline_secs: configured.as_secs(), calls, mode: None }
}

/// `1` while draining.
pub const DRAINING: &str = "sbc_draining";
/// New calls (`method="INVITE"`) and OPTIONS pings (`method="OPTIONS"`) answered 503 because of a drain.
pub const REJECTED: &str = "sbc_drain_rejected_total";

/// Describes the drain's metrics, with zero-valued series so alerts see them from the start.
pub fn describe() {
    metrics::describe_gauge!(DRAINING, "1 while the SBC drains (new calls refused, calls up left to end)");
    metrics::describe_counter!(REJECTED, "new calls and OPTIONS pings answered 503 because of a drain, by method");
    metrics::gauge!(DRAINING).set(0.0);
    for method in ["INVITE", "OPTIONS"] {
        metrics::counter!(REJECTED, "method" => method).absolute(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_parameter_is_whole_seconds_within_a_day() {
        assert_eq!(parse_deadline(None), Ok(None));
        assert_eq!(parse_deadline(Some("")), Ok(None));
        assert_eq!(parse_deadline(Some("deadline=30")), Ok(Some(Duration::from_secs(30))));
        for bad in ["deadline=0", "deadline=86401", "deadline=5m", "deadline=", "grace=5"] {
            assert!(parse_deadline(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn status_shows_the_mode_only_while_draining() {
        let idle = Status { draining: false, deadline_secs: 300, calls: 0, mode: None };
        assert_eq!(serde_json::to_string(&idle).expect("json"), r#"{"draining":false,"deadline_secs":300,"calls":0}"#);
        let busy = Status { draining: true, deadline_secs: 12, calls: 50, mode: Some("local") };
        assert_eq!(
            serde_json::to_string(&busy).expect("json"),
            r#"{"draining":true,"deadline_secs":12,"calls":50,"mode":"local"}"#
        );
    }
}
