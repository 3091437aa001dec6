//! `sbc-bench overload`: what a target does with more new calls than it can take (RFC 6357's goal: goodput stays
//! near the ceiling, no congestion collapse).
//!
//! The ceiling is given (`--ceiling`) or measured first with a short `cps` ladder on the first target. Then every
//! run offers, for every target (interleaved run by run, as `cps` does), `factor × ceiling` new calls per second for
//! each factor of the ladder (0.5x to 3x by default), hold time 0, with a caller for which a 503 is a normal answer
//! (benches/sipp/uac_overload.xml: the 503 is ACKed and the call ends). Per step: the rate the caller really
//! offered, accepted calls per second (goodput: answered 200 and completed), 503s per second, calls that failed
//! otherwise, the post-dial delay of accepted calls, the target's CPU, the busy share of SIPp's core (the generator's
//! limit), and for a local `sbc` its own view: the least `sbc_overload_admission` seen during the step, and the
//! 503s and queue drops it counted. After the ladder, a recovery step at a normal rate says whether the target
//! came back by itself (no 503s).

use crate::calls::{self, cpu_ticks, CLOCK_TICKS_PER_SEC};
use crate::cps::{self, SBC_CORE, SIPP_CORE};
use crate::stats::{median, percentile};
use crate::target::{CallPath, Harness, Target};
use ::tests::sipp::{Run, Sipp};
use ::tests::Sbc;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Target: goodput at the top factor at least this share of the ceiling.
pub const TARGET_GOODPUT_SHARE: f64 = 0.9;
/// Target: the 99th percentile of accepted calls' post-dial delay under this, ms.
pub const TARGET_PDD_P99_MS: f64 = 200.0;
/// The caller offered less than this share of the rate asked: the generator, not the target, was the limit.
pub const GENERATOR_SHORTFALL: f64 = 0.95;
/// SIPp (UAC and UAS together, on one core) busier than this (percent of a core) during the offer: the generator
/// was at its limit.
pub const GENERATOR_BUSY_PCT: f64 = 90.0;
/// How often a local `sbc`'s metrics are read during a step (its admission gauge is refreshed every second).
const METRICS_EVERY: Duration = Duration::from_millis(500);
/// The scenario the caller runs.
const UAC_SCENARIO: &str = "uac_overload.xml";

/// What `overload` was asked to do.
#[derive(Debug, Clone, Serialize)]
pub struct Options {
    /// Complete runs (each: every factor, then the recovery step, for every target).
    pub runs: u32,
    /// Seconds of traffic per step.
    pub step_secs: u32,
    /// Offered load as multiples of the ceiling, ascending.
    pub factors: Vec<f64>,
    /// The rate of the recovery step after the ladder, as a multiple of the ceiling; `None`: no recovery step.
    pub recovery_factor: Option<f64>,
    /// The ceiling as given (`--ceiling`); `None`: measured first.
    pub ceiling_given: Option<u32>,
    /// The ladder that measures the ceiling when it is not given, and its step length.
    pub ceiling_rates: Vec<u32>,
    pub ceiling_step_secs: u32,
    /// The targets: the first's ceiling is the reference; a second one is offered the same rates.
    pub targets: Vec<Target>,
    /// Their names in output, JSON and plots.
    pub labels: Vec<String>,
}

impl Options {
    /// The offered rate of `factor` for `ceiling` (at least 1 call/s).
    pub fn rate(factor: f64, ceiling: u32) -> u32 {
        ((factor * f64::from(ceiling)).round() as u32).max(1)
    }
}

