//! The B2BUA: a call is leg A (from the inbound trunk) plus leg B (the carrier now tried). This is the only
//! module that sees both legs; each leg is its own [`Dialog`] with its own identifiers, and only bodies and a
//! trunk's allowlisted headers cross between them.
//!
//! The [`Endpoint`](crate::endpoint::Endpoint) owns the transactions and hands this module what concerns calls:
//! new INVITEs, CANCELs, in-dialog requests, client-transaction responses and timeouts, and ACKs and 2xx
//! retransmissions that no transaction claims. Everything the calls want done comes back through [`Ctx`].
//!
//! One call, in order: [`Calls::new_invite`] identifies trunk A, checks its limits, routes the called number and
//! starts leg B on the first carrier; [`Calls::on_response`] relays 18x, connects on 2xx (ACK to B, 200 to A,
//! retransmitted until A's ACK), and fails over on the trunk's failover codes, on timeouts and transport errors;
//! BYE from either side ends both legs; a CDR comes out when the call ends.

mod admin;
mod build;
mod correlate;
mod dialogs;
mod flows;
mod kept;
mod limits;
mod replicate;
mod resume;
mod users;

pub use admin::{CallSnapshot, CallState, HangupError, LegSnapshot, RouteLookup, UnknownTrunk};
pub(crate) use build::{cancel_for, transport_param};
pub use build::{pick_local, BUILT_HEADERS};
pub use flows::CONNECTION_CLOSED;
pub use limits::TrunkCounters;

use crate::cdr::{Cdr, CdrAttempt};
use crate::dialog::Dialog;
use crate::endpoint::{IdGenerator, Observation, Output};
use crate::msg::{HeaderName, Method, Request, Response};
use crate::policy::digest::{
    Algorithm, Credentials as DigestCredentials, NonceCheck, NonceConfig, NonceIssuer, Secret,
};
use crate::policy::identity::{self, Presented};
use crate::routing::Credentials;
use crate::routing::{
    targets, Attempts, FailoverLimits, Gateway, GiveUpReason, Next, Outcome, Plan, SkipReason, Target, TrunkId,
    UnknownSource,
};
use crate::transport::{Peer, Transport};
use crate::txn::{TransactionKey, Transactions};
use bytes::Bytes;
use kept::Kept;
use relay_proto::control::{Event as MediaEvent, Leg as MediaLeg, SessionId};
use relay_proto::negotiate::{Exchange, SdpKind};
use relay_proto::sdes::SrtpMode;
use relay_proto::session::{MediaError, Sessions};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the B2BUA needs from the endpoint for one input.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// The current time.
    pub now: Instant,
    /// The transaction layer.
    pub txns: &'a mut Transactions,
    /// Tags, branches and Call-IDs.
    pub ids: &'a mut IdGenerator,
    /// Where outputs go.
    pub out: &'a mut VecDeque<Output>,
    /// Our Server header.
    pub server: &'a str,
    /// Timer T1, for retransmitting our 2xx (§13.3.1.4).
    pub t1: Duration,
    /// Timer T2.
    pub t2: Duration,
    /// The registrar's bindings, when users are configured: where a call routed to the users' trunk goes.
    pub users: Option<&'a crate::registrar::Registrar>,
}

impl Ctx<'_> {
    fn observe(&mut self, o: Observation) {
        self.out.push_back(Output::Observe(o));
    }

    /// Credentials in `req` from `source` were present and wrong: an offence towards a ban.
    fn auth_failed(&mut self, source: std::net::SocketAddr, req: &Request) {
        if let Some(creds) = proxy_credentials(req) {
            let offence = crate::policy::Offence::AuthFailed { username: Some(creds.username) };
            self.out.push_back(Output::Offence { source, offence });
        }
    }

    fn respond(&mut self, key: &TransactionKey, resp: Response) {
        if self.txns.respond(self.now, key, resp).is_err() {
            self.observe(Observation::Dropped { reason: "response_without_transaction" });
        }
    }
}

/// A call, by a number of our own (never seen on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct CallRef(u64);

/// Which leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Leg {
    A,
    B,
}

impl Leg {
    fn other(self) -> Self {
        match self {
            Self::A => Self::B,
            Self::B => Self::A,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::A => "a",
            Self::B => "b",
        }
    }
}

/// What a client transaction of ours was for.
#[derive(Debug, Clone)]
enum Purpose {
    /// Leg B's INVITE to the current carrier.
    InviteB,
    /// A CANCEL of leg B's INVITE.
    Cancel,
    /// A BYE we sent on a leg while ending the call.
    Bye,
    /// A request relayed from the other leg: its response goes back on server transaction `back`.
    Relay { back: TransactionKey, request: Box<Request> },
    /// An in-dialog OPTIONS asking whether the peer of this leg still has the call.
    Keepalive(Leg),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Leg B is being set up (possibly on a second or third carrier).
    Routing,
    /// A answered 2xx, both legs confirmed.
    Confirmed,
    /// Ending: BYEs are out, waiting for their answers.
    Ending,
}

#[derive(Debug)]
struct LegB {
    dialog: Dialog,
    trunk: TrunkId,
    /// Which of the trunk's gateways this attempt uses.
    gateway: usize,
    /// Parsed while the call is set up, the wire form once answered ([`kept`]).
    invite: Kept,
    invite_key: TransactionKey,
    /// When `invite` was sent (timer B of its transaction counts from there, also on a standby that takes over).
    sent: Instant,
    provisional: bool,
    cancel_wanted: bool,
    /// Whether the CANCEL went out: one per INVITE, however many provisionals follow it.
    cancel_sent: bool,
    /// Whether the INVITE was already resent with credentials (one try per challenge, no loops).
    authed: bool,
    /// The ACK we sent for B's 2xx, resent if the 2xx is retransmitted; `None` until B answers.
    ack: Option<AckB>,
}

/// The ACK to leg B's 2xx, as a call keeps it (the memory of [`kept`]).
#[derive(Debug)]
enum AckB {
    /// As sent: on a box that replicates its calls, whose records carry it.
    Wire(Bytes),
    /// Built again from the dialog when B repeats its 2xx, with the CSeq number of the INVITE it answers: the
    /// same request, as its branch is made from the INVITE's ([`ack_branch`]).
    Rebuilt(u32),
}

impl LegB {
    /// The ACK to B's 2xx, if B answered.
    fn ack_request(&self) -> Option<Request> {
        match self.ack.as_ref()? {
            AckB::Wire(w) => match crate::msg::parse_datagram(w.clone()) {
                Ok(crate::msg::Message::Request(ack)) => Some(ack),
                _ => None,
            },
            AckB::Rebuilt(cseq) => Some(self.dialog.ack(*cseq, &ack_branch(&self.invite_key))),
        }
    }
}

/// The branch of the ACK to the 2xx of our INVITE `invite`: its branch with `-ack` (unique as the INVITE's is,
/// and the same every time, so an ACK built again is the ACK sent).
fn ack_branch(invite: &TransactionKey) -> String {
    let branch = invite.branch().unwrap_or_default();
    format!("{}-ack", String::from_utf8_lossy(branch))
}

/// The reliable provisional (RFC 3262) last relayed to A.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reliable {
    rseq: u32,
    /// B answered A's PRACK for it with a 2xx.
    pracked: bool,
}

/// Our 2xx on leg A, retransmitted until A's ACK (§13.3.1.4).
#[derive(Debug)]
struct Pending2xx {
    resp: Response,
    interval: Duration,
    next: Instant,
    give_up: Instant,
}

#[derive(Debug)]
struct Call {
    /// The plan this call was set up under: its trunks' settings (gateways, failover codes, SRTP, number rules,
    /// pass-through headers) and the call timers stay those of its start when a reload swaps the plan, and a trunk
    /// removed by a reload lives on here until the call ends. Trunk ids stay valid across plans (the loader keeps
    /// each trunk's id by name and leaves a removed one's slot to a tombstone), so the per-trunk counters, probes
    /// and metric labels indexed by id need no translation.
    plan: Arc<Plan>,
    state: State,
    a: Dialog,
    a_trunk: TrunkId,
    /// Parsed while the call is set up, the wire form once answered ([`kept`]).
    a_invite: Kept,
    a_invite_key: TransactionKey,
    b: Option<LegB>,
    attempts: Attempts,
    called_in: String,
    /// The called number after trunk A's number rules: what routes match.
    called_routed: String,
    called_out: String,
    caller: String,
    /// The calling identity as leg A presented it, after trunk A's number rules.
    presented: Presented,
    route_prefix: String,
    cdr_attempts: Vec<CdrAttempt>,
    setup: Instant,
    ringing: Option<Instant>,
    answer: Option<Instant>,
    /// Boxed, as `a_provisional`: each lives only while the call is set up (until A's ACK), and inline they would
    /// add 350 bytes to every call for its whole life.
    pending_2xx: Option<Box<Pending2xx>>,
    /// The last provisional response sent to A while setting up (a standby that takes over sends it again to a
    /// retransmitted INVITE).
    a_provisional: Option<Box<Response>>,
    /// The last reliable provisional relayed to A, while setting up.
    reliable: Option<Reliable>,
    /// Why and by whom the call ended, once it did.
    release: Option<(&'static str, &'static str, u16)>,
    /// Outstanding BYEs while ending.
    byes: u8,
    /// When the call's end began (BYE received or sent): the CDR's end, whatever the BYEs then take.
    ended: Option<Instant>,
    /// When the session interval runs out, if a session timer was negotiated (refreshes move it).
    session_expiry: Option<Instant>,
    /// Version of the last replication record of this call; 0 if never replicated.
    ha_version: u64,
    /// The gateways of leg B's current carrier in the order this call tries them, with whether each was resolved
    /// by DNS (RFC 3263: such a target also gives way to the next on timeout and 503): set when the carrier's
    /// first gateway is tried, so that a new DNS answer never reorders an attempt under way.
    b_gateways: Vec<(Gateway, bool)>,
}

/// Timers of calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Retransmit2xx,
    PostDial,
    MaxDuration,
    Keepalive,
    /// The negotiated session interval (RFC 4028) ran out without a refresh.
    SessionExpiry,
}

/// Every call, and the indexes to find them by what arrives.
#[derive(Debug)]
pub struct Calls {
    plan: Arc<Plan>,
    locals: Vec<(Transport, SocketAddr)>,
    /// Boxed: a call is 2.5 KB and the map keeps room for up to twice its entries; empty room then costs a
    /// pointer, not a call.
    calls: HashMap<CallRef, Box<Call>>,
    next: u64,
    /// (Call-ID, our tag) of each leg's dialog.
    by_dialog: dialogs::DialogIndex,
    /// Our client transactions.
    by_client: HashMap<TransactionKey, (CallRef, Purpose)>,
    /// Leg A's INVITE server transaction, for CANCEL.
    by_invite: HashMap<TransactionKey, CallRef>,
    timers: BinaryHeap<Reverse<(Instant, CallRef, Timer)>>,
    counters: Vec<TrunkCounters>,
    /// Whether each trunk is usable by its probes (all true until the driver says otherwise).
    trunk_up: Vec<bool>,
    /// Trunks the admin API took out of routing (`admin::set_trunk_disabled`).
    admin_disabled: Vec<bool>,
    /// What each DNS-named gateway (trunk, index into its `dns_gateways`) resolved to last.
    resolved: HashMap<(TrunkId, usize), Vec<Target>>,
    /// Gateways their probes say are down: a call skips them while the trunk has others.
    gateways_down: HashSet<Gateway>,
    /// Nonces for challenging trunks that must authenticate, made on first use.
    nonces: Option<NonceIssuer>,
    nonce_epoch: Option<Instant>,
    nonce_config: NonceConfig,
    /// Media anchoring, when configured: every SDP crossing a call is rewritten to relay addresses.
    media: Option<Sessions>,
    /// Whether the relay answers (a remote one may not).
    media_up: bool,
    /// Whether answered calls are replicated (a configured pair).
    replicate: bool,
    /// Calls of the active box, held by a standby until it takes over, by call number.
    foreign: HashMap<u64, (crate::ha::Record, Instant)>,
    /// Active/active: the service addresses of each group (a call belongs to the group of its leg-A address); empty
    /// for a box with one group.
    groups: Vec<Vec<std::net::IpAddr>>,
    /// This box's call numbers start here (the pair's two boxes number in ranges of their own, so a call adopted
    /// from the peer never collides with one of ours); [`ID_RANGE`] numbers each.
    id_base: u64,
    /// Registered users ([`crate::registrar`]): their calls come in on their pseudo-trunk, authenticated by their
    /// own credentials; calls routed to that trunk go to the called user's binding.
    users: Option<Arc<crate::registrar::RegistrarConfig>>,
}

