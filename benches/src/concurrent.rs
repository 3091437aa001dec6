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

use crate::calls::{self, CLOCK_TICKS_PER_SEC, UAC_RTP_PORT, UAS_RTP_PORT};
use crate::cps::STOP;
use crate::plot::{self, Panel, Series};
use crate::stats::{median, percentile};
use crate::target::{self, CallPath, Harness, Side, Target};
use ::tests::netns::Process;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::io::{IsTerminal, Read, Seek, SeekFrom, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The core the local target's `sbc` runs on (as in `cps`).
pub const SBC_CORE: usize = 1;
/// The core both SIPp processes and both fleets run on.
pub const SIPP_CORE: usize = 0;
/// SIPp measures response times in whole milliseconds: a PDD ratio needs a denominator of at least this.
const SIPP_RESOLUTION_MS: f64 = 1.0;
/// A run passes with less than this share of the packets sent lost, each direction, in percent.
pub const MAX_LOSS_PCT: f64 = 0.1;
/// The longest a single `rtpfleet` sends (it accepts at most 600 s of sending and 600 s in all); a longer hold
/// runs as consecutive fleets.
pub const MAX_SEGMENT_SECS: u32 = 590;
/// The caller's and the callee's first SSRC (stream i uses base + i; segment s adds s << 16).
const SSRC_CALLER: u32 = 0xA000_0000;
const SSRC_CALLEE: u32 = 0xB000_0000;
/// A fleet exits this long after the last packet arrived, once it has sent everything.
const FLEET_IDLE_MS: u64 = 1000;
/// Slack of the ramp: the media starts at the latest this long (plus a quarter of the nominal ramp) after the
/// nominal ramp time N/R.
const RAMP_SLACK: Duration = Duration::from_secs(2);
/// Time between the end of the media and the first BYE.
const MEDIA_MARGIN: Duration = Duration::from_secs(3);
/// SIPp writes its stat file every second; a stat file this old means SIPp is gone.
const STAT_STALE: Duration = Duration::from_secs(5);
/// How often the logs are read and the fleets checked.
const POLL: Duration = Duration::from_millis(200);
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
    pub fn ramp_nominal(&self) -> Duration {
        Duration::from_secs_f64(f64::from(self.calls) / f64::from(self.rate.max(1)))
    }

    /// How long after the caller starts the media starts at the latest: the nominal ramp plus [`RAMP_SLACK`] and a
    /// quarter of the nominal ramp (SIPp falls a little behind its rate at high rates).
    pub fn ramp_allowance(&self) -> Duration {
        let nominal = self.ramp_nominal();
        nominal + RAMP_SLACK + nominal / 4
    }

    /// The media's segments, in seconds (one unless the hold is longer than [`MAX_SEGMENT_SECS`]).
    pub fn segments(&self) -> Vec<u32> {
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
    pub fn uac_limit(&self) -> Duration {
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

/// One direction of the media of one run: the sending fleet's and the receiving fleet's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Direction {
    /// Packets the sender was to send: streams × pps × seconds.
    pub expected: u64,
    /// Packets sent.
    pub sent: u64,
    /// Failed sends.
    pub send_errors: u64,
    /// Distinct intact packets received.
    pub received: u64,
    /// `sent - received`.
    pub lost: u64,
    /// `lost / sent`, in percent (100 when nothing was sent).
    pub loss_pct: f64,
    /// Streams with at least one packet at the receiver.
    pub streams_seen: u64,
    /// One-way latency, median, µs (median over segments).
    pub latency_p50_us: Option<u64>,
    /// One-way latency, 99th percentile, µs (the largest of the segments).
    pub latency_p99_us: Option<u64>,
    /// One-way latency, largest, µs.
    pub latency_max_us: Option<u64>,
    /// Interarrival jitter (RFC 3550), mean over streams, µs.
    pub jitter_mean_us: Option<f64>,
    /// Interarrival jitter, the worst stream, µs.
    pub jitter_max_us: Option<f64>,
    /// How far the sender fell behind its schedule at worst, ms.
    pub max_send_lag_ms: f64,
}

/// The media of one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Media {
    /// Streams per side (one per call that was up on both sides).
    pub streams: u64,
    /// Seconds of media sent.
    pub seconds: u32,
    /// Caller → callee (through the target's side a, then b).
    pub a_to_b: Direction,
    /// Callee → caller.
    pub b_to_a: Direction,
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

/// The reasons `m` fails (empty: it passes): an error, a failed or unanswered call, no media, a direction with
/// nothing sent, fewer packets sent than planned, or loss at or above [`MAX_LOSS_PCT`].
pub fn fail_reasons(m: &Measurement) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(e) = &m.error {
        out.push(format!("error: {}", e.lines().next().unwrap_or("")));
    }
    if m.failed > 0 {
        out.push(format!("{} of {} calls failed", m.failed, m.calls));
    }
    if m.answered < u64::from(m.calls) {
        out.push(format!("{} of {} calls answered", m.answered, m.calls));
    }
    match &m.media {
        None => out.push("no media".to_owned()),
        Some(media) => {
            for (name, d) in [("a->b", &media.a_to_b), ("b->a", &media.b_to_a)] {
                if d.sent == 0 {
                    out.push(format!("nothing sent {name}"));
                    continue;
                }
                if d.sent < d.expected {
                    out.push(format!("only {} of {} packets sent {name}", d.sent, d.expected));
                }
                if d.loss_pct >= MAX_LOSS_PCT {
                    out.push(format!("loss {name} {:.3} % (limit {MAX_LOSS_PCT} %)", d.loss_pct));
                }
            }
        }
    }
    out
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
        Target::Local(_) => Some(h.start_local(
            target,
            &format!("bench-concurrent-run{}", m.run),
            &target::local_config(true),
            opts.pinned.then_some(SBC_CORE),
        )?),
        _ => None,
    };

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
    }
    Ok(())
}