/// The figures of one step.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Offered load as a multiple of the ceiling.
    pub factor: f64,
    /// The recovery step after the ladder.
    pub recovery: bool,
    /// Offered rate, calls per second.
    pub rate: u32,
    /// Calls placed: rate × step length, bounded by [`cps::MAX_CALLS_PER_STEP`].
    pub calls: u32,
    /// The rate the caller really offered: calls over the time their INVITEs took to leave (from SIPp's
    /// `-trace_rtt` time stamps).
    pub achieved_cps: Option<f64>,
    /// SIPp's own average call rate over its run (`CallRate(C)`, the tail included).
    pub sipp_call_rate: Option<f64>,
    /// The CPU of SIPp (UAC and UAS, which share a core) while the calls were offered, percent of one core.
    pub sipp_cpu_pct: Option<f64>,
    /// The caller could not offer the rate asked (below [`GENERATOR_SHORTFALL`], or its core above
    /// [`GENERATOR_BUSY_PCT`]): the step measures the generator as much as the target.
    pub generator_limited: bool,
    /// Seconds over which the calls were offered (the divisor of the per-second figures).
    pub offer_secs: f64,
    /// Calls answered 200 and completed (goodput), refused with 503, and neither (timeouts, other answers).
    pub accepted: u64,
    pub refused: u64,
    pub failed: u64,
    /// The same per second of the offer.
    pub goodput_cps: f64,
    pub refused_cps: f64,
    pub failed_cps: f64,
    /// Post-dial delay of accepted calls (INVITE → first 180/183/200), ms: samples, median, 99th percentile.
    pub pdd_samples: usize,
    pub pdd_p50_ms: Option<f64>,
    pub pdd_p99_ms: Option<f64>,
    /// INVITE → 503 of refused calls, 99th percentile, ms.
    pub refused_p99_ms: Option<f64>,
    /// SIPp's retransmissions (of INVITEs and BYEs): they rise when answers are late.
    pub retransmissions: Option<u64>,
    /// The target's CPU while the calls were offered, percent of one core (a local `sbc`).
    pub sbc_cpu_pct: Option<f64>,
    /// The least `sbc_overload_admission` read during the step (1: every new call admitted).
    pub admission_min: Option<f64>,
    /// The most `sbc_sip_queue_delay_max_seconds` read during the step, ms: the longest wait of a new request in
    /// the sbc's queue (per second).
    pub queue_delay_max_ms: Option<f64>,
    /// What the `sbc` counted during the step: 503s of overload control (`sbc_overload_rejected_total`) and new
    /// requests dropped at its full queue (`sbc_messages_dropped_total{reason="queue_full"}`).
    pub sbc_overload_rejected: Option<f64>,
    pub sbc_queue_full_drops: Option<f64>,
    /// Wall time of the caller's run, seconds.
    pub wall_secs: f64,
    /// SIPp's exit code.
    pub sipp_exit: Option<i32>,
    /// Why the step could not be measured, if it could not.
    pub error: Option<String>,
}

/// One target's steps in one run.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    /// 1-based.
    pub run: u32,
    /// The target's label.
    pub target: String,
    pub steps: Vec<Step>,
}

/// What a run of the scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The ceiling the factors multiply, calls per second.
    pub ceiling: u32,
    /// Whether it was measured here (else given).
    pub ceiling_measured: bool,
    /// The `cps` ladder that measured it, if one did.
    pub ceiling_ladder: Option<cps::Ladder>,
    /// Every series, in the order measured.
    pub series: Vec<Series>,
    /// Ctrl-C or SIGTERM ended the run early.
    pub interrupted: bool,
}

fn stopped() -> bool {
    cps::STOP.load(Ordering::SeqCst)
}

/// Runs the scenario. `harness` is removed by the caller.
pub fn run(opts: &Options, harness: &Harness) -> Result<Outcome> {
    let pin = cps::pinning_possible();
    if pin {
        eprintln!("pinning: a local sbc on core {SBC_CORE}, SIPp (UAC and UAS) on core {SIPP_CORE}");
    } else {
        eprintln!("pinning: off (fewer than 2 cores); figures are less comparable");
    }
    let (ceiling, ceiling_ladder) = match opts.ceiling_given {
        Some(c) => (c, None),
        None => {
            let ladder = measure_ceiling(opts, harness)?;
            let Some(c) = ladder.ceiling else {
                bail!(
                    "the ceiling could not be measured: {} failed the first step of {:?} (give --ceiling)",
                    opts.labels[0],
                    opts.ceiling_rates
                );
            };
            if ladder.capped_by_ladder {
                eprintln!("ceiling: every step passed; {c}/s is the top of the ladder, the real ceiling is higher");
            }
            (c, Some(ladder))
        }
    };
    eprintln!(
        "ceiling {ceiling}/s ({}); offering {}",
        if ceiling_ladder.is_some() { "measured" } else { "given" },
        opts.factors.iter().map(|f| format!("{f}x = {}/s", Options::rate(*f, ceiling))).collect::<Vec<_>>().join(", ")
    );
    let mut series = Vec::new();
    'runs: for run in 1..=opts.runs {
        for i in cps::order(run, opts.targets.len()) {
            if stopped() {
                break 'runs;
            }
            let (target, label) = (&opts.targets[i], &opts.labels[i]);
            let mut sbc = if target.is_local() {
                let config = crate::target::local_config(false);
                let name = format!("bench-overload-run{run}");
                Some(harness.start_local(target, &name, &config, pin.then_some(SBC_CORE))?)
            } else {
                None
            };
            let path = harness.path(target);
            let mut s = Series { run, target: label.clone(), steps: Vec::new() };
            let ladder = opts.factors.iter().map(|&f| (f, false));
            for (factor, recovery) in ladder.chain(opts.recovery_factor.map(|f| (f, true))) {
                // A pause between steps, longer before the recovery step: the load has fallen, and the target
                // is given the seconds it has to come back by itself.
                std::thread::sleep(Duration::from_secs(if recovery { 3 } else { 1 }));
                if stopped() {
                    break;
                }
                let rate = Options::rate(factor, ceiling);
                let step = step(&path, factor, recovery, rate, opts.step_secs, pin, sbc.as_ref());
                if stopped() {
                    eprintln!("[run {run}/{}] {label} {rate}/s: interrupted, step discarded", opts.runs);
                    break;
                }
                eprintln!("{}", progress(opts.runs, run, label, &step));
                s.steps.push(step);
                if let Some(sbc) = sbc.as_mut() {
                    if let Some(status) = sbc.exit_status() {
                        bail!(
                            "sbc exited ({status}) during run {run} at {rate}/s; log ({}, kept):\n{}",
                            sbc.log.display(),
                            sbc.log_tail()
                        );
                    }
                }
            }
            drop(sbc);
            if !s.steps.is_empty() {
                series.push(s);
            }
        }
    }
    Ok(Outcome { ceiling, ceiling_measured: ceiling_ladder.is_some(), ceiling_ladder, series, interrupted: stopped() })
}

