//! Canary calls under simulated time: the INVITE, the answer, the media commands, the BYE, and the result.

use super::*;
use crate::endpoint::{Config, Endpoint};
use crate::msg::parse_datagram;
use crate::routing::{CanaryMedia, Gateway, Trunk};
use std::sync::Arc;

const GW: &str = "198.18.2.10:5060";
const LOCAL: &str = "198.18.2.1:5060";
const RTP: &str = "198.18.2.1:40000";

fn canary(media: CanaryMedia) -> CanaryConfig {
    CanaryConfig {
        number: "+4930999".into(),
        every: Duration::from_secs(10),
        hold: Duration::from_secs(3),
        answer_timeout: Duration::from_secs(5),
        media,
        from: "canary".into(),
    }
}

fn endpoint(media: CanaryMedia) -> Endpoint {
    let trunk = Trunk {
        gateways: vec![Gateway { transport: Transport::Udp, addr: GW.parse().unwrap() }],
        canary: Some(canary(media)),
        ..Trunk::new("carrier-b")
    };
    let plan = Plan { trunks: vec![trunk], ..Plan::default() };
    let config =
        Config { plan: Arc::new(plan), locals: vec![(Transport::Udp, LOCAL.parse().unwrap())], ..Config::default() };
    let mut ep = Endpoint::new(config, 7);
    assert_eq!(ep.canary_trunks(), vec![(TrunkId(0), Some(from_gw()))]);
    ep.set_canary_media(TrunkId(0), RTP.parse().unwrap());
    ep
}

#[derive(Default)]
struct Seen {
    sent: Vec<Message>,
    media: Vec<CanaryMediaCommand>,
    results: Vec<CanaryReport>,
}

fn drain(ep: &mut Endpoint) -> Seen {
    let mut s = Seen::default();
    while let Some(o) = ep.poll_output() {
        match o {
            Output::Transmit { peer, bytes } => {
                assert_eq!(peer.remote, GW.parse::<std::net::SocketAddr>().unwrap(), "everything goes to the gateway");
                s.sent.push(parse_datagram(bytes).expect("we send valid SIP"));
            }
            Output::Observe(Observation::CanaryResult(r)) => s.results.push(r),
            Output::Canary(c) => s.media.push(c),
            _ => {}
        }
    }
    s
}

fn requests(s: &Seen, method: Method) -> Vec<&Request> {
    s.sent
        .iter()
        .filter_map(|m| if let Message::Request(r) = m { Some(r) } else { None })
        .filter(|r| r.method == method)
        .collect()
}

fn response(invite: &Request, status: u16, body: &str) -> Bytes {
    let via = String::from_utf8_lossy(invite.headers.get(&HeaderName::Via).unwrap()).into_owned();
    let from = String::from_utf8_lossy(invite.headers.get(&HeaderName::From).unwrap()).into_owned();
    let to = String::from_utf8_lossy(invite.headers.get(&HeaderName::To).unwrap()).into_owned();
    let call_id = String::from_utf8_lossy(invite.headers.get(&HeaderName::CallId).unwrap()).into_owned();
    let cseq = String::from_utf8_lossy(invite.headers.get(&HeaderName::CSeq).unwrap()).into_owned();
    let ctype = if body.is_empty() { String::new() } else { "Content-Type: application/sdp\r\n".to_owned() };
    Bytes::from(format!(
        "SIP/2.0 {status} X\r\nVia: {via}\r\nFrom: {from}\r\nTo: {to};tag=far\r\nCall-ID: {call_id}\r\nCSeq: {cseq}\r\n\
         Contact: <sip:echo@198.18.2.10:5060>\r\n{ctype}Content-Length: {}\r\n\r\n{body}",
        body.len()
    ))
}

fn from_gw() -> Peer {
    Peer { transport: Transport::Udp, local: LOCAL.parse().unwrap(), remote: GW.parse().unwrap(), conn: None }
}

const ANSWER: &str =
    "v=0\r\no=- 1 1 IN IP4 198.18.2.10\r\ns=-\r\nc=IN IP4 198.18.2.10\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n";

