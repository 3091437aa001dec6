//! The driver loop: feeds received messages and timer expiries to the sans-IO core and carries out what it asks.
//!
//! One task owns the [`Endpoint`]; transports talk to it through one bounded channel, so the core is never
//! shared and needs no locks. The loop sleeps until the next message or the core's next deadline.

use crate::cdr_sink::CdrSink;
use crate::edge::EdgeGuard;
use crate::ha::{HaEvent, HaHandle};
use crate::hep::HepExport;
use crate::media_link::{LinkEvent, MediaLink};
use crate::metrics as m;
use crate::transport::dial::Dialer;
use crate::transport::registry::{Connections, SendError};
use crate::transport::{Inbound, Receivers, Transport};
use media_relay::xdp::{DROP_REASONS, PASS_REASONS};
use relay_proto::control::{Event as MediaEvent, SessionId};
use sbc_proto::cdr::Cdr;
use sbc_proto::endpoint::{Endpoint, Observation, Output};
use sbc_proto::ha::{Record, Role};
use sbc_proto::policy::{BanEvent, BanReason};
use sbc_proto::transport::Peer;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// The sockets the driver sends on.
#[derive(Debug, Default)]
pub struct Sockets {
    /// UDP sockets by local address.
    pub udp: HashMap<SocketAddr, Arc<UdpSocket>>,
    /// Open TCP, TLS and WebSocket connections.
    pub streams: Connections,
    /// WebSocket connections that closed (their calls end: `Endpoint::handle_connection_closed`).
    pub flows_closed: Option<tokio::sync::mpsc::Receiver<Peer>>,
    /// Opens connections to `tcp:` and `tls:` gateways that have none.
    pub dialer: Option<Dialer>,
    /// Gateways the dialer could not reach, for the core.
    pub dial_failures: Option<tokio::sync::mpsc::Receiver<Peer>>,
    /// What DNS-named gateways resolve to, from their resolving tasks ([`crate::dns`]), for the core.
    pub dns: Option<tokio::sync::mpsc::Receiver<crate::dns::Update>>,
}

/// What the driver writes besides packets: CDRs, and the trunk names that label call metrics.
#[derive(Debug)]
pub struct Records {
    /// Where CDRs go; `None`: to the log only.
    pub cdr: Option<CdrSink>,
    /// Trunk names by [`TrunkId`](sbc_proto::routing::TrunkId).
    pub trunks: Vec<String>,
    /// The media relay, when media is anchored.
    pub media: Option<MediaLink>,
    /// CDRs of calls with media, waiting for the relay's final figures (at most [`MEDIA_STATS_WAIT`]).
    pub pending: HashMap<SessionId, (Box<Cdr>, Instant)>,
    /// The hot-standby pair, when configured.
    pub ha: Option<HaHandle>,
    /// The edge guard: told of offences, its ban events carried out here.
    pub edge: EdgeGuard,
    /// Drain requests (admin API, SIGTERM) and the configured deadline; `None`: no drains.
    pub drain: Option<crate::drain::DrainLink>,
    /// Reloads of the configuration to apply ([`crate::reload`]); `None`: none come.
    pub reload: Option<tokio::sync::mpsc::Receiver<crate::reload::Apply>>,
    /// The media of canary calls, started by [`run`].
    pub canary: Option<crate::canary::CanaryMedia>,
    /// Requests of the admin API ([`crate::api`]), when it runs.
    pub admin: Option<tokio::sync::mpsc::Receiver<crate::api::Request>>,
    /// Admin requests waiting for the relay's figures of a call.
    pub figures: crate::api::FigureWaiters,
    /// Copies of every SIP message and media reports to a HEP collector, when `[hep]` is configured.
    pub hep: Option<crate::hep::HepExport>,
}

/// How long a CDR waits for its media figures; after that it is written without them, and counted.
const MEDIA_STATS_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

impl Records {
    /// Records writing CDRs to `cdr`, naming `trunks`, with the relay `media`.
    pub fn new(
        cdr: Option<CdrSink>,
        trunks: Vec<String>,
        media: Option<MediaLink>,
        ha: Option<HaHandle>,
        edge: EdgeGuard,
    ) -> Self {
        Self {
            cdr,
            trunks,
            media,
            pending: HashMap::new(),
            ha,
            edge,
            drain: None,
            reload: None,
            canary: None,
            admin: None,
            figures: crate::api::FigureWaiters::default(),
            hep: None,
        }
    }

    /// These records, answering the admin API's requests from `requests`.
    pub fn with_admin(mut self, requests: tokio::sync::mpsc::Receiver<crate::api::Request>) -> Self {
        self.admin = Some(requests);
        self
    }

    fn write(&mut self, cdr: &Cdr) {
        tracing::info!(
            a_call_id = %cdr.a_call_id, trunk_in = %cdr.trunk_in, trunk_out = ?cdr.trunk_out,
            status = cdr.status, cause = cdr.release_cause, by = cdr.released_by, "call ended"
        );
        m::call_ended(cdr);
        if let Some(sink) = self.cdr.as_mut() {
            sink.record(cdr);
        }
    }

    /// Writes CDRs whose media figures did not come in time (all of them with `all`).
    fn expire_pending(&mut self, now: Instant, all: bool) {
        let due: Vec<SessionId> =
            self.pending.iter().filter(|(_, (_, at))| all || *at <= now).map(|(s, _)| *s).collect();
        for s in due {
            if let Some((cdr, _)) = self.pending.remove(&s) {
                metrics::counter!("sbc_cdr_media_missing_total").increment(1);
                self.write(&cdr);
            }
        }
    }

