//! SDES-SRTP on trunk legs, terminated by the relay (issue 14 point 2): real baresip phones with mandatory SRTP
//! (`mediaenc=srtp-mand`: RTP/SAVP, AES_CM_128_HMAC_SHA1_80) through the SBC in the single-SBC topology, with the
//! relay's XDP fast path attached (native), captured on both sides.
//!
//! - A caller with mandatory SRTP (trunk `customer-pbx`, `srtp = "required"`) calls a carrier on plain RTP
//!   (`carrier-b`, `srtp = "off"`, a second baresip without encryption). The caller plays a 1 kHz tone from a WAV
//!   file: the carrier's side of the capture carries plain PCMU whose decoded samples have their dominant
//!   frequency within 2 % of 1 kHz; the carrier's 440 Hz tone reaches the caller (its recording's dominant
//!   frequency). Side a carries SRTP only (the same decoding finds no tone there), side b no key at all.
//! - Both legs SRTP (both trunks `required`, both phones `srtp-mand`): audio both ways, and the `a=crypto` keys
//!   seen at side a and at side b have nothing in common: each leg has keys of its own.
//!
//! And `config/examples/carrier-srtp.toml` (a customer on optional SRTP, a carrier that requires it) passes
//! `sbc check-config` as shipped, while a copy with a wrong `srtp` value, or without `[media]`, fails naming the key.
//!
//! In both calls, the XDP program forwards none of it (a flow whose legs differ in crypto, or are both SRTP, stays in
//! user space), every SRTP and SRTCP packet the phones sent is decrypted, and the only packets that fail
//! authentication are the plain RTCP APP "PING" that baresip (libre) sends on its RTCP port before SRTP is up
//! (dropped and counted; one sent before the relay's socket was open is lost without a count).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tests::baresip::{
    dominant_frequency, goertzel, read_samples, received_audio, rms, ulaw_to_linear, write_tone, Phone,
};
use tests::capture::{udp, Capture};
use tests::netns::{addr, sbc_config, Host, Process, Topology, CALLER, CARRIER_B, SBC_A, SBC_B};
use tests::{media_relay_binary, repo_root, sbc_binary, Sbc};

/// How long the caller stays in the call (it hangs up by quitting, which sends BYE).
const CALL_SECS: u64 = 8;
/// Bound of each capture; the test is over well before.
const CAPTURE_LIMIT: Duration = Duration::from_secs(60);
/// What the carrier's phone answers as.
const CALLED: &str = "+4930123456";
/// The caller's tone, and the carrier's.
const CALLER_HZ: f64 = 1000.0;
const CARRIER_HZ: f64 = 440.0;

/// What one call left behind.
struct Call {
    at_a: Vec<Vec<u8>>,
    at_b: Vec<Vec<u8>>,
    /// What each phone decoded from the network.
    a_heard: Vec<i16>,
    b_heard: Vec<i16>,
    unprotected: f64,
    protected: f64,
    auth_failures: f64,
    replay_failures: f64,
    no_keys: f64,
    kernel_packets: f64,
    // Dropped last: the processes before the namespaces they run in.
    _sbc: Sbc,
    _helpers: Vec<Process>,
    _topo: Topology,
}

