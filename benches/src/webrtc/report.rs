//! The figures of `sbc-bench webrtc`: per run and their medians, the text table and the plot.

use super::media::{Counts, Direction};
use crate::plot::{Panel, Series};
use crate::stats::{median, percentile};
use serde::Serialize;
use std::time::Duration;

/// The clients' core counts as saturated above this share of one core: their figures may then be limited by
/// the bench, not the relay.
pub const CLIENT_SATURATED_SHARE: f64 = 0.9;
/// The media window counts as generator-limited when the senders achieved less than this share of the rate.
pub const MIN_ACHIEVED_SHARE: f64 = 0.9;

/// The handshake phase of one run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Handshakes {
    /// Legs created.
    pub legs: usize,
    /// Handshakes in flight at most.
    pub concurrency: usize,
    /// Handshakes completed.
    pub completed: usize,
    /// Legs that failed (see `failures`).
    pub failed: usize,
    /// The first few reasons.
    pub failures: Vec<String>,
    /// From the first leg's creation to the last handshake's end, seconds.
    pub wall_secs: f64,
    /// `completed / wall_secs`.
    pub per_sec: f64,
    /// The relay's utime + stime over the phase, seconds (creating, handshaking and removing every leg).
    pub relay_cpu_s: f64,
    /// `relay_cpu_s / completed`, milliseconds.
    pub relay_cpu_ms_per_handshake: Option<f64>,
    /// The bench's own CPU (the browsers' side) over the phase, as a share of one core.
    pub client_core_share: f64,
    /// `client_core_share` above [`CLIENT_SATURATED_SHARE`]: the browsers' core, not the relay, may be the limit.
    pub clients_saturated: bool,
    /// Handshake time (relay holds the leg → DTLS complete at the browser), percentiles, milliseconds.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

impl Handshakes {
    /// The figures from the legs' handshake times and failures and the CPU over the phase.
    pub fn new(
        concurrency: usize,
        times: &[Duration],
        failures: Vec<String>,
        wall_secs: f64,
        relay_cpu_s: f64,
        client_cpu_s: f64,
    ) -> Self {
        let ms: Vec<f64> = times.iter().map(|t| t.as_secs_f64() * 1e3).collect();
        let completed = times.len();
        let client_core_share = share(client_cpu_s, wall_secs);
        Self {
            legs: completed + failures.len(),
            concurrency,
            completed,
            failed: failures.len(),
            failures: failures.into_iter().take(5).collect(),
            wall_secs,
            per_sec: if wall_secs > 0.0 { completed as f64 / wall_secs } else { 0.0 },
            relay_cpu_s,
            relay_cpu_ms_per_handshake: (completed > 0).then(|| relay_cpu_s * 1e3 / completed as f64),
            client_core_share,
            clients_saturated: client_core_share > CLIENT_SATURATED_SHARE,
            p50_ms: percentile(&ms, 50.0),
            p99_ms: percentile(&ms, 99.0),
            max_ms: percentile(&ms, 100.0),
        }
    }
}

/// A direction's loss: `1 - received / sent`, percent (100 when nothing was sent).
pub fn loss_pct(d: &Direction) -> f64 {
    if d.sent == 0 {
        100.0
    } else {
        100.0 * d.sent.saturating_sub(d.received) as f64 / d.sent as f64
    }
}

/// `cpu_s` per million of `packets`; `None` without packets.
pub fn per_mpkt(cpu_s: f64, packets: u64) -> Option<f64> {
    (packets > 0).then(|| cpu_s / (packets as f64 / 1e6))
}

fn share(cpu_s: f64, wall_secs: f64) -> f64 {
    if wall_secs > 0.0 {
        cpu_s / wall_secs
    } else {
        0.0
    }
}

