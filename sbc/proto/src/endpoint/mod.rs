//! The SBC's signalling core: takes received bytes and the time, decides everything, and hands back what to send.
//!
//! Call order, from the driver: [`Endpoint::handle_message`] for every message received and
//! [`Endpoint::handle_timeout`] when [`Endpoint::poll_timeout`] is reached; after either, drain
//! [`Endpoint::poll_output`] until it returns `None`. Nothing here reads a clock or touches a socket.
//!
//! Steps for one message, in this order (one obvious place for each; DESIGN.md "The public edge" has the checks
//! the driver makes before: the XDP ban map, then the per-source ban and rate of `policy::edge`, right after the
//! read):
//! 1. parse (`msg`); malformed requests are answered 400/505 when addressable ([`reject`]), and every malformed
//!    message is an offence of its source ([`Output::Offence`]);
//! 2. a request whose User-Agent is a scanner's is dropped, an offence that bans its source;
//! 3. a new call (INVITE without To tag, no transaction yet) while overloaded may be refused at once with a
//!    stateless 503 and Retry-After (`policy::overload`): refused calls cost a parse and a response, nothing
//!    more, and responses and in-dialog requests are never refused here; while draining
//!    ([`Endpoint::set_draining`]) every new call is refused the same way;
//! 4. the transaction layer (`txn`) absorbs retransmissions and matches responses;
//! 5. what no transaction claimed is disposed of: requests in a dialog go to its call; with
//!    `calls.unknown_source = "drop"` a request from a source that is no trunk gets no answer at all; the rest
//!    is answered here ([`answer`]: OPTIONS, 501, 481, 405; OPTIONS 503 while draining) or is a new call for the
//!    B2BUA, which identifies
//!    the trunk, authenticates (a wrong credential is an offence), applies the trunk's limits and routes.

pub mod admin;
pub mod answer;
pub mod canary;
mod ids;
mod probes;
mod registrations;
pub mod reject;
mod users;

pub use canary::{CanaryMediaCommand, CanaryReport, CanaryResult};
pub use ids::IdGenerator;

use crate::b2bua::{Calls, Ctx};
use crate::msg::{parse_datagram, parse_stream, HeaderName, Message, Method, Request, Response};
use crate::routing::Plan;
use crate::transport::{Peer, TlsIdentity, Transport};
use crate::txn::{self, Transactions};
use bytes::Bytes;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Settings of the core.
#[derive(Debug, Clone)]
pub struct Config {
    /// Our Server header value (RFC 3261 §20.35) on responses we originate.
    pub server: String,
    /// Transaction timers (RFC 3261 §17, Table 4).
    pub timers: txn::TimerConfig,
    /// Trunks and routes. Default: none, so every INVITE is from an unknown source.
    pub plan: Arc<Plan>,
    /// Our listen addresses, to send leg B from the one facing the carrier.
    pub locals: Vec<(Transport, SocketAddr)>,
    /// Media anchoring: every SDP crossing the B2BUA is rewritten to relay addresses. `None`: bodies cross
    /// untouched (signalling-only deployments, tests of signalling alone).
    pub media: Option<relay_proto::session::MediaConfig>,
    /// User-Agents of scanners: their requests are dropped and their sources reported.
    pub scanners: crate::policy::Scanners,
    /// Overload control of new calls.
    pub overload: crate::policy::OverloadConfig,
    /// Where the admitted share of new calls is published for the transports, which refuse what is not admitted
    /// before it is queued (the same answer per Call-ID as here).
    pub admission: std::sync::Arc<crate::policy::AdmissionGate>,
    /// How digest nonces are made: a pair's shared secret and the wall clock. Default: a secret of this core's own
    /// and its own clock.
    pub nonces: crate::policy::digest::NonceConfig,
    /// Active/active pair: the service addresses of each group. A call belongs to the group of its leg-A address:
    /// its leg B leaves from an address of the same group, and it moves with the group ([`Endpoint::take_over`],
    /// [`Endpoint::demote`]). Empty: one group.
    pub groups: Vec<Vec<std::net::IpAddr>>,
    /// Where this core's call numbers start (a multiple of [`crate::b2bua::ID_RANGE`]): the two boxes of an
    /// active/active pair both create calls, and a call adopted from the peer must never share a number with one
    /// of ours (the media relay knows sessions by it).
    pub call_id_base: u64,
    /// The SBC as registrar for a configured set of users (`[registrar]`). `None`: REGISTER is answered 405.
    pub registrar: Option<Arc<crate::registrar::RegistrarConfig>>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: format!("sbc/{}", env!("CARGO_PKG_VERSION")),
            timers: txn::TimerConfig::default(),
            plan: Arc::new(Plan::default()),
            locals: Vec::new(),
            media: None,
            scanners: crate::policy::Scanners::default(),
            overload: crate::policy::OverloadConfig::default(),
            admission: std::sync::Arc::default(),
            nonces: crate::policy::digest::NonceConfig::default(),
            groups: Vec::new(),
            call_id_base: 0,
            registrar: None,
        }
    }
}

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send these bytes.
    Transmit {
        /// To whom, from which of our addresses, on which connection.
        peer: Peer,
        /// One whole message.
        bytes: Bytes,
    },
    /// Something happened worth counting; the driver turns these into metrics. The core stays free of any
    /// metrics backend so that it can be tested by looking at these values.
    Observe(Observation),
    /// A call ended: write its record.
    Cdr(Box<crate::cdr::Cdr>),
    /// Send to the standby (hot-standby pair): a call answered, changed or ended.
    Replicate(crate::ha::Record),
    /// Tell the media relay (embedded or remote). Commands of a call come before its CDR, so the relay's final
    /// figures for a removed session are known when the CDR is written.
    Media(relay_proto::control::Command),
    /// A source did something that counts towards a ban: for the edge guard (`policy::Edge::report`).
    Offence {
        /// Who.
        source: SocketAddr,
        /// What.
        offence: crate::policy::Offence,
    },
    /// Start or stop a canary call's media ([`canary`]).
    Canary(CanaryMediaCommand),
}

