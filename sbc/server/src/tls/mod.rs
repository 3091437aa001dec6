//! TLS for SIP (RFC 3261 §26.2, RFC 5630) with rustls on the ring provider: TLS 1.2 and 1.3, no OpenSSL.
//!
//! - [`files`]: certificate chains, keys and CA bundles from PEM files, with errors that name the file.
//! - [`server`]: the listeners' configuration (`[sip.tls]`): our chain and key, the client CA for mutual TLS;
//!   [`Acceptor`] hands new connections the configuration in force, replaced when the files change.
//! - [`client`]: a trunk's configuration towards its TLS gateways (`trunk.tls`): which roots, which name, which
//!   client certificate.
//! - [`reload`]: re-reads a set of files when their modification time changes; a bad new file keeps the old
//!   configuration and says why.
//! - [`identity`]: the names of a verified peer certificate (subject CN, DNS SANs) for trunk identification.
//! - [`failure`]: why a handshake failed, as a bounded label for metrics and logs.

pub mod client;
pub mod failure;
pub mod files;
pub mod identity;
pub mod reload;
pub mod server;

pub use client::{ClientSettings, Connector};
pub use files::TlsFileError;
pub use server::{Acceptor, ClientAuth, ServerSettings};

use std::sync::Arc;

/// The one crypto provider of every configuration we build (explicit, so another crate enabling a second
/// provider in rustls cannot make the process default ambiguous).
///
/// rustls 0.23.48 deprecates ring's provider because it lacks post-quantum key exchange (X25519MLKEM768, which
/// only aws-lc-rs offers). We keep ring: aws-lc-rs adds a large C build to every build of the workspace, and SIP
/// peers (carriers, PBXs, Teams) negotiate classic X25519/P-256 today. Switching is this one function plus the
/// crate features in the workspace's Cargo.toml.
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM.
    #[error(transparent)]
    File(#[from] TlsFileError),
    /// rustls refused the material (a key that does not match its certificate, an unusable CA).
    #[error("{what}: {source}")]
    Rustls {
        /// What was being built.
        what: &'static str,
        /// rustls's reason.
        source: rustls::Error,
    },
    /// The client CA bundle cannot verify clients.
    #[error("client CA {path}: {message}")]
    ClientCa {
        /// The CA file.
        path: std::path::PathBuf,
        /// Why.
        message: String,
    },
    /// `server_name` is neither a DNS name nor an IP address.
    #[error("\"{0}\" is not a DNS name or an IP address")]
    ServerName(String),
}
