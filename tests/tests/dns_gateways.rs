//! A carrier known by its DNS name (RFC 3263), in the single-SBC topology of DESIGN.md: dnsmasq in carrier b's
//! namespace (198.18.2.10, port 53) serves NAPTR, SRV and A records for two targets, b (198.18.2.10) and c
//! (198.18.2.11), both SIPp UAS; the caller is a SIPp UAC at 198.18.1.10. The SBC resolves the names at start
//! (`[dns] servers`), and each test waits for that before calling.
//!
//! Records (dnsmasq's `naptr-record`, `srv-host`, `host-record`):
//! - `carrier.test`: NAPTR to `_sip._tcp.carrier.test` (order 10) before `_sip._udp.carrier.test` (order 20); the TCP
//!   SRV has b at priority 10 and c at priority 20.
//! - `udp-priority.test`: `_sip._udp` SRV with b at priority 10 and c at priority 20.
//! - `weighted.test`: `_sip._udp` SRV with b and c both at priority 10, weights 80 and 20.

use std::path::PathBuf;
use std::time::{Duration, Instant};
use tests::netns::{addr, Host, Process, Topology, CALLER, CARRIER_B, CARRIER_C, SBC_A, SBC_B};
use tests::sipp::{Run, Running, Sipp};
use tests::Sbc;

const LIMIT: Duration = Duration::from_secs(40);

struct Rig {
    topo: Topology,
    sbc: Sbc,
    cdr: PathBuf,
    dns: Process,
}

/// dnsmasq's configuration: only the records of this test, served on b's address.
fn dnsmasq_conf() -> String {
    format!(
        "no-resolv\nno-hosts\nno-negcache\nbind-interfaces\nlisten-address={CARRIER_B}\nport=53\nlocal-ttl=1\n\
         local=/test/\n\
         log-queries\nlog-facility=-\n\
         naptr-record=carrier.test,10,10,S,SIP+D2T,,_sip._tcp.carrier.test\n\
         naptr-record=carrier.test,20,10,S,SIP+D2U,,_sip._udp.carrier.test\n\
         srv-host=_sip._tcp.carrier.test,b.carrier.test,5060,10,100\n\
         srv-host=_sip._tcp.carrier.test,c.carrier.test,5060,20,100\n\
         srv-host=_sip._udp.carrier.test,b.carrier.test,5060,10,100\n\
         srv-host=_sip._udp.udp-priority.test,b.carrier.test,5060,10,100\n\
         srv-host=_sip._udp.udp-priority.test,c.carrier.test,5060,20,100\n\
         srv-host=_sip._udp.weighted.test,b.carrier.test,5060,10,80\n\
         srv-host=_sips._tcp.secure.test,b.carrier.test,5061,10,100\n\
         srv-host=_sips._tcp.secure.test,c.carrier.test,5061,20,100\n\
         srv-host=_sip._udp.weighted.test,c.carrier.test,5060,10,20\n\
         host-record=b.carrier.test,{CARRIER_B}\nhost-record=c.carrier.test,{CARRIER_C}\n"
    )
}

/// Extra configuration of one test: listeners (`, "tls:…"`), keys of `[sip]`, keys of the carrier trunk.
#[derive(Default)]
struct Extra {
    listen: String,
    sip: String,
    trunk: String,
}

/// The SBC with one carrier trunk whose only gateway is `gateway` (a name), every number routed to it.
fn sbc_config(gateway: &str, cdr: &std::path::Path, extra: &Extra) -> String {
    let Extra { listen, sip, trunk } = extra;
    format!(
        r#"[sip]
listen = ["udp:{SBC_A}:5060", "udp:{SBC_B}:5060", "tcp:{SBC_B}:5060"{listen}]
{sip}

[api]
listen = "127.0.0.1:8080"

[dns]
servers = ["{CARRIER_B}:53"]
timeout = "1s"
min_refresh = "1s"
max_refresh = "10s"

[[trunk]]
name = "customer-pbx"
match = {{ source = ["{CALLER}/32"] }}

[[trunk]]
name = "carrier"
gateways = ["{gateway}"]
{trunk}

[[route]]
prefix = ""
to = [{{ trunk = "carrier" }}]

[cdr]
path = "{}"
"#,
        cdr.display()
    )
}

