//! `sbc-bench media`'s comparison of every path with the baselines of the same run (issue 15, points 4 and 6):
//! packets per CPU-second against rtpengine 10.5 (relay / rtpengine, xdp / rtpengine), and one-way latency p50/p99
//! at half of each path's own ceiling, with kernel forwarding's as the baseline of XDP's (p99 xdp - kernel).

use crate::media::{Ladder, Target, TargetSummary};
use crate::stats::median;
use serde::Serialize;

/// Target: our user-space relay moves at least this many times rtpengine's packets per CPU-second.
pub const TARGET_RELAY_VS_RTPENGINE: f64 = 1.5;
/// Target: our XDP path moves at least this many times rtpengine's packets per CPU-second.
pub const TARGET_XDP_VS_RTPENGINE: f64 = 15.0;
/// Target: XDP's one-way latency p99 at half its ceiling is at most this much above kernel forwarding's, µs.
pub const TARGET_XDP_MINUS_KERNEL_P99_US: f64 = 50.0;

/// One path's figures in the comparison.
#[derive(Debug, Clone, Serialize)]
pub struct PathFigures {
    pub target: Target,
    /// Median ceiling over runs, packets/s.
    pub median_ceiling: Option<f64>,
    /// The top of the ladder passed in some run (the real ceiling is higher).
    pub capped_by_ladder: bool,
    /// CPU-seconds per million packets at the summary's reference rate: the forwarder's own CPU (relay, srtp,
    /// rtpengine: the process; xdp, bare: the process plus its XDP programs' run time), for kernel the whole
    /// machine's softirq time.
    pub cpu_s_per_mpkt: Option<f64>,
    /// `1e6 / cpu_s_per_mpkt`.
    pub pkts_per_cpu_s: Option<f64>,
    /// The rate of the latency step (half the ceiling), median over runs.
    pub latency_rate: Option<f64>,
    /// One-way latency at that rate, worst stream, medians over runs, µs.
    pub latency_p50_us: Option<f64>,
    pub latency_p99_us: Option<f64>,
    /// Loss in the latency step, median over runs, percent.
    pub latency_loss_pct: Option<f64>,
    /// Runs with a measured latency step.
    pub latency_runs: usize,
}

/// The comparison (see the module doc).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Versus {
    pub paths: Vec<PathFigures>,
    /// Packets per CPU-second at the reference rate, relay / rtpengine (target >= 1.5).
    pub relay_vs_rtpengine_pkts_per_cpu_s: Option<f64>,
    /// The same, xdp / rtpengine (target >= 15).
    pub xdp_vs_rtpengine_pkts_per_cpu_s: Option<f64>,
    /// The same, srtp / rtpengine (ours decrypting SRTP on one leg against rtpengine relaying plain RTP).
    pub srtp_vs_rtpengine_pkts_per_cpu_s: Option<f64>,
    /// Packets per CPU-second of `media-relay --ng` (user space) over rtpengine's: both steered over NG by the same
    /// client (issue 17).
    pub ng_vs_rtpengine_pkts_per_cpu_s: Option<f64>,
    /// Latency at half the ceiling, xdp - kernel, µs (p99: target <= 50).
    pub xdp_minus_kernel_p50_us: Option<f64>,
    pub xdp_minus_kernel_p99_us: Option<f64>,
    /// Latency p50 at half the ceiling, relay / rtpengine.
    pub relay_vs_rtpengine_latency_p50: Option<f64>,
}