/// Runs the endpoint to the canary's INVITE, the first one `every` after the start.
fn invite(ep: &mut Endpoint, t0: Instant) -> Request {
    ep.set_registering(t0, true);
    ep.handle_timeout(t0);
    assert!(drain(ep).sent.is_empty(), "no canary at the start");
    assert_eq!(ep.poll_timeout(), Some(t0 + Duration::from_secs(10)), "the first canary is due one interval in");
    ep.handle_timeout(t0 + Duration::from_secs(10));
    let s = drain(ep);
    let inv = requests(&s, Method::Invite);
    assert_eq!(inv.len(), 1, "one INVITE: {:?}", s.sent);
    inv[0].clone()
}

#[test]
fn answered_echo_canary_sends_media_hangs_up_after_hold_and_succeeds() {
    let mut ep = endpoint(CanaryMedia::Echo);
    let t0 = Instant::now();
    let inv = invite(&mut ep, t0);
    assert_eq!(inv.uri.as_bytes(), &b"sip:+4930999@198.18.2.10:5060"[..]);
    let offer = String::from_utf8_lossy(&inv.body).into_owned();
    assert!(offer.contains("c=IN IP4 198.18.2.1\r\n") && offer.contains("m=audio 40000 RTP/AVP 0"), "{offer}");
    let t = t0 + Duration::from_secs(10);
    ep.handle_message(t + Duration::from_millis(300), from_gw(), response(&inv, 180, ""));
    ep.handle_message(t + Duration::from_millis(900), from_gw(), response(&inv, 200, ANSWER));
    let s = drain(&mut ep);
    assert_eq!(requests(&s, Method::Ack).len(), 1, "the 2xx is acknowledged");
    assert_eq!(
        s.media,
        vec![CanaryMediaCommand::Start { trunk: TrunkId(0), remote: "198.18.2.10:6000".parse().unwrap() }]
    );
    assert!(s.results.is_empty());
    let hold_end = t + Duration::from_millis(900) + Duration::from_secs(3);
    ep.handle_timeout(hold_end);
    let s = drain(&mut ep);
    let bye = requests(&s, Method::Bye);
    assert_eq!(bye.len(), 1, "BYE after the hold");
    assert_eq!(bye[0].headers.to().unwrap().tag(), Some(&b"far"[..]));
    assert_eq!(s.media, vec![CanaryMediaCommand::Stop { trunk: TrunkId(0) }]);
    ep.handle_canary_media(hold_end, TrunkId(0), 150, 148);
    let s = drain(&mut ep);
    assert_eq!(s.results.len(), 1);
    let r = s.results[0];
    assert_eq!((r.result, r.why, r.sent, r.received), (CanaryResult::Success, "media came back", 150, 148));
    assert_eq!(r.post_dial_delay, Some(Duration::from_millis(300)), "post-dial delay runs to the 180");
}

#[test]
fn answered_echo_canary_without_media_back_is_media_failed() {
    let mut ep = endpoint(CanaryMedia::Echo);
    let t0 = Instant::now();
    let inv = invite(&mut ep, t0);
    let t = t0 + Duration::from_secs(10);
    ep.handle_message(t + Duration::from_millis(50), from_gw(), response(&inv, 200, ANSWER));
    drain(&mut ep);
    ep.handle_timeout(t + Duration::from_secs(4));
    drain(&mut ep);
    ep.handle_canary_media(t + Duration::from_secs(4), TrunkId(0), 150, 0);
    let r = drain(&mut ep).results;
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].result, r[0].why), (CanaryResult::MediaFailed, "no media back"));
    assert_eq!(r[0].post_dial_delay, Some(Duration::from_millis(50)), "no 18x: post-dial delay runs to the answer");
}

#[test]
fn canary_with_no_media_expected_succeeds_on_answer() {
    let mut ep = endpoint(CanaryMedia::None);
    let t0 = Instant::now();
    let inv = invite(&mut ep, t0);
    let t = t0 + Duration::from_secs(10);
    ep.handle_message(t, from_gw(), response(&inv, 200, ANSWER));
    drain(&mut ep);
    ep.handle_timeout(t + Duration::from_secs(3));
    drain(&mut ep);
    ep.handle_canary_media(t + Duration::from_secs(3), TrunkId(0), 150, 0);
    let r = drain(&mut ep).results;
    assert_eq!((r[0].result, r[0].why), (CanaryResult::Success, "answered"));
}

