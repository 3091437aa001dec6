//! Issue 18's browser acceptance: real browsers call through the SBC with WebRTC media. Headless Chromium with
//! JsSIP 3.13 (tests/src/browser.rs) in namespace a registers over `wss:` as a user of `[registrar]`; its
//! microphone is a 1 kHz WAV tone. SIPp carriers in namespace b speak plain RTP/AVP PCMA and play SIPp's own speech
//! recording (`uas_answer_play_pcma.xml`, `uac_call_play_pcma.xml`). The relay terminates each browser's
//! ICE-lite/DTLS-SRTP leg and bridges it to RTP or to the other browser's leg (docs/webrtc-media.md).
//!
//! - a browser calls the carrier: confirmed in the page; the RTP the carrier received decodes to the page's tone
//!   (dominant frequency within 2%, from a capture at b); the carrier's audio reaches the page (`getStats()`:
//!   inbound packetsReceived and audioLevel > 0); the page hangs up: the carrier gets its BYE, a CDR is written;
//! - the carrier calls the registered browser user: the page answers, media both ways, the carrier's BYE ends it;
//! - two registered browser users call each other: media both ways, one CDR;
//! - a browser closed mid-call (its WebSocket closes), a browser whose media dies without a BYE (its peer
//!   connection closed, DTLS close_notify) and a browser that vanishes from the network (route blackholed: only
//!   ICE consent freshness can tell): each time the carrier gets a BYE within 35 s and a CDR is written (for
//!   the vanished browser within 5 s of the carrier's BYE, not after the browser's BYE times out).

use std::net::{SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};
use tests::browser::{spki_hash, Browser, BrowserOptions};
use tests::capture::{udp, Capture};
use tests::netns::{addr, Host, Topology, CARRIER_B, SBC_A, SBC_B};
use tests::sipp::Sipp;
use tests::tls::TestCa;
use tests::Sbc;

const WSS_PORT: u16 = 5063;
const API: &str = "127.0.0.1:8080";
const ORIGIN: &str = "https://phone.example.test";
const TONE_HZ: f64 = 1000.0;
const PASSWORD: &str = "browser-secret-1001";
const PASSWORD_1002: &str = "browser-secret-1002";
const CARRIER_MEDIA_PORT: u16 = 6000;

struct Rig {
    topo: Topology,
    sbc: Sbc,
    spki: String,
    cdr: std::path::PathBuf,
    /// Held for the whole test (dropped last): one Chromium call at a time, since six browsers started at once on
    /// a 2-core machine miss their deadlines.
    _serial: std::sync::MutexGuard<'static, ()>,
}

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The SBC with `wss:` on side a (the page's origin allowed), UDP on side b, media anchored on both sides (XDP
/// off: WebRTC flows never go to the kernel), user 1001 registering, every other number to carrier b.
fn rig(name: &str) -> Rig {
    let serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let topo = Topology::single_sbc().expect("topology");
    let authority = TestCa::new("sbc browser call test CA").expect("CA");
    let leaf = authority.issue("sbc.example.test", &["sbc.example.test"], &[SBC_A.into()]).expect("certificate");
    let pem = topo.dir().join("sbc.pem");
    std::fs::write(&pem, leaf.combined()).expect("write certificate");
    let password_file = topo.dir().join("users.password");
    std::fs::write(&password_file, PASSWORD).expect("password file");
    let password_file_2 = topo.dir().join("user-1002.password");
    std::fs::write(&password_file_2, PASSWORD_1002).expect("password file");
    let cdr = topo.dir().join("cdr.jsonl");
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

[cdr]
path = "{cdr}"

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

[[registrar.user]]
name = "1002"
password_file = "{pw2}"
"#,
        pem = pem.display(),
        cdr = cdr.display(),
        pw = password_file.display(),
        pw2 = password_file_2.display(),
    );
    let api: SocketAddr = API.parse().expect("api");
    let sbc = Sbc::start_in(&topo.ns(Host::Sbc), name, &config, addr(SBC_A, WSS_PORT), api).expect("sbc");
    let spki = spki_hash(&leaf.key).expect("SPKI hash of the SBC certificate");
    Rig { topo, sbc, spki, cdr, _serial: serial }
}