fn rig(name: &str, gateway: &str) -> Rig {
    rig_with(name, gateway, |_| Extra::default())
}

/// [`rig`] with extra keys for `[sip]` and the carrier trunk, made from the topology's directory.
fn rig_with(name: &str, gateway: &str, extra: impl FnOnce(&std::path::Path) -> Extra) -> Rig {
    let dnsmasq = tests::require_tool("dnsmasq", "dnsmasq-base");
    let topo = Topology::single_sbc().expect("topology");
    let conf = topo.dir().join("dnsmasq.conf");
    std::fs::write(&conf, dnsmasq_conf()).expect("dnsmasq.conf");
    let args = ["--keep-in-foreground", "--pid-file", "--user=root", &format!("--conf-file={}", conf.display())];
    let dns = topo.spawn(Host::B, "dnsmasq", &dnsmasq, &args).expect("dnsmasq starts");
    topo.wait_udp_listening(Host::B, 53, Duration::from_secs(5)).expect("dnsmasq listens");
    let cdr = topo.dir().join("cdr.jsonl");
    let extra = extra(topo.dir());
    let sbc = Sbc::start_in(
        &topo.ns(Host::Sbc),
        name,
        &sbc_config(gateway, &cdr, &extra),
        addr(SBC_A, 5060),
        addr([127, 0, 0, 1].into(), 8080),
    )
    .expect("sbc starts");
    // Calls only once the name is resolved: a call never waits on a lookup, it would fail over instead.
    let deadline = Instant::now() + Duration::from_secs(10);
    let answered = |s: &Sbc| {
        let n = |r: &str| s.metric(&format!("sbc_dns_lookups_total{{result=\"{r}\"}}")).expect("metrics");
        n("ok") + n("empty")
    };
    while answered(&sbc) < 1.0 {
        assert!(Instant::now() < deadline, "{gateway} never resolved:\n{}", sbc.log_tail());
        std::thread::sleep(Duration::from_millis(100));
    }
    Rig { topo, sbc, cdr, dns }
}

impl Rig {
    /// A SIPp UAS as carrier `host` (B or C) over `transport` (`u1`, `t1`), listening before this returns.
    fn carrier(&self, host: Host, uas: Sipp, transport: &str, calls: u32, limit: Duration) -> Running {
        let (ns, ip) = (self.topo.ns(host), host.ip().expect("carrier address"));
        let mut r = uas
            .netns(&ns)
            .local_ip(ip)
            .local_port(5060)
            .transport(transport)
            .calls(calls)
            .limit(limit)
            .trace_messages(calls <= 100)
            .spawn()
            .expect("uas starts");
        r.wait_listening(Some(&ns), 5060, Duration::from_secs(5)).expect("uas listens");
        r
    }

    /// `calls` calls from the caller at `rate` per second, each held `hold`.
    fn call(&self, calls: u32, rate: u32, hold: Duration, port: u16) -> Run {
        Sipp::new("uac_call.xml")
            .netns(&self.topo.ns(Host::A))
            .local_ip(CALLER)
            .local_port(port)
            .target(addr(SBC_A, 5060))
            .service("+4930123456")
            .calls(calls)
            .rate(rate)
            .pause(hold)
            .limit(LIMIT)
            .trace_messages(calls <= 100)
            .run()
            .expect("uac runs")
    }

    fn cdrs(&self, n: usize) -> Vec<serde_json::Value> {
        tests::wait_cdrs(&[&self.cdr], n, Duration::from_secs(5))
    }
}

/// Each form of RFC 3263 §4 finds its target: a port given (A only), no NAPTR (SRV of each transport), neither
/// NAPTR nor SRV (A on the default port).
#[test]
fn every_rfc_3263_form_reaches_its_target() {
    for (i, (gateway, host)) in
        [("sip:b.carrier.test:5060", Host::B), ("sip:udp-priority.test", Host::B), ("sip:c.carrier.test", Host::C)]
            .into_iter()
            .enumerate()
    {
        let r = rig(&format!("dns-form-{i}"), gateway);
        let uas = r.carrier(host, Sipp::new("uas_answer.xml"), "u1", 2, LIMIT);
        r.call(2, 10, Duration::from_millis(100), 5060).assert_all_successful(2).expect(gateway);
        uas.wait().expect("uas finishes").assert_all_successful(2).expect(gateway);
        eprintln!("{gateway}: 2 calls answered at {}", host.ip().expect("address"));
    }
}

