//! The relay port pool: one per relay interface.
//!
//! The pool hands out port *pairs*: RTP on an even port and RTCP on the next odd one (RFC 3550 §11, "RTP
//! data SHOULD be carried on an even UDP port number and the corresponding RTCP packets SHOULD be carried on
//! the next higher (odd) port number"). A pair is named by its even RTP port.
//!
//! A released pair is not handed out again at once: it sits in quarantine for a configured time, so that late
//! or retransmitted packets of the old call (or an endpoint that has not yet seen the BYE) never reach the new
//! call that would otherwise get the same ports. Free pairs are reused in FIFO order, so a pair that has just
//! come out of quarantine is the last one to be handed out again.
//!
//! Everything is O(1) amortised per call. The pool holds a state byte and a generation counter per pair and two
//! queues of about twice the number of pairs at most; a 10,000-pair range costs well under a megabyte. Time comes
//! in as arguments: the pool never reads a clock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The configured port range cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PortRangeError {
    /// `first` is above `last`.
    #[error("port range {first}-{last} is reversed")]
    Reversed {
        /// The configured first port.
        first: u16,
        /// The configured last port.
        last: u16,
    },
    /// The range holds no even port whose odd neighbour is also in the range (port 0 is never used).
    #[error("port range {first}-{last} holds no even/odd port pair")]
    NoPair {
        /// The configured first port.
        first: u16,
        /// The configured last port.
        last: u16,
    },
}

/// The state of one pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Free,
    InUse,
    Quarantined,
}

/// The relay ports of one interface: even/odd pairs, FIFO reuse, quarantine after release.
///
/// Queue entries carry the pair's generation at the time they were queued; every state change bumps the
/// generation, so an entry made stale by [`PortPool::reserve`] (which takes a pair out of the middle of a
/// queue) is recognised and skipped instead of searched for and removed.
#[derive(Debug)]
pub struct PortPool {
    /// The first RTP port (even, never 0).
    base: u16,
    quarantine: Duration,
    slots: Vec<Slot>,
    generation: Vec<u32>,
    /// Pairs ready to be handed out, oldest first: (index, generation).
    free_queue: VecDeque<(u32, u32)>,
    /// Released pairs, oldest release first: (release time, index, generation).
    quarantine_queue: VecDeque<(Instant, u32, u32)>,
    /// Pairs in [`Slot::Free`].
    free_count: usize,
    /// Pairs in [`Slot::InUse`].
    in_use: usize,
}

impl PortPool {
    /// Pairs over `first..=last`: RTP on the even port, RTCP on the next odd one (RFC 3550 §11). An odd `first`
    /// rounds up to the next even port; an even `last` is left out (its RTCP port would be outside the range);
    /// port 0 is never used. A released pair waits `quarantine` before reuse so that late packets of the old
    /// call never reach a new one.
    pub fn new(first: u16, last: u16, quarantine: Duration) -> Result<Self, PortRangeError> {
        if first > last {
            return Err(PortRangeError::Reversed { first, last });
        }
        // u32 so that 65535 rounding up to 65536 does not overflow.
        let base = u32::from(first.max(1)).next_multiple_of(2);
        let last32 = u32::from(last);
        if base + 1 > last32 {
            return Err(PortRangeError::NoPair { first, last });
        }
        // Pairs at base, base + 2, ... while the odd port p + 1 <= last (base + 1 <= last, checked above).
        let pairs = ((last32 - (base + 1)) / 2 + 1) as usize;
        let base = u16::try_from(base).map_err(|_| PortRangeError::NoPair { first, last })?;
        Ok(Self {
            base,
            quarantine,
            slots: vec![Slot::Free; pairs],
            generation: vec![0; pairs],
            free_queue: (0..pairs as u32).map(|i| (i, 0)).collect(),
            quarantine_queue: VecDeque::new(),
            free_count: pairs,
            in_use: 0,
        })
    }

    /// An even RTP port (its RTCP port is +1), or `None` when every pair is in use or quarantined.
    pub fn allocate(&mut self, now: Instant) -> Option<u16> {
        self.drain_quarantine(now);
        while let Some((index, generation)) = self.free_queue.pop_front() {
            let i = index as usize;
            if self.generation[i] != generation || self.slots[i] != Slot::Free {
                continue; // stale: reserved since it was queued
            }
            self.set(i, Slot::InUse);
            self.free_count -= 1;
            self.in_use += 1;
            return Some(self.port_of(i));
        }
        None
    }

