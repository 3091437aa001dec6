//! `sbc-bench`: the load-test harness. Scenarios (see benches/README.md):
//!
//! - `cps`: a target's call-rate ceiling and post-dial delay, next to SIPp direct or a second target ([`cps`]).
//! - `concurrent`: ramp to N calls with RTP both ways and hold them ([`concurrent`]).
//! - `media --local`: the media relay's packet-rate ceiling, CPU per packet and latency, user space (plain and
//!   decrypting SRTP) vs its XDP fast path, next to a bare XDP redirect and kernel IP forwarding ([`media`]).
//! - `failover --local`: fire drills on a hot-standby pair ([`failover`]).
//! - `soak`: a light constant load for hours, exported as Prometheus metrics ([`soak`]).
//! - `overload`: 0.5x to 3x a target's call-rate ceiling: goodput, 503s and the post-dial delay of accepted calls
//!   ([`overload`]).
//! - `webrtc`: the relay's DTLS handshakes per second and CPU per handshake, and its CPU per million packets
//!   bridging DTLS-SRTP to RTP next to plain RTP, against a real `media-relay` process (issue 18; [`webrtc`]).
//! - `ng`: the same Kamailio against rtpengine and against our `media-relay --ng` (user space and XDP): calls/s
//!   ceilings and media CPU per million packets, with issue 17's ratios ([`ng`]).
//!
//! Targets (our SBC in namespaces the harness builds, SIPp direct, or any SBC by address) and the guard that keeps
//! load on loopback unless told otherwise are in [`target`]. The criterion micro-benches live under benches/benches
//! (`cargo bench -p sbc-bench`).

mod binaries;
mod blast;
mod calls;
mod concurrent;
mod cps;
mod failover;
mod kamailio;
mod live;
mod media;
mod media_threads;
mod media_versus;
mod ng;
mod overload;
mod plot;
mod rtpengine;
mod soak;
mod stats;
mod target;
mod webrtc;
mod xdp;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;

#[derive(Debug, Parser)]
#[command(name = "sbc-bench", about = "Load-test harness for the SBC")]
struct Cli {
    #[command(subcommand)]
    command: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Call-rate ceiling and INVITE->200 latency of the SBC, next to SIPp UAC->UAS direct, climbing a rate ladder.
    Cps(CpsArgs),
    /// Ramps to N calls with media both ways and holds them: call setup, peak concurrent calls, packet loss,
    /// one-way latency and jitter per direction, the SBC's CPU.
    Concurrent(ConcurrentArgs),
    /// Fire drills on a hot-standby pair: media gap, takeover time, calls surviving, CDRs lost or doubled.
    Failover(FailoverArgs),
    /// Offers 0.5x to 3x the call-rate ceiling: accepted calls per second (goodput), 503s, failed calls and the
    /// post-dial delay of accepted calls per offered rate, then a recovery step at a normal rate.
    Overload(OverloadArgs),
    /// Packet-rate ceiling (loss < 0.1 %), CPU per packet and latency of media-relay (user space and XDP), a bare
    /// XDP redirect and kernel IP forwarding.
    Media(MediaArgs),
    /// Kamailio with rtpengine against the same Kamailio with our media-relay --ng (user space and XDP), in one
    /// run: calls/s ceilings and media CPU per million packets, ratios against rtpengine (issue 17).
    Ng(NgArgs),
    /// WebRTC legs through a real media-relay: DTLS handshakes per second (relay CPU per handshake, p50/p99), then
    /// the relay's CPU per million packets bridging DTLS-SRTP to RTP next to plain RTP to RTP, in the same run.
    Webrtc(WebrtcArgs),
    /// A light constant call load for hours against one target (a canary): every interval's calls, failures and
    /// post-dial delay as Prometheus metrics; exit status 1 when an interval failed.
    Soak(SoakArgs),
    /// Internal: run inside a namespace by `media`, copies stdin/stdout to and from a TCP address.
    #[command(hide = true)]
    ControlProxy {
        /// The TCP address to connect to.
        addr: std::net::SocketAddr,
    },
    /// Internal: run in the SBC namespace by `media`, attaches the bare XDP redirect INGRESS -> EGRESS and waits.
    #[command(hide = true)]
    XdpBare { ingress: String, egress: String },
    /// Internal: run in a scratch namespace by `media`, times the relay's XDP program with BPF_PROG_TEST_RUN.
    #[command(hide = true)]
    XdpTestRun,
    /// The XDP program's cost per hit in BPF_PROG_TEST_RUN with repeat, next to a reference relay program and an
    /// empty one (gross, net of the empty one, ratio ours/reference; medians of several rounds).
    XdpCost(xdp::CostArgs),
    /// Internal: run in a scratch namespace by `xdp-cost`: ROUNDS CALLS REPEAT, one JSON line per round.
    #[command(hide = true)]
    XdpCostRun { rounds: u32, calls: u32, repeat: u32 },
    /// Internal: run in A by `media`, the sendmmsg RTP sender (`--generator blast`).
    #[command(hide = true)]
    Blast(blast::BlastArgs),
    /// Internal: run in A by `media --generator xdp`, the live-frames XDP RTP generator.
    #[command(hide = true)]
    XdpGen(live::helpers::GenArgs),
    /// Internal: run by `media --generator xdp`, the XDP RTP sink on IFACE counting FLOWS flows from SSRC_BASE.
    #[command(hide = true)]
    XdpSink { iface: String, flows: u32, ssrc_base: u32 },
    /// Internal: run in the SBC namespace by `media --generator xdp`, the reference relay filled for the flows.
    #[command(hide = true)]
    XdpReference(live::helpers::ReferenceArgs),
    /// Internal: run by `media --generator xdp`, XDP_PASS on IFACE (so that its veth takes XDP frames).
    #[command(hide = true)]
    XdpPass { iface: String },
    /// Internal: run in the SBC namespace by `media --generator xdp`, our relay_xdp filled for the flows by the
    /// relay's loader (the `xdp-maps` path).
    #[command(hide = true)]
    XdpMaps(live::helpers::MapsArgs),
}

