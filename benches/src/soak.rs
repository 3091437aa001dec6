//! `sbc-bench soak`: a light, constant call load for hours against one target, as a canary whose results are
//! exported as metrics.
//!
//! One SIPp callee (UAS) and one SIPp caller (UAC) serve the whole soak: the caller places `rate × duration` calls
//! at `rate` per second, each held `hold` seconds, and exits once the last one has hung up. A single caller keeps
//! the load constant across interval boundaries (restarting it every interval would leave a gap or, to avoid one,
//! two callers overlapping on the same SIP port) and its cumulative statistics difference cleanly from one interval
//! to the next. Its files are read incrementally: the last line of the stat CSV (`-trace_stat`, one line a second)
//! and the lines of the `-trace_rtt` CSV appended since the previous interval. They grow with the soak (about 45 MB
//! a day for the stat file; 30-40 bytes a call for the response times: about 350 MB at the bounds below).
//!
//! Every interval (`--interval`, default 60 s) gives: calls attempted, answered and failed in the interval, the
//! post-dial delay (INVITE → first 180/183/200) p50/p95/p99 and the setup time (INVITE → 200) p99 of the calls
//! answered in it, and for a local target the SBC's CPU, resident memory and active calls. An interval passes with
//! at most [`MAX_FAILED_PCT`] % failed calls and a PDD p99 of at most [`MAX_P99_MS`] ms (the `cps` step rule). The
//! figures go to stderr (one line per interval), to Prometheus metrics (an HTTP endpoint and/or a textfile for
//! node_exporter), and at the end to a table, a JSON file and an SVG plot.

use crate::calls::{self, cpu_ticks, ResponseTimes, CLOCK_TICKS_PER_SEC};
use crate::cps::{MAX_FAILED_PCT, MAX_P99_MS, STOP};
use crate::stats::{mean, percentile};
use crate::target::{local_config, Harness, Target};
use ::tests::sipp::{Running, Sipp};
use ::tests::Sbc;
use anyhow::{bail, Context, Result};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The highest rate a soak accepts, calls per second: a soak is a light load (`cps` finds a ceiling).
pub const MAX_RATE: u32 = 100;
/// The longest soak.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// The most calls one soak places (rate × duration). With the two bounds above a soak stays below it (8.64 M); it is
/// the bound SIPp's `-m` and the harness's counters are sized for.
pub const MAX_CALLS: u64 = 10_000_000;
/// The longest hold time, seconds (rate × hold calls are up at once: at most 60 000).
pub const MAX_HOLD_SECS: u32 = 600;
/// The shortest reporting interval.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// How long after the last call's hold the caller may take to finish: a call whose INVITE or BYE goes unanswered
/// fails after SIPp's retransmissions (T1 500 ms, doubling to 4 s: about 32 s).
const DRAIN_MARGIN: Duration = Duration::from_secs(40);
/// How long after the nominal end the caller is asked (SIGUSR1) to stop placing calls if it is still placing them
/// (SIPp starts its rate within the first second; a caller further behind than this is a failing soak).
const LATE_PLACING: Duration = Duration::from_secs(5);

/// Parses a duration as the command line gives it: `90s`, `30m`, `2h`, `1h30m` (humantime), whole seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration ({e}): give e.g. 90s, 30m, 2h"))?;
    if d.subsec_nanos() != 0 {
        return Err(format!("`{s}`: give whole seconds (e.g. 90s, 30m, 2h)"));
    }
    Ok(d)
}

/// What `soak` was asked to do (validated by [`Options::new`]).
#[derive(Debug, Clone, Serialize)]
pub struct Options {
    /// The target's label (`local`, `direct`, `ADDR:PORT`, `local:<file name>`): the `target` label of every metric.
    pub target: String,
    /// Calls per second, constant.
    pub rate: u32,
    /// Seconds every answered call is held before the caller hangs up.
    pub hold_secs: u32,
    /// Seconds of load (calls are placed during this time; the last ones end `hold_secs` later).
    pub duration_secs: u64,
    /// The reporting period, seconds.
    pub interval_secs: u64,
    /// Where the Prometheus endpoint listens, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// The Prometheus textfile rewritten after every interval, if any.
    pub metrics_file: Option<PathBuf>,
}

impl Options {
    /// Checks the bounds: rate 1..=100, hold ≤ 600 s, duration 1 s..=24 h, interval 1 s..=duration, rate × duration
    /// ≤ 10 million calls.
    pub fn new(
        target: &Target,
        rate: u32,
        hold_secs: u32,
        duration: Duration,
        interval: Duration,
        metrics_listen: Option<SocketAddr>,
        metrics_file: Option<PathBuf>,
    ) -> Result<Self> {
        if rate == 0 || rate > MAX_RATE {
            bail!(
                "--rate {rate} is outside 1..={MAX_RATE} calls/s: a soak is a light constant load (`cps` finds the \
                 ceiling)"
            );
        }
        if hold_secs > MAX_HOLD_SECS {
            bail!("--hold-secs {hold_secs} is above {MAX_HOLD_SECS} s");
        }
        if duration.is_zero() || duration > MAX_DURATION {
            bail!("--duration {} is outside 1s..=24h", humantime::format_duration(duration));
        }
        if interval < MIN_INTERVAL || interval > duration {
            bail!(
                "--interval {} must be at least 1s and at most --duration ({})",
                humantime::format_duration(interval),
                humantime::format_duration(duration)
            );
        }
        let calls = u64::from(rate) * duration.as_secs();
        if calls > MAX_CALLS {
            bail!(
                "--rate {rate} for --duration {} is {calls} calls, above the bound of {MAX_CALLS}",
                humantime::format_duration(duration)
            );
        }
        Ok(Self {
            target: target.label(),
            rate,
            hold_secs,
            duration_secs: duration.as_secs(),
            interval_secs: interval.as_secs(),
            metrics_listen,
            metrics_file,
        })
    }

    /// The calls the soak places.
    pub fn calls(&self) -> u64 {
        u64::from(self.rate) * self.duration_secs
    }

    fn duration(&self) -> Duration {
        Duration::from_secs(self.duration_secs)
    }

    fn hold(&self) -> Duration {
        Duration::from_secs(self.hold_secs.into())
    }
}

/// Cumulative counters of the caller, from one line of SIPp's stat CSV.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Calls placed (`OutgoingCall(C)`).
    pub attempted: u64,
    /// Calls that completed: answered, held, hung up with a 200 to the BYE (`SuccessfulCall(C)`).
    pub answered: u64,
    /// Calls that failed (`FailedCall(C)`): an error response, a timeout, an unexpected message.
    pub failed: u64,
    /// Calls in progress (`CurrentCall`, not cumulative).
    pub in_progress: u64,
    /// Retransmissions the caller sent (`Retransmissions(C)`).
    pub retransmissions: u64,
}

impl Counts {
    /// Reads the counters from a stat CSV `line` whose columns `header` names; `None` for a line that does not fit.
    pub fn parse(header: &[String], line: &str) -> Option<Self> {
        let values: Vec<&str> = line.split(';').collect();
        if values.len() < header.len() {
            return None;
        }
        let get = |name: &str| -> Option<u64> { values[header.iter().position(|h| h == name)?].trim().parse().ok() };
        Some(Self {
            attempted: get("OutgoingCall(C)")?,
            answered: get("SuccessfulCall(C)")?,
            failed: get("FailedCall(C)")?,
            in_progress: get("CurrentCall")?,
            retransmissions: get("Retransmissions(C)").unwrap_or(0),
        })
    }

