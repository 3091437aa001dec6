//! Ordering a route's carriers for one call: priority first, then a weighted random order within a priority.

use super::TrunkId;

/// Weight of a candidate whose route entry gives none.
pub const DEFAULT_WEIGHT: u32 = 100;

/// One carrier a route may send a call to (`to = [{ trunk, priority, weight }]` in a `[[route]]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Candidate {
    /// The trunk to send the call to.
    pub trunk: TrunkId,
    /// Lower is tried first. Candidates of equal priority share calls by weight.
    pub priority: u32,
    /// Share of calls among the candidates of the same priority, relative to their sum. Default
    /// [`DEFAULT_WEIGHT`] (100). Weight 0 means "only when every weighted candidate of this priority has been
    /// tried": such candidates come last in their priority, in the order the route lists them.
    pub weight: u32,
}

impl Candidate {
    /// A candidate with the default weight.
    pub fn new(trunk: TrunkId, priority: u32) -> Self {
        Self { trunk, priority, weight: DEFAULT_WEIGHT }
    }

    /// The same candidate with another weight.
    pub fn with_weight(self, weight: u32) -> Self {
        Self { weight, ..self }
    }
}

/// Why a candidate was left out of a call's order. The caller decides usability (it holds health, admin state and
/// counters); selection only reports. `#[non_exhaustive]`: count by [`label`](Self::label), do not match
/// exhaustively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SkipReason {
    /// Every gateway of the trunk is down by its OPTIONS probes.
    Down,
    /// The trunk is disabled by configuration or the admin API (drain).
    Disabled,
    /// The trunk is at its limit of concurrent calls.
    CallLimit,
    /// The trunk is at its limit of call attempts per second.
    CpsLimit,
    /// This call already tried the trunk (a retry after a redirect or a re-route).
    AlreadyTried,
}

impl SkipReason {
    /// Label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Down => "down",
            Self::Disabled => "disabled",
            Self::CallLimit => "call_limit",
            Self::CpsLimit => "cps_limit",
            Self::AlreadyTried => "already_tried",
        }
    }
}

/// A candidate left out, with the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Skipped {
    /// The candidate as the route gives it.
    pub candidate: Candidate,
    /// Why it is not in [`Selection::ordered`].
    pub reason: SkipReason,
}

/// The carriers to try for one call, in order, and those left out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selection {
    /// Usable candidates: priority ascending, weighted random order within a priority. Empty when none is usable;
    /// then [`Attempts`](super::Attempts) gives up with 503 at once.
    pub ordered: Vec<Candidate>,
    /// Unusable candidates, in route order, for logs and counters.
    pub skipped: Vec<Skipped>,
}

/// Orders `candidates` for one call.
///
/// `usable` is asked once per candidate, in route order, and says `Err(reason)` to leave it out. `random` yields
/// uniformly distributed `u64`s (the driver's seeded generator; a fixed sequence in tests): one draw per position
/// in each group of equal priority with weights to split. Within a priority the order is a weighted shuffle
/// without replacement (repeated weighted pick), so a candidate with weight `w` of total `W` comes first in `w/W`
/// of calls, and among the rest the next is again picked by weight. Routes hold a handful of candidates, so the
/// quadratic pick costs less than anything cleverer.
///
/// The order is a snapshot: a trunk that goes down while the call tries an earlier one is still in the list; the
/// caller may ask `usable` again before each try.
pub fn select(
    candidates: &[Candidate],
    mut usable: impl FnMut(TrunkId) -> Result<(), SkipReason>,
    random: &mut impl FnMut() -> u64,
) -> Selection {
    let mut selection = Selection { ordered: Vec::with_capacity(candidates.len()), skipped: Vec::new() };
    for &candidate in candidates {
        match usable(candidate.trunk) {
            Ok(()) => selection.ordered.push(candidate),
            Err(reason) => selection.skipped.push(Skipped { candidate, reason }),
        }
    }
    // Stable: equal priorities keep route order, which zero weights rely on.
    selection.ordered.sort_by_key(|c| c.priority);
    let mut start = 0;
    while start < selection.ordered.len() {
        let priority = selection.ordered[start].priority;
        let end = start + selection.ordered[start..].iter().take_while(|c| c.priority == priority).count();
        weighted_shuffle(&mut selection.ordered[start..end], random);
        start = end;
    }
    selection
}

