//! Structure-aware fuzzing of the call logic: sequences of SIP messages and timer expiries played against the
//! sans-IO [`Endpoint`] (transactions, dialogs, the B2BUA) under simulated time, with its invariants checked.
//!
//! Built for the `endpoint_calls` target of `sbc/proto/fuzz` (feature `fuzzing`) and for this crate's own tests,
//! which replay generated scenarios without cargo-fuzz; it is no part of the SBC.
//!
//! Invariants, checked by [`run`] (a violation panics, which the fuzzer reports as a crash):
//! - nothing panics, and every message the endpoint sends parses;
//! - topology hiding: the header section of a message to one side names no address of the other;
//! - at every step, the calls in progress are exactly those started (`CallStarted`) and not yet recorded
//!   (`Output::Cdr`), so no call has two CDRs or none; and the transactions alive are those started and not
//!   ended by the observations the metrics count;
//! - timers make progress: firing what [`Endpoint::poll_timeout`] names never loops in place;
//! - once every timer has fired to exhaustion (the peers gone silent): every call that started has exactly one
//!   CDR, no call, dialog, transaction or timer is left, and every media port is back in its pool.

mod scenario;
mod wire;

pub use scenario::{Actor, Answer, Body, Ids, Method, Pause, Scenario, Setup, Step};

use crate::endpoint::{Config, Endpoint, Observation, Output};
use crate::msg::{parse_datagram, Message, Request, Response};
use crate::policy::digest::Secret;
use crate::routing::UnknownSource;
use crate::routing::{Candidate, Credentials, Gateway, Limits, Plan, PrefixTable, SourceMatch, Trunk, TrunkId};
use crate::transport::{Peer, Transport};
use bytes::Bytes;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wire::addr;

/// Steps of a scenario that are played; the rest are ignored (runs stay short, so the fuzzer runs many).
pub const MAX_STEPS: usize = 64;
/// Timer firings one wait may take before the timers count as stuck.
const MAX_FIRINGS: usize = 100_000;
/// How far back the peers remember what they sent and were sent.
const HISTORY: usize = 32;

/// What a run did, for the statistics of tests that check the grammar reaches deep states.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Calls started (`CallStarted`).
    pub calls: usize,
    /// Calls a carrier answered (`CallAnswered`).
    pub answered: usize,
    /// CDRs written.
    pub cdrs: usize,
    /// Messages the endpoint sent.
    pub sent: usize,
    /// Messages the endpoint could not parse.
    pub parse_errors: usize,
}

/// Plays `scenario` and checks the invariants (see the module's documentation); panics on a violation. With
/// `SBC_FUZZ_TRACE` set in the environment, every message in and out is printed.
pub fn run(scenario: &Scenario) -> Report {
    play(scenario, std::env::var_os("SBC_FUZZ_TRACE").is_some())
}

fn play(scenario: &Scenario, trace: bool) -> Report {
    let mut w = World::new(scenario.setup, trace);
    for step in scenario.steps.iter().take(MAX_STEPS) {
        w.step(step);
        w.check_calls();
    }
    w.fire_all();
    w.check_idle();
    w.report
}

/// Topology hiding: the header section of a message to one side (198.18.1.0/24: the customer, the stranger;
/// 198.18.2.0/24: the carriers) names no address of the other side, ours included, except in a header line that
/// peer sent us itself (`echoed`): a response repeats the request's From, To, Call-ID and Via (RFC 3261 8.2.6.2),
/// and a fuzzed peer may well have put the other side's address in its own From.
fn check_topology(peer: &Peer, bytes: &[u8], echoed: impl Fn(&[u8]) -> bool) {
    let other_side: &[u8] = match peer.remote.ip() {
        std::net::IpAddr::V4(ip) if ip.octets()[..3] == [198, 18, 1] => b"198.18.2.",
        std::net::IpAddr::V4(ip) if ip.octets()[..3] == [198, 18, 2] => b"198.18.1.",
        _ => return,
    };
    let head = memchr::memmem::find(bytes, b"\r\n\r\n").map_or(bytes, |end| &bytes[..end]);
    let leaked = head
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .find(|line| memchr::memmem::find(line, other_side).is_some() && !echoed(line));
    assert!(
        leaked.is_none(),
        "a message to {} names the other side ({}) in `{}`: {}",
        peer.remote,
        String::from_utf8_lossy(other_side),
        String::from_utf8_lossy(leaked.unwrap_or_default()),
        String::from_utf8_lossy(head)
    );
}

