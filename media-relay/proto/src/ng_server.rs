//! rtpengine's NG control protocol answered by our relay, sans-IO: a datagram (`<cookie> <bencoded dict>`), its
//! source and the time come in; the reply's bytes come out, and the data plane's [`Command`]s wait in
//! [`NgServer::poll_command`]. Calls made over NG are [`Sessions`] like the SBC's own: the same port pools, SDP
//! rewrite, latching, strict source and kernelization.
//!
//! Commands: `ping`, `offer`, `answer`, `delete`, `query`, `list`, `statistics`; any other is refused with an
//! `error-reason`. A cookie seen within [`CACHE_TTL`] gets the reply it got the first time, byte for byte, and
//! nothing is done again (a client's retransmission after a lost reply must not allocate twice).
//!
//! `delete` answers with the call's final figures (`totals`, `tags`), as rtpengine does: those come from the relay
//! ([`Event::Stats`] after the removal), so that reply waits for them, at most [`DELETE_WAIT`], and leaves through
//! [`NgServer::poll_transmit`] (and [`NgServer::poll_record`] in a pair: see [`replication`]).
//!
//! Call order: [`NgServer::handle_datagram`] for each datagram (send what it returns), then drain
//! [`NgServer::poll_command`] into the relay; feed the relay's events to [`NgServer::handle_event`]; call
//! [`NgServer::handle_timeout`] at [`NgServer::poll_timeout`]; after each, drain [`NgServer::poll_command`] and
//! [`NgServer::poll_transmit`].

use crate::bencode::Value;
use crate::control::{Command, Event, Leg, SessionId, SessionStats};
use crate::negotiate::{Exchange, SdpKind};
use crate::ng;
use crate::ng_options::{self, OptionError, Options};
use crate::ports::PortRangeError;
use crate::sdes::SrtpMode;
use crate::session::{MediaConfig, SessionRecord, Sessions};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// How long a reply stays in the cache: rtpengine keeps them 30 s, longer than any client retransmits.
pub const CACHE_TTL: Duration = Duration::from_secs(30);
/// At most this many replies are cached; the oldest goes first (a flood of cookies cannot grow memory).
pub const CACHE_CAPACITY: usize = 8192;
/// How long a `delete` reply waits for the relay's final figures before it goes without them.
pub const DELETE_WAIT: Duration = Duration::from_secs(1);
/// NG sessions are numbered from here, so that they never meet the ids of a controller sharing the relay.
pub const NG_SESSION_BASE: u64 = 1 << 62;

/// What the NG server has done, for metrics and the `statistics` command.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NgCounters {
    /// Requests handled (not counting retransmissions).
    pub requests: u64,
    /// Retransmissions answered from the cache.
    pub retransmissions: u64,
    /// Datagrams that were not NG (no cookie, not bencode, not a dictionary).
    pub malformed: u64,
    /// Requests answered with `result: error`.
    pub errors: u64,
    /// Calls created by an offer.
    pub calls_created: u64,
    /// Calls deleted because no packet arrived for the relay's timeout.
    pub calls_timed_out: u64,
    /// Packets the relay received for calls that ended (final figures), both legs.
    pub packets: u64,
    /// Of [`packets`](Self::packets), those the kernel fast path (XDP) forwarded.
    pub kernel_packets: u64,
    /// Replicated calls a takeover could not adopt (their ports taken here, or their Call-ID already ours).
    pub adopt_failed: u64,
}

/// One call made over NG.
#[derive(Debug)]
struct NgCall {
    session: SessionId,
    /// The tag of leg A (the first offer's `from-tag`).
    from_tag: String,
    /// The tag of leg B, from the first answer.
    to_tag: Option<String>,
    /// `label` per leg.
    labels: [Option<String>; 2],
    /// `transport-protocol` asked for each leg.
    srtp: [SrtpMode; 2],
    /// The relay's figures, when it reported them.
    stats: Option<SessionStats>,
    /// The version of the call's last replication record (0: none sent).
    version: u64,
}

/// A `delete` whose reply waits for the relay's final figures.
#[derive(Debug)]
struct PendingDelete {
    cookie: String,
    source: SocketAddr,
    deadline: Instant,
    call: NgCall,
    record: SessionRecord,
}

