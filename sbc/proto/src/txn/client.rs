//! Client transactions: INVITE (§17.1.1, with RFC 6026's Accepted state) and non-INVITE (§17.1.2).

use super::{Event, Kind, TimerConfig, TransactionKey};
use crate::endpoint::Observation;
use crate::msg::{CSeq, HeaderName, Message, Method, Request, Response};
use crate::transport::Peer;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Request sent, nothing heard (ICT: Calling, NICT: Trying).
    Calling,
    /// A provisional came.
    Proceeding,
    /// ICT: a 2xx came; pass further 2xx to the core until timer M (RFC 6026 §8.4).
    Accepted,
    /// A final came; absorb retransmissions (ICT: re-ACK them) until timer D or K.
    Completed,
    Terminated,
}

/// One client transaction.
#[derive(Debug)]
pub(super) struct ClientTxn {
    kind: Kind,
    state: State,
    reliable: bool,
    peer: Peer,
    /// The request, retransmitted until a response stops it, and the INVITE an ACK for a non-2xx copies; dropped
    /// with the final response (an INVITE transaction lives 32 s after a 2xx, timer M, and so would its copy).
    /// Boxed so that a transaction without it takes little room in the table.
    request: Option<Box<Request>>,
    ack: Option<Box<Request>>,
    interval: Duration,
    /// Timer A or E.
    resend_at: Option<Instant>,
    /// Timer B or F (timeout), the end of a cancelled INVITE's wait (§9.1), then D, K or M (end of
    /// Completed/Accepted).
    end_at: Option<Instant>,
    /// ICT: the TU sent a CANCEL for it.
    cancelled: bool,
}

impl ClientTxn {
    pub(super) fn new(now: Instant, peer: Peer, request: Request, cfg: &TimerConfig, out: &mut Vec<Event>) -> Self {
        let kind = if request.method == Method::Invite { Kind::Ict } else { Kind::Nict };
        let reliable = peer.transport.is_reliable();
        out.push(Event::Transmit { peer, message: Message::Request(request.clone()) });
        Self {
            kind,
            state: State::Calling,
            reliable,
            peer,
            request: Some(Box::new(request)),
            ack: None,
            interval: cfg.t1,
            resend_at: (!reliable).then(|| now + cfg.t1),
            end_at: Some(now + 64 * cfg.t1),
            cancelled: false,
        }
    }

    /// A client INVITE transaction taken over from another box (hot standby), nothing sent now: in Calling
    /// (`proceeding` false) its retransmissions resume from T1 and it times out at `timeout_at` (timer B of the
    /// original send); in Proceeding (a provisional came) there are none, and timer C runs again from now (the time
    /// of the callee's last provisional is not replicated).
    pub(super) fn resumed_invite(
        now: Instant,
        peer: Peer,
        request: Request,
        proceeding: bool,
        timeout_at: Instant,
        cfg: &TimerConfig,
    ) -> Self {
        let reliable = peer.transport.is_reliable();
        Self {
            kind: Kind::Ict,
            state: if proceeding { State::Proceeding } else { State::Calling },
            reliable,
            peer,
            request: Some(Box::new(request)),
            ack: None,
            interval: cfg.t1,
            resend_at: (!reliable && !proceeding).then(|| now + cfg.t1),
            end_at: Some(if proceeding { now + cfg.timer_c } else { timeout_at.max(now) }),
            cancelled: false,
        }
    }

    pub(super) fn kind(&self) -> Kind {
        self.kind
    }

