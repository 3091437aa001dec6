//! A browser's WebRTC leg survives the loss of its relay, as in a hot-standby pair's takeover: the handshake is
//! made with one relay (the active's), which reports the leg's keys ([`Event::WebrtcKeyed`]); that relay stops, and
//! a second one, with a certificate of its own, opens the same sockets and gets [`Command::WebrtcResume`] (what the
//! standby's SBC sends its relay from the replicated record, with the rollovers the first relay reported: both
//! streams wrapped their sequence numbers there). With no new handshake, the browser's SRTP reaches the carrier as
//! RTP, the carrier's RTP reaches the browser as SRTP that the browser's contexts from the first handshake decrypt
//! (the sequence numbers going on, at rollover counter 1), and the browser's consent checks are answered with the
//! same credentials. Loopback only, no XDP, no root needed; every wait is bounded.

use media_relay::relay::{Relay, RelayConfig};
use relay_proto::control::{Command, EndpointSpec, Event, Leg, SessionId};
use relay_proto::sdes::SrtpKeys;
use relay_proto::webrtc::dtls::{DtlsRole, Fingerprint};
use relay_proto::webrtc::ice::IceCredentials;
use relay_proto::webrtc::leg::{WebrtcResume, WebrtcSpec};
use rtc_dtls::config::{ClientAuthType, ConfigBuilder};
use rtc_dtls::crypto::Certificate;
use rtc_dtls::endpoint::{Endpoint, EndpointEvent};
use rtc_dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc_shared::TransportProtocol;
use rtc_srtp::context::Context;
use rtc_srtp::protection_profile::ProtectionProfile;
use rtc_stun::attributes::ATTR_USERNAME;
use rtc_stun::fingerprint::FINGERPRINT;
use rtc_stun::integrity::MessageIntegrity;
use rtc_stun::message::{Message, Setter, TransactionId, BINDING_REQUEST, BINDING_SUCCESS};
use rtc_stun::textattrs::TextAttribute;
use std::net::{SocketAddr, UdpSocket};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

const RELAY_UFRAG: &str = "relayUfr";
const RELAY_PWD: &str = "relayPasswordOf24Chars00";
/// Packets each way, before and after the takeover.
const PACKETS: u16 = 30;

fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&[0xd5; 160]);
    p
}

fn spec(leg: Leg, local: SocketAddr, partner: SocketAddr, peer: Option<SocketAddr>) -> EndpointSpec {
    EndpointSpec {
        session: SessionId(3),
        leg,
        stream: 0,
        rtcp: false,
        local,
        partner,
        peer,
        latched: None,
        strict: true,
        clock_rates: vec![(0, 8000)],
        cname_key: None,
        srtp: None,
        srtp_pending: leg == Leg::A,
    }
}

/// A consent check as a browser sends it: USERNAME `RELAY:BROWSER`, short-term integrity, FINGERPRINT.
fn check(id: u8) -> Vec<u8> {
    let provider = rtc_srtp::crypto::default_provider().unwrap();
    let mut m = Message::new();
    let setters: Vec<Box<dyn Setter>> = vec![
        Box::new(BINDING_REQUEST),
        Box::new(TransactionId([id; 12])),
        Box::new(TextAttribute::new(ATTR_USERNAME, format!("{RELAY_UFRAG}:brws"))),
        Box::new(MessageIntegrity::new_short_term_integrity_with_provider(RELAY_PWD.into(), provider.crypto())),
        Box::new(FINGERPRINT),
    ];
    m.build(&setters).unwrap();
    m.raw
}

/// Whether `datagram` is a binding success for our check, signed with our password.
fn answers_check(datagram: &[u8]) -> bool {
    let provider = rtc_srtp::crypto::default_provider().unwrap();
    let mut m = Message::new();
    datagram[0] < 4
        && m.unmarshal_binary(datagram).is_ok()
        && m.typ == BINDING_SUCCESS
        && MessageIntegrity::check(&mut m, RELAY_PWD.as_bytes(), provider.crypto()).is_ok()
}

fn recv(socket: &UdpSocket, deadline: Instant) -> Option<Vec<u8>> {
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            return Some(buf[..n].to_vec());
        }
    }
    None
}