    /// What happened between `earlier` and `self` (both cumulative); `in_progress` is `self`'s.
    pub fn since(&self, earlier: &Counts) -> Counts {
        Counts {
            attempted: self.attempted.saturating_sub(earlier.attempted),
            answered: self.answered.saturating_sub(earlier.answered),
            failed: self.failed.saturating_sub(earlier.failed),
            in_progress: self.in_progress,
            retransmissions: self.retransmissions.saturating_sub(earlier.retransmissions),
        }
    }

    /// Calls placed that have neither completed nor failed.
    pub fn unfinished(&self) -> u64 {
        self.attempted.saturating_sub(self.answered + self.failed)
    }
}

/// The figures of one interval.
#[derive(Debug, Clone, Serialize)]
pub struct Interval {
    /// 1-based.
    pub index: u32,
    /// Seconds since the caller started, at the interval's start and end (the end is when it was measured).
    pub start_secs: f64,
    pub end_secs: f64,
    /// The end as Unix time, seconds.
    pub end_unix: f64,
    /// Calls placed in the interval.
    pub attempted: u64,
    /// Calls that completed in the interval (answered, held, hung up cleanly).
    pub answered: u64,
    /// Calls that failed in the interval; in the last interval also the calls abandoned in progress (see
    /// `abandoned`) unless the soak was interrupted.
    pub failed: u64,
    /// Last interval only: calls still in progress when the soak ended early (interrupted, the target died, SIPp
    /// gave up).
    pub abandoned: u64,
    /// Calls in progress at the end of the interval.
    pub in_progress: u64,
    /// `failed / (answered + failed)`: the share of the calls that ended in the interval that failed; 0 when none
    /// ended.
    pub failed_ratio: f64,
    /// SIP retransmissions the caller sent in the interval: a sign of trouble before calls fail.
    pub retransmissions: u64,
    /// Post-dial delays measured in the interval (one per call that got a 180/183/200).
    pub pdd_samples: usize,
    /// Post-dial delay percentiles of the interval's calls, ms.
    pub pdd_p50_ms: Option<f64>,
    pub pdd_p95_ms: Option<f64>,
    pub pdd_p99_ms: Option<f64>,
    /// Setup time (INVITE → 200) 99th percentile of the interval's calls, ms.
    pub setup_p99_ms: Option<f64>,
    /// Local targets: the `sbc` process's CPU over the interval, in percent of one core.
    pub sbc_cpu_pct: Option<f64>,
    /// Local targets: the `sbc` process's resident memory at the end of the interval, MiB.
    pub sbc_rss_mib: Option<f64>,
    /// Local targets: the SBC's own `sbc_calls_active` summed over its trunks (inbound and outbound legs: two per
    /// call) and `sbc_sip_transactions_active`, at the end of the interval. At constant load a leak shows as a climb.
    pub sbc_legs_active: Option<f64>,
    pub sbc_transactions_active: Option<f64>,
    /// Failed ≤ 0.1 % and PDD p99 ≤ 200 ms.
    pub pass: bool,
    /// Why it failed (empty when it passed).
    pub why: Vec<String>,
}

impl Interval {
    /// The SIPp figures of an interval from the counters' difference over it and the response times measured in it.
    /// `abandoned` calls (last interval only) count as failed unless `interrupted`.
    pub fn measured(
        index: u32,
        span: (f64, f64),
        end_unix: f64,
        delta: &Counts,
        abandoned: u64,
        interrupted: bool,
        times: &ResponseTimes,
    ) -> Self {
        let failed = delta.failed + if interrupted { 0 } else { abandoned };
        let ended = delta.answered + failed;
        let mut iv = Interval {
            index,
            start_secs: span.0,
            end_secs: span.1,
            end_unix,
            attempted: delta.attempted,
            answered: delta.answered,
            failed,
            abandoned,
            in_progress: delta.in_progress,
            failed_ratio: if ended == 0 { 0.0 } else { failed as f64 / ended as f64 },
            retransmissions: delta.retransmissions,
            pdd_samples: times.pdd.len(),
            pdd_p50_ms: percentile(&times.pdd, 50.0),
            pdd_p95_ms: percentile(&times.pdd, 95.0),
            pdd_p99_ms: percentile(&times.pdd, 99.0),
            setup_p99_ms: percentile(&times.setup, 99.0),
            sbc_cpu_pct: None,
            sbc_rss_mib: None,
            sbc_legs_active: None,
            sbc_transactions_active: None,
            pass: false,
            why: Vec::new(),
        };
        iv.why = judge(&iv);
        iv.pass = iv.why.is_empty();
        iv
    }
}

/// The pass rule of an interval: at most [`MAX_FAILED_PCT`] % of the calls that ended in it failed, and the 99th
/// percentile of its post-dial delays is at most [`MAX_P99_MS`]; an interval that placed calls but measured no
/// post-dial delay and completed no call fails too (the target does not answer). Returns the reasons it fails.
pub fn judge(iv: &Interval) -> Vec<String> {
    let mut why = Vec::new();
    if 100.0 * iv.failed_ratio > MAX_FAILED_PCT {
        why.push(format!(
            "{} of {} calls failed ({:.2} % > {MAX_FAILED_PCT} %)",
            iv.failed,
            iv.answered + iv.failed,
            100.0 * iv.failed_ratio
        ));
    }
    match iv.pdd_p99_ms {
        Some(p99) if p99 > MAX_P99_MS => why.push(format!("pdd p99 {p99:.0} ms > {MAX_P99_MS} ms")),
        None if iv.attempted > 0 && iv.answered == 0 => {
            why.push(format!("{} calls placed, none answered", iv.attempted));
        }
        _ => {}
    }
    why
}

/// Response times of a whole soak at SIPp's resolution: counts per distinct value (µs), so that the overall
/// percentiles are exact in bounded memory.
#[derive(Debug, Default, Clone)]
pub struct Histogram {
    counts: BTreeMap<u64, u64>,
    n: u64,
}

impl Histogram {
    pub fn add(&mut self, values: &[f64]) {
        for &v in values {
            *self.counts.entry((v.max(0.0) * 1000.0).round() as u64).or_default() += 1;
            self.n += 1;
        }
    }

    /// The nearest-rank percentile, as [`crate::stats::percentile`].
    pub fn percentile(&self, p: f64) -> Option<f64> {
        if self.n == 0 {
            return None;
        }
        let rank = ((p / 100.0) * self.n as f64).ceil().clamp(1.0, self.n as f64) as u64;
        let mut seen = 0;
        for (&us, &count) in &self.counts {
            seen += count;
            if seen >= rank {
                return Some(us as f64 / 1000.0);
            }
        }
        None
    }

    pub fn len(&self) -> u64 {
        self.n
    }
}

/// How the soak ended.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "reason", content = "detail", rename_all = "snake_case")]
pub enum End {
    /// The caller placed every call and every call ended.
    Completed,
    /// Ctrl-C or SIGTERM.
    Interrupted,
    /// The local `sbc` exited (its log's tail).
    TargetDied(String),
    /// The caller exited before the duration was up, or had to be killed after it (what SIPp said).
    CallerFailed(String),
}

