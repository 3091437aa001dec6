//! `sbc-bench media --generator xdp`: the forwarding paths' ceilings at millions of packets per second, over 1 to
//! 100,000 flows, with a generator and a sink that run at XDP speed (issue 15).
//!
//! The generator is an XDP program ([`progs::Generator`], ebpf/src/gen.bpf.c) that `xdp-gen` runs in A with
//! `BPF_PROG_RUN` in live-frames mode on A's eth0, pinned to core [`ladder::GEN_CORE`]: each run writes a whole
//! RTP frame (valid IPv4 and UDP checksums, per-flow SSRC, sequence number and timestamp) and returns XDP_TX, which
//! sends it to a0 in the SBC namespace. Rates are paced in batches of about a millisecond of frames per call. The
//! sink ([`progs::Sink`], ebpf/src/sink.bpf.c) counts RTP v2 packets per flow (by SSRC) and checks sequence numbers
//! and IPv4 checksums, then drops them; it sits on p-sbc (b0's veth peer in the switch namespace, before the
//! bridge, which would otherwise be the limit), or on a0 itself for the `drop` path.
//!
//! Paths: `drop` (the generator alone: its ceiling, measured first at every flow count of every run), `bare`
//! (`relay_bare_redirect` a0 -> b0), `reference` (`reference_relay` on a0 with one flow per generator flow) and
//! `kernel` (IP forwarding; `relay_pass` on a0 so that the veth takes the XDP frames). In live-frames mode the
//! frames' whole journey (the path's XDP program, the veths, the sink) runs in the softirq of the generator's core:
//! the ceiling of a path is the rate at which one core carries generator plus path, and `drop`'s ceiling is what
//! the generator alone costs on that core. A step passes when less than 0.1 % of the frames sent were not
//! counted, every flow was seen, no IPv4 checksum was wrong and the generator achieved 90 % of the rate; below
//! that the step is marked generator-limited (the core was full: a ceiling near `drop`'s is the generator's).

pub mod afxdp;
pub mod helpers;
pub mod ladder;
pub mod progs;
pub mod relay;

pub use ladder::{Ladder, Options, Path};

use crate::stats::median;
use ladder::MAX_LOSS_PCT;
use serde::Serialize;

/// Default ladder (packets per second over all flows).
pub const DEFAULT_RATES: &[u32] = &[250_000, 500_000, 1_000_000, 1_500_000, 2_000_000, 2_500_000, 3_000_000, 4_000_000];
/// A path's best delivered rate within this share of the generator's own (`drop`'s) is the generator's, not the
/// path's.
pub const GENERATOR_BOUND_SHARE: f64 = 0.85;

/// Per flow count and path: the median ceiling and best delivered rate over the runs.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub flows: u32,
    pub path: Path,
    pub ceilings: Vec<Option<u32>>,
    pub median_ceiling: Option<f64>,
    pub median_best_delivered: Option<f64>,
    /// The top of the ladder passed in some run.
    pub capped: bool,
    /// The median best delivered rate is within [`GENERATOR_BOUND_SHARE`] of `drop`'s at this flow count: the
    /// generator's core, not the path, was the limit. (Not "no step lost a packet": a veth of kernel 6.16 or
    /// newer holds back an AF_XDP sender while its ring is full, so a path slower than the generator slows the
    /// generator down instead of losing packets; see benches/README.md.)
    pub generator_bound: bool,
    /// Some step lost packets (>= 0.1 %) or missed a flow: the path itself failed somewhere on the ladder.
    pub path_lost: bool,
    /// With `--path-core`: median over runs of the path's CPU seconds per million packets at the ceiling.
    pub median_path_cpu_s_per_mpkt: Option<f64>,
    /// The latency steps (half of each run's ceiling): medians over runs of their rate and of the one-way
    /// latency's p50 and p99 in µs (sink's XDP program), and the runs that measured it.
    pub latency_rate: Option<f64>,
    pub latency_p50_us: Option<f64>,
    pub latency_p99_us: Option<f64>,
    pub latency_runs: usize,
}

