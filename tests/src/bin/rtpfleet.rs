//! Many RTP streams from one UDP socket, for load tests of a media relay: one side of N calls whose SDP all name
//! the same address (as SIPp's do), each call with its own relay port. Runs inside a namespace (`ip netns exec NS
//! rtpfleet ...`):
//!
//! ```text
//! rtpfleet --bind ADDR:PORT --targets-file PATH --streams N --pps-per-stream R --seconds S --ssrc-base X
//!          --report PATH [--expect-ssrc-base Y] [--payload BYTES] [--pt PT] [--duration-ms D] [--idle-exit-ms I]
//!          [--rx-rt-priority P]
//! ```
//!
//! - Waits (polling every 20 ms, within the duration) until PATH holds N lines `IP:PORT` (the test writes it, via a
//!   rename, once it knows the relay's ports), then sends stream i (SSRC X+i, wrapping) to the i-th address: S * R
//!   packets each, in the packet format of `rtpgen` (see `tests::rtp`). The streams are paced together at N * R
//!   packets/s in round robin, so stream i's packet k is due at `k / R + i / (N * R)` seconds: evenly spread over
//!   each 1/R-second period like unsynchronised calls, not one burst of N packets per period. A late sender catches
//!   up at once (what `max_send_lag_ms` reports). A failed send is counted in `send_errors` and skipped.
//! - Receives everything arriving on the socket in a second thread, which only drains the socket (stamping the
//!   receive time) and hands the datagrams to a third that tracks them per SSRC (all SSRCs, or only Y..Y+N with
//!   `--expect-ssrc-base`): distinct intact packets, corrupt payloads, duplicates, reordering, highest index, and
//!   the one-way latency of every intact packet (the first million), and each stream's RFC 3550 interarrival jitter
//!   (`tests::rtp::Jitter`, from the send time in the payload and the receive time). One socket stands in for N phones, each with
//!   a socket buffer of its own: a relay that catches up after a stall sends all N calls' backlogs at once, which
//!   one default-sized socket buffer cannot hold unless it is drained at once. So with `--rx-rt-priority P` (1..=99)
//!   the draining thread runs SCHED_FIFO at priority P (via `chrt`; the outcome is in the report's `rx_priority`)
//!   and polls the (then non-blocking) socket every millisecond instead of waking for every datagram.
//! - Stops once sending is done and nothing arrived for I ms (default 1000), or after D ms in any case (default
//!   120000, at most 600000).
//! - Prints the report (JSON, see [`FleetReport`]) as one line on stdout and writes it to `--report PATH`.
//!
//! Exits 0 after a run whatever it saw (the verdict is the test's), 2 on bad arguments, 1 on other errors (bind).

use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tests::rtp::{self, Jitter, Latency, RtpHeader};

const USAGE: &str = "usage: rtpfleet --bind ADDR:PORT --targets-file PATH --streams N --pps-per-stream R --seconds S \
    --ssrc-base X --report PATH [--expect-ssrc-base Y] [--payload BYTES] [--pt PT] [--duration-ms D] \
    [--idle-exit-ms I] [--rx-rt-priority P]";
const MAX_DURATION_MS: u64 = 600_000;
const MAX_STREAMS: usize = 10_000;
const MAX_PPS: u32 = 1_000;
const MAX_LATENCY_SAMPLES: usize = 1_000_000;
/// Indices above this are not tracked in the per-stream bitmaps (counted in `index_out_of_range`).
const MAX_INDEX: u64 = 1 << 24;
/// How many of the weakest streams the report lists.
const WORST: usize = 8;
/// How many missing indices the report lists per stream.
const MISSING_LISTED: usize = 32;
const POLL: Duration = Duration::from_millis(20);
/// The sender's sleep between checks of what is due.
const TICK: Duration = Duration::from_millis(1);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match Config::parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rtpfleet: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rtpfleet: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug)]
struct Config {
    bind: SocketAddr,
    targets_file: PathBuf,
    streams: usize,
    pps: u32,
    seconds: u64,
    ssrc_base: u32,
    expect_ssrc_base: Option<u32>,
    payload: usize,
    pt: u8,
    duration: Duration,
    idle_exit: Duration,
    report: PathBuf,
    rx_rt_priority: u8,
}

fn parse<T: std::str::FromStr>(what: &str, s: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("bad {what}: {s}"))
}

