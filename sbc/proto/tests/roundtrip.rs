//! Property tests: generated valid messages survive serialize → parse unchanged, through datagrams and through
//! stream framing cut at any point; typed accessors return what was generated; and nothing panics on arbitrary or
//! mutated input.

use bytes::Bytes;
use proptest::prelude::*;
use sbc_proto::msg::{
    frame, parse_datagram, parse_stream, Framed, HeaderName, Message, Method, Request, Response, Uri,
};

/// What a generated message must read back as.
#[derive(Debug, Clone)]
struct Expect {
    branch: String,
    from_tag: String,
    to_tag: Option<String>,
    call_id: String,
    cseq: u32,
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,10}(\\.[a-z][a-z0-9-]{0,10}){0,3}",
        (0u8..=255, 0u8..=255, 0u8..=255, 1u8..=254).prop_map(|(a, b, c, d)| format!("{a}.{b}.{c}.{d}")),
        (1u16.., any::<u16>()).prop_map(|(a, b)| format!("[2001:db8::{a:x}:{b:x}]")),
    ]
}

fn sip_uri() -> impl Strategy<Value = String> {
    (
        prop::bool::ANY,
        prop::option::of("[a-zA-Z0-9+][a-zA-Z0-9._~+-]{0,15}"),
        host(),
        prop::option::of(1u16..),
        prop::collection::vec(("[a-z][a-z0-9-]{0,8}", prop::option::of("[a-zA-Z0-9._-]{1,8}")), 0..3),
    )
        .prop_map(|(secure, user, host, port, params)| {
            let mut u = String::from(if secure { "sips:" } else { "sip:" });
            if let Some(user) = user {
                u.push_str(&user);
                u.push('@');
            }
            u.push_str(&host);
            if let Some(p) = port {
                u.push_str(&format!(":{p}"));
            }
            for (n, v) in params {
                u.push(';');
                u.push_str(&n);
                if let Some(v) = v {
                    u.push('=');
                    u.push_str(&v);
                }
            }
            u
        })
}

fn any_uri() -> impl Strategy<Value = String> {
    prop_oneof![4 => sip_uri(), 1 => "\\+?[0-9]{3,15}".prop_map(|n| format!("tel:{n}"))]
}

fn display() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop_oneof![
        "[A-Za-z0-9 ,.<>@:;]{0,20}".prop_map(|s| format!("\"{}\"", s.replace('"', ""))),
        "[A-Za-z][A-Za-z0-9]{0,8}( [A-Za-z][A-Za-z0-9]{0,8}){0,2}",
    ])
}

fn name_addr(tag: Option<String>) -> impl Strategy<Value = String> {
    (display(), any_uri()).prop_map(move |(d, u)| {
        let mut s = match d {
            Some(d) => format!("{d} <{u}>"),
            None => format!("<{u}>"),
        };
        if let Some(t) = &tag {
            s.push_str(&format!(";tag={t}"));
        }
        s
    })
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("INVITE".to_owned()),
        Just("BYE".to_owned()),
        Just("OPTIONS".to_owned()),
        Just("CANCEL".to_owned()),
        Just("ACK".to_owned()),
        Just("UPDATE".to_owned()),
        "[A-Z]{3,10}",
    ]
}

fn headers(expect: Expect, method: String) -> impl Strategy<Value = Vec<(HeaderName, String)>> {
    (
        host(),
        prop::option::of(1u16..),
        prop::collection::vec(host(), 0..3),
        name_addr(Some(expect.from_tag.clone())),
        name_addr(expect.to_tag.clone()),
        prop::collection::vec(name_addr(None), 0..3),
        prop::collection::vec(sip_uri(), 0..3),
        prop::option::of(0u32..=255),
        prop::collection::vec(("X-[A-Za-z0-9-]{1,10}", "[ -~]{0,30}"), 0..4),
        prop::option::of("(INVITE|ACK|BYE)(, (INVITE|ACK|BYE)){0,3}"),
    )
        .prop_map(move |(vhost, vport, more_vias, from, to, contacts, routes, mf, ext, allow)| {
            let mut h = vec![];
            let port = vport.map_or(String::new(), |p| format!(":{p}"));
            h.push((HeaderName::Via, format!("SIP/2.0/UDP {vhost}{port};branch={};rport", expect.branch)));
            for v in more_vias {
                h.push((HeaderName::Via, format!("SIP/2.0/TCP {v};received=198.18.0.1")));
            }
            h.push((HeaderName::From, from.clone()));
            h.push((HeaderName::To, to.clone()));
            h.push((HeaderName::CallId, expect.call_id.clone()));
            h.push((HeaderName::CSeq, format!("{} {method}", expect.cseq)));
            if let Some(mf) = mf {
                h.push((HeaderName::MaxForwards, mf.to_string()));
            }
            for c in contacts {
                h.push((HeaderName::Contact, c));
            }
            for r in routes {
                h.push((HeaderName::Route, format!("<{r};lr>")));
            }
            for (n, v) in ext {
                h.push((HeaderName::from_bytes(Bytes::from(n)), v.trim().to_owned()));
            }
            if let Some(a) = allow {
                h.push((HeaderName::Allow, a));
            }
            h
        })
}

