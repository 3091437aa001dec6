//! The pair at run time: heartbeats on every path and the role decisions ([`sbc_proto::ha::Pair`]), the
//! replication link (the active streams records to the standby over TCP, a full snapshot first on every
//! connection), and the service addresses (added with `ip addr`, announced with gratuitous ARP, removed on
//! demotion and at start).
//!
//! The driver owns the calls; it hears from here through [`HaEvent`]s and answers through [`HaHandle`].
//!
//! With the pair's secret both links are secured: the replication link ([`replication_link`]) by Noise
//! ([`secure_link`]), each heartbeat by a MAC with a replay guard ([`heartbeat_seal`]); the keys come from the
//! secret ([`PairKeys`]).

mod heartbeat_seal;
mod keys;
mod plain_peer;
mod replication_link;
mod secure_link;

pub use keys::PairKeys;

use crate::config::{HaMode, HaSettings, Vip, VipGroup};
use heartbeat_seal::{HeartbeatRefusal, Opener, Sealer};
use plain_peer::{PeerSpeaks, PlainPeer};
use replication_link::{listen_task, send_task, ActiveLink, StandbyLink};
use sbc_proto::ha::{Heartbeat, Pair, PairConfig, PairOutput, Record, Role, RoleChange};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// This build's version as the pair shows it (the `format-next` build, which stands in for the next release in the
/// rolling-upgrade test, says so).
#[cfg(not(feature = "format-next"))]
const SOFTWARE: &str = env!("CARGO_PKG_VERSION");
#[cfg(feature = "format-next")]
const SOFTWARE: &str = concat!(env!("CARGO_PKG_VERSION"), "+format-next");

/// What `/ha` shows.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct HaStatus {
    /// This box.
    pub node: String,
    /// `active` or `standby`.
    pub role: &'static str,
    /// Whether the peer was heard within `dead_after` on any path.
    pub peer_alive: bool,
    /// Whether the peer was heard saying it is active (and not handing over) for every group: after a demotion
    /// (a drain of the active), the handover is done once this holds.
    pub peer_active: bool,
    /// Calls this box owns.
    pub calls: usize,
    /// Calls held for the peer.
    pub foreign_calls: usize,
    /// Takeovers by this box since it started.
    pub takeovers: u64,
    /// Records sent to / received from the peer.
    pub records_sent: u64,
    /// Records received.
    pub records_received: u64,
    /// Why the role last changed.
    pub last_change: &'static str,
    /// Replication lag on the active: records queued for the standby and not yet written to the link.
    pub lag_records: usize,
    /// The record format this build writes (`sbc_proto::ha::FORMAT`) and its software version.
    pub format: u32,
    /// This build's version.
    pub software: &'static str,
    /// What the active said of itself on the last replication link to this box (format and software; format 1:
    /// no hello, a build from before formats were announced).
    pub peer_format: Option<u32>,
    /// The active's software version, from its hello.
    pub peer_software: Option<String>,
    /// Each group of service addresses and this box's role for it (one group, named "", unless active/active).
    pub groups: Vec<GroupStatus>,
    /// Whether the pair's links (replication and heartbeats) are authenticated and encrypted with the pair's
    /// secret; false without `[ha] secret_env` / `secret_file`: then anyone who reaches them can play the peer.
    pub links_secured: bool,
    /// Whether this box has the pair's secret.
    #[serde(skip)]
    has_keys: bool,
    /// `accept_plain_peer`: the peer's heartbeats are taken plain.
    #[serde(skip)]
    plain_heartbeats: bool,
    /// `accept_plain_peer`: the last replication link was plain.
    #[serde(skip)]
    plain_link: bool,
}

/// One group of service addresses in `/ha`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GroupStatus {
    /// `[ha] groups` name ("" for a pair with one group).
    pub name: String,
    /// `active` or `standby` for this group.
    pub role: &'static str,
    /// Calls of this group this box owns (updated every second by the driver).
    pub calls: usize,
    /// The group's service addresses.
    pub vips: Vec<String>,
}

