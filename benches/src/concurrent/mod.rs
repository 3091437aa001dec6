//! `sbc-bench concurrent`: ramps to N calls with media both ways and holds them, per target (see target.rs), and
//! reports call setup (post-dial delay, setup time, failures), the peak of concurrent calls, and per direction the
//! packets sent, received and lost, one-way latency and interarrival jitter, with the SBC's CPU during the hold.
//!
//! Per run and target (targets interleaved run by run, so both see the same state of the machine):
//!
//! 1. A local target gets a fresh `sbc` with its embedded media relay (`local_config(true)`), pinned to
//!    [`SBC_CORE`].
//! 2. The callee (SIPp UAS, benches/sipp/uas.xml), then the caller (SIPp UAC, uac.xml) placing N calls at R/s,
//!    each held long enough that every call is still up when the media ends (see [`Options::hold`]). Both trace
//!    their messages: the SDP each side received names, per call, where that side's media goes.
//! 3. Once all N calls are answered (the caller got N 200s with SDP and the callee N INVITEs with SDP; at most
//!    [`Options::ramp_allowance`] after the first INVITE, else the media runs on the calls that are up and the run
//!    fails), one `rtpfleet` per side (tests/src/bin/rtpfleet.rs) sends one RTP stream per call, P packets/s for H
//!    seconds, from the address its SDP named (the caller's `UAC_RTP_PORT`, the callee's `UAS_RTP_PORT`) to that
//!    call's address in the SDP it received, and tells the streams coming back apart by SSRC, as in
//!    tests/tests/media_load.rs. A hold above [`MAX_SEGMENT_SECS`] runs as consecutive fleets of at most that long.
//! 4. The calls end with the caller's BYEs; SIPp's `-trace_rtt` gives each call's post-dial delay and setup time.
//!
//! For a target outside the harness's own namespaces every media address the target's SDP names is checked by the
//! [`crate::target::Guard`] before a packet is sent. Every SIPp run is bounded (`-timeout`, then a kill), every
//! wait has a deadline, every fleet has `--duration-ms`; processes are killed on drop and the namespaces are
//! removed by the caller of [`run`], also on error and on Ctrl-C ([`STOP`], checked between polls).

mod fleet;
mod report;
mod sip_log;

pub use fleet::prepare_rtpfleet;
pub use report::{plot, summarize, table};

use crate::calls::{self, CLOCK_TICKS_PER_SEC};
use crate::cps::STOP;
use crate::stats::percentile;
use crate::target::{self, Harness, Target};
use ::tests::procfs::rss_kib;
use anyhow::{bail, Context, Result};
use fleet::{media_of, FleetReport, Fleets, Media, FLEET_IDLE_MS};
use report::{fail_reasons, outcome, pinning};
use serde::Serialize;
use sip_log::{peak_current_calls, read_stat, stat_age, tail_of, MessageLog, Role};
use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The core the local target's `sbc` runs on (as in `cps`).
pub const SBC_CORE: usize = 1;
/// The core both SIPp processes and both fleets run on.
pub const SIPP_CORE: usize = 0;
/// A run passes with less than this share of the packets sent lost, each direction, in percent.
pub const MAX_LOSS_PCT: f64 = 0.1;
/// The longest a single `rtpfleet` sends (it accepts at most 600 s of sending and 600 s in all); a longer hold
/// runs as consecutive fleets.
const MAX_SEGMENT_SECS: u32 = 590;
/// Slack of the ramp: the media starts at the latest this long (plus a quarter of the nominal ramp) after the
/// nominal ramp time N/R.
const RAMP_SLACK: Duration = Duration::from_secs(2);
/// Time between the end of the media and the first BYE.
const MEDIA_MARGIN: Duration = Duration::from_secs(3);
/// SIPp writes its stat file every second; a stat file this old means SIPp is gone.
const STAT_STALE: Duration = Duration::from_secs(5);
/// How often the logs are read and the fleets checked.
const POLL: Duration = Duration::from_millis(200);
/// How long `sbc` is left alone before its idle memory is read (and, four times this, after the last call ended).
const RSS_SETTLE: Duration = Duration::from_millis(500);
/// Without a terminal, a progress line this often.
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// What `concurrent` was asked to do.
#[derive(Debug, Clone, Serialize)]
pub struct Options {
    /// The targets of every run, in order (the target, then the comparison).
    pub targets: Vec<Target>,
    /// Their labels in output and JSON (distinct).
    pub labels: Vec<String>,
    /// Calls placed and held together.
    pub calls: u32,
    /// Calls placed per second during the ramp.
    pub rate: u32,
    /// Seconds of media once every call is up.
    pub hold_secs: u32,
    /// RTP packets per second per call, each way.
    pub pps: u32,
    /// RTP payload bytes per packet.
    pub payload: u16,
    /// Complete runs (each measures every target once).
    pub runs: u32,
    /// Whether the sbc runs on [`SBC_CORE`] and SIPp and the fleets on [`SIPP_CORE`].
    pub pinned: bool,
    /// The `rtpfleet` binary.
    pub rtpfleet: PathBuf,
}

