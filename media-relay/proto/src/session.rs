//! A call's media as the signalling side sees it: both legs, a stream per m= line, the relay ports of each leg
//! on that leg's interface, and each peer's addresses from its SDP.
//!
//! Every SDP that crosses the B2BUA goes through [`Sessions::rewrite`], offer or answer alike: the peer's
//! addresses are recorded for its leg, ports are allocated for both legs on first sight of a stream, and the SDP
//! comes back carrying only the relay's address and ports on the other leg. The data plane learns the result as
//! [`Command`]s, drained with [`Sessions::poll_command`].
//!
//! Each call has a [`CnameKey`] (from [`MediaConfig::cname_seed`] and the call's id, kept in its
//! [`SessionRecord`]): the SDP rewrite replaces every `a=ssrc` CNAME with the key's token for it, and every
//! endpoint of a plain RTP stream carries the key to the relay, which puts the same tokens into RTCP SDES.

use crate::cname::CnameKey;
use crate::control::{Command, EndpointSpec, Leg, SessionId};
use crate::negotiate::{self, Exchange, SdpKind, SrtpError, StreamCrypto};
use crate::ports::{PortPool, PortRangeError};
use crate::sdes::{KeySource, OsKeys};
use crate::sdp::{self, Anchor, SdpError, Transport};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

#[path = "session_webrtc.rs"]
mod webrtc;
pub use webrtc::WebrtcMedia;

/// A relay interface: where one side's media is anchored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Its name in config and logs (`a`, `b`, `public`).
    pub name: String,
    /// The address the relay binds and writes into SDP.
    pub address: IpAddr,
}

/// Settings of media anchoring.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// Relay interfaces; a leg uses the one whose address is the SIP address facing it, else the first.
    pub interfaces: Vec<Interface>,
    /// The port range, shared by every interface (each has its own pool over it).
    pub first_port: u16,
    /// Last port of the range (inclusive).
    pub last_port: u16,
    /// How long released ports rest before reuse.
    pub quarantine: Duration,
    /// Drop packets from anything but the latched peer.
    pub strict: bool,
    /// Secret randomness that keys the calls' CNAME tokens ([`CnameKey::derive`]), so that a peer can neither
    /// read nor check a guess of what a token stands for. The server draws it from the OS when it loads the
    /// configuration; it must not come from a generator whose output peers see (SIP tags, Call-IDs).
    pub cname_seed: u64,
    /// The fingerprint of the relay's DTLS certificate (`Relay::dtls_fingerprint` of the embedded relay): with
    /// it, a call whose offer is WebRTC gets a browser leg terminated by the relay ([`WebrtcMedia`]); without
    /// it (a relay in its own process) such an offer is rewritten as any other SDP.
    pub dtls_fingerprint: Option<crate::webrtc::dtls::Fingerprint>,
}

/// Why an SDP could not be anchored; the B2BUA maps each to a SIP status (488, 503).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// The body is not SDP we can read: answer 488 Not Acceptable Here.
    #[error("unreadable SDP: {0}")]
    Sdp(#[from] SdpError),
    /// The interface's port pool is empty: answer 503 with Retry-After; the operator should widen `media.ports`.
    #[error("no free media port on interface {0}")]
    NoPorts(String),
    /// No interface is configured.
    #[error("no media interface configured")]
    NoInterface,
    /// SDES-SRTP negotiation refused the SDP (a leg's policy, unusable keys): answer 488.
    #[error(transparent)]
    Srtp(#[from] SrtpError),
    /// A call with a browser leg whose SDP cannot be bridged (no shared codec, missing ICE or DTLS attributes):
    /// answer [`crate::webrtc::sdp::WebrtcSdpError::sip_status`] (488, 400).
    #[error(transparent)]
    Webrtc(#[from] crate::webrtc::sdp::WebrtcSdpError),
    /// The OS's random source failed (no ICE credentials): answer 503.
    #[error("no random bytes for ICE credentials: {0}")]
    Keys(String),
}

/// A stream's relay port and peer on one leg.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Side {
    /// The relay's RTP port (RTCP is the next one).
    pub port: u16,
    /// Where the peer receives RTP, from its SDP.
    pub peer_rtp: Option<SocketAddr>,
    /// Where the peer receives RTCP.
    pub peer_rtcp: Option<SocketAddr>,
    /// RTP clock rates by payload type.
    pub clock_rates: Vec<(u8, u32)>,
    /// Where the peer's RTP came from, as the relay latched it (a NAT's mapping, or the SDP address confirmed):
    /// replicated, so that a standby's relay trusts it at once after a takeover and hands the flow to the kernel
    /// before its first packet there. Cleared when the peer's SDP address changes.
    #[serde(default)]
    pub latched_rtp: Option<SocketAddr>,
    /// The same for RTCP.
    #[serde(default)]
    pub latched_rtcp: Option<SocketAddr>,
    /// The stream's RTP and RTCP are readable by the relay, as the last SDP of either leg says: plain RTP
    /// (`RTP/AVP`, `RTP/AVPF`) or SDES-SRTP that the relay terminates (`RTP/SAVP`, `RTP/SAVPF`); its RTCP is
    /// rewritten. False for DTLS-SRTP and non-RTP streams, and in records from a version without it.
    #[serde(default)]
    pub plain_rtp: bool,
    /// SDES-SRTP of this leg's stream: our keys for the leg, the exchange in progress, and the keys in use
    /// (replicated, so that a standby's relay decrypts and encrypts with the same keys after a takeover; the
    /// contexts' rollover counters are not replicated: see config/README.md).
    #[serde(default)]
    pub crypto: StreamCrypto,
}

/// One leg's media.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LegMedia {
    /// Index of the interface in the config.
    pub iface: Option<usize>,
    /// Per m= line; `None` for a rejected (port 0) stream.
    pub streams: Vec<Option<Side>>,
}

