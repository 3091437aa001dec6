//! One interval of a soak: its figures from the difference of the caller's counters and the response times
//! measured in it, its pass rule, and the line printed for it.

use super::readers::Counts;
use super::report::clock;
use super::Options;
use crate::calls::ResponseTimes;
use crate::cps::{MAX_FAILED_PCT, MAX_P99_MS};
use crate::stats::percentile;
use serde::Serialize;

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
    pub(super) fn measured(
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
fn judge(iv: &Interval) -> Vec<String> {
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

/// The line printed on stderr for an interval.
pub(super) fn progress_line(opts: &Options, iv: &Interval) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soak::tests::counts;

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
}