/// Call numbers of one box: `[id_base, id_base + ID_RANGE)`.
pub const ID_RANGE: u64 = 1 << 48;

/// Our digest realm.
const REALM: &str = "sbc";
/// How long a nonce we issued stays good: a client reuses it (with nc) for later INVITEs.
const NONCE_LIFETIME_SECS: u64 = 300;

impl Calls {
    /// Calls routed by `plan`, sending from `locals` (our listen addresses), challenging with nonces made as
    /// `nonces` says.
    pub fn new(
        plan: Arc<Plan>,
        locals: Vec<(Transport, SocketAddr)>,
        media: Option<Sessions>,
        nonces: NonceConfig,
    ) -> Self {
        let n = plan.trunks.len();
        Self {
            plan,
            locals,
            calls: HashMap::new(),
            next: 1,
            by_dialog: dialogs::DialogIndex::default(),
            by_client: HashMap::new(),
            by_invite: HashMap::new(),
            timers: BinaryHeap::new(),
            counters: (0..n).map(|_| TrunkCounters::default()).collect(),
            trunk_up: vec![true; n],
            admin_disabled: vec![false; n],
            resolved: HashMap::new(),
            gateways_down: HashSet::new(),
            nonces: None,
            nonce_epoch: None,
            nonce_config: nonces,
            media,
            media_up: true,
            replicate: false,
            foreign: HashMap::new(),
            groups: Vec::new(),
            id_base: 0,
            users: None,
        }
    }

    /// Routes new calls by `plan` from now on, sending from `locals` (a reload). Calls in progress keep the plan
    /// they started with. `plan` must keep the trunk ids of the current one (the config loader does: a trunk keeps
    /// its id by name, a removed one leaves a tombstone in its slot, new ones are appended), so the per-trunk
    /// counters carry over and the calls of a removed trunk still count against its slot until they end.
    pub fn set_plan(&mut self, plan: Arc<Plan>, locals: Vec<(Transport, SocketAddr)>) {
        let n = plan.trunks.len().max(self.counters.len());
        self.counters.resize_with(n, TrunkCounters::default);
        self.trunk_up.resize(n, true);
        // Trunk ids are stable across reloads (new trunks appended): an operator's disable outlives a reload.
        self.admin_disabled.resize(n, false);
        self.plan = plan;
        self.locals = locals;
    }

    /// Active/active: the service addresses of each group of the pair.
    pub fn set_groups(&mut self, groups: Vec<Vec<std::net::IpAddr>>) {
        self.groups = groups;
    }

    /// Numbers this box's calls from `base` (a multiple of [`ID_RANGE`]).
    pub fn set_id_base(&mut self, base: u64) {
        self.id_base = base;
        self.next = self.next.max(base.max(1));
    }

    /// Takes note of a call number adopted from the peer: ours go on from above it only when it is in our range.
    pub(super) fn saw_id(&mut self, id: u64) {
        if id >= self.id_base && id - self.id_base < ID_RANGE {
            self.next = self.next.max(id + 1);
        }
    }

    /// The group of a service address, if groups are configured.
    pub fn group_of(&self, ip: std::net::IpAddr) -> Option<usize> {
        self.groups.iter().position(|g| g.contains(&ip))
    }

    /// The group a record's call belongs to (by its leg-A address).
    pub fn record_group(&self, record: &crate::ha::Record) -> Option<usize> {
        match record {
            crate::ha::Record::Call(c) => self.group_of(c.a.local.ip()),
            _ => None,
        }
    }

    /// How many of our calls (set up or answered) belong to `group`.
    pub fn calls_in_group(&self, group: usize) -> usize {
        self.calls.values().filter(|c| self.group_of(c.a.peer.local.ip()) == Some(group)).count()
    }

    /// Marks the media relay reachable or not.
    pub fn set_media_available(&mut self, up: bool) {
        self.media_up = up;
    }

    /// Sends every media session to the relay again (it restarted or reconnected).
    pub fn media_replay(&mut self, out: &mut VecDeque<Output>) {
        if let Some(media) = self.media.as_mut() {
            media.replay();
            while let Some(cmd) = media.poll_command() {
                out.push_back(Output::Media(cmd));
            }
        }
    }

    /// Media sessions held and relay ports in use, when media is anchored.
    pub fn media_counts(&self) -> Option<(usize, usize)> {
        self.media.as_ref().map(Sessions::counts)
    }

    /// Rewrites `body` (from `from`'s peer) for the other leg of call `id` when it is SDP and media is anchored;
    /// otherwise returns it as is. `exchange`: offer or answer, and each leg's trunk's SRTP policy
    /// (`Calls::exchange`). The relay's commands go out at once, ahead of the message that carries the SDP.
    #[allow(clippy::too_many_arguments)]
    fn anchor(
        &mut self,
        ctx: &mut Ctx,
        id: CallRef,
        from: Leg,
        exchange: Exchange,
        headers: &crate::msg::Headers,
        body: &Bytes,
        sip_local: [std::net::IpAddr; 2],
    ) -> Result<Bytes, MediaError> {
        let Some(media) = self.media.as_mut() else { return Ok(body.clone()) };
        if body.is_empty() || !headers.is_sdp() {
            return Ok(body.clone());
        }
        let leg = match from {
            Leg::A => MediaLeg::A,
            Leg::B => MediaLeg::B,
        };
        let result = media.rewrite(ctx.now, SessionId(id.0), leg, body, sip_local, exchange);
        while let Some(cmd) = media.poll_command() {
            ctx.out.push_back(Output::Media(cmd));
        }
        match &result {
            Err(MediaError::NoPorts(_)) => ctx.observe(Observation::MediaError { reason: "no_ports" }),
            Err(MediaError::Srtp(_)) => ctx.observe(Observation::MediaError { reason: "srtp" }),
            Err(MediaError::Webrtc(_)) => ctx.observe(Observation::MediaError { reason: "webrtc" }),
            Err(_) => ctx.observe(Observation::MediaError { reason: "sdp" }),
            Ok(_) => {}
        }
        result.map(Bytes::from)
    }

    /// `kind` in call `call` between its legs' trunks' SRTP policies (leg B's: `b_trunk` when given, the carrier now
    /// tried; else the call's leg B, plain RTP before one is tried).
    fn exchange(call: &Call, kind: SdpKind, b_trunk: Option<TrunkId>) -> Exchange {
        let b = b_trunk.or(call.b.as_ref().map(|b| b.trunk));
        let plan = &call.plan;
        let srtp = [plan.trunk(call.a_trunk).srtp, b.map_or(SrtpMode::Off, |t| plan.trunk(t).srtp)];
        Exchange { kind, srtp }
    }

    /// The SIP addresses facing leg A and leg B of a call (leg B's is A's until a carrier is tried).
    fn sip_locals(call: &Call) -> [std::net::IpAddr; 2] {
        let a = call.a.peer.local.ip();
        [a, call.b.as_ref().map_or(a, |b| b.dialog.peer.local.ip())]
    }

    /// The status for an SDP we could not anchor.
    fn media_status(e: &MediaError) -> (u16, &'static str) {
        match e {
            MediaError::Sdp(_) | MediaError::Srtp(_) => (488, "Not Acceptable Here"),
            MediaError::Webrtc(e) if e.sip_status() == 400 => (400, "Bad Request"),
            MediaError::Webrtc(_) => (488, "Not Acceptable Here"),
            _ => (503, "Service Unavailable"),
        }
    }

    /// An event from the relay about one of our calls.
    pub fn on_media_event(&mut self, ctx: &mut Ctx, event: &MediaEvent) {
        match event {
            MediaEvent::Idle { session } => {
                let id = CallRef(session.0);
                let Some(call) = self.calls.get_mut(&id) else { return };
                // Ringing without early media is not a dead call; only an answered one is ended.
                if call.state != State::Confirmed {
                    return;
                }
                ctx.observe(Observation::MediaTimeout);
                call.release = Some(("rtp_timeout", "sbc", 200));
                self.end_call(ctx, id, None);
            }
            MediaEvent::WebrtcEnded { session, local, .. } => {
                // A browser leg's media died (no ICE consent for 30 s, DTLS failed or closed): the call is over.
                let id = CallRef(session.0);
                let Some(call) = self.calls.get_mut(&id) else { return };
                if call.state != State::Confirmed {
                    return;
                }
                call.release = Some(("webrtc_media_ended", "sbc", 200));
                // The browser is most likely gone with its media: its BYE is sent, but the CDR does not wait for
                // it (32 s of timer F), only for the other leg's.
                let gone = self.media_leg_of(*session, *local);
                self.end_call_gone(ctx, id, None, gone);
            }
            MediaEvent::BindFailed { .. } => ctx.observe(Observation::MediaError { reason: "bind_failed" }),
            MediaEvent::Latched { session, local, peer } => {
                // Kept in the call's media record; an answered call replicates it, so that a standby's relay
                // forwards the flow in the kernel from the first packet after a takeover.
                let changed = self.media.as_mut().is_some_and(|m| m.latched(*session, *local, *peer));
                if changed {
                    self.replicate_call(ctx, CallRef(session.0));
                }
            }
            MediaEvent::WebrtcKeyed { session, local, keys } => {
                // A browser leg's handshake keys, kept in the call's media record: a standby's relay carries the
                // leg on with them after a takeover (the browser does not redo its handshake).
                let changed = self.media.as_mut().is_some_and(|m| m.webrtc_keyed(*session, *local, keys));
                if changed {
                    self.replicate_call(ctx, CallRef(session.0));
                }
            }
            MediaEvent::SrtpRollover { session, local, rollover } => {
                // Once per 65,536 packets of a browser leg's stream: a standby's relay needs the counter too.
                let changed = self.media.as_mut().is_some_and(|m| m.webrtc_rollover(*session, *local, *rollover));
                if changed {
                    self.replicate_call(ctx, CallRef(session.0));
                }
            }
            MediaEvent::Stats(_) | MediaEvent::Figures(_) | MediaEvent::Pong { .. } => {}
        }
    }

