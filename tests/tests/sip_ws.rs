//! SIP over WebSocket (RFC 7118) in the single-SBC topology: a WebSocket SIP client in namespace a (198.18.1.10),
//! speaking as a browser softphone does (`.invalid` Via and Contact host, `Origin`, the `sip` subprotocol, plain
//! RTP/AVP SDP for now: WebRTC media is another piece), calls SIPp answering on carrier b over UDP through the
//! SBC's `ws:` and `wss:` listeners on 198.18.1.1.
//!
//! - answers and in-dialog requests go back over the client's connection; the carrier's BYE reaches the client
//!   over it, addressed to its `.invalid` Contact;
//! - over `wss:` (the `[sip.tls]` certificate, from a test CA) the client hangs up with its own BYE;
//! - a WebSocket closed mid-call ends the call: BYE to the carrier, CDR `connection_closed` by leg a;
//! - a double-CRLF keep-alive in a WebSocket message gets its CRLF pong; a client's close frame is answered with a
//!   close frame, then (over `wss:`) a TLS close_notify and the end of the TCP stream;
//! - upgrades without the `sip` subprotocol, or from an Origin not allowed, are refused and counted; an oversized
//!   message closes the connection with 1009 and is counted; connections over the per-source limit are reset and
//!   a connection that never upgrades is closed at the first-message deadline, both counted.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tests::netns::{addr, Host, Topology, CALLER, CARRIER_B, SBC_A, SBC_B};
use tests::sipp::{Running, Sipp};
use tests::tls::TestCa;
use tests::ws::{CloseAnswer, WsClient, WsOptions};
use tests::Sbc;

const LIMIT: Duration = Duration::from_secs(30);
const WAIT: Duration = Duration::from_secs(10);
const WS_PORT: u16 = 5062;
const WSS_PORT: u16 = 5063;
const API: &str = "127.0.0.1:8080";
const ORIGIN: &str = "https://phone.example.test";

struct Rig {
    topo: Topology,
    sbc: Sbc,
    cdr: PathBuf,
    ca: String,
}

/// The SBC with `ws:` and `wss:` listeners on side a (the Origin of the test page allowed), UDP on side b, the
/// client's address as the customer trunk and every number to carrier b; `sip_keys` go into `[sip]`.
fn rig(name: &str, sip_keys: &str) -> Rig {
    let topo = Topology::single_sbc().expect("topology");
    let authority = TestCa::new("sbc ws test CA").expect("CA");
    let leaf = authority.issue("sbc.example.test", &["sbc.example.test"], &[SBC_A.into()]).expect("certificate");
    let sbc_pem = topo.dir().join("sbc.pem");
    std::fs::write(&sbc_pem, leaf.combined()).expect("write certificate");
    let cdr = topo.dir().join("cdr.jsonl");
    let config = format!(
        r#"[sip]
listen = ["ws:{SBC_A}:{WS_PORT}", "wss:{SBC_A}:{WSS_PORT}", "udp:{SBC_B}:5060"]
tls = {{ cert = "{pem}", key = "{pem}" }}
{sip_keys}

[sip.ws]
allowed_origins = ["{ORIGIN}"]

[api]
listen = "{API}"

[log]
level = "debug"

[cdr]
path = "{cdr}"

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
        pem = sbc_pem.display(),
        cdr = cdr.display(),
    );
    let api: SocketAddr = API.parse().expect("api");
    let sbc = Sbc::start_in(&topo.ns(Host::Sbc), name, &config, addr(SBC_A, WS_PORT), api).expect("sbc");
    Rig { topo, sbc, cdr, ca: authority.pem() }
}

impl Rig {
    /// SIPp on carrier b answering one call with `scenario` (`-d` `hold` for a scenario that hangs up itself).
    fn carrier(&self, scenario: &str, hold: Duration) -> Running {
        let mut r = Sipp::new(scenario)
            .netns(&self.topo.ns(Host::B))
            .local_ip(CARRIER_B)
            .local_port(5060)
            .calls(1)
            .pause(hold)
            .limit(LIMIT)
            .trace_messages(true)
            .spawn()
            .expect("carrier starts");
        self.topo.wait_udp_listening(Host::B, 5060, Duration::from_secs(5)).expect("carrier listens");
        r.try_wait().expect("carrier runs");
        r
    }