/// The first target's ceiling: one short `cps` ladder (with this scenario's step length for the ceiling).
fn measure_ceiling(opts: &Options, harness: &Harness) -> Result<cps::Ladder> {
    eprintln!("measuring the ceiling of {} with a cps ladder {:?}", opts.labels[0], opts.ceiling_rates);
    let cps_opts = cps::Options {
        runs: 1,
        step_secs: opts.ceiling_step_secs,
        rates: opts.ceiling_rates.clone(),
        targets: vec![opts.targets[0].clone()],
        labels: vec![opts.labels[0].clone()],
        media: false,
    };
    let out = cps::run(&cps_opts, harness, None)?;
    if out.interrupted {
        bail!("interrupted while measuring the ceiling");
    }
    out.ladders.into_iter().next().context("the ceiling ladder measured nothing")
}

/// One step: a UAS for this step's calls, the overload caller at `rate`, and a reader of the sbc's metrics.
fn step(path: &CallPath, factor: f64, recovery: bool, rate: u32, step_secs: u32, pin: bool, sbc: Option<&Sbc>) -> Step {
    let calls = rate.saturating_mul(step_secs).clamp(1, cps::MAX_CALLS_PER_STEP);
    let mut step = Step {
        factor,
        recovery,
        rate,
        calls,
        achieved_cps: None,
        sipp_call_rate: None,
        sipp_cpu_pct: None,
        generator_limited: false,
        offer_secs: f64::from(calls) / f64::from(rate),
        accepted: 0,
        refused: 0,
        failed: u64::from(calls),
        goodput_cps: 0.0,
        refused_cps: 0.0,
        failed_cps: 0.0,
        pdd_samples: 0,
        pdd_p50_ms: None,
        pdd_p99_ms: None,
        refused_p99_ms: None,
        retransmissions: None,
        sbc_cpu_pct: None,
        admission_min: None,
        queue_delay_max_ms: None,
        sbc_overload_rejected: None,
        sbc_queue_full_drops: None,
        wall_secs: 0.0,
        sipp_exit: None,
        error: None,
    };
    if let Err(e) = measure(path, &mut step, step_secs, pin, sbc) {
        step.error = Some(format!("{e:#}"));
    }
    step
}

/// The counters of a local `sbc` that a step reads before and after.
fn sbc_counters(sbc: &Sbc) -> Option<(f64, f64)> {
    let text = sbc.http_get("/metrics").ok()?;
    // A counter is exported from its first increment on: absent is zero.
    let count = |name: &str| sample(&text, name).unwrap_or(0.0);
    Some((count("sbc_overload_rejected_total"), count("sbc_messages_dropped_total{reason=\"queue_full\"")))
}

/// The sum of the Prometheus samples in `text` whose line starts with `prefix`; `None` when there is none.
pub fn sample(text: &str, prefix: &str) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(prefix) && l.as_bytes().get(prefix.len()).is_some_and(|b| b" {},".contains(b)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

fn measure(path: &CallPath, step: &mut Step, step_secs: u32, pin: bool, sbc: Option<&Sbc>) -> Result<()> {
    let limit = Duration::from_secs(u64::from(step_secs) + 20);
    let core = pin.then_some(SIPP_CORE);
    let mut uas =
        calls::uas(path, step.calls.saturating_mul(2).saturating_add(1000), limit + Duration::from_secs(5), core)
            .spawn()
            .context("starting the UAS")?;
    uas.wait_listening(path.uas.ns.as_deref(), path.uas.port, Duration::from_secs(5))?;
    let uac = uac(path, step.calls, step.rate, limit, core);
    let counters_before = sbc.and_then(sbc_counters);
    let offer = Duration::from_secs_f64(f64::from(step.calls) / f64::from(step.rate));
    let started = Instant::now();
    let done = AtomicBool::new(false);
    let (result, watched) = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| watch(sbc, offer, &done));
        let result = uac.run();
        done.store(true, Ordering::SeqCst);
        (result, watcher.join().unwrap_or_default())
    });
    step.wall_secs = started.elapsed().as_secs_f64();
    step.sbc_cpu_pct = watched.sbc_cpu_pct;
    step.sipp_cpu_pct = watched.sipp_cpu_pct;
    step.admission_min = watched.admission_min;
    step.queue_delay_max_ms = watched.queue_delay_max.map(|s| s * 1000.0);
    if let (Some(before), Some(after)) = (counters_before, sbc.and_then(sbc_counters)) {
        step.sbc_overload_rejected = Some(after.0 - before.0);
        step.sbc_queue_full_drops = Some(after.1 - before.1);
    }
    let uas_dir = uas.dir().to_owned();
    drop(uas);
    let _ = std::fs::remove_dir_all(uas_dir);
    let run = result.context("running the UAC")?;
    let figures = read_figures(step, &run);
    let _ = std::fs::remove_dir_all(&run.dir);
    figures
}

