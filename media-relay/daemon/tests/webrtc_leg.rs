//! A browser's WebRTC leg through the running relay, over real UDP sockets on loopback: the browser's ICE check is
//! answered (verified with rtc-stun), the relay starts DTLS as client towards the address the check latched, the
//! handshake completes against an rtc-dtls server playing the browser, and then SRTP from the browser reaches the
//! carrier as plain RTP and the carrier's RTP reaches the browser as SRTP. Loopback only, no XDP, no root needed;
//! every wait is bounded.

use media_relay::relay::{Relay, RelayConfig};
use relay_proto::control::{Command, EndpointSpec, Event, Leg, SessionId};
use relay_proto::webrtc::dtls::{DtlsRole, Fingerprint};
use relay_proto::webrtc::ice::IceCredentials;
use relay_proto::webrtc::leg::WebrtcSpec;
use rtc_dtls::config::{ClientAuthType, ConfigBuilder};
use rtc_dtls::crypto::Certificate;
use rtc_dtls::endpoint::{Endpoint, EndpointEvent};
use rtc_dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc_shared::TransportProtocol;
use rtc_srtp::context::Context;
use rtc_srtp::protection_profile::ProtectionProfile;
use rtc_stun::attributes::{ATTR_USERNAME, ATTR_XORMAPPED_ADDRESS};
use rtc_stun::fingerprint::FINGERPRINT;
use rtc_stun::integrity::MessageIntegrity;
use rtc_stun::message::{Message, Setter, TransactionId, BINDING_REQUEST, BINDING_SUCCESS};
use rtc_stun::textattrs::TextAttribute;
use rtc_stun::xoraddr::XorMappedAddress;
use std::net::{SocketAddr, UdpSocket};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

const RELAY_UFRAG: &str = "relayUfr";
const RELAY_PWD: &str = "relayPasswordOf24Chars00";
const PACKETS: u16 = 50;

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

