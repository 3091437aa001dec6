//! The commands and events between the signalling side (which owns sessions and decides) and the relay's data
//! plane (which owns sockets and moves packets). The embedded relay gets them as values over a channel; a
//! standalone `media-relay` gets the same values as JSON lines on its control socket.
//!
//! The signalling side allocates ports and writes SDP itself ([`crate::session`]), so a slow or dead remote relay
//! never holds up a call's signalling: commands are fire-and-forget, and liveness is tracked with [`Command::Ping`].

use crate::cname::CnameKey;
use crate::sdes::SrtpKeys;
use crate::stats::FlowSummary;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// A call's media session, by the signalling side's number for the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SessionId(pub u64);

/// Which leg of a call: A is the side the call came from, B the carrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Leg {
    /// The calling side.
    A,
    /// The called side (the carrier now tried).
    B,
}

impl Leg {
    /// The other leg.
    pub fn other(self) -> Self {
        match self {
            Self::A => Self::B,
            Self::B => Self::A,
        }
    }

    /// 0 for A, 1 for B: an index into per-leg arrays.
    pub fn index(self) -> usize {
        match self {
            Self::A => 0,
            Self::B => 1,
        }
    }

    /// `a` or `b`, for messages and labels.
    pub fn label(self) -> &'static str {
        match self {
            Self::A => "a",
            Self::B => "b",
        }
    }
}

/// One relay socket and what to do with what arrives on it.
///
/// Packets arriving on `local` come from this leg's peer; they leave through `partner` (the socket of the same
/// stream on the other leg) towards the peer latched there, or the address that leg's SDP gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSpec {
    /// The call.
    pub session: SessionId,
    /// The leg this socket faces.
    pub leg: Leg,
    /// Index of the m= line.
    pub stream: u16,
    /// Whether this is the RTCP socket (RTP+1) of the stream.
    pub rtcp: bool,
    /// The relay's socket: an interface address and a port from the pool.
    pub local: SocketAddr,
    /// The socket on the other leg through which packets arriving here leave.
    pub partner: SocketAddr,
    /// Where this leg's peer said it receives (its SDP); `None` before its SDP is known, or on hold (0.0.0.0).
    /// Confirmed or corrected by the peer's first packets (latching).
    pub peer: Option<SocketAddr>,
    /// The peer as a relay already latched it (after a takeover: on the box that had the call before): trusted
    /// as latched at once, so the flow can go to the kernel before its first packet here. A packet from another
    /// source still re-latches when not strict, and is dropped when strict, as with any latch.
    #[serde(default)]
    pub latched: Option<SocketAddr>,
    /// Once latched, drop packets from any other source (no RTP injection or hijack).
    pub strict: bool,
    /// RTP clock rates by payload type from this peer's SDP, for jitter.
    pub clock_rates: Vec<(u8, u32)>,
    /// The call's CNAME key, when the RTCP this peer sends here is rewritten before it crosses (topology hiding:
    /// SDES CNAME becomes the token the other leg's SDP shows, every other SDES item goes; see [`crate::rtcp`]).
    /// Set for plain RTP streams (`RTP/AVP`, `RTP/AVPF`), on the RTCP socket and on the RTP socket alike (RTCP
    /// may be multiplexed there, RFC 5761). `None`: RTCP crosses untouched (SRTP, whose SRTCP is authenticated
    /// end to end, or no RTP at all). Absent in JSON from an older signalling side: `None`.
    #[serde(default)]
    pub cname_key: Option<CnameKey>,
    /// This leg's SDES-SRTP keys, when the leg is SRTP ([`crate::negotiate`]): what arrives here from the peer is
    /// unprotected with `theirs`, what leaves here towards it is protected with `ours` (set on the RTP and the
    /// RTCP socket alike). `None`: plain RTP. An endpoint with keys, or whose partner has keys, never goes to
    /// the kernel. Absent in JSON from an older signalling side: `None`.
    #[serde(default)]
    pub srtp: Option<Box<SrtpKeys>>,
    /// The leg is to be SRTP but its keys are not agreed yet (`srtp` is `None`): drop what arrives here and what
    /// would leave here, so that no clear media crosses to or from an SRTP leg before its answer. Absent in JSON
    /// from an older signalling side: false.
    #[serde(default)]
    pub srtp_pending: bool,
}

