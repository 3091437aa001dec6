//! Canary calls (`[trunk.canary]`): per trunk, a real call to a configured number on a timer, through the
//! trunk's first gateway reachable from one of our addresses, with its transport and its credentials. It checks
//! that the call is answered and, where the far end echoes, that media comes back.
//!
//! A canary is a small UAC of its own rather than a routed call: it has no leg A, and it must not count in the
//! trunk's customer figures (ASR, limits, CDRs). It uses the transaction layer as every request does; its media
//! is the driver's business ([`CanaryMediaCommand`]): the driver sends a PCMU stream from a socket of its own to
//! the address of the answer's SDP, counts what comes back and hands the counts in
//! ([`Canaries::on_media_report`]), from which the result is decided here.
//!
//! One canary per trunk at a time: `Idle` → `Inviting` (INVITE sent; the answer timeout runs) → `Up` (2xx
//! acknowledged, media running for `hold`) → `Ending` (BYE sent, media stopped, waiting for the counts) → `Idle`.
//! A canary that fails before it is answered goes back to `Idle` at once. Results come out as
//! [`Observation::CanaryResult`].

mod sip;

use super::{IdGenerator, Observation, Output};
use crate::dialog::Dialog;
use crate::msg::{HeaderName, Message, Method, Request, Response};
use crate::routing::{CanaryConfig, Plan, TrunkId};
use crate::transport::{Peer, Transport};
use crate::txn::{TransactionKey, Transactions};
use bytes::Bytes;
use sip::{answer_media, confirm, host_of, invite, late_answer, offer, peer_host};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Why of a canary the far end hung up (with a BYE of its own) before its hold was over.
const FAR_END_HUNG_UP: &str = "far end hung up";

/// How long the driver gets to report a canary's media counts after it was told to stop: it answers at once, so
/// this only guards against a lost report.
pub const MEDIA_REPORT_WAIT: Duration = Duration::from_secs(2);

/// The outcome of one canary call, the `result` label of its metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CanaryResult {
    /// Answered, and the media check passed (or none was asked for).
    Success,
    /// The far end was reached but did not answer: 408, 480, 486, 487, 600, 603, or no final answer within the
    /// answer timeout after a provisional one.
    NoAnswer,
    /// Not reached, or refused: no response at all within the answer timeout, a transport error, any other
    /// failure status.
    Failed,
    /// Answered, but too little media came back.
    MediaFailed,
}

impl CanaryResult {
    /// Every result, for zero-valued series.
    pub const ALL: [Self; 4] = [Self::Success, Self::NoAnswer, Self::Failed, Self::MediaFailed];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::NoAnswer => "no_answer",
            Self::Failed => "failed",
            Self::MediaFailed => "media_failed",
        }
    }
}

/// What the driver does for a canary's media.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CanaryMediaCommand {
    /// Send a PCMU stream (20 ms packets) from the trunk's canary socket to `remote`, and count the packets that
    /// come back to it from `remote`'s address, until told to stop.
    Start {
        /// Whose canary.
        trunk: TrunkId,
        /// The far end's RTP address, from the answer's SDP.
        remote: SocketAddr,
    },
    /// Stop sending, and report what was sent and received with [`super::Endpoint::handle_canary_media`].
    Stop {
        /// Whose canary.
        trunk: TrunkId,
    },
}

/// The figures of one canary call, reported with its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CanaryReport {
    /// Whose canary.
    pub trunk: TrunkId,
    /// How it went.
    pub result: CanaryResult,
    /// Why, in a few words (`answered`, `media came back`, `no media back`, `status`, `no response`, ...).
    pub why: &'static str,
    /// The final status received, if any.
    pub status: Option<u16>,
    /// Post-dial delay: from the INVITE to the first 18x, or to the answer when none came before it.
    pub post_dial_delay: Option<Duration>,
    /// RTP packets sent and received (zero when not answered).
    pub sent: u64,
    /// RTP packets that came back.
    pub received: u64,
}

