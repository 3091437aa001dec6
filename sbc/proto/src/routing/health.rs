//! Gateway health from OPTIONS probes: up or down, with hysteresis, and when to probe next.

use std::time::{Duration, Instant};

/// Probing of a trunk's gateways (`probe = { options_every, down_after, up_after }` of a `[[trunk]]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeConfig {
    /// Time between OPTIONS probes to one gateway (`options_every`). Default 5 s.
    pub interval: Duration,
    /// Consecutive failed probes (an error response, a transport error or timer F) that take an up gateway down.
    /// Default 3. 0 behaves as 1.
    pub down_after: u32,
    /// Consecutive successful probes (the driver decides what counts as alive;
    /// usually any response except 408 and 503) that
    /// bring a down gateway back up. Default 2. 0 behaves as 1.
    pub up_after: u32,
    /// State of a gateway before any probe has answered. Default [`HealthState::Up`]: at start and at reload,
    /// calls flow at once instead of waiting `up_after × interval` for every gateway; a dead one is found after
    /// `down_after` probes, and until then failover covers its calls.
    pub initial: HealthState,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self { interval: Duration::from_secs(5), down_after: 3, up_after: 2, initial: HealthState::Up }
    }
}

/// Whether a gateway takes calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HealthState {
    /// Takes calls.
    Up,
    /// Skipped by selection until enough probes succeed.
    Down,
}

/// A state change, reported once, when it happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Change {
    /// Up → Down after `down_after` consecutive failures.
    WentDown,
    /// Down → Up after `up_after` consecutive successes.
    WentUp,
}

impl Change {
    /// The state after the change.
    pub fn state(self) -> HealthState {
        match self {
            Self::WentDown => HealthState::Down,
            Self::WentUp => HealthState::Up,
        }
    }
}

/// The health of one gateway, fed with probe results.
///
/// Call order: [`next_probe_at`](Self::next_probe_at) says when to send; the driver sends OPTIONS and calls
/// [`on_probe_sent`](Self::on_probe_sent); when the transaction ends it calls
/// [`on_probe_result`](Self::on_probe_result), which returns a [`Change`] exactly on the probe that flips the
/// state. Probes are spaced from the time each was sent, whether or not the previous one has answered (timer F,
/// 32 s, is longer than the default interval).
#[derive(Debug, Clone)]
pub struct GatewayHealth {
    config: ProbeConfig,
    state: HealthState,
    successes: u32,
    failures: u32,
    last_sent: Option<Instant>,
}

impl GatewayHealth {
    /// A gateway in [`ProbeConfig::initial`] state, to be probed at once.
    pub fn new(config: ProbeConfig) -> Self {
        Self { config, state: config.initial, successes: 0, failures: 0, last_sent: None }
    }

    /// The current state.
    pub fn state(&self) -> HealthState {
        self.state
    }

    /// Whether the gateway takes calls.
    pub fn is_up(&self) -> bool {
        self.state == HealthState::Up
    }

    /// When the next probe is due: `now` if none was sent yet, else one interval after the last one sent (which
    /// may be in the past: send at once).
    pub fn next_probe_at(&self, now: Instant) -> Instant {
        self.last_sent.map_or(now, |sent| sent + self.config.interval)
    }

    /// A probe was sent at `now`.
    pub fn on_probe_sent(&mut self, now: Instant) {
        self.last_sent = Some(now);
    }

    /// A probe ended: `ok` if the gateway answered as alive. Returns the change of state, if this probe made one.
    pub fn on_probe_result(&mut self, ok: bool) -> Option<Change> {
        if ok {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if self.state == HealthState::Down && self.successes >= self.config.up_after.max(1) {
                self.state = HealthState::Up;
                return Some(Change::WentUp);
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.state == HealthState::Up && self.failures >= self.config.down_after.max(1) {
                self.state = HealthState::Down;
                return Some(Change::WentDown);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_after_three_failed_probes_up_after_two() {
        let mut gw = GatewayHealth::new(ProbeConfig::default());
        assert!(gw.is_up());
        assert_eq!(gw.on_probe_result(false), None);
        assert_eq!(gw.on_probe_result(false), None);
        assert_eq!(gw.on_probe_result(false), Some(Change::WentDown));
        assert_eq!(gw.state(), HealthState::Down);
        assert_eq!(gw.on_probe_result(false), None, "reported once");
        assert_eq!(gw.on_probe_result(true), None);
        assert_eq!(gw.on_probe_result(true), Some(Change::WentUp));
        assert!(gw.is_up());
        assert_eq!(gw.on_probe_result(true), None, "reported once");
    }

    #[test]
    fn a_success_between_failures_restarts_the_count() {
        let mut gw = GatewayHealth::new(ProbeConfig::default());
        for ok in [false, false, true, false, false] {
            assert_eq!(gw.on_probe_result(ok), None);
        }
        assert!(gw.is_up());
        assert_eq!(gw.on_probe_result(false), Some(Change::WentDown));
        // Down: a failure between successes restarts the count up.
        for ok in [true, false, true] {
            assert_eq!(gw.on_probe_result(ok), None);
        }
        assert_eq!(gw.on_probe_result(true), Some(Change::WentUp));
    }

    #[test]
    fn starting_down_needs_up_after_successes() {
        let config = ProbeConfig { initial: HealthState::Down, up_after: 3, ..ProbeConfig::default() };
        let mut gw = GatewayHealth::new(config);
        assert!(!gw.is_up());
        assert_eq!(gw.on_probe_result(true), None);
        assert_eq!(gw.on_probe_result(true), None);
        assert_eq!(gw.on_probe_result(true).map(Change::state), Some(HealthState::Up));
    }

    #[test]
    fn zero_thresholds_act_as_one() {
        let config = ProbeConfig { down_after: 0, up_after: 0, ..ProbeConfig::default() };
        let mut gw = GatewayHealth::new(config);
        assert_eq!(gw.on_probe_result(false), Some(Change::WentDown));
        assert_eq!(gw.on_probe_result(true), Some(Change::WentUp));
    }

    #[test]
    fn first_probe_at_once_then_every_five_seconds_from_sending() {
        let t0 = Instant::now();
        let mut gw = GatewayHealth::new(ProbeConfig::default());
        assert_eq!(gw.next_probe_at(t0), t0);
        gw.on_probe_sent(t0);
        assert_eq!(gw.next_probe_at(t0 + Duration::from_secs(1)), t0 + Duration::from_secs(5));
        // No answer yet (timer F runs 32 s): the next probe is still due on schedule.
        let t1 = t0 + Duration::from_millis(5_020);
        gw.on_probe_sent(t1);
        gw.on_probe_result(true);
        assert_eq!(gw.next_probe_at(t1), t1 + Duration::from_secs(5));
    }
}