/// One call from a baresip caller (media encryption `caller_enc`) through the SBC (trunk keys `pbx` for the
/// caller's trunk, `carrier` for carrier-b's) to a baresip callee (`callee_enc`), XDP native.
fn call(name: &str, pbx: &str, carrier: &str, caller_enc: Option<&str>, callee_enc: Option<&str>) -> Call {
    let topo = Topology::single_sbc().expect("topology");
    let helpers = topo.prepare_xdp(&media_relay_binary().expect("media-relay built")).expect("xdp path");
    let mut config = sbc_config(pbx, carrier, "", false, None);
    config.push_str(&format!(
        "\n[media]\ninterfaces = [{{ name = \"a\", address = \"{SBC_A}\" }}, {{ name = \"b\", address = \"{SBC_B}\" }}]\n\
         ports = \"30000-30999\"\nxdp = \"native\"\n"
    ));
    let sbc = Sbc::start_in(&topo.ns(Host::Sbc), name, &config, addr(SBC_A, 5060), addr([127, 0, 0, 1].into(), 8080))
        .expect("sbc starts");
    let deadline = Instant::now() + Duration::from_secs(5);
    while sbc.metric("sbc_media_xdp_mode").unwrap_or(0.0) != 2.0 {
        assert!(Instant::now() < deadline, "native XDP attached within 5 s: {}", sbc.log_tail());
        std::thread::sleep(Duration::from_millis(100));
    }

    let tone = |hz: f64, file: &str| {
        let path = topo.dir().join(file);
        write_tone(&path, 8000, hz, 8000.0, CALL_SECS as u32 + 5).expect("tone written");
        path
    };
    let phone = |name: &str, ip: Ipv4Addr, user: &str, auto_answer: bool, source: PathBuf, enc: Option<&str>| Phone {
        name: name.to_owned(),
        ip,
        user: user.to_owned(),
        auto_answer,
        rtcp_mux: false,
        source,
        mediaenc: enc.map(str::to_owned),
    };
    let cap_a = Capture::start(&topo, Host::A, "eth0", "side-a", CAPTURE_LIMIT).expect("capture at side a");
    let cap_b = Capture::start(&topo, Host::B, "eth0", "side-b", CAPTURE_LIMIT).expect("capture at side b");

    let callee = phone("b", CARRIER_B, CALLED, true, tone(CARRIER_HZ, "carrier.wav"), callee_enc);
    let (mut callee, dir_b) = callee.spawn(&topo, Host::B, CALL_SECS + 20, None).expect("baresip b starts");
    topo.wait_udp_listening(Host::B, 5060, Duration::from_secs(10)).expect("baresip b listens");
    let dial = format!("sip:{CALLED}@{SBC_A}");
    let caller = phone("a", CALLER, "alice", false, tone(CALLER_HZ, "caller.wav"), caller_enc);
    let (mut caller, dir_a) = caller.spawn(&topo, Host::A, CALL_SECS, Some(&dial)).expect("baresip a starts");
    let status = caller.wait_timeout(Duration::from_secs(CALL_SECS + 15)).expect("baresip a quits");
    assert!(status.success(), "baresip a: {status}\n{}", caller.output_tail());
    wait_for_text(&callee.stdout, "terminated", Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", callee.output_tail(), sbc.log_tail()));
    callee.terminate(Duration::from_secs(5)).expect("baresip b stops");
    assert!(
        callee.output_tail().contains("Call established") && caller.output_tail().contains("Call established"),
        "the call was not established:\n{}\n{}\n{}",
        caller.output_tail(),
        callee.output_tail(),
        sbc.log_tail()
    );

    let metric = |m: &str| sbc.metric(m).unwrap_or_else(|e| panic!("{m}: {e}"));
    let heard = |dir: &Path| read_samples(&received_audio(dir).expect("a recording")).expect("samples");
    Call {
        at_a: cap_a.finish().expect("side a captured"),
        at_b: cap_b.finish().expect("side b captured"),
        a_heard: heard(&dir_a),
        b_heard: heard(&dir_b),
        unprotected: metric("sbc_media_srtp_unprotected_total"),
        protected: metric("sbc_media_srtp_protected_total"),
        auth_failures: metric("sbc_media_srtp_auth_failures_total"),
        replay_failures: metric("sbc_media_srtp_replay_failures_total"),
        no_keys: metric("sbc_media_packets_dropped_total{reason=\"srtp_no_keys\"}"),
        kernel_packets: metric("sbc_media_kernel_packets_total"),
        _sbc: sbc,
        _helpers: helpers,
        _topo: topo,
    }
}

fn wait_for_text(path: &Path, text: &str, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if std::fs::read_to_string(path).unwrap_or_default().contains(text) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    anyhow::bail!("no {text:?} in {} within {limit:?}", path.display())
}

/// The payloads of the RTP packets (not RTCP, not SIP) from `src` to `dst` in a capture, in capture order.
fn rtp_payloads(frames: &[Vec<u8>], src: Ipv4Addr, dst: Ipv4Addr) -> Vec<Vec<u8>> {
    frames
        .iter()
        .filter_map(|f| udp(f))
        .filter(|u| *u.src.ip() == src && *u.dst.ip() == dst && u.src.port() != 5060 && u.dst.port() != 5060)
        .map(|u| u.payload)
        .filter(|p| p.len() >= 12 && p[0] >> 6 == 2 && !(192..=223).contains(&p[1]))
        .map(<[u8]>::to_vec)
        .collect()
}

/// The PCMU samples of RTP packets (payload type 0, the fixed 12-byte header plus CSRCs and any extension
/// skipped), in order.
fn pcmu_samples(packets: &[Vec<u8>]) -> Vec<i16> {
    let mut samples = Vec::new();
    for p in packets.iter().filter(|p| p[1] & 0x7f == 0) {
        let mut at = 12 + 4 * usize::from(p[0] & 0x0f);
        if p[0] & 0x10 != 0 {
            let Some(ext) = p.get(at + 2..at + 4) else { continue };
            at += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
        }
        samples.extend(p.get(at..).unwrap_or(&[]).iter().map(|b| ulaw_to_linear(*b)));
    }
    samples
}

/// The SDP bodies (everything from `v=0`) of the SIP messages in a capture, with who sent them.
fn sdp_bodies(frames: &[Vec<u8>]) -> Vec<(Ipv4Addr, String)> {
    frames
        .iter()
        .filter_map(|f| udp(f))
        .filter(|u| u.src.port() == 5060 || u.dst.port() == 5060)
        .filter_map(|u| {
            let text = String::from_utf8_lossy(u.payload).into_owned();
            let at = text.find("v=0")?;
            Some((*u.src.ip(), text[at..].to_owned()))
        })
        .collect()
}

/// The `inline:` keys of the `a=crypto` lines in `sdp`.
fn inline_keys(sdp: &str) -> Vec<String> {
    sdp.lines()
        .filter(|l| l.starts_with("a=crypto:"))
        .filter_map(|l| l.split_once("inline:").map(|(_, k)| k.split(['|', ' ']).next().unwrap_or("").to_owned()))
        .collect()
}

/// libre's greeting on a new RTCP socket, sent in the clear before SRTP is set up: an RTCP APP packet named
/// `PING`.
fn is_plain_ping(p: &[u8]) -> bool {
    p.len() == 16 && p[1] == 204 && &p[8..12] == b"PING"
}

/// What `from` sent to the relay at `to` (not SIP): (SRTP and SRTCP packets, plain RTCP PINGs).
fn media_sent(frames: &[Vec<u8>], from: Ipv4Addr, to: Ipv4Addr) -> (usize, usize) {
    let sent: Vec<&[u8]> = frames
        .iter()
        .filter_map(|f| udp(f))
        .filter(|u| *u.src.ip() == from && *u.dst.ip() == to && u.src.port() != 5060 && u.dst.port() != 5060)
        .map(|u| u.payload)
        .collect();
    let pings = sent.iter().filter(|p| is_plain_ping(p)).count();
    (sent.len() - pings, pings)
}

/// The dominant frequency of a second of `samples` from half a second in (past the call's first packets).
fn tone_of(samples: &[i16]) -> f64 {
    let window = samples.get(4000..12000).unwrap_or(samples);
    dominant_frequency(window, 8000.0)
}

/// How strongly the tone at `hz` (within 2 %) stands out of a second of `samples` from half a second in: its
/// Goertzel power over what white noise of the same energy gives at one frequency. A clear tone gives about half
/// the number of samples (4000 here); noise (what encrypted payloads decode to) about 1, and more than 50 with a
/// chance of about 1e-20. The dominant frequency alone is no test of encryption: noise has one too, and it falls
/// within 2 % of the tone about once in a hundred times.
fn tone_strength(samples: &[i16], hz: f64) -> f64 {
    let window = samples.get(4000..12000).unwrap_or(samples);
    let n = window.len() as f64;
    let mean_square = window.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / n.max(1.0);
    if mean_square == 0.0 {
        return 0.0;
    }
    let (low, high) = ((hz * 0.98) as u32, (hz * 1.02) as u32);
    let peak = (low..=high).map(|f| goertzel(window, 8000.0, f64::from(f))).fold(0.0, f64::max);
    peak / (n * mean_square)
}

/// Below this [`tone_strength`], a tone is not readable.
const UNREADABLE: f64 = 50.0;

fn assert_tone(what: &str, samples: &[i16], hz: f64) {
    assert!(samples.len() >= 12000, "{what}: {} samples, at least 1.5 s of audio expected", samples.len());
    let f = tone_of(samples);
    assert!((f - hz).abs() <= 0.02 * hz, "{what}: dominant frequency {f:.1} Hz, expected {hz} Hz within 2 %");
    assert!(rms(samples) > 2000.0, "{what}: not silent (RMS {:.0})", rms(samples));
    // The measure that says "unreadable" of the encrypted side says "readable" here (printed for the margin).
    let strength = tone_strength(samples, hz);
    eprintln!("{what}: tone strength {strength:.0}");
    assert!(strength > UNREADABLE, "{what}: tone strength {strength:.0}, a tone gives far more than {UNREADABLE}");
}

/// What both tests check: media went both ways through user space only; of `sent` (the SRTP and SRTCP packets
/// the phones sent to the relay, and their plain PINGs), every SRTP and SRTCP packet was decrypted and only the
/// PINGs failed authentication.
fn assert_terminated_in_user_space(call: &Call, sent: (usize, usize), min_protected: f64) {
    eprintln!(
        "srtp: phones sent {} SRTP/SRTCP packets and {} plain PINGs to the relay; unprotected {}, protected {}, \
         auth failures {}, replays {}, dropped before the keys were agreed {}, kernel packets {}",
        sent.0,
        sent.1,
        call.unprotected,
        call.protected,
        call.auth_failures,
        call.replay_failures,
        call.no_keys,
        call.kernel_packets
    );
    assert!(sent.0 >= 300, "the phones sent SRTP: {}", sent.0);
    // A callee's first packets may beat its answer through the SBC (dropped: no keys yet, counted), and a phone's
    // last packets may arrive after the BYE closed the relay's sockets.
    assert!(call.no_keys <= 5.0, "packets before the keys: {}", call.no_keys);
    assert!(
        call.unprotected >= sent.0 as f64 - 10.0 && call.unprotected <= sent.0 as f64,
        "every SRTP/SRTCP packet of the phones decrypted: {} of {}",
        call.unprotected,
        sent.0
    );
    assert!(call.protected >= min_protected, "SRTP encrypted by the relay: {}", call.protected);
    assert!(
        call.auth_failures <= sent.1 as f64,
        "only the phones' plain RTCP PINGs failed authentication: {} failures, {} PINGs",
        call.auth_failures,
        sent.1
    );
    assert_eq!(call.replay_failures, 0.0, "no replay");
    assert_eq!(call.kernel_packets, 0.0, "the XDP program forwarded none of an SRTP call's packets");
}

#[test]
fn baresip_with_mandatory_srtp_calls_a_plain_rtp_carrier_and_the_tones_cross_both_ways() {
    let c = call("srtp-to-plain", "srtp = \"required\"", "srtp = \"off\"", Some("srtp-mand"), None);

    // Side b: plain RTP from the relay, the caller's 1 kHz tone in it; no key in any SDP there.
    let to_carrier = rtp_payloads(&c.at_b, SBC_B, CARRIER_B);
    eprintln!("side b: {} RTP packets to the carrier", to_carrier.len());
    assert!(to_carrier.len() >= 300, "the caller's audio reached the carrier: {} packets", to_carrier.len());
    assert_tone("the carrier's received RTP (capture)", &pcmu_samples(&to_carrier), CALLER_HZ);
    let sdp_b = sdp_bodies(&c.at_b);
    assert!(sdp_b.len() >= 2, "offer and answer at side b: {sdp_b:?}");
    for (from, sdp) in &sdp_b {
        assert!(!sdp.contains("a=crypto") && !sdp.contains("RTP/SAVP"), "plain RTP at side b, from {from}:\n{sdp}");
    }

    // Side a: SRTP both ways; the SBC's key for the caller is its own.
    let to_caller = rtp_payloads(&c.at_a, SBC_A, CALLER);
    let from_caller = rtp_payloads(&c.at_a, CALLER, SBC_A);
    assert!(to_caller.len() >= 300 && from_caller.len() >= 300, "{} / {}", to_caller.len(), from_caller.len());
    for (what, packets, hz) in [("to the caller", &to_caller, CARRIER_HZ), ("from the caller", &from_caller, CALLER_HZ)]
    {
        let strength = tone_strength(&pcmu_samples(packets), hz);
        assert!(
            strength < UNREADABLE,
            "side a {what}: the {hz} Hz tone is readable (strength {strength:.0}): not encrypted"
        );
    }
    let sdp_a = sdp_bodies(&c.at_a);
    let caller_keys: BTreeSet<String> =
        sdp_a.iter().filter(|(from, _)| *from == CALLER).flat_map(|(_, s)| inline_keys(s)).collect();
    let sbc_keys: BTreeSet<String> =
        sdp_a.iter().filter(|(from, _)| *from == SBC_A).flat_map(|(_, s)| inline_keys(s)).collect();
    eprintln!("side a: caller's keys {caller_keys:?}, the SBC's {sbc_keys:?}");
    assert!(!caller_keys.is_empty() && !sbc_keys.is_empty(), "keys both ways at side a: {sdp_a:?}");
    assert!(caller_keys.is_disjoint(&sbc_keys), "the SBC answered with a key of its own");
    assert!(sdp_a.iter().all(|(_, s)| s.contains("RTP/SAVP")), "RTP/SAVP both ways at side a");

    // What each phone decoded: the other's tone.
    assert_tone("baresip b's recording", &c.b_heard, CALLER_HZ);
    assert_tone("baresip a's recording (the carrier's audio reached it)", &c.a_heard, CARRIER_HZ);
    // 50 packets a second for ~7 s each way, RTCP included.
    assert_terminated_in_user_space(&c, media_sent(&c.at_a, CALLER, SBC_A), 300.0);
}

#[test]
fn srtp_on_both_legs_carries_audio_both_ways_with_different_keys_on_each_leg() {
    let c = call("srtp-both", "srtp = \"required\"", "srtp = \"required\"", Some("srtp-mand"), Some("srtp-mand"));
    let keys = |frames: &[Vec<u8>]| -> BTreeSet<String> {
        sdp_bodies(frames).iter().flat_map(|(_, s)| inline_keys(s)).collect()
    };
    let (at_a, at_b) = (keys(&c.at_a), keys(&c.at_b));
    eprintln!("keys at side a {at_a:?}, at side b {at_b:?}");
    assert!(at_a.len() >= 2, "the caller's key and the SBC's at side a: {at_a:?}");
    assert!(at_b.len() >= 2, "the SBC's keys and the carrier's at side b: {at_b:?}");
    assert!(at_a.is_disjoint(&at_b), "a key seen on both legs: {:?}", at_a.intersection(&at_b).collect::<Vec<_>>());
    for (side, frames) in [("a", &c.at_a), ("b", &c.at_b)] {
        assert!(sdp_bodies(frames).iter().all(|(_, s)| s.contains("RTP/SAVP")), "RTP/SAVP at side {side}");
    }
    // Encrypted on the wire on both sides: the tones are only in what the phones decoded.
    for (side, frames, relay, phone, hz) in
        [("a", &c.at_a, SBC_A, CALLER, CARRIER_HZ), ("b", &c.at_b, SBC_B, CARRIER_B, CALLER_HZ)]
    {
        let packets = rtp_payloads(frames, relay, phone);
        assert!(packets.len() >= 300, "side {side}: {} packets from the relay", packets.len());
        let strength = tone_strength(&pcmu_samples(&packets), hz);
        assert!(
            strength < UNREADABLE,
            "side {side}: the {hz} Hz tone is readable on the wire (strength {strength:.0})"
        );
    }
    assert_tone("baresip b's recording", &c.b_heard, CALLER_HZ);
    assert_tone("baresip a's recording", &c.a_heard, CARRIER_HZ);
    // Every packet is decrypted on one leg and encrypted on the other: both counts cover both directions.
    let (a, b) = (media_sent(&c.at_a, CALLER, SBC_A), media_sent(&c.at_b, CARRIER_B, SBC_B));
    assert_terminated_in_user_space(&c, (a.0 + b.0, a.1 + b.1), 600.0);
}

#[test]
fn the_shipped_srtp_carrier_example_passes_check_config_and_a_bad_srtp_value_names_its_key() {
    let check = |path: &Path| {
        let out = std::process::Command::new(sbc_binary().expect("sbc built"))
            .args(["check-config", path.to_str().expect("utf8")])
            .current_dir(repo_root())
            .output()
            .expect("sbc runs");
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let shipped = repo_root().join("config/examples/carrier-srtp.toml");
    let text = std::fs::read_to_string(&shipped).expect("config/examples/carrier-srtp.toml");
    assert_eq!(text.matches("srtp = ").count(), 2, "both trunks say what their leg uses");
    let (code, out) = check(&shipped);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("carrier-srtp.toml: OK"), "{out}");

    let dir = std::env::temp_dir().join(format!("sbc-srtp-cc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, text.replace("srtp = \"required\"", "srtp = \"mandatory\"")).expect("write");
    let (code, out) = check(&bad);
    let line = text.lines().position(|l| l == "srtp = \"required\"").expect("the carrier's srtp line") + 1;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains(&format!("bad.toml:{line}: trunk[1].srtp")), "{out}");
    let no_media = &text[..text.find("\n[media]\n").expect("a [media] section")];
    std::fs::write(&bad, no_media).expect("write");
    let (code, out) = check(&bad);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("trunk[0].srtp") && out.contains("trunk[1].srtp") && out.contains("needs [media]"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