/// A u32 in decimal or `0x` hex.
fn parse_u32(what: &str, s: &str) -> Result<u32, String> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).map_err(|_| format!("bad {what}: {s}")),
        None => parse(what, s),
    }
}

fn parse_ms(what: &str, s: &str) -> Result<Duration, String> {
    let ms: u64 = parse(what, s)?;
    if ms > MAX_DURATION_MS {
        return Err(format!("{what} {ms} is above the cap of {MAX_DURATION_MS} ms"));
    }
    Ok(Duration::from_millis(ms))
}

impl Config {
    fn parse(args: &[String]) -> Result<Self, String> {
        let (mut bind, mut targets_file, mut streams, mut pps, mut seconds) = (None, None, None, 50u32, None);
        let (mut ssrc_base, mut expect_ssrc_base, mut report) = (None, None, None);
        let (mut payload, mut pt, mut rx_rt_priority) = (160usize, 0u8, 0u8);
        let mut duration = Duration::from_millis(120_000);
        let mut idle_exit = Duration::from_millis(1_000);
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            if flag == "--help" || flag == "-h" {
                return Err("help requested".to_owned());
            }
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--bind" => bind = Some(parse::<SocketAddr>("--bind address", value)?),
                "--targets-file" => targets_file = Some(PathBuf::from(value)),
                "--streams" => streams = Some(parse::<usize>("--streams", value)?),
                "--pps-per-stream" => pps = parse("--pps-per-stream", value)?,
                "--seconds" => seconds = Some(parse::<u64>("--seconds", value)?),
                "--ssrc-base" => ssrc_base = Some(parse_u32("--ssrc-base", value)?),
                "--expect-ssrc-base" => expect_ssrc_base = Some(parse_u32("--expect-ssrc-base", value)?),
                "--payload" => payload = parse("--payload", value)?,
                "--pt" => pt = parse("--pt", value)?,
                "--duration-ms" => duration = parse_ms("--duration-ms", value)?,
                "--idle-exit-ms" => idle_exit = parse_ms("--idle-exit-ms", value)?,
                "--report" => report = Some(PathBuf::from(value)),
                "--rx-rt-priority" => rx_rt_priority = parse("--rx-rt-priority", value)?,
                other => return Err(format!("unknown option {other}")),
            }
        }
        let streams = streams.ok_or("--streams is required")?;
        if streams == 0 || streams > MAX_STREAMS {
            return Err(format!("--streams must be 1..={MAX_STREAMS}"));
        }
        if pps == 0 || pps > MAX_PPS {
            return Err(format!("--pps-per-stream must be 1..={MAX_PPS}"));
        }
        let seconds = seconds.ok_or("--seconds is required")?;
        if seconds == 0 || seconds * 1000 > MAX_DURATION_MS {
            return Err(format!("--seconds must be 1..={}", MAX_DURATION_MS / 1000));
        }
        if !(rtp::STAMP_LEN..=rtp::MAX_PAYLOAD).contains(&payload) {
            return Err(format!("--payload must be {}..={}", rtp::STAMP_LEN, rtp::MAX_PAYLOAD));
        }
        if pt > 127 {
            return Err("--pt must be 0..=127".to_owned());
        }
        if duration.is_zero() {
            return Err("--duration-ms must be above 0".to_owned());
        }
        if rx_rt_priority > 99 {
            return Err("--rx-rt-priority must be 0..=99".to_owned());
        }
        Ok(Config {
            bind: bind.ok_or("--bind is required")?,
            targets_file: targets_file.ok_or("--targets-file is required")?,
            streams,
            pps,
            seconds,
            ssrc_base: ssrc_base.ok_or("--ssrc-base is required")?,
            expect_ssrc_base,
            payload,
            pt,
            duration,
            idle_exit,
            report: report.ok_or("--report is required")?,
            rx_rt_priority,
        })
    }

    /// Packets each stream sends.
    fn per_stream(&self) -> u64 {
        self.seconds * u64::from(self.pps)
    }
}

