//! `sbc-bench overload` end to end, with the built binary, against a debug build of our `sbc` in the netns topology
//! (root): offered three times the new calls that build takes, it answers 503s, still completes the calls it accepts,
//! and comes back by itself (a normal-rate step afterwards has no 503s).

use serde_json::Value;
use std::process::Command;
use std::time::Instant;

#[test]
fn debug_sbc_offered_three_times_what_it_takes_answers_503_completes_accepted_calls_and_recovers() {
    // Root for the namespaces: without it this fails (as every netns test does), it never passes unmeasured.
    tests::netns::require_netns();
    // The debug build takes about 2000 calls per second on one core (96 % of it at 2000/s here): 6000/s is well
    // past it, and within what SIPp offers on the other core.
    let sbc = tests::sbc_binary().expect("the debug sbc builds");
    let dir = std::env::temp_dir().join(format!("sbc-bench-overload-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let out = dir.join("overload.json");
    let started = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_sbc-bench"))
        .args(["overload", "--target", &format!("local:{}", sbc.display())])
        .args(["--ceiling", "2000", "--factors", "0.05,3", "--recovery-factor", "0.05"])
        .args(["--step-secs", "2", "--runs", "1"])
        .arg("--out")
        .arg(&out)
        .current_dir(tests::repo_root())
        .output()
        .expect("sbc-bench runs");
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "sbc-bench overload failed:\n{stdout}\n{stderr}");
    eprintln!("sbc-bench overload took {:?}\n{stdout}\n{stderr}", started.elapsed());
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&out).expect("JSON written")).expect("JSON");
    let steps = json["outcome"]["series"][0]["steps"].as_array().expect("steps").clone();
    assert_eq!(steps.len(), 3, "0.05x, 3x, recovery: {steps:#?}");
    for s in &steps {
        assert!(s["error"].is_null(), "measured: {s:#}");
    }
    let (normal, over, recovery) = (&steps[0], &steps[1], &steps[2]);
    let n = |s: &Value, k: &str| s[k].as_f64().unwrap_or_else(|| panic!("{k} in {s:#}"));

    // 0.05x: 200 calls at 100/s, all accepted, none refused.
    assert_eq!((n(normal, "rate"), n(normal, "calls")), (100.0, 200.0), "{normal:#}");
    assert_eq!((n(normal, "accepted"), n(normal, "refused"), n(normal, "failed")), (200.0, 0.0, 0.0), "{normal:#}");

    // 3x: 12 000 calls at 6000/s. Overload control answers 503s (the sbc counted them too), and the calls it took
    // were completed; goodput and 503s add up with the failures to what was placed.
    assert_eq!((n(over, "rate"), n(over, "calls")), (6000.0, 12000.0), "{over:#}");
    let (accepted, refused, failed) = (n(over, "accepted"), n(over, "refused"), n(over, "failed"));
    assert!(refused >= 100.0, "503s answered under overload: {over:#}");
    assert!(accepted >= 100.0, "accepted calls still complete under overload: {over:#}");
    assert_eq!(accepted + refused + failed, 12000.0, "{over:#}");
    assert!(n(over, "sbc_overload_rejected") >= refused, "the sbc counted its 503s: {over:#}");
    assert!(n(over, "admission_min") < 1.0, "admission was cut: {over:#}");
    assert!(n(over, "pdd_samples") >= accepted, "a post-dial delay per accepted call: {over:#}");

    // Recovery: 3 s after the overload, 200 calls at 100/s: no 503, every call accepted.
    assert_eq!(recovery["recovery"], true, "{recovery:#}");
    assert_eq!(n(recovery, "refused"), 0.0, "recovered by itself: {recovery:#}");
    assert_eq!((n(recovery, "accepted"), n(recovery, "failed")), (200.0, 0.0), "{recovery:#}");

    let summary = &json["summary"]["targets"][0];
    assert_eq!(summary["recovery_refused_cps"], 0.0, "{summary:#}");
    assert!(stdout.contains("goodput/s") && stdout.contains("recovered by itself"), "{stdout}");
    let svg = std::fs::read_to_string(out.with_extension("svg")).expect("plot written");
    assert!(svg.starts_with("<svg") && svg.contains("goodput") && svg.contains("post-dial delay"), "{svg:.300}");
    std::fs::remove_dir_all(&dir).expect("scratch removed");
}
