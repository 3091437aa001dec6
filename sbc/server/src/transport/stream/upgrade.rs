//! Whether a WebSocket upgrade request may become a SIP connection (RFC 7118 §4, RFC 6455 §4.2): it must offer the
//! `sip` subprotocol, and a browser's `Origin` must be one the operator allows.
//!
//! Sans-IO: [`UpgradePolicy::check`] gets the request's header values and answers with the refusal, if any; the
//! WebSocket transport answers the HTTP request accordingly and counts the refusal by [`UpgradeRefusal::label`].

/// The Origin policy of the WebSocket listeners (`[sip.ws] allowed_origins`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Origins {
    /// No allowlist configured: requests that carry an `Origin` are refused, those without one are accepted. A
    /// browser always sends `Origin`, and without an allowlist any web page a user visits could make the user's
    /// browser open SIP connections to us (cross-site WebSocket hijacking); clients that are no browser (a SIP
    /// stack in Node, a test tool) send none.
    #[default]
    NoBrowsers,
    /// `["*"]`: any origin, and none.
    Any,
    /// These origins exactly (scheme, host and port as the browser sends them, e.g. `https://phone.example.com`,
    /// compared ASCII case-insensitively), and requests without one.
    Only(Vec<String>),
}

/// How WebSocket upgrades are judged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpgradePolicy {
    /// Which browser origins may connect.
    pub origins: Origins,
}

/// Why an upgrade was refused. Counted as `sbc_ws_upgrades_refused_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum UpgradeRefusal {
    /// No `Sec-WebSocket-Protocol: sip` offered (RFC 7118 §4: the server must not accept without it).
    #[error("the sip subprotocol was not offered")]
    NoSipProtocol,
    /// The `Origin` is not in `[sip.ws] allowed_origins` (or none is configured and the request has one).
    #[error("the origin is not allowed")]
    Origin,
    /// Not a WebSocket upgrade at all, or a broken one (a plain HTTP request, a bad key or version).
    #[error("not a valid WebSocket upgrade")]
    BadRequest,
    /// The TLS handshake of a `wss:` listener failed.
    #[error("the TLS handshake failed")]
    Tls,
    /// TLS handshake and upgrade were not done within the first-message deadline.
    #[error("no upgrade within the first-message deadline")]
    Timeout,
}

impl UpgradeRefusal {
    /// Every refusal, for zero-valued metric series.
    pub const ALL: [UpgradeRefusal; 5] =
        [Self::NoSipProtocol, Self::Origin, Self::BadRequest, Self::Tls, Self::Timeout];

    /// Label value for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::NoSipProtocol => "no_sip_protocol",
            Self::Origin => "origin",
            Self::BadRequest => "bad_request",
            Self::Tls => "tls",
            Self::Timeout => "timeout",
        }
    }

    /// The HTTP status the refused request is answered with.
    pub fn http_status(self) -> u16 {
        match self {
            Self::Origin => 403,
            _ => 400,
        }
    }
}

impl UpgradePolicy {
    /// Judges an upgrade request by its `Sec-WebSocket-Protocol` values (each may be a comma-separated list) and
    /// its `Origin`. The answer must then carry `Sec-WebSocket-Protocol: sip`.
    pub fn check<'a>(
        &self,
        protocols: impl IntoIterator<Item = &'a [u8]>,
        origin: Option<&[u8]>,
    ) -> Result<(), UpgradeRefusal> {
        let offers_sip = protocols
            .into_iter()
            .flat_map(|v| v.split(|&b| b == b','))
            .any(|p| p.trim_ascii().eq_ignore_ascii_case(b"sip"));
        if !offers_sip {
            return Err(UpgradeRefusal::NoSipProtocol);
        }
        let allowed = match (&self.origins, origin) {
            (Origins::Any, _) | (_, None) => true,
            (Origins::NoBrowsers, Some(_)) => false,
            (Origins::Only(list), Some(o)) => list.iter().any(|a| a.as_bytes().eq_ignore_ascii_case(o.trim_ascii())),
        };
        if allowed {
            Ok(())
        } else {
            Err(UpgradeRefusal::Origin)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(list: &[&str]) -> UpgradePolicy {
        UpgradePolicy { origins: Origins::Only(list.iter().map(|s| s.to_string()).collect()) }
    }

    #[test]
    fn the_sip_subprotocol_is_required_among_others_in_any_case() {
        let p = UpgradePolicy { origins: Origins::Any };
        assert_eq!(p.check([], None), Err(UpgradeRefusal::NoSipProtocol));
        assert_eq!(p.check([&b"chat, sips"[..]], None), Err(UpgradeRefusal::NoSipProtocol));
        assert_eq!(p.check([&b"chat, SIP"[..]], None), Ok(()));
        assert_eq!(p.check([&b"chat"[..], &b"sip"[..]], None), Ok(()));
    }

    #[test]
    fn without_an_allowlist_browsers_are_refused_and_other_clients_accepted() {
        let p = UpgradePolicy::default();
        assert_eq!(p.check([&b"sip"[..]], None), Ok(()));
        assert_eq!(p.check([&b"sip"[..]], Some(b"https://evil.example")), Err(UpgradeRefusal::Origin));
    }

    #[test]
    fn an_allowlist_admits_its_origins_exactly() {
        let p = only(&["https://phone.example.com"]);
        assert_eq!(p.check([&b"sip"[..]], Some(b"https://PHONE.example.com")), Ok(()));
        assert_eq!(p.check([&b"sip"[..]], Some(b"https://phone.example.com:8443")), Err(UpgradeRefusal::Origin));
        assert_eq!(p.check([&b"sip"[..]], Some(b"http://phone.example.com")), Err(UpgradeRefusal::Origin));
        assert_eq!(p.check([&b"sip"[..]], None), Ok(()), "no Origin: no browser");
        assert_eq!(UpgradePolicy { origins: Origins::Any }.check([&b"sip"[..]], Some(b"https://x")), Ok(()));
    }

    #[test]
    fn every_refusal_has_its_own_label() {
        let labels: std::collections::HashSet<_> = UpgradeRefusal::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), UpgradeRefusal::ALL.len());
    }
}