/// Replies by cookie, bounded and time-limited.
#[derive(Debug, Default)]
struct ReplyCache {
    replies: HashMap<String, (Instant, Vec<u8>)>,
    order: VecDeque<(Instant, String)>,
}

impl ReplyCache {
    fn get(&mut self, now: Instant, cookie: &str) -> Option<&Vec<u8>> {
        self.expire(now);
        self.replies.get(cookie).map(|(_, r)| r)
    }

    fn put(&mut self, now: Instant, cookie: String, reply: Vec<u8>) {
        while self.order.len() >= CACHE_CAPACITY {
            if let Some((_, old)) = self.order.pop_front() {
                self.replies.remove(&old);
            }
        }
        self.order.push_back((now, cookie.clone()));
        self.replies.insert(cookie, (now, reply));
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if now.saturating_duration_since(*at) < CACHE_TTL {
                break;
            }
            if let Some((_, cookie)) = self.order.pop_front() {
                self.replies.remove(&cookie);
            }
        }
    }
}

/// Why a request got `result: error`; the text is the reply's `error-reason`.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("{0}")]
    Option(#[from] OptionError),
    #[error("Unrecognized command '{0}'")]
    UnknownCommand(String),
    #[error("Unknown call-id")]
    UnknownCall,
    #[error("Unknown interface '{0}'")]
    UnknownInterface(String),
    #[error("No SDP body")]
    NoSdp,
    #[error("{0}")]
    Media(#[from] crate::session::MediaError),
}

/// The NG server: calls, their sessions, the reply cache.
#[derive(Debug)]
pub struct NgServer {
    config: MediaConfig,
    sessions: Sessions,
    calls: BTreeMap<String, NgCall>,
    by_session: HashMap<SessionId, String>,
    next_session: u64,
    cache: ReplyCache,
    counters: NgCounters,
    pending: Vec<PendingDelete>,
    /// `query`s of live calls waiting for the relay's figures so far ([`Command::Query`]).
    queries: Vec<PendingQuery>,
    /// Commands of this server's own for the relay (figure queries), before the sessions' commands.
    commands: VecDeque<Command>,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    outcomes: BTreeMap<(&'static str, &'static str), u64>,
    /// Whether calls are replicated ([`NgServer::set_replication`]): records wait in `records`.
    replicate: bool,
    records: VecDeque<NgRecord>,
    /// The peer's calls, held while this box is the standby ([`NgServer::apply_record`]), by Call-ID.
    foreign: BTreeMap<String, NgCallRecord>,
}

/// The command names counted apart in [`NgServer::outcomes`]; any other is `other` (a metric label per name a
/// client makes up would grow without bound).
pub const COMMANDS: [&str; 7] = ["ping", "offer", "answer", "delete", "query", "list", "statistics"];

/// `dict`'s command as a metric label: one of [`COMMANDS`], else `other`.
fn command_label(dict: &Value) -> &'static str {
    let name = dict.get("command").and_then(Value::as_str).unwrap_or_default();
    COMMANDS.into_iter().find(|c| *c == name).unwrap_or("other")
}

/// A reply body's `result` as a metric label: `ok` (`pong` too) or `error`.
fn result_label(body: &Value) -> &'static str {
    match body.get("result").and_then(Value::as_str) {
        Some("error") => "error",
        _ => "ok",
    }
}

/// A `query` whose reply waits for the relay's figures of a live call, at most [`DELETE_WAIT`].
#[derive(Debug)]
struct PendingQuery {
    cookie: String,
    source: SocketAddr,
    deadline: Instant,
    call_id: String,
}

impl NgServer {
    /// A server anchoring media on `config`'s interfaces (named as in `direction`) and port range.
    pub fn new(config: MediaConfig) -> Result<Self, PortRangeError> {
        Ok(Self {
            sessions: Sessions::new(config.clone())?,
            config,
            calls: BTreeMap::new(),
            by_session: HashMap::new(),
            next_session: NG_SESSION_BASE,
            cache: ReplyCache::default(),
            counters: NgCounters::default(),
            pending: Vec::new(),
            queries: Vec::new(),
            commands: VecDeque::new(),
            transmits: VecDeque::new(),
            outcomes: BTreeMap::new(),
            replicate: false,
            records: VecDeque::new(),
            foreign: BTreeMap::new(),
        })
    }

