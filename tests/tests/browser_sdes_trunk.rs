//! Issue 18 point 3, the SDES half: a browser's call to a carrier trunk with `srtp = "required"`. Headless
//! Chromium with JsSIP (tests/src/browser.rs) registers over `wss:` and calls; its microphone is a 1 kHz tone. The
//! carrier is baresip with mandatory SDES-SRTP (`mediaenc=srtp-mand`, as in srtp_trunks.rs) playing 440 Hz. The
//! relay decrypts the browser's DTLS-SRTP and encrypts for the carrier with the carrier leg's own SDES keys, and
//! back (docs/webrtc-media.md).
//!
//! - The page calls the carrier: the carrier's INVITE is `RTP/SAVP` with the SBC's `a=crypto` keys and nothing of
//!   WebRTC; the RTP the relay sends the carrier is encrypted (its payloads do not decode to the tone); baresip
//!   decrypts it and its recording is the page's tone (dominant frequency within 2 %); the carrier's audio reaches
//!   the page (`getStats()` inbound packetsReceived and audioLevel > 0); the SBC counts no SRTP authentication
//!   failure.
//! - The carrier calls the registered page with an SDES offer: the page is offered DTLS-SRTP (no `a=crypto`), the
//!   carrier gets an answer with a key of the SBC's own, media both ways as above.
//!
//! Kept in its own file so that it needs nothing of browser_call.rs; cargo runs test files one after another, and
//! the two tests here take turns ([`SERIAL`]), so there is one Chromium at a time.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};
use tests::baresip::{read_samples, received_audio, write_tone, Phone};
use tests::browser::{spki_hash, Browser, BrowserOptions};
use tests::capture::{udp, Capture};
use tests::netns::{addr, Host, Topology, CARRIER_B, SBC_A, SBC_B};
use tests::tls::TestCa;
use tests::Sbc;

const WSS_PORT: u16 = 5063;
const API: &str = "127.0.0.1:8080";
const ORIGIN: &str = "https://phone.example.test";
const PASSWORD: &str = "browser-secret-1001";
const CALLED: &str = "+4930123456";
const PAGE_HZ: f64 = 1000.0;
const CARRIER_HZ: f64 = 440.0;
/// How long baresip stays up (it quits by itself after this; the page hangs up well before).
const CARRIER_SECS: u64 = 45;

/// One test at a time: a Chromium each at once on 2 cores miss their deadlines (as in browser_call.rs).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The SBC with `wss:` for user 1001 on side a and carrier-b (`srtp = "required"`) on side b, media anchored.
fn start_sbc(topo: &Topology) -> (Sbc, String) {
    let authority = TestCa::new("sbc browser sdes test CA").expect("CA");
    let leaf = authority.issue("sbc.example.test", &["sbc.example.test"], &[SBC_A.into()]).expect("certificate");
    let pem = topo.dir().join("sbc.pem");
    std::fs::write(&pem, leaf.combined()).expect("write certificate");
    let password_file = topo.dir().join("users.password");
    std::fs::write(&password_file, PASSWORD).expect("password file");
    let config = format!(
        r#"[sip]
listen = ["wss:{SBC_A}:{WSS_PORT}", "udp:{SBC_B}:5060"]
tls = {{ cert = "{pem}", key = "{pem}" }}

[sip.ws]
allowed_origins = ["{ORIGIN}"]

[api]
listen = "{API}"

[log]
level = "debug"

[media]
interfaces = [{{ name = "a", address = "{SBC_A}" }}, {{ name = "b", address = "{SBC_B}" }}]
ports = "30000-30999"
xdp = "off"

[[trunk]]
name = "users"

[[trunk]]
name = "carrier-b"
match = {{ source = ["{CARRIER_B}/32"] }}
gateways = ["udp:{CARRIER_B}:5060"]
srtp = "required"

[[route]]
prefix = "100"
to = [{{ trunk = "users" }}]

[[route]]
prefix = ""
to = [{{ trunk = "carrier-b" }}]

[registrar]
trunk = "users"
domains = ["{SBC_A}"]
min_expires = 30

[[registrar.user]]
name = "1001"
password_file = "{pw}"
"#,
        pem = pem.display(),
        pw = password_file.display(),
    );
    let api: SocketAddr = API.parse().expect("api");
    let sbc = Sbc::start_in(&topo.ns(Host::Sbc), "browser-sdes", &config, addr(SBC_A, WSS_PORT), api).expect("sbc");
    (sbc, spki_hash(&leaf.key).expect("SPKI hash of the SBC certificate"))
}

