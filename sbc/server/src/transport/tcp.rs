//! SIP over TCP (RFC 3261 §18.3): Content-Length framing, and the limits of [`super::stream`] applied to each
//! connection: admission per source at accept, the first-message, partial-message and idle deadlines, a read
//! buffer capped at the maximum message size, and a bounded write queue.

use super::stream::{
    Admitted, CloseReason, ConnClock, Framer, LogThrottle, Origin, Refusal, SourceClass, SourceTable, StreamLimits,
    Timeouts, TrunkSources,
};
use super::{ConnId, Inbound, Queues, Transport};
use crate::edge::EdgeGuard;
use bytes::{BufMut, Bytes, BytesMut};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Messages queued for one connection's writer before we consider the peer stuck and close it.
const WRITE_QUEUE: usize = 256;
/// Bytes read at most per read call. A connection holds no read buffer until it has something to read, and gives
/// back a buffer grown by a large message once that message is out.
const READ_CHUNK: usize = 4096;
/// At most one log line per refusal reason and listener, and one for connections closed on bad input, in this time;
/// each line counts the events left out.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// The limits of TCP connections (shared with the other stream transports).
pub type Limits = StreamLimits;

/// The open connections, by id and by remote address, so the driver can send on them; and the per-source table
/// that admits them.
#[derive(Debug, Clone, Default)]
pub struct Connections {
    inner: Arc<Mutex<Registry>>,
    next_id: Arc<AtomicU64>,
}

#[derive(Debug)]
struct Registry {
    by_id: HashMap<ConnId, Conn>,
    by_remote: HashMap<SocketAddr, ConnId>,
    sources: SourceTable,
    /// One line per interval for connections closed on bad input, however many connections send it.
    bad_input_log: LogThrottle,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            by_id: HashMap::new(),
            by_remote: HashMap::new(),
            sources: SourceTable::default(),
            bad_input_log: LogThrottle::new(REFUSAL_LOG_EVERY),
        }
    }
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
    /// The peer does not read fast enough; the connection is being closed.
    #[error("TCP connection to {0} is not draining; closed")]
    Stuck(SocketAddr),
}

impl Connections {
    /// Number of open connections (admitted and not yet closed).
    pub fn len(&self) -> usize {
        self.lock().sources.total()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Open connections from `ip`'s source (its address; its /64 for IPv6).
    pub fn open_from(&self, ip: IpAddr) -> usize {
        self.lock().sources.open_from(ip)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        // A panic while holding this lock would be a bug in a few lines below; poisoning adds nothing.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a connection from `ip` of `class`, or says why not. The slot releases itself when dropped.
    fn admit(&self, ip: IpAddr, class: SourceClass, limits: &Limits) -> Result<Slot, Refusal> {
        let mut r = self.lock();
        let admitted = r.sources.admit(ip, class, limits)?;
        r.publish();
        Ok(Slot { conns: self.clone(), admitted: Some(admitted), id: None })
    }

    /// Queues `bytes` on connection `conn` if it is open, else on any connection to `remote`. A full queue closes
    /// the connection: a peer that does not read would otherwise hold our memory.
    pub fn send(&self, conn: Option<ConnId>, remote: SocketAddr, bytes: Bytes) -> Result<(), SendError> {
        let (id, tx) = {
            let r = self.lock();
            let id = conn.filter(|c| r.by_id.contains_key(c)).or_else(|| r.by_remote.get(&remote).copied());
            id.and_then(|id| r.by_id.get(&id).map(|c| (id, c.tx.clone()))).ok_or(SendError::NoConnection(remote))?
        };
        tx.try_send(bytes).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                // Dropping the registry's sender ends the connection's writer once the queue is written or the
                // write deadline passes; the connection then closes as `write_queue_full`.
                self.lock().forget(id);
                SendError::Stuck(remote)
            }
            mpsc::error::TrySendError::Closed(_) => SendError::NoConnection(remote),
        })
    }
}

impl Registry {
    fn forget(&mut self, id: ConnId) {
        if let Some(c) = self.by_id.remove(&id) {
            if self.by_remote.get(&c.remote) == Some(&id) {
                self.by_remote.remove(&c.remote);
            }
        }
    }

    fn publish(&self) {
        use crate::metrics as m;
        metrics::gauge!(m::TCP_CONNECTIONS_ACTIVE).set(self.sources.total() as f64);
        metrics::gauge!(m::TCP_SOURCES_ACTIVE).set(self.sources.sources() as f64);
        for class in [SourceClass::Trunk, SourceClass::Other] {
            metrics::gauge!(m::TCP_SOURCE_PEAK, "class" => class.label()).set(self.sources.peak(class) as f64);
        }
    }
}

/// One admitted connection's place in [`Connections`]: registered for sending once it runs, released from the
/// registry and the source table when dropped, however the connection's task ends.
#[derive(Debug)]
struct Slot {
    conns: Connections,
    admitted: Option<Admitted>,
    id: Option<ConnId>,
}

impl Slot {
    fn register(&mut self, remote: SocketAddr, tx: mpsc::Sender<Bytes>) -> ConnId {
        let id = ConnId(self.conns.next_id.fetch_add(1, Ordering::Relaxed));
        let mut r = self.conns.lock();
        r.by_id.insert(id, Conn { remote, tx });
        r.by_remote.insert(remote, id);
        self.id = Some(id);
        id
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut r = self.conns.lock();
        if let Some(id) = self.id {
            r.forget(id);
        }
        if let Some(a) = self.admitted.take() {
            r.sources.release(a);
        }
        r.publish();
    }
}