/// The whole invocation's summary.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub cells: Vec<Cell>,
    /// Per flow count: median ceiling reference / bare.
    pub reference_vs_bare: Vec<(u32, Option<f64>)>,
    /// Per flow count: median highest passing offered rate xdp / reference (the ladder's spacing shows in it).
    pub xdp_vs_reference: Vec<(u32, Option<f64>)>,
    /// Per flow count: median best delivered rate xdp / reference (issue 15's target: at least 0.9).
    pub xdp_vs_reference_best: Vec<(u32, Option<f64>)>,
    /// Per flow count: median best delivered rate xdp-maps / reference (our program without the relay's process,
    /// at flow counts the `xdp` path cannot open sockets for).
    pub xdp_maps_vs_reference_best: Vec<(u32, Option<f64>)>,
    /// Per flow count: median p99 latency at half its own ceiling of `xdp` (else `xdp-maps`) minus kernel
    /// forwarding's, µs (issue 15's target: at most [`TARGET_XDP_P99_OVER_KERNEL_US`]).
    pub xdp_p99_over_kernel_us: Vec<(u32, Option<f64>)>,
}

/// Issue 15: our XDP path's p99 one-way latency at half its ceiling at most this far above kernel forwarding's.
pub const TARGET_XDP_P99_OVER_KERNEL_US: f64 = 50.0;

/// Issue 15: our XDP path's live ceiling is at least this share of the reference relay's.
pub const TARGET_XDP_VS_REFERENCE: f64 = 0.9;

/// Medians per flow count and path.
pub fn summarize(opts: &Options, ladders: &[Ladder]) -> Summary {
    let mut cells = Vec::new();
    for &flows in &opts.flows {
        let drop_best = ceiling_of(ladders, flows, Path::Drop).2;
        for path in std::iter::once(Path::Drop).chain(opts.paths.iter().copied()) {
            let (median_ceiling, ceilings, best, capped) = ceiling_of(ladders, flows, path);
            let path_lost = ladders
                .iter()
                .filter(|l| l.flows == flows && l.path == path)
                .flat_map(|l| &l.steps)
                // Loss is the path's even where the generator fell short of the rate: what it did send was lost.
                .any(|s| s.error.is_none() && s.sent > 0 && s.loss_pct >= MAX_LOSS_PCT);
            let generator_bound =
                path != Path::Drop && best.zip(drop_best).is_some_and(|(b, d)| b >= GENERATOR_BOUND_SHARE * d);
            let latencies: Vec<(f64, &progs::Latency)> = ladders
                .iter()
                .filter(|l| l.flows == flows && l.path == path)
                .filter_map(|l| l.latency_step.as_ref())
                .filter(|s| s.error.is_none())
                .filter_map(|s| Some((f64::from(s.rate), s.sink.as_ref()?.latency.as_ref()?)))
                .collect();
            let lat_median =
                |f: fn(&progs::Latency) -> f64| median(&latencies.iter().map(|(_, l)| f(l)).collect::<Vec<_>>());
            cells.push(Cell {
                flows,
                path,
                latency_rate: median(&latencies.iter().map(|(r, _)| *r).collect::<Vec<_>>()),
                latency_p50_us: lat_median(|l| l.p50_us),
                latency_p99_us: lat_median(|l| l.p99_us),
                latency_runs: latencies.len(),
                ceilings,
                median_ceiling,
                median_best_delivered: best,
                capped,
                generator_bound,
                path_lost,
                median_path_cpu_s_per_mpkt: median(
                    &ladders
                        .iter()
                        .filter(|l| l.flows == flows && l.path == path)
                        .filter_map(|l| l.path_cpu_s_per_mpkt)
                        .collect::<Vec<_>>(),
                ),
            });
        }
    }
    let ratio = |flows: u32, a: Path, b: Path, best: bool| {
        let get = |p| {
            cells.iter().find(|c: &&Cell| c.flows == flows && c.path == p).and_then(|c| {
                if best {
                    c.median_best_delivered
                } else {
                    c.median_ceiling
                }
            })
        };
        get(a).zip(get(b)).filter(|(_, b)| *b > 0.0).map(|(a, b)| a / b)
    };
    let per_flows = |a, b, best| opts.flows.iter().map(|&f| (f, ratio(f, a, b, best))).collect();
    let p99 = |f: u32, p: Path| cells.iter().find(|c| c.flows == f && c.path == p).and_then(|c| c.latency_p99_us);
    let xdp_p99_over_kernel_us = opts
        .flows
        .iter()
        .map(|&f| {
            (f, p99(f, Path::Xdp).or_else(|| p99(f, Path::XdpMaps)).zip(p99(f, Path::Kernel)).map(|(x, k)| x - k))
        })
        .collect();
    Summary {
        xdp_p99_over_kernel_us,
        reference_vs_bare: per_flows(Path::Reference, Path::Bare, false),
        xdp_vs_reference: per_flows(Path::Xdp, Path::Reference, false),
        xdp_vs_reference_best: per_flows(Path::Xdp, Path::Reference, true),
        xdp_maps_vs_reference_best: per_flows(Path::XdpMaps, Path::Reference, true),
        cells,
    }
}

