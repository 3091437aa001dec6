//! One `[[trunk]]`: sources, gateways, limits, probing, credentials, failover triggers, number rules and identity
//! policy, validated into [`sbc_proto::routing::Trunk`]. `numbers` holds the number and identity keys.

mod canary;
mod gateway;
mod numbers;

use super::parse_listen;
use super::routing::Check;
use ipnet::IpNet;
use numbers::{RawCli, RawIdentity, RawNumbers};
use relay_proto::sdes::SrtpMode;
use sbc_proto::policy::digest::Secret;
use sbc_proto::routing::{
    Credentials, DnsGateway, FailoverConfigError, FailoverTriggers, Gateway, Limits, ProbeConfig, Registration,
    SourceMatch, StatusSet, Trunk,
};
use sbc_proto::transport::Transport;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;
use toml::Spanned;

// Headers the B2BUA builds for each leg itself (the one list lives next to the code that builds them): copying
// them from the other leg would break the call or leak its topology, so `pass_headers` refuses them.
use sbc_proto::b2bua::BUILT_HEADERS;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrunk {
    pub(super) name: Spanned<String>,
    #[serde(rename = "match")]
    source_match: Option<RawMatch>,
    gateways: Option<Vec<Spanned<String>>>,
    limits: Option<RawLimits>,
    probe: Option<Spanned<RawProbe>>,
    auth: Option<Spanned<RawAuth>>,
    inbound_auth: Option<Spanned<RawAuth>>,
    failover_on: Option<Vec<Spanned<i64>>>,
    failover_on_timeout: Option<bool>,
    failover_on_transport_error: Option<bool>,
    pass_headers: Option<Vec<Spanned<String>>>,
    follow_redirects: Option<bool>,
    disabled: Option<bool>,
    numbers_in: Option<RawNumbers>,
    numbers_out: Option<RawNumbers>,
    trusted: Option<bool>,
    verified_number: Option<Spanned<String>>,
    cli: Option<RawCli>,
    pub(super) srtp: Option<Spanned<String>>,
    tls: Option<Spanned<super::tls::RawTrunkTls>>,
    register: Option<Spanned<RawRegister>>,
    canary: Option<Spanned<canary::RawCanary>>,
}

impl RawTrunk {
    /// Whether `gateways` lists any, valid or not (a route to a trunk with a bad gateway is not a second error).
    pub(super) fn has_gateways(&self) -> bool {
        self.gateways.as_ref().is_some_and(|g| !g.is_empty())
    }

