//! The hygiene of stream transports (TCP, TLS, WS and WSS): who may connect, how long a connection may take to
//! say something, how large a message may grow, and why a connection was closed.
//!
//! Everything here is sans-IO, with time passed in: [`admission`] decides at accept ([`SourceTable`]),
//! [`deadlines`] decides when a connection is over ([`ConnClock`]), [`framer`] cuts messages out of the stream
//! with work in proportion to what arrives ([`Framer`]), [`upgrade`] judges WebSocket upgrade requests
//! ([`UpgradePolicy`]), [`LogThrottle`] keeps a flood of refusals from flooding the log. The transports only apply
//! the decisions.

pub mod admission;
pub mod deadlines;
pub mod framer;
pub mod upgrade;

pub use admission::{Admitted, Refusal, SourceClass, SourceKey, SourceTable, TrunkSources};
pub use deadlines::{ConnClock, KeepAlive, KeepAliveAction, Origin, Timeouts, PONG_WITHIN};
pub use framer::Framer;
pub use upgrade::{Origins, UpgradePolicy, UpgradeRefusal};

use std::time::{Duration, Instant};

/// The limits of stream connections, from `[sip]` in the config (`config/README.md` explains each default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// Largest message accepted; a larger one closes the connection (the stream cannot be resynchronised). Also
    /// the cap of a connection's read buffer.
    pub max_message_size: usize,
    /// Open connections at most, all sources and our own together.
    pub max_connections: usize,
    /// Open connections at most from one source that is no trunk (an IPv4 address, an IPv6 /64).
    pub max_per_source: usize,
    /// Open connections at most from one address of a trunk's `match.source`.
    pub max_per_trunk_source: usize,
    /// Of `max_connections`, how many only trunk sources may take.
    pub trunk_reserve: usize,
    /// From accept to the end of the first whole message.
    pub first_message_timeout: Duration,
    /// From the first byte of a message to its end (slowloris); also the longest one write may take.
    pub message_timeout: Duration,
    /// No traffic either way for this long closes the connection.
    pub idle_timeout: Duration,
}

impl Default for StreamLimits {
    /// The defaults of `[sip]`.
    fn default() -> Self {
        Self {
            max_message_size: 65535,
            max_connections: 1024,
            max_per_source: 32,
            max_per_trunk_source: 256,
            trunk_reserve: 256,
            first_message_timeout: Duration::from_secs(10),
            message_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// Why a connection was closed. Counted as `sbc_tcp_connections_closed_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer closed it (or reset it).
    ClosedByPeer,
    /// No traffic either way for the idle timeout.
    Idle,
    /// No whole message within the first-message deadline of an accepted connection.
    FirstMessageTimeout,
    /// A message begun but not finished within the message deadline (slowloris).
    MessageTimeout,
    /// A message larger than the maximum.
    TooLarge,
    /// A stream that cannot be framed (no usable Content-Length).
    Framing,
    /// Reading failed.
    ReadError,
    /// Writing failed.
    WriteError,
    /// A write did not complete within the message deadline: the peer does not read.
    WriteTimeout,
    /// The queue of messages waiting to be written was full: the peer does not read fast enough.
    WriteQueueFull,
    /// The SBC is stopping.
    Shutdown,
    /// The edge guard dropped a message of the source (banned, or over its rate): the connection goes with it.
    Banned,
    /// A connection we opened got nothing back within [`PONG_WITHIN`] of a keep-alive ping (RFC 5626 §4.4.1).
    KeepaliveTimeout,
}

impl CloseReason {
    /// Every reason, for zero-valued metric series.
    pub const ALL: [CloseReason; 13] = [
        Self::ClosedByPeer,
        Self::Idle,
        Self::FirstMessageTimeout,
        Self::MessageTimeout,
        Self::TooLarge,
        Self::Framing,
        Self::ReadError,
        Self::WriteError,
        Self::WriteTimeout,
        Self::WriteQueueFull,
        Self::Shutdown,
        Self::Banned,
        Self::KeepaliveTimeout,
    ];

    /// Label value for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::ClosedByPeer => "closed_by_peer",
            Self::Idle => "idle",
            Self::FirstMessageTimeout => "first_message_timeout",
            Self::MessageTimeout => "message_timeout",
            Self::TooLarge => "too_large",
            Self::Framing => "framing",
            Self::ReadError => "read_error",
            Self::WriteError => "write_error",
            Self::WriteTimeout => "write_timeout",
            Self::WriteQueueFull => "write_queue_full",
            Self::Shutdown => "shutdown",
            Self::Banned => "banned",
            Self::KeepaliveTimeout => "keepalive_timeout",
        }
    }
}

/// At most one log line per interval for a repeated event, each line saying how many were left unlogged before
/// it: a flood of refused connections must not become a flood of log lines.
#[derive(Debug, Clone)]
pub struct LogThrottle {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogThrottle {
    /// One line per `every` at most.
    pub fn new(every: Duration) -> Self {
        Self { every, last: None, suppressed: 0 }
    }

    /// The event happened at `now`: `Some(n)` to log it now, `n` being the events left unlogged since the last
    /// line; `None` to stay quiet.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_events_logs_one_line_per_interval_with_the_count_left_out() {
        let t0 = Instant::now();
        let mut t = LogThrottle::new(Duration::from_secs(10));
        // 5,000 events over 25 s, one every 5 ms: lines at 0, 10 and 20 s.
        let lines: Vec<u64> = (0..5000u32).filter_map(|i| t.allow(t0 + Duration::from_millis(5) * i)).collect();
        assert_eq!(lines, [0, 1999, 1999]);
    }

    #[test]
    fn every_reason_has_its_own_label() {
        let labels: std::collections::HashSet<_> = CloseReason::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), CloseReason::ALL.len());
        let refusals: std::collections::HashSet<_> = Refusal::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(refusals.len(), Refusal::ALL.len());
    }
}
