//! Leg B over TCP and TLS: Via, Contact and Request-URI for the transport, failover on a transport error reported
//! by the driver, and trunks recognised by the TLS identity of their connection.

use super::*;
use crate::transport::TlsIdentity;

const B_TLS: &str = "198.18.2.10:5061";
const SBC_B_TLS: &str = "198.18.2.1:5061";

/// The DESIGN world with carrier b reached over TLS at `B_TLS` (named `carrier-b.example.net`, `sips` as given)
/// and a TLS listener on side b.
fn tls_world(sips: bool, tweak: impl FnOnce(&mut Vec<Trunk>)) -> World {
    let mut trunks = vec![
        trunk("customer-pbx", Some("198.18.1.10/32"), None),
        trunk("carrier-b", None, None),
        trunk("carrier-c", None, Some(C)),
    ];
    trunks[1].gateways = vec![Gateway { transport: Transport::Tls, addr: addr(B_TLS) }];
    trunks[1].uri_host = Some("carrier-b.example.net".into());
    trunks[1].sips = sips;
    tweak(&mut trunks);
    let plan = Plan {
        trunks,
        catch_all: Some(vec![Candidate::new(TrunkId(1), 1), Candidate::new(TrunkId(2), 2)]),
        max_post_dial: Duration::from_secs(60),
        ..Plan::default()
    };
    let config = Config {
        plan: Arc::new(plan),
        locals: vec![
            (Transport::Udp, addr(SBC_A)),
            (Transport::Udp, addr(SBC_B)),
            (Transport::Tls, addr(SBC_B_TLS)),
            (Transport::Tls, addr("198.18.1.1:5061")),
        ],
        ..Config::default()
    };
    let mut w = world(Limits::default());
    w.ep = Endpoint::new(config, 42);
    w
}

/// Everything sent, with the peer it went to.
fn sent(w: &mut World) -> Vec<(Peer, Message)> {
    let mut out = Vec::new();
    while let Some(o) = w.ep.poll_output() {
        match o {
            Output::Transmit { peer, bytes } => out.push((peer, parse_datagram(bytes).expect("valid SIP"))),
            Output::Cdr(c) => w.cdrs.push(*c),
            _ => {}
        }
    }
    out
}

