//! Real RTP for the integration tests: the packet format of the `rtpgen` helper binary (one RTP endpoint per
//! process, sending and receiving on one UDP socket, run inside namespaces with `ip netns exec NS rtpgen ...`), its
//! JSON [`Report`], [`Rtpgen`], a builder for its command line, and [`Jitter`], the RFC 3550 interarrival jitter
//! estimate that `rtpgen` and `rtpfleet` report.
//!
//! Packet format (what `rtpgen` sends and checks):
//!
//! - RTP header: version 2, no padding, extension or CSRCs; marker on the first packet (index 0); payload type
//!   `--pt`; sequence number [`seq_base`]`(ssrc) + i` and timestamp [`timestamp_base`]`(ssrc) + i * payload_len`
//!   (160 samples per 20 ms at 8000 Hz for PCMU/PCMA), both wrapping.
//! - Payload: the index `i` (0-based count of packets this sender sent) as u64 big-endian, the send time as u64
//!   big-endian nanoseconds since the Unix epoch (CLOCK_REALTIME, shared by all namespaces of a host, so one-way
//!   latency is measurable), then [`fill_pattern`]`(ssrc, i)`: a deterministic byte pattern the receiver checks byte
//!   for byte without being told anything else.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Length of the fixed RTP header (no CSRCs, no extension).
pub const HEADER_LEN: usize = 12;
/// Length of the index and send time at the start of every payload.
pub const STAMP_LEN: usize = 16;
/// The largest payload `rtpgen` sends (fits a 1500-byte MTU with IPv4/IPv6, UDP and RTP headers).
pub const MAX_PAYLOAD: usize = 1400;

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64's finaliser: a cheap, well-mixing bijection on u64.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The sequence number of packet 0 of the stream with this SSRC.
pub fn seq_base(ssrc: u32) -> u16 {
    (mix(u64::from(ssrc) ^ 0x7365_7100) >> 48) as u16
}

/// The RTP timestamp of packet 0 of the stream with this SSRC.
pub fn timestamp_base(ssrc: u32) -> u32 {
    (mix(u64::from(ssrc) ^ 0x7473_0000) >> 32) as u32
}

/// Fills `out` with the pattern of packet `index` of stream `ssrc` (the payload after its first [`STAMP_LEN`]
/// bytes).
pub fn fill_pattern(ssrc: u32, index: u64, out: &mut [u8]) {
    let mut state = mix(u64::from(ssrc).wrapping_mul(GOLDEN) ^ mix(index));
    for chunk in out.chunks_mut(8) {
        state = state.wrapping_add(GOLDEN);
        chunk.copy_from_slice(&mix(state).to_be_bytes()[..chunk.len()]);
    }
}

/// Whether `rest` is exactly the pattern of packet `index` of stream `ssrc` (compared without allocating).
pub fn pattern_matches(ssrc: u32, index: u64, rest: &[u8]) -> bool {
    let mut state = mix(u64::from(ssrc).wrapping_mul(GOLDEN) ^ mix(index));
    rest.chunks(8).all(|chunk| {
        state = state.wrapping_add(GOLDEN);
        chunk == &mix(state).to_be_bytes()[..chunk.len()]
    })
}

/// The payload of packet `index` of stream `ssrc`, sent at `send_unix_ns`, `len` bytes long (at least
/// [`STAMP_LEN`]; shorter lengths are padded up to it).
pub fn build_payload(ssrc: u32, index: u64, send_unix_ns: u64, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len.max(STAMP_LEN)];
    p[..8].copy_from_slice(&index.to_be_bytes());
    p[8..STAMP_LEN].copy_from_slice(&send_unix_ns.to_be_bytes());
    fill_pattern(ssrc, index, &mut p[STAMP_LEN..]);
    p
}

/// What the first [`STAMP_LEN`] bytes of a payload say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The sender's 0-based packet index.
    pub index: u64,
    /// When it was sent, nanoseconds since the Unix epoch.
    pub send_unix_ns: u64,
}

