//! Replication records for a hot-standby pair (DESIGN.md "Hot standby"): one record per call covers both legs'
//! dialogs, the numbers and times its CDR needs, and its media session. The active core emits a record at the few
//! transitions that matter (answered; a refresh or media change by re-INVITE/UPDATE; ended), each with a higher
//! version; the standby core keeps the newest version of each call as *foreign* and owns them when it takes over.
//!
//! Times cross as "milliseconds before the record was made", from the core's own `now`: no clock is read, and two
//! boxes' `Instant`s never need to agree (the error is the replication delay). In-dialog CSeq numbers are not
//! replicated at every request: a standby that takes over starts each leg's CSeq [`CSEQ_MARGIN`] above the last
//! replicated one, which RFC 3261 allows (CSeq must increase, not be contiguous).
//!
//! Only answered calls are replicated; a call still being set up when the active dies is lost (its caller gets no
//! answer and retries).

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// How far above the last replicated CSeq a standby starts each leg's requests after a takeover.
pub const CSEQ_MARGIN: u32 = 1000;

/// One leg's dialog as replicated (RFC 3261 §12 state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DialogRecord {
    /// Call-ID of the leg.
    pub call_id: String,
    /// Our tag.
    pub local_tag: String,
    /// The peer's tag.
    pub remote_tag: Option<String>,
    /// Our URI (name-addr, no tag).
    pub local_uri: String,
    /// The peer's URI (name-addr, no tag).
    pub remote_uri: String,
    /// The peer's Contact URI.
    pub remote_target: String,
    /// Route set, in Route order.
    pub route_set: Vec<String>,
    /// Our last CSeq on this leg.
    pub local_cseq: u32,
    /// `udp`, `tcp`, ...
    pub transport: String,
    /// Our address on this leg (a service address, which moves with the active role).
    pub local: SocketAddr,
    /// The peer's address.
    pub remote: SocketAddr,
    /// Our Contact (name-addr).
    pub contact: String,
}

/// One carrier tried, for the CDR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// Trunk name.
    pub trunk: String,
    /// Leg B Call-ID.
    pub call_id: String,
    /// How it ended.
    pub status: u16,
}

/// An answered call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// The call's number (also its media session id).
    pub id: u64,
    /// Higher is newer; a standby ignores a version it already has.
    pub version: u64,
    /// Leg A's INVITE as received (raw SIP): the call's identity on leg A.
    pub a_invite: String,
    /// Leg A's dialog.
    pub a: DialogRecord,
    /// Leg A's trunk, by name (trunk numbers may differ between the boxes' configs).
    pub a_trunk: String,
    /// Leg B's INVITE as sent (raw SIP).
    pub b_invite: String,
    /// Leg B's dialog.
    pub b: DialogRecord,
    /// Leg B's trunk, by name.
    pub b_trunk: String,
    /// The ACK we sent for B's 2xx (raw SIP), resent if B retransmits its 2xx.
    pub b_ack: Option<String>,
    /// CDR context.
    pub caller: String,
    /// Called number as received.
    pub called_in: String,
    /// Called number after trunk A's rules (what routes matched).
    pub called_routed: String,
    /// Called number as sent.
    pub called_out: String,
    /// The matched route prefix.
    pub route_prefix: String,
    /// Carriers tried, in order.
    pub attempts: Vec<AttemptRecord>,
    /// The INVITE from A, this long before the record was made.
    pub setup_ms_ago: u64,
    /// The first ringing, this long before.
    pub ringing_ms_ago: Option<u64>,
    /// The answer, this long before.
    pub answer_ms_ago: u64,
    /// When the negotiated session interval runs out, in ms from the record (RFC 4028).
    pub session_expires_in_ms: Option<u64>,
    /// The call's media session, when media is anchored.
    pub media: Option<relay_proto::session::SessionRecord>,
}

/// What the active sends to the standby.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Record {
    /// A call, new or changed.
    Call(Box<CallRecord>),
    /// The call ended (its CDR was written by the active).
    Ended {
        /// The call.
        id: u64,
        /// Its last version + 1.
        version: u64,
    },
}

impl Record {
    /// The call the record is about.
    pub fn id(&self) -> u64 {
        match self {
            Self::Call(c) => c.id,
            Self::Ended { id, .. } => *id,
        }
    }

    /// Its version.
    pub fn version(&self) -> u64 {
        match self {
            Self::Call(c) => c.version,
            Self::Ended { version, .. } => *version,
        }
    }
}
