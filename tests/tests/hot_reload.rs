//! Hot reload under load: a SIPp caller at 100 calls/s for 60 s (calls of 3 s) through the SBC to SIPp carriers, in
//! the single-SBC topology. At 20 s the config file is rewritten with carrier-b removed, carrier-c changed and
//! carrier-d added (a second UAS in carrier b's namespace, port 5062), then SIGHUP; at 40 s carrier-d is changed
//! and the reload goes through `POST /config/reload`. No call may fail; the removed trunk's calls end normally; new
//! calls reach the added trunk. Then broken files (a syntax error, a semantic error) are refused with FILE:LINE in
//! the API answer and the log, and the running version stays.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tests::netns::{addr, Host, Topology, CALLER, CARRIER_B, CARRIER_C, SBC_A, SBC_B};
use tests::sipp::{Running, Sipp};
use tests::Sbc;

const RATE: u32 = 100;
const SECONDS: u32 = 60;
const CALLS: u32 = RATE * SECONDS;
const HOLD: Duration = Duration::from_secs(3);
/// Carrier d: a second UAS in carrier b's namespace.
const D_PORT: u16 = 5062;

/// The config with `trunks` (TOML of the carrier trunks) and a catch-all route to `route` (TOML list items).
fn config(cdr: &Path, trunks: &str, route: &str) -> String {
    format!(
        r#"[sip]
listen = ["udp:{SBC_A}:5060", "udp:{SBC_B}:5060"]

[api]
listen = "127.0.0.1:8080"

[log]
level = "info"

[cdr]
path = "{}"

[calls]
max_post_dial = "20s"

[[trunk]]
name = "customer-pbx"
match = {{ source = ["{CALLER}/32"] }}
{trunks}
[[route]]
prefix = ""
to = [{route}]
"#,
        cdr.display()
    )
}

fn carrier(name: &str, gw: &str, extra: &str) -> String {
    format!("\n[[trunk]]\nname = \"{name}\"\ngateways = [\"udp:{gw}\"]\n{extra}\n")
}

