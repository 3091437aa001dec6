//! Replication records for a hot-standby pair (DESIGN.md "Hot standby"): one record per call covers both legs'
//! dialogs, the numbers and times its CDR needs, and its media session. The active core emits a record at the few
//! transitions that matter, each with a higher version; the standby core keeps the newest version of each call as
//! *foreign* and owns them when it takes over. The transitions (Kamailio's dlg_dmq is the model):
//! - while the call is set up ([`CallRecord::setup`] present): each carrier attempt (the first one is sent in the
//!   same step as the caller's INVITE is accepted, so one record covers both), each provisional relayed to the
//!   caller (18x, early media), a PRACK or UPDATE answered on the early dialog;
//! - answered; a refresh or media change by re-INVITE/UPDATE;
//! - ended ([`Record::Ended`]).
//!
//! Times cross as "milliseconds before the record was made", from the core's own `now`: no clock is read, and two
//! boxes' `Instant`s never need to agree (the error is the replication delay). In-dialog CSeq numbers are not
//! replicated at every request: a standby that takes over starts each leg's CSeq [`CSEQ_MARGIN`] above the last
//! replicated one, which RFC 3261 allows (CSeq must increase, not be contiguous).
//!
//! A call still being set up is resumed by the standby where the active left it: both INVITE transactions are
//! re-created from the messages in the record (leg A's in Proceeding with the last provisional, leg B's in Calling
//! or Proceeding with timer B of the original send), then the post-dial timer and failover go on as before. What
//! happened between the last record and the failure (a provisional, a PRACK) is learnt again from the peers'
//! retransmissions.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How far above the last replicated CSeq a standby starts each leg's requests after a takeover.
pub const CSEQ_MARGIN: u32 = 1000;

/// The format of the records this build writes, bumped with every change to them:
/// 1: answered calls (the first pair); 2: bans, the latched peers of a call's media, the [`Hello`] line;
/// 3: registrar bindings ([`Record::Binding`]) and the calls of the NG listener ([`Record::NgCall`],
/// [`Record::NgEnded`]); 4 (only in a build with the `format-next` feature, which stands in for the next release in
/// the rolling-upgrade test): a new optional field in call records.
///
/// Changes from [`MIN_FORMAT`] on are additive: new optional fields (absent ones take their defaults) and new
/// records (which an older reader logs and skips), so two builds of neighbouring formats replicate both ways
/// during a rolling upgrade. An incompatible change raises [`MIN_FORMAT`] to its format: a box that cannot read
/// what its peer writes refuses the link and says so, rather than applying records it misreads.
#[cfg(not(feature = "format-next"))]
pub const FORMAT: u32 = 3;
#[cfg(feature = "format-next")]
pub const FORMAT: u32 = 4;
/// The oldest format a reader must understand to read what this build writes.
pub const MIN_FORMAT: u32 = 1;

/// The first line the active writes on a replication link (format 2 on; a link without one is format 1): who
/// writes, and in which format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`FORMAT`] of the writer.
    pub format: u32,
    /// [`MIN_FORMAT`] of the writer: readers of this format and newer can read its records.
    pub min_format: u32,
    /// The writer's software version, for `/ha` and the log.
    pub software: String,
    /// The writer's node name.
    pub node: String,
}

/// The line that carries a [`Hello`] (`{"hello": {...}}`): an older reader sees a record it does not know and
/// skips it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloLine {
    /// The hello.
    pub hello: Hello,
}

impl Hello {
    /// Whether this build can read what the writer of `self` writes; the error says what to do.
    pub fn readable(&self) -> Result<(), String> {
        if self.min_format > FORMAT {
            return Err(format!(
                "{} ({}) writes replication records of format {} that readers of format {} and newer understand; \
                 this build reads up to format {FORMAT}: upgrade this box before it pairs with that one",
                self.node, self.software, self.format, self.min_format
            ));
        }
        Ok(())
    }
}

/// One leg's dialog as replicated (RFC 3261 §12 state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DialogRecord {
    /// Call-ID of the leg.
    pub call_id: String,
    /// Our tag.
    pub local_tag: String,
    /// The peer's tag.
    pub remote_tag: Option<String>,
    /// Our URI (name-addr, no tag).
    pub local_uri: String,
    /// The peer's URI (name-addr, no tag).
    pub remote_uri: String,
    /// The peer's Contact URI.
    pub remote_target: String,
    /// Route set, in Route order.
    pub route_set: Vec<String>,
    /// Our last CSeq on this leg.
    pub local_cseq: u32,
    /// `udp`, `tcp`, ...
    pub transport: String,
    /// Our address on this leg (a service address, which moves with the active role).
    pub local: SocketAddr,
    /// The peer's address.
    pub remote: SocketAddr,
    /// Our Contact (name-addr).
    pub contact: String,
}

