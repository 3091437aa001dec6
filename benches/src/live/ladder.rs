//! The live ladders: per run, per flow count and per path, the offered rate climbs until the path loses packets
//! or the sending core cannot keep the rate; every step is one `xdp-gen` process in A and one reset/read of the
//! sink.

use super::helpers::GenReport;
use super::progs::{FlowLayout, SinkCounts};
use ::tests::netns::{Host, Process, Topology, CALLER, CARRIER_B, SBC_A, SBC_B};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A step passes with less than this share of its packets lost, in percent.
pub const MAX_LOSS_PCT: f64 = 0.1;
/// A step counts only when the generator achieved this share of the offered rate.
pub const MIN_ACHIEVED_SHARE: f64 = 0.9;
/// A ladder stops after this many failing steps in a row.
pub const FAILS_TO_STOP: usize = 2;
/// The core the generator (and, in live-frames mode, everything its frames set off: the path's XDP program, the
/// veths, the sink) runs on.
pub const GEN_CORE: usize = 0;
/// The most flows the relay's XDP maps can be sized to (`media-relay --xdp-max-flows`; the ladder sizes them to
/// its streams, both directions of each).
pub const RELAY_MAX_KERNEL_FLOWS: u32 = media_relay::xdp::abi::LIMIT_MAX_FLOWS;
/// Packets per second of the warm-up (two packets per flow) before a ladder.
const WARM_UP_RATE: u32 = 50_000;
/// The core a0's threaded NAPI (the path) is pinned to.
pub const PATH_CORE: usize = 1;
/// Frames per send of a latency step: the kernel's own batch in AF_XDP copy mode. A ceiling step's batches of a
/// millisecond's frames would measure mostly how long a frame waits behind its own burst.
pub const LATENCY_BATCH: u32 = 32;

/// Whether the path gets a core of its own (`--path-core`, and two cores at least).
fn pin_path_core(opts: &Options) -> bool {
    opts.path_core && crate::cps::pinning_possible()
}

/// Pins the NAPI kernel threads of `dev` (named `napi/DEV-ID`; a veth's exist while an XDP program is attached)
/// to `core`; returns their pids. Any namespace's `dev` matches: the threads carry no namespace, and threaded NAPI
/// is off by default, so only this run's are found in practice.
fn pin_napi_threads(dev: &str, core: usize) -> Result<Vec<u32>> {
    let prefix = format!("napi/{dev}-");
    let mut pinned = Vec::new();
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else { continue };
        let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else { continue };
        if comm.trim().starts_with(&prefix) {
            ::tests::netns::run(std::process::Command::new("taskset").args([
                "-pc",
                &core.to_string(),
                &pid.to_string(),
            ]))
            .with_context(|| format!("pinning {} to core {core}", comm.trim()))?;
            pinned.push(pid);
        }
    }
    Ok(pinned)
}

/// The warm-up gives up (and the ladder starts anyway) after this long.
const WARM_UP_LIMIT: Duration = Duration::from_secs(60);
/// Open files the relay needs besides its sockets.
const FD_SPARE: u64 = 512;
/// The C side's address (a second destination when the kernel path needs more than one address's ports).
const CARRIER_C: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 11);
/// The sender's first source port and the relay side's first port (stride 2, as the relay allocates them).
const GEN_PORT: u16 = 7000;
const RELAY_PORT: u16 = 30000;

/// A forwarding path measured with the live generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Path {
    /// No forwarding: the sink on a0, A's veth peer. The generator's own ceiling, the baseline of every run.
    Drop,
    /// `relay_bare_redirect` on a0: every frame to b0 untouched.
    Bare,
    /// `reference_relay` on a0 with one flow per generator flow: lookup, rewrite, DEVMAP redirect to b0.
    Reference,
    /// Kernel IP forwarding in the SBC namespace (`relay_pass` on a0 so that it takes XDP frames).
    Kernel,
    /// `media-relay --xdp native` on a0/b0 with one relayed stream per flow, latched before the load
    /// ([`super::relay`]).
    Xdp,
    /// Our `relay_xdp` on a0/b0 with the same flows as `xdp`, attached and filled by the relay's loader in a helper
    /// (`sbc-bench xdp-maps`) instead of the relay's process: the XDP path at flow counts whose two sockets per
    /// flow the open-file limit does not allow (the relay's sockets play no part in a hit).
    XdpMaps,
    /// The same relay with `--xdp off`: its user-space forwarding (one forwarding thread pinned to
    /// [`PATH_CORE`]), at rates the socket generators cannot offer; `relay_pass` on a0 so that it takes XDP frames.
    Relay,
}

