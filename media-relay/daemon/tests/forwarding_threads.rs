//! The relay on two forwarding threads: two sessions that land on different threads both forward, each on its
//! own thread, and come back with their final figures. Loopback only (127.0.0.1, ports the kernel hands out), no
//! XDP, no root needed.

use media_relay::relay::{Relay, RelayConfig};
use media_relay::xdp::XdpMode;
use relay_proto::control::{Command, EndpointSpec, Event, Leg, SessionId};
use relay_proto::threads::thread_of;
use std::net::{SocketAddr, UdpSocket};
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

const PACKETS: u16 = 200;

/// `n` distinct ports on 127.0.0.1, free a moment ago (the relay binds them next): held together while chosen, so
/// that none is handed out twice, and after every peer socket of the test is bound.
fn free_ports(n: usize) -> Vec<SocketAddr> {
    let held: Vec<UdpSocket> = (0..n).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    held.iter().map(|s| s.local_addr().unwrap()).collect()
}

fn spec(session: SessionId, leg: Leg, local: SocketAddr, partner: SocketAddr, peer: SocketAddr) -> EndpointSpec {
    EndpointSpec {
        session,
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

fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&[0xd5; 160]);
    p
}

/// One call through the relay: the caller's socket, the relay's A side it sends to, the callee's socket.
struct Call {
    session: SessionId,
    caller: UdpSocket,
    relay_a: SocketAddr,
    relay_b: SocketAddr,
    callee: UdpSocket,
}

/// The peers of a call, bound before any relay port is chosen.
fn peers() -> (UdpSocket, UdpSocket) {
    let caller = UdpSocket::bind("127.0.0.1:0").unwrap();
    let callee = UdpSocket::bind("127.0.0.1:0").unwrap();
    callee.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    (caller, callee)
}

fn call(relay: &Relay, session: SessionId, (caller, callee): (UdpSocket, UdpSocket), ports: &[SocketAddr]) -> Call {
    let (relay_a, relay_b) = (ports[0], ports[1]);
    assert!(relay.send(Command::Upsert(spec(session, Leg::A, relay_a, relay_b, caller.local_addr().unwrap()))));
    assert!(relay.send(Command::Upsert(spec(session, Leg::B, relay_b, relay_a, callee.local_addr().unwrap()))));
    Call { session, caller, relay_a, relay_b, callee }
}

/// Sends `PACKETS` from the caller and returns how many reached the callee (bounded: 10 s).
fn carry(c: &Call) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 2048];
    let mut got = 0;
    for seq in 0..PACKETS {
        c.caller.send_to(&rtp(seq), c.relay_a).unwrap();
        // Paced one by one: loopback loses nothing then, so every missing packet is the relay's.
        while Instant::now() < deadline {
            match c.callee.recv_from(&mut buf) {
                Ok((n, _)) => {
                    assert_eq!(n, 172, "the payload crosses untouched");
                    got += 1;
                    break;
                }
                // The relay's sockets may still be opening for the first packets: send again.
                Err(_) if got == 0 => c.caller.send_to(&rtp(seq), c.relay_a).map(drop).unwrap(),
                Err(_) => break,
            }
        }
    }
    got
}

#[test]
fn two_sessions_on_different_threads_both_forward() {
    let threads = NonZeroUsize::new(2).unwrap();
    let config = RelayConfig { threads, xdp: XdpMode::Off, ..RelayConfig::default() };
    let (relay, mut events) = Relay::start(config).expect("relay starts");
    assert_eq!(relay.threads(), 2);
    let on = |t: usize| (1..).map(SessionId).find(|&s| thread_of(s, threads) == t).unwrap();
    let (s0, s1) = (on(0), on(1));
    let (p0, p1) = (peers(), peers());
    let ports = free_ports(4);
    let calls = [call(&relay, s0, p0, &ports[..2]), call(&relay, s1, p1, &ports[2..])];
    for c in &calls {
        let got = carry(c);
        assert!(got >= PACKETS - 1, "session {:?}: {got} of {PACKETS} packets arrived", c.session);
    }
    let per_thread = relay.thread_snapshots();
    assert_eq!(per_thread.len(), 2);
    for (t, snap) in per_thread.iter().enumerate() {
        // Each thread holds one session (two sockets) and forwarded its packets (a first one sent twice at most).
        assert_eq!((snap.sessions, snap.sockets), (1, 2), "thread {t}: {snap:?}");
        assert!(snap.forwarded >= u64::from(PACKETS - 1), "thread {t} forwarded {}", snap.forwarded);
    }
    assert_eq!((relay.snapshot().sessions, relay.snapshot().sockets), (2, 4));

    for c in &calls {
        assert!(relay.send(Command::Remove { session: c.session }));
    }
    let mut finals = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while finals.len() < 2 && Instant::now() < deadline {
        match events.try_recv() {
            Ok(Event::Stats(s)) => finals.push(s),
            Ok(_) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    finals.sort_by_key(|s| s.session);
    let mut want = [s0, s1];
    want.sort();
    assert_eq!(finals.iter().map(|s| s.session).collect::<Vec<_>>(), want, "one final Stats per session");
    for s in &finals {
        assert!(s.legs[Leg::A.index()].received.packets >= u64::from(PACKETS - 1), "{s:?}");
        assert!(s.legs[Leg::B.index()].sent >= u64::from(PACKETS - 1), "{s:?}");
    }
    // Nothing moves any more: the relay's counters are its threads' added up.
    let (total, per_thread) = (relay.snapshot(), relay.thread_snapshots());
    assert_eq!(total.forwarded, per_thread[0].forwarded + per_thread[1].forwarded);
    assert_eq!(total.received, per_thread[0].received + per_thread[1].received);
    assert_eq!((total.sessions, total.sockets), (0, 0));
    // A session's Stats come once its sockets are closed: a controller may hand the ports out again at once.
    for c in &calls {
        for port in [c.relay_a, c.relay_b] {
            UdpSocket::bind(port).unwrap_or_else(|e| panic!("{port} still taken after the session's Stats: {e}"));
        }
    }
    relay.stop();
}

/// IPv6 sockets are found from their readiness by their descriptor (IPv4 ones carry their address in the poller's
/// token): a session on ::1 forwards, and once its final Stats are out its ports are free to bind again at once.
#[test]
fn an_ipv6_session_forwards_and_its_ports_are_free_when_its_stats_arrive() {
    let config = RelayConfig { threads: NonZeroUsize::MIN, xdp: XdpMode::Off, ..RelayConfig::default() };
    let (relay, mut events) = Relay::start(config).expect("relay starts");
    let caller = UdpSocket::bind("[::1]:0").unwrap();
    let callee = UdpSocket::bind("[::1]:0").unwrap();
    callee.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let held: Vec<UdpSocket> = (0..2).map(|_| UdpSocket::bind("[::1]:0").unwrap()).collect();
    let ports: Vec<SocketAddr> = held.iter().map(|s| s.local_addr().unwrap()).collect();
    drop(held);
    let c = call(&relay, SessionId(1), (caller, callee), &ports);
    let got = carry(&c);
    assert!(got >= PACKETS - 1, "{got} of {PACKETS} packets arrived over IPv6");

    assert!(relay.send(Command::Remove { session: c.session }));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match events.try_recv() {
            Ok(Event::Stats(s)) => {
                assert_eq!(s.session, c.session);
                break;
            }
            Ok(_) => {}
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => panic!("no final Stats within 5 s"),
        }
    }
    for p in &ports {
        UdpSocket::bind(p).unwrap_or_else(|e| panic!("{p} still held after the session's Stats: {e}"));
    }
}
