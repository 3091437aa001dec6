//! HEP v3 export, in the single-SBC topology: the SBC sends a copy of every SIP message of a SIPp call (caller
//! 198.18.1.10 → SBC → carrier b 198.18.2.10) to a collector address on the caller's host, where `dumpcap`
//! captures; `tshark` then decodes the capture with a HEP3 dissector (tests/hep/hep3.lua: Debian's Wireshark 4.0
//! has none of its own) that hands every payload to Wireshark's SIP and JSON dissectors.
//!
//! Each test counts the SIP messages tshark decoded per leg against what the SIPp on that leg sent and received,
//! and checks that both legs carry leg A's Call-ID as correlation id.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tests::capture::Capture;
use tests::netns::{addr, sbc_config, Host, Process, Topology, CALLER, CARRIER_B, SBC_A};
use tests::rtp::{read_report, rtpgen_binary, Rtpgen};
use tests::sipp::{sdp_ports, Running, Sipp};
use tests::Sbc;

const LIMIT: Duration = Duration::from_secs(40);
/// The collector: a port on the caller's host, where the capture runs.
const HEP_PORT: u16 = 9060;
/// The port each side's SDP names for RTP.
const RTP_PORT: u16 = 7078;
/// RTP packets each way.
const PACKETS: u64 = 150;

struct Rig {
    topo: Topology,
    sbc: Sbc,
    cdr: PathBuf,
}

/// The topology with an SBC anchoring media and exporting HEP to `collector` (`udp:` or `tcp:` + address).
fn rig(name: &str, collector: &str) -> Rig {
    let topo = Topology::single_sbc().expect("topology");
    let cdr = topo.dir().join("cdr.jsonl");
    let mut config = sbc_config("", "", "", false, Some(&cdr));
    config.push_str(&format!(
        "\n[media]\ninterfaces = [{{ name = \"a\", address = \"198.18.1.1\" }}, {{ name = \"b\", address = \"198.18.2.1\" }}]\n\
         ports = \"30000-30999\"\nxdp = \"off\"\n\n[hep]\ncollector = \"{collector}\"\nagent_id = 4242\n"
    ));
    let sbc = Sbc::start_in(&topo.ns(Host::Sbc), name, &config, addr(SBC_A, 5060), addr([127, 0, 0, 1].into(), 8080))
        .expect("sbc starts");
    Rig { topo, sbc, cdr }
}

/// What SIPp logged with `-trace_msg`: the start line's label (method, or status code) of every message sent and
/// received.
fn sipp_labels(log: &str) -> Vec<String> {
    let mut labels = Vec::new();
    let mut lines = log.lines();
    while let Some(line) = lines.next() {
        if line.contains("message sent") || line.contains("message received") {
            let start = lines.by_ref().find(|l| !l.trim().is_empty()).unwrap_or_default();
            labels.push(label(start));
        }
    }
    labels
}

/// `INVITE sip:... SIP/2.0` → `INVITE`; `SIP/2.0 200 OK` → `200`.
fn label(start_line: &str) -> String {
    let mut words = start_line.split_whitespace();
    match words.next() {
        Some(v) if v.starts_with("SIP/") => words.next().unwrap_or_default().to_owned(),
        Some(m) => m.to_owned(),
        None => String::new(),
    }
}

fn counted(labels: impl IntoIterator<Item = String>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for l in labels {
        *m.entry(l).or_default() += 1;
    }
    m
}

/// What tshark decoded in the capture: one entry per HEP packet (its addresses, type and correlation id, in order),
/// and the labels and Call-IDs of every SIP message Wireshark's SIP dissector found in them.
#[derive(Debug, Default)]
struct Decoded {
    /// (source IP, destination IP, protocol type, correlation id) of each HEP packet.
    packets: Vec<(String, String, u8, String)>,
    /// Method of each SIP request and status of each SIP response.
    sip_labels: Vec<String>,
    /// Call-ID of each SIP message.
    sip_call_ids: Vec<String>,
    /// The JSON payloads of the media reports (type 34).
    reports: Vec<serde_json::Value>,
}

