//! `[media] ng`: rtpengine's NG control protocol answered by the embedded relay, for Kamailio's and OpenSIPS's
//! rtpengine modules. The decisions are relay-proto's [`NgServer`]; the socket loop, its timer and the routing of
//! the relay's events are the standalone relay's ([`media_relay::ng`]), run here on the SBC's runtime against
//! the same relay threads as the SBC's own calls.
//!
//! Session ids cannot collide: NG sessions are numbered from [`relay_proto::ng_server::NG_SESSION_BASE`] (2^62),
//! the SBC's calls from their call numbers, far below; ports cannot either: NG calls take `ng_ports`, which the
//! configuration keeps apart from `ports`.
//!
//! In a pair the active's NG core emits a record per change of a call, which goes to the standby on the
//! replication link beside the SBC's own calls; the driver tells the core its role ([`NgLink::with_core`]).

use crate::config::NgSettings;
use media_relay::ng::{Outputs, SharedNg};
use media_relay::relay::Relay;
use relay_proto::control::Event;
use relay_proto::ng_server::{NgRecord, NgServer};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How often the NG core's counters go to the metrics.
const METRICS_EVERY: Duration = Duration::from_secs(1);

/// The running NG listener; its tasks stop when it is dropped.
#[derive(Debug)]
pub struct NgLink {
    core: SharedNg,
    out: Outputs,
    tasks: Vec<JoinHandle<()>>,
}

impl NgLink {
    /// Binds `settings.listen` and answers NG there with `relay`. The relay's `events` are split: those of NG
    /// sessions go to the NG core, every other comes out of the returned receiver (for the driver).
    pub fn start(
        settings: &NgSettings,
        relay: Arc<Relay>,
        events: mpsc::UnboundedReceiver<Event>,
        pair: Option<crate::ha::Replicator>,
    ) -> std::io::Result<(Self, mpsc::UnboundedReceiver<Event>)> {
        let core =
            NgServer::new(settings.core.clone()).map_err(|e| std::io::Error::other(format!("media.ng_ports: {e}")))?;
        let core: SharedNg = Arc::new(Mutex::new(core));
        // As SIP's: IP_FREEBIND, so that both boxes of a pair may name a service address the standby does not hold.
        let socket = crate::transport::udp::bind(settings.listen)
            .map_err(|e| std::io::Error::new(e.kind(), format!("binding media.ng {}: {e}", settings.listen)))?;
        let (others_tx, others_rx) = mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        let records = pair.map(|pair| {
            let (tx, mut rx) = mpsc::unbounded_channel::<NgRecord>();
            tasks.push(tokio::spawn(async move {
                while let Some(r) = rx.recv().await {
                    pair.replicate(r.into());
                }
            }));
            tx
        });
        let out = Outputs { socket, relay, records };
        tasks.push(tokio::spawn(media_relay::ng::route_events(events, core.clone(), out.clone(), others_tx)));
        tasks.push(tokio::spawn(media_relay::ng::tick(core.clone(), out.clone())));
        let serve = {
            let (core, out) = (core.clone(), out.clone());
            async move {
                if let Err(e) = media_relay::ng::serve(core, out).await {
                    tracing::error!(error = %e, "NG socket failed: NG requests are no longer answered");
                }
            }
        };
        tasks.push(tokio::spawn(serve));
        tasks.push(tokio::spawn(export_metrics(core.clone())));
        tracing::info!(ng = %settings.listen, ports = %format!("{}-{}", settings.core.first_port, settings.core.last_port), "NG listener ready (embedded relay)");
        Ok((Self { core, out, tasks }, others_rx))
    }

    /// This box became active: the peer's NG calls become ours, and ours are replicated from now on (`replicate`:
    /// false in active/active, where NG calls belong to no group).
    pub fn on_active(&self, now: std::time::Instant, replicate: bool) {
        let adopted = self.with_core(|core| {
            core.set_replication(replicate);
            core.take_over(now)
        });
        if adopted > 0 {
            tracing::warn!(adopted, "active: the NG calls are ours");
        }
    }

    /// This box became standby; on a `handover` (demotion, split brain, keepalived) its NG calls go to the peer.
    pub fn on_standby(&self, now: std::time::Instant, handover: bool) {
        let handed = self.with_core(|core| {
            core.set_replication(false);
            if handover {
                core.demote(now)
            } else {
                0
            }
        });
        if handed > 0 {
            tracing::warn!(handed, "standby: NG calls handed to the peer");
        }
    }

    /// Every NG call as a record, for the snapshot of a standby that (re)connects.
    pub fn snapshot(&self) -> Vec<sbc_proto::ha::Record> {
        self.with_core(|core| core.snapshot()).into_iter().map(sbc_proto::ha::Record::from).collect()
    }

    /// Runs `f` on the NG core (the pair's transitions: replication on or off, records from the active, takeover,
    /// demotion, snapshot), then carries out what it asked for.
    pub fn with_core<R>(&self, f: impl FnOnce(&mut NgServer) -> R) -> R {
        let mut core = self.core.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let r = f(&mut core);
        media_relay::ng::drain(&mut core, &self.out);
        r
    }
}

impl Drop for NgLink {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The NG core's counters as metrics, every [`METRICS_EVERY`]: requests by command and result, retransmissions
/// answered from the cache, malformed datagrams, calls held, created and timed out.
async fn export_metrics(core: SharedNg) {
    let mut every = tokio::time::interval(METRICS_EVERY);
    loop {
        every.tick().await;
        let (outcomes, counters, calls) = {
            let core = core.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            (core.outcomes().collect::<Vec<_>>(), core.counters(), core.calls())
        };
        for (command, result, n) in outcomes {
            metrics::counter!("sbc_ng_requests_total", "command" => command, "result" => result).absolute(n);
        }
        metrics::counter!("sbc_ng_retransmissions_total").absolute(counters.retransmissions);
        metrics::counter!("sbc_ng_malformed_total").absolute(counters.malformed);
        metrics::counter!("sbc_ng_calls_created_total").absolute(counters.calls_created);
        metrics::counter!("sbc_ng_calls_timed_out_total").absolute(counters.calls_timed_out);
        metrics::gauge!("sbc_ng_calls").set(calls as f64);
    }
}
