//! A trunk's TLS towards its gateways (`trunk.tls`): the server certificate is checked against the system roots
//! or the trunk's CA file and against the expected name (the trunk's `server_name`, else the gateway's IP
//! address); a client certificate is presented for mutual TLS when the trunk has one.

use super::files;
use super::reload::Reloading;
use super::TlsError;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// `trunk.tls`, validated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientSettings {
    /// The name the gateways' certificates must carry (a DNS SAN, or an IP SAN). Default: each gateway's address.
    pub server_name: Option<String>,
    /// CA certificates the gateways' certificates must chain to (PEM). Default: the host's CA store.
    pub ca: Option<PathBuf>,
    /// Our client certificate chain for mutual TLS (PEM), with `key`.
    pub cert: Option<PathBuf>,
    /// The client certificate's private key.
    pub key: Option<PathBuf>,
}

impl ClientSettings {
    /// The files the configuration is built from.
    pub fn files(&self) -> Vec<PathBuf> {
        [self.ca.as_ref(), self.cert.as_ref(), self.key.as_ref()].into_iter().flatten().cloned().collect()
    }

    /// The name to check a gateway at `ip` against.
    pub fn name_for(&self, ip: IpAddr) -> Result<ServerName<'static>, TlsError> {
        match &self.server_name {
            Some(n) => ServerName::try_from(n.clone()).map_err(|_| TlsError::ServerName(n.clone())),
            None => Ok(ServerName::IpAddress(ip.into())),
        }
    }

    /// Reads the files and builds the rustls configuration: TLS 1.2 and 1.3, server certificates verified.
    pub fn build(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let roots = match &self.ca {
            Some(ca) => files::roots(ca)?,
            None => files::system_roots()?,
        };
        let builder = ClientConfig::builder_with_provider(super::provider())
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::Rustls { what: "TLS versions", source })?
            .with_root_certificates(roots);
        let config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(files::certificates(cert)?, files::private_key(key)?)
                .map_err(|source| TlsError::Rustls {
                    what: "the client certificate and key (does the key belong to the first certificate?)",
                    source,
                })?,
            _ => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
}

/// One trunk's TLS client configuration in force, reloaded when its files change.
#[derive(Debug, Clone)]
pub struct Connector {
    config: Reloading<ClientConfig>,
    settings: ClientSettings,
}

impl Connector {
    /// Builds the configuration and watches its files every `every` (needs a tokio runtime); `trunk` names it
    /// in logs.
    pub fn start(trunk: &str, settings: &ClientSettings, every: Duration) -> Result<Self, TlsError> {
        let files = settings.files();
        let config = if files.is_empty() {
            Reloading::fixed(settings.build()?)
        } else {
            let s = settings.clone();
            Reloading::load(format!("trunk {trunk} tls"), files, every, move || s.build())?
        };
        Ok(Self { config, settings: settings.clone() })
    }

    /// A connector with the configuration in force now, and the name to check a gateway at `ip` against.
    pub fn connector(&self, ip: IpAddr) -> Result<(tokio_rustls::TlsConnector, ServerName<'static>), TlsError> {
        Ok((tokio_rustls::TlsConnector::from(self.config.get()), self.settings.name_for(ip)?))
    }
}
