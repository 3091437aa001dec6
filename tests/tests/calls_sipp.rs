//! Calls through the SBC with real SIPp on both sides, in the single-SBC topology of DESIGN.md: the caller
//! (SIPp UAC) at 198.18.1.10, the SBC on 198.18.1.1 / 198.18.2.1, carriers b (198.18.2.10) and c (198.18.2.11)
//! as SIPp UAS. Every number routes to b, then c. Each test checks both SIPp sides and the CDR file.

use std::path::PathBuf;
use std::time::{Duration, Instant};
use tests::netns::{addr, sbc_config, Host, Topology, CALLER, SBC_A};
use tests::sipp::{Run, Running, Sipp};
use tests::Sbc;

const LIMIT: Duration = Duration::from_secs(40);

/// The topology with `sbc` running on it: `pbx`, `b` and `c` are extra keys for the three trunks.
struct Rig {
    topo: Topology,
    sbc: Sbc,
    cdr: PathBuf,
}

fn rig(name: &str, pbx: &str, b: &str, c: &str) -> Rig {
    let topo = Topology::single_sbc().expect("topology");
    let cdr = topo.dir().join("cdr.jsonl");
    let config = sbc_config(pbx, b, c, true, Some(&cdr));
    let sbc = Sbc::start_in(&topo.ns(Host::Sbc), name, &config, addr(SBC_A, 5060), addr([127, 0, 0, 1].into(), 8080))
        .expect("sbc starts");
    Rig { topo, sbc, cdr }
}

impl Rig {
    /// A SIPp UAS as carrier `host` (B or C), listening before this returns, stopped after [`LIMIT`].
    fn carrier(&self, host: Host, uas: Sipp, calls: u32) -> Running {
        self.carrier_for(host, uas, calls, LIMIT)
    }

    fn carrier_for(&self, host: Host, uas: Sipp, calls: u32, limit: Duration) -> Running {
        let (ns, ip) = (self.topo.ns(host), host.ip().expect("carrier address"));
        let mut r = uas
            .netns(&ns)
            .local_ip(ip)
            .local_port(5060)
            .calls(calls)
            .limit(limit)
            // Message traces help read a failure; for load they would only fill the disk.
            .trace_messages(calls <= 100)
            .spawn()
            .expect("uas starts");
        r.wait_listening(Some(&ns), 5060, Duration::from_secs(5)).expect("uas listens");
        r
    }

    /// The caller: `calls` calls from 198.18.1.10:`port` to the SBC.
    fn caller(&self, uac: Sipp, calls: u32, port: u16) -> Sipp {
        uac.netns(&self.topo.ns(Host::A))
            .local_ip(CALLER)
            .local_port(port)
            .target(addr(SBC_A, 5060))
            .service("+4930123456")
            .calls(calls)
            .rate(10)
            .limit(LIMIT)
            .trace_messages(true)
    }

    /// The CDRs written so far, waiting up to 5 s for `n` of them.
    fn cdrs(&self, n: usize) -> Vec<serde_json::Value> {
        tests::wait_cdrs(&[&self.cdr], n, Duration::from_secs(5))
    }
}

fn both_ok(uac: Run, uas: Running, calls: u64) {
    let uas = uas.wait().expect("uas finishes");
    uac.assert_all_successful(calls).expect("caller side");
    uas.assert_all_successful(calls).expect("carrier side");
}

