//! Which protocol a datagram on a WebRTC leg's port carries, from its first byte (RFC 7983 §7, as updated by
//! RFC 9443): the order the checks run in matters, since the ranges do not overlap but ZRTP and TURN channels sit
//! between them.

/// The protocol of one datagram on a multiplexed media port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Demuxed {
    /// STUN (first byte 0 to 3): ICE connectivity checks and consent.
    Stun,
    /// DTLS (20 to 63): the handshake, alerts, and (unused by us) application data.
    Dtls,
    /// RTP or RTCP (128 to 191), SRTP/SRTCP on a WebRTC leg; RTCP when the payload type byte is 192 to 223
    /// (RFC 5761 §4).
    Rtp {
        /// RTCP rather than RTP.
        rtcp: bool,
    },
    /// Anything else (ZRTP, TURN channels, garbage): dropped and counted.
    Other,
}

/// The protocol of `datagram`.
pub fn demux(datagram: &[u8]) -> Demuxed {
    match datagram.first() {
        Some(0..=3) => Demuxed::Stun,
        Some(20..=63) => Demuxed::Dtls,
        Some(128..=191) => Demuxed::Rtp { rtcp: datagram.get(1).is_some_and(|pt| (192..=223).contains(pt)) },
        _ => Demuxed::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_byte_ranges_of_rfc_7983_are_told_apart() {
        assert_eq!(demux(&[0x00, 0x01]), Demuxed::Stun, "binding request");
        assert_eq!(demux(&[0x01, 0x01]), Demuxed::Stun, "binding success");
        assert_eq!(demux(&[22, 0xfe, 0xfd]), Demuxed::Dtls, "handshake record");
        assert_eq!(demux(&[21]), Demuxed::Dtls, "alert");
        assert_eq!(demux(&[0x80, 0x00]), Demuxed::Rtp { rtcp: false }, "RTP PCMU");
        assert_eq!(demux(&[0x80, 111 | 0x80]), Demuxed::Rtp { rtcp: false }, "RTP Opus with marker");
        assert_eq!(demux(&[0x81, 200]), Demuxed::Rtp { rtcp: true }, "RTCP SR");
        assert_eq!(demux(&[0x80, 205]), Demuxed::Rtp { rtcp: true }, "RTCP RTPFB");
        for other in [4u8, 19, 64, 127, 192, 255] {
            assert_eq!(demux(&[other, 0]), Demuxed::Other, "first byte {other}");
        }
        assert_eq!(demux(&[]), Demuxed::Other, "empty datagram");
    }
}