/// One media window (WebRTC or plain) of one run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Media {
    /// `webrtc` (browser leg DTLS-SRTP, carrier leg RTP) or `plain` (RTP on both).
    pub path: &'static str,
    /// Calls.
    pub calls: usize,
    /// Offered packets/s, both directions together.
    pub rate: u32,
    /// Browser → carrier (on the WebRTC path the relay decrypts SRTP).
    pub up: Direction,
    pub up_loss_pct: f64,
    /// Carrier → browser (on the WebRTC path the relay encrypts to SRTP).
    pub down: Direction,
    pub down_loss_pct: f64,
    /// Packets sent over the sending time.
    pub achieved_pps: f64,
    /// The senders achieved less than [`MIN_ACHIEVED_SHARE`] of the rate.
    pub generator_limited: bool,
    /// The relay's utime + stime over the window, seconds.
    pub relay_cpu_s: f64,
    /// `relay_cpu_s` per million packets received intact at the other side.
    pub relay_cpu_s_per_mpkt: Option<f64>,
    /// The bench's CPU over the window as a share of one core.
    pub client_core_share: f64,
    /// `client_core_share` above [`CLIENT_SATURATED_SHARE`].
    pub clients_saturated: bool,
    /// The relay's own count of packets it dropped (SRTP failures, foreign sources, no target), both legs.
    pub relay_dropped: u64,
    /// From the first send to the end of the drain, seconds.
    pub wall_secs: f64,
}

impl Media {
    /// The figures of a window from its counts and the CPU around it.
    pub fn new(
        path: &'static str,
        calls: usize,
        rate: u32,
        counts: &Counts,
        relay_cpu_s: f64,
        client_cpu_s: f64,
        relay_dropped: u64,
    ) -> Self {
        let sent = counts.up.sent + counts.down.sent;
        let achieved_pps = if counts.send_secs > 0.0 { sent as f64 / counts.send_secs } else { 0.0 };
        let client_core_share = share(client_cpu_s, counts.wall_secs);
        Self {
            path,
            calls,
            rate,
            up: counts.up,
            up_loss_pct: loss_pct(&counts.up),
            down: counts.down,
            down_loss_pct: loss_pct(&counts.down),
            achieved_pps,
            generator_limited: achieved_pps < MIN_ACHIEVED_SHARE * f64::from(rate),
            relay_cpu_s,
            relay_cpu_s_per_mpkt: per_mpkt(relay_cpu_s, counts.up.received + counts.down.received),
            client_core_share,
            clients_saturated: client_core_share > CLIENT_SATURATED_SHARE,
            relay_dropped,
            wall_secs: counts.wall_secs,
        }
    }
}

/// One complete run.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// 1-based.
    pub run: u32,
    pub handshakes: Handshakes,
    pub webrtc: Media,
    pub plain: Media,
    /// `webrtc.relay_cpu_s_per_mpkt / plain.relay_cpu_s_per_mpkt`: what terminating DTLS-SRTP costs per packet.
    pub cpu_ratio_webrtc_over_plain: Option<f64>,
}

/// `webrtc / plain` CPU per million packets.
pub fn cpu_ratio(webrtc: &Media, plain: &Media) -> Option<f64> {
    let (w, p) = (webrtc.relay_cpu_s_per_mpkt?, plain.relay_cpu_s_per_mpkt?);
    (p > 0.0).then(|| w / p)
}

/// Medians over the runs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub runs: usize,
    pub handshakes_per_sec: Option<f64>,
    pub relay_cpu_ms_per_handshake: Option<f64>,
    pub handshake_p50_ms: Option<f64>,
    pub handshake_p99_ms: Option<f64>,
    /// Failed handshakes over every run.
    pub handshakes_failed: usize,
    /// In how many runs the clients' core was saturated during the handshakes.
    pub handshake_runs_clients_saturated: usize,
    pub webrtc_relay_cpu_s_per_mpkt: Option<f64>,
    pub plain_relay_cpu_s_per_mpkt: Option<f64>,
    /// The median of the runs' ratios (each from one relay, both windows back to back).
    pub cpu_ratio_webrtc_over_plain: Option<f64>,
    /// The worst loss of any direction of any run, percent.
    pub webrtc_worst_loss_pct: Option<f64>,
    pub plain_worst_loss_pct: Option<f64>,
    /// Runs where a media window was generator-limited or its clients' core saturated.
    pub media_runs_client_limited: usize,
}

