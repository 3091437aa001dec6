//! The four machines under simulated time, with lost and duplicated packets.

use super::*;
use crate::msg::{parse_datagram, Message, Method, Request, Response};
use crate::transport::{Peer, Transport};
use bytes::Bytes;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn peer(transport: Transport) -> Peer {
    Peer {
        transport,
        local: SocketAddr::from(([198, 18, 1, 1], 5060)),
        remote: SocketAddr::from(([198, 18, 2, 10], 5060)),
        conn: None,
    }
}

fn request(method: &str, branch: &str) -> Request {
    let raw = format!(
        "{method} sip:b@198.18.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.1.1:5060;branch={branch}\r\n\
         From: <sip:a@198.18.1.1>;tag=f\r\nTo: <sip:b@198.18.2.10>\r\nCall-ID: {branch}\r\nCSeq: 7 {method}\r\n\r\n"
    );
    match parse_datagram(Bytes::from(raw)).expect("valid") {
        Message::Request(r) => r,
        Message::Response(_) => panic!("request"),
    }
}

fn response(req: &Request, status: u16) -> Response {
    let mut r = Response::to_request(req, status, "X");
    if status >= 200 {
        let to = format!("{};tag=t", String::from_utf8_lossy(r.headers.get(&crate::msg::HeaderName::To).expect("to")));
        r.headers.set(crate::msg::HeaderName::To, to);
    }
    r
}

/// Drains events; returns (messages sent, other events).
fn drain(t: &mut Transactions) -> (Vec<Message>, Vec<Event>) {
    let (mut sent, mut other) = (Vec::new(), Vec::new());
    while let Some(e) = t.poll_event() {
        match e {
            Event::Transmit { message, .. } => sent.push(message),
            Event::Observe(_) => {}
            e => other.push(e),
        }
    }
    (sent, other)
}

/// Runs timers until `until`, collecting the instants at which something was sent.
fn run_until(t: &mut Transactions, start: Instant, until: Duration) -> Vec<(Duration, Message)> {
    let mut sent = Vec::new();
    while let Some(at) = t.poll_timeout() {
        if at > start + until {
            break;
        }
        t.handle_timeout(at);
        for m in drain(t).0 {
            sent.push((at - start, m));
        }
    }
    sent
}

#[test]
fn invite_client_retransmits_with_doubling_intervals_until_a_provisional() {
    let mut t = Transactions::new(TimerConfig::default());
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bKict1");
    t.send_request(t0, peer(Transport::Udp), inv.clone()).expect("sent");
    assert_eq!(drain(&mut t).0.len(), 1);
    let resent: Vec<_> =
        run_until(&mut t, t0, Duration::from_millis(3600)).into_iter().map(|(d, _)| d.as_millis()).collect();
    assert_eq!(resent, vec![500, 1500, 3500], "timer A: 0.5 s, then 1 s, then 2 s later");
    t.handle_response(t0 + Duration::from_millis(3600), peer(Transport::Udp), response(&inv, 180));
    let (_, ev) = drain(&mut t);
    assert!(matches!(&ev[..], [Event::Response { response, .. }] if response.status == 180));
    assert!(run_until(&mut t, t0, Duration::from_secs(20)).is_empty(), "no retransmission after 180");
}

#[test]
fn timer_b_reports_a_timeout_after_64_t1() {
    let mut t = Transactions::new(TimerConfig::default());
    let t0 = Instant::now();
    let key = t.send_request(t0, peer(Transport::Udp), request("INVITE", "z9hG4bKict2")).expect("sent");
    drain(&mut t);
    let mut timeout_at = None;
    while let Some(at) = t.poll_timeout() {
        t.handle_timeout(at);
        if drain(&mut t).1.iter().any(|e| matches!(e, Event::Timeout { key: k } if *k == key)) {
            timeout_at = Some(at - t0);
        }
    }
    assert_eq!(timeout_at, Some(Duration::from_secs(32)));
    assert!(t.is_empty(), "the transaction is gone after timer B");
}

