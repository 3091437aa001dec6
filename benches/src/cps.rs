//! `sbc-bench cps`: the call-rate ceiling of a target and its post-dial delay, next to a second target measured in
//! the same invocation (by default `direct`, SIPp UAC → UAS without an SBC: the harness's own ceiling).
//!
//! The targets are those of [`crate::target`]: our `sbc` in the harness's netns topology (started fresh per ladder,
//! pinned to core 1), another `sbc` build, SIPp direct, or an SBC already running at an address. Each run climbs the
//! rate ladder for every target, the targets interleaved run by run (the second run measures them in the other
//! order, so neither always goes first on a machine whose speed drifts). Both SIPp processes of a step run on core
//! 0. A step places `rate × step_secs` calls with hold time 0 and passes when at most 0.1 % of them fail and the
//! 99th percentile of the post-dial delay (INVITE → the first 180/183/200) is at most 200 ms; the ladder stops at the
//! first failing step.

use crate::calls::{self, cpu_ticks, CLOCK_TICKS_PER_SEC};
use crate::stats::{mean, median, percentile};
use crate::target::{CallPath, Harness, Target};
use ::tests::sipp::Run;
use ::tests::Sbc;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set by SIGINT/SIGTERM: stop after the current step and tear down.
pub static STOP: AtomicBool = AtomicBool::new(false);

/// A step passes with at most this share of failed calls, in percent.
pub const MAX_FAILED_PCT: f64 = 0.1;
/// A step passes with a 99th-percentile post-dial delay of at most this, in milliseconds.
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
    /// Complete runs (each: the whole ladder for every target).
    pub runs: u32,
    /// Seconds of traffic per step.
    pub step_secs: u32,
    /// The rate ladder, calls per second, ascending.
    pub rates: Vec<u32>,
    /// The targets: the first is measured, the second (if any) is its baseline.
    pub targets: Vec<Target>,
    /// Their names in output, JSON and plots.
    pub labels: Vec<String>,
    /// A local `sbc` anchors every call's media (its embedded relay, user space): always when `kamailio-rtpengine`
    /// (whose rtpengine does) is in the run, so that both do the same work.
    pub media: bool,
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
    /// Post-dial delays measured (one per call that heard a 180, 183 or 200).
    pub samples: usize,
    /// Post-dial delay (INVITE → first 180/183/200) median, 95th and 99th percentile, mean, ms.
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// The mean is finer than the percentiles: SIPp measures in whole milliseconds.
    pub mean_ms: Option<f64>,
    /// Setup time (INVITE → 200) median and 99th percentile, ms.
    pub setup_p50_ms: Option<f64>,
    pub setup_p99_ms: Option<f64>,
    /// CPU time the target used while the load was offered (the step's first `step_secs` seconds), in percent of
    /// one core (local targets: their `sbc`, or every process of the Kamailio rig; targets by address: the process
    /// given as `--target-pid`, if any): near 100 means the target's core was the limit. Not over the whole UAC run:
    /// after a failing step SIPp waits up to 20 s for its open calls, and a share over that wait made a saturated
    /// target look two-thirds idle.
    pub sbc_cpu_pct: Option<f64>,
    /// How busy the target's core was in the same window (every process on it, interrupts and softirq: the window
    /// less the core's idle and iowait time in /proc/stat), percent; pinned runs only. Well above `sbc_cpu_pct`: something else shared the core (another
    /// bench on the machine, or the kernel's packet work, which is charged to no process).
    pub core_busy_pct: Option<f64>,
    /// That CPU time per completed call, milliseconds (utime + stime; clock ticks of 10 ms over the step).
    pub cpu_ms_per_call: Option<f64>,
    /// Wall time of the UAC run, seconds.
    pub wall_secs: f64,
    /// SIPp's exit code (0: every call succeeded).
    pub sipp_exit: Option<i32>,
    /// Why the step could not be measured, if it could not.
    pub error: Option<String>,
    /// Failures ≤ 0.1 % and p99 post-dial delay ≤ 200 ms.
    pub pass: bool,
}

/// One target's ladder in one run.
#[derive(Debug, Clone, Serialize)]
pub struct Ladder {
    /// 1-based.
    pub run: u32,
    /// The target's label (see [`Options::labels`]).
    pub target: String,
    pub steps: Vec<Step>,
    /// The highest passing rate before the first failing step; `None` when the first step failed.
    pub ceiling: Option<u32>,
    /// Every step passed: the real ceiling is at or above the top of the ladder.
    pub capped_by_ladder: bool,
}

impl Ladder {
    fn new(run: u32, target: &str) -> Self {
        Self { run, target: target.to_owned(), steps: Vec::new(), ceiling: None, capped_by_ladder: false }
    }

    fn finish(&mut self, top: u32) {
        self.ceiling = self.steps.iter().take_while(|s| s.pass).map(|s| s.rate).last();
        self.capped_by_ladder = self.ceiling == Some(top) && self.steps.iter().all(|s| s.pass);
    }
}