/// The medians of `runs`.
pub fn summarize(runs: &[Run]) -> Summary {
    let med = |f: &dyn Fn(&Run) -> Option<f64>| median(&runs.iter().filter_map(f).collect::<Vec<_>>());
    let worst =
        |f: &dyn Fn(&Run) -> &Media| runs.iter().map(|r| f(r).up_loss_pct.max(f(r).down_loss_pct)).reduce(f64::max);
    let limited = |m: &Media| m.generator_limited || m.clients_saturated;
    Summary {
        runs: runs.len(),
        handshakes_per_sec: med(&|r| Some(r.handshakes.per_sec)),
        relay_cpu_ms_per_handshake: med(&|r| r.handshakes.relay_cpu_ms_per_handshake),
        handshake_p50_ms: med(&|r| r.handshakes.p50_ms),
        handshake_p99_ms: med(&|r| r.handshakes.p99_ms),
        handshakes_failed: runs.iter().map(|r| r.handshakes.failed).sum(),
        handshake_runs_clients_saturated: runs.iter().filter(|r| r.handshakes.clients_saturated).count(),
        webrtc_relay_cpu_s_per_mpkt: med(&|r| r.webrtc.relay_cpu_s_per_mpkt),
        plain_relay_cpu_s_per_mpkt: med(&|r| r.plain.relay_cpu_s_per_mpkt),
        cpu_ratio_webrtc_over_plain: med(&|r| r.cpu_ratio_webrtc_over_plain),
        webrtc_worst_loss_pct: worst(&|r| &r.webrtc),
        plain_worst_loss_pct: worst(&|r| &r.plain),
        media_runs_client_limited: runs.iter().filter(|r| limited(&r.webrtc) || limited(&r.plain)).count(),
    }
}

fn f(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".to_owned(), |v| format!("{v:.digits$}"))
}

/// One progress line per run.
pub fn progress(runs: u32, r: &Run) -> String {
    let h = &r.handshakes;
    format!(
        "[run {}/{runs}] handshakes: {} of {} in {:.2} s = {:.0}/s, relay {} ms CPU each, p50/p99 {}/{} ms, \
         clients' core {:.0} %{} | webrtc: {} s/Mpkt, loss up/down {:.3}/{:.3} % | plain: {} s/Mpkt, loss \
         {:.3}/{:.3} % | ratio {}",
        r.run,
        h.completed,
        h.legs,
        h.wall_secs,
        h.per_sec,
        f(h.relay_cpu_ms_per_handshake, 2),
        f(h.p50_ms, 1),
        f(h.p99_ms, 1),
        h.client_core_share * 100.0,
        if h.clients_saturated { " (SATURATED)" } else { "" },
        f(r.webrtc.relay_cpu_s_per_mpkt, 2),
        r.webrtc.up_loss_pct,
        r.webrtc.down_loss_pct,
        f(r.plain.relay_cpu_s_per_mpkt, 2),
        r.plain.up_loss_pct,
        r.plain.down_loss_pct,
        f(r.cpu_ratio_webrtc_over_plain, 2),
    )
}

