//! `sbc-bench cps --local`: the call-rate ceiling of the SBC and its INVITE→200 latency, next to SIPp UAC→UAS
//! direct on the same machine in the same run.
//!
//! One single-SBC topology ([`tests::netns::Topology::single_sbc`]) serves the whole invocation. Each run starts a
//! fresh `sbc` (pinned to core 1), then climbs the rate ladder for target `sbc` (UAC in A → 198.18.1.1:5060 → UAS
//! in B) and then for target `direct` (UAC in C at 198.18.2.11 → UAS in B at 198.18.2.10:5060, no SBC). Both SIPp
//! processes of a step run on core 0. A step places `rate × step_secs` calls with hold time 0 and passes when at
//! most 0.1 % of them fail and the 99th percentile of SIPp's INVITE→200 response time is at most 200 ms; the
//! ladder stops at the first failing step.

use crate::stats::{mean, median, percentile};
use ::tests::netns::{addr, Host, Topology, CALLER, CARRIER_B, CARRIER_C, SBC_A};
use ::tests::sipp::{Run, Sipp};
use ::tests::Sbc;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set by SIGINT/SIGTERM: stop after the current step and tear down.
pub static STOP: AtomicBool = AtomicBool::new(false);

/// A step passes with at most this share of failed calls, in percent.
pub const MAX_FAILED_PCT: f64 = 0.1;
/// A step passes with a 99th-percentile INVITE→200 time of at most this, in milliseconds.
pub const MAX_P99_MS: f64 = 200.0;
/// No step places more calls than this, whatever rate × step length says.
pub const MAX_CALLS_PER_STEP: u32 = 50_000;
/// SIPp measures response times in whole milliseconds.
pub const SIPP_RESOLUTION_MS: f64 = 1.0;
/// The core the SBC runs on.
pub const SBC_CORE: usize = 1;
/// The core both SIPp processes run on.
pub const SIPP_CORE: usize = 0;

/// What `cps` was asked to do.
#[derive(Debug, Clone, Serialize)]
pub struct Options {
    /// Complete runs (each: the whole ladder for `sbc`, then for `direct`).
    pub runs: u32,
    /// Seconds of traffic per step.
    pub step_secs: u32,
    /// The rate ladder, calls per second, ascending.
    pub rates: Vec<u32>,
    /// The `sbc` binary used.
    pub sbc_binary: PathBuf,
}

/// Where the calls of a step go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// UAC in A → the SBC (198.18.1.1:5060) → UAS in B.
    Sbc,
    /// UAC in C (198.18.2.11) → UAS in B (198.18.2.10:5060), no SBC.
    Direct,
}

impl Target {
    /// Both, in the order a run measures them.
    pub const ALL: [Target; 2] = [Target::Sbc, Target::Direct];

    /// The name used in output and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Target::Sbc => "sbc",
            Target::Direct => "direct",
        }
    }

    /// The UAC's host and address, and where it sends.
    fn uac(self) -> (Host, std::net::Ipv4Addr, std::net::SocketAddr) {
        match self {
            Target::Sbc => (Host::A, CALLER, addr(SBC_A, 5060)),
            Target::Direct => (Host::C, CARRIER_C, addr(CARRIER_B, 5060)),
        }
    }
}

/// The figures of one step.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Offered rate, calls per second.
    pub rate: u32,
    /// Calls placed (attempted): rate × step length, bounded.
    pub calls: u32,
    /// Calls that completed (SIPp `SuccessfulCall(C)`).
    pub successful: u64,
    /// Attempted calls that did not complete: failed (SIPp `FailedCall(C)`) or never finished.
    pub failed: u64,
    /// `failed / calls`, in percent.
    pub failed_pct: f64,
    /// SIPp's own `FailedCall(C)` (a subset of `failed`).
    pub sipp_failed: Option<u64>,
    /// SIPp's `Retransmissions(C)` on the UAC: a sign of overload before calls fail.
    pub retransmissions: Option<u64>,
    /// The rate SIPp achieved (`CallRate(C)`): below the offered rate when the generator itself cannot keep up.
    pub achieved_cps: Option<f64>,
    /// INVITE→200 response times measured (one per answered call).
    pub samples: usize,
    /// Median INVITE→200, ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile INVITE→200, ms.
    pub p99_ms: Option<f64>,
    /// Mean INVITE→200, ms (finer than the percentiles: SIPp measures in whole milliseconds).
    pub mean_ms: Option<f64>,
    /// CPU time the `sbc` process used during the UAC run, in percent of one core (target `sbc` only): near 100
    /// means the SBC's core was the limit.
    pub sbc_cpu_pct: Option<f64>,
    /// Wall time of the UAC run, seconds.
    pub wall_secs: f64,
    /// SIPp's exit code (0: every call succeeded).
    pub sipp_exit: Option<i32>,
    /// Why the step could not be measured, if it could not.
    pub error: Option<String>,
    /// Failures ≤ 0.1 % and p99 ≤ 200 ms.
    pub pass: bool,
}

