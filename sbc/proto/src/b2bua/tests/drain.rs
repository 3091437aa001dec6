//! Draining: new calls and OPTIONS pings refused with 503 and Retry-After, calls in progress untouched, and the
//! calls left at the deadline ended with a CDR that says so.

use super::*;

fn options_from_a(branch: &str) -> String {
    format!(
        "OPTIONS sip:{SBC_A} SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch=z9hG4bK-{branch}\r\nMax-Forwards: 70\r\n\
         From: <sip:ping@198.18.1.10>;tag=p1\r\nTo: <sip:{SBC_A}>\r\nCall-ID: {branch}\r\nCSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

#[test]
fn draining_refuses_new_calls_and_pings_with_503_while_calls_up_and_in_setup_go_on() {
    let mut w = world(Limits::default());
    let (_, ok) = connected(&mut w, "up-1");
    // A call being set up when the drain starts: its carrier rings.
    let sent = w.send(A, SBC_A, invite_from_a("setup-1"));
    let inv_b = request(&sent, B, Method::Invite);
    response(&w.send(B, SBC_B, answer(&inv_b, 180, "b2", B, "")), A, 180);

    w.ep.set_draining(Some(300));
    assert!(w.ep.is_draining());
    let sent = w.send(A, SBC_A, invite_from_a("new-1"));
    assert_eq!(sent.len(), 1, "only the 503, no leg B: {sent:#?}");
    let refused = response(&sent, A, 503);
    assert_eq!(rv(&refused, HeaderName::RetryAfter), "300");
    assert!(refused.headers.to().expect("to").tag().is_some(), "a To tag on the final response");
    let pong = response(&w.send(A, SBC_A, options_from_a("ping-1")), A, 503);
    assert_eq!(rv(&pong, HeaderName::RetryAfter), "300");

    // A retransmission of the INVITE in setup reaches its transaction, not the drain's 503.
    let sent = w.send(A, SBC_A, invite_from_a("setup-1"));
    assert!(sent.iter().all(|(_, m)| !matches!(m, Message::Response(r) if r.status == 503)), "{sent:#?}");
    // The call in setup is answered and confirmed as usual.
    let sent = w.send(B, SBC_B, answer(&inv_b, 200, "b2", B, "v=0\r\n"));
    request(&sent, B, Method::Ack);
    response(&sent, A, 200);
    // The established call's BYE crosses as usual.
    let bye = in_dialog("BYE", SBC_A, &rv(&ok, HeaderName::From), &rv(&ok, HeaderName::To), b"up-1", 2, A);
    let sent = w.send(A, SBC_A, bye);
    response(&sent, A, 200);
    let bye_b = request(&sent, B, Method::Bye);
    w.send(B, SBC_B, answer(&bye_b, 200, "b1", B, ""));
    assert_eq!(w.cdrs.len(), 1, "the first call ended");
    assert_eq!((w.cdrs[0].a_call_id.as_str(), w.cdrs[0].release_cause), ("up-1", "bye"));
    assert_eq!(w.ep.calls().len(), 1, "the call set up during the drain is up");

    // Draining stopped: calls and pings are taken again.
    w.ep.set_draining(None);
    response(&w.send(A, SBC_A, options_from_a("ping-2")), A, 200);
    w.ep.set_draining(Some(300));

    // The deadline: the call still up gets BYE on both legs and a CDR saying why.
    w.ep.drain_deadline_reached(w.now);
    let sent = w.drain();
    let (bye_a, bye_b) = (request(&sent, A, Method::Bye), request(&sent, B, Method::Bye));
    w.send(A, SBC_A, answer(&bye_a, 200, "x", A, ""));
    w.send(B, SBC_B, answer(&bye_b, 200, "x", B, ""));
    assert_eq!(w.cdrs.len(), 2, "{:?}", w.cdrs);
    let last = &w.cdrs[1];
    assert_eq!((last.a_call_id.as_str(), last.release_cause, last.released_by), ("setup-1", "drain_deadline", "sbc"));
    assert!(w.ep.calls().is_empty());
}

#[test]
fn draining_counts_its_refusals_apart_from_overload() {
    let mut w = world(Limits::default());
    w.ep.set_draining(Some(30));
    let peer = Peer { transport: Transport::Udp, local: addr(SBC_A), remote: addr(A), conn: None };
    w.ep.handle_message(w.now, peer, Bytes::from(invite_from_a("new-2")));
    w.ep.handle_message(w.now, peer, Bytes::from(options_from_a("ping-3")));
    let mut seen = Vec::new();
    while let Some(o) = w.ep.poll_output() {
        if let Output::Observe(ob) = o {
            seen.push(ob);
        }
    }
    assert!(seen.contains(&Observation::DrainRejected { method: "INVITE" }), "{seen:?}");
    assert!(seen.contains(&Observation::DrainRejected { method: "OPTIONS" }), "{seen:?}");
    assert!(!seen.contains(&Observation::OverloadRejected), "{seen:?}");
    assert!(seen.contains(&Observation::ResponseOut { method: "OPTIONS", status: 503 }), "{seen:?}");
}
