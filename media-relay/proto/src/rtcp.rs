//! RTCP for topology hiding: the SDES items of a compound RTCP packet (RFC 3550 §6.5) are what a peer writes
//! about itself, in plain text, and they reach the other side unless the relay rewrites them.
//!
//! [`hide_sdes`] rewrites every SDES packet of a compound packet (RFC 3550 §6.1: SR/RR, SDES, BYE, APP, ...
//! back to back, each with its own length) and leaves every other packet byte for byte as it was:
//!
//! - CNAME (item 1) becomes the call's token for it ([`crate::cname`]): the same the SDP's `a=ssrc` shows, so a
//!   receiver still binds each SSRC to one participant, and nothing of the original is left;
//! - every other item is removed: NAME, EMAIL, PHONE, LOC, TOOL, NOTE and PRIV (2..=8), and unknown types. They
//!   are free text a phone fills with its user's name, `user@host`, its number, its software and version; none
//!   has a meaning the relay could keep while hiding what it says, and only CNAME is mandatory (§6.5);
//! - each chunk keeps its SSRC/CSRC and order; the item list is terminated and padded to 32 bits again (§6.5),
//!   the SDES packet's length field (32-bit words minus one, §6.4.1) is recomputed, and its padding (P bit, on
//!   the last packet only) is kept as it came.
//!
//! A compound packet that does not parse (a length running past the datagram, a version other than 2, padding
//! on a packet that is not the last, a chunk running past its packet) is an [`RtcpError`]: the relay drops it and
//! counts it rather than forward text it could not read. SRTCP is out of scope: its SDES is encrypted and
//! authenticated end to end (the relay never gets a key to rewrite it), so the relay is not asked to.
//!
//! BYE's optional reason and APP packets are kept byte for byte (free text too, but rare, and no phone we know
//! puts an address there): a known limit, documented in config/README.md.

use crate::cname::{Token, TOKEN_LEN};

/// RTCP packet type SDES (RFC 3550 §12.1).
const PT_SDES: u8 = 202;
/// SDES item types (RFC 3550 §6.5, §12.2): the list terminator and CNAME.
const ITEM_END: u8 = 0;
const ITEM_CNAME: u8 = 1;

/// Why a datagram that looked like RTCP could not be rewritten. `offset` is the byte where the sub-packet at
/// fault starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtcpError {
    /// Fewer than the 4 bytes of a header left.
    #[error("RTCP packet at byte {offset}: truncated header")]
    Truncated {
        /// Start of the sub-packet.
        offset: usize,
    },
    /// A version other than 2 (RFC 3550 §6.4.1).
    #[error("RTCP packet at byte {offset}: version {version}, not 2")]
    Version {
        /// Start of the sub-packet.
        offset: usize,
        /// The version bits.
        version: u8,
    },
    /// The length field runs past the end of the datagram.
    #[error("RTCP packet at byte {offset}: length runs past the datagram")]
    Length {
        /// Start of the sub-packet.
        offset: usize,
    },
    /// The P bit on a packet that is not the last of the compound, or a padding count of 0 or longer than the
    /// packet (RFC 3550 §6.4.1, A.2).
    #[error("RTCP packet at byte {offset}: bad padding")]
    Padding {
        /// Start of the sub-packet.
        offset: usize,
    },
    /// An SDES chunk or item that runs past its packet, a chunk list that does not end where the packet does, or
    /// non-null bytes where the terminating null octets belong (RFC 3550 §6.5).
    #[error("SDES packet at byte {offset}: malformed chunk")]
    Sdes {
        /// Start of the SDES packet.
        offset: usize,
    },
}

/// What [`hide_sdes`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// No SDES packet in the compound: forward the datagram as it came (`out` untouched).
    Unchanged,
    /// `out` holds the rewritten compound packet: forward that instead.
    Rewritten {
        /// CNAME items replaced by tokens.
        cnames: usize,
        /// Other items removed.
        dropped_items: usize,
    },
}

/// Whether `datagram` is RTCP by RFC 5761 §4 (the test [`crate::stats::classify`] and the XDP program make too):
/// version 2 and a second byte in 192..=223, which no RTP payload type used with multiplexing gives. Three
/// comparisons: it runs for every RTP packet of a stream whose RTCP is rewritten.
pub fn is_rtcp(datagram: &[u8]) -> bool {
    datagram.len() >= 4 && datagram[0] >> 6 == 2 && (192..=223).contains(&datagram[1])
}