/// The text table: every run, then the medians, then what limited the figures.
pub fn table(opts: &super::Options, runs: &[Run], s: &Summary, pinned: bool) -> String {
    let mut t = format!(
        "sbc-bench webrtc: {} handshakes ({} in flight), then {} calls at {} pps for {} s, WebRTC then plain (order \
         alternates by run), media-relay {}\n",
        opts.legs,
        opts.concurrency,
        opts.calls,
        opts.rate,
        opts.media_secs,
        if pinned { "on core 1, the bench's browsers and carriers on core 0" } else { "unpinned (fewer than 2 cores)" },
    );
    t += "run  hs/s   relay ms/hs  p50 ms  p99 ms  failed  clients%  | webrtc s/Mpkt  plain s/Mpkt  ratio  \
          loss webrtc up/down %  loss plain up/down %\n";
    for r in runs {
        let h = &r.handshakes;
        t += &format!(
            "{:<4} {:<6.0} {:<12} {:<7} {:<7} {:<7} {:<9} | {:<14} {:<13} {:<6} {:>7.3}/{:<12.3} {:>7.3}/{:.3}\n",
            r.run,
            h.per_sec,
            f(h.relay_cpu_ms_per_handshake, 2),
            f(h.p50_ms, 1),
            f(h.p99_ms, 1),
            h.failed,
            format!("{:.0}{}", h.client_core_share * 100.0, if h.clients_saturated { "!" } else { "" }),
            f(r.webrtc.relay_cpu_s_per_mpkt, 2),
            f(r.plain.relay_cpu_s_per_mpkt, 2),
            f(r.cpu_ratio_webrtc_over_plain, 2),
            r.webrtc.up_loss_pct,
            r.webrtc.down_loss_pct,
            r.plain.up_loss_pct,
            r.plain.down_loss_pct,
        );
    }
    t += &format!(
        "median: {} handshakes/s, {} ms relay CPU per handshake, p50/p99 {}/{} ms, {} failed in all; relay CPU per \
         million packets: webrtc {} s, plain {} s, webrtc/plain {}x; worst loss webrtc {} %, plain {} %\n",
        f(s.handshakes_per_sec, 0),
        f(s.relay_cpu_ms_per_handshake, 2),
        f(s.handshake_p50_ms, 1),
        f(s.handshake_p99_ms, 1),
        s.handshakes_failed,
        f(s.webrtc_relay_cpu_s_per_mpkt, 2),
        f(s.plain_relay_cpu_s_per_mpkt, 2),
        f(s.cpu_ratio_webrtc_over_plain, 2),
        f(s.webrtc_worst_loss_pct, 3),
        f(s.plain_worst_loss_pct, 3),
    );
    if s.handshake_runs_clients_saturated > 0 {
        t += &format!(
            "NOTE: the browsers' core was above {:.0} % in {} of {} handshake phases: handshakes/s is then a floor \
             (the bench's DTLS server side costs about as much as the relay's client side); relay CPU per handshake \
             still holds\n",
            CLIENT_SATURATED_SHARE * 100.0,
            s.handshake_runs_clients_saturated,
            s.runs
        );
    }
    if s.media_runs_client_limited > 0 {
        t += &format!(
            "NOTE: in {} of {} runs a media window's senders missed 90 % of the rate or their core was above {:.0} %\n",
            s.media_runs_client_limited,
            s.runs,
            CLIENT_SATURATED_SHARE * 100.0
        );
    }
    t += "(CPU: media-relay's utime+stime from /proc/PID/stat, clock ticks of 10 ms; the handshake figure includes \
          creating and removing each leg over the control protocol; the machine may have been shared)";
    t
}