/// Where the calls go (every call scenario: cps, concurrent, soak). See target.rs.
#[derive(Debug, Clone, clap::Args)]
struct TargetArgs {
    /// Shorthand for `--target local`.
    #[arg(long)]
    local: bool,
    /// The target: `local` (our sbc, started by the harness in its netns topology; needs root), `local:PATH` (another
    /// sbc build, the same way), `local-unguarded[:PATH]` (the same with [edge] and [overload] switched off: the
    /// baseline of what the checks cost), `local-hep[:PATH]` (the same exporting every SIP message over HEP: the cost of HEP), `local-tls` / `local-tls:PATH` (the same with SIP over TLS on both legs,
    /// through stunnel next to SIPp; cps only), `kamailio-rtpengine` (Kamailio 5.6 with tm, dialog, topos and
    /// rtpengine anchoring media, started by the harness where our sbc runs; cps only), `kamailio-ng` and
    /// `kamailio-ng-xdp` (the same Kamailio with our media-relay --ng in rtpengine's place, user space or native XDP;
    /// cps only; `sbc-bench ng` runs all three), `direct` (SIPp UAC straight to SIPp UAS: the harness's own ceiling)
    /// or an SBC's `IP:PORT` (literal address; it must route every number to --uas). Default: local.
    #[arg(long)]
    target: Option<target::Target>,
    /// A second target, measured in the same invocation, interleaved with the first (run by run), with ratios.
    #[arg(long)]
    compare: Option<target::Target>,
    /// Without --compare, measure only the target (cps otherwise compares with `direct`).
    #[arg(long)]
    no_compare: bool,
    /// The caller's address on this host (SIPp UAC and its RTP) for `IP:PORT` targets and `direct` without
    /// namespaces.
    #[arg(long, default_value = "127.0.0.1")]
    uac_ip: std::net::IpAddr,
    /// The caller's SIP port on this host.
    #[arg(long, default_value_t = 5061)]
    uac_port: u16,
    /// Where the harness's callee (SIPp UAS and its RTP) listens on this host, for `IP:PORT` targets (which must
    /// route the calls there) and `direct` without namespaces.
    #[arg(long, default_value = "127.0.0.1:5070")]
    uas: std::net::SocketAddr,
    /// Allow targets (and the media addresses they name) outside loopback. Never point a load test at production.
    #[arg(long)]
    allow_remote: bool,
    /// Limit a local `sbc` to this share of one core (0.05 to 1; a cgroup with a CFS quota, needs root): a smaller
    /// deployment, whose ceiling the harness's SIPp can exceed several times on a small machine.
    #[arg(long)]
    sbc_cpu: Option<f64>,
}

impl TargetArgs {
    /// The harness for `targets`, with the `--sbc-cpu` limit if any.
    fn harness(&self, targets: &[target::Target]) -> Result<target::Harness> {
        let mut harness = target::Harness::new(targets, self.here(), self.guard())?;
        if let Some(share) = self.sbc_cpu {
            harness.cpu_limit = Some(target::CpuLimit::new(share)?);
            eprintln!("a local sbc is limited to {:.0} % of one core (--sbc-cpu {share})", share * 100.0);
        }
        Ok(harness)
    }

    /// The targets in the order each run measures them: the target, then the comparison (`default_compare` when
    /// none is given and --no-compare is not).
    fn targets(&self, default_compare: Option<target::Target>) -> Result<Vec<target::Target>> {
        if self.local && self.target.as_ref().is_some_and(|t| !t.is_local()) {
            bail!(
                "--local and --target {} contradict each other",
                self.target.as_ref().map(ToString::to_string).unwrap_or_default()
            );
        }
        let first = self.target.clone().unwrap_or(target::Target::Local(None));
        let second = match (&self.compare, self.no_compare) {
            (Some(_), true) => bail!("--compare and --no-compare contradict each other"),
            (Some(c), false) => Some(c.clone()),
            (None, true) => None,
            (None, false) => default_compare,
        };
        Ok(std::iter::once(first).chain(second).collect())
    }

    /// Before anything is built or sent: every address through the guard; then, for a local target, root and
    /// the binaries it needs (`scenario` names the command in messages).
    fn prepare(&self, targets: &[target::Target], scenario: &str) -> Result<()> {
        let guard = self.guard();
        for t in targets {
            if let target::Target::Remote(a) = t {
                guard.check("target", a.ip())?;
            }
        }
        if scenario != "cps" && targets.iter().any(|t| matches!(t, target::Target::LocalTls(_))) {
            bail!("`--target local-tls` is a cps target: {scenario} runs over UDP only");
        }
        if let Some(k) = targets.iter().find(|t| t.is_kamailio()) {
            if scenario != "cps" {
                bail!("`{k}` is a cps target (and of `sbc-bench ng`): {scenario} does not start it");
            }
            target::require_root(&format!("`{scenario} --target {k}`"))?;
        }
        if targets.iter().any(|t| matches!(t, target::Target::KamailioNg | target::Target::KamailioNgXdp)) {
            prepare_binaries(None)?;
        }
        if targets.iter().any(target::Target::is_local) {
            target::require_root(&format!("`{scenario} --target local`"))?;
            prepare_binaries(None)?;
        }
        Ok(())
    }

    fn here(&self) -> target::Here {
        target::Here { uac_ip: self.uac_ip, uac_port: self.uac_port, uas: self.uas }
    }

    fn guard(&self) -> target::Guard {
        target::Guard { allow_remote: self.allow_remote }
    }
}

#[derive(Debug, clap::Args)]
struct MediaArgs {
    /// Build the network-namespace topology on this machine and start our own `media-relay` in it (needs root).
    /// Required: this scenario steers the relay over its control protocol (for media through any SBC by address,
    /// see `concurrent`).
    #[arg(long)]
    local: bool,
    /// Complete runs; the summary takes the median over them.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    runs: u32,
    /// Seconds of traffic per step (each step sends rate x step-secs packets).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=30))]
    step_secs: u32,
    /// The rate ladder in packets per second (all streams together), comma-separated, ascending. Default:
    /// 10000,20000,40000,60000,80000,100000,120000,140000,160000,200000; with `--generator xdp`
    /// 250000,500000,1000000,1500000,2000000,2500000,3000000,4000000.
    #[arg(long, value_delimiter = ',')]
    rates: Vec<u32>,
    /// With `--generator xdp`: the flow counts, comma-separated (1 to 100000), each measured on every path.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    flows: Vec<u32>,
    /// With `--generator xdp`: a0's NAPI (the path, its redirect and the sink behind it) in a kernel thread of its
    /// own pinned to the other core, instead of in the generator's softirq on the generator's core (the default,
    /// as with live frames).
    #[arg(long)]
    path_core: bool,
    /// Parallel streams (one rtpgen sender and sink each, one relayed stream each); the rate is split evenly.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    streams: u16,
    /// RTP payload bytes per packet (160: G.711, 20 ms).
    #[arg(long, default_value_t = 160, value_parser = clap::value_parser!(u16).range(16..=1400))]
    payload: u16,
    /// The paths to measure, comma-separated, in this order in every run: relay (user space), srtp (user space,
    /// leg A's SRTP decrypted to plain RTP), xdp (media-relay with its XDP fast path), bare (a bare XDP redirect
    /// a0 -> b0, the ceiling), kernel (IP forwarding), rtpengine (rtpengine 10.5 in user space, steered over NG: the
    /// reference relay; needs Debian's rtpengine-daemon), ng (our media-relay --ng in user space, steered over NG as
    /// rtpengine is); with --generator xdp also reference (the reference
    /// relay program, one flow per generator flow).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "relay,srtp,xdp,bare,kernel")]
    paths: Vec<media::Target>,
    /// The sender: blast (sbc-bench's own sendmmsg sender, batches of 32, no per-stream limit) or rtpgen (one
    /// send and sleep per packet, at most 100 000 pps per stream), with rtpgen sinks; or xdp (an XDP program run
    /// in live-frames mode, millions of packets/s, with an XDP sink; paths bare, reference and kernel).
    #[arg(long, value_enum, default_value = "blast")]
    generator: media::Generator,
    /// Where the JSON with every step's figures goes.
    #[arg(long, default_value = "target/bench/media.json")]
    out: PathBuf,
    /// The `media-relay` binary to measure; default: `cargo build --release -p media-relay`.
    #[arg(long)]
    relay: Option<PathBuf>,
    /// With `--generator xdp`: measure nothing, read the JSON of an earlier run and print its table and write its
    /// plot again (next to it, `.svg`), with this build's summary.
    #[arg(long)]
    replot: Option<PathBuf>,
    /// Measure the `relay` path once per thread count given (comma-separated, e.g. 1,2), with `media-relay
    /// --threads N` and one session per stream spread over the threads, and compare them (ratios to the first).
    #[arg(long, value_delimiter = ',')]
    relay_threads: Vec<usize>,
}

