//! Active/active (issue 19 point 3): each box of the pair is active for the service addresses of its own group and
//! holds the other's calls as foreign ones; a takeover or a handover moves one group's calls and leaves the rest.

use super::*;
use crate::b2bua::ID_RANGE;

/// Group 0 is the DESIGN topology's service addresses, group 1 a second pair of them next to it.
const SBC2_A: &str = "198.18.1.4:5060";
const SBC2_B: &str = "198.18.2.4:5060";

/// A box of an active/active pair: both groups' addresses are listeners and media interfaces; `n` numbers its calls.
fn pair_box(n: u64) -> World {
    let ips = ["198.18.1.1", "198.18.2.1", "198.18.1.4", "198.18.2.4"];
    let media = Some(relay_proto::session::MediaConfig {
        interfaces: ips
            .iter()
            .enumerate()
            .map(|(i, ip)| relay_proto::session::Interface { name: format!("i{i}"), address: ip.parse().unwrap() })
            .collect(),
        first_port: 40000,
        last_port: 40099,
        quarantine: Duration::from_secs(5),
        strict: true,
        cname_seed: 7,
        dtls_fingerprint: None,
    });
    let mut w = world_configured(
        |_| {},
        |_| {},
        media,
        |c| {
            c.locals = [SBC_A, SBC_B, SBC2_A, SBC2_B].iter().map(|a| (Transport::Udp, addr(a))).collect();
            c.groups = vec![
                vec![ips[0].parse().unwrap(), ips[1].parse().unwrap()],
                vec![ips[2].parse().unwrap(), ips[3].parse().unwrap()],
            ];
            c.call_id_base = n * ID_RANGE;
        },
    );
    w.ep.set_replication(true);
    w
}

/// An answered call from the customer to `sbc` (one of our leg-A addresses); returns leg B's INVITE.
fn answered(w: &mut World, sbc: &str, call_id: &str) -> Request {
    let sent = w.send(A, sbc, invite_from_a(call_id));
    let inv_b = request(&sent, B, Method::Invite);
    let sent = w.send(B, &leg_b_local(&inv_b), answer(&inv_b, 200, "b1", B, SDP_B));
    response(&sent, A, 200);
    inv_b
}

/// Our address leg B was sent from (its Via).
fn leg_b_local(inv_b: &Request) -> String {
    let via = hv(inv_b, HeaderName::Via);
    let sent_by = via.split_whitespace().nth(1).expect("Via: SIP/2.0/UDP host:port");
    sent_by.split(';').next().expect("sent-by").to_owned()
}

fn exchange(from: &mut World, to: &mut World) {
    to.now = to.now.max(from.now);
    for r in from.records.drain(..) {
        let wire = serde_json::to_string(&r).expect("records serialize");
        to.ep.apply_record(to.now, serde_json::from_str(&wire).expect("records parse"));
    }
}

#[test]
fn each_box_carries_its_group_and_leg_b_leaves_from_the_same_group() {
    let (mut one, mut two) = (pair_box(1), pair_box(2));
    two.now = one.now;
    let b1 = answered(&mut one, SBC_A, "aa-1");
    let b2 = answered(&mut two, SBC2_A, "aa-2");
    assert_eq!(leg_b_local(&b1), SBC_B, "group 0's carrier side");
    assert_eq!(leg_b_local(&b2), SBC2_B, "group 1's carrier side, not the first listener facing the carrier");
    let ids = |w: &World| w.ep.calls().ids();
    assert!(ids(&one).iter().all(|id| (ID_RANGE..2 * ID_RANGE).contains(id)), "{:?}", ids(&one));
    assert!(ids(&two).iter().all(|id| (2 * ID_RANGE..3 * ID_RANGE).contains(id)), "{:?}", ids(&two));
    // Each holds the other's call.
    exchange(&mut one, &mut two);
    exchange(&mut two, &mut one);
    assert_eq!((one.ep.foreign_calls(), two.ep.foreign_calls()), (1, 1));
    assert_eq!(one.ep.calls_in_group(0), 1);
    assert_eq!(one.ep.calls_in_group(1), 0);
}

#[test]
fn a_takeover_of_one_group_adopts_its_calls_beside_the_survivors_own() {
    let (mut one, mut two) = (pair_box(1), pair_box(2));
    two.now = one.now;
    answered(&mut one, SBC_A, "aa-3");
    answered(&mut two, SBC2_A, "aa-4");
    exchange(&mut one, &mut two);
    // Box one dies: box two takes group 0 over and now carries both calls, numbered apart.
    two.now += Duration::from_secs(2);
    assert_eq!(two.ep.take_over(two.now, Some(1)), 0, "nothing foreign in its own group");
    assert_eq!(two.ep.take_over(two.now, Some(0)), 1);
    two.drain();
    assert_eq!(two.ep.calls().len(), 2);
    assert_eq!((two.ep.calls_in_group(0), two.ep.calls_in_group(1)), (1, 1));
    // A new call of group 0 on box two: numbered in box two's range, past nothing of box one's.
    answered(&mut two, SBC_A, "aa-5");
    let mut ids = two.ep.calls().ids();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 3, "three calls, three numbers: {ids:?}");
}

#[test]
fn handing_one_group_back_leaves_the_other_groups_calls_alone() {
    let (mut one, mut two) = (pair_box(1), pair_box(2));
    two.now = one.now;
    answered(&mut two, SBC_A, "aa-6");
    answered(&mut two, SBC2_A, "aa-7");
    // Box two gives group 0 back (to its home box): one call handed over, no BYE, no CDR; group 1's stays.
    assert_eq!(two.ep.demote(two.now, true, Some(0)), 1);
    assert!(two.drain().is_empty(), "nothing sent to anyone on a handover");
    assert!(two.cdrs.is_empty());
    assert_eq!((two.ep.calls_in_group(0), two.ep.calls_in_group(1)), (0, 1));
    exchange(&mut two, &mut one);
    assert_eq!(one.ep.take_over(one.now, Some(0)), 1);
    assert_eq!(one.ep.calls_in_group(0), 1);
}