/// The order in which run `run` (1-based) measures the targets: as given in odd runs, reversed in even ones.
pub fn order(run: u32, n: usize) -> Vec<usize> {
    let mut o: Vec<usize> = (0..n).collect();
    if run.is_multiple_of(2) {
        o.reverse();
    }
    o
}

/// What a run of the scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Every ladder, in the order measured (a ladder cut short by an interruption included, without the step in
    /// progress, whose calls the interruption killed).
    pub ladders: Vec<Ladder>,
    /// Ctrl-C or SIGTERM ended the run early: what was measured before is kept, and said to be partial.
    pub interrupted: bool,
}

/// Runs the scenario. `harness` is removed by the caller; `target_pid` is a process on this host whose CPU counts as
/// an address target's (local targets: their `sbc`).
pub fn run(opts: &Options, harness: &Harness, target_pid: Option<u32>) -> Result<Outcome> {
    let pin = pinning_possible();
    let any_local = opts.targets.iter().any(Target::started_here);
    match (pin, any_local) {
        (true, true) => eprintln!(
            "pinning: the local target (sbc, or kamailio and rtpengine) on core {SBC_CORE}, SIPp (UAC and UAS) on core {SIPP_CORE}"
        ),
        (true, false) => eprintln!("pinning: SIPp (UAC and UAS) on core {SIPP_CORE}; targets by address as they run"),
        (false, _) => eprintln!("pinning: off (fewer than 2 cores); figures are less comparable"),
    }
    let top = *opts.rates.last().context("no rates")?;
    let mut ladders = Vec::new();
    'runs: for run in 1..=opts.runs {
        for i in order(run, opts.targets.len()) {
            let (target, label) = (&opts.targets[i], &opts.labels[i]);
            if stopped() {
                break 'runs;
            }
            let name = format!("bench-cps-run{run}");
            let core = pin.then_some(SBC_CORE);
            let mut running = match target {
                t if t.is_kamailio() => Running::Kamailio(Box::new(harness.start_kamailio(t, &name, core)?)),
                t if t.is_local() => {
                    let config = media_config(harness.config(target, opts.media));
                    Running::Sbc(harness.start_local(target, &name, &config, core)?)
                }
                _ => Running::Elsewhere,
            };
            let pids: Vec<u32> = match &running {
                Running::Sbc(sbc) => vec![sbc.id()],
                Running::Kamailio(rig) => rig.pids(),
                Running::Elsewhere => target_pid.filter(|_| matches!(target, Target::Remote(_))).into_iter().collect(),
            };
            let path = harness.path(target);
            let mut ladder = Ladder::new(run, label);
            for &rate in &opts.rates {
                std::thread::sleep(Duration::from_secs(1));
                if stopped() {
                    break;
                }
                let step = step(&path, rate, opts.step_secs, pin, &pids);
                if stopped() {
                    eprintln!("[run {run}/{}] {label} {rate}/s: interrupted, step discarded", opts.runs);
                    break;
                }
                eprintln!("{}", progress(opts.runs, &ladder, &step));
                let pass = step.pass;
                ladder.steps.push(step);
                if let Some(why) = running.exited() {
                    bail!("{label} during run {run} at {rate}/s: {why}");
                }
                if !pass {
                    break;
                }
            }
            drop(running);
            ladder.finish(top);
            if !ladder.steps.is_empty() {
                ladders.push(ladder);
            }
        }
    }
    Ok(Outcome { ladders, interrupted: stopped() })
}

/// How long a released port pair of a local sbc rests before reuse in `cps` (the shipped default is 5 s). Each call
/// takes one pair per interface; with hold time 0 and 8192 pairs per interface, 5 s carry about 1600 calls/s, and
/// a step at 2500/s failed 15 % of its calls with the core half idle: the pool's limit, not the sbc's. rtpengine in
/// `kamailio-rtpengine` frees its ports at once (`--delete-delay=0`).
pub const MEDIA_QUARANTINE: &str = "1s";

/// A local sbc's configuration for `cps`: with a `[media]` section, its quarantine set to [`MEDIA_QUARANTINE`].
fn media_config(config: String) -> String {
    match config.find("\n[media]\n") {
        Some(at) => {
            let (head, tail) = config.split_at(at + "\n[media]\n".len());
            format!("{head}quarantine = \"{MEDIA_QUARANTINE}\"\n{tail}")
        }
        None => config,
    }
}

/// What the harness started for a target's ladder; stopped when dropped.
enum Running {
    Sbc(Sbc),
    Kamailio(Box<crate::kamailio::KamailioRig>),
    /// Direct, or a target by address: nothing of the target's runs under the harness.
    Elsewhere,
}

impl Running {
    /// Why the target is gone, if it exited.
    fn exited(&mut self) -> Option<String> {
        match self {
            Running::Sbc(sbc) => sbc
                .exit_status()
                .map(|status| format!("sbc exited ({status}); log ({}, kept):\n{}", sbc.log.display(), sbc.log_tail())),
            Running::Kamailio(rig) => rig.exited(),
            Running::Elsewhere => None,
        }
    }
}