fn ceiling_of(ladders: &[Ladder], flows: u32, path: Path) -> (Option<f64>, Vec<Option<u32>>, Option<f64>, bool) {
    let mine: Vec<&Ladder> = ladders.iter().filter(|l| l.flows == flows && l.path == path).collect();
    let ceilings: Vec<Option<u32>> = mine.iter().map(|l| l.ceiling).collect();
    // A run without a passing step counts as 0 in the median.
    let values: Vec<f64> = ceilings.iter().map(|c| f64::from(c.unwrap_or(0))).collect();
    let best: Vec<f64> = mine.iter().filter_map(|l| l.best_delivered_pps).collect();
    (median(&values).filter(|&m| m > 0.0), ceilings, median(&best), mine.iter().any(|l| l.capped))
}

/// The table: ceiling (Mpps) per path and flow count, then the ratios.
pub fn table(opts: &Options, s: &Summary) -> String {
    let mpps = |v: Option<f64>| v.map_or("none".to_owned(), |v| format!("{:.2}", v / 1e6));
    let mut out = String::from(
        "ceiling, Mpps: best delivered rate with loss < 0.1 % (median over runs; * = within 15 % of drop's: the\n\
         generator's, not the path's; + = the top of the ladder passed)\n",
    );
    out.push_str(&format!("  {:<11}", "flows"));
    for f in &opts.flows {
        out.push_str(&format!("{f:>12}"));
    }
    out.push('\n');
    for path in std::iter::once(Path::Drop).chain(opts.paths.iter().copied()) {
        out.push_str(&format!("  {:<11}", path.name()));
        for &f in &opts.flows {
            let c = s.cells.iter().find(|c| c.flows == f && c.path == path);
            let cell = c.map_or("-".to_owned(), |c| {
                format!(
                    "{}{}{}",
                    mpps(c.median_best_delivered),
                    if c.generator_bound { "*" } else { "" },
                    if c.capped { "+" } else { "" }
                )
            });
            out.push_str(&format!("{cell:>12}"));
        }
        out.push('\n');
    }
    out.push_str("highest offered rate that passed (loss < 0.1 %, generator at 90 % of it), Mpps\n");
    for path in std::iter::once(Path::Drop).chain(opts.paths.iter().copied()) {
        out.push_str(&format!("  {:<11}", path.name()));
        for &f in &opts.flows {
            let c = s.cells.iter().find(|c| c.flows == f && c.path == path);
            out.push_str(&format!("{:>12}", mpps(c.and_then(|c| c.median_ceiling))));
        }
        out.push('\n');
    }
    if s.cells.iter().any(|c| c.median_path_cpu_s_per_mpkt.is_some()) {
        out.push_str(
            "path CPU-s per Mpkt at the ceiling (a0's NAPI thread on core 1, + the relay's threads; drop: a0's\n\
             receive and the sink alone)\n",
        );
        for path in std::iter::once(Path::Drop).chain(opts.paths.iter().copied()) {
            out.push_str(&format!("  {:<11}", path.name()));
            for &f in &opts.flows {
                let c = s.cells.iter().find(|c| c.flows == f && c.path == path);
                let v = c.and_then(|c| c.median_path_cpu_s_per_mpkt);
                out.push_str(&format!("{:>12}", v.map_or("-".to_owned(), |v| format!("{v:.3}"))));
            }
            out.push('\n');
        }
    }
    if opts.paths.contains(&Path::Reference) && opts.paths.contains(&Path::Bare) {
        out.push_str(&format!("  {:<11}", "ref/bare"));
        for (_, r) in &s.reference_vs_bare {
            out.push_str(&format!("{:>12}", r.map_or("-".to_owned(), |r| format!("{r:.2}"))));
        }
        out.push('\n');
    }
    if opts.paths.contains(&Path::Xdp) && opts.paths.contains(&Path::Reference) {
        for (label, ratios) in [("xdp/ref", &s.xdp_vs_reference_best), ("xdp/ref offer", &s.xdp_vs_reference)] {
            out.push_str(&format!("  {label:<11}"));
            for (_, r) in ratios {
                out.push_str(&format!("{:>12}", r.map_or("-".to_owned(), |r| format!("{r:.2}"))));
            }
            out.push('\n');
        }
        out.push_str(&verdict(s, "xdp", &s.xdp_vs_reference_best));
    }
    if opts.paths.contains(&Path::XdpMaps) && opts.paths.contains(&Path::Reference) {
        out.push_str(&format!("  {:<11}", "xdp-maps/ref"));
        for (_, r) in &s.xdp_maps_vs_reference_best {
            out.push_str(&format!("{:>12}", r.map_or("-".to_owned(), |r| format!("{r:.2}"))));
        }
        out.push('\n');
        out.push_str(&verdict(s, "xdp-maps", &s.xdp_maps_vs_reference_best));
    }
    if opts.paths.contains(&Path::Relay) && opts.paths.contains(&Path::Xdp) {
        out.push_str(&format!("  {:<11}", "xdp/relay"));
        for &f in &opts.flows {
            let get = |p| s.cells.iter().find(|c| c.flows == f && c.path == p).and_then(|c| c.median_best_delivered);
            let r = get(Path::Xdp).zip(get(Path::Relay)).filter(|(_, b)| *b > 0.0).map(|(a, b)| a / b);
            out.push_str(&format!("{:>12}", r.map_or("-".to_owned(), |r| format!("{r:.2}"))));
        }
        out.push('\n');
    }
    if s.cells.iter().any(|c| c.latency_runs > 0) {
        out.push_str(
            "one-way latency at half the path's own ceiling, p50 / p99 us (median over runs; measured by the sink's\n\
             XDP program from each frame's send time: generator, path and veths, no sink process)\n",
        );
        for path in std::iter::once(Path::Drop).chain(opts.paths.iter().copied()) {
            out.push_str(&format!("  {:<11}", path.name()));
            for &f in &opts.flows {
                let c = s.cells.iter().find(|c| c.flows == f && c.path == path);
                let v = c.and_then(|c| Some(format!("{:.0}/{:.0}", c.latency_p50_us?, c.latency_p99_us?)));
                // A space before even the widest (a relay's in ms), so that cells never run together.
                out.push_str(&format!(" {:>11}", v.unwrap_or_else(|| "-".to_owned())));
            }
            out.push('\n');
        }
        if s.xdp_p99_over_kernel_us.iter().any(|(_, d)| d.is_some()) {
            out.push_str(&format!("  {:<11}", "xdp-kernel"));
            for (_, d) in &s.xdp_p99_over_kernel_us {
                out.push_str(&format!("{:>12}", d.map_or("-".to_owned(), |d| format!("{d:+.0}"))));
            }
            out.push('\n');
            let verdicts: Vec<String> = s
                .xdp_p99_over_kernel_us
                .iter()
                .map(|(f, d)| match d {
                    Some(d) if *d <= TARGET_XDP_P99_OVER_KERNEL_US => format!("{f} flows met"),
                    Some(_) => format!("{f} flows NOT met"),
                    None => format!("{f} flows not measured"),
                })
                .collect();
            out.push_str(&format!(
                "  target xdp p99 <= kernel p99 + {TARGET_XDP_P99_OVER_KERNEL_US} us: {}\n",
                verdicts.join(", ")
            ));
        }
    }
    out.push_str(if opts.path_core {
        "  (drop: the generator into a sink on its own veth peer; --path-core: the generator alone on core 0, a0's\n   \
         NAPI (the path's program, its redirect, the sink behind it) and the user-space relay on core 1)\n"
    } else {
        "  (drop: the generator into a sink on its own veth peer; every path's frames are generated, forwarded and\n   \
         counted on the generator's core, so a ceiling is what one core carries of generator + path (the user-space\n   \
         relay on core 1))\n"
    });
    out
}

