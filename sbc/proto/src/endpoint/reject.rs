//! Answering malformed requests (RFC 3261 §8.2, §21.4.1; RFC 4475 §3.1.2): a 400 (or 505, 513) that says what is
//! wrong, built from whatever header lines can be salvaged from the raw bytes.

use crate::msg::{HeaderName, ParseError, ParseErrorKind, Request, Response};
use bytes::{BufMut, Bytes, BytesMut};

/// The header lines a response must echo (RFC 3261 §8.2.6.2), in long and compact form.
const ECHOED: &[(&str, Option<&str>)] =
    &[("Via", Some("v")), ("From", Some("f")), ("To", Some("t")), ("Call-ID", Some("i")), ("CSeq", None)];

/// Builds the error response to a request that failed to parse, or `None` when no answer is possible or
/// appropriate: the message was a response (§18.1.2: dropped), or the header lines needed to address an answer
/// are missing or are themselves malformed (the answer would not parse either). `server` goes into the Server
/// header.
pub fn error_response(raw: &[u8], err: &ParseError, server: &str) -> Option<Bytes> {
    let start = raw.iter().position(|&b| b != b'\r' && b != b'\n')?;
    let raw = &raw[start..];
    if raw.len() < 4 || raw[..4].eq_ignore_ascii_case(b"SIP/") {
        return None;
    }
    let head_end = memchr::memmem::find(raw, b"\r\n\r\n").unwrap_or(raw.len());
    let mut found: Vec<(&str, &[u8])> = Vec::new();
    for line in raw[..head_end].split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = trim(&line[..colon]);
        let Some((canon, _)) = ECHOED.iter().find(|(long, short)| {
            name.eq_ignore_ascii_case(long.as_bytes()) || short.is_some_and(|s| name.eq_ignore_ascii_case(s.as_bytes()))
        }) else {
            continue;
        };
        let value = trim(&line[colon + 1..]);
        // A value the parser would refuse (a control character, not UTF-8) is not echoed: see the end.
        if value.is_empty() || crate::msg::scan::check_text(value, true).is_err() {
            continue;
        }
        found.push((canon, value));
    }
    for (canon, _) in ECHOED {
        if !found.iter().any(|(c, _)| c == canon) {
            return None;
        }
    }
    let status = err.status();
    let reason: &str = match status {
        505 => "Version Not Supported",
        513 => "Message Too Large",
        _ => "Bad Request",
    };
    let mut out = BytesMut::with_capacity(512);
    out.put_slice(format!("SIP/2.0 {status} {reason}\r\n").as_bytes());
    for (canon, value) in &found {
        out.put_slice(canon.as_bytes());
        out.put_slice(b": ");
        out.put_slice(value);
        out.put_slice(b"\r\n");
    }
    // RFC 3261 §20.43: 399 is the miscellaneous warning; the text tells the peer's engineer what to fix.
    let text = err.to_string().replace(['"', '\\'], "'");
    out.put_slice(format!("Warning: 399 sbc \"{text}\"\r\nServer: {server}\r\n").as_bytes());
    if matches!(err.kind, ParseErrorKind::UnsupportedVersion) {
        out.put_slice(b"Supported: \r\n");
    }
    out.put_slice(b"Content-Length: 0\r\n\r\n");
    // When the very headers we must echo are the malformed ones, a response would carry the damage back and the
    // peer could not match it to anything; send nothing rather than something broken.
    let out = out.freeze();
    crate::msg::parse_datagram(out.clone()).ok().map(|_| out)
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| b != b' ' && b != b'\t').unwrap_or(s.len());
    let end = s.iter().rposition(|&b| b != b' ' && b != b'\t').map_or(start, |e| e + 1);
    &s[start..end]
}

