//! The SBC as registrar for its own users, with real SIPp peers in the single-SBC topology of DESIGN.md: user 1001
//! registers over UDP with a digest (`uac_register.xml`) from the caller's host (198.18.1.10:5062), then a SIPp UAS
//! on that same address answers the call carrier b (198.18.2.10) makes to 1001 through the SBC; 1001 calls out to
//! carrier b with a 407 digest (`uac_auth.xml`); after an un-REGISTER a call to 1001 gets 480, a call to an unknown
//! user 404; a wrong password gets 403 and is counted. With media anchored, a registered user answers a carrier call
//! and RTP flows both ways through the relay (`rtpgen` on each side).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tests::netns::{addr, Host, Process, Topology, CALLER, CARRIER_B, SBC_A, SBC_B};
use tests::rtp::{read_report, rtpgen_binary, Report, Rtpgen};
use tests::sipp::{sdp_ports, Running, Sipp};
use tests::Sbc;

const PASSWORD: &str = "u1001-s3cret";
/// Where the user registers from, and answers calls.
const USER_PORT: u16 = 5062;

/// Users 1001 and 1002 on the pseudo-trunk `users` (numbers 100x); carrier b, known by its address, takes every
/// other number.
fn config(password_file: &Path, cdr: &Path) -> String {
    signalling_config(password_file, cdr)
}

/// [`config`] with media anchored on the relay's interfaces a (198.18.1.1) and b (198.18.2.1).
fn config_with_media(password_file: &Path, cdr: &Path) -> String {
    signalling_config(password_file, cdr)
        + "\n[media]\ninterfaces = [{ name = \"a\", address = \"198.18.1.1\" }, { name = \"b\", address = \"198.18.2.1\" }]\n\
           ports = \"30000-30999\"\n"
}

fn signalling_config(password_file: &Path, cdr: &Path) -> String {
    format!(
        r#"[sip]
listen = ["udp:{SBC_A}:5060", "udp:{SBC_B}:5060"]

[api]
listen = "127.0.0.1:8080"

[cdr]
path = "{cdr}"

[[trunk]]
name = "users"

[[trunk]]
name = "carrier-b"
match = {{ source = ["{CARRIER_B}/32"] }}
gateways = ["udp:{CARRIER_B}:5060"]

[[route]]
prefix = "100"
to = [{{ trunk = "users" }}]

[[route]]
prefix = ""
to = [{{ trunk = "carrier-b" }}]

[registrar]
trunk = "users"
domains = ["{SBC_A}"]
min_expires = 30

[[registrar.user]]
name = "1001"
password_file = "{pw}"

[[registrar.user]]
name = "1002"
password_file = "{pw}"
"#,
        cdr = cdr.display(),
        pw = password_file.display(),
    )
}

/// A REGISTER (with its 401 round) of `user` from the user's address, expecting `expected`.
fn register(topo: &Topology, user: &str, password: &str, expires: u32, expected: u16) -> tests::sipp::Run {
    Sipp::new("uac_register.xml")
        .netns(&topo.ns(Host::A))
        .local_ip(CALLER)
        .local_port(USER_PORT)
        .target(addr(SBC_A, 5060))
        .service(user)
        .arg("-au")
        .arg(user)
        .arg("-ap")
        .arg(password)
        .set("expires", &expires.to_string())
        .set("expected", &expected.to_string())
        .calls(1)
        .limit(Duration::from_secs(10))
        .trace_messages(true)
        .run()
        .expect("the REGISTER runs")
}

/// A call from carrier b to `number` that must end with `status`.
fn carrier_call_expecting(topo: &Topology, number: &str, status: u16) {
    let run = Sipp::new("uac_expect_status.xml")
        .netns(&topo.ns(Host::B))
        .local_ip(CARRIER_B)
        .local_port(5061)
        .target(addr(SBC_B, 5060))
        .service(number)
        .set("expected", &status.to_string())
        .calls(1)
        .limit(Duration::from_secs(10))
        .trace_messages(true)
        .run()
        .expect("the carrier's call runs");
    run.assert_all_successful(1).unwrap_or_else(|e| panic!("a call to {number} ends with {status}: {e:#}"));
}

fn uas(topo: &Topology, host: Host, ip: std::net::Ipv4Addr, port: u16) -> Running {
    let ns = topo.ns(host);
    let mut r = Sipp::new("uas_answer.xml")
        .netns(&ns)
        .local_ip(ip)
        .local_port(port)
        .calls(1)
        .limit(Duration::from_secs(20))
        .trace_messages(true)
        .spawn()
        .expect("uas starts");
    r.wait_listening(Some(&ns), port, Duration::from_secs(5)).expect("uas listens");
    r
}

