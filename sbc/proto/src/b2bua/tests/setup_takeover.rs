//! Hot standby: calls still being set up when the active dies are resumed by the standby (issue 19 point 1). Each
//! test sets a call up to one state on the active, hands its records to a second box as JSON (as the replication
//! link does), kills the active by taking over on the second box, and carries the call on to its end there.

use super::*;
use crate::ha::Record;

/// Two boxes with the same config and service addresses, media anchored; the first is active and replicates.
fn pair() -> (World, World) {
    pair_of(world_with_media)
}

fn pair_of(make: impl Fn() -> World) -> (World, World) {
    let mut active = make();
    let mut standby = make();
    active.ep.set_replication(true);
    standby.now = active.now;
    (active, standby)
}

/// Every record the active emitted so far reaches the standby, at the active's time, through JSON.
fn replicate(active: &mut World, standby: &mut World) {
    standby.now = standby.now.max(active.now);
    for r in active.records.drain(..) {
        let wire = serde_json::to_string(&r).expect("records serialize");
        standby.ep.apply_record(standby.now, serde_json::from_str(&wire).expect("records parse"));
    }
}

/// The active dies `after` the last record; the standby takes over `calls` calls. Nothing is sent at once: the
/// transactions go on with the peers' next message or the next timer.
fn take_over(standby: &mut World, after: Duration, calls: usize) {
    standby.now += after;
    assert_eq!(standby.ep.take_over(standby.now, None), calls, "every call in setup resumed");
    // As the driver does: the new active replicates to whichever box comes back.
    standby.ep.set_replication(true);
    let sent = standby.drain();
    assert!(sent.is_empty(), "nothing is sent at the takeover itself: {sent:#?}");
    assert_eq!(standby.ep.calls().len(), calls);
}

/// The records' setup sections, in order (None for a record of an answered call or an end).
fn setups(records: &[Record]) -> Vec<Option<crate::ha::SetupRecord>> {
    records
        .iter()
        .map(|r| match r {
            Record::Call(c) => c.setup.clone(),
            _ => None,
        })
        .collect()
}

/// A's ACK for our 200 `ok`, then `hold` of talk, then A hangs up: the BYE reaches the carrier at `gw` on the
/// dialog of `inv`, which answers it.
fn ack_talk_and_hang_up(w: &mut World, call_id: &str, ok: &Response, inv: &Request, gw: &str, hold: Duration) {
    let ack = format!(
        "ACK sip:{SBC_A} SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch=z9hG4bK-ack-{call_id}\r\nMax-Forwards: 70\r\n\
         From: {}\r\nTo: {}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
        rv(ok, HeaderName::From),
        rv(ok, HeaderName::To)
    );
    assert!(w.send(A, SBC_A, ack).is_empty(), "A's ACK is absorbed");
    w.advance(hold);
    let bye = in_dialog("BYE", SBC_A, &rv(ok, HeaderName::From), &rv(ok, HeaderName::To), call_id.as_bytes(), 2, A);
    let sent = w.send(A, SBC_A, bye);
    response(&sent, A, 200);
    let bye_gw = request(&sent, gw, Method::Bye);
    assert_eq!(bye_gw.headers.get(&HeaderName::CallId), inv.headers.get(&HeaderName::CallId), "on the carrier's leg");
    w.send(gw, SBC_B, answer(&bye_gw, 200, "b1", gw, ""));
}

fn ms_between(from: Instant, to: Instant) -> u128 {
    to.saturating_duration_since(from).as_millis()
}

