//! The CNAME a peer sees of the other side: a token that stands for the other side's real CNAME, the same in
//! SDP (`a=ssrc:<id> cname:`, RFC 5576) and in RTCP SDES (RFC 3550 §6.5.1).
//!
//! A CNAME is the canonical name of a participant, and phones build it from what they know of themselves:
//! baresip sends `sip:alice@198.18.1.10`, others `user@host` or a MAC address. Relayed as it is, it carries one
//! side's address to the other, past every rewritten header and `c=` line. So each call gets a random key
//! ([`CnameKey`], derived from the signalling side's seed and the call, replicated with the call), and every
//! CNAME crossing the call becomes `token(key, leg, cname)`:
//!
//! - the same original CNAME of one leg always gives the same token in that call, in SDP and in RTCP alike, so
//!   a receiver still groups the streams of one participant (lip sync of audio and video, RFC 3550 §6.5.1),
//!   and streams with different CNAMEs (a mixer's contributors) still differ;
//! - nothing of the original can be read from the token, and without the call's key a guess
//!   (`sip:alice@198.18.1.10`?) cannot be checked against it; the same CNAME gives unrelated tokens in two calls;
//! - the form is RFC 7022 §4.2's for a random CNAME: 96 bits in base64, 16 characters.
//!
//! SHA-256 (the `sha2` crate) is the keyed function: a keyed hash is what is needed, and nothing here must be
//! faster than one hash per RTCP packet (about one packet in a hundred).

use crate::control::{Leg, SessionId};
use base64::Engine;
use sha2::{Digest, Sha256};

/// The key of one call's CNAME tokens. Held by the signalling side with the call's media (and replicated with
/// it, so a standby that takes the call over keeps the tokens), and given to the relay with each endpoint whose
/// RTCP it rewrites.
#[derive(Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CnameKey(pub [u8; 16]);

impl std::fmt::Debug for CnameKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is what makes tokens unguessable: it has no business in logs.
        f.write_str("CnameKey(..)")
    }
}

/// Length of a token: 96 bits in base64 (RFC 7022 §4.2).
pub const TOKEN_LEN: usize = 16;

/// A CNAME as the other side sees it: [`TOKEN_LEN`] ASCII characters of base64.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token([u8; TOKEN_LEN]);

impl Token {
    /// The token as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("base64 is ASCII")
    }

    /// The token's bytes (an SDES item's text).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token({})", self.as_str())
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl CnameKey {
    /// The key of call `session`, from `seed` (the signalling side's secret randomness, drawn once per process).
    pub fn derive(seed: u64, session: SessionId) -> Self {
        let mut h = Sha256::new();
        h.update(b"sbc cname key\0");
        h.update(seed.to_be_bytes());
        h.update(session.0.to_be_bytes());
        let digest = h.finalize();
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        Self(key)
    }

    /// The token that stands for `cname`, a CNAME of leg `leg`'s peer, on the other leg.
    pub fn token(&self, leg: Leg, cname: &[u8]) -> Token {
        let mut h = Sha256::new();
        h.update(self.0);
        h.update([leg.index() as u8]);
        h.update(cname);
        let digest = h.finalize();
        let mut out = [0u8; TOKEN_LEN];
        let n = base64::engine::general_purpose::STANDARD
            .encode_slice(&digest[..12], &mut out)
            .expect("12 bytes are 16 base64 characters");
        debug_assert_eq!(n, TOKEN_LEN);
        Token(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &[u8] = b"sip:alice@198.18.1.10";

    #[test]
    fn token_is_sixteen_base64_characters_without_a_trace_of_the_cname() {
        let key = CnameKey::derive(42, SessionId(1));
        let t = key.token(Leg::A, ALICE);
        assert_eq!(t.as_str().len(), 16);
        assert!(t.as_str().bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/'), "{t}");
        for part in ["198", "18.1", "alice", "sip"] {
            assert!(!t.as_str().contains(part), "{part} in {t}");
        }
    }

    #[test]
    fn same_cname_same_token_within_a_call_and_leg() {
        let key = CnameKey::derive(42, SessionId(1));
        assert_eq!(key.token(Leg::A, ALICE), key.token(Leg::A, ALICE));
        assert_ne!(key.token(Leg::A, ALICE), key.token(Leg::A, b"sip:bob@198.18.1.11"));
        assert_ne!(key.token(Leg::A, ALICE), key.token(Leg::B, ALICE), "legs are kept apart");
    }

    #[test]
    fn calls_and_seeds_give_unrelated_tokens() {
        let t = |seed, call| CnameKey::derive(seed, SessionId(call)).token(Leg::A, ALICE);
        assert_ne!(t(42, 1), t(42, 2));
        assert_ne!(t(42, 1), t(43, 1));
        assert_eq!(t(42, 1), t(42, 1), "the key is a function of seed and call, so a replayed call keeps it");
    }

    #[test]
    fn key_is_not_printed() {
        assert_eq!(format!("{:?}", CnameKey::derive(1, SessionId(1))), "CnameKey(..)");
    }
}
