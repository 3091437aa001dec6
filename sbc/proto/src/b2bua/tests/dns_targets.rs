//! Carrier b known by a DNS name: the targets the server resolved (`Endpoint::set_targets`) take the name's place,
//! ordered per call by priority and weight; a 503, a timeout or a transport error at one target moves the call to
//! the next target before the next carrier; probes cover every target.

use super::*;
use crate::routing::{DnsGateway, ProbeConfig, Target};

const B2: &str = "198.18.2.12:5060";

fn target(priority: u16, weight: u16, at: &str) -> Target {
    Target { priority, weight, gateway: Gateway { transport: Transport::Udp, addr: addr(at) } }
}

/// The DESIGN world with carrier b's only gateway the name `carrier-b.test` (UDP), and `probe` on it.
fn dns_world(probe: Option<ProbeConfig>) -> World {
    world_tweaked(|t| {
        t[1].gateways.clear();
        t[1].dns_gateways = vec![DnsGateway {
            position: 0,
            host: "carrier-b.test".into(),
            port: None,
            transport: Some(Transport::Udp),
        }];
        t[1].probe = probe;
        // As the configuration makes it for a trunk known only by its name.
        t[1].uri_host = Some("carrier-b.test".into());
    })
}

fn tried(w: &World) -> Vec<(&str, u16)> {
    w.cdrs[0].attempts.iter().map(|a| (a.trunk.as_str(), a.status)).collect()
}

#[test]
fn a_name_not_resolved_yet_sends_the_call_to_the_next_carrier_at_once() {
    let mut w = dns_world(None);
    let sent = w.send(A, SBC_A, invite_from_a("dns-1"));
    request(&sent, C, Method::Invite);
    assert!(!sent.iter().any(|(a, _)| *a == addr(B) || *a == addr(B2)), "no target to try at b");
}

#[test]
fn the_lower_priority_target_first_then_503_and_timeout_move_to_the_next_target_before_the_next_carrier() {
    let mut w = dns_world(None);
    w.ep.set_targets(TrunkId(1), 0, vec![target(20, 0, B2), target(10, 0, B)]);
    let sent = w.send(A, SBC_A, invite_from_a("dns-2"));
    let inv_b = request(&sent, B, Method::Invite);
    assert_eq!(inv_b.uri.as_bytes(), &b"sip:+493012345@carrier-b.test"[..], "addressed by its name, no SRV port");
    let sent = w.send(B, SBC_B, answer(&inv_b, 503, "b1", B, ""));
    request(&sent, B2, Method::Invite);
    assert!(!sent.iter().any(|(a, _)| *a == addr(C)), "carrier c waits for b's last target");
    // b2 never answers: timer B (32 s), then the route's next carrier.
    let sent = w.advance(Duration::from_secs(33));
    let inv_c = request(&sent, C, Method::Invite);
    let sent = w.send(C, SBC_B, answer(&inv_c, 486, "c1", C, ""));
    response(&sent, A, 486);
    assert_eq!(tried(&w), [("carrier-b", 503), ("carrier-b", 408), ("carrier-c", 486)]);
}

#[test]
fn a_static_gateway_is_not_given_up_on_503_within_the_trunk() {
    // Configured addresses keep their rule: only a transport error moves to the trunk's next gateway.
    let mut w = world_tweaked(|t| t[1].gateways.push(Gateway { transport: Transport::Udp, addr: addr(B2) }));
    let sent = w.send(A, SBC_A, invite_from_a("dns-3"));
    let inv_b = request(&sent, B, Method::Invite);
    let sent = w.send(B, SBC_B, answer(&inv_b, 503, "b1", B, ""));
    request(&sent, C, Method::Invite);
}

#[test]
fn equal_priority_targets_share_calls_by_weight_and_one_call_id_always_gets_the_same_target() {
    let mut w = dns_world(None);
    w.ep.set_targets(TrunkId(1), 0, vec![target(10, 80, B), target(10, 20, B2)]);
    let mut first_at_b = 0;
    for i in 0..500 {
        let sent = w.send(A, SBC_A, invite_from_a(&format!("{i}-weights-198.18.1.10")));
        if sent.iter().any(|(a, m)| *a == addr(B) && matches!(m, Message::Request(r) if r.method == Method::Invite)) {
            first_at_b += 1;
        }
    }
    let share = f64::from(first_at_b) / 500.0;
    assert!((0.74..=0.86).contains(&share), "b's share of 500 calls: {share}");
    // The order is a function of the Call-ID: the same Call-ID in a fresh core goes to the same target.
    let pick = |call_id: &str| {
        let mut w = dns_world(None);
        w.ep.set_targets(TrunkId(1), 0, vec![target(10, 80, B), target(10, 20, B2)]);
        let sent = w.send(A, SBC_A, invite_from_a(call_id));
        sent.iter().find(|(a, _)| *a == addr(B) || *a == addr(B2)).map(|(a, _)| *a)
    };
    for i in 0..20 {
        let id = format!("{i}-again-198.18.1.10");
        assert_eq!(pick(&id), pick(&id), "{id}");
    }
}

#[test]
fn probes_cover_every_resolved_target_and_a_target_probed_down_is_skipped() {
    let probe = ProbeConfig { interval: Duration::from_secs(1), down_after: 2, up_after: 1, ..Default::default() };
    let mut w = dns_world(Some(probe));
    w.ep.set_targets(TrunkId(1), 0, vec![target(10, 0, B), target(20, 0, B2)]);
    w.ep.handle_timeout(w.now);
    let first = w.drain();
    request(&first, B, Method::Options);
    let p2 = request(&first, B2, Method::Options);
    w.send(B2, SBC_B, answer(&p2, 200, "p", B2, ""));
    // b never answers; b2 answers every probe.
    let end = w.now + Duration::from_millis(2500);
    while w.now < end {
        let sent = w.advance(Duration::from_millis(500));
        for (a, m) in &sent {
            if let Message::Request(r) = m {
                if *a == addr(B2) && r.method == Method::Options {
                    w.send(B2, SBC_B, answer(r, 200, "p", B2, ""));
                }
            }
        }
    }
    let sent = w.send(A, SBC_A, invite_from_a("dns-5"));
    let inv = request(&sent, B2, Method::Invite);
    let invited_b = |sent: &[(SocketAddr, Message)], at: &str, method: Method| {
        sent.iter().any(|(a, m)| *a == addr(at) && matches!(m, Message::Request(r) if r.method == method))
    };
    assert!(!invited_b(&sent, B, Method::Invite), "b is down: its turn is skipped");
    w.send(B2, SBC_B, answer(&inv, 486, "b2", B2, ""));
    // A new answer without b2: its probes stop, b's go on.
    w.ep.set_targets(TrunkId(1), 0, vec![target(10, 0, B)]);
    let sent = w.advance(Duration::from_secs(2));
    assert!(invited_b(&sent, B, Method::Options), "b still probed");
    assert!(!invited_b(&sent, B2, Method::Options), "b2 no longer probed: {sent:#?}");
}
