//! When a call leaves a carrier for the next one, and when it gives up.

use super::select::Candidate;
use super::TrunkId;
use std::fmt;
use std::time::{Duration, Instant};

/// Final responses that send a call to the next carrier when a trunk does not configure `failover_on`: 408 Request
/// Timeout, 480 Temporarily Unavailable, 500 Server Internal Error, 502 Bad Gateway, 503 Service Unavailable,
/// 504 Server Time-out. Busy (486), decline (603) and the other finals are the callee's answer and go back to
/// the caller.
pub const DEFAULT_FAILOVER_CODES: [u16; 6] = [408, 480, 500, 502, 503, 504];

/// A failover setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FailoverConfigError {
    /// Only final failure responses (300–699) end an attempt; fix the `failover_on` list.
    #[error("status {0} cannot trigger failover: only final non-2xx responses (300-699) end an attempt")]
    NotAFailure(u16),
}

const LOWEST: u16 = 300;
const HIGHEST: u16 = 699;

/// A set of SIP status codes 300–699, as a bitmap, so that the triggers stay `Copy`.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct StatusSet {
    bits: [u64; 7],
}

impl StatusSet {
    /// The empty set.
    pub const fn new() -> Self {
        Self { bits: [0; 7] }
    }

    /// The set of `codes`; the first code outside 300–699 is the error.
    pub fn from_codes(codes: &[u16]) -> Result<Self, FailoverConfigError> {
        let mut set = Self::new();
        for &code in codes {
            set.insert(code)?;
        }
        Ok(set)
    }

    /// Adds `code`.
    pub fn insert(&mut self, code: u16) -> Result<(), FailoverConfigError> {
        if !(LOWEST..=HIGHEST).contains(&code) {
            return Err(FailoverConfigError::NotAFailure(code));
        }
        let i = usize::from(code - LOWEST);
        self.bits[i / 64] |= 1 << (i % 64);
        Ok(())
    }

    /// Whether `code` is in the set.
    pub fn contains(&self, code: u16) -> bool {
        if !(LOWEST..=HIGHEST).contains(&code) {
            return false;
        }
        let i = usize::from(code - LOWEST);
        self.bits[i / 64] & (1 << (i % 64)) != 0
    }

    /// The codes in the set, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (LOWEST..=HIGHEST).filter(|&c| self.contains(c))
    }
}

impl fmt::Debug for StatusSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// How one attempt on a carrier ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// 2xx: the call is connected.
    Answered,
    /// A final non-2xx response with this status.
    Rejected(u16),
    /// The request could not be sent, or the connection failed (RFC 3261 §8.1.3.1).
    TransportError,
    /// Timer B (INVITE) or F fired without a final response (RFC 3261 §17.1.1.2, §17.1.2.2), or the caller gave
    /// up waiting at [`Attempts::post_dial_deadline`] and cancelled the attempt.
    Timeout,
    /// The caller cancelled (CANCEL from leg A, or leg A went away): never retried.
    Cancelled,
}

impl Outcome {
    /// The status that stands for this outcome towards the caller: the response itself; 408 for a timeout (as a
    /// proxy does, RFC 3261 §16.7 step 6); 503 for a transport error (RFC 3261 §8.1.3.1); 487 for a cancel.
    pub fn status(self) -> u16 {
        match self {
            Self::Answered => 200,
            Self::Rejected(status) => status,
            Self::TransportError => 503,
            Self::Timeout => 408,
            Self::Cancelled => 487,
        }
    }
}

/// What ends an attempt on a trunk and sends the call on to the next carrier. A property of the trunk that failed
/// (`failover_on` of a `[[trunk]]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailoverTriggers {
    /// Final responses that trigger failover. Default [`DEFAULT_FAILOVER_CODES`].
    pub codes: StatusSet,
    /// Whether a transport error triggers failover. Default true: the carrier never saw the call.
    pub transport_error: bool,
    /// Whether timer B/F (no final response) triggers failover. Default true.
    pub timeout: bool,
}

impl Default for FailoverTriggers {
    fn default() -> Self {
        let mut codes = StatusSet::new();
        for code in DEFAULT_FAILOVER_CODES {
            // In range by construction.
            let _ = codes.insert(code);
        }
        Self { codes, transport_error: true, timeout: true }
    }
}