/// The stamp of a payload of stream `ssrc` if the payload is intact (long enough, and the rest is exactly the
/// pattern for its index); `None` if it is corrupt.
pub fn check_payload(ssrc: u32, payload: &[u8]) -> Option<Stamp> {
    if payload.len() < STAMP_LEN {
        return None;
    }
    let index = u64::from_be_bytes(payload[..8].try_into().ok()?);
    let send_unix_ns = u64::from_be_bytes(payload[8..STAMP_LEN].try_into().ok()?);
    pattern_matches(ssrc, index, &payload[STAMP_LEN..]).then_some(Stamp { index, send_unix_ns })
}

/// The RTP header fields `rtpgen` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// The marker bit.
    pub marker: bool,
    /// Payload type (7 bits).
    pub payload_type: u8,
    /// Sequence number.
    pub sequence: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
}

impl RtpHeader {
    /// The header of packet `index` of stream `ssrc` with `payload_len`-byte payloads (one sample per byte, as for
    /// G.711), as `rtpgen` sends it.
    pub fn for_packet(ssrc: u32, payload_type: u8, index: u64, payload_len: usize) -> Self {
        RtpHeader {
            marker: index == 0,
            payload_type: payload_type & 0x7f,
            sequence: seq_base(ssrc).wrapping_add(index as u16),
            timestamp: timestamp_base(ssrc).wrapping_add((index as u32).wrapping_mul(payload_len as u32)),
            ssrc,
        }
    }

    /// The 12 header bytes (version 2, no padding, extension or CSRCs).
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0] = 0x80;
        b[1] = (u8::from(self.marker) << 7) | (self.payload_type & 0x7f);
        b[2..4].copy_from_slice(&self.sequence.to_be_bytes());
        b[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        b[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        b
    }
}

/// A whole RTP packet: `header` followed by `payload`.
pub fn packet(header: &RtpHeader, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(HEADER_LEN + payload.len());
    p.extend_from_slice(&header.to_bytes());
    p.extend_from_slice(payload);
    p
}

/// Parses an RTP packet: the header and the payload (after CSRCs and any header extension, without padding).
/// `None` if it is not RTP version 2 or its lengths do not add up.
pub fn parse(datagram: &[u8]) -> Option<(RtpHeader, &[u8])> {
    if datagram.len() < HEADER_LEN || datagram[0] >> 6 != 2 {
        return None;
    }
    let csrc_count = usize::from(datagram[0] & 0x0f);
    let mut start = HEADER_LEN + 4 * csrc_count;
    if datagram[0] & 0x10 != 0 {
        let ext = datagram.get(start..start + 4)?;
        start += 4 + 4 * usize::from(u16::from_be_bytes([ext[2], ext[3]]));
    }
    let mut end = datagram.len();
    if datagram[0] & 0x20 != 0 {
        let pad = usize::from(*datagram.last()?);
        if pad == 0 {
            return None;
        }
        end = end.checked_sub(pad)?;
    }
    let payload = datagram.get(start..end)?;
    let header = RtpHeader {
        marker: datagram[1] & 0x80 != 0,
        payload_type: datagram[1] & 0x7f,
        sequence: u16::from_be_bytes([datagram[2], datagram[3]]),
        timestamp: u32::from_be_bytes([datagram[4], datagram[5], datagram[6], datagram[7]]),
        ssrc: u32::from_be_bytes([datagram[8], datagram[9], datagram[10], datagram[11]]),
    };
    Some((header, payload))
}

/// One-way latency percentiles in microseconds (receive time minus the send time in the payload, both
/// CLOCK_REALTIME).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 99th percentile (nearest rank).
    pub p99: u64,
    /// Largest.
    pub max: u64,
}

impl Latency {
    /// Nearest-rank percentiles of `samples` (sorted in place); `None` if empty.
    pub fn of(samples: &mut [u64]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let rank = |p: usize| samples[(p * samples.len()).div_ceil(100).max(1) - 1];
        Some(Latency { p50: rank(50), p99: rank(99), max: samples[samples.len() - 1] })
    }
}