fn stopped() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Whether there are cores [`SBC_CORE`] and [`SIPP_CORE`] (0 and 1) to pin to.
pub fn pinning_possible() -> bool {
    std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
}

/// One step: a UAS for exactly this step's calls, then the UAC at `rate`; the UAS is killed afterwards.
fn step(path: &CallPath, rate: u32, step_secs: u32, pin: bool, pids: &[u32]) -> Step {
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
        p95_ms: None,
        p99_ms: None,
        mean_ms: None,
        setup_p50_ms: None,
        setup_p99_ms: None,
        sbc_cpu_pct: None,
        core_busy_pct: None,
        cpu_ms_per_call: None,
        wall_secs: 0.0,
        sipp_exit: None,
        error: None,
        pass: false,
    };
    if let Err(e) = measure(path, &mut step, step_secs, pin, pids) {
        step.error = Some(format!("{e:#}"));
    }
    step.pass =
        step.error.is_none() && step.failed_pct <= MAX_FAILED_PCT && step.p99_ms.is_some_and(|p99| p99 <= MAX_P99_MS);
    step
}

fn measure(path: &CallPath, step: &mut Step, step_secs: u32, pin: bool, pids: &[u32]) -> Result<()> {
    // SIPp gives up 20 s after the step should have ended (then the Sipp helper kills it 10 s later).
    let limit = Duration::from_secs(u64::from(step_secs) + 20);
    let core = pin.then_some(SIPP_CORE);
    // Headroom: stray retransmissions after a call ended count as calls too, and a UAS that stopped at exactly
    // `calls` would fail the last ones. It is killed after the UAC finishes.
    let mut uas =
        calls::uas(path, step.calls.saturating_mul(2).saturating_add(1000), limit + Duration::from_secs(5), core)
            .spawn()
            .context("starting the UAS")?;
    uas.wait_listening(path.uas.ns.as_deref(), path.uas.port, Duration::from_secs(5))?;
    let uac = calls::uac(path, step.calls, step.rate, Duration::ZERO, limit, core);
    let cpu_before = ticks(pids);
    let load = LoadWindow::start(pids, pin.then_some(SBC_CORE), Duration::from_secs(u64::from(step_secs)));
    let started = Instant::now();
    let result = uac.run();
    step.wall_secs = started.elapsed().as_secs_f64();
    let cpu_secs = match (cpu_before, ticks(pids)) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before) as f64 / CLOCK_TICKS_PER_SEC),
        _ => None,
    };
    (step.sbc_cpu_pct, step.core_busy_pct) = load.finish();
    let uas_dir = uas.dir().to_owned();
    drop(uas);
    let _ = std::fs::remove_dir_all(uas_dir);
    let run = result.context("running the UAC")?;
    let figures = read_figures(step, &run);
    let _ = std::fs::remove_dir_all(&run.dir);
    if let Some(secs) = cpu_secs.filter(|_| step.successful > 0) {
        step.cpu_ms_per_call = Some(1000.0 * secs / step.successful as f64);
    }
    figures
}

/// The target's CPU time and its core's busy time over the first seconds of a step, while SIPp offers the load:
/// read by a thread of its own, as the UAC run it spans blocks.
struct LoadWindow {
    reader: std::thread::JoinHandle<(Option<f64>, Option<f64>)>,
}

impl LoadWindow {
    fn start(pids: &[u32], core: Option<usize>, window: Duration) -> Self {
        let pids = pids.to_vec();
        let reader = std::thread::spawn(move || {
            let read = || (ticks(&pids), core.and_then(core_idle_ticks));
            let (cpu, idle) = read();
            let started = Instant::now();
            std::thread::sleep(window);
            let (cpu_after, idle_after) = read();
            let secs = started.elapsed().as_secs_f64();
            let pct = |a: Option<u64>, b: Option<u64>| {
                a.zip(b).map(|(a, b)| 100.0 * b.saturating_sub(a) as f64 / CLOCK_TICKS_PER_SEC / secs)
            };
            let busy = pct(idle, idle_after).map(|idle| (100.0 - idle).clamp(0.0, 100.0));
            (pct(cpu, cpu_after), busy)
        });
        Self { reader }
    }

    /// The target's CPU and its core's busy time over the window, percent of one core (waits for the window's end).
    fn finish(self) -> (Option<f64>, Option<f64>) {
        self.reader.join().unwrap_or((None, None))
    }
}

/// Idle and iowait ticks of core `core` (/proc/stat). Busy is the wall time less these: the kernel keeps idle time
/// exactly across its tickless idle periods, while the busy fields are samples taken at ticks, which a core that
/// runs in short bursts between idle periods can miss (the busy fields read below our sbc's own CPU time).
fn core_idle_ticks(core: usize) -> Option<u64> {
    parse_core_idle(&std::fs::read_to_string("/proc/stat").ok()?, core)
}

fn parse_core_idle(stat: &str, core: usize) -> Option<u64> {
    let name = format!("cpu{core}");
    let line = stat.lines().find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
    let mut v = line.split_whitespace().skip(4).map(|x| x.parse::<u64>().ok());
    Some(v.next()?? + v.next()??)
}