impl Options {
    /// The nominal ramp, N / R.
    fn ramp_nominal(&self) -> Duration {
        Duration::from_secs_f64(f64::from(self.calls) / f64::from(self.rate.max(1)))
    }

    /// How long after the caller starts the media starts at the latest: the nominal ramp plus [`RAMP_SLACK`] and a
    /// quarter of the nominal ramp (SIPp falls a little behind its rate at high rates).
    fn ramp_allowance(&self) -> Duration {
        let nominal = self.ramp_nominal();
        nominal + RAMP_SLACK + nominal / 4
    }

    /// The media's segments, in seconds (one unless the hold is longer than [`MAX_SEGMENT_SECS`]).
    fn segments(&self) -> Vec<u32> {
        let mut left = self.hold_secs;
        let mut out = Vec::new();
        while left > 0 {
            let s = left.min(MAX_SEGMENT_SECS);
            out.push(s);
            left -= s;
        }
        out
    }

    /// Each call's hold time (SIPp `-d`, from its 200): even the first call, answered at once, is still up when the
    /// media started at the end of the ramp allowance has ended (a second per segment for the fleets' start and
    /// idle exit, then [`MEDIA_MARGIN`]).
    pub fn hold(&self) -> Duration {
        let segments = self.segments().len() as u64;
        let media = Duration::from_secs(u64::from(self.hold_secs) + segments + FLEET_IDLE_MS.div_ceil(1000));
        whole_secs(self.ramp_allowance() + media + MEDIA_MARGIN)
    }

    /// The caller's SIPp limit: the last call starts by twice the ramp allowance and ends a hold later; 20 s more.
    fn uac_limit(&self) -> Duration {
        whole_secs(self.ramp_allowance() * 2 + self.hold() + Duration::from_secs(20))
    }
}

/// `d` rounded up to whole seconds (SIPp's `-timeout` takes seconds).
fn whole_secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs() + u64::from(d.subsec_nanos() > 0))
}

/// One point of the time series: sampled once a second from the caller's start.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds since the caller started.
    pub t_s: f64,
    /// Calls answered and not yet ended (the caller's 200s with SDP less its BYEs).
    pub up: u64,
    /// SIPp's `FailedCall(C)` on the caller.
    pub failed: u64,
}