/// A call's media as replicated to a standby (ports, peers, interfaces): enough to anchor it again there.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionRecord {
    /// Leg A, then leg B.
    pub legs: [LegMedia; 2],
    /// The call's CNAME key: replicated, so the peers see the same tokens after a takeover.
    #[serde(default)]
    pub cname_key: CnameKey,
    /// The browser legs' ICE and DTLS state, for a call with one: replicated, so that a standby's relay carries
    /// the legs on after a takeover without a new handshake ([`WebrtcMedia`]). Absent in records from a version
    /// without it (and in those of calls with no browser leg).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webrtc: Option<Box<WebrtcMedia>>,
}

type Session = SessionRecord;

/// The media sessions of every call.
#[derive(Debug)]
pub struct Sessions {
    config: MediaConfig,
    pools: Vec<PortPool>,
    /// Boxed: a record is over a hundred bytes and the map keeps room for up to twice its entries (one per call).
    sessions: HashMap<SessionId, Box<Session>>,
    out: VecDeque<Command>,
    /// Where SRTP keys come from: the OS's CSPRNG ([`OsKeys`]) outside tests.
    keys: Box<dyn KeySource>,
}

impl Sessions {
    /// Sessions over `config`'s interfaces and port range.
    pub fn new(config: MediaConfig) -> Result<Self, PortRangeError> {
        let pools = config
            .interfaces
            .iter()
            .map(|_| PortPool::new(config.first_port, config.last_port, config.quarantine))
            .collect::<Result<_, _>>()?;
        Ok(Self { config, pools, sessions: HashMap::new(), out: VecDeque::new(), keys: Box::new(OsKeys) })
    }

    /// The same with SRTP keys from `keys` (tests: deterministic keys for golden SDP).
    pub fn with_key_source(mut self, keys: Box<dyn KeySource>) -> Self {
        self.keys = keys;
        self
    }

    /// Anchors `sdp`, which came from leg `from`, for sending on the other leg. `exchange` says whether it is an
    /// offer or an answer and each leg's SRTP policy ([`crate::negotiate`]): every RTP stream's transport and
    /// keys towards the other leg follow that leg's policy, with our own keys. `sip_local` is our SIP address
    /// facing each leg (A, B), to put each leg's media on the interface of the same address.
    pub fn rewrite(
        &mut self,
        now: Instant,
        session: SessionId,
        from: Leg,
        body: &[u8],
        sip_local: [IpAddr; 2],
        exchange: Exchange,
    ) -> Result<String, MediaError> {
        if self.config.interfaces.is_empty() {
            return Err(MediaError::NoInterface);
        }
        let fresh = !self.sessions.contains_key(&session) || self.sessions[&session].legs[0].streams.is_empty();
        let result = match self.webrtc_call(session, exchange.kind, body) {
            Some(line) => self.anchor_webrtc(now, session, from, line, sip_local, exchange),
            None => self.anchor(now, session, from, body, sip_local, exchange),
        };
        if result.is_err() && fresh {
            // Nothing was sent to the relay for a session that failed at its first SDP: only give the ports back.
            if let Some(s) = self.sessions.remove(&session) {
                self.release(&s, now);
            }
        }
        result
    }