impl HaStatus {
    /// Sets a group's role and the box's (`active` while any group is).
    pub fn set_group_role(&mut self, group: usize, role: Role) {
        if let Some(g) = self.groups.get_mut(group) {
            g.role = role_name(role);
        }
        self.role = if self.groups.iter().any(|g| g.role == "active") { "active" } else { "standby" };
    }

    /// `accept_plain_peer`: the peer's heartbeats are (or are no longer) taken plain.
    fn set_plain_heartbeats(&mut self, plain: bool) {
        self.plain_heartbeats = plain;
        self.links_secured = self.has_keys && !self.plain_heartbeats && !self.plain_link;
    }

    /// `accept_plain_peer`: the replication link just up is plain (or secured).
    fn set_plain_link(&mut self, plain: bool) {
        self.plain_link = plain;
        self.links_secured = self.has_keys && !self.plain_heartbeats && !self.plain_link;
    }

    /// Whether this box is active for `group`.
    pub fn group_active(&self, group: usize) -> bool {
        self.groups.get(group).is_some_and(|g| g.role == "active")
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Active => "active",
        Role::Standby => "standby",
    }
}

/// From the pair to the driver.
#[derive(Debug)]
pub enum HaEvent {
    /// This box's role for a group (an index into `[ha] groups`; 0 for a pair with one) changed.
    Role(usize, Role, RoleChange),
    /// A record from the active.
    Record(Box<Record>),
    /// The active (re)connected: a full snapshot follows; forget the foreign calls held so far.
    ResyncStart,
    /// Our link to the standby is up: send the snapshot now ([`HaHandle::snapshot`]).
    NeedSnapshot,
    /// The service addresses of a group just became active here are configured: what was sent from them before
    /// (and failed, the address not being ours yet) can go again.
    AddressesUp(usize),
}

/// What the link task sends: records in order, a snapshot as one batch.
#[derive(Debug)]
enum Outgoing {
    Snapshot(Vec<Record>),
    Record(Box<Record>),
}

/// The driver's side of the pair.
#[derive(Debug)]
pub struct HaHandle {
    /// Events for the driver.
    pub events: mpsc::UnboundedReceiver<HaEvent>,
    out: mpsc::Sender<Outgoing>,
    /// Shared with `/ha`.
    pub status: Arc<Mutex<HaStatus>>,
    /// Fire drills: `/ha/demote` sends here (a group's name, or `None` for every group this box is active for).
    pub demote: mpsc::Sender<Option<String>>,
    /// Active/active: calls belong to groups ([`sbc_proto::endpoint::Config::groups`]) and move with them.
    pub active_active: bool,
    /// keepalived mode: the notify scripts' `POST /ha/active` and `/ha/standby` send here.
    pub set_role: Option<mpsc::Sender<Role>>,
}

/// Records queued for the link; beyond this the link is dropped and the standby resyncs from a new snapshot.
const OUT_QUEUE: usize = 16_384;

/// Queues records for the standby from outside the driver (the NG listener's calls), on the same link and in the
/// same order as the driver's own.
#[derive(Debug, Clone)]
pub struct Replicator {
    out: mpsc::Sender<Outgoing>,
}

impl Replicator {
    /// As [`HaHandle::replicate`].
    pub fn replicate(&self, record: Record) {
        if self.out.try_send(Outgoing::Record(Box::new(record))).is_err() {
            metrics::counter!("sbc_ha_records_dropped_total").increment(1);
        }
    }
}

impl HaHandle {
    /// Queues a record for the standby (never blocks). Dropped when no standby is connected; on a full queue the
    /// link is restarted, so the standby resyncs.
    pub fn replicate(&self, record: Record) {
        match self.out.try_send(Outgoing::Record(Box::new(record))) {
            Ok(()) => {}
            Err(_) => metrics::counter!("sbc_ha_records_dropped_total").increment(1),
        }
    }