/// What one run saw; one JSON object.
#[derive(Debug, Serialize)]
struct FleetReport {
    bind: SocketAddr,
    streams: usize,
    /// Targets read from the targets file (0 if it never held `streams` addresses in time: nothing was sent).
    targets: usize,
    /// Packets each stream was to send (`seconds * pps_per_stream`).
    per_stream: u64,
    /// Packets sent successfully, over all streams.
    sent: u64,
    /// Failed sends (skipped).
    send_errors: u64,
    last_send_error: Option<String>,
    /// How far the sender fell behind its schedule at worst, in milliseconds.
    max_send_lag_ms: f64,
    /// Distinct intact packets received, over all (expected) SSRCs.
    received: u64,
    /// Sum over SSRCs of `last_index + 1 - received` (losses before each stream's last packet received; packets
    /// lost at the end show only against the peer's `per_stream`).
    lost: u64,
    /// Packets of a tracked SSRC whose payload is not what the sender put there (or a length other than the
    /// stream's first intact packet).
    corrupt: u64,
    /// Intact packets whose index had already been received.
    duplicates: u64,
    /// Intact packets whose index was below that of the stream's previous intact packet.
    reordered: u64,
    /// Intact packets whose RTP sequence number is not `seq_base(ssrc) + index`.
    seq_mismatch: u64,
    /// Intact packets with an index too large to track.
    index_out_of_range: u64,
    /// RTP packets with an SSRC outside `--expect-ssrc-base`'s range (ignored otherwise).
    other_ssrc: u64,
    /// Datagrams that are not RTP version 2.
    not_rtp: u64,
    /// Distinct (expected) SSRCs with at least one packet.
    ssrcs_seen: usize,
    /// The fewest distinct intact packets of any stream: of an expected SSRC with `--expect-ssrc-base` (0 if one
    /// never appeared), else of the SSRCs seen (0 if none).
    min_received_per_stream: u64,
    max_received_per_stream: u64,
    /// Distinct source addresses of all datagrams.
    sources: usize,
    /// The streams with the fewest packets received.
    worst_streams: Vec<StreamSummary>,
    /// One-way latency of intact packets, in microseconds.
    latency_us: Option<Latency>,
    /// Interarrival jitter (RFC 3550 §6.4.1) at the end of the run, over the streams with two packets or more.
    jitter_us: Option<JitterSummary>,
    /// The receive thread's scheduling: `default`, `SCHED_FIFO P`, or why that could not be set.
    rx_priority: String,
    /// Receive errors other than timeouts.
    recv_errors: u64,
    elapsed_ms: u64,
    /// `idle` or `duration`.
    exit_reason: String,
}

/// The streams' interarrival jitter estimates, microseconds.
#[derive(Debug, Serialize)]
struct JitterSummary {
    /// Mean over the streams.
    mean: f64,
    /// The largest of any stream.
    max: f64,
    /// How many streams had an estimate (two packets or more).
    streams: usize,
}

impl JitterSummary {
    fn of(estimates: impl Iterator<Item = f64>) -> Option<Self> {
        let (mut sum, mut max, mut streams) = (0.0, 0.0f64, 0usize);
        for j in estimates {
            sum += j;
            max = max.max(j);
            streams += 1;
        }
        (streams > 0).then(|| JitterSummary { mean: sum / streams as f64, max, streams })
    }
}

/// One stream in [`FleetReport::worst_streams`].
#[derive(Debug, Serialize)]
struct StreamSummary {
    ssrc: u32,
    received: u64,
    last_index: Option<u64>,
    /// The first indices below `per_stream` (this side's count: the peer is assumed to send as many) that did not
    /// arrive intact, at most [`MISSING_LISTED`].
    missing: Vec<u64>,
}

fn unix_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// State shared by the sending (main) thread and the receiving thread.
#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    /// Milliseconds since start of the last datagram, plus one; 0 = none yet.
    last_rx_ms: AtomicU64,
}