#[derive(Debug)]
enum State {
    Idle,
    Inviting {
        key: TransactionKey,
        invite: Request,
        started: Instant,
        deadline: Instant,
        ringing: Option<Instant>,
        provisional: bool,
        /// A challenge was answered already: a second one means the credentials were refused.
        challenged: bool,
        dialog: Dialog,
    },
    Up {
        dialog: Dialog,
        ack: Request,
        pdd: Duration,
        until: Instant,
        media: bool,
    },
    Ending {
        pdd: Duration,
        deadline: Instant,
        why: &'static str,
    },
}

#[derive(Debug)]
struct Canary {
    trunk: TrunkId,
    cfg: CanaryConfig,
    /// The trunk's gateways reachable from our addresses, in order, each with its Request-URI host (the trunk's
    /// `uri_host` or the gateway's address) and transport parameter. Empty: the canary never runs.
    gateways: Vec<(Peer, String)>,
    /// The gateway of the last canary (the first gateway before any).
    peer: Option<Peer>,
    /// Its Request-URI host.
    target: String,
    /// Our RTP address for the offer, from the driver.
    media: Option<SocketAddr>,
    next_at: Option<Instant>,
    state: State,
}

/// Every trunk's canary.
#[derive(Debug, Default)]
pub(super) struct Canaries {
    canaries: Vec<Canary>,
    /// INVITE and BYE transactions, by the canary (index) that sent them.
    by_key: HashMap<TransactionKey, usize>,
    /// Whether this box places canaries: alone, or the active of a pair (a standby's calls would leave from
    /// addresses it does not hold, and the pair would call the carrier twice).
    active: bool,
}

