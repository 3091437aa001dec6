//! The hot-standby pair (DESIGN.md, "Test topology"; issue 6) in [`Topology::pair`]: two `sbc` boxes on both
//! service networks with a replication link between them, the service addresses (VIPs 198.18.1.1, 198.18.2.1) held
//! by whichever is active. The caller and the carriers only ever talk to the VIPs.
//!
//! - the topology itself: every host reaches what it should;
//! - killing the active box (SIGKILL) with calls up: the standby takes over within about a second, the calls' media
//!   resumes, their BYEs complete, every call has exactly one CDR with its true duration, new calls work, and the
//!   killed box comes back as standby (no preemption) holding the calls as foreign calls again;
//! - killing the active box with calls still being set up (trying, ringing, early media with RTP, waiting for a
//!   PRACK) and answered calls: the standby resumes the calls in setup, which complete with their original times;
//! - a fire drill (`POST /ha/demote`) moves a call with its media to the other box;
//! - cutting the replication link alone (the service networks still carry heartbeats) never leaves both active;
//! - a call made over NG (`[media] ng`) on the active is replicated: after the active's death the standby's relay
//!   carries its RTP, and `query`/`delete` on the standby find it.

use serde_json::Value;
use std::collections::HashMap;
use std::net::{SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tests::netns::{
    self, addr, http_request, pair_sbc_config, Host, Process, Topology, CALLER, CARRIER_B, CARRIER_C, SBC1_A, SBC1_B,
    SBC1_R, SBC2_A, SBC2_B, SBC2_R, VIP_A, VIP_B,
};
use tests::rtp::{read_report, rtpfleet_binary, rtpgen_binary, wait_report, Report, Rtpfleet, Rtpgen};
use tests::rtpengine::{NgClient, StreamPeers, NG_ADDR, PORT_MAX as NG_PORT_MAX, PORT_MIN as NG_PORT_MIN};
use tests::setup_drill::{self, cdr_secs_between, SetupKind, SetupTiming};
use tests::sipp::{distinct_sdp_ports, Running, Sipp};
use tests::Sbc;

const WAIT: Duration = Duration::from_secs(3);
/// The peer's death is noticed after 300 ms without heartbeats (the configs' `dead_after`).
const DEAD_AFTER: Duration = Duration::from_millis(300);
/// How long after the active box dies the standby must report active: "about a second" (dead_after, the VIPs,
/// gratuitous ARP), with some room for a noisy 2-core machine.
const TAKEOVER_LIMIT: Duration = Duration::from_millis(1500);
/// The longest media gap (per stream, each direction) accepted across a takeover: the issue's target with the
/// defaults (dead_after 300 ms, then the addresses move and are announced).
const MAX_MEDIA_GAP: Duration = Duration::from_millis(1000);
/// The port every SDP names for RTP (SIPp's own -mp port stays 6000).
const RTP_PORT: u16 = 7078;
const PPS: u32 = 50;
const SSRC_A: u32 = 0xA000_0000;
const SSRC_B: u32 = 0xB000_0000;
const PRIORITY_1: u32 = 200;
const PRIORITY_2: u32 = 100;

fn api() -> SocketAddr {
    addr([127, 0, 0, 1].into(), 8080)
}

/// The pair topology with each box's CDR file (`<dir>/cdr-sbc1.jsonl`, `cdr-sbc2.jsonl`).
struct Pair {
    topo: Topology,
    cdr: [PathBuf; 2],
}

impl Pair {
    fn new() -> Self {
        let topo = Topology::pair().expect("pair topology");
        let cdr = [topo.dir().join("cdr-sbc1.jsonl"), topo.dir().join("cdr-sbc2.jsonl")];
        Self { topo, cdr }
    }

    /// Starts box `node` (1 or 2) with its config; waits for `/health`.
    fn start(&self, node: u8) -> Sbc {
        self.start_with(node, "")
    }

    /// [`Pair::start`] with `extra` appended to the config (keys of `[ha]`, then tables of its own).
    fn start_with(&self, node: u8, extra: &str) -> Sbc {
        self.start_xdp_with(node, "off", extra)
    }

    /// [`Pair::start`] with the `sbc` at `binary` (another build).
    fn start_binary(&self, node: u8, binary: &Path) -> Sbc {
        let priority = if node == 1 { PRIORITY_1 } else { PRIORITY_2 };
        let config = pair_sbc_config(node, priority, &self.cdr[usize::from(node - 1)]);
        let ns = self.topo.ns(Host::pair_box(node));
        Sbc::start_binary_in(binary, &ns, &format!("ha-sbc{node}-next"), &config, addr(VIP_A, 5060), api())
            .unwrap_or_else(|e| panic!("sbc{node} ({}) starts: {e:#}", binary.display()))
    }

    /// [`Pair::start`] with `[media] xdp = xdp`.
    fn start_xdp(&self, node: u8, xdp: &str) -> Sbc {
        self.start_xdp_with(node, xdp, "")
    }

    /// [`Pair::start`] with `[media] xdp = xdp` and `extra` appended.
    fn start_xdp_with(&self, node: u8, xdp: &str, extra: &str) -> Sbc {
        let priority = if node == 1 { PRIORITY_1 } else { PRIORITY_2 };
        let config = pair_sbc_config(node, priority, &self.cdr[usize::from(node - 1)])
            .replace("xdp = \"off\"", &format!("xdp = \"{xdp}\""))
            + extra;
        Sbc::start_in(&self.topo.ns(Host::pair_box(node)), &format!("ha-sbc{node}"), &config, addr(VIP_A, 5060), api())
            .unwrap_or_else(|e| panic!("sbc{node} starts: {e:#}"))
    }

    /// [`Pair::start`] with `[media] ng` on 127.0.0.1:2223 of the box's namespace (NG calls on ports 40000-44999).
    fn start_ng(&self, node: u8) -> Sbc {
        let priority = if node == 1 { PRIORITY_1 } else { PRIORITY_2 };
        let config = pair_sbc_config(node, priority, &self.cdr[usize::from(node - 1)]);
        let with_ng = config.replace(
            "xdp = \"off\"\n",
            &format!("xdp = \"off\"\nng = \"{NG_ADDR}\"\nng_ports = \"{NG_PORT_MIN}-{NG_PORT_MAX}\"\n"),
        );
        assert_ne!(config, with_ng, "pair_sbc_config's [media] has `xdp = \"off\"`");
        Sbc::start_in(&self.topo.ns(Host::pair_box(node)), &format!("ng-sbc{node}"), &with_ng, addr(VIP_A, 5060), api())
            .unwrap_or_else(|e| panic!("sbc{node} starts: {e:#}"))
    }

    /// An NG client in box `node`'s namespace, for its `[media] ng`.
    fn ng_client(&self, node: u8) -> NgClient {
        NgClient::open_in(&self.topo.ns(Host::pair_box(node)), NG_ADDR.parse().unwrap()).expect("NG client")
    }

    /// Starts both boxes and waits until sbc1 (the higher priority) is active and sbc2 standby, each seeing the
    /// other.
    fn start_both(&self) -> (Sbc, Sbc) {
        self.start_both_with("")
    }

    /// [`Pair::start_both`] with `extra` appended to both configs.
    fn start_both_with(&self, extra: &str) -> (Sbc, Sbc) {
        let sbc1 = self.start_with(1, extra);
        let sbc2 = self.start_with(2, extra);
        wait_roles(&sbc1, "active", &sbc2, "standby", Duration::from_secs(10));
        (sbc1, sbc2)
    }

    /// The service addresses configured on box `node` (`ip -4 addr` of a0 and b0).
    fn vips_on(&self, node: u8) -> Vec<String> {
        let out = self.topo.exec(Host::pair_box(node), "ip", &["-4", "-o", "addr", "show"]).unwrap_or_default();
        [VIP_A, VIP_B].iter().map(|v| format!("{v}/")).filter(|v| out.contains(v.as_str())).collect()
    }

    /// Waits until box `node` holds both VIPs (`want`) or none (`!want`); returns how long that took from `since`.
    /// Fails after `limit` (from now).
    fn wait_vips(&self, node: u8, want: bool, since: Instant, limit: Duration) -> Duration {
        let deadline = Instant::now() + limit;
        loop {
            let held = self.vips_on(node);
            if held.len() == if want { 2 } else { 0 } {
                return since.elapsed();
            }
            assert!(
                Instant::now() < deadline,
                "sbc{node} holds {held:?} {:?} after the event, want {}",
                since.elapsed(),
                if want { "both VIPs" } else { "none" }
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The carrier: SIPp UAS on 198.18.2.10:5060 answering `calls` calls with SDP naming `RTP_PORT`.
    fn carrier(&self, calls: u32, limit: Duration) -> Running {
        let ns = self.topo.ns(Host::B);
        let mut r = Sipp::new("uas_answer_rtp.xml")
            .netns(&ns)
            .local_ip(CARRIER_B)
            .local_port(5060)
            .key("rtp_port", &RTP_PORT.to_string())
            .calls(calls)
            .limit(limit)
            .trace_messages(true)
            .spawn()
            .expect("uas starts");
        r.wait_listening(Some(&ns), 5060, Duration::from_secs(5)).expect("uas listens");
        r
    }

    /// The caller: SIPp UAC from 198.18.1.10:`port` to the side-a VIP, `calls` calls at `rate`/s, each held `hold`,
    /// SDP naming `rtp_port`.
    fn caller(&self, port: u16, calls: u32, rate: u32, hold: Duration, rtp_port: u16, limit: Duration) -> Running {
        Sipp::new("uac_call_rtp.xml")
            .netns(&self.topo.ns(Host::A))
            .local_ip(CALLER)
            .local_port(port)
            .target(addr(VIP_A, 5060))
            .service("+4930123456")
            .key("rtp_port", &rtp_port.to_string())
            .calls(calls)
            .rate(rate)
            .pause(hold)
            .limit(limit)
            .trace_messages(true)
            .spawn()
            .expect("uac starts")
    }

    /// Waits up to 10 s for at least `n` CDRs across both boxes.
    fn wait_cdrs(&self, n: usize) -> Vec<Value> {
        tests::wait_cdrs(&[&self.cdr[0], &self.cdr[1]], n, Duration::from_secs(10))
    }
}

/// `GET /ha` of a box, parsed.
fn ha(sbc: &Sbc) -> anyhow::Result<Value> {
    let body = sbc.http_get("/ha")?;
    Ok(serde_json::from_str(&body)?)
}

fn role(state: &anyhow::Result<Value>) -> &str {
    state.as_ref().ok().and_then(|v| v["role"].as_str()).unwrap_or("?")
}

fn shown(state: &anyhow::Result<Value>) -> String {
    match state {
        Ok(v) => v.to_string(),
        Err(e) => format!("error: {e:#}"),
    }
}

/// Waits until box 1 reports `want1` and box 2 `want2`, each with `peer_alive`; fails after `timeout` with both
/// states and logs.
fn wait_roles(sbc1: &Sbc, want1: &str, sbc2: &Sbc, want2: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let (s1, s2) = (ha(sbc1), ha(sbc2));
        let alive = |s: &anyhow::Result<Value>| s.as_ref().is_ok_and(|v| v["peer_alive"] == Value::Bool(true));
        if role(&s1) == want1 && role(&s2) == want2 && alive(&s1) && alive(&s2) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "after {timeout:?}, want sbc1 {want1} and sbc2 {want2}, both seeing the peer; sbc1: {}; sbc2: {}\n\
             --- sbc1 log ---\n{}\n--- sbc2 log ---\n{}",
            shown(&s1),
            shown(&s2),
            sbc1.log_tail(),
            sbc2.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `sbc` every 50 ms until it reports `want`; returns how long that took from `since`. Fails after `limit`.
fn wait_role(sbc: &Sbc, name: &str, want: &str, since: Instant, limit: Duration) -> Duration {
    let deadline = since + limit + Duration::from_secs(5);
    loop {
        let s = ha(sbc);
        if role(&s) == want {
            return since.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "{name} is not {want} {:?} after the event: {}\n--- {name} log ---\n{}",
            since.elapsed(),
            shown(&s),
            sbc.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `sbc`'s `/ha` every 100 ms until `field` is at least `n`; fails after `timeout`.
fn wait_ha_at_least(sbc: &Sbc, name: &str, field: &str, n: u64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let s = ha(sbc);
        if s.as_ref().ok().and_then(|v| v[field].as_u64()).is_some_and(|v| v >= n) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}'s {field} is not {n} after {timeout:?}: {}\n--- {name} log ---\n{}",
            shown(&s),
            sbc.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The role changes in a box's log (`HA role change ... role=X why=Y`), as `X(Y)`, for the test's output: a
/// takeover should be one change, not a flap.
fn role_changes(sbc: &Sbc) -> Vec<String> {
    let log = std::fs::read_to_string(&sbc.log).unwrap_or_default();
    // Without the terminal colours (ESC [ ... m) the log has `key=value` fields.
    let plain = |line: &str| {
        let mut out = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                chars.by_ref().find(|&c| c == 'm');
            } else {
                out.push(c);
            }
        }
        out
    };
    let value = |line: &str, key: &str| {
        let at = line.find(&format!(" {key}="))? + key.len() + 2;
        Some(line[at..].split_whitespace().next()?.trim_matches('"').to_owned())
    };
    log.lines()
        .filter(|l| l.contains("HA role change"))
        .map(plain)
        .map(|l| format!("{}({})", value(&l, "role").unwrap_or_default(), value(&l, "why").unwrap_or_default()))
        .collect()
}

fn kill9(sbc: &Sbc) {
    let status = Command::new("kill").args(["-KILL", &sbc.id().to_string()]).status().expect("kill runs");
    assert!(status.success(), "kill -KILL {}", sbc.id());
}

/// Waits until both SIPp sides' message logs name `n` distinct relay ports; returns them (side a, side b).
fn wait_relay_ports(uac: &Running, uas: &Running, n: usize, timeout: Duration) -> (Vec<u16>, Vec<u16>) {
    let deadline = Instant::now() + timeout;
    loop {
        let a = distinct_sdp_ports(&uac.messages(), &VIP_A.to_string());
        let b = distinct_sdp_ports(&uas.messages(), &VIP_B.to_string());
        if a.len() >= n && b.len() >= n {
            return (a[..n].to_vec(), b[..n].to_vec());
        }
        assert!(
            Instant::now() < deadline,
            "after {timeout:?}, {} relay ports for side a and {} for side b (of {n}); uac in {}, uas in {}",
            a.len(),
            b.len(),
            uac.dir().display(),
            uas.dir().display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One side's `rtpfleet`: `streams` streams from `bind`, `seconds` at `PPS` each, to the addresses the test writes
/// to `<dir>/<name>.targets`; report in `<dir>/<name>.json`.
fn fleet(topo: &Topology, host: Host, name: &str, bind: SocketAddr, streams: u32, seconds: u64, ssrc: u32) -> Process {
    let expect = if ssrc == SSRC_A { SSRC_B } else { SSRC_A };
    let dir = topo.dir();
    let fleet = Rtpfleet::new(
        bind,
        dir.join(format!("{name}.targets")),
        streams as usize,
        PPS,
        seconds,
        ssrc,
        dir.join(format!("{name}.json")),
    )
    .expect_ssrc_base(expect)
    .idle_exit(Duration::from_secs(2))
    .duration(Duration::from_secs(120));
    topo.spawn(host, name, rtpfleet_binary().expect("test helpers built"), &fleet.args()).expect("rtpfleet starts")
}

fn fleet_report(p: &mut Process, path: &Path) -> Value {
    wait_report(p, path, Duration::from_secs(150)).expect("rtpfleet report")
}

fn n(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("no {key} in {v}"))
}

/// One direction of the fleets across the takeover: every stream arrived intact, and the worst stream lost at most
/// `MAX_MEDIA_GAP` worth of packets. rtpfleet has no per-stream gap figure, so the gap is bounded by the packets
/// the worst stream lost: however they are spread, no silence lasted longer than (lost + 1) packet intervals.
/// Returns that bound.
fn assert_media_across_takeover(label: &str, tx: &Value, rx: &Value, streams: u32) -> Duration {
    let per_stream = n(tx, "per_stream");
    assert_eq!(n(tx, "sent"), u64::from(streams) * per_stream, "{label}: the sender sent every packet: {tx}");
    assert_eq!(n(tx, "send_errors"), 0, "{label}: {tx}");
    assert_eq!(n(rx, "ssrcs_seen"), u64::from(streams), "{label}: every call's stream arrived: {rx}");
    assert_eq!(n(rx, "corrupt"), 0, "{label}: byte-identical: {rx}");
    assert_eq!(n(rx, "other_ssrc") + n(rx, "not_rtp"), 0, "{label}: nothing but the streams: {rx}");
    let worst_lost = per_stream.saturating_sub(n(rx, "min_received_per_stream"));
    let gap = Duration::from_millis((worst_lost + 1) * 1000 / u64::from(PPS));
    let total_lost = (u64::from(streams) * per_stream).saturating_sub(n(rx, "received"));
    eprintln!(
        "{label}: sent {}, received {} (lost {total_lost}); worst stream lost {worst_lost} of {per_stream}: media gap \
         at most {gap:?}; sources {}; worst streams {}",
        tx["sent"], rx["received"], rx["sources"], rx["worst_streams"]
    );
    // Media resumed on every stream: the end of each arrived (the last index of the weakest streams is the last).
    for w in rx["worst_streams"].as_array().into_iter().flatten() {
        assert_eq!(
            w["last_index"].as_u64(),
            Some(per_stream - 1),
            "{label}: the stream resumed after the takeover: {w}"
        );
    }
    assert!(gap <= MAX_MEDIA_GAP, "{label}: a stream lost {worst_lost} packets ({gap:?} of media): {rx}");
    gap
}

/// Every call exactly once across both boxes' CDRs (by the caller's Call-ID), answered; returns them by Call-ID.
fn one_cdr_per_call(cdrs: &[Value], calls: usize) -> HashMap<String, Value> {
    let mut by_id: HashMap<String, Value> = HashMap::new();
    for c in cdrs {
        let id = c["a_call_id"].as_str().unwrap_or_else(|| panic!("CDR without a_call_id: {c}")).to_owned();
        if let Some(earlier) = by_id.insert(id.clone(), c.clone()) {
            panic!("call {id} has two CDRs:\n{earlier}\n{c}");
        }
    }
    assert_eq!(by_id.len(), calls, "one CDR per call: {} CDRs for {calls} calls: {cdrs:?}", cdrs.len());
    by_id
}

#[test]
fn pair_topology_connects_every_host() {
    let topo = Topology::pair().expect("pair topology");
    let names = topo.namespaces().to_vec();
    assert_eq!(names.len(), 6, "{names:?}");
    for (host, dev, cidr) in [
        (Host::Sbc1, "a0", "198.18.1.2/24"),
        (Host::Sbc1, "b0", "198.18.2.2/24"),
        (Host::Sbc1, "r0", "198.18.3.1/24"),
        (Host::Sbc2, "a0", "198.18.1.3/24"),
        (Host::Sbc2, "b0", "198.18.2.3/24"),
        (Host::Sbc2, "r0", "198.18.3.2/24"),
        (Host::A, "eth0", "198.18.1.10/24"),
        (Host::B, "eth0", "198.18.2.10/24"),
        (Host::C, "eth0", "198.18.2.11/24"),
    ] {
        let out = topo.exec(host, "ip", &["-br", "-4", "addr", "show", "dev", dev]).expect("ip addr");
        assert!(out.contains(cidr) && out.contains("UP"), "{dev} in {}: {out}", topo.ns(host));
    }
    // No VIP anywhere: the active box adds them.
    for host in [Host::Sbc1, Host::Sbc2] {
        let out = topo.exec(host, "ip", &["-4", "-o", "addr", "show"]).expect("ip addr");
        assert!(!out.contains("198.18.1.1/") && !out.contains("198.18.2.1/"), "no VIP yet: {out}");
    }
    for (bridge, ports) in [("bra", 3), ("brb", 4)] {
        let out = topo.exec(Host::Switch, "ip", &["-br", "link", "show", "master", bridge]).expect("bridge ports");
        assert_eq!(out.lines().count(), ports, "{bridge}: {out}");
    }

    let x = |from: Host, from_ip, to: Host, to_ip, port| {
        topo.udp_exchange(from, from_ip, to, SocketAddrV4::new(to_ip, port), WAIT)
            .unwrap_or_else(|e| panic!("{from_ip} -> {to_ip}:{port}: {e:#}"));
    };
    // Side a: the caller and both boxes.
    x(Host::A, CALLER, Host::Sbc1, SBC1_A, 7000);
    x(Host::Sbc1, SBC1_A, Host::A, CALLER, 7000);
    x(Host::A, CALLER, Host::Sbc2, SBC2_A, 7001);
    x(Host::Sbc2, SBC2_A, Host::A, CALLER, 7001);
    x(Host::Sbc1, SBC1_A, Host::Sbc2, SBC2_A, 7071);
    // Side b: both carriers and both boxes.
    x(Host::B, CARRIER_B, Host::Sbc1, SBC1_B, 7000);
    x(Host::Sbc1, SBC1_B, Host::B, CARRIER_B, 7000);
    x(Host::B, CARRIER_B, Host::Sbc2, SBC2_B, 7001);
    x(Host::Sbc2, SBC2_B, Host::B, CARRIER_B, 7001);
    x(Host::C, CARRIER_C, Host::Sbc2, SBC2_B, 7002);
    x(Host::Sbc2, SBC2_B, Host::Sbc1, SBC1_B, 7071);
    // The replication link, both ways.
    x(Host::Sbc1, SBC1_R, Host::Sbc2, SBC2_R, 7070);
    x(Host::Sbc2, SBC2_R, Host::Sbc1, SBC1_R, 7071);
    // No forwarding: side a never reaches side b directly.
    let leak =
        topo.udp_exchange(Host::A, CALLER, Host::B, SocketAddrV4::new(CARRIER_B, 7003), Duration::from_millis(500));
    assert!(leak.is_err(), "side a must not reach side b directly");

    drop(topo);
    let left: Vec<_> = names.iter().filter(|n| netns::namespace_exists(n)).collect();
    assert!(left.is_empty(), "namespaces left after drop: {left:?}");
}

/// Calls of the kill test (`HA_CALLS` overrides).
fn calls() -> u32 {
    std::env::var("HA_CALLS").ok().and_then(|v| v.parse().ok()).unwrap_or(50)
}

#[test]
fn killing_the_active_keeps_calls_media_and_cdrs() {
    const RATE: u32 = 10;
    const HOLD: Duration = Duration::from_secs(30);
    const MEDIA_SECONDS: u64 = 15;
    const LIMIT: Duration = Duration::from_secs(90);
    let calls = calls();
    let pair = Pair::new();
    let (sbc1, sbc2) = pair.start_both();
    pair.wait_vips(1, true, Instant::now(), Duration::from_secs(5));
    assert!(pair.vips_on(2).is_empty(), "the standby holds no VIP: {:?}", pair.vips_on(2));

    // N calls (plus one placed after the takeover) with one RTP stream per call each way.
    let uas = pair.carrier(calls + 1, LIMIT);
    let mut fleet_a = fleet(&pair.topo, Host::A, "fleet-a", addr(CALLER, RTP_PORT), calls, MEDIA_SECONDS, SSRC_A);
    let mut fleet_b = fleet(&pair.topo, Host::B, "fleet-b", addr(CARRIER_B, RTP_PORT), calls, MEDIA_SECONDS, SSRC_B);
    let started = Instant::now();
    let uac = pair.caller(5060, calls, RATE, HOLD, RTP_PORT, LIMIT);
    let (ports_a, ports_b) = wait_relay_ports(&uac, &uas, calls as usize, Duration::from_secs(30));
    let dir = pair.topo.dir().to_owned();
    for (name, ip, ports) in [("fleet-a", VIP_A, &ports_a), ("fleet-b", VIP_B, &ports_b)] {
        let text: String = ports.iter().map(|p| format!("{ip}:{p}\n")).collect();
        tests::write_atomically(&dir.join(format!("{name}.targets")), &text).expect("written");
    }
    let media_from = Instant::now();
    eprintln!("{calls} calls up {:?} after the start; media flowing", started.elapsed());

    // Every answered call reached the standby before the active dies.
    wait_ha_at_least(&sbc2, "sbc2", "foreign_calls", u64::from(calls), Duration::from_secs(5));
    wait_ha_at_least(&sbc1, "sbc1", "calls", u64::from(calls), Duration::from_secs(5));
    let sent = sbc1.metric("sbc_ha_records_sent_total").unwrap_or(0.0);
    let received = sbc2.metric("sbc_ha_records_received_total").unwrap_or(0.0);
    assert!(sent >= f64::from(calls) && received >= f64::from(calls), "records sent {sent}, received {received}");
    std::thread::sleep(Duration::from_secs(3).saturating_sub(media_from.elapsed()));

    // The active box dies.
    let killed_at = Instant::now();
    kill9(&sbc1);
    let took = wait_role(&sbc2, "sbc2", "active", killed_at, TAKEOVER_LIMIT);
    eprintln!("sbc2 active {took:?} after sbc1 was killed ({:?} into the media)", killed_at - media_from);
    // The role flips first; the driver adopts the foreign calls just after (tens of ms).
    wait_ha_at_least(&sbc2, "sbc2", "calls", u64::from(calls), Duration::from_secs(2));
    eprintln!("sbc2 owns the calls {:?} after the kill", killed_at.elapsed());
    let state2 = ha(&sbc2).expect("sbc2 /ha");
    assert!(took <= TAKEOVER_LIMIT, "sbc2 took over after {took:?}: {state2}\n{}", sbc2.log_tail());
    assert_eq!(state2["peer_alive"], Value::Bool(false), "{state2}");
    assert_eq!(state2["takeovers"].as_u64(), Some(1), "{state2}");
    let vips_up = pair.wait_vips(2, true, killed_at, Duration::from_secs(3));
    eprintln!("sbc2 held both VIPs {vips_up:?} after the kill");
    assert_eq!(sbc2.metric("sbc_ha_role").ok(), Some(1.0));
    assert!(sbc2.metric("sbc_ha_takeovers_total").unwrap_or(0.0) >= 1.0);

    // A new call after the takeover succeeds (from another caller port, while the first calls are still up).
    let new_hold = Duration::from_secs(2);
    let new_call = pair.caller(5061, 1, 1, new_hold, 7090, Duration::from_secs(20));
    new_call.wait().expect("new uac runs").assert_all_successful(1).expect("a call placed after the takeover");
    eprintln!("a new call after the takeover completed {:?} after the kill", killed_at.elapsed());

    // The killed box comes back: the peer is active, so it stays standby (no preemption, despite its priority) and
    // takes the calls still up on sbc2 as foreign calls again.
    let sbc1 = {
        drop(sbc1);
        pair.start(1)
    };
    wait_roles(&sbc1, "standby", &sbc2, "active", Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(10);
    let (foreign, up) = loop {
        let (s1, s2) = (ha(&sbc1), ha(&sbc2));
        let foreign = s1.as_ref().ok().and_then(|v| v["foreign_calls"].as_u64());
        let up = s2.as_ref().ok().and_then(|v| v["calls"].as_u64());
        if foreign.is_some() && foreign == up && up.unwrap_or(0) >= u64::from(calls) {
            break (foreign, up);
        }
        assert!(
            Instant::now() < deadline,
            "the returning sbc1 does not resync: sbc1 {}, sbc2 {}\n--- sbc1 log ---\n{}",
            shown(&s1),
            shown(&s2),
            sbc1.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!(
        "sbc1 back as standby {:?} after the kill, holding {foreign:?} foreign calls of {up:?}",
        killed_at.elapsed()
    );
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let (s1, s2) = (ha(&sbc1), ha(&sbc2));
        assert!(
            role(&s1) == "standby" && role(&s2) == "active",
            "no preemption: sbc1 {}, sbc2 {}",
            shown(&s1),
            shown(&s2)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(pair.vips_on(1).is_empty(), "the returning standby holds no VIP: {:?}", pair.vips_on(1));

    eprintln!("role changes of sbc2: {:?}", role_changes(&sbc2));
    // Media resumed on every call; the BYEs (to the VIP, now sbc2) complete on both sides.
    let a = fleet_report(&mut fleet_a, &dir.join("fleet-a.json"));
    let b = fleet_report(&mut fleet_b, &dir.join("fleet-b.json"));
    let gap_ab = assert_media_across_takeover("A -> B", &a, &b, calls);
    let gap_ba = assert_media_across_takeover("B -> A", &b, &a, calls);
    uac.wait().expect("uac runs").assert_all_successful(calls.into()).expect("every call completes for the caller");
    uas.wait()
        .expect("uas runs")
        .assert_all_successful((calls + 1).into())
        .expect("every call completes for the carrier");

    // Exactly one CDR per call across both boxes, with the true duration (the hold), not the time since takeover.
    let cdrs = pair.wait_cdrs(calls as usize + 1);
    let by_id = one_cdr_per_call(&cdrs, calls as usize + 1);
    let durations: Vec<f64> = by_id.values().filter_map(|c| c["duration_s"].as_f64()).collect();
    assert_eq!(durations.len(), by_id.len(), "every call was answered: {cdrs:?}");
    let long = durations.iter().filter(|d| (**d - HOLD.as_secs_f64()).abs() <= 1.5).count();
    let short = durations.iter().filter(|d| (**d - new_hold.as_secs_f64()).abs() <= 1.5).count();
    assert_eq!((long, short), (calls as usize, 1), "CDR durations against the holds: {durations:?}");
    eprintln!(
        "{calls} calls across a takeover in {:?}: takeover {took:?}, media gap at most {gap_ab:?} (A->B) and \
         {gap_ba:?} (B->A); CDRs: {} from sbc1, {} from sbc2",
        started.elapsed(),
        std::fs::read_to_string(&pair.cdr[0]).unwrap_or_default().lines().count(),
        std::fs::read_to_string(&pair.cdr[1]).unwrap_or_default().lines().count()
    );
}

/// Polls until the records sbc1 sent are all applied on sbc2 (their counters agree); fails after `timeout`.
fn wait_replicated(sbc1: &Sbc, sbc2: &Sbc, timeout: Duration) -> f64 {
    let deadline = Instant::now() + timeout;
    loop {
        let sent = sbc1.metric("sbc_ha_records_sent_total").unwrap_or(-1.0);
        let received = sbc2.metric("sbc_ha_records_received_total").unwrap_or(-2.0);
        if sent == received {
            return sent;
        }
        assert!(Instant::now() < deadline, "replication behind after {timeout:?}: sent {sent}, received {received}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Issue 19 point 1: the active dies (`kill -9`) with 50 calls being set up, in the states of
/// [`tests::setup_drill`] (the carrier trying and answering late; ringing; early media with RTP both ways; a reliable
/// 183 waiting for the caller's PRACK), and 50 answered calls. The standby resumes the calls in setup: at least 49 of
/// them complete and all 50 answered ones survive; every call has exactly one CDR across both boxes, and a resumed
/// call's CDR has its original times (answered the carrier's delay after the caller's INVITE, ringing when it
/// first rang), not times restarted at the takeover. The early media resumes within `MAX_MEDIA_GAP`.
#[test]
fn killing_the_active_with_calls_in_setup_lets_them_complete_on_the_standby() {
    const ANSWERED: u32 = 50;
    const IN_SETUP: u32 = 50;
    const ANSWERED_HOLD: Duration = Duration::from_secs(30);
    const EARLY_RTP_PORT: u16 = 7080;
    const EARLY_MEDIA_SECONDS: u64 = 8;
    const LIMIT: Duration = Duration::from_secs(90);
    // Calls in setup are answered 12 s after their INVITE (8 s after the 183 for those waiting for a PRACK): the
    // kill comes about 3 s in, the takeover within a second of it.
    let timing = SetupTiming {
        answer_after: Duration::from_secs(12),
        prack_after: Duration::from_secs(8),
        hold: Duration::from_secs(3),
        rate: 10,
        limit: LIMIT,
        early_rtp_port: EARLY_RTP_PORT,
        quiet_rtp_port: RTP_PORT,
    };
    let pair = Pair::new();
    // pair_sbc_config gives both boxes the same secret_file.
    let (sbc1, sbc2) = pair.start_both_with(&setup_drill::config_tables());
    assert!(
        std::fs::read_to_string(&sbc1.log).unwrap_or_default().contains("shared secret"),
        "the log says the nonces are shared: {}",
        sbc1.log_tail()
    );

    // 50 answered calls first, held across the whole drill.
    let uas = pair.carrier(ANSWERED, LIMIT);
    let uac = pair.caller(5060, ANSWERED, 25, ANSWERED_HOLD, RTP_PORT, LIMIT);
    let deadline = Instant::now() + Duration::from_secs(20);
    while setup_drill::call_ids_of(&uas.messages(), "ACK ").len() < ANSWERED as usize {
        assert!(
            Instant::now() < deadline,
            "the answered calls are not all up after 20 s; uas in {}",
            uas.dir().display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Early media both ways on the early-media calls, from senders bound before those calls start.
    let early_calls = setup_drill::split(IN_SETUP)
        .into_iter()
        .find_map(|(k, n)| (k == SetupKind::EarlyMedia).then_some(n))
        .expect("early media calls");
    let (a_rtp, b_rtp) = (addr(CALLER, EARLY_RTP_PORT), addr(CARRIER_B, EARLY_RTP_PORT));
    let mut fleet_a = fleet(&pair.topo, Host::A, "early-a", a_rtp, early_calls, EARLY_MEDIA_SECONDS, SSRC_A);
    let mut fleet_b = fleet(&pair.topo, Host::B, "early-b", b_rtp, early_calls, EARLY_MEDIA_SECONDS, SSRC_B);
    let started = Instant::now();
    let kinds = setup_drill::start(&pair.topo, IN_SETUP, &timing).expect("callers and carriers of the calls in setup");
    setup_drill::wait_in_setup(&kinds, Duration::from_secs(20)).expect("every call in its setup state");
    let early = kinds.iter().find(|k| k.kind == SetupKind::EarlyMedia).expect("early media calls");
    let (ports_a, ports_b) = wait_relay_ports(&early.uac, &early.uas, early_calls as usize, Duration::from_secs(10));
    let dir = pair.topo.dir().to_owned();
    for (name, ip, ports) in [("early-a", VIP_A, &ports_a), ("early-b", VIP_B, &ports_b)] {
        let text: String = ports.iter().map(|p| format!("{ip}:{p}\n")).collect();
        tests::write_atomically(&dir.join(format!("{name}.targets")), &text).expect("written");
    }
    let total = u64::from(ANSWERED + IN_SETUP);
    wait_ha_at_least(&sbc2, "sbc2", "foreign_calls", total, Duration::from_secs(5));
    let records = wait_replicated(&sbc1, &sbc2, Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(1));
    eprintln!(
        "{IN_SETUP} calls in setup {:?} after their start ({records} records replicated), early media flowing; killing \
         the active",
        started.elapsed()
    );

    let killed_at = Instant::now();
    kill9(&sbc1);
    let took = wait_role(&sbc2, "sbc2", "active", killed_at, TAKEOVER_LIMIT);
    wait_ha_at_least(&sbc2, "sbc2", "calls", total, Duration::from_secs(2));
    let resumed = sbc2.metric("sbc_ha_calls_taken_over_total{state=\"setup\"}").unwrap_or(0.0);
    let adopted = sbc2.metric("sbc_ha_calls_taken_over_total{state=\"answered\"}").unwrap_or(0.0);
    eprintln!(
        "sbc2 active {took:?} after the kill ({:?} into setup): resumed {resumed}, adopted {adopted}",
        killed_at - started
    );
    // The takeover time itself is `killing_the_active_keeps_calls_media_and_cdrs`'s to judge; here it only has to
    // come before the calls' answers and PRACKs (8 s and more after their start), which the outcomes below show.
    assert_eq!((resumed, adopted), (f64::from(IN_SETUP), f64::from(ANSWERED)), "every call taken over in its state");

    // The early media went on through the takeover.
    let a = fleet_report(&mut fleet_a, &dir.join("early-a.json"));
    let b = fleet_report(&mut fleet_b, &dir.join("early-b.json"));
    let gap_ab = assert_media_across_takeover("early media A -> B", &a, &b, early_calls);
    let gap_ba = assert_media_across_takeover("early media B -> A", &b, &a, early_calls);

    let outcomes: Vec<_> = kinds.into_iter().map(|k| k.finish().expect("sipp runs")).collect();
    let completed: u64 = outcomes.iter().map(|o| o.completed).sum();
    for o in &outcomes {
        eprintln!("{}: {} of {} completed (carrier: {})", o.kind.label(), o.completed, o.calls, o.carrier_completed);
    }
    assert!(completed >= u64::from(IN_SETUP) - 1, "at least 49 of the 50 calls in setup complete: {outcomes:?}");
    uac.wait().expect("uac runs").assert_all_successful(ANSWERED.into()).expect("every answered call survives");
    uas.wait().expect("uas runs").assert_all_successful(ANSWERED.into()).expect("the carrier's side of them");

    // One CDR per call across both boxes, none doubled; the resumed calls' with their original times.
    let cdrs = pair.wait_cdrs((u64::from(ANSWERED) + completed) as usize);
    let mut by_id: HashMap<String, Value> = HashMap::new();
    for c in &cdrs {
        let id = c["a_call_id"].as_str().unwrap_or_else(|| panic!("CDR without a_call_id: {c}")).to_owned();
        if let Some(earlier) = by_id.insert(id.clone(), c.clone()) {
            panic!("call {id} has two CDRs:\n{earlier}\n{c}");
        }
    }
    let answered: Vec<&Value> = by_id.values().filter(|c| SetupKind::of_cdr(c).is_none()).collect();
    assert_eq!(answered.len(), ANSWERED as usize, "one CDR per answered call");
    for c in &answered {
        let d = c["duration_s"].as_f64().unwrap_or(-1.0);
        assert!((d - ANSWERED_HOLD.as_secs_f64()).abs() <= 1.5, "an answered call's true duration: {c}");
    }
    let mut good = 0;
    for c in by_id.values() {
        let Some(kind) = SetupKind::of_cdr(c) else { continue };
        if c["status"].as_u64() != Some(200) {
            eprintln!("a {} call did not complete: {c}", kind.label());
            continue;
        }
        let post_dial = cdr_secs_between(c, "setup", "answer").unwrap_or(-1.0);
        let want = kind.answer_after(&timing).as_secs_f64();
        assert!(
            (post_dial - want).abs() <= 1.5,
            "{}: answered {post_dial} s after its INVITE, want {want}: {c}",
            kind.label()
        );
        assert_eq!(c["ringing"].is_string(), kind.rings(), "{}: ringing time: {c}", kind.label());
        if kind.rings() {
            let rang = cdr_secs_between(c, "setup", "ringing").unwrap_or(-1.0);
            assert!(
                (0.0..1.0).contains(&rang),
                "{}: rang {rang} s after its INVITE, before the takeover: {c}",
                kind.label()
            );
        }
        let d = c["duration_s"].as_f64().unwrap_or(-1.0);
        assert!((d - timing.hold.as_secs_f64()).abs() <= 1.5, "{}: duration {d}: {c}", kind.label());
        good += 1;
    }
    assert!(good >= IN_SETUP - 1, "at least 49 answered CDRs of calls in setup, got {good}");
    eprintln!(
        "calls in setup: {completed} of {IN_SETUP} completed after the takeover ({took:?}); {ANSWERED} answered calls \
         survived; early media gap at most {gap_ab:?} (A->B), {gap_ba:?} (B->A); {} CDRs, none doubled ({} from sbc1, \
         {} from sbc2)",
        by_id.len(),
        std::fs::read_to_string(&pair.cdr[0]).unwrap_or_default().lines().count(),
        std::fs::read_to_string(&pair.cdr[1]).unwrap_or_default().lines().count()
    );
}

#[test]
fn fire_drill_demotion_moves_the_calls() {
    const HOLD: Duration = Duration::from_secs(16);
    const COUNT: u64 = 600;
    const LIMIT: Duration = Duration::from_secs(40);
    let pair = Pair::new();
    let (sbc1, sbc2) = pair.start_both();
    let uas = pair.carrier(1, LIMIT);
    let dir = pair.topo.dir().to_owned();
    let stream = |bind, to: &Path, ssrc, expect, report: &Path| {
        Rtpgen::new(bind)
            .to_file(to)
            .count(COUNT)
            .pps(PPS)
            .ssrc(ssrc)
            .expect_ssrc(expect)
            .duration(Duration::from_secs(35))
            .idle_exit(Duration::from_secs(2))
            .report(report)
    };
    let rtpgen = rtpgen_binary().expect("rtpgen built");
    let (a_target, b_target, a_report, b_report) =
        (dir.join("a.target"), dir.join("b.target"), dir.join("a.json"), dir.join("b.json"));
    let gen_b = stream(addr(CARRIER_B, RTP_PORT), &b_target, SSRC_B, SSRC_A, &b_report);
    let gen_a = stream(addr(CALLER, RTP_PORT), &a_target, SSRC_A, SSRC_B, &a_report);
    let mut rtp_b = pair.topo.spawn(Host::B, "rtp-b", &rtpgen, &gen_b.args()).expect("rtpgen b");
    let mut rtp_a = pair.topo.spawn(Host::A, "rtp-a", &rtpgen, &gen_a.args()).expect("rtpgen a");
    let uac = pair.caller(5060, 1, 1, HOLD, RTP_PORT, LIMIT);
    let (pa, pb) = wait_relay_ports(&uac, &uas, 1, Duration::from_secs(10));
    tests::write_atomically(&b_target, &format!("{VIP_B}:{}\n", pb[0])).expect("written");
    tests::write_atomically(&a_target, &format!("{VIP_A}:{}\n", pa[0])).expect("written");
    wait_ha_at_least(&sbc2, "sbc2", "foreign_calls", 1, Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(3));

    // The fire drill: the active box is told to step down; the other takes over.
    let demoted_at = Instant::now();
    let (status, body) = http_request(&pair.topo.ns(Host::Sbc1), "POST", api(), "/ha/demote").expect("POST reaches");
    assert!((200..300).contains(&status), "POST /ha/demote: {status} {body}\n{}", sbc1.log_tail());
    let took = wait_role(&sbc2, "sbc2", "active", demoted_at, TAKEOVER_LIMIT);
    wait_role(&sbc1, "sbc1", "standby", demoted_at, TAKEOVER_LIMIT);
    eprintln!("sbc2 active {took:?} after the demotion of sbc1");
    assert!(took <= TAKEOVER_LIMIT, "sbc2 took over after {took:?}");
    wait_roles(&sbc1, "standby", &sbc2, "active", Duration::from_secs(3));
    let vips_gone = pair.wait_vips(1, false, demoted_at, Duration::from_secs(3));
    let vips_up = pair.wait_vips(2, true, demoted_at, Duration::from_secs(3));
    eprintln!("sbc1 dropped the VIPs {vips_gone:?} after the demotion, sbc2 held both {vips_up:?} after it");

    let status = rtp_a.wait_timeout(LIMIT).expect("rtpgen a ends");
    assert!(status.success(), "{}", rtp_a.output_tail());
    let status = rtp_b.wait_timeout(LIMIT).expect("rtpgen b ends");
    assert!(status.success(), "{}", rtp_b.output_tail());
    let (ra, rb): (Report, Report) = (read_report(&a_report).expect("a report"), read_report(&b_report).expect("b"));
    eprintln!("media gap across the demotion: A heard {} ms, B heard {} ms", ra.max_gap_ms, rb.max_gap_ms);
    for (side, r) in [("A", &ra), ("B", &rb)] {
        assert_eq!(r.sent, COUNT, "{side}: {r:?}");
        assert_eq!((r.corrupt, r.duplicates, r.seq_mismatch), (0, 0, 0), "{side}: {r:?}");
        assert_eq!(r.last_index, Some(COUNT - 1), "{side}: media resumed after the demotion: {r:?}");
        assert!(r.max_gap_ms <= MAX_MEDIA_GAP.as_secs_f64() * 1000.0, "{side}: gap {} ms: {r:?}", r.max_gap_ms);
    }
    uac.wait().expect("uac runs").assert_all_successful(1).expect("the caller's BYE completes");
    uas.wait().expect("uas runs").assert_all_successful(1).expect("the carrier's BYE completes");
    eprintln!("role changes: sbc1 {:?}, sbc2 {:?}", role_changes(&sbc1), role_changes(&sbc2));
    let cdrs = pair.wait_cdrs(1);
    let by_id = one_cdr_per_call(&cdrs, 1);
    let d = by_id.values().next().and_then(|c| c["duration_s"].as_f64()).unwrap_or(-1.0);
    assert!((d - HOLD.as_secs_f64()).abs() <= 1.5, "the CDR has the true duration: {d} s: {cdrs:?}");
}

#[test]
fn replication_link_cut_does_not_make_both_active() {
    let pair = Pair::new();
    let (sbc1, sbc2) = pair.start_both();
    pair.topo.exec(Host::Sbc1, "ip", &["link", "set", "dev", "r0", "down"]).expect("cut r0");
    // Heartbeats still cross sides a and b: at no time may both be active for longer than dead_after (measured
    // with this loop's resolution: both states are read one after the other).
    let poll = Duration::from_millis(50);
    let until = Instant::now() + Duration::from_secs(3);
    let (mut both_since, mut worst) = (None::<Instant>, Duration::ZERO);
    let mut seen = Vec::new();
    while Instant::now() < until {
        let (s1, s2) = (ha(&sbc1), ha(&sbc2));
        let both = role(&s1) == "active" && role(&s2) == "active";
        match (both, both_since) {
            (true, None) => both_since = Some(Instant::now()),
            (false, Some(t)) => {
                worst = worst.max(t.elapsed());
                both_since = None;
            }
            _ => {}
        }
        if let Some(t) = both_since {
            worst = worst.max(t.elapsed());
        }
        let pair_roles = format!("{}/{}", role(&s1), role(&s2));
        if seen.last() != Some(&pair_roles) {
            seen.push(pair_roles);
        }
        std::thread::sleep(poll);
    }
    eprintln!("roles (sbc1/sbc2) while r0 was down: {seen:?}; both active at most {worst:?}");
    eprintln!("role changes: sbc1 {:?}, sbc2 {:?}", role_changes(&sbc1), role_changes(&sbc2));
    assert!(
        worst <= DEAD_AFTER + poll,
        "both boxes active for {worst:?} with only the replication link cut: {seen:?}\n--- sbc1 log ---\n{}\n\
         --- sbc2 log ---\n{}",
        sbc1.log_tail(),
        sbc2.log_tail()
    );

    // Restored: they converge to one active and one standby, each seeing the other.
    pair.topo.exec(Host::Sbc1, "ip", &["link", "set", "dev", "r0", "up"]).expect("restore r0");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s1, s2) = (ha(&sbc1), ha(&sbc2));
        let roles = [role(&s1), role(&s2)];
        let alive = |s: &anyhow::Result<Value>| s.as_ref().is_ok_and(|v| v["peer_alive"] == Value::Bool(true));
        if (roles == ["active", "standby"] || roles == ["standby", "active"]) && alive(&s1) && alive(&s2) {
            eprintln!("converged after r0 came back: sbc1 {}, sbc2 {}", shown(&s1), shown(&s2));
            let active = if roles[0] == "active" { 1 } else { 2 };
            pair.wait_vips(active, true, Instant::now(), Duration::from_secs(3));
            pair.wait_vips(3 - active, false, Instant::now(), Duration::from_secs(3));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no convergence 10 s after r0 came back: sbc1 {}, sbc2 {}\n--- sbc1 log ---\n{}\n--- sbc2 log ---\n{}",
            shown(&s1),
            shown(&s2),
            sbc1.log_tail(),
            sbc2.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn keepalived_mode_follows_its_notifications_and_the_call_moves_with_the_addresses() {
    const HOLD: Duration = Duration::from_secs(8);
    const LIMIT: Duration = Duration::from_secs(30);
    let pair = Pair::new();
    // keepalived's role: it moves the addresses; sbc only hears about it through its notify scripts.
    let start = |node: u8| {
        let config =
            pair_sbc_config(node, if node == 1 { PRIORITY_1 } else { PRIORITY_2 }, &pair.cdr[usize::from(node - 1)])
                .replace("[ha]\n", "[ha]\nmode = \"keepalived\"\n");
        Sbc::start_in(&pair.topo.ns(Host::pair_box(node)), &format!("ka-sbc{node}"), &config, addr(VIP_A, 5060), api())
            .unwrap_or_else(|e| panic!("sbc{node} starts: {e:#}"))
    };
    let (sbc1, sbc2) = (start(1), start(2));
    let notify = |node: u8, state: &str| {
        let (status, body) = http_request(&pair.topo.ns(Host::pair_box(node)), "POST", api(), &format!("/ha/{state}"))
            .expect("POST reaches");
        assert!((200..300).contains(&status), "POST /ha/{state} to sbc{node}: {status} {body}");
    };
    let move_vips = |node: u8, add: bool| {
        for (vip, dev) in [(VIP_A, "a0"), (VIP_B, "b0")] {
            let cidr = format!("{vip}/24");
            let verb = if add { "add" } else { "del" };
            pair.topo.exec(Host::pair_box(node), "ip", &["addr", verb, &cidr, "dev", dev]).expect("ip addr");
            if add {
                let _ = pair.topo.exec(Host::pair_box(node), "arping", &["-U", "-c", "1", "-I", dev, &vip.to_string()]);
            }
        }
    };
    // No heartbeats in this mode (keepalived has its own), so no `peer_alive`: only the roles are waited for.
    let roles = |want1: &str, want2: &str| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while role(&ha(&sbc1)) != want1 || role(&ha(&sbc2)) != want2 {
            assert!(Instant::now() < deadline, "want {want1}/{want2}: {} {}", shown(&ha(&sbc1)), shown(&ha(&sbc2)));
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(role(&ha(&sbc1)), "standby", "no role of its own in keepalived mode: {}", shown(&ha(&sbc1)));
    move_vips(1, true);
    notify(1, "active");
    notify(2, "standby");
    roles("active", "standby");
    let uas = pair.carrier(1, LIMIT);
    let uac = pair.caller(5060, 1, 1, HOLD, RTP_PORT, LIMIT);
    wait_ha_at_least(&sbc2, "sbc2", "foreign_calls", 1, Duration::from_secs(10));
    // keepalived fails over: BACKUP on sbc1, the addresses move, MASTER on sbc2.
    notify(1, "standby");
    move_vips(1, false);
    move_vips(2, true);
    notify(2, "active");
    roles("standby", "active");
    wait_ha_at_least(&sbc2, "sbc2", "calls", 1, Duration::from_secs(2));
    uac.wait().expect("uac runs").assert_all_successful(1).expect("the caller's BYE completes via sbc2");
    uas.wait().expect("uas runs").assert_all_successful(1).expect("the carrier's BYE completes");
    let cdrs = pair.wait_cdrs(1);
    one_cdr_per_call(&cdrs, 1);
}

/// `config/examples/pair-1.toml` and `pair-2.toml` start exactly as shipped (TCP and UDP listeners on service
/// addresses the standby does not hold), the preferred box becomes active and carries a call, and when it is
/// killed the survivor holds the service addresses alone within 3 s: the dead box's addresses expire by
/// themselves, as nobody is left to renew them.
#[test]
fn pair_examples_start_as_shipped_and_a_killed_active_lets_go_of_its_addresses() {
    let pair = Pair::new();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/examples");
    // The examples write their CDRs under /var/lib/sbc: leave nothing there that was not there before.
    let cdr_files = [Path::new("/var/lib/sbc/cdr-sbc1.jsonl"), Path::new("/var/lib/sbc/cdr-sbc2.jsonl")];
    let existed: Vec<bool> = cdr_files.iter().map(|p| p.exists()).collect();
    struct Cleanup<'a>(&'a [&'a Path], Vec<bool>);
    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            for (p, existed) in self.0.iter().zip(&self.1) {
                if !existed {
                    let _ = std::fs::remove_file(p);
                }
            }
        }
    }
    let _cleanup = Cleanup(&cdr_files, existed);
    let start = |node: u8| {
        let shipped = std::fs::read_to_string(examples.join(format!("pair-{node}.toml"))).expect("example");
        Sbc::start_in(
            &pair.topo.ns(Host::pair_box(node)),
            &format!("example-sbc{node}"),
            &shipped,
            addr(VIP_A, 5060),
            api(),
        )
        .unwrap_or_else(|e| panic!("pair-{node}.toml starts as shipped: {e:#}"))
    };
    let (sbc1, sbc2) = (start(1), start(2));
    wait_roles(&sbc1, "active", &sbc2, "standby", Duration::from_secs(10));
    pair.wait_vips(1, true, Instant::now(), WAIT);
    assert!(pair.vips_on(2).is_empty(), "the standby holds no service address: {:?}", pair.vips_on(2));

    // The example probes its carriers with OPTIONS every 5 s, which SIPp's UAS counts as calls (failed ones, as
    // its scenario expects an INVITE): room for them, and only the caller's side is counted.
    let uas = Sipp::new("uas_answer.xml")
        .netns(&pair.topo.ns(Host::B))
        .local_ip(CARRIER_B)
        .local_port(5060)
        .calls(50)
        .limit(Duration::from_secs(30))
        .spawn()
        .expect("uas starts");
    let uac = Sipp::new("uac_call.xml")
        .netns(&pair.topo.ns(Host::A))
        .local_ip(CALLER)
        .local_port(5060)
        .target(addr(VIP_A, 5060))
        .service("030123456")
        .calls(3)
        .pause(Duration::from_millis(200))
        .limit(Duration::from_secs(30))
        .run()
        .expect("uac runs");
    uac.assert_all_successful(3).expect("calls through the shipped example");
    drop(uas);

    let killed = Instant::now();
    kill9(&sbc1);
    let took = wait_role(&sbc2, "sbc2", "active", killed, TAKEOVER_LIMIT);
    pair.wait_vips(2, true, killed, WAIT);
    let gone = pair.wait_vips(1, false, killed, WAIT);
    eprintln!("sbc2 active {took:?} after the kill; the killed box's addresses expired {gone:?} after it");
    std::thread::sleep(Duration::from_secs(3).saturating_sub(killed.elapsed()));
    assert!(pair.vips_on(1).is_empty(), "3 s after the kill the dead box holds {:?}", pair.vips_on(1));
    assert_eq!(pair.vips_on(2).len(), 2, "the survivor holds both service addresses");

    // The survivor, idle and alone, sleeps between its heartbeats. (Its pair loop once asked to be woken at the
    // dead peer's long-passed deadline, again and again: more than a core, measured 1.16 core-seconds per second,
    // on the box that had just taken over every call.)
    let before = tests::procfs::cpu_ticks(sbc2.id()).expect("sbc2's CPU time");
    std::thread::sleep(Duration::from_secs(3));
    let used = (tests::procfs::cpu_ticks(sbc2.id()).expect("sbc2's CPU time") - before) as f64
        / tests::procfs::TICKS_PER_SECOND
        / 3.0;
    eprintln!("the idle survivor used {:.1} % of a core", used * 100.0);
    assert!(used < 0.25, "the idle survivor used {:.0} % of a core: its pair loop spins", used * 100.0);
}

/// With native XDP on both boxes, a kill -9 of the active: the new active's relay learns the calls' latched peers
/// from the replicated records and hands their flows to the kernel at the takeover, so its XDP program forwards the
/// media from the first packets after the takeover and user space sees at most a couple of packets per flow (those
/// that wait for the neighbour of a peer this box never talked to).
#[test]
fn xdp_pair_forwards_media_in_the_kernel_from_the_first_packets_after_a_takeover() {
    const CALLS: u32 = 10;
    const MEDIA_SECONDS: u64 = 12;
    let pair = Pair::new();
    let _helpers = pair.topo.prepare_xdp_pair(&tests::media_relay_binary().expect("media-relay built")).expect("xdp");
    let sbc1 = pair.start_xdp(1, "native");
    let sbc2 = pair.start_xdp(2, "native");
    wait_roles(&sbc1, "active", &sbc2, "standby", Duration::from_secs(10));
    assert_eq!(sbc2.metric("sbc_media_xdp_mode").ok(), Some(2.0), "native XDP on the standby: {}", sbc2.log_tail());
    pair.wait_vips(1, true, Instant::now(), Duration::from_secs(5));

    let uas = pair.carrier(CALLS, Duration::from_secs(60));
    let mut fleet_a = fleet(&pair.topo, Host::A, "fleet-a", addr(CALLER, RTP_PORT), CALLS, MEDIA_SECONDS, SSRC_A);
    let mut fleet_b = fleet(&pair.topo, Host::B, "fleet-b", addr(CARRIER_B, RTP_PORT), CALLS, MEDIA_SECONDS, SSRC_B);
    let uac = pair.caller(5060, CALLS, 10, Duration::from_secs(MEDIA_SECONDS + 8), RTP_PORT, Duration::from_secs(60));
    let (ports_a, ports_b) = wait_relay_ports(&uac, &uas, CALLS as usize, Duration::from_secs(30));
    let dir = pair.topo.dir().to_owned();
    for (name, ip, ports) in [("fleet-a", VIP_A, &ports_a), ("fleet-b", VIP_B, &ports_b)] {
        let text: String = ports.iter().map(|p| format!("{ip}:{p}\n")).collect();
        tests::write_atomically(&dir.join(format!("{name}.targets")), &text).expect("written");
    }
    // The active forwards in the kernel, and every latch reached the standby.
    wait_ha_at_least(&sbc2, "sbc2", "foreign_calls", u64::from(CALLS), Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(3));
    let kernel1 = sbc1.metric("sbc_media_kernel_packets_total").unwrap_or(0.0);
    assert!(kernel1 > 0.0, "the active forwards in the kernel: {}", sbc1.log_tail());
    let user_before = sbc2.metric("sbc_media_packets_received_total").unwrap_or(0.0);
    assert_eq!(user_before, 0.0, "the standby relays nothing");

    let killed = Instant::now();
    kill9(&sbc1);
    wait_role(&sbc2, "sbc2", "active", killed, TAKEOVER_LIMIT);
    wait_ha_at_least(&sbc2, "sbc2", "calls", u64::from(CALLS), Duration::from_secs(2));
    let a = fleet_report(&mut fleet_a, &dir.join("fleet-a.json"));
    let b = fleet_report(&mut fleet_b, &dir.join("fleet-b.json"));
    let gap_ab = assert_media_across_takeover("A -> B", &a, &b, CALLS);
    let gap_ba = assert_media_across_takeover("B -> A", &b, &a, CALLS);
    // Counters are exported every second.
    std::thread::sleep(Duration::from_millis(1500));
    let user = sbc2.metric("sbc_media_packets_received_total").unwrap_or(0.0);
    let kernel = sbc2.metric("sbc_media_kernel_packets_total").unwrap_or(0.0);
    let flows = f64::from(2 * CALLS);
    eprintln!(
        "after the takeover sbc2's XDP program forwarded {kernel} packets, user space saw {user} ({:.1} per flow); \
         media gap at most {gap_ab:?} A->B, {gap_ba:?} B->A",
        user / flows
    );
    assert!(kernel > 0.0, "the new active forwards in the kernel");
    assert!(user <= 2.0 * flows, "user space saw at most 2 packets per flow: {user} for {flows} flows");
    uac.wait().expect("uac runs").assert_all_successful(CALLS.into()).expect("every call completes");
    uas.wait().expect("uas runs").assert_all_successful(CALLS.into()).expect("every call completes at the carrier");
}

/// The rolling upgrade of config/README.md ("[ha]", rolling upgrade) with calls up, from this build (format 3) to
/// the next (the `format-next` build: format 4, a new record field; `SBC_NEXT_BINARY` may name another): upgrade
/// the standby, hand the calls to it with a demotion, upgrade the other box. The boxes replicate both ways across
/// the formats, and no call is lost: media resumes on every stream after the handover, every call ends with BYE,
/// one CDR each.
#[test]
fn rolling_upgrade_to_the_next_build_loses_no_call() {
    const CALLS: u32 = 20;
    const MEDIA_SECONDS: u64 = 40;
    const HOLD: Duration = Duration::from_secs(50);
    const LIMIT: Duration = Duration::from_secs(120);
    let next = tests::sbc_next_binary().expect("the next build");
    let pair = Pair::new();
    let (sbc1, sbc2) = pair.start_both();
    let uas = pair.carrier(CALLS, LIMIT);
    let mut fleet_a = fleet(&pair.topo, Host::A, "fleet-a", addr(CALLER, RTP_PORT), CALLS, MEDIA_SECONDS, SSRC_A);
    let mut fleet_b = fleet(&pair.topo, Host::B, "fleet-b", addr(CARRIER_B, RTP_PORT), CALLS, MEDIA_SECONDS, SSRC_B);
    let uac = pair.caller(5060, CALLS, 10, HOLD, RTP_PORT, LIMIT);
    let (ports_a, ports_b) = wait_relay_ports(&uac, &uas, CALLS as usize, Duration::from_secs(30));
    let dir = pair.topo.dir().to_owned();
    for (name, ip, ports) in [("fleet-a", VIP_A, &ports_a), ("fleet-b", VIP_B, &ports_b)] {
        let text: String = ports.iter().map(|p| format!("{ip}:{p}\n")).collect();
        tests::write_atomically(&dir.join(format!("{name}.targets")), &text).expect("written");
    }
    wait_ha_at_least(&sbc2, "sbc2", "foreign_calls", u64::from(CALLS), Duration::from_secs(5));
    let started = Instant::now();

    // 1. The standby is upgraded: stopped, started as the next build; it resyncs from the active (this build).
    drop(sbc2);
    let sbc2 = pair.start_binary(2, &next);
    wait_roles(&sbc1, "active", &sbc2, "standby", Duration::from_secs(10));
    wait_ha_at_least(&sbc2, "sbc2", "foreign_calls", u64::from(CALLS), Duration::from_secs(10));
    let s2 = ha(&sbc2).expect("sbc2 /ha");
    assert_eq!((s2["format"].as_u64(), s2["peer_format"].as_u64()), (Some(4), Some(3)), "{s2}");
    eprintln!("step 1: sbc2 upgraded ({}) and holding every call {:?} in", s2["software"], started.elapsed());

    // 2. The calls move to the upgraded box.
    let (status, body) = http_request(&pair.topo.ns(Host::Sbc1), "POST", api(), "/ha/demote").expect("POST reaches");
    assert!((200..300).contains(&status), "POST /ha/demote: {status} {body}");
    let demoted = Instant::now();
    wait_role(&sbc2, "sbc2", "active", demoted, TAKEOVER_LIMIT);
    wait_ha_at_least(&sbc2, "sbc2", "calls", u64::from(CALLS), Duration::from_secs(5));
    // This build reads what the next one writes: the snapshot of every call on the new link.
    wait_ha_at_least(&sbc1, "sbc1", "records_received", u64::from(CALLS), Duration::from_secs(10));
    wait_ha_at_least(&sbc1, "sbc1", "foreign_calls", u64::from(CALLS), Duration::from_secs(10));
    let s1 = ha(&sbc1).expect("sbc1 /ha");
    assert_eq!((s1["format"].as_u64(), s1["peer_format"].as_u64()), (Some(3), Some(4)), "{s1}");
    eprintln!("step 2: sbc2 active with every call, sbc1 standby holding them {:?} in", started.elapsed());

    // 3. The other box is upgraded and rejoins as standby.
    drop(sbc1);
    let sbc1 = pair.start_binary(1, &next);
    wait_roles(&sbc1, "standby", &sbc2, "active", Duration::from_secs(10));
    wait_ha_at_least(&sbc1, "sbc1", "foreign_calls", u64::from(CALLS), Duration::from_secs(10));
    eprintln!("step 3: both boxes on the next build {:?} in", started.elapsed());

    let a = fleet_report(&mut fleet_a, &dir.join("fleet-a.json"));
    let b = fleet_report(&mut fleet_b, &dir.join("fleet-b.json"));
    let gap_ab = assert_media_across_takeover("A -> B", &a, &b, CALLS);
    let gap_ba = assert_media_across_takeover("B -> A", &b, &a, CALLS);
    uac.wait().expect("uac runs").assert_all_successful(CALLS.into()).expect("every call completes for the caller");
    uas.wait().expect("uas runs").assert_all_successful(CALLS.into()).expect("every call completes for the carrier");
    let cdrs = pair.wait_cdrs(CALLS as usize);
    one_cdr_per_call(&cdrs, CALLS as usize);
    eprintln!("rolling upgrade with {CALLS} calls up: media gap at most {gap_ab:?} (A->B), {gap_ba:?} (B->A)");
}

/// A ban made by the active's edge guard reaches the standby (and holds there after a takeover): sipvicious's
/// svmap from carrier c's host (a scanner's User-Agent) is banned by sbc1 and the ban shows on sbc2 as one from its
/// peer.
#[test]
fn a_ban_on_the_active_reaches_the_standby() {
    let svmap = tests::require_tool("svmap", "sipvicious");
    let pair = Pair::new();
    let (sbc1, sbc2) = pair.start_both();
    pair.wait_vips(1, true, Instant::now(), Duration::from_secs(5));
    let cmd = format!("{} -p 5060 -t 0.1 {VIP_B} 2>&1", svmap.display());
    let out = pair.topo.exec(Host::C, "sh", &["-c", &cmd]).expect("svmap runs");
    assert!(out.contains("found nothing"), "svmap found nothing:\n{out}");
    let deadline = Instant::now() + Duration::from_secs(5);
    let local = "sbc_edge_bans_total{reason=\"scanner\",origin=\"local\"}";
    let peer = "sbc_edge_bans_total{reason=\"scanner\",origin=\"peer\"}";
    while sbc2.metric(peer).unwrap_or(0.0) < 1.0 {
        assert!(Instant::now() < deadline, "the ban did not reach sbc2:\n{}", sbc2.log_tail());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(sbc1.metric(local).ok(), Some(1.0), "sbc1 banned the scanner");
    assert!(sbc2.metric("sbc_edge_bans_active").unwrap_or(0.0) >= 1.0, "and the ban holds on sbc2");
}

/// Group g2's service addresses in `config/examples/active-active-{1,2}.toml` (g1's are `VIP_A`, `VIP_B`).
const VIP2_A: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 18, 1, 4);
const VIP2_B: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 18, 2, 4);

/// This box's role for a group of an active/active pair, from `/ha`.
fn group_role(sbc: &Sbc, group: &str) -> String {
    let s = ha(sbc);
    let groups = s.as_ref().ok().and_then(|v| v["groups"].as_array().cloned()).unwrap_or_default();
    groups.iter().find(|g| g["name"] == group).and_then(|g| g["role"].as_str()).unwrap_or("?").to_owned()
}

/// Waits until every `(box, group, role)` holds at once; fails after `timeout` with both boxes' `/ha` and logs.
fn wait_group_roles(boxes: [&Sbc; 2], want: &[(usize, &str, &str)], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if want.iter().all(|(b, g, r)| group_role(boxes[*b - 1], g) == *r) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "after {timeout:?}, want {want:?}; sbc1: {}; sbc2: {}\n--- sbc1 log ---\n{}\n--- sbc2 log ---\n{}",
            shown(&ha(boxes[0])),
            shown(&ha(boxes[1])),
            boxes[0].log_tail(),
            boxes[1].log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Active/active with `config/examples/active-active-{1,2}.toml` as shipped (only the CDR path moved into the test's
/// directory and the carrier probes left out, as SIPp's UAS would count them as calls): each box is active for its
/// home group and carries calls, with RTP both ways. Kill sbc1: sbc2 holds every call of both groups, their media
/// resumes, their BYEs complete. sbc1 comes back: nothing moves while g1 still has calls on sbc2 (no preemption);
/// once they ended, g1 goes home and new calls to it are sbc1's. Then kill sbc2 with calls on both groups: sbc1
/// holds them all. One CDR per call throughout.
#[test]
fn active_active_pair_carries_calls_on_both_boxes_and_either_survives_the_others_death() {
    const PER_GROUP: u32 = 8;
    const HOLD: Duration = Duration::from_secs(20);
    const MEDIA_SECONDS: u64 = 14;
    const LIMIT: Duration = Duration::from_secs(90);
    let pair = Pair::new();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/examples");
    let config = |node: u8| {
        let shipped = std::fs::read_to_string(examples.join(format!("active-active-{node}.toml"))).expect("example");
        let cdr = pair.cdr[usize::from(node - 1)].display().to_string();
        let config: String = shipped
            .replace(&format!("/var/lib/sbc/cdr-sbc{node}.jsonl"), &cdr)
            .lines()
            .filter(|l| !l.starts_with("probe = "))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(config.contains(&cdr) && config.contains("groups = ["), "the example changed: {config}");
        config
    };
    let start = |node: u8| {
        let ns = pair.topo.ns(Host::pair_box(node));
        Sbc::start_in(&ns, &format!("aa-sbc{node}"), &config(node), addr(VIP_A, 5060), api())
            .unwrap_or_else(|e| panic!("active-active-{node}.toml starts: {e:#}"))
    };
    let sbc1 = start(1);
    let sbc2 = start(2);
    wait_group_roles(
        [&sbc1, &sbc2],
        &[(1, "g1", "active"), (1, "g2", "standby"), (2, "g1", "standby"), (2, "g2", "active")],
        Duration::from_secs(10),
    );

    // Calls on both groups, each with a stream each way: the caller dials g1 from port 5060 and g2 from 5061.
    const NEW_PER_GROUP: u32 = 3;
    let calls = 2 * PER_GROUP;
    let uas = pair.carrier(calls + 2 * NEW_PER_GROUP, LIMIT);
    let caller = |port: u16, vip: std::net::Ipv4Addr, n: u32, hold: Duration, rtp_port: u16| {
        Sipp::new("uac_call_rtp.xml")
            .netns(&pair.topo.ns(Host::A))
            .local_ip(CALLER)
            .local_port(port)
            .target(addr(vip, 5060))
            .service("+4930123456")
            .key("rtp_port", &rtp_port.to_string())
            .calls(n)
            .rate(10)
            .pause(hold)
            .limit(LIMIT)
            .trace_messages(true)
            .spawn()
            .expect("uac starts")
    };
    let mut fleet_a = fleet(&pair.topo, Host::A, "fleet-a", addr(CALLER, RTP_PORT), calls, MEDIA_SECONDS, SSRC_A);
    let mut fleet_b = fleet(&pair.topo, Host::B, "fleet-b", addr(CARRIER_B, RTP_PORT), calls, MEDIA_SECONDS, SSRC_B);
    let uac1 = caller(5060, VIP_A, PER_GROUP, HOLD, RTP_PORT);
    let uac2 = caller(5061, VIP2_A, PER_GROUP, HOLD, RTP_PORT);
    // The relay ports each side was given, by group address.
    let deadline = Instant::now() + Duration::from_secs(30);
    let targets = loop {
        let ports = |r: &Running, ip: std::net::Ipv4Addr| distinct_sdp_ports(&r.messages(), &ip.to_string());
        let (a1, a2) = (ports(&uac1, VIP_A), ports(&uac2, VIP2_A));
        let (b1, b2) = (ports(&uas, VIP_B), ports(&uas, VIP2_B));
        let n = PER_GROUP as usize;
        if [&a1, &a2, &b1, &b2].iter().all(|p| p.len() >= n) {
            let list = |ip1, p1: &[u16], ip2, p2: &[u16]| -> String {
                let one = p1[..n].iter().map(|p| format!("{ip1}:{p}\n"));
                one.chain(p2[..n].iter().map(|p| format!("{ip2}:{p}\n"))).collect()
            };
            break (list(VIP_A, &a1, VIP2_A, &a2), list(VIP_B, &b1, VIP2_B, &b2));
        }
        assert!(Instant::now() < deadline, "relay ports: g1 {a1:?}/{b1:?}, g2 {a2:?}/{b2:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let dir = pair.topo.dir().to_owned();
    tests::write_atomically(&dir.join("fleet-a.targets"), &targets.0).expect("written");
    tests::write_atomically(&dir.join("fleet-b.targets"), &targets.1).expect("written");
    // Both boxes carry calls, and each holds the other's.
    for (sbc, name) in [(&sbc1, "sbc1"), (&sbc2, "sbc2")] {
        wait_ha_at_least(sbc, name, "calls", u64::from(PER_GROUP), Duration::from_secs(10));
        wait_ha_at_least(sbc, name, "foreign_calls", u64::from(PER_GROUP), Duration::from_secs(10));
    }
    std::thread::sleep(Duration::from_secs(3));

    // sbc1 dies: sbc2 takes g1 over with its calls, beside its own.
    let killed = Instant::now();
    kill9(&sbc1);
    wait_group_roles([&sbc1, &sbc2], &[(2, "g1", "active"), (2, "g2", "active")], TAKEOVER_LIMIT + WAIT);
    wait_ha_at_least(&sbc2, "sbc2", "calls", u64::from(calls), Duration::from_secs(2));
    eprintln!("sbc2 holds both groups and {calls} calls {:?} after sbc1 was killed", killed.elapsed());

    // sbc1 comes back: standby for both; g1 stays on sbc2 while it has calls there (no preemption).
    let sbc1 = {
        drop(sbc1);
        start(1)
    };
    wait_group_roles([&sbc1, &sbc2], &[(1, "g1", "standby"), (1, "g2", "standby")], Duration::from_secs(10));
    wait_ha_at_least(&sbc1, "sbc1", "foreign_calls", u64::from(calls), Duration::from_secs(10));
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        assert_eq!(
            group_role(&sbc2, "g1"),
            "active",
            "no preemption while g1 has calls on sbc2: {}",
            shown(&ha(&sbc2))
        );
        assert_eq!(ha(&sbc2).ok().and_then(|v| v["calls"].as_u64()), Some(u64::from(calls)));
        std::thread::sleep(Duration::from_millis(200));
    }

    // Media resumed on every call of both groups; every call ends normally through sbc2.
    let a = fleet_report(&mut fleet_a, &dir.join("fleet-a.json"));
    let b = fleet_report(&mut fleet_b, &dir.join("fleet-b.json"));
    let gap_ab = assert_media_across_takeover("A -> B", &a, &b, calls);
    let gap_ba = assert_media_across_takeover("B -> A", &b, &a, calls);
    uac1.wait().expect("uac runs").assert_all_successful(PER_GROUP.into()).expect("g1's calls complete");
    uac2.wait().expect("uac runs").assert_all_successful(PER_GROUP.into()).expect("g2's calls complete");
    let cdrs = pair.wait_cdrs(calls as usize);
    one_cdr_per_call(&cdrs, calls as usize);

    // g1 is idle on sbc2 now: it goes home, and new calls to it are sbc1's.
    let idle = Instant::now();
    wait_group_roles(
        [&sbc1, &sbc2],
        &[(1, "g1", "active"), (1, "g2", "standby"), (2, "g1", "standby"), (2, "g2", "active")],
        Duration::from_secs(10),
    );
    eprintln!("g1 went home to sbc1 {:?} after its last call on sbc2 ended", idle.elapsed());
    let per_group = NEW_PER_GROUP;
    let new_hold = Duration::from_secs(8);
    let uac1 = caller(5062, VIP_A, per_group, new_hold, 7090);
    let uac2 = caller(5063, VIP2_A, per_group, new_hold, 7092);
    wait_ha_at_least(&sbc1, "sbc1", "calls", per_group.into(), Duration::from_secs(10));
    wait_ha_at_least(&sbc2, "sbc2", "calls", per_group.into(), Duration::from_secs(10));
    wait_ha_at_least(&sbc1, "sbc1", "foreign_calls", per_group.into(), Duration::from_secs(10));

    // Now sbc2 dies: sbc1 holds every call of both groups.
    let killed = Instant::now();
    kill9(&sbc2);
    wait_group_roles([&sbc1, &sbc2], &[(1, "g1", "active"), (1, "g2", "active")], TAKEOVER_LIMIT + WAIT);
    wait_ha_at_least(&sbc1, "sbc1", "calls", (2 * per_group).into(), Duration::from_secs(2));
    eprintln!("sbc1 holds both groups {:?} after sbc2 was killed", killed.elapsed());
    uac1.wait().expect("uac runs").assert_all_successful(per_group.into()).expect("g1's new calls complete");
    uac2.wait().expect("uac runs").assert_all_successful(per_group.into()).expect("g2's new calls complete on sbc1");
    let total = calls as usize + 2 * per_group as usize;
    let cdrs = pair.wait_cdrs(total);
    one_cdr_per_call(&cdrs, total);
    let sbc1_cdrs = std::fs::read_to_string(&pair.cdr[0]).unwrap_or_default().lines().count();
    assert_eq!(sbc1_cdrs, 2 * per_group as usize, "sbc1 billed the new calls of both groups (g1's as their home)");
    drop(uas);
    eprintln!("active/active: {calls} calls across a kill of sbc1 (media gap at most {gap_ab:?} / {gap_ba:?}), g1 home again once idle, {} calls across a kill of sbc2", 2 * per_group);
}

/// The NG `statistics` of a box: its `currentstatistics`.
fn ng_current(ng: &mut NgClient) -> Value {
    let req =
        relay_proto::ng::Request { command: relay_proto::ng::Command::Statistics, ..relay_proto::ng::Request::ping() };
    let reply = ng.request(&req, WAIT).expect("statistics");
    let current = reply.body.get("statistics").and_then(|s| s.get("currentstatistics")).cloned();
    let int = |k: &str| current.as_ref().and_then(|c| c.get(k)).and_then(|v| v.as_int()).unwrap_or(-1);
    serde_json::json!({ "own": int("sessionsown"), "foreign": int("sessionsforeign") })
}

#[test]
fn a_call_made_over_ng_survives_the_actives_death_and_the_standby_deletes_it() {
    const SECONDS: u64 = 10;
    let pair = Pair::new();
    let sbc1 = pair.start_ng(1);
    let sbc2 = pair.start_ng(2);
    wait_roles(&sbc1, "active", &sbc2, "standby", Duration::from_secs(10));
    pair.wait_vips(1, true, Instant::now(), Duration::from_secs(5));

    // Offer and answer over NG to the active, as Kamailio's rtpengine module would send them.
    let (mut ng1, mut ng2) = (pair.ng_client(1), pair.ng_client(2));
    let peers = StreamPeers { a: addr(CALLER, RTP_PORT), b: addr(CARRIER_B, RTP_PORT) };
    let ports = ng1.call("ng-ha-1", &[peers]).expect("offer and answer on the active");
    let (a_side, b_side) = (ports[0].a_side, ports[0].b_side);
    assert_eq!((a_side.ip(), b_side.ip()), (VIP_A.into(), VIP_B.into()), "the relay's service addresses in SDP");
    let dir = pair.topo.dir().to_owned();
    let mut fleet_a = fleet(&pair.topo, Host::A, "ng-a", addr(CALLER, RTP_PORT), 1, SECONDS, SSRC_A);
    let mut fleet_b = fleet(&pair.topo, Host::B, "ng-b", addr(CARRIER_B, RTP_PORT), 1, SECONDS, SSRC_B);
    tests::write_atomically(&dir.join("ng-a.targets"), &format!("{a_side}\n")).expect("written");
    tests::write_atomically(&dir.join("ng-b.targets"), &format!("{b_side}\n")).expect("written");

    // The standby holds the call (and its latches) before the active dies.
    let deadline = Instant::now() + WAIT;
    while ng_current(&mut ng2)["foreign"] != 1 {
        assert!(Instant::now() < deadline, "sbc2 holds no NG call: {}\n{}", ng_current(&mut ng2), sbc2.log_tail());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(ng_current(&mut ng1)["own"], 1);
    std::thread::sleep(Duration::from_secs(3));
    let relayed1 = sbc1.metric("sbc_media_packets_received_total").unwrap_or(0.0);
    assert!(relayed1 > 0.0, "the active relays the NG call: {}", sbc1.log_tail());
    assert_eq!(sbc2.metric("sbc_media_packets_received_total").ok(), Some(0.0), "the standby relays nothing");

    let killed = Instant::now();
    kill9(&sbc1);
    let took = wait_role(&sbc2, "sbc2", "active", killed, TAKEOVER_LIMIT);
    assert_eq!(ng_current(&mut ng2), serde_json::json!({ "own": 1, "foreign": 0 }), "{}", sbc2.log_tail());
    let a = fleet_report(&mut fleet_a, &dir.join("ng-a.json"));
    let b = fleet_report(&mut fleet_b, &dir.join("ng-b.json"));
    let gap_ab = assert_media_across_takeover("NG A -> B", &a, &b, 1);
    let gap_ba = assert_media_across_takeover("NG B -> A", &b, &a, 1);
    eprintln!("sbc2 active {took:?} after the kill; NG call's media gap at most {gap_ab:?} A->B, {gap_ba:?} B->A");

    // The new active answers for the call with its tags, and deletes it with its own relay's figures.
    let query = ng2.request(&relay_proto::ng::Request::new(relay_proto::ng::Command::Query, "ng-ha-1", "caller"), WAIT);
    let query = query.unwrap_or_else(|e| panic!("query on sbc2: {e:#}\n{}", sbc2.log_tail()));
    let tags = query.body.get("tags").unwrap_or_else(|| panic!("{query:?}"));
    assert!(tags.get("caller").is_some() && tags.get("callee").is_some(), "both tags after the takeover: {query:?}");
    let deleted = ng2
        .request(&relay_proto::ng::Request::new(relay_proto::ng::Command::Delete, "ng-ha-1", "caller"), WAIT)
        .expect("delete on sbc2");
    assert_eq!((deleted.result.as_str(), deleted.warning.as_deref()), ("ok", None), "a known call: {deleted:?}");
    let rtp =
        deleted.body.get("totals").and_then(|t| t.get("RTP")).and_then(|r| r.get("packets")).and_then(|p| p.as_int());
    // Both directions for the part of the 10 s after the takeover, at 50 packets per second each.
    assert!(rtp.is_some_and(|p| p >= 2 * 50 * 3), "sbc2's relay carried the call after the takeover: {deleted:?}");
    assert_eq!(ng_current(&mut ng2), serde_json::json!({ "own": 0, "foreign": 0 }));
    eprintln!("delete on sbc2: {} RTP packets relayed by sbc2", rtp.unwrap_or(0));
}

/// A standby whose `[ha]` secret is not the active's: the active's replication link is refused (counted on both
/// boxes with reason `secret_differs`, logged on both), no record reaches the standby while calls go through the
/// active, and the heartbeats each box gets from the other are refused (`bad_mac`), so neither takes the other for
/// its peer. Box 2 has no service address here: hearing no peer it goes active too (a pair that does not pair),
/// and must not take sbc1's addresses from under the calls.
#[test]
fn a_standby_with_another_secret_refuses_the_actives_link_and_heartbeats() {
    const CALLS: u32 = 3;
    const LIMIT: Duration = Duration::from_secs(15);
    let pair = Pair::new();
    let sbc1 = pair.start(1);
    wait_role(&sbc1, "sbc1", "active", Instant::now(), Duration::from_secs(5));
    let other = pair.topo.dir().join("other.secret");
    std::fs::write(&other, "not the pair's secret\n").expect("other secret written");
    let pair_secret = format!("secret_file = \"{}\"", pair.topo.dir().join("pair.secret").display());
    let config = pair_sbc_config(2, PRIORITY_2, &pair.cdr[1])
        .replace(&pair_secret, &format!("secret_file = \"{}\"", other.display()))
        .replace(&format!("vips = [\"{VIP_A}/24 dev a0\", \"{VIP_B}/24 dev b0\"]"), "vips = []");
    assert!(config.contains("other.secret") && config.contains("vips = []"), "box 2's config: {config}");
    let sbc2 =
        Sbc::start_in(&pair.topo.ns(Host::pair_box(2)), "ha-sbc2-other-secret", &config, addr(VIP_A, 5060), api())
            .unwrap_or_else(|e| panic!("sbc2 starts: {e:#}"));

    let uas = pair.carrier(CALLS, LIMIT);
    let uac = pair.caller(5060, CALLS, CALLS, Duration::from_secs(1), RTP_PORT, LIMIT);
    uac.wait().expect("uac ran").assert_all_successful(CALLS.into()).expect("the calls go through the active");
    uas.wait().expect("uas ran").assert_all_successful(CALLS.into()).expect("the carrier answered every call");

    let metric = |sbc: &Sbc, name: &str| sbc.metric(name).unwrap_or(-1.0);
    let refused = |sbc: &Sbc| metric(sbc, "sbc_ha_link_refused_total{reason=\"secret_differs\"}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while (refused(&sbc2) < 1.0 || refused(&sbc1) < 1.0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (s1, s2) = (ha(&sbc1), ha(&sbc2));
    let field = |s: &anyhow::Result<Value>, f: &str| s.as_ref().ok().map_or(Value::Null, |v| v[f].clone());
    eprintln!(
        "link refused: sbc1 {}, sbc2 {}; heartbeats refused (bad MAC): sbc1 {}, sbc2 {}; sbc1 {}, sbc2 {}",
        refused(&sbc1),
        refused(&sbc2),
        metric(&sbc1, "sbc_ha_heartbeats_refused_total{reason=\"bad_mac\"}"),
        metric(&sbc2, "sbc_ha_heartbeats_refused_total{reason=\"bad_mac\"}"),
        shown(&s1),
        shown(&s2)
    );
    let logs = format!("--- sbc1 log ---\n{}\n--- sbc2 log ---\n{}", sbc1.log_tail(), sbc2.log_tail());
    assert!(refused(&sbc2) >= 1.0 && refused(&sbc1) >= 1.0, "the link is refused on both sides\n{logs}");
    for (name, sbc) in [("sbc1", &sbc1), ("sbc2", &sbc2)] {
        let bad_mac = metric(sbc, "sbc_ha_heartbeats_refused_total{reason=\"bad_mac\"}");
        assert!(bad_mac >= 1.0, "{name} refused the other's heartbeats: {bad_mac}\n{logs}");
    }
    assert_eq!(field(&s2, "records_received"), Value::from(0), "no record reached sbc2\n{logs}");
    assert_eq!(field(&s2, "foreign_calls"), Value::from(0), "sbc2 holds no replicated call\n{logs}");
    assert_eq!(field(&s1, "records_sent"), Value::from(0), "sbc1 sent no record\n{logs}");
    assert!(metric(&sbc2, "sbc_ha_records_received_total") <= 0.0, "no record counted on sbc2\n{logs}");
    for s in [&s1, &s2] {
        assert_eq!(field(s, "peer_alive"), Value::Bool(false), "neither sees a peer: {}", shown(s));
        assert_eq!(field(s, "links_secured"), Value::Bool(true), "both have a secret: {}", shown(s));
    }
    let (log1, log2) = (
        std::fs::read_to_string(&sbc1.log).unwrap_or_default(),
        std::fs::read_to_string(&sbc2.log).unwrap_or_default(),
    );
    assert!(log2.contains("replication link from the active refused: the peer's secret differs"), "{logs}");
    assert!(log1.contains("replication link to the standby refused: the peer's secret differs"), "{logs}");
    for secret in [tests::netns::PAIR_SECRET.trim(), "not the pair's secret"] {
        assert!(!log1.contains(secret) && !log2.contains(secret), "a secret in a log\n{logs}");
        assert!(!shown(&s1).contains(secret) && !shown(&s2).contains(secret), "a secret in /ha");
    }
}

/// The rolling upgrade onto the secured links: sbc1 without a secret stands in for a build from before them (its
/// wire format is the old one: plain JSON heartbeats, a hello line and JSON records); sbc2 has the secret and
/// `accept_plain_peer`. sbc2 pairs with it plain and takes its calls at `POST /ha/demote`; sbc1 restarted with the
/// secret and the setting (the upgraded old box) makes the pair secured, calls up.
#[test]
fn a_box_accepting_plain_peers_upgrades_a_pair_onto_the_secured_links_without_losing_calls() {
    const CALLS: u32 = 5;
    const HOLD: Duration = Duration::from_secs(12);
    const LIMIT: Duration = Duration::from_secs(25);
    let pair = Pair::new();
    let secured_config = pair_sbc_config(1, PRIORITY_1, &pair.cdr[0]);
    let plain_config: String =
        secured_config.lines().filter(|l| !l.starts_with("secret_file")).map(|l| l.to_owned() + "\n").collect();
    assert!(!plain_config.contains("secret"), "box 1's config has no secret: {plain_config}");
    let sbc1 =
        Sbc::start_in(&pair.topo.ns(Host::pair_box(1)), "ha-sbc1-plain", &plain_config, addr(VIP_A, 5060), api())
            .unwrap_or_else(|e| panic!("sbc1 (plain) starts: {e:#}"));
    wait_role(&sbc1, "sbc1", "active", Instant::now(), Duration::from_secs(5));
    let sbc2 = pair.start_with(2, "accept_plain_peer = true\n");
    wait_roles(&sbc1, "active", &sbc2, "standby", Duration::from_secs(10));

    let uas = pair.carrier(CALLS, LIMIT);
    let uac = pair.caller(5060, CALLS, CALLS, HOLD, RTP_PORT, LIMIT);
    wait_ha_at_least(&sbc2, "sbc2", "foreign_calls", u64::from(CALLS), Duration::from_secs(5));
    let metric = |sbc: &Sbc, name: &str| sbc.metric(name).unwrap_or(-1.0);
    let plain = |sbc: &Sbc, what: &str| metric(sbc, &format!("sbc_ha_plain_peer_total{{what=\"{what}\"}}"));
    let s2 = ha(&sbc2);
    let logs = |a: &Sbc, b: &Sbc| format!("--- sbc1 log ---\n{}\n--- sbc2 log ---\n{}", a.log_tail(), b.log_tail());
    assert_eq!(s2.as_ref().ok().map(|v| v["links_secured"].clone()), Some(Value::Bool(false)), "{}", shown(&s2));
    assert!(plain(&sbc2, "link") >= 1.0 && plain(&sbc2, "heartbeat") >= 1.0, "counted\n{}", logs(&sbc1, &sbc2));
    let log2 = std::fs::read_to_string(&sbc2.log).unwrap_or_default();
    assert!(log2.contains("ha.accept_plain_peer: the link to"), "logged loudly\n{}", logs(&sbc1, &sbc2));
    eprintln!("step 1: sbc2 (secret, accept_plain_peer) holds {CALLS} calls of the plain sbc1: {}", shown(&s2));

    // 2. The calls move to the box with the secret, which now speaks plain to the old one as the active.
    let (status, body) = http_request(&pair.topo.ns(Host::Sbc1), "POST", api(), "/ha/demote").expect("POST reaches");
    assert!((200..300).contains(&status), "POST /ha/demote: {status} {body}");
    let demoted = Instant::now();
    let took = wait_role(&sbc2, "sbc2", "active", demoted, TAKEOVER_LIMIT);
    wait_ha_at_least(&sbc2, "sbc2", "calls", u64::from(CALLS), Duration::from_secs(5));
    wait_ha_at_least(&sbc1, "sbc1", "foreign_calls", u64::from(CALLS), Duration::from_secs(5));
    eprintln!("step 2: sbc2 active {took:?} after the demotion; the plain sbc1 holds its calls");

    // 3. The old box is upgraded (here: given the secret, and the setting too, the harder case: two boxes that may
    // hear each other plain first) and rejoins as standby: the pair goes secured.
    drop(sbc1);
    let upgraded = Instant::now();
    let config = secured_config + "accept_plain_peer = true\n";
    let sbc1 = Sbc::start_in(&pair.topo.ns(Host::pair_box(1)), "ha-sbc1", &config, addr(VIP_A, 5060), api())
        .unwrap_or_else(|e| panic!("sbc1 (secured) starts: {e:#}"));
    wait_roles(&sbc1, "standby", &sbc2, "active", Duration::from_secs(5));
    wait_ha_at_least(&sbc1, "sbc1", "foreign_calls", u64::from(CALLS), Duration::from_secs(6));
    let secured = |sbc: &Sbc| ha(sbc).ok().is_some_and(|v| v["links_secured"] == Value::Bool(true));
    while !(secured(&sbc1) && secured(&sbc2)) && upgraded.elapsed() < Duration::from_secs(6) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (s1, s2) = (ha(&sbc1), ha(&sbc2));
    assert!(
        secured(&sbc1) && secured(&sbc2),
        "secured: sbc1 {} sbc2 {}\n{}",
        shown(&s1),
        shown(&s2),
        logs(&sbc1, &sbc2)
    );
    eprintln!("step 3: secured on both {:?} after sbc1's restart with the secret", upgraded.elapsed());

    uac.wait().expect("uac runs").assert_all_successful(CALLS.into()).expect("every call completes for the caller");
    uas.wait().expect("uas runs").assert_all_successful(CALLS.into()).expect("every call completes for the carrier");
    let cdrs = pair.wait_cdrs(CALLS as usize);
    one_cdr_per_call(&cdrs, CALLS as usize);
}