impl FailoverTriggers {
    /// Whether `outcome` sends the call to the next carrier.
    pub fn fails_over(&self, outcome: Outcome) -> bool {
        match outcome {
            Outcome::Rejected(status) => self.codes.contains(status),
            Outcome::TransportError => self.transport_error,
            Outcome::Timeout => self.timeout,
            Outcome::Answered | Outcome::Cancelled => false,
        }
    }
}

/// Bounds on failover for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailoverLimits {
    /// Most carriers tried for one call, the first included. Default 3: beyond that the caller has waited long
    /// and the route is better fixed than retried. 0 behaves as 1.
    pub max_tries: u32,
    /// No new carrier is tried once this long has passed since the call arrived. Default 30 s, a little under
    /// timer B (32 s), so that one timed-out carrier ends the call rather than doubling the wait.
    pub max_post_dial: Duration,
}

impl Default for FailoverLimits {
    fn default() -> Self {
        Self { max_tries: 3, max_post_dial: Duration::from_secs(30) }
    }
}

/// One carrier tried, for the CDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// The trunk tried.
    pub trunk: TrunkId,
    /// How it ended.
    pub outcome: Outcome,
    /// When the attempt started.
    pub started_at: Instant,
    /// When its outcome was known.
    pub ended_at: Instant,
}

/// Why a call stopped trying carriers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GiveUpReason {
    /// No candidate was usable to begin with.
    NoCandidates,
    /// The last outcome is not a failover trigger (busy, decline, not found, …): the callee's answer.
    NotRetryable,
    /// The caller cancelled.
    CallerCancelled,
    /// Every candidate was tried.
    Exhausted,
    /// [`FailoverLimits::max_tries`] carriers were tried.
    MaxTries,
    /// [`FailoverLimits::max_post_dial`] has passed.
    PostDialTime,
}

impl GiveUpReason {
    /// Label for logs, metrics and the CDR.
    pub fn label(self) -> &'static str {
        match self {
            Self::NoCandidates => "no_candidates",
            Self::NotRetryable => "not_retryable",
            Self::CallerCancelled => "caller_cancelled",
            Self::Exhausted => "exhausted",
            Self::MaxTries => "max_tries",
            Self::PostDialTime => "post_dial_time",
        }
    }
}

/// The end of a call's carrier attempts without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GiveUp {
    /// Status for the final response to the caller: [`Outcome::status`] of the last attempt, or 503 when there
    /// was no usable candidate.
    pub status: u16,
    /// Why.
    pub reason: GiveUpReason,
}

/// What the call does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Send leg B to this carrier, and report how it ends with [`Attempts::on_outcome`].
    Try(Candidate),
    /// A carrier answered; the call is connected.
    Connected,
    /// Stop and answer the caller.
    GiveUp(GiveUp),
}

/// The carrier attempts of one call: which carrier to try, what each one answered.
///
/// Call order: [`Attempts::start`] with the [`Selection::ordered`](super::Selection::ordered) list, then for each
/// [`Next::Try`] one [`Attempts::on_outcome`] with how it ended, until [`Next::Connected`] or [`Next::GiveUp`].
/// After that, `on_outcome` returns the same end again and records nothing. [`Attempts::tried`] feeds the CDR.
#[derive(Debug, Clone)]
pub struct Attempts {
    candidates: Vec<Candidate>,
    next: usize,
    limits: FailoverLimits,
    started_at: Instant,
    current: Option<(Candidate, Instant)>,
    tried: Vec<Attempt>,
    /// Carriers tried on another box before a takeover ([`Attempts::resume`]): they count towards `max_tries`.
    tried_elsewhere: u32,
    end: Option<Next>,
}

impl Attempts {
    /// Starts a call's attempts at `now` (when the call arrived) over `candidates`, in order.
    pub fn start(candidates: Vec<Candidate>, limits: FailoverLimits, now: Instant) -> (Self, Next) {
        let mut attempts = Self {
            candidates,
            next: 0,
            limits,
            started_at: now,
            current: None,
            tried: Vec::new(),
            tried_elsewhere: 0,
            end: None,
        };
        let next = match attempts.candidates.first() {
            Some(_) => attempts.try_next(now),
            None => attempts.finish(Next::GiveUp(GiveUp { status: 503, reason: GiveUpReason::NoCandidates })),
        };
        (attempts, next)
    }

