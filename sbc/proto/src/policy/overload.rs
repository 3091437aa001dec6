//! Overload control: how many new calls to take when the SBC cannot keep up (RFC 6357 §4, RFC 7339's `loss`
//! algorithm as the model).
//!
//! The signal is how long new requests waited in the driver's queue before the core got them (the driver
//! measures it for every message of the low-priority queue and feeds it in with [`Overload::on_delay`]), and
//! optionally the process's CPU ([`Overload::on_cpu`]). As in CoDel (RFC 8289), it is the *least* wait of an
//! interval that counts: a burst or a scheduling hiccup makes some messages wait, a standing queue makes every one
//! of them wait, and only the latter is overload. A queue that no new request leaves is overloaded too, though no
//! wait is measured: when responses and in-dialog requests (which go first) take all the time, or the queue is full
//! and drops new requests, the driver says so with [`Overload::on_backlog`]; without it the least wait of such an
//! interval would be that of no request at all, and admissions would rise just when the SBC falls furthest behind
//! (congestion collapse). Every [`Overload::interval`] the admission fraction is adjusted:
//! cut by a fifth while the least wait of the interval is over the target (or the CPU over its limit), raised by
//! a tenth of the whole while it is not (additive increase, multiplicative decrease: it settles just under the
//! capacity instead of oscillating between all and nothing). [`Overload::admit`] spreads the admitted fraction
//! evenly over the new calls, deterministically.
//!
//! Refused calls get 503 with Retry-After from the core, stateless and cheap, while responses and in-dialog
//! requests travel the driver's high-priority queue and are never refused here: calls already up keep working.

use std::time::{Duration, Instant};

/// Settings (`[overload]` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OverloadConfig {
    /// Whether new calls are ever refused (off: never; for measuring what overload does without it).
    pub enabled: bool,
    /// The least wait of new requests in the driver's queue over an interval beyond which the SBC counts as
    /// overloaded (a standing queue).
    pub queue_delay: Duration,
    /// Process CPU (1.0 = one core) above which the SBC counts as overloaded; `None`: not used.
    pub cpu: Option<f64>,
    /// Seconds in the Retry-After of the 503s.
    pub retry_after: u32,
    /// How often the admission fraction is adjusted.
    pub interval: Duration,
    /// The least fraction admitted even in the worst overload (so the SBC keeps measuring real calls).
    pub floor: f64,
}

impl Default for OverloadConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            queue_delay: Duration::from_millis(20),
            cpu: None,
            retry_after: 2,
            interval: Duration::from_millis(100),
            floor: 0.02,
        }
    }
}

/// The overload state. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Overload {
    config: OverloadConfig,
    fraction: f64,
    credit: f64,
    /// The least wait seen this interval (`None`: no new request came).
    least_delay: Option<Duration>,
    /// New requests were dropped at the full queue, or left waiting in it, this interval.
    backlog: bool,
    cpu: f64,
    next_adjust: Option<Instant>,
}

impl Overload {
    /// Not overloaded: every call admitted.
    pub fn new(config: OverloadConfig) -> Self {
        Self { config, fraction: 1.0, credit: 0.0, least_delay: None, backlog: false, cpu: 0.0, next_adjust: None }
    }

    /// The settings.
    pub fn config(&self) -> &OverloadConfig {
        &self.config
    }

    /// How long the adjustment interval is.
    pub fn interval(&self) -> Duration {
        self.config.interval
    }

    /// A new request waited `delay` in the queue, seen at `now`.
    pub fn on_delay(&mut self, now: Instant, delay: Duration) {
        self.adjust(now);
        self.least_delay = Some(self.least_delay.map_or(delay, |d| d.min(delay)));
    }

    /// At `now`, new requests were dropped because the queue was full, or the oldest one has waited in it for
    /// `waited` without being served: overload, whatever the delays of the requests that did get through.
    pub fn on_backlog(&mut self, now: Instant, waited: Duration) {
        self.adjust(now);
        if waited > self.config.queue_delay {
            self.backlog = true;
        }
    }

    /// The process used `cpu` cores' worth of CPU over the last sampling period.
    pub fn on_cpu(&mut self, cpu: f64) {
        self.cpu = cpu;
    }

    /// Adjusts the fraction if an interval has passed (also called on every [`Overload::on_delay`]).
    pub fn adjust(&mut self, now: Instant) {
        if !self.config.enabled {
            return;
        }
        let Some(due) = self.next_adjust else {
            self.next_adjust = Some(now + self.config.interval);
            return;
        };
        if now < due {
            return;
        }
        let queued = self.backlog || self.least_delay.is_some_and(|d| d > self.config.queue_delay);
        let hot = queued || self.config.cpu.is_some_and(|c| self.cpu > c);
        self.fraction = if hot { (self.fraction * 0.8).max(self.config.floor) } else { (self.fraction + 0.1).min(1.0) };
        self.least_delay = None;
        self.backlog = false;
        self.next_adjust = Some(now + self.config.interval);
    }