impl Rig {
    /// Chromium in namespace a with the test page, the 1 kHz tone as its microphone, its profile and files in `name`
    /// under the topology's directory.
    fn browser_in(&self, name: &str) -> Browser {
        let wav = self.topo.dir().join("tone-1k.wav");
        tests::baresip::write_tone(&wav, 48_000, TONE_HZ, 8000.0, 30).expect("write the tone");
        let opts = BrowserOptions {
            origin: ORIGIN.into(),
            wav: Some(wav),
            spki: vec![self.spki.clone()],
            ..Default::default()
        };
        let dir = self.topo.dir().join(name);
        Browser::launch(&self.topo.ns(Host::A), &dir, &opts).unwrap_or_else(|e| panic!("Chromium: {e:#}"))
    }

    /// A browser registered over `wss:` as user 1001.
    fn registered_browser(&self) -> Browser {
        self.registered_as("1001", PASSWORD, 1.0)
    }

    /// A browser registered as `user`, the `bindings`-th binding held.
    fn registered_as(&self, user: &str, password: &str, bindings: f64) -> Browser {
        let mut b = self.browser_in(&format!("browser-{user}"));
        eprintln!("browser: {}", b.version);
        b.get_user_media().expect("getUserMedia with the fake WAV microphone");
        let uri = format!("sip:{user}@{SBC_A}");
        b.connect(&format!("wss://{SBC_A}:{WSS_PORT}"), &uri, Some(password), true)
            .unwrap_or_else(|e| panic!("JsSIP could not connect: {e:#}\n{}\n{}", b.stderr_tail(), self.sbc.log_tail()));
        let registered = b.first_event(&["registered", "registrationFailed"], Duration::from_secs(20));
        assert_eq!(
            registered.as_ref().ok().and_then(|e| e["event"].as_str()),
            Some("registered"),
            "JsSIP registers as {user}: {registered:?}\n{}",
            self.sbc.log_tail()
        );
        assert_eq!(self.metric("sbc_registrar_bindings"), bindings, "the browser's binding is held");
        b
    }

    fn metric(&self, prefix: &str) -> f64 {
        self.sbc.metric(prefix).expect("metrics")
    }
}