/// The interarrival jitter estimate of RFC 3550 §6.4.1, in microseconds, from the send time in each payload and
/// the receive time, instead of RTP timestamps: for consecutive packets i, j in order of arrival,
/// `D = (R_j - R_i) - (S_j - S_i)` and `J += (|D| - J) / 16`. A stream whose packets all take equally long has
/// J = 0 whatever that time; J grows with the variation of the one-way delay from packet to packet.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Jitter {
    /// J, microseconds.
    estimate_us: f64,
    /// The send and receive times of the previous packet, nanoseconds.
    previous: Option<(u64, u64)>,
    /// Whether J has been updated at least once (two packets seen).
    updated: bool,
}

impl Jitter {
    /// Feeds the next packet in order of arrival: its send time (from the payload) and receive time, both in
    /// nanoseconds since the Unix epoch. Duplicates and corrupt packets should not be fed.
    pub fn update(&mut self, send_unix_ns: u64, recv_unix_ns: u64) {
        if let Some((send, recv)) = self.previous {
            let transit_change =
                (i128::from(recv_unix_ns) - i128::from(recv)) - (i128::from(send_unix_ns) - i128::from(send));
            let d_us = transit_change.unsigned_abs() as f64 / 1_000.0;
            self.estimate_us += (d_us - self.estimate_us) / 16.0;
            self.updated = true;
        }
        self.previous = Some((send_unix_ns, recv_unix_ns));
    }

    /// J in microseconds; `None` before the second packet.
    pub fn us(&self) -> Option<f64> {
        self.updated.then_some(self.estimate_us)
    }
}

/// What one `rtpgen` run saw: printed as one JSON object on stdout (its `.out` file under
/// [`crate::netns::Topology::spawn`]) and written to `--report PATH`. The verdict is the test's.
///
/// "The stream" is the packets whose SSRC is `expect_ssrc` (`--expect-ssrc`, or else the first SSRC seen).
///
/// `rtpgen` adds `jitter_us` to the JSON: the stream's interarrival [`Jitter`] in microseconds at the end of the run
/// (`null` with fewer than two packets). Read it from the JSON value; parsing into `Report` ignores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The local address bound.
    pub bind: SocketAddr,
    /// Where it sent (from `--to`, or read from `--to-file`); `None` if it had no target (or the file never
    /// appeared).
    pub to: Option<SocketAddr>,
    /// The SSRC it sent with.
    pub ssrc: u32,
    /// The SSRC of the stream it checked: `--expect-ssrc`, or the first one seen; `None` if nothing arrived.
    pub expect_ssrc: Option<u32>,
    /// Packets sent successfully.
    pub sent: u64,
    /// Failed sends (ENETUNREACH, EPERM, ...), skipped; never fatal. Not ICMP port unreachable: the socket is
    /// unconnected (it receives from any source) and Linux does not report ICMP errors on such sockets.
    pub send_errors: u64,
    /// The last send error, for the test's failure message.
    pub last_send_error: Option<String>,
    /// Distinct intact packets of the stream received.
    pub received: u64,
    /// Packets of the stream whose payload is not what the sender put there (pattern mismatch, too short, or a
    /// length different from the stream's first intact packet).
    pub corrupt: u64,
    /// Intact packets whose index was lower than that of the previous intact packet.
    pub reordered: u64,
    /// Intact packets whose index had already been received.
    pub duplicates: u64,
    /// `last_index + 1 - received`: packets the sender numbered up to the highest index seen that did not arrive
    /// intact (packets lost at the end are invisible here; compare `last_index` with the sender's count).
    pub lost: u64,
    /// Intact packets whose RTP sequence number is not `seq_base(ssrc) + index` (a relay rewrote it).
    pub seq_mismatch: u64,
    /// RTP packets with another SSRC than `expect_ssrc` (ignored otherwise).
    pub other_ssrc: u64,
    /// Datagrams that are not RTP version 2.
    pub not_rtp: u64,
    /// The lowest index received intact.
    pub first_index: Option<u64>,
    /// The highest index received intact.
    pub last_index: Option<u64>,
    /// Source address of the first datagram received (any datagram).
    pub first_source: Option<SocketAddr>,
    /// Distinct source addresses of all datagrams, in order of first appearance, at most 16.
    pub sources: Vec<SocketAddr>,
    /// Datagrams from another source than `first_source`.
    pub foreign_sources: u64,
    /// One-way latency of the stream's intact packets (the first million samples; `max` over all).
    pub latency_us: Option<Latency>,
    /// When the first intact packet of the stream arrived, nanoseconds since the Unix epoch.
    pub first_rx_unix_ns: Option<u64>,
    /// When the last intact packet of the stream arrived.
    pub last_rx_unix_ns: Option<u64>,
    /// The largest interval between consecutive intact packets of the stream, in milliseconds (0 with fewer than
    /// two).
    pub max_gap_ms: f64,
    /// The stream's RFC 3550 interarrival jitter at the end, in microseconds (see [`Jitter`]); absent in reports
    /// of senders.
    #[serde(default)]
    pub jitter_us: Option<f64>,
    /// How long the run took, in milliseconds.
    pub elapsed_ms: u64,
    /// Why it stopped: `expected-count`, `idle`, or `duration`.
    pub exit_reason: String,
}