#[test]
fn call_still_trying_resumes_its_retransmissions_and_connects_after_the_takeover_with_one_cdr() {
    let (mut active, mut standby) = pair();
    let t0 = active.now;
    let sent = active.send(A, SBC_A, invite_from_a("call-s1"));
    response(&sent, A, 100);
    let inv_b = request(&sent, B, Method::Invite);
    let setup = setups(&active.records);
    assert_eq!(setup.len(), 1, "one record: the INVITE accepted and the first carrier tried, in one step");
    let s = setup[0].as_ref().expect("a setup section");
    assert_eq!((s.tries, s.b_provisional, s.remaining.len()), (1, false, 1), "{s:?}");
    assert_eq!(s.remaining[0].trunk, "carrier-c");
    replicate(&mut active, &mut standby);

    // The active dies a second later, before the carrier said anything.
    take_over(&mut standby, Duration::from_secs(1), 1);
    let sent = standby.advance(Duration::from_millis(600));
    let again = request(&sent, B, Method::Invite);
    assert_eq!(again.to_bytes(), inv_b.to_bytes(), "timer A resumes: the INVITE exactly as the active sent it");
    // A's INVITE, retransmitted, finds its transaction here: the 100 again, no second call.
    let sent = standby.send(A, SBC_A, invite_from_a("call-s1"));
    response(&sent, A, 100);
    assert!(sent.iter().all(|(to, _)| *to == addr(A)), "{sent:#?}");

    standby.now = t0 + Duration::from_secs(3);
    let sent = standby.send(B, SBC_B, answer(&inv_b, 200, "b1", B, SDP_B));
    let ack = request(&sent, B, Method::Ack);
    assert_eq!(ack.headers.cseq().unwrap().seq, 1, "the ACK names the INVITE's CSeq");
    let ok = response(&sent, A, 200);
    assert!(String::from_utf8_lossy(&ok.body).contains("c=IN IP4 198.18.1.1"), "the answer anchored");
    ack_talk_and_hang_up(&mut standby, "call-s1", &ok, &inv_b, B, Duration::from_secs(5));
    assert!(active.cdrs.is_empty());
    assert_eq!(standby.cdrs.len(), 1, "one CDR, from the box that took over");
    let cdr = &standby.cdrs[0];
    assert_eq!((cdr.status, cdr.release_cause, cdr.a_call_id.as_str()), (200, "bye", "call-s1"));
    let post_dial = ms_between(cdr.setup, cdr.answer.expect("answered"));
    assert!((2995..=3005).contains(&post_dial), "answered 3 s after the original INVITE: {post_dial} ms");
    assert!((cdr.duration().expect("answered") - 5.0).abs() < 0.01);
    let tried: Vec<_> = cdr.attempts.iter().map(|a| (a.trunk.as_str(), a.status)).collect();
    assert_eq!(tried, [("carrier-b", 200)]);
}

#[test]
fn ringing_call_is_answered_after_the_takeover_with_the_same_to_tag_and_its_original_ringing_time() {
    let (mut active, mut standby) = pair();
    let t0 = active.now;
    let sent = active.send(A, SBC_A, invite_from_a("call-s2"));
    let inv_b = request(&sent, B, Method::Invite);
    active.now = t0 + Duration::from_secs(1);
    let sent = active.send(B, SBC_B, answer(&inv_b, 180, "b1", B, ""));
    let ringing = response(&sent, A, 180);
    let setup = setups(&active.records);
    assert_eq!(setup.len(), 2, "the attempt, then the 180 relayed");
    let s = setup[1].as_ref().expect("still in setup");
    assert!(s.b_provisional && s.a_provisional.starts_with("SIP/2.0 180 "), "{s:?}");
    // B's 180 again (a retransmission) changes nothing the standby needs: no record.
    active.send(B, SBC_B, answer(&inv_b, 180, "b1", B, ""));
    assert_eq!(active.records.len(), 2);
    replicate(&mut active, &mut standby);

    take_over(&mut standby, Duration::from_secs(1), 1);
    let sent = standby.send(A, SBC_A, invite_from_a("call-s2"));
    let again = response(&sent, A, 180);
    assert_eq!(rv(&again, HeaderName::To), rv(&ringing, HeaderName::To), "the same 180, with the active's To tag");
    let sent = standby.advance(Duration::from_secs(5));
    assert!(sent.is_empty(), "a provisional came: no INVITE retransmission: {sent:#?}");

    standby.now = t0 + Duration::from_secs(8);
    let sent = standby.send(B, SBC_B, answer(&inv_b, 200, "b1", B, SDP_B));
    request(&sent, B, Method::Ack);
    let ok = response(&sent, A, 200);
    assert_eq!(rv(&ok, HeaderName::To), rv(&ringing, HeaderName::To), "one dialog towards A");
    ack_talk_and_hang_up(&mut standby, "call-s2", &ok, &inv_b, B, Duration::from_secs(2));
    assert_eq!(standby.cdrs.len(), 1);
    let cdr = &standby.cdrs[0];
    assert_eq!(ms_between(cdr.setup, cdr.ringing.expect("rang")) / 10, 100, "ringing 1 s after the INVITE");
    assert_eq!(ms_between(cdr.setup, cdr.answer.expect("answered")) / 10, 800, "answered 8 s after it");
}