/// The figures of one target in one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Measurement {
    /// 1-based.
    pub run: u32,
    /// The target's label.
    pub target: String,
    /// Calls to place.
    pub calls: u32,
    /// Calls SIPp placed (`OutgoingCall(C)`).
    pub placed: u64,
    /// Calls answered: the caller received a 200 with SDP.
    pub answered: u64,
    /// Calls that completed (SIPp `SuccessfulCall(C)`).
    pub successful: u64,
    /// `calls - successful`: failed or never finished.
    pub failed: u64,
    /// SIPp's own `FailedCall(C)` on the caller.
    pub sipp_failed: u64,
    /// The caller's retransmissions (`Retransmissions(C)`): overload shows here before calls fail.
    pub retransmissions: u64,
    /// INVITE → first 18x/200, ms.
    pub pdd_p50_ms: Option<f64>,
    pub pdd_p95_ms: Option<f64>,
    pub pdd_p99_ms: Option<f64>,
    /// INVITE → 200, ms.
    pub setup_p50_ms: Option<f64>,
    pub setup_p99_ms: Option<f64>,
    /// Seconds from the caller's start until all calls were up on both sides; `None` if they never were.
    pub ramp_secs: Option<f64>,
    /// The most calls up at once (answered, not ended), from the caller's message log.
    pub peak_calls_up: u64,
    /// The largest `CurrentCall` in SIPp's stat file (calls in progress, answered or not).
    pub peak_sipp_current_calls: Option<u64>,
    /// Calls answered when the caller sent its first BYE.
    pub answered_before_first_bye: Option<u64>,
    /// The media, if it ran.
    pub media: Option<Media>,
    /// CPU time of `sbc` over the media, in percent of one core (local targets).
    pub sbc_cpu_pct: Option<f64>,
    /// Resident memory of `sbc` (VmRSS) before the first call, KiB (local targets).
    pub sbc_rss_idle_kib: Option<u64>,
    /// The most resident memory of `sbc` seen while the calls were placed and held, KiB.
    pub sbc_rss_peak_kib: Option<u64>,
    /// Resident memory of `sbc` once every call had ended, KiB.
    pub sbc_rss_after_kib: Option<u64>,
    /// `(peak - idle) / peak_calls_up`: what an established call with media anchored costs, KiB.
    pub sbc_rss_per_call_kib: Option<f64>,
    /// Wall time of the measurement, seconds.
    pub wall_secs: f64,
    /// Calls up and failed, once a second from the caller's start.
    pub series: Vec<Sample>,
    /// Why the measurement could not be completed, if it could not.
    pub error: Option<String>,
    /// Why it failed, empty when it passed.
    pub fail_reasons: Vec<String>,
    /// No failed call, every call answered, and loss < [`MAX_LOSS_PCT`] % each way.
    pub pass: bool,
}

/// Runs every target `opts.runs` times, interleaved (run 1 in the order given, run 2 reversed, and so on, so that
/// no target always goes first), and returns every measurement in the order measured. A measurement that fails is
/// recorded with its error and the next one runs; Ctrl-C stops at once with an error.
pub fn run(harness: &Harness, opts: &Options) -> Result<Vec<Measurement>> {
    eprintln!("{}", pinning(opts));
    let mut out = Vec::new();
    for run in 1..=opts.runs {
        let mut order: Vec<usize> = (0..opts.targets.len()).collect();
        if run.is_multiple_of(2) {
            order.reverse();
        }
        for t in order {
            check_stop()?;
            let mut m = Measurement {
                run,
                target: opts.labels[t].clone(),
                calls: opts.calls,
                failed: u64::from(opts.calls),
                ..Measurement::default()
            };
            let started = Instant::now();
            let mut progress = Progress::new(format!("[run {run}/{}] {}", opts.runs, opts.labels[t]));
            let mut files = Vec::new();
            let result = measure(harness, opts, t, &mut m, &mut progress, &mut files);
            progress.finish();
            m.wall_secs = started.elapsed().as_secs_f64();
            let interrupted = STOP.load(Ordering::SeqCst);
            match result {
                Err(e) if !interrupted => {
                    let kept: Vec<String> = files.iter().map(|d| d.display().to_string()).collect();
                    m.error = Some(format!("{e:#} (files kept: {})", kept.join(", ")));
                }
                _ => {
                    for dir in &files {
                        let _ = std::fs::remove_dir_all(dir);
                    }
                }
            }
            check_stop()?;
            m.fail_reasons = fail_reasons(&m);
            m.pass = m.fail_reasons.is_empty();
            eprintln!("{}", outcome(opts.runs, &m));
            out.push(m);
        }
    }
    Ok(out)
}

fn check_stop() -> Result<()> {
    if STOP.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Where the calls are in one measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Calls being placed.
    Ramp,
    /// Media on every call that is up.
    Hold,
    /// Media done; the calls end (BYEs) and SIPp finishes.
    Ending,
}

