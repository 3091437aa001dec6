//! Media under load through the SBC's embedded relay: 200 concurrent SIPp calls (caller 198.18.1.10 → SBC →
//! carrier b 198.18.2.10, the topology of DESIGN.md), each with RTP both ways for 30 s at 50 packets/s, must lose
//! under 0.01% of the packets.
//!
//! Every call's SDP names the same RTP address per side (SIPp's `-key rtp_port`), which is legal: the relay gives
//! each call relay ports of its own. So one `rtpfleet` per side sends one stream per call, from that address, to
//! the call's relay port (read from the SDP SIPp received, as a phone would), and tells the streams coming back
//! apart by SSRC.

use std::time::{Duration, Instant};
use tests::fleet::{self, Media};
use tests::netns::{addr, sbc_config, Host, Topology, CALLER, CARRIER_B, SBC_A};
use tests::sipp::Sipp;
use tests::Sbc;

const CALLS: u32 = 200;
/// Calls set up per second: the last call is up about 10 s after the first.
const RATE: u32 = 20;
const PPS: u32 = 50;
const MEDIA_SECONDS: u64 = 30;
const MEDIA: Media = Media { calls: CALLS, pps: PPS, seconds: MEDIA_SECONDS };
/// Every call's hold time: the ramp (10 s), the media (30 s) and a margin, so that the first call is still up
/// when the media ends.
const HOLD: Duration = Duration::from_secs(50);
/// The port every SDP names for RTP (SIPp's own -mp port stays 6000).
const RTP_PORT: u16 = 7078;
const SSRC_A: u32 = 0xA000_0000;
const SSRC_B: u32 = 0xB000_0000;
/// The acceptance bound: packets lost per packet sent, each direction.
const MAX_LOSS: f64 = 1e-4;

/// The kernel's UDP counters in `host`'s namespace (`/proc/net/snmp`), by name, for where packets were dropped.
fn udp_counters(topo: &Topology, host: Host) -> String {
    let snmp = topo.exec(host, "cat", &["/proc/net/snmp"]).unwrap_or_default();
    let udp: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Udp:")).collect();
    match udp.as_slice() {
        [names, values, ..] => names
            .split_whitespace()
            .zip(values.split_whitespace())
            .skip(1)
            .filter(|(k, _)| ["InDatagrams", "InErrors", "RcvbufErrors", "SndbufErrors"].contains(k))
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        _ => "unavailable".to_owned(),
    }
}

/// Packets dropped at the per-CPU input backlog (`netdev_max_backlog`), all CPUs, host-wide: the second column of
/// `/proc/net/softnet_stat`.
fn backlog_drops() -> u64 {
    std::fs::read_to_string("/proc/net/softnet_stat")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| u64::from_str_radix(l.split_whitespace().nth(1)?, 16).ok())
        .sum()
}

#[test]
fn two_hundred_concurrent_calls_with_media_lose_under_one_in_ten_thousand() {
    let started = Instant::now();
    let topo = Topology::single_sbc().expect("topology");
    let cdr = topo.dir().join("cdr.jsonl");
    let mut config = sbc_config("", "", "", false, Some(&cdr));
    config.push_str(
        "\n[media]\ninterfaces = [{ name = \"a\", address = \"198.18.1.1\" }, { name = \"b\", address = \"198.18.2.1\" }]\n\
         ports = \"30000-31999\"\n",
    );
    let sbc =
        Sbc::start_in(&topo.ns(Host::Sbc), "media-load", &config, addr(SBC_A, 5060), addr([127, 0, 0, 1].into(), 8080))
            .expect("sbc starts");

    let ns_b = topo.ns(Host::B);
    let mut uas = Sipp::new("uas_answer_rtp.xml")
        .netns(&ns_b)
        .local_ip(CARRIER_B)
        .local_port(5060)
        .key("rtp_port", &RTP_PORT.to_string())
        .calls(CALLS)
        .limit(Duration::from_secs(100))
        .trace_messages(true)
        .spawn()
        .expect("uas starts");
    uas.wait_listening(Some(&ns_b), 5060, Duration::from_secs(5)).expect("uas listens");

    let mut fleet_a = fleet::spawn(&topo, Host::A, "fleet-a", addr(CALLER, RTP_PORT), MEDIA, SSRC_A, SSRC_B);
    let mut fleet_b = fleet::spawn(&topo, Host::B, "fleet-b", addr(CARRIER_B, RTP_PORT), MEDIA, SSRC_B, SSRC_A);
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
        .limit(Duration::from_secs(120))
        .trace_messages(true)
        .spawn()
        .expect("uac starts");

    // All calls up (10 s at 20/s): each side learns its relay ports from the SDP it received.
    let dir = topo.dir().to_owned();
    let (a_targets, b_targets) = (dir.join("fleet-a.targets"), dir.join("fleet-b.targets"));
    fleet::write_targets(&uac, &uas, CALLS, &a_targets, &b_targets, Duration::from_secs(30));
    let media_from = started.elapsed();
    let backlog_before = backlog_drops();
    let a = fleet::report(&mut fleet_a, &dir.join("fleet-a.json"), MEDIA);
    let b = fleet::report(&mut fleet_b, &dir.join("fleet-b.json"), MEDIA);
    let media_to = started.elapsed();
    eprintln!(
        "kernel: UDP in A: {}; in B: {}; in the SBC: {}; input backlog drops host-wide during the media: {}",
        udp_counters(&topo, Host::A),
        udp_counters(&topo, Host::B),
        udp_counters(&topo, Host::Sbc),
        backlog_drops() - backlog_before
    );
    let relay: Vec<String> = sbc
        .http_get("/metrics")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("sbc_media_"))
        .map(str::to_owned)
        .collect();
    eprintln!("media from {media_from:?} to {media_to:?} after the start; relay counters:\n{}", relay.join("\n"));

    let loss_ab = fleet::direction("A -> B", &a, &b, MEDIA);
    let loss_ba = fleet::direction("B -> A", &b, &a, MEDIA);
    fleet::assert_direction("A -> B", &a, &b, loss_ab, MEDIA, MAX_LOSS);
    fleet::assert_direction("B -> A", &b, &a, loss_ba, MEDIA, MAX_LOSS);

    uac.wait().expect("uac runs").assert_all_successful(CALLS.into()).expect("every call completes for the caller");
    uas.wait().expect("uas runs").assert_all_successful(CALLS.into()).expect("every call completes for the carrier");

    let records = tests::wait_cdrs(&[&cdr], CALLS as usize, Duration::from_secs(10));
    assert_eq!(records.len(), CALLS as usize, "one CDR per call");
    let min_packets = |leg: &str| {
        records.iter().map(|r| r["media"][leg]["received"]["packets"].as_u64().unwrap_or(0)).min().unwrap_or(0)
    };
    // Each leg of each call received its stream: S * PPS packets less what was lost.
    let least = u64::from(PPS) * MEDIA_SECONDS * 99 / 100;
    for leg in ["a", "b"] {
        let min = min_packets(leg);
        assert!(min >= least, "every CDR has media figures for leg {leg} (at least {least} packets), fewest {min}");
    }
    eprintln!(
        "{CALLS} calls with media passed in {:?}: loss A->B {:.5}%, B->A {:.5}%",
        started.elapsed(),
        loss_ab * 100.0,
        loss_ba * 100.0
    );
}