/// From the signalling side to the relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Open the socket if new, and (re)configure it. A changed `peer` drops the latch.
    Upsert(EndpointSpec),
    /// Close every socket of the session; the relay answers with the session's final [`Event::Stats`].
    Remove {
        /// The call.
        session: SessionId,
    },
    /// The session's figures so far, leaving it as it is: answered with [`Event::Figures`] (what the admin API
    /// shows of a call in progress).
    Query {
        /// The call.
        session: SessionId,
    },
    /// Are you there? Answered with [`Event::Pong`].
    Ping {
        /// Echoed back.
        seq: u64,
    },
    /// Drop every packet from `addr` (signalling and media, any port) in the kernel until [`Command::Unban`]: the
    /// signalling side's edge guard banned it. `reason` is its reason code, under which the drops are counted.
    /// A relay without XDP ignores it (the signalling side also drops the source's messages itself).
    Ban {
        /// The source.
        addr: std::net::IpAddr,
        /// The reason code (`sbc_proto::policy::BanReason::code`).
        reason: u32,
    },
    /// The ban on `addr` ended.
    Unban {
        /// The source.
        addr: std::net::IpAddr,
    },
    /// The socket `spec.local` (already upserted, with `srtp_pending` and `strict`) faces a browser: ICE-lite and
    /// DTLS-SRTP run there ([`crate::webrtc::leg`]); the relay answers with [`Event::Latched`] when the browser's
    /// checks latch it and [`Event::WebrtcEnded`] when the leg dies. Sent again with new values after a
    /// re-INVITE that changed the browser's credentials or fingerprint (a new association).
    Webrtc(Box<crate::webrtc::leg::WebrtcSpec>),
    /// [`Command::Webrtc`] for a leg whose handshake another relay made (a takeover in a pair): the leg starts
    /// latched on `resume.peer` and keyed with `resume.keys`, with no handshake; its checks are answered with
    /// `spec.ice` as before. Sent instead of [`Command::Webrtc`] once the call's record has both.
    WebrtcResume {
        /// The leg, as for [`Command::Webrtc`].
        spec: Box<crate::webrtc::leg::WebrtcSpec>,
        /// Where the browser is and the keys of its association.
        resume: crate::webrtc::leg::WebrtcResume,
    },
}

/// Per-leg media figures: what the relay received from that leg's peer and sent to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LegStats {
    /// Received from this leg's peer (RTP and RTCP sockets together).
    pub received: FlowSummary,
    /// Packets sent towards this leg's peer.
    pub sent: u64,
    /// Packets from a source other than the latched peer, dropped in strict mode.
    pub dropped_foreign: u64,
    /// Packets that had nowhere to go yet (the other leg's peer unknown, or on hold).
    pub dropped_no_target: u64,
    /// Packets dropped by SRTP on this leg: failed authentication or replay checks on arrival, or could not be
    /// protected for the other leg. Absent in JSON from an older relay: 0.
    #[serde(default)]
    pub dropped_srtp: u64,
    /// The peer's RTP address as latched from its packets.
    pub latched: Option<SocketAddr>,
    /// Of `received.packets`, those the kernel fast path forwarded (user space saw the rest). Loss and jitter
    /// cover only what user space saw.
    pub kernel_packets: u64,
}

/// A session's media figures, per leg (index with [`Leg::index`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SessionStats {
    /// The call.
    pub session: SessionId,
    /// Leg A, then leg B.
    pub legs: [LegStats; 2],
}

