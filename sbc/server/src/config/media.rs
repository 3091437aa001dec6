//! `[media]`: media anchoring. Present: every call's media goes through the relay, and SDP carries only the
//! relay's addresses. Absent: SDP crosses untouched (signalling only).

use super::{ConfigError, Validator};
use relay_proto::session::{Interface, MediaConfig};
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use toml::Spanned;

/// Where the relay runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayMode {
    /// In the `sbc` process, on forwarding threads of its own (the default).
    Embedded,
    /// A standalone `media-relay` at this control address.
    Remote(SocketAddr),
}

/// `xdp`: the kernel fast path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpSetting {
    /// Native (driver) XDP, or fail to start.
    Native,
    /// Generic (skb) XDP, or fail to start.
    Generic,
    /// User space only.
    Off,
    /// Native, else generic, else user space only; the log and `sbc_media_xdp_mode` say which.
    Auto,
}

/// `[media]`.
#[derive(Debug, Clone)]
pub struct MediaSettings {
    /// `relay`: `"embedded"` (default) or `"tcp:ADDRESS:PORT"` of a standalone `media-relay --control`.
    pub relay: RelayMode,
    /// `interfaces`, `ports`, `quarantine`, `strict_source`: what the signalling side needs to anchor SDP.
    pub core: MediaConfig,
    /// `rtp_timeout`: a call with no packet on any of its media sockets this long is ended with BYE on both sides
    /// (release cause `rtp_timeout`). Default 60 s, long enough for hold without RTCP on most phones.
    pub rtp_timeout: Duration,
    /// `xdp`: `"auto"` (default), `"native"`, `"generic"` or `"off"`. The program attaches to the network devices
    /// that hold the `interfaces` addresses (embedded relay only).
    pub xdp: XdpSetting,
    /// `threads`: the embedded relay's forwarding threads, sessions spread over them. `None` (default): one per
    /// core this process may run on.
    pub threads: Option<std::num::NonZeroUsize>,
    /// `coalesce`: the embedded relay's wake-up coalescing under load (`media_relay::coalesce`); zero turns it off.
    pub coalesce: Duration,
    /// `ng`, `ng_ports`: rtpengine's NG control protocol answered by the embedded relay; `None` (default): off.
    pub ng: Option<NgSettings>,
}