/// The whole soak: options, every interval, the summary and the verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub options: Options,
    pub criterion: serde_json::Value,
    /// Unix time the caller started, seconds.
    pub started_unix: f64,
    /// Seconds from the caller's start to the end of the last interval.
    pub wall_secs: f64,
    pub end: End,
    pub intervals: Vec<Interval>,
    pub summary: Summary,
    /// Every interval passed and the soak was not cut short by a failure (an interrupted soak passes on the
    /// intervals it measured).
    pub passed: bool,
    /// Why it did not pass.
    pub why: Vec<String>,
    /// The caller's files (stat and response-time CSVs, SIPp's error log), kept when the soak failed.
    pub sipp_files: Option<PathBuf>,
}

/// Totals over the soak.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub attempted: u64,
    pub answered: u64,
    pub failed: u64,
    pub abandoned: u64,
    pub intervals: usize,
    pub intervals_passed: usize,
    pub intervals_failed: usize,
    /// The interval with the highest failed ratio (then the highest PDD p99), 1-based.
    pub worst_interval: Option<u32>,
    /// Over every call of the soak, ms.
    pub pdd_samples: u64,
    pub pdd_p50_ms: Option<f64>,
    pub pdd_p95_ms: Option<f64>,
    pub pdd_p99_ms: Option<f64>,
    pub pdd_max_ms: Option<f64>,
    pub setup_p50_ms: Option<f64>,
    pub setup_p99_ms: Option<f64>,
    /// Local targets: mean and highest interval CPU of `sbc`, percent of one core.
    pub sbc_cpu_mean_pct: Option<f64>,
    pub sbc_cpu_max_pct: Option<f64>,
    /// Local targets: resident memory of `sbc` at the end of the first and of the last interval, MiB.
    pub sbc_rss_first_mib: Option<f64>,
    pub sbc_rss_last_mib: Option<f64>,
}

/// Sums up `intervals` (the overall response-time percentiles come from the soak's histograms).
pub fn summarize(intervals: &[Interval], pdd: &Histogram, setup: &Histogram) -> Summary {
    let sum = |f: fn(&Interval) -> u64| intervals.iter().map(f).sum::<u64>();
    let passed = intervals.iter().filter(|i| i.pass).count();
    let worst = intervals
        .iter()
        .max_by(|a, b| {
            a.failed_ratio
                .total_cmp(&b.failed_ratio)
                .then(a.pdd_p99_ms.unwrap_or(f64::INFINITY).total_cmp(&b.pdd_p99_ms.unwrap_or(f64::INFINITY)))
        })
        .map(|i| i.index);
    let cpu: Vec<f64> = intervals.iter().filter_map(|i| i.sbc_cpu_pct).collect();
    Summary {
        attempted: sum(|i| i.attempted),
        answered: sum(|i| i.answered),
        failed: sum(|i| i.failed),
        abandoned: sum(|i| i.abandoned),
        intervals: intervals.len(),
        intervals_passed: passed,
        intervals_failed: intervals.len() - passed,
        worst_interval: worst,
        pdd_samples: pdd.len(),
        pdd_p50_ms: pdd.percentile(50.0),
        pdd_p95_ms: pdd.percentile(95.0),
        pdd_p99_ms: pdd.percentile(99.0),
        pdd_max_ms: pdd.percentile(100.0),
        setup_p50_ms: setup.percentile(50.0),
        setup_p99_ms: setup.percentile(99.0),
        sbc_cpu_mean_pct: mean(&cpu),
        sbc_cpu_max_pct: cpu.iter().copied().reduce(f64::max),
        sbc_rss_first_mib: intervals.iter().find_map(|i| i.sbc_rss_mib),
        sbc_rss_last_mib: intervals.iter().rev().find_map(|i| i.sbc_rss_mib),
    }
}

/// The verdict: why the soak does not pass (empty: it passes).
pub fn verdict(intervals: &[Interval], end: &End, duration_secs: u64) -> Vec<String> {
    let mut why = Vec::new();
    if intervals.is_empty() {
        why.push("no interval was measured".to_owned());
    }
    let failing: Vec<&Interval> = intervals.iter().filter(|i| !i.pass).collect();
    if let Some(first) = failing.first() {
        why.push(format!(
            "{} of {} intervals failed (first: #{} at {}: {})",
            failing.len(),
            intervals.len(),
            first.index,
            clock(first.end_secs),
            first.why.join("; ")
        ));
    }
    match end {
        End::Completed | End::Interrupted => {}
        End::TargetDied(_) => why.push(format!(
            "the target died at {} of {}",
            clock(intervals.last().map_or(0.0, |i| i.end_secs)),
            clock(duration_secs as f64)
        )),
        End::CallerFailed(what) => why.push(format!("the caller (SIPp) failed: {}", what.lines().next().unwrap_or(""))),
    }
    why
}

/// `hh:mm:ss` of `secs`.
pub fn clock(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// The line printed on stderr for an interval.
pub fn progress_line(opts: &Options, iv: &Interval) -> String {
    let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
    let mut line = format!(
        "[soak {}/{}] {}: {} calls, {} failed, pdd p50 {} ms p99 {} ms",
        clock(iv.end_secs.min(opts.duration_secs as f64)),
        clock(opts.duration_secs as f64),
        opts.target,
        iv.attempted,
        iv.failed,
        ms(iv.pdd_p50_ms),
        ms(iv.pdd_p99_ms),
    );
    if let Some(cpu) = iv.sbc_cpu_pct {
        line.push_str(&format!(", sbc cpu {cpu:.0}%"));
    }
    if let Some(rss) = iv.sbc_rss_mib {
        line.push_str(&format!(", rss {rss:.1} MiB"));
    }
    if let Some(legs) = iv.sbc_legs_active {
        line.push_str(&format!(", {legs:.0} legs up"));
    }
    if iv.pass {
        line.push_str(" -> pass");
    } else {
        line.push_str(&format!(" -> FAIL ({})", iv.why.join("; ")));
    }
    line
}

/// Metric names (every one labelled `target`).
mod names {
    pub const UP: &str = "sbc_bench_soak_up";
    pub const CALLS: &str = "sbc_bench_soak_calls_total";
    pub const ATTEMPTED: &str = "sbc_bench_soak_calls_attempted_total";
    pub const PDD: &str = "sbc_bench_soak_pdd_ms";
    pub const SETUP: &str = "sbc_bench_soak_setup_ms";
    pub const FAILED_RATIO: &str = "sbc_bench_soak_interval_failed_ratio";
    pub const PASSED: &str = "sbc_bench_soak_interval_passed";
    pub const INTERVALS: &str = "sbc_bench_soak_intervals_total";
    pub const CPU: &str = "sbc_bench_soak_target_cpu_percent";
    pub const RSS: &str = "sbc_bench_soak_target_resident_bytes";
    pub const LAST: &str = "sbc_bench_soak_last_interval_timestamp_seconds";
    pub const INTERVAL_SECS: &str = "sbc_bench_soak_interval_seconds";
}

/// The soak's Prometheus metrics: a recorder of its own (not the global one), served on `--metrics-listen` by the
/// exporter's HTTP listener and rendered to `--metrics-file` after every interval.
pub struct Exporter {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    target: String,
    file: Option<PathBuf>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter").field("target", &self.target).field("file", &self.file).finish_non_exhaustive()
    }
}