    /// A sender of records for a task other than the driver's.
    pub fn replicator(&self) -> Replicator {
        Replicator { out: self.out.clone() }
    }

    /// Records queued and not yet written to the link.
    pub fn lag(&self) -> usize {
        self.out.max_capacity() - self.out.capacity()
    }

    /// The snapshot for a standby that just connected.
    pub fn snapshot(&self, records: Vec<Record>) {
        if self.out.try_send(Outgoing::Snapshot(records)).is_err() {
            metrics::counter!("sbc_ha_records_dropped_total").increment(1);
        }
    }
}

/// Starts the pair: heartbeats, the role logic, the replication link. Service addresses left over from an
/// earlier run are removed first, so a restarted box never answers on them as a standby.
pub fn start(settings: &HaSettings) -> std::io::Result<HaHandle> {
    if settings.keys.is_none() {
        tracing::error!(
            "ha: NO [ha] secret_env or secret_file: the pair's replication link and heartbeats are neither \
             authenticated nor encrypted (anyone who reaches ha.listen can inject calls and read SRTP keys; anyone \
             who reaches a heartbeat port can play the peer): give both boxes the same secret"
        );
    } else if settings.accept_plain_peer {
        tracing::error!(
            peer = %settings.peer,
            "ha.accept_plain_peer: this box also pairs with a peer that speaks the plain link and plain heartbeats \
             (neither authenticated nor encrypted): remove the setting once both boxes run this build"
        );
    } else {
        tracing::info!(
            "ha: the replication link and heartbeats are authenticated and encrypted with the pair's secret"
        );
    }
    if settings.mode == HaMode::Builtin {
        for vip in settings.vips() {
            remove_vip(vip);
        }
    }
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let (out_tx, out_rx) = mpsc::channel(OUT_QUEUE);
    let (demote_tx, demote_rx) = mpsc::channel(4);
    let status = Arc::new(Mutex::new(HaStatus {
        node: settings.node.clone(),
        role: "standby",
        last_change: "start",
        format: sbc_proto::ha::FORMAT,
        software: SOFTWARE,
        groups: settings
            .groups
            .iter()
            .map(|g| GroupStatus {
                name: g.name.clone(),
                role: "standby",
                calls: 0,
                vips: g.vips.iter().map(|v| v.cidr.clone()).collect(),
            })
            .collect(),
        links_secured: settings.keys.is_some(),
        has_keys: settings.keys.is_some(),
        ..HaStatus::default()
    }));
    let (role_tx, role_rx) = tokio::sync::watch::channel(Role::Standby);
    // How the peer's heartbeats speak, for the link tasks (`accept_plain_peer`).
    let (speaks_tx, speaks_rx) = tokio::sync::watch::channel(PeerSpeaks::Unknown);
    let mut set_role = None;
    if settings.mode == HaMode::Keepalived {
        let (tx, rx) = mpsc::channel(4);
        set_role = Some(tx);
        tokio::spawn(external_task(rx, ev_tx.clone(), status.clone(), role_tx));
    } else {
        let mut sockets = Vec::new();
        for p in &settings.paths {
            let s = std::net::UdpSocket::bind(p.local)?;
            s.set_nonblocking(true)?;
            sockets.push((Arc::new(UdpSocket::from_std(s)?), p.peer));
        }
        let run =
            PairRun { settings: settings.clone(), sockets, events: ev_tx.clone(), status: status.clone(), speaks_tx };
        tokio::spawn(pair_task(run, demote_rx, role_tx));
    }
    let keys = settings.keys.clone();
    let plain = settings.accept_plain_peer.then(|| speaks_rx.clone());
    let standby = StandbyLink { listen: settings.listen, node: settings.node.clone(), keys: keys.clone(), plain };
    tokio::spawn(listen_task(standby, ev_tx.clone(), status.clone()));
    let plain = settings.accept_plain_peer.then_some(speaks_rx);
    let link = ActiveLink { peer: settings.peer, node: settings.node.clone(), keys, plain };
    tokio::spawn(send_task(link, out_rx, ev_tx, role_rx, status.clone()));
    Ok(HaHandle {
        events: ev_rx,
        out: out_tx,
        status,
        demote: demote_tx,
        set_role,
        active_active: settings.active_active(),
    })
}

