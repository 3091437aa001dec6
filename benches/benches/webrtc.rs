//! WebRTC legs in the relay (issue 18), each figure next to its baseline in the same run:
//! - `webrtc/handshake`: one whole DTLS-SRTP handshake in memory, the relay's `DtlsLeg` as client against a
//!   `DtlsLeg` as server (both sides' CPU: ECDHE P-256, ECDSA signatures and checks, key export), against the
//!   baseline of generating the relay's certificate (one ECDSA P-256 key). Handshakes per second = 1 / time.
//! - `webrtc/packet`: `Table::on_packet` for one 172-byte RTP packet: plain RTP to plain RTP (the baseline, the
//!   path of every SIP call), SRTP from a browser decrypted to RTP for the carrier (after ICE and the handshake
//!   through the table itself), and the carrier's RTP encrypted to SRTP for the browser; then the same two with
//!   the carrier's leg on SDES-SRTP (a trunk with `srtp = "required"`): decrypted with one leg's keys and
//!   encrypted with the other's. CPU per million packets = time per packet × 10^6.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use relay_proto::control::{Command, EndpointSpec, Leg, SessionId};
use relay_proto::flow::Table;
use relay_proto::sdes::{KeyMaterial, OsKeys, SrtpKeys, Suite};
use relay_proto::srtp::EndpointCrypto;
use relay_proto::webrtc::dtls::{DtlsCertificate, DtlsEvent, DtlsLeg, DtlsRole};
use relay_proto::webrtc::ice::IceCredentials;
use relay_proto::webrtc::leg::WebrtcSpec;
use rtc_stun::attributes::ATTR_USERNAME;
use rtc_stun::fingerprint::FINGERPRINT;
use rtc_stun::integrity::MessageIntegrity;
use rtc_stun::message::{Message, Setter, TransactionId, BINDING_REQUEST};
use rtc_stun::textattrs::TextAttribute;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const A_SOCK: &str = "198.18.1.1:30000";
const B_SOCK: &str = "198.18.2.1:30000";
const BROWSER: &str = "198.18.1.10:54321";
const CARRIER: &str = "198.18.2.10:10000";
const PWD: &str = "relayPasswordOf24Chars00";

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("literal address")
}

fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 1, 0, 0, 0, 160, 0x85, 0x90, 0x39, 0xff];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&[0xd5; 160]);
    p
}

/// Runs a handshake between `client` and `server` to the end; the server's keys.
fn handshake(now: Instant, client: &mut DtlsLeg, server: &mut DtlsLeg) -> relay_proto::sdes::SrtpKeys {
    client.start(now).expect("client starts");
    let mut keys = None;
    for _ in 0..16 {
        while let Some(d) = client.poll_transmit() {
            if let Ok(Some(DtlsEvent::Connected(k))) = server.handle_datagram(now, &d) {
                keys = Some(k);
            }
        }
        while let Some(d) = server.poll_transmit() {
            let _ = client.handle_datagram(now, &d);
        }
        if keys.is_some() && client.is_connected() {
            break;
        }
    }
    keys.expect("the handshake completes")
}

fn spec(leg: Leg, local: &str, partner: &str, peer: Option<&str>, pending: bool) -> EndpointSpec {
    EndpointSpec {
        session: SessionId(1),
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
        srtp_pending: pending,
    }
}

/// A plain call, both peers latched by a first packet each.
fn plain_table(now: Instant) -> Table {
    let mut t = Table::new(Duration::from_secs(60));
    let (mut socks, mut ev) = (Vec::new(), Vec::new());
    t.apply(now, Command::Upsert(spec(Leg::A, A_SOCK, B_SOCK, Some(BROWSER), false)), &mut socks, &mut ev);
    t.apply(now, Command::Upsert(spec(Leg::B, B_SOCK, A_SOCK, Some(CARRIER), false)), &mut socks, &mut ev);
    let mut out = Vec::new();
    t.on_packet(now, sa(A_SOCK), sa(BROWSER), &rtp(0), &mut out).expect("forwarded");
    t.on_packet(now, sa(B_SOCK), sa(CARRIER), &rtp(0), &mut out).expect("forwarded");
    t
}