/// The last lines of files in a SIPp directory, for error messages.
fn tail_of(dir: &Path, names: &[&str]) -> String {
    names
        .iter()
        .map(|name| {
            let text = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            format!("[{name}] {}", lines[lines.len().saturating_sub(5)..].join(" | "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The caller's and the callee's `rtpfleet` of one media segment.
#[derive(Debug)]
struct Fleets {
    caller: Process,
    callee: Process,
    caller_report: PathBuf,
    callee_report: PathBuf,
    deadline: Instant,
}

impl Fleets {
    /// Starts both fleets for segment `segment` of `secs` seconds and, once both have bound their sockets (so that
    /// no stream starts towards a side that cannot receive yet), writes their targets files: the caller's fleet
    /// sends stream i to `to_callee[i]`, the address the target's 200 named for call i; the callee's to
    /// `to_caller[i]`, from the INVITE it received.
    fn start(
        opts: &Options,
        path: &CallPath,
        scratch: &Path,
        segment: usize,
        secs: u32,
        to_callee: &[SocketAddr],
        to_caller: &[SocketAddr],
    ) -> Result<Self> {
        let offset = (segment as u32) << 16;
        let (mut caller, caller_report, caller_targets) = fleet(
            opts,
            scratch,
            &format!("caller{segment}"),
            &path.uac,
            UAC_RTP_PORT,
            to_callee.len(),
            SSRC_CALLER + offset,
            SSRC_CALLEE + offset,
            secs,
        )?;
        let (mut callee, callee_report, callee_targets) = fleet(
            opts,
            scratch,
            &format!("callee{segment}"),
            &path.uas,
            UAS_RTP_PORT,
            to_caller.len(),
            SSRC_CALLEE + offset,
            SSRC_CALLER + offset,
            secs,
        )?;
        wait_bound(&mut caller, &path.uac, UAC_RTP_PORT)?;
        wait_bound(&mut callee, &path.uas, UAS_RTP_PORT)?;
        for (file, targets) in [(&caller_targets, to_callee), (&callee_targets, to_caller)] {
            let text: String = targets.iter().map(|a| format!("{a}\n")).collect();
            ::tests::write_atomically(file, &text)?;
        }
        let deadline = Instant::now() + Duration::from_secs(u64::from(secs) + 20);
        Ok(Self { caller, callee, caller_report, callee_report, deadline })
    }

    /// Both reports once both fleets have exited; `None` while one runs. Fails when one failed or overran.
    fn poll(&mut self) -> Result<Option<(FleetReport, FleetReport)>> {
        let caller = self.caller.try_wait()?;
        let callee = self.callee.try_wait()?;
        let (Some(caller), Some(callee)) = (caller, callee) else {
            if Instant::now() > self.deadline {
                self.caller.kill();
                self.callee.kill();
                bail!(
                    "rtpfleet still running at its deadline:\n{}\n{}",
                    self.caller.output_tail(),
                    self.callee.output_tail()
                );
            }
            return Ok(None);
        };
        for (status, p) in [(caller, &self.caller), (callee, &self.callee)] {
            if !status.success() {
                bail!("rtpfleet ended with {status}: {}", p.output_tail());
            }
        }
        Ok(Some((read_fleet_report(&self.caller_report)?, read_fleet_report(&self.callee_report)?)))
    }
}

/// Starts one `rtpfleet` of `streams` streams on `side` (in its namespace, or here), bound to the side's address
/// and `port`; returns it, the path of its report and the path of the targets file it waits for.
#[allow(clippy::too_many_arguments)]
fn fleet(
    opts: &Options,
    scratch: &Path,
    name: &str,
    side: &Side,
    port: u16,
    streams: usize,
    ssrc: u32,
    expect: u32,
    secs: u32,
) -> Result<(Process, PathBuf, PathBuf)> {
    let targets_file = scratch.join(format!("{name}.targets"));
    let report = scratch.join(format!("{name}.json"));
    let args = [
        "--bind".to_owned(),
        SocketAddr::new(side.ip, port).to_string(),
        "--targets-file".to_owned(),
        targets_file.display().to_string(),
        "--streams".to_owned(),
        streams.to_string(),
        "--pps-per-stream".to_owned(),
        opts.pps.to_string(),
        "--seconds".to_owned(),
        secs.to_string(),
        "--payload".to_owned(),
        opts.payload.to_string(),
        "--ssrc-base".to_owned(),
        format!("{ssrc:#x}"),
        "--expect-ssrc-base".to_owned(),
        format!("{expect:#x}"),
        "--idle-exit-ms".to_owned(),
        FLEET_IDLE_MS.to_string(),
        "--duration-ms".to_owned(),
        (u64::from(secs) * 1000 + 5000).to_string(),
        "--report".to_owned(),
        report.display().to_string(),
    ];
    let p = Process::spawn(side.ns.as_deref(), name, &opts.rtpfleet, &args, scratch)
        .with_context(|| format!("starting rtpfleet {name}"))?;
    if opts.pinned {
        target::pin(p.id(), SIPP_CORE)?;
    }
    Ok((p, report, targets_file))
}

/// Waits until `fleet` has bound UDP `port` on `side` (per `ss`), failing if it exits first or after 5 s.
fn wait_bound(fleet: &mut Process, side: &Side, port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = fleet.try_wait()? {
            bail!("rtpfleet ended with {status} before it bound port {port}: {}", fleet.output_tail());
        }
        let filter = format!("sport = :{port}");
        let out = ::tests::netns::run(::tests::netns::command(side.ns.as_deref(), "ss").args(["-Hlun", &filter]))?;
        if !out.trim().is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("rtpfleet has not bound {}:{port} after 5 s: {}", side.ip, fleet.output_tail());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The parts of an `rtpfleet` report (tests/src/bin/rtpfleet.rs) the bench uses.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct FleetReport {
    sent: u64,
    send_errors: u64,
    max_send_lag_ms: f64,
    received: u64,
    ssrcs_seen: u64,
    latency_us: Option<FleetLatency>,
    jitter_us: Option<FleetJitter>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
struct FleetLatency {
    p50: u64,
    p99: u64,
    max: u64,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
struct FleetJitter {
    mean: f64,
    max: f64,
}

fn read_fleet_report(path: &Path) -> Result<FleetReport> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// One direction over the segments: `tx` the sender's reports, `rx` the receiver's, segment by segment.
fn direction(expected: u64, pairs: &[(&FleetReport, &FleetReport)]) -> Direction {
    let sent: u64 = pairs.iter().map(|(tx, _)| tx.sent).sum();
    let received: u64 = pairs.iter().map(|(_, rx)| rx.received).sum();
    let lost = sent.saturating_sub(received);
    let lat: Vec<FleetLatency> = pairs.iter().filter_map(|(_, rx)| rx.latency_us).collect();
    let jit: Vec<FleetJitter> = pairs.iter().filter_map(|(_, rx)| rx.jitter_us).collect();
    let p50s: Vec<f64> = lat.iter().map(|l| l.p50 as f64).collect();
    let jitter_means: Vec<f64> = jit.iter().map(|j| j.mean).collect();
    Direction {
        expected,
        sent,
        send_errors: pairs.iter().map(|(tx, _)| tx.send_errors).sum(),
        received,
        lost,
        loss_pct: if sent == 0 { 100.0 } else { 100.0 * lost as f64 / sent as f64 },
        streams_seen: pairs.iter().map(|(_, rx)| rx.ssrcs_seen).min().unwrap_or(0),
        latency_p50_us: median(&p50s).map(|v| v.round() as u64),
        latency_p99_us: lat.iter().map(|l| l.p99).max(),
        latency_max_us: lat.iter().map(|l| l.max).max(),
        jitter_mean_us: crate::stats::mean(&jitter_means),
        jitter_max_us: jit.iter().map(|j| j.max).reduce(f64::max),
        max_send_lag_ms: pairs.iter().map(|(tx, _)| tx.max_send_lag_ms).fold(0.0, f64::max),
    }
}

/// The media of a run from its segments' (caller, callee) reports.
fn media_of(opts: &Options, streams: usize, segments: &[(FleetReport, FleetReport)]) -> Media {
    let expected = streams as u64 * u64::from(opts.pps) * u64::from(opts.hold_secs);
    let ab: Vec<_> = segments.iter().map(|(caller, callee)| (caller, callee)).collect();
    let ba: Vec<_> = segments.iter().map(|(caller, callee)| (callee, caller)).collect();
    Media {
        streams: streams as u64,
        seconds: opts.hold_secs,
        a_to_b: direction(expected, &ab),
        b_to_a: direction(expected, &ba),
    }
}

/// Which side of the calls a message log is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The UAC: a call is up when a 200 to its INVITE with SDP arrived.
    Caller,
    /// The UAS: a call is up (for the media) when its INVITE with SDP arrived.
    Callee,
}

/// What a SIPp message log (`-trace_msg`) said so far, read as it grows.
#[derive(Debug)]
struct MessageLog {
    path: PathBuf,
    role: Role,
    offset: u64,
    /// The text from the last message separator on: a message possibly still being written (parsed again with
    /// every poll; what it adds is keyed by Call-ID, so parsing twice is harmless).
    tail: String,
    /// Per call, in order of answer: where this side's media goes (the SDP the other side sent).
    endpoints: Vec<SocketAddr>,
    up: HashSet<String>,
    ended: HashSet<String>,
    /// Calls answered when the first BYE went out or came in.
    answered_at_first_bye: Option<u64>,
}

/// The line SIPp writes before every message.
const SEPARATOR: &str = "-----------------------------------------------";

impl MessageLog {
    fn new(path: PathBuf, role: Role) -> Self {
        Self {
            path,
            role,
            offset: 0,
            tail: String::new(),
            endpoints: Vec::new(),
            up: HashSet::new(),
            ended: HashSet::new(),
            answered_at_first_bye: None,
        }
    }

    /// Reads what was appended since the last call.
    fn update(&mut self) -> Result<()> {
        let mut file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("opening {}", self.path.display())),
        };
        file.seek(SeekFrom::Start(self.offset))?;
        let mut new = Vec::new();
        file.read_to_end(&mut new).with_context(|| format!("reading {}", self.path.display()))?;
        self.offset += new.len() as u64;
        self.feed(&String::from_utf8_lossy(&new));
        Ok(())
    }

    /// Parses `text`, appended to what came before.
    fn feed(&mut self, text: &str) {
        self.tail.push_str(text);
        let tail = std::mem::take(&mut self.tail);
        let mut starts: Vec<usize> = tail.match_indices(SEPARATOR).map(|(i, _)| i).collect();
        // A separator starts a line.
        starts.retain(|&i| i == 0 || tail.as_bytes()[i - 1] == b'\n');
        for (k, &start) in starts.iter().enumerate() {
            let end = starts.get(k + 1).copied().unwrap_or(tail.len());
            self.message(&tail[start..end]);
        }
        self.tail = match starts.last() {
            Some(&last) => tail[last..].to_owned(),
            None => tail,
        };
    }

    fn message(&mut self, text: &str) {
        let Some(msg) = Message::parse(text) else {
            return;
        };
        let Some(call_id) = msg.call_id else {
            return;
        };
        let answers = match self.role {
            Role::Caller => msg.received && msg.start.starts_with("SIP/2.0 200") && msg.cseq_method == "INVITE",
            Role::Callee => msg.received && msg.start.starts_with("INVITE "),
        };
        if answers {
            if let Some(endpoint) = msg.audio {
                if self.up.insert(call_id.to_owned()) {
                    self.endpoints.push(endpoint);
                }
            }
        } else if msg.start.starts_with("BYE ") {
            self.answered_at_first_bye.get_or_insert(self.up.len() as u64);
            self.ended.insert(call_id.to_owned());
        }
    }

    /// Calls answered so far.
    fn answered(&self) -> u64 {
        self.up.len() as u64
    }

    /// Calls answered and not ended.
    fn up(&self) -> u64 {
        self.up.iter().filter(|c| !self.ended.contains(*c)).count() as u64
    }
}

/// One message of a SIPp message log.
#[derive(Debug, PartialEq)]
struct Message<'a> {
    received: bool,
    /// The request or status line.
    start: &'a str,
    call_id: Option<&'a str>,
    cseq_method: &'a str,
    /// The first audio stream of its SDP body.
    audio: Option<SocketAddr>,
}

impl<'a> Message<'a> {
    /// `text` from the separator line on: the separator, `UDP message sent (N bytes):` or `UDP message received
    /// [N] bytes :`, an empty line, then the N bytes of the message. `None` while fewer than N bytes are there
    /// (SIPp is still writing it) or if it is not a message.
    fn parse(text: &'a str) -> Option<Self> {
        let (_separator, rest) = text.split_once('\n')?;
        let (what, rest) = rest.split_once('\n')?;
        let received = what.contains("message received");
        if !received && !what.contains("message sent") {
            return None;
        }
        let size = what.split(|c: char| !c.is_ascii_digit()).find(|s| !s.is_empty()).and_then(|n| n.parse().ok());
        let rest = rest.strip_prefix('\n').unwrap_or(rest);
        let msg = match size {
            Some(n) => rest.get(..n)?,
            None => rest,
        };
        let mut lines = msg.lines().map(str::trim);
        let start = lines.by_ref().find(|l| !l.is_empty())?;
        let (mut call_id, mut cseq_method) = (None, "");
        for line in lines.by_ref() {
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let name = name.trim();
            if name.eq_ignore_ascii_case("Call-ID") || name == "i" {
                call_id = Some(value.trim());
            } else if name.eq_ignore_ascii_case("CSeq") {
                cseq_method = value.split_whitespace().nth(1).unwrap_or("");
            }
        }
        Some(Self { received, start, call_id, cseq_method, audio: sdp_audio(lines) })
    }
}

/// The first audio stream of an SDP body (RFC 4566 §5.7, §5.14): its port and its connection address, the
/// media-level `c=` line if it has one, else the session-level one. `None` without both, or for a held or
/// rejected stream (address 0.0.0.0, port 0).
fn sdp_audio<'a>(lines: impl Iterator<Item = &'a str>) -> Option<SocketAddr> {
    let conn = |line: &str| -> Option<IpAddr> {
        let ip = line.strip_prefix("c=IN IP4 ").or_else(|| line.strip_prefix("c=IN IP6 "))?;
        ip.split('/').next()?.trim().parse().ok()
    };
    let (mut session, mut media, mut port) = (None, None, None);
    let mut section = None::<bool>; // Some(true) inside the first audio section, Some(false) in another one
    for line in lines {
        if let Some(rest) = line.strip_prefix("m=") {
            if section == Some(true) {
                break;
            }
            let audio = rest.starts_with("audio ") && port.is_none();
            if audio {
                port = rest["audio ".len()..].split_whitespace().next().and_then(|p| p.parse::<u16>().ok());
            }
            section = Some(audio);
        } else if line.starts_with("c=") {
            match section {
                None => session = session.or(conn(line)),
                Some(true) => media = media.or(conn(line)),
                Some(false) => {}
            }
        }
    }
    let addr = SocketAddr::new(media.or(session)?, port?);
    (!addr.ip().is_unspecified() && addr.port() != 0).then_some(addr)
}

/// The caller's SIPp counters from the last complete line of its stat file.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stat {
    successful: u64,
    failed: u64,
}

fn read_stat(dir: &Path) -> Option<Stat> {
    let text = std::fs::read_to_string(dir.join("stat.csv")).ok()?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next()?.split(';').collect();
    // The last line may be half written: take the last one that ends with a newline.
    let complete = &text[..text.rfind('\n')?];
    let last: Vec<&str> = complete.lines().rfind(|l| !l.trim().is_empty())?.split(';').collect();
    if last.len() < header.len() {
        return None;
    }
    let col = |name: &str| header.iter().position(|h| *h == name).and_then(|i| last[i].trim().parse::<u64>().ok());
    Some(Stat { successful: col("SuccessfulCall(C)")?, failed: col("FailedCall(C)")? })
}

/// How long ago SIPp last wrote its stat file.
fn stat_age(dir: &Path) -> Option<Duration> {
    std::fs::metadata(dir.join("stat.csv")).ok()?.modified().ok()?.elapsed().ok()
}

/// The largest `CurrentCall` over every line of a SIPp stat file.
fn peak_current_calls(dir: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join("stat.csv")).ok()?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let i = lines.next()?.split(';').position(|h| h == "CurrentCall")?;
    lines.filter_map(|l| l.split(';').nth(i)?.trim().parse::<u64>().ok()).max()
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

fn fmt_opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"))
}

fn us(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"))
}

/// The line printed after each measurement.
fn outcome(runs: u32, m: &Measurement) -> String {
    let mut line = format!(
        "[run {}/{runs}] {}: {}/{} answered, {} failed, peak {} up, PDD p50/p99 {}/{} ms, setup p50/p99 {}/{} ms",
        m.run,
        m.target,
        m.answered,
        m.calls,
        m.failed,
        m.peak_calls_up,
        ms(m.pdd_p50_ms),
        ms(m.pdd_p99_ms),
        ms(m.setup_p50_ms),
        ms(m.setup_p99_ms),
    );
    if let Some(media) = &m.media {
        for (name, d) in [("a->b", &media.a_to_b), ("b->a", &media.b_to_a)] {
            line.push_str(&format!(
                "; {name}: {}/{} received ({:.3} % lost), latency p50/p99 {}/{} us, jitter {} us",
                d.received,
                d.sent,
                d.loss_pct,
                fmt_opt(d.latency_p50_us),
                fmt_opt(d.latency_p99_us),
                us(d.jitter_mean_us)
            ));
        }
    }
    if let Some(cpu) = m.sbc_cpu_pct {
        line.push_str(&format!("; sbc cpu {cpu:.0} %"));
    }
    line.push_str(if m.pass { " -> pass" } else { " -> FAIL" });
    if !m.fail_reasons.is_empty() {
        line.push_str(&format!(" ({})", m.fail_reasons.join("; ")));
    }
    line
}

/// One direction over the runs (medians).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DirectionSummary {
    pub loss_pct: Option<f64>,
    pub latency_p50_us: Option<f64>,
    pub latency_p99_us: Option<f64>,
    pub jitter_mean_us: Option<f64>,
    pub jitter_max_us: Option<f64>,
}