/// One carrier tried, for the CDR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// Trunk name.
    pub trunk: String,
    /// Leg B Call-ID.
    pub call_id: String,
    /// How it ended.
    pub status: u16,
}

/// A carrier left to try, by trunk name (trunk numbers may differ between the boxes' configs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CandidateRecord {
    /// Trunk name.
    pub trunk: String,
    /// Its priority in the route.
    pub priority: u32,
    /// Its weight in the route.
    pub weight: u32,
}

/// The reliable provisional (RFC 3262) last relayed to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReliableRecord {
    /// Its RSeq (the same on both legs: it is relayed unchanged).
    pub rseq: u32,
    /// Whether the caller's PRACK for it was answered 2xx by the carrier. Then a PRACK retransmitted by the caller
    /// after a takeover is answered by the standby itself; otherwise it is relayed to the carrier.
    pub pracked: bool,
}

/// What a call still being set up needs on top of [`CallRecord`] to be resumed by the standby: the state of both
/// INVITE transactions (their requests are [`CallRecord::a_invite`] and [`CallRecord::b_invite`], and their keys
/// follow from those requests' top Via), failover, and the reliable-provisional state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupRecord {
    /// The last provisional response sent to the caller (raw SIP: our 100 Trying, or the last 18x relayed with our
    /// To tag, its SDP anchored). Leg A's INVITE transaction is re-created in Proceeding with it.
    pub a_provisional: String,
    /// Leg B's INVITE went out this long before the record was made (timer B counts from there).
    pub b_sent_ms_ago: u64,
    /// The carrier answered provisionally (leg B's transaction is in Proceeding, and a CANCEL may be sent).
    pub b_provisional: bool,
    /// Leg B's INVITE already carries credentials (a second challenge is not answered).
    pub b_authed: bool,
    /// Carriers tried for this call so far, the current one included (towards `max_tries`).
    pub tries: u32,
    /// The current carrier's priority and weight in the route (its trunk is [`CallRecord::b_trunk`]).
    pub current: CandidateRecord,
    /// The carriers still to try if the current one fails, in order.
    pub remaining: Vec<CandidateRecord>,
    /// When the post-dial timer runs out, in ms from the record (the caller then gets 408).
    pub post_dial_in_ms: u64,
    /// The last reliable provisional relayed to the caller, if any.
    pub reliable: Option<ReliableRecord>,
}

/// A call: answered, or being set up (then [`CallRecord::setup`] is present).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// The call's number (also its media session id).
    pub id: u64,
    /// Higher is newer; a standby ignores a version it already has.
    pub version: u64,
    /// Leg A's INVITE as received (raw SIP): the call's identity on leg A.
    pub a_invite: String,
    /// Leg A's dialog.
    pub a: DialogRecord,
    /// Leg A's trunk, by name (trunk numbers may differ between the boxes' configs).
    pub a_trunk: String,
    /// Leg B's INVITE as sent (raw SIP).
    pub b_invite: String,
    /// Leg B's dialog.
    pub b: DialogRecord,
    /// Leg B's trunk, by name.
    pub b_trunk: String,
    /// The ACK we sent for B's 2xx (raw SIP), resent if B retransmits its 2xx. `None` while set up.
    pub b_ack: Option<String>,
    /// CDR context.
    pub caller: String,
    /// Called number as received.
    pub called_in: String,
    /// Called number after trunk A's rules (what routes matched).
    pub called_routed: String,
    /// Called number as sent.
    pub called_out: String,
    /// The matched route prefix.
    pub route_prefix: String,
    /// Carriers tried, in order.
    pub attempts: Vec<AttemptRecord>,
    /// The INVITE from A, this long before the record was made.
    pub setup_ms_ago: u64,
    /// The first ringing, this long before.
    pub ringing_ms_ago: Option<u64>,
    /// The answer, this long before (0 while set up).
    pub answer_ms_ago: u64,
    /// When the negotiated session interval runs out, in ms from the record (RFC 4028).
    pub session_expires_in_ms: Option<u64>,
    /// The call's media session, when media is anchored (early media included).
    pub media: Option<relay_proto::session::SessionRecord>,
    /// A field only the `format-next` build writes and reads: what a newer release adds to a record (an older
    /// reader ignores it).
    #[cfg(feature = "format-next")]
    #[serde(default)]
    pub next: Option<String>,
    /// Present while the call is being set up (not answered yet): what resuming it needs. Absent on answered calls,
    /// whose records are as they always were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup: Option<SetupRecord>,
}

