//! Canary calls (`[trunk.canary]`) against real carriers in the single-SBC topology: the SBC (198.18.2.1 on side
//! b) calls carrier b (198.18.2.10) every 3 s; carrier b is a SIPp UAS that answers and echoes RTP, answers with
//! an SDP nobody sends from, or does not exist at all (nothing listens on the gateway's port). The outcome is read
//! from `/metrics`, as an operator's alert would.

use std::time::{Duration, Instant};
use tests::netns::{addr, sbc_config, Host, Topology, CARRIER_B, SBC_A};
use tests::sipp::{Running, Sipp};
use tests::Sbc;

/// Every canary: 3 s apart, held 1 s (about 50 RTP packets each way), answer awaited 1 s.
const CANARY: &str =
    r#"canary = { number = "echo", every = "3s", hold = "1s", answer_timeout = "1s", media = "echo" }"#;
const LIMIT: Duration = Duration::from_secs(60);
/// How long a test waits for its first canary result: the first canary starts 3 s after the SBC and ends about
/// 2 s later.
const RESULT_WAIT: Duration = Duration::from_secs(15);
/// The carrier's SIP port in the down case: nothing listens there.
const DEAD_PORT: u16 = 5099;

struct Rig {
    _topo: Topology,
    sbc: Sbc,
    cdr: std::path::PathBuf,
    carrier: Option<Running>,
}

/// The topology, carrier b as `carrier` builds it (or none), then the SBC whose carrier-b trunk runs canaries to
/// `gateway_port`.
fn rig(name: &str, gateway_port: u16, carrier: impl FnOnce(&Topology) -> Option<Running>) -> Rig {
    let topo = Topology::single_sbc().expect("topology");
    let carrier = carrier(&topo);
    let cdr = topo.dir().join("cdr.jsonl");
    let config = sbc_config("", CANARY, "", false, Some(&cdr))
        .replace(&format!("udp:{CARRIER_B}:5060"), &format!("udp:{CARRIER_B}:{gateway_port}"));
    let sbc = Sbc::start_in(&topo.ns(Host::Sbc), name, &config, addr(SBC_A, 5060), addr([127, 0, 0, 1].into(), 8080))
        .expect("sbc starts");
    Rig { _topo: topo, sbc, cdr, carrier }
}

fn carrier(topo: &Topology, scenario: &str, echo: bool) -> Running {
    let ns = topo.ns(Host::B);
    let mut s = Sipp::new(scenario)
        .netns(&ns)
        .local_ip(CARRIER_B)
        .local_port(5060)
        .media_port(6000)
        // The RTP port of uas_answer_rtp.xml's SDP, where nothing listens.
        .key("rtp_port", "7078")
        .calls(100)
        .limit(LIMIT)
        .trace_messages(true);
    if echo {
        s = s.arg("-rtp_echo");
    }
    let mut r = s.spawn().expect("carrier starts");
    r.wait_listening(Some(&ns), 5060, Duration::from_secs(5)).expect("carrier listens");
    r
}

/// The value of sample `name` whose labels include every one of `labels`, in the exposition `text`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let (labelset, value) = rest.rsplit_once(' ')?;
        let has_all = labels.iter().all(|(k, v)| labelset.contains(&format!("{k}=\"{v}\"")));
        (labelset.starts_with('{') && has_all).then(|| value.parse().ok()).flatten()
    })
}

