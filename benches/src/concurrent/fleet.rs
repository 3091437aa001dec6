//! The media of `concurrent`: one `rtpfleet` per side and segment (started, bound, fed the addresses the SDP
//! named, polled until it exits), its JSON report, and the per-direction figures of a run made from the reports;
//! also the build of the `rtpfleet` binary.

use super::{Options, SIPP_CORE};
use crate::calls::{UAC_RTP_PORT, UAS_RTP_PORT};
use crate::stats::median;
use crate::target::{self, CallPath, Side};
use ::tests::netns::Process;
use ::tests::rtp::Rtpfleet;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The caller's and the callee's first SSRC (stream i uses base + i; segment s adds s << 16).
const SSRC_CALLER: u32 = 0xA000_0000;
const SSRC_CALLEE: u32 = 0xB000_0000;
/// A fleet exits this long after the last packet arrived, once it has sent everything.
pub(super) const FLEET_IDLE_MS: u64 = 1000;

/// One direction of the media of one run: the sending fleet's and the receiving fleet's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Direction {
    /// Packets the sender was to send: streams × pps × seconds.
    pub expected: u64,
    /// Packets sent.
    pub sent: u64,
    /// Failed sends.
    pub send_errors: u64,
    /// Distinct intact packets received.
    pub received: u64,
    /// `sent - received`.
    pub lost: u64,
    /// `lost / sent`, in percent (100 when nothing was sent).
    pub loss_pct: f64,
    /// Streams with at least one packet at the receiver.
    pub streams_seen: u64,
    /// One-way latency, median, µs (median over segments).
    pub latency_p50_us: Option<u64>,
    /// One-way latency, 99th percentile, µs (the largest of the segments).
    pub latency_p99_us: Option<u64>,
    /// One-way latency, largest, µs.
    pub latency_max_us: Option<u64>,
    /// Interarrival jitter (RFC 3550), mean over streams, µs.
    pub jitter_mean_us: Option<f64>,
    /// Interarrival jitter, the worst stream, µs.
    pub jitter_max_us: Option<f64>,
    /// How far the sender fell behind its schedule at worst, ms.
    pub max_send_lag_ms: f64,
}

/// The media of one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Media {
    /// Streams per side (one per call that was up on both sides).
    pub streams: u64,
    /// Seconds of media sent.
    pub seconds: u32,
    /// Caller → callee (through the target's side a, then b).
    pub a_to_b: Direction,
    /// Callee → caller.
    pub b_to_a: Direction,
}

/// The caller's and the callee's `rtpfleet` of one media segment.
#[derive(Debug)]
pub(super) struct Fleets {
    caller: Process,
    callee: Process,
    caller_report: PathBuf,
    callee_report: PathBuf,
    deadline: Instant,
}

impl Fleets {
    /// Starts both fleets for segment `segment` of `secs` seconds and, once both have bound their sockets (so that
    /// no stream starts towards a side that cannot receive yet), writes their targets files: the caller's fleet
    /// sends stream i to `to_callee[i]`, the address the target's 200 named for call i; the callee's to
    /// `to_caller[i]`, from the INVITE it received.
    pub(super) fn start(
        opts: &Options,
        path: &CallPath,
        scratch: &Path,
        segment: usize,
        secs: u32,
        to_callee: &[SocketAddr],
        to_caller: &[SocketAddr],
    ) -> Result<Self> {
        let offset = (segment as u32) << 16;
        let (mut caller, caller_report, caller_targets) = fleet(
            opts,
            scratch,
            &format!("caller{segment}"),
            &path.uac,
            UAC_RTP_PORT,
            to_callee.len(),
            SSRC_CALLER + offset,
            SSRC_CALLEE + offset,
            secs,
        )?;
        let (mut callee, callee_report, callee_targets) = fleet(
            opts,
            scratch,
            &format!("callee{segment}"),
            &path.uas,
            UAS_RTP_PORT,
            to_caller.len(),
            SSRC_CALLEE + offset,
            SSRC_CALLER + offset,
            secs,
        )?;
        wait_bound(&mut caller, &path.uac, UAC_RTP_PORT)?;
        wait_bound(&mut callee, &path.uas, UAS_RTP_PORT)?;
        for (file, targets) in [(&caller_targets, to_callee), (&callee_targets, to_caller)] {
            let text: String = targets.iter().map(|a| format!("{a}\n")).collect();
            ::tests::write_atomically(file, &text)?;
        }
        let deadline = Instant::now() + Duration::from_secs(u64::from(secs) + 20);
        Ok(Self { caller, callee, caller_report, callee_report, deadline })
    }

