//! Media through the SBC's embedded relay, with real RTP, in the single-SBC topology of DESIGN.md: SIPp places
//! the call (caller 198.18.1.10 → SBC → carrier b 198.18.2.10), and an `rtpgen` on each side sends and checks RTP
//! on the port its SDP names. Each side learns the relay's address for it from the SDP it received (SIPp's
//! message log), as a phone would.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tests::netns::{addr, sbc_config, Host, Process, Topology, CALLER, CARRIER_B, CARRIER_C, SBC_A};
use tests::rtp::{read_report, rtpgen_binary, Report, Rtpgen};
use tests::sipp::{sdp_ports, Running, Sipp};
use tests::{media_relay_binary, Sbc};

const LIMIT: Duration = Duration::from_secs(40);
/// The port each side's SDP names for RTP (SIPp's own -mp port stays 6000).
const RTP_PORT: u16 = 7078;
const SSRC_A: u32 = 0xA0A0_0001;
const SSRC_B: u32 = 0xB0B0_0002;

struct Rig {
    topo: Topology,
    sbc: Sbc,
    cdr: PathBuf,
}

fn rig(name: &str, media_extra: &str) -> Rig {
    rig_on(Topology::single_sbc().expect("topology"), name, media_extra)
}

/// [`rig`] on a topology prepared beforehand.
fn rig_on(topo: Topology, name: &str, media_extra: &str) -> Rig {
    let cdr = topo.dir().join("cdr.jsonl");
    let mut config = sbc_config("", "", "", false, Some(&cdr));
    config.push_str(&format!(
        "\n[media]\ninterfaces = [{{ name = \"a\", address = \"198.18.1.1\" }}, {{ name = \"b\", address = \"198.18.2.1\" }}]\n\
         ports = \"30000-30999\"\n{media_extra}\n"
    ));
    let sbc = Sbc::start_in(&topo.ns(Host::Sbc), name, &config, addr(SBC_A, 5060), addr([127, 0, 0, 1].into(), 8080))
        .expect("sbc starts");
    Rig { topo, sbc, cdr }
}

/// `config/examples/carriers.toml` exactly as shipped but for its CDR path (moved into the test's directory), and
/// for `xdp` when given, started on the single-SBC topology it describes.
fn carriers_example(name: &str, topo: Topology, xdp: Option<&str>) -> anyhow::Result<Rig> {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/examples/carriers.toml");
    let text = std::fs::read_to_string(&shipped).expect("config/examples/carriers.toml");
    let cdr = topo.dir().join("cdr.jsonl");
    let mut config =
        text.replace("path = \"/var/lib/sbc/cdr.jsonl\"", &format!("path = {:?}", cdr.display().to_string()));
    assert_ne!(config, text, "carriers.toml's [cdr] path moved");
    if let Some(mode) = xdp {
        config.push_str(&format!("xdp = \"{mode}\"\n"));
    }
    let sbc = Sbc::start_in(&topo.ns(Host::Sbc), name, &config, addr(SBC_A, 5060), addr([127, 0, 0, 1].into(), 8080))?;
    Ok(Rig { topo, sbc, cdr })
}