/// A listening socket for SIP over TCP. `IP_FREEBIND` lets a standby bind a service address it does not hold yet
/// (it serves it the moment the address moves here), as the UDP sockets do.
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
/// right after accept (no read, no task), counted by reason and logged at most once per [`REFUSAL_LOG_EVERY`] per
/// reason (bans are logged when they are made).
pub async fn listen(
    listener: TcpListener,
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
                tokio::spawn(serve(stream, remote, Origin::Accepted, limits, slot, guard.clone(), tx.clone()));
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

/// Opens a connection to `remote` (for requests we originate) and serves it like an accepted one. It counts
/// towards the global cap but is never refused by it.
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
    let slot = conns
        .admit(remote.ip(), SourceClass::Ours, &limits)
        .map_err(|e| std::io::Error::other(format!("admitting our own connection: {e}")))?;
    tokio::spawn(serve(stream, remote, Origin::Connected, limits, slot, guard, tx));
    Ok(())
}

async fn serve(
    stream: TcpStream,
    remote: SocketAddr,
    origin: Origin,
    limits: Limits,
    mut slot: Slot,
    guard: EdgeGuard,
    tx: Queues,
) {
    let _ = stream.set_nodelay(true);
    let Ok(local) = stream.local_addr() else {
        closed(remote, None, CloseReason::ReadError);
        return;
    };
    let (rd, mut wr) = stream.into_split();
    let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    let id = slot.register(remote, out_tx);
    tracing::debug!(%remote, conn = id.0, "tcp connection open");
    let mut clock = ConnClock::new(origin, Instant::now().into_std(), Timeouts::from(&limits));
    let mut buf = BytesMut::new();
    let mut framer = Framer::default();
    let reason = 'conn: loop {
        let (deadline, _) = clock.next_deadline();
        tokio::select! {
            read = read_capped(&rd, &mut buf, limits.max_message_size) => {
                match read {
                    Ok(0) => break CloseReason::ClosedByPeer,
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break CloseReason::ClosedByPeer,
                    Err(_) => break CloseReason::ReadError,
                    Ok(_) => {}
                }
                let msgs = match framer.drain(&mut buf, limits.max_message_size) {
                    Ok(msgs) => msgs,
                    Err(e) => {
                        crate::metrics::parse_error("tcp", e.reason());
                        let log = slot.conns.lock().bad_input_log.allow(Instant::now().into_std());
                        if let Some(suppressed) = log {
                            tracing::info!(
                                %remote, error = %e, suppressed,
                                "closing tcp connection: unframeable input (further ones are counted in \
                                 sbc_sip_parse_errors_total, logged once per {REFUSAL_LOG_EVERY:?})"
                            );
                        }
                        break if matches!(e.kind, sbc_proto::msg::ParseErrorKind::TooLarge { .. }) {
                            CloseReason::TooLarge
                        } else {
                            CloseReason::Framing
                        };
                    }
                };
                let now = Instant::now();
                clock.on_read(now.into_std(), msgs.len(), !buf.is_empty());
                if buf.is_empty() && buf.capacity() > READ_CHUNK {
                    buf = BytesMut::new();
                }
                for bytes in msgs {
                    if !guard.admit(remote) {
                        break 'conn CloseReason::Banned;
                    }
                    let m = Inbound { at: now, transport: Transport::Tcp, local, remote, conn: Some(id), bytes };
                    if tx.push(m, true).await.is_err() {
                        break 'conn CloseReason::Shutdown;
                    }
                }
            }
            out = out_rx.recv() => {
                // Only `Connections::send` drops the registry's sender, when the queue is full.
                let Some(bytes) = out else { break CloseReason::WriteQueueFull };
                match tokio::time::timeout(limits.message_timeout, wr.write_all(&bytes)).await {
                    Err(_) => break CloseReason::WriteTimeout,
                    Ok(Err(_)) => break CloseReason::WriteError,
                    Ok(Ok(())) => clock.on_write(Instant::now().into_std()),
                }
            }
            () = tokio::time::sleep_until(deadline.into()) => {
                if let Some(reason) = clock.expired(Instant::now().into_std()) {
                    break reason;
                }
            }
        }
    };
    closed(remote, Some(id), reason);
    drop(slot);
}

fn closed(remote: SocketAddr, id: Option<ConnId>, reason: CloseReason) {
    metrics::counter!(crate::metrics::TCP_CONNECTIONS_CLOSED, "reason" => reason.label()).increment(1);
    tracing::debug!(%remote, conn = id.map(|i| i.0), reason = reason.label(), "tcp connection closed");
}

/// Reads what is there into `buf`, never letting it grow past `max + 1` bytes: one byte over the maximum is
/// enough for the framing to refuse the message. The buffer grows only when there is something to read.
async fn read_capped(rd: &OwnedReadHalf, buf: &mut BytesMut, max: usize) -> std::io::Result<usize> {
    loop {
        rd.readable().await?;
        let room = (max + 1).saturating_sub(buf.len()).clamp(1, READ_CHUNK);
        buf.reserve(room);
        match rd.try_read_buf(&mut (&mut *buf).limit(room)) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            r => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

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
        tokio::spawn(listen(listener, limits, TrunkSources::default(), conns.clone(), guard, tx));
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
        let queued = (0..2 * WRITE_QUEUE).take_while(|_| conns.send(None, me, big.clone()).is_ok()).count();
        assert!(queued <= WRITE_QUEUE + 1, "{queued} messages queued for a peer that reads nothing");
        assert!(matches!(conns.send(None, me, big.clone()), Err(SendError::Stuck(_) | SendError::NoConnection(_))));
        // The stalled write then ends at the write deadline.
        until("the stalled connection is closed and released", || conns.is_empty()).await;
        assert!(matches!(conns.send(None, me, Bytes::from_static(b"x")), Err(SendError::NoConnection(_))));
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