/// A binding request as a browser sends it: USERNAME `RELAY:BROWSER`, short-term integrity, FINGERPRINT.
fn check() -> Vec<u8> {
    let provider = rtc_srtp::crypto::default_provider().unwrap();
    let mut m = Message::new();
    let setters: Vec<Box<dyn Setter>> = vec![
        Box::new(BINDING_REQUEST),
        Box::new(TransactionId([9; 12])),
        Box::new(TextAttribute::new(ATTR_USERNAME, format!("{RELAY_UFRAG}:brws"))),
        Box::new(MessageIntegrity::new_short_term_integrity_with_provider(RELAY_PWD.into(), provider.crypto())),
        Box::new(FINGERPRINT),
    ];
    m.build(&setters).unwrap();
    m.raw
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

#[test]
fn browser_leg_answers_ice_completes_dtls_as_client_and_bridges_srtp_to_rtp_both_ways() {
    let config = RelayConfig { threads: NonZeroUsize::new(1).unwrap(), ..RelayConfig::default() };
    let (relay, mut events) = Relay::start(config).expect("relay starts");
    let browser = UdpSocket::bind("127.0.0.1:0").unwrap();
    let carrier = UdpSocket::bind("127.0.0.1:0").unwrap();
    for s in [&browser, &carrier] {
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    }
    let ports: Vec<SocketAddr> = {
        let held: Vec<UdpSocket> = (0..2).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
        held.iter().map(|s| s.local_addr().unwrap()).collect()
    };
    let (relay_a, relay_b) = (ports[0], ports[1]);

    // The browser's DTLS side: a server (our answer said a=setup:active), checking the relay's fingerprint.
    let provider = rtc_srtp::crypto::default_provider().unwrap();
    let cert = Certificate::generate_self_signed(vec!["browser".to_owned()], provider.crypto()).unwrap();
    let browser_fingerprint = Fingerprint::of_der(cert.certificate[0].as_ref());
    let relay_fingerprint = relay.dtls_fingerprint();
    let dtls_config = ConfigBuilder::default()
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
    let mut dtls = Endpoint::new(browser.local_addr().unwrap(), TransportProtocol::UDP, Some(Arc::new(dtls_config)));

    assert!(relay.send(Command::Upsert(spec(Leg::A, relay_a, relay_b, None))));
    assert!(relay.send(Command::Upsert(spec(Leg::B, relay_b, relay_a, Some(carrier.local_addr().unwrap())))));
    assert!(relay.send(Command::Webrtc(Box::new(WebrtcSpec {
        session: SessionId(3),
        local: relay_a,
        ice: IceCredentials { ufrag: RELAY_UFRAG.into(), pwd: RELAY_PWD.into() },
        remote_ufrag: "brws".into(),
        remote_fingerprint: browser_fingerprint,
        role: DtlsRole::Client,
    }))));

    // ICE: the check is answered with our integrity and the browser's address; the ClientHello follows.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut answered = false;
    let mut connected = false;
    while !connected && Instant::now() < deadline {
        if !answered {
            browser.send_to(&check(), relay_a).unwrap();
        }
        let Some(datagram) = recv(&browser, Instant::now() + Duration::from_millis(200)) else { continue };
        if datagram[0] < 4 {
            let mut m = Message::new();
            m.unmarshal_binary(&datagram).unwrap();
            assert_eq!(m.typ, BINDING_SUCCESS);
            MessageIntegrity::check(&mut m, RELAY_PWD.as_bytes(), provider.crypto()).expect("our password");
            let mut mapped = XorMappedAddress { ip: "0.0.0.0".parse().unwrap(), port: 0 };
            mapped.get_from_as(&m, ATTR_XORMAPPED_ADDRESS).unwrap();
            assert_eq!(SocketAddr::new(mapped.ip, mapped.port), browser.local_addr().unwrap());
            answered = true;
            continue;
        }
        let events = dtls.read(Instant::now(), relay_a, None, datagram.as_slice().into()).unwrap_or_default();
        connected |= events.iter().any(|e| matches!(e, EndpointEvent::HandshakeComplete));
        while let Some(t) = dtls.poll_transmit() {
            browser.send_to(&t.message, relay_a).unwrap();
        }
    }
    assert!(answered && connected, "ICE answered: {answered}, DTLS connected: {connected}");

    // The browser's SRTP contexts from the exported keys, as a WebRTC stack derives them (it is the server).
    let state = dtls.get_connection_state(relay_a).unwrap();
    let mut srtp = rtc_srtp::config::Config { profile: ProtectionProfile::Aes128CmHmacSha1_80, ..Default::default() };
    let material = state.export_keying_material("EXTRACTOR-dtls_srtp", &[], srtp.keying_material_len()).unwrap();
    srtp.set_session_keys_from_keying_material(material.as_ref(), false).unwrap();
    let k = &srtp.keys;
    let profile = srtp.profile;
    let mut b_out =
        Context::new(&k.local_master_key, &k.local_master_salt, profile, None, None, provider.crypto()).unwrap();
    let mut b_in =
        Context::new(&k.remote_master_key, &k.remote_master_salt, profile, None, None, provider.crypto()).unwrap();

    // Our last flight may still be in flight: the first SRTP packets can beat it, so the browser sends until the
    // carrier has them (bounded).
    let mut to_carrier = 0;
    let mut seq = 0u16;
    let deadline = Instant::now() + Duration::from_secs(10);
    while to_carrier < PACKETS && Instant::now() < deadline {
        seq += 1;
        browser.send_to(&b_out.encrypt_rtp(&rtp(seq)).unwrap(), relay_a).unwrap();
        if let Some(clear) = recv(&carrier, Instant::now() + Duration::from_millis(100)) {
            assert_eq!(clear, rtp(u16::from_be_bytes([clear[2], clear[3]])), "plain RTP at the carrier");
            to_carrier += 1;
        }
    }
    let mut to_browser = 0;
    for seq in 1..=PACKETS {
        carrier.send_to(&rtp(seq), relay_b).unwrap();
        if let Some(wire) = recv(&browser, Instant::now() + Duration::from_millis(500)) {
            assert_ne!(wire, rtp(seq), "encrypted towards the browser");
            assert_eq!(&b_in.decrypt_rtp(&wire).unwrap()[..], &rtp(seq)[..]);
            to_browser += 1;
        }
    }
    assert_eq!((to_carrier, to_browser), (PACKETS, PACKETS), "browser → carrier, carrier → browser");
    // The thread stores its totals right after its send: the last packet can beat them here (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut c = relay.snapshot();
    while c.srtp_protected < u64::from(PACKETS) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        c = relay.snapshot();
    }
    assert!(c.srtp_unprotected >= u64::from(PACKETS) && c.srtp_protected == u64::from(PACKETS), "{c:?}");

    let mut latched = Vec::new();
    while let Ok(ev) = events.try_recv() {
        if let Event::Latched { local, peer, .. } = ev {
            latched.push((local, peer));
        }
    }
    assert!(latched.contains(&(relay_a, browser.local_addr().unwrap())), "{latched:?}");
    relay.stop();
}
