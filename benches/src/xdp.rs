//! The XDP pieces of `sbc-bench media`: the bare-redirect ceiling program (hidden subcommand `xdp-bare`, run in the
//! SBC namespace) and the program's own time per packet from `BPF_PROG_TEST_RUN` (hidden subcommand
//! `xdp-test-run`, run in a scratch namespace set up like media-relay/daemon/tests/xdp_packets.rs does).

use anyhow::{bail, Context, Result};
use media_relay::xdp::{FlowKey, FlowTarget, PassProgram, Xdp};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

const XDP_PASS: u32 = 2;
const XDP_REDIRECT: u32 = 4;
/// Single hit runs averaged (the kernel reports each run's time; their mean is the hit figure).
const SINGLE_RUNS: u32 = 100_000;
/// Repetitions of the looped hit frame (TTL 255, two flows rewriting into each other; TTL goes down per pass).
const LOOP_REPEAT: u32 = 250;
/// Repetitions of the miss frame (unchanged by the program).
const MISS_REPEAT: u32 = 1_000_000;

const MAC_A0: [u8; 6] = [0x02, 0, 0, 0, 0x0a, 0x00];
const MAC_A1: [u8; 6] = [0x02, 0, 0, 0, 0x0a, 0x01];
const MAC_B0: [u8; 6] = [0x02, 0, 0, 0, 0x0b, 0x00];
const MAC_B1: [u8; 6] = [0x02, 0, 0, 0, 0x0b, 0x01];
const MAC_PA: [u8; 6] = [0x02, 0, 0, 0, 0x0a, 0x02];
const MAC_PB: [u8; 6] = [0x02, 0, 0, 0, 0x0b, 0x02];

/// `sbc-bench xdp-bare INGRESS EGRESS`: attaches the bare redirect (every frame from INGRESS to EGRESS, no lookup
/// or rewrite) in native mode, prints `attached` and waits to be killed (the link goes with the process).
pub fn bare_main(ingress: &str, egress: &str) -> Result<()> {
    let _prog = PassProgram::bare_redirect(ingress, egress, false)
        .with_context(|| format!("attaching the bare redirect {ingress} -> {egress}"))?;
    println!("attached");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// What `xdp-test-run` measured, ns per packet.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TestRun {
    /// IPv4 hit (parse, lookup, cached next hop, rewrite, redirect): mean of [`SINGLE_RUNS`] single runs.
    pub hit_single_ns: f64,
    /// IPv4 hit, repeat = [`LOOP_REPEAT`] on a frame two flows rewrite into each other.
    pub hit_repeat_ns: f64,
    /// Miss (no flow: XDP_PASS), repeat = [`MISS_REPEAT`].
    pub miss_ns: f64,
}

/// `sbc-bench xdp-test-run`, inside a namespace prepared by [`test_run`]: loads the relay program unattached,
/// installs flows and prints one JSON line ([`TestRun`]).
pub fn test_run_main() -> Result<()> {
    let mut xdp = Xdp::load_unattached(&["a0".to_owned(), "b0".to_owned()]).context("loading relay_xdp")?;
    let sa = |s: &str| -> SocketAddr { s.parse().expect("literal address") };
    // As the relay installs plain RTP flows: strict, and RTCP passed up for its SDES rewrite.
    let flow = |key: &str, expect: &str, from: &str, to: &str| {
        (
            FlowKey { local: sa(key) },
            FlowTarget { expect: sa(expect), from: sa(from), to: sa(to), strict: true, pass_rtcp: true },
        )
    };
    for (k, t) in [
        // The relayed stream as in the bench: peer A -> relay a-side ==> relay b-side -> peer B.
        flow("198.18.0.1:40000", "198.18.0.2:5000", "198.18.1.1:40002", "198.18.1.2:6000"),
        // Two flows keyed on the peers' addresses that rewrite into each other (for repeat on a hit).
        flow("198.18.0.2:5000", "198.18.1.1:40002", "198.18.0.1:40000", "198.18.1.2:6000"),
        flow("198.18.1.2:6000", "198.18.0.1:40000", "198.18.1.1:40002", "198.18.0.2:5000"),
    ] {
        xdp.install(k, t).context("installing a flow")?;
    }
    // An ingress that is neither egress: every hit redirects.
    let ingress: u32 = std::fs::read_to_string("/sys/class/net/b1/ifindex")?.trim().parse()?;
    let hit = frame(sa("198.18.0.2:5000"), sa("198.18.0.1:40000"), 64);
    let mut total = Duration::ZERO;
    for _ in 0..SINGLE_RUNS {
        let out = xdp.test_run(&hit, ingress, 1)?;
        if out.action != XDP_REDIRECT {
            bail!("the hit frame was not redirected (action {})", out.action);
        }
        total += out.duration;
    }
    let looped = xdp.test_run(&frame(sa("198.18.1.1:40002"), sa("198.18.0.2:5000"), 255), ingress, LOOP_REPEAT)?;
    if looped.action != XDP_REDIRECT {
        bail!("the looped hit frame was not redirected (action {})", looped.action);
    }
    let miss = xdp.test_run(&frame(sa("198.18.0.2:5000"), sa("198.18.0.1:1"), 64), ingress, MISS_REPEAT)?;
    if miss.action != XDP_PASS {
        bail!("the miss frame was not passed (action {})", miss.action);
    }
    let out = TestRun {
        hit_single_ns: total.as_nanos() as f64 / f64::from(SINGLE_RUNS),
        hit_repeat_ns: looped.duration.as_nanos() as f64,
        miss_ns: miss.duration.as_nanos() as f64,
    };
    println!("{}", serde_json::to_string(&out)?);
    Ok(())
}