/// One target in one run, into `m`. Every directory it leaves (SIPp's, the fleets') goes into `files`: the caller
/// removes them, or keeps them after an error.
fn measure(
    h: &Harness,
    opts: &Options,
    t: usize,
    m: &mut Measurement,
    progress: &mut Progress,
    files: &mut Vec<PathBuf>,
) -> Result<()> {
    let target = &opts.targets[t];
    let path = h.path(target);
    let core = opts.pinned.then_some(SIPP_CORE);
    let scratch = std::env::temp_dir().join(format!("sbc-bench-concurrent-{}-{}-{t}", std::process::id(), m.run));
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    files.push(scratch.clone());
    let mut sbc = match target {
        _ if target.is_local() => Some(h.start_local(
            target,
            &format!("bench-concurrent-run{}", m.run),
            &target::local_config(true),
            opts.pinned.then_some(SBC_CORE),
        )?),
        _ => None,
    };
    if let Some(sbc) = &sbc {
        // The relay and the driver have started (start_local waited for the SIP socket); let start-up settle.
        std::thread::sleep(RSS_SETTLE);
        m.sbc_rss_idle_kib = rss_kib(sbc.id());
    }

    // Headroom: stray retransmissions after a call ended count as calls too; the UAS is killed after the UAC ends.
    let uas_calls = opts.calls.saturating_mul(2).saturating_add(1000);
    let mut uas = calls::uas(&path, uas_calls, opts.uac_limit() + Duration::from_secs(5), core)
        .trace_messages(true)
        .spawn()
        .context("starting the callee (SIPp UAS)")?;
    files.push(uas.dir().to_owned());
    uas.wait_listening(path.uas.ns.as_deref(), path.uas.port, Duration::from_secs(5))?;
    let uac = calls::uac(&path, opts.calls, opts.rate, opts.hold(), opts.uac_limit(), core)
        .trace_messages(true)
        .spawn()
        .context("starting the caller (SIPp UAC)")?;
    files.push(uac.dir().to_owned());
    let t0 = Instant::now();
    let uac_dir = uac.dir().to_owned();
    let uas_dir = uas.dir().to_owned();
    let mut caller_log = MessageLog::new(uac_dir.join("messages.log"), Role::Caller);
    let mut callee_log = MessageLog::new(uas_dir.join("messages.log"), Role::Callee);
    let n = u64::from(opts.calls);
    let ramp_deadline = t0 + opts.ramp_allowance();
    let end_deadline = t0 + opts.uac_limit() + Duration::from_secs(5);
    let segments = opts.segments();
    let mut phase = Phase::Ramp;
    let mut fleets: Option<Fleets> = None;
    let mut done: Vec<(FleetReport, FleetReport)> = Vec::new();
    let mut hold_started = t0;
    let mut cpu_before = None;
    let mut streams = 0usize;
    let mut next_sample = 0u64;
    loop {
        check_stop()?;
        caller_log.update()?;
        callee_log.update()?;
        let stat = read_stat(&uac_dir);
        let failed = stat.as_ref().map_or(0, |s| s.failed);
        let up = caller_log.up();
        m.peak_calls_up = m.peak_calls_up.max(up);
        if let Some(rss) = sbc.as_ref().and_then(|s| rss_kib(s.id())) {
            m.sbc_rss_peak_kib = Some(m.sbc_rss_peak_kib.map_or(rss, |p| p.max(rss)));
        }
        let now = Instant::now();
        let stale = stat_age(&uac_dir).is_some_and(|age| age > STAT_STALE);
        match phase {
            Phase::Ramp => {
                let (a, b) = (caller_log.answered(), callee_log.answered());
                let all_up = a >= n && b >= n;
                if all_up || now >= ramp_deadline || stale {
                    if all_up {
                        m.ramp_secs = Some(t0.elapsed().as_secs_f64());
                    }
                    streams = a.min(b) as usize;
                    if streams == 0 {
                        bail!(
                            "no call up on both sides after {:.1} s (caller {a}, callee {b} answered); caller's \
                             files in {}: {}",
                            t0.elapsed().as_secs_f64(),
                            uac_dir.display(),
                            tail_of(&uac_dir, &["stderr.log", "errors.log"])
                        );
                    }
                    let (to_callee, to_caller) = (&caller_log.endpoints[..streams], &callee_log.endpoints[..streams]);
                    if !path.in_own_namespaces {
                        // Every media address the target's SDP named, not only those the fleets send to (ours were
                        // accepted when the harness was built; a held stream's 0.0.0.0 gets nothing).
                        let named = calls::sdp_audio_endpoints(&uac.messages())
                            .into_iter()
                            .chain(calls::sdp_audio_endpoints(&uas.messages()))
                            .map(|a| a.ip())
                            .filter(|ip| !ip.is_unspecified())
                            .collect::<HashSet<IpAddr>>();
                        for ip in named {
                            h.guard.check("media address", ip)?;
                        }
                    }
                    cpu_before = sbc.as_ref().and_then(|s| calls::cpu_ticks(s.id()));
                    hold_started = Instant::now();
                    fleets = Some(Fleets::start(opts, &path, &scratch, 0, segments[0], to_callee, to_caller)?);
                    phase = Phase::Hold;
                    progress.force();
                }
            }
            Phase::Hold => {
                let f = fleets.as_mut().context("fleets running")?;
                if let Some(reports) = f.poll()? {
                    done.push(reports);
                    if done.len() < segments.len() {
                        let s = done.len();
                        let (to_callee, to_caller) =
                            (&caller_log.endpoints[..streams], &callee_log.endpoints[..streams]);
                        fleets = Some(Fleets::start(opts, &path, &scratch, s, segments[s], to_callee, to_caller)?);
                    } else {
                        fleets = None;
                        let secs = hold_started.elapsed().as_secs_f64();
                        if let (Some(before), Some(after)) =
                            (cpu_before, sbc.as_ref().and_then(|s| calls::cpu_ticks(s.id())))
                        {
                            m.sbc_cpu_pct = Some(100.0 * (after - before) as f64 / CLOCK_TICKS_PER_SEC / secs);
                        }
                        m.media = Some(media_of(opts, streams, &done));
                        phase = Phase::Ending;
                        progress.force();
                    }
                }
            }
            Phase::Ending => {
                let finished = stat.as_ref().is_some_and(|s| s.successful + s.failed >= n);
                if finished || stale || now >= end_deadline {
                    break;
                }
            }
        }
        let elapsed = t0.elapsed();
        if elapsed.as_secs() >= next_sample {
            m.series.push(Sample { t_s: elapsed.as_secs_f64(), up, failed });
            next_sample = elapsed.as_secs() + 1;
            let line = match phase {
                Phase::Ramp => format!("ramp {up}/{n} calls up ({failed} failed), {} s", elapsed.as_secs()),
                Phase::Hold => format!(
                    "hold {}/{} s, {up} calls up ({failed} failed)",
                    hold_started.elapsed().as_secs().min(u64::from(opts.hold_secs)),
                    opts.hold_secs
                ),
                Phase::Ending => format!("ending, {up} calls up ({failed} failed)"),
            };
            progress.show(&line);
        }
        std::thread::sleep(POLL);
    }
    // The last point: the calls have ended.
    caller_log.update()?;
    let failed = read_stat(&uac_dir).map_or(0, |s| s.failed);
    m.series.push(Sample { t_s: t0.elapsed().as_secs_f64(), up: caller_log.up(), failed });
    m.answered = caller_log.answered();
    m.answered_before_first_bye = caller_log.answered_at_first_bye;
    let run = uac.wait().context("waiting for the caller (SIPp UAC)")?;
    let count = |column: &str| Some(run.count(column)).filter(|&c| c != u64::MAX).unwrap_or(0);
    m.placed = count("OutgoingCall(C)");
    m.successful = count("SuccessfulCall(C)").min(n);
    m.failed = n - m.successful;
    m.sipp_failed = count("FailedCall(C)");
    m.retransmissions = count("Retransmissions(C)");
    m.peak_sipp_current_calls = peak_current_calls(&run.dir);
    let times = calls::response_times(&run.dir)?;
    m.pdd_p50_ms = percentile(&times.pdd, 50.0);
    m.pdd_p95_ms = percentile(&times.pdd, 95.0);
    m.pdd_p99_ms = percentile(&times.pdd, 99.0);
    m.setup_p50_ms = percentile(&times.setup, 50.0);
    m.setup_p99_ms = percentile(&times.setup, 99.0);
    drop(uas);
    if let Some(sbc) = sbc.as_mut() {
        if !sbc.is_running() {
            bail!("sbc exited during the run; log ({}):\n{}", sbc.log.display(), sbc.log_tail());
        }
        // The last BYE's call is torn down (relay session, CDR after its media figures, at most a second later).
        std::thread::sleep(RSS_SETTLE * 4);
        m.sbc_rss_after_kib = rss_kib(sbc.id());
        m.sbc_rss_per_call_kib = rss_per_call(m.sbc_rss_idle_kib, m.sbc_rss_peak_kib, m.peak_calls_up);
    }
    Ok(())
}

