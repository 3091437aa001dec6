//! `[dns]`: where gateway names are looked up (RFC 3263) and how often the answers are refreshed.

use super::{ConfigError, Validator};
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;
use toml::Spanned;

/// `[dns]`, validated, with the DNS-named gateways of every trunk.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsSettings {
    /// Name servers to ask (`servers = ["IP:PORT", "IP"]`, port 53 by default). Default empty: those of
    /// `/etc/resolv.conf`.
    pub servers: Vec<SocketAddr>,
    /// How long one query waits for an answer before it is sent again or to the next server. Default 2 s: a
    /// resolver slower than that is better treated as failed (the last good answer stays in force).
    pub timeout: Duration,
    /// How many times a query is tried before the lookup counts as failed. Default 2.
    pub attempts: usize,
    /// Answers are refreshed no sooner than this after they arrived, whatever their TTL, and a failed lookup is
    /// retried after this. Default 5 s: a TTL of 0 must not turn into a query loop.
    pub min_refresh: Duration,
    /// Answers are refreshed at the latest this long after they arrived, whatever their TTL. Default 300 s, so a
    /// changed record is seen within five minutes even with a day-long TTL.
    pub max_refresh: Duration,
    /// The gateways to resolve, from the trunks' `gateways`.
    pub names: Vec<DnsName>,
}

/// One DNS-named gateway of a trunk.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsName {
    /// The trunk's index.
    pub trunk: sbc_proto::routing::TrunkId,
    /// The trunk's name, for logs.
    pub trunk_name: String,
    /// Its index in the trunk's `dns_gateways`.
    pub index: usize,
    /// What to resolve.
    pub gateway: sbc_proto::routing::DnsGateway,
    /// How TLS targets it resolves to are checked: the trunk's `tls`, with the looked-up domain as the certificate
    /// name unless `tls.server_name` says otherwise (RFC 5922).
    pub tls: crate::tls::ClientSettings,
}

impl Default for DnsSettings {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            timeout: Duration::from_secs(2),
            attempts: 2,
            min_refresh: Duration::from_secs(5),
            max_refresh: Duration::from_secs(300),
            names: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDns {
    servers: Option<Vec<Spanned<String>>>,
    timeout: Option<Spanned<String>>,
    attempts: Option<Spanned<usize>>,
    min_refresh: Option<Spanned<String>>,
    max_refresh: Option<Spanned<String>>,
}

impl Validator<'_> {
    pub(super) fn dns(&self, raw: Option<RawDns>) -> Result<DnsSettings, ConfigError> {
        let mut s = DnsSettings::default();
        let Some(raw) = raw else { return Ok(s) };
        for (i, server) in raw.servers.iter().flatten().enumerate() {
            let text = server.get_ref();
            let addr = text
                .parse::<SocketAddr>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                .map_err(|_| self.invalid(server.span(), &format!("dns.servers[{i}]"), "expected IP or IP:PORT"))?;
            s.servers.push(addr);
        }
        if let Some(t) = &raw.timeout {
            s.timeout = self.duration(t, "dns.timeout")?;
        }
        if let Some(a) = &raw.attempts {
            if *a.get_ref() == 0 {
                return Err(self.invalid(a.span(), "dns.attempts", "must be at least 1"));
            }
            s.attempts = *a.get_ref();
        }
        if let Some(m) = &raw.min_refresh {
            s.min_refresh = self.duration(m, "dns.min_refresh")?;
        }
        if let Some(m) = &raw.max_refresh {
            s.max_refresh = self.duration(m, "dns.max_refresh")?;
            if s.max_refresh < s.min_refresh {
                return Err(self.invalid(m.span(), "dns.max_refresh", "must not be shorter than dns.min_refresh"));
            }
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use std::path::Path;
    use std::time::Duration;

    const CARRIER: &str = "[[trunk]]\nname = \"carrier\"\ngateways = [\"udp:198.18.2.10:5060\", \
                           \"sip:carrier.example.net\", \"tls:tls.example.net:5061\"]\n";

    #[test]
    fn dns_named_gateways_are_listed_in_place_and_need_no_lookup_to_load() {
        let text = format!(
            "[dns]\nservers = [\"198.18.2.53\", \"198.18.2.54:5353\"]\ntimeout = \"1s\"\n\
                            min_refresh = \"1s\"\nmax_refresh = \"60s\"\n{CARRIER}"
        );
        let c = Config::parse(&text, Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}"));
        let d = &c.dns;
        assert_eq!(d.servers.iter().map(|s| s.to_string()).collect::<Vec<_>>(), ["198.18.2.53:53", "198.18.2.54:5353"]);
        assert_eq!(
            (d.timeout, d.min_refresh, d.max_refresh),
            (Duration::from_secs(1), Duration::from_secs(1), Duration::from_secs(60))
        );
        let t = &c.plan.trunks[0];
        assert_eq!(t.gateways.len(), 1);
        let positions: Vec<(usize, &str)> = t.dns_gateways.iter().map(|g| (g.position, g.host.as_str())).collect();
        assert_eq!(positions, [(1, "carrier.example.net"), (2, "tls.example.net")]);
        assert_eq!(d.names.len(), 2);
        assert_eq!(d.names[1].tls.server_name.as_deref(), Some("tls.example.net"));
    }

    #[test]
    fn bad_dns_keys_are_named() {
        for (text, says) in [
            ("[dns]\nservers = [\"resolver\"]\n", "dns.servers[0]"),
            ("[dns]\ntimeout = \"0s\"\n", "dns.timeout"),
            ("[dns]\nattempts = 0\n", "dns.attempts"),
            ("[dns]\nmin_refresh = \"10s\"\nmax_refresh = \"5s\"\n", "dns.max_refresh"),
            ("[dns]\nport = 53\n", "port"),
            ("[[trunk]]\nname = \"c\"\ngateways = [\"sip:bad_name.example\"]\n", "trunk[0].gateways[0]"),
        ] {
            let e = Config::parse(text, Path::new("t.toml")).expect_err(text).to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