#[test]
fn gateway_that_never_answers_fails_at_the_answer_timeout_without_cancel() {
    let mut ep = endpoint(CanaryMedia::Echo);
    let t0 = Instant::now();
    let first = invite(&mut ep, t0).headers.get_bytes(&HeaderName::CallId);
    let t = t0 + Duration::from_secs(15);
    ep.handle_timeout(t);
    let s = drain(&mut ep);
    assert!(requests(&s, Method::Cancel).is_empty(), "no CANCEL before a provisional (RFC 3261 §9.1)");
    assert_eq!(s.results.len(), 1);
    let r = s.results[0];
    assert_eq!((r.result, r.why, r.status), (CanaryResult::Failed, "no response", None));
    ep.handle_timeout(t0 + Duration::from_secs(20));
    let s = drain(&mut ep);
    let fresh =
        requests(&s, Method::Invite).iter().filter(|r| r.headers.get_bytes(&HeaderName::CallId) != first).count();
    assert_eq!(fresh, 1, "the next canary starts on time, as a new call");
}

#[test]
fn ringing_without_answer_is_cancelled_and_counted_no_answer() {
    let mut ep = endpoint(CanaryMedia::Echo);
    let t0 = Instant::now();
    let inv = invite(&mut ep, t0);
    let t = t0 + Duration::from_secs(10);
    ep.handle_message(t + Duration::from_secs(1), from_gw(), response(&inv, 180, ""));
    drain(&mut ep);
    ep.handle_timeout(t + Duration::from_secs(5));
    let s = drain(&mut ep);
    assert_eq!(requests(&s, Method::Cancel).len(), 1, "CANCEL after the provisional");
    assert_eq!(
        (s.results[0].result, s.results[0].post_dial_delay),
        (CanaryResult::NoAnswer, Some(Duration::from_secs(1)))
    );
}

#[test]
fn failure_statuses_map_to_failed_or_no_answer() {
    for (status, expected) in [(503, CanaryResult::Failed), (404, CanaryResult::Failed), (486, CanaryResult::NoAnswer)]
    {
        let mut ep = endpoint(CanaryMedia::Echo);
        let t0 = Instant::now();
        let inv = invite(&mut ep, t0);
        ep.handle_message(t0 + Duration::from_secs(10), from_gw(), response(&inv, status, ""));
        let s = drain(&mut ep);
        assert_eq!(s.results.len(), 1, "{status}");
        assert_eq!((s.results[0].result, s.results[0].status), (expected, Some(status)));
        assert_eq!(requests(&s, Method::Ack).len(), 1, "the transaction acknowledges the {status}");
    }
}

