//! The public TCP edge under abuse (issue 13, point 5): connections per source refused at accept, the first-message,
//! partial-message (slowloris) and idle deadlines, the maximum message size; and, in the single-SBC topology, a
//! flood of 5,000 connection attempts plus 200 slowloris connections from one attacker host (carrier c's host,
//! 198.18.2.11, which is no trunk source) while the customer trunk places calls over TCP.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use tests::netns::{addr, sbc_config, Host, Topology, CALLER, SBC_A, SBC_B};
use tests::sipp::Sipp;
use tests::Sbc;

/// How a client saw its connection after a short wait.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// Still open: accepted.
    Open,
    /// Reset: refused at accept.
    Reset,
    /// Closed with a FIN.
    Closed,
}

fn look(s: &mut TcpStream, wait: Duration) -> Seen {
    s.set_read_timeout(Some(wait)).expect("timeout");
    let mut b = [0u8; 4096];
    match s.read(&mut b) {
        Ok(0) => Seen::Closed,
        Ok(_) => Seen::Open,
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Seen::Open,
        Err(e) if e.kind() == ErrorKind::ConnectionReset => Seen::Reset,
        Err(e) => panic!("unexpected read error {e}"),
    }
}

/// Reads until the server closes the connection; returns how long that took from `since`, or panics after `limit`.
fn closed_after(s: &mut TcpStream, since: Instant, limit: Duration) -> Duration {
    s.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
    let mut b = [0u8; 4096];
    loop {
        match s.read(&mut b) {
            Ok(0) => return since.elapsed(),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return since.elapsed(),
        }
        assert!(since.elapsed() < limit, "the server kept the connection open for {limit:?}");
    }
}

fn closes(sbc: &Sbc, reason: &str) -> f64 {
    sbc.metric(&format!("sbc_tcp_connections_closed_total{{reason=\"{reason}\"}}")).expect("metrics")
}