/// A browser call through the table: ICE check, DTLS through `on_packet`; the browser's SRTP contexts. With
/// `carrier`, the carrier's leg is SDES-SRTP with those keys (the relay's view).
fn webrtc_table(now: Instant, carrier: Option<&SrtpKeys>) -> (Table, EndpointCrypto) {
    let relay_cert = DtlsCertificate::generate().expect("certificate");
    let browser_cert = DtlsCertificate::generate().expect("certificate");
    let mut browser = DtlsLeg::new(now, &browser_cert, DtlsRole::Server, relay_cert.fingerprint()).expect("leg");
    let mut t = Table::new(Duration::from_secs(60));
    t.set_dtls_certificate(relay_cert);
    let (mut socks, mut ev) = (Vec::new(), Vec::new());
    t.apply(now, Command::Upsert(spec(Leg::A, A_SOCK, B_SOCK, None, true)), &mut socks, &mut ev);
    let b = EndpointSpec {
        srtp: carrier.cloned().map(Box::new),
        ..spec(Leg::B, B_SOCK, A_SOCK, Some(CARRIER), carrier.is_some())
    };
    t.apply(now, Command::Upsert(b), &mut socks, &mut ev);
    let webrtc = WebrtcSpec {
        session: SessionId(1),
        local: sa(A_SOCK),
        ice: IceCredentials { ufrag: "relayUfr".into(), pwd: PWD.into() },
        remote_ufrag: "brws".into(),
        remote_fingerprint: browser_cert.fingerprint(),
        role: DtlsRole::Client,
    };
    t.apply(now, Command::Webrtc(Box::new(webrtc)), &mut socks, &mut ev);
    let provider = rtc_stun::crypto::default_provider().expect("ring provider");
    let crypto = provider.crypto();
    let mut m = Message::new();
    let setters: Vec<Box<dyn Setter>> = vec![
        Box::new(BINDING_REQUEST),
        Box::new(TransactionId([1; 12])),
        Box::new(TextAttribute::new(ATTR_USERNAME, "relayUfr:brws".into())),
        Box::new(MessageIntegrity::new_short_term_integrity_with_provider(PWD.into(), crypto)),
        Box::new(FINGERPRINT),
    ];
    m.build(&setters).expect("binding request");
    let mut out = Vec::new();
    let _ = t.on_packet(now, sa(A_SOCK), sa(BROWSER), &m.raw, &mut out);
    let mut keys = None;
    for _ in 0..16 {
        while let Some(tx) = t.poll_transmit() {
            if tx.bytes[0] >= 20 {
                if let Ok(Some(DtlsEvent::Connected(k))) = browser.handle_datagram(now, &tx.bytes) {
                    keys = Some(k);
                }
            }
        }
        let flights: Vec<_> = std::iter::from_fn(|| browser.poll_transmit()).collect();
        if flights.is_empty() && keys.is_some() {
            break;
        }
        for d in flights {
            let _ = t.on_packet(now, sa(A_SOCK), sa(BROWSER), &d, &mut out);
        }
    }
    let keys = keys.expect("the browser completed the handshake");
    let first = match carrier {
        // The carrier's own view of its leg's keys: what it sends is encrypted with the relay's `theirs`.
        Some(k) => EndpointCrypto::new(&SrtpKeys { suite: k.suite, ours: k.theirs.clone(), theirs: k.ours.clone() })
            .protect(&rtp(0), false)
            .expect("protect")
            .to_vec(),
        None => rtp(0),
    };
    t.on_packet(now, sa(B_SOCK), sa(CARRIER), &first, &mut out).expect("the carrier latches");
    (t, EndpointCrypto::new(&keys))
}

fn bench(c: &mut Criterion) {
    let now = Instant::now();
    let mut g = c.benchmark_group("webrtc/handshake");
    g.throughput(Throughput::Elements(1));
    g.bench_function("certificate generation (baseline)", |b| {
        b.iter(|| black_box(DtlsCertificate::generate().expect("certificate")))
    });
    let (client_cert, server_cert) = (DtlsCertificate::generate().unwrap(), DtlsCertificate::generate().unwrap());
    g.bench_function("dtls-srtp handshake, both sides", |b| {
        b.iter_batched(
            || {
                let client = DtlsLeg::new(now, &client_cert, DtlsRole::Client, server_cert.fingerprint()).unwrap();
                let server = DtlsLeg::new(now, &server_cert, DtlsRole::Server, client_cert.fingerprint()).unwrap();
                (client, server)
            },
            |(mut client, mut server)| black_box(handshake(now, &mut client, &mut server)),
            BatchSize::SmallInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("webrtc/packet");
    g.throughput(Throughput::Elements(1));
    let mut plain = plain_table(now);
    let mut out = Vec::new();
    let packet = rtp(1);
    g.bench_function("rtp to rtp (baseline)", |b| {
        b.iter(|| black_box(plain.on_packet(now, sa(A_SOCK), sa(BROWSER), black_box(&packet), &mut out)))
    });
    let (mut t, mut browser) = webrtc_table(now, None);
    let mut seq = 0u16;
    g.bench_function("srtp from browser to rtp", |b| {
        b.iter_batched(
            || {
                seq = seq.wrapping_add(1);
                browser.protect(&rtp(seq), false).expect("protect").to_vec()
            },
            |wire| {
                let f = t.on_packet(now, sa(A_SOCK), sa(BROWSER), &wire, &mut out);
                assert!(f.is_ok(), "{f:?}");
                black_box(f)
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("rtp to srtp for browser", |b| {
        b.iter(|| black_box(t.on_packet(now, sa(B_SOCK), sa(CARRIER), black_box(&packet), &mut out)))
    });

    // The carrier's leg on SDES-SRTP: one more SRTP context per direction.
    let suite = Suite::AesCm128HmacSha1_80;
    let carrier_keys = SrtpKeys {
        suite,
        ours: KeyMaterial::generate(suite, &mut OsKeys).expect("key"),
        theirs: KeyMaterial::generate(suite, &mut OsKeys).expect("key"),
    };
    let (mut t, mut browser) = webrtc_table(now, Some(&carrier_keys));
    let mut carrier =
        EndpointCrypto::new(&SrtpKeys { suite, ours: carrier_keys.theirs.clone(), theirs: carrier_keys.ours.clone() });
    g.bench_function("srtp from browser to sdes-srtp", |b| {
        b.iter_batched(
            || {
                seq = seq.wrapping_add(1);
                browser.protect(&rtp(seq), false).expect("protect").to_vec()
            },
            |wire| {
                let f = t.on_packet(now, sa(A_SOCK), sa(BROWSER), &wire, &mut out);
                assert!(f.is_ok(), "{f:?}");
                black_box(f)
            },
            BatchSize::SmallInput,
        )
    });
    let mut carrier_seq = 0u16;
    g.bench_function("sdes-srtp to srtp for browser", |b| {
        b.iter_batched(
            || {
                carrier_seq = carrier_seq.wrapping_add(1);
                carrier.protect(&rtp(carrier_seq), false).expect("protect").to_vec()
            },
            |wire| {
                let f = t.on_packet(now, sa(B_SOCK), sa(CARRIER), &wire, &mut out);
                assert!(f.is_ok(), "{f:?}");
                black_box(f)
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
