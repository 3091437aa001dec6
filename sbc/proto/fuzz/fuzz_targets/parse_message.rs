//! Fuzzes the SIP parser: arbitrary bytes must never panic, and whatever parses must survive a round trip
//! through the serializer unchanged, and every typed accessor must cope with it.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sbc_proto::msg::{frame, parse_datagram, parse_stream, Framed, HeaderName, Message};

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);
    if let Ok(m) = parse_datagram(input.clone()) {
        let again = parse_datagram(m.to_bytes()).expect("a parsed message re-serializes to a parsable one");
        assert_eq!(again, m, "round trip changed the message");
        let h = m.headers();
        let _ = (h.call_id(), h.cseq(), h.from(), h.to(), h.top_via(), h.vias());
        let _ = (h.max_forwards(), h.contacts(), h.routes(), h.record_routes(), h.content_type());
        let _ = h.list(&HeaderName::Allow).count();
        if let Message::Request(r) = &m {
            let _ = (r.uri.user(), r.uri.sip());
        }
    }
    if let Ok(Framed::Message(n)) = frame(data, 65535) {
        let _ = parse_stream(input.slice(..n));
    }
    // What the server sends back to a malformed request must itself be well formed.
    if let Err(e) = parse_datagram(input.clone()) {
        if let Some(resp) = sbc_proto::endpoint::reject::error_response(data, &e, "fuzz") {
            parse_datagram(resp).expect("our error responses parse");
        }
    }
});