    fn browser(&self, secure: bool) -> WsClient {
        let opts = WsOptions {
            tls: secure.then(|| (self.ca.clone(), "sbc.example.test".to_owned())),
            origin: Some(ORIGIN.into()),
            ..WsOptions::default()
        };
        let port = if secure { WSS_PORT } else { WS_PORT };
        let c = WsClient::connect(&self.topo.ns(Host::A), addr(SBC_A, port), &opts).expect("websocket upgrade");
        assert_eq!(c.protocol.as_deref(), Some("sip"), "the answer names the sip subprotocol (RFC 7118 §4)");
        c
    }

    fn metric(&self, prefix: &str) -> f64 {
        self.sbc.metric(prefix).expect("metrics")
    }

    /// The metric once it reached `value`, or as it is after [`WAIT`] (the SBC counts a closing connection just
    /// after the client saw it end).
    fn metric_reaching(&self, prefix: &str, value: f64) -> f64 {
        let deadline = Instant::now() + WAIT;
        while self.metric(prefix) < value && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.metric(prefix)
    }

    fn cdrs(&self, n: usize) -> Vec<serde_json::Value> {
        let found = tests::wait_cdrs(&[Path::new(&self.cdr)], n, WAIT);
        assert_eq!(found.len(), n, "CDRs written: {found:#?}\n{}", self.sbc.log_tail());
        found
    }
}

/// A header's value in a SIP message (full names, as the SBC writes them).
fn header<'a>(msg: &'a str, name: &str) -> &'a str {
    msg.split("\r\n\r\n")
        .next()
        .and_then(|head| {
            head.lines().find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
            })
        })
        .unwrap_or_else(|| panic!("no {name} in\n{msg}"))
}

/// The URI inside a Contact value's angle brackets.
fn contact_uri(msg: &str) -> String {
    let c = header(msg, "Contact");
    c.trim_start_matches('<').split('>').next().unwrap_or(c).to_owned()
}

/// What JsSIP sends for a call: WS(S) Via and Contact on a `.invalid` host.
fn invite(call_id: &str, transport: &str) -> String {
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 {CALLER}\r\ns=-\r\nc=IN IP4 {CALLER}\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    );
    format!(
        "INVITE sip:+4930123456@{SBC_A} SIP/2.0\r\nVia: SIP/2.0/{transport} df7jal23ls0d.invalid;branch=z9hG4bK{call_id}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:+4940111@{SBC_A}>;tag=w{call_id}\r\nTo: <sip:+4930123456@{SBC_A}>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:k3l4m5@df7jal23ls0d.invalid;transport=ws;ob>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

/// An in-dialog request of the client (ACK, BYE) after the 200 `ok`.
fn in_dialog(method: &str, ok: &str, cseq: u32, transport: &str) -> String {
    format!(
        "{method} {} SIP/2.0\r\nVia: SIP/2.0/{transport} df7jal23ls0d.invalid;branch=z9hG4bK{method}{cseq}\r\n\
         Max-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
        contact_uri(ok),
        header(ok, "From"),
        header(ok, "To"),
        header(ok, "Call-ID"),
    )
}

/// Our 200 to a request of the SBC.
fn ok_to(req: &str) -> String {
    let mut out = String::from("SIP/2.0 200 OK\r\n");
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        out.push_str(&format!("{name}: {}\r\n", header(req, name)));
    }
    out + "Content-Length: 0\r\n\r\n"
}