/// The CPU time of every process in `pids` together (none: not measured), clock ticks.
fn ticks(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&p| cpu_ticks(p)).sum()
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
    let times = calls::response_times(&run.dir)?;
    step.samples = times.pdd.len();
    step.p50_ms = percentile(&times.pdd, 50.0);
    step.p95_ms = percentile(&times.pdd, 95.0);
    step.p99_ms = percentile(&times.pdd, 99.0);
    step.mean_ms = mean(&times.pdd);
    step.setup_p50_ms = percentile(&times.setup, 50.0);
    step.setup_p99_ms = percentile(&times.setup, 99.0);
    Ok(())
}

fn progress(runs: u32, ladder: &Ladder, s: &Step) -> String {
    let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
    let mut line = format!(
        "[run {}/{runs}] {:<8} {:>5}/s: {:>5} calls, {:>5} failed ({:>6.2} %), pdd p50 {:>3} ms, p99 {:>4} ms, mean {:>6} ms, setup p99 {:>4} ms, achieved {:>7}/s, retrans {:>5}, sbc cpu {:>4}{} -> {}",
        ladder.run,
        ladder.target,
        s.rate,
        s.calls,
        s.failed,
        s.failed_pct,
        ms(s.p50_ms),
        ms(s.p99_ms),
        s.mean_ms.map_or("-".to_owned(), |v| format!("{v:.2}")),
        ms(s.setup_p99_ms),
        s.achieved_cps.map_or("-".to_owned(), |v| format!("{v:.1}")),
        s.retransmissions.map_or("-".to_owned(), |v| v.to_string()),
        s.sbc_cpu_pct.map_or("-".to_owned(), |v| format!("{v:.0}%")),
        s.core_busy_pct.map_or(String::new(), |v| format!(" (core {v:.0}%)")),
        if s.pass { "pass" } else { "FAIL" }
    );
    if let Some(e) = &s.error {
        line.push_str(&format!(" ({})", e.lines().next().unwrap_or("")));
    }
    line
}

/// The summary over runs: median ceilings, and post-dial delay at the reference rate.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// In the order of [`Options::targets`].
    pub targets: Vec<TargetSummary>,
    /// The highest ladder rate at or below every target's median ceiling.
    pub reference_rate: Option<u32>,
    /// With two targets: the first's figure over the second's, at the reference rate (`None` when the second's is
    /// below SIPp's resolution of 1 ms: the ratio would divide by measurement noise); and of the median ceilings.
    pub ratio_ceiling: Option<f64>,
    pub ratio_p50: Option<f64>,
    pub ratio_p99: Option<f64>,
    pub ratio_mean: Option<f64>,
    /// The first's CPU per call over the second's at the reference rate.
    pub ratio_cpu_per_call: Option<f64>,
    /// First − second at the reference rate, ms: the delay the first adds.
    pub added_p50_ms: Option<f64>,
    pub added_p99_ms: Option<f64>,
    pub added_mean_ms: Option<f64>,
    /// CPU per call at every ladder rate where every target completed every call of a step, in ladder order.
    pub cpu_by_rate: Vec<CpuAtRate>,
}

/// CPU per completed call at one offered rate, per target: median over the runs whose step at that rate completed
/// every call. A step counted here may have failed the delay criterion (a saturated target queues but completes):
/// so CPU per call can be compared at a rate above a target's ceiling, where the reference rate cannot go.
#[derive(Debug, Clone, Serialize)]
pub struct CpuAtRate {
    pub rate: u32,
    /// In the order of [`Summary::targets`], ms.
    pub cpu_ms_per_call: Vec<f64>,
    /// How many runs each median is over.
    pub runs: Vec<usize>,
    /// With two targets: the first's over the second's.
    pub ratio: Option<f64>,
}

/// One target over all runs.
#[derive(Debug, Clone, Serialize)]
pub struct TargetSummary {
    pub target: String,
    /// Per run, in order (`None`: the first step failed).
    pub ceilings: Vec<Option<u32>>,
    /// Per run: every step passed (the ceiling is the ladder's top, the real one may be higher).
    pub capped_by_ladder: Vec<bool>,
    /// Median over runs (a run whose first step failed counts as 0).
    pub median_ceiling: Option<f64>,
    /// Post-dial delay at the reference rate: medians over the runs that measured it.
    pub reference_p50_ms: Option<f64>,
    pub reference_p99_ms: Option<f64>,
    pub reference_mean_ms: Option<f64>,
    /// Setup time (INVITE → 200) p99 at the reference rate, median over runs.
    pub reference_setup_p99_ms: Option<f64>,
    /// How many runs measured the reference rate.
    pub reference_runs: usize,
    /// The target's CPU time per completed call at the reference rate, ms, median over runs (targets the harness
    /// started, or given by `--target-pid`).
    pub reference_cpu_ms_per_call: Option<f64>,
    /// The highest ladder rate at or below 80 % of this target's median ceiling, and its post-dial delay p99 there
    /// (median over runs): the delay of a target run near, not at, its limit.
    pub rate_at_80pct: Option<u32>,
    pub p99_at_80pct_ms: Option<f64>,
}

