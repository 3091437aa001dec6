//! The core under simulated time: bytes in, bytes out.

use super::*;
use crate::msg::{parse_datagram, Message, Response};
use std::net::SocketAddr;
use std::time::Duration;

fn peer() -> Peer {
    Peer {
        transport: Transport::Udp,
        local: SocketAddr::from(([198, 18, 1, 1], 5060)),
        remote: SocketAddr::from(([198, 18, 1, 10], 5062)),
        conn: None,
    }
}

fn request(method: &str, branch: &str, to_tag: Option<&str>) -> Bytes {
    let to = to_tag.map_or(String::new(), |t| format!(";tag={t}"));
    Bytes::from(format!(
        "{method} sip:x@198.18.1.1 SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.1.10:5062;branch={branch};rport\r\n\
         From: <sip:a@198.18.1.10>;tag=f1\r\nTo: <sip:x@198.18.1.1>{to}\r\nCall-ID: {branch}@test\r\n\
         CSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ))
}

/// Every transmitted message, parsed, with its destination; observations collected separately.
fn drain(ep: &mut Endpoint) -> (Vec<(Peer, Message)>, Vec<Observation>) {
    let (sent, seen, _) = drain_all(ep);
    (sent, seen)
}

/// As [`drain`], with the offences reported.
#[allow(clippy::type_complexity)]
fn drain_all(ep: &mut Endpoint) -> (Vec<(Peer, Message)>, Vec<Observation>, Vec<(SocketAddr, crate::policy::Offence)>) {
    let (mut sent, mut seen, mut offences) = (Vec::new(), Vec::new(), Vec::new());
    while let Some(o) = ep.poll_output() {
        match o {
            Output::Transmit { peer, bytes } => sent.push((peer, parse_datagram(bytes).expect("we send valid SIP"))),
            Output::Observe(ob) => seen.push(ob),
            Output::Offence { source, offence } => offences.push((source, offence)),
            Output::Cdr(cdr) => panic!("no calls in these tests: {cdr:?}"),
            Output::Media(cmd) => panic!("no media in these tests: {cmd:?}"),
            Output::Replicate(r) => panic!("no replication in these tests: {r:?}"),
            Output::Canary(c) => panic!("no canary in these tests: {c:?}"),
        }
    }
    (sent, seen, offences)
}

fn only_response(sent: &[(Peer, Message)]) -> &Response {
    assert_eq!(sent.len(), 1, "exactly one message sent: {sent:?}");
    match &sent[0].1 {
        Message::Response(r) => r,
        Message::Request(r) => panic!("expected a response, sent {r:?}"),
    }
}

#[test]
fn options_answered_200_to_the_source_with_a_to_tag() {
    let mut ep = Endpoint::new(Config::default(), 1);
    ep.handle_message(Instant::now(), peer(), request("OPTIONS", "z9hG4bKopt1", None));
    let (sent, seen) = drain(&mut ep);
    let r = only_response(&sent);
    assert_eq!(r.status, 200);
    assert_eq!(sent[0].0.remote, peer().remote);
    assert!(r.headers.to().expect("to").tag().is_some());
    assert!(r.headers.get(&HeaderName::Allow).is_some());
    let via = r.headers.top_via().expect("via");
    assert_eq!(via.rport(), Some(Some(5062)), "rport filled in with the source port (RFC 3581)");
    assert_eq!(via.received(), None, "sent-by already is the source address");
    assert!(seen.contains(&Observation::RequestIn { method: "OPTIONS" }));
    assert!(seen.contains(&Observation::ResponseOut { method: "OPTIONS", status: 200 }));
}

#[test]
fn response_goes_to_the_source_address_with_received_when_sent_by_differs() {
    let mut ep = Endpoint::new(Config::default(), 1);
    let mut from_nat = peer();
    from_nat.remote = SocketAddr::from(([198, 18, 0, 77], 40000));
    ep.handle_message(Instant::now(), from_nat, request("OPTIONS", "z9hG4bKnat1", None));
    let (sent, _) = drain(&mut ep);
    assert_eq!(sent[0].0.remote, from_nat.remote, "answered where the request came from");
    let via = only_response(&sent).headers.top_via().expect("via");
    assert_eq!(via.received(), Some(&b"198.18.0.77"[..]));
    assert_eq!(via.rport(), Some(Some(40000)));
}

#[test]
fn retransmitted_options_gets_the_same_answer_without_a_new_transaction() {
    let mut ep = Endpoint::new(Config::default(), 1);
    let t0 = Instant::now();
    ep.handle_message(t0, peer(), request("OPTIONS", "z9hG4bKopt2", None));
    let (first, _) = drain(&mut ep);
    ep.handle_message(t0 + Duration::from_millis(500), peer(), request("OPTIONS", "z9hG4bKopt2", None));
    let (second, seen) = drain(&mut ep);
    assert_eq!(only_response(&second), only_response(&first), "same To tag, same response");
    assert!(!seen.iter().any(|o| matches!(o, Observation::TransactionStarted { .. })), "{seen:?}");
}

#[test]
fn unknown_method_501_and_requests_outside_dialogs_481() {
    let mut ep = Endpoint::new(Config::default(), 1);
    ep.handle_message(Instant::now(), peer(), request("FROBNICATE", "z9hG4bKu1", None));
    assert_eq!(only_response(&drain(&mut ep).0).status, 501);
    ep.handle_message(Instant::now(), peer(), request("BYE", "z9hG4bKb1", Some("gone")));
    assert_eq!(only_response(&drain(&mut ep).0).status, 481);
}

#[test]
fn malformed_request_gets_400_naming_the_problem_and_is_counted() {
    let mut ep = Endpoint::new(Config::default(), 1);
    let raw = String::from_utf8(request("OPTIONS", "z9hG4bKm1", None).to_vec())
        .expect("utf8")
        .replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE");
    ep.handle_message(Instant::now(), peer(), Bytes::from(raw));
    let (sent, seen) = drain(&mut ep);
    let r = only_response(&sent);
    assert_eq!(r.status, 400);
    assert!(seen.contains(&Observation::ParseError { transport: Transport::Udp, reason: "cseq_method" }));
}

#[test]
fn malformed_response_is_dropped_and_counted() {
    let mut ep = Endpoint::new(Config::default(), 1);
    ep.handle_message(Instant::now(), peer(), Bytes::from_static(b"SIP/2.0 999 Nope\r\n\r\n"));
    let (sent, seen) = drain(&mut ep);
    assert!(sent.is_empty());
    assert!(seen.iter().any(|o| matches!(o, Observation::ParseError { .. })));
}

#[test]
fn invite_without_trunks_is_refused_and_its_ack_absorbed() {
    let mut ep = Endpoint::new(Config::default(), 1);
    let t0 = Instant::now();
    ep.handle_message(t0, peer(), request("INVITE", "z9hG4bKinv1", None));
    let (sent, _) = drain(&mut ep);
    let r = only_response(&sent);
    assert_eq!(r.status, 403);
    let tag = r.headers.to().expect("to").tag().expect("tag").to_vec();
    let ack = request("ACK", "z9hG4bKinv1", Some(std::str::from_utf8(&tag).expect("utf8")));
    ep.handle_message(t0 + Duration::from_millis(10), peer(), ack);
    let (sent, _) = drain(&mut ep);
    assert!(sent.is_empty(), "the ACK ends the transaction, nothing is sent: {sent:?}");
    // No retransmission of the 403 after the ACK.
    ep.handle_timeout(t0 + Duration::from_secs(5));
    assert!(drain(&mut ep).0.is_empty());
}

#[test]
fn stray_response_is_dropped() {
    let mut ep = Endpoint::new(Config::default(), 1);
    let raw = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 198.18.1.1;branch=z9hG4bKnothing\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    ep.handle_message(Instant::now(), peer(), Bytes::from_static(raw));
    let (sent, _) = drain(&mut ep);
    assert!(sent.is_empty());
}

#[test]
fn scanner_user_agent_gets_no_answer_and_its_source_is_reported() {
    let mut ep = Endpoint::new(Config::default(), 1);
    let raw = String::from_utf8(request("OPTIONS", "z9hG4bKscan1", None).to_vec())
        .expect("utf8")
        .replace("Max-Forwards: 70", "Max-Forwards: 70\r\nUser-Agent: friendly-scanner");
    ep.handle_message(Instant::now(), peer(), Bytes::from(raw));
    let (sent, seen, offences) = drain_all(&mut ep);
    assert!(sent.is_empty(), "a scanner learns nothing: {sent:?}");
    assert!(seen.contains(&Observation::Dropped { reason: "scanner" }));
    assert_eq!(offences, vec![(peer().remote, crate::policy::Offence::Scanner)]);
}

#[test]
fn malformed_message_is_an_offence_of_its_source() {
    let mut ep = Endpoint::new(Config::default(), 1);
    ep.handle_message(Instant::now(), peer(), Bytes::from_static(b"\x16\x03\x01 garbage\r\n\r\n"));
    let (_, _, offences) = drain_all(&mut ep);
    assert_eq!(offences, vec![(peer().remote, crate::policy::Offence::Malformed)]);
}

/// A plan with one trunk known by its source (the caller of these tests) and the drop mode for strangers.
fn dropping_plan() -> Config {
    use crate::routing::{Plan, SourceMatch, Trunk, UnknownSource};
    let pbx = Trunk {
        sources: vec![SourceMatch { net: "198.18.1.10/32".parse().unwrap(), port: None }],
        ..Trunk::new("pbx")
    };
    let plan = Plan { trunks: vec![pbx], unknown_source: UnknownSource::Drop, ..Plan::default() };
    Config { plan: Arc::new(plan), ..Config::default() }
}

#[test]
fn unknown_source_drop_answers_no_request_from_a_stranger() {
    let mut ep = Endpoint::new(dropping_plan(), 1);
    let mut stranger = peer();
    stranger.remote = SocketAddr::from(([198, 18, 2, 66], 5060));
    for (i, method) in ["OPTIONS", "REGISTER", "INVITE", "FROBNICATE", "SUBSCRIBE"].iter().enumerate() {
        ep.handle_message(Instant::now(), stranger, request(method, &format!("z9hG4bKstr{i}"), None));
        let (sent, seen) = drain(&mut ep);
        assert!(sent.is_empty(), "{method} from a stranger is answered: {sent:?}");
        assert!(seen.contains(&Observation::UnknownSource), "{method} counted: {seen:?}");
    }
    assert!(ep.txns.is_empty(), "no transaction kept for strangers");
    // The trunk's OPTIONS still gets its 200.
    ep.handle_message(Instant::now(), peer(), request("OPTIONS", "z9hG4bKpbx1", None));
    assert_eq!(only_response(&drain(&mut ep).0).status, 200);
}

#[test]
fn overload_refuses_new_calls_statelessly_and_keeps_answering_the_rest() {
    let mut ep = Endpoint::new(Config::default(), 1);
    let t0 = Instant::now();
    // Two seconds of 200 ms queueing.
    for i in 0..=20 {
        ep.observe_queue_delay(t0 + Duration::from_millis(100 * i), Duration::from_millis(200));
    }
    assert!(ep.admission() < 0.05, "admission {}", ep.admission());
    let now = t0 + Duration::from_secs(2);
    let mut refused = 0;
    for i in 0..50 {
        ep.handle_message(now, peer(), request("INVITE", &format!("z9hG4bKov{i}"), None));
        let (sent, _) = drain(&mut ep);
        let r = only_response(&sent);
        if r.status == 503 {
            refused += 1;
            assert_eq!(r.headers.get(&HeaderName::RetryAfter), Some(&b"2"[..]));
            assert!(r.headers.to().expect("to").tag().is_some(), "a To tag on the final response");
        } else {
            assert_eq!(r.status, 403, "admitted: refused further on for its unknown source");
        }
    }
    assert!(refused >= 48, "{refused} of 50 refused at an admission of {}", ep.admission());
    assert_eq!(ep.txns.len(), 50 - refused, "refused calls leave no transaction");
    // In-dialog requests and other methods are not refused by overload control.
    ep.handle_message(now, peer(), request("BYE", "z9hG4bKovbye", Some("gone")));
    assert_eq!(only_response(&drain(&mut ep).0).status, 481);
    ep.handle_message(now, peer(), request("OPTIONS", "z9hG4bKovopt", None));
    assert_eq!(only_response(&drain(&mut ep).0).status, 200);
}

#[test]
fn a_new_invite_that_waited_past_max_wait_is_refused_and_the_wait_belongs_to_that_message_only() {
    let mut ep = Endpoint::new(Config::default(), 1);
    let now = Instant::now();
    ep.observe_queue_delay(now, Duration::from_millis(150));
    ep.handle_message(now, peer(), request("INVITE", "z9hG4bKlate", None));
    let (sent, seen) = drain(&mut ep);
    let r = only_response(&sent);
    assert_eq!(r.status, 503, "too late: refused");
    assert_eq!(r.headers.get(&HeaderName::RetryAfter), Some(&b"2"[..]));
    assert!(seen.contains(&Observation::OverloadTooLate) && seen.contains(&Observation::OverloadRejected));
    assert!(ep.txns.is_empty(), "no transaction kept");
    assert_eq!(ep.admission(), 1.0, "one late INVITE does not cut the admitted share");
    // The next message was not announced as waiting: taken (and refused further on for its unknown source).
    ep.handle_message(now, peer(), request("INVITE", "z9hG4bKnext", None));
    assert_eq!(only_response(&drain(&mut ep).0).status, 403);
    ep.observe_queue_delay(now, Duration::from_millis(30));
    ep.handle_message(now, peer(), request("INVITE", "z9hG4bKquick", None));
    assert_eq!(only_response(&drain(&mut ep).0).status, 403, "a short wait: taken");
    // Only new calls are refused for their wait.
    ep.observe_queue_delay(now, Duration::from_millis(500));
    ep.handle_message(now, peer(), request("OPTIONS", "z9hG4bKslowopt", None));
    assert_eq!(only_response(&drain(&mut ep).0).status, 200);
}