    fn anchor(
        &mut self,
        now: Instant,
        session: SessionId,
        from: Leg,
        body: &[u8],
        sip_local: [IpAddr; 2],
        exchange: Exchange,
    ) -> Result<String, MediaError> {
        let lines = sdp::parse(body)?;
        let to = from.other();
        let seed = self.config.cname_seed;
        let s = self.sessions.entry(session).or_insert_with(|| {
            Box::new(SessionRecord { cname_key: CnameKey::derive(seed, session), ..SessionRecord::default() })
        });
        for leg in [Leg::A, Leg::B] {
            let l = &mut s.legs[leg.index()];
            if l.iface.is_none() {
                let ip = sip_local[leg.index()];
                l.iface = Some(self.config.interfaces.iter().position(|i| i.address == ip).unwrap_or(0));
            }
        }
        // Ports for both legs of every stream that is not rejected; the peer's addresses on its own leg.
        for (i, line) in lines.iter().enumerate() {
            for leg in [Leg::A, Leg::B] {
                let l = &mut s.legs[leg.index()];
                if l.streams.len() <= i {
                    // Exactly: a Vec grows to four at first, three unused streams of a few hundred bytes per leg of
                    // every call (nearly all calls have one m= line).
                    l.streams.reserve_exact(i + 1 - l.streams.len());
                    l.streams.resize(i + 1, None);
                }
                if line.port != 0 && l.streams[i].is_none() {
                    let iface = l.iface.unwrap_or(0);
                    let Some(port) = self.pools[iface].allocate(now) else {
                        return Err(MediaError::NoPorts(self.config.interfaces[iface].name.clone()));
                    };
                    l.streams[i] = Some(Side { port, ..Side::default() });
                }
            }
            if let Some(side) = s.legs[from.index()].streams[i].as_mut() {
                let held = line.hold_address || line.port == 0;
                // 0.0.0.0 is hold (RFC 2543) or, with ICE, "no address yet": either way nowhere to send.
                let rtp = match line.address {
                    Some(ip) if !held && !ip.is_unspecified() => Some(SocketAddr::new(ip, line.port)),
                    _ => None,
                };
                let rtcp = match line.rtcp_address.or(line.address) {
                    Some(ip) if !held && !ip.is_unspecified() => Some(SocketAddr::new(ip, line.rtcp_port)),
                    _ => None,
                };
                // A new address from the peer: what was latched belonged to the old one (the relay drops it too).
                if rtp != side.peer_rtp {
                    side.latched_rtp = None;
                }
                if rtcp != side.peer_rtcp {
                    side.latched_rtcp = None;
                }
                (side.peer_rtp, side.peer_rtcp) = (rtp, rtcp);
                side.clock_rates.clone_from(&line.clock_rates);
            }
            let readable = negotiate::terminated(&line.proto);
            for leg in &mut s.legs {
                if let Some(side) = leg.streams[i].as_mut() {
                    side.plain_rtp = readable;
                }
            }
        }
        if exchange.kind == SdpKind::OfferToNewPeer {
            for side in s.legs[to.index()].streams.iter_mut().flatten() {
                side.crypto.reset();
            }
        }
        let mut transports: Vec<Option<Transport>> = Vec::with_capacity(lines.len());
        for (i, line) in lines.iter().enumerate() {
            let [a, b] = &mut s.legs;
            let (mine, theirs) = if from == Leg::A { (a, b) } else { (b, a) };
            let f = mine.streams.get_mut(i).and_then(Option::as_mut);
            let t = theirs.streams.get_mut(i).and_then(Option::as_mut);
            let negotiated = line.port != 0 && negotiate::terminated(&line.proto);
            let (Some(f), Some(t), true) = (f, t, negotiated) else {
                // No media here (a rejected stream), or not RTP whose keys are in SDP: no key crosses, none is used.
                if line.port == 0 {
                    for leg in [&mut *mine, &mut *theirs] {
                        if let Some(side) = leg.streams.get_mut(i).and_then(Option::as_mut) {
                            side.crypto.active = None;
                        }
                    }
                }
                let strip = !line.crypto.is_empty();
                transports.push(strip.then(|| Transport { proto: line.proto.clone(), crypto: Vec::new() }));
                continue;
            };
            let (mode_f, mode_t) = (exchange.srtp[from.index()], exchange.srtp[to.index()]);
            let transport = match exchange.kind {
                SdpKind::Offer | SdpKind::OfferToNewPeer => {
                    f.crypto.take_offer(line, mode_f, from)?;
                    t.crypto.make_offer(&line.proto, mode_t, self.keys.as_mut())?
                }
                SdpKind::Answer => {
                    f.crypto.take_answer(line, mode_f, from)?;
                    t.crypto.make_answer(&line.proto, self.keys.as_mut())?
                }
            };
            transports.push(Some(transport));
        }
        let to_leg = &s.legs[to.index()];
        let address = self.config.interfaces[to_leg.iface.unwrap_or(0)].address;
        let anchors: Vec<Option<Anchor>> = lines
            .iter()
            .enumerate()
            .map(|(i, line)| {
                let side = to_leg.streams.get(i)?.as_ref().filter(|_| line.port != 0)?;
                Some(Anchor { port: side.port, rtcp_port: side.port + 1 })
            })
            .collect();
        let key = s.cname_key;
        let out = sdp::rewrite(body, address, &anchors, &transports, true, &|cname| {
            key.token(from, cname.as_bytes()).to_string()
        })?;
        self.emit(session);
        Ok(out)
    }

    /// Upserts every endpoint of `session` (idempotent on the relay's side; a changed peer drops its latch).
    fn emit(&mut self, session: SessionId) {
        let Some(s) = self.sessions.get(&session) else { return };
        if s.webrtc.is_some() {
            return self.emit_webrtc(session);
        }
        let addr = |leg: Leg| self.config.interfaces[s.legs[leg.index()].iface.unwrap_or(0)].address;
        for leg in [Leg::A, Leg::B] {
            let other = leg.other();
            let mine = &s.legs[leg.index()];
            for (i, side) in mine.streams.iter().enumerate() {
                let (Some(side), Some(Some(theirs))) = (side, s.legs[other.index()].streams.get(i)) else { continue };
                for rtcp in [false, true] {
                    let off = u16::from(rtcp);
                    self.out.push_back(Command::Upsert(EndpointSpec {
                        session,
                        leg,
                        stream: u16::try_from(i).unwrap_or(u16::MAX),
                        rtcp,
                        local: SocketAddr::new(addr(leg), side.port + off),
                        partner: SocketAddr::new(addr(other), theirs.port + off),
                        peer: if rtcp { side.peer_rtcp } else { side.peer_rtp },
                        latched: if rtcp { side.latched_rtcp } else { side.latched_rtp },
                        strict: self.config.strict,
                        clock_rates: side.clock_rates.clone(),
                        cname_key: side.plain_rtp.then_some(s.cname_key),
                        srtp: side.crypto.active.clone().map(Box::new),
                        srtp_pending: side.crypto.pending(),
                    }));
                }
            }
        }
    }

