//! Sans-IO media relay core: what the relay decides, with no socket, timer or clock of its own (see DESIGN.md,
//! "Principles"). Time comes in as arguments, packets as byte slices, decisions go out as values.
//!
//! - [`ports`]: the pool of relay ports per interface (even RTP, odd RTCP, quarantine before reuse).
//! - [`sdp`]: reading the media lines of an offer or answer, and rewriting it to the relay's addresses.
//! - [`session`]: a call's media: both legs, their streams and relay endpoints; offer/answer in, data-plane
//!   commands out.
//! - [`flow`]: one relay endpoint in the data plane: latching, the strict source check, forward or drop.
//! - [`stats`]: RTP/RTCP counters, per-SSRC loss and interarrival jitter (RFC 3550 A.3, A.8).
//! - [`cname`] and [`rtcp`]: topology hiding inside payloads: the token that replaces a peer's CNAME in SDP
//!   `a=ssrc` and RTCP SDES, and the rewriting of SDES in compound RTCP packets.
//! - [`sdes`], [`negotiate`] and [`srtp`]: SDES-SRTP terminated per leg: suites, keys and `a=crypto`; what each
//!   leg's offer and answer say (each leg gets keys of its own); the SRTP/SRTCP contexts of the data plane.
//! - [`control`]: the commands and events between the signalling side and the relay (embedded or remote).
//! - [`bencode`] and [`ng`]: rtpengine's NG control protocol (bencoded dictionaries over UDP): the codec and the
//!   messages, for the benches' rtpengine client; [`ng_server`] and [`ng_options`]: the relay answering NG itself
//!   (commands, the reply cache, the options and flags Kamailio and OpenSIPS send).
//! - [`webrtc`]: WebRTC legs: demultiplexing by first byte (RFC 7983), ICE-lite (STUN binding answers, latching,
//!   consent freshness) and DTLS-SRTP (the relay's certificate, the handshake, SRTP keys for [`srtp`]).
//! - [`threads`]: which of the relay's forwarding threads holds a session (and takes its commands).

pub mod addr_map;
pub mod bencode;
pub mod cname;
pub mod control;
pub mod flow;
pub mod negotiate;
pub mod ng;
pub mod ng_options;
pub mod ng_server;
pub mod ports;
pub mod rtcp;
pub mod sdes;
pub mod sdp;
pub mod session;
pub mod srtp;
pub mod srtp_roc;
pub mod stats;
pub mod threads;
pub mod webrtc;
