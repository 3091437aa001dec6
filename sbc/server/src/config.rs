//! The configuration file: TOML into typed structs, validated at load. Unknown keys are errors; every error names
//! the file, the line and the key. `config/README.md` documents every key; this file is the authority.

use sbc_proto::transport::Transport;
use serde::Deserialize;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

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
    /// Our Server header. Default `sbc/<version>`.
    pub user_agent: String,
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
    /// Admin API address. Default 127.0.0.1:8080. It has no authentication: keep it on loopback or a management
    /// network.
    pub listen: SocketAddr,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    sip: Option<RawSip>,
    log: Option<RawLog>,
    api: Option<RawApi>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSip {
    listen: Option<Vec<Spanned<String>>>,
    max_message_size: Option<Spanned<usize>>,
    tcp_idle_timeout: Option<Spanned<String>>,
    tcp_max_connections: Option<Spanned<usize>>,
    user_agent: Option<String>,
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
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(&text, path)
    }

    /// Parses and validates config text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |s| line_col(text, s.start));
            ConfigError::Syntax { path: path.to_owned(), line, column, message: e.message().to_owned() }
        })?;
        let v = Validator { text, path };
        let sip = raw.sip.unwrap_or(RawSip {
            listen: None,
            max_message_size: None,
            tcp_idle_timeout: None,
            tcp_max_connections: None,
            user_agent: None,
        });
        let listen = match sip.listen {
            None => vec![
                ListenAddr { transport: Transport::Udp, addr: SocketAddr::from(([127, 0, 0, 1], 5060)) },
                ListenAddr { transport: Transport::Tcp, addr: SocketAddr::from(([127, 0, 0, 1], 5060)) },
            ],
            Some(list) => {
                if list.is_empty() {
                    return Err(v.invalid(0..0, "sip.listen", "needs at least one address"));
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
            Some(s) => parse_duration(s.get_ref()).filter(|d| !d.is_zero()).ok_or_else(|| {
                v.invalid(s.span(), "sip.tcp_idle_timeout", "expected a duration like \"30s\", \"5m\", \"250ms\"")
            })?,
        };
        let tcp_max_connections = match sip.tcp_max_connections {
            None => 1024,
            Some(s) if *s.get_ref() > 0 => *s.get_ref(),
            Some(s) => return Err(v.invalid(s.span(), "sip.tcp_max_connections", "must be at least 1")),
        };
        let log = raw.log.map_or(Ok(LogConfig { format: LogFormat::Human, level: "info".into() }), |l| {
            let level = match l.level {
                None => "info".to_owned(),
                Some(s) => {
                    tracing_subscriber::EnvFilter::try_new(s.get_ref())
                        .map_err(|e| v.invalid(s.span(), "log.level", &e.to_string()))?;
                    s.into_inner()
                }
            };
            Ok(LogConfig { format: l.format.unwrap_or(LogFormat::Human), level })
        })?;
        let api = match raw.api {
            None => None,
            Some(a) => Some(ApiConfig {
                listen: match a.listen {
                    None => SocketAddr::from(([127, 0, 0, 1], 8080)),
                    Some(s) => s
                        .get_ref()
                        .parse()
                        .map_err(|_| v.invalid(s.span(), "api.listen", "expected ADDRESS:PORT, e.g. 127.0.0.1:8080"))?,
                },
            }),
        };
        Ok(Config {
            sip: SipConfig {
                listen,
                max_message_size,
                tcp_idle_timeout,
                tcp_max_connections,
                user_agent: sip.user_agent.unwrap_or_else(|| format!("sbc/{}", env!("CARGO_PKG_VERSION"))),
            },
            log,
            api,
        })
    }
}

struct Validator<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Validator<'_> {
    fn invalid(&self, span: Range<usize>, key: &str, message: &str) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            line: line_col(self.text, span.start).0,
            key: key.to_owned(),
            message: message.to_owned(),
        }
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// `udp:127.0.0.1:5060`, `tcp:[::1]:5060`.
fn parse_listen(s: &str) -> Result<ListenAddr, String> {
    let (t, addr) = s
        .split_once(':')
        .ok_or_else(|| format!("\"{s}\": expected TRANSPORT:ADDRESS:PORT, e.g. udp:127.0.0.1:5060"))?;
    let transport = match t.to_ascii_lowercase().as_str() {
        "udp" => Transport::Udp,
        "tcp" => Transport::Tcp,
        "tls" | "ws" | "wss" => return Err(format!("\"{s}\": transport {t} is not implemented yet (udp and tcp are)")),
        _ => return Err(format!("\"{s}\": unknown transport {t} (udp, tcp)")),
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
    }

    #[test]
    fn full_config() {
        let c = parse(
            "[sip]\nlisten = [\"udp:198.18.1.1:5060\", \"tcp:[::1]:5061\"]\ntcp_idle_timeout = \"30s\"\n[log]\nformat = \"json\"\nlevel = \"debug\"\n[api]\nlisten = \"127.0.0.1:9090\"\n",
        )
        .expect("valid");
        assert_eq!(c.sip.listen[1].transport, Transport::Tcp);
        assert_eq!(c.sip.listen[1].addr, "[::1]:5061".parse().expect("addr"));
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.api.expect("api").listen.port(), 9090);
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
        let e = parse("[sip]\nlisten = [\"tls:127.0.0.1:5061\"]\n").expect_err("tls");
        assert!(e.to_string().contains("not implemented yet"), "{e}");
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
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("m"), None);
    }
}