    /// Whether the trunk stands for no peer of its own (no gateways, `match`, `inbound_auth` or `register`): only
    /// such a trunk can be the registered users' (`[registrar] trunk`).
    pub(super) fn is_pseudo(&self) -> bool {
        !self.has_gateways() && self.source_match.is_none() && self.inbound_auth.is_none() && self.register.is_none()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    source: Option<Vec<Spanned<String>>>,
    tls: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    calls: Option<Spanned<u32>>,
    cps: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    options_every: Option<Spanned<String>>,
    down_after: Option<Spanned<u32>>,
    up_after: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    username: Spanned<String>,
    password_env: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegister {
    username: Option<Spanned<String>>,
    password_env: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    registrar: Option<Spanned<String>>,
    domain: Option<Spanned<String>>,
    expires: Option<Spanned<i64>>,
    contact_user: Option<Spanned<String>>,
}

/// The shortest and longest `register.expires` accepted, in seconds: shorter would keep the registrar busy,
/// longer would leave a dead binding for days.
const EXPIRES_RANGE: std::ops::RangeInclusive<i64> = 30..=86_400;

/// The trunk, and its `tls` (client settings and whether it uses `sips:` URIs) when it has one.
pub(super) fn trunk(
    c: &mut Check<'_, '_>,
    i: usize,
    raw: &RawTrunk,
    base_dir: &Path,
) -> (Trunk, Option<(crate::tls::ClientSettings, bool)>) {
    let name = raw.name.get_ref();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        c.error(
            raw.name.span(),
            &format!("trunk[{i}].name"),
            &format!("\"{name}\": use letters, digits, '-', '_' and '.' (the name appears in metrics and the API)"),
        );
    }
    let sources = raw.source_match.as_ref().and_then(|m| m.source.as_deref()).unwrap_or_default();
    let tls_identities: Vec<String> = raw
        .source_match
        .as_ref()
        .and_then(|m| m.tls.as_deref())
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter_map(|(j, n)| {
            tls_name(n.get_ref()).map_err(|m| c.error(n.span(), &format!("trunk[{i}].match.tls[{j}]"), &m)).ok()
        })
        .collect();
    let sources = sources
        .iter()
        .enumerate()
        .filter_map(|(j, s)| {
            parse_source(s.get_ref()).map_err(|m| c.error(s.span(), &format!("trunk[{i}].match.source[{j}]"), &m)).ok()
        })
        .collect();
    let raw_gateways = raw.gateways.as_deref().unwrap_or_default();
    let mut gateways: Vec<Gateway> = Vec::new();
    let mut dns_gateways: Vec<DnsGateway> = Vec::new();
    for (j, s) in raw_gateways.iter().enumerate() {
        match gateway::parse(s.get_ref(), j) {
            Ok(gateway::Entry::Addr(g)) => gateways.push(g),
            // Positions count the valid entries only, as the core merges the two lists by them.
            Ok(gateway::Entry::Name(d)) => {
                dns_gateways.push(DnsGateway { position: gateways.len() + dns_gateways.len(), ..d })
            }
            Err(m) => c.error(s.span(), &format!("trunk[{i}].gateways[{j}]"), &m),
        }
    }
    // A name without transport may resolve to TLS targets (NAPTR), so `tls` applies to it as well.
    let may_use_tls = gateways.iter().any(|g| g.transport == Transport::Tls)
        || dns_gateways.iter().any(|d| d.transport.is_none_or(|t| t == Transport::Tls));
    let limits = raw.limits.as_ref().map_or(Limits::default(), |l| {
        let mut at_least_one = |v: &Option<Spanned<u32>>, key: &str| match v {
            Some(n) if *n.get_ref() == 0 => {
                c.error(
                    n.span(),
                    &format!("trunk[{i}].limits.{key}"),
                    "must be at least 1 (leave it out for no limit; `disabled = true` stops all calls)",
                );
                None
            }
            v => v.as_ref().map(|n| *n.get_ref()),
        };
        Limits { calls: at_least_one(&l.calls, "calls"), cps: at_least_one(&l.cps, "cps") }
    });
    let probe = raw.probe.as_ref().map(|p| {
        if raw_gateways.is_empty() {
            c.error(p.span(), &format!("trunk[{i}].probe"), "the trunk has no gateways to probe");
        }
        probe_config(c, i, p.get_ref())
    });
    let auth = raw.auth.as_ref().and_then(|a| credentials(c, i, "auth", a, base_dir));
    let inbound_auth = raw.inbound_auth.as_ref().and_then(|a| credentials(c, i, "inbound_auth", a, base_dir));
    let register = raw.register.as_ref().and_then(|r| registration(c, i, r, auth.as_ref(), &gateways, base_dir));
    let failover = FailoverTriggers {
        codes: raw.failover_on.as_ref().map_or_else(default_codes, |list| failover_codes(c, i, list)),
        timeout: raw.failover_on_timeout.unwrap_or(true),
        transport_error: raw.failover_on_transport_error.unwrap_or(true),
    };
    let pass_headers = raw
        .pass_headers
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter_map(|(j, h)| {
            pass_header(h.get_ref()).map_err(|m| c.error(h.span(), &format!("trunk[{i}].pass_headers[{j}]"), &m)).ok()
        })
        .collect();
    let numbers_in = numbers::number_rules(c, i, "numbers_in", raw.numbers_in.as_ref());
    let numbers_out = numbers::number_rules(c, i, "numbers_out", raw.numbers_out.as_ref());
    let identity = RawIdentity { trusted: raw.trusted, verified_number: raw.verified_number.as_ref(), cli: raw.cli };
    let (identity_in, identity_out) = numbers::identity(c, i, identity);
    let srtp = raw.srtp.as_ref().map_or(SrtpMode::Off, |s| {
        SrtpMode::from_name(s.get_ref()).unwrap_or_else(|| {
            let message = format!("\"{}\": expected \"off\", \"optional\" or \"required\"", s.get_ref());
            c.error(s.span(), &format!("trunk[{i}].srtp"), &message);
            SrtpMode::Off
        })
    });
    let tls = raw.tls.as_ref().and_then(|t| {
        if !may_use_tls {
            c.error(t.span(), &format!("trunk[{i}].tls"), "the trunk has no tls: gateways");
            return None;
        }
        super::tls::trunk_tls(c, i, t)
    });
    let first_tls = raw_gateways.iter().position(|g| {
        let g = g.get_ref().to_ascii_lowercase();
        g.starts_with("tls:") || g.starts_with("sips:") || g.contains(";transport=tls")
    });
    if let (None, Some(j)) = (&raw.tls, first_tls) {
        // No `tls`: the gateways are checked against the system's CA store, which must then have something in it.
        if let Err(e) = crate::tls::ClientSettings::default().build() {
            let span = raw_gateways.get(j).map_or(0..0, |s| s.span());
            c.error(span, &format!("trunk[{i}].gateways[{j}]"), &format!("{e} (trunk[{i}].tls.ca)"));
        }
    }
    let canary = raw.canary.as_ref().and_then(|k| canary::canary(c, i, k, gateways.len()));
    let trunk = Trunk {
        name: name.clone(),
        sources,
        tls_identities,
        // RFC 3263: a carrier known only by its name is addressed by it (its certificate name, when set, wins).
        uri_host: tls
            .as_ref()
            .and_then(|(s, _)| s.server_name.clone())
            .or_else(|| gateways.is_empty().then(|| dns_gateways.first().map(|d| d.host.clone())).flatten()),
        sips: tls.as_ref().is_some_and(|(_, sips)| *sips),
        gateways,
        dns_gateways,
        failover,
        limits,
        probe,
        auth,
        inbound_auth,
        pass_headers,
        follow_redirects: raw.follow_redirects.unwrap_or(false),
        disabled: raw.disabled.unwrap_or(false),
        numbers_in,
        numbers_out,
        identity_in,
        identity_out,
        srtp,
        register,
        canary,
    };
    (trunk, tls)
}

/// The `tcp:` and `tls:` gateways of trunk `t` (entry `i`), added to `out`, and its DNS-named gateways, added to
/// `names`. A gateway two trunks share must be reached the same way by both (one connection serves it).
pub(super) fn dial_specs(
    c: &mut Check<'_, '_>,
    i: usize,
    raw: &RawTrunk,
    t: &Trunk,
    tls: Option<(crate::tls::ClientSettings, bool)>,
    out: &mut Vec<super::DialSpec>,
    names: &mut Vec<super::DnsName>,
) {
    let settings = tls.map(|(s, _)| s).unwrap_or_default();
    for (index, d) in t.dns_gateways.iter().enumerate() {
        // RFC 5922: a TLS target found through DNS must present the domain that was looked up, unless the trunk
        // names the certificate itself.
        let mut tls = settings.clone();
        tls.server_name.get_or_insert_with(|| d.host.clone());
        names.push(super::DnsName {
            trunk: sbc_proto::routing::TrunkId(i as u32),
            trunk_name: t.name.clone(),
            index,
            gateway: d.clone(),
            tls,
        });
    }
    for (j, g) in t.gateways.iter().enumerate().filter(|(_, g)| g.transport != Transport::Udp) {
        let spec = super::DialSpec {
            trunk: t.name.clone(),
            transport: g.transport,
            addr: g.addr,
            tls: (g.transport == Transport::Tls).then(|| settings.clone()),
        };
        match out.iter().find(|d| d.transport == g.transport && d.addr == g.addr) {
            Some(d) if d.tls != spec.tls => {
                let span = raw.gateways.as_ref().and_then(|l| l.get(j)).map_or(0..0, |s| s.span());
                c.error(
                    span,
                    &format!("trunk[{i}].gateways[{j}]"),
                    &format!(
                        "trunk {} reaches this gateway with other tls settings; one connection serves both",
                        d.trunk
                    ),
                );
            }
            Some(_) => {}
            None => out.push(spec),
        }
    }
}

/// A `match.tls` name: a DNS name (letters, digits, '-', '.'), compared without case.
fn tls_name(n: &str) -> Result<String, String> {
    let ok = !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
    if ok {
        Ok(n.to_ascii_lowercase())
    } else {
        Err(format!("\"{n}\" is not a certificate name (a DNS name as in the certificate's CN or subjectAltName)"))
    }
}

fn default_codes() -> StatusSet {
    FailoverTriggers::default().codes
}

/// `failover_on`: each code a final non-2xx status (300-699), checked by [`StatusSet::from_codes`].
fn failover_codes(c: &mut Check<'_, '_>, i: usize, list: &[Spanned<i64>]) -> StatusSet {
    let mut codes = Vec::with_capacity(list.len());
    for (j, s) in list.iter().enumerate() {
        match u16::try_from(*s.get_ref()) {
            Ok(code) => codes.push(code),
            Err(_) => {
                let message = format!("{} is not a SIP status code", s.get_ref());
                c.error(s.span(), &format!("trunk[{i}].failover_on[{j}]"), &message);
                return default_codes();
            }
        }
    }
    StatusSet::from_codes(&codes).unwrap_or_else(|e| {
        let j = match e {
            FailoverConfigError::NotAFailure(bad) => codes.iter().position(|&code| code == bad).unwrap_or(0),
            _ => 0,
        };
        c.error(list[j].span(), &format!("trunk[{i}].failover_on[{j}]"), &e.to_string());
        default_codes()
    })
}

fn probe_config(c: &mut Check<'_, '_>, i: usize, p: &RawProbe) -> ProbeConfig {
    let mut config = ProbeConfig::default();
    if let Some(s) = &p.options_every {
        match c.v.duration(s, &format!("trunk[{i}].probe.options_every")) {
            Ok(d) => config.interval = d,
            Err(e) => c.errors.push(e),
        }
    }
    for (value, key, field) in
        [(&p.down_after, "down_after", &mut config.down_after), (&p.up_after, "up_after", &mut config.up_after)]
    {
        match value {
            Some(n) if *n.get_ref() == 0 => c.error(n.span(), &format!("trunk[{i}].probe.{key}"), "must be at least 1"),
            Some(n) => *field = *n.get_ref(),
            None => {}
        }
    }
    config
}

/// Reads the password now, so that a missing one fails the load rather than the first challenge. Errors name the
/// variable or file, never the value.
fn credentials(
    c: &mut Check<'_, '_>,
    i: usize,
    field: &str,
    auth: &Spanned<RawAuth>,
    base_dir: &Path,
) -> Option<Credentials> {
    let a = auth.get_ref();
    if a.username.get_ref().is_empty() {
        c.error(a.username.span(), &format!("trunk[{i}].{field}.username"), "must not be empty");
    }
    let password = super::secret::read(
        "password",
        a.password_env.as_ref(),
        a.password_file.as_ref(),
        &format!("trunk[{i}].{field}"),
        auth.span(),
        base_dir,
    );
    match password {
        Ok(p) => Some(Credentials { username: a.username.get_ref().clone(), password: Secret::new(p) }),
        Err((span, key, message)) => {
            c.error(span, &key, &message);
            None
        }
    }
}

/// `trunk[i].register`: the account (its own `username` and password, else the trunk's `auth`), the registrar
/// (else the first gateway), the domain (else the registrar's address), `expires` and `contact_user`.
fn registration(
    c: &mut Check<'_, '_>,
    i: usize,
    raw: &Spanned<RawRegister>,
    auth: Option<&Credentials>,
    gateways: &[Gateway],
    base_dir: &Path,
) -> Option<Registration> {
    let key = |k: &str| format!("trunk[{i}].register.{k}");
    let r = raw.get_ref();
    let username = match (&r.username, auth) {
        (Some(u), _) if u.get_ref().is_empty() || !u.get_ref().bytes().all(is_user_char) => {
            c.error(u.span(), &key("username"), &format!("\"{}\" is not a SIP user name", u.get_ref()));
            None
        }
        (Some(u), _) => Some(u.get_ref().clone()),
        (None, Some(a)) => Some(a.username.clone()),
        (None, None) => {
            c.error(raw.span(), &key("username"), "needed (or the trunk's auth.username)");
            None
        }
    };
    let password = if r.password_env.is_some() || r.password_file.is_some() {
        let read = super::secret::read(
            "password",
            r.password_env.as_ref(),
            r.password_file.as_ref(),
            &format!("trunk[{i}].register"),
            raw.span(),
            base_dir,
        );
        read.map(Secret::new).map_err(|(span, key, message)| c.error(span, &key, &message)).ok()
    } else if let Some(a) = auth {
        Some(a.password.clone())
    } else {
        c.error(raw.span(), &key("password_env"), "needs password_env or password_file (or the trunk's auth)");
        None
    };
    let registrar = match &r.registrar {
        Some(g) => match parse_gateway(g.get_ref()) {
            // A tcp: or tls: registrar is reached over the connection the trunk's gateway has.
            Ok(reg) if reg.transport != Transport::Udp && !gateways.contains(&reg) => {
                let message =
                    format!("\"{}\": a tcp: or tls: registrar must be one of the trunk's gateways", g.get_ref());
                c.error(g.span(), &key("registrar"), &message);
                None
            }
            Ok(reg) => Some(reg),
            Err(m) => {
                c.error(g.span(), &key("registrar"), &m);
                None
            }
        },
        None => gateways.first().copied().or_else(|| {
            c.error(raw.span(), &key("registrar"), "needed: the trunk has no gateway given by its address to register with (a registrar by DNS name is not supported: give its address here)");
            None
        }),
    };
    let domain = match &r.domain {
        Some(d)
            if d.get_ref().is_empty()
                || !d.get_ref().bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b)) =>
        {
            c.error(d.span(), &key("domain"), &format!("\"{}\" is not a host name or address", d.get_ref()));
            None
        }
        Some(d) => Some(d.get_ref().clone()),
        None => registrar.map(|g| match g.addr {
            a if a.port() == 5060 && a.is_ipv4() => a.ip().to_string(),
            a if a.port() == 5060 => format!("[{}]", a.ip()),
            a => a.to_string(),
        }),
    };
    let expires = match &r.expires {
        Some(e) if !EXPIRES_RANGE.contains(e.get_ref()) => {
            let message =
                format!("{} s is out of range: {} to {} s", e.get_ref(), EXPIRES_RANGE.start(), EXPIRES_RANGE.end());
            c.error(e.span(), &key("expires"), &message);
            None
        }
        Some(e) => Some(Duration::from_secs(*e.get_ref() as u64)),
        None => Some(Duration::from_secs(600)),
    };
    let contact_user = match &r.contact_user {
        Some(u) if u.get_ref().is_empty() || !u.get_ref().bytes().all(is_user_char) => {
            c.error(u.span(), &key("contact_user"), &format!("\"{}\" is not a SIP user name", u.get_ref()));
            None
        }
        Some(u) => Some(u.get_ref().clone()),
        None => username.clone(),
    };
    Some(Registration {
        credentials: Credentials { username: username?, password: password? },
        registrar: registrar?,
        domain: domain?,
        expires: expires?,
        contact_user: contact_user?,
    })
}

