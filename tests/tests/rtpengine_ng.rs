//! rtpengine 10.5 (the reference relay of `sbc-bench media --paths rtpengine`) in the single-SBC topology, steered
//! by our NG client (offer with the caller's SDP, answer with the callee's, delete): real RTP from A crosses it to
//! B, and B's RTP crosses back to A, on the ports its SDPs named.

use std::time::Duration;
use tests::netns::{addr, Host, Topology, CALLER, CARRIER_B, SBC_A, SBC_B};
use tests::rtp::{read_report, rtpgen_binary, Rtpgen};
use tests::rtpengine::{RtpEngine, StreamPeers};

const PACKETS: u64 = 200;

#[test]
fn rtpengine_relays_rtp_both_ways_for_a_call_set_up_over_ng() {
    // Under CI a missing rtpengine is a failure, as everywhere: the Makefile's deps install it.
    let binary = tests::rtpengine::binary();
    assert!(binary.is_ok(), "{:#}", binary.unwrap_err());
    let topo = Topology::single_sbc().expect("topology (needs root)");
    let mut engine =
        RtpEngine::start(&topo, Host::Sbc, "rtpengine", SBC_A.into(), SBC_B.into(), None).expect("rtpengine starts");
    let peers = [
        StreamPeers { a: addr(CALLER, 7000), b: addr(CARRIER_B, 7000) },
        StreamPeers { a: addr(CALLER, 7002), b: addr(CARRIER_B, 7002) },
    ];
    let ports = engine.call("ng-test-1", &peers).expect("offer and answer");
    assert_eq!(ports.len(), 2);
    for p in &ports {
        assert_eq!(p.a_side.ip(), std::net::IpAddr::from(SBC_A), "A's side on interface a: {ports:?}");
        assert_eq!(p.b_side.ip(), std::net::IpAddr::from(SBC_B), "B's side on interface b: {ports:?}");
    }

    let rtpgen = rtpgen_binary().expect("rtpgen");
    let mut procs = Vec::new();
    for (i, (peer, port)) in peers.iter().zip(&ports).enumerate() {
        for (host, me, to, ssrc) in
            [(Host::A, peer.a, port.a_side, 0xA000 + i as u32), (Host::B, peer.b, port.b_side, 0xB000 + i as u32)]
        {
            let report = topo.dir().join(format!("{host:?}{i}.json"));
            let args = Rtpgen::new(me)
                .to(to)
                .ssrc(ssrc)
                .count(PACKETS)
                .pps(200)
                .expect_count(PACKETS)
                .start_delay(Duration::from_millis(200))
                .idle_exit(Duration::from_millis(1000))
                .duration(Duration::from_secs(10))
                .report(&report)
                .args();
            procs.push((topo.spawn(host, &format!("{host:?}{i}"), &rtpgen, &args).expect("rtpgen"), report));
        }
    }
    for (p, report) in &mut procs {
        p.wait_timeout(Duration::from_secs(15)).expect("rtpgen exits");
        let r = read_report(report.as_path()).unwrap_or_else(|e| panic!("{e:#}: {}", p.output_tail()));
        assert_eq!(r.sent, PACKETS, "{report:?}");
        assert_eq!(r.received, PACKETS, "every packet relayed intact: {r:?}\n{}", engine.process.output_tail());
        assert_eq!(r.corrupt, 0, "{r:?}");
        assert_eq!(r.sources.len(), 1, "one relay source per stream: {r:?}");
    }

    let deleted = engine.delete("ng-test-1").expect("delete");
    assert_eq!(deleted.result, "ok");
    let rtp_in = deleted.body.get("totals").and_then(|t| t.get("RTP")).and_then(|r| r.get("packets"));
    assert_eq!(rtp_in.and_then(|p| p.as_int()), Some(4 * PACKETS as i64), "rtpengine's own count: {rtp_in:?}");
    // rtpengine answers a delete of an unknown call with `ok` and a warning.
    let again = engine.delete("ng-test-1").expect("second delete");
    assert_eq!(again.warning.as_deref(), Some("Call-ID not found or tags didn't match"), "{again:?}");
    engine.stop().expect("rtpengine stops");
    topo.remove().expect("topology removed");
}
