//! `[hep]`: copies of every SIP message and per-call media reports to a Homer or SIP3 collector, in HEP v3.

use super::{ConfigError, Validator};
use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use toml::Spanned;

/// `[hep]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct HepSettings {
    /// Where captures go: `udp:HOST:PORT` (one datagram per capture, what Homer listens on by default, port
    /// 9060) or `tcp:HOST:PORT` (a connection kept open and reopened when it breaks). Required.
    pub collector: HepCollector,
    /// The capture agent id (HEP chunk 0x000c), so the collector tells this SBC from its other agents. Default 2001.
    pub agent_id: u32,
    /// The collector's password (HEP chunk 0x000e), read from the environment variable `password_env` names.
    /// Default none: HEP packets carry no key.
    pub password: Option<HepPassword>,
    /// Captures waiting for the sender, at most: more are dropped and counted in `sbc_hep_dropped_total`, so a
    /// slow or absent collector never holds a call up. Default 10000 (about 2 s of a busy box's signalling).
    pub queue: usize,
}

/// The collector's address and transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HepCollector {
    /// UDP (`false`) or TCP (`true`).
    pub tcp: bool,
    /// The collector's address.
    pub addr: SocketAddr,
}

/// The collector's password; never shown in logs or debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct HepPassword(pub String);

impl fmt::Debug for HepPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HepPassword(..)")
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHep {
    collector: Option<Spanned<String>>,
    agent_id: Option<Spanned<i64>>,
    password_env: Option<Spanned<String>>,
    queue: Option<Spanned<i64>>,
}

impl Validator<'_> {
    pub(super) fn hep(&self, raw: Option<Spanned<RawHep>>) -> Result<Option<HepSettings>, ConfigError> {
        let Some(raw) = raw else { return Ok(None) };
        let whole = raw.span();
        let raw = raw.into_inner();
        let Some(c) = raw.collector else {
            return Err(self.invalid(whole, "hep.collector", "needed: \"udp:HOST:PORT\" or \"tcp:HOST:PORT\""));
        };
        let collector = parse_collector(c.get_ref()).ok_or_else(|| {
            self.invalid(
                c.span(),
                "hep.collector",
                "expected \"udp:HOST:PORT\" or \"tcp:HOST:PORT\", HOST an IP address",
            )
        })?;
        let agent_id = match raw.agent_id {
            None => 2001,
            Some(a) => u32::try_from(*a.get_ref())
                .map_err(|_| self.invalid(a.span(), "hep.agent_id", "must be between 0 and 4294967295"))?,
        };
        let queue = match raw.queue {
            None => 10_000,
            Some(q) if (1..=1_000_000).contains(q.get_ref()) => *q.get_ref() as usize,
            Some(q) => return Err(self.invalid(q.span(), "hep.queue", "must be between 1 and 1000000")),
        };
        let password = match raw.password_env {
            None => None,
            Some(var) => {
                let base = self.path.parent().unwrap_or(std::path::Path::new(""));
                match super::secret::read("password", Some(&var), None, "hep", var.span(), base) {
                    Ok(p) => Some(HepPassword(p)),
                    Err((span, key, message)) => return Err(self.invalid(span, &key, &message)),
                }
            }
        };
        Ok(Some(HepSettings { collector, agent_id, password, queue }))
    }
}

fn parse_collector(s: &str) -> Option<HepCollector> {
    let (scheme, addr) = s.split_once(':')?;
    let tcp = match scheme {
        "udp" => false,
        "tcp" => true,
        _ => return None,
    };
    Some(HepCollector { tcp, addr: addr.parse().ok()? })
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError};
    use std::path::Path;

    fn parse(t: &str) -> Result<Config, ConfigError> {
        Config::parse(t, Path::new("sbc.toml"))
    }

    #[test]
    fn hep_defaults_and_every_key() {
        assert_eq!(parse("").unwrap().hep, None);
        let h = parse("[hep]\ncollector = \"udp:198.18.3.9:9060\"\n").unwrap().hep.unwrap();
        assert_eq!(
            (h.collector.tcp, h.collector.addr.to_string(), h.agent_id, h.queue),
            (false, "198.18.3.9:9060".into(), 2001, 10_000)
        );
        assert_eq!(h.password, None);
        std::env::set_var("SBC_TEST_HEP_PW", "hep-secret");
        let h = parse(
            "[hep]\ncollector = \"tcp:[2001:db8::9]:9061\"\nagent_id = 7\nqueue = 50\npassword_env = \"SBC_TEST_HEP_PW\"\n",
        )
        .unwrap()
        .hep
        .unwrap();
        assert_eq!((h.collector.tcp, h.collector.addr.port(), h.agent_id, h.queue), (true, 9061, 7, 50));
        assert_eq!(h.password.as_ref().map(|p| p.0.as_str()), Some("hep-secret"));
        assert!(!format!("{h:?}").contains("hep-secret"), "the password is never shown");
    }

    #[test]
    fn bad_hep_values_name_their_key_and_line() {
        for (text, expected) in [
            ("[hep]\nagent_id = 1\n", "sbc.toml:1: hep.collector: needed"),
            ("[hep]\ncollector = \"sctp:1.2.3.4:9060\"\n", "sbc.toml:2: hep.collector: expected"),
            ("[hep]\ncollector = \"udp:homer:9060\"\n", "sbc.toml:2: hep.collector: expected"),
            ("[hep]\ncollector = \"udp:1.2.3.4:9060\"\nagent_id = -1\n", "sbc.toml:3: hep.agent_id: must be"),
            ("[hep]\ncollector = \"udp:1.2.3.4:9060\"\n\nqueue = 0\n", "sbc.toml:4: hep.queue: must be"),
            (
                "[hep]\ncollector = \"udp:1.2.3.4:9060\"\npassword_env = \"SBC_TEST_HEP_UNSET\"\n",
                "sbc.toml:3: hep.password_env: environment variable SBC_TEST_HEP_UNSET is not set",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.starts_with(expected), "{text}: {e}");
        }
    }
}