/// `[media] ng`: Kamailio or OpenSIPS anchor their calls' media at the embedded relay over rtpengine's NG protocol.
#[derive(Debug, Clone)]
pub struct NgSettings {
    /// `ng`: the UDP address answering NG. No authentication (as rtpengine's): loopback or a management network.
    pub listen: SocketAddr,
    /// The NG calls' media: `interfaces` (NG's `direction` names them), `quarantine`, `strict_source` as the SBC's
    /// own calls, over `ng_ports`, a range apart from `ports` (checked at load), so that an NG call and an SBC call
    /// never take the same port of an interface.
    pub core: MediaConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMedia {
    relay: Option<Spanned<String>>,
    interfaces: Option<Spanned<Vec<RawInterface>>>,
    ports: Option<Spanned<String>>,
    quarantine: Option<Spanned<String>>,
    rtp_timeout: Option<Spanned<String>>,
    strict_source: Option<bool>,
    xdp: Option<Spanned<String>>,
    threads: Option<Spanned<i64>>,
    coalesce: Option<Spanned<String>>,
    ng: Option<Spanned<String>>,
    ng_ports: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInterface {
    name: String,
    address: Spanned<String>,
}

impl Validator<'_> {
    pub(super) fn media(&self, raw: Option<RawMedia>) -> Result<Option<MediaSettings>, ConfigError> {
        let Some(m) = raw else { return Ok(None) };
        let relay = match &m.relay {
            None => RelayMode::Embedded,
            Some(s) if s.get_ref() == "embedded" => RelayMode::Embedded,
            Some(s) => match s.get_ref().strip_prefix("tcp:").and_then(|a| a.parse().ok()) {
                Some(addr) => RelayMode::Remote(addr),
                None => {
                    return Err(self.invalid(
                        s.span(),
                        "media.relay",
                        "expected \"embedded\" or \"tcp:ADDRESS:PORT\" of a media-relay control socket",
                    ))
                }
            },
        };
        let Some(list) = m.interfaces else {
            let at = self.key_span("media", "interfaces");
            return Err(self.invalid(at, "media.interfaces", "required: the relay's address on each side"));
        };
        if list.get_ref().is_empty() {
            return Err(self.invalid(list.span(), "media.interfaces", "needs at least one interface"));
        }
        let mut interfaces = Vec::new();
        for (i, raw) in list.get_ref().iter().enumerate() {
            let address: IpAddr = raw.address.get_ref().parse().map_err(|_| {
                self.invalid(raw.address.span(), &format!("media.interfaces[{i}].address"), "expected an IP address")
            })?;
            if address.is_unspecified() {
                return Err(self.invalid(
                    raw.address.span(),
                    &format!("media.interfaces[{i}].address"),
                    "must be a real address: it goes into SDP",
                ));
            }
            interfaces.push(Interface { name: raw.name.clone(), address });
        }
        let (first_port, last_port) = match &m.ports {
            None => DEFAULT_PORTS,
            Some(s) => parse_ports(s.get_ref()).map_err(|e| self.invalid(s.span(), "media.ports", &e))?,
        };
        let quarantine = match &m.quarantine {
            None => Duration::from_secs(5),
            Some(s) => self.duration(s, "media.quarantine")?,
        };
        let rtp_timeout = match &m.rtp_timeout {
            None => Duration::from_secs(60),
            Some(s) => self.duration(s, "media.rtp_timeout")?,
        };
        let xdp = match m.xdp.as_ref().map(|s| (s.get_ref().as_str(), s.span())) {
            None | Some(("auto", _)) => XdpSetting::Auto,
            Some(("native", _)) => XdpSetting::Native,
            Some(("generic", _)) => XdpSetting::Generic,
            Some(("off", _)) => XdpSetting::Off,
            Some((_, span)) => {
                return Err(self.invalid(span, "media.xdp", "expected \"auto\", \"native\", \"generic\" or \"off\""))
            }
        };
        let threads = match &m.threads {
            None => None,
            Some(t) if matches!(relay, RelayMode::Remote(_)) => {
                return Err(self.invalid(
                    t.span(),
                    "media.threads",
                    "sets the embedded relay's threads: give a standalone media-relay `--threads` instead",
                ))
            }
            Some(t) => Some(
                usize::try_from(*t.get_ref())
                    .ok()
                    .and_then(std::num::NonZeroUsize::new)
                    .filter(|n| n.get() <= MAX_THREADS)
                    .ok_or_else(|| {
                        self.invalid(
                            t.span(),
                            "media.threads",
                            &format!("expected a number of forwarding threads from 1 to {MAX_THREADS}"),
                        )
                    })?,
            ),
        };
        let coalesce = match &m.coalesce {
            None => media_relay::coalesce::DEFAULT,
            Some(s) if matches!(relay, RelayMode::Remote(_)) => {
                return Err(self.invalid(
                    s.span(),
                    "media.coalesce",
                    "sets the embedded relay's coalescing: give a standalone media-relay `--coalesce` instead",
                ))
            }
            Some(s) => {
                super::parse_duration(s.get_ref()).filter(|d| *d <= media_relay::coalesce::MAX).ok_or_else(|| {
                    self.invalid(
                        s.span(),
                        "media.coalesce",
                        "expected a duration from \"0s\" (off) to \"5ms\", like \"500us\"",
                    )
                })?
            }
        };
        let core = MediaConfig {
            interfaces,
            first_port,
            last_port,
            quarantine,
            strict: m.strict_source.unwrap_or(true),
            cname_seed: cname_seed(),
            dtls_fingerprint: None,
        };
        let ng = self.ng(m.ng.as_ref(), m.ng_ports.as_ref(), relay, &core)?;
        Ok(Some(MediaSettings { relay, core, rtp_timeout, xdp, threads, coalesce, ng }))
    }

    /// `ng` and `ng_ports`: both or neither, the embedded relay only, ports apart from `ports`.
    fn ng(
        &self,
        listen: Option<&Spanned<String>>,
        ports: Option<&Spanned<String>>,
        relay: RelayMode,
        core: &MediaConfig,
    ) -> Result<Option<NgSettings>, ConfigError> {
        let Some(listen) = listen else {
            if let Some(p) = ports {
                return Err(self.invalid(
                    p.span(),
                    "media.ng_ports",
                    "is the port range of `media.ng`, which is not set",
                ));
            }
            return Ok(None);
        };
        if let RelayMode::Remote(_) = relay {
            return Err(self.invalid(
                listen.span(),
                "media.ng",
                "answers NG with the embedded relay: a standalone media-relay takes `--ng ADDR` instead \
                 (media.relay is remote)",
            ));
        }
        let addr: SocketAddr = listen
            .get_ref()
            .parse()
            .map_err(|_| self.invalid(listen.span(), "media.ng", "expected ADDRESS:PORT, e.g. \"127.0.0.1:2223\""))?;
        let Some(ports) = ports else {
            let at = listen.span();
            return Err(self.invalid(
                at,
                "media.ng_ports",
                "required with media.ng: the NG calls' port range, apart from media.ports",
            ));
        };
        let (first, last) =
            parse_ports(ports.get_ref()).map_err(|e| self.invalid(ports.span(), "media.ng_ports", &e))?;
        if first <= core.last_port && core.first_port <= last {
            return Err(self.invalid(
                ports.span(),
                "media.ng_ports",
                &format!(
                    "{first}-{last} overlaps media.ports ({}-{}): NG calls and the SBC's own calls need ranges apart",
                    core.first_port, core.last_port
                ),
            ));
        }
        let core = MediaConfig { first_port: first, last_port: last, cname_seed: cname_seed(), ..core.clone() };
        Ok(Some(NgSettings { listen: addr, core }))
    }
}

/// Secret randomness for the CNAME tokens of calls (relay-proto's `cname`), drawn from the OS through std's
/// hasher keys; apart from the core's identifier seed, whose generator's output (tags, Call-IDs) peers see.
fn cname_seed() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one("cname seed")
}