    /// Handles one datagram from `source`; returns the reply to send back, `None` when there is nobody to answer
    /// (no cookie).
    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, datagram: &[u8]) -> Option<Vec<u8>> {
        match ng::decode(datagram) {
            Ok((cookie, dict)) => self.handle_request(now, source, cookie, &dict),
            Err(ng::NgError::NoCookie) => {
                self.counters.malformed += 1;
                None
            }
            Err(e) => {
                self.counters.malformed += 1;
                let space = datagram.iter().position(|&b| b == b' ').unwrap_or(0);
                let cookie = String::from_utf8_lossy(&datagram[..space]);
                Some(ng::encode(&cookie, &error(&e.to_string())))
            }
        }
    }

    /// Handles one request `dict` framed with `cookie`: the cached reply for a known cookie, else the command's.
    /// `None`: the reply comes later from [`NgServer::poll_transmit`] (a `delete` waiting for the final figures).
    pub fn handle_request(
        &mut self,
        now: Instant,
        source: SocketAddr,
        cookie: String,
        dict: &Value,
    ) -> Option<Vec<u8>> {
        if let Some(reply) = self.cache.get(now, &cookie) {
            self.counters.retransmissions += 1;
            return Some(reply.clone());
        }
        if self.pending.iter().any(|p| p.cookie == cookie) || self.queries.iter().any(|q| q.cookie == cookie) {
            self.counters.retransmissions += 1;
            return None;
        }
        self.counters.requests += 1;
        if dict.get("command").and_then(Value::as_str) == Some("delete") {
            if let Ok(call_id) = ng_options::required(dict, "call-id") {
                if let Some(call) = self.calls.remove(&call_id) {
                    self.by_session.remove(&call.session);
                    self.replicate_end(&call_id, &call);
                    let record = self.sessions.export(call.session).unwrap_or_default();
                    self.sessions.remove(now, call.session);
                    let deadline = now + DELETE_WAIT;
                    self.pending.push(PendingDelete { cookie, source, deadline, call, record });
                    return None;
                }
            }
        }
        // A live call's figures are the relay's: ask it (Command::Query) and answer when Event::Figures comes.
        if dict.get("command").and_then(Value::as_str) == Some("query") {
            if let Ok(call_id) = ng_options::required(dict, "call-id") {
                if let Some(call) = self.calls.get(&call_id) {
                    self.commands.push_back(Command::Query { session: call.session });
                    let deadline = now + DELETE_WAIT;
                    self.queries.push(PendingQuery { cookie, source, deadline, call_id });
                    return None;
                }
            }
        }
        let body = match self.command(now, dict) {
            Ok(body) => body,
            Err(refusal) => {
                self.counters.errors += 1;
                error(&refusal.to_string())
            }
        };
        self.tally(command_label(dict), &body);
        let reply = ng::encode(&cookie, &body);
        self.cache.put(now, cookie, reply.clone());
        Some(reply)
    }

    /// An event of the relay: final figures are kept for `query`; an idle session's call is deleted.
    pub fn handle_event(&mut self, now: Instant, event: &Event) {
        match event {
            Event::Idle { session } => {
                if let Some(call_id) = self.by_session.get(session).cloned() {
                    self.counters.calls_timed_out += 1;
                    self.delete(now, &call_id);
                }
            }
            Event::Stats(stats) if Self::owns(stats.session) => {
                for leg in &stats.legs {
                    self.counters.packets += leg.received.packets;
                    self.counters.kernel_packets += leg.kernel_packets;
                }
                if let Some(call) = self.by_session.get(&stats.session).and_then(|id| self.calls.get_mut(id)) {
                    call.stats = Some(*stats);
                }
                if let Some(i) = self.pending.iter().position(|p| p.call.session == stats.session) {
                    let mut p = self.pending.swap_remove(i);
                    p.call.stats = Some(*stats);
                    self.answer_delete(now, p);
                }
            }
            Event::Figures(figures) if Self::owns(figures.session) => {
                if let Some(call) = self.by_session.get(&figures.session).and_then(|id| self.calls.get_mut(id)) {
                    call.stats = Some(*figures);
                }
                while let Some(i) = self
                    .queries
                    .iter()
                    .position(|q| self.calls.get(&q.call_id).is_none_or(|c| c.session == figures.session))
                {
                    let q = self.queries.swap_remove(i);
                    self.answer_query(now, q);
                }
            }
            // A new latch changes what the standby must open after a takeover.
            Event::Latched { session, local, peer } if self.sessions.latched(*session, *local, *peer) => {
                if let Some(call_id) = self.by_session.get(session).cloned() {
                    self.replicate_call(&call_id);
                }
            }
            _ => {}
        }
    }

    /// Time passed: `delete` replies whose figures did not come go without them.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(i) = self.pending.iter().position(|p| p.deadline <= now) {
            let p = self.pending.swap_remove(i);
            self.answer_delete(now, p);
        }
        // A relay that did not answer the figure query: the reply goes with the figures last known.
        while let Some(i) = self.queries.iter().position(|q| q.deadline <= now) {
            let q = self.queries.swap_remove(i);
            self.answer_query(now, q);
        }
    }

    /// When [`NgServer::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending.iter().map(|p| p.deadline).chain(self.queries.iter().map(|q| q.deadline)).min()
    }

    fn answer_query(&mut self, now: Instant, q: PendingQuery) {
        let body = match self.calls.get(&q.call_id) {
            Some(call) => report(call, &self.sessions.export(call.session).unwrap_or_default()),
            // Deleted meanwhile (a delete or an idle timeout), as rtpengine answers for a call it does not know.
            None => error(&Refusal::UnknownCall.to_string()),
        };
        self.tally("query", &body);
        let reply = ng::encode(&q.cookie, &body);
        self.cache.put(now, q.cookie, reply.clone());
        self.transmits.push_back((q.source, reply));
    }

    /// The next reply that was not ready when its request came: to whom, and its bytes.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmits.pop_front()
    }

    fn answer_delete(&mut self, now: Instant, p: PendingDelete) {
        let body = report(&p.call, &p.record);
        self.tally("delete", &body);
        let reply = ng::encode(&p.cookie, &body);
        self.cache.put(now, p.cookie, reply.clone());
        self.transmits.push_back((p.source, reply));
    }

    /// Whether `session` is one of this server's (events of other sessions belong to another controller).
    pub fn owns(session: SessionId) -> bool {
        session.0 >= NG_SESSION_BASE
    }

    /// The next command for the relay's data plane.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front().or_else(|| self.sessions.poll_command())
    }

    /// What the server has done so far.
    pub fn counters(&self) -> NgCounters {
        self.counters
    }

    /// Requests answered so far (retransmissions and malformed datagrams apart), by command ([`COMMANDS`] or
    /// `other`) and result (`ok` or `error`).
    pub fn outcomes(&self) -> impl Iterator<Item = (&'static str, &'static str, u64)> + '_ {
        self.outcomes.iter().map(|(&(c, r), &n)| (c, r, n))
    }

    fn tally(&mut self, command: &'static str, body: &Value) {
        *self.outcomes.entry((command, result_label(body))).or_default() += 1;
    }

    /// Calls held.
    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    fn command(&mut self, now: Instant, dict: &Value) -> Result<Value, Refusal> {
        let command = ng_options::required(dict, "command")?;
        match command.as_str() {
            "ping" => Ok(Value::dict([("result", Value::str("pong"))])),
            "offer" => self.offer_or_answer(now, dict, true),
            "answer" => self.offer_or_answer(now, dict, false),
            "delete" => {
                // A known call was deleted before (its reply waits for figures); rtpengine answers an unknown
                // one `ok` with this warning (a BYE after a timeout is no error).
                ng_options::required(dict, "call-id")?;
                Ok(ok([("warning", Value::str("Call-ID not found or tags didn't match"))]))
            }
            "query" => {
                let call_id = ng_options::required(dict, "call-id")?;
                let call = self.calls.get(&call_id).ok_or(Refusal::UnknownCall)?;
                Ok(report(call, &self.sessions.export(call.session).unwrap_or_default()))
            }
            "list" => {
                let limit = dict.get("limit").and_then(Value::as_int).map_or(32, |l| l.max(0) as usize);
                let calls = self.calls.keys().take(limit).map(|c| Value::str(c)).collect();
                Ok(ok([("calls", Value::List(calls))]))
            }
            "statistics" => Ok(ok([("statistics", self.statistics())])),
            other => Err(Refusal::UnknownCommand(other.to_owned())),
        }
    }

    fn offer_or_answer(&mut self, now: Instant, dict: &Value, offer: bool) -> Result<Value, Refusal> {
        let call_id = ng_options::required(dict, "call-id")?;
        let from_tag = ng_options::required(dict, "from-tag")?;
        let to_tag = ng_options::optional(dict, "to-tag")?;
        let options = ng_options::parse(dict)?;
        let sdp = dict.get("sdp").and_then(|v| match v {
            Value::Bytes(b) => Some(b.clone()),
            _ => None,
        });
        let sdp = sdp.ok_or(Refusal::NoSdp)?;
        let addresses = self.direction(&options)?;
        if !offer && !self.calls.contains_key(&call_id) {
            return Err(Refusal::UnknownCall);
        }
        let fresh = !self.calls.contains_key(&call_id);
        if fresh {
            self.calls.insert(
                call_id.clone(),
                NgCall {
                    session: SessionId(self.next_session),
                    from_tag: from_tag.clone(),
                    to_tag: None,
                    labels: [None, None],
                    srtp: [SrtpMode::Off; 2],
                    stats: None,
                    version: 0,
                },
            );
            self.by_session.insert(SessionId(self.next_session), call_id.clone());
            self.next_session += 1;
        }
        let call = self.calls.get_mut(&call_id).expect("inserted above");
        // The from-tag names the dialog's caller in both directions; only a re-INVITE from the callee offers
        // from leg B, and an answer comes from the leg the offer went to.
        let caller_side = from_tag == call.from_tag || call.to_tag.as_deref() != Some(from_tag.as_str());
        let from = match (offer, caller_side) {
            (true, true) | (false, false) => Leg::A,
            _ => Leg::B,
        };
        if !offer && call.to_tag.is_none() {
            call.to_tag = to_tag;
        }
        if options.label.is_some() {
            call.labels[from.index()] = options.label.clone();
        }
        if offer {
            call.srtp[from.other().index()] = options.srtp_to;
        }
        // The locals are per leg (A, B); `direction` is in the message's order (sender's, receiver's).
        let sip_local = match from {
            Leg::A => addresses,
            Leg::B => [addresses[1], addresses[0]],
        };
        let kind = if offer { SdpKind::Offer } else { SdpKind::Answer };
        let exchange = Exchange { kind, srtp: call.srtp };
        let session = call.session;
        match self.sessions.rewrite(now, session, from, &sdp, sip_local, exchange) {
            Ok(out) => {
                if fresh {
                    self.counters.calls_created += 1;
                }
                self.replicate_call(&call_id);
                Ok(ok([("sdp", Value::str(&out))]))
            }
            Err(e) => {
                if fresh {
                    self.calls.remove(&call_id);
                    self.by_session.remove(&session);
                }
                Err(e.into())
            }
        }
    }

    /// The addresses of `direction`'s interfaces; the first interface without one.
    fn direction(&self, options: &Options) -> Result<[IpAddr; 2], Refusal> {
        let first = self.config.interfaces.first().map(|i| i.address).unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let Some(names) = &options.direction else { return Ok([first, first]) };
        let find = |name: &str| {
            self.config
                .interfaces
                .iter()
                .find(|i| i.name == name)
                .map(|i| i.address)
                .ok_or_else(|| Refusal::UnknownInterface(name.to_owned()))
        };
        Ok([find(&names[0])?, find(&names[1])?])
    }

    fn delete(&mut self, now: Instant, call_id: &str) {
        if let Some(call) = self.calls.remove(call_id) {
            self.by_session.remove(&call.session);
            self.replicate_end(call_id, &call);
            self.sessions.remove(now, call.session);
        }
    }

    fn statistics(&self) -> Value {
        let c = self.counters;
        let own = self.calls.len() as i64;
        Value::dict([
            (
                "currentstatistics",
                Value::dict([
                    ("sessionsown", Value::Int(own)),
                    ("sessionsforeign", Value::Int(self.foreign.len() as i64)),
                    ("sessionstotal", Value::Int(own + self.foreign.len() as i64)),
                ]),
            ),
            (
                "totalstatistics",
                Value::dict([
                    ("managedsessions", Value::Int(c.calls_created as i64)),
                    ("timeoutsessions", Value::Int(c.calls_timed_out as i64)),
                    ("requests", Value::Int(c.requests as i64)),
                    ("retransmissions", Value::Int(c.retransmissions as i64)),
                    ("errors", Value::Int(c.errors as i64)),
                    ("malformed", Value::Int(c.malformed as i64)),
                    ("packets", Value::Int(c.packets as i64)),
                    ("kernel packets", Value::Int(c.kernel_packets as i64)),
                ]),
            ),
        ])
    }
}