/// `(peak - idle) / calls` in KiB, when both were read and a call was up.
fn rss_per_call(idle: Option<u64>, peak: Option<u64>, calls: u64) -> Option<f64> {
    let (idle, peak) = (idle?, peak?);
    (calls > 0).then(|| peak.saturating_sub(idle) as f64 / calls as f64)
}

/// The progress display on stderr: rewritten in place on a terminal, a line every few seconds otherwise.
#[derive(Debug)]
struct Progress {
    prefix: String,
    tty: bool,
    open: bool,
    last: Option<Instant>,
    forced: bool,
}

impl Progress {
    fn new(prefix: String) -> Self {
        Self { prefix, tty: std::io::stderr().is_terminal(), open: false, last: None, forced: false }
    }

    /// The next line is printed even without a terminal (a phase began).
    fn force(&mut self) {
        self.forced = true;
    }

    fn show(&mut self, line: &str) {
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r{}: {line}\x1b[K", self.prefix);
            let _ = err.flush();
            self.open = true;
        } else if self.forced || self.last.is_none_or(|t| t.elapsed() >= PLAIN_PROGRESS_EVERY) {
            let _ = writeln!(err, "{}: {line}", self.prefix);
            self.last = Some(Instant::now());
        }
        self.forced = false;
    }

