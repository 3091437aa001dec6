//! The call scenarios in tests/sipp/, validated against each other without the SBC: the UAS runs as carrier b
//! (198.18.2.10:5060) and the UAC as carrier c (198.18.2.11:5060), on the side-b bridge of a fresh topology. Each
//! pair places a few calls; both sides must exit 0 with every call successful and none failed.

use std::time::Duration;
use tests::netns::{addr, Host, Topology, CARRIER_B, CARRIER_C};
use tests::sipp::Sipp;

const CALLS: u32 = 3;
const LIMIT: Duration = Duration::from_secs(30);

/// Runs `uas` in carrier b and `uac` in carrier c against it; asserts both ran all calls successfully.
fn pair(uas: Sipp, uac: Sipp) {
    let topo = Topology::single_sbc().expect("topology");
    let b = topo.ns(Host::B);
    let mut server = uas
        .netns(&b)
        .local_ip(CARRIER_B)
        .local_port(5060)
        .calls(CALLS)
        .limit(LIMIT)
        .trace_messages(true)
        .spawn()
        .expect("uas starts");
    server.wait_listening(Some(&b), 5060, Duration::from_secs(5)).expect("uas listens");
    let client = uac
        .netns(&topo.ns(Host::C))
        .local_ip(CARRIER_C)
        .local_port(5060)
        .target(addr(CARRIER_B, 5060))
        .service("+4930123456")
        .calls(CALLS)
        .rate(10)
        .limit(LIMIT)
        .trace_messages(true)
        .run()
        .expect("uac runs");
    let server = server.wait().expect("uas finishes");
    client.assert_all_successful(CALLS.into()).expect("uac");
    server.assert_all_successful(CALLS.into()).expect("uas");
}

#[test]
fn uac_call_with_uas_answer() {
    pair(Sipp::new("uas_answer.xml"), Sipp::new("uac_call.xml").pause(Duration::from_millis(300)));
}

#[test]
fn uac_call_remote_bye_with_uas_answer_then_bye() {
    pair(Sipp::new("uas_answer_then_bye.xml").pause(Duration::from_millis(300)), Sipp::new("uac_call_remote_bye.xml"));
}

#[test]
fn uac_call_with_uas_early_media() {
    pair(
        Sipp::new("uas_early_media.xml").pause(Duration::from_millis(300)),
        Sipp::new("uac_call.xml").pause(Duration::from_millis(300)),
    );
}

#[test]
fn uac_call_rtp_with_the_carriers_of_the_setup_drill() {
    // The carriers of tests::setup_drill: late answer after a 100, ringing then answer, early media then answer.
    for uas in ["uas_answer_late.xml", "uas_ring_then_answer.xml", "uas_early_media_rtp.xml"] {
        pair(
            Sipp::new(uas).key("rtp_port", "7078").pause(Duration::from_millis(300)),
            Sipp::new("uac_call_rtp.xml").key("rtp_port", "7078").pause(Duration::from_millis(300)),
        );
    }
}

#[test]
fn uac_call_prack_late_with_uas_answer_prack() {
    // The caller waits 1.2 s before its PRACK: the carrier's 183 retransmissions meanwhile are absorbed.
    pair(
        Sipp::new("uas_answer_prack.xml"),
        Sipp::new("uac_call_prack_late.xml")
            .key("rtp_port", "7078")
            .set("prack_delay_ms", "1200")
            .pause(Duration::from_millis(300)),
    );
}

#[test]
fn uac_cancel_with_uas_ring_forever() {
    pair(Sipp::new("uas_ring_forever.xml"), Sipp::new("uac_cancel.xml").pause(Duration::from_millis(300)));
}

#[test]
fn uac_expect_status_486_with_uas_reject_486() {
    pair(Sipp::new("uas_reject.xml").set("status", "486"), Sipp::new("uac_expect_status.xml").set("expected", "486"));
}

#[test]
fn uac_expect_status_503_with_uas_reject_503() {
    pair(Sipp::new("uas_reject.xml").set("status", "503"), Sipp::new("uac_expect_status.xml").set("expected", "503"));
}

/// The expectation is real: a 486 where a 503 is expected fails every call on the UAC side.
#[test]
fn uac_expect_status_fails_on_another_status() {
    let topo = Topology::single_sbc().expect("topology");
    let b = topo.ns(Host::B);
    let mut server = Sipp::new("uas_reject.xml")
        .set("status", "486")
        .netns(&b)
        .local_ip(CARRIER_B)
        .calls(2)
        .limit(Duration::from_secs(15))
        .spawn()
        .expect("uas starts");
    server.wait_listening(Some(&b), 5060, Duration::from_secs(5)).expect("uas listens");
    let client = Sipp::new("uac_expect_status.xml")
        .set("expected", "503")
        .netns(&topo.ns(Host::C))
        .local_ip(CARRIER_C)
        .target(addr(CARRIER_B, 5060))
        .calls(2)
        .limit(Duration::from_secs(15))
        .run()
        .expect("uac runs");
    assert_ne!(client.exit_code, 0, "{:?}", client.stats);
    assert_eq!((client.count("SuccessfulCall(C)"), client.count("FailedCall(C)")), (0, 2), "{:?}", client.stats);
    assert!(client.diagnostics.contains("expected 503"), "{}", client.diagnostics);
    server.wait().expect("uas finishes").assert_all_successful(2).expect("uas sent its 486s");
}
