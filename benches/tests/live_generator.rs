//! `sbc-bench media --generator xdp` end to end, with the built binary (root: namespaces, XDP): the generator
//! sends 40,000 RTP packets over 1,000 flows in one second through the bare redirect, through the reference relay
//! (filled with the 1,000 flows) and through our relay_xdp filled by the relay's loader (`xdp-maps`: both
//! directions of 1,000 latched streams), and the XDP sink must count them all, every flow, with valid sequence
//! numbers and IPv4 checksums. The generator's own `drop` ladder runs first, as in every live run. After each
//! ladder a latency step at half its ceiling stamps every frame with its send time, and the sink's latency
//! histogram must hold every packet it counted.

use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

const FLOWS: u64 = 1000;
const RATE: u64 = 40_000;

#[test]
fn live_generator_and_sink_count_every_packet_of_1000_flows_through_bare_reference_and_ours() {
    let dir = std::env::temp_dir().join(format!("sbc-bench-live-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let out = dir.join("live.json");
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_sbc-bench"))
        .args(["media", "--local", "--generator", "xdp", "--paths", "bare,reference,xdp-maps", "--runs", "1"])
        .args(["--step-secs", "1", "--flows", &FLOWS.to_string(), "--rates", &RATE.to_string()])
        .arg("--out")
        .arg(&out)
        .output()
        .expect("sbc-bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "sbc-bench media --generator xdp: {}\n{stdout}\n{stderr}", output.status);
    assert!(started.elapsed() < Duration::from_secs(120), "bounded: took {:?}", started.elapsed());
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&out).expect("JSON written")).expect("JSON");
    let ladders = json["ladders"].as_array().expect("ladders");
    let paths: Vec<&str> = ladders.iter().filter_map(|l| l["path"].as_str()).collect();
    assert_eq!(paths, ["drop", "bare", "reference", "xdp-maps"], "one ladder per path, the generator's own first");
    for ladder in ladders {
        let path = ladder["path"].as_str().unwrap_or_default();
        let step = &ladder["steps"][0];
        assert!(step["error"].is_null(), "{path}: {step}");
        let sent = step["sent"].as_u64().expect("sent");
        let received = step["received"].as_u64().expect("received");
        assert_eq!(sent, RATE, "{path}: the generator sent rate x 1 s: {step}");
        // At most one frame more than sent: with live frames (kernel 6.18.44, where BPF_PROG_RUN live frames
        // works) the sink counts one extra frame per generator run, not understood yet (benches/README.md, "The
        // extra frame of live frames"); with AF_XDP it counts none.
        assert!(received <= sent + 1, "{path}: nothing counted twice beyond that one frame: {step}");
        assert!(sent.saturating_sub(received) <= sent / 1000, "{path}: received within 0.1 % of sent: {step}");
        let sink = &step["sink"];
        assert_eq!(sink["flows_seen"], FLOWS, "{path}: every flow seen: {sink}");
        assert!(sink["min_flow_packets"].as_u64().unwrap_or(0) > 0, "{path}: no flow empty: {sink}");
        assert_eq!(sink["bad_ip_csum"], 0, "{path}: IPv4 checksums valid: {sink}");
        // Loss per flow, exactly: with nothing lost every flow got its share. (Not the sink's `seq_gaps`: it keeps
        // a flow's expected sequence number per CPU, so a flow whose packets were handled on two CPUs, e.g. when the
        // generator's thread moved, shows gaps without any loss; CI saw 105 with all 40,000 packets counted.)
        if received == sent {
            let share = sent / FLOWS;
            assert_eq!(sink["min_flow_packets"], share, "{path}: every flow got its {share} packets: {sink}");
            assert_eq!(sink["max_flow_packets"], share, "{path}: no flow got more than {share}: {sink}");
        }
        assert!(sink["seq_gaps"].as_u64().is_some(), "{path}: the sink reports sequence gaps: {sink}");
        assert!(step["achieved_pps"].as_f64().unwrap_or(0.0) > 0.9 * RATE as f64, "{path}: rate kept: {step}");
        assert_eq!(step["pass"], true, "{path}: the step passes: {step}");

        let lat_step = &ladder["latency_step"];
        assert_eq!(lat_step["rate"], RATE / 2, "{path}: the latency step at half the ceiling: {lat_step}");
        assert!(lat_step["error"].is_null(), "{path}: {lat_step}");
        let received = lat_step["received"].as_u64().unwrap_or(0);
        assert!(received >= RATE / 2 - RATE / 2000, "{path}: the latency step's packets arrived: {lat_step}");
        let lat = &lat_step["sink"]["latency"];
        let samples = lat["samples"].as_u64().unwrap_or(0);
        assert!(samples + 1 >= received && samples <= received, "{path}: every packet stamped and timed: {lat}");
        let (p50, p99, max) =
            (lat["p50_us"].as_f64().unwrap_or(-1.0), lat["p99_us"].as_f64().unwrap_or(-1.0), lat["max_us"].as_f64());
        assert!(p50 > 0.0 && p50 <= p99, "{path}: percentiles in order: {lat}");
        assert!(max.is_some_and(|m| m >= p99 - 1.0), "{path}: the maximum bounds the p99: {lat}");
    }
    assert!(stdout.contains("ceiling, Mpps"), "the table: {stdout}");
    assert!(stdout.contains("one-way latency at half the path's own ceiling"), "the latency table: {stdout}");
    let svg = std::fs::read_to_string(out.with_extension("svg")).expect("the plot next to the JSON");
    assert!(svg.contains("One-way latency at half the ceiling"), "the plot has its latency panel");
    let _ = std::fs::remove_dir_all(&dir);
}