    fn next_pending(&self) -> Option<Instant> {
        self.pending.values().map(|(_, at)| *at).min()
    }
}

async fn reload_request(
    reload: &mut Option<tokio::sync::mpsc::Receiver<crate::reload::Apply>>,
) -> crate::reload::Apply {
    if let Some(r) = reload.as_mut() {
        if let Some(a) = r.recv().await {
            return a;
        }
    }
    std::future::pending().await
}

async fn ha_event(ha: &mut Option<HaHandle>) -> HaEvent {
    if let Some(h) = ha.as_mut() {
        if let Some(e) = h.events.recv().await {
            return e;
        }
    }
    std::future::pending().await
}

/// The NG listener (`[media] ng`), when there is one.
fn ng(records: &Records) -> Option<&crate::ng_link::NgLink> {
    records.media.as_ref().and_then(MediaLink::ng)
}

/// Carries out what the pair decided or received.
fn on_ha(endpoint: &mut Endpoint, records: &mut Records, ev: HaEvent) {
    let now = Instant::now().into_std();
    let Some(ha) = records.ha.as_ref() else { return };
    match ev {
        HaEvent::Role(group, Role::Active, why) => {
            let which = ha.active_active.then_some(group);
            if let Some(ng) = ng(records) {
                ng.on_active(now, !ha.active_active);
            }
            let adopted = endpoint.take_over(now, which);
            endpoint.set_replication(true);
            // The new active registers at once (a no-op if it already was active for another group).
            endpoint.set_registering(now, true);
            ha.status.lock().unwrap_or_else(std::sync::PoisonError::into_inner).set_group_role(group, Role::Active);
            tracing::warn!(adopted, group, why = why.label(), "active: the service addresses and their calls are ours");
        }
        HaEvent::Role(group, Role::Standby, why) => {
            let still_active = {
                let mut s = ha.status.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                s.set_group_role(group, Role::Standby);
                s.role == "active"
            };
            // Active/active: the calls of the groups still ours go on being replicated.
            endpoint.set_replication(still_active);
            let handover = matches!(
                why,
                sbc_proto::ha::RoleChange::Demoted
                    | sbc_proto::ha::RoleChange::SplitBrain
                    | sbc_proto::ha::RoleChange::External
            );
            if let Some(ng) = ng(records).filter(|_| !still_active) {
                ng.on_standby(now, handover);
            }
            // A box active for no group leaves the registrations to its peer.
            endpoint.set_registering(now, still_active);
            if handover {
                // After a split brain the peer never received this box's records: its calls being set up are
                // refused here. On a handover the peer has them and resumes them.
                let which = ha.active_active.then_some(group);
                let handed = endpoint.demote(now, why != sbc_proto::ha::RoleChange::SplitBrain, which);
                tracing::warn!(handed, group, why = why.label(), "standby: calls handed to the peer");
            }
        }
        HaEvent::Record(r) if matches!(*r, Record::NgCall(_) | Record::NgEnded { .. }) => {
            let active = ha.status.lock().unwrap_or_else(std::sync::PoisonError::into_inner).role == "active";
            match (r.into_ng(), ng(records)) {
                // A second active's record (a split brain the pair logic settles) is not applied meanwhile.
                (Ok(_), _) if active => metrics::counter!("sbc_ha_records_ignored_total").increment(1),
                (Ok(record), Some(ng)) => ng.with_core(|core| core.apply_record(record)),
                // This box has no `[media] ng`: it cannot take these calls over.
                _ => metrics::counter!("sbc_ha_records_ignored_total").increment(1),
            }
        }
        HaEvent::Record(r) => {
            if let Record::Ban { addr, reason, remaining_ms } = &*r {
                // The active's bans hold here too, so they survive a takeover.
                records.edge.apply_replicated(*addr, reason, std::time::Duration::from_millis(*remaining_ms));
                return carry_out_bans(records);
            }
            // A record about a call of a group this box is active for comes from a second active (a split brain
            // the pair logic settles): not applied meanwhile. With one group, that is any record while active.
            let ours = {
                let s = ha.status.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                match endpoint.record_group(&r) {
                    Some(g) => s.group_active(g),
                    None => !ha.active_active && s.role == "active",
                }
            };
            if ours {
                metrics::counter!("sbc_ha_records_ignored_total").increment(1);
            } else {
                endpoint.apply_record(now, *r);
            }
        }
        HaEvent::ResyncStart => {
            endpoint.clear_foreign();
            if let Some(ng) = ng(records) {
                ng.with_core(|core| core.clear_foreign());
            }
        }
        // The REGISTERs of a takeover left before the service addresses were up: send them again now rather
        // than at their first retransmission.
        HaEvent::AddressesUp(_) => endpoint.resend_registrations(now),
        HaEvent::NeedSnapshot => {
            let mut all = endpoint.snapshot(now);
            all.extend(records.edge.bans().into_iter().map(|(addr, reason, left)| ban_record(addr, reason, left)));
            all.extend(ng(records).map(crate::ng_link::NgLink::snapshot).unwrap_or_default());
            ha.snapshot(all)
        }
    }
    update_ha_status(endpoint, records);
}

