//! What `soak` reports at the end: how it ended, the totals and overall percentiles over its intervals (from
//! response-time histograms), the verdict, the table and the plot.

use super::interval::Interval;
use super::Options;
use crate::cps::{MAX_FAILED_PCT, MAX_P99_MS};
use crate::stats::mean;
use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Response times of a whole soak at SIPp's resolution: counts per distinct value (µs), so that the overall
/// percentiles are exact in bounded memory.
#[derive(Debug, Default, Clone)]
pub(super) struct Histogram {
    counts: BTreeMap<u64, u64>,
    n: u64,
}

impl Histogram {
    pub(super) fn add(&mut self, values: &[f64]) {
        for &v in values {
            *self.counts.entry((v.max(0.0) * 1000.0).round() as u64).or_default() += 1;
            self.n += 1;
        }
    }

    /// The nearest-rank percentile, as [`crate::stats::percentile`].
    pub(super) fn percentile(&self, p: f64) -> Option<f64> {
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

    pub(super) fn len(&self) -> u64 {
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
pub(super) fn summarize(intervals: &[Interval], pdd: &Histogram, setup: &Histogram) -> Summary {
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
pub(super) fn verdict(intervals: &[Interval], end: &End, duration_secs: u64) -> Vec<String> {
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
pub(super) fn clock(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
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
    use crate::calls::ResponseTimes;
    use crate::soak::tests::counts;
    use crate::stats::percentile;

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
