//! Registration of the SBC with a carrier (a registration-based trunk), with real SIPp peers in the single-SBC
//! topology of DESIGN.md: the carrier's registrar is a SIPp UAS at carrier b (198.18.2.10:5060,
//! `uas_registrar.xml`) that challenges with a digest, grants 4 s, accepts one refresh and refuses the next with
//! 403, challenges the retry again and grants 60 s, and finally takes the un-REGISTER of a clean stop. Meanwhile
//! the carrier calls the registered contact from 198.18.2.10:5070 (the call reaches the customer's SIPp UAS), and
//! while carrier b is down a call from the customer fails over to carrier c.
//!
//! In the hot-standby pair ([`Topology::pair`]) only the active box registers, and after a fire drill the new active
//! registers at once (`uas_registrar_once.xml`, one registration per box); the shipped example passes check-config.

use std::path::Path;
use std::time::{Duration, Instant};
use tests::netns::{addr, Host, Topology, CALLER, CARRIER_B, CARRIER_C, SBC_A, SBC_B};
use tests::sipp::{Running, Sipp};
use tests::Sbc;

const LIMIT: Duration = Duration::from_secs(60);
const PASSWORD: &str = "reg-s3cret";
const STATE: &str = r#"sbc_registration_state{trunk="carrier-b"}"#;

/// The customer PBX (calls to +4930555... go to it), carrier b registering as `acct` (contact user `sbc-acct`),
/// carrier c; every other number goes to b, then c.
fn config(password_file: &Path, cdr: &Path) -> String {
    format!(
        r#"[sip]
listen = ["udp:{SBC_A}:5060", "udp:{SBC_B}:5060"]

[api]
listen = "127.0.0.1:8080"

[log]
level = "info"

[cdr]
path = "{cdr}"

[[trunk]]
name = "customer-pbx"
match = {{ source = ["{CALLER}/32"] }}
gateways = ["udp:{CALLER}:5060"]

[[trunk]]
name = "carrier-b"
gateways = ["udp:{CARRIER_B}:5060"]
register = {{ username = "acct", password_file = "{pw}", domain = "carrier.example", expires = 60, contact_user = "sbc-acct" }}

[[trunk]]
name = "carrier-c"
gateways = ["udp:{CARRIER_C}:5060"]

[[route]]
prefix = "+4930555"
to = [{{ trunk = "customer-pbx" }}]

[[route]]
prefix = ""
to = [{{ trunk = "carrier-b", priority = 1 }}, {{ trunk = "carrier-c", priority = 2 }}]
"#,
        cdr = cdr.display(),
        pw = password_file.display(),
    )
}

/// A SIPp UAS in `host`'s namespace on `ip`:5060 for `calls` calls, listening before this returns.
fn uas(topo: &Topology, host: Host, sipp: Sipp, calls: u32) -> Running {
    let (ns, ip) = (topo.ns(host), host.ip().expect("host address"));
    let mut r = sipp
        .netns(&ns)
        .local_ip(ip)
        .local_port(5060)
        .calls(calls)
        .limit(LIMIT)
        .trace_messages(true)
        .spawn()
        .expect("uas starts");
    r.wait_listening(Some(&ns), 5060, Duration::from_secs(5)).expect("uas listens");
    r
}

