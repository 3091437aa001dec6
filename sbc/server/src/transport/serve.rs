//! One stream connection's life, for every stream transport (TCP, TLS): framing, the deadlines of
//! [`super::stream`], the bounded write queue, keep-alives (RFC 5626 §4.4.1: pings on connections we opened,
//! pongs to anyone's pings), and the message hand-off to the driver with the edge guard's check.

use super::registry::{Slot, WRITE_QUEUE};
use super::stream::{CloseReason, ConnClock, Framer, KeepAlive, KeepAliveAction, Origin, StreamLimits, Timeouts};
use super::{ConnId, Inbound, Queues, Transport};
use crate::edge::EdgeGuard;
use bytes::{BufMut, Bytes, BytesMut};
use sbc_proto::transport::TlsIdentity;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Bytes read at most per read call. A TCP connection holds no read buffer until it has something to read, and
/// gives back a buffer grown by a large message once that message is out.
const READ_CHUNK: usize = 4096;

/// Who is at the other end of a connection, and how it came to be.
#[derive(Debug, Clone)]
pub(super) struct ConnInfo {
    /// TCP or TLS.
    pub transport: Transport,
    /// Our address.
    pub local: SocketAddr,
    /// The peer's.
    pub remote: SocketAddr,
    /// Accepted or opened by us.
    pub origin: Origin,
    /// The verified names of the peer's TLS certificate, if it presented one.
    pub identity: Option<Arc<TlsIdentity>>,
}

/// A read half that reads at most up to a message-size cap.
pub(super) trait ReadCapped: Send {
    /// Reads what is there into `buf`, never letting it grow past `max + 1` bytes: one byte over the maximum is
    /// enough for the framing to refuse the message. Cancel-safe (it is raced against writes and deadlines).
    fn read_capped(&mut self, buf: &mut BytesMut, max: usize) -> impl Future<Output = std::io::Result<usize>> + Send;
}

impl ReadCapped for OwnedReadHalf {
    /// Plain TCP: the buffer grows only when there is something to read.
    async fn read_capped(&mut self, buf: &mut BytesMut, max: usize) -> std::io::Result<usize> {
        loop {
            self.readable().await?;
            let room = (max + 1).saturating_sub(buf.len()).clamp(1, READ_CHUNK);
            buf.reserve(room);
            match self.try_read_buf(&mut (&mut *buf).limit(room)) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                r => return r,
            }
        }
    }
}

impl<S: AsyncRead + Send> ReadCapped for tokio::io::ReadHalf<S> {
    /// Any stream (TLS): the record layer buffers anyway, so the chunk is reserved up front.
    async fn read_capped(&mut self, buf: &mut BytesMut, max: usize) -> std::io::Result<usize> {
        let room = (max + 1).saturating_sub(buf.len()).clamp(1, READ_CHUNK);
        buf.reserve(room);
        self.read_buf(&mut (&mut *buf).limit(room)).await
    }
}

/// How a connection ended.
#[derive(Debug)]
pub(super) struct Ended {
    /// Why.
    pub reason: CloseReason,
    /// The read error that ended it, if one did (a TLS alert from the peer, a reset).
    pub error: Option<std::io::Error>,
}