    /// Whether to take this new call.
    pub fn admit(&mut self) -> bool {
        if self.fraction >= 1.0 {
            return true;
        }
        self.credit += self.fraction;
        if self.credit >= 1.0 {
            self.credit -= 1.0;
            true
        } else {
            false
        }
    }

    /// The fraction of new calls admitted now (1.0: not overloaded).
    pub fn fraction(&self) -> f64 {
        self.fraction
    }

    /// Whether new calls are being refused.
    pub fn overloaded(&self) -> bool {
        self.fraction < 1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn delay_over_target_cuts_admissions_and_calm_restores_them() {
        let mut o = Overload::new(OverloadConfig::default());
        let t0 = Instant::now();
        o.on_delay(t0, ms(1));
        assert!(!o.overloaded());
        // One second of 50 ms queueing: ten cuts of a fifth.
        for i in 1..=10 {
            o.on_delay(t0 + ms(100 * i), ms(50));
            o.on_delay(t0 + ms(100 * i + 1), ms(50));
        }
        let f = o.fraction();
        assert!(f < 0.2 && f > 0.05, "after 1 s of overload: {f}");
        let admitted = (0..1000).filter(|_| o.admit()).count();
        assert!((admitted as f64 - 1000.0 * f).abs() <= 1.0, "admissions follow the fraction: {admitted} vs {f}");
        // Calm again: back to all within a second.
        for i in 11..=21 {
            o.on_delay(t0 + ms(100 * i), ms(2));
        }
        assert!(!o.overloaded(), "recovered: {}", o.fraction());
        assert!((0..100).all(|_| o.admit()));
    }

    #[test]
    fn a_burst_that_leaves_some_requests_unqueued_is_not_overload() {
        let mut o = Overload::new(OverloadConfig::default());
        let t0 = Instant::now();
        for i in 0..50 {
            // Every interval: a few requests waited 80 ms behind a hiccup, one went straight through.
            o.on_delay(t0 + ms(10 * i), if i % 5 == 0 { ms(1) } else { ms(80) });
        }
        assert!(!o.overloaded(), "admission {}", o.fraction());
    }

    #[test]
    fn a_queue_left_unserved_or_full_is_overload_though_no_wait_was_measured() {
        let mut o = Overload::new(OverloadConfig::default());
        let t0 = Instant::now();
        o.on_delay(t0, ms(1));
        // Five intervals in which no new request got through (responses took all the time) while the oldest one
        // waited 30 ms and more, or requests were dropped at the full queue (reported as an infinite wait).
        for i in 1..=5 {
            o.on_backlog(t0 + ms(100 * i), if i % 2 == 0 { Duration::MAX } else { ms(30 + 10 * i) });
        }
        o.adjust(t0 + ms(600));
        let f = o.fraction();
        assert!((f - 0.8f64.powi(5)).abs() < 1e-9, "cut by a fifth five times: {f}");
        // A short wait behind a burst is not a backlog; an interval with neither is calm.
        o.on_backlog(t0 + ms(650), ms(10));
        o.adjust(t0 + ms(700));
        assert!((o.fraction() - (0.8f64.powi(5) + 0.1)).abs() < 1e-9, "raised by a tenth: {}", o.fraction());
    }

    #[test]
    fn an_interval_without_new_requests_is_calm() {
        let mut o = Overload::new(OverloadConfig::default());
        let t0 = Instant::now();
        for i in 0..5 {
            o.on_delay(t0 + ms(100 * i), ms(60));
        }
        let cut = o.fraction();
        assert!(cut < 1.0);
        // Idle: only the driver's periodic adjustments, no request, no backlog.
        o.adjust(t0 + ms(500));
        for i in 6..=8 {
            o.adjust(t0 + ms(100 * i));
        }
        assert!(o.fraction() > cut + 0.1, "{} after {cut}", o.fraction());
    }

    #[test]
    fn the_floor_keeps_a_trickle_of_calls() {
        let mut o = Overload::new(OverloadConfig::default());
        let t0 = Instant::now();
        for i in 0..100 {
            o.on_delay(t0 + ms(100 * i), ms(500));
        }
        assert_eq!(o.fraction(), 0.02);
        assert_eq!((0..1000).filter(|_| o.admit()).count(), 20);
    }

    #[test]
    fn cpu_over_its_limit_counts_as_overload() {
        let mut o = Overload::new(OverloadConfig { cpu: Some(0.9), ..OverloadConfig::default() });
        let t0 = Instant::now();
        o.on_cpu(0.95);
        o.adjust(t0);
        o.adjust(t0 + ms(100));
        assert!(o.overloaded());
    }
}