/// Builds the summary of `ladders` for the targets labelled `labels` (see [`Summary`]).
pub fn summarize(rates: &[u32], labels: &[String], ladders: &[Ladder]) -> Summary {
    let of = |t: &str| ladders.iter().filter(move |l| l.target == t).collect::<Vec<_>>();
    let median_ceiling = |t: &str| median(&of(t).iter().map(|l| f64::from(l.ceiling.unwrap_or(0))).collect::<Vec<_>>());
    let floor = labels.iter().map(|t| median_ceiling(t).unwrap_or(0.0)).fold(f64::INFINITY, f64::min);
    let reference_rate = rates.iter().copied().filter(|&r| f64::from(r) <= floor).max();
    let at = |t: &str, rate: Option<u32>, f: fn(&Step) -> Option<f64>| -> (Option<f64>, usize) {
        let values: Vec<f64> = of(t)
            .iter()
            .filter_map(|l| l.steps.iter().find(|s| Some(s.rate) == rate && s.error.is_none()))
            .filter_map(f)
            .collect();
        (median(&values), values.len())
    };
    let at_ref = |t: &str, f: fn(&Step) -> Option<f64>| at(t, reference_rate, f);
    let targets: Vec<TargetSummary> = labels
        .iter()
        .map(|t| {
            let (p50, n) = at_ref(t, |s| s.p50_ms);
            TargetSummary {
                target: t.clone(),
                ceilings: of(t).iter().map(|l| l.ceiling).collect(),
                capped_by_ladder: of(t).iter().map(|l| l.capped_by_ladder).collect(),
                median_ceiling: median_ceiling(t),
                reference_p50_ms: p50,
                reference_p99_ms: at_ref(t, |s| s.p99_ms).0,
                reference_mean_ms: at_ref(t, |s| s.mean_ms).0,
                reference_setup_p99_ms: at_ref(t, |s| s.setup_p99_ms).0,
                reference_runs: n,
                reference_cpu_ms_per_call: at_ref(t, |s| s.cpu_ms_per_call).0,
                rate_at_80pct: rate_at_80pct(rates, median_ceiling(t)),
                p99_at_80pct_ms: at(t, rate_at_80pct(rates, median_ceiling(t)), |s| s.p99_ms).0,
            }
        })
        .collect();
    let ratio = |f: fn(&TargetSummary) -> Option<f64>| {
        let (s, d) = (f(targets.first()?)?, f(targets.get(1)?)?);
        (d >= SIPP_RESOLUTION_MS).then(|| s / d)
    };
    let added = |f: fn(&TargetSummary) -> Option<f64>| Some(f(targets.first()?)? - f(targets.get(1)?)?);
    Summary {
        reference_rate,
        ratio_ceiling: targets.get(1).and_then(|b| {
            let (a, b) = (targets[0].median_ceiling?, b.median_ceiling?);
            (b > 0.0).then(|| a / b)
        }),
        ratio_p50: ratio(|t| t.reference_p50_ms),
        ratio_p99: ratio(|t| t.reference_p99_ms),
        ratio_mean: ratio(|t| t.reference_mean_ms),
        ratio_cpu_per_call: targets.get(1).and_then(|b| {
            let (a, b) = (targets[0].reference_cpu_ms_per_call?, b.reference_cpu_ms_per_call?);
            (b > 0.0).then(|| a / b)
        }),
        added_p50_ms: added(|t| t.reference_p50_ms),
        added_p99_ms: added(|t| t.reference_p99_ms),
        added_mean_ms: added(|t| t.reference_mean_ms),
        cpu_by_rate: cpu_by_rate(rates, labels, ladders),
        targets,
    }
}

/// See [`CpuAtRate`]: the rates at which every target has at least one step with every call completed.
fn cpu_by_rate(rates: &[u32], labels: &[String], ladders: &[Ladder]) -> Vec<CpuAtRate> {
    rates
        .iter()
        .filter_map(|&rate| {
            let per_target: Vec<Vec<f64>> = labels
                .iter()
                .map(|t| {
                    ladders
                        .iter()
                        .filter(|l| &l.target == t)
                        .filter_map(|l| l.steps.iter().find(|s| s.rate == rate && s.error.is_none() && s.failed == 0))
                        .filter_map(|s| s.cpu_ms_per_call)
                        .collect()
                })
                .collect();
            let medians: Vec<f64> = per_target.iter().map(|v| median(v)).collect::<Option<_>>()?;
            let ratio = match medians[..] {
                [a, b] if b > 0.0 => Some(a / b),
                _ => None,
            };
            Some(CpuAtRate { rate, runs: per_target.iter().map(Vec::len).collect(), cpu_ms_per_call: medians, ratio })
        })
        .collect()
}