#[test]
fn invite_client_in_proceeding_has_no_timer_b_until_cancelled() {
    // §17.1.1.2: timer B runs only while Calling; a callee rings for minutes (timer C, 181 s, bounds silence).
    // After a CANCEL (§9.1) the INVITE waits 64*T1 for its final response, then ends as timed out.
    let mut t = Transactions::new(TimerConfig::default());
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bKict9");
    let key = t.send_request(t0, peer(Transport::Udp), inv.clone()).expect("sent");
    t.handle_response(t0 + Duration::from_secs(1), peer(Transport::Udp), response(&inv, 180));
    drain(&mut t);
    assert!(run_until(&mut t, t0, Duration::from_secs(100)).is_empty());
    assert!(t.contains(&key), "still ringing after 100 s");
    t.handle_response(t0 + Duration::from_secs(100), peer(Transport::Udp), response(&inv, 183));
    t.cancel_sent(t0 + Duration::from_secs(100), &key);
    // A provisional after the CANCEL does not take the limit away.
    t.handle_response(t0 + Duration::from_secs(101), peer(Transport::Udp), response(&inv, 180));
    drain(&mut t);
    let mut timeout_at = None;
    while let Some(at) = t.poll_timeout() {
        t.handle_timeout(at);
        if drain(&mut t).1.iter().any(|e| matches!(e, Event::Timeout { key: k } if *k == key)) {
            timeout_at = Some(at - t0);
        }
    }
    assert_eq!(timeout_at, Some(Duration::from_secs(132)), "64*T1 after the CANCEL");
    assert!(t.is_empty());
}

#[test]
fn invite_client_gives_up_timer_c_after_the_last_provisional() {
    let mut t = Transactions::new(TimerConfig::default());
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bKictc");
    let key = t.send_request(t0, peer(Transport::Udp), inv.clone()).expect("sent");
    t.handle_response(t0 + Duration::from_secs(1), peer(Transport::Udp), response(&inv, 180));
    t.handle_response(t0 + Duration::from_secs(60), peer(Transport::Udp), response(&inv, 183));
    drain(&mut t);
    let mut timeout_at = None;
    while let Some(at) = t.poll_timeout() {
        t.handle_timeout(at);
        if drain(&mut t).1.iter().any(|e| matches!(e, Event::Timeout { key: k } if *k == key)) {
            timeout_at = Some(at - t0);
        }
    }
    assert_eq!(timeout_at, Some(Duration::from_secs(60 + 181)), "timer C runs from the latest provisional");
}

#[test]
fn non_2xx_final_is_acked_once_per_received_final() {
    let mut t = Transactions::new(TimerConfig::default());
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bKict3");
    t.send_request(t0, peer(Transport::Udp), inv.clone()).expect("sent");
    drain(&mut t);
    let busy = response(&inv, 486);
    for i in 0..3 {
        t.handle_response(t0 + Duration::from_millis(100 * (i + 1)), peer(Transport::Udp), busy.clone());
        let (sent, ev) = drain(&mut t);
        assert_eq!(sent.len(), 1, "one ACK per 486 received");
        let Message::Request(ack) = &sent[0] else { panic!("ACK expected") };
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(ack.headers.top_via().expect("via").branch(), inv.headers.top_via().expect("via").branch());
        assert_eq!(ack.headers.cseq().expect("cseq").seq, 7);
        assert!(ack.headers.to().expect("to").tag().is_some(), "To from the response");
        assert_eq!(ev.len(), usize::from(i == 0), "only the first 486 reaches the core");
    }
    run_until(&mut t, t0, Duration::from_secs(40));
    assert!(t.is_empty(), "timer D ended it");
}

#[test]
fn non_invite_client_caps_at_t2_and_resends_every_t2_when_proceeding() {
    let mut t = Transactions::new(TimerConfig::default());
    let t0 = Instant::now();
    let opt = request("OPTIONS", "z9hG4bKnict1");
    t.send_request(t0, peer(Transport::Udp), opt.clone()).expect("sent");
    drain(&mut t);
    let at: Vec<_> =
        run_until(&mut t, t0, Duration::from_millis(15600)).into_iter().map(|(d, _)| d.as_millis()).collect();
    assert_eq!(at, vec![500, 1500, 3500, 7500, 11500, 15500], "E doubles to T2 = 4 s, then stays");
    let mut t = Transactions::new(TimerConfig::default());
    t.send_request(t0, peer(Transport::Udp), opt.clone()).expect("sent");
    drain(&mut t);
    t.handle_response(t0 + Duration::from_millis(100), peer(Transport::Udp), response(&opt, 100));
    drain(&mut t);
    let at: Vec<_> =
        run_until(&mut t, t0, Duration::from_millis(9000)).into_iter().map(|(d, _)| d.as_millis()).collect();
    assert_eq!(at, vec![500, 4500, 8500], "in Proceeding, every T2");
}

