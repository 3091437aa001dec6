//! The flow table's WebRTC legs ([`crate::webrtc::leg`]): attaching one to an endpoint, the STUN and DTLS
//! datagrams it consumes, the datagrams and timers it adds. Kept apart from the per-packet path of plain and
//! SDES legs, which only calls [`Table::on_webrtc`] for endpoints that have a WebRTC leg.
//!
//! A WebRTC endpoint is `strict` and `srtp_pending` (the signalling side upserts it so): nothing crosses before
//! the handshake gave it keys, it never goes to the kernel, and media is accepted only from the address ICE
//! latched.

use super::{Drop, Forward, Table, Transmit};
use crate::control::{Event, SessionId};
use crate::srtp::EndpointCrypto;
use crate::webrtc::dtls::DtlsCertificate;
use crate::webrtc::leg::{Handled, WebrtcLeg, WebrtcResume, WebrtcSpec};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

/// The rollovers `crypto` counted, as [`Event::SrtpRollover`] for a WebRTC leg (replicated for a standby); dropped
/// for an SDES leg, whose counters are not replicated.
pub(super) fn rollovers(
    events: &mut VecDeque<Event>,
    session: SessionId,
    local: SocketAddr,
    webrtc: bool,
    crypto: &mut EndpointCrypto,
) {
    while let Some(rollover) = crypto.poll_rollover() {
        if webrtc {
            events.push_back(Event::SrtpRollover { session, local, rollover });
        }
    }
}

impl Table {
    /// The relay's DTLS certificate (its fingerprint is in every SDP towards a browser): generated once at start
    /// by whoever also writes that SDP, and given to every table. Without one, [`crate::control::Command::Webrtc`]
    /// fails the leg at once ([`Event::WebrtcEnded`] with `dtls_certificate`).
    pub fn set_dtls_certificate(&mut self, certificate: DtlsCertificate) {
        self.certificate = Some(certificate);
    }

