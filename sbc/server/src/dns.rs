//! Gateways named by DNS (RFC 3263), resolved off the call path: one task per name looks it up at start and again
//! when the answer's TTL runs out (bounded by `dns.min_refresh` and `dns.max_refresh`; the answer stays in force
//! until the next one replaces it), and hands each answer to the driver, which gives it to the core (`Endpoint::set_targets`). A lookup that fails leaves the last good answer in force (the
//! core keeps it) and is retried after `min_refresh`; a name that does not exist, or has no usable record, is
//! published as no target, so its calls go on to the next gateway or carrier at once. No call ever waits on a
//! lookup.
//!
//! Before an answer is published, its TCP and TLS targets are made known to the dialer (TLS certificates are
//! checked against the domain looked up, RFC 5922) and every target's address to the edge guard, so the carrier's
//! responses count as a trunk's.

use crate::config::{DnsName, DnsSettings};
use crate::edge::EdgeGuard;
use crate::transport::dial::{DialTarget, Dialer};
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{ResolveError, TokioResolver};
use sbc_proto::routing::{DnsGateway, Gateway, Target, TrunkId};
use sbc_proto::transport::Transport;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Lookups of gateway names, by `result`: `ok` (targets published), `empty` (the name has no target: published
/// as none), `error` (no answer or a server failure: the last good answer stays).
pub const LOOKUPS: &str = "sbc_dns_lookups_total";
/// Answers waiting for the driver at most (one per name per refresh, so this is never reached in practice).
const UPDATE_QUEUE: usize = 256;

/// One answer for one DNS-named gateway, for `Endpoint::set_targets`.
#[derive(Debug, Clone)]
pub struct Update {
    /// The trunk.
    pub trunk: TrunkId,
    /// The gateway's index in the trunk's `dns_gateways`.
    pub index: usize,
    /// What it resolves to now, in no particular order (the core orders them per call).
    pub targets: Vec<Target>,
}

/// Why a name yielded no targets.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The name (or every name it led to) has no usable record: a definite answer.
    #[error("no NAPTR, SRV or A/AAAA record of a supported transport")]
    NoTargets,
    /// The resolver did not answer, or answered with a failure: try again later.
    #[error(transparent)]
    Resolver(#[from] ResolveError),
}

/// Starts one resolving task per name in `settings` (none: nothing is started). The answers come out of the
/// returned receiver.
pub fn start(
    settings: &DnsSettings,
    dialer: Option<Dialer>,
    guard: EdgeGuard,
    reload_every: Duration,
) -> anyhow::Result<Option<mpsc::Receiver<Update>>> {
    for result in ["ok", "empty", "error"] {
        metrics::counter!(LOOKUPS, "result" => result).absolute(0);
    }
    if settings.names.is_empty() {
        return Ok(None);
    }
    let resolver = resolver(settings)?;
    let (tx, rx) = mpsc::channel(UPDATE_QUEUE);
    for name in &settings.names {
        // TLS targets are checked against the domain: one connector per name, built now so that a bad CA file is
        // an error at start rather than at the first call.
        let connector = if may_use(&name.gateway, Transport::Tls) {
            let c = crate::tls::Connector::start(&name.trunk_name, &name.tls, reload_every)
                .map_err(|e| anyhow::anyhow!("trunk {}: tls for {}: {e}", name.trunk_name, name.gateway.host))?;
            Some(c)
        } else {
            None
        };
        let task = Task {
            name: name.clone(),
            resolver: resolver.clone(),
            dialer: dialer.clone(),
            guard: guard.clone(),
            connector,
            min: settings.min_refresh,
            max: settings.max_refresh,
            tx: tx.clone(),
        };
        tokio::spawn(task.run());
    }
    Ok(Some(rx))
}

fn may_use(g: &DnsGateway, t: Transport) -> bool {
    g.transport.is_none_or(|x| x == t)
}

/// The resolver of `settings`: its servers, else the system's.
fn resolver(settings: &DnsSettings) -> anyhow::Result<TokioResolver> {
    let provider = TokioConnectionProvider::default();
    let mut builder = if settings.servers.is_empty() {
        TokioResolver::builder_tokio().map_err(|e| anyhow::anyhow!("reading /etc/resolv.conf (dns.servers): {e}"))?
    } else {
        let mut config = ResolverConfig::new();
        for &s in &settings.servers {
            config.add_name_server(NameServerConfig::new(s, Protocol::Udp));
            // Answers too large for UDP come again over TCP.
            config.add_name_server(NameServerConfig::new(s, Protocol::Tcp));
        }
        TokioResolver::builder_with_config(config, provider)
    };
    let opts: &mut ResolverOpts = builder.options_mut();
    opts.timeout = settings.timeout;
    opts.attempts = settings.attempts;
    // Gateway names are names in DNS, not host aliases.
    opts.use_hosts_file = ResolveHosts::Never;
    // A refresh must see the servers' answer, not the resolver's own cache beyond our refresh bounds.
    opts.positive_max_ttl = Some(settings.max_refresh);
    opts.negative_max_ttl = Some(settings.min_refresh);
    Ok(builder.build())
}

struct Task {
    name: DnsName,
    resolver: TokioResolver,
    dialer: Option<Dialer>,
    guard: EdgeGuard,
    connector: Option<crate::tls::Connector>,
    min: Duration,
    max: Duration,
    tx: mpsc::Sender<Update>,
}

impl Task {
    async fn run(self) {
        let g = &self.name.gateway;
        let label = g.display();
        loop {
            let started = Instant::now();
            let (result, wait) = match lookup(&self.resolver, g).await {
                Ok((targets, valid_until)) => {
                    tracing::debug!(trunk = %self.name.trunk_name, gateway = %label, targets = ?targets, "resolved");
                    self.publish(targets).await;
                    ("ok", valid_until.saturating_duration_since(started))
                }
                Err(LookupError::NoTargets) => {
                    tracing::warn!(trunk = %self.name.trunk_name, gateway = %label, "the gateway's name has no target: its calls go to the next gateway or carrier");
                    self.publish(Vec::new()).await;
                    ("empty", self.min)
                }
                Err(e) => {
                    tracing::warn!(trunk = %self.name.trunk_name, gateway = %label, error = %e, "looking up the gateway failed: the last answer stays in force");
                    ("error", self.min)
                }
            };
            metrics::counter!(LOOKUPS, "result" => result).increment(1);
            if self.tx.is_closed() {
                return;
            }
            tokio::time::sleep(wait.clamp(self.min, self.max)).await;
        }
    }

    async fn publish(&self, targets: Vec<Target>) {
        for t in &targets {
            let g = t.gateway;
            self.guard.add_known(g.addr.ip());
            if let (Some(d), true) = (&self.dialer, g.transport != Transport::Udp) {
                let tls = (g.transport == Transport::Tls).then(|| self.connector.clone()).flatten();
                d.add_target((g.transport, g.addr), DialTarget { trunk: self.name.trunk_name.clone(), tls });
            }
        }
        let update = Update { trunk: self.name.trunk, index: self.name.index, targets };
        let _ = self.tx.send(update).await;
    }
}

/// RFC 3263 §4: a port given → A/AAAA only; a transport given → its SRV records, else A/AAAA; neither → NAPTR
/// (`SIP+D2U`, `SIP+D2T`, `SIPS+D2T`, in order and preference), else SRV of each transport, else A/AAAA over UDP.
/// Returns the targets and when the shortest-lived record of the answer expires.
pub async fn lookup(r: &TokioResolver, g: &DnsGateway) -> Result<(Vec<Target>, Instant), LookupError> {
    let host = fqdn(&g.host);
    let mut until = Instant::now() + Duration::from_secs(86_400);
    if let Some(port) = g.port {
        let transport = g.transport.unwrap_or(Transport::Udp);
        return addresses(r, &host, port, transport, 0, 1, &mut until).await.map(|t| (t, until));
    }
    let transports: Vec<(Transport, String)> = match g.transport {
        Some(t) => vec![(t, srv_name(t, &host))],
        None => {
            let mut from_naptr = naptr(r, &host, &mut until).await?;
            if from_naptr.is_empty() {
                from_naptr = [Transport::Udp, Transport::Tcp, Transport::Tls].map(|t| (t, srv_name(t, &host))).into();
            }
            from_naptr
        }
    };
    for (transport, name) in &transports {
        let targets = srv(r, name, *transport, &mut until).await?;
        if !targets.is_empty() {
            return Ok((targets, until));
        }
    }
    // No SRV: the host itself on the transport's default port (§4.2).
    let transport = g.transport.unwrap_or(Transport::Udp);
    addresses(r, &host, default_port(transport), transport, 0, 1, &mut until).await.map(|t| (t, until))
}

fn fqdn(host: &str) -> String {
    format!("{host}.")
}

fn default_port(t: Transport) -> u16 {
    if t == Transport::Tls {
        5061
    } else {
        5060
    }
}

fn srv_name(t: Transport, host: &str) -> String {
    match t {
        Transport::Tls => format!("_sips._tcp.{host}"),
        Transport::Tcp => format!("_sip._tcp.{host}"),
        _ => format!("_sip._udp.{host}"),
    }
}

/// The SRV names the NAPTR records of `host` lead to, best first; empty when it has none we support.
async fn naptr(r: &TokioResolver, host: &str, until: &mut Instant) -> Result<Vec<(Transport, String)>, LookupError> {
    let lookup = match r.lookup(host, RecordType::NAPTR).await {
        Ok(l) => l,
        Err(e) if e.is_no_records_found() => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    *until = (*until).min(lookup.valid_until());
    let mut records: Vec<(u16, u16, Transport, String)> = lookup
        .iter()
        .filter_map(|rd| match rd {
            RData::NAPTR(n) if n.flags().eq_ignore_ascii_case(b"s") => {
                let transport = match n.services().to_ascii_uppercase().as_slice() {
                    b"SIP+D2U" => Transport::Udp,
                    b"SIP+D2T" => Transport::Tcp,
                    b"SIPS+D2T" => Transport::Tls,
                    _ => return None,
                };
                Some((n.order(), n.preference(), transport, n.replacement().to_ascii()))
            }
            _ => None,
        })
        .collect();
    records.sort_by_key(|&(order, pref, _, _)| (order, pref));
    Ok(records.into_iter().map(|(_, _, t, name)| (t, name)).collect())
}

/// The targets of SRV name `name` over `transport`, each target host's addresses with its priority and weight.
async fn srv(
    r: &TokioResolver,
    name: &str,
    transport: Transport,
    until: &mut Instant,
) -> Result<Vec<Target>, LookupError> {
    let lookup = match r.srv_lookup(name).await {
        Ok(l) => l,
        Err(e) if e.is_no_records_found() => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    *until = (*until).min(lookup.as_lookup().valid_until());
    let mut out = Vec::new();
    for s in lookup.iter() {
        // RFC 2782: a target of "." means the service is decidedly not available here.
        if s.target().is_root() {
            continue;
        }
        let host = s.target().to_ascii();
        match addresses(r, &host, s.port(), transport, s.priority(), s.weight(), until).await {
            Ok(t) => out.extend(t),
            Err(LookupError::NoTargets) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The A/AAAA addresses of `host` as targets on `port`.
async fn addresses(
    r: &TokioResolver,
    host: &str,
    port: u16,
    transport: Transport,
    priority: u16,
    weight: u16,
    until: &mut Instant,
) -> Result<Vec<Target>, LookupError> {
    let ips = match r.lookup_ip(host).await {
        Ok(l) => l,
        Err(e) if e.is_no_records_found() => return Err(LookupError::NoTargets),
        Err(e) => return Err(e.into()),
    };
    *until = (*until).min(ips.valid_until());
    let targets: Vec<Target> = ips
        .iter()
        .map(|ip| Target { priority, weight, gateway: Gateway { transport, addr: SocketAddr::new(ip, port) } })
        .collect();
    if targets.is_empty() {
        return Err(LookupError::NoTargets);
    }
    Ok(targets)
}
