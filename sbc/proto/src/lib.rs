//! Sans-IO signalling core of the SBC.
//!
//! Nothing in this crate owns a socket, a timer or a clock: bytes and the current time come in as arguments, and
//! what to send and when to wake up come out as values. The tokio driver in the `sbc` crate moves the bytes.
//!
//! - [`msg`]: the zero-copy SIP message parser and serializer (RFC 3261 §7, §20, §25).
//! - [`routing`]: carrier routing: prefix table (longest match), selection by priority and weight, failover
//!   policy and attempts, gateway health from OPTIONS probes.
//! - [`txn`]: the four transaction state machines of RFC 3261 §17, with timers as deadlines.

pub mod b2bua;
pub mod cdr;
pub mod dialog;
pub mod endpoint;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod ha;
pub mod hep;
pub mod msg;
pub mod policy;
pub mod registrar;
pub mod routing;
pub mod transport;
pub mod txn;
