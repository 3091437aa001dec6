//! A reload swaps the plan under running calls (`Endpoint::reload`): calls in progress keep the plan they started
//! with, new calls are routed by the new one, and a trunk removed while its calls are up lives until they end.

use super::*;

const D: &str = "198.18.2.13:5060";

/// The DESIGN plan after a reload as the config loader builds it: carrier-b removed (a tombstone keeps its id 1),
/// carrier-c kept at id 2, carrier-d added at id 3, and every number routed to d, then c.
fn reloaded_plan() -> Arc<Plan> {
    reloaded_plan_with(|_| {})
}

fn reloaded_plan_with(tweak: impl FnOnce(&mut Vec<Trunk>)) -> Arc<Plan> {
    let mut trunks = vec![
        trunk("customer-pbx", Some("198.18.1.10/32"), None),
        Trunk::tombstone("carrier-b"),
        trunk("carrier-c", None, Some(C)),
        trunk("carrier-d", None, Some(D)),
    ];
    tweak(&mut trunks);
    Arc::new(Plan {
        trunks,
        catch_all: Some(vec![Candidate::new(TrunkId(3), 1), Candidate::new(TrunkId(2), 2)]),
        max_post_dial: Duration::from_secs(60),
        ..Plan::default()
    })
}

fn reload(w: &mut World, plan: Arc<Plan>) {
    w.ep.reload(w.now, plan, vec![(Transport::Udp, addr(SBC_A)), (Transport::Udp, addr(SBC_B))]);
    w.drain();
}

#[test]
fn call_on_a_trunk_removed_by_a_reload_ends_normally_with_its_cdr() {
    let mut w = world(Limits::default());
    let (inv_b, ok) = connected(&mut w, "call-r1");
    reload(&mut w, reloaded_plan());
    w.advance(Duration::from_secs(3));
    // The carrier of the removed trunk still reaches its call: a re-INVITE is relayed, not refused.
    let from = format!("{};tag=b1", hv(&inv_b, HeaderName::To));
    let call_id_b = inv_b.headers.get(&HeaderName::CallId).expect("call-id").to_vec();
    let opts = in_dialog("OPTIONS", SBC_B, &from, &hv(&inv_b, HeaderName::From), &call_id_b, 5, B);
    let sent = w.send(B, SBC_B, opts);
    let opts_a = request(&sent, A, Method::Options);
    let sent = w.send(A, SBC_A, answer(&opts_a, 200, "x", A, ""));
    response(&sent, B, 200);
    // The caller hangs up: BYE to the removed trunk's gateway, and one CDR naming it.
    let bye = in_dialog("BYE", SBC_A, &rv(&ok, HeaderName::From), &rv(&ok, HeaderName::To), b"call-r1", 2, A);
    let sent = w.send(A, SBC_A, bye);
    response(&sent, A, 200);
    let bye_b = request(&sent, B, Method::Bye);
    w.send(B, SBC_B, answer(&bye_b, 200, "b1", B, ""));
    assert_eq!(w.cdrs.len(), 1);
    let cdr = &w.cdrs[0];
    assert_eq!((cdr.status, cdr.release_cause, cdr.released_by), (200, "bye", "a"));
    assert_eq!(cdr.trunk_out.as_deref(), Some("carrier-b"));
    assert!((cdr.duration().expect("answered") - 3.0).abs() < 0.01);
    assert_eq!(w.ep.calls().len(), 0);
}

#[test]
fn new_call_after_a_reload_routes_by_the_new_plan() {
    let mut w = world(Limits::default());
    reload(&mut w, reloaded_plan());
    let sent = w.send(A, SBC_A, invite_from_a("call-r2"));
    response(&sent, A, 100);
    assert!(!sent.iter().any(|(a, _)| *a == addr(B)), "the removed carrier gets no new call: {sent:?}");
    let inv_d = request(&sent, D, Method::Invite);
    let sent = w.send(D, SBC_B, answer(&inv_d, 200, "d1", D, "v=0\r\n"));
    response(&sent, A, 200);
    assert_eq!(w.ep.calls().len(), 1);
}

#[test]
fn call_being_set_up_across_a_reload_fails_over_by_the_plan_it_started_with() {
    let mut w = world(Limits::default());
    let sent = w.send(A, SBC_A, invite_from_a("call-r3"));
    let inv_b = request(&sent, B, Method::Invite);
    w.send(B, SBC_B, answer(&inv_b, 180, "b1", B, ""));
    // The reload moves carrier-c to another gateway: the call under way still tries the one it started with.
    reload(&mut w, reloaded_plan_with(|t| t[2].gateways[0].addr = addr(D)));
    let sent = w.send(B, SBC_B, answer(&inv_b, 503, "b1", B, ""));
    let inv_c = request(&sent, C, Method::Invite);
    let sent = w.send(C, SBC_B, answer(&inv_c, 200, "c1", C, "v=0\r\n"));
    response(&sent, A, 200);
    // A new call takes the new plan: carrier-d first.
    let sent = w.send(A, SBC_A, invite_from_a("call-r4"));
    request(&sent, D, Method::Invite);
    assert!(!sent.iter().any(|(a, _)| *a == addr(B) || *a == addr(C)), "{sent:?}");
}

#[test]
fn carrier_down_by_probe_stays_down_across_a_reload_that_keeps_it() {
    let probe = crate::routing::ProbeConfig {
        interval: Duration::from_secs(1),
        down_after: 2,
        up_after: 1,
        ..Default::default()
    };
    let mut w = world_with(Limits::default(), Some(probe));
    w.ep.handle_timeout(w.now);
    w.drain();
    // b never answers its probes: down.
    w.advance(Duration::from_millis(2500));
    // A reload that keeps b as it is (and changes c's gateway) must not make b usable again.
    let plan = Arc::new(Plan {
        trunks: vec![
            trunk("customer-pbx", Some("198.18.1.10/32"), None),
            Trunk { probe: Some(probe), ..trunk("carrier-b", None, Some(B)) },
            trunk("carrier-c", None, Some(D)),
        ],
        catch_all: Some(vec![Candidate::new(TrunkId(1), 1), Candidate::new(TrunkId(2), 2)]),
        max_post_dial: Duration::from_secs(60),
        ..Plan::default()
    });
    reload(&mut w, plan);
    let sent = w.send(A, SBC_A, invite_from_a("call-r5"));
    request(&sent, D, Method::Invite);
    assert!(!sent.iter().any(|(a, m)| *a == addr(B) && matches!(m, Message::Request(r) if r.method == Method::Invite)));
}
