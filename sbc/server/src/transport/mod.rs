//! The SIP transports: they move bytes between sockets and the driver, and nothing else.
//!
//! Each transport turns what it receives into [`Inbound`] messages on one channel to the driver (UDP: one datagram;
//! TCP and TLS: one message cut out of the stream by [`stream::Framer`]), and sends what the driver hands it;
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

use bytes::Bytes;
use sbc_proto::msg::peek::{urgency, Urgency};
use std::net::SocketAddr;
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
}

/// The driver's ends of the [`Queues`].
#[derive(Debug)]
pub struct Receivers {
    /// Responses and in-dialog requests.
    pub high: mpsc::Receiver<Inbound>,
    /// New requests.
    pub low: mpsc::Receiver<Inbound>,
}

/// Both queues, empty.
pub fn queues() -> (Queues, Receivers) {
    let (high, high_rx) = mpsc::channel(HIGH_QUEUE);
    let (low, low_rx) = mpsc::channel(LOW_QUEUE);
    (Queues { high, low }, Receivers { high: high_rx, low: low_rx })
}

/// The driver is gone.
#[derive(Debug)]
pub struct Closed;

impl Queues {
    /// Queues `msg` by its [`urgency`]. The high queue waits for room; the low one waits only when `wait_low`
    /// (a stream transport: back-pressure to the peer), else a full low queue drops the message, counted.
    pub async fn push(&self, msg: Inbound, wait_low: bool) -> Result<(), Closed> {
        match urgency(&msg.bytes) {
            Urgency::High => self.high.send(msg).await.map_err(|_| Closed),
            Urgency::Low if wait_low => self.low.send(msg).await.map_err(|_| Closed),
            Urgency::Low => match self.low.try_send(msg) {
                Ok(()) => Ok(()),
                Err(mpsc::error::TrySendError::Full(_)) => {
                    crate::metrics::dropped("queue_full");
                    Ok(())
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
