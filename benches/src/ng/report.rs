//! The summary of `sbc-bench ng`: medians over runs per target, issue 17's ratios against `kamailio-rtpengine`, what
//! limited each ceiling, the table and the plot.

use super::media::Measurement;
use super::Options;
use crate::cps::{Ladder, Step};
use crate::stats::median;
use serde::Serialize;

/// Issue 17's targets: our call rate at least rtpengine's, our CPU per packet 1.5x better in user space, 15x with
/// XDP.
pub const TARGET_CPS: f64 = 1.0;
pub const TARGET_USER_SPACE: f64 = 1.5;
pub const TARGET_XDP: f64 = 15.0;
/// At a failing step with the target's core below this share busy (percent of one core), the target's core was
/// not the limit.
const SATURATED_PCT: f64 = 90.0;
/// SIPp achieving less than this share of the offered rate fell behind.
const ACHIEVED_SHARE: f64 = 0.9;

/// One target over the runs.
#[derive(Debug, Clone, Serialize)]
pub struct TargetSummary {
    pub target: String,
    /// Ceiling per run (`None`: the first step failed) and whether every step passed.
    pub ceilings: Vec<Option<u32>>,
    pub capped_by_ladder: Vec<bool>,
    pub median_ceiling: Option<f64>,
    /// Per run, what ended the ladder (see [`limit_of`]).
    pub limits: Vec<String>,
    /// Medians over the media windows that passed.
    pub relay_cpu_s_per_mpkt: Option<f64>,
    pub machine_net_s_per_mpkt: Option<f64>,
    pub softirq_net_s_per_mpkt: Option<f64>,
    /// Media windows measured and passed.
    pub media_windows: usize,
    pub media_passed: usize,
    /// A media window of this target was limited by the generator.
    pub media_generator_limited: bool,
}

/// The bench's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub targets: Vec<TargetSummary>,
    /// Median ceilings, ours / rtpengine's (user space; XDP, whose signalling path is the same).
    pub cps_ng_vs_rtpengine: Option<f64>,
    pub cps_ng_xdp_vs_rtpengine: Option<f64>,
    /// The relay's own CPU per million packets, rtpengine's / ours: **the figures quoted** for issue 17.
    pub cpu_rtpengine_vs_ng: Option<f64>,
    pub cpu_rtpengine_vs_ng_xdp: Option<f64>,
    /// The same on the machine's figure (busy less idle baseline less generators).
    pub machine_rtpengine_vs_ng: Option<f64>,
    pub machine_rtpengine_vs_ng_xdp: Option<f64>,
}

/// What ended a ladder: the top of the ladder, the target's core, or (core not saturated) SIPp falling behind (the
/// generator, or calls stalling in the target) or failures and delay.
pub fn limit_of(ladder: &Ladder) -> String {
    if ladder.capped_by_ladder {
        return "ladder top (raise --rates)".into();
    }
    let Some(failed) = ladder.steps.iter().find(|s| !s.pass) else {
        return "-".into();
    };
    let cpu = failed.sbc_cpu_pct.map_or("?".to_owned(), |c| format!("{c:.0} %"));
    let behind = failed.achieved_cps.is_some_and(|a| a < ACHIEVED_SHARE * f64::from(failed.rate));
    let why = why_failed(failed);
    match (failed.sbc_cpu_pct, behind) {
        (Some(c), _) if c >= SATURATED_PCT => format!("target core ({cpu}) at {}/s: {why}", failed.rate),
        // SIPp falls behind both when its own core is the limit and when calls stall in the target (Kamailio
        // waiting on a late NG reply): without a `direct` ladder in the same run the two look alike.
        (_, true) => format!(
            "SIPp behind (generator or a stall in the call path): achieved {:.0}/s of {}/s, target core {cpu}: {why}",
            failed.achieved_cps.unwrap_or(0.0),
            failed.rate
        ),
        _ => format!("target core {cpu} at {}/s (not saturated): {why}", failed.rate),
    }
}

fn why_failed(s: &Step) -> String {
    if let Some(e) = &s.error {
        return format!("error {e}");
    }
    format!("{:.2} % failed, pdd p99 {} ms", s.failed_pct, s.p99_ms.map_or("-".to_owned(), |p| format!("{p:.0}")))
}

