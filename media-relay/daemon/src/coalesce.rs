//! Wake-up coalescing of a forwarding thread: under load it reads its sockets at most once per interval, the way a
//! NIC coalesces its interrupts.
//!
//! Why: at media rates nearly every wake-up of a forwarding thread finds one datagram (a stream sends every 20 ms;
//! thousands of streams arrive one by one). Each wake-up costs a sleep and a wake (in a VM: a halt exit and an
//! IPI), and each send wakes the receiving peer; measured on the reference VM (`sbc-bench ng`, 20 000 packets/s over
//! 200 streams), that was most of the relay's CPU per packet beside the copies. Holding the thread back for the
//! rest of an interval after a busy wake-up lets the packets of every stream gather in the socket buffers, so that
//! the next wake-up serves many at once: 14.8 -> 9.25 s of CPU per million packets with 500 us in that bench on a
//! quiet machine (benches/README.md, "Wake-up coalescing").
//!
//! The cost is latency, at most one interval, and only under load: a wake-up that comes more than two intervals
//! after the one before (a quiet thread) is served and followed by no hold, so a lone call sees none. Nothing is
//! lost meanwhile: the sockets' receive buffers (`RelayConfig::socket_buffer`, 4 MiB each) hold seconds of a
//! stream. Commands wait too (at most one interval), which nothing notices.
//!
//! It runs in the tokio runtime's park hook ([`tokio::runtime::Builder::on_thread_park`]): the thread is about to
//! wait for readiness; blocking it there (not in a task) keeps it out of `epoll_wait`, where each arriving datagram
//! would wake it again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The default interval: a tenth of the 5 ms a jitter buffer absorbs without thinking about it, enough for
/// several datagrams per wake-up from a few thousand packets per second per thread.
pub const DEFAULT: Duration = Duration::from_micros(500);

/// The upper bound of the setting: beyond it the added latency starts to matter for interactive audio.
pub const MAX: Duration = Duration::from_millis(5);

/// One forwarding thread's pacing: the runtime calls [`Pacer::unparked`] when it wakes and [`Pacer::parking`]
/// before it waits.
#[derive(Debug)]
pub struct Pacer {
    interval: Duration,
    /// The clock's origin: wake-ups are kept as nanoseconds since it, in atomics (the runtime's hooks are `Fn +
    /// Sync`; only this thread touches them).
    origin: Instant,
    previous: AtomicU64,
    current: AtomicU64,
    /// Holds made (a metric: how often the thread was busy enough to coalesce).
    holds: Arc<AtomicU64>,
}

/// Never woken yet.
const NEVER: u64 = u64::MAX;

impl Pacer {
    /// A pacer holding the thread back to `interval` under load; each hold is counted in `holds`.
    pub fn new(interval: Duration, holds: Arc<AtomicU64>) -> Self {
        Self {
            interval,
            origin: Instant::now(),
            previous: AtomicU64::new(NEVER),
            current: AtomicU64::new(NEVER),
            holds,
        }
    }

    /// The thread woke up (readiness, a timer, a command).
    pub fn unparked(&self) {
        let now = self.since_origin(Instant::now());
        self.previous.store(self.current.swap(now, Ordering::Relaxed), Ordering::Relaxed);
    }

    /// The thread is about to wait: under load, sleep out the rest of the interval first.
    pub fn parking(&self) {
        let now = Instant::now();
        let (previous, current) = (self.previous.load(Ordering::Relaxed), self.current.load(Ordering::Relaxed));
        if let Some(rest) = hold(self.interval, previous, current, self.since_origin(now)) {
            self.holds.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(rest);
        }
    }

    fn since_origin(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.origin).as_nanos()).unwrap_or(NEVER - 1)
    }
}

/// How long to hold the thread before it waits again, given the last two wake-ups and now (nanoseconds on one
/// clock): the rest of the interval since the last wake-up when it came within two intervals of the one before
/// (the thread is busy), else none (a quiet thread answers its next datagram at once).
///
/// Two intervals, not one: a hold ends with a wake-up about one interval after the last, which must still count
/// as busy, or the thread would hold only every other time under a steady load.
fn hold(interval: Duration, previous: u64, current: u64, now: u64) -> Option<Duration> {
    if interval.is_zero() || previous == NEVER || current == NEVER {
        return None;
    }
    let interval_ns = u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX);
    if current.saturating_sub(previous) >= interval_ns.saturating_mul(2) {
        return None;
    }
    let due = current.saturating_add(interval_ns);
    (now < due).then(|| Duration::from_nanos(due - now))
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: u64 = 1_000;

    #[test]
    fn a_busy_thread_holds_for_the_rest_of_the_interval() {
        let i = Duration::from_micros(500);
        // Woken 100 us after the previous wake-up, 30 us of work done: hold 470 us more.
        assert_eq!(hold(i, 1_000 * US, 1_100 * US, 1_130 * US), Some(Duration::from_micros(470)));
        // The wake-up that ends a hold (one interval and a bit after the last) still counts as busy.
        assert_eq!(hold(i, 1_100 * US, 1_620 * US, 1_640 * US), Some(Duration::from_micros(480)));
    }

    #[test]
    fn a_quiet_thread_never_holds() {
        let i = Duration::from_micros(500);
        // Two intervals or more since the wake-up before: the next datagram is served at once.
        assert_eq!(hold(i, 0, 1_000 * US, 1_010 * US), None);
        assert_eq!(hold(i, 0, 20_000 * US, 20_010 * US), None);
        // The first wake-ups of a thread.
        assert_eq!(hold(i, NEVER, 5 * US, 6 * US), None);
        assert_eq!(hold(i, NEVER, NEVER, 6 * US), None);
    }

    #[test]
    fn work_longer_than_the_interval_is_not_followed_by_a_hold() {
        let i = Duration::from_micros(500);
        assert_eq!(hold(i, 1_000 * US, 1_100 * US, 1_700 * US), None);
        assert_eq!(hold(i, 1_000 * US, 1_100 * US, 1_600 * US), None);
    }

    #[test]
    fn zero_turns_it_off() {
        assert_eq!(hold(Duration::ZERO, 1_000 * US, 1_001 * US, 1_001 * US), None);
    }

    #[test]
    fn the_pacer_counts_its_holds_and_sleeps_them_out() {
        let holds = Arc::new(AtomicU64::new(0));
        let p = Pacer::new(Duration::from_millis(2), holds.clone());
        p.parking(); // never woken: no hold
        p.unparked();
        p.unparked(); // two wake-ups back to back: busy
        let t = Instant::now();
        p.parking();
        assert_eq!(holds.load(Ordering::Relaxed), 1);
        assert!(t.elapsed() >= Duration::from_millis(1), "held {:?}", t.elapsed());
    }
}