/// One target over the runs: medians over the runs that have the figure.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TargetSummary {
    pub target: String,
    pub runs: usize,
    /// Runs that passed.
    pub passed: usize,
    pub answered: Option<f64>,
    pub failed: Option<f64>,
    pub peak_calls_up: Option<f64>,
    pub pdd_p50_ms: Option<f64>,
    pub pdd_p95_ms: Option<f64>,
    pub pdd_p99_ms: Option<f64>,
    pub setup_p50_ms: Option<f64>,
    pub setup_p99_ms: Option<f64>,
    pub a_to_b: DirectionSummary,
    pub b_to_a: DirectionSummary,
    pub sbc_cpu_pct: Option<f64>,
}

/// The first target's figures over the second's (`None` where the second's is zero, or for PDD below SIPp's 1 ms
/// resolution: the ratio would divide by measurement noise).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Ratios {
    /// `target / compare`.
    pub of: String,
    pub to: String,
    pub pdd_p50: Option<f64>,
    pub pdd_p99: Option<f64>,
    pub loss_a_to_b: Option<f64>,
    pub loss_b_to_a: Option<f64>,
    pub latency_p50_a_to_b: Option<f64>,
    pub latency_p99_a_to_b: Option<f64>,
    pub latency_p50_b_to_a: Option<f64>,
    pub latency_p99_b_to_a: Option<f64>,
}

