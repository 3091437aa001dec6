//! `failover --local --kind setup`: `kill -9` of the active box while calls are being set up (issue 19 point 1).
//! Each drill places `setup_calls` calls split among the states of [`tests::setup_drill`] (the carrier trying and
//! answering late; ringing; early media; a reliable 183 waiting for the caller's PRACK), kills the active once every
//! call is in its state and replicated, and counts how many calls complete on the other box (answered, held and hung
//! up, for the caller), how long the takeover took, and the CDRs of the drill's calls across both boxes (lost:
//! none; doubled: more than one). The killed box restarts as standby before the next drill.

use super::{DrillKind, Options, Pair};
use crate::stats::median;
use ::tests::setup_drill::{self, call_ids_of, SetupKind, SetupTiming};
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};

/// Calls are answered this long after their INVITE (or get their PRACK this long after the 183): the kill comes
/// 2-3 s into setup, the takeover well within a second of it.
const ANSWER_AFTER: Duration = Duration::from_secs(8);
const PRACK_AFTER: Duration = Duration::from_secs(6);
const HOLD: Duration = Duration::from_secs(2);
const LIMIT: Duration = Duration::from_secs(40);

/// One kind's calls in one drill.
#[derive(Debug, Clone, Serialize)]
pub struct KindResult {
    /// `trying`, `ringing`, `early_media`, `waiting_for_prack`.
    pub kind: &'static str,
    /// Calls placed.
    pub calls: u32,
    /// Calls the caller completed.
    pub completed: u64,
}