    /// Both reports once both fleets have exited; `None` while one runs. Fails when one failed or overran.
    pub(super) fn poll(&mut self) -> Result<Option<(FleetReport, FleetReport)>> {
        let caller = self.caller.try_wait()?;
        let callee = self.callee.try_wait()?;
        let (Some(caller), Some(callee)) = (caller, callee) else {
            if Instant::now() > self.deadline {
                self.caller.kill();
                self.callee.kill();
                bail!(
                    "rtpfleet still running at its deadline:\n{}\n{}",
                    self.caller.output_tail(),
                    self.callee.output_tail()
                );
            }
            return Ok(None);
        };
        for (status, p) in [(caller, &self.caller), (callee, &self.callee)] {
            if !status.success() {
                bail!("rtpfleet ended with {status}: {}", p.output_tail());
            }
        }
        Ok(Some((read_fleet_report(&self.caller_report)?, read_fleet_report(&self.callee_report)?)))
    }
}

/// Starts one `rtpfleet` of `streams` streams on `side` (in its namespace, or here), bound to the side's address
/// and `port`; returns it, the path of its report and the path of the targets file it waits for.
#[allow(clippy::too_many_arguments)]
fn fleet(
    opts: &Options,
    scratch: &Path,
    name: &str,
    side: &Side,
    port: u16,
    streams: usize,
    ssrc: u32,
    expect: u32,
    secs: u32,
) -> Result<(Process, PathBuf, PathBuf)> {
    let targets_file = scratch.join(format!("{name}.targets"));
    let report = scratch.join(format!("{name}.json"));
    let args =
        Rtpfleet::new(SocketAddr::new(side.ip, port), &targets_file, streams, opts.pps, u64::from(secs), ssrc, &report)
            .payload(usize::from(opts.payload))
            .expect_ssrc_base(expect)
            .idle_exit(Duration::from_millis(FLEET_IDLE_MS))
            .duration(Duration::from_secs(u64::from(secs) + 5))
            .args();
    let p = Process::spawn(side.ns.as_deref(), name, &opts.rtpfleet, &args, scratch)
        .with_context(|| format!("starting rtpfleet {name}"))?;
    if opts.pinned {
        target::pin(p.id(), SIPP_CORE)?;
    }
    Ok((p, report, targets_file))
}

