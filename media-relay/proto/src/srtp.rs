//! SRTP and SRTCP in the relay's data plane (RFC 3711, with rtc-srtp): the contexts of one relay endpoint whose
//! leg is SRTP, built from the [`SrtpKeys`] the signalling side negotiated ([`crate::negotiate`]).
//!
//! What arrives from the leg's peer is unprotected with the peer's key ([`EndpointCrypto::unprotect`]); what the
//! relay sends to it is protected with our key for the leg ([`EndpointCrypto::protect`]). The flow table calls
//! both: unprotect on the endpoint a packet arrives at, protect on the partner endpoint it leaves through.
//!
//! rtc-srtp keeps a state (rollover counter, replay window) per SSRC inside a context, created on the first packet
//! of an SSRC, authentic or not. So that forged packets with random SSRCs cannot grow that without bound, an
//! SSRC gets a context of its own only once one of its packets authenticated: unknown SSRCs are tried on a probe
//! context that is thrown away after [`PROBE_FAILURES`] failures; at most [`MAX_SSRCS`] SSRCs per direction are
//! kept (inbound, the least recently used goes; outbound, a new SSRC beyond that is refused).
//!
//! A peer that re-keys (a re-INVITE with a new key) gets new inbound contexts; the old ones stay for
//! [`REKEY_GRACE`] for packets sent before the switch. Our own key for a leg only changes with the suite.

use crate::sdes::{KeyMaterial, SrtpKeys, Suite};
use crate::srtp_roc::{priming_indexes, priming_packet, Index, Rollover};
use bytes::BytesMut;
use rtc_srtp::context::Context;
use rtc_srtp::crypto::RTCCryptoProvider;
use rtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// SSRCs with contexts of their own, per direction of an endpoint.
pub const MAX_SSRCS: usize = 16;
/// Failures after which the probe context (for SSRCs not yet authenticated) is thrown away and its SSRC states
/// with it.
pub const PROBE_FAILURES: u32 = 64;
/// How long the previous inbound contexts stay usable after the peer's key changed.
pub const REKEY_GRACE: Duration = Duration::from_secs(5);
/// Replay windows (packets): SRTP as libsrtp's default, SRTCP as rtc-srtp's.
const SRTP_WINDOW: usize = 128;
const SRTCP_WINDOW: usize = 64;

/// Why a packet could not be unprotected or protected; the table drops it and counts it by [`Failure::label`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Authentication failed (wrong key, forged, corrupted) or the packet is too short to be SRTP/SRTCP.
    Auth,
    /// A packet already received (or older than the replay window).
    Replay,
    /// Our side could not protect: the keys do not fit the suite, the SSRC limit, or the key's packet limit
    /// (2^48 SRTP packets, RFC 3711 §9.2).
    Protect,
    /// The packet arrived on, or was bound for, a leg that is to be SRTP before its keys were agreed (a callee's
    /// first packets can beat its answer through the SBC).
    NoKeys,
}

impl Failure {
    /// A metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Auth => "srtp_auth",
            Self::Replay => "srtp_replay",
            Self::Protect => "srtp_protect",
            Self::NoKeys => "srtp_no_keys",
        }
    }
}

pub(crate) fn provider() -> &'static Arc<dyn RTCCryptoProvider> {
    static PROVIDER: OnceLock<Arc<dyn RTCCryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| rtc_srtp::crypto::default_provider().expect("rtc-srtp built with its ring provider"))
}

/// A context for `key` of `suite`; `inbound` ones check replays.
fn context(suite: Suite, key: &KeyMaterial, inbound: bool) -> Option<Context> {
    let (master_key, master_salt) = key.split(suite)?;
    let (rtp, rtcp) = if inbound {
        (Some(srtp_replay_protection(SRTP_WINDOW)), Some(srtcp_replay_protection(SRTCP_WINDOW)))
    } else {
        (None, None)
    };
    Context::new(master_key, master_salt, suite.profile(), rtp, rtcp, provider().crypto()).ok()
}

/// The SSRC of an RTP packet (bytes 8..12) or the sender SSRC of an RTCP packet (bytes 4..8).
fn ssrc(packet: &[u8], rtcp: bool) -> Option<u32> {
    let at = if rtcp { 4 } else { 8 };
    let b = packet.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The sequence number of an RTP packet.
fn seq(packet: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]))
}