/// Waits until the metric line starting with `name` reads `want`; returns how long that took.
fn wait_metric(sbc: &Sbc, name: &str, want: f64, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let got = sbc.metric(name).expect("metrics");
        if got == want {
            return start.elapsed();
        }
        if start.elapsed() >= within {
            let metrics = sbc.http_get("/metrics").unwrap_or_default();
            let related: Vec<&str> = metrics
                .lines()
                .filter(|l| l.contains("regist") || l.contains("REGISTER") || l.contains("dropped"))
                .collect();
            panic!(
                "{name} is {got}, not {want}, after {within:?}; metrics:\n{}\nlog:\n{}",
                related.join("\n"),
                sbc.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `[clock_tick]` (ms since SIPp started) logged with `label` by `uas_registrar.xml`.
fn tick(log: &str, label: &str) -> u64 {
    log.lines()
        .find_map(|l| l.trim().strip_prefix(label)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {label:?} in the registrar's log:\n{log}"))
}

#[test]
fn registers_with_digest_refreshes_before_expiry_is_down_on_403_routes_calls_to_its_contact_and_unregisters() {
    let topo = Topology::single_sbc().expect("topology");
    let password_file = topo.dir().join("carrier-b.password");
    std::fs::write(&password_file, PASSWORD).expect("password file");
    let cdr = topo.dir().join("cdr.jsonl");

    let registrar = uas(&topo, Host::B, Sipp::new("uas_registrar.xml").set("password", PASSWORD).keep_files(true), 1);
    let customer = uas(&topo, Host::A, Sipp::new("uas_answer.xml"), 1);
    let carrier_c = uas(&topo, Host::C, Sipp::new("uas_answer.xml"), 1);
    let mut sbc = Sbc::start_in(
        &topo.ns(Host::Sbc),
        "registration",
        &config(&password_file, &cdr),
        addr(SBC_A, 5060),
        addr([127, 0, 0, 1].into(), 8080),
    )
    .expect("sbc starts");

    let took = wait_metric(&sbc, STATE, 1.0, Duration::from_secs(5));
    println!("registered {took:?} after /health answered");

    // The carrier calls the contact it holds for us, from another port of its address; the number is in To.
    let call_in = Sipp::new("uac_call_to_contact.xml")
        .netns(&topo.ns(Host::B))
        .local_ip(CARRIER_B)
        .local_port(5070)
        .target(addr(SBC_B, 5060))
        .service("sbc-acct")
        .key("called", "+4930555123")
        .calls(1)
        .rate(1)
        .pause(Duration::from_millis(300))
        .limit(Duration::from_secs(20))
        .trace_messages(true)
        .run()
        .expect("the carrier's call runs");
    call_in.assert_all_successful(1).expect("the carrier's call to the registered contact is answered");
    customer.wait().expect("customer uas ends").assert_all_successful(1).expect("the customer answered it");

    // The second refresh is refused with 403: the trunk is down.
    wait_metric(&sbc, STATE, 0.0, Duration::from_secs(10));
    let forbidden = sbc.metric(r#"sbc_registrations_total{trunk="carrier-b",result="forbidden"}"#).expect("metrics");
    assert_eq!(forbidden, 1.0, "one 403 counted");

    // While b is down a call from the customer goes to c (the back-off before the retry is 5 to 6 s).
    let call_out = Sipp::new("uac_call.xml")
        .netns(&topo.ns(Host::A))
        .local_ip(CALLER)
        .local_port(5061)
        .target(addr(SBC_A, 5060))
        .service("+4940999")
        .calls(1)
        .rate(1)
        .pause(Duration::from_millis(200))
        .limit(Duration::from_secs(10))
        .trace_messages(true)
        .run()
        .expect("the customer's call runs");
    call_out.assert_all_successful(1).expect("the customer's call is answered");
    carrier_c.wait().expect("carrier c ends").assert_all_successful(1).expect("carrier c answered it");
    let skipped = sbc.metric(r#"sbc_trunk_skipped_total{trunk="carrier-b",reason="down"}"#).expect("metrics");
    assert_eq!(skipped, 1.0, "carrier b left out once, as down");

    // The retry after the back-off registers again; a clean stop un-registers.
    wait_metric(&sbc, STATE, 1.0, Duration::from_secs(10));
    assert!(sbc.terminate(Duration::from_secs(5)).expect("sbc stops"), "clean exit on SIGTERM");
    let reg = registrar.wait().expect("registrar ends");
    reg.assert_all_successful(1).expect("the registrar saw every REGISTER it expects, in time, with valid digests");

    let log = std::fs::read_to_string(reg.dir.join("logs.log")).expect("registrar log");
    let _ = std::fs::remove_dir_all(&reg.dir);
    let at = |label| tick(&log, label);
    let (authorized, refresh1, refresh2, retry) = (at("authorized"), at("refresh1"), at("refresh2"), at("retry"));
    let (reauthorized, unregister) = (at("reauthorized"), at("unregister"));
    println!(
        "registrar: first REGISTER {} ms, 200 after challenge {authorized} ms, refreshes {refresh1} and {refresh2} ms, \
         retry after 403 {retry} ms, registered again {reauthorized} ms, un-REGISTER {unregister} ms",
        at("register")
    );
    // Granted 4 s: each refresh falls between half and 85 % of it (a little slack for scheduling).
    for (from, to) in [(authorized, refresh1), (refresh1, refresh2)] {
        let gap = to - from;
        assert!((1_950..=3_500).contains(&gap), "a refresh {gap} ms after a 4 s grant");
    }
    let backoff = retry - refresh2;
    assert!((4_950..=6_100).contains(&backoff), "retry {backoff} ms after the 403 (5 s back-off, up to a fifth more)");

    let cdrs = tests::wait_cdrs(&[&cdr], 2, Duration::from_secs(5));
    let legs: Vec<(String, String)> = cdrs
        .iter()
        .map(|c| (c["trunk_in"].as_str().unwrap_or("").to_owned(), c["trunk_out"].as_str().unwrap_or("").to_owned()))
        .collect();
    assert_eq!(
        legs,
        [("carrier-b".to_owned(), "customer-pbx".to_owned()), ("customer-pbx".to_owned(), "carrier-c".to_owned())],
        "{cdrs:?}"
    );
    assert_eq!(cdrs[0]["called_in"], "+4930555123", "the number called is the To user, not the account: {cdrs:?}");
}

#[test]
fn the_shipped_registering_carrier_example_passes_check_config_and_bad_register_keys_are_named() {
    let check = |path: &Path| {
        let out = std::process::Command::new(tests::sbc_binary().expect("sbc built"))
            .args(["check-config", path.to_str().expect("utf8")])
            .env("CARRIER_B_PASSWORD", "example-password")
            .current_dir(tests::repo_root())
            .output()
            .expect("sbc runs");
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let shipped = tests::repo_root().join("config/examples/carrier-register.toml");
    let text = std::fs::read_to_string(&shipped).expect("config/examples/carrier-register.toml");
    let (code, out) = check(&shipped);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("carrier-register.toml: OK"), "{out}");
    assert!(!out.contains("example-password"), "the password is never printed: {out}");

    let dir = std::env::temp_dir().join(format!("sbc-register-cc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let bad = dir.join("bad.toml");
    let line = text.lines().position(|l| l.starts_with("register = ")).expect("the register line") + 1;
    for (from, to, key) in [
        ("expires = 600", "expires = 5", "trunk[1].register.expires"),
        ("contact_user = \"sbc-acct\"", "contact_user = \"sbc acct\"", "trunk[1].register.contact_user"),
        ("register = {", "register = { registrar = \"tcp:198.18.2.99:5060\",", "trunk[1].register.registrar"),
    ] {
        std::fs::write(&bad, text.replace(from, to)).expect("write");
        let (code, out) = check(&bad);
        assert_eq!(code, Some(2), "{out}");
        assert!(out.contains(&format!("bad.toml:{line}: {key}")), "{key}: {out}");
    }
    // Without `auth`, `register` needs its own account.
    std::fs::write(&bad, text.replace("auth = { username = \"acct\", password_env = \"CARRIER_B_PASSWORD\" }\n", ""))
        .expect("write");
    let (code, out) = check(&bad);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("trunk[1].register.username") && out.contains("trunk[1].register.password_env"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The role a box of the pair reports on `GET /ha`.
fn ha_role(sbc: &Sbc) -> String {
    let body = sbc.http_get("/ha").unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["role"].as_str().unwrap_or("unknown").to_owned()
}

#[test]
fn in_a_pair_only_the_active_registers_and_the_new_active_registers_at_once_after_a_fire_drill() {
    use tests::netns::{pair_sbc_config, VIP_A};
    let topo = Topology::pair().expect("pair topology");
    let password_file = topo.dir().join("carrier-b.password");
    std::fs::write(&password_file, PASSWORD).expect("password file");
    let register = format!(
        "gateways = [\"udp:{CARRIER_B}:5060\"]\nregister = {{ username = \"acct\", password_file = \"{}\", \
         contact_user = \"sbc-acct\" }}\n",
        password_file.display()
    );
    // One registration from each box in turn: sbc1 while it is active, sbc2 after it took over.
    let registrar =
        uas(&topo, Host::B, Sipp::new("uas_registrar_once.xml").set("password", PASSWORD).keep_files(true), 2);
    let start = |node: u8, priority: u32| {
        let cdr = topo.dir().join(format!("cdr-{node}.jsonl"));
        let config = pair_sbc_config(node, priority, &cdr).replacen(
            &format!("gateways = [\"udp:{CARRIER_B}:5060\"]\n"),
            &register,
            1,
        );
        assert!(config.contains("register = "), "carrier-b registers");
        let api = addr([127, 0, 0, 1].into(), 8080);
        Sbc::start_in(&topo.ns(Host::pair_box(node)), &format!("reg-sbc{node}"), &config, addr(VIP_A, 5060), api)
            .unwrap_or_else(|e| panic!("sbc{node} starts: {e:#}"))
    };
    let sbc1 = start(1, 200);
    let sbc2 = start(2, 100);
    let deadline = Instant::now() + Duration::from_secs(10);
    while (ha_role(&sbc1), ha_role(&sbc2)) != ("active".to_owned(), "standby".to_owned()) {
        assert!(
            Instant::now() < deadline,
            "sbc1 active, sbc2 standby after 10 s:\n{}\n{}",
            sbc1.log_tail(),
            sbc2.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_metric(&sbc1, STATE, 1.0, Duration::from_secs(5));
    // The standby has sent nothing in a while.
    std::thread::sleep(Duration::from_secs(1));
    let sent_by_standby = sbc2.metric("sbc_registrations_total").expect("metrics");
    assert_eq!((sbc2.metric(STATE).expect("metrics"), sent_by_standby), (0.0, 0.0), "the standby does not register");

    let demoted_at = Instant::now();
    let (status, body) =
        tests::netns::http_request(&topo.ns(Host::Sbc1), "POST", addr([127, 0, 0, 1].into(), 8080), "/ha/demote")
            .expect("POST reaches");
    assert!((200..300).contains(&status), "POST /ha/demote: {status} {body}");
    let took = wait_metric(&sbc2, STATE, 1.0, Duration::from_secs(5));
    println!("sbc2 registered {took:?} after the demotion of sbc1");
    assert!(took <= Duration::from_millis(1500), "the new active registered {took:?} after the fire drill");
    // Its first REGISTER may leave before the service address is up (and fail); it is sent again as soon as the
    // address is, not at its 500 ms retransmission: at most that one, its resend and the answer to the challenge.
    let sent = sbc2.metric(r#"sbc_sip_messages_out_total{kind="request",method="REGISTER"}"#).expect("metrics");
    assert!((2.0..=3.0).contains(&sent), "sbc2 sent {sent} REGISTERs");
    assert_eq!(ha_role(&sbc2), "active");
    wait_metric(&sbc1, STATE, 0.0, Duration::from_secs(2));
    let elapsed = demoted_at.elapsed();
    let reg = registrar.wait().expect("registrar ends");
    reg.assert_all_successful(2).expect("two registrations, one per box, each through a digest challenge");
    let log = std::fs::read_to_string(reg.dir.join("logs.log")).expect("registrar log");
    let _ = std::fs::remove_dir_all(&reg.dir);
    assert_eq!(log.matches("register ").count(), 2, "exactly two REGISTERs without credentials: {log}");
    println!("checked {elapsed:?} after the demotion");
}