/// What is read while a step runs.
#[derive(Debug, Default)]
struct Watched {
    sbc_cpu_pct: Option<f64>,
    sipp_cpu_pct: Option<f64>,
    admission_min: Option<f64>,
    queue_delay_max: Option<f64>,
}

/// Until `done`: the sbc's admission and queue delay every [`METRICS_EVERY`]; the CPU of the sbc and of this
/// process's SIPp children over the `offer` (from the start to its end, or to `done` if that comes first).
fn watch(sbc: Option<&Sbc>, offer: Duration, done: &AtomicBool) -> Watched {
    let mut w = Watched::default();
    let started = Instant::now();
    let sbc_at_start = sbc.and_then(|s| cpu_ticks(s.id()));
    let sipp_at_start = sipp_ticks();
    let mut cpu_taken = false;
    let take_cpu = |w: &mut Watched| {
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        let pct = |ticks: u64| 100.0 * ticks as f64 / CLOCK_TICKS_PER_SEC / secs;
        if let (Some(before), Some(after)) = (sbc_at_start, sbc.and_then(|s| cpu_ticks(s.id()))) {
            w.sbc_cpu_pct = Some(pct(after.saturating_sub(before)));
        }
        // A SIPp that started after the first reading (the UAC) counts from zero.
        let used: u64 = sipp_ticks()
            .iter()
            .map(|(pid, t)| t.saturating_sub(sipp_at_start.iter().find(|(p, _)| p == pid).map_or(0, |(_, t0)| *t0)))
            .sum();
        w.sipp_cpu_pct = Some(pct(used));
    };
    while !done.load(Ordering::SeqCst) {
        if !cpu_taken && started.elapsed() >= offer {
            take_cpu(&mut w);
            cpu_taken = true;
        }
        if let Some(text) = sbc.and_then(|s| s.http_get("/metrics").ok()) {
            if let Some(a) = sample(&text, "sbc_overload_admission") {
                w.admission_min = Some(w.admission_min.map_or(a, |l| l.min(a)));
            }
            if let Some(d) = sample(&text, "sbc_sip_queue_delay_max_seconds") {
                w.queue_delay_max = Some(w.queue_delay_max.map_or(d, |m| m.max(d)));
            }
        }
        let nap = if cpu_taken { METRICS_EVERY } else { METRICS_EVERY.min(offer.saturating_sub(started.elapsed())) };
        std::thread::sleep(nap.max(Duration::from_millis(10)));
    }
    if !cpu_taken {
        take_cpu(&mut w);
    }
    w
}

/// CPU ticks of every `sipp` process that is a child of this one (the UAS and UAC of the step: `ip netns exec`
/// and `taskset` exec SIPp, so it is the direct child), by pid.
fn sipp_ticks() -> Vec<(u32, u64)> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (head, rest) = stat.rsplit_once(')')?;
            let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == me && head.ends_with("(sipp")).then_some(())?;
            Some((pid, cpu_ticks(pid)?))
        })
        .collect()
}

/// The overload caller: as [`calls::uac`], with the scenario for which a 503 is an answer.
fn uac(path: &CallPath, calls: u32, rate: u32, limit: Duration, core: Option<usize>) -> Sipp {
    calls::uac_running(UAC_SCENARIO, path, calls, rate, Duration::ZERO, limit, core)
}

/// One line of a `-trace_rtt` file: when SIPp took the measurement (ms on its own clock), the time measured (ms),
/// and which response-time measurement it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Rtt {
    pub at_ms: f64,
    pub ms: f64,
    pub name: String,
}

/// The lines of a `-trace_rtt` file (`Date_ms;response_time_ms;rtd_name`; the header does not parse and is
/// skipped).
pub fn parse_rtt(text: &str) -> Vec<Rtt> {
    text.lines()
        .filter_map(|line| {
            let mut cols = line.split(';');
            let at_ms = cols.next()?.trim().parse().ok()?;
            let ms = cols.next()?.trim().parse().ok()?;
            Some(Rtt { at_ms, ms, name: cols.next()?.trim().to_owned() })
        })
        .collect()
}

/// What the caller's response times say about a step: calls offered (one `offered` each, dated when the INVITE
/// left), accepted calls (one `setup` each), refused ones (one `refused` each), the post-dial delays of accepted
/// calls.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answers {
    pub offered: usize,
    pub answered: usize,
    pub refused: Vec<f64>,
    pub pdd: Vec<f64>,
    /// First and last INVITE, ms on SIPp's clock.
    pub invites: Option<(f64, f64)>,
}

