//! Server transactions: INVITE (§17.2.1, with RFC 6026's Accepted state) and non-INVITE (§17.2.2).

use super::{Event, Kind, TimerConfig, TxnError};
use crate::endpoint::Observation;
use crate::msg::{Message, Method, Request, Response};
use crate::transport::Peer;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// NIST only: no response yet.
    Trying,
    /// A provisional was sent (or, for IST, nothing yet).
    Proceeding,
    /// IST: a 2xx was sent; absorb INVITE retransmissions until timer L (RFC 6026 §8.7).
    Accepted,
    /// A final response was sent; retransmit it on request retransmissions (and, IST over UDP, on timer G).
    Completed,
    /// IST: the ACK came; absorb further ACKs until timer I.
    Confirmed,
    Terminated,
}

/// One server transaction.
#[derive(Debug)]
pub(super) struct ServerTxn {
    kind: Kind,
    state: State,
    reliable: bool,
    /// Where responses go (§18.2.2, RFC 3581).
    peer: Peer,
    /// IST: the request, kept to build the automatic 100 Trying and dropped with the first response (an INVITE
    /// transaction lives 32 s after the answer, timer L, and so would its copy of every INVITE). Boxed so that a
    /// transaction without it takes little room in the table.
    request: Option<Box<Request>>,
    /// The response a retransmitted request gets again. Not kept in Accepted: there the core retransmits its 2xx
    /// itself and a retransmitted INVITE is absorbed (RFC 6026 §8.7).
    last: Option<Box<Response>>,
    /// Timer G's current interval.
    g_interval: Duration,
    /// Retransmission (G) or 100 Trying timer.
    resend_at: Option<Instant>,
    /// Timers H, I, J, L: when the state ends.
    end_at: Option<Instant>,
}

/// RFC 3261 §18.2.2 with RFC 3581: over UDP answer the source address, at the source port when the client asked
/// for rport, else at the Via's port; over a connection, on that connection.
pub(super) fn response_peer(peer: Peer, req: &Request) -> Peer {
    if peer.transport.is_reliable() {
        return peer;
    }
    let mut to = peer;
    if let Ok(via) = req.headers.top_via() {
        if via.rport().is_none() {
            to.remote.set_port(via.port.unwrap_or(5060));
        }
    }
    to
}

impl ServerTxn {
    pub(super) fn new(now: Instant, peer: Peer, request: &Request, cfg: &TimerConfig) -> Self {
        let kind = if request.method == Method::Invite { Kind::Ist } else { Kind::Nist };
        let reliable = peer.transport.is_reliable();
        let peer = response_peer(peer, request);
        let (state, resend_at) = match kind {
            Kind::Ist => (State::Proceeding, Some(now + cfg.trying_after)),
            _ => (State::Trying, None),
        };
        let request = (kind == Kind::Ist).then(|| Box::new(request.clone()));
        Self { kind, state, reliable, peer, request, last: None, g_interval: cfg.t1, resend_at, end_at: None }
    }

    /// A server INVITE transaction taken over from another box (hot standby): in Proceeding with `last`, the
    /// provisional already sent, so a retransmitted INVITE gets it again; no automatic 100 Trying.
    pub(super) fn resumed_invite(peer: Peer, request: Request, last: Response, cfg: &TimerConfig) -> Self {
        let reliable = peer.transport.is_reliable();
        let peer = response_peer(peer, &request);
        Self {
            kind: Kind::Ist,
            state: State::Proceeding,
            reliable,
            peer,
            request: None,
            last: Some(Box::new(last)),
            g_interval: cfg.t1,
            resend_at: None,
            end_at: None,
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

    fn send(&self, resp: Response, out: &mut Vec<Event>) {
        out.push(Event::Transmit { peer: self.peer, message: Message::Response(resp) });
    }

    fn resend_last(&self, out: &mut Vec<Event>) {
        if let Some(r) = &self.last {
            out.push(Event::Observe(Observation::Retransmission { direction: "out" }));
            self.send(Response::clone(r), out);
        }
    }

    /// A retransmission of the request, or (IST) the ACK for our non-2xx final.
    pub(super) fn on_request(&mut self, now: Instant, req: &Request, cfg: &TimerConfig, out: &mut Vec<Event>) {
        if req.method == Method::Ack {
            if self.state == State::Completed {
                self.state = State::Confirmed;
                self.resend_at = None;
                self.end_at = Some(now + if self.reliable { Duration::ZERO } else { cfg.t4 });
            }
            // ACKs in Confirmed are absorbed; an ACK in Accepted is for the 2xx and the core never sees it here
            // because it carries a new branch (§17.1.1.3).
            return;
        }
        out.push(Event::Observe(Observation::Retransmission { direction: "in" }));
        match self.state {
            State::Proceeding | State::Completed => self.resend_last(out),
            State::Trying | State::Accepted | State::Confirmed | State::Terminated => {}
        }
    }

    /// The core's response.
    pub(super) fn respond(
        &mut self,
        now: Instant,
        resp: Response,
        cfg: &TimerConfig,
        out: &mut Vec<Event>,
    ) -> Result<(), TxnError> {
        let provisional = resp.is_provisional();
        match (self.kind, self.state) {
            (_, State::Trying | State::Proceeding) if provisional => {
                self.state = State::Proceeding;
                if self.kind == Kind::Ist {
                    self.resend_at = None;
                }
            }
            (Kind::Nist, State::Trying | State::Proceeding) => {
                self.state = State::Completed;
                self.end_at = Some(now + if self.reliable { Duration::ZERO } else { 64 * cfg.t1 });
            }
            (Kind::Ist, State::Proceeding) if resp.is_success() => {
                self.state = State::Accepted;
                self.resend_at = None;
                self.end_at = Some(now + 64 * cfg.t1);
            }
            (Kind::Ist, State::Proceeding) => {
                self.state = State::Completed;
                self.resend_at = (!self.reliable).then(|| now + self.g_interval);
                self.end_at = Some(now + 64 * cfg.t1);
            }
            // The core retransmits its own 2xx until the ACK (§13.3.1.4); pass those through.
            (Kind::Ist, State::Accepted) if resp.is_success() => {}
            _ => return Err(TxnError::State),
        }
        self.request = None;
        self.last = (self.state != State::Accepted).then(|| Box::new(resp.clone()));
        self.send(resp, out);
        Ok(())
    }

    pub(super) fn on_timer(
        &mut self,
        now: Instant,
        key: &super::TransactionKey,
        cfg: &TimerConfig,
        out: &mut Vec<Event>,
    ) {
        if self.resend_at.is_some_and(|t| t <= now) {
            match self.state {
                // The core did not answer within 200 ms: say we are working on it (§17.2.1).
                State::Proceeding => {
                    self.resend_at = None;
                    if let Some(request) = self.request.take() {
                        let trying = Response::to_request(&request, 100, "Trying");
                        self.last = Some(Box::new(trying.clone()));
                        self.send(trying, out);
                    }
                }
                // Timer G.
                State::Completed => {
                    self.resend_last(out);
                    self.g_interval = (self.g_interval * 2).min(cfg.t2);
                    self.resend_at = Some(now + self.g_interval);
                }
                _ => self.resend_at = None,
            }
        }
        if self.end_at.is_some_and(|t| t <= now) {
            if self.kind == Kind::Ist && self.state == State::Completed {
                // Timer H: the peer never acknowledged our final response.
                out.push(Event::AckTimeout { key: key.clone() });
            }
            self.state = State::Terminated;
            self.resend_at = None;
            self.end_at = None;
        }
    }
}