#[test]
fn early_media_call_keeps_its_relay_ports_across_the_takeover_and_connects() {
    use relay_proto::control::Command;
    let (mut active, mut standby) = pair();
    let sent = active.send(A, SBC_A, invite_from_a("call-s3"));
    let inv_b = request(&sent, B, Method::Invite);
    let sent = active.send(B, SBC_B, answer(&inv_b, 183, "b1", B, SDP_B));
    let early = response(&sent, A, 183);
    let early_sdp = String::from_utf8_lossy(&early.body).into_owned();
    assert!(early_sdp.contains("c=IN IP4 198.18.1.1\r\n"), "{early_sdp}");
    let port_a = |sdp: &str| sdp.split("m=audio ").nth(1).and_then(|r| r.split(' ').next()).map(str::to_owned);
    let Some(Record::Call(last)) = active.records.last() else { panic!("a call record") };
    let media = last.media.as_ref().expect("the early media session crosses with the call");
    assert!(media.legs[1].streams[0].as_ref().and_then(|s| s.peer_rtp) == Some(addr("198.18.2.10:7000")));
    replicate(&mut active, &mut standby);

    take_over(&mut standby, Duration::from_millis(400), 1);
    let local_a = format!("198.18.1.1:{}", port_a(&early_sdp).expect("a port"));
    let upserts: Vec<_> = standby
        .media
        .iter()
        .filter_map(|c| match c {
            Command::Upsert(e) if !e.rtcp => Some((e.local, e.peer)),
            _ => None,
        })
        .collect();
    assert!(upserts.contains(&(addr(&local_a), Some(addr("198.18.1.10:30000")))), "A's side again: {upserts:?}");
    assert!(upserts.iter().any(|(_, peer)| *peer == Some(addr("198.18.2.10:7000"))), "B's early media: {upserts:?}");

    let sent = standby.send(B, SBC_B, answer(&inv_b, 200, "b1", B, SDP_B));
    request(&sent, B, Method::Ack);
    let ok = response(&sent, A, 200);
    assert_eq!(port_a(&String::from_utf8_lossy(&ok.body)), port_a(&early_sdp), "the same relay port as the 183's");
    ack_talk_and_hang_up(&mut standby, "call-s3", &ok, &inv_b, B, Duration::from_secs(3));
    assert_eq!(standby.cdrs.len(), 1);
    assert!(standby.cdrs[0].media_session.is_some());
    assert!(matches!(standby.media.last(), Some(Command::Remove { .. })));
    assert_eq!(standby.ep.calls().media_counts(), Some((0, 0)), "the ports go back to the pool");
}

/// A's INVITE offering 100rel, and B's reliable 183 (RSeq 7) relayed to A on `w`; returns B's INVITE and A's 183.
fn reliable_183(w: &mut World, call_id: &str) -> (Request, Response) {
    let invite = invite_from_a(call_id).replace("Max-Forwards: 70\r\n", "Max-Forwards: 70\r\nSupported: 100rel\r\n");
    let sent = w.send(A, SBC_A, invite);
    let inv_b = request(&sent, B, Method::Invite);
    let r183 =
        answer(&inv_b, 183, "b1", B, SDP_B).replace("Content-Type:", "Require: 100rel\r\nRSeq: 7\r\nContent-Type:");
    let sent = w.send(B, SBC_B, r183);
    let early = response(&sent, A, 183);
    assert_eq!(rv(&early, HeaderName::RSeq), "7");
    (inv_b, early)
}

