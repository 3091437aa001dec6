//! The public edge against real attack tools, in the single-SBC topology: sipvicious scans and an INVITE flood
//! come from the host of carrier c (198.18.2.11), which is no trunk in this configuration (a stranger on the
//! carriers' side), while the customer trunk (198.18.1.10) places calls to carrier b (198.18.2.10).
//!
//! `calls.unknown_source = "drop"`: a stranger gets no answer at all. The edge guard bans a scanner at its first
//! request and a flooder at its rate limit (`rate_unknown`, 30 messages per second by default); with XDP the ban
//! goes into the kernel, where the flood is dropped before any socket sees it.

use std::time::{Duration, Instant};
use tests::fleet::{self, Media};
use tests::netns::{addr, Host, Topology, CALLER, CARRIER_B, CARRIER_C, SBC_A, SBC_B};
use tests::procfs::{cpu_ticks, rss_kib, TICKS_PER_SECOND};
use tests::sipp::{Running, Sipp};
use tests::{media_relay_binary, Sbc};

/// The configuration of these tests: the customer trunk, carrier b only (so carrier c's host is a stranger),
/// strangers dropped, media anchored with `xdp`.
fn edge_config(topo: &Topology, xdp: &str) -> String {
    let cdr = topo.dir().join("cdr.jsonl");
    format!(
        r#"[sip]
listen = ["udp:{SBC_A}:5060", "udp:{SBC_B}:5060"]

[api]
listen = "127.0.0.1:8080"

[log]
level = "info"

[[trunk]]
name = "customer-pbx"
match = {{ source = ["{CALLER}/32"] }}

[[trunk]]
name = "carrier-b"
gateways = ["udp:{CARRIER_B}:5060"]

[[route]]
prefix = ""
to = [{{ trunk = "carrier-b", priority = 1 }}]

[calls]
unknown_source = "drop"

[cdr]
path = "{}"

[media]
interfaces = [{{ name = "a", address = "{SBC_A}" }}, {{ name = "b", address = "{SBC_B}" }}]
ports = "30000-31999"
xdp = "{xdp}"
"#,
        cdr.display()
    )
}

/// The floods take a core each: one at a time, or each would measure the other.
static FLOOD: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_flood_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    FLOOD.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn start_sbc(topo: &Topology, name: &str, xdp: &str) -> Sbc {
    Sbc::start_in(
        &topo.ns(Host::Sbc),
        name,
        &edge_config(topo, xdp),
        addr(SBC_A, 5060),
        addr([127, 0, 0, 1].into(), 8080),
    )
    .expect("sbc starts")
}

/// Carrier b: answers every call (with SDP), any number of them.
fn carrier(topo: &Topology, calls: u32, limit: Duration) -> Running {
    let ns = topo.ns(Host::B);
    let mut uas = Sipp::new("uas_answer_rtp.xml")
        .netns(&ns)
        .local_ip(CARRIER_B)
        .local_port(5060)
        .key("rtp_port", "7078")
        .calls(calls)
        .limit(limit)
        .trace_messages(true)
        .spawn()
        .expect("uas starts");
    uas.wait_listening(Some(&ns), 5060, Duration::from_secs(5)).expect("uas listens");
    uas
}

/// The customer trunk placing `calls` short calls at `rate` per second from port `port`.
fn trunk_calls(topo: &Topology, port: u16, calls: u32, rate: u32, limit: Duration) -> Running {
    Sipp::new("uac_call.xml")
        .netns(&topo.ns(Host::A))
        .local_ip(CALLER)
        .local_port(port)
        .target(addr(SBC_A, 5060))
        .service("+4930123456")
        .calls(calls)
        .rate(rate)
        .pause(Duration::from_millis(500))
        .limit(limit)
        .spawn()
        .expect("uac starts")
}

fn metric(sbc: &Sbc, name: &str) -> f64 {
    sbc.metric(name).unwrap_or(0.0)
}