/// Calls through `c`: INVITE, 100, 200 over the WebSocket, ACK. Returns the 200.
fn call(c: &mut WsClient, call_id: &str, transport: &str) -> String {
    let mut seen = Vec::new();
    c.send(&invite(call_id, transport)).expect("INVITE sent");
    c.recv_starting("SIP/2.0 100", WAIT, &mut seen).expect("100 Trying over the websocket");
    let ok = c.recv_starting("SIP/2.0 200", WAIT, &mut seen).expect("200 OK over the websocket");
    assert!(header(&ok, "Via").contains("df7jal23ls0d.invalid"), "our Via comes back: {ok}");
    let port = if transport == "WSS" { WSS_PORT } else { WS_PORT };
    assert_eq!(contact_uri(&ok), format!("sip:{SBC_A}:{port};transport=ws"), "our Contact names the listener");
    c.send(&in_dialog("ACK", &ok, 1, transport)).expect("ACK sent");
    ok
}

#[test]
fn a_websocket_caller_reaches_a_udp_carrier_whose_bye_comes_back_over_the_websocket() {
    let r = rig("ws-carrier-bye", "");
    let carrier = r.carrier("uas_answer_then_bye.xml", Duration::from_secs(1));
    let mut c = r.browser(false);
    call(&mut c, "ws-bye-1", "WS");
    let mut seen = Vec::new();
    let bye = c.recv_starting("BYE ", WAIT, &mut seen).expect("the carrier's BYE reaches the browser");
    assert!(
        bye.starts_with("BYE sip:k3l4m5@df7jal23ls0d.invalid;transport=ws;ob SIP/2.0"),
        "the BYE is addressed to the browser's Contact and still arrives over its connection: {bye}"
    );
    assert!(header(&bye, "Via").starts_with(&format!("SIP/2.0/WS {SBC_A}:{WS_PORT}")), "{bye}");
    c.send(&ok_to(&bye)).expect("200 to the BYE");
    carrier.wait().expect("carrier").assert_all_successful(1).expect("the carrier's call completed");
    let cdr = &r.cdrs(1)[0];
    assert_eq!((cdr["status"].as_u64(), cdr["released_by"].as_str()), (Some(200), Some("b")), "{cdr}");
    assert_eq!(r.metric("sbc_ws_upgrades_total{transport=\"ws\"}"), 1.0);
}

#[test]
fn a_secure_websocket_caller_hangs_up_with_its_own_bye() {
    let r = rig("wss-caller-bye", "");
    let carrier = r.carrier("uas_answer.xml", Duration::ZERO);
    let mut c = r.browser(true);
    let ok = call(&mut c, "wss-bye-1", "WSS");
    std::thread::sleep(Duration::from_millis(300));
    c.send(&in_dialog("BYE", &ok, 2, "WSS")).expect("BYE sent");
    let mut seen = Vec::new();
    let answer = c.recv_starting("SIP/2.0 ", WAIT, &mut seen).expect("an answer to the BYE");
    assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
    assert!(header(&answer, "CSeq").ends_with("BYE"), "{answer}");
    carrier.wait().expect("carrier").assert_all_successful(1).expect("the carrier's call completed");
    let cdr = &r.cdrs(1)[0];
    assert_eq!(cdr["released_by"].as_str(), Some("a"), "{cdr}");
    assert_eq!(r.metric("sbc_ws_upgrades_total{transport=\"wss\"}"), 1.0);
}

#[test]
fn a_websocket_closed_mid_call_sends_a_bye_to_the_carrier_and_writes_a_cdr() {
    let r = rig("ws-vanish", "");
    let carrier = r.carrier("uas_answer.xml", Duration::ZERO);
    let mut c = r.browser(false);
    call(&mut c, "ws-vanish-1", "WS");
    std::thread::sleep(Duration::from_millis(500));
    let gone = Instant::now();
    c.vanish();
    carrier.wait().expect("carrier").assert_all_successful(1).expect("the carrier got a BYE and answered it");
    let cdr = &r.cdrs(1)[0];
    let took = gone.elapsed();
    assert_eq!(
        (cdr["release_cause"].as_str(), cdr["released_by"].as_str()),
        (Some("connection_closed"), Some("a")),
        "{cdr}"
    );
    assert!(took < Duration::from_secs(5), "the call ended {took:?} after the websocket closed");
    eprintln!("websocket closed -> carrier's call done and CDR written: {took:?}");
}

