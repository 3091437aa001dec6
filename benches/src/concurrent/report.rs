//! What `concurrent` reports: the pass rule of a measurement and the line printed after it, the summary over the
//! runs (medians per target, ratios of the target to the comparison), the table and the plot.

use super::fleet::{Direction, Media};
use super::{Measurement, Options, MAX_LOSS_PCT, SBC_CORE, SIPP_CORE};
use crate::plot::{self, Panel, Series};
use crate::stats::median;
use crate::target::Target;
use anyhow::Result;
use serde::Serialize;
use std::path::Path;

/// SIPp measures response times in whole milliseconds: a PDD ratio needs a denominator of at least this.
const SIPP_RESOLUTION_MS: f64 = 1.0;

/// The reasons `m` fails (empty: it passes): an error, a failed or unanswered call, no media, a direction with
/// nothing sent, fewer packets sent than planned, or loss at or above [`MAX_LOSS_PCT`].
pub(super) fn fail_reasons(m: &Measurement) -> Vec<String> {
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

fn fmt_opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"))
}

/// KiB as MiB, one decimal.
fn mib(kib: Option<f64>) -> String {
    kib.map_or_else(|| "-".to_owned(), |v| format!("{:.1}", v / 1024.0))
}

fn kib(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}

fn us(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"))
}

/// The line printed after each measurement.
pub(super) fn outcome(runs: u32, m: &Measurement) -> String {
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
    if let (Some(idle), Some(peak)) = (m.sbc_rss_idle_kib, m.sbc_rss_peak_kib) {
        line.push_str(&format!(
            "; sbc rss idle/peak/after {}/{}/{} MiB, {} KiB per call",
            mib(Some(idle as f64)),
            mib(Some(peak as f64)),
            mib(m.sbc_rss_after_kib.map(|k| k as f64)),
            kib(m.sbc_rss_per_call_kib)
        ));
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
    /// Resident memory of `sbc` before the calls, at their peak and after they ended, KiB.
    pub sbc_rss_idle_kib: Option<f64>,
    pub sbc_rss_peak_kib: Option<f64>,
    pub sbc_rss_after_kib: Option<f64>,
    /// `(peak - idle) / peak calls up`, KiB.
    pub sbc_rss_per_call_kib: Option<f64>,
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
                sbc_rss_idle_kib: med(&|m| m.sbc_rss_idle_kib.map(|k| k as f64)),
                sbc_rss_peak_kib: med(&|m| m.sbc_rss_peak_kib.map(|k| k as f64)),
                sbc_rss_after_kib: med(&|m| m.sbc_rss_after_kib.map(|k| k as f64)),
                sbc_rss_per_call_kib: med(&|m| m.sbc_rss_per_call_kib),
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
fn ratios(a: &TargetSummary, b: &TargetSummary) -> Ratios {
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
pub(super) fn pinning(opts: &Options) -> String {
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
    if summary.targets.iter().any(|t| t.sbc_rss_peak_kib.is_some()) {
        out.push('\n');
        out.push_str(&format!(
            "{:<w$}  {:>12} {:>12} {:>12}  {:>13}\n",
            "sbc memory",
            "rss idle MiB",
            "peak MiB",
            "after MiB",
            "per call KiB",
            w = width + 2
        ));
        for t in summary.targets.iter().filter(|t| t.sbc_rss_peak_kib.is_some()) {
            out.push_str(&format!(
                "  {:<w$}  {:>12} {:>12} {:>12}  {:>13}\n",
                t.target,
                mib(t.sbc_rss_idle_kib),
                mib(t.sbc_rss_peak_kib),
                mib(t.sbc_rss_after_kib),
                kib(t.sbc_rss_per_call_kib),
                w = width
            ));
        }
        out.push_str("  (VmRSS of sbc; per call: (peak - idle) / the most calls up at once)\n");
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

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
            sbc_rss_idle_kib: (target == "local").then_some(9_216),
            sbc_rss_peak_kib: (target == "local").then_some(9_216 + 200 * 8 * u64::from(run)),
            sbc_rss_after_kib: (target == "local").then_some(10_240),
            sbc_rss_per_call_kib: (target == "local").then_some(8.0 * f64::from(run)),
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
        assert_eq!(local.sbc_rss_per_call_kib, Some(16.0), "the median of 8, 16 and 24 KiB");
        assert!(table.contains("sbc memory"), "{table}");
        assert!(table.contains("        9.0         12.1         10.0           16.0"), "{table}");
        assert_eq!(s.targets[1].sbc_rss_peak_kib, None, "direct has no sbc");
    }
}
