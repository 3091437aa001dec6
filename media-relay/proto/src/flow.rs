//! The relay's data plane, without its sockets: the table of relay endpoints, latching, the strict source check,
//! forward-or-drop for every packet, per-leg figures and the idle check (`rtp_timeout`).
//!
//! The daemon owns one socket per endpoint; for each datagram it calls [`Table::on_packet`] and sends the bytes
//! from the socket and to the address the answer names: untouched, except RTCP of readable RTP streams, whose SDES
//! items the table rewrites first so that nothing a peer writes about itself reaches the other side (see
//! [`crate::rtcp`]), and media of SRTP legs, which the table authenticates and decrypts on arrival and encrypts
//! for the other leg with that leg's own key ([`crate::srtp`]); [`Forward::rewritten`] says to send the rewritten
//! bytes. Commands from the signalling side come in through [`Table::apply`], which says which sockets to open and
//! close.
//!
//! Kernel fast path: RTP endpoints go to the kernel once confirmed; RTCP endpoints never do (RTCP is about one
//! packet in a hundred, and the kernel could not rewrite it), and a kernelized RTP endpoint whose RTCP is rewritten
//! has the kernel pass RTCP multiplexed on it (RFC 5761) up to user space ([`KernelChange::Install::pass_rtcp`]).
//! A flow with SRTP on either leg (or waiting for its keys) never goes to the kernel: only plain-to-plain flows
//! do.

use crate::control::{Command, EndpointSpec, Event, Leg, LegStats, SessionId, SessionStats};
use crate::rtcp::{self, Outcome};
use crate::srtp::{EndpointCrypto, Failure};
use crate::stats::FlowStats;
use crate::webrtc::dtls::DtlsCertificate;
use crate::webrtc::leg::WebrtcLeg;

#[path = "flow_webrtc.rs"]
mod webrtc_legs;
use crate::addr_map::AddrMap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Why a packet was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Drop {
    /// No endpoint on this socket (a packet racing the session's removal).
    UnknownSocket,
    /// From a source other than the latched peer, in strict mode.
    ForeignSource,
    /// The other leg's peer is not known yet, or is on hold.
    NoTarget,
    /// RTCP whose SDES had to be rewritten but could not be parsed ([`crate::rtcp::RtcpError`]): dropped rather
    /// than let text through that could not be read.
    MalformedRtcp,
    /// SRTP or SRTCP that failed authentication or replay checks on an SRTP leg, or that could not be protected
    /// for the other leg ([`crate::srtp::Failure`]).
    Srtp(Failure),
    /// Not media: a STUN or DTLS datagram of a WebRTC leg, consumed by the table (its replies wait in
    /// [`Table::poll_transmit`]).
    Control,
    /// Refused on a WebRTC leg ([`crate::webrtc::leg::Handled::Refused`]), with its label.
    Webrtc(&'static str),
}

impl Drop {
    /// A metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::UnknownSocket => "unknown_socket",
            Self::ForeignSource => "foreign_source",
            Self::NoTarget => "no_target",
            Self::MalformedRtcp => "malformed_rtcp",
            Self::Srtp(f) => f.label(),
            Self::Control => "webrtc_control",
            Self::Webrtc(label) => label,
        }
    }
}

/// Where to send a packet that arrived: out of socket `from`, to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    /// The relay socket to send from (the partner endpoint).
    pub from: SocketAddr,
    /// The peer on the other leg.
    pub to: SocketAddr,
    /// Send what [`Table::on_packet`] wrote into its `out` buffer (RTCP with its SDES rewritten, SRTP decrypted
    /// or encrypted), not the datagram as it came.
    pub rewritten: bool,
}

/// What the table did to packets' contents since it was made, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// RTCP compound packets forwarded with their SDES rewritten.
    pub rtcp_rewritten: u64,
    /// SRTP and SRTCP packets from an SRTP leg, authenticated and decrypted.
    pub srtp_unprotected: u64,
    /// Packets encrypted for an SRTP leg.
    pub srtp_protected: u64,
}

/// What the kernel fast path should hold for one endpoint (DESIGN.md "Media fast path"): user space holds the
/// truth, the kernel only accelerates. An endpoint is handed to the kernel once its peer is confirmed by a real
/// packet (latched) and the other leg's peer is known; every change of either takes it back first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelChange {
    /// Forward packets arriving at `local` from `expect` out of `from` to `to`, in the kernel.
    Install {
        /// The relay socket the packets arrive at.
        local: SocketAddr,
        /// The only source forwarded (the latched peer); anything else goes up to user space.
        expect: SocketAddr,
        /// The relay socket on the other leg (the new source).
        from: SocketAddr,
        /// The other leg's peer (the new destination).
        to: SocketAddr,
        /// Pass RTCP arriving here (RFC 5761 §4: version 2, second byte 192..=223) up to user space, which
        /// rewrites its SDES before forwarding it; only RTP goes on in the kernel.
        pass_rtcp: bool,
    },
    /// Stop forwarding `local` in the kernel, and why (`peer_changed`, `target_changed`, `teardown`, ...).
    Remove {
        /// The relay socket.
        local: SocketAddr,
        /// Why, for logs and metrics.
        reason: &'static str,
    },
}

/// What [`Table::apply`] asks of the daemon's sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketChange {
    /// Bind a UDP socket on this address.
    Open(SocketAddr),
    /// Close the socket on this address.
    Close(SocketAddr),
}

#[derive(Debug)]
struct Endpoint {
    spec: EndpointSpec,
    /// The peer as its packets showed it; `None` until the first packet (or after its SDP changed).
    latched: Option<SocketAddr>,
    stats: FlowStats,
    sent: u64,
    dropped_foreign: u64,
    dropped_no_target: u64,
    /// Packets dropped by SRTP: failed authentication or replay here, or not protected for the other leg.
    dropped_srtp: u64,
    /// The SRTP contexts when this endpoint's leg is SRTP ([`EndpointSpec::srtp`]): boxed, as most legs are
    /// plain RTP and the contexts would double every endpoint's size.
    crypto: Option<Box<EndpointCrypto>>,
    /// ICE-lite and DTLS when the endpoint faces a browser ([`Command::Webrtc`]).
    webrtc: Option<Box<WebrtcLeg>>,
    /// The kernel fast path's part, from the first time this endpoint's flow was handed to it.
    kernel: Option<Box<KernelFlow>>,
}

/// What the kernel fast path does and did for one endpoint. Boxed into [`Endpoint::kernel`] at the first install:
/// the endpoints of a relay without XDP (and those of SRTP legs and RTCP sockets) never have one, and inline it was
/// a quarter of every endpoint (112 of 464 bytes; four endpoints per call).
#[derive(Debug, Default)]
struct KernelFlow {
    /// What the kernel forwards for this endpoint now: (expect, to); `None` while no entry is installed.
    at: Option<(SocketAddr, SocketAddr)>,
    /// Packets and bytes the kernel forwarded for this endpoint: of entries already removed, plus the current
    /// entry's totals as last read; and its last packet.
    done: (u64, u64),
    packets: u64,
    bytes: u64,
    last: Option<Instant>,
}