/// One target's ladder in one run.
#[derive(Debug, Clone, Serialize)]
pub struct Ladder {
    /// 1-based.
    pub run: u32,
    pub target: Target,
    pub steps: Vec<Step>,
    /// The highest passing rate before the first failing step; `None` when the first step failed.
    pub ceiling: Option<u32>,
    /// Every step passed: the real ceiling is at or above the top of the ladder.
    pub capped_by_ladder: bool,
}

impl Ladder {
    fn new(run: u32, target: Target) -> Self {
        Self { run, target, steps: Vec::new(), ceiling: None, capped_by_ladder: false }
    }

    fn finish(&mut self, top: u32) {
        self.ceiling = self.steps.iter().take_while(|s| s.pass).map(|s| s.rate).last();
        self.capped_by_ladder = self.ceiling == Some(top) && self.steps.iter().all(|s| s.pass);
    }
}

/// Runs the scenario and returns every ladder, in the order measured.
pub fn run(opts: &Options) -> Result<Vec<Ladder>> {
    let topo = Topology::single_sbc().context("building the netns topology (needs root)")?;
    let pin = pinning_possible();
    if pin {
        eprintln!("pinning: sbc on core {SBC_CORE}, SIPp (UAC and UAS) on core {SIPP_CORE}");
    } else {
        eprintln!("pinning: off (fewer than 2 cores); figures are less comparable");
    }
    let top = *opts.rates.last().context("no rates")?;
    let mut ladders = Vec::new();
    for run in 1..=opts.runs {
        for target in Target::ALL {
            let mut sbc = match target {
                Target::Sbc => Some(start_sbc(&topo, run, pin)?),
                Target::Direct => None,
            };
            let mut ladder = Ladder::new(run, target);
            for &rate in &opts.rates {
                check_stop()?;
                std::thread::sleep(Duration::from_secs(1));
                let step = step(&topo, target, rate, opts.step_secs, pin, sbc.as_ref().map(Sbc::id));
                eprintln!("{}", progress(opts.runs, &ladder, &step));
                let pass = step.pass;
                ladder.steps.push(step);
                if let Some(sbc) = sbc.as_mut() {
                    if !sbc.is_running() {
                        bail!(
                            "sbc exited during run {run} at {rate}/s; log ({}):\n{}",
                            sbc.log.display(),
                            sbc.log_tail()
                        );
                    }
                }
                if !pass {
                    break;
                }
            }
            drop(sbc);
            ladder.finish(top);
            ladders.push(ladder);
            check_stop()?;
        }
    }
    topo.remove()?;
    Ok(ladders)
}