/// The SDP bodies of the SIP messages in a capture, with who sent them.
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

/// The payloads (after the 12-byte header) of the PCMU RTP packets the relay sent the carrier.
fn pcmu_to_carrier(frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
    frames
        .iter()
        .filter_map(|f| udp(f))
        .filter(|u| *u.src.ip() == SBC_B && *u.dst.ip() == CARRIER_B && u.src.port() != 5060)
        .map(|u| u.payload)
        .filter(|p| p.len() > 12 && p[0] >> 6 == 2 && p[1] & 0x7f == 0)
        .map(|p| p[12..].to_vec())
        .collect()
}

fn wait_for_text(path: &Path, text: &str, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if std::fs::read_to_string(path).unwrap_or_default().contains(text) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    anyhow::bail!("no {text:?} in {} within {limit:?}", path.display())
}

/// baresip on side b as the carrier with mandatory SDES-SRTP, playing 440 Hz: answering calls at once as
/// `CALLED`, or calling `dial`. Returns it and its directory (its recording is there).
fn carrier_phone(topo: &Topology, dial: Option<&str>) -> (tests::netns::Process, std::path::PathBuf) {
    let carrier_wav = topo.dir().join("carrier.wav");
    write_tone(&carrier_wav, 8000, CARRIER_HZ, 8000.0, CARRIER_SECS as u32 + 5).expect("carrier tone");
    let phone = Phone {
        name: "carrier".into(),
        ip: CARRIER_B,
        user: CALLED.into(),
        auto_answer: dial.is_none(),
        rtcp_mux: false,
        source: carrier_wav,
        mediaenc: Some("srtp-mand".into()),
    };
    let (carrier, dir) = phone.spawn(topo, Host::B, CARRIER_SECS, dial).expect("baresip starts");
    topo.wait_udp_listening(Host::B, 5060, Duration::from_secs(10)).expect("baresip listens");
    (carrier, dir)
}

/// Chromium in namespace a with the 1 kHz tone as its microphone, registered over `wss:` as user 1001.
fn registered_browser(topo: &Topology, sbc: &Sbc, spki: String) -> Browser {
    let page_wav = topo.dir().join("tone-1k.wav");
    write_tone(&page_wav, 48_000, PAGE_HZ, 8000.0, 30).expect("the page's tone");
    let opts = BrowserOptions { origin: ORIGIN.into(), wav: Some(page_wav), spki: vec![spki], ..Default::default() };
    let mut b = Browser::launch(&topo.ns(Host::A), &topo.dir().join("browser"), &opts)
        .unwrap_or_else(|e| panic!("Chromium: {e:#}"));
    b.get_user_media().expect("getUserMedia with the fake WAV microphone");
    b.connect(&format!("wss://{SBC_A}:{WSS_PORT}"), &format!("sip:1001@{SBC_A}"), Some(PASSWORD), true)
        .unwrap_or_else(|e| panic!("JsSIP could not connect: {e:#}\n{}\n{}", b.stderr_tail(), sbc.log_tail()));
    let registered = b.first_event(&["registered", "registrationFailed"], Duration::from_secs(20));
    assert_eq!(registered.as_ref().ok().and_then(|e| e["event"].as_str()), Some("registered"), "{registered:?}");
    b
}

