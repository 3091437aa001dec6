//! SIP over WebSocket (RFC 7118), `ws:` and `wss:` listeners: the HTTP upgrade (TLS first for `wss:`, with the
//! `[sip.tls]` certificate), judged by [`UpgradePolicy`] and bounded by the first-message deadline; then one SIP
//! message per WebSocket message each way (RFC 7118 §5), under the same limits and deadlines as TCP.
//!
//! A WebSocket client (a browser) listens on nothing and names itself `xyz.invalid`: it is reachable only over
//! its connection. Each connection is registered in [`Connections`](super::registry::Connections) under its
//! [`ConnId`] like a TCP one, so answers, and requests the core addresses to a [`Peer`] with that `conn`, go over
//! it; when it closes, the driver is told ([`WsListener::closed`]) so the core ends the calls on it.

use super::registry::{Slot, WRITE_QUEUE};
use super::serve::closed;
use super::stream::{CloseReason, ConnClock, Origin, StreamLimits, Timeouts, UpgradePolicy, UpgradeRefusal};
use super::{Inbound, Queues, Transport};
use crate::edge::EdgeGuard;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use sbc_proto::transport::{Peer, TlsIdentity};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, handshake::server, http, Message};
use tokio_tungstenite::WebSocketStream;

/// Upgrades that became SIP connections, by `transport` (`ws`, `wss`).
pub const UPGRADES: &str = "sbc_ws_upgrades_total";
/// Upgrades refused, by `reason` ([`UpgradeRefusal::label`]).
pub const UPGRADES_REFUSED: &str = "sbc_ws_upgrades_refused_total";
/// WebSocket messages refused for their size (the connection is closed with 1009).
pub const TOO_LARGE: &str = "sbc_ws_messages_too_large_total";
/// Double-CRLF keep-alive pings in WebSocket messages answered with a CRLF pong, by `transport`.
pub const CRLF_PONGS: &str = "sbc_ws_crlf_pongs_total";
/// Closing handshakes run, by `transport` and `clean` (`yes`: close frames exchanged, close_notify and FIN sent
/// within [`CLOSE_GRACE`]; `no`: the peer did not answer in time or the write failed).
pub const CLOSES: &str = "sbc_ws_closing_handshakes_total";
/// How long a closing handshake may take before the connection is dropped anyway.
const CLOSE_GRACE: Duration = Duration::from_millis(500);
/// At most one log line per interval for refused upgrades.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);
/// WebSocket pings on an otherwise quiet connection, at this fraction of the idle timeout: a browser answers them
/// by itself, so a live but silent client (a registered phone, a long call) is not closed as idle, and a vanished
/// one is, once the idle timeout passes without a pong.
const PINGS_PER_IDLE_TIMEOUT: u32 = 4;

/// What a `ws:` or `wss:` listener needs besides what every stream listener has.
#[derive(Debug, Clone)]
pub struct WsListener {
    /// The `[sip.tls]` configuration for `wss:`; `None` for `ws:`.
    pub tls: Option<crate::tls::Acceptor>,
    /// Which upgrades are accepted.
    pub policy: Arc<UpgradePolicy>,
    /// Where the driver learns that a connection closed (its calls end): the transport, our address, the client's
    /// and the [`ConnId`]. Bounded; a closing connection waits for room.
    pub closed: mpsc::Sender<Peer>,
}

/// An accepted, admitted TCP connection of a WebSocket listener, before its upgrade.
#[derive(Debug)]
pub(super) struct Accepted {
    pub stream: TcpStream,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub limits: StreamLimits,
    pub slot: Slot,
}