impl Exporter {
    /// Builds the recorder and, with `listen`, binds the HTTP endpoint (every path but `/health` serves the metrics)
    /// and serves it from a thread of its own until the process exits. Fails at once when the address cannot be
    /// bound.
    pub fn start(target: &str, listen: Option<SocketAddr>, file: Option<PathBuf>) -> Result<Self> {
        let recorder = match listen {
            None => PrometheusBuilder::new().build_recorder(),
            Some(addr) => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("starting the metrics endpoint's runtime")?;
                // `build` spawns the recorder's upkeep task and binds the listener: inside the runtime.
                let (recorder, serve) = {
                    let _inside = rt.enter();
                    PrometheusBuilder::new()
                        .with_http_listener(addr)
                        .build()
                        .with_context(|| format!("--metrics-listen {addr}"))?
                };
                std::thread::Builder::new().name("soak-metrics".into()).spawn(move || {
                    if let Err(e) = rt.block_on(serve) {
                        eprintln!("soak: the metrics endpoint on {addr} stopped: {e:?}");
                    }
                })?;
                recorder
            }
        };
        if let Some(dir) = file.as_deref().and_then(Path::parent).filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let handle = recorder.handle();
        let exporter = Self { recorder, handle, target: target.to_owned(), file };
        exporter.describe();
        Ok(exporter)
    }

    fn with<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&self.recorder, f)
    }

    fn describe(&self) {
        use metrics::{describe_counter, describe_gauge};
        self.with(|| {
            describe_gauge!(names::UP, "1 while the soak runs, 0 once it ended");
            describe_counter!(
                names::CALLS,
                "soak calls that ended: answered (completed: held, hung up cleanly) or failed"
            );
            describe_counter!(names::ATTEMPTED, "soak calls placed");
            describe_gauge!(
                names::PDD,
                "post-dial delay (INVITE to first 180/183/200) percentiles of the last interval's calls, ms"
            );
            describe_gauge!(names::SETUP, "setup time (INVITE to 200) percentiles of the last interval's calls, ms");
            describe_gauge!(names::FAILED_RATIO, "failed / ended calls in the last interval");
            describe_gauge!(names::PASSED, "1 when the last interval passed (failed <= 0.1 %, pdd p99 <= 200 ms)");
            describe_counter!(names::INTERVALS, "soak intervals measured, by result");
            describe_gauge!(names::CPU, "the local target's CPU over the last interval, percent of one core");
            describe_gauge!(names::RSS, "the local target's resident memory at the end of the last interval, bytes");
            describe_gauge!(names::LAST, "Unix time the last interval ended");
            describe_gauge!(names::INTERVAL_SECS, "the soak's reporting interval, seconds");
        });
    }

    /// Every series from the start (counters at 0, percentiles NaN), `up` 1; writes the file.
    pub fn started(&self, opts: &Options) -> Result<()> {
        let t = self.target.clone();
        self.with(|| {
            metrics::gauge!(names::UP, "target" => t.clone()).set(1.0);
            metrics::gauge!(names::INTERVAL_SECS, "target" => t.clone()).set(opts.interval_secs as f64);
            for result in ["answered", "failed"] {
                metrics::counter!(names::CALLS, "target" => t.clone(), "result" => result).absolute(0);
            }
            metrics::counter!(names::ATTEMPTED, "target" => t.clone()).absolute(0);
            for result in ["passed", "failed"] {
                metrics::counter!(names::INTERVALS, "target" => t.clone(), "result" => result).absolute(0);
            }
            for q in ["0.5", "0.95", "0.99"] {
                metrics::gauge!(names::PDD, "target" => t.clone(), "quantile" => q).set(f64::NAN);
            }
            metrics::gauge!(names::SETUP, "target" => t.clone(), "quantile" => "0.99").set(f64::NAN);
        });
        self.write_file()
    }

    /// Publishes an interval; writes the file.
    pub fn interval(&self, iv: &Interval) -> Result<()> {
        let t = self.target.clone();
        let nan = |v: Option<f64>| v.unwrap_or(f64::NAN);
        self.with(|| {
            metrics::counter!(names::CALLS, "target" => t.clone(), "result" => "answered").increment(iv.answered);
            metrics::counter!(names::CALLS, "target" => t.clone(), "result" => "failed").increment(iv.failed);
            metrics::counter!(names::ATTEMPTED, "target" => t.clone()).increment(iv.attempted);
            for (q, v) in [("0.5", iv.pdd_p50_ms), ("0.95", iv.pdd_p95_ms), ("0.99", iv.pdd_p99_ms)] {
                metrics::gauge!(names::PDD, "target" => t.clone(), "quantile" => q).set(nan(v));
            }
            metrics::gauge!(names::SETUP, "target" => t.clone(), "quantile" => "0.99").set(nan(iv.setup_p99_ms));
            metrics::gauge!(names::FAILED_RATIO, "target" => t.clone()).set(iv.failed_ratio);
            metrics::gauge!(names::PASSED, "target" => t.clone()).set(if iv.pass { 1.0 } else { 0.0 });
            let result = if iv.pass { "passed" } else { "failed" };
            metrics::counter!(names::INTERVALS, "target" => t.clone(), "result" => result).increment(1);
            if let Some(cpu) = iv.sbc_cpu_pct {
                metrics::gauge!(names::CPU, "target" => t.clone()).set(cpu);
            }
            if let Some(rss) = iv.sbc_rss_mib {
                metrics::gauge!(names::RSS, "target" => t.clone()).set(rss * 1024.0 * 1024.0);
            }
            metrics::gauge!(names::LAST, "target" => t.clone()).set(iv.end_unix);
        });
        self.write_file()
    }

    /// `up` 0; writes the file.
    pub fn finished(&self) -> Result<()> {
        let t = self.target.clone();
        self.with(|| metrics::gauge!(names::UP, "target" => t).set(0.0));
        self.write_file()
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    fn write_file(&self) -> Result<()> {
        match &self.file {
            Some(path) => ::tests::write_atomically(path, &self.render()),
            None => Ok(()),
        }
    }
}

/// The last complete line (ending in a newline) of `text`, without the newline.
pub fn last_complete_line(text: &str) -> Option<&str> {
    let body = &text[..text.rfind('\n')?];
    let line = body.rsplit('\n').next()?;
    (!line.trim().is_empty()).then_some(line)
}

/// The caller's stat CSV, read from its end.
#[derive(Debug)]
struct StatTail {
    path: PathBuf,
    header: Vec<String>,
}

impl StatTail {
    /// The counters of the last complete line; `None` before SIPp wrote one.
    fn last(&mut self) -> Option<Counts> {
        if self.header.is_empty() {
            let mut first = String::new();
            std::io::BufRead::read_line(
                &mut std::io::BufReader::new(std::fs::File::open(&self.path).ok()?),
                &mut first,
            )
            .ok()?;
            if !first.ends_with('\n') {
                return None;
            }
            self.header = first.trim_end().split(';').map(str::to_owned).collect();
        }
        let mut file = std::fs::File::open(&self.path).ok()?;
        let len = file.metadata().ok()?.len();
        // A line is about 550 bytes; 64 KiB always holds the last complete one.
        let from = len.saturating_sub(64 * 1024);
        file.seek(SeekFrom::Start(from)).ok()?;
        let mut text = String::new();
        file.take(len - from).read_to_string(&mut text).ok()?;
        Counts::parse(&self.header, last_complete_line(&text)?)
    }
}