impl Path {
    /// Whether the path is our `media-relay` (two sockets per flow).
    pub fn uses_relay(self) -> bool {
        matches!(self, Path::Xdp | Path::Relay)
    }

    /// The name used in output and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Path::Drop => "drop",
            Path::Bare => "bare",
            Path::Reference => "reference",
            Path::Kernel => "kernel",
            Path::Xdp => "xdp",
            Path::XdpMaps => "xdp-maps",
            Path::Relay => "relay",
        }
    }
}

/// What the live ladder was asked to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Options {
    pub runs: u32,
    pub step_secs: u32,
    /// Offered rates, packets per second over all flows, ascending.
    pub rates: Vec<u32>,
    /// Flow counts, each a set of ladders.
    pub flows: Vec<u32>,
    /// Paths measured after `drop` (always first), in this order.
    pub paths: Vec<Path>,
    /// RTP payload bytes.
    pub payload: u16,
    /// The `media-relay` binary (the `xdp` and `relay` paths).
    pub relay_binary: Option<std::path::PathBuf>,
    /// a0's NAPI on a core of its own ([`PATH_CORE`]), away from the generator's.
    pub path_core: bool,
}

/// One step.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Step {
    pub rate: u32,
    /// Frames the generator sent.
    pub sent: u64,
    /// `sent` over the generator's time.
    pub achieved_pps: Option<f64>,
    /// The sink's count.
    pub received: u64,
    pub loss_pct: f64,
    /// `received` over the generator's time.
    pub delivered_pps: Option<f64>,
    /// The sink's figures (flows seen, per-flow spread, sequence gaps, checksums).
    pub sink: Option<SinkCounts>,
    /// The generator achieved less than 90 % of the rate.
    pub generator_limited: bool,
    /// Loss < 0.1 %, not generator-limited, every flow seen, no bad checksum.
    pub pass: bool,
    pub error: Option<String>,
    /// How the generator sent the step's frames (live frames, or AF_XDP where the kernel refused them).
    pub engine: Option<super::helpers::Engine>,
    /// With `--path-core`: the CPU time of the path's own tasks over the step, from the scheduler's clock
    /// (/proc/PID/task/TID/schedstat, not the 100 Hz ticks of /proc/stat, which miss most of a core's short
    /// bursts): a0's NAPI threads (the path's XDP program and redirect, or the kernel's forwarding) and, for
    /// `xdp` and `relay`, the relay's threads. Softirq work raised from them (the sink behind b0) may be left
    /// out where the kernel accounts IRQ time apart.
    pub path_cpu_s: Option<f64>,
    /// `path_cpu_s` per million packets received.
    pub path_cpu_s_per_mpkt: Option<f64>,
}

/// One path's ladder at one flow count in one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ladder {
    pub run: u32,
    pub flows: u32,
    pub path: Path,
    pub steps: Vec<Step>,
    /// The highest passing rate.
    pub ceiling: Option<u32>,
    /// The top of the ladder passed.
    pub capped: bool,
    /// The highest delivered rate of a step with loss < 0.1 % (generator-limited ones included).
    pub best_delivered_pps: Option<f64>,
    /// `xdp`: of the packets the relay's leg A received over the ladder, the share its XDP program forwarded.
    pub xdp_share: Option<f64>,
    /// Warm-up rounds (two packets per flow each) until one arrived whole, before the first step.
    pub warm_up_rounds: u32,
    /// a0's NAPI kernel threads pinned to [`PATH_CORE`] for this ladder (0: the path ran on the generator's core).
    pub napi_threads_pinned: u32,
    /// With `--path-core`: the path's CPU seconds per million packets ([`Step::path_cpu_s`]) at the ceiling
    /// (its highest passing step).
    pub path_cpu_s_per_mpkt: Option<f64>,
    /// Why the ladder stopped early (its set-up or warm-up failed), if it did.
    pub error: Option<String>,
    /// Issue 15 point 6: one more step at half the ceiling with every frame stamped with its send time and the
    /// sink's latency histogram on (its `sink.latency`), sent in batches of [`LATENCY_BATCH`].
    pub latency_step: Option<Step>,
}