fn prack_from_a(early: &Response, call_id: &str) -> String {
    in_dialog("PRACK", SBC_A, &rv(early, HeaderName::From), &rv(early, HeaderName::To), call_id.as_bytes(), 2, A)
        .replace("Content-Length: 0", "RAck: 7 1 INVITE\r\nContent-Length: 0")
}

#[test]
fn prack_sent_after_the_takeover_reaches_the_carrier_on_its_early_dialog() {
    let (mut active, mut standby) = pair();
    let (inv_b, early) = reliable_183(&mut active, "call-s4");
    let s = setups(&active.records).pop().flatten().expect("in setup");
    assert_eq!(s.reliable, Some(crate::ha::ReliableRecord { rseq: 7, pracked: false }), "waiting for the PRACK");
    replicate(&mut active, &mut standby);

    take_over(&mut standby, Duration::from_millis(500), 1);
    let sent = standby.send(A, SBC_A, prack_from_a(&early, "call-s4"));
    let prack_b = request(&sent, B, Method::Prack);
    assert_eq!(prack_b.headers.get(&HeaderName::CallId), inv_b.headers.get(&HeaderName::CallId), "B's early dialog");
    assert_eq!(hv(&prack_b, HeaderName::RAck), "7 1 INVITE", "RSeq and B's INVITE CSeq");
    assert!(prack_b.headers.cseq().unwrap().seq > 1000, "CSeq above anything the active sent");
    assert!(hv(&prack_b, HeaderName::To).ends_with(";tag=b1"), "to the carrier's early dialog");
    let sent = standby.send(B, SBC_B, answer(&prack_b, 200, "b1", B, ""));
    let ok_prack = response(&sent, A, 200);
    assert_eq!(ok_prack.headers.cseq().unwrap().method, Method::Prack);
    let sent = standby.send(B, SBC_B, answer(&inv_b, 200, "b1", B, SDP_B));
    let ack = request(&sent, B, Method::Ack);
    assert_eq!(hv(&ack, HeaderName::CSeq), "1 ACK", "the INVITE's CSeq, not the PRACK's");
    let ok = response(&sent, A, 200);
    ack_talk_and_hang_up(&mut standby, "call-s4", &ok, &inv_b, B, Duration::from_secs(1));
    assert_eq!(standby.cdrs.len(), 1);
    assert_eq!(standby.cdrs[0].status, 200);
}

#[test]
fn prack_answered_before_the_takeover_is_answered_by_the_standby_when_a_retransmits_it() {
    let (mut active, mut standby) = pair();
    let (inv_b, early) = reliable_183(&mut active, "call-s5");
    let sent = active.send(A, SBC_A, prack_from_a(&early, "call-s5"));
    let prack_b = request(&sent, B, Method::Prack);
    active.send(B, SBC_B, answer(&prack_b, 200, "b1", B, ""));
    let s = setups(&active.records).pop().flatten().expect("in setup");
    assert_eq!(s.reliable, Some(crate::ha::ReliableRecord { rseq: 7, pracked: true }));
    replicate(&mut active, &mut standby);

    // The 200 for the PRACK died with the active: A retransmits it to the standby, which answers it itself (B has
    // acknowledged RSeq 7 already and would answer a second PRACK 481).
    take_over(&mut standby, Duration::from_millis(300), 1);
    let sent = standby.send(A, SBC_A, prack_from_a(&early, "call-s5"));
    let ok_prack = response(&sent, A, 200);
    assert_eq!(ok_prack.headers.cseq().unwrap().method, Method::Prack);
    assert!(sent.iter().all(|(to, _)| *to == addr(A)), "nothing to the carrier: {sent:#?}");
    let sent = standby.send(B, SBC_B, answer(&inv_b, 200, "b1", B, SDP_B));
    response(&sent, A, 200);
}