/// Builds a scratch namespace `<tag>-xdptr` like the packet tests' "relay" namespace (a0/a1, b0/b1 veths,
/// 198.18.0.1/24 on a0, 198.18.1.1/24 on b0, static neighbours, forwarding on), runs `sbc-bench xdp-test-run`
/// in it and removes it again.
pub fn test_run(tag: &str) -> Result<TestRun> {
    let out = in_scratch_ns(&format!("{tag}-xdptr"), &["xdp-test-run"]).context("running xdp-test-run")?;
    let line = out.lines().rev().find(|l| l.starts_with('{')).context("no figures from xdp-test-run")?;
    serde_json::from_str(line).context("parsing xdp-test-run's figures")
}

/// Builds the scratch namespace `ns` (see [`test_run`]), runs this binary with `args` in it, returns its stdout
/// and removes the namespace again (also on failure).
fn in_scratch_ns(ns: &str, args: &[&str]) -> Result<String> {
    let ns = ns.to_owned();
    struct Guard(String);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    ::tests::netns::ip(&["netns", "add", &ns])?;
    let _guard = Guard(ns.clone());
    let mac = |m: [u8; 6]| m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
    let cmds = [
        "link set lo up".to_owned(),
        "link add a0 type veth peer name a1".to_owned(),
        "link add b0 type veth peer name b1".to_owned(),
        format!("link set a0 address {} up", mac(MAC_A0)),
        format!("link set a1 address {} up", mac(MAC_A1)),
        format!("link set b0 address {} up", mac(MAC_B0)),
        format!("link set b1 address {} up", mac(MAC_B1)),
        "addr add 198.18.0.1/24 dev a0".to_owned(),
        "addr add 198.18.1.1/24 dev b0".to_owned(),
        format!("neigh add 198.18.0.2 lladdr {} dev a0 nud permanent", mac(MAC_PA)),
        format!("neigh add 198.18.1.2 lladdr {} dev b0 nud permanent", mac(MAC_PB)),
    ];
    for c in &cmds {
        let mut args = vec!["-n", ns.as_str()];
        args.extend(c.split_whitespace());
        ::tests::netns::ip(&args)?;
    }
    ::tests::netns::run(::tests::netns::command(Some(&ns), "sysctl").args(["-qw", "net.ipv4.ip_forward=1"]))?;
    let exe = std::env::current_exe().context("current_exe")?;
    ::tests::netns::run(::tests::netns::command(Some(&ns), exe).args(args))
}