/// Sorts a `-trace_rtt` file's lines into [`Answers`].
pub fn answers(rtts: &[Rtt]) -> Answers {
    let mut a = Answers::default();
    for r in rtts {
        match r.name.as_str() {
            "pdd" => a.pdd.push(r.ms),
            "setup" => a.answered += 1,
            "refused" => a.refused.push(r.ms),
            "offered" => {
                a.offered += 1;
                let sent = r.at_ms - r.ms;
                a.invites = Some(a.invites.map_or((sent, sent), |(lo, hi)| (lo.min(sent), hi.max(sent))));
            }
            _ => {}
        }
    }
    a
}

fn read_figures(step: &mut Step, run: &Run) -> Result<()> {
    let opt = |column: &str| Some(run.count(column)).filter(|&n| n != u64::MAX);
    step.sipp_exit = Some(run.exit_code);
    step.retransmissions = opt("Retransmissions(C)");
    step.sipp_call_rate = run.stats.get("CallRate(C)").and_then(|v| v.trim().parse().ok());
    let file = std::fs::read_dir(&run.dir)
        .with_context(|| format!("listing {}", run.dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with("_rtt.csv")));
    let text = match file {
        Some(f) => std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?,
        None => String::new(),
    };
    let a = answers(&parse_rtt(&text));
    let successful = opt("SuccessfulCall(C)").unwrap_or(0).min(u64::from(step.calls));
    step.refused = a.refused.len() as u64;
    // SIPp counts a refused call (503, ACK, end) as successful: the accepted ones are the rest.
    step.accepted = successful.saturating_sub(step.refused);
    step.failed = u64::from(step.calls).saturating_sub(successful);
    if let Some((first, last)) = a.invites.filter(|_| a.offered >= 2) {
        // n INVITEs at rate r leave over (n - 1) / r: one interval more is the offer's length.
        let span = (last - first) / 1000.0;
        let achieved = (a.offered - 1) as f64 / span.max(1e-3);
        step.achieved_cps = Some(achieved);
        step.offer_secs = span + 1.0 / achieved;
    }
    step.offer_secs = step.offer_secs.max(f64::from(step.calls) / f64::from(step.rate));
    step.goodput_cps = step.accepted as f64 / step.offer_secs;
    step.refused_cps = step.refused as f64 / step.offer_secs;
    step.failed_cps = step.failed as f64 / step.offer_secs;
    step.generator_limited = step.achieved_cps.is_some_and(|r| r < GENERATOR_SHORTFALL * f64::from(step.rate))
        || step.sipp_cpu_pct.is_some_and(|b| b > GENERATOR_BUSY_PCT);
    step.pdd_samples = a.pdd.len();
    step.pdd_p50_ms = percentile(&a.pdd, 50.0);
    step.pdd_p99_ms = percentile(&a.pdd, 99.0);
    step.refused_p99_ms = percentile(&a.refused, 99.0);
    Ok(())
}

fn progress(runs: u32, run: u32, label: &str, s: &Step) -> String {
    let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
    let opt = |v: Option<f64>, digits: usize| v.map_or("-".to_owned(), |v| format!("{v:.digits$}"));
    let mut line = format!(
        "[run {run}/{runs}] {label:<8} {:>5} {:>5}/s: offered {:>7}/s, goodput {:>7.1}/s, 503 {:>7.1}/s, failed {:>6.1}/s, pdd p50 {:>4} ms, p99 {:>5} ms, retrans {:>5}, sbc cpu {:>4}, sipp cpu {:>4}, admission min {:>5}, queue delay max {:>5} ms, queue_full {:>5}{}",
        if s.recovery { "recov".to_owned() } else { format!("{}x", s.factor) },
        s.rate,
        opt(s.achieved_cps, 1),
        s.goodput_cps,
        s.refused_cps,
        s.failed_cps,
        ms(s.pdd_p50_ms),
        ms(s.pdd_p99_ms),
        s.retransmissions.map_or("-".to_owned(), |v| v.to_string()),
        s.sbc_cpu_pct.map_or("-".to_owned(), |v| format!("{v:.0}%")),
        s.sipp_cpu_pct.map_or("-".to_owned(), |v| format!("{v:.0}%")),
        opt(s.admission_min, 2),
        opt(s.queue_delay_max_ms, 0),
        opt(s.sbc_queue_full_drops, 0),
        if s.generator_limited { " (generator-limited)" } else { "" }
    );
    if let Some(e) = &s.error {
        line.push_str(&format!(" ({})", e.lines().next().unwrap_or("")));
    }
    line
}

