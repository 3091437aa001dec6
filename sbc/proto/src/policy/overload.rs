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
//! cut while the least wait of the interval is over the target (or the CPU over its limit), raised while it is
//! not (additive increase, multiplicative decrease: it settles just under the capacity instead of oscillating
//! between all and nothing). The cut is as deep as the queue is long, target over least wait, between a fifth and
//! a half: a sudden surge (3x the capacity) is brought under in a few intervals, before its queue costs the calls
//! taken their post-dial delay, while a wait just over the target is trimmed gently. The raise is a tenth of the
//! whole when the queue is clearly calm (the least wait under a quarter of the target, or no new request: the load
//! fell, recover fast) and a fiftieth near the target (probing the capacity without overshooting it). [`Overload::admit`] spreads the admitted fraction
//! evenly over the new calls, deterministically.
//!
//! The admitted share works on the rate; a call that still waited longer than [`OverloadConfig::max_wait`] (a
//! burst that came before the share was cut, a backlog being drained) is refused when it reaches the core
//! ([`Overload::too_late`]), so the calls taken are taken quickly: the post-dial delay of an accepted call is bounded
//! by that wait plus its own handling, whatever the queue behind it.
//!
//! Refused calls get 503 with Retry-After, stateless and cheap, while responses and in-dialog requests travel the
//! driver's high-priority queue and are never refused here: calls already up keep working. Whether a call is
//! admitted depends only on the fraction and its Call-ID ([`admits`]), so the UDP transport can refuse it before it
//! is queued at all (through the [`AdmissionGate`] the driver publishes the fraction to, off the driver's core)
//! and the core gives the same answer to what gets through, and to a retransmission of the same INVITE.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Whether a new call with this Call-ID is admitted while the admitted share is `fraction`: a hash of the Call-ID
/// against the share, so every copy of the call's INVITE gets the same answer wherever it is asked.
pub fn admits(fraction: f64, call_id: &[u8]) -> bool {
    if fraction >= 1.0 {
        return true;
    }
    // FNV-1a, then a SplitMix64 finish so that Call-IDs that differ in their last bytes spread over the whole range.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in call_id {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    ((h >> 11) as f64 / (1u64 << 53) as f64) < fraction
}

/// The admitted share, published by the driver for the transports (lock-free: read for every new INVITE).
#[derive(Debug)]
pub struct AdmissionGate(AtomicU32);

impl Default for AdmissionGate {
    fn default() -> Self {
        Self(AtomicU32::new(PPM))
    }
}

const PPM: u32 = 1_000_000;

impl AdmissionGate {
    /// Everything admitted.
    pub fn new() -> Self {
        Self::default()
    }

    /// The share admitted from now on.
    pub fn publish(&self, fraction: f64) {
        self.0.store((fraction.clamp(0.0, 1.0) * f64::from(PPM)) as u32, Ordering::Relaxed);
    }

    /// The share admitted now.
    pub fn fraction(&self) -> f64 {
        f64::from(self.0.load(Ordering::Relaxed)) / f64::from(PPM)
    }

    /// Whether a new call with this Call-ID is admitted now ([`admits`]).
    pub fn admits(&self, call_id: &[u8]) -> bool {
        admits(self.fraction(), call_id)
    }
}

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
    /// The longest a new call's INVITE may have waited (socket buffer and driver queue) and still be taken: one
    /// that waited longer is refused with 503 when it reaches the core, whatever the admitted share.
    pub max_wait: Duration,
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
            max_wait: Duration::from_millis(100),
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
    /// The least wait seen this interval (`None`: no new request came).
    least_delay: Option<Duration>,
    /// New requests were dropped at the full queue, or left waiting in it, this interval: the longest such wait.
    backlog: Option<Duration>,
    cpu: f64,
    next_adjust: Option<Instant>,
}

impl Overload {
    /// Not overloaded: every call admitted.
    pub fn new(config: OverloadConfig) -> Self {
        Self { config, fraction: 1.0, least_delay: None, backlog: None, cpu: 0.0, next_adjust: None }
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
            self.backlog = Some(self.backlog.map_or(waited, |w| w.max(waited)));
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
        let target = self.config.queue_delay;
        // How long the standing queue is: the least wait, or what waited unserved (the longer of the two).
        let queue = match (self.backlog, self.least_delay.filter(|d| *d > target)) {
            (Some(b), Some(d)) => Some(b.max(d)),
            (b, d) => b.or(d),
        };
        let cut = match queue {
            Some(q) => Some((target.as_secs_f64() / q.as_secs_f64().max(1e-9)).clamp(0.5, 0.8)),
            None if self.config.cpu.is_some_and(|c| self.cpu > c) => Some(0.8),
            None => None,
        };
        self.fraction = match cut {
            Some(c) => (self.fraction * c).max(self.config.floor),
            None if self.least_delay.is_none_or(|d| d < target / 4) => (self.fraction + 0.1).min(1.0),
            None => (self.fraction + 0.02).min(1.0),
        };
        self.least_delay = None;
        self.backlog = None;
        self.next_adjust = Some(now + self.config.interval);
    }