/// What the active sends to the standby.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Record {
    /// A call, new or changed.
    Call(Box<CallRecord>),
    /// The call ended (its CDR was written by the active).
    Ended {
        /// The call.
        id: u64,
        /// Its last version + 1.
        version: u64,
    },
    /// A source the active's edge guard banned (`policy::edge`), with what was left of the ban when sent. Not a
    /// call: the standby's driver gives it to its own guard, so the ban holds after a takeover.
    Ban {
        /// The source.
        addr: std::net::IpAddr,
        /// `BanReason::label`.
        reason: String,
        /// Milliseconds left.
        remaining_ms: u64,
    },
    /// A registered user's binding made, refreshed or removed (format 3 on; an older standby skips it). Not a
    /// call: the standby's registrar holds it at once, so after a takeover calls to the user still reach it.
    Binding(Box<BindingRecord>),
    /// A call of the NG listener (`[media] ng`), new or changed (format 3). Not an SBC call: the standby's driver
    /// gives it to its own NG core, which adopts it at a takeover.
    NgCall(Box<relay_proto::ng_server::NgCallRecord>),
    /// An NG call was deleted (format 3).
    NgEnded {
        /// Its NG `call-id`.
        call_id: String,
        /// Its last version + 1.
        version: u64,
    },
}

impl From<relay_proto::ng_server::NgRecord> for Record {
    fn from(r: relay_proto::ng_server::NgRecord) -> Self {
        match r {
            relay_proto::ng_server::NgRecord::Call(c) => Self::NgCall(c),
            relay_proto::ng_server::NgRecord::Ended { call_id, version } => Self::NgEnded { call_id, version },
        }
    }
}

/// One binding of the registrar ([`crate::registrar`]) as replicated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingRecord {
    /// The user (the AOR's user part).
    pub user: String,
    /// The Contact URI.
    pub contact: String,
    /// RFC 5626 `+sip.instance`, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// RFC 5626 `reg-id` of an outbound binding (with `instance`, also in a removal): the standby keys such a
    /// binding by instance and reg-id, not by the Contact. Absent in older records (keyed by the Contact).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reg_id: Option<u32>,
    /// `udp`, `tcp`, `tls`, `ws`, `wss`: the transport of the flow the user registered on.
    pub transport: String,
    /// Our address on that flow (a service address, which moves with the active role).
    pub local: SocketAddr,
    /// The user's address on it (after NAT).
    pub remote: SocketAddr,
    /// Milliseconds the binding has left from the record; `None`: the binding was removed.
    pub expires_in_ms: Option<u64>,
    /// Call-ID of the REGISTER that made it.
    pub call_id: String,
    /// CSeq of that REGISTER.
    pub cseq: u32,
}

impl Record {
    /// The call the record is about (0 for a [`Record::Ban`] and the NG records, which are about no SBC call).
    pub fn id(&self) -> u64 {
        match self {
            Self::Call(c) => c.id,
            Self::Ended { id, .. } => *id,
            Self::Ban { .. } | Self::Binding(_) | Self::NgCall(_) | Self::NgEnded { .. } => 0,
        }
    }

    /// Its version (0 for a [`Record::Ban`]).
    pub fn version(&self) -> u64 {
        match self {
            Self::Call(c) => c.version,
            Self::Ended { version, .. } | Self::NgEnded { version, .. } => *version,
            Self::NgCall(c) => c.version,
            Self::Ban { .. } | Self::Binding(_) => 0,
        }
    }

    /// The NG core's record this is, if it is one (the standby hands it to its NG core, not to the calls).
    pub fn into_ng(self) -> Result<relay_proto::ng_server::NgRecord, Self> {
        match self {
            Self::NgCall(c) => Ok(relay_proto::ng_server::NgRecord::Call(c)),
            Self::NgEnded { call_id, version } => Ok(relay_proto::ng_server::NgRecord::Ended { call_id, version }),
            other => Err(other),
        }
    }
}

/// The role of a box in the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Holds the peer's calls as foreign, serves nothing.
    Standby,
    /// Holds the service addresses and the calls.
    Active,
}

/// What a box says about itself every heartbeat, on every path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The sender's node name.
    pub node: String,
    /// Its priority: higher is preferred as active; equal: the lower node name.
    pub priority: u32,
    /// Its role now.
    pub role: Role,
    /// It is giving up the active role on purpose (fire drill): the receiver takes over at once.
    pub demoting: bool,
    /// The sender's incarnation (its start time) and a counter: the same heartbeat goes out on every path, and a
    /// late copy on a slow path must not undo what a newer one said.
    pub incarnation: u64,
    /// Counts up with every heartbeat of one incarnation.
    pub seq: u64,
    /// The group of service addresses this heartbeat is about (active/active: each group has its own roles); empty
    /// for a pair with one group (and in heartbeats of builds before groups).
    #[serde(default)]
    pub group: String,
}

