//! `sbc-bench media --local`: the relay's highest forwarded packets/s under 0.1 % loss, its CPU-seconds per
//! million packets and the one-way latency it adds, for the user-space relay, the relay with its XDP fast path, a
//! bare XDP redirect (the ceiling) and plain kernel IP forwarding between the same namespaces, in the same run.
//!
//! One single-SBC topology ([`tests::netns::Topology::single_sbc`], prepared for XDP with
//! [`tests::netns::Topology::prepare_xdp`] when `xdp` or `bare` is measured) serves the whole invocation. Each run
//! climbs the rate ladder once per path (`--paths`) with the same generator (`sbc-bench blast` or `rtpgen`, one
//! sender per stream in A; one `rtpgen` sink per stream in B):
//!
//! - `relay`: senders in A (198.18.1.10:7000+i) → `media-relay` in the SBC namespace (198.18.1.1:30000+2i in,
//!   198.18.2.1:30000+2i out, one session per step with one relayed stream per `--streams`) → sinks in B
//!   (198.18.2.10:7000+i). The relay's CPU is its process's utime + stime over the step.
//! - `xdp`: the same with `media-relay --xdp native --interface a0 --interface b0`; B is latched with 3 packets
//!   per stream before the load, so the XDP program carries all but A's first packet.
//! - `srtp`: the `relay` path with leg A on SDES-SRTP: the senders (`blast --srtp-key`, whatever `--generator`
//!   says: rtpgen cannot encrypt) send SRTP (AES_CM_128_HMAC_SHA1_80, a fresh key per step), the relay
//!   authenticates and decrypts it with leg A's keys from its EndpointSpec and sends plain RTP to the sinks in B,
//!   which check every packet as on the other paths. Its ceiling and CPU per packet next to `relay`'s, in the
//!   same run, are the cost of terminating SRTP.
//! - `bare`: `sbc-bench xdp-bare a0 b0` redirects every frame from a0 to b0 untouched; B's kernel drops them (not
//!   its address), so they are counted at B's veth (rx_packets of B's eth0).
//! - `rtpengine`: the `relay` path with rtpengine 10.5 (user space, `--table=-1`) in place of `media-relay`, steered
//!   over its NG protocol (one call per step, one audio stream per `--streams`; [`crate::rtpengine`]); its CPU is
//!   its process's utime + stime (all threads).
//! - `kernel`: `net.ipv4.ip_forward=1` in the SBC namespace only, a route to 198.18.2.0/24 via 198.18.1.1 in A and
//!   one to 198.18.1.0/24 via 198.18.2.1 in B (added for this ladder and removed after it); senders in A send
//!   straight to the sinks in B.
//!
//! XDP and kernel forwarding run in softirq context and are not separable per namespace: every step records the
//! whole machine's softirq time (`si` in /proc/stat) next to the forwarder process's time. The XDP program itself
//! is separable: for the `xdp` (and `bare`) ladder `kernel.bpf_stats_enabled` is set to 1 ([`crate::xdp::BpfStats`],
//! restored afterwards) and every step reads the programs' `run_time_ns`/`run_cnt` from the fdinfo of the
//! forwarder process's program fds ([`crate::xdp::prog_stats`]). The relay's own CPU ([`Step::relay_cpu_s`], the
//! basis of the XDP issue's CPU target) is its process time plus that program run time.
//!
//! A step sends `rate × step_secs` packets (bounded) at `rate` packets/s, split evenly over the streams, and passes
//! when less than 0.1 % of the packets sent did not arrive intact at the sinks (bare: at B's veth) and the
//! senders achieved 90 % of the rate; the "wire" criterion counts the loss at B's veth for every path. The
//! ceiling of a ladder is its highest passing step; a ladder stops after three steps in a row failing both. The
//! senders run on core 0, the relay on core 1, the sinks on core 1 except in the `relay` path (core 0)
//! (`taskset`). Once per run, the XDP program's own ns/packet comes from `BPF_PROG_TEST_RUN` ([`crate::xdp`]).
//!
//! After each ladder with sinks, one more step at half its ceiling ([`Ladder::latency_step`]) gives the path's
//! one-way latency at 50 % load; [`crate::media_versus`] compares the paths (rtpengine, kernel) from it.

use crate::stats::median;
use ::tests::netns::{Host, Process, Topology, CALLER, CARRIER_B, SBC_A, SBC_B};
use ::tests::rtp::{self, Report, Rtpgen};
use anyhow::{bail, Context, Result};
use relay_proto::control::{self, Command, EndpointSpec, Event, Leg, SessionId};
use relay_proto::sdes::{KeyMaterial, OsKeys, SrtpKeys, Suite};
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
/// The core every sender runs on (and, since they run where the packets are sent, the softirqs of XDP, the veths,
/// the bridge and kernel forwarding).
pub const GEN_CORE: usize = 0;
/// The core the sinks run on in the paths without a busy user-space forwarder (xdp, kernel; bare has none): the
/// relay's core, idle there, so that the generator's core is left to the senders and the softirqs (on the
/// generator's core the sinks held the XDP path to about half the generator's rate). In the `relay` and `srtp`
/// paths they run on [`GEN_CORE`] instead, leaving core 1 to the relay (sharing it, they made the relay lose
/// packets at 40 000 pps).
pub const SINK_CORE: usize = 1;

/// The core of the sinks of `target`.
pub fn sink_core(target: Target) -> usize {
    if matches!(target, Target::Relay | Target::Srtp | Target::Rtpengine | Target::Ng) {
        GEN_CORE
    } else {
        SINK_CORE
    }
}
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
pub(crate) const GEN_PORT: u16 = 7000;
/// The relay's first port; stream i uses this + 2i on both sides.
const RELAY_PORT: u16 = 30000;
/// A sender exits this long after its last packet (nothing comes back to it).
const SENDER_IDLE_MS: u64 = 300;
/// A sink exits this long after its last packet when not everything arrived.
const SINK_IDLE_MS: u64 = 1000;
/// `USER_HZ`: the unit of /proc/PID/stat and /proc/stat (100 on every Linux architecture in practice).
pub const CLOCK_TICKS_PER_SEC: f64 = 100.0;

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
    /// The paths measured, in this order in every run.
    pub paths: Vec<Target>,
    /// The sender used.
    pub generator: Generator,
    /// `--relay-threads`: the `relay` path is measured once per entry, with `media-relay --threads N`, one session
    /// per stream spread over the threads ([`crate::media_threads`]). Empty: once, with one session and the relay's
    /// default threads.
    pub relay_threads: Vec<usize>,
}

/// The sender of every step (the sinks are always `rtpgen`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Generator {
    /// `sbc-bench blast`: sendmmsg in batches of 32, one sleep per batch.
    Blast,
    /// `rtpgen`: one send_to and one sleep per packet.
    Rtpgen,
    /// The XDP generator (live frames, or AF_XDP where the kernel refuses them) with an XDP sink (`crate::live`;
    /// its own ladders, not this module's).
    Xdp,
}

/// The forwarding path measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// A → `media-relay` (user space only) in the SBC namespace → B.
    Relay,
    /// A → `media-relay --xdp native` in the SBC namespace → B: the first packet of each direction through user
    /// space, the rest through the XDP program on a0.
    Xdp,
    /// A → a bare XDP redirect a0 → b0 (no lookup, no rewrite: the ceiling) → B's veth, counted there.
    Bare,
    /// A (SRTP) → `media-relay` (user space) decrypting leg A's SRTP → B (plain RTP).
    Srtp,
    /// A → kernel IP forwarding in the SBC namespace → B.
    Kernel,
    /// A → rtpengine 10.5 (user space, steered over NG) in the SBC namespace → B: the reference relay.
    Rtpengine,
    /// A → `media-relay --ng` (user space) in the SBC namespace → B, steered over NG exactly as the `rtpengine`
    /// path is (issue 17: the same client, the same calls).
    Ng,
    /// A → the reference relay program (`reference_relay`, one flow per generator flow) on a0 → B; with
    /// `--generator xdp` only (`crate::live`).
    Reference,
    /// A → our `relay_xdp` on a0, attached and filled with the relay's flows by the relay's own loader
    /// (`media_relay::xdp::Xdp`) in a helper, without the relay's process and sockets → B; with `--generator xdp`
    /// only: the XDP path at flow counts whose two sockets per flow the open-file limit does not allow.
    #[value(name = "xdp-maps")]
    #[serde(rename = "xdp-maps")]
    XdpMaps,
}

