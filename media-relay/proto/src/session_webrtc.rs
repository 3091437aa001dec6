//! The media of a call with a browser leg: the relay terminates ICE-lite and DTLS-SRTP there and bridges it to
//! plain RTP on the other leg ([`crate::webrtc`]). Such a call does not go through the line-by-line rewrite of
//! [`crate::sdp::rewrite`]: each side gets an SDP of its own kind from [`crate::webrtc::sdp`] (a browser's offer
//! is too large and too WebRTC-specific for a carrier), and the browser leg's socket gets a
//! [`Command::Webrtc`] once the offer/answer has given both sides' ICE and DTLS parameters.
//!
//! One audio stream per call (BUNDLE, rtcp-mux): stream 0 of each leg; the browser's other m= lines are answered
//! with port 0. The SIP peer's leg follows its trunk's `srtp` mode exactly as in any call ([`crate::negotiate`]):
//! `RTP/SAVP` with our own `a=crypto` keys for `required`, the same keys on `RTP/AVP` for `optional`, none for
//! `off`; its agreed keys go to its endpoint ([`EndpointSpec::srtp`]). So the relay decrypts the browser's
//! DTLS-SRTP with the handshake's keys and encrypts for the carrier with the SDES keys of the carrier's leg (and
//! back): each leg has its own keys, and no key of one leg is ever written on the other.

use super::{MediaError, SessionRecord, Sessions, Side};
use crate::cname::CnameKey;
use crate::control::{Command, EndpointSpec, Leg, SessionId};
use crate::negotiate::{Exchange, SdpKind};
use crate::sdes::SrtpKeys;
use crate::sdp::{MediaLine, Transport};
use crate::srtp_roc::Rollover;
use crate::webrtc::dtls::{DtlsRole, Fingerprint};
use crate::webrtc::ice::IceCredentials;
use crate::webrtc::leg::{WebrtcResume, WebrtcSpec};
use crate::webrtc::sdp::{self as wsdp, AudioLine, RelaySide, WebrtcSdpError};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

/// What a call with a browser leg keeps besides its ports. Replicated with the call (docs/webrtc-media.md, "A
/// pair"): a standby's relay answers the browser's checks with the same credentials and carries SRTP on with the
/// handshake's keys ([`Command::WebrtcResume`]), and its SDP towards the browser names the same fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WebrtcMedia {
    /// Per leg (A, B): the browser facing it, if one does (both in a call between two browsers).
    legs: [Option<BrowserLeg>; 2],
    /// The last offer and the leg it came from: answers (a 183 and its 200 alike) are read against it. Not
    /// replicated: a call resumed before its answer gets a new offer read anyway.
    #[serde(skip)]
    offer: Option<(Leg, AudioLine)>,
    /// Per leg: the `o=` version and the last SDP we sent there (the version goes up when the SDP changes).
    origin: [(u64, Option<String>); 2],
    /// The relay fingerprint our SDP named for this call: a standby that takes the call over names it too (its own
    /// certificate's would be a new association to the browser). `None` in records of a version without it: the
    /// relay's own.
    #[serde(default)]
    fingerprint: Option<Fingerprint>,
}

/// One browser leg of a call.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct BrowserLeg {
    /// Our ICE credentials on the leg (the same for the whole call: a new ufrag would be an ICE restart).
    ice: IceCredentials,
    /// The browser's ufrag and fingerprint and our DTLS role, once an offer/answer settled them.
    remote: Option<(String, Fingerprint, DtlsRole)>,
    /// The SRTP keys of the leg's handshake ([`crate::control::Event::WebrtcKeyed`]), for a standby's relay.
    #[serde(default)]
    keys: Option<SrtpKeys>,
    /// The last rollover counter of each stream that rolled over ([`crate::control::Event::SrtpRollover`]).
    #[serde(default)]
    rollovers: Vec<Rollover>,
    /// The spec last sent to the relay: sent again only when it changes (a new association). Not replicated, so
    /// that the adopting box sends it to its relay.
    #[serde(skip)]
    sent: Option<WebrtcSpec>,
}

impl BrowserLeg {
    /// The browser's parameters as an offer/answer settled them: new ones are a new association, whose keys are
    /// not the old handshake's.
    fn settle(&mut self, remote: (String, Fingerprint, DtlsRole)) {
        if self.remote.as_ref() != Some(&remote) {
            self.keys = None;
            self.rollovers.clear();
        }
        self.remote = Some(remote);
    }
}

impl WebrtcMedia {
    /// Whether leg `leg` faces a browser.
    pub fn is_browser(&self, leg: Leg) -> bool {
        self.legs[leg.index()].is_some()
    }

    /// Forgets what the relay was told: the next emit sends the WebRTC specs again (a relay that restarted; with
    /// the keys of the handshake it made before, as [`Command::WebrtcResume`]).
    pub(super) fn resend(&mut self) {
        for b in self.legs.iter_mut().flatten() {
            b.sent = None;
        }
    }
}

impl Sessions {
    /// The relay's handshake on `local` of `session` gave `keys` ([`crate::control::Event::WebrtcKeyed`]): kept for
    /// the replication record. Returns whether that changed the record (the call then replicates a new version).
    pub fn webrtc_keyed(&mut self, session: SessionId, local: SocketAddr, keys: &SrtpKeys) -> bool {
        let Some(b) = self.browser_leg(session, local) else { return false };
        if b.keys.as_ref() == Some(keys) {
            return false;
        }
        b.keys = Some(keys.clone());
        true
    }

