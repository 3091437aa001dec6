//! `[edge]` and `[overload]`: what protects the public side (DESIGN.md "The public edge"). The decisions are
//! `sbc_proto::policy::edge` and `::overload`; this module only reads their settings.

use super::{ConfigError, Validator};
use ipnet::IpNet;
use sbc_proto::policy::{EdgeConfig, OverloadConfig, Scanners, Threshold};
use serde::Deserialize;
use toml::Spanned;

/// `[edge]` and `[overload]`, validated.
#[derive(Debug, Clone, Default)]
pub struct EdgeSettings {
    /// Per-source rates, offences and bans.
    pub guard: EdgeConfig,
    /// `edge.scanners`: User-Agent substrings of scanners.
    pub scanners: Scanners,
    /// `[overload]`.
    pub overload: OverloadConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEdge {
    enabled: Option<bool>,
    allow: Option<Vec<Spanned<String>>>,
    rate_trusted: Option<u32>,
    rate_unknown: Option<u32>,
    ban_time: Option<Spanned<String>>,
    auth_failures: Option<u32>,
    auth_window: Option<Spanned<String>>,
    malformed: Option<u32>,
    malformed_window: Option<Spanned<String>>,
    scanners: Option<Vec<String>>,
    max_sources: Option<Spanned<usize>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOverload {
    enabled: Option<bool>,
    queue_delay: Option<Spanned<String>>,
    cpu: Option<Spanned<f64>>,
    max_wait: Option<Spanned<String>>,
    retry_after: Option<Spanned<u32>>,
}

impl Validator<'_> {
    pub(super) fn edge(
        &self,
        edge: Option<RawEdge>,
        overload: Option<RawOverload>,
    ) -> Result<EdgeSettings, ConfigError> {
        let mut out = EdgeSettings::default();
        if let Some(e) = edge {
            let g = &mut out.guard;
            if let Some(on) = e.enabled {
                g.enabled = on;
            }
            if let Some(list) = e.allow {
                g.allow = list
                    .iter()
                    .enumerate()
                    .map(|(i, s)| net(s.get_ref()).map_err(|m| self.invalid(s.span(), &format!("edge.allow[{i}]"), &m)))
                    .collect::<Result<_, _>>()?;
            }
            // 0 switches a rate limit off.
            if let Some(r) = e.rate_trusted {
                g.rate_trusted = (r > 0).then_some(r);
            }
            if let Some(r) = e.rate_unknown {
                g.rate_unknown = (r > 0).then_some(r);
            }
            if let Some(s) = &e.ban_time {
                g.ban_time = self.duration(s, "edge.ban_time")?;
            }
            if let Some(n) = e.auth_failures {
                g.auth_failures.count = n;
            }
            if let Some(s) = &e.auth_window {
                g.auth_failures.window = self.duration(s, "edge.auth_window")?;
            }
            if let Some(n) = e.malformed {
                g.malformed.count = n;
            }
            if let Some(s) = &e.malformed_window {
                g.malformed = Threshold { window: self.duration(s, "edge.malformed_window")?, ..g.malformed };
            }
            if let Some(list) = &e.scanners {
                out.scanners = Scanners::new(list);
            }
            if !g.enabled {
                // Off means off: no scanner check either.
                out.scanners = Scanners::new::<&str>(&[]);
            }
            if let Some(s) = e.max_sources {
                if !(16..=10_000_000).contains(s.get_ref()) {
                    return Err(self.invalid(s.span(), "edge.max_sources", "must be between 16 and 10000000"));
                }
                g.max_sources = *s.get_ref();
            }
        }
        if let Some(o) = overload {
            let c = &mut out.overload;
            if let Some(on) = o.enabled {
                c.enabled = on;
            }
            if let Some(s) = &o.queue_delay {
                c.queue_delay = self.duration(s, "overload.queue_delay")?;
            }
            if let Some(s) = &o.cpu {
                let v = *s.get_ref();
                if !(v > 0.0 && v <= 1024.0) {
                    return Err(self.invalid(
                        s.span(),
                        "overload.cpu",
                        "expected cores, e.g. 0.9 (of one core) or 1.8",
                    ));
                }
                c.cpu = Some(v);
            }
            if let Some(s) = &o.max_wait {
                let w = self.duration(s, "overload.max_wait")?;
                if w < c.queue_delay || w > std::time::Duration::from_secs(30) {
                    return Err(self.invalid(
                        s.span(),
                        "overload.max_wait",
                        "must be at least overload.queue_delay and at most 30s",
                    ));
                }
                c.max_wait = w;
            } else {
                // A longer queue_delay given alone keeps its room: five times it, the default's proportion.
                c.max_wait = c.max_wait.max(c.queue_delay * 5);
            }
            if let Some(s) = &o.retry_after {
                if !(1..=3600).contains(s.get_ref()) {
                    return Err(self.invalid(s.span(), "overload.retry_after", "seconds, between 1 and 3600"));
                }
                c.retry_after = *s.get_ref();
            }
        }
        Ok(out)
    }
}

/// `198.18.1.0/24`, or one address (`198.18.1.10`, `2001:db8::1`).
fn net(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("\"{s}\": expected an address or a network (198.18.1.0/24)"))
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;
    use std::time::Duration;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("sbc.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_protect_without_configuration() {
        let c = parse("").expect("empty config");
        assert_eq!(c.edge.guard.rate_unknown, Some(30));
        assert_eq!(c.edge.guard.rate_trusted, None);
        assert_eq!(c.edge.guard.ban_time, Duration::from_secs(900));
        assert!(c.edge.scanners.matches(b"friendly-scanner"));
        assert_eq!(c.edge.overload.queue_delay, Duration::from_millis(20));
    }

