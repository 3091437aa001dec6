//! `sbc-bench ng`: issue 17's bench. The same Kamailio 5.6 configuration (benches/kamailio/sbc.cfg) runs against
//! three media relays in one invocation, changing nothing but the NG address Kamailio is given:
//!
//! - `kamailio-rtpengine`: rtpengine 10.5, user space (`--table=-1`), the baseline;
//! - `kamailio-ng`: our `media-relay --ng`, user space (`--xdp off`);
//! - `kamailio-ng-xdp`: our `media-relay --ng` with its XDP fast path native on the SBC namespace's veths (the
//!   topology is prepared for XDP once, for all three targets alike, as `media` does).
//!
//! Per run, per target (the order reversed every other run, so that no target always goes first):
//!
//! 1. The calls/s ceiling: `cps`'s ladder ([`crate::cps`]) against a fresh rig (Kamailio, Redis and the relay pinned
//!    to [`crate::cps::SBC_CORE`], both SIPps on [`crate::cps::SIPP_CORE`]), calls without RTP (every call's media
//!    is still anchored: offer, answer and delete go to the relay over NG).
//! 2. The media cost ([`media`]): a fresh rig, `--calls` calls placed and held, one `rtpfleet` per side sending one
//!    RTP stream per call each way at `--pps` (a fixed rate all three relays carry without loss), first an idle
//!    window with the calls up and no media (the machine's baseline), then the media window. Measured over each:
//!    the relay process's utime + stime (/proc/PID/stat), for XDP also its programs' run time (kernel BPF
//!    statistics), the whole machine's busy and softirq time (/proc/stat), and the generators' own CPU time.
//!
//! The summary ([`report`]) gives medians over runs and the ratios of issue 17: calls/s ours / theirs, and CPU per
//! million packets theirs / ours for user space and XDP, on two bases (the relay's own CPU; the machine's, net of
//! the idle baseline and the generators), and says which step or window the generator limited.

pub mod media;
pub mod report;

use crate::cps;
use crate::target::{Harness, Target};
use anyhow::Result;
use serde::Serialize;
use std::path::PathBuf;

/// The targets of the bench, in the order of odd runs.
pub const TARGETS: [Target; 3] = [Target::KamailioRtpengine, Target::KamailioNg, Target::KamailioNgXdp];

/// What `ng` was asked to do.
#[derive(Debug, Clone, Serialize)]
pub struct Options {
    /// The targets (a subset of [`TARGETS`]; `kamailio-rtpengine` is the baseline of every ratio).
    pub targets: Vec<Target>,
    /// Their labels.
    pub labels: Vec<String>,
    /// Complete runs (each: every target's ladder and media window); the summary takes medians.
    pub runs: u32,
    /// Seconds of traffic per cps step.
    pub step_secs: u32,
    /// The cps rate ladder, calls per second, ascending. Empty: no ceiling measured.
    pub rates: Vec<u32>,
    /// Calls held with media in the media window.
    pub calls: u32,
    /// The rate they are placed at, calls per second.
    pub call_rate: u32,
    /// RTP packets per second per call and direction.
    pub pps: u32,
    /// RTP payload bytes.
    pub payload: u16,
    /// Seconds of media.
    pub media_secs: u32,
    /// Seconds of the idle window (calls up, no media) before the media.
    pub idle_secs: u32,
    /// Whether the relay runs on one core and the generators on the other.
    pub pinned: bool,
    /// The `rtpfleet` binary.
    pub rtpfleet: PathBuf,
}

impl Options {
    /// Packets per second through the relay during the media window, both directions together.
    pub fn total_pps(&self) -> u64 {
        2 * u64::from(self.calls) * u64::from(self.pps)
    }
}

/// Everything one invocation measured.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Every cps ladder, in the order measured (`run` is the bench's run).
    pub ladders: Vec<cps::Ladder>,
    /// Every media window, in the order measured.
    pub media: Vec<media::Measurement>,
    /// Ctrl-C or SIGTERM ended the run early.
    pub interrupted: bool,
}

/// Runs the bench; `harness` (built for `opts.targets`) is removed by the caller.
pub fn run(opts: &Options, harness: &Harness) -> Result<Outcome> {
    let mut ladders = Vec::new();
    let mut windows = Vec::new();
    'runs: for run in 1..=opts.runs {
        for i in cps::order(run, opts.targets.len()) {
            let (target, label) = (&opts.targets[i], &opts.labels[i]);
            if stopped() {
                break 'runs;
            }
            if !opts.rates.is_empty() {
                let ladder_opts = cps::Options {
                    runs: 1,
                    step_secs: opts.step_secs,
                    rates: opts.rates.clone(),
                    targets: vec![target.clone()],
                    labels: vec![label.clone()],
                    media: true,
                };
                let outcome = cps::run(&ladder_opts, harness, None)?;
                ladders.extend(outcome.ladders.into_iter().map(|mut l| {
                    l.run = run;
                    l
                }));
                if outcome.interrupted {
                    break 'runs;
                }
            }
            let m = media::measure(harness, opts, target, label, run);
            eprintln!("{}", media::progress(opts.runs, &m));
            windows.push(m);
        }
    }
    Ok(Outcome { ladders, media: windows, interrupted: stopped() })
}

fn stopped() -> bool {
    cps::STOP.load(std::sync::atomic::Ordering::SeqCst)
}