#[test]
fn server_invite_resends_provisional_then_final_until_ack() {
    let mut t = Transactions::new(TimerConfig::default());
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bKist1");
    t.handle_request(t0, peer(Transport::Udp), inv.clone());
    let (_, ev) = drain(&mut t);
    let Some(Event::Request { key, .. }) = ev.into_iter().next() else { panic!("new request") };
    // The core is slow: 100 Trying goes out by itself at 200 ms.
    let sent = run_until(&mut t, t0, Duration::from_millis(250));
    assert!(matches!(&sent[..], [(d, Message::Response(r))] if d.as_millis() == 200 && r.status == 100));
    t.respond(t0 + Duration::from_millis(300), &key, response(&inv, 180)).expect("180");
    drain(&mut t);
    t.handle_request(t0 + Duration::from_millis(500), peer(Transport::Udp), inv.clone());
    assert!(
        matches!(&drain(&mut t).0[..], [Message::Response(r)] if r.status == 180),
        "retransmitted INVITE gets the 180"
    );
    let t1 = t0 + Duration::from_secs(1);
    t.respond(t1, &key, response(&inv, 503)).expect("503");
    drain(&mut t);
    let g: Vec<_> =
        run_until(&mut t, t1, Duration::from_millis(3600)).into_iter().map(|(d, _)| d.as_millis()).collect();
    assert_eq!(g, vec![500, 1500, 3500], "timer G");
    let ack = {
        let mut a = request("ACK", "z9hG4bKist1");
        a.headers.set(crate::msg::HeaderName::To, "<sip:b@198.18.2.10>;tag=t");
        a
    };
    t.handle_request(t1 + Duration::from_millis(3700), peer(Transport::Udp), ack.clone());
    t.handle_request(t1 + Duration::from_millis(3800), peer(Transport::Udp), ack);
    let (sent, ev) = drain(&mut t);
    assert!(sent.is_empty() && ev.is_empty(), "ACKs absorbed: {sent:?} {ev:?}");
    assert!(run_until(&mut t, t1, Duration::from_secs(20)).is_empty(), "no more 503 after the ACK");
    assert!(t.is_empty(), "timer I ended it");
}

#[test]
fn timer_h_fires_when_no_ack_comes() {
    let mut t = Transactions::new(TimerConfig::default());
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bKist2");
    t.handle_request(t0, peer(Transport::Udp), inv.clone());
    let Some(Event::Request { key, .. }) = drain(&mut t).1.into_iter().next() else { panic!("new") };
    t.respond(t0, &key, response(&inv, 404)).expect("404");
    drain(&mut t);
    let mut h = false;
    while let Some(at) = t.poll_timeout() {
        t.handle_timeout(at);
        h |= drain(&mut t).1.iter().any(|e| matches!(e, Event::AckTimeout { .. }));
    }
    assert!(h, "timer H reported");
}

#[test]
fn server_non_invite_answers_retransmissions_from_completed_and_absorbs_while_trying() {
    let mut t = Transactions::new(TimerConfig::default());
    let t0 = Instant::now();
    let bye = request("BYE", "z9hG4bKnist1");
    t.handle_request(t0, peer(Transport::Udp), bye.clone());
    let Some(Event::Request { key, .. }) = drain(&mut t).1.into_iter().next() else { panic!("new") };
    // Duplicate before the core answered: absorbed, not a new transaction.
    t.handle_request(t0 + Duration::from_millis(10), peer(Transport::Udp), bye.clone());
    assert_eq!(drain(&mut t), (vec![], vec![]));
    t.respond(t0 + Duration::from_millis(20), &key, response(&bye, 200)).expect("200");
    assert_eq!(drain(&mut t).0.len(), 1);
    // The 200 was lost twice; each retransmitted BYE gets it again.
    for ms in [500, 1500] {
        t.handle_request(t0 + Duration::from_millis(ms), peer(Transport::Udp), bye.clone());
        assert!(matches!(&drain(&mut t).0[..], [Message::Response(r)] if r.status == 200));
    }
    assert_eq!(t.respond(t0 + Duration::from_secs(2), &key, response(&bye, 500)), Err(TxnError::State));
    run_until(&mut t, t0, Duration::from_secs(40));
    assert!(t.is_empty(), "timer J ended it");
}

