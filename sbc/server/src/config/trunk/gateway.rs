//! One entry of a trunk's `gateways`: an address (`udp:198.18.2.10:5060`), or a host name resolved as RFC 3263 says
//! (`sip:carrier.example.net`, `sip:carrier.example.net:5080;transport=tcp`, `sips:carrier.example.net`,
//! `tls:carrier.example.net`, `udp:carrier.example.net:5060`). Only the syntax is checked here: names are looked up
//! by the running server, so `sbc check-config` works without DNS.

use sbc_proto::routing::{DnsGateway, Gateway};
use sbc_proto::transport::Transport;
use std::net::{IpAddr, SocketAddr};

/// A parsed `gateways` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Entry {
    /// An address: used as it is.
    Addr(Gateway),
    /// A host name: resolved at run time.
    Name(DnsGateway),
}

/// Parses entry number `position` of `gateways`.
pub(super) fn parse(s: &str, position: usize) -> Result<Entry, String> {
    let lower = s.to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("sips:") {
        return uri(s, rest, position, true);
    }
    if let Some(rest) = lower.strip_prefix("sip:") {
        return uri(s, rest, position, false);
    }
    if let Ok(g) = super::parse_gateway(s) {
        return Ok(Entry::Addr(g));
    }
    // `TRANSPORT:HOST[:PORT]` with a host name.
    let usage = || {
        format!(
            "\"{s}\": expected TRANSPORT:ADDRESS:PORT (udp, tcp or tls), TRANSPORT:HOST[:PORT] or \
             sip:HOST[:PORT][;transport=udp|tcp|tls]"
        )
    };
    let (transport, rest) = lower.split_once(':').ok_or_else(usage)?;
    let transport = transport_named(transport).ok_or_else(usage)?;
    let (host, port) = host_port(s, rest)?;
    if host.parse::<IpAddr>().is_ok() {
        // An address without a port (`udp:198.18.2.10`) is not a name: parse_gateway already said what is wrong.
        return super::parse_gateway(s).map(Entry::Addr);
    }
    Ok(Entry::Name(DnsGateway { position, host, port, transport: Some(transport) }))
}

/// `sip:` / `sips:` URI forms (RFC 3261 §19.1.1, only host, port and `transport`).
fn uri(s: &str, rest: &str, position: usize, sips: bool) -> Result<Entry, String> {
    let mut parts = rest.split(';');
    let hostport = parts.next().unwrap_or_default();
    let mut transport = sips.then_some(Transport::Tls);
    for p in parts {
        match p.split_once('=') {
            Some(("transport", t)) => {
                let named = transport_named(t)
                    .ok_or_else(|| format!("\"{s}\": transport={t} is not one of udp, tcp and tls"))?;
                if sips && named != Transport::Tls {
                    return Err(format!("\"{s}\": a sips: gateway is reached over TLS only"));
                }
                transport = Some(named);
            }
            _ => return Err(format!("\"{s}\": only the transport parameter is understood in a gateway URI")),
        }
    }
    if hostport.contains('@') {
        return Err(format!("\"{s}\": a gateway URI has no user part"));
    }
    let (host, port) = host_port(s, hostport)?;
    if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
        // RFC 3263 §4.2: a numeric host is used as it is, on the default port of its transport.
        let transport = transport.unwrap_or(Transport::Udp);
        let port = port.unwrap_or(if transport == Transport::Tls { 5061 } else { 5060 });
        if ip.is_unspecified() || ip.is_multicast() {
            return Err(format!("\"{s}\": a gateway needs a unicast address"));
        }
        return Ok(Entry::Addr(Gateway { transport, addr: SocketAddr::new(ip, port) }));
    }
    Ok(Entry::Name(DnsGateway { position, host, port, transport }))
}

fn transport_named(t: &str) -> Option<Transport> {
    match t {
        "udp" => Some(Transport::Udp),
        "tcp" => Some(Transport::Tcp),
        "tls" => Some(Transport::Tls),
        _ => None,
    }
}

/// `HOST[:PORT]`: a DNS name (RFC 1035 letters, digits, '-', '.'; a trailing dot dropped) or an address in
/// brackets for IPv6.
fn host_port(s: &str, hostport: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.ends_with(']') => {
            let port = p.parse::<u16>().ok().filter(|&p| p != 0);
            (h, Some(port.ok_or_else(|| format!("\"{s}\": the port must be a number from 1 to 65535"))?))
        }
        _ => (hostport, None),
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.starts_with('[') || host.parse::<IpAddr>().is_ok() {
        return Ok((host.to_owned(), port));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
        return Err(format!("\"{s}\": \"{host}\" is not a host name"));
    }
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> (String, Option<u16>, Option<Transport>) {
        match parse(s, 0) {
            Ok(Entry::Name(d)) => (d.host, d.port, d.transport),
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn name_forms_keep_what_rfc_3263_needs_to_choose_naptr_srv_or_a() {
        assert_eq!(name("sip:carrier.example.net"), ("carrier.example.net".into(), None, None));
        assert_eq!(name("SIP:Carrier.Example.NET."), ("carrier.example.net".into(), None, None));
        assert_eq!(
            name("sip:carrier.example.net;transport=tls"),
            ("carrier.example.net".into(), None, Some(Transport::Tls))
        );
        assert_eq!(name("sip:carrier.example.net:5080"), ("carrier.example.net".into(), Some(5080), None));
        assert_eq!(name("sips:carrier.example.net"), ("carrier.example.net".into(), None, Some(Transport::Tls)));
        assert_eq!(name("udp:carrier.example.net"), ("carrier.example.net".into(), None, Some(Transport::Udp)));
        assert_eq!(
            name("tls:carrier.example.net:5061"),
            ("carrier.example.net".into(), Some(5061), Some(Transport::Tls))
        );
    }

    #[test]
    fn numeric_hosts_are_addresses_with_the_transports_default_port() {
        let addr = |s: &str| match parse(s, 0) {
            Ok(Entry::Addr(g)) => (g.transport, g.addr.to_string()),
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(addr("udp:198.18.2.10:5060"), (Transport::Udp, "198.18.2.10:5060".into()));
        assert_eq!(addr("sip:198.18.2.10"), (Transport::Udp, "198.18.2.10:5060".into()));
        assert_eq!(addr("sips:198.18.2.10"), (Transport::Tls, "198.18.2.10:5061".into()));
        assert_eq!(addr("sip:[2001:db8::1]:5070;transport=tcp"), (Transport::Tcp, "[2001:db8::1]:5070".into()));
    }

    #[test]
    fn bad_entries_say_what_is_wrong() {
        for (bad, says) in [
            ("sip:carrier.example.net;transport=sctp", "transport=sctp"),
            ("sips:carrier.example.net;transport=udp", "TLS only"),
            ("sip:carrier.example.net:0", "port"),
            ("sip:carrier.example.net:x", "port"),
            ("sip:user@carrier.example.net", "user part"),
            ("sip:carrier..example.net", "not a host name"),
            ("sip:carrier_example.net", "not a host name"),
            ("sip:carrier.example.net;lr", "transport parameter"),
            ("ws:carrier.example.net", "expected"),
            ("carrier.example.net", "expected"),
            ("udp:198.18.2.10", "ADDRESS:PORT"),
        ] {
            let e = parse(bad, 0).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
