//! RTP/RTCP statistics of one relay flow (the traffic one relay socket receives).
//!
//! - [`classify`] tells RTP, RTCP and anything else (STUN, garbage) apart: the RTP header checks of RFC 3550
//!   §5.1 and A.1, and the RFC 5761 §4 rule for RTP and RTCP multiplexed on one port (the second byte of RTCP
//!   is a packet type in 192..=223).
//! - [`SsrcStats`] follows one synchronisation source: the sequence tracking of RFC 3550 A.1 (wrap-around,
//!   dropouts, misordering, restarts, and a probation of `MIN_SEQUENTIAL` = 2), the cumulative expected/lost
//!   counts of A.3 and the interarrival jitter of A.8 (§6.4.1).
//! - [`FlowStats`] counts every datagram of a flow and keeps an [`SsrcStats`] for each of its first
//!   [`MAX_SSRCS`] sources; [`FlowSummary`] is what goes into metrics and CDRs.
//!
//! [`FlowStats::on_packet`] runs for every packet relayed in user space: it allocates only when a new source
//! appears (the table of sources starts with room for one, as nearly every stream has one source) and looks
//! sources up in a table of at most eight.

use std::time::Instant;

/// The most sources one flow tracks. A flow with more is broken or hostile: the packets of further sources are
/// counted only in [`FlowSummary::packets`] and [`FlowSummary::bytes`] (and [`FlowStats::untracked_packets`]).
pub const MAX_SSRCS: usize = 8;

/// RFC 3550 A.1: a source is valid after this many packets in sequence.
const MIN_SEQUENTIAL: u32 = 2;
/// RFC 3550 A.1: a forward jump below this is a gap (loss), not a restart.
const MAX_DROPOUT: u16 = 3000;
/// RFC 3550 A.1: a backward step of up to this is a late (reordered) or duplicate packet.
const MAX_MISORDER: u16 = 100;
const RTP_SEQ_MOD: u32 = 1 << 16;

/// The fixed RTP header (RFC 3550 §5.1), the fields the relay looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// PT, 7 bits.
    pub payload_type: u8,
    /// M.
    pub marker: bool,
    /// Sequence number.
    pub seq: u16,
    /// RTP timestamp, in the payload type's clock.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
}

/// What a received datagram is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet {
    /// RTP, with its fixed header.
    Rtp(RtpHeader),
    /// RTCP (or SRTCP): version 2 and a packet type in 192..=223 (RFC 5761 §4).
    Rtcp,
    /// Anything else: STUN (first two bits 00, RFC 7983), DTLS, garbage, a truncated packet.
    Other,
}

/// Classifies a datagram.
///
/// - RTCP: version 2, at least the 4-byte common header, and a second byte in 192..=223 (RFC 5761 §4: RTP
///   payload types 64..=95 are avoided so that the marker bit plus PT never collides with an RTCP type).
/// - RTP: version 2, at least 12 bytes plus the CSRC list plus, with X set, the header extension (RFC 3550
///   §5.3.1); with P set, the padding count in the last byte is at least 1 and fits after the header.
/// - Everything else is [`Packet::Other`]. Never panics, whatever the input.
///
/// The payload is not looked at, so SRTP classifies as RTP and SRTCP as RTCP. (An SRTP packet with P set has
/// its padding count encrypted; if the last byte, then part of the authentication tag, happens not to fit, it
/// is classified as [`Packet::Other`].)
pub fn classify(bytes: &[u8]) -> Packet {
    if bytes.len() < 4 || bytes[0] >> 6 != 2 {
        return Packet::Other;
    }
    if (192..=223).contains(&bytes[1]) {
        return Packet::Rtcp;
    }
    if bytes.len() < 12 {
        return Packet::Other;
    }
    let b0 = bytes[0];
    let mut header = 12 + 4 * usize::from(b0 & 0x0f);
    if b0 & 0x10 != 0 {
        // Extension: 16-bit profile, 16-bit length in 32-bit words, then the words.
        let Some(ext) = bytes.get(header..header + 4) else {
            return Packet::Other;
        };
        header += 4 + 4 * usize::from(u16::from_be_bytes([ext[2], ext[3]]));
    }
    if header > bytes.len() {
        return Packet::Other;
    }
    if b0 & 0x20 != 0 {
        let padding = usize::from(bytes[bytes.len() - 1]);
        if padding == 0 || header + padding > bytes.len() {
            return Packet::Other;
        }
    }
    Packet::Rtp(RtpHeader {
        payload_type: bytes[1] & 0x7f,
        marker: bytes[1] & 0x80 != 0,
        seq: u16::from_be_bytes([bytes[2], bytes[3]]),
        timestamp: u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
        ssrc: u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
    })
}