    /// A stream of the browser leg on `local` of `session` rolled over ([`crate::control::Event::SrtpRollover`]):
    /// kept for the replication record. Returns whether that changed the record.
    pub fn webrtc_rollover(&mut self, session: SessionId, local: SocketAddr, rollover: Rollover) -> bool {
        let Some(b) = self.browser_leg(session, local) else { return false };
        let same = |r: &&mut Rollover| r.ssrc == rollover.ssrc && r.outbound == rollover.outbound;
        if let Some(r) = b.rollovers.iter_mut().find(same) {
            let changed = r.roc != rollover.roc;
            r.roc = rollover.roc;
            return changed;
        }
        // As many as the relay keeps SSRCs of an endpoint, both ways.
        if b.rollovers.len() >= 2 * crate::srtp::MAX_SSRCS {
            return false;
        }
        b.rollovers.push(rollover);
        true
    }

    /// The browser leg whose relay socket is `local`.
    fn browser_leg(&mut self, session: SessionId, local: SocketAddr) -> Option<&mut BrowserLeg> {
        let s = self.sessions.get_mut(&session)?;
        let w = s.webrtc.as_deref_mut()?;
        let leg = [Leg::A, Leg::B].into_iter().find(|leg| {
            let l = &s.legs[leg.index()];
            let address = self.config.interfaces.get(l.iface.unwrap_or(0)).map(|i| i.address);
            let port = l.streams.first().cloned().flatten().map(|side| side.port);
            address.zip(port).is_some_and(|(a, p)| SocketAddr::new(a, p) == local)
        })?;
        w.legs[leg.index()].as_mut()
    }

    /// Announces that leg `leg` of `session` faces a browser before its first SDP there (a call to a registered
    /// user reached over WebSocket): offers towards it become WebRTC offers. Errors only when the OS's random
    /// source fails (no ICE credentials).
    pub fn expect_browser(&mut self, session: SessionId, leg: Leg) -> Result<(), MediaError> {
        let seed = self.config.cname_seed;
        if self.sessions.get(&session).and_then(|s| s.webrtc.as_ref()).is_some_and(|w| w.is_browser(leg)) {
            return Ok(());
        }
        let ice = IceCredentials::generate(self.keys.as_mut()).map_err(|e| MediaError::Keys(e.to_string()))?;
        let s = self.sessions.entry(session).or_insert_with(|| {
            Box::new(SessionRecord { cname_key: CnameKey::derive(seed, session), ..SessionRecord::default() })
        });
        let w = s.webrtc.get_or_insert_with(|| {
            Box::new(WebrtcMedia { legs: [None, None], offer: None, origin: [(1, None), (1, None)], fingerprint: None })
        });
        w.fingerprint = w.fingerprint.or(self.config.dtls_fingerprint);
        w.legs[leg.index()] = Some(BrowserLeg { ice, remote: None, keys: None, rollovers: Vec::new(), sent: None });
        Ok(())
    }

    /// Whether `body` from `from` opens or continues a call with a browser leg that this relay can terminate:
    /// the session already has one, or this is a first offer whose audio line is WebRTC.
    pub(super) fn webrtc_call(&self, session: SessionId, kind: SdpKind, body: &[u8]) -> Option<AudioLine> {
        self.config.dtls_fingerprint?;
        match self.sessions.get(&session) {
            Some(s) if s.webrtc.is_some() => AudioLine::parse(body).ok(),
            Some(_) => None,
            // Only a body naming the WebRTC profile can be one: every other new call skips the full parse (it
            // was 3 % of the sbc's CPU per call).
            None if kind != SdpKind::Answer && names_webrtc_proto(body) => {
                AudioLine::parse(body).ok().filter(AudioLine::is_webrtc)
            }
            None => None,
        }
    }