/// svmap and svwar (Debian's sipvicious) from a stranger's host against the carriers' side find no SIP server and
/// no extension; the scanner is banned (its User-Agent) and counted; the trunk's calls placed meanwhile all succeed.
#[test]
fn sipvicious_finds_no_sip_server_and_no_extension_and_the_scanner_is_banned() {
    let svmap = tests::require_tool("svmap", "sipvicious");
    let svwar = tests::require_tool("svwar", "sipvicious");
    let topo = Topology::single_sbc().expect("topology");
    let sbc = start_sbc(&topo, "edge-scan", "auto");
    let uas = carrier(&topo, 20, Duration::from_secs(60));
    let uac = trunk_calls(&topo, 5060, 20, 2, Duration::from_secs(60));

    let target = SBC_B.to_string();
    // sipvicious prints its findings on stderr: read both.
    let both = |tool: &std::path::Path, args: &str| {
        let cmd = format!("{} {args} 2>&1", tool.display());
        topo.exec(Host::C, "sh", &["-c", &cmd]).expect("sipvicious runs")
    };
    let map = both(&svmap, &format!("-p 5060 -t 0.1 {target}"));
    eprintln!("svmap:\n{map}");
    assert!(!map.contains(&format!("{target}:5060")), "svmap found the SBC:\n{map}");
    assert!(map.contains("found nothing"), "svmap says it found nothing:\n{map}");
    let war = both(&svwar, &format!("-e 100-200 -m INVITE --force -t 0.05 {target}"));
    eprintln!("svwar:\n{war}");
    // svwar prints one table row per extension it found ("| 100 | reqauth |"), none otherwise.
    let found: Vec<&str> =
        war.lines().filter(|l| l.starts_with('|') && l.chars().any(|c| c.is_ascii_digit())).collect();
    assert!(found.is_empty(), "svwar found extensions: {found:?}\n{war}");
    assert!(war.contains("found nothing"), "svwar says it found nothing:\n{war}");

    let bans = metric(&sbc, "sbc_edge_bans_total{reason=\"scanner\",origin=\"local\"}");
    assert_eq!(bans, 1.0, "the scanning host is banned once, for its User-Agent");
    assert!(metric(&sbc, "sbc_edge_bans_active") >= 1.0);
    assert!(metric(&sbc, "sbc_messages_dropped_total{reason=\"scanner\"}") >= 1.0, "the scan is counted");
    let log = std::fs::read_to_string(&sbc.log).unwrap_or_default();
    assert!(log.contains("source banned") && log.contains(&CARRIER_C.to_string()), "the ban is in the log");

    uac.wait().expect("uac runs").assert_all_successful(20).expect("every trunk call placed during the scans succeeds");
    uas.wait().expect("uas runs");
}

/// The process CPU of `pid`, in cores, between two samples.
fn cores(before: (Instant, u64), after: (Instant, u64)) -> f64 {
    let wall = after.0.duration_since(before.0).as_secs_f64();
    (after.1.saturating_sub(before.1)) as f64 / TICKS_PER_SECOND / wall
}

/// What SIPp sent in a run that ended: its `OutgoingCall` count (one INVITE each in the flood scenario).
fn sent(run: &tests::sipp::Run) -> u64 {
    run.count("OutgoingCall(C)")
}

