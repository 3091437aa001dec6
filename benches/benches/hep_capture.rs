//! What HEP export adds per SIP message, against what the core spends at the least on the same message (one parse),
//! in alternating batches (the `--paired` method of sip_parse.rs: on a shared VM whose speed drifts, only batches
//! measured side by side compare).
//!
//! - `parse`: `parse_datagram` of a ~1 KB carrier INVITE with SDP and of its 200 OK: the baseline.
//! - `correlate`: the driver's share of HEP, on the call path: `Endpoint::correlation` (a parse and the dialog
//!   lookups) and the queue item's copies of the addresses (the bytes are shared, not copied).
//! - `encode`: the sender task's share, off the call path: the HEP packet written into a reused buffer.
//!
//! `cargo bench -p sbc-bench --bench hep_capture` (pin it with `taskset -c 0`). Prints medians and the ratios
//! correlate/parse and encode/parse, each the median of per-pair ratios.

use bytes::Bytes;
use sbc_proto::endpoint::{Config, Endpoint};
use sbc_proto::hep::{Capture, IpProtocol, ProtocolType};
use std::hint::black_box;

const INVITE: &str = "INVITE sip:+493012345678@198.18.2.10:5060;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.18.1.10:5060;branch=z9hG4bK-524287-1---a8b2c3d4e5f60718;rport\r\n\
Max-Forwards: 69\r\n\
Contact: <sip:+4940123456@198.18.1.10:5060;transport=udp>\r\n\
To: \"Berlin Office\" <sip:+493012345678@198.18.2.10;user=phone>\r\n\
From: \"Hamburg\" <sip:+4940123456@198.18.1.10;user=phone>;tag=7a1c3f92\r\n\
Call-ID: 5f2e9a7c-3b1d-4e8f-9a6b-2c4d8e1f0a3b@198.18.1.10\r\n\
CSeq: 1 INVITE\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, PRACK, INFO, REFER, NOTIFY\r\n\
Supported: 100rel, timer, replaces\r\n\
Session-Expires: 1800;refresher=uac\r\n\
User-Agent: CarrierGW/7.4.2\r\n\
P-Asserted-Identity: <sip:+4940123456@198.18.1.10;user=phone>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 179\r\n\
\r\n\
v=0\r\n\
o=- 3894723 3894723 IN IP4 198.18.1.10\r\n\
s=-\r\n\
c=IN IP4 198.18.1.10\r\n\
t=0 0\r\n\
m=audio 30000 RTP/AVP 8 0 101\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=ptime:20\r\n";

const OK200: &str = "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 198.18.1.10:5060;branch=z9hG4bK-524287-1---a8b2c3d4e5f60718;rport=5060;received=198.18.1.10\r\n\
Contact: <sip:+493012345678@198.18.2.10:5060>\r\n\
To: \"Berlin Office\" <sip:+493012345678@198.18.2.10;user=phone>;tag=98765abc\r\n\
From: \"Hamburg\" <sip:+4940123456@198.18.1.10;user=phone>;tag=7a1c3f92\r\n\
Call-ID: 5f2e9a7c-3b1d-4e8f-9a6b-2c4d8e1f0a3b@198.18.1.10\r\n\
CSeq: 1 INVITE\r\n\
Session-Expires: 1800;refresher=uac\r\n\
Server: CarrierGW/7.4.2\r\n\
Content-Length: 0\r\n\
\r\n";

const BATCH: u32 = 200;
/// Pairs of batches under `cargo bench` (which passes `--bench`); `cargo test --all-targets` only checks that it
/// runs, with a few.
fn rounds() -> usize {
    if std::env::args().any(|a| a == "--bench") {
        400
    } else {
        4
    }
}

fn time(f: &dyn Fn()) -> f64 {
    let t = std::time::Instant::now();
    for _ in 0..BATCH {
        f();
    }
    t.elapsed().as_secs_f64() * 1e6 / f64::from(BATCH)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let endpoint = Endpoint::new(Config::default(), 1);
    let (src, dst) = ("198.18.1.10:5060".parse().unwrap(), "198.18.1.1:5060".parse().unwrap());
    println!(
        "{:8} {:>10} {:>14} {:>11} {:>20} {:>17}",
        "message", "parse µs", "correlate µs", "encode µs", "correlate/parse", "encode/parse"
    );
    for (name, text) in [("INVITE", INVITE), ("200OK", OK200)] {
        let buf = Bytes::from_static(text.as_bytes());
        assert!(sbc_proto::msg::parse_datagram(buf.clone()).is_ok(), "{name} parses");
        let parse = || {
            black_box(sbc_proto::msg::parse_datagram(black_box(&buf).clone()).is_ok());
        };
        let correlate = || {
            let c = endpoint.correlation(black_box(&buf)).expect("a Call-ID");
            black_box((src, dst, c.id().clone(), buf.clone()));
        };
        let out = std::cell::RefCell::new(Vec::with_capacity(2048));
        let encode = || {
            let mut out = out.borrow_mut();
            out.clear();
            let capture = Capture {
                src,
                dst,
                protocol: IpProtocol::Udp,
                time: (1_800_000_000, 123_456),
                kind: ProtocolType::Sip,
                agent_id: 2001,
                auth_key: None,
                correlation_id: Some(b"5f2e9a7c-3b1d-4e8f-9a6b-2c4d8e1f0a3b@198.18.1.10"),
                payload: black_box(&buf),
            };
            capture.encode(&mut out).expect("fits");
            black_box(out.len());
        };
        for _ in 0..rounds().min(20) {
            time(&parse);
            time(&correlate);
            time(&encode);
        }
        let (mut p, mut c, mut e, mut rc, mut re) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds() {
            let (tp, tc, te) = if round % 2 == 0 {
                (time(&parse), time(&correlate), time(&encode))
            } else {
                let te = time(&encode);
                let tc = time(&correlate);
                (time(&parse), tc, te)
            };
            p.push(tp);
            c.push(tc);
            e.push(te);
            rc.push(tc / tp);
            re.push(te / tp);
        }
        println!(
            "{:8} {:10.2} {:14.2} {:11.2} {:19.2}x {:16.2}x",
            name,
            median(&mut p),
            median(&mut c),
            median(&mut e),
            median(&mut rc),
            median(&mut re)
        );
    }
}