#[test]
fn lost_requests_and_duplicated_responses_still_complete() {
    // A client and a server transaction wired back to back; the first two copies of the request are lost and
    // the final response is delivered twice.
    let mut client = Transactions::new(TimerConfig::default());
    let mut server = Transactions::new(TimerConfig::default());
    let t0 = Instant::now();
    let opt = request("OPTIONS", "z9hG4bKlossy");
    client.send_request(t0, peer(Transport::Udp), opt).expect("sent");
    let mut delivered = 0;
    let mut finals = 0;
    let mut now = t0;
    for _ in 0..20 {
        for m in drain(&mut client).0 {
            delivered += 1;
            if delivered <= 2 {
                continue;
            }
            let Message::Request(r) = m else { continue };
            server.handle_request(now, peer(Transport::Udp), r);
            for e in std::iter::from_fn(|| server.poll_event()).collect::<Vec<_>>() {
                if let Event::Request { key, request, .. } = e {
                    server.respond(now, &key, response(&request, 200)).expect("answer");
                }
            }
            for resp in drain(&mut server).0 {
                let Message::Response(r) = resp else { continue };
                client.handle_response(now, peer(Transport::Udp), r.clone());
                client.handle_response(now, peer(Transport::Udp), r);
            }
        }
        let events: Vec<_> = std::iter::from_fn(|| client.poll_event()).collect();
        finals +=
            events.iter().filter(|e| matches!(e, Event::Response { response, .. } if response.status == 200)).count();
        if finals > 0 {
            break;
        }
        let Some(at) = client.poll_timeout() else {
            break;
        };
        now = at;
        client.handle_timeout(now);
    }
    assert_eq!(finals, 1, "exactly one 200 reached the core");
    assert_eq!(delivered, 3, "two retransmissions made up for the two losses");
}

#[test]
fn reliable_transports_do_not_retransmit() {
    let mut t = Transactions::new(TimerConfig::default());
    let t0 = Instant::now();
    t.send_request(t0, peer(Transport::Tcp), request("OPTIONS", "z9hG4bKtcp1")).expect("sent");
    t.send_request(t0, peer(Transport::Tcp), request("INVITE", "z9hG4bKtcp2")).expect("sent");
    drain(&mut t);
    let sent = run_until(&mut t, t0, Duration::from_secs(60));
    assert!(sent.is_empty(), "{sent:?}");
}

#[test]
fn rfc2543_request_without_branch_is_matched_by_its_tuple() {
    let mut t = Transactions::new(TimerConfig::default());
    let t0 = Instant::now();
    let mut old = request("OPTIONS", "unused");
    old.headers.set(crate::msg::HeaderName::Via, "SIP/2.0/UDP 198.18.1.10:5060");
    t.handle_request(t0, peer(Transport::Udp), old.clone());
    let Some(Event::Request { key, .. }) = drain(&mut t).1.into_iter().next() else { panic!("new") };
    t.respond(t0, &key, response(&old, 200)).expect("200");
    drain(&mut t);
    t.handle_request(t0 + Duration::from_millis(500), peer(Transport::Udp), old);
    assert!(matches!(&drain(&mut t).0[..], [Message::Response(r)] if r.status == 200), "matched, answered again");
}

#[test]
fn stray_responses_are_reported_not_panicked_on() {
    let mut t = Transactions::new(TimerConfig::default());
    let r = response(&request("INVITE", "z9hG4bKnobody"), 200);
    t.handle_response(Instant::now(), peer(Transport::Udp), r);
    assert!(matches!(&drain(&mut t).1[..], [Event::Stray { .. }]));
}

#[test]
fn adopted_server_invite_answers_a_retransmission_with_the_last_provisional_then_takes_the_final() {
    let mut t = Transactions::new(TimerConfig::default());
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bKist-adopt");
    let ringing = response(&inv, 180);
    let key = t.adopt_server_invite(peer(Transport::Udp), inv.clone(), ringing).expect("an INVITE with a branch");
    assert!(drain(&mut t).0.is_empty(), "nothing is sent when a transaction is taken over");
    assert_eq!(t.poll_timeout(), None, "Proceeding with a provisional sent: no automatic 100 Trying");
    t.handle_request(t0, peer(Transport::Udp), inv.clone());
    let (sent, ev) = drain(&mut t);
    assert!(ev.is_empty(), "a retransmission, not a new request: {ev:?}");
    assert!(matches!(&sent[..], [Message::Response(r)] if r.status == 180), "{sent:?}");
    t.respond(t0, &key, response(&inv, 200)).expect("the final response goes out as usual");
    assert!(matches!(&drain(&mut t).0[..], [Message::Response(r)] if r.status == 200));
}

