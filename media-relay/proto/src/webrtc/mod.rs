//! WebRTC legs in the relay (issue 18): what a browser's media path needs that a SIP peer's does not.
//!
//! A browser sends STUN, DTLS and SRTP on one port (rtcp-mux, BUNDLE); [`demux`] tells them apart by their first
//! byte. [`ice`] is the ICE-lite agent of one leg (RFC 8445 §2.5): it answers the browser's connectivity checks,
//! latches the browser's address on the first authenticated one and ends the leg when consent lapses (RFC 7675).
//! [`dtls`] is the DTLS-SRTP association of the leg (RFC 5763, RFC 5764): the relay's certificate, the handshake
//! with its retransmit timer, the peer's certificate checked against its SDP fingerprint, and the exported SRTP keys
//! that [`crate::srtp::EndpointCrypto`] uses from then on, exactly as for an SDES leg.
//!
//! [`leg`] puts the two together for one relay socket, as the flow table drives it.
//!
//! [`sdp`] writes each side of a call between a browser and a SIP peer an SDP of its own kind: ICE-lite, DTLS
//! and rtcp-mux towards the browser, small plain `RTP/AVP` towards the peer.
//!
//! Everything here is sans-IO: datagrams in as byte slices with the address they came from, datagrams out as
//! values, time as `Instant` arguments, timers as `poll_timeout`/`handle_timeout` pairs.

pub mod demux;
pub mod dtls;
pub mod ice;
pub mod leg;
pub mod sdp;
