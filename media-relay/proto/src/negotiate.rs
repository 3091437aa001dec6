//! SDES offer/answer per stream and leg (RFC 4568 §7, RFC 3264): what each leg's SDP says about keys, given the
//! leg's [`SrtpMode`], and what the relay then uses ([`StreamCrypto::active`]).
//!
//! The B2BUA tells the session layer whether a body is an offer or an answer ([`SdpKind`]); it knows from the
//! message that carries it. For a stream of an offer from leg F to leg T:
//!
//! 1. [`StreamCrypto::take_offer`] on F's side reads F's `a=crypto` lines and picks the first usable one (in F's
//!    order of preference) if F's mode allows SRTP; an `RTP/SAVP` offer without one, or a plain offer on a
//!    `required` leg, is refused (488).
//! 2. [`StreamCrypto::make_offer`] on T's side writes our offer to T: `RTP/SAVP` (`required`) or `RTP/AVP`
//!    (`optional`, best-effort SRTP; `off`) with our own keys for T, one per suite of [`Suite::OFFERED`].
//!
//! For the answer from T back to F:
//!
//! 3. [`StreamCrypto::take_answer`] on T's side pairs T's `a=crypto` line with ours by tag and suite; T's key and
//!    our key of that suite become T's [`SrtpKeys`]. No line: plain RTP, unless T's mode is `required` or the
//!    answer is `RTP/SAVP` (refused: the call ends).
//! 4. [`StreamCrypto::make_answer`] on F's side answers F in the transport F offered, with the tag and suite F's
//!    line had and our own key for F; F's key and ours become F's [`SrtpKeys`].
//!
//! Our key for a leg and suite is drawn once and kept for the leg's life ([`StreamCrypto::reset`] forgets it when
//! the leg faces a new peer: the next carrier): an answer repeated in a 200 after a 183, or a re-offer that changes
//! nothing, carries the same key, so the relay's contexts (and their rollover counters) stay. A peer that sends a
//! new key in a re-offer gets a new context for what it sends ([`crate::srtp`] keeps the old one briefly for
//! packets in flight). Keys are never carried across: F's key goes nowhere but F's own [`SrtpKeys`].

use crate::control::Leg;
use crate::sdes::{CryptoAttr, KeyMaterial, KeySource, KeySourceError, SrtpKeys, SrtpMode, Suite};
use crate::sdp::{MediaLine, Transport};
use serde::{Deserialize, Serialize};

/// Where an SDP body stands in its offer/answer exchange (RFC 3264), as the B2BUA knows from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdpKind {
    /// An offer (an INVITE's or re-INVITE's body, an UPDATE's, a 2xx's after an INVITE without a body).
    Offer,
    /// An offer towards a leg that now faces a new peer (the INVITE to the next carrier): our keys for that leg
    /// are drawn afresh, nothing of the previous carrier's exchange is kept.
    OfferToNewPeer,
    /// An answer (in a 18x or 2xx to an offer, in an ACK or PRACK to an offer in a response).
    Answer,
}

/// How the B2BUA sees one SDP body: its place in offer/answer, and the SRTP policy of each leg (A, then B; leg B's
/// is that of the carrier now tried).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exchange {
    /// Offer or answer.
    pub kind: SdpKind,
    /// Each leg's [`SrtpMode`], indexed by [`Leg::index`].
    pub srtp: [SrtpMode; 2],
}

impl Exchange {
    /// `kind` between two plain-RTP legs.
    pub fn plain(kind: SdpKind) -> Self {
        Self { kind, srtp: [SrtpMode::Off; 2] }
    }
}

/// Why SDES negotiation refused an SDP; the B2BUA answers 488 (or ends the call when it was an answer).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SrtpError {
    /// The leg's peer offered `RTP/SAVP` on a leg whose trunk has `srtp = "off"`.
    #[error("leg {}: SRTP offered on a trunk with srtp = off", .0.label())]
    NotAllowed(Leg),
    /// `RTP/SAVP` without an `a=crypto` line we can use (suite, key length, MKI, session parameters).
    #[error("leg {}: no usable a=crypto line in an RTP/SAVP offer", .0.label())]
    NoUsableKey(Leg),
    /// The trunk has `srtp = "required"` and the SDP is plain RTP (or its keys are unusable).
    #[error("leg {}: srtp = required and the SDP has no usable key", .0.label())]
    Required(Leg),
    /// The answer's `a=crypto` does not pair with a line of our offer (tag and suite), or is unreadable.
    #[error("leg {}: the answer's a=crypto does not match our offer", .0.label())]
    AnswerMismatch(Leg),
    /// Our keys could not be drawn.
    #[error(transparent)]
    Keys(#[from] KeySourceError),
}