impl Target {
    /// The name used in output and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Target::Relay => "relay",
            Target::Xdp => "xdp",
            Target::Bare => "bare",
            Target::Srtp => "srtp",
            Target::Kernel => "kernel",
            Target::Rtpengine => "rtpengine",
            Target::Ng => "ng",
            Target::Reference => "reference",
            Target::XdpMaps => "xdp-maps",
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
    /// Median of one-way latency (from the send timestamp in the payload), worst stream, microseconds.
    pub latency_p50_us: Option<u64>,
    /// 99th percentile of one-way latency, worst stream, microseconds.
    pub latency_p99_us: Option<u64>,
    /// RFC 3550 interarrival jitter at the end of the step (from the send timestamps in the payload), worst
    /// stream, microseconds.
    pub jitter_us: Option<f64>,
    /// Packets B's veth (eth0) received during the step (its rx_packets counter, or B's UDP layer's count when
    /// larger: the veth counts a GSO send of the relay once): what reached B's interface, whether or not a socket
    /// took it (the only delivery figure of `bare`).
    pub wire_rx: Option<u64>,
    /// `wire_rx` over the senders' sending time.
    pub wire_pps: Option<f64>,
    /// Forwarder CPU time over the step, seconds: `media-relay`'s utime + stime (relay, xdp), the bare-redirect
    /// helper's (bare: it only holds the program), the machine's softirq time (kernel).
    pub cpu_s: Option<f64>,
    /// `cpu_s / (received / 1e6)`.
    pub cpu_s_per_mpkt: Option<f64>,
    /// The run time of the XDP programs the forwarder process holds, over the step, seconds, from the kernel's
    /// per-program statistics (`run_time_ns` in /proc/PID/fdinfo, with `kernel.bpf_stats_enabled=1`): xdp (the
    /// relay's program on a0 and b0), bare (the bare redirect). Includes the statistics' own two clock reads per
    /// run; excludes the redirect the kernel carries out after the program returns.
    pub prog_run_s: Option<f64>,
    /// Program runs over the step (every packet the programs saw, redirected or passed).
    pub prog_run_cnt: Option<u64>,
    /// `prog_run_s / prog_run_cnt` in ns: the program's in-situ time per packet.
    pub prog_ns_per_pkt: Option<f64>,
    /// The relay's own CPU over the step, seconds: the process's utime + stime (relay: this holds the kernel work
    /// of its own socket calls), plus its XDP programs' run time (`prog_run_s`; xdp; bare: the helper and its
    /// program). `None` for kernel forwarding, and when the program's statistics could not be read.
    pub relay_cpu_s: Option<f64>,
    /// `relay_cpu_s / (received / 1e6)`.
    pub relay_cpu_s_per_mpkt: Option<f64>,
    /// The machine's softirq time over the step, seconds (both paths; for `kernel` it is `cpu_s`).
    pub softirq_s: Option<f64>,
    /// `softirq_s / (received / 1e6)`.
    pub softirq_s_per_mpkt: Option<f64>,
    /// Forwarder process time plus the machine's softirq time (kernel: the softirq time alone), seconds.
    pub total_s: Option<f64>,
    /// `total_s / (received / 1e6)`.
    pub total_s_per_mpkt: Option<f64>,
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
    /// Of `relay_received`, the packets the XDP program forwarded (the relay's `kernel_packets` of leg A).
    pub kernel_packets: Option<u64>,
    /// Wall time of the step (senders started to sinks done), seconds.
    pub wall_secs: f64,
    /// Why the step could not be measured, if it could not.
    pub error: Option<String>,
    /// The senders achieved less than 90 % of the offered rate: the generator's core was the limit.
    pub generator_limited: bool,
    /// Measured, something sent, loss < 0.1 %, and not generator-limited.
    pub pass: bool,
    /// `1 - min(wire_rx, sent) / sent`, in percent: loss counted at B's veth (the forwarder's delivery to B,
    /// whether or not the sinks kept up).
    pub wire_loss_pct: Option<f64>,
    /// Measured, something sent, wire loss < 0.1 %, and not generator-limited.
    pub wire_pass: bool,
}

/// One target's ladder in one run.
#[derive(Debug, Clone, Serialize)]
pub struct Ladder {
    /// 1-based.
    pub run: u32,
    pub target: Target,
    /// `media-relay --threads` of this ladder (`--relay-threads`); `None`: the relay's default.
    pub threads: Option<usize>,
    pub steps: Vec<Step>,
    /// The highest passing rate; `None` when no step passed.
    pub ceiling: Option<u32>,
    /// The top of the ladder passed: the real ceiling is at or above it.
    pub capped_by_ladder: bool,
    /// The highest delivered rate of any measured step with loss < 0.1 % (generator-limited steps included): the
    /// most packets/s this path forwarded within the loss criterion, independent of the ladder's spacing.
    pub best_delivered_pps: Option<f64>,
    /// The highest rate passing with the loss counted at B's veth ([`Step::wire_pass`]).
    pub wire_ceiling: Option<u32>,
    /// The highest B-veth rate of any measured step with wire loss < 0.1 %.
    pub best_wire_pps: Option<f64>,
    /// One step after the ladder at half its highest passing rate: the path's latency at 50 % load (`None`: no
    /// step passed, or the path has no sinks).
    pub latency_step: Option<Step>,
}

impl Ladder {
    pub(crate) fn new(run: u32, target: Target) -> Self {
        Self {
            run,
            target,
            threads: None,
            steps: Vec::new(),
            ceiling: None,
            capped_by_ladder: false,
            best_delivered_pps: None,
            wire_ceiling: None,
            best_wire_pps: None,
            latency_step: None,
        }
    }

    /// Half the highest passing rate so far (the rate of [`Ladder::latency_step`]).
    pub(crate) fn half_ceiling_rate(&self) -> Option<u32> {
        self.steps.iter().filter(|s| s.pass).map(|s| s.rate).max().map(|c| (c / 2).max(1))
    }

    pub(crate) fn finish(&mut self, top: u32) {
        self.ceiling = self.steps.iter().filter(|s| s.pass).map(|s| s.rate).max();
        self.capped_by_ladder = self.ceiling == Some(top);
        self.best_delivered_pps = self
            .steps
            .iter()
            .filter(|s| s.error.is_none() && s.sent > 0 && s.loss_pct < MAX_LOSS_PCT)
            .filter_map(|s| s.delivered_pps)
            .reduce(f64::max);
        self.wire_ceiling = self.steps.iter().filter(|s| s.wire_pass).map(|s| s.rate).max();
        self.best_wire_pps = self
            .steps
            .iter()
            .filter(|s| s.error.is_none() && s.wire_loss_pct.is_some_and(|l| l < MAX_LOSS_PCT))
            .filter_map(|s| s.wire_pps)
            .reduce(f64::max);
    }

    /// Whether the last [`FAILS_TO_STOP`] steps failed.
    pub(crate) fn should_stop(&self) -> bool {
        self.steps.len() >= FAILS_TO_STOP
            && self.steps.iter().rev().take(FAILS_TO_STOP).all(|s| !s.pass && !s.wire_pass)
    }
}

