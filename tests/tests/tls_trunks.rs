//! SIP over TLS on both legs, in the single-SBC topology: the customer PBX (SIPp behind a stunnel client with a
//! client certificate) calls through the SBC's TLS listener; carriers b and c are SIPp behind stunnel servers.
//! Certificates come from a CA the test makes (rcgen). Debian's SIPp has no TLS of its own (see `tests::tls`).
//!
//! - calls complete over TLS on both legs, the customer trunk recognised by its certificate alone;
//! - carrier b's certificate does not carry the name its trunk expects: the handshake is refused, counted and
//!   logged, and every call completes on carrier c;
//! - a client without a certificate is refused at the handshake;
//! - the SBC's certificate replaced on disk is served to new connections while an established call goes on over
//!   its connection; a broken file keeps the previous certificate;
//! - a `tcp:` gateway is dialled by the SBC on the first call.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tests::netns::{addr, Host, Process, Topology, CALLER, CARRIER_B, CARRIER_C, SBC_A, SBC_B};
use tests::sipp::{Running, Sipp};
use tests::tls::{served_subject, stunnel, TestCa, Tunnel};
use tests::Sbc;

const LIMIT: Duration = Duration::from_secs(40);
const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
/// Where SIPp listens behind stunnel in each namespace, and where the caller's stunnel accepts.
const SIPP_PORT: u16 = 5060;
const TUNNEL_PORT: u16 = 5070;
const API: SocketAddr = SocketAddr::new(LOOPBACK, 8080);

/// The certificates of one test, written into the topology's directory.
struct Pki {
    ca: PathBuf,
    /// The SBC's chain and key in one file (so a replacement is one atomic rename).
    sbc: PathBuf,
    customer: (PathBuf, PathBuf),
    carrier_b: (PathBuf, PathBuf),
    carrier_c: (PathBuf, PathBuf),
    authority: TestCa,
}

fn pki(dir: &Path, b_name: &str) -> Pki {
    let authority = TestCa::new("sbc test CA").expect("CA");
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, authority.pem()).expect("write CA");
    let sbc_leaf = authority
        .issue("sbc.example.net", &["sbc.example.net"], &[SBC_A.into(), SBC_B.into()])
        .expect("sbc certificate");
    let sbc = dir.join("sbc.pem");
    std::fs::write(&sbc, sbc_leaf.combined()).expect("write");
    let issue = |cn: &str, name: &str| authority.issue(cn, &[cn], &[]).expect("leaf").write(dir, name).expect("write");
    Pki {
        customer: issue("pbx.customer.example.net", "customer"),
        carrier_b: issue(b_name, "carrier-b"),
        carrier_c: issue("carrier-c.example.net", "carrier-c"),
        ca,
        sbc,
        authority,
    }
}

/// The SBC's configuration: TLS listeners on both sides (mutual TLS required), the customer trunk known by its
/// certificate's name only, carriers b and c over TLS with the names their certificates must carry, every number
/// to b then c.
fn config(p: &Pki, cdr: &Path) -> String {
    format!(
        r#"[sip]
listen = ["tls:{SBC_A}:5061", "tls:{SBC_B}:5061"]
tls = {{ cert = "{sbc}", key = "{sbc}", ca = "{ca}", reload_every = "1s" }}

[api]
listen = "{API}"

[log]
level = "info"

[cdr]
path = "{cdr}"

[[trunk]]
name = "customer-pbx"
match = {{ tls = ["pbx.customer.example.net"] }}

[[trunk]]
name = "carrier-b"
gateways = ["tls:{CARRIER_B}:5061"]
tls = {{ server_name = "carrier-b.example.net", ca = "{ca}" }}

[[trunk]]
name = "carrier-c"
gateways = ["tls:{CARRIER_C}:5061"]
tls = {{ server_name = "carrier-c.example.net", ca = "{ca}" }}

[[route]]
prefix = ""
to = [{{ trunk = "carrier-b", priority = 1 }}, {{ trunk = "carrier-c", priority = 2 }}]
"#,
        sbc = p.sbc.display(),
        ca = p.ca.display(),
        cdr = cdr.display(),
    )
}

struct Rig {
    topo: Topology,
    sbc: Sbc,
    pki: Pki,
    cdr: PathBuf,
    _tunnels: Vec<Process>,
}

