//! What an operator does through the admin API: list and show calls, hang one up, take a trunk out of routing,
//! look a number's route up; each checked against what real calls then do.

use super::*;
use crate::b2bua::{CallState, HangupError};
use crate::routing::{HealthState, SkipReason};

fn observed(w: &mut World) -> Vec<Observation> {
    let mut seen = Vec::new();
    while let Some(o) = w.ep.poll_output() {
        match o {
            Output::Observe(o) => seen.push(o),
            Output::Cdr(c) => w.cdrs.push(*c),
            _ => {}
        }
    }
    seen
}

#[test]
fn snapshot_lists_both_legs_of_an_answered_call_and_a_ringing_one() {
    let mut w = world(Limits::default());
    connected(&mut w, "call-adm-1");
    let sent = w.send(A, SBC_A, invite_from_a("call-adm-2"));
    let inv_b = request(&sent, B, Method::Invite);
    w.send(B, SBC_B, answer(&inv_b, 180, "b2", B, ""));
    w.now += Duration::from_secs(3);
    let calls = w.ep.calls_snapshot(w.now);
    assert_eq!(calls.len(), 2);
    let (up, ringing) = (&calls[0], &calls[1]);
    assert_eq!(up.state, CallState::Answered);
    assert_eq!(up.a.call_id, "call-adm-1");
    assert_eq!(up.a.remote_tag.as_deref(), Some("a1"));
    assert_eq!((up.a.trunk, up.a.remote), (TrunkId(0), addr(A)));
    let b = up.b.as_ref().expect("leg b");
    assert_eq!((b.trunk, b.remote, b.local), (TrunkId(1), addr(B), addr(SBC_B)));
    assert_eq!(b.remote_tag.as_deref(), Some("b1"));
    assert_ne!(b.call_id, up.a.call_id, "leg B has a Call-ID of its own");
    assert_eq!(
        (up.caller.as_str(), up.called_in.as_str(), up.called_out.as_str()),
        ("+4940111", "+493012345", "+493012345")
    );
    assert_eq!(up.since_setup, Duration::from_secs(3));
    assert_eq!(up.since_answer, Some(Duration::from_secs(3)));
    assert_eq!(ringing.state, CallState::Setup);
    assert_eq!(ringing.since_answer, None);
    assert_eq!(w.ep.call_snapshot(ringing.id, w.now).as_ref(), Some(ringing));
    assert_eq!(w.ep.call_snapshot(999, w.now), None);
}

#[test]
fn hangup_of_an_answered_call_byes_both_legs_and_its_cdr_says_admin() {
    let mut w = world(Limits::default());
    connected(&mut w, "call-adm-3");
    let id = w.ep.calls_snapshot(w.now)[0].id;
    assert_eq!(w.ep.hang_up(w.now, id), Ok(()));
    let sent = w.drain();
    let bye_a = request(&sent, A, Method::Bye);
    let bye_b = request(&sent, B, Method::Bye);
    assert_eq!(w.ep.hang_up(w.now, id), Err(HangupError::AlreadyEnding(id)), "one hangup per call");
    w.send(A, SBC_A, answer(&bye_a, 200, "x", A, ""));
    assert!(w.cdrs.is_empty(), "the call ends when both BYEs are answered");
    w.send(B, SBC_B, answer(&bye_b, 200, "x", B, ""));
    assert_eq!(w.cdrs.len(), 1);
    assert_eq!((w.cdrs[0].release_cause, w.cdrs[0].released_by, w.cdrs[0].status), ("admin", "sbc", 200));
    assert_eq!(w.ep.hang_up(w.now, id), Err(HangupError::NotFound(id)));
    assert!(w.ep.calls_snapshot(w.now).is_empty());
}

#[test]
fn hangup_of_a_ringing_call_cancels_the_carrier_and_answers_the_caller_480() {
    let mut w = world(Limits::default());
    let sent = w.send(A, SBC_A, invite_from_a("call-adm-4"));
    let inv_b = request(&sent, B, Method::Invite);
    w.send(B, SBC_B, answer(&inv_b, 180, "b1", B, ""));
    let id = w.ep.calls_snapshot(w.now)[0].id;
    w.ep.hang_up(w.now, id).expect("hung up");
    let sent = w.drain();
    response(&sent, A, 480);
    let cancel = request(&sent, B, Method::Cancel);
    w.send(B, SBC_B, answer(&cancel, 200, "b1", B, ""));
    let sent = w.send(B, SBC_B, answer(&inv_b, 487, "b1", B, ""));
    request(&sent, B, Method::Ack);
    assert!(!sent.iter().any(|(a, _)| *a == addr(C)), "not failed over");
    assert_eq!(w.cdrs.len(), 1);
    assert_eq!((w.cdrs[0].release_cause, w.cdrs[0].released_by, w.cdrs[0].status), ("admin", "sbc", 480));
}