    #[test]
    fn every_key_is_read() {
        let c = parse(
            "[edge]\nallow = [\"198.18.3.0/24\", \"2001:db8::1\"]\nrate_trusted = 2000\nrate_unknown = 0\n\
             ban_time = \"10m\"\nauth_failures = 3\nauth_window = \"5m\"\nmalformed = 20\nmalformed_window = \"10s\"\n\
             scanners = [\"evil\"]\nmax_sources = 1000\n[overload]\nqueue_delay = \"50ms\"\ncpu = 0.9\nretry_after = 5\n\
             max_wait = \"250ms\"\n",
        )
        .expect("valid");
        let g = &c.edge.guard;
        assert_eq!(g.allow.len(), 2);
        assert_eq!((g.rate_trusted, g.rate_unknown), (Some(2000), None));
        assert_eq!(g.ban_time, Duration::from_secs(600));
        assert_eq!((g.auth_failures.count, g.auth_failures.window), (3, Duration::from_secs(300)));
        assert_eq!((g.malformed.count, g.malformed.window), (20, Duration::from_secs(10)));
        assert!(c.edge.scanners.matches(b"Evil/1.0") && !c.edge.scanners.matches(b"friendly-scanner"));
        assert_eq!(g.max_sources, 1000);
        assert_eq!(c.edge.overload.queue_delay, Duration::from_millis(50));
        assert_eq!(c.edge.overload.cpu, Some(0.9));
        assert_eq!(c.edge.overload.retry_after, 5);
        assert_eq!(c.edge.overload.max_wait, Duration::from_millis(250));
    }

    #[test]
    fn bad_values_name_the_key() {
        for (text, key) in [
            ("[edge]\nallow = [\"nonsense\"]\n", "edge.allow[0]"),
            ("[edge]\nban_time = \"forever\"\n", "edge.ban_time"),
            ("[edge]\nmax_sources = 1\n", "edge.max_sources"),
            ("[overload]\ncpu = -1.0\n", "overload.cpu"),
            ("[overload]\nmax_wait = \"5ms\"\n", "overload.max_wait"),
            ("[overload]\nretry_after = 0\n", "overload.retry_after"),
        ] {
            let e = parse(text).expect_err(text);
            assert!(e.contains(key), "{text}: {e}");
        }
        assert!(parse("[edge]\nfrobnicate = 1\n").expect_err("unknown key").contains("frobnicate"));
    }

    #[test]
    fn both_can_be_switched_off() {
        let c = parse("[edge]\nenabled = false\n[overload]\nenabled = false\n").expect("valid");
        assert!(!c.edge.guard.enabled && !c.edge.overload.enabled);
        assert!(!c.edge.scanners.matches(b"friendly-scanner"), "no scanner check with the guard off");
    }
}
