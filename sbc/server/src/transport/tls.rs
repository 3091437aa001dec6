//! The TLS side of stream connections: the handshake of an accepted connection (within the first-message
//! deadline; a failure is counted by reason and logged at most once per interval), the peer certificate's
//! identity, and handshake failures of connections we open ([`super::dial`]).

use super::registry::Slot;
use super::serve::{serve, ConnInfo};
use super::stream::{LogThrottle, Origin, StreamLimits};
use super::{Queues, Transport};
use crate::edge::EdgeGuard;
use sbc_proto::transport::TlsIdentity;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Handshakes that failed, by `direction` (`in`: a client of our listener, `out`: a gateway) and `reason`.
pub const HANDSHAKE_FAILURES: &str = "sbc_tls_handshake_failures_total";
/// Handshakes that completed, by `direction`.
pub const HANDSHAKES: &str = "sbc_tls_handshakes_total";
/// At most one log line per interval for failed inbound handshakes (scanners fail them by the thousand).
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(10);

/// An accepted, admitted TCP connection of a TLS listener, before its handshake.
#[derive(Debug)]
pub(super) struct Accepted {
    pub stream: TcpStream,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub limits: StreamLimits,
    pub slot: Slot,
}

/// Runs the server handshake of `a` (bounded by the first-message deadline: a client that connects and says
/// nothing holds a slot no longer than one that sends no SIP), then serves the connection.
pub(super) async fn accept(a: Accepted, acceptor: tokio_rustls::TlsAcceptor, guard: EdgeGuard, tx: Queues) {
    let Accepted { stream, local, remote, limits, slot } = a;
    let handshake = tokio::time::timeout(limits.first_message_timeout, acceptor.accept(stream)).await;
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return inbound_failed(remote, crate::tls::failure::reason(&e), &e.to_string()),
        Err(_) => return inbound_failed(remote, "timeout", "no handshake within the first-message deadline"),
    };
    metrics::counter!(HANDSHAKES, "direction" => "in").increment(1);
    let identity = peer_identity(tls.get_ref().1.peer_certificates());
    tracing::debug!(%remote, identity = ?identity.as_ref().map(|i| i.names().to_vec()), "tls connection accepted");
    let (rd, wr) = tokio::io::split(tls);
    let info = ConnInfo { transport: Transport::Tls, local, remote, origin: Origin::Accepted, identity };
    serve(rd, wr, info, limits, None, slot, guard, tx).await;
}

/// The identity of a verified peer's leaf certificate.
pub(super) fn peer_identity(certs: Option<&[rustls_pki_types::CertificateDer<'static>]>) -> Option<Arc<TlsIdentity>> {
    certs.and_then(|c| c.first()).and_then(|leaf| crate::tls::identity::of_certificate(leaf)).map(Arc::new)
}

fn inbound_failed(remote: SocketAddr, reason: &'static str, detail: &str) {
    metrics::counter!(HANDSHAKE_FAILURES, "direction" => "in", "reason" => reason).increment(1);
    static LOG: OnceLock<Mutex<LogThrottle>> = OnceLock::new();
    let log = LOG.get_or_init(|| Mutex::new(LogThrottle::new(FAILURE_LOG_EVERY)));
    let allowed = log.lock().unwrap_or_else(std::sync::PoisonError::into_inner).allow(Instant::now().into_std());
    if let Some(suppressed) = allowed {
        tracing::info!(
            %remote, reason, error = detail, suppressed,
            "tls handshake with a client failed (further ones are counted in sbc_tls_handshake_failures_total, \
             logged once per {FAILURE_LOG_EVERY:?})"
        );
    }
}
