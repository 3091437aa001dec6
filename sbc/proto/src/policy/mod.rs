//! Policy applied to calls at the trunk boundary: authentication, and (with the calls work) number rules, identity
//! and rate limits.

pub mod digest;