/// `failover --xdp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum FailoverXdp {
    /// Media through the relays' user space.
    Off,
    /// Native XDP on both boxes.
    Native,
}

#[derive(Debug, clap::Args)]
struct FailoverArgs {
    /// Build the two-box netns topology on this machine and start our own pair in it (needs root). Required.
    #[arg(long)]
    local: bool,
    /// How many drills (one call with RTP both ways each).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
    drills: u32,
    /// `demote` (POST /ha/demote on the active), `kill` (kill -9 of the active, which restarts as standby), or
    /// `setup` (kill -9 of the active while calls are being set up: how many complete on the other box).
    #[arg(long, value_enum, default_value = "demote")]
    kind: failover::DrillKind,
    /// `--kind setup`: calls caught in setup per drill, split among trying, ringing, early media and waiting for
    /// a PRACK.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(4..=200))]
    setup_calls: u32,
    /// `native`: both boxes forward media with native XDP (the pair's veths get pass programs on their other
    /// ends), and each drill reports how many packets the new active still handled in user space. `demote` and
    /// `kill` drills only.
    #[arg(long, value_enum, default_value = "off")]
    xdp: FailoverXdp,
    /// The pair's `[ha] dead_after` in ms (heartbeats at a third of it); default the configs' 300 ms. The media
    /// gap of a kill drill is about this long plus the takeover's own work.
    #[arg(long, value_parser = clap::value_parser!(u64).range(60..=5000))]
    dead_after_ms: Option<u64>,
    /// Where the JSON goes.
    #[arg(long, default_value = "target/bench/failover.json")]
    out: PathBuf,
    /// The `sbc` binary; default: `cargo build --release -p sbc`.
    #[arg(long)]
    sbc: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct CpsArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Complete runs; the summary takes the median over them.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    runs: u32,
    /// Seconds of traffic per step (each step places rate x step-secs calls, at most 50 000).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=60))]
    step_secs: u32,
    /// The rate ladder in calls per second, comma-separated, ascending.
    #[arg(long, value_delimiter = ',', default_value = "100,500,1000,1500,2000,2500,3000,3500,4000,4500,5000,6000")]
    rates: Vec<u32>,
    /// Where the JSON with every step's figures goes (the plot goes next to it, as .svg).
    #[arg(long, default_value = "target/bench/cps.json")]
    out: PathBuf,
    /// A process on this host whose CPU time (all its threads, not its children) counts as an `IP:PORT` target's:
    /// the `sbc cpu` column for an SBC by address running here.
    #[arg(long)]
    target_pid: Option<u32>,
    /// A local sbc anchors every call's media (its embedded relay on 198.18.1.1 / 198.18.2.1, user space): on
    /// whenever `kamailio-rtpengine` is a target, whose rtpengine anchors every call.
    #[arg(long)]
    media: bool,
}

#[derive(Debug, clap::Args)]
struct OverloadArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// The call-rate ceiling (calls/s) the factors multiply. Default: measured first, on the first target, with a
    /// short cps ladder (--ceiling-rates, --ceiling-step-secs).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=20000))]
    ceiling: Option<u32>,
    /// Offered load as multiples of the ceiling, comma-separated, ascending.
    #[arg(long, value_delimiter = ',', default_value = "0.5,1,1.5,2,3")]
    factors: Vec<f64>,
    /// Seconds of traffic per step (each step places rate x step-secs calls, at most 50 000).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=60))]
    step_secs: u32,
    /// Complete runs; the summary takes the median over them.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    runs: u32,
    /// After the ladder (and a pause of 3 s), one step at this multiple of the ceiling, which should see no 503s:
    /// the target recovered by itself. 0: no recovery step.
    #[arg(long, default_value_t = 0.5)]
    recovery_factor: f64,
    /// The cps ladder that measures the ceiling when --ceiling is not given, calls/s, ascending.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "500,1000,1250,1500,1750,2000,2250,2500,2750,3000,3500,4000,5000,6000"
    )]
    ceiling_rates: Vec<u32>,
    /// Seconds per step of that ladder.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=60))]
    ceiling_step_secs: u32,
    /// Where the JSON with every step's figures goes (the plot goes next to it, as .svg).
    #[arg(long, default_value = "target/bench/overload.json")]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
struct SoakArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Calls per second, constant (at most 100: a soak is a light load).
    #[arg(long, default_value_t = 2)]
    rate: u32,
    /// Seconds each answered call is held before the caller hangs up (at most 600).
    #[arg(long, default_value_t = 10)]
    hold_secs: u32,
    /// How long calls are placed: `90s`, `30m`, `2h`, `1h30m` (at most 24h; rate x duration calls).
    #[arg(long, default_value = "1h", value_parser = soak::parse_duration)]
    duration: std::time::Duration,
    /// The reporting period: one progress line, one set of metrics and one pass/fail verdict per interval.
    /// Default: 60s, or the duration when that is shorter.
    #[arg(long, value_parser = soak::parse_duration)]
    interval: Option<std::time::Duration>,
    /// Serve the soak's Prometheus metrics over HTTP on this address (e.g. 127.0.0.1:9899). Default: off.
    #[arg(long)]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Rewrite this file (Prometheus text format, atomically) after every interval, for node_exporter's textfile
    /// collector (name it *.prom in the collector's directory). Default: off.
    #[arg(long)]
    metrics_file: Option<PathBuf>,
    /// Where the JSON with every interval's figures goes (the plot goes next to it, as .svg).
    #[arg(long, default_value = "target/bench/soak.json")]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
