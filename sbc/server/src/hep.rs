//! HEP export: a copy of every SIP message in and out, and a media report per call, to a Homer/SIP3 collector.
//!
//! Never on the call path (DESIGN.md principle 5): the driver only looks up the correlation id and offers the
//! capture to a bounded queue with `try_send`; a full queue drops the capture and counts it. A sender task encodes
//! (`sbc_proto::hep`) and sends over UDP, or over TCP with reconnects.

use crate::config::HepSettings;
use bytes::Bytes;
use relay_proto::control::SessionStats;
use sbc_proto::endpoint::Endpoint;
use sbc_proto::hep::{Capture, IpProtocol, ProtocolType};
use sbc_proto::transport::{Peer, Transport};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Captures sent to the collector.
pub const SENT: &str = "sbc_hep_sent_total";
/// Captures not sent, by `reason`: `queue_full` (the sender is behind), `send_error`, `not_connected` (TCP
/// collector unreachable), `encode` (a message too large for HEP).
pub const DROPPED: &str = "sbc_hep_dropped_total";
/// Whether the TCP connection to the collector is up (always 1 with UDP).
pub const CONNECTED: &str = "sbc_hep_collector_up";

/// How long leg B's Call-ID is remembered after its last message: responses and retransmissions of a call's last
/// transactions arrive up to 64*T1 (32 s) after the call ended in the core.
const REMEMBER: Duration = Duration::from_secs(64);
/// At most this many leg-B Call-IDs remembered; past that, late messages of ended calls carry their own Call-ID.
const REMEMBER_MAX: usize = 100_000;
/// A TCP collector that refused or broke is tried again after this.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);
/// Bytes of encoded captures written to a TCP collector at once.
const TCP_BATCH: usize = 64 * 1024;

/// One capture waiting for the sender.
#[derive(Debug)]
struct Item {
    src: SocketAddr,
    dst: SocketAddr,
    protocol: IpProtocol,
    time: SystemTime,
    kind: ProtocolType,
    correlation: Option<Bytes>,
    payload: Bytes,
}

/// The driver's side of the export: correlates and queues captures.
#[derive(Debug)]
pub struct HepExport {
    tx: mpsc::Sender<Item>,
    /// Leg A's Call-ID by leg B's, for messages of calls the core has already forgotten; with when last used.
    leg_a: HashMap<Bytes, (Bytes, Instant)>,
    task: tokio::task::JoinHandle<()>,
}

impl HepExport {
    /// Starts the sender task for `settings` (on the current tokio runtime).
    pub fn start(settings: &HepSettings) -> Self {
        let (tx, rx) = mpsc::channel(settings.queue);
        metrics::describe_counter!(SENT, "captures sent to the HEP collector");
        metrics::describe_counter!(DROPPED, "captures not sent to the HEP collector, by reason");
        metrics::describe_gauge!(CONNECTED, "1 while the TCP connection to the HEP collector is up");
        for reason in ["queue_full", "send_error", "not_connected", "encode"] {
            metrics::counter!(DROPPED, "reason" => reason).absolute(0);
        }
        metrics::counter!(SENT).absolute(0);
        let sender = Sender {
            agent_id: settings.agent_id,
            password: settings.password.as_ref().map(|p| p.0.clone()),
            collector: settings.collector.addr,
        };
        let task = if settings.collector.tcp {
            metrics::gauge!(CONNECTED).set(0.0);
            tokio::spawn(sender.tcp(rx))
        } else {
            metrics::gauge!(CONNECTED).set(1.0);
            tokio::spawn(sender.udp(rx))
        };
        tracing::info!(collector = %settings.collector.addr, tcp = settings.collector.tcp, "HEP export on");
        Self { tx, leg_a: HashMap::new(), task }
    }

    /// A message received at `at` from `remote` on our `local`.
    pub fn inbound(
        &mut self,
        endpoint: &Endpoint,
        transport: Transport,
        local: SocketAddr,
        remote: SocketAddr,
        at: Instant,
        bytes: &Bytes,
    ) {
        let time = SystemTime::now() - at.elapsed();
        self.sip(endpoint, transport, remote, local, time, bytes);
    }