/// Waits up to 5 s for the metric `name` to reach `at_least`; returns its value.
fn wait_metric(sbc: &Sbc, name: &str, at_least: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v = sbc.metric(name).unwrap_or(0.0);
        if v >= at_least || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Rig {
    fn carrier(&self, scenario: &str) -> Running {
        let ns = self.topo.ns(Host::B);
        let mut r = Sipp::new(scenario)
            .netns(&ns)
            .local_ip(CARRIER_B)
            .local_port(5060)
            .key("rtp_port", &RTP_PORT.to_string())
            .limit(LIMIT)
            .trace_messages(true)
            .spawn()
            .expect("uas starts");
        r.wait_listening(Some(&ns), 5060, Duration::from_secs(5)).expect("uas listens");
        r
    }

    fn caller(&self, scenario: &str, hold: Duration) -> Running {
        Sipp::new(scenario)
            .netns(&self.topo.ns(Host::A))
            .local_ip(CALLER)
            .local_port(5060)
            .target(addr(SBC_A, 5060))
            .service("+4930123456")
            .key("rtp_port", &RTP_PORT.to_string())
            .pause(hold)
            .limit(LIMIT)
            .trace_messages(true)
            .spawn()
            .expect("uac starts")
    }

    fn rtp(&self, host: Host, name: &str, gen: Rtpgen) -> Process {
        self.topo.spawn(host, name, rtpgen_binary().expect("rtpgen built"), &gen.args()).expect("rtpgen starts")
    }

    fn cdrs(&self, n: usize) -> Vec<serde_json::Value> {
        tests::wait_cdrs(&[&self.cdr], n, Duration::from_secs(5))
    }
}

/// The relay's address in the SDP a SIPp side received: the first `c=` naming `relay_ip` and its `m=audio` port,
/// waited for up to `timeout` in SIPp's message log.
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

fn write_target(path: &Path, target: SocketAddr) {
    tests::write_atomically(path, &format!("{target}\n")).expect("target written");
}

fn wait_report(p: &mut Process, path: &Path) -> Report {
    let status = p.wait_timeout(LIMIT).expect("rtpgen ends");
    assert!(status.success(), "rtpgen failed: {}", p.output_tail());
    read_report(path).expect("rtpgen report")
}

/// 250 packets each way at 50/s (5 s of 20 ms audio) from `a_bind` (the SDP says 198.18.1.10:7078), on a fresh
/// rig; also returns the CDRs.
fn media_call(name: &str, a_bind: SocketAddr) -> (Rig, Report, Report, Vec<serde_json::Value>) {
    let rig = rig(name, "");
    let (ra, rb) = media_call_on(&rig, a_bind, "");
    let cdrs = rig.cdrs(1);
    (rig, ra, rb, cdrs)
}

/// One call with RTP both ways on `rig`; `tag` keeps file names apart when a rig places several.
fn media_call_on(rig: &Rig, a_bind: SocketAddr, tag: &str) -> (Report, Report) {
    let uas = rig.carrier("uas_answer_rtp.xml");
    let dir = rig.topo.dir().to_owned();
    let (a_target, b_target) = (dir.join(format!("a{tag}.target")), dir.join(format!("b{tag}.target")));
    let (a_report, b_report) = (dir.join(format!("a{tag}.json")), dir.join(format!("b{tag}.json")));
    let stream = |bind, to: &Path, ssrc, expect, report: &Path| {
        Rtpgen::new(bind)
            .to_file(to)
            .count(250)
            .pps(50)
            .ssrc(ssrc)
            .expect_ssrc(expect)
            .duration(Duration::from_secs(30))
            .idle_exit(Duration::from_secs(2))
            .report(report)
    };
    let mut b = rig.rtp(Host::B, "rtp-b", stream(addr(CARRIER_B, RTP_PORT), &b_target, SSRC_B, SSRC_A, &b_report));
    let mut a = rig.rtp(Host::A, "rtp-a", stream(a_bind, &a_target, SSRC_A, SSRC_B, &a_report));
    let uac = rig.caller("uac_call_rtp.xml", Duration::from_secs(9));
    // Each side sends where the SDP it received points: B to the relay's b side, A to its a side.
    write_target(&b_target, relay_address_in(&uas, "198.18.2.1", Duration::from_secs(10)));
    write_target(&a_target, relay_address_in(&uac, "198.18.1.1", Duration::from_secs(10)));
    let (ra, rb) = (wait_report(&mut a, &a_report), wait_report(&mut b, &b_report));
    let uac_msgs = uac.messages();
    let uas_msgs = uas.messages();
    uac.wait().expect("uac runs").assert_all_successful(1).expect("the caller's call completes");
    uas.wait().expect("uas runs").assert_all_successful(1).expect("the carrier's call completes");
    // Topology hiding, SDP included: neither side ever sees the other's address.
    assert!(!uas_msgs.contains("198.18.1.10"), "side A's address reached the carrier:\n{uas_msgs}");
    assert!(!uac_msgs.contains("198.18.2.10"), "the carrier's address reached side A:\n{uac_msgs}");
    (ra, rb)
}

fn assert_clean(side: &str, r: &Report, count: u64) {
    assert_eq!(r.sent, count, "{side} sent: {r:?}");
    assert_eq!(r.received, count, "{side} received every packet: {r:?}");
    assert_eq!((r.corrupt, r.reordered, r.duplicates, r.lost), (0, 0, 0, 0), "{side}: byte-identical, in order: {r:?}");
    assert_eq!(r.seq_mismatch, 0, "{side}: RTP headers untouched: {r:?}");
}

#[test]
fn rtp_both_ways_arrives_byte_identical_and_sdp_holds_only_relay_addresses() {
    let (_rig, a, b, cdrs) = media_call("media-basic", addr(CALLER, RTP_PORT));
    assert_clean("A", &a, 250);
    assert_clean("B", &b, 250);
    // Each side hears the relay, never the other side.
    assert_eq!(a.sources.len(), 1, "{a:?}");
    assert_eq!(a.sources[0].ip().to_string(), "198.18.1.1");
    assert_eq!(b.sources[0].ip().to_string(), "198.18.2.1");
    assert_eq!(cdrs.len(), 1, "{cdrs:?}");
    let media = &cdrs[0]["media"];
    assert!(media["a"]["received"]["packets"].as_u64().unwrap_or(0) >= 250, "CDR media figures: {media}");
    assert!(media["b"]["received"]["packets"].as_u64().unwrap_or(0) >= 250, "CDR media figures: {media}");
    assert_eq!(media["a"]["received"]["lost"].as_i64(), Some(0), "{media}");
}

#[test]
fn nat_caller_is_latched_and_a_third_host_injecting_is_dropped() {
    let rig = rig("media-nat", "");
    let uas = rig.carrier("uas_answer_rtp.xml");
    let dir = rig.topo.dir().to_owned();
    let (a_target, b_target) = (dir.join("a.target"), dir.join("b.target"));
    let (a_report, b_report, x_report) = (dir.join("a.json"), dir.join("b.json"), dir.join("x.json"));
    // A's SDP says :7078, its packets come from :41000 (a NAT's mapping): the relay must answer there.
    let nat_port = 41000;
    let mut b = rig.rtp(
        Host::B,
        "rtp-b",
        Rtpgen::new(addr(CARRIER_B, RTP_PORT))
            .to_file(&b_target)
            .count(300)
            .pps(50)
            .ssrc(SSRC_B)
            .expect_ssrc(SSRC_A)
            // Until A's first packet shows where its NAT maps it, the relay can only use A's SDP address, where
            // nothing listens: B starts half a second after A, as a callee's audio follows the caller's.
            .start_delay(Duration::from_millis(500))
            .idle_exit(Duration::from_secs(2))
            .report(&b_report),
    );
    let mut a = rig.rtp(
        Host::A,
        "rtp-a",
        Rtpgen::new(addr(CALLER, nat_port))
            .to_file(&a_target)
            .count(300)
            .pps(50)
            .ssrc(SSRC_A)
            .expect_ssrc(SSRC_B)
            .idle_exit(Duration::from_secs(2))
            .report(&a_report),
    );
    let uac = rig.caller("uac_call_rtp.xml", Duration::from_secs(10));
    let relay_b = relay_address_in(&uas, "198.18.2.1", Duration::from_secs(10));
    let relay_a = relay_address_in(&uac, "198.18.1.1", Duration::from_secs(10));
    write_target(&b_target, relay_b);
    write_target(&a_target, relay_a);
    // Carrier c's host, once both sides are latched, sprays the relay's b-side port with another stream.
    let mut x = rig.rtp(
        Host::C,
        "rtp-x",
        Rtpgen::new(addr(CARRIER_C, RTP_PORT))
            .to(relay_b)
            .count(100)
            .pps(50)
            .ssrc(0x0BAD_0BAD)
            .start_delay(Duration::from_secs(2))
            .idle_exit(Duration::from_millis(500))
            .report(&x_report),
    );
    let (ra, rb, rx) = (wait_report(&mut a, &a_report), wait_report(&mut b, &b_report), wait_report(&mut x, &x_report));
    uac.wait().expect("uac runs").assert_all_successful(1).expect("call completes");
    uas.wait().expect("uas runs").assert_all_successful(1).expect("call completes");
    assert_clean("A behind NAT", &ra, 300);
    assert_clean("B", &rb, 300);
    assert_eq!(rx.sent, 100, "{rx:?}");
    assert_eq!(ra.other_ssrc, 0, "nothing of the injected stream reached A: {ra:?}");
    assert_eq!(rx.received, 0, "the injector got nothing back: {rx:?}");
    let dropped = rig.sbc.metric("sbc_media_packets_dropped_total{reason=\"foreign_source\"}").unwrap_or(0.0);
    assert!(dropped >= 100.0, "the relay counts the injected packets as dropped: {dropped}");
    let cdrs = rig.cdrs(1);
    let latched = cdrs[0]["media"]["a"]["latched"].as_str().unwrap_or_default().to_owned();
    assert_eq!(latched, format!("198.18.1.10:{nat_port}"), "{}", cdrs[0]);
}

#[test]
fn silent_call_is_torn_down_after_rtp_timeout_with_bye_both_sides() {
    let rig = rig("media-timeout", "rtp_timeout = \"3s\"");
    let uas = rig.carrier("uas_answer.xml");
    let started = Instant::now();
    // The caller would hold for 30 s; the SBC must hang up first, and the caller's scenario expects that BYE.
    let uac = Sipp::new("uac_call_remote_bye.xml")
        .netns(&rig.topo.ns(Host::A))
        .local_ip(CALLER)
        .local_port(5060)
        .target(addr(SBC_A, 5060))
        .service("+4930123456")
        .limit(LIMIT)
        .trace_messages(true)
        .spawn()
        .expect("uac starts");
    uac.wait().expect("uac runs").assert_all_successful(1).expect("the caller gets a BYE");
    uas.wait().expect("uas runs").assert_all_successful(1).expect("the carrier gets a BYE");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(15), "torn down after about 3-4 s, took {took:?}");
    let cdrs = rig.cdrs(1);
    assert_eq!(cdrs[0]["release_cause"], "rtp_timeout", "{}", cdrs[0]);
    assert_eq!(cdrs[0]["released_by"], "sbc");
}