struct NgArgs {
    /// The targets, comma-separated, from kamailio-rtpengine (the baseline of every ratio), kamailio-ng and
    /// kamailio-ng-xdp.
    #[arg(long, value_delimiter = ',', default_value = "kamailio-rtpengine,kamailio-ng,kamailio-ng-xdp")]
    targets: Vec<target::Target>,
    /// Complete runs (each: every target's cps ladder and media window); the summary takes medians.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    runs: u32,
    /// Seconds of traffic per cps step.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=60))]
    step_secs: u32,
    /// The cps rate ladder in calls per second, comma-separated, ascending.
    #[arg(long, value_delimiter = ',', default_value = "200,400,600,800,1000,1200,1500,2000,2500,3000")]
    rates: Vec<u32>,
    /// Skip the cps ladders: media windows only.
    #[arg(long)]
    no_cps: bool,
    /// Calls held with RTP both ways in the media window.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=2000))]
    calls: u32,
    /// The rate those calls are placed at, calls/s.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    call_rate: u32,
    /// RTP packets per second per call and direction (50: G.711 at 20 ms). calls x pps x 2 go through the relay.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pps: u32,
    /// RTP payload bytes per packet.
    #[arg(long, default_value_t = 160, value_parser = clap::value_parser!(u16).range(16..=1400))]
    payload: u16,
    /// Seconds of media.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=300))]
    media_secs: u32,
    /// Seconds of the idle window (calls up, no media) before the media: the machine's baseline.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=60))]
    idle_secs: u32,
    /// Where the JSON with every figure goes (the plot goes next to it, as .svg).
    #[arg(long, default_value = "target/bench/ng.json")]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
struct WebrtcArgs {
    /// Complete runs (each with a fresh relay: the handshake phase, then both media windows); the summary takes
    /// medians.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    runs: u32,
    /// WebRTC legs of the handshake phase (each created, handshaken and removed).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=webrtc::MAX_LEGS as u64))]
    legs: u64,
    /// Handshakes in flight at most (also when connecting the media window's WebRTC calls).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1000))]
    concurrency: u64,
    /// Calls of each media window (WebRTC, then plain).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=webrtc::MAX_CALLS as u64))]
    calls: u64,
    /// Packets per second through the relay in all, both directions together (half browser -> carrier).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(100..=200_000))]
    rate: u32,
    /// Seconds of media per window (at most 20: the relay's consent timer is 30 s).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=20))]
    media_secs: u32,
    /// Measure this media-relay binary instead of target/release/media-relay.
    #[arg(long)]
    relay: Option<PathBuf>,
    /// Where the JSON with every run's figures goes (the plot goes next to it as .svg, the relay's log as .log).
    #[arg(long, default_value = "target/bench/webrtc.json")]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
struct ConcurrentArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Calls placed and then held together, each with one RTP stream each way.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    calls: u32,
    /// Calls placed per second during the ramp.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=5000))]
    rate: u32,
    /// Seconds of media once every call is up.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=3600))]
    hold_secs: u32,
    /// RTP packets per second per call, each way (50: G.711 at 20 ms).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pps: u32,
    /// RTP payload bytes per packet (160: G.711 at 20 ms).
    #[arg(long, default_value_t = 160, value_parser = clap::value_parser!(u16).range(16..=1400))]
    payload: u16,
    /// Complete runs (each measures every target once); the summary takes the median over them.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    runs: u32,
    /// Where the JSON with every run's figures goes (the plot goes next to it, as .svg).
    #[arg(long, default_value = "target/bench/concurrent.json")]
    out: PathBuf,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Scenario::Cps(args) => cps_main(args),
        Scenario::Concurrent(args) => concurrent_main(args),
        Scenario::Failover(args) => failover_main(args),
        Scenario::Media(args) => media_main(args),
        Scenario::Soak(args) => soak_main(args),
        Scenario::Overload(args) => overload_main(args),
        Scenario::Ng(args) => ng_main(args),
        Scenario::Webrtc(args) => webrtc_main(args),
        Scenario::ControlProxy { addr } => media::control_proxy(addr),
        Scenario::XdpBare { ingress, egress } => xdp::bare_main(&ingress, &egress),
        Scenario::XdpTestRun => xdp::test_run_main(),
        Scenario::XdpCost(args) => xdp::cost_main(&args),
        Scenario::XdpCostRun { rounds, calls, repeat } => xdp::cost_run_main(rounds, calls, repeat),
        Scenario::Blast(args) => blast::main(args),
        Scenario::XdpGen(args) => live::helpers::gen_main(&args),
        Scenario::XdpSink { iface, flows, ssrc_base } => live::helpers::sink_main(&iface, flows, ssrc_base),
        Scenario::XdpReference(args) => live::helpers::reference_main(&args),
        Scenario::XdpPass { iface } => live::helpers::pass_main(&iface),
        Scenario::XdpMaps(args) => live::helpers::maps_main(&args),
    }
}

/// `media --generator xdp --replot FILE`: the table and the plot of an earlier run, from its JSON.
fn live_replot(file: &Path) -> Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    let opts: live::Options = serde_json::from_value(json["options"].clone()).context("its options")?;
    let ladders: Vec<live::Ladder> = serde_json::from_value(json["ladders"].clone()).context("its ladders")?;
    let summary = live::summarize(&opts, &ladders);
    let svg = file.with_extension("svg");
    live::plot(&svg, &opts, &summary)?;
    println!("{}", live::table(&opts, &summary));
    println!("plot: {}", svg.display());
    Ok(())
}