/// One factor of one target, over the runs (medians).
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub factor: f64,
    pub recovery: bool,
    pub rate: u32,
    pub runs: usize,
    pub achieved_cps: Option<f64>,
    pub goodput_cps: Option<f64>,
    pub refused_cps: Option<f64>,
    pub failed_cps: Option<f64>,
    pub pdd_p50_ms: Option<f64>,
    pub pdd_p99_ms: Option<f64>,
    pub sbc_cpu_pct: Option<f64>,
    pub sipp_cpu_pct: Option<f64>,
    pub admission_min: Option<f64>,
    pub queue_delay_max_ms: Option<f64>,
    pub sbc_queue_full_drops: Option<f64>,
    /// In how many runs the generator was the limit.
    pub generator_limited_runs: usize,
}

/// One target over all runs.
#[derive(Debug, Clone, Serialize)]
pub struct TargetSummary {
    pub target: String,
    /// Per factor of the ladder, then the recovery step.
    pub points: Vec<Point>,
    /// Goodput at the top factor over the ceiling.
    pub top_goodput_share: Option<f64>,
    /// Post-dial delay p99 of accepted calls at the top factor, ms.
    pub top_pdd_p99_ms: Option<f64>,
    /// Both targets met (goodput share ≥ [`TARGET_GOODPUT_SHARE`], PDD p99 < [`TARGET_PDD_P99_MS`]).
    pub target_met: Option<bool>,
    /// 503s per second in the recovery step (0: recovered by itself).
    pub recovery_refused_cps: Option<f64>,
}

/// The summary over runs.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub ceiling: u32,
    pub targets: Vec<TargetSummary>,
}

/// Medians per factor and target, and the verdicts at the top factor.
pub fn summarize(opts: &Options, ceiling: u32, series: &[Series]) -> Summary {
    let targets = opts
        .labels
        .iter()
        .map(|label| {
            let keys = opts.factors.iter().map(|&f| (f, false)).chain(opts.recovery_factor.map(|f| (f, true)));
            let points: Vec<Point> = keys
                .filter_map(|(factor, recovery)| {
                    let steps: Vec<&Step> = series
                        .iter()
                        .filter(|s| &s.target == label)
                        .filter_map(|s| s.steps.iter().find(|x| x.factor == factor && x.recovery == recovery))
                        .filter(|x| x.error.is_none())
                        .collect();
                    if steps.is_empty() {
                        return None;
                    }
                    let med =
                        |f: fn(&Step) -> Option<f64>| median(&steps.iter().filter_map(|s| f(s)).collect::<Vec<_>>());
                    Some(Point {
                        factor,
                        recovery,
                        rate: Options::rate(factor, ceiling),
                        runs: steps.len(),
                        achieved_cps: med(|s| s.achieved_cps),
                        goodput_cps: med(|s| Some(s.goodput_cps)),
                        refused_cps: med(|s| Some(s.refused_cps)),
                        failed_cps: med(|s| Some(s.failed_cps)),
                        pdd_p50_ms: med(|s| s.pdd_p50_ms),
                        pdd_p99_ms: med(|s| s.pdd_p99_ms),
                        sbc_cpu_pct: med(|s| s.sbc_cpu_pct),
                        sipp_cpu_pct: med(|s| s.sipp_cpu_pct),
                        admission_min: med(|s| s.admission_min),
                        queue_delay_max_ms: med(|s| s.queue_delay_max_ms),
                        sbc_queue_full_drops: med(|s| s.sbc_queue_full_drops),
                        generator_limited_runs: steps.iter().filter(|s| s.generator_limited).count(),
                    })
                })
                .collect();
            let top = opts.factors.last().and_then(|&f| points.iter().find(|p| p.factor == f && !p.recovery));
            let top_goodput_share = top.and_then(|p| p.goodput_cps).map(|g| g / f64::from(ceiling.max(1)));
            let top_pdd_p99_ms = top.and_then(|p| p.pdd_p99_ms);
            TargetSummary {
                target: label.clone(),
                top_goodput_share,
                top_pdd_p99_ms,
                target_met: top_goodput_share
                    .zip(top_pdd_p99_ms)
                    .map(|(g, p)| g >= TARGET_GOODPUT_SHARE && p < TARGET_PDD_P99_MS),
                recovery_refused_cps: points.iter().find(|p| p.recovery).and_then(|p| p.refused_cps),
                points,
            }
        })
        .collect();
    Summary { ceiling, targets }
}