/// Brings `c`'s state for `ssrc` to `roc` before a first real packet of sequence number `seq`
/// ([`crate::srtp_roc`]): encrypting when `c` is outbound; else decrypting packets `forger` (a context of the
/// same key) encrypts. Returns the SSRC's [`Index`] as `c` now has it.
fn prime(c: &mut Context, forger: Option<&mut Context>, ssrc: u32, roc: u32, seq: u16) -> Index {
    let mut index = Index::default();
    let mut forger = forger;
    for i in priming_indexes(roc, seq) {
        let p = priming_packet(ssrc, i);
        let ok = match forger.as_deref_mut() {
            Some(f) => f.encrypt_rtp(&p).is_ok_and(|wire| c.decrypt_rtp(&wire).is_ok()),
            None => c.encrypt_rtp(&p).is_ok(),
        };
        if ok {
            index.advance(i as u16);
        }
    }
    index
}

fn decrypt(c: &mut Context, suite: Suite, packet: &[u8], rtcp: bool) -> Result<BytesMut, Failure> {
    if rtcp {
        // SRTCP's E flag (RFC 3711 §3.4) must be set: we never agree to unencrypted SRTCP, and rtc-srtp 0.21
        // returns an AES-CM packet without E as it is, without checking its authentication tag.
        let at = packet.len().checked_sub(suite.profile().rtcp_auth_tag_len() + 4).filter(|&at| at >= 8);
        if at.is_none_or(|at| packet[at] & 0x80 == 0) {
            return Err(Failure::Auth);
        }
    }
    let r = if rtcp { c.decrypt_rtcp(packet) } else { c.decrypt_rtp(packet) };
    r.map_err(|e| match e {
        rtc_shared::error::Error::SrtpSsrcDuplicated(..) | rtc_shared::error::Error::SrtcpSsrcDuplicated(..) => {
            Failure::Replay
        }
        _ => Failure::Auth,
    })
}

/// One peer's key, in contexts per authenticated SSRC.
struct Inbound {
    suite: Suite,
    key: KeyMaterial,
    /// (SSRC, its context, last use, its index) for SSRCs that authenticated.
    known: Vec<(u32, Context, u64, Index)>,
    probe: Option<Context>,
    probe_failures: u32,
    uses: u64,
    /// Replicated rollover counters of SSRCs not seen yet here (a resumed leg), applied at their first packet.
    resumed: Vec<(u32, u32)>,
    /// Rollovers since the last [`EndpointCrypto::poll_rollover`].
    rollovers: Vec<Rollover>,
}

impl Inbound {
    fn new(suite: Suite, key: &KeyMaterial) -> Self {
        Self {
            suite,
            key: key.clone(),
            known: Vec::new(),
            probe: None,
            probe_failures: 0,
            uses: 0,
            resumed: Vec::new(),
            rollovers: Vec::new(),
        }
    }

    fn unprotect(&mut self, packet: &[u8], rtcp: bool) -> Result<BytesMut, Failure> {
        let ssrc = ssrc(packet, rtcp).ok_or(Failure::Auth)?;
        self.uses += 1;
        if let Some((_, c, used, index)) = self.known.iter_mut().find(|(s, ..)| *s == ssrc) {
            *used = self.uses;
            let clear = decrypt(c, self.suite, packet, rtcp)?;
            if !rtcp && seq(packet).is_some_and(|q| index.advance(q)) {
                self.rollovers.push(Rollover { ssrc, outbound: false, roc: index.roc() });
            }
            return Ok(clear);
        }
        let probe = match self.probe.as_mut() {
            Some(p) => p,
            None => self.probe.insert(context(self.suite, &self.key, true).ok_or(Failure::Auth)?),
        };
        // A resumed leg's stream: the probe's state for it brought to the replicated ROC first (once).
        let mut index = Index::default();
        if let (false, Some(q)) = (rtcp, seq(packet)) {
            if let Some(at) = self.resumed.iter().position(|(s, _)| *s == ssrc) {
                let (_, roc) = self.resumed.swap_remove(at);
                let mut forger = context(self.suite, &self.key, false);
                index = prime(probe, forger.as_mut(), ssrc, roc, q);
            }
        }
        match decrypt(probe, self.suite, packet, rtcp) {
            Ok(clear) => {
                if let (false, Some(q)) = (rtcp, seq(packet)) {
                    index.advance(q);
                }
                // Authentic: the probe becomes this SSRC's context (its state for the SSRC is in it).
                let c = self.probe.take().expect("the probe just used");
                self.probe_failures = 0;
                if self.known.len() >= MAX_SSRCS {
                    let oldest = self.known.iter().enumerate().min_by_key(|(_, k)| k.2).map(|(i, _)| i);
                    if let Some(i) = oldest {
                        self.known.swap_remove(i);
                    }
                }
                self.known.push((ssrc, c, self.uses, index));
                Ok(clear)
            }
            Err(f) => {
                self.probe_failures += 1;
                if self.probe_failures >= PROBE_FAILURES {
                    self.probe = None;
                    self.probe_failures = 0;
                }
                Err(f)
            }
        }
    }
}

