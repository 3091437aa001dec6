//! Leg A over a WebSocket (RFC 7118): answers and in-dialog requests go over the client's connection whatever its
//! `.invalid` Via and Contact say, and a closed connection ends its calls.

use super::*;
use crate::transport::ConnId;

const SBC_A_WSS: &str = "198.18.1.1:8443";
/// The browser's source address (behind NAT: nothing listens there).
const BROWSER: &str = "198.18.1.10:51234";
const CONN: ConnId = ConnId(7);

fn ws_world() -> World {
    let mut w = world(Limits::default());
    let mut config = Config {
        plan: Arc::new(Plan {
            trunks: vec![
                trunk("customer-pbx", Some("198.18.1.10/32"), None),
                trunk("carrier-b", None, Some(B)),
                trunk("carrier-c", None, Some(C)),
            ],
            catch_all: Some(vec![Candidate::new(TrunkId(1), 1)]),
            max_post_dial: Duration::from_secs(60),
            ..Plan::default()
        }),
        ..Config::default()
    };
    config.locals =
        vec![(Transport::Udp, addr(SBC_A)), (Transport::Udp, addr(SBC_B)), (Transport::Wss, addr(SBC_A_WSS))];
    w.ep = Endpoint::new(config, 42);
    w
}

fn browser() -> Peer {
    Peer { transport: Transport::Wss, local: addr(SBC_A_WSS), remote: addr(BROWSER), conn: Some(CONN) }
}

