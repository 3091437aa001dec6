//! `sbc-bench cps` as an operator runs it against an SBC by address: our `sbc` on loopback (no root needed), next
//! to SIPp direct; and the guard that refuses anything outside loopback.

use serde_json::Value;
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use tests::{free_port, Sbc};

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sbc-bench")).args(args).output().expect("sbc-bench runs")
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sbc-bench-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[test]
fn refuses_targets_outside_loopback_before_sending_anything() {
    let dir = scratch("guard");
    let out = dir.join("cps.json");
    let out = out.to_str().unwrap();
    for (args, named) in [
        (vec!["cps", "--target", "192.0.2.1:5060", "--out", out], "192.0.2.1"),
        (vec!["cps", "--target", "198.18.1.1:5060", "--no-compare", "--out", out], "198.18.1.1"),
        (vec!["cps", "--target", "127.0.0.1:5060", "--uas", "192.0.2.9:5070", "--out", out], "192.0.2.9"),
        (vec!["cps", "--target", "direct", "--uac-ip", "10.1.2.3", "--no-compare", "--out", out], "10.1.2.3"),
    ] {
        let started = Instant::now();
        let o = bench(&args);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} was accepted");
        assert!(stderr.contains("--allow-remote") && stderr.contains(named), "{args:?}: {stderr}");
        assert!(started.elapsed() < Duration::from_secs(10), "{args:?} took {:?}", started.elapsed());
    }
    assert!(!dir.join("cps.json").exists(), "a refused run wrote results");
    // Names are not resolved: what is checked is what would be loaded.
    let o = bench(&["cps", "--target", "sbc.example.net:5060"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("names are not resolved"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn ladder_against_an_sbc_by_address_next_to_sipp_direct() {
    let uas_port = free_port();
    let uac_port = free_port();
    let sbc = Sbc::start(
        "bench-cps-remote",
        &format!(
            r#"
[[trunk]]
name = "bench-caller"
match = {{ source = ["127.0.0.1/32"] }}

[[trunk]]
name = "bench-callee"
gateways = ["udp:127.0.0.1:{uas_port}"]

[[route]]
prefix = ""
to = [{{ trunk = "bench-callee", priority = 1 }}]
"#
        ),
    )
    .expect("sbc starts");
    let dir = scratch("remote");
    let out = dir.join("cps.json");
    let target = sbc.sip.to_string();
    let o = bench(&[
        "cps",
        "--target",
        &target,
        "--compare",
        "direct",
        "--runs",
        "1",
        "--step-secs",
        "2",
        "--rates",
        "20,50",
        "--uac-port",
        &uac_port.to_string(),
        "--uas",
        &format!("127.0.0.1:{uas_port}"),
        "--out",
        out.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "sbc-bench failed:\n{stdout}\n{stderr}\nsbc log:\n{}", sbc.log_tail());
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&out).expect("json written")).expect("json");
    let ladders = json["ladders"].as_array().expect("ladders");
    assert_eq!(ladders.len(), 2, "{json:#}");
    for (ladder, name) in ladders.iter().zip([target.as_str(), "direct"]) {
        assert_eq!(ladder["target"], name);
        let steps = ladder["steps"].as_array().unwrap();
        assert_eq!(steps.len(), 2, "{ladder:#}");
        for (step, calls) in steps.iter().zip([40, 100]) {
            assert_eq!(step["successful"], calls, "{step:#}");
            assert_eq!(step["pass"], true, "{step:#}");
            assert_eq!(step["samples"], calls, "a post-dial delay per call: {step:#}");
        }
        assert_eq!(ladder["ceiling"], 50);
    }
    assert_eq!(json["summary"]["reference_rate"], 50);
    assert_eq!(json["summary"]["ratio_ceiling"], 1.0);
    assert!(stdout.contains(&format!("{target}/direct")), "{stdout}");
    let svg = std::fs::read_to_string(out.with_extension("svg")).expect("plot written");
    assert!(svg.starts_with("<svg") && svg.contains("post-dial delay") && svg.contains("direct p99"), "{svg:.300}");
    let _ = std::fs::remove_dir_all(dir);
}

/// The `kamailio-rtpengine` target end to end: the harness starts Kamailio, rtpengine and Redis in its namespaces
/// (root, `make deps`), every call completes through them, and their CPU per call is measured.
#[test]
fn kamailio_rtpengine_started_by_the_harness_completes_every_call() {
    let dir = scratch("kamailio");
    let out = dir.join("cps.json");
    let o = bench(&[
        "cps",
        "--target",
        "kamailio-rtpengine",
        "--no-compare",
        "--runs",
        "1",
        "--step-secs",
        "2",
        "--rates",
        "20,50",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "sbc-bench failed (needs root and `make deps`):\n{stdout}\n{stderr}");
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&out).expect("json written")).expect("json");
    let ladder = &json["ladders"][0];
    assert_eq!(ladder["target"], "kamailio-rtpengine");
    let steps = ladder["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 2, "{ladder:#}");
    for (step, calls) in steps.iter().zip([40, 100]) {
        assert_eq!(step["successful"], calls, "{step:#}");
        assert_eq!(step["pass"], true, "{step:#}");
        // Kamailio, rtpengine and Redis together: some CPU per call, and less than a whole step's worth.
        let cpu = step["cpu_ms_per_call"].as_f64().expect("CPU per call measured");
        assert!(cpu > 0.0 && cpu < 2000.0 / f64::from(calls), "{step:#}");
        // Pinned (root, 2 cores): the rig's share of its core while the load was offered, and how busy that core
        // was in all; the rig is on it, so the core was at least about as busy (clock ticks of 10 ms apart).
        let share = step["sbc_cpu_pct"].as_f64().expect("the rig's CPU share");
        let core = step["core_busy_pct"].as_f64().expect("the target core's busy share");
        assert!(share > 0.0 && core <= 101.0 && share <= core + 10.0, "{step:#}");
    }
    assert_eq!(ladder["ceiling"], 50);
    assert!(json["summary"]["targets"][0]["reference_cpu_ms_per_call"].as_f64().is_some_and(|c| c > 0.0), "{json:#}");
    assert!(stdout.contains("cpu ms/call @50/s"), "{stdout}");
    let _ = std::fs::remove_dir_all(dir);
}
