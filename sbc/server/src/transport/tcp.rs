//! SIP over TCP: Content-Length framing, a maximum message size, a cap on connections, and idle reaping
//! (RFC 3261 §18.3).

use super::{ConnId, Inbound, Queues, Transport};
use crate::edge::EdgeGuard;
use bytes::{Bytes, BytesMut};
use sbc_proto::msg::{frame, Framed};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Messages queued for one connection's writer before we consider the peer stuck and close it.
const WRITE_QUEUE: usize = 256;

/// Limits of the TCP transport, from `[sip]` in the config.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest message accepted; a larger one closes the connection (it cannot be resynchronised).
    pub max_message_size: usize,
    /// A connection with no traffic either way for this long is closed.
    pub idle_timeout: Duration,
    /// Connections beyond this many are closed right after accept.
    pub max_connections: usize,
}

/// The open connections, by id and by remote address, so the driver can send on them.
#[derive(Debug, Clone, Default)]
pub struct Connections {
    inner: Arc<Mutex<Registry>>,
    next_id: Arc<AtomicU64>,
}

#[derive(Debug, Default)]
struct Registry {
    by_id: HashMap<ConnId, Conn>,
    by_remote: HashMap<SocketAddr, ConnId>,
}

#[derive(Debug)]
struct Conn {
    remote: SocketAddr,
    tx: mpsc::Sender<Bytes>,
}

/// Why a send on TCP did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The connection is gone (closed by the peer, reaped, or never existed) and no new one could be opened.
    #[error("no TCP connection to {0}")]
    NoConnection(SocketAddr),
    /// The peer does not read fast enough; the connection was closed.
    #[error("TCP connection to {0} is not draining; closed")]
    Stuck(SocketAddr),
}

impl Connections {
    /// Number of open connections.
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        // A panic while holding this lock would be a bug in a few lines below; poisoning adds nothing.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn register(&self, remote: SocketAddr, tx: mpsc::Sender<Bytes>) -> ConnId {
        let id = ConnId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let mut r = self.lock();
        r.by_id.insert(id, Conn { remote, tx });
        r.by_remote.insert(remote, id);
        metrics::gauge!(crate::metrics::TCP_CONNECTIONS_ACTIVE).set(r.by_id.len() as f64);
        id
    }

    fn unregister(&self, id: ConnId) {
        let mut r = self.lock();
        if let Some(c) = r.by_id.remove(&id) {
            if r.by_remote.get(&c.remote) == Some(&id) {
                r.by_remote.remove(&c.remote);
            }
        }
        metrics::gauge!(crate::metrics::TCP_CONNECTIONS_ACTIVE).set(r.by_id.len() as f64);
    }

    /// Queues `bytes` on connection `conn` if it is open, else on any connection to `remote`.
    pub fn send(&self, conn: Option<ConnId>, remote: SocketAddr, bytes: Bytes) -> Result<(), SendError> {
        let tx = {
            let r = self.lock();
            let id = conn.filter(|c| r.by_id.contains_key(c)).or_else(|| r.by_remote.get(&remote).copied());
            id.and_then(|id| r.by_id.get(&id)).map(|c| c.tx.clone())
        };
        let tx = tx.ok_or(SendError::NoConnection(remote))?;
        tx.try_send(bytes).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SendError::Stuck(remote),
            mpsc::error::TrySendError::Closed(_) => SendError::NoConnection(remote),
        })
    }
}

/// Accepts connections until the driver is gone. A banned source is refused at accept.
pub async fn listen(listener: TcpListener, limits: Limits, conns: Connections, guard: EdgeGuard, tx: Queues) {
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
            drop(stream);
            continue;
        }
        if conns.len() >= limits.max_connections {
            metrics::counter!(crate::metrics::TCP_CONNECTIONS_REJECTED, "reason" => "max_connections").increment(1);
            tracing::warn!(%remote, max = limits.max_connections, "tcp connection refused: too many connections");
            drop(stream);
            continue;
        }
        tokio::spawn(serve(stream, remote, limits, conns.clone(), guard.clone(), tx.clone()));
    }
}

/// Opens a connection to `remote` (for requests we originate) and serves it like an accepted one.
pub async fn connect(
    remote: SocketAddr,
    limits: Limits,
    conns: Connections,
    guard: EdgeGuard,
    tx: Queues,
) -> std::io::Result<()> {
    let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(remote))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    tokio::spawn(serve(stream, remote, limits, conns, guard, tx));
    Ok(())
}

async fn serve(
    stream: TcpStream,
    remote: SocketAddr,
    limits: Limits,
    conns: Connections,
    guard: EdgeGuard,
    tx: Queues,
) {
    let _ = stream.set_nodelay(true);
    let local = match stream.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let (mut rd, mut wr) = stream.into_split();
    let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    let id = conns.register(remote, out_tx);
    tracing::debug!(%remote, conn = id.0, "tcp connection open");
    let mut buf = BytesMut::with_capacity(8192);
    let reason = loop {
        tokio::select! {
            read = tokio::time::timeout(limits.idle_timeout, rd.read_buf(&mut buf)) => {
                match read {
                    Err(_) => break "idle",
                    Ok(Ok(0)) => break "closed_by_peer",
                    Ok(Err(_)) => break "read_error",
                    Ok(Ok(_)) => {}
                }
                match drain_messages(&mut buf, limits.max_message_size) {
                    Ok(msgs) => {
                        let mut banned = false;
                        for bytes in msgs {
                            if !guard.admit(remote) {
                                banned = true;
                                break;
                            }
                            let m = Inbound { at: Instant::now(), transport: Transport::Tcp, local, remote, conn: Some(id), bytes };
                            if tx.push(m, true).await.is_err() {
                                break;
                            }
                        }
                        if banned {
                            break "edge";
                        }
                    }
                    Err(e) => {
                        crate::metrics::parse_error("tcp", e.reason());
                        tracing::info!(%remote, error = %e, "closing tcp connection: unframeable input");
                        break "framing";
                    }
                }
            }
            out = out_rx.recv() => {
                let Some(bytes) = out else { break "shutdown" };
                if wr.write_all(&bytes).await.is_err() {
                    break "write_error";
                }
            }
        }
    };
    conns.unregister(id);
    tracing::debug!(%remote, conn = id.0, reason, "tcp connection closed");
}

/// Cuts every complete message off the front of `buf`, dropping keep-alive CRLFs.
fn drain_messages(buf: &mut BytesMut, max: usize) -> Result<Vec<Bytes>, sbc_proto::msg::ParseError> {
    let mut out = Vec::new();
    loop {
        match frame(buf, max)? {
            Framed::Incomplete => return Ok(out),
            Framed::KeepAlive(n) => drop(buf.split_to(n)),
            Framed::Message(n) => out.push(buf.split_to(n).freeze()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drains_whole_messages_and_keeps_the_partial_one() {
        let msg = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 3\r\n\r\nabc";
        let mut buf = BytesMut::new();
        buf.extend_from_slice(b"\r\n\r\n");
        buf.extend_from_slice(msg);
        buf.extend_from_slice(msg);
        buf.extend_from_slice(&msg[..10]);
        let got = drain_messages(&mut buf, 1000).expect("framed");
        assert_eq!(got.len(), 2);
        assert_eq!(&got[0][..], &msg[..]);
        assert_eq!(&buf[..], &msg[..10]);
    }

    #[test]
    fn oversized_message_is_an_error() {
        let mut buf = BytesMut::from(&b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 5000\r\n\r\n"[..]);
        assert!(drain_messages(&mut buf, 1000).is_err());
    }
}