/// Waits until `fleet` has bound UDP `port` on `side` (per `ss`), failing if it exits first or after 5 s.
fn wait_bound(fleet: &mut Process, side: &Side, port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = fleet.try_wait()? {
            bail!("rtpfleet ended with {status} before it bound port {port}: {}", fleet.output_tail());
        }
        let filter = format!("sport = :{port}");
        let out = ::tests::netns::run(::tests::netns::command(side.ns.as_deref(), "ss").args(["-Hlun", &filter]))?;
        if !out.trim().is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("rtpfleet has not bound {}:{port} after 5 s: {}", side.ip, fleet.output_tail());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The parts of an `rtpfleet` report (tests/src/bin/rtpfleet.rs) the bench uses.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(super) struct FleetReport {
    sent: u64,
    send_errors: u64,
    max_send_lag_ms: f64,
    received: u64,
    ssrcs_seen: u64,
    latency_us: Option<FleetLatency>,
    jitter_us: Option<FleetJitter>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
struct FleetLatency {
    p50: u64,
    p99: u64,
    max: u64,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
struct FleetJitter {
    mean: f64,
    max: f64,
}

fn read_fleet_report(path: &Path) -> Result<FleetReport> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// One direction over the segments: `tx` the sender's reports, `rx` the receiver's, segment by segment.
fn direction(expected: u64, pairs: &[(&FleetReport, &FleetReport)]) -> Direction {
    let sent: u64 = pairs.iter().map(|(tx, _)| tx.sent).sum();
    let received: u64 = pairs.iter().map(|(_, rx)| rx.received).sum();
    let lost = sent.saturating_sub(received);
    let lat: Vec<FleetLatency> = pairs.iter().filter_map(|(_, rx)| rx.latency_us).collect();
    let jit: Vec<FleetJitter> = pairs.iter().filter_map(|(_, rx)| rx.jitter_us).collect();
    let p50s: Vec<f64> = lat.iter().map(|l| l.p50 as f64).collect();
    let jitter_means: Vec<f64> = jit.iter().map(|j| j.mean).collect();
    Direction {
        expected,
        sent,
        send_errors: pairs.iter().map(|(tx, _)| tx.send_errors).sum(),
        received,
        lost,
        loss_pct: if sent == 0 { 100.0 } else { 100.0 * lost as f64 / sent as f64 },
        streams_seen: pairs.iter().map(|(_, rx)| rx.ssrcs_seen).min().unwrap_or(0),
        latency_p50_us: median(&p50s).map(|v| v.round() as u64),
        latency_p99_us: lat.iter().map(|l| l.p99).max(),
        latency_max_us: lat.iter().map(|l| l.max).max(),
        jitter_mean_us: crate::stats::mean(&jitter_means),
        jitter_max_us: jit.iter().map(|j| j.max).reduce(f64::max),
        max_send_lag_ms: pairs.iter().map(|(tx, _)| tx.max_send_lag_ms).fold(0.0, f64::max),
    }
}

/// The media of a run from its segments' (caller, callee) reports.
pub(super) fn media_of(opts: &Options, streams: usize, segments: &[(FleetReport, FleetReport)]) -> Media {
    let expected = streams as u64 * u64::from(opts.pps) * u64::from(opts.hold_secs);
    let ab: Vec<_> = segments.iter().map(|(caller, callee)| (caller, callee)).collect();
    let ba: Vec<_> = segments.iter().map(|(caller, callee)| (callee, caller)).collect();
    Media {
        streams: streams as u64,
        seconds: opts.hold_secs,
        a_to_b: direction(expected, &ab),
        b_to_a: direction(expected, &ba),
    }
}

/// Builds what the run needs ([`crate::binaries::build`]) and returns `rtpfleet` in this binary's profile (it must
/// sit next to this binary).
pub fn prepare_rtpfleet() -> Result<PathBuf> {
    crate::binaries::build()?;
    crate::binaries::binary(crate::binaries::this_dir()?, "rtpfleet")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directions_add_up_over_segments() {
        let seg = |sent, received, p50, p99, jitter| {
            let tx = FleetReport { sent, ..FleetReport::default() };
            let rx = FleetReport {
                received,
                ssrcs_seen: 200,
                latency_us: Some(FleetLatency { p50, p99, max: p99 * 2 }),
                jitter_us: Some(FleetJitter { mean: jitter, max: jitter * 3.0 }),
                ..FleetReport::default()
            };
            (tx, rx)
        };
        let (a, b) = (seg(1000, 990, 100, 400, 20.0), seg(1000, 1000, 200, 300, 40.0));
        let d = super::direction(2000, &[(&a.0, &a.1), (&b.0, &b.1)]);
        assert_eq!((d.sent, d.received, d.lost), (2000, 1990, 10));
        assert!((d.loss_pct - 0.5).abs() < 1e-12);
        assert_eq!((d.latency_p50_us, d.latency_p99_us, d.latency_max_us), (Some(150), Some(400), Some(800)));
        assert_eq!((d.jitter_mean_us, d.jitter_max_us), (Some(30.0), Some(120.0)));
        assert_eq!(super::direction(10, &[]).loss_pct, 100.0);
    }
}