/// From the relay to the signalling side.
// Stats is the largest by far, and there is one per call: boxing it would only move the allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// No packet arrived on any socket of the session for the relay's `rtp_timeout`: the call should end.
    Idle {
        /// The call.
        session: SessionId,
    },
    /// Final figures of a removed session.
    Stats(SessionStats),
    /// Figures so far of a session in progress, answering [`Command::Query`] (all zero for a session the relay does
    /// not hold).
    Figures(SessionStats),
    /// A socket could not be opened (port taken by another program, address gone); that stream has no media.
    BindFailed {
        /// The call.
        session: SessionId,
        /// The socket that failed.
        local: SocketAddr,
        /// The OS error.
        error: String,
    },
    /// The relay latched a peer on one of its sockets (its first packet, or a new source when not strict): the
    /// signalling side keeps it in the call's replication record.
    Latched {
        /// The call.
        session: SessionId,
        /// The relay socket.
        local: SocketAddr,
        /// Where the peer's packets come from.
        peer: SocketAddr,
    },
    /// A WebRTC leg's media ended: no consent for 30 s (the browser vanished), the DTLS handshake failed or timed
    /// out, or the browser closed the association. The signalling side ends the call (BYE on both legs).
    WebrtcEnded {
        /// The call.
        session: SessionId,
        /// The relay socket of the leg.
        local: SocketAddr,
        /// Why, as a metric label ([`crate::webrtc::leg::WebrtcEnd::label`]).
        reason: String,
    },
    /// A WebRTC leg's DTLS handshake completed: its SRTP profile and keys, which the signalling side keeps in the
    /// call's replication record so that a standby's relay carries the leg on after a takeover
    /// ([`Command::WebrtcResume`]). Once per association.
    WebrtcKeyed {
        /// The call.
        session: SessionId,
        /// The relay socket of the leg.
        local: SocketAddr,
        /// The keys (`ours` protects towards the browser).
        keys: crate::sdes::SrtpKeys,
    },
    /// The rollover counter of a WebRTC leg's SRTP stream went up (once per 65,536 packets of an SSRC): the
    /// signalling side keeps it in the call's replication record, so that a standby's relay protects and
    /// unprotects at the same counter after a takeover ([`crate::webrtc::leg::WebrtcResume::rollovers`]).
    SrtpRollover {
        /// The call.
        session: SessionId,
        /// The relay socket of the leg.
        local: SocketAddr,
        /// The stream and its new counter.
        rollover: crate::srtp_roc::Rollover,
    },
    /// Answer to [`Command::Ping`].
    Pong {
        /// The ping's number.
        seq: u64,
    },
}

/// A control message as one JSON line (no newline inside; the caller adds `\n`).
pub fn encode<T: Serialize>(msg: &T) -> String {
    serde_json::to_string(msg).expect("control messages always serialize")
}

/// A control message from one JSON line.
pub fn decode<'a, T: Deserialize<'a>>(line: &'a str) -> Result<T, serde_json::Error> {
    serde_json::from_str(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_as_json_lines() {
        let spec = EndpointSpec {
            session: SessionId(7),
            leg: Leg::B,
            stream: 0,
            rtcp: false,
            local: "198.18.2.1:30000".parse().unwrap(),
            partner: "198.18.1.1:30002".parse().unwrap(),
            peer: Some("198.18.2.10:6000".parse().unwrap()),
            latched: None,
            strict: true,
            clock_rates: vec![(0, 8000)],
            cname_key: Some(CnameKey([9; 16])),
            srtp: Some(Box::new(SrtpKeys {
                suite: crate::sdes::Suite::AesCm128HmacSha1_80,
                ours: crate::sdes::KeyMaterial::new(vec![1; 30]),
                theirs: crate::sdes::KeyMaterial::new(vec![2; 30]),
            })),
            srtp_pending: false,
        };
        for cmd in [Command::Upsert(spec), Command::Remove { session: SessionId(7) }, Command::Ping { seq: 3 }] {
            let line = encode(&cmd);
            assert!(!line.contains('\n'));
            assert_eq!(decode::<Command>(&line).unwrap(), cmd);
        }
        assert!(decode::<Command>(r#"{"cmd":"explode"}"#).is_err());
    }

    #[test]
    fn upsert_without_cname_key_from_an_older_sender_decodes_as_none() {
        let line = r#"{"cmd":"upsert","session":1,"leg":"a","stream":0,"rtcp":true,"local":"198.18.1.1:30001","partner":"198.18.2.1:30001","peer":null,"strict":true,"clock_rates":[]}"#;
        let Command::Upsert(spec) = decode::<Command>(line).unwrap() else { panic!("an upsert") };
        assert_eq!(spec.cname_key, None);
        assert_eq!((spec.srtp, spec.srtp_pending), (None, false));
    }
}