/// Runs tshark over `pcap` with the HEP dissector on port [`HEP_PORT`] of `transport` (`udp` or `tcp`).
fn decode(pcap: &Path, transport: &str) -> Decoded {
    let tshark = tests::require_tool("tshark", "tshark");
    let lua = tests::repo_root().join("tests/hep/hep3.lua");
    let fields = [
        "hep3.src_ip",
        "hep3.dst_ip",
        "hep3.proto_type",
        "hep3.correlation_id",
        "sip.Method",
        "sip.Status-Code",
        "sip.Call-ID",
        "hep3.payload",
    ];
    let mut cmd = std::process::Command::new(tshark);
    cmd.arg("-r").arg(pcap).arg("-X").arg(format!("lua_script:{}", lua.display()));
    cmd.args(["-d", &format!("{transport}.port=={HEP_PORT},hep3"), "-Y", "hep3 && !icmp", "-T", "fields"]);
    cmd.args(["-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=|"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("tshark runs");
    assert!(out.status.success(), "tshark failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut d = Decoded::default();
    for line in text.lines() {
        let cols: Vec<Vec<&str>> = line.split('\t').map(|c| c.split('|').filter(|v| !v.is_empty()).collect()).collect();
        let col = |i: usize| cols.get(i).cloned().unwrap_or_default();
        let (src, dst, kind, corr, payload) = (col(0), col(1), col(2), col(3), col(7));
        assert!(
            [dst.len(), kind.len(), corr.len(), payload.len()].iter().all(|n| *n == src.len()),
            "every HEP packet has one of each chunk: {line}"
        );
        for i in 0..src.len() {
            let kind: u8 = kind[i].parse().expect("protocol type");
            d.packets.push((src[i].to_owned(), dst[i].to_owned(), kind, corr[i].to_owned()));
            if kind == 34 {
                let bytes = hex(payload[i]);
                d.reports.push(serde_json::from_slice(&bytes).expect("the report is JSON"));
            }
        }
        d.sip_labels.extend(col(4).into_iter().chain(col(5)).map(str::to_owned));
        d.sip_call_ids.extend(col(6).into_iter().map(str::to_owned));
    }
    d
}

/// tshark prints bytes as hex, with or without colons.
fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).expect("ascii"), 16).expect("hex digit"))
        .collect()
}