/// The endpoint under test, the simulated clock, and what the peers remember.
struct World {
    ep: Endpoint,
    now: Instant,
    media: bool,
    /// `SBC_FUZZ_TRACE` set: every message in and out is printed, to follow a failing scenario.
    trace: bool,
    start: Instant,
    report: Report,
    /// Transactions started less those ended, as the driver's `sbc_sip_transactions_active` gauge counts them.
    txns_counted: i64,
    /// Requests the endpoint sent, newest first, with where they went.
    requests: VecDeque<(Peer, Request)>,
    /// Responses the endpoint sent, newest first.
    responses: VecDeque<(Peer, Response)>,
    /// Everything the endpoint sent, newest first.
    sent: VecDeque<(Peer, Message)>,
    /// What the peers sent, newest first, as the endpoint received it.
    received: VecDeque<(Peer, Bytes)>,
    /// The INVITEs the peers sent, newest first.
    invites: VecDeque<(Peer, Request)>,
}

fn remember<T>(list: &mut VecDeque<T>, item: T) {
    list.push_front(item);
    list.truncate(HISTORY);
}

fn pick<T>(list: &VecDeque<T>, i: u8) -> Option<&T> {
    (!list.is_empty()).then(|| &list[usize::from(i) % list.len()])
}

fn trunk(name: &str, source: Option<&str>, gateway: Option<&str>) -> Trunk {
    Trunk {
        sources: source.map(|s| SourceMatch { net: s.parse().expect("net"), port: None }).into_iter().collect(),
        gateways: gateway.map(|g| Gateway { transport: Transport::Udp, addr: addr(g) }).into_iter().collect(),
        ..Trunk::new(name)
    }
}

/// The endpoint of `setup`: the customer at 198.18.1.10, every number to carrier b, then carrier c.
fn endpoint(setup: Setup) -> Endpoint {
    let mut customer = trunk("customer-pbx", Some("198.18.1.10/32"), None);
    let call_limit = u32::from(setup.call_limit % 4);
    customer.limits = Limits { calls: (call_limit > 0).then_some(call_limit), cps: None };
    let mut carriers =
        [trunk("carrier-b", None, Some(wire::CARRIER_B)), trunk("carrier-c", None, Some(wire::CARRIER_C))];
    for c in &mut carriers {
        c.follow_redirects = setup.follow_redirects;
        c.failover.timeout = setup.failover_on_timeout;
    }
    if setup.carrier_auth {
        carriers[0].auth = Some(Credentials { username: "sbc".into(), password: Secret::new("secret") });
    }
    let [b, c] = carriers;
    let plan = Plan {
        trunks: vec![customer, b, c],
        routes: PrefixTable::default(),
        catch_all: Some(vec![Candidate::new(TrunkId(1), 1), Candidate::new(TrunkId(2), 2)]),
        unknown_source: if setup.drop_unknown { UnknownSource::Drop } else { UnknownSource::Reject },
        max_tries: 1 + u32::from(setup.max_tries % 3),
        max_post_dial: Duration::from_secs(30),
        max_duration: Some(
            [Duration::from_secs(30), Duration::from_secs(120), Duration::from_secs(3600)]
                [usize::from(setup.max_duration % 3)],
        ),
        keepalive: setup.keepalive.then_some(Duration::from_secs(20)),
    };
    let media = setup.media.then(|| relay_proto::session::MediaConfig {
        interfaces: vec![
            relay_proto::session::Interface { name: "a".into(), address: addr(wire::SBC_A).ip() },
            relay_proto::session::Interface { name: "b".into(), address: addr(wire::SBC_B).ip() },
        ],
        first_port: 40000,
        last_port: 40015,
        quarantine: Duration::from_secs(5),
        strict: true,
        cname_seed: 7,
        dtls_fingerprint: None,
    });
    let config = Config {
        plan: Arc::new(plan),
        locals: vec![(Transport::Udp, addr(wire::SBC_A)), (Transport::Udp, addr(wire::SBC_B))],
        media,
        ..Config::default()
    };
    Endpoint::new(config, 7)
}

