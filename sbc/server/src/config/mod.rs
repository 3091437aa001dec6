//! The configuration file: TOML into typed structs, validated at load. Unknown keys are errors; every error names
//! the file, the line and the key. `config/README.md` documents every key; this module is the authority.
//!
//! This file holds the top level, `[sip]`, `[log]` and `[api]`. `trunk` validates each `[[trunk]]`; `routing`
//! validates `[[route]]` and `[calls]` and builds the [`Plan`] from all three.

mod dns;
mod edge;
mod ha;
mod hep;
mod media;
mod registrar;
mod routing;
mod secret;
mod tls;
mod trunk;
mod ws;

pub use dns::{DnsName, DnsSettings};
pub use edge::EdgeSettings;
pub use ha::{HaMode, HaSettings, HeartbeatPath, Vip, VipGroup};
pub use hep::{HepCollector, HepPassword, HepSettings};
pub use media::{ephemeral_overlap, MediaSettings, NgSettings, RelayMode, XdpSetting, DEFAULT_PORTS};
pub use tls::DEFAULT_RELOAD_EVERY as DEFAULT_TLS_RELOAD_EVERY;

use crate::transport::stream::StreamLimits;
use sbc_proto::routing::Plan;
use sbc_proto::transport::Transport;
use serde::Deserialize;
use std::cell::OnceCell;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;

/// At most this many errors are printed by one [`ConfigError::Many`]; the rest are counted.
const MAX_ERRORS_SHOWN: usize = 50;

/// A configuration error: where, and what.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML does not parse or does not fit the schema (unknown key, wrong type, missing key).
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser said.
        message: String,
    },
    /// A value that parses but is not acceptable.
    #[error("{path}:{line}: {key}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the value.
        line: usize,
        /// The key, dotted (`sip.listen[1]`).
        key: String,
        /// What is wrong.
        message: String,
    },
    /// More than one error, in file order (values are checked past the first error, so one run of `sbc
    /// check-config` shows them all). Never holds another `Many`.
    #[error("{}", ManyErrors(.0))]
    Many(Vec<ConfigError>),
}

impl ConfigError {
    /// One error as itself, several as [`Many`](Self::Many) sorted by line. `errors` must not be empty.
    fn from_list(mut errors: Vec<ConfigError>) -> Self {
        if errors.len() == 1 {
            return errors.remove(0);
        }
        errors.sort_by_key(ConfigError::line);
        Self::Many(errors)
    }

    /// The line the error is on (0 when it has none).
    pub fn line(&self) -> usize {
        match self {
            Self::Read { .. } => 0,
            Self::Syntax { line, .. } | Self::Invalid { line, .. } => *line,
            Self::Many(errors) => errors.first().map_or(0, ConfigError::line),
        }
    }
}

struct ManyErrors<'a>(&'a [ConfigError]);