pub(crate) fn check_stop() -> Result<()> {
    if crate::cps::STOP.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Runs the scenario and returns every ladder, in the order measured, and the XDP program's `BPF_PROG_TEST_RUN`
/// figures of every run (when `xdp` is measured).
pub fn run(opts: &Options) -> Result<(Vec<Ladder>, Vec<crate::xdp::TestRun>)> {
    let topo = Topology::single_sbc().context("building the netns topology (needs root)")?;
    // XDP needs the topology prepared (forwarding on a0/b0, checksum offload off at the senders, XDP_PASS on the
    // veth peers of a0 and b0); it stays so for every path of the invocation, so all see the same topology.
    let _xdp_helpers = if opts.paths.iter().any(|&p| matches!(p, Target::Xdp | Target::Bare)) {
        eprintln!("preparing the topology for XDP (forwarding on a0/b0, tx checksum offload off, XDP_PASS on peers)");
        Some(topo.prepare_xdp(&opts.relay_binary).context("preparing the topology for XDP")?)
    } else {
        None
    };
    let pin = crate::cps::pinning_possible();
    if pin {
        eprintln!(
            "pinning: media-relay and the sinks on core {RELAY_CORE}/{SINK_CORE}, the senders on core {GEN_CORE}"
        );
    } else {
        eprintln!("pinning: off (fewer than 2 cores); figures are less comparable");
    }
    let top = *opts.rates.last().context("no rates")?;
    let mut ladders = Vec::new();
    let mut test_runs = Vec::new();
    for run in 1..=opts.runs {
        for &target in &opts.paths {
            // The relay path once per `--relay-threads` entry, interleaved within the run (so noise hits all).
            let threads: Vec<Option<usize>> = match target {
                Target::Relay if !opts.relay_threads.is_empty() => {
                    opts.relay_threads.iter().copied().map(Some).collect()
                }
                _ => vec![None],
            };
            for threads in threads {
                let mut ladder = Ladder::new(run, target);
                ladder.threads = threads;
                let result = match target {
                    Target::Relay | Target::Xdp | Target::Srtp => relay_ladder(&topo, opts, pin, &mut ladder, target),
                    Target::Bare => bare_ladder(&topo, opts, pin, &mut ladder),
                    Target::Kernel => kernel_ladder(&topo, opts, pin, &mut ladder),
                    Target::Rtpengine => crate::rtpengine::ladder(&topo, opts, pin, &mut ladder, false),
                    Target::Ng => crate::rtpengine::ladder(&topo, opts, pin, &mut ladder, true),
                    Target::Reference | Target::XdpMaps => {
                        Err(anyhow::anyhow!("the {} path needs --generator xdp", target.name()))
                    }
                };
                ladder.finish(top);
                ladders.push(ladder);
                result?;
            }
        }
        if opts.paths.contains(&Target::Xdp) {
            check_stop()?;
            let t = crate::xdp::test_run(topo.tag()).context("BPF_PROG_TEST_RUN timing")?;
            eprintln!(
                "[run {run}/{}] BPF_PROG_TEST_RUN: hit {:.0} ns/packet (mean of single runs), {:.0} ns/packet \
                 (repeat), miss {:.0} ns/packet",
                opts.runs, t.hit_single_ns, t.hit_repeat_ns, t.miss_ns
            );
            test_runs.push(t);
        }
    }
    drop(_xdp_helpers);
    topo.remove()?;
    Ok((ladders, test_runs))
}

/// The relay path (`target` relay, srtp; or the XDP path, xdp): a fresh `media-relay` (pinned) for the ladder, one
/// session per step.
fn relay_ladder(topo: &Topology, opts: &Options, pin: bool, ladder: &mut Ladder, target: Target) -> Result<()> {
    let xdp = target == Target::Xdp;
    // The XDP program's own run time per step (restored on return, also on error).
    let _bpf_stats =
        if xdp { Some(crate::xdp::BpfStats::enable().context("enabling BPF run-time statistics")?) } else { None };
    let mut args: Vec<String> = Vec::new();
    let program = if pin {
        let cores = crate::media_threads::relay_cores(ladder.threads);
        args.extend(["-c".to_owned(), cores, opts.relay_binary.display().to_string()]);
        PathBuf::from("taskset")
    } else {
        opts.relay_binary.clone()
    };
    args.extend(["--control".to_owned(), CONTROL.to_owned(), "--rtp-timeout".to_owned(), "60s".to_owned()]);
    if let Some(n) = ladder.threads {
        args.extend(["--threads".to_owned(), n.to_string()]);
    }
    if xdp {
        args.extend(["--xdp", "native", "--interface", "a0", "--interface", "b0"].map(str::to_owned));
    }
    let mut relay = topo
        .spawn(Host::Sbc, &format!("media-relay-{}-run{}", ladder.target.name(), ladder.run), program, &args)
        .context("starting media-relay")?;
    let mut ctl = Control::open(topo).context("connecting to media-relay's control socket")?;
    ctl.ping(Duration::from_secs(10))
        .with_context(|| format!("media-relay did not answer: {}", relay.output_tail()))?;
    let mut next_session = 1;
    for &rate in &opts.rates {
        check_stop()?;
        let sessions = crate::media_threads::step_sessions(&mut next_session, opts.streams, ladder.threads);
        let step = relay_step(topo, opts, pin, &mut ctl, &relay, &sessions, rate, target);
        eprintln!("{}", progress(opts.runs, ladder, &step));
        ladder.steps.push(step);
        if relay.try_wait()?.is_some() {
            bail!("media-relay exited during run {} at {rate} pps:\n{}", ladder.run, relay.output_tail());
        }
        if ladder.should_stop() {
            break;
        }
    }
    if let Some(rate) = ladder.half_ceiling_rate() {
        check_stop()?;
        let sessions = crate::media_threads::step_sessions(&mut next_session, opts.streams, ladder.threads);
        let step = relay_step(topo, opts, pin, &mut ctl, &relay, &sessions, rate, target);
        eprintln!("{} (latency at half the ceiling)", progress(opts.runs, ladder, &step));
        ladder.latency_step = Some(step);
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
    sessions: &[SessionId],
    rate: u32,
    target: Target,
) -> Step {
    let xdp = target == Target::Xdp;
    let mut step = Step { rate, ..Step::default() };
    // The srtp path: leg A's peer (the senders) and the relay share a fresh key for what A sends; the relay's own
    // key for A protects nothing here (nothing goes back to A).
    let suite = Suite::AesCm128HmacSha1_80;
    let srtp = (target == Target::Srtp)
        .then(|| -> Result<SrtpKeys> {
            let draw = || KeyMaterial::generate(suite, &mut OsKeys).map_err(|e| anyhow::anyhow!("{e}"));
            Ok(SrtpKeys { suite, ours: draw()?, theirs: draw()? })
        })
        .transpose();
    let result = (|| -> Result<()> {
        let srtp = srtp?;
        for i in 0..opts.streams {
            let port = RELAY_PORT + 2 * i;
            for (leg, local, partner, peer) in [
                (Leg::A, SBC_A, SBC_B, sock(CALLER, GEN_PORT + i)),
                (Leg::B, SBC_B, SBC_A, sock(CARRIER_B, GEN_PORT + i)),
            ] {
                ctl.send(&Command::Upsert(EndpointSpec {
                    session: sessions[usize::from(i)],
                    leg,
                    stream: i,
                    rtcp: false,
                    local: sock(local, port),
                    partner: sock(partner, port),
                    peer: Some(peer),
                    latched: None,
                    strict: true,
                    clock_rates: vec![(0, 8000)],
                    // As the SBC sends plain RTP streams: RTCP hidden (each datagram is classified; RTP untouched).
                    cname_key: Some(relay_proto::cname::CnameKey::default()),
                    srtp: srtp.clone().filter(|_| leg == Leg::A).map(Box::new),
                    srtp_pending: false,
                }))?;
            }
        }
        let measured = (|| -> Result<()> {
            for i in 0..opts.streams {
                wait_udp_sockets(topo, Host::Sbc, RELAY_PORT + 2 * i, 2, Duration::from_secs(10))?;
            }
            if xdp {
                prime_b(topo, opts)?;
            }
            let targets: Vec<SocketAddr> = (0..opts.streams).map(|i| sock(SBC_A, RELAY_PORT + 2 * i)).collect();
            let key = srtp.as_ref().map(|k| k.theirs.to_base64());
            let sinks = sink_core(target);
            measure(topo, opts, pin, &targets, Some(relay.id()), true, sinks, xdp, key.as_deref(), &mut step)
        })();
        // Close the session whatever happened (also when its sockets were late: else they would block the next
        // step's ports); its final figures say what the relay itself saw.
        let mut distinct = sessions.to_vec();
        distinct.dedup();
        let (mut received, mut sent, mut dropped, mut kernel) = (0, 0, 0, 0);
        for &session in &distinct {
            ctl.send(&Command::Remove { session })?;
            let stats = ctl.wait_stats(session, Duration::from_secs(5))?;
            let a = &stats.legs[Leg::A.index()];
            let b = &stats.legs[Leg::B.index()];
            received += a.received.packets;
            sent += b.sent;
            dropped += a.dropped_foreign
                + a.dropped_no_target
                + a.dropped_srtp
                + b.dropped_foreign
                + b.dropped_no_target
                + b.dropped_srtp;
            kernel += a.kernel_packets;
        }
        step.relay_received = Some(received);
        step.relay_sent = Some(sent);
        step.relay_dropped = Some(dropped);
        step.kernel_packets = Some(kernel);
        measured
    })();
    finish_step(&mut step, result);
    step
}

/// Latches B on every stream before the load (the XDP path installs a direction's flow only once both peers are
/// latched): 3 packets from each sink's address to the relay's b side, which the relay forwards to A (nobody
/// listens there).
fn prime_b(topo: &Topology, opts: &Options) -> Result<()> {
    let mut primers = Vec::new();
    for i in 0..opts.streams {
        let args = Rtpgen::new(sock(CARRIER_B, GEN_PORT + i))
            .to(sock(SBC_B, RELAY_PORT + 2 * i))
            .count(3)
            .pps(100)
            .expect_count(0)
            .idle_exit(Duration::from_millis(100))
            .duration(Duration::from_secs(3))
            .args();
        primers.push(topo.spawn(Host::B, &format!("primer{i}"), &opts.rtpgen_binary, &args)?);
    }
    for p in &mut primers {
        p.wait_timeout(Duration::from_secs(10)).context("priming B")?;
    }
    // Let the relay see them and install A's flow before the load.
    std::thread::sleep(Duration::from_millis(100));
    Ok(())
}

/// The bare-redirect path: `sbc-bench xdp-bare a0 b0` in the SBC namespace for the ladder; A sends to the
/// relay's addresses (with a static neighbour entry for 198.18.1.1, since ARP requests would be redirected too);
/// what arrives at B's veth is counted.
fn bare_ladder(topo: &Topology, opts: &Options, pin: bool, ladder: &mut Ladder) -> Result<()> {
    let _bpf_stats = crate::xdp::BpfStats::enable().context("enabling BPF run-time statistics")?;
    let mac = topo.exec(Host::Sbc, "cat", &["/sys/class/net/a0/address"])?.trim().to_owned();
    topo.exec(Host::A, "ip", &["neigh", "replace", "198.18.1.1", "lladdr", &mac, "dev", "eth0", "nud", "permanent"])?;
    struct Neigh<'a>(&'a Topology);
    impl Drop for Neigh<'_> {
        fn drop(&mut self) {
            let _ = self.0.exec(Host::A, "ip", &["neigh", "del", "198.18.1.1", "dev", "eth0"]);
        }
    }
    let _neigh = Neigh(topo);
    let exe = std::env::current_exe().context("current_exe")?;
    let mut helper = topo.spawn(Host::Sbc, &format!("xdp-bare-run{}", ladder.run), exe, &["xdp-bare", "a0", "b0"])?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !topo.exec(Host::Sbc, "ip", &["link", "show", "dev", "a0"])?.contains("xdp") {
        if helper.try_wait()?.is_some() || Instant::now() > deadline {
            bail!("the bare redirect did not attach to a0: {}", helper.output_tail());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let targets: Vec<SocketAddr> = (0..opts.streams).map(|i| sock(SBC_A, RELAY_PORT + 2 * i)).collect();
    for &rate in &opts.rates {
        check_stop()?;
        let mut step = Step { rate, ..Step::default() };
        let result = measure(topo, opts, pin, &targets, Some(helper.id()), false, SINK_CORE, true, None, &mut step);
        finish_step(&mut step, result);
        eprintln!("{}", progress(opts.runs, ladder, &step));
        ladder.steps.push(step);
        if ladder.should_stop() {
            break;
        }
    }
    let _ = helper.terminate(Duration::from_secs(5));
    Ok(())
}

/// The kernel path: forwarding on in the SBC namespace and routes in A and B for the ladder, removed after it.
fn kernel_ladder(topo: &Topology, opts: &Options, pin: bool, ladder: &mut Ladder) -> Result<()> {
    let xdp_prepared = opts.paths.iter().any(|&p| matches!(p, Target::Xdp | Target::Bare));
    let _forwarding = Forwarding::enable(topo, xdp_prepared)?;
    let targets: Vec<SocketAddr> = (0..opts.streams).map(|i| sock(CARRIER_B, GEN_PORT + i)).collect();
    for &rate in &opts.rates {
        check_stop()?;
        let mut step = Step { rate, ..Step::default() };
        let result = measure(topo, opts, pin, &targets, None, true, sink_core(Target::Kernel), false, None, &mut step);
        finish_step(&mut step, result);
        eprintln!("{}", progress(opts.runs, ladder, &step));
        ladder.steps.push(step);
        if ladder.should_stop() {
            break;
        }
    }
    if let Some(rate) = ladder.half_ceiling_rate() {
        check_stop()?;
        let mut step = Step { rate, ..Step::default() };
        let result = measure(topo, opts, pin, &targets, None, true, sink_core(Target::Kernel), false, None, &mut step);
        finish_step(&mut step, result);
        eprintln!("{} (latency at half the ceiling)", progress(opts.runs, ladder, &step));
        ladder.latency_step = Some(step);
    }
    Ok(())
}

pub(crate) fn finish_step(step: &mut Step, result: Result<()>) {
    if let Err(e) = result {
        step.error = Some(format!("{e:#}"));
    }
    step.generator_limited = step.achieved_pps.is_some_and(|a| a < MIN_ACHIEVED_SHARE * f64::from(step.rate));
    step.pass = step.error.is_none() && step.sent > 0 && step.loss_pct < MAX_LOSS_PCT && !step.generator_limited;
    step.wire_loss_pct = step
        .wire_rx
        .filter(|_| step.sent > 0)
        .map(|w| 100.0 * step.sent.saturating_sub(w.min(step.sent)) as f64 / step.sent as f64);
    step.wire_pass = step.error.is_none()
        && step.sent > 0
        && step.wire_loss_pct.is_some_and(|l| l < MAX_LOSS_PCT)
        && !step.generator_limited;
}

pub(crate) fn sock(ip: std::net::Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(ip, port))
}

/// IP forwarding in the SBC namespace and the routes A and B need to use it; undone on drop.
struct Forwarding<'a> {
    topo: &'a Topology,
    /// Turn forwarding on a0 and b0 back on afterwards (the XDP path needs it; `ip_forward=0` turns it off).
    keep_xdp: bool,
}