/// Runs the TLS handshake (`wss:`) and the upgrade of `a` within the first-message deadline, then serves it.
pub(super) async fn accept(a: Accepted, ws: WsListener, guard: EdgeGuard, tx: Queues) {
    let Accepted { stream, local, remote, limits, slot } = a;
    let at = Instant::now();
    let deadline = tokio::time::sleep(limits.first_message_timeout);
    tokio::pin!(deadline);
    match ws.tls.as_ref().map(|t| t.acceptor()) {
        None => {
            let up = tokio::select! {
                up = upgrade(stream, &ws.policy, &limits) => up,
                () = &mut deadline => Err(UpgradeRefusal::Timeout),
            };
            match up {
                Ok(s) => serve(s, Transport::Ws, at, (local, remote), None, limits, slot, guard, tx, ws.closed).await,
                Err(r) => refused(remote, r),
            }
        }
        Some(acceptor) => {
            let up = tokio::select! {
                up = async {
                    let tls = acceptor.accept(stream).await.map_err(|_| UpgradeRefusal::Tls)?;
                    let identity = super::tls::peer_identity(tls.get_ref().1.peer_certificates());
                    Ok((upgrade(tls, &ws.policy, &limits).await?, identity))
                } => up,
                () = &mut deadline => Err(UpgradeRefusal::Timeout),
            };
            match up {
                Ok((s, id)) => {
                    serve(s, Transport::Wss, at, (local, remote), id, limits, slot, guard, tx, ws.closed).await
                }
                Err(r) => refused(remote, r),
            }
        }
    }
}

/// The WebSocket settings: messages and frames up to the SIP message size, so an oversized message is refused
/// before it is buffered whole.
fn config(limits: &StreamLimits) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(limits.max_message_size))
        .max_frame_size(Some(limits.max_message_size))
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

/// The server side of the HTTP upgrade, judged by `policy`; the answer names the `sip` subprotocol.
async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    policy: &UpgradePolicy,
    limits: &StreamLimits,
) -> Result<WebSocketStream<S>, UpgradeRefusal> {
    // The callback's verdict, for counting: tungstenite reports a refusal as an HTTP error only.
    let verdict: Arc<Mutex<Option<UpgradeRefusal>>> = Arc::default();
    let seen = verdict.clone();
    // The Err type is tungstenite's (an HTTP response), once per upgrade: its size does not matter here.
    #[allow(clippy::result_large_err)]
    let callback = move |req: &server::Request, mut resp: server::Response| {
        let protocols = req.headers().get_all(http::header::SEC_WEBSOCKET_PROTOCOL).iter().map(|v| v.as_bytes());
        let origin = req.headers().get(http::header::ORIGIN).map(|v| v.as_bytes());
        match policy.check(protocols, origin) {
            Ok(()) => {
                resp.headers_mut().insert(http::header::SEC_WEBSOCKET_PROTOCOL, http::HeaderValue::from_static("sip"));
                Ok(resp)
            }
            Err(r) => {
                *seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(r);
                let mut e = server::ErrorResponse::new(Some(r.to_string()));
                *e.status_mut() = http::StatusCode::from_u16(r.http_status()).unwrap_or(http::StatusCode::BAD_REQUEST);
                Err(e)
            }
        }
    };
    tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config(limits))).await.map_err(|_| {
        verdict.lock().unwrap_or_else(std::sync::PoisonError::into_inner).unwrap_or(UpgradeRefusal::BadRequest)
    })
}

fn refused(remote: SocketAddr, r: UpgradeRefusal) {
    metrics::counter!(UPGRADES_REFUSED, "reason" => r.label()).increment(1);
    static LOG: OnceLock<Mutex<super::stream::LogThrottle>> = OnceLock::new();
    let log = LOG.get_or_init(|| Mutex::new(super::stream::LogThrottle::new(REFUSAL_LOG_EVERY)));
    let allowed = log.lock().unwrap_or_else(std::sync::PoisonError::into_inner).allow(Instant::now().into_std());
    if let Some(suppressed) = allowed {
        tracing::info!(
            %remote, reason = r.label(), suppressed,
            "websocket upgrade refused: {r} (further ones are counted in {UPGRADES_REFUSED}, logged once per \
             {REFUSAL_LOG_EVERY:?})"
        );
    }
}