#[test]
fn carrier_failing_after_the_takeover_fails_over_to_the_next_carrier_with_the_callers_identity() {
    let (mut active, mut standby) = pair();
    let sent = active.send(A, SBC_A, invite_from_a("call-s6"));
    let inv_b = request(&sent, B, Method::Invite);
    active.send(B, SBC_B, answer(&inv_b, 180, "b1", B, ""));
    replicate(&mut active, &mut standby);

    take_over(&mut standby, Duration::from_secs(2), 1);
    let sent = standby.send(B, SBC_B, answer(&inv_b, 503, "b1", B, ""));
    request(&sent, B, Method::Ack); // the resumed transaction ACKs the failure
    let inv_c = request(&sent, C, Method::Invite);
    assert!(!sent.iter().any(|(to, _)| *to == addr(A)), "A hears nothing of the failure");
    assert_eq!(inv_c.uri.user(), Some(&b"+493012345"[..]));
    assert_eq!(inv_c.headers.from().unwrap().uri().user(), Some(&b"+4940111"[..]), "the caller as presented");
    assert_ne!(inv_c.headers.get(&HeaderName::CallId), inv_b.headers.get(&HeaderName::CallId), "a fresh leg B");
    let s = setups(&standby.records).pop().flatten().expect("the new active replicates the new attempt");
    assert_eq!((s.tries, s.current.trunk.as_str(), s.remaining.len()), (2, "carrier-c", 0));
    let sent = standby.send(C, SBC_B, answer(&inv_c, 200, "c1", C, SDP_B));
    let ok = response(&sent, A, 200);
    ack_talk_and_hang_up(&mut standby, "call-s6", &ok, &inv_c, C, Duration::from_secs(1));
    assert_eq!(standby.cdrs.len(), 1);
    let tried: Vec<_> = standby.cdrs[0].attempts.iter().map(|a| (a.trunk.as_str(), a.status)).collect();
    assert_eq!(tried, [("carrier-b", 503), ("carrier-c", 200)]);
}

#[test]
fn carrier_silent_across_the_takeover_times_out_at_its_original_timer_b_and_the_next_carrier_is_tried() {
    let (mut active, mut standby) = pair();
    let t0 = active.now;
    let sent = active.send(A, SBC_A, invite_from_a("call-s7"));
    request(&sent, B, Method::Invite);
    replicate(&mut active, &mut standby);
    take_over(&mut standby, Duration::from_secs(10), 1);
    // Timer B is 64 * T1 = 32 s after the INVITE was sent on the active, not after the takeover.
    let sent = standby.advance(Duration::from_millis(21_900));
    assert!(!sent.iter().any(|(to, _)| *to == addr(C)), "not before 32 s");
    let sent = standby.advance(Duration::from_millis(200));
    let inv_c = request(&sent, C, Method::Invite);
    assert_eq!(ms_between(t0, standby.now) / 100, 321);
    let sent = standby.send(C, SBC_B, answer(&inv_c, 486, "c1", C, ""));
    response(&sent, A, 486);
    let tried: Vec<_> = standby.cdrs[0].attempts.iter().map(|a| (a.trunk.as_str(), a.status)).collect();
    assert_eq!(tried, [("carrier-b", 408), ("carrier-c", 486)]);
}

#[test]
fn post_dial_timer_runs_on_across_the_takeover_and_cancels_the_carrier() {
    let (mut active, mut standby) = pair_of(|| world_planned(|_| {}, |p| p.max_post_dial = Duration::from_secs(10)));
    let t0 = active.now;
    let sent = active.send(A, SBC_A, invite_from_a("call-s8"));
    let inv_b = request(&sent, B, Method::Invite);
    active.send(B, SBC_B, answer(&inv_b, 180, "b1", B, ""));
    replicate(&mut active, &mut standby);
    take_over(&mut standby, Duration::from_secs(4), 1);
    let sent = standby.advance(Duration::from_secs(7));
    let timeout = response(&sent, A, 408);
    assert_eq!(rv(&timeout, HeaderName::CSeq), "1 INVITE", "on A's INVITE transaction");
    let cancel = request(&sent, B, Method::Cancel);
    assert_eq!(cancel.headers.top_via().unwrap().branch(), inv_b.headers.top_via().unwrap().branch());
    standby.send(B, SBC_B, answer(&cancel, 200, "b1", B, ""));
    standby.send(B, SBC_B, answer(&inv_b, 487, "b1", B, ""));
    assert_eq!(standby.cdrs.len(), 1);
    let cdr = &standby.cdrs[0];
    assert_eq!((cdr.status, cdr.release_cause), (408, "post_dial_timeout"));
    assert_eq!(ms_between(t0, cdr.end) / 100, 100, "10 s after the original INVITE");
}