/// The topology, certificates (carrier b's named `b_name`), stunnel servers in front of both carriers' SIPp, and
/// the SBC.
fn rig(name: &str, b_name: &str) -> Rig {
    let topo = Topology::single_sbc().expect("topology");
    let pki = pki(topo.dir(), b_name);
    let cdr = topo.dir().join("cdr.jsonl");
    let mut tunnels = Vec::new();
    for (host, ip, cert) in [(Host::B, CARRIER_B, &pki.carrier_b), (Host::C, CARRIER_C, &pki.carrier_c)] {
        let t = Tunnel {
            client: false,
            accept: addr(ip, 5061),
            connect: SocketAddr::new(LOOPBACK, SIPP_PORT),
            cert: Some(cert.clone()),
            verify: None,
        };
        tunnels.push(stunnel(&topo, host, &format!("tls-{}", host.suffix()), &t).expect("carrier stunnel"));
    }
    let sbc = Sbc::start_in(&topo.ns(Host::Sbc), name, &config(&pki, &cdr), addr(SBC_A, 5061), API).expect("sbc");
    Rig { topo, sbc, pki, cdr, _tunnels: tunnels }
}

impl Rig {
    /// The caller's stunnel client on 127.0.0.1:`port` in namespace a, presenting `cert` (or none), checking the
    /// SBC's certificate for sbc.example.net.
    fn caller_tunnel(&self, port: u16, cert: Option<(PathBuf, PathBuf)>) -> Process {
        let t = Tunnel {
            client: true,
            accept: SocketAddr::new(LOOPBACK, port),
            connect: addr(SBC_A, 5061),
            cert,
            verify: Some((self.pki.ca.clone(), "sbc.example.net".into())),
        };
        stunnel(&self.topo, Host::A, &format!("caller-{port}"), &t).expect("caller stunnel")
    }

    /// A SIPp UAS answering `calls` calls behind carrier `host`'s stunnel.
    fn carrier(&self, host: Host, calls: u32) -> Running {
        let ns = self.topo.ns(host);
        let mut r = Sipp::new("uas_answer.xml")
            .netns(&ns)
            .local_ip(LOOPBACK)
            .local_port(SIPP_PORT)
            .transport("t1")
            .calls(calls)
            .limit(LIMIT)
            .trace_messages(true)
            .spawn()
            .expect("uas starts");
        tests::tls::wait_tcp_listening(&self.topo, host, SIPP_PORT, Duration::from_secs(5)).expect("uas listens");
        r.try_wait().expect("uas runs");
        r
    }

    /// SIPp calling through the caller's stunnel on `port`.
    fn caller(&self, port: u16, calls: u32, pause: Duration) -> Sipp {
        Sipp::new("uac_call.xml")
            .netns(&self.topo.ns(Host::A))
            .local_ip(LOOPBACK)
            .local_port(SIPP_PORT + port - TUNNEL_PORT)
            .target(SocketAddr::new(LOOPBACK, port))
            .transport("t1")
            .service("+4930123456")
            .calls(calls)
            .rate(10)
            .pause(pause)
            .limit(LIMIT)
            .trace_messages(true)
    }

    fn metric(&self, prefix: &str) -> f64 {
        self.sbc.metric(prefix).expect("metrics")
    }
}

#[test]
fn calls_over_tls_fail_over_from_a_carrier_whose_certificate_has_the_wrong_name() {
    const CALLS: u32 = 10;
    let r = rig("tls-failover", "wrong-name.example.net");
    let _tunnel = r.caller_tunnel(TUNNEL_PORT, Some(r.pki.customer.clone()));
    let b = r.carrier(Host::B, CALLS);
    let c = r.carrier(Host::C, CALLS);
    let uac = r.caller(TUNNEL_PORT, CALLS, Duration::from_millis(300)).run().expect("uac runs");
    uac.assert_all_successful(CALLS.into()).expect("every call completes for the caller");
    c.wait().expect("carrier c").assert_all_successful(CALLS.into()).expect("carrier c answered every call");
    // Carrier b never got a call (its handshake was refused): its SIPp is stopped with the rig.
    drop(b);
    let cdrs = tests::wait_cdrs(&[&r.cdr], CALLS as usize, Duration::from_secs(5));
    assert_eq!(cdrs.len(), CALLS as usize, "one CDR per call");
    for cdr in &cdrs {
        let tried: Vec<(&str, u64)> = cdr["attempts"]
            .as_array()
            .expect("attempts")
            .iter()
            .map(|a| (a["trunk"].as_str().expect("trunk"), a["status"].as_u64().expect("status")))
            .collect();
        assert_eq!(tried, [("carrier-b", 503), ("carrier-c", 200)], "{cdr}");
        assert_eq!(cdr["trunk_in"], "customer-pbx", "recognised by its certificate: {cdr}");
    }
    let refused = r.metric("sbc_tls_handshake_failures_total{direction=\"out\",reason=\"certificate_name\"}");
    let failures = r.metric("sbc_sip_connect_failures_total{transport=\"tls\",reason=\"certificate_name\"}");
    assert!((1.0..=CALLS as f64).contains(&refused), "{refused} refused handshakes with carrier b");
    assert_eq!(failures, refused, "each refused handshake is one connect failure");
    assert_eq!(r.metric("sbc_tls_handshakes_total{direction=\"out\"}"), 1.0, "one connection to c, reused");
    assert_eq!(r.metric("sbc_tls_handshakes_total{direction=\"in\"}"), 1.0, "one connection from the caller");
    let log = std::fs::read_to_string(&r.sbc.log).expect("log");
    let lines = log.lines().filter(|l| l.contains("cannot open a connection to the gateway")).count();
    assert!((1..=2).contains(&lines), "{lines} log lines for {refused} failures (rate-limited)");
    eprintln!("carrier b: {refused} handshakes refused (certificate_name) for {CALLS} calls, {lines} log line(s)");
    assert!(log.contains("certificate_name"), "the reason is in the log");
}