impl Canaries {
    /// The canaries of every trunk with a `canary` setting.
    pub(super) fn new(plan: &Plan, locals: &[(Transport, SocketAddr)]) -> Self {
        let canaries = plan
            .trunks
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                let cfg = t.canary.clone()?;
                let gateways: Vec<(Peer, String)> = t
                    .gateways
                    .iter()
                    .filter_map(|g| {
                        let local = crate::b2bua::pick_local(locals, g.transport, g.addr)?;
                        let host = t.uri_host.clone().unwrap_or_else(|| g.addr.to_string());
                        let target = format!("{host}{}", crate::b2bua::transport_param(g.transport));
                        Some((Peer { transport: g.transport, local, remote: g.addr, conn: None }, target))
                    })
                    .collect();
                let (peer, target) = gateways.first().cloned().unzip();
                Some(Canary {
                    trunk: TrunkId(i as u32),
                    cfg,
                    gateways,
                    peer,
                    target: target.unwrap_or_default(),
                    media: None,
                    next_at: None,
                    state: State::Idle,
                })
            })
            .collect();
        Self { canaries, by_key: HashMap::new(), active: false }
    }

    /// The trunks with a canary, and where each sends its signalling from and to (`None`: it cannot run).
    pub(super) fn trunks(&self) -> impl Iterator<Item = (TrunkId, Option<Peer>)> + '_ {
        self.canaries.iter().map(|c| (c.trunk, c.peer))
    }

    /// The driver's RTP socket for `trunk`'s canary.
    pub(super) fn set_media(&mut self, trunk: TrunkId, addr: SocketAddr) {
        if let Some(c) = self.canaries.iter_mut().find(|c| c.trunk == trunk) {
            c.media = Some(addr);
        }
    }

    /// Starts (`on`) or stops placing canaries; a canary running goes on to its result.
    pub(super) fn set_active(&mut self, on: bool) {
        self.active = on;
    }

    pub(super) fn owns(&self, key: &TransactionKey) -> bool {
        self.by_key.contains_key(key)
    }

    /// The next instant something is due.
    pub(super) fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        self.canaries
            .iter()
            .filter(|c| c.peer.is_some())
            .map(|c| {
                let state = match &c.state {
                    State::Idle => None,
                    State::Inviting { deadline, .. } => Some(*deadline),
                    State::Up { until, .. } => Some(*until),
                    State::Ending { deadline, .. } => Some(*deadline),
                };
                // Never run yet: the first is scheduled at the endpoint's first timeout.
                let next = c.next_at.unwrap_or(now);
                state.map_or(next, |s| s.min(next))
            })
            .min()
    }

    /// Starts the canaries due at `now` and ends those whose answer timeout or hold ran out. A canary goes to the
    /// first of its trunk's gateways that `gateway_down` (the probes) does not say is down, as a call would; to the
    /// first when all are.
    pub(super) fn handle_timeout(
        &mut self,
        now: Instant,
        txns: &mut Transactions,
        ids: &mut IdGenerator,
        server: &str,
        gateway_down: impl Fn(&Peer) -> bool,
        out: &mut VecDeque<Output>,
    ) {
        for i in 0..self.canaries.len() {
            let c = &mut self.canaries[i];
            if c.peer.is_none() {
                continue;
            }
            let next = *c.next_at.get_or_insert(now + c.cfg.every);
            match &c.state {
                State::Inviting { deadline, .. } if *deadline <= now => self.answer_timeout(i, now, txns, out),
                State::Up { until, .. } if *until <= now => self.hang_up(i, now, txns, ids, "held", out),
                State::Ending { deadline, .. } if *deadline <= now => {
                    // The driver never reported the counts: the media check cannot pass.
                    self.finish_media(i, 0, 0, out);
                }
                _ => {}
            }
            let c = &mut self.canaries[i];
            if next <= now {
                c.next_at = Some(now + c.cfg.every);
                if self.active && matches!(c.state, State::Idle) {
                    let pick = c.gateways.iter().find(|(p, _)| !gateway_down(p)).or(c.gateways.first());
                    if let Some((p, t)) = pick {
                        (c.peer, c.target) = (Some(*p), t.clone());
                    }
                    self.start(i, now, txns, ids, server);
                }
                // A canary still running when the next is due: that one is skipped, the running one reports.
            }
        }
    }

    fn start(&mut self, i: usize, now: Instant, txns: &mut Transactions, ids: &mut IdGenerator, server: &str) {
        let c = &mut self.canaries[i];
        let Some(peer) = c.peer else { return };
        let scheme_uri = format!("sip:{}@{}", c.cfg.number, c.target);
        let to_host = c.target.split(';').next().unwrap_or_default().to_owned();
        let dialog = Dialog {
            call_id: Bytes::from(ids.call_id()),
            local_tag: Bytes::from(ids.tag()),
            remote_tag: None,
            local_uri: Bytes::from(format!("<sip:{}@{}>", c.cfg.from, host_of(peer.local))),
            remote_uri: Bytes::from(format!("<sip:{}@{to_host}>", c.cfg.number)),
            remote_target: Bytes::from(scheme_uri),
            route_set: Vec::new(),
            local_cseq: 1,
            peer,
            contact: Bytes::from(format!(
                "<sip:canary@{}{}>",
                peer_host(peer.local),
                crate::b2bua::transport_param(peer.transport)
            )),
        };
        let media = c.media.unwrap_or_else(|| SocketAddr::new(peer.local.ip(), 9));
        let invite = invite(&dialog, &ids.branch(), server, &offer(media, ids));
        match txns.send_request(now, peer, invite.clone()) {
            Ok(key) => {
                self.by_key.insert(key.clone(), i);
                c.state = State::Inviting {
                    key,
                    invite,
                    started: now,
                    deadline: now + c.cfg.answer_timeout,
                    ringing: None,
                    provisional: false,
                    challenged: false,
                    dialog,
                };
            }
            Err(_) => c.state = State::Idle,
        }
    }

    /// A response (or `None`: timeout or transport error) to a canary's INVITE or BYE.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_result(
        &mut self,
        now: Instant,
        key: &TransactionKey,
        resp: Option<&Response>,
        plan: &Plan,
        txns: &mut Transactions,
        ids: &mut IdGenerator,
        out: &mut VecDeque<Output>,
    ) {
        let Some(&i) = self.by_key.get(key) else { return };
        if resp.is_none_or(|r| r.status >= 200) {
            self.by_key.remove(key);
        }
        let c = &mut self.canaries[i];
        if !matches!(&c.state, State::Inviting { key: ours, .. } if ours == key) {
            // A BYE's answer, or a late answer to an INVITE given up: a late 2xx is acknowledged and hung up.
            let late = resp.filter(|r| r.is_success() && r.headers.cseq().is_ok_and(|s| s.method == Method::Invite));
            if let Some(k) = late.and_then(|r| late_answer(r, c.peer, txns, ids, now)) {
                self.by_key.insert(k, i);
            }
            return;
        }
        let Some(r) = resp else {
            let State::Inviting { provisional, .. } = c.state else { return };
            let (result, why) =
                if provisional { (CanaryResult::NoAnswer, "no answer") } else { (CanaryResult::Failed, "no response") };
            return self.report_unanswered(i, result, why, None, out);
        };
        if r.is_provisional() {
            if let State::Inviting { ringing, provisional, .. } = &mut c.state {
                *provisional = true;
                if matches!(r.status, 180..=189) && ringing.is_none() {
                    *ringing = Some(now);
                }
            }
            return;
        }
        if matches!(r.status, 401 | 407) {
            if let Some(retry) = self.authorized_retry(i, r, plan, ids) {
                let c = &mut self.canaries[i];
                let Some(peer) = c.peer else { return };
                if let Ok(k) = txns.send_request(now, peer, retry.clone()) {
                    self.by_key.insert(k.clone(), i);
                    if let State::Inviting { key, invite, challenged, .. } = &mut c.state {
                        *key = k;
                        *invite = retry;
                        *challenged = true;
                    }
                    return;
                }
            }
            return self.report_unanswered(i, CanaryResult::Failed, "challenge not answered", Some(r.status), out);
        }
        if r.status >= 300 {
            let result = match r.status {
                408 | 480 | 486 | 487 | 600 | 603 => CanaryResult::NoAnswer,
                _ => CanaryResult::Failed,
            };
            return self.report_unanswered(i, result, "status", Some(r.status), out);
        }
        self.answered(i, now, r, txns, ids, out);
    }

    /// The 2xx: ACK it, start the media, hold.
    fn answered(
        &mut self,
        i: usize,
        now: Instant,
        r: &Response,
        txns: &mut Transactions,
        ids: &mut IdGenerator,
        out: &mut VecDeque<Output>,
    ) {
        let c = &mut self.canaries[i];
        let State::Inviting { started, ringing, mut dialog, invite, .. } = std::mem::replace(&mut c.state, State::Idle)
        else {
            return;
        };
        confirm(&mut dialog, r);
        let invite_cseq = invite.headers.cseq().map(|s| s.seq).unwrap_or(dialog.local_cseq);
        let ack = dialog.ack(invite_cseq, &ids.branch());
        txns.send_ack(dialog.peer, ack.clone());
        let pdd = ringing.unwrap_or(now).saturating_duration_since(started);
        let remote = answer_media(&r.body);
        if let Some(remote) = remote {
            out.push_back(Output::Canary(CanaryMediaCommand::Start { trunk: c.trunk, remote }));
        }
        c.state = State::Up { dialog, ack, pdd, until: now + c.cfg.hold, media: remote.is_some() };
    }

    /// The hold is over (`why` = `held`), the SBC stops (`stopping`), or the far end hung up (`why` = `far end
    /// hung up`, the only case without our BYE): stop the media.
    fn hang_up(
        &mut self,
        i: usize,
        now: Instant,
        txns: &mut Transactions,
        ids: &mut IdGenerator,
        why: &'static str,
        out: &mut VecDeque<Output>,
    ) {
        let c = &mut self.canaries[i];
        let State::Up { mut dialog, pdd, media, .. } = std::mem::replace(&mut c.state, State::Idle) else { return };
        if why != FAR_END_HUNG_UP {
            let bye = dialog.request(Method::Bye, &ids.branch());
            if let Ok(k) = txns.send_request(now, dialog.peer, bye) {
                self.by_key.insert(k, i);
            }
        }
        let c = &mut self.canaries[i];
        if media {
            out.push_back(Output::Canary(CanaryMediaCommand::Stop { trunk: c.trunk }));
            c.state = State::Ending { pdd, deadline: now + MEDIA_REPORT_WAIT, why };
        } else {
            c.state = State::Ending { pdd, deadline: now, why: "no media address in the answer" };
            self.finish_media(i, 0, 0, out);
        }
    }

    /// The driver's counts for `trunk`'s canary.
    pub(super) fn on_media_report(&mut self, trunk: TrunkId, sent: u64, received: u64, out: &mut VecDeque<Output>) {
        if let Some(i) = self.canaries.iter().position(|c| c.trunk == trunk) {
            self.finish_media(i, sent, received, out);
        }
    }

    fn finish_media(&mut self, i: usize, sent: u64, received: u64, out: &mut VecDeque<Output>) {
        let c = &mut self.canaries[i];
        let State::Ending { pdd, why, .. } = std::mem::replace(&mut c.state, State::Idle) else { return };
        let ok = c.cfg.media_ok(sent, received);
        let (result, why) = match (ok, c.cfg.media) {
            (true, crate::routing::CanaryMedia::Echo) => (CanaryResult::Success, "media came back"),
            (true, crate::routing::CanaryMedia::None) => (CanaryResult::Success, "answered"),
            (false, _) if why == "no media address in the answer" => (CanaryResult::MediaFailed, why),
            (false, _) if received == 0 => (CanaryResult::MediaFailed, "no media back"),
            (false, _) => (CanaryResult::MediaFailed, "too little media back"),
        };
        let report =
            CanaryReport { trunk: c.trunk, result, why, status: Some(200), post_dial_delay: Some(pdd), sent, received };
        out.push_back(Output::Observe(Observation::CanaryResult(report)));
    }

    fn report_unanswered(
        &mut self,
        i: usize,
        result: CanaryResult,
        why: &'static str,
        status: Option<u16>,
        out: &mut VecDeque<Output>,
    ) {
        let c = &mut self.canaries[i];
        let pdd = match &c.state {
            State::Inviting { started, ringing, .. } => ringing.map(|r| r.saturating_duration_since(*started)),
            _ => None,
        };
        c.state = State::Idle;
        let report = CanaryReport { trunk: c.trunk, result, why, status, post_dial_delay: pdd, sent: 0, received: 0 };
        out.push_back(Output::Observe(Observation::CanaryResult(report)));
    }

    /// The SBC stops: no canary starts any more, an answered one is hung up (BYE) and one ringing is cancelled, so
    /// that none stays up at the carrier.
    pub(super) fn shutdown(
        &mut self,
        now: Instant,
        txns: &mut Transactions,
        ids: &mut IdGenerator,
        out: &mut VecDeque<Output>,
    ) {
        self.active = false;
        for i in 0..self.canaries.len() {
            match &self.canaries[i].state {
                State::Up { .. } => self.hang_up(i, now, txns, ids, "stopping", out),
                State::Inviting { .. } => self.answer_timeout(i, now, txns, out),
                _ => {}
            }
        }
    }

    /// No final answer within the answer timeout: CANCEL after a provisional (§9.1 allows none before); without
    /// any response the INVITE transaction just runs out (its late answers are handled in `on_result`).
    fn answer_timeout(&mut self, i: usize, now: Instant, txns: &mut Transactions, out: &mut VecDeque<Output>) {
        let c = &self.canaries[i];
        let State::Inviting { key, invite, provisional, .. } = &c.state else { return };
        let (result, why) = if *provisional {
            let cancel = crate::b2bua::cancel_for(invite);
            // Its answer is matched here and dropped.
            if let Some(k) = c.peer.and_then(|peer| txns.send_request(now, peer, cancel).ok()) {
                self.by_key.insert(k, i);
            }
            txns.cancel_sent(now, key);
            (CanaryResult::NoAnswer, "no answer")
        } else {
            (CanaryResult::Failed, "no response")
        };
        self.report_unanswered(i, result, why, None, out);
    }

    fn authorized_retry(&mut self, i: usize, r: &Response, plan: &Plan, ids: &mut IdGenerator) -> Option<Request> {
        use crate::policy::digest::{Challenge, Client};
        let c = &mut self.canaries[i];
        let cred = plan.trunks.get(c.trunk.0 as usize)?.auth.as_ref()?;
        let State::Inviting { invite, challenged: false, dialog, .. } = &mut c.state else { return None };
        let (challenge_header, answer_header) = match r.status {
            401 => (HeaderName::WwwAuthenticate, HeaderName::Authorization),
            _ => (HeaderName::ProxyAuthenticate, HeaderName::ProxyAuthorization),
        };
        let challenge =
            r.headers.get_all(&challenge_header).find_map(|v| Challenge::parse(std::str::from_utf8(v).ok()?).ok())?;
        let mut client = Client::new(challenge, cred.username.clone(), cred.password.clone());
        let uri = String::from_utf8_lossy(invite.uri.as_bytes()).into_owned();
        let answer = client.authorize("INVITE", &uri, &ids.tag());
        dialog.local_cseq += 1;
        let mut retry = invite.clone();
        retry.headers.remove(&HeaderName::Via);
        retry.headers.push_front(HeaderName::Via, crate::dialog::via(&dialog.peer, &ids.branch()));
        retry.headers.set(HeaderName::CSeq, format!("{} INVITE", dialog.local_cseq));
        retry.headers.remove(&answer_header);
        retry.headers.push(answer_header, answer);
        Some(retry)
    }

    /// A message no transaction claimed that belongs to a canary: a 2xx retransmission (our ACK was lost: sent
    /// again). Returns whether it was ours.
    pub(super) fn on_stray(&mut self, msg: &Message, txns: &mut Transactions) -> bool {
        let Message::Response(r) = msg else { return false };
        if !r.is_success() {
            return false;
        }
        let call_id = r.headers.get(&HeaderName::CallId).unwrap_or_default();
        for c in &self.canaries {
            if let State::Up { dialog, ack, .. } = &c.state {
                if dialog.call_id.as_ref() == call_id {
                    txns.send_ack(dialog.peer, ack.clone());
                    return true;
                }
            }
        }
        false
    }

    /// Whether `req` is a request in a canary's dialog (a BYE from the far end, a re-INVITE, an OPTIONS).
    pub(super) fn owns_dialog(&self, req: &Request) -> bool {
        self.index_of_dialog(req).is_some()
    }

    fn index_of_dialog(&self, req: &Request) -> Option<usize> {
        let call_id = req.headers.get(&HeaderName::CallId)?;
        let to_tag = req.headers.to().ok()?.tag().map(<[u8]>::to_vec)?;
        self.canaries.iter().position(|c| match &c.state {
            State::Up { dialog, .. } => dialog.call_id.as_ref() == call_id && dialog.local_tag.as_ref() == to_tag,
            _ => false,
        })
    }

    /// A request in a canary's dialog: a BYE ends the canary early (its media is judged on what came so far); the
    /// rest is answered 200 (keep-alives) or 488 (a re-INVITE: the canary's session does not change).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_in_dialog(
        &mut self,
        now: Instant,
        key: &TransactionKey,
        req: &Request,
        txns: &mut Transactions,
        ids: &mut IdGenerator,
        out: &mut VecDeque<Output>,
    ) {
        let Some(i) = self.index_of_dialog(req) else { return };
        let status = if req.method == Method::Invite { 488 } else { 200 };
        if req.method != Method::Ack {
            let _ = txns.respond(now, key, Response::to_request(req, status, ""));
        }
        if req.method == Method::Bye {
            self.hang_up(i, now, txns, ids, FAR_END_HUNG_UP, out);
        }
    }
}

#[cfg(test)]
mod tests;
