//! The media of canary calls ([`sbc_proto::endpoint::canary`]): one RTP socket and task per trunk with a canary,
//! on the address its signalling leaves from. The core says when to start (the far end's address, from the
//! answer) and when to stop; the task sends a PCMU stream and counts what comes back, and the counts go back to
//! the core, which decides the result. The relay is not involved: the canary is an endpoint of its own, and its
//! packets must not count in the customers' media figures.

use sbc_proto::endpoint::{CanaryMediaCommand, CanaryReport, CanaryResult, Endpoint};
use sbc_proto::routing::TrunkId;
use sbc_proto::transport::Peer;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// RTP packetisation of the stream: 20 ms of PCMU at 8 kHz.
const PTIME: Duration = Duration::from_millis(20);
const SAMPLES_PER_PACKET: u32 = 160;
/// PCMU silence (the µ-law code of 0): the far end hears nothing if it plays the stream.
const PCMU_SILENCE: u8 = 0xFF;

/// What one canary's media did, for the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Whose canary.
    pub trunk: TrunkId,
    /// RTP packets sent.
    pub sent: u64,
    /// RTP packets received from the far end's address.
    pub received: u64,
}

/// The canary media tasks, and the channel their reports come back on.
#[derive(Debug)]
pub struct CanaryMedia {
    tasks: HashMap<TrunkId, mpsc::Sender<CanaryMediaCommand>>,
    reports: mpsc::Receiver<Report>,
}

impl CanaryMedia {
    /// Opens a socket for every trunk with a canary that can run, starts its task, and tells `endpoint` its
    /// address. A socket that cannot be opened is logged: that trunk's canaries then offer no reachable media and
    /// an `echo` canary reports `media_failed`.
    pub fn start(endpoint: &mut Endpoint) -> Self {
        let (report_tx, reports) = mpsc::channel(16);
        let mut tasks = HashMap::new();
        for (trunk, peer) in endpoint.canary_trunks() {
            let Some(peer) = peer else {
                tracing::warn!(%trunk, "canary: no gateway of the trunk is reachable from a sip.listen address; it never runs");
                continue;
            };
            match bind(&peer) {
                Ok(sock) => {
                    let addr = match sock.local_addr() {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(%trunk, error = %e, "canary: RTP socket without an address");
                            continue;
                        }
                    };
                    endpoint.set_canary_media(trunk, addr);
                    let (tx, rx) = mpsc::channel(4);
                    tokio::spawn(run(sock, trunk, rx, report_tx.clone()));
                    tasks.insert(trunk, tx);
                }
                Err(e) => tracing::warn!(%trunk, error = %e, "canary: the RTP socket could not be opened"),
            }
        }
        Self { tasks, reports }
    }

    /// Carries out a command of the core. Never waits: a canary has two commands, so a full queue is a bug, logged.
    pub fn command(&self, cmd: CanaryMediaCommand) {
        let trunk = match cmd {
            CanaryMediaCommand::Start { trunk, .. } | CanaryMediaCommand::Stop { trunk } => trunk,
        };
        let sent = self.tasks.get(&trunk).map(|t| t.try_send(cmd));
        if !matches!(sent, Some(Ok(()))) {
            tracing::warn!(%trunk, ?cmd, "canary: media command not delivered");
        }
    }

    /// The next report (pending forever when no canary has media).
    pub async fn report(&mut self) -> Report {
        match self.reports.recv().await {
            Some(r) => r,
            None => std::future::pending().await,
        }
    }
}

/// A UDP socket on the address the trunk's signalling leaves from; when that is a wildcard, on the address the
/// kernel routes towards the gateway from (an SDP needs a real address).
fn bind(peer: &Peer) -> std::io::Result<UdpSocket> {
    let ip = if peer.local.ip().is_unspecified() { route_source(peer.remote)? } else { peer.local.ip() };
    let sock = std::net::UdpSocket::bind(SocketAddr::new(ip, 0))?;
    sock.set_nonblocking(true)?;
    UdpSocket::from_std(sock)
}

/// The source address of the route to `remote` (a connected UDP socket sends nothing).
fn route_source(remote: SocketAddr) -> std::io::Result<IpAddr> {
    let any: SocketAddr =
        if remote.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { (std::net::Ipv6Addr::UNSPECIFIED, 0).into() };
    let probe = std::net::UdpSocket::bind(any)?;
    probe.connect(remote)?;
    Ok(probe.local_addr()?.ip())
}

/// One trunk's canary media: idle until Start, then a packet every [`PTIME`] to the far end and a count of what
/// comes back from its address, until Stop (then a report). Ends when the driver drops its sender.
async fn run(
    sock: UdpSocket,
    trunk: TrunkId,
    mut commands: mpsc::Receiver<CanaryMediaCommand>,
    reports: mpsc::Sender<Report>,
) {
    let mut ssrc: u32 = rand_u32(trunk);
    while let Some(cmd) = commands.recv().await {
        let CanaryMediaCommand::Start { remote, .. } = cmd else {
            // A Stop with nothing running: the core still waits for figures.
            let _ = reports.send(Report { trunk, sent: 0, received: 0 }).await;
            continue;
        };
        ssrc = ssrc.wrapping_mul(0x9E37_79B9).wrapping_add(1);
        let (sent, received) = stream(&sock, remote, ssrc, &mut commands).await;
        tracing::debug!(%trunk, %remote, sent, received, "canary media stopped");
        if reports.send(Report { trunk, sent, received }).await.is_err() {
            return;
        }
    }
}

