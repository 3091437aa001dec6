//! Connections we open to gateways (`tcp:` and `tls:` in a trunk's `gateways`): opened by the first message the
//! driver sends to a gateway that has none (messages wait meanwhile, bounded), then reused for every message to
//! it and served like an accepted one, with RFC 5626 keep-alives; when it drops, the next message opens a new
//! one. A connection that cannot be opened (refused, timed out, TLS handshake or certificate check failed) is
//! reported to the driver, which tells the core: the transactions waiting on it fail at once and the call fails
//! over to its next carrier. A connection we opened that ends (dropped by the gateway, refused after the handshake
//! by a TLS alert, silent to keep-alives) is reported the same way: a transaction still waiting for its response
//! on it would otherwise wait for timer B. Each failure is counted by reason and logged at most once per interval
//! per gateway.

use super::registry::{Connections, Queued, Remote};
use super::serve::{serve, ConnInfo};
use super::stream::{LogThrottle, Origin, SourceClass, StreamLimits};
use super::{Queues, Transport};
use crate::edge::EdgeGuard;
use crate::tls::Connector;
use bytes::Bytes;
use sbc_proto::transport::Peer;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Connections to gateways that could not be opened, by `transport` and `reason` (see `crate::tls::failure`).
pub const CONNECT_FAILURES: &str = "sbc_sip_connect_failures_total";
/// At most one log line per gateway in this time for its failures; each line counts those left out.
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(10);
/// Failure reports waiting for the driver at most; more are dropped (the transactions then time out instead).
pub const FAILURE_QUEUE: usize = 1024;

/// How to reach one gateway.
#[derive(Debug, Clone)]
pub struct DialTarget {
    /// The trunk it belongs to, for logs.
    pub trunk: String,
    /// For `tls:` gateways: the trunk's TLS client configuration.
    pub tls: Option<Connector>,
}

/// Opens connections to gateways on demand.
#[derive(Debug, Clone)]
pub struct Dialer {
    /// Configured gateways, and the targets DNS names resolved to since ([`Dialer::add_target`]).
    targets: Arc<RwLock<HashMap<Remote, DialTarget>>>,
    conns: Connections,
    limits: StreamLimits,
    connect_timeout: Duration,
    keepalive: Option<Duration>,
    guard: EdgeGuard,
    tx: Queues,
    failures: mpsc::Sender<Peer>,
    logs: Arc<Mutex<HashMap<Remote, LogThrottle>>>,
}

/// The dialer's settings, from `[sip]`.
#[derive(Debug, Clone, Copy)]
pub struct DialSettings {
    /// The limits every stream connection gets.
    pub limits: StreamLimits,
    /// Connect and TLS handshake together take at most this long.
    pub connect_timeout: Duration,
    /// Keep-alive ping interval; `None`: no pings.
    pub keepalive: Option<Duration>,
}

impl Dialer {
    /// A dialer for `targets`, registering its connections in `conns` and handing their messages to `tx`. Failed
    /// destinations come out of the returned receiver, for [`sbc_proto::endpoint::Endpoint::handle_transport_error`].
    pub fn new(
        targets: HashMap<Remote, DialTarget>,
        conns: Connections,
        settings: DialSettings,
        guard: EdgeGuard,
        tx: Queues,
    ) -> (Self, mpsc::Receiver<Peer>) {
        let (failures, failed) = mpsc::channel(FAILURE_QUEUE);
        let dialer = Self {
            targets: Arc::new(RwLock::new(targets)),
            conns,
            limits: settings.limits,
            connect_timeout: settings.connect_timeout,
            keepalive: settings.keepalive,
            guard,
            tx,
            failures,
            logs: Arc::default(),
        };
        (dialer, failed)
    }

    /// Whether `remote` is a gateway we may open a connection to.
    pub fn can_dial(&self, remote: &Remote) -> bool {
        self.targets().contains_key(remote)
    }

    /// Makes `remote` a gateway we may open connections to (a target a DNS name resolved to). A remote already
    /// known keeps how it was reached: one connection serves it, whichever trunk or name led to it.
    pub fn add_target(&self, remote: Remote, target: DialTarget) {
        self.targets.write().unwrap_or_else(std::sync::PoisonError::into_inner).entry(remote).or_insert(target);
    }