    fn finish(&mut self) {
        if self.open {
            eprintln!();
            self.open = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_covers_the_ramp_allowance_and_the_media_and_long_holds_split() {
        let mut o = Options {
            targets: vec![],
            labels: vec![],
            calls: 200,
            rate: 50,
            hold_secs: 20,
            pps: 50,
            payload: 160,
            runs: 1,
            pinned: false,
            rtpfleet: PathBuf::new(),
        };
        assert_eq!(o.ramp_allowance(), Duration::from_secs(7));
        // 7 s ramp allowance + 20 s media + 1 s start + 1 s idle exit + 3 s margin.
        assert_eq!(o.hold(), Duration::from_secs(32));
        assert_eq!(o.uac_limit(), Duration::from_secs(66));
        assert_eq!(o.segments(), vec![20]);
        o.hold_secs = 3600;
        assert_eq!(o.segments(), vec![590, 590, 590, 590, 590, 590, 60]);
        o.calls = 20;
        o.rate = 20;
        o.hold_secs = 3;
        assert_eq!(o.ramp_allowance(), Duration::from_millis(3250));
        // 3.25 + 3 + 1 + 1 + 3 s, rounded up.
        assert_eq!(o.hold(), Duration::from_secs(12));
    }

    #[test]
    fn rss_per_call_is_the_growth_over_idle_shared_by_the_calls_up() {
        assert_eq!(rss_per_call(Some(9_000), Some(209_000), 5_000), Some(40.0));
        assert_eq!(rss_per_call(Some(9_000), Some(8_000), 10), Some(0.0), "shrinking counts as nothing");
        assert_eq!(rss_per_call(Some(9_000), Some(10_000), 0), None);
        assert_eq!(rss_per_call(None, Some(10_000), 10), None);
    }
}
