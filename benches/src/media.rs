//! `sbc-bench media --local`: the user-space relay's highest forwarded packets/s under 0.1 % loss and its
//! CPU-seconds per million packets, next to plain kernel IP forwarding between the same namespaces, in the same run.
//!
//! One single-SBC topology ([`tests::netns::Topology::single_sbc`]) serves the whole invocation. Each run climbs
//! the rate ladder twice with the same generator (`rtpgen`, one sender per stream in A, one sink per stream in B):
//!
//! - `relay`: senders in A (198.18.1.10:7000+i) → `media-relay` in the SBC namespace (198.18.1.1:30000+2i in,
//!   198.18.2.1:30000+2i out, one session per step with one relayed stream per `--streams`) → sinks in B
//!   (198.18.2.10:7000+i). The relay's CPU is its process's utime + stime over the step.
//! - `kernel`: `net.ipv4.ip_forward=1` in the SBC namespace only, a route to 198.18.2.0/24 via 198.18.1.1 in A and
//!   one to 198.18.1.0/24 via 198.18.2.1 in B (added for this ladder and removed after it); senders in A send
//!   straight to the sinks in B. Forwarding runs in softirq context and is not separable per namespace: its CPU is
//!   the whole machine's softirq time (`si` in /proc/stat) over the step.
//!
//! A step sends `rate × step_secs` packets (bounded) at `rate` packets/s, split evenly over the streams, and passes
//! when less than 0.1 % of the packets sent did not arrive intact at the sinks. The ceiling of a ladder is its
//! highest passing step; a ladder stops after two failing steps in a row. The relay runs on core 1, the senders and
//! sinks on core 0 (`taskset`).

use crate::stats::median;
use ::tests::netns::{Host, Process, Topology, CALLER, CARRIER_B, SBC_A, SBC_B};
use ::tests::rtp::{self, Report, Rtpgen};
use anyhow::{bail, Context, Result};
use relay_proto::control::{self, Command, EndpointSpec, Event, Leg, SessionId};
use serde::Serialize;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A step passes with less than this share of its packets lost, in percent.
pub const MAX_LOSS_PCT: f64 = 0.1;
/// The core `media-relay` runs on.
pub const RELAY_CORE: usize = 1;
/// The core every sender and sink runs on.
pub const GEN_CORE: usize = 0;
/// No stream sends more packets per step than this, whatever rate × step length says.
pub const MAX_PACKETS_PER_STREAM: u64 = 2_000_000;
/// `rtpgen`'s limit of packets per second per process.
pub const MAX_PPS_PER_STREAM: u32 = 100_000;
/// A ladder stops after this many failing steps in a row.
pub const FAILS_TO_STOP: usize = 3;
/// A step counts only when the senders achieved at least this share of the offered rate; below it, the generator
/// (not the forwarder) was the limit and the step fails as `generator_limited`.
pub const MIN_ACHIEVED_SHARE: f64 = 0.9;
/// The relay's control socket, inside the SBC namespace.
const CONTROL: &str = "127.0.0.1:2223";
/// The senders' (A) and sinks' (B) first port; stream i uses this + i.
const GEN_PORT: u16 = 7000;
/// The relay's first port; stream i uses this + 2i on both sides.
const RELAY_PORT: u16 = 30000;
/// A sender exits this long after its last packet (nothing comes back to it).
const SENDER_IDLE_MS: u64 = 300;
/// A sink exits this long after its last packet when not everything arrived.
const SINK_IDLE_MS: u64 = 1000;
/// `USER_HZ`: the unit of /proc/PID/stat and /proc/stat (100 on every Linux architecture in practice).
const CLOCK_TICKS_PER_SEC: f64 = 100.0;

/// What `media` was asked to do.
#[derive(Debug, Clone, Serialize)]
pub struct Options {
    /// Complete runs (each: the ladder for `relay`, then for `kernel`).
    pub runs: u32,
    /// Seconds of traffic per step.
    pub step_secs: u32,
    /// The rate ladder, packets per second (all streams together), ascending.
    pub rates: Vec<u32>,
    /// Parallel streams (sender/sink pairs; relayed streams on the relay path).
    pub streams: u16,
    /// RTP payload bytes per packet (160: G.711 at 20 ms).
    pub payload: usize,
    /// The `media-relay` binary used.
    pub relay_binary: PathBuf,
    /// The `rtpgen` binary used.
    pub rtpgen_binary: PathBuf,
}

/// The forwarding path measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// A → `media-relay` in the SBC namespace → B.
    Relay,
    /// A → kernel IP forwarding in the SBC namespace → B.
    Kernel,
}

impl Target {
    /// Both, in the order a run measures them.
    pub const ALL: [Target; 2] = [Target::Relay, Target::Kernel];

    /// The name used in output and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Target::Relay => "relay",
            Target::Kernel => "kernel",
        }
    }
}