impl fmt::Display for ManyErrors<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().take(MAX_ERRORS_SHOWN).enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        if self.0.len() > MAX_ERRORS_SHOWN {
            write!(f, "\n... and {} more errors", self.0.len() - MAX_ERRORS_SHOWN)?;
        }
        Ok(())
    }
}

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[sip]`: signalling listeners and limits.
    pub sip: SipConfig,
    /// `[log]`: log format and level.
    pub log: LogConfig,
    /// `[api]`: the admin HTTP API; absent means no API.
    pub api: Option<ApiConfig>,
    /// `[[trunk]]`, `[[route]]` and `[calls]`: trunks, routes and call limits. Default: no trunks and no routes,
    /// so every call comes from an unknown source (answered 403 unless `calls.unknown_source = "drop"`).
    /// Shared: the plan is immutable, and a reload builds a new one.
    pub plan: Arc<Plan>,
    /// `[cdr] path`: the file CDRs are appended to, one JSON object per line. Default: none, CDRs go to the log
    /// only. A relative path is taken from the config file's directory.
    pub cdr_path: Option<PathBuf>,
    /// `[media]`: media anchoring through the relay; absent, SDP crosses untouched.
    pub media: Option<MediaSettings>,
    /// `[ha]`: a hot-standby pair; absent, the box serves alone.
    pub ha: Option<HaSettings>,
    /// `[edge]` and `[overload]`: per-source limits and bans, scanners, overload control.
    pub edge: EdgeSettings,
    /// The `tcp:` and `tls:` gateways of every trunk, which the SBC opens connections to.
    pub dial: Vec<DialSpec>,
    /// `[dns]` and the gateways named by DNS, which the SBC resolves (RFC 3263).
    pub dns: DnsSettings,
    /// `drain_deadline` (top level): how long a drain (SIGTERM, `POST /drain` without `deadline`) lets the calls
    /// up end by themselves before it ends the rest with BYE. Default [`DEFAULT_DRAIN_DEADLINE`]. Top level, not
    /// `[api]`: SIGTERM drains also without an API.
    pub drain_deadline: Duration,
    /// `[hep]`: every SIP message and per-call media reports to a Homer/SIP3 collector; absent, nothing is sent.
    pub hep: Option<HepSettings>,
    /// `[registrar]`: the SBC as registrar for the users listed there; absent, REGISTER is answered 405.
    pub registrar: Option<Arc<sbc_proto::registrar::RegistrarConfig>>,
}

/// How long a drain waits for calls by default: 5 minutes, long enough for most calls to end, short enough for a
/// maintenance window (systemd's `TimeoutStopSec` must be longer).
pub const DEFAULT_DRAIN_DEADLINE: Duration = Duration::from_secs(300);
/// The longest `drain_deadline` accepted: a day.
pub const MAX_DRAIN_DEADLINE: Duration = Duration::from_secs(86_400);

/// A gateway reached over a connection we open (`tcp:` or `tls:` in a trunk's `gateways`).
#[derive(Debug, Clone, PartialEq)]
pub struct DialSpec {
    /// The trunk's name.
    pub trunk: String,
    /// TCP or TLS.
    pub transport: Transport,
    /// The gateway's address.
    pub addr: SocketAddr,
    /// For TLS: how its certificate is checked, and our client certificate (the trunk's `tls`).
    pub tls: Option<crate::tls::ClientSettings>,
}

/// `[sip]`.
#[derive(Debug, Clone)]
pub struct SipConfig {
    /// Where to listen, e.g. `udp:127.0.0.1:5060`. Default: UDP and TCP on 127.0.0.1:5060, so a fresh install
    /// exposes nothing beyond the host.
    pub listen: Vec<ListenAddr>,
    /// Largest SIP message accepted, in bytes. Default 65535: the largest UDP datagram; anything larger over TCP
    /// is an attack or a bug.
    pub max_message_size: usize,
    /// A TCP connection idle this long in both directions is closed. Default 5 minutes: longer than any
    /// keep-alive interval in common use (RFC 5626 suggests 120 s for TCP).
    pub tcp_idle_timeout: Duration,
    /// At most this many TCP connections at once; more are closed at accept. Default 1024.
    pub tcp_max_connections: usize,
    /// At most this many TCP connections open from one source that is no trunk (an IPv4 address, an IPv6 /64);
    /// more are reset at accept. Default 32: a PBX or a NAT with several devices fits, a flood does not.
    pub tcp_max_connections_per_source: usize,
    /// The same for an address of a trunk's `match.source`. Default 256: trunks are known peers that may spread
    /// their calls over many connections.
    pub tcp_max_connections_per_trunk_source: usize,
    /// Of `tcp_max_connections`, how many are kept for trunk sources: others are refused once only these are
    /// left, so a flood from many addresses cannot lock the trunks out. Default a quarter of the cap.
    pub tcp_trunk_reserve: usize,
    /// An accepted TCP connection must deliver a whole first message within this time. Default 10 s: a client
    /// connects to send a request, so anything slower is a stalled or hostile peer.
    pub tcp_first_message_timeout: Duration,
    /// Once the first byte of a message arrived, the whole message must arrive within this time (slowloris); one
    /// write to a peer must also complete within it. Default 5 s: a 64 KiB message at 128 kbit/s.
    pub tcp_message_timeout: Duration,
    /// Our Server header. Default `sbc/<version>`.
    pub user_agent: String,
    /// `[sip.tls]`: the TLS listeners' certificate, key and client CA. Required with a `tls:` or `wss:` listener.
    pub tls: Option<crate::tls::ServerSettings>,
    /// `[sip.ws]`: which WebSocket upgrades the `ws:` and `wss:` listeners accept (the Origin allowlist).
    pub ws: crate::transport::stream::UpgradePolicy,
    /// Opening a connection to a `tcp:` or `tls:` gateway (connect and TLS handshake) takes at most this long;
    /// then it is a transport error and the call fails over. Default 5 s.
    pub connect_timeout: Duration,
    /// RFC 5626 keep-alive pings (CRLF CRLF) on the connections we open, at this interval; a gateway that sends
    /// nothing back within 10 s of a ping is dropped, and the next message opens a new connection. Default 30 s;
    /// `None` (`"off"`): no pings.
    pub connection_keepalive: Option<Duration>,
}

impl SipConfig {
    /// The limits of stream connections (TCP; TLS and WebSocket when they come).
    pub fn stream_limits(&self) -> StreamLimits {
        StreamLimits {
            max_message_size: self.max_message_size,
            max_connections: self.tcp_max_connections,
            max_per_source: self.tcp_max_connections_per_source,
            max_per_trunk_source: self.tcp_max_connections_per_trunk_source,
            trunk_reserve: self.tcp_trunk_reserve,
            first_message_timeout: self.tcp_first_message_timeout,
            message_timeout: self.tcp_message_timeout,
            idle_timeout: self.tcp_idle_timeout,
        }
    }
}

/// One listen address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddr {
    /// The transport.
    pub transport: Transport,
    /// The socket address.
    pub addr: SocketAddr,
}

/// `[log]`.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// `human` (default) or `json` (one object per line, for log shippers).
    pub format: LogFormat,
    /// Level filter in `tracing` EnvFilter syntax. Default `info`. The `RUST_LOG` environment variable overrides it.
    pub level: String,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Compact text for a terminal.
    Human,
    /// JSON lines.
    Json,
}

/// `[api]`.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Admin API address. Default 127.0.0.1:8080. On loopback a token is optional; anywhere else one is required.
    pub listen: SocketAddr,
    /// The bearer token every request but `/health` must carry (`Authorization: Bearer TOKEN`), read at load from
    /// `token_env` or `token_file`. `None` (loopback only): no authentication.
    pub token: Option<ApiToken>,
}

/// The admin API's bearer token. Its `Debug` hides it, so it never reaches a log.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(String);

impl ApiToken {
    /// A token (tests and the config loader).
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token itself, for comparing with what a request presents.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(<hidden>)")
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    drain_deadline: Option<Spanned<String>>,
    sip: Option<RawSip>,
    log: Option<RawLog>,
    api: Option<RawApi>,
    #[serde(default)]
    trunk: Vec<trunk::RawTrunk>,
    #[serde(default)]
    route: Vec<routing::RawRoute>,
    calls: Option<routing::RawCalls>,
    cdr: Option<RawCdr>,
    media: Option<media::RawMedia>,
    ha: Option<ha::RawHa>,
    edge: Option<edge::RawEdge>,
    overload: Option<edge::RawOverload>,
    dns: Option<dns::RawDns>,
    hep: Option<Spanned<hep::RawHep>>,
    registrar: Option<Spanned<registrar::RawRegistrar>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCdr {
    path: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSip {
    listen: Option<Vec<Spanned<String>>>,
    max_message_size: Option<Spanned<usize>>,
    tcp_idle_timeout: Option<Spanned<String>>,
    tcp_max_connections: Option<Spanned<usize>>,
    tcp_max_connections_per_source: Option<Spanned<usize>>,
    tcp_max_connections_per_trunk_source: Option<Spanned<usize>>,
    tcp_trunk_reserve: Option<Spanned<usize>>,
    tcp_first_message_timeout: Option<Spanned<String>>,
    tcp_message_timeout: Option<Spanned<String>>,
    user_agent: Option<String>,
    tls: Option<Spanned<tls::RawSipTls>>,
    ws: Option<Spanned<ws::RawSipWs>>,
    connect_timeout: Option<Spanned<String>>,
    connection_keepalive: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    format: Option<LogFormat>,
    level: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    listen: Option<Spanned<String>>,
    token_env: Option<Spanned<String>>,
    token_file: Option<Spanned<String>>,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(&text, path)
    }

    /// Parses and validates config text; `path` names the file in error messages, and relative paths in it
    /// (`password_file`) are taken from its directory.
    ///
    /// Each section is validated even when an earlier one has errors, and `[[trunk]]` / `[[route]]` check every
    /// entry, so the error lists all it can find (TOML syntax and schema errors stop at the first).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        Self::parse_after(text, path, None)
    }

    /// [`Config::parse`] for a reload: the plan keeps the trunk ids of `previous` (see the `routing` module: a trunk
    /// keeps its id by name, a removed one leaves a tombstone, new ones are appended), so calls in progress, probes
    /// and metric labels that hold ids stay right.
    pub fn parse_after(text: &str, path: &Path, previous: Option<&Plan>) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |s| line_col(text, s.start));
            ConfigError::Syntax { path: path.to_owned(), line, column, message: e.message().to_owned() }
        })?;
        let mut v = Validator::new(text, path);
        v.users_trunk = raw.registrar.as_ref().map(|r| r.get_ref().trunk.get_ref().clone());
        let mut errors = Vec::new();
        if raw.media.is_none() {
            // SRTP is terminated by the relay: without anchoring there is no one to hold the keys.
            for (i, t) in raw.trunk.iter().enumerate() {
                if let Some(s) = t.srtp.as_ref().filter(|s| s.get_ref() != "off") {
                    let message = "needs [media]: the relay terminates SRTP (without it, SDP crosses untouched)";
                    errors.push(v.invalid(s.span(), &format!("trunk[{i}].srtp"), message));
                }
            }
        }
        let sip = keep(v.sip(raw.sip), &mut errors);
        let log = keep(v.log(raw.log), &mut errors);
        let api = keep(v.api(raw.api), &mut errors);
        let media = keep(v.media(raw.media), &mut errors);
        let ha = keep(v.ha(raw.ha), &mut errors);
        let edge = keep(v.edge(raw.edge, raw.overload), &mut errors);
        let dns = keep(v.dns(raw.dns), &mut errors);
        let hep = keep(v.hep(raw.hep), &mut errors);
        let drain_deadline = keep(v.drain_deadline(raw.drain_deadline.as_ref()), &mut errors);
        let planned = routing::plan(&v, &raw.trunk, &raw.route, raw.calls, previous, &mut errors);
        let (plan, dial, names) = planned.map_or((None, Vec::new(), Vec::new()), |(p, d, n)| (Some(p), d, n));
        let registrar = keep(v.registrar(raw.registrar, &raw.trunk, plan.as_ref()), &mut errors);
        match (sip, log, api, plan, media, ha, edge, dns, drain_deadline, hep, registrar) {
            (
                Some(sip),
                Some(log),
                Some(api),
                Some(plan),
                Some(media),
                Some(ha),
                Some(edge),
                Some(mut dns),
                Some(drain_deadline),
                Some(hep),
                Some(registrar),
            ) if errors.is_empty() => {
                let base = path.parent().unwrap_or(Path::new("."));
                let cdr_path = raw.cdr.and_then(|c| c.path).map(|p| if p.is_relative() { base.join(p) } else { p });
                dns.names = names;
                let idle = sip.tcp_idle_timeout;
                Ok(Config {
                    sip,
                    log,
                    api,
                    plan: Arc::new(plan),
                    cdr_path,
                    media,
                    ha,
                    edge,
                    dial,
                    dns,
                    drain_deadline,
                    hep,
                    registrar: registrar.map(|r| Arc::new(with_flow_timer(r, idle))),
                })
            }
            _ => Err(ConfigError::from_list(errors)),
        }
    }
}

/// The registrar's `Flow-Timer` (RFC 5626 §6) from the stream idle timeout: 90 % of it, in whole seconds (at least
/// 1), so that a client's keep-alive, which comes at 80–100 % of the Flow-Timer (§4.4.1), arrives before the idle
/// close with a margin for its transit.
fn with_flow_timer(
    mut r: sbc_proto::registrar::RegistrarConfig,
    idle: std::time::Duration,
) -> sbc_proto::registrar::RegistrarConfig {
    r.flow_timer = u32::try_from(idle.as_secs() * 9 / 10).unwrap_or(u32::MAX).max(1);
    r
}

fn keep<T>(result: Result<T, ConfigError>, errors: &mut Vec<ConfigError>) -> Option<T> {
    result.map_err(|e| errors.push(e)).ok()
}

impl Validator<'_> {
    fn sip(&self, sip: Option<RawSip>) -> Result<SipConfig, ConfigError> {
        let v = self;
        let sip = sip.unwrap_or(RawSip {
            listen: None,
            max_message_size: None,
            tcp_idle_timeout: None,
            tcp_max_connections: None,
            tcp_max_connections_per_source: None,
            tcp_max_connections_per_trunk_source: None,
            tcp_trunk_reserve: None,
            tcp_first_message_timeout: None,
            tcp_message_timeout: None,
            user_agent: None,
            tls: None,
            ws: None,
            connect_timeout: None,
            connection_keepalive: None,
        });
        let listen_spans: Vec<Range<usize>> =
            sip.listen.as_ref().map(|l| l.iter().map(|s| s.span()).collect()).unwrap_or_default();
        let listen = match sip.listen {
            None => vec![
                ListenAddr { transport: Transport::Udp, addr: SocketAddr::from(([127, 0, 0, 1], 5060)) },
                ListenAddr { transport: Transport::Tcp, addr: SocketAddr::from(([127, 0, 0, 1], 5060)) },
            ],
            Some(list) => {
                if list.is_empty() {
                    return Err(v.invalid(v.key_span("sip", "listen"), "sip.listen", "needs at least one address"));
                }
                list.iter()
                    .enumerate()
                    .map(|(i, s)| {
                        parse_listen(s.get_ref()).map_err(|m| v.invalid(s.span(), &format!("sip.listen[{i}]"), &m))
                    })
                    .collect::<Result<_, _>>()?
            }
        };
        let max_message_size = match sip.max_message_size {
            None => 65535,
            Some(s) if (1024..=1 << 20).contains(s.get_ref()) => *s.get_ref(),
            Some(s) => return Err(v.invalid(s.span(), "sip.max_message_size", "must be between 1024 and 1048576")),
        };
        let tcp_idle_timeout = match sip.tcp_idle_timeout {
            None => Duration::from_secs(300),
            Some(s) => v.duration(&s, "sip.tcp_idle_timeout")?,
        };
        let tcp_max_connections = match sip.tcp_max_connections {
            None => 1024,
            Some(s) if *s.get_ref() > 0 => *s.get_ref(),
            Some(s) => return Err(v.invalid(s.span(), "sip.tcp_max_connections", "must be at least 1")),
        };
        let at_least_one = |s: Option<Spanned<usize>>, key: &str, default: usize| match s {
            None => Ok(default),
            Some(s) if *s.get_ref() > 0 => Ok(*s.get_ref()),
            Some(s) => Err(v.invalid(s.span(), key, "must be at least 1")),
        };
        let tcp_max_connections_per_source =
            at_least_one(sip.tcp_max_connections_per_source, "sip.tcp_max_connections_per_source", 32)?;
        let tcp_max_connections_per_trunk_source =
            at_least_one(sip.tcp_max_connections_per_trunk_source, "sip.tcp_max_connections_per_trunk_source", 256)?;
        let tcp_trunk_reserve = match sip.tcp_trunk_reserve {
            None => tcp_max_connections / 4,
            Some(s) if *s.get_ref() < tcp_max_connections => *s.get_ref(),
            Some(s) => {
                return Err(v.invalid(
                    s.span(),
                    "sip.tcp_trunk_reserve",
                    &format!("must be less than sip.tcp_max_connections ({tcp_max_connections})"),
                ))
            }
        };
        let tcp_first_message_timeout = match sip.tcp_first_message_timeout {
            None => Duration::from_secs(10),
            Some(s) => v.duration(&s, "sip.tcp_first_message_timeout")?,
        };
        let tcp_message_timeout = match sip.tcp_message_timeout {
            None => Duration::from_secs(5),
            Some(s) => v.duration(&s, "sip.tcp_message_timeout")?,
        };
        let tls = match &sip.tls {
            Some(t) => Some(v.sip_tls(t)?),
            None => None,
        };
        if let (None, Some(i)) = (&tls, listen.iter().position(|l: &ListenAddr| l.transport == Transport::Tls)) {
            let span = listen_spans.get(i).cloned().unwrap_or(0..0);
            return Err(v.invalid(
                span,
                &format!("sip.listen[{i}]"),
                "a tls: listener needs [sip.tls] with cert and key (PEM files)",
            ));
        }
        if let Some(i) = listen.iter().position(|l: &ListenAddr| l.transport == Transport::Wss) {
            let span = listen_spans.get(i).cloned().unwrap_or(0..0);
            let message = match &tls {
                None => Some("a wss: listener needs [sip.tls] with cert and key (PEM files)"),
                // Browsers present no client certificate.
                Some(t) if t.ca.is_some() && t.client_auth == crate::tls::ClientAuth::Required => Some(
                    "a wss: listener shares [sip.tls], whose client_auth = \"required\" would refuse every browser: \
                     set sip.tls.client_auth = \"optional\"",
                ),
                Some(_) => None,
            };
            if let Some(m) = message {
                return Err(v.invalid(span, &format!("sip.listen[{i}]"), m));
            }
        }
        let ws = v.sip_ws(sip.ws.as_ref())?;
        let connect_timeout = match &sip.connect_timeout {
            None => Duration::from_secs(5),
            Some(s) => v.duration(s, "sip.connect_timeout")?,
        };
        let connection_keepalive = match &sip.connection_keepalive {
            None => Some(Duration::from_secs(30)),
            Some(s) if s.get_ref() == "off" => None,
            Some(s) => Some(v.duration(s, "sip.connection_keepalive")?),
        };
        Ok(SipConfig {
            tls,
            ws,
            connect_timeout,
            connection_keepalive,
            listen,
            max_message_size,
            tcp_idle_timeout,
            tcp_max_connections,
            tcp_max_connections_per_source,
            tcp_max_connections_per_trunk_source,
            tcp_trunk_reserve,
            tcp_first_message_timeout,
            tcp_message_timeout,
            user_agent: sip.user_agent.unwrap_or_else(|| format!("sbc/{}", env!("CARGO_PKG_VERSION"))),
        })
    }

    fn log(&self, log: Option<RawLog>) -> Result<LogConfig, ConfigError> {
        let Some(l) = log else { return Ok(LogConfig { format: LogFormat::Human, level: "info".into() }) };
        let level = match l.level {
            None => "info".to_owned(),
            Some(s) => {
                tracing_subscriber::EnvFilter::try_new(s.get_ref())
                    .map_err(|e| self.invalid(s.span(), "log.level", &e.to_string()))?;
                s.into_inner()
            }
        };
        Ok(LogConfig { format: l.format.unwrap_or(LogFormat::Human), level })
    }

    fn api(&self, api: Option<RawApi>) -> Result<Option<ApiConfig>, ConfigError> {
        let Some(a) = api else { return Ok(None) };
        let listen = match &a.listen {
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
            Some(s) => s
                .get_ref()
                .parse()
                .map_err(|_| self.invalid(s.span(), "api.listen", "expected ADDRESS:PORT, e.g. 127.0.0.1:8080"))?,
        };
        let token = match (&a.token_env, &a.token_file) {
            (None, None) if listen.ip().is_loopback() => None,
            (None, None) => {
                let span = a.listen.as_ref().map_or(0..0, Spanned::span);
                return Err(self.invalid(
                    span,
                    "api.token_env",
                    &format!(
                        "api.listen {listen} is not loopback: give api.token_env or api.token_file, the bearer \
                         token every API request must carry"
                    ),
                ));
            }
            (env, file) => {
                let whole = env.iter().chain(file).map(Spanned::span).min_by_key(|s| s.start).unwrap_or(0..0);
                let base_dir = self.path.parent().unwrap_or(Path::new(""));
                match secret::read("token", env.as_ref(), file.as_ref(), "api", whole, base_dir) {
                    Ok(t) => Some(ApiToken(t)),
                    Err((span, key, message)) => return Err(self.invalid(span, &key, &message)),
                }
            }
        };
        Ok(Some(ApiConfig { listen, token }))
    }
}

/// Turns spans into lines for error messages.
struct Validator<'a> {
    text: &'a str,
    path: &'a Path,
    /// Byte offset of the start of each line, computed at the first error: a file with a million routes and a
    /// thousand bad ones must not scan the text a thousand times.
    line_starts: OnceCell<Vec<usize>>,
    /// `[registrar] trunk`: the users' pseudo-trunk, which routes may name although it has no gateways.
    users_trunk: Option<String>,
}

impl<'a> Validator<'a> {
    fn new(text: &'a str, path: &'a Path) -> Self {
        Self { text, path, line_starts: OnceCell::new(), users_trunk: None }
    }

    /// Where `key` of `[table]` is written, else the table's header, for an error about a value with no span of its
    /// own (a missing key, an empty list), so it still names a line; `0..0` when neither is in the text.
    fn key_span(&self, table: &str, key: &str) -> Range<usize> {
        let mut offset = 0;
        let mut current = "";
        let mut header = None;
        for line in self.text.split_inclusive('\n') {
            let l = line.trim();
            let span = offset..offset + line.trim_end().len();
            offset += line.len();
            if let Some(h) = l.strip_prefix('[').and_then(|h| h.split(']').next()) {
                current = h.trim_start_matches('[').trim();
                if current == table && header.is_none() {
                    header = Some(span);
                }
            } else if current == table && l.strip_prefix(key).is_some_and(|r| r.trim_start().starts_with('=')) {
                return span;
            }
        }
        header.unwrap_or(0..0)
    }

    /// 1-based line of a byte offset.
    fn line(&self, offset: usize) -> usize {
        let starts = self
            .line_starts
            .get_or_init(|| std::iter::once(0).chain(self.text.match_indices('\n').map(|(i, _)| i + 1)).collect());
        starts.partition_point(|&s| s <= offset)
    }

    fn invalid(&self, span: Range<usize>, key: &str, message: &str) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            line: self.line(span.start),
            key: key.to_owned(),
            message: message.to_owned(),
        }
    }

    /// `drain_deadline`: a duration from 1 s to a day.
    fn drain_deadline(&self, s: Option<&Spanned<String>>) -> Result<Duration, ConfigError> {
        let Some(s) = s else { return Ok(DEFAULT_DRAIN_DEADLINE) };
        let d = self.duration(s, "drain_deadline")?;
        if d < Duration::from_secs(1) || d > MAX_DRAIN_DEADLINE {
            return Err(self.invalid(s.span(), "drain_deadline", "must be from 1s to 24h (SIGINT stops at once)"));
        }
        Ok(d)
    }

    /// A non-zero duration in the file's syntax (`"30s"`).
    fn duration(&self, s: &Spanned<String>, key: &str) -> Result<Duration, ConfigError> {
        parse_duration(s.get_ref())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| self.invalid(s.span(), key, "expected a non-zero duration like \"30s\", \"5m\", \"250ms\""))
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// `udp:127.0.0.1:5060`, `tcp:[::1]:5060`, `tls:198.18.1.1:5061`.
fn parse_listen(s: &str) -> Result<ListenAddr, String> {
    let (t, addr) = s
        .split_once(':')
        .ok_or_else(|| format!("\"{s}\": expected TRANSPORT:ADDRESS:PORT, e.g. udp:127.0.0.1:5060"))?;
    let transport = match t.to_ascii_lowercase().as_str() {
        "udp" => Transport::Udp,
        "tcp" => Transport::Tcp,
        "tls" => Transport::Tls,
        "ws" => Transport::Ws,
        "wss" => Transport::Wss,
        _ => return Err(format!("\"{s}\": unknown transport {t} (udp, tcp, tls, ws, wss)")),
    };
    let addr = addr.parse().map_err(|_| format!("\"{s}\": \"{addr}\" is not ADDRESS:PORT (IPv6 as [::1]:5060)"))?;
    Ok(ListenAddr { transport, addr })
}

/// `250ms`, `30s`, `5m`, `1h`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let n: u64 = s[..split].parse().ok()?;
    match &s[split..] {
        "us" => Some(Duration::from_micros(n)),
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n.checked_mul(60)?)),
        "h" => Some(Duration::from_secs(n.checked_mul(3600)?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<Config, ConfigError> {
        Config::parse(t, Path::new("test.toml"))
    }

    #[test]
    fn defaults_when_empty() {
        let c = parse("").expect("empty is fine");
        assert_eq!(c.sip.listen.len(), 2);
        assert_eq!(c.sip.max_message_size, 65535);
        assert_eq!(c.sip.tcp_idle_timeout, Duration::from_secs(300));
        assert!(c.api.is_none());
        assert_eq!(c.drain_deadline, DEFAULT_DRAIN_DEADLINE);
    }

    #[test]
    fn drain_deadline_is_a_top_level_duration_and_bad_values_name_the_key_and_line() {
        let c = parse("drain_deadline = \"90s\"\n[api]\nlisten = \"127.0.0.1:9090\"\n").expect("valid");
        assert_eq!(c.drain_deadline, Duration::from_secs(90));
        for bad in ["\"0s\"", "\"500ms\"", "\"25h\"", "\"soon\""] {
            let e = parse(&format!("\ndrain_deadline = {bad}\n")).expect_err(bad).to_string();
            assert!(e.starts_with("test.toml:2: drain_deadline:"), "{bad}: {e}");
        }
    }

    #[test]
    fn stream_limits_default_to_the_shared_defaults_and_take_every_key() {
        assert_eq!(parse("").expect("empty").sip.stream_limits(), StreamLimits::default());
        let c = parse(
            "[sip]\ntcp_max_connections = 100\ntcp_max_connections_per_source = 4\n\
             tcp_max_connections_per_trunk_source = 50\ntcp_trunk_reserve = 10\n\
             tcp_first_message_timeout = \"3s\"\ntcp_message_timeout = \"1500ms\"\n",
        )
        .expect("valid");
        let l = c.sip.stream_limits();
        assert_eq!((l.max_connections, l.max_per_source, l.max_per_trunk_source, l.trunk_reserve), (100, 4, 50, 10));
        assert_eq!((l.first_message_timeout, l.message_timeout), (Duration::from_secs(3), Duration::from_millis(1500)));
        assert_eq!(parse("[sip]\ntcp_max_connections = 100\n").expect("valid").sip.tcp_trunk_reserve, 25);
    }

    #[test]
    fn bad_stream_limits_name_their_key() {
        for (text, key) in [
            ("[sip]\ntcp_max_connections_per_source = 0\n", "test.toml:2: sip.tcp_max_connections_per_source"),
            (
                "[sip]\ntcp_max_connections_per_trunk_source = 0\n",
                "test.toml:2: sip.tcp_max_connections_per_trunk_source",
            ),
            ("[sip]\ntcp_max_connections = 8\ntcp_trunk_reserve = 8\n", "test.toml:3: sip.tcp_trunk_reserve"),
            ("[sip]\ntcp_first_message_timeout = \"0s\"\n", "test.toml:2: sip.tcp_first_message_timeout"),
            ("[sip]\ntcp_message_timeout = \"soon\"\n", "test.toml:2: sip.tcp_message_timeout"),
        ] {
            let err = parse(text).expect_err(text).to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn full_config() {
        let c = parse(
            "[sip]\nlisten = [\"udp:198.18.1.1:5060\", \"tcp:[::1]:5061\"]\ntcp_idle_timeout = \"30s\"\n[log]\nformat = \"json\"\nlevel = \"debug\"\n[api]\nlisten = \"127.0.0.1:9090\"\n",
        )
        .expect("valid");
        assert_eq!(c.sip.listen[1].transport, Transport::Tcp);
        assert_eq!(c.sip.listen[1].addr, "[::1]:5061".parse::<std::net::SocketAddr>().expect("addr"));
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.api.expect("api").listen.port(), 9090);
    }

    #[test]
    fn api_off_loopback_without_a_token_is_refused_naming_the_key() {
        let e = parse("[api]\nlisten = \"198.18.1.2:8080\"\n").expect_err("no token").to_string();
        assert!(e.contains("test.toml:2: api.token_env"), "{e}");
        let c = parse("[api]\nlisten = \"[::1]:8080\"\n").expect("loopback needs no token");
        assert!(c.api.expect("api").token.is_none());
    }

    #[test]
    fn api_token_is_read_from_its_file_and_never_shown_by_debug() {
        let dir = std::env::temp_dir().join(format!("sbc-api-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("token"), "s3cret-token\n").expect("write");
        let text = "[api]\nlisten = \"198.18.1.2:8080\"\ntoken_file = \"token\"\n";
        let c = Config::parse(text, &dir.join("sbc.toml")).expect("valid");
        let api = c.api.expect("api");
        assert_eq!(api.token.as_ref().map(ApiToken::expose), Some("s3cret-token"));
        assert!(!format!("{api:?}").contains("s3cret"), "{api:?}");
        let e = parse("[api]\ntoken_env = \"SBC_TEST_NO_SUCH_VARIABLE\"\n").expect_err("unset").to_string();
        assert!(
            e.contains("test.toml:2: api.token_env: environment variable SBC_TEST_NO_SUCH_VARIABLE is not set"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = parse("[sip]\nlisten = []\n\n[log]\nlevle = \"info\"\n").expect_err("typo");
        let s = e.to_string();
        assert!(s.starts_with("test.toml:5:"), "{s}");
        assert!(s.contains("levle"), "{s}");
    }

    #[test]
    fn bad_listen_names_the_element_and_line() {
        let e = parse("[sip]\nlisten = [\n  \"udp:127.0.0.1:5060\",\n  \"udp:127.0.0.1\",\n]\n").expect_err("no port");
        let s = e.to_string();
        assert!(s.starts_with("test.toml:4: sip.listen[1]:"), "{s}");
        let e = parse("[sip]\nlisten = [\"tls:127.0.0.1:5061\"]\n").expect_err("tls without [sip.tls]");
        assert!(e.to_string().contains("test.toml:2: sip.listen[0]: a tls: listener needs [sip.tls]"), "{e}");
        let e = parse("[sip]\nlisten = [\"wss:127.0.0.1:5063\"]\n").expect_err("wss without [sip.tls]");
        assert!(e.to_string().contains("test.toml:2: sip.listen[0]: a wss: listener needs [sip.tls]"), "{e}");
        let e = parse("[sip]\nlisten = [\"sctp:127.0.0.1:5062\"]\n").expect_err("sctp");
        assert!(e.to_string().contains("unknown transport sctp"), "{e}");
    }

    #[test]
    fn ws_listeners_and_the_origin_allowlist() {
        use crate::transport::stream::Origins;
        let c = parse("[sip]\nlisten = [\"ws:127.0.0.1:5062\"]\n").expect("ws needs nothing more");
        assert_eq!(c.sip.listen[0].transport, Transport::Ws);
        assert_eq!(c.sip.ws.origins, Origins::NoBrowsers, "no allowlist: browsers refused");
        let c = parse(
            "[sip]\nlisten = [\"ws:127.0.0.1:5062\"]\n[sip.ws]\nallowed_origins = [\"https://Phone.example.com/\"]\n",
        )
        .expect("valid");
        assert_eq!(c.sip.ws.origins, Origins::Only(vec!["https://phone.example.com".into()]));
        let c = parse("[sip.ws]\nallowed_origins = [\"*\"]\n").expect("valid");
        assert_eq!(c.sip.ws.origins, Origins::Any);
        for (bad, says) in [
            ("[sip.ws]\nallowed_origins = []\n", "test.toml:2: sip.ws.allowed_origins: is empty"),
            (
                "[sip.ws]\nallowed_origins = [\"phone.example.com\"]\n",
                "sip.ws.allowed_origins[0]: \"phone.example.com\" is not a web origin",
            ),
            (
                "[sip.ws]\nallowed_origins = [\"*\", \"https://a.example\"]\n",
                "sip.ws.allowed_origins[0]: \"*\" allows every origin",
            ),
            ("[sip.ws]\norigins = [\"*\"]\n", "origins"),
        ] {
            let e = parse(bad).expect_err(bad).to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn bad_values() {
        assert!(parse("[sip]\ntcp_idle_timeout = \"soon\"\n")
            .expect_err("dur")
            .to_string()
            .contains("test.toml:2: sip.tcp_idle_timeout"));
        assert!(parse("[sip]\nmax_message_size = 10\n").is_err());
        assert!(parse("[api]\nlisten = \"localhost\"\n").expect_err("addr").to_string().contains("api.listen"));
        assert!(parse("[log]\nformat = \"xml\"\n").is_err());
    }

    #[test]
    fn shipped_configs_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let default = Config::load(&dir.join("sbc.toml")).unwrap_or_else(|e| panic!("{e}"));
        // The `make run` / `make call` demo: a caller and a carrier on loopback (scripts/demo-call).
        let trunks: Vec<&str> = default.plan.trunks.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(trunks, ["demo-caller", "demo-carrier"]);
        for (file, node) in [("examples/pair-1.toml", "sbc1"), ("examples/pair-2.toml", "sbc2")] {
            let p = Config::load(&dir.join(file)).unwrap_or_else(|e| panic!("{e}"));
            let ha = p.ha.unwrap_or_else(|| panic!("{file} has [ha]"));
            assert_eq!((ha.node.as_str(), ha.paths.len(), ha.vips().count()), (node, 3, 2), "{file}");
        }
        for (file, node, home) in
            [("examples/active-active-1.toml", "sbc1", "g1"), ("examples/active-active-2.toml", "sbc2", "g2")]
        {
            let p = Config::load(&dir.join(file)).unwrap_or_else(|e| panic!("{e}"));
            let ha = p.ha.unwrap_or_else(|| panic!("{file} has [ha]"));
            assert!(ha.active_active(), "{file}");
            let top = ha.groups.iter().max_by_key(|g| g.priority).expect("groups");
            assert_eq!((ha.node.as_str(), top.name.as_str(), ha.vips().count()), (node, home, 4), "{file}");
            let media = p.media.expect("media");
            for v in ha.vips() {
                assert!(
                    p.sip.listen.iter().any(|l| l.addr.ip() == v.address),
                    "{file}: {} is a SIP listener",
                    v.address
                );
                assert!(
                    media.core.interfaces.iter().any(|i| i.address == v.address),
                    "{file}: {} anchors media",
                    v.address
                );
            }
        }
        let c = Config::load(&dir.join("examples/carriers.toml")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.sip.listen.len(), 4);
        let names: Vec<&str> = c.plan.trunks.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["customer-pbx", "carrier-b", "carrier-c"]);
        let pbx = c.plan.identify("198.18.1.10:5060".parse().expect("addr")).expect("customer");
        assert_eq!(c.plan.trunk(pbx).name, "customer-pbx");
        assert_eq!(c.plan.trunk(pbx).numbers_in.apply("030123456"), "+4930123456");
        assert_eq!(c.plan.trunk(pbx).identity_in.verified_number.as_deref(), Some("+4940123456"));
        let trusted: Vec<bool> = c.plan.trunks.iter().map(|t| t.identity_out.trusted).collect();
        assert_eq!(trusted, [false, true, false]);
        for number in ["+4930123456", "+33123456"] {
            let (_, to) = c.plan.route(number).expect("routed");
            let order: Vec<(&str, u32)> =
                to.iter().map(|t| (c.plan.trunk(t.trunk).name.as_str(), t.priority)).collect();
            assert_eq!(order, [("carrier-b", 1), ("carrier-c", 2)], "{number}");
        }
        assert_eq!(c.plan.route("+4930123456").expect("routed").0, "+49");
        assert_eq!(c.plan.route("+33123456").expect("routed").0, "");
    }

    #[test]
    fn errors_in_several_sections_are_all_reported_in_line_order() {
        let e =
            parse("[[route]]\nprefix = \"1\"\nto = []\n[sip]\ntcp_idle_timeout = \"soon\"\n").expect_err("two errors");
        assert!(matches!(e, ConfigError::Many(ref v) if v.len() == 2), "{e:?}");
        assert_eq!(
            e.to_string().lines().map(|l| l.split(' ').next().unwrap_or("")).collect::<Vec<_>>(),
            ["test.toml:3:", "test.toml:5:"]
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("500us"), Some(Duration::from_micros(500)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("m"), None);
    }
}