/// Serves one upgraded connection until it closes, then tells the driver.
#[allow(clippy::too_many_arguments)]
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: WebSocketStream<S>,
    transport: Transport,
    accepted: Instant,
    (local, remote): (SocketAddr, SocketAddr),
    identity: Option<Arc<TlsIdentity>>,
    limits: StreamLimits,
    mut slot: Slot,
    guard: EdgeGuard,
    tx: Queues,
    closed_tx: mpsc::Sender<Peer>,
) {
    metrics::counter!(UPGRADES, "transport" => transport.as_str()).increment(1);
    let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    let id = slot.register((transport, remote), out_tx);
    tracing::debug!(%remote, conn = id.0, %transport, "websocket connection open");
    // The first SIP message is due within the first-message deadline of the accept, as over TCP: an upgraded
    // connection that says nothing holds no slot for long (pings it answers do not count).
    let mut clock = ConnClock::new(Origin::Accepted, accepted.into_std(), Timeouts::from(&limits));
    let ping_every = (limits.idle_timeout / PINGS_PER_IDLE_TIMEOUT).max(Duration::from_secs(1));
    let mut next_ping = Instant::now() + ping_every;
    let limit = limits.message_timeout;
    let mut peer_sent_close = false;
    let reason = loop {
        let (deadline, _) = clock.next_deadline();
        tokio::select! {
            read = ws.next() => {
                let msg = match read {
                    None => break CloseReason::ClosedByPeer,
                    Some(Err(e)) => break read_error(e, transport),
                    Some(Ok(m)) => m,
                };
                let now = Instant::now();
                clock.on_read(now.into_std(), 0, false);
                let bytes = match msg {
                    Message::Text(t) => Bytes::from(t),
                    Message::Binary(b) => b,
                    // Tungstenite queues the close reply; `close` below sends it.
                    Message::Close(_) => {
                        peer_sent_close = true;
                        break CloseReason::ClosedByPeer;
                    }
                    // Tungstenite answers pings itself.
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                };
                // CRLF keep-alives inside WebSocket messages (SIP.js sends them) carry no SIP; a double CRLF is a
                // ping owed a single CRLF pong (RFC 5626 §4.4.1), as over TCP.
                if bytes.iter().all(|&b| b == b'\r' || b == b'\n') {
                    if bytes.windows(4).any(|w| w == b"\r\n\r\n") {
                        metrics::counter!(CRLF_PONGS, "transport" => transport.as_str()).increment(1);
                        match tokio::time::timeout(limit, ws.send(Message::text("\r\n"))).await {
                            Err(_) => break CloseReason::WriteTimeout,
                            Ok(Err(_)) => break CloseReason::WriteError,
                            Ok(Ok(())) => clock.on_write(Instant::now().into_std()),
                        }
                    }
                    continue;
                }
                clock.on_read(now.into_std(), 1, false);
                if !guard.admit_from(remote, identity.as_deref()) {
                    break CloseReason::Banned;
                }
                let m = Inbound { at: now, transport, local, remote, conn: Some(id), identity: identity.clone(), bytes };
                if tx.push(m, true).await.is_err() {
                    break CloseReason::Shutdown;
                }
            }
            out = out_rx.recv() => {
                let Some(bytes) = out else { break CloseReason::WriteQueueFull };
                // SIP is text; a message that is not UTF-8 goes as binary, which RFC 7118 §5 allows too.
                let msg = match tungstenite::Utf8Bytes::try_from(bytes.clone()) {
                    Ok(text) => Message::Text(text),
                    Err(_) => Message::Binary(bytes),
                };
                match tokio::time::timeout(limit, ws.send(msg)).await {
                    Err(_) => break CloseReason::WriteTimeout,
                    Ok(Err(_)) => break CloseReason::WriteError,
                    Ok(Ok(())) => clock.on_write(Instant::now().into_std()),
                }
            }
            () = tokio::time::sleep_until(next_ping) => {
                next_ping = Instant::now() + ping_every;
                // Not a write for the idle clock: only the client's pong proves it there.
                if tokio::time::timeout(limit, ws.send(Message::Ping(Bytes::new()))).await.map_or(true, |r| r.is_err()) {
                    break CloseReason::WriteError;
                }
            }
            () = tokio::time::sleep_until(deadline.into()) => {
                if let Some(reason) = clock.expired(Instant::now().into_std()) {
                    break reason;
                }
            }
        }
    };
    // Counted when decided: the closing handshake below may wait for the client.
    closed(remote, transport, Some(id), reason);
    let handshake = if peer_sent_close { Some(None) } else { close_code(reason).map(Some) };
    if let Some(code) = handshake {
        let frame = code.map(|code| CloseFrame { code, reason: reason.label().into() });
        let ok = tokio::time::timeout(CLOSE_GRACE, close(&mut ws, frame)).await.is_ok_and(|done| done);
        metrics::counter!(CLOSES, "transport" => transport.as_str(), "clean" => if ok { "yes" } else { "no" })
            .increment(1);
    }
    drop(slot);
    let _ = closed_tx.send(Peer { transport, local, remote, conn: Some(id) }).await;
}

