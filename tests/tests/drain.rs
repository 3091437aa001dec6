//! Draining (config/README.md, "Draining"; issue 16 part 4) with real SIPp peers in network namespaces:
//!
//! - one SBC with 50 calls up gets SIGTERM: a new INVITE and an OPTIONS ping get 503 with Retry-After, all 50 calls
//!   end by themselves (SIPp counts them successful on both sides, one CDR each, cause `bye`), and the process
//!   exits with status 0 once the last has ended, not before;
//! - `POST /drain?deadline=2` with calls held longer: at the deadline they get BYE on both legs (the peers count
//!   them successful), their CDRs say `drain_deadline`, and the process exits 0;
//! - a second SIGTERM during a drain stops at once (BYE to every call, CDR cause `shutdown`), exit 0;
//! - the active of a pair with 50 calls up is drained: it hands the calls to its peer, no call is lost (SIPp counts,
//!   one CDR per call, all on the peer), and the drained box exits 0.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tests::netns::{addr, http_request, pair_sbc_config, sbc_config, Host, Topology, CALLER, CARRIER_B, SBC_A, VIP_A};
use tests::sipp::{Running, Sipp};
use tests::Sbc;

/// Calls up when the drain starts.
const CALLS: u32 = 50;
/// How long each call is held by its caller: long enough that all 50 are up together when the drain starts.
const HOLD: Duration = Duration::from_secs(9);
/// SIPp's limit for a whole run.
const LIMIT: Duration = Duration::from_secs(60);
/// The admin API inside the SBC's namespace.
fn api() -> std::net::SocketAddr {
    addr([127, 0, 0, 1].into(), 8080)
}

/// `drain_deadline` is a top-level key: it goes before the first table.
fn with_deadline(config: &str, deadline: &str) -> String {
    format!("drain_deadline = \"{deadline}\"\n{config}")
}

/// Carrier b as a SIPp UAS answering `calls` calls, listening before this returns.
fn carrier(topo: &Topology, calls: u32) -> Running {
    let ns = topo.ns(Host::B);
    let mut r = Sipp::new("uas_answer.xml")
        .netns(&ns)
        .local_ip(CARRIER_B)
        .local_port(5060)
        .calls(calls)
        .limit(LIMIT)
        .trace_messages(true)
        .spawn()
        .expect("uas starts");
    r.wait_listening(Some(&ns), 5060, Duration::from_secs(5)).expect("uas listens");
    r
}

/// A SIPp UAC from the caller's host (port `port`) to `target` on side a, `calls` calls at 25/s.
fn caller(topo: &Topology, scenario: &str, port: u16, target: std::net::Ipv4Addr, calls: u32) -> Sipp {
    Sipp::new(scenario)
        .netns(&topo.ns(Host::A))
        .local_ip(CALLER)
        .local_port(port)
        .target(addr(target, 5060))
        .service("+4930123456")
        .calls(calls)
        .rate(25)
        .limit(LIMIT)
        .trace_messages(true)
}

/// `GET /drain`, parsed.
fn drain_state(sbc: &Sbc) -> anyhow::Result<Value> {
    Ok(serde_json::from_str(&sbc.http_get("/drain")?)?)
}

