//! A user that registers over WSS and is called over its WebSocket, in the single-SBC topology: the SBC has a `wss:`
//! listener on 198.18.1.1 (certificate from a test CA), UDP towards carrier b, and `[registrar]` with user 1001 (its
//! password from a file). The test's WebSocket client in namespace a speaks as JsSIP does (`.invalid` Via host,
//! Contact `<sip:…@….invalid;transport=ws>;+sip.ice;reg-id=1;+sip.instance=…`, plain RTP/AVP SDP: WebRTC media is
//! another piece):
//!
//! - its REGISTER is challenged (401) and accepted with the digest answer; the 200 lists the binding and, as the
//!   REGISTER is an RFC 5626 outbound one, says `Require: outbound` and `Flow-Timer`;
//! - a SIPp carrier calls 1001: the INVITE arrives over that WebSocket with the registered Contact as Request-URI,
//!   the client answers, the ACK and then the carrier's BYE reach it over the same connection;
//! - 1001 calls out over WSS (407 answered) to a SIPp UAS on carrier b and hangs up;
//! - the client closes the WebSocket: the binding is gone (gauge 0) and the next carrier call to 1001 gets 480;
//! - JsSIP in Node (tests/js/jssip_register.js) registers over WSS with its own digest answer: gauge 1, then 0.

use sbc_proto::policy::digest::{Challenge, Client, Secret};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tests::netns::{addr, Host, Topology, CALLER, CARRIER_B, SBC_A, SBC_B};
use tests::sipp::{Running, Sipp};
use tests::tls::TestCa;
use tests::ws::{WsClient, WsOptions};
use tests::Sbc;

const PASSWORD: &str = "u1001-wss-s3cret";
const WSS_PORT: u16 = 5063;
const API: &str = "127.0.0.1:8080";
const ORIGIN: &str = "https://phone.example.test";
const WAIT: Duration = Duration::from_secs(10);
const LIMIT: Duration = Duration::from_secs(30);
/// The browser's made-up host (JsSIP: a random token under `.invalid`, RFC 7118 §5.2).
const HOST: &str = "k8v2rq9x0sft.invalid";
const CONTACT: &str = "sip:a7bq3m1c@k8v2rq9x0sft.invalid;transport=ws";
const INSTANCE: &str = "<urn:uuid:2c5f7d36-4f7e-4b8a-9d3e-1c2b3a4d5e6f>";

struct Rig {
    topo: Topology,
    sbc: Sbc,
    cdr: PathBuf,
    ca: String,
}

fn rig(name: &str) -> Rig {
    let topo = Topology::single_sbc().expect("topology");
    let authority = TestCa::new("sbc wss registrar test CA").expect("CA");
    let leaf = authority.issue("sbc.example.test", &["sbc.example.test"], &[SBC_A.into()]).expect("certificate");
    let sbc_pem = topo.dir().join("sbc.pem");
    std::fs::write(&sbc_pem, leaf.combined()).expect("write certificate");
    let password_file = topo.dir().join("users.password");
    std::fs::write(&password_file, PASSWORD).expect("password file");
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
"#,
        pem = sbc_pem.display(),
        cdr = cdr.display(),
        pw = password_file.display(),
    );
    let api: SocketAddr = API.parse().expect("api");
    let sbc = Sbc::start_in(&topo.ns(Host::Sbc), name, &config, addr(SBC_A, WSS_PORT), api).expect("sbc");
    Rig { topo, sbc, cdr, ca: authority.pem() }
}

impl Rig {
    fn browser(&self) -> WsClient {
        let opts = WsOptions {
            tls: Some((self.ca.clone(), "sbc.example.test".to_owned())),
            origin: Some(ORIGIN.into()),
            ..WsOptions::default()
        };
        let c = WsClient::connect(&self.topo.ns(Host::A), addr(SBC_A, WSS_PORT), &opts).expect("websocket upgrade");
        assert_eq!(c.protocol.as_deref(), Some("sip"), "the answer names the sip subprotocol");
        c
    }