/// The most forwarding threads `threads` takes: far above any core count the relay was measured on; a larger
/// number is a typo.
pub const MAX_THREADS: usize = 1024;

/// `ports` when not given: 8 192 port pairs below Linux's default ephemeral range (32768-60999), from which the
/// host's client sockets take their ports: a pool inside it finds some of its ports taken (`bind_failed`).
pub const DEFAULT_PORTS: (u16, u16) = (16384, 32767);

/// The part of the relay's port range `first..=last` inside the host's ephemeral range, given as
/// /proc/sys/net/ipv4/ip_local_port_range reads (`"32768\t60999"`); `None` when they do not overlap or the text
/// does not parse.
pub fn ephemeral_overlap(first: u16, last: u16, ip_local_port_range: &str) -> Option<(u16, u16)> {
    let mut it = ip_local_port_range.split_whitespace().map(str::parse::<u16>);
    let (Some(Ok(lo)), Some(Ok(hi))) = (it.next(), it.next()) else {
        return None;
    };
    let (a, b) = (first.max(lo), last.min(hi));
    (a <= b).then_some((a, b))
}

/// `"16384-32767"`: at least one even/odd pair, ports 1024 and up.
fn parse_ports(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s.split_once('-').ok_or_else(|| format!("\"{s}\": expected FIRST-LAST, e.g. \"16384-32767\""))?;
    let (a, b): (u16, u16) = match (a.trim().parse(), b.trim().parse()) {
        (Ok(a), Ok(b)) => (a, b),
        _ => return Err(format!("\"{s}\": ports are numbers from 1024 to 65535")),
    };
    if a < 1024 || b < a {
        return Err(format!("\"{s}\": the range must start at 1024 or above and not be reversed"));
    }
    let first_even = a + (a % 2);
    if first_even >= b {
        return Err(format!("\"{s}\": holds no RTP/RTCP pair (an even port and the odd one after it)"));
    }
    Ok((a, b))
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    fn parse(t: &str) -> Result<Config, crate::config::ConfigError> {
        Config::parse(t, Path::new("test.toml"))
    }

    #[test]
    fn overlap_with_the_ephemeral_range() {
        use super::{ephemeral_overlap, DEFAULT_PORTS};
        let linux = "32768\t60999\n";
        assert_eq!(ephemeral_overlap(DEFAULT_PORTS.0, DEFAULT_PORTS.1, linux), None);
        assert_eq!(ephemeral_overlap(30000, 39999, linux), Some((32768, 39999)));
        assert_eq!(ephemeral_overlap(40000, 49999, linux), Some((40000, 49999)));
        assert_eq!(ephemeral_overlap(60000, 65535, linux), Some((60000, 60999)));
        assert_eq!(ephemeral_overlap(30000, 39999, "garbage"), None);
    }

    #[test]
    fn media_section_with_defaults() {
        let c = parse("[media]\ninterfaces = [{ name = \"a\", address = \"198.18.1.1\" }]\n").unwrap();
        let m = c.media.expect("media on");
        assert_eq!((m.core.first_port, m.core.last_port), (16384, 32767));
        assert_eq!(m.relay, super::RelayMode::Embedded);
        assert!(m.core.strict);
        assert_eq!(m.rtp_timeout, std::time::Duration::from_secs(60));
        assert_eq!(m.threads, None, "one per core, decided at start");
        let c = parse("[media]\ninterfaces = [{ name = \"a\", address = \"198.18.1.1\" }]\nthreads = 2\n").unwrap();
        assert_eq!(c.media.expect("media on").threads.map(|n| n.get()), Some(2));
    }

    #[test]
    fn coalescing_defaults_on_and_zero_turns_it_off() {
        let media = "[media]\ninterfaces = [{ name = \"a\", address = \"198.18.1.1\" }]\n";
        let m = parse(media).unwrap().media.expect("media on");
        assert_eq!(m.coalesce, media_relay::coalesce::DEFAULT);
        for (value, us) in [("\"0s\"", 0), ("\"200us\"", 200), ("\"5ms\"", 5000)] {
            let m = parse(&format!("{media}coalesce = {value}\n")).unwrap().media.expect("media on");
            assert_eq!(m.coalesce, std::time::Duration::from_micros(us), "{value}");
        }
    }

    #[test]
    fn bad_media_values_name_their_key_and_line() {
        for (text, key) in [
            ("[media]\ninterfaces = []\n", "media.interfaces"),
            ("[media]\ninterfaces = [{ name = \"a\", address = \"nope\" }]\n", "media.interfaces[0].address"),
            ("[media]\ninterfaces = [{ name = \"a\", address = \"0.0.0.0\" }]\n", "media.interfaces[0].address"),
            (
                "[media]\ninterfaces = [{ name = \"a\", address = \"10.0.0.1\" }]\nports = \"40001-40001\"\n",
                "media.ports",
            ),
            ("[media]\ninterfaces = [{ name = \"a\", address = \"10.0.0.1\" }]\nports = \"100-200\"\n", "media.ports"),
            (
                "[media]\ninterfaces = [{ name = \"a\", address = \"10.0.0.1\" }]\nrelay = \"udp:1.2.3.4\"\n",
                "media.relay",
            ),
            ("[media]\nports = \"30000-30010\"\n", "media.interfaces"),
            ("[media]\ninterfaces = [{ name = \"a\", address = \"10.0.0.1\" }]\nxdp = \"fast\"\n", "media.xdp"),
            ("[media]\ninterfaces = [{ name = \"a\", address = \"10.0.0.1\" }]\nthreads = 0\n", "media.threads"),
            ("[media]\ninterfaces = [{ name = \"a\", address = \"10.0.0.1\" }]\nthreads = -2\n", "media.threads"),
            (
                "[media]\ninterfaces = [{ name = \"a\", address = \"10.0.0.1\" }]\ncoalesce = \"6ms\"\n",
                "media.coalesce",
            ),
            (
                "[media]\ninterfaces = [{ name = \"a\", address = \"10.0.0.1\" }]\ncoalesce = \"fast\"\n",
                "media.coalesce",
            ),
            (
                "[media]\ninterfaces = [{ name = \"a\", address = \"10.0.0.1\" }]\nrelay = \"tcp:127.0.0.1:2223\"\n\
                 coalesce = \"1ms\"\n",
                "media.coalesce",
            ),
            (
                "[media]\ninterfaces = [{ name = \"a\", address = \"10.0.0.1\" }]\nrelay = \"tcp:127.0.0.1:2223\"\n\
                 threads = 2\n",
                "media.threads",
            ),
        ] {
            let e = parse(text).expect_err(text).to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn ng_listener_takes_a_port_range_apart_from_the_sbc_calls() {
        let media = "[media]\ninterfaces = [{ name = \"a\", address = \"198.18.1.1\" }]\nports = \"20000-20999\"\n";
        let c = parse(&format!("{media}ng = \"127.0.0.1:2223\"\nng_ports = \"30000-39999\"\n")).unwrap();
        let ng = c.media.expect("media on").ng.expect("ng on");
        assert_eq!(ng.listen, "127.0.0.1:2223".parse::<std::net::SocketAddr>().unwrap());
        assert_eq!((ng.core.first_port, ng.core.last_port), (30000, 39999));
        assert_eq!(ng.core.interfaces[0].name, "a", "NG's direction names the [media] interfaces");
        assert!(parse(media).unwrap().media.expect("media on").ng.is_none(), "off by default");
        for (extra, key, says) in [
            ("ng = \"127.0.0.1:2223\"\nng_ports = \"20998-21999\"\n", "media.ng_ports", "overlaps media.ports"),
            ("ng = \"127.0.0.1:2223\"\n", "media.ng_ports", "required"),
            ("ng_ports = \"30000-39999\"\n", "media.ng_ports", "not set"),
            ("ng = \"localhost\"\nng_ports = \"30000-39999\"\n", "media.ng", "ADDRESS:PORT"),
            (
                "relay = \"tcp:127.0.0.1:2224\"\nng = \"127.0.0.1:2223\"\nng_ports = \"30000-39999\"\n",
                "media.ng",
                "remote",
            ),
        ] {
            let e = parse(&format!("{media}{extra}")).expect_err(extra).to_string();
            assert!(e.contains(key) && e.contains(says), "{extra}: {e}");
        }
    }

    #[test]
    fn trunk_srtp_policies_are_read_and_need_media() {
        use relay_proto::sdes::SrtpMode;
        let media = "[media]\ninterfaces = [{ name = \"a\", address = \"198.18.1.1\" }]\n";
        let trunks = "[[trunk]]\nname = \"pbx\"\nmatch = { source = [\"198.18.1.10\"] }\nsrtp = \"required\"\n\
                      [[trunk]]\nname = \"carrier\"\ngateways = [\"udp:198.18.2.10:5060\"]\nsrtp = \"optional\"\n\
                      [[trunk]]\nname = \"plain\"\ngateways = [\"udp:198.18.2.11:5060\"]\n";
        let c = parse(&format!("{media}{trunks}")).unwrap();
        let modes: Vec<SrtpMode> = c.plan.trunks.iter().map(|t| t.srtp).collect();
        assert_eq!(modes, [SrtpMode::Required, SrtpMode::Optional, SrtpMode::Off]);
        let e = parse(trunks).expect_err("srtp without [media]").to_string();
        assert!(e.contains("test.toml:4: trunk[0].srtp") && e.contains("needs [media]"), "{e}");
        assert!(e.contains("trunk[1].srtp"), "every such trunk is named: {e}");
        let bad =
            format!("{media}[[trunk]]\nname = \"pbx\"\nmatch = {{ source = [\"198.18.1.10\"] }}\nsrtp = \"sdes\"\n");
        let e = parse(&bad).expect_err("a bad value").to_string();
        assert!(e.contains("trunk[0].srtp") && e.contains("\"off\", \"optional\" or \"required\""), "{e}");
        assert!(parse("[[trunk]]\nname = \"p\"\ngateways = [\"udp:198.18.2.11:5060\"]\nsrtp = \"off\"\n").is_ok());
    }
}
