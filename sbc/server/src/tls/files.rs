//! Certificates, keys and CA bundles from PEM files (`rustls-pki-types`' PEM parser). Errors name the file and
//! never its content.

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    /// The file cannot be read (missing, no permission).
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No `CERTIFICATE` block in the file, or one that is not valid PEM.
    #[error("{path}: no PEM certificate in it")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// No private key block (PKCS#8, PKCS#1 or SEC1) in the file.
    #[error("{path}: no PEM private key in it (PKCS#8, PKCS#1 RSA or SEC1 EC)")]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// A certificate of a CA bundle that rustls cannot use as a trust anchor.
    #[error("{path}: certificate {index} is not a usable CA: {message}")]
    BadCa {
        /// The file.
        path: PathBuf,
        /// Which certificate, 0-based.
        index: usize,
        /// Why.
        message: String,
    },
    /// The host has no CA certificates in its store (`ca-certificates` not installed) and no CA file was given.
    #[error("no system CA certificates found ({0}); install ca-certificates or give a CA file")]
    NoSystemRoots(String),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|source| TlsFileError::Read { path: path.to_owned(), source })
}

/// Every certificate in `path`, in file order (a chain: the leaf first).
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let bytes = read(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes).collect::<Result<_, _>>().unwrap_or_default();
    if certs.is_empty() {
        return Err(TlsFileError::NoCertificate { path: path.to_owned() });
    }
    Ok(certs)
}

/// The first private key in `path`.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsFileError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| TlsFileError::NoKey { path: path.to_owned() })
}

/// The certificates of `path` as trust anchors.
pub fn roots(path: &Path) -> Result<RootCertStore, TlsFileError> {
    let mut store = RootCertStore::empty();
    for (index, cert) in certificates(path)?.into_iter().enumerate() {
        store.add(cert).map_err(|e| TlsFileError::BadCa { path: path.to_owned(), index, message: e.to_string() })?;
    }
    Ok(store)
}

/// The host's CA certificates (`rustls-native-certs`: /etc/ssl/certs on Debian), read once per process.
pub fn system_roots() -> Result<RootCertStore, TlsFileError> {
    static ROOTS: OnceLock<Result<RootCertStore, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut store = RootCertStore::empty();
            let (added, _ignored) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found.errors.first().map_or_else(|| "the store is empty".to_owned(), |e| e.to_string());
                return Err(why);
            }
            Ok(store)
        })
        .clone()
        .map_err(TlsFileError::NoSystemRoots)
}