/// The summary shown in the table.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub targets: Vec<TargetSummary>,
    /// With a comparison target.
    pub ratios: Option<Ratios>,
}

/// Medians per target over the runs, and the ratios of the first target to the second.
pub fn summarize(labels: &[String], measurements: &[Measurement]) -> Summary {
    let targets: Vec<TargetSummary> = labels
        .iter()
        .map(|label| {
            let of: Vec<&Measurement> = measurements.iter().filter(|m| &m.target == label).collect();
            let med =
                |f: &dyn Fn(&Measurement) -> Option<f64>| median(&of.iter().filter_map(|m| f(m)).collect::<Vec<_>>());
            let dir = |pick: fn(&Media) -> &Direction| DirectionSummary {
                loss_pct: med(&|m| m.media.as_ref().map(|x| pick(x).loss_pct)),
                latency_p50_us: med(&|m| m.media.as_ref().and_then(|x| pick(x).latency_p50_us).map(|v| v as f64)),
                latency_p99_us: med(&|m| m.media.as_ref().and_then(|x| pick(x).latency_p99_us).map(|v| v as f64)),
                jitter_mean_us: med(&|m| m.media.as_ref().and_then(|x| pick(x).jitter_mean_us)),
                jitter_max_us: med(&|m| m.media.as_ref().and_then(|x| pick(x).jitter_max_us)),
            };
            TargetSummary {
                target: label.clone(),
                runs: of.len(),
                passed: of.iter().filter(|m| m.pass).count(),
                answered: med(&|m| Some(m.answered as f64)),
                failed: med(&|m| Some(m.failed as f64)),
                peak_calls_up: med(&|m| Some(m.peak_calls_up as f64)),
                pdd_p50_ms: med(&|m| m.pdd_p50_ms),
                pdd_p95_ms: med(&|m| m.pdd_p95_ms),
                pdd_p99_ms: med(&|m| m.pdd_p99_ms),
                setup_p50_ms: med(&|m| m.setup_p50_ms),
                setup_p99_ms: med(&|m| m.setup_p99_ms),
                a_to_b: dir(|x| &x.a_to_b),
                b_to_a: dir(|x| &x.b_to_a),
                sbc_cpu_pct: med(&|m| m.sbc_cpu_pct),
            }
        })
        .collect();
    let ratios = match targets.as_slice() {
        [a, b, ..] => Some(ratios(a, b)),
        _ => None,
    };
    Summary { targets, ratios }
}

