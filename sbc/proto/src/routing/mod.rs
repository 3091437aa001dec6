//! Carrier routing: which trunk a call goes out on, and what happens when that trunk fails.
//!
//! - [`PrefixTable`]: route prefixes (`[[route]] prefix`) to route entries, by longest-prefix match on the
//!   normalised called number.
//! - [`select`]: a route's [`Candidate`]s ordered for one call: priority ascending, weighted random within a
//!   priority, unusable trunks (down, disabled, over limits: the caller decides) left out with a [`SkipReason`].
//! - [`Attempts`] and [`FailoverTriggers`] / [`FailoverLimits`]: which carrier to try next on a failure (408, 5xx,
//!   timeout, transport error by default), when to give up, with which status; the attempts go into the CDR.
//! - [`Plan`] and [`Trunk`]: the trunks and routes of the configuration, and which trunk a source belongs to.
//! - [`GatewayHealth`]: up/down state of a gateway from OPTIONS probes, with hysteresis ([`ProbeConfig`]).
//!
//! How a call uses it, after leg A is identified and its number rules applied:
//! 1. `table.longest_match(number)` gives the route entry (no match: the caller answers 404 or 484).
//! 2. `select(&route.candidates, usable, &mut random)` orders the carriers; `usable` looks at the trunk's
//!    gateways' [`GatewayHealth`], its admin state and its call and CPS counters.
//! 3. `Attempts::start(selection.ordered, limits, now)` names the first carrier ([`Next::Try`]); each leg-B
//!    failure goes to `attempts.on_outcome(outcome, &trunk.failover, now)`, which names the next carrier, or
//!    ends with [`Next::Connected`] or [`Next::GiveUp`] and the status for leg A.
//!
//! Everything here is sans-IO: time comes in as `Instant`s and randomness as a closure yielding `u64`s.

mod canary;
mod failover;
mod health;
mod prefix;
mod select;
pub mod targets;
mod trunk;

pub use canary::{CanaryConfig, CanaryMedia};
pub use failover::{
    Attempt, Attempts, FailoverConfigError, FailoverLimits, FailoverTriggers, GiveUp, GiveUpReason, Next, Outcome,
    StatusSet, DEFAULT_FAILOVER_CODES,
};
pub use health::{Change, GatewayHealth, HealthState, ProbeConfig};
pub use prefix::{PrefixError, PrefixMatch, PrefixTable, PrefixTableBuilder};
pub use select::{select, Candidate, Selection, SkipReason, Skipped, DEFAULT_WEIGHT};
pub use targets::{DnsGateway, Target};
pub use trunk::{Credentials, Gateway, Limits, Plan, Registration, SourceMatch, Trunk, UnknownSource};

use std::fmt;

/// A trunk, by its index in the loaded configuration's `[[trunk]]` list. Names live in the configuration; the
/// call path carries this index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrunkId(pub u32);

impl fmt::Display for TrunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "trunk#{}", self.0)
    }
}