fn tried(cdr: &serde_json::Value) -> Vec<(String, u64)> {
    cdr["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| (a["trunk"].as_str().expect("trunk").to_owned(), a["status"].as_u64().expect("status")))
        .collect()
}

#[test]
fn basic_call_with_bye_from_a() {
    let r = rig("bye-from-a", "", "", "");
    let uas = r.carrier(Host::B, Sipp::new("uas_answer.xml"), 3);
    let uac = r.caller(Sipp::new("uac_call.xml").pause(Duration::from_millis(500)), 3, 5060).run().expect("uac runs");
    both_ok(uac, uas, 3);
    let cdrs = r.cdrs(3);
    assert_eq!(cdrs.len(), 3, "one CDR per call");
    for c in &cdrs {
        assert_eq!((c["release_cause"].as_str(), c["released_by"].as_str()), (Some("bye"), Some("a")));
        assert_eq!(c["trunk_out"], "carrier-b");
        assert_eq!(c["status"], 200);
        assert!(c["duration_s"].as_f64().expect("answered") >= 0.45, "{c}");
    }
}

#[test]
fn basic_call_with_bye_from_b() {
    let r = rig("bye-from-b", "", "", "");
    let uas = r.carrier(Host::B, Sipp::new("uas_answer_then_bye.xml").pause(Duration::from_millis(500)), 3);
    let uac = r.caller(Sipp::new("uac_call_remote_bye.xml"), 3, 5060).run().expect("uac runs");
    both_ok(uac, uas, 3);
    let cdrs = r.cdrs(3);
    assert_eq!(cdrs.len(), 3);
    assert!(cdrs.iter().all(|c| c["released_by"] == "b" && c["release_cause"] == "bye"), "{cdrs:?}");
}

#[test]
fn cancel_before_answer() {
    let r = rig("cancel", "", "", "");
    let uas = r.carrier(Host::B, Sipp::new("uas_ring_forever.xml"), 3);
    let uac = r.caller(Sipp::new("uac_cancel.xml").pause(Duration::from_millis(500)), 3, 5060).run().expect("uac");
    both_ok(uac, uas, 3);
    let cdrs = r.cdrs(3);
    assert_eq!(cdrs.len(), 3);
    for c in &cdrs {
        assert_eq!((c["release_cause"].as_str(), c["status"].as_u64()), (Some("cancel"), Some(487)), "{c}");
        assert!(c["answer"].is_null());
    }
}

#[test]
fn early_media_183_then_200() {
    let r = rig("early-media", "", "", "");
    let uas = r.carrier(Host::B, Sipp::new("uas_early_media.xml").pause(Duration::from_millis(300)), 3);
    let uac = r.caller(Sipp::new("uac_call.xml").pause(Duration::from_millis(300)), 3, 5060).run().expect("uac");
    both_ok(uac, uas, 3);
    let cdrs = r.cdrs(3);
    assert!(cdrs.iter().all(|c| !c["ringing"].is_null() && c["status"] == 200), "{cdrs:?}");
}

#[test]
fn carrier_b_answers_503_and_the_call_completes_through_c() {
    let r = rig("failover-503", "", "", "");
    let b = r.carrier(Host::B, Sipp::new("uas_reject.xml").set("status", "503"), 3);
    let c = r.carrier(Host::C, Sipp::new("uas_answer.xml"), 3);
    let uac = r.caller(Sipp::new("uac_call.xml").pause(Duration::from_millis(300)), 3, 5060).run().expect("uac");
    b.wait().expect("b finishes").assert_all_successful(3).expect("b rejected every call");
    both_ok(uac, c, 3);
    let cdrs = r.cdrs(3);
    assert_eq!(cdrs.len(), 3);
    for cdr in &cdrs {
        assert_eq!(tried(cdr), [("carrier-b".to_owned(), 503), ("carrier-c".to_owned(), 200)]);
    }
}

#[test]
fn carrier_b_down_by_probe_sends_calls_straight_to_c() {
    let r = rig("probe-down", "", "probe = { options_every = \"1s\", down_after = 2, up_after = 1 }", "");
    // Nothing answers at b: after two unanswered probes it is down.
    let deadline = Instant::now() + Duration::from_secs(15);
    while r.sbc.metric("sbc_trunk_up{trunk=\"carrier-b\"}").expect("metrics") != 0.0 {
        assert!(Instant::now() < deadline, "carrier-b never went down:\n{}", r.sbc.log_tail());
        std::thread::sleep(Duration::from_millis(200));
    }
    let c = r.carrier(Host::C, Sipp::new("uas_answer.xml"), 3);
    let uac = r.caller(Sipp::new("uac_call.xml").pause(Duration::from_millis(300)), 3, 5060).run().expect("uac");
    both_ok(uac, c, 3);
    let cdrs = r.cdrs(3);
    assert!(cdrs.iter().all(|c| tried(c) == [("carrier-c".to_owned(), 200)]), "{cdrs:?}");
    assert_eq!(r.sbc.metric("sbc_call_attempts_total{trunk=\"carrier-b\"}").expect("metrics"), 0.0);
    assert!(r.sbc.log_tail().contains("trunk down"), "the change is logged");
}

/// A carrier that challenges (`scenario`: 401 checked by SIPp's own digest code, or 407) gets our credentials,
/// read from a password file, and the calls complete.
fn challenged_call_completes_with_credentials(name: &str, scenario: &str) {
    let password = "s3cret-carrier-b";
    let pw_file = std::env::temp_dir().join(format!("sbc-test-pw-{name}-{}", std::process::id()));
    std::fs::write(&pw_file, format!("{password}\n")).expect("password file");
    let auth = format!("auth = {{ username = \"sbc\", password_file = \"{}\" }}", pw_file.display());
    let r = rig(name, "", &auth, "");
    let uas = r.carrier(Host::B, Sipp::new(scenario).set("password", password), 3);
    let uac = r.caller(Sipp::new("uac_call.xml").pause(Duration::from_millis(300)), 3, 5060).run().expect("uac");
    both_ok(uac, uas, 3);
    assert!(!r.sbc.log_tail().contains(password), "the password never reaches the log");
    let _ = std::fs::remove_file(pw_file);
}

#[test]
fn carrier_b_challenges_with_401_and_sipp_verifies_our_digest() {
    challenged_call_completes_with_credentials("auth-401", "uas_auth.xml");
}

#[test]
fn carrier_b_challenges_with_407_and_the_call_completes_with_credentials() {
    challenged_call_completes_with_credentials("auth-407", "uas_auth_407.xml");
}

#[test]
fn limits_reached_give_503_with_retry_after() {
    let r = rig("limits", "limits = { calls = 1 }", "", "");
    let uas = r.carrier(Host::B, Sipp::new("uas_answer.xml"), 1);
    // One call holds the trunk's only slot for 4 s.
    let holder = r.caller(Sipp::new("uac_call.xml").pause(Duration::from_secs(4)), 1, 5060).spawn().expect("holder");
    let deadline = Instant::now() + Duration::from_secs(5);
    while r.sbc.metric("sbc_calls_answered_total{trunk=\"carrier-b\"}").expect("metrics") < 1.0 {
        assert!(Instant::now() < deadline, "the first call was not answered");
        std::thread::sleep(Duration::from_millis(100));
    }
    let refused = r.caller(Sipp::new("uac_limit_503.xml"), 3, 5070).run().expect("uac runs");
    refused.assert_all_successful(3).expect("every further call got 503 with Retry-After");
    both_ok(holder.wait().expect("holder finishes"), uas, 1);
    assert_eq!(r.sbc.metric("sbc_trunk_limit_total{trunk=\"customer-pbx\",which=\"calls\"}").expect("m"), 3.0);
}

/// The acceptance load: 10,000 calls at 200 calls/s (each held 1 s, so ~200 up at once), none failed on either
/// side, and exactly one CDR per call.
#[test]
fn ten_thousand_calls_at_200_per_second_with_a_cdr_each() {
    const CALLS: u32 = 10_000;
    let r = rig("load", "", "", "");
    let uas = r.carrier_for(Host::B, Sipp::new("uas_answer.xml"), CALLS, Duration::from_secs(120));
    let uac = r
        .caller(Sipp::new("uac_call.xml").pause(Duration::from_secs(1)), CALLS, 5060)
        .rate(200)
        .limit(Duration::from_secs(120))
        .trace_messages(false)
        .run()
        .expect("uac runs");
    both_ok(uac, uas, CALLS.into());
    let cdrs = r.cdrs(CALLS as usize);
    assert_eq!(cdrs.len(), CALLS as usize, "one CDR line per call");
    let ids: std::collections::HashSet<_> = cdrs.iter().map(|c| c["a_call_id"].to_string()).collect();
    assert_eq!(ids.len(), CALLS as usize, "no CDR doubled");
    assert!(cdrs.iter().all(|c| c["status"] == 200 && c["release_cause"] == "bye"));
}

#[test]
fn carrier_sees_number_rules_and_identity_policy_and_nothing_of_side_a() {
    let pbx = "numbers_in = { country_code = \"49\" }\nverified_number = \"+4940123456\"";
    let r = rig("identity", pbx, "trusted = true", "");
    let uas = r.carrier(Host::B, Sipp::new("uas_check_identity.xml"), 3);
    let uac = r
        .caller(Sipp::new("uac_call_identity.xml").pause(Duration::from_millis(200)), 3, 5060)
        .service("0301234567")
        .run()
        .expect("uac runs");
    both_ok(uac, uas, 3);
    let cdrs = r.cdrs(3);
    assert!(cdrs.iter().all(|c| c["called_in"] == "0301234567" && c["called_out"] == "+49301234567"), "{cdrs:?}");
}

/// The checks of uas_check_identity.xml are real: with carrier-b untrusted (no PAI towards it) every call fails.
#[test]
fn identity_checks_fail_when_the_carrier_is_not_trusted() {
    let pbx = "numbers_in = { country_code = \"49\" }\nverified_number = \"+4940123456\"";
    let r = rig("identity-neg", pbx, "", "");
    let uas = r.carrier(Host::B, Sipp::new("uas_check_identity.xml").limit(Duration::from_secs(10)), 2);
    let uac = r
        .caller(Sipp::new("uac_call_identity.xml"), 2, 5060)
        .service("0301234567")
        .limit(Duration::from_secs(10))
        .run()
        .expect("uac runs");
    let uas = uas.wait().expect("uas finishes");
    assert_eq!(uas.count("FailedCall(C)"), 2, "the carrier side fails both calls on its checks: no PAI");
    // SIPp marks the call failed and carries on, so the caller side may well complete.
    assert_eq!(uac.count("SuccessfulCall(C)") + uac.count("FailedCall(C)"), 2);
}

/// A customer trunk that must authenticate: SIPp answers our 407 with its own digest code and the calls go
/// through; a wrong password gets nowhere.
#[test]
fn customer_trunk_authenticates_with_digest() {
    let pw_file = std::env::temp_dir().join(format!("sbc-test-pbx-pw-{}", std::process::id()));
    std::fs::write(&pw_file, "pbx-secret\n").expect("password file");
    let pbx = format!("inbound_auth = {{ username = \"pbx\", password_file = \"{}\" }}", pw_file.display());
    let r = rig("inbound-auth", &pbx, "", "");
    let uas = r.carrier(Host::B, Sipp::new("uas_answer.xml"), 3);
    let uac = r
        .caller(Sipp::new("uac_auth.xml").pause(Duration::from_millis(200)), 3, 5060)
        .arg("-au")
        .arg("pbx")
        .arg("-ap")
        .arg("pbx-secret")
        .run()
        .expect("uac runs");
    both_ok(uac, uas, 3);
    let wrong = r
        .caller(Sipp::new("uac_auth.xml"), 2, 5070)
        .arg("-au")
        .arg("pbx")
        .arg("-ap")
        .arg("guess")
        .limit(Duration::from_secs(10))
        .run()
        .expect("uac runs");
    assert_eq!(wrong.count("SuccessfulCall(C)"), 0, "a wrong password never gets a call through");
    assert!(r.sbc.metric("sbc_auth_challenges_total{trunk=\"customer-pbx\"}").expect("metrics") >= 5.0);
    assert_eq!(r.cdrs(3).len(), 3, "only the authenticated calls left CDRs");
    let _ = std::fs::remove_file(pw_file);
}

#[test]
fn reliable_183_with_prack_crosses_end_to_end() {
    let r = rig("prack", "", "", "");
    let uas = r.carrier(Host::B, Sipp::new("uas_answer_prack.xml"), 2);
    let uac =
        r.caller(Sipp::new("uac_call_prack.xml").pause(Duration::from_millis(300)), 2, 5060).run().expect("uac runs");
    both_ok(uac, uas, 2);
    let cdrs = r.cdrs(2);
    assert_eq!(cdrs.len(), 2);
    assert!(cdrs.iter().all(|c| c["status"] == 200 && c["release_cause"] == "bye"), "{cdrs:?}");
}