/// A character a SIP user part may hold unescaped (RFC 3261 §25.1: unreserved and user-unreserved).
fn is_user_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&b)
}

/// A `match.source` entry: an address or network, optionally with a port.
/// `198.18.1.10` (/32), `198.18.1.0/24`, `198.18.1.10:5070`, `198.18.1.0/24:5060`; IPv6 as `2001:db8::1` (/128),
/// `2001:db8::/32`, or in brackets with a port: `[2001:db8::1]:5070`, `[2001:db8::/32]:5070`.
fn parse_source(s: &str) -> Result<SourceMatch, String> {
    let usage =
        || format!("\"{s}\": expected ADDRESS, NETWORK/LEN, or either with :PORT (IPv6 in brackets with a port)");
    let (net, port) = if let Some(rest) = s.strip_prefix('[') {
        let (net, after) = rest.split_once(']').ok_or_else(usage)?;
        match after {
            "" => (net, None),
            _ => (net, Some(after.strip_prefix(':').ok_or_else(usage)?)),
        }
    } else if s.matches(':').count() == 1 {
        let (net, port) = s.split_once(':').ok_or_else(usage)?;
        (net, Some(port))
    } else {
        (s, None)
    };
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p > 0 => Some(p),
            _ => return Err(format!("\"{s}\": port \"{p}\" is not 1-65535")),
        },
    };
    let net = if net.contains('/') {
        let parsed: IpNet = net.parse().map_err(|_| usage())?;
        if parsed.trunc() != parsed {
            return Err(format!(
                "\"{s}\": {parsed} has host bits set; write the network ({}) or a single address ({}/{})",
                parsed.trunc(),
                parsed.addr(),
                parsed.max_prefix_len()
            ));
        }
        parsed
    } else {
        IpNet::from(net.parse::<IpAddr>().map_err(|_| usage())?)
    };
    Ok(SourceMatch { net, port })
}

