//! Fuzzes the SIP parser (sbc_proto::msg). Invariants, on any input:
//! - nothing panics: datagram parse, stream framing and stream parse, every typed accessor;
//! - a message that parses serializes to bytes that parse to the same message, and serializing is a fixed point;
//! - the headers the parser validates (Via, From, To, Call-ID, CSeq, Max-Forwards, Contact, Route, Record-Route,
//!   Content-Type) answer their typed accessors without error;
//! - what the server sends back for a malformed request is itself a well-formed message.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sbc_proto::msg::{frame, parse_datagram, parse_stream, Contacts, Framed, HeaderName, Message, NameAddr};

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);
    match parse_datagram(input.clone()) {
        Ok(m) => check_message(&m),
        Err(e) => {
            assert!(e.offset <= data.len() && e.line >= 1, "error position outside the input: {e:?}");
            let _ = (e.to_string(), e.status(), e.reason());
            if let Some(resp) = sbc_proto::endpoint::reject::error_response(data, &e, "fuzz") {
                parse_datagram(resp).expect("our error responses parse");
            }
        }
    }
    match frame(data, 65535) {
        Ok(Framed::Message(n)) => {
            assert!(n <= data.len(), "framed {n} bytes of {}", data.len());
            if let Ok(m) = parse_stream(input.slice(..n)) {
                check_message(&m);
            }
        }
        Ok(Framed::KeepAlive(n)) => assert!(n > 0 && data[..n].iter().all(|b| matches!(b, b'\r' | b'\n'))),
        Ok(Framed::Incomplete) | Err(_) => {}
    }
});

fn check_message(m: &Message) {
    let bytes = m.to_bytes();
    let again = parse_datagram(bytes.clone()).expect("a parsed message re-serializes to a parsable one");
    assert_eq!(&again, m, "round trip changed the message");
    assert_eq!(again.to_bytes(), bytes, "serialization is not a fixed point");
    // Content-Length written from the body frames the same message on a stream.
    assert_eq!(frame(&bytes, usize::MAX), Ok(Framed::Message(bytes.len())));

    let h = m.headers();
    assert!(h.call_id().is_ok());
    let cseq = h.cseq().expect("validated CSeq");
    if let Message::Request(r) = m {
        assert_eq!(cseq.method, r.method, "validated CSeq method");
        let _ = (r.uri.scheme(), r.uri.user(), r.uri.sip(), r.uri.tel(), r.uri.to_string());
    }
    let _ = cseq.to_bytes();
    let vias = h.vias().expect("validated Via");
    assert!(!vias.is_empty());
    assert_eq!(h.top_via().expect("validated top Via"), vias[0]);
    for v in &vias {
        let _ = (v.protocol(), v.version(), v.transport(), v.host(), v.port, v.branch(), v.received(), v.rport());
        let _ = (v.has_rfc3261_branch(), v.params().to_vec());
        let mut stamped = v.clone();
        stamped.set_param("received", Some(b"192.0.2.1"));
        stamped.set_param("rport", Some(b"5060"));
        assert_eq!(stamped.received(), Some(&b"192.0.2.1"[..]));
    }
    let mut addrs = vec![h.from().expect("validated From"), h.to().expect("validated To")];
    if let Contacts::Addrs(c) = h.contacts().expect("validated Contact") {
        addrs.extend(c);
    }
    addrs.extend(h.routes().expect("validated Route"));
    addrs.extend(h.record_routes().expect("validated Record-Route"));
    for a in &addrs {
        let _ = (a.display(), a.tag(), a.params().to_vec(), a.uri().sip(), a.uri().user());
        let reparsed = NameAddr::parse(&a.to_bytes()).expect("a written name-addr parses");
        assert_eq!(reparsed.uri_bytes(), a.uri_bytes());
        assert_eq!(reparsed.tag(), a.tag());
    }
    let _ = h.max_forwards().expect("validated Max-Forwards");
    if let Some(ct) = h.content_type().expect("validated Content-Type") {
        let _ = (ct.is("application", "sdp"), ct.params.to_vec());
    }
    let _ = h.list(&HeaderName::Allow).count() + h.list(&HeaderName::Supported).count();
}