    fn metric(&self, name: &str) -> f64 {
        self.sbc.metric(name).expect("metrics")
    }

    /// Polls a metric until it reads `want` (the driver learns of a closed connection asynchronously).
    fn wait_metric(&self, name: &str, want: f64) {
        let end = Instant::now() + WAIT;
        loop {
            let got = self.metric(name);
            if got == want {
                return;
            }
            assert!(Instant::now() < end, "{name} reads {got}, not {want}, after {WAIT:?}\n{}", self.sbc.log_tail());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A SIPp call from carrier b to `number` (uac_call.xml: hangs up itself after `hold`).
    fn carrier_call(&self, number: &str, hold: Duration) -> Running {
        Sipp::new("uac_call.xml")
            .netns(&self.topo.ns(Host::B))
            .local_ip(CARRIER_B)
            .local_port(5061)
            .target(addr(SBC_B, 5060))
            .service(number)
            .calls(1)
            .pause(hold)
            .limit(LIMIT)
            .trace_messages(true)
            .spawn()
            .expect("the carrier's call starts")
    }

    fn carrier_call_expecting(&self, number: &str, status: u16) {
        let run = Sipp::new("uac_expect_status.xml")
            .netns(&self.topo.ns(Host::B))
            .local_ip(CARRIER_B)
            .local_port(5061)
            .target(addr(SBC_B, 5060))
            .service(number)
            .set("expected", &status.to_string())
            .calls(1)
            .limit(WAIT)
            .trace_messages(true)
            .run()
            .expect("the carrier's call runs");
        run.assert_all_successful(1).unwrap_or_else(|e| panic!("a call to {number} ends with {status}: {e:#}"));
    }

    /// SIPp on carrier b answering one call and waiting for the caller's BYE.
    fn carrier_uas(&self) -> Running {
        let r = Sipp::new("uas_answer.xml")
            .netns(&self.topo.ns(Host::B))
            .local_ip(CARRIER_B)
            .local_port(5060)
            .calls(1)
            .limit(LIMIT)
            .trace_messages(true)
            .spawn()
            .expect("carrier uas starts");
        self.topo.wait_udp_listening(Host::B, 5060, Duration::from_secs(5)).expect("carrier listens");
        r
    }
}

/// A header's value (the first of that name; full names, as the SBC writes them).
fn header<'a>(msg: &'a str, name: &str) -> &'a str {
    try_header(msg, name).unwrap_or_else(|| panic!("no {name} in\n{msg}"))
}

fn try_header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.split("\r\n\r\n").next().and_then(|head| {
        head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
    })
}

/// Every value of a header (Via may repeat).
fn headers<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    let head = msg.split("\r\n\r\n").next().unwrap_or("");
    head.lines()
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
        .collect()
}

fn contact_uri(msg: &str) -> String {
    let c = header(msg, "Contact");
    c.trim_start_matches('<').split('>').next().unwrap_or(c).to_owned()
}

fn status(msg: &str) -> u16 {
    msg.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not a response:\n{msg}"))
}

/// A REGISTER as JsSIP 3.13 sends it over WSS; `auth` is the Authorization line of the second round.
fn register(cseq: u32, expires: u32, auth: Option<&str>) -> String {
    let auth = auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    format!(
        "REGISTER sip:{SBC_A} SIP/2.0\r\nVia: SIP/2.0/WSS {HOST};branch=z9hG4bKreg{cseq}\r\nMax-Forwards: 69\r\n\
         To: <sip:1001@{SBC_A}>\r\nFrom: <sip:1001@{SBC_A}>;tag=jssipreg1\r\nCall-ID: wssreg-call-id-1\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <{CONTACT}>;+sip.ice;reg-id=1;+sip.instance=\"{INSTANCE}\";expires={expires}\r\n\
         Expires: {expires}\r\n{auth}Allow: INVITE,ACK,CANCEL,BYE,UPDATE,MESSAGE,OPTIONS,REFER,INFO,NOTIFY\r\n\
         Supported: path,gruu,outbound\r\nUser-Agent: JsSIP 3.13.0\r\nContent-Length: 0\r\n\r\n"
    )
}