/// The line picked from a peer's offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerLine {
    /// Its tag, repeated in our answer.
    pub tag: u32,
    /// Its suite.
    pub suite: Suite,
    /// The peer's key.
    pub key: KeyMaterial,
}

/// SDES state of one leg's stream, kept (and replicated) with the call's media.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamCrypto {
    /// Our key for this leg, per suite: drawn when first needed, kept for the leg's life.
    #[serde(default)]
    pub ours: Vec<(Suite, KeyMaterial)>,
    /// The tags and suites of the lines we last offered this leg's peer (empty: no key offered).
    #[serde(default)]
    pub offered: Vec<(u32, Suite)>,
    /// The transport of the peer's last offer: our answer keeps it (RFC 3264 §6).
    #[serde(default)]
    pub peer_offer_proto: Option<String>,
    /// The line picked from the peer's last offer; `None`: plain RTP answered.
    #[serde(default)]
    pub peer_offer: Option<PeerLine>,
    /// What the relay uses on this leg now; `None`: plain RTP.
    #[serde(default)]
    pub active: Option<SrtpKeys>,
    /// The leg's policy as of the last exchange.
    #[serde(default)]
    pub mode: SrtpMode,
}

/// Whether `proto` is an RTP profile whose SDES the relay terminates: `RTP/AVP`, `RTP/AVPF`, `RTP/SAVP`,
/// `RTP/SAVPF`. (DTLS-SRTP's `UDP/TLS/RTP/SAVPF` is not: its keys are not in the SDP.)
pub fn terminated(proto: &str) -> bool {
    ["RTP/AVP", "RTP/AVPF", "RTP/SAVP", "RTP/SAVPF"].iter().any(|p| proto.eq_ignore_ascii_case(p))
}

fn is_savp(proto: &str) -> bool {
    proto.to_ascii_uppercase().starts_with("RTP/SAVP")
}

impl StreamCrypto {
    /// The leg now faces a new peer: forget our keys and every exchange.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// The leg is to be SRTP (its policy is `required`, or its peer offered a key we took) and its keys are not
    /// agreed yet: the relay then lets no packet in or out on it, so that nothing crosses in the clear and nothing
    /// unauthenticated gets through before the answer.
    pub fn pending(&self) -> bool {
        self.active.is_none() && (self.mode == SrtpMode::Required || self.peer_offer.is_some())
    }

    /// Our key for `suite`, drawn now if this leg has none for it.
    fn key_for(&mut self, suite: Suite, keys: &mut dyn KeySource) -> Result<KeyMaterial, KeySourceError> {
        if let Some((_, k)) = self.ours.iter().find(|(s, _)| *s == suite) {
            return Ok(k.clone());
        }
        let k = KeyMaterial::generate(suite, keys)?;
        self.ours.push((suite, k.clone()));
        Ok(k)
    }

    /// Step 1: the leg's peer (on leg `leg`, with `mode`) offers `line`.
    pub fn take_offer(&mut self, line: &MediaLine, mode: SrtpMode, leg: Leg) -> Result<(), SrtpError> {
        let savp = is_savp(&line.proto);
        let pick = match mode {
            SrtpMode::Off => None,
            SrtpMode::Optional | SrtpMode::Required => line
                .crypto
                .iter()
                .find_map(|v| CryptoAttr::parse(v).ok())
                .map(|a| PeerLine { tag: a.tag, suite: a.suite, key: a.key }),
        };
        match (&pick, mode) {
            (None, SrtpMode::Off) if savp => return Err(SrtpError::NotAllowed(leg)),
            (None, _) if savp => return Err(SrtpError::NoUsableKey(leg)),
            (None, SrtpMode::Required) => return Err(SrtpError::Required(leg)),
            _ => {}
        }
        self.peer_offer_proto = Some(line.proto.clone());
        self.peer_offer = pick;
        self.mode = mode;
        Ok(())
    }