impl Endpoint {
    /// What the kernel forwards for this endpoint now, if anything.
    fn kernel_at(&self) -> Option<(SocketAddr, SocketAddr)> {
        self.kernel.as_ref().and_then(|k| k.at)
    }

    /// Where packets leaving through this socket go: the latched peer, else what its SDP said.
    fn target(&self) -> Option<SocketAddr> {
        self.latched.or(self.spec.peer)
    }
}

#[derive(Debug)]
struct Session {
    locals: Vec<SocketAddr>,
    /// When the session was created or last saw a packet, as of the last idle check.
    active: Instant,
    idle_reported: bool,
}

/// Every relay endpoint, by its socket address.
#[derive(Debug)]
pub struct Table {
    /// Boxed: a map keeps room for up to twice its entries, and an endpoint is a few hundred bytes (four per
    /// call), so the room costs a pointer rather than a whole endpoint.
    endpoints: AddrMap<Box<Endpoint>>,
    sessions: HashMap<SessionId, Session>,
    rtp_timeout: Duration,
    /// Whether a kernel fast path exists to hand confirmed flows to.
    kernel: bool,
    kernel_changes: Vec<KernelChange>,
    /// Events of the data plane (latches) for the signalling side; drained with [`Table::poll_event`].
    events: std::collections::VecDeque<Event>,
    totals: Totals,
    /// The relay's DTLS certificate, for WebRTC legs ([`Table::set_dtls_certificate`]).
    certificate: Option<DtlsCertificate>,
    /// Endpoints with a WebRTC leg (for the timers); pruned as they go.
    webrtc_locals: Vec<SocketAddr>,
    /// Datagrams the table itself sends (STUN answers, DTLS flights), drained with [`Table::poll_transmit`].
    transmits: std::collections::VecDeque<Transmit>,
}

/// A datagram the table sends of its own accord (not a forwarded packet): out of socket `from`, to `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The relay socket to send from.
    pub from: SocketAddr,
    /// The destination.
    pub to: SocketAddr,
    /// The datagram.
    pub bytes: Vec<u8>,
}

impl Table {
    /// An empty table; a session with no packet on any of its sockets for `rtp_timeout` is reported idle.
    pub fn new(rtp_timeout: Duration) -> Self {
        Self {
            endpoints: AddrMap::new(),
            sessions: HashMap::new(),
            rtp_timeout,
            kernel: false,
            kernel_changes: Vec::new(),
            events: std::collections::VecDeque::new(),
            totals: Totals::default(),
            certificate: None,
            webrtc_locals: Vec::new(),
            transmits: std::collections::VecDeque::new(),
        }
    }

    /// What the table did to packets' contents so far.
    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// The next event for the signalling side (a peer latched), after [`Table::on_packet`].
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Hands confirmed flows to a kernel fast path from now on; drain [`Table::poll_kernel`] after every call.
    pub fn enable_kernel(&mut self) {
        self.kernel = true;
        let locals: Vec<SocketAddr> = self.endpoints.keys().collect();
        for l in locals {
            self.reconsider(l, "target_changed");
        }
    }