    /// [`Sessions::rewrite`] for a call with a browser leg: `line` is `body` as [`Sessions::webrtc_call`] read it.
    /// `exchange.srtp` applies to the SIP peer's leg only (a browser's leg is DTLS-SRTP whatever its trunk says).
    pub(super) fn anchor_webrtc(
        &mut self,
        now: Instant,
        session: SessionId,
        from: Leg,
        line: AudioLine,
        sip_local: [IpAddr; 2],
        exchange: Exchange,
    ) -> Result<String, MediaError> {
        let kind = exchange.kind;
        let ours = self.config.dtls_fingerprint.ok_or(MediaError::NoInterface)?;
        if kind != SdpKind::Answer && line.is_webrtc() {
            // The offerer is a browser (a call from one; both legs when one browser calls another).
            self.expect_browser(session, from)?;
        }
        let Some(s) = self.sessions.get_mut(&session) else { return Err(MediaError::NoInterface) };
        for leg in [Leg::A, Leg::B] {
            let l = &mut s.legs[leg.index()];
            if l.iface.is_none() {
                let ip = sip_local[leg.index()];
                l.iface = Some(self.config.interfaces.iter().position(|i| i.address == ip).unwrap_or(0));
            }
            if l.streams.is_empty() {
                l.streams.push(None);
            }
            if l.streams[0].is_none() {
                let iface = l.iface.unwrap_or(0);
                let Some(port) = self.pools[iface].allocate(now) else {
                    return Err(MediaError::NoPorts(self.config.interfaces[iface].name.clone()));
                };
                l.streams[0] = Some(Side { port, ..Side::default() });
            }
        }
        let to = from.other();
        let address = |leg: Leg| self.config.interfaces[s.legs[leg.index()].iface.unwrap_or(0)].address;
        let port = |leg: Leg| s.legs[leg.index()].streams[0].as_ref().map_or(0, |side| side.port);
        let (to_address, to_port) = (address(to), port(to));
        let Some(w) = s.webrtc.as_deref_mut() else { return Err(MediaError::NoInterface) };
        let fingerprint = w.fingerprint.unwrap_or(ours);
        let (from_browser, to_browser) = (w.is_browser(from), w.is_browser(to));
        if !from_browser {
            // The plain peer's address is in its SDP; a browser's comes from ICE only (mDNS names are never
            // resolved).
            if let Some(Some(side)) = s.legs[from.index()].streams.first_mut() {
                let rtp = line
                    .address
                    .filter(|(ip, port)| !ip.is_unspecified() && *port != 0)
                    .map(|(ip, port)| SocketAddr::new(ip, port));
                if rtp != side.peer_rtp {
                    side.latched_rtp = None;
                }
                side.peer_rtp = rtp;
            }
        }
        if let Some(Some(side)) = s.legs[from.index()].streams.first_mut() {
            side.clock_rates = line.codecs.iter().map(|c| (c.pt, c.clock)).collect();
        }
        // SDES on the SIP peer's leg, as in `Sessions::anchor` (steps 1 to 4 of `crate::negotiate`): what the peer
        // says is read on its side; what we say to the peer is our own keys for its side. `None`: towards a browser.
        let offerer_proto = w.offer.as_ref().map(|(_, o)| o.proto.clone());
        let mut sdes: Option<Transport> = None;
        if !from_browser {
            if let Some(Some(side)) = s.legs[from.index()].streams.first_mut() {
                let peer = sdes_line(&line);
                match kind {
                    SdpKind::Offer | SdpKind::OfferToNewPeer => {
                        side.crypto.take_offer(&peer, exchange.srtp[from.index()], from)?
                    }
                    SdpKind::Answer => side.crypto.take_answer(&peer, exchange.srtp[from.index()], from)?,
                }
            }
        }
        if !to_browser {
            if let Some(Some(side)) = s.legs[to.index()].streams.first_mut() {
                let keys = self.keys.as_mut();
                sdes = Some(match kind {
                    SdpKind::Offer | SdpKind::OfferToNewPeer => {
                        if kind == SdpKind::OfferToNewPeer {
                            side.crypto.reset();
                        }
                        side.crypto.make_offer(wsdp::PLAIN_PROTO, exchange.srtp[to.index()], keys)?
                    }
                    SdpKind::Answer => {
                        side.crypto.make_answer(offerer_proto.as_deref().unwrap_or(wsdp::PLAIN_PROTO), keys)?
                    }
                });
            }
        }
        let sdes = sdes.as_ref();
        let write = |w: &WebrtcMedia, version: u64| -> Result<String, WebrtcSdpError> {
            let ice = w.legs[to.index()].as_ref().map(|b| (&b.ice, fingerprint));
            let side = RelaySide { address: to_address, port: to_port, origin: (session.0, version), webrtc: ice };
            match kind {
                SdpKind::Offer | SdpKind::OfferToNewPeer => {
                    if from_browser {
                        line.webrtc_params()?;
                    }
                    match (to_browser, sdes) {
                        (true, _) => wsdp::offer_to_browser(&line, &side),
                        (false, Some(t)) => wsdp::offer_to_sip(&line, &side, t),
                        (false, None) => wsdp::offer_to_plain(&line, &side),
                    }
                }
                SdpKind::Answer => {
                    let Some((_, offer)) = w.offer.as_ref().filter(|(offerer, _)| *offerer != from) else {
                        return Err(WebrtcSdpError::NoAudio);
                    };
                    if from_browser {
                        line.webrtc_params()?;
                    }
                    if to_browser {
                        let params = offer.webrtc_params()?;
                        let (_, setup) = DtlsRole::answering(params.setup).ok_or(WebrtcSdpError::Setup("holdconn"))?;
                        wsdp::answer_to_browser(offer, &line, &side, setup)
                    } else if let Some(t) = sdes {
                        wsdp::answer_to_sip(offer, &line, &side, t)
                    } else {
                        wsdp::answer_to_plain(offer, &line, &side)
                    }
                }
            }
        };
        let (version, last) = &w.origin[to.index()];
        let mut out = write(w, *version)?;
        if last.as_ref().is_some_and(|l| *l != out) {
            out = write(w, version + 1)?;
            w.origin[to.index()].0 += 1;
        }
        w.origin[to.index()].1 = Some(out.clone());
        if kind == SdpKind::Answer {
            // The offerer's parameters (its role answered by us) and the answerer's (its role from its setup).
            if let Some(offer) = w.offer.as_ref().map(|(_, o)| o).filter(|_| to_browser) {
                let params = offer.webrtc_params()?;
                let role = DtlsRole::answering(params.setup).map(|(role, _)| role);
                let role = role.ok_or(WebrtcSdpError::Setup("holdconn"))?;
                let remote = (params.ice_ufrag.clone(), params.fingerprint, role);
                if let Some(b) = w.legs[to.index()].as_mut() {
                    b.settle(remote);
                }
            }
            if from_browser {
                let params = line.webrtc_params()?;
                let role = DtlsRole::from_answer(params.setup).ok_or(WebrtcSdpError::Setup("actpass"))?;
                let remote = (params.ice_ufrag.clone(), params.fingerprint, role);
                if let Some(b) = w.legs[from.index()].as_mut() {
                    b.settle(remote);
                }
            }
        } else {
            w.offer = Some((from, line));
        }
        self.emit(session);
        Ok(out)
    }