/// Medians and ratios over every ladder and media window.
pub fn summarize(labels: &[String], ladders: &[Ladder], media: &[Measurement]) -> Summary {
    let targets: Vec<TargetSummary> = labels
        .iter()
        .map(|t| {
            let of: Vec<&Ladder> = ladders.iter().filter(|l| &l.target == t).collect();
            let ceilings: Vec<f64> = of.iter().map(|l| l.ceiling.map_or(0.0, f64::from)).collect();
            let windows: Vec<&Measurement> = media.iter().filter(|m| &m.target == t).collect();
            let passed: Vec<&&Measurement> = windows.iter().filter(|m| m.pass).collect();
            let med =
                |f: fn(&Measurement) -> Option<f64>| median(&passed.iter().filter_map(|m| f(m)).collect::<Vec<_>>());
            TargetSummary {
                target: t.clone(),
                ceilings: of.iter().map(|l| l.ceiling).collect(),
                capped_by_ladder: of.iter().map(|l| l.capped_by_ladder).collect(),
                median_ceiling: median(&ceilings),
                limits: of.iter().map(|l| limit_of(l)).collect(),
                relay_cpu_s_per_mpkt: med(|m| m.relay_cpu_s_per_mpkt),
                machine_net_s_per_mpkt: med(|m| m.machine_net_s_per_mpkt),
                softirq_net_s_per_mpkt: med(|m| m.softirq_net_s_per_mpkt),
                media_windows: windows.len(),
                media_passed: passed.len(),
                media_generator_limited: windows.iter().any(|m| m.generator_limited),
            }
        })
        .collect();
    let get = |name: &str| targets.iter().find(|t| t.target == name);
    let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).filter(|&(_, b)| b > 0.0).map(|(a, b)| a / b);
    let theirs = get("kamailio-rtpengine");
    let (ng, xdp) = (get("kamailio-ng"), get("kamailio-ng-xdp"));
    let f = |t: Option<&TargetSummary>, g: fn(&TargetSummary) -> Option<f64>| t.and_then(g);
    Summary {
        cps_ng_vs_rtpengine: ratio(f(ng, |t| t.median_ceiling), f(theirs, |t| t.median_ceiling)),
        cps_ng_xdp_vs_rtpengine: ratio(f(xdp, |t| t.median_ceiling), f(theirs, |t| t.median_ceiling)),
        cpu_rtpengine_vs_ng: ratio(f(theirs, |t| t.relay_cpu_s_per_mpkt), f(ng, |t| t.relay_cpu_s_per_mpkt)),
        cpu_rtpengine_vs_ng_xdp: ratio(f(theirs, |t| t.relay_cpu_s_per_mpkt), f(xdp, |t| t.relay_cpu_s_per_mpkt)),
        machine_rtpengine_vs_ng: ratio(f(theirs, |t| t.machine_net_s_per_mpkt), f(ng, |t| t.machine_net_s_per_mpkt)),
        machine_rtpengine_vs_ng_xdp: ratio(
            f(theirs, |t| t.machine_net_s_per_mpkt),
            f(xdp, |t| t.machine_net_s_per_mpkt),
        ),
        targets,
    }
}

