//! Memory per established call (issue 15, point 8): 1,000 SIPp calls held together through the SBC (caller
//! 198.18.1.10 → SBC → carrier b 198.18.2.10, the topology of DESIGN.md) with media anchored on the embedded relay
//! (ports allocated, four relay sockets per call, SDP rewritten; no RTP: what is measured is what a call holds,
//! not what packets in flight hold). The SBC's resident memory with every call up, less its memory before the
//! first call, over the calls, must stay under [`MAX_KIB_PER_CALL`].
//!
//! RSS and not a count of allocations: it is what the issue measures and what an operator pays, and it includes
//! what a count would miss (allocator overhead, task and socket registrations of the runtime). At 1,000 calls the
//! noise of a few hundred KiB (lazily touched pages, thread stacks) is a fraction of a KiB per call. The bound
//! guards what was cut: the debug build measured 27 KiB per call here before transactions dropped their copies of
//! the requests and responses, and the code before the first cut about 48 KiB (see benches/README.md, "Memory per
//! call"; the issue's target of 8 KiB: 8.3 KiB on the release build with `sbc-bench concurrent` at 4,500 calls).

use std::time::{Duration, Instant};
use tests::netns::{addr, sbc_config, Host, Topology, CALLER, CARRIER_B, SBC_A};
use tests::procfs::rss_kib;
use tests::sipp::Sipp;
use tests::Sbc;

const CALLS: u32 = 1_000;
/// Calls set up per second: the last call is up about 10 s after the first.
const RATE: u32 = 100;
/// Every call's hold: the ramp (10 s) and time to read the memory with every call up. Well below the relay's
/// `rtp_timeout` (60 s), after which a call without RTP would be ended.
const HOLD: Duration = Duration::from_secs(25);
/// How long the calls may take to be all up.
const RAMP_LIMIT: Duration = Duration::from_secs(20);
/// The bound: about a fifth above what the release build measures (8.3 KiB with `sbc-bench concurrent`, 4500
/// calls), below the 11.8 KiB of the code before an answered call dropped its INVITEs and compacted its dialogs,
/// and before the smaller transaction keys and dialog index (this test measured 7.0 KiB on the debug build after
/// those cuts; 11.1 before them, 17.2 before the relay's epoll cut, 27 before the transactions' cut).
const MAX_KIB_PER_CALL: f64 = 10.0;
const RTP_PORT: u16 = 7078;

/// A gauge of the SBC's /metrics, if present.
fn gauge(sbc: &Sbc, name: &str) -> Option<f64> {
    let metrics = sbc.http_get("/metrics").ok()?;
    metrics.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn a_thousand_calls_held_with_media_anchored_cost_under_14_kib_each() {
    let topo = Topology::single_sbc().expect("topology");
    let mut config = sbc_config("", "", "", false, None);
    // A pair per leg on each interface: 1,000 pairs each, and room to spare.
    config.push_str(
        "\n[media]\ninterfaces = [{ name = \"a\", address = \"198.18.1.1\" }, { name = \"b\", address = \"198.18.2.1\" }]\n\
         ports = \"20000-23999\"\n",
    );
    let sbc =
        Sbc::start_in(&topo.ns(Host::Sbc), "memory", &config, addr(SBC_A, 5060), addr([127, 0, 0, 1].into(), 8080))
            .expect("sbc starts");
    std::thread::sleep(Duration::from_secs(1));
    let idle = rss_kib(sbc.id()).expect("the sbc's VmRSS in /proc");

    let ns_b = topo.ns(Host::B);
    let mut uas = Sipp::new("uas_answer_rtp.xml")
        .netns(&ns_b)
        .local_ip(CARRIER_B)
        .local_port(5060)
        .key("rtp_port", &RTP_PORT.to_string())
        .calls(CALLS)
        .limit(Duration::from_secs(90))
        .spawn()
        .expect("uas starts");
    uas.wait_listening(Some(&ns_b), 5060, Duration::from_secs(5)).expect("uas listens");
    let uac = Sipp::new("uac_call_rtp.xml")
        .netns(&topo.ns(Host::A))
        .local_ip(CALLER)
        .local_port(5060)
        .target(addr(SBC_A, 5060))
        .service("+4930123456")
        .key("rtp_port", &RTP_PORT.to_string())
        .calls(CALLS)
        .rate(RATE)
        .pause(HOLD)
        .limit(Duration::from_secs(90))
        .spawn()
        .expect("uac starts");

    // Every call up, with its relay session and its four sockets.
    let started = Instant::now();
    let want = f64::from(CALLS);
    let (mut sessions, mut sockets) = (None, None);
    while started.elapsed() < RAMP_LIMIT {
        sessions = gauge(&sbc, "sbc_media_sessions");
        sockets = gauge(&sbc, "sbc_media_sockets");
        if sessions == Some(want) && sockets == Some(want * 4.0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(
        (sessions, sockets),
        (Some(want), Some(want * 4.0)),
        "every call up with its media session and four relay sockets within {RAMP_LIMIT:?}"
    );
    // The peak of a few reads a little apart (the last calls' messages may still be in flight).
    let mut peak = 0;
    for _ in 0..4 {
        peak = peak.max(rss_kib(sbc.id()).expect("VmRSS"));
        std::thread::sleep(Duration::from_millis(250));
    }
    let per_call = peak.saturating_sub(idle) as f64 / want;

    uac.wait().expect("uac runs").assert_all_successful(CALLS.into()).expect("every call completes for the caller");
    uas.wait().expect("uas runs").assert_all_successful(CALLS.into()).expect("every call completes for the carrier");
    std::thread::sleep(Duration::from_secs(2));
    let after = rss_kib(sbc.id()).expect("VmRSS");
    eprintln!(
        "sbc rss: idle {idle} KiB, {CALLS} calls up {peak} KiB, after they ended {after} KiB: {per_call:.2} KiB per call"
    );
    assert!(
        per_call <= MAX_KIB_PER_CALL,
        "{per_call:.2} KiB per call (idle {idle} KiB, {CALLS} calls up {peak} KiB), bound {MAX_KIB_PER_CALL} KiB"
    );
}
