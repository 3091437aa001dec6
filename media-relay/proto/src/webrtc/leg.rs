//! One WebRTC leg in the data plane: the ICE-lite agent and the DTLS association of one relay socket together,
//! fed every datagram that arrives on it ([`WebrtcLeg::on_datagram`]), with one timer ([`WebrtcLeg::poll_timeout`]).
//!
//! Order of events on a call a browser places: the browser's connectivity check arrives, authenticates and latches
//! its address (answered); as DTLS client we send the ClientHello there; the handshake completes and yields the
//! leg's SRTP keys; from then on SRTP from the latched address is media ([`Handled::Media`]) for the flow table,
//! which unprotects it with those keys. Consent checks keep the leg alive; their absence for 30 s, a failed
//! handshake or the browser's `close_notify` end it ([`Handled::Control::ended`], or [`WebrtcLeg::handle_timeout`]).

use super::demux::{demux, Demuxed};
use super::dtls::{DtlsCertificate, DtlsError, DtlsEvent, DtlsLeg, DtlsRole, Fingerprint};
use super::ice::{IceCredentials, IceEvent, IceLite};
use crate::control::SessionId;
use crate::sdes::SrtpKeys;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

/// What the signalling side tells the relay about a WebRTC leg ([`crate::control::Command::Webrtc`]), from the
/// offer/answer: sent after the [`crate::control::Command::Upsert`] of the leg's RTP socket (with `srtp_pending`
/// set, so that no media crosses before the handshake, and `strict`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebrtcSpec {
    /// The call.
    pub session: SessionId,
    /// The relay socket of the leg (the RTP socket; RTCP is muxed on it).
    pub local: SocketAddr,
    /// Our ICE credentials for the leg (in our SDP towards the browser).
    pub ice: IceCredentials,
    /// The browser's `a=ice-ufrag`.
    pub remote_ufrag: String,
    /// The browser's `a=fingerprint`.
    pub remote_fingerprint: Fingerprint,
    /// Our DTLS role, from `a=setup` ([`DtlsRole::answering`], [`DtlsRole::from_answer`]).
    pub role: DtlsRole,
}

/// What a relay needs to carry on a WebRTC leg whose handshake another relay made (a takeover in a pair): the
/// browser's address and the SRTP keys exported from that handshake (RFC 5764 §4.2), `ours` protecting towards
/// the browser. Sent with [`crate::control::Command::WebrtcResume`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebrtcResume {
    /// The latched browser address.
    pub peer: SocketAddr,
    /// The SRTP profile and keys of both directions.
    pub keys: SrtpKeys,
    /// The last rollover counter of each stream that rolled over on the other relay (none for a call younger
    /// than 65,536 packets per SSRC). Absent in messages from a version without it.
    #[serde(default)]
    pub rollovers: Vec<crate::srtp_roc::Rollover>,
}

/// Why a leg ended; its [`WebrtcEnd::label`] goes to metrics and to [`crate::control::Event::WebrtcEnded`].
#[derive(Debug)]
pub enum WebrtcEnd {
    /// No consent for 30 s (RFC 7675).
    ConsentExpired,
    /// The browser closed the DTLS association.
    Closed,
    /// The handshake failed or timed out.
    Dtls(DtlsError),
}

impl WebrtcEnd {
    /// A metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::ConsentExpired => "consent_expired",
            Self::Closed => "dtls_closed",
            Self::Dtls(e) => e.label(),
        }
    }
}

/// What a datagram on a WebRTC leg turned out to be.
#[derive(Debug)]
pub enum Handled {
    /// SRTP or SRTCP from the latched browser: media for the flow table.
    Media,
    /// STUN or DTLS, consumed here; replies wait in [`WebrtcLeg::poll_transmit`].
    Control {
        /// The browser's address, when this datagram latched it or moved it.
        latched: Option<SocketAddr>,
        /// The leg's SRTP keys, when this datagram completed the handshake.
        keys: Option<SrtpKeys>,
        /// The leg ended with this datagram.
        ended: Option<WebrtcEnd>,
    },
    /// Dropped, with a metric label: unauthenticated STUN, DTLS or media from an address that is not the
    /// latched one, or bytes of no known protocol.
    Refused(&'static str),
}

/// The ICE-lite agent and DTLS association of one WebRTC relay socket.
#[derive(Debug)]
pub struct WebrtcLeg {
    ice: IceLite,
    /// `None` on a resumed leg: its association lives on the relay that made it, only its keys came here.
    dtls: Option<DtlsLeg>,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    ended: bool,
}

impl WebrtcLeg {
    /// The leg described by `spec`, with the relay's `certificate`, from `now`.
    pub fn new(now: Instant, certificate: &DtlsCertificate, spec: &WebrtcSpec) -> Result<Self, DtlsError> {
        Ok(Self {
            ice: IceLite::new(now, spec.ice.clone(), &spec.remote_ufrag),
            dtls: Some(DtlsLeg::new(now, certificate, spec.role, spec.remote_fingerprint)?),
            transmits: VecDeque::new(),
            ended: false,
        })
    }