/// The figures of one step.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Step {
    /// Offered rate, packets per second (all streams).
    pub rate: u32,
    /// Packets the senders were told to send (all streams).
    pub planned: u64,
    /// Packets sent successfully (the senders' `sent`).
    pub sent: u64,
    /// Sends that failed at the generator (not counted in `sent`).
    pub send_errors: u64,
    /// Distinct intact packets the sinks received.
    pub received: u64,
    /// `1 - received / sent`, in percent.
    pub loss_pct: f64,
    /// The rate the senders achieved: `sent` over their sending time (approximate: their run time less the idle
    /// wait at the end).
    pub achieved_pps: Option<f64>,
    /// `received` over the time from the first to the last packet at the sinks.
    pub delivered_pps: Option<f64>,
    /// 99th percentile of one-way latency, worst stream, microseconds.
    pub latency_p99_us: Option<u64>,
    /// Forwarder CPU time over the step, seconds: `media-relay`'s utime + stime (relay), the machine's softirq time
    /// (kernel).
    pub cpu_s: Option<f64>,
    /// `cpu_s / (received / 1e6)`.
    pub cpu_s_per_mpkt: Option<f64>,
    /// The machine's softirq time over the step, seconds (both paths; for `kernel` it is `cpu_s`).
    pub softirq_s: Option<f64>,
    /// `softirq_s / (received / 1e6)`.
    pub softirq_s_per_mpkt: Option<f64>,
    /// Busy time (all but idle, iowait and steal) of the relay's core [`RELAY_CORE`] over the step, seconds: for
    /// `relay`, the relay process plus the kernel work of its sends done there (plus anything else the machine
    /// schedules there); for `kernel`, mostly other load (forwarding runs on the senders' core).
    pub core_busy_s: Option<f64>,
    /// `core_busy_s / (received / 1e6)`.
    pub core_busy_s_per_mpkt: Option<f64>,
    /// UDP receive-buffer overflows (`RcvbufErrors` of /proc/net/snmp) in the SBC namespace during the step: the
    /// relay's sockets dropped packets it did not read in time.
    pub sbc_rcvbuf_errors: Option<u64>,
    /// The same in B: the sinks did not keep up.
    pub sink_rcvbuf_errors: Option<u64>,
    /// The relay's own figures for the step's session (relay only): received from A, sent towards B, dropped.
    pub relay_received: Option<u64>,
    pub relay_sent: Option<u64>,
    pub relay_dropped: Option<u64>,
    /// Wall time of the step (senders started to sinks done), seconds.
    pub wall_secs: f64,
    /// Why the step could not be measured, if it could not.
    pub error: Option<String>,
    /// The senders achieved less than 90 % of the offered rate: the generator's core was the limit.
    pub generator_limited: bool,
    /// Measured, something sent, loss < 0.1 %, and not generator-limited.
    pub pass: bool,
}

/// One target's ladder in one run.
#[derive(Debug, Clone, Serialize)]
pub struct Ladder {
    /// 1-based.
    pub run: u32,
    pub target: Target,
    pub steps: Vec<Step>,
    /// The highest passing rate; `None` when no step passed.
    pub ceiling: Option<u32>,
    /// The top of the ladder passed: the real ceiling is at or above it.
    pub capped_by_ladder: bool,
    /// The highest delivered rate of any measured step with loss < 0.1 % (generator-limited steps included): the
    /// most packets/s this path forwarded within the loss criterion, independent of the ladder's spacing.
    pub best_delivered_pps: Option<f64>,
}

impl Ladder {
    fn new(run: u32, target: Target) -> Self {
        Self { run, target, steps: Vec::new(), ceiling: None, capped_by_ladder: false, best_delivered_pps: None }
    }

    fn finish(&mut self, top: u32) {
        self.ceiling = self.steps.iter().filter(|s| s.pass).map(|s| s.rate).max();
        self.capped_by_ladder = self.ceiling == Some(top);
        self.best_delivered_pps = self
            .steps
            .iter()
            .filter(|s| s.error.is_none() && s.sent > 0 && s.loss_pct < MAX_LOSS_PCT)
            .filter_map(|s| s.delivered_pps)
            .reduce(f64::max);
    }

    /// Whether the last [`FAILS_TO_STOP`] steps failed.
    fn should_stop(&self) -> bool {
        self.steps.len() >= FAILS_TO_STOP && self.steps.iter().rev().take(FAILS_TO_STOP).all(|s| !s.pass)
    }
}