/// Per run: handshakes/s and relay ms per handshake; relay CPU per million packets, WebRTC and plain.
pub fn plot(path: &std::path::Path, runs: &[Run]) -> anyhow::Result<()> {
    let points = |v: &dyn Fn(&Run) -> Option<f64>| -> Vec<(f64, f64)> {
        runs.iter().filter_map(|r| Some((f64::from(r.run), v(r)?))).collect()
    };
    let panels = [
        Panel {
            title: "DTLS handshakes per second (relay as DTLS client, bench browsers as servers)".into(),
            x_label: "run".into(),
            y_label: "handshakes/s".into(),
            log_y: false,
            series: vec![Series::new("handshakes/s", points(&|r| Some(r.handshakes.per_sec)))],
        },
        Panel {
            title: "relay CPU per handshake".into(),
            x_label: "run".into(),
            y_label: "ms".into(),
            log_y: false,
            series: vec![Series::new("relay ms/handshake", points(&|r| r.handshakes.relay_cpu_ms_per_handshake))],
        },
        Panel {
            title: "relay CPU per million packets: DTLS-SRTP <-> RTP next to RTP <-> RTP".into(),
            x_label: "run".into(),
            y_label: "CPU s / Mpkt".into(),
            log_y: false,
            series: vec![
                Series::new("webrtc", points(&|r| r.webrtc.relay_cpu_s_per_mpkt)),
                Series::new("plain", points(&|r| r.plain.relay_cpu_s_per_mpkt)),
            ],
        },
    ];
    crate::plot::write_svg(path, "sbc-bench webrtc", &panels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(up: (u64, u64), down: (u64, u64), send_secs: f64) -> Counts {
        Counts {
            up: Direction { sent: up.0, received: up.1, bad: 0 },
            down: Direction { sent: down.0, received: down.1, bad: 0 },
            send_secs,
            wall_secs: send_secs + 0.5,
        }
    }

    #[test]
    fn media_figures_give_loss_per_direction_cpu_per_million_and_the_ratio() {
        let webrtc = Media::new("webrtc", 100, 20_000, &counts((50_000, 49_950), (50_000, 50_000), 5.0), 1.5, 0.3, 0);
        assert!((webrtc.up_loss_pct - 0.1).abs() < 1e-9);
        assert_eq!(webrtc.down_loss_pct, 0.0);
        assert_eq!(webrtc.achieved_pps, 20_000.0);
        assert!(!webrtc.generator_limited);
        // 1.5 s over 99 950 packets.
        assert!((webrtc.relay_cpu_s_per_mpkt.unwrap() - 1.5 / 0.09995).abs() < 1e-9);
        let plain = Media::new("plain", 100, 20_000, &counts((50_000, 50_000), (50_000, 50_000), 5.0), 0.5, 0.3, 0);
        assert_eq!(plain.relay_cpu_s_per_mpkt, Some(5.0));
        assert!((cpu_ratio(&webrtc, &plain).unwrap() - 15.0 / 0.9995 / 5.0).abs() < 1e-9);
        let slow = Media::new("plain", 100, 20_000, &counts((40_000, 40_000), (40_000, 40_000), 5.0), 0.5, 5.2, 0);
        assert!(slow.generator_limited, "16 000 of 20 000 pps");
        assert!(slow.clients_saturated, "5.2 s of CPU in 5.5 s");
        let none = Media::new("plain", 1, 100, &counts((0, 0), (0, 0), 0.0), 0.0, 0.0, 0);
        assert_eq!((none.up_loss_pct, none.relay_cpu_s_per_mpkt), (100.0, None));
        assert_eq!(cpu_ratio(&webrtc, &none), None);
    }

    #[test]
    fn handshake_figures_count_failures_and_take_percentiles() {
        let times: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let h = Handshakes::new(16, &times, vec!["timeout".into(); 7], 2.0, 0.4, 1.9);
        assert_eq!((h.legs, h.completed, h.failed, h.failures.len()), (107, 100, 7, 5));
        assert_eq!(h.per_sec, 50.0);
        assert!((h.relay_cpu_ms_per_handshake.unwrap() - 4.0).abs() < 1e-9);
        assert_eq!((h.p50_ms, h.p99_ms, h.max_ms), (Some(50.0), Some(99.0), Some(100.0)));
        assert!(h.clients_saturated, "95 % of a core");
        let none = Handshakes::new(16, &[], vec![], 1.0, 0.1, 0.1);
        assert_eq!((none.relay_cpu_ms_per_handshake, none.p50_ms, none.clients_saturated), (None, None, false));
    }

    #[test]
    fn the_summary_takes_medians_of_the_runs_and_the_worst_loss() {
        let run = |n: u32, hs: f64, w: f64, p: f64, loss: u64| {
            let c = counts((10_000, 10_000 - loss), (10_000, 10_000), 1.0);
            let mut webrtc = Media::new("webrtc", 1, 20_000, &c, w * 0.02, 0.1, 0);
            let plain =
                Media::new("plain", 1, 20_000, &counts((10_000, 10_000), (10_000, 10_000), 1.0), p * 0.02, 0.1, 0);
            webrtc.relay_cpu_s_per_mpkt = Some(w);
            let handshakes = Handshakes::new(16, &[Duration::from_millis(5)], vec![], 1.0 / hs, 0.001, 0.1);
            let cpu_ratio_webrtc_over_plain = cpu_ratio(&webrtc, &plain);
            Run { run: n, handshakes, webrtc, plain, cpu_ratio_webrtc_over_plain }
        };
        let runs = [run(1, 300.0, 3.0, 1.0, 0), run(2, 100.0, 4.0, 1.0, 20), run(3, 200.0, 2.0, 1.0, 0)];
        let s = summarize(&runs);
        assert_eq!(s.runs, 3);
        assert!((s.handshakes_per_sec.unwrap() - 200.0).abs() < 1e-6);
        assert_eq!(s.webrtc_relay_cpu_s_per_mpkt, Some(3.0));
        assert!((s.cpu_ratio_webrtc_over_plain.unwrap() - 3.0).abs() < 1e-6);
        assert!((s.webrtc_worst_loss_pct.unwrap() - 0.2).abs() < 1e-9);
        assert_eq!(s.plain_worst_loss_pct, Some(0.0));
        assert_eq!(s.handshakes_failed, 0);
        assert_eq!(summarize(&[]).handshakes_per_sec, None);
    }
}
