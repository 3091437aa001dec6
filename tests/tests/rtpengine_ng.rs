//! rtpengine 10.5 (the reference relay of `sbc-bench media --paths rtpengine`) in the single-SBC topology, steered
//! by our NG client (offer with the caller's SDP, answer with the callee's, delete): real RTP from A crosses it to
//! B, and B's RTP crosses back to A, on the ports its SDPs named.
//!
//! The same body runs against our `media-relay --ng` (issue 17), in user space and with native XDP: one test for
//! both proves the protocol is rtpengine's, not a dialect of ours. The NG edge cases (a retransmitted cookie,
//! malformed bencode) run against both as well; refusals of what we do not do run against ours.

use relay_proto::bencode::Value;
use relay_proto::ng::{self, Command, Request};
use std::time::Duration;
use tests::netns::{addr, Host, Topology, CALLER, CARRIER_B, SBC_A, SBC_B};
use tests::rtp::{read_report, rtpgen_binary, Rtpgen};
use tests::rtpengine::{RtpEngine, StreamPeers};

const PACKETS: u64 = 200;

/// Which relay answers NG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Relay {
    RtpEngine,
    /// Ours, with this `--xdp` mode.
    MediaRelay(&'static str),
}

fn start(topo: &Topology, relay: Relay) -> RtpEngine {
    match relay {
        Relay::RtpEngine => {
            // Under CI a missing rtpengine is a failure, as everywhere: the Makefile's deps install it.
            let binary = tests::rtpengine::binary();
            assert!(binary.is_ok(), "{:#}", binary.unwrap_err());
            RtpEngine::start(topo, Host::Sbc, "rtpengine", SBC_A.into(), SBC_B.into(), None).expect("rtpengine starts")
        }
        Relay::MediaRelay(xdp) => RtpEngine::start_media_relay(
            topo,
            Host::Sbc,
            "media-relay",
            [SBC_A.into(), SBC_B.into()],
            xdp,
            None,
            &tests::media_relay_binary().expect("media-relay built"),
        )
        .expect("media-relay --ng starts"),
    }
}

#[test]
fn rtpengine_relays_rtp_both_ways_for_a_call_set_up_over_ng() {
    relays_rtp_both_ways(Relay::RtpEngine);
}

#[test]
fn media_relay_ng_relays_rtp_both_ways_for_a_call_set_up_over_ng() {
    relays_rtp_both_ways(Relay::MediaRelay("off"));
}

#[test]
fn media_relay_ng_with_native_xdp_forwards_99_percent_in_the_kernel() {
    relays_rtp_both_ways(Relay::MediaRelay("native"));
}

fn relays_rtp_both_ways(relay: Relay) {
    let topo = Topology::single_sbc().expect("topology (needs root)");
    let _helpers = (relay == Relay::MediaRelay("native"))
        .then(|| topo.prepare_xdp(&tests::media_relay_binary().expect("media-relay built")).expect("xdp path"));
    let mut engine = start(&topo, relay);
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

    let listed = engine.ng.request(&Request { command: Command::List, ..Request::ping() }, T).expect("list");
    assert_eq!(listed.body.get("calls"), Some(&Value::str_list(&["ng-test-1"])), "{listed:?}");
    // The live call's figures, before the delete: every packet of the four streams counted.
    let queried = engine.ng.request(&Request::new(Command::Query, "ng-test-1", "caller"), T).expect("query");
    assert_eq!(queried.result, "ok", "{queried:?}");
    let live = queried.body.get("totals").and_then(|t| t.get("RTP")).and_then(|r| r.get("packets"));
    assert_eq!(live.and_then(|p| p.as_int()), Some(4 * PACKETS as i64), "live count: {queried:?}");
    let deleted = engine.delete("ng-test-1").expect("delete");
    assert_eq!(deleted.result, "ok");
    let rtp = deleted.body.get("totals").and_then(|t| t.get("RTP"));
    let rtp_in = rtp.and_then(|r| r.get("packets"));
    assert_eq!(rtp_in.and_then(|p| p.as_int()), Some(4 * PACKETS as i64), "the relay's own count: {rtp_in:?}");
    if relay == Relay::MediaRelay("native") {
        let kernel = rtp.and_then(|r| r.get("kernel packets")).and_then(|p| p.as_int()).unwrap_or(0);
        println!("XDP forwarded {kernel} of {} packets", 4 * PACKETS);
        assert!(kernel * 100 >= 99 * 4 * PACKETS as i64, "XDP forwarded {kernel} of {}: {deleted:?}", 4 * PACKETS);
    }
    let listed = engine.ng.request(&Request { command: Command::List, ..Request::ping() }, T).expect("list");
    assert_eq!(listed.body.get("calls"), Some(&Value::List(vec![])), "no call left: {listed:?}");
    // rtpengine answers a delete of an unknown call with `ok` and a warning.
    let again = engine.delete("ng-test-1").expect("second delete");
    assert_eq!(again.warning.as_deref(), Some("Call-ID not found or tags didn't match"), "{again:?}");
    engine.stop().expect("the relay stops");
    topo.remove().expect("topology removed");
}

