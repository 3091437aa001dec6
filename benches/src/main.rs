//! `sbc-bench`: the load-test harness. Scenarios:
//!
//! - `cps --local`: the SBC's call-rate ceiling and INVITE→200 latency, next to SIPp UAC→UAS direct (see
//!   benches/README.md and [`cps`]).
//! - `media --local`: the media relay's packet-rate ceiling under 0.1 % loss, CPU per packet and latency, user
//!   space vs its XDP fast path, next to a bare XDP redirect and plain kernel IP forwarding (see
//!   benches/README.md and [`media`]).
//!
//! The criterion micro-benches live under benches/benches (`cargo bench -p sbc-bench`).

mod blast;
mod cps;
mod failover;
mod media;
mod stats;
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
    /// Fire drills on a hot-standby pair: media gap, takeover time, calls surviving, CDRs lost or doubled.
    Failover(FailoverArgs),
    /// Packet-rate ceiling (loss < 0.1 %), CPU per packet and latency of media-relay (user space and XDP), a bare
    /// XDP redirect and kernel IP forwarding.
    Media(MediaArgs),
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
    /// Internal: run in A by `media`, the sendmmsg RTP sender (`--generator blast`).
    #[command(hide = true)]
    Blast(blast::BlastArgs),
}

#[derive(Debug, clap::Args)]
struct MediaArgs {
    /// Build the network-namespace topology on this machine and start our own `media-relay` in it (needs root).
    /// Required: remote targets come with the load-test harness issue.
    #[arg(long)]
    local: bool,
    /// Complete runs; the summary takes the median over them.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    runs: u32,
    /// Seconds of traffic per step (each step sends rate x step-secs packets).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=30))]
    step_secs: u32,
    /// The rate ladder in packets per second (all streams together), comma-separated, ascending.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10000,20000,40000,60000,80000,100000,120000,140000,160000,200000"
    )]
    rates: Vec<u32>,
    /// Parallel streams (one rtpgen sender and sink each, one relayed stream each); the rate is split evenly.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    streams: u16,
    /// RTP payload bytes per packet (160: G.711, 20 ms).
    #[arg(long, default_value_t = 160, value_parser = clap::value_parser!(u16).range(16..=1400))]
    payload: u16,
    /// The paths to measure, comma-separated, in this order in every run: relay (user space), xdp (media-relay
    /// with its XDP fast path), bare (a bare XDP redirect a0 -> b0, the ceiling), kernel (IP forwarding).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "relay,xdp,bare,kernel")]
    paths: Vec<media::Target>,
    /// The sender: blast (sbc-bench's own sendmmsg sender, batches of 32, no per-stream limit) or rtpgen (one
    /// send and sleep per packet, at most 100 000 pps per stream). The sinks are rtpgen either way.
    #[arg(long, value_enum, default_value = "blast")]
    generator: media::Generator,
    /// Where the JSON with every step's figures goes.
    #[arg(long, default_value = "target/bench/media.json")]
    out: PathBuf,
    /// The `media-relay` binary to measure; default: `cargo build --release -p media-relay`.
    #[arg(long)]
    relay: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct FailoverArgs {
    /// Build the two-box netns topology on this machine and start our own pair in it (needs root). Required.
    #[arg(long)]
    local: bool,
    /// How many drills (one call with RTP both ways each).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
    drills: u32,
    /// `demote` (POST /ha/demote on the active) or `kill` (kill -9 of the active, which restarts as standby).
    #[arg(long, value_enum, default_value = "demote")]
    kind: failover::DrillKind,
    /// Where the JSON goes.
    #[arg(long, default_value = "target/bench/failover.json")]
    out: PathBuf,
    /// The `sbc` binary; default: `cargo build --release -p sbc`.
    #[arg(long)]
    sbc: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct CpsArgs {
    /// Build the network-namespace topology on this machine and start our own `sbc` in it (needs root). Required:
    /// remote targets (an SBC on another host) come with the load-test harness issue.
    #[arg(long)]
    local: bool,
    /// Complete runs; the summary takes the median over them.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    runs: u32,
    /// Seconds of traffic per step (each step places rate x step-secs calls).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=60))]
    step_secs: u32,
    /// The rate ladder in calls per second, comma-separated, ascending.
    #[arg(long, value_delimiter = ',', default_value = "100,500,1000,1500,2000,2500,3000,3500,4000,4500,5000,6000")]
    rates: Vec<u32>,
    /// Where the JSON with every step's figures goes.
    #[arg(long, default_value = "target/bench/cps.json")]
    out: PathBuf,
    /// The `sbc` binary to measure; default: `cargo build --release -p sbc` and target/release/sbc.
    #[arg(long)]
    sbc: Option<PathBuf>,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Scenario::Cps(args) => cps_main(args),
        Scenario::Failover(args) => failover_main(args),
        Scenario::Media(args) => media_main(args),
        Scenario::ControlProxy { addr } => media::control_proxy(addr),
        Scenario::XdpBare { ingress, egress } => xdp::bare_main(&ingress, &egress),
        Scenario::XdpTestRun => xdp::test_run_main(),
        Scenario::Blast(args) => blast::main(args),
    }
}