/// The highest of `rates` at or below 80 % of `ceiling`.
fn rate_at_80pct(rates: &[u32], ceiling: Option<f64>) -> Option<u32> {
    let limit = 0.8 * ceiling?;
    rates.iter().copied().filter(|&r| f64::from(r) <= limit).max()
}

/// The table printed at the end: ceilings, post-dial delay at the reference rate, CPU per call.
pub fn table(opts: &Options, summary: &Summary, pinned: bool) -> String {
    let mut out = delay_table(opts, summary, pinned);
    out.push_str(&cost_table(summary));
    out
}

/// CPU per call at the reference rate and the delay at 80 % of each target's own ceiling.
fn cost_table(summary: &Summary) -> String {
    let mut out = String::from("\n");
    let cpu = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.3}"));
    let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
    let rate = summary.reference_rate.map_or("-".to_owned(), |r| format!("{r}/s"));
    out.push_str(&format!(
        "{:<32}{:>18}{:>14}{:>14}\n",
        "cpu per call, delay at 80 %",
        format!("cpu ms/call @{rate}"),
        "80 % ceiling",
        "pdd p99 ms"
    ));
    for t in &summary.targets {
        out.push_str(&format!(
            "  {:<30}{:>18}{:>14}{:>14}\n",
            t.target,
            cpu(t.reference_cpu_ms_per_call),
            t.rate_at_80pct.map_or("-".to_owned(), |r| format!("{r}/s")),
            ms(t.p99_at_80pct_ms)
        ));
    }
    if let (Some(b), Some(r)) = (summary.targets.get(1), summary.ratio_cpu_per_call) {
        out.push_str(&format!("  {:<30}{r:>18.2}\n", format!("{}/{}", summary.targets[0].target, b.target)));
    }
    out.push_str(
        "  (CPU: utime+stime of the target's processes during the step, per completed call; clock ticks of 10 ms)\n",
    );
    if !summary.cpu_by_rate.is_empty() {
        out.push_str(&format!(
            "\n{:<32}{}\n",
            "cpu ms/call where all completed",
            summary.targets.iter().map(|t| format!("{:>20}", t.target)).collect::<String>()
        ));
        for r in &summary.cpu_by_rate {
            let cells: String = r
                .cpu_ms_per_call
                .iter()
                .zip(&r.runs)
                .map(|(c, n)| format!("{:>20}", format!("{c:.3} ({n})")))
                .collect();
            let ratio = r.ratio.map_or(String::new(), |x| format!("{x:>10.2}"));
            out.push_str(&format!("  {:<30}{cells}{ratio}\n", format!("{}/s", r.rate)));
        }
        out.push_str("  (median over the runs whose step completed every call, run count in brackets; the step may have failed the delay criterion; last column: ratio)\n");
    }
    out
}

fn delay_table(opts: &Options, summary: &Summary, pinned: bool) -> String {
    let mut out = String::new();
    let runs = opts.runs as usize;
    out.push_str(&format!(
        "sbc-bench cps: {}; {} run(s), steps of {} s, rates {:?}\n",
        opts.targets.iter().map(ToString::to_string).collect::<Vec<_>>().join(" vs "),
        opts.runs,
        opts.step_secs,
        opts.rates
    ));
    let any_local = opts.targets.iter().any(Target::started_here);
    out.push_str(&match (pinned, any_local) {
        (true, true) => format!(
            "pinning: the local target (sbc, or kamailio and rtpengine) on core {SBC_CORE}, SIPp UAC and UAS on core {SIPP_CORE}\n"
        ),
        (true, false) => format!("pinning: SIPp UAC and UAS on core {SIPP_CORE}; targets by address as they run\n"),
        (false, _) => "pinning: off (fewer than 2 cores)\n".to_owned(),
    });
    out.push_str(&format!(
        "a step passes with failed <= {MAX_FAILED_PCT} % and p99 post-dial delay (INVITE -> first 18x/200) <= {MAX_P99_MS} ms; ceiling = highest passing rate before the first failing step\n\n"
    ));
    out.push_str(&format!("{:<32}", "ceiling (calls/s)"));
    for r in 1..=runs {
        out.push_str(&format!("{:>9}", format!("run {r}")));
    }
    out.push_str(&format!("{:>9}\n", "median"));
    for t in &summary.targets {
        out.push_str(&format!("  {:<30}", t.target));
        for (c, capped) in t.ceilings.iter().zip(&t.capped_by_ladder) {
            let cell = c.map_or("none".to_owned(), |c| format!("{c}{}", if *capped { "+" } else { "" }));
            out.push_str(&format!("{cell:>9}"));
        }
        out.push_str(&format!("{:>9}\n", t.median_ceiling.map_or("-".to_owned(), |m| format!("{m:.0}"))));
    }
    let pair = summary.targets.get(1).map(|b| format!("{}/{}", summary.targets[0].target, b.target));
    if let (Some(pair), Some(r)) = (&pair, summary.ratio_ceiling) {
        out.push_str(&format!("  {:<30}{:>width$.2}\n", pair, r, width = 9 * (runs + 1)));
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
        "at the reference rate {rate}/s (highest ladder rate within every median ceiling; medians over runs)\n"
    ));
    out.push_str(&format!(
        "{:<32}{:>9}{:>9}{:>10}{:>11}{:>7}\n",
        "post-dial delay", "p50 ms", "p99 ms", "mean ms", "setup p99", "runs"
    ));
    let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
    let mean_ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
    for t in &summary.targets {
        out.push_str(&format!(
            "  {:<30}{:>9}{:>9}{:>10}{:>11}{:>7}\n",
            t.target,
            ms(t.reference_p50_ms),
            ms(t.reference_p99_ms),
            mean_ms(t.reference_mean_ms),
            ms(t.reference_setup_p99_ms),
            t.reference_runs
        ));
    }
    let Some(pair) = pair else {
        return out;
    };
    let ratio = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.2}"));
    out.push_str(&format!(
        "  {:<30}{:>9}{:>9}{:>10}\n",
        pair,
        ratio(summary.ratio_p50),
        ratio(summary.ratio_p99),
        ratio(summary.ratio_mean)
    ));
    let added = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:+.2}"));
    out.push_str(&format!(
        "  {:<30}{:>9}{:>9}{:>10}\n",
        format!("{} (ms)", pair.replace('/', " - ")),
        added(summary.added_p50_ms),
        added(summary.added_p99_ms),
        added(summary.added_mean_ms)
    ));
    out.push_str(
        "  (SIPp measures response times in whole milliseconds; a ratio is n/a when the baseline's figure is below 1 ms)\n",
    );
    out
}