    /// The call ended: its ports go back to the pools (quarantined) and the relay closes its sockets.
    pub fn remove(&mut self, now: Instant, session: SessionId) {
        let Some(s) = self.sessions.remove(&session) else { return };
        self.release(&s, now);
        self.out.push_back(Command::Remove { session });
    }

    fn release(&mut self, s: &Session, now: Instant) {
        for leg in &s.legs {
            let pool = &mut self.pools[leg.iface.unwrap_or(0)];
            for side in leg.streams.iter().flatten() {
                pool.release(side.port, now);
            }
        }
    }

    /// The media of `session`, for replication.
    pub fn export(&self, session: SessionId) -> Option<SessionRecord> {
        self.sessions.get(&session).map(|s| (**s).clone())
    }

    /// Takes over a replicated session: its ports are reserved in this box's pools and the relay is told to open
    /// them (the service addresses have moved here). False if an interface or a port is not available here.
    pub fn adopt(&mut self, now: Instant, session: SessionId, record: SessionRecord) -> bool {
        let valid = |l: &LegMedia| l.iface.unwrap_or(0) < self.pools.len();
        if self.sessions.contains_key(&session) || !record.legs.iter().all(valid) {
            return false;
        }
        let mut taken: Vec<(usize, u16)> = Vec::new();
        for leg in &record.legs {
            let iface = leg.iface.unwrap_or(0);
            for side in leg.streams.iter().flatten() {
                if !self.pools[iface].reserve(side.port) {
                    for (i, p) in taken {
                        self.pools[i].release(p, now);
                    }
                    return false;
                }
                taken.push((iface, side.port));
            }
        }
        self.sessions.insert(session, Box::new(record));
        self.emit(session);
        true
    }

    /// The relay latched `peer` on its socket `local` of `session`: kept for the replication records. Returns
    /// whether that changed what the session records (the call then replicates a new version).
    pub fn latched(&mut self, session: SessionId, local: SocketAddr, peer: SocketAddr) -> bool {
        let Some(s) = self.sessions.get_mut(&session) else { return false };
        for leg in &mut s.legs {
            let Some(iface) = self.config.interfaces.get(leg.iface.unwrap_or(0)) else { continue };
            if iface.address != local.ip() {
                continue;
            }
            for side in leg.streams.iter_mut().flatten() {
                let slot = if local.port() == side.port {
                    &mut side.latched_rtp
                } else if local.port() == side.port.wrapping_add(1) {
                    &mut side.latched_rtcp
                } else {
                    continue;
                };
                let changed = *slot != Some(peer);
                *slot = Some(peer);
                return changed;
            }
        }
        false
    }

    /// Whether `session` has media.
    pub fn contains(&self, session: SessionId) -> bool {
        self.sessions.contains_key(&session)
    }

    /// Upserts every endpoint of every session again: for a relay that restarted or reconnected.
    pub fn replay(&mut self) {
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for w in self.sessions.values_mut().filter_map(|s| s.webrtc.as_deref_mut()) {
            w.resend();
        }
        for id in ids {
            self.emit(id);
        }
    }