fn media_main(args: MediaArgs) -> Result<()> {
    if !args.local {
        bail!(
            "`media` needs --local for now (build the netns topology here and start our own media-relay); remote \
             targets come with the load-test harness issue"
        );
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
        paths: {
            let mut p = args.paths;
            p.dedup();
            p
        },
    };
    let pinned = cps::pinning_possible();
    let started = std::time::Instant::now();
    let (ladders, test_runs) = media::run(&opts)?;
    let summary = media::summarize(&opts.paths, &opts.rates, &ladders, &test_runs);
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
        },
        "targets": {
            "xdp_vs_relay_pkts_per_cpu_s_min": media::TARGET_CPU_RATIO,
            "xdp_vs_bare_ceiling_min": media::TARGET_CEILING_SHARE,
        },
        "test_runs": test_runs,
        "wall_secs": started.elapsed().as_secs_f64(),
        "ladders": ladders,
        "summary": summary,
    });
    write_json(&args.out, &json)?;
    println!("{}", media::table(&opts, &summary, pinned));
    println!("every step's figures: {}", args.out.display());
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
        bail!("`failover` needs --local (it builds the two-box topology here and starts our own pair)");
    }
    prepare_binaries(args.sbc.as_deref())?;
    let opts = failover::Options { drills: args.drills, kind: args.kind };
    let drills = failover::run(&opts)?;
    let s = failover::summarize(&drills);
    write_json(
        &args.out,
        &serde_json::json!({ "scenario": "failover", "mode": "local", "kind": args.kind, "drills": drills, "summary": s }),
    )?;
    println!(
        "{} {:?} drills: media gap p50 {:.0} ms, max {:.0} ms; takeover p50 {:.0} ms; calls surviving {}/{}; CDRs lost {}, \
         doubled {}",
        s.drills, args.kind, s.gap_p50_ms, s.gap_max_ms, s.takeover_p50_ms, s.survived, s.drills, s.cdrs_lost, s.cdrs_doubled
    );
    println!("every drill: {}", args.out.display());
    Ok(())
}

fn cps_main(args: CpsArgs) -> Result<()> {
    if !args.local {
        bail!(
            "`cps` needs --local for now (build the netns topology here and start our own sbc); remote targets come \
             with the load-test harness issue"
        );
    }
    if args.rates.is_empty() || args.rates.contains(&0) || !args.rates.is_sorted_by(|a, b| a < b) {
        bail!("--rates must be positive and strictly ascending, e.g. 100,200,400");
    }
    let sbc_binary = prepare_binaries(args.sbc.as_deref())?;
    watch_interrupts();
    let opts = cps::Options { runs: args.runs, step_secs: args.step_secs, rates: args.rates, sbc_binary };
    let pinned = cps::pinning_possible();
    let ladders = cps::run(&opts)?;
    let summary = cps::summarize(&opts.rates, &ladders);
    let json = serde_json::json!({
        "scenario": "cps",
        "mode": "local",
        "options": opts,
        "pinning": if pinned {
            serde_json::json!({ "sbc_core": cps::SBC_CORE, "sipp_core": cps::SIPP_CORE })
        } else {
            serde_json::Value::Null
        },
        "criterion": { "max_failed_pct": cps::MAX_FAILED_PCT, "max_p99_ms": cps::MAX_P99_MS },
        "ladders": ladders,
        "summary": summary,
    });
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&json)? + "\n")
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("{}", cps::table(&opts, &summary, pinned));
    println!("every step's figures: {}", args.out.display());
    Ok(())
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
            eprintln!("interrupted: stopping after the current step and tearing down");
        });
    });
}

/// Builds what the run needs and returns the `sbc` binary to measure: the `netprobe` helper in this binary's
/// profile (the SBC helper polls `/health` with it inside the namespace; it must sit next to this binary) and,
/// unless `sbc` is given, `sbc` in release mode. Points `SBC_BINARY` at the binary.
fn prepare_binaries(sbc: Option<&Path>) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("current_exe")?;
    let release = exe.parent().and_then(Path::file_name).is_some_and(|n| n == "release");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut builds = vec![vec!["build", "-p", "tests", "--bin", "netprobe"]];
    if release {
        builds[0].push("--release");
    }
    if sbc.is_none() {
        if release {
            builds[0].extend(["-p", "sbc", "--bin", "sbc"]);
        } else {
            builds.push(vec!["build", "--release", "-p", "sbc", "--bin", "sbc"]);
        }
    }
    for args in builds {
        eprintln!("building: cargo {}", args.join(" "));
        let status =
            Command::new(&cargo).args(&args).current_dir(tests::repo_root()).status().context("running cargo build")?;
        if !status.success() {
            bail!("`cargo {}` failed", args.join(" "));
        }
    }
    let binary = match sbc {
        Some(path) => path.to_owned(),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| tests::repo_root().join("target"))
            .join("release")
            .join("sbc"),
    };
    let binary = std::fs::canonicalize(&binary).with_context(|| format!("sbc binary {}", binary.display()))?;
    // Edition 2021: setting the environment is safe; no other thread runs yet.
    std::env::set_var("SBC_BINARY", &binary);
    Ok(binary)
}