/// Reads a report written by `rtpgen` (`--report PATH`, or its stdout: the last line that is a JSON object).
pub fn read_report(path: impl AsRef<Path>) -> Result<Report> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).with_context(|| format!("reading rtpgen report {}", path.display()))?;
    parse_report(&text).with_context(|| format!("rtpgen report {}", path.display()))
}

/// Parses a report from `text`: the whole text, or else its last line that starts with `{`.
pub fn parse_report(text: &str) -> Result<Report> {
    if let Ok(r) = serde_json::from_str(text) {
        return Ok(r);
    }
    let Some(line) = text.lines().rev().find(|l| l.trim_start().starts_with('{')) else {
        bail!("no JSON object in {:?}", text.chars().take(200).collect::<String>());
    };
    serde_json::from_str(line).with_context(|| format!("parsing {line}"))
}

/// The `rtpgen` helper binary of this crate. Cargo builds it with the integration tests, next to their `deps/`
/// directory.
pub fn rtpgen_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("current_exe")?;
    let candidates =
        [exe.parent().map(|d| d.join("rtpgen")), exe.parent().and_then(Path::parent).map(|d| d.join("rtpgen"))];
    candidates.into_iter().flatten().find(|p| p.is_file()).with_context(|| {
        format!("the rtpgen helper is not built next to {}; run `cargo build -p tests --bins`", exe.display())
    })
}

/// The command line of one `rtpgen` endpoint; unset options keep `rtpgen`'s defaults.
///
/// ```no_run
/// # use tests::rtp::{rtpgen_binary, Rtpgen};
/// # use tests::netns::{Host, Topology};
/// # fn f(topology: &Topology) -> anyhow::Result<()> {
/// let args = Rtpgen::new("198.18.1.10:4000".parse()?).to("198.18.1.1:20000".parse()?).count(250).args();
/// let _a = topology.spawn(Host::A, "rtp-a", rtpgen_binary()?, &args)?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Rtpgen {
    bind: SocketAddr,
    to: Option<SocketAddr>,
    to_file: Option<PathBuf>,
    count: Option<u64>,
    pps: Option<u32>,
    ssrc: Option<u32>,
    payload: Option<usize>,
    pt: Option<u8>,
    expect_ssrc: Option<u32>,
    expect_count: Option<u64>,
    start_delay: Option<Duration>,
    duration: Option<Duration>,
    idle_exit: Option<Duration>,
    report: Option<PathBuf>,
}

impl Rtpgen {
    /// An endpoint bound to `bind` that only receives until configured to send.
    pub fn new(bind: SocketAddr) -> Self {
        Rtpgen {
            bind,
            to: None,
            to_file: None,
            count: None,
            pps: None,
            ssrc: None,
            payload: None,
            pt: None,
            expect_ssrc: None,
            expect_count: None,
            start_delay: None,
            duration: None,
            idle_exit: None,
            report: None,
        }
    }