/// The table printed at the end.
pub fn table(opts: &Options, outcome: &Outcome, summary: &Summary) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "sbc-bench overload: {}; {} run(s), steps of {} s, factors {:?} of the ceiling{}\n",
        opts.targets.iter().map(ToString::to_string).collect::<Vec<_>>().join(" vs "),
        opts.runs,
        opts.step_secs,
        opts.factors,
        opts.recovery_factor.map_or(String::new(), |f| format!(", then recovery at {f}x"))
    ));
    out.push_str(&format!(
        "ceiling {}/s ({}); per-second figures are per second of the offer; medians over runs\n\n",
        summary.ceiling,
        if outcome.ceiling_measured {
            format!("measured with a cps ladder, steps of {} s", opts.ceiling_step_secs)
        } else {
            "given".to_owned()
        }
    ));
    let ms = |v: Option<f64>, d: usize| v.map_or("-".to_owned(), |v| format!("{v:.d$}"));
    for t in &summary.targets {
        out.push_str(&format!("{}\n", t.target));
        out.push_str(&format!(
            "  {:>6} {:>7} {:>9} {:>9} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10} {:>10}\n",
            "factor",
            "rate/s",
            "offered/s",
            "goodput/s",
            "503/s",
            "fail/s",
            "pdd p50",
            "pdd p99",
            "sbc cpu",
            "sipp cpu",
            "admit min",
            "qdelay max",
            "queue_full"
        ));
        for p in &t.points {
            out.push_str(&format!(
                "  {:>6} {:>7} {:>9} {:>9} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10} {:>10}{}\n",
                if p.recovery { format!("{}x r", p.factor) } else { format!("{}x", p.factor) },
                p.rate,
                ms(p.achieved_cps, 0),
                ms(p.goodput_cps, 0),
                ms(p.refused_cps, 0),
                ms(p.failed_cps, 1),
                ms(p.pdd_p50_ms, 0),
                ms(p.pdd_p99_ms, 0),
                p.sbc_cpu_pct.map_or("-".to_owned(), |v| format!("{v:.0}%")),
                p.sipp_cpu_pct.map_or("-".to_owned(), |v| format!("{v:.0}%")),
                ms(p.admission_min, 2),
                p.queue_delay_max_ms.map_or("-".to_owned(), |v| format!("{v:.0} ms")),
                ms(p.sbc_queue_full_drops, 0),
                if p.generator_limited_runs > 0 {
                    format!("  generator-limited in {}/{} run(s)", p.generator_limited_runs, p.runs)
                } else {
                    String::new()
                }
            ));
        }
        let top = opts.factors.last().copied().unwrap_or(0.0);
        out.push_str(&format!(
            "  at {top}x: goodput {} of the ceiling (target >= {:.0} %), accepted calls' pdd p99 {} ms (target < {TARGET_PDD_P99_MS:.0} ms): {}\n",
            t.top_goodput_share.map_or("-".to_owned(), |g| format!("{:.1} %", 100.0 * g)),
            100.0 * TARGET_GOODPUT_SHARE,
            ms(t.top_pdd_p99_ms, 0),
            match t.target_met {
                Some(true) => "met",
                Some(false) => "NOT met",
                None => "not measured",
            }
        ));
        if let Some(r) = t.recovery_refused_cps {
            out.push_str(&format!(
                "  recovery ({}x after the ladder): {} 503/s{}\n",
                opts.recovery_factor.unwrap_or(0.0),
                ms(Some(r), 1),
                if r == 0.0 { " (recovered by itself)" } else { "" }
            ));
        }
        out.push('\n');
    }
    out.push_str(
        "(offered: the rate SIPp really offered; sbc cpu and sipp cpu (UAC and UAS): percent of one core while the\n",
    );
    out.push_str(
        " calls were offered; admit min: the least sbc_overload_admission read during the step; queue_full: new\n",
    );
    out.push_str(" requests the sbc dropped at its full queue)\n");
    out
}