/// One sub-packet of a compound packet: where it starts and its size in bytes (length field + 1, times 4).
#[derive(Debug, Clone, Copy)]
struct Span {
    offset: usize,
    size: usize,
}

/// Rewrites the SDES packets of the compound RTCP packet `datagram` (see the module doc): each CNAME becomes
/// `cname(text)`, every other item goes. The result goes into `out` (cleared first) when there is any SDES
/// packet; otherwise the answer is [`Outcome::Unchanged`] and `out` is left alone. Never panics.
pub fn hide_sdes(datagram: &[u8], cname: impl Fn(&[u8]) -> Token, out: &mut Vec<u8>) -> Result<Outcome, RtcpError> {
    let mut spans: [Option<Span>; 16] = [None; 16];
    let mut count = 0;
    let mut any_sdes = false;
    let mut offset = 0;
    while offset < datagram.len() {
        let rest = &datagram[offset..];
        if rest.len() < 4 {
            return Err(RtcpError::Truncated { offset });
        }
        if rest[0] >> 6 != 2 {
            return Err(RtcpError::Version { offset, version: rest[0] >> 6 });
        }
        let size = (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1) * 4;
        if size > rest.len() {
            return Err(RtcpError::Length { offset });
        }
        if rest[0] & 0x20 != 0 && offset + size != datagram.len() {
            return Err(RtcpError::Padding { offset });
        }
        any_sdes |= rest[1] == PT_SDES;
        // A compound packet of more than 16 parts is no real sender's; refusing it bounds the work.
        let slot = spans.get_mut(count).ok_or(RtcpError::Length { offset })?;
        *slot = Some(Span { offset, size });
        count += 1;
        offset += size;
    }
    if !any_sdes {
        return Ok(Outcome::Unchanged);
    }
    out.clear();
    out.reserve(datagram.len() + 4 * TOKEN_LEN);
    let (mut cnames, mut dropped_items) = (0, 0);
    for span in spans.iter().flatten() {
        let packet = &datagram[span.offset..span.offset + span.size];
        if packet[1] == PT_SDES {
            let (c, d) = rewrite_sdes(packet, span.offset, &cname, out)?;
            cnames += c;
            dropped_items += d;
        } else {
            out.extend_from_slice(packet);
        }
    }
    Ok(Outcome::Rewritten { cnames, dropped_items })
}