/// Our key for the leg: one context, for at most [`MAX_SSRCS`] SSRCs.
struct Outbound {
    context: Option<Context>,
    /// The SSRCs protected so far, each with its index.
    ssrcs: Vec<(u32, Index)>,
    /// Replicated rollover counters of SSRCs not protected here yet (a resumed leg), applied at their first packet.
    resumed: Vec<(u32, u32)>,
    /// Rollovers since the last [`EndpointCrypto::poll_rollover`].
    rollovers: Vec<Rollover>,
}

impl Outbound {
    fn new(suite: Suite, key: &KeyMaterial) -> Self {
        Self { context: context(suite, key, false), ssrcs: Vec::new(), resumed: Vec::new(), rollovers: Vec::new() }
    }

    fn protect(&mut self, packet: &[u8], rtcp: bool) -> Result<BytesMut, Failure> {
        let c = self.context.as_mut().ok_or(Failure::Protect)?;
        let ssrc = ssrc(packet, rtcp).ok_or(Failure::Protect)?;
        let known = self.ssrcs.iter().position(|(s, _)| *s == ssrc);
        let at = match known {
            Some(at) => at,
            None if self.ssrcs.len() >= MAX_SSRCS => return Err(Failure::Protect),
            None => {
                let mut index = Index::default();
                let resumed = self.resumed.iter().position(|(s, _)| *s == ssrc);
                if let (false, Some(q), Some(r)) = (rtcp, seq(packet), resumed) {
                    let (_, roc) = self.resumed.swap_remove(r);
                    index = prime(c, None, ssrc, roc, q);
                }
                self.ssrcs.push((ssrc, index));
                self.ssrcs.len() - 1
            }
        };
        let r = if rtcp { c.encrypt_rtcp(packet) } else { c.encrypt_rtp(packet) };
        let wire = r.map_err(|_| Failure::Protect)?;
        let index = &mut self.ssrcs[at].1;
        // A first packet is no rollover: at most the replicated counter this relay was brought to.
        if !rtcp && seq(packet).is_some_and(|q| index.advance(q)) && known.is_some() {
            self.rollovers.push(Rollover { ssrc, outbound: true, roc: index.roc() });
        }
        Ok(wire)
    }
}

/// The SRTP contexts of one relay endpoint: inbound with the leg's peer's key, outbound with ours.
pub struct EndpointCrypto {
    keys: SrtpKeys,
    inbound: Inbound,
    /// The inbound contexts of the peer's previous key, and until when they are tried.
    previous: Option<(Inbound, Instant)>,
    outbound: Outbound,
}

impl std::fmt::Debug for EndpointCrypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointCrypto")
            .field("suite", &self.keys.suite)
            .field("inbound_ssrcs", &self.inbound.known.len())
            .field("outbound_ssrcs", &self.outbound.ssrcs.len())
            .field("previous", &self.previous.is_some())
            .finish()
    }
}

impl EndpointCrypto {
    /// Contexts for `keys`.
    pub fn new(keys: &SrtpKeys) -> Self {
        Self {
            keys: keys.clone(),
            inbound: Inbound::new(keys.suite, &keys.theirs),
            previous: None,
            outbound: Outbound::new(keys.suite, &keys.ours),
        }
    }

    /// The keys now in use.
    pub fn keys(&self) -> &SrtpKeys {
        &self.keys
    }