#[test]
fn crlf_keepalives_get_their_pong_and_a_close_frame_is_answered_with_a_close_frame_then_close_notify() {
    let r = rig("ws-close", "");
    for secure in [false, true] {
        let mut c = r.browser(secure);
        c.send("\r\n\r\n").expect("keep-alive ping");
        assert_eq!(c.recv(WAIT).expect("pong"), "\r\n", "RFC 5626 §4.4.1: a single CRLF answers a double one");
        let answer = c.close_handshake(WAIT).expect("closing handshake");
        let clean = CloseAnswer { code: Some(1000), clean_end: true };
        assert_eq!(answer, clean, "secure={secure}: the close frame echoed, then a clean end\n{}", r.sbc.log_tail());
    }
    for transport in ["ws", "wss"] {
        let pongs = format!("sbc_ws_crlf_pongs_total{{transport=\"{transport}\"}}");
        assert_eq!(r.metric(&pongs), 1.0, "{pongs}");
        let clean = format!("sbc_ws_closing_handshakes_total{{transport=\"{transport}\",clean=\"yes\"}}");
        assert_eq!(r.metric_reaching(&clean, 1.0), 1.0, "{clean}");
    }
    assert_eq!(r.metric_reaching("sbc_tcp_connections_closed_total{reason=\"closed_by_peer\"}", 2.0), 2.0);
}

#[test]
fn upgrades_without_the_sip_subprotocol_or_from_a_foreign_origin_are_refused_and_counted() {
    let r = rig("ws-refusals", "");
    let ns = r.topo.ns(Host::A);
    let server = addr(SBC_A, WS_PORT);
    let cases = [
        (WsOptions { protocol: None, origin: Some(ORIGIN.into()), ..WsOptions::default() }, "HTTP 400"),
        (WsOptions { protocol: Some("chat".into()), origin: Some(ORIGIN.into()), ..WsOptions::default() }, "HTTP 400"),
        (WsOptions { origin: Some("https://evil.example".into()), ..WsOptions::default() }, "HTTP 403"),
    ];
    for (opts, status) in &cases {
        let e = WsClient::connect(&ns, server, opts).expect_err("refused");
        assert_eq!(e.to_string(), *status, "{opts:?}");
    }
    // A client without Origin is no browser: the allowlist does not apply.
    WsClient::connect(&ns, server, &WsOptions::default()).expect("no Origin, sip offered: accepted");
    assert_eq!(r.metric("sbc_ws_upgrades_refused_total{reason=\"no_sip_protocol\"}"), 2.0);
    assert_eq!(r.metric("sbc_ws_upgrades_refused_total{reason=\"origin\"}"), 1.0);
    assert_eq!(r.metric("sbc_ws_upgrades_total{transport=\"ws\"}"), 1.0);
}

#[test]
fn an_oversized_message_closes_the_websocket_with_1009_and_is_counted() {
    let r = rig("ws-too-large", "max_message_size = 4096");
    let mut c = r.browser(false);
    let mut big = invite("ws-big-1", "WS");
    big.push_str(&"a=x-filler:0123456789abcdef\r\n".repeat(200));
    assert!(big.len() > 4096);
    c.send(&big).expect("sent");
    assert_eq!(c.closed_by_server(WAIT).expect("closed"), Some(1009), "closed as Message Too Big");
    assert_eq!(r.metric("sbc_ws_messages_too_large_total{transport=\"ws\"}"), 1.0);
    assert_eq!(r.metric("sbc_tcp_connections_closed_total{reason=\"too_large\"}"), 1.0);
    assert_eq!(r.metric("sbc_sip_messages_in_total{kind=\"request\",method=\"INVITE\""), 0.0, "nothing reached SIP");
}