/// One group's roles at run time.
struct GroupRun {
    group: VipGroup,
    pair: Pair,
    /// While active, the service addresses are renewed well within their lifetime (see `add_vip`).
    renewed: Instant,
    active_since: Instant,
}

/// Datagrams from the heartbeat ports waiting for the pair's task (a few seconds of heartbeats on every path).
const HEARTBEAT_QUEUE: usize = 1024;

/// How long a box holds a group it took for an absent peer before it may give it back, however idle: the
/// driver's per-group call count is fresh by then.
const HAND_BACK_SETTLE: Duration = Duration::from_secs(2);

/// What the pair's task works with.
struct PairRun {
    settings: HaSettings,
    sockets: Vec<(Arc<UdpSocket>, std::net::SocketAddr)>,
    events: mpsc::UnboundedSender<HaEvent>,
    status: Arc<Mutex<HaStatus>>,
    /// How the peer's heartbeats speak, published for the link tasks.
    speaks_tx: tokio::sync::watch::Sender<PeerSpeaks>,
}

async fn pair_task(
    run: PairRun,
    mut demote: mpsc::Receiver<Option<String>>,
    role_tx: tokio::sync::watch::Sender<Role>,
) {
    let PairRun { settings, sockets, events, status, speaks_tx } = run;
    let incarnation = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let active_active = settings.active_active();
    let mut groups: Vec<GroupRun> = settings
        .groups
        .iter()
        .map(|g| GroupRun {
            pair: Pair::new(
                PairConfig {
                    node: settings.node.clone(),
                    priority: g.priority,
                    heartbeat: settings.heartbeat,
                    dead_after: settings.dead_after,
                    startup_wait: Duration::from_secs(1),
                    incarnation,
                    group: g.name.clone(),
                },
                Instant::now().into_std(),
            ),
            group: g.clone(),
            renewed: Instant::now(),
            active_since: Instant::now(),
        })
        .collect();
    // Datagrams go to this task whole: the MAC and replay checks need one view of what was taken. Bounded, so
    // that a flood of forged datagrams costs a count, not memory.
    let (hb_tx, mut hb_rx) = mpsc::channel::<(Vec<u8>, std::net::SocketAddr)>(HEARTBEAT_QUEUE);
    for (sock, _) in &sockets {
        let (sock, tx) = (sock.clone(), hb_tx.clone());
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                match tx.try_send((buf[..n].to_vec(), from)) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        metrics::counter!("sbc_ha_heartbeats_refused_total", "reason" => "overload").increment(1);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
        });
    }
    let mut sealer = settings.keys.as_ref().map(|k| Sealer::new(k.heartbeat()));
    let mut opener = settings.keys.as_ref().map(|k| Opener::new(k.heartbeat()));
    let mut plain_peer = PlainPeer::new(settings.accept_plain_peer);
    let mut refusal_log = LogLimit::default();
    let mut unknown_groups: Vec<String> = Vec::new();
    loop {
        let deadline =
            groups.iter().map(|g| Instant::from_std(g.pair.poll_timeout())).min().unwrap_or_else(Instant::now);
        tokio::select! {
            datagram = hb_rx.recv() => {
                let Some((datagram, from)) = datagram else { return };
                let body = match &mut opener {
                    // A plain heartbeat to a box with a secret: only with accept_plain_peer, and never from a
                    // peer heard sealed.
                    Some(_) if datagram.first() == Some(&b'{') => plain_peer.heard_plain().map(|news| {
                        metrics::counter!("sbc_ha_plain_peer_total", "what" => "heartbeat").increment(1);
                        if news {
                            tracing::error!(%from, "ha.accept_plain_peer: the link to {from} is not secured (plain heartbeats); remove the setting once both boxes run this build");
                            status.lock().unwrap_or_else(std::sync::PoisonError::into_inner).set_plain_heartbeats(true);
                            speaks_tx.send_replace(plain_peer.speaks());
                        }
                        &datagram[..]
                    }),
                    Some(o) => o.open(unix_micros(), &datagram).inspect(|_| {
                        if plain_peer.heard_sealed() {
                            if settings.accept_plain_peer {
                                tracing::warn!(%from, "ha.accept_plain_peer: the peer's heartbeats are sealed with the pair's secret: speaking secured to it from now on");
                            }
                            status.lock().unwrap_or_else(std::sync::PoisonError::into_inner).set_plain_heartbeats(false);
                            speaks_tx.send_replace(plain_peer.speaks());
                        }
                    }),
                    None => heartbeat_seal::open_plain(&datagram),
                };
                let body = match body {
                    Ok(b) => b,
                    Err(why) => {
                        refuse_heartbeat(why, from, &mut refusal_log);
                        continue;
                    }
                };
                // Anything that is not a heartbeat is refused (and never trusted).
                let Ok(hb) = serde_json::from_slice::<Heartbeat>(body) else {
                    refuse_heartbeat(HeartbeatRefusal::NotAHeartbeat, from, &mut refusal_log);
                    continue;
                };
                match groups.iter_mut().find(|g| g.group.name == hb.group) {
                    Some(g) => g.pair.handle_heartbeat(Instant::now().into_std(), hb),
                    None => {
                        // The peer's [ha] groups differ from ours: a config error the operator must hear of once.
                        metrics::counter!("sbc_ha_heartbeats_ignored_total").increment(1);
                        if !unknown_groups.contains(&hb.group) {
                            tracing::error!(peer = %hb.node, group = %hb.group, "ha: the peer has a group of service addresses this box does not (ha.groups must name the same groups on both boxes)");
                            unknown_groups.push(hb.group);
                        }
                    }
                }
            }
            d = demote.recv() => {
                let Some(which) = d else { return };
                let now = Instant::now().into_std();
                for g in groups.iter_mut().filter(|g| which.as_ref().is_none_or(|n| *n == g.group.name)) {
                    g.pair.demote(now);
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                let now = Instant::now().into_std();
                for g in &mut groups {
                    g.pair.handle_timeout(now);
                }
            }
        }
        // Active/active: a group held for a peer that is back goes home once this box has no call left in it
        // (established calls are never moved for it; new ones keep arriving here until then).
        if active_active {
            let now = Instant::now();
            for (i, g) in groups.iter_mut().enumerate() {
                let idle = status.lock().unwrap_or_else(std::sync::PoisonError::into_inner).groups[i].calls == 0;
                if idle && now - g.active_since >= HAND_BACK_SETTLE && g.pair.holds_for_returned_peer(now.into_std()) {
                    tracing::warn!(group = %g.group.name, "ha: the group's home box is back and the group is idle: handing it back");
                    metrics::counter!("sbc_ha_hand_backs_total").increment(1);
                    g.pair.demote(now.into_std());
                }
            }
        }
        for (i, g) in groups.iter_mut().enumerate() {
            while let Some(o) = g.pair.poll_output() {
                match o {
                    PairOutput::Heartbeat(hb) => {
                        let bytes = serde_json::to_vec(&hb).expect("heartbeats serialize");
                        for (sock, peer) in &sockets {
                            // Each path's copy is sealed on its own: copies are then never replays of each other.
                            let datagram = match &mut sealer {
                                Some(s) => s.seal(unix_micros(), &bytes),
                                None => bytes.clone(),
                            };
                            // A path that is down just loses its heartbeat; the others carry on.
                            let _ = sock.try_send_to(&datagram, *peer);
                            if sealer.is_some() && plain_peer.send_plain() {
                                // accept_plain_peer: a plain copy for a plain peer (see plain_peer.rs for why both).
                                let _ = sock.try_send_to(&bytes, *peer);
                            }
                        }
                    }
                    PairOutput::Role(role, why) => {
                        tracing::warn!(node = %settings.node, group = %g.group.name, ?role, why = why.label(), "HA role change");
                        metrics::gauge!("sbc_ha_group_role", "group" => g.group.name.clone())
                            .set(if role == Role::Active { 1.0 } else { 0.0 });
                        if role == Role::Active {
                            metrics::counter!("sbc_ha_takeovers_total").increment(1);
                        }
                        {
                            let mut s = status.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                            // The roles are set by the driver once the calls are adopted or handed over.
                            s.last_change = why.label();
                            if role == Role::Active {
                                s.takeovers += 1;
                            }
                        }
                        g.renewed = Instant::now();
                        g.active_since = Instant::now();
                        let vips = g.group.vips.clone();
                        let up = events.clone();
                        tokio::task::spawn_blocking(move || {
                            if role == Role::Active {
                                // Every address first, then the announcements, which take a second each.
                                for v in &vips {
                                    add_vip(v);
                                }
                                let _ = up.send(HaEvent::AddressesUp(i));
                                for v in &vips {
                                    announce_vip(v);
                                }
                            } else {
                                for v in &vips {
                                    remove_vip(v);
                                }
                            }
                        });
                        let _ = events.send(HaEvent::Role(i, role, why));
                    }
                }
            }
        }
        let any_active = groups.iter().any(|g| g.pair.role() == Role::Active);
        metrics::gauge!("sbc_ha_role").set(if any_active { 1.0 } else { 0.0 });
        role_tx.send_if_modified(|r| {
            let new = if any_active { Role::Active } else { Role::Standby };
            std::mem::replace(r, new) != new
        });
        for g in groups.iter_mut().filter(|g| g.pair.role() == Role::Active) {
            if g.renewed.elapsed() >= VIP_RENEW_EVERY {
                g.renewed = Instant::now();
                let vips = g.group.vips.clone();
                tokio::task::spawn_blocking(move || vips.iter().for_each(renew_vip));
            }
        }
        let now = Instant::now().into_std();
        let alive = groups.iter().any(|g| g.pair.peer_alive(now));
        let peer_active = groups.iter().all(|g| g.pair.peer_active(now));
        {
            let mut s = status.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            s.peer_alive = alive;
            s.peer_active = peer_active;
        }
        metrics::gauge!("sbc_ha_peer_alive").set(if alive { 1.0 } else { 0.0 });
    }
}