    /// Returns the pair starting at `rtp_port` to the pool, through quarantine. It must be a pair handed out by
    /// [`allocate`](Self::allocate) or taken by [`reserve`](Self::reserve) and not yet released; anything else
    /// (an odd port, a port outside the range, a free or quarantined pair, a second release) is ignored and
    /// returns false.
    pub fn release(&mut self, rtp_port: u16, now: Instant) -> bool {
        let Some(i) = self.index_of(rtp_port) else {
            return false;
        };
        if self.slots[i] != Slot::InUse {
            return false;
        }
        self.set(i, Slot::Quarantined);
        self.in_use -= 1;
        self.quarantine_queue.push_back((now, i as u32, self.generation[i]));
        // Keeps the queue short even if nobody allocates for a long time.
        self.drain_quarantine(now);
        true
    }

    /// Takes this exact pair out of the pool (used by a standby adopting a replicated session, whose ports the
    /// active relay chose). A free pair is taken; so is a quarantined one, since the session that owns the
    /// ports now is the one the quarantine protected them for. Returns false if the pair is already in use or
    /// `rtp_port` is not the RTP port of a pair of this pool.
    pub fn reserve(&mut self, rtp_port: u16) -> bool {
        let Some(i) = self.index_of(rtp_port) else {
            return false;
        };
        match self.slots[i] {
            Slot::InUse => return false,
            Slot::Free => self.free_count -= 1,
            Slot::Quarantined => {}
        }
        // Its queue entry is now stale (generation bumped) and is skipped when reached.
        self.set(i, Slot::InUse);
        self.in_use += 1;
        self.compact();
        true
    }

    /// Pairs handed out or reserved and not yet released.
    pub fn in_use(&self) -> usize {
        self.in_use
    }

    /// Pairs that [`allocate`](Self::allocate) could hand out at `now` (free, or quarantine elapsed).
    pub fn free(&self, now: Instant) -> usize {
        let ready = self
            .quarantine_queue
            .iter()
            .take_while(|(released, _, _)| self.elapsed(*released, now))
            .filter(|(_, index, generation)| self.generation[*index as usize] == *generation)
            .count();
        self.free_count + ready
    }