/// The figure: goodput and 503s per second against the offered rate (with the ceiling), and the post-dial delay
/// p50/p99 of accepted calls against the offered rate, per target (medians over runs).
pub fn plot(path: &Path, opts: &Options, summary: &Summary) -> Result<()> {
    use crate::plot::{Panel, Series as Line};
    let mut rates = Vec::new();
    let mut delay = Vec::new();
    let top = opts.factors.last().copied().unwrap_or(1.0);
    let x_max = f64::from(Options::rate(top, summary.ceiling));
    rates.push(Line {
        dashed: true,
        ..Line::new(
            format!("ceiling {}/s", summary.ceiling),
            vec![(0.0, f64::from(summary.ceiling)), (x_max, f64::from(summary.ceiling))],
        )
    });
    for t in &summary.targets {
        let points = |f: fn(&Point) -> Option<f64>| -> Vec<(f64, f64)> {
            t.points.iter().filter(|p| !p.recovery).filter_map(|p| Some((f64::from(p.rate), f(p)?))).collect()
        };
        rates.push(Line::new(format!("{} goodput", t.target), points(|p| p.goodput_cps)));
        rates.push(Line { dashed: true, ..Line::new(format!("{} 503/s", t.target), points(|p| p.refused_cps)) });
        delay.push(Line::new(format!("{} p50", t.target), points(|p| p.pdd_p50_ms)));
        delay.push(Line { dashed: true, ..Line::new(format!("{} p99", t.target), points(|p| p.pdd_p99_ms)) });
    }
    crate::plot::write_svg(
        path,
        &format!("sbc-bench overload: {} (ceiling {}/s)", opts.labels.join(" vs "), summary.ceiling),
        &[
            Panel {
                title: "accepted calls (goodput, solid) and 503s (dashed) per second, median over runs".into(),
                x_label: "offered rate (calls/s)".into(),
                y_label: "calls/s".into(),
                log_y: false,
                series: rates,
            },
            Panel {
                title: "post-dial delay of accepted calls, p50 (solid) and p99 (dashed), median over runs".into(),
                x_label: "offered rate (calls/s)".into(),
                y_label: "ms".into(),
                log_y: false,
                series: delay,
            },
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtt_lines_sort_accepted_from_refused_calls_and_give_the_offer_span() {
        let text = "Date_ms;response_time_ms;rtd_no\n\
                    104.001;0;offered\n104.001;0;pdd\n108.001;4;setup\n\
                    200.001;0;offered\n204.001;4;refused\n\
                    600.001;0;offered\n\
                    1100.001;0;offered\n1100.001;0;pdd\n1104.001;4;setup\n\
                    ;x;pdd\n";
        let rtts = parse_rtt(text);
        assert_eq!(rtts.len(), 9);
        let a = answers(&rtts);
        assert_eq!((a.offered, a.answered, a.refused.clone(), a.pdd.clone()), (4, 2, vec![4.0], vec![0.0, 0.0]));
        // INVITEs from 104 to 1100 ms, the unanswered one at 600 included.
        let (lo, hi) = a.invites.unwrap();
        assert!((lo - 104.0).abs() < 0.01 && (hi - 1100.0).abs() < 0.01, "{lo} {hi}");
    }

    fn step(factor: f64, recovery: bool, goodput: f64, refused: f64, p99: f64) -> Step {
        Step {
            factor,
            recovery,
            rate: Options::rate(factor, 1000),
            calls: 0,
            achieved_cps: Some(1000.0 * factor),
            sipp_call_rate: None,
            sipp_cpu_pct: Some(50.0),
            generator_limited: false,
            offer_secs: 3.0,
            accepted: 0,
            refused: 0,
            failed: 0,
            goodput_cps: goodput,
            refused_cps: refused,
            failed_cps: 0.0,
            pdd_samples: 1,
            pdd_p50_ms: Some(1.0),
            pdd_p99_ms: Some(p99),
            refused_p99_ms: None,
            retransmissions: None,
            sbc_cpu_pct: None,
            admission_min: None,
            queue_delay_max_ms: None,
            sbc_overload_rejected: None,
            sbc_queue_full_drops: None,
            wall_secs: 3.0,
            sipp_exit: Some(0),
            error: None,
        }
    }

    #[test]
    fn summary_takes_medians_and_judges_the_top_factor() {
        let opts = Options {
            runs: 3,
            step_secs: 3,
            factors: vec![1.0, 3.0],
            recovery_factor: Some(0.5),
            ceiling_given: Some(1000),
            ceiling_rates: vec![],
            ceiling_step_secs: 2,
            targets: vec![Target::Local(None)],
            labels: vec!["local".into()],
        };
        let series: Vec<Series> = [(930.0, 150.0), (880.0, 190.0), (950.0, 250.0)]
            .iter()
            .enumerate()
            .map(|(i, &(g, p99))| Series {
                run: i as u32 + 1,
                target: "local".into(),
                steps: vec![
                    step(1.0, false, 1000.0, 0.0, 4.0),
                    step(3.0, false, g, 2000.0, p99),
                    step(0.5, true, 500.0, 0.0, 4.0),
                ],
            })
            .collect();
        let s = summarize(&opts, 1000, &series);
        let t = &s.targets[0];
        assert_eq!(t.points.len(), 3);
        assert_eq!(
            (t.points[1].rate, t.points[1].goodput_cps, t.points[1].pdd_p99_ms),
            (3000, Some(930.0), Some(190.0))
        );
        assert_eq!((t.top_goodput_share, t.target_met), (Some(0.93), Some(true)));
        assert_eq!(t.recovery_refused_cps, Some(0.0));
        let table = table(
            &opts,
            &Outcome { ceiling: 1000, ceiling_measured: false, ceiling_ladder: None, series, interrupted: false },
            &s,
        );
        assert!(
            table.contains("93.0 %") && table.contains(": met") && table.contains("recovered by itself"),
            "{table}"
        );
    }

    #[test]
    fn prometheus_samples_by_name_not_by_prefix() {
        let text = "# TYPE x gauge\nsbc_overload_admission 0.4\nsbc_overload_admission_other 7\n\
                    sbc_messages_dropped_total{reason=\"queue_full\"} 12\nsbc_messages_dropped_total{reason=\"scanner\"} 3\n";
        assert_eq!(sample(text, "sbc_overload_admission"), Some(0.4));
        assert_eq!(sample(text, "sbc_messages_dropped_total{reason=\"queue_full\""), Some(12.0));
        assert_eq!(sample(text, "sbc_overload_rejected_total"), None);
    }

    #[test]
    fn rates_are_factors_of_the_ceiling() {
        assert_eq!((Options::rate(0.5, 2250), Options::rate(3.0, 2250), Options::rate(0.0001, 10)), (1125, 6750, 1));
    }
}