/// A name that does not exist has no target: calls are refused at once (no carrier left), never held.
#[test]
fn a_name_without_records_fails_calls_at_once() {
    let r = rig("dns-nxdomain", "sip:nowhere.test");
    assert!(r.sbc.metric("sbc_dns_lookups_total{result=\"empty\"}").expect("metrics") >= 1.0);
    let started = Instant::now();
    let run = Sipp::new("uac_expect_status.xml")
        .set("expected", "503")
        .netns(&r.topo.ns(Host::A))
        .local_ip(CALLER)
        .local_port(5060)
        .target(addr(SBC_A, 5060))
        .service("+4930123456")
        .calls(3)
        .rate(10)
        .limit(LIMIT)
        .trace_messages(true)
        .run()
        .expect("uac runs");
    run.assert_all_successful(3).expect("every call refused with 503");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "refused at once: {took:?}");
    assert!(r.sbc.log_tail().contains("has no target"), "{}", r.sbc.log_tail());
}

/// The statuses each CDR's attempts ended with.
fn attempts(cdr: &serde_json::Value) -> Vec<u64> {
    cdr["attempts"].as_array().expect("attempts").iter().map(|a| a["status"].as_u64().expect("status")).collect()
}

#[test]
fn naptr_then_srv_sends_calls_to_the_preferred_target() {
    let r = rig("dns-preferred", "sip:carrier.test");
    // Only b answers: a call sent to c (priority 20) would fail, as nothing listens there.
    let b = r.carrier(Host::B, Sipp::new("uas_answer.xml"), "t1", 5, LIMIT);
    let uac = r.call(5, 10, Duration::from_millis(200), 5060);
    uac.assert_all_successful(5).expect("caller side");
    b.wait().expect("b finishes").assert_all_successful(5).expect("b took every call");
    let cdrs = r.cdrs(5);
    assert_eq!(cdrs.len(), 5);
    assert!(cdrs.iter().all(|c| attempts(c) == [200]), "one attempt each, at b: {cdrs:?}");
    assert_eq!(r.sbc.metric("sbc_dns_lookups_total{result=\"error\"}").expect("metrics"), 0.0, "{}", r.sbc.log_tail());
}

#[test]
fn a_resolver_that_stops_answering_leaves_the_last_answer_in_force() {
    let mut r = rig("dns-silent", "sip:carrier.test");
    let b = r.carrier(Host::B, Sipp::new("uas_answer.xml"), "t1", 4, LIMIT);
    r.call(2, 10, Duration::from_millis(200), 5060).assert_all_successful(2).expect("calls with the resolver up");
    r.dns.kill();
    // The SBC's refreshes (every second here) now time out: counted, and the answer stays.
    let deadline = Instant::now() + Duration::from_secs(15);
    while r.sbc.metric("sbc_dns_lookups_total{result=\"error\"}").expect("metrics") < 1.0 {
        assert!(Instant::now() < deadline, "no failed lookup counted:\n{}", r.sbc.log_tail());
        std::thread::sleep(Duration::from_millis(200));
    }
    let started = Instant::now();
    r.call(2, 10, Duration::from_millis(200), 5062).assert_all_successful(2).expect("calls with the resolver gone");
    let took = started.elapsed();
    b.wait().expect("b finishes").assert_all_successful(4).expect("b took all four calls");
    let cdrs = r.cdrs(4);
    assert!(cdrs.iter().all(|c| attempts(c) == [200]), "{cdrs:?}");
    assert!(took < Duration::from_secs(5), "no call waited on the silent resolver: {took:?}");
    assert!(r.sbc.log_tail().contains("the last answer stays in force"), "{}", r.sbc.log_tail());
}