    pub(super) fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }

    pub(super) fn deadline(&self) -> Option<Instant> {
        super::earliest(self.resend_at, self.end_at)
    }

    fn linger(&self, cfg: &TimerConfig) -> Duration {
        match (self.reliable, self.kind) {
            (true, _) => Duration::ZERO,
            (false, Kind::Ict) => cfg.timer_d,
            (false, _) => cfg.t4,
        }
    }

    /// A response matched to this transaction.
    pub(super) fn on_response(
        &mut self,
        now: Instant,
        key: &TransactionKey,
        resp: Response,
        cfg: &TimerConfig,
        out: &mut Vec<Event>,
    ) {
        let pass =
            |resp: Response, out: &mut Vec<Event>| out.push(Event::Response { key: key.clone(), response: resp });
        match (self.state, resp.status) {
            (State::Calling | State::Proceeding, 100..=199) => {
                if self.kind == Kind::Ict && !self.cancelled {
                    // §17.1.1.2: timer B runs only while Calling. A callee may ring for minutes; the TU ends
                    // that with a CANCEL (`cancel_sent`), and timer C bounds a callee that falls silent.
                    self.end_at = Some(now + cfg.timer_c);
                }
                self.state = State::Proceeding;
                match self.kind {
                    // §17.1.1.2: a provisional stops INVITE retransmissions.
                    Kind::Ict => self.resend_at = None,
                    // §17.1.2.2: non-INVITE retransmissions continue, every T2.
                    _ => self.interval = cfg.t2,
                }
                pass(resp, out);
            }
            (State::Calling | State::Proceeding, 200..=299) if self.kind == Kind::Ict => {
                self.state = State::Accepted;
                self.resend_at = None;
                self.request = None;
                self.end_at = Some(now + 64 * cfg.t1);
                pass(resp, out);
            }
            (State::Calling | State::Proceeding, _) => {
                self.state = State::Completed;
                self.resend_at = None;
                self.end_at = Some(now + self.linger(cfg));
                if let Some(request) = self.request.take().filter(|_| self.kind == Kind::Ict) {
                    let ack = ack_for(&request, &resp);
                    out.push(Event::Transmit { peer: self.peer, message: Message::Request(ack.clone()) });
                    self.ack = Some(Box::new(ack));
                }
                pass(resp, out);
            }
            // 2xx retransmissions, or 2xx from other forks: the core ACKs them (§13.2.2.4).
            (State::Accepted, 200..=299) => pass(resp, out),
            (State::Completed, 300..=699) => {
                out.push(Event::Observe(Observation::Retransmission { direction: "in" }));
                if let Some(ack) = &self.ack {
                    out.push(Event::Transmit { peer: self.peer, message: Message::Request(Request::clone(ack)) });
                }
            }
            _ => out.push(Event::Observe(Observation::Retransmission { direction: "in" })),
        }
    }

    pub(super) fn on_timer(&mut self, now: Instant, key: &TransactionKey, cfg: &TimerConfig, out: &mut Vec<Event>) {
        if let Some(request) = self.request.as_deref().filter(|_| self.resend_at.is_some_and(|t| t <= now)) {
            out.push(Event::Observe(Observation::Retransmission { direction: "out" }));
            out.push(Event::Transmit { peer: self.peer, message: Message::Request(request.clone()) });
            self.interval = match self.kind {
                Kind::Ict => self.interval * 2,
                _ if self.state == State::Proceeding => cfg.t2,
                _ => (self.interval * 2).min(cfg.t2),
            };
            self.resend_at = Some(now + self.interval);
        }
        if self.end_at.is_some_and(|t| t <= now) {
            if matches!(self.state, State::Calling | State::Proceeding) {
                out.push(Event::Timeout { key: key.clone() });
            }
            self.state = State::Terminated;
            self.resend_at = None;
            self.end_at = None;
        }
    }

    /// The TU sent a CANCEL for this INVITE: without a final response within 64*T1 the transaction ends as timed
    /// out (§9.1: "the client SHOULD consider the INVITE transaction cancelled and destroy it").
    pub(super) fn cancel_sent(&mut self, now: Instant, cfg: &TimerConfig) {
        if self.kind == Kind::Ict && matches!(self.state, State::Calling | State::Proceeding) {
            self.cancelled = true;
            let give_up = now + 64 * cfg.t1;
            self.end_at = Some(self.end_at.map_or(give_up, |t| t.min(give_up)));
        }
    }

    /// Where this transaction's request goes.
    pub(super) fn peer(&self) -> &Peer {
        &self.peer
    }

    /// Whether no final response came yet (a transport error still matters).
    pub(super) fn is_pending(&self) -> bool {
        matches!(self.state, State::Calling | State::Proceeding)
    }

    /// A transport error on this transaction's destination: it ends at once (§17.1.4).
    pub(super) fn on_transport_error(&mut self, key: &TransactionKey, out: &mut Vec<Event>) {
        if self.is_pending() {
            out.push(Event::TransportError { key: key.clone() });
        }
        self.state = State::Terminated;
        self.resend_at = None;
        self.end_at = None;
    }
}

/// The ACK for a non-2xx final response (§17.1.1.3): same Request-URI, Call-ID, From, CSeq number and top Via as
/// the INVITE, To from the response, the INVITE's Route headers.
pub(super) fn ack_for(invite: &Request, resp: &Response) -> Request {
    let mut ack = Request::new(Method::Ack, invite.uri.clone());
    let h = &invite.headers;
    if let Some(v) = h.get_bytes(&HeaderName::Via) {
        ack.headers.push(HeaderName::Via, v);
    }
    ack.headers.push(HeaderName::MaxForwards, "70");
    for name in [HeaderName::From] {
        if let Some(v) = h.get_bytes(&name) {
            ack.headers.push(name, v);
        }
    }
    if let Some(v) = resp.headers.get_bytes(&HeaderName::To) {
        ack.headers.push(HeaderName::To, v);
    }
    if let Some(v) = h.get_bytes(&HeaderName::CallId) {
        ack.headers.push(HeaderName::CallId, v);
    }
    if let Ok(c) = h.cseq() {
        ack.headers.push(HeaderName::CSeq, CSeq { seq: c.seq, method: Method::Ack }.to_bytes());
    }
    for r in h.get_all_bytes(&HeaderName::Route) {
        ack.headers.push(HeaderName::Route, r);
    }
    ack
}