impl World {
    fn new(setup: Setup, trace: bool) -> Self {
        let now = Instant::now();
        Self {
            ep: endpoint(setup),
            now,
            media: setup.media,
            trace,
            start: now,
            report: Report::default(),
            txns_counted: 0,
            requests: VecDeque::new(),
            responses: VecDeque::new(),
            sent: VecDeque::new(),
            received: VecDeque::new(),
            invites: VecDeque::new(),
        }
    }

    /// `bytes` arrive at the endpoint from `remote` at our address `local`.
    fn deliver(&mut self, remote: SocketAddr, local: SocketAddr, bytes: Vec<u8>) {
        let peer = Peer { transport: Transport::Udp, local, remote, conn: None };
        let bytes = Bytes::from(bytes);
        if let Ok(Message::Request(r)) = parse_datagram(bytes.clone()) {
            if r.method == crate::msg::Method::Invite {
                remember(&mut self.invites, (peer, r));
            }
        }
        remember(&mut self.received, (peer, bytes.clone()));
        self.show("in ", peer.remote, &bytes);
        self.ep.handle_message(self.now, peer, bytes);
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(o) = self.ep.poll_output() {
            match o {
                Output::Transmit { peer, bytes } => {
                    let m = parse_datagram(bytes.clone())
                        .unwrap_or_else(|e| panic!("the endpoint sent a message that does not parse ({e}): {bytes:?}"));
                    self.report.sent += 1;
                    self.show("out", peer.remote, &bytes);
                    let received = &self.received;
                    check_topology(&peer, &bytes, |line| {
                        received.iter().any(|(p, b)| p.remote == peer.remote && memchr::memmem::find(b, line).is_some())
                    });
                    match &m {
                        Message::Request(r) => remember(&mut self.requests, (peer, r.clone())),
                        Message::Response(r) => remember(&mut self.responses, (peer, r.clone())),
                    }
                    remember(&mut self.sent, (peer, m));
                }
                Output::Observe(Observation::CallStarted { .. }) => self.report.calls += 1,
                Output::Observe(Observation::CallAnswered { .. }) => self.report.answered += 1,
                Output::Observe(Observation::ParseError { .. }) => self.report.parse_errors += 1,
                Output::Observe(Observation::TransactionStarted { .. }) => self.txns_counted += 1,
                Output::Observe(Observation::TransactionEnded { .. }) => self.txns_counted -= 1,
                Output::Observe(_) | Output::Media(_) | Output::Offence { .. } | Output::Canary(_) => {}
                Output::Cdr(_) => self.report.cdrs += 1,
                Output::Replicate(r) => panic!("replication is off, yet a record came out: {r:?}"),
            }
        }
    }