const T: Duration = Duration::from_secs(5);

#[test]
fn rtpengine_answers_a_retransmitted_offer_and_malformed_bencode() {
    ng_edge_cases(Relay::RtpEngine);
}

#[test]
fn media_relay_ng_answers_a_retransmitted_offer_and_malformed_bencode() {
    ng_edge_cases(Relay::MediaRelay("off"));
}

/// A retransmitted offer (same cookie) gets the identical reply and makes no second call; a malformed datagram
/// gets an error reply and changes nothing.
fn ng_edge_cases(relay: Relay) {
    let topo = Topology::single_sbc().expect("topology (needs root)");
    let mut engine = start(&topo, relay);
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 {CALLER}\r\ns=-\r\nc=IN IP4 {CALLER}\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0\r\n\
         a=rtpmap:0 PCMU/8000\r\n"
    );
    let mut offer = Request::new(Command::Offer, "ng-edge-1", "caller");
    offer.sdp = Some(sdp);
    offer.direction = Some(["a".into(), "b".into()]);
    offer.flags = vec!["trust-address".into()];
    let datagram = offer.encode("edge_1");
    let first = engine.ng.exchange_raw(&datagram, T).expect("offer reply");
    let again = engine.ng.exchange_raw(&datagram, T).expect("retransmission's reply");
    assert_eq!(String::from_utf8_lossy(&first), String::from_utf8_lossy(&again), "identical replies");
    let (_, body) = ng::decode(&first).expect("an NG reply");
    assert_eq!(body.get("result"), Some(&Value::str("ok")), "{body:?}");
    let list = Request { command: Command::List, ..Request::ping() };
    let listed = engine.ng.request(&list, T).expect("list");
    assert_eq!(listed.body.get("calls"), Some(&Value::str_list(&["ng-edge-1"])), "one call: {listed:?}");

    let malformed = engine.ng.exchange_raw(b"edge_2 d7:command5:offer7:call-id", T).expect("a reply to garbage");
    let (cookie, body) = ng::decode(&malformed).expect("an NG reply");
    assert_eq!(cookie, "edge_2");
    assert_eq!(body.get("result"), Some(&Value::str("error")), "{body:?}");
    assert!(body.get("error-reason").is_some(), "{body:?}");
    let listed = engine.ng.request(&list, T).expect("list");
    assert_eq!(listed.body.get("calls"), Some(&Value::str_list(&["ng-edge-1"])), "nothing changed: {listed:?}");
    engine.delete("ng-edge-1").expect("delete");
    engine.stop().expect("the relay stops");
    topo.remove().expect("topology removed");
}

#[test]
fn media_relay_ng_refuses_recording_transcoding_and_unknown_flags_with_error_reason() {
    let topo = Topology::single_sbc().expect("topology (needs root)");
    let mut engine = start(&topo, Relay::MediaRelay("off"));
    let sdp =
        format!("v=0\r\no=- 1 1 IN IP4 {CALLER}\r\ns=-\r\nc=IN IP4 {CALLER}\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0\r\n");
    for (flag, word) in
        [("record-call", "recording"), ("always-transcode", "transcoding"), ("frobnicate", "frobnicate")]
    {
        let mut offer = Request::new(Command::Offer, "ng-refused", "caller");
        offer.sdp = Some(sdp.clone());
        offer.flags = vec![flag.into()];
        let err = engine.ng.request(&offer, T).expect_err("refused");
        let text = format!("{err:#}");
        assert!(text.contains("error") && text.contains(word), "{flag}: {text}");
    }
    let listed = engine.ng.request(&Request { command: Command::List, ..Request::ping() }, T).expect("list");
    assert_eq!(listed.body.get("calls"), Some(&Value::List(vec![])), "no call made: {listed:?}");
    engine.stop().expect("the relay stops");
    topo.remove().expect("topology removed");
}