/// Appends the rewritten SDES `packet` (which starts at `offset` of its datagram) to `out`; returns the CNAMEs
/// replaced and the items dropped.
fn rewrite_sdes(
    packet: &[u8],
    offset: usize,
    cname: &impl Fn(&[u8]) -> Token,
    out: &mut Vec<u8>,
) -> Result<(usize, usize), RtcpError> {
    let bad = || RtcpError::Sdes { offset };
    let padding = if packet[0] & 0x20 != 0 {
        let p = usize::from(packet[packet.len() - 1]);
        if p == 0 || p > packet.len() - 4 {
            return Err(RtcpError::Padding { offset });
        }
        p
    } else {
        0
    };
    let body = &packet[4..packet.len() - padding];
    let start = out.len();
    // V, P and SC as they came; the length is filled in at the end.
    out.extend_from_slice(&[packet[0], PT_SDES, 0, 0]);
    let (mut cnames, mut dropped) = (0, 0);
    let mut pos = 0;
    for _ in 0..packet[0] & 0x1f {
        let ssrc = body.get(pos..pos + 4).ok_or_else(bad)?;
        out.extend_from_slice(ssrc);
        pos += 4;
        let mut has_cname = false;
        loop {
            let kind = *body.get(pos).ok_or_else(bad)?;
            if kind == ITEM_END {
                break;
            }
            let len = usize::from(*body.get(pos + 1).ok_or_else(bad)?);
            let text = body.get(pos + 2..pos + 2 + len).ok_or_else(bad)?;
            if kind == ITEM_CNAME && !has_cname {
                has_cname = true;
                cnames += 1;
                out.extend_from_slice(&[ITEM_CNAME, TOKEN_LEN as u8]);
                out.extend_from_slice(cname(text).as_bytes());
            } else {
                dropped += 1;
            }
            pos += 2 + len;
        }
        // The terminating null and the nulls up to the next 32-bit boundary (chunks start on one).
        let end = (pos / 4 + 1) * 4;
        if body.get(pos..end).ok_or_else(bad)?.iter().any(|b| *b != 0) {
            return Err(bad());
        }
        pos = end;
        out.push(ITEM_END);
        while !(out.len() - start).is_multiple_of(4) {
            out.push(0);
        }
    }
    if pos != body.len() {
        return Err(bad());
    }
    out.extend_from_slice(&packet[packet.len() - padding..]);
    let words = u16::try_from((out.len() - start) / 4 - 1).map_err(|_| bad())?;
    out[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
    Ok((cnames, dropped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cname::CnameKey;
    use crate::control::{Leg, SessionId};

    const ALICE: &[u8] = b"sip:alice@198.18.1.10";

    fn token(text: &[u8]) -> Token {
        CnameKey::derive(7, SessionId(1)).token(Leg::A, text)
    }

    /// A receiver report of `ssrc` with one report block (RFC 3550 §6.4.2): 32 bytes.
    fn rr(ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x81, 201, 0, 7];
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        p.extend_from_slice(&[0x02, 0, 0, 3, 0, 1, 0x23, 0x45, 0, 0, 0, 9, 0xaa, 0xbb, 0xcc, 0xdd, 0, 0, 1, 0]);
        p
    }

    /// A sender report of `ssrc` without report blocks: 28 bytes.
    fn sr(ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, 200, 0, 6];
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[
            0xe8, 0x1f, 0x2a, 0x3b, 0x10, 0x20, 0x30, 0x40, 0, 0, 0x1f, 0x40, 0, 0, 0, 50, 0, 0, 0x1f, 0x40,
        ]);
        p
    }

    /// One SDES chunk: `ssrc` and its items, terminated and padded (RFC 3550 §6.5).
    fn chunk(ssrc: u32, items: &[(u8, &[u8])]) -> Vec<u8> {
        let mut c = ssrc.to_be_bytes().to_vec();
        for (kind, text) in items {
            c.push(*kind);
            c.push(text.len() as u8);
            c.extend_from_slice(text);
        }
        c.push(0);
        while !c.len().is_multiple_of(4) {
            c.push(0);
        }
        c
    }

    /// An SDES packet of `chunks`, with its length field.
    fn sdes(chunks: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = chunks.concat();
        let mut p = vec![0x80 | chunks.len() as u8, PT_SDES];
        p.extend_from_slice(&((body.len() / 4) as u16).to_be_bytes());
        p.extend_from_slice(&body);
        p
    }

    fn bye(ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x81, 203, 0, 1];
        p.extend_from_slice(&ssrc.to_be_bytes());
        p
    }

    fn hide(datagram: &[u8]) -> (Result<Outcome, RtcpError>, Vec<u8>) {
        let mut out = Vec::new();
        let r = hide_sdes(datagram, token, &mut out);
        (r, out)
    }

    #[test]
    fn baresip_report_cname_becomes_the_token_and_the_rest_stays_byte_identical() {
        // The shape baresip sends every few seconds: RR + SDES(CNAME), and SR + SDES once it sends.
        for report in [rr(0x1111_2222), sr(0x1111_2222)] {
            let input = [report.clone(), sdes(&[chunk(0x1111_2222, &[(1, ALICE)])])].concat();
            let (r, out) = hide(&input);
            assert_eq!(r, Ok(Outcome::Rewritten { cnames: 1, dropped_items: 0 }));
            let expected = [report, sdes(&[chunk(0x1111_2222, &[(1, token(ALICE).as_bytes())])])].concat();
            assert_eq!(out, expected);
            // SDES: header 4 + SSRC 4 + item 2+16 + null, padded: 28 bytes, length field 6.
            assert_eq!(&out[out.len() - 28..out.len() - 24], &[0x81, 202, 0, 6]);
            assert!(!out.windows(ALICE.len()).any(|w| w == ALICE));
            assert!(!out.windows(4).any(|w| w == [198, 18, 1, 10]));
        }
    }

    #[test]
    fn every_other_sdes_item_is_dropped() {
        let items: [(u8, &[u8]); 8] = [
            (2, b"Alice Example"),
            (1, ALICE),
            (3, b"alice@198.18.1.10"),
            (4, b"+49 30 123456"),
            (5, b"Berlin, 198.18.1.10"),
            (6, b"baresip v1.0.0 (x86_64/linux)"),
            (7, b"on hold"),
            (8, b"\x03x-yprivate 198.18.1.10"),
        ];
        let input = [rr(1), sdes(&[chunk(1, &items)])].concat();
        let (r, out) = hide(&input);
        assert_eq!(r, Ok(Outcome::Rewritten { cnames: 1, dropped_items: 7 }));
        assert_eq!(out, [rr(1), sdes(&[chunk(1, &[(1, token(ALICE).as_bytes())])])].concat());
    }

    #[test]
    fn several_chunks_keep_their_order_and_sources_and_a_chunk_without_cname_stays_empty() {
        let input = [
            sr(10),
            sdes(&[chunk(10, &[(1, ALICE), (6, b"tool")]), chunk(11, &[(2, b"Bob")]), chunk(12, &[(1, b"carol@h")])]),
        ]
        .concat();
        let (r, out) = hide(&input);
        assert_eq!(r, Ok(Outcome::Rewritten { cnames: 2, dropped_items: 2 }));
        let expected = [
            sr(10),
            sdes(&[
                chunk(10, &[(1, token(ALICE).as_bytes())]),
                chunk(11, &[]),
                chunk(12, &[(1, token(b"carol@h").as_bytes())]),
            ]),
        ]
        .concat();
        assert_eq!(out, expected);
        assert_eq!(out[28] & 0x1f, 3, "source count kept");
    }

    #[test]
    fn a_second_cname_in_one_chunk_is_dropped() {
        let input = sdes(&[chunk(5, &[(1, ALICE), (1, b"other")])]);
        let (r, out) = hide(&input);
        assert_eq!(r, Ok(Outcome::Rewritten { cnames: 1, dropped_items: 1 }));
        assert_eq!(out, sdes(&[chunk(5, &[(1, token(ALICE).as_bytes())])]));
    }

    #[test]
    fn short_cname_grows_to_the_token_and_lengths_follow() {
        let input = [rr(3), sdes(&[chunk(3, &[(1, b"a")])]), bye(3)].concat();
        assert_eq!(input.len(), 32 + 12 + 8);
        let (r, out) = hide(&input);
        assert_eq!(r, Ok(Outcome::Rewritten { cnames: 1, dropped_items: 0 }));
        assert_eq!(out.len(), 32 + 28 + 8);
        assert_eq!(&out[..32], &rr(3)[..]);
        assert_eq!(&out[60..], &bye(3)[..], "BYE after the SDES is byte-identical");
        assert_eq!(u16::from_be_bytes([out[34], out[35]]), 6);
    }

    #[test]
    fn padding_of_the_last_packet_is_kept_and_counted_in_its_length() {
        // SDES last, P set, 8 bytes of padding (count 8 in the last byte).
        let mut s = sdes(&[chunk(9, &[(1, ALICE), (2, b"Alice")])]);
        s[0] |= 0x20;
        s.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 8]);
        let words = u16::from_be_bytes([s[2], s[3]]) + 2;
        s[2..4].copy_from_slice(&words.to_be_bytes());
        let input = [rr(9), s].concat();
        let (r, out) = hide(&input);
        assert_eq!(r, Ok(Outcome::Rewritten { cnames: 1, dropped_items: 1 }));
        let mut expected = sdes(&[chunk(9, &[(1, token(ALICE).as_bytes())])]);
        expected[0] |= 0x20;
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 8]);
        expected[2..4].copy_from_slice(&8u16.to_be_bytes());
        assert_eq!(out, [rr(9), expected].concat());
    }

    #[test]
    fn rtcp_is_told_from_rtp_as_rfc_5761_says() {
        assert!(is_rtcp(&rr(1)) && is_rtcp(&sr(1)) && is_rtcp(&bye(1)));
        assert!(is_rtcp(&[0x80, 192, 0, 0]) && is_rtcp(&[0x80, 223, 0, 0]));
        for not in [&[0x80, 0, 0, 1][..], &[0x80, 224, 0, 0], &[0x80, 191, 0, 0], &[0x40, 200, 0, 0], &[0x80, 200, 0]] {
            assert!(!is_rtcp(not), "{not:02x?}");
        }
    }

    #[test]
    fn compound_without_sdes_is_unchanged_and_out_untouched() {
        let mut out = vec![1, 2, 3];
        let input = [rr(1), bye(1)].concat();
        assert_eq!(hide_sdes(&input, token, &mut out), Ok(Outcome::Unchanged));
        assert_eq!(out, [1, 2, 3]);
    }

    #[test]
    fn empty_sdes_packet_is_kept() {
        let input = [rr(1), vec![0x80, PT_SDES, 0, 0]].concat();
        let (r, out) = hide(&input);
        assert_eq!(r, Ok(Outcome::Rewritten { cnames: 0, dropped_items: 0 }));
        assert_eq!(out, input);
    }

    #[test]
    fn malformed_compounds_are_errors() {
        let good = [rr(1), sdes(&[chunk(1, &[(1, ALICE)])])].concat();
        let sdes_at = 32;
        let mut cases: Vec<(Vec<u8>, RtcpError)> = Vec::new();
        // Length field one word too long.
        let mut c = good.clone();
        c[sdes_at + 3] += 1;
        cases.push((c, RtcpError::Length { offset: sdes_at }));
        // Version 1 in the second packet.
        let mut c = good.clone();
        c[sdes_at] = (c[sdes_at] & 0x3f) | 0x40;
        cases.push((c, RtcpError::Version { offset: sdes_at, version: 1 }));
        // Padding on the first packet.
        let mut c = good.clone();
        c[0] |= 0x20;
        cases.push((c, RtcpError::Padding { offset: 0 }));
        // Two trailing bytes.
        cases.push(([good.clone(), vec![0x80, 0xca]].concat(), RtcpError::Truncated { offset: good.len() }));
        // An item whose length runs past the packet.
        let mut c = good.clone();
        c[sdes_at + 9] = 200;
        cases.push((c, RtcpError::Sdes { offset: sdes_at }));
        // SC says two chunks, there is one.
        let mut c = good.clone();
        c[sdes_at] = 0x82;
        cases.push((c, RtcpError::Sdes { offset: sdes_at }));
        // SC says none, there is one.
        let mut c = good.clone();
        c[sdes_at] = 0x80;
        cases.push((c, RtcpError::Sdes { offset: sdes_at }));
        // Garbage where the terminating nulls belong.
        let mut c = good.clone();
        let last = c.len() - 1;
        c[last] = 0x55;
        cases.push((c, RtcpError::Sdes { offset: sdes_at }));
        // Padding count 0 and larger than the packet.
        for count in [0u8, 200] {
            let mut c = good.clone();
            c[sdes_at] |= 0x20;
            let last = c.len() - 1;
            c[last] = count;
            cases.push((c, RtcpError::Padding { offset: sdes_at }));
        }
        for (input, expected) in cases {
            let (r, _) = hide(&input);
            assert_eq!(r, Err(expected), "{input:02x?}");
        }
    }

    #[test]
    fn every_truncation_is_an_error_or_a_prefix_that_parses_never_a_panic() {
        let good = [sr(1), sdes(&[chunk(1, &[(1, ALICE), (6, b"baresip")]), chunk(2, &[(1, b"x")])]), bye(1)].concat();
        for end in 0..good.len() {
            let (r, out) = hide(&good[..end]);
            match r {
                // Whole sub-packets only: SR alone, or SR + SDES.
                Ok(Outcome::Unchanged) => assert!(end == 0 || end == 28, "{end}"),
                Ok(Outcome::Rewritten { .. }) => {
                    assert_eq!(end, good.len() - 8);
                    assert!(!out.windows(ALICE.len()).any(|w| w == ALICE));
                }
                Err(_) => {}
            }
        }
    }

    /// A small deterministic generator, as in sdp.rs: no proptest needed to show there is no panic.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn mutations_and_random_bytes_never_panic_and_never_let_the_cname_through() {
        let good = [rr(1), sdes(&[chunk(1, &[(1, ALICE), (2, b"Alice")])]), bye(1)].concat();
        let mut state = 0x2545_F491_4F6C_DD1D;
        for round in 0..20_000 {
            let mut input = good.clone();
            for _ in 0..1 + round % 3 {
                let at = (xorshift(&mut state) % input.len() as u64) as usize;
                input[at] = xorshift(&mut state) as u8;
            }
            let (r, out) = hide(&input);
            if let Ok(Outcome::Rewritten { .. }) = r {
                assert!(!out.windows(ALICE.len()).any(|w| w == ALICE), "{input:02x?}");
            }
            let len = (xorshift(&mut state) % 96) as usize;
            let random: Vec<u8> = (0..len).map(|_| xorshift(&mut state) as u8).collect();
            let _ = hide(&random);
        }
    }
}
