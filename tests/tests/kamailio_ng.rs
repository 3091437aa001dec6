//! Issue 17's acceptance: Kamailio 5.6 with its `rtpengine` module, running config/examples/kamailio-ng.cfg as it
//! ships (`rtpengine_manage()` with `direction=a direction=b`), anchors a SIPp call through a relay over NG; an
//! `rtpgen` on each side sends and checks RTP on the port its SDP names, towards the relay address the SDP it
//! received gives. The same test runs against our `media-relay --ng` (user space, and native XDP), against the
//! relay embedded in `sbc` (`[media] ng`, user space and native XDP) and against rtpengine 10.5, changing nothing
//! but which relay answers on 127.0.0.1:2223: it proves compatibility, not a dialect of ours.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tests::netns::{addr, Host, Process, Topology, CALLER, CARRIER_B, SBC_A, SBC_B};
use tests::rtp::{read_report, rtpgen_binary, Report, Rtpgen};
use tests::rtpengine::{RtpEngine, NG_ADDR};
use tests::sipp::{sdp_ports, Running, Sipp};
use tests::Sbc;

const LIMIT: Duration = Duration::from_secs(40);
const RTP_PORT: u16 = 7078;
const SSRC_A: u32 = 0xA0A0_0001;
const SSRC_B: u32 = 0xB0B0_0002;
const PACKETS: u64 = 250;
const T: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    RtpEngine,
    /// Ours, with this `--xdp` mode.
    MediaRelay(&'static str),
    /// The relay embedded in `sbc`, answering NG on `[media] ng`, with this `[media] xdp` mode.
    SbcEmbedded(&'static str),
}

impl Target {
    /// Ours (its `statistics` carry the XDP share), with this XDP mode.
    fn ours(self) -> Option<&'static str> {
        match self {
            Self::MediaRelay(xdp) | Self::SbcEmbedded(xdp) => Some(xdp),
            Self::RtpEngine => None,
        }
    }
}

/// What answers NG in the test: a relay process, or `sbc` with `[media] ng`.
enum Anchor {
    Relay(RtpEngine),
    Sbc(Box<Sbc>, tests::rtpengine::NgClient),
}

impl Anchor {
    fn ng(&mut self) -> &mut tests::rtpengine::NgClient {
        match self {
            Self::Relay(r) => &mut r.ng,
            Self::Sbc(_, ng) => ng,
        }
    }

    fn stop(self) {
        match self {
            Self::Relay(r) => r.stop().expect("the relay stops"),
            Self::Sbc(mut sbc, _) => assert!(sbc.terminate(Duration::from_secs(5)).expect("sbc stops"), "sbc exits"),
        }
    }
}

/// `sbc` in the SBC namespace with its SIP on loopback (Kamailio holds 5060 on the service addresses), its own
/// calls' ports at 20000-20999 and NG calls' at rtpengine's range, answering NG on [`NG_ADDR`]; waits until it
/// answers `ping` there.
fn start_sbc_ng(topo: &Topology, xdp: &str) -> Anchor {
    let (lo, api) = (std::net::Ipv4Addr::LOCALHOST, 8080);
    let config = format!(
        "[sip]\nlisten = [\"udp:127.0.0.1:5070\"]\n\n[api]\nlisten = \"127.0.0.1:{api}\"\n\n[log]\nlevel = \"info\"\n\n\
         [media]\ninterfaces = [{{ name = \"a\", address = \"{SBC_A}\" }}, {{ name = \"b\", address = \"{SBC_B}\" }}]\n\
         ports = \"20000-20999\"\nxdp = \"{xdp}\"\nng = \"{NG_ADDR}\"\nng_ports = \"{}-{}\"\n",
        tests::rtpengine::PORT_MIN,
        tests::rtpengine::PORT_MAX,
    );
    let sbc = Sbc::start_in(&topo.ns(Host::Sbc), "sbc-ng", &config, addr(lo, 5070), addr(lo, api)).expect("sbc starts");
    let mut ng = tests::rtpengine::NgClient::open_in(&topo.ns(Host::Sbc), NG_ADDR.parse().unwrap()).expect("NG client");
    let pong = ng.request(&relay_proto::ng::Request::ping(), T);
    assert!(pong.as_ref().is_ok_and(|r| r.result == "pong"), "sbc's [media] ng: {pong:?}\n{}", sbc.log_tail());
    Anchor::Sbc(Box::new(sbc), ng)
}

#[test]
fn kamailio_with_media_relay_ng_relays_a_sipp_call_with_rtp_both_ways() {
    kamailio_call(Target::MediaRelay("off"));
}

#[test]
fn kamailio_with_media_relay_ng_and_native_xdp_forwards_99_percent_in_the_kernel() {
    kamailio_call(Target::MediaRelay("native"));
}

#[test]
fn kamailio_with_sbc_embedded_ng_relays_a_sipp_call_with_rtp_both_ways() {
    kamailio_call(Target::SbcEmbedded("off"));
}