    /// Step 2: our offer to this leg's peer (with `mode`) for a line that came as `proto` from the other leg.
    pub fn make_offer(
        &mut self,
        proto: &str,
        mode: SrtpMode,
        keys: &mut dyn KeySource,
    ) -> Result<Transport, SrtpError> {
        let feedback = proto.to_ascii_uppercase().ends_with('F');
        let proto = match (mode, feedback) {
            (SrtpMode::Required, false) => "RTP/SAVP",
            (SrtpMode::Required, true) => "RTP/SAVPF",
            (_, false) => "RTP/AVP",
            (_, true) => "RTP/AVPF",
        };
        let mut crypto = Vec::new();
        self.offered.clear();
        self.mode = mode;
        if mode != SrtpMode::Off {
            for (i, suite) in Suite::OFFERED.into_iter().enumerate() {
                let tag = i as u32 + 1;
                let key = self.key_for(suite, keys)?;
                crypto.push(CryptoAttr { tag, suite, key }.to_string());
                self.offered.push((tag, suite));
            }
        }
        Ok(Transport { proto: proto.to_owned(), crypto })
    }

    /// Step 3: the leg's peer (with `mode`) answers our offer with `line`.
    pub fn take_answer(&mut self, line: &MediaLine, mode: SrtpMode, leg: Leg) -> Result<(), SrtpError> {
        self.mode = mode;
        if line.port == 0 {
            // The stream is rejected: no media either way.
            self.active = None;
            return Ok(());
        }
        let Some(value) = line.crypto.first().filter(|_| !self.offered.is_empty()) else {
            if is_savp(&line.proto) && !self.offered.is_empty() {
                return Err(SrtpError::AnswerMismatch(leg));
            }
            if mode == SrtpMode::Required {
                return Err(SrtpError::Required(leg));
            }
            self.active = None;
            return Ok(());
        };
        let a = CryptoAttr::parse(value).map_err(|_| SrtpError::AnswerMismatch(leg))?;
        if !self.offered.contains(&(a.tag, a.suite)) {
            return Err(SrtpError::AnswerMismatch(leg));
        }
        let ours = self.ours.iter().find(|(s, _)| *s == a.suite).map(|(_, k)| k.clone());
        let ours = ours.ok_or(SrtpError::AnswerMismatch(leg))?;
        self.active = Some(SrtpKeys { suite: a.suite, ours, theirs: a.key });
        Ok(())
    }