    /// The next datagram the table sends of its own accord (STUN answers, DTLS flights): drain after every
    /// [`Table::on_packet`] and [`Table::handle_timeout`].
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// When [`Table::handle_timeout`] is next due: the earliest timer of any WebRTC leg.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.webrtc_locals.iter().filter_map(|l| self.endpoints.get(l)?.webrtc.as_ref()?.poll_timeout()).min()
    }

    /// Advances every WebRTC leg to `now`: handshake retransmissions (into [`Table::poll_transmit`]), and
    /// [`Event::WebrtcEnded`] for legs whose consent lapsed or whose handshake gave up.
    pub fn handle_timeout(&mut self, now: Instant) {
        let endpoints = &self.endpoints;
        self.webrtc_locals.retain(|l| endpoints.get(l).is_some_and(|e| e.webrtc.is_some()));
        for local in &self.webrtc_locals {
            let Some(e) = self.endpoints.get_mut(local) else { continue };
            let Some(leg) = e.webrtc.as_mut() else { continue };
            if leg.poll_timeout().is_none_or(|t| t > now) {
                continue;
            }
            let ended = leg.handle_timeout(now);
            while let Some((to, bytes)) = leg.poll_transmit() {
                self.transmits.push_back(Transmit { from: *local, to, bytes });
            }
            if let Some(end) = ended {
                let (session, local, reason) = (e.spec.session, *local, end.label().to_owned());
                self.events.push_back(Event::WebrtcEnded { session, local, reason });
            }
        }
    }

    pub(super) fn attach_webrtc(&mut self, now: Instant, spec: WebrtcSpec, events: &mut Vec<Event>) {
        let Some(e) = self.endpoints.get_mut(&spec.local) else { return };
        let leg = match &self.certificate {
            Some(c) => WebrtcLeg::new(now, c, &spec).map_err(|e| e.label()),
            None => Err("dtls_certificate"),
        };
        match leg {
            Ok(leg) => {
                e.webrtc = Some(Box::new(leg));
                // A new association: what was latched and keyed belonged to the old one.
                e.latched = None;
                e.crypto = None;
                // Whatever the upsert said: no clear media before the keys, no source but the ICE latch, no kernel.
                e.spec.srtp_pending = true;
                e.spec.strict = true;
                let partner = e.spec.partner;
                if !self.webrtc_locals.contains(&spec.local) {
                    self.webrtc_locals.push(spec.local);
                }
                self.reconsider(spec.local, "srtp");
                self.reconsider(partner, "srtp");
            }
            Err(reason) => {
                e.webrtc = None;
                events.push(Event::WebrtcEnded { session: spec.session, local: spec.local, reason: reason.into() });
            }
        }
    }

    /// The leg of `spec` as another relay left it: latched and keyed at once, no handshake, no certificate needed
    /// (this relay's is never shown to the browser on this leg).
    pub(super) fn resume_webrtc(&mut self, now: Instant, spec: WebrtcSpec, resume: WebrtcResume) {
        let Some(e) = self.endpoints.get_mut(&spec.local) else { return };
        e.webrtc = Some(Box::new(WebrtcLeg::resume(now, &spec, &resume)));
        e.latched = Some(resume.peer);
        e.crypto = Some(Box::new(EndpointCrypto::resume(&resume.keys, &resume.rollovers)));
        e.spec.srtp_pending = true;
        e.spec.strict = true;
        let partner = e.spec.partner;
        if !self.webrtc_locals.contains(&spec.local) {
            self.webrtc_locals.push(spec.local);
        }
        self.reconsider(spec.local, "srtp");
        self.reconsider(partner, "srtp");
    }

    /// A datagram on an endpoint with a WebRTC leg: `None` when it is media for the ordinary path (SRTP from the
    /// latched browser), else what became of it.
    pub(super) fn on_webrtc(
        &mut self,
        now: Instant,
        local: SocketAddr,
        src: SocketAddr,
        bytes: &[u8],
    ) -> Option<Result<Forward, Drop>> {
        let e = self.endpoints.get_mut(&local)?;
        let leg = e.webrtc.as_mut()?;
        let handled = leg.on_datagram(now, src, bytes);
        while let Some((to, bytes)) = leg.poll_transmit() {
            self.transmits.push_back(Transmit { from: local, to, bytes });
        }
        match handled {
            Handled::Media => None,
            Handled::Refused(label) => {
                e.dropped_foreign += 1;
                Some(Err(Drop::Webrtc(label)))
            }
            Handled::Control { latched, keys, ended } => {
                if let Some(peer) = latched {
                    e.latched = Some(peer);
                    self.events.push_back(Event::Latched { session: e.spec.session, local, peer });
                }
                if let Some(keys) = keys {
                    e.crypto = Some(Box::new(EndpointCrypto::new(&keys)));
                    self.events.push_back(Event::WebrtcKeyed { session: e.spec.session, local, keys });
                }
                if let Some(end) = ended {
                    let reason = end.label().to_owned();
                    self.events.push_back(Event::WebrtcEnded { session: e.spec.session, local, reason });
                }
                Some(Err(Drop::Control))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{Command, EndpointSpec, Leg, SessionId};
    use crate::sdes::SrtpKeys;
    use crate::srtp_roc::Rollover;
    use crate::webrtc::dtls::tests::{rtp, Browser};
    use crate::webrtc::dtls::DtlsRole;
    use crate::webrtc::ice::tests::request;
    use crate::webrtc::ice::{IceCredentials, CONSENT_TIMEOUT};
    use rtc_dtls::extension::extension_use_srtp::SrtpProtectionProfile;
    use std::time::Duration;

    const BROWSER_SOCK: &str = "198.18.1.1:30000";
    const CARRIER_SOCK: &str = "198.18.2.1:30002";
    const BROWSER: &str = "198.18.1.10:54321";
    const CARRIER: &str = "198.18.2.10:6000";
    const RELAY_PWD: &str = "relayPasswordOf24Chars00";

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn spec(leg: Leg, local: &str, partner: &str, peer: Option<&str>) -> EndpointSpec {
        EndpointSpec {
            session: SessionId(9),
            leg,
            stream: 0,
            rtcp: false,
            local: sa(local),
            partner: sa(partner),
            peer: peer.map(sa),
            latched: None,
            strict: true,
            clock_rates: vec![(0, 8000)],
            cname_key: None,
            srtp: None,
            srtp_pending: leg == Leg::A,
        }
    }

    /// A call from a browser (leg A, WebRTC) to a carrier (leg B, plain RTP) up to the WebRTC command.
    fn call(now: Instant) -> (Table, Browser) {
        call_to(now, None)
    }

    /// The same to a carrier whose leg is SDES-SRTP with `carrier_keys` (plain RTP with `None`).
    fn call_to(now: Instant, carrier_keys: Option<SrtpKeys>) -> (Table, Browser) {
        let relay_cert = DtlsCertificate::generate().unwrap();
        let browser =
            Browser::new(false, relay_cert.fingerprint(), vec![SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80]);
        let mut t = Table::new(Duration::from_secs(60));
        t.enable_kernel();
        t.set_dtls_certificate(relay_cert);
        let (mut socks, mut ev) = (Vec::new(), Vec::new());
        t.apply(now, Command::Upsert(spec(Leg::A, BROWSER_SOCK, CARRIER_SOCK, None)), &mut socks, &mut ev);
        let carrier = EndpointSpec {
            srtp_pending: carrier_keys.is_some(),
            srtp: carrier_keys.map(Box::new),
            ..spec(Leg::B, CARRIER_SOCK, BROWSER_SOCK, Some(CARRIER))
        };
        t.apply(now, Command::Upsert(carrier), &mut socks, &mut ev);
        t.apply(now, Command::Webrtc(Box::new(leg_spec(&browser))), &mut socks, &mut ev);
        assert!(ev.is_empty(), "{ev:?}");
        (t, browser)
    }

    /// The WebRTC spec of the browser's leg in [`call`].
    fn leg_spec(browser: &Browser) -> WebrtcSpec {
        WebrtcSpec {
            session: SessionId(9),
            local: sa(BROWSER_SOCK),
            ice: IceCredentials { ufrag: "relayUfr".into(), pwd: RELAY_PWD.into() },
            remote_ufrag: "brws".into(),
            remote_fingerprint: browser.certificate.fingerprint(),
            role: DtlsRole::Client,
        }
    }

    /// The browser's first check and the handshake, both ways, until the browser has nothing more to say.
    fn handshake(t: &mut Table, now: Instant, browser: &mut Browser) {
        let mut out = Vec::new();
        let (check, _) = request("relayUfr:brws", RELAY_PWD, true);
        assert_eq!(t.on_packet(now, sa(BROWSER_SOCK), sa(BROWSER), &check, &mut out), Err(Drop::Control));
        to_browser(t, now, browser);
        for _ in 0..8 {
            let flights = browser.drain();
            if flights.is_empty() {
                break;
            }
            for d in flights {
                assert_eq!(t.on_packet(now, sa(BROWSER_SOCK), sa(BROWSER), &d, &mut out), Err(Drop::Control));
            }
            to_browser(t, now, browser);
        }
        assert!(browser.connected, "the browser's DTLS completed");
    }

    /// Everything the table sends the browser goes into its DTLS stack (STUN answers aside); returns the count.
    fn to_browser(t: &mut Table, now: Instant, browser: &mut Browser) -> usize {
        let mut n = 0;
        while let Some(tx) = t.poll_transmit() {
            assert_eq!((tx.from, tx.to), (sa(BROWSER_SOCK), sa(BROWSER)));
            if tx.bytes[0] >= 20 {
                browser.feed(now, &tx.bytes);
            }
            n += 1;
        }
        n
    }

    #[test]
    fn browser_call_through_the_table_ice_dtls_then_srtp_to_rtp_and_back() {
        let now = Instant::now();
        let (mut t, mut browser) = call(now);
        let mut out = Vec::new();

        // Media before anything authenticated: refused.
        assert_eq!(
            t.on_packet(now, sa(BROWSER_SOCK), sa(BROWSER), &rtp(1), &mut out),
            Err(Drop::Webrtc("srtp_unlatched_source"))
        );
        // The carrier's RTP has nowhere to go yet (and must not leave in the clear).
        assert!(t.on_packet(now, sa(CARRIER_SOCK), sa(CARRIER), &rtp(1), &mut out).is_err());

        // The browser's check: answered, latched, and our ClientHello follows.
        let (check, _) = request("relayUfr:brws", RELAY_PWD, true);
        assert_eq!(t.on_packet(now, sa(BROWSER_SOCK), sa(BROWSER), &check, &mut out), Err(Drop::Control));
        assert_eq!(to_browser(&mut t, now, &mut browser), 2, "STUN answer and ClientHello");
        let latched: Vec<_> = std::iter::from_fn(|| t.poll_event()).collect();
        assert!(latched.contains(&Event::Latched {
            session: SessionId(9),
            local: sa(BROWSER_SOCK),
            peer: sa(BROWSER)
        }));

        // The handshake, both ways, until the browser has nothing more to say.
        for _ in 0..8 {
            let flights = browser.drain();
            if flights.is_empty() {
                break;
            }
            for d in flights {
                assert_eq!(t.on_packet(now, sa(BROWSER_SOCK), sa(BROWSER), &d, &mut out), Err(Drop::Control));
            }
            to_browser(&mut t, now, &mut browser);
        }
        assert!(browser.connected, "the browser's DTLS completed");
        let (mut b_out, mut b_in) = browser.srtp(false);

        // Browser SRTP → plain RTP to the carrier.
        for seq in 1..=3u16 {
            let wire = b_out.encrypt_rtp(&rtp(seq)).unwrap();
            let f = t.on_packet(now, sa(BROWSER_SOCK), sa(BROWSER), &wire, &mut out).unwrap();
            assert_eq!((f.from, f.to, f.rewritten), (sa(CARRIER_SOCK), sa(CARRIER), true));
            assert_eq!(out, rtp(seq), "decrypted for the carrier");
        }
        // Carrier RTP → SRTP to the browser's latched address.
        for seq in 1..=3u16 {
            let f = t.on_packet(now, sa(CARRIER_SOCK), sa(CARRIER), &rtp(seq), &mut out).unwrap();
            assert_eq!((f.from, f.to, f.rewritten), (sa(BROWSER_SOCK), sa(BROWSER), true));
            assert_eq!(&b_in.decrypt_rtp(&out).unwrap()[..], &rtp(seq)[..], "the browser decrypts it");
        }
        // SRTP from elsewhere, even with the right keys, is not the browser's.
        let wire = b_out.encrypt_rtp(&rtp(4)).unwrap();
        assert_eq!(
            t.on_packet(now, sa(BROWSER_SOCK), sa("198.18.1.66:4000"), &wire, &mut out),
            Err(Drop::Webrtc("srtp_unlatched_source"))
        );
        // The signalling side upserts the leg again (the answer came, a re-INVITE): the handshake's keys stay.
        let (mut socks, mut ev) = (Vec::new(), Vec::new());
        let again =
            EndpointSpec { srtp_pending: false, strict: false, ..spec(Leg::A, BROWSER_SOCK, CARRIER_SOCK, None) };
        t.apply(now, Command::Upsert(again), &mut socks, &mut ev);
        let wire = b_out.encrypt_rtp(&rtp(5)).unwrap();
        let f = t.on_packet(now, sa(BROWSER_SOCK), sa(BROWSER), &wire, &mut out).unwrap();
        assert_eq!((f.to, &out), (sa(CARRIER), &rtp(5)), "still decrypted after the upsert");
        assert_eq!(
            t.on_packet(now, sa(BROWSER_SOCK), sa("198.18.1.66:4000"), &wire, &mut out),
            Err(Drop::Webrtc("srtp_unlatched_source")),
            "still strict"
        );
        assert_eq!(t.totals().srtp_unprotected, 4);
        assert_eq!(t.totals().srtp_protected, 3);
        assert_eq!(t.poll_kernel().count(), 0, "a WebRTC flow never goes to the kernel");
    }

    /// An RTCP receiver report without report blocks from `ssrc`.
    fn receiver_report(ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, 201, 0, 1];
        p.extend(ssrc.to_be_bytes());
        p
    }

    #[test]
    fn browser_dtls_srtp_is_bridged_to_a_carriers_sdes_srtp_each_leg_with_its_own_keys_rtp_and_rtcp() {
        use crate::sdes::{KeyMaterial, OsKeys, Suite};
        use crate::srtp::Failure;
        let now = Instant::now();
        // The carrier leg's SDES keys as the relay holds them, and the carrier's own view of the same two keys.
        let suite = Suite::AesCm128HmacSha1_80;
        let ours = KeyMaterial::generate(suite, &mut OsKeys).unwrap();
        let theirs = KeyMaterial::generate(suite, &mut OsKeys).unwrap();
        let mut carrier = EndpointCrypto::new(&SrtpKeys { suite, ours: theirs.clone(), theirs: ours.clone() });
        let (mut t, mut browser) = call_to(now, Some(SrtpKeys { suite, ours, theirs }));
        let mut out = Vec::new();

        // Before ICE and DTLS the browser is neither latched nor keyed: the carrier's SRTP goes nowhere.
        let early = carrier.protect(&rtp(100), false).unwrap();
        assert_eq!(t.on_packet(now, sa(CARRIER_SOCK), sa(CARRIER), &early, &mut out), Err(Drop::NoTarget));
        handshake(&mut t, now, &mut browser);
        let (mut b_out, mut b_in) = browser.srtp(false);

        // Browser SRTP (DTLS keys) → SRTP with the carrier leg's SDES keys, never the clear packet.
        for seq in 1..=3u16 {
            let wire = b_out.encrypt_rtp(&rtp(seq)).unwrap();
            let f = t.on_packet(now, sa(BROWSER_SOCK), sa(BROWSER), &wire, &mut out).unwrap();
            assert_eq!((f.from, f.to, f.rewritten), (sa(CARRIER_SOCK), sa(CARRIER), true));
            assert_ne!(out, rtp(seq), "not in the clear towards the carrier");
            assert_ne!(out[..], wire[..], "not the browser's SRTP either");
            assert_eq!(&carrier.unprotect(now, &out, false).unwrap()[..], &rtp(seq)[..], "the carrier decrypts it");
        }
        // Carrier SRTP (SDES keys) → SRTP with the DTLS keys to the latched browser.
        for seq in 1..=3u16 {
            let wire = carrier.protect(&rtp(seq), false).unwrap();
            let f = t.on_packet(now, sa(CARRIER_SOCK), sa(CARRIER), &wire, &mut out).unwrap();
            assert_eq!((f.from, f.to, f.rewritten), (sa(BROWSER_SOCK), sa(BROWSER), true));
            assert_eq!(&b_in.decrypt_rtp(&out).unwrap()[..], &rtp(seq)[..], "the browser decrypts it");
        }
        // Plain RTP, or SRTP under the browser's keys, on the carrier's leg does not authenticate.
        assert_eq!(t.on_packet(now, sa(CARRIER_SOCK), sa(CARRIER), &rtp(7), &mut out), Err(Drop::Srtp(Failure::Auth)));
        let wrong = b_out.encrypt_rtp(&rtp(8)).unwrap();
        assert_eq!(t.on_packet(now, sa(CARRIER_SOCK), sa(CARRIER), &wrong, &mut out), Err(Drop::Srtp(Failure::Auth)));

        // SRTCP: the browser's (muxed) goes out as SRTCP under the carrier's keys to the carrier's RTP port (the
        // carrier leg is not told to mux: see docs/webrtc-media.md); the carrier's, on the RTP port, goes to the
        // browser under the DTLS keys.
        let wire = b_out.encrypt_rtcp(&receiver_report(0x1234)).unwrap();
        let f = t.on_packet(now, sa(BROWSER_SOCK), sa(BROWSER), &wire, &mut out).unwrap();
        assert_eq!((f.to, f.rewritten), (sa(CARRIER), true));
        assert_eq!(&carrier.unprotect(now, &out, true).unwrap()[..], &receiver_report(0x1234)[..]);
        let wire = carrier.protect(&receiver_report(0x5678), true).unwrap();
        let f = t.on_packet(now, sa(CARRIER_SOCK), sa(CARRIER), &wire, &mut out).unwrap();
        assert_eq!((f.to, f.rewritten), (sa(BROWSER), true));
        assert_eq!(&b_in.decrypt_rtcp(&out).unwrap()[..], &receiver_report(0x5678)[..]);

        // Decrypted: the early packet, 3 + 3 RTP, 2 RTCP; encrypted: all but the early one.
        assert_eq!((t.totals().srtp_unprotected, t.totals().srtp_protected), (9, 8));
        let st = t.session_stats(SessionId(9));
        assert_eq!((st.legs[1].dropped_srtp, st.legs[1].dropped_no_target), (2, 1));
        assert_eq!(st.legs[1].latched, Some(sa(CARRIER)));
        assert_eq!(t.poll_kernel().count(), 0, "a WebRTC flow never goes to the kernel");
    }

    #[test]
    fn a_browser_that_vanishes_ends_its_leg_30_s_after_its_last_check() {
        let t0 = Instant::now();
        let (mut t, _browser) = call(t0);
        let mut out = Vec::new();
        let (check, _) = request("relayUfr:brws", RELAY_PWD, true);
        let t1 = t0 + Duration::from_secs(1);
        t.on_packet(t1, sa(BROWSER_SOCK), sa(BROWSER), &check, &mut out).unwrap_err();
        while t.poll_transmit().is_some() {}
        while t.poll_event().is_some() {}
        // ClientHello retransmissions are due before consent; the browser answers none, and the handshake gives
        // up after its 7 retransmissions 1 s apart, before the 15 s deadline and long before consent would.
        let mut ended = None;
        let mut now = t1;
        while let Some(due) = t.poll_timeout() {
            assert!(due >= now, "timers do not go back");
            now = due;
            t.handle_timeout(now);
            if let Some(Event::WebrtcEnded { reason, .. }) = t.poll_event() {
                ended = Some((reason, now - t0));
                break;
            }
        }
        let (reason, after) = ended.expect("the leg ended");
        assert_eq!(reason, "dtls_timeout");
        assert!(after >= Duration::from_secs(8) && after <= Duration::from_secs(16), "{after:?}");
        assert_eq!(t.poll_timeout(), None, "no timer once ended");

        // With the handshake done by a live browser, only consent remains: 30 s after the last check.
        let (mut t, mut browser) = call(t0);
        t.on_packet(t1, sa(BROWSER_SOCK), sa(BROWSER), &check, &mut out).unwrap_err();
        to_browser(&mut t, t1, &mut browser);
        for _ in 0..8 {
            for d in browser.drain() {
                t.on_packet(t1, sa(BROWSER_SOCK), sa(BROWSER), &d, &mut out).unwrap_err();
            }
            to_browser(&mut t, t1, &mut browser);
        }
        assert!(browser.connected);
        while t.poll_event().is_some() {}
        assert_eq!(t.poll_timeout(), Some(t1 + CONSENT_TIMEOUT));
        t.handle_timeout(t1 + CONSENT_TIMEOUT - Duration::from_millis(1));
        assert_eq!(t.poll_event(), None);
        t.handle_timeout(t1 + CONSENT_TIMEOUT);
        assert_eq!(
            t.poll_event(),
            Some(Event::WebrtcEnded {
                session: SessionId(9),
                local: sa(BROWSER_SOCK),
                reason: "consent_expired".into()
            })
        );
    }

    #[test]
    fn a_webrtc_command_without_a_certificate_ends_the_leg_at_once() {
        let now = Instant::now();
        let mut t = Table::new(Duration::from_secs(60));
        let (mut socks, mut ev) = (Vec::new(), Vec::new());
        t.apply(now, Command::Upsert(spec(Leg::A, BROWSER_SOCK, CARRIER_SOCK, None)), &mut socks, &mut ev);
        let webrtc = WebrtcSpec {
            session: SessionId(9),
            local: sa(BROWSER_SOCK),
            ice: IceCredentials { ufrag: "relayUfr".into(), pwd: RELAY_PWD.into() },
            remote_ufrag: "brws".into(),
            remote_fingerprint: DtlsCertificate::generate().unwrap().fingerprint(),
            role: DtlsRole::Client,
        };
        t.apply(now, Command::Webrtc(Box::new(webrtc)), &mut socks, &mut ev);
        assert_eq!(
            ev,
            vec![Event::WebrtcEnded {
                session: SessionId(9),
                local: sa(BROWSER_SOCK),
                reason: "dtls_certificate".into()
            }]
        );
    }

    #[test]
    fn a_rollover_of_either_direction_of_a_webrtc_leg_is_reported_for_replication() {
        let now = Instant::now();
        let (mut t, mut browser) = call(now);
        handshake(&mut t, now, &mut browser);
        while t.poll_event().is_some() {}
        let (mut b_out, mut b_in) = browser.srtp(false);
        let mut out = Vec::new();
        for seq in [65_534, 65_535, 0, 1] {
            let wire = b_out.encrypt_rtp(&rtp(seq)).unwrap();
            t.on_packet(now, sa(BROWSER_SOCK), sa(BROWSER), &wire, &mut out).unwrap();
            t.on_packet(now, sa(CARRIER_SOCK), sa(CARRIER), &rtp(seq), &mut out).unwrap();
            assert_eq!(&b_in.decrypt_rtp(&out).unwrap()[..], &rtp(seq)[..]);
        }
        let rolled: Vec<_> = std::iter::from_fn(|| t.poll_event())
            .filter_map(|e| match e {
                Event::SrtpRollover { session, local, rollover } => Some((session, local, rollover)),
                _ => None,
            })
            .collect();
        let of = |outbound| (SessionId(9), sa(BROWSER_SOCK), Rollover { ssrc: 0x1234, outbound, roc: 1 });
        assert_eq!(rolled, vec![of(false), of(true)], "the browser's stream, then ours towards it; once each");
    }

    #[test]
    fn a_standby_table_resumes_a_keyed_leg_srtp_both_ways_and_consent_checks_answered_without_a_handshake() {
        let t0 = Instant::now();
        let (mut active, mut browser) = call(t0);
        handshake(&mut active, t0, &mut browser);
        let keyed: Vec<_> = std::iter::from_fn(|| active.poll_event())
            .filter_map(|e| match e {
                Event::WebrtcKeyed { session, local, keys } => Some((session, local, keys)),
                _ => None,
            })
            .collect();
        assert_eq!(keyed.len(), 1, "one WebrtcKeyed per handshake");
        let (session, local, keys) = keyed.into_iter().next().unwrap();
        assert_eq!((session, local), (SessionId(9), sa(BROWSER_SOCK)));
        let (mut b_out, mut b_in) = browser.srtp(false);
        let mut out = Vec::new();
        for seq in 1..=3u16 {
            let wire = b_out.encrypt_rtp(&rtp(seq)).unwrap();
            active.on_packet(t0, sa(BROWSER_SOCK), sa(BROWSER), &wire, &mut out).unwrap();
            active.on_packet(t0, sa(CARRIER_SOCK), sa(CARRIER), &rtp(seq), &mut out).unwrap();
            assert_eq!(&b_in.decrypt_rtp(&out).unwrap()[..], &rtp(seq)[..]);
        }

        // The takeover: another relay, with a certificate of its own, gets the record's spec, latch and keys.
        let t1 = t0 + Duration::from_secs(2);
        let mut standby = Table::new(Duration::from_secs(60));
        standby.enable_kernel();
        standby.set_dtls_certificate(DtlsCertificate::generate().unwrap());
        let (mut socks, mut ev) = (Vec::new(), Vec::new());
        let a = EndpointSpec { latched: Some(sa(BROWSER)), ..spec(Leg::A, BROWSER_SOCK, CARRIER_SOCK, None) };
        standby.apply(t1, Command::Upsert(a), &mut socks, &mut ev);
        let b = spec(Leg::B, CARRIER_SOCK, BROWSER_SOCK, Some(CARRIER));
        standby.apply(t1, Command::Upsert(b), &mut socks, &mut ev);
        let resume = WebrtcResume { peer: sa(BROWSER), keys, rollovers: Vec::new() };
        let cmd = Command::WebrtcResume { spec: Box::new(leg_spec(&browser)), resume };
        let cmd: Command = crate::control::decode(&crate::control::encode(&cmd)).unwrap();
        standby.apply(t1, cmd, &mut socks, &mut ev);
        assert!(ev.is_empty(), "{ev:?}");
        assert!(standby.poll_transmit().is_none(), "no ClientHello: no new handshake");

        // The browser's next SRTP decrypts; the carrier's next RTP reaches the browser encrypted, continuing.
        for seq in 4..=6u16 {
            let wire = b_out.encrypt_rtp(&rtp(seq)).unwrap();
            let f = standby.on_packet(t1, sa(BROWSER_SOCK), sa(BROWSER), &wire, &mut out).unwrap();
            assert_eq!((f.from, f.to, &out), (sa(CARRIER_SOCK), sa(CARRIER), &rtp(seq)), "decrypted for the carrier");
            let f = standby.on_packet(t1, sa(CARRIER_SOCK), sa(CARRIER), &rtp(seq), &mut out).unwrap();
            assert_eq!((f.from, f.to), (sa(BROWSER_SOCK), sa(BROWSER)));
            assert_eq!(&b_in.decrypt_rtp(&out).unwrap()[..], &rtp(seq)[..], "the browser decrypts seq {seq}");
        }
        assert_eq!((standby.totals().srtp_unprotected, standby.totals().srtp_protected), (3, 3));

        // Consent checks: answered with our replicated credentials; a wrong password is not.
        let (check, id) = request("relayUfr:brws", RELAY_PWD, false);
        assert_eq!(standby.on_packet(t1, sa(BROWSER_SOCK), sa(BROWSER), &check, &mut out), Err(Drop::Control));
        let tx = standby.poll_transmit().expect("the check is answered");
        assert_eq!((tx.from, tx.to), (sa(BROWSER_SOCK), sa(BROWSER)));
        let mut answer = rtc_stun::message::Message::new();
        answer.unmarshal_binary(&tx.bytes).unwrap();
        assert_eq!((answer.typ, answer.transaction_id), (rtc_stun::message::BINDING_SUCCESS, id));
        let crypto = crate::srtp::provider().crypto();
        rtc_stun::integrity::MessageIntegrity::check(&mut answer, RELAY_PWD.as_bytes(), crypto)
            .expect("signed with the replicated password");
        assert!(standby.poll_transmit().is_none(), "an answer, no handshake flight");
        let (forged, _) = request("relayUfr:brws", "notTheRelayPassword00000", false);
        assert_eq!(
            standby.on_packet(t1, sa(BROWSER_SOCK), sa(BROWSER), &forged, &mut out),
            Err(Drop::Webrtc("stun_bad_integrity"))
        );
        // DTLS has no association here: refused, counted.
        assert_eq!(
            standby.on_packet(t1, sa(BROWSER_SOCK), sa(BROWSER), &[23, 0xfe, 0xfd, 0, 0], &mut out),
            Err(Drop::Webrtc("dtls_resumed"))
        );
        let events: Vec<_> = std::iter::from_fn(|| standby.poll_event()).collect();
        assert!(
            !events.iter().any(|e| matches!(e, Event::Latched { local, .. } if *local == sa(BROWSER_SOCK))),
            "no browser latch event: the latch came with the record: {events:?}"
        );
        assert_eq!(standby.poll_kernel().count(), 0, "a WebRTC flow never goes to the kernel");
        // Consent from the last check on this relay: it ends the leg 30 s later, as on the active.
        assert_eq!(standby.poll_timeout(), Some(t1 + CONSENT_TIMEOUT));
        standby.handle_timeout(t1 + CONSENT_TIMEOUT);
        assert!(matches!(standby.poll_event(), Some(Event::WebrtcEnded { reason, .. }) if reason == "consent_expired"));
    }
}