#[test]
fn user_registers_with_digest_receives_a_carrier_call_calls_out_with_407_and_is_480_after_unregister() {
    let topo = Topology::single_sbc().expect("topology");
    let password_file = topo.dir().join("users.password");
    std::fs::write(&password_file, PASSWORD).expect("password file");
    let cdr = topo.dir().join("cdr.jsonl");
    let sbc = Sbc::start_in(
        &topo.ns(Host::Sbc),
        "registrar-users",
        &config(&password_file, &cdr),
        addr(SBC_A, 5060),
        addr([127, 0, 0, 1].into(), 8080),
    )
    .expect("sbc starts");
    let metric = |name: &str| sbc.metric(name).expect("metrics");

    // Registered with a digest: one binding, one challenge and one success counted.
    register(&topo, "1001", PASSWORD, 300, 200).assert_all_successful(1).expect("1001 registers");
    assert_eq!(metric("sbc_registrar_bindings"), 1.0);
    assert_eq!(metric(r#"sbc_registrar_registers_total{result="ok"}"#), 1.0);
    assert_eq!(metric(r#"sbc_registrar_registers_total{result="challenged"}"#), 1.0);

    // The carrier calls 1001: the INVITE reaches the address 1001 registered from, where its UAS now answers.
    let user = uas(&topo, Host::A, CALLER, USER_PORT);
    let call_in = Sipp::new("uac_call.xml")
        .netns(&topo.ns(Host::B))
        .local_ip(CARRIER_B)
        .local_port(5061)
        .target(addr(SBC_B, 5060))
        .service("1001")
        .calls(1)
        .pause(Duration::from_millis(300))
        .limit(Duration::from_secs(15))
        .trace_messages(true)
        .run()
        .expect("the carrier's call runs");
    call_in.assert_all_successful(1).expect("the carrier's call to 1001 is answered");
    user.wait().expect("user uas ends").assert_all_successful(1).expect("1001 answered the call");

    // 1001 calls out: challenged with 407, then routed to carrier b on the users' trunk.
    let carrier = uas(&topo, Host::B, CARRIER_B, 5060);
    let call_out = Sipp::new("uac_auth.xml")
        .netns(&topo.ns(Host::A))
        .local_ip(CALLER)
        .local_port(5063)
        .target(addr(SBC_A, 5060))
        .service("+4930555123")
        .arg("-au")
        .arg("1001")
        .arg("-ap")
        .arg(PASSWORD)
        .calls(1)
        .pause(Duration::from_millis(300))
        .limit(Duration::from_secs(15))
        .trace_messages(true)
        .run()
        .expect("the user's call runs");
    call_out.assert_all_successful(1).expect("1001's call is answered by carrier b");
    carrier.wait().expect("carrier uas ends").assert_all_successful(1).expect("carrier b answered 1001's call");

    // Un-REGISTER: the binding is gone, a call to 1001 gets 480; an unknown user 404.
    register(&topo, "1001", PASSWORD, 0, 200).assert_all_successful(1).expect("1001 un-registers");
    assert_eq!(metric("sbc_registrar_bindings"), 0.0);
    carrier_call_expecting(&topo, "1001", 480);
    carrier_call_expecting(&topo, "1009", 404);

    // A wrong password: 403, counted, no binding.
    register(&topo, "1002", "guess", 300, 403).assert_all_successful(1).expect("a wrong password is refused with 403");
    assert_eq!(metric(r#"sbc_registrar_registers_total{result="forbidden"}"#), 1.0);
    assert_eq!(metric("sbc_registrar_bindings"), 0.0);

    let cdrs = tests::wait_cdrs(&[&cdr], 4, Duration::from_secs(5));
    let legs: Vec<(&str, &str, u64)> = cdrs
        .iter()
        .map(|c| {
            (
                c["trunk_in"].as_str().unwrap_or(""),
                c["trunk_out"].as_str().unwrap_or(""),
                c["status"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        legs,
        [("carrier-b", "users", 200), ("users", "carrier-b", 200), ("carrier-b", "", 480), ("carrier-b", "", 404)],
        "{cdrs:?}"
    );
}

/// The port each side's SDP names for RTP (SIPp's own -mp port stays 6000).
const RTP_PORT: u16 = 7078;
const PACKETS: u64 = 250;

/// The relay's address in the SDP a SIPp side received, waited for in SIPp's message log.
fn relay_address_in(sipp: &Running, relay_ip: &str, timeout: Duration) -> SocketAddr {
    let deadline = Instant::now() + timeout;
    loop {
        let text = sipp.messages();
        if let Some(port) = sdp_ports(&text, relay_ip).first() {
            return format!("{relay_ip}:{port}").parse().expect("an address");
        }
        assert!(Instant::now() < deadline, "no SDP naming {relay_ip} in {}:\n{text}", sipp.dir().display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn rtp_report(p: &mut Process, path: &Path) -> Report {
    let status = p.wait_timeout(Duration::from_secs(40)).expect("rtpgen ends");
    assert!(status.success(), "rtpgen failed: {}", p.output_tail());
    read_report(path).expect("rtpgen report")
}

#[test]
fn registered_user_answers_a_carrier_call_with_rtp_both_ways_through_the_relay() {
    let topo = Topology::single_sbc().expect("topology");
    let password_file = topo.dir().join("users.password");
    std::fs::write(&password_file, PASSWORD).expect("password file");
    let cdr = topo.dir().join("cdr.jsonl");
    let sbc = Sbc::start_in(
        &topo.ns(Host::Sbc),
        "registrar-users-rtp",
        &config_with_media(&password_file, &cdr),
        addr(SBC_A, 5060),
        addr([127, 0, 0, 1].into(), 8080),
    )
    .expect("sbc starts");
    register(&topo, "1001", PASSWORD, 300, 200).assert_all_successful(1).expect("1001 registers");
    assert_eq!(sbc.metric("sbc_registrar_bindings").ok(), Some(1.0));

    let ns_a = topo.ns(Host::A);
    let mut user = Sipp::new("uas_answer_rtp.xml")
        .netns(&ns_a)
        .local_ip(CALLER)
        .local_port(USER_PORT)
        .key("rtp_port", &RTP_PORT.to_string())
        .calls(1)
        .limit(Duration::from_secs(40))
        .trace_messages(true)
        .spawn()
        .expect("user uas starts");
    user.wait_listening(Some(&ns_a), USER_PORT, Duration::from_secs(5)).expect("user uas listens");

    let dir = topo.dir().to_owned();
    let (user_target, carrier_target) = (dir.join("user.target"), dir.join("carrier.target"));
    let (user_report, carrier_report) = (dir.join("user.json"), dir.join("carrier.json"));
    let stream = |bind, to: &Path, ssrc, expect, report: &Path| {
        Rtpgen::new(bind)
            .to_file(to)
            .count(PACKETS)
            .pps(50)
            .ssrc(ssrc)
            .expect_ssrc(expect)
            .duration(Duration::from_secs(30))
            .idle_exit(Duration::from_secs(2))
            .report(report)
    };
    let spawn = |host, name, gen: Rtpgen| {
        topo.spawn(host, name, rtpgen_binary().expect("rtpgen built"), &gen.args()).expect("rtpgen starts")
    };
    let mut rtp_user =
        spawn(Host::A, "rtp-user", stream(addr(CALLER, RTP_PORT), &user_target, 0x1001, 0xB0B0, &user_report));
    let mut rtp_carrier = spawn(
        Host::B,
        "rtp-carrier",
        stream(addr(CARRIER_B, RTP_PORT), &carrier_target, 0xB0B0, 0x1001, &carrier_report),
    );
    let carrier = Sipp::new("uac_call_rtp.xml")
        .netns(&topo.ns(Host::B))
        .local_ip(CARRIER_B)
        .local_port(5061)
        .target(addr(SBC_B, 5060))
        .service("1001")
        .key("rtp_port", &RTP_PORT.to_string())
        .pause(Duration::from_secs(9))
        .limit(Duration::from_secs(40))
        .trace_messages(true)
        .spawn()
        .expect("carrier uac starts");
    // Each side sends where the SDP it received points: the user to the relay's a side, the carrier to its b side.
    tests::write_atomically(
        &user_target,
        &format!("{}\n", relay_address_in(&user, "198.18.1.1", Duration::from_secs(10))),
    )
    .expect("target written");
    tests::write_atomically(
        &carrier_target,
        &format!("{}\n", relay_address_in(&carrier, "198.18.2.1", Duration::from_secs(10))),
    )
    .expect("target written");
    let (ru, rc) = (rtp_report(&mut rtp_user, &user_report), rtp_report(&mut rtp_carrier, &carrier_report));
    carrier.wait().expect("carrier uac ends").assert_all_successful(1).expect("the carrier's call to 1001 completes");
    user.wait().expect("user uas ends").assert_all_successful(1).expect("1001 answered");
    for (side, r) in [("user", &ru), ("carrier", &rc)] {
        assert_eq!(r.sent, PACKETS, "{side} sent: {r:?}");
        assert_eq!(r.received, PACKETS, "{side} received every packet: {r:?}");
        assert_eq!((r.corrupt, r.lost), (0, 0), "{side}: {r:?}");
    }
    let cdrs = tests::wait_cdrs(&[&cdr], 1, Duration::from_secs(5));
    assert_eq!((cdrs[0]["trunk_in"].as_str(), cdrs[0]["trunk_out"].as_str()), (Some("carrier-b"), Some("users")));
}

#[test]
fn the_shipped_registrar_example_passes_check_config_without_printing_passwords() {
    let shipped = tests::repo_root().join("config/examples/registrar-users.toml");
    let out = std::process::Command::new(tests::sbc_binary().expect("sbc built"))
        .args(["check-config", shipped.to_str().expect("utf8")])
        .env("USER_1001_PASSWORD", "example-pw-1001")
        .env("USER_1002_PASSWORD", "example-pw-1002")
        .current_dir(tests::repo_root())
        .output()
        .expect("sbc runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("registrar-users.toml: OK"), "{text}");
    assert!(!text.contains("example-pw"), "passwords are never printed: {text}");
}