/// Where an active/active box's call numbers start: from its name, so that both boxes of the pair number their
/// calls in ranges of their own ([`crate::b2bua::ID_RANGE`] each) without talking. Two names share a range with a
/// chance of 1 in 32,767; the link checks the peer's (`call_ranges_collide`) and the operator renames one box.
pub fn call_id_base(node: &str) -> u64 {
    // FNV-1a: stable across builds and platforms (the two boxes may run different releases).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % 0x7fff + 1) * crate::b2bua::ID_RANGE
}

/// Whether two boxes' call numbers would collide in an active/active pair.
pub fn call_ranges_collide(a: &str, b: &str) -> bool {
    a != b && call_id_base(a) == call_id_base(b)
}

/// Settings of the pair's failure detection.
#[derive(Debug, Clone)]
pub struct PairConfig {
    /// This box's name.
    pub node: String,
    /// This box's priority.
    pub priority: u32,
    /// How often heartbeats go out (default 100 ms).
    pub heartbeat: Duration,
    /// The peer is dead when no path has carried its heartbeat this long (default 300 ms).
    pub dead_after: Duration,
    /// At start, how long to listen for a peer before serving alone (default 1 s).
    pub startup_wait: Duration,
    /// Distinguishes this run from earlier ones of the same box (the driver passes its start time in ms).
    pub incarnation: u64,
    /// The group of service addresses these roles are for (empty: the pair's one group).
    pub group: String,
}

/// Why the role changed, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleChange {
    /// No peer answered at start.
    Alone,
    /// The peer went silent on every path for `dead_after`.
    PeerDead,
    /// The peer handed over (fire drill).
    PeerDemoted,
    /// Both were standby: this box is preferred.
    Preferred,
    /// Both were active: the peer is preferred, this box yields and resyncs from it.
    SplitBrain,
    /// Demoted on request (fire drill).
    Demoted,
    /// Told by an outside manager (keepalived's notify scripts).
    External,
}

impl RoleChange {
    /// A metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Alone => "alone",
            Self::PeerDead => "peer_dead",
            Self::PeerDemoted => "peer_demoted",
            Self::Preferred => "preferred",
            Self::SplitBrain => "split_brain",
            Self::Demoted => "demoted",
            Self::External => "external",
        }
    }
}

/// What the pair logic asks of its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PairOutput {
    /// Send this heartbeat on every path.
    Heartbeat(Heartbeat),
    /// Become this role (take over, or yield).
    Role(Role, RoleChange),
}

/// Failure detection and role decisions of one box (sans-IO: heartbeats and time in, outputs out).
///
/// Rules: both start standby. A box that hears nothing for `startup_wait` serves alone. Two standbys: the
/// preferred one (priority, then name) becomes active. A standby whose active peer is silent on every path for
/// `dead_after` takes over; a peer's `demoting` heartbeat hands over at once. Two actives (a healed partition): the
/// one not preferred yields. No preemption: a preferred box that returns while the peer is active stays standby.
#[derive(Debug)]
pub struct Pair {
    config: PairConfig,
    role: Role,
    started: Instant,
    next_heartbeat: Instant,
    /// The peer's last heartbeat: when, and what it said.
    peer: Option<(Instant, Heartbeat)>,
    /// After a demotion: stay standby until this time unless the peer is gone for good.
    hold_standby_until: Option<Instant>,
    demoting_until: Option<Instant>,
    seq: u64,
    /// The newest (incarnation, seq) heard from the peer.
    peer_seq: (u64, u64),
    /// Active because the peer was absent (at start or dead), not because it was preferred or handed over.
    holding_for_absent_peer: bool,
    /// The latest `now` a decision was made at ([`Pair::poll_timeout`] never asks for a time before it).
    decided_at: Instant,
    out: std::collections::VecDeque<PairOutput>,
}

impl Pair {
    /// A box starting at `now`, standby.
    pub fn new(config: PairConfig, now: Instant) -> Self {
        Self {
            config,
            role: Role::Standby,
            started: now,
            next_heartbeat: now,
            peer: None,
            hold_standby_until: None,
            demoting_until: None,
            seq: 0,
            peer_seq: (0, 0),
            holding_for_absent_peer: false,
            decided_at: now,
            out: std::collections::VecDeque::new(),
        }
    }

    /// The role now.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether the peer was heard within `dead_after`.
    pub fn peer_alive(&self, now: Instant) -> bool {
        self.peer.as_ref().is_some_and(|(at, _)| now.saturating_duration_since(*at) < self.config.dead_after)
    }