/// RFC 1071 one's-complement sum, folded, not inverted.
fn sum16(chunks: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for c in chunks {
        for pair in c.chunks(2) {
            sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// An Ethernet/IPv4/UDP frame (peer A's MAC to a0's) with an RTP-sized payload (RTP v2, PT 0) and full checksums.
fn frame(src: SocketAddr, dst: SocketAddr, ttl: u8) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) else { unreachable!("IPv4 only") };
    // An RTP header's first bytes (version 2, payload type 0), so the program's RTCP test sees what it sees live.
    let mut payload: Vec<u8> = (0..172u8).collect();
    payload[..2].copy_from_slice(&[0x80, 0x00]);
    let ulen = (8 + payload.len()) as u16;
    let mut udp = Vec::new();
    udp.extend_from_slice(&src.port().to_be_bytes());
    udp.extend_from_slice(&dst.port().to_be_bytes());
    udp.extend_from_slice(&ulen.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&payload);
    let pseudo: Vec<u8> = [&s.octets()[..], &d.octets()[..], &[0, 17], &ulen.to_be_bytes()[..]].concat();
    let c = !sum16(&[&pseudo, &udp]);
    udp[6..8].copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
    let mut ip = vec![0x45, 0xb8];
    ip.extend_from_slice(&(20 + udp.len() as u16).to_be_bytes());
    ip.extend_from_slice(&[0x12, 0x34, 0, 0, ttl, 17, 0, 0]);
    ip.extend_from_slice(&s.octets());
    ip.extend_from_slice(&d.octets());
    let c = !sum16(&[&ip]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut f = Vec::new();
    f.extend_from_slice(&MAC_A0);
    f.extend_from_slice(&MAC_PA);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&udp);
    f
}

/// The sysctl that makes the kernel keep per-program run time and run count (`run_time_ns`, `run_cnt` in the
/// fdinfo of a program's fd). Off by default: with it on, every run of every BPF program pays two clock reads and
/// two per-CPU additions, and its `run_time_ns` includes them.
const BPF_STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";
/// `BPF_PROG_TYPE_XDP` (the `prog_type:` of an XDP program's fdinfo).
const BPF_PROG_TYPE_XDP: u32 = 6;

/// `kernel.bpf_stats_enabled=1` for the guard's life; the previous value is written back on drop (also on error,
/// Ctrl-C and panic unwinding). The sysctl is global, not per namespace.
#[derive(Debug)]
pub struct BpfStats {
    previous: String,
}

impl BpfStats {
    /// Remembers the current value and sets it to 1.
    pub fn enable() -> Result<Self> {
        let previous = std::fs::read_to_string(BPF_STATS_SYSCTL)
            .with_context(|| format!("reading {BPF_STATS_SYSCTL} (kernel without BPF run-time statistics?)"))?
            .trim()
            .to_owned();
        std::fs::write(BPF_STATS_SYSCTL, "1").with_context(|| format!("writing 1 to {BPF_STATS_SYSCTL}"))?;
        Ok(Self { previous })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(BPF_STATS_SYSCTL, &self.previous) {
            eprintln!("could not restore {BPF_STATS_SYSCTL} to {}: {e}", self.previous);
        }
    }
}

/// The kernel's run statistics of the XDP programs a process holds, summed over the programs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProgStats {
    /// Nanoseconds spent in the programs (with `bpf_stats_enabled`), over all CPUs.
    pub run_time_ns: u64,
    /// Program runs: every packet the programs saw, whatever their verdict.
    pub run_cnt: u64,
    /// Distinct programs found.
    pub programs: usize,
}

/// The run statistics of the XDP programs whose fds process `pid` holds (from /proc/PID/fdinfo; a program held
/// through several fds counts once, by `prog_id`). `None` when it holds none (or /proc cannot be read).
pub fn prog_stats(pid: u32) -> Option<ProgStats> {
    let mut seen = std::collections::HashSet::new();
    let mut total = ProgStats::default();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        let Ok(info) = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", entry.file_name().to_string_lossy()))
        else {
            continue;
        };
        let Some(p) = parse_prog_fdinfo(&info) else { continue };
        if p.prog_type != BPF_PROG_TYPE_XDP || !seen.insert(p.prog_id) {
            continue;
        }
        total.run_time_ns += p.run_time_ns;
        total.run_cnt += p.run_cnt;
        total.programs += 1;
    }
    (total.programs > 0).then_some(total)
}

/// The fields of a BPF program's fdinfo that [`prog_stats`] uses.
#[derive(Debug, PartialEq, Eq)]
struct ProgFdinfo {
    prog_type: u32,
    /// `None` on kernels without `prog_id:` (then programs cannot be told apart and each fd counts).
    prog_id: Option<u32>,
    run_time_ns: u64,
    run_cnt: u64,
}