    /// Sends to `addr` (`--to`).
    pub fn to(mut self, addr: SocketAddr) -> Self {
        self.to = Some(addr);
        self
    }

    /// Sends to the `IP:PORT` that appears in `path` once it does (`--to-file`).
    pub fn to_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.to_file = Some(path.into());
        self
    }

    /// Number of packets to send (`--count`).
    pub fn count(mut self, n: u64) -> Self {
        self.count = Some(n);
        self
    }

    /// Packets per second (`--pps`; 50 = 20 ms ptime).
    pub fn pps(mut self, r: u32) -> Self {
        self.pps = Some(r);
        self
    }

    /// SSRC to send with (`--ssrc`).
    pub fn ssrc(mut self, x: u32) -> Self {
        self.ssrc = Some(x);
        self
    }

    /// Payload bytes per packet (`--payload`, 16..=1400).
    pub fn payload(mut self, n: usize) -> Self {
        self.payload = Some(n);
        self
    }

    /// Payload type (`--pt`).
    pub fn pt(mut self, pt: u8) -> Self {
        self.pt = Some(pt);
        self
    }

    /// Only the stream with this SSRC is checked (`--expect-ssrc`).
    pub fn expect_ssrc(mut self, y: u32) -> Self {
        self.expect_ssrc = Some(y);
        self
    }

    /// Stop (once sending is done) when this many distinct intact packets arrived (`--expect-count`; default: the
    /// count sent).
    pub fn expect_count(mut self, n: u64) -> Self {
        self.expect_count = Some(n);
        self
    }

    /// Wait this long after the target is known before the first packet (`--start-delay-ms`).
    pub fn start_delay(mut self, d: Duration) -> Self {
        self.start_delay = Some(d);
        self
    }

    /// Hard limit of the whole run (`--duration-ms`).
    pub fn duration(mut self, d: Duration) -> Self {
        self.duration = Some(d);
        self
    }

    /// Stop this long after the last packet arrived, once sending is done (`--idle-exit-ms`).
    pub fn idle_exit(mut self, d: Duration) -> Self {
        self.idle_exit = Some(d);
        self
    }

    /// Also write the report to `path` (`--report`).
    pub fn report(mut self, path: impl Into<PathBuf>) -> Self {
        self.report = Some(path.into());
        self
    }

    /// The arguments for `rtpgen`.
    pub fn args(&self) -> Vec<String> {
        let mut a = vec!["--bind".to_owned(), self.bind.to_string()];
        let mut opt = |flag: &str, value: Option<String>| {
            if let Some(v) = value {
                a.push(flag.to_owned());
                a.push(v);
            }
        };
        let ms = |d: Option<Duration>| d.map(|d| d.as_millis().to_string());
        opt("--to", self.to.map(|x| x.to_string()));
        opt("--to-file", self.to_file.as_ref().map(|p| p.display().to_string()));
        opt("--count", self.count.map(|x| x.to_string()));
        opt("--pps", self.pps.map(|x| x.to_string()));
        opt("--ssrc", self.ssrc.map(|x| x.to_string()));
        opt("--payload", self.payload.map(|x| x.to_string()));
        opt("--pt", self.pt.map(|x| x.to_string()));
        opt("--expect-ssrc", self.expect_ssrc.map(|x| x.to_string()));
        opt("--expect-count", self.expect_count.map(|x| x.to_string()));
        opt("--start-delay-ms", ms(self.start_delay));
        opt("--duration-ms", ms(self.duration));
        opt("--idle-exit-ms", ms(self.idle_exit));
        opt("--report", self.report.as_ref().map(|p| p.display().to_string()));
        a
    }
}

/// The `rtpfleet` helper (tests/src/bin/rtpfleet.rs), next to `rtpgen`.
pub fn rtpfleet_binary() -> Result<PathBuf> {
    let path = rtpgen_binary()?.with_file_name("rtpfleet");
    if !path.is_file() {
        bail!("{} is not built; run `cargo build -p tests --bins`", path.display());
    }
    Ok(path)
}