/// An INVITE flood from a stranger for 60 s while 100 established calls carry RTP both ways and the customer
/// trunk places 20 calls per second, with native XDP on the SBC's interfaces: the flooder is banned within its
/// first second and its packets are dropped by the XDP program (its drop counter covers the flood); the flood adds
/// little to the sbc process's CPU and its memory stays bounded; every established call keeps its media and
/// ends with BYE on both legs with one CDR; at least 99% of the trunk's new calls succeed.
#[test]
fn invite_flood_from_a_stranger_is_dropped_in_the_kernel_while_calls_and_media_go_on() {
    const LONG_CALLS: u32 = 100;
    const FLOOD_SECS: u64 = 60;
    const TRUNK_RATE: u32 = 20;
    let trunk_calls_n = TRUNK_RATE * FLOOD_SECS as u32;
    let media = Media { calls: LONG_CALLS, pps: 50, seconds: FLOOD_SECS + 15 };
    let _alone = one_flood_at_a_time();
    let topo = Topology::single_sbc().expect("topology");
    // Native XDP forwards the media: forwarding on, full checksums, XDP programs on the veth peers.
    let _helpers = topo.prepare_xdp(&media_relay_binary().expect("media-relay built")).expect("xdp path");
    let sbc = start_sbc(&topo, "edge-flood", "native");
    let pid = sbc.id();
    let uas = carrier(&topo, LONG_CALLS + trunk_calls_n, Duration::from_secs(FLOOD_SECS + 80));

    // 100 calls held up with RTP both ways.
    let mut fleet_a = fleet::spawn(&topo, Host::A, "fleet-a", addr(CALLER, 7078), media, 0xA000_0000, 0xB000_0000);
    let mut fleet_b = fleet::spawn(&topo, Host::B, "fleet-b", addr(CARRIER_B, 7078), media, 0xB000_0000, 0xA000_0000);
    let long = Sipp::new("uac_call_rtp.xml")
        .netns(&topo.ns(Host::A))
        .local_ip(CALLER)
        .local_port(5062)
        .target(addr(SBC_A, 5060))
        .service("+4930123456")
        .key("rtp_port", "7078")
        .calls(LONG_CALLS)
        .rate(25)
        .pause(Duration::from_secs(FLOOD_SECS + 20))
        .limit(Duration::from_secs(FLOOD_SECS + 60))
        .trace_messages(true)
        .spawn()
        .expect("long calls start");
    let dir = topo.dir().to_owned();
    let (a_targets, b_targets) = (dir.join("fleet-a.targets"), dir.join("fleet-b.targets"));
    fleet::write_targets(&long, &uas, LONG_CALLS, &a_targets, &b_targets, Duration::from_secs(30));

    // The trunk's new calls, through the whole flood.
    let trunk = trunk_calls(&topo, 5064, trunk_calls_n, TRUNK_RATE, Duration::from_secs(FLOOD_SECS + 40));
    std::thread::sleep(Duration::from_secs(2));
    let idle = (Instant::now(), cpu_ticks(pid).expect("sbc cpu"));
    std::thread::sleep(Duration::from_secs(3));
    let before_flood = (Instant::now(), cpu_ticks(pid).expect("sbc cpu"));
    let baseline = cores(idle, before_flood);

    // The flood: as fast as SIPp sends INVITEs, for 60 s.
    let flood = Sipp::new("flood_invite.xml")
        .netns(&topo.ns(Host::C))
        .local_ip(CARRIER_C)
        .local_port(5060)
        .target(addr(SBC_B, 5060))
        .service("+4930999999")
        .calls(2_000_000)
        .rate(20_000)
        .limit(Duration::from_secs(FLOOD_SECS))
        .spawn()
        .expect("flood starts");
    let flood_start = Instant::now();
    // Let the ban take hold (its first second), then watch the process for the rest of the flood.
    std::thread::sleep(Duration::from_secs(3));
    let mut watch_from = (Instant::now(), cpu_ticks(pid).expect("sbc cpu"));
    let mut peak_rss = 0;
    let mut worst = 0.0f64;
    while flood_start.elapsed() < Duration::from_secs(FLOOD_SECS - 1) {
        std::thread::sleep(Duration::from_secs(5));
        let now = (Instant::now(), cpu_ticks(pid).expect("sbc cpu"));
        worst = worst.max(cores(watch_from, now));
        watch_from = now;
        peak_rss = peak_rss.max(rss_kib(pid).unwrap_or(0));
    }
    let flood_run = flood.wait().expect("flood ends");
    let invites = sent(&flood_run);
    let rate = invites as f64 / FLOOD_SECS as f64;
    let kernel_drops = metric(&sbc, "sbc_edge_kernel_dropped_total{reason=\"rate\"}");
    let user_drops = metric(&sbc, "sbc_edge_dropped_total");
    eprintln!(
        "flood: {invites} INVITEs in {FLOOD_SECS} s ({rate:.0}/s); dropped by XDP {kernel_drops}, by the guard in \
         user space {user_drops}; sbc CPU {:.1}% of a core before the flood, worst 5-s window during it {:.1}%; \
         peak RSS {} MiB",
        baseline * 100.0,
        worst * 100.0,
        peak_rss / 1024
    );
    assert!(rate >= 5_000.0, "the generator must flood: {rate:.0} INVITEs/s");
    assert_eq!(metric(&sbc, "sbc_edge_bans_total{reason=\"rate\",origin=\"local\"}"), 1.0, "the flooder is banned");
    assert!(kernel_drops >= invites as f64 * 0.99, "XDP dropped the flood: {kernel_drops} of {invites}");
    // The acceptance's bound is 10% of a core for the process during the flood (release build; its figures are in
    // the closing note of the issue). This debug build spends 6-15% on the background load alone (the trunk's 20
    // calls/s, the held calls), depending on the host: in a VM without steal-time accounting a busy host inflates
    // every process's CPU time. So the test bounds what the flood adds against the baseline of the same run, as
    // the house rules ask of performance figures, not the whole against a fixed number.
    assert!(worst - baseline < 0.05, "the flood adds under 5% of a core: {:.1}%", (worst - baseline) * 100.0);
    assert!(peak_rss < 200 * 1024, "RSS stays under 200 MiB: {} MiB", peak_rss / 1024);

    let trunk_run = trunk.wait().expect("trunk calls end");
    let ok = trunk_run.count("SuccessfulCall(C)");
    let why: Vec<String> = [
        "FailedMaxUDPRetrans(C)",
        "FailedUnexpectedMessage(C)",
        "FailedCallRejected(C)",
        "FailedCmdNotSent(C)",
        "FailedOutboundCongestion(C)",
        "FailedTimeoutOnRecv(C)",
    ]
    .iter()
    .map(|c| format!("{c} {}", trunk_run.count(c)))
    .collect();
    eprintln!(
        "trunk: {ok} of {trunk_calls_n} new calls succeeded during the flood; SIPp's failures: {}",
        why.join(", ")
    );
    assert!(ok * 100 >= u64::from(trunk_calls_n) * 99, "at least 99% of the trunk's calls: {ok} of {trunk_calls_n}");

    let a = fleet::report(&mut fleet_a, &dir.join("fleet-a.json"), media);
    let b = fleet::report(&mut fleet_b, &dir.join("fleet-b.json"), media);
    let loss_ab = fleet::direction("A -> B", &a, &b, media);
    let loss_ba = fleet::direction("B -> A", &b, &a, media);
    fleet::assert_direction("A -> B", &a, &b, loss_ab, media, 0.0);
    fleet::assert_direction("B -> A", &b, &a, loss_ba, media, 0.0);
    long.wait()
        .expect("long calls run")
        .assert_all_successful(LONG_CALLS.into())
        .expect("every held call ends with BYE");
    // Every call SIPp completed has its CDR, answered and ended by BYE. The trunk may lose up to 1% of its calls
    // (above): one SIPp counts failed may never have reached the SBC (no CDR) or have one with another status.
    let answered = (LONG_CALLS as u64 + ok) as usize;
    let cdrs = tests::wait_cdrs(&[&topo.dir().join("cdr.jsonl")], answered, Duration::from_secs(10));
    let long_cdrs = cdrs.iter().filter(|c| c["duration_s"].as_f64().unwrap_or(0.0) > 30.0).count();
    assert_eq!(long_cdrs, LONG_CALLS as usize, "one CDR per held call");
    let ids: std::collections::HashSet<&str> = cdrs.iter().filter_map(|c| c["a_call_id"].as_str()).collect();
    assert_eq!(ids.len(), cdrs.len(), "one CDR per call, none doubled");
    let by_bye = cdrs.iter().filter(|c| c["release_cause"] == "bye" && c["status"] == 200).count();
    assert!(
        by_bye >= answered && cdrs.len() <= (LONG_CALLS + trunk_calls_n) as usize,
        "a CDR answered and ended by BYE for each of the {answered} calls SIPp completed: {by_bye} of {} CDRs",
        cdrs.len()
    );
    drop(uas);
}

