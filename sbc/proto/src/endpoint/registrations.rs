//! Registration of the SBC with carriers (registration-based trunks, RFC 3261 §10): one REGISTER binding per
//! trunk with a `register` setting, answered challenges (digest, one answer per challenge), refreshes at a point
//! between half and 85 % of the granted expiry that differs per trunk (so that many trunks registered at once do
//! not all refresh in the same second), and failures retried with a doubling back-off. A trunk is down while it
//! is not registered.
//!
//! Registrations run only while the driver says so ([`Registrations::start`]): the standby of a pair must leave
//! the binding to the active, and the new active registers at once after a takeover. A demoted box stops
//! refreshing without un-registering: its peer holds the same binding now (a floating service address gives both
//! the same contact) and an un-REGISTER would remove it. A clean stop un-registers ([`Registrations::unregister`]).

use super::{IdGenerator, Observation, Output};
use crate::msg::{HeaderName, Method, Request, Response, Uri};
use crate::policy::digest::{Challenge, Client};
use crate::routing::{Plan, Registration, TrunkId};
use crate::transport::{Peer, Transport};
use crate::txn::{TransactionKey, Transactions};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The first retry after a failure; each further failure doubles it, up to [`RETRY_MAX`].
pub const RETRY_MIN: Duration = Duration::from_secs(5);
/// The longest wait between two attempts while not registered.
pub const RETRY_MAX: Duration = Duration::from_secs(300);
/// Refreshes fall between these shares of the granted expiry, at a point fixed per trunk.
const REFRESH_FROM: f64 = 0.5;
const REFRESH_TO: f64 = 0.85;
/// How many challenges one attempt answers: a first one, and one more only if the registrar calls our nonce
/// stale. A registrar that challenges again has refused the credentials.
const CHALLENGES_PER_ATTEMPT: u8 = 2;

/// The REGISTER in flight of one registration.
#[derive(Debug)]
struct Inflight {
    key: TransactionKey,
    /// Challenges answered in this attempt so far.
    challenges: u8,
    /// The Expires asked for: 0 for an un-REGISTER.
    expires: u32,
}

#[derive(Debug)]
struct Reg {
    trunk: TrunkId,
    cfg: Registration,
    /// From which of our addresses, `None` when none can reach the registrar (then it never registers).
    peer: Option<Peer>,
    /// Fixed per binding (RFC 3261 §10.2.4: refreshes reuse the Call-ID), made at the first REGISTER.
    call_id: String,
    from_tag: String,
    cseq: u32,
    /// The last challenge answered, reused for the next REGISTERs (RFC 7616 §3.4: saves a round trip per refresh).
    client: Option<(Client, HeaderName)>,
    inflight: Option<Inflight>,
    /// Until when the registrar holds our binding.
    registered_until: Option<Instant>,
    /// When the next REGISTER is due (refresh or retry).
    next_at: Option<Instant>,
    failures: u32,
    /// Where in the refresh window this trunk refreshes, in [0, 1).
    spread: f64,
    /// The expiry to ask for: the configured one, or the registrar's Min-Expires after a 423.
    expires: u32,
    /// The state last reported: the trunk is up (as far as registration goes).
    reported: bool,
}

impl Reg {
    /// `sip:user@domain`, the address-of-record.
    fn aor(&self) -> String {
        format!("sip:{}@{}", self.cfg.credentials.username, self.cfg.domain)
    }

    fn contact(&self, peer: &Peer) -> String {
        let transport = crate::b2bua::transport_param(peer.transport);
        format!("<sip:{}@{}{transport}>", self.cfg.contact_user, peer.local)
    }
}

/// Every registration, by trunk.
#[derive(Debug, Default)]
pub(super) struct Registrations {
    regs: Vec<Reg>,
    by_key: HashMap<TransactionKey, usize>,
    /// Whether this box registers (not the standby of a pair, not stopping).
    active: bool,
}

/// A registration became held or lost: the trunk's new state.
pub(super) type Change = (TrunkId, bool);

