//! The grammar of a scenario: a configuration, then steps. Identifiers come from small pools (four Call-IDs,
//! three tags, six branches, four CSeq numbers) so that generated messages collide with live transactions and
//! dialogs; answers and in-dialog requests are built from messages the endpoint really sent, so that they reach
//! the calls' own dialogs, whose identifiers are random.

use arbitrary::Arbitrary;

/// One run: how the endpoint is configured, and what happens to it.
#[derive(Debug, Clone, Arbitrary)]
pub struct Scenario {
    /// The configuration.
    pub setup: Setup,
    /// What happens, in order. [`crate::fuzzing::run`] plays at most [`crate::fuzzing::MAX_STEPS`] of them.
    pub steps: Vec<Step>,
}

/// The configuration knobs that change the call logic's paths. The topology is fixed: the customer PBX
/// 198.18.1.10 (trunk `customer-pbx`) calls through carrier b (198.18.2.10), then carrier c (198.18.2.11).
#[derive(Debug, Clone, Copy, Arbitrary)]
pub struct Setup {
    /// Media anchored (SDP rewritten, relay commands out) or signalling only.
    pub media: bool,
    /// In-dialog OPTIONS keepalives every 20 s.
    pub keepalive: bool,
    /// `calls.max_duration`: 30 s, 2 min or 1 h (always set: without a bound on answered calls, a confirmed call
    /// whose peers never send BYE would rightly live forever).
    pub max_duration: u8,
    /// Carriers answering 3xx are followed (tried as a failover).
    pub follow_redirects: bool,
    /// Carrier b has credentials for its 401/407 challenges.
    pub carrier_auth: bool,
    /// `limits.calls` of the customer trunk: none, or 1 to 3.
    pub call_limit: u8,
    /// Whether a timeout of a carrier fails over.
    pub failover_on_timeout: bool,
    /// Unknown sources are dropped instead of refused 403.
    pub drop_unknown: bool,
    /// `calls.max_tries`: 1 to 3.
    pub max_tries: u8,
}

/// Who sends a generated message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub enum Actor {
    /// The customer PBX, 198.18.1.10:5060, a known trunk.
    Customer,
    /// Carrier b, 198.18.2.10:5060.
    CarrierB,
    /// Carrier c, 198.18.2.11:5060.
    CarrierC,
    /// An address that is no trunk, 198.18.1.99:5060.
    Stranger,
}

/// Request methods of the grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub enum Method {
    /// INVITE: a new call without a To tag, a re-INVITE with one.
    Invite,
    /// ACK.
    Ack,
    /// BYE.
    Bye,
    /// CANCEL.
    Cancel,
    /// PRACK (with an RAck).
    Prack,
    /// UPDATE.
    Update,
    /// INFO.
    Info,
    /// OPTIONS.
    Options,
}

/// The identifiers of a request, as indexes into the pools.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub struct Ids {
    /// Call-ID: one of four.
    pub call: u8,
    /// From tag: one of three.
    pub from_tag: u8,
    /// To tag: none (out of dialog), or one of three.
    pub to_tag: Option<u8>,
    /// Via branch: one of six; odd values above 127 lack the magic cookie (RFC 2543 matching).
    pub branch: u8,
    /// CSeq number: 1 to 4.
    pub cseq: u8,
}

/// A message body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub enum Body {
    /// No body.
    None,
    /// An SDP offer or answer with an audio stream at the sender's address, on one of four ports.
    Sdp(u8),
    /// `application/sdp` that is not SDP.
    JunkSdp,
    /// A `text/plain` body.
    Text,
}

/// What a peer does with a request the endpoint sent it.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub struct Answer {
    /// Which request: an index into the requests sent so far (newest first, modulo their number).
    pub to: u8,
    /// The status, from a table of realistic ones (100, 180, 183, 200, 302, 401, 407, 486, 503, ...).
    pub status: u8,
    /// The To tag: one of three.
    pub to_tag: u8,
    /// The body.
    pub body: Body,
    /// 18x sent reliably (Require: 100rel, RSeq).
    pub reliable: bool,
    /// A 2xx with Session-Expires: 90.
    pub session_timer: bool,
    /// A Record-Route on the response.
    pub record_route: bool,
    /// The Contact points somewhere else than the answering peer.
    pub moved_contact: bool,
}

/// Time passing.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Pause {
    /// Up to 65 s, in milliseconds.
    Millis(u16),
    /// Up to 4¼ hours, in minutes.
    Minutes(u8),
}

/// One thing that happens.
#[derive(Debug, Clone, Arbitrary)]
pub enum Step {
    /// A request with identifiers from the pools (a new call when an INVITE has no To tag).
    Request {
        /// The sender.
        from: Actor,
        /// The method.
        method: Method,
        /// Its identifiers.
        ids: Ids,
        /// The called number: one of four (one of them no number at all).
        number: u8,
        /// Its body.
        body: Body,
    },
    /// A peer answers a request the endpoint sent it.
    Answer(Answer),
    /// A peer sends a request inside a dialog it learnt from a message the endpoint sent it.
    InDialog {
        /// Which message: an index into those sent so far (newest first, modulo their number).
        on: u8,
        /// The method.
        method: Method,
        /// The sender's To tag when the message was a request of ours: one of three.
        to_tag: u8,
        /// The branch: one of six.
        branch: u8,
        /// The CSeq number: 1 to 4 above the dialog's.
        cseq: u8,
        /// Its body.
        body: Body,
    },
    /// The caller ACKs a final response the endpoint sent it.
    Ack {
        /// Which response: an index into those sent so far (newest first, modulo their number).
        on: u8,
        /// With the INVITE's branch (the ACK of a non-2xx) or a new one (of a 2xx).
        same_branch: bool,
        /// An answer in the ACK.
        body: Body,
    },
    /// A peer cancels an INVITE it sent.
    Cancel {
        /// Which INVITE: an index into those the peers sent (newest first, modulo their number).
        of: u8,
    },
    /// A peer sends one of its messages again.
    Retransmit {
        /// Which: an index into what the peers sent (newest first, modulo their number).
        which: u8,
    },
    /// A peer sends one of its messages again with one byte changed.
    Mangle {
        /// Which message.
        which: u8,
        /// Where (modulo its length).
        at: u16,
        /// The new byte.
        byte: u8,
    },
    /// Bytes from a peer that no grammar made.
    Garbage {
        /// The sender.
        from: Actor,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// Time passes; the timers due fire.
    Wait(Pause),
    /// Every timer fires, in order, until none is left.
    FireAll,
    /// The media relay reports a call's media idle (`rtp_timeout`): call number 1 to 8.
    MediaIdle(u8),
    /// The media relay stops or starts answering.
    MediaAvailable(bool),
    /// A carrier goes down or up by its probes.
    TrunkUp {
        /// Carrier b (false) or c (true).
        c: bool,
        /// Up or down.
        up: bool,
    },
}