fn update_ha_status(endpoint: &Endpoint, records: &Records) {
    if let Some(ha) = &records.ha {
        let mut s = ha.status.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        s.calls = endpoint.calls().len();
        if ha.active_active {
            for (i, g) in s.groups.iter_mut().enumerate() {
                g.calls = endpoint.calls_in_group(i);
            }
        } else {
            let calls = s.calls;
            if let Some(g) = s.groups.first_mut() {
                g.calls = calls;
            }
        }
        s.foreign_calls = endpoint.foreign_calls();
        s.lag_records = ha.lag();
        metrics::gauge!("sbc_ha_lag_records").set(s.lag_records as f64);
    }
}

async fn drain_request(drain: &mut Option<crate::drain::DrainLink>) -> crate::drain::Request {
    if let Some(d) = drain.as_mut() {
        if let Some(r) = d.requests.recv().await {
            return r;
        }
    }
    std::future::pending().await
}

async fn admin_request(admin: &mut Option<tokio::sync::mpsc::Receiver<crate::api::Request>>) -> crate::api::Request {
    if let Some(rx) = admin.as_mut() {
        if let Some(r) = rx.recv().await {
            return r;
        }
    }
    std::future::pending().await
}

/// Starts a drain, or moves the deadline of the one under way; replies with the state after.
fn start_drain(
    endpoint: &mut Endpoint,
    records: &Records,
    draining: &mut Option<crate::drain::Draining>,
    deadline: Option<std::time::Duration>,
) -> crate::drain::Status {
    let configured = records.drain.as_ref().map_or(crate::config::DEFAULT_DRAIN_DEADLINE, |d| d.deadline);
    let deadline = deadline.unwrap_or(configured);
    let at = Instant::now() + deadline;
    let calls = endpoint.calls().len();
    if let Some(d) = draining.as_mut() {
        d.deadline = at;
        tracing::info!(calls, deadline_secs = deadline.as_secs(), "draining: deadline moved");
        return d.status(calls);
    }
    // The active of a pair whose peer is there hands its calls over (the fire drill's demotion) instead of
    // refusing new ones: the peer takes the service addresses, so no call is refused at all. keepalived owns the
    // addresses in its mode, and a box alone or standby drains here.
    let handover = records.ha.as_ref().is_some_and(|ha| {
        let (active, alive) = {
            let s = ha.status.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            (s.role == "active", s.peer_alive)
        };
        active && alive && ha.set_role.is_none() && ha.demote.try_send(None).is_ok()
    });
    if !handover {
        endpoint.set_draining(Some(u32::try_from(deadline.as_secs()).unwrap_or(u32::MAX)));
    }
    let d = crate::drain::Draining::new(at, handover, calls);
    let status = d.status(calls);
    *draining = Some(d);
    status
}

/// Whether a drain has nothing left to wait for: no call up here and, on a handover, the peer has taken over.
fn drained(endpoint: &Endpoint, records: &Records, d: &crate::drain::Draining) -> bool {
    if !endpoint.calls().is_empty() {
        return false;
    }
    !d.handover
        || records.ha.as_ref().is_none_or(|ha| {
            let s = ha.status.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            s.role == "standby" && s.peer_active
        })
}

async fn media_event(media: &mut Option<MediaLink>) -> LinkEvent {
    match media.as_mut() {
        Some(m) => m.recv().await,
        None => std::future::pending().await,
    }
}

fn ban_record(addr: std::net::IpAddr, reason: BanReason, left: std::time::Duration) -> Record {
    Record::Ban { addr, reason: reason.label().to_owned(), remaining_ms: left.as_millis() as u64 }
}

/// Carries out the edge guard's ban changes: the kernel's ban map (through the relay), the standby, the log.
fn carry_out_bans(records: &mut Records) {
    for ev in records.edge.poll() {
        match ev {
            BanEvent::Banned { addr, reason, duration, replicated } => {
                let origin = if replicated { "peer" } else { "local" };
                metrics::counter!(crate::edge::BANS, "reason" => reason.label(), "origin" => origin).increment(1);
                tracing::warn!(%addr, reason = reason.label(), secs = duration.as_secs(), origin, "source banned");
                if let Some(m) = &records.media {
                    m.send(relay_proto::control::Command::Ban { addr, reason: reason.code() });
                }
                if let (false, Some(ha)) = (replicated, &records.ha) {
                    ha.replicate(ban_record(addr, reason, duration));
                }
            }
            BanEvent::Lifted { addr } => {
                tracing::info!(%addr, "ban lifted");
                if let Some(m) = &records.media {
                    m.send(relay_proto::control::Command::Unban { addr });
                }
            }
        }
    }
}

/// The driver's next inbound message, responses and in-dialog requests first; `None` when both queues are closed.
async fn next_inbound(rx: &mut Receivers) -> Option<(Inbound, bool)> {
    tokio::select! {
        biased;
        Some(m) = rx.high.recv() => Some((m, true)),
        Some(m) = rx.low.recv() => Some((m, false)),
        else => None,
    }
}

/// Without waiting: the next queued message, high first.
fn try_inbound(rx: &mut Receivers) -> Option<(Inbound, bool)> {
    rx.high.try_recv().map(|m| (m, true)).or_else(|_| rx.low.try_recv().map(|m| (m, false))).ok()
}