/// Sends and counts until the next command (a Stop, or the channel closing).
async fn stream(
    sock: &UdpSocket,
    remote: SocketAddr,
    ssrc: u32,
    commands: &mut mpsc::Receiver<CanaryMediaCommand>,
) -> (u64, u64) {
    let mut tick = tokio::time::interval(PTIME);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut sent, mut received) = (0u64, 0u64);
    let mut packet = [PCMU_SILENCE; 12 + SAMPLES_PER_PACKET as usize];
    let mut buf = [0u8; 2048];
    loop {
        tokio::select! {
            _ = tick.tick() => {
                rtp_header(&mut packet, sent, ssrc);
                if sock.send_to(&packet, remote).await.is_ok() {
                    sent += 1;
                }
            }
            r = sock.recv_from(&mut buf) => {
                // Only RTP (version 2) from the far end's address counts: a stray packet is no proof of media.
                if let Ok((n, from)) = r {
                    if from.ip() == remote.ip() && n >= 12 && buf[0] >> 6 == 2 {
                        received += 1;
                    }
                }
            }
            _ = commands.recv() => return (sent, received),
        }
    }
}

/// RTP header (RFC 3550 §5.1) of packet number `n`: version 2, payload type 0 (PCMU), marker on the first.
fn rtp_header(packet: &mut [u8], n: u64, ssrc: u32) {
    packet[0] = 0x80;
    packet[1] = if n == 0 { 0x80 } else { 0 };
    packet[2..4].copy_from_slice(&(n as u16).to_be_bytes());
    packet[4..8].copy_from_slice(&((n as u32).wrapping_mul(SAMPLES_PER_PACKET)).to_be_bytes());
    packet[8..12].copy_from_slice(&ssrc.to_be_bytes());
}

/// Records a canary's result: its metrics and one log line with the result and why.
pub fn observe(r: &CanaryReport, trunk: &str) {
    use crate::metrics as m;
    metrics::counter!(m::CANARY_RESULTS, "trunk" => trunk.to_owned(), "result" => r.result.label()).increment(1);
    let ok = r.result == CanaryResult::Success;
    metrics::gauge!(m::CANARY_UP, "trunk" => trunk.to_owned()).set(if ok { 1.0 } else { 0.0 });
    if let Some(d) = r.post_dial_delay {
        metrics::gauge!(m::CANARY_POST_DIAL_DELAY, "trunk" => trunk.to_owned()).set(d.as_secs_f64());
    }
    for (direction, n) in [("sent", r.sent), ("received", r.received)] {
        metrics::gauge!(m::CANARY_MEDIA_PACKETS, "trunk" => trunk.to_owned(), "direction" => direction).set(n as f64);
    }
    let pdd_ms = r.post_dial_delay.map(|d| (d.as_secs_f64() * 10_000.0).round() / 10.0);
    let (result, why) = (r.result.label(), r.why);
    if ok {
        tracing::info!(
            trunk,
            result,
            why,
            status = r.status,
            pdd_ms,
            sent = r.sent,
            received = r.received,
            "canary call"
        );
    } else {
        tracing::warn!(
            trunk,
            result,
            why,
            status = r.status,
            pdd_ms,
            sent = r.sent,
            received = r.received,
            "canary call"
        );
    }
}

/// A per-process SSRC seed: RFC 3550 wants SSRCs random so two sources rarely collide.
fn rand_u32(trunk: TrunkId) -> u32 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(trunk.0) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_header_is_version_2_pcmu_with_sequence_and_timestamp() {
        let mut p = [0u8; 172];
        rtp_header(&mut p, 0, 0xAABB_CCDD);
        assert_eq!(&p[..12], &[0x80, 0x80, 0, 0, 0, 0, 0, 0, 0xAA, 0xBB, 0xCC, 0xDD]);
        rtp_header(&mut p, 3, 1);
        assert_eq!(p[1], 0, "marker only on the first");
        assert_eq!(u16::from_be_bytes([p[2], p[3]]), 3);
        assert_eq!(u32::from_be_bytes([p[4], p[5], p[6], p[7]]), 480);
    }

    #[tokio::test]
    async fn stream_counts_what_an_echo_sends_back_until_stopped() {
        let echo = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = echo.recv_from(&mut buf).await {
                let _ = echo.send_to(&buf[..n], from).await;
            }
        });
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (tx, mut rx) = mpsc::channel(1);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let _ = tx.send(CanaryMediaCommand::Stop { trunk: TrunkId(0) }).await;
        });
        let (sent, received) = stream(&sock, echo_addr, 7, &mut rx).await;
        // 15 at the 20 ms pace; a loaded host fires the timer late (fewer), never early (more).
        assert!((5..=20).contains(&sent), "about 15 packets in 300 ms, never more than the pace allows: {sent}");
        assert!(received + 2 >= sent, "an echo on loopback returns all but those in flight: {received} of {sent}");
    }
}
