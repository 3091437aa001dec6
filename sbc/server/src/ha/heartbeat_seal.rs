//! Heartbeats sealed with the pair's heartbeat key: `SBH1`, the send time (µs since the epoch, big-endian u64,
//! strictly increasing per sender), the heartbeat's JSON, then HMAC-SHA256 over all of that. Sans-IO: the caller
//! passes the wall clock in.
//!
//! The send time is the replay guard: a receiver takes each time once, refuses one more than [`REORDER`] behind
//! the newest it took (a copy captured and sent again later), and one more than [`CLOCK_WINDOW`] away from its own
//! clock (a capture replayed after the receiver restarted and forgot what it took). Every copy of a heartbeat (one
//! per path) is sealed on its own, so copies are not replays of each other.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::VecDeque;

/// The first bytes of a sealed heartbeat (a plain one is JSON, starting with `{`).
pub const MAGIC: &[u8; 4] = b"SBH1";
const TIME: usize = 8;
const MAC: usize = 32;
/// How far behind the newest heartbeat taken one may arrive (the paths' latencies differ).
pub const REORDER: u64 = 1_000_000;
/// How far a heartbeat's send time may be from the receiver's clock: the pair's clocks must agree within this.
pub const CLOCK_WINDOW: u64 = 60_000_000;
/// Send times remembered (well over a second of heartbeats on three paths for a few groups).
const REMEMBERED: usize = 1024;

type HmacSha256 = Hmac<Sha256>;

/// Why a datagram on a heartbeat port was not taken; the `reason` label of `sbc_ha_heartbeats_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeartbeatRefusal {
    /// A plain heartbeat while this box has a secret.
    #[error("a heartbeat without a MAC: the peer has no [ha] secret (or it is not the peer)")]
    Unsigned,
    /// A sealed heartbeat while this box has no secret.
    #[error("a heartbeat with a MAC: the peer has an [ha] secret and this box has none")]
    Sealed,
    /// The MAC does not match: another secret, or altered on the way.
    #[error("a heartbeat whose MAC does not match: the sender's secret differs, or it was altered")]
    BadMac,
    /// Taken already, or too old.
    #[error("a heartbeat replayed (its send time was taken already or is too old)")]
    Replayed,
    /// Its send time is far from this box's clock.
    #[error("a heartbeat whose send time is more than 60 s from this box's clock (replayed, or the clocks differ)")]
    Stale,
    /// A plain heartbeat from a peer heard sealed before (`accept_plain_peer`): never downgraded.
    #[error("a heartbeat without a MAC from a peer that sent sealed ones (someone plays the peer?)")]
    Downgrade,
    /// Too short to be a heartbeat.
    #[error("a datagram too short to be a heartbeat")]
    Short,
    /// Authentic (or from a box without a secret) but not a heartbeat this build reads.
    #[error("a datagram that is not a heartbeat")]
    NotAHeartbeat,
}

impl HeartbeatRefusal {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            HeartbeatRefusal::Unsigned => "unsigned",
            HeartbeatRefusal::Sealed => "sealed",
            HeartbeatRefusal::BadMac => "bad_mac",
            HeartbeatRefusal::Replayed => "replayed",
            HeartbeatRefusal::Stale => "stale",
            HeartbeatRefusal::Downgrade => "downgrade",
            HeartbeatRefusal::Short => "short",
            HeartbeatRefusal::NotAHeartbeat => "not_a_heartbeat",
        }
    }
}

fn mac(key: &[u8; 32]) -> HmacSha256 {
    HmacSha256::new_from_slice(key).expect("HMAC takes any key length")
}

/// Seals this box's heartbeats.
#[derive(Debug)]
pub struct Sealer {
    key: [u8; 32],
    last: u64,
}

impl Sealer {
    /// With the pair's heartbeat key.
    pub fn new(key: &[u8; 32]) -> Sealer {
        Sealer { key: *key, last: 0 }
    }

    /// One sealed datagram of `body` sent at `now_us` (µs since the epoch; made later than the last one's if the
    /// clock did not move on).
    pub fn seal(&mut self, now_us: u64, body: &[u8]) -> Vec<u8> {
        self.last = now_us.max(self.last + 1);
        let mut out = Vec::with_capacity(MAGIC.len() + TIME + body.len() + MAC);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.last.to_be_bytes());
        out.extend_from_slice(body);
        let mut m = mac(&self.key);
        m.update(&out);
        out.extend_from_slice(&m.finalize().into_bytes());
        out
    }
}

/// Checks the peer's heartbeats.
#[derive(Debug)]
pub struct Opener {
    key: [u8; 32],
    newest: u64,
    /// Send times taken within [`REORDER`] of the newest.
    taken: VecDeque<u64>,
}

impl Opener {
    /// With the pair's heartbeat key.
    pub fn new(key: &[u8; 32]) -> Opener {
        Opener { key: *key, newest: 0, taken: VecDeque::new() }
    }