/// Loss and jitter of one SSRC: RFC 3550 A.1 sequence tracking (wrap-around, `MAX_DROPOUT` = 3000,
/// `MAX_MISORDER` = 100, a probation of `MIN_SEQUENTIAL` = 2), A.3 expected/lost, A.8 interarrival jitter.
///
/// Two deliberate differences from the RFC's sample code, both so that counts add up over a whole call:
/// - the packets of the run that ends probation (and of the two packets that confirm a restart after a large
///   jump) are counted as received and expected, where the sample code drops the first one; a clean stream of
///   N packets therefore has expected = received = N;
/// - a restart (a large jump confirmed by the next packet) does not forget what came before: the expected and
///   received counts of the old run are carried, so [`lost`](Self::lost) stays cumulative.
///
/// Duplicates count as received (as in A.3), so [`lost`](Self::lost) can go negative.
#[derive(Debug, Clone)]
pub struct SsrcStats {
    ssrc: u32,
    /// Every RTP packet of this source, including those of probation and unconfirmed jumps.
    packets: u64,
    max_seq: u16,
    /// Sequence cycles, as a multiple of 2^16. Starts at 2^16 so that `base` can sit one below the first counted
    /// sequence number even when that is 0.
    cycles: u64,
    /// Extended sequence number one below the first one counted (A.1's `base_seq - 1`).
    base: u64,
    /// The sequence number that would confirm a large jump, or `RTP_SEQ_MOD + 1` for none.
    bad_seq: u32,
    probation: u32,
    received: u64,
    /// Expected and received of runs before a restart.
    carried_expected: u64,
    carried_received: u64,
    first_arrival: Instant,
    /// Clock rate of the last packet, Hz (0: unknown, no jitter).
    clock_rate: u32,
    /// Relative transit time of the last packet, in RTP units (A.8), if there is one to compare with.
    transit: Option<u32>,
    /// Interarrival jitter, in RTP units (unscaled, unlike A.8's integer version).
    jitter: f64,
}

impl SsrcStats {
    fn new(ssrc: u32, seq: u16, now: Instant) -> Self {
        Self {
            ssrc,
            packets: 0,
            max_seq: seq.wrapping_sub(1),
            cycles: u64::from(RTP_SEQ_MOD),
            base: 0,
            bad_seq: RTP_SEQ_MOD + 1,
            probation: MIN_SEQUENTIAL,
            received: 0,
            carried_expected: 0,
            carried_received: 0,
            first_arrival: now,
            clock_rate: 0,
            transit: None,
            jitter: 0.0,
        }
    }

    /// The synchronisation source.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Every RTP packet seen from this source, valid or not.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Packets received once the source was valid (A.1; duplicates included).
    pub fn received(&self) -> u64 {
        self.carried_received + self.received
    }

    /// Packets expected: highest extended sequence number minus the first one, plus one (A.3), over all runs.
    pub fn expected(&self) -> u64 {
        let current = if self.probation == 0 { self.cycles + u64::from(self.max_seq) - self.base } else { 0 };
        self.carried_expected + current
    }

    /// Cumulative packets lost: expected minus received (A.3); negative with duplicates.
    pub fn lost(&self) -> i64 {
        i64::try_from(self.expected()).unwrap_or(i64::MAX) - i64::try_from(self.received()).unwrap_or(i64::MAX)
    }

    /// Interarrival jitter in RTP timestamp units (A.8).
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// Interarrival jitter in milliseconds (0 if the clock rate is unknown).
    pub fn jitter_ms(&self) -> f64 {
        if self.clock_rate == 0 {
            0.0
        } else {
            self.jitter * 1000.0 / f64::from(self.clock_rate)
        }
    }

    /// Counts one packet of this source (A.1 `update_seq`, then A.8).
    fn update(&mut self, header: &RtpHeader, now: Instant, clock_rate: u32) {
        self.packets += 1;
        self.update_seq(header.seq);
        self.update_jitter(header.timestamp, now, clock_rate);
    }