/// `media --generator xdp`: the live ladders (see live/mod.rs).
fn live_main(args: MediaArgs) -> Result<()> {
    if args.rates.contains(&0) || !args.rates.is_sorted_by(|a, b| a < b) {
        bail!("--rates must be positive and strictly ascending, e.g. 500000,1000000,2000000");
    }
    if args.flows.is_empty() || args.flows.iter().any(|&f| f == 0 || f > 100_000) {
        bail!("--flows must be 1 to 100000 each, e.g. 1,1000,10000,100000");
    }
    let mut paths = Vec::new();
    for p in &args.paths {
        match p {
            media::Target::Bare => paths.push(live::Path::Bare),
            media::Target::Reference => paths.push(live::Path::Reference),
            media::Target::Kernel => paths.push(live::Path::Kernel),
            media::Target::Xdp => paths.push(live::Path::Xdp),
            media::Target::Relay => paths.push(live::Path::Relay),
            media::Target::XdpMaps => paths.push(live::Path::XdpMaps),
            other => eprintln!("note: path {} is not measured with --generator xdp (not done yet)", other.name()),
        }
    }
    paths.dedup();
    let relay_binary = match (&args.relay, paths.iter().any(|p| p.uses_relay())) {
        (_, false) => None,
        (Some(path), true) => Some(std::fs::canonicalize(path).with_context(|| format!("--relay {}", path.display()))?),
        (None, true) => Some(media::prepare_binaries(None)?.0),
    };
    watch_interrupts();
    let opts = live::Options {
        runs: args.runs,
        step_secs: args.step_secs,
        rates: args.rates,
        flows: args.flows,
        paths,
        payload: args.payload,
        relay_binary,
        path_core: args.path_core,
    };
    let started = std::time::Instant::now();
    let ladders = live::ladder::run(&opts)?;
    let summary = live::summarize(&opts, &ladders);
    let json = serde_json::json!({
        "scenario": "media",
        "generator": "xdp",
        "options": opts,
        "criterion": { "max_loss_pct": live::ladder::MAX_LOSS_PCT, "min_achieved_share": live::ladder::MIN_ACHIEVED_SHARE },
        "wall_secs": started.elapsed().as_secs_f64(),
        "ladders": ladders,
        "summary": summary,
    });
    let out = if args.out == Path::new("target/bench/media.json") {
        PathBuf::from("target/bench/media-live.json")
    } else {
        args.out
    };
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&json)?)?;
    let svg = out.with_extension("svg");
    live::plot(&svg, &opts, &summary)?;
    println!("{}", live::table(&opts, &summary));
    println!("figures: {} ({:.0} s); plot: {}", out.display(), started.elapsed().as_secs_f64(), svg.display());
    Ok(())
}

fn media_main(mut args: MediaArgs) -> Result<()> {
    if let Some(file) = &args.replot {
        if args.generator != media::Generator::Xdp {
            bail!("--replot reads the JSON of `media --generator xdp` only");
        }
        return live_replot(file);
    }
    if !args.local {
        bail!(
            "`media` needs --local: it measures our media-relay (user space, XDP) through its control protocol in \
             namespaces it builds itself. For media through any SBC by address, use `concurrent --target IP:PORT`"
        );
    }
    if args.rates.is_empty() {
        args.rates = if args.generator == media::Generator::Xdp {
            live::DEFAULT_RATES.to_vec()
        } else {
            vec![10000, 20000, 40000, 60000, 80000, 100000, 120000, 140000, 160000, 200000]
        };
    }
    if args.generator == media::Generator::Xdp {
        return live_main(args);
    }
    if args.flows != [1] {
        bail!("--flows needs --generator xdp (the socket generators use --streams)");
    }
    if let Some(p) = args.paths.iter().find(|p| matches!(p, media::Target::Reference | media::Target::XdpMaps)) {
        bail!("the {} path needs --generator xdp", p.name());
    }
    if args.rates.is_empty() || args.rates.contains(&0) || !args.rates.is_sorted_by(|a, b| a < b) {
        bail!("--rates must be positive and strictly ascending, e.g. 10000,20000,40000");
    }
    let top = *args.rates.last().unwrap_or(&0);
    if args.generator == media::Generator::Rtpgen && top.div_ceil(u32::from(args.streams)) > media::MAX_PPS_PER_STREAM {
        bail!(
            "{top} pps over {} stream(s) is above rtpgen's {} pps per stream: raise --streams",
            args.streams,
            media::MAX_PPS_PER_STREAM
        );
    }
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:"))?.split_whitespace().nth(2)?.parse::<u32>().ok());
    if root != Some(0) {
        bail!(
            "`media --local` builds network namespaces and needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN): run it as root"
        );
    }
    if Command::new("ip").arg("-V").output().is_err() {
        bail!("`media --local` needs `ip` (iproute2) for network namespaces: run `make deps` as root");
    }
    if args.paths.contains(&media::Target::Rtpengine) {
        // Before any ladder: the rtpengine path comes last by default and would fail after minutes of others.
        ::tests::rtpengine::binary()?;
    }
    if args.relay_threads.contains(&0) {
        bail!("--relay-threads: thread counts start at 1");
    }
    if !args.relay_threads.is_empty() && !args.paths.contains(&media::Target::Relay) {
        bail!("--relay-threads measures the relay path: add relay to --paths");
    }
    if let Some(&most) = args.relay_threads.iter().max() {
        if usize::from(args.streams) < most {
            bail!("--relay-threads {most} needs at least {most} streams (one session per stream): raise --streams");
        }
    }
    let (relay_binary, rtpgen_binary) = media::prepare_binaries(args.relay.as_deref())?;
    watch_interrupts();
    let opts = media::Options {
        runs: args.runs,
        step_secs: args.step_secs,
        rates: args.rates,
        streams: args.streams,
        payload: usize::from(args.payload),
        relay_binary,
        rtpgen_binary,
        generator: args.generator,
        relay_threads: args.relay_threads,
        paths: {
            let mut p = args.paths;
            p.dedup();
            p
        },
    };
    let pinned = cps::pinning_possible();
    let started = std::time::Instant::now();
    let (ladders, test_runs) = media::run(&opts)?;
    // With --relay-threads, the common summary sees the relay ladders of the first thread count only (its figures
    // are the plain relay path's); the comparison sees them all.
    let first = opts.relay_threads.first().copied();
    let plain: Vec<media::Ladder> =
        ladders.iter().filter(|l| l.target != media::Target::Relay || l.threads == first).cloned().collect();
    let summary = media::summarize(&opts.paths, &opts.rates, &plain, &test_runs);
    let threads = media_threads::compare(&opts, &ladders);
    let json = serde_json::json!({
        "scenario": "media",
        "mode": "local",
        "options": opts,
        "pinning": if pinned {
            serde_json::json!({ "relay_core": media::RELAY_CORE, "generator_core": media::GEN_CORE, "sink_core": media::SINK_CORE })
        } else {
            serde_json::Value::Null
        },
        "criterion": { "max_loss_pct": media::MAX_LOSS_PCT },
        "cpu": {
            "relay": "media-relay utime+stime (/proc/PID/stat) over the step",
            "xdp": "media-relay utime+stime (/proc/PID/stat) over the step; total adds the machine's softirq time",
            "bare": "the helper holding the program (utime+stime); total adds the machine's softirq time",
            "kernel": "softirq time of the whole machine (si, /proc/stat) over the step",
            "rtpengine": "rtpengine utime+stime (/proc/PID/stat, all threads) over the step",
        },
        "targets": {
            "xdp_vs_relay_pkts_per_cpu_s_min": media::TARGET_CPU_RATIO,
            "xdp_vs_bare_ceiling_min": media::TARGET_CEILING_SHARE,
            "relay_vs_rtpengine_pkts_per_cpu_s_min": media_versus::TARGET_RELAY_VS_RTPENGINE,
            "xdp_vs_rtpengine_pkts_per_cpu_s_min": media_versus::TARGET_XDP_VS_RTPENGINE,
            "xdp_minus_kernel_latency_p99_us_max": media_versus::TARGET_XDP_MINUS_KERNEL_P99_US,
        },
        "test_runs": test_runs,
        "wall_secs": started.elapsed().as_secs_f64(),
        "ladders": ladders,
        "summary": summary,
        "relay_threads": threads,
    });
    write_json(&args.out, &json)?;
    let svg = args.out.with_extension("svg");
    media::plot(&svg, &opts, &plain)?;
    println!("{}", media::table(&opts, &summary, pinned));
    if let Some(t) = &threads {
        println!("{}", media_threads::table(t));
    }
    println!("every step's figures: {}; plot: {}", args.out.display(), svg.display());
    Ok(())
}

