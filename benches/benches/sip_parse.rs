//! Parse + serialize of a typical carrier INVITE with SDP (~1 KB) and its 200 OK: sbc-proto against ezk-sip-types,
//! in the same run. Groups:
//! - `parse+serialize/{INVITE,200OK}`: split the message into headers, get the headers a B2BUA needs (Via, From,
//!   To, Call-ID, CSeq, Max-Forwards, Contact, Content-Type) as typed values, write the message back out. ezk parses
//!   typed headers lazily, on `get`; sbc-proto validates them while parsing and parses them again in the accessors.
//! - `parse/{INVITE,200OK}`: the same without writing. `ezk-sip-types` decodes the headers sbc-proto validates;
//!   `ezk-sip-types-lines-only` stops at name/value strings (less work than either, for reference).
//! - `parts/{INVITE,200OK}`: pieces of sbc-proto's path (accessors, serialize, clone) on an already parsed message.
//!
//! `make bench` runs it; `benches/compare.sh` runs it several times and prints the median ratios.
//!
//! `--paired` (instead of criterion): ours and the reference alternate in short batches, hundreds of times, and
//! the ratio is taken per pair of batches. On a small shared VM whose speed drifts by tens of percent from one
//! second to the next, only batches measured side by side compare; criterion measures one function for seconds,
//! then the other.

use bytes::Bytes;
use criterion::{black_box, criterion_group, Criterion, Throughput};

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
Min-SE: 90\r\n\
User-Agent: CarrierGW/7.4.2\r\n\
P-Asserted-Identity: <sip:+4940123456@198.18.1.10;user=phone>\r\n\
Privacy: none\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 306\r\n\
\r\n";

const SDP: &str = "v=0\r\n\
o=- 3894723 3894723 IN IP4 198.18.1.10\r\n\
s=-\r\n\
c=IN IP4 198.18.1.10\r\n\
t=0 0\r\n\
m=audio 30000 RTP/AVP 8 0 18 101\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:18 G729/8000\r\n\
a=fmtp:18 annexb=no\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n\
a=rtcp:30001\r\n\
a=maxptime:40\r\n";

const OK200: &str = "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 198.18.1.10:5060;branch=z9hG4bK-524287-1---a8b2c3d4e5f60718;rport=5060;received=198.18.1.10\r\n\
Contact: <sip:+493012345678@198.18.2.10:5060>\r\n\
To: \"Berlin Office\" <sip:+493012345678@198.18.2.10;user=phone>;tag=98765abc\r\n\
From: \"Hamburg\" <sip:+4940123456@198.18.1.10;user=phone>;tag=7a1c3f92\r\n\
Call-ID: 5f2e9a7c-3b1d-4e8f-9a6b-2c4d8e1f0a3b@198.18.1.10\r\n\
CSeq: 1 INVITE\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, PRACK, INFO\r\n\
Supported: timer\r\n\
Require: timer\r\n\
Session-Expires: 1800;refresher=uac\r\n\
Server: CarrierGW/7.4.2\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 306\r\n\
\r\n";

fn message(head: &str) -> Bytes {
    assert_eq!(SDP.len(), 306, "the Content-Length above must match the SDP");
    Bytes::from(format!("{head}{SDP}"))
}

fn ours(buf: &Bytes) -> Bytes {
    use sbc_proto::msg::{parse_datagram, Contacts};
    let m = parse_datagram(buf.clone()).expect("valid");
    let h = m.headers();
    black_box(h.vias().expect("via"));
    black_box(h.from().expect("from"));
    black_box(h.to().expect("to"));
    black_box(h.call_id().expect("call-id"));
    black_box(h.cseq().expect("cseq"));
    black_box(h.max_forwards().expect("max-forwards"));
    black_box(matches!(h.contacts().expect("contact"), Contacts::Addrs(_)));
    black_box(h.content_type().expect("content-type"));
    m.to_bytes()
}

fn ours_parse_only(buf: &Bytes) -> usize {
    sbc_proto::msg::parse_datagram(buf.clone()).expect("valid").headers().len()
}

mod ezk {
    use bytes::Bytes;
    use criterion::black_box;
    use ezk_sip_types::header::typed::{CSeq, CallID, Contact, ContentType, FromTo, MaxForwards, Via};
    use ezk_sip_types::msg::{Line, MessageLine, PullParser};
    use ezk_sip_types::parse::Parse;
    use ezk_sip_types::print::AppendCtx;
    use ezk_sip_types::{Headers, Name};

    pub struct Parsed {
        line: MessageLine,
        headers: Headers,
        body: Bytes,
    }

    /// The whole-message parse ezk-sip-core does on top of ezk-sip-types: lines, start line, headers, body.
    pub fn parse(buf: &Bytes) -> Parsed {
        let mut lines = PullParser::new(buf, 0);
        let first = lines.next().expect("line").expect("complete");
        let first = std::str::from_utf8(first).expect("utf8");
        let (_, line) = MessageLine::parse(buf)(first).expect("start line");
        let mut headers = Headers::with_capacity(20);
        for l in &mut lines {
            let l = std::str::from_utf8(l.expect("complete")).expect("utf8");
            let (_, Line { name, value }) = Line::parse(buf, l).expect("header line");
            headers.insert(name, value);
        }
        let body = buf.slice(lines.head_end()..);
        Parsed { line, headers, body }
    }

