//! Calls through the whole core (endpoint, transactions, B2BUA) in simulated time, against scripted peers.

use crate::cdr::Cdr;
use crate::endpoint::{Config, Endpoint, Observation, Output};
use crate::msg::{parse_datagram, HeaderName, Message, Method, Request, Response};
use crate::routing::{Candidate, Gateway, Limits, Plan, PrefixTable, SourceMatch, Trunk, TrunkId, UnknownSource};
use crate::transport::{Peer, Transport};
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const A: &str = "198.18.1.10:5060";
const B: &str = "198.18.2.10:5060";
const C: &str = "198.18.2.11:5060";
const SBC_A: &str = "198.18.1.1:5060";
const SBC_B: &str = "198.18.2.1:5060";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

fn trunk(name: &str, source: Option<&str>, gateway: Option<&str>) -> Trunk {
    Trunk {
        sources: source.map(|s| SourceMatch { net: s.parse().expect("net"), port: None }).into_iter().collect(),
        gateways: gateway.map(|g| Gateway { transport: Transport::Udp, addr: addr(g) }).into_iter().collect(),
        ..Trunk::new(name)
    }
}

/// The topology of DESIGN.md: customer at 198.18.1.10, carriers b and c, every number to b then c.
fn world(limits: Limits) -> World {
    world_with(limits, None)
}

fn world_with(limits: Limits, probe_b: Option<crate::routing::ProbeConfig>) -> World {
    world_tweaked(|t| {
        t[0].limits = limits;
        t[1].probe = probe_b;
    })
}

fn world_tweaked(tweak: impl FnOnce(&mut Vec<Trunk>)) -> World {
    world_planned(tweak, |_| {})
}

fn world_planned(tweak: impl FnOnce(&mut Vec<Trunk>), plan_tweak: impl FnOnce(&mut Plan)) -> World {
    world_full(tweak, plan_tweak, None)
}

fn world_full(
    tweak: impl FnOnce(&mut Vec<Trunk>),
    plan_tweak: impl FnOnce(&mut Plan),
    media: Option<relay_proto::session::MediaConfig>,
) -> World {
    world_configured(tweak, plan_tweak, media, |_| {})
}

fn world_configured(
    tweak: impl FnOnce(&mut Vec<Trunk>),
    plan_tweak: impl FnOnce(&mut Plan),
    media: Option<relay_proto::session::MediaConfig>,
    config_tweak: impl FnOnce(&mut Config),
) -> World {
    let mut trunks = vec![
        trunk("customer-pbx", Some("198.18.1.10/32"), None),
        trunk("carrier-b", None, Some(B)),
        trunk("carrier-c", None, Some(C)),
    ];
    tweak(&mut trunks);
    let plan = Plan {
        trunks,
        routes: PrefixTable::default(),
        catch_all: Some(vec![Candidate::new(TrunkId(1), 1), Candidate::new(TrunkId(2), 2)]),
        unknown_source: UnknownSource::Reject,
        max_tries: 3,
        max_post_dial: Duration::from_secs(60),
        max_duration: None,
        keepalive: None,
    };
    let mut plan = plan;
    plan_tweak(&mut plan);
    let mut config = Config {
        plan: Arc::new(plan),
        locals: vec![(Transport::Udp, addr(SBC_A)), (Transport::Udp, addr(SBC_B))],
        media,
        ..Config::default()
    };
    config_tweak(&mut config);
    World {
        ep: Endpoint::new(config, 42),
        now: Instant::now(),
        cdrs: Vec::new(),
        media: Vec::new(),
        records: Vec::new(),
        offences: Vec::new(),
    }
}

/// The DESIGN topology with media anchored on the relay's interfaces a (198.18.1.1) and b (198.18.2.1).
fn world_with_media() -> World {
    world_with_media_tweaked(|_| {})
}

fn world_with_media_tweaked(tweak: impl FnOnce(&mut Vec<Trunk>)) -> World {
    let media = Some(relay_proto::session::MediaConfig {
        interfaces: vec![
            relay_proto::session::Interface { name: "a".into(), address: "198.18.1.1".parse().unwrap() },
            relay_proto::session::Interface { name: "b".into(), address: "198.18.2.1".parse().unwrap() },
        ],
        first_port: 40000,
        last_port: 40099,
        quarantine: Duration::from_secs(5),
        strict: true,
        cname_seed: 7,
        dtls_fingerprint: Some(relay_proto::webrtc::dtls::Fingerprint([0xAB; 32])),
    });
    world_full(tweak, |_| {}, media)
}

struct World {
    ep: Endpoint,
    now: Instant,
    cdrs: Vec<Cdr>,
    media: Vec<relay_proto::control::Command>,
    records: Vec<crate::ha::Record>,
    offences: Vec<(SocketAddr, crate::policy::Offence)>,
}

impl World {
    /// Delivers `raw` from `from` to our address `to`, returns what we sent, parsed, with its destination.
    fn send(&mut self, from: &str, to: &str, raw: String) -> Vec<(SocketAddr, Message)> {
        let peer = Peer { transport: Transport::Udp, local: addr(to), remote: addr(from), conn: None };
        self.ep.handle_message(self.now, peer, Bytes::from(raw));
        self.drain()
    }

    fn drain(&mut self) -> Vec<(SocketAddr, Message)> {
        let mut sent = Vec::new();
        while let Some(o) = self.ep.poll_output() {
            match o {
                Output::Transmit { peer, bytes } => {
                    sent.push((peer.remote, parse_datagram(bytes).expect("we send valid SIP")));
                }
                Output::Observe(_) => {}
                Output::Cdr(c) => self.cdrs.push(*c),
                Output::Media(m) => self.media.push(m),
                Output::Replicate(r) => self.records.push(r),
                Output::Offence { source, offence } => self.offences.push((source, offence)),
                Output::Canary(c) => panic!("no canary in these tests: {c:?}"),
            }
        }
        sent
    }

    fn advance(&mut self, d: Duration) -> Vec<(SocketAddr, Message)> {
        let end = self.now + d;
        let mut sent = Vec::new();
        while let Some(t) = self.ep.poll_timeout().filter(|t| *t <= end) {
            self.now = t.max(self.now);
            self.ep.handle_timeout(self.now);
            sent.extend(self.drain());
        }
        self.now = end;
        sent
    }
}