fn run(config: &Config) -> Result<(), String> {
    let start = Instant::now();
    let deadline = start + config.duration;
    let sock = UdpSocket::bind(config.bind).map_err(|e| format!("bind {}: {e}", config.bind))?;
    // One socket stands for 200 phones: give it room for their bursts. SO_RCVBUFFORCE (root) passes the
    // host-wide rmem_max, which a test must not change; without root the default stays and drops show in the
    // kernel's RcvbufErrors.
    let _ = nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::RcvBufForce, &(16 << 20));
    let rx_sock = sock.try_clone().map_err(|e| format!("cloning the socket bound to {}: {e}", config.bind))?;
    rx_sock.set_read_timeout(Some(POLL)).map_err(|e| format!("setting a read timeout on {}: {e}", config.bind))?;
    let shared = Arc::new(Shared::default());
    let (to_check, datagrams) = mpsc::channel::<Datagram>();
    let receiver = {
        let shared = Arc::clone(&shared);
        let priority = config.rx_rt_priority;
        std::thread::Builder::new()
            .name("rtpfleet-rx".to_owned())
            .spawn(move || receive(&rx_sock, &to_check, &shared, start, priority))
            .map_err(|e| format!("starting the receive thread: {e}"))?
    };
    let checker = {
        let expect = config.expect_ssrc_base.map(|base| (base, config.streams));
        std::thread::Builder::new()
            .name("rtpfleet-check".to_owned())
            .spawn(move || {
                let mut rx = Rx { expect, ..Rx::default() };
                for d in datagrams {
                    rx.datagram(&d.data, d.from, d.at_unix_ns);
                }
                rx
            })
            .map_err(|e| format!("starting the checking thread: {e}"))?
    };

    let targets = read_targets(&config.targets_file, config.streams, deadline);
    let tx = match &targets {
        Some(t) => send(&sock, t, config, deadline),
        None => {
            eprintln!(
                "rtpfleet: no {} addresses in {} within {:?}; nothing sent",
                config.streams,
                config.targets_file.display(),
                config.duration
            );
            Tx::default()
        }
    };
    let send_done = start.elapsed();

    let exit_reason = loop {
        let now = Instant::now();
        if now >= deadline {
            break "duration";
        }
        let since = match shared.last_rx_ms.load(Ordering::Relaxed) {
            0 => send_done,
            ms => send_done.max(Duration::from_millis(ms - 1)),
        };
        if now.duration_since(start).saturating_sub(since) >= config.idle_exit {
            break "idle";
        }
        std::thread::sleep(Duration::from_millis(10).min(deadline - now));
    };
    shared.stop.store(true, Ordering::Relaxed);
    let (recv_errors, rx_priority) = receiver.join().map_err(|_| "the receive thread panicked".to_owned())?;
    let rx = checker.join().map_err(|_| "the checking thread panicked".to_owned())?;

    let mut report = rx.report(config, targets.map_or(0, |t| t.len()), tx, start.elapsed(), exit_reason);
    report.rx_priority = rx_priority;
    report.recv_errors = recv_errors;
    let json = serde_json::to_string(&report).map_err(|e| format!("serialising the report: {e}"))?;
    println!("{json}");
    write_atomically(&config.report, &json)
        .map_err(|e| format!("writing the report to {}: {e}", config.report.display()))?;
    Ok(())
}

/// Writes `path` via a temporary file and a rename, so a test polling for it never reads half a report.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, format!("{text}\n"))?;
    std::fs::rename(&tmp, path)
}

/// The first `n` lines of `path` that are `IP:PORT`, once it holds that many; polled until `deadline`.
fn read_targets(path: &Path, n: usize, deadline: Instant) -> Option<Vec<SocketAddr>> {
    loop {
        let found: Vec<SocketAddr> = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .take(n)
            .collect();
        if found.len() == n {
            return Some(found);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(POLL.min(deadline - now));
    }
}

/// What the sender did.
#[derive(Debug, Default)]
struct Tx {
    sent: u64,
    errors: u64,
    last_error: Option<String>,
    max_lag: Duration,
}

/// Sends `per_stream` packets on each stream, packet `j` overall (stream `j % n`, index `j / n`) due `j / (n *
/// pps)` seconds after the start.
fn send(sock: &UdpSocket, targets: &[SocketAddr], config: &Config, deadline: Instant) -> Tx {
    let n = targets.len() as u64;
    let total = n * config.per_stream();
    let rate = n as f64 * f64::from(config.pps);
    let ssrcs: Vec<u32> = (0..n as u32).map(|i| config.ssrc_base.wrapping_add(i)).collect();
    let first = Instant::now();
    let mut tx = Tx::default();
    let mut j = 0u64;
    while j < total {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        // Everything due by now goes out at once.
        while j < total {
            let due = first + Duration::from_secs_f64(j as f64 / rate);
            if due > now {
                break;
            }
            tx.max_lag = tx.max_lag.max(now - due);
            let (stream, index) = ((j % n) as usize, j / n);
            let ssrc = ssrcs[stream];
            let header = RtpHeader::for_packet(ssrc, config.pt, index, config.payload);
            let payload = rtp::build_payload(ssrc, index, unix_ns(), config.payload);
            let to = targets[stream];
            let packet = rtp::packet(&header, &payload);
            let mut result = sock.send_to(&packet, to);
            // The socket is non-blocking when the receiver polls: a full send buffer waits a little, as a
            // blocking send would.
            for _ in 0..1000 {
                match &result {
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_micros(100));
                        result = sock.send_to(&packet, to);
                    }
                    _ => break,
                }
            }
            match result {
                Ok(_) => tx.sent += 1,
                Err(e) => {
                    tx.errors += 1;
                    tx.last_error = Some(format!("send to {to} from {}: {e}", config.bind));
                }
            }
            j += 1;
        }
        if j < total {
            let due = first + Duration::from_secs_f64(j as f64 / rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep((due - now).min(TICK));
            }
        }
    }
    tx
}