fn weighted_shuffle(group: &mut [Candidate], random: &mut impl FnMut() -> u64) {
    let mut total: u64 = group.iter().map(|c| u64::from(c.weight)).sum();
    for k in 0..group.len() {
        if total == 0 {
            // Only zero weights left: they keep route order.
            return;
        }
        // Multiply-shift maps a uniform u64 onto 0..total; the bias is at most total / 2^64.
        let mut point = ((u128::from(random()) * u128::from(total)) >> 64) as u64;
        let mut pick = k;
        for (i, c) in group.iter().enumerate().skip(k) {
            let w = u64::from(c.weight);
            if point < w {
                pick = i;
                break;
            }
            point -= w;
        }
        total -= u64::from(group[pick].weight);
        // Rotating (not swapping) keeps the rest in route order.
        group[k..=pick].rotate_right(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xorshift(seed: u64) -> impl FnMut() -> u64 {
        let mut state = seed;
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    fn trunks(selection: &Selection) -> Vec<u32> {
        selection.ordered.iter().map(|c| c.trunk.0).collect()
    }

    #[test]
    fn lower_priority_value_is_tried_first() {
        let route = [Candidate::new(TrunkId(3), 3), Candidate::new(TrunkId(1), 1), Candidate::new(TrunkId(2), 2)];
        let s = select(&route, |_| Ok(()), &mut xorshift(1));
        assert_eq!(trunks(&s), [1, 2, 3]);
        assert!(s.skipped.is_empty());
    }

    #[test]
    fn unusable_trunks_are_skipped_with_reason() {
        let route = [
            Candidate::new(TrunkId(1), 1),
            Candidate::new(TrunkId(2), 1),
            Candidate::new(TrunkId(3), 2),
            Candidate::new(TrunkId(4), 2),
        ];
        let s = select(
            &route,
            |t| match t.0 {
                1 => Err(SkipReason::Down),
                4 => Err(SkipReason::CallLimit),
                _ => Ok(()),
            },
            &mut xorshift(7),
        );
        assert_eq!(trunks(&s), [2, 3]);
        assert_eq!(
            s.skipped,
            [
                Skipped { candidate: route[0], reason: SkipReason::Down },
                Skipped { candidate: route[3], reason: SkipReason::CallLimit }
            ]
        );
        assert_eq!(s.skipped[1].reason.label(), "call_limit");
    }

    #[test]
    fn no_usable_trunk_gives_empty_order() {
        let route = [Candidate::new(TrunkId(1), 1)];
        let s = select(&route, |_| Err(SkipReason::Disabled), &mut xorshift(7));
        assert!(s.ordered.is_empty());
        assert_eq!(s.skipped.len(), 1);
    }

    #[test]
    fn equal_priority_split_follows_weights_within_5_percent() {
        // Weights 10 / 20 / 70 at priority 1, plus a priority-2 backup that must always be last.
        let route = [
            Candidate::new(TrunkId(0), 1).with_weight(10),
            Candidate::new(TrunkId(1), 1).with_weight(20),
            Candidate::new(TrunkId(2), 1).with_weight(70),
            Candidate::new(TrunkId(9), 2),
        ];
        let mut random = xorshift(0x9E37_79B9_7F4A_7C15);
        let draws = 100_000;
        let mut first = [0u32; 3];
        let mut second = [0u32; 3];
        for _ in 0..draws {
            let s = select(&route, |_| Ok(()), &mut random);
            assert_eq!(s.ordered.len(), 4);
            assert_eq!(s.ordered[3].trunk, TrunkId(9));
            first[s.ordered[0].trunk.0 as usize] += 1;
            second[s.ordered[1].trunk.0 as usize] += 1;
        }
        let expected_first = [0.10, 0.20, 0.70];
        // Second place without replacement: P(i second) = sum over j != i of P(j first) * w_i / (W - w_j).
        let w = [10.0, 20.0, 70.0];
        let expected_second: Vec<f64> = (0..3)
            .map(|i| (0..3).filter(|&j| j != i).map(|j| expected_first[j] * w[i] / (100.0 - w[j])).sum())
            .collect();
        for i in 0..3 {
            let share = f64::from(first[i]) / f64::from(draws);
            assert!((share - expected_first[i]).abs() <= 0.05 * expected_first[i], "first {i}: {share}");
            let share = f64::from(second[i]) / f64::from(draws);
            assert!((share - expected_second[i]).abs() <= 0.05 * expected_second[i], "second {i}: {share}");
        }
    }

    #[test]
    fn zero_weight_candidates_come_last_within_their_priority_in_route_order() {
        let route = [
            Candidate::new(TrunkId(1), 1).with_weight(0),
            Candidate::new(TrunkId(2), 1),
            Candidate::new(TrunkId(3), 1).with_weight(0),
            Candidate::new(TrunkId(4), 1),
        ];
        let mut random = xorshift(3);
        for _ in 0..1_000 {
            let s = select(&route, |_| Ok(()), &mut random);
            assert_eq!(trunks(&s)[2..], [1, 3]);
        }
    }

    #[test]
    fn same_random_sequence_gives_same_order() {
        let route: Vec<Candidate> = (0..6).map(|i| Candidate::new(TrunkId(i), i % 2)).collect();
        let a = select(&route, |_| Ok(()), &mut xorshift(42));
        let b = select(&route, |_| Ok(()), &mut xorshift(42));
        assert_eq!(a, b);
        assert_eq!(a.ordered.iter().map(|c| c.priority).collect::<Vec<_>>(), [0, 0, 0, 1, 1, 1]);
    }
}
