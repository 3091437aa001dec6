//! An RTP generator and sink the integration tests run inside network namespaces (`ip netns exec NS rtpgen ...`) to
//! check that a media relay forwards real RTP. One process is one RTP endpoint, sending and receiving on ONE UDP
//! socket (symmetric RTP, like a phone):
//!
//! ```text
//! rtpgen --bind ADDR:PORT [--to ADDR:PORT | --to-file PATH] [--count N] [--pps R] [--ssrc X] [--payload BYTES]
//!        [--pt PT] [--expect-ssrc Y] [--expect-count M] [--start-delay-ms S] [--duration-ms D]
//!        [--idle-exit-ms I] [--report PATH]
//! ```
//!
//! - Sends N packets (default 250 with a target, 0 without) at R packets/s (default 50, 20 ms ptime) to `--to`, or
//!   to the `IP:PORT` in `--to-file` once that file exists (polled every 20 ms, within the duration); the first
//!   packet goes S ms (default 0) after the target is known. Packet format: see `tests::rtp`. A failed send
//!   (ENETUNREACH before a route exists, EPERM from a firewall, ...) is counted in `send_errors` and skipped (its
//!   index is used up, so the receiver sees it as lost); never fatal. The socket is not connected (so that it
//!   receives from any source), and Linux reports no ICMP errors (port unreachable) on unconnected UDP sockets: a
//!   target that does not listen yet just does not receive.
//! - Receives everything arriving on the socket in a second thread and checks the stream with SSRC Y (default: the
//!   first SSRC seen): payload byte for byte, order, duplicates, one-way latency, sources.
//! - Stops once sending is done and M distinct intact packets arrived (M defaults to N; 0 disables), or nothing
//!   arrived for I ms (default 1000; counted from the later of the last datagram and the end of sending; with
//!   N = 0 only after a first datagram), or after D ms in any case (default 30000, at most 600000).
//! - Prints the report (`tests::rtp::Report`, with `jitter_us`: the stream's RFC 3550 interarrival jitter in
//!   microseconds, see `tests::rtp::Jitter`) as one JSON line on stdout, and writes it to `--report PATH`.
//!
//! Exits 0 after a run whatever it saw (the verdict is the test's), 2 on bad arguments, 1 on other errors (bind).
//! SIGTERM ends it without a report.

use std::collections::HashSet;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tests::rtp::{self, Jitter, Latency, Report, RtpHeader};

const USAGE: &str = "usage: rtpgen --bind ADDR:PORT [--to ADDR:PORT | --to-file PATH] [--count N] [--pps R] \
    [--ssrc X] [--payload BYTES] [--pt PT] [--expect-ssrc Y] [--expect-count M] [--start-delay-ms S] \
    [--duration-ms D] [--idle-exit-ms I] [--report PATH]";
const MAX_DURATION_MS: u64 = 600_000;
const MAX_PPS: u32 = 100_000;
const MAX_SOURCES: usize = 16;
const MAX_LATENCY_SAMPLES: usize = 1_000_000;
const POLL: Duration = Duration::from_millis(20);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match Config::parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rtpgen: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rtpgen: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug)]
enum Target {
    None,
    Addr(SocketAddr),
    File(PathBuf),
}