fn invite_from_a(call_id: &str) -> String {
    let sdp =
        "v=0\r\no=- 1 1 IN IP4 198.18.1.10\r\ns=-\r\nc=IN IP4 198.18.1.10\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\n";
    format!(
        "INVITE sip:+493012345@198.18.1.1 SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.1.10:5060;branch=z9hG4bK-{call_id}\r\n\
         Max-Forwards: 70\r\nFrom: \"Alice\" <sip:+4940111@198.18.1.10>;tag=a1\r\nTo: <sip:+493012345@198.18.1.1>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@198.18.1.10:5060>\r\n\
         X-Internal: secret-topology\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

fn request(sent: &[(SocketAddr, Message)], to: &str, method: Method) -> Request {
    sent.iter()
        .find_map(|(a, m)| match m {
            Message::Request(r) if *a == addr(to) && r.method == method => Some(r.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no {method} to {to} in {sent:#?}"))
}

fn response(sent: &[(SocketAddr, Message)], to: &str, status: u16) -> Response {
    sent.iter()
        .find_map(|(a, m)| match m {
            Message::Response(r) if *a == addr(to) && r.status == status => Some(r.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no {status} to {to} in {sent:#?}"))
}

/// A response from a UAS to `req`, with `to_tag`, Contact at `contact`, and `body`.
fn answer(req: &Request, status: u16, to_tag: &str, contact: &str, body: &str) -> String {
    let mut r = Response::to_request(req, status, "Whatever");
    if status > 100 {
        let to = req.headers.get(&HeaderName::To).expect("to");
        r.headers.set(HeaderName::To, format!("{};tag={to_tag}", String::from_utf8_lossy(to)));
        r.headers.push(HeaderName::Contact, format!("<sip:{contact}>"));
    }
    if !body.is_empty() {
        r.headers.push(HeaderName::ContentType, "application/sdp");
        r.body = Bytes::from(body.to_owned());
    }
    String::from_utf8(r.to_bytes().to_vec()).expect("utf8")
}

/// An in-dialog request from a peer, built from a message of ours that carried the dialog's identifiers: for a
/// response we sent, `from`/`to` as in it; for a request we sent, swapped.
fn in_dialog(method: &str, uri: &str, from: &str, to: &str, call_id: &[u8], cseq: u32, via: &str) -> String {
    format!(
        "{method} sip:{uri} SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch=z9hG4bK-{method}-{cseq}\r\nMax-Forwards: 70\r\n\
         From: {from}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
        String::from_utf8_lossy(call_id)
    )
}

fn hv(r: &Request, n: HeaderName) -> String {
    String::from_utf8_lossy(r.headers.get(&n).expect("header")).into_owned()
}

fn rv(r: &Response, n: HeaderName) -> String {
    String::from_utf8_lossy(r.headers.get(&n).expect("header")).into_owned()
}

/// Sets a call up to the point where both legs are confirmed; returns leg B's INVITE and the 200 A got.
fn connected(w: &mut World, call_id: &str) -> (Request, Response) {
    let sent = w.send(A, SBC_A, invite_from_a(call_id));
    response(&sent, A, 100);
    let inv_b = request(&sent, B, Method::Invite);
    let sent = w.send(B, SBC_B, answer(&inv_b, 180, "b1", B, ""));
    response(&sent, A, 180);
    let sent = w.send(B, SBC_B, answer(&inv_b, 200, "b1", B, "v=0\r\n"));
    request(&sent, B, Method::Ack);
    let ok = response(&sent, A, 200);
    assert_eq!(&ok.body[..], b"v=0\r\n", "B's answer reaches A");
    let ack = format!(
        "ACK sip:{SBC_A} SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch=z9hG4bK-ack\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
        rv(&ok, HeaderName::From),
        rv(&ok, HeaderName::To)
    );
    assert!(w.send(A, SBC_A, ack).is_empty(), "A's ACK is absorbed");
    (inv_b, ok)
}

#[test]
fn basic_call_hides_topology_and_bye_from_a_ends_both_legs() {
    let mut w = world(Limits::default());
    let sent = w.send(A, SBC_A, invite_from_a("call-1"));
    let inv_b = request(&sent, B, Method::Invite);
    let raw = String::from_utf8(inv_b.to_bytes().to_vec()).expect("utf8");
    for leak in ["call-1", "198.18.1.10", "z9hG4bK-call-1", "secret-topology", "a1"] {
        assert!(!raw.replace("v=0", "").split("\r\n\r\n").next().unwrap().contains(leak), "{leak} leaked: {raw}");
    }
    assert_eq!(inv_b.uri.user(), Some(&b"+493012345"[..]));
    assert_eq!(inv_b.headers.from().expect("from").uri().user(), Some(&b"+4940111"[..]), "From user as presented");
    assert!(inv_b.body.starts_with(b"v=0"), "the offer crosses");
    assert_eq!(inv_b.headers.max_forwards().unwrap(), Some(69));
    connected(&mut world(Limits::default()), "call-1b");
}

#[test]
fn bye_from_a_then_from_b_each_end_the_call_with_one_cdr() {
    for bye_from in ["a", "b"] {
        let mut w = world(Limits::default());
        let (inv_b, ok) = connected(&mut w, "call-2");
        w.advance(Duration::from_secs(5));
        let sent = if bye_from == "a" {
            let bye = in_dialog("BYE", SBC_A, &rv(&ok, HeaderName::From), &rv(&ok, HeaderName::To), b"call-2", 2, A);
            let sent = w.send(A, SBC_A, bye);
            response(&sent, A, 200);
            let bye_b = request(&sent, B, Method::Bye);
            assert_eq!(bye_b.headers.get(&HeaderName::CallId), inv_b.headers.get(&HeaderName::CallId));
            w.send(B, SBC_B, answer(&bye_b, 200, "b1", B, ""))
        } else {
            let from = format!("{};tag=b1", hv(&inv_b, HeaderName::To));
            let bye = in_dialog(
                "BYE",
                SBC_B,
                &from,
                &hv(&inv_b, HeaderName::From),
                inv_b.headers.get(&HeaderName::CallId).expect("call-id"),
                7,
                B,
            );
            let sent = w.send(B, SBC_B, bye);
            response(&sent, B, 200);
            let bye_a = request(&sent, A, Method::Bye);
            assert_eq!(bye_a.headers.get(&HeaderName::CallId), Some(&b"call-2"[..]));
            assert_eq!(bye_a.uri.as_bytes(), &b"sip:alice@198.18.1.10:5060"[..], "to A's Contact");
            w.send(A, SBC_A, answer(&bye_a, 200, "x", A, ""))
        };
        assert!(sent.is_empty(), "{sent:?}");
        assert_eq!(w.cdrs.len(), 1, "one CDR for bye from {bye_from}");
        let cdr = &w.cdrs[0];
        assert_eq!((cdr.status, cdr.release_cause, cdr.released_by), (200, "bye", bye_from));
        assert!((cdr.duration().expect("answered") - 5.0).abs() < 0.01);
        assert_eq!(cdr.trunk_in, "customer-pbx");
        assert_eq!(cdr.trunk_out.as_deref(), Some("carrier-b"));
        assert_eq!(w.ep.calls().len(), 0);
        // After the end, the dialog is gone: 481.
        let late = in_dialog("BYE", SBC_A, &rv(&ok, HeaderName::From), &rv(&ok, HeaderName::To), b"call-2", 9, A);
        let sent = w.send(A, SBC_A, late);
        response(&sent, A, 481);
    }
}

#[test]
fn failover_to_second_carrier_on_503_and_cdr_lists_both() {
    let mut w = world(Limits::default());
    let sent = w.send(A, SBC_A, invite_from_a("call-3"));
    let inv_b = request(&sent, B, Method::Invite);
    let sent = w.send(B, SBC_B, answer(&inv_b, 503, "b1", B, ""));
    request(&sent, B, Method::Ack); // the transaction ACKs the failure
    let inv_c = request(&sent, C, Method::Invite);
    assert_ne!(inv_c.headers.get(&HeaderName::CallId), inv_b.headers.get(&HeaderName::CallId), "a fresh leg B");
    assert!(!sent.iter().any(|(a, _)| *a == addr(A)), "A hears nothing of the failure");
    let sent = w.send(C, SBC_B, answer(&inv_c, 200, "c1", C, "v=0\r\n"));
    response(&sent, A, 200);
    let ok = response(&sent, A, 200);
    let bye = in_dialog("BYE", SBC_A, &rv(&ok, HeaderName::From), &rv(&ok, HeaderName::To), b"call-3", 2, A);
    let sent = w.send(A, SBC_A, bye);
    let bye_c = request(&sent, C, Method::Bye);
    w.send(C, SBC_B, answer(&bye_c, 200, "c1", C, ""));
    let cdr = &w.cdrs[0];
    let tried: Vec<_> = cdr.attempts.iter().map(|a| (a.trunk.as_str(), a.status)).collect();
    assert_eq!(tried, [("carrier-b", 503), ("carrier-c", 200)]);
}

#[test]
fn busy_486_goes_back_to_a_without_failover() {
    let mut w = world(Limits::default());
    let sent = w.send(A, SBC_A, invite_from_a("call-4"));
    let inv_b = request(&sent, B, Method::Invite);
    let sent = w.send(B, SBC_B, answer(&inv_b, 486, "b1", B, ""));
    assert!(!sent.iter().any(|(a, _)| *a == addr(C)), "no failover on 486");
    let busy = response(&sent, A, 486);
    assert_eq!(&busy.reason[..], b"Whatever", "the carrier's reason phrase is relayed");
    assert_eq!(w.cdrs.len(), 1);
    assert_eq!((w.cdrs[0].status, w.cdrs[0].released_by), (486, "b"));
}

/// Delivers `raw` from `from` to our `to`; returns what we sent (parsed, with its destination) and what we counted.
fn send_counted(w: &mut World, from: &str, to: &str, raw: Vec<u8>) -> (Vec<(SocketAddr, Message)>, Vec<Observation>) {
    let peer = Peer { transport: Transport::Udp, local: addr(to), remote: addr(from), conn: None };
    w.ep.handle_message(w.now, peer, Bytes::from(raw));
    let (mut sent, mut seen) = (Vec::new(), Vec::new());
    while let Some(o) = w.ep.poll_output() {
        match o {
            Output::Transmit { peer, bytes } => sent.push((peer.remote, parse_datagram(bytes).expect("valid SIP"))),
            Output::Observe(ob) => seen.push(ob),
            // A malformed message is an offence of its source (the edge guard counts towards a ban).
            Output::Offence { source, offence } => w.offences.push((source, offence)),
            other => panic!("unexpected {other:?}"),
        }
    }
    (sent, seen)
}

#[test]
fn invite_with_a_control_character_gets_400_and_never_reaches_a_carrier() {
    let mut w = world(Limits::default());
    for (i, (bad, reason)) in [
        (&b"Subject: hi\0there\r\n"[..], "control_character"),
        (b"X-Account: \x1b]0;pwned\x07\r\n", "control_character"),
        (b"Subject: M\xfcller\r\n", "not_utf8"),
    ]
    .into_iter()
    .enumerate()
    {
        let invite = invite_from_a(&format!("strict-{i}")).replace("X-Internal: secret-topology\r\n", "@BAD@");
        let (head, tail) = invite.split_once("@BAD@").expect("marker");
        let raw = [head.as_bytes(), bad, tail.as_bytes()].concat();
        let (sent, seen) = send_counted(&mut w, A, SBC_A, raw);
        assert_eq!(sent.len(), 1, "only the answer to A: {sent:?}");
        let r = response(&sent, A, 400);
        let warning = rv(&r, HeaderName::Warning);
        assert!(warning.contains("X-Account header") || warning.contains("Subject header"), "{warning}");
        assert!(seen.contains(&Observation::ParseError { transport: Transport::Udp, reason }), "{seen:?}");
        assert!(!seen.iter().any(|o| matches!(o, Observation::CallStarted { .. })));
    }
    let invite = invite_from_a("strict-body").replace("Content-Type: application/sdp\r\n", "");
    let (sent, seen) = send_counted(&mut w, A, SBC_A, invite.into_bytes());
    assert!(rv(&response(&sent, A, 400), HeaderName::Warning).contains("body without Content-Type"));
    assert!(seen.contains(&Observation::ParseError { transport: Transport::Udp, reason: "body_without_content_type" }));
    assert!(w.ep.calls().is_empty() && w.cdrs.is_empty(), "no call was started");
}

#[test]
fn carrier_responses_with_control_characters_or_untyped_bodies_are_dropped_and_counted() {
    let mut w = world(Limits::default());
    let sent = w.send(A, SBC_A, invite_from_a("strict-resp"));
    let inv_b = request(&sent, B, Method::Invite);
    let ringing = answer(&inv_b, 180, "b1", B, "").replace("Whatever", "Ringing\u{7}");
    let untyped_ok = answer(&inv_b, 200, "b1", B, "v=0\r\n").replace("Content-Type: application/sdp\r\n", "");
    for (raw, reason) in [(ringing, "control_character"), (untyped_ok, "body_without_content_type")] {
        let (sent, seen) = send_counted(&mut w, B, SBC_B, raw.into_bytes());
        assert!(sent.is_empty(), "nothing reaches A, nothing answers B: {sent:?}");
        assert!(seen.contains(&Observation::ParseError { transport: Transport::Udp, reason }), "{seen:?}");
    }
    // The carrier's clean 200 still connects the call: the dropped ones changed nothing.
    let sent = w.send(B, SBC_B, answer(&inv_b, 200, "b1", B, "v=0\r\n"));
    response(&sent, A, 200);
}

#[test]
fn request_relayed_when_the_call_ends_still_gets_its_final_answer() {
    // Found by the call-logic fuzzer: an UPDATE from the carrier's early dialog was relayed to A; the call ended
    // (A cancelled) before A answered; when the relayed UPDATE timed out, the carrier's UPDATE transaction was
    // never answered and stayed forever.
    let mut w = world(Limits::default());
    let invite = invite_from_a("relay-end");
    let sent = w.send(A, SBC_A, invite.clone());
    let inv_b = request(&sent, B, Method::Invite);
    w.send(B, SBC_B, answer(&inv_b, 183, "b1", B, ""));
    let from = format!("{};tag=b1", hv(&inv_b, HeaderName::To));
    let call_id_b = inv_b.headers.get(&HeaderName::CallId).expect("call-id");
    let update = in_dialog("UPDATE", SBC_B, &from, &hv(&inv_b, HeaderName::From), call_id_b, 2, B);
    let sent = w.send(B, SBC_B, update);
    request(&sent, A, Method::Update);
    let cancel = invite.replace("INVITE sip", "CANCEL sip").replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    let cancel = cancel.split("Content-Type").next().unwrap().to_owned() + "Content-Length: 0\r\n\r\n";
    let sent = w.send(A, SBC_A, cancel);
    let cancel_b = request(&sent, B, Method::Cancel);
    w.send(B, SBC_B, answer(&cancel_b, 200, "b1", B, ""));
    w.send(B, SBC_B, answer(&inv_b, 487, "b1", B, ""));
    assert_eq!(w.cdrs.len(), 1, "the call ended");
    // A never answers the UPDATE: timer F ends it, and the carrier's UPDATE is answered: its dialog is gone.
    let sent = w.advance(Duration::from_secs(33));
    let r = response(&sent, B, 481);
    assert_eq!(r.headers.cseq().expect("cseq").method, Method::Update);
    w.advance(Duration::from_secs(40));
    assert_eq!(w.ep.transaction_count(), 0, "no transaction left");
    assert!(w.ep.calls().is_idle());
}

#[test]
fn bye_from_a_on_its_early_dialog_answers_the_invite_487_and_cancels_the_carrier() {
    // Found by the call-logic fuzzer: the call was dropped at once, leaving A's INVITE transaction without a
    // final response for ever and the carrier ringing.
    let mut w = world(Limits::default());
    let sent = w.send(A, SBC_A, invite_from_a("early-bye"));
    let inv_b = request(&sent, B, Method::Invite);
    let sent = w.send(B, SBC_B, answer(&inv_b, 180, "b1", B, ""));
    let ringing = response(&sent, A, 180);
    let bye =
        in_dialog("BYE", SBC_A, &rv(&ringing, HeaderName::From), &rv(&ringing, HeaderName::To), b"early-bye", 2, A);
    let sent = w.send(A, SBC_A, bye);
    response(&sent, A, 200);
    assert_eq!(response(&sent, A, 487).headers.cseq().expect("cseq").method, Method::Invite);
    let cancel_b = request(&sent, B, Method::Cancel);
    w.send(B, SBC_B, answer(&cancel_b, 200, "b1", B, ""));
    let sent = w.send(B, SBC_B, answer(&inv_b, 487, "b1", B, ""));
    request(&sent, B, Method::Ack);
    assert_eq!(w.cdrs.len(), 1);
    assert_eq!((w.cdrs[0].release_cause, w.cdrs[0].released_by, w.cdrs[0].status), ("bye", "a", 487));
    w.advance(Duration::from_secs(40));
    assert_eq!(w.ep.transaction_count(), 0, "A's INVITE transaction ended too");
}

#[test]
fn carrier_ringing_longer_than_timer_b_is_neither_failed_over_nor_left_ringing() {
    // Timer B (32 s) used to keep running after the 180: the carrier was given up while it rang (never
    // cancelled) and the call sent to the next one.
    let mut w = world(Limits::default());
    let sent = w.send(A, SBC_A, invite_from_a("ring-long"));
    let inv_b = request(&sent, B, Method::Invite);
    w.send(B, SBC_B, answer(&inv_b, 180, "b1", B, ""));
    let sent = w.advance(Duration::from_secs(45));
    assert!(sent.is_empty(), "nothing happens while b rings: {sent:?}");
    let sent = w.send(B, SBC_B, answer(&inv_b, 200, "b1", B, "v=0\r\n"));
    response(&sent, A, 200);
    assert!(w.cdrs.is_empty());
}

#[test]
fn carrier_ringing_past_timer_c_is_cancelled_and_the_call_fails_over() {
    let mut w = world_planned(|_| {}, |p| p.max_post_dial = Duration::from_secs(600));
    let sent = w.send(A, SBC_A, invite_from_a("timer-c"));
    let inv_b = request(&sent, B, Method::Invite);
    w.send(B, SBC_B, answer(&inv_b, 180, "b1", B, ""));
    assert!(w.advance(Duration::from_secs(180)).is_empty(), "b rings for 3 minutes");
    let sent = w.advance(Duration::from_secs(2));
    let cancel_b = request(&sent, B, Method::Cancel);
    assert_eq!(cancel_b.headers.top_via().unwrap().branch(), inv_b.headers.top_via().unwrap().branch());
    request(&sent, C, Method::Invite);
}

#[test]
fn carrier_silent_after_our_cancel_ends_the_call_64_t1_later() {
    let mut w = world(Limits::default());
    let sent = w.send(A, SBC_A, invite_from_a("cancel-silent"));
    let inv_b = request(&sent, B, Method::Invite);
    w.send(B, SBC_B, answer(&inv_b, 180, "b1", B, ""));
    // The post-dial limit (60 s here) cancels the carrier, which then never answers anything.
    let sent = w.advance(Duration::from_secs(61));
    response(&sent, A, 408);
    request(&sent, B, Method::Cancel);
    assert!(w.cdrs.is_empty(), "the call waits for the INVITE's end");
    w.advance(Duration::from_secs(33));
    assert_eq!(w.cdrs.len(), 1, "64*T1 after the CANCEL the INVITE is given up, and the call ends");
    assert_eq!(w.cdrs[0].release_cause, "post_dial_timeout");
    w.advance(Duration::from_secs(40));
    assert_eq!(w.ep.transaction_count(), 0);
    assert!(w.ep.calls().is_idle());
}

#[test]
fn bye_from_a_while_the_call_is_ending_neither_drops_a_ringing_carrier_nor_byes_twice() {
    // Found by the call-logic fuzzer: A cancelled before the carrier had answered anything, then sent BYE; the
    // call was dropped at once, so the carrier's 183 that followed was never cancelled and it rang for ever.
    let mut w = world(Limits::default());
    let invite = invite_from_a("ending-bye");
    let sent = w.send(A, SBC_A, invite.clone());
    let inv_b = request(&sent, B, Method::Invite);
    let cancel = invite.replace("INVITE sip", "CANCEL sip").replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    let cancel = cancel.split("Content-Type").next().unwrap().to_owned() + "Content-Length: 0\r\n\r\n";
    let sent = w.send(A, SBC_A, cancel);
    let terminated = response(&sent, A, 487);
    let from = rv(&terminated, HeaderName::From);
    let bye = in_dialog("BYE", SBC_A, &from, &rv(&terminated, HeaderName::To), b"ending-bye", 2, A);
    let sent = w.send(A, SBC_A, bye);
    response(&sent, A, 200);
    assert!(w.cdrs.is_empty(), "the call still waits for the carrier's INVITE to end");
    // The carrier answers provisionally at last: it gets its CANCEL, and its 487 ends the call.
    let sent = w.send(B, SBC_B, answer(&inv_b, 183, "b1", B, ""));
    let cancel_b = request(&sent, B, Method::Cancel);
    w.send(B, SBC_B, answer(&cancel_b, 200, "b1", B, ""));
    w.send(B, SBC_B, answer(&inv_b, 487, "b1", B, ""));
    assert_eq!(w.cdrs.len(), 1);
    assert_eq!((w.cdrs[0].release_cause, w.cdrs[0].released_by), ("cancel", "a"));

    // Glare: both sides hang up at once; B gets one BYE, not two.
    let mut w = world(Limits::default());
    let (inv_b, ok) = connected(&mut w, "glare");
    let from_b = format!("{};tag=b1", hv(&inv_b, HeaderName::To));
    let call_id_b = inv_b.headers.get(&HeaderName::CallId).expect("call-id");
    let sent = w.send(B, SBC_B, in_dialog("BYE", SBC_B, &from_b, &hv(&inv_b, HeaderName::From), call_id_b, 5, B));
    let bye_a = request(&sent, A, Method::Bye);
    let bye = in_dialog("BYE", SBC_A, &rv(&ok, HeaderName::From), &rv(&ok, HeaderName::To), b"glare", 2, A);
    let sent = w.send(A, SBC_A, bye);
    response(&sent, A, 200);
    assert!(!sent.iter().any(|(a, m)| *a == addr(B) && matches!(m, Message::Request(_))), "{sent:?}");
    w.send(A, SBC_A, answer(&bye_a, 200, "x", A, ""));
    assert_eq!(w.cdrs.len(), 1);
}

#[test]
fn one_cancel_however_many_provisionals_follow_it() {
    // Found by the call-logic fuzzer: every 18x after the caller's CANCEL sent another CANCEL with the same
    // branch, which replaced the first in the transaction table unseen (the active-transactions gauge drifted up).
    let mut w = world(Limits::default());
    let invite = invite_from_a("one-cancel");
    let sent = w.send(A, SBC_A, invite.clone());
    let inv_b = request(&sent, B, Method::Invite);
    let cancel = invite.replace("INVITE sip", "CANCEL sip").replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    let cancel = cancel.split("Content-Type").next().unwrap().to_owned() + "Content-Length: 0\r\n\r\n";
    w.send(A, SBC_A, cancel);
    let cancels = (0..3)
        .flat_map(|_| w.send(B, SBC_B, answer(&inv_b, 180, "b1", B, "")))
        .filter(|(a, m)| *a == addr(B) && matches!(m, Message::Request(r) if r.method == Method::Cancel))
        .count();
    assert_eq!(cancels, 1);
}

#[test]
fn timeout_of_first_carrier_fails_over_then_all_fail_gives_408() {
    let mut w = world(Limits::default());
    let sent = w.send(A, SBC_A, invite_from_a("call-5"));
    request(&sent, B, Method::Invite);
    // Timer B: 64*T1 = 32 s without any answer from b.
    let sent = w.advance(Duration::from_secs(33));
    let inv_c = request(&sent, C, Method::Invite);
    let sent = w.send(C, SBC_B, answer(&inv_c, 500, "c1", C, ""));
    response(&sent, A, 500);
    let tried: Vec<_> = w.cdrs[0].attempts.iter().map(|a| (a.trunk.as_str(), a.status)).collect();
    assert_eq!(tried, [("carrier-b", 408), ("carrier-c", 500)]);
}

#[test]
fn cancel_before_answer_reaches_the_carrier_and_a_gets_487() {
    let mut w = world(Limits::default());
    let invite = invite_from_a("call-6");
    let sent = w.send(A, SBC_A, invite.clone());
    let inv_b = request(&sent, B, Method::Invite);
    w.send(B, SBC_B, answer(&inv_b, 180, "b1", B, ""));
    let cancel = invite.replace("INVITE sip", "CANCEL sip").replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    let cancel = cancel.split("Content-Type").next().unwrap().to_owned() + "Content-Length: 0\r\n\r\n";
    let sent = w.send(A, SBC_A, cancel);
    response(&sent, A, 200);
    response(&sent, A, 487);
    let cancel_b = request(&sent, B, Method::Cancel);
    assert_eq!(cancel_b.headers.top_via().unwrap().branch(), inv_b.headers.top_via().unwrap().branch());
    w.send(B, SBC_B, answer(&cancel_b, 200, "b1", B, ""));
    let sent = w.send(B, SBC_B, answer(&inv_b, 487, "b1", B, ""));
    request(&sent, B, Method::Ack);
    assert!(!sent.iter().any(|(a, _)| *a == addr(C)), "a cancelled call is not failed over");
    assert_eq!(w.cdrs.len(), 1);
    assert_eq!((w.cdrs[0].release_cause, w.cdrs[0].released_by, w.cdrs[0].status), ("cancel", "a", 487));
}

#[test]
fn cancel_racing_200_hangs_up_the_carrier() {
    let mut w = world(Limits::default());
    let invite = invite_from_a("call-7");
    let sent = w.send(A, SBC_A, invite.clone());
    let inv_b = request(&sent, B, Method::Invite);
    w.send(B, SBC_B, answer(&inv_b, 180, "b1", B, ""));
    let cancel = invite.replace("INVITE sip", "CANCEL sip").replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    let cancel = cancel.split("Content-Type").next().unwrap().to_owned() + "Content-Length: 0\r\n\r\n";
    w.send(A, SBC_A, cancel);
    // B's 200 crossed our CANCEL.
    let sent = w.send(B, SBC_B, answer(&inv_b, 200, "b1", B, "v=0\r\n"));
    request(&sent, B, Method::Ack);
    let bye = request(&sent, B, Method::Bye);
    assert!(!sent.iter().any(|(a, m)| *a == addr(A) && matches!(m, Message::Response(r) if r.status == 200)));
    w.send(B, SBC_B, answer(&bye, 200, "b1", B, ""));
    assert_eq!(w.cdrs.len(), 1);
    assert_eq!(w.cdrs[0].release_cause, "cancel");
}

#[test]
fn early_media_183_with_sdp_reaches_a_then_200() {
    let mut w = world(Limits::default());
    let sent = w.send(A, SBC_A, invite_from_a("call-8"));
    let inv_b = request(&sent, B, Method::Invite);
    let sent = w.send(B, SBC_B, answer(&inv_b, 183, "b1", B, "v=0\r\ns=early\r\n"));
    let early = response(&sent, A, 183);
    assert_eq!(&early.body[..], b"v=0\r\ns=early\r\n");
    assert_eq!(rv(&early, HeaderName::ContentType), "application/sdp");
    let tag183 = early.headers.to().unwrap().tag().map(<[u8]>::to_vec);
    let sent = w.send(B, SBC_B, answer(&inv_b, 200, "b1", B, "v=0\r\n"));
    let ok = response(&sent, A, 200);
    assert_eq!(ok.headers.to().unwrap().tag().map(<[u8]>::to_vec), tag183, "one dialog towards A");
    assert!(w.cdrs.is_empty());
}

#[test]
fn reinvite_from_b_is_relayed_to_a_and_answered_back() {
    let mut w = world(Limits::default());
    let (inv_b, _ok) = connected(&mut w, "call-9");
    let from = format!("{};tag=b1", hv(&inv_b, HeaderName::To));
    let reinvite = in_dialog(
        "INVITE",
        SBC_B,
        &from,
        &hv(&inv_b, HeaderName::From),
        inv_b.headers.get(&HeaderName::CallId).expect("call-id"),
        3,
        B,
    );
    let sent = w.send(B, SBC_B, reinvite);
    let re_a = request(&sent, A, Method::Invite);
    assert_eq!(re_a.headers.get(&HeaderName::CallId), Some(&b"call-9"[..]));
    let sent = w.send(A, SBC_A, answer(&re_a, 200, "x", A, "v=0\r\n"));
    request(&sent, A, Method::Ack);
    let ok_b = response(&sent, B, 200);
    assert_eq!(ok_b.headers.cseq().unwrap().seq, 3);
    assert_eq!(&ok_b.body[..], b"v=0\r\n");
}

#[test]
fn unknown_source_gets_403_and_lost_2xx_ack_ends_the_call() {
    let mut w = world(Limits::default());
    let sent = w.send("198.18.1.99:5060", SBC_A, invite_from_a("call-10"));
    response(&sent, "198.18.1.99:5060", 403);
    assert!(w.cdrs.is_empty(), "no call, no CDR");

    // A never ACKs our 200: it is retransmitted, then the call is hung up on both sides.
    let sent = w.send(A, SBC_A, invite_from_a("call-11"));
    let inv_b = request(&sent, B, Method::Invite);
    w.send(B, SBC_B, answer(&inv_b, 200, "b1", B, "v=0\r\n"));
    let sent = w.advance(Duration::from_secs(40));
    let resent = sent.iter().filter(|(a, m)| *a == addr(A) && matches!(m, Message::Response(r) if r.status == 200));
    assert!(resent.count() >= 5, "200 retransmitted with backoff");
    let bye_b = request(&sent, B, Method::Bye);
    w.send(B, SBC_B, answer(&bye_b, 200, "b1", B, ""));
    let bye_a = request(&sent, A, Method::Bye);
    w.send(A, SBC_A, answer(&bye_a, 200, "x", A, ""));
    assert_eq!(w.cdrs.len(), 1);
    assert_eq!(w.cdrs[0].release_cause, "ack_timeout");
}

#[test]
fn call_limit_answers_503_with_retry_after() {
    let mut w = world(Limits { calls: Some(1), cps: None });
    let sent = w.send(A, SBC_A, invite_from_a("call-12"));
    request(&sent, B, Method::Invite);
    let sent = w.send(A, SBC_A, invite_from_a("call-13"));
    let r = response(&sent, A, 503);
    assert_eq!(rv(&r, HeaderName::RetryAfter), "1");
}

#[test]
fn carrier_down_by_probe_is_skipped_and_comes_back_after_answers() {
    let probe = crate::routing::ProbeConfig {
        interval: Duration::from_secs(1),
        down_after: 2,
        up_after: 1,
        ..Default::default()
    };
    let mut w = world_with(Limits::default(), Some(probe));
    let t0 = w.now;
    w.ep.handle_timeout(t0);
    let first = w.drain();
    request(&first, B, Method::Options);
    // b never answers: two probes unanswered when the next is due.
    let sent = w.advance(Duration::from_millis(2500));
    let probes: std::collections::HashSet<_> = sent
        .iter()
        .filter(|(a, _)| *a == addr(B))
        .map(|(_, m)| m.headers().get(&HeaderName::CallId).map(<[u8]>::to_vec))
        .collect();
    assert_eq!(probes.len(), 3, "the first probe retransmitted, two more sent at 1 s and 2 s");
    let sent = w.send(A, SBC_A, invite_from_a("call-14"));
    request(&sent, C, Method::Invite);
    assert!(!sent.iter().any(|(a, _)| *a == addr(B)), "b is down: straight to c");
    // b answers a probe: up again.
    let sent = w.advance(Duration::from_secs(1));
    let probe = request(&sent, B, Method::Options);
    w.send(B, SBC_B, answer(&probe, 200, "p", B, ""));
    let sent = w.send(A, SBC_A, invite_from_a("call-15"));
    request(&sent, B, Method::Invite);
}

#[test]
fn carrier_challenge_407_is_answered_with_credentials_once() {
    let mut w = world_tweaked(|trunks| {
        trunks[1].auth = Some(crate::routing::Credentials {
            username: "sbc".into(),
            password: crate::policy::digest::Secret::new("s3cret"),
        });
    });
    let sent = w.send(A, SBC_A, invite_from_a("call-16"));
    let inv_b = request(&sent, B, Method::Invite);
    let challenge = answer(&inv_b, 407, "b1", B, "").replacen(
        "\r\n\r\n",
        "\r\nProxy-Authenticate: Digest realm=\"carrier\", nonce=\"abc\", qop=\"auth\", algorithm=MD5\r\n\r\n",
        1,
    );
    let sent = w.send(B, SBC_B, challenge.clone());
    request(&sent, B, Method::Ack);
    let retry = request(&sent, B, Method::Invite);
    assert_eq!(retry.headers.get(&HeaderName::CallId), inv_b.headers.get(&HeaderName::CallId));
    assert_eq!(retry.headers.cseq().unwrap().seq, 2);
    let auth = retry.headers.get(&HeaderName::ProxyAuthorization).expect("credentials");
    let creds = crate::policy::digest::Credentials::parse(std::str::from_utf8(auth).unwrap()).expect("parses");
    assert!(creds.verify("INVITE", &crate::policy::digest::Secret::new("s3cret")));
    assert!(!String::from_utf8_lossy(auth).contains("s3cret"), "the password never travels");
    // A second challenge is not answered again: it ends the attempt (407 is no failover code) towards A.
    let again = answer(&retry, 407, "b2", B, "").replacen(
        "\r\n\r\n",
        "\r\nProxy-Authenticate: Digest realm=\"carrier\", nonce=\"def\", algorithm=MD5\r\n\r\n",
        1,
    );
    let sent = w.send(B, SBC_B, again);
    response(&sent, A, 407);
}

#[test]
fn number_rules_and_identity_policy_shape_leg_b() {
    use crate::policy::identity::{IdentityIn, IdentityOut};
    use crate::policy::numbers::{DiallingPlan, NumberRules};
    let mut w = world_tweaked(|t| {
        t[0].numbers_in = NumberRules { e164: Some(DiallingPlan::with_defaults("49").unwrap()), ..Default::default() };
        t[0].identity_in = IdentityIn { trusted: false, verified_number: Some("+4940123456".into()) };
        t[1].identity_out = IdentityOut { trusted: true, ..Default::default() };
    });
    let national = invite_from_a("call-17")
        .replace("sip:+493012345@198.18.1.1 SIP", "sip:0301234567@198.18.1.1 SIP")
        .replace("<sip:+4940111@198.18.1.10>", "<sip:040111@198.18.1.10>");
    let sent = w.send(A, SBC_A, national.replace("\r\n\r\nv=0", "\r\nP-Asserted-Identity: <sip:+999@x>\r\n\r\nv=0"));
    let inv_b = request(&sent, B, Method::Invite);
    assert_eq!(inv_b.uri.user(), Some(&b"+49301234567"[..]), "E.164 from the national number");
    assert_eq!(inv_b.headers.from().unwrap().uri().user(), Some(&b"+4940111"[..]), "From kept as presented");
    assert_eq!(hv(&inv_b, HeaderName::PAssertedIdentity), "<sip:+4940123456@198.18.2.1;user=phone>");
    w.send(B, SBC_B, answer(&inv_b, 486, "b1", B, ""));

    // Privacy: id towards an untrusted carrier (c): anonymous From, no PAI.
    let mut w = world_tweaked(|t| {
        t[0].identity_in = IdentityIn { trusted: false, verified_number: Some("+4940123456".into()) };
        t[1].disabled = true;
    });
    let private = invite_from_a("call-18").replace("Max-Forwards: 70\r\n", "Max-Forwards: 70\r\nPrivacy: id\r\n");
    let sent = w.send(A, SBC_A, private);
    let inv_c = request(&sent, C, Method::Invite);
    let from = hv(&inv_c, HeaderName::From);
    assert!(from.starts_with("\"Anonymous\" <sip:anonymous@anonymous.invalid>;tag="), "{from}");
    assert!(inv_c.headers.get(&HeaderName::PAssertedIdentity).is_none(), "no PAI across the trust boundary");
}

#[test]
fn max_duration_ends_the_call_with_bye_both_sides() {
    let mut w = world_planned(|_| {}, |p| p.max_duration = Some(Duration::from_secs(60)));
    connected(&mut w, "call-19");
    let sent = w.advance(Duration::from_secs(61));
    let bye_a = request(&sent, A, Method::Bye);
    let bye_b = request(&sent, B, Method::Bye);
    w.send(A, SBC_A, answer(&bye_a, 200, "x", A, ""));
    w.send(B, SBC_B, answer(&bye_b, 200, "b1", B, ""));
    assert_eq!((w.cdrs[0].release_cause, w.cdrs[0].released_by), ("max_duration", "sbc"));
    assert!((w.cdrs[0].duration().unwrap() - 60.0).abs() < 0.01);
}

#[test]
fn dead_peer_found_by_keepalive_ends_the_call_with_bye_both_sides() {
    let mut w = world_planned(|_| {}, |p| p.keepalive = Some(Duration::from_secs(30)));
    connected(&mut w, "call-20");
    let sent = w.advance(Duration::from_secs(31));
    let ka_a = request(&sent, A, Method::Options);
    let ka_b = request(&sent, B, Method::Options);
    w.send(A, SBC_A, answer(&ka_a, 200, "x", A, ""));
    // B lost the call (a restart): 481.
    let sent = w.send(B, SBC_B, answer(&ka_b, 481, "b1", B, ""));
    let bye_a = request(&sent, A, Method::Bye);
    request(&sent, B, Method::Bye);
    w.send(A, SBC_A, answer(&bye_a, 200, "x", A, ""));
    // B is gone: the CDR is written once A answered its BYE, not when B's BYE times out 32 s later.
    assert_eq!(w.cdrs.len(), 1, "the CDR does not wait for the dead leg's BYE");
    assert_eq!(w.ep.calls().len(), 0);
    w.advance(Duration::from_secs(40)); // B never answers its BYE: timer F ends the transaction, nothing more
    assert_eq!(w.cdrs.len(), 1);
    assert_eq!((w.cdrs[0].release_cause, w.cdrs[0].released_by), ("peer_gone", "b"));
}

#[test]
fn session_timer_passes_through_and_a_missed_refresh_ends_the_call() {
    let mut w = world(Limits::default());
    let invite = invite_from_a("call-21")
        .replace("Max-Forwards: 70\r\n", "Max-Forwards: 70\r\nSupported: timer, 100rel\r\nSession-Expires: 120\r\n");
    let sent = w.send(A, SBC_A, invite);
    let inv_b = request(&sent, B, Method::Invite);
    assert_eq!(hv(&inv_b, HeaderName::SessionExpires), "120");
    assert_eq!(hv(&inv_b, HeaderName::Supported), "timer", "only the extensions we carry end to end");
    let ok = answer(&inv_b, 200, "b1", B, "v=0\r\n").replacen(
        "\r\n\r\n",
        "\r\nRequire: timer\r\nSession-Expires: 120;refresher=uac\r\n\r\n",
        1,
    );
    let sent = w.send(B, SBC_B, ok);
    let ok_a = response(&sent, A, 200);
    assert_eq!(rv(&ok_a, HeaderName::SessionExpires), "120;refresher=uac");
    assert_eq!(rv(&ok_a, HeaderName::Require), "timer");
    // Nobody refreshes: at 120 s the SBC ends the call on both sides.
    let sent = w.advance(Duration::from_secs(121));
    request(&sent, B, Method::Bye);
    let bye_a = request(&sent, A, Method::Bye);
    assert_eq!(bye_a.headers.get(&HeaderName::CallId), Some(&b"call-21"[..]));
}

#[test]
fn customer_trunk_with_inbound_auth_is_challenged_then_admitted() {
    use crate::policy::digest::{Challenge, Client, Secret};
    let mut w = world_tweaked(|t| {
        t[0].inbound_auth = Some(crate::routing::Credentials { username: "pbx".into(), password: Secret::new("pw") });
    });
    let sent = w.send(A, SBC_A, invite_from_a("call-22"));
    let challenge = response(&sent, A, 407);
    assert!(!sent.iter().any(|(a, _)| *a == addr(B)), "nothing goes out before the caller is authenticated");
    let ch = Challenge::parse(&rv(&challenge, HeaderName::ProxyAuthenticate)).expect("a challenge we can answer");
    let mut client = Client::new(ch, "pbx", Secret::new("pw"));
    let auth = client.authorize("INVITE", "sip:+493012345@198.18.1.1", "c0ffee");
    let retry = invite_from_a("call-22")
        .replace("branch=z9hG4bK-call-22", "branch=z9hG4bK-call-22b")
        .replace("CSeq: 1 INVITE", &format!("CSeq: 2 INVITE\r\nProxy-Authorization: {auth}"));
    let sent = w.send(A, SBC_A, retry);
    let inv_b = request(&sent, B, Method::Invite);
    assert!(inv_b.headers.get(&HeaderName::ProxyAuthorization).is_none(), "credentials stay on leg A");

    // A wrong password is challenged again.
    let mut client = Client::new(
        Challenge::parse(&rv(&challenge, HeaderName::ProxyAuthenticate)).unwrap(),
        "pbx",
        Secret::new("wrong"),
    );
    let auth = client.authorize("INVITE", "sip:+493012345@198.18.1.1", "c0ffee");
    let bad =
        invite_from_a("call-23").replace("CSeq: 1 INVITE", &format!("CSeq: 1 INVITE\r\nProxy-Authorization: {auth}"));
    let sent = w.send(A, SBC_A, bad);
    response(&sent, A, 407);
    // Only the wrong password is an offence of the source (the first INVITE without credentials is not).
    assert_eq!(
        w.offences,
        vec![(addr(A), crate::policy::Offence::AuthFailed { username: Some("pbx".into()) })],
        "offences reported for the edge guard"
    );
}

#[test]
fn pass_headers_carry_only_the_allowlisted_headers_and_never_built_ones() {
    let mut w = world_tweaked(|t| t[1].pass_headers = vec!["x-account".into(), "via".into(), "call-id".into()]);
    let invite = invite_from_a("call-24").replace("X-Internal:", "X-Account: 42\r\nX-Internal:");
    let sent = w.send(A, SBC_A, invite);
    let inv_b = request(&sent, B, Method::Invite);
    assert_eq!(inv_b.headers.get(&HeaderName::Other(Bytes::from_static(b"x-account"))), Some(&b"42"[..]));
    assert!(inv_b.headers.get(&HeaderName::Other(Bytes::from_static(b"X-Internal"))).is_none());
    assert_eq!(inv_b.headers.count(&HeaderName::Via), 1, "our Via only, whatever the allowlist says");
    assert_ne!(inv_b.headers.get(&HeaderName::CallId), Some(&b"call-24"[..]));
}

const SDP_B: &str = "v=0\r\no=carrier 7 7 IN IP4 198.18.2.10\r\ns=-\r\nc=IN IP4 198.18.2.10\r\nt=0 0\r\n\
m=audio 7000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

#[test]
fn anchored_media_shows_each_side_only_relay_addresses_and_ends_with_the_call() {
    use relay_proto::control::Command;
    let mut w = world_with_media();
    let sent = w.send(A, SBC_A, invite_from_a("call-m1"));
    let inv_b = request(&sent, B, Method::Invite);
    let offer = String::from_utf8_lossy(&inv_b.body).into_owned();
    assert!(!String::from_utf8_lossy(&inv_b.to_bytes()).contains("198.18.1.10"), "no address of side A: {offer}");
    assert!(offer.contains("c=IN IP4 198.18.2.1\r\n") && offer.contains("m=audio 40000 RTP/AVP 0"), "{offer}");
    assert!(w.media.iter().any(|c| matches!(c, Command::Upsert(e) if e.peer == Some(addr("198.18.1.10:30000")))));
    let sent = w.send(B, SBC_B, answer(&inv_b, 200, "b1", B, SDP_B));
    let ok = response(&sent, A, 200);
    let answer_a = String::from_utf8_lossy(&ok.body).into_owned();
    assert!(!answer_a.contains("198.18.2.10"), "no address of the carrier: {answer_a}");
    assert!(answer_a.contains("c=IN IP4 198.18.1.1\r\n") && answer_a.contains("m=audio 40000 "), "{answer_a}");
    assert!(w.media.iter().any(|c| matches!(c, Command::Upsert(e) if e.peer == Some(addr("198.18.2.10:7000")))));
    assert_eq!(w.ep.calls().media_counts(), Some((1, 2)));
    let bye = in_dialog("BYE", SBC_A, &rv(&ok, HeaderName::From), &rv(&ok, HeaderName::To), b"call-m1", 2, A);
    let sent = w.send(A, SBC_A, bye);
    let bye_b = request(&sent, B, Method::Bye);
    w.send(B, SBC_B, answer(&bye_b, 200, "b1", B, ""));
    assert!(matches!(w.media.last(), Some(Command::Remove { .. })), "{:?}", w.media.last());
    assert_eq!(w.cdrs.len(), 1);
    assert!(w.cdrs[0].media_session.is_some());
    assert_eq!(w.ep.calls().media_counts(), Some((0, 0)));
}

#[test]
fn unreadable_offer_is_refused_488_and_a_silent_call_is_ended_by_rtp_timeout() {
    let mut w = world_with_media();
    let bad = invite_from_a("call-m2").replace("v=0\r\no=- 1 1", "v=9\r\no=- 1 1");
    let sent = w.send(A, SBC_A, bad);
    response(&sent, A, 488);
    assert!(sent.iter().all(|(to, _)| *to != addr(B)), "nothing reaches the carrier");

    let sent = w.send(A, SBC_A, invite_from_a("call-m3"));
    let inv_b = request(&sent, B, Method::Invite);
    let sent = w.send(B, SBC_B, answer(&inv_b, 200, "b1", B, SDP_B));
    response(&sent, A, 200);
    let session = w
        .media
        .iter()
        .find_map(|c| match c {
            relay_proto::control::Command::Upsert(e) => Some(e.session),
            _ => None,
        })
        .expect("a session");
    w.ep.handle_media_event(w.now, &relay_proto::control::Event::Idle { session });
    let sent = w.drain();
    request(&sent, A, Method::Bye);
    request(&sent, B, Method::Bye);
}

#[test]
fn a_webrtc_leg_whose_media_ended_gets_the_call_hung_up_on_both_legs() {
    let mut w = world_with_media();
    let sent = w.send(A, SBC_A, invite_from_a("call-w1"));
    let inv_b = request(&sent, B, Method::Invite);
    let sent = w.send(B, SBC_B, answer(&inv_b, 200, "b1", B, SDP_B));
    response(&sent, A, 200);
    let (session, local) = w
        .media
        .iter()
        .find_map(|c| match c {
            relay_proto::control::Command::Upsert(e) => Some((e.session, e.local)),
            _ => None,
        })
        .expect("a session");
    let ended = relay_proto::control::Event::WebrtcEnded { session, local, reason: "consent_expired".into() };
    w.ep.handle_media_event(w.now, &ended);
    let sent = w.drain();
    request(&sent, A, Method::Bye);
    request(&sent, B, Method::Bye);
}

#[test]
fn relay_down_refuses_new_calls_with_503() {
    let mut w = world_with_media();
    w.ep.set_media_available(false);
    let sent = w.send(A, SBC_A, invite_from_a("call-m4"));
    let r = response(&sent, A, 503);
    assert!(r.headers.get(&HeaderName::RetryAfter).is_some());
    w.ep.set_media_available(true);
    let sent = w.send(A, SBC_A, invite_from_a("call-m5"));
    request(&sent, B, Method::Invite);
}

#[test]
fn reliable_183_and_prack_cross_end_to_end_with_rack_mapped_to_leg_b() {
    let mut w = world(Limits::default());
    let invite = invite_from_a("call-p1").replace("Max-Forwards: 70\r\n", "Max-Forwards: 70\r\nSupported: 100rel\r\n");
    let sent = w.send(A, SBC_A, invite);
    let inv_b = request(&sent, B, Method::Invite);
    assert!(hv(&inv_b, HeaderName::Supported).contains("100rel"), "B is offered 100rel because A supports it");
    let mut r183 = answer(&inv_b, 183, "b1", B, "v=0\r\n");
    r183 = r183.replace("Content-Type:", "Require: 100rel\r\nRSeq: 7\r\nContent-Type:");
    let sent = w.send(B, SBC_B, r183);
    let early = response(&sent, A, 183);
    assert_eq!(rv(&early, HeaderName::RSeq), "7");
    assert!(rv(&early, HeaderName::Require).contains("100rel"));
    let prack = in_dialog("PRACK", SBC_A, &rv(&early, HeaderName::From), &rv(&early, HeaderName::To), b"call-p1", 2, A)
        .replace("Content-Length: 0", "RAck: 7 1 INVITE\r\nContent-Length: 0");
    let sent = w.send(A, SBC_A, prack);
    let prack_b = request(&sent, B, Method::Prack);
    assert_eq!(prack_b.headers.get(&HeaderName::CallId), inv_b.headers.get(&HeaderName::CallId), "on B's dialog");
    let b_cseq = inv_b.headers.cseq().unwrap().seq;
    assert_eq!(hv(&prack_b, HeaderName::RAck), format!("7 {b_cseq} INVITE"));
    let sent = w.send(B, SBC_B, answer(&prack_b, 200, "b1", B, ""));
    let ok = response(&sent, A, 200);
    assert_eq!(ok.headers.cseq().unwrap().method, Method::Prack, "the PRACK's 200 goes back to A");
    let sent = w.send(B, SBC_B, answer(&inv_b, 200, "b1", B, "v=0\r\n"));
    response(&sent, A, 200);
}

#[test]
fn standby_takes_over_an_answered_call_and_ends_it_with_one_cdr_of_its_true_duration() {
    // Two boxes with the same config and service addresses: the active replicates, then dies.
    let mut active = world_with_media();
    let mut standby = world_with_media();
    active.ep.set_replication(true);
    standby.now = active.now;
    let sent = active.send(A, SBC_A, invite_from_a("call-ha1"));
    let inv_b = request(&sent, B, Method::Invite);
    let sent = active.send(B, SBC_B, answer(&inv_b, 200, "b1", B, SDP_B));
    let ok = response(&sent, A, 200);
    assert_eq!(active.records.len(), 2, "one record at the carrier attempt, one when the call is answered");
    assert!(
        matches!(&active.records[1], crate::ha::Record::Call(c) if c.setup.is_none() && c.version == 2),
        "the answered call's record has no setup section and the newer version"
    );
    // The record crosses as JSON, as it does on the replication link.
    for r in active.records.drain(..) {
        let wire = serde_json::to_string(&r).expect("records serialize");
        standby.ep.apply_record(standby.now, serde_json::from_str(&wire).expect("records parse"));
    }
    assert_eq!(standby.ep.foreign_calls(), 1);
    // Ten seconds of talk, then the active is gone and the standby takes over.
    standby.now += Duration::from_secs(10);
    assert_eq!(standby.ep.take_over(standby.now, None), 1);
    standby.drain();
    assert!(
        standby.media.iter().any(|c| matches!(c, relay_proto::control::Command::Upsert(e) if e.local.port() == 40000)),
        "the media session is anchored again on the same ports: {:?}",
        standby.media
    );
    // The caller hangs up: the BYE reaches the standby, which ends the carrier's leg on its dialog.
    let bye = in_dialog("BYE", SBC_A, &rv(&ok, HeaderName::From), &rv(&ok, HeaderName::To), b"call-ha1", 2, A);
    let sent = standby.send(A, SBC_A, bye);
    response(&sent, A, 200);
    let bye_b = request(&sent, B, Method::Bye);
    assert_eq!(bye_b.headers.get(&HeaderName::CallId), inv_b.headers.get(&HeaderName::CallId));
    assert!(bye_b.headers.cseq().unwrap().seq > 1000, "CSeq above anything the old active sent");
    assert_eq!(hv(&bye_b, HeaderName::From), hv(&inv_b, HeaderName::From), "our tag on leg B is the same");
    standby.send(B, SBC_B, answer(&bye_b, 200, "b1", B, ""));
    assert_eq!(standby.cdrs.len(), 1, "exactly one CDR, from the standby");
    let d = standby.cdrs[0].duration().expect("answered");
    assert!((9.9..10.1).contains(&d), "the true duration, from the active's answer: {d}");
    assert_eq!(standby.cdrs[0].a_call_id, "call-ha1");
}

#[test]
fn a_call_that_ends_on_the_active_is_forgotten_by_the_standby() {
    let mut active = world_with_media();
    let mut standby = world_with_media();
    active.ep.set_replication(true);
    let (_inv_b, ok) = {
        let sent = active.send(A, SBC_A, invite_from_a("call-ha2"));
        let inv_b = request(&sent, B, Method::Invite);
        let sent = active.send(B, SBC_B, answer(&inv_b, 200, "b1", B, SDP_B));
        (inv_b, response(&sent, A, 200))
    };
    let bye = in_dialog("BYE", SBC_A, &rv(&ok, HeaderName::From), &rv(&ok, HeaderName::To), b"call-ha2", 2, A);
    let sent = active.send(A, SBC_A, bye);
    let bye_b = request(&sent, B, Method::Bye);
    active.send(B, SBC_B, answer(&bye_b, 200, "b1", B, ""));
    assert!(matches!(active.records.last(), Some(crate::ha::Record::Ended { .. })));
    // Out of order on purpose: an older version never resurrects an ended call.
    let mut records = active.records.clone();
    records.reverse();
    for r in records {
        standby.ep.apply_record(standby.now, r);
    }
    assert_eq!(standby.ep.foreign_calls(), 0);
    assert_eq!(standby.ep.take_over(standby.now, None), 0);
}

#[test]
fn demoted_box_hands_its_answered_calls_back_as_foreign_without_bye_or_cdr() {
    let mut w = world_with_media();
    w.ep.set_replication(true);
    let sent = w.send(A, SBC_A, invite_from_a("call-ha3"));
    let inv_b = request(&sent, B, Method::Invite);
    w.send(B, SBC_B, answer(&inv_b, 200, "b1", B, SDP_B));
    assert_eq!(w.ep.demote(w.now, true, None), 1);
    let sent = w.drain();
    assert!(sent.is_empty(), "no BYE: the peer owns the call now: {sent:?}");
    assert!(w.cdrs.is_empty(), "no CDR here");
    assert_eq!(w.ep.calls().len(), 0);
    assert_eq!(w.ep.foreign_calls(), 1, "kept, in case this box has to take it back");
    assert!(matches!(w.media.last(), Some(relay_proto::control::Command::Remove { .. })));
}

#[test]
fn after_a_takeover_a_bye_from_the_carrier_ends_both_legs_too() {
    let mut active = world_with_media();
    let mut standby = world_with_media();
    active.ep.set_replication(true);
    let sent = active.send(A, SBC_A, invite_from_a("call-ha4"));
    let inv_b = request(&sent, B, Method::Invite);
    let sent = active.send(B, SBC_B, answer(&inv_b, 200, "b1", B, SDP_B));
    let ok = response(&sent, A, 200);
    for r in active.records.drain(..) {
        standby.ep.apply_record(standby.now, r);
    }
    standby.now += Duration::from_secs(4);
    assert_eq!(standby.ep.take_over(standby.now, None), 1);
    standby.drain();
    // The carrier hangs up on its dialog (our tag is its To tag): the standby answers it and ends leg A.
    let from = format!("{};tag=b1", hv(&inv_b, HeaderName::To));
    let bye = in_dialog(
        "BYE",
        SBC_B,
        &from,
        &hv(&inv_b, HeaderName::From),
        inv_b.headers.get(&HeaderName::CallId).expect("call-id"),
        5,
        B,
    );
    let sent = standby.send(B, SBC_B, bye);
    response(&sent, B, 200);
    let bye_a = request(&sent, A, Method::Bye);
    assert_eq!(bye_a.headers.get(&HeaderName::CallId), Some(&b"call-ha4"[..]));
    assert_eq!(hv(&bye_a, HeaderName::From), rv(&ok, HeaderName::To), "our tag on leg A is the same");
    standby.send(A, SBC_A, answer(&bye_a, 200, "x", A, ""));
    assert_eq!(standby.cdrs.len(), 1);
    assert_eq!(standby.cdrs[0].released_by, "b");
}

/// Media anchored, the customer's trunk with `srtp = a`, carrier b's and c's with `b`.
fn world_with_srtp(a: relay_proto::sdes::SrtpMode, b: relay_proto::sdes::SrtpMode) -> World {
    world_with_media_tweaked(|t| {
        t[0].srtp = a;
        t[1].srtp = b;
        t[2].srtp = b;
    })
}

/// baresip's offer with mandatory SRTP (`mediaenc=srtp-mand`), its key `A_KEY`.
const A_KEY: &str = "hgj4ee1bpfbap+YK9q31tcCaN5Qdmh0QGw4nBDg5";

fn srtp_invite_from_a(call_id: &str) -> String {
    let plain = invite_from_a(call_id);
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 198.18.1.10\r\ns=-\r\nc=IN IP4 198.18.1.10\r\nt=0 0\r\nm=audio 30000 RTP/SAVP 0\r\n\
         a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{A_KEY}\r\n"
    );
    let (head, _) = plain.split_once("Content-Length:").expect("a Content-Length");
    format!("{head}Content-Length: {}\r\n\r\n{sdp}", sdp.len())
}

fn inline_keys(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .lines()
        .filter_map(|l| l.split_once("inline:").map(|(_, k)| k.split('|').next().unwrap_or("").to_owned()))
        .collect()
}

#[test]
fn srtp_caller_to_a_plain_carrier_gets_a_key_of_the_sbcs_own_and_the_carrier_no_key() {
    use relay_proto::sdes::SrtpMode::{Off, Required};
    let mut w = world_with_srtp(Required, Off);
    let sent = w.send(A, SBC_A, srtp_invite_from_a("call-s1"));
    let inv_b = request(&sent, B, Method::Invite);
    let offer = String::from_utf8_lossy(&inv_b.body).into_owned();
    assert!(offer.contains("m=audio 40000 RTP/AVP 0\r\n"), "plain RTP towards the carrier: {offer}");
    assert!(!offer.contains("a=crypto") && !offer.contains(A_KEY), "no key crosses: {offer}");
    let sent = w.send(B, SBC_B, answer(&inv_b, 200, "b1", B, SDP_B));
    let ok = response(&sent, A, 200);
    let to_a = String::from_utf8_lossy(&ok.body).into_owned();
    assert!(to_a.contains("m=audio 40000 RTP/SAVP 0\r\n"), "{to_a}");
    let keys = inline_keys(&ok.body);
    assert_eq!(keys.len(), 1, "{to_a}");
    assert_ne!(keys[0], A_KEY, "our own key, never the caller's");
    let srtp_a = w.media.iter().rev().find_map(|c| match c {
        relay_proto::control::Command::Upsert(e) if e.leg == relay_proto::control::Leg::A => Some(e.srtp.clone()),
        _ => None,
    });
    let srtp_a = srtp_a.flatten().expect("leg A's endpoints carry keys");
    assert_eq!((srtp_a.theirs.to_base64(), srtp_a.ours.to_base64()), (A_KEY.to_owned(), keys[0].clone()));
}

#[test]
fn plain_offer_from_a_trunk_that_requires_srtp_is_refused_488() {
    use relay_proto::sdes::SrtpMode::{Off, Required};
    let mut w = world_with_srtp(Required, Off);
    let sent = w.send(A, SBC_A, invite_from_a("call-s2"));
    response(&sent, A, 488);
    assert!(sent.iter().all(|(to, _)| *to != addr(B)), "nothing reaches the carrier");
    // And the reverse: SRTP offered on a trunk with srtp = off.
    let mut w = world_with_srtp(Off, Off);
    let sent = w.send(A, SBC_A, srtp_invite_from_a("call-s3"));
    response(&sent, A, 488);
    assert_eq!(w.ep.calls().media_counts(), Some((0, 0)), "no ports kept");
}

#[test]
fn carrier_that_answers_plain_where_srtp_is_required_fails_the_call_and_the_next_carrier_gets_new_keys() {
    use relay_proto::sdes::SrtpMode::{Off, Required};
    let mut w = world_with_srtp(Off, Required);
    let sent = w.send(A, SBC_A, invite_from_a("call-s4"));
    let inv_b = request(&sent, B, Method::Invite);
    assert!(String::from_utf8_lossy(&inv_b.body).contains("RTP/SAVP"), "required: SAVP to the carrier");
    let keys_b = inline_keys(&inv_b.body);
    assert_eq!(keys_b.len(), 3, "three suites, a key each");
    // Carrier b fails over; carrier c gets keys of its own.
    let sent = w.send(B, SBC_B, answer(&inv_b, 503, "b1", B, ""));
    let inv_c = request(&sent, C, Method::Invite);
    let keys_c = inline_keys(&inv_c.body);
    assert_eq!(keys_c.len(), 3);
    assert!(keys_b.iter().all(|k| !keys_c.contains(k)), "{keys_b:?} {keys_c:?}");
    // Carrier c answers plain RTP: the caller gets 488, the carrier a BYE.
    let sdp_c = SDP_B.replace("198.18.2.10", "198.18.2.11");
    let sent = w.send(C, SBC_B, answer(&inv_c, 200, "c1", C, &sdp_c));
    response(&sent, A, 488);
    request(&sent, C, Method::Bye);
}

mod active_active;
mod admin;
mod correlation;
mod dns_targets;
mod drain;
mod reload;
mod setup_takeover;
mod transports;
mod users;
mod webrtc_media;
mod websocket;

#[test]
fn a_browser_call_taken_over_by_the_standby_resumes_its_webrtc_leg_with_the_replicated_keys() {
    use relay_proto::control::{Command, Event};
    use relay_proto::sdes::{KeyMaterial, SrtpKeys, Suite};
    let browser_sdp = "v=0\r\no=- 63078 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
        m=audio 54321 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 198.18.1.10\r\na=ice-ufrag:Xk3R\r\n\
        a=ice-pwd:q8FhR1pTqK5bH0yVb9mZc2Lw\r\na=fingerprint:sha-256 4F:1A:9C:E2:77:0B:5D:63:A8:10:C4:3E:92:58:F1:0D:\
        B6:27:4A:E9:13:7C:D5:82:60:FF:3B:A1:4E:C9:08:75\r\na=setup:actpass\r\na=mid:0\r\na=rtcp-mux\r\n\
        a=rtpmap:0 PCMU/8000\r\n";
    let plain =
        "v=0\r\no=- 1 1 IN IP4 198.18.1.10\r\ns=-\r\nc=IN IP4 198.18.1.10\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\n";
    let invite = invite_from_a("call-hw1")
        .replace(&format!("Content-Length: {}", plain.len()), &format!("Content-Length: {}", browser_sdp.len()))
        .replace(plain, browser_sdp);
    let mut active = world_with_media();
    let mut standby = world_with_media();
    active.ep.set_replication(true);
    standby.now = active.now;
    let sent = active.send(A, SBC_A, invite);
    let inv_b = request(&sent, B, Method::Invite);
    let sent = active.send(B, SBC_B, answer(&inv_b, 200, "b1", B, SDP_B));
    response(&sent, A, 200);
    let spec = active
        .media
        .iter()
        .find_map(|c| match c {
            Command::Webrtc(w) => Some((**w).clone()),
            _ => None,
        })
        .expect("the browser leg's spec");
    // The relay latches the browser and completes the handshake: each a new version of the call's record.
    let browser: SocketAddr = "198.18.1.10:54321".parse().unwrap();
    let keys = SrtpKeys {
        suite: Suite::AesCm128HmacSha1_80,
        ours: KeyMaterial::new(vec![3; 30]),
        theirs: KeyMaterial::new(vec![4; 30]),
    };
    let before = active.records.len();
    let latched = Event::Latched { session: spec.session, local: spec.local, peer: browser };
    active.ep.handle_media_event(active.now, &latched);
    let keyed = Event::WebrtcKeyed { session: spec.session, local: spec.local, keys: keys.clone() };
    active.ep.handle_media_event(active.now, &keyed);
    active.ep.handle_media_event(active.now, &keyed);
    let rollover = relay_proto::srtp_roc::Rollover { ssrc: 0x1234, outbound: true, roc: 3 };
    let rolled = Event::SrtpRollover { session: spec.session, local: spec.local, rollover };
    active.ep.handle_media_event(active.now, &rolled);
    active.drain();
    assert_eq!(
        active.records.len(),
        before + 3,
        "a record for the latch, the keys and the rollover; none for a repeat"
    );
    for r in active.records.drain(..) {
        let wire = serde_json::to_string(&r).expect("records serialize");
        standby.ep.apply_record(standby.now, serde_json::from_str(&wire).expect("records parse"));
    }
    standby.now += Duration::from_secs(5);
    assert_eq!(standby.ep.take_over(standby.now, None), 1);
    standby.drain();
    let resumed: Vec<_> = standby
        .media
        .iter()
        .filter_map(|c| match c {
            Command::WebrtcResume { spec, resume } => {
                Some(((**spec).clone(), resume.peer, resume.keys.clone(), resume.rollovers.clone()))
            }
            _ => None,
        })
        .collect();
    let expected = vec![(spec, browser, keys, vec![rollover])];
    assert_eq!(resumed, expected, "the leg resumed with the active's keys and counters: {:?}", standby.media);
    assert!(!standby.media.iter().any(|c| matches!(c, Command::Webrtc(_))), "no new handshake");
}

#[test]
fn carrier_repeating_its_2xx_gets_the_same_ack_whether_kept_or_built_again() {
    for replicating in [false, true] {
        let mut w = world(Limits::default());
        w.ep.set_replication(replicating);
        let sent = w.send(A, SBC_A, invite_from_a("ack-again"));
        let inv_b = request(&sent, B, Method::Invite);
        let ok = answer(&inv_b, 200, "b1", B, "v=0\r\n");
        let first = request(&w.send(B, SBC_B, ok.clone()), B, Method::Ack);
        w.advance(Duration::from_millis(500));
        let again = request(&w.send(B, SBC_B, ok), B, Method::Ack);
        assert_eq!(again.to_bytes(), first.to_bytes(), "the ACK as first sent (replicating: {replicating})");
        assert_ne!(
            first.headers.top_via().unwrap().branch(),
            inv_b.headers.top_via().unwrap().branch(),
            "a branch of its own"
        );
    }
}