    /// The heartbeat's JSON if `datagram` is authentic and new at `now_us`.
    pub fn open<'d>(&mut self, now_us: u64, datagram: &'d [u8]) -> Result<&'d [u8], HeartbeatRefusal> {
        if datagram.first() == Some(&b'{') {
            return Err(HeartbeatRefusal::Unsigned);
        }
        if datagram.len() < MAGIC.len() + TIME + MAC || !datagram.starts_with(MAGIC) {
            return Err(HeartbeatRefusal::Short);
        }
        let (signed, tag) = datagram.split_at(datagram.len() - MAC);
        let mut m = mac(&self.key);
        m.update(signed);
        m.verify_slice(tag).map_err(|_| HeartbeatRefusal::BadMac)?;
        let sent = u64::from_be_bytes(signed[MAGIC.len()..MAGIC.len() + TIME].try_into().expect("8 bytes"));
        if sent.abs_diff(now_us) > CLOCK_WINDOW {
            return Err(HeartbeatRefusal::Stale);
        }
        if sent + REORDER <= self.newest || self.taken.contains(&sent) {
            return Err(HeartbeatRefusal::Replayed);
        }
        self.newest = self.newest.max(sent);
        self.taken.push_back(sent);
        while self.taken.len() > REMEMBERED || self.taken.front().is_some_and(|&t| t + REORDER <= self.newest) {
            self.taken.pop_front();
        }
        Ok(&signed[MAGIC.len() + TIME..])
    }
}

/// What a box without a secret makes of a datagram: a sealed one is refused, so a box with a secret and one
/// without never pair silently.
pub fn open_plain(datagram: &[u8]) -> Result<&[u8], HeartbeatRefusal> {
    if datagram.starts_with(MAGIC) {
        return Err(HeartbeatRefusal::Sealed);
    }
    Ok(datagram)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ha::keys::PairKeys;

    const T0: u64 = 1_800_000_000_000_000;
    const BODY: &[u8] = br#"{"node":"sbc1","seq":1}"#;

    fn key(secret: &str) -> [u8; 32] {
        *PairKeys::derive(secret.as_bytes()).heartbeat()
    }

    #[test]
    fn a_sealed_heartbeat_opens_with_the_same_key() {
        let mut s = Sealer::new(&key("pair"));
        let mut o = Opener::new(&key("pair"));
        let d = s.seal(T0, BODY);
        assert_eq!(o.open(T0 + 200, &d), Ok(BODY));
        // The copy for the next path, sealed at the same clock reading, is a heartbeat of its own.
        let copy = s.seal(T0, BODY);
        assert_ne!(copy, d);
        assert_eq!(o.open(T0 + 300, &copy), Ok(BODY));
    }

    #[test]
    fn a_tampered_heartbeat_is_refused() {
        let mut s = Sealer::new(&key("pair"));
        let mut o = Opener::new(&key("pair"));
        let mut d = s.seal(T0, BODY);
        let at = MAGIC.len() + TIME + 10;
        d[at] ^= 0x20;
        assert_eq!(o.open(T0, &d), Err(HeartbeatRefusal::BadMac));
        let mut later = s.seal(T0 + 1, BODY);
        later[MAGIC.len() + TIME - 1] ^= 1;
        assert_eq!(o.open(T0, &later), Err(HeartbeatRefusal::BadMac), "the send time is covered too");
    }

    #[test]
    fn a_heartbeat_with_another_key_is_refused() {
        let d = Sealer::new(&key("another")).seal(T0, BODY);
        assert_eq!(Opener::new(&key("pair")).open(T0, &d), Err(HeartbeatRefusal::BadMac));
    }

    #[test]
    fn a_replayed_heartbeat_is_refused_now_later_and_after_a_restart() {
        let mut s = Sealer::new(&key("pair"));
        let mut o = Opener::new(&key("pair"));
        let first = s.seal(T0, BODY);
        assert!(o.open(T0, &first).is_ok());
        assert_eq!(o.open(T0 + 10, &first), Err(HeartbeatRefusal::Replayed), "at once");
        // A later heartbeat arriving first on a faster path does not make an earlier, unseen one a replay.
        let second = s.seal(T0 + 100_000, BODY);
        let third = s.seal(T0 + 200_000, BODY);
        assert!(o.open(T0 + 200_000, &third).is_ok());
        assert!(o.open(T0 + 200_000, &second).is_ok(), "reordered within a second");
        for i in 1..=20 {
            assert!(o.open(T0 + i * 100_000, &s.seal(T0 + 200_000 + i * 100_000, BODY)).is_ok());
        }
        assert_eq!(o.open(T0 + 2_200_000, &second), Err(HeartbeatRefusal::Replayed), "seconds later");
        let mut restarted = Opener::new(&key("pair"));
        assert_eq!(restarted.open(T0 + 120_000_000, &first), Err(HeartbeatRefusal::Stale), "after a restart");
    }

    #[test]
    fn plain_and_sealed_boxes_do_not_pair() {
        let d = Sealer::new(&key("pair")).seal(T0, BODY);
        assert_eq!(open_plain(&d), Err(HeartbeatRefusal::Sealed));
        assert_eq!(open_plain(BODY), Ok(BODY));
        assert_eq!(Opener::new(&key("pair")).open(T0, BODY), Err(HeartbeatRefusal::Unsigned));
    }
}