    /// The next command for the relay.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.out.pop_front()
    }

    /// Sessions held, and ports in use over all interfaces.
    pub fn counts(&self) -> (usize, usize) {
        (self.sessions.len(), self.pools.iter().map(PortPool::in_use).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdes::SrtpMode;

    const OFFERING: Exchange = Exchange { kind: SdpKind::Offer, srtp: [SrtpMode::Off; 2] };
    const ANSWERING: Exchange = Exchange { kind: SdpKind::Answer, srtp: [SrtpMode::Off; 2] };

    const OFFER: &str = "v=0\r\no=pbx 1 1 IN IP4 198.18.1.10\r\ns=-\r\nc=IN IP4 198.18.1.10\r\nt=0 0\r\n\
m=audio 6000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
a=candidate:1 1 UDP 2130706431 198.18.1.10 6000 typ host\r\na=sendrecv\r\n";
    const ANSWER: &str = "v=0\r\no=carrier 5 5 IN IP4 198.18.2.10\r\ns=-\r\nc=IN IP4 198.18.2.10\r\nt=0 0\r\n\
m=audio 7000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn sessions(first: u16, last: u16) -> Sessions {
        Sessions::new(MediaConfig {
            interfaces: vec![
                Interface { name: "a".into(), address: ip("198.18.1.1") },
                Interface { name: "b".into(), address: ip("198.18.2.1") },
            ],
            first_port: first,
            last_port: last,
            quarantine: Duration::from_secs(5),
            strict: true,
            cname_seed: 7,
            dtls_fingerprint: Some(crate::webrtc::dtls::Fingerprint([0xAB; 32])),
        })
        .unwrap()
    }

    const LOCALS: [&str; 2] = ["198.18.1.1", "198.18.2.1"];

    fn locals() -> [IpAddr; 2] {
        LOCALS.map(ip)
    }

    fn drain(s: &mut Sessions) -> Vec<EndpointSpec> {
        std::iter::from_fn(|| s.poll_command())
            .filter_map(|c| match c {
                Command::Upsert(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn offer_and_answer_carry_only_the_relays_addresses() {
        let mut s = sessions(30000, 30099);
        let now = Instant::now();
        let to_b = s.rewrite(now, SessionId(1), Leg::A, OFFER.as_bytes(), locals(), OFFERING).unwrap();
        assert!(!to_b.contains("198.18.1.10"), "{to_b}");
        assert!(to_b.contains("c=IN IP4 198.18.2.1\r\n") && to_b.contains("m=audio 30000 "), "{to_b}");
        assert!(!to_b.contains("candidate"), "ICE toward plain RTP is removed: {to_b}");
        let to_a = s.rewrite(now, SessionId(1), Leg::B, ANSWER.as_bytes(), locals(), ANSWERING).unwrap();
        assert!(!to_a.contains("198.18.2.10"), "{to_a}");
        assert!(to_a.contains("c=IN IP4 198.18.1.1\r\n") && to_a.contains("m=audio 30000 "), "{to_a}");
        let specs = drain(&mut s);
        let last_a_rtp = specs.iter().rev().find(|e| e.leg == Leg::A && !e.rtcp).unwrap();
        assert_eq!(last_a_rtp.local, "198.18.1.1:30000".parse::<SocketAddr>().unwrap());
        assert_eq!(last_a_rtp.partner, "198.18.2.1:30000".parse::<SocketAddr>().unwrap());
        assert_eq!(last_a_rtp.peer, Some("198.18.1.10:6000".parse().unwrap()));
        let last_b_rtcp = specs.iter().rev().find(|e| e.leg == Leg::B && e.rtcp).unwrap();
        assert_eq!(last_b_rtcp.peer, Some("198.18.2.10:7001".parse().unwrap()));
        assert_eq!(s.counts(), (1, 2));
    }

    #[test]
    fn latches_are_recorded_replicated_and_handed_to_the_adopting_relay() {
        let mut s = sessions(30000, 30099);
        let now = Instant::now();
        s.rewrite(now, SessionId(1), Leg::A, OFFER.as_bytes(), locals(), OFFERING).unwrap();
        s.rewrite(now, SessionId(1), Leg::B, ANSWER.as_bytes(), locals(), ANSWERING).unwrap();
        drain(&mut s);
        let nat: SocketAddr = "198.18.1.10:41234".parse().unwrap();
        assert!(s.latched(SessionId(1), "198.18.1.1:30000".parse().unwrap(), nat), "a new latch");
        assert!(!s.latched(SessionId(1), "198.18.1.1:30000".parse().unwrap(), nat), "the same one again");
        assert!(!s.latched(SessionId(2), "198.18.1.1:30000".parse().unwrap(), nat), "no such session");
        let record = s.export(SessionId(1)).unwrap();
        assert_eq!(record.legs[0].streams[0].as_ref().unwrap().latched_rtp, Some(nat));
        // A standby adopts the record: its relay is told the latched peer, not only the SDP's.
        let mut standby = sessions(30000, 30099);
        assert!(standby.adopt(now, SessionId(1), record));
        let a_rtp = drain(&mut standby).into_iter().find(|e| e.leg == Leg::A && !e.rtcp).unwrap();
        assert_eq!((a_rtp.peer, a_rtp.latched), (Some("198.18.1.10:6000".parse().unwrap()), Some(nat)));
        // A new SDP address forgets the latch.
        let moved = OFFER.replace("m=audio 6000", "m=audio 6100");
        s.rewrite(now, SessionId(1), Leg::A, moved.as_bytes(), locals(), OFFERING).unwrap();
        let a_rtp = drain(&mut s).into_iter().find(|e| e.leg == Leg::A && !e.rtcp).unwrap();
        assert_eq!(a_rtp.latched, None);
    }

    #[test]
    fn reoffer_keeps_ports_and_hold_clears_the_peer() {
        let mut s = sessions(30000, 30099);
        let now = Instant::now();
        s.rewrite(now, SessionId(1), Leg::A, OFFER.as_bytes(), locals(), OFFERING).unwrap();
        s.rewrite(now, SessionId(1), Leg::B, ANSWER.as_bytes(), locals(), ANSWERING).unwrap();
        drain(&mut s);
        let hold = OFFER.replace("c=IN IP4 198.18.1.10", "c=IN IP4 0.0.0.0").replace("a=sendrecv", "a=sendonly");
        let to_b = s.rewrite(now, SessionId(1), Leg::A, hold.as_bytes(), locals(), OFFERING).unwrap();
        assert!(to_b.contains("m=audio 30000 ") && to_b.contains("a=sendonly"), "{to_b}");
        let a_rtp = drain(&mut s).into_iter().find(|e| e.leg == Leg::A && !e.rtcp).unwrap();
        assert_eq!(a_rtp.peer, None, "no media is sent to a peer that holds with 0.0.0.0");
        assert_eq!(s.counts(), (1, 2), "no new ports for the same stream");
    }

    #[test]
    fn exhausted_pool_is_an_error_and_removal_quarantines() {
        let mut s = sessions(30000, 30003);
        let now = Instant::now();
        s.rewrite(now, SessionId(1), Leg::A, OFFER.as_bytes(), locals(), OFFERING).unwrap();
        s.rewrite(now, SessionId(2), Leg::A, OFFER.as_bytes(), locals(), OFFERING).unwrap();
        assert!(matches!(
            s.rewrite(now, SessionId(3), Leg::A, OFFER.as_bytes(), locals(), OFFERING),
            Err(MediaError::NoPorts(_))
        ));
        s.remove(now, SessionId(1));
        assert!(s.rewrite(now, SessionId(4), Leg::A, OFFER.as_bytes(), locals(), OFFERING).is_err(), "quarantined");
        assert!(s
            .rewrite(now + Duration::from_secs(5), SessionId(4), Leg::A, OFFER.as_bytes(), locals(), OFFERING)
            .is_ok());
        assert!(std::iter::from_fn(|| s.poll_command()).any(|c| c == Command::Remove { session: SessionId(1) }));
    }

    #[test]
    fn garbage_body_is_an_sdp_error() {
        let mut s = sessions(30000, 30099);
        assert!(matches!(
            s.rewrite(Instant::now(), SessionId(1), Leg::A, b"hello", locals(), OFFERING),
            Err(MediaError::Sdp(_))
        ));
    }

    #[test]
    fn ssrc_cnames_become_the_calls_tokens_and_plain_rtp_endpoints_carry_its_key() {
        let mut s = sessions(30000, 30099);
        let now = Instant::now();
        let offer = format!("{OFFER}a=ssrc:42 cname:sip:pbx@198.18.1.10\r\n");
        let to_b = s.rewrite(now, SessionId(1), Leg::A, offer.as_bytes(), locals(), OFFERING).unwrap();
        let key = CnameKey::derive(7, SessionId(1));
        let token_a = key.token(Leg::A, b"sip:pbx@198.18.1.10");
        assert!(to_b.contains(&format!("a=ssrc:42 cname:{token_a}\r\n")), "{to_b}");
        let specs = drain(&mut s);
        assert_eq!(specs.len(), 4, "RTP and RTCP on both legs");
        assert!(specs.iter().all(|e| e.cname_key == Some(key)), "B's RTCP is hidden before its answer too: {specs:?}");
        let answer = format!("{ANSWER}a=ssrc:7 cname:sip:+4930123456@198.18.2.10\r\n");
        let to_a = s.rewrite(now, SessionId(1), Leg::B, answer.as_bytes(), locals(), ANSWERING).unwrap();
        let token_b = key.token(Leg::B, b"sip:+4930123456@198.18.2.10");
        assert!(to_a.contains(&format!("a=ssrc:7 cname:{token_b}\r\n")), "{to_a}");
        assert_eq!(s.export(SessionId(1)).unwrap().cname_key, key, "the key is replicated with the call");
        // Another call, another key.
        s.rewrite(now, SessionId(2), Leg::A, offer.as_bytes(), locals(), OFFERING).unwrap();
        assert_ne!(s.export(SessionId(2)).unwrap().cname_key, key);
    }

    #[test]
    fn dtls_srtp_and_non_rtp_streams_leave_rtcp_untouched_and_sdes_srtp_is_read() {
        let mut s = sessions(30000, 30099);
        let now = Instant::now();
        // DTLS-SRTP keys are not in the SDP: the relay cannot read such a stream, whatever the policy.
        let dtls = OFFER.replace("RTP/AVP", "UDP/TLS/RTP/SAVPF");
        s.rewrite(now, SessionId(1), Leg::A, dtls.as_bytes(), locals(), OFFERING).unwrap();
        let udptl = "v=0\r\no=pbx 1 1 IN IP4 198.18.1.10\r\ns=-\r\nc=IN IP4 198.18.1.10\r\nt=0 0\r\n\
                     m=image 6000 udptl t38\r\n";
        s.rewrite(now, SessionId(2), Leg::A, udptl.as_bytes(), locals(), OFFERING).unwrap();
        let specs = drain(&mut s);
        assert_eq!(specs.len(), 8);
        assert!(specs.iter().all(|e| e.cname_key.is_none() && e.srtp.is_none()), "{specs:?}");
        // SDES-SRTP is terminated here: its RTCP is readable once decrypted, and hidden like plain RTCP.
        let baresip = include_str!("../tests/sdp/baresip-srtp.in.sdp");
        s.rewrite(now, SessionId(3), Leg::A, baresip.as_bytes(), locals(), offering(Required, Off)).unwrap();
        let specs = drain(&mut s);
        assert_eq!(specs.len(), 4);
        assert!(specs.iter().all(|e| e.cname_key.is_some()), "{specs:?}");
    }

    use crate::sdes::tests::CountingKeys;
    use crate::sdes::{CryptoAttr, SrtpKeys, Suite};
    use SrtpMode::{Off, Optional, Required};

    fn offering(a: SrtpMode, b: SrtpMode) -> Exchange {
        Exchange { kind: SdpKind::Offer, srtp: [a, b] }
    }

    fn answering(a: SrtpMode, b: SrtpMode) -> Exchange {
        Exchange { kind: SdpKind::Answer, srtp: [a, b] }
    }

    /// Sessions whose keys are 1, 2, 3, ... (byte i of the n-th key is n + i), for golden SDP.
    fn counting_sessions() -> Sessions {
        sessions(30000, 30099).with_key_source(Box::new(CountingKeys::default()))
    }

    fn assert_golden(out: &str, expected: &str) {
        assert_eq!(out.replace("\r\n", "\n"), expected.replace("\r\n", "\n"), "got:\n{out}");
    }

    /// The keys of one leg's RTP endpoint, as last sent to the relay.
    fn keys_of(specs: &[EndpointSpec], leg: Leg) -> Option<SrtpKeys> {
        specs.iter().rev().find(|e| e.leg == leg && !e.rtcp).and_then(|e| e.srtp.as_deref().cloned())
    }

    fn crypto_lines(sdp: &str) -> Vec<CryptoAttr> {
        sdp.lines().filter_map(|l| l.strip_prefix("a=crypto:")).map(|v| CryptoAttr::parse(v).unwrap()).collect()
    }

    const CARRIER_SAVP_ANSWER: &str = "v=0\r\no=carrier 5 5 IN IP4 198.18.2.10\r\ns=-\r\nc=IN IP4 198.18.2.10\r\n\
        t=0 0\r\nm=audio 7000 RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\n\
        a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj\r\n";

    #[test]
    fn baresip_with_mandatory_srtp_to_a_plain_carrier_golden() {
        let mut s = counting_sessions();
        let now = Instant::now();
        let offer = include_str!("../tests/sdp/baresip-srtp.in.sdp");
        let to_b = s.rewrite(now, SessionId(1), Leg::A, offer.as_bytes(), locals(), offering(Required, Off)).unwrap();
        assert_golden(&to_b, include_str!("../tests/sdp/baresip-srtp.to-plain.out.sdp"));
        assert!(drain(&mut s).iter().all(|e| e.srtp.is_none()), "no keys in use before the answer");
        let answer = include_str!("../tests/sdp/sipp.in.sdp").replace("198.18.1.10", "198.18.2.10");
        let to_a = s.rewrite(now, SessionId(1), Leg::B, answer.as_bytes(), locals(), answering(Required, Off)).unwrap();
        assert_golden(&to_a, include_str!("../tests/sdp/baresip-srtp.answer.out.sdp"));
        let specs = drain(&mut s);
        let theirs = crypto_lines(offer).remove(0).key;
        let ours = crypto_lines(&to_a).remove(0).key;
        assert_eq!(keys_of(&specs, Leg::A), Some(SrtpKeys { suite: Suite::AesCm128HmacSha1_80, ours, theirs }));
        assert_eq!(keys_of(&specs, Leg::B), None, "the carrier's leg is plain RTP");
        assert_eq!(specs.iter().filter(|e| e.leg == Leg::A && e.srtp.is_some()).count(), 2, "RTP and RTCP sockets");
    }

    #[test]
    fn plain_caller_to_a_carrier_that_requires_srtp_golden() {
        let mut s = counting_sessions();
        let now = Instant::now();
        let offer = include_str!("../tests/sdp/sipp.in.sdp");
        let to_b = s.rewrite(now, SessionId(1), Leg::A, offer.as_bytes(), locals(), offering(Off, Required)).unwrap();
        assert_golden(&to_b, include_str!("../tests/sdp/sipp.to-srtp.out.sdp"));
        let pending = drain(&mut s);
        assert!(pending.iter().all(|e| e.srtp_pending == (e.leg == Leg::B)), "the carrier's leg waits: {pending:?}");
        let to_a = s
            .rewrite(now, SessionId(1), Leg::B, CARRIER_SAVP_ANSWER.as_bytes(), locals(), answering(Off, Required))
            .unwrap();
        assert_golden(&to_a, include_str!("../tests/sdp/carrier-srtp.answer.out.sdp"));
        let specs = drain(&mut s);
        let offered = crypto_lines(&to_b);
        let b = keys_of(&specs, Leg::B).unwrap();
        assert_eq!(b.suite, Suite::AesCm128HmacSha1_32, "the carrier picked tag 2");
        assert_eq!(b.ours, offered[1].key, "our key of tag 2");
        assert_eq!(b.theirs, crypto_lines(CARRIER_SAVP_ANSWER)[0].key);
        assert_eq!(keys_of(&specs, Leg::A), None);
        assert!(specs.iter().all(|e| !e.srtp_pending), "keys agreed: {specs:?}");
    }

    #[test]
    fn srtp_on_both_legs_gives_each_leg_keys_of_its_own() {
        let mut s = sessions(30000, 30099);
        let now = Instant::now();
        let offer = include_str!("../tests/sdp/baresip-srtp.in.sdp");
        let to_b =
            s.rewrite(now, SessionId(1), Leg::A, offer.as_bytes(), locals(), offering(Required, Required)).unwrap();
        let to_a = s
            .rewrite(now, SessionId(1), Leg::B, CARRIER_SAVP_ANSWER.as_bytes(), locals(), answering(Required, Required))
            .unwrap();
        let specs = drain(&mut s);
        let (a, b) = (keys_of(&specs, Leg::A).unwrap(), keys_of(&specs, Leg::B).unwrap());
        let all = [&a.ours, &a.theirs, &b.ours, &b.theirs];
        for (i, x) in all.iter().enumerate() {
            for y in &all[i + 1..] {
                assert_ne!(x, y, "four different keys");
            }
        }
        assert!(to_b.contains("RTP/SAVP") && to_a.contains("RTP/SAVP"));
        for key in [&a.theirs, &a.ours] {
            assert!(!to_b.contains(&key.to_base64()), "a key of leg A reached leg B:\n{to_b}");
        }
        for key in [&b.theirs, &b.ours] {
            assert!(!to_a.contains(&key.to_base64()), "a key of leg B reached leg A:\n{to_a}");
        }
        assert_eq!((a.suite, b.suite), (Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32));
    }

    #[test]
    fn a_reinvite_with_a_new_key_changes_only_the_peers_key() {
        let mut s = sessions(30000, 30099);
        let now = Instant::now();
        let offer = include_str!("../tests/sdp/baresip-srtp.in.sdp");
        let answer = ANSWER;
        s.rewrite(now, SessionId(1), Leg::A, offer.as_bytes(), locals(), offering(Required, Off)).unwrap();
        s.rewrite(now, SessionId(1), Leg::B, answer.as_bytes(), locals(), answering(Required, Off)).unwrap();
        let before = keys_of(&drain(&mut s), Leg::A).unwrap();
        let new_key = "inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj";
        let reoffer = offer.replace("inline:hgj4ee1bpfbap+YK9q31tcCaN5Qdmh0QGw4nBDg5", new_key);
        s.rewrite(now, SessionId(1), Leg::A, reoffer.as_bytes(), locals(), offering(Required, Off)).unwrap();
        assert_eq!(keys_of(&drain(&mut s), Leg::A), Some(before.clone()), "nothing changes before the answer");
        let to_a = s.rewrite(now, SessionId(1), Leg::B, answer.as_bytes(), locals(), answering(Required, Off)).unwrap();
        let after = keys_of(&drain(&mut s), Leg::A).unwrap();
        assert_eq!(after.ours, before.ours, "our key for the leg stays");
        assert_ne!(after.theirs, before.theirs, "the peer's new key is used");
        assert_eq!(crypto_lines(&to_a)[0].key, before.ours);
    }

    #[test]
    fn offers_a_legs_policy_refuses_are_errors_and_leave_nothing_behind() {
        let mut s = sessions(30000, 30099);
        let now = Instant::now();
        let baresip = include_str!("../tests/sdp/baresip-srtp.in.sdp");
        for (body, exchange) in [(baresip, offering(Off, Off)), (OFFER, offering(Required, Off))] {
            let r = s.rewrite(now, SessionId(1), Leg::A, body.as_bytes(), locals(), exchange);
            assert!(matches!(r, Err(MediaError::Srtp(_))), "{r:?}");
            assert_eq!(s.counts(), (0, 0), "no session, no ports");
        }
        // A carrier that answers plain RTP where SRTP is required: an error (the call ends).
        s.rewrite(now, SessionId(1), Leg::A, OFFER.as_bytes(), locals(), offering(Off, Required)).unwrap();
        let r = s.rewrite(now, SessionId(1), Leg::B, ANSWER.as_bytes(), locals(), answering(Off, Required));
        assert!(matches!(r, Err(MediaError::Srtp(SrtpError::Required(Leg::B)))), "{r:?}");
        // Optional: plain answers are fine.
        s.rewrite(now, SessionId(2), Leg::A, OFFER.as_bytes(), locals(), offering(Off, Optional)).unwrap();
        s.rewrite(now, SessionId(2), Leg::B, ANSWER.as_bytes(), locals(), answering(Off, Optional)).unwrap();
        assert!(drain(&mut s).iter().filter(|e| e.session == SessionId(2)).all(|e| e.srtp.is_none()));
    }

    #[test]
    fn the_next_carrier_gets_new_keys() {
        let mut s = sessions(30000, 30099);
        let now = Instant::now();
        let first = s.rewrite(now, SessionId(1), Leg::A, OFFER.as_bytes(), locals(), offering(Off, Required)).unwrap();
        let again = s.rewrite(now, SessionId(1), Leg::A, OFFER.as_bytes(), locals(), offering(Off, Required)).unwrap();
        assert_eq!(first, again, "the same carrier, the same keys");
        let next = Exchange { kind: SdpKind::OfferToNewPeer, srtp: [Off, Required] };
        let second = s.rewrite(now, SessionId(1), Leg::A, OFFER.as_bytes(), locals(), next).unwrap();
        let (k1, k2) = (crypto_lines(&first), crypto_lines(&second));
        assert_eq!(k1.len(), 3);
        assert!(k1.iter().all(|a| k2.iter().all(|b| a.key != b.key)), "{first}\n{second}");
    }

    #[test]
    fn srtp_keys_are_replicated_and_the_adopting_relay_gets_them() {
        let mut s = sessions(30000, 30099);
        let now = Instant::now();
        let offer = include_str!("../tests/sdp/baresip-srtp.in.sdp");
        s.rewrite(now, SessionId(1), Leg::A, offer.as_bytes(), locals(), offering(Required, Off)).unwrap();
        s.rewrite(now, SessionId(1), Leg::B, ANSWER.as_bytes(), locals(), answering(Required, Off)).unwrap();
        let keys = keys_of(&drain(&mut s), Leg::A).unwrap();
        let json = serde_json::to_string(&s.export(SessionId(1)).unwrap()).unwrap();
        assert!(!json.contains("KeyMaterial"), "keys are base64 in records: {json}");
        let record: SessionRecord = serde_json::from_str(&json).unwrap();
        let mut standby = sessions(30000, 30099);
        assert!(standby.adopt(now, SessionId(1), record));
        assert_eq!(keys_of(&drain(&mut standby), Leg::A), Some(keys));
    }

    #[test]
    fn a_record_without_cname_fields_from_an_older_peer_still_reads() {
        let old = r#"{"legs":[{"iface":0,"streams":[{"port":30000,"peer_rtp":null,"peer_rtcp":null,"clock_rates":[]}]},{"iface":1,"streams":[null]}]}"#;
        let record: SessionRecord = serde_json::from_str(old).unwrap();
        assert_eq!(record.cname_key, CnameKey::default());
        assert!(!record.legs[0].streams[0].as_ref().unwrap().plain_rtp);
    }
}