impl<'a> Forwarding<'a> {
    fn enable(topo: &'a Topology, keep_xdp: bool) -> Result<Self> {
        let f = Self { topo, keep_xdp };
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
        if self.keep_xdp {
            for dev in ["a0", "b0"] {
                let _ = self.topo.exec(Host::Sbc, "sysctl", &["-qw", &format!("net.ipv4.conf.{dev}.forwarding=1")]);
            }
        }
    }
}

/// One step of traffic: a sink per stream in B (with `sinks`), then a sender per stream in A towards
/// `targets[i]`; waits for all, and fills in the step's figures. `relay_pid`: the process whose CPU time is the
/// forwarder's; `programs`: it holds XDP programs whose run time (kernel statistics, which the caller enabled)
/// is the forwarder's too. Without sinks (the bare redirect), what arrived is B's veth's rx counter. With
/// `srtp_key` the senders send SRTP with that key (`blast`, whatever the generator option says).
#[allow(clippy::too_many_arguments)]
pub(crate) fn measure(
    topo: &Topology,
    opts: &Options,
    pin: bool,
    targets: &[SocketAddr],
    relay_pid: Option<u32>,
    sinks_wanted: bool,
    sinks_core: usize,
    programs: bool,
    srtp_key: Option<&str>,
    step: &mut Step,
) -> Result<()> {
    let streams = u64::from(opts.streams);
    let per_stream_pps = step.rate.div_ceil(u32::from(opts.streams)).max(1);
    let per_stream = (u64::from(per_stream_pps) * u64::from(opts.step_secs)).clamp(1, MAX_PACKETS_PER_STREAM);
    step.planned = per_stream * streams;
    let send_ms = per_stream * 1000 / u64::from(per_stream_pps);
    let dir = topo.dir().to_owned();
    let rtpgen = opts.rtpgen_binary.display().to_string();
    let spawn = |host: Host, name: &str, args: Vec<String>, core: usize| -> Result<Process> {
        let mut full = Vec::new();
        let program = if pin {
            full.extend(["-c".to_owned(), core.to_string(), rtpgen.clone()]);
            "taskset".to_owned()
        } else {
            rtpgen.clone()
        };
        full.extend(args);
        topo.spawn(host, name, program, &full)
    };

    let mut sinks = Vec::new();
    for i in (0..opts.streams).filter(|_| sinks_wanted) {
        let report = dir.join(format!("sink{i}.json"));
        let _ = std::fs::remove_file(&report);
        let args = Rtpgen::new(sock(CARRIER_B, GEN_PORT + i))
            .expect_count(per_stream)
            .idle_exit(Duration::from_millis(SINK_IDLE_MS))
            .duration(Duration::from_millis(send_ms + 20_000))
            .report(&report)
            .args();
        sinks.push((spawn(Host::B, &format!("sink{i}"), args, sinks_core)?, report));
    }
    for i in (0..opts.streams).filter(|_| sinks_wanted) {
        wait_udp_sockets(topo, Host::B, GEN_PORT + i, 1, Duration::from_secs(5))?;
    }
    let wire_before = wire_rx(topo);

    let snmp_before = (udp_rcvbuf_errors(topo, Host::Sbc), udp_rcvbuf_errors(topo, Host::B));
    let cpu_before = relay_pid.and_then(::tests::procfs::cpu_ticks);
    let prog_before = relay_pid.filter(|_| programs).and_then(crate::xdp::prog_stats);
    let si_before = softirq_ticks();
    let core_before = core_busy_ticks(RELAY_CORE);
    let started = Instant::now();
    let mut senders = Vec::new();
    for (i, &to) in targets.iter().enumerate() {
        let report = dir.join(format!("sender{i}.json"));
        let _ = std::fs::remove_file(&report);
        let name = format!("sender{i}");
        let generator = if srtp_key.is_some() { Generator::Blast } else { opts.generator };
        let sender = match generator {
            Generator::Xdp => bail!("--generator xdp runs its own ladders (crate::live)"),
            Generator::Rtpgen => {
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
                spawn(Host::A, &name, args, GEN_CORE)?
            }
            Generator::Blast => {
                let exe = std::env::current_exe().context("current_exe")?.display().to_string();
                let mut args: Vec<String> = Vec::new();
                let program = if pin {
                    args.extend(["-c".to_owned(), GEN_CORE.to_string(), exe]);
                    "taskset".to_owned()
                } else {
                    exe
                };
                args.extend([
                    "blast".to_owned(),
                    format!("--bind={}", sock(CALLER, GEN_PORT + i as u16)),
                    format!("--to={to}"),
                    format!("--count={per_stream}"),
                    format!("--pps={per_stream_pps}"),
                    format!("--payload={}", opts.payload),
                    format!("--idle-ms={SENDER_IDLE_MS}"),
                    format!("--report={}", report.display()),
                ]);
                if let Some(key) = srtp_key {
                    args.push(format!("--srtp-key={key}"));
                }
                topo.spawn(Host::A, &name, program, &args)?
            }
        };
        senders.push((sender, report));
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
    if !sinks_wanted {
        // Nothing to wait for: give the last packets time to cross.
        std::thread::sleep(Duration::from_millis(200));
    }
    step.wall_secs = started.elapsed().as_secs_f64();
    let wire_after = wire_rx(topo);
    let si_after = softirq_ticks();
    let core_after = core_busy_ticks(RELAY_CORE);
    let cpu_after = relay_pid.and_then(::tests::procfs::cpu_ticks);
    let prog_after = relay_pid.filter(|_| programs).and_then(crate::xdp::prog_stats);
    let snmp_after = (udp_rcvbuf_errors(topo, Host::Sbc), udp_rcvbuf_errors(topo, Host::B));

    fill(step, &sent_reports, &sink_reports);
    // The larger of the two counts: the veth counts a GSO datagram (the relay joins a batch to one peer) once, the
    // UDP layer counts its segments; a bare redirect's frames never reach B's UDP layer.
    step.wire_rx = wire_before.zip(wire_after).map(|(a, b)| b.0.saturating_sub(a.0).max(b.1.saturating_sub(a.1)));
    let send_secs = step.achieved_pps.filter(|&a| a > 0.0).map(|a| step.sent as f64 / a);
    step.wire_pps = step.wire_rx.zip(send_secs).map(|(n, s)| n as f64 / s);
    if !sinks_wanted {
        // The bare redirect: delivered = arrived at B's veth (a few stray frames, ARP or IPv6, may count too).
        step.received = step.wire_rx.unwrap_or(0).min(step.sent);
        step.loss_pct = if step.sent == 0 {
            100.0
        } else {
            100.0 * step.sent.saturating_sub(step.received) as f64 / step.sent as f64
        };
        step.delivered_pps = step.wire_pps;
    }
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
    if let (Some(a), Some(b)) = (prog_before, prog_after) {
        let ns = b.run_time_ns.saturating_sub(a.run_time_ns);
        let runs = b.run_cnt.saturating_sub(a.run_cnt);
        step.prog_run_s = Some(ns as f64 / 1e9);
        step.prog_run_cnt = Some(runs);
        step.prog_ns_per_pkt = (runs > 0).then(|| ns as f64 / runs as f64);
    }
    step.relay_cpu_s = match (relay_pid, programs) {
        (None, _) => None,
        (Some(_), false) => step.cpu_s,
        (Some(_), true) => step.cpu_s.zip(step.prog_run_s).map(|(c, p)| c + p),
    };
    step.relay_cpu_s_per_mpkt = step.relay_cpu_s.and_then(per_mpkt);
    step.total_s = match relay_pid {
        Some(_) => step.cpu_s.zip(step.softirq_s).map(|(c, s)| c + s),
        None => step.softirq_s,
    };
    step.total_s_per_mpkt = step.total_s.and_then(per_mpkt);
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
    step.latency_p50_us = sinks.iter().filter_map(|r| r.latency_us.map(|l| l.p50)).max();
    step.latency_p99_us = sinks.iter().filter_map(|r| r.latency_us.map(|l| l.p99)).max();
    step.jitter_us = sinks.iter().filter_map(|r| r.jitter_us).reduce(f64::max);
}

/// rx_packets of B's eth0 and the datagrams B's UDP layer took in (delivered, dropped, or for no socket), inside
/// B's namespace.
fn wire_rx(topo: &Topology) -> Option<(u64, u64)> {
    let rx = topo.exec(Host::B, "cat", &["/sys/class/net/eth0/statistics/rx_packets"]).ok()?.trim().parse().ok()?;
    let snmp = topo.exec(Host::B, "cat", &["/proc/net/snmp"]).ok()?;
    let udp: Option<u64> = ["InDatagrams", "InErrors", "NoPorts"].iter().map(|c| parse_udp(&snmp, c)).sum();
    Some((rx, udp?))
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
    parse_udp(snmp, "RcvbufErrors")
}

/// One counter of the `Udp:` lines of /proc/net/snmp.
fn parse_udp(snmp: &str, counter: &str) -> Option<u64> {
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next()?, udp.next()?);
    let column = names.split_whitespace().position(|n| n == counter)?;
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

/// Builds what the run needs ([`crate::binaries::build`]) and returns `media-relay` (the release build unless
/// given) and the release `rtpgen`.
pub fn prepare_binaries(relay: Option<&Path>) -> Result<(PathBuf, PathBuf)> {
    use crate::binaries::{binary, build, release_dir};
    build()?;
    let relay = match relay {
        Some(path) => std::fs::canonicalize(path).with_context(|| format!("binary {}", path.display()))?,
        None => binary(release_dir(), "media-relay")?,
    };
    Ok((relay, binary(release_dir(), "rtpgen")?))
}

pub(crate) fn progress(runs: u32, ladder: &Ladder, s: &Step) -> String {
    let f0 = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
    let f2 = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
    let n = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
    let mut line = format!(
        "[run {}/{runs}] {:<6} {:>7} pps: sent {:>8} (achieved {:>7}/s), received {:>8}, loss {:>7.3} %, delivered {:>7}/s (B veth {:>7}/s), p50/p99 {:>5}/{:>6} us, jitter {:>5} us, relay cpu {:>5} s/Mpkt (process {:>5} s = {:>5} s/Mpkt, prog {:>6} s = {:>4} ns/pkt; si {:>5} s = {:>5} s/Mpkt, core{RELAY_CORE} busy {:>5} s/Mpkt), rcvbuf drops sbc {:>5} sink {:>5}",
        ladder.run,
        ladder.target.name(),
        s.rate,
        s.sent,
        f0(s.achieved_pps),
        s.received,
        s.loss_pct,
        f0(s.delivered_pps),
        f0(s.wire_pps),
        n(s.latency_p50_us),
        n(s.latency_p99_us),
        f0(s.jitter_us),
        f2(s.relay_cpu_s_per_mpkt),
        f2(s.cpu_s),
        f2(s.cpu_s_per_mpkt),
        s.prog_run_s.map_or("-".to_owned(), |v| format!("{v:.3}")),
        f0(s.prog_ns_per_pkt),
        f2(s.softirq_s),
        f2(s.softirq_s_per_mpkt),
        f2(s.core_busy_s_per_mpkt),
        n(s.sbc_rcvbuf_errors),
        n(s.sink_rcvbuf_errors),
    );
    if let (Some(r), Some(t)) = (s.relay_received, s.relay_sent) {
        line.push_str(&format!(", relay in {r} out {t}"));
    }
    if let Some(k) = s.kernel_packets {
        line.push_str(&format!(" (xdp {k})"));
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
    /// The highest ladder rate at or below the median ceilings of `relay`, `xdp`, `srtp` and `rtpengine` (of every
    /// path measured when none is): where CPU per packet and latency are compared.
    pub reference_rate: Option<u32>,
    /// No step passed in a median run: the reference rate is the ladder's first rate instead.
    pub reference_fallback: bool,
    /// The highest rate the senders achieved in any step: the generator's own ceiling on this machine.
    pub generator_max_achieved_pps: Option<f64>,
    /// The XDP program's BPF_PROG_TEST_RUN figures, medians over runs, ns/packet.
    pub test_run_hit_single_ns: Option<f64>,
    pub test_run_hit_repeat_ns: Option<f64>,
    pub test_run_miss_ns: Option<f64>,
    /// Packets per relay-CPU-second, xdp / relay, at the reference rate, with relay CPU ([`Step::relay_cpu_s`]) =
    /// the relay process's time (relay) and the process's plus its XDP program's run time (xdp): the target's
    /// figure, >= 5.
    pub xdp_vs_relay_pkts_per_cpu_s: Option<f64>,
    /// The same with CPU = process + the machine's softirq time (which also holds the sender's, veths', bridge's
    /// and B's work of every path: diluted).
    pub xdp_vs_relay_pkts_per_cpu_s_process_softirq: Option<f64>,
    /// The same with CPU = the relay process's time only (infinite, `None`, when the XDP relay used no tick).
    pub xdp_vs_relay_pkts_per_cpu_s_process_only: Option<f64>,
    /// The same with CPU = process + the softirq time above the bare path's at the same rate (an attribution
    /// estimate: the bare path's softirq is the sender's, veths', bridge's and B's share that every path has).
    pub xdp_vs_relay_pkts_per_cpu_s_above_bare: Option<f64>,
    /// Relay process CPU per packet over the XDP program's own time per packet (BPF_PROG_TEST_RUN, single runs).
    pub relay_process_vs_xdp_program: Option<f64>,
    /// The same over the program's in-situ time per packet (run-time statistics in the live path).
    pub relay_process_vs_xdp_program_in_situ: Option<f64>,
    /// Median wire ceiling (loss counted at B's veth for both) xdp / bare (the target's figure, >= 0.8).
    pub xdp_vs_bare_ceiling: Option<f64>,
    /// Median best B-veth pps xdp / bare.
    pub xdp_vs_bare_best_wire: Option<f64>,
    /// Median ceiling relay / kernel.
    pub relay_vs_kernel_ceiling: Option<f64>,
    /// Median ceiling srtp / relay: the share of the plain user-space relay's packet rate left when it decrypts
    /// SRTP on one leg.
    pub srtp_vs_relay_ceiling: Option<f64>,
    /// Median best delivered pps srtp / relay.
    pub srtp_vs_relay_best_delivered: Option<f64>,
    /// Relay CPU-s per Mpkt at the reference rate, srtp / relay: what decrypting SRTP costs per packet, as a
    /// multiple of plain forwarding.
    pub srtp_vs_relay_cpu_per_packet: Option<f64>,
    /// Every path against rtpengine and kernel forwarding: packets per CPU-second, latency at half the ceiling.
    pub versus: crate::media_versus::Versus,
}

/// The XDP issue's targets.
pub const TARGET_CPU_RATIO: f64 = 5.0;
pub const TARGET_CEILING_SHARE: f64 = 0.8;

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
    /// Per run, the ceiling with loss counted at B's veth, and its median (no passing step counts as 0).
    pub wire_ceilings: Vec<Option<u32>>,
    pub median_wire_ceiling: Option<f64>,
    /// Median over runs of the highest B-veth pps of a step with wire loss < 0.1 %.
    pub median_best_wire_pps: Option<f64>,
    /// At the reference rate, medians over the runs that measured it.
    pub reference_delivered_pps: Option<f64>,
    pub reference_wire_pps: Option<f64>,
    pub reference_loss_pct: Option<f64>,
    /// Forwarder process CPU-s per Mpkt (kernel: softirq).
    pub reference_cpu_s_per_mpkt: Option<f64>,
    /// Relay CPU-s per Mpkt ([`Step::relay_cpu_s`]: process, plus the XDP program's run time for xdp and bare).
    pub reference_relay_cpu_s_per_mpkt: Option<f64>,
    /// The XDP program's in-situ ns per packet it ran on (xdp, bare).
    pub reference_prog_ns_per_pkt: Option<f64>,
    pub reference_softirq_s_per_mpkt: Option<f64>,
    /// Process + softirq CPU-s per Mpkt (kernel: softirq).
    pub reference_total_s_per_mpkt: Option<f64>,
    pub reference_latency_p50_us: Option<f64>,
    pub reference_latency_p99_us: Option<f64>,
    /// RFC 3550 interarrival jitter at the reference rate, worst stream, µs.
    pub reference_jitter_us: Option<f64>,
    /// xdp: share of the relay's received packets that the XDP program forwarded, percent.
    pub reference_kernel_share_pct: Option<f64>,
    /// How many runs measured the reference rate.
    pub reference_runs: usize,
}

/// Builds the summary of `ladders` (see [`Summary`]).
pub fn summarize(paths: &[Target], rates: &[u32], ladders: &[Ladder], test_runs: &[crate::xdp::TestRun]) -> Summary {
    let of = |t: Target| ladders.iter().filter(move |l| l.target == t);
    let median_ceiling = |t: Target| median(&of(t).map(|l| f64::from(l.ceiling.unwrap_or(0))).collect::<Vec<_>>());
    let mut basis: Vec<Target> = paths
        .iter()
        .copied()
        .filter(|t| matches!(t, Target::Relay | Target::Xdp | Target::Srtp | Target::Rtpengine | Target::Ng))
        .collect::<Vec<_>>();
    if basis.is_empty() {
        basis = paths.to_vec();
    }
    let floor = basis.iter().map(|&t| median_ceiling(t).unwrap_or(0.0)).fold(f64::INFINITY, f64::min);
    let mut reference_rate = rates.iter().copied().filter(|&r| f64::from(r) <= floor).max();
    let reference_fallback = reference_rate.is_none() && !rates.is_empty();
    if reference_fallback {
        reference_rate = rates.first().copied();
    }
    let at_ref = |t: Target, f: &dyn Fn(&Step) -> Option<f64>| -> (Option<f64>, usize) {
        let values: Vec<f64> = of(t)
            .filter_map(|l| l.steps.iter().find(|s| Some(s.rate) == reference_rate && s.error.is_none()))
            .filter_map(f)
            .collect();
        (median(&values), values.len())
    };
    let targets: Vec<TargetSummary> = paths
        .iter()
        .map(|&t| {
            let (cpu, n) = at_ref(t, &|s| s.cpu_s_per_mpkt);
            TargetSummary {
                target: t,
                ceilings: of(t).map(|l| l.ceiling).collect(),
                capped_by_ladder: of(t).map(|l| l.capped_by_ladder).collect(),
                median_ceiling: median_ceiling(t),
                best_delivered_pps: of(t).map(|l| l.best_delivered_pps).collect(),
                median_best_delivered_pps: median(
                    &of(t).map(|l| l.best_delivered_pps.unwrap_or(0.0)).collect::<Vec<_>>(),
                ),
                wire_ceilings: of(t).map(|l| l.wire_ceiling).collect(),
                median_wire_ceiling: median(&of(t).map(|l| f64::from(l.wire_ceiling.unwrap_or(0))).collect::<Vec<_>>()),
                median_best_wire_pps: median(&of(t).map(|l| l.best_wire_pps.unwrap_or(0.0)).collect::<Vec<_>>()),
                reference_delivered_pps: at_ref(t, &|s| s.delivered_pps).0,
                reference_wire_pps: at_ref(t, &|s| s.wire_pps).0,
                reference_loss_pct: at_ref(t, &|s| Some(s.loss_pct)).0,
                reference_cpu_s_per_mpkt: cpu,
                reference_relay_cpu_s_per_mpkt: at_ref(t, &|s| s.relay_cpu_s_per_mpkt).0,
                reference_prog_ns_per_pkt: at_ref(t, &|s| s.prog_ns_per_pkt).0,
                reference_softirq_s_per_mpkt: at_ref(t, &|s| s.softirq_s_per_mpkt).0,
                reference_total_s_per_mpkt: at_ref(t, &|s| s.total_s_per_mpkt).0,
                reference_latency_p50_us: at_ref(t, &|s| s.latency_p50_us.map(|v| v as f64)).0,
                reference_latency_p99_us: at_ref(t, &|s| s.latency_p99_us.map(|v| v as f64)).0,
                reference_jitter_us: at_ref(t, &|s| s.jitter_us).0,
                reference_kernel_share_pct: at_ref(t, &|s| {
                    let r = s.relay_received.filter(|&r| r > 0)?;
                    Some(100.0 * s.kernel_packets? as f64 / r as f64)
                })
                .0,
                reference_runs: n,
            }
        })
        .collect();
    let get = |t: Target| targets.iter().find(|s| s.target == t);
    let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).filter(|&(_, b)| b > 0.0).map(|(a, b)| a / b);
    let (relay, xdp, bare, kernel) = (get(Target::Relay), get(Target::Xdp), get(Target::Bare), get(Target::Kernel));
    let srtp = get(Target::Srtp);
    let f = |s: Option<&TargetSummary>, g: fn(&TargetSummary) -> Option<f64>| s.and_then(g);
    let tr = |g: fn(&crate::xdp::TestRun) -> f64| median(&test_runs.iter().map(g).collect::<Vec<_>>());
    let versus = crate::media_versus::compare(&targets, ladders);
    Summary {
        reference_rate,
        reference_fallback,
        generator_max_achieved_pps: ladders
            .iter()
            .flat_map(|l| &l.steps)
            .filter(|s| s.error.is_none())
            .filter_map(|s| s.achieved_pps)
            .reduce(f64::max),
        test_run_hit_single_ns: tr(|t| t.hit_single_ns),
        test_run_hit_repeat_ns: tr(|t| t.hit_repeat_ns),
        test_run_miss_ns: tr(|t| t.miss_ns),
        // Packets per CPU-second is the inverse of CPU-s per Mpkt: xdp / relay = relay's s/Mpkt / xdp's.
        xdp_vs_relay_pkts_per_cpu_s: ratio(
            f(relay, |s| s.reference_relay_cpu_s_per_mpkt),
            f(xdp, |s| s.reference_relay_cpu_s_per_mpkt),
        ),
        xdp_vs_relay_pkts_per_cpu_s_process_softirq: ratio(
            f(relay, |s| s.reference_total_s_per_mpkt),
            f(xdp, |s| s.reference_total_s_per_mpkt),
        ),
        xdp_vs_relay_pkts_per_cpu_s_process_only: ratio(
            f(relay, |s| s.reference_cpu_s_per_mpkt),
            f(xdp, |s| s.reference_cpu_s_per_mpkt),
        ),
        xdp_vs_relay_pkts_per_cpu_s_above_bare: {
            let bare_si = f(bare, |s| s.reference_softirq_s_per_mpkt);
            let above = |t: Option<&TargetSummary>| {
                let t = t?;
                Some(t.reference_cpu_s_per_mpkt? + (t.reference_softirq_s_per_mpkt? - bare_si?).max(0.0))
            };
            ratio(above(relay), above(xdp))
        },
        relay_process_vs_xdp_program: ratio(
            f(relay, |s| s.reference_cpu_s_per_mpkt),
            tr(|t| t.hit_single_ns).map(|ns| ns / 1000.0),
        ),
        relay_process_vs_xdp_program_in_situ: ratio(
            f(relay, |s| s.reference_cpu_s_per_mpkt),
            f(xdp, |s| s.reference_prog_ns_per_pkt).map(|ns| ns / 1000.0),
        ),
        xdp_vs_bare_ceiling: ratio(f(xdp, |s| s.median_wire_ceiling), f(bare, |s| s.median_wire_ceiling)),
        xdp_vs_bare_best_wire: ratio(f(xdp, |s| s.median_best_wire_pps), f(bare, |s| s.median_best_wire_pps)),
        relay_vs_kernel_ceiling: ratio(f(relay, |s| s.median_ceiling), f(kernel, |s| s.median_ceiling)),
        srtp_vs_relay_ceiling: ratio(f(srtp, |s| s.median_ceiling), f(relay, |s| s.median_ceiling)),
        srtp_vs_relay_best_delivered: ratio(
            f(srtp, |s| s.median_best_delivered_pps),
            f(relay, |s| s.median_best_delivered_pps),
        ),
        srtp_vs_relay_cpu_per_packet: ratio(
            f(srtp, |s| s.reference_relay_cpu_s_per_mpkt),
            f(relay, |s| s.reference_relay_cpu_s_per_mpkt),
        ),
        versus,
        targets,
    }
}