    /// Starts a run of `count` packets in sequence ending at `seq` (A.1 `init_seq`, with those packets counted).
    fn start_run(&mut self, seq: u16, count: u64) {
        self.cycles = u64::from(RTP_SEQ_MOD);
        self.max_seq = seq;
        self.base = self.cycles + u64::from(seq) - count;
        self.bad_seq = RTP_SEQ_MOD + 1;
        self.received = count;
    }

    fn update_seq(&mut self, seq: u16) {
        let udelta = seq.wrapping_sub(self.max_seq);
        if self.probation > 0 {
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.start_run(seq, u64::from(MIN_SEQUENTIAL));
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
            }
            return;
        }
        if udelta < MAX_DROPOUT {
            // In order, with a permissible gap.
            if seq < self.max_seq {
                self.cycles += u64::from(RTP_SEQ_MOD);
            }
            self.max_seq = seq;
        } else if u32::from(udelta) <= RTP_SEQ_MOD - u32::from(MAX_MISORDER) {
            // A very large jump: a restart if the next packet follows it, else a stray.
            if u32::from(seq) == self.bad_seq {
                // The source restarted: keep the old run's counts, count the jump and this packet.
                self.carried_expected += self.cycles + u64::from(self.max_seq) - self.base;
                self.carried_received += self.received;
                self.start_run(seq, 2);
                // Timestamps most likely jumped too: start the jitter comparison afresh.
                self.transit = None;
                return;
            }
            self.bad_seq = (u32::from(seq) + 1) & (RTP_SEQ_MOD - 1);
            return;
        }
        // Else a duplicate or reordered packet: counted, max_seq unchanged.
        self.received += 1;
    }

    fn update_jitter(&mut self, timestamp: u32, now: Instant, clock_rate: u32) {
        if clock_rate != self.clock_rate {
            // Transit times in two clocks do not compare.
            self.clock_rate = clock_rate;
            self.transit = None;
        }
        if clock_rate == 0 {
            return;
        }
        // Arrival in RTP units since this source's first packet; only the difference between two arrivals
        // matters, so it is taken modulo 2^32 like the timestamps.
        let nanos = now.saturating_duration_since(self.first_arrival).as_nanos();
        let arrival = (nanos * u128::from(clock_rate) / 1_000_000_000) as u32;
        let transit = arrival.wrapping_sub(timestamp);
        if let Some(previous) = self.transit {
            // D(i,j) = (Rj - Ri) - (Sj - Si), modulo 2^32 then signed.
            let d = f64::from((transit.wrapping_sub(previous) as i32).unsigned_abs());
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.transit = Some(transit);
    }
}

/// Counters of one flow (one relay socket's received traffic).
///
/// At most [`MAX_SSRCS`] sources are tracked; the packets of further ones are counted only in
/// [`FlowSummary::packets`]/[`FlowSummary::bytes`] and in [`untracked_packets`](Self::untracked_packets).
#[derive(Debug, Clone, Default)]
pub struct FlowStats {
    packets: u64,
    bytes: u64,
    rtcp_packets: u64,
    other_packets: u64,
    untracked_packets: u64,
    last_packet: Option<Instant>,
    ssrcs: Vec<SsrcStats>,
}

impl FlowStats {
    /// A flow that has received nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one received datagram at `now`: RTP, RTCP or anything else (see [`classify`]). `clock_rate(pt)`
    /// gives the RTP clock of a payload type in Hz (from the SDP); callers pass e.g. `|_| 8000`. It is called
    /// once per RTP packet; a clock rate of 0 (unknown payload type) skips the jitter update. Allocates only for
    /// a new source.
    pub fn on_packet(&mut self, now: Instant, bytes: &[u8], clock_rate: impl Fn(u8) -> u32) {
        self.packets += 1;
        self.bytes += bytes.len() as u64;
        self.last_packet = Some(now);
        let header = match classify(bytes) {
            Packet::Rtp(header) => header,
            Packet::Rtcp => {
                self.rtcp_packets += 1;
                return;
            }
            Packet::Other => {
                self.other_packets += 1;
                return;
            }
        };
        let source = match self.ssrcs.iter().position(|s| s.ssrc == header.ssrc) {
            Some(i) => &mut self.ssrcs[i],
            None if self.ssrcs.len() < MAX_SSRCS => {
                // Room for one source first: eight would be 800 bytes for every stream of every call, nearly all
                // of which have one source; a stream with more grows its table once per new source.
                self.ssrcs.reserve_exact(1);
                self.ssrcs.push(SsrcStats::new(header.ssrc, header.seq, now));
                self.ssrcs.last_mut().expect("just pushed")
            }
            None => {
                self.untracked_packets += 1;
                return;
            }
        };
        source.update(&header, now, clock_rate(header.payload_type));
    }