    /// Upserts the two RTP sockets of a call with a browser leg, then gives each browser's socket its WebRTC spec
    /// once the offer/answer has settled it. A SIP peer's socket carries its leg's SDES keys once agreed (and waits
    /// for them, `srtp_pending`, while its leg is to be SRTP). No RTCP sockets: a browser muxes RTCP (its leg has
    /// none), and a plain peer's RTCP would have nowhere to go but a browser's socket, where the relay sends only
    /// SRTP.
    pub(super) fn emit_webrtc(&mut self, session: SessionId) {
        let Some(s) = self.sessions.get_mut(&session) else { return };
        let Some(browsers) = s.webrtc.as_ref().map(|w| [w.is_browser(Leg::A), w.is_browser(Leg::B)]) else { return };
        let interfaces = &self.config.interfaces;
        let addr = |leg: Leg| interfaces[s.legs[leg.index()].iface.unwrap_or(0)].address;
        let side = |leg: Leg| s.legs[leg.index()].streams.first().cloned().flatten();
        let (Some(a), Some(b_side)) = (side(Leg::A), side(Leg::B)) else { return };
        let socks = [SocketAddr::new(addr(Leg::A), a.port), SocketAddr::new(addr(Leg::B), b_side.port)];
        for (leg, side) in [(Leg::A, &a), (Leg::B, &b_side)] {
            let webrtc = browsers[leg.index()];
            self.out.push_back(Command::Upsert(EndpointSpec {
                session,
                leg,
                stream: 0,
                rtcp: false,
                local: socks[leg.index()],
                partner: socks[leg.other().index()],
                peer: if webrtc { None } else { side.peer_rtp },
                latched: side.latched_rtp,
                strict: webrtc || self.config.strict,
                clock_rates: side.clock_rates.clone(),
                cname_key: None,
                srtp: if webrtc { None } else { side.crypto.active.clone().map(Box::new) },
                srtp_pending: webrtc || side.crypto.pending(),
            }));
        }
        let Some(w) = s.webrtc.as_deref_mut() else { return };
        for leg in [Leg::A, Leg::B] {
            let Some(b) = w.legs[leg.index()].as_mut() else { continue };
            let Some((ufrag, fingerprint, role)) = b.remote.clone() else { continue };
            let spec = WebrtcSpec {
                session,
                local: socks[leg.index()],
                ice: b.ice.clone(),
                remote_ufrag: ufrag,
                remote_fingerprint: fingerprint,
                role,
            };
            if b.sent.as_ref() == Some(&spec) {
                continue;
            }
            b.sent = Some(spec.clone());
            // Keys and a latch in the record: the handshake was made by the relay of the box that replicated it.
            let peer = [&a, &b_side][leg.index()].latched_rtp;
            let cmd = match (peer, b.keys.clone()) {
                (Some(peer), Some(keys)) => {
                    let rollovers = b.rollovers.clone();
                    Command::WebrtcResume { spec: Box::new(spec), resume: WebrtcResume { peer, keys, rollovers } }
                }
                _ => Command::Webrtc(Box::new(spec)),
            };
            self.out.push_back(cmd);
        }
    }
}

/// The SIP peer's audio line as [`crate::negotiate`] reads SDES from it: its transport and `a=crypto` values (the
/// rest of a [`MediaLine`] is not looked at there).
fn sdes_line(line: &AudioLine) -> MediaLine {
    MediaLine {
        kind: "audio".into(),
        proto: line.proto.clone(),
        // The line `AudioLine` picked is an active one (port != 0) even when it has no `c=`.
        port: line.address.map_or(u16::MAX, |(_, port)| port.max(1)),
        address: line.address.map(|(ip, _)| ip),
        hold_address: false,
        rtcp_port: 0,
        rtcp_address: None,
        rtcp_mux: line.rtcp_mux,
        direction: line.direction,
        clock_rates: line.codecs.iter().map(|c| (c.pt, c.clock)).collect(),
        crypto: line.crypto.clone(),
    }
}

/// Whether `body` names `UDP/TLS/RTP/SAVPF` anywhere (any case), which [`AudioLine::is_webrtc`] requires.
fn names_webrtc_proto(body: &[u8]) -> bool {
    const PROTO: &[u8] = b"UDP/TLS/RTP/SAVPF";
    body.windows(PROTO.len()).any(|w| w.eq_ignore_ascii_case(PROTO))
}

#[cfg(test)]
mod tests {
    use super::super::{Interface, MediaConfig};
    use super::*;
    use crate::negotiate::Exchange;
    use crate::sdes::SrtpMode;
    use std::time::Duration;