#[test]
fn hold_then_resume_by_reinvite_keeps_media_flowing_on_the_same_relay_ports() {
    let rig = rig("media-hold", "");
    let uas = rig.carrier("uas_answer_rtp_hold.xml");
    let dir = rig.topo.dir().to_owned();
    let (a_target, b_target) = (dir.join("a.target"), dir.join("b.target"));
    let (a_report, b_report) = (dir.join("a.json"), dir.join("b.json"));
    // 8 s of audio each way across hold (3 s in) and resume (6 s in).
    let stream = |bind, to: &Path, ssrc, expect, report: &Path| {
        Rtpgen::new(bind)
            .to_file(to)
            .count(400)
            .pps(50)
            .ssrc(ssrc)
            .expect_ssrc(expect)
            .idle_exit(Duration::from_secs(2))
            .report(report)
    };
    let mut b = rig.rtp(Host::B, "rtp-b", stream(addr(CARRIER_B, RTP_PORT), &b_target, SSRC_B, SSRC_A, &b_report));
    let mut a = rig.rtp(Host::A, "rtp-a", stream(addr(CALLER, RTP_PORT), &a_target, SSRC_A, SSRC_B, &a_report));
    let uac = rig.caller("uac_call_rtp_hold.xml", Duration::from_secs(1));
    write_target(&b_target, relay_address_in(&uas, "198.18.2.1", Duration::from_secs(10)));
    write_target(&a_target, relay_address_in(&uac, "198.18.1.1", Duration::from_secs(10)));
    let (ra, rb) = (wait_report(&mut a, &a_report), wait_report(&mut b, &b_report));
    let (uac_msgs, uas_msgs) = (uac.messages(), uas.messages());
    uac.wait().expect("uac runs").assert_all_successful(1).expect("hold, resume and BYE complete for the caller");
    uas.wait().expect("uas runs").assert_all_successful(1).expect("hold, resume and BYE complete for the carrier");
    assert_clean("A", &ra, 400);
    assert_clean("B", &rb, 400);
    // The carrier saw three offers (INVITE, hold, resume), all for the same relay port and none with A's address.
    let ports = sdp_ports(&uas_msgs, "198.18.2.1");
    assert_eq!(ports.len(), 3, "three offers reached the carrier: {ports:?}\n{uas_msgs}");
    assert!(ports.iter().all(|p| *p == ports[0]), "same relay port across re-INVITEs: {ports:?}");
    assert!(uas_msgs.contains("a=sendonly"), "the hold reached the carrier");
    assert!(!uas_msgs.contains("198.18.1.10") && !uac_msgs.contains("198.18.2.10"), "no address crossed");
}