    /// When the last datagram of any kind (RTP, RTCP, STUN, garbage) arrived, if any has.
    pub fn last_packet(&self) -> Option<Instant> {
        self.last_packet
    }

    /// The tracked sources, in order of their first packet.
    pub fn ssrcs(&self) -> &[SsrcStats] {
        &self.ssrcs
    }

    /// RTP packets of sources beyond the first [`MAX_SSRCS`], not tracked.
    pub fn untracked_packets(&self) -> u64 {
        self.untracked_packets
    }

    /// The counters as they stand.
    pub fn summary(&self) -> FlowSummary {
        let busiest = self.ssrcs.iter().reduce(|best, s| if s.packets > best.packets { s } else { best });
        FlowSummary {
            packets: self.packets,
            bytes: self.bytes,
            rtcp_packets: self.rtcp_packets,
            other_packets: self.other_packets,
            lost: self.ssrcs.iter().map(SsrcStats::lost).sum(),
            expected: self.ssrcs.iter().map(SsrcStats::expected).sum(),
            jitter_ms: busiest.map_or(0.0, SsrcStats::jitter_ms),
            ssrcs: self.ssrcs.len() as u32,
        }
    }
}

/// What goes into metrics and CDRs.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FlowSummary {
    /// Datagrams received, of every kind (RTP, RTCP, other).
    pub packets: u64,
    /// Bytes of those datagrams (UDP payload).
    pub bytes: u64,
    /// Of [`packets`](Self::packets), those classified RTCP.
    pub rtcp_packets: u64,
    /// Of [`packets`](Self::packets), those neither RTP nor RTCP (STUN, DTLS, garbage).
    pub other_packets: u64,
    /// Packets expected minus received over all SSRCs (RFC 3550 A.3 cumulative lost; may be negative with
    /// duplicates).
    pub lost: i64,
    /// Packets expected over all SSRCs (RFC 3550 A.3).
    pub expected: u64,
    /// Interarrival jitter of the SSRC with the most packets, in milliseconds (A.8 value / clock rate * 1000).
    pub jitter_ms: f64,
    /// Sources tracked (at most [`MAX_SSRCS`]).
    pub ssrcs: u32,
}