    /// The number of pairs in the range.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    fn elapsed(&self, released: Instant, now: Instant) -> bool {
        now.saturating_duration_since(released) >= self.quarantine
    }

    /// Moves the pairs whose quarantine has elapsed to the back of the free queue.
    fn drain_quarantine(&mut self, now: Instant) {
        while let Some(&(released, index, generation)) = self.quarantine_queue.front() {
            if !self.elapsed(released, now) {
                break;
            }
            self.quarantine_queue.pop_front();
            let i = index as usize;
            if self.generation[i] != generation || self.slots[i] != Slot::Quarantined {
                continue; // stale: reserved while in quarantine
            }
            self.set(i, Slot::Free);
            self.free_count += 1;
            self.free_queue.push_back((index, self.generation[i]));
        }
    }

    /// Drops stale entries once they outnumber the pairs, so that a standby that only reserves and releases
    /// (and never allocates) keeps bounded queues. Amortised O(1).
    fn compact(&mut self) {
        let limit = 2 * self.slots.len();
        if self.free_queue.len() > limit {
            let (slots, generations) = (&self.slots, &self.generation);
            self.free_queue.retain(|(i, g)| generations[*i as usize] == *g && slots[*i as usize] == Slot::Free);
        }
        if self.quarantine_queue.len() > limit {
            let (slots, generations) = (&self.slots, &self.generation);
            self.quarantine_queue
                .retain(|(_, i, g)| generations[*i as usize] == *g && slots[*i as usize] == Slot::Quarantined);
        }
    }

    fn set(&mut self, i: usize, slot: Slot) {
        self.slots[i] = slot;
        self.generation[i] = self.generation[i].wrapping_add(1);
    }

    fn port_of(&self, i: usize) -> u16 {
        // i < capacity, and the last pair's RTP port fits in u16 by construction.
        self.base + 2 * i as u16
    }

    fn index_of(&self, rtp_port: u16) -> Option<usize> {
        if rtp_port < self.base || !rtp_port.is_multiple_of(2) {
            return None;
        }
        let i = usize::from((rtp_port - self.base) / 2);
        (i < self.slots.len()).then_some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: Duration = Duration::from_secs(30);

    #[test]
    fn odd_first_port_rounds_up_to_even() {
        let mut pool = PortPool::new(30001, 30010, Q).unwrap();
        let now = Instant::now();
        assert_eq!(pool.capacity(), 4);
        assert_eq!(pool.allocate(now), Some(30002));
        assert_eq!(pool.allocate(now), Some(30004));
        assert_eq!(pool.allocate(now), Some(30006));
        assert_eq!(pool.allocate(now), Some(30008));
        // 30010 would need 30011 for RTCP, which is outside the range.
        assert_eq!(pool.allocate(now), None);
    }

    #[test]
    fn range_30000_to_30003_gives_exactly_two_pairs() {
        let mut pool = PortPool::new(30000, 30003, Q).unwrap();
        let now = Instant::now();
        assert_eq!(pool.capacity(), 2);
        assert_eq!(pool.free(now), 2);
        assert_eq!(pool.allocate(now), Some(30000));
        assert_eq!(pool.allocate(now), Some(30002));
        assert_eq!(pool.allocate(now), None);
        assert_eq!(pool.in_use(), 2);
        assert_eq!(pool.free(now), 0);
    }

    #[test]
    fn reversed_and_pairless_ranges_are_refused() {
        assert_eq!(PortPool::new(30010, 30000, Q).unwrap_err(), PortRangeError::Reversed { first: 30010, last: 30000 });
        assert_eq!(PortPool::new(30001, 30002, Q).unwrap_err(), PortRangeError::NoPair { first: 30001, last: 30002 });
        assert_eq!(PortPool::new(30000, 30000, Q).unwrap_err(), PortRangeError::NoPair { first: 30000, last: 30000 });
        assert_eq!(PortPool::new(65535, 65535, Q).unwrap_err(), PortRangeError::NoPair { first: 65535, last: 65535 });
        assert_eq!(PortPool::new(0, 1, Q).unwrap_err(), PortRangeError::NoPair { first: 0, last: 1 });
    }

    #[test]
    fn top_of_the_port_space_and_port_zero() {
        let mut pool = PortPool::new(65530, 65535, Q).unwrap();
        let now = Instant::now();
        assert_eq!(pool.capacity(), 3);
        assert_eq!(pool.allocate(now), Some(65530));
        assert_eq!(pool.allocate(now), Some(65532));
        assert_eq!(pool.allocate(now), Some(65534));
        assert_eq!(pool.allocate(now), None);

        let mut pool = PortPool::new(0, 5, Q).unwrap();
        assert_eq!(pool.capacity(), 2);
        assert_eq!(pool.allocate(now), Some(2));
    }

    #[test]
    fn exhausted_pool_returns_none() {
        let mut pool = PortPool::new(40000, 40007, Q).unwrap();
        let now = Instant::now();
        for _ in 0..4 {
            assert!(pool.allocate(now).is_some());
        }
        assert_eq!(pool.allocate(now), None);
        assert_eq!(pool.allocate(now + Duration::from_secs(3600)), None);
        assert_eq!(pool.in_use(), 4);
    }

    #[test]
    fn quarantine_holds_the_pair_until_the_exact_instant() {
        let mut pool = PortPool::new(30000, 30003, Q).unwrap();
        let t0 = Instant::now();
        let a = pool.allocate(t0).unwrap();
        let b = pool.allocate(t0).unwrap();
        assert!(pool.release(a, t0));
        assert_eq!(pool.in_use(), 1);
        assert_eq!(pool.free(t0), 0);

        let just_before = t0 + Q - Duration::from_nanos(1);
        assert_eq!(pool.free(just_before), 0);
        assert_eq!(pool.allocate(just_before), None);

        let at = t0 + Q;
        assert_eq!(pool.free(at), 1);
        assert_eq!(pool.allocate(at), Some(a));
        assert_eq!(pool.free(at), 0);
        assert_eq!(pool.in_use(), 2);
        assert_ne!(a, b);
    }

    #[test]
    fn released_pairs_are_reused_last_in_fifo_order() {
        let mut pool = PortPool::new(30000, 30007, Duration::ZERO).unwrap();
        let now = Instant::now();
        let first = pool.allocate(now).unwrap();
        assert_eq!(first, 30000);
        assert!(pool.release(first, now));
        // The three never-used pairs come first, then the released one.
        assert_eq!(pool.allocate(now), Some(30002));
        assert_eq!(pool.allocate(now), Some(30004));
        assert_eq!(pool.allocate(now), Some(30006));
        assert_eq!(pool.allocate(now), Some(30000));
        assert_eq!(pool.allocate(now), None);
    }

    #[test]
    fn double_release_and_foreign_ports_are_ignored() {
        let mut pool = PortPool::new(30000, 30007, Q).unwrap();
        let now = Instant::now();
        let port = pool.allocate(now).unwrap();
        assert!(pool.release(port, now));
        assert!(!pool.release(port, now));
        assert!(!pool.release(port, now + Q));
        assert!(!pool.release(port + 1, now)); // the RTCP port
        assert!(!pool.release(29998, now)); // below the range
        assert!(!pool.release(30008, now)); // above the range
        assert!(!pool.release(30002, now)); // never handed out
        assert_eq!(pool.in_use(), 0);
        assert_eq!(pool.free(now), 3);
        assert_eq!(pool.free(now + Q), 4);
    }

    #[test]
    fn reserve_takes_the_exact_pair_and_allocate_skips_it() {
        let mut pool = PortPool::new(30000, 30007, Q).unwrap();
        let now = Instant::now();
        assert!(pool.reserve(30002));
        assert!(!pool.reserve(30002)); // taken
        assert!(!pool.reserve(30003)); // odd
        assert!(!pool.reserve(30008)); // outside
        assert_eq!(pool.in_use(), 1);
        assert_eq!(pool.free(now), 3);
        assert_eq!(pool.allocate(now), Some(30000));
        assert_eq!(pool.allocate(now), Some(30004));
        assert_eq!(pool.allocate(now), Some(30006));
        assert_eq!(pool.allocate(now), None);
        // A reserved pair is released like an allocated one.
        assert!(pool.release(30002, now));
        assert!(!pool.reserve(30000)); // allocated above
    }

    #[test]
    fn reserve_of_a_quarantined_pair_cancels_its_quarantine() {
        let mut pool = PortPool::new(30000, 30003, Q).unwrap();
        let t0 = Instant::now();
        assert_eq!(pool.allocate(t0), Some(30000));
        assert!(pool.release(30000, t0));
        assert!(pool.reserve(30000));
        assert_eq!(pool.in_use(), 1);
        // Released again later: the earlier quarantine entry must not free it early.
        let t1 = t0 + Duration::from_secs(20);
        assert!(pool.release(30000, t1));
        assert_eq!(pool.free(t0 + Q), 1); // only 30002
        assert_eq!(pool.allocate(t0 + Q), Some(30002));
        assert_eq!(pool.allocate(t0 + Q), None);
        assert_eq!(pool.allocate(t1 + Q), Some(30000));
    }

    #[test]
    fn reserve_release_cycles_keep_queues_bounded() {
        let mut pool = PortPool::new(30000, 30003, Duration::ZERO).unwrap();
        let now = Instant::now();
        for _ in 0..1000 {
            assert!(pool.reserve(30000));
            assert!(pool.release(30000, now));
        }
        assert!(pool.free_queue.len() <= 2 * pool.capacity() + 1);
        assert!(pool.quarantine_queue.len() <= 2 * pool.capacity() + 1);
        assert_eq!(pool.free(now), 2);
        let mut got = [pool.allocate(now).unwrap(), pool.allocate(now).unwrap()];
        got.sort_unstable();
        assert_eq!(got, [30000, 30002]);
        assert_eq!(pool.allocate(now), None);
    }

    #[test]
    fn large_range_allocates_and_releases_every_pair() {
        let mut pool = PortPool::new(20000, 39999, Duration::from_secs(1)).unwrap();
        let t0 = Instant::now();
        assert_eq!(pool.capacity(), 10_000);
        let ports: Vec<u16> = (0..10_000).map(|_| pool.allocate(t0).unwrap()).collect();
        assert_eq!(pool.allocate(t0), None);
        for &p in &ports {
            assert!(pool.release(p, t0));
        }
        assert_eq!(pool.free(t0), 0);
        assert_eq!(pool.free(t0 + Duration::from_secs(1)), 10_000);
        assert_eq!(pool.allocate(t0 + Duration::from_secs(1)), Some(20000));
    }
}
