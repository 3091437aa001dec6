//! Hot reload: SIGHUP and `POST /config/reload` read the whole file, validate it with the loader, and only if it is
//! valid, and changes nothing that needs a restart, hand it to the driver, which swaps the plan at once between two
//! messages. All or nothing: a file with an error, or with one change that cannot be applied live, changes nothing,
//! and the answer (and the log) says why with FILE:LINE.
//!
//! What applies live: trunks (added, changed, removed), routes and `[calls]`. Calls in progress keep the plan they
//! started with (sbc-proto's `Calls::set_plan`); a removed trunk lives in its calls' plan until they end. Trunk ids
//! stay stable across reloads (`config::routing`), so per-trunk counters, probes and metric labels carry over.

mod diff;
mod routes;

pub use diff::{diff, Diff};
pub use routes::routes;

use crate::config::{Config, ConfigError};
use crate::driver::{Records, Sockets};
use crate::listeners::Listeners;
use sbc_proto::endpoint::Endpoint;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::{mpsc, oneshot};

/// `sbc_config_reloads_total{result}`: reloads applied (`ok`), refused for errors (`invalid`) or for a change that
/// needs a restart (`restart_required`), or not done because the driver had stopped (`unavailable`).
pub const RELOADS: &str = "sbc_config_reloads_total";
/// `sbc_config_loaded_timestamp_seconds`: when the running configuration was loaded (Unix seconds).
pub const LOADED_AT: &str = "sbc_config_loaded_timestamp_seconds";

/// The configuration file as loaded at start, for the first [`Reloader`].
#[derive(Debug, Clone)]
pub struct Source {
    /// The file.
    pub path: PathBuf,
    /// Its text, as loaded.
    pub text: String,
}

/// What `GET /config` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Loaded {
    /// The file.
    pub path: PathBuf,
    /// The first 12 hex digits of the file's SHA-256.
    pub version: String,
    /// When it was loaded (RFC 3339, UTC).
    pub loaded_at: String,
    #[serde(skip)]
    text: String,
    #[serde(skip)]
    config: Arc<Config>,
}

/// A reload handed to the driver.
#[derive(Debug)]
pub struct Apply {
    /// The new configuration, valid and with nothing that needs a restart.
    pub config: Arc<Config>,
    /// UDP sockets of listeners added, by local address: the driver sends on them from now on.
    pub udp_added: Vec<(std::net::SocketAddr, Arc<tokio::net::UdpSocket>)>,
    /// Local addresses of UDP listeners removed.
    pub udp_removed: Vec<std::net::SocketAddr>,
    /// Every listener's local address after the reload, for the core.
    pub locals: Vec<(sbc_proto::transport::Transport, std::net::SocketAddr)>,
    /// Answered with the number of calls in progress at the swap, and how long the swap held the driver (µs).
    pub reply: oneshot::Sender<(usize, u64)>,
}

/// A reload applied.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    /// The new version.
    pub version: String,
    /// What changed, one line each.
    pub changes: Vec<String>,
    /// Calls in progress at the swap (they keep their settings).
    pub calls_kept: usize,
}

/// Why a reload or a check did not go through.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file has errors (or a listener cannot be bound): the message names FILE:LINE.
    #[error("{0}")]
    Invalid(String),
    /// The file changes something that cannot change live: the message names FILE:LINE and the key.
    #[error("{0}")]
    RestartRequired(String),
    /// The driver has stopped (shutting down).
    #[error("the SBC is stopping: no reload")]
    Unavailable,
}

/// Reloads the configuration; cheap to clone (the API and the SIGHUP task each hold one).
#[derive(Debug, Clone)]
pub struct Reloader {
    loaded: Arc<Mutex<Loaded>>,
    driver: mpsc::Sender<Apply>,
    /// One reload at a time: each is validated against the one before it.
    serial: Arc<tokio::sync::Mutex<()>>,
    /// The SIP listeners, which a reload adds and removes.
    listeners: Arc<Mutex<Listeners>>,
}