    /// Attempts taken over from another box (hot standby) in the middle of a call that arrived at `started_at`:
    /// `tried_before` carriers ended there, `current` is being tried since `current_since`, and `remaining` are left,
    /// in order. The next [`Attempts::on_outcome`] goes on exactly as it would have there.
    pub fn resume(
        remaining: Vec<Candidate>,
        limits: FailoverLimits,
        started_at: Instant,
        tried_before: u32,
        current: Candidate,
        current_since: Instant,
    ) -> Self {
        Self {
            candidates: remaining,
            next: 0,
            limits,
            started_at,
            current: Some((current, current_since)),
            tried: Vec::new(),
            tried_elsewhere: tried_before,
            end: None,
        }
    }

    /// Records how the current attempt ended, at `now`, and says what to do next. `triggers` are those of the
    /// trunk that was tried.
    pub fn on_outcome(&mut self, outcome: Outcome, triggers: &FailoverTriggers, now: Instant) -> Next {
        let Some((candidate, started_at)) = self.current.take() else {
            // Already ended (`end` is set whenever `current` is not).
            return self.end.unwrap_or(Next::GiveUp(GiveUp { status: 500, reason: GiveUpReason::NoCandidates }));
        };
        self.tried.push(Attempt { trunk: candidate.trunk, outcome, started_at, ended_at: now });
        let give_up = |reason| Next::GiveUp(GiveUp { status: outcome.status(), reason });
        let next = match outcome {
            Outcome::Answered => Next::Connected,
            Outcome::Cancelled => give_up(GiveUpReason::CallerCancelled),
            _ if !triggers.fails_over(outcome) => give_up(GiveUpReason::NotRetryable),
            _ if self.next >= self.candidates.len() => give_up(GiveUpReason::Exhausted),
            _ if self.tried.len() + self.tried_elsewhere as usize >= self.limits.max_tries.max(1) as usize => {
                give_up(GiveUpReason::MaxTries)
            }
            _ if now.saturating_duration_since(self.started_at) >= self.limits.max_post_dial => {
                give_up(GiveUpReason::PostDialTime)
            }
            _ => return self.try_next(now),
        };
        self.finish(next)
    }

    fn try_next(&mut self, now: Instant) -> Next {
        let candidate = self.candidates[self.next];
        self.next += 1;
        self.current = Some((candidate, now));
        Next::Try(candidate)
    }

    fn finish(&mut self, next: Next) -> Next {
        self.end = Some(next);
        next
    }

    /// After this instant no new carrier is tried. A driver that wants to stop waiting on the current carrier
    /// then cancels it and reports [`Outcome::Timeout`].
    pub fn post_dial_deadline(&self) -> Instant {
        self.started_at + self.limits.max_post_dial
    }

    /// The carrier being tried, if any.
    pub fn current(&self) -> Option<&Candidate> {
        self.current.as_ref().map(|(c, _)| c)
    }

    /// The carriers tried so far on this box, in order, with their outcomes.
    pub fn tried(&self) -> &[Attempt] {
        &self.tried
    }

    /// When the current attempt started, if one is under way.
    pub fn current_since(&self) -> Option<Instant> {
        self.current.as_ref().map(|(_, at)| *at)
    }

    /// The candidates not tried yet, in order (what a standby needs to go on after a takeover).
    pub fn remaining(&self) -> &[Candidate] {
        self.candidates.get(self.next..).unwrap_or_default()
    }

    /// How many carriers ended without an answer or are being tried, on this box and before a takeover.
    pub fn tries(&self) -> u32 {
        let ended = u32::try_from(self.tried.len()).unwrap_or(u32::MAX).saturating_add(self.tried_elsewhere);
        ended + u32::from(self.current.is_some())
    }

    /// How the attempts ended, once they have.
    pub fn end(&self) -> Option<Next> {
        self.end
    }

