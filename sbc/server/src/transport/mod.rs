//! The SIP transports: they move bytes between sockets and the driver, and nothing else.
//!
//! Each transport turns what it receives into [`Inbound`] messages on one channel to the driver (UDP: one datagram;
//! TCP and TLS: one message cut out of the stream by [`stream::Framer`]; WS and WSS: one WebSocket message, [`ws`]), and sends what the driver hands it;
//! [`dial`] opens the connections to gateways that have none. Parsing
//! and every SIP decision happen in `sbc-proto`, driven by [`crate::driver`]. The limits of connection-oriented
//! transports (per-source caps, deadlines, message size) are decided in [`stream`], which has no I/O.

pub mod dial;
pub mod registry;
mod serve;
pub mod stream;
pub mod tcp;
pub mod tls;
pub mod udp;
pub mod ws;

use bytes::Bytes;
use sbc_proto::msg::peek::{urgency, Urgency};
use sbc_proto::msg::{parse_datagram, HeaderName, Message};
use sbc_proto::policy::AdmissionGate;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub use sbc_proto::transport::{ConnId, Transport};

/// Responses and in-dialog requests queued for the driver at most; a full queue makes the transport wait.
pub const HIGH_QUEUE: usize = 4096;
/// New requests queued at most. Small on purpose: what waits here is what overload control measures, and a
/// thousand requests are already a long wait when the SBC is saturated; beyond it new requests are dropped and
/// counted (UDP senders retransmit; TCP senders wait).
pub const LOW_QUEUE: usize = 1024;

/// The driver's two inbound queues (DESIGN.md "The public edge"): under overload, responses and in-dialog
/// requests keep priority over new requests, which are shed first.
#[derive(Debug, Clone)]
pub struct Queues {
    high: mpsc::Sender<Inbound>,
    low: mpsc::Sender<Inbound>,
    /// New requests dropped at the full low queue, for overload control (the driver takes them).
    dropped: Arc<AtomicU64>,
}

/// The driver's ends of the [`Queues`].
#[derive(Debug)]
pub struct Receivers {
    /// Responses and in-dialog requests.
    pub high: mpsc::Receiver<Inbound>,
    /// New requests.
    pub low: mpsc::Receiver<Inbound>,
    dropped: Arc<AtomicU64>,
}

impl Receivers {
    /// How many new requests the transports dropped at the full low queue since the last call.
    pub fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::Relaxed)
    }
}

/// Both queues, empty.
pub fn queues() -> (Queues, Receivers) {
    let (high, high_rx) = mpsc::channel(HIGH_QUEUE);
    let (low, low_rx) = mpsc::channel(LOW_QUEUE);
    let dropped = Arc::new(AtomicU64::new(0));
    (Queues { high, low, dropped: dropped.clone() }, Receivers { high: high_rx, low: low_rx, dropped })
}

/// Refuses, right after the read, the new INVITEs that overload control does not admit now: a stateless 503 with
/// Retry-After built from the datagram, sent from the receiving task, so the refused calls never take a place in
/// the driver's queue nor its time. The admitted share comes from the core ([`AdmissionGate`], published as it
/// changes) and the decision per Call-ID is the core's own ([`sbc_proto::policy::admits`]), so a call is answered
/// the same here and there. Only datagrams: a stream's messages go to the core, which refuses them itself.
#[derive(Debug)]
pub struct Shedder {
    gate: std::sync::Arc<AdmissionGate>,
    server: String,
    retry_after: u32,
    /// To tags of the 503s: a random prefix per process and a counter.
    tag_prefix: u64,
    next_tag: AtomicU64,
}

impl Shedder {
    /// Refusals answering with `server` and Retry-After `retry_after`, as the core would.
    pub fn new(gate: std::sync::Arc<AdmissionGate>, server: String, retry_after: u32) -> Self {
        use std::hash::BuildHasher;
        let tag_prefix = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
        Self { gate, server, retry_after, tag_prefix, next_tag: AtomicU64::new(0) }
    }

    /// The 503 for `datagram` if it is a new INVITE that is not admitted now; `None` lets it through.
    pub fn refuse(&self, datagram: &[u8]) -> Option<Bytes> {
        if self.gate.fraction() >= 1.0 {
            return None;
        }
        self.refusal(datagram, false)
    }

    /// The 503 for `datagram` if it is a new INVITE, admitted or not: the driver's queue had no room for it. Silence
    /// would have its caller retransmit into the same full queue and give up half a second later at best.
    pub fn refuse_full(&self, datagram: &[u8]) -> Option<Bytes> {
        self.refusal(datagram, true)
    }

    fn refusal(&self, datagram: &[u8], whatever_admitted: bool) -> Option<Bytes> {
        if !datagram.starts_with(b"INVITE ") {
            return None;
        }
        let Ok(Message::Request(req)) = parse_datagram(Bytes::copy_from_slice(datagram)) else { return None };
        if req.headers.to().map_or(true, |to| to.tag().is_some()) {
            return None;
        }
        if !whatever_admitted && self.gate.admits(req.headers.get(&HeaderName::CallId)?) {
            return None;
        }
        let n = self.next_tag.fetch_add(1, Ordering::Relaxed);
        let tag = format!("ov{:x}{n:x}", self.tag_prefix);
        let resp = sbc_proto::endpoint::reject::overloaded(&req, &self.server, self.retry_after, tag.as_bytes());
        metrics::counter!("sbc_overload_rejected_total").increment(1);
        metrics::counter!(crate::metrics::CALLS_REJECTED, "status" => "503").increment(1);
        crate::metrics::message_in("INVITE", None);
        crate::metrics::message_out("INVITE", Some(503));
        Some(Message::Response(resp).to_bytes())
    }
}

/// The driver is gone.
#[derive(Debug)]
pub struct Closed;

impl Queues {
    /// Queues `msg` by its [`urgency`]. The high queue waits for room; the low one waits only when `wait_low`
    /// (a stream transport: back-pressure to the peer), else a full low queue drops the message, counted.
    /// `Ok(Some(msg))`: a new request that found the low queue full (without `wait_low`), counted and handed back
    /// for the transport to refuse.
    pub async fn push(&self, msg: Inbound, wait_low: bool) -> Result<Option<Inbound>, Closed> {
        match urgency(&msg.bytes) {
            Urgency::High => self.high.send(msg).await.map(|()| None).map_err(|_| Closed),
            Urgency::Low if wait_low => self.low.send(msg).await.map(|()| None).map_err(|_| Closed),
            Urgency::Low => match self.low.try_send(msg) {
                Ok(()) => Ok(None),
                Err(mpsc::error::TrySendError::Full(msg)) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    crate::metrics::dropped("queue_full");
                    Ok(Some(msg))
                }
                Err(mpsc::error::TrySendError::Closed(_)) => Err(Closed),
            },
        }
    }

    /// Whether the driver is gone.
    pub fn is_closed(&self) -> bool {
        self.high.is_closed()
    }
}

/// One message (or datagram) received, as the driver gets it.
#[derive(Debug)]
pub struct Inbound {
    /// When it was read from the socket.
    pub at: Instant,
    /// Which transport carried it.
    pub transport: Transport,
    /// Our address it arrived on.
    pub local: SocketAddr,
    /// The sender's address.
    pub remote: SocketAddr,
    /// The connection it arrived on, for connection-oriented transports.
    pub conn: Option<ConnId>,
    /// The verified names of the TLS peer's certificate, when it presented one.
    pub identity: Option<std::sync::Arc<sbc_proto::transport::TlsIdentity>>,
    /// The bytes: a whole datagram, or one framed message.
    pub bytes: Bytes,
}