/// `config/examples/carrier-dns.toml` passes `sbc check-config` as shipped (no DNS needed), and a bad gateway name
/// in it is an error naming the key and its line.
#[test]
fn carrier_dns_example_passes_check_config() {
    let check = |path: &std::path::Path| {
        let out = std::process::Command::new(tests::sbc_binary().expect("sbc built"))
            .args(["check-config", path.to_str().expect("utf8")])
            .output()
            .expect("sbc runs");
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let shipped = tests::repo_root().join("config/examples/carrier-dns.toml");
    let text = std::fs::read_to_string(&shipped).expect("config/examples/carrier-dns.toml");
    let (code, out) = check(&shipped);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("carrier-dns.toml: OK"), "{out}");
    let dir = std::env::temp_dir().join(format!("sbc-dns-cc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let bad = dir.join("bad.toml");
    let line = text.lines().position(|l| l.contains("\"sip:carrier.example.net\"")).expect("the gateway line") + 1;
    std::fs::write(&bad, text.replace("sip:carrier.example.net", "sip:carrier_example.net")).expect("write");
    let (code, out) = check(&bad);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains(&format!("bad.toml:{line}: trunk[1].gateways[0]")), "{out}");
    assert!(out.contains("not a host name"), "{out}");
}

#[test]
fn with_the_preferred_target_stopped_calls_complete_on_the_next() {
    let r = rig("dns-failover", "sip:carrier.test");
    let b = r.carrier(Host::B, Sipp::new("uas_answer.xml"), "t1", 2, LIMIT);
    r.call(2, 10, Duration::from_millis(200), 5060).assert_all_successful(2).expect("calls while b is up");
    // b's SIPp ends after its two calls: its TCP port refuses connections from now on.
    b.wait().expect("b finishes").assert_all_successful(2).expect("b took the first calls");
    let c = r.carrier(Host::C, Sipp::new("uas_answer.xml"), "t1", 3, LIMIT);
    let started = Instant::now();
    r.call(3, 10, Duration::from_millis(200), 5062).assert_all_successful(3).expect("calls with b down");
    let took = started.elapsed();
    c.wait().expect("c finishes").assert_all_successful(3).expect("c took the calls b could not");
    let cdrs = r.cdrs(5);
    let after: Vec<Vec<u64>> = cdrs[2..].iter().map(attempts).collect();
    // 503: the transport error at b (connection refused), then c answered, within one attempt of the route.
    assert_eq!(after, vec![vec![503, 200]; 3], "{cdrs:?}");
    eprintln!("failover: 3 calls with b down completed on c in {took:?} (each tried b first: connection refused)");
    assert!(took < Duration::from_secs(10), "no call waited for a timer: {took:?}");
}

#[test]
fn a_503_from_the_preferred_udp_target_sends_the_call_to_the_next() {
    let r = rig("dns-503", "udp:udp-priority.test");
    let b = r.carrier(Host::B, Sipp::new("uas_reject.xml").set("status", "503"), "u1", 3, LIMIT);
    let c = r.carrier(Host::C, Sipp::new("uas_answer.xml"), "u1", 3, LIMIT);
    r.call(3, 10, Duration::from_millis(200), 5060).assert_all_successful(3).expect("caller side");
    b.wait().expect("b finishes").assert_all_successful(3).expect("b refused each call once");
    c.wait().expect("c finishes").assert_all_successful(3).expect("c answered each call");
    let cdrs = r.cdrs(3);
    assert!(cdrs.iter().all(|c| attempts(c) == [503, 200]), "{cdrs:?}");
}

#[test]
fn equal_priority_weights_80_20_split_1000_calls_within_5_points() {
    const CALLS: u32 = 1000;
    let r = rig("dns-weights", "udp:weighted.test");
    // Neither carrier knows its share in advance: each takes calls until its SIPp times out after the caller is
    // done, and its count of successful calls is what it received.
    let uas_limit = Duration::from_secs(45);
    let b = r.carrier(Host::B, Sipp::new("uas_answer.xml"), "u1", CALLS, uas_limit);
    let c = r.carrier(Host::C, Sipp::new("uas_answer.xml"), "u1", CALLS, uas_limit);
    let uac = r.call(CALLS, 100, Duration::from_millis(100), 5060);
    uac.assert_all_successful(CALLS.into()).expect("caller side");
    let (b, c) = (b.wait().expect("b finishes"), c.wait().expect("c finishes"));
    let (at_b, at_c) = (b.count("SuccessfulCall(C)"), c.count("SuccessfulCall(C)"));
    assert_eq!((b.count("FailedCall(C)"), c.count("FailedCall(C)")), (0, 0), "{}\n{}", b.diagnostics, c.diagnostics);
    assert_eq!(at_b + at_c, u64::from(CALLS), "every call reached one carrier once: b {at_b}, c {at_c}");
    let share_b = at_b as f64 / f64::from(CALLS);
    eprintln!(
        "weights 80/20: b took {at_b}, c took {at_c} of {CALLS} calls ({:.1}% / {:.1}%)",
        share_b * 100.0,
        (1.0 - share_b) * 100.0
    );
    assert!((0.75..=0.85).contains(&share_b), "b's share {share_b:.3} is not within 5 points of 0.80");
}

/// `sips:secure.test`: SRV `_sips._tcp` names b (priority 10) and c (priority 20), both behind stunnel. RFC 5922: a
/// target's certificate must carry the domain looked up, not the SRV target's host name. b's names only
/// `b.carrier.test`: its handshake is refused and every call completes on c, whose certificate says `secure.test`.
#[test]
fn a_tls_target_must_present_the_looked_up_domain_and_calls_fail_over_to_one_that_does() {
    use tests::tls::{stunnel, TestCa, Tunnel};
    let loopback = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    let ca = TestCa::new("dns test CA").expect("CA");
    let mut files = None;
    let r = rig_with("dns-tls", "sips:secure.test", |dir| {
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).expect("write CA");
        let sbc = ca.issue("sbc.example.net", &["sbc.example.net"], &[SBC_B.into()]).expect("sbc certificate");
        let sbc = sbc.write(dir, "sbc").expect("write");
        let b = ca.issue("b.carrier.test", &["b.carrier.test"], &[]).expect("leaf").write(dir, "b").expect("write");
        let c = ca.issue("secure.test", &["secure.test"], &[]).expect("leaf").write(dir, "c").expect("write");
        files = Some((b, c));
        Extra {
            listen: format!(", \"tls:{SBC_B}:5061\""),
            sip: format!("tls = {{ cert = \"{}\", key = \"{}\" }}", sbc.0.display(), sbc.1.display()),
            trunk: format!("tls = {{ ca = \"{}\" }}", ca_file.display()),
        }
    });
    let (b_cert, c_cert) = files.expect("certificates");
    let mut tunnels = Vec::new();
    for (host, ip, cert) in [(Host::B, CARRIER_B, b_cert), (Host::C, CARRIER_C, c_cert)] {
        let t = Tunnel {
            client: false,
            accept: addr(ip, 5061),
            connect: std::net::SocketAddr::new(loopback, 5060),
            cert: Some(cert),
            verify: None,
        };
        tunnels.push(stunnel(&r.topo, host, &format!("tls-{}", host.suffix()), &t).expect("carrier stunnel"));
    }
    let uas = |host: Host| {
        let mut u = Sipp::new("uas_answer.xml")
            .netns(&r.topo.ns(host))
            .local_ip(loopback)
            .local_port(5060)
            .transport("t1")
            .calls(3)
            .limit(LIMIT)
            .trace_messages(true)
            .spawn()
            .expect("uas starts");
        tests::tls::wait_tcp_listening(&r.topo, host, 5060, Duration::from_secs(5)).expect("uas listens");
        u.try_wait().expect("uas runs");
        u
    };
    let (b, c) = (uas(Host::B), uas(Host::C));
    r.call(3, 10, Duration::from_millis(200), 5060).assert_all_successful(3).expect("caller side");
    c.wait().expect("c finishes").assert_all_successful(3).expect("c answered every call");
    drop(b);
    let cdrs = r.cdrs(3);
    assert!(cdrs.iter().all(|c| attempts(c) == [503, 200]), "b refused at the handshake, then c: {cdrs:?}");
    let refused = r.sbc.metric("sbc_tls_handshake_failures_total{direction=\"out\",reason=\"certificate_name\"}");
    let refused = refused.expect("metrics");
    assert!((1.0..=3.0).contains(&refused), "{refused} handshakes with b refused for its name");
    assert_eq!(r.sbc.metric("sbc_tls_handshakes_total{direction=\"out\"}").expect("metrics"), 1.0, "one to c, reused");
    eprintln!("sips:secure.test: b's certificate (b.carrier.test) refused {refused} time(s), 3 calls completed on c");
}
