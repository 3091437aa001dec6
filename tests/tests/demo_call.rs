//! The README's first steps: `make run` (the `sbc` with the repository's config/sbc.toml, unchanged) and then
//! `make call` (scripts/demo-call) complete a call with RTP both ways, and its CDR is where the script says.
//!
//! Both run in a namespace of their own with only a loopback, so that the demo's fixed ports (SIP 5060, API 8080,
//! SIPp 5070 and 5080) meet neither other tests nor a `make run` on this host.

use std::path::PathBuf;
use std::time::Duration;
use tests::netns::{self, Host, Topology};

/// Packets in SIPp's G.711 capture (/usr/share/sip-tester/g711a.pcap), which the demo caller plays once.
const CAPTURE_PACKETS: u64 = 236;

#[test]
fn make_call_completes_a_call_with_rtp_both_ways_through_the_default_config() {
    tests::require_tool("sipp", "sip-tester");
    tests::require_tool("ss", "iproute2");
    let root = tests::repo_root().canonicalize().expect("repository root");
    let config = root.join("config/sbc.toml");
    let cdr_file = root.join("target/demo/cdr.jsonl");
    let topo = Topology::loopback_only().expect("namespace");
    let ns = topo.ns(Host::Sbc);
    let sbc_bin = tests::sbc_binary().expect("sbc builds");
    let mut sbc =
        topo.spawn(Host::Sbc, "sbc", &sbc_bin, &[PathBuf::from("--config"), config.clone()]).expect("sbc starts");

    // The script waits for the SBC's admin API itself (a `make run` may still be starting).
    let script = root.join("scripts/demo-call");
    let output = std::process::Command::new("timeout")
        .arg("60")
        .args(["ip", "netns", "exec", &ns])
        .arg(&script)
        .env("WAIT_SECS", "20")
        .output()
        .expect("running scripts/demo-call");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "scripts/demo-call failed ({}):\n{stdout}\n{stderr}\n{}",
        output.status,
        sbc.output_tail()
    );
    assert!(stdout.contains("OK: RTP crossed both ways"), "{stdout}");
    assert!(stdout.contains(&format!("CDR: {}", cdr_file.display())), "the script names the CDR file: {stdout}");
    let call_id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Call-ID ")?.split(':').next())
        .unwrap_or_else(|| panic!("the script names the call: {stdout}"))
        .to_owned();

    let cdrs = tests::read_cdrs(&[&cdr_file]);
    let cdr = cdrs
        .iter()
        .find(|c| c["a_call_id"] == call_id.as_str())
        .unwrap_or_else(|| panic!("no CDR for {call_id} in {}", cdr_file.display()));
    assert_eq!(cdr["status"], 200, "{cdr}");
    assert_eq!(cdr["trunk_in"], "demo-caller", "{cdr}");
    assert_eq!(cdr["trunk_out"], "demo-carrier", "{cdr}");
    assert_eq!(cdr["release_cause"], "bye", "{cdr}");
    assert_eq!(cdr["released_by"], "a", "{cdr}");
    let media = &cdr["media"];
    let figure = |leg: &str, path: &[&str]| -> u64 {
        let mut v = &media[leg];
        for key in path {
            v = &v[*key];
        }
        v.as_u64().unwrap_or_else(|| panic!("media.{leg}.{} is no number: {cdr}", path.join(".")))
    };
    // Loopback loses nothing: the whole capture reaches the carrier, and its whole echo the caller.
    assert_eq!(figure("a", &["received", "packets"]), CAPTURE_PACKETS, "caller -> SBC: {cdr}");
    assert_eq!(figure("b", &["sent"]), CAPTURE_PACKETS, "SBC -> carrier: {cdr}");
    assert_eq!(figure("b", &["received", "packets"]), CAPTURE_PACKETS, "carrier's echo -> SBC: {cdr}");
    assert_eq!(figure("a", &["sent"]), CAPTURE_PACKETS, "SBC -> caller: {cdr}");
    assert_eq!(figure("a", &["received", "lost"]), 0, "{cdr}");
    assert_eq!(figure("b", &["received", "lost"]), 0, "{cdr}");

    // The SBC's own counters agree: one call in from the caller, one answered by the carrier.
    let probe = tests::netprobe_binary().expect("netprobe");
    let metrics = netns::run(netns::command(Some(&ns), probe).args(["http-get", "127.0.0.1:8080", "/metrics"]))
        .expect("GET /metrics");
    let sample = |prefix: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(sample("sbc_calls_in_total{trunk=\"demo-caller\""), 1.0, "{metrics}");
    assert_eq!(sample("sbc_calls_answered_total{trunk=\"demo-carrier\""), 1.0, "{metrics}");
    // The call-end figures the dashboard's ACD and loss panels read.
    assert_eq!(sample("sbc_call_duration_seconds_count{trunk=\"demo-carrier\""), 1.0, "{metrics}");
    let seconds = sample("sbc_call_duration_seconds_sum{trunk=\"demo-carrier\"");
    assert!((7.5..12.0).contains(&seconds), "an 8 s call lasted {seconds} s: {metrics}");
    for trunk in ["demo-caller", "demo-carrier"] {
        let expected = sample(&format!("sbc_media_expected_packets_total{{trunk=\"{trunk}\""));
        assert_eq!(expected, CAPTURE_PACKETS as f64, "{trunk}: {metrics}");
        assert_eq!(sample(&format!("sbc_media_lost_packets_total{{trunk=\"{trunk}\"")), 0.0, "{trunk}: {metrics}");
    }

    let status = sbc.terminate(Duration::from_secs(10)).expect("sbc stops");
    assert!(status.success(), "sbc exited with {status}: {}", sbc.output_tail());
}