/// The stateless `503 Service Unavailable` of overload control to a new INVITE (RFC 3261 §8.2.7, RFC 6357):
/// Retry-After, our Server header and To tag `tag`. Built by the core, or by the UDP transport before the request
/// is queued at all.
pub fn overloaded(req: &Request, server: &str, retry_after: u32, tag: &[u8]) -> Response {
    let mut r = Response::to_request(req, 503, "Service Unavailable");
    r.headers.push(HeaderName::RetryAfter, retry_after.to_string());
    r.headers.push(HeaderName::Server, server.to_owned());
    if let Some(to) = r.headers.get(&HeaderName::To) {
        r.headers.set(HeaderName::To, crate::dialog::with_tag(to, Some(tag)));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{parse_datagram, Message, Response};

    #[test]
    fn answers_a_cseq_mismatch_with_400_and_says_why() {
        let raw = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nf: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n\r\n";
        let err = parse_datagram(Bytes::from_static(raw)).expect_err("mismatch");
        let resp = error_response(raw, &err, "sbc").expect("answerable");
        let Ok(Message::Response(r)) = parse_datagram(resp) else { panic!("our 400 must parse") };
        assert_eq!(r.status, 400);
        assert_eq!(r.headers.call_id().expect("call-id"), b"c1");
        let warning = r.headers.get(&crate::msg::HeaderName::Warning).expect("warning");
        assert!(String::from_utf8_lossy(warning).contains("CSeq method"), "{warning:?}");
    }

    /// The 400 the endpoint sends for `raw`, and its Warning text.
    fn answer_400(raw: &[u8]) -> (Response, String) {
        let err = parse_datagram(Bytes::copy_from_slice(raw)).expect_err("malformed");
        let resp = error_response(raw, &err, "sbc").expect("answerable");
        let Ok(Message::Response(r)) = parse_datagram(resp) else { panic!("our 400 must parse") };
        let warning = String::from_utf8(r.headers.get(&crate::msg::HeaderName::Warning).expect("warning").to_vec());
        (r, warning.expect("UTF-8 warning"))
    }

    const HEAD: &str = "INVITE sip:+4930123@198.18.1.1 SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.1.10;branch=z9hG4bKs1\r\n\
        From: <sip:a@198.18.1.10>;tag=1\r\nTo: <sip:+4930123@198.18.1.1>\r\nCall-ID: strict-1\r\nCSeq: 1 INVITE\r\n";

    #[test]
    fn control_character_in_a_request_gets_400_naming_the_header_and_byte() {
        let raw = format!("{HEAD}Subject: hello\0world\r\nContent-Length: 0\r\n\r\n");
        let (r, warning) = answer_400(raw.as_bytes());
        assert_eq!((r.status, &r.reason[..]), (400, &b"Bad Request"[..]));
        assert_eq!(r.headers.call_id().expect("call-id"), b"strict-1");
        assert_eq!(warning, "399 sbc \"line 7 (byte 186): control character 0x00 in the Subject header\"");
    }

    #[test]
    fn invalid_utf8_in_a_request_gets_400_naming_the_header() {
        let mut raw = HEAD.as_bytes().to_vec();
        raw.extend_from_slice(b"X-Caller-Name: M\xfcller\r\nContent-Length: 0\r\n\r\n");
        let (r, warning) = answer_400(&raw);
        assert_eq!(r.status, 400);
        assert!(warning.ends_with("X-Caller-Name header is not valid UTF-8\""), "{warning}");
    }

    #[test]
    fn body_without_content_type_gets_400_saying_so() {
        let raw = format!("{HEAD}Content-Length: 5\r\n\r\nv=0\r\n");
        let (r, warning) = answer_400(raw.as_bytes());
        assert_eq!(r.status, 400);
        assert!(warning.ends_with("non-empty body without Content-Type\""), "{warning}");
    }

    #[test]
    fn control_character_in_a_header_we_must_echo_gets_no_answer() {
        // Echoing the From would carry the NUL back; the peer could not match a repaired one to its request.
        let raw = HEAD.replace(";tag=1", ";tag=1\0") + "Content-Length: 0\r\n\r\n";
        let err = parse_datagram(Bytes::from(raw.clone())).expect_err("NUL in From");
        assert!(matches!(err.kind, ParseErrorKind::ControlCharacter { byte: 0, .. }), "{err:?}");
        assert!(error_response(raw.as_bytes(), &err, "sbc").is_none());
    }

    #[test]
    fn no_answer_to_responses_or_unaddressable_requests() {
        let resp = b"SIP/2.0 4294967301 Big\r\nVia: SIP/2.0/UDP h\r\n\r\n";
        let err = parse_datagram(Bytes::from_static(resp)).expect_err("bad code");
        assert!(error_response(resp, &err, "sbc").is_none());
        let bad_from = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: Bell, Alexander <sip:x@y>\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n";
        let err = parse_datagram(Bytes::from_static(bad_from)).expect_err("bad display name");
        assert!(error_response(bad_from, &err, "sbc").is_none(), "echoing the broken From would not parse");
        let no_via = b"OPTIONS sip:a@b SIP/2.0\r\nFrom: <sip:x@y>\r\n\r\n";
        let err = parse_datagram(Bytes::from_static(no_via)).expect_err("no via");
        assert!(error_response(no_via, &err, "sbc").is_none());
    }
}
