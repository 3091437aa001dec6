//! All transactions of an endpoint: routing of messages to them, timers, and the events they produce.

use super::client::ClientTxn;
use super::server::ServerTxn;
use super::{Event, TimerConfig, TransactionKey, TxnError};
use crate::endpoint::Observation;
use crate::msg::{Message, Method, Request, Response};
use crate::transport::Peer;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::Instant;

#[derive(Debug)]
enum Txn {
    Client(ClientTxn),
    Server(ServerTxn),
}

impl Txn {
    fn deadline(&self) -> Option<Instant> {
        match self {
            Self::Client(t) => t.deadline(),
            Self::Server(t) => t.deadline(),
        }
    }

    fn is_terminated(&self) -> bool {
        match self {
            Self::Client(t) => t.is_terminated(),
            Self::Server(t) => t.is_terminated(),
        }
    }

    fn kind_label(&self) -> &'static str {
        match self {
            Self::Client(t) => t.kind().label(),
            Self::Server(t) => t.kind().label(),
        }
    }
}

#[derive(Debug)]
struct Entry {
    txn: Txn,
    /// The deadline already in the heap for this transaction, so unchanged deadlines are not pushed again.
    scheduled: Option<Instant>,
}

/// Every live transaction, with a timer heap. Stale heap entries (a transaction whose deadline moved) are skipped
/// when popped; a spurious early wake-up of the driver is harmless.
#[derive(Debug)]
pub struct Transactions {
    cfg: TimerConfig,
    /// Boxed: an entry is 184 bytes and the map keeps room for up to twice its entries (an INVITE's two
    /// transactions live 32 s after the answer, so every call up holds two); the room then costs a pointer.
    txns: HashMap<TransactionKey, Box<Entry>>,
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    heap_keys: HashMap<u64, TransactionKey>,
    next_seq: u64,
    events: VecDeque<Event>,
    scratch: Vec<Event>,
}

impl Transactions {
    /// An empty table.
    pub fn new(cfg: TimerConfig) -> Self {
        Self {
            cfg,
            txns: HashMap::new(),
            heap: BinaryHeap::new(),
            heap_keys: HashMap::new(),
            next_seq: 0,
            events: VecDeque::new(),
            scratch: Vec::new(),
        }
    }

    /// Number of live transactions.
    pub fn len(&self) -> usize {
        self.txns.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.txns.is_empty()
    }

    /// Whether a server transaction with this key is alive (e.g. the INVITE a CANCEL targets).
    pub fn contains(&self, key: &TransactionKey) -> bool {
        self.txns.contains_key(key)
    }

    /// A request received from `peer`.
    pub fn handle_request(&mut self, now: Instant, peer: Peer, req: Request) {
        let Some(key) = TransactionKey::for_request(&req) else {
            self.events.push_back(Event::Stray { peer, message: Message::Request(req) });
            return;
        };
        let mut out = std::mem::take(&mut self.scratch);
        match self.txns.get_mut(&key).map(|e| &mut **e) {
            Some(Entry { txn: Txn::Server(t), .. }) => t.on_request(now, &req, &self.cfg, &mut out),
            _ if req.method == Method::Ack => {
                // An ACK for a 2xx, or for a transaction long gone: the core's business (§17.2.3).
                out.push(Event::Stray { peer, message: Message::Request(req) });
            }
            _ => {
                let t = ServerTxn::new(now, peer, &req, &self.cfg);
                out.push(Event::Observe(Observation::TransactionStarted { kind: t.kind().label() }));
                out.push(Event::Request { key: key.clone(), peer, request: req });
                self.txns.insert(key.clone(), Box::new(Entry { txn: Txn::Server(t), scheduled: None }));
            }
        }
        self.finish(key, out);
    }

