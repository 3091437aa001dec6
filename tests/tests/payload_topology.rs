//! Topology hiding inside payloads (issue 13 point 7): a call between two real phones, baresip to baresip,
//! through the SBC in the single-SBC topology, captured on both sides.
//!
//! baresip writes its own address into more than the headers and `c=` lines the B2BUA and the SDP rewrite
//! replace: its SDP carries `a=ssrc:<id> cname:sip:alice@198.18.1.10`, and its RTCP SDES the same CNAME, every
//! few seconds and with its BYE. Captured at side b, no byte sequence of a side-a address (the caller's
//! 198.18.1.10 and the SBC's side-a 198.18.1.1, as text anywhere in a frame and as the four address bytes in any
//! UDP payload: SIP, RTP, RTCP) may appear; the same for side b's addresses at side a; and the tone each phone
//! plays must arrive at the other (RTP counted in the captures, the recordings not silent).
//!
//! Two paths: the user-space relay with RTCP on its own port, and the XDP fast path with RTCP multiplexed on the
//! RTP port (RFC 5761), where RTP is forwarded by the kernel and the program hands RTCP up to be rewritten.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tests::baresip::{read_samples, received_audio, rms, write_tone, Phone};
use tests::capture::{contains, udp, Capture};
use tests::netns::{addr, sbc_config, Host, Process, Topology, CALLER, CARRIER_B, SBC_A, SBC_B};
use tests::{media_relay_binary, Sbc};

/// How long the caller stays in the call (it hangs up by quitting, which sends BYE). baresip sends its first
/// RTCP report after 5 s, so each side's CNAME crosses at least twice: in that report and with its BYE.
const CALL_SECS: u64 = 9;
/// Bound of each capture; the test is over well before.
const CAPTURE_LIMIT: Duration = Duration::from_secs(60);
/// What the carrier's phone answers as: the number the caller dials.
const CALLED: &str = "+4930123456";

/// What one call left behind: both captures, both recordings' loudness, and the SBC's counters.
struct Call {
    /// Every frame captured on the caller's interface (side a).
    at_a: Vec<Vec<u8>>,
    /// Every frame captured on the carrier's interface (side b).
    at_b: Vec<Vec<u8>>,
    /// RMS of what each phone decoded from the network (the other's tone, amplitude 8000: RMS about 5657).
    a_heard: f64,
    b_heard: f64,
    rtcp_rewritten: f64,
    malformed_rtcp: f64,
    kernel_packets: f64,
    kernel_passed_rtcp: f64,
    // Dropped last: the processes before the namespaces they run in.
    _sbc: Sbc,
    _helpers: Vec<Process>,
    _topo: Topology,
}