fn check_stop() -> Result<()> {
    if crate::cps::STOP.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Runs the scenario and returns every ladder, in the order measured.
pub fn run(opts: &Options) -> Result<Vec<Ladder>> {
    let topo = Topology::single_sbc().context("building the netns topology (needs root)")?;
    let pin = crate::cps::pinning_possible();
    if pin {
        eprintln!("pinning: media-relay on core {RELAY_CORE}, rtpgen senders and sinks on core {GEN_CORE}");
    } else {
        eprintln!("pinning: off (fewer than 2 cores); figures are less comparable");
    }
    let top = *opts.rates.last().context("no rates")?;
    let mut ladders = Vec::new();
    for run in 1..=opts.runs {
        for target in Target::ALL {
            let mut ladder = Ladder::new(run, target);
            let result = match target {
                Target::Relay => relay_ladder(&topo, opts, pin, &mut ladder),
                Target::Kernel => kernel_ladder(&topo, opts, pin, &mut ladder),
            };
            ladder.finish(top);
            ladders.push(ladder);
            result?;
        }
    }
    topo.remove()?;
    Ok(ladders)
}

/// The relay path: a fresh `media-relay` (pinned) for the ladder, one session per step.
fn relay_ladder(topo: &Topology, opts: &Options, pin: bool, ladder: &mut Ladder) -> Result<()> {
    let mut args: Vec<String> = Vec::new();
    let program = if pin {
        args.extend(["-c".to_owned(), RELAY_CORE.to_string(), opts.relay_binary.display().to_string()]);
        PathBuf::from("taskset")
    } else {
        opts.relay_binary.clone()
    };
    args.extend(["--control".to_owned(), CONTROL.to_owned(), "--rtp-timeout".to_owned(), "60s".to_owned()]);
    let mut relay = topo
        .spawn(Host::Sbc, &format!("media-relay-run{}", ladder.run), program, &args)
        .context("starting media-relay")?;
    let mut ctl = Control::open(topo).context("connecting to media-relay's control socket")?;
    ctl.ping(Duration::from_secs(10))
        .with_context(|| format!("media-relay did not answer: {}", relay.output_tail()))?;
    for (i, &rate) in opts.rates.iter().enumerate() {
        check_stop()?;
        let session = SessionId(i as u64 + 1);
        let step = relay_step(topo, opts, pin, &mut ctl, &relay, session, rate);
        eprintln!("{}", progress(opts.runs, ladder, &step));
        ladder.steps.push(step);
        if relay.try_wait()?.is_some() {
            bail!("media-relay exited during run {} at {rate} pps:\n{}", ladder.run, relay.output_tail());
        }
        if ladder.should_stop() {
            break;
        }
    }
    drop(ctl);
    let _ = relay.terminate(Duration::from_secs(5));
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn relay_step(
    topo: &Topology,
    opts: &Options,
    pin: bool,
    ctl: &mut Control,
    relay: &Process,
    session: SessionId,
    rate: u32,
) -> Step {
    let mut step = Step { rate, ..Step::default() };
    let result = (|| -> Result<()> {
        for i in 0..opts.streams {
            let port = RELAY_PORT + 2 * i;
            for (leg, local, partner, peer) in [
                (Leg::A, SBC_A, SBC_B, sock(CALLER, GEN_PORT + i)),
                (Leg::B, SBC_B, SBC_A, sock(CARRIER_B, GEN_PORT + i)),
            ] {
                ctl.send(&Command::Upsert(EndpointSpec {
                    session,
                    leg,
                    stream: i,
                    rtcp: false,
                    local: sock(local, port),
                    partner: sock(partner, port),
                    peer: Some(peer),
                    strict: true,
                    clock_rates: vec![(0, 8000)],
                }))?;
            }
        }
        for i in 0..opts.streams {
            wait_udp_sockets(topo, Host::Sbc, RELAY_PORT + 2 * i, 2, Duration::from_secs(5))?;
        }
        let targets: Vec<SocketAddr> = (0..opts.streams).map(|i| sock(SBC_A, RELAY_PORT + 2 * i)).collect();
        let measured = measure(topo, opts, pin, &targets, Some(relay.id()), &mut step);
        // Close the session whatever happened; its final figures say what the relay itself saw.
        ctl.send(&Command::Remove { session })?;
        let stats = ctl.wait_stats(session, Duration::from_secs(5))?;
        let a = &stats.legs[Leg::A.index()];
        let b = &stats.legs[Leg::B.index()];
        step.relay_received = Some(a.received.packets);
        step.relay_sent = Some(b.sent);
        step.relay_dropped = Some(a.dropped_foreign + a.dropped_no_target + b.dropped_foreign + b.dropped_no_target);
        measured
    })();
    finish_step(&mut step, result);
    step
}

/// The kernel path: forwarding on in the SBC namespace and routes in A and B for the ladder, removed after it.
fn kernel_ladder(topo: &Topology, opts: &Options, pin: bool, ladder: &mut Ladder) -> Result<()> {
    let _forwarding = Forwarding::enable(topo)?;
    let targets: Vec<SocketAddr> = (0..opts.streams).map(|i| sock(CARRIER_B, GEN_PORT + i)).collect();
    for &rate in &opts.rates {
        check_stop()?;
        let mut step = Step { rate, ..Step::default() };
        let result = measure(topo, opts, pin, &targets, None, &mut step);
        finish_step(&mut step, result);
        eprintln!("{}", progress(opts.runs, ladder, &step));
        ladder.steps.push(step);
        if ladder.should_stop() {
            break;
        }
    }
    Ok(())
}

fn finish_step(step: &mut Step, result: Result<()>) {
    if let Err(e) = result {
        step.error = Some(format!("{e:#}"));
    }
    step.generator_limited = step.achieved_pps.is_some_and(|a| a < MIN_ACHIEVED_SHARE * f64::from(step.rate));
    step.pass = step.error.is_none() && step.sent > 0 && step.loss_pct < MAX_LOSS_PCT && !step.generator_limited;
}

fn sock(ip: std::net::Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(ip, port))
}

/// IP forwarding in the SBC namespace and the routes A and B need to use it; undone on drop.
struct Forwarding<'a> {
    topo: &'a Topology,
}