/// Without XDP the ban holds in user space, first thing after the read: a flood from a stranger is dropped by
/// the guard (counted), and the trunk's calls go through.
#[test]
fn invite_flood_without_xdp_is_dropped_by_the_guard_in_user_space() {
    let _alone = one_flood_at_a_time();
    let topo = Topology::single_sbc().expect("topology");
    let sbc = start_sbc(&topo, "edge-flood-user", "off");
    let uas = carrier(&topo, 200, Duration::from_secs(60));
    let trunk = trunk_calls(&topo, 5060, 200, 20, Duration::from_secs(40));
    let flood = Sipp::new("flood_invite.xml")
        .netns(&topo.ns(Host::C))
        .local_ip(CARRIER_C)
        .local_port(5060)
        .target(addr(SBC_B, 5060))
        .service("+4930999999")
        .calls(500_000)
        .rate(10_000)
        .limit(Duration::from_secs(10))
        .spawn()
        .expect("flood starts");
    let invites = sent(&flood.wait().expect("flood ends"));
    let dropped = metric(&sbc, "sbc_edge_dropped_total{reason=\"banned\"}")
        + metric(&sbc, "sbc_edge_dropped_total{reason=\"rate\"}");
    eprintln!("flood of {invites} INVITEs: {dropped} dropped by the guard in user space");
    assert_eq!(metric(&sbc, "sbc_edge_bans_total{reason=\"rate\",origin=\"local\"}"), 1.0, "the flooder is banned");
    assert!(dropped >= invites as f64 * 0.95, "the guard dropped the flood: {dropped} of {invites}");
    let ok = trunk.wait().expect("trunk calls end").count("SuccessfulCall(C)");
    assert!(ok >= 198, "the trunk's calls go through: {ok} of 200");
    drop(uas);
}