/// `a / b` figure by figure (see [`Ratios`]).
pub fn ratios(a: &TargetSummary, b: &TargetSummary) -> Ratios {
    let r = |x: Option<f64>, y: Option<f64>, floor: f64| match (x, y) {
        (Some(x), Some(y)) if y > 0.0 && y >= floor => Some(x / y),
        _ => None,
    };
    Ratios {
        of: a.target.clone(),
        to: b.target.clone(),
        pdd_p50: r(a.pdd_p50_ms, b.pdd_p50_ms, SIPP_RESOLUTION_MS),
        pdd_p99: r(a.pdd_p99_ms, b.pdd_p99_ms, SIPP_RESOLUTION_MS),
        loss_a_to_b: r(a.a_to_b.loss_pct, b.a_to_b.loss_pct, 0.0),
        loss_b_to_a: r(a.b_to_a.loss_pct, b.b_to_a.loss_pct, 0.0),
        latency_p50_a_to_b: r(a.a_to_b.latency_p50_us, b.a_to_b.latency_p50_us, 0.0),
        latency_p99_a_to_b: r(a.a_to_b.latency_p99_us, b.a_to_b.latency_p99_us, 0.0),
        latency_p50_b_to_a: r(a.b_to_a.latency_p50_us, b.b_to_a.latency_p50_us, 0.0),
        latency_p99_b_to_a: r(a.b_to_a.latency_p99_us, b.b_to_a.latency_p99_us, 0.0),
    }
}

/// Where the processes run, as printed.
fn pinning(opts: &Options) -> String {
    match (opts.pinned, opts.targets.iter().any(Target::is_local)) {
        (true, true) => format!("pinning: sbc on core {SBC_CORE}, SIPp and rtpfleet on core {SIPP_CORE}"),
        (true, false) => format!("pinning: SIPp and rtpfleet on core {SIPP_CORE}"),
        (false, _) => "pinning: off (fewer than 2 cores); figures are less comparable".to_owned(),
    }
}

