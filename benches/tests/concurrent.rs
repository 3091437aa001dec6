//! `sbc-bench concurrent` end to end, with the built binary: a short ramp with media through our own SBC in network
//! namespaces (root), and SIPp to SIPp on loopback (`direct`, no root). Each asserts the JSON it wrote and the plot
//! next to it.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

/// One at a time: both pin SIPp and the fleets to the same core, and a second load at once would show as loss.
static SERIAL: Mutex<()> = Mutex::new(());

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sbc-bench-concurrent-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// Runs `sbc-bench concurrent ARGS --out DIR/c.json`; returns the JSON it wrote and its stdout.
fn concurrent(dir: &Path, args: &[&str]) -> (Value, String) {
    let out = dir.join("c.json");
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_sbc-bench"))
        .arg("concurrent")
        .args(args)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("sbc-bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "sbc-bench concurrent {args:?}: {}\n{stdout}\n{stderr}", output.status);
    eprintln!("sbc-bench concurrent {args:?} took {:?}\n{stdout}", started.elapsed());
    let json = serde_json::from_str(&std::fs::read_to_string(&out).expect("JSON written")).expect("JSON parses");
    let svg = std::fs::read_to_string(out.with_extension("svg")).expect("SVG written next to the JSON");
    assert!(svg.contains("<svg") && svg.contains("Calls up"), "an SVG with the calls-up panel");
    (json, stdout)
}

/// The one measurement's figures: `calls` answered, none failed, media both ways with under 1 % lost.
fn assert_calls_and_media(json: &Value, target: &str, calls: u64) {
    let m = &json["measurements"][0];
    assert_eq!(m["target"], target, "{m}");
    assert_eq!(m["answered"], calls, "every call answered: {m}");
    assert_eq!(m["failed"], 0, "no call failed: {m}");
    assert_eq!(m["peak_calls_up"], calls, "all calls up together: {m}");
    assert!(m["pdd_p99_ms"].is_number(), "post-dial delay measured: {m}");
    for direction in ["a_to_b", "b_to_a"] {
        let d = &m["media"][direction];
        // calls × 50 pps × 3 s.
        assert_eq!(d["sent"], calls * 150, "{direction}: every packet sent: {d}");
        assert!(d["received"].as_u64().unwrap_or(0) > 0, "{direction}: media arrived: {d}");
        assert!(d["loss_pct"].as_f64().unwrap_or(100.0) < 1.0, "{direction}: under 1 % lost: {d}");
        assert!(d["latency_p99_us"].is_u64() && d["jitter_mean_us"].is_number(), "{direction}: latency, jitter: {d}");
    }
    assert!(m["series"].as_array().is_some_and(|s| s.len() >= 3), "a time series: {m}");
    assert_eq!(json["summary"]["targets"][0]["target"], target);
}

#[test]
fn twenty_calls_with_media_through_the_local_sbc_all_answered_and_under_one_percent_lost() {
    // Root for the namespaces: without it this fails (as every netns test does), it never passes unmeasured.
    tests::netns::require_netns();
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = scratch("local");
    let (json, stdout) =
        concurrent(&dir, &["--target", "local", "--calls", "20", "--rate", "20", "--hold-secs", "3", "--runs", "1"]);
    assert_calls_and_media(&json, "local", 20);
    let m = &json["measurements"][0];
    assert!(m["sbc_cpu_pct"].is_number(), "the sbc's CPU over the hold: {m}");
    assert!(stdout.contains("local") && stdout.contains("PDD p50/p95/p99"), "{stdout}");
    // The measurement itself (builds of sbc and the helpers come before it and are not counted).
    let wall = json["wall_secs"].as_f64().unwrap_or(f64::MAX);
    assert!(wall < 40.0, "the measurement took {wall:.1} s");
    std::fs::remove_dir_all(&dir).expect("scratch removed");
}

#[test]
fn ten_calls_with_media_sipp_to_sipp_on_loopback_without_root() {
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = scratch("direct");
    // Addresses of its own on loopback: the SIP, RTP and SIPp media ports are fixed, and other runs on this host
    // may use 127.0.0.1.
    let args = ["--target", "direct", "--uac-ip", "127.0.77.1", "--uas", "127.0.77.2:5070"];
    let (json, _) =
        concurrent(&dir, &[&args[..], &["--calls", "10", "--rate", "20", "--hold-secs", "3", "--runs", "1"]].concat());
    assert_calls_and_media(&json, "direct", 10);
    assert!(json["measurements"][0]["sbc_cpu_pct"].is_null(), "no sbc, no CPU figure");
    assert_eq!(json["here"]["uas"], "127.0.77.2:5070");
    std::fs::remove_dir_all(&dir).expect("scratch removed");
}