#[derive(Debug)]
struct Config {
    bind: SocketAddr,
    target: Target,
    count: u64,
    pps: u32,
    ssrc: u32,
    payload: usize,
    pt: u8,
    expect_ssrc: Option<u32>,
    expect_count: u64,
    start_delay: Duration,
    duration: Duration,
    idle_exit: Duration,
    report: Option<PathBuf>,
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

/// A default SSRC that differs between processes and runs.
fn default_ssrc() -> u32 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let x = (u64::from(std::process::id()) << 32 | u64::from(nanos)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (x >> 32) as u32 | 1
}

impl Config {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut bind = None;
        let mut to = None;
        let mut to_file = None;
        let mut count = None;
        let mut pps = 50u32;
        let mut ssrc = None;
        let mut payload = 160usize;
        let mut pt = 0u8;
        let mut expect_ssrc = None;
        let mut expect_count = None;
        let mut start_delay = Duration::ZERO;
        let mut duration = Duration::from_millis(30_000);
        let mut idle_exit = Duration::from_millis(1_000);
        let mut report = None;
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            if flag == "--help" || flag == "-h" {
                return Err("help requested".to_owned());
            }
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--bind" => bind = Some(parse::<SocketAddr>("--bind address", value)?),
                "--to" => to = Some(parse::<SocketAddr>("--to address", value)?),
                "--to-file" => to_file = Some(PathBuf::from(value)),
                "--count" => count = Some(parse::<u64>("--count", value)?),
                "--pps" => pps = parse("--pps", value)?,
                "--ssrc" => ssrc = Some(parse_u32("--ssrc", value)?),
                "--payload" => payload = parse("--payload", value)?,
                "--pt" => pt = parse("--pt", value)?,
                "--expect-ssrc" => expect_ssrc = Some(parse_u32("--expect-ssrc", value)?),
                "--expect-count" => expect_count = Some(parse::<u64>("--expect-count", value)?),
                "--start-delay-ms" => start_delay = parse_ms("--start-delay-ms", value)?,
                "--duration-ms" => duration = parse_ms("--duration-ms", value)?,
                "--idle-exit-ms" => idle_exit = parse_ms("--idle-exit-ms", value)?,
                "--report" => report = Some(PathBuf::from(value)),
                other => return Err(format!("unknown option {other}")),
            }
        }
        let bind = bind.ok_or("--bind is required")?;
        let target = match (to, to_file) {
            (Some(_), Some(_)) => return Err("give --to or --to-file, not both".to_owned()),
            (Some(a), None) => Target::Addr(a),
            (None, Some(p)) => Target::File(p),
            (None, None) => Target::None,
        };
        let count = match (&target, count) {
            (Target::None, Some(n)) if n > 0 => return Err("--count needs --to or --to-file".to_owned()),
            (Target::None, _) => 0,
            (_, c) => c.unwrap_or(250),
        };
        if pps == 0 || pps > MAX_PPS {
            return Err(format!("--pps must be 1..={MAX_PPS}"));
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
        Ok(Config {
            bind,
            target,
            count,
            pps,
            ssrc: ssrc.unwrap_or_else(default_ssrc),
            payload,
            pt,
            expect_ssrc,
            expect_count: expect_count.unwrap_or(count),
            start_delay,
            duration,
            idle_exit,
            report,
        })
    }
}

fn unix_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// State shared by the sending (main) thread and the receiving thread.
#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    /// Distinct intact packets of the stream so far.
    received: AtomicU64,
    /// Milliseconds since start of the last datagram (any), plus one; 0 = none yet.
    last_rx_ms: AtomicU64,
    send_errors: AtomicU64,
    last_send_error: Mutex<Option<String>>,
}

impl Shared {
    fn send_error(&self, msg: String) {
        self.send_errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.last_send_error.lock() {
            *last = Some(msg);
        }
    }
}

