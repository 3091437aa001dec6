//! SIP over TCP (RFC 3261 §18.3) and the accept side of SIP over TLS (RFC 3261 §26.2): one listener per address,
//! admission per source at accept (the limits of [`super::stream`]), then [`super::serve`] for the connection's
//! life; a TLS listener first runs the handshake within the first-message deadline ([`super::tls`]).

use super::registry::Connections;
use super::stream::{LogThrottle, Origin, Refusal, StreamLimits, TrunkSources};
use super::Queues;
use crate::edge::EdgeGuard;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

pub use super::registry::SendError;

/// At most one log line per refusal reason and listener in this time; each line counts the events left out.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// The limits of TCP connections (shared with the other stream transports).
pub type Limits = StreamLimits;

/// What a listener speaks on its accepted connections.
#[derive(Debug, Clone)]
pub enum Security {
    /// SIP over plain TCP.
    Plain,
    /// SIP over TLS with the listeners' configuration in force at accept.
    Tls(crate::tls::Acceptor),
    /// SIP over WebSocket (RFC 7118), over TLS for `wss:`.
    WebSocket(super::ws::WsListener),
}

/// A listening socket for SIP over TCP or TLS. `IP_FREEBIND` lets a standby bind a service address it does not
/// hold yet (it serves it the moment the address moves here), as the UDP sockets do.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
        sock.set_freebind_ipv6(true)?;
    } else {
        sock.set_freebind(true)?;
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(1024)?;
    TcpListener::from_std(sock.into())
}

/// Accepts connections until the driver is gone. A connection from a banned source, or over a limit, is reset
/// right after accept (no read, no task, no handshake), counted by reason and logged at most once per
/// [`REFUSAL_LOG_EVERY`] per reason (bans are logged when they are made).
pub async fn listen(
    listener: TcpListener,
    security: Security,
    limits: Limits,
    trunks: TrunkSources,
    conns: Connections,
    guard: EdgeGuard,
    tx: Queues,
) {
    let mut throttles = Refusal::ALL.map(|r| (r, LogThrottle::new(REFUSAL_LOG_EVERY)));
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "tcp accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if tx.is_closed() {
            return;
        }
        if guard.banned(remote.ip()) {
            metrics::counter!(crate::metrics::TCP_CONNECTIONS_REJECTED, "reason" => "banned").increment(1);
            reset(&stream);
            continue;
        }
        let class = trunks.classify(remote.ip());
        match conns.admit(remote.ip(), class, &limits) {
            Ok(slot) => {
                let _ = stream.set_nodelay(true);
                let Ok(local) = stream.local_addr() else { continue };
                match &security {
                    Security::Plain => {
                        let (rd, wr) = stream.into_split();
                        let info = super::serve::ConnInfo {
                            transport: super::Transport::Tcp,
                            local,
                            remote,
                            origin: Origin::Accepted,
                            identity: None,
                        };
                        let (guard, tx) = (guard.clone(), tx.clone());
                        tokio::spawn(async move {
                            super::serve::serve(rd, wr, info, limits, None, slot, guard, tx).await;
                        });
                    }
                    Security::Tls(acceptor) => {
                        let start = super::tls::Accepted { stream, local, remote, limits, slot };
                        tokio::spawn(super::tls::accept(start, acceptor.acceptor(), guard.clone(), tx.clone()));
                    }
                    Security::WebSocket(ws) => {
                        let start = super::ws::Accepted { stream, local, remote, limits, slot };
                        tokio::spawn(super::ws::accept(start, ws.clone(), guard.clone(), tx.clone()));
                    }
                }
            }
            Err(refusal) => {
                metrics::counter!(crate::metrics::TCP_CONNECTIONS_REJECTED, "reason" => refusal.label()).increment(1);
                reset(&stream);
                drop(stream);
                let throttle = throttles.iter_mut().find(|(r, _)| *r == refusal).map(|(_, t)| t);
                if let Some(suppressed) = throttle.and_then(|t| t.allow(Instant::now().into_std())) {
                    tracing::warn!(
                        %remote, class = class.label(), reason = refusal.label(), suppressed,
                        "tcp connection refused: {refusal} (further refusals for this reason are counted in \
                         sbc_tcp_connections_rejected_total, logged once per {REFUSAL_LOG_EVERY:?})"
                    );
                }
            }
        }
    }
}

/// Closes with a reset rather than a FIN: the refused peer learns at once, and no socket lingers on our side in
/// FIN_WAIT or TIME_WAIT for each of a flood of connections.
fn reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn until(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !cond() {
            assert!(Instant::now() < deadline, "{what} within 5 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn server(limits: Limits) -> (SocketAddr, Connections, crate::transport::Receivers) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let conns = Connections::default();
        let (tx, rx) = crate::transport::queues();
        let plan = std::sync::Arc::new(sbc_proto::routing::Plan::default());
        let guard = EdgeGuard::new(sbc_proto::policy::EdgeConfig::default(), plan);
        tokio::spawn(listen(listener, Security::Plain, limits, TrunkSources::default(), conns.clone(), guard, tx));
        (addr, conns, rx)
    }

    #[tokio::test]
    async fn a_peer_that_does_not_read_is_closed_and_its_slot_released() {
        let limits = Limits { message_timeout: Duration::from_secs(1), ..Limits::default() };
        let (addr, conns, _rx) = server(limits).await;
        let mut client = TcpStream::connect(addr).await.expect("connect");
        let me = client.local_addr().expect("addr");
        until("the connection is admitted", || conns.open_from(me.ip()) == 1).await;
        // The client never reads, and we queue faster than the writer can write: the queue fills at once.
        let big = Bytes::from(vec![b'x'; 64 * 1024]);
        let queued = (0..2 * super::super::registry::WRITE_QUEUE)
            .take_while(|_| conns.send(super::super::Transport::Tcp, None, me, big.clone()).is_ok())
            .count();
        assert!(
            queued <= super::super::registry::WRITE_QUEUE + 1,
            "{queued} messages queued for a peer that reads nothing"
        );
        assert!(matches!(
            conns.send(super::super::Transport::Tcp, None, me, big.clone()),
            Err(SendError::Stuck(..) | SendError::NoConnection(..))
        ));
        // The stalled write then ends at the write deadline.
        until("the stalled connection is closed and released", || conns.is_empty()).await;
        assert!(matches!(
            conns.send(super::super::Transport::Tcp, None, me, Bytes::from_static(b"x")),
            Err(SendError::NoConnection(..))
        ));
        drop(client.read(&mut [0u8; 16]).await);
    }

    #[tokio::test]
    async fn a_read_buffer_never_grows_past_the_maximum_message_size() {
        let limits = Limits { max_message_size: 2048, ..Limits::default() };
        let (addr, conns, mut rx) = server(limits).await;
        let mut client = TcpStream::connect(addr).await.expect("connect");
        // Two messages in one write, then a head that never ends.
        let msg = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\n";
        client.write_all(&[&msg[..], &msg[..]].concat()).await.expect("write");
        for _ in 0..2 {
            let m = tokio::time::timeout(Duration::from_secs(5), rx.low.recv()).await.expect("in time").expect("msg");
            assert_eq!(&m.bytes[..], &msg[..]);
        }
        let mut sent = 0usize;
        while sent < 1 << 20 && client.write_all(&[b'a'; 512]).await.is_ok() {
            sent += 512;
        }
        until("the connection is closed as too large", || conns.is_empty()).await;
        assert!(sent < 1 << 20, "1 MiB went into a connection whose messages are at most 2 KiB");
    }
}
