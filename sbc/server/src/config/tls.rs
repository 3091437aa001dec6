//! `[sip.tls]` (the listeners' certificate, key and client CA) and a trunk's `tls` (how its TLS gateways are
//! checked, and our client certificate towards them). Paths are taken from the config file's directory when
//! relative. The files are read and the configuration built at load, so `sbc check-config` finds a missing file,
//! a key that does not match its certificate or an unusable CA before a restart does.

use super::routing::Check;
use super::Validator;
use crate::tls::{ClientAuth, ClientSettings, ServerSettings};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// How often certificate files are checked for changes, unless `[sip.tls] reload_every` says otherwise.
pub const DEFAULT_RELOAD_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSipTls {
    cert: Spanned<String>,
    key: Spanned<String>,
    ca: Option<Spanned<String>>,
    client_auth: Option<Spanned<String>>,
    reload_every: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrunkTls {
    server_name: Option<Spanned<String>>,
    ca: Option<Spanned<String>>,
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    sips: Option<bool>,
}

fn path(base: &Path, p: &str) -> PathBuf {
    let p = PathBuf::from(p);
    if p.is_relative() {
        base.join(p)
    } else {
        p
    }
}

impl Validator<'_> {
    fn base_dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new(""))
    }

    /// `[sip.tls]`: the files exist, parse, the key matches the certificate, the CA can verify clients.
    pub(super) fn sip_tls(&self, raw: &Spanned<RawSipTls>) -> Result<ServerSettings, super::ConfigError> {
        let t = raw.get_ref();
        let base = self.base_dir();
        let client_auth = match &t.client_auth {
            None => ClientAuth::Required,
            Some(s) if t.ca.is_none() => {
                return Err(self.invalid(s.span(), "sip.tls.client_auth", "needs sip.tls.ca (the CA of the clients)"))
            }
            Some(s) => match s.get_ref().as_str() {
                "required" => ClientAuth::Required,
                "optional" => ClientAuth::Optional,
                other => {
                    return Err(self.invalid(
                        s.span(),
                        "sip.tls.client_auth",
                        &format!("\"{other}\": expected \"required\" or \"optional\""),
                    ))
                }
            },
        };
        let reload_every = match &t.reload_every {
            None => DEFAULT_RELOAD_EVERY,
            Some(s) => self.duration(s, "sip.tls.reload_every")?,
        };
        let settings = ServerSettings {
            cert: path(base, t.cert.get_ref()),
            key: path(base, t.key.get_ref()),
            ca: t.ca.as_ref().map(|c| path(base, c.get_ref())),
            client_auth,
            reload_every,
        };
        settings.build().map_err(|e| self.invalid(raw.span(), "sip.tls", &e.to_string()))?;
        Ok(settings)
    }
}

/// A trunk's `tls`: `cert` and `key` together, a `server_name` rustls accepts, files that build.
pub(super) fn trunk_tls(c: &mut Check<'_, '_>, i: usize, raw: &Spanned<RawTrunkTls>) -> Option<(ClientSettings, bool)> {
    let t = raw.get_ref();
    let base = c.v.base_dir().to_owned();
    let key = format!("trunk[{i}].tls");
    if t.cert.is_some() != t.key.is_some() {
        c.error(raw.span(), &key, "cert and key go together (our client certificate and its key)");
        return None;
    }
    let settings = ClientSettings {
        server_name: t.server_name.as_ref().map(|s| s.get_ref().to_ascii_lowercase()),
        ca: t.ca.as_ref().map(|p| path(&base, p.get_ref())),
        cert: t.cert.as_ref().map(|p| path(&base, p.get_ref())),
        key: t.key.as_ref().map(|p| path(&base, p.get_ref())),
    };
    if let Some(name) = &t.server_name {
        if let Err(e) = settings.name_for(std::net::Ipv4Addr::UNSPECIFIED.into()) {
            c.error(name.span(), &format!("{key}.server_name"), &e.to_string());
            return None;
        }
    }
    if let Err(e) = settings.build() {
        c.error(raw.span(), &key, &e.to_string());
        return None;
    }
    Some((settings, t.sips.unwrap_or(false)))
}