/// The caller's `-trace_rtt` CSV (`Date_ms;response_time_ms;rtd_name`), read incrementally: every call what SIPp
/// appended since the last read, complete lines only.
#[derive(Debug)]
struct RttTail {
    dir: PathBuf,
    file: Option<PathBuf>,
    offset: u64,
}

impl RttTail {
    fn read_new(&mut self) -> Result<ResponseTimes> {
        if self.file.is_none() {
            self.file = std::fs::read_dir(&self.dir)
                .with_context(|| format!("listing {}", self.dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with("_rtt.csv")));
        }
        let Some(path) = &self.file else {
            return Ok(ResponseTimes::default());
        };
        let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        file.seek(SeekFrom::Start(self.offset))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        self.offset += complete as u64;
        Ok(calls::parse_rtt(&String::from_utf8_lossy(&bytes[..complete])))
    }
}

/// The caller (SIPp UAC) of the whole soak, polled for its exit every second; it may be asked to stop placing
/// calls (SIGUSR1: SIPp's smooth exit, the calls in progress end normally). Killed on drop.
struct Caller {
    sipp: Running,
    dir: PathBuf,
}

impl Caller {
    fn spawn(sipp: Sipp) -> Result<Self> {
        let sipp = sipp.spawn()?;
        Ok(Self { dir: sipp.dir().to_owned(), sipp })
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.sipp.try_wait().ok().flatten()
    }

    /// SIGUSR1: place no more calls, exit when the calls in progress have ended.
    fn stop_placing(&self) {
        self.sipp.signal("USR1");
    }

    /// Ends it now: SIGTERM first (SIPp then writes its final statistics line at once), SIGKILL (on drop) 3 s later.
    fn stop(&mut self) {
        if self.exited().is_none() {
            self.sipp.signal("TERM");
            let deadline = Instant::now() + Duration::from_secs(3);
            while self.exited().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.sipp.signal("KILL");
    }

    fn said(&self) -> String {
        self.sipp.said()
    }
}

/// The interval bookkeeping of a running soak.
struct Meter<'a> {
    opts: &'a Options,
    started: Instant,
    started_unix: f64,
    stat: StatTail,
    rtt: RttTail,
    counts: Counts,
    start_secs: f64,
    cpu_ticks: Option<u64>,
    pdd: Histogram,
    setup: Histogram,
    intervals: Vec<Interval>,
}

impl Meter<'_> {
    /// Closes the current interval now. `last`: the soak has ended, how (abandoned calls are counted then).
    fn close(&mut self, sbc: Option<&Sbc>, last: Option<&End>) -> &Interval {
        let end_secs = self.started.elapsed().as_secs_f64();
        let counts = self.stat.last().unwrap_or(self.counts);
        let delta = counts.since(&self.counts);
        self.counts = counts;
        let times = self.rtt.read_new().unwrap_or_else(|e| {
            eprintln!("soak: reading the response times: {e:#}");
            ResponseTimes::default()
        });
        self.pdd.add(&times.pdd);
        self.setup.add(&times.setup);
        let abandoned = if last.is_some() { counts.unfinished() } else { 0 };
        let mut iv = Interval::measured(
            u32::try_from(self.intervals.len() + 1).unwrap_or(u32::MAX),
            (self.start_secs, end_secs),
            self.started_unix + end_secs,
            &delta,
            abandoned,
            last == Some(&End::Interrupted),
            &times,
        );
        if let Some(sbc) = sbc {
            let ticks = cpu_ticks(sbc.id());
            if let (Some(before), Some(after)) = (self.cpu_ticks, ticks) {
                let wall = (end_secs - self.start_secs).max(1e-3);
                iv.sbc_cpu_pct = Some(100.0 * after.saturating_sub(before) as f64 / CLOCK_TICKS_PER_SEC / wall);
            }
            self.cpu_ticks = ticks;
            iv.sbc_rss_mib = rss_kib(sbc.id()).map(|k| k as f64 / 1024.0);
            // One `netprobe` run each inside the SBC's namespace: cheap once an interval.
            iv.sbc_legs_active = sbc.metric("sbc_calls_active").ok();
            iv.sbc_transactions_active = sbc.metric("sbc_sip_transactions_active").ok();
        }
        self.start_secs = end_secs;
        self.intervals.push(iv);
        self.intervals.last().expect("just pushed")
    }
}

/// Resident memory of process `pid`, KiB (`VmRSS` in /proc/PID/status).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()
}

/// The once-a-second status line, in place, when stderr is a terminal.
#[derive(Debug)]
struct Status {
    tty: bool,
    shown: bool,
}