/// The figure of a run: per target, post-dial delay p50 and p99 against the offered rate, and failed calls in
/// percent against the offered rate (medians over the runs that measured each rate).
pub fn plot(path: &Path, opts: &Options, ladders: &[Ladder]) -> Result<()> {
    use crate::plot::{Panel, Series};
    let per_rate = |label: &str, f: &dyn Fn(&Step) -> Option<f64>| -> Vec<(f64, f64)> {
        opts.rates
            .iter()
            .filter_map(|&r| {
                let v: Vec<f64> = ladders
                    .iter()
                    .filter(|l| l.target == label)
                    .filter_map(|l| l.steps.iter().find(|s| s.rate == r && s.error.is_none()))
                    .filter_map(f)
                    .collect();
                Some((f64::from(r), median(&v)?))
            })
            .collect()
    };
    let mut pdd = Vec::new();
    let mut failed = Vec::new();
    for label in &opts.labels {
        pdd.push(Series::new(format!("{label} p50"), per_rate(label, &|s| s.p50_ms)));
        pdd.push(Series { dashed: true, ..Series::new(format!("{label} p99"), per_rate(label, &|s| s.p99_ms)) });
        failed.push(Series::new(label.clone(), per_rate(label, &|s| Some(s.failed_pct))));
    }
    crate::plot::write_svg(
        path,
        &format!("sbc-bench cps: {}", opts.labels.join(" vs ")),
        &[
            Panel {
                title: "post-dial delay (INVITE -> first 18x/200), median over runs".into(),
                x_label: "offered rate (calls/s)".into(),
                y_label: "ms".into(),
                log_y: false,
                series: pdd,
            },
            Panel {
                title: "failed calls (not completed), median over runs".into(),
                x_label: "offered rate (calls/s)".into(),
                y_label: "% of calls placed".into(),
                log_y: false,
                series: failed,
            },
        ],
    )
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
            p95_ms: Some(p50 * 1.5),
            p99_ms: Some(p50 * 2.0),
            mean_ms: Some(p50),
            setup_p50_ms: Some(p50),
            setup_p99_ms: Some(p50 * 2.0),
            sbc_cpu_pct: None,
            core_busy_pct: None,
            cpu_ms_per_call: Some(p50 / 10.0),
            wall_secs: 5.0,
            sipp_exit: Some(0),
            error: None,
            pass,
        }
    }

    fn ladder(run: u32, target: &str, passes: &[(u32, bool)], p50: f64) -> Ladder {
        let mut l = Ladder::new(run, target);
        l.steps = passes.iter().map(|&(r, p)| step(r, p, p50)).collect();
        l.finish(400);
        l
    }

    #[test]
    fn idle_ticks_of_one_core() {
        let stat = "cpu  10 0 5 900 7 0 1 0 0 0\ncpu0 5 0 2 450 3 0 0 0 0 0\ncpu1 5 0 3 450 4 0 1 0 0 0\n";
        assert_eq!(parse_core_idle(stat, 1), Some(454));
        assert_eq!(parse_core_idle(stat, 0), Some(453));
        assert_eq!(parse_core_idle(stat, 2), None);
    }

    #[test]
    fn ceilings_and_reference() {
        let rates = [100, 200, 300, 400];
        let ladders = vec![
            ladder(1, "sbc", &[(100, true), (200, true), (300, false)], 2.0),
            ladder(1, "direct", &[(100, true), (200, true), (300, true), (400, true)], 1.0),
            ladder(2, "sbc", &[(100, true), (200, false)], 4.0),
            ladder(2, "direct", &[(100, true), (200, true), (300, true), (400, true)], 1.0),
            ladder(3, "sbc", &[(100, true), (200, true), (300, true), (400, false)], 3.0),
            ladder(3, "direct", &[(100, true), (200, true), (300, true), (400, true)], 1.0),
        ];
        assert_eq!(ladders[0].ceiling, Some(200));
        assert!(ladders[1].capped_by_ladder);
        let labels = ["sbc".to_owned(), "direct".to_owned()];
        let s = summarize(&rates, &labels, &ladders);
        assert_eq!(s.targets[0].ceilings, vec![Some(200), Some(100), Some(300)]);
        assert_eq!(s.targets[0].median_ceiling, Some(200.0));
        assert_eq!(s.targets[1].median_ceiling, Some(400.0));
        assert_eq!(s.reference_rate, Some(200));
        // Runs 1 and 3 passed 200/s (p50 2 and 3), run 2 failed it (measured, p50 4): median 3.
        assert_eq!(s.targets[0].reference_p50_ms, Some(3.0));
        assert_eq!((s.ratio_p50, s.added_p50_ms), (Some(3.0), Some(2.0)));
        assert_eq!(s.ratio_ceiling, Some(0.5));
        // CPU per call at the reference rate: medians 0.3 and 0.1 ms.
        let cpu = (s.targets[0].reference_cpu_ms_per_call.unwrap(), s.ratio_cpu_per_call.unwrap());
        assert!((cpu.0 - 0.3).abs() < 1e-9 && (cpu.1 - 3.0).abs() < 1e-9, "{cpu:?}");
        // 80 % of each target's own ceiling: 160/s -> the 100/s step, 320/s -> the 300/s step (p99 = 2 x p50).
        assert_eq!((s.targets[0].rate_at_80pct, s.targets[1].rate_at_80pct), (Some(100), Some(300)));
        assert_eq!((s.targets[0].p99_at_80pct_ms, s.targets[1].p99_at_80pct_ms), (Some(6.0), Some(2.0)));
        assert!(table(&opts(&rates, &labels), &s, true).contains("cpu ms/call @200/s"));
        // CPU per call wherever every target completed every call of a step, a step that failed the delay
        // criterion too; a step with failed calls does not count (run 3's 400/s here: no row for 400/s).
        let mut partial = ladders.clone();
        partial[4].steps[3].failed = 5;
        let s_partial = summarize(&rates, &labels, &partial);
        let rows: Vec<(u32, Vec<usize>)> = s_partial.cpu_by_rate.iter().map(|r| (r.rate, r.runs.clone())).collect();
        assert_eq!(rows, vec![(100, vec![3, 3]), (200, vec![3, 3]), (300, vec![2, 3])]);
        let r300 = &s_partial.cpu_by_rate[2];
        assert!((r300.cpu_ms_per_call[0] - 0.25).abs() < 1e-9 && (r300.ratio.unwrap() - 2.5).abs() < 1e-9, "{r300:?}");
        assert!(table(&opts(&rates, &labels), &s_partial, true).contains("cpu ms/call where all completed"));
        // One target alone: no ratios.
        let one = summarize(&rates, &labels[..1], &ladders);
        assert_eq!((one.targets.len(), one.ratio_p50, one.ratio_ceiling), (1, None, None));
        assert_eq!(one.reference_rate, Some(200));
        // Below SIPp's resolution there is no ratio, only the difference.
        let fast: Vec<Ladder> = ladders
            .iter()
            .cloned()
            .map(|mut l| {
                if l.target == "direct" {
                    l.steps.iter_mut().for_each(|s| s.p50_ms = Some(0.0));
                }
                l
            })
            .collect();
        let s = summarize(&rates, &labels, &fast);
        assert_eq!((s.ratio_p50, s.added_p50_ms), (None, Some(3.0)));
    }

    fn opts(rates: &[u32], labels: &[String]) -> Options {
        Options {
            runs: 3,
            step_secs: 5,
            rates: rates.to_vec(),
            targets: vec![Target::Local(None), Target::KamailioRtpengine],
            labels: labels.to_vec(),
            media: true,
        }
    }

    #[test]
    fn media_quarantine_is_shortened_only_with_media() {
        let media = media_config(crate::target::local_config(true));
        assert!(media.contains("[media]\nquarantine = \"1s\"\ninterfaces"), "{media}");
        assert_eq!(media.matches("quarantine").count(), 1);
        let plain = crate::target::local_config(false);
        assert_eq!(media_config(plain.clone()), plain);
    }

    #[test]
    fn runs_alternate_the_order() {
        assert_eq!((order(1, 2), order(2, 2), order(3, 1)), (vec![0, 1], vec![1, 0], vec![0]));
    }

    #[test]
    fn first_step_failing_means_no_ceiling() {
        let l = ladder(1, "sbc", &[(100, false)], 1.0);
        assert_eq!((l.ceiling, l.capped_by_ladder), (None, false));
    }
}