    /// The leg of `spec` carried on from `resume` at `now`: latched on `resume.peer`, consent counted from `now`,
    /// no handshake. The caller keys the endpoint's SRTP with `resume.keys`. DTLS from the browser is refused
    /// (`dtls_resumed`): a browser sends none after its handshake but `close_notify`, which consent replaces.
    pub fn resume(now: Instant, spec: &WebrtcSpec, resume: &WebrtcResume) -> Self {
        Self {
            ice: IceLite::resume(now, spec.ice.clone(), &spec.remote_ufrag, resume.peer),
            dtls: None,
            transmits: VecDeque::new(),
            ended: false,
        }
    }

    /// The browser's address, once latched by an authenticated check.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.ice.peer()
    }

    /// A datagram from `src` on the leg's socket.
    pub fn on_datagram(&mut self, now: Instant, src: SocketAddr, bytes: &[u8]) -> Handled {
        if self.ended {
            return Handled::Refused("webrtc_ended");
        }
        match demux(bytes) {
            Demuxed::Stun => match self.ice.handle_stun(now, src, bytes) {
                Ok(reply) => {
                    self.transmits.push_back((reply.to, reply.datagram));
                    let mut ended = None;
                    if reply.latched.is_some() {
                        // As client we start the handshake once there is somewhere to send it.
                        if let Some(Err(e)) = self.dtls.as_mut().map(|d| d.start(now)) {
                            ended = Some(self.end(WebrtcEnd::Dtls(e)));
                        }
                        self.collect();
                    }
                    Handled::Control { latched: reply.latched, keys: None, ended }
                }
                Err(refusal) => Handled::Refused(refusal.label()),
            },
            Demuxed::Dtls if self.ice.peer() == Some(src) => {
                let Some(dtls) = self.dtls.as_mut() else { return Handled::Refused("dtls_resumed") };
                let (keys, ended) = match dtls.handle_datagram(now, bytes) {
                    Ok(Some(DtlsEvent::Connected(keys))) => (Some(keys), None),
                    Ok(Some(DtlsEvent::Closed)) => (None, Some(self.end(WebrtcEnd::Closed))),
                    Ok(None) => (None, None),
                    Err(e) => (None, Some(self.end(WebrtcEnd::Dtls(e)))),
                };
                self.collect();
                Handled::Control { latched: None, keys, ended }
            }
            Demuxed::Dtls => Handled::Refused("dtls_unlatched_source"),
            Demuxed::Rtp { .. } if self.ice.peer() == Some(src) => Handled::Media,
            Demuxed::Rtp { .. } => Handled::Refused("srtp_unlatched_source"),
            Demuxed::Other => Handled::Refused("webrtc_unknown_protocol"),
        }
    }

    /// The next datagram to send from the leg's socket, and where to.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmits.pop_front()
    }

    /// When [`WebrtcLeg::handle_timeout`] is next due (consent, handshake retransmission or deadline).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.ended {
            return None;
        }
        match (self.ice.poll_timeout(), self.dtls.as_ref().and_then(DtlsLeg::poll_timeout)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Advances the leg to `now`: the end of the leg, when consent lapsed or the handshake gave up.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<WebrtcEnd> {
        if self.ended {
            return None;
        }
        if self.ice.handle_timeout(now) == Some(IceEvent::ConsentExpired) {
            return Some(self.end(WebrtcEnd::ConsentExpired));
        }
        if let Some(Err(e)) = self.dtls.as_mut().map(|d| d.handle_timeout(now)) {
            return Some(self.end(WebrtcEnd::Dtls(e)));
        }
        self.collect();
        None
    }

    fn end(&mut self, why: WebrtcEnd) -> WebrtcEnd {
        self.ended = true;
        self.collect();
        why
    }

    /// Moves the handshake's datagrams into the queue, addressed to the latched browser.
    fn collect(&mut self) {
        let (Some(peer), Some(dtls)) = (self.ice.peer(), self.dtls.as_mut()) else { return };
        while let Some(d) = dtls.poll_transmit() {
            self.transmits.push_back((peer, d.to_vec()));
        }
    }
}
