//! SIP over UDP: one socket per listen address; each datagram is one message (RFC 3261 §18.1.1, §18.2.1).

use super::{Inbound, Queues, Transport};
use crate::edge::EdgeGuard;
use bytes::Bytes;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// Receive buffer asked of the kernel: a burst of a few thousand datagrams must not be dropped while the driver is
/// busy (the kernel caps it at net.core.rmem_max).
const SOCKET_BUFFER: usize = 4 << 20;

/// Binds a UDP socket for SIP. `IP_FREEBIND` lets us bind a service address this box does not hold yet (a standby
/// binds the VIPs before takeover).
pub fn bind(addr: SocketAddr) -> std::io::Result<Arc<UdpSocket>> {
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    sock.set_reuse_address(true)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    // Best effort: a smaller buffer than asked for is not fatal.
    let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
    #[cfg(target_os = "linux")]
    if addr.is_ipv4() {
        let _ = sock.set_freebind(true);
    } else {
        let _ = sock.set_freebind_ipv6(true);
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    Ok(Arc::new(UdpSocket::from_std(sock.into())?))
}

/// Reads datagrams until the driver is gone. First thing after the read, the edge guard decides (banned or
/// over-rate sources are dropped there); a datagram longer than `max_message_size` is dropped and counted: it was
/// truncated by the receive buffer, so its framing cannot be trusted. The rest is queued by its urgency.
pub async fn receive(sock: Arc<UdpSocket>, max_message_size: usize, guard: EdgeGuard, queues: Queues) {
    let local = match sock.local_addr() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "udp socket has no local address; receiver stops");
            return;
        }
    };
    let mut buf = vec![0u8; max_message_size + 1];
    loop {
        let (n, remote) = match sock.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors surface here on Linux (ECONNREFUSED from a previous send): not fatal for a listener.
                tracing::debug!(%local, error = %e, "udp receive error");
                continue;
            }
        };
        if !guard.admit(remote) {
            continue;
        }
        if n > max_message_size {
            crate::metrics::dropped("udp_too_large");
            tracing::debug!(%local, %remote, "dropping datagram larger than {max_message_size} bytes");
            continue;
        }
        if buf[..n].iter().all(|&b| b == b'\r' || b == b'\n' || b == 0) {
            // Keep-alives (RFC 5626 §4.4.1 CRLF, or NAT pinholes with zero bytes): nothing to do.
            continue;
        }
        let msg = Inbound {
            at: Instant::now(),
            transport: Transport::Udp,
            local,
            remote,
            conn: None,
            identity: None,
            bytes: Bytes::copy_from_slice(&buf[..n]),
        };
        if queues.push(msg, false).await.is_err() {
            return;
        }
    }
}