fn check_stop() -> Result<()> {
    if STOP.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Whether there are cores [`SBC_CORE`] and [`SIPP_CORE`] (0 and 1) to pin to.
pub fn pinning_possible() -> bool {
    std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
}

/// Starts a fresh `sbc` in the topology's SBC namespace (every number routes to carrier b) and pins all its
/// threads to [`SBC_CORE`].
fn start_sbc(topo: &Topology, run: u32, pin: bool) -> Result<Sbc> {
    // Every number to carrier b only: the bench measures one carrier, and c is where the direct UAC sits.
    let config = ::tests::netns::sbc_config("", "", "", false, None);
    let sbc = Sbc::start_in(
        &topo.ns(Host::Sbc),
        &format!("bench-cps-run{run}"),
        &config,
        addr(SBC_A, 5060),
        addr([127, 0, 0, 1].into(), 8080),
    )
    .context("starting sbc")?;
    if pin {
        let out = Command::new("taskset")
            .args(["-a", "-cp", &SBC_CORE.to_string(), &sbc.id().to_string()])
            .output()
            .context("running taskset (util-linux)")?;
        if !out.status.success() {
            bail!("taskset -a -cp {SBC_CORE} {}: {}", sbc.id(), String::from_utf8_lossy(&out.stderr).trim());
        }
    }
    Ok(sbc)
}

/// One step: a UAS in B for exactly this step's calls, then the UAC at `rate`; the UAS is killed afterwards.
fn step(topo: &Topology, target: Target, rate: u32, step_secs: u32, pin: bool, sbc_pid: Option<u32>) -> Step {
    let calls = rate.saturating_mul(step_secs).clamp(1, MAX_CALLS_PER_STEP);
    let mut step = Step {
        rate,
        calls,
        successful: 0,
        failed: u64::from(calls),
        failed_pct: 100.0,
        sipp_failed: None,
        retransmissions: None,
        achieved_cps: None,
        samples: 0,
        p50_ms: None,
        p99_ms: None,
        mean_ms: None,
        sbc_cpu_pct: None,
        wall_secs: 0.0,
        sipp_exit: None,
        error: None,
        pass: false,
    };
    if let Err(e) = measure(topo, target, &mut step, step_secs, pin, sbc_pid) {
        step.error = Some(format!("{e:#}"));
    }
    step.pass =
        step.error.is_none() && step.failed_pct <= MAX_FAILED_PCT && step.p99_ms.is_some_and(|p99| p99 <= MAX_P99_MS);
    step
}

fn measure(
    topo: &Topology,
    target: Target,
    step: &mut Step,
    step_secs: u32,
    pin: bool,
    sbc_pid: Option<u32>,
) -> Result<()> {
    // SIPp gives up 20 s after the step should have ended (then the Sipp helper kills it 10 s later).
    let limit = Duration::from_secs(u64::from(step_secs) + 20);
    let pinned = |s: Sipp| if pin { s.cpu(SIPP_CORE) } else { s };
    let uas_ns = topo.ns(Host::B);
    let mut uas = pinned(Sipp::new("uas_answer.xml"))
        .netns(&uas_ns)
        .local_ip(CARRIER_B)
        .local_port(5060)
        // Headroom: stray retransmissions after a call ended count as calls too, and a UAS that stopped at exactly
        // `calls` would fail the last ones. It is killed after the UAC finishes.
        .calls(step.calls.saturating_mul(2).saturating_add(1000))
        .limit(limit + Duration::from_secs(5))
        .spawn()
        .context("starting the UAS in B")?;
    uas.wait_listening(Some(&uas_ns), 5060, Duration::from_secs(5))?;

    let (host, ip, to) = target.uac();
    let uac = pinned(Sipp::new("uac_call.xml"))
        .netns(&topo.ns(host))
        .local_ip(ip)
        .local_port(5060)
        .target(to)
        .service("+4930123456")
        .calls(step.calls)
        .rate(step.rate)
        .pause(Duration::ZERO)
        .limit(limit)
        .keep_files(true)
        .arg("-l")
        .arg(&step.calls.to_string())
        .arg("-trace_rtt")
        .arg("-rtt_freq")
        .arg("1");
    let cpu_before = sbc_pid.and_then(cpu_ticks);
    let started = Instant::now();
    let result = uac.run();
    step.wall_secs = started.elapsed().as_secs_f64();
    if let (Some(before), Some(after)) = (cpu_before, sbc_pid.and_then(cpu_ticks)) {
        step.sbc_cpu_pct = Some(100.0 * (after - before) as f64 / CLOCK_TICKS_PER_SEC / step.wall_secs);
    }
    let uas_dir = uas.dir().to_owned();
    drop(uas);
    let _ = std::fs::remove_dir_all(uas_dir);
    let run = result.context("running the UAC")?;
    let figures = read_figures(step, &run);
    let _ = std::fs::remove_dir_all(&run.dir);
    figures
}

/// `USER_HZ`: the unit of utime and stime in /proc/PID/stat (100 on every Linux architecture in practice).
const CLOCK_TICKS_PER_SEC: f64 = 100.0;

/// utime + stime of process `pid`, all threads, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which is in parentheses and may hold spaces): state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn read_figures(step: &mut Step, run: &Run) -> Result<()> {
    let opt = |column: &str| Some(run.count(column)).filter(|&n| n != u64::MAX);
    step.sipp_exit = Some(run.exit_code);
    step.successful = opt("SuccessfulCall(C)").unwrap_or(0).min(u64::from(step.calls));
    step.failed = u64::from(step.calls) - step.successful;
    step.failed_pct = 100.0 * step.failed as f64 / f64::from(step.calls);
    step.sipp_failed = opt("FailedCall(C)");
    step.retransmissions = opt("Retransmissions(C)");
    step.achieved_cps = run.stats.get("CallRate(C)").and_then(|v| v.trim().parse().ok());
    let times = response_times(&run.dir)?;
    step.samples = times.len();
    step.p50_ms = percentile(&times, 50.0);
    step.p99_ms = percentile(&times, 99.0);
    step.mean_ms = mean(&times);
    Ok(())
}