    const FP: Fingerprint = Fingerprint([0xAB; 32]);
    const LOCALS: [IpAddr; 2] =
        [IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 1, 1)), IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 2, 1))];
    const BROWSER: &str = "v=0\r\no=- 6307837442470342391 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
        m=audio 54321 UDP/TLS/RTP/SAVPF 111 0 8 126\r\nc=IN IP4 198.18.1.10\r\n\
        a=candidate:1 1 udp 2122260223 6f1e2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b.local 54321 typ host\r\n\
        a=ice-ufrag:Xk3R\r\na=ice-pwd:q8FhR1pTqK5bH0yVb9mZc2Lw\r\n\
        a=fingerprint:sha-256 4F:1A:9C:E2:77:0B:5D:63:A8:10:C4:3E:92:58:F1:0D:B6:27:4A:E9:13:7C:D5:82:60:FF:3B:A1:4E:C9:08:75\r\n\
        a=setup:actpass\r\na=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n\
        a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:126 telephone-event/8000\r\n";
    const CARRIER: &str = "v=0\r\no=carrier 5 5 IN IP4 198.18.2.10\r\ns=-\r\nc=IN IP4 198.18.2.10\r\nt=0 0\r\n\
        m=audio 7000 RTP/AVP 0 126\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:126 telephone-event/8000\r\n";

    fn exchange(kind: SdpKind) -> Exchange {
        Exchange { kind, srtp: [SrtpMode::Off; 2] }
    }

    fn sessions(fingerprint: Option<Fingerprint>) -> Sessions {
        Sessions::new(MediaConfig {
            interfaces: vec![
                Interface { name: "a".into(), address: LOCALS[0] },
                Interface { name: "b".into(), address: LOCALS[1] },
            ],
            first_port: 30000,
            last_port: 30099,
            quarantine: Duration::from_secs(5),
            strict: false,
            cname_seed: 7,
            dtls_fingerprint: fingerprint,
        })
        .unwrap()
    }

    fn drain(s: &mut Sessions) -> Vec<Command> {
        std::iter::from_fn(|| s.poll_command()).collect()
    }

    fn specs(commands: &[Command]) -> Vec<&WebrtcSpec> {
        commands.iter().filter_map(|c| if let Command::Webrtc(w) = c { Some(&**w) } else { None }).collect()
    }

    #[test]
    fn a_browser_offer_gets_a_plain_offer_then_an_ice_lite_answer_and_one_webrtc_spec() {
        let mut s = sessions(Some(FP));
        let now = Instant::now();
        let id = SessionId(9);
        let to_b = s.rewrite(now, id, Leg::A, BROWSER.as_bytes(), LOCALS, exchange(SdpKind::Offer)).unwrap();
        assert!(to_b.contains("m=audio 30000 RTP/AVP 111 0 8 126\r\n") && !to_b.contains("ice"), "{to_b}");
        let offered = drain(&mut s);
        assert!(specs(&offered).is_empty(), "no spec before the answer");
        let upserts: Vec<&EndpointSpec> =
            offered.iter().filter_map(|c| if let Command::Upsert(e) = c { Some(e) } else { None }).collect();
        assert_eq!(upserts.len(), 2, "one RTP socket per leg, no RTCP sockets: {upserts:?}");
        let a = upserts.iter().find(|e| e.leg == Leg::A).unwrap();
        assert_eq!((a.peer, a.strict, a.srtp_pending, a.cname_key), (None, true, true, None));

        // A 183 and a 200 with the same answer: the same SDP to the browser, one spec.
        let first = s.rewrite(now, id, Leg::B, CARRIER.as_bytes(), LOCALS, exchange(SdpKind::Answer)).unwrap();
        let again = s.rewrite(now, id, Leg::B, CARRIER.as_bytes(), LOCALS, exchange(SdpKind::Answer)).unwrap();
        assert_eq!(first, again, "a repeated answer is the same SDP, the same o= version");
        assert!(first.contains("a=setup:active\r\n") && first.contains("a=rtcp-mux\r\n"), "{first}");
        assert!(first.contains("a=fingerprint:sha-256 AB:AB:AB:AB:"), "{first}");
        let answered = drain(&mut s);
        let sent = specs(&answered);
        assert_eq!(sent.len(), 1, "the spec goes once: {answered:?}");
        assert_eq!((sent[0].remote_ufrag.as_str(), sent[0].role), ("Xk3R", DtlsRole::Client));
        assert_eq!(sent[0].local, SocketAddr::new(LOCALS[0], 30000));
        let b = answered.iter().rev().find_map(|c| match c {
            Command::Upsert(e) if e.leg == Leg::B => Some(e),
            _ => None,
        });
        assert_eq!(b.and_then(|e| e.peer), Some("198.18.2.10:7000".parse().unwrap()));
        // A relay that restarted gets the spec again.
        s.replay();
        assert_eq!(specs(&drain(&mut s)).len(), 1);
        s.remove(now, id);
        assert_eq!(s.counts(), (0, 0));
    }

    #[test]
    fn a_carrier_offer_to_an_expected_browser_gets_actpass_and_the_browsers_answer_sets_the_role() {
        let mut s = sessions(Some(FP));
        let now = Instant::now();
        let id = SessionId(3);
        s.expect_browser(id, Leg::B).unwrap();
        let to_browser = s.rewrite(now, id, Leg::A, CARRIER.as_bytes(), LOCALS, exchange(SdpKind::Offer)).unwrap();
        assert!(to_browser.contains("UDP/TLS/RTP/SAVPF") && to_browser.contains("a=setup:actpass"), "{to_browser}");
        let answer = BROWSER.replace("a=setup:actpass", "a=setup:active").replace("111 0 8 126", "0 126");
        let to_carrier = s.rewrite(now, id, Leg::B, answer.as_bytes(), LOCALS, exchange(SdpKind::Answer)).unwrap();
        assert!(to_carrier.contains("m=audio 30000 RTP/AVP 0 126\r\n"), "{to_carrier}");
        let commands = drain(&mut s);
        let sent = specs(&commands);
        assert_eq!(sent.len(), 1);
        assert_eq!((sent[0].role, sent[0].local), (DtlsRole::Server, SocketAddr::new(LOCALS[1], 30000)));
    }

    #[test]
    fn without_the_relays_fingerprint_or_a_shared_codec_there_is_no_webrtc_leg() {
        // A relay in its own process: the browser's SDP is rewritten as any SDP (no WebRTC leg).
        let mut s = sessions(None);
        let now = Instant::now();
        let to_b = s.rewrite(now, SessionId(1), Leg::A, BROWSER.as_bytes(), LOCALS, exchange(SdpKind::Offer)).unwrap();
        assert!(to_b.contains("UDP/TLS/RTP/SAVPF"), "{to_b}");
        let mut s = sessions(Some(FP));
        let g722 = BROWSER
            .replace("111 0 8 126", "9")
            .replace("a=rtpmap:111 opus/48000/2\r\n", "a=rtpmap:9 G722/8000\r\n")
            .replace("a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:126 telephone-event/8000\r\n", "");
        let r = s.rewrite(now, SessionId(2), Leg::A, g722.as_bytes(), LOCALS, exchange(SdpKind::Offer));
        assert!(matches!(r, Err(MediaError::Webrtc(WebrtcSdpError::NoSharedCodec))), "{r:?}");
        assert_eq!(s.counts(), (0, 0), "no session, no ports");
    }

    use crate::sdes::{CryptoAttr, SrtpKeys, Suite};
    use SrtpMode::{Off, Optional, Required};

    /// The carrier's answer with SDES-SRTP: our tag 1 (AES_CM_128_HMAC_SHA1_80) with a key of its own.
    const CARRIER_KEY: &str = "NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj";

    fn sdes_exchange(kind: SdpKind, a: SrtpMode, b: SrtpMode) -> Exchange {
        Exchange { kind, srtp: [a, b] }
    }

    fn crypto_lines(sdp: &str) -> Vec<CryptoAttr> {
        sdp.lines().filter_map(|l| l.strip_prefix("a=crypto:")).map(|v| CryptoAttr::parse(v).unwrap()).collect()
    }

    /// The last upsert of `leg`'s socket.
    fn upsert_of(commands: &[Command], leg: Leg) -> &EndpointSpec {
        let found = commands.iter().rev().find_map(|c| match c {
            Command::Upsert(e) if e.leg == leg => Some(e),
            _ => None,
        });
        found.unwrap_or_else(|| panic!("no upsert of leg {leg:?}: {commands:?}"))
    }

    #[test]
    fn a_chromium_offer_to_a_trunk_that_requires_srtp_gets_rtp_savp_with_our_keys_and_the_answer_keys_the_carrier() {
        let mut s = sessions(Some(FP));
        let now = Instant::now();
        let id = SessionId(11);
        let offer = sdes_exchange(SdpKind::Offer, Off, Required);
        let to_b = s.rewrite(now, id, Leg::A, BROWSER.as_bytes(), LOCALS, offer).unwrap();
        assert!(to_b.contains("m=audio 30000 RTP/SAVP 111 0 8 126\r\n") && !to_b.contains("ice"), "{to_b}");
        let offered = crypto_lines(&to_b);
        let suites: Vec<Suite> = offered.iter().map(|c| c.suite).collect();
        assert_eq!(suites, Suite::OFFERED.to_vec(), "one key of ours per suite, tags 1 to 3: {to_b}");
        let pending = drain(&mut s);
        let b = upsert_of(&pending, Leg::B);
        assert_eq!((b.srtp.is_none(), b.srtp_pending), (true, true), "the carrier leg waits for its keys");

        let answer = CARRIER.replace("RTP/AVP 0 126", "RTP/SAVP 0 126")
            + &format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{CARRIER_KEY}\r\n");
        let answering = sdes_exchange(SdpKind::Answer, Off, Required);
        let to_a = s.rewrite(now, id, Leg::B, answer.as_bytes(), LOCALS, answering).unwrap();
        assert!(to_a.contains("UDP/TLS/RTP/SAVPF") && !to_a.contains("a=crypto"), "DTLS-SRTP to the browser: {to_a}");
        let commands = drain(&mut s);
        let b = upsert_of(&commands, Leg::B);
        let expected = SrtpKeys {
            suite: Suite::AesCm128HmacSha1_80,
            ours: offered[0].key.clone(),
            theirs: crypto_lines(&answer)[0].key.clone(),
        };
        assert_eq!((b.srtp.as_deref(), b.srtp_pending), (Some(&expected), false), "the carrier's endpoint is keyed");
        assert_eq!(b.peer, Some("198.18.2.10:7000".parse().unwrap()));
        let a = upsert_of(&commands, Leg::A);
        assert_eq!((a.srtp.is_none(), a.srtp_pending), (true, true), "the browser's keys come from DTLS only");
        assert_eq!(specs(&commands).len(), 1);
        for key in [&expected.ours, &expected.theirs] {
            assert!(!to_a.contains(&key.to_base64()), "a key of the carrier leg reached the browser:\n{to_a}");
        }
        // A carrier that answers plain RTP where SRTP is required: an error (the call ends, as for any call).
        let mut s = sessions(Some(FP));
        s.rewrite(now, id, Leg::A, BROWSER.as_bytes(), LOCALS, offer).unwrap();
        let r = s.rewrite(now, id, Leg::B, CARRIER.as_bytes(), LOCALS, answering);
        assert!(matches!(r, Err(MediaError::Srtp(crate::negotiate::SrtpError::Required(Leg::B)))), "{r:?}");
    }

    #[test]
    fn optional_srtp_offers_keys_on_rtp_avp_and_a_plain_answer_leaves_the_carrier_plain_and_failover_redraws() {
        let mut s = sessions(Some(FP));
        let now = Instant::now();
        let id = SessionId(12);
        let first =
            s.rewrite(now, id, Leg::A, BROWSER.as_bytes(), LOCALS, sdes_exchange(SdpKind::Offer, Off, Optional));
        let first = first.unwrap();
        assert!(first.contains("m=audio 30000 RTP/AVP ") && crypto_lines(&first).len() == 3, "{first}");
        let next = sdes_exchange(SdpKind::OfferToNewPeer, Off, Optional);
        let second = s.rewrite(now, id, Leg::A, BROWSER.as_bytes(), LOCALS, next).unwrap();
        let (k1, k2) = (crypto_lines(&first), crypto_lines(&second));
        assert!(k1.iter().all(|a| k2.iter().all(|b| a.key != b.key)), "the next carrier gets keys of its own");
        let to_a =
            s.rewrite(now, id, Leg::B, CARRIER.as_bytes(), LOCALS, sdes_exchange(SdpKind::Answer, Off, Optional));
        assert!(to_a.is_ok(), "{to_a:?}");
        let b = upsert_of(&drain(&mut s), Leg::B).clone();
        assert_eq!((b.srtp, b.srtp_pending), (None, false), "plain RTP towards a carrier that ignored the keys");
    }

    #[test]
    fn a_carriers_sdes_offer_to_a_browser_is_answered_with_our_key_and_the_browser_offered_dtls_srtp() {
        let mut s = sessions(Some(FP));
        let now = Instant::now();
        let id = SessionId(13);
        s.expect_browser(id, Leg::B).unwrap();
        let offer = CARRIER.replace("RTP/AVP 0 126", "RTP/SAVP 0 126")
            + &format!("a=crypto:5 AES_CM_128_HMAC_SHA1_80 inline:{CARRIER_KEY}\r\n");
        let offering = sdes_exchange(SdpKind::Offer, Required, Off);
        let to_browser = s.rewrite(now, id, Leg::A, offer.as_bytes(), LOCALS, offering).unwrap();
        assert!(to_browser.contains("UDP/TLS/RTP/SAVPF") && to_browser.contains("a=setup:actpass"), "{to_browser}");
        assert!(!to_browser.contains("a=crypto") && !to_browser.contains(CARRIER_KEY), "{to_browser}");
        let a = upsert_of(&drain(&mut s), Leg::A).clone();
        assert_eq!((a.srtp, a.srtp_pending), (None, true), "nothing crosses before our answer");

        let answer = BROWSER.replace("a=setup:actpass", "a=setup:active").replace("111 0 8 126", "0 126");
        let to_carrier =
            s.rewrite(now, id, Leg::B, answer.as_bytes(), LOCALS, sdes_exchange(SdpKind::Answer, Required, Off));
        let to_carrier = to_carrier.unwrap();
        assert!(to_carrier.contains("m=audio 30000 RTP/SAVP 0 126\r\n"), "{to_carrier}");
        let ours = crypto_lines(&to_carrier);
        assert_eq!(ours.len(), 1, "{to_carrier}");
        assert_eq!((ours[0].tag, ours[0].suite), (5, Suite::AesCm128HmacSha1_80), "the carrier's tag and suite");
        assert!(!to_carrier.contains(CARRIER_KEY), "our own key, not the carrier's: {to_carrier}");
        let commands = drain(&mut s);
        let a = upsert_of(&commands, Leg::A);
        let theirs = crypto_lines(&offer)[0].key.clone();
        let expected = SrtpKeys { suite: Suite::AesCm128HmacSha1_80, ours: ours[0].key.clone(), theirs };
        assert_eq!((a.srtp.as_deref(), a.srtp_pending), (Some(&expected), false));
        let sent = specs(&commands);
        assert_eq!((sent.len(), sent[0].role), (1, DtlsRole::Server), "the browser's leg gets its DTLS spec");

        // A plain offer from a trunk that requires SRTP is refused (488) and leaves nothing behind.
        let mut s = sessions(Some(FP));
        s.expect_browser(id, Leg::B).unwrap();
        let r = s.rewrite(now, id, Leg::A, CARRIER.as_bytes(), LOCALS, offering);
        assert!(matches!(r, Err(MediaError::Srtp(_))), "{r:?}");
        assert_eq!(s.counts().1, 0, "no ports");
    }

    #[test]
    fn two_browsers_get_one_webrtc_leg_each_and_the_relay_a_spec_for_both() {
        let mut s = sessions(Some(FP));
        let now = Instant::now();
        let id = SessionId(4);
        s.expect_browser(id, Leg::B).unwrap();
        let to_b = s.rewrite(now, id, Leg::A, BROWSER.as_bytes(), LOCALS, exchange(SdpKind::Offer)).unwrap();
        assert!(to_b.contains("UDP/TLS/RTP/SAVPF") && to_b.contains("a=setup:actpass"), "{to_b}");
        let answer = BROWSER
            .replace("a=setup:actpass", "a=setup:active")
            .replace("a=ice-ufrag:Xk3R", "a=ice-ufrag:Bb22")
            .replace("111 0 8 126", "111 126");
        let to_a = s.rewrite(now, id, Leg::B, answer.as_bytes(), LOCALS, exchange(SdpKind::Answer)).unwrap();
        assert!(to_a.contains("m=audio 30000 UDP/TLS/RTP/SAVPF 111\r\n"), "{to_a}");
        assert!(to_a.contains("a=setup:active"), "{to_a}");
        let commands = drain(&mut s);
        let mut sent: Vec<(String, DtlsRole)> =
            specs(&commands).iter().map(|w| (w.remote_ufrag.clone(), w.role)).collect();
        sent.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(sent, vec![("Bb22".into(), DtlsRole::Server), ("Xk3R".into(), DtlsRole::Client)]);
        let upserts = commands.iter().filter(|c| matches!(c, Command::Upsert(e) if e.srtp_pending && e.peer.is_none()));
        assert_eq!(upserts.count(), 4, "both legs are browser legs, upserted at the offer and at the answer");
    }

    #[test]
    fn a_keyed_browser_leg_is_replicated_and_the_adopting_box_resumes_it_with_the_same_fingerprint() {
        use crate::sdes::{KeyMaterial, Suite};
        let mut active = sessions(Some(FP));
        let now = Instant::now();
        let id = SessionId(9);
        active.rewrite(now, id, Leg::A, BROWSER.as_bytes(), LOCALS, exchange(SdpKind::Offer)).unwrap();
        active.rewrite(now, id, Leg::B, CARRIER.as_bytes(), LOCALS, exchange(SdpKind::Answer)).unwrap();
        let spec = specs(&drain(&mut active))[0].clone();
        let browser: SocketAddr = "198.18.1.10:54321".parse().unwrap();
        assert!(active.latched(id, spec.local, browser));
        let keys = SrtpKeys {
            suite: Suite::AesCm128HmacSha1_80,
            ours: KeyMaterial::new(vec![1; 30]),
            theirs: KeyMaterial::new(vec![2; 30]),
        };
        assert!(!active.webrtc_keyed(id, SocketAddr::new(LOCALS[1], 30000), &keys), "the carrier's socket");
        assert!(active.webrtc_keyed(id, spec.local, &keys), "a change: the call replicates");
        assert!(!active.webrtc_keyed(id, spec.local, &keys), "the same keys again: no new version");
        assert!(drain(&mut active).is_empty(), "the active's relay, which made the keys, is told nothing");
        let rolled = Rollover { ssrc: 0x1234, outbound: false, roc: 1 };
        assert!(active.webrtc_rollover(id, spec.local, rolled), "a rollover: the call replicates");
        assert!(!active.webrtc_rollover(id, spec.local, rolled), "the same one again: no new version");
        let rolled = Rollover { roc: 2, ..rolled };
        assert!(active.webrtc_rollover(id, spec.local, rolled), "the next one replaces it");

        // The record on the wire: a round trip changes nothing of it.
        let json = serde_json::to_string(&active.export(id).unwrap()).unwrap();
        assert!(json.contains(&spec.ice.pwd) && json.contains(&keys.ours.to_base64()), "{json}");
        let record: SessionRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&record).unwrap(), json);

        // The standby's relay has a certificate of its own; it resumes the leg, no handshake.
        let mut standby = sessions(Some(Fingerprint([0xCD; 32])));
        assert!(standby.adopt(now, id, record));
        let commands = drain(&mut standby);
        assert!(specs(&commands).is_empty(), "no Webrtc command: no new handshake");
        let resumed: Vec<_> = commands
            .iter()
            .filter_map(|c| match c {
                Command::WebrtcResume { spec, resume } => Some((&**spec, resume)),
                _ => None,
            })
            .collect();
        let resume = WebrtcResume { peer: browser, keys: keys.clone(), rollovers: vec![rolled] };
        assert_eq!(resumed, vec![(&spec, &resume)]);
        let a = commands.iter().find_map(|c| match c {
            Command::Upsert(e) if e.leg == Leg::A => Some(e),
            _ => None,
        });
        assert_eq!(a.map(|e| (e.latched, e.srtp_pending, e.strict)), Some((Some(browser), true, true)));

        // A re-INVITE from the carrier after the takeover: towards the browser, the active's fingerprint and our
        // ICE credentials, as before; the browser's answer (same ufrag, fingerprint, role) changes no association.
        let reoffer = CARRIER.replace("o=carrier 5 5", "o=carrier 5 6");
        let to_browser =
            standby.rewrite(now, id, Leg::B, reoffer.as_bytes(), LOCALS, exchange(SdpKind::Offer)).unwrap();
        assert!(to_browser.contains("a=fingerprint:sha-256 AB:AB:AB:AB:"), "{to_browser}");
        assert!(!to_browser.contains("CD:CD"), "{to_browser}");
        assert!(to_browser.contains(&format!("a=ice-ufrag:{}\r\n", spec.ice.ufrag)), "{to_browser}");
        let reanswer = BROWSER.replace("a=setup:actpass", "a=setup:passive").replace("111 0 8 126", "0 126");
        standby.rewrite(now, id, Leg::A, reanswer.as_bytes(), LOCALS, exchange(SdpKind::Answer)).unwrap();
        let commands = drain(&mut standby);
        assert!(
            !commands.iter().any(|c| matches!(c, Command::Webrtc(_) | Command::WebrtcResume { .. })),
            "the resumed leg stays: {commands:?}"
        );
    }

    #[test]
    fn a_record_of_a_browser_call_from_an_older_box_reads_and_its_leg_is_set_up_afresh() {
        let mut active = sessions(Some(FP));
        let now = Instant::now();
        let id = SessionId(5);
        active.rewrite(now, id, Leg::A, BROWSER.as_bytes(), LOCALS, exchange(SdpKind::Offer)).unwrap();
        active.rewrite(now, id, Leg::B, CARRIER.as_bytes(), LOCALS, exchange(SdpKind::Answer)).unwrap();
        let mut record = serde_json::to_value(active.export(id).unwrap()).unwrap();
        // Before this change, `webrtc` was never written.
        record.as_object_mut().unwrap().remove("webrtc");
        let record: SessionRecord = serde_json::from_value(record).unwrap();
        assert!(record.webrtc.is_none());
        // A leg replicated before its handshake completed (no keys): a Webrtc command, a new handshake.
        let json = serde_json::to_string(&active.export(id).unwrap()).unwrap();
        let mut standby = sessions(Some(FP));
        assert!(standby.adopt(now, id, serde_json::from_str(&json).unwrap()));
        let commands = drain(&mut standby);
        assert_eq!(specs(&commands).len(), 1);
        assert!(!commands.iter().any(|c| matches!(c, Command::WebrtcResume { .. })));
    }
}