/// Waits (at most `limit`) for the `rtpfleet` or `rtpgen` process `p` to end successfully and reads the report it
/// wrote to `path`.
pub fn wait_report(p: &mut crate::netns::Process, path: &Path, limit: Duration) -> Result<serde_json::Value> {
    let status = p.wait_timeout(limit)?;
    if !status.success() {
        bail!("{} failed ({status}): {}", path.display(), p.output_tail());
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("{}; {}", path.display(), p.output_tail()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

/// The command line of one `rtpfleet`: one side of `streams` calls, sending `pps_per_stream` packets a second for
/// `seconds` on every stream to the addresses its targets file lists, and telling the streams it receives apart by
/// SSRC. Unset options keep `rtpfleet`'s defaults.
#[derive(Debug, Clone)]
pub struct Rtpfleet {
    bind: SocketAddr,
    targets_file: PathBuf,
    streams: usize,
    pps_per_stream: u32,
    seconds: u64,
    ssrc_base: u32,
    report: PathBuf,
    expect_ssrc_base: Option<u32>,
    payload: Option<usize>,
    idle_exit: Option<Duration>,
    duration: Option<Duration>,
    rx_rt_priority: Option<u8>,
}

impl Rtpfleet {
    /// A fleet bound to `bind`, waiting for `streams` addresses in `targets_file`, reporting to `report`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        bind: SocketAddr,
        targets_file: impl Into<PathBuf>,
        streams: usize,
        pps_per_stream: u32,
        seconds: u64,
        ssrc_base: u32,
        report: impl Into<PathBuf>,
    ) -> Self {
        Self {
            bind,
            targets_file: targets_file.into(),
            streams,
            pps_per_stream,
            seconds,
            ssrc_base,
            report: report.into(),
            expect_ssrc_base: None,
            payload: None,
            idle_exit: None,
            duration: None,
            rx_rt_priority: None,
        }
    }

    /// Track only the SSRCs `y..y + streams` (the other side's).
    pub fn expect_ssrc_base(mut self, y: u32) -> Self {
        self.expect_ssrc_base = Some(y);
        self
    }

    /// RTP payload bytes (default 160).
    pub fn payload(mut self, n: usize) -> Self {
        self.payload = Some(n);
        self
    }

    /// Stop once sending is done and nothing arrived for `d`.
    pub fn idle_exit(mut self, d: Duration) -> Self {
        self.idle_exit = Some(d);
        self
    }

    /// Stop after `d` in any case.
    pub fn duration(mut self, d: Duration) -> Self {
        self.duration = Some(d);
        self
    }

    /// Drain the socket from a SCHED_FIFO thread at priority `p` (1..=99).
    pub fn rx_rt_priority(mut self, p: u8) -> Self {
        self.rx_rt_priority = Some(p);
        self
    }

    /// The arguments, without the program name.
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = [
            ("--bind", self.bind.to_string()),
            ("--targets-file", self.targets_file.display().to_string()),
            ("--streams", self.streams.to_string()),
            ("--pps-per-stream", self.pps_per_stream.to_string()),
            ("--seconds", self.seconds.to_string()),
            ("--ssrc-base", format!("{:#x}", self.ssrc_base)),
            ("--report", self.report.display().to_string()),
        ]
        .into_iter()
        .flat_map(|(f, v)| [f.to_owned(), v])
        .collect();
        let mut opt = |flag: &str, value: Option<String>| {
            if let Some(v) = value {
                a.push(flag.to_owned());
                a.push(v);
            }
        };
        let ms = |d: Option<Duration>| d.map(|d| d.as_millis().to_string());
        opt("--expect-ssrc-base", self.expect_ssrc_base.map(|y| format!("{y:#x}")));
        opt("--payload", self.payload.map(|x| x.to_string()));
        opt("--idle-exit-ms", ms(self.idle_exit));
        opt("--duration-ms", ms(self.duration));
        opt("--rx-rt-priority", self.rx_rt_priority.map(|x| x.to_string()));
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_and_detects_any_changed_byte() {
        for len in [16, 17, 23, 24, 160, 1400] {
            let p = build_payload(0xdead_beef, 42, 1_700_000_000_123_456_789, len);
            assert_eq!(p.len(), len);
            assert_eq!(
                check_payload(0xdead_beef, &p),
                Some(Stamp { index: 42, send_unix_ns: 1_700_000_000_123_456_789 })
            );
            for i in STAMP_LEN..len {
                let mut bad = p.clone();
                bad[i] ^= 0x01;
                assert_eq!(check_payload(0xdead_beef, &bad), None, "len {len}, byte {i}");
            }
        }
    }

    #[test]
    fn pattern_depends_on_ssrc_and_index() {
        let p = build_payload(1, 7, 0, 160);
        assert_eq!(check_payload(2, &p), None, "other ssrc");
        let mut q = p.clone();
        q[..8].copy_from_slice(&8u64.to_be_bytes());
        assert_eq!(check_payload(1, &q), None, "other index");
        assert_ne!(build_payload(1, 7, 0, 160), build_payload(1, 8, 0, 160));
        assert_eq!(check_payload(1, &p[..15]), None, "too short");
        let mut out = [0u8; 32];
        fill_pattern(1, 7, &mut out);
        assert_eq!(&out[..], &p[STAMP_LEN..STAMP_LEN + 32]);
        assert!(out.iter().any(|&b| b != 0));
    }

    #[test]
    fn header_round_trips() {
        for index in [0u64, 1, 65_535, 65_536, 1 << 40] {
            let h = RtpHeader::for_packet(0x1234_5678, 8, index, 160);
            assert_eq!(h.marker, index == 0);
            assert_eq!(h.sequence, seq_base(0x1234_5678).wrapping_add(index as u16));
            let payload = build_payload(0x1234_5678, index, 5, 160);
            let pkt = packet(&h, &payload);
            assert_eq!(pkt[0], 0x80);
            let (parsed, body) = parse(&pkt).expect("parses");
            assert_eq!(parsed, h);
            assert_eq!(body, &payload[..]);
        }
        let h1 = RtpHeader::for_packet(9, 0, 1, 160);
        let h2 = RtpHeader::for_packet(9, 0, 2, 160);
        assert_eq!(h2.timestamp.wrapping_sub(h1.timestamp), 160);
    }

    #[test]
    fn parse_handles_csrcs_extension_padding_and_rejects_garbage() {
        let payload = build_payload(5, 3, 0, 20);
        let mut pkt = vec![0x80 | 0x20 | 0x10 | 0x01, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 5];
        pkt.extend_from_slice(&[0xaa; 4]); // 1 CSRC
        pkt.extend_from_slice(&[0xbe, 0xde, 0, 1, 1, 2, 3, 4]); // extension, 1 word
        pkt.extend_from_slice(&payload);
        pkt.extend_from_slice(&[0, 0, 3]); // 3 bytes of padding
        let (h, body) = parse(&pkt).expect("parses");
        assert_eq!(h.ssrc, 5);
        assert_eq!(body, &payload[..]);
        assert_eq!(check_payload(5, body).map(|s| s.index), Some(3));
        assert!(parse(&[0x80; 11]).is_none(), "short");
        assert!(parse(&[0x40; 20]).is_none(), "version 1");
        let mut bad_ext = vec![0x90u8, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 5, 0xbe, 0xde, 0, 9];
        bad_ext.extend_from_slice(&[0; 8]);
        assert!(parse(&bad_ext).is_none(), "extension longer than the packet");
        let mut bad_pad = vec![0xa0u8, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 5, 1];
        bad_pad.push(200);
        assert!(parse(&bad_pad).is_none(), "padding longer than the packet");
    }

    #[test]
    fn latency_percentiles() {
        assert_eq!(Latency::of(&mut []), None);
        assert_eq!(Latency::of(&mut [7]), Some(Latency { p50: 7, p99: 7, max: 7 }));
        let mut v: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(Latency::of(&mut v), Some(Latency { p50: 50, p99: 99, max: 100 }));
    }

    #[test]
    fn jitter_is_zero_for_constant_spacing_whatever_the_delay() {
        let mut j = Jitter::default();
        assert_eq!(j.us(), None);
        for i in 0..1000u64 {
            // Sent every 20 ms, each packet 3.5 ms in transit.
            j.update(i * 20_000_000, i * 20_000_000 + 3_500_000);
        }
        assert_eq!(j.us(), Some(0.0));
    }

    #[test]
    fn jitter_of_alternating_delays_converges_to_their_difference() {
        // Transit alternates 1 ms / 3 ms: |D| is 2000 us for every packet after the first, so J after k updates is
        // 2000 * (1 - (15/16)^k), and 2000 us in the steady state.
        let mut j = Jitter::default();
        let transit = |i: u64| if i.is_multiple_of(2) { 1_000_000 } else { 3_000_000 };
        j.update(0, transit(0));
        j.update(20_000_000, 20_000_000 + transit(1));
        assert_eq!(j.us(), Some(2000.0 / 16.0));
        for i in 2..=16u64 {
            j.update(i * 20_000_000, i * 20_000_000 + transit(i));
        }
        let expected_16 = 2000.0 * (1.0 - (15.0f64 / 16.0).powi(16));
        assert!((j.us().unwrap() - expected_16).abs() < 1e-6, "{:?} vs {expected_16}", j.us());
        for i in 17..1000u64 {
            j.update(i * 20_000_000, i * 20_000_000 + transit(i));
        }
        assert!((j.us().unwrap() - 2000.0).abs() < 1e-6, "{:?}", j.us());
        // A packet that arrives before the previous one's receive time (reordering) counts by magnitude too.
        let mut r = Jitter::default();
        r.update(20_000_000, 25_000_000);
        r.update(0, 21_000_000);
        assert_eq!(r.us(), Some(16_000.0 / 16.0));
    }

    #[test]
    fn builder_args_and_report_parsing() {
        let args = Rtpgen::new("127.0.0.1:4000".parse().unwrap())
            .to("127.0.0.1:4002".parse().unwrap())
            .count(10)
            .pps(200)
            .ssrc(17)
            .expect_ssrc(18)
            .duration(Duration::from_secs(5))
            .idle_exit(Duration::from_millis(300))
            .report("/tmp/r.json")
            .args();
        assert_eq!(
            args.join(" "),
            "--bind 127.0.0.1:4000 --to 127.0.0.1:4002 --count 10 --pps 200 --ssrc 17 --expect-ssrc 18 \
             --duration-ms 5000 --idle-exit-ms 300 --report /tmp/r.json"
        );
        let report = Report {
            bind: "127.0.0.1:4000".parse().unwrap(),
            to: None,
            ssrc: 1,
            expect_ssrc: Some(2),
            sent: 0,
            send_errors: 0,
            last_send_error: None,
            received: 3,
            corrupt: 0,
            reordered: 0,
            duplicates: 0,
            lost: 0,
            seq_mismatch: 0,
            other_ssrc: 0,
            not_rtp: 0,
            first_index: Some(0),
            last_index: Some(2),
            first_source: Some("127.0.0.1:4002".parse().unwrap()),
            sources: vec!["127.0.0.1:4002".parse().unwrap()],
            foreign_sources: 0,
            latency_us: Some(Latency { p50: 1, p99: 2, max: 3 }),
            first_rx_unix_ns: Some(1),
            last_rx_unix_ns: Some(2),
            max_gap_ms: 20.5,
            jitter_us: Some(12.5),
            elapsed_ms: 100,
            exit_reason: "idle".to_owned(),
        };
        let json = serde_json::to_string(&report).unwrap();
        assert!(json.contains(r#""sources":["127.0.0.1:4002"]"#), "{json}");
        assert_eq!(parse_report(&json).unwrap(), report);
        assert_eq!(parse_report(&format!("warning: x\n{json}\n")).unwrap(), report);
        assert!(parse_report("nothing").is_err());
    }
}