fn webrtc_main(args: WebrtcArgs) -> Result<()> {
    let (relay_binary, _) = media::prepare_binaries(args.relay.as_deref())?;
    let out = std::path::absolute(&args.out).with_context(|| format!("{}", args.out.display()))?;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // Before any thread: the namespace and the pinning are the calling thread's, inherited by what it starts.
    webrtc::enter_private_namespace()?;
    let pinned = cps::pinning_possible();
    if pinned {
        webrtc::pin_to(webrtc::CLIENT_CORE)?;
        eprintln!(
            "pinning: media-relay on core {}, the bench's browsers and carriers on core {}",
            webrtc::RELAY_CORE,
            webrtc::CLIENT_CORE
        );
    } else {
        eprintln!("pinning: off (fewer than 2 cores); figures are less comparable");
    }
    watch_interrupts();
    let opts = webrtc::Options {
        runs: args.runs,
        legs: args.legs as usize,
        concurrency: args.concurrency as usize,
        calls: args.calls as usize,
        rate: args.rate,
        media_secs: args.media_secs,
        relay_binary,
    };
    let started = std::time::Instant::now();
    let log = out.with_extension("log");
    let runs = webrtc::run(&opts, pinned, &log)?;
    let summary = webrtc::report::summarize(&runs);
    let json = serde_json::json!({
        "scenario": "webrtc",
        "options": opts,
        "pinning": if pinned {
            serde_json::json!({ "relay_core": webrtc::RELAY_CORE, "client_core": webrtc::CLIENT_CORE })
        } else {
            serde_json::Value::Null
        },
        "cpu": "media-relay utime+stime (/proc/PID/stat) over the phase or window; clients: this process's",
        "wall_secs": started.elapsed().as_secs_f64(),
        "runs": runs,
        "summary": summary,
    });
    write_json(&out, &json)?;
    let svg = out.with_extension("svg");
    webrtc::report::plot(&svg, &runs)?;
    println!("{}", webrtc::report::table(&opts, &runs, &summary, pinned));
    println!("every run's figures: {}; plot: {}; relay log: {}", out.display(), svg.display(), log.display());
    Ok(())
}

fn write_json(out: &Path, json: &serde_json::Value) -> Result<()> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(out, serde_json::to_string_pretty(json)? + "\n")
        .with_context(|| format!("writing {}", out.display()))
}

fn failover_main(args: FailoverArgs) -> Result<()> {
    if !args.local {
        bail!(
            "`failover` needs --local: a fire drill kills or demotes a box of the pair, so the harness builds the \
             two-box topology here and starts our own pair"
        );
    }
    prepare_binaries(args.sbc.as_deref())?;
    let xdp = args.xdp == FailoverXdp::Native;
    if xdp && args.kind == failover::DrillKind::Setup {
        bail!("--xdp native goes with --kind demote or kill (the setup drill measures calls, not media)");
    }
    let opts = failover::Options {
        drills: args.drills,
        kind: args.kind,
        setup_calls: args.setup_calls,
        xdp,
        dead_after: args.dead_after_ms.map(std::time::Duration::from_millis),
    };
    if args.kind == failover::DrillKind::Setup {
        return failover_setup_main(&opts, &args.out);
    }
    let drills = failover::run(&opts)?;
    let s = failover::summarize(&drills);
    write_json(
        &args.out,
        &serde_json::json!({ "scenario": "failover", "mode": "local", "kind": args.kind, "xdp": args.xdp, "drills": drills, "summary": s }),
    )?;
    println!(
        "{} {:?} drills (xdp {:?}): media gap p50 {:.0} ms, max {:.0} ms; takeover p50 {:.0} ms; calls surviving {}/{}; CDRs lost {}, \
         doubled {}{}",
        s.drills, args.kind, args.xdp, s.gap_p50_ms, s.gap_max_ms, s.takeover_p50_ms, s.survived, s.drills, s.cdrs_lost, s.cdrs_doubled,
        s.user_packets_per_flow_max.map(|u| format!("; new active's user space: at most {u:.1} packets per flow")).unwrap_or_default()
    );
    let svg = args.out.with_extension("svg");
    failover::plot(&svg, args.kind, &drills)?;
    println!("every drill: {}; plot: {}", args.out.display(), svg.display());
    Ok(())
}

fn failover_setup_main(opts: &failover::Options, out: &Path) -> Result<()> {
    let drills = failover::setup::run(opts)?;
    let s = failover::setup::summarize(&drills);
    write_json(
        out,
        &serde_json::json!({ "scenario": "failover", "mode": "local", "kind": opts.kind, "drills": drills, "summary": s }),
    )?;
    let per_kind: Vec<String> = s.kinds.iter().map(|k| format!("{} {}/{}", k.kind, k.completed, k.calls)).collect();
    println!(
        "{} setup drills (kill -9 with {} calls being set up each, {} replicated in all): completed {}/{} ({}); \
         takeover p50 {:.0} ms; CDRs lost {}, doubled {}",
        s.drills,
        opts.setup_calls,
        s.replicated,
        s.completed,
        s.calls,
        per_kind.join(", "),
        s.takeover_p50_ms,
        s.cdrs_lost,
        s.cdrs_doubled
    );
    let svg = out.with_extension("svg");
    failover::setup::plot(&svg, &drills)?;
    println!("every drill: {}; plot: {}", out.display(), svg.display());
    Ok(())
}

