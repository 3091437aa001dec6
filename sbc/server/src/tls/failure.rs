//! Why a connection to or from a TLS peer failed, as a bounded label (`sbc_tls_handshake_failures_total{reason}`,
//! `sbc_sip_connect_failures_total{reason}`) and a sentence for the log.

use rustls::{CertificateError, Error};

/// The label of a failed handshake or connect, from the I/O error tokio-rustls or the socket returned.
pub fn reason(e: &std::io::Error) -> &'static str {
    if let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) {
        return rustls_reason(tls);
    }
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect_refused",
        std::io::ErrorKind::TimedOut => "timeout",
        std::io::ErrorKind::HostUnreachable | std::io::ErrorKind::NetworkUnreachable => "unreachable",
        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset => "closed_by_peer",
        std::io::ErrorKind::InvalidData => "protocol",
        _ => "io",
    }
}

/// The label of a rustls error.
pub fn rustls_reason(e: &Error) -> &'static str {
    match e {
        Error::InvalidCertificate(c) => match c {
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => "certificate_name",
            CertificateError::UnknownIssuer => "certificate_untrusted",
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => "certificate_expired",
            CertificateError::Revoked => "certificate_revoked",
            _ => "certificate_invalid",
        },
        Error::NoCertificatesPresented => "no_client_certificate",
        Error::AlertReceived(_) => "alert_received",
        Error::PeerIncompatible(_) => "incompatible",
        Error::InvalidMessage(_) | Error::PeerMisbehaved(_) | Error::InappropriateMessage { .. } => "protocol",
        _ => "other",
    }
}

/// Every label [`reason`] returns, for zero-valued series.
pub const REASONS: [&str; 16] = [
    "connect_refused",
    "timeout",
    "unreachable",
    "closed_by_peer",
    "protocol",
    "io",
    "certificate_name",
    "certificate_untrusted",
    "certificate_expired",
    "certificate_revoked",
    "certificate_invalid",
    "no_client_certificate",
    "alert_received",
    "incompatible",
    "other",
    "queue_full",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_errors_inside_io_errors_are_told_apart() {
        let io = |e: Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        assert_eq!(reason(&io(Error::InvalidCertificate(CertificateError::NotValidForName))), "certificate_name");
        assert_eq!(reason(&io(Error::InvalidCertificate(CertificateError::UnknownIssuer))), "certificate_untrusted");
        assert_eq!(reason(&io(Error::NoCertificatesPresented)), "no_client_certificate");
        assert_eq!(reason(&std::io::ErrorKind::ConnectionRefused.into()), "connect_refused");
        assert_eq!(reason(&std::io::ErrorKind::TimedOut.into()), "timeout");
        for r in [reason(&std::io::ErrorKind::Other.into()), rustls_reason(&Error::HandshakeNotComplete)] {
            assert!(REASONS.contains(&r), "{r}");
        }
    }
}