/// The table printed at the end.
pub fn table(opts: &Options, summary: &Summary) -> String {
    let mut out = format!(
        "sbc-bench concurrent: {} calls at {}/s, held together with media for {} s ({} pps per call each way, {}-byte \
         payload), {} run(s)\n",
        opts.calls, opts.rate, opts.hold_secs, opts.pps, opts.payload, opts.runs
    );
    out.push_str(&pinning(opts));
    out.push('\n');
    out.push_str(&format!(
        "a run passes with every call answered, none failed, and loss < {MAX_LOSS_PCT} % each way; medians over runs\n\n"
    ));
    let f3 = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"));
    let ratio = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}"));
    let width = summary
        .targets
        .iter()
        .map(|t| t.target.len())
        .chain(summary.ratios.iter().map(|r| r.of.len() + r.to.len() + 1))
        .max()
        .unwrap_or(6)
        .max(8);
    out.push_str(&format!(
        "{:<w$}  {:>5} {:>8} {:>6} {:>7}  {:>18}  {:>13}  {:>7}\n",
        "calls",
        "pass",
        "answered",
        "failed",
        "peak up",
        "PDD p50/p95/p99 ms",
        "setup p50/p99",
        "sbc cpu",
        w = width + 2
    ));
    for t in &summary.targets {
        out.push_str(&format!(
            "  {:<w$}  {:>5} {:>8} {:>6} {:>7}  {:>18}  {:>13}  {:>7}\n",
            t.target,
            format!("{}/{}", t.passed, t.runs),
            ms(t.answered),
            ms(t.failed),
            ms(t.peak_calls_up),
            format!("{} / {} / {}", ms(t.pdd_p50_ms), ms(t.pdd_p95_ms), ms(t.pdd_p99_ms)),
            format!("{} / {}", ms(t.setup_p50_ms), ms(t.setup_p99_ms)),
            t.sbc_cpu_pct.map_or_else(|| "-".to_owned(), |c| format!("{c:.0} %")),
            w = width
        ));
    }
    if let Some(r) = &summary.ratios {
        out.push_str(&format!(
            "  {:<w$}  {:>5} {:>8} {:>6} {:>7}  {:>18}  {:>13}\n",
            format!("{}/{}", r.of, r.to),
            "",
            "",
            "",
            "",
            format!("{} / - / {}", ratio(r.pdd_p50), ratio(r.pdd_p99)),
            "",
            w = width
        ));
    }
    out.push('\n');
    out.push_str(&format!(
        "{:<w$}  {:>9} {:>9}  {:>17} {:>17}  {:>11} {:>11}\n",
        "media",
        "loss a->b",
        "b->a %",
        "lat a->b p50/p99",
        "b->a p50/p99 us",
        "jitter a->b",
        "b->a us",
        w = width + 2
    ));
    for t in &summary.targets {
        out.push_str(&format!(
            "  {:<w$}  {:>9} {:>9}  {:>17} {:>17}  {:>11} {:>11}\n",
            t.target,
            f3(t.a_to_b.loss_pct),
            f3(t.b_to_a.loss_pct),
            format!("{} / {}", us(t.a_to_b.latency_p50_us), us(t.a_to_b.latency_p99_us)),
            format!("{} / {}", us(t.b_to_a.latency_p50_us), us(t.b_to_a.latency_p99_us)),
            us(t.a_to_b.jitter_mean_us),
            us(t.b_to_a.jitter_mean_us),
            w = width
        ));
    }
    if let Some(r) = &summary.ratios {
        out.push_str(&format!(
            "  {:<w$}  {:>9} {:>9}  {:>17} {:>17}\n",
            format!("{}/{}", r.of, r.to),
            ratio(r.loss_a_to_b),
            ratio(r.loss_b_to_a),
            format!("{} / {}", ratio(r.latency_p50_a_to_b), ratio(r.latency_p99_a_to_b)),
            format!("{} / {}", ratio(r.latency_p50_b_to_a), ratio(r.latency_p99_b_to_a)),
            w = width
        ));
        out.push_str(
            "  (n/a: the comparison's figure is 0, or for PDD below SIPp's resolution of 1 ms; PDD has no p95 ratio)\n",
        );
    }
    out
}

/// The plot next to the JSON: calls up over time per target and run; PDD percentiles per target; one-way latency
/// percentiles per target and direction.
pub fn plot(path: &Path, opts: &Options, measurements: &[Measurement], summary: &Summary) -> Result<()> {
    let calls_up = measurements
        .iter()
        .map(|m| Series {
            name: if opts.runs > 1 { format!("{} run {}", m.target, m.run) } else { m.target.clone() },
            points: m.series.iter().map(|s| (s.t_s, s.up as f64)).collect(),
            dashed: m.run > 1,
        })
        .collect();
    let pdd = summary
        .targets
        .iter()
        .map(|t| {
            let points = [(50.0, t.pdd_p50_ms), (95.0, t.pdd_p95_ms), (99.0, t.pdd_p99_ms)]
                .into_iter()
                .filter_map(|(p, v)| Some((p, v?)))
                .collect();
            Series::new(t.target.clone(), points)
        })
        .collect();
    let latency = summary
        .targets
        .iter()
        .flat_map(|t| {
            [("a->b", &t.a_to_b), ("b->a", &t.b_to_a)].map(|(name, d)| {
                let points = [(50.0, d.latency_p50_us), (99.0, d.latency_p99_us)]
                    .into_iter()
                    .filter_map(|(p, v)| Some((p, v?)))
                    .collect();
                Series { name: format!("{} {name}", t.target), points, dashed: name == "b->a" }
            })
        })
        .collect();
    let panels = [
        Panel {
            title: "Calls up (answered, not ended)".to_owned(),
            x_label: "seconds since the first INVITE".to_owned(),
            y_label: "calls".to_owned(),
            log_y: false,
            series: calls_up,
        },
        Panel {
            title: "Post-dial delay (INVITE -> first 18x/200), medians over runs".to_owned(),
            x_label: "percentile".to_owned(),
            y_label: "ms".to_owned(),
            log_y: false,
            series: pdd,
        },
        Panel {
            title: "One-way RTP latency, medians over runs".to_owned(),
            x_label: "percentile".to_owned(),
            y_label: "µs".to_owned(),
            log_y: false,
            series: latency,
        },
    ];
    let title = format!(
        "sbc-bench concurrent: {} calls at {}/s, {} s of media at {} pps per call",
        opts.calls, opts.rate, opts.hold_secs, opts.pps
    );
    plot::write_svg(path, &title, &panels)
}

