//! The driver loop: feeds received messages and timer expiries to the sans-IO core and carries out what it asks.
//!
//! One task owns the [`Endpoint`]; transports talk to it through one bounded channel, so the core is never
//! shared and needs no locks. The loop sleeps until the next message or the core's next deadline.

use crate::metrics as m;
use crate::transport::{tcp, Inbound, Transport};
use sbc_proto::endpoint::{Endpoint, Observation, Output};
use sbc_proto::transport::Peer;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The sockets the driver sends on.
#[derive(Debug, Default)]
pub struct Sockets {
    /// UDP sockets by local address.
    pub udp: HashMap<SocketAddr, Arc<UdpSocket>>,
    /// Open TCP connections.
    pub tcp: tcp::Connections,
}

/// Runs the core until `shutdown` resolves or every transport has stopped.
pub async fn run(
    mut endpoint: Endpoint,
    sockets: Sockets,
    mut rx: mpsc::Receiver<Inbound>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    // Instants in the core are std; tokio's Instant converts losslessly.
    tokio::pin!(shutdown);
    loop {
        let deadline = endpoint.poll_timeout().map(Instant::from_std);
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            msg = rx.recv() => {
                let Some(msg) = msg else { break };
                let peer = Peer { transport: msg.transport, local: msg.local, remote: msg.remote, conn: msg.conn };
                endpoint.handle_message(msg.at.into_std(), peer, msg.bytes);
                // Take whatever else is already queued before flushing: batches under load.
                for _ in 0..64 {
                    let Ok(msg) = rx.try_recv() else { break };
                    let peer = Peer { transport: msg.transport, local: msg.local, remote: msg.remote, conn: msg.conn };
                    endpoint.handle_message(msg.at.into_std(), peer, msg.bytes);
                }
            }
            _ = sleep_until(deadline) => endpoint.handle_timeout(Instant::now().into_std()),
        }
        flush(&mut endpoint, &sockets).await;
    }
    flush(&mut endpoint, &sockets).await;
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn flush(endpoint: &mut Endpoint, sockets: &Sockets) {
    while let Some(out) = endpoint.poll_output() {
        match out {
            Output::Transmit { peer, bytes } => transmit(sockets, peer, bytes).await,
            Output::Observe(o) => observe(o),
        }
    }
}

async fn transmit(sockets: &Sockets, peer: Peer, bytes: bytes::Bytes) {
    match peer.transport {
        Transport::Udp => {
            let Some(sock) = sockets.udp.get(&peer.local).or_else(|| sockets.udp.values().next()) else {
                m::dropped("no_udp_socket");
                return;
            };
            if let Err(e) = sock.send_to(&bytes, peer.remote).await {
                m::dropped("udp_send_error");
                tracing::debug!(remote = %peer.remote, error = %e, "udp send failed");
            }
        }
        Transport::Tcp | Transport::Tls | Transport::Ws => {
            if let Err(e) = sockets.tcp.send(peer.conn, peer.remote, bytes) {
                m::dropped("tcp_send_error");
                tracing::debug!(remote = %peer.remote, error = %e, "tcp send failed");
            }
        }
    }
}

fn observe(o: Observation) {
    match o {
        Observation::RequestIn { method } => m::message_in(method, None),
        Observation::ResponseIn { method, status } => m::message_in(method, Some(status)),
        Observation::RequestOut { method } => m::message_out(method, None),
        Observation::ResponseOut { method, status } => m::message_out(method, Some(status)),
        Observation::ParseError { transport, reason } => m::parse_error(transport.as_str(), reason),
        Observation::TransactionStarted { kind } => m::transaction_started(kind),
        Observation::TransactionEnded { kind } => m::transaction_ended(kind),
        Observation::Retransmission { direction } => m::retransmission(direction),
        Observation::Dropped { reason } => m::dropped(reason),
        other => tracing::debug!(?other, "observation without a metric"),
    }
}