/// A BPF program's fdinfo (`prog_type:` and `run_time_ns:` present), else `None` (other fds, links, maps).
fn parse_prog_fdinfo(info: &str) -> Option<ProgFdinfo> {
    let field =
        |name: &str| info.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse::<u64>().ok());
    Some(ProgFdinfo {
        prog_type: u32::try_from(field("prog_type")?).ok()?,
        prog_id: field("prog_id").and_then(|v| u32::try_from(v).ok()),
        run_time_ns: field("run_time_ns")?,
        run_cnt: field("run_cnt").unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo_parsing() {
        let prog = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t2052\nprog_type:\t6\nprog_jited:\t1\n\
                    prog_tag:\t3b185187f1855c4c\nmemlock:\t4096\nprog_id:\t42\nrun_time_ns:\t123456\nrun_cnt:\t789\n\
                    recursion_misses:\t0\nverified_insns:\t300\n";
        assert_eq!(
            parse_prog_fdinfo(prog),
            Some(ProgFdinfo { prog_type: 6, prog_id: Some(42), run_time_ns: 123456, run_cnt: 789 })
        );
        let link =
            "pos:\t0\nflags:\t02000000\nlink_type:\txdp\nlink_id:\t3\nprog_tag:\t3b185187f1855c4c\nprog_id:\t42\n";
        assert_eq!(parse_prog_fdinfo(link), None);
        let map = "pos:\t0\nflags:\t02000002\nmap_type:\t1\nkey_size:\t8\nvalue_size:\t8\nmax_entries:\t1\n";
        assert_eq!(parse_prog_fdinfo(map), None);
    }
}

/// `sbc-bench xdp-cost`: what one hit costs in `BPF_PROG_TEST_RUN`, ours next to the reference relay and the empty
/// program, in one run.
#[derive(Debug, Clone, clap::Args)]
pub struct CostArgs {
    /// Rounds; the figures are their medians.
    #[arg(long, default_value_t = 7)]
    pub rounds: u32,
    /// Test runs per program per round, each of `--repeat` repetitions on a fresh copy of the hit frame (each
    /// takes some 20 ms of wall time, not measured: the kernel switches XDP dispatch for a run with repeat).
    #[arg(long, default_value_t = 200)]
    pub calls: u32,
    /// Repetitions per test run (at most 250: relay_xdp takes one off the TTL of 255 per pass, as a router does,
    /// and passes the frame once it reaches 1).
    #[arg(long, default_value_t = LOOP_REPEAT)]
    pub repeat: u32,
    /// Where the JSON with every round's figures goes.
    #[arg(long, default_value = "target/bench/xdp-cost.json")]
    pub out: std::path::PathBuf,
}

/// One round's ns per run of each program (the kernel's mean over `calls` x `repeat` runs).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct CostRound {
    pub empty_ns: f64,
    pub reference_ns: f64,
    pub ours_ns: f64,
}

