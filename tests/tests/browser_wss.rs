//! A real browser through the SBC's `wss:` listener: headless Chromium (Debian `chromium`, driven by
//! puppeteer-core, tests/src/browser.rs) in namespace a loads a page of origin `https://phone.example.test`
//! with JsSIP 3.13, its microphone a 1 kHz WAV tone written by the test.
//!
//! - the page gets an audio track from the fake microphone; JsSIP upgrades over `wss:` to 198.18.1.1 (the SBC's
//!   test certificate trusted by its SPKI hash) and its OPTIONS is answered 200 by the SBC, counted as one `wss`
//!   upgrade and one OPTIONS; then a call towards a SIPp carrier is attempted and its outcome printed, not
//!   asserted: this SBC anchors no media, so the browser's SAVPF offer reaches the carrier as it is (calls with
//!   WebRTC media through the relay: tests/tests/browser_call.rs);
//! - a page from an origin not in `[sip.ws] allowed_origins` is refused at the upgrade, counted by reason; the
//!   browser dropped without closing (a failing test) leaves no Chromium process behind.

use std::net::SocketAddr;
use std::time::Duration;
use tests::browser::{processes_naming, spki_hash, Browser, BrowserOptions};
use tests::netns::{addr, Host, Topology, CALLER, CARRIER_B, SBC_A, SBC_B};
use tests::sipp::Sipp;
use tests::tls::TestCa;
use tests::Sbc;

const WSS_PORT: u16 = 5063;
const API: &str = "127.0.0.1:8080";
const ORIGIN: &str = "https://phone.example.test";
const TONE_HZ: f64 = 1000.0;

struct Rig {
    topo: Topology,
    sbc: Sbc,
    spki: String,
}

/// The SBC with a `wss:` listener on side a allowing the test page's origin, UDP on side b, the browser's address
/// as the customer trunk and every number to carrier b.
fn rig(name: &str) -> Rig {
    let topo = Topology::single_sbc().expect("topology");
    let authority = TestCa::new("sbc browser test CA").expect("CA");
    let leaf = authority.issue("sbc.example.test", &["sbc.example.test"], &[SBC_A.into()]).expect("certificate");
    let pem = topo.dir().join("sbc.pem");
    std::fs::write(&pem, leaf.combined()).expect("write certificate");
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

[[trunk]]
name = "webphones"
match = {{ source = ["{CALLER}/32"] }}

[[trunk]]
name = "carrier-b"
gateways = ["udp:{CARRIER_B}:5060"]

[[route]]
prefix = ""
to = [{{ trunk = "carrier-b", priority = 1 }}]
"#,
        pem = pem.display(),
    );
    let api: SocketAddr = API.parse().expect("api");
    let sbc = Sbc::start_in(&topo.ns(Host::Sbc), name, &config, addr(SBC_A, WSS_PORT), api).expect("sbc");
    let spki = spki_hash(&leaf.key).expect("SPKI hash of the SBC certificate");
    Rig { topo, sbc, spki }
}

impl Rig {
    /// Chromium in namespace a with the test page of `origin`, the 1 kHz tone as its microphone.
    fn browser(&self, origin: &str) -> Browser {
        let wav = self.topo.dir().join("tone-1k.wav");
        tests::baresip::write_tone(&wav, 48_000, TONE_HZ, 8000.0, 5).expect("write the tone");
        let opts = BrowserOptions {
            origin: origin.into(),
            wav: Some(wav),
            spki: vec![self.spki.clone()],
            ..Default::default()
        };
        let dir = self.topo.dir().join("browser");
        Browser::launch(&self.topo.ns(Host::A), &dir, &opts).unwrap_or_else(|e| panic!("Chromium: {e:#}"))
    }

    fn metric(&self, prefix: &str) -> f64 {
        self.sbc.metric(prefix).expect("metrics")
    }
}

fn wss_url() -> String {
    format!("wss://{SBC_A}:{WSS_PORT}")
}