impl<'a> Forwarding<'a> {
    fn enable(topo: &'a Topology) -> Result<Self> {
        let f = Self { topo };
        topo.exec(Host::Sbc, "sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
        topo.exec(Host::A, "ip", &["route", "add", "198.18.2.0/24", "via", "198.18.1.1"])?;
        topo.exec(Host::B, "ip", &["route", "add", "198.18.1.0/24", "via", "198.18.2.1"])?;
        Ok(f)
    }
}

impl std::fmt::Debug for Forwarding<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Forwarding")
    }
}

impl Drop for Forwarding<'_> {
    fn drop(&mut self) {
        let _ = self.topo.exec(Host::A, "ip", &["route", "del", "198.18.2.0/24", "via", "198.18.1.1"]);
        let _ = self.topo.exec(Host::B, "ip", &["route", "del", "198.18.1.0/24", "via", "198.18.2.1"]);
        let _ = self.topo.exec(Host::Sbc, "sysctl", &["-qw", "net.ipv4.ip_forward=0"]);
    }
}

/// One step of traffic: a sink per stream in B, then a sender per stream in A towards `targets[i]`; waits for all,
/// and fills in the step's figures. `relay_pid`: the process whose CPU time is the forwarder's.
fn measure(
    topo: &Topology,
    opts: &Options,
    pin: bool,
    targets: &[SocketAddr],
    relay_pid: Option<u32>,
    step: &mut Step,
) -> Result<()> {
    let streams = u64::from(opts.streams);
    let per_stream_pps = step.rate.div_ceil(u32::from(opts.streams)).max(1);
    let per_stream = (u64::from(per_stream_pps) * u64::from(opts.step_secs)).clamp(1, MAX_PACKETS_PER_STREAM);
    step.planned = per_stream * streams;
    let send_ms = per_stream * 1000 / u64::from(per_stream_pps);
    let dir = topo.dir().to_owned();
    let rtpgen = opts.rtpgen_binary.display().to_string();
    let spawn = |host: Host, name: &str, args: Vec<String>| -> Result<Process> {
        let mut full = Vec::new();
        let program = if pin {
            full.extend(["-c".to_owned(), GEN_CORE.to_string(), rtpgen.clone()]);
            "taskset".to_owned()
        } else {
            rtpgen.clone()
        };
        full.extend(args);
        topo.spawn(host, name, program, &full)
    };

    let mut sinks = Vec::new();
    for i in 0..opts.streams {
        let report = dir.join(format!("sink{i}.json"));
        let _ = std::fs::remove_file(&report);
        let args = Rtpgen::new(sock(CARRIER_B, GEN_PORT + i))
            .expect_count(per_stream)
            .idle_exit(Duration::from_millis(SINK_IDLE_MS))
            .duration(Duration::from_millis(send_ms + 20_000))
            .report(&report)
            .args();
        sinks.push((spawn(Host::B, &format!("sink{i}"), args)?, report));
    }
    for i in 0..opts.streams {
        wait_udp_sockets(topo, Host::B, GEN_PORT + i, 1, Duration::from_secs(5))?;
    }

    let snmp_before = (udp_rcvbuf_errors(topo, Host::Sbc), udp_rcvbuf_errors(topo, Host::B));
    let cpu_before = relay_pid.and_then(process_ticks);
    let si_before = softirq_ticks();
    let core_before = core_busy_ticks(RELAY_CORE);
    let started = Instant::now();
    let mut senders = Vec::new();
    for (i, &to) in targets.iter().enumerate() {
        let report = dir.join(format!("sender{i}.json"));
        let _ = std::fs::remove_file(&report);
        let args = Rtpgen::new(sock(CALLER, GEN_PORT + i as u16))
            .to(to)
            .count(per_stream)
            .pps(per_stream_pps)
            .payload(opts.payload)
            .expect_count(0)
            .idle_exit(Duration::from_millis(SENDER_IDLE_MS))
            .duration(Duration::from_millis(send_ms + 10_000))
            .report(&report)
            .args();
        senders.push((spawn(Host::A, &format!("sender{i}"), args)?, report));
    }
    let limit = Duration::from_millis(send_ms + 30_000);
    let mut sent_reports = Vec::new();
    for (p, report) in &mut senders {
        p.wait_timeout(limit.saturating_sub(started.elapsed())).context("sender")?;
        sent_reports.push(rtp::read_report(report.as_path()).with_context(|| p.output_tail())?);
    }
    let mut sink_reports = Vec::new();
    for (p, report) in &mut sinks {
        p.wait_timeout(limit.saturating_sub(started.elapsed())).context("sink")?;
        sink_reports.push(rtp::read_report(report.as_path()).with_context(|| p.output_tail())?);
    }
    step.wall_secs = started.elapsed().as_secs_f64();
    let si_after = softirq_ticks();
    let core_after = core_busy_ticks(RELAY_CORE);
    let cpu_after = relay_pid.and_then(process_ticks);
    let snmp_after = (udp_rcvbuf_errors(topo, Host::Sbc), udp_rcvbuf_errors(topo, Host::B));

    fill(step, &sent_reports, &sink_reports);
    let per_mpkt = |cpu: f64| (step.received > 0).then(|| cpu / (step.received as f64 / 1e6));
    if let (Some(a), Some(b)) = (si_before, si_after) {
        let s = b.saturating_sub(a) as f64 / CLOCK_TICKS_PER_SEC;
        step.softirq_s = Some(s);
        step.softirq_s_per_mpkt = per_mpkt(s);
    }
    if let (Some(a), Some(b)) = (core_before, core_after) {
        let s = b.saturating_sub(a) as f64 / CLOCK_TICKS_PER_SEC;
        step.core_busy_s = Some(s);
        step.core_busy_s_per_mpkt = per_mpkt(s);
    }
    step.cpu_s = match relay_pid {
        Some(_) => cpu_before.zip(cpu_after).map(|(a, b)| b.saturating_sub(a) as f64 / CLOCK_TICKS_PER_SEC),
        None => step.softirq_s,
    };
    step.cpu_s_per_mpkt = step.cpu_s.and_then(per_mpkt);
    let delta = |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?));
    step.sbc_rcvbuf_errors = delta(snmp_before.0, snmp_after.0);
    step.sink_rcvbuf_errors = delta(snmp_before.1, snmp_after.1);
    Ok(())
}