/// The figure next to the JSON: per path against the flow count (log scale), the best delivered rate, the path's
/// CPU per packet (with `--path-core`) and the latency at half the ceiling (p50 solid, p99 dashed).
pub fn plot(path: &std::path::Path, opts: &Options, s: &Summary) -> anyhow::Result<()> {
    use crate::plot::{Panel, Series};
    let x = |flows: u32| f64::from(flows.max(1)).log10();
    let paths: Vec<Path> = std::iter::once(Path::Drop).chain(opts.paths.iter().copied()).collect();
    let line = |p: Path, f: &dyn Fn(&Cell) -> Option<f64>| -> Vec<(f64, f64)> {
        opts.flows
            .iter()
            .map(|&flows| {
                let v = s.cells.iter().find(|c| c.flows == flows && c.path == p).and_then(f);
                (x(flows), v.unwrap_or(f64::NAN))
            })
            .collect()
    };
    let x_label = "flows, log10 (0 = 1 flow, 3 = 1,000, 5 = 100,000)".to_owned();
    let mut panels = vec![Panel {
        title: "Ceiling: best delivered rate with loss < 0.1 % (median over runs)".into(),
        x_label: x_label.clone(),
        y_label: "Mpps".into(),
        log_y: false,
        series: paths
            .iter()
            .map(|&p| Series::new(p.name(), line(p, &|c| c.median_best_delivered.map(|v| v / 1e6))))
            .collect(),
    }];
    if s.cells.iter().any(|c| c.median_path_cpu_s_per_mpkt.is_some()) {
        panels.push(Panel {
            title: "The path's CPU at its ceiling".into(),
            x_label: x_label.clone(),
            y_label: "CPU-s per Mpkt".into(),
            log_y: true,
            series: paths.iter().map(|&p| Series::new(p.name(), line(p, &|c| c.median_path_cpu_s_per_mpkt))).collect(),
        });
    }
    if s.cells.iter().any(|c| c.latency_runs > 0) {
        let mut series = Vec::new();
        for &p in &paths {
            series.push(Series::new(p.name(), line(p, &|c| c.latency_p50_us)));
            series.push(Series { dashed: true, ..Series::new(p.name(), line(p, &|c| c.latency_p99_us)) });
        }
        panels.push(Panel {
            title: "One-way latency at half the ceiling, in the sink's XDP: p50 solid, p99 dashed".into(),
            x_label,
            y_label: "µs".into(),
            log_y: true,
            series,
        });
    }
    crate::plot::write_svg(path, "sbc-bench media --generator xdp", &panels)
}