#[test]
fn disabled_trunk_is_skipped_for_new_calls_counted_as_disabled_and_calls_up_stay() {
    let mut w = world(Limits::default());
    connected(&mut w, "call-adm-5");
    assert_eq!(w.ep.set_trunk_enabled("carrier-b", false), Ok(true));
    assert_eq!(w.ep.set_trunk_enabled("carrier-b", false), Ok(false), "already disabled: no change");
    assert!(w.ep.set_trunk_enabled("carrier-x", false).is_err());
    let peer = Peer { transport: Transport::Udp, local: addr(SBC_A), remote: addr(A), conn: None };
    w.ep.handle_message(w.now, peer, Bytes::from(invite_from_a("call-adm-6")));
    let mut sent = Vec::new();
    let mut seen = Vec::new();
    while let Some(o) = w.ep.poll_output() {
        match o {
            Output::Transmit { peer, bytes } => sent.push((peer.remote, parse_datagram(bytes).expect("sip"))),
            Output::Observe(o) => seen.push(o),
            _ => {}
        }
    }
    request(&sent, C, Method::Invite);
    assert!(!sent.iter().any(|(a, _)| *a == addr(B)), "carrier-b disabled: straight to c");
    let skips: Vec<_> = seen.iter().filter(|o| matches!(o, Observation::TrunkSkipped { .. })).collect();
    assert_eq!(skips, [&Observation::TrunkSkipped { trunk: TrunkId(1), reason: "disabled" }]);
    let calls = w.ep.calls_snapshot(w.now);
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].state, CallState::Answered, "the call up on carrier-b is untouched");
    let status = w.ep.trunk_status(w.now);
    assert!(status[1].disabled_by_admin && !status[1].disabled_by_config && status[1].up);
    assert_eq!((status[1].calls_to, status[2].calls_to, status[0].calls_from), (1, 1, 2));
    assert_eq!(w.ep.set_trunk_enabled("carrier-b", true), Ok(true));
    let sent = w.send(A, SBC_A, invite_from_a("call-adm-7"));
    request(&sent, B, Method::Invite);
    observed(&mut w);
}

#[test]
fn route_lookup_names_the_carriers_a_call_then_tries_in_that_order() {
    let mut w = world(Limits::default());
    let lookup = w.ep.route_lookup("+49 30-12345", None, w.now).expect("no trunk named").expect("a route");
    assert_eq!(lookup.number, "+493012345", "separators removed as for a call");
    assert_eq!(lookup.prefix, "", "the catch-all route");
    let order: Vec<u32> = lookup.selection.ordered.iter().map(|c| c.trunk.0).collect();
    assert_eq!(order, [1, 2]);
    assert!(lookup.drawn.is_empty(), "one carrier per priority: no draw");
    w.ep.set_trunk_enabled("carrier-b", false).expect("known");
    let lookup = w.ep.route_lookup("+493012345", Some("customer-pbx"), w.now).expect("known").expect("route");
    assert_eq!(lookup.selection.ordered.iter().map(|c| c.trunk.0).collect::<Vec<_>>(), [2]);
    assert_eq!(lookup.selection.skipped.len(), 1);
    assert_eq!(
        (lookup.selection.skipped[0].candidate.trunk, lookup.selection.skipped[0].reason),
        (TrunkId(1), SkipReason::Disabled)
    );
    let sent = w.send(A, SBC_A, invite_from_a("call-adm-8"));
    request(&sent, C, Method::Invite);
    assert!(w.ep.route_lookup("1", Some("nobody"), w.now).is_err());
}

#[test]
fn route_lookup_with_equal_priorities_says_the_order_is_a_weighted_draw() {
    let mut w = world_planned(
        |_| {},
        |p| {
            p.catch_all =
                Some(vec![Candidate::new(TrunkId(1), 1).with_weight(30), Candidate::new(TrunkId(2), 1).with_weight(70)])
        },
    );
    let mut first_c = 0;
    for _ in 0..200 {
        let lookup = w.ep.route_lookup("+493012345", None, w.now).expect("known").expect("route");
        assert_eq!(lookup.drawn, [1]);
        assert_eq!(lookup.selection.ordered.len(), 2);
        first_c += usize::from(lookup.selection.ordered[0].trunk == TrunkId(2));
    }
    assert!((110..=170).contains(&first_c), "carrier-c (weight 70) first in {first_c} of 200 lookups");
}

#[test]
fn no_route_lookup_is_none_like_the_404_of_a_call() {
    let mut w = world_planned(|_| {}, |p| p.catch_all = None);
    assert_eq!(w.ep.route_lookup("+493012345", None, w.now), Ok(None));
    let sent = w.send(A, SBC_A, invite_from_a("call-adm-9"));
    response(&sent, A, 404);
}

#[test]
fn trunk_status_shows_gateways_with_their_probe_state() {
    let probe = crate::routing::ProbeConfig {
        interval: Duration::from_secs(1),
        down_after: 2,
        up_after: 1,
        ..Default::default()
    };
    let mut w = world_with(Limits { calls: Some(10), cps: None }, Some(probe));
    w.ep.handle_timeout(w.now);
    w.drain();
    w.advance(Duration::from_millis(2500));
    let status = w.ep.trunk_status(w.now);
    assert_eq!(status.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["customer-pbx", "carrier-b", "carrier-c"]);
    assert_eq!(status[0].limits.calls, Some(10));
    assert_eq!(status[1].gateways.len(), 1);
    assert_eq!(status[1].gateways[0].gateway.addr, addr(B));
    assert_eq!(status[1].gateways[0].probe, Some(HealthState::Down));
    assert!(!status[1].up, "its only gateway is down");
    assert_eq!(status[2].gateways[0].probe, None, "carrier-c is not probed");
    assert!(status[2].up);
    assert!(status.iter().all(|t| t.registration.is_none()));
}