impl Ladder {
    fn finish(&mut self, top: u32) {
        self.ceiling = self.steps.iter().filter(|s| s.pass).map(|s| s.rate).max();
        self.capped = self.ceiling == Some(top);
        self.path_cpu_s_per_mpkt =
            self.steps.iter().filter(|s| s.pass).max_by_key(|s| s.rate).and_then(|s| s.path_cpu_s_per_mpkt);
        self.best_delivered_pps = self
            .steps
            .iter()
            .filter(|s| s.error.is_none() && s.sent > 0 && s.loss_pct < MAX_LOSS_PCT)
            .filter_map(|s| s.delivered_pps)
            .reduce(f64::max);
    }

    fn should_stop(&self) -> bool {
        self.steps.len() >= FAILS_TO_STOP && self.steps.iter().rev().take(FAILS_TO_STOP).all(|s| !s.pass)
    }
}

/// The flows of `path`: towards the relay side's addresses (a0's 198.18.1.1, then .2, ...; ports 30000 + 2i) for
/// the XDP paths; towards B's address (then C's) for kernel forwarding, which routes by address.
pub fn layout(path: Path, flows: u32, payload: u16) -> FlowLayout {
    let mut l = match path {
        Path::Kernel => FlowLayout::new(flows, CALLER, CARRIER_B, 1024, 1024, 1),
        _ => FlowLayout::new(flows, CALLER, SBC_A, GEN_PORT, RELAY_PORT, 2),
    };
    l.payload = payload;
    l
}

/// Runs every ladder: per run, per flow count, `drop` then the paths.
pub fn run(opts: &Options) -> Result<Vec<Ladder>> {
    // The relay holds two sockets per flow; its children inherit this limit (raised as far as the hard limit
    // allows: raising that needs CAP_SYS_RESOURCE).
    let mut fd_limit = u64::MAX;
    if opts.paths.iter().any(|p| p.uses_relay()) {
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        let want = u64::from(*opts.flows.iter().max().unwrap_or(&1)) * 2 + FD_SPARE;
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
        fd_limit = want.min(hard).max(soft);
        if soft < fd_limit {
            setrlimit(Resource::RLIMIT_NOFILE, fd_limit, hard).context("raising the open-file limit")?;
        }
    }
    let topo = Topology::single_sbc().context("building the netns topology (needs root)")?;
    topo.enable_forwarding()?;
    let pin = crate::cps::pinning_possible();
    let top = *opts.rates.last().context("no rates")?;
    let mut ladders = Vec::new();
    for run in 1..=opts.runs {
        for &flows in &opts.flows {
            for path in std::iter::once(Path::Drop).chain(opts.paths.iter().copied()) {
                if path.uses_relay() {
                    let why = if path == Path::Xdp && 2 * flows > RELAY_MAX_KERNEL_FLOWS {
                        Some(format!(
                            "the relay puts both directions of a stream into its XDP maps, {} entries, more than \
                             the relay's largest XDP flow capacity ({RELAY_MAX_KERNEL_FLOWS})",
                            2 * flows
                        ))
                    } else if u64::from(flows) * 2 + FD_SPARE > fd_limit {
                        Some(format!(
                            "the relay needs two sockets per flow and the open-file limit is {fd_limit} (its hard \
                             limit; raising it needs CAP_SYS_RESOURCE)"
                        ))
                    } else {
                        None
                    };
                    if let Some(why) = why {
                        eprintln!("[run {run}/{}] {} at {flows} flows: not measured: {why}", opts.runs, path.name());
                        continue;
                    }
                }
                let mut ladder = Ladder {
                    run,
                    flows,
                    path,
                    steps: Vec::new(),
                    ceiling: None,
                    capped: false,
                    best_delivered_pps: None,
                    xdp_share: None,
                    warm_up_rounds: 0,
                    napi_threads_pinned: 0,
                    path_cpu_s_per_mpkt: None,
                    error: None,
                    latency_step: None,
                };
                let result = climb(&topo, opts, pin, &mut ladder);
                ladder.finish(top);
                eprintln!(
                    "[run {run}/{}] {} at {flows} flows: ceiling {}",
                    opts.runs,
                    path.name(),
                    ladder.ceiling.map_or("none".to_owned(), |c| format!("{c} pps"))
                );
                if let Err(e) = result {
                    // One path's failure (its set-up, its warm-up) does not end the invocation: the others are
                    // still measured, and the error is in the ladder.
                    check_stop()?;
                    eprintln!("[run {run}/{}] {} at {flows} flows failed: {e:#}", opts.runs, path.name());
                    ladder.error = Some(format!("{e:#}"));
                }
                ladders.push(ladder);
            }
        }
    }
    topo.remove()?;
    Ok(ladders)
}