/// Every INVITE→200 response time (ms) from the `-trace_rtt` file SIPp wrote in its working directory
/// (`<scenario>_<pid>_rtt.csv`: `Date_ms;response_time_ms;rtd_no`).
fn response_times(dir: &Path) -> Result<Vec<f64>> {
    let file = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with("_rtt.csv")));
    let Some(file) = file else {
        return Ok(Vec::new());
    };
    let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    Ok(text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut cols = l.split(';');
            let time = cols.nth(1)?.trim().parse::<f64>().ok()?;
            (cols.next()?.trim() == "1").then_some(time)
        })
        .collect())
}

fn progress(runs: u32, ladder: &Ladder, s: &Step) -> String {
    let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
    let mut line = format!(
        "[run {}/{runs}] {:<6} {:>5}/s: {:>5} calls, {:>5} failed ({:>6.2} %), p50 {:>3} ms, p99 {:>4} ms, mean {:>6} ms, achieved {:>7}/s, retrans {:>5}, sbc cpu {:>4} -> {}",
        ladder.run,
        ladder.target.name(),
        s.rate,
        s.calls,
        s.failed,
        s.failed_pct,
        ms(s.p50_ms),
        ms(s.p99_ms),
        s.mean_ms.map_or("-".to_owned(), |v| format!("{v:.2}")),
        s.achieved_cps.map_or("-".to_owned(), |v| format!("{v:.1}")),
        s.retransmissions.map_or("-".to_owned(), |v| v.to_string()),
        s.sbc_cpu_pct.map_or("-".to_owned(), |v| format!("{v:.0}%")),
        if s.pass { "pass" } else { "FAIL" }
    );
    if let Some(e) = &s.error {
        line.push_str(&format!(" ({})", e.lines().next().unwrap_or("")));
    }
    line
}

/// The summary over runs: median ceilings, and latency at the reference rate.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub targets: Vec<TargetSummary>,
    /// The highest ladder rate at or below both targets' median ceilings.
    pub reference_rate: Option<u32>,
    /// sbc / direct at the reference rate; `None` when direct's figure is below SIPp's resolution of 1 ms (the
    /// ratio would divide by measurement noise).
    pub ratio_p50: Option<f64>,
    pub ratio_p99: Option<f64>,
    pub ratio_mean: Option<f64>,
    /// sbc − direct at the reference rate, ms: the setup time the SBC adds.
    pub added_p50_ms: Option<f64>,
    pub added_p99_ms: Option<f64>,
    pub added_mean_ms: Option<f64>,
}