/// The wall clock in µs since the epoch, for the heartbeats' replay guard.
fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// How often one kind of refusal is logged: a flood of forged datagrams or reconnects must not flood the log.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Logs each kind of refusal at most once per [`REFUSAL_LOG_EVERY`].
#[derive(Debug, Default)]
struct LogLimit {
    last: HashMap<&'static str, Instant>,
}

impl LogLimit {
    /// Whether `kind` may be logged now (then it is muted for a while).
    fn allow(&mut self, kind: &'static str) -> bool {
        let now = Instant::now();
        match self.last.get(kind) {
            Some(t) if now - *t < REFUSAL_LOG_EVERY => false,
            _ => {
                self.last.insert(kind, now);
                true
            }
        }
    }
}

fn refuse_heartbeat(why: HeartbeatRefusal, from: std::net::SocketAddr, log: &mut LogLimit) {
    metrics::counter!("sbc_ha_heartbeats_refused_total", "reason" => why.label()).increment(1);
    if log.allow(why.label()) {
        tracing::error!(%from, reason = why.label(), "ha: heartbeat refused: {why} (logged once per 10 s)");
    }
}

/// keepalived mode: roles come from its notify scripts; keepalived itself moves the addresses.
async fn external_task(
    mut rx: mpsc::Receiver<Role>,
    events: mpsc::UnboundedSender<HaEvent>,
    status: Arc<Mutex<HaStatus>>,
    role_tx: tokio::sync::watch::Sender<Role>,
) {
    let mut current = Role::Standby;
    while let Some(role) = rx.recv().await {
        if role == current {
            continue;
        }
        current = role;
        tracing::warn!(?role, "HA role change from keepalived");
        metrics::gauge!("sbc_ha_role").set(if role == Role::Active { 1.0 } else { 0.0 });
        {
            let mut s = status.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            s.last_change = RoleChange::External.label();
            if role == Role::Active {
                s.takeovers += 1;
                metrics::counter!("sbc_ha_takeovers_total").increment(1);
            }
        }
        let _ = role_tx.send(role);
        if events.send(HaEvent::Role(0, role, RoleChange::External)).is_err() {
            return;
        }
    }
}