async fn canary_report(canary: &mut Option<crate::canary::CanaryMedia>) -> crate::canary::Report {
    match canary.as_mut() {
        Some(c) => c.report().await,
        None => std::future::pending().await,
    }
}

async fn flow_closed(closed: &mut Option<tokio::sync::mpsc::Receiver<Peer>>) -> Peer {
    if let Some(c) = closed.as_mut() {
        if let Some(p) = c.recv().await {
            return p;
        }
    }
    std::future::pending().await
}

async fn dial_failure(failures: &mut Option<tokio::sync::mpsc::Receiver<Peer>>) -> Peer {
    if let Some(f) = failures.as_mut() {
        if let Some(p) = f.recv().await {
            return p;
        }
    }
    std::future::pending().await
}

async fn dns_update(
    updates: &mut Option<tokio::sync::mpsc::Receiver<crate::dns::Update>>,
) -> Option<crate::dns::Update> {
    match updates.as_mut() {
        Some(u) => u.recv().await,
        None => std::future::pending().await,
    }
}

/// One message to the core; a new request's wait in the queue is the overload signal.
fn deliver(endpoint: &mut Endpoint, msg: Inbound, high: bool, load: &mut Load, hep: Option<&mut HepExport>) {
    if let Some(hep) = hep {
        // Before the core sees it: a leg B's last message may end its call, and with it the correlation.
        hep.inbound(endpoint, msg.transport, msg.local, msg.remote, msg.at, &msg.bytes);
    }
    if !high {
        let now = Instant::now();
        let delay = now.saturating_duration_since(msg.at);
        load.worst_delay = load.worst_delay.max(delay);
        load.low_served = now;
        endpoint.observe_queue_delay(now.into_std(), delay);
    }
    let peer = Peer { transport: msg.transport, local: msg.local, remote: msg.remote, conn: msg.conn };
    endpoint.handle_message_from(msg.at.into_std(), peer, msg.identity, msg.bytes);
}

/// What the driver measures of its own load besides each new request's wait.
struct Load {
    /// The longest wait of a new request since the metric was last set.
    worst_delay: std::time::Duration,
    /// When the low queue was last served (a new request taken) or seen empty.
    low_served: Instant,
    /// The low queue was empty after the last batch.
    low_empty: bool,
}

impl Load {
    /// The driver woke for a message: a new request queued since the last batch found the queue empty arrived after
    /// the driver began to wait, and cannot have waited longer than that.
    fn woke(&mut self) {
        if self.low_empty {
            self.low_served = Instant::now();
        }
    }

    /// After a batch: new requests dropped at the full queue, or a queue left unserved because responses and
    /// in-dialog requests took all the time, are a backlog that no request's wait shows (none got through).
    fn check_backlog(&mut self, endpoint: &mut Endpoint, rx: &Receivers) {
        let now = Instant::now();
        self.low_empty = rx.low.is_empty();
        if rx.take_dropped() > 0 {
            endpoint.observe_queue_backlog(now.into_std(), std::time::Duration::MAX);
        } else if self.low_empty {
            self.low_served = now;
        } else {
            endpoint.observe_queue_backlog(now.into_std(), now.saturating_duration_since(self.low_served));
        }
    }
}

/// CPU used by this process (user + system), for overload control.
fn process_cpu() -> std::time::Duration {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_SELF).map_or(std::time::Duration::ZERO, |u| {
        let tv = |t: nix::sys::time::TimeVal| {
            std::time::Duration::new(t.tv_sec().max(0) as u64, (t.tv_usec().max(0) as u32) * 1000)
        };
        tv(u.user_time()) + tv(u.system_time())
    })
}