    /// New keys from the signalling side (a re-INVITE). Unchanged keys keep every context (and its rollover
    /// counters); a new peer key keeps the old inbound contexts for [`REKEY_GRACE`] after `now`.
    pub fn update(&mut self, now: Instant, keys: &SrtpKeys) {
        if *keys == self.keys {
            return;
        }
        if keys.suite != self.keys.suite || keys.theirs != self.keys.theirs {
            let old = std::mem::replace(&mut self.inbound, Inbound::new(keys.suite, &keys.theirs));
            self.previous = Some((old, now + REKEY_GRACE));
        }
        if keys.suite != self.keys.suite || keys.ours != self.keys.ours {
            self.outbound = Outbound::new(keys.suite, &keys.ours);
        }
        self.keys = keys.clone();
    }

    /// `packet` (SRTP, or SRTCP when `rtcp`) from the leg's peer, authenticated and decrypted.
    pub fn unprotect(&mut self, now: Instant, packet: &[u8], rtcp: bool) -> Result<BytesMut, Failure> {
        match self.inbound.unprotect(packet, rtcp) {
            Err(Failure::Auth) => {}
            done => return done,
        }
        match self.previous.as_mut() {
            Some((old, until)) if now < *until => old.unprotect(packet, rtcp),
            Some(_) => {
                self.previous = None;
                Err(Failure::Auth)
            }
            None => Err(Failure::Auth),
        }
    }

    /// `packet` (RTP, or RTCP when `rtcp`) protected for the leg's peer with our key.
    pub fn protect(&mut self, packet: &[u8], rtcp: bool) -> Result<BytesMut, Failure> {
        self.outbound.protect(packet, rtcp)
    }

    /// Contexts for `keys` that another relay used up to the `rollovers` it reported (a resumed WebRTC leg): each
    /// SSRC's first packet here is protected or unprotected at its replicated rollover counter ([`crate::srtp_roc`]).
    pub fn resume(keys: &SrtpKeys, rollovers: &[Rollover]) -> Self {
        let mut c = Self::new(keys);
        for r in rollovers {
            let to = if r.outbound { &mut c.outbound.resumed } else { &mut c.inbound.resumed };
            match to.iter_mut().find(|(s, _)| *s == r.ssrc) {
                Some((_, roc)) => *roc = (*roc).max(r.roc),
                None => to.push((r.ssrc, r.roc)),
            }
        }
        c
    }

    /// The next rollover of a stream of this endpoint (RTP only: SRTCP's index is sent in each packet), for
    /// replication: drain after packets.
    pub fn poll_rollover(&mut self) -> Option<Rollover> {
        self.inbound.rollovers.pop().or_else(|| self.outbound.rollovers.pop())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdes::OsKeys;

    fn keys(suite: Suite) -> (SrtpKeys, SrtpKeys) {
        let a = KeyMaterial::generate(suite, &mut OsKeys).unwrap();
        let b = KeyMaterial::generate(suite, &mut OsKeys).unwrap();
        // The relay's endpoint and the peer see the same two keys from opposite ends.
        (SrtpKeys { suite, ours: a.clone(), theirs: b.clone() }, SrtpKeys { suite, ours: b, theirs: a })
    }

    fn rtp(ssrc: u32, seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p[8..12].copy_from_slice(&ssrc.to_be_bytes());
        p.extend((0..160).map(|i| (i as u8) ^ (seq as u8)));
        p
    }

    fn rr(ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, 201, 0, 1];
        p.extend_from_slice(&ssrc.to_be_bytes());
        p
    }

    #[test]
    fn every_suite_round_trips_rtp_and_rtcp_between_relay_and_peer() {
        let now = Instant::now();
        for suite in Suite::ALL {
            let (relay, peer) = keys(suite);
            let (mut relay, mut peer) = (EndpointCrypto::new(&relay), EndpointCrypto::new(&peer));
            for seq in [65530u16, 65535, 0, 1] {
                let clear = rtp(7, seq);
                let wire = peer.protect(&clear, false).unwrap();
                assert_ne!(&wire[12..], &clear[12..], "{suite}: the payload is encrypted");
                assert_eq!(&relay.unprotect(now, &wire, false).unwrap()[..], &clear[..], "{suite} seq {seq}");
                let back = relay.protect(&clear, false).unwrap();
                assert_eq!(&peer.unprotect(now, &back, false).unwrap()[..], &clear[..], "{suite}: back");
            }
            let wire = peer.protect(&rr(7), true).unwrap();
            assert!(wire.len() > 8, "{suite}: SRTCP index and tag appended");
            assert_eq!(&relay.unprotect(now, &wire, true).unwrap()[..], &rr(7)[..], "{suite}: SRTCP");
            // The E flag cleared (as an attacker would, to pass RTCP of his own): refused, for every suite.
            let mut unflagged = peer.protect(&rr(7), true).unwrap().to_vec();
            let e = unflagged.len() - 4 - suite.profile().rtcp_auth_tag_len();
            unflagged[e] &= 0x7f;
            assert_eq!(relay.unprotect(now, &unflagged, true), Err(Failure::Auth), "{suite}: SRTCP without E");
        }
    }