/// Serves one admitted connection until it closes; `keepalive` pings a connection we opened at that interval.
/// The slot is released when this returns, however it ends.
#[allow(clippy::too_many_arguments)]
pub(super) async fn serve<R: ReadCapped, W: AsyncWrite + Unpin + Send>(
    mut rd: R,
    mut wr: W,
    info: ConnInfo,
    limits: StreamLimits,
    keepalive: Option<Duration>,
    mut slot: Slot,
    guard: EdgeGuard,
    tx: Queues,
) -> Ended {
    let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    let mut error = None;
    let ConnInfo { transport, local, remote, origin, identity } = info;
    let id = slot.register((transport, remote), out_tx);
    tracing::debug!(%remote, conn = id.0, %transport, "connection open");
    let now = Instant::now().into_std();
    let mut clock = ConnClock::new(origin, now, Timeouts::from(&limits));
    let mut alive = keepalive.filter(|_| origin == Origin::Connected).map(|every| KeepAlive::new(now, every));
    let mut buf = BytesMut::new();
    let mut framer = Framer::default();
    let limit = limits.message_timeout;
    let reason = 'conn: loop {
        let (deadline, _) = clock.next_deadline();
        let deadline = alive.as_ref().map_or(deadline, |k| deadline.min(k.next_deadline()));
        tokio::select! {
            read = rd.read_capped(&mut buf, limits.max_message_size) => {
                match read {
                    Ok(0) => break CloseReason::ClosedByPeer,
                    Err(e) => {
                        let reason = match e.kind() {
                            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof => {
                                CloseReason::ClosedByPeer
                            }
                            _ => CloseReason::ReadError,
                        };
                        error = Some(e);
                        break reason;
                    }
                    Ok(_) => {}
                }
                if let Some(k) = alive.as_mut() {
                    k.on_read();
                }
                let msgs = match framer.drain(&mut buf, limits.max_message_size) {
                    Ok(msgs) => msgs,
                    Err(e) => {
                        crate::metrics::parse_error(transport.as_str(), e.reason());
                        let log = slot.conns.lock().bad_input_log.allow(Instant::now().into_std());
                        if let Some(suppressed) = log {
                            tracing::info!(
                                %remote, %transport, error = %e, suppressed,
                                "closing connection: unframeable input (further ones are counted in \
                                 sbc_sip_parse_errors_total, logged once per {:?})", super::registry::BAD_INPUT_LOG_EVERY
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
                for _ in 0..framer.take_pings() {
                    match write(&mut wr, limit, Bytes::from_static(b"\r\n")).await {
                        Err(_) => break 'conn CloseReason::WriteTimeout,
                        Ok(Err(_)) => break 'conn CloseReason::WriteError,
                        Ok(Ok(())) => clock.on_write(Instant::now().into_std()),
                    }
                }
                for bytes in msgs {
                    if !guard.admit_from(remote, identity.as_deref()) {
                        break 'conn CloseReason::Banned;
                    }
                    let m = Inbound { at: now, transport, local, remote, conn: Some(id), identity: identity.clone(), bytes };
                    if tx.push(m, true).await.is_err() {
                        break 'conn CloseReason::Shutdown;
                    }
                }
            }
            out = out_rx.recv() => {
                // Only `Connections::send` drops the registry's sender, when the queue is full.
                let Some(bytes) = out else { break CloseReason::WriteQueueFull };
                match write(&mut wr, limit, bytes).await {
                    Err(_) => break CloseReason::WriteTimeout,
                    Ok(Err(_)) => break CloseReason::WriteError,
                    Ok(Ok(())) => clock.on_write(Instant::now().into_std()),
                }
            }
            () = tokio::time::sleep_until(deadline.into()) => {
                let now = Instant::now().into_std();
                if let Some(reason) = clock.expired(now) {
                    break reason;
                }
                match alive.as_mut().map(|k| k.poll(now)) {
                    Some(KeepAliveAction::Dead) => break CloseReason::KeepaliveTimeout,
                    Some(KeepAliveAction::Ping) => match write(&mut wr, limit, Bytes::from_static(b"\r\n\r\n")).await {
                        Err(_) => break CloseReason::WriteTimeout,
                        Ok(Err(_)) => break CloseReason::WriteError,
                        Ok(Ok(())) => clock.on_write(Instant::now().into_std()),
                    },
                    _ => {}
                }
            }
        }
    };
    // A TLS peer learns of the end by a close_notify; errors here change nothing.
    let _ = tokio::time::timeout(Duration::from_millis(200), wr.shutdown()).await;
    closed(remote, transport, Some(id), reason);
    drop(slot);
    Ended { reason, error }
}

/// Writes `bytes` within `limit` (a peer that does not read must not hold the connection's task forever).
async fn write<W: AsyncWrite + Unpin>(
    wr: &mut W,
    limit: Duration,
    bytes: Bytes,
) -> Result<std::io::Result<()>, tokio::time::error::Elapsed> {
    tokio::time::timeout(limit, async {
        wr.write_all(&bytes).await?;
        wr.flush().await
    })
    .await
}

/// Counts and logs the end of a connection.
pub(super) fn closed(remote: SocketAddr, transport: Transport, id: Option<ConnId>, reason: CloseReason) {
    metrics::counter!(crate::metrics::TCP_CONNECTIONS_CLOSED, "reason" => reason.label()).increment(1);
    tracing::debug!(%remote, %transport, conn = id.map(|i| i.0), reason = reason.label(), "connection closed");
}