    fn step(&mut self, step: &Step) {
        match step {
            Step::Request { from, method, ids, number, body } => {
                let raw = wire::pooled_request(*from, *method, *ids, *number, *body);
                self.deliver(from.address(), from.sbc(), raw);
            }
            Step::Answer(a) => {
                let Some((peer, req)) = pick(&self.requests, a.to).cloned() else { return };
                self.deliver(peer.remote, peer.local, wire::answer(&req, peer.remote, *a));
            }
            Step::InDialog { on, method, to_tag, branch, cseq, body } => {
                let Some((peer, m)) = pick(&self.sent, *on).cloned() else { return };
                let raw = wire::in_dialog(&m, peer.remote, peer.local, *method, *to_tag, *branch, *cseq, *body);
                self.deliver(peer.remote, peer.local, raw);
            }
            Step::Ack { on, same_branch, body } => {
                let Some((peer, resp)) = pick(&self.responses, *on).cloned() else { return };
                self.deliver(peer.remote, peer.local, wire::ack(&resp, peer.remote, peer.local, *same_branch, *body));
            }
            Step::Cancel { of } => {
                let Some((peer, invite)) = pick(&self.invites, *of).cloned() else { return };
                self.deliver(peer.remote, peer.local, wire::cancel(&invite));
            }
            Step::Retransmit { which } => {
                let Some((peer, bytes)) = pick(&self.received, *which).cloned() else { return };
                self.deliver(peer.remote, peer.local, bytes.to_vec());
            }
            Step::Mangle { which, at, byte } => {
                let Some((peer, bytes)) = pick(&self.received, *which).cloned() else { return };
                let mut raw = bytes.to_vec();
                if !raw.is_empty() {
                    let i = usize::from(*at) % raw.len();
                    raw[i] = *byte;
                }
                self.deliver(peer.remote, peer.local, raw);
            }
            Step::Garbage { from, bytes } => self.deliver(from.address(), from.sbc(), bytes.clone()),
            Step::Wait(p) => {
                let d = match *p {
                    Pause::Millis(ms) => Duration::from_millis(u64::from(ms)),
                    Pause::Minutes(m) => Duration::from_secs(60 * u64::from(m)),
                };
                self.fire_until(Some(self.now + d));
            }
            Step::FireAll => self.fire_all(),
            Step::MediaIdle(n) => {
                let session = relay_proto::control::SessionId(1 + u64::from(n % 8));
                self.ep.handle_media_event(self.now, &relay_proto::control::Event::Idle { session });
                self.drain();
            }
            Step::MediaAvailable(up) => self.ep.set_media_available(*up),
            Step::TrunkUp { c, up } => self.ep.set_trunk_up(TrunkId(1 + u32::from(*c)), *up),
        }
    }

    fn show(&self, dir: &str, peer: SocketAddr, bytes: &[u8]) {
        if self.trace {
            let t = self.now.duration_since(self.start).as_secs_f64();
            let text = String::from_utf8_lossy(bytes);
            let head = text.split("\r\n\r\n").next().unwrap_or_default().replace("\r\n", "\n      ");
            eprintln!("{t:9.3} {dir} {peer}\n      {head}");
        }
    }

    /// Fires every timer due until `end` (every timer there is, without one), in order, moving the clock along.
    fn fire_until(&mut self, end: Option<Instant>) {
        let mut firings = 0;
        while let Some(t) = self.ep.poll_timeout().filter(|t| end.is_none_or(|e| *t <= e)) {
            firings += 1;
            assert!(
                firings <= MAX_FIRINGS,
                "timers stuck: {firings} firings, the next at {:?} from now",
                t.saturating_duration_since(self.now)
            );
            self.now = self.now.max(t);
            self.ep.handle_timeout(self.now);
            self.drain();
            self.check_calls();
        }
        if let Some(end) = end {
            self.now = self.now.max(end);
        }
    }

    fn fire_all(&mut self) {
        self.fire_until(None);
    }

    /// Calls in progress are those started and not yet recorded.
    fn check_calls(&self) {
        let Report { calls, cdrs, .. } = self.report;
        assert!(cdrs <= calls, "{cdrs} CDRs for {calls} calls started");
        assert_eq!(self.ep.calls().len(), calls - cdrs, "calls in progress: {calls} started, {cdrs} recorded");
        assert_eq!(
            self.txns_counted,
            self.ep.transaction_count() as i64,
            "transactions started less ended (the metrics gauge) differ from those alive"
        );
    }

    /// Nothing is left once every timer has fired.
    fn check_idle(&self) {
        let Report { calls, cdrs, .. } = self.report;
        assert_eq!(cdrs, calls, "every call that started has exactly one CDR once every timer fired");
        assert!(self.ep.calls().is_empty(), "calls left after every timer fired");
        assert!(self.ep.calls().is_idle(), "call state left after every timer fired: {:#?}", self.ep.calls());
        if self.trace && self.ep.transaction_count() > 0 {
            eprintln!("{:#?}", self.ep);
        }
        assert_eq!(self.ep.transaction_count(), 0, "transactions left after every timer fired");
        if self.media {
            assert_eq!(self.ep.calls().media_counts(), Some((0, 0)), "media sessions or ports left");
        }
    }
}

#[cfg(test)]
mod tests;