/// The close code we send when we end a connection for `reason` (RFC 6455 §7.4.1); `None` when no closing
/// handshake is possible or due (the peer reset the connection, or writing to it failed).
fn close_code(reason: CloseReason) -> Option<CloseCode> {
    match reason {
        CloseReason::ClosedByPeer | CloseReason::ReadError | CloseReason::WriteError => None,
        CloseReason::TooLarge => Some(CloseCode::Size),
        CloseReason::Banned => Some(CloseCode::Policy),
        CloseReason::Framing => Some(CloseCode::Protocol),
        _ => Some(CloseCode::Away),
    }
}

/// The closing handshake (RFC 6455 §7.1): our close frame (`frame`), or the reply tungstenite queued to the
/// peer's (`None`), flushed; for our own close, the peer's reply awaited; then the TLS close_notify of `wss:` and
/// the TCP FIN (the server closes the TCP connection first, §7.1.1). Returns whether every step succeeded.
async fn close<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>, frame: Option<CloseFrame>) -> bool {
    let ours = frame.is_some();
    // After the peer's close frame tungstenite refuses a new one (SendAfterClosing): a flush sends its reply.
    let sent = if ours { ws.close(frame).await } else { SinkExt::flush(ws).await };
    if sent.is_err() {
        return false;
    }
    if ours {
        // Messages still in flight before the peer's reply are dropped: the connection is ending.
        while let Some(Ok(m)) = ws.next().await {
            if m.is_close() {
                break;
            }
        }
    }
    ws.get_mut().shutdown().await.is_ok()
}

/// Why a read ended the connection; an oversized message is counted.
fn read_error(e: tungstenite::Error, transport: Transport) -> CloseReason {
    use tungstenite::Error as E;
    match e {
        E::Capacity(_) => {
            metrics::counter!(TOO_LARGE, "transport" => transport.as_str()).increment(1);
            crate::metrics::parse_error(transport.as_str(), "too_large");
            CloseReason::TooLarge
        }
        E::ConnectionClosed | E::AlreadyClosed => CloseReason::ClosedByPeer,
        E::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake) => CloseReason::ClosedByPeer,
        E::Io(ref io) if io.kind() == std::io::ErrorKind::ConnectionReset => CloseReason::ClosedByPeer,
        E::Io(_) => CloseReason::ReadError,
        _ => CloseReason::Framing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_close_codes_say_why_and_a_dead_peer_gets_no_closing_handshake() {
        let code = |r| close_code(r).map(u16::from);
        assert_eq!(code(CloseReason::TooLarge), Some(1009));
        assert_eq!(code(CloseReason::Banned), Some(1008));
        assert_eq!(code(CloseReason::Framing), Some(1002));
        for going_away in [CloseReason::Idle, CloseReason::FirstMessageTimeout, CloseReason::Shutdown] {
            assert_eq!(code(going_away), Some(1001), "{going_away:?}");
        }
        for dead in [CloseReason::ClosedByPeer, CloseReason::ReadError, CloseReason::WriteError] {
            assert_eq!(code(dead), None, "{dead:?}");
        }
    }
}