    /// Once connected, gives back what only attempts under way use: the carriers not tried and the record of
    /// those tried (a call keeps its CDR's own list). Why: an answered call lives on for minutes, and the two
    /// lists were about 250 bytes of its memory (benches/README.md, "Memory per call"). Does nothing before an end.
    pub fn settle(&mut self) {
        if self.end.is_some() {
            self.candidates = Vec::new();
            self.next = 0;
            self.tried = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(n: u32) -> Vec<Candidate> {
        (1..=n).map(|i| Candidate::new(TrunkId(i), i)).collect()
    }

    fn tries(next: Next) -> u32 {
        match next {
            Next::Try(c) => c.trunk.0,
            other => panic!("expected a try, got {other:?}"),
        }
    }

    #[test]
    fn settled_attempts_keep_their_end_and_nothing_else() {
        let triggers = FailoverTriggers::default();
        let now = Instant::now();
        let (mut a, _) = Attempts::start(route(3), FailoverLimits::default(), now);
        a.settle();
        assert_eq!(a.remaining().len(), 2, "attempts under way keep their carriers");
        assert_eq!(a.on_outcome(Outcome::Answered, &triggers, now), Next::Connected);
        a.settle();
        assert!(a.remaining().is_empty() && a.tried().is_empty());
        assert_eq!(a.end(), Some(Next::Connected));
        assert_eq!(a.on_outcome(Outcome::Timeout, &triggers, now), Next::Connected, "and answer the same");
    }

    #[test]
    fn failover_on_503_but_not_on_486() {
        let t0 = Instant::now();
        let triggers = FailoverTriggers::default();
        let (mut a, next) = Attempts::start(route(3), FailoverLimits::default(), t0);
        assert_eq!(tries(next), 1);
        let next = a.on_outcome(Outcome::Rejected(503), &triggers, t0 + Duration::from_millis(80));
        assert_eq!(tries(next), 2);
        let next = a.on_outcome(Outcome::Rejected(486), &triggers, t0 + Duration::from_secs(4));
        assert_eq!(next, Next::GiveUp(GiveUp { status: 486, reason: GiveUpReason::NotRetryable }));
        assert_eq!(a.tried().len(), 2);
        assert_eq!(a.tried()[0].outcome, Outcome::Rejected(503));
        assert_eq!(a.tried()[1].trunk, TrunkId(2));
        assert_eq!(a.tried()[1].ended_at - a.tried()[1].started_at, Duration::from_millis(3920));
    }

    #[test]
    fn default_codes_fail_over_and_603_returns_to_caller() {
        let triggers = FailoverTriggers::default();
        for code in [408, 480, 500, 502, 503, 504] {
            assert!(triggers.fails_over(Outcome::Rejected(code)), "{code}");
        }
        for code in [404, 486, 487, 501, 600, 603, 302] {
            assert!(!triggers.fails_over(Outcome::Rejected(code)), "{code}");
        }
        assert!(triggers.fails_over(Outcome::TransportError));
        assert!(triggers.fails_over(Outcome::Timeout));
        assert!(!triggers.fails_over(Outcome::Cancelled));
        assert_eq!(triggers.codes.iter().collect::<Vec<_>>(), DEFAULT_FAILOVER_CODES);
    }

    #[test]
    fn failover_to_second_carrier_on_timeout_then_connected() {
        let t0 = Instant::now();
        let (mut a, next) = Attempts::start(route(2), FailoverLimits::default(), t0);
        assert_eq!(tries(next), 1);
        let next = a.on_outcome(Outcome::Timeout, &FailoverTriggers::default(), t0 + Duration::from_secs(8));
        assert_eq!(tries(next), 2);
        assert_eq!(a.current().map(|c| c.trunk), Some(TrunkId(2)));
        let next = a.on_outcome(Outcome::Answered, &FailoverTriggers::default(), t0 + Duration::from_secs(10));
        assert_eq!(next, Next::Connected);
        assert_eq!(a.end(), Some(Next::Connected));
        assert!(a.current().is_none());
    }

    #[test]
    fn exhausted_route_returns_last_status_and_transport_error_as_503() {
        let t0 = Instant::now();
        let triggers = FailoverTriggers::default();
        let (mut a, _) = Attempts::start(route(2), FailoverLimits::default(), t0);
        a.on_outcome(Outcome::Rejected(502), &triggers, t0);
        let next = a.on_outcome(Outcome::TransportError, &triggers, t0);
        assert_eq!(next, Next::GiveUp(GiveUp { status: 503, reason: GiveUpReason::Exhausted }));
    }

    #[test]
    fn stops_after_max_tries_with_carriers_left() {
        let t0 = Instant::now();
        let limits = FailoverLimits { max_tries: 2, ..FailoverLimits::default() };
        let triggers = FailoverTriggers::default();
        let (mut a, _) = Attempts::start(route(5), limits, t0);
        assert_eq!(tries(a.on_outcome(Outcome::Rejected(500), &triggers, t0)), 2);
        let next = a.on_outcome(Outcome::Rejected(504), &triggers, t0);
        assert_eq!(next, Next::GiveUp(GiveUp { status: 504, reason: GiveUpReason::MaxTries }));
        assert_eq!(a.tried().len(), 2);
    }

    #[test]
    fn stops_after_max_post_dial_time() {
        let t0 = Instant::now();
        let limits = FailoverLimits { max_post_dial: Duration::from_secs(10), ..FailoverLimits::default() };
        let triggers = FailoverTriggers::default();
        let (mut a, _) = Attempts::start(route(3), limits, t0);
        assert_eq!(a.post_dial_deadline(), t0 + Duration::from_secs(10));
        assert_eq!(tries(a.on_outcome(Outcome::Rejected(480), &triggers, t0 + Duration::from_secs(9))), 2);
        let next = a.on_outcome(Outcome::Timeout, &triggers, t0 + Duration::from_secs(10));
        assert_eq!(next, Next::GiveUp(GiveUp { status: 408, reason: GiveUpReason::PostDialTime }));
    }

    #[test]
    fn no_candidates_gives_up_with_503_at_once() {
        let (mut a, next) = Attempts::start(Vec::new(), FailoverLimits::default(), Instant::now());
        let expected = Next::GiveUp(GiveUp { status: 503, reason: GiveUpReason::NoCandidates });
        assert_eq!(next, expected);
        // A stray outcome after the end changes nothing.
        assert_eq!(a.on_outcome(Outcome::Rejected(503), &FailoverTriggers::default(), Instant::now()), expected);
        assert!(a.tried().is_empty());
    }

    #[test]
    fn caller_cancel_is_never_retried() {
        let t0 = Instant::now();
        let (mut a, _) = Attempts::start(route(3), FailoverLimits::default(), t0);
        let next = a.on_outcome(Outcome::Cancelled, &FailoverTriggers::default(), t0);
        assert_eq!(next, Next::GiveUp(GiveUp { status: 487, reason: GiveUpReason::CallerCancelled }));
    }

    #[test]
    fn per_trunk_triggers_decide_for_the_trunk_that_failed() {
        let t0 = Instant::now();
        let only_503 =
            FailoverTriggers { codes: StatusSet::from_codes(&[503]).unwrap(), transport_error: false, timeout: false };
        let (mut a, _) = Attempts::start(route(3), FailoverLimits::default(), t0);
        assert_eq!(tries(a.on_outcome(Outcome::Rejected(503), &only_503, t0)), 2);
        let next = a.on_outcome(Outcome::Timeout, &only_503, t0);
        assert_eq!(next, Next::GiveUp(GiveUp { status: 408, reason: GiveUpReason::NotRetryable }));
    }

    #[test]
    fn resumed_attempts_go_on_with_the_remaining_carriers_and_count_earlier_tries() {
        let t0 = Instant::now();
        let triggers = FailoverTriggers::default();
        let limits = FailoverLimits { max_tries: 3, ..FailoverLimits::default() };
        let (mut a, _) = Attempts::start(route(4), limits, t0);
        a.on_outcome(Outcome::Rejected(503), &triggers, t0 + Duration::from_secs(1));
        assert_eq!((a.tries(), a.remaining().len()), (2, 2), "1 failed, 2 under way, 3 and 4 left");
        // The other box goes on from here: 2 times out, 3 is tried, and its failure is the third and last try.
        let current = *a.current().expect("carrier 2");
        let mut r =
            Attempts::resume(a.remaining().to_vec(), limits, t0, a.tries() - 1, current, t0 + Duration::from_secs(1));
        assert_eq!(r.tries(), 2);
        assert_eq!(r.current_since(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(tries(r.on_outcome(Outcome::Timeout, &triggers, t0 + Duration::from_secs(5))), 3);
        let next = r.on_outcome(Outcome::Rejected(500), &triggers, t0 + Duration::from_secs(6));
        assert_eq!(next, Next::GiveUp(GiveUp { status: 500, reason: GiveUpReason::MaxTries }));
    }

    #[test]
    fn status_set_rejects_codes_outside_300_to_699() {
        assert_eq!(StatusSet::from_codes(&[503, 200]), Err(FailoverConfigError::NotAFailure(200)));
        assert_eq!(StatusSet::from_codes(&[700]), Err(FailoverConfigError::NotAFailure(700)));
        let set = StatusSet::from_codes(&[300, 699, 486]).unwrap();
        assert_eq!(set.iter().collect::<Vec<_>>(), [300, 486, 699]);
        assert!(!set.contains(200));
        assert_eq!(format!("{set:?}"), "{300, 486, 699}");
    }
}