/// The step's traffic figures from the senders' and sinks' reports.
fn fill(step: &mut Step, senders: &[Report], sinks: &[Report]) {
    step.sent = senders.iter().map(|r| r.sent).sum();
    step.send_errors = senders.iter().map(|r| r.send_errors).sum();
    step.received = sinks.iter().map(|r| r.received).sum();
    step.loss_pct =
        if step.sent == 0 { 100.0 } else { 100.0 * step.sent.saturating_sub(step.received) as f64 / step.sent as f64 };
    // A sender with nothing coming back exits SENDER_IDLE_MS after its last packet.
    let send_secs =
        senders.iter().map(|r| r.elapsed_ms.saturating_sub(SENDER_IDLE_MS) as f64 / 1000.0).fold(0.0, f64::max);
    step.achieved_pps = (send_secs > 0.0).then(|| step.sent as f64 / send_secs);
    let first = sinks.iter().filter_map(|r| r.first_rx_unix_ns).min();
    let last = sinks.iter().filter_map(|r| r.last_rx_unix_ns).max();
    step.delivered_pps =
        first.zip(last).filter(|(f, l)| l > f).map(|(f, l)| step.received as f64 / ((l - f) as f64 / 1e9));
    step.latency_p99_us = sinks.iter().filter_map(|r| r.latency_us.map(|l| l.p99)).max();
}

/// utime + stime of process `pid`, all threads, in clock ticks.
fn process_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// The whole machine's softirq time (`si`, the 7th value of the `cpu` line of /proc/stat), in clock ticks.
fn softirq_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_softirq(&stat)
}

/// Busy ticks of core `core`: user, nice, system, irq, softirq (not idle, iowait, steal, guest) from /proc/stat.
fn core_busy_ticks(core: usize) -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_core_busy(&stat, core)
}

fn parse_core_busy(stat: &str, core: usize) -> Option<u64> {
    let name = format!("cpu{core}");
    let line = stat.lines().find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).map(|x| x.parse().ok()).collect::<Option<_>>()?;
    Some([0, 1, 2, 5, 6].iter().map(|&i| v.get(i).copied().unwrap_or(0)).sum())
}

fn parse_softirq(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.split_whitespace().next() == Some("cpu"))?;
    line.split_whitespace().nth(7)?.parse().ok()
}

/// `Udp: RcvbufErrors` of /proc/net/snmp in `host`'s namespace.
fn udp_rcvbuf_errors(topo: &Topology, host: Host) -> Option<u64> {
    parse_rcvbuf_errors(&topo.exec(host, "cat", &["/proc/net/snmp"]).ok()?)
}

fn parse_rcvbuf_errors(snmp: &str) -> Option<u64> {
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next()?, udp.next()?);
    let column = names.split_whitespace().position(|n| n == "RcvbufErrors")?;
    values.split_whitespace().nth(column)?.parse().ok()
}

