//! The user-space relay's per-packet decision (`relay_proto::flow::Table::on_packet`) with and without topology
//! hiding inside payloads, each next to its baseline in the same run. Groups:
//! - `relay_packet/rtp`: an RTP packet (12 + 160 bytes) on an endpoint that hides RTCP (`cname_key` set: each
//!   datagram is classified, RTP then goes as it came) against one that does not (the path before hiding).
//! - `relay_packet/rtcp`: baresip's RR + SDES(CNAME) compound (40 bytes) forwarded untouched (no key) against
//!   rewritten (CNAME to the call's token, lengths recomputed); plus `rtcp::hide_sdes` alone.
//!
//! `--paired` (instead of criterion), as in sip_parse.rs: baseline and variant alternate in short batches,
//! hundreds of times, and the ratio is taken per pair: on a small shared VM only batches measured side by side
//! compare.

use criterion::{black_box, criterion_group, Criterion, Throughput};
use relay_proto::cname::CnameKey;
use relay_proto::control::{Command, EndpointSpec, Leg, SessionId};
use relay_proto::flow::Table;
use relay_proto::rtcp::hide_sdes;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const A_SOCK: &str = "198.18.1.1:30000";
const B_SOCK: &str = "198.18.2.1:30000";
const A_PEER: &str = "198.18.1.10:10000";
const B_PEER: &str = "198.18.2.10:10000";

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("literal address")
}

/// Both legs of one stream, latched, with `key` on both endpoints.
fn table(key: Option<CnameKey>) -> Table {
    let now = Instant::now();
    let mut t = Table::new(Duration::from_secs(60));
    let (mut socks, mut ev) = (Vec::new(), Vec::new());
    for (leg, local, partner, peer) in [(Leg::A, A_SOCK, B_SOCK, A_PEER), (Leg::B, B_SOCK, A_SOCK, B_PEER)] {
        let spec = EndpointSpec {
            session: SessionId(1),
            leg,
            stream: 0,
            rtcp: false,
            local: sa(local),
            partner: sa(partner),
            peer: Some(sa(peer)),
            latched: None,
            strict: true,
            clock_rates: vec![(0, 8000)],
            cname_key: key,
            srtp: None,
            srtp_pending: false,
        };
        t.apply(now, Command::Upsert(spec), &mut socks, &mut ev);
    }
    t
}

fn rtp() -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 1, 0, 0, 0, 160, 0x85, 0x90, 0x39, 0xff];
    p.extend_from_slice(&[0xd5; 160]);
    p
}

/// baresip's receiver report with its SDES, CNAME `sip:alice@198.18.1.10` (as captured).
fn rr_sdes() -> Vec<u8> {
    let cname = b"sip:alice@198.18.1.10";
    let mut p = vec![0x80, 201, 0, 1, 0x85, 0x90, 0x39, 0xff, 0x81, 202, 0, 7, 0x85, 0x90, 0x39, 0xff, 1, 21];
    p.extend_from_slice(cname);
    p.push(0);
    p
}

fn bench(c: &mut Criterion) {
    let key = CnameKey([7; 16]);
    let now = Instant::now();
    let mut g = c.benchmark_group("relay_packet/rtp");
    g.throughput(Throughput::Elements(1));
    let packet = rtp();
    for (name, k) in [("untouched (no key)", None), ("hiding (key)", Some(key))] {
        let mut t = table(k);
        let mut out = Vec::new();
        g.bench_function(name, |b| {
            b.iter(|| black_box(t.on_packet(now, sa(A_SOCK), sa(A_PEER), black_box(&packet), &mut out)))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("relay_packet/rtcp");
    g.throughput(Throughput::Elements(1));
    let packet = rr_sdes();
    for (name, k) in [("untouched (no key)", None), ("rewritten (key)", Some(key))] {
        let mut t = table(k);
        let mut out = Vec::new();
        g.bench_function(name, |b| {
            b.iter(|| black_box(t.on_packet(now, sa(A_SOCK), sa(A_PEER), black_box(&packet), &mut out)))
        });
    }
    let mut out = Vec::new();
    g.bench_function("hide_sdes alone", |b| {
        b.iter(|| black_box(hide_sdes(black_box(&packet), |c| key.token(Leg::A, c), &mut out)))
    });
    g.finish();
}

criterion_group!(benches, bench);

/// Nanoseconds per call of `f`, over a batch.
fn per_call(batch: u32, f: &mut dyn FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..batch {
        f();
    }
    t.elapsed().as_secs_f64() * 1e9 / f64::from(batch)
}

/// Baseline and variant of each group in alternating batches; prints the medians and the median ratio.
fn paired() {
    const BATCH: u32 = 2000;
    const ROUNDS: usize = 400;
    let key = CnameKey([7; 16]);
    let now = Instant::now();
    println!("{:22} {:>14} {:>14} {:>24}", "group", "baseline ns", "hiding ns", "ratio (median of pairs)");
    for (group, packet) in [("relay_packet/rtp", rtp()), ("relay_packet/rtcp", rr_sdes())] {
        let (mut plain, mut hiding) = (table(None), table(Some(key)));
        let (mut out_p, mut out_h) = (Vec::new(), Vec::new());
        let mut base = || {
            black_box(plain.on_packet(now, sa(A_SOCK), sa(A_PEER), black_box(&packet), &mut out_p)).ok();
        };
        let mut hide = || {
            black_box(hiding.on_packet(now, sa(A_SOCK), sa(A_PEER), black_box(&packet), &mut out_h)).ok();
        };
        for _ in 0..20 {
            per_call(BATCH, &mut base);
            per_call(BATCH, &mut hide);
        }
        let (mut b, mut h, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let (x, y) = if round % 2 == 0 {
                let x = per_call(BATCH, &mut base);
                (x, per_call(BATCH, &mut hide))
            } else {
                let y = per_call(BATCH, &mut hide);
                (per_call(BATCH, &mut base), y)
            };
            b.push(x);
            h.push(y);
            ratios.push(y / x);
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        println!("{group:22} {:14.1} {:14.1} {:23.2}x", median(&mut b), median(&mut h), median(&mut ratios));
    }
}

fn main() {
    if std::env::args().any(|a| a == "--paired") {
        return paired();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