#[test]
fn connections_over_the_per_source_limit_and_silent_ones_are_refused_and_counted() {
    let r = rig("ws-limits", "tcp_max_connections_per_trunk_source = 2\ntcp_first_message_timeout = \"1s\"");
    let ns = r.topo.ns(Host::A);
    let server = addr(SBC_A, WS_PORT);
    // Two that speak SIP (so they are past the first-message deadline), and hold their connections.
    let held: Vec<WsClient> = (0..2)
        .map(|i| {
            let mut c = r.browser(false);
            c.send(&options(&format!("held-{i}"))).expect("OPTIONS sent");
            let answer = c.recv(WAIT).expect("an answer to OPTIONS");
            assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
            c
        })
        .collect();
    let e = WsClient::connect(&ns, server, &WsOptions::default()).expect_err("a third connection is refused");
    assert!(!e.to_string().starts_with("HTTP"), "reset at accept, before any HTTP: {e}");
    assert_eq!(r.metric("sbc_tcp_connections_rejected_total{reason=\"per_source\"}"), 1.0);
    drop(held);
    let deadline = Instant::now() + WAIT;
    while r.metric("sbc_tcp_connections_active") > 0.0 {
        assert!(Instant::now() < deadline, "the closed connections are released");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Connected, never upgraded: closed at the first-message deadline.
    let silent = tests::ws::connect_in(&ns, server).expect("tcp connect");
    let opened = Instant::now();
    silent.set_read_timeout(Some(WAIT)).expect("timeout");
    let n = std::io::Read::read(&mut &silent, &mut [0u8; 64]).unwrap_or(0);
    let took = opened.elapsed();
    assert_eq!(n, 0, "closed without an answer");
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(5), "closed after {took:?}");
    assert_eq!(r.metric("sbc_ws_upgrades_refused_total{reason=\"timeout\"}"), 1.0);
    // Upgraded, then silent: closed at the same deadline, counted with TCP's.
    let mut quiet = WsClient::connect(&ns, server, &WsOptions::default()).expect("upgrade");
    assert_eq!(quiet.closed_by_server(WAIT).expect("closed"), Some(1001), "closed as going away");
    assert_eq!(r.metric("sbc_tcp_connections_closed_total{reason=\"first_message_timeout\"}"), 1.0);
}

/// An OPTIONS outside any dialog, as a phone pings its server.
fn options(call_id: &str) -> String {
    format!(
        "OPTIONS sip:{SBC_A} SIP/2.0\r\nVia: SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bK{call_id}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:webphone@{SBC_A}>;tag={call_id}\r\nTo: <sip:{SBC_A}>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\n\r\n"
    )
}

/// JsSIP 3.13 (the stack of browser softphones) in Node, `ws` as its WebSocket, as a real peer over `wss:`.
#[test]
fn jssip_in_node_sends_options_over_wss_and_every_one_is_answered_200() {
    const COUNT: usize = 3;
    let node = tests::require_tool("node", "nodejs");
    let js = tests::repo_root().join("tests/js");
    assert!(
        js.join("node_modules/jssip/package.json").is_file() && js.join("node_modules/ws/package.json").is_file(),
        "JsSIP and ws are not installed in {}: run `make deps` (npm ci there)",
        js.display()
    );
    let r = rig("ws-jssip", "");
    let ca = r.topo.dir().join("ca.pem");
    std::fs::write(&ca, &r.ca).expect("write CA");
    let out = tests::netns::command(Some(&r.topo.ns(Host::A)), &node)
        .arg(js.join("jssip_options.js"))
        .env("SBC_URL", format!("wss://{SBC_A}:{WSS_PORT}"))
        .env("TARGET", format!("sip:{SBC_A}:{WSS_PORT};transport=ws"))
        .env("COUNT", COUNT.to_string())
        .env("NODE_EXTRA_CA_CERTS", &ca)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stdout.lines().last().unwrap_or_default();
    let result: serde_json::Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("no result line ({e}): stdout {stdout}\nstderr {stderr}\n{}", r.sbc.log_tail()));
    assert!(out.status.success(), "{result}\nstderr {stderr}\n{}", r.sbc.log_tail());
    assert_eq!(result["statuses"], serde_json::json!([200, 200, 200]), "{result}");
    assert_eq!(r.metric("sbc_ws_upgrades_total{transport=\"wss\"}"), 1.0, "the three went over one connection");
    assert_eq!(r.metric("sbc_sip_messages_in_total{kind=\"request\",method=\"OPTIONS\""), COUNT as f64);
}