    /// A response received.
    pub fn handle_response(&mut self, now: Instant, peer: Peer, resp: Response) {
        let Some(key) = TransactionKey::for_response(&resp) else {
            self.events.push_back(Event::Stray { peer, message: Message::Response(resp) });
            return;
        };
        let mut out = std::mem::take(&mut self.scratch);
        match self.txns.get_mut(&key).map(|e| &mut **e) {
            Some(Entry { txn: Txn::Client(t), .. }) => t.on_response(now, &key, resp, &self.cfg, &mut out),
            _ => out.push(Event::Stray { peer, message: Message::Response(resp) }),
        }
        self.finish(key, out);
    }

    /// The core's response on server transaction `key`.
    pub fn respond(&mut self, now: Instant, key: &TransactionKey, resp: Response) -> Result<(), TxnError> {
        let mut out = std::mem::take(&mut self.scratch);
        let r = match self.txns.get_mut(key).map(|e| &mut **e) {
            Some(Entry { txn: Txn::Server(t), .. }) => t.respond(now, resp, &self.cfg, &mut out),
            _ => Err(TxnError::Unknown),
        };
        self.finish(key.clone(), out);
        r
    }

    /// Forgets server transaction `key` without answering (a request from an unknown source that is dropped
    /// silently: not even the automatic 100 Trying goes out).
    pub fn abandon(&mut self, key: &TransactionKey) {
        if let Some(e) = self.txns.remove(key) {
            self.events.push_back(Event::Observe(Observation::TransactionEnded { kind: e.txn.kind_label() }));
        }
    }

    /// Starts a client transaction for `req` (whose top Via carries a fresh branch) toward `peer`.
    pub fn send_request(&mut self, now: Instant, peer: Peer, req: Request) -> Result<TransactionKey, TxnError> {
        if req.method == Method::Ack {
            return Err(TxnError::Malformed("a transaction: an ACK has none; use send_ack"));
        }
        let key = TransactionKey::for_sent_request(&req).ok_or(TxnError::Malformed("Via with branch"))?;
        let mut out = std::mem::take(&mut self.scratch);
        let t = ClientTxn::new(now, peer, req, &self.cfg, &mut out);
        out.push(Event::Observe(Observation::TransactionStarted { kind: t.kind().label() }));
        self.txns.insert(key.clone(), Box::new(Entry { txn: Txn::Client(t), scheduled: None }));
        self.finish(key.clone(), out);
        Ok(key)
    }

    /// Re-creates the server INVITE transaction of `request` (received from `peer`) taken over from another box
    /// (hot standby): in Proceeding, `last` being the provisional already sent. A retransmitted INVITE gets `last`
    /// again, a CANCEL finds the transaction, and the core's final response goes out through [`Self::respond`] as
    /// usual. Nothing is sent now. Replaces a transaction with the same key.
    pub fn adopt_server_invite(
        &mut self,
        peer: Peer,
        request: Request,
        last: Response,
    ) -> Result<TransactionKey, TxnError> {
        if request.method != Method::Invite {
            return Err(TxnError::Malformed("an INVITE"));
        }
        let key = TransactionKey::for_request(&request).ok_or(TxnError::Malformed("Via with branch"))?;
        let t = ServerTxn::resumed_invite(peer, request, last, &self.cfg);
        let out = vec![Event::Observe(Observation::TransactionStarted { kind: t.kind().label() })];
        self.txns.insert(key.clone(), Box::new(Entry { txn: Txn::Server(t), scheduled: None }));
        self.finish(key.clone(), out);
        Ok(key)
    }

    /// Re-creates the client INVITE transaction of `request` (as we sent it to `peer`, on another box) at `now`:
    /// in Proceeding when a provisional was already received, else in Calling with retransmissions resuming from
    /// T1. It times out at `timeout_at` (timer B of the original send, reported as [`Event::Timeout`] as usual).
    /// Nothing is sent now. Replaces a transaction with the same key.
    pub fn adopt_client_invite(
        &mut self,
        now: Instant,
        peer: Peer,
        request: Request,
        proceeding: bool,
        timeout_at: Instant,
    ) -> Result<TransactionKey, TxnError> {
        if request.method != Method::Invite {
            return Err(TxnError::Malformed("an INVITE"));
        }
        let key = TransactionKey::for_sent_request(&request).ok_or(TxnError::Malformed("Via with branch"))?;
        let t = ClientTxn::resumed_invite(now, peer, request, proceeding, timeout_at, &self.cfg);
        let out = vec![Event::Observe(Observation::TransactionStarted { kind: t.kind().label() })];
        self.txns.insert(key.clone(), Box::new(Entry { txn: Txn::Client(t), scheduled: None }));
        self.finish(key.clone(), out);
        Ok(key)
    }