/// The relay's address in the SDP a SIPp side received, waited for in its message log.
fn relay_address_in(sipp: &Running, relay_ip: &str) -> std::net::SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(port) = sdp_ports(&sipp.messages(), relay_ip).first() {
            return format!("{relay_ip}:{port}").parse().expect("an address");
        }
        assert!(Instant::now() < deadline, "no SDP naming {relay_ip} in {}", sipp.dir().display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What SIPp on each leg sent and received in one call.
struct CallSides {
    a: Vec<String>,
    b: Vec<String>,
    a_call_id: String,
}

/// One call through the rig (with `rtp`, [`PACKETS`] RTP packets each way through the relay); returns what each
/// SIPp logged once the call and its CDR are done.
fn one_call(rig: &Rig, rtp: bool) -> CallSides {
    let (ns_b, ns_a) = (rig.topo.ns(Host::B), rig.topo.ns(Host::A));
    let scenarios = if rtp { ("uas_answer_rtp.xml", "uac_call_rtp.xml") } else { ("uas_answer.xml", "uac_call.xml") };
    let mut uas = Sipp::new(scenarios.0)
        .netns(&ns_b)
        .local_ip(CARRIER_B)
        .local_port(5060)
        .key("rtp_port", &RTP_PORT.to_string())
        .limit(LIMIT)
        .trace_messages(true)
        .keep_files(true)
        .spawn()
        .expect("uas starts");
    uas.wait_listening(Some(&ns_b), 5060, Duration::from_secs(5)).expect("uas listens");
    let uac = Sipp::new(scenarios.1)
        .netns(&ns_a)
        .local_ip(CALLER)
        .local_port(5060)
        .target(addr(SBC_A, 5060))
        .service("+4930123456")
        .key("rtp_port", &RTP_PORT.to_string())
        .pause(Duration::from_secs(if rtp { 5 } else { 1 }))
        .limit(LIMIT)
        .trace_messages(true)
        .keep_files(true)
        .spawn()
        .expect("uac starts");
    let mut gens: Vec<(Process, PathBuf)> = Vec::new();
    if rtp {
        let dir = rig.topo.dir().to_owned();
        let mut targets = Vec::new();
        // Carrier side first, as in media_rtp.rs: B's first packets latch its side before A starts sending.
        for (host, bind, sipp, relay_ip, ssrc) in [
            (Host::B, addr(CARRIER_B, RTP_PORT), &uas, "198.18.2.1", 0xB0B0_0002u32),
            (Host::A, addr(CALLER, RTP_PORT), &uac, "198.18.1.1", 0xA0A0_0001),
        ] {
            let name = format!("rtp-{}", if host == Host::A { "a" } else { "b" });
            let (target, report) = (dir.join(format!("{name}.target")), dir.join(format!("{name}.json")));
            let gen = Rtpgen::new(bind)
                .to_file(&target)
                .count(PACKETS)
                .pps(50)
                .ssrc(ssrc)
                .duration(Duration::from_secs(30))
                .idle_exit(Duration::from_secs(2))
                .report(&report);
            let p = rig.topo.spawn(host, &name, rtpgen_binary().expect("rtpgen built"), &gen.args()).expect("rtpgen");
            targets.push((target, sipp, relay_ip));
            gens.push((p, report));
        }
        for (target, sipp, relay_ip) in targets {
            let relay = relay_address_in(sipp, relay_ip);
            tests::write_atomically(&target, &format!("{relay}\n")).expect("target written");
        }
    }
    let (uac, uas) = (uac.wait().expect("uac runs"), uas.wait().expect("uas runs"));
    let logged = |run: &tests::sipp::Run| {
        let log = std::fs::read_to_string(run.dir.join("messages.log")).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&run.dir);
        sipp_labels(&log)
    };
    let (a, b) = (logged(&uac), logged(&uas));
    uac.assert_all_successful(1).expect("the caller's call completes");
    uas.assert_all_successful(1).expect("the carrier's call completes");
    for (mut p, report) in gens {
        assert!(p.wait_timeout(LIMIT).expect("rtpgen ends").success(), "rtpgen: {}", p.output_tail());
        let r = read_report(&report).expect("rtpgen report");
        assert_eq!((r.sent, r.received), (PACKETS, PACKETS), "RTP both ways through the relay: {r:?}");
    }
    let cdrs = tests::wait_cdrs(&[&rig.cdr], 1, Duration::from_secs(5));
    assert_eq!(cdrs.len(), 1, "one CDR");
    let a_call_id = cdrs[0]["a_call_id"].as_str().expect("a_call_id").to_owned();
    CallSides { a, b, a_call_id }
}

/// Runs one call with the capture on the caller's host and returns what SIPp logged and what tshark decoded.
fn captured_call(rig: &Rig, transport: &str, rtp: bool) -> (CallSides, Decoded) {
    let cap = Capture::start(&rig.topo, Host::A, "eth0", "hep", LIMIT + LIMIT).expect("capture at the collector");
    let mut sides = one_call(rig, rtp);
    // The captures of the call's last messages and its media report are on their way: wait for the counter.
    let expected = (sides.a.len() + sides.b.len()) as f64 + if rtp { 2.0 } else { 0.0 };
    let deadline = Instant::now() + Duration::from_secs(5);
    while rig.sbc.metric("sbc_hep_sent_total").unwrap_or(0.0) < expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let pcap = cap.stop().expect("capture stops");
    let decoded = decode(&pcap, transport);
    sides.a.sort();
    sides.b.sort();
    (sides, decoded)
}

/// A collector on the caller's host that takes what it is sent (`udp-sink` or `tcp-sink` of netprobe): the
/// capture beside it is what the test reads.
fn collector(rig: &Rig, mode: &str) -> Process {
    let probe = tests::netprobe_binary().expect("netprobe");
    let ms = (LIMIT + LIMIT).as_millis().to_string();
    let at = addr(CALLER, HEP_PORT).to_string();
    rig.topo.spawn(Host::A, mode, probe, &[mode, at.as_str(), ms.as_str()]).expect("collector starts")
}