/// One call between two baresip phones through the SBC: with the relay's XDP fast path (`xdp`, else user space
/// only) and with RTCP multiplexed on the RTP port (`rtcp_mux`).
fn baresip_call(name: &str, xdp: bool, rtcp_mux: bool) -> Call {
    let topo = Topology::single_sbc().expect("topology");
    let helpers = if xdp {
        topo.prepare_xdp(&media_relay_binary().expect("media-relay built")).expect("xdp path")
    } else {
        vec![]
    };
    let mut config = sbc_config("", "", "", false, None);
    config.push_str(&format!(
        "\n[media]\ninterfaces = [{{ name = \"a\", address = \"{SBC_A}\" }}, {{ name = \"b\", address = \"{SBC_B}\" }}]\n\
         ports = \"30000-30999\"\nxdp = \"{}\"\n",
        if xdp { "native" } else { "off" }
    ));
    let sbc = Sbc::start_in(&topo.ns(Host::Sbc), name, &config, addr(SBC_A, 5060), addr([127, 0, 0, 1].into(), 8080))
        .expect("sbc starts");
    if xdp {
        let deadline = Instant::now() + Duration::from_secs(5);
        while sbc.metric("sbc_media_xdp_mode").unwrap_or(0.0) != 2.0 {
            assert!(Instant::now() < deadline, "native XDP attached within 5 s: {}", sbc.log_tail());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    let tone = topo.dir().join("tone.wav");
    write_tone(&tone, 8000, 440.0, 8000.0, CALL_SECS as u32 + 5).expect("tone written");
    let phone = |name: &str, ip: Ipv4Addr, user: &str, auto_answer: bool| Phone {
        name: name.to_owned(),
        ip,
        user: user.to_owned(),
        auto_answer,
        rtcp_mux,
        source: tone.clone(),
        mediaenc: None,
    };
    let cap_a = Capture::start(&topo, Host::A, "eth0", "side-a", CAPTURE_LIMIT).expect("capture at side a");
    let cap_b = Capture::start(&topo, Host::B, "eth0", "side-b", CAPTURE_LIMIT).expect("capture at side b");

    let (mut callee, dir_b) =
        phone("b", CARRIER_B, CALLED, true).spawn(&topo, Host::B, CALL_SECS + 20, None).expect("baresip b starts");
    topo.wait_udp_listening(Host::B, 5060, Duration::from_secs(10)).expect("baresip b listens");
    let dial = format!("sip:{CALLED}@{SBC_A}");
    let (mut caller, dir_a) =
        phone("a", CALLER, "alice", false).spawn(&topo, Host::A, CALL_SECS, Some(&dial)).expect("baresip a starts");
    let status = caller.wait_timeout(Duration::from_secs(CALL_SECS + 15)).expect("baresip a quits");
    assert!(status.success(), "baresip a: {status}\n{}", caller.output_tail());
    // The caller's BYE ends the callee's call (its recording is closed then); then it may go.
    wait_for_text(&callee.stdout, "terminated", Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}\n{}", callee.output_tail()));
    callee.terminate(Duration::from_secs(5)).expect("baresip b stops");
    assert!(
        callee.output_tail().contains("Call established") && caller.output_tail().contains("Call established"),
        "the call was not established:\n{}\n{}",
        caller.output_tail(),
        callee.output_tail()
    );

    let metric = |m: &str| sbc.metric(m).unwrap_or_else(|e| panic!("{m}: {e}"));
    let heard = |dir: &PathBuf| rms(&read_samples(&received_audio(dir).expect("a recording")).expect("samples"));
    Call {
        at_a: cap_a.finish().expect("side a captured"),
        at_b: cap_b.finish().expect("side b captured"),
        a_heard: heard(&dir_a),
        b_heard: heard(&dir_b),
        rtcp_rewritten: metric("sbc_media_rtcp_rewritten_total"),
        malformed_rtcp: metric("sbc_media_packets_dropped_total{reason=\"malformed_rtcp\"}"),
        kernel_packets: metric("sbc_media_kernel_packets_total"),
        kernel_passed_rtcp: metric("sbc_media_kernel_passed_total{reason=\"rtcp\"}"),
        _sbc: sbc,
        _helpers: helpers,
        _topo: topo,
    }
}

/// Waits until the file at `path` contains `text`.
fn wait_for_text(path: &std::path::Path, text: &str, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if std::fs::read_to_string(path).unwrap_or_default().contains(text) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    anyhow::bail!("no {text:?} in {} within {limit:?}", path.display())
}

/// Fails, naming the frame, if any frame captured on one side carries an address of the other: `hidden` as text
/// anywhere in the frame, or as its four bytes in a UDP payload (SIP, RTP, RTCP).
fn assert_hidden(side: &str, frames: &[Vec<u8>], hidden: &[Ipv4Addr]) {
    for (i, f) in frames.iter().enumerate() {
        for ip in hidden {
            let what = match udp(f) {
                Some(u) => format!("{} -> {}: {}", u.src, u.dst, String::from_utf8_lossy(u.payload)),
                None => format!("{f:02x?}"),
            };
            assert!(
                !contains(f, ip.to_string().as_bytes()),
                "{ip} as text in frame {i} captured at side {side}: {what}"
            );
            if let Some(u) = udp(f) {
                assert!(
                    !contains(u.payload, &ip.octets()),
                    "{ip} as bytes in the UDP payload of frame {i} captured at side {side}: {what}"
                );
            }
        }
    }
}

/// What crossed to the phone at `phone` from the relay at `relay` in one capture: SIP messages, RTP packets and
/// RTCP compound packets with an SDES, and the SDP bodies and SDES CNAMEs it read.
#[derive(Debug, Default)]
struct Crossed {
    sip: usize,
    rtp: usize,
    rtcp_sdes: usize,
    sdp_cnames: Vec<String>,
    rtcp_cnames: Vec<String>,
}

fn crossed(frames: &[Vec<u8>], relay: Ipv4Addr, phone: Ipv4Addr) -> Crossed {
    let mut c = Crossed::default();
    for u in frames.iter().filter_map(|f| udp(f)) {
        if *u.src.ip() != relay || *u.dst.ip() != phone {
            continue;
        }
        let p = u.payload;
        if u.src.port() == 5060 {
            c.sip += 1;
            let text = String::from_utf8_lossy(p);
            for line in text.lines().filter(|l| l.starts_with("a=ssrc:")) {
                if let Some((_, cname)) = line.split_once(" cname:") {
                    c.sdp_cnames.push(cname.trim().to_owned());
                }
            }
        } else if p.len() >= 12 && p[0] >> 6 == 2 && (192..=223).contains(&p[1]) {
            let names = sdes_cnames(p);
            if !names.is_empty() {
                c.rtcp_sdes += 1;
            }
            c.rtcp_cnames.extend(names);
        } else if p.len() >= 12 && p[0] >> 6 == 2 {
            c.rtp += 1;
        }
    }
    c
}

/// The CNAME items of the SDES packets in a compound RTCP packet (RFC 3550 §6.5), read independently of the
/// relay's own parser.
fn sdes_cnames(mut p: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while p.len() >= 4 {
        let size = (usize::from(u16::from_be_bytes([p[2], p[3]])) + 1) * 4;
        let Some(packet) = p.get(..size) else { break };
        if packet[1] == 202 {
            let mut at = 4;
            for _ in 0..packet[0] & 0x1f {
                at += 4;
                while let (Some(&kind), Some(&len)) = (packet.get(at), packet.get(at + 1)) {
                    if kind == 0 {
                        break;
                    }
                    if kind == 1 {
                        out.push(
                            String::from_utf8_lossy(packet.get(at + 2..at + 2 + usize::from(len)).unwrap_or(&[]))
                                .into(),
                        );
                    }
                    at += 2 + usize::from(len);
                }
                at = (at / 4 + 1) * 4;
            }
        }
        p = &p[size..];
    }
    out
}

/// A CNAME token as the relay writes it: 16 characters of base64 (RFC 7022 §4.2).
fn is_token(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// The assertions both paths share: nothing of either side at the other, what crossed was real (SIP with an SDP
/// whose `a=ssrc` CNAME is a token, RTP, RTCP whose SDES CNAME is the same token), and the audio arrived.
fn assert_call_hides_both_sides(call: &Call) {
    assert_hidden("b", &call.at_b, &[CALLER, SBC_A]);
    assert_hidden("a", &call.at_a, &[CARRIER_B, SBC_B]);
    for (side, frames, relay, phone) in [("a", &call.at_a, SBC_A, CALLER), ("b", &call.at_b, SBC_B, CARRIER_B)] {
        let c = crossed(frames, relay, phone);
        eprintln!(
            "side {side}: {} SIP, {} RTP, {} RTCP with SDES; SDP CNAMEs {:?}, RTCP CNAMEs {:?}",
            c.sip, c.rtp, c.rtcp_sdes, c.sdp_cnames, c.rtcp_cnames
        );
        assert!(c.sip >= 2, "side {side}: SIP crossed (INVITE or 200, BYE or 200): {c:?}");
        // 50 packets a second for the ~8 s the call lasts; allow for setup and the last packets after BYE.
        assert!(c.rtp >= 300, "side {side}: the other side's audio arrived as RTP: {c:?}");
        assert!(c.rtcp_sdes >= 1, "side {side}: RTCP with SDES crossed (and was checked): {c:?}");
        assert_eq!(c.sdp_cnames.len(), 1, "side {side}: the other side's SDP kept its a=ssrc line: {c:?}");
        assert!(is_token(&c.sdp_cnames[0]), "side {side}: the SDP's CNAME is a token: {c:?}");
        assert!(
            c.rtcp_cnames.iter().all(|n| *n == c.sdp_cnames[0]),
            "side {side}: RTCP's CNAME is the SDP's token, so SSRC and participant still match: {c:?}"
        );
    }
    // baresip's first report after 5 s and its BYE, each way.
    assert!(call.rtcp_rewritten >= 2.0, "RTCP rewritten by the relay: {}", call.rtcp_rewritten);
    assert_eq!(call.malformed_rtcp, 0.0, "baresip's RTCP parses");
    // The tone's RMS is 5657; silence (or no recording at all) is 0.
    assert!(call.a_heard > 2000.0, "the caller heard the carrier's tone: RMS {}", call.a_heard);
    assert!(call.b_heard > 2000.0, "the carrier heard the caller's tone: RMS {}", call.b_heard);
}

#[test]
fn baresip_call_through_the_user_space_relay_shows_neither_side_an_address_of_the_other() {
    let call = baresip_call("payload-user-space", false, false);
    assert_call_hides_both_sides(&call);
    assert_eq!(call.kernel_packets, 0.0, "xdp = off");
}

#[test]
fn baresip_call_with_rtcp_mux_over_xdp_keeps_rtp_in_the_kernel_and_rewrites_rtcp_in_user_space() {
    let call = baresip_call("payload-xdp-mux", true, true);
    assert_call_hides_both_sides(&call);
    assert!(call.kernel_packets >= 500.0, "RTP both ways went through XDP: {}", call.kernel_packets);
    assert!(
        call.kernel_passed_rtcp >= 2.0,
        "the program handed the muxed RTCP up to be rewritten: {}",
        call.kernel_passed_rtcp
    );
}