    /// Sends an ACK for a 2xx: it is not a transaction (§17.1.1.3), the core retransmits it per 2xx it receives.
    pub fn send_ack(&mut self, peer: Peer, ack: Request) {
        self.events.push_back(Event::Transmit { peer, message: Message::Request(ack) });
    }

    /// The core sent a CANCEL for client INVITE transaction `key` (RFC 3261 §9.1): without a final response
    /// within 64*T1 it ends with [`Event::Timeout`].
    pub fn cancel_sent(&mut self, now: Instant, key: &TransactionKey) {
        let out = std::mem::take(&mut self.scratch);
        if let Some(Entry { txn: Txn::Client(t), .. }) = self.txns.get_mut(key).map(|e| &mut **e) {
            t.cancel_sent(now, &self.cfg);
        }
        self.finish(key.clone(), out);
    }

    /// The transport could not deliver to the peer of client transaction `key` (§17.1.4).
    pub fn transport_error(&mut self, key: &TransactionKey) {
        let mut out = std::mem::take(&mut self.scratch);
        if let Some(Entry { txn: Txn::Client(t), .. }) = self.txns.get_mut(key).map(|e| &mut **e) {
            t.on_transport_error(key, &mut out);
        }
        self.finish(key.clone(), out);
    }

    /// The transport could not deliver to `remote` over `transport` (a connection that could not be opened):
    /// every client transaction towards it still waiting for a final response ends with
    /// [`Event::TransportError`]. Returns how many.
    pub fn transport_error_to(
        &mut self,
        transport: crate::transport::Transport,
        remote: std::net::SocketAddr,
    ) -> usize {
        let keys: Vec<TransactionKey> = self
            .txns
            .iter()
            .filter_map(|(k, e)| match &e.txn {
                Txn::Client(t) if t.is_pending() && t.peer().transport == transport && t.peer().remote == remote => {
                    Some(k.clone())
                }
                _ => None,
            })
            .collect();
        for k in &keys {
            self.transport_error(k);
        }
        keys.len()
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, seq))) = self.heap.peek().copied() {
            if at > now {
                break;
            }
            self.heap.pop();
            let Some(key) = self.heap_keys.remove(&seq) else {
                continue;
            };
            let mut out = std::mem::take(&mut self.scratch);
            match self.txns.get_mut(&key).map(|e| &mut **e) {
                Some(e) if e.scheduled == Some(at) => {
                    e.scheduled = None;
                    match &mut e.txn {
                        Txn::Client(t) => t.on_timer(now, &key, &self.cfg, &mut out),
                        Txn::Server(t) => t.on_timer(now, &key, &self.cfg, &mut out),
                    }
                }
                _ => {}
            }
            self.finish(key, out);
        }
    }

    /// The earliest timer, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn flush(&mut self, mut out: Vec<Event>) {
        self.events.extend(out.drain(..));
        self.scratch = out;
    }

    /// Queues `out`, then removes `key` if it terminated or reschedules its timer.
    fn finish(&mut self, key: TransactionKey, out: Vec<Event>) {
        self.flush(out);
        let Some(e) = self.txns.get_mut(&key) else {
            return;
        };
        if e.txn.is_terminated() {
            let kind = e.txn.kind_label();
            self.txns.remove(&key);
            self.events.push_back(Event::Observe(Observation::TransactionEnded { kind }));
            return;
        }
        let deadline = e.txn.deadline();
        if deadline != e.scheduled {
            e.scheduled = deadline;
            if let Some(at) = deadline {
                let seq = self.next_seq;
                self.next_seq += 1;
                self.heap.push(Reverse((at, seq)));
                self.heap_keys.insert(seq, key);
            }
        }
    }
}
