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

mod export;
mod interval;
mod readers;
mod report;

pub use report::{plot, table};

use crate::calls::{self, cpu_ticks, ResponseTimes, CLOCK_TICKS_PER_SEC};
use crate::cps::{MAX_FAILED_PCT, MAX_P99_MS, STOP};
use crate::target::{local_config, Harness, Target};
use ::tests::sipp::{Running, Sipp};
use ::tests::Sbc;
use anyhow::{bail, Context, Result};
use export::Exporter;
use interval::{progress_line, Interval};
use readers::{Counts, RttTail, StatTail};
use report::{clock, summarize, verdict, End, Histogram, Report};
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The highest rate a soak accepts, calls per second: a soak is a light load (`cps` finds a ceiling).
const MAX_RATE: u32 = 100;
/// The longest soak.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// The most calls one soak places (rate × duration). With the two bounds above a soak stays below it (8.64 M); it is
/// the bound SIPp's `-m` and the harness's counters are sized for.
const MAX_CALLS: u64 = 10_000_000;
/// The longest hold time, seconds (rate × hold calls are up at once: at most 60 000).
const MAX_HOLD_SECS: u32 = 600;
/// The shortest reporting interval.
const MIN_INTERVAL: Duration = Duration::from_secs(1);
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
    fn calls(&self) -> u64 {
        u64::from(self.rate) * self.duration_secs
    }

    fn duration(&self) -> Duration {
        Duration::from_secs(self.duration_secs)
    }

    fn hold(&self) -> Duration {
        Duration::from_secs(self.hold_secs.into())
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
            iv.sbc_rss_mib = ::tests::procfs::rss_kib(sbc.id()).map(|k| k as f64 / 1024.0);
            // One `netprobe` run each inside the SBC's namespace: cheap once an interval.
            iv.sbc_legs_active = sbc.metric("sbc_calls_active").ok();
            iv.sbc_transactions_active = sbc.metric("sbc_sip_transactions_active").ok();
        }
        self.start_secs = end_secs;
        self.intervals.push(iv);
        self.intervals.last().expect("just pushed")
    }
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
        _ if target.is_local() => Some(harness.start_local(target, "bench-soak", &local_config(false), None)?),
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
        stat: StatTail::new(caller.dir.join("stat.csv")),
        rtt: RttTail::new(caller.dir.clone()),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Options for a local target with a hold of 10 s (also used by the tests of the submodules).
    pub(super) fn opts(rate: u32, duration: &str, interval: &str) -> Result<Options> {
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

    /// Cumulative counters with no retransmissions (also used by the tests of the submodules).
    pub(super) fn counts(attempted: u64, answered: u64, failed: u64, in_progress: u64) -> Counts {
        Counts { attempted, answered, failed, in_progress, retransmissions: 0 }
    }
}