impl Registrations {
    /// The registrations of every trunk with a `register` setting, from the one of `locals` facing its registrar.
    /// None runs before [`Registrations::start`].
    pub(super) fn new(plan: &Plan, locals: &[(Transport, SocketAddr)]) -> Self {
        let regs = plan
            .trunks
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                let cfg = t.register.clone()?;
                let g = cfg.registrar;
                let peer = crate::b2bua::pick_local(locals, g.transport, g.addr).map(|local| Peer {
                    transport: g.transport,
                    local,
                    remote: g.addr,
                    conn: None,
                });
                let expires = cfg.expires.as_secs().clamp(1, u64::from(u32::MAX)) as u32;
                Some(Reg {
                    trunk: TrunkId(i as u32),
                    peer,
                    call_id: String::new(),
                    from_tag: String::new(),
                    cseq: 0,
                    client: None,
                    inflight: None,
                    registered_until: None,
                    next_at: None,
                    failures: 0,
                    spread: spread(&t.name),
                    expires,
                    reported: false,
                    cfg,
                })
            })
            .collect();
        Self { regs, by_key: HashMap::new(), active: false }
    }

    /// Whether `trunk` may take calls as far as registration goes: registered, or not a registering trunk.
    pub(super) fn trunk_ok(&self, trunk: TrunkId) -> bool {
        self.regs.iter().find(|r| r.trunk == trunk).is_none_or(|r| r.reported)
    }

    /// The registering trunks.
    pub(super) fn trunks(&self) -> impl Iterator<Item = TrunkId> + '_ {
        self.regs.iter().map(|r| r.trunk)
    }

    /// Whether this box registers.
    pub(super) fn is_active(&self) -> bool {
        self.active
    }

    /// This box registers from now on: every registration not in flight is sent at the next
    /// [`Registrations::send_due`].
    pub(super) fn start(&mut self, now: Instant) {
        self.active = true;
        for r in self.regs.iter_mut().filter(|r| r.inflight.is_none()) {
            r.next_at = Some(now);
            r.failures = 0;
        }
    }

    /// This box stops registering (it became standby): nothing more is sent, answers still coming are ignored,
    /// and every trunk is down here. Returns the trunks that were registered.
    pub(super) fn stop(&mut self, out: &mut VecDeque<Output>) -> Vec<Change> {
        self.active = false;
        let mut changes = Vec::new();
        for r in &mut self.regs {
            r.next_at = None;
            if let Some(f) = r.inflight.take() {
                self.by_key.remove(&f.key);
            }
            r.registered_until = None;
        }
        for i in 0..self.regs.len() {
            changes.extend(self.report(i, false, out));
        }
        changes
    }

    /// A clean stop: un-REGISTER (Expires: 0) every binding held, and register no more. Returns how many were sent
    /// and the trunks now down; [`Registrations::unregistering`] says when the answers are all in.
    pub(super) fn unregister(
        &mut self,
        now: Instant,
        txns: &mut Transactions,
        ids: &mut IdGenerator,
        server: &str,
        out: &mut VecDeque<Output>,
    ) -> (usize, Vec<Change>) {
        self.active = false;
        let (mut sent, mut changes) = (0, Vec::new());
        for i in 0..self.regs.len() {
            let r = &mut self.regs[i];
            r.next_at = None;
            if let Some(f) = r.inflight.take() {
                self.by_key.remove(&f.key);
            }
            if r.registered_until.take().is_none() {
                continue;
            }
            changes.extend(self.report(i, false, out));
            if self.send(i, now, 0, 0, txns, ids, server) {
                sent += 1;
            }
        }
        (sent, changes)
    }

    /// Abandons every REGISTER (not un-REGISTER) still waiting for an answer while not registered, and sends it
    /// again as a new transaction. Returns trunks whose state changed (none unless a send fails).
    pub(super) fn resend_unanswered(
        &mut self,
        now: Instant,
        txns: &mut Transactions,
        ids: &mut IdGenerator,
        server: &str,
        out: &mut VecDeque<Output>,
    ) -> Vec<Change> {
        let mut changes = Vec::new();
        for i in 0..self.regs.len() {
            let r = &mut self.regs[i];
            if r.registered_until.is_some() || r.inflight.as_ref().is_none_or(|f| f.expires == 0) {
                continue;
            }
            let Some(f) = r.inflight.take() else { continue };
            self.by_key.remove(&f.key);
            txns.abandon(&f.key);
            if !self.send(i, now, f.expires, f.challenges, txns, ids, server) {
                changes.extend(self.failed(i, now, "no_route", out));
            }
        }
        changes
    }

    /// The registration of `trunk` at `now`, if it registers.
    pub(super) fn status_of(&self, trunk: TrunkId, now: Instant) -> Option<super::admin::RegistrationStatus> {
        let r = self.regs.iter().find(|r| r.trunk == trunk)?;
        Some(super::admin::RegistrationStatus {
            registrar: r.cfg.registrar,
            aor: r.aor(),
            registered: r.reported,
            expires_in: r.registered_until.map(|u| u.saturating_duration_since(now)),
            failures: r.failures,
            running: self.active,
        })
    }

    /// Whether un-REGISTERs still wait for their answers.
    pub(super) fn unregistering(&self) -> bool {
        self.regs.iter().any(|r| r.inflight.as_ref().is_some_and(|f| f.expires == 0))
    }

    /// The next instant something is due: a REGISTER, or a binding running out.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.regs.iter().flat_map(|r| [r.next_at, r.registered_until]).flatten().min()
    }

    /// Sends the REGISTERs due at `now` and lets lapsed bindings go; returns trunks whose state changed.
    pub(super) fn send_due(
        &mut self,
        now: Instant,
        txns: &mut Transactions,
        ids: &mut IdGenerator,
        server: &str,
        out: &mut VecDeque<Output>,
    ) -> Vec<Change> {
        let mut changes = Vec::new();
        for i in 0..self.regs.len() {
            let r = &mut self.regs[i];
            if r.registered_until.is_some_and(|u| u <= now) {
                // The refresh did not get through in time: the registrar no longer has us.
                r.registered_until = None;
                out.push_back(Output::Observe(Observation::RegistrationResult { trunk: r.trunk, result: "expired" }));
                changes.extend(self.report(i, false, out));
            }
            let r = &mut self.regs[i];
            if !self.active || r.inflight.is_some() || r.next_at.is_none_or(|t| t > now) {
                continue;
            }
            r.next_at = None;
            let expires = r.expires;
            if !self.send(i, now, expires, 0, txns, ids, server) {
                changes.extend(self.failed(i, now, "no_route", out));
            }
        }
        changes
    }

    /// Sends registration `i`'s next REGISTER asking for `expires`; `challenges` answered so far in this attempt.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        i: usize,
        now: Instant,
        expires: u32,
        challenges: u8,
        txns: &mut Transactions,
        ids: &mut IdGenerator,
        server: &str,
    ) -> bool {
        let r = &mut self.regs[i];
        let Some(peer) = r.peer else { return false };
        if r.call_id.is_empty() {
            r.call_id = ids.call_id();
            r.from_tag = ids.tag();
        }
        r.cseq += 1;
        let Ok(uri) = Uri::parse(Bytes::from(format!("sip:{}", r.cfg.domain))) else { return false };
        let mut req = Request::new(Method::Register, uri);
        req.headers.push(HeaderName::Via, crate::dialog::via(&peer, &ids.branch()));
        req.headers.push(HeaderName::MaxForwards, "70");
        req.headers.push(HeaderName::From, format!("<{}>;tag={}", r.aor(), r.from_tag));
        req.headers.push(HeaderName::To, format!("<{}>", r.aor()));
        req.headers.push(HeaderName::CallId, r.call_id.clone());
        req.headers.push(HeaderName::CSeq, format!("{} REGISTER", r.cseq));
        req.headers.push(HeaderName::Contact, r.contact(&peer));
        req.headers.push(HeaderName::Expires, expires.to_string());
        req.headers.push(HeaderName::UserAgent, server.to_owned());
        if let Some((client, header)) = &mut r.client {
            let answer = client.authorize("REGISTER", &format!("sip:{}", r.cfg.domain), &ids.tag());
            req.headers.push(header.clone(), answer);
        }
        match txns.send_request(now, peer, req) {
            Ok(key) => {
                self.by_key.insert(key.clone(), i);
                r.inflight = Some(Inflight { key, challenges, expires });
                true
            }
            Err(_) => false,
        }
    }

    pub(super) fn owns(&self, key: &TransactionKey) -> bool {
        self.by_key.contains_key(key)
    }

    /// The answer (`None`: timeout or transport error) to REGISTER `key`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_result(
        &mut self,
        now: Instant,
        key: &TransactionKey,
        resp: Option<&Response>,
        txns: &mut Transactions,
        ids: &mut IdGenerator,
        server: &str,
        out: &mut VecDeque<Output>,
    ) -> Vec<Change> {
        if resp.is_some_and(Response::is_provisional) {
            return Vec::new();
        }
        let Some(i) = self.by_key.remove(key) else { return Vec::new() };
        let Some(f) = self.regs[i].inflight.take() else { return Vec::new() };
        let trunk = self.regs[i].trunk;
        let observe = |out: &mut VecDeque<Output>, result| {
            out.push_back(Output::Observe(Observation::RegistrationResult { trunk, result }))
        };
        let Some(resp) = resp else {
            if f.expires == 0 {
                observe(out, "timeout");
                return Vec::new();
            }
            return self.failed(i, now, "timeout", out);
        };
        if matches!(resp.status, 401 | 407) && f.challenges < CHALLENGES_PER_ATTEMPT {
            let (challenge_header, answer_header) = match resp.status {
                401 => (HeaderName::WwwAuthenticate, HeaderName::Authorization),
                _ => (HeaderName::ProxyAuthenticate, HeaderName::ProxyAuthorization),
            };
            let challenge = resp
                .headers
                .get_all(&challenge_header)
                .find_map(|v| Challenge::parse(std::str::from_utf8(v).ok()?).ok());
            // A second challenge in one attempt is answered only when it calls our nonce stale.
            if let Some(c) = challenge.filter(|c| f.challenges == 0 || c.stale) {
                observe(out, "challenged");
                let r = &mut self.regs[i];
                let cred = &r.cfg.credentials;
                r.client = Some((Client::new(c, cred.username.clone(), cred.password.clone()), answer_header));
                if self.send(i, now, f.expires, f.challenges + 1, txns, ids, server) {
                    return Vec::new();
                }
            }
        }
        if f.expires == 0 {
            observe(out, if resp.is_success() { "unregistered" } else { "rejected" });
            return Vec::new();
        }
        if resp.status == 423 && f.challenges < CHALLENGES_PER_ATTEMPT {
            // Interval Too Brief (§10.3 step 7): ask again at once with the registrar's minimum.
            let min = resp.headers.get(&HeaderName::MinExpires).and_then(seconds);
            if let Some(min) = min.filter(|&m| m > f.expires) {
                self.regs[i].expires = min;
                if self.send(i, now, min, f.challenges + 1, txns, ids, server) {
                    return Vec::new();
                }
            }
        }
        if !resp.is_success() {
            // A refused answer was for the credentials we hold: the next attempt starts from a fresh challenge.
            self.regs[i].client = None;
            return self.failed(i, now, failure_label(resp.status), out);
        }
        let r = &mut self.regs[i];
        let granted = r.peer.as_ref().and_then(|p| granted(resp, &r.cfg.contact_user, p)).unwrap_or(f.expires).max(1);
        let granted = Duration::from_secs(u64::from(granted));
        r.registered_until = Some(now + granted);
        r.next_at = Some(now + granted.mul_f64(REFRESH_FROM + (REFRESH_TO - REFRESH_FROM) * r.spread));
        r.failures = 0;
        observe(out, "ok");
        self.report(i, true, out).into_iter().collect()
    }

    /// Registration `i` failed (`result`): not registered, retried after the back-off.
    fn failed(&mut self, i: usize, now: Instant, result: &'static str, out: &mut VecDeque<Output>) -> Vec<Change> {
        let r = &mut self.regs[i];
        r.failures += 1;
        let backoff = RETRY_MIN.saturating_mul(1 << (r.failures - 1).min(16)).min(RETRY_MAX);
        // Up to a fifth more, fixed per trunk: trunks failing together (a registrar down) do not retry together.
        r.next_at = self.active.then(|| now + backoff.mul_f64(1.0 + 0.2 * r.spread));
        r.registered_until = None;
        out.push_back(Output::Observe(Observation::RegistrationResult { trunk: r.trunk, result }));
        self.report(i, false, out).into_iter().collect()
    }

    /// Registration `i` is now held or not: reported (a metric, a log line) and returned when that changed.
    fn report(&mut self, i: usize, registered: bool, out: &mut VecDeque<Output>) -> Option<Change> {
        let r = &mut self.regs[i];
        if std::mem::replace(&mut r.reported, registered) == registered {
            return None;
        }
        out.push_back(Output::Observe(Observation::RegistrationState { trunk: r.trunk, registered }));
        Some((r.trunk, registered))
    }
}