/// Builds the comparison from the summary's per-path figures and the ladders' latency steps.
pub fn compare(targets: &[TargetSummary], ladders: &[Ladder]) -> Versus {
    let paths: Vec<PathFigures> = targets
        .iter()
        .map(|t| {
            let steps: Vec<_> = ladders
                .iter()
                .filter(|l| l.target == t.target)
                .filter_map(|l| l.latency_step.as_ref())
                .filter(|s| s.error.is_none() && s.latency_p50_us.is_some())
                .collect();
            let med = |f: &dyn Fn(&crate::media::Step) -> Option<f64>| {
                median(&steps.iter().filter_map(|s| f(s)).collect::<Vec<_>>())
            };
            let cpu =
                if t.target == Target::Kernel { t.reference_cpu_s_per_mpkt } else { t.reference_relay_cpu_s_per_mpkt };
            PathFigures {
                target: t.target,
                median_ceiling: t.median_ceiling,
                capped_by_ladder: t.capped_by_ladder.iter().any(|&c| c),
                cpu_s_per_mpkt: cpu,
                pkts_per_cpu_s: cpu.filter(|&c| c > 0.0).map(|c| 1e6 / c),
                latency_rate: med(&|s| Some(f64::from(s.rate))),
                latency_p50_us: med(&|s| s.latency_p50_us.map(|v| v as f64)),
                latency_p99_us: med(&|s| s.latency_p99_us.map(|v| v as f64)),
                latency_loss_pct: med(&|s| Some(s.loss_pct)),
                latency_runs: steps.len(),
            }
        })
        .collect();
    let get = |t: Target| paths.iter().find(|p| p.target == t);
    let per_cpu = |t: Target| get(t).and_then(|p| p.pkts_per_cpu_s);
    let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).filter(|&(_, b)| b > 0.0).map(|(a, b)| a / b);
    let lat = |t: Target, f: fn(&PathFigures) -> Option<f64>| get(t).and_then(f);
    let diff = |f: fn(&PathFigures) -> Option<f64>| lat(Target::Xdp, f).zip(lat(Target::Kernel, f)).map(|(x, k)| x - k);
    Versus {
        relay_vs_rtpengine_pkts_per_cpu_s: ratio(per_cpu(Target::Relay), per_cpu(Target::Rtpengine)),
        xdp_vs_rtpengine_pkts_per_cpu_s: ratio(per_cpu(Target::Xdp), per_cpu(Target::Rtpengine)),
        srtp_vs_rtpengine_pkts_per_cpu_s: ratio(per_cpu(Target::Srtp), per_cpu(Target::Rtpengine)),
        ng_vs_rtpengine_pkts_per_cpu_s: ratio(per_cpu(Target::Ng), per_cpu(Target::Rtpengine)),
        xdp_minus_kernel_p50_us: diff(|p| p.latency_p50_us),
        xdp_minus_kernel_p99_us: diff(|p| p.latency_p99_us),
        relay_vs_rtpengine_latency_p50: ratio(
            lat(Target::Relay, |p| p.latency_p50_us),
            lat(Target::Rtpengine, |p| p.latency_p50_us),
        ),
        paths,
    }
}