#[test]
fn kamailio_with_sbc_embedded_ng_and_native_xdp_forwards_99_percent_in_the_kernel() {
    kamailio_call(Target::SbcEmbedded("native"));
}

#[test]
fn kamailio_with_rtpengine_relays_the_same_sipp_call_with_rtp_both_ways() {
    kamailio_call(Target::RtpEngine);
}

fn kamailio_call(relay: Target) {
    let kamailio = which("kamailio");
    assert!(kamailio.is_some(), "kamailio is not installed (Debian kamailio): run `make deps` as root");
    let topo = Topology::single_sbc().expect("topology (needs root)");
    let _helpers = (relay.ours() == Some("native"))
        .then(|| topo.prepare_xdp(&tests::media_relay_binary().expect("media-relay built")).expect("xdp path"));
    let mut engine = match relay {
        Target::RtpEngine => {
            let binary = tests::rtpengine::binary();
            assert!(binary.is_ok(), "{:#}", binary.unwrap_err());
            Anchor::Relay(
                RtpEngine::start(&topo, Host::Sbc, "rtpengine", SBC_A.into(), SBC_B.into(), None).expect("rtpengine"),
            )
        }
        Target::SbcEmbedded(xdp) => start_sbc_ng(&topo, xdp),
        Target::MediaRelay(xdp) => Anchor::Relay(
            RtpEngine::start_media_relay(
                &topo,
                Host::Sbc,
                "media-relay",
                [SBC_A.into(), SBC_B.into()],
                xdp,
                None,
                &tests::media_relay_binary().expect("media-relay built"),
            )
            .expect("media-relay --ng starts"),
        ),
    };
    let mut proxy = start_kamailio(&topo, &kamailio.unwrap());

    let dir = topo.dir().to_owned();
    let (a_target, b_target) = (dir.join("a.target"), dir.join("b.target"));
    let (a_report, b_report) = (dir.join("a.json"), dir.join("b.json"));
    let uas = carrier(&topo);
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
    let rtpgen = rtpgen_binary().expect("rtpgen built");
    let spawn = |host, name: &str, gen: Rtpgen| topo.spawn(host, name, &rtpgen, &gen.args()).expect("rtpgen starts");
    let mut b = spawn(Host::B, "rtp-b", stream(addr(CARRIER_B, RTP_PORT), &b_target, SSRC_B, SSRC_A, &b_report));
    let mut a = spawn(Host::A, "rtp-a", stream(addr(CALLER, RTP_PORT), &a_target, SSRC_A, SSRC_B, &a_report));
    let uac = caller(&topo, Duration::from_secs(9));
    write_target(&b_target, relay_address_in(&uas, &SBC_B.to_string(), &mut proxy));
    write_target(&a_target, relay_address_in(&uac, &SBC_A.to_string(), &mut proxy));
    let (ra, rb) = (wait_report(&mut a, &a_report), wait_report(&mut b, &b_report));
    let (uac_msgs, uas_msgs) = (uac.messages(), uas.messages());
    uac.wait().expect("uac runs").assert_all_successful(1).expect("the caller's call completes");
    uas.wait().expect("uas runs").assert_all_successful(1).expect("the callee's call completes");

    for (side, r) in [("A", &ra), ("B", &rb)] {
        assert_eq!(r.sent, PACKETS, "{side} sent: {r:?}");
        assert_eq!(r.received, PACKETS, "{side} received every packet: {r:?}");
        assert_eq!((r.corrupt, r.reordered, r.duplicates, r.lost), (0, 0, 0, 0), "{side}: byte-identical: {r:?}");
        assert_eq!(r.seq_mismatch, 0, "{side}: RTP headers untouched: {r:?}");
        assert_eq!(r.sources.len(), 1, "{side} hears one source, the relay: {r:?}");
    }
    assert_eq!(ra.sources[0].ip(), std::net::IpAddr::from(SBC_A), "{ra:?}");
    assert_eq!(rb.sources[0].ip(), std::net::IpAddr::from(SBC_B), "{rb:?}");
    // Kamailio is a proxy (Via and Contact cross), but the SDP each side gets names only the relay.
    assert_sdp_only_names(&uas_msgs, &SBC_B.to_string(), "the callee");
    assert_sdp_only_names(&uac_msgs, &SBC_A.to_string(), "the caller");

    // The BYE's delete went through Kamailio: no call is left.
    let list = relay_proto::ng::Request { command: relay_proto::ng::Command::List, ..relay_proto::ng::Request::ping() };
    let deadline = Instant::now() + T;
    let listed = loop {
        let listed = engine.ng().request(&list, T).expect("list");
        let empty = listed.body.get("calls") == Some(&relay_proto::bencode::Value::List(vec![]));
        if empty || Instant::now() > deadline {
            break listed;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(listed.body.get("calls"), Some(&relay_proto::bencode::Value::List(vec![])), "{listed:?}");
    if let Some(xdp) = relay.ours() {
        let stats = engine
            .ng()
            .request(
                &relay_proto::ng::Request {
                    command: relay_proto::ng::Command::Statistics,
                    ..relay_proto::ng::Request::ping()
                },
                T,
            )
            .expect("statistics");
        let total = stats
            .body
            .get("statistics")
            .and_then(|s| s.get("totalstatistics"))
            .cloned()
            .unwrap_or_else(|| panic!("{stats:?}"));
        let int = |k: &str| total.get(k).and_then(|v| v.as_int()).unwrap_or(-1);
        assert_eq!(int("managedsessions"), 1, "one call over NG: {total:?}");
        let (packets, kernel) = (int("packets"), int("kernel packets"));
        println!("relay: {packets} packets received, {kernel} forwarded by XDP (--xdp {xdp})");
        assert!(packets >= 2 * PACKETS as i64, "{total:?}");
        if xdp == "native" {
            assert!(kernel * 100 >= packets * 99, "XDP forwarded {kernel} of {packets}: {total:?}");
        }
    }
    if let Anchor::Sbc(sbc, _) = &engine {
        // The SBC's metrics count NG's commands by name and result (exported once a second).
        let deadline = Instant::now() + T;
        let metric = |m: &str| sbc.metric(m).unwrap_or(0.0);
        while metric("sbc_ng_requests_total{command=\"delete\",result=\"ok\"}") < 1.0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        for command in ["offer", "answer", "delete"] {
            let n = metric(&format!("sbc_ng_requests_total{{command=\"{command}\",result=\"ok\"}}"));
            assert!(n >= 1.0, "{command}: {n}\n{}", sbc.log_tail());
        }
        assert_eq!(metric("sbc_ng_requests_total{command=\"offer\",result=\"error\"}"), 0.0);
        assert_eq!(metric("sbc_ng_calls "), 0.0, "no NG call left");
    }
    assert!(proxy.try_wait().expect("kamailio").is_none(), "kamailio still runs: {}", proxy.output_tail());
    engine.stop();
    topo.remove().expect("topology removed");
}

fn which(program: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
        .iter()
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// Kamailio in the SBC namespace, running config/examples/kamailio-ng.cfg as shipped, pointed at [`NG_ADDR`].
fn start_kamailio(topo: &Topology, kamailio: &Path) -> Process {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/examples/kamailio-ng.cfg");
    let run = topo.dir().join("kamailio-run");
    std::fs::create_dir_all(&run).expect("kamailio's runtime directory");
    let args = [
        "-f".to_owned(),
        config.display().to_string(),
        "-DD".into(),
        "-E".into(),
        "-Y".into(),
        run.display().to_string(),
        "-P".into(),
        run.join("kamailio.pid").display().to_string(),
        "-A".into(),
        format!("RTPENGINE_SOCK=\"udp:{NG_ADDR}\""),
    ];
    let mut p = topo.spawn(Host::Sbc, "kamailio", kamailio, &args).expect("kamailio starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = p.try_wait().expect("kamailio") {
            panic!("kamailio exited at start ({status}): {}", p.output_tail());
        }
        if topo.wait_udp_listening(Host::Sbc, 5060, Duration::from_millis(100)).is_ok() {
            // Its children are forked around the bind; give the last a moment.
            std::thread::sleep(Duration::from_millis(300));
            return p;
        }
        assert!(Instant::now() < deadline, "kamailio does not listen after 10 s: {}", p.output_tail());
    }
}

fn carrier(topo: &Topology) -> Running {
    let ns = topo.ns(Host::B);
    let mut r = Sipp::new("uas_answer_rtp.xml")
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

fn caller(topo: &Topology, hold: Duration) -> Running {
    Sipp::new("uac_call_rtp.xml")
        .netns(&topo.ns(Host::A))
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

/// The relay's address in the SDP a SIPp side received (its message log), waited for up to 10 s.
fn relay_address_in(sipp: &Running, relay_ip: &str, proxy: &mut Process) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = sipp.messages();
        if let Some(port) = sdp_ports(&text, relay_ip).first() {
            return format!("{relay_ip}:{port}").parse().expect("an address");
        }
        assert!(Instant::now() < deadline, "no SDP naming {relay_ip}:\n{text}\nkamailio: {}", proxy.output_tail());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every `c=` and `o=` line `who` received names `relay_ip`.
fn assert_sdp_only_names(messages: &str, relay_ip: &str, who: &str) {
    let lines: Vec<&str> =
        messages.lines().map(str::trim).filter(|l| l.starts_with("c=IN IP4") || l.starts_with("o=")).collect();
    let received: Vec<&&str> = lines.iter().filter(|l| l.contains(relay_ip)).collect();
    assert!(!received.is_empty(), "{who} got no SDP naming the relay:\n{messages}");
    for l in &lines {
        let theirs = [CALLER.to_string(), CARRIER_B.to_string()];
        // SIPp's log holds what it sent too: its own address is fine, the other side's never.
        let other = if who == "the caller" { &theirs[1] } else { &theirs[0] };
        assert!(!l.contains(other.as_str()), "{who}'s SDP names the other side: {l}");
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