    /// A message about to be sent to `peer`.
    pub fn outbound(&mut self, endpoint: &Endpoint, peer: &Peer, bytes: &Bytes) {
        self.sip(endpoint, peer.transport, peer.local, peer.remote, SystemTime::now(), bytes);
    }

    fn sip(
        &mut self,
        endpoint: &Endpoint,
        transport: Transport,
        src: SocketAddr,
        dst: SocketAddr,
        time: SystemTime,
        bytes: &Bytes,
    ) {
        let correlation = endpoint.correlation(bytes).map(|c| match c.leg_a {
            Some(a) => {
                if self.leg_a.len() < REMEMBER_MAX || self.leg_a.contains_key(&c.call_id) {
                    self.leg_a.insert(c.call_id, (a.clone(), Instant::now()));
                }
                a
            }
            None => match self.leg_a.get_mut(&c.call_id) {
                Some((a, used)) => {
                    *used = Instant::now();
                    a.clone()
                }
                None => c.call_id,
            },
        });
        // TLS and WebSocket carry the plaintext SIP captured here over TCP.
        let protocol = if transport == Transport::Udp { IpProtocol::Udp } else { IpProtocol::Tcp };
        self.offer(Item { src, dst, protocol, time, kind: ProtocolType::Sip, correlation, payload: bytes.clone() });
    }

    /// The relay's final figures of the call whose leg A has `a_call_id`: one report per leg, as Homer's RTP agents
    /// send them (JSON, HEP type 34), so the collector shows them with the call.
    pub fn media_report(&mut self, a_call_id: &str, stats: &SessionStats) {
        let unknown = SocketAddr::from(([0, 0, 0, 0], 0));
        for (leg, s) in ["a", "b"].into_iter().zip(&stats.legs) {
            let src = s.latched.unwrap_or(unknown);
            let r = &s.received;
            let lost = r.lost.max(0);
            let report = serde_json::json!({
                "CORRELATION_ID": a_call_id,
                "RTP_SIP_CALL_ID": a_call_id,
                "REPORT_NAME": format!("leg_{leg}"),
                "TYPE": "HANGUP",
                "DIR": 0,
                "PARTY": if leg == "a" { 0 } else { 1 },
                "SRC_IP": src.ip().to_string(),
                "SRC_PORT": src.port(),
                "TOTAL_PK": r.packets,
                "TL_BYTE": r.bytes,
                "RTCP_PK": r.rtcp_packets,
                "EXPECTED_PK": r.expected,
                "PACKET_LOSS": lost,
                "JITTER": r.jitter_ms,
                "SENT_PK": s.sent,
                "KERNEL_PK": s.kernel_packets,
            });
            // The relay measures no round-trip time (it does not answer RTCP itself), so the report has none.
            let payload = Bytes::from(report.to_string());
            let dst = if src.is_ipv4() { unknown } else { SocketAddr::from(([0u16; 8], 0)) };
            let correlation = Some(Bytes::copy_from_slice(a_call_id.as_bytes()));
            let time = SystemTime::now();
            let kind = ProtocolType::QosJson;
            self.offer(Item { src, dst, protocol: IpProtocol::Udp, time, kind, correlation, payload });
        }
    }

    fn offer(&self, item: Item) {
        if self.tx.try_send(item).is_err() {
            metrics::counter!(DROPPED, "reason" => "queue_full").increment(1);
        }
    }

    /// Forgets leg-B Call-IDs unused for a while (call every second or so).
    pub fn expire(&mut self) {
        let now = Instant::now();
        self.leg_a.retain(|_, (_, used)| now.saturating_duration_since(*used) < REMEMBER);
    }

    /// Lets the sender send what is queued (at most `wait`), then stops it.
    pub async fn close(self, wait: Duration) {
        drop(self.tx);
        let mut task = self.task;
        if tokio::time::timeout(wait, &mut task).await.is_err() {
            task.abort();
        }
    }
}

/// The sender task's settings.
struct Sender {
    agent_id: u32,
    password: Option<String>,
    collector: SocketAddr,
}