fn version_of(text: &str) -> String {
    let hash = Sha256::digest(text.as_bytes());
    hash.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// A [`ConfigError`] on one line (the API's errors are one line): each error `FILE:LINE: ...`, joined by "; ".
fn invalid(e: &ConfigError) -> ReloadError {
    let text = e.to_string();
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    ReloadError::Invalid(lines.join("; "))
}

impl Reloader {
    /// A reloader of `source`, running as `config`; the driver takes what the receiver yields
    /// ([`Records::reload`]).
    pub fn new(source: Source, config: Config, listeners: Arc<Mutex<Listeners>>) -> (Self, mpsc::Receiver<Apply>) {
        metrics::describe_counter!(RELOADS, "configuration reloads, by result (ok, invalid, restart_required)");
        metrics::describe_gauge!(LOADED_AT, "when the running configuration was loaded, Unix seconds");
        for result in ["ok", "invalid", "restart_required", "unavailable"] {
            metrics::counter!(RELOADS, "result" => result).absolute(0);
        }
        let now = SystemTime::now();
        metrics::gauge!(LOADED_AT).set(unix_secs(now));
        let loaded = Loaded {
            path: source.path,
            version: version_of(&source.text),
            loaded_at: rfc3339(now),
            text: source.text,
            config: Arc::new(config),
        };
        let (tx, rx) = mpsc::channel(1);
        (Self { loaded: Arc::new(Mutex::new(loaded)), driver: tx, serial: Arc::default(), listeners }, rx)
    }

    /// The running configuration's file, version and load time.
    pub fn loaded(&self) -> Loaded {
        self.loaded.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Reads and validates `path` (default: the running file) against the running configuration, without applying
    /// it: the new configuration, its version and what it would change.
    pub fn check(&self, path: Option<&Path>) -> Result<(Arc<Config>, String, Vec<String>), ReloadError> {
        let running = self.loaded();
        let path = path.unwrap_or(&running.path);
        let text = std::fs::read_to_string(path)
            .map_err(|source| invalid(&ConfigError::Read { path: path.to_owned(), source }))?;
        let new = Config::parse_after(&text, path, Some(&running.config.plan)).map_err(|e| invalid(&e))?;
        let Diff { changes, restart } = diff(path, &running.text, &running.config, &text, &new);
        if let Some(why) = restart {
            return Err(ReloadError::RestartRequired(why));
        }
        Ok((Arc::new(new), text, changes))
    }

    /// Reloads the running file (asked by `by`: `sighup` or `api`): validates it, and if it is valid applies it at
    /// once in the driver. Logged and counted either way.
    pub async fn reload(&self, by: &'static str) -> Result<Applied, ReloadError> {
        let _one = self.serial.lock().await;
        let began = std::time::Instant::now();
        // systemd (Type=notify) shows the unit reloading until it is over, applied or refused.
        crate::service::reloading();
        let _done = ReloadDone;
        let checked = self.check(None);
        let (config, text, mut changes) = match checked {
            Ok(c) => c,
            Err(e) => {
                let result = match e {
                    ReloadError::RestartRequired(_) => "restart_required",
                    _ => "invalid",
                };
                metrics::counter!(RELOADS, "result" => result).increment(1);
                tracing::warn!(by, error = %e, "configuration reload refused: nothing changed");
                return Err(e);
            }
        };
        // Listeners added are bound before anything changes: one that cannot be bound refuses the reload.
        let prepared = {
            let l = self.listeners.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            l.prepare(&config.sip.listen).map(|c| {
                let (locals, udp_removed) = (l.locals_after(&c), l.udp_removed(&c));
                (c, locals, udp_removed)
            })
        };
        let (change, locals, udp_removed) = match prepared {
            Ok(p) => p,
            Err((i, why)) => {
                let line = diff::line_of_key(&text, "sip.listen").unwrap_or(1);
                let path = self.loaded().path;
                let e = ReloadError::Invalid(format!(
                    "{}:{line}: sip.listen[{i}]: {why}; nothing was changed",
                    path.display()
                ));
                metrics::counter!(RELOADS, "result" => "invalid").increment(1);
                tracing::warn!(by, error = %e, "configuration reload refused: nothing changed");
                return Err(e);
            }
        };
        changes.extend(change.describe());
        let (reply, answer) = oneshot::channel();
        let apply = Apply { config: config.clone(), udp_added: change.udp_added(), udp_removed, locals, reply };
        let sent = self.driver.send(apply).await;
        let Some((calls_kept, swap_us)) = sent.ok().and(answer.await.ok()) else {
            metrics::counter!(RELOADS, "result" => "unavailable").increment(1);
            return Err(ReloadError::Unavailable);
        };
        {
            let mut l = self.listeners.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            l.commit(change);
            l.set_plan(&config.plan);
        }
        let version = version_of(&text);
        let now = SystemTime::now();
        {
            let mut l = self.loaded.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            l.version = version.clone();
            l.loaded_at = rfc3339(now);
            l.text = text;
            l.config = config;
        }
        metrics::counter!(RELOADS, "result" => "ok").increment(1);
        metrics::gauge!(LOADED_AT).set(unix_secs(now));
        if changes.is_empty() {
            changes.push("no change".to_owned());
        }
        // Read, validate, bind and swap; of this, the driver (the call path) spends only `swap_us`.
        let took_ms = began.elapsed().as_millis() as u64;
        tracing::info!(by, %version, calls_kept, took_ms, swap_us, changes = %changes.join("; "), "configuration reloaded");
        Ok(Applied { version, changes, calls_kept })
    }

    /// Reloads on every SIGHUP until the process ends.
    pub fn on_sighup(&self) -> std::io::Result<tokio::task::JoinHandle<()>> {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let me = self.clone();
        Ok(tokio::spawn(async move {
            while hup.recv().await.is_some() {
                // Logged and counted inside.
                let _ = me.reload("sighup").await;
            }
        }))
    }
}

/// In the driver: swaps the plan of the core and of what labels its metrics and guards its edge, and the sockets it
/// sends on. Returns the calls in progress, which keep the plan they started with, and how long this took (µs).
pub fn apply(endpoint: &mut Endpoint, records: &mut Records, sockets: &mut Sockets, apply: &Apply) -> (usize, u64) {
    let now = std::time::Instant::now();
    let config = &apply.config;
    for local in &apply.udp_removed {
        sockets.udp.remove(local);
    }
    sockets.udp.extend(apply.udp_added.iter().cloned());
    endpoint.reload(now, config.plan.clone(), apply.locals.clone());
    let names: Vec<String> = config.plan.trunks.iter().map(|t| t.name.clone()).collect();
    for added in names.iter().skip(records.trunks.len()) {
        crate::metrics::trunk_series(added);
    }
    records.trunks = names;
    records.edge.set_plan(config.plan.clone());
    // The next drain (SIGTERM, POST /drain without a deadline) takes the new deadline; one under way keeps its own.
    if let Some(d) = records.drain.as_mut() {
        d.deadline = config.drain_deadline;
    }
    // New gateways are probed from the next timeout on: run it now rather than at the next deadline.
    endpoint.handle_timeout(now);
    (endpoint.calls().len(), now.elapsed().as_micros() as u64)
}

/// Tells systemd the reload is over however [`Reloader::reload`] returns.
struct ReloadDone;

impl Drop for ReloadDone {
    fn drop(&mut self) {
        crate::service::reload_done();
    }
}