#[test]
fn far_end_bye_ends_the_canary_early_and_is_answered() {
    let mut ep = endpoint(CanaryMedia::Echo);
    let t0 = Instant::now();
    let inv = invite(&mut ep, t0);
    let t = t0 + Duration::from_secs(10);
    ep.handle_message(t, from_gw(), response(&inv, 200, ANSWER));
    let s = drain(&mut ep);
    let ack = requests(&s, Method::Ack)[0].clone();
    let from = String::from_utf8_lossy(ack.headers.get(&HeaderName::From).unwrap()).into_owned();
    let to = String::from_utf8_lossy(ack.headers.get(&HeaderName::To).unwrap()).into_owned();
    let call_id = String::from_utf8_lossy(ack.headers.get(&HeaderName::CallId).unwrap()).into_owned();
    let bye = format!(
        "BYE sip:canary@198.18.2.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.2.10:5060;branch=z9hG4bKfarbye\r\n\
         From: {to}\r\nTo: {from}\r\nCall-ID: {call_id}\r\nCSeq: 1 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    ep.handle_message(t + Duration::from_secs(1), from_gw(), Bytes::from(bye));
    let s = drain(&mut ep);
    let ok = s.sent.iter().any(|m| matches!(m, Message::Response(r) if r.status == 200));
    assert!(ok, "the BYE is answered 200: {:?}", s.sent);
    assert!(requests(&s, Method::Bye).is_empty(), "no BYE of ours after theirs");
    assert_eq!(s.media, vec![CanaryMediaCommand::Stop { trunk: TrunkId(0) }]);
    ep.handle_canary_media(t + Duration::from_secs(1), TrunkId(0), 50, 50);
    assert_eq!(drain(&mut ep).results[0].result, CanaryResult::Success);
}

#[test]
fn answer_media_reads_media_level_connection_first() {
    let sdp =
        b"v=0\r\nc=IN IP4 198.18.2.10\r\nm=audio 7000 RTP/AVP 0\r\nc=IN IP4 198.18.2.11\r\nm=video 9 RTP/AVP 96\r\n";
    assert_eq!(answer_media(sdp), Some("198.18.2.11:7000".parse().unwrap()));
    assert_eq!(answer_media(b"v=0\r\nc=IN IP4 198.18.2.10\r\nm=audio 0 RTP/AVP 0\r\n"), None, "port 0: refused");
    assert_eq!(answer_media(b""), None);
}

#[test]
fn answer_after_the_canary_gave_up_is_acknowledged_and_hung_up() {
    let mut ep = endpoint(CanaryMedia::Echo);
    let t0 = Instant::now();
    let inv = invite(&mut ep, t0);
    ep.handle_timeout(t0 + Duration::from_secs(15));
    assert_eq!(drain(&mut ep).results[0].result, CanaryResult::Failed);
    ep.handle_message(t0 + Duration::from_secs(16), from_gw(), response(&inv, 200, ANSWER));
    let s = drain(&mut ep);
    assert_eq!((requests(&s, Method::Ack).len(), requests(&s, Method::Bye).len()), (1, 1), "{:?}", s.sent);
    assert!(s.media.is_empty() && s.results.is_empty(), "no media and no second result for a call given up");
}

#[test]
fn standby_of_a_pair_places_no_canary_until_it_is_active() {
    let mut ep = endpoint(CanaryMedia::Echo);
    let t0 = Instant::now();
    ep.handle_timeout(t0);
    ep.handle_timeout(t0 + Duration::from_secs(10));
    assert!(drain(&mut ep).sent.is_empty(), "a box that does not register (a standby) places no canary");
    ep.set_registering(t0 + Duration::from_secs(12), true);
    ep.handle_timeout(t0 + Duration::from_secs(20));
    assert_eq!(requests(&drain(&mut ep), Method::Invite).len(), 1, "the new active places the next one");
}

#[test]
fn canary_skips_a_gateway_its_probes_say_is_down_as_calls_do() {
    const GW2: &str = "198.18.2.11:5060";
    let trunk = Trunk {
        gateways: [GW, GW2].map(|g| Gateway { transport: Transport::Udp, addr: g.parse().unwrap() }).to_vec(),
        probe: Some(crate::routing::ProbeConfig {
            interval: Duration::from_secs(1),
            down_after: 1,
            up_after: 1,
            ..Default::default()
        }),
        canary: Some(canary(CanaryMedia::Echo)),
        ..Trunk::new("carrier-b")
    };
    let config = Config {
        plan: Arc::new(Plan { trunks: vec![trunk], ..Plan::default() }),
        locals: vec![(Transport::Udp, LOCAL.parse().unwrap())],
        ..Config::default()
    };
    let mut ep = Endpoint::new(config, 7);
    let t0 = Instant::now();
    ep.set_registering(t0, true);
    let mut invites = Vec::new();
    for s in 0..=10 {
        let now = t0 + Duration::from_secs(s);
        ep.handle_timeout(now);
        while let Some(o) = ep.poll_output() {
            let Output::Transmit { peer, bytes } = o else { continue };
            let Ok(Message::Request(r)) = parse_datagram(bytes) else { continue };
            // Only the second gateway answers its probes.
            if r.method == Method::Options && peer.remote == GW2.parse::<std::net::SocketAddr>().unwrap() {
                let ok = Response::to_request(&r, 200, "OK");
                ep.handle_message(now, peer, Message::Response(ok).to_bytes());
            }
            if r.method == Method::Invite {
                invites.push(peer.remote);
            }
        }
    }
    assert_eq!(invites, vec![GW2.parse::<SocketAddr>().unwrap()], "the canary went to the gateway that is up");
}

#[test]
fn shutdown_hangs_up_an_answered_canary_and_starts_no_more() {
    let mut ep = endpoint(CanaryMedia::Echo);
    let t0 = Instant::now();
    let inv = invite(&mut ep, t0);
    let t = t0 + Duration::from_secs(10);
    ep.handle_message(t, from_gw(), response(&inv, 200, ANSWER));
    drain(&mut ep);
    ep.shutdown(t + Duration::from_millis(500));
    let s = drain(&mut ep);
    assert_eq!(requests(&s, Method::Bye).len(), 1, "the answered canary is hung up at once");
    assert_eq!(s.media, vec![CanaryMediaCommand::Stop { trunk: TrunkId(0) }]);
    ep.handle_timeout(t0 + Duration::from_secs(20));
    assert!(requests(&drain(&mut ep), Method::Invite).is_empty(), "no canary after the stop");
}