/// The table printed at the end.
pub fn table(opts: &Options, summary: &Summary, pinned: bool) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "sbc-bench media --local: {} run(s), paths {}, steps of {} s, {} stream(s), {}-byte RTP payloads, rates (pps) \
         {:?}\n",
        opts.runs,
        opts.paths.iter().map(|p| p.name()).collect::<Vec<_>>().join(","),
        opts.step_secs,
        opts.streams,
        opts.payload,
        opts.rates
    ));
    out.push_str(&if pinned {
        format!("pinning: media-relay and the sinks on core {RELAY_CORE}/{SINK_CORE}, the senders on core {GEN_CORE}\n")
    } else {
        "pinning: off (fewer than 2 cores)\n".to_owned()
    });
    out.push_str(&format!(
        "a step passes with loss < {MAX_LOSS_PCT} % (bare: counted at B's veth) and the generator at >= 90 % of the \
         offered rate; ceiling = highest passing rate\n"
    ));
    let f = |v: Option<f64>, p: usize| v.map_or("-".to_owned(), |v| format!("{v:.p$}"));
    out.push_str(&format!(
        "generator ceiling: the senders achieved at most {} pps in any step (one sender per stream, all on core \
         {GEN_CORE}, where the softirqs run too); a path at that rate was limited by the generator, not by itself\n\n",
        f(summary.generator_max_achieved_pps, 0)
    ));
    for (title, get) in [
        (
            "ceiling (pps)",
            (|t: &TargetSummary| (t.ceilings.iter().map(|c| c.map(f64::from)).collect(), t.median_ceiling))
                as fn(&TargetSummary) -> (Vec<Option<f64>>, Option<f64>),
        ),
        ("best delivered (pps)", |t: &TargetSummary| (t.best_delivered_pps.clone(), t.median_best_delivered_pps)),
        ("ceiling at B veth", |t: &TargetSummary| {
            (t.wire_ceilings.iter().map(|c| c.map(f64::from)).collect(), t.median_wire_ceiling)
        }),
    ] {
        out.push_str(&format!("{title:<22}"));
        for r in 1..=opts.runs {
            out.push_str(&format!("{:>10}", format!("run {r}")));
        }
        out.push_str(&format!("{:>10}\n", "median"));
        for t in &summary.targets {
            out.push_str(&format!("  {:<20}", t.target.name()));
            let (per_run, med) = get(t);
            for (i, c) in per_run.iter().enumerate() {
                let capped = title.starts_with("ceiling") && t.capped_by_ladder.get(i) == Some(&true);
                let cell = c.map_or("none".to_owned(), |c| format!("{c:.0}{}", if capped { "+" } else { "" }));
                out.push_str(&format!("{cell:>10}"));
            }
            out.push_str(&format!("{:>10}\n", f(med, 0)));
        }
    }
    out.push_str(
        "  (ceiling: loss at the sinks (bare: at B's veth); best delivered: highest delivered rate of any step with\n   \
         loss < 0.1 %, generator-limited included; ceiling at B veth: loss counted with B's eth0 rx counter for\n   \
         every path, whether or not the sinks kept up)\n",
    );
    if summary.targets.iter().any(|t| t.capped_by_ladder.iter().any(|&c| c)) {
        out.push_str("  (+: the top of the ladder passed; the real ceiling is at or above it: raise --rates)\n");
    }
    out.push('\n');
    let Some(rate) = summary.reference_rate else {
        out.push_str("reference rate: none\n");
        return out;
    };
    out.push_str(&format!(
        "at the reference rate {rate} pps ({}; medians over runs)\n",
        if summary.reference_fallback {
            "no step of relay/xdp passed in the median run: the ladder's first rate"
        } else {
            "highest ladder rate within the median ceilings of relay, xdp, srtp and rtpengine (those measured)"
        }
    ));
    out.push_str(&format!(
        "{:<10}{:>11}{:>11}{:>9}{:>12}{:>9}{:>11}{:>11}{:>13}{:>9}{:>9}{:>10}{:>8}{:>6}\n",
        "",
        "delivered",
        "at B veth",
        "loss %",
        "relay s/M",
        "prog ns",
        "proc s/M",
        "si s/M",
        "proc+si s/M",
        "p50 us",
        "p99 us",
        "jitter us",
        "xdp %",
        "runs"
    ));
    for t in &summary.targets {
        out.push_str(&format!(
            "  {:<8}{:>11}{:>11}{:>9}{:>12}{:>9}{:>11}{:>11}{:>13}{:>9}{:>9}{:>10}{:>8}{:>6}\n",
            t.target.name(),
            f(t.reference_delivered_pps, 0),
            f(t.reference_wire_pps, 0),
            f(t.reference_loss_pct, 3),
            f(t.reference_relay_cpu_s_per_mpkt, 2),
            f(t.reference_prog_ns_per_pkt, 0),
            if t.target == Target::Kernel { "-".to_owned() } else { f(t.reference_cpu_s_per_mpkt, 2) },
            f(t.reference_softirq_s_per_mpkt, 2),
            f(t.reference_total_s_per_mpkt, 2),
            f(t.reference_latency_p50_us, 0),
            f(t.reference_latency_p99_us, 0),
            f(t.reference_jitter_us, 0),
            f(t.reference_kernel_share_pct, 2),
            t.reference_runs
        ));
    }
    out.push_str(
        "  (s/M = CPU-seconds per million delivered packets. relay = the relay's own CPU, the target's basis: the\n   \
         media-relay process (utime + stime, which holds the kernel work of its own socket calls) plus, for xdp,\n   \
         its XDP program's run time from the kernel's per-program statistics (bare: the helper + the bare program);\n   \
         prog ns = that program's in-situ ns per packet it ran on (stats' own clock reads included). Secondary:\n   \
         proc = the forwarder process alone; si = the whole machine's softirq time (XDP, the sender's sends, veths,\n   \
         bridge, B's receive path: mostly the same on every path); kernel forwarding is softirq only. xdp % =\n   \
         packets the XDP program forwarded of those the relay received. latency: one-way, send timestamp in the\n   \
         payload to the sink, worst stream; jitter: RFC 3550 interarrival jitter, worst stream)\n",
    );
    if summary.test_run_hit_single_ns.is_some() {
        out.push_str(&format!(
            "\nBPF_PROG_TEST_RUN (the relay program alone, medians over runs): hit {} ns/packet (mean of single runs), \
             {} ns/packet (repeat on a looped hit), miss {} ns/packet (repeat); in situ (live path, run-time \
             statistics, at the reference rate): {} ns/packet\n",
            f(summary.test_run_hit_single_ns, 0),
            f(summary.test_run_hit_repeat_ns, 0),
            f(summary.test_run_miss_ns, 0),
            f(summary.targets.iter().find(|t| t.target == Target::Xdp).and_then(|t| t.reference_prog_ns_per_pkt), 0)
        ));
    }
    if summary.targets.iter().any(|t| t.target == Target::Srtp) {
        out.push_str(&format!(
            "\nSRTP-to-RTP (srtp: leg A's SRTP decrypted in user space) against the plain user-space relay (relay), \
             same run: median ceiling srtp / relay {}, best delivered srtp / relay {}, relay CPU per packet at the \
             reference rate srtp / relay {}\n",
            f(summary.srtp_vs_relay_ceiling, 2),
            f(summary.srtp_vs_relay_best_delivered, 2),
            f(summary.srtp_vs_relay_cpu_per_packet, 2)
        ));
    }
    let verdict = |v: Option<f64>, goal: f64| match v {
        Some(v) if v >= goal => "met",
        Some(_) => "NOT met",
        None => "not measured",
    };
    out.push_str("\ntargets of the XDP issue\n");
    out.push_str(&format!(
        "  packets per relay-CPU-second, xdp / relay (relay CPU: process, + the XDP program's run time for xdp): {} \
         (target >= {TARGET_CPU_RATIO}: {})\n",
        f(summary.xdp_vs_relay_pkts_per_cpu_s, 2),
        verdict(summary.xdp_vs_relay_pkts_per_cpu_s, TARGET_CPU_RATIO)
    ));
    out.push_str(&format!(
        "  packets per CPU-second, xdp / relay (secondary: process + the whole machine's softirq): {}\n",
        f(summary.xdp_vs_relay_pkts_per_cpu_s_process_softirq, 2),
    ));
    out.push_str(&format!(
        "  packets per CPU-second, xdp / relay (secondary: process only): {}\n",
        summary.xdp_vs_relay_pkts_per_cpu_s_process_only.map_or_else(
            || "- (the XDP relay process used no measurable CPU, or not measured)".to_owned(),
            |v| format!("{v:.1}")
        )
    ));
    out.push_str(&format!(
        "  packets per CPU-second, xdp / relay (secondary: process + softirq above bare's): {}; relay process time \
         per packet / the XDP program's: {} (test run), {} (in situ)\n",
        f(summary.xdp_vs_relay_pkts_per_cpu_s_above_bare, 2),
        f(summary.relay_process_vs_xdp_program, 1),
        f(summary.relay_process_vs_xdp_program_in_situ, 1)
    ));
    out.push_str(&format!(
        "  median ceiling at B veth, xdp / bare: {} (target >= {TARGET_CEILING_SHARE}: {}); best B-veth pps xdp / \
         bare: {}\n",
        f(summary.xdp_vs_bare_ceiling, 2),
        verdict(summary.xdp_vs_bare_ceiling, TARGET_CEILING_SHARE),
        f(summary.xdp_vs_bare_best_wire, 2)
    ));
    if let Some(g) = summary.generator_max_achieved_pps {
        let limited: Vec<&str> = summary
            .targets
            .iter()
            .filter(|t| t.median_wire_ceiling.is_some_and(|c| c > 0.0 && c >= 0.85 * g))
            .map(|t| t.target.name())
            .collect();
        if !limited.is_empty() {
            out.push_str(&format!(
                "  note: the ceilings of {} are within 15 % of the generator's own ceiling ({g:.0} pps): there the \
                 generator was the limit and the ratio of ceilings says little\n",
                limited.join(", ")
            ));
        }
    }
    out.push_str(&crate::media_versus::table(&summary.versus));
    out
}