#[test]
fn cancel_from_the_caller_after_the_takeover_finds_the_resumed_invite() {
    let (mut active, mut standby) = pair();
    let invite = invite_from_a("call-s9");
    let sent = active.send(A, SBC_A, invite.clone());
    let inv_b = request(&sent, B, Method::Invite);
    active.send(B, SBC_B, answer(&inv_b, 180, "b1", B, ""));
    replicate(&mut active, &mut standby);
    take_over(&mut standby, Duration::from_secs(1), 1);
    let cancel = invite.replace("INVITE sip", "CANCEL sip").replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    let cancel = cancel.split("Content-Type").next().unwrap().to_owned() + "Content-Length: 0\r\n\r\n";
    let sent = standby.send(A, SBC_A, cancel);
    response(&sent, A, 200);
    response(&sent, A, 487);
    let cancel_b = request(&sent, B, Method::Cancel);
    assert_eq!(cancel_b.headers.top_via().unwrap().branch(), inv_b.headers.top_via().unwrap().branch());
    standby.send(B, SBC_B, answer(&cancel_b, 200, "b1", B, ""));
    let sent = standby.send(B, SBC_B, answer(&inv_b, 487, "b1", B, ""));
    request(&sent, B, Method::Ack);
    assert_eq!(standby.cdrs.len(), 1);
    assert_eq!((standby.cdrs[0].release_cause, standby.cdrs[0].status), ("cancel", 487));
}

#[test]
fn demotion_hands_calls_in_setup_to_the_peer_but_refuses_them_after_a_split_brain() {
    for peer_has_calls in [true, false] {
        let mut w = world_with_media();
        w.ep.set_replication(true);
        let sent = w.send(A, SBC_A, invite_from_a("call-s10"));
        let inv_b = request(&sent, B, Method::Invite);
        w.send(B, SBC_B, answer(&inv_b, 180, "b1", B, ""));
        let handed = w.ep.demote(w.now, peer_has_calls, None);
        let sent = w.drain();
        if peer_has_calls {
            assert_eq!(handed, 1);
            assert!(sent.is_empty(), "the peer answers A and cancels B, not this box: {sent:#?}");
            assert!(w.cdrs.is_empty(), "the peer writes the CDR");
            assert_eq!((w.ep.calls().len(), w.ep.foreign_calls()), (0, 1));
            assert!(w.advance(Duration::from_secs(40)).is_empty(), "its transactions here were dropped");
        } else {
            assert_eq!(handed, 0);
            response(&sent, A, 503);
            request(&sent, B, Method::Cancel);
        }
    }
}

#[test]
fn call_failing_in_setup_on_the_active_is_forgotten_by_the_standby_and_snapshots_carry_calls_in_setup() {
    let (mut active, mut standby) = pair();
    let sent = active.send(A, SBC_A, invite_from_a("call-s11"));
    let inv_b = request(&sent, B, Method::Invite);
    let sent = active.send(A, SBC_A, invite_from_a("call-s12"));
    request(&sent, B, Method::Invite);
    let snapshot = active.ep.snapshot(active.now);
    assert_eq!(setups(&snapshot).iter().filter(|s| s.is_some()).count(), 2, "both calls in setup are in it");
    active.send(B, SBC_B, answer(&inv_b, 486, "b1", B, ""));
    assert!(matches!(active.records.last(), Some(Record::Ended { version: 2, .. })), "{:?}", active.records.last());
    replicate(&mut active, &mut standby);
    assert_eq!(standby.ep.foreign_calls(), 1, "only call-s12 is left to resume");
    take_over(&mut standby, Duration::from_secs(1), 1);
}