    /// Kernel changes to carry out, in order.
    pub fn poll_kernel(&mut self) -> std::vec::Drain<'_, KernelChange> {
        self.kernel_changes.drain(..)
    }

    /// Brings the kernel's entry for `local` in line with what user space knows; `reason` names why an entry goes.
    fn reconsider(&mut self, local: SocketAddr, reason: &'static str) {
        if !self.kernel {
            return;
        }
        let Some(e) = self.endpoints.get(&local) else { return };
        let partner = e.spec.partner;
        // SRTP on either leg: the payload changes (decrypted, encrypted with the other leg's key), which only user
        // space does. Only plain-to-plain flows go to the kernel.
        let srtp = |s: &EndpointSpec| s.srtp.is_some() || s.srtp_pending;
        let srtp = srtp(&e.spec) || self.endpoints.get(&partner).is_some_and(|p| srtp(&p.spec));
        let reason = if srtp { "srtp" } else { reason };
        let want = match (e.latched, self.endpoints.get(&partner).and_then(|p| p.target())) {
            _ if srtp => None,
            // RTCP stays in user space: its SDES is rewritten there (and it is ~1% of the packets).
            _ if e.spec.rtcp => None,
            (Some(expect), Some(to)) if expect.is_ipv4() == local.is_ipv4() && to.is_ipv4() == partner.is_ipv4() => {
                Some((expect, to))
            }
            _ => None,
        };
        let Some(e) = self.endpoints.get_mut(&local) else { return };
        if e.kernel_at() == want {
            return;
        }
        if e.kernel_at().is_some() {
            self.kernel_changes.push(KernelChange::Remove { local, reason });
        }
        match (e.kernel.as_mut(), want) {
            (Some(k), _) => k.at = want,
            (None, Some(_)) => e.kernel = Some(Box::new(KernelFlow { at: want, ..KernelFlow::default() })),
            (None, None) => {}
        }
        if let Some((expect, to)) = want {
            let pass_rtcp = e.spec.cname_key.is_some();
            self.kernel_changes.push(KernelChange::Install { local, expect, from: partner, to, pass_rtcp });
        }
    }

    /// The kernel's totals for `local` as just read (packets and bytes it forwarded, its last packet).
    pub fn kernel_counters(&mut self, local: SocketAddr, packets: u64, bytes: u64, last: Option<Instant>) {
        let Some(e) = self.endpoints.get_mut(&local) else { return };
        let k = e.kernel.get_or_insert_with(Box::default);
        let delta = packets.saturating_sub(k.packets);
        k.packets = packets;
        k.bytes = bytes;
        if last.is_some() {
            k.last = k.last.max(last);
        }
        let partner = e.spec.partner;
        if let Some(p) = self.endpoints.get_mut(&partner) {
            p.sent += delta;
        }
    }

    /// The kernel entry of `local` was removed with these final totals: they join what the endpoint's earlier
    /// entries forwarded, and the next entry counts from zero.
    pub fn kernel_removed(&mut self, local: SocketAddr, packets: u64, bytes: u64, last: Option<Instant>) {
        self.kernel_counters(local, packets, bytes, last);
        if let Some(k) = self.endpoints.get_mut(&local).and_then(|e| e.kernel.as_mut()) {
            k.done.0 += k.packets;
            k.done.1 += k.bytes;
            k.packets = 0;
            k.bytes = 0;
        }
    }

    /// The sockets of `session`.
    pub fn locals_of(&self, session: SessionId) -> Vec<SocketAddr> {
        self.sessions.get(&session).map(|s| s.locals.clone()).unwrap_or_default()
    }

    /// Endpoints the kernel forwards now.
    pub fn kernelized(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.endpoints.iter().filter(|(_, e)| e.kernel_at().is_some()).map(|(l, _)| l)
    }

    /// Applies a command. Socket changes go into `sockets`; events (final stats, pongs) into `events`.
    pub fn apply(&mut self, now: Instant, cmd: Command, sockets: &mut Vec<SocketChange>, events: &mut Vec<Event>) {
        match cmd {
            Command::Upsert(spec) => self.upsert(now, spec, sockets),
            Command::Webrtc(spec) => self.attach_webrtc(now, *spec, events),
            Command::WebrtcResume { spec, resume } => self.resume_webrtc(now, *spec, resume),
            Command::Remove { session } => {
                let Some(s) = self.sessions.get(&session) else { return };
                events.push(Event::Stats(self.session_stats(session)));
                for local in &s.locals {
                    if let Some(e) = self.endpoints.remove(local) {
                        if e.kernel_at().is_some() {
                            self.kernel_changes.push(KernelChange::Remove { local: *local, reason: "teardown" });
                        }
                    }
                    sockets.push(SocketChange::Close(*local));
                }
                self.sessions.remove(&session);
            }
            Command::Query { session } => events.push(Event::Figures(self.session_stats(session))),
            Command::Ping { seq } => events.push(Event::Pong { seq }),
            // The kernel's business (the daemon's XDP map writer), not the table's.
            Command::Ban { .. } | Command::Unban { .. } => {}
        }
    }

    fn upsert(&mut self, now: Instant, spec: EndpointSpec, sockets: &mut Vec<SocketChange>) {
        let session = self.sessions.entry(spec.session).or_insert_with(|| Session {
            locals: Vec::new(),
            active: now,
            idle_reported: false,
        });
        let (local, partner) = (spec.local, spec.partner);
        match self.endpoints.get_mut(&spec.local) {
            Some(e) => {
                // A new address from the peer's SDP (re-INVITE): what was latched belonged to the old one.
                let changed = e.spec.peer != spec.peer;
                // A new address drops the latch (unless a latch for it comes along); a latch from elsewhere (a
                // takeover) fills an empty one.
                if changed || e.latched.is_none() {
                    e.latched = spec.latched;
                }
                // New keys (a re-INVITE) get new contexts; the same keys keep theirs, with their rollover counters.
                match (e.crypto.as_mut(), spec.srtp.as_deref()) {
                    // A WebRTC leg's keys come from its DTLS handshake, not from the signalling side.
                    _ if e.webrtc.is_some() => {}
                    (Some(c), Some(keys)) => c.update(now, keys),
                    (_, keys) => e.crypto = keys.map(|k| Box::new(EndpointCrypto::new(k))),
                }
                let webrtc = e.webrtc.is_some();
                e.spec = spec;
                e.spec.srtp_pending |= webrtc;
                e.spec.strict |= webrtc;
                let reason = if changed { "peer_changed" } else { "reconfigured" };
                self.reconsider(local, reason);
                self.reconsider(partner, reason);
            }
            None => {
                session.locals.push(spec.local);
                sockets.push(SocketChange::Open(spec.local));
                let latched = spec.latched;
                let crypto = spec.srtp.as_deref().map(|k| Box::new(EndpointCrypto::new(k)));
                self.endpoints.insert(
                    spec.local,
                    Box::new(Endpoint {
                        spec,
                        latched,
                        stats: FlowStats::default(),
                        sent: 0,
                        dropped_foreign: 0,
                        dropped_no_target: 0,
                        dropped_srtp: 0,
                        crypto,
                        webrtc: None,
                        kernel: None,
                    }),
                );
                self.reconsider(local, "reconfigured");
                self.reconsider(partner, "target_changed");
            }
        }
    }

    /// One datagram arrived on socket `local` from `src`: where to send it, or why not. When the payload changes
    /// (RTCP whose SDES is hidden, [`EndpointSpec::cname_key`]; SRTP decrypted on arrival from an SRTP leg or
    /// encrypted for the other leg, [`EndpointSpec::srtp`]), the datagram to send is written into `out` (cleared
    /// first) and [`Forward::rewritten`] is set; otherwise `out` is left alone.
    pub fn on_packet(
        &mut self,
        now: Instant,
        local: SocketAddr,
        src: SocketAddr,
        bytes: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Forward, Drop> {
        let Some(mut e) = self.endpoints.get_mut(&local) else { return Err(Drop::UnknownSocket) };
        if e.webrtc.is_some() {
            // STUN and DTLS stop here (ICE answers checks from any candidate pair, before the strict check).
            if let Some(done) = self.on_webrtc(now, local, src, bytes) {
                return done;
            }
            e = self.endpoints.get_mut(&local).ok_or(Drop::UnknownSocket)?;
        }
        let known = e.latched == Some(src);
        if !known && e.latched.is_some() && e.spec.strict {
            e.dropped_foreign += 1;
            return Err(Drop::ForeignSource);
        }
        let is_rtcp = rtcp::is_rtcp(bytes);
        // An SRTP leg's packets are authenticated first: a forged one neither latches nor counts.
        let clear = match e.crypto.as_mut().map(|c| c.unprotect(now, bytes, is_rtcp)) {
            // Keys not agreed yet on a leg that is to be SRTP: nothing can be authenticated.
            None if e.spec.srtp_pending => {
                e.dropped_srtp += 1;
                return Err(Drop::Srtp(Failure::NoKeys));
            }
            None => None,
            Some(Ok(clear)) => Some(clear),
            Some(Err(f)) => {
                e.dropped_srtp += 1;
                return Err(Drop::Srtp(f));
            }
        };
        if let Some(c) = e.crypto.as_mut() {
            webrtc_legs::rollovers(&mut self.events, e.spec.session, local, e.webrtc.is_some(), c);
        }
        if !known {
            // The first packet confirms the SDP's address or corrects it (symmetric RTP through NAT); without
            // strictness the latch follows the peer.
            e.latched = Some(src);
            self.events.push_back(Event::Latched { session: e.spec.session, local, peer: src });
            let partner = e.spec.partner;
            // Confirmed: this flow may go to the kernel, and the partner's (which sends here) must follow.
            self.reconsider(local, "peer_changed");
            self.reconsider(partner, "target_changed");
        }
        let Some(e) = self.endpoints.get_mut(&local) else { return Err(Drop::UnknownSocket) };
        if clear.is_some() {
            self.totals.srtp_unprotected += 1;
        }
        let plain: &[u8] = clear.as_deref().unwrap_or(bytes);
        let rates = &e.spec.clock_rates;
        e.stats.on_packet(now, plain, |pt| rates.iter().find(|(p, _)| *p == pt).map_or(8000, |(_, r)| *r));
        let (partner, leg, key) = (e.spec.partner, e.spec.leg, e.spec.cname_key);
        let Some(to) = self.endpoints.get(&partner).and_then(|p| p.target()) else {
            if let Some(e) = self.endpoints.get_mut(&local) {
                e.dropped_no_target += 1;
            }
            return Err(Drop::NoTarget);
        };
        let mut hidden = false;
        if let Some(key) = key.filter(|_| is_rtcp) {
            match rtcp::hide_sdes(plain, |cname| key.token(leg, cname), out) {
                Ok(Outcome::Unchanged) => {}
                Ok(Outcome::Rewritten { .. }) => hidden = true,
                Err(_) => return Err(Drop::MalformedRtcp),
            }
        }
        let Some(p) = self.endpoints.get_mut(&partner) else { return Err(Drop::NoTarget) };
        let protected = match p.crypto.as_mut() {
            Some(c) => Some(c.protect(if hidden { &out[..] } else { plain }, is_rtcp)),
            // The other leg is to be SRTP and has no keys yet: nothing leaves there in the clear.
            None if p.spec.srtp_pending => Some(Err(Failure::NoKeys)),
            None => None,
        };
        if let Some(c) = p.crypto.as_mut() {
            webrtc_legs::rollovers(&mut self.events, p.spec.session, partner, p.webrtc.is_some(), c);
        }
        let rewritten = match protected {
            Some(Ok(protected)) => {
                out.clear();
                out.extend_from_slice(&protected);
                self.totals.srtp_protected += 1;
                true
            }
            Some(Err(f)) => {
                // Counted with the leg the packet came from, like every other drop of it.
                if let Some(e) = self.endpoints.get_mut(&local) {
                    e.dropped_srtp += 1;
                }
                return Err(Drop::Srtp(f));
            }
            None if clear.is_some() && !hidden => {
                out.clear();
                out.extend_from_slice(plain);
                true
            }
            None => hidden,
        };
        if hidden {
            self.totals.rtcp_rewritten += 1;
        }
        if let Some(p) = self.endpoints.get_mut(&partner) {
            p.sent += 1;
        }
        Ok(Forward { from: partner, to, rewritten })
    }

    /// A socket of `session` could not be opened: forget the endpoint and tell the signalling side.
    pub fn bind_failed(&mut self, local: SocketAddr, error: String) -> Option<Event> {
        let e = self.endpoints.remove(&local)?;
        if e.kernel_at().is_some() {
            self.kernel_changes.push(KernelChange::Remove { local, reason: "bind_failed" });
        }
        if let Some(s) = self.sessions.get_mut(&e.spec.session) {
            s.locals.retain(|l| *l != local);
        }
        Some(Event::BindFailed { session: e.spec.session, local, error })
    }

    /// Sessions idle for `rtp_timeout` as of `now`, each reported once. Call it every second or so.
    pub fn poll_idle(&mut self, now: Instant, events: &mut Vec<Event>) {
        for (id, s) in &mut self.sessions {
            let last = s
                .locals
                .iter()
                .filter_map(|l| self.endpoints.get(l))
                .filter_map(|e| e.stats.last_packet().max(e.kernel.as_ref().and_then(|k| k.last)))
                .max();
            if let Some(last) = last {
                s.active = s.active.max(last);
            }
            if !s.idle_reported && now.saturating_duration_since(s.active) >= self.rtp_timeout {
                s.idle_reported = true;
                events.push(Event::Idle { session: *id });
            }
        }
    }

    /// The figures of `session` so far.
    pub fn session_stats(&self, session: SessionId) -> SessionStats {
        let mut legs = [LegStats::default(); 2];
        if let Some(s) = self.sessions.get(&session) {
            for e in s.locals.iter().filter_map(|l| self.endpoints.get(l)) {
                let leg = &mut legs[e.spec.leg.index()];
                leg.received.merge(&e.stats.summary());
                // Every packet once, whichever path carried it: the kernel's on top of what user space saw.
                let (kp, kb) = e.kernel.as_ref().map_or((0, 0), |k| (k.done.0 + k.packets, k.done.1 + k.bytes));
                leg.received.packets += kp;
                leg.received.bytes += kb;
                leg.kernel_packets += kp;
                leg.sent += e.sent;
                leg.dropped_foreign += e.dropped_foreign;
                leg.dropped_no_target += e.dropped_no_target;
                leg.dropped_srtp += e.dropped_srtp;
                if !e.spec.rtcp && e.spec.stream == 0 {
                    leg.latched = e.latched;
                }
            }
        }
        SessionStats { session, legs }
    }

    /// How many sessions and endpoints the table holds.
    pub fn counts(&self) -> (usize, usize) {
        (self.sessions.len(), self.endpoints.len())
    }

    /// The sessions in the table.
    pub fn sessions(&self) -> impl Iterator<Item = SessionId> + '_ {
        self.sessions.keys().copied()
    }

    /// The leg an endpoint faces, if it exists.
    pub fn leg_of(&self, local: SocketAddr) -> Option<Leg> {
        self.endpoints.get(&local).map(|e| e.spec.leg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn spec(leg: Leg, local: &str, partner: &str, peer: Option<&str>, strict: bool) -> EndpointSpec {
        EndpointSpec {
            session: SessionId(1),
            leg,
            stream: 0,
            rtcp: false,
            local: sa(local),
            partner: sa(partner),
            peer: peer.map(sa),
            latched: None,
            strict,
            clock_rates: vec![(0, 8000)],
            cname_key: None,
            srtp: None,
            srtp_pending: false,
        }
    }

    fn rtp(seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p.extend_from_slice(&[0xd5; 160]);
        p
    }

    const A_SOCK: &str = "198.18.1.1:30000";
    const B_SOCK: &str = "198.18.2.1:30000";

    fn call(strict: bool) -> (Table, Instant) {
        let now = Instant::now();
        let mut t = Table::new(Duration::from_secs(10));
        let (mut socks, mut ev) = (Vec::new(), Vec::new());
        t.apply(
            now,
            Command::Upsert(spec(Leg::A, A_SOCK, B_SOCK, Some("198.18.1.10:6000"), strict)),
            &mut socks,
            &mut ev,
        );
        t.apply(
            now,
            Command::Upsert(spec(Leg::B, B_SOCK, A_SOCK, Some("198.18.2.10:6000"), strict)),
            &mut socks,
            &mut ev,
        );
        assert_eq!(socks, vec![SocketChange::Open(sa(A_SOCK)), SocketChange::Open(sa(B_SOCK))]);
        (t, now)
    }

    #[test]
    fn packets_cross_to_the_other_legs_peer_from_the_partner_socket() {
        let (mut t, now) = call(true);
        let f = t.on_packet(now, sa(A_SOCK), sa("198.18.1.10:6000"), &rtp(1), &mut Vec::new()).unwrap();
        assert_eq!(f, Forward { from: sa(B_SOCK), to: sa("198.18.2.10:6000"), rewritten: false });
        let back = t.on_packet(now, sa(B_SOCK), sa("198.18.2.10:6000"), &rtp(9), &mut Vec::new()).unwrap();
        assert_eq!(back, Forward { from: sa(A_SOCK), to: sa("198.18.1.10:6000"), rewritten: false });
        let st = t.session_stats(SessionId(1));
        assert_eq!((st.legs[0].received.packets, st.legs[0].sent), (1, 1));
        assert_eq!((st.legs[1].received.packets, st.legs[1].sent), (1, 1));
    }

    #[test]
    fn nat_peer_is_latched_to_where_its_packets_come_from() {
        let (mut t, now) = call(true);
        // A's SDP said :6000, its packets come from the NAT's :41234; B's media must go back there.
        t.on_packet(now, sa(A_SOCK), sa("198.18.1.10:41234"), &rtp(1), &mut Vec::new()).unwrap();
        let back = t.on_packet(now, sa(B_SOCK), sa("198.18.2.10:6000"), &rtp(1), &mut Vec::new()).unwrap();
        assert_eq!(back.to, sa("198.18.1.10:41234"));
        assert_eq!(t.session_stats(SessionId(1)).legs[0].latched, Some(sa("198.18.1.10:41234")));
    }

    #[test]
    fn strict_mode_drops_a_third_host_after_latching() {
        let (mut t, now) = call(true);
        t.on_packet(now, sa(A_SOCK), sa("198.18.1.10:6000"), &rtp(1), &mut Vec::new()).unwrap();
        for i in 0..5 {
            assert_eq!(
                t.on_packet(now, sa(A_SOCK), sa("198.18.1.66:6000"), &rtp(i), &mut Vec::new()),
                Err(Drop::ForeignSource)
            );
        }
        assert_eq!(t.session_stats(SessionId(1)).legs[0].dropped_foreign, 5);
        assert_eq!(t.session_stats(SessionId(1)).legs[1].sent, 1);
    }

    #[test]
    fn without_strictness_the_latch_follows_the_peer() {
        let (mut t, now) = call(false);
        t.on_packet(now, sa(A_SOCK), sa("198.18.1.10:6000"), &rtp(1), &mut Vec::new()).unwrap();
        t.on_packet(now, sa(A_SOCK), sa("198.18.1.10:7000"), &rtp(2), &mut Vec::new()).unwrap();
        assert_eq!(t.session_stats(SessionId(1)).legs[0].latched, Some(sa("198.18.1.10:7000")));
    }

    #[test]
    fn a_new_peer_address_by_reinvite_drops_the_latch() {
        let (mut t, now) = call(true);
        t.on_packet(now, sa(A_SOCK), sa("198.18.1.10:6000"), &rtp(1), &mut Vec::new()).unwrap();
        let (mut socks, mut ev) = (Vec::new(), Vec::new());
        t.apply(
            now,
            Command::Upsert(spec(Leg::A, A_SOCK, B_SOCK, Some("198.18.1.10:7000"), true)),
            &mut socks,
            &mut ev,
        );
        assert!(socks.is_empty(), "an existing socket is reconfigured, not reopened");
        t.on_packet(now, sa(A_SOCK), sa("198.18.1.10:7000"), &rtp(2), &mut Vec::new()).unwrap();
        let back = t.on_packet(now, sa(B_SOCK), sa("198.18.2.10:6000"), &rtp(1), &mut Vec::new()).unwrap();
        assert_eq!(back.to, sa("198.18.1.10:7000"));
    }

    #[test]
    fn unknown_other_peer_means_no_target() {
        let now = Instant::now();
        let mut t = Table::new(Duration::from_secs(10));
        let (mut socks, mut ev) = (Vec::new(), Vec::new());
        t.apply(
            now,
            Command::Upsert(spec(Leg::A, A_SOCK, B_SOCK, Some("198.18.1.10:6000"), true)),
            &mut socks,
            &mut ev,
        );
        t.apply(now, Command::Upsert(spec(Leg::B, B_SOCK, A_SOCK, None, true)), &mut socks, &mut ev);
        assert_eq!(t.on_packet(now, sa(A_SOCK), sa("198.18.1.10:6000"), &rtp(1), &mut Vec::new()), Err(Drop::NoTarget));
        assert_eq!(
            t.on_packet(now, sa("198.18.9.9:1"), sa("198.18.1.10:6000"), &rtp(1), &mut Vec::new()),
            Err(Drop::UnknownSocket)
        );
        assert_eq!(t.session_stats(SessionId(1)).legs[0].dropped_no_target, 1);
    }

    #[test]
    fn idle_session_is_reported_once_after_the_timeout() {
        let (mut t, now) = call(true);
        let mut ev = Vec::new();
        t.on_packet(now + Duration::from_secs(5), sa(A_SOCK), sa("198.18.1.10:6000"), &rtp(1), &mut Vec::new())
            .unwrap();
        t.poll_idle(now + Duration::from_secs(14), &mut ev);
        assert!(ev.is_empty(), "a packet at 5 s keeps it alive until 15 s");
        t.poll_idle(now + Duration::from_secs(15), &mut ev);
        t.poll_idle(now + Duration::from_secs(16), &mut ev);
        assert_eq!(ev, vec![Event::Idle { session: SessionId(1) }]);
    }

    #[test]
    fn removal_closes_every_socket_and_reports_final_stats() {
        let (mut t, now) = call(true);
        t.on_packet(now, sa(A_SOCK), sa("198.18.1.10:6000"), &rtp(1), &mut Vec::new()).unwrap();
        let (mut socks, mut ev) = (Vec::new(), Vec::new());
        t.apply(now, Command::Remove { session: SessionId(1) }, &mut socks, &mut ev);
        assert_eq!(socks.len(), 2);
        assert!(matches!(&ev[..], [Event::Stats(s)] if s.legs[0].received.packets == 1));
        assert_eq!(t.counts(), (0, 0));
    }

    #[test]
    fn query_reports_figures_so_far_and_leaves_the_session_open() {
        let (mut t, now) = call(true);
        t.on_packet(now, sa(A_SOCK), sa("198.18.1.10:6000"), &rtp(1), &mut Vec::new()).unwrap();
        let (mut socks, mut ev) = (Vec::new(), Vec::new());
        t.apply(now, Command::Query { session: SessionId(1) }, &mut socks, &mut ev);
        assert!(socks.is_empty(), "no socket opened or closed");
        assert!(matches!(&ev[..], [Event::Figures(s)] if s.legs[0].received.packets == 1), "{ev:?}");
        assert_eq!(t.counts().0, 1, "the session stays");
    }

    #[test]
    fn latched_peers_from_a_takeover_go_to_the_kernel_before_any_packet() {
        let now = Instant::now();
        let mut t = Table::new(Duration::from_secs(10));
        t.enable_kernel();
        let (mut socks, mut ev) = (Vec::new(), Vec::new());
        let nat = sa("198.18.1.10:41234");
        let mut a = spec(Leg::A, A_SOCK, B_SOCK, Some("198.18.1.10:6000"), true);
        a.latched = Some(nat);
        let mut b = spec(Leg::B, B_SOCK, A_SOCK, Some("198.18.2.10:6000"), true);
        b.latched = Some(sa("198.18.2.10:6000"));
        t.apply(now, Command::Upsert(a), &mut socks, &mut ev);
        t.apply(now, Command::Upsert(b), &mut socks, &mut ev);
        let changes: Vec<_> = t.poll_kernel().collect();
        assert!(changes.contains(&KernelChange::Install {
            local: sa(A_SOCK),
            expect: nat,
            from: sa(B_SOCK),
            to: sa("198.18.2.10:6000"),
            pass_rtcp: false,
        }));
        assert!(changes.contains(&KernelChange::Install {
            local: sa(B_SOCK),
            expect: sa("198.18.2.10:6000"),
            from: sa(A_SOCK),
            to: nat,
            pass_rtcp: false,
        }));
        assert_eq!(t.poll_event(), None, "no latch event: nothing arrived here yet");
        // Strict: a packet from elsewhere is still foreign.
        assert_eq!(
            t.on_packet(now, sa(A_SOCK), sa("198.18.1.66:1"), &rtp(1), &mut Vec::new()),
            Err(Drop::ForeignSource)
        );
    }

    #[test]
    fn a_first_packet_latches_and_says_so() {
        let (mut t, now) = call(true);
        t.on_packet(now, sa(A_SOCK), sa("198.18.1.10:41234"), &rtp(1), &mut Vec::new()).unwrap();
        assert_eq!(
            t.poll_event(),
            Some(Event::Latched { session: SessionId(1), local: sa(A_SOCK), peer: sa("198.18.1.10:41234") })
        );
        t.on_packet(now, sa(A_SOCK), sa("198.18.1.10:41234"), &rtp(2), &mut Vec::new()).unwrap();
        assert_eq!(t.poll_event(), None, "once");
    }

    #[test]
    fn confirmed_flows_go_to_the_kernel_and_come_back_with_a_reason() {
        let (mut t, now) = call(true);
        t.enable_kernel();
        assert_eq!(t.poll_kernel().count(), 0, "nothing is confirmed before a packet");
        t.on_packet(now, sa(A_SOCK), sa("198.18.1.10:6000"), &rtp(1), &mut Vec::new()).unwrap();
        let a_in = KernelChange::Install {
            local: sa(A_SOCK),
            expect: sa("198.18.1.10:6000"),
            from: sa(B_SOCK),
            to: sa("198.18.2.10:6000"),
            pass_rtcp: false,
        };
        assert_eq!(t.poll_kernel().collect::<Vec<_>>(), vec![a_in]);
        // B latches behind a NAT: its own flow goes in, and A's flow now sends to where B really is.
        t.on_packet(now, sa(B_SOCK), sa("198.18.2.10:40000"), &rtp(1), &mut Vec::new()).unwrap();
        let changes: Vec<_> = t.poll_kernel().collect();
        assert!(changes.contains(&KernelChange::Remove { local: sa(A_SOCK), reason: "target_changed" }), "{changes:?}");
        assert!(changes.contains(&KernelChange::Install {
            local: sa(A_SOCK),
            expect: sa("198.18.1.10:6000"),
            from: sa(B_SOCK),
            to: sa("198.18.2.10:40000"),
            pass_rtcp: false,
        }));
        assert_eq!(t.kernelized().count(), 2);
        // A re-INVITE moves A: its flow leaves the kernel until a packet confirms the new address.
        let (mut socks, mut ev) = (Vec::new(), Vec::new());
        t.apply(
            now,
            Command::Upsert(spec(Leg::A, A_SOCK, B_SOCK, Some("198.18.1.10:7000"), true)),
            &mut socks,
            &mut ev,
        );
        let changes: Vec<_> = t.poll_kernel().collect();
        assert!(changes.contains(&KernelChange::Remove { local: sa(A_SOCK), reason: "peer_changed" }), "{changes:?}");
        // The kernel's packets count once, in the leg's figures, and keep the session alive.
        t.kernel_counters(sa(B_SOCK), 500, 86_000, Some(now + Duration::from_secs(9)));
        let st = t.session_stats(SessionId(1));
        assert_eq!((st.legs[1].received.packets, st.legs[1].kernel_packets), (501, 500));
        assert_eq!(st.legs[0].sent, 501, "what the kernel forwarded from B went out towards A");
        let mut idle = Vec::new();
        t.poll_idle(now + Duration::from_secs(18), &mut idle);
        assert!(idle.is_empty(), "the kernel's last packet at 9 s keeps the call alive until 19 s");
        t.apply(now, Command::Remove { session: SessionId(1) }, &mut socks, &mut ev);
        let changes: Vec<_> = t.poll_kernel().collect();
        assert!(changes.iter().all(|c| matches!(c, KernelChange::Remove { reason: "teardown", .. })), "{changes:?}");
        assert_eq!(changes.len(), 1, "only B was still in the kernel: {changes:?}");
    }

    const KEY: crate::cname::CnameKey = crate::cname::CnameKey([3; 16]);

    /// A call's RTCP endpoints (`rtcp`) or RTP endpoints, hiding RTCP with `key`, both peers known.
    fn hiding_call(rtcp: bool, key: Option<crate::cname::CnameKey>) -> (Table, Instant) {
        let now = Instant::now();
        let mut t = Table::new(Duration::from_secs(10));
        let (mut socks, mut ev) = (Vec::new(), Vec::new());
        for (leg, local, partner, peer) in
            [(Leg::A, A_SOCK, B_SOCK, "198.18.1.10:6001"), (Leg::B, B_SOCK, A_SOCK, "198.18.2.10:6001")]
        {
            let s = EndpointSpec { rtcp, cname_key: key, ..spec(leg, local, partner, Some(peer), true) };
            t.apply(now, Command::Upsert(s), &mut socks, &mut ev);
        }
        (t, now)
    }

    /// RR + SDES(CNAME, TOOL) as baresip sends it, from `cname`.
    fn rr_sdes(cname: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 201, 0, 1, 0x85, 0x90, 0x39, 0xff];
        let mut chunk = vec![0x85, 0x90, 0x39, 0xff, 1, cname.len() as u8];
        chunk.extend_from_slice(cname);
        chunk.extend_from_slice(&[6, 7]);
        chunk.extend_from_slice(b"baresip");
        chunk.push(0);
        while !chunk.len().is_multiple_of(4) {
            chunk.push(0);
        }
        p.extend_from_slice(&[0x81, 202]);
        p.extend_from_slice(&((chunk.len() / 4) as u16).to_be_bytes());
        p.extend_from_slice(&chunk);
        p
    }

    const ALICE: &[u8] = b"sip:alice@198.18.1.10";

    #[test]
    fn rtcp_sdes_of_a_plain_rtp_stream_crosses_with_the_token_instead_of_the_cname() {
        let (mut t, now) = hiding_call(true, Some(KEY));
        let mut out = Vec::new();
        let f = t.on_packet(now, sa(A_SOCK), sa("198.18.1.10:6001"), &rr_sdes(ALICE), &mut out).unwrap();
        assert_eq!(f, Forward { from: sa(B_SOCK), to: sa("198.18.2.10:6001"), rewritten: true });
        let token = KEY.token(Leg::A, ALICE);
        assert!(out.windows(16).any(|w| w == token.as_bytes()), "{out:02x?}");
        assert!(!out.windows(ALICE.len()).any(|w| w == ALICE));
        assert!(!out.windows(7).any(|w| w == b"baresip"), "TOOL is dropped");
        assert_eq!(&out[..8], &rr_sdes(ALICE)[..8], "the RR before the SDES is untouched");
        // The other way, B's CNAME gets B's token, from B's leg.
        let carrier = b"sip:+4930123456@198.18.2.10";
        let back = t.on_packet(now, sa(B_SOCK), sa("198.18.2.10:6001"), &rr_sdes(carrier), &mut out).unwrap();
        assert!(back.rewritten);
        assert!(out.windows(16).any(|w| w == KEY.token(Leg::B, carrier).as_bytes()));
        // RTCP without SDES, and RTP (muxed on the same socket), go as they came.
        let mut out = vec![0xee];
        let bye = [0x81, 203, 0, 1, 0x85, 0x90, 0x39, 0xff];
        let f = t.on_packet(now, sa(A_SOCK), sa("198.18.1.10:6001"), &bye, &mut out).unwrap();
        assert!(!f.rewritten);
        let f = t.on_packet(now, sa(A_SOCK), sa("198.18.1.10:6001"), &rtp(1), &mut out).unwrap();
        assert!(!f.rewritten);
        assert_eq!(out, [0xee], "out is not touched when nothing is rewritten");
        assert_eq!(t.session_stats(SessionId(1)).legs[1].sent, 3, "every packet from A went towards B");
    }

    #[test]
    fn malformed_rtcp_is_dropped_where_it_must_be_rewritten_and_forwarded_where_not() {
        let mut cut = rr_sdes(ALICE);
        cut.truncate(cut.len() - 6);
        let (mut t, now) = hiding_call(true, Some(KEY));
        assert_eq!(
            t.on_packet(now, sa(A_SOCK), sa("198.18.1.10:6001"), &cut, &mut Vec::new()),
            Err(Drop::MalformedRtcp)
        );
        assert_eq!(t.session_stats(SessionId(1)).legs[1].sent, 0);
        assert_eq!(Drop::MalformedRtcp.label(), "malformed_rtcp");
        // No key (an SRTP stream): RTCP is not looked at.
        let (mut t, now) = hiding_call(true, None);
        let f = t.on_packet(now, sa(A_SOCK), sa("198.18.1.10:6001"), &cut, &mut Vec::new()).unwrap();
        assert!(!f.rewritten);
        let f = t.on_packet(now, sa(A_SOCK), sa("198.18.1.10:6001"), &rr_sdes(ALICE), &mut Vec::new()).unwrap();
        assert!(!f.rewritten);
    }

    #[test]
    fn rtcp_endpoints_stay_in_user_space_and_rtp_ones_pass_muxed_rtcp_up() {
        let (mut t, now) = hiding_call(true, Some(KEY));
        t.enable_kernel();
        t.on_packet(now, sa(A_SOCK), sa("198.18.1.10:6001"), &rr_sdes(ALICE), &mut Vec::new()).unwrap();
        t.on_packet(now, sa(B_SOCK), sa("198.18.2.10:6001"), &rr_sdes(ALICE), &mut Vec::new()).unwrap();
        assert_eq!(t.poll_kernel().count(), 0, "both RTCP peers confirmed, nothing goes to the kernel");
        assert_eq!(t.kernelized().count(), 0);
        for (key, pass_rtcp) in [(Some(KEY), true), (None, false)] {
            let (mut t, now) = hiding_call(false, key);
            t.enable_kernel();
            t.on_packet(now, sa(A_SOCK), sa("198.18.1.10:6001"), &rtp(1), &mut Vec::new()).unwrap();
            let changes: Vec<_> = t.poll_kernel().collect();
            assert_eq!(
                changes,
                vec![KernelChange::Install {
                    local: sa(A_SOCK),
                    expect: sa("198.18.1.10:6001"),
                    from: sa(B_SOCK),
                    to: sa("198.18.2.10:6001"),
                    pass_rtcp,
                }]
            );
        }
    }

    // ---- SRTP legs ----

    use crate::sdes::{KeyMaterial, OsKeys, SrtpKeys, Suite};
    use crate::srtp::EndpointCrypto;

    /// Keys of an SRTP leg: the relay endpoint's, and its peer's view of the same two keys.
    fn leg_keys(suite: Suite) -> (SrtpKeys, EndpointCrypto) {
        let ours = KeyMaterial::generate(suite, &mut OsKeys).unwrap();
        let theirs = KeyMaterial::generate(suite, &mut OsKeys).unwrap();
        let peer = EndpointCrypto::new(&SrtpKeys { suite, ours: theirs.clone(), theirs: ours.clone() });
        (SrtpKeys { suite, ours, theirs }, peer)
    }

    /// A call with leg A on SRTP (keys `a`) and leg B on `b` (SRTP or plain); RTCP endpoints when `rtcp`.
    fn srtp_call(a: &SrtpKeys, b: Option<&SrtpKeys>, rtcp: bool) -> (Table, Instant) {
        let now = Instant::now();
        let mut t = Table::new(Duration::from_secs(10));
        let (mut socks, mut ev) = (Vec::new(), Vec::new());
        for (leg, local, partner, peer, keys) in
            [(Leg::A, A_SOCK, B_SOCK, "198.18.1.10:6000", Some(a)), (Leg::B, B_SOCK, A_SOCK, "198.18.2.10:6000", b)]
        {
            let s = EndpointSpec {
                rtcp,
                cname_key: Some(KEY),
                srtp: keys.cloned().map(Box::new),
                ..spec(leg, local, partner, Some(peer), true)
            };
            t.apply(now, Command::Upsert(s), &mut socks, &mut ev);
        }
        (t, now)
    }

    #[test]
    fn srtp_from_the_caller_leaves_as_plain_rtp_and_the_carriers_rtp_leaves_encrypted() {
        for suite in [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32, Suite::AeadAes128Gcm] {
            let (a, mut phone) = leg_keys(suite);
            let (mut t, now) = srtp_call(&a, None, false);
            let mut out = Vec::new();
            let wire = phone.protect(&rtp(1), false).unwrap();
            let f = t.on_packet(now, sa(A_SOCK), sa("198.18.1.10:6000"), &wire, &mut out).unwrap();
            assert_eq!(f, Forward { from: sa(B_SOCK), to: sa("198.18.2.10:6000"), rewritten: true });
            assert_eq!(out, rtp(1), "{suite}: the carrier gets the clear packet");
            let f = t.on_packet(now, sa(B_SOCK), sa("198.18.2.10:6000"), &rtp(9), &mut out).unwrap();
            assert!(f.rewritten);
            assert_ne!(out, rtp(9), "{suite}: encrypted for the caller");
            assert_eq!(&phone.unprotect(now, &out, false).unwrap()[..], &rtp(9)[..], "{suite}: with our key");
            assert_eq!(t.totals(), Totals { rtcp_rewritten: 0, srtp_unprotected: 1, srtp_protected: 1 });
            let st = t.session_stats(SessionId(1));
            assert_eq!((st.legs[0].received.packets, st.legs[1].sent), (1, 1));
        }
    }

    #[test]
    fn srtp_on_both_legs_is_decrypted_with_one_legs_keys_and_encrypted_with_the_others() {
        let (a, mut phone_a) = leg_keys(Suite::AesCm128HmacSha1_80);
        let (b, mut phone_b) = leg_keys(Suite::AeadAes256Gcm);
        let (mut t, now) = srtp_call(&a, Some(&b), false);
        let mut out = Vec::new();
        let wire = phone_a.protect(&rtp(5), false).unwrap();
        t.on_packet(now, sa(A_SOCK), sa("198.18.1.10:6000"), &wire, &mut out).unwrap();
        assert_ne!(out[..], wire[..], "not the caller's bytes: re-encrypted");
        assert_eq!(&phone_b.unprotect(now, &out, false).unwrap()[..], &rtp(5)[..]);
        let wire = phone_b.protect(&rtp(6), false).unwrap();
        t.on_packet(now, sa(B_SOCK), sa("198.18.2.10:6000"), &wire, &mut out).unwrap();
        assert_eq!(&phone_a.unprotect(now, &out, false).unwrap()[..], &rtp(6)[..]);
    }

    #[test]
    fn forged_and_replayed_srtp_is_dropped_counted_and_latches_nothing() {
        let (a, mut phone) = leg_keys(Suite::AesCm128HmacSha1_80);
        let (mut t, now) = srtp_call(&a, None, false);
        let mut out = Vec::new();
        let attacker = sa("198.18.1.66:6000");
        for seq in 0..3 {
            let (_, mut stranger) = leg_keys(Suite::AesCm128HmacSha1_80);
            let forged = stranger.protect(&rtp(seq), false).unwrap();
            assert_eq!(
                t.on_packet(now, sa(A_SOCK), attacker, &forged, &mut out),
                Err(Drop::Srtp(crate::srtp::Failure::Auth))
            );
        }
        assert_eq!(
            t.on_packet(now, sa(A_SOCK), attacker, &rtp(3), &mut out),
            Err(Drop::Srtp(crate::srtp::Failure::Auth)),
            "plain RTP on an SRTP leg"
        );
        assert_eq!(t.poll_event(), None, "no latch from a packet that did not authenticate");
        let wire = phone.protect(&rtp(4), false).unwrap();
        t.on_packet(now, sa(A_SOCK), sa("198.18.1.10:6000"), &wire, &mut out).unwrap();
        assert_eq!(
            t.on_packet(now, sa(A_SOCK), sa("198.18.1.10:6000"), &wire, &mut out),
            Err(Drop::Srtp(crate::srtp::Failure::Replay))
        );
        let st = t.session_stats(SessionId(1));
        assert_eq!(st.legs[0].dropped_srtp, 5);
        assert_eq!(st.legs[0].latched, Some(sa("198.18.1.10:6000")), "the real peer latched");
        assert_eq!(st.legs[1].sent, 1);
        assert_eq!(Drop::Srtp(crate::srtp::Failure::Replay).label(), "srtp_replay");
    }

    #[test]
    fn srtcp_is_decrypted_hidden_and_encrypted_again() {
        let (a, mut phone) = leg_keys(Suite::AesCm128HmacSha1_80);
        let (mut t, now) = srtp_call(&a, None, true);
        let mut out = Vec::new();
        let wire = phone.protect(&rr_sdes(ALICE), true).unwrap();
        let f = t.on_packet(now, sa(A_SOCK), sa("198.18.1.10:6000"), &wire, &mut out).unwrap();
        assert!(f.rewritten);
        assert!(out.windows(16).any(|w| w == KEY.token(Leg::A, ALICE).as_bytes()), "the token, in clear RTCP");
        assert!(!out.windows(ALICE.len()).any(|w| w == ALICE));
        // The carrier's plain RTCP: hidden, then encrypted for the caller.
        let carrier = b"sip:+4930123456@198.18.2.10";
        t.on_packet(now, sa(B_SOCK), sa("198.18.2.10:6000"), &rr_sdes(carrier), &mut out).unwrap();
        let clear = phone.unprotect(now, &out, true).unwrap();
        assert!(clear.windows(16).any(|w| w == KEY.token(Leg::B, carrier).as_bytes()));
        assert!(!clear.windows(carrier.len()).any(|w| w == carrier));
        assert_eq!(t.totals(), Totals { rtcp_rewritten: 2, srtp_unprotected: 1, srtp_protected: 1 });
    }

    #[test]
    fn srtp_flows_never_go_to_the_kernel_and_leave_it_when_a_leg_turns_srtp() {
        let (a, mut phone) = leg_keys(Suite::AesCm128HmacSha1_80);
        for b in [None, Some(leg_keys(Suite::AesCm128HmacSha1_80).0)] {
            let (mut t, now) = srtp_call(&a, b.as_ref(), false);
            t.enable_kernel();
            let wire = phone.protect(&rtp(1), false).unwrap();
            t.on_packet(now, sa(A_SOCK), sa("198.18.1.10:6000"), &wire, &mut Vec::new()).unwrap();
            if b.is_none() {
                t.on_packet(now, sa(B_SOCK), sa("198.18.2.10:6000"), &rtp(1), &mut Vec::new()).unwrap();
            }
            assert_eq!(t.poll_kernel().count(), 0, "both peers latched, still nothing in the kernel");
            assert_eq!(t.kernelized().count(), 0);
        }
        // A plain call in the kernel; a re-INVITE makes leg A SRTP: both directions come back to user space.
        let (mut t, now) = call(true);
        t.enable_kernel();
        t.on_packet(now, sa(A_SOCK), sa("198.18.1.10:6000"), &rtp(1), &mut Vec::new()).unwrap();
        t.on_packet(now, sa(B_SOCK), sa("198.18.2.10:6000"), &rtp(1), &mut Vec::new()).unwrap();
        assert_eq!(t.kernelized().count(), 2);
        t.poll_kernel().count();
        let srtp = EndpointSpec {
            srtp: Some(Box::new(a.clone())),
            ..spec(Leg::A, A_SOCK, B_SOCK, Some("198.18.1.10:6000"), true)
        };
        t.apply(now, Command::Upsert(srtp), &mut Vec::new(), &mut Vec::new());
        let changes: Vec<_> = t.poll_kernel().collect();
        assert_eq!(
            changes,
            vec![
                KernelChange::Remove { local: sa(A_SOCK), reason: "srtp" },
                KernelChange::Remove { local: sa(B_SOCK), reason: "srtp" }
            ]
        );
        assert_eq!(t.kernelized().count(), 0);
    }

    #[test]
    fn a_leg_waiting_for_its_keys_lets_nothing_in_or_out() {
        let now = Instant::now();
        let mut t = Table::new(Duration::from_secs(10));
        t.enable_kernel();
        let (mut socks, mut ev) = (Vec::new(), Vec::new());
        let a = EndpointSpec { srtp_pending: true, ..spec(Leg::A, A_SOCK, B_SOCK, Some("198.18.1.10:6000"), true) };
        t.apply(now, Command::Upsert(a), &mut socks, &mut ev);
        t.apply(
            now,
            Command::Upsert(spec(Leg::B, B_SOCK, A_SOCK, Some("198.18.2.10:6000"), true)),
            &mut socks,
            &mut ev,
        );
        let mut out = Vec::new();
        assert_eq!(
            t.on_packet(now, sa(A_SOCK), sa("198.18.1.10:6000"), &rtp(1), &mut out),
            Err(Drop::Srtp(crate::srtp::Failure::NoKeys)),
            "nothing from the SRTP leg can be authenticated yet"
        );
        assert_eq!(
            t.on_packet(now, sa(B_SOCK), sa("198.18.2.10:6000"), &rtp(1), &mut out),
            Err(Drop::Srtp(crate::srtp::Failure::NoKeys)),
            "no clear RTP towards the SRTP leg"
        );
        assert_eq!(
            t.poll_event(),
            Some(Event::Latched { session: SessionId(1), local: sa(B_SOCK), peer: sa("198.18.2.10:6000") })
        );
        assert_eq!(t.poll_kernel().count(), 0, "and nothing of it in the kernel");
        let st = t.session_stats(SessionId(1));
        assert_eq!((st.legs[0].dropped_srtp, st.legs[1].dropped_srtp, st.legs[0].sent), (1, 1, 0));
    }
}