    /// Whether the peer was heard within `dead_after` saying it is active for this group (and not giving it up):
    /// after [`Pair::demote`], the handover is done once this holds.
    pub fn peer_active(&self, now: Instant) -> bool {
        self.peer_alive(now) && self.peer.as_ref().is_some_and(|(_, hb)| hb.role == Role::Active && !hb.demoting)
    }

    fn preferred_over(&self, hb: &Heartbeat) -> bool {
        (self.config.priority, std::cmp::Reverse(self.config.node.as_str()))
            > (hb.priority, std::cmp::Reverse(hb.node.as_str()))
    }

    fn become_role(&mut self, role: Role, why: RoleChange) {
        if self.role != role {
            self.role = role;
            self.holding_for_absent_peer = matches!(why, RoleChange::Alone | RoleChange::PeerDead);
            self.out.push_back(PairOutput::Role(role, why));
        }
    }

    /// A heartbeat from the peer arrived (on any path) at `now`.
    pub fn handle_heartbeat(&mut self, now: Instant, hb: Heartbeat) {
        if hb.node == self.config.node || (hb.incarnation, hb.seq) <= self.peer_seq {
            return;
        }
        self.peer_seq = (hb.incarnation, hb.seq);
        let (peer_role, demoting) = (hb.role, hb.demoting);
        let preferred = self.preferred_over(&hb);
        self.peer = Some((now, hb));
        match (self.role, peer_role) {
            (Role::Standby, Role::Active) if demoting => {
                self.hold_standby_until = None;
                self.become_role(Role::Active, RoleChange::PeerDemoted);
            }
            // A demoting peer still says active until this box has the calls: that is a handover, not two actives.
            (Role::Active, Role::Active) if !preferred && !demoting => {
                self.become_role(Role::Standby, RoleChange::SplitBrain)
            }
            _ => {}
        }
        self.decide(now);
    }

    /// Whether this box should give the group back to its home box (active/active), the group being idle: it
    /// became active only because the peer was absent (at start, or dead), and the peer is back, standby, and
    /// preferred for this group. Never after a handover the peer asked for (a fire drill stays where it was put).
    pub fn holds_for_returned_peer(&self, now: Instant) -> bool {
        self.role == Role::Active
            && self.holding_for_absent_peer
            && self.peer_alive(now)
            && self.peer.as_ref().is_some_and(|(_, hb)| hb.role == Role::Standby && !self.preferred_over(hb))
    }

    /// Gives up the active role on purpose (fire drill): the peer takes over; this box stays standby.
    pub fn demote(&mut self, now: Instant) {
        if self.role != Role::Active {
            return;
        }
        self.hold_standby_until = Some(now + self.config.startup_wait.max(self.config.dead_after * 4));
        self.demoting_until = Some(now + self.config.dead_after * 2);
        self.become_role(Role::Standby, RoleChange::Demoted);
        self.heartbeat(now, true);
    }

    fn heartbeat(&mut self, now: Instant, demoting: bool) {
        self.out.push_back(PairOutput::Heartbeat(Heartbeat {
            node: self.config.node.clone(),
            priority: self.config.priority,
            // A demoting box still says where the calls are until the peer has them.
            role: if demoting { Role::Active } else { self.role },
            demoting,
            incarnation: self.config.incarnation,
            seq: self.seq,
            group: self.config.group.clone(),
        }));
        self.seq += 1;
        self.next_heartbeat = now + self.config.heartbeat;
    }

    fn decide(&mut self, now: Instant) {
        self.decided_at = self.decided_at.max(now);
        if self.role == Role::Active {
            return;
        }
        if self.hold_standby_until.is_some_and(|t| now < t) {
            return;
        }
        match &self.peer {
            None if now.saturating_duration_since(self.started) >= self.config.startup_wait => {
                self.become_role(Role::Active, RoleChange::Alone)
            }
            None => {}
            Some((at, _)) if now.saturating_duration_since(*at) >= self.config.dead_after => {
                self.become_role(Role::Active, RoleChange::PeerDead)
            }
            Some((_, hb)) if hb.role == Role::Standby && self.preferred_over(&hb.clone()) => {
                self.become_role(Role::Active, RoleChange::Preferred)
            }
            Some(_) => {}
        }
    }