/// How long calls get at shutdown to exchange their BYEs before their records are closed regardless.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs the core until `shutdown` resolves or every transport has stopped, then ends every call (BYE to
/// confirmed calls, 503 to those being set up) and writes every CDR.
pub async fn run(
    mut endpoint: Endpoint,
    mut sockets: Sockets,
    mut rx: Receivers,
    shutdown: impl std::future::Future<Output = ()>,
    mut records: Records,
) {
    // Instants in the core are std; tokio's Instant converts losslessly.
    tokio::pin!(shutdown);
    let mut stopping: Option<Instant> = None;
    let mut draining: Option<crate::drain::Draining> = None;
    records.canary = Some(crate::canary::CanaryMedia::start(&mut endpoint));
    // Starts what runs on its own (gateway probes, canary timers).
    endpoint.handle_timeout(Instant::now().into_std());
    // A box alone registers with its carriers now; in a pair, the active does (`on_ha`).
    if records.ha.is_none() {
        endpoint.set_registering(Instant::now().into_std(), true);
    }
    if let Some(m) = &records.media {
        endpoint.set_media_available(m.initially_up());
    }
    let mut media_tick = tokio::time::interval(std::time::Duration::from_secs(1));
    // The edge guard's expiries and the overload's CPU sample.
    let mut edge_tick = tokio::time::interval(std::time::Duration::from_millis(250));
    let mut cpu_at = (Instant::now(), process_cpu());
    let mut load = Load { worst_delay: std::time::Duration::ZERO, low_served: Instant::now(), low_empty: true };
    loop {
        if let Some(since) = stopping {
            let done = endpoint.calls().is_empty() && !endpoint.unregistering();
            if done || since.elapsed() >= SHUTDOWN_GRACE {
                break;
            }
        } else if let Some(d) = draining.as_ref().filter(|d| drained(&endpoint, &records, d)) {
            let how = if d.handover { "the peer has the calls" } else { "the last call has ended" };
            tracing::info!(calls = 0, "drained: {how}; stopping");
            // No call is left; this un-registers, and the loop ends once the registrars answered.
            endpoint.shutdown(Instant::now().into_std());
            stopping = Some(Instant::now());
            flush(&mut endpoint, &sockets, &mut records).await;
            continue;
        }
        let drain_end = draining.as_ref().filter(|_| stopping.is_none()).map(|d| d.deadline);
        let deadline =
            [endpoint.poll_timeout().map(Instant::from_std), records.next_pending()].into_iter().flatten().min();
        let grace_end = stopping.map(|s| s + SHUTDOWN_GRACE);
        tokio::select! {
            biased;
            _ = &mut shutdown, if stopping.is_none() => {
                tracing::info!(calls = endpoint.calls().len(), "stopping: ending calls");
                endpoint.shutdown(Instant::now().into_std());
                stopping = Some(Instant::now());
            }
            _ = sleep_until(grace_end), if stopping.is_some() => {}
            // Before the messages: an operator's question is rare and must not starve behind a busy queue.
            req = admin_request(&mut records.admin) => {
                crate::api::driver_side::handle(&mut endpoint, records.media.as_ref(), &mut records.figures, req);
            }
            _ = sleep_until(drain_end) => {
                tracing::warn!(calls = endpoint.calls().len(), "drain deadline reached: ending the calls left with BYE");
                endpoint.drain_deadline_reached(Instant::now().into_std());
                stopping = Some(Instant::now());
            }
            request = drain_request(&mut records.drain) => match request {
                crate::drain::Request::Status { reply } => {
                    let calls = endpoint.calls().len();
                    let configured = records.drain.as_ref().map_or(crate::config::DEFAULT_DRAIN_DEADLINE, |d| d.deadline);
                    let _ = reply.send(draining.as_ref().map_or_else(
                        || crate::drain::idle_status(configured, calls),
                        |d| d.status(calls),
                    ));
                }
                crate::drain::Request::Start { deadline, reply } => {
                    let status = if stopping.is_some() {
                        crate::drain::Status { draining: true, deadline_secs: 0, calls: endpoint.calls().len(), mode: None }
                    } else {
                        start_drain(&mut endpoint, &records, &mut draining, deadline)
                    };
                    if let Some(reply) = reply {
                        let _ = reply.send(status);
                    }
                }
                crate::drain::Request::StopNow if stopping.is_none() => {
                    tracing::info!(calls = endpoint.calls().len(), "stopping: ending calls");
                    endpoint.shutdown(Instant::now().into_std());
                    stopping = Some(Instant::now());
                }
                crate::drain::Request::StopNow => {}
            },
            msg = next_inbound(&mut rx) => {
                let Some((msg, high)) = msg else { break };
                load.woke();
                deliver(&mut endpoint, msg, high, &mut load, records.hep.as_mut());
                // Take whatever else is already queued before flushing: batches under load.
                for _ in 0..64 {
                    let Some((msg, high)) = try_inbound(&mut rx) else { break };
                    deliver(&mut endpoint, msg, high, &mut load, records.hep.as_mut());
                }
                load.check_backlog(&mut endpoint, &rx);
            }
            _ = edge_tick.tick() => {
                let now = Instant::now();
                let cpu = process_cpu();
                let wall = now.saturating_duration_since(cpu_at.0).as_secs_f64();
                if wall > 0.0 {
                    endpoint.observe_cpu(now.into_std(), cpu.saturating_sub(cpu_at.1).as_secs_f64() / wall);
                }
                cpu_at = (now, cpu);
                carry_out_bans(&mut records);
            }
            Some(u) = dns_update(&mut sockets.dns) => {
                endpoint.set_targets(u.trunk, u.index, u.targets);
            }
            peer = flow_closed(&mut sockets.flows_closed) => {
                let ended = endpoint.handle_connection_closed(Instant::now().into_std(), peer);
                if ended > 0 {
                    tracing::info!(
                        transport = %peer.transport, remote = %peer.remote, conn = peer.conn.map(|c| c.0), ended,
                        "websocket closed: its calls end"
                    );
                }
            }
            peer = dial_failure(&mut sockets.dial_failures) => {
                endpoint.handle_transport_error(Instant::now().into_std(), peer);
            }
            ev = media_event(&mut records.media) => on_media(&mut endpoint, &mut records, ev),
            r = canary_report(&mut records.canary) => {
                endpoint.handle_canary_media(Instant::now().into_std(), r.trunk, r.sent, r.received);
            }
            ev = ha_event(&mut records.ha) => on_ha(&mut endpoint, &mut records, ev),
            apply = reload_request(&mut records.reload), if stopping.is_none() => {
                let done = crate::reload::apply(&mut endpoint, &mut records, &mut sockets, &apply);
                let _ = apply.reply.send(done);
            }
            _ = media_tick.tick() => {
                export_relay_counters(&records);
                if let Some(hep) = records.hep.as_mut() {
                    hep.expire();
                }
                update_ha_status(&endpoint, &records);
                metrics::gauge!("sbc_overload_admission").set(endpoint.admission());
                if let Some(d) = draining.as_mut().filter(|_| stopping.is_none()) {
                    d.report(endpoint.calls().len());
                }
                metrics::gauge!("sbc_sip_queue_delay_max_seconds").set(load.worst_delay.as_secs_f64());
                load.worst_delay = std::time::Duration::ZERO;
            }
            _ = sleep_until(deadline) => {
                endpoint.handle_timeout(Instant::now().into_std());
                records.expire_pending(Instant::now(), false);
            }
        }
        flush(&mut endpoint, &sockets, &mut records).await;
    }
    endpoint.abandon_calls(Instant::now().into_std());
    flush(&mut endpoint, &sockets, &mut records).await;
    // The last calls' media figures: the relay answers a removal at once; wait a little, never long.
    let until = Instant::now() + MEDIA_STATS_WAIT;
    while !records.pending.is_empty() && Instant::now() < until {
        tokio::select! {
            ev = media_event(&mut records.media) => on_media(&mut endpoint, &mut records, ev),
            _ = tokio::time::sleep_until(until) => {}
        }
    }
    records.expire_pending(Instant::now(), true);
    if let Some(sink) = records.cdr.take() {
        sink.close();
    }
    if let Some(hep) = records.hep.take() {
        hep.close(HEP_CLOSE_WAIT).await;
    }
}

