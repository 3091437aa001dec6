//! SIPp against a running `sbc`: OPTIONS pings, unknown methods, requests outside any dialog, over UDP and TCP.

use std::time::Duration;
use tests::{sipp, Sbc};

#[test]
fn two_thousand_options_at_500_per_second_all_answered_200_without_retransmission() {
    let sbc = Sbc::start("options", "").expect("sbc starts");
    let run = sipp::uac(sbc.sip, "options_uac.xml", 2000, 500, "u1", Duration::from_secs(60)).expect("sipp runs");
    assert_eq!(run.exit_code, 0, "sipp failed: {}\n{:?}", run.stderr, run.stats);
    assert_eq!(run.count("SuccessfulCall(C)"), 2000, "{:?}", run.stats);
    assert_eq!(run.count("FailedCall(C)"), 0, "{:?}", run.stats);
    assert_eq!(run.count("Retransmissions(C)"), 0, "{:?}", run.stats);
    let seen = sbc.metric("sbc_sip_messages_in_total{kind=\"request\",method=\"OPTIONS\"").expect("metrics");
    assert_eq!(seen, 2000.0, "the SBC counted every OPTIONS once");
    let answered =
        sbc.metric("sbc_sip_messages_out_total{kind=\"response\",method=\"OPTIONS\",status=\"200\"").expect("metrics");
    assert_eq!(answered, 2000.0, "the SBC sent one 200 per OPTIONS, no more");
}

#[test]
fn options_over_tcp_are_answered() {
    let sbc = Sbc::start("options-tcp", "").expect("sbc starts");
    let run = sipp::uac(sbc.sip, "options_uac.xml", 200, 100, "t1", Duration::from_secs(30)).expect("sipp runs");
    assert_eq!(run.exit_code, 0, "sipp failed: {}\n{:?}", run.stderr, run.stats);
    assert_eq!(run.count("SuccessfulCall(C)"), 200, "{:?}", run.stats);
}

#[test]
fn unknown_method_gets_501_and_stray_bye_gets_481() {
    let sbc = Sbc::start("501-481", "").expect("sbc starts");
    let run = sipp::uac(sbc.sip, "unknown_method_uac.xml", 10, 10, "u1", Duration::from_secs(20)).expect("sipp");
    assert_eq!((run.exit_code, run.count("SuccessfulCall(C)")), (0, 10), "{}\n{:?}", run.stderr, run.stats);
    let run = sipp::uac(sbc.sip, "stray_bye_uac.xml", 10, 10, "u1", Duration::from_secs(20)).expect("sipp");
    assert_eq!((run.exit_code, run.count("SuccessfulCall(C)")), (0, 10), "{}\n{:?}", run.stderr, run.stats);
    let n501 = sbc.metric("sbc_sip_messages_out_total{kind=\"response\",method=\"other\",status=\"501\"").expect("m");
    assert_eq!(n501, 10.0);
}
