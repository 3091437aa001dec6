//! Policy applied at the public edge and at the trunk boundary: per-source limits and bans, overload control,
//! authentication, number rules and identity.
//!
//! - [`edge`]: per source address: message rates, offences (malformed, failed authentication, scanners) and the
//!   bans they earn ([`Edge`]).
//! - [`overload`]: how many new calls to take while the SBC cannot keep up ([`Overload`]).
//! - [`digest`]: HTTP Digest authentication (RFC 3261 §22): answering challenges, challenging customers.
//! - [`numbers`]: per-trunk number rules ([`NumberRules`]): E.164 normalisation, prefix strip and add, regex
//!   rewrites, in that order. A trunk's `numbers_in` apply to the numbers of calls from it (before routing),
//!   its `numbers_out` to the numbers of calls to it.
//! - [`identity`]: the calling identity across the B2BUA ([`identity::outbound`]): P-Asserted-Identity from a
//!   trusted trunk or a verified number, removed at a trust boundary; Privacy honoured with an anonymous From; the
//!   From user kept as presented (CLIP no screening) or replaced by the asserted number.

pub mod digest;
pub mod edge;
pub mod identity;
pub mod numbers;
pub mod overload;

pub use edge::{BanEvent, BanReason, Edge, EdgeConfig, Offence, Scanners, Threshold, Verdict};
pub use identity::{Cli, IdentityIn, IdentityOut, Outbound, Presented};
pub use numbers::{Affix, DiallingPlan, NumberRuleError, NumberRules, Rewrite};
pub use overload::{admits, AdmissionGate, Overload, OverloadConfig};