fn check_stop() -> Result<()> {
    if crate::cps::STOP.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Sets `ladder.path` up, climbs, takes it down.
fn climb(topo: &Topology, opts: &Options, pin: bool, ladder: &mut Ladder) -> Result<()> {
    let layout = layout(ladder.path, ladder.flows, opts.payload);
    let exe = std::env::current_exe().context("current_exe")?;
    let layout_json = serde_json::to_string(&layout)?;
    let mac = |host: Host, dev: &str| -> Result<String> {
        Ok(topo.exec(host, "cat", &[format!("/sys/class/net/{dev}/address")])?.trim().to_owned())
    };
    let mut helpers: Vec<Process> = Vec::new();
    let mut undo: Vec<(Host, Vec<String>)> = Vec::new();
    let (sink_host, sink_dev) = match ladder.path {
        Path::Drop => (Host::Sbc, "a0"),
        _ => (Host::Switch, "p-sbc"),
    };
    let mut relay_control: Option<super::relay::RelayControl> = None;
    // The path's own tasks, whose CPU time each step reads (with --path-core).
    let mut path_pids: Vec<u32> = Vec::new();
    let result = (|| -> Result<()> {
        // The sink first: a veth takes XDP frames only when its peer has an XDP program (the relay checks).
        let mut sink = SinkClient::start(topo, sink_host, sink_dev, layout.flows, layout.ssrc_base)?;
        match ladder.path {
            Path::Xdp | Path::Relay | Path::XdpMaps => {
                // The flows' addresses beyond a0's and b0's own (more than one address's ports).
                for k in 1..layout.addresses() {
                    for (dev, base) in [("a0", SBC_A), ("b0", SBC_B)] {
                        let a = format!("{}/32", Ipv4Addr::from(u32::from(base) + k));
                        topo.exec(Host::Sbc, "ip", &["addr", "add", &a, "dev", dev])?;
                        undo.push((Host::Sbc, ["ip", "addr", "del", &a, "dev", dev].map(str::to_owned).to_vec()));
                    }
                }
                let m = mac(Host::B, "eth0")?;
                let a = CARRIER_B.to_string();
                topo.exec(Host::Sbc, "ip", &["neigh", "replace", &a, "lladdr", &m, "dev", "b0", "nud", "permanent"])?;
                undo.push((Host::Sbc, ["ip", "neigh", "del", &a, "dev", "b0"].map(str::to_owned).to_vec()));
                if ladder.path == Path::XdpMaps {
                    // As for `xdp`: a0 redirects (B -> A) into A's eth0, which takes XDP frames only with a program.
                    helpers.push(attached(topo, Host::A, "xdp-pass-a", &exe, &["xdp-pass", "eth0"])?);
                    let args = ["xdp-maps".to_owned(), format!("--layout={layout_json}")];
                    helpers.push(attached(topo, Host::Sbc, "xdp-maps", &exe, &args)?);
                } else {
                    let relay = opts.relay_binary.as_ref().context("the relay paths need the media-relay binary")?;
                    // Both directions of every stream in the XDP maps, sized to them (the default holds 65,536).
                    let max_flows = (2 * layout.flows).max(media_relay::xdp::abi::DEFAULT_MAX_FLOWS).to_string();
                    let mut args: Vec<String> =
                        ["--control", super::relay::CONTROL, "--rtp-timeout", "3600s"].map(str::to_owned).to_vec();
                    if ladder.path == Path::Xdp {
                        args.extend(
                            [
                                "--xdp-max-flows",
                                &max_flows,
                                "--xdp",
                                "native",
                                "--interface",
                                "a0",
                                "--interface",
                                "b0",
                            ]
                            .map(str::to_owned),
                        );
                        // a0 redirects (B -> A) into A's eth0, which takes XDP frames only with a program of its own.
                        helpers.push(attached(topo, Host::A, "xdp-pass-a", &exe, &["xdp-pass", "eth0"])?);
                        let p = topo.spawn(Host::Sbc, "media-relay-live", relay, &args)?;
                        path_pids.push(p.id());
                        helpers.push(p);
                    } else {
                        // One forwarding thread on the path's core, as rtpengine and the relay are pinned in `media`;
                        // the generator keeps core 0.
                        args.extend(["--xdp", "off", "--threads", "1"].map(str::to_owned));
                        helpers.push(attached(topo, Host::Sbc, "xdp-pass", &exe, &["xdp-pass", "a0"])?);
                        let mut pinned = vec!["-c".to_owned(), PATH_CORE.to_string(), relay.display().to_string()];
                        pinned.extend(args);
                        let p = topo.spawn(Host::Sbc, "media-relay-live", "taskset", &pinned)?;
                        path_pids.push(p.id());
                        helpers.push(p);
                    }
                    let mut c = super::relay::RelayControl::open(topo)?;
                    c.install(&layout)?;
                    relay_control = Some(c);
                }
            }
            Path::Drop => {}
            Path::Bare => helpers.push(attached(topo, Host::Sbc, "xdp-bare", &exe, &["xdp-bare", "a0", "b0"])?),
            Path::Reference => {
                let to_mac = mac(Host::B, "eth0")?;
                let args = [
                    "xdp-reference".to_owned(),
                    "--ingress=a0".to_owned(),
                    "--egress=b0".to_owned(),
                    format!("--layout={layout_json}"),
                    format!("--from={SBC_B}"),
                    format!("--to={CARRIER_B}"),
                    format!("--to-mac={to_mac}"),
                ];
                helpers.push(attached(topo, Host::Sbc, "xdp-reference", &exe, &args)?);
            }
            Path::Kernel => {
                helpers.push(attached(topo, Host::Sbc, "xdp-pass", &exe, &["xdp-pass", "a0"])?);
                topo.exec(Host::Sbc, "sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
                undo.push((Host::Sbc, ["sysctl", "-qw", "net.ipv4.ip_forward=0"].map(str::to_owned).to_vec()));
                // Permanent neighbours: an unresolved one would queue and drop the first packets of each step.
                for (addr, host) in
                    [(CARRIER_B, Host::B), (CARRIER_C, Host::C)].into_iter().take(layout.addresses() as usize)
                {
                    let m = mac(host, "eth0")?;
                    let a = addr.to_string();
                    topo.exec(
                        Host::Sbc,
                        "ip",
                        &["neigh", "replace", &a, "lladdr", &m, "dev", "b0", "nud", "permanent"],
                    )?;
                    undo.push((Host::Sbc, ["ip", "neigh", "del", &a, "dev", "b0"].map(str::to_owned).to_vec()));
                }
            }
        }
        let dst_mac = mac(Host::Sbc, "a0")?;
        if pin_path_core(opts) {
            // a0's NAPI (the path's XDP program, the redirect, the sink's softirq behind it) in a kernel thread of
            // its own on the other core: the generator's core then only sends. The veth has NAPI (and the switch
            // takes) only while an XDP program is attached, so this follows the attach, every ladder.
            topo.exec(Host::Sbc, "sh", &["-c", "echo 1 > /sys/class/net/a0/threaded"])
                .context("threaded NAPI on a0")?;
            let napi = pin_napi_threads("a0", PATH_CORE)?;
            ladder.napi_threads_pinned = napi.len() as u32;
            path_pids.extend(napi);
            if ladder.napi_threads_pinned == 0 {
                eprintln!("no NAPI thread of a0 found: the path runs on the generator's core");
            }
        }
        // Two packets per flow first, not measured, until a round arrives whole: a flow's first packets may take
        // a slow path by design (the relay hands a flow to its XDP program only with its next hop resolved, in
        // the background), and the ladder measures flows in their steady state.
        let started = Instant::now();
        loop {
            let mut warm = Step { rate: WARM_UP_RATE, ..Step::default() };
            let count = Some(2 * u64::from(layout.flows));
            measure(
                topo,
                opts,
                pin,
                &exe,
                &layout_json,
                &dst_mac,
                &mut sink,
                &mut warm,
                layout.flows,
                count,
                &[],
                false,
            )
            .context("warming the flows up")?;
            ladder.warm_up_rounds += 1;
            // Nothing lost is warm. (Not `==`: with live frames on kernel 6.18.44 the sink counts one frame more
            // than the generator sent, per generator run; see benches/README.md, "The extra frame of live frames".)
            if warm.sent > 0 && warm.received >= warm.sent {
                break;
            }
            if started.elapsed() > WARM_UP_LIMIT {
                eprintln!(
                    "[run {}] {} at {} flows: still losing packets after {:?} of warm-up ({} of {} arrived)",
                    ladder.run,
                    ladder.path.name(),
                    ladder.flows,
                    WARM_UP_LIMIT,
                    warm.received,
                    warm.sent
                );
                break;
            }
            check_stop()?;
        }
        for &rate in &opts.rates {
            check_stop()?;
            let mut step = Step { rate, ..Step::default() };
            if let Err(e) = measure(
                topo,
                opts,
                pin,
                &exe,
                &layout_json,
                &dst_mac,
                &mut sink,
                &mut step,
                layout.flows,
                None,
                &path_pids,
                false,
            ) {
                step.error = Some(format!("{e:#}"));
            }
            eprintln!("{}", progress(opts.runs, ladder, &step));
            ladder.steps.push(step);
            if ladder.should_stop() {
                break;
            }
        }
        // Latency at half the path's own ceiling (issue 15 point 6), measured in the sink's XDP program: no
        // sink process's wake-up or scheduling in it, only the generator's send, the path and the veths.
        if let Some(ceiling) = ladder.steps.iter().filter(|s| s.pass).map(|s| s.rate).max() {
            check_stop()?;
            // A path that fell behind on the last steps (the user-space relay's socket buffers) may still be
            // forwarding their packets: the latency step starts when nothing more arrives, or it would count
            // them and time its own behind them.
            settle(&mut sink)?;
            let mut step = Step { rate: ceiling / 2, ..Step::default() };
            sink.command("latency on")?;
            let measured = measure(
                topo,
                opts,
                pin,
                &exe,
                &layout_json,
                &dst_mac,
                &mut sink,
                &mut step,
                layout.flows,
                None,
                &path_pids,
                true,
            );
            sink.command("latency off")?;
            if let Err(e) = measured {
                step.error = Some(format!("{e:#}"));
            }
            eprintln!("{} (latency step)", progress(opts.runs, ladder, &step));
            ladder.latency_step = Some(step);
        }
        Ok(())
    })();
    if let Some(mut c) = relay_control.take() {
        match c.remove(&layout) {
            Ok((received, kernel)) => {
                ladder.xdp_share = (received > 0).then(|| kernel as f64 / received as f64);
                eprintln!(
                    "[run {}] {}: the relay received {received} packets on leg A, {kernel} through XDP",
                    ladder.run,
                    ladder.path.name()
                );
            }
            Err(e) => eprintln!("the relay's figures: {e:#}"),
        }
    }
    let failed = ladder.steps.iter().any(|s| !s.pass && !s.generator_limited);
    for mut h in helpers {
        if failed {
            eprintln!("{}", h.output_tail());
        }
        let _ = h.terminate(Duration::from_secs(5));
    }
    for (host, cmd) in undo.iter().rev() {
        let _ = topo.exec(*host, &cmd[0], &cmd[1..]);
    }
    if ladder.path == Path::Kernel {
        // ip_forward=0 turned forwarding off on a0/b0 too; the XDP paths want it on.
        topo.enable_forwarding()?;
    }
    result
}

/// Waits (up to [`SETTLE_LIMIT`]) until the sink counts nothing for [`SETTLE_QUIET`].
fn settle(sink: &mut SinkClient) -> Result<()> {
    let deadline = Instant::now() + SETTLE_LIMIT;
    loop {
        sink.command("reset")?;
        std::thread::sleep(SETTLE_QUIET);
        let counts: SinkCounts = serde_json::from_str(&sink.command("read")?).context("the sink's counts")?;
        if counts.packets == 0 || Instant::now() > deadline {
            return Ok(());
        }
    }
}

/// Before a latency step: quiet for this long, waited for at most [`SETTLE_LIMIT`].
const SETTLE_QUIET: Duration = Duration::from_millis(200);
const SETTLE_LIMIT: Duration = Duration::from_secs(10);

/// The CPU seconds of every thread of `pids` so far: the first field of /proc/PID/task/TID/schedstat, the time
/// on CPU in ns by the scheduler's clock. (/proc/stat's per-CPU figures come from 100 Hz ticks, which on this
/// kind of VM missed nearly all of a core's short bursts: a relay step at 250,000 packets/s read 0.01 s.) A task
/// gone since contributes nothing.
fn tasks_cpu_secs(pids: &[u32]) -> f64 {
    let mut ns = 0u64;
    for pid in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { continue };
        for task in tasks.flatten() {
            let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) else { continue };
            ns += stat.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    ns as f64 / 1e9
}

/// The AF_XDP fallback has been reported (once per invocation).
static AFXDP_SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// One step: reset the sink, send `rate × step_secs` frames at `rate`, read the sink.
#[allow(clippy::too_many_arguments)]
fn measure(
    topo: &Topology,
    opts: &Options,
    pin: bool,
    exe: &std::path::Path,
    layout_json: &str,
    dst_mac: &str,
    sink: &mut SinkClient,
    step: &mut Step,
    flows: u32,
    count: Option<u64>,
    path_pids: &[u32],
    latency: bool,
) -> Result<()> {
    sink.command("reset")?;
    let count = count.unwrap_or(u64::from(step.rate) * u64::from(opts.step_secs));
    let mut args: Vec<String> = Vec::new();
    let program = if pin {
        args.extend(["-c".to_owned(), GEN_CORE.to_string(), exe.display().to_string()]);
        "taskset".to_owned()
    } else {
        exe.display().to_string()
    };
    args.extend([
        "xdp-gen".to_owned(),
        "--iface=eth0".to_owned(),
        format!("--dst-mac={dst_mac}"),
        format!("--layout={layout_json}"),
        format!("--rate={}", step.rate),
        format!("--count={count}"),
    ]);
    if latency {
        args.extend(["--stamp".to_owned(), format!("--batch={LATENCY_BATCH}")]);
    }
    let cpu_before = (pin_path_core(opts) && !path_pids.is_empty()).then(|| tasks_cpu_secs(path_pids));
    let mut generator = topo.spawn(Host::A, "xdp-gen", program, &args)?;
    let status = generator.wait_timeout(Duration::from_secs(u64::from(opts.step_secs) * 20 + 30))?;
    let out = std::fs::read_to_string(&generator.stdout)?;
    let report: GenReport = out.lines().rev().find_map(|l| serde_json::from_str(l).ok()).with_context(|| {
        // The error is the first line of its stderr (a backtrace follows).
        let err = std::fs::read_to_string(&generator.stderr).unwrap_or_default();
        format!("xdp-gen ({status}) printed no report: {}", err.lines().take(3).collect::<Vec<_>>().join(" / "))
    })?;
    // Frames still in the veths' rings arrive within microseconds.
    std::thread::sleep(Duration::from_millis(50));
    let counts: SinkCounts = serde_json::from_str(&sink.command("read")?).context("the sink's counts")?;
    if let Some(before) = cpu_before {
        let cpu = tasks_cpu_secs(path_pids) - before;
        step.path_cpu_s = Some(cpu);
        step.path_cpu_s_per_mpkt = (counts.packets > 0).then(|| cpu * 1e6 / counts.packets as f64);
    }
    if report.engine != super::helpers::Engine::Live && !AFXDP_SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
        // Once per invocation: why the generator fell back (its stderr says), since the engine bounds the rates.
        let err = std::fs::read_to_string(&generator.stderr).unwrap_or_default();
        let why = err.lines().find(|l| l.contains("live frames refused")).unwrap_or("engine chosen by --engine");
        eprintln!("generator engine: AF_XDP copy mode ({why})");
    }
    step.engine = Some(report.engine);
    step.sent = report.sent;
    step.achieved_pps = (report.secs > 0.0).then(|| report.sent as f64 / report.secs);
    step.received = counts.packets;
    step.loss_pct =
        if step.sent == 0 { 100.0 } else { 100.0 * step.sent.saturating_sub(step.received) as f64 / step.sent as f64 };
    step.delivered_pps = (report.secs > 0.0).then(|| step.received as f64 / report.secs);
    step.generator_limited = step.achieved_pps.is_some_and(|a| a < MIN_ACHIEVED_SHARE * f64::from(step.rate));
    let all_flows = counts.flows_seen == flows || step.sent < u64::from(flows);
    step.pass = step.sent > 0
        && step.loss_pct < MAX_LOSS_PCT
        && !step.generator_limited
        && all_flows
        && counts.bad_ip_csum == 0;
    step.sink = Some(counts);
    Ok(())
}

fn progress(runs: u32, ladder: &Ladder, s: &Step) -> String {
    let f = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
    let latency = s.sink.as_ref().and_then(|c| c.latency.as_ref()).map_or(String::new(), |l| {
        format!(
            " latency p50 {:.0} p99 {:.0} p99.9 {:.0} max {:.0} us ({} stamped)",
            l.p50_us, l.p99_us, l.p999_us, l.max_us, l.samples
        )
    });
    format!(
        "[run {}/{runs}] {:<9} {:>6} flows {:>8} pps: sent {:>9} achieved {:>8} received {:>9} loss {:>7.3} % flows \
         seen {:>6} seq gaps {:>6}{latency}{}{}{}{}",
        ladder.run,
        ladder.path.name(),
        ladder.flows,
        s.rate,
        s.sent,
        f(s.achieved_pps),
        s.received,
        s.loss_pct,
        s.sink.as_ref().map_or(0, |c| c.flows_seen),
        s.sink.as_ref().map_or(0, |c| c.seq_gaps),
        if s.pass { "  PASS" } else { "  fail" },
        if s.generator_limited { " (generator-limited)" } else { "" },
        match s.engine {
            Some(super::helpers::Engine::Afxdp) => " [af_xdp]",
            _ => "",
        },
        s.error.as_ref().map_or(String::new(), |e| format!(" error: {e}"))
    )
}

/// A helper (`sbc-bench ARGS` in `host`) that prints `attached` once its program is on; waited for.
fn attached(
    topo: &Topology,
    host: Host,
    name: &str,
    exe: &std::path::Path,
    args: &[impl AsRef<std::ffi::OsStr>],
) -> Result<Process> {
    let mut p = topo.spawn(host, name, exe, args)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if std::fs::read_to_string(&p.stdout).is_ok_and(|o| o.contains("attached")) {
            return Ok(p);
        }
        if p.try_wait()?.is_some() || Instant::now() > deadline {
            bail!("{name} did not attach: {}", p.output_tail());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The sink helper (`sbc-bench xdp-sink`) in its namespace, driven line by line.
#[derive(Debug)]
pub struct SinkClient {
    child: Child,
    /// `None` once closed (EOF makes the sink detach and exit).
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl SinkClient {
    /// Starts the sink on `dev` in `host` and waits until it is attached.
    pub fn start(topo: &Topology, host: Host, dev: &str, flows: u32, ssrc_base: u32) -> Result<Self> {
        let exe = std::env::current_exe().context("current_exe")?;
        let mut child = ::tests::netns::command(Some(&topo.ns(host)), exe)
            .args(["xdp-sink", dev, &flows.to_string(), &ssrc_base.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the sink")?;
        let stdin = child.stdin.take().context("sink stdin")?;
        let stdout = child.stdout.take().context("sink stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut sink = Self { child, stdin: Some(stdin), lines };
        let first = sink.next_line(Duration::from_secs(30))?;
        if first != "attached" {
            bail!("the sink said {first:?} instead of attached");
        }
        Ok(sink)
    }

    /// Sends `cmd`, returns the answer line.
    pub fn command(&mut self, cmd: &str) -> Result<String> {
        let stdin = self.stdin.as_mut().context("the sink is closed")?;
        writeln!(stdin, "{cmd}").context("writing to the sink")?;
        stdin.flush()?;
        self.next_line(Duration::from_secs(60))
    }

    fn next_line(&mut self, timeout: Duration) -> Result<String> {
        match self.lines.recv_timeout(timeout) {
            Ok(l) => Ok(l),
            Err(_) => {
                let status = self.child.try_wait().ok().flatten();
                bail!("no answer from the sink within {timeout:?} (exited: {status:?}; see its stderr above)")
            }
        }
    }
}

impl Drop for SinkClient {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