fn cps_main(args: CpsArgs) -> Result<()> {
    if args.rates.is_empty() || args.rates.contains(&0) || !args.rates.is_sorted_by(|a, b| a < b) {
        bail!("--rates must be positive and strictly ascending, e.g. 100,200,400");
    }
    // The harness's own ceiling is the baseline unless told otherwise.
    let targets = args.target.targets(Some(target::Target::Direct))?;
    if targets.len() == 2 && targets[0] == targets[1] && !targets[0].started_here() {
        bail!("--target and --compare are the same ({}): nothing to compare", targets[0]);
    }
    args.target.prepare(&targets, "cps")?;
    watch_interrupts();
    let labels = target::labels(&targets);
    let media = args.media || targets.iter().any(target::Target::is_kamailio);
    if media {
        eprintln!("media: a local sbc anchors every call's media (its embedded relay, user space)");
    }
    let opts = cps::Options { runs: args.runs, step_secs: args.step_secs, rates: args.rates, targets, labels, media };
    let pinned = cps::pinning_possible();
    let harness = args.target.harness(&opts.targets)?;
    let started = std::time::Instant::now();
    let result = cps::run(&opts, &harness, args.target_pid);
    harness.remove()?;
    let cps::Outcome { ladders, interrupted } = result?;
    if ladders.is_empty() {
        bail!("interrupted before a step was measured");
    }
    let summary = cps::summarize(&opts.rates, &opts.labels, &ladders);
    let json = serde_json::json!({
        "scenario": "cps",
        "options": opts,
        "here": args.target.here(),
        "pinning": if pinned {
            serde_json::json!({ "sbc_core": cps::SBC_CORE, "sipp_core": cps::SIPP_CORE })
        } else {
            serde_json::Value::Null
        },
        "criterion": { "max_failed_pct": cps::MAX_FAILED_PCT, "max_pdd_p99_ms": cps::MAX_P99_MS },
        "wall_secs": started.elapsed().as_secs_f64(),
        "interrupted": interrupted,
        "ladders": ladders,
        "summary": summary,
    });
    write_json(&args.out, &json)?;
    let svg = args.out.with_extension("svg");
    cps::plot(&svg, &opts, &ladders)?;
    println!("{}", cps::table(&opts, &summary, pinned));
    if interrupted {
        println!("INTERRUPTED: the figures above are of the steps measured before Ctrl-C/SIGTERM");
    }
    println!("every step's figures: {}; plot: {}", args.out.display(), svg.display());
    Ok(())
}

fn ng_main(args: NgArgs) -> Result<()> {
    if !args.no_cps && (args.rates.is_empty() || args.rates.contains(&0) || !args.rates.is_sorted_by(|a, b| a < b)) {
        bail!("--rates must be positive and strictly ascending, e.g. 200,400,800");
    }
    if args.targets.is_empty() || args.targets.iter().any(|t| !ng::TARGETS.contains(t)) {
        bail!("--targets takes kamailio-rtpengine, kamailio-ng and kamailio-ng-xdp");
    }
    let mut targets = args.targets.clone();
    targets.dedup();
    target::require_root("`ng`")?;
    prepare_binaries(None)?;
    let rtpfleet = concurrent::prepare_rtpfleet()?;
    watch_interrupts();
    let opts = ng::Options {
        labels: target::labels(&targets),
        targets,
        runs: args.runs,
        step_secs: args.step_secs,
        rates: if args.no_cps { Vec::new() } else { args.rates.clone() },
        calls: args.calls,
        call_rate: args.call_rate,
        pps: args.pps,
        payload: args.payload,
        media_secs: args.media_secs,
        idle_secs: args.idle_secs,
        pinned: cps::pinning_possible(),
        rtpfleet,
    };
    let here = target::Here { uac_ip: "127.0.0.1".parse()?, uac_port: 5061, uas: "127.0.0.1:5070".parse()? };
    let harness = target::Harness::new(&opts.targets, here, target::Guard { allow_remote: false })?;
    let started = std::time::Instant::now();
    let result = ng::run(&opts, &harness);
    harness.remove()?;
    let outcome = result?;
    let summary = ng::report::summarize(&opts.labels, &outcome.ladders, &outcome.media);
    let json = serde_json::json!({
        "scenario": "ng",
        "options": opts,
        "pinning": if opts.pinned {
            serde_json::json!({ "kamailio_and_relay_core": cps::SBC_CORE, "sipp_and_rtpfleet_core": cps::SIPP_CORE })
        } else {
            serde_json::Value::Null
        },
        "criterion": {
            "cps": { "max_failed_pct": cps::MAX_FAILED_PCT, "max_pdd_p99_ms": cps::MAX_P99_MS },
            "media": { "max_loss_pct": ng::media::MAX_LOSS_PCT, "max_send_lag_ms": ng::media::MAX_SEND_LAG_MS },
        },
        "wall_secs": started.elapsed().as_secs_f64(),
        "interrupted": outcome.interrupted,
        "ladders": outcome.ladders,
        "media": outcome.media,
        "summary": summary,
    });
    write_json(&args.out, &json)?;
    let svg = args.out.with_extension("svg");
    ng::report::plot(&svg, &opts, &outcome.ladders, &outcome.media)?;
    println!("{}", ng::report::table(&opts, &summary));
    if outcome.interrupted {
        println!("INTERRUPTED: the figures above are of what was measured before Ctrl-C/SIGTERM");
    }
    println!("every figure: {}; plot: {}", args.out.display(), svg.display());
    Ok(())
}

fn concurrent_main(args: ConcurrentArgs) -> Result<()> {
    let targets = args.target.targets(None)?;
    args.target.prepare(&targets, "concurrent")?;
    let rtpfleet = concurrent::prepare_rtpfleet()?;
    if targets.iter().any(target::Target::is_local) {
        // A local sbc holds four relay sockets per call (RTP and RTCP on each leg) and inherits this limit.
        raise_fd_limit(args.calls)?;
    }
    watch_interrupts();
    let opts = concurrent::Options {
        labels: target::labels(&targets),
        targets,
        calls: args.calls,
        rate: args.rate,
        hold_secs: args.hold_secs,
        pps: args.pps,
        payload: args.payload,
        runs: args.runs,
        pinned: cps::pinning_possible(),
        rtpfleet,
    };
    let harness = args.target.harness(&opts.targets)?;
    let started = std::time::Instant::now();
    let result = concurrent::run(&harness, &opts);
    harness.remove()?;
    let measurements = result?;
    let summary = concurrent::summarize(&opts.labels, &measurements);
    let json = serde_json::json!({
        "scenario": "concurrent",
        "options": opts,
        "here": args.target.here(),
        "pinning": if opts.pinned {
            serde_json::json!({ "sbc_core": concurrent::SBC_CORE, "sipp_and_rtpfleet_core": concurrent::SIPP_CORE })
        } else {
            serde_json::Value::Null
        },
        "criterion": { "max_failed_calls": 0, "max_loss_pct": concurrent::MAX_LOSS_PCT },
        "hold_per_call_secs": opts.hold().as_secs(),
        "wall_secs": started.elapsed().as_secs_f64(),
        "measurements": measurements,
        "summary": summary,
    });
    write_json(&args.out, &json)?;
    let svg = args.out.with_extension("svg");
    concurrent::plot(&svg, &opts, &measurements, &summary)?;
    println!("{}", concurrent::table(&opts, &summary));
    println!("every run's figures: {}; plot: {}", args.out.display(), svg.display());
    Ok(())
}