#[test]
fn nonce_issued_by_the_active_is_accepted_by_the_standby_only_with_the_pairs_shared_secret() {
    use crate::policy::digest::{Challenge, Client, NonceConfig, Secret};
    for shared in [true, false] {
        // Each box anchors Unix time at its own instant; the wall clocks agree.
        let make = |secret: &str| {
            let nonces = NonceConfig {
                secret: Some(Secret::new(if shared { "the pair's secret" } else { secret })),
                unix_at: Some((Instant::now(), 1_700_000_000)),
            };
            world_configured(
                |t| {
                    t[0].inbound_auth =
                        Some(crate::routing::Credentials { username: "pbx".into(), password: Secret::new("pw") })
                },
                |_| {},
                None,
                |c| c.nonces = nonces,
            )
        };
        let (mut active, mut standby) = (make("box 1"), make("box 2"));
        let sent = active.send(A, SBC_A, invite_from_a("call-n1"));
        let challenge = Challenge::parse(&rv(&response(&sent, A, 407), HeaderName::ProxyAuthenticate)).expect("ours");
        // The active dies; the caller's next INVITE, with credentials on the active's nonce, reaches the standby.
        standby.now += Duration::from_secs(2);
        assert_eq!(standby.ep.take_over(standby.now, None), 0);
        let auth =
            Client::new(challenge, "pbx", Secret::new("pw")).authorize("INVITE", "sip:+493012345@198.18.1.1", "c0ffee");
        let retry = invite_from_a("call-n1")
            .replace("branch=z9hG4bK-call-n1", "branch=z9hG4bK-call-n1b")
            .replace("CSeq: 1 INVITE", &format!("CSeq: 2 INVITE\r\nProxy-Authorization: {auth}"));
        let sent = standby.send(A, SBC_A, retry);
        if shared {
            request(&sent, B, Method::Invite);
        } else {
            response(&sent, A, 407);
            assert!(!sent.iter().any(|(to, _)| *to == addr(B)), "a nonce of the other box is not accepted");
        }
    }
}

#[test]
fn call_cancelled_on_the_active_is_not_resumed_by_the_standby() {
    let (mut active, mut standby) = pair();
    let invite = invite_from_a("call-s13");
    let sent = active.send(A, SBC_A, invite.clone());
    let inv_b = request(&sent, B, Method::Invite);
    active.send(B, SBC_B, answer(&inv_b, 180, "b1", B, ""));
    let cancel = invite.replace("INVITE sip", "CANCEL sip").replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    let cancel = cancel.split("Content-Type").next().unwrap().to_owned() + "Content-Length: 0\r\n\r\n";
    let sent = active.send(A, SBC_A, cancel);
    response(&sent, A, 487);
    assert!(matches!(active.records.last(), Some(Record::Ended { version: 3, .. })), "{:?}", active.records.last());
    // The active dies before the carrier's 487: resuming would send the call to the next carrier.
    replicate(&mut active, &mut standby);
    assert_eq!(standby.ep.foreign_calls(), 0);
    take_over(&mut standby, Duration::from_millis(100), 0);
    assert!(standby.send(B, SBC_B, answer(&inv_b, 487, "b1", B, "")).iter().all(|(to, _)| *to != addr(C)));
    // On the active, the call ends with the 487 and its one CDR; the standby hears nothing more of it.
    let cancel_b = request(&sent, B, Method::Cancel);
    active.send(B, SBC_B, answer(&cancel_b, 200, "b1", B, ""));
    active.send(B, SBC_B, answer(&inv_b, 487, "b1", B, ""));
    assert_eq!(active.cdrs.len(), 1);
    assert!(!active.records.iter().any(|r| matches!(r, Record::Call(_))), "{:?}", active.records);
}