    /// The browser leg of `session` whose relay socket is `local`: the only browser leg, or of two (a browser
    /// calling a browser) the one with that port; `None` when that does not decide it (two interfaces may hand out
    /// the same port number).
    fn media_leg_of(&self, session: SessionId, local: SocketAddr) -> Option<Leg> {
        // A copy of the session's record, made only when a browser's media ends.
        let record = self.media.as_ref()?.export(session)?;
        let browser = |leg| record.webrtc.as_ref().is_some_and(|w| w.is_browser(leg));
        let owns = |i: usize| record.legs[i].streams.iter().flatten().any(|s| s.port == local.port());
        let candidate = |i: usize, leg| browser(leg) && (!browser(MediaLeg::A) || !browser(MediaLeg::B) || owns(i));
        match (candidate(0, MediaLeg::A), candidate(1, MediaLeg::B)) {
            (true, false) => Some(Leg::A),
            (false, true) => Some(Leg::B),
            _ => None,
        }
    }

    /// The routing plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Calls in progress.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// The numbers of the calls in progress.
    #[cfg(test)]
    pub(crate) fn ids(&self) -> Vec<u64> {
        self.calls.keys().map(|c| c.0).collect()
    }

    /// Whether no call, dialog, transaction of a call or timer is left: what the call-logic fuzzer expects once
    /// every timer fired.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn is_idle(&self) -> bool {
        self.calls.is_empty()
            && self.by_dialog.is_empty()
            && self.by_client.is_empty()
            && self.by_invite.is_empty()
            && self.timers.is_empty()
    }

    /// Active calls on `trunk` (both directions).
    pub fn active_on(&self, trunk: TrunkId) -> u32 {
        self.counters.get(trunk.0 as usize).map_or(0, |c| c.active)
    }

    /// Whether a trunk is up (its probes, its registration).
    pub fn trunk_usable(&self, trunk: TrunkId) -> bool {
        self.trunk_up.get(trunk.0 as usize).copied().unwrap_or(false)
    }

    /// What DNS-named gateway `gateway` of `trunk` resolved to now (see `Endpoint::set_targets`).
    pub fn set_targets(&mut self, trunk: TrunkId, gateway: usize, targets: Vec<Target>) {
        self.resolved.insert((trunk, gateway), targets);
    }

    /// The gateways that probes say are down now.
    pub fn set_gateways_down(&mut self, down: HashSet<Gateway>) {
        self.gateways_down = down;
    }

    /// The gateways of `trunk` in the order the call with leg-A Call-ID `call_id` tries them: configured ones in
    /// their place, each DNS name replaced by its targets ([`targets::order`]), without those probed down.
    fn gateways_for(&self, plan: &Plan, trunk: TrunkId, call_id: &[u8]) -> Vec<(Gateway, bool)> {
        let t = plan.trunk(trunk);
        let seed = targets::seed_of(call_id);
        let mut out: Vec<(Gateway, bool)> = Vec::with_capacity(t.gateways.len());
        let mut statics = t.gateways.iter();
        let mut names = t.dns_gateways.iter().enumerate().peekable();
        for position in 0..t.gateways.len() + t.dns_gateways.len() {
            match names.next_if(|(_, d)| d.position == position) {
                Some((i, _)) => {
                    let resolved = self.resolved.get(&(trunk, i)).map_or(&[][..], Vec::as_slice);
                    out.extend(targets::order(resolved, seed).into_iter().map(|g| (g, true)));
                }
                None => out.extend(statics.next().map(|&g| (g, false))),
            }
        }
        out.retain(|(g, _)| !self.gateways_down.contains(g));
        out
    }

    /// Marks a trunk usable or not (from its probes).
    pub fn set_trunk_up(&mut self, trunk: TrunkId, up: bool) {
        if let Some(u) = self.trunk_up.get_mut(trunk.0 as usize) {
            *u = up;
        }
    }

    /// The next instant [`Calls::handle_timeout`] must run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _, _))| *at)
    }

    /// The call and leg whose dialog is (`call_id`, our `tag`).
    fn find_dialog(&self, call_id: &[u8], tag: &[u8]) -> Option<(CallRef, Leg)> {
        self.by_dialog.get(call_id, tag, |id, leg| {
            let call = self.calls.get(&id);
            let dialog = match leg {
                Leg::A => call.map(|c| &c.a),
                Leg::B => call.and_then(|c| c.b.as_ref()).map(|b| &b.dialog),
            };
            dialog.is_some_and(|d| d.call_id[..] == *call_id && d.local_tag[..] == *tag)
        })
    }

    /// Whether an in-dialog request (with a To tag) belongs to one of our dialogs.
    pub fn owns_dialog(&self, req: &Request) -> bool {
        dialog_key(req).is_some_and(|(c, t)| self.find_dialog(&c, &t).is_some())
    }

    /// Whether a CANCEL targets one of our calls' INVITEs.
    pub fn owns_cancel(&self, cancel: &Request) -> bool {
        TransactionKey::cancelled_invite(cancel).is_some_and(|k| self.by_invite.contains_key(&k))
    }

    /// Whether a client transaction is ours.
    pub fn owns_client(&self, key: &TransactionKey) -> bool {
        self.by_client.contains_key(key)
    }

    /// A new INVITE (no To tag) on server transaction `key` from `peer`, whose TLS certificate named `identity`
    /// (if it came over TLS with a verified client certificate).
    pub fn new_invite(
        &mut self,
        ctx: &mut Ctx,
        key: TransactionKey,
        peer: Peer,
        identity: Option<&crate::transport::TlsIdentity>,
        req: Request,
    ) {
        let reply = |ctx: &mut Ctx, status: u16, reason: &'static str, extra: Option<(HeaderName, String)>| {
            let mut r = Response::to_request(&req, status, reason);
            if let Some(v) = req.headers.get(&HeaderName::To) {
                r.headers.set(HeaderName::To, crate::dialog::with_tag(v, Some(ctx.ids.tag().as_bytes())));
            }
            r.headers.push(HeaderName::Server, ctx.server.to_owned());
            if let Some((n, v)) = extra {
                r.headers.push(n, v);
            }
            ctx.observe(Observation::CallRejected { status });
            ctx.respond(&key, r);
        };
        // A call to the contact we registered with a carrier, from that carrier, is that carrier's.
        let registered = self.plan.identify_registered(peer.remote, &build::user_of(&req.uri));
        let identified = registered.or_else(|| self.plan.identify_peer(peer.remote, identity)).or_else(|| {
            let username = proxy_credentials(&req).map(|c| c.username)?;
            self.plan.by_username(&username).or_else(|| self.user_trunk(&username))
        });
        let Some(a_trunk) = identified else {
            if self.plan.has_credential_trunks() || self.has_users() {
                // Perhaps a trunk that is known by its credentials: ask for them (credentials for a username we do
                // not know were a wrong guess).
                ctx.auth_failed(peer.remote, &req);
                let challenge = self.challenge(ctx, false);
                return reply(
                    ctx,
                    407,
                    "Proxy Authentication Required",
                    Some((HeaderName::ProxyAuthenticate, challenge)),
                );
            }
            ctx.observe(Observation::UnknownSource);
            match self.plan.unknown_source {
                UnknownSource::Reject => reply(ctx, 403, "Forbidden", None),
                UnknownSource::Drop => ctx.txns.abandon(&key),
            }
            return;
        };
        let plan = Arc::clone(&self.plan);
        let trunk = plan.trunk(a_trunk);
        // The users' trunk always authenticates, each user with its own credentials.
        let expected = match self.is_users_trunk(a_trunk) {
            true => Some(self.user_credentials(a_trunk, &req)),
            false => trunk.inbound_auth.clone().map(Some),
        };
        if let Some(expected) = &expected {
            let checked = match expected {
                Some(e) => self.check_credentials(ctx, &req, e),
                None => Err(false),
            };
            if let Err(stale) = checked {
                ctx.observe(Observation::AuthFailed { trunk: a_trunk });
                if !stale {
                    ctx.auth_failed(peer.remote, &req);
                }
                let challenge = self.challenge(ctx, stale);
                return reply(
                    ctx,
                    407,
                    "Proxy Authentication Required",
                    Some((HeaderName::ProxyAuthenticate, challenge)),
                );
            }
        }
        if trunk.disabled {
            return reply(ctx, 403, "Forbidden", None);
        }
        if let Err(why) = self.counters[a_trunk.0 as usize].admit(&trunk.limits, ctx.now) {
            ctx.observe(Observation::TrunkLimit { trunk: a_trunk, which: why.label() });
            return reply(ctx, 503, "Service Unavailable", Some((HeaderName::RetryAfter, "1".into())));
        }
        if let Ok(Some(0)) = req.headers.max_forwards() {
            return reply(ctx, 483, "Too Many Hops", None);
        }
        if self.media.is_some() && !self.media_up {
            // Setting the call up without its media would connect a silent call: refuse it now, clearly.
            ctx.observe(Observation::MediaError { reason: "relay_down" });
            return reply(ctx, 503, "Media Relay Unavailable", Some((HeaderName::RetryAfter, "5".into())));
        }
        // Sent to our registered contact, the Request-URI names the account; the number called is in To.
        let called_in = match registered {
            Some(_) => req
                .headers
                .to()
                .map(|t| build::user_of(&t.uri()))
                .ok()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| build::user_of(&req.uri)),
            None => build::user_of(&req.uri),
        };
        let called_routed = trunk.numbers_in.apply(&normalise(&called_in));
        let (now, ids) = (ctx.now, &mut *ctx.ids);
        let Some((prefix, selection)) = self.route_for(&called_routed, now, &mut || ids.random()) else {
            return reply(ctx, 404, "Not Found", None);
        };
        for s in &selection.skipped {
            ctx.observe(Observation::TrunkSkipped { trunk: s.candidate.trunk, reason: s.reason.label() });
        }
        let limits = FailoverLimits { max_tries: self.plan.max_tries, max_post_dial: self.plan.max_post_dial };
        let (attempts, next) = Attempts::start(selection.ordered, limits, ctx.now);
        let caller = req.headers.from().map(|f| build::user_of(&f.uri())).unwrap_or_default();
        let mut presented = presented_by(&req);
        presented.rewrite(&trunk.numbers_in);

        // Leg A's dialog, as the UAS (§12.1.1).
        let from = req.headers.from().ok();
        let a = Dialog {
            call_id: req.headers.get_bytes(&HeaderName::CallId).unwrap_or_default(),
            local_tag: Bytes::from(ctx.ids.tag()),
            remote_tag: from.as_ref().and_then(|f| f.tag().map(Bytes::copy_from_slice)),
            local_uri: strip_tag(req.headers.get(&HeaderName::To).unwrap_or_default()),
            remote_uri: strip_tag(req.headers.get(&HeaderName::From).unwrap_or_default()),
            remote_target: contact_uri(&req).unwrap_or_else(|| Bytes::from(format!("sip:{}", peer.remote))),
            route_set: req.headers.get_all_bytes(&HeaderName::RecordRoute).collect(),
            local_cseq: 0,
            peer,
            contact: Bytes::from(contact_for(peer.transport, peer.local, req.uri.as_bytes().starts_with(b"sips:"))),
        };
        // 100 at once: the caller's retransmissions stop while carriers are tried (§8.2.6.1).
        let trying = build::response_to(&req, 100, Bytes::from_static(b"Trying"), &a, None, &[], ctx.server);
        ctx.respond(&key, trying.clone());

        let id = CallRef(self.next);
        self.next += 1;
        self.by_dialog.insert(&a.call_id, &a.local_tag, (id, Leg::A));
        self.by_invite.insert(key.clone(), id);
        self.counters[a_trunk.0 as usize].start(ctx.now);
        ctx.observe(Observation::CallStarted { trunk: a_trunk });
        self.timers.push(Reverse((attempts.post_dial_deadline(), id, Timer::PostDial)));
        let call = Call {
            plan: Arc::clone(&plan),
            state: State::Routing,
            a,
            a_trunk,
            a_invite: {
                let mut req = req;
                req.headers.shrink_to_fit();
                Kept::new(req)
            },
            a_invite_key: key,
            b: None,
            attempts,
            called_out: called_routed.clone(),
            called_in,
            called_routed,
            caller,
            presented,
            route_prefix: prefix,
            cdr_attempts: Vec::new(),
            setup: ctx.now,
            ringing: None,
            answer: None,
            pending_2xx: None,
            a_provisional: Some(Box::new(trying)),
            reliable: None,
            release: None,
            byes: 0,
            ended: None,
            session_expiry: None,
            ha_version: 0,
            b_gateways: Vec::new(),
        };
        self.calls.insert(id, Box::new(call));
        self.proceed(ctx, id, next);
    }

    /// Seconds on the nonce clock: Unix time when the driver gave it (a pair agrees on it), else since this table
    /// first challenged (a restart then invalidates the nonces, which only costs the peer one more challenge).
    fn nonce_secs(&mut self, ctx: &mut Ctx) -> u64 {
        let epoch = *self.nonce_epoch.get_or_insert(ctx.now);
        self.nonce_config.secs(ctx.now, epoch)
    }

    fn nonces(&mut self, ctx: &mut Ctx) -> &NonceIssuer {
        let shared = self.nonce_config.secret.clone();
        self.nonces.get_or_insert_with(|| {
            NonceIssuer::new(shared.unwrap_or_else(|| Secret::new(ctx.ids.call_id())), NONCE_LIFETIME_SECS)
        })
    }

    /// The digest realm of our 407s: the registrar's when users are configured, else [`REALM`]. One realm for
    /// users and trunks alike, because a 407 to a request without credentials cannot know which it is, and JsSIP
    /// keeps only the HA1 of its REGISTER's realm once registered (it drops the password): a user's INVITE
    /// challenged in another realm fails in the browser with "Authentication Error".
    fn realm(&self) -> String {
        self.users.as_ref().filter(|u| !u.users.is_empty()).map_or_else(|| REALM.to_owned(), |u| u.realm.clone())
    }

    /// A Proxy-Authenticate value with a fresh nonce.
    fn challenge(&mut self, ctx: &mut Ctx, stale: bool) -> String {
        let now = self.nonce_secs(ctx);
        let realm = self.realm();
        self.nonces(ctx).challenge(&realm, Algorithm::Md5, now, stale)
    }

    /// Checks the Proxy-Authorization of `req` against `expected`: `Err(true)` for a stale nonce (challenge again
    /// with `stale=true`, the client retries without asking its user), `Err(false)` for anything else wrong.
    fn check_credentials(&mut self, ctx: &mut Ctx, req: &Request, expected: &Credentials) -> Result<(), bool> {
        let creds = proxy_credentials(req).ok_or(false)?;
        if creds.username != expected.username || creds.realm != self.realm() {
            return Err(false);
        }
        let now = self.nonce_secs(ctx);
        match self.nonces(ctx).check(&creds.nonce, now) {
            NonceCheck::Fresh => {}
            NonceCheck::Stale => return Err(true),
            NonceCheck::Invalid => return Err(false),
        }
        if creds.verify(&String::from_utf8_lossy(req.method.as_bytes()), &expected.password) {
            Ok(())
        } else {
            Err(false)
        }
    }

    fn usable(&self, t: TrunkId, now: Instant) -> Result<(), SkipReason> {
        let trunk = self.plan.trunk(t);
        if trunk.disabled || self.trunk_disabled_by_admin(t) {
            return Err(SkipReason::Disabled);
        }
        if !self.trunk_up[t.0 as usize] {
            return Err(SkipReason::Down);
        }
        self.counters[t.0 as usize].check(&trunk.limits, now).map_err(|w| w.skip_reason())
    }

    /// Acts on what the attempts say next.
    fn proceed(&mut self, ctx: &mut Ctx, id: CallRef, next: Next) {
        match next {
            Next::Try(c) => self.start_leg_b(ctx, id, c.trunk, 0),
            Next::Connected => {}
            Next::GiveUp(g) => {
                let status = if g.reason == GiveUpReason::NoCandidates { 503 } else { g.status };
                self.fail_a(ctx, id, status, reason_for(status), "sbc");
            }
        }
    }

    /// Starts leg B on `trunk_id`'s gateway number `gateway`.
    fn start_leg_b(&mut self, ctx: &mut Ctx, id: CallRef, trunk_id: TrunkId, gateway: usize) {
        let Some(plan) = self.calls.get(&id).map(|c| Arc::clone(&c.plan)) else { return };
        let trunk = plan.trunk(trunk_id);
        let Some(a_local) = self.calls.get(&id).map(|c| c.a.peer.local.ip()) else { return };
        // Active/active: leg B leaves from an address of leg A's group, which moves with it.
        let group = self.group_of(a_local).map(|g| &self.groups[g]);
        let in_group: Vec<(Transport, SocketAddr)> =
            self.locals.iter().filter(|(_, a)| group.is_none_or(|g| g.contains(&a.ip()))).copied().collect();
        let locals = if in_group.is_empty() { &self.locals } else { &in_group };
        if gateway == 0 {
            let call_id = self.calls.get(&id).map(|c| c.a.call_id.clone()).unwrap_or_default();
            let list = match self.user_gateway(ctx, id, trunk_id) {
                Ok(None) => self.gateways_for(&plan, trunk_id, &call_id),
                Ok(Some(g)) => vec![(g, false)],
                Err(status) => {
                    // No such user (404) or not registered now (480): the answer of this "carrier".
                    let Some(call) = self.calls.get_mut(&id) else { return };
                    let next = call.attempts.on_outcome(Outcome::Rejected(status), &trunk.failover, ctx.now);
                    return self.proceed(ctx, id, next);
                }
            };
            if let Some(call) = self.calls.get_mut(&id) {
                call.b_gateways = list;
            }
        }
        let Some(call) = self.calls.get(&id) else { return };
        let gw = call.b_gateways.get(gateway).map(|&(g, _)| g);
        let called = trunk.numbers_out.apply(&call.called_routed);
        let user_flow = Self::user_flow(ctx, self.users.as_deref(), trunk_id, &called);
        let local = match &user_flow {
            Some((flow, _)) => Some(flow.local),
            None => gw.and_then(|g| build::pick_local(locals, g.transport, g.addr)),
        };
        if gw.is_some() && local.is_none() && gateway + 1 < call.b_gateways.len() {
            ctx.observe(Observation::Dropped { reason: "no_local_address_for_gateway" });
            return self.start_leg_b(ctx, id, trunk_id, gateway + 1);
        }
        let Some(call) = self.calls.get_mut(&id) else { return };
        let (Some(gw), Some(local)) = (gw, local) else {
            // No way to reach this carrier from our listeners (or a DNS name with no target yet): a transport
            // error, so the next one is tried.
            let reason = if gw.is_none() { "no_gateway_target" } else { "no_local_address_for_gateway" };
            ctx.observe(Observation::Dropped { reason });
            let next = call.attempts.on_outcome(Outcome::TransportError, &trunk.failover, ctx.now);
            return self.proceed(ctx, id, next);
        };
        let peer = match &user_flow {
            // Back on the flow the user registered on (RFC 5626 §5.3), its connection included.
            Some((flow, _)) => *flow,
            None => build::peer(gw.transport, local, gw.addr),
        };
        let target = build::Target::of(trunk, gw);
        // Identity and numbers towards this carrier (policy::identity documents the order).
        let a_trunk = plan.trunk(call.a_trunk);
        let mut identity = identity::outbound(&call.presented, &a_trunk.identity_in, &trunk.identity_out);
        identity.rewrite(&trunk.numbers_out);
        call.called_out = trunk.numbers_out.apply(&call.called_routed);
        let from_uri = if identity.from_host_anonymous {
            build::sip_uri(&identity.from_user, identity::ANONYMOUS_HOST)
        } else {
            build::sip_uri(&identity.from_user, local.ip())
        };
        let local_uri = match &identity.from_display {
            Some(d) => format!("\"{}\" <{from_uri}>", d.replace(['"', '\\'], "")),
            None => format!("<{from_uri}>"),
        };
        let mut extra = Vec::new();
        if let Some(pai) = &identity.pai {
            extra.push((HeaderName::PAssertedIdentity, format!("<{};user=phone>", build::sip_uri(pai, local.ip()))));
        }
        if let Some(privacy) = identity.privacy {
            extra.push((HeaderName::Privacy, privacy.to_owned()));
        }
        let dialog = Dialog {
            call_id: Bytes::from(ctx.ids.call_id()),
            local_tag: Bytes::from(ctx.ids.tag()),
            remote_tag: None,
            local_uri: Bytes::from(local_uri),
            remote_uri: match (&user_flow, self.users.as_ref().and_then(|u| u.domains.first())) {
                // The user's address-of-record, not the address it registered from.
                (Some(_), Some(domain)) => Bytes::from(format!("<{}>", build::sip_uri(&call.called_out, domain))),
                _ => Bytes::from(format!("<{}>", target.to_uri(&call.called_out, false))),
            },
            remote_target: match &user_flow {
                // A registered user's Request-URI is its Contact (RFC 3261 §16.5), whatever its host says.
                Some((_, contact)) => contact.clone(),
                None => Bytes::from(target.to_uri(&call.called_out, true)),
            },
            route_set: Vec::new(),
            local_cseq: 1,
            peer,
            contact: Bytes::from(contact_for(gw.transport, local, target.sips)),
        };
        let a_local = call.a.peer.local.ip();
        // A's INVITE is parsed while the call is set up ([`kept`]); parsing it again cannot fail.
        let Some(a_body) = call.a_invite.request().map(|r| r.body.clone()) else {
            return self.fail_a(ctx, id, 500, "Server Internal Error", "sbc");
        };
        let body = if self.media.is_none() {
            Ok(a_body)
        } else {
            // The INVITE lives in the call, which `anchor` may not borrow alongside: copies only when anchoring.
            let a_headers = call.a_invite.request().map(|r| r.headers.clone()).unwrap_or_default();
            // A new carrier is a new peer on leg B: our keys for it are drawn afresh.
            let exchange = Self::exchange(call, SdpKind::OfferToNewPeer, Some(trunk_id));
            // A user reached over WebSocket is a browser: the relay terminates its WebRTC leg
            // (docs/webrtc-media.md), so the offer towards it is a WebRTC one.
            let browser =
                user_flow.as_ref().is_some_and(|(flow, _)| matches!(flow.transport, Transport::Ws | Transport::Wss));
            match self.media.as_mut().filter(|_| browser) {
                Some(media) => media.expect_browser(SessionId(id.0), MediaLeg::B),
                None => Ok(()),
            }
            .and_then(|()| self.anchor(ctx, id, Leg::A, exchange, &a_headers, &a_body, [a_local, local.ip()]))
        };
        let body = match body {
            Ok(b) => b,
            Err(e) => {
                let (status, reason) = Self::media_status(&e);
                return self.fail_a(ctx, id, status, reason, "sbc");
            }
        };
        let Some(call) = self.calls.get_mut(&id) else { return };
        let branch = ctx.ids.branch();
        let mut invite = {
            let Some(a_invite) = call.a_invite.request() else { return };
            let max_forwards = a_invite.headers.max_forwards().ok().flatten().map_or(69, |n| n.min(70) - 1);
            build::InviteB {
                dialog: &dialog,
                branch: &branch,
                max_forwards,
                a_invite: &a_invite,
                body,
                pass: &trunk.pass_headers,
                extra,
            }
            .build()
        };
        invite.headers.shrink_to_fit();
        let key = match ctx.txns.send_request(ctx.now, peer, invite.clone()) {
            Ok(k) => k,
            Err(_) => {
                let next = call.attempts.on_outcome(Outcome::TransportError, &trunk.failover, ctx.now);
                return self.proceed(ctx, id, next);
            }
        };
        self.counters[trunk_id.0 as usize].start(ctx.now);
        ctx.observe(Observation::CallAttempt { trunk: trunk_id });
        self.by_dialog.insert(&dialog.call_id, &dialog.local_tag, (id, Leg::B));
        self.by_client.insert(key.clone(), (id, Purpose::InviteB));
        call.b = Some(LegB {
            dialog,
            trunk: trunk_id,
            gateway,
            invite: Kept::new(invite),
            invite_key: key,
            sent: ctx.now,
            provisional: false,
            cancel_wanted: false,
            cancel_sent: false,
            authed: false,
            ack: None,
        });
        // A carrier attempt (the first one is in the same step as accepting A's INVITE): the standby can resume.
        self.replicate_call(ctx, id);
    }

    /// A response on one of our client transactions.
    pub fn on_response(&mut self, ctx: &mut Ctx, key: TransactionKey, resp: Response) {
        let Some((id, purpose)) = self.by_client.get(&key).cloned() else {
            if resp.is_success() {
                self.ack_again(ctx, Some(&key), &resp);
            }
            return;
        };
        if resp.status >= 200 {
            self.by_client.remove(&key);
        }
        match purpose {
            Purpose::InviteB => self.on_invite_b_response(ctx, id, key, resp),
            Purpose::Cancel => {}
            Purpose::Bye => {
                if resp.status >= 200 {
                    self.bye_done(ctx, id);
                }
            }
            Purpose::Relay { back, request } => self.relay_back(ctx, id, &back, &request, &resp),
            Purpose::Keepalive(leg) => {
                if matches!(resp.status, 408 | 481) {
                    self.peer_gone(ctx, id, leg);
                }
            }
        }
    }

    /// The peer of `leg` no longer has the call (keepalive answered 481/408 or not at all): end it on both sides.
    fn peer_gone(&mut self, ctx: &mut Ctx, id: CallRef, leg: Leg) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        if call.state != State::Confirmed {
            return;
        }
        call.release = Some(("peer_gone", leg.label(), 200));
        self.end_call_gone(ctx, id, None, Some(leg));
    }

    /// Timer B/F of one of our client transactions: no final response.
    pub fn on_txn_timeout(&mut self, ctx: &mut Ctx, key: TransactionKey) {
        let Some((id, purpose)) = self.by_client.remove(&key) else { return };
        match purpose {
            Purpose::InviteB => {
                // Timer C after a provisional (RFC 3261 §16.8): the carrier rang on without an answer; it is given
                // up, and CANCELled so that it stops ringing.
                let b = self.calls.get(&id).and_then(|c| c.b.as_ref());
                if let Some(b) = b.filter(|b| b.invite_key == key && b.provisional && !b.cancel_sent) {
                    let cancel = b.invite.request().map(|invite| build::cancel_for(&invite));
                    if let Some(Ok(k)) = cancel.map(|c| ctx.txns.send_request(ctx.now, b.dialog.peer, c)) {
                        self.by_client.insert(k, (id, Purpose::Cancel));
                    }
                }
                self.b_failed(ctx, id, &key, Outcome::Timeout, None)
            }
            Purpose::Cancel => {}
            Purpose::Bye => self.bye_done(ctx, id),
            Purpose::Relay { back, request } => {
                let timeout = Response::to_request(&request, 408, "Request Timeout");
                self.relay_back(ctx, id, &back, &request, &timeout);
            }
            Purpose::Keepalive(leg) => self.peer_gone(ctx, id, leg),
        }
    }

    /// The transport could not reach the peer of client transaction `key`: leg B's INVITE fails over as a
    /// transport error; any other request is treated as unanswered.
    pub fn on_transport_error(&mut self, ctx: &mut Ctx, key: TransactionKey) {
        match self.by_client.get(&key) {
            Some((id, Purpose::InviteB)) => {
                let id = *id;
                self.by_client.remove(&key);
                self.b_failed(ctx, id, &key, Outcome::TransportError, None);
            }
            Some(_) => self.on_txn_timeout(ctx, key),
            None => {}
        }
    }

    fn on_invite_b_response(&mut self, ctx: &mut Ctx, id: CallRef, key: TransactionKey, mut resp: Response) {
        let mut media_failed = None;
        if (101..300).contains(&resp.status) && !resp.body.is_empty() {
            let Some(call) = self.calls.get(&id).filter(|c| c.b.as_ref().is_some_and(|b| b.invite_key == key)) else {
                return;
            };
            let locals = Self::sip_locals(call);
            // An answer to A's offer; after an INVITE without SDP, B's offer.
            let kind = if call.a_invite.request().is_some_and(|r| r.body.is_empty()) {
                SdpKind::Offer
            } else {
                SdpKind::Answer
            };
            let exchange = Self::exchange(call, kind, None);
            match self.anchor(ctx, id, Leg::B, exchange, &resp.headers, &resp.body, locals) {
                Ok(body) => resp.body = body,
                Err(e) => {
                    // Never relay the carrier's addresses: an 18x goes on without its SDP, a 2xx ends the call.
                    resp.body = Bytes::new();
                    media_failed = Some(Self::media_status(&e));
                }
            }
        }
        let Some(call) = self.calls.get_mut(&id) else { return };
        let Some(b) = call.b.as_mut().filter(|b| b.invite_key == key) else { return };
        if resp.status == 100 {
            b.provisional = true;
            return self.maybe_cancel_b(ctx, id);
        }
        if resp.status < 200 {
            b.provisional = true;
            if b.dialog.remote_tag.is_none() {
                b.dialog.remote_tag = resp.headers.to().ok().and_then(|t| t.tag().map(Bytes::copy_from_slice));
                // The early dialog's target and route set: PRACK and UPDATE before the answer go there (§12.1.2).
                if let Some(target) = contact_of_response(&resp) {
                    b.dialog.remote_target = target;
                }
                let mut rr: Vec<Bytes> = resp.headers.get_all_bytes(&HeaderName::RecordRoute).collect();
                rr.reverse();
                b.dialog.route_set = rr;
            }
            if call.state == State::Routing && !b.cancel_wanted {
                if matches!(resp.status, 180 | 183) && call.ringing.is_none() {
                    call.ringing = Some(ctx.now);
                }
                let pass = &call.plan.trunk(call.a_trunk).pass_headers;
                let Some(a_invite) = call.a_invite.request() else { return };
                let mut r = build::response_to(
                    &a_invite,
                    resp.status,
                    resp.reason.clone(),
                    &call.a,
                    Some(&resp),
                    pass,
                    ctx.server,
                );
                build::carry_reliable(&resp, &mut r);
                ctx.respond(&call.a_invite_key, r.clone());
                // A retransmitted 18x changes nothing the standby does not already have.
                if call.a_provisional.as_deref() != Some(&r) {
                    if let Some(rseq) = build::rseq_of_reliable(&r) {
                        if call.reliable.is_none_or(|rel| rel.rseq != rseq) {
                            call.reliable = Some(Reliable { rseq, pracked: false });
                        }
                    }
                    call.a_provisional = Some(Box::new(r));
                    self.replicate_call(ctx, id);
                }
            }
            return self.maybe_cancel_b(ctx, id);
        }
        if resp.is_success() {
            return self.b_answered(ctx, id, resp, media_failed);
        }
        let trunk = call.plan.trunk(b.trunk);
        if matches!(resp.status, 401 | 407) && !b.authed && !b.cancel_wanted {
            if let Some(retry) = authorized_retry(ctx, b, &resp, trunk) {
                b.authed = true;
                b.provisional = false;
                b.invite = Kept::new(retry.clone());
                b.sent = ctx.now;
                match ctx.txns.send_request(ctx.now, b.dialog.peer, retry) {
                    Ok(k) => {
                        b.invite_key = k.clone();
                        self.by_client.insert(k, (id, Purpose::InviteB));
                        self.replicate_call(ctx, id);
                        return;
                    }
                    Err(_) => ctx.observe(Observation::Dropped { reason: "auth_retry_failed" }),
                }
            }
        }
        let outcome = if (300..400).contains(&resp.status) && trunk.follow_redirects {
            // A redirect we follow is a failover to the next carrier: report it as a failure that triggers.
            Outcome::TransportError
        } else {
            Outcome::Rejected(resp.status)
        };
        self.b_failed(ctx, id, &key, outcome, Some(resp));
    }

    /// Leg B's attempt ended without an answer: record it and try the next carrier or give up.
    fn b_failed(&mut self, ctx: &mut Ctx, id: CallRef, key: &TransactionKey, outcome: Outcome, resp: Option<Response>) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        let Some(b) = call.b.take() else { return };
        if &b.invite_key != key {
            call.b = Some(b);
            return;
        }
        self.by_dialog.remove(&b.dialog.call_id, &b.dialog.local_tag, (id, Leg::B));
        self.counters[b.trunk.0 as usize].end();
        let status = resp.as_ref().map_or(outcome.status(), |r| r.status);
        ctx.observe(Observation::CallFailed { trunk: b.trunk, status });
        call.cdr_attempts.push(CdrAttempt {
            trunk: call.plan.trunk(b.trunk).name.clone(),
            call_id: String::from_utf8_lossy(&b.dialog.call_id).into_owned(),
            status,
        });
        if b.cancel_wanted {
            // The caller cancelled: A has its 487 already; the call ends here.
            call.attempts.on_outcome(Outcome::Cancelled, &call.plan.trunk(b.trunk).failover, ctx.now);
            return self.finish(ctx, id);
        }
        let trunk = call.plan.trunk(b.trunk);
        let from_dns = call.b_gateways.get(b.gateway).is_some_and(|&(_, dns)| dns);
        // RFC 3263 §4.3: a DNS target that times out or answers 503 gives way to the next target as well.
        let next_target = outcome == Outcome::TransportError
            || (from_dns && matches!(outcome, Outcome::Timeout | Outcome::Rejected(503)));
        if next_target && b.gateway + 1 < call.b_gateways.len() {
            // The carrier never saw the call: its next gateway gets it, within the same attempt of the route.
            return self.start_leg_b(ctx, id, b.trunk, b.gateway + 1);
        }
        let next = call.attempts.on_outcome(outcome, &trunk.failover, ctx.now);
        match next {
            Next::GiveUp(g) if g.reason == GiveUpReason::NotRetryable => {
                // The callee's own answer (busy, decline, not found): relay it as it came.
                let reason = resp
                    .as_ref()
                    .map_or_else(|| Bytes::from_static(reason_for(status).as_bytes()), |r| r.reason.clone());
                self.fail_a_with(ctx, id, status, reason, "b");
            }
            other => self.proceed(ctx, id, other),
        }
    }

    fn b_answered(&mut self, ctx: &mut Ctx, id: CallRef, resp: Response, media_failed: Option<(u16, &'static str)>) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        let Some(b) = call.b.as_mut() else { return };
        let d = &mut b.dialog;
        d.remote_tag = resp.headers.to().ok().and_then(|t| t.tag().map(Bytes::copy_from_slice));
        if let Some(target) = contact_of_response(&resp) {
            d.remote_target = target;
        }
        let mut rr: Vec<Bytes> = resp.headers.get_all_bytes(&HeaderName::RecordRoute).collect();
        rr.reverse();
        d.route_set = rr;
        // The ACK has the INVITE's CSeq (§13.2.2.4), whatever was sent on the early dialog since (PRACK, UPDATE)
        // or how far a standby that took over moved the dialog's CSeq.
        let invite_cseq = b.invite.request().and_then(|r| r.headers.cseq().ok().map(|c| c.seq)).unwrap_or(d.local_cseq);
        let ack = d.ack(invite_cseq, &ack_branch(&b.invite_key));
        // Kept as sent where a standby's record needs it, else built again in the rare case ([`kept`]).
        b.ack = Some(if self.replicate { AckB::Wire(kept::wire(&ack)) } else { AckB::Rebuilt(invite_cseq) });
        ctx.txns.send_ack(d.peer, ack);
        let trunk = b.trunk;
        call.attempts.on_outcome(Outcome::Answered, &call.plan.trunk(trunk).failover, ctx.now);
        call.cdr_attempts.push(CdrAttempt {
            trunk: call.plan.trunk(trunk).name.clone(),
            call_id: String::from_utf8_lossy(&b.dialog.call_id).into_owned(),
            status: resp.status,
        });
        if b.cancel_wanted || call.state != State::Routing {
            // CANCEL raced the 200 (§9.1: the call is up on B's side): hang it up.
            call.release.get_or_insert(("cancel", "a", 487));
            return self.end_call(ctx, id, None);
        }
        if let Some((status, reason)) = media_failed {
            // The carrier answered with SDP we cannot anchor: the caller gets the failure, the carrier a BYE.
            answer_a(ctx, call, status, Bytes::from_static(reason.as_bytes()));
            call.release = Some(("media_error", "b", status));
            return self.end_call(ctx, id, None);
        }
        ctx.observe(Observation::CallAnswered { trunk });
        call.state = State::Confirmed;
        call.answer = Some(ctx.now);
        // Only an attempt under way uses these; an answered call lives on for minutes.
        call.attempts.settle();
        call.b_gateways = Vec::new();
        let pass = &call.plan.trunk(call.a_trunk).pass_headers;
        let Some(a_invite) = call.a_invite.request() else { return };
        let ok =
            build::response_to(&a_invite, resp.status, resp.reason.clone(), &call.a, Some(&resp), pass, ctx.server);
        drop(a_invite);
        ctx.respond(&call.a_invite_key, ok.clone());
        // Answered: from now on the two INVITEs are needed only as a standby's record has them ([`kept`]), and
        // the dialogs, which live as long as the call, go into an allocation each (which lets A's datagram go).
        call.a_invite.settle(self.replicate);
        let old_a = (call.a.call_id.clone(), call.a.local_tag.clone());
        call.a.compact();
        let mut rekey = vec![(old_a, (call.a.call_id.clone(), call.a.local_tag.clone()), Leg::A)];
        if let Some(b) = call.b.as_mut() {
            b.invite.settle(self.replicate);
            let old_b = (b.dialog.call_id.clone(), b.dialog.local_tag.clone());
            b.dialog.compact();
            rekey.push((old_b, (b.dialog.call_id.clone(), b.dialog.local_tag.clone()), Leg::B));
        }
        for (old, new, leg) in rekey {
            // An exact entry's key must point into the compact text too, or it keeps the old allocations.
            self.by_dialog.remove(&old.0, &old.1, (id, leg));
            self.by_dialog.insert(&new.0, &new.1, (id, leg));
        }
        let Some(call) = self.calls.get_mut(&id) else { return };
        // Only a standby taking over a call being set up resends it; an answered call's record has none.
        call.a_provisional = None;
        call.pending_2xx = Some(Box::new(Pending2xx {
            resp: ok,
            interval: ctx.t1,
            next: ctx.now + ctx.t1,
            give_up: ctx.now + 64 * ctx.t1,
        }));
        self.timers.push(Reverse((ctx.now + ctx.t1, id, Timer::Retransmit2xx)));
        if let Some(max) = call.plan.max_duration {
            self.timers.push(Reverse((ctx.now + max, id, Timer::MaxDuration)));
        }
        if let Some(every) = call.plan.keepalive {
            self.timers.push(Reverse((ctx.now + every, id, Timer::Keepalive)));
        }
        if let Some(at) = session_expiry(&resp, ctx.now) {
            call.session_expiry = Some(at);
            self.timers.push(Reverse((at, id, Timer::SessionExpiry)));
        }
        self.replicate_call(ctx, id);
    }

    /// Sends the CANCEL leg B is waiting to send, once B has answered provisionally (§9.1).
    fn maybe_cancel_b(&mut self, ctx: &mut Ctx, id: CallRef) {
        let Some(b) = self.calls.get_mut(&id).and_then(|c| c.b.as_mut()) else { return };
        if !(b.cancel_wanted && b.provisional) || b.cancel_sent {
            return;
        }
        // B's INVITE is parsed until the call is answered ([`kept`]), and an answered call has nothing to cancel.
        let Some(cancel) = b.invite.request().map(|invite| build::cancel_for(&invite)) else { return };
        b.cancel_sent = true;
        let peer = b.dialog.peer;
        // The INVITE waits 64*T1 for its final response, then ends as timed out, and the call with it.
        ctx.txns.cancel_sent(ctx.now, &b.invite_key);
        if let Ok(k) = ctx.txns.send_request(ctx.now, peer, cancel) {
            self.by_client.insert(k, (id, Purpose::Cancel));
        }
    }

    /// A CANCEL for leg A's INVITE, on its own server transaction `key`.
    pub fn on_cancel(&mut self, ctx: &mut Ctx, key: TransactionKey, cancel: Request) {
        let Some(id) = TransactionKey::cancelled_invite(&cancel).and_then(|k| self.by_invite.get(&k).copied()) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&id) else { return };
        let ok = build::response_to(&cancel, 200, Bytes::from_static(b"OK"), &call.a, None, &[], ctx.server);
        ctx.respond(&key, ok);
        if call.state != State::Routing {
            return;
        }
        self.abort_setup(ctx, id, 487, "Request Terminated", ("cancel", "a"));
    }

    /// An in-dialog request on server transaction `key`.
    pub fn on_in_dialog(&mut self, ctx: &mut Ctx, key: TransactionKey, req: Request) {
        let Some((id, leg)) = dialog_key(&req).and_then(|(c, t)| self.find_dialog(&c, &t)) else { return };
        let Some(call) = self.calls.get_mut(&id) else { return };
        let from = if leg == Leg::A { &call.a } else { &call.b.as_ref().expect("leg b of a B dialog").dialog };
        if req.method == Method::Bye {
            let ok = build::response_to(&req, 200, Bytes::from_static(b"OK"), from, None, &[], ctx.server);
            ctx.respond(&key, ok);
            if call.state == State::Routing && leg == Leg::B {
                // BYE on an early dialog of B: treat as a failure of that carrier.
                return;
            }
            if call.state == State::Ending {
                // The call is ending already (our BYEs crossed this one, or the carrier's INVITE is being
                // cancelled): it ends when those do; ending it again would drop a carrier still ringing.
                return;
            }
            if call.state == State::Routing {
                // The caller left its early dialog (RFC 3261 §15.1.2): its INVITE still needs a final answer
                // (487), and the carrier its CANCEL, as for a CANCEL.
                return self.abort_setup(ctx, id, 487, "Request Terminated", ("bye", "a"));
            }
            call.release.get_or_insert(("bye", leg.label(), 200));
            return self.end_call(ctx, id, Some(leg));
        }
        // PRACK and UPDATE on the early dialog (RFC 3262, RFC 3311) cross once B has answered provisionally.
        let early = call.state == State::Routing
            && matches!(req.method, Method::Prack | Method::Update)
            && call.b.as_ref().is_some_and(|b| b.dialog.remote_tag.is_some() && !b.cancel_wanted);
        if early
            && leg == Leg::A
            && req.method == Method::Prack
            && call.reliable.is_some_and(|r| r.pracked && build::rack_rseq(&req) == Some(r.rseq))
        {
            // A's PRACK again after a takeover (its 200 was lost with the other box): B has acknowledged it
            // already, and a second PRACK would get a 481 there (RFC 3262 §3). Answered here.
            let ok = build::response_to(&req, 200, Bytes::from_static(b"OK"), from, None, &[], ctx.server);
            return ctx.respond(&key, ok);
        }
        if call.state != State::Confirmed && !early {
            // Other mid-setup requests (INFO, or PRACK/UPDATE before B has an early dialog): 500 + Retry-After.
            let r = build::response_to(
                &req,
                500,
                Bytes::from_static(b"Server Internal Error"),
                from,
                None,
                &[],
                ctx.server,
            );
            let mut r = r;
            r.headers.push(HeaderName::RetryAfter, "1");
            return ctx.respond(&key, r);
        }
        // An offer or answer in the request (re-INVITE, UPDATE; hold, resume, a new address) is anchored first.
        let locals = Self::sip_locals(call);
        // A PRACK answers an offer in a reliable 18x (RFC 3262 §5); re-INVITE and UPDATE carry offers.
        let kind = if req.method == Method::Prack { SdpKind::Answer } else { SdpKind::Offer };
        let exchange = Self::exchange(call, kind, None);
        let mut req = req;
        match self.anchor(ctx, id, leg, exchange, &req.headers, &req.body, locals) {
            Ok(body) => req.body = body,
            Err(e) => {
                let Some(call) = self.calls.get(&id) else { return };
                let from = if leg == Leg::A { &call.a } else { &call.b.as_ref().expect("leg b of a B dialog").dialog };
                let (status, reason) = Self::media_status(&e);
                let r = build::response_to(
                    &req,
                    status,
                    Bytes::from_static(reason.as_bytes()),
                    from,
                    None,
                    &[],
                    ctx.server,
                );
                return ctx.respond(&key, r);
            }
        }
        let Some(call) = self.calls.get_mut(&id) else { return };
        // Relay across: a new request on the other leg's dialog, its answer back on this transaction.
        let pass_to = match leg.other() {
            Leg::A => call.plan.trunk(call.a_trunk).pass_headers.clone(),
            Leg::B => call.b.as_ref().map(|b| call.plan.trunk(b.trunk).pass_headers.clone()).unwrap_or_default(),
        };
        let branch = ctx.ids.branch();
        // Only a PRACK needs it, and only while the call is set up, when B's INVITE is parsed ([`kept`]).
        let b_invite_cseq = match (req.method == Method::Prack, call.b.as_ref()) {
            (true, Some(b)) => b.invite.request().and_then(|r| r.headers.cseq().ok().map(|c| c.seq)).unwrap_or(1),
            _ => 1,
        };
        let to = match leg.other() {
            Leg::A => &mut call.a,
            Leg::B => &mut call.b.as_mut().expect("a confirmed or early call has leg b").dialog,
        };
        let mut fwd = build::relay_request(&req, to, &branch, &pass_to);
        if req.method == Method::Prack {
            // RAck names the reliable response's RSeq (relayed unchanged) and B's own INVITE CSeq.
            if let Some(rseq) = req.headers.get(&HeaderName::RAck).and_then(|v| v.split(|c| *c == b' ').next()) {
                let rseq = String::from_utf8_lossy(rseq).into_owned();
                fwd.headers.set(HeaderName::RAck, format!("{rseq} {b_invite_cseq} INVITE"));
            }
        }
        let peer = to.peer;
        match ctx.txns.send_request(ctx.now, peer, fwd) {
            Ok(k) => {
                self.by_client.insert(k, (id, Purpose::Relay { back: key, request: Box::new(req) }));
            }
            Err(_) => {
                ctx.observe(Observation::Dropped { reason: "relay_failed" });
                ctx.respond(&key, Response::to_request(&req, 500, "Server Internal Error"));
            }
        }
    }

    fn relay_back(&mut self, ctx: &mut Ctx, id: CallRef, back: &TransactionKey, request: &Request, resp: &Response) {
        // The requester's leg is the one whose dialog the request matched.
        let req_leg = dialog_key(request).and_then(|(c, t)| self.find_dialog(&c, &t)).map_or(Leg::A, |(_, l)| l);
        let Some(call) = self.calls.get(&id) else {
            // The call ended while the request was relayed: its dialog is gone, and the requester's transaction
            // still needs its final answer (left open, it would never end).
            if resp.status >= 200 {
                ctx.respond(back, Response::to_request(request, 481, "Call/Transaction Does Not Exist"));
            }
            return;
        };
        let locals = Self::sip_locals(call);
        let mut anchored = None;
        if (101..300).contains(&resp.status) && !resp.body.is_empty() {
            // The answer to the request's offer; to a request without one, an offer.
            let kind = if request.body.is_empty() { SdpKind::Offer } else { SdpKind::Answer };
            let exchange = Self::exchange(call, kind, None);
            let body =
                self.anchor(ctx, id, req_leg.other(), exchange, &resp.headers, &resp.body, locals).unwrap_or_default();
            let mut r = resp.clone();
            r.body = body;
            anchored = Some(r);
        }
        let resp = anchored.as_ref().unwrap_or(resp);
        let Some(call) = self.calls.get_mut(&id) else { return };
        let (here, there_trunk) = match req_leg {
            Leg::A => (&call.a, call.a_trunk),
            Leg::B => (&call.b.as_ref().expect("b").dialog, call.b.as_ref().expect("b").trunk),
        };
        let pass = &call.plan.trunk(there_trunk).pass_headers;
        let r = build::response_to(request, resp.status, resp.reason.clone(), here, Some(resp), pass, ctx.server);
        ctx.respond(back, r);
        if resp.is_success() && matches!(request.method, Method::Invite | Method::Update) {
            // A session refresh (RFC 4028 §10): the interval starts again.
            if let Some(at) = session_expiry(resp, ctx.now) {
                call.session_expiry = Some(at);
                self.timers.push(Reverse((at, id, Timer::SessionExpiry)));
            }
        }
        let mut refreshed = resp.is_success() && matches!(request.method, Method::Invite | Method::Update);
        if resp.is_success() && request.method == Method::Prack && call.state == State::Routing {
            let rseq = build::rack_rseq(request);
            if let Some(rel) = call.reliable.as_mut().filter(|r| Some(r.rseq) == rseq && !r.pracked) {
                rel.pracked = true;
                refreshed = true;
            }
        }
        if resp.is_success() && request.method == Method::Invite {
            // Our re-INVITE on the other leg was answered: ACK it there now; the requester ACKs ours to it.
            let there = match req_leg.other() {
                Leg::A => &mut call.a,
                Leg::B => &mut call.b.as_mut().expect("b").dialog,
            };
            if let Ok(c) = resp.headers.cseq() {
                let ack = there.ack(c.seq, &ctx.ids.branch());
                ctx.txns.send_ack(there.peer, ack);
            }
        }
        if refreshed {
            // New media addresses, a new session interval, a PRACK answered: the standby must know them.
            self.replicate_call(ctx, id);
        }
    }

    /// An ACK (for a 2xx) or a 2xx retransmission that no transaction claimed.
    pub fn on_stray(&mut self, ctx: &mut Ctx, msg: &crate::msg::Message) -> bool {
        match msg {
            crate::msg::Message::Request(req) if req.method == Method::Ack => {
                let found = dialog_key(req).and_then(|(c, t)| self.find_dialog(&c, &t));
                let Some((id, Leg::A)) = found else { return found.is_some() };
                if let Some(call) = self.calls.get_mut(&id) {
                    call.pending_2xx = None;
                    if !req.body.is_empty() {
                        // An answer in the ACK (the offer came in our 2xx): the relay learns A's media address.
                        let locals = Self::sip_locals(call);
                        let exchange = Self::exchange(call, SdpKind::Answer, None);
                        let _ = self.anchor(ctx, id, Leg::A, exchange, &req.headers, &req.body, locals);
                    }
                }
                true
            }
            crate::msg::Message::Response(resp) if resp.is_success() => self.ack_again(ctx, None, resp),
            _ => false,
        }
    }

    /// B repeats its 2xx to our INVITE (`invite`, when its transaction passed it up in RFC 6026's Accepted
    /// state): our ACK was lost, and is sent again (§13.2.2.4). Whether the 2xx belongs to a call of ours.
    fn ack_again(&mut self, ctx: &mut Ctx, invite: Option<&TransactionKey>, resp: &Response) -> bool {
        // Leg B's dialog is keyed by its From tag (ours).
        let call_id = resp.headers.get_bytes(&HeaderName::CallId).unwrap_or_default();
        let tag = resp.headers.from().ok().and_then(|f| f.tag().map(Bytes::copy_from_slice)).unwrap_or_default();
        let Some((id, Leg::B)) = self.find_dialog(&call_id, &tag) else { return false };
        let b = self.calls.get(&id).and_then(|c| c.b.as_ref());
        if let Some(b) = b.filter(|b| invite.is_none_or(|k| *k == b.invite_key)) {
            if let Some(ack) = b.ack_request() {
                ctx.observe(Observation::Retransmission { direction: "out" });
                ctx.txns.send_ack(b.dialog.peer, ack);
            }
        }
        true
    }

    /// Fires call timers due at `now`.
    pub fn handle_timeout(&mut self, ctx: &mut Ctx) {
        while let Some(Reverse((at, id, timer))) = self.timers.peek().copied() {
            if at > ctx.now {
                break;
            }
            self.timers.pop();
            let Some(call) = self.calls.get_mut(&id) else { continue };
            match timer {
                Timer::Retransmit2xx => {
                    let Some(p) = call.pending_2xx.as_mut() else { continue };
                    if ctx.now >= p.give_up {
                        // No ACK for our 2xx: the caller is gone (§13.3.1.4): end the call.
                        call.pending_2xx = None;
                        call.release.get_or_insert(("ack_timeout", "sbc", 200));
                        self.end_call(ctx, id, None);
                        continue;
                    }
                    ctx.out.push_back(Output::Transmit { peer: call.a.peer, bytes: p.resp.to_bytes() });
                    ctx.out.push_back(Output::Observe(Observation::Retransmission { direction: "out" }));
                    p.interval = (p.interval * 2).min(ctx.t2);
                    p.next = ctx.now + p.interval;
                    let next = p.next;
                    self.timers.push(Reverse((next, id, Timer::Retransmit2xx)));
                }
                Timer::MaxDuration => {
                    if call.state == State::Confirmed {
                        call.release = Some(("max_duration", "sbc", 200));
                        self.end_call(ctx, id, None);
                    }
                }
                Timer::SessionExpiry => {
                    if call.state == State::Confirmed && call.session_expiry == Some(at) {
                        call.release = Some(("session_expired", "sbc", 200));
                        self.end_call(ctx, id, None);
                    }
                }
                Timer::Keepalive => {
                    if call.state != State::Confirmed {
                        continue;
                    }
                    let mut probes = Vec::new();
                    let branch = ctx.ids.branch();
                    probes.push((Leg::A, call.a.peer, call.a.request(Method::Options, &branch)));
                    if let Some(b) = call.b.as_mut() {
                        let branch = ctx.ids.branch();
                        probes.push((Leg::B, b.dialog.peer, b.dialog.request(Method::Options, &branch)));
                    }
                    for (leg, peer, req) in probes {
                        if let Ok(k) = ctx.txns.send_request(ctx.now, peer, req) {
                            self.by_client.insert(k, (id, Purpose::Keepalive(leg)));
                        }
                    }
                    if let Some(every) = call.plan.keepalive {
                        self.timers.push(Reverse((ctx.now + every, id, Timer::Keepalive)));
                    }
                }
                Timer::PostDial => {
                    if call.state != State::Routing {
                        continue;
                    }
                    // Too long without an answer: cancel the carrier and answer the caller.
                    self.abort_setup(ctx, id, 408, "Request Timeout", ("post_dial_timeout", "sbc"));
                }
            }
        }
    }

    /// Ends a call still being set up: the final `status` to A now, a CANCEL to the carrier being tried (sent
    /// once it has answered provisionally); the call ends when that carrier's INVITE does.
    fn abort_setup(
        &mut self,
        ctx: &mut Ctx,
        id: CallRef,
        status: u16,
        reason: &'static str,
        (cause, by): (&'static str, &'static str),
    ) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        call.release = Some((cause, by, status));
        call.ended.get_or_insert(ctx.now);
        answer_a(ctx, call, status, Bytes::from_static(reason.as_bytes()));
        call.state = State::Ending;
        self.replicate_setup_end(ctx, id);
        let Some(call) = self.calls.get_mut(&id) else { return };
        match call.b.as_mut() {
            Some(b) => {
                b.cancel_wanted = true;
                self.maybe_cancel_b(ctx, id);
            }
            None => self.finish(ctx, id),
        }
    }

    /// Answers leg A with a final failure and ends the call.
    fn fail_a(&mut self, ctx: &mut Ctx, id: CallRef, status: u16, reason: &'static str, by: &'static str) {
        self.fail_a_with(ctx, id, status, Bytes::from_static(reason.as_bytes()), by)
    }

    fn fail_a_with(&mut self, ctx: &mut Ctx, id: CallRef, status: u16, reason: Bytes, by: &'static str) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        if call.state == State::Routing {
            answer_a(ctx, call, status, reason);
        }
        call.release.get_or_insert(("failed", by, status));
        self.finish(ctx, id);
    }

    /// Ends a confirmed call: BYE on every leg but `from` (which sent one).
    fn end_call(&mut self, ctx: &mut Ctx, id: CallRef, from: Option<Leg>) {
        self.end_call_gone(ctx, id, from, None);
    }

    /// Ends call `id` with BYE to each leg but `from` (the leg that sent its own BYE). A leg known to be `gone`
    /// (its media or keepalives died) still gets its BYE, in case only its media was lost, but the call is not
    /// kept for its answer: the CDR comes out once the live leg's BYE is answered or times out, not 32 s later
    /// when the dead leg's does (its transaction then finds no call and ends quietly).
    fn end_call_gone(&mut self, ctx: &mut Ctx, id: CallRef, from: Option<Leg>, gone: Option<Leg>) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        call.state = State::Ending;
        call.pending_2xx = None;
        call.ended.get_or_insert(ctx.now);
        let mut byes = Vec::new();
        if from != Some(Leg::A) && call.answer.is_some() {
            let branch = ctx.ids.branch();
            byes.push((call.a.peer, call.a.request(Method::Bye, &branch), gone != Some(Leg::A)));
        }
        if from != Some(Leg::B) {
            if let Some(b) = call.b.as_mut().filter(|b| b.dialog.remote_tag.is_some() && b.ack.is_some()) {
                let branch = ctx.ids.branch();
                byes.push((b.dialog.peer, b.dialog.request(Method::Bye, &branch), gone != Some(Leg::B)));
            }
        }
        call.byes = 0;
        for (peer, bye, awaited) in byes {
            if let Ok(k) = ctx.txns.send_request(ctx.now, peer, bye) {
                if awaited {
                    self.by_client.insert(k, (id, Purpose::Bye));
                    call.byes += 1;
                }
            }
        }
        if call.byes == 0 {
            self.finish(ctx, id);
        }
    }

    fn bye_done(&mut self, ctx: &mut Ctx, id: CallRef) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        call.byes = call.byes.saturating_sub(1);
        if call.byes == 0 {
            self.finish(ctx, id);
        }
    }

    /// Removes the call and writes its CDR.
    fn finish(&mut self, ctx: &mut Ctx, id: CallRef) {
        let Some(call) = self.calls.remove(&id) else { return };
        self.replicate_end(ctx, id, call.ha_version);
        self.by_dialog.remove(&call.a.call_id, &call.a.local_tag, (id, Leg::A));
        self.by_invite.remove(&call.a_invite_key);
        // Client transactions still open for this call stay in `by_client` until they end (final response or
        // timer B/F, at most 32 s): their events then find no call and do nothing. Call numbers are never reused,
        // so they cannot reach another call, and no scan of every transaction is needed per call.
        self.counters[call.a_trunk.0 as usize].end();
        let mut b_call_id = None;
        let mut trunk_out = None;
        if let Some(b) = &call.b {
            self.by_dialog.remove(&b.dialog.call_id, &b.dialog.local_tag, (id, Leg::B));
            self.counters[b.trunk.0 as usize].end();
            b_call_id = Some(String::from_utf8_lossy(&b.dialog.call_id).into_owned());
            trunk_out = Some(call.plan.trunk(b.trunk).name.clone());
            ctx.observe(Observation::CallEnded { trunk: b.trunk });
        }
        if trunk_out.is_none() {
            if let Some(last) = call.cdr_attempts.last() {
                trunk_out = Some(last.trunk.clone());
                b_call_id = Some(last.call_id.clone());
            }
        }
        ctx.observe(Observation::CallEnded { trunk: call.a_trunk });
        let mut media_session = None;
        if let Some(media) = self.media.as_mut().filter(|m| m.contains(SessionId(id.0))) {
            // Removal comes out before the CDR, so the driver has the relay's final figures when it writes it.
            media.remove(ctx.now, SessionId(id.0));
            while let Some(cmd) = media.poll_command() {
                ctx.out.push_back(Output::Media(cmd));
            }
            media_session = Some(SessionId(id.0));
        }
        let (cause, by, status) = call.release.unwrap_or(("unknown", "sbc", 500));
        ctx.out.push_back(Output::Cdr(Box::new(Cdr {
            a_call_id: String::from_utf8_lossy(&call.a.call_id).into_owned(),
            b_call_id,
            trunk_in: call.plan.trunk(call.a_trunk).name.clone(),
            trunk_out,
            caller: call.caller,
            called_in: call.called_in,
            called_out: call.called_out,
            route_prefix: Some(call.route_prefix),
            attempts: call.cdr_attempts,
            setup: call.setup,
            ringing: call.ringing,
            answer: call.answer,
            end: call.ended.unwrap_or(ctx.now),
            status: if call.answer.is_some() { 200 } else { status },
            release_cause: cause,
            released_by: by,
            media_session,
            media: None,
        })));
    }

    /// Closes every remaining call's record without waiting for its peers any longer (the end of a shutdown's
    /// grace time): their CDRs come out with what is known.
    pub fn abandon_all(&mut self, ctx: &mut Ctx) {
        let ids: Vec<CallRef> = self.calls.keys().copied().collect();
        for id in ids {
            if let Some(call) = self.calls.get_mut(&id) {
                call.release.get_or_insert(("shutdown", "sbc", 503));
            }
            self.finish(ctx, id);
        }
    }

    /// Ends every call (shutdown): BYE to both sides of confirmed calls, 503 to calls being set up. CDRs follow.
    pub fn shutdown(&mut self, ctx: &mut Ctx) {
        self.end_all(ctx, "shutdown");
    }

    /// [`Calls::shutdown`] with the release cause `cause` in the CDRs (`shutdown`, `drain_deadline`).
    pub fn end_all(&mut self, ctx: &mut Ctx, cause: &'static str) {
        let ids: Vec<CallRef> = self.calls.keys().copied().collect();
        for id in ids {
            let Some(call) = self.calls.get_mut(&id) else { continue };
            match call.state {
                // The carrier gets its CANCEL (and an ACK + BYE should its 200 cross it) within the grace time.
                State::Routing => self.abort_setup(ctx, id, 503, "Service Unavailable", (cause, "sbc")),
                State::Confirmed => {
                    call.release = Some((cause, "sbc", 200));
                    self.end_call(ctx, id, None);
                }
                State::Ending => self.finish(ctx, id),
            }
        }
    }
}