fn run(program: &str, args: &[&str]) -> bool {
    match std::process::Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
    {
        Ok(s) => s.success(),
        Err(e) => {
            tracing::error!(program, error = %e, "cannot run {program}: install iproute2 / iputils-arping");
            false
        }
    }
}

/// A service address lives this long unless the active renews it: a killed or hung active lets go of its
/// addresses by itself, within this time of its last renewal, without anyone removing them.
const VIP_LIFETIME_SECS: &str = "2";
/// How often the active renews its addresses (from the pair's own loop, so a wedged process stops renewing).
const VIP_RENEW_EVERY: Duration = Duration::from_millis(400);

fn add_vip(v: &Vip) {
    // `replace`: the address may never have left (then only its lifetime is renewed).
    run(
        "ip",
        &[
            "addr",
            "replace",
            &v.cidr,
            "dev",
            &v.dev,
            "valid_lft",
            VIP_LIFETIME_SECS,
            "preferred_lft",
            VIP_LIFETIME_SECS,
        ],
    );
    tracing::info!(vip = %v.cidr, dev = %v.dev, lifetime_s = VIP_LIFETIME_SECS, "service address added");
}

fn renew_vip(v: &Vip) {
    if !run(
        "ip",
        &[
            "addr",
            "replace",
            &v.cidr,
            "dev",
            &v.dev,
            "valid_lft",
            VIP_LIFETIME_SECS,
            "preferred_lft",
            VIP_LIFETIME_SECS,
        ],
    ) {
        tracing::warn!(vip = %v.cidr, dev = %v.dev, "service address could not be renewed");
    }
}

