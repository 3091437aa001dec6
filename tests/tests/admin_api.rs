//! `sbcctl` against a running SBC in the single-SBC topology, with real calls up: SIPp callers (answered, waiting for
//! the far end to hang up) at 198.18.1.10 and a SIPp carrier b at 198.18.2.10 that waits for a BYE too. The SBC's
//! admin API listens on 127.0.0.1:8080 inside its namespace, where `sbcctl` runs; off loopback it wants a token.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};
use tests::netns::{addr, sbc_config, Host, Topology, CALLER, CARRIER_B, SBC_A, SBC_B};
use tests::sipp::{Running, Sipp};
use tests::Sbc;

const LIMIT: Duration = Duration::from_secs(40);
const CALLS: u32 = 3;

/// `sbcctl ARGS` inside namespace `ns`, its output.
fn sbcctl(ns: &str, args: &[&str]) -> Output {
    let bin = tests::sbcctl_binary().expect("sbcctl builds");
    tests::netns::command(Some(ns), bin)
        .args(args)
        .env_remove("SBC_API")
        .env_remove("SBC_API_TOKEN")
        .output()
        .expect("sbcctl runs")
}

/// `sbcctl ARGS` that must succeed: its standard output.
fn ok(ns: &str, args: &[&str]) -> String {
    let out = sbcctl(ns, args);
    assert!(out.status.success(), "sbcctl {args:?}: {:?}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

/// `sbcctl --json ARGS`, parsed.
fn json(ns: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(ns, &all)).expect("sbcctl --json prints JSON")
}

/// Polls `sbcctl --json calls` until `n` calls are answered (at most 15 s).
fn wait_answered(ns: &str, n: usize) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = json(ns, &["calls", "--state", "answered"]);
        if v["count"].as_u64() == Some(n as u64) || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits up to 5 s for `text` to show in SIPp's message trace.
fn wait_trace(run: &Running, text: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if run.messages().contains(text) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// The single-SBC config with anchored media (user space only) and a CDR file.
fn config(cdr: &Path, api: &str) -> String {
    let mut c = sbc_config("", "", "", true, Some(cdr)).replace("listen = \"127.0.0.1:8080\"", api);
    c.push_str(&format!(
        "\n[media]\ninterfaces = [{{ name = \"a\", address = \"{SBC_A}\" }}, {{ name = \"b\", address = \"{SBC_B}\" }}]\nports = \"30000-30999\"\nxdp = \"off\"\n"
    ));
    c
}

#[test]
fn sbcctl_lists_shows_and_hangs_up_calls_and_its_route_lookup_names_their_trunk() {
    let topo = Topology::single_sbc().expect("topology");
    let cdr: PathBuf = topo.dir().join("cdr.jsonl");
    let ns = topo.ns(Host::Sbc);
    let mut sbc = Sbc::start_in(
        &ns,
        "admin-api",
        &config(&cdr, "listen = \"127.0.0.1:8080\""),
        addr(SBC_A, 5060),
        addr([127, 0, 0, 1].into(), 8080),
    )
    .expect("sbc starts");
    let mut carrier = Sipp::new("uas_answer.xml")
        .netns(&topo.ns(Host::B))
        .local_ip(CARRIER_B)
        .local_port(5060)
        .calls(CALLS)
        .limit(LIMIT)
        .trace_messages(true)
        .spawn()
        .expect("carrier starts");
    carrier.wait_listening(Some(&topo.ns(Host::B)), 5060, Duration::from_secs(5)).expect("carrier listens");
    let caller = Sipp::new("uac_call_remote_bye.xml")
        .netns(&topo.ns(Host::A))
        .local_ip(CALLER)
        .local_port(5060)
        .target(addr(SBC_A, 5060))
        .service("+4930123456")
        .calls(CALLS)
        .rate(10)
        .limit(LIMIT)
        .trace_messages(true)
        .spawn()
        .expect("caller starts");

    // Listed: every call, answered, from the PBX to carrier b; the filters narrow the list.
    let listed = wait_answered(&ns, CALLS as usize);
    assert_eq!(listed["count"], CALLS, "{listed}");
    let table = ok(&ns, &["calls"]);
    let rows: Vec<&str> = table.lines().filter(|l| l.contains("answered")).collect();
    assert_eq!(rows.len(), CALLS as usize, "{table}");
    assert!(rows.iter().all(|r| r.contains("customer-pbx") && r.contains("carrier-b")), "{table}");
    assert!(table.ends_with(&format!("{CALLS} calls\n")), "{table}");
    assert_eq!(json(&ns, &["calls", "--trunk", "carrier-b"])["count"], CALLS);
    assert_eq!(json(&ns, &["calls", "--trunk", "carrier-c"])["count"], 0);
    assert_eq!(json(&ns, &["calls", "--number", "+4930"])["count"], CALLS);
    assert_eq!(json(&ns, &["calls", "--state", "setup"])["count"], 0);

    // One call in full: both legs, and the relay's figures for it.
    let first = &listed["calls"][0];
    let id = first["id"].as_u64().expect("id").to_string();
    let a_call_id = first["a_call_id"].as_str().expect("a_call_id").to_owned();
    let b_call_id = first["b_call_id"].as_str().expect("b_call_id").to_owned();
    let shown = ok(&ns, &["call", &id]);
    let (caller_at, carrier_at) = (format!("{CALLER}:5060"), format!("{CARRIER_B}:5060"));
    for needle in [a_call_id.as_str(), b_call_id.as_str(), caller_at.as_str(), carrier_at.as_str(), "carrier-b"] {
        assert!(shown.contains(needle), "{needle} missing from:\n{shown}");
    }
    let detail = json(&ns, &["call", &id]);
    assert_eq!(detail["legs"]["a"]["call_id"], a_call_id.as_str());
    assert_eq!(detail["legs"]["b"]["remote"], format!("{CARRIER_B}:5060"));
    assert!(detail["media"]["a"]["received"]["packets"].is_u64(), "the relay's figures: {detail}");
    assert!(detail["media"]["b"]["sent"].is_u64(), "{detail}");

    // Route lookup: the trunk the calls went to comes first.
    let route = json(&ns, &["route", "+4930123456"]);
    assert_eq!(route["order"][0]["trunk"], "carrier-b", "{route}");
    assert_eq!(route["order"][1]["trunk"], "carrier-c", "{route}");
    assert!(ok(&ns, &["route", "+4930123456"]).lines().nth(2).is_some_and(|l| l.starts_with("1    carrier-b")));

    // Hang one up: a BYE reaches both SIPp sides, the CDR says admin, two calls stay.
    let said = ok(&ns, &["hangup", &id]);
    assert!(said.contains("ending: true"), "{said}");
    assert!(wait_trace(&caller, "BYE sip:"), "the caller got no BYE");
    assert!(
        caller.messages().split("BYE sip:").skip(1).any(|m| m.contains(&a_call_id)),
        "the caller's BYE is for call {a_call_id}"
    );
    assert!(wait_trace(&carrier, "BYE sip:"), "carrier b got no BYE");
    assert!(
        carrier.messages().split("BYE sip:").skip(1).any(|m| m.contains(&b_call_id)),
        "carrier's BYE is for {b_call_id}"
    );
    let cdrs = tests::wait_cdrs(&[&cdr], 1, Duration::from_secs(5));
    assert_eq!(cdrs.len(), 1, "{cdrs:?}");
    assert_eq!((cdrs[0]["release_cause"].as_str(), cdrs[0]["released_by"].as_str()), (Some("admin"), Some("sbc")));
    assert_eq!(cdrs[0]["a_call_id"], a_call_id.as_str());
    assert_eq!(cdrs[0]["trunk_out"], route["order"][0]["trunk"], "the lookup named the trunk the call used");
    assert_eq!(json(&ns, &["calls"])["count"], CALLS - 1);
    let again = sbcctl(&ns, &["hangup", &id]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains(&format!("no call {id} (HTTP 404)")), "{again:?}");

    // The rest too, so both SIPp runs finish: every call ended by a BYE on both sides.
    for c in json(&ns, &["calls"])["calls"].as_array().expect("calls") {
        ok(&ns, &["hangup", &c["id"].as_u64().expect("id").to_string()]);
    }
    caller.wait().expect("caller finishes").assert_all_successful(u64::from(CALLS)).expect("caller side");
    carrier.wait().expect("carrier finishes").assert_all_successful(u64::from(CALLS)).expect("carrier side");
    let cdrs = tests::wait_cdrs(&[&cdr], CALLS as usize, Duration::from_secs(5));
    assert_eq!(cdrs.iter().filter(|c| c["release_cause"] == "admin").count(), CALLS as usize, "{cdrs:?}");

    // A stopped SBC: one clear line, exit code 2.
    assert!(sbc.terminate(Duration::from_secs(10)).expect("sbc stops"), "sbc exits 0");
    let out = sbcctl(&ns, &["calls"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "sbcctl: no SBC answers at http://127.0.0.1:8080 (connection refused)\n"
    );
}

#[test]
fn api_off_loopback_answers_401_without_the_bearer_token() {
    let topo = Topology::single_sbc().expect("topology");
    let cdr = topo.dir().join("cdr.jsonl");
    let token_file = topo.dir().join("api-token");
    std::fs::write(&token_file, "t0k3n-for-the-test\n").expect("token file");
    let api = format!("listen = \"{SBC_A}:8080\"\ntoken_file = \"{}\"", token_file.display());
    let sbc_ns = topo.ns(Host::Sbc);
    let sbc = Sbc::start_in(&sbc_ns, "admin-api-token", &config(&cdr, &api), addr(SBC_A, 5060), addr(SBC_A, 8080))
        .expect("sbc starts (its /health needs no token)");
    // From the caller's side of the network, as a stranger would.
    let stranger = topo.ns(Host::A);
    let url = format!("http://{SBC_A}:8080");
    let out = sbcctl(&stranger, &["--api", &url, "calls"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs Authorization: Bearer TOKEN") && err.ends_with("(HTTP 401)\n"), "{err}");
    let out = sbcctl(&stranger, &["--api", &url, "--token", "guess", "trunk", "disable", "carrier-b"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong bearer token (HTTP 401)"), "{out:?}");
    // Nothing changed by the refused request; with the token it all works.
    let trunks = json(&stranger, &["--api", &url, "--token", "t0k3n-for-the-test", "trunks"]);
    assert_eq!(trunks["trunks"][1]["name"], "carrier-b");
    assert_eq!(trunks["trunks"][1]["disabled_by_admin"], false, "{trunks}");
    let log = std::fs::read_to_string(&sbc.log).expect("log");
    assert!(!log.contains("t0k3n-for-the-test"), "the token never reaches the log");
}
