//! `sbc-bench media --local --relay-threads 1,2`: the user-space relay path measured once per thread count in the
//! same run (ladders interleaved), each with `media-relay --threads N` and one session per stream, stream i's
//! session on thread i mod N; then the ceilings and the packets per relay-CPU-second side by side, as ratios to
//! the first count given.
//!
//! Placement (pinned when the machine has 2 cores or more): one thread on [`RELAY_CORE`] as in the plain `relay`
//! path; N threads on cores 0..N-1, so on a 2-core machine the second thread shares core 0 with the senders, the
//! sinks and the softirqs: its ceiling then measures what the machine as a whole carries, and the packets per
//! CPU-second whether the threads cost more per packet. Both are reported.

use crate::media::{Ladder, Options, Step, Target, RELAY_CORE};
use crate::stats::median;
use relay_proto::control::SessionId;
use serde::Serialize;
use std::num::NonZeroUsize;

/// The `taskset -c` list of a relay with `threads` threads (`None`: the relay's default, pinned as one).
pub fn relay_cores(threads: Option<usize>) -> String {
    match threads {
        Some(n) if n > 1 => {
            let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
            format!("0-{}", n.min(cores) - 1)
        }
        _ => RELAY_CORE.to_string(),
    }
}

/// The session of each of a step's `streams`, numbered from `*next` on (which moves past them): one session for
/// all without `threads`, else one per stream, stream i's on thread i mod N (as [`relay_proto::threads`] places
/// it), so every thread carries a share of the load.
pub fn step_sessions(next: &mut u64, streams: u16, threads: Option<usize>) -> Vec<SessionId> {
    let Some(n) = threads.and_then(NonZeroUsize::new) else {
        *next += 1;
        return vec![SessionId(*next - 1); usize::from(streams)];
    };
    (0..usize::from(streams))
        .map(|i| {
            let s = (*next..).map(SessionId).find(|&s| relay_proto::threads::thread_of(s, n) == i % n.get());
            let s = s.expect("some number lands on every thread");
            *next = s.0 + 1;
            s
        })
        .collect()
}

/// One thread count over all runs.
#[derive(Debug, Clone, Serialize)]
pub struct ThreadsRow {
    pub threads: usize,
    /// Per run (`None`: no step passed), and the median (a run with none counts as 0).
    pub ceilings: Vec<Option<u32>>,
    pub median_ceiling: Option<f64>,
    /// Median over runs of the highest delivered pps of a step with loss < 0.1 %.
    pub median_best_delivered_pps: Option<f64>,
    /// At the common rate, medians over runs: relay process CPU-s per Mpkt (all its threads), and its inverse.
    pub cpu_s_per_mpkt: Option<f64>,
    pub pkts_per_cpu_s: Option<f64>,
    /// At the common rate: busy time of the whole machine's softirqs per Mpkt (the senders', veths', sinks').
    pub softirq_s_per_mpkt: Option<f64>,
    /// Ratios to the first row: ceiling, best delivered, packets per CPU-second.
    pub ceiling_ratio: Option<f64>,
    pub best_delivered_ratio: Option<f64>,
    pub pkts_per_cpu_s_ratio: Option<f64>,
}

/// The comparison of the thread counts.
#[derive(Debug, Clone, Serialize)]
pub struct ThreadsComparison {
    /// The highest ladder rate at or below every count's median ceiling (else the first rate): where CPU per
    /// packet is compared.
    pub common_rate: Option<u32>,
    pub rows: Vec<ThreadsRow>,
}