/// Leg B's INVITE again, answering the carrier's 401/407 challenge with the trunk's credentials (RFC 3261
/// §22.2): same Call-ID and From tag, next CSeq, new branch. `None` when the trunk has no credentials or the
/// challenge cannot be read; the 401/407 then ends the attempt like any failure.
/// Leg A's INVITE gets the final failure `status`: the one place a call is refused towards the caller once it
/// exists.
fn answer_a(ctx: &mut Ctx, call: &Call, status: u16, reason: Bytes) {
    if let Some(a_invite) = call.a_invite.request() {
        let r = build::response_to(&a_invite, status, reason, &call.a, None, &[], ctx.server);
        ctx.respond(&call.a_invite_key, r);
    }
    ctx.observe(Observation::CallRejected { status });
}

fn authorized_retry(ctx: &mut Ctx, b: &mut LegB, resp: &Response, trunk: &crate::routing::Trunk) -> Option<Request> {
    use crate::policy::digest::{Challenge, Client};
    let cred = trunk.auth.as_ref()?;
    let (challenge_header, answer_header) = match resp.status {
        401 => (HeaderName::WwwAuthenticate, HeaderName::Authorization),
        _ => (HeaderName::ProxyAuthenticate, HeaderName::ProxyAuthorization),
    };
    let challenge =
        resp.headers.get_all(&challenge_header).find_map(|v| Challenge::parse(std::str::from_utf8(v).ok()?).ok())?;
    let mut client = Client::new(challenge, cred.username.clone(), cred.password.clone());
    let mut r = b.invite.request()?.into_owned();
    let uri = String::from_utf8_lossy(r.uri.as_bytes()).into_owned();
    let answer = client.authorize("INVITE", &uri, &ctx.ids.tag());
    b.dialog.local_cseq += 1;
    r.headers.remove(&HeaderName::Via);
    r.headers.push_front(HeaderName::Via, crate::dialog::via(&b.dialog.peer, &ctx.ids.branch()));
    r.headers.set(HeaderName::CSeq, format!("{} INVITE", b.dialog.local_cseq));
    r.headers.remove(&answer_header);
    r.headers.push(answer_header, answer);
    Some(r)
}