/// The figure of a run: per path, against the offered packet rate, loss at the sinks (log scale: 0 is drawn at the
/// floor), one-way latency p50 and p99, and the relay's CPU per million packets (medians over the runs that
/// measured each rate).
pub fn plot(path: &std::path::Path, opts: &Options, ladders: &[Ladder]) -> Result<()> {
    use crate::plot::{Panel, Series};
    let per_rate = |t: Target, f: &dyn Fn(&Step) -> Option<f64>| -> Vec<(f64, f64)> {
        opts.rates
            .iter()
            .filter_map(|&r| {
                let v: Vec<f64> = ladders
                    .iter()
                    .filter(|l| l.target == t)
                    .filter_map(|l| l.steps.iter().find(|s| s.rate == r))
                    .filter_map(f)
                    .collect();
                Some((f64::from(r), crate::stats::median(&v)?))
            })
            .collect()
    };
    let (mut loss, mut latency, mut cpu) = (Vec::new(), Vec::new(), Vec::new());
    for &t in &opts.paths {
        let name = t.name();
        // The bare redirect has no sinks: its packets are counted at B's veth.
        let loss_of: &dyn Fn(&Step) -> Option<f64> =
            if t == Target::Bare { &|s: &Step| s.wire_loss_pct } else { &|s: &Step| Some(s.loss_pct) };
        loss.push(Series::new(name, per_rate(t, loss_of)));
        if t != Target::Bare {
            latency.push(Series::new(format!("{name} p50"), per_rate(t, &|s| s.latency_p50_us.map(|v| v as f64))));
            latency.push(Series {
                dashed: true,
                ..Series::new(format!("{name} p99"), per_rate(t, &|s| s.latency_p99_us.map(|v| v as f64)))
            });
        }
        if t != Target::Kernel {
            cpu.push(Series::new(name, per_rate(t, &|s| s.relay_cpu_s_per_mpkt)));
        }
    }
    let x = "offered rate (packets/s, all streams)";
    crate::plot::write_svg(
        path,
        &format!("sbc-bench media: {}", opts.paths.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")),
        &[
            Panel {
                title: format!("loss (at the sinks; bare: at B's veth); pass < {MAX_LOSS_PCT} %"),
                x_label: x.into(),
                y_label: "% of packets sent".into(),
                log_y: true,
                series: loss,
            },
            Panel {
                title: "one-way latency (send timestamp in the payload)".into(),
                x_label: x.into(),
                y_label: "µs".into(),
                log_y: true,
                series: latency,
            },
            Panel {
                title: "relay CPU (process + XDP program) per million packets".into(),
                x_label: x.into(),
                y_label: "CPU-s / Mpkt".into(),
                log_y: true,
                series: cpu,
            },
        ],
    )
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
        let s = summarize(&[Target::Relay, Target::Kernel], &[100, 200, 300, 400], &ladders, &[]);
        assert_eq!(s.targets[0].ceilings, vec![Some(200), Some(100), Some(300)]);
        assert_eq!(s.targets[0].median_ceiling, Some(200.0));
        assert_eq!(s.reference_rate, Some(200));
        assert_eq!(s.targets[0].reference_cpu_s_per_mpkt, Some(3.0));
        assert_eq!(s.relay_vs_kernel_ceiling, Some(0.5));
        assert_eq!(s.xdp_vs_relay_pkts_per_cpu_s, None);
    }

    #[test]
    fn cpu_ratio_uses_relay_cpu() {
        let with = |target: Target, relay_cpu: f64, total: f64| {
            let mut l = ladder(1, target, &[(100, true)], relay_cpu);
            l.steps[0].relay_cpu_s_per_mpkt = Some(relay_cpu);
            l.steps[0].total_s_per_mpkt = Some(total);
            l
        };
        let ladders = vec![with(Target::Relay, 20.0, 30.0), with(Target::Xdp, 1.0, 12.0)];
        let s = summarize(&[Target::Relay, Target::Xdp], &[100], &ladders, &[]);
        assert_eq!(s.xdp_vs_relay_pkts_per_cpu_s, Some(20.0));
        assert_eq!(s.xdp_vs_relay_pkts_per_cpu_s_process_softirq, Some(2.5));
    }

    #[test]
    fn srtp_is_compared_with_the_plain_relay() {
        let with = |target: Target, ceiling: u32, relay_cpu: f64| {
            let mut l = ladder(1, target, &[(100, true), (200, ceiling >= 200), (400, ceiling >= 400)], relay_cpu);
            for s in &mut l.steps {
                s.relay_cpu_s_per_mpkt = Some(relay_cpu);
            }
            l.finish(400);
            l
        };
        let ladders = vec![with(Target::Relay, 400, 20.0), with(Target::Srtp, 200, 30.0)];
        let s = summarize(&[Target::Relay, Target::Srtp], &[100, 200, 400], &ladders, &[]);
        assert_eq!(s.reference_rate, Some(200), "within srtp's ceiling too");
        assert_eq!(s.srtp_vs_relay_ceiling, Some(0.5));
        assert_eq!(s.srtp_vs_relay_cpu_per_packet, Some(1.5));
        assert!(table(&options(), &s, true).contains("srtp / relay 1.50"));
    }

    fn options() -> Options {
        Options {
            runs: 1,
            step_secs: 1,
            rates: vec![100, 200, 400],
            streams: 1,
            payload: 160,
            relay_binary: PathBuf::new(),
            rtpgen_binary: PathBuf::new(),
            paths: vec![Target::Relay, Target::Srtp],
            generator: Generator::Blast,
            relay_threads: Vec::new(),
        }
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