/// A gateway: `TRANSPORT:ADDRESS:PORT`, the syntax of `sip.listen`.
fn parse_gateway(s: &str) -> Result<Gateway, String> {
    let l = parse_listen(s)?;
    if l.addr.ip().is_unspecified() || l.addr.ip().is_multicast() || l.addr.port() == 0 {
        return Err(format!("\"{s}\": a gateway needs a unicast address and a port other than 0"));
    }
    Ok(Gateway { transport: l.transport, addr: SocketAddr::new(l.addr.ip(), l.addr.port()) })
}

/// A header name to copy to the other leg, lower-cased: an RFC 3261 §25.1 token, not one the B2BUA builds.
fn pass_header(h: &str) -> Result<String, String> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b);
    if h.is_empty() || !h.bytes().all(token) {
        return Err(format!("\"{h}\" is not a header name"));
    }
    let lower = h.to_ascii_lowercase();
    if BUILT_HEADERS.contains(&lower.as_str()) {
        return Err(format!("{h} is built by the SBC for each leg and cannot be passed through"));
    }
    Ok(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(s: &str) -> (String, Option<u16>) {
        let m = parse_source(s).unwrap_or_else(|e| panic!("{e}"));
        (m.net.to_string(), m.port)
    }

    #[test]
    fn source_forms_with_and_without_port() {
        assert_eq!(source("198.18.1.10"), ("198.18.1.10/32".into(), None));
        assert_eq!(source("198.18.1.0/24"), ("198.18.1.0/24".into(), None));
        assert_eq!(source("198.18.1.10:5070"), ("198.18.1.10/32".into(), Some(5070)));
        assert_eq!(source("198.18.1.0/24:5060"), ("198.18.1.0/24".into(), Some(5060)));
        assert_eq!(source("2001:db8::1"), ("2001:db8::1/128".into(), None));
        assert_eq!(source("2001:db8::/32"), ("2001:db8::/32".into(), None));
        assert_eq!(source("[2001:db8::1]:5070"), ("2001:db8::1/128".into(), Some(5070)));
        assert_eq!(source("[2001:db8::/32]:5070"), ("2001:db8::/32".into(), Some(5070)));
        assert_eq!(source("[2001:db8::1]"), ("2001:db8::1/128".into(), None));
        for bad in ["", "198.18.1", "198.18.1.10:", "198.18.1.10:x", "[2001:db8::1]5070", "2001:db8::1/129", "host"] {
            assert!(parse_source(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn gateways_need_a_unicast_address_and_a_port() {
        let g = parse_gateway("tcp:[2001:db8::10]:5060").expect("valid");
        assert_eq!((g.transport, g.addr.port()), (sbc_proto::transport::Transport::Tcp, 5060));
        assert!(parse_gateway("udp:0.0.0.0:5060").is_err());
        assert!(parse_gateway("udp:198.18.2.10:0").is_err());
        assert!(parse_gateway("udp:224.0.0.1:5060").is_err());
        assert!(parse_gateway("198.18.2.10:5060").is_err());
    }

    #[test]
    fn pass_headers_are_lower_cased_tokens_the_sbc_does_not_build() {
        assert_eq!(pass_header("X-Account-Code"), Ok("x-account-code".to_owned()));
        assert!(pass_header("Call-ID").is_err());
        assert!(pass_header("X:Y").is_err());
        assert!(pass_header("").is_err());
    }
}