/// The target line of one of our XDP paths against the reference, per flow count.
fn verdict(s: &Summary, path: &str, ratios: &[(u32, Option<f64>)]) -> String {
    let verdicts: Vec<String> = ratios
        .iter()
        .map(|(f, r)| {
            let bound = s.cells.iter().any(|c| c.flows == *f && c.generator_bound);
            let v = match r {
                Some(r) if *r >= TARGET_XDP_VS_REFERENCE => "met",
                Some(_) => "NOT met",
                None => "not measured",
            };
            format!("{f} flows {v}{}", if bound { " (a ceiling is the generator's)" } else { "" })
        })
        .collect();
    format!(
        "  target {path} >= {TARGET_XDP_VS_REFERENCE} x reference (median best delivered): {}\n",
        verdicts.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ladder::Step;

    fn ladder(flows: u32, path: Path, passes: &[(u32, bool)]) -> Ladder {
        let steps = passes
            .iter()
            .map(|&(rate, pass)| Step {
                rate,
                pass,
                sent: 1,
                loss_pct: if pass { 0.0 } else { 1.0 },
                delivered_pps: Some(f64::from(rate)),
                ..Step::default()
            })
            .collect();
        let mut l = Ladder {
            run: 1,
            flows,
            path,
            steps,
            ceiling: None,
            capped: false,
            best_delivered_pps: None,
            xdp_share: None,
            warm_up_rounds: 0,
            napi_threads_pinned: 0,
            path_cpu_s_per_mpkt: None,
            error: None,
            latency_step: None,
        };
        l.ceiling = l.steps.iter().filter(|s| s.pass).map(|s| s.rate).max();
        l.best_delivered_pps = l.steps.iter().filter(|s| s.pass).filter_map(|s| s.delivered_pps).reduce(f64::max);
        l
    }

    #[test]
    fn ratios_per_flow_count_and_generator_bound_ceilings() {
        let opts = Options {
            runs: 1,
            step_secs: 1,
            rates: vec![100, 200, 400],
            flows: vec![1, 1000],
            paths: vec![Path::Reference, Path::Xdp, Path::XdpMaps],
            payload: 160,
            relay_binary: None,
            path_core: true,
        };
        let ladders = vec![
            ladder(1, Path::Drop, &[(100, true), (200, true), (400, false)]),
            ladder(1, Path::Reference, &[(100, true), (200, true), (400, false)]),
            ladder(1, Path::Xdp, &[(100, true), (200, false)]),
            ladder(1000, Path::Drop, &[(100, true), (200, true), (400, true)]),
            ladder(1000, Path::Reference, &[(100, true), (200, true), (400, false)]),
            ladder(1000, Path::Xdp, &[(100, true), (200, true), (400, false)]),
            ladder(1000, Path::XdpMaps, &[(100, true), (200, false)]),
        ];
        let s = summarize(&opts, &ladders);
        assert_eq!(s.xdp_vs_reference, vec![(1, Some(0.5)), (1000, Some(1.0))]);
        assert_eq!(s.xdp_vs_reference_best, vec![(1, Some(0.5)), (1000, Some(1.0))]);
        let cell = |f, p| s.cells.iter().find(|c| c.flows == f && c.path == p).expect("cell");
        assert!(cell(1, Path::Reference).generator_bound, "200 of the generator's 200");
        assert!(!cell(1000, Path::Reference).generator_bound, "200 of the generator's 400");
        let t = table(&opts, &s);
        assert!(t.contains("1 flows NOT met (a ceiling is the generator's), 1000 flows met"), "{t}");
        assert_eq!(s.xdp_maps_vs_reference_best, vec![(1, None), (1000, Some(0.5))]);
        assert!(t.contains("target xdp-maps >= 0.9 x reference (median best delivered): 1 flows not measured"), "{t}");
        let svg = std::env::temp_dir().join(format!("live-plot-test-{}.svg", std::process::id()));
        plot(&svg, &opts, &s).expect("the plot");
        let text = std::fs::read_to_string(&svg).expect("written");
        let _ = std::fs::remove_file(&svg);
        assert!(text.contains("<svg") && text.contains("Ceiling"), "an SVG with its panels");
    }
}