/// Builds `rtpfleet` in this binary's profile (it must sit next to this binary) and returns its path.
pub fn prepare_rtpfleet() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("current_exe")?;
    let dir = exe.parent().context("the directory of this binary")?;
    let release = dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut args = vec!["build", "-p", "tests", "--bin", "rtpfleet"];
    if release {
        args.push("--release");
    }
    eprintln!("building: cargo {}", args.join(" "));
    let status = std::process::Command::new(&cargo)
        .args(&args)
        .current_dir(::tests::repo_root())
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("`cargo {}` failed", args.join(" "));
    }
    let path = dir.join("rtpfleet");
    std::fs::canonicalize(&path).with_context(|| format!("rtpfleet binary {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn direction(sent: u64, received: u64, p50: u64, p99: u64) -> Direction {
        Direction {
            expected: sent,
            sent,
            received,
            lost: sent - received,
            loss_pct: 100.0 * (sent - received) as f64 / sent as f64,
            latency_p50_us: Some(p50),
            latency_p99_us: Some(p99),
            jitter_mean_us: Some(10.0),
            ..Direction::default()
        }
    }

    fn measurement(run: u32, target: &str, failed: u64, pdd: f64, loss: (u64, u64), latency: u64) -> Measurement {
        let mut m = Measurement {
            run,
            target: target.to_owned(),
            calls: 200,
            placed: 200,
            answered: 200 - failed,
            successful: 200 - failed,
            failed,
            pdd_p50_ms: Some(pdd),
            pdd_p95_ms: Some(pdd * 2.0),
            pdd_p99_ms: Some(pdd * 3.0),
            setup_p50_ms: Some(pdd),
            setup_p99_ms: Some(pdd * 3.0),
            peak_calls_up: 200 - failed,
            media: Some(Media {
                streams: 200,
                seconds: 20,
                a_to_b: direction(200_000, 200_000 - loss.0, latency, latency * 4),
                b_to_a: direction(200_000, 200_000 - loss.1, latency, latency * 4),
            }),
            ..Measurement::default()
        };
        m.fail_reasons = fail_reasons(&m);
        m.pass = m.fail_reasons.is_empty();
        m
    }

    #[test]
    fn a_run_passes_with_every_call_up_and_loss_under_a_thousandth_each_way() {
        assert!(measurement(1, "local", 0, 2.0, (0, 199), 100).pass, "199 of 200 000 lost is 0.0995 %");
        let lossy = measurement(1, "local", 0, 2.0, (0, 200), 100);
        assert!(!lossy.pass);
        assert_eq!(lossy.fail_reasons, vec!["loss b->a 0.100 % (limit 0.1 %)"]);
        let failed = measurement(1, "local", 1, 2.0, (0, 0), 100);
        assert_eq!(failed.fail_reasons, vec!["1 of 200 calls failed", "199 of 200 calls answered"]);
        let mut short = measurement(1, "local", 0, 2.0, (0, 0), 100);
        short.media.as_mut().unwrap().a_to_b.expected = 250_000;
        assert_eq!(fail_reasons(&short), vec!["only 200000 of 250000 packets sent a->b"]);
        let mut none = measurement(1, "local", 0, 2.0, (0, 0), 100);
        none.media = None;
        none.error = Some("rtpfleet ended with exit status: 1\nmore".to_owned());
        assert_eq!(fail_reasons(&none), vec!["error: rtpfleet ended with exit status: 1", "no media"]);
    }

    #[test]
    fn summary_takes_medians_per_target_and_ratios_of_target_to_compare() {
        let labels = vec!["local".to_owned(), "direct".to_owned()];
        let ms = vec![
            measurement(1, "local", 0, 2.0, (0, 20), 300),
            measurement(1, "direct", 0, 1.0, (0, 10), 100),
            measurement(2, "local", 0, 4.0, (0, 40), 500),
            measurement(2, "direct", 0, 1.0, (0, 10), 100),
            measurement(3, "local", 5, 3.0, (0, 30), 400),
            measurement(3, "direct", 0, 1.0, (0, 10), 100),
        ];
        let s = summarize(&labels, &ms);
        let local = &s.targets[0];
        assert_eq!((local.runs, local.passed), (3, 2));
        assert_eq!((local.pdd_p50_ms, local.pdd_p99_ms, local.failed), (Some(3.0), Some(9.0), Some(0.0)));
        assert_eq!(local.b_to_a.latency_p50_us, Some(400.0));
        assert!((local.b_to_a.loss_pct.unwrap() - 0.015).abs() < 1e-12);
        let r = s.ratios.clone().expect("two targets");
        assert_eq!((r.of.as_str(), r.to.as_str()), ("local", "direct"));
        assert_eq!((r.pdd_p50, r.pdd_p99), (Some(3.0), Some(3.0)));
        assert!((r.loss_b_to_a.unwrap() - 3.0).abs() < 1e-9);
        assert_eq!(r.loss_a_to_b, None, "0 % over 0 % has no ratio");
        assert_eq!((r.latency_p50_a_to_b, r.latency_p99_b_to_a), (Some(4.0), Some(4.0)));
        assert!(summarize(&labels[..1], &ms).ratios.is_none());
        // PDD below SIPp's 1 ms resolution has no ratio.
        let fast = vec![measurement(1, "local", 0, 2.0, (0, 0), 300), measurement(1, "direct", 0, 0.0, (0, 0), 100)];
        assert_eq!(summarize(&labels, &fast).ratios.unwrap().pdd_p50, None);
        let table = table(
            &Options {
                targets: vec![Target::Local(None), Target::Direct],
                labels: labels.clone(),
                calls: 200,
                rate: 50,
                hold_secs: 20,
                pps: 50,
                payload: 160,
                runs: 3,
                pinned: true,
                rtpfleet: PathBuf::new(),
            },
            &s,
        );
        assert!(table.contains("local/direct"), "{table}");
        assert!(table.contains("3 / 6 / 9"), "{table}");
    }

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

    /// One entry of a SIPp message log as SIPp writes it: separator, direction and size, the message with CRLFs.
    fn entry(received: bool, msg: &str) -> String {
        let msg = msg.replace('\n', "\r\n");
        let what = if received {
            format!("UDP message received [{}] bytes :", msg.len())
        } else {
            format!("UDP message sent ({} bytes):", msg.len())
        };
        format!("{SEPARATOR} 2026-12-01 02:48:18.352526\n{what}\n\n{msg}\n\n")
    }

    fn uac_log() -> String {
        [
            entry(
                false,
                "INVITE sip:123@198.18.1.1:5060 SIP/2.0\nCall-ID: 1-9865@198.18.1.10\nCSeq: 1 INVITE\n\
                 Content-Type: application/sdp\n\nv=0\nc=IN IP4 198.18.1.10\nm=audio 7078 RTP/AVP 0 8 101\n",
            ),
            entry(true, "SIP/2.0 180 Ringing\nCall-ID: 1-9865@198.18.1.10\nCSeq: 1 INVITE\nContent-Length: 0\n\n"),
            entry(
                true,
                "SIP/2.0 200 OK\nCall-ID: 1-9865@198.18.1.10\nCSeq: 1 INVITE\nContent-Type: application/sdp\n\n\
                 v=0\no=- 98611 1 IN IP4 198.18.1.1\nc=IN IP4 198.18.1.1\nt=0 0\nm=audio 30000 RTP/AVP 0 101\n",
            ),
            // Compact Call-ID; held session-level address, the media-level one wins; a video stream after it.
            entry(
                true,
                "SIP/2.0 200 OK\ni: 2-9865@198.18.1.10\nCSeq: 1 INVITE\n\nv=0\nc=IN IP4 0.0.0.0\n\
                 m=audio 30002 RTP/AVP 0\nc=IN IP4 198.18.1.1\nm=video 30004 RTP/AVP 96\nc=IN IP4 198.18.1.9\n",
            ),
        ]
        .concat()
    }

    #[test]
    fn message_log_yields_each_answered_calls_media_address_once_even_when_read_in_pieces() {
        let log = uac_log();
        let expected: Vec<SocketAddr> = vec!["198.18.1.1:30000".parse().unwrap(), "198.18.1.1:30002".parse().unwrap()];
        let mut whole = MessageLog::new(PathBuf::new(), Role::Caller);
        whole.feed(&log);
        // The last message counts as soon as all its bytes are there, before the next separator.
        assert_eq!(whole.endpoints, expected);
        for cut in (1..log.len()).step_by(7) {
            let mut pieces = MessageLog::new(PathBuf::new(), Role::Caller);
            pieces.feed(&log[..cut]);
            let partial = pieces.endpoints.clone();
            assert!(expected.starts_with(&partial), "cut at {cut}: {partial:?}");
            pieces.feed(&log[cut..]);
            // Another 200 for a call already up (a retransmission) adds nothing: the first address stays.
            pieces.feed(&entry(
                true,
                "SIP/2.0 200 OK\nCall-ID: 1-9865@198.18.1.10\nCSeq: 1 INVITE\n\nc=IN IP4 198.18.1.7\nm=audio 31000 RTP/AVP 0\n",
            ));
            assert_eq!(pieces.endpoints, expected, "cut at {cut}");
        }
        assert_eq!((whole.answered(), whole.up()), (2, 2));
        whole.feed(&entry(false, "BYE sip:a SIP/2.0\nCall-ID: 1-9865@198.18.1.10\nCSeq: 2 BYE\n\n"));
        assert_eq!((whole.answered(), whole.up(), whole.answered_at_first_bye), (2, 1, Some(2)));
        // The callee counts INVITEs it received, with the caller-side address the target's SDP names.
        let mut callee = MessageLog::new(PathBuf::new(), Role::Callee);
        callee.feed(&log.replace("message sent (", "message received ("));
        assert_eq!(callee.endpoints, vec!["198.18.1.10:7078".parse().unwrap()]);
    }

    #[test]
    fn sdp_audio_endpoint() {
        let sdp = |s: &str| sdp_audio(s.lines());
        assert_eq!(sdp("v=0\nc=IN IP4 10.0.0.1\nm=audio 4000 RTP/AVP 0"), Some("10.0.0.1:4000".parse().unwrap()));
        assert_eq!(sdp("c=IN IP6 ::1\nm=audio 4000 RTP/AVP 0"), Some("[::1]:4000".parse().unwrap()));
        assert_eq!(
            sdp("m=video 5000 RTP/AVP 96\nc=IN IP4 10.0.0.2\nm=audio 4000 RTP/AVP 0\nc=IN IP4 10.0.0.3"),
            Some("10.0.0.3:4000".parse().unwrap())
        );
        assert_eq!(sdp("c=IN IP4 10.0.0.1\nm=audio 0 RTP/AVP 0"), None, "rejected");
        assert_eq!(sdp("c=IN IP4 0.0.0.0\nm=audio 4000 RTP/AVP 0"), None, "held");
        assert_eq!(sdp("m=audio 4000 RTP/AVP 0"), None, "no address");
    }

    #[test]
    fn stat_file_counters_and_peak() {
        let dir = std::env::temp_dir().join(format!("concurrent-stat-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("stat.csv"),
            "StartTime;CurrentCall;SuccessfulCall(C);FailedCall(C)\nx;5;0;0\nx;200;0;1\nx;150;50;1\nx;12",
        )
        .unwrap();
        assert_eq!(read_stat(&dir), Some(Stat { successful: 50, failed: 1 }), "the half-written line is skipped");
        assert_eq!(peak_current_calls(&dir), Some(200));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn directions_add_up_over_segments() {
        let seg = |sent, received, p50, p99, jitter| {
            let tx = FleetReport { sent, ..FleetReport::default() };
            let rx = FleetReport {
                received,
                ssrcs_seen: 200,
                latency_us: Some(FleetLatency { p50, p99, max: p99 * 2 }),
                jitter_us: Some(FleetJitter { mean: jitter, max: jitter * 3.0 }),
                ..FleetReport::default()
            };
            (tx, rx)
        };
        let (a, b) = (seg(1000, 990, 100, 400, 20.0), seg(1000, 1000, 200, 300, 40.0));
        let d = super::direction(2000, &[(&a.0, &a.1), (&b.0, &b.1)]);
        assert_eq!((d.sent, d.received, d.lost), (2000, 1990, 10));
        assert!((d.loss_pct - 0.5).abs() < 1e-12);
        assert_eq!((d.latency_p50_us, d.latency_p99_us, d.latency_max_us), (Some(150), Some(400), Some(800)));
        assert_eq!((d.jitter_mean_us, d.jitter_max_us), (Some(30.0), Some(120.0)));
        assert_eq!(super::direction(10, &[]).loss_pct, 100.0);
    }
}