    /// The typed values of the headers sbc-proto validates while parsing (ezk-sip-types decodes them lazily, on
    /// `get`), so both sides have checked the same grammar.
    fn decode_typed(p: &Parsed) {
        let h = &p.headers;
        black_box(h.get_named::<Vec<Via>>().expect("via"));
        black_box(h.get::<FromTo>(Name::FROM).expect("from"));
        black_box(h.get::<FromTo>(Name::TO).expect("to"));
        black_box(h.get_named::<CallID>().expect("call-id"));
        black_box(h.get_named::<CSeq>().expect("cseq"));
        if p.line.is_request() {
            black_box(h.get_named::<MaxForwards>().expect("max-forwards"));
        }
        black_box(h.get_named::<Vec<Contact>>().expect("contact"));
        black_box(h.get_named::<ContentType>().expect("content-type"));
    }

    pub fn parse_serialize(buf: &Bytes) -> Vec<u8> {
        let p = parse(buf);
        decode_typed(&p);
        let mut out = format!("{}\r\n{}\r\n", p.line.default_print_ctx(), p.headers).into_bytes();
        out.extend_from_slice(&p.body);
        out
    }

    /// Parse with the typed decode of the headers sbc-proto validates: the like-for-like parse.
    pub fn parse_typed(buf: &Bytes) -> usize {
        let p = parse(buf);
        decode_typed(&p);
        black_box(p.body.len()) + usize::from(p.headers.contains(&Name::VIA))
    }

    /// Lines and start line only, header values left as strings: less work than sbc-proto's parse, for reference.
    pub fn parse_lines(buf: &Bytes) -> usize {
        let p = parse(buf);
        black_box(p.body.len()) + usize::from(p.headers.contains(&Name::VIA))
    }
}

fn bench(c: &mut Criterion) {
    for (name, head) in [("INVITE", INVITE), ("200OK", OK200)] {
        let buf = message(head);
        // Both must round-trip what they parsed, or the comparison means nothing.
        assert!(sbc_proto::msg::parse_datagram(ours(&buf)).is_ok());
        assert!(ezk::parse_serialize(&buf).len() > buf.len() / 2);

        let mut g = c.benchmark_group(format!("parse+serialize/{name}"));
        g.throughput(Throughput::Bytes(buf.len() as u64));
        g.bench_function("sbc-proto", |b| b.iter(|| ours(black_box(&buf))));
        g.bench_function("ezk-sip-types", |b| b.iter(|| ezk::parse_serialize(black_box(&buf))));
        g.finish();

        let parsed = sbc_proto::msg::parse_datagram(buf.clone()).expect("valid");
        let mut g = c.benchmark_group(format!("parts/{name}"));
        g.bench_function("typed-accessors", |b| {
            b.iter(|| {
                let h = black_box(&parsed).headers();
                (h.vias().map(|v| v.len()), h.from().is_ok(), h.to().is_ok(), h.cseq().is_ok(), h.contacts().is_ok())
            })
        });
        g.bench_function("serialize", |b| b.iter(|| black_box(&parsed).to_bytes()));
        g.bench_function("clone+drop", |b| b.iter(|| black_box(&parsed).clone()));
        g.finish();

        let mut g = c.benchmark_group(format!("parse/{name}"));
        g.throughput(Throughput::Bytes(buf.len() as u64));
        g.bench_function("sbc-proto", |b| b.iter(|| ours_parse_only(black_box(&buf))));
        g.bench_function("ezk-sip-types", |b| b.iter(|| ezk::parse_typed(black_box(&buf))));
        g.bench_function("ezk-sip-types-lines-only", |b| b.iter(|| ezk::parse_lines(black_box(&buf))));
        g.finish();
    }
}

criterion_group!(benches, bench);

/// Batches of `BATCH` calls, alternating ours and the reference (and which goes first), `ROUNDS` times.
fn paired() {
    const BATCH: u32 = 200;
    const ROUNDS: usize = 400;
    println!("{:28} {:>13} {:>17} {:>26}", "group", "sbc-proto µs", "ezk-sip-types µs", "ratio (median of pairs)");
    for (name, head) in [("INVITE", INVITE), ("200OK", OK200)] {
        let buf = message(head);
        let time = |f: &dyn Fn()| {
            let t = std::time::Instant::now();
            for _ in 0..BATCH {
                f();
            }
            t.elapsed().as_secs_f64() * 1e6 / f64::from(BATCH)
        };
        let ours_f = || {
            black_box(ours(black_box(&buf)));
        };
        let ref_f = || {
            black_box(ezk::parse_serialize(black_box(&buf)));
        };
        for _ in 0..20 {
            time(&ours_f);
            time(&ref_f);
        }
        let (mut o, mut r, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let (a, b) = if round % 2 == 0 {
                let a = time(&ours_f);
                (a, time(&ref_f))
            } else {
                let b = time(&ref_f);
                (time(&ours_f), b)
            };
            o.push(a);
            r.push(b);
            ratios.push(b / a);
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        println!(
            "{:28} {:13.2} {:17.2} {:25.2}x",
            format!("parse+serialize/{name}"),
            median(&mut o),
            median(&mut r),
            median(&mut ratios)
        );
    }
}

fn main() {
    if std::env::args().any(|a| a == "--paired") {
        return paired();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