/// The relay's first event matching `pick`, within 5 s.
fn wait_event<T>(events: &mut UnboundedReceiver<Event>, pick: impl Fn(Event) -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match events.try_recv() {
            Ok(ev) => {
                if let Some(t) = pick(ev) {
                    return Some(t);
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    None
}

/// The browser's side: its socket, its DTLS server (our answer said `a=setup:active`), its SRTP contexts.
struct Browser {
    socket: UdpSocket,
    dtls: Endpoint,
    fingerprint: Fingerprint,
}

impl Browser {
    fn new(relay_fingerprint: Fingerprint) -> Self {
        let provider = rtc_srtp::crypto::default_provider().unwrap();
        let cert = Certificate::generate_self_signed(vec!["browser".to_owned()], provider.crypto()).unwrap();
        let fingerprint = Fingerprint::of_der(cert.certificate[0].as_ref());
        let config = ConfigBuilder::default()
            .with_crypto_provider(provider.clone())
            .with_certificates(vec![cert])
            .with_srtp_protection_profiles(vec![SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80])
            .with_insecure_skip_verify(true)
            .with_client_auth(ClientAuthType::RequireAnyClientCert)
            .with_verify_peer_certificate(Some(Arc::new(move |certs: &[Vec<u8>], _| {
                if Fingerprint::of_der(&certs[0]) == relay_fingerprint {
                    Ok(())
                } else {
                    Err(rtc_shared::error::Error::Other("not the relay's certificate".into()))
                }
            })))
            .build(false, None)
            .unwrap();
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let dtls = Endpoint::new(socket.local_addr().unwrap(), TransportProtocol::UDP, Some(Arc::new(config)));
        Self { socket, dtls, fingerprint }
    }

    fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    /// Checks until answered, then the handshake the relay starts as client, within 10 s.
    fn connect(&mut self, relay: SocketAddr) -> (bool, bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let (mut answered, mut connected) = (false, false);
        while !connected && Instant::now() < deadline {
            if !answered {
                self.socket.send_to(&check(1), relay).unwrap();
            }
            let Some(datagram) = recv(&self.socket, Instant::now() + Duration::from_millis(200)) else { continue };
            if datagram[0] < 4 {
                answered |= answers_check(&datagram);
                continue;
            }
            let events = self.dtls.read(Instant::now(), relay, None, datagram.as_slice().into()).unwrap_or_default();
            connected |= events.iter().any(|e| matches!(e, EndpointEvent::HandshakeComplete));
            while let Some(t) = self.dtls.poll_transmit() {
                self.socket.send_to(&t.message, relay).unwrap();
            }
        }
        (answered, connected)
    }

    /// Its SRTP contexts (out, in) from the exported keys, as a WebRTC stack derives them (it is the server).
    fn srtp(&self, relay: SocketAddr) -> (Context, Context) {
        let provider = rtc_srtp::crypto::default_provider().unwrap();
        let state = self.dtls.get_connection_state(relay).unwrap();
        let mut srtp =
            rtc_srtp::config::Config { profile: ProtectionProfile::Aes128CmHmacSha1_80, ..Default::default() };
        let material = state.export_keying_material("EXTRACTOR-dtls_srtp", &[], srtp.keying_material_len()).unwrap();
        srtp.set_session_keys_from_keying_material(material.as_ref(), false).unwrap();
        let (k, profile) = (&srtp.keys, srtp.profile);
        let out = Context::new(&k.local_master_key, &k.local_master_salt, profile, None, None, provider.crypto());
        let inb = Context::new(&k.remote_master_key, &k.remote_master_salt, profile, None, None, provider.crypto());
        (out.unwrap(), inb.unwrap())
    }
}

/// Media both ways through a relay, sequence numbers from `first`: (packets the carrier got as the browser's
/// RTP, packets the browser decrypted as the carrier's RTP, datagrams from the relay that were DTLS).
fn media(
    browser: &Browser,
    contexts: &mut (Context, Context),
    carrier: &UdpSocket,
    relay_a: SocketAddr,
    relay_b: SocketAddr,
    first: u16,
) -> (u16, u16, u16) {
    let (mut to_carrier, mut to_browser, mut dtls) = (0, 0, 0);
    // The relay's last handshake flight may still be in flight: the browser sends until the carrier has them.
    let mut seq = first;
    let deadline = Instant::now() + Duration::from_secs(10);
    while to_carrier < PACKETS && Instant::now() < deadline {
        browser.socket.send_to(&contexts.0.encrypt_rtp(&rtp(seq)).unwrap(), relay_a).unwrap();
        seq = seq.wrapping_add(1);
        if let Some(clear) = recv(carrier, Instant::now() + Duration::from_millis(100)) {
            assert_eq!(clear, rtp(u16::from_be_bytes([clear[2], clear[3]])), "plain RTP at the carrier");
            to_carrier += 1;
        }
    }
    for seq in (0..PACKETS).map(|i| first.wrapping_add(i)) {
        carrier.send_to(&rtp(seq), relay_b).unwrap();
        let deadline = Instant::now() + Duration::from_millis(500);
        while let Some(wire) = recv(&browser.socket, deadline) {
            if (20..64).contains(&wire[0]) {
                dtls += 1;
                continue;
            }
            if wire[0] >= 128 {
                assert_eq!(&contexts.1.decrypt_rtp(&wire).unwrap()[..], &rtp(seq)[..], "seq {seq}");
                to_browser += 1;
                break;
            }
        }
    }
    (to_carrier, to_browser, dtls)
}

#[test]
fn a_browser_leg_resumed_by_a_second_relay_carries_srtp_both_ways_and_answers_checks_without_a_handshake() {
    let config = || RelayConfig { threads: NonZeroUsize::new(1).unwrap(), ..RelayConfig::default() };
    let (active, mut active_events) = Relay::start(config()).expect("the active's relay starts");
    let carrier = UdpSocket::bind("127.0.0.1:0").unwrap();
    carrier.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let ports: Vec<SocketAddr> = {
        let held: Vec<UdpSocket> = (0..2).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
        held.iter().map(|s| s.local_addr().unwrap()).collect()
    };
    let (relay_a, relay_b) = (ports[0], ports[1]);
    let mut browser = Browser::new(active.dtls_fingerprint());
    let leg = WebrtcSpec {
        session: SessionId(3),
        local: relay_a,
        ice: IceCredentials { ufrag: RELAY_UFRAG.into(), pwd: RELAY_PWD.into() },
        remote_ufrag: "brws".into(),
        remote_fingerprint: browser.fingerprint,
        role: DtlsRole::Client,
    };
    let carrier_leg = spec(Leg::B, relay_b, relay_a, Some(carrier.local_addr().unwrap()));
    assert!(active.send(Command::Upsert(spec(Leg::A, relay_a, relay_b, None))));
    assert!(active.send(Command::Upsert(carrier_leg.clone())));
    assert!(active.send(Command::Webrtc(Box::new(leg.clone()))));

    let (answered, connected) = browser.connect(relay_a);
    assert!(answered && connected, "on the active: ICE answered {answered}, DTLS connected {connected}");
    let mut contexts = browser.srtp(relay_a);
    // Both streams cross a wrap of their sequence numbers on the active: rollover counter 1 from then on.
    let before = media(&browser, &mut contexts, &carrier, relay_a, relay_b, 65_520);
    assert_eq!(
        before,
        (PACKETS, PACKETS, 0),
        "on the active: to the carrier, to the browser, DTLS after the handshake"
    );
    let keys: SrtpKeys = wait_event(&mut active_events, |ev| match ev {
        Event::WebrtcKeyed { local, keys, .. } if local == relay_a => Some(keys),
        _ => None,
    })
    .expect("the active's relay reports the handshake's keys");
    let mut rollovers = Vec::new();
    while rollovers.len() < 2 {
        let next = wait_event(&mut active_events, |ev| match ev {
            Event::SrtpRollover { local, rollover, .. } if local == relay_a => Some(rollover),
            _ => None,
        });
        rollovers.push(next.expect("the active's relay reports each stream's rollover"));
    }
    rollovers.sort_by_key(|r| r.outbound);
    assert_eq!(rollovers.iter().map(|r| (r.outbound, r.roc)).collect::<Vec<_>>(), vec![(false, 1), (true, 1)]);

    // The active is gone; the standby's relay (another certificate) opens the same sockets from the record.
    active.stop();
    let (standby, mut standby_events) = Relay::start(config()).expect("the standby's relay starts");
    assert_ne!(standby.dtls_fingerprint(), leg.remote_fingerprint);
    let browser_leg = EndpointSpec { latched: Some(browser.addr()), ..spec(Leg::A, relay_a, relay_b, None) };
    assert!(standby.send(Command::Upsert(browser_leg)));
    assert!(standby.send(Command::Upsert(carrier_leg)));
    let resume = WebrtcResume { peer: browser.addr(), keys, rollovers };
    assert!(standby.send(Command::WebrtcResume { spec: Box::new(leg), resume }));

    let after = media(&browser, &mut contexts, &carrier, relay_a, relay_b, 1000);
    assert_eq!(after, (PACKETS, PACKETS, 0), "on the standby: to the carrier, to the browser, no handshake");
    // A consent check: answered with the same credentials.
    let mut check_answered = false;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check_answered && Instant::now() < deadline {
        browser.socket.send_to(&check(2), relay_a).unwrap();
        if let Some(d) = recv(&browser.socket, Instant::now() + Duration::from_millis(200)) {
            check_answered = answers_check(&d);
        }
    }
    assert!(check_answered, "the standby answers the browser's consent check");
    // The thread stores its totals right after its send: the last packet can beat them here (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut c = standby.snapshot();
    while c.srtp_protected < u64::from(PACKETS) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        c = standby.snapshot();
    }
    assert_eq!(c.srtp_protected, u64::from(PACKETS), "{c:?}");
    assert!(c.srtp_unprotected >= u64::from(PACKETS), "{c:?}");
    let trouble: Vec<Event> = std::iter::from_fn(|| standby_events.try_recv().ok())
        .filter(|ev| matches!(ev, Event::BindFailed { .. } | Event::WebrtcEnded { .. }))
        .collect();
    assert!(trouble.is_empty(), "no socket failed and the leg did not end: {trouble:?}");
    standby.stop();
}
