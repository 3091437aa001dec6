//! A burst of one stream through the relay: the datagrams that one receive brings in leave joined in GSO sends, and
//! the callee still gets every datagram whole, at its own size and in order, whatever sizes break the runs (a
//! shorter one ends a run, a longer one starts the next, one above the join limit goes alone). Loopback only
//! (127.0.0.1, ports the kernel hands out), no XDP; root for the callee's forced receive buffer.

use media_relay::relay::{Relay, RelayConfig};
use media_relay::xdp::XdpMode;
use relay_proto::control::{Command, EndpointSpec, Leg, SessionId};
use std::net::{SocketAddr, UdpSocket};
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

const BURST: u16 = 400;

fn spec(leg: Leg, local: SocketAddr, partner: SocketAddr, peer: SocketAddr) -> EndpointSpec {
    EndpointSpec {
        session: SessionId(1),
        leg,
        stream: 0,
        rtcp: false,
        local,
        partner,
        peer: Some(peer),
        latched: None,
        strict: true,
        clock_rates: vec![(0, 8000)],
        cname_key: None,
        srtp: None,
        srtp_pending: false,
    }
}

/// RTP packet `seq` of `len` bytes (12-byte header, then a pattern of the sequence number).
fn rtp(seq: u16, len: usize) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.resize(len, seq as u8);
    p
}

/// The size of burst packet `seq`: G.711's 172 bytes, but for the few that break a run.
fn size_of(seq: u16) -> usize {
    match seq {
        100 => 100,
        200 => 300,
        300 => 1400,
        _ => 172,
    }
}

#[test]
fn a_burst_of_one_stream_arrives_whole_and_in_order_through_joined_sends() {
    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    let callee = UdpSocket::bind("127.0.0.1:0").unwrap();
    callee.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    nix::sys::socket::setsockopt(&callee, nix::sys::socket::sockopt::RcvBufForce, &(8 << 20))
        .expect("a forced 8 MiB receive buffer for the callee (run the test as root)");
    let held: Vec<UdpSocket> = (0..2).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    let ports: Vec<SocketAddr> = held.iter().map(|s| s.local_addr().unwrap()).collect();
    drop(held);
    let config = RelayConfig { threads: NonZeroUsize::MIN, xdp: XdpMode::Off, ..RelayConfig::default() };
    let (relay, _events) = Relay::start(config).expect("relay starts");
    let (a, b) = (ports[0], ports[1]);
    assert!(relay.send(Command::Upsert(spec(Leg::A, a, b, caller.local_addr().unwrap()))));
    assert!(relay.send(Command::Upsert(spec(Leg::B, b, a, callee.local_addr().unwrap()))));

    // One packet through first (sent again until the relay's sockets are open): the burst then meets a latched
    // flow.
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = rtp(u16::MAX, 172);
    loop {
        caller.send_to(&first, a).unwrap();
        if let Ok((n, _)) = callee.recv_from(&mut buf) {
            assert_eq!(&buf[..n], &first[..]);
            break;
        }
        assert!(Instant::now() < deadline, "the relay forwarded nothing in 10 s");
    }
    let settled =
        |s: &media_relay::relay::CounterSnapshot| s.forwarded + s.dropped_no_target + s.dropped_unknown == s.received;
    let mut before = relay.snapshot();
    while !settled(&before) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        before = relay.snapshot();
    }

    // Back to back: the relay, which sends each datagram on, falls behind and reads several per receive.
    for seq in 0..BURST {
        caller.send_to(&rtp(seq, size_of(seq)), a).unwrap();
    }
    let mut got = Vec::new();
    while got.len() < usize::from(BURST) {
        let Ok((n, _)) = callee.recv_from(&mut buf) else { break };
        got.push(buf[..n].to_vec());
    }
    // The relay counts a send once it returns, which may be after the callee has read it.
    let settle = Instant::now() + Duration::from_secs(2);
    let mut after = relay.snapshot();
    while after.forwarded - before.forwarded < u64::from(BURST) && Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(10));
        after = relay.snapshot();
    }
    let want: Vec<Vec<u8>> = (0..BURST).map(|seq| rtp(seq, size_of(seq))).collect();
    assert_eq!(got.len(), want.len(), "datagrams the callee got of the burst");
    for (seq, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "datagram {seq}: whole, at its own size ({} bytes), in order", w.len());
    }
    let received = after.received - before.received;
    let calls = after.receive_calls - before.receive_calls;
    assert_eq!(received, u64::from(BURST), "the relay received the burst");
    assert_eq!(after.forwarded - before.forwarded, u64::from(BURST), "and counted every datagram forwarded");
    assert_eq!(after.send_errors, 0);
    assert!(calls < received, "{received} datagrams in {calls} receives: some receives held several");
    relay.stop();
}