/// REGISTERs (401, then the digest answer) and returns the 200.
fn register_with_digest(c: &mut WsClient, expires: u32) -> String {
    let mut seen = Vec::new();
    c.send(&register(1, expires, None)).expect("REGISTER sent");
    let challenge = c.recv_starting("SIP/2.0 401", WAIT, &mut seen).expect("401 over the websocket");
    let challenge = Challenge::parse(header(&challenge, "WWW-Authenticate")).expect("a digest challenge");
    let auth = Client::new(challenge, "1001", Secret::new(PASSWORD)).authorize(
        "REGISTER",
        &format!("sip:{SBC_A}"),
        "0a4f113b",
    );
    c.send(&register(2, expires, Some(&auth))).expect("REGISTER with credentials sent");
    c.recv_starting("SIP/2.0 200", WAIT, &mut seen).expect("200 to the REGISTER")
}

/// The plain RTP/AVP SDP of our side (WebRTC media is another piece).
fn sdp() -> String {
    format!(
        "v=0\r\no=- 7 1 IN IP4 {CALLER}\r\ns=-\r\nc=IN IP4 {CALLER}\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\n\
         a=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    )
}

/// Our response to a request of the SBC; `to_tag` is added to To, `body` is SDP.
fn respond(req: &str, code: &str, to_tag: Option<&str>, body: Option<&str>) -> String {
    let mut out = format!("SIP/2.0 {code}\r\n");
    for v in headers(req, "Via") {
        out.push_str(&format!("Via: {v}\r\n"));
    }
    let to = header(req, "To");
    let to = match to_tag {
        Some(t) if !to.contains(";tag=") => format!("{to};tag={t}"),
        _ => to.to_owned(),
    };
    out.push_str(&format!(
        "From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n",
        header(req, "From"),
        header(req, "Call-ID"),
        header(req, "CSeq")
    ));
    match body {
        Some(b) => out.push_str(&format!(
            "Contact: <{CONTACT}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )),
        None => out.push_str("Content-Length: 0\r\n\r\n"),
    }
    out
}

/// An INVITE from 1001 to `number`, as JsSIP sends it; `auth` is the Proxy-Authorization of the second round.
fn invite_out(number: &str, cseq: u32, auth: Option<&str>) -> String {
    let body = sdp();
    let auth = auth.map(|a| format!("Proxy-Authorization: {a}\r\n")).unwrap_or_default();
    format!(
        "INVITE sip:{number}@{SBC_A} SIP/2.0\r\nVia: SIP/2.0/WSS {HOST};branch=z9hG4bKinv{cseq}\r\nMax-Forwards: 69\r\n\
         To: <sip:{number}@{SBC_A}>\r\nFrom: <sip:1001@{SBC_A}>;tag=jssipcall1\r\nCall-ID: wssreg-out-1\r\n\
         CSeq: {cseq} INVITE\r\nContact: <{CONTACT};ob>\r\n{auth}Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The ACK of a non-2xx final response (same branch as the INVITE, RFC 3261 §17.1.1.3).
fn ack_for_failure(invite: &str, resp: &str) -> String {
    let cseq = header(invite, "CSeq").split_whitespace().next().unwrap_or("1");
    format!(
        "ACK {} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 69\r\nTo: {}\r\nFrom: {}\r\nCall-ID: {}\r\nCSeq: {cseq} ACK\r\n\
         Content-Length: 0\r\n\r\n",
        invite.split_whitespace().nth(1).unwrap_or(""),
        header(invite, "Via"),
        header(resp, "To"),
        header(invite, "From"),
        header(invite, "Call-ID"),
    )
}

/// An in-dialog request of ours (ACK, BYE) in the dialog the 200 `ok` to our INVITE made.
fn in_dialog(method: &str, ok: &str, cseq: u32) -> String {
    format!(
        "{method} {} SIP/2.0\r\nVia: SIP/2.0/WSS {HOST};branch=z9hG4bK{method}{cseq}\r\nMax-Forwards: 69\r\n\
         From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
        contact_uri(ok),
        header(ok, "From"),
        header(ok, "To"),
        header(ok, "Call-ID"),
    )
}

#[test]
fn a_user_registered_over_wss_is_called_over_its_websocket_calls_out_and_is_480_after_closing_it() {
    let r = rig("ws-registrar");
    let mut c = r.browser();

    // REGISTER with its 401 round: one binding, the 200 lists it.
    let ok = register_with_digest(&mut c, 600);
    let listed = headers(&ok, "Contact").join(", ");
    assert!(listed.contains(CONTACT), "the 200 lists the binding: {ok}");
    assert!(listed.contains("expires="), "with its expiry: {ok}");
    // RFC 5626 §6: Supported: outbound, +sip.instance and reg-id over a connection make an outbound registration.
    assert_eq!(try_header(&ok, "Require"), Some("outbound"), "{ok}");
    assert_eq!(try_header(&ok, "Flow-Timer"), Some("270"), "90 % of the default 300 s idle timeout: {ok}");
    assert_eq!(r.metric("sbc_registrar_bindings"), 1.0);
    assert_eq!(r.metric(r#"sbc_registrar_registers_total{result="challenged"}"#), 1.0);
    assert_eq!(r.metric(r#"sbc_registrar_registers_total{result="ok"}"#), 1.0);

    // The carrier calls 1001: the INVITE comes over the WebSocket, addressed to the registered Contact.
    let carrier = r.carrier_call("1001", Duration::from_secs(1));
    let mut seen = Vec::new();
    let inv = c.recv_starting("INVITE ", WAIT, &mut seen).expect("the carrier's INVITE reaches the websocket");
    assert!(inv.starts_with(&format!("INVITE {CONTACT} SIP/2.0\r\n")), "Request-URI is the registered Contact:\n{inv}");
    let top_via = headers(&inv, "Via")[0];
    assert!(top_via.starts_with("SIP/2.0/WSS "), "our Via names WSS towards the browser: {top_via}");
    assert!(header(&inv, "Content-Type").contains("application/sdp"), "with an offer:\n{inv}");
    c.send(&respond(&inv, "180 Ringing", Some("jssipans1"), None)).expect("180 sent");
    c.send(&respond(&inv, "200 OK", Some("jssipans1"), Some(&sdp()))).expect("200 sent");
    let ack = c.recv_starting("ACK ", WAIT, &mut seen).expect("the ACK reaches the websocket");
    assert_eq!(header(&ack, "Call-ID"), header(&inv, "Call-ID"), "the ACK is of our dialog");
    let bye = c.recv_starting("BYE ", WAIT, &mut seen).expect("the carrier's BYE reaches the websocket");
    assert!(bye.starts_with(&format!("BYE {CONTACT} SIP/2.0\r\n")), "BYE to our Contact:\n{bye}");
    c.send(&respond(&bye, "200 OK", None, None)).expect("200 to BYE sent");
    carrier.wait().expect("carrier ends").assert_all_successful(1).expect("the carrier's call to 1001 completes");

    // 1001 calls out over WSS: 407, then the digest answer, to carrier b's UAS.
    let uas = r.carrier_uas();
    let first = invite_out("+4930555123", 1, None);
    c.send(&first).expect("INVITE sent");
    let mut seen = Vec::new();
    let challenge = c.recv_starting("SIP/2.0 407", WAIT, &mut seen).expect("407 over the websocket");
    c.send(&ack_for_failure(&first, &challenge)).expect("ACK of the 407 sent");
    let parsed = Challenge::parse(header(&challenge, "Proxy-Authenticate")).expect("a digest challenge");
    let auth = Client::new(parsed, "1001", Secret::new(PASSWORD)).authorize(
        "INVITE",
        &format!("sip:+4930555123@{SBC_A}"),
        "77c1e2d9",
    );
    c.send(&invite_out("+4930555123", 2, Some(&auth))).expect("INVITE with credentials sent");
    let ok = c.recv_starting("SIP/2.0 200", WAIT, &mut seen).expect("200 from carrier b over the websocket");
    assert_eq!(header(&ok, "CSeq"), "2 INVITE", "{ok}");
    c.send(&in_dialog("ACK", &ok, 2)).expect("ACK sent");
    std::thread::sleep(Duration::from_millis(300));
    c.send(&in_dialog("BYE", &ok, 3)).expect("BYE sent");
    let bye_ok = c.recv_starting("SIP/2.0 ", WAIT, &mut seen).expect("answer to our BYE");
    assert_eq!((status(&bye_ok), header(&bye_ok, "CSeq")), (200, "3 BYE"), "{bye_ok}");
    uas.wait().expect("carrier uas ends").assert_all_successful(1).expect("carrier b answered 1001's call");

    // Closing the WebSocket removes the binding made over it: the next call to 1001 gets 480.
    c.close(WAIT).expect("websocket closed");
    r.wait_metric("sbc_registrar_bindings", 0.0);
    r.carrier_call_expecting("1001", 480);

    let cdrs = tests::wait_cdrs(&[&r.cdr], 3, WAIT);
    let legs: Vec<(&str, &str, u64)> = cdrs
        .iter()
        .map(|c| {
            (
                c["trunk_in"].as_str().unwrap_or(""),
                c["trunk_out"].as_str().unwrap_or(""),
                c["status"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(legs, [("carrier-b", "users", 200), ("users", "carrier-b", 200), ("carrier-b", "", 480)], "{cdrs:?}");
}

/// JsSIP 3.13 (the stack of browser softphones) in Node registers over WSS, answering the 401 itself: `registered`
/// fires, the binding gauge reads 1 while it holds, 0 after its un-REGISTER.
#[test]
fn jssip_in_node_registers_over_wss_with_digest_and_the_binding_gauge_reads_1() {
    use std::io::BufRead;
    let node = tests::require_tool("node", "nodejs");
    let js = tests::repo_root().join("tests/js");
    assert!(
        js.join("node_modules/jssip/package.json").is_file() && js.join("node_modules/ws/package.json").is_file(),
        "JsSIP and ws are not installed in {}: run `make deps` (npm ci there)",
        js.display()
    );
    let r = rig("ws-registrar-jssip");
    let ca = r.topo.dir().join("ca.pem");
    std::fs::write(&ca, &r.ca).expect("write CA");
    let mut child = tests::netns::command(Some(&r.topo.ns(Host::A)), &node)
        .arg(js.join("jssip_register.js"))
        .env("SBC_URL", format!("wss://{SBC_A}:{WSS_PORT}"))
        .env("URI", format!("sip:1001@{SBC_A}"))
        .env("PASSWORD", PASSWORD)
        .env("HOLD_MS", "3000")
        .env("NODE_EXTRA_CA_CERTS", &ca)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("node runs");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    // The script gives up after 20 s, so these reads end.
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    let registered: serde_json::Value = serde_json::from_str(&first)
        .unwrap_or_else(|e| panic!("no `registered` line ({e}): {first:?}\n{}", r.sbc.log_tail()));
    assert_eq!(registered["registered"], true, "{registered}");
    assert_eq!(registered["status"], 200, "{registered}");
    assert_eq!(r.metric("sbc_registrar_bindings"), 1.0, "JsSIP's binding is held");
    assert_eq!(r.metric(r#"sbc_registrar_registers_total{result="challenged"}"#), 1.0);
    assert_eq!(r.metric(r#"sbc_registrar_registers_total{result="ok"}"#), 1.0);

    let last = lines.next().and_then(Result::ok).unwrap_or_default();
    let status = child.wait().expect("node ends");
    let done: serde_json::Value =
        serde_json::from_str(&last).unwrap_or_else(|e| panic!("no final line ({e}): {last:?}\n{}", r.sbc.log_tail()));
    assert!(status.success(), "{done}\n{}", r.sbc.log_tail());
    assert_eq!(done["unregistered"], true, "{done}");
    r.wait_metric("sbc_registrar_bindings", 0.0);
}
