//! SRTP rollover counters (RFC 3711 §3.3.1) across a takeover: a standby's relay that carries on a WebRTC leg
//! must protect and unprotect with the rollover counters (ROC) the browser's stack has, or every packet fails
//! authentication once a call is older than 65,536 packets of an SSRC.
//!
//! rtc-srtp 0.21 keeps each SSRC's packet index inside its context (`get_roc`/`set_roc` are private). So the relay
//! keeps its own [`Index`] of each SSRC next to the context, with the same estimate as rtc-srtp's (RFC 3711
//! Appendix A, rtc-srtp's `next_rollover_count`), to report each rollover for replication; and a relay that resumes
//! a leg brings a fresh context to a replicated ROC by running it over packets of its own making
//! ([`priming_indexes`]), each 0x7ffe indexes after the last, up to 0x4000 before the first real packet: the
//! context estimates every step right, as it would for real traffic. These packets are never sent.

use serde::{Deserialize, Serialize};

/// Half the sequence space: a step of less than this is taken as forward.
const MEDIAN: u16 = 1 << 15;
/// The step between priming packets: the largest that both the index estimate and rtc-shared's replay window
/// (which takes a step of 0x7fff as a late packet) take as forward.
const STEP: u64 = 0x7ffe;
/// How far before the first real packet the last priming packet is: far enough that no real packet of the
/// replay window (128) is taken for it, near enough to be estimated forward.
const LEAD: u64 = 0x4000;

/// One rollover of an SSRC's stream on a WebRTC leg, as replicated: the SSRC, which way (`outbound`: what the
/// relay protects towards the browser; else what the browser sends), and the ROC from then on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rollover {
    /// The stream's SSRC.
    pub ssrc: u32,
    /// Protected by the relay (true) or by the browser (false).
    pub outbound: bool,
    /// The rollover counter.
    pub roc: u32,
}

/// One SSRC's packet index as rtc-srtp estimates it from the sequence numbers it protected or authenticated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Index {
    index: u64,
    started: bool,
}

impl Index {
    /// The rollover counter.
    pub(crate) fn roc(&self) -> u32 {
        (self.index >> 16) as u32
    }

    /// The index of a packet with `seq` after this one, made current (rtc-srtp's `next_rollover_count` and
    /// `update_rollover_count`): true when the rollover counter went up.
    pub(crate) fn advance(&mut self, seq: u16) -> bool {
        let before = self.roc();
        if !self.started {
            self.index |= u64::from(seq);
            self.started = true;
            return self.roc() > before;
        }
        let local_seq = self.index as u16;
        let diff = i64::from(seq) - i64::from(local_seq);
        let diff = if self.index > u64::from(MEDIAN) {
            if local_seq < MEDIAN {
                if diff > i64::from(MEDIAN) {
                    diff - 0x1_0000
                } else {
                    diff
                }
            } else if local_seq - MEDIAN > seq {
                diff + 0x1_0000
            } else {
                diff
            }
        } else {
            diff
        };
        self.index = self.index.wrapping_add_signed(diff);
        self.roc() > before
    }
}

/// The indexes of the packets that bring a fresh context to the rollover counter `roc` before a first real packet
/// of sequence number `seq`: none for ROC 0, which a fresh context takes anyway.
pub(crate) fn priming_indexes(roc: u32, seq: u16) -> Vec<u64> {
    if roc == 0 {
        return Vec::new();
    }
    let last = ((u64::from(roc) << 16) | u64::from(seq)) - LEAD;
    let first = last % STEP;
    (0..=(last - first) / STEP).map(|k| first + k * STEP).collect()
}

/// A packet of `ssrc` at `index` to prime a context with (a one-byte payload; never sent).
pub(crate) fn priming_packet(ssrc: u32, index: u64) -> [u8; 13] {
    let mut p = [0u8; 13];
    p[0] = 0x80;
    p[2..4].copy_from_slice(&(index as u16).to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_follows_wraps_reordering_and_reports_each_rollover_once() {
        let mut i = Index::default();
        assert!(!i.advance(65_500));
        let mut rollovers = 0;
        for seq in (65_501..=65_535).chain(0..100) {
            rollovers += usize::from(i.advance(seq));
        }
        assert_eq!((rollovers, i.roc()), (1, 1));
        // A late packet from before the wrap: estimated at ROC 0, and the index goes back to it, as rtc-srtp does.
        assert!(!i.advance(65_530));
        assert_eq!(i.roc(), 0);
        assert!(i.advance(101), "and forward again");
        assert_eq!(i.roc(), 1);
    }

    #[test]
    fn priming_steps_are_forward_and_land_just_before_the_target() {
        assert!(priming_indexes(0, 1234).is_empty());
        for (roc, seq) in [(1, 0), (1, 0x4000), (1, 65_535), (7, 12), (300, 40_000)] {
            let steps = priming_indexes(roc, seq);
            let target = (u64::from(roc) << 16) | u64::from(seq);
            assert!(steps[0] < STEP, "the first one is a fresh context's own ROC 0");
            assert!(steps.windows(2).all(|w| w[1] - w[0] == STEP));
            assert_eq!(target - steps.last().unwrap(), LEAD);
            // The estimate of each step, as a context makes it, lands on the step's index.
            let mut i = Index::default();
            for s in &steps {
                i.advance(*s as u16);
                assert_eq!(i.index, *s, "roc {roc} seq {seq}");
            }
            i.advance(seq);
            assert_eq!((i.roc(), i.index), (roc, target));
        }
    }
}