/// Polls the page's `getStats()` until 3 s of audio (150 packets of 20 ms) came in and its level is above 0, for at
/// most `limit`; the last stats either way. The call lasts that long, so the carrier gets seconds of the tone too.
fn inbound_audio(b: &mut Browser, limit: Duration) -> serde_json::Value {
    let end = Instant::now() + limit;
    loop {
        let stats = b.stats().expect("getStats() of the call");
        let inbound = &stats["inbound"];
        let packets = inbound["packetsReceived"].as_u64().unwrap_or(0);
        let level = inbound["audioLevel"].as_f64().unwrap_or(0.0);
        if (packets >= 150 && level > 0.0) || Instant::now() > end {
            return stats;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The PCMA RTP the relay sent the carrier (from side b to the carrier's media port), as the capture at b saw it:
/// how many packets, and the tone check of their audio after its first second (the fake microphone starting).
fn tone_at_carrier(capture: Capture) -> (usize, tests::tone::ToneCheck) {
    let frames = capture.finish().expect("the capture");
    let carrier_media = SocketAddrV4::new(CARRIER_B, CARRIER_MEDIA_PORT);
    let payloads: Vec<&[u8]> = frames
        .iter()
        .filter_map(|f| udp(f))
        .filter(|d| d.dst == carrier_media && *d.src.ip() == SBC_B && d.payload.len() > 12)
        .filter(|d| d.payload[0] >> 6 == 2 && d.payload[1] & 0x7f == 8)
        .map(|d| &d.payload[12..])
        .collect();
    assert!(payloads.len() > 100, "RTP packets at the carrier from the relay: {}", payloads.len());
    let samples = tests::tone::decode_g711(&payloads[50..], 8).expect("PCMA");
    let tone = tests::tone::check_tone(&samples, 8000.0, TONE_HZ, 0.02)
        .unwrap_or_else(|e| panic!("the carrier's audio is not the page's tone: {e:#}"));
    (payloads.len(), tone)
}

#[test]
fn chromium_registered_over_wss_calls_a_sipp_carrier_and_the_tone_crosses_dtls_srtp_to_rtp_and_back() {
    let r = rig("browser-call-out");
    let capture = Capture::start(&r.topo, Host::B, "eth0", "carrier", Duration::from_secs(90)).expect("capture at b");
    let mut carrier = Sipp::new("uas_answer_play_pcma.xml")
        .netns(&r.topo.ns(Host::B))
        .local_ip(CARRIER_B)
        .local_port(5060)
        .media_port(CARRIER_MEDIA_PORT)
        .calls(1)
        .limit(Duration::from_secs(90))
        .trace_messages(true)
        .spawn()
        .expect("carrier starts");
    carrier.wait_listening(Some(&r.topo.ns(Host::B)), 5060, Duration::from_secs(10)).expect("carrier listens");

    let mut b = r.registered_browser();

    b.call(&format!("sip:+4930123456@{SBC_A}")).expect("the page starts a call");
    let outcome = b.first_event(&["confirmed", "failed"], Duration::from_secs(40));
    let confirmed = outcome.as_ref().ok().and_then(|e| e["event"].as_str()) == Some("confirmed");
    assert!(
        confirmed,
        "the call is confirmed in the browser: {outcome:?}\npage SDP: {:?}\ncarrier saw:\n{}\nSBC log:\n{}",
        b.sdp().ok(),
        carrier.messages(),
        r.sbc.log_tail()
    );
    let sdp = b.sdp().expect("the page's SDP");
    let remote = sdp["remote"].as_str().unwrap_or_default().to_owned();
    assert!(remote.contains("a=setup:active") && remote.contains("a=rtcp-mux"), "the SBC's answer:\n{remote}");
    let at_carrier = carrier.messages();
    assert!(!at_carrier.contains("a=fingerprint") && !at_carrier.contains("UDP/TLS"), "plain RTP to the carrier");

    // The carrier's speech reaches the page.
    let stats = inbound_audio(&mut b, Duration::from_secs(20));
    let packets = stats["inbound"]["packetsReceived"].as_u64().unwrap_or(0);
    let level = stats["inbound"]["audioLevel"].as_f64().unwrap_or(0.0);
    let offer_len = sdp["local"].as_str().map_or(0, str::len);
    eprintln!("page stats: {stats}; the page's offer: {offer_len} bytes");

    b.hangup().expect("the page hangs up");
    let ended = b.first_event(&["ended"], Duration::from_secs(10));
    assert!(ended.is_ok(), "the call ends in the page: {ended:?}");
    let run = carrier.wait().expect("the carrier's scenario ends");
    run.assert_all_successful(1).expect("the carrier got its BYE and answered it");
    let cdrs = tests::wait_cdrs(&[r.cdr.as_path()], 1, Duration::from_secs(10));
    assert_eq!(cdrs.len(), 1, "one CDR");
    assert_eq!(cdrs[0]["trunk_in"], "users", "{}", cdrs[0]);
    assert_eq!(cdrs[0]["trunk_out"], "carrier-b", "{}", cdrs[0]);

    // What the carrier received: RTP (PCMA, as it answered) from the relay's side-b address, the page's tone.
    let (packets_at_carrier, tone) = tone_at_carrier(capture);
    eprintln!("carrier received {packets_at_carrier} RTP packets: {tone:?}");
    assert!(packets > 0 && level > 0.0, "audio from the carrier reaches the browser: {stats}\n{}", r.sbc.log_tail());
    b.close().expect("the browser closes");
}

#[test]
fn a_sipp_carrier_calls_the_registered_chromium_user_which_answers_with_media_both_ways() {
    let r = rig("browser-call-in");
    let capture = Capture::start(&r.topo, Host::B, "eth0", "carrier", Duration::from_secs(90)).expect("capture at b");
    let mut b = r.registered_browser();
    let carrier = Sipp::new("uac_call_play_pcma.xml")
        .netns(&r.topo.ns(Host::B))
        .local_ip(CARRIER_B)
        .local_port(5061)
        .media_port(CARRIER_MEDIA_PORT)
        .target(addr(SBC_B, 5060))
        .service("1001")
        .pause(Duration::from_secs(8))
        .limit(Duration::from_secs(60))
        .trace_messages(true)
        .spawn()
        .expect("carrier starts");
    let incoming = b.event("newRTCSession", Duration::from_secs(20));
    assert!(
        incoming.as_ref().is_ok_and(|e| e["originator"] == "remote"),
        "the carrier's call reaches the page: {incoming:?}\ncarrier saw:\n{}\n{}",
        carrier.messages(),
        r.sbc.log_tail()
    );
    b.answer().expect("the page answers");
    let outcome = b.first_event(&["confirmed", "failed"], Duration::from_secs(30));
    assert!(
        outcome.as_ref().ok().and_then(|e| e["event"].as_str()) == Some("confirmed"),
        "the call is confirmed in the browser: {outcome:?}\npage SDP: {:?}\ncarrier saw:\n{}\n{}",
        b.sdp().ok(),
        carrier.messages(),
        r.sbc.log_tail()
    );
    let sdp = b.sdp().expect("the page's SDP");
    let offer = sdp["remote"].as_str().unwrap_or_default().to_owned();
    assert!(offer.contains("a=setup:actpass") && offer.contains("a=ice-lite"), "the SBC's offer:\n{offer}");
    let stats = inbound_audio(&mut b, Duration::from_secs(20));
    let packets = stats["inbound"]["packetsReceived"].as_u64().unwrap_or(0);
    let level = stats["inbound"]["audioLevel"].as_f64().unwrap_or(0.0);
    eprintln!("page stats: {stats}");
    // The carrier hangs up after its hold time: the page's call ends.
    let ended = b.first_event(&["ended"], Duration::from_secs(20));
    assert!(ended.is_ok(), "the carrier's BYE ends the call in the page: {ended:?}");
    carrier.wait().expect("the carrier's scenario ends").assert_all_successful(1).expect("the call completes");
    let cdrs = tests::wait_cdrs(&[r.cdr.as_path()], 1, Duration::from_secs(10));
    assert_eq!(cdrs.len(), 1, "one CDR");
    assert_eq!((cdrs[0]["trunk_in"].as_str(), cdrs[0]["trunk_out"].as_str()), (Some("carrier-b"), Some("users")));
    let (packets_at_carrier, tone) = tone_at_carrier(capture);
    eprintln!("carrier received {packets_at_carrier} RTP packets: {tone:?}");
    assert!(packets >= 150 && level > 0.0, "audio from the carrier reaches the browser: {stats}\n{}", r.sbc.log_tail());
    b.close().expect("the browser closes");
}

#[test]
fn a_browser_closed_mid_call_gets_the_carrier_a_bye_within_30_s_and_a_cdr() {
    let r = rig("browser-call-closed");
    let mut carrier = Sipp::new("uas_answer_play_pcma.xml")
        .netns(&r.topo.ns(Host::B))
        .local_ip(CARRIER_B)
        .local_port(5060)
        .media_port(CARRIER_MEDIA_PORT)
        .calls(1)
        .limit(Duration::from_secs(90))
        .trace_messages(true)
        .spawn()
        .expect("carrier starts");
    carrier.wait_listening(Some(&r.topo.ns(Host::B)), 5060, Duration::from_secs(10)).expect("carrier listens");
    let mut b = r.registered_browser();
    b.call(&format!("sip:+4930123456@{SBC_A}")).expect("the page starts a call");
    let outcome = b.first_event(&["confirmed", "failed"], Duration::from_secs(40));
    assert!(
        outcome.as_ref().ok().and_then(|e| e["event"].as_str()) == Some("confirmed"),
        "the call is confirmed in the browser: {outcome:?}\n{}",
        r.sbc.log_tail()
    );
    let stats = inbound_audio(&mut b, Duration::from_secs(20));
    assert!(stats["inbound"]["packetsReceived"].as_u64().unwrap_or(0) > 0, "media flows before the close: {stats}");
    // The tab goes away without hanging up (Chromium and its page end).
    let closed = Instant::now();
    b.close().expect("the browser closes");
    let run = carrier.wait().expect("the carrier's scenario ends");
    let after = closed.elapsed();
    run.assert_all_successful(1).expect("the carrier got a BYE and answered it");
    assert!(after < Duration::from_secs(30), "the BYE came {after:?} after the browser closed");
    let cdrs = tests::wait_cdrs(&[r.cdr.as_path()], 1, Duration::from_secs(10));
    assert_eq!(cdrs.len(), 1, "one CDR");
    eprintln!("BYE at the carrier {after:?} after the close; CDR: {}", cdrs[0]);
    assert_eq!(cdrs[0]["trunk_out"], "carrier-b", "{}", cdrs[0]);
}

#[test]
fn two_registered_chromium_users_call_each_other_with_media_both_ways() {
    let r = rig("browser-call-browser");
    let mut caller = r.registered_as("1001", PASSWORD, 1.0);
    let mut callee = r.registered_as("1002", PASSWORD_1002, 2.0);
    caller.call(&format!("sip:1002@{SBC_A}")).expect("1001 calls 1002");
    let incoming = callee.event("newRTCSession", Duration::from_secs(20));
    assert!(
        incoming.as_ref().is_ok_and(|e| e["originator"] == "remote"),
        "1001's call reaches 1002's page: {incoming:?}\n{}",
        r.sbc.log_tail()
    );
    callee.answer().expect("1002 answers");
    for (name, b) in [("caller", &mut caller), ("callee", &mut callee)] {
        let outcome = b.first_event(&["confirmed", "failed"], Duration::from_secs(30));
        assert!(
            outcome.as_ref().ok().and_then(|e| e["event"].as_str()) == Some("confirmed"),
            "the call is confirmed at the {name}: {outcome:?}\npage SDP: {:?}\n{}",
            b.sdp().ok(),
            r.sbc.log_tail()
        );
    }
    for (name, b) in [("caller", &mut caller), ("callee", &mut callee)] {
        let stats = inbound_audio(b, Duration::from_secs(20));
        eprintln!("{name} stats: {stats}");
        let packets = stats["inbound"]["packetsReceived"].as_u64().unwrap_or(0);
        let level = stats["inbound"]["audioLevel"].as_f64().unwrap_or(0.0);
        assert!(packets >= 150 && level > 0.0, "audio reaches the {name}: {stats}\n{}", r.sbc.log_tail());
    }
    caller.hangup().expect("1001 hangs up");
    let ended = callee.first_event(&["ended"], Duration::from_secs(10));
    assert!(ended.is_ok(), "the BYE reaches 1002's page: {ended:?}");
    let cdrs = tests::wait_cdrs(&[r.cdr.as_path()], 1, Duration::from_secs(10));
    assert_eq!(cdrs.len(), 1, "one CDR");
    assert_eq!((cdrs[0]["trunk_in"].as_str(), cdrs[0]["trunk_out"].as_str()), (Some("users"), Some("users")));
    caller.close().expect("the caller's browser closes");
    callee.close().expect("the callee's browser closes");
}

#[test]
fn a_browser_whose_media_dies_without_a_bye_gets_its_call_ended_on_both_legs_with_a_cdr() {
    let r = rig("browser-call-media-dies");
    let mut carrier = Sipp::new("uas_answer_play_pcma.xml")
        .netns(&r.topo.ns(Host::B))
        .local_ip(CARRIER_B)
        .local_port(5060)
        .media_port(CARRIER_MEDIA_PORT)
        .calls(1)
        .limit(Duration::from_secs(90))
        .trace_messages(true)
        .spawn()
        .expect("carrier starts");
    carrier.wait_listening(Some(&r.topo.ns(Host::B)), 5060, Duration::from_secs(10)).expect("carrier listens");
    let mut b = r.registered_browser();
    b.call(&format!("sip:+4930123456@{SBC_A}")).expect("the page starts a call");
    let outcome = b.first_event(&["confirmed", "failed"], Duration::from_secs(40));
    assert!(
        outcome.as_ref().ok().and_then(|e| e["event"].as_str()) == Some("confirmed"),
        "the call is confirmed in the browser: {outcome:?}\n{}",
        r.sbc.log_tail()
    );
    let stats = inbound_audio(&mut b, Duration::from_secs(20));
    assert!(stats["inbound"]["packetsReceived"].as_u64().unwrap_or(0) > 0, "media flows first: {stats}");
    // The page's peer connection closes (DTLS close_notify, then no more consent checks); its WebSocket stays.
    let dropped = Instant::now();
    b.request("dropMedia", serde_json::json!({}), Duration::from_secs(5)).expect("the page closes its media");
    let run = carrier.wait().expect("the carrier's scenario ends");
    let after = dropped.elapsed();
    run.assert_all_successful(1).expect("the carrier got a BYE and answered it");
    assert!(after < Duration::from_secs(30), "the BYE came {after:?} after the media died");
    let cdrs = tests::wait_cdrs(&[r.cdr.as_path()], 1, Duration::from_secs(10));
    assert_eq!(cdrs.len(), 1, "one CDR");
    eprintln!("BYE at the carrier {after:?} after the media died; release cause {}", cdrs[0]["release_cause"]);
    assert_eq!(cdrs[0]["release_cause"], "webrtc_media_ended", "{}", cdrs[0]);
    let ended = b.first_event(&["ended"], Duration::from_secs(10));
    assert!(ended.is_ok(), "the SBC's BYE ends the call in the page too: {ended:?}");
    b.close().expect("the browser closes");
}

#[test]
fn a_browser_that_vanishes_from_the_network_loses_consent_and_its_call_ends_within_35_s() {
    let r = rig("browser-call-vanishes");
    let mut carrier = Sipp::new("uas_answer_play_pcma.xml")
        .netns(&r.topo.ns(Host::B))
        .local_ip(CARRIER_B)
        .local_port(5060)
        .media_port(CARRIER_MEDIA_PORT)
        .calls(1)
        .limit(Duration::from_secs(120))
        .trace_messages(true)
        .spawn()
        .expect("carrier starts");
    carrier.wait_listening(Some(&r.topo.ns(Host::B)), 5060, Duration::from_secs(10)).expect("carrier listens");
    let mut b = r.registered_browser();
    b.call(&format!("sip:+4930123456@{SBC_A}")).expect("the page starts a call");
    let outcome = b.first_event(&["confirmed", "failed"], Duration::from_secs(40));
    assert!(
        outcome.as_ref().ok().and_then(|e| e["event"].as_str()) == Some("confirmed"),
        "the call is confirmed in the browser: {outcome:?}\n{}",
        r.sbc.log_tail()
    );
    let stats = inbound_audio(&mut b, Duration::from_secs(20));
    assert!(stats["inbound"]["packetsReceived"].as_u64().unwrap_or(0) > 0, "media flows first: {stats}");
    // The browser's host loses its route to the SBC: no consent checks arrive any more, and the WebSocket stalls
    // without closing (no FIN, no RST): only consent freshness (RFC 7675, 30 s) can tell.
    let ns = r.topo.ns(Host::A);
    let status = std::process::Command::new("ip")
        .args(["-n", &ns, "route", "add", "blackhole", &format!("{SBC_A}/32")])
        .status()
        .expect("ip route");
    assert!(status.success(), "blackhole route to the SBC in {ns}");
    let vanished = Instant::now();
    let run = carrier.wait().expect("the carrier's scenario ends");
    let after = vanished.elapsed();
    run.assert_all_successful(1).expect("the carrier got a BYE and answered it");
    eprintln!("BYE at the carrier {after:?} after the browser vanished");
    // 30 s without an authenticated check, counted from the last one (up to a few seconds before the route went).
    assert!(after < Duration::from_secs(35), "the BYE came {after:?} after the browser vanished");
    // Written as soon as the carrier answered its BYE: not 32 s later when the BYE towards the vanished browser
    // gives up (docs/sip-websocket.md, "When a leg is gone").
    let cdrs = tests::wait_cdrs(&[r.cdr.as_path()], 1, Duration::from_secs(5));
    let cdr_after = vanished.elapsed();
    eprintln!("CDR {cdr_after:?} after the browser vanished ({:?} after the carrier's BYE)", cdr_after - after);
    assert_eq!(cdrs.len(), 1, "one CDR within 5 s of the carrier's BYE, not after the browser's BYE times out");
    assert_eq!(cdrs[0]["release_cause"], "webrtc_media_ended", "{}", cdrs[0]);
    drop(b);
}