/// The comparison of the `relay` ladders of `opts.relay_threads` (`None` without the option).
pub fn compare(opts: &Options, ladders: &[Ladder]) -> Option<ThreadsComparison> {
    if opts.relay_threads.is_empty() {
        return None;
    }
    let of = |n: usize| ladders.iter().filter(move |l| l.target == Target::Relay && l.threads == Some(n));
    let median_ceiling = |n: usize| median(&of(n).map(|l| f64::from(l.ceiling.unwrap_or(0))).collect::<Vec<_>>());
    let floor = opts.relay_threads.iter().map(|&n| median_ceiling(n).unwrap_or(0.0)).fold(f64::INFINITY, f64::min);
    let common_rate =
        opts.rates.iter().copied().filter(|&r| f64::from(r) <= floor).max().or(opts.rates.first().copied());
    let at = |n: usize, f: fn(&Step) -> Option<f64>| {
        median(
            &of(n)
                .filter_map(|l| l.steps.iter().find(|s| Some(s.rate) == common_rate && s.error.is_none()))
                .filter_map(f)
                .collect::<Vec<_>>(),
        )
    };
    let mut rows: Vec<ThreadsRow> = opts
        .relay_threads
        .iter()
        .map(|&n| {
            let cpu = at(n, |s| s.relay_cpu_s_per_mpkt);
            ThreadsRow {
                threads: n,
                ceilings: of(n).map(|l| l.ceiling).collect(),
                median_ceiling: median_ceiling(n),
                median_best_delivered_pps: median(
                    &of(n).map(|l| l.best_delivered_pps.unwrap_or(0.0)).collect::<Vec<_>>(),
                ),
                cpu_s_per_mpkt: cpu,
                pkts_per_cpu_s: cpu.filter(|&c| c > 0.0).map(|c| 1e6 / c),
                softirq_s_per_mpkt: at(n, |s| s.softirq_s_per_mpkt),
                ceiling_ratio: None,
                best_delivered_ratio: None,
                pkts_per_cpu_s_ratio: None,
            }
        })
        .collect();
    let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).filter(|&(_, b)| b > 0.0).map(|(a, b)| a / b);
    let base = rows[0].clone();
    for r in &mut rows {
        r.ceiling_ratio = ratio(r.median_ceiling, base.median_ceiling);
        r.best_delivered_ratio = ratio(r.median_best_delivered_pps, base.median_best_delivered_pps);
        r.pkts_per_cpu_s_ratio = ratio(r.pkts_per_cpu_s, base.pkts_per_cpu_s);
    }
    Some(ThreadsComparison { common_rate, rows })
}

/// The comparison as printed at the end.
pub fn table(c: &ThreadsComparison) -> String {
    let f = |v: Option<f64>, d: usize| v.map_or("-".to_owned(), |v| format!("{v:.d$}"));
    let mut out = format!(
        "relay path by forwarding threads (ratios to {} thread(s); CPU per packet at {} pps, relay process time of \
         all its threads):\n  threads  ceilings (per run)   median ceiling  best delivered  pkts/CPU-s  softirq \
         s/Mpkt  ceiling x  delivered x  pkts/CPU-s x\n",
        c.rows.first().map_or(0, |r| r.threads),
        c.common_rate.map_or("-".to_owned(), |r| r.to_string()),
    );
    for r in &c.rows {
        let ceilings = r.ceilings.iter().map(|c| c.map_or("-".to_owned(), |c| c.to_string())).collect::<Vec<_>>();
        out.push_str(&format!(
            "  {:>7}  {:<19}  {:>14}  {:>14}  {:>10}  {:>14}  {:>9}  {:>11}  {:>12}\n",
            r.threads,
            ceilings.join(","),
            f(r.median_ceiling, 0),
            f(r.median_best_delivered_pps, 0),
            f(r.pkts_per_cpu_s, 0),
            f(r.softirq_s_per_mpkt, 2),
            f(r.ceiling_ratio, 2),
            f(r.best_delivered_ratio, 2),
            f(r.pkts_per_cpu_s_ratio, 2),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_session_per_step_without_threads_one_per_stream_on_its_thread_with() {
        let mut next = 1;
        assert_eq!(step_sessions(&mut next, 3, None), vec![SessionId(1); 3]);
        assert_eq!(next, 2);
        let two = NonZeroUsize::new(2).unwrap();
        let s = step_sessions(&mut next, 4, Some(2));
        let threads: Vec<usize> = s.iter().map(|&s| relay_proto::threads::thread_of(s, two)).collect();
        assert_eq!(threads, [0, 1, 0, 1]);
        assert!(s.windows(2).all(|w| w[0] < w[1]), "distinct, ascending: {s:?}");
        assert!(s[0].0 >= 2 && next == s[3].0 + 1);
    }

    #[test]
    fn one_thread_is_pinned_like_the_relay_path() {
        assert_eq!(relay_cores(None), RELAY_CORE.to_string());
        assert_eq!(relay_cores(Some(1)), RELAY_CORE.to_string());
        assert!(relay_cores(Some(2)).starts_with("0-"));
    }
}