    /// Sends heartbeats and checks the peer; call at [`Pair::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.next_heartbeat {
            let demoting = self.demoting_until.is_some_and(|t| now < t);
            self.heartbeat(now, demoting);
        }
        self.decide(now);
    }

    /// When to call [`Pair::handle_timeout`] next: the next heartbeat, or sooner the moment a standby's decision
    /// falls due (its peer dead, its startup wait over). Never a time already decided at: the driver sleeps until
    /// this instant, and a deadline in the past would wake it at once, again and again, for as long as the peer
    /// stayed away (a spinning core on the box that just took over the calls). A deadline that passed unanswered
    /// (held standby after a demotion) is looked at again at every heartbeat, which [`Pair::handle_timeout`] runs.
    pub fn poll_timeout(&self) -> Instant {
        let mut t = self.next_heartbeat;
        if self.role == Role::Standby {
            let due = match &self.peer {
                Some((at, _)) => *at + self.config.dead_after,
                None => self.started + self.config.startup_wait,
            };
            if due > self.decided_at {
                t = t.min(due);
            }
        }
        t
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<PairOutput> {
        self.out.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(node: &str, priority: u32) -> PairConfig {
        PairConfig {
            node: node.into(),
            priority,
            heartbeat: Duration::from_millis(100),
            dead_after: Duration::from_millis(300),
            startup_wait: Duration::from_secs(1),
            incarnation: 1,
            group: String::new(),
        }
    }

    /// Runs two boxes in simulated time, delivering heartbeats while `linked(t)` says the paths are up.
    fn run(a: &mut Pair, b: &mut Pair, from: Instant, ms: u64, linked: impl Fn(u64) -> bool) -> Vec<(u64, String)> {
        let mut log = Vec::new();
        for t in 0..ms {
            let now = from + Duration::from_millis(t);
            a.handle_timeout(now);
            b.handle_timeout(now);
            for dir in 0..2 {
                let (src, dst, name) = if dir == 0 { (&mut *a, &mut *b, "a") } else { (&mut *b, &mut *a, "b") };
                while let Some(o) = src.poll_output() {
                    match o {
                        PairOutput::Heartbeat(hb) if linked(t) => dst.handle_heartbeat(now, hb),
                        PairOutput::Heartbeat(_) => {}
                        PairOutput::Role(r, why) => log.push((t, format!("{name} {r:?} {}", why.label()))),
                    }
                }
            }
        }
        log
    }

    #[test]
    fn preferred_box_becomes_active_and_the_other_takes_over_within_dead_after() {
        let t0 = Instant::now();
        let (mut a, mut b) = (Pair::new(cfg("sbc1", 200), t0), Pair::new(cfg("sbc2", 100), t0));
        let log = run(&mut a, &mut b, t0, 500, |_| true);
        assert_eq!(log.len(), 1, "{log:?}");
        assert!(log[0].0 <= 1 && log[0].1 == "a Active preferred", "no waiting when both are up: {log:?}");
        assert_eq!((a.role(), b.role()), (Role::Active, Role::Standby));
        // a dies at 500 ms: b takes over after 300 ms of silence on every path.
        let t1 = t0 + Duration::from_millis(500);
        let mut dead = Pair::new(cfg("dead", 0), t1);
        let mut log = Vec::new();
        for t in 0..1000u64 {
            let now = t1 + Duration::from_millis(t);
            b.handle_timeout(now);
            dead.poll_output();
            while let Some(o) = b.poll_output() {
                if let PairOutput::Role(r, why) = o {
                    log.push((t, r, why));
                }
            }
        }
        assert_eq!(log.len(), 1);
        assert_eq!((log[0].1, log[0].2), (Role::Active, RoleChange::PeerDead));
        assert!(log[0].0 <= 300, "taken over {} ms after the last heartbeat", log[0].0);
    }

    /// The driver sleeps until [`Pair::poll_timeout`]: a deadline already past wakes it at once, again and again.
    /// A box alone (its peer never heard) or whose peer died must sleep until its next heartbeat, not spin a core
    /// for as long as the peer stays away (it did: the startup wait's or the dead peer's deadline, long passed).
    #[test]
    fn a_box_whose_peer_is_absent_or_dead_sleeps_until_its_next_heartbeat() {
        for peer_heard in [false, true] {
            let t0 = Instant::now();
            let mut b = Pair::new(cfg("sbc2", 100), t0);
            let mut dead = Pair::new(cfg("sbc1", 200), t0);
            let mut now = t0;
            let mut wakeups = 0u32;
            while now < t0 + Duration::from_secs(5) {
                if peer_heard && now < t0 + Duration::from_millis(500) {
                    dead.handle_timeout(now);
                    while let Some(o) = dead.poll_output() {
                        if let PairOutput::Heartbeat(hb) = o {
                            b.handle_heartbeat(now, hb);
                        }
                    }
                }
                b.handle_timeout(now);
                while b.poll_output().is_some() {}
                let next = b.poll_timeout();
                assert!(
                    next > now,
                    "peer heard {peer_heard}: at {:?} ({:?}) asked to be woken at {:?}",
                    now - t0,
                    b.role(),
                    next.saturating_duration_since(t0)
                );
                now = if peer_heard && now < t0 + Duration::from_millis(500) {
                    next.min(now + Duration::from_millis(10))
                } else {
                    next
                };
                wakeups += 1;
            }
            assert_eq!(b.role(), Role::Active, "peer heard {peer_heard}");
            assert!(wakeups <= 110, "peer heard {peer_heard}: about one wake-up per heartbeat, got {wakeups}");
        }
    }

    #[test]
    fn a_returning_preferred_box_does_not_preempt() {
        let t0 = Instant::now();
        let mut b = Pair::new(cfg("sbc2", 100), t0);
        for t in 0..1100 {
            b.handle_timeout(t0 + Duration::from_millis(t));
            while b.poll_output().is_some() {}
        }
        assert_eq!(b.role(), Role::Active, "alone after the startup wait");
        let t1 = t0 + Duration::from_millis(1100);
        let mut a = Pair::new(cfg("sbc1", 200), t1);
        let log = run(&mut a, &mut b, t1, 2000, |_| true);
        assert!(log.is_empty(), "{log:?}");
        assert_eq!((a.role(), b.role()), (Role::Standby, Role::Active));
    }

    #[test]
    fn a_cut_replication_link_is_not_a_dead_peer_but_a_healed_split_brain_converges() {
        let t0 = Instant::now();
        let (mut a, mut b) = (Pair::new(cfg("sbc1", 200), t0), Pair::new(cfg("sbc2", 100), t0));
        run(&mut a, &mut b, t0, 200, |_| true);
        // Every path down for 1 s (a real partition): both serve, then the paths heal and b yields.
        let t1 = t0 + Duration::from_millis(200);
        let log = run(&mut a, &mut b, t1, 2000, |t| !(100..1100).contains(&t));
        assert!(log.iter().any(|(_, l)| l == "b Active peer_dead"), "{log:?}");
        assert!(log.iter().any(|(_, l)| l == "b Standby split_brain"), "{log:?}");
        assert_eq!((a.role(), b.role()), (Role::Active, Role::Standby));
    }

    #[test]
    fn fire_drill_demotion_hands_over_at_once() {
        let t0 = Instant::now();
        let (mut a, mut b) = (Pair::new(cfg("sbc1", 200), t0), Pair::new(cfg("sbc2", 100), t0));
        run(&mut a, &mut b, t0, 300, |_| true);
        let t1 = t0 + Duration::from_millis(300);
        a.demote(t1);
        let log = run(&mut a, &mut b, t1, 3000, |_| true);
        assert_eq!(log[0].1, "a Standby demoted", "{log:?}");
        assert_eq!(log[1].1, "b Active peer_demoted", "{log:?}");
        assert!(log[1].0 <= 1, "{log:?}");
        assert_eq!((a.role(), b.role()), (Role::Standby, Role::Active), "no flapping back: {log:?}");
        assert!(!b.holds_for_returned_peer(t1 + Duration::from_millis(3000)), "a handover stays where it was put");
    }

    #[test]
    fn a_demoted_box_sees_its_peer_active_once_the_peer_has_taken_over() {
        let t0 = Instant::now();
        let (mut a, mut b) = (Pair::new(cfg("sbc1", 200), t0), Pair::new(cfg("sbc2", 100), t0));
        run(&mut a, &mut b, t0, 300, |_| true);
        let t1 = t0 + Duration::from_millis(300);
        assert!(!a.peer_active(t1) && b.peer_active(t1), "a active, b standby");
        a.demote(t1);
        assert!(!a.peer_active(t1), "the peer has not said it took over yet");
        run(&mut a, &mut b, t1, 300, |_| true);
        let t2 = t1 + Duration::from_millis(300);
        assert!(a.peer_active(t2), "b said it is active");
        assert!(!a.peer_active(t2 + Duration::from_millis(400)), "and is not once silent for dead_after");
    }

    #[test]
    fn a_box_that_holds_a_group_for_a_dead_peer_knows_when_its_home_box_is_back() {
        let t0 = Instant::now();
        let (mut a, mut b) = (Pair::new(cfg("sbc1", 200), t0), Pair::new(cfg("sbc2", 100), t0));
        run(&mut a, &mut b, t0, 300, |_| true);
        assert!(!a.holds_for_returned_peer(t0 + Duration::from_millis(300)), "the home box holds nothing for anyone");
        // a dies; b takes the group; a comes back (a new run of it) and stays standby: no preemption.
        let t1 = t0 + Duration::from_millis(300);
        let mut gone = Pair::new(cfg("gone", 0), t1);
        run(&mut gone, &mut b, t1, 1000, |_| false);
        assert_eq!(b.role(), Role::Active);
        let t2 = t1 + Duration::from_millis(1000);
        let mut a = Pair::new(PairConfig { incarnation: 2, ..cfg("sbc1", 200) }, t2);
        run(&mut a, &mut b, t2, 500, |_| true);
        assert_eq!((a.role(), b.role()), (Role::Standby, Role::Active));
        assert!(b.holds_for_returned_peer(t2 + Duration::from_millis(500)), "the group's home box is back");
        // Given back (when the group is idle) by a handover.
        b.demote(t2 + Duration::from_millis(500));
        run(&mut a, &mut b, t2 + Duration::from_millis(500), 3000, |_| true);
        assert_eq!((a.role(), b.role()), (Role::Active, Role::Standby));
        assert!(!a.holds_for_returned_peer(t2 + Duration::from_millis(3500)));
    }

    #[test]
    fn the_two_boxes_number_their_calls_apart() {
        let (one, two) = (call_id_base("sbc1"), call_id_base("sbc2"));
        assert_ne!(one, two);
        for b in [one, two] {
            assert!(
                b >= crate::b2bua::ID_RANGE
                    && b % crate::b2bua::ID_RANGE == 0
                    && b.checked_add(crate::b2bua::ID_RANGE).is_some()
            );
        }
        assert!(!call_ranges_collide("sbc1", "sbc2"));
    }
}

#[cfg(test)]
mod format_tests {
    use super::*;

    #[test]
    fn a_reader_refuses_only_what_it_cannot_read() {
        let hello = |format, min_format| Hello { format, min_format, software: "x".into(), node: "sbc1".into() };
        assert!(hello(FORMAT, MIN_FORMAT).readable().is_ok());
        assert!(hello(FORMAT + 1, MIN_FORMAT).readable().is_ok(), "a newer writer with additive changes");
        let e = hello(FORMAT + 5, FORMAT + 1).readable().expect_err("an incompatible newer writer");
        assert!(e.contains("upgrade this box"), "{e}");
    }

    #[test]
    fn an_older_reader_skips_the_hello_and_new_records() {
        // Format 1 readers know only calls and ends: the hello line and a ban are not records to them.
        #[derive(Debug, Deserialize)]
        #[serde(tag = "record", rename_all = "snake_case")]
        #[allow(dead_code)]
        enum Format1 {
            Call(serde_json::Value),
            Ended { id: u64, version: u64 },
        }
        let hello = serde_json::to_string(&HelloLine {
            hello: Hello { format: FORMAT, min_format: MIN_FORMAT, software: "y".into(), node: "sbc2".into() },
        })
        .unwrap();
        assert!(serde_json::from_str::<Format1>(&hello).is_err());
        let ban = serde_json::to_string(&Record::Ban {
            addr: "198.18.2.66".parse().unwrap(),
            reason: "rate".into(),
            remaining_ms: 5,
        })
        .unwrap();
        assert!(serde_json::from_str::<Format1>(&ban).is_err());
        let ng = serde_json::to_string(&Record::NgEnded { call_id: "c1".into(), version: 2 }).unwrap();
        assert!(serde_json::from_str::<Format1>(&ng).is_err(), "an NG record is none of format 1's: {ng}");
        let ended = serde_json::to_string(&Record::Ended { id: 3, version: 4 }).unwrap();
        assert!(serde_json::from_str::<Format1>(&ended).is_ok(), "what it knows still reads");
    }
}

#[cfg(test)]
mod stale_tests {
    use super::*;

    #[test]
    fn a_late_copy_of_an_old_heartbeat_does_not_undo_a_handover() {
        let t0 = Instant::now();
        let cfg = |node: &str, priority| PairConfig {
            node: node.into(),
            priority,
            heartbeat: Duration::from_millis(100),
            dead_after: Duration::from_millis(300),
            startup_wait: Duration::from_secs(1),
            incarnation: 7,
            group: String::new(),
        };
        let mut b = Pair::new(cfg("sbc2", 100), t0);
        let hb = |seq, role, demoting| Heartbeat {
            node: "sbc1".into(),
            priority: 200,
            role,
            demoting,
            incarnation: 7,
            seq,
            group: String::new(),
        };
        b.handle_heartbeat(t0, hb(1, Role::Active, false));
        b.handle_heartbeat(t0, hb(2, Role::Active, true));
        assert_eq!(b.role(), Role::Active, "handed over");
        // The copy of heartbeat 1 that took the slow path arrives now: it is stale and changes nothing.
        b.handle_heartbeat(t0, hb(1, Role::Active, false));
        assert_eq!(b.role(), Role::Active);
        // A restarted sbc1 (a later incarnation) counts from 0 again and is heard.
        b.handle_heartbeat(t0, Heartbeat { incarnation: 8, ..hb(0, Role::Standby, false) });
        assert!(b.peer_alive(t0));
    }
}
