//! Per-trunk call counters: concurrent calls and calls per second, checked before a call is admitted or a
//! carrier is chosen.

use crate::routing::{Limits, SkipReason};
use std::time::{Duration, Instant};

/// Which limit a call ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    /// `limits.calls`.
    Calls,
    /// `limits.cps`.
    Cps,
}

impl LimitHit {
    /// Label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::Calls => "calls",
            Self::Cps => "cps",
        }
    }

    /// The reason a route skips a trunk at this limit.
    pub fn skip_reason(self) -> SkipReason {
        match self {
            Self::Calls => SkipReason::CallLimit,
            Self::Cps => SkipReason::CpsLimit,
        }
    }
}

/// Calls on one trunk: how many are up now, how many started in the current one-second window.
#[derive(Debug, Clone, Default)]
pub struct TrunkCounters {
    /// Calls (or call attempts) in progress on the trunk, both directions.
    pub active: u32,
    window: Option<Instant>,
    in_window: u32,
}

impl TrunkCounters {
    /// Whether one more call fits `limits` at `now`.
    pub fn check(&self, limits: &Limits, now: Instant) -> Result<(), LimitHit> {
        if limits.calls.is_some_and(|max| self.active >= max) {
            return Err(LimitHit::Calls);
        }
        let in_window = match self.window {
            Some(start) if now.saturating_duration_since(start) < Duration::from_secs(1) => self.in_window,
            _ => 0,
        };
        if limits.cps.is_some_and(|max| in_window >= max) {
            return Err(LimitHit::Cps);
        }
        Ok(())
    }

    /// [`Self::check`], for a call that will then be [started](Self::start).
    pub fn admit(&self, limits: &Limits, now: Instant) -> Result<(), LimitHit> {
        self.check(limits, now)
    }

    /// Counts a call starting at `now`.
    pub fn start(&mut self, now: Instant) {
        self.active += 1;
        match self.window {
            Some(start) if now.saturating_duration_since(start) < Duration::from_secs(1) => self.in_window += 1,
            _ => {
                self.window = Some(now);
                self.in_window = 1;
            }
        }
    }

    /// Counts a call ending.
    pub fn end(&mut self) {
        self.active = self.active.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_and_cps_limits_bite_and_cps_recovers_after_a_second() {
        let t0 = Instant::now();
        let limits = Limits { calls: Some(3), cps: Some(2) };
        let mut c = TrunkCounters::default();
        c.start(t0);
        c.start(t0);
        assert_eq!(c.check(&limits, t0), Err(LimitHit::Cps));
        let t1 = t0 + Duration::from_millis(1001);
        assert_eq!(c.check(&limits, t1), Ok(()));
        c.start(t1);
        assert_eq!(c.check(&limits, t1), Err(LimitHit::Calls));
        c.end();
        assert_eq!(c.check(&limits, t1), Ok(()));
    }
}