    fn targets(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Remote, DialTarget>> {
        // The map stays consistent between calls; a panic elsewhere must not stop the dialer.
        self.targets.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sends `bytes` to the gateway `peer` on a connection about to be opened (the driver found none open).
    pub fn send(&self, peer: Peer, bytes: Bytes) {
        let key = (peer.transport, peer.remote);
        match self.conns.queue_for_dial(key, bytes) {
            Queued::Dial => {
                tokio::spawn(self.clone().open(peer));
            }
            Queued::Waiting => {}
            Queued::Full => crate::metrics::dropped("connect_queue_full"),
        }
    }

    async fn open(self, peer: Peer) {
        let key = (peer.transport, peer.remote);
        let Some(target) = self.targets().get(&key).cloned() else { return };
        let connected = tokio::time::timeout(self.connect_timeout, self.connect(peer, &target)).await;
        let error = match connected {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e,
            Err(_) => Failure {
                reason: "timeout",
                detail: format!("no connection within {:?}", self.connect_timeout),
                handshake: false,
            },
        };
        let dropped = self.conns.fail_dial(key);
        let transport = peer.transport.as_str();
        metrics::counter!(CONNECT_FAILURES, "transport" => transport, "reason" => error.reason).increment(1);
        if error.handshake {
            metrics::counter!(super::tls::HANDSHAKE_FAILURES, "direction" => "out", "reason" => error.reason)
                .increment(1);
        }
        if let Some(suppressed) = self.log_allowed(key) {
            tracing::warn!(
                trunk = %target.trunk, gateway = %format!("{transport}:{}", peer.remote), reason = error.reason,
                error = %error.detail, messages_dropped = dropped, suppressed,
                "cannot open a connection to the gateway: its calls fail over (further failures are counted in \
                 sbc_sip_connect_failures_total, logged once per {FAILURE_LOG_EVERY:?} per gateway)"
            );
        }
        if self.failures.try_send(peer).is_err() {
            crate::metrics::dropped("transport_error_queue_full");
        }
    }

    /// Connects (from our listener's address towards the gateway), runs the TLS handshake for `tls:` gateways,
    /// then serves the connection until it closes.
    async fn connect(&self, peer: Peer, target: &DialTarget) -> Result<(), Failure> {
        let io =
            |reason: &'static str| move |e: std::io::Error| Failure { reason, detail: e.to_string(), handshake: false };
        let stream = tcp_connect(peer.local, peer.remote).await.map_err(|e| {
            let reason = crate::tls::failure::reason(&e);
            Failure { reason, detail: e.to_string(), handshake: false }
        })?;
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().map_err(io("io"))?;
        let slot = self.conns.admit(peer.remote.ip(), SourceClass::Ours, &self.limits).map_err(|e| Failure {
            reason: "other",
            detail: e.to_string(),
            handshake: false,
        })?;
        let info = move |identity| ConnInfo {
            transport: peer.transport,
            local,
            remote: peer.remote,
            origin: Origin::Connected,
            identity,
        };
        let (guard, tx, limits, keepalive) = (self.guard.clone(), self.tx.clone(), self.limits, self.keepalive);
        match (&target.tls, peer.transport) {
            (Some(connector), Transport::Tls) => {
                let (connector, name) = connector.connector(peer.remote.ip()).map_err(|e| Failure {
                    reason: "other",
                    detail: e.to_string(),
                    handshake: false,
                })?;
                let tls = connector.connect(name, stream).await.map_err(|e| Failure {
                    reason: crate::tls::failure::reason(&e),
                    detail: e.to_string(),
                    handshake: true,
                })?;
                metrics::counter!(super::tls::HANDSHAKES, "direction" => "out").increment(1);
                let identity = super::tls::peer_identity(tls.get_ref().1.peer_certificates());
                let (rd, wr) = tokio::io::split(tls);
                let me = self.clone();
                tokio::spawn(async move {
                    let ended = serve(rd, wr, info(identity), limits, keepalive, slot, guard, tx).await;
                    me.ended(peer, ended);
                });
            }
            _ => {
                let (rd, wr) = stream.into_split();
                let me = self.clone();
                tokio::spawn(async move {
                    let ended = serve(rd, wr, info(None), limits, keepalive, slot, guard, tx).await;
                    me.ended(peer, ended);
                });
            }
        }
        Ok(())
    }

    /// A connection we opened to `peer` ended: transactions still waiting on it fail now (reported like a failed
    /// dial; none waiting, nothing happens). A read error (a TLS alert: the gateway refused our certificate after
    /// the handshake) is logged with the gateway, rate-limited like dial failures.
    fn ended(&self, peer: Peer, ended: super::serve::Ended) {
        if ended.reason == super::stream::CloseReason::Shutdown {
            return;
        }
        if let Some(e) = &ended.error {
            let key = (peer.transport, peer.remote);
            if self.log_allowed(key).is_some() {
                let trunk = self.targets().get(&key).map_or(String::new(), |t| t.trunk.clone());
                tracing::warn!(
                    trunk = %trunk, gateway = %format!("{}:{}", peer.transport, peer.remote), reason = ended.reason.label(),
                    error = %e, "the connection to the gateway ended with an error"
                );
            }
        }
        if self.failures.try_send(peer).is_err() {
            crate::metrics::dropped("transport_error_queue_full");
        }
    }

    fn log_allowed(&self, key: Remote) -> Option<u64> {
        let mut logs = self.logs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        logs.entry(key).or_insert_with(|| LogThrottle::new(FAILURE_LOG_EVERY)).allow(Instant::now().into_std())
    }
}

/// Why a connection could not be opened.
#[derive(Debug)]
struct Failure {
    reason: &'static str,
    detail: String,
    /// Whether the TCP connection was up and the TLS handshake failed.
    handshake: bool,
}

/// A TCP connection from `local`'s address (any port; `IP_FREEBIND`, as the listeners) to `remote`.
async fn tcp_connect(local: SocketAddr, remote: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(remote), Type::STREAM, Some(Protocol::TCP))?;
    if !local.ip().is_unspecified() && local.is_ipv4() == remote.is_ipv4() {
        if local.is_ipv4() {
            sock.set_freebind(true)?;
        } else {
            sock.set_freebind_ipv6(true)?;
        }
        sock.bind(&SocketAddr::new(local.ip(), 0).into())?;
    }
    sock.set_nonblocking(true)?;
    let std_stream: std::net::TcpStream = sock.into();
    tokio::net::TcpSocket::from_std_stream(std_stream).connect(remote).await
}

#[cfg(test)]
mod tests;