    /// Whether to take the new call with this Call-ID ([`admits`]).
    pub fn admit(&self, call_id: &[u8]) -> bool {
        admits(self.fraction, call_id)
    }

    /// The fraction of new calls admitted now (1.0: not overloaded).
    pub fn fraction(&self) -> f64 {
        self.fraction
    }

    /// Whether new calls are being refused.
    pub fn overloaded(&self) -> bool {
        self.fraction < 1.0
    }

    /// Whether a new call whose INVITE waited `waited` before the core got it comes too late to be taken: it
    /// would start with most of its caller's patience spent, and taking it would make every call behind it wait
    /// as long (CoDel's drop at the head of a standing queue, RFC 8289 §4.2).
    pub fn too_late(&self, waited: Duration) -> bool {
        self.config.enabled && waited > self.config.max_wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invite_that_waited_past_max_wait_is_too_late_unless_overload_control_is_off() {
        let o = Overload::new(OverloadConfig::default());
        assert!(!o.too_late(Duration::from_millis(100)) && o.too_late(Duration::from_millis(101)));
        let off = Overload::new(OverloadConfig { enabled: false, ..OverloadConfig::default() });
        assert!(!off.too_late(Duration::from_secs(10)));
    }

    #[test]
    fn the_gate_carries_the_share_to_the_transports() {
        let g = AdmissionGate::new();
        assert!(g.admits(b"anything"));
        g.publish(0.0);
        assert!(!g.admits(b"anything"));
        g.publish(0.5);
        let admitted = (0..10_000).filter(|i| g.admits(format!("{i}").as_bytes())).count();
        assert!((4500..=5500).contains(&admitted), "{admitted}");
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn delay_over_target_cuts_admissions_and_calm_restores_them() {
        let mut o = Overload::new(OverloadConfig::default());
        let t0 = Instant::now();
        o.on_delay(t0, ms(1));
        assert!(!o.overloaded());
        // One second of 25 ms queueing, just over the target: ten gentle cuts (20/25 = a fifth each).
        for i in 1..=10 {
            o.on_delay(t0 + ms(100 * i), ms(25));
            o.on_delay(t0 + ms(100 * i + 1), ms(25));
        }
        let f = o.fraction();
        assert!(f < 0.2 && f > 0.05, "after 1 s of overload: {f}");
        let admitted = (0..10_000).filter(|i| o.admit(format!("{i}@198.18.1.10").as_bytes())).count();
        let want = 10_000.0 * f;
        assert!((admitted as f64 - want).abs() <= want * 0.1, "admissions follow the fraction: {admitted} vs {f}");
        // The same call, asked again (a retransmitted INVITE, or the core after the transport), gets the same answer.
        assert!((0..1000).all(|i| {
            let id = format!("{i}@198.18.1.10");
            o.admit(id.as_bytes()) == admits(o.fraction(), id.as_bytes())
        }));
        // Calm again: back to all within a second.
        for i in 11..=21 {
            o.on_delay(t0 + ms(100 * i), ms(2));
        }
        assert!(!o.overloaded(), "recovered: {}", o.fraction());
        assert!((0..100).all(|i| o.admit(format!("{i}").as_bytes())));
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
        // Waits of 40, 50 and 80 ms and two full queues: cut by target over wait, at most by half.
        let want = 0.5 * 0.5 * 0.4f64.max(0.5) * 0.5 * 0.25f64.max(0.5);
        assert!((f - want).abs() < 1e-9, "cut five times as deep as the queue: {f} vs {want}");
        // A short wait behind a burst is not a backlog; an interval with neither is calm.
        o.on_backlog(t0 + ms(650), ms(10));
        o.adjust(t0 + ms(700));
        assert!((o.fraction() - (want + 0.1)).abs() < 1e-9, "raised by a tenth: {}", o.fraction());
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
        let admitted = (0..10_000).filter(|i| o.admit(format!("c{i}").as_bytes())).count();
        assert!((150..=250).contains(&admitted), "about 2% of 10,000: {admitted}");
    }

    #[test]
    fn a_surge_is_cut_fast_and_a_wait_near_the_target_is_probed_gently() {
        let mut o = Overload::new(OverloadConfig::default());
        let t0 = Instant::now();
        o.on_delay(t0, ms(1));
        // A surge to 3x: a standing queue of 200 ms halves the share every interval.
        for i in 1..=2 {
            o.on_delay(t0 + ms(100 * i), ms(200));
        }
        o.adjust(t0 + ms(300));
        assert!((o.fraction() - 0.25).abs() < 1e-9, "{}", o.fraction());
        // Near the target (10 ms of 20): raised by a fiftieth; well under it: by a tenth.
        o.on_delay(t0 + ms(350), ms(10));
        o.adjust(t0 + ms(400));
        assert!((o.fraction() - 0.27).abs() < 1e-9, "{}", o.fraction());
        o.on_delay(t0 + ms(450), ms(2));
        o.adjust(t0 + ms(500));
        assert!((o.fraction() - 0.37).abs() < 1e-9, "{}", o.fraction());
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