/// rtpengine's `query` (and `delete`) reply: per tag, a media per m= line with the relay's port and the peer's
/// endpoint, and the leg's figures (the relay counts per leg, not per stream: they sit on the tag); `totals` over
/// the call, with `kernel packets` (of the RTP packets, those XDP forwarded) beside rtpengine's fields.
fn report(call: &NgCall, record: &SessionRecord) -> Value {
    let mut tags = Vec::new();
    let (mut rtp, mut rtp_bytes, mut rtcp, mut kernel, mut errors) = (0u64, 0u64, 0u64, 0u64, 0u64);
    for leg in [Leg::A, Leg::B] {
        let tag = match leg {
            Leg::A => Some(call.from_tag.clone()),
            Leg::B => call.to_tag.clone(),
        };
        let stats = call.stats.map(|s| s.legs[leg.index()]);
        let medias = record.legs[leg.index()]
            .streams
            .iter()
            .enumerate()
            .filter_map(|(i, side)| {
                let side = side.as_ref()?;
                let mut stream = vec![("local port", Value::Int(i64::from(side.port)))];
                if let Some(e) = side.latched_rtp.or(side.peer_rtp) {
                    stream.push(("endpoint", endpoint_value(e)));
                }
                if let Some(e) = side.peer_rtp {
                    stream.push(("advertised endpoint", endpoint_value(e)));
                }
                Some(Value::dict([
                    ("index", Value::Int(i as i64 + 1)),
                    ("streams", Value::List(vec![Value::dict(stream)])),
                ]))
            })
            .collect();
        let mut fields = vec![("medias", Value::List(medias))];
        if let Some(s) = stats {
            let leg_errors = s.dropped_foreign + s.dropped_srtp;
            rtcp += s.received.rtcp_packets;
            rtp += s.received.packets.saturating_sub(s.received.rtcp_packets);
            rtp_bytes += s.received.bytes;
            kernel += s.kernel_packets;
            errors += leg_errors;
            fields.push((
                "stats",
                Value::dict([
                    ("packets", Value::Int(s.received.packets as i64)),
                    ("bytes", Value::Int(s.received.bytes as i64)),
                    ("errors", Value::Int(leg_errors as i64)),
                    ("packets lost", Value::Int(s.received.lost)),
                    ("jitter", Value::Int(s.received.jitter_ms.round() as i64)),
                    ("kernel packets", Value::Int(s.kernel_packets as i64)),
                ]),
            ));
        }
        if let Some(t) = &tag {
            fields.push(("tag", Value::str(t)));
        }
        if let Some(l) = &call.labels[leg.index()] {
            fields.push(("label", Value::str(l)));
        }
        tags.push((tag.unwrap_or_default(), Value::dict(fields)));
    }
    let int = |n: u64| Value::Int(i64::try_from(n).unwrap_or(i64::MAX));
    let totals = Value::dict([
        (
            "RTP",
            Value::dict([
                ("packets", int(rtp)),
                ("bytes", int(rtp_bytes)),
                ("errors", int(errors)),
                ("kernel packets", int(kernel)),
            ]),
        ),
        ("RTCP", Value::dict([("packets", int(rtcp)), ("bytes", int(0)), ("errors", int(0))])),
    ]);
    let tags = Value::Dict(tags.into_iter().map(|(k, v)| (k.into_bytes(), v)).collect());
    ok([("tags", tags), ("totals", totals)])
}

fn ok<'a>(pairs: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
    let mut d = Value::dict(pairs);
    if let Value::Dict(m) = &mut d {
        m.insert(b"result".to_vec(), Value::str("ok"));
    }
    d
}

fn error(reason: &str) -> Value {
    Value::dict([("result", Value::str("error")), ("error-reason", Value::str(reason))])
}

fn endpoint_value(e: SocketAddr) -> Value {
    let family = if e.is_ipv4() { "IPv4" } else { "IPv6" };
    Value::dict([
        ("family", Value::str(family)),
        ("address", Value::str(&e.ip().to_string())),
        ("port", Value::Int(i64::from(e.port()))),
    ])
}

mod replication;
pub use replication::{NgCallRecord, NgRecord};

#[cfg(test)]
mod tests;
