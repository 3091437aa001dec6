//! What the admin API costs the driver, which answers it between two SIP messages: each figure is a ratio against
//! handling one OPTIONS request through the same core in the same run (parse, transaction, answer). Groups:
//! - `admin/snapshot_1000_calls`: `GET /calls` with 1,000 answered calls up (every call copied out).
//! - `admin/one_call`: `GET /calls/{id}`.
//! - `admin/route_lookup`: `GET /route/{number}` on a route of two weighted carriers and a backup.
//! - `admin/trunk_status`: `GET /trunks` with three trunks (the calls counted per trunk).
//! - `admin/options_request`: the baseline, one OPTIONS in and its 200 out, time moving 1 ms per request (run last:
//!   its timers would otherwise run into the others).

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use sbc_proto::endpoint::{Config, Endpoint, Output};
use sbc_proto::msg::{parse_datagram, HeaderName, Message, Response};
use sbc_proto::routing::{Candidate, Gateway, Plan, PrefixTable, SourceMatch, Trunk, TrunkId};
use sbc_proto::transport::{Peer, Transport};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CALLS: usize = 1000;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

fn endpoint() -> Endpoint {
    let pbx = Trunk {
        sources: vec![SourceMatch { net: "198.18.1.10/32".parse().expect("net"), port: None }],
        ..Trunk::new("pbx")
    };
    let carrier = |name: &str, gw: &str| Trunk {
        gateways: vec![Gateway { transport: Transport::Udp, addr: addr(gw) }],
        ..Trunk::new(name)
    };
    let plan = Plan {
        trunks: vec![pbx, carrier("carrier-b", "198.18.2.10:5060"), carrier("carrier-c", "198.18.2.11:5060")],
        routes: PrefixTable::default(),
        catch_all: Some(vec![
            Candidate::new(TrunkId(1), 1).with_weight(60),
            Candidate::new(TrunkId(2), 1).with_weight(40),
        ]),
        unknown_source: Default::default(),
        max_tries: 3,
        max_post_dial: Duration::from_secs(60),
        max_duration: None,
        keepalive: None,
    };
    let config = Config {
        plan: Arc::new(plan),
        locals: vec![(Transport::Udp, addr("198.18.1.1:5060")), (Transport::Udp, addr("198.18.2.1:5060"))],
        ..Config::default()
    };
    Endpoint::new(config, 7)
}

fn peer(local: &str, remote: &str) -> Peer {
    Peer { transport: Transport::Udp, local: addr(local), remote: addr(remote), conn: None }
}

/// Sets up call `n` until both legs are confirmed: INVITE from the PBX, 200 from the carrier it went to.
fn answered_call(ep: &mut Endpoint, now: Instant, n: usize) {
    let invite = format!(
        "INVITE sip:+4930{n:06}@198.18.1.1 SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.1.10:5060;branch=z9hG4bK-{n}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:+4940111@198.18.1.10>;tag=a{n}\r\nTo: <sip:+4930{n:06}@198.18.1.1>\r\n\
         Call-ID: bench-{n}\r\nCSeq: 1 INVITE\r\nContact: <sip:a@198.18.1.10:5060>\r\nContent-Length: 0\r\n\r\n"
    );
    ep.handle_message(now, peer("198.18.1.1:5060", "198.18.1.10:5060"), Bytes::from(invite));
    let mut leg_b = None;
    while let Some(o) = ep.poll_output() {
        if let Output::Transmit { peer, bytes } = o {
            if let Ok(Message::Request(r)) = parse_datagram(bytes) {
                leg_b = Some((peer.remote, r));
            }
        }
    }
    let (carrier, req) = leg_b.expect("leg B's INVITE");
    let mut ok = Response::to_request(&req, 200, "OK");
    let to = String::from_utf8_lossy(req.headers.get(&HeaderName::To).expect("To")).into_owned();
    ok.headers.set(HeaderName::To, format!("{to};tag=b{n}"));
    ok.headers.push(HeaderName::Contact, format!("<sip:b@{carrier}>"));
    ep.handle_message(now, peer("198.18.2.1:5060", &carrier.to_string()), ok.to_bytes());
    let mut to_a = None;
    while let Some(o) = ep.poll_output() {
        if let Output::Transmit { bytes, .. } = o {
            if let Ok(Message::Response(r)) = parse_datagram(bytes) {
                to_a = r.headers.get(&HeaderName::To).map(|t| String::from_utf8_lossy(t).into_owned());
            }
        }
    }
    // A's ACK: the call is up and nothing of it is left to retransmit.
    let ack = format!(
        "ACK sip:198.18.1.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.1.10:5060;branch=z9hG4bK-ack{n}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:+4940111@198.18.1.10>;tag=a{n}\r\nTo: {}\r\nCall-ID: bench-{n}\r\n\
         CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
        to_a.expect("200 to A")
    );
    ep.handle_message(now, peer("198.18.1.1:5060", "198.18.1.10:5060"), Bytes::from(ack));
    while ep.poll_output().is_some() {}
}

fn bench(c: &mut Criterion) {
    let mut ep = endpoint();
    let now = Instant::now();
    for n in 0..CALLS {
        answered_call(&mut ep, now, n);
    }
    let calls = ep.calls_snapshot(now);
    assert_eq!(calls.len(), CALLS);
    assert!(calls.iter().all(|c| c.state == sbc_proto::b2bua::CallState::Answered), "every call answered");
    let mut group = c.benchmark_group("admin");
    group.bench_function("snapshot_1000_calls", |b| b.iter(|| black_box(ep.calls_snapshot(now))));
    let id = calls[CALLS / 2].id;
    group.bench_function("one_call", |b| b.iter(|| black_box(ep.call_snapshot(black_box(id), now))));
    group.bench_function("route_lookup", |b| {
        b.iter(|| black_box(ep.route_lookup(black_box("+4930123456"), Some("pbx"), now).expect("known trunk")))
    });
    group.bench_function("trunk_status", |b| b.iter(|| black_box(ep.trunk_status(now))));
    let mut branch = 0u64;
    let mut t = now;
    group.bench_function("options_request", |b| {
        b.iter(|| {
            branch += 1;
            // A millisecond per request, its timers fired as due: the transaction table stays the size a steady
            // 1,000 requests per second keep (timer J, 32 s), not a table that only grows.
            t += Duration::from_millis(1);
            if ep.poll_timeout().is_some_and(|d| d <= t) {
                ep.handle_timeout(t);
            }
            let options = format!(
                "OPTIONS sip:198.18.1.1 SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.1.10:5060;branch=z9hG4bK-o{branch}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:p@198.18.1.10>;tag=o\r\nTo: <sip:198.18.1.1>\r\n\
                 Call-ID: opt-{branch}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            );
            ep.handle_message(t, peer("198.18.1.1:5060", "198.18.1.10:5060"), Bytes::from(options));
            while let Some(o) = ep.poll_output() {
                black_box(o);
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
