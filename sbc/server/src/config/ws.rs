//! `[sip.ws]`: how the `ws:` and `wss:` listeners judge WebSocket upgrades (RFC 7118). Their limits are the stream
//! limits of `[sip]` (`max_message_size`, `tcp_*`), their certificate that of `[sip.tls]`.

use super::Validator;
use crate::transport::stream::{Origins, UpgradePolicy};
use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSipWs {
    allowed_origins: Option<Spanned<Vec<Spanned<String>>>>,
}

impl Validator<'_> {
    /// `[sip.ws]`; absent: upgrades carrying an `Origin` (browsers) are refused ([`Origins::NoBrowsers`]).
    pub(super) fn sip_ws(&self, raw: Option<&Spanned<RawSipWs>>) -> Result<UpgradePolicy, super::ConfigError> {
        let Some(list) = raw.and_then(|r| r.get_ref().allowed_origins.as_ref()) else {
            return Ok(UpgradePolicy::default());
        };
        if list.get_ref().is_empty() {
            return Err(self.invalid(
                list.span(),
                "sip.ws.allowed_origins",
                "is empty: list the web origins of your softphone pages (\"https://phone.example.com\"), or \"*\"",
            ));
        }
        let mut only = Vec::new();
        for (i, o) in list.get_ref().iter().enumerate() {
            let key = format!("sip.ws.allowed_origins[{i}]");
            match o.get_ref().as_str() {
                "*" if list.get_ref().len() == 1 => return Ok(UpgradePolicy { origins: Origins::Any }),
                "*" => return Err(self.invalid(o.span(), &key, "\"*\" allows every origin: give it alone")),
                s if valid_origin(s) => only.push(s.trim_end_matches('/').to_ascii_lowercase()),
                s => {
                    return Err(self.invalid(
                        o.span(),
                        &key,
                        &format!("\"{s}\" is not a web origin: expected SCHEME://HOST[:PORT], e.g. \"https://phone.example.com\""),
                    ))
                }
            }
        }
        Ok(UpgradePolicy { origins: Origins::Only(only) })
    }
}

/// `http(s)://host[:port]`, without path, query or user (RFC 6454 §6.1: what a browser sends).
fn valid_origin(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once("://") else { return false };
    let rest = rest.trim_end_matches('/');
    matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https")
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', '@', ' '])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        assert!(valid_origin("https://phone.example.com"));
        assert!(valid_origin("http://127.0.0.1:8080"));
        assert!(valid_origin("https://phone.example.com/"));
        assert!(!valid_origin("phone.example.com"));
        assert!(!valid_origin("https://phone.example.com/app"));
        assert!(!valid_origin("ftp://phone.example.com"));
        assert!(!valid_origin("https://"));
    }
}