    #[test]
    fn forged_corrupted_and_replayed_packets_fail_without_a_panic() {
        let now = Instant::now();
        let (relay, peer) = keys(Suite::AesCm128HmacSha1_80);
        let (mut relay, mut peer) = (EndpointCrypto::new(&relay), EndpointCrypto::new(&peer));
        let wire = peer.protect(&rtp(7, 1), false).unwrap();
        let mut flipped = wire.to_vec();
        flipped[20] ^= 1;
        assert_eq!(relay.unprotect(now, &flipped, false), Err(Failure::Auth), "one bit flipped");
        assert_eq!(relay.unprotect(now, &rtp(7, 2), false), Err(Failure::Auth), "plain RTP is no SRTP");
        assert!(relay.unprotect(now, &wire, false).is_ok());
        assert_eq!(relay.unprotect(now, &wire, false), Err(Failure::Replay), "the same packet twice");
        let (_, stranger) = keys(Suite::AesCm128HmacSha1_80);
        let forged = EndpointCrypto::new(&stranger).protect(&rtp(7, 3), false).unwrap();
        assert_eq!(relay.unprotect(now, &forged, false), Err(Failure::Auth), "another key");
        for len in 0..40 {
            assert!(relay.unprotect(now, &wire[..len.min(wire.len())], false).is_err(), "{len} bytes");
            assert!(relay.unprotect(now, &wire[..len.min(wire.len())], true).is_err(), "{len} bytes as SRTCP");
        }
        // Random junk with random SSRCs: dropped, and the contexts it touches stay bounded.
        let mut x = 0x1234_5678_9abc_def0u64;
        for _ in 0..5000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut junk = rtp(x as u32, (x >> 32) as u16);
            junk.extend_from_slice(&x.to_be_bytes());
            assert!(relay.unprotect(now, &junk, false).is_err());
        }
        assert!(relay.inbound.known.len() <= MAX_SSRCS);
        assert!(relay.inbound.probe_failures < PROBE_FAILURES);
        assert!(relay.unprotect(now, &peer.protect(&rtp(7, 4), false).unwrap(), false).is_ok(), "still works");
    }

    #[test]
    fn a_peer_key_change_keeps_the_old_key_for_the_grace_period() {
        let now = Instant::now();
        let (relay_keys, peer_keys) = keys(Suite::AesCm128HmacSha1_32);
        let mut relay = EndpointCrypto::new(&relay_keys);
        let mut old_peer = EndpointCrypto::new(&peer_keys);
        let in_flight = old_peer.protect(&rtp(7, 10), false).unwrap();
        let late = old_peer.protect(&rtp(7, 11), false).unwrap();
        let new_theirs = KeyMaterial::generate(Suite::AesCm128HmacSha1_32, &mut OsKeys).unwrap();
        let rekeyed = SrtpKeys { theirs: new_theirs.clone(), ..relay_keys.clone() };
        relay.update(now, &rekeyed);
        let mut new_peer = EndpointCrypto::new(&SrtpKeys { ours: new_theirs, ..peer_keys });
        assert!(relay.unprotect(now, &new_peer.protect(&rtp(7, 12), false).unwrap(), false).is_ok());
        assert!(relay.unprotect(now + Duration::from_secs(1), &in_flight, false).is_ok(), "old key, in flight");
        assert_eq!(relay.unprotect(now + REKEY_GRACE, &late, false), Err(Failure::Auth), "after the grace period");
        // The same keys again (a repeated answer): nothing changes, the contexts stay.
        relay.update(now, &rekeyed);
        assert_eq!(relay.inbound.known.len(), 1);
    }

    #[test]
    fn a_resumed_endpoint_carries_both_directions_on_past_the_rollovers_another_relay_reported() {
        let now = Instant::now();
        let (relay_keys, browser_keys) = keys(Suite::AesCm128HmacSha1_80);
        let (mut active, mut browser) = (EndpointCrypto::new(&relay_keys), EndpointCrypto::new(&browser_keys));
        // The browser's stream (SSRC 7) and the carrier's towards it (SSRC 9) both cross a wrap on the active.
        for seq in (65_500..=65_535).chain(0..100) {
            let wire = browser.protect(&rtp(7, seq), false).unwrap();
            assert!(active.unprotect(now, &wire, false).is_ok(), "seq {seq}");
            let wire = active.protect(&rtp(9, seq), false).unwrap();
            assert!(browser.unprotect(now, &wire, false).is_ok(), "seq {seq}");
        }
        let mut reported: Vec<Rollover> = std::iter::from_fn(|| active.poll_rollover()).collect();
        reported.sort_by_key(|r| r.ssrc);
        let expected =
            vec![Rollover { ssrc: 7, outbound: false, roc: 1 }, Rollover { ssrc: 9, outbound: true, roc: 1 }];
        assert_eq!(reported, expected, "each stream's rollover, once");

        // A relay with the keys alone starts at ROC 0: the browser's next packet fails there.
        let wire = browser.protect(&rtp(7, 100), false).unwrap();
        assert_eq!(EndpointCrypto::new(&relay_keys).unprotect(now, &wire, false), Err(Failure::Auth));
        // With the reported rollovers it goes on, both ways, and keeps counting.
        let mut standby = EndpointCrypto::resume(&relay_keys, &reported);
        assert_eq!(&standby.unprotect(now, &wire, false).unwrap()[..], &rtp(7, 100)[..], "the browser's next");
        for seq in 100..110 {
            let wire = standby.protect(&rtp(9, seq), false).unwrap();
            assert_eq!(&browser.unprotect(now, &wire, false).unwrap()[..], &rtp(9, seq)[..], "to the browser {seq}");
        }
        assert_eq!(standby.poll_rollover(), None, "no rollover of its own yet");

        // Many rollovers (a long call): the same, with the browser's side brought there the same way.
        let rolled = [Rollover { ssrc: 7, outbound: true, roc: 9 }, Rollover { ssrc: 9, outbound: false, roc: 9 }];
        let mut browser = EndpointCrypto::resume(&browser_keys, &rolled);
        let rolled = [Rollover { ssrc: 7, outbound: false, roc: 9 }, Rollover { ssrc: 9, outbound: true, roc: 9 }];
        let mut standby = EndpointCrypto::resume(&relay_keys, &rolled);
        for seq in [40_000u16, 40_001, 40_003] {
            let wire = browser.protect(&rtp(7, seq), false).unwrap();
            assert_eq!(&standby.unprotect(now, &wire, false).unwrap()[..], &rtp(7, seq)[..], "ROC 9, {seq}");
            let wire = standby.protect(&rtp(9, seq), false).unwrap();
            assert_eq!(&browser.unprotect(now, &wire, false).unwrap()[..], &rtp(9, seq)[..], "ROC 9 back, {seq}");
        }
        let wire = browser.protect(&rtp(7, 40_004), false).unwrap();
        assert_eq!(EndpointCrypto::resume(&relay_keys, &[]).unprotect(now, &wire, false), Err(Failure::Auth));
    }

    #[test]
    fn outbound_ssrcs_are_bounded() {
        let (relay, _) = keys(Suite::AeadAes128Gcm);
        let mut relay = EndpointCrypto::new(&relay);
        for ssrc in 0..MAX_SSRCS as u32 {
            relay.protect(&rtp(ssrc, 1), false).unwrap();
        }
        assert_eq!(relay.protect(&rtp(999, 1), false), Err(Failure::Protect));
        assert!(relay.protect(&rtp(3, 2), false).is_ok(), "known SSRCs go on");
        assert_eq!(relay.protect(&[0x80, 0], false), Err(Failure::Protect), "too short");
    }

    #[test]
    fn keys_that_do_not_fit_the_suite_protect_nothing() {
        let bad = SrtpKeys {
            suite: Suite::AesCm128HmacSha1_80,
            ours: KeyMaterial::new(vec![1; 5]),
            theirs: KeyMaterial::new(vec![1; 5]),
        };
        let mut c = EndpointCrypto::new(&bad);
        assert_eq!(c.protect(&rtp(1, 1), false), Err(Failure::Protect));
        assert_eq!(c.unprotect(Instant::now(), &rtp(1, 1), false), Err(Failure::Auth));
        assert_eq!(Failure::Auth.label(), "srtp_auth");
    }
}