/// One target over all runs.
#[derive(Debug, Clone, Serialize)]
pub struct TargetSummary {
    pub target: Target,
    /// Per run, in order (`None`: the first step failed).
    pub ceilings: Vec<Option<u32>>,
    /// Per run: every step passed (the ceiling is the ladder's top, the real one may be higher).
    pub capped_by_ladder: Vec<bool>,
    /// Median over runs (a run whose first step failed counts as 0).
    pub median_ceiling: Option<f64>,
    /// At the reference rate: medians over the runs that measured it.
    pub reference_p50_ms: Option<f64>,
    pub reference_p99_ms: Option<f64>,
    pub reference_mean_ms: Option<f64>,
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
            let (p50, n) = at_ref(t, |s| s.p50_ms);
            TargetSummary {
                target: t,
                ceilings: of(t).map(|l| l.ceiling).collect(),
                capped_by_ladder: of(t).map(|l| l.capped_by_ladder).collect(),
                median_ceiling: median_ceiling(t),
                reference_p50_ms: p50,
                reference_p99_ms: at_ref(t, |s| s.p99_ms).0,
                reference_mean_ms: at_ref(t, |s| s.mean_ms).0,
                reference_runs: n,
            }
        })
        .collect();
    let ratio = |f: fn(&TargetSummary) -> Option<f64>| {
        let (s, d) = (f(&targets[0])?, f(&targets[1])?);
        (d >= SIPP_RESOLUTION_MS).then(|| s / d)
    };
    let added = |f: fn(&TargetSummary) -> Option<f64>| Some(f(&targets[0])? - f(&targets[1])?);
    Summary {
        reference_rate,
        ratio_p50: ratio(|t| t.reference_p50_ms),
        ratio_p99: ratio(|t| t.reference_p99_ms),
        ratio_mean: ratio(|t| t.reference_mean_ms),
        added_p50_ms: added(|t| t.reference_p50_ms),
        added_p99_ms: added(|t| t.reference_p99_ms),
        added_mean_ms: added(|t| t.reference_mean_ms),
        targets,
    }
}