impl Status {
    fn show(&mut self, text: &str) {
        if self.tty {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r{text}\x1b[K");
            let _ = err.flush();
            self.shown = true;
        }
    }

    fn line(&mut self, text: &str) {
        self.clear();
        eprintln!("{text}");
    }

    fn clear(&mut self) {
        if self.shown {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
            self.shown = false;
        }
    }
}

/// Runs the soak against `target` (one of `harness`'s) and returns its report; the caller writes it out and tears
/// the harness down. Fails only when the soak cannot start; what goes wrong later ends it and is in the report.
pub fn run(harness: &Harness, target: &Target, opts: &Options) -> Result<Report> {
    // Bound first: a busy address fails the soak before anything starts.
    let exporter = Exporter::start(&opts.target, opts.metrics_listen, opts.metrics_file.clone())?;
    if let Some(addr) = opts.metrics_listen {
        eprintln!("soak: metrics on http://{addr}/metrics");
    }
    let mut sbc = match target {
        Target::Local(_) => Some(harness.start_local(target, "bench-soak", &local_config(false), None)?),
        _ => None,
    };
    let path = harness.path(target);
    let calls = u32::try_from(opts.calls()).context("calls")?;
    let limit = opts.duration() + opts.hold() + DRAIN_MARGIN;
    // Room for twice the calls: stray retransmissions after a call ended count as calls too.
    let mut uas = calls::uas(&path, calls.saturating_mul(2).saturating_add(1000), limit + Duration::from_secs(5), None)
        .spawn()
        .context("starting the callee (SIPp UAS)")?;
    let uas_dir = uas.dir().to_owned();
    uas.wait_listening(path.uas.ns.as_deref(), path.uas.port, Duration::from_secs(5))?;
    let mut caller = Caller::spawn(calls::uac(&path, calls, opts.rate, opts.hold(), limit, None))
        .context("starting the caller (SIPp UAC)")?;
    let started = Instant::now();
    // `up` 1 only once the load runs: a soak that could not start leaves the last run's file as it was.
    exporter.started(opts)?;
    let started_unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    eprintln!(
        "soak: {} calls/s to {} for {} (hold {} s, {} calls), an interval every {} s",
        opts.rate,
        opts.target,
        clock(opts.duration_secs as f64),
        opts.hold_secs,
        calls,
        opts.interval_secs
    );
    let mut meter = Meter {
        opts,
        started,
        started_unix,
        stat: StatTail { path: caller.dir.join("stat.csv"), header: Vec::new() },
        rtt: RttTail { dir: caller.dir.clone(), file: None, offset: 0 },
        counts: Counts::default(),
        start_secs: 0.0,
        cpu_ticks: sbc.as_ref().and_then(|s| cpu_ticks(s.id())),
        pdd: Histogram::default(),
        setup: Histogram::default(),
        intervals: Vec::new(),
    };
    let mut status = Status { tty: std::io::stderr().is_terminal(), shown: false };
    let end = watch(&mut meter, &mut caller, sbc.as_mut(), &exporter, &mut status, limit);
    caller.stop();
    let iv = meter.close(sbc.as_ref(), Some(&end)).clone();
    status.line(&progress_line(opts, &iv));
    if let Err(e) = exporter.interval(&iv).and_then(|()| exporter.finished()) {
        eprintln!("soak: writing the metrics file: {e:#}");
    }
    drop(uas);
    drop(sbc);
    let _ = std::fs::remove_dir_all(&uas_dir);

    let Meter { intervals, pdd, setup, .. } = meter;
    let summary = summarize(&intervals, &pdd, &setup);
    let why = verdict(&intervals, &end, opts.duration_secs);
    let sipp_files = if why.is_empty() {
        let _ = std::fs::remove_dir_all(&caller.dir);
        None
    } else {
        Some(caller.dir.clone())
    };
    Ok(Report {
        scenario: "soak",
        options: opts.clone(),
        criterion: serde_json::json!({ "max_failed_pct": MAX_FAILED_PCT, "max_p99_ms": MAX_P99_MS }),
        started_unix,
        wall_secs: intervals.last().map_or(0.0, |i| i.end_secs),
        end,
        passed: why.is_empty(),
        why,
        summary,
        intervals,
        sipp_files,
    })
}

/// The soak's clock: a tick a second (status line, checks), an interval closed at every boundary before the end.
/// Returns how the soak ended; the last interval is left open for the caller to close.
fn watch(
    meter: &mut Meter<'_>,
    caller: &mut Caller,
    mut sbc: Option<&mut Sbc>,
    exporter: &Exporter,
    status: &mut Status,
    limit: Duration,
) -> End {
    let opts = meter.opts;
    let duration = opts.duration();
    let interval = Duration::from_secs(opts.interval_secs);
    // SIPp gives up at `limit` (its -timeout); it is killed 10 s later.
    let kill_at = limit + Duration::from_secs(10);
    let mut boundary = interval;
    let mut asked_to_stop = false;
    // SIGINT from a terminal reaches SIPp and the SBC too: a process that just died may be the interruption.
    let interrupted_meanwhile = || {
        std::thread::sleep(Duration::from_millis(500));
        STOP.load(Ordering::SeqCst)
    };
    loop {
        let elapsed = meter.started.elapsed();
        let next_tick = Duration::from_secs(elapsed.as_secs() + 1);
        std::thread::sleep(next_tick.saturating_sub(elapsed));
        let elapsed = meter.started.elapsed();
        if STOP.load(Ordering::SeqCst) {
            return End::Interrupted;
        }
        if let Some(sbc) = sbc.as_deref_mut() {
            if !sbc.is_running() {
                if interrupted_meanwhile() {
                    return End::Interrupted;
                }
                return End::TargetDied(format!("sbc exited; log ({}):\n{}", sbc.log.display(), sbc.log_tail()));
            }
        }
        if let Some(exit) = caller.exited() {
            if elapsed + Duration::from_secs(1) >= duration {
                // SIPp also exits at its own -timeout, or early when asked to stop placing calls.
                let c = meter.stat.last().unwrap_or_default();
                if c.attempted >= opts.calls() && c.unfinished() == 0 {
                    return End::Completed;
                }
                return End::CallerFailed(format!(
                    "exited at {} with {exit}, {} of {} calls placed, {} unfinished: {}",
                    clock(elapsed.as_secs_f64()),
                    c.attempted,
                    opts.calls(),
                    c.unfinished(),
                    caller.said()
                ));
            }
            if interrupted_meanwhile() {
                return End::Interrupted;
            }
            return End::CallerFailed(format!(
                "exited after {} with {exit}: {}",
                clock(elapsed.as_secs_f64()),
                caller.said()
            ));
        }
        if elapsed >= kill_at {
            return End::CallerFailed(format!(
                "still running {} after the end of the load: killed",
                clock((elapsed - duration).as_secs_f64())
            ));
        }
        if !asked_to_stop && elapsed >= duration + LATE_PLACING {
            caller.stop_placing();
            asked_to_stop = true;
        }
        if elapsed >= boundary && boundary < duration {
            let iv = meter.close(sbc.as_deref(), None).clone();
            status.line(&progress_line(opts, &iv));
            if let Err(e) = exporter.interval(&iv) {
                status.line(&format!("soak: writing the metrics file: {e:#}"));
            }
            // A stalled tick closes one interval, not several empty ones.
            boundary = interval * (u32::try_from(elapsed.as_secs() / opts.interval_secs).unwrap_or(u32::MAX) + 1);
        }
        let c = meter.stat.last().unwrap_or_default();
        let phase = if elapsed < duration { "" } else { " (calls ending)" };
        status.show(&format!(
            "[soak {}/{}] {}: {} placed, {} answered, {} failed, {} in progress{phase}",
            clock(elapsed.min(duration).as_secs_f64()),
            clock(duration.as_secs_f64()),
            opts.target,
            c.attempted,
            c.answered,
            c.failed,
            c.in_progress
        ));
    }
}

/// The table printed at the end.
pub fn table(report: &Report) -> String {
    let o = &report.options;
    let s = &report.summary;
    let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
    let mut out = format!(
        "sbc-bench soak: {}, {} calls/s, hold {} s, {} in intervals of {} s; ended: {}\n",
        o.target,
        o.rate,
        o.hold_secs,
        clock(o.duration_secs as f64),
        o.interval_secs,
        match &report.end {
            End::Completed => format!("completed after {}", clock(report.wall_secs)),
            End::Interrupted => format!("interrupted at {}", clock(report.wall_secs)),
            End::TargetDied(_) => format!("the target died at {}", clock(report.wall_secs)),
            End::CallerFailed(_) => format!("the caller failed at {}", clock(report.wall_secs)),
        }
    );
    out.push_str(&format!(
        "an interval passes with failed <= {MAX_FAILED_PCT} % of the calls that ended in it and p99(PDD) <= \
         {MAX_P99_MS} ms\n\n"
    ));
    out.push_str(&format!("{:<18}{:>11}{:>11}{:>9}{:>11}\n", "calls", "attempted", "answered", "failed", "abandoned"));
    out.push_str(&format!(
        "  {:<16}{:>11}{:>11}{:>9}{:>11}\n",
        "total", s.attempted, s.answered, s.failed, s.abandoned
    ));
    out.push_str(&format!(
        "{:<18}{} measured: {} passed, {} failed\n",
        "intervals", s.intervals, s.intervals_passed, s.intervals_failed
    ));
    if let Some(w) = s.worst_interval.and_then(|w| report.intervals.iter().find(|i| i.index == w)) {
        out.push_str(&format!(
            "{:<18}#{} ({}-{}): {} calls, {} failed ({:.2} %), pdd p99 {} ms{}\n",
            "worst interval",
            w.index,
            clock(w.start_secs),
            clock(w.end_secs),
            w.attempted,
            w.failed,
            100.0 * w.failed_ratio,
            ms(w.pdd_p99_ms),
            if w.pass { "" } else { " (FAIL)" }
        ));
    }
    out.push_str(&format!(
        "{:<18}p50 {} ms, p95 {} ms, p99 {} ms, max {} ms ({} calls)\n",
        "post-dial delay",
        ms(s.pdd_p50_ms),
        ms(s.pdd_p95_ms),
        ms(s.pdd_p99_ms),
        ms(s.pdd_max_ms),
        s.pdd_samples
    ));
    out.push_str(&format!("{:<18}p50 {} ms, p99 {} ms\n", "setup (->200)", ms(s.setup_p50_ms), ms(s.setup_p99_ms)));
    if let Some(cpu) = s.sbc_cpu_mean_pct {
        out.push_str(&format!(
            "{:<18}cpu mean {cpu:.1} %, max {:.1} % of one core; rss {} -> {} MiB\n",
            "sbc",
            s.sbc_cpu_max_pct.unwrap_or(cpu),
            s.sbc_rss_first_mib.map_or("-".to_owned(), |v| format!("{v:.1}")),
            s.sbc_rss_last_mib.map_or("-".to_owned(), |v| format!("{v:.1}"))
        ));
    }
    out.push_str("  (SIPp measures response times in whole milliseconds)\n");
    if report.passed {
        out.push_str("\nverdict: PASS\n");
    } else {
        out.push_str(&format!("\nverdict: FAIL: {}\n", report.why.join("; ")));
    }
    out
}

/// The figure: calls and failures per interval, PDD p50/p99 per interval, and for a local target the SBC's CPU and
/// resident memory, over the soak's time.
pub fn plot(path: &Path, report: &Report) -> Result<()> {
    use crate::plot::{Panel, Series};
    let minutes = report.options.duration_secs >= 600;
    let (x_label, scale) = if minutes { ("minutes since start", 60.0) } else { ("seconds since start", 1.0) };
    let series = |name: &str, f: &dyn Fn(&Interval) -> Option<f64>| {
        Series::new(name, report.intervals.iter().filter_map(|i| Some((i.end_secs / scale, f(i)?))).collect())
    };
    let panel = |title: &str, y_label: &str, log_y: bool, series: Vec<Series>| Panel {
        title: title.into(),
        x_label: x_label.into(),
        y_label: y_label.into(),
        log_y,
        series,
    };
    let mut panels = vec![
        panel(
            &format!("calls per interval ({} s)", report.options.interval_secs),
            "calls",
            false,
            vec![
                series("attempted", &|i| Some(i.attempted as f64)),
                series("answered", &|i| Some(i.answered as f64)),
                series("failed", &|i| Some(i.failed as f64)),
            ],
        ),
        panel(
            "post-dial delay of the interval's calls (INVITE -> first 18x/200)",
            "ms",
            true,
            // As in every bench plot, a target's p99 is its p50's colour, dashed.
            vec![
                series(&format!("{} p50", report.options.target), &|i| i.pdd_p50_ms),
                Series { dashed: true, ..series(&format!("{} p99", report.options.target), &|i| i.pdd_p99_ms) },
                Series { dashed: true, ..series(&format!("limit (p99 <= {MAX_P99_MS} ms)"), &|_| Some(MAX_P99_MS)) },
            ],
        ),
    ];
    if report.intervals.iter().any(|i| i.sbc_cpu_pct.is_some() || i.sbc_rss_mib.is_some()) {
        panels.push(panel("sbc CPU", "% of one core", false, vec![series("sbc cpu", &|i| i.sbc_cpu_pct)]));
        panels.push(panel("sbc resident memory", "MiB", false, vec![series("sbc rss", &|i| i.sbc_rss_mib)]));
    }
    crate::plot::write_svg(
        path,
        &format!(
            "sbc-bench soak: {}, {} calls/s, hold {} s, {}",
            report.options.target,
            report.options.rate,
            report.options.hold_secs,
            clock(report.options.duration_secs as f64)
        ),
        &panels,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(rate: u32, duration: &str, interval: &str) -> Result<Options> {
        Options::new(
            &Target::Local(None),
            rate,
            10,
            parse_duration(duration).map_err(anyhow::Error::msg)?,
            parse_duration(interval).map_err(anyhow::Error::msg)?,
            None,
            None,
        )
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("90").unwrap_err().contains("90s, 30m, 2h"));
        assert!(parse_duration("1.5s").unwrap_err().contains("whole seconds"));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn bounds_are_checked_with_a_reason() {
        let o = opts(2, "1h", "60s").unwrap();
        assert_eq!((o.calls(), o.duration_secs, o.interval_secs, o.target.as_str()), (7200, 3600, 60, "local"));
        assert_eq!(opts(100, "24h", "60s").unwrap().calls(), 8_640_000);
        let e = |r: Result<Options>| r.unwrap_err().to_string();
        assert!(e(opts(101, "1h", "60s")).contains("--rate 101 is outside 1..=100"));
        assert!(e(opts(0, "1h", "60s")).contains("--rate 0"));
        assert!(e(opts(2, "25h", "60s")).contains("outside 1s..=24h"));
        assert!(e(opts(2, "0s", "60s")).contains("outside 1s..=24h"));
        assert!(e(opts(2, "30s", "60s")).contains("at most --duration"));
        assert!(e(Options::new(&Target::Direct, 2, 601, Duration::from_secs(60), Duration::from_secs(10), None, None))
            .contains("--hold-secs 601"));
    }

    fn counts(attempted: u64, answered: u64, failed: u64, in_progress: u64) -> Counts {
        Counts { attempted, answered, failed, in_progress, retransmissions: 0 }
    }

    #[test]
    fn stat_lines_give_cumulative_counts() {
        let header: Vec<String> =
            "StartTime;OutgoingCall(C);CurrentCall;SuccessfulCall(C);FailedCall(C);Retransmissions(C)"
                .split(';')
                .map(Into::into)
                .collect();
        let text = "StartTime;...\nx;4;4;0;0;0\nx;10;6;4;0;2\nx;12;5";
        let line = last_complete_line(text).unwrap();
        assert_eq!(Counts::parse(&header, line), Some(Counts { retransmissions: 2, ..counts(10, 4, 0, 6) }));
        assert_eq!(last_complete_line("no newline yet"), None);
        assert_eq!(Counts::parse(&header, "x;12;5"), None);
    }

    #[test]
    fn intervals_from_consecutive_cumulative_counts() {
        let times = ResponseTimes { pdd: vec![1.0; 120], setup: vec![4.0; 120] };
        // 60 s at 2/s, hold 10 s: 120 placed, 100 completed (the last 20 still held), none failed.
        let first = counts(120, 100, 0, 20);
        let iv = Interval::measured(1, (0.0, 60.0), 60.0, &first.since(&Counts::default()), 0, false, &times);
        assert_eq!((iv.attempted, iv.answered, iv.failed, iv.in_progress), (120, 100, 0, 20));
        assert_eq!((iv.pdd_p99_ms, iv.setup_p99_ms, iv.pass), (Some(1.0), Some(4.0), true));
        let second = counts(240, 219, 1, 20);
        let d = second.since(&first);
        assert_eq!((d.attempted, d.answered, d.failed, d.in_progress), (120, 119, 1, 20));
        let iv = Interval::measured(2, (60.0, 120.0), 120.0, &d, 0, false, &times);
        assert!((iv.failed_ratio - 1.0 / 120.0).abs() < 1e-12);
        assert!(!iv.pass);
        assert_eq!(iv.why, ["1 of 120 calls failed (0.83 % > 0.1 %)"]);
        // The target died with 20 calls up: they count as failed; an interruption only reports them.
        let last = counts(250, 219, 1, 20);
        assert_eq!(last.unfinished(), 30);
        let died =
            Interval::measured(3, (120.0, 125.0), 125.0, &last.since(&second), 30, false, &ResponseTimes::default());
        assert_eq!((died.failed, died.abandoned, died.pass), (30, 30, false));
        let stopped =
            Interval::measured(3, (120.0, 125.0), 125.0, &last.since(&second), 30, true, &ResponseTimes::default());
        assert_eq!((stopped.failed, stopped.abandoned), (0, 30));
        assert_eq!(stopped.why, ["10 calls placed, none answered"]);
    }

    #[test]
    fn pass_rule_is_failed_share_and_pdd_p99() {
        let times = |pdd: Vec<f64>| ResponseTimes { setup: pdd.clone(), pdd };
        let iv = |answered, failed, pdd| {
            Interval::measured(
                1,
                (0.0, 60.0),
                60.0,
                &counts(answered + failed, answered, failed, 0),
                0,
                false,
                &times(pdd),
            )
        };
        // 1 failure in 1000 is exactly 0.1 %: passes; 2 do not.
        assert!(iv(999, 1, vec![5.0; 999]).pass);
        assert!(!iv(998, 2, vec![5.0; 998]).pass);
        // p99 of 100 samples with one slow call is still fast; with two it is slow.
        let mut pdd = vec![5.0; 99];
        pdd.push(900.0);
        assert!(iv(100, 0, pdd.clone()).pass);
        pdd[0] = 900.0;
        let slow = iv(100, 0, pdd);
        assert_eq!(slow.why, ["pdd p99 900 ms > 200 ms"]);
        assert!(iv(100, 0, vec![200.0; 100]).pass);
        // Nothing placed, nothing measured (the drain after the last call): nothing to fail.
        assert!(iv(0, 0, vec![]).pass);
    }

    #[test]
    fn rtt_lines_and_histogram_percentiles() {
        let t = crate::calls::parse_rtt(
            "Date_ms;response_time_ms;rtd_no\n204.001;0;pdd\n208.001;4;setup\n1004;1;pdd\n;x;pdd\n",
        );
        assert_eq!((t.pdd, t.setup), (vec![0.0, 1.0], vec![4.0]));
        let mut h = Histogram::default();
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        h.add(&values);
        for p in [0.0, 50.0, 95.0, 99.0, 100.0] {
            assert_eq!(h.percentile(p), percentile(&values, p), "p{p}");
        }
        assert_eq!(Histogram::default().percentile(50.0), None);
    }

    #[test]
    fn prometheus_text_has_every_series() {
        let o = opts(2, "1h", "60s").unwrap();
        let exporter = Exporter::start("local", None, None).unwrap();
        exporter.started(&o).unwrap();
        let before = exporter.render();
        assert!(before.contains("sbc_bench_soak_up{target=\"local\"} 1"), "{before}");
        assert!(before.contains("sbc_bench_soak_calls_total{target=\"local\",result=\"answered\"} 0"), "{before}");
        assert!(before.contains("sbc_bench_soak_pdd_ms{target=\"local\",quantile=\"0.99\"} NaN"), "{before}");
        let times = ResponseTimes { pdd: vec![1.0, 2.0, 4.0], setup: vec![5.0] };
        let mut iv = Interval::measured(1, (0.0, 60.0), 1_700_000_060.0, &counts(120, 118, 2, 20), 0, false, &times);
        iv.sbc_cpu_pct = Some(3.5);
        exporter.interval(&iv).unwrap();
        exporter.interval(&iv).unwrap();
        exporter.finished().unwrap();
        let text = exporter.render();
        for line in [
            "# TYPE sbc_bench_soak_calls_total counter",
            "sbc_bench_soak_calls_total{target=\"local\",result=\"answered\"} 236",
            "sbc_bench_soak_calls_total{target=\"local\",result=\"failed\"} 4",
            "sbc_bench_soak_calls_attempted_total{target=\"local\"} 240",
            "sbc_bench_soak_pdd_ms{target=\"local\",quantile=\"0.5\"} 2",
            "sbc_bench_soak_pdd_ms{target=\"local\",quantile=\"0.99\"} 4",
            "sbc_bench_soak_interval_passed{target=\"local\"} 0",
            "sbc_bench_soak_intervals_total{target=\"local\",result=\"failed\"} 2",
            "sbc_bench_soak_target_cpu_percent{target=\"local\"} 3.5",
            "sbc_bench_soak_last_interval_timestamp_seconds{target=\"local\"} 1700000060",
            "sbc_bench_soak_up{target=\"local\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing `{line}` in\n{text}");
        }
        assert!(text.contains("sbc_bench_soak_interval_failed_ratio{target=\"local\"} 0.01666"), "{text}");
    }

    #[test]
    fn metrics_file_is_rewritten_whole() {
        let dir = std::env::temp_dir().join(format!("soak-unit-{}", std::process::id()));
        let file = dir.join("textfile").join("soak.prom");
        let exporter = Exporter::start("direct", None, Some(file.clone())).unwrap();
        exporter.started(&opts(2, "1h", "60s").unwrap()).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains("sbc_bench_soak_up{target=\"direct\"} 1"), "{text}");
        exporter.finished().unwrap();
        assert!(std::fs::read_to_string(&file).unwrap().contains("sbc_bench_soak_up{target=\"direct\"} 0"));
        assert!(!file.with_extension("tmp").exists());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn verdict_names_the_first_failing_interval_and_the_end() {
        let ok = Interval::measured(
            1,
            (0.0, 60.0),
            0.0,
            &counts(120, 120, 0, 0),
            0,
            false,
            &ResponseTimes { pdd: vec![1.0], setup: vec![1.0] },
        );
        let bad = Interval {
            index: 2,
            pass: false,
            why: vec!["pdd p99 300 ms > 200 ms".into()],
            end_secs: 120.0,
            ..ok.clone()
        };
        assert!(verdict(std::slice::from_ref(&ok), &End::Completed, 60).is_empty());
        assert!(verdict(std::slice::from_ref(&ok), &End::Interrupted, 3600).is_empty());
        let why = verdict(&[ok.clone(), bad], &End::Completed, 120);
        assert_eq!(why, ["1 of 2 intervals failed (first: #2 at 00:02:00: pdd p99 300 ms > 200 ms)"]);
        let why = verdict(&[ok], &End::TargetDied("log".into()), 3600);
        assert_eq!(why, ["the target died at 00:01:00 of 01:00:00"]);
        assert_eq!(verdict(&[], &End::Interrupted, 60), ["no interval was measured"]);
        assert_eq!(clock(3725.9), "01:02:05");
    }
}