/// What JsSIP sends: a WSS Via and a Contact on a `.invalid` host.
fn invite_from_browser(call_id: &str) -> String {
    let sdp =
        "v=0\r\no=- 1 1 IN IP4 198.18.1.10\r\ns=-\r\nc=IN IP4 198.18.1.10\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\n";
    format!(
        "INVITE sip:+493012345@198.18.1.1 SIP/2.0\r\nVia: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK-{call_id}\r\n\
         Max-Forwards: 69\r\nFrom: <sip:+4940111@198.18.1.1>;tag=w1\r\nTo: <sip:+493012345@198.18.1.1>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:k3l4m5@df7jal23ls0d.invalid;transport=ws;ob>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
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

/// A call from the browser answered by carrier b; returns leg B's INVITE and the 200 the browser got.
fn answered(w: &mut World, call_id: &str) -> (Request, Response) {
    w.ep.handle_message(w.now, browser(), Bytes::from(invite_from_browser(call_id)));
    let out = sent(w);
    let inv_b = out
        .iter()
        .find_map(|(p, m)| match m {
            Message::Request(r) if p.remote == addr(B) => Some(r.clone()),
            _ => None,
        })
        .expect("INVITE to b");
    let trying = out.iter().find(|(_, m)| matches!(m, Message::Response(r) if r.status == 100)).expect("100");
    assert_eq!(trying.0, browser(), "the 100 goes back over the browser's connection");
    let peer_b = Peer { transport: Transport::Udp, local: addr(SBC_B), remote: addr(B), conn: None };
    w.ep.handle_message(w.now, peer_b, Bytes::from(answer(&inv_b, 200, "b1", B, "v=0\r\n")));
    let out = sent(w);
    let (to, ok) = out
        .iter()
        .find_map(|(p, m)| match m {
            Message::Response(r) if r.status == 200 => Some((*p, r.clone())),
            _ => None,
        })
        .expect("200 to the browser");
    assert_eq!(to, browser(), "the 200 goes over the connection, not to the .invalid Via host");
    assert_eq!(rv(&ok, HeaderName::Contact), "<sip:198.18.1.1:8443;transport=ws>");
    let ack = format!(
        "ACK sip:{SBC_A_WSS};transport=ws SIP/2.0\r\nVia: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK-ack\r\n\
         Max-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
        rv(&ok, HeaderName::From),
        rv(&ok, HeaderName::To)
    );
    w.ep.handle_message(w.now, browser(), Bytes::from(ack));
    assert!(sent(w).is_empty(), "the ACK is absorbed");
    (inv_b, ok)
}

#[test]
fn a_bye_from_the_carrier_reaches_the_browser_over_its_connection() {
    let mut w = ws_world();
    let (inv_b, _ok) = answered(&mut w, "ws-1");
    let from = hv(&inv_b, HeaderName::To).to_string() + ";tag=b1";
    let bye = in_dialog(
        "BYE",
        "198.18.2.1",
        &from,
        &hv(&inv_b, HeaderName::From),
        inv_b.headers.call_id().expect("id"),
        2,
        B,
    );
    let peer_b = Peer { transport: Transport::Udp, local: addr(SBC_B), remote: addr(B), conn: None };
    w.ep.handle_message(w.now, peer_b, Bytes::from(bye));
    let out = sent(&mut w);
    let (to, bye_a) = out
        .iter()
        .find_map(|(p, m)| match m {
            Message::Request(r) if r.method == Method::Bye => Some((*p, r.clone())),
            _ => None,
        })
        .expect("BYE to the browser");
    assert_eq!(to, browser(), "the BYE goes over the browser's connection");
    assert_eq!(bye_a.uri.as_bytes(), &b"sip:k3l4m5@df7jal23ls0d.invalid;transport=ws;ob"[..], "to its Contact");
    assert!(hv(&bye_a, HeaderName::Via).starts_with("SIP/2.0/WSS 198.18.1.1:8443;"), "{}", hv(&bye_a, HeaderName::Via));
}

#[test]
fn a_closed_websocket_ends_its_answered_call_with_a_bye_to_the_carrier_and_a_cdr() {
    let mut w = ws_world();
    answered(&mut w, "ws-2");
    let tcp = Peer { transport: Transport::Tcp, conn: Some(CONN), ..browser() };
    assert_eq!(w.ep.handle_connection_closed(w.now, tcp), 0, "a TCP peer may come back: its calls go on");
    let other = Peer { conn: Some(ConnId(8)), ..browser() };
    assert_eq!(w.ep.handle_connection_closed(w.now, other), 0, "another connection has no call");
    assert!(sent(&mut w).is_empty());
    assert_eq!(w.ep.handle_connection_closed(w.now, browser()), 1);
    let out = sent(&mut w);
    let byes: Vec<&Peer> = out
        .iter()
        .filter(|(_, m)| matches!(m, Message::Request(r) if r.method == Method::Bye))
        .map(|(p, _)| p)
        .collect();
    assert_eq!(byes.len(), 1, "one BYE, to the carrier only: {out:#?}");
    assert_eq!(byes[0].remote, addr(B));
    let (peer_b, bye) = out.iter().find(|(p, _)| p.remote == addr(B)).expect("bye");
    let Message::Request(bye) = bye else { panic!("request") };
    w.ep.handle_message(w.now, Peer { local: peer_b.local, ..*peer_b }, Bytes::from(answer(bye, 200, "b1", B, "")));
    sent(&mut w);
    assert_eq!(w.cdrs.len(), 1);
    assert_eq!((w.cdrs[0].release_cause, w.cdrs[0].released_by), (crate::b2bua::CONNECTION_CLOSED, "a"));
    assert_eq!(w.ep.calls().len(), 0);
}

#[test]
fn a_websocket_closed_while_the_carrier_rings_cancels_leg_b() {
    let mut w = ws_world();
    w.ep.handle_message(w.now, browser(), Bytes::from(invite_from_browser("ws-3")));
    let out = sent(&mut w);
    let (_, inv_b) = out.iter().find(|(p, _)| p.remote == addr(B)).expect("INVITE to b");
    let Message::Request(inv_b) = inv_b else { panic!("request") };
    let peer_b = Peer { transport: Transport::Udp, local: addr(SBC_B), remote: addr(B), conn: None };
    w.ep.handle_message(w.now, peer_b, Bytes::from(answer(inv_b, 180, "b1", B, "")));
    sent(&mut w);
    assert_eq!(w.ep.handle_connection_closed(w.now, browser()), 1);
    let out = sent(&mut w);
    assert!(
        out.iter().any(|(p, m)| p.remote == addr(B) && matches!(m, Message::Request(r) if r.method == Method::Cancel)),
        "leg B is cancelled: {out:#?}"
    );
}