impl Rig {
    /// Waits for the first canary result of carrier b; returns the metrics text then.
    fn first_result(&self) -> String {
        let deadline = Instant::now() + RESULT_WAIT;
        loop {
            let text = self.sbc.http_get("/metrics").expect("metrics");
            let total: f64 = ["success", "no_answer", "failed", "media_failed"]
                .iter()
                .filter_map(|r| sample(&text, "sbc_canary_result_total", &[("trunk", "carrier-b"), ("result", r)]))
                .sum();
            if total >= 1.0 {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "no canary result within {RESULT_WAIT:?}\n{}\n{}",
                self.sbc.log_tail(),
                self.carrier.as_ref().map(Running::messages).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn results(&self, text: &str) -> [f64; 4] {
        ["success", "no_answer", "failed", "media_failed"].map(|r| {
            sample(text, "sbc_canary_result_total", &[("trunk", "carrier-b"), ("result", r)]).expect("result series")
        })
    }

    /// Canary calls are not customer calls: none in the trunk's attempts, no CDR.
    fn assert_not_customer_calls(&self, text: &str) {
        let attempts = sample(text, "sbc_call_attempts_total", &[("trunk", "carrier-b")]);
        assert_eq!(attempts, Some(0.0), "canary calls are not counted as call attempts");
        let cdrs = std::fs::read_to_string(&self.cdr).unwrap_or_default();
        assert_eq!(cdrs.lines().count(), 0, "canary calls write no CDR: {cdrs}");
    }
}

#[test]
fn canary_to_echoing_carrier_reports_success_with_media_both_ways() {
    let rig = rig("canary-echo", 5060, |t| Some(carrier(t, "uas_answer_echo.xml", true)));
    let text = rig.first_result();
    let [success, no_answer, failed, media_failed] = rig.results(&text);
    assert_eq!((success, no_answer, failed, media_failed), (1.0, 0.0, 0.0, 0.0), "{}", rig.sbc.log_tail());
    assert_eq!(sample(&text, "sbc_canary_up", &[("trunk", "carrier-b")]), Some(1.0));
    let sent = sample(&text, "sbc_canary_media_packets", &[("trunk", "carrier-b"), ("direction", "sent")]).unwrap();
    let received =
        sample(&text, "sbc_canary_media_packets", &[("trunk", "carrier-b"), ("direction", "received")]).unwrap();
    // 1 s of 20 ms packets: about 50, fewer on a loaded machine.
    assert!((25.0..=60.0).contains(&sent), "packets sent in the 1 s hold: {sent}");
    assert!(received >= sent * 0.5, "the echo returned {received} of {sent}");
    let pdd = sample(&text, "sbc_canary_post_dial_delay_seconds", &[("trunk", "carrier-b")]).unwrap();
    assert!(pdd > 0.0 && pdd < 1.0, "post-dial delay within the answer timeout: {pdd} s");
    rig.assert_not_customer_calls(&text);
    let log = std::fs::read_to_string(&rig.sbc.log).unwrap_or_default();
    assert!(log.contains("canary call") && log.contains("media came back"), "a log line per canary:\n{log}");
}

#[test]
fn canary_to_carrier_answering_without_media_reports_media_failed() {
    let rig = rig("canary-silent", 5060, |t| Some(carrier(t, "uas_answer_rtp.xml", false)));
    let text = rig.first_result();
    let [success, no_answer, failed, media_failed] = rig.results(&text);
    assert_eq!((success, no_answer, failed, media_failed), (0.0, 0.0, 0.0, 1.0), "{}", rig.sbc.log_tail());
    assert_eq!(sample(&text, "sbc_canary_up", &[("trunk", "carrier-b")]), Some(0.0));
    let sent = sample(&text, "sbc_canary_media_packets", &[("trunk", "carrier-b"), ("direction", "sent")]).unwrap();
    let received =
        sample(&text, "sbc_canary_media_packets", &[("trunk", "carrier-b"), ("direction", "received")]).unwrap();
    assert!(sent >= 25.0, "media was sent for the hold: {sent}");
    assert_eq!(received, 0.0, "nothing came back");
    rig.assert_not_customer_calls(&text);
    let messages = rig.carrier.as_ref().map(Running::messages).unwrap_or_default();
    assert!(messages.contains("BYE sip:"), "the canary hung up after its hold:\n{messages}");
}

#[test]
fn canary_to_down_carrier_reports_failed() {
    let rig = rig("canary-down", DEAD_PORT, |_| None);
    let text = rig.first_result();
    let [success, no_answer, failed, media_failed] = rig.results(&text);
    assert_eq!((success, no_answer, failed, media_failed), (0.0, 0.0, 1.0, 0.0), "{}", rig.sbc.log_tail());
    assert_eq!(sample(&text, "sbc_canary_up", &[("trunk", "carrier-b")]), Some(0.0));
    assert_eq!(
        sample(&text, "sbc_canary_media_packets", &[("trunk", "carrier-b"), ("direction", "sent")]),
        Some(0.0),
        "no media without an answer"
    );
    rig.assert_not_customer_calls(&text);
    let log = std::fs::read_to_string(&rig.sbc.log).unwrap_or_default();
    assert!(log.contains("no response"), "the log says why:\n{log}");
}
