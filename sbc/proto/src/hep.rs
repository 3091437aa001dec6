//! HEP version 3 ("HEP3 Network Protocol Specification", sipcapture/HEP): the encapsulation Homer and SIP3
//! collectors take captured signalling and QoS reports in.
//!
//! Written here rather than taken from a crate: the HEP crates on crates.io are unmaintained one-offs, and the
//! format is a dozen type-length-value chunks (DESIGN.md "Dependencies"). Only encoding lives here; the driver
//! queues the packets and sends them.
//!
//! A packet is `"HEP3"`, the total length (u16, network order, header included), then chunks. Each chunk is a
//! vendor id (u16, 0 = generic), a type id (u16) and a length (u16, its 6-byte header included), then the value.
//! Integers are in network order.

use std::net::SocketAddr;

/// Chunk type ids of the generic vendor (0x0000) that we write.
mod chunk {
    pub const IP_FAMILY: u16 = 0x0001;
    pub const IP_PROTOCOL: u16 = 0x0002;
    pub const IPV4_SRC: u16 = 0x0003;
    pub const IPV4_DST: u16 = 0x0004;
    pub const IPV6_SRC: u16 = 0x0005;
    pub const IPV6_DST: u16 = 0x0006;
    pub const SRC_PORT: u16 = 0x0007;
    pub const DST_PORT: u16 = 0x0008;
    pub const TIME_SEC: u16 = 0x0009;
    pub const TIME_USEC: u16 = 0x000a;
    pub const PROTOCOL_TYPE: u16 = 0x000b;
    pub const AGENT_ID: u16 = 0x000c;
    pub const AUTH_KEY: u16 = 0x000e;
    pub const PAYLOAD: u16 = 0x000f;
    pub const CORRELATION_ID: u16 = 0x0011;
}

/// Address families as the spec numbers them (the BSD socket values).
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
/// IP protocol numbers (IANA).
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
/// Bytes before the first chunk: `"HEP3"` and the total length.
const HEADER_LEN: usize = 6;
/// Bytes of a chunk's header: vendor, type, length.
const CHUNK_HEADER_LEN: usize = 6;

/// What the payload is (chunk 0x000b).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolType {
    /// A SIP message, as on the wire (type 1).
    Sip,
    /// A JSON QoS report of a call's media (type 34, `0x22`): what Homer files as an RTP agent's report and shows
    /// in the call's QoS tab by the correlation id.
    QosJson,
}

impl ProtocolType {
    /// The value on the wire.
    pub fn code(self) -> u8 {
        match self {
            Self::Sip => 1,
            Self::QosJson => 34,
        }
    }
}

/// The transport the captured message travelled on (chunk 0x0002).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpProtocol {
    /// UDP.
    Udp,
    /// TCP (also TLS and WebSocket: the plaintext inside is what is captured).
    Tcp,
}

/// One captured message, ready to be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capture<'a> {
    /// Where the message came from.
    pub src: SocketAddr,
    /// Where it went.
    pub dst: SocketAddr,
    /// Its transport.
    pub protocol: IpProtocol,
    /// When it was captured: seconds and microseconds since the Unix epoch (the caller reads the clock).
    pub time: (u32, u32),
    /// What the payload is.
    pub kind: ProtocolType,
    /// The capture agent's id (`[hep] agent_id`).
    pub agent_id: u32,
    /// The collector's password (`[hep] password_env`), if it wants one.
    pub auth_key: Option<&'a str>,
    /// Links the messages of one call: the Call-ID of its leg A, on both legs.
    pub correlation_id: Option<&'a [u8]>,
    /// The message or report.
    pub payload: &'a [u8],
}

/// Why a capture could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The packet would exceed HEP's 16-bit length (the capture is dropped and counted).
    #[error("HEP packet of {0} bytes exceeds 65535")]
    TooLong(usize),
    /// Source and destination are of different address families (IPv4 and IPv6): HEP has one family chunk.
    #[error("source and destination differ in address family")]
    MixedFamilies,
}