/// Gratuitous ARP announcements of a taken-over address, a second apart: enough of them that the last come after
/// a dead active's copy of the address has run out (its lifetime, [`VIP_LIFETIME_SECS`], from its last renewal,
/// plus the kernel's second of rounding). Until then the dead box's kernel still answers ARP for it, and a
/// neighbour that asked in that window may have taken its answer over ours; with only two announcements, the last
/// one came before the window closed and such a neighbour sent to the dead box until its cache entry failed (tens
/// of seconds). keepalived repeats its announcements for the same reason (`vrrp_garp_master_delay`).
const ANNOUNCEMENTS: &str = "4";

/// Gratuitous ARP, so the neighbours send to this box now rather than when their cache times out:
/// [`ANNOUNCEMENTS`] a second apart, in the background (every address is announced at once).
fn announce_vip(v: &Vip) {
    if !v.address.is_ipv4() {
        return;
    }
    let addr = v.address.to_string();
    match std::process::Command::new("arping")
        .args(["-U", "-c", ANNOUNCEMENTS, "-I", &v.dev, &addr])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        Ok(mut child) => {
            std::thread::spawn(move || child.wait());
        }
        Err(e) => {
            tracing::warn!(vip = %v.cidr, error = %e, "gratuitous ARP failed (iputils-arping?); neighbours learn the move late")
        }
    }
}

fn remove_vip(v: &Vip) {
    if run("ip", &["addr", "del", &v.cidr, "dev", &v.dev]) {
        tracing::info!(vip = %v.cidr, dev = %v.dev, "service address removed");
    }
}