fn expect() -> impl Strategy<Value = Expect> {
    (
        "[A-Za-z0-9]{1,16}",
        "[A-Za-z0-9.~_-]{1,16}",
        prop::option::of("[A-Za-z0-9]{1,12}"),
        "[A-Za-z0-9.!%*_+`'~()<>:/?{}-]{1,24}(@[a-z0-9.]{1,16})?",
        any::<u32>(),
    )
        .prop_map(|(b, from_tag, to_tag, call_id, cseq)| Expect {
            branch: format!("z9hG4bK{b}"),
            from_tag,
            to_tag,
            call_id,
            cseq,
        })
}

fn message() -> impl Strategy<Value = (Message, Expect)> {
    (
        expect(),
        method(),
        prop::bool::ANY,
        100u16..=699,
        "[ -~]{0,20}",
        any_uri(),
        prop::collection::vec(any::<u8>(), 0..200),
    )
        .prop_flat_map(|(e, method, is_request, status, reason, uri, body)| {
            headers(e.clone(), method.clone()).prop_map(move |hs| {
                let mut headers = sbc_proto::msg::Headers::new();
                for (n, v) in hs {
                    headers.push(n, v);
                }
                let body = Bytes::from(body.clone());
                let m = if is_request {
                    Message::Request(Request {
                        method: Method::from_token(Bytes::from(method.clone())),
                        uri: Uri::parse(Bytes::from(uri.clone())).expect("generated URIs are valid"),
                        headers,
                        body,
                    })
                } else {
                    Message::Response(Response {
                        status,
                        reason: Bytes::from(reason.trim_end().to_owned()),
                        headers,
                        body,
                    })
                };
                (m, e.clone())
            })
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn serialized_messages_parse_back_to_themselves((m, _) in message()) {
        let bytes = m.to_bytes();
        let parsed = parse_datagram(bytes.clone());
        prop_assert_eq!(parsed.as_ref(), Ok(&m), "{}", String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn typed_accessors_return_what_was_generated((m, e) in message()) {
        let m = parse_datagram(m.to_bytes()).expect("valid");
        let h = m.headers();
        let via = h.top_via().expect("via");
        prop_assert_eq!(via.branch().expect("branch"), e.branch.as_bytes());
        let from = h.from().expect("from");
        prop_assert_eq!(from.tag().expect("tag"), e.from_tag.as_bytes());
        prop_assert_eq!(h.to().expect("to").tag().map(|t| t.to_vec()), e.to_tag.map(String::into_bytes));
        prop_assert_eq!(h.call_id().expect("call-id"), e.call_id.as_bytes());
        prop_assert_eq!(h.cseq().expect("cseq").seq, e.cseq);
        prop_assert!(h.contacts().is_ok() && h.routes().is_ok() && h.max_forwards().is_ok());
    }

    #[test]
    fn stream_framing_finds_every_message_wherever_the_bytes_are_cut(
        msgs in prop::collection::vec(message(), 1..4),
        cut in 1usize..64,
    ) {
        let wire: Vec<u8> = msgs.iter().flat_map(|(m, _)| m.to_bytes().to_vec()).collect();
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for chunk in wire.chunks(cut) {
            buf.extend_from_slice(chunk);
            loop {
                match frame(&buf, 1 << 20).expect("valid stream") {
                    Framed::Incomplete => break,
                    Framed::KeepAlive(n) => drop(buf.drain(..n)),
                    Framed::Message(n) => {
                        let one: Vec<u8> = buf.drain(..n).collect();
                        got.push(parse_stream(Bytes::from(one)).expect("framed message parses"));
                    }
                }
            }
        }
        prop_assert!(buf.is_empty());
        let want: Vec<Message> = msgs.into_iter().map(|(m, _)| m).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse_datagram(Bytes::from(data.clone()));
        let _ = frame(&data, 4096);
        let _ = parse_stream(Bytes::from(data));
    }

    #[test]
    fn mutated_messages_never_panic(
        (m, _) in message(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let mut bytes = m.to_bytes().to_vec();
        for (at, byte, op) in edits {
            if bytes.is_empty() {
                break;
            }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => bytes.truncate(i),
            }
        }
        if let Ok(parsed) = parse_datagram(Bytes::from(bytes)) {
            // Whatever still parses must still round-trip.
            let again = parse_datagram(parsed.to_bytes());
            prop_assert_eq!(again.as_ref(), Ok(&parsed));
        }
    }
}