fn options(local: SocketAddr, branch: &str) -> String {
    format!(
        "OPTIONS sip:ping@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bK{branch}\r\nFrom: <sip:t@h>;tag=1\r\n\
         To: <sip:ping@h>\r\nCall-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

#[test]
fn a_source_over_its_connection_limit_is_reset_at_accept_and_counted() {
    let sbc = Sbc::start_with("tcp-per-source", "tcp_max_connections_per_source = 3\n", "").expect("sbc starts");
    let mut conns: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(sbc.sip).expect("connect")).collect();
    let seen: Vec<Seen> = conns.iter_mut().map(|c| look(c, Duration::from_millis(300))).collect();
    assert_eq!(seen, [Seen::Open, Seen::Open, Seen::Open, Seen::Reset, Seen::Reset]);
    assert_eq!(sbc.metric("sbc_tcp_connections_rejected_total{reason=\"per_source\"}").expect("metrics"), 2.0);
    assert_eq!(sbc.metric("sbc_tcp_source_connections_peak{class=\"other\"}").expect("metrics"), 3.0);
    // A slot freed by a close is there for the next connection.
    drop(conns.remove(0));
    std::thread::sleep(Duration::from_millis(200));
    let mut again = TcpStream::connect(sbc.sip).expect("connect");
    assert_eq!(look(&mut again, Duration::from_millis(300)), Seen::Open);
    assert_eq!(sbc.metric("sbc_tcp_connections_active").expect("metrics"), 3.0);
    assert_eq!(sbc.metric("sbc_tcp_sources_active").expect("metrics"), 1.0);
    let refusals_logged = std::fs::read_to_string(&sbc.log).expect("log").matches("tcp connection refused").count();
    assert_eq!(refusals_logged, 1, "two refusals within 10 s make one log line");
}

#[test]
fn silent_and_keepalive_only_connections_are_closed_at_the_first_message_deadline() {
    let sbc = Sbc::start_with("tcp-first-message", "tcp_first_message_timeout = \"1s\"\n", "").expect("sbc starts");
    let t0 = Instant::now();
    let mut silent = TcpStream::connect(sbc.sip).expect("connect");
    let mut pinging = TcpStream::connect(sbc.sip).expect("connect");
    let pinger = std::thread::spawn({
        let mut s = pinging.try_clone().expect("clone");
        move || {
            // A CRLF keep-alive every 200 ms (RFC 5626 §4.4.1) is traffic, not a message.
            while s.write_all(b"\r\n\r\n").is_ok() {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    });
    let limit = Duration::from_secs(5);
    let (a, b) = (closed_after(&mut silent, t0, limit), closed_after(&mut pinging, t0, limit));
    let _ = pinger.join();
    for d in [a, b] {
        assert!(d >= Duration::from_millis(950) && d < Duration::from_millis(2500), "closed after {d:?}, deadline 1 s");
    }
    assert_eq!(closes(&sbc, "first_message_timeout"), 2.0);
}

#[test]
fn a_message_trickling_in_is_cut_at_the_message_deadline_and_whole_ones_still_pass() {
    let sbc =
        Sbc::start_with("tcp-slowloris", "tcp_message_timeout = \"1s\"\ntcp_first_message_timeout = \"10s\"\n", "")
            .expect("sbc starts");
    let mut s = TcpStream::connect(sbc.sip).expect("connect");
    let local = s.local_addr().expect("addr");
    // A whole message first: answered, so the connection is a good one until it starts to trickle.
    s.write_all(options(local, "whole").as_bytes()).expect("send");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let mut b = [0u8; 4096];
    let n = s.read(&mut b).expect("a response");
    assert!(b[..n].starts_with(b"SIP/2.0 200"), "{}", String::from_utf8_lossy(&b[..n]));
    let slow = options(local, "slow");
    let t0 = Instant::now();
    let mut writer = s.try_clone().expect("clone");
    let trickle = std::thread::spawn(move || {
        for byte in slow.as_bytes().iter().take(100) {
            if writer.write_all(std::slice::from_ref(byte)).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let d = closed_after(&mut s, t0, Duration::from_secs(5));
    let _ = trickle.join();
    assert!(d >= Duration::from_millis(950) && d < Duration::from_millis(2500), "closed after {d:?}, deadline 1 s");
    assert_eq!(closes(&sbc, "message_timeout"), 1.0);
}

#[test]
fn an_oversized_message_closes_the_connection_as_too_large() {
    let sbc = Sbc::start_with("tcp-too-large", "max_message_size = 1024\n", "").expect("sbc starts");
    // Announced too large by its Content-Length.
    let mut s = TcpStream::connect(sbc.sip).expect("connect");
    let head = "OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nCall-ID: big\r\nContent-Length: 5000\r\n\r\n";
    s.write_all(head.as_bytes()).expect("send");
    closed_after(&mut s, Instant::now(), Duration::from_secs(5));
    // Headers that never end: cut at 1 KiB, however much more comes. Our writes fail once the reset arrives,
    // long before 16 MiB (what the socket buffers of both ends can hold is far less).
    let mut s = TcpStream::connect(sbc.sip).expect("connect");
    let line =
        b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    let mut sent = 0;
    while sent < 16 << 20 && s.write_all(line).is_ok() {
        sent += line.len();
    }
    assert!(sent < 16 << 20, "the server took 16 MiB of headers with a 1 KiB maximum");
    assert_eq!(closes(&sbc, "too_large"), 2.0);
    assert_eq!(sbc.metric("sbc_sip_parse_errors_total{transport=\"tcp\",reason=\"too_large\"}").expect("m"), 2.0);
    let logged = std::fs::read_to_string(&sbc.log).expect("log").matches("unframeable input").count();
    assert_eq!(logged, 1, "two bad connections within 10 s make one log line");
}

#[test]
fn an_idle_connection_is_closed_at_the_idle_timeout_counting_our_writes() {
    let sbc = Sbc::start_with("tcp-idle", "tcp_idle_timeout = \"1s\"\n", "").expect("sbc starts");
    let mut s = TcpStream::connect(sbc.sip).expect("connect");
    let local = s.local_addr().expect("addr");
    s.write_all(options(local, "idle").as_bytes()).expect("send");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let mut b = [0u8; 4096];
    let n = s.read(&mut b).expect("a response");
    assert!(b[..n].starts_with(b"SIP/2.0 200"));
    let d = closed_after(&mut s, Instant::now(), Duration::from_secs(5));
    assert!(d >= Duration::from_millis(900) && d < Duration::from_millis(2500), "closed after {d:?}, idle 1 s");
    assert_eq!(closes(&sbc, "idle"), 1.0);
}

/// The attack's figures from one `tcpflood` run.
#[derive(Debug)]
struct Flood {
    attempts: u64,
    connect_failed: u64,
    /// connect() errors by message, for the failure message.
    connect_errors: String,
    held: u64,
    closed_after_ms: Vec<u64>,
}

fn flood_report(out: &str) -> Flood {
    let v: serde_json::Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("tcpflood said {out:?}: {e}"));
    let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {out}"));
    Flood {
        attempts: n("attempts"),
        connect_failed: n("connect_failed"),
        connect_errors: v["connect_errors"].to_string(),
        held: n("held"),
        closed_after_ms: v["closed_after_ms"].as_array().expect("list").iter().filter_map(|x| x.as_u64()).collect(),
    }
}

/// Resident memory of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

const PER_SOURCE: u64 = 32;
const MESSAGE_TIMEOUT_MS: u64 = 2000;
const TRUNK_CALLS: u32 = 100;
const FLOOD: u64 = 5000;
const SLOWLORIS: u64 = 200;
/// The SBC's resident memory stays under this during the attack (a debug build starts at about 19 MiB and peaked at 22 MiB here).
const RSS_BOUND_KIB: u64 = 48 * 1024;

#[test]
fn flood_and_slowloris_from_one_source_hold_the_limits_while_a_tcp_trunk_calls() {
    let topo = Topology::single_sbc().expect("topology");
    let flood_bin = tests::helper_binary("tcpflood").expect("tcpflood helper");
    let base = sbc_config("", "", "", false, None);
    let listen = format!("listen = [\"udp:{SBC_A}:5060\", \"udp:{SBC_B}:5060\"]");
    assert!(base.contains(&listen), "sbc_config's listen line changed: {base}");
    let config = base.replace(
        &listen,
        &format!(
            "listen = [\"udp:{SBC_A}:5060\", \"udp:{SBC_B}:5060\", \"tcp:{SBC_A}:5060\", \"tcp:{SBC_B}:5060\"]\n\
             tcp_max_connections_per_source = {PER_SOURCE}\ntcp_message_timeout = \"{MESSAGE_TIMEOUT_MS}ms\"\n\
             tcp_first_message_timeout = \"4s\""
        ),
    );
    let api = addr([127, 0, 0, 1].into(), 8080);
    let mut sbc = Sbc::start_in(&topo.ns(Host::Sbc), "tcp-edge", &config, addr(SBC_A, 5060), api).expect("sbc starts");
    let rss_before = rss_kib(sbc.id());

    let limit = Duration::from_secs(45);
    let mut uas = Sipp::new("uas_answer.xml")
        .netns(&topo.ns(Host::B))
        .local_ip(Host::B.ip().expect("b"))
        .local_port(5060)
        .calls(TRUNK_CALLS)
        .limit(limit)
        .spawn()
        .expect("uas starts");
    uas.wait_listening(Some(&topo.ns(Host::B)), 5060, Duration::from_secs(5)).expect("uas listens");
    let uac = Sipp::new("uac_call.xml")
        .netns(&topo.ns(Host::A))
        .local_ip(CALLER)
        .local_port(5060)
        .target(addr(SBC_A, 5060))
        .transport("t1")
        .service("+4930123456")
        .calls(TRUNK_CALLS)
        .rate(10)
        .pause(Duration::from_millis(1000))
        .limit(limit)
        .spawn()
        .expect("uac starts");

    // Slowloris first, so it holds the source's slots before the flood competes for them; the flood 3 s later
    // (slowloris has its first 32 connections open by 1.6 s, with room for start-up delays under load).
    let target = addr(SBC_B, 5060).to_string();
    let (every, give_up) = ("200", (MESSAGE_TIMEOUT_MS * 3).to_string());
    let mut slow = topo
        .spawn(Host::C, "slowloris", &flood_bin, &["slowloris", &target, &SLOWLORIS.to_string(), "20", every, &give_up])
        .expect("slowloris starts");
    let started = Instant::now();
    let (mut peak_rss, mut peak_active) = (rss_before, 0.0f64);
    let mut flood = None;
    while slow.try_wait().expect("slowloris").is_none()
        || flood.as_mut().is_none_or(|f: &mut tests::netns::Process| f.try_wait().expect("flood").is_none())
    {
        if flood.is_none() && started.elapsed() >= Duration::from_secs(3) {
            let args = ["flood", &target, &FLOOD.to_string(), "500", "1000"];
            flood = Some(topo.spawn(Host::C, "flood", &flood_bin, &args).expect("flood starts"));
        }
        assert!(sbc.is_running(), "the sbc died under the attack:\n{}", sbc.log_tail());
        assert!(started.elapsed() < Duration::from_secs(40), "the attack did not end within 40 s");
        peak_rss = peak_rss.max(rss_kib(sbc.id()));
        peak_active = peak_active.max(sbc.metric("sbc_tcp_connections_active").expect("metrics"));
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut flood = flood.expect("the flood ran");
    let ok = |p: &mut tests::netns::Process| {
        let status = p.wait_timeout(Duration::from_secs(1)).expect("exited");
        assert!(status.success(), "tcpflood failed: {}", p.output_tail());
        flood_report(&std::fs::read_to_string(&p.stdout).expect("report"))
    };
    let (slow_report, flood_report) = (ok(&mut slow), ok(&mut flood));
    let uac = uac.wait().expect("uac finishes");
    let uas = uas.wait().expect("uas finishes");
    // The trunk's calls all went through, on both sides.
    uac.assert_all_successful(u64::from(TRUNK_CALLS)).expect("every trunk call succeeded (caller side)");
    uas.assert_all_successful(u64::from(TRUNK_CALLS)).expect("every trunk call succeeded (carrier side)");
    assert!(sbc.is_running(), "the sbc is up");
    assert_eq!(sbc.http_get("/health").expect("health").trim(), "ok");

    // Every attempt was made and ended one way or another.
    assert_eq!((slow_report.attempts, flood_report.attempts), (SLOWLORIS, FLOOD));
    assert_eq!(
        (slow_report.connect_failed, flood_report.connect_failed),
        (0, 0),
        "connect() failed: slowloris {}, flood {}",
        slow_report.connect_errors,
        flood_report.connect_errors
    );

    // The per-source limit held: never more than 32 open from the attacker (plus the trunk's connection in the
    // global count), and it was reached.
    let m = |name: &str| sbc.metric(name).expect("metrics");
    assert_eq!(m("sbc_tcp_source_connections_peak{class=\"other\"}"), PER_SOURCE as f64);
    assert!(peak_active <= (PER_SOURCE + 2) as f64, "{peak_active} connections open at once");
    assert!(m("sbc_tcp_source_connections_peak{class=\"trunk\"}") >= 1.0, "the trunk connected over TCP");

    // Slowloris: the connections refused at accept were reset at once; every accepted one was closed at the
    // message deadline (2 s after its first byte), none lasted longer.
    let (refused, cut): (Vec<u64>, Vec<u64>) = slow_report.closed_after_ms.iter().partition(|&&ms| ms < 1000);
    let flood_refused = flood_report.closed_after_ms.len() as u64;
    println!(
        "slowloris: {} connections, {} reset at accept, {} cut at the message deadline after {}..{} ms\n\
         flood: {} attempts, {} reset at accept, {} accepted and held 1 s\n\
         sbc: RSS {rss_before} KiB before, peak {peak_rss} KiB; at most {peak_active} TCP connections open \
         (sampled every 200 ms)",
        slow_report.attempts,
        refused.len(),
        cut.len(),
        cut.iter().min().unwrap_or(&0),
        cut.iter().max().unwrap_or(&0),
        flood_report.attempts,
        flood_refused,
        flood_report.held,
    );
    assert_eq!(slow_report.held, 0, "slowloris connections still open when the attacker gave up");
    assert!(cut.len() as u64 >= PER_SOURCE, "the first {PER_SOURCE} slowloris connections were accepted: {cut:?}");
    let latest = *cut.iter().max().expect("some cut");
    assert!(
        cut.iter().all(|&ms| ms + 100 >= MESSAGE_TIMEOUT_MS) && latest <= MESSAGE_TIMEOUT_MS + 1500,
        "slowloris connections closed after {cut:?} ms, deadline {MESSAGE_TIMEOUT_MS} ms"
    );
    assert_eq!(m("sbc_tcp_connections_closed_total{reason=\"message_timeout\"}"), cut.len() as f64);

    // The flood: what was not accepted and held for its second was reset at accept, and counted.
    assert_eq!(flood_report.held + flood_refused, FLOOD);
    assert!(flood_report.closed_after_ms.iter().all(|&ms| ms < 1000), "only refusals close a flood connection");
    assert_eq!(
        m("sbc_tcp_connections_rejected_total{reason=\"per_source\"}"),
        (refused.len() as u64 + flood_refused) as f64,
        "every refusal at accept is counted"
    );
    assert!(flood_refused >= FLOOD / 2, "the flood was mostly refused: {flood_refused} of {FLOOD}");

    // A flood of refusals is not a flood of log lines: one per 10 s per reason and listener.
    let logged = std::fs::read_to_string(&sbc.log).expect("log").matches("tcp connection refused").count();
    assert!(
        (1..=4).contains(&logged),
        "{logged} refusal log lines for {} refusals",
        refused.len() as u64 + flood_refused
    );

    // Memory stayed bounded.
    assert!(peak_rss < RSS_BOUND_KIB, "sbc RSS peaked at {peak_rss} KiB, bound {RSS_BOUND_KIB} KiB");
}