/// Polls `GET /drain` until `field` equals `want`; fails after `limit` with the state and the log.
fn wait_drain_field(sbc: &Sbc, field: &str, want: &Value, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let state = drain_state(sbc);
        if let Ok(v) = &state {
            if &v[field] == want {
                return v.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "GET /drain: {field} is not {want} after {limit:?}: {state:?}\n{}",
            sbc.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits up to `limit` for the process to exit; returns its status and how long after `since` it was seen gone.
fn wait_exit(sbc: &mut Sbc, since: Instant, limit: Duration) -> (std::process::ExitStatus, Duration) {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = sbc.exit_status() {
            return (status, since.elapsed());
        }
        assert!(Instant::now() < deadline, "sbc still running {limit:?} later:\n{}", sbc.log_tail());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn cdrs(path: &Path) -> Vec<Value> {
    tests::read_cdrs(&[path])
}

fn causes(cdrs: &[Value]) -> Vec<(String, String)> {
    cdrs.iter()
        .map(|c| {
            (c["release_cause"].as_str().unwrap_or("?").to_owned(), c["released_by"].as_str().unwrap_or("?").to_owned())
        })
        .collect()
}

fn single_sbc(name: &str, deadline: &str) -> (Topology, Sbc, PathBuf) {
    let topo = Topology::single_sbc().expect("topology");
    let cdr = topo.dir().join("cdr.jsonl");
    let config = with_deadline(&sbc_config("", "", "", false, Some(&cdr)), deadline);
    let sbc = Sbc::start_in(&topo.ns(Host::Sbc), name, &config, addr(SBC_A, 5060), api()).expect("sbc starts");
    (topo, sbc, cdr)
}

#[test]
fn sigterm_with_50_calls_up_refuses_new_calls_and_pings_with_503_and_exits_0_after_the_last_call() {
    let (topo, mut sbc, cdr) = single_sbc("drain-sigterm", "60s");
    let idle = drain_state(&sbc).expect("GET /drain");
    assert_eq!((idle["draining"].as_bool(), idle["deadline_secs"].as_u64()), (Some(false), Some(60)), "{idle}");
    let uas = carrier(&topo, CALLS);
    let uac = caller(&topo, "uac_call.xml", 5060, SBC_A, CALLS).pause(HOLD).spawn().expect("uac starts");
    wait_drain_field(&sbc, "calls", &Value::from(CALLS), Duration::from_secs(8));

    // What systemd sends to stop the service.
    let drained_at = Instant::now();
    let pid = sbc.id().to_string();
    let kill = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
    assert!(kill.success());
    let state = wait_drain_field(&sbc, "draining", &Value::Bool(true), Duration::from_secs(3));
    assert_eq!((state["calls"].as_u64(), state["mode"].as_str()), (Some(u64::from(CALLS)), Some("local")), "{state}");
    assert!(state["deadline_secs"].as_u64().is_some_and(|s| (55..=60).contains(&s)), "{state}");

    // A new call and a ping, while the 50 calls are up.
    let refused = caller(&topo, "uac_limit_503.xml", 5070, SBC_A, 1).run().expect("new caller runs");
    refused.assert_all_successful(1).expect("a new INVITE gets 503 with Retry-After");
    let ping = caller(&topo, "options_draining_503.xml", 5071, SBC_A, 1).run().expect("pinger runs");
    ping.assert_all_successful(1).expect("an OPTIONS gets 503 with Retry-After");
    assert_eq!(sbc.metric("sbc_drain_rejected_total{method=\"INVITE\"}").expect("metrics"), 1.0);
    assert_eq!(sbc.metric("sbc_drain_rejected_total{method=\"OPTIONS\"}").expect("metrics"), 1.0);
    assert_eq!(sbc.metric("sbc_draining ").expect("metrics"), 1.0);
    assert_eq!(sbc.metric("sbc_overload_rejected_total").expect("metrics"), 0.0, "not counted as overload");
    let calls_left = drain_state(&sbc).expect("GET /drain")["calls"].as_u64();
    assert_eq!(calls_left, Some(u64::from(CALLS)), "every call still up {:?} into the drain", drained_at.elapsed());

    let uac = uac.wait().expect("uac finishes");
    let last_call_ended = Instant::now();
    uac.assert_all_successful(u64::from(CALLS)).expect("caller side: every call ends normally");
    uas.wait().expect("uas finishes").assert_all_successful(u64::from(CALLS)).expect("carrier side");
    let (status, after) = wait_exit(&mut sbc, last_call_ended, Duration::from_secs(10));
    eprintln!("drain: exited {after:?} after the caller's last call ended, {:?} after SIGTERM", drained_at.elapsed());
    assert!(status.success(), "exit status 0 after the drain: {status}\n{}", sbc.log_tail());
    assert!(drained_at.elapsed() >= HOLD - Duration::from_secs(3), "not before the calls ended");

    let written = cdrs(&cdr);
    assert_eq!(written.len(), CALLS as usize, "one CDR per call, all written before the exit");
    let bye_from_a = causes(&written).iter().filter(|c| *c == &("bye".to_owned(), "a".to_owned())).count();
    assert_eq!(bye_from_a, CALLS as usize, "every call ended by its caller: {:?}", causes(&written));
    let log = std::fs::read_to_string(&sbc.log).unwrap_or_default();
    assert!(log.contains("drained: the last call has ended"), "{}", sbc.log_tail());
}

#[test]
fn drain_deadline_ends_the_calls_left_with_bye_and_cdr_cause_drain_deadline_then_exits_0() {
    const HELD: u32 = 5;
    let (topo, mut sbc, cdr) = single_sbc("drain-deadline", "300s");
    let uas = carrier(&topo, HELD);
    // Callers that never hang up: the SBC's BYE at the deadline ends their calls.
    let uac = caller(&topo, "uac_call_remote_bye.xml", 5060, SBC_A, HELD).spawn().expect("uac starts");
    wait_drain_field(&sbc, "calls", &Value::from(HELD), Duration::from_secs(8));

    let ns = topo.ns(Host::Sbc);
    let (status, body) = http_request(&ns, "POST", api(), "/drain?deadline=nope").expect("POST reaches");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"error\""), "{body}");
    let posted = Instant::now();
    let (status, body) = http_request(&ns, "POST", api(), "/drain?deadline=2").expect("POST reaches");
    assert_eq!(status, 202, "{body}");
    let state: Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!((state["draining"].as_bool(), state["calls"].as_u64()), (Some(true), Some(u64::from(HELD))), "{state}");
    assert!(state["deadline_secs"].as_u64().is_some_and(|s| s <= 2), "{state}");

    let (status, after) = wait_exit(&mut sbc, posted, Duration::from_secs(10));
    eprintln!("drain deadline 2 s: exited {after:?} after POST /drain");
    assert!(status.success(), "exit status 0 after the deadline: {status}\n{}", sbc.log_tail());
    assert!(after >= Duration::from_secs(2), "not before the deadline: {after:?}");
    uac.wait().expect("uac finishes").assert_all_successful(u64::from(HELD)).expect("callers got their BYE");
    uas.wait().expect("uas finishes").assert_all_successful(u64::from(HELD)).expect("the carrier got its BYE");
    let written = cdrs(&cdr);
    assert_eq!(written.len(), HELD as usize, "one CDR per call");
    for (cause, by) in causes(&written) {
        assert_eq!((cause.as_str(), by.as_str()), ("drain_deadline", "sbc"), "{written:?}");
    }
}

#[test]
fn a_second_sigterm_during_a_drain_stops_at_once_with_bye_and_cdr_cause_shutdown() {
    const HELD: u32 = 5;
    let (topo, mut sbc, cdr) = single_sbc("drain-twice", "300s");
    let uas = carrier(&topo, HELD);
    let uac = caller(&topo, "uac_call_remote_bye.xml", 5060, SBC_A, HELD).spawn().expect("uac starts");
    wait_drain_field(&sbc, "calls", &Value::from(HELD), Duration::from_secs(8));
    let pid = sbc.id().to_string();
    let term = || assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    term();
    wait_drain_field(&sbc, "draining", &Value::Bool(true), Duration::from_secs(3));
    let second = Instant::now();
    term();
    let (status, after) = wait_exit(&mut sbc, second, Duration::from_secs(10));
    eprintln!("second SIGTERM: exited {after:?} after it");
    assert!(status.success(), "exit status 0: {status}\n{}", sbc.log_tail());
    assert!(after < Duration::from_secs(5), "at once, not at the 300 s deadline: {after:?}");
    uac.wait().expect("uac finishes").assert_all_successful(u64::from(HELD)).expect("callers got their BYE");
    uas.wait().expect("uas finishes").assert_all_successful(u64::from(HELD)).expect("the carrier got its BYE");
    let written = cdrs(&cdr);
    assert_eq!(written.len(), HELD as usize, "one CDR per call");
    for (cause, by) in causes(&written) {
        assert_eq!((cause.as_str(), by.as_str()), ("shutdown", "sbc"), "{written:?}");
    }
}

/// `GET /ha` of a box, parsed.
fn ha(sbc: &Sbc) -> anyhow::Result<Value> {
    Ok(serde_json::from_str(&sbc.http_get("/ha")?)?)
}

/// Polls `GET /ha` of `sbc` until `check` holds; fails after `limit` with the state and the log.
fn wait_ha(sbc: &Sbc, what: &str, limit: Duration, check: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + limit;
    loop {
        let state = ha(sbc);
        if state.as_ref().is_ok_and(&check) {
            return;
        }
        assert!(Instant::now() < deadline, "not {what} after {limit:?}: {state:?}\n{}", sbc.log_tail());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn draining_the_active_of_a_pair_hands_50_calls_to_the_peer_and_exits_0() {
    let topo = Topology::pair().expect("pair topology");
    let cdr = [topo.dir().join("cdr-sbc1.jsonl"), topo.dir().join("cdr-sbc2.jsonl")];
    let start = |node: u8, priority: u32| {
        let config = with_deadline(&pair_sbc_config(node, priority, &cdr[usize::from(node - 1)]), "60s");
        Sbc::start_in(&topo.ns(Host::pair_box(node)), &format!("drain-sbc{node}"), &config, addr(VIP_A, 5060), api())
            .unwrap_or_else(|e| panic!("sbc{node} starts: {e:#}"))
    };
    let mut sbc1 = start(1, 200);
    let sbc2 = start(2, 100);
    let paired = |want: &'static str| move |v: &Value| v["role"] == want && v["peer_alive"] == Value::Bool(true);
    wait_ha(&sbc1, "sbc1 active", Duration::from_secs(10), paired("active"));
    wait_ha(&sbc2, "sbc2 standby", Duration::from_secs(10), paired("standby"));

    let uas = carrier(&topo, CALLS);
    let uac = caller(&topo, "uac_call.xml", 5060, VIP_A, CALLS).pause(HOLD).spawn().expect("uac starts");
    wait_ha(&sbc1, "50 calls on sbc1", Duration::from_secs(8), |v| v["calls"] == CALLS);
    wait_ha(&sbc2, "50 calls held by sbc2", Duration::from_secs(5), |v| v["foreign_calls"] == CALLS);

    let drained_at = Instant::now();
    let (status, body) = http_request(&topo.ns(Host::Sbc1), "POST", api(), "/drain").expect("POST reaches");
    assert_eq!(status, 202, "{body}\n{}", sbc1.log_tail());
    let state: Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(
        (state["mode"].as_str(), state["calls"].as_u64()),
        (Some("handover"), Some(u64::from(CALLS))),
        "{state}"
    );

    let (exit, after) = wait_exit(&mut sbc1, drained_at, Duration::from_secs(10));
    eprintln!("pair drain: sbc1 exited {after:?} after POST /drain");
    assert!(exit.success(), "the drained box exits 0: {exit}\n{}", sbc1.log_tail());
    wait_ha(&sbc2, "sbc2 active with the 50 calls", Duration::from_secs(3), |v| {
        v["role"] == "active" && v["calls"].as_u64().is_some_and(|n| n > 0)
    });
    assert!(after < HOLD - Duration::from_secs(2), "the handover does not wait for the calls to end: {after:?}");

    uac.wait().expect("uac finishes").assert_all_successful(u64::from(CALLS)).expect("caller side: no call lost");
    uas.wait().expect("uas finishes").assert_all_successful(u64::from(CALLS)).expect("carrier side: no call lost");
    let on_peer = tests::wait_cdrs(&[&cdr[1]], CALLS as usize, Duration::from_secs(5));
    assert_eq!(on_peer.len(), CALLS as usize, "every call's CDR written by the peer");
    assert!(cdrs(&cdr[0]).is_empty(), "no CDR on the drained box: {:?}", cdrs(&cdr[0]));
    let mut ids: Vec<&str> = on_peer.iter().filter_map(|c| c["a_call_id"].as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), CALLS as usize, "one CDR per call");
    let bye_from_a = causes(&on_peer).iter().filter(|c| *c == &("bye".to_owned(), "a".to_owned())).count();
    assert_eq!(bye_from_a, CALLS as usize, "{:?}", causes(&on_peer));
}