/// Polls the page's `getStats()` until 5 s of audio (250 packets of 20 ms) came in with a level above 0, for at
/// most 20 s; the last stats either way. The call lasts that long, so the carrier gets seconds of the tone too.
fn inbound_audio(b: &mut Browser) -> serde_json::Value {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let stats = b.stats().expect("getStats() of the call");
        let packets = stats["inbound"]["packetsReceived"].as_u64().unwrap_or(0);
        let level = stats["inbound"]["audioLevel"].as_f64().unwrap_or(0.0);
        if (packets >= 250 && level > 0.0) || Instant::now() > end {
            return stats;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The SRTP counters of the SBC: (decrypted, encrypted, authentication failures, dropped before the keys).
fn srtp_counters(sbc: &Sbc) -> (f64, f64, f64, f64) {
    let metric = |m: &str| sbc.metric(m).unwrap_or_else(|e| panic!("{m}: {e}"));
    let counters = (
        metric("sbc_media_srtp_unprotected_total"),
        metric("sbc_media_srtp_protected_total"),
        metric("sbc_media_srtp_auth_failures_total"),
        metric("sbc_media_packets_dropped_total{reason=\"srtp_no_keys\"}"),
    );
    eprintln!("srtp: decrypted, encrypted, auth failures, no keys: {counters:?}");
    counters
}

/// baresip's recording of the call (in `dir`) is the page's tone, from its second second on.
fn assert_carrier_heard_the_page(dir: &Path) {
    let heard = read_samples(&received_audio(dir).expect("baresip's recording")).expect("samples");
    let window = heard.get(8000..24000).unwrap_or(&heard);
    let tone = tests::tone::check_tone(window, 8000.0, PAGE_HZ, 0.02)
        .unwrap_or_else(|e| panic!("baresip's recording ({} samples) is not the page's tone: {e:#}", heard.len()));
    eprintln!("baresip heard: {tone:?}");
}

/// The `inline:` keys of the `a=crypto` lines of the SDP bodies `from` sent.
fn inline_keys(sdp: &[(Ipv4Addr, String)], from: Ipv4Addr) -> Vec<String> {
    sdp.iter()
        .filter(|(f, _)| *f == from)
        .flat_map(|(_, s)| s.lines().filter(|l| l.starts_with("a=crypto:")))
        .filter_map(|l| l.split_once("inline:").map(|(_, k)| k.split(['|', ' ']).next().unwrap_or("").to_owned()))
        .collect()
}

#[test]
fn chromium_calls_a_carrier_that_requires_sdes_srtp_and_the_tones_cross_dtls_srtp_to_sdes_srtp_and_back() {
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let topo = Topology::single_sbc().expect("topology");
    let (sbc, spki) = start_sbc(&topo);
    let capture = Capture::start(&topo, Host::B, "eth0", "carrier", Duration::from_secs(60)).expect("capture at b");
    let (mut carrier, carrier_dir) = carrier_phone(&topo, None);
    let mut b = registered_browser(&topo, &sbc, spki);

    b.call(&format!("sip:{CALLED}@{SBC_A}")).expect("the page starts a call");
    let outcome = b.first_event(&["confirmed", "failed"], Duration::from_secs(40));
    assert_eq!(
        outcome.as_ref().ok().and_then(|e| e["event"].as_str()),
        Some("confirmed"),
        "the call is confirmed in the browser: {outcome:?}\ncarrier:\n{}\nSBC log:\n{}",
        carrier.output_tail(),
        sbc.log_tail()
    );

    let stats = inbound_audio(&mut b);
    eprintln!("page stats: {stats}");
    b.hangup().expect("the page hangs up");
    let ended = b.first_event(&["ended"], Duration::from_secs(10));
    assert!(ended.is_ok(), "the call ends in the page: {ended:?}");
    wait_for_text(&carrier.stdout, "terminated", Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", carrier.output_tail(), sbc.log_tail()));
    carrier.terminate(Duration::from_secs(5)).expect("baresip stops");
    let (unprotected, protected, auth_failures, _) = srtp_counters(&sbc);
    b.close().expect("the browser closes");

    // Side b: RTP/SAVP with the SBC's keys and nothing of WebRTC in the INVITE; baresip answered with a key.
    let frames = capture.finish().expect("the capture");
    let sdp = sdp_bodies(&frames);
    let offer = sdp.iter().find(|(from, _)| *from == SBC_B).map(|(_, s)| s.clone()).unwrap_or_default();
    assert!(offer.contains("RTP/SAVP") && offer.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80"), "{offer}");
    for webrtc in ["fingerprint", "ice-", "UDP/TLS", "a=setup", "candidate"] {
        assert!(!offer.contains(webrtc), "{webrtc} in the carrier's offer:\n{offer}");
    }
    assert!(
        sdp.iter().any(|(from, s)| *from == CARRIER_B && s.contains("a=crypto")),
        "baresip's keyed answer: {sdp:?}"
    );

    // What the relay sent the carrier is SRTP: its payloads read as PCMU are no tone. Noise has a dominant
    // frequency too, within 2 % of the tone about once in a hundred: of three 1 s windows, clear audio reads as the
    // tone in all three, encrypted audio in two or more about three times in ten thousand.
    let to_carrier = pcmu_to_carrier(&frames);
    eprintln!("the relay sent the carrier {} PCMU-typed packets", to_carrier.len());
    assert!(to_carrier.len() >= 200, "media to the carrier: {} packets", to_carrier.len());
    let payloads: Vec<&[u8]> = to_carrier.iter().skip(50).map(Vec::as_slice).collect();
    let on_the_wire = tests::tone::decode_g711(&payloads, 0).expect("bytes as PCMU");
    let readable =
        on_the_wire.chunks_exact(8000).take(3).filter(|w| tests::tone::check_tone(w, 8000.0, PAGE_HZ, 0.02).is_ok());
    let readable = readable.count();
    assert!(readable < 2, "the page's tone is readable in {readable} of 3 s on the wire to the carrier: not encrypted");

    // baresip decrypted it: its recording is the page's tone.
    assert_carrier_heard_the_page(&carrier_dir);

    // The carrier's audio reached the page, and every SRTP packet authenticated on both legs.
    let packets = stats["inbound"]["packetsReceived"].as_u64().unwrap_or(0);
    let level = stats["inbound"]["audioLevel"].as_f64().unwrap_or(0.0);
    assert!(packets >= 250 && level > 0.0, "audio from the carrier reaches the browser: {stats}");
    assert_eq!(auth_failures, 0.0, "no SRTP authentication failure");
    assert!(unprotected >= 300.0 && protected >= 300.0, "SRTP both ways: {unprotected} / {protected}");
}

#[test]
fn a_carrier_that_requires_sdes_srtp_calls_the_registered_chromium_user_and_media_crosses_both_ways() {
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let topo = Topology::single_sbc().expect("topology");
    let (sbc, spki) = start_sbc(&topo);
    let capture = Capture::start(&topo, Host::B, "eth0", "carrier", Duration::from_secs(60)).expect("capture at b");
    let mut b = registered_browser(&topo, &sbc, spki);
    let (mut carrier, carrier_dir) = carrier_phone(&topo, Some(&format!("sip:1001@{SBC_B}")));

    let incoming = b.event("newRTCSession", Duration::from_secs(20));
    assert!(
        incoming.as_ref().is_ok_and(|e| e["originator"] == "remote"),
        "the carrier's call reaches the page: {incoming:?}\ncarrier:\n{}\n{}",
        carrier.output_tail(),
        sbc.log_tail()
    );
    b.answer().expect("the page answers");
    let outcome = b.first_event(&["confirmed", "failed"], Duration::from_secs(30));
    assert_eq!(
        outcome.as_ref().ok().and_then(|e| e["event"].as_str()),
        Some("confirmed"),
        "the call is confirmed in the browser: {outcome:?}\ncarrier:\n{}\nSBC log:\n{}",
        carrier.output_tail(),
        sbc.log_tail()
    );
    let offer = b.sdp().expect("the page's SDP")["remote"].as_str().unwrap_or_default().to_owned();
    assert!(offer.contains("UDP/TLS/RTP/SAVPF") && offer.contains("a=setup:actpass"), "the SBC's offer:\n{offer}");
    assert!(!offer.contains("a=crypto"), "no SDES key towards the browser:\n{offer}");

    let stats = inbound_audio(&mut b);
    eprintln!("page stats: {stats}");
    b.hangup().expect("the page hangs up");
    let ended = b.first_event(&["ended"], Duration::from_secs(10));
    assert!(ended.is_ok(), "the call ends in the page: {ended:?}");
    wait_for_text(&carrier.stdout, "terminated", Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", carrier.output_tail(), sbc.log_tail()));
    carrier.terminate(Duration::from_secs(5)).expect("baresip stops");
    let (unprotected, protected, auth_failures, _) = srtp_counters(&sbc);
    b.close().expect("the browser closes");

    // Side b: the carrier's keyed offer was answered RTP/SAVP with one key, of the SBC's own.
    let sdp = sdp_bodies(&capture.finish().expect("the capture"));
    let (theirs, ours) = (inline_keys(&sdp, CARRIER_B), inline_keys(&sdp, SBC_B));
    eprintln!("side b: the carrier's keys {theirs:?}, the SBC's {ours:?}");
    let answer = sdp.iter().find(|(from, _)| *from == SBC_B).map(|(_, s)| s.clone()).unwrap_or_default();
    assert!(answer.contains("RTP/SAVP") && !answer.contains("fingerprint"), "the SBC's answer:\n{answer}");
    assert!(!theirs.is_empty() && !ours.is_empty(), "keys both ways at side b: {sdp:?}");
    assert!(ours.iter().all(|k| !theirs.contains(k)), "the SBC answered with a key of its own");

    assert_carrier_heard_the_page(&carrier_dir);
    let packets = stats["inbound"]["packetsReceived"].as_u64().unwrap_or(0);
    let level = stats["inbound"]["audioLevel"].as_f64().unwrap_or(0.0);
    assert!(packets >= 250 && level > 0.0, "audio from the carrier reaches the browser: {stats}");
    assert_eq!(auth_failures, 0.0, "no SRTP authentication failure");
    assert!(unprotected >= 300.0 && protected >= 300.0, "SRTP both ways: {unprotected} / {protected}");
}
