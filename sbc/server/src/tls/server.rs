//! The TLS listeners' configuration (`[sip.tls]`): our certificate chain and key, and for mutual TLS the CA that
//! signs clients' certificates. [`Acceptor`] gives each new connection the configuration in force; the files are
//! watched and a change applies to new connections only (open ones keep the configuration they were accepted
//! with: nothing is dropped).

use super::files;
use super::reload::Reloading;
use super::TlsError;
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Whether clients must present a certificate (only with a client CA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// A client without a certificate signed by the CA is refused at the handshake (default with a CA).
    Required,
    /// A client may present none (it is then identified by its address); one it presents must verify.
    Optional,
}

/// `[sip.tls]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    /// Our certificate chain, leaf first (PEM).
    pub cert: PathBuf,
    /// The leaf's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates that sign clients' certificates (PEM). `None`: no client certificates asked for.
    pub ca: Option<PathBuf>,
    /// With `ca`: whether a client certificate is required. Default required.
    pub client_auth: ClientAuth,
    /// How often the files are checked for changes. Default 5 s.
    pub reload_every: Duration,
}

impl ServerSettings {
    /// The files the configuration is built from.
    pub fn files(&self) -> Vec<PathBuf> {
        [Some(&self.cert), Some(&self.key), self.ca.as_ref()].into_iter().flatten().cloned().collect()
    }

    /// Reads the files and builds the rustls configuration: TLS 1.2 and 1.3, the key checked against the leaf.
    pub fn build(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let chain = files::certificates(&self.cert)?;
        let key = files::private_key(&self.key)?;
        let builder = ServerConfig::builder_with_provider(super::provider())
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::Rustls { what: "TLS versions", source })?;
        let builder = match &self.ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let roots = Arc::new(files::roots(ca)?);
                let verifier = WebPkiClientVerifier::builder_with_provider(roots, super::provider());
                let verifier = match self.client_auth {
                    ClientAuth::Required => verifier,
                    ClientAuth::Optional => verifier.allow_unauthenticated(),
                };
                let verifier =
                    verifier.build().map_err(|e| TlsError::ClientCa { path: ca.clone(), message: e.to_string() })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder.with_single_cert(chain, key).map_err(|source| TlsError::Rustls {
            what: "the certificate and key (does the key belong to the first certificate of the chain?)",
            source,
        })?;
        Ok(Arc::new(config))
    }
}

/// The listeners' TLS configuration in force, reloaded when its files change.
#[derive(Debug, Clone)]
pub struct Acceptor {
    config: Reloading<ServerConfig>,
}

impl Acceptor {
    /// Builds the configuration of `settings` and starts watching its files (needs a tokio runtime).
    pub fn start(settings: &ServerSettings) -> Result<Self, TlsError> {
        let s = settings.clone();
        let config = Reloading::load("sip.tls".into(), settings.files(), settings.reload_every, move || s.build())?;
        Ok(Self { config })
    }

    /// An acceptor for the configuration in force now.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.get())
    }
}