/// Open files a local `sbc` needs besides its relay sockets (SIP sockets, timers, the runtime, logs).
const SBC_FILES_BESIDES_CALLS: u64 = 1024;

/// Raises the open-file limit of this process, and so of the `sbc` it starts, to what `calls` calls with media
/// anchored need: four relay sockets each. Raising the hard limit needs CAP_SYS_RESOURCE; without it the error
/// says how many calls fit.
fn raise_fd_limit(calls: u32) -> Result<()> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let want = u64::from(calls) * 4 + SBC_FILES_BESIDES_CALLS;
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("getrlimit(RLIMIT_NOFILE)")?;
    if soft >= want {
        return Ok(());
    }
    setrlimit(Resource::RLIMIT_NOFILE, want, hard.max(want)).map_err(|e| {
        anyhow::anyhow!(
            "--calls {calls} needs {want} open files in the sbc (four relay sockets per call); the limit is {soft} \
             (hard {hard}) and could not be raised ({e}; raising the hard limit needs root with CAP_SYS_RESOURCE): \
             at most {} calls here",
            hard.saturating_sub(SBC_FILES_BESIDES_CALLS) / 4
        )
    })
}

/// SIGINT/SIGTERM set [`cps::STOP`]: the run stops after the current step and tears everything down (a SIGINT
/// from the terminal also reaches SIPp and the SBC, so the current step ends at once).
fn watch_interrupts() {
    std::thread::spawn(|| {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            return;
        };
        rt.block_on(async {
            let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            cps::STOP.store(true, Ordering::SeqCst);
            eprintln!("interrupted: stopping, writing what was measured and tearing down");
        });
    });
}

/// Builds what the run needs ([`binaries::build`]) and returns the `sbc` binary to measure: `sbc` (the release
/// build unless given). Points `SBC_BINARY` at it.
fn prepare_binaries(sbc: Option<&Path>) -> Result<PathBuf> {
    binaries::build()?;
    let binary = match sbc {
        Some(path) => std::fs::canonicalize(path).with_context(|| format!("sbc binary {}", path.display()))?,
        None => binaries::binary(binaries::release_dir(), "sbc")?,
    };
    // Edition 2021: setting the environment is safe; no other thread runs yet.
    std::env::set_var("SBC_BINARY", &binary);
    Ok(binary)
}

fn soak_main(args: SoakArgs) -> Result<()> {
    let targets = args.target.targets(None)?;
    let [target] = targets.as_slice() else {
        bail!("`soak` measures one target: drop --compare (`cps` compares two)");
    };
    let opts = soak::Options::new(
        target,
        args.rate,
        args.hold_secs,
        args.duration,
        args.interval.unwrap_or(args.duration.min(std::time::Duration::from_secs(60))),
        args.metrics_listen,
        args.metrics_file.clone(),
    )?;
    args.target.prepare(&targets, "soak")?;
    watch_interrupts();
    let harness = args.target.harness(&targets)?;
    let report = soak::run(&harness, target, &opts);
    let removed = harness.remove();
    let report = report?;
    removed?;
    write_json(&args.out, &serde_json::to_value(&report)?)?;
    let svg = args.out.with_extension("svg");
    soak::plot(&svg, &report)?;
    println!("{}", soak::table(&report));
    println!("every interval: {}; plot: {}", args.out.display(), svg.display());
    if let Some(dir) = &report.sipp_files {
        println!("SIPp's files (stat, response times, errors): {}", dir.display());
    }
    if !report.passed {
        // Everything is torn down and written: a plain message and exit status 1 for cron, not an error trace.
        eprintln!("soak FAILED: {}", report.why.join("; "));
        std::process::exit(1);
    }
    Ok(())
}

fn overload_main(args: OverloadArgs) -> Result<()> {
    if args.factors.is_empty()
        || args.factors.iter().any(|f| !f.is_finite() || *f <= 0.0 || *f > 20.0)
        || !args.factors.is_sorted_by(|a, b| a < b)
    {
        bail!("--factors must be positive (at most 20), strictly ascending, e.g. 0.5,1,1.5,2,3");
    }
    if !(0.0..=20.0).contains(&args.recovery_factor) {
        bail!("--recovery-factor must be between 0 (no recovery step) and 20");
    }
    if args.ceiling.is_none()
        && (args.ceiling_rates.is_empty()
            || args.ceiling_rates.contains(&0)
            || !args.ceiling_rates.is_sorted_by(|a, b| a < b))
    {
        bail!("--ceiling-rates must be positive and strictly ascending, e.g. 500,1000,1500");
    }
    let targets = args.target.targets(None)?;
    if targets.contains(&target::Target::Direct) {
        bail!("`overload` measures an SBC's overload control; `direct` (SIPp to SIPp) has none");
    }
    args.target.prepare(&targets, "overload")?;
    watch_interrupts();
    let opts = overload::Options {
        runs: args.runs,
        step_secs: args.step_secs,
        factors: args.factors,
        recovery_factor: Some(args.recovery_factor).filter(|&f| f > 0.0),
        ceiling_given: args.ceiling,
        ceiling_rates: args.ceiling_rates,
        ceiling_step_secs: args.ceiling_step_secs,
        labels: target::labels(&targets),
        targets,
    };
    let pinned = cps::pinning_possible();
    let harness = args.target.harness(&opts.targets)?;
    let started = std::time::Instant::now();
    let result = overload::run(&opts, &harness);
    harness.remove()?;
    let outcome = result?;
    if outcome.series.is_empty() {
        bail!("interrupted before a step was measured");
    }
    let summary = overload::summarize(&opts, outcome.ceiling, &outcome.series);
    let json = serde_json::json!({
        "scenario": "overload",
        "options": opts,
        "here": args.target.here(),
        "pinning": if pinned {
            serde_json::json!({ "sbc_core": cps::SBC_CORE, "sipp_core": cps::SIPP_CORE })
        } else {
            serde_json::Value::Null
        },
        "targets": {
            "goodput_share_at_top_factor_min": overload::TARGET_GOODPUT_SHARE,
            "pdd_p99_ms_max": overload::TARGET_PDD_P99_MS,
        },
        "wall_secs": started.elapsed().as_secs_f64(),
        "interrupted": outcome.interrupted,
        "outcome": outcome,
        "summary": summary,
    });
    write_json(&args.out, &json)?;
    let svg = args.out.with_extension("svg");
    overload::plot(&svg, &opts, &summary)?;
    println!("{}", overload::table(&opts, &outcome, &summary));
    if outcome.interrupted {
        println!("INTERRUPTED: the figures above are of the steps measured before Ctrl-C/SIGTERM");
    }
    println!("every step's figures: {}; plot: {}", args.out.display(), svg.display());
    Ok(())
}