#[test]
fn chromium_with_jssip_gets_the_fake_microphone_and_its_options_over_wss_are_answered_200() {
    let r = rig("browser-wss-options");
    let mut b = r.browser(ORIGIN);
    eprintln!("browser: {}", b.version);

    let tracks = b.get_user_media().expect("getUserMedia with the fake WAV microphone");
    let tracks = tracks.as_array().expect("a list of tracks");
    assert_eq!(tracks.len(), 1, "one audio track from the fake microphone: {tracks:?}");
    assert_eq!((tracks[0]["kind"].as_str(), tracks[0]["state"].as_str()), (Some("audio"), Some("live")));

    if let Err(e) = b.connect(&wss_url(), "sip:webphone@sbc.example.test", None, false) {
        panic!(
            "JsSIP in Chromium could not open {}: {e:#}\nupgrades refused by reason: origin {}, no_sip_protocol {}; \
             a TLS failure (certificate not trusted by its SPKI hash) shows in the browser's stderr\n{}\n{}",
            wss_url(),
            r.metric("sbc_ws_upgrades_refused_total{reason=\"origin\"}"),
            r.metric("sbc_ws_upgrades_refused_total{reason=\"no_sip_protocol\"}"),
            b.stderr_tail(),
            r.sbc.log_tail()
        );
    }
    let answer = b.options(&format!("sip:{SBC_A}:{WSS_PORT};transport=ws")).expect("OPTIONS from the page");
    assert_eq!(answer["status"], 200, "the SBC answers the page's OPTIONS: {answer}\n{}", r.sbc.log_tail());
    assert_eq!(r.metric("sbc_ws_upgrades_total{transport=\"wss\"}"), 1.0, "one upgrade over wss");
    assert_eq!(r.metric("sbc_sip_messages_in_total{kind=\"request\",method=\"OPTIONS\""), 1.0);

    // A WebRTC call towards the carrier: recorded, not asserted (no [media] here: see browser_call.rs).
    let carrier = Sipp::new("uas_answer.xml")
        .netns(&r.topo.ns(Host::B))
        .local_ip(CARRIER_B)
        .local_port(5060)
        .calls(1)
        .limit(Duration::from_secs(30))
        .trace_messages(true)
        .spawn()
        .expect("carrier starts");
    r.topo.wait_udp_listening(Host::B, 5060, Duration::from_secs(5)).expect("carrier listens");
    b.call(&format!("sip:+4930123456@{SBC_A}")).expect("the page starts a call");
    let outcome = b.first_event(&["confirmed", "failed"], Duration::from_secs(30));
    let invites = r.metric("sbc_sip_messages_in_total{kind=\"request\",method=\"INVITE\"");
    eprintln!("call attempt from Chromium: {outcome:?}; INVITEs in at the SBC: {invites}");
    if let Ok(sdp) = b.sdp() {
        eprintln!("page's offer: {} bytes", sdp["local"].as_str().map_or(0, str::len));
    }
    let at_carrier = carrier.messages();
    let seen: Vec<&str> = at_carrier
        .lines()
        .filter(|l| {
            l.starts_with("INVITE ") || l.starts_with("SIP/2.0 ") || l.starts_with("m=") || l.starts_with("BYE ")
        })
        .collect();
    eprintln!("carrier saw: {seen:?}");
    let _ = b.hangup();
    // Killed on purpose: its files go too.
    let sipp_dir = carrier.dir().to_owned();
    drop(carrier);
    let _ = std::fs::remove_dir_all(sipp_dir);
    b.close().expect("the browser closes");
}

#[test]
fn a_page_from_an_origin_not_allowed_is_refused_at_the_wss_upgrade() {
    let r = rig("browser-wss-origin");
    let mut b = r.browser("https://elsewhere.example.test");
    let refused = b.connect(&wss_url(), "sip:webphone@sbc.example.test", None, false);
    assert!(refused.is_err(), "an origin not allowed must not connect");
    assert_eq!(r.metric("sbc_ws_upgrades_refused_total{reason=\"origin\"}"), 1.0, "{}", r.sbc.log_tail());
    assert_eq!(r.metric("sbc_ws_upgrades_total{transport=\"wss\"}"), 0.0);
    // Dropped without close, as when a test fails: Node and every Chromium process go with it.
    let profile = b.profile.display().to_string();
    assert!(!processes_naming(&profile).is_empty(), "Chromium runs with {profile}");
    drop(b);
    let end = std::time::Instant::now() + Duration::from_secs(5);
    while !processes_naming(&profile).is_empty() && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(processes_naming(&profile), Vec::<u32>::new(), "processes left after drop");
}
