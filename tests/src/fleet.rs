//! Many concurrent calls with RTP both ways through the SBC: one `rtpfleet` per side sends one stream per call,
//! from the one RTP address every call's SDP names, to that call's relay port (read from the SDP SIPp received, as
//! a phone would), and tells the streams coming back apart by SSRC. Shared by the load tests and benches that
//! hold calls up with media.

use crate::netns::{Host, Process, Topology};
use crate::rtp::{rtpfleet_binary, wait_report, Rtpfleet};
use crate::sipp::{distinct_sdp_ports, Running};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// What the calls carry.
#[derive(Debug, Clone, Copy)]
pub struct Media {
    /// Calls, one stream each way per call.
    pub calls: u32,
    /// Packets per second per stream.
    pub pps: u32,
    /// Seconds of media per stream.
    pub seconds: u64,
}

impl Media {
    /// Packets each direction should carry.
    pub fn expected(&self) -> u64 {
        u64::from(self.calls) * u64::from(self.pps) * self.seconds
    }
}

/// Waits until both SIPp sides' message logs name `calls` distinct relay ports (side a on 198.18.1.1, side b on
/// 198.18.2.1); writes each side's as its fleet's targets file (via a rename). Fails after `timeout` with what it
/// found.
pub fn write_targets(uac: &Running, uas: &Running, calls: u32, a_targets: &Path, b_targets: &Path, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let a = distinct_sdp_ports(&uac.messages(), "198.18.1.1");
        let b = distinct_sdp_ports(&uas.messages(), "198.18.2.1");
        if a.len() >= calls as usize && b.len() >= calls as usize {
            for (path, ip, ports) in [(a_targets, "198.18.1.1", &a), (b_targets, "198.18.2.1", &b)] {
                let text: String = ports.iter().take(calls as usize).map(|p| format!("{ip}:{p}\n")).collect();
                crate::write_atomically(path, &text).expect("targets written");
            }
            return;
        }
        assert!(
            Instant::now() < deadline,
            "after {timeout:?}, {} relay ports for side a and {} for side b (of {calls}); uac in {}, uas in {}",
            a.len(),
            b.len(),
            uac.dir().display(),
            uas.dir().display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Starts the fleet `name` in `host`: streams from `bind`, SSRCs from `ssrc` up, expecting `expect` up back; its
/// targets file is `<dir>/<name>.targets`, its report `<dir>/<name>.json`.
pub fn spawn(
    topo: &Topology,
    host: Host,
    name: &str,
    bind: SocketAddr,
    media: Media,
    ssrc: u32,
    expect: u32,
) -> Process {
    let dir = topo.dir();
    let fleet = Rtpfleet::new(
        bind,
        dir.join(format!("{name}.targets")),
        media.calls as usize,
        media.pps,
        media.seconds,
        ssrc,
        dir.join(format!("{name}.json")),
    )
    .expect_ssrc_base(expect)
    // One socket stands in for hundreds of phones' socket buffers: drained at once, also while the relay catches up.
    .rx_rt_priority(10)
    .idle_exit(Duration::from_secs(2))
    .duration(Duration::from_secs(media.seconds + 90));
    topo.spawn(host, name, rtpfleet_binary().expect("test helpers built"), &fleet.args()).expect("rtpfleet starts")
}

/// The fleet's report, once it ended.
pub fn report(p: &mut Process, path: &Path, media: Media) -> Value {
    wait_report(p, path, Duration::from_secs(media.seconds + 120)).expect("rtpfleet report")
}

fn n(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("no {key} in {v}"))
}

/// One direction: what `tx` sent against what `rx` received. Prints the figures; returns the loss ratio.
pub fn direction(label: &str, tx: &Value, rx: &Value, media: Media) -> f64 {
    let expected = media.expected();
    let received = n(rx, "received");
    let loss = expected.saturating_sub(received) as f64 / expected as f64;
    let lat = &rx["latency_us"];
    eprintln!(
        "{label}: sent {}, received {received}, loss {:.5}% ({} packets), latency p50 {} us, p99 {} us, max {} us; \
         streams seen {}, fewest packets on one stream {}, corrupt {}, duplicates {}, reordered {}, sender's worst \
         lag {} ms, receiver {}",
        tx["sent"],
        loss * 100.0,
        expected.saturating_sub(received),
        lat["p50"],
        lat["p99"],
        lat["max"],
        rx["ssrcs_seen"],
        rx["min_received_per_stream"],
        rx["corrupt"],
        rx["duplicates"],
        rx["reordered"],
        tx["max_send_lag_ms"],
        rx["rx_priority"],
    );
    loss
}

/// The verdict on one direction, after both were printed: every stream arrived byte-identical from a relay port of
/// its own, and at most `max_loss` of the packets were lost.
pub fn assert_direction(label: &str, tx: &Value, rx: &Value, loss: f64, media: Media, max_loss: f64) {
    let expected = media.expected();
    assert_eq!(n(tx, "sent"), expected, "{label}: the sender sent every packet: {tx}");
    assert_eq!(n(tx, "send_errors"), 0, "{label}: {tx}");
    assert!(n(rx, "received") <= expected, "{label}: more distinct packets than sent: {rx}");
    assert_eq!(n(rx, "ssrcs_seen"), u64::from(media.calls), "{label}: every call's stream arrived: {rx}");
    assert_eq!(n(rx, "corrupt"), 0, "{label}: byte-identical: {rx}");
    assert_eq!(n(rx, "other_ssrc") + n(rx, "not_rtp"), 0, "{label}: nothing but the streams: {rx}");
    // Every call is relayed from relay ports of its own.
    assert_eq!(n(rx, "sources"), u64::from(media.calls), "{label}: one relay port per call: {rx}");
    assert!(loss <= max_loss, "{label}: loss {:.5}% is over {}%: {rx}", loss * 100.0, max_loss * 100.0);
}