fn first(cdr: &Path) -> String {
    let trunks = carrier("carrier-b", &format!("{CARRIER_B}:5060"), "")
        + &carrier("carrier-c", &format!("{CARRIER_C}:5060"), "");
    config(cdr, &trunks, r#"{ trunk = "carrier-b", weight = 50 }, { trunk = "carrier-c", weight = 50 }"#)
}

fn second(cdr: &Path, d_limits: &str) -> String {
    let trunks = carrier("carrier-c", &format!("{CARRIER_C}:5060"), "limits = { calls = 5000 }")
        + &carrier("carrier-d", &format!("{CARRIER_B}:{D_PORT}"), d_limits);
    config(cdr, &trunks, r#"{ trunk = "carrier-c", weight = 50 }, { trunk = "carrier-d", weight = 50 }"#)
}

fn uas(topo: &Topology, host: Host, ip: std::net::Ipv4Addr, port: u16) -> Running {
    let ns = topo.ns(host);
    let mut r = Sipp::new("uas_answer.xml")
        .netns(&ns)
        .local_ip(ip)
        .local_port(port)
        .calls(CALLS)
        .limit(Duration::from_secs(u64::from(SECONDS) + 60))
        .spawn()
        .expect("uas starts");
    r.wait_listening(Some(&ns), port, Duration::from_secs(5)).expect("uas listens");
    r
}

/// `POST path` on the SBC's API from inside its namespace: (HTTP status, body).
fn post(topo: &Topology, path: &str) -> (u16, String) {
    post_body(topo, path, "")
}

fn post_body(topo: &Topology, path: &str, body: &str) -> (u16, String) {
    let out = tests::netns::command(Some(&topo.ns(Host::Sbc)), tests::require_tool("curl", "curl"))
        .args(["-s", "-m", "10", "-X", "POST", "-w", "\n%{http_code}", &format!("http://127.0.0.1:8080{path}")])
        .args(if body.is_empty() { vec![] } else { vec!["-d", body] })
        .stdin(Stdio::null())
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

fn version(sbc: &Sbc) -> String {
    let v: serde_json::Value = serde_json::from_str(&sbc.http_get("/config").expect("GET /config")).expect("json");
    v["version"].as_str().expect("version").to_owned()
}

fn sighup(sbc: &Sbc) {
    let ok = std::process::Command::new("kill").args(["-HUP", &sbc.id().to_string()]).status().expect("kill");
    assert!(ok.success(), "SIGHUP sent");
}

fn wait_until(deadline: Instant) {
    if let Some(left) = deadline.checked_duration_since(Instant::now()) {
        std::thread::sleep(left);
    }
}

/// Polls the log until `needle` shows up `n` times (5 s at most).
fn wait_log(sbc: &Sbc, needle: &str, n: usize) -> String {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let log = std::fs::read_to_string(&sbc.log).unwrap_or_default();
        if log.matches(needle).count() >= n || Instant::now() > until {
            return log;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn reload_under_100_cps_adds_changes_and_removes_trunks_without_failing_a_call() {
    let topo = Topology::single_sbc().expect("topology");
    let cdr = topo.dir().join("cdr.jsonl");
    let mut sbc = Sbc::start_in(
        &topo.ns(Host::Sbc),
        "hot-reload",
        &first(&cdr),
        addr(SBC_A, 5060),
        addr([127, 0, 0, 1].into(), 8080),
    )
    .expect("sbc starts");
    let file = sbc.dir().join("sbc.toml");
    let v1 = version(&sbc);
    let (b, c, d) = (
        uas(&topo, Host::B, CARRIER_B, 5060),
        uas(&topo, Host::C, CARRIER_C, 5060),
        uas(&topo, Host::B, CARRIER_B, D_PORT),
    );
    let start = Instant::now();
    let caller = Sipp::new("uac_call.xml")
        .netns(&topo.ns(Host::A))
        .local_ip(CALLER)
        .local_port(5060)
        .target(addr(SBC_A, 5060))
        .service("+4930123456")
        .calls(CALLS)
        .rate(RATE)
        .pause(HOLD)
        .limit(Duration::from_secs(u64::from(SECONDS) + 60))
        .spawn()
        .expect("caller starts");

    // 20 s in: carrier-b removed, carrier-c changed, carrier-d added; SIGHUP.
    wait_until(start + Duration::from_secs(20));
    tests::write_atomically(&file, &second(&cdr, "")).expect("rewrite");
    sighup(&sbc);
    let log = wait_log(&sbc, "configuration reloaded", 1);
    assert!(log.contains("trunk \\\"carrier-b\\\" removed") || log.contains("trunk \"carrier-b\" removed"), "{log}");
    let v2 = version(&sbc);
    assert_ne!(v1, v2, "the SIGHUP reload is the running version");

    // 40 s in: carrier-d changed, through the API.
    wait_until(start + Duration::from_secs(40));
    tests::write_atomically(&file, &second(&cdr, "limits = { calls = 4000 }")).expect("rewrite");
    let (status, body) = post(&topo, "/config/reload");
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(answer["changes"][0], "trunk \"carrier-d\" changed (new calls only)", "{body}");
    let v3 = version(&sbc);
    assert_eq!(answer["version"], v3.as_str());
    // About RATE x HOLD calls are up at any time: the reload happened under them.
    let kept = answer["calls_kept"].as_u64().expect("calls_kept");
    assert!(kept >= 100, "calls in progress at the API reload: {kept}");

    let uac = caller.wait().expect("caller finishes");
    let elapsed = start.elapsed();
    // The carriers have taken every call they will get: stop them and read their counts.
    let mut carriers = Vec::new();
    for (name, r) in [("b", b), ("c", c), ("d", d)] {
        r.signal("TERM");
        let run = r.wait().expect("uas stops");
        carriers.push((name, run.count("SuccessfulCall(C)"), run.count("FailedCall(C)")));
    }
    eprintln!(
        "caller: {} successful, {} failed of {CALLS} in {elapsed:?}; carriers (name, ok, failed): {carriers:?}",
        uac.count("SuccessfulCall(C)"),
        uac.count("FailedCall(C)")
    );
    let log = std::fs::read_to_string(&sbc.log).unwrap_or_default();
    for l in log.lines().filter(|l| l.contains("configuration reloaded")) {
        eprintln!("{l}");
    }
    uac.assert_all_successful(u64::from(CALLS)).expect("no call failed across the reloads");
    let answered: u64 = carriers.iter().map(|c| c.1).sum();
    assert_eq!(answered, u64::from(CALLS), "every call answered by one carrier: {carriers:?}");
    assert!(carriers.iter().all(|c| c.2 == 0), "no failed call at a carrier: {carriers:?}");

    let cdrs = tests::wait_cdrs(&[&cdr], CALLS as usize, Duration::from_secs(10));
    assert_eq!(cdrs.len(), CALLS as usize, "one CDR per call");
    let on = |t: &str| cdrs.iter().filter(|c| c["trunk_out"] == t).collect::<Vec<_>>();
    let (on_b, on_d) = (on("carrier-b"), on("carrier-d"));
    // Before the first reload about half of 20 s of calls went to b (weights 50/50).
    assert!(on_b.len() > 500, "calls on carrier-b before it was removed: {}", on_b.len());
    assert!(
        on_b.iter().all(|c| c["status"] == 200 && c["release_cause"] == "bye"),
        "every call on the removed trunk ended normally (200, BYE)"
    );
    assert!(on_d.len() > 500, "new calls reach the added trunk: {}", on_d.len());
    assert_eq!(carriers[0].1 + carriers[2].1, (on_b.len() + on_d.len()) as u64, "b's and d's UAS counts match CDRs");

    // Broken files change nothing: a syntax error, then a semantic error, each named by FILE:LINE.
    let good = second(&cdr, "limits = { calls = 4000 }");
    let syntax = good.replace("[[route]]", "[[route]\n");
    tests::write_atomically(&file, &syntax).expect("rewrite");
    let (status, body) = post(&topo, "/config/reload");
    assert_eq!(status, 422, "{body}");
    let line = syntax.lines().position(|l| l.starts_with("[[route]")).expect("route line") + 1;
    assert!(body.contains(&format!("{}:{line}:", file.display())), "syntax error at line {line}: {body}");
    let semantic = good.replace("{ trunk = \"carrier-d\", weight = 50 }", "{ trunk = \"carrier-x\", weight = 50 }");
    tests::write_atomically(&file, &semantic).expect("rewrite");
    let (status, body) = post(&topo, "/config/reload");
    assert_eq!(status, 422, "{body}");
    let line = semantic.lines().position(|l| l.contains("carrier-x")).expect("route line") + 1;
    assert!(body.contains(&format!("{}:{line}: route[0].to[1].trunk", file.display())), "{body}");
    // The same on SIGHUP: refused, logged with FILE:LINE.
    sighup(&sbc);
    let log = wait_log(&sbc, "configuration reload refused", 3);
    assert!(log.matches("configuration reload refused").count() >= 3, "{log}");
    assert!(log.contains(&format!("{}:{line}: route[0].to[1].trunk", file.display())), "{log}");
    assert_eq!(version(&sbc), v3, "the running version is unchanged");
    assert_eq!(sbc.metric("sbc_config_reloads_total{result=\"ok\"}").expect("metric"), 2.0);
    assert_eq!(sbc.metric("sbc_config_reloads_total{result=\"invalid\"}").expect("metric"), 3.0);
    assert!(sbc.terminate(Duration::from_secs(10)).expect("terminates"), "sbc stops cleanly");
}

/// The UDP ports bound in the SBC's namespace (`ss -uln`).
fn udp_ports(topo: &Topology) -> Vec<u16> {
    let out = tests::netns::run(tests::netns::command(Some(&topo.ns(Host::Sbc)), "ss").args(["-H", "-uln"]))
        .expect("ss runs");
    out.lines().filter_map(|l| l.split_whitespace().nth(3)?.rsplit_once(':')?.1.parse().ok()).collect()
}

fn calls_to(topo: &Topology, port: u16, calls: u32) -> tests::sipp::Run {
    Sipp::new("uac_call.xml")
        .netns(&topo.ns(Host::A))
        .local_ip(CALLER)
        .local_port(5070)
        .target(addr(SBC_A, port))
        .service("+4930123456")
        .calls(calls)
        .rate(10)
        .limit(Duration::from_secs(30))
        .run()
        .expect("caller runs")
}

#[test]
fn reload_adds_and_removes_a_listener_and_validate_checks_another_file() {
    let topo = Topology::single_sbc().expect("topology");
    let cdr = topo.dir().join("cdr.jsonl");
    let one = first(&cdr);
    let sbc =
        Sbc::start_in(&topo.ns(Host::Sbc), "reload-listen", &one, addr(SBC_A, 5060), addr([127, 0, 0, 1].into(), 8080))
            .expect("sbc starts");
    let file = sbc.dir().join("sbc.toml");
    let b = uas(&topo, Host::B, CARRIER_B, 5060);
    let c = uas(&topo, Host::C, CARRIER_C, 5060);
    assert!(!udp_ports(&topo).contains(&5080), "5080 is not bound before the reload");

    // Validate another file without applying it: a listener added is listed, nothing changes.
    let with_5080 =
        one.replace(&format!("\"udp:{SBC_B}:5060\"]"), &format!("\"udp:{SBC_B}:5060\", \"udp:{SBC_A}:5080\"]"));
    let other = sbc.dir().join("other.toml");
    std::fs::write(&other, &with_5080).expect("write");
    let v1 = version(&sbc);
    let (status, body) = post_body(&topo, "/config/validate", &format!("{{\"path\": \"{}\"}}", other.display()));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("sip.listen changed"), "{body}");
    assert_eq!(version(&sbc), v1, "validate applies nothing");
    assert!(!udp_ports(&topo).contains(&5080));

    // Reload with the listener added: calls come in on it.
    tests::write_atomically(&file, &with_5080).expect("rewrite");
    let (status, body) = post(&topo, "/config/reload");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("listener udp:{SBC_A}:5080 added")), "{body}");
    assert!(udp_ports(&topo).contains(&5080), "5080 bound after the reload");
    calls_to(&topo, 5080, 10).assert_all_successful(10).expect("10 calls through the added listener");

    // Reload with it removed: the port is closed, the other listeners go on.
    tests::write_atomically(&file, &one).expect("rewrite");
    let (status, body) = post(&topo, "/config/reload");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("listener udp:{SBC_A}:5080 removed")), "{body}");
    assert!(!udp_ports(&topo).contains(&5080), "5080 closed after the reload");
    calls_to(&topo, 5060, 10).assert_all_successful(10).expect("10 calls through the listener kept");

    // A listener that cannot be bound (the admin API's own TCP port) refuses the whole reload.
    let foreign =
        one.replace(&format!("\"udp:{SBC_B}:5060\"]"), &format!("\"udp:{SBC_B}:5060\", \"tcp:127.0.0.1:8080\"]"));
    tests::write_atomically(&file, &foreign).expect("rewrite");
    let v2 = version(&sbc);
    let (status, body) = post(&topo, "/config/reload");
    assert_eq!(status, 422, "{body}");
    assert!(body.contains(&format!("{}:2: sip.listen[2]: cannot bind tcp:127.0.0.1:8080", file.display())), "{body}");
    assert_eq!(version(&sbc), v2, "nothing changed");
    for r in [b, c] {
        r.signal("TERM");
        let _ = r.wait();
    }
}
