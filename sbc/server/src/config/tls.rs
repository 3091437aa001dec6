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

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use sbc_proto::transport::Transport;
    use std::path::{Path, PathBuf};

    /// A directory with ca.pem and leaf.pem (a certificate and its key) made by rcgen.
    fn files(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sbc-config-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let key = rcgen::KeyPair::generate().expect("key");
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        std::fs::write(dir.join("ca.pem"), ca.self_signed(&key).expect("ca").pem()).expect("write");
        let leaf_key = rcgen::KeyPair::generate().expect("key");
        let leaf = rcgen::CertificateParams::new(vec!["sbc.example.net".to_owned()]).expect("params");
        let leaf = leaf.self_signed(&leaf_key).expect("leaf");
        std::fs::write(dir.join("leaf.pem"), format!("{}{}", leaf.pem(), leaf_key.serialize_pem())).expect("write");
        dir
    }

    fn parse(dir: &Path, text: &str) -> Result<Config, String> {
        Config::parse(text, &dir.join("test.toml")).map_err(|e| e.to_string())
    }

    const CARRIER: &str =
        "[[trunk]]\nname = \"carrier\"\ngateways = [\"tls:198.18.2.10:5061\", \"tcp:198.18.2.11:5060\"]\n";

    #[test]
    fn tls_listeners_and_trunks_load_with_paths_relative_to_the_file() {
        let dir = files("ok");
        let c = parse(
            &dir,
            &format!(
                "[sip]\nlisten = [\"tls:127.0.0.1:5061\"]\nconnection_keepalive = \"off\"\n\
                 tls = {{ cert = \"leaf.pem\", key = \"leaf.pem\", ca = \"ca.pem\", client_auth = \"optional\" }}\n\
                 [[trunk]]\nname = \"pbx\"\nmatch = {{ tls = [\"PBX.Example.net\"] }}\n{CARRIER}\
                 tls = {{ server_name = \"Carrier.Example.net\", ca = \"ca.pem\", cert = \"leaf.pem\", key = \"leaf.pem\", sips = true }}\n"
            ),
        )
        .expect("valid");
        let tls = c.sip.tls.as_ref().expect("[sip.tls]");
        assert_eq!((tls.cert.clone(), tls.client_auth), (dir.join("leaf.pem"), crate::tls::ClientAuth::Optional));
        assert_eq!(c.sip.connection_keepalive, None);
        assert_eq!(c.plan.trunks[0].tls_identities, ["pbx.example.net"]);
        let carrier = &c.plan.trunks[1];
        assert_eq!((carrier.uri_host.as_deref(), carrier.sips), (Some("carrier.example.net"), true));
        let dial: Vec<(Transport, bool)> = c.dial.iter().map(|d| (d.transport, d.tls.is_some())).collect();
        assert_eq!(dial, [(Transport::Tls, true), (Transport::Tcp, false)]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_tls_settings_name_their_key() {
        let dir = files("bad");
        for (text, expect) in [
            ("[sip]\nlisten = [\"tls:127.0.0.1:5061\"]\ntls = { cert = \"missing.pem\", key = \"leaf.pem\" }\n", "sip.tls: cannot read"),
            ("[sip]\ntls = { cert = \"leaf.pem\", key = \"ca.pem\" }\n", "sip.tls:"),
            ("[sip]\ntls = { cert = \"leaf.pem\", key = \"leaf.pem\", client_auth = \"optional\" }\n", "sip.tls.client_auth"),
            ("[sip]\nconnection_keepalive = \"sometimes\"\n", "sip.connection_keepalive"),
            (&format!("{CARRIER}tls = {{ cert = \"leaf.pem\" }}\n"), "trunk[0].tls: cert and key go together"),
            (&format!("{CARRIER}tls = {{ server_name = \"not a name\" }}\n"), "trunk[0].tls.server_name"),
            ("[[trunk]]\nname = \"c\"\ngateways = [\"udp:198.18.2.10:5060\"]\ntls = { ca = \"ca.pem\" }\n", "no tls: gateways"),
            ("[[trunk]]\nname = \"p\"\nmatch = { tls = [\"a b\"] }\n", "trunk[0].match.tls[0]"),
            (
                &format!("{CARRIER}tls = {{ ca = \"ca.pem\" }}\n[[trunk]]\nname = \"other\"\ngateways = [\"tls:198.18.2.10:5061\"]\ntls = {{ ca = \"leaf.pem\" }}\n"),
                "trunk[1].gateways[0]: trunk carrier reaches this gateway with other tls settings",
            ),
        ] {
            let e = parse(&dir, text).expect_err(text);
            assert!(e.contains(expect), "{text}: {e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