impl Capture<'_> {
    /// The encoded packet's length.
    pub fn encoded_len(&self) -> usize {
        let ip = if self.src.is_ipv4() { 4 } else { 16 };
        let fixed = [1, 1, ip, ip, 2, 2, 4, 4, 1, 4, self.payload.len()];
        let optional = [self.auth_key.map(str::len), self.correlation_id.map(<[u8]>::len)];
        let values: usize = fixed.iter().sum::<usize>() + optional.iter().flatten().sum::<usize>();
        let chunks = fixed.len() + optional.iter().flatten().count();
        HEADER_LEN + chunks * CHUNK_HEADER_LEN + values
    }

    /// Appends the packet to `out`; on error `out` is left as it was.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let len = self.encoded_len();
        let total = u16::try_from(len).map_err(|_| EncodeError::TooLong(len))?;
        let start = out.len();
        out.reserve(len);
        out.extend_from_slice(b"HEP3");
        out.extend_from_slice(&total.to_be_bytes());
        match (self.src, self.dst) {
            (SocketAddr::V4(s), SocketAddr::V4(d)) => {
                put(out, chunk::IP_FAMILY, &[AF_INET]);
                put(out, chunk::IP_PROTOCOL, &[self.protocol_number()]);
                put(out, chunk::IPV4_SRC, &s.ip().octets());
                put(out, chunk::IPV4_DST, &d.ip().octets());
            }
            (SocketAddr::V6(s), SocketAddr::V6(d)) => {
                put(out, chunk::IP_FAMILY, &[AF_INET6]);
                put(out, chunk::IP_PROTOCOL, &[self.protocol_number()]);
                put(out, chunk::IPV6_SRC, &s.ip().octets());
                put(out, chunk::IPV6_DST, &d.ip().octets());
            }
            _ => {
                out.truncate(start);
                return Err(EncodeError::MixedFamilies);
            }
        }
        put(out, chunk::SRC_PORT, &self.src.port().to_be_bytes());
        put(out, chunk::DST_PORT, &self.dst.port().to_be_bytes());
        put(out, chunk::TIME_SEC, &self.time.0.to_be_bytes());
        put(out, chunk::TIME_USEC, &self.time.1.to_be_bytes());
        put(out, chunk::PROTOCOL_TYPE, &[self.kind.code()]);
        put(out, chunk::AGENT_ID, &self.agent_id.to_be_bytes());
        if let Some(key) = self.auth_key {
            put(out, chunk::AUTH_KEY, key.as_bytes());
        }
        if let Some(id) = self.correlation_id {
            put(out, chunk::CORRELATION_ID, id);
        }
        put(out, chunk::PAYLOAD, self.payload);
        debug_assert_eq!(out.len() - start, len);
        Ok(())
    }

    fn protocol_number(&self) -> u8 {
        match self.protocol {
            IpProtocol::Udp => IPPROTO_UDP,
            IpProtocol::Tcp => IPPROTO_TCP,
        }
    }
}

/// One generic-vendor chunk. The caller has checked the whole packet's length, so each value fits a u16.
fn put(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&((CHUNK_HEADER_LEN + value.len()) as u16).to_be_bytes());
    out.extend_from_slice(value);
}