/// The table printed at the end.
pub fn table(opts: &Options, s: &Summary) -> String {
    let f = |v: Option<f64>, p: usize| v.map_or("-".to_owned(), |v| format!("{v:.p$}"));
    let mut out = format!(
        "sbc-bench ng: the same Kamailio config (benches/kamailio/sbc.cfg) against {}; {} run(s)\n",
        opts.labels.join(", "),
        opts.runs
    );
    out.push_str(&if opts.pinned {
        format!(
            "pinning: Kamailio, Redis and the relay on core {}, SIPp and the RTP fleets on core {}\n",
            crate::cps::SBC_CORE,
            crate::cps::SIPP_CORE
        )
    } else {
        "pinning: off (fewer than 2 cores)\n".to_owned()
    });
    out.push_str(&format!(
        "cps: steps of {} s, rates {:?}; a step passes with failed <= {} % and pdd p99 <= {} ms\n\
         media: {} calls, {} pps each way per call ({} pps through the relay), {} s after an idle window of {} s\n\n",
        opts.step_secs,
        opts.rates,
        crate::cps::MAX_FAILED_PCT,
        crate::cps::MAX_P99_MS,
        opts.calls,
        opts.pps,
        opts.total_pps(),
        opts.media_secs,
        opts.idle_secs
    ));
    out.push_str(&format!(
        "  {:<20}{:>22}{:>9}{:>14}{:>14}{:>14}{:>9}\n",
        "", "ceilings (calls/s)", "median", "relay s/Mpkt", "machine net", "softirq net", "windows"
    ));
    for t in &s.targets {
        let ceilings: Vec<String> = t
            .ceilings
            .iter()
            .zip(&t.capped_by_ladder)
            .map(|(c, capped)| c.map_or("none".to_owned(), |c| format!("{c}{}", if *capped { "+" } else { "" })))
            .collect();
        out.push_str(&format!(
            "  {:<20}{:>22}{:>9}{:>14}{:>14}{:>14}{:>9}\n",
            t.target,
            ceilings.join(" "),
            f(t.median_ceiling, 0),
            f(t.relay_cpu_s_per_mpkt, 3),
            f(t.machine_net_s_per_mpkt, 3),
            f(t.softirq_net_s_per_mpkt, 3),
            format!("{}/{}", t.media_passed, t.media_windows)
        ));
    }
    out.push_str(
        "  (relay s/Mpkt: the relay process's utime+stime, + its XDP programs' run time for kamailio-ng-xdp, per\n   \
         million packets forwarded, the figure quoted; machine net: the whole machine's busy time less the idle\n   \
         window's (scaled) less the RTP generators' CPU, per Mpkt, noisy on a shared machine; softirq net: the\n   \
         machine's softirq time less the idle window's; medians over the windows that passed; + = every step passed)\n",
    );
    out.push_str("\nwhat ended each ladder (per run):\n");
    for t in &s.targets {
        for (i, l) in t.limits.iter().enumerate() {
            out.push_str(&format!("  {:<20} run {}: {l}\n", t.target, i + 1));
        }
        if t.media_generator_limited {
            out.push_str(&format!("  {:<20} a media window was limited by the generator (send lag)\n", t.target));
        }
    }
    let verdict = |v: Option<f64>, target: f64| match v {
        Some(v) if v >= target => "met",
        Some(_) => "NOT met",
        None => "not measured",
    };
    out.push_str("\nissue 17's ratios (medians over runs):\n");
    for (what, v, target) in [
        ("calls/s, kamailio-ng / kamailio-rtpengine", s.cps_ng_vs_rtpengine, TARGET_CPS),
        ("calls/s, kamailio-ng-xdp / kamailio-rtpengine", s.cps_ng_xdp_vs_rtpengine, TARGET_CPS),
        ("relay CPU per packet, rtpengine / ng (user space)", s.cpu_rtpengine_vs_ng, TARGET_USER_SPACE),
        ("relay CPU per packet, rtpengine / ng-xdp", s.cpu_rtpengine_vs_ng_xdp, TARGET_XDP),
    ] {
        out.push_str(&format!("  {what:<52}{:>8} (target >= {target}: {})\n", f(v, 2), verdict(v, target)));
    }
    for (what, v) in [
        ("machine net per packet, rtpengine / ng", s.machine_rtpengine_vs_ng),
        ("machine net per packet, rtpengine / ng-xdp", s.machine_rtpengine_vs_ng_xdp),
    ] {
        out.push_str(&format!("  {what:<52}{:>8} (for reading the XDP figure: softirq work included)\n", f(v, 2)));
    }
    out
}