fn invite_to(out: &[(Peer, Message)], remote: &str) -> (Peer, Request) {
    out.iter()
        .find_map(|(p, m)| match m {
            Message::Request(r) if p.remote == addr(remote) && r.method == Method::Invite => Some((*p, r.clone())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no INVITE to {remote} in {out:#?}"))
}

fn header(r: &Request, name: HeaderName) -> String {
    String::from_utf8_lossy(r.headers.get(&name).expect("header")).into_owned()
}

#[test]
fn leg_b_over_tls_has_a_tls_via_contact_and_request_uri_with_the_carrier_name() {
    let mut w = tls_world(false, |_| {});
    let peer = Peer { transport: Transport::Udp, local: addr(SBC_A), remote: addr(A), conn: None };
    w.ep.handle_message(w.now, peer, Bytes::from(invite_from_a("tls-1")));
    let out = sent(&mut w);
    let (to_b, invite) = invite_to(&out, B_TLS);
    assert_eq!((to_b.transport, to_b.local), (Transport::Tls, addr(SBC_B_TLS)));
    assert_eq!(invite.uri.as_bytes(), &b"sip:+493012345@carrier-b.example.net:5061;transport=tls"[..]);
    assert!(header(&invite, HeaderName::Via).starts_with("SIP/2.0/TLS 198.18.2.1:5061;branch=z9hG4bK"));
    assert_eq!(header(&invite, HeaderName::Contact), "<sip:198.18.2.1:5061;transport=tls>");
    assert_eq!(header(&invite, HeaderName::To), "<sip:+493012345@carrier-b.example.net>");
}

#[test]
fn a_sips_trunk_gets_sips_uris_and_contact() {
    let mut w = tls_world(true, |_| {});
    let peer = Peer { transport: Transport::Udp, local: addr(SBC_A), remote: addr(A), conn: None };
    w.ep.handle_message(w.now, peer, Bytes::from(invite_from_a("sips-1")));
    let (_, invite) = invite_to(&sent(&mut w), B_TLS);
    assert_eq!(invite.uri.as_bytes(), &b"sips:+493012345@carrier-b.example.net:5061"[..]);
    assert_eq!(header(&invite, HeaderName::Contact), "<sips:198.18.2.1:5061>");
    assert_eq!(header(&invite, HeaderName::To), "<sips:+493012345@carrier-b.example.net>");
}

#[test]
fn a_transport_error_fails_over_to_the_next_carrier_at_once() {
    let mut w = tls_world(false, |_| {});
    let peer = Peer { transport: Transport::Udp, local: addr(SBC_A), remote: addr(A), conn: None };
    w.ep.handle_message(w.now, peer, Bytes::from(invite_from_a("fail-1")));
    let (to_b, _) = invite_to(&sent(&mut w), B_TLS);
    // The driver could not open the TLS connection (refused, handshake, name): no time passes.
    w.ep.handle_transport_error(w.now, to_b);
    let out = sent(&mut w);
    let (to_c, invite_c) = invite_to(&out, C);
    assert_eq!(to_c.transport, Transport::Udp);
    assert!(header(&invite_c, HeaderName::Via).starts_with("SIP/2.0/UDP 198.18.2.1:5060"));
    // c is busy: the call ends, and its record shows b's attempt as a transport error (503).
    let out = w.send(C, SBC_B, answer(&invite_c, 486, "c1", "198.18.2.11:5060", ""));
    response(&out, A, 486);
    let cdr = w.cdrs.first().expect("a CDR");
    let tried: Vec<(&str, u16)> = cdr.attempts.iter().map(|a| (a.trunk.as_str(), a.status)).collect();
    assert_eq!(tried, [("carrier-b", 503), ("carrier-c", 486)]);
    // A second report for the same destination finds nothing left to fail.
    w.ep.handle_transport_error(w.now, to_b);
    assert!(sent(&mut w).is_empty());
}

#[test]
fn a_trunk_is_recognised_by_its_tls_certificate_name_from_any_address() {
    let mut w = tls_world(false, |t| {
        t[0].sources.clear();
        t[0].tls_identities = vec!["pbx.customer.example.net".into()];
    });
    let from = "203.0.113.7:40123";
    let invite = invite_from_a("id-1").replace("198.18.1.10:5060;branch", "203.0.113.7:40123;branch");
    let peer = Peer { transport: Transport::Tls, local: addr("198.18.1.1:5061"), remote: addr(from), conn: None };
    let id = Arc::new(TlsIdentity::new(["pbx.customer.example.net".to_owned()]));
    w.ep.handle_message_from(w.now, peer, Some(id), Bytes::from(invite.clone()));
    let out = sent(&mut w);
    invite_to(&out, B_TLS);
    // The same INVITE without a certificate (or with another name) is from nobody we know.
    for identity in [None, Some(Arc::new(TlsIdentity::new(["intruder.example.org".to_owned()])))] {
        let other = invite.replace("id-1", "id-2");
        w.ep.handle_message_from(w.now, peer, identity, Bytes::from(other));
        let out = sent(&mut w);
        let refused = out.iter().any(|(_, m)| matches!(m, Message::Response(r) if r.status == 403));
        assert!(refused, "{out:#?}");
    }
}

#[test]
fn leg_a_over_tls_gets_a_tls_contact_and_a_sips_one_for_a_sips_request() {
    for (uri, contact) in [
        ("sip:+493012345@198.18.1.1:5061;transport=tls", "<sip:198.18.1.1:5061;transport=tls>"),
        ("sips:+493012345@198.18.1.1:5061", "<sips:198.18.1.1:5061>"),
    ] {
        let mut w = tls_world(false, |_| {});
        let invite = invite_from_a("a-tls").replace("sip:+493012345@198.18.1.1 SIP/2.0", &format!("{uri} SIP/2.0"));
        let peer = Peer { transport: Transport::Tls, local: addr("198.18.1.1:5061"), remote: addr(A), conn: None };
        w.ep.handle_message(w.now, peer, Bytes::from(invite));
        let (_, invite_b) = invite_to(&sent(&mut w), B_TLS);
        let ok = answer(&invite_b, 200, "b1", "198.18.2.10:5061;transport=tls", "");
        w.ep.handle_message(
            w.now,
            Peer { transport: Transport::Tls, local: addr(SBC_B_TLS), remote: addr(B_TLS), conn: None },
            Bytes::from(ok),
        );
        let out = sent(&mut w);
        let ok_a = out
            .iter()
            .find_map(|(p, m)| match m {
                Message::Response(r) if p.remote == addr(A) && r.status == 200 => Some((*p, r.clone())),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no 200 to A in {out:#?}"));
        assert_eq!(ok_a.0.transport, Transport::Tls, "back over the connection it came on");
        assert_eq!(String::from_utf8_lossy(ok_a.1.headers.get(&HeaderName::Contact).expect("contact")), contact);
    }
}

#[test]
fn a_transport_error_tries_the_trunks_next_gateway_before_the_next_carrier() {
    const B2_TLS: &str = "198.18.2.12:5061";
    let mut w = tls_world(false, |t| t[1].gateways.push(Gateway { transport: Transport::Tls, addr: addr(B2_TLS) }));
    let peer = Peer { transport: Transport::Udp, local: addr(SBC_A), remote: addr(A), conn: None };
    w.ep.handle_message(w.now, peer, Bytes::from(invite_from_a("gw-1")));
    let (to_b1, _) = invite_to(&sent(&mut w), B_TLS);
    w.ep.handle_transport_error(w.now, to_b1);
    let out = sent(&mut w);
    let (to_b2, invite_b2) = invite_to(&out, B2_TLS);
    assert_eq!(to_b2.transport, Transport::Tls);
    assert!(!out.iter().any(|(p, _)| p.remote == addr(C)), "carrier c is not tried while b has a gateway left");
    // The second gateway fails too: now the call moves to carrier c.
    w.ep.handle_transport_error(w.now, to_b2);
    let (_, invite_c) = invite_to(&sent(&mut w), C);
    let out = w.send(C, SBC_B, answer(&invite_c, 486, "c1", "198.18.2.11:5060", ""));
    response(&out, A, 486);
    let tried: Vec<(&str, u16)> = w.cdrs[0].attempts.iter().map(|a| (a.trunk.as_str(), a.status)).collect();
    assert_eq!(tried, [("carrier-b", 503), ("carrier-b", 503), ("carrier-c", 486)]);
    drop(invite_b2);
}