/// When a session negotiated in `resp` (a 2xx with Session-Expires, RFC 4028 §4) expires, counted from `now`.
/// The refresher refreshes at half the interval; a peer that stops refreshing has gone, and the call is ended at
/// the full interval (a little later than §10's `interval - min(32 s, interval / 3)` for the non-refresher, so
/// that a refresh in flight is never cut off).
fn session_expiry(resp: &Response, now: Instant) -> Option<Instant> {
    let v = resp.headers.get(&HeaderName::SessionExpires)?;
    let digits: Vec<u8> =
        v.iter().copied().skip_while(u8::is_ascii_whitespace).take_while(u8::is_ascii_digit).collect();
    let secs: u64 = std::str::from_utf8(&digits).ok()?.parse().ok()?;
    (secs >= 90).then(|| now + Duration::from_secs(secs))
}

/// The digest credentials in a request's Proxy-Authorization, if any parse.
fn proxy_credentials(req: &Request) -> Option<DigestCredentials> {
    req.headers
        .get_all(&HeaderName::ProxyAuthorization)
        .find_map(|v| DigestCredentials::parse(std::str::from_utf8(v).ok()?).ok())
}

/// (Call-ID, To tag) of a request: the key of our side of its dialog.
fn dialog_key(req: &Request) -> Option<(Bytes, Bytes)> {
    let call_id = req.headers.get_bytes(&HeaderName::CallId)?;
    let tag = req.headers.to().ok()?.tag().map(Bytes::copy_from_slice)?;
    Some((call_id, tag))
}