/// The checks both transports share: every SIP message of both legs decoded, leg by leg, all with leg A's Call-ID.
fn assert_every_message_with_one_correlation_id(sides: &CallSides, d: &Decoded) {
    let (caller, carrier) = (CALLER.to_string(), CARRIER_B.to_string());
    let sip: Vec<_> = d.packets.iter().filter(|p| p.2 == 1).collect();
    let leg_a = sip.iter().filter(|p| p.0 == caller || p.1 == caller).count();
    let leg_b = sip.iter().filter(|p| p.0 == carrier || p.1 == carrier).count();
    assert!(sides.a.len() >= 6 && sides.b.len() >= 6, "SIPp logged the call: {:?} / {:?}", sides.a, sides.b);
    assert_eq!(leg_a, sides.a.len(), "leg A: one capture per message SIPp sent or received: {:?}", sides.a);
    assert_eq!(leg_b, sides.b.len(), "leg B: one capture per message SIPp sent or received: {:?}", sides.b);
    assert_eq!(sip.len(), leg_a + leg_b, "no SIP capture outside the call's two legs");
    let all = counted(sides.a.iter().chain(&sides.b).cloned());
    assert_eq!(counted(d.sip_labels.iter().cloned()), all, "Wireshark's SIP dissector decoded every message");
    assert_eq!(d.sip_call_ids.len(), sip.len(), "one SIP message per SIP capture");
    // Both legs, one correlation id: leg A's Call-ID, although leg B has a Call-ID of its own.
    for p in &sip {
        assert_eq!(p.3, sides.a_call_id, "correlation id of {p:?}");
    }
    let b_ids: Vec<_> = d.sip_call_ids.iter().filter(|c| **c != sides.a_call_id).collect();
    assert_eq!(b_ids.len(), leg_b, "leg B's messages carry their own Call-ID (topology hiding)");
}

#[test]
fn hep_over_udp_carries_every_sip_message_of_both_legs_with_one_correlation_id_and_a_media_report_per_leg() {
    let rig = rig("hep-udp", &format!("udp:{CALLER}:{HEP_PORT}"));
    let _sink = collector(&rig, "udp-sink");
    let (sides, decoded) = captured_call(&rig, "udp", true);
    assert_every_message_with_one_correlation_id(&sides, &decoded);
    // The media report of each leg: the relay's final figures, under the same correlation id.
    assert_eq!(decoded.reports.len(), 2, "one report per leg: {:?}", decoded.reports);
    for (r, p) in decoded.reports.iter().zip(decoded.packets.iter().filter(|p| p.2 == 34)) {
        assert_eq!(p.3, sides.a_call_id, "the report's correlation id");
        assert_eq!(r["CORRELATION_ID"], sides.a_call_id.as_str(), "{r}");
        assert!(r["TOTAL_PK"].as_u64().unwrap_or(0) >= PACKETS, "every RTP packet counted: {r}");
        assert_eq!(r["PACKET_LOSS"].as_u64(), Some(0), "{r}");
        assert!(r["JITTER"].as_f64().is_some(), "{r}");
    }
    let legs: Vec<_> = decoded.reports.iter().map(|r| r["REPORT_NAME"].as_str().unwrap_or("").to_owned()).collect();
    assert_eq!(legs, ["leg_a", "leg_b"]);
    let sent = rig.sbc.metric("sbc_hep_sent_total").expect("metrics");
    assert_eq!(sent, decoded.packets.len() as f64, "every capture counted as sent reached the collector");
    assert_eq!(rig.sbc.metric("sbc_hep_dropped_total").expect("metrics"), 0.0, "nothing dropped");
}

#[test]
fn hep_over_tcp_carries_every_sip_message_of_both_legs_with_one_correlation_id() {
    let rig = rig("hep-tcp", &format!("tcp:{CALLER}:{HEP_PORT}"));
    let _sink = collector(&rig, "tcp-sink");
    // The sender reconnects every second: wait until it is connected before the call.
    let deadline = Instant::now() + Duration::from_secs(10);
    while rig.sbc.metric("sbc_hep_collector_up").unwrap_or(0.0) < 1.0 {
        assert!(Instant::now() < deadline, "the SBC did not connect to the TCP collector:\n{}", rig.sbc.log_tail());
        std::thread::sleep(Duration::from_millis(100));
    }
    let (sides, decoded) = captured_call(&rig, "tcp", false);
    assert_every_message_with_one_correlation_id(&sides, &decoded);
    assert_eq!(rig.sbc.metric("sbc_hep_sent_total").expect("metrics"), decoded.packets.len() as f64);
    assert_eq!(rig.sbc.metric("sbc_hep_dropped_total").expect("metrics"), 0.0, "nothing dropped");
}