/// How long the captures still queued at shutdown (the last calls' BYEs) get to reach the collector.
const HEP_CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Rounds of transport errors reported back to the core in one flush (each may make it send again, e.g. a
/// failover); the few a closed WebSocket causes need one or two.
const UNREACHABLE_ROUNDS: usize = 4;

async fn flush(endpoint: &mut Endpoint, sockets: &Sockets, records: &mut Records) {
    let mut banned = false;
    let mut unreachable: Vec<Peer> = Vec::new();
    for round in 0..=UNREACHABLE_ROUNDS {
        // A flow-bound peer (WebSocket) whose connection is gone is unreachable for good: its transactions fail
        // now as transport errors instead of waiting for timer B/F.
        for peer in unreachable.drain(..) {
            endpoint.handle_transport_error(Instant::now().into_std(), peer);
        }
        flush_outputs(endpoint, sockets, records, &mut banned, &mut unreachable).await;
        if unreachable.is_empty() || round == UNREACHABLE_ROUNDS {
            break;
        }
    }
    if banned {
        carry_out_bans(records);
    }
    if let Some(sink) = records.cdr.as_mut().filter(|s| s.spilled() > 0) {
        sink.offer();
    }
}

async fn flush_outputs(
    endpoint: &mut Endpoint,
    sockets: &Sockets,
    records: &mut Records,
    banned: &mut bool,
    unreachable: &mut Vec<Peer>,
) {
    while let Some(out) = endpoint.poll_output() {
        match out {
            Output::Transmit { peer, bytes } => {
                if let Some(hep) = records.hep.as_mut() {
                    hep.outbound(endpoint, &peer, &bytes);
                }
                let sent = transmit(sockets, peer, bytes).await;
                if !sent && peer.transport.is_flow_bound() && !unreachable.contains(&peer) {
                    unreachable.push(peer);
                }
            }
            Output::Observe(o) => observe(o, &records.trunks),
            Output::Cdr(cdr) => match cdr.media_session.filter(|_| records.media.is_some()) {
                Some(session) => {
                    records.pending.insert(session, (cdr, Instant::now() + MEDIA_STATS_WAIT));
                }
                None => records.write(&cdr),
            },
            Output::Replicate(r) => {
                if let Some(ha) = &records.ha {
                    ha.replicate(r);
                }
            }
            Output::Media(cmd) => {
                if let Some(m) = &records.media {
                    m.send(cmd);
                }
            }
            Output::Offence { source, offence } => {
                records.edge.report(source, &offence);
                *banned = true;
            }
            Output::Canary(cmd) => {
                if let Some(c) = &records.canary {
                    c.command(cmd);
                }
            }
        }
    }
}

fn on_media(endpoint: &mut Endpoint, records: &mut Records, ev: LinkEvent) {
    let now = Instant::now();
    match ev {
        LinkEvent::Relay(e) if matches!(*e, MediaEvent::Figures(_)) => {
            if let MediaEvent::Figures(stats) = *e {
                records.figures.answer(stats);
            }
        }
        LinkEvent::Relay(e) if matches!(*e, MediaEvent::Stats(_)) => {
            let MediaEvent::Stats(stats) = *e else { return };
            if let Some((mut cdr, _)) = records.pending.remove(&stats.session) {
                if let Some(hep) = records.hep.as_mut() {
                    hep.media_report(&cdr.a_call_id, &stats);
                }
                cdr.media = Some(stats);
                records.write(&cdr);
            }
        }
        LinkEvent::Relay(e) => {
            let e = *e;
            if let MediaEvent::BindFailed { local, error, .. } = &e {
                tracing::warn!(%local, %error, "media socket could not be opened");
            }
            if let MediaEvent::Idle { session } = &e {
                tracing::info!(session = session.0, "no media for rtp_timeout: ending the call");
            }
            endpoint.handle_media_event(now.into_std(), &e);
        }
        LinkEvent::Up => {
            metrics::gauge!("sbc_media_relay_up").set(1.0);
            endpoint.set_media_available(true);
            endpoint.media_replay();
            // A (re)started relay knows no ban either.
            if let Some(m) = &records.media {
                for (addr, reason, _) in records.edge.bans() {
                    m.send(relay_proto::control::Command::Ban { addr, reason: reason.code() });
                }
            }
        }
        LinkEvent::Down => {
            metrics::gauge!("sbc_media_relay_up").set(0.0);
            endpoint.set_media_available(false);
        }
    }
}

fn export_relay_counters(records: &Records) {
    let Some(c) = records.media.as_ref().and_then(MediaLink::counters) else { return };
    metrics::gauge!("sbc_media_sessions").set(c.sessions as f64);
    metrics::gauge!("sbc_media_sockets").set(c.sockets as f64);
    metrics::counter!("sbc_media_packets_received_total").absolute(c.received);
    metrics::counter!("sbc_media_packets_forwarded_total").absolute(c.forwarded);
    metrics::counter!("sbc_media_bytes_forwarded_total").absolute(c.forwarded_bytes);
    metrics::counter!("sbc_media_receive_calls_total").absolute(c.receive_calls);
    metrics::counter!("sbc_media_coalesce_holds_total").absolute(c.coalesce_holds);
    metrics::counter!("sbc_media_send_errors_total").absolute(c.send_errors);
    metrics::counter!("sbc_media_kernel_packets_total").absolute(c.kernel_forwarded);
    metrics::gauge!("sbc_media_kernel_flows").set(c.kernelized as f64);
    metrics::counter!("sbc_media_kernel_errors_total").absolute(c.kernel_errors);
    for (reason, n) in PASS_REASONS.into_iter().zip(c.kernel_passed) {
        metrics::counter!("sbc_media_kernel_passed_total", "reason" => reason).absolute(n);
    }
    for (reason, n) in DROP_REASONS.into_iter().zip(c.kernel_dropped) {
        metrics::counter!("sbc_media_kernel_dropped_total", "reason" => reason).absolute(n);
    }
    // Packets of banned sources dropped in the kernel, by the ban's reason.
    for r in BanReason::ALL {
        let n = c.ban_drops.get(r.code() as usize).copied().unwrap_or(0);
        metrics::counter!("sbc_edge_kernel_dropped_total", "reason" => r.label()).absolute(n);
    }
    metrics::gauge!("sbc_media_xdp_egress_blocked").set(c.xdp_egress_blocked as f64);
    metrics::gauge!("sbc_media_xdp_mode").set(c.xdp_mode as f64);
    for (reason, n) in [
        ("foreign_source", c.dropped_foreign),
        ("no_target", c.dropped_no_target),
        ("unknown_socket", c.dropped_unknown),
        ("malformed_rtcp", c.dropped_malformed_rtcp),
        ("srtp_auth", c.srtp_auth_failures),
        ("srtp_replay", c.srtp_replay_failures),
        ("srtp_protect", c.srtp_protect_failures),
        ("srtp_no_keys", c.srtp_no_keys),
    ] {
        metrics::counter!("sbc_media_packets_dropped_total", "reason" => reason).absolute(n);
    }
    metrics::counter!("sbc_media_rtcp_rewritten_total").absolute(c.rtcp_rewritten);
    // SDES-SRTP terminated by the relay: what it decrypted from SRTP legs and encrypted for them, and what failed
    // authentication or replay checks (also in sbc_media_packets_dropped_total, by reason).
    metrics::counter!("sbc_media_srtp_unprotected_total").absolute(c.srtp_unprotected);
    metrics::counter!("sbc_media_srtp_protected_total").absolute(c.srtp_protected);
    metrics::counter!("sbc_media_srtp_auth_failures_total").absolute(c.srtp_auth_failures);
    metrics::counter!("sbc_media_srtp_replay_failures_total").absolute(c.srtp_replay_failures);
}

/// Sends `bytes` to `peer`; `false` when they were dropped (no socket, no connection and none to dial).
async fn transmit(sockets: &Sockets, peer: Peer, bytes: bytes::Bytes) -> bool {
    match peer.transport {
        Transport::Udp => {
            let Some(sock) = sockets.udp.get(&peer.local).or_else(|| sockets.udp.values().next()) else {
                m::dropped("no_udp_socket");
                return false;
            };
            if let Err(e) = sock.send_to(&bytes, peer.remote).await {
                m::dropped("udp_send_error");
                tracing::debug!(remote = %peer.remote, error = %e, "udp send failed");
                return false;
            }
            true
        }
        Transport::Tcp | Transport::Tls | Transport::Ws | Transport::Wss => {
            match sockets.streams.send(peer.transport, peer.conn, peer.remote, bytes.clone()) {
                Ok(()) => true,
                Err(SendError::NoConnection(..))
                    if sockets.dialer.as_ref().is_some_and(|d| d.can_dial(&(peer.transport, peer.remote))) =>
                {
                    if let Some(d) = &sockets.dialer {
                        d.send(peer, bytes);
                    }
                    true
                }
                Err(e) => {
                    m::dropped("tcp_send_error");
                    tracing::debug!(remote = %peer.remote, error = %e, "stream send failed");
                    false
                }
            }
        }
    }
}

fn observe(o: Observation, trunks: &[String]) {
    let name = |t: sbc_proto::routing::TrunkId| trunks.get(t.0 as usize).cloned().unwrap_or_default();
    match o {
        Observation::CallStarted { trunk } => {
            metrics::counter!(m::CALLS_IN, "trunk" => name(trunk)).increment(1);
            metrics::gauge!(m::CALLS_ACTIVE, "trunk" => name(trunk)).increment(1.0);
        }
        Observation::CallAttempt { trunk } => {
            metrics::counter!(m::CALL_ATTEMPTS, "trunk" => name(trunk)).increment(1);
            metrics::gauge!(m::CALLS_ACTIVE, "trunk" => name(trunk)).increment(1.0);
        }
        Observation::CallAnswered { trunk } => {
            metrics::counter!(m::CALLS_ANSWERED, "trunk" => name(trunk)).increment(1)
        }
        Observation::CallFailed { trunk, status } => {
            metrics::counter!(m::CALLS_FAILED, "trunk" => name(trunk), "status" => status.to_string()).increment(1);
            metrics::gauge!(m::CALLS_ACTIVE, "trunk" => name(trunk)).decrement(1.0);
        }
        Observation::CallEnded { trunk } => metrics::gauge!(m::CALLS_ACTIVE, "trunk" => name(trunk)).decrement(1.0),
        Observation::CallRejected { status } => {
            metrics::counter!(m::CALLS_REJECTED, "status" => status.to_string()).increment(1)
        }
        Observation::UnknownSource => metrics::counter!(m::UNKNOWN_SOURCE).increment(1),
        Observation::AuthFailed { trunk } => metrics::counter!(m::AUTH_CHALLENGES, "trunk" => name(trunk)).increment(1),
        Observation::TrunkState { trunk, up } => {
            metrics::gauge!(m::TRUNK_UP, "trunk" => name(trunk)).set(if up { 1.0 } else { 0.0 });
            if up {
                tracing::info!(trunk = %name(trunk), "trunk up: a gateway answers its probes");
            } else {
                tracing::warn!(trunk = %name(trunk), "trunk down: no gateway answers its probes");
            }
        }
        Observation::TrunkLimit { trunk, which } => {
            metrics::counter!(m::TRUNK_LIMIT, "trunk" => name(trunk), "which" => which).increment(1)
        }
        Observation::TrunkSkipped { trunk, reason } => {
            metrics::counter!(m::TRUNK_SKIPPED, "trunk" => name(trunk), "reason" => reason).increment(1)
        }
        Observation::RequestIn { method } => m::message_in(method, None),
        Observation::ResponseIn { method, status } => m::message_in(method, Some(status)),
        Observation::RequestOut { method } => m::message_out(method, None),
        Observation::ResponseOut { method, status } => m::message_out(method, Some(status)),
        Observation::ParseError { transport, reason } => m::parse_error(transport.as_str(), reason),
        Observation::TransactionStarted { kind } => m::transaction_started(kind),
        Observation::TransactionEnded { kind } => m::transaction_ended(kind),
        Observation::Retransmission { direction } => m::retransmission(direction),
        Observation::Dropped { reason } => m::dropped(reason),
        Observation::MediaError { reason } => {
            metrics::counter!("sbc_media_errors_total", "reason" => reason).increment(1)
        }
        Observation::MediaTimeout => metrics::counter!("sbc_media_timeouts_total").increment(1),
        Observation::CallAdopted { trunk_in, trunk_out } => {
            metrics::counter!(m::HA_CALLS_TAKEN_OVER, "state" => "answered").increment(1);
            metrics::gauge!(m::CALLS_ACTIVE, "trunk" => name(trunk_in)).increment(1.0);
            metrics::gauge!(m::CALLS_ACTIVE, "trunk" => name(trunk_out)).increment(1.0);
        }
        Observation::CallResumed { trunk_in, trunk_out } => {
            metrics::counter!(m::HA_CALLS_TAKEN_OVER, "state" => "setup").increment(1);
            metrics::gauge!(m::CALLS_ACTIVE, "trunk" => name(trunk_in)).increment(1.0);
            metrics::gauge!(m::CALLS_ACTIVE, "trunk" => name(trunk_out)).increment(1.0);
        }
        Observation::OverloadRejected => metrics::counter!("sbc_overload_rejected_total").increment(1),
        Observation::OverloadTooLate => metrics::counter!("sbc_overload_too_late_total").increment(1),
        Observation::DrainRejected { method } => {
            metrics::counter!(crate::drain::REJECTED, "method" => method).increment(1)
        }
        Observation::RegistrationState { trunk, registered } => {
            metrics::gauge!(m::REGISTRATION_STATE, "trunk" => name(trunk)).set(if registered { 1.0 } else { 0.0 });
            if registered {
                tracing::info!(trunk = %name(trunk), "trunk up: registered with its carrier");
            } else {
                tracing::warn!(trunk = %name(trunk), "trunk down: not registered with its carrier");
            }
        }
        Observation::RegistrationResult { trunk, result } => {
            metrics::counter!(m::REGISTRATIONS, "trunk" => name(trunk), "result" => result).increment(1);
            if !matches!(result, "ok" | "challenged" | "unregistered") {
                tracing::warn!(trunk = %name(trunk), result, "REGISTER failed");
            }
        }
        Observation::CanaryResult(r) => crate::canary::observe(&r, &name(r.trunk)),
        Observation::UserRegister { result } => {
            metrics::counter!(m::REGISTRAR_REGISTERS, "result" => result).increment(1);
        }
        Observation::UserBindings { active } => metrics::gauge!(m::REGISTRAR_BINDINGS).set(active as f64),
        other => tracing::debug!(?other, "observation without a metric"),
    }
}