/// The calling identity of leg A's INVITE: From user and display name, the number of its first
/// P-Asserted-Identity, and whether a Privacy header withholds it.
fn presented_by(req: &Request) -> Presented {
    let from = req.headers.from().ok();
    let from_user = from.as_ref().map(|f| build::user_of(&f.uri())).unwrap_or_default();
    let from_display = from
        .as_ref()
        .and_then(|f| f.display().map(|d| String::from_utf8_lossy(d).trim_matches('"').to_owned()))
        .filter(|d| !d.is_empty());
    let pai = req
        .headers
        .get_all_bytes(&HeaderName::PAssertedIdentity)
        .find_map(|v| crate::msg::NameAddr::parse(&v).ok())
        .map(|a| build::user_of(&a.uri()))
        .filter(|u| !u.is_empty());
    let privacy_id =
        req.headers.get_all(&HeaderName::Privacy).any(|v| identity::privacy_requested(&String::from_utf8_lossy(v)));
    Presented { from_user: from_user.clone(), from_display, pai, privacy_id: privacy_id || from_user == "anonymous" }
}

/// The called number as routes see it: visual separators removed (RFC 3966 §5.1.1).
fn normalise(user: &str) -> String {
    let user = user.split(';').next().unwrap_or_default();
    user.chars().filter(|c| !matches!(c, '-' | '.' | '(' | ')' | ' ')).collect()
}