/// Countable events, for metrics. Label values are all `'static` and bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Observation {
    /// A request arrived (retransmissions included).
    RequestIn { method: &'static str },
    /// A response arrived.
    ResponseIn { method: &'static str, status: u16 },
    /// We sent a request.
    RequestOut { method: &'static str },
    /// We sent a response.
    ResponseOut { method: &'static str, status: u16 },
    /// A message could not be parsed.
    ParseError { transport: Transport, reason: &'static str },
    /// A transaction was created (`ict`, `nict`, `ist`, `nist`).
    TransactionStarted { kind: &'static str },
    /// A transaction ended.
    TransactionEnded { kind: &'static str },
    /// A message was retransmitted (`out`) or a retransmission was absorbed (`in`).
    Retransmission { direction: &'static str },
    /// A message was dropped on purpose.
    Dropped { reason: &'static str },
    /// An INVITE came from a source that is no trunk.
    UnknownSource,
    /// An INVITE from this trunk lacked valid credentials and was challenged.
    AuthFailed { trunk: crate::routing::TrunkId },
    /// A call was refused or failed with this final status towards the caller.
    CallRejected { status: u16 },
    /// A call from this trunk was refused at one of its limits (`calls`, `cps`).
    TrunkLimit { trunk: crate::routing::TrunkId, which: &'static str },
    /// A route left this trunk out (`down`, `disabled`, `call_limit`, …).
    TrunkSkipped { trunk: crate::routing::TrunkId, reason: &'static str },
    /// A call came in on this trunk.
    CallStarted { trunk: crate::routing::TrunkId },
    /// A call was offered to this carrier trunk.
    CallAttempt { trunk: crate::routing::TrunkId },
    /// A trunk went up or down by its gateways' OPTIONS probes.
    TrunkState { trunk: crate::routing::TrunkId, up: bool },
    /// This carrier trunk answered a call.
    CallAnswered { trunk: crate::routing::TrunkId },
    /// This carrier trunk failed a call with this status (408 timeout, 503 transport error).
    CallFailed { trunk: crate::routing::TrunkId, status: u16 },
    /// A call on this trunk ended.
    CallEnded { trunk: crate::routing::TrunkId },
    /// An SDP could not be anchored (`sdp`: unreadable, answered 488; `no_ports`: pool empty, answered 503;
    /// `relay_down`: the remote relay is not answering, answered 503).
    MediaError { reason: &'static str },
    /// The relay saw no packet of a call for its `rtp_timeout`; the call was ended.
    MediaTimeout,
    /// A standby took over a replicated call between these trunks.
    CallAdopted { trunk_in: crate::routing::TrunkId, trunk_out: crate::routing::TrunkId },
    /// A standby took over a replicated call still being set up (leg B on `trunk_out`) and goes on with it.
    CallResumed { trunk_in: crate::routing::TrunkId, trunk_out: crate::routing::TrunkId },
    /// A new call was refused with 503 by overload control.
    OverloadRejected,
    /// Of those, one whose INVITE had waited longer than `[overload] max_wait` before the core got it.
    OverloadTooLate,
    /// A new call (`INVITE`) or an OPTIONS ping outside a dialog (`OPTIONS`) was answered 503 because the SBC is
    /// draining ([`Endpoint::set_draining`]).
    DrainRejected { method: &'static str },
    /// This trunk's registration with its carrier is now held (the trunk may take calls) or not (it is down).
    RegistrationState { trunk: crate::routing::TrunkId, registered: bool },
    /// A REGISTER of this trunk ended: `ok`, `challenged`, `forbidden`, `auth_failed`, `client_error`,
    /// `server_error`, `rejected`, `timeout`, `expired`, `no_route`, `unregistered`.
    RegistrationResult { trunk: crate::routing::TrunkId, result: &'static str },
    /// A canary call of a trunk ended: how, and its figures. Canary calls count nowhere else (not in the trunk's
    /// call counters, not in CDRs).
    CanaryResult(CanaryReport),
    /// A REGISTER to our registrar was answered: `ok`, `challenged`, `stale`, `forbidden`, `wrong_domain`,
    /// `interval_too_brief`, `bad_request`, `out_of_order` ([`crate::registrar::Registered::result`]).
    UserRegister { result: &'static str },
    /// Registered users' bindings held now (after a change: a REGISTER, an expiry, a closed flow, a replicated one).
    UserBindings { active: usize },
}

/// The Call-IDs of a message, for captures ([`Endpoint::correlation`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Correlation {
    /// The message's own Call-ID.
    pub call_id: Bytes,
    /// Leg A's Call-ID when the message is of leg B of a call in progress.
    pub leg_a: Option<Bytes>,
}

impl Correlation {
    /// The id both legs of a call share: leg A's Call-ID.
    pub fn id(&self) -> &Bytes {
        self.leg_a.as_ref().unwrap_or(&self.call_id)
    }
}

/// The signalling core.
#[derive(Debug)]
pub struct Endpoint {
    config: Config,
    ids: IdGenerator,
    txns: Transactions,
    calls: Calls,
    probes: probes::Probes,
    registrations: registrations::Registrations,
    canaries: canary::Canaries,
    /// Our registrar, when users are configured.
    registrar: Option<crate::registrar::Registrar>,
    overload: crate::policy::Overload,
    /// The latest time given to us, for deadlines that are "at once".
    last_now: Option<Instant>,
    /// The TLS identity of the message being handled, while it is handled ([`Endpoint::handle_message_from`]).
    identity: Option<Arc<TlsIdentity>>,
    /// How long the request being handled waited before the driver gave it to us (new requests only), and the wait
    /// the driver announced for the next one ([`Endpoint::observe_queue_delay`]).
    waited: Option<std::time::Duration>,
    queued_wait: Option<std::time::Duration>,
    /// Draining: new calls and OPTIONS pings are refused with 503 and this Retry-After (seconds).
    draining: Option<u32>,
    out: VecDeque<Output>,
}

impl Endpoint {
    /// A core with `config`, its identifiers seeded by `seed` (the driver passes OS randomness).
    pub fn new(config: Config, seed: u64) -> Self {
        let txns = Transactions::new(config.timers.clone());
        // The port range was checked when the config was loaded; an empty one here is a caller's bug.
        let media = config
            .media
            .clone()
            .map(|m| relay_proto::session::Sessions::new(m).expect("media.ports validated at config load"));
        let mut calls = Calls::new(config.plan.clone(), config.locals.clone(), media, config.nonces.clone());
        calls.set_groups(config.groups.clone());
        calls.set_id_base(config.call_id_base);
        calls.set_users(config.registrar.clone());
        let registrar = config.registrar.clone().map(|r| crate::registrar::Registrar::new(r, config.nonces.clone()));
        let probes = probes::Probes::new(&config.plan, &config.locals);
        let registrations = registrations::Registrations::new(&config.plan, &config.locals);
        let canaries = canary::Canaries::new(&config.plan, &config.locals);
        // A registering trunk is down until its registrar accepts us.
        for t in registrations.trunks() {
            calls.set_trunk_up(t, false);
        }
        let overload = crate::policy::Overload::new(config.overload);
        Self {
            config,
            ids: IdGenerator::new(seed),
            txns,
            calls,
            probes,
            registrations,
            canaries,
            registrar,
            overload,
            last_now: None,
            identity: None,
            waited: None,
            queued_wait: None,
            draining: None,
            out: VecDeque::new(),
        }
    }

    /// Our listen addresses, as the core knows them.
    pub fn locals(&self) -> &[(Transport, SocketAddr)] {
        &self.config.locals
    }

    /// A reload: new calls are routed by `plan` and leave from `locals` (the listen addresses now bound); calls in
    /// progress keep the plan they started with, a trunk removed while its calls are up lives on in theirs. Probes
    /// follow the new gateways (a gateway kept keeps its health). `plan` must keep the current plan's trunk ids (see
    /// [`Calls::set_plan`]); registrations are not changed here (the server refuses a reload that changes them).
    pub fn reload(&mut self, now: Instant, plan: Arc<Plan>, locals: Vec<(Transport, SocketAddr)>) {
        self.last_now = Some(now);
        let changes = self.probes.reload(&self.config.plan, &plan, &locals);
        self.calls.set_plan(plan.clone(), locals.clone());
        self.config.plan = plan;
        self.config.locals = locals;
        self.apply_trunk_changes(changes);
    }

    /// A new request waited `delay` in the driver's queue before it reached us, at `now`: the overload signal.
    /// The next message handled ([`Endpoint::handle_message_from`]) is that request: a new call whose INVITE waited
    /// longer than `[overload] max_wait` is refused.
    pub fn observe_queue_delay(&mut self, now: Instant, delay: std::time::Duration) {
        self.queued_wait = Some(delay);
        self.overload.on_delay(now, delay);
        self.publish_admission();
    }

    fn publish_admission(&self) {
        self.config.admission.publish(self.overload.fraction());
    }

    /// At `now`, new requests were dropped at the driver's full queue, or the oldest queued one has waited `waited`
    /// without being served (responses and in-dialog requests go first): a backlog no delay sample shows.
    pub fn observe_queue_backlog(&mut self, now: Instant, waited: std::time::Duration) {
        self.overload.on_backlog(now, waited);
        self.publish_admission();
    }

    /// The process used `cpu` cores' worth of CPU lately (the driver samples it).
    pub fn observe_cpu(&mut self, now: Instant, cpu: f64) {
        self.overload.on_cpu(cpu);
        self.overload.adjust(now);
        self.publish_admission();
    }

    /// The fraction of new calls admitted now (1.0: not overloaded).
    pub fn admission(&self) -> f64 {
        self.overload.fraction()
    }

    /// Starts (`Some(retry_after)`, in seconds) or stops (`None`) draining: while draining, every new call is
    /// refused statelessly with 503 and that Retry-After, and OPTIONS outside a dialog are answered 503 too, so
    /// upstream proxies and carriers send their calls elsewhere. Calls in progress, those being set up included,
    /// and every in-dialog request go on as before.
    pub fn set_draining(&mut self, retry_after: Option<u32>) {
        self.draining = retry_after;
    }

    /// Whether new calls are being refused for a drain.
    pub fn is_draining(&self) -> bool {
        self.draining.is_some()
    }

    /// The calls in progress.
    pub fn calls(&self) -> &Calls {
        &self.calls
    }

    /// Transactions alive (the call-logic fuzzer checks none is left once every timer fired).
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn transaction_count(&self) -> usize {
        self.txns.len()
    }

    /// Starts (`on`) or stops registering with the carriers of registering trunks. A box alone starts at once; in
    /// a pair, the active does, at once after a takeover, and a box that becomes standby stops (refreshing no more,
    /// un-registering nothing: the peer holds the binding now). Canary calls follow the same rule: only the box
    /// that registers places them.
    pub fn set_registering(&mut self, now: Instant, on: bool) {
        self.last_now = Some(now);
        self.canaries.set_active(on);
        if on == self.registrations.is_active() {
            return;
        }
        if on {
            self.registrations.start(now);
            let changes =
                self.registrations.send_due(now, &mut self.txns, &mut self.ids, &self.config.server, &mut self.out);
            self.apply_registration_changes(changes);
        } else {
            let changes = self.registrations.stop(&mut self.out);
            self.apply_registration_changes(changes);
        }
        self.drain_txns(now);
    }

    /// Sends again at once every REGISTER still waiting for its first answer, as a new transaction: the driver
    /// knows they could not leave (a takeover's REGISTERs go out before the service addresses are up).
    pub fn resend_registrations(&mut self, now: Instant) {
        self.last_now = Some(now);
        let changes = self.registrations.resend_unanswered(
            now,
            &mut self.txns,
            &mut self.ids,
            &self.config.server,
            &mut self.out,
        );
        self.apply_registration_changes(changes);
        self.drain_txns(now);
    }

    /// Whether un-REGISTERs sent at [`Endpoint::shutdown`] still wait for their answers.
    pub fn unregistering(&self) -> bool {
        self.registrations.unregistering()
    }

    /// The trunks with a canary call, and the gateway each calls with the local address it calls from (`None`: no
    /// gateway of the trunk is reachable from our addresses, so it never runs): the driver opens an RTP socket on
    /// that address for each and says where with [`Endpoint::set_canary_media`].
    pub fn canary_trunks(&self) -> Vec<(crate::routing::TrunkId, Option<Peer>)> {
        self.canaries.trunks().collect()
    }

    /// The driver's RTP socket for `trunk`'s canary calls: offered in their SDP.
    pub fn set_canary_media(&mut self, trunk: crate::routing::TrunkId, addr: SocketAddr) {
        self.canaries.set_media(trunk, addr);
    }

    /// What `trunk`'s canary media sent and received, after [`CanaryMediaCommand::Stop`]: the canary's result
    /// comes out of [`Endpoint::poll_output`].
    pub fn handle_canary_media(&mut self, now: Instant, trunk: crate::routing::TrunkId, sent: u64, received: u64) {
        self.last_now = Some(now);
        self.canaries.on_media_report(trunk, sent, received, &mut self.out);
    }

    /// Marks a trunk usable or not, from its OPTIONS probes.
    pub fn set_trunk_up(&mut self, trunk: crate::routing::TrunkId, up: bool) {
        self.calls.set_trunk_up(trunk, up);
    }

    /// An event from the media relay: an idle session ends its call (`rtp_timeout`); a socket that could not be
    /// opened is counted. Figures and pongs are the driver's business.
    pub fn handle_media_event(&mut self, now: Instant, event: &relay_proto::control::Event) {
        self.last_now = Some(now);
        let (mut ctx, calls) = self.ctx(now);
        calls.on_media_event(&mut ctx, event);
        self.drain_txns(now);
    }

    /// The connection `peer.conn` over `peer.transport` closed, at `now`. Over a flow-bound transport (WS, WSS: see
    /// [`Transport::is_flow_bound`]) its peer is unreachable from now on: its calls end (BYE to the other leg, CDR
    /// release cause [`crate::b2bua::CONNECTION_CLOSED`]) and the registrar's bindings made over it are dropped. Over TCP and TLS nothing happens: the peer reconnects,
    /// or we dial it. Returns how many calls were ended.
    pub fn handle_connection_closed(&mut self, now: Instant, peer: Peer) -> usize {
        self.last_now = Some(now);
        let Some(conn) = peer.conn.filter(|_| peer.transport.is_flow_bound()) else { return 0 };
        let (mut ctx, calls) = self.ctx(now);
        let n = calls.connection_closed(&mut ctx, conn);
        self.drain_txns(now);
        // A user registered over this socket can be reached over nothing else: its bindings go with it.
        self.flow_closed(now, conn);
        n
    }

    /// Whether the media relay answers. While it does not, calls that need media are refused with 503 at once
    /// instead of being set up without it.
    pub fn set_media_available(&mut self, up: bool) {
        self.calls.set_media_available(up);
    }

    /// Emits replication records ([`Output::Replicate`]) for calls being set up and answered from now on (the active
    /// of a pair).
    pub fn set_replication(&mut self, on: bool) {
        self.calls.set_replication(on);
    }

    /// Every call being set up or answered, as a record: the snapshot for a standby that (re)connects.
    pub fn snapshot(&self, now: Instant) -> Vec<crate::ha::Record> {
        let mut all = self.calls.snapshot(now);
        all.extend(self.binding_records(now));
        all
    }

    /// A record from the active, received at `now` (the standby's side): kept until [`Endpoint::take_over`].
    pub fn apply_record(&mut self, now: Instant, record: crate::ha::Record) {
        if let crate::ha::Record::Binding(b) = &record {
            return self.apply_binding(now, b);
        }
        self.calls.apply_record(now, record);
    }

    /// The group of a replicated record's call (by its leg-A address), if groups are configured and it is in one.
    pub fn record_group(&self, record: &crate::ha::Record) -> Option<usize> {
        self.calls.record_group(record)
    }

    /// How many of our calls (being set up or answered) belong to `group`.
    pub fn calls_in_group(&self, group: usize) -> usize {
        self.calls.calls_in_group(group)
    }

    /// Calls held for the active.
    pub fn foreign_calls(&self) -> usize {
        self.calls.foreign_calls()
    }

    /// Forgets the foreign calls (before applying a fresh snapshot).
    pub fn clear_foreign(&mut self) {
        self.calls.clear_foreign();
    }

    /// The standby becomes active: every foreign call becomes ours (dialogs, timers, media). Returns how many.
    /// `group`: active/active, only the calls of that group (by index into [`Config::groups`]) and those of no
    /// group; `None`: all.
    pub fn take_over(&mut self, now: Instant, group: Option<usize>) -> usize {
        self.last_now = Some(now);
        let (mut ctx, calls) = self.ctx(now);
        let n = calls.take_over(&mut ctx, group);
        self.drain_txns(now);
        n
    }

    /// This box gives its calls up to the peer (fire drill, split brain): see `Calls::demote`. `peer_has_calls`:
    /// the peer received this box's records until now (a handover, not a healed split brain), so it resumes the
    /// calls being set up as well.
    /// `group`: active/active, only the calls of that group; `None`: all.
    pub fn demote(&mut self, now: Instant, peer_has_calls: bool, group: Option<usize>) -> usize {
        self.last_now = Some(now);
        let (mut ctx, calls) = self.ctx(now);
        let n = calls.demote(&mut ctx, peer_has_calls, group);
        self.drain_txns(now);
        n
    }

    /// Re-sends every media session to the relay, after it came back.
    pub fn media_replay(&mut self) {
        self.calls.media_replay(&mut self.out);
    }

    /// Ends every call (BYE to confirmed ones, 503 to those being set up), and a canary call in progress, for a
    /// clean shutdown; their CDRs come out of [`Endpoint::poll_output`]. Every registration held is removed with an un-REGISTER (Expires: 0);
    /// [`Endpoint::unregistering`] says while their answers are awaited.
    pub fn shutdown(&mut self, now: Instant) {
        self.stop(now, "shutdown");
    }

    /// [`Endpoint::shutdown`] at the end of a drain's deadline: the calls still up are ended the same way, and
    /// their CDRs say `drain_deadline`.
    pub fn drain_deadline_reached(&mut self, now: Instant) {
        self.stop(now, "drain_deadline");
    }

    fn stop(&mut self, now: Instant, cause: &'static str) {
        self.last_now = Some(now);
        let (mut ctx, calls) = self.ctx(now);
        calls.end_all(&mut ctx, cause);
        self.drain_txns(now);
        self.canaries.shutdown(now, &mut self.txns, &mut self.ids, &mut self.out);
        self.drain_txns(now);
        let (_, changes) =
            self.registrations.unregister(now, &mut self.txns, &mut self.ids, &self.config.server, &mut self.out);
        self.apply_registration_changes(changes);
        self.drain_txns(now);
    }

    /// Closes the records of calls still waiting for their peers after [`Endpoint::shutdown`].
    pub fn abandon_calls(&mut self, now: Instant) {
        let (mut ctx, calls) = self.ctx(now);
        calls.abandon_all(&mut ctx);
    }

    /// The calls, and what they need of the rest of the endpoint for one input.
    fn ctx(&mut self, now: Instant) -> (Ctx<'_>, &mut Calls) {
        (
            Ctx {
                now,
                txns: &mut self.txns,
                ids: &mut self.ids,
                out: &mut self.out,
                server: &self.config.server,
                t1: self.config.timers.t1,
                t2: self.config.timers.t2,
                users: self.registrar.as_ref(),
            },
            &mut self.calls,
        )
    }

    /// What links the messages of both legs of a call in captures (HEP chunk 0x0011): the message's Call-ID, and
    /// leg A's when the message is of leg B of a call in progress. `None` when `bytes` is no SIP message with a
    /// Call-ID. A message of leg B whose call has ended is no longer known here: the driver remembers what it
    /// learnt while the call was up.
    pub fn correlation(&self, bytes: &Bytes) -> Option<Correlation> {
        let msg = parse_datagram(bytes.clone()).ok()?;
        let call_id = msg.headers().get_bytes(&HeaderName::CallId)?;
        Some(Correlation { leg_a: self.calls.leg_a_call_id(&msg), call_id })
    }

    /// Handles one datagram or one framed stream message received at `now` from `peer`.
    pub fn handle_message(&mut self, now: Instant, peer: Peer, bytes: Bytes) {
        self.handle_message_from(now, peer, None, bytes);
    }

    /// [`Endpoint::handle_message`] for a message that came on a TLS connection whose peer presented a verified
    /// certificate: `identity` holds its names, and a new call from it is identified by them first (a trunk's
    /// `match.tls`), before its source address.
    pub fn handle_message_from(&mut self, now: Instant, peer: Peer, identity: Option<Arc<TlsIdentity>>, bytes: Bytes) {
        self.identity = identity;
        self.waited = self.queued_wait.take();
        self.handle_one(now, peer, bytes);
        self.identity = None;
        self.waited = None;
    }

    /// The transport could not reach `peer` (its remote address over its transport): a connection could not be
    /// opened, or its TLS handshake failed. Every client transaction towards it that still waits for a final
    /// response ends at once as a transport error, so a call fails over to its next carrier without waiting for
    /// timer B. The driver reports each failed attempt once.
    pub fn handle_transport_error(&mut self, now: Instant, peer: Peer) {
        self.last_now = Some(now);
        self.txns.transport_error_to(peer.transport, peer.remote);
        self.drain_txns(now);
    }

    fn handle_one(&mut self, now: Instant, peer: Peer, bytes: Bytes) {
        self.last_now = Some(now);
        let parsed = if peer.transport.is_message_framed() {
            parse_datagram(bytes.clone())
        } else {
            parse_stream(bytes.clone())
        };
        let msg = match parsed {
            Ok(m) => m,
            Err(e) => {
                self.observe(Observation::ParseError { transport: peer.transport, reason: e.reason() });
                self.out.push_back(Output::Offence { source: peer.remote, offence: crate::policy::Offence::Malformed });
                // The error answer goes to where the bytes came from, never to a Via we cannot trust.
                if let Some(resp) = reject::error_response(&bytes, &e, &self.config.server) {
                    self.observe(Observation::ResponseOut { method: "unknown", status: e.status() });
                    self.out.push_back(Output::Transmit { peer, bytes: resp });
                }
                return;
            }
        };
        match msg {
            Message::Request(req) => {
                self.observe(Observation::RequestIn { method: req.method.label() });
                self.on_request(now, peer, req);
            }
            Message::Response(resp) => {
                let method = resp.headers.cseq().map(|c| c.method.label()).unwrap_or("unknown");
                self.observe(Observation::ResponseIn { method, status: resp.status });
                self.txns.handle_response(now, peer, resp);
            }
        }
        self.drain_txns(now);
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = Some(now);
        self.txns.handle_timeout(now);
        self.drain_txns(now);
        let changes = self.probes.send_due(now, &mut self.txns, &mut self.ids, &self.config.server);
        self.apply_trunk_changes(changes);
        self.drain_txns(now);
        let changes =
            self.registrations.send_due(now, &mut self.txns, &mut self.ids, &self.config.server, &mut self.out);
        self.apply_registration_changes(changes);
        self.drain_txns(now);
        let probes = &self.probes;
        let down = |p: &Peer| probes.gateway_down(p);
        self.canaries.handle_timeout(now, &mut self.txns, &mut self.ids, &self.config.server, down, &mut self.out);
        self.drain_txns(now);
        let (mut ctx, calls) = self.ctx(now);
        calls.handle_timeout(&mut ctx);
        self.drain_txns(now);
        self.expire_bindings(now);
    }

    /// The next instant [`Endpoint::handle_timeout`] must be called, if any timer runs.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let probes = self.last_now.and_then(|now| self.probes.poll_timeout(now));
        let registrations = self.registrations.poll_timeout();
        let canaries = self.last_now.and_then(|now| self.canaries.poll_timeout(now));
        let bindings = self.registrar.as_ref().and_then(|r| r.poll_timeout());
        [self.txns.poll_timeout(), self.calls.poll_timeout(), probes, registrations, canaries, bindings]
            .into_iter()
            .flatten()
            .min()
    }

    /// Probe results: a trunk takes calls while a gateway answers its probes and, if it registers, while it is
    /// registered.
    fn apply_trunk_changes(&mut self, changes: Vec<(crate::routing::TrunkId, bool)>) {
        for &(trunk, up) in &changes {
            self.calls.set_trunk_up(trunk, up && self.registrations.trunk_ok(trunk));
        }
        probes::Probes::observe(&mut self.out, changes);
        if let Some(down) = self.probes.take_down_changed() {
            self.calls.set_gateways_down(down);
        }
    }

    /// What DNS-named gateway `gateway` (an index into the trunk's `dns_gateways`) of `trunk` resolves to now (RFC
    /// 3263), from the server's resolver. Calls from now on try these targets in its place (lowest priority first,
    /// weighted within a priority by the Call-ID), and probes, if the trunk has them, cover each. The server keeps
    /// the last good answer while lookups fail; an empty list means the name has no target, and a call reaching it
    /// goes on to the next gateway or carrier at once, as on a transport error.
    pub fn set_targets(
        &mut self,
        trunk: crate::routing::TrunkId,
        gateway: usize,
        targets: Vec<crate::routing::Target>,
    ) {
        let changes = self.probes.set_targets(&self.config.plan, &self.config.locals, trunk, gateway, &targets);
        self.calls.set_targets(trunk, gateway, targets);
        self.apply_trunk_changes(changes);
    }

    /// Registrations held or lost (already reported by `registrations`).
    fn apply_registration_changes(&mut self, changes: Vec<(crate::routing::TrunkId, bool)>) {
        for (trunk, registered) in changes {
            self.calls.set_trunk_up(trunk, registered && self.probes.trunk_up(trunk));
        }
    }

    /// The answer to a REGISTER (`None`: no answer).
    fn on_registration_result(&mut self, now: Instant, key: &txn::TransactionKey, resp: Option<&Response>) {
        let changes = self.registrations.on_result(
            now,
            key,
            resp,
            &mut self.txns,
            &mut self.ids,
            &self.config.server,
            &mut self.out,
        );
        self.apply_registration_changes(changes);
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn observe(&mut self, o: Observation) {
        self.out.push_back(Output::Observe(o));
    }

    fn on_request(&mut self, now: Instant, peer: Peer, mut req: Request) {
        if req.headers.get(&HeaderName::UserAgent).is_some_and(|ua| self.config.scanners.matches(ua)) {
            self.observe(Observation::Dropped { reason: "scanner" });
            self.out.push_back(Output::Offence { source: peer.remote, offence: crate::policy::Offence::Scanner });
            return;
        }
        self.overload.adjust(now);
        self.publish_admission();
        if let (Some(retry_after), Method::Invite) = (self.draining, &req.method) {
            if self.is_new_call(&req) {
                return self.refuse_draining(peer, &req, retry_after);
            }
        }
        if req.method == Method::Invite {
            let too_late = self.waited.is_some_and(|w| self.overload.too_late(w));
            let not_admitted = || {
                self.overload.overloaded()
                    && !req.headers.get(&HeaderName::CallId).is_some_and(|id| self.overload.admit(id))
            };
            if (too_late || not_admitted()) && self.is_new_call(&req) {
                if too_late {
                    self.observe(Observation::OverloadTooLate);
                }
                return self.refuse_overloaded(peer, &req);
            }
        }
        stamp_via(&mut req, &peer);
        self.txns.handle_request(now, peer, req);
    }

    /// An INVITE that starts a call: no To tag, and no transaction yet (a retransmission of an admitted call's
    /// INVITE must reach its transaction).
    fn is_new_call(&self, req: &Request) -> bool {
        req.headers.to().is_ok_and(|to| to.tag().is_none())
            && txn::TransactionKey::for_request(req).is_none_or(|k| !self.txns.contains(&k))
    }

    /// 503 with Retry-After, statelessly (RFC 3261 §8.2.7): no transaction, no call; a retransmitted INVITE gets
    /// the same answer again, and the ACK is absorbed as one for a transaction long gone.
    fn refuse_overloaded(&mut self, peer: Peer, req: &Request) {
        let tag = self.ids.tag();
        let r = reject::overloaded(req, &self.config.server, self.config.overload.retry_after, tag.as_bytes());
        self.observe(Observation::OverloadRejected);
        self.observe(Observation::CallRejected { status: 503 });
        self.observe(Observation::ResponseOut { method: "INVITE", status: 503 });
        self.out.push_back(Output::Transmit { peer, bytes: Message::Response(r).to_bytes() });
    }

    /// The 503 of a drain to a new call: the overload answer (stateless, Retry-After), counted apart.
    fn refuse_draining(&mut self, peer: Peer, req: &Request, retry_after: u32) {
        let tag = self.ids.tag();
        let r = reject::overloaded(req, &self.config.server, retry_after, tag.as_bytes());
        self.observe(Observation::DrainRejected { method: "INVITE" });
        self.observe(Observation::CallRejected { status: 503 });
        self.observe(Observation::ResponseOut { method: "INVITE", status: 503 });
        self.out.push_back(Output::Transmit { peer, bytes: Message::Response(r).to_bytes() });
    }

    /// Takes what the transaction layer produced: transmissions go out, requests nobody else claimed get their
    /// answer here.
    fn drain_txns(&mut self, now: Instant) {
        while let Some(ev) = self.txns.poll_event() {
            match ev {
                txn::Event::Request { key, peer, request } => self.on_new_request(now, key, peer, request),
                txn::Event::Transmit { peer, message } => {
                    match &message {
                        Message::Request(r) => self.observe(Observation::RequestOut { method: r.method.label() }),
                        Message::Response(r) => {
                            let method = r.headers.cseq().map(|c| c.method.label()).unwrap_or("unknown");
                            self.observe(Observation::ResponseOut { method, status: r.status });
                        }
                    }
                    self.out.push_back(Output::Transmit { peer, bytes: message.to_bytes() });
                }
                txn::Event::Observe(o) => self.observe(o),
                txn::Event::Stray { message, .. } if self.canaries.on_stray(&message, &mut self.txns) => {}
                txn::Event::Stray { message, .. } if self.calls_take_stray(now, &message) => {}
                txn::Event::Stray { message: Message::Request(_), .. } => {
                    self.observe(Observation::Dropped { reason: "ack_without_dialog" })
                }
                txn::Event::Stray { message: Message::Response(_), .. } => {
                    self.observe(Observation::Dropped { reason: "stray_response" })
                }
                txn::Event::Response { key, response } if self.registrations.owns(&key) => {
                    self.on_registration_result(now, &key, Some(&response))
                }
                txn::Event::Timeout { key } | txn::Event::TransportError { key } if self.registrations.owns(&key) => {
                    self.on_registration_result(now, &key, None)
                }
                txn::Event::Response { key, response } if self.canaries.owns(&key) => self.canaries.on_result(
                    now,
                    &key,
                    Some(&response),
                    &self.config.plan,
                    &mut self.txns,
                    &mut self.ids,
                    &mut self.out,
                ),
                txn::Event::Timeout { key } | txn::Event::TransportError { key } if self.canaries.owns(&key) => self
                    .canaries
                    .on_result(now, &key, None, &self.config.plan, &mut self.txns, &mut self.ids, &mut self.out),
                txn::Event::Response { key, response } if self.probes.owns(&key) => {
                    let changes = self.probes.on_result(&key, Some(&response));
                    self.apply_trunk_changes(changes);
                }
                txn::Event::Timeout { key } if self.probes.owns(&key) => {
                    let changes = self.probes.on_result(&key, None);
                    self.apply_trunk_changes(changes);
                }
                txn::Event::Response { key, response } => {
                    let (mut ctx, calls) = self.ctx(now);
                    calls.on_response(&mut ctx, key, response);
                }
                txn::Event::Timeout { key } => {
                    let (mut ctx, calls) = self.ctx(now);
                    calls.on_txn_timeout(&mut ctx, key);
                }
                txn::Event::TransportError { key } if self.probes.owns(&key) => {
                    let changes = self.probes.on_result(&key, None);
                    self.apply_trunk_changes(changes);
                }
                txn::Event::TransportError { key } => {
                    let (mut ctx, calls) = self.ctx(now);
                    calls.on_transport_error(&mut ctx, key);
                }
                txn::Event::AckTimeout { .. } => self.observe(Observation::Dropped { reason: "ack_timeout" }),
            }
        }
    }

    fn calls_take_stray(&mut self, now: Instant, message: &Message) -> bool {
        let (mut ctx, calls) = self.ctx(now);
        calls.on_stray(&mut ctx, message)
    }

    fn on_new_request(&mut self, now: Instant, key: txn::TransactionKey, peer: Peer, req: Request) {
        if req.method == Method::Cancel && self.calls.owns_cancel(&req) {
            let (mut ctx, calls) = self.ctx(now);
            return calls.on_cancel(&mut ctx, key, req);
        }
        if self.calls.owns_dialog(&req) {
            let (mut ctx, calls) = self.ctx(now);
            return calls.on_in_dialog(&mut ctx, key, req);
        }
        if self.canaries.owns_dialog(&req) {
            return self.canaries.on_in_dialog(now, &key, &req, &mut self.txns, &mut self.ids, &mut self.out);
        }
        if req.method == Method::Register && self.registrar.is_some() {
            // Users register from anywhere: they are known by their credentials, not by their address.
            return self.on_register(now, key, peer, &req);
        }
        let identity = self.identity.clone();
        if self.calls.plan().unknown_source == crate::routing::UnknownSource::Drop
            && !self.calls.plan().is_known_peer(peer.remote, identity.as_deref())
            && !(req.method == Method::Invite && (self.calls.plan().has_credential_trunks() || self.calls.has_users()))
        {
            // Nothing for strangers: no answer at all, no transaction kept. (An INVITE still reaches the B2BUA
            // when trunks are known by their credentials only: it must be challenged to be identified.)
            self.txns.abandon(&key);
            if req.method != Method::Ack {
                self.observe(Observation::UnknownSource);
                self.observe(Observation::Dropped { reason: "unknown_source" });
            }
            return;
        }
        let resp = match answer::out_of_dialog(&req, &self.config.server) {
            answer::Disposition::Respond(_) if req.method == Method::Options && self.draining.is_some() => {
                // A 503 to a ping takes this box out of the pinger's rotation (RFC 3263 §4.3 and common proxy
                // practice: dispatcher, carriers' SBCs), before any of its calls are refused.
                self.observe(Observation::DrainRejected { method: "OPTIONS" });
                let mut r = Response::to_request(&req, 503, "Service Unavailable");
                r.headers.push(HeaderName::RetryAfter, self.draining.unwrap_or_default().to_string());
                r.headers.push(HeaderName::Server, self.config.server.clone());
                r
            }
            answer::Disposition::Respond(r) => r,
            answer::Disposition::Absorb => {
                self.observe(Observation::Dropped { reason: "ack_without_dialog" });
                return;
            }
            answer::Disposition::NewCall => {
                let (mut ctx, calls) = self.ctx(now);
                return calls.new_invite(&mut ctx, key, peer, identity.as_deref(), req);
            }
        };
        let resp = self.with_to_tag(resp);
        if self.txns.respond(now, &key, resp).is_err() {
            self.observe(Observation::Dropped { reason: "response_without_transaction" });
        }
    }

    /// Adds our To tag to a final response that lacks one (RFC 3261 §8.2.6.2). The tag is appended to the value
    /// as received, so the rest of the To header stays byte-identical.
    fn with_to_tag(&mut self, mut resp: Response) -> Response {
        if resp.status >= 200 && resp.headers.to().is_ok_and(|to| to.tag().is_none()) {
            if let Some(to) = resp.headers.get(&HeaderName::To) {
                let mut v = to.to_vec();
                v.extend_from_slice(b";tag=");
                v.extend_from_slice(self.ids.tag().as_bytes());
                resp.headers.set(HeaderName::To, v);
            }
        }
        resp
    }
}

/// RFC 3261 §18.2.1 and RFC 3581 §4: note on the top Via where the request really came from, so that responses
/// find their way back through NAT.
fn stamp_via(req: &mut Request, peer: &Peer) {
    if peer.transport.is_reliable() {
        return;
    }
    let Ok(mut via) = req.headers.top_via() else {
        return;
    };
    let ip = peer.remote.ip().to_string();
    let mut changed = false;
    if via.host() != ip.as_bytes() && via.received().is_none() {
        via.set_param("received", Some(ip.as_bytes()));
        changed = true;
    }
    if via.rport() == Some(None) {
        via.set_param("rport", Some(peer.remote.port().to_string().as_bytes()));
        changed = true;
    }
    if changed {
        req.headers.remove_first(&HeaderName::Via);
        req.headers.push_front(HeaderName::Via, via.to_bytes());
    }
}

#[cfg(test)]
mod tests;