    /// Step 4: our answer to this leg's peer, whose offer [`StreamCrypto::take_offer`] read; `answer_proto` is the
    /// transport of the answer we relay (used when the offer's is not known, as after an older record).
    pub fn make_answer(&mut self, answer_proto: &str, keys: &mut dyn KeySource) -> Result<Transport, SrtpError> {
        let proto = self.peer_offer_proto.clone().unwrap_or_else(|| answer_proto.to_owned());
        let Some(peer) = self.peer_offer.clone() else {
            self.active = None;
            return Ok(Transport { proto, crypto: Vec::new() });
        };
        let key = self.key_for(peer.suite, keys)?;
        let line = CryptoAttr { tag: peer.tag, suite: peer.suite, key: key.clone() }.to_string();
        self.active = Some(SrtpKeys { suite: peer.suite, ours: key, theirs: peer.key });
        Ok(Transport { proto, crypto: vec![line] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdes::tests::CountingKeys;
    use crate::sdes::OsKeys;

    fn line(proto: &str, crypto: &[&str]) -> MediaLine {
        MediaLine {
            kind: "audio".into(),
            proto: proto.into(),
            port: 6000,
            address: Some("198.18.1.10".parse().unwrap()),
            hold_address: false,
            rtcp_port: 6001,
            rtcp_address: None,
            rtcp_mux: false,
            direction: crate::sdp::Direction::SendRecv,
            clock_rates: vec![(0, 8000)],
            crypto: crypto.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn key_line(tag: u32, suite: Suite) -> (String, KeyMaterial) {
        let key = KeyMaterial::generate(suite, &mut OsKeys).unwrap();
        (CryptoAttr { tag, suite, key: key.clone() }.to_string(), key)
    }

    #[test]
    fn savp_offer_is_answered_with_its_tag_and_suite_and_a_key_of_our_own() {
        let (unusable, _) = key_line(1, Suite::AesCm128HmacSha1_80);
        let unusable = format!("{unusable}|2^20|1:4"); // MKI: skipped
        let (gcm, peer_key) = key_line(2, Suite::AeadAes256Gcm);
        let mut a = StreamCrypto::default();
        a.take_offer(&line("RTP/SAVP", &[&unusable, &gcm]), SrtpMode::Required, Leg::A).unwrap();
        let mut keys = CountingKeys::default();
        assert!(a.pending(), "keys offered, none agreed yet");
        let t = a.make_answer("RTP/AVP", &mut keys).unwrap();
        assert!(!a.pending());
        assert_eq!(t.proto, "RTP/SAVP", "the answer keeps the offer's transport");
        assert_eq!(t.crypto.len(), 1);
        let ours = CryptoAttr::parse(&t.crypto[0]).unwrap();
        assert_eq!((ours.tag, ours.suite), (2, Suite::AeadAes256Gcm));
        assert_ne!(ours.key, peer_key, "never the peer's key");
        assert_eq!(a.active, Some(SrtpKeys { suite: Suite::AeadAes256Gcm, ours: ours.key.clone(), theirs: peer_key }));
        // The same answer again (183, then 200): the same key, so the relay's contexts stay.
        let again = a.make_answer("RTP/AVP", &mut keys).unwrap();
        assert_eq!(again, t);
    }

    #[test]
    fn offers_without_a_usable_key_are_refused_where_srtp_is_wanted() {
        let (k, _) = key_line(1, Suite::AesCm128HmacSha1_80);
        let bad = "1 F8_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";
        let mut s = StreamCrypto::default();
        assert!(matches!(
            s.take_offer(&line("RTP/SAVP", &[bad]), SrtpMode::Required, Leg::A),
            Err(SrtpError::NoUsableKey(Leg::A))
        ));
        assert!(matches!(
            s.take_offer(&line("RTP/SAVP", &[bad]), SrtpMode::Optional, Leg::B),
            Err(SrtpError::NoUsableKey(Leg::B))
        ));
        assert!(matches!(
            s.take_offer(&line("RTP/SAVP", &[&k]), SrtpMode::Off, Leg::A),
            Err(SrtpError::NotAllowed(Leg::A))
        ));
        assert!(matches!(
            s.take_offer(&line("RTP/AVP", &[]), SrtpMode::Required, Leg::A),
            Err(SrtpError::Required(Leg::A))
        ));
        // Best-effort SRTP (keys on RTP/AVP) on an optional leg is taken; on an off leg answered plain.
        s.take_offer(&line("RTP/AVP", &[&k]), SrtpMode::Optional, Leg::A).unwrap();
        let t = s.make_answer("RTP/AVP", &mut OsKeys).unwrap();
        assert_eq!((t.proto.as_str(), t.crypto.len()), ("RTP/AVP", 1));
        s.take_offer(&line("RTP/AVP", &[&k]), SrtpMode::Off, Leg::A).unwrap();
        let t = s.make_answer("RTP/AVP", &mut OsKeys).unwrap();
        assert_eq!(t, Transport { proto: "RTP/AVP".into(), crypto: vec![] });
        assert_eq!(s.active, None);
    }

    #[test]
    fn our_offer_follows_the_mode_and_pairs_with_the_answer_by_tag() {
        let mut keys = CountingKeys::default();
        let mut b = StreamCrypto::default();
        let off = b.make_offer("RTP/SAVP", SrtpMode::Off, &mut keys).unwrap();
        assert_eq!(off, Transport { proto: "RTP/AVP".into(), crypto: vec![] });
        let opt = b.make_offer("RTP/AVPF", SrtpMode::Optional, &mut keys).unwrap();
        assert_eq!(opt.proto, "RTP/AVPF");
        let req = b.make_offer("RTP/AVP", SrtpMode::Required, &mut keys).unwrap();
        assert_eq!(req.proto, "RTP/SAVP");
        assert_eq!(req.crypto, opt.crypto, "the leg keeps its keys from offer to offer");
        let lines: Vec<CryptoAttr> = req.crypto.iter().map(|v| CryptoAttr::parse(v).unwrap()).collect();
        assert_eq!(
            lines.iter().map(|l| (l.tag, l.suite)).collect::<Vec<_>>(),
            vec![(1, Suite::AesCm128HmacSha1_80), (2, Suite::AesCm128HmacSha1_32), (3, Suite::AeadAes128Gcm)]
        );
        assert!(lines[0].key != lines[1].key && lines[1].key != lines[2].key, "a key per suite");
        // The answer picks tag 2.
        let (theirs, their_key) = key_line(2, Suite::AesCm128HmacSha1_32);
        b.take_answer(&line("RTP/SAVP", &[&theirs]), SrtpMode::Required, Leg::B).unwrap();
        assert_eq!(
            b.active,
            Some(SrtpKeys { suite: Suite::AesCm128HmacSha1_32, ours: lines[1].key.clone(), theirs: their_key })
        );
        // A tag we did not offer, or a suite that does not match its tag: the call cannot go on.
        let (wrong_tag, _) = key_line(9, Suite::AesCm128HmacSha1_80);
        let (wrong_suite, _) = key_line(1, Suite::AeadAes128Gcm);
        for bad in [wrong_tag.as_str(), wrong_suite.as_str(), "1 AES_CM_128_HMAC_SHA1_80 inline:short"] {
            assert!(matches!(
                b.take_answer(&line("RTP/SAVP", &[bad]), SrtpMode::Required, Leg::B),
                Err(SrtpError::AnswerMismatch(Leg::B))
            ));
        }
    }

    #[test]
    fn plain_answers_to_keyed_offers() {
        let mut b = StreamCrypto::default();
        b.make_offer("RTP/AVP", SrtpMode::Optional, &mut OsKeys).unwrap();
        assert!(!b.pending(), "optional: it may well stay plain");
        b.take_answer(&line("RTP/AVP", &[]), SrtpMode::Optional, Leg::B).unwrap();
        assert!(!b.pending());
        assert_eq!(b.active, None, "best effort: the peer did not want SRTP");
        b.make_offer("RTP/AVP", SrtpMode::Required, &mut OsKeys).unwrap();
        assert!(matches!(
            b.take_answer(&line("RTP/SAVP", &[]), SrtpMode::Required, Leg::B),
            Err(SrtpError::AnswerMismatch(Leg::B))
        ));
        assert!(matches!(
            b.take_answer(&line("RTP/AVP", &[]), SrtpMode::Required, Leg::B),
            Err(SrtpError::Required(Leg::B))
        ));
        let mut rejected = line("RTP/SAVP", &[]);
        rejected.port = 0;
        b.take_answer(&rejected, SrtpMode::Required, Leg::B).unwrap();
        assert_eq!(b.active, None, "a rejected stream has no media and no keys");
    }

    #[test]
    fn a_new_peer_gets_new_keys() {
        let mut b = StreamCrypto::default();
        let first = b.make_offer("RTP/AVP", SrtpMode::Required, &mut OsKeys).unwrap();
        assert!(b.pending(), "required, no answer yet: no packet in or out");
        b.reset();
        let second = b.make_offer("RTP/AVP", SrtpMode::Required, &mut OsKeys).unwrap();
        assert!(first.crypto.iter().all(|l| !second.crypto.contains(l)), "{first:?} {second:?}");
    }

    #[test]
    fn only_rtp_profiles_with_keys_in_sdp_are_terminated() {
        for p in ["RTP/AVP", "rtp/avp", "RTP/AVPF", "RTP/SAVP", "RTP/SAVPF"] {
            assert!(terminated(p), "{p}");
        }
        for p in ["UDP/TLS/RTP/SAVPF", "udptl", "TCP/MSRP"] {
            assert!(!terminated(p), "{p}");
        }
    }
}