/// Waits until at least `count` UDP sockets in `host` are bound to `port` (per `ss`).
fn wait_udp_sockets(topo: &Topology, host: Host, port: u16, count: usize, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let out = topo.exec(host, "ss", &["-Hlun", "sport", "=", &format!(":{port}")])?;
        if out.lines().filter(|l| !l.trim().is_empty()).count() >= count {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("fewer than {count} UDP sockets on port {port} in {} after {timeout:?}", topo.ns(host));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The relay's control connection. The relay listens on loopback inside the SBC namespace, which this process
/// cannot reach; `sbc-bench control-proxy` run there (`ip netns exec`) connects to it and relays stdin/stdout.
#[derive(Debug)]
struct Control {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Control {
    fn open(topo: &Topology) -> Result<Self> {
        let exe = std::env::current_exe().context("current_exe")?;
        let mut child = ::tests::netns::command(Some(&topo.ns(Host::Sbc)), exe)
            .args(["control-proxy", CONTROL])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the control proxy")?;
        let stdin = child.stdin.take().context("proxy stdin")?;
        let stdout = child.stdout.take().context("proxy stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self { child, stdin, lines })
    }

    fn send(&mut self, cmd: &Command) -> Result<()> {
        let mut line = control::encode(cmd);
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).context("writing to the relay's control socket")?;
        self.stdin.flush()?;
        Ok(())
    }

    /// The next event, within `deadline`.
    fn next_event(&mut self, deadline: Instant) -> Result<Event> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.lines.recv_timeout(left) {
                Ok(l) => l,
                Err(mpsc::RecvTimeoutError::Timeout) => bail!("no answer from media-relay in time"),
                Err(mpsc::RecvTimeoutError::Disconnected) => bail!("the control connection closed"),
            };
            if let Ok(e) = control::decode::<Event>(&line) {
                return Ok(e);
            }
        }
    }

    fn ping(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        self.send(&Command::Ping { seq: 1 })?;
        loop {
            if let Event::Pong { seq: 1 } = self.next_event(deadline)? {
                return Ok(());
            }
        }
    }

    fn wait_stats(&mut self, session: SessionId, timeout: Duration) -> Result<relay_proto::control::SessionStats> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.next_event(deadline)? {
                Event::Stats(s) if s.session == session => return Ok(s),
                Event::BindFailed { local, error, .. } => bail!("media-relay could not bind {local}: {error}"),
                _ => {}
            }
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sbc-bench control-proxy ADDR`: connects to TCP `ADDR` (retrying for up to 10 s) and copies stdin to it and it
/// to stdout until either side closes. Run inside a namespace by [`Control::open`].
pub fn control_proxy(addr: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let stream = loop {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(s) => break s,
            Err(e) if Instant::now() > deadline => return Err(e).with_context(|| format!("connecting to {addr}")),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let mut to_socket = stream.try_clone()?;
    std::thread::spawn(move || {
        let _ = pump(&mut std::io::stdin().lock(), &mut to_socket);
        let _ = to_socket.shutdown(std::net::Shutdown::Write);
    });
    let mut from_socket = stream;
    pump(&mut from_socket, &mut std::io::stdout().lock())
}

/// Copies `from` to `to` until end of file, flushing every chunk (no kernel-side copy: lines must arrive at once).
fn pump(from: &mut impl std::io::Read, to: &mut impl Write) -> Result<()> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        to.write_all(&buf[..n])?;
        to.flush()?;
    }
}

/// Builds `media-relay` (unless given) and `rtpgen` in release mode and returns their paths.
pub fn prepare_binaries(relay: Option<&Path>) -> Result<(PathBuf, PathBuf)> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut args = vec!["build", "--release", "-p", "tests", "--bin", "rtpgen"];
    if relay.is_none() {
        args.extend(["-p", "media-relay", "--bin", "media-relay"]);
    }
    eprintln!("building: cargo {}", args.join(" "));
    let status = std::process::Command::new(&cargo)
        .args(&args)
        .current_dir(::tests::repo_root())
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("`cargo {}` failed", args.join(" "));
    }
    let release = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| ::tests::repo_root().join("target"))
        .join("release");
    let canon = |p: PathBuf| std::fs::canonicalize(&p).with_context(|| format!("binary {}", p.display()));
    let relay = canon(relay.map_or_else(|| release.join("media-relay"), Path::to_owned))?;
    Ok((relay, canon(release.join("rtpgen"))?))
}

fn progress(runs: u32, ladder: &Ladder, s: &Step) -> String {
    let f0 = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
    let f2 = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
    let n = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
    let mut line = format!(
        "[run {}/{runs}] {:<6} {:>7} pps: sent {:>8} (achieved {:>7}/s), received {:>8}, loss {:>7.3} %, delivered {:>7}/s, p99 {:>6} us, cpu {:>5} s = {:>5} s/Mpkt (si {:>5} s, core{RELAY_CORE} busy {:>5} s/Mpkt), rcvbuf drops sbc {:>5} sink {:>5}",
        ladder.run,
        ladder.target.name(),
        s.rate,
        s.sent,
        f0(s.achieved_pps),
        s.received,
        s.loss_pct,
        f0(s.delivered_pps),
        n(s.latency_p99_us),
        f2(s.cpu_s),
        f2(s.cpu_s_per_mpkt),
        f2(s.softirq_s),
        f2(s.core_busy_s_per_mpkt),
        n(s.sbc_rcvbuf_errors),
        n(s.sink_rcvbuf_errors),
    );
    if let (Some(r), Some(t)) = (s.relay_received, s.relay_sent) {
        line.push_str(&format!(", relay in {r} out {t}"));
    }
    line.push_str(match (s.pass, s.generator_limited) {
        (true, _) => " -> pass",
        (false, true) => " -> FAIL (generator below 90 % of the offered rate)",
        (false, false) => " -> FAIL",
    });
    if let Some(e) = &s.error {
        line.push_str(&format!(" ({})", e.lines().next().unwrap_or("")));
    }
    line
}

/// The summary over runs.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub targets: Vec<TargetSummary>,
    /// Median ceiling relay / kernel.
    pub ceiling_ratio: Option<f64>,
    /// Median best delivered pps relay / kernel.
    pub best_delivered_ratio: Option<f64>,
    /// The highest ladder rate at or below both targets' median ceilings: where CPU per packet is compared.
    pub reference_rate: Option<u32>,
    /// CPU-s per Mpkt at the reference rate, relay / kernel.
    pub cpu_ratio: Option<f64>,
}

/// One target over all runs.
#[derive(Debug, Clone, Serialize)]
pub struct TargetSummary {
    pub target: Target,
    /// Per run, in order (`None`: no step passed).
    pub ceilings: Vec<Option<u32>>,
    /// Per run: the top of the ladder passed.
    pub capped_by_ladder: Vec<bool>,
    /// Median over runs (a run with no passing step counts as 0).
    pub median_ceiling: Option<f64>,
    /// Per run: the highest delivered pps of a step with loss < 0.1 %.
    pub best_delivered_pps: Vec<Option<f64>>,
    /// Median of those over runs (a run without such a step counts as 0).
    pub median_best_delivered_pps: Option<f64>,
    /// At the reference rate, medians over the runs that measured it: delivered pps, forwarder CPU-s per Mpkt,
    /// machine softirq-s per Mpkt.
    pub reference_delivered_pps: Option<f64>,
    pub reference_cpu_s_per_mpkt: Option<f64>,
    pub reference_softirq_s_per_mpkt: Option<f64>,
    /// How many runs measured the reference rate.
    pub reference_runs: usize,
}

/// Builds the summary of `ladders` (see [`Summary`]).
pub fn summarize(rates: &[u32], ladders: &[Ladder]) -> Summary {
    let of = |t: Target| ladders.iter().filter(move |l| l.target == t);
    let median_ceiling = |t: Target| median(&of(t).map(|l| f64::from(l.ceiling.unwrap_or(0))).collect::<Vec<_>>());
    let floor = Target::ALL.iter().map(|&t| median_ceiling(t).unwrap_or(0.0)).fold(f64::INFINITY, f64::min);
    let reference_rate = rates.iter().copied().filter(|&r| f64::from(r) <= floor).max();
    let at_ref = |t: Target, f: fn(&Step) -> Option<f64>| -> (Option<f64>, usize) {
        let values: Vec<f64> = of(t)
            .filter_map(|l| l.steps.iter().find(|s| Some(s.rate) == reference_rate && s.error.is_none()))
            .filter_map(f)
            .collect();
        (median(&values), values.len())
    };
    let targets: Vec<TargetSummary> = Target::ALL
        .iter()
        .map(|&t| {
            let (cpu, n) = at_ref(t, |s| s.cpu_s_per_mpkt);
            TargetSummary {
                target: t,
                ceilings: of(t).map(|l| l.ceiling).collect(),
                capped_by_ladder: of(t).map(|l| l.capped_by_ladder).collect(),
                median_ceiling: median_ceiling(t),
                best_delivered_pps: of(t).map(|l| l.best_delivered_pps).collect(),
                median_best_delivered_pps: median(
                    &of(t).map(|l| l.best_delivered_pps.unwrap_or(0.0)).collect::<Vec<_>>(),
                ),
                reference_delivered_pps: at_ref(t, |s| s.delivered_pps).0,
                reference_cpu_s_per_mpkt: cpu,
                reference_softirq_s_per_mpkt: at_ref(t, |s| s.softirq_s_per_mpkt).0,
                reference_runs: n,
            }
        })
        .collect();
    let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).filter(|&(_, b)| b > 0.0).map(|(a, b)| a / b);
    Summary {
        ceiling_ratio: ratio(targets[0].median_ceiling, targets[1].median_ceiling),
        best_delivered_ratio: ratio(targets[0].median_best_delivered_pps, targets[1].median_best_delivered_pps),
        reference_rate,
        cpu_ratio: ratio(targets[0].reference_cpu_s_per_mpkt, targets[1].reference_cpu_s_per_mpkt),
        targets,
    }
}

/// The table printed at the end.
pub fn table(opts: &Options, summary: &Summary, pinned: bool) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "sbc-bench media --local: {} run(s), steps of {} s, {} stream(s), {}-byte RTP payloads, rates (pps) {:?}\n",
        opts.runs, opts.step_secs, opts.streams, opts.payload, opts.rates
    ));
    out.push_str(&if pinned {
        format!("pinning: media-relay on core {RELAY_CORE}, rtpgen senders and sinks on core {GEN_CORE}\n")
    } else {
        "pinning: off (fewer than 2 cores)\n".to_owned()
    });
    out.push_str(&format!(
        "a step passes with loss < {MAX_LOSS_PCT} % and the generator at >= 90 % of the offered rate; ceiling = highest passing rate;\ncpu: relay = media-relay utime+stime, kernel = whole-machine softirq\n\n"
    ));
    out.push_str(&format!("{:<22}", "ceiling (pps)"));
    for r in 1..=opts.runs {
        out.push_str(&format!("{:>10}", format!("run {r}")));
    }
    out.push_str(&format!("{:>10}\n", "median"));
    for t in &summary.targets {
        out.push_str(&format!("  {:<20}", t.target.name()));
        for (c, capped) in t.ceilings.iter().zip(&t.capped_by_ladder) {
            let cell = c.map_or("none".to_owned(), |c| format!("{c}{}", if *capped { "+" } else { "" }));
            out.push_str(&format!("{cell:>10}"));
        }
        out.push_str(&format!("{:>10}\n", t.median_ceiling.map_or("-".to_owned(), |m| format!("{m:.0}"))));
    }
    out.push_str(&format!(
        "  {:<20}{}\n",
        "relay/kernel",
        summary.ceiling_ratio.map_or("-".to_owned(), |r| format!("{r:.2}"))
    ));
    out.push_str(&format!("{:<22}", "best delivered (pps)"));
    for r in 1..=opts.runs {
        out.push_str(&format!("{:>10}", format!("run {r}")));
    }
    out.push_str(&format!("{:>10}\n", "median"));
    let f0 = |v: Option<f64>| v.map_or("none".to_owned(), |v| format!("{v:.0}"));
    for t in &summary.targets {
        out.push_str(&format!("  {:<20}", t.target.name()));
        for b in &t.best_delivered_pps {
            out.push_str(&format!("{:>10}", f0(*b)));
        }
        out.push_str(&format!("{:>10}\n", f0(t.median_best_delivered_pps)));
    }
    out.push_str(&format!(
        "  {:<20}{}\n",
        "relay/kernel",
        summary.best_delivered_ratio.map_or("-".to_owned(), |r| format!("{r:.2}"))
    ));
    out.push_str("  (highest delivered rate of any step with loss < 0.1 %, generator-limited steps included)\n");
    if summary.targets.iter().any(|t| t.capped_by_ladder.iter().any(|&c| c)) {
        out.push_str("  (+: the top of the ladder passed; the real ceiling is at or above it: raise --rates)\n");
    }
    out.push('\n');
    let Some(rate) = summary.reference_rate else {
        out.push_str("reference rate: none (a target passed no step in the median run)\n");
        return out;
    };
    out.push_str(&format!(
        "at the reference rate {rate} pps (highest ladder rate within both median ceilings; medians over runs)\n"
    ));
    out.push_str(&format!(
        "{:<22}{:>14}{:>16}{:>16}{:>7}\n",
        "", "delivered/s", "cpu-s/Mpkt", "softirq-s/Mpkt", "runs"
    ));
    let f = |v: Option<f64>, p: usize| v.map_or("-".to_owned(), |v| format!("{v:.p$}"));
    for t in &summary.targets {
        out.push_str(&format!(
            "  {:<20}{:>14}{:>16}{:>16}{:>7}\n",
            t.target.name(),
            f(t.reference_delivered_pps, 0),
            f(t.reference_cpu_s_per_mpkt, 2),
            f(t.reference_softirq_s_per_mpkt, 2),
            t.reference_runs
        ));
    }
    out.push_str(&format!("  {:<20}{:>14}{:>16}\n", "relay/kernel", "", f(summary.cpu_ratio, 2)));
    out.push_str(
        "  (cpu-s/Mpkt: relay = media-relay process only; kernel = softirq of the whole machine, which for relay\n   \
         steps is shown too: the relay's packets also cost kernel time outside its process)\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(rate: u32, pass: bool, cpu: f64) -> Step {
        Step { rate, pass, cpu_s_per_mpkt: Some(cpu), received: 1, sent: 1, ..Step::default() }
    }

    fn ladder(run: u32, target: Target, passes: &[(u32, bool)], cpu: f64) -> Ladder {
        let mut l = Ladder::new(run, target);
        l.steps = passes.iter().map(|&(r, p)| step(r, p, cpu)).collect();
        l.finish(400);
        l
    }

    #[test]
    fn ceilings_stop_and_reference() {
        let l = ladder(1, Target::Relay, &[(100, true), (200, false), (300, true), (400, false)], 1.0);
        assert_eq!(l.ceiling, Some(300));
        assert!(!l.should_stop());
        let l = ladder(1, Target::Relay, &[(100, true), (200, false), (300, false)], 1.0);
        assert!(!l.should_stop());
        let l = ladder(1, Target::Relay, &[(100, true), (200, false), (300, false), (400, false)], 1.0);
        assert!(l.should_stop());
        let ladders = vec![
            ladder(1, Target::Relay, &[(100, true), (200, true), (300, false), (400, false)], 2.0),
            ladder(1, Target::Kernel, &[(100, true), (200, true), (300, true), (400, true)], 1.0),
            ladder(2, Target::Relay, &[(100, true), (200, false), (300, false)], 4.0),
            ladder(2, Target::Kernel, &[(100, true), (200, true), (300, true), (400, true)], 1.0),
            ladder(3, Target::Relay, &[(100, true), (200, true), (300, true), (400, false)], 3.0),
            ladder(3, Target::Kernel, &[(100, true), (200, true), (300, true), (400, true)], 1.0),
        ];
        assert!(ladders[1].capped_by_ladder);
        let s = summarize(&[100, 200, 300, 400], &ladders);
        assert_eq!(s.targets[0].ceilings, vec![Some(200), Some(100), Some(300)]);
        assert_eq!(s.targets[0].median_ceiling, Some(200.0));
        assert_eq!(s.reference_rate, Some(200));
        assert_eq!(s.targets[0].reference_cpu_s_per_mpkt, Some(3.0));
        assert_eq!(s.cpu_ratio, Some(3.0));
        assert_eq!(s.ceiling_ratio, Some(0.5));
    }

    #[test]
    fn proc_parsing() {
        assert_eq!(
            parse_softirq("cpu  927775 0 92128 923596 6667 0 4666 8273 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"),
            Some(4666)
        );
        let snmp = "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\nUdp: 10 0 3 12 3 0\n";
        assert_eq!(parse_rcvbuf_errors(snmp), Some(3));
    }
}