fn run(config: &Config) -> Result<(), String> {
    let start = Instant::now();
    let deadline = start + config.duration;
    let sock = UdpSocket::bind(config.bind).map_err(|e| format!("bind {}: {e}", config.bind))?;
    let rx_sock = sock.try_clone().map_err(|e| format!("cloning the socket bound to {}: {e}", config.bind))?;
    rx_sock.set_read_timeout(Some(POLL)).map_err(|e| format!("setting a read timeout on {}: {e}", config.bind))?;
    let shared = Arc::new(Shared::default());
    let receiver = {
        let shared = Arc::clone(&shared);
        let expect_ssrc = config.expect_ssrc;
        std::thread::Builder::new()
            .name("rtpgen-rx".to_owned())
            .spawn(move || receive(&rx_sock, expect_ssrc, &shared, start))
            .map_err(|e| format!("starting the receive thread: {e}"))?
    };

    let to = resolve_target(&config.target, deadline);
    let sent = match to {
        Some(to) => send(&sock, to, config, &shared, deadline),
        None => {
            if config.count > 0 {
                if let Target::File(p) = &config.target {
                    eprintln!("rtpgen: no IP:PORT in {} within {:?}; nothing sent", p.display(), config.duration);
                }
            }
            0
        }
    };
    let send_done = start.elapsed();

    let exit_reason = loop {
        let now = Instant::now();
        if now >= deadline {
            break "duration";
        }
        if config.expect_count > 0 && shared.received.load(Ordering::Relaxed) >= config.expect_count {
            break "expected-count";
        }
        let last_rx = shared.last_rx_ms.load(Ordering::Relaxed);
        let idle_since = match last_rx {
            0 if config.count == 0 => None, // a pure sink waits for its first packet
            0 => Some(send_done),
            ms => Some(send_done.max(Duration::from_millis(ms - 1))),
        };
        if idle_since.is_some_and(|since| now.duration_since(start).saturating_sub(since) >= config.idle_exit) {
            break "idle";
        }
        std::thread::sleep(Duration::from_millis(10).min(deadline - now));
    };
    shared.stop.store(true, Ordering::Relaxed);
    let rx = receiver.join().map_err(|_| "the receive thread panicked".to_owned())?;

    let report = rx.report(config, to, sent, &shared, start.elapsed(), exit_reason);
    let json = serde_json::to_string(&report).map_err(|e| format!("serialising the report: {e}"))?;
    println!("{json}");
    if let Some(path) = &config.report {
        write_atomically(path, &json).map_err(|e| format!("writing the report to {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Writes `path` via a temporary file and a rename, so a test polling for it never reads half a report.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, format!("{text}\n"))?;
    std::fs::rename(&tmp, path)
}

/// The address to send to: `--to`, or the first line of `--to-file` that is an `IP:PORT`, polled until `deadline`.
fn resolve_target(target: &Target, deadline: Instant) -> Option<SocketAddr> {
    match target {
        Target::None => None,
        Target::Addr(a) => Some(*a),
        Target::File(path) => loop {
            // A half-written file does not parse yet; the next poll sees the rest.
            let found = std::fs::read_to_string(path)
                .ok()
                .and_then(|text| text.lines().find_map(|l| l.trim().parse::<SocketAddr>().ok()));
            if found.is_some() {
                return found;
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            std::thread::sleep(POLL.min(deadline - now));
        },
    }
}

/// Sends up to `config.count` packets to `to`, paced at `config.pps` (late packets go at once, without catching up
/// bursts beyond the schedule); returns how many were sent successfully.
fn send(sock: &UdpSocket, to: SocketAddr, config: &Config, shared: &Shared, deadline: Instant) -> u64 {
    let first = Instant::now() + config.start_delay;
    let mut sent = 0;
    for i in 0..config.count {
        let due = first + Duration::from_secs_f64(i as f64 / f64::from(config.pps));
        let now = Instant::now();
        if due >= deadline || now >= deadline {
            break;
        }
        if due > now {
            std::thread::sleep(due - now);
        }
        let header = RtpHeader::for_packet(config.ssrc, config.pt, i, config.payload);
        let payload = rtp::build_payload(config.ssrc, i, unix_ns(), config.payload);
        let packet = rtp::packet(&header, &payload);
        match sock.send_to(&packet, to) {
            Ok(_) => sent += 1,
            Err(e) => shared.send_error(format!("send to {to} from {}: {e}", config.bind)),
        }
    }
    sent
}

/// What the receive thread saw.
#[derive(Debug, Default)]
struct Rx {
    expect_ssrc: Option<u32>,
    received: u64,
    corrupt: u64,
    reordered: u64,
    duplicates: u64,
    seq_mismatch: u64,
    other_ssrc: u64,
    not_rtp: u64,
    seen: HashSet<u64>,
    prev_index: Option<u64>,
    first_index: Option<u64>,
    last_index: Option<u64>,
    payload_len: Option<usize>,
    first_source: Option<SocketAddr>,
    sources: Vec<SocketAddr>,
    foreign_sources: u64,
    latencies_us: Vec<u64>,
    max_latency_us: u64,
    first_rx_unix_ns: Option<u64>,
    last_rx_unix_ns: Option<u64>,
    last_rx: Option<Instant>,
    max_gap: Duration,
    jitter: Jitter,
}

fn receive(sock: &UdpSocket, expect_ssrc: Option<u32>, shared: &Shared, start: Instant) -> Rx {
    let mut rx = Rx { expect_ssrc, ..Rx::default() };
    let mut buf = vec![0u8; 65_536];
    let mut recv_errors = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                let at = Instant::now();
                shared.last_rx_ms.store(at.duration_since(start).as_millis() as u64 + 1, Ordering::Relaxed);
                rx.datagram(&buf[..n], from, at, unix_ns());
                shared.received.store(rx.received, Ordering::Relaxed);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            Err(e) => {
                recv_errors += 1;
                if recv_errors <= 10 {
                    eprintln!("rtpgen: receive on {}: {e}", sock_name(sock));
                }
                std::thread::sleep(POLL);
            }
        }
    }
    rx
}

fn sock_name(sock: &UdpSocket) -> String {
    sock.local_addr().map_or_else(|_| "?".to_owned(), |a| a.to_string())
}

impl Rx {
    fn datagram(&mut self, data: &[u8], from: SocketAddr, at: Instant, now_ns: u64) {
        match self.first_source {
            None => self.first_source = Some(from),
            Some(first) if first != from => self.foreign_sources += 1,
            Some(_) => {}
        }
        if self.sources.len() < MAX_SOURCES && !self.sources.contains(&from) {
            self.sources.push(from);
        }
        let Some((header, payload)) = rtp::parse(data) else {
            self.not_rtp += 1;
            return;
        };
        let ssrc = *self.expect_ssrc.get_or_insert(header.ssrc);
        if header.ssrc != ssrc {
            self.other_ssrc += 1;
            return;
        }
        let Some(stamp) = rtp::check_payload(ssrc, payload) else {
            self.corrupt += 1;
            return;
        };
        if *self.payload_len.get_or_insert(payload.len()) != payload.len() {
            self.corrupt += 1;
            return;
        }
        let index = stamp.index;
        if !self.seen.insert(index) {
            self.duplicates += 1;
            return;
        }
        if self.prev_index.is_some_and(|prev| index < prev) {
            self.reordered += 1;
        }
        self.prev_index = Some(index);
        if header.sequence != rtp::seq_base(ssrc).wrapping_add(index as u16) {
            self.seq_mismatch += 1;
        }
        self.received += 1;
        self.first_index = Some(self.first_index.map_or(index, |f| f.min(index)));
        self.last_index = Some(self.last_index.map_or(index, |l| l.max(index)));
        let latency_us = now_ns.saturating_sub(stamp.send_unix_ns) / 1_000;
        if self.latencies_us.len() < MAX_LATENCY_SAMPLES {
            self.latencies_us.push(latency_us);
        }
        self.max_latency_us = self.max_latency_us.max(latency_us);
        self.jitter.update(stamp.send_unix_ns, now_ns);
        self.first_rx_unix_ns.get_or_insert(now_ns);
        self.last_rx_unix_ns = Some(now_ns);
        if let Some(last) = self.last_rx {
            self.max_gap = self.max_gap.max(at.duration_since(last));
        }
        self.last_rx = Some(at);
    }

    fn report(
        mut self,
        config: &Config,
        to: Option<SocketAddr>,
        sent: u64,
        shared: &Shared,
        elapsed: Duration,
        exit_reason: &str,
    ) -> Report {
        let latency_us = Latency::of(&mut self.latencies_us).map(|l| Latency { max: self.max_latency_us, ..l });
        Report {
            bind: config.bind,
            to,
            ssrc: config.ssrc,
            expect_ssrc: self.expect_ssrc,
            sent,
            send_errors: shared.send_errors.load(Ordering::Relaxed),
            last_send_error: shared.last_send_error.lock().ok().and_then(|l| l.clone()),
            received: self.received,
            corrupt: self.corrupt,
            reordered: self.reordered,
            duplicates: self.duplicates,
            lost: self.last_index.map_or(0, |l| (l + 1).saturating_sub(self.received)),
            seq_mismatch: self.seq_mismatch,
            other_ssrc: self.other_ssrc,
            not_rtp: self.not_rtp,
            first_index: self.first_index,
            last_index: self.last_index,
            first_source: self.first_source,
            sources: self.sources,
            foreign_sources: self.foreign_sources,
            latency_us,
            first_rx_unix_ns: self.first_rx_unix_ns,
            last_rx_unix_ns: self.last_rx_unix_ns,
            max_gap_ms: (self.max_gap.as_micros() as f64) / 1_000.0,
            jitter_us: self.jitter.us(),
            elapsed_ms: elapsed.as_millis() as u64,
            exit_reason: exit_reason.to_owned(),
        }
    }
}