/// One SSRC's packets.
#[derive(Debug, Default)]
struct Stream {
    /// A bitmap of the indices received intact.
    seen: Vec<u64>,
    received: u64,
    prev_index: Option<u64>,
    last_index: Option<u64>,
    payload_len: Option<usize>,
    jitter: Jitter,
}

impl Stream {
    fn has(&self, index: u64) -> bool {
        self.seen.get((index / 64) as usize).is_some_and(|w| w & (1 << (index % 64)) != 0)
    }

    /// Marks `index` received; false if it already was.
    fn insert(&mut self, index: u64) -> bool {
        let (word, bit) = ((index / 64) as usize, index % 64);
        if self.seen.len() <= word {
            self.seen.resize(word + 1, 0);
        }
        let fresh = self.seen[word] & (1 << bit) == 0;
        self.seen[word] |= 1 << bit;
        fresh
    }
}

/// What the receive thread saw.
#[derive(Debug, Default)]
struct Rx {
    /// `(base, n)`: only SSRCs base..base+n are tracked.
    expect: Option<(u32, usize)>,
    streams: HashMap<u32, Stream>,
    corrupt: u64,
    duplicates: u64,
    reordered: u64,
    seq_mismatch: u64,
    index_out_of_range: u64,
    other_ssrc: u64,
    not_rtp: u64,
    sources: HashSet<SocketAddr>,
    latencies_us: Vec<u64>,
    max_latency_us: u64,
}

/// A datagram as received, for the checking thread.
#[derive(Debug)]
struct Datagram {
    data: Vec<u8>,
    from: SocketAddr,
    at_unix_ns: u64,
}

/// Drains the socket into `out` until told to stop; returns the number of receive errors and the thread's
/// scheduling (see `--rx-rt-priority`).
fn receive(
    sock: &UdpSocket,
    out: &mpsc::Sender<Datagram>,
    shared: &Shared,
    start: Instant,
    rt_priority: u8,
) -> (u64, String) {
    // A real-time thread polls (drains the non-blocking socket every millisecond) rather than waking per packet,
    // which would preempt the relay under test 10000 times a second.
    let polling = rt_priority > 0 && sock.set_nonblocking(true).is_ok();
    let priority = if polling { realtime(rt_priority) } else { "default".to_owned() };
    let mut buf = vec![0u8; 65_536];
    let mut recv_errors = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                let at_unix_ns = unix_ns();
                shared.last_rx_ms.store(start.elapsed().as_millis() as u64 + 1, Ordering::Relaxed);
                let _ = out.send(Datagram { data: buf[..n].to_vec(), from, at_unix_ns });
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock && polling => std::thread::sleep(TICK),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            Err(e) => {
                recv_errors += 1;
                if recv_errors <= 10 {
                    eprintln!("rtpfleet: receive: {e}");
                }
                std::thread::sleep(POLL);
            }
        }
    }
    (recv_errors, priority)
}

/// Puts the calling thread under SCHED_FIFO at `priority` with `chrt` (its thread id from `/proc/thread-self`);
/// says what came of it.
fn realtime(priority: u8) -> String {
    let tid = match std::fs::read_link("/proc/thread-self") {
        Ok(link) => link.file_name().map(|t| t.to_string_lossy().into_owned()).unwrap_or_default(),
        Err(e) => return format!("default (no /proc/thread-self: {e})"),
    };
    match std::process::Command::new("chrt").args(["-f", "-p", &priority.to_string(), &tid]).output() {
        Ok(o) if o.status.success() => format!("SCHED_FIFO {priority}"),
        Ok(o) => format!("default (chrt: {})", String::from_utf8_lossy(&o.stderr).trim()),
        Err(e) => format!("default (chrt: {e})"),
    }
}