/// The comparison's part of the table.
pub fn table(v: &Versus) -> String {
    let f = |v: Option<f64>, p: usize| v.map_or("-".to_owned(), |v| format!("{v:.p$}"));
    let mut out = String::from("\nevery path against the baselines of this run (issue 15)\n");
    out.push_str(&format!(
        "  {:<10}{:>10}{:>12}{:>13}{:>12}{:>9}{:>9}{:>9}{:>6}\n",
        "", "ceiling", "CPU s/Mpkt", "pkts/CPU-s", "lat. rate", "p50 us", "p99 us", "loss %", "runs"
    ));
    for p in &v.paths {
        out.push_str(&format!(
            "  {:<10}{:>10}{:>12}{:>13}{:>12}{:>9}{:>9}{:>9}{:>6}\n",
            p.target.name(),
            format!("{}{}", f(p.median_ceiling, 0), if p.capped_by_ladder { "+" } else { "" }),
            f(p.cpu_s_per_mpkt, 2),
            f(p.pkts_per_cpu_s, 0),
            f(p.latency_rate, 0),
            f(p.latency_p50_us, 0),
            f(p.latency_p99_us, 0),
            f(p.latency_loss_pct, 3),
            p.latency_runs
        ));
    }
    out.push_str(
        "  (ceiling: median over runs, + = the ladder's top passed; CPU s/Mpkt at the reference rate: the\n   \
         forwarder's own CPU (process; xdp, bare: + XDP program run time; kernel: the machine's softirq time);\n   \
         latency: one-way, one step at half the path's own ceiling after its ladder (lat. rate), worst stream,\n   \
         medians over runs; paths are compared each at half its own ceiling, so at different rates)\n",
    );
    let verdict = |v: Option<f64>, ok: &dyn Fn(f64) -> bool| match v {
        Some(v) if ok(v) => "met",
        Some(_) => "NOT met",
        None => "not measured",
    };
    out.push_str(&format!(
        "  packets per CPU-second, relay / rtpengine: {} (target >= {TARGET_RELAY_VS_RTPENGINE}: {})\n",
        f(v.relay_vs_rtpengine_pkts_per_cpu_s, 2),
        verdict(v.relay_vs_rtpengine_pkts_per_cpu_s, &|r| r >= TARGET_RELAY_VS_RTPENGINE)
    ));
    out.push_str(&format!(
        "  packets per CPU-second, xdp / rtpengine: {} (target >= {TARGET_XDP_VS_RTPENGINE}: {})\n",
        f(v.xdp_vs_rtpengine_pkts_per_cpu_s, 2),
        verdict(v.xdp_vs_rtpengine_pkts_per_cpu_s, &|r| r >= TARGET_XDP_VS_RTPENGINE)
    ));
    if v.srtp_vs_rtpengine_pkts_per_cpu_s.is_some() {
        out.push_str(&format!(
            "  packets per CPU-second, srtp / rtpengine (ours decrypting SRTP, rtpengine plain): {}\n",
            f(v.srtp_vs_rtpengine_pkts_per_cpu_s, 2)
        ));
    }
    if v.ng_vs_rtpengine_pkts_per_cpu_s.is_some() {
        out.push_str(&format!(
            "  packets per CPU-second, ng (media-relay --ng, user space) / rtpengine, both over NG: {}\n",
            f(v.ng_vs_rtpengine_pkts_per_cpu_s, 2)
        ));
    }
    out.push_str(&format!(
        "  latency at half the ceiling, relay / rtpengine p50: {}\n",
        f(v.relay_vs_rtpengine_latency_p50, 2)
    ));
    out.push_str(&format!(
        "  latency at half the ceiling, xdp - kernel: p50 {} us, p99 {} us (target p99 <= \
         {TARGET_XDP_MINUS_KERNEL_P99_US} us: {})\n",
        f(v.xdp_minus_kernel_p50_us, 0),
        f(v.xdp_minus_kernel_p99_us, 0),
        verdict(v.xdp_minus_kernel_p99_us, &|d| d <= TARGET_XDP_MINUS_KERNEL_P99_US)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{summarize, Step};

    fn ladder(target: Target, cpu: f64, latency: (u64, u64)) -> Ladder {
        let mut l = Ladder::new(1, target);
        let step = |rate: u32| Step {
            rate,
            pass: true,
            sent: 1,
            received: 1,
            cpu_s_per_mpkt: Some(cpu),
            relay_cpu_s_per_mpkt: (target != Target::Kernel).then_some(cpu),
            latency_p50_us: Some(latency.0),
            latency_p99_us: Some(latency.1),
            ..Step::default()
        };
        l.steps = vec![step(100), step(200)];
        l.latency_step = Some(step(l.half_ceiling_rate().unwrap()));
        l.finish(200);
        l
    }

    #[test]
    fn ratios_against_rtpengine_and_latency_against_kernel() {
        let paths = [Target::Relay, Target::Xdp, Target::Rtpengine, Target::Kernel];
        let ladders = vec![
            ladder(Target::Relay, 10.0, (200, 400)),
            ladder(Target::Xdp, 1.0, (60, 130)),
            ladder(Target::Rtpengine, 20.0, (650, 900)),
            ladder(Target::Kernel, 3.0, (50, 100)),
        ];
        let s = summarize(&paths, &[100, 200], &ladders, &[]);
        let v = &s.versus;
        assert_eq!(v.relay_vs_rtpengine_pkts_per_cpu_s, Some(2.0));
        assert_eq!(v.xdp_vs_rtpengine_pkts_per_cpu_s, Some(20.0));
        assert_eq!(v.xdp_minus_kernel_p99_us, Some(30.0));
        assert_eq!(v.xdp_minus_kernel_p50_us, Some(10.0));
        let relay = &v.paths[0];
        assert_eq!(relay.latency_rate, Some(100.0), "half the ceiling of 200");
        assert_eq!(relay.pkts_per_cpu_s, Some(100_000.0));
        let t = table(v);
        assert!(t.contains("relay / rtpengine: 2.00 (target >= 1.5: met)"), "{t}");
        assert!(t.contains("xdp / rtpengine: 20.00 (target >= 15: met)"), "{t}");
        assert!(t.contains("p99 30 us (target p99 <= 50 us: met)"), "{t}");
    }
}