/// The figure: per target, the ceiling and the relay's CPU per Mpkt in each run.
pub fn plot(path: &std::path::Path, opts: &Options, ladders: &[Ladder], media: &[Measurement]) -> anyhow::Result<()> {
    use crate::plot::{Panel, Series};
    let mut ceilings = Vec::new();
    let mut cpu = Vec::new();
    let mut machine = Vec::new();
    for label in &opts.labels {
        let c = ladders
            .iter()
            .filter(|l| &l.target == label)
            .map(|l| (f64::from(l.run), l.ceiling.map_or(0.0, f64::from)))
            .collect();
        ceilings.push(Series::new(label.clone(), c));
        let of = |g: fn(&Measurement) -> Option<f64>| {
            media
                .iter()
                .filter(|m| &m.target == label && m.pass)
                .filter_map(|m| Some((f64::from(m.run), g(m)?)))
                .collect()
        };
        cpu.push(Series::new(label.clone(), of(|m| m.relay_cpu_s_per_mpkt)));
        machine.push(Series { dashed: true, ..Series::new(label.clone(), of(|m| m.machine_net_s_per_mpkt)) });
    }
    crate::plot::write_svg(
        path,
        &format!("sbc-bench ng: {}", opts.labels.join(" vs ")),
        &[
            Panel {
                title: "calls/s ceiling per run".into(),
                x_label: "run".into(),
                y_label: "calls/s".into(),
                log_y: false,
                series: ceilings,
            },
            Panel {
                title: "CPU per million packets: relay (solid), machine net of idle and generators (dashed)".into(),
                x_label: "run".into(),
                y_label: "CPU s / Mpkt".into(),
                log_y: true,
                series: cpu.into_iter().chain(machine).collect(),
            },
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ladder(run: u32, target: &str, ceiling: u32, cpu_at_fail: f64, achieved: f64) -> Ladder {
        let step = |rate: u32, pass: bool| Step {
            rate,
            calls: rate,
            successful: rate.into(),
            failed: 0,
            failed_pct: if pass { 0.0 } else { 5.0 },
            sipp_failed: None,
            retransmissions: None,
            achieved_cps: Some(if pass { f64::from(rate) } else { achieved }),
            samples: 1,
            p50_ms: Some(1.0),
            p95_ms: Some(1.0),
            p99_ms: Some(if pass { 2.0 } else { 300.0 }),
            mean_ms: Some(1.0),
            setup_p50_ms: None,
            setup_p99_ms: None,
            sbc_cpu_pct: Some(if pass { 50.0 } else { cpu_at_fail }),
            core_busy_pct: None,
            cpu_ms_per_call: None,
            wall_secs: 1.0,
            sipp_exit: Some(0),
            error: None,
            pass,
        };
        Ladder {
            run,
            target: target.into(),
            steps: vec![step(ceiling, true), step(ceiling * 2, false)],
            ceiling: Some(ceiling),
            capped_by_ladder: false,
        }
    }

    fn window(run: u32, target: &str, cpu: f64) -> Measurement {
        Measurement {
            run,
            target: target.into(),
            relay_cpu_s_per_mpkt: Some(cpu),
            machine_net_s_per_mpkt: Some(cpu * 2.0),
            pass: true,
            ..Measurement::default()
        }
    }

    #[test]
    fn ratios_are_ours_over_theirs_for_calls_and_theirs_over_ours_for_cpu() {
        let labels: Vec<String> = super::super::TARGETS.iter().map(ToString::to_string).collect();
        let ladders = vec![
            ladder(1, "kamailio-rtpengine", 400, 99.0, 790.0),
            ladder(1, "kamailio-ng", 600, 60.0, 700.0),
            ladder(1, "kamailio-ng-xdp", 600, 70.0, 1200.0),
        ];
        let media = vec![
            window(1, "kamailio-rtpengine", 30.0),
            window(1, "kamailio-ng", 10.0),
            window(1, "kamailio-ng-xdp", 1.5),
            Measurement { pass: false, ..window(2, "kamailio-ng", 1000.0) },
        ];
        let s = summarize(&labels, &ladders, &media);
        assert_eq!(s.cps_ng_vs_rtpengine, Some(1.5));
        assert_eq!(s.cpu_rtpengine_vs_ng, Some(3.0));
        assert_eq!(s.cpu_rtpengine_vs_ng_xdp, Some(20.0));
        assert_eq!(s.machine_rtpengine_vs_ng, Some(3.0));
        assert_eq!((s.targets[1].media_windows, s.targets[1].media_passed), (2, 1), "the failed window is not used");
        assert!(s.targets[0].limits[0].starts_with("target core (99 %)"), "{:?}", s.targets[0].limits);
        assert!(
            s.targets[1].limits[0]
                .contains("SIPp behind (generator or a stall in the call path): achieved 700/s of 1200/s"),
            "{:?}",
            s.targets[1]
        );
        assert!(s.targets[2].limits[0].contains("not saturated"), "{:?}", s.targets[2].limits);
    }
}