impl Sender {
    /// Appends `item` encoded to `out`; false (and counted) if it cannot be.
    fn encode(&self, item: &Item, out: &mut Vec<u8>) -> bool {
        let since = item.time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let capture = Capture {
            src: item.src,
            dst: item.dst,
            protocol: item.protocol,
            time: (since.as_secs() as u32, since.subsec_micros()),
            kind: item.kind,
            agent_id: self.agent_id,
            auth_key: self.password.as_deref(),
            correlation_id: item.correlation.as_deref(),
            payload: &item.payload,
        };
        match capture.encode(out) {
            Ok(()) => true,
            Err(e) => {
                metrics::counter!(DROPPED, "reason" => "encode").increment(1);
                tracing::debug!(error = %e, "capture not sent");
                false
            }
        }
    }

    async fn udp(self, mut rx: mpsc::Receiver<Item>) {
        let any: SocketAddr = if self.collector.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
        let socket = match tokio::net::UdpSocket::bind(any).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "HEP: no UDP socket: captures are dropped");
                metrics::gauge!(CONNECTED).set(0.0);
                while rx.recv().await.is_some() {
                    metrics::counter!(DROPPED, "reason" => "send_error").increment(1);
                }
                return;
            }
        };
        let mut buf = Vec::with_capacity(2048);
        while let Some(item) = rx.recv().await {
            buf.clear();
            if !self.encode(&item, &mut buf) {
                continue;
            }
            match socket.send_to(&buf, self.collector).await {
                Ok(_) => metrics::counter!(SENT).increment(1),
                Err(e) => {
                    metrics::counter!(DROPPED, "reason" => "send_error").increment(1);
                    tracing::debug!(error = %e, "HEP send failed");
                }
            }
        }
    }

    async fn tcp(self, mut rx: mpsc::Receiver<Item>) {
        let mut buf = Vec::with_capacity(TCP_BATCH);
        loop {
            let connect = tokio::net::TcpStream::connect(self.collector);
            let stream = match tokio::time::timeout(RECONNECT_EVERY, connect).await {
                Ok(Ok(s)) => s,
                failed => {
                    let error = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => "timed out".to_owned(),
                    };
                    tracing::warn!(collector = %self.collector, %error, "HEP collector unreachable");
                    // Captures meanwhile are dropped: a backlog would only arrive late and stale.
                    let until = Instant::now() + RECONNECT_EVERY;
                    loop {
                        tokio::select! {
                            item = rx.recv() => match item {
                                Some(_) => metrics::counter!(DROPPED, "reason" => "not_connected").increment(1),
                                None => return,
                            },
                            _ = tokio::time::sleep_until(until) => break,
                        }
                    }
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            metrics::gauge!(CONNECTED).set(1.0);
            tracing::info!(collector = %self.collector, "HEP collector connected");
            let (mut reader, mut stream) = stream.into_split();
            let mut scratch = [0u8; 512];
            loop {
                // A collector sends nothing back: a read that returns is the connection closing, noticed at once
                // rather than at the second write after it.
                let item = tokio::select! {
                    item = rx.recv() => item,
                    r = reader.read(&mut scratch) => {
                        if matches!(r, Ok(0) | Err(_)) {
                            metrics::gauge!(CONNECTED).set(0.0);
                            tracing::warn!(collector = %self.collector, "HEP collector closed the connection");
                            break;
                        }
                        continue;
                    }
                };
                let Some(item) = item else {
                    let _ = stream.shutdown().await;
                    return;
                };
                buf.clear();
                let mut n = u64::from(self.encode(&item, &mut buf));
                while buf.len() < TCP_BATCH {
                    let Ok(item) = rx.try_recv() else { break };
                    n += u64::from(self.encode(&item, &mut buf));
                }
                if let Err(e) = stream.write_all(&buf).await {
                    metrics::counter!(DROPPED, "reason" => "send_error").increment(n);
                    metrics::gauge!(CONNECTED).set(0.0);
                    tracing::warn!(collector = %self.collector, error = %e, "HEP connection lost");
                    break;
                }
                metrics::counter!(SENT).increment(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HepCollector, HepPassword};
    use relay_proto::control::{LegStats, SessionId};

    fn settings(tcp: bool, addr: SocketAddr) -> HepSettings {
        HepSettings {
            collector: HepCollector { tcp, addr },
            agent_id: 77,
            password: Some(HepPassword("pw".into())),
            queue: 16,
        }
    }

    fn stats() -> SessionStats {
        let mut a = LegStats { sent: 90, latched: Some("198.18.1.10:7078".parse().unwrap()), ..LegStats::default() };
        a.received.packets = 100;
        a.received.expected = 101;
        a.received.lost = 1;
        a.received.jitter_ms = 2.5;
        SessionStats { session: SessionId(1), legs: [a, LegStats::default()] }
    }

    /// The value of chunk `kind` in HEP packet `p`.
    fn chunk(p: &[u8], kind: u16) -> Option<&[u8]> {
        let mut at = 6;
        while at + 6 <= p.len() {
            let t = u16::from_be_bytes([p[at + 2], p[at + 3]]);
            let len = usize::from(u16::from_be_bytes([p[at + 4], p[at + 5]]));
            if t == kind {
                return Some(&p[at + 6..at + len]);
            }
            at += len;
        }
        None
    }

    #[tokio::test]
    async fn media_reports_reach_a_udp_collector_one_per_leg_with_the_calls_correlation_id() {
        let collector = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut hep = HepExport::start(&settings(false, collector.local_addr().unwrap()));
        hep.media_report("call-a@pbx", &stats());
        let mut buf = [0u8; 4096];
        let mut reports = Vec::new();
        for _ in 0..2 {
            let n = tokio::time::timeout(Duration::from_secs(5), collector.recv(&mut buf)).await.unwrap().unwrap();
            let p = &buf[..n];
            assert_eq!(sbc_proto::hep::packet_len(p), Some(n));
            assert_eq!(chunk(p, 0x0011), Some(&b"call-a@pbx"[..]));
            assert_eq!(chunk(p, 0x000b), Some(&[34u8][..]));
            assert_eq!(chunk(p, 0x000c), Some(&77u32.to_be_bytes()[..]));
            assert_eq!(chunk(p, 0x000e), Some(&b"pw"[..]));
            reports.push(serde_json::from_slice::<serde_json::Value>(chunk(p, 0x000f).unwrap()).unwrap());
        }
        let a = &reports[0];
        assert_eq!((a["REPORT_NAME"].as_str(), a["TOTAL_PK"].as_u64()), (Some("leg_a"), Some(100)));
        assert_eq!(
            (a["EXPECTED_PK"].as_u64(), a["PACKET_LOSS"].as_u64(), a["SENT_PK"].as_u64()),
            (Some(101), Some(1), Some(90))
        );
        assert_eq!(
            (a["JITTER"].as_f64(), a["SRC_IP"].as_str(), a["SRC_PORT"].as_u64()),
            (Some(2.5), Some("198.18.1.10"), Some(7078))
        );
        assert_eq!(reports[1]["REPORT_NAME"], "leg_b");
        hep.close(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn tcp_sender_reconnects_after_the_collector_drops_the_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut hep = HepExport::start(&settings(true, listener.local_addr().unwrap()));
        let mut got = Vec::new();
        for round in 0..2 {
            let (mut conn, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept()).await.unwrap().unwrap();
            // Reports offered before the connection was up were dropped as not connected: offer until one arrives.
            let mut buf = vec![0u8; 4096];
            let n = loop {
                hep.media_report(&format!("round-{round}"), &stats());
                match tokio::time::timeout(Duration::from_millis(200), conn.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => break n,
                    _ => continue,
                }
            };
            let len = sbc_proto::hep::packet_len(&buf[..n]).unwrap();
            got.push(chunk(&buf[..len], 0x0011).unwrap().to_vec());
            drop(conn);
        }
        assert_eq!(got, [b"round-0".to_vec(), b"round-1".to_vec()]);
        hep.close(Duration::from_secs(1)).await;
    }
}