/// The length of the HEP packet at the start of `buf`, once its header is there: for reading HEP over a stream
/// (tests, collectors). `None` until six bytes are there or when they are not a HEP3 header.
pub fn packet_len(buf: &[u8]) -> Option<usize> {
    (buf.len() >= HEADER_LEN && buf.starts_with(b"HEP3")).then(|| usize::from(u16::from_be_bytes([buf[4], buf[5]])))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture<'a>(src: &str, dst: &str, payload: &'a [u8]) -> Capture<'a> {
        Capture {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            protocol: IpProtocol::Udp,
            time: (0x6000_0001, 123_456),
            kind: ProtocolType::Sip,
            agent_id: 2001,
            auth_key: None,
            correlation_id: None,
            payload,
        }
    }

    #[test]
    fn sip_over_udp_ipv4_with_correlation_id_is_byte_exact() {
        let mut c = capture("198.18.1.10:5060", "198.18.1.1:5080", b"OPTIONS");
        c.correlation_id = Some(b"abc");
        let mut out = Vec::new();
        c.encode(&mut out).unwrap();
        #[rustfmt::skip]
        let expected: &[u8] = &[
            b'H', b'E', b'P', b'3', 0x00, 0x73,         // 115 bytes in all
            0, 0, 0, 0x01, 0, 7, 2,                      // family: IPv4
            0, 0, 0, 0x02, 0, 7, 17,                     // protocol: UDP
            0, 0, 0, 0x03, 0, 10, 198, 18, 1, 10,        // source address
            0, 0, 0, 0x04, 0, 10, 198, 18, 1, 1,         // destination address
            0, 0, 0, 0x07, 0, 8, 0x13, 0xc4,             // source port 5060
            0, 0, 0, 0x08, 0, 8, 0x13, 0xd8,             // destination port 5080
            0, 0, 0, 0x09, 0, 10, 0x60, 0, 0, 0x01,      // seconds
            0, 0, 0, 0x0a, 0, 10, 0, 0x01, 0xe2, 0x40,   // microseconds 123456
            0, 0, 0, 0x0b, 0, 7, 1,                      // SIP
            0, 0, 0, 0x0c, 0, 10, 0, 0, 0x07, 0xd1,      // agent 2001
            0, 0, 0, 0x11, 0, 9, b'a', b'b', b'c',       // correlation id
            0, 0, 0, 0x0f, 0, 13, b'O', b'P', b'T', b'I', b'O', b'N', b'S',
        ];
        assert_eq!(out, expected);
        assert_eq!(c.encoded_len(), 115);
        assert_eq!(packet_len(&out), Some(115));
    }

    #[test]
    fn ipv6_over_tcp_with_auth_key_is_byte_exact() {
        let mut c = capture("[2001:db8::1]:5061", "[2001:db8::2]:5060", b"X");
        c.protocol = IpProtocol::Tcp;
        c.kind = ProtocolType::QosJson;
        c.auth_key = Some("pw");
        let mut out = vec![0xee];
        c.encode(&mut out).unwrap();
        let mut expected = vec![0xee, b'H', b'E', b'P', b'3', 0x00, 0x84];
        expected.extend_from_slice(&[0, 0, 0, 0x01, 0, 7, 10, 0, 0, 0, 0x02, 0, 7, 6]);
        expected.extend_from_slice(&[0, 0, 0, 0x05, 0, 22, 0x20, 0x01, 0x0d, 0xb8]);
        expected.extend_from_slice(&[0; 11]);
        expected.push(1);
        expected.extend_from_slice(&[0, 0, 0, 0x06, 0, 22, 0x20, 0x01, 0x0d, 0xb8]);
        expected.extend_from_slice(&[0; 11]);
        expected.push(2);
        expected.extend_from_slice(&[0, 0, 0, 0x07, 0, 8, 0x13, 0xc5, 0, 0, 0, 0x08, 0, 8, 0x13, 0xc4]);
        expected
            .extend_from_slice(&[0, 0, 0, 0x09, 0, 10, 0x60, 0, 0, 0x01, 0, 0, 0, 0x0a, 0, 10, 0, 0x01, 0xe2, 0x40]);
        expected.extend_from_slice(&[0, 0, 0, 0x0b, 0, 7, 34, 0, 0, 0, 0x0c, 0, 10, 0, 0, 0x07, 0xd1]);
        expected.extend_from_slice(&[0, 0, 0, 0x0e, 0, 8, b'p', b'w', 0, 0, 0, 0x0f, 0, 7, b'X']);
        assert_eq!(out, expected);
        assert_eq!(out.len() - 1, 0x84);
    }

    #[test]
    fn oversized_and_mixed_family_captures_are_refused_and_leave_the_buffer() {
        let big = vec![b'x'; 65_500];
        let mut out = vec![1, 2];
        assert_eq!(capture("1.2.3.4:1", "1.2.3.4:2", &big).encode(&mut out), Err(EncodeError::TooLong(65_599)));
        assert_eq!(capture("1.2.3.4:1", "[::1]:2", b"x").encode(&mut out), Err(EncodeError::MixedFamilies));
        assert_eq!(out, [1, 2]);
    }

    #[test]
    fn packet_len_needs_a_whole_header() {
        assert_eq!(packet_len(b"HEP3\x00"), None);
        assert_eq!(packet_len(b"HEP2\x00\x10"), None);
        assert_eq!(packet_len(b"HEP3\x01\x00rest"), Some(256));
    }
}