/// What one setup drill measured.
#[derive(Debug, Clone, Serialize)]
pub struct SetupDrill {
    /// 1-based.
    pub index: u32,
    /// The box killed (1 or 2).
    pub from: u8,
    /// From the kill to the other box reporting active.
    pub takeover_ms: f64,
    /// Calls in setup when the box was killed.
    pub calls: u32,
    /// Of those, held by the other box (replicated) when it was killed.
    pub replicated: u64,
    /// Of those, completed after the takeover.
    pub completed: u64,
    /// Per setup state.
    pub kinds: Vec<KindResult>,
    /// Calls of the drill without a CDR.
    pub cdrs_lost: usize,
    /// Calls of the drill with more than one.
    pub cdrs_doubled: usize,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

/// Runs the drills; the namespaces and processes are gone when this returns, also on error.
pub fn run(opts: &Options) -> Result<Vec<SetupDrill>> {
    let mut pair = Pair::up(setup_drill::config_tables())?;
    let mut drills = Vec::new();
    for i in 1..=opts.drills {
        let d = drill(&mut pair, i, opts.setup_calls).unwrap_or_else(|e| SetupDrill {
            index: i,
            from: 0,
            takeover_ms: f64::NAN,
            calls: opts.setup_calls,
            replicated: 0,
            completed: 0,
            kinds: Vec::new(),
            cdrs_lost: 0,
            cdrs_doubled: 0,
            error: Some(format!("{e:#}")),
        });
        let per_kind: Vec<String> = d.kinds.iter().map(|k| format!("{} {}/{}", k.kind, k.completed, k.calls)).collect();
        eprintln!(
            "[drill {i}/{}] kill -9 of sbc{} with {} calls in setup ({} replicated): takeover {:.0} ms, completed {}/{} \
             ({}), CDRs lost {}, doubled {}{}",
            opts.drills,
            d.from,
            d.calls,
            d.replicated,
            d.takeover_ms,
            d.completed,
            d.calls,
            per_kind.join(", "),
            d.cdrs_lost,
            d.cdrs_doubled,
            d.error.as_deref().map(|e| format!(", error: {e}")).unwrap_or_default()
        );
        drills.push(d);
    }
    Ok(drills)
}

fn drill(pair: &mut Pair, i: u32, calls: u32) -> Result<SetupDrill> {
    let from = pair.active().context("no active box before the drill")?;
    let other = 3 - from;
    pair.wait("the standby connected", Duration::from_secs(10), |p| p.role(other) == "standby")?;
    let held = pair.field(other, "foreign_calls");
    let timing = SetupTiming {
        answer_after: ANSWER_AFTER,
        prack_after: PRACK_AFTER,
        hold: HOLD,
        rate: 20,
        limit: LIMIT,
        early_rtp_port: 7080,
        quiet_rtp_port: 7078,
    };
    let kinds = setup_drill::start(&pair.topo, calls, &timing)?;
    setup_drill::wait_in_setup(&kinds, Duration::from_secs(15))?;
    // Every call replicated, or 5 s (a build that does not replicate calls in setup is killed all the same: the
    // baseline of this drill).
    let by = Instant::now() + Duration::from_secs(5);
    while pair.field(other, "foreign_calls") < held + u64::from(calls) && Instant::now() < by {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Their records after the first (a provisional relayed) cross within milliseconds.
    std::thread::sleep(Duration::from_millis(500));
    let replicated = pair.field(other, "foreign_calls").saturating_sub(held);
    // Each caller's Call-IDs, read now: a SIPp run that ends well removes its logs.
    let call_ids: Vec<String> = kinds.iter().flat_map(|k| call_ids_of(&k.uac.messages(), "INVITE ")).collect();

    let at = Instant::now();
    pair.kill(from)?;
    pair.wait("the other box active", Duration::from_secs(5), |p| p.role(other) == "active")?;
    let takeover = at.elapsed();
    pair.boxes[usize::from(from - 1)] = None;
    pair.start(from)?;

    let outcomes: Vec<_> = kinds.into_iter().map(|k| k.finish()).collect::<Result<_>>()?;
    let completed = outcomes.iter().map(|o| o.completed).sum();
    let count = |id: &str| pair.cdrs_with(&format!("\"a_call_id\":\"{id}\""));
    let until = Instant::now() + Duration::from_secs(5);
    while call_ids.iter().any(|id| count(id) == 0) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    let cdrs: Vec<usize> = call_ids.iter().map(|id| count(id)).collect();
    Ok(SetupDrill {
        index: i,
        from,
        takeover_ms: takeover.as_secs_f64() * 1000.0,
        calls,
        replicated,
        completed,
        kinds: outcomes
            .iter()
            .map(|o| KindResult { kind: o.kind.label(), calls: o.calls, completed: o.completed })
            .collect(),
        cdrs_lost: cdrs.iter().filter(|n| **n == 0).count() + (calls as usize).saturating_sub(call_ids.len()),
        cdrs_doubled: cdrs.iter().filter(|n| **n > 1).count(),
        error: None,
    })
}

/// The summary of all setup drills.
#[derive(Debug, Clone, Serialize)]
pub struct SetupSummary {
    /// Drills run.
    pub drills: usize,
    /// Calls caught in setup, over all drills.
    pub calls: u64,
    /// Of those, replicated before the kill.
    pub replicated: u64,
    /// Of those, completed after the takeover.
    pub completed: u64,
    /// Per setup state over all drills: (calls, completed).
    pub kinds: Vec<KindResult>,
    /// Median takeover time.
    pub takeover_p50_ms: f64,
    /// Calls without a CDR, and calls with more than one.
    pub cdrs_lost: usize,
    /// See `cdrs_lost`.
    pub cdrs_doubled: usize,
}

/// Sums the drills up.
pub fn summarize(drills: &[SetupDrill]) -> SetupSummary {
    let mut takeovers: Vec<f64> = drills.iter().map(|d| d.takeover_ms).filter(|t| t.is_finite()).collect();
    takeovers.sort_by(f64::total_cmp);
    let kinds = SetupKind::ALL
        .iter()
        .map(|k| {
            let of = || drills.iter().flat_map(|d| &d.kinds).filter(|r| r.kind == k.label());
            KindResult {
                kind: k.label(),
                calls: of().map(|r| r.calls).sum(),
                completed: of().map(|r| r.completed).sum(),
            }
        })
        .collect();
    SetupSummary {
        drills: drills.len(),
        calls: drills.iter().map(|d| u64::from(d.calls)).sum(),
        replicated: drills.iter().map(|d| d.replicated).sum(),
        completed: drills.iter().map(|d| d.completed).sum(),
        kinds,
        takeover_p50_ms: median(&takeovers).unwrap_or(f64::NAN),
        cdrs_lost: drills.iter().map(|d| d.cdrs_lost).sum(),
        cdrs_doubled: drills.iter().map(|d| d.cdrs_doubled).sum(),
    }
}

/// The figure of a run: per drill, the share of calls in setup that completed, and the takeover time.
pub fn plot(path: &Path, drills: &[SetupDrill]) -> Result<()> {
    use crate::plot::{Panel, Series};
    let per = |f: &dyn Fn(&SetupDrill) -> f64| drills.iter().map(|d| (f64::from(d.index), f(d))).collect::<Vec<_>>();
    let share = |d: &SetupDrill| 100.0 * d.completed as f64 / f64::from(d.calls.max(1));
    crate::plot::write_svg(
        path,
        &format!("sbc-bench failover: {:?} drills (kill -9 with calls being set up)", DrillKind::Setup),
        &[
            Panel {
                title: "calls in setup that completed after the takeover, per drill".into(),
                x_label: "drill".into(),
                y_label: "%".into(),
                log_y: false,
                series: vec![Series::new("completed", per(&share))],
            },
            Panel {
                title: "takeover time, per drill".into(),
                x_label: "drill".into(),
                y_label: "ms".into(),
                log_y: false,
                series: vec![Series::new("takeover (until /ha says active)", per(&|d| d.takeover_ms))],
            },
        ],
    )
}