impl Rx {
    fn datagram(&mut self, data: &[u8], from: SocketAddr, now_ns: u64) {
        self.sources.insert(from);
        let Some((header, payload)) = rtp::parse(data) else {
            self.not_rtp += 1;
            return;
        };
        let ssrc = header.ssrc;
        if let Some((base, n)) = self.expect {
            if ssrc.wrapping_sub(base) as usize >= n {
                self.other_ssrc += 1;
                return;
            }
        }
        let Some(stamp) = rtp::check_payload(ssrc, payload) else {
            self.corrupt += 1;
            return;
        };
        let stream = self.streams.entry(ssrc).or_default();
        if *stream.payload_len.get_or_insert(payload.len()) != payload.len() {
            self.corrupt += 1;
            return;
        }
        let index = stamp.index;
        if index >= MAX_INDEX {
            self.index_out_of_range += 1;
            return;
        }
        if !stream.insert(index) {
            self.duplicates += 1;
            return;
        }
        if stream.prev_index.is_some_and(|prev| index < prev) {
            self.reordered += 1;
        }
        stream.prev_index = Some(index);
        if header.sequence != rtp::seq_base(ssrc).wrapping_add(index as u16) {
            self.seq_mismatch += 1;
        }
        stream.received += 1;
        stream.last_index = Some(stream.last_index.map_or(index, |l| l.max(index)));
        stream.jitter.update(stamp.send_unix_ns, now_ns);
        let latency_us = now_ns.saturating_sub(stamp.send_unix_ns) / 1_000;
        if self.latencies_us.len() < MAX_LATENCY_SAMPLES {
            self.latencies_us.push(latency_us);
        }
        self.max_latency_us = self.max_latency_us.max(latency_us);
    }

    fn report(mut self, config: &Config, targets: usize, tx: Tx, elapsed: Duration, exit_reason: &str) -> FleetReport {
        let latency_us = Latency::of(&mut self.latencies_us).map(|l| Latency { max: self.max_latency_us, ..l });
        let jitter_us = JitterSummary::of(self.streams.values().filter_map(|s| s.jitter.us()));
        // Per stream: (ssrc, received, last index); with expected SSRCs, also the ones that never appeared.
        let mut per: Vec<(u32, u64, Option<u64>)> = match self.expect {
            Some((base, n)) => (0..n as u32)
                .map(|i| base.wrapping_add(i))
                .map(|s| self.streams.get(&s).map_or((s, 0, None), |st| (s, st.received, st.last_index)))
                .collect(),
            None => self.streams.iter().map(|(&s, st)| (s, st.received, st.last_index)).collect(),
        };
        per.sort_by_key(|&(s, received, _)| (received, s));
        FleetReport {
            bind: config.bind,
            streams: config.streams,
            targets,
            per_stream: config.per_stream(),
            sent: tx.sent,
            send_errors: tx.errors,
            last_send_error: tx.last_error,
            max_send_lag_ms: tx.max_lag.as_micros() as f64 / 1_000.0,
            received: self.streams.values().map(|s| s.received).sum(),
            lost: self.streams.values().map(|s| s.last_index.map_or(0, |l| (l + 1).saturating_sub(s.received))).sum(),
            corrupt: self.corrupt,
            duplicates: self.duplicates,
            reordered: self.reordered,
            seq_mismatch: self.seq_mismatch,
            index_out_of_range: self.index_out_of_range,
            other_ssrc: self.other_ssrc,
            not_rtp: self.not_rtp,
            ssrcs_seen: self.streams.values().filter(|s| s.received > 0).count(),
            min_received_per_stream: per.first().map_or(0, |p| p.1),
            max_received_per_stream: per.last().map_or(0, |p| p.1),
            sources: self.sources.len(),
            worst_streams: per
                .into_iter()
                .take(WORST)
                .map(|(ssrc, received, last_index)| StreamSummary {
                    ssrc,
                    received,
                    last_index,
                    missing: (0..config.per_stream())
                        .filter(|&i| !self.streams.get(&ssrc).is_some_and(|s| s.has(i)))
                        .take(MISSING_LISTED)
                        .collect(),
                })
                .collect(),
            latency_us,
            jitter_us,
            rx_priority: String::new(),
            recv_errors: 0,
            elapsed_ms: elapsed.as_millis() as u64,
            exit_reason: exit_reason.to_owned(),
        }
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn jitter_summary_is_mean_and_max_over_streams_with_an_estimate() {
        assert!(JitterSummary::of(std::iter::empty()).is_none());
        let s = JitterSummary::of([100.0, 300.0, 200.0].into_iter()).expect("three streams");
        assert_eq!((s.mean, s.max, s.streams), (200.0, 300.0, 3));
    }
}