#[test]
fn adopted_client_invite_in_calling_retransmits_then_times_out_at_the_original_timer_b() {
    let mut t = Transactions::new(TimerConfig::default());
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bKict-adopt");
    // Sent 10 s before the takeover on the other box: timer B fires 22 s after it here.
    let timeout_at = t0 + Duration::from_secs(22);
    let key = t.adopt_client_invite(t0, peer(Transport::Udp), inv.clone(), false, timeout_at).expect("adopted");
    assert_eq!(key, TransactionKey::for_sent_request(&inv).expect("key"));
    assert!(drain(&mut t).0.is_empty());
    let resent: Vec<_> =
        run_until(&mut t, t0, Duration::from_millis(3600)).into_iter().map(|(d, _)| d.as_millis()).collect();
    assert_eq!(resent, vec![500, 1500, 3500], "timer A resumes from T1");
    while let Some(at) = t.poll_timeout().filter(|at| *at <= timeout_at) {
        t.handle_timeout(at);
        let (_, ev) = drain(&mut t);
        if let [Event::Timeout { key: k }] = &ev[..] {
            assert_eq!((k, at), (&key, timeout_at), "timer B of the original send");
            return;
        }
    }
    panic!("no timeout by {timeout_at:?}");
}

#[test]
fn adopted_client_invite_in_proceeding_stays_quiet_and_passes_the_answer() {
    let mut t = Transactions::new(TimerConfig::default());
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bKict-adopt2");
    t.adopt_client_invite(t0, peer(Transport::Udp), inv.clone(), true, t0 + Duration::from_secs(30)).expect("adopted");
    assert!(run_until(&mut t, t0, Duration::from_secs(10)).is_empty(), "a provisional came: no retransmission");
    t.handle_response(t0 + Duration::from_secs(10), peer(Transport::Udp), response(&inv, 200));
    let (_, ev) = drain(&mut t);
    assert!(matches!(&ev[..], [Event::Response { response, .. }] if response.status == 200), "{ev:?}");
}

/// A server INVITE transaction keeps neither the INVITE nor the 2xx once answered (it lives 32 s more): a
/// retransmitted INVITE is absorbed, the core's own 2xx retransmissions pass, and timer L ends it at 64*T1.
#[test]
fn answered_server_invite_absorbs_retransmissions_and_passes_the_cores_2xx_until_timer_l() {
    let mut t = Transactions::new(TimerConfig::default());
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bKist2");
    t.handle_request(t0, peer(Transport::Udp), inv.clone());
    let Some(Event::Request { key, .. }) = drain(&mut t).1.into_iter().next() else { panic!("new request") };
    t.respond(t0, &key, response(&inv, 200)).expect("200");
    assert!(matches!(&drain(&mut t).0[..], [Message::Response(r)] if r.status == 200));
    t.handle_request(t0 + Duration::from_millis(100), peer(Transport::Udp), inv.clone());
    assert_eq!(drain(&mut t).0.len(), 0, "a retransmitted INVITE in Accepted gets nothing from the transaction");
    t.respond(t0 + Duration::from_millis(500), &key, response(&inv, 200)).expect("the core's 2xx retransmission");
    assert_eq!(drain(&mut t).0.len(), 1, "the core's 2xx retransmission goes out");
    assert!(run_until(&mut t, t0, Duration::from_secs(31)).is_empty(), "nothing sent by the transaction itself");
    assert_eq!(t.len(), 1, "alive until timer L");
    run_until(&mut t, t0, Duration::from_secs(33));
    assert!(t.is_empty(), "timer L (64*T1 = 32 s) ended it");
}

/// A client INVITE transaction answered 2xx drops its request: no retransmission follows, and timer M ends it.
#[test]
fn answered_client_invite_sends_nothing_more_and_ends_at_timer_m() {
    let mut t = Transactions::new(TimerConfig::default());
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bKict9");
    let key = t.send_request(t0, peer(Transport::Udp), inv.clone()).expect("sent");
    assert_eq!(drain(&mut t).0.len(), 1, "the INVITE");
    t.handle_response(t0 + Duration::from_millis(100), peer(Transport::Udp), response(&inv, 200));
    let (sent, ev) = drain(&mut t);
    assert!(sent.is_empty(), "no ACK from the transaction for a 2xx: {sent:?}");
    assert!(matches!(&ev[..], [Event::Response { key: k, response }] if *k == key && response.status == 200));
    assert!(run_until(&mut t, t0, Duration::from_secs(31)).is_empty(), "no INVITE retransmission after the 2xx");
    run_until(&mut t, t0, Duration::from_secs(33));
    assert!(t.is_empty(), "timer M (64*T1) ended it");
}