/// A point in [0, 1) fixed by the trunk's name (FNV-1a, mixed): where in the refresh window the trunk refreshes.
fn spread(name: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    // FNV leaves names that differ in their last bytes close together in the high bits: mix (SplitMix64's finish).
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// A bounded label for a refused REGISTER.
fn failure_label(status: u16) -> &'static str {
    match status {
        401 | 407 => "auth_failed",
        403 => "forbidden",
        400..=499 => "client_error",
        500..=599 => "server_error",
        _ => "rejected",
    }
}

/// A delta-seconds value (Expires, Min-Expires, a Contact's `expires`).
fn seconds(v: &[u8]) -> Option<u32> {
    let v = std::str::from_utf8(v).ok()?.trim();
    v.parse::<u64>().ok().map(|s| s.min(u64::from(u32::MAX)) as u32)
}

/// The expiry a 2xx to a REGISTER grants our binding: the `expires` of our Contact among those listed (§10.2.4),
/// else the Expires header.
fn granted(resp: &Response, contact_user: &str, peer: &Peer) -> Option<u32> {
    let ours = format!("{contact_user}@{}", peer.local);
    let by_contact = match resp.headers.contacts() {
        Ok(crate::msg::Contacts::Addrs(addrs)) => addrs.iter().find_map(|a| {
            let uri = String::from_utf8_lossy(a.uri_bytes()).to_ascii_lowercase();
            let matches = uri
                .strip_prefix("sip:")
                .or_else(|| uri.strip_prefix("sips:"))
                .is_some_and(|rest| rest.split(';').next() == Some(ours.to_ascii_lowercase().as_str()));
            matches.then(|| a.param("expires").flatten().and_then(seconds)).flatten()
        }),
        _ => None,
    };
    by_contact.or_else(|| resp.headers.get(&HeaderName::Expires).and_then(seconds))
}

#[cfg(test)]
mod tests;
