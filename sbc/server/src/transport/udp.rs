//! SIP over UDP: one socket per listen address; each datagram is one message (RFC 3261 §18.1.1, §18.2.1).

use super::{Inbound, Queues, Shedder, Transport};
use crate::edge::EdgeGuard;
use bytes::Bytes;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
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
    // Each datagram carries the time the kernel received it, so the wait in the socket buffer counts as queueing
    // (overload control): when the reading itself falls behind, the queue is in the kernel, not in the driver.
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::ReceiveTimestampns, &true) {
        tracing::warn!(%addr, error = %e, "SO_TIMESTAMPNS: the socket buffer's wait is not measured");
    }
    Ok(Arc::new(UdpSocket::from_std(sock.into())?))
}

/// Receives one datagram: its length, source, and how long it waited in the socket buffer (from the kernel's
/// receive time stamp; zero when there is none).
fn recv_stamped(sock: &UdpSocket, buf: &mut [u8], cmsg: &mut [u8]) -> std::io::Result<(usize, SocketAddr, Duration)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrStorage};
    use std::os::fd::AsRawFd;
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrStorage>(sock.as_raw_fd(), &mut iov, Some(cmsg), MsgFlags::empty())?;
    let mut waited = Duration::ZERO;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmTimestampns(ts) = c {
                let stamped = Duration::from(ts);
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                // A wall clock stepped meanwhile: never more than a few seconds, never negative.
                waited = now.saturating_sub(stamped).min(MAX_SOCKET_WAIT);
            }
        }
    }
    let from = msg.address.and_then(|a: SockaddrStorage| {
        if let Some(v4) = a.as_sockaddr_in() {
            Some(SocketAddr::V4((*v4).into()))
        } else {
            a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
        }
    });
    let Some(from) = from else {
        return Err(std::io::Error::other("datagram without a source address"));
    };
    Ok((msg.bytes, from, waited))
}

/// The longest socket-buffer wait believed from a time stamp (beyond it the wall clock moved).
const MAX_SOCKET_WAIT: Duration = Duration::from_secs(5);

/// Reads datagrams until the driver is gone. First thing after the read, the edge guard decides (banned or
/// over-rate sources are dropped there); a datagram longer than `max_message_size` is dropped and counted: it was
/// truncated by the receive buffer, so its framing cannot be trusted. The rest is queued by its urgency.
pub async fn receive(
    sock: Arc<UdpSocket>,
    max_message_size: usize,
    guard: EdgeGuard,
    shed: Arc<Shedder>,
    queues: Queues,
) {
    let local = match sock.local_addr() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "udp socket has no local address; receiver stops");
            return;
        }
    };
    let mut buf = vec![0u8; max_message_size + 1];
    let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
    loop {
        let got = sock.async_io(tokio::io::Interest::READABLE, || recv_stamped(&sock, &mut buf, &mut cmsg)).await;
        let (n, remote, waited) = match got {
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
        // Overload: a new INVITE not admitted is refused here, never queued.
        if let Some(resp) = shed.refuse(&buf[..n]) {
            if let Err(e) = sock.send_to(&resp, remote).await {
                tracing::debug!(%remote, error = %e, "udp send of a 503 failed");
            }
            continue;
        }
        let now = Instant::now();
        let msg = Inbound {
            // When it arrived, not when it was read: the driver's queue delay then includes the socket's.
            at: now.checked_sub(waited).unwrap_or(now),
            transport: Transport::Udp,
            local,
            remote,
            conn: None,
            identity: None,
            bytes: Bytes::copy_from_slice(&buf[..n]),
        };
        match queues.push(msg, false).await {
            Ok(None) => {}
            Ok(Some(unqueued)) => {
                // The driver's queue is full: a new INVITE is refused now (a 503 costs less than the silence that
                // would bring its retransmissions), anything else is dropped as counted.
                if let Some(resp) = shed.refuse_full(&unqueued.bytes) {
                    if let Err(e) = sock.send_to(&resp, remote).await {
                        tracing::debug!(%remote, error = %e, "udp send of a 503 failed");
                    }
                }
            }
            Err(_) => return,
        }
    }
}