/// `sbc-bench xdp-cost`: builds the scratch namespace, runs `xdp-cost-run` in it, prints the table and writes the
/// JSON.
pub fn cost_main(args: &CostArgs) -> Result<()> {
    if args.rounds == 0 || args.calls == 0 || args.repeat == 0 || args.repeat > LOOP_REPEAT {
        bail!("--rounds and --calls must be positive, --repeat within 1..={LOOP_REPEAT}");
    }
    let (rounds, calls, repeat) = (args.rounds.to_string(), args.calls.to_string(), args.repeat.to_string());
    let ns = format!("xc{}-xdptr", std::process::id());
    let out = in_scratch_ns(&ns, &["xdp-cost-run", &rounds, &calls, &repeat]).context("running xdp-cost-run")?;
    let rounds: Vec<CostRound> = out
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("parsing xdp-cost-run's rounds")?;
    if rounds.is_empty() {
        bail!("xdp-cost-run printed no rounds");
    }
    let median =
        |f: fn(&CostRound) -> f64| crate::stats::median(&rounds.iter().map(f).collect::<Vec<_>>()).unwrap_or(f64::NAN);
    let empty = median(|r| r.empty_ns);
    let reference = median(|r| r.reference_ns);
    let ours = median(|r| r.ours_ns);
    let ref_net = median(|r| r.reference_ns - r.empty_ns);
    let ours_net = median(|r| r.ours_ns - r.empty_ns);
    let gross_ratio = median(|r| r.ours_ns / r.reference_ns);
    let net_ratio = median(|r| (r.ours_ns - r.empty_ns) / (r.reference_ns - r.empty_ns));
    println!(
        "BPF_PROG_TEST_RUN, IPv4 hit frame, repeat={} x {} test runs per program per round, medians of {} rounds:",
        args.repeat,
        args.calls,
        rounds.len()
    );
    println!("  program     gross ns/run   net of empty");
    println!("  empty       {empty:>12.1}   {:>12}", "-");
    println!("  reference   {reference:>12.1}   {ref_net:>12.1}");
    println!("  ours        {ours:>12.1}   {ours_net:>12.1}");
    println!("  ours/reference: gross {gross_ratio:.2}x, net {net_ratio:.2}x (target <= 1.25x)");
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let json = serde_json::json!({
        "scenario": "xdp-cost",
        "repeat": args.repeat,
        "calls": args.calls,
        "rounds": rounds,
        "median": {
            "empty_ns": empty, "reference_ns": reference, "ours_ns": ours,
            "reference_net_ns": ref_net, "ours_net_ns": ours_net,
            "ratio_gross": gross_ratio, "ratio_net": net_ratio,
        },
    });
    std::fs::write(&args.out, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("figures: {}", args.out.display());
    Ok(())
}

/// Mean ns per run of `calls` test runs of `repeat` repetitions each, failing unless every one ends in `want`.
fn time_runs(
    mut run: impl FnMut(u32) -> Result<media_relay::xdp::TestRunOutput>,
    calls: u32,
    repeat: u32,
    want: u32,
    what: &str,
) -> Result<f64> {
    let mut total = Duration::ZERO;
    for _ in 0..calls {
        let out = run(repeat)?;
        if out.action != want {
            bail!("{what}: action {} instead of {want}", out.action);
        }
        total += out.duration;
    }
    Ok(total.as_nanos() as f64 / f64::from(calls))
}

/// `sbc-bench xdp-cost-run ROUNDS CALLS REPEAT`, inside the namespace of [`cost_main`]: loads the three programs
/// unattached, gives ours and the reference the same two flows that rewrite a frame into each other (so that
/// every repetition is a hit) and prints one JSON line ([`CostRound`]) per round. The programs take turns within
/// a round, in a rotating order, so that a slower stretch of the machine is shared out.
pub fn cost_run_main(rounds: u32, calls: u32, repeat: u32) -> Result<()> {
    use media_relay::xdp::reference::{EmptyProgram, Reference, ReferenceFlow};
    let sa = |s: &str| -> SocketAddr { s.parse().expect("literal address") };
    let v4 = |s: &str| -> std::net::SocketAddrV4 { s.parse().expect("literal address") };
    let index = |dev: &str| -> Result<u32> {
        Ok(std::fs::read_to_string(format!("/sys/class/net/{dev}/ifindex"))?.trim().parse()?)
    };
    let (a0, b0, b1) = (index("a0")?, index("b0")?, index("b1")?);
    let mut ours = Xdp::load_unattached(&["a0".to_owned(), "b0".to_owned()]).context("loading relay_xdp")?;
    // As the relay installs plain RTP flows: strict, and RTCP passed up for its SDES rewrite.
    let target = |expect: &str, from: &str, to: &str| FlowTarget {
        expect: sa(expect),
        from: sa(from),
        to: sa(to),
        strict: true,
        pass_rtcp: true,
    };
    // 198.18.1.1:40002 -> 198.18.0.2:5000  ==>  198.18.0.1:40000 -> 198.18.1.2:6000  ==>  back again.
    ours.install(
        FlowKey { local: sa("198.18.0.2:5000") },
        target("198.18.1.1:40002", "198.18.0.1:40000", "198.18.1.2:6000"),
    )?;
    ours.install(
        FlowKey { local: sa("198.18.1.2:6000") },
        target("198.18.0.1:40000", "198.18.1.1:40002", "198.18.0.2:5000"),
    )?;
    let mut reference = Reference::load().context("loading reference_relay")?;
    for flow in [
        ReferenceFlow {
            key: v4("198.18.0.2:5000"),
            from: v4("198.18.0.1:40000"),
            to: v4("198.18.1.2:6000"),
            ifindex: b0,
            smac: MAC_B0,
            dmac: MAC_PB,
        },
        ReferenceFlow {
            key: v4("198.18.1.2:6000"),
            from: v4("198.18.1.1:40002"),
            to: v4("198.18.0.2:5000"),
            ifindex: a0,
            smac: MAC_A0,
            dmac: MAC_PA,
        },
    ] {
        reference.install(&flow)?;
    }
    let mut empty = EmptyProgram::load().context("loading relay_pass")?;
    let hit = frame(sa("198.18.1.1:40002"), sa("198.18.0.2:5000"), 255);
    // An ingress that is neither egress: every hit redirects.
    for round in 0..rounds {
        let mut r = CostRound { empty_ns: 0.0, reference_ns: 0.0, ours_ns: 0.0 };
        for turn in 0..3 {
            match (round + turn) % 3 {
                0 => r.empty_ns = time_runs(|n| Ok(empty.test_run(&hit, b1, n)?), calls, repeat, XDP_PASS, "empty")?,
                1 => {
                    r.reference_ns =
                        time_runs(|n| Ok(reference.test_run(&hit, b1, n)?), calls, repeat, XDP_REDIRECT, "reference")?
                }
                _ => r.ours_ns = time_runs(|n| Ok(ours.test_run(&hit, b1, n)?), calls, repeat, XDP_REDIRECT, "ours")?,
            }
        }
        println!("{}", serde_json::to_string(&r)?);
    }
    Ok(())
}
