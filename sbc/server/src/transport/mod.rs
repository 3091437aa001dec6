//! The SIP transports: they move bytes between sockets and the driver, and nothing else.
//!
//! Each transport turns what it receives into [`Inbound`] messages on one channel to the driver (UDP: one datagram;
//! TCP: one message cut out of the stream by `sbc_proto::msg::frame`), and sends what the driver hands it. Parsing
//! and every SIP decision happen in `sbc-proto`, driven by [`crate::driver`]. The limits of connection-oriented
//! transports (per-source caps, deadlines, message size) are decided in [`stream`], which has no I/O.

pub mod stream;
pub mod tcp;
pub mod udp;

use bytes::Bytes;
use std::net::SocketAddr;
use tokio::time::Instant;

pub use sbc_proto::transport::{ConnId, Transport};

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
    /// The bytes: a whole datagram, or one framed message.
    pub bytes: Bytes,
}