/// The table printed at the end.
pub fn table(opts: &Options, summary: &Summary, pinned: bool) -> String {
    let mut out = String::new();
    let runs = opts.runs as usize;
    out.push_str(&format!(
        "sbc-bench cps --local: {} run(s), steps of {} s, rates {:?}\n",
        opts.runs, opts.step_secs, opts.rates
    ));
    out.push_str(&if pinned {
        format!("pinning: sbc on core {SBC_CORE}, SIPp UAC and UAS on core {SIPP_CORE}\n")
    } else {
        "pinning: off (fewer than 2 cores)\n".to_owned()
    });
    out.push_str(&format!(
        "a step passes with failed <= {MAX_FAILED_PCT} % and p99(INVITE->200) <= {MAX_P99_MS} ms; ceiling = highest passing rate before the first failing step\n\n"
    ));
    out.push_str(&format!("{:<22}", "ceiling (calls/s)"));
    for r in 1..=runs {
        out.push_str(&format!("{:>9}", format!("run {r}")));
    }
    out.push_str(&format!("{:>9}\n", "median"));
    for t in &summary.targets {
        out.push_str(&format!("  {:<20}", t.target.name()));
        for (c, capped) in t.ceilings.iter().zip(&t.capped_by_ladder) {
            let cell = c.map_or("none".to_owned(), |c| format!("{c}{}", if *capped { "+" } else { "" }));
            out.push_str(&format!("{cell:>9}"));
        }
        out.push_str(&format!("{:>9}\n", t.median_ceiling.map_or("-".to_owned(), |m| format!("{m:.0}"))));
    }
    if summary.targets.iter().any(|t| t.capped_by_ladder.iter().any(|&c| c)) {
        out.push_str("  (+: every step passed; the real ceiling is at or above the top of the ladder)\n");
    }
    out.push('\n');
    let Some(rate) = summary.reference_rate else {
        out.push_str("reference rate: none (a target failed its first step in the median run)\n");
        return out;
    };
    out.push_str(&format!(
        "at the reference rate {rate}/s (highest ladder rate within both median ceilings; medians over runs)\n"
    ));
    out.push_str(&format!("{:<22}{:>9}{:>9}{:>10}{:>7}\n", "INVITE->200", "p50 ms", "p99 ms", "mean ms", "runs"));
    let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
    let mean_ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
    for t in &summary.targets {
        out.push_str(&format!(
            "  {:<20}{:>9}{:>9}{:>10}{:>7}\n",
            t.target.name(),
            ms(t.reference_p50_ms),
            ms(t.reference_p99_ms),
            mean_ms(t.reference_mean_ms),
            t.reference_runs
        ));
    }
    let ratio = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.2}"));
    out.push_str(&format!(
        "  {:<20}{:>9}{:>9}{:>10}\n",
        "sbc/direct",
        ratio(summary.ratio_p50),
        ratio(summary.ratio_p99),
        ratio(summary.ratio_mean)
    ));
    let added = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:+.2}"));
    out.push_str(&format!(
        "  {:<20}{:>9}{:>9}{:>10}\n",
        "sbc - direct (ms)",
        added(summary.added_p50_ms),
        added(summary.added_p99_ms),
        added(summary.added_mean_ms)
    ));
    out.push_str(
        "  (SIPp measures response times in whole milliseconds; a ratio is n/a when direct's figure is below 1 ms)\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(rate: u32, pass: bool, p50: f64) -> Step {
        Step {
            rate,
            calls: rate * 5,
            successful: 0,
            failed: 0,
            failed_pct: 0.0,
            sipp_failed: None,
            retransmissions: None,
            achieved_cps: None,
            samples: 1,
            p50_ms: Some(p50),
            p99_ms: Some(p50 * 2.0),
            mean_ms: Some(p50),
            sbc_cpu_pct: None,
            wall_secs: 5.0,
            sipp_exit: Some(0),
            error: None,
            pass,
        }
    }

    fn ladder(run: u32, target: Target, passes: &[(u32, bool)], p50: f64) -> Ladder {
        let mut l = Ladder::new(run, target);
        l.steps = passes.iter().map(|&(r, p)| step(r, p, p50)).collect();
        l.finish(400);
        l
    }

    #[test]
    fn ceilings_and_reference() {
        let rates = [100, 200, 300, 400];
        let ladders = vec![
            ladder(1, Target::Sbc, &[(100, true), (200, true), (300, false)], 2.0),
            ladder(1, Target::Direct, &[(100, true), (200, true), (300, true), (400, true)], 1.0),
            ladder(2, Target::Sbc, &[(100, true), (200, false)], 4.0),
            ladder(2, Target::Direct, &[(100, true), (200, true), (300, true), (400, true)], 1.0),
            ladder(3, Target::Sbc, &[(100, true), (200, true), (300, true), (400, false)], 3.0),
            ladder(3, Target::Direct, &[(100, true), (200, true), (300, true), (400, true)], 1.0),
        ];
        assert_eq!(ladders[0].ceiling, Some(200));
        assert!(ladders[1].capped_by_ladder);
        let s = summarize(&rates, &ladders);
        assert_eq!(s.targets[0].ceilings, vec![Some(200), Some(100), Some(300)]);
        assert_eq!(s.targets[0].median_ceiling, Some(200.0));
        assert_eq!(s.targets[1].median_ceiling, Some(400.0));
        assert_eq!(s.reference_rate, Some(200));
        // Runs 1 and 3 passed 200/s (p50 2 and 3), run 2 failed it (measured, p50 4): median 3.
        assert_eq!(s.targets[0].reference_p50_ms, Some(3.0));
        assert_eq!((s.ratio_p50, s.added_p50_ms), (Some(3.0), Some(2.0)));
        // Below SIPp's resolution there is no ratio, only the difference.
        let fast: Vec<Ladder> = ladders
            .iter()
            .cloned()
            .map(|mut l| {
                if l.target == Target::Direct {
                    l.steps.iter_mut().for_each(|s| s.p50_ms = Some(0.0));
                }
                l
            })
            .collect();
        let s = summarize(&rates, &fast);
        assert_eq!((s.ratio_p50, s.added_p50_ms), (None, Some(3.0)));
    }

    #[test]
    fn first_step_failing_means_no_ceiling() {
        let l = ladder(1, Target::Sbc, &[(100, false)], 1.0);
        assert_eq!((l.ceiling, l.capped_by_ladder), (None, false));
    }
}