#[test]
fn a_client_without_a_certificate_is_refused_at_the_handshake() {
    let r = rig("tls-no-client-cert", "carrier-b.example.net");
    let _tunnel = r.caller_tunnel(TUNNEL_PORT + 1, None);
    let uac = r.caller(TUNNEL_PORT + 1, 1, Duration::from_millis(100)).limit(Duration::from_secs(5)).run();
    let uac = uac.expect("uac runs");
    assert_eq!(uac.count("SuccessfulCall(C)"), 0, "no call without a client certificate");
    let refused = r.metric("sbc_tls_handshake_failures_total{direction=\"in\",reason=\"no_client_certificate\"}");
    assert!(refused >= 1.0, "{refused} handshakes refused for lack of a certificate");
    assert_eq!(r.metric("sbc_tls_handshakes_total{direction=\"in\"}"), 0.0);
    assert_eq!(r.metric("sbc_sip_messages_in_total{kind=\"request\",method=\"INVITE\"}"), 0.0, "no SIP got through");
}

#[test]
fn a_replaced_certificate_is_served_to_new_connections_without_dropping_an_established_call() {
    let r = rig("tls-reload", "carrier-b.example.net");
    let _tunnel = r.caller_tunnel(TUNNEL_PORT, Some(r.pki.customer.clone()));
    let b = r.carrier(Host::B, 1);
    let subject =
        |r: &Rig| served_subject(&r.topo, Host::A, addr(SBC_A, 5061), Some(&r.pki.customer)).expect("s_client");
    assert!(subject(&r).contains("sbc.example.net"), "the first certificate is served");
    let before = r.metric("sbc_tls_handshakes_total{direction=\"in\"}");
    // A call that holds for 6 s over the caller's connection while the certificate changes under it.
    let uac = r.caller(TUNNEL_PORT, 1, Duration::from_secs(6)).spawn().expect("uac starts");
    std::thread::sleep(Duration::from_millis(1500));
    let renewed = r
        .pki
        .authority
        .issue("sbc-renewed.example.net", &["sbc.example.net", "sbc-renewed.example.net"], &[SBC_A.into()])
        .expect("renewed");
    tests::write_atomically(&r.pki.sbc, &renewed.combined()).expect("replace");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while r.metric("sbc_tls_reloads_total{result=\"ok\"}") < 1.0 {
        assert!(std::time::Instant::now() < deadline, "no reload within 5 s: {}", r.sbc.log_tail());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(subject(&r).contains("sbc-renewed.example.net"), "new connections get the new certificate");
    // A broken file is refused and the renewed certificate stays in force.
    tests::write_atomically(&r.pki.sbc, "-----BEGIN CERTIFICATE-----\nnot base64\n").expect("break");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while r.metric("sbc_tls_reloads_total{result=\"error\"}") < 1.0 {
        assert!(std::time::Instant::now() < deadline, "no failed reload within 5 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(subject(&r).contains("sbc-renewed.example.net"), "the previous certificate stays");
    uac.wait().expect("uac").assert_all_successful(1).expect("the established call ends normally");
    b.wait().expect("carrier b").assert_all_successful(1).expect("carrier b side");
    assert_eq!(r.metric("sbc_tls_reloads_total{result=\"ok\"}"), 1.0);
    // The caller's connection was opened once and never again: the other new handshakes are the two s_client
    // checks.
    assert_eq!(r.metric("sbc_tls_handshakes_total{direction=\"in\"}"), before + 1.0 + 2.0);
    let cdrs = tests::wait_cdrs(&[&r.cdr], 1, Duration::from_secs(5));
    assert_eq!((cdrs.len(), cdrs[0]["release_cause"].as_str()), (1, Some("bye")), "{cdrs:?}");
}

#[test]
fn a_tcp_gateway_is_dialled_on_the_first_call_and_reused() {
    const CALLS: u32 = 5;
    let topo = Topology::single_sbc().expect("topology");
    let config = format!(
        r#"[sip]
listen = ["udp:{SBC_A}:5060", "tcp:{SBC_B}:5060"]

[api]
listen = "{API}"

[[trunk]]
name = "customer-pbx"
match = {{ source = ["{CALLER}/32"] }}

[[trunk]]
name = "carrier-b"
gateways = ["tcp:{CARRIER_B}:5060"]

[[route]]
prefix = ""
to = [{{ trunk = "carrier-b" }}]
"#
    );
    let sbc = Sbc::start_in(&topo.ns(Host::Sbc), "tcp-gateway", &config, addr(SBC_A, 5060), API).expect("sbc");
    let uas = Sipp::new("uas_answer.xml")
        .netns(&topo.ns(Host::B))
        .local_ip(CARRIER_B)
        .local_port(5060)
        .transport("t1")
        .calls(CALLS)
        .limit(LIMIT)
        .trace_messages(true)
        .spawn()
        .expect("uas");
    tests::tls::wait_tcp_listening(&topo, Host::B, 5060, Duration::from_secs(5)).expect("uas listens");
    let uac = Sipp::new("uac_call.xml")
        .netns(&topo.ns(Host::A))
        .local_ip(CALLER)
        .local_port(5060)
        .target(addr(SBC_A, 5060))
        .service("+4930123456")
        .calls(CALLS)
        .rate(10)
        .pause(Duration::from_millis(300))
        .limit(LIMIT)
        .run()
        .expect("uac");
    uac.assert_all_successful(CALLS.into()).expect("caller");
    uas.wait().expect("uas").assert_all_successful(CALLS.into()).expect("carrier over TCP");
    // SIPp closed its side when it finished: that is the one connection the SBC had opened for all the calls.
    let closed = "sbc_tcp_connections_closed_total{reason=\"closed_by_peer\"}";
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while sbc.metric(closed).expect("metric") < 1.0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(sbc.metric(closed).expect("metric"), 1.0, "one connection to the gateway served all {CALLS} calls");
    assert_eq!(sbc.metric("sbc_tcp_connections_active").expect("metric"), 0.0);
    assert_eq!(sbc.metric("sbc_sip_connect_failures_total").expect("metric"), 0.0);
}

#[test]
fn carrier_tls_example_passes_check_config() {
    let example = tests::repo_root().join("config/examples/carrier-tls.toml");
    let dir = std::env::temp_dir().join(format!("sbc-carrier-tls-example-{}", std::process::id()));
    let tls = dir.join("tls");
    std::fs::create_dir_all(&tls).expect("dir");
    let copy = dir.join("carrier-tls.toml");
    std::fs::copy(&example, &copy).expect("copy the example");
    let check = |path: &Path| {
        let out = std::process::Command::new(tests::sbc_binary().expect("sbc")).arg("check-config").arg(path).output();
        let out = out.expect("check-config runs");
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    // Without its certificate files the example is refused, naming the key and the file.
    let (code, text) = check(&copy);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("sip.tls") && text.contains("sbc-chain.pem"), "{text}");
    // With them it passes.
    let ours = TestCa::new("our CA").expect("ca");
    let customers = TestCa::new("customers CA").expect("ca");
    let carrier = TestCa::new("carrier CA").expect("ca");
    let server = ours.issue("sbc.example.net", &["sbc.example.net"], &[SBC_A.into(), SBC_B.into()]).expect("leaf");
    server.write(&tls, "sbc").expect("write");
    std::fs::rename(tls.join("sbc.pem"), tls.join("sbc-chain.pem")).expect("rename");
    std::fs::rename(tls.join("sbc.key"), tls.join("sbc-key.pem")).expect("rename");
    let client = ours.issue("sbc.example.net", &["sbc.example.net"], &[]).expect("leaf");
    std::fs::write(tls.join("sbc-client-chain.pem"), &client.cert).expect("write");
    std::fs::write(tls.join("sbc-client-key.pem"), &client.key).expect("write");
    std::fs::write(tls.join("customers-ca.pem"), customers.pem()).expect("write");
    std::fs::write(tls.join("carrier-ca.pem"), carrier.pem()).expect("write");
    let (code, text) = check(&copy);
    assert_eq!(code, Some(0), "{text}");
    // A key that does not belong to the certificate is refused.
    std::fs::write(tls.join("sbc-key.pem"), &client.key).expect("write");
    let (code, text) = check(&copy);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("sip.tls") && text.contains("key"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