/// Waits up to `timeout` for the SBC's gauge `sbc_media_relay_up` to read `want`.
fn wait_relay_up(sbc: &Sbc, want: f64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let v = sbc.metric("sbc_media_relay_up").unwrap_or(-1.0);
        if v == want {
            return;
        }
        assert!(Instant::now() < deadline, "sbc_media_relay_up is {v}, not {want}, after {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn standalone_relay_carries_media_and_its_loss_refuses_calls_with_503() {
    let topo_rig = rig("media-remote", "relay = \"tcp:127.0.0.1:2223\"");
    let mut relay = topo_rig
        .topo
        .spawn(
            Host::Sbc,
            "media-relay",
            media_relay_binary().expect("media-relay built"),
            &["--control", "127.0.0.1:2223"],
        )
        .expect("media-relay starts");
    wait_relay_up(&topo_rig.sbc, 1.0, Duration::from_secs(10));
    let (a, b) = media_call_on(&topo_rig, addr(CALLER, RTP_PORT), "-1");
    assert_clean("A via the standalone relay", &a, 250);
    assert_clean("B via the standalone relay", &b, 250);
    let cdrs = topo_rig.cdrs(1);
    assert!(cdrs[0]["media"]["a"]["received"]["packets"].as_u64().unwrap_or(0) >= 250, "{}", cdrs[0]);

    // The relay dies: within its detection time the SBC refuses new calls at once with 503, not a silent call.
    relay.kill();
    wait_relay_up(&topo_rig.sbc, 0.0, Duration::from_secs(6));
    let refused = Sipp::new("uac_expect_status.xml")
        .netns(&topo_rig.topo.ns(Host::A))
        .local_ip(CALLER)
        .local_port(5060)
        .target(addr(SBC_A, 5060))
        .service("+4930123456")
        .set("expected", "503")
        .limit(LIMIT)
        .run()
        .expect("uac runs");
    refused.assert_all_successful(1).expect("the call is refused with 503");
    let errors = topo_rig.sbc.metric("sbc_media_errors_total{reason=\"relay_down\"}").unwrap_or(0.0);
    assert!(errors >= 1.0, "counted: {errors}");
}

#[test]
fn xdp_native_forwards_established_media_and_user_space_sees_only_the_first_packets() {
    let topo = Topology::single_sbc().expect("topology");
    // The peers take XDP frames before the relay attaches: explicit native refuses interfaces that do not.
    let _helpers = topo.prepare_xdp(&media_relay_binary().expect("media-relay built")).expect("xdp path");
    let rig = rig_on(topo, "media-xdp", "xdp = \"native\"");
    assert_eq!(wait_metric(&rig.sbc, "sbc_media_xdp_mode", 2.0), 2.0, "native XDP attached: {}", rig.sbc.log_tail());
    let (a, b) = media_call_on(&rig, addr(CALLER, RTP_PORT), "");
    assert_clean("A via XDP", &a, 250);
    assert_clean("B via XDP", &b, 250);
    let cdrs = rig.cdrs(1);
    let media = &cdrs[0]["media"];
    eprintln!("media figures of the call forwarded by XDP: {media}");
    for leg in ["a", "b"] {
        let received = media[leg]["received"]["packets"].as_u64().unwrap_or(0);
        let kernel = media[leg]["kernel_packets"].as_u64().unwrap_or(0);
        // Every packet counted once; user space saw only those before the flow was confirmed and kernelized.
        assert!(received >= 250, "leg {leg}: {media}");
        assert!(received - kernel <= 5, "leg {leg}: user space saw {} of {received}: {media}", received - kernel);
    }
    let kernel = rig.sbc.metric("sbc_media_kernel_packets_total").unwrap_or(0.0);
    assert!(kernel >= 490.0, "the XDP program forwarded the established media: {kernel}");
}

/// A container host: forwarding on, and the veth peers the relay would send into (A's eth0, the switch's port)
/// have no XDP program and GRO off, so they cannot take XDP frames. The default `xdp = "auto"` attaches natively
/// and must lose nothing: flows out of such an interface stay in user space, and it says so in the log and the
/// metrics. `carriers.toml` as shipped, a SIPp call with RTP both ways.
#[test]
fn xdp_auto_on_a_container_host_keeps_media_in_user_space_and_loses_none() {
    let topo = Topology::single_sbc().expect("topology");
    topo.enable_forwarding().expect("forwarding on");
    // Complete checksums, as from a NIC: the packets reach the egress check (a local sender's partial checksum
    // would be passed earlier; the next test has those).
    topo.full_checksums().expect("tx checksum offload off");
    let rig = carriers_example("xdp-container", topo, None).expect("carriers.toml starts");
    assert_eq!(wait_metric(&rig.sbc, "sbc_media_xdp_mode", 2.0), 2.0, "native XDP attached: {}", rig.sbc.log_tail());
    assert_eq!(rig.sbc.metric("sbc_media_xdp_egress_blocked").ok(), Some(2.0), "a0 and b0 cannot take XDP frames");
    let log = std::fs::read_to_string(&rig.sbc.log).unwrap_or_default();
    assert!(log.contains("a0 cannot take XDP frames") && log.contains("b0 cannot take XDP frames"), "{log}");
    let (a, b) = media_call_on(&rig, addr(CALLER, RTP_PORT), "");
    assert_clean("A on a container host", &a, 250);
    assert_clean("B on a container host", &b, 250);
    let passed = wait_metric(&rig.sbc, "sbc_media_kernel_passed_total{reason=\"egress\"}", 400.0);
    assert!(passed >= 400.0, "the program passed the kernelized flows' packets up (egress): {passed}");
    assert_eq!(
        rig.sbc.metric("sbc_media_kernel_packets_total").ok(),
        Some(0.0),
        "nothing redirected into a veth that drops"
    );
    assert_eq!(rig.sbc.metric("sbc_media_kernel_dropped_total").ok(), Some(0.0), "nothing lost after the program");
}

/// The same host where the peers take XDP frames (GRO on, so a redirect would be delivered) but the senders are
/// local sockets whose veths leave partial UDP checksums: rewritten in XDP they would arrive with bad checksums
/// and be dropped by the receivers, so the program passes them, and every packet arrives.
#[test]
fn xdp_auto_passes_partial_checksums_from_local_senders_and_loses_none() {
    let topo = Topology::single_sbc().expect("topology");
    topo.enable_forwarding().expect("forwarding on");
    topo.exec(Host::A, "ethtool", &["-K", "eth0", "gro", "on"]).expect("gro on A's eth0");
    topo.exec(Host::Switch, "ethtool", &["-K", "p-sbc", "gro", "on"]).expect("gro on the switch port");
    let rig = carriers_example("xdp-csum", topo, None).expect("carriers.toml starts");
    assert_eq!(wait_metric(&rig.sbc, "sbc_media_xdp_mode", 2.0), 2.0, "native XDP attached: {}", rig.sbc.log_tail());
    assert_eq!(rig.sbc.metric("sbc_media_xdp_egress_blocked").ok(), Some(0.0), "{}", rig.sbc.log_tail());
    let (a, b) = media_call_on(&rig, addr(CALLER, RTP_PORT), "");
    assert_clean("A with partial checksums", &a, 250);
    assert_clean("B with partial checksums", &b, 250);
    let passed = wait_metric(&rig.sbc, "sbc_media_kernel_passed_total{reason=\"checksum\"}", 400.0);
    assert!(passed >= 400.0, "partial checksums passed up: {passed}");
    assert_eq!(rig.sbc.metric("sbc_media_kernel_dropped_total").ok(), Some(0.0), "nothing lost after the program");
}

/// An explicit `xdp = "native"` on interfaces that cannot take XDP frames would lose the media it redirects:
/// the SBC refuses to start and says which interface and what to do.
#[test]
fn xdp_native_refuses_interfaces_that_cannot_take_frames() {
    let topo = Topology::single_sbc().expect("topology");
    topo.enable_forwarding().expect("forwarding on");
    let Err(err) = carriers_example("xdp-native-refused", topo, Some("native")) else {
        panic!("native must refuse interfaces that cannot take XDP frames");
    };
    let err = err.to_string();
    assert!(
        err.contains("cannot take XDP frames") && err.contains("gro on") && err.contains("xdp = \"auto\""),
        "{err}"
    );
}