impl FlowSummary {
    /// Adds another summary of the same flow (a flow counted partly in user space and partly in the kernel
    /// later): counters are summed (saturating), jitter and SSRC count are the larger of the two, since both
    /// halves usually see the same sources.
    pub fn merge(&mut self, other: &FlowSummary) {
        self.packets = self.packets.saturating_add(other.packets);
        self.bytes = self.bytes.saturating_add(other.bytes);
        self.rtcp_packets = self.rtcp_packets.saturating_add(other.rtcp_packets);
        self.other_packets = self.other_packets.saturating_add(other.other_packets);
        self.lost = self.lost.saturating_add(other.lost);
        self.expected = self.expected.saturating_add(other.expected);
        self.jitter_ms = self.jitter_ms.max(other.jitter_ms);
        self.ssrcs = self.ssrcs.max(other.ssrcs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const SSRC: u32 = 0x1234_5678;

    /// A 12-byte RTP header (PT 0) and 160 bytes of payload.
    fn rtp(seq: u16, timestamp: u32, ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, 0x00];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&timestamp.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.resize(12 + 160, 0xd5);
        p
    }

    fn feed(flow: &mut FlowStats, t0: Instant, seqs: &[u16]) {
        for &seq in seqs {
            let ts = u32::from(seq) * 160;
            let at = t0 + Duration::from_millis(20 * u64::from(seq));
            flow.on_packet(at, &rtp(seq, ts, SSRC), |_| 8000);
        }
    }

    #[test]
    fn classify_reads_the_rtp_fixed_header() {
        let mut p = rtp(0xabcd, 0x0102_0304, SSRC);
        p[1] = 0x80 | 8; // marker, PCMA
        assert_eq!(
            classify(&p),
            Packet::Rtp(RtpHeader { payload_type: 8, marker: true, seq: 0xabcd, timestamp: 0x0102_0304, ssrc: SSRC })
        );
    }

    #[test]
    fn classify_rtp_with_csrcs_extension_and_padding() {
        // CC = 2, X, P: 12 + 8 (CSRCs) + 4 + 4 (extension of one word) + 2 payload + 2 padding.
        let mut p = vec![0xb2, 0x60, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9];
        p.extend_from_slice(&[0; 8]);
        p.extend_from_slice(&[0xbe, 0xde, 0x00, 0x01, 0x10, 0xff, 0, 0]);
        p.extend_from_slice(&[0xaa, 0xbb, 0x00, 0x02]);
        assert!(matches!(classify(&p), Packet::Rtp(RtpHeader { payload_type: 96, seq: 1, ssrc: 9, .. })));
        // Padding count 0, or larger than what follows the header: not RTP.
        let mut bad = p.clone();
        *bad.last_mut().unwrap() = 0;
        assert_eq!(classify(&bad), Packet::Other);
        *bad.last_mut().unwrap() = 5;
        assert_eq!(classify(&bad), Packet::Other);
        // Extension length running past the end.
        let mut bad = p.clone();
        bad[23] = 9;
        assert_eq!(classify(&bad), Packet::Other);
        // CSRC count running past the end.
        let mut bad = rtp(1, 0, SSRC);
        bad.truncate(12 + 4 * 15 - 1);
        bad[0] = 0x8f;
        assert_eq!(classify(&bad), Packet::Other);
    }

    #[test]
    fn classify_rtcp_by_packet_type_192_to_223() {
        // A receiver report with no blocks: V=2, RC=0, PT=201, length 1.
        let rr = [0x80, 201, 0, 1, 0x12, 0x34, 0x56, 0x78];
        assert_eq!(classify(&rr), Packet::Rtcp);
        for pt in [192u8, 200, 202, 203, 204, 205, 206, 223] {
            assert_eq!(classify(&[0x81, pt, 0, 0]), Packet::Rtcp, "type {pt}");
        }
        // 224 and 191 are RTP (marker set, PT 96 and 63).
        assert!(matches!(classify(&rtp_with_second_byte(224)), Packet::Rtp(RtpHeader { payload_type: 96, .. })));
        assert!(matches!(classify(&rtp_with_second_byte(191)), Packet::Rtp(RtpHeader { payload_type: 63, .. })));
    }

    fn rtp_with_second_byte(b1: u8) -> Vec<u8> {
        let mut p = rtp(1, 160, SSRC);
        p[1] = b1;
        p
    }

    #[test]
    fn classify_stun_and_other_versions_as_other() {
        // A STUN binding request: type 0x0001, length 0, magic cookie, transaction id.
        let mut stun = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
        stun.extend_from_slice(&[7; 12]);
        assert_eq!(classify(&stun), Packet::Other);
        // A STUN binding success response (0x0101).
        stun[0] = 0x01;
        stun[1] = 0x01;
        assert_eq!(classify(&stun), Packet::Other);
        // DTLS (first byte 20..=63) and RTP version 1 and 3.
        assert_eq!(classify(&[22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), Packet::Other);
        let mut v1 = rtp(1, 0, SSRC);
        v1[0] = 0x40;
        assert_eq!(classify(&v1), Packet::Other);
        v1[0] = 0xc0;
        assert_eq!(classify(&v1), Packet::Other);
        assert_eq!(classify(&[]), Packet::Other);
    }

    #[test]
    fn truncations_and_garbage_never_panic() {
        let mut full = vec![0xbf, 0xe0, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 1];
        full.extend_from_slice(&[0; 60]); // 15 CSRCs
        full.extend_from_slice(&[0xbe, 0xde, 0x00, 0x02, 1, 2, 3, 4, 5, 6, 7, 8]);
        full.extend_from_slice(&[0x55; 20]);
        full.push(4);
        assert!(matches!(classify(&full), Packet::Rtp(_)));
        let t0 = Instant::now();
        let mut flow = FlowStats::new();
        for len in 0..=full.len() {
            let _ = classify(&full[..len]);
            flow.on_packet(t0, &full[..len], |_| 8000);
        }
        // Only the whole packet is RTP (0xe0 is 224: marker and PT 96, not RTCP); every prefix is Other.
        assert_eq!(flow.summary().packets, full.len() as u64 + 1);
        assert_eq!(flow.summary().other_packets, full.len() as u64);

        // A little xorshift: deterministic garbage of every length up to 80, all version bits.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut buf = [0u8; 80];
        for round in 0..5000 {
            let len = round % buf.len();
            for b in buf.iter_mut().take(len) {
                *b = next() as u8;
            }
            if round % 2 == 0 && len > 0 {
                buf[0] = 0x80 | (buf[0] & 0x3f); // version 2, to reach the deeper checks
            }
            let _ = classify(&buf[..len]);
            flow.on_packet(t0 + Duration::from_millis(round as u64), &buf[..len], |pt| u32::from(pt) * 1000);
        }
        let s = flow.summary();
        assert_eq!(s.packets, full.len() as u64 + 1 + 5000);
        assert!(s.ssrcs <= 8);
    }

    #[test]
    fn in_order_stream_has_no_loss_and_expected_equals_packets() {
        let mut flow = FlowStats::new();
        let seqs: Vec<u16> = (1000..1050).collect();
        feed(&mut flow, Instant::now(), &seqs);
        let s = flow.summary();
        assert_eq!(s.packets, 50);
        assert_eq!(s.bytes, 50 * 172);
        assert_eq!(s.expected, 50);
        assert_eq!(s.lost, 0);
        assert_eq!(s.ssrcs, 1);
        assert_eq!(s.rtcp_packets, 0);
        assert_eq!(s.other_packets, 0);
        assert_eq!(flow.ssrcs()[0].received(), 50);
    }

    #[test]
    fn gap_of_three_counts_three_lost() {
        let mut flow = FlowStats::new();
        let seqs: Vec<u16> = (1..=10).chain(14..=20).collect();
        feed(&mut flow, Instant::now(), &seqs);
        let s = flow.summary();
        assert_eq!(s.packets, 17);
        assert_eq!(s.expected, 20);
        assert_eq!(s.lost, 3);
    }

    #[test]
    fn sequence_wrap_65535_to_0_counts_no_loss() {
        let mut flow = FlowStats::new();
        let t0 = Instant::now();
        let seqs: Vec<u16> = (65530..=65535).chain(0..10).collect();
        for (i, &seq) in seqs.iter().enumerate() {
            let at = t0 + Duration::from_millis(20 * i as u64);
            flow.on_packet(at, &rtp(seq, 160 * i as u32, SSRC), |_| 8000);
        }
        let s = flow.summary();
        assert_eq!(s.packets, 16);
        assert_eq!(s.expected, 16);
        assert_eq!(s.lost, 0);
    }

    #[test]
    fn stream_validated_across_the_wrap_counts_no_loss() {
        let mut flow = FlowStats::new();
        let t0 = Instant::now();
        for (i, seq) in [65535u16, 0, 1, 2].into_iter().enumerate() {
            flow.on_packet(t0 + Duration::from_millis(20 * i as u64), &rtp(seq, 0, SSRC), |_| 8000);
        }
        assert_eq!(flow.summary().expected, 4);
        assert_eq!(flow.summary().lost, 0);
    }

    #[test]
    fn duplicates_make_lost_negative() {
        let mut flow = FlowStats::new();
        feed(&mut flow, Instant::now(), &[1, 2, 3, 3, 4, 5, 5, 5, 6]);
        let s = flow.summary();
        assert_eq!(s.packets, 9);
        assert_eq!(s.expected, 6);
        assert_eq!(s.lost, -3);
    }

    #[test]
    fn reordered_packets_are_not_lost() {
        let mut flow = FlowStats::new();
        feed(&mut flow, Instant::now(), &[1, 2, 3, 5, 4, 6, 8, 7, 9, 10]);
        let s = flow.summary();
        assert_eq!(s.expected, 10);
        assert_eq!(s.lost, 0);
    }

    #[test]
    fn reordering_across_the_wrap_is_not_a_cycle() {
        let mut flow = FlowStats::new();
        let seqs = [65532u16, 65533, 65534, 0, 65535, 1, 2];
        for (i, &seq) in seqs.iter().enumerate() {
            flow.on_packet(Instant::now() + Duration::from_millis(20 * i as u64), &rtp(seq, 0, SSRC), |_| 8000);
        }
        assert_eq!(flow.summary().expected, 7);
        assert_eq!(flow.summary().lost, 0);
    }

    #[test]
    fn probation_restarts_on_out_of_sequence_packet() {
        let mut flow = FlowStats::new();
        // 10 is followed by 500: probation starts again; 500, 501 validate the source.
        feed(&mut flow, Instant::now(), &[10, 500, 501, 502]);
        let s = flow.summary();
        assert_eq!(s.packets, 4);
        assert_eq!(s.expected, 3);
        assert_eq!(s.lost, 0);
    }

    #[test]
    fn large_jump_is_ignored_once_then_a_restart_keeps_the_old_counts() {
        let mut flow = FlowStats::new();
        // 1..=10 with 8 missing; a stray 40000; then a restart at 20000 confirmed by 20001.
        let seqs: Vec<u16> = (1..=7).chain(9..=10).chain([40000]).chain(20000..=20004).collect();
        feed(&mut flow, Instant::now(), &seqs);
        let source = &flow.ssrcs()[0];
        assert_eq!(source.packets(), 15);
        // Old run: 10 expected, 9 received; new run 20000..=20004: 5 and 5. The stray is in neither.
        assert_eq!(source.expected(), 15);
        assert_eq!(source.received(), 14);
        assert_eq!(flow.summary().lost, 1);
    }

    #[test]
    fn perfectly_paced_stream_has_no_jitter() {
        let mut flow = FlowStats::new();
        let seqs: Vec<u16> = (0..500).collect();
        feed(&mut flow, Instant::now(), &seqs);
        let s = flow.summary();
        assert!(s.jitter_ms < 0.01, "jitter {}", s.jitter_ms);
        assert_eq!(s.lost, 0);
    }

    #[test]
    fn alternating_plus_minus_five_ms_matches_the_rfc_recursion() {
        let t0 = Instant::now() + Duration::from_millis(10);
        let mut flow = FlowStats::new();
        // Packet i is sent at 20i ms (timestamp 160i) and arrives 5 ms late on even i, 5 ms early on odd i.
        let arrival_ms = |i: u32| 20.0 * f64::from(i) + if i.is_multiple_of(2) { 5.0 } else { -5.0 };
        for i in 0..100u32 {
            let at = if i % 2 == 0 {
                t0 + Duration::from_millis(20 * u64::from(i) + 5)
            } else {
                t0 + Duration::from_millis(20 * u64::from(i)) - Duration::from_millis(5)
            };
            flow.on_packet(at, &rtp(i as u16, 160 * i, SSRC), |_| 8000);
        }
        // Independently, in milliseconds: D = (Rj - Ri) - (Sj - Si), J += (|D| - J) / 16.
        let mut expected = 0.0f64;
        for j in 1..100u32 {
            let d = (arrival_ms(j) - arrival_ms(j - 1)) - 20.0;
            assert_eq!(d.abs(), 10.0);
            expected += (d.abs() - expected) / 16.0;
        }
        let got = flow.summary().jitter_ms;
        assert!((got - expected).abs() < 1e-6, "jitter {got} ms, expected {expected} ms");
        assert!(got > 9.9 && got < 10.0, "jitter {got} ms");
        assert!((flow.ssrcs()[0].jitter() - expected * 8.0).abs() < 1e-5);
    }

    #[test]
    fn timestamp_wrap_does_not_disturb_jitter() {
        let t0 = Instant::now();
        let mut flow = FlowStats::new();
        let start = u32::MAX - 160 * 10;
        for i in 0..40u32 {
            let at = t0 + Duration::from_millis(20 * u64::from(i));
            flow.on_packet(at, &rtp(i as u16, start.wrapping_add(160 * i), SSRC), |_| 8000);
        }
        assert!(flow.summary().jitter_ms < 0.01);
    }

    #[test]
    fn unknown_clock_rate_gives_no_jitter_and_no_panic() {
        let mut flow = FlowStats::new();
        let t0 = Instant::now();
        for i in 0..10u32 {
            let at = t0 + Duration::from_millis(7 * u64::from(i * i));
            flow.on_packet(at, &rtp(i as u16, 160 * i, SSRC), |_| 0);
        }
        assert_eq!(flow.summary().jitter_ms, 0.0);
        assert_eq!(flow.summary().lost, 0);
    }

    #[test]
    fn jitter_reports_the_ssrc_with_the_most_packets() {
        let t0 = Instant::now();
        let mut flow = FlowStats::new();
        // A short, very jittery source and a long, clean one.
        for i in 0..5u32 {
            let at = t0 + Duration::from_millis(20 * u64::from(i) + if i % 2 == 0 { 0 } else { 15 });
            flow.on_packet(at, &rtp(i as u16, 160 * i, 1), |_| 8000);
        }
        for i in 0..50u32 {
            let at = t0 + Duration::from_millis(20 * u64::from(i));
            flow.on_packet(at, &rtp(i as u16, 160 * i, 2), |_| 8000);
        }
        let s = flow.summary();
        assert_eq!(s.ssrcs, 2);
        assert!(flow.ssrcs()[0].jitter_ms() > 1.0);
        assert!(s.jitter_ms < 0.01);
        assert_eq!(s.expected, 55);
    }

    #[test]
    fn rtcp_and_stun_are_counted_apart_and_update_last_packet() {
        let t0 = Instant::now();
        let mut flow = FlowStats::new();
        assert_eq!(flow.last_packet(), None);
        flow.on_packet(t0, &rtp(1, 0, SSRC), |_| 8000);
        let rr = [0x80, 201, 0, 1, 0x12, 0x34, 0x56, 0x78];
        flow.on_packet(t0 + Duration::from_secs(1), &rr, |_| 8000);
        let stun = [0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
        flow.on_packet(t0 + Duration::from_secs(2), &stun, |_| 8000);
        let s = flow.summary();
        assert_eq!(s.packets, 3);
        assert_eq!(s.bytes, 172 + 8 + 20);
        assert_eq!(s.rtcp_packets, 1);
        assert_eq!(s.other_packets, 1);
        assert_eq!(flow.last_packet(), Some(t0 + Duration::from_secs(2)));
    }

    #[test]
    fn a_stream_of_one_source_keeps_room_for_one() {
        let t0 = Instant::now();
        let mut flow = FlowStats::new();
        for seq in 0..50u16 {
            flow.on_packet(t0 + Duration::from_millis(20 * u64::from(seq)), &rtp(seq, 0, 7), |_| 8000);
        }
        assert_eq!(flow.ssrcs().len(), 1);
        assert_eq!(flow.ssrcs.capacity(), 1, "not the eight of MAX_SSRCS: memory per call");
    }

    #[test]
    fn more_than_eight_ssrcs_are_capped() {
        let t0 = Instant::now();
        let mut flow = FlowStats::new();
        for ssrc in 0..12u32 {
            for seq in 0..3u16 {
                flow.on_packet(t0 + Duration::from_millis(20 * u64::from(seq)), &rtp(seq, 0, ssrc), |_| 8000);
            }
        }
        let s = flow.summary();
        assert_eq!(s.ssrcs, 8);
        assert_eq!(s.packets, 36);
        assert_eq!(s.bytes, 36 * 172);
        assert_eq!(s.expected, 24);
        assert_eq!(s.lost, 0);
        assert_eq!(flow.untracked_packets(), 12);
        assert_eq!(flow.ssrcs().len(), 8);
        assert_eq!(flow.ssrcs.capacity(), 8);
    }

    #[test]
    fn merge_sums_counters_and_takes_the_larger_jitter() {
        let mut a = FlowSummary {
            packets: 100,
            bytes: 17_200,
            rtcp_packets: 2,
            other_packets: 1,
            lost: 3,
            expected: 100,
            jitter_ms: 4.5,
            ssrcs: 1,
        };
        let b = FlowSummary {
            packets: 900,
            bytes: 154_800,
            rtcp_packets: 18,
            other_packets: 0,
            lost: -1,
            expected: 899,
            jitter_ms: 2.0,
            ssrcs: 2,
        };
        a.merge(&b);
        assert_eq!(
            a,
            FlowSummary {
                packets: 1000,
                bytes: 172_000,
                rtcp_packets: 20,
                other_packets: 1,
                lost: 2,
                expected: 999,
                jitter_ms: 4.5,
                ssrcs: 2,
            }
        );
        let mut empty = FlowSummary::default();
        empty.merge(&a);
        assert_eq!(empty, a);
    }

    #[test]
    fn summary_round_trips_through_json() {
        let mut flow = FlowStats::new();
        feed(&mut flow, Instant::now(), &[1, 2, 4]);
        let s = flow.summary();
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"lost\":1"), "{json}");
        assert_eq!(serde_json::from_str::<FlowSummary>(&json).unwrap(), s);
    }
}