fn strip_tag(v: &[u8]) -> Bytes {
    // Remove `;tag=…` from a From/To value, keeping the rest as received.
    let lower = v.to_ascii_lowercase();
    match find_sub(&lower, b";tag=") {
        Some(i) => {
            let end = v[i + 1..].iter().position(|&b| b == b';').map_or(v.len(), |j| i + 1 + j);
            let mut out = v[..i].to_vec();
            out.extend_from_slice(&v[end..]);
            out.into()
        }
        None => Bytes::copy_from_slice(v),
    }
}

fn find_sub(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

fn contact_uri(req: &Request) -> Option<Bytes> {
    match req.headers.contacts().ok()? {
        crate::msg::Contacts::Addrs(a) => a.first().map(|c| Bytes::copy_from_slice(c.uri_bytes())),
        crate::msg::Contacts::Star => None,
    }
}

fn contact_of_response(resp: &Response) -> Option<Bytes> {
    match resp.headers.contacts().ok()? {
        crate::msg::Contacts::Addrs(a) => a.first().map(|c| Bytes::copy_from_slice(c.uri_bytes())),
        crate::msg::Contacts::Star => None,
    }
}

/// Our Contact on a leg over `transport` from `local`: `sips:` when the leg uses SIPS URIs (RFC 5630 §3.1.1),
/// else `sip:` with the transport parameter for anything but UDP (RFC 3261 §19.1.1).
fn contact_for(transport: Transport, local: SocketAddr, sips: bool) -> String {
    if sips && transport == Transport::Tls {
        format!("<sips:{local}>")
    } else {
        format!("<sip:{local}{}>", build::transport_param(transport))
    }
}

/// Reason phrases of the statuses we originate.
fn reason_for(status: u16) -> &'static str {
    match status {
        404 => "Not Found",
        408 => "Request Timeout",
        480 => "Temporarily Unavailable",
        486 => "Busy Here",
        487 => "Request Terminated",
        500 => "Server Internal Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        603 => "Decline",
        _ => "Failed",
    }
}

#[cfg(test)]
mod tests;
