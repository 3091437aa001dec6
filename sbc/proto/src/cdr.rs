//! Call detail records: what the B2BUA knows about a call when it ends. The core fills these in with the
//! instants it was given; the driver turns instants into wall-clock times and writes one JSON line per call.

use std::time::Instant;

/// One call, both legs.
#[derive(Debug, Clone, PartialEq)]
pub struct Cdr {
    /// Leg A's Call-ID (as the caller sent it).
    pub a_call_id: String,
    /// Leg B's Call-ID of the carrier that answered or was tried last (ours), if any was tried.
    pub b_call_id: Option<String>,
    /// Inbound trunk name.
    pub trunk_in: String,
    /// Outbound trunk of the answering (or last tried) carrier.
    pub trunk_out: Option<String>,
    /// Calling number as presented (From user).
    pub caller: String,
    /// Called number as received (Request-URI user).
    pub called_in: String,
    /// Called number as sent to carriers, after number rules.
    pub called_out: String,
    /// The route prefix that matched (empty for the catch-all route).
    pub route_prefix: Option<String>,
    /// Every carrier tried, in order, with how it ended.
    pub attempts: Vec<CdrAttempt>,
    /// The INVITE from leg A.
    pub setup: Instant,
    /// The first 180/183 relayed to A.
    pub ringing: Option<Instant>,
    /// The 2xx relayed to A.
    pub answer: Option<Instant>,
    /// When the call ended (BYE, CANCEL, failure, timeout).
    pub end: Instant,
    /// Final status sent to A for an unanswered call; 200 for an answered one.
    pub status: u16,
    /// Why the call ended.
    pub release_cause: &'static str,
    /// Who ended it: `a` (caller), `b` (carrier) or `sbc`.
    pub released_by: &'static str,
    /// The call's media session at the relay, if its media was anchored: the driver fills in [`Cdr::media`]
    /// from the relay's final figures for it.
    pub media_session: Option<relay_proto::control::SessionId>,
    /// Per-leg media figures (received from and sent to each leg's peer), once the relay reported them.
    pub media: Option<relay_proto::control::SessionStats>,
}

impl Cdr {
    /// Seconds between answer and end, if answered.
    pub fn duration(&self) -> Option<f64> {
        self.answer.map(|a| self.end.saturating_duration_since(a).as_secs_f64())
    }

    /// Post-dial delay: setup to the first ringing, or to the answer, or to the end.
    pub fn post_dial_delay(&self) -> f64 {
        let first = self.ringing.or(self.answer).unwrap_or(self.end);
        first.saturating_duration_since(self.setup).as_secs_f64()
    }
}

/// One carrier tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdrAttempt {
    /// Trunk name.
    pub trunk: String,
    /// Leg B Call-ID.
    pub call_id: String,
    /// Final status (408 for a timeout, 503 for a transport error, 487 for a cancel), or 200.
    pub status: u16,
}
