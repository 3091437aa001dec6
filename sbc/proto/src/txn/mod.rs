//! RFC 3261 §17 transactions, with RFC 6026's Accepted states, as sans-IO state machines.
//!
//! Timers are deadlines: each machine says when it next needs [`Transactions::handle_timeout`], and time is always
//! an argument. [`Transactions`] holds every transaction by [`TransactionKey`], routes messages to them, and
//! reports what happened as [`Event`]s, drained with [`Transactions::poll_event`] after every input.
//!
//! Call order: `handle_request` / `handle_response` / `handle_timeout` / `respond` / `send_request`, then
//! `poll_event` until `None`, then `poll_timeout` to know when to come back.

mod client;
mod key;
mod server;
mod table;

pub use key::{Side, TransactionKey};
pub use table::Transactions;

use crate::endpoint::Observation;
use crate::msg::{Message, Request, Response};
use crate::transport::Peer;
use std::time::Duration;

/// Timer values (RFC 3261 §17.1.1.1, Table 4). Defaults are the RFC's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerConfig {
    /// T1, the round-trip estimate: first retransmission interval, and the unit of timers B, F, H, J (64×T1).
    /// Default 500 ms.
    pub t1: Duration,
    /// T2, the cap on retransmission intervals for non-INVITE requests and INVITE final responses. Default 4 s.
    pub t2: Duration,
    /// T4, how long the network may hold a message: timers I and K. Default 5 s.
    pub t4: Duration,
    /// Timer D, how long a client INVITE transaction absorbs retransmitted final responses over UDP.
    /// Default 32 s (the RFC's "at least 32 s").
    pub timer_d: Duration,
    /// A server INVITE transaction sends 100 Trying itself when the core has not answered within this time
    /// (§17.2.1). Default 200 ms.
    pub trying_after: Duration,
    /// How long a client INVITE transaction waits for a final response after its latest provisional: then it
    /// ends as timed out (a B2BUA's use of the proxy's timer C, §16.6 and §16.8; timer B stops at the first
    /// provisional). Default 181 s (the RFC: more than 3 minutes).
    pub timer_c: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_d: Duration::from_secs(32),
            trying_after: Duration::from_millis(200),
            timer_c: Duration::from_secs(181),
        }
    }
}

/// The four machines of §17.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Client INVITE (§17.1.1).
    Ict,
    /// Client non-INVITE (§17.1.2).
    Nict,
    /// Server INVITE (§17.2.1).
    Ist,
    /// Server non-INVITE (§17.2.2).
    Nist,
}

impl Kind {
    /// Label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ict => "ict",
            Self::Nict => "nict",
            Self::Ist => "ist",
            Self::Nist => "nist",
        }
    }
}

/// What the transaction layer reports to its user (the core).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new request created a server transaction: answer it with [`Transactions::respond`].
    Request {
        /// The new transaction.
        key: TransactionKey,
        /// Where it came from.
        peer: Peer,
        /// The request.
        request: Request,
    },
    /// A response for a client transaction (provisional, or the first final).
    Response {
        /// The transaction.
        key: TransactionKey,
        /// The response.
        response: Response,
    },
    /// A message that matched no transaction and is for the core to judge: an ACK for a 2xx (it is end to end,
    /// §17.1.1.3), a 2xx retransmission after the client transaction ended, or a stray response.
    Stray {
        /// Where it came from.
        peer: Peer,
        /// The message.
        message: Message,
    },
    /// Timer B or F fired: no final response. The core acts as if a 408 had arrived (§8.1.3.1).
    Timeout {
        /// The transaction.
        key: TransactionKey,
    },
    /// The transport could not deliver this client transaction's request (connection refused or timed out, TLS
    /// handshake failed, §17.1.4): the core acts as if a 503 had arrived (§8.1.3.1) and may fail over at once.
    TransportError {
        /// The transaction.
        key: TransactionKey,
    },
    /// A server INVITE transaction's final non-2xx was never acknowledged (timer H).
    AckTimeout {
        /// The transaction.
        key: TransactionKey,
    },
    /// Send this message.
    Transmit {
        /// To whom.
        peer: Peer,
        /// The message.
        message: Message,
    },
    /// Something to count.
    Observe(Observation),
}

/// The earlier of two optional deadlines.
fn earliest(a: Option<std::time::Instant>, b: Option<std::time::Instant>) -> Option<std::time::Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Why a call on [`Transactions`] was refused. These are mistakes of the caller (the core), not of peers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    /// No such transaction (it ended, or never existed).
    #[error("no such transaction")]
    Unknown,
    /// The transaction is past the point where it can send this (e.g. a second final response).
    #[error("transaction cannot send this response in its state")]
    State,
    /// The request lacks a header a transaction needs (Via with branch, CSeq).
    #[error("request lacks {0}")]
    Malformed(&'static str),
}

#[cfg(test)]
mod tests;
