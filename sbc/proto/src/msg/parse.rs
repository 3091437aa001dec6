//! Parsing whole messages from datagrams and from framed stream data (RFC 3261 §7, §18.3).

use super::addr;
use super::error::{Field, ParseError, ParseErrorKind as K};
use super::header::{HeaderName, Headers, Lexed};
use super::message::{Message, Request, Response};
use super::method::Method;
use super::scan::{check_text, class, has_list_comma, parse_u64, trim_range, ListElements, TextFault};
use super::uri::Uri;
use super::values::{check_call_id, lex_cseq, lex_media_type};
use super::via;
use bytes::Bytes;

/// Parses one message received as a datagram (UDP). Content-Length may be absent, in which case the body is the
/// rest of the datagram; if present it may not exceed what arrived (RFC 4475 §3.1.2.2), and octets beyond it are
/// ignored (RFC 3261 §18.3, RFC 4475 §3.1.1.8).
pub fn parse_datagram(input: Bytes) -> Result<Message, ParseError> {
    parse(input, Framing::Datagram)
}

/// Parses one message cut from a stream by [`frame`]: Content-Length is mandatory and exact.
pub fn parse_stream(input: Bytes) -> Result<Message, ParseError> {
    parse(input, Framing::Stream)
}

/// What [`frame`] found at the start of a stream buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framed {
    /// A whole message occupies the first `n` bytes (leading CRLFs included); hand them to [`parse_stream`].
    Message(usize),
    /// The first `n` bytes are CRLFs: keep-alives (RFC 5626 §3.5.1) or inter-message padding; discard them.
    KeepAlive(usize),
    /// Not enough data yet.
    Incomplete,
}

/// Finds the extent of the first message in a stream buffer (TCP, TLS), by the empty line ending the headers and
/// Content-Length. Errors when the message would exceed `max` bytes or lacks a usable Content-Length: the
/// connection cannot be resynchronised after that and should be closed.
pub fn frame(buf: &[u8], max: usize) -> Result<Framed, ParseError> {
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(buf.len());
    if start > 0 {
        // `\r\n\r\n` is a keep-alive ping; a lone `\r\n` is its pong. Either way nothing to parse yet.
        return Ok(Framed::KeepAlive(start));
    }
    Ok(match message_extent(buf, max)? {
        Some(total) if buf.len() >= total => Framed::Message(total),
        _ => Framed::Incomplete,
    })
}

/// How many bytes the first message of a stream buffer occupies, body included, once its head has arrived:
/// `Ok(Some(total))`, whether the body is all there or not; `Ok(None)` while the empty line ending the head has not
/// arrived. Errors as [`frame`]. `buf` starts with the message (no keep-alive CRLFs: [`frame`] handles those).
///
/// For a reader that gets a stream a few bytes at a time (a slow or hostile peer): knowing the length, it frames the
/// message once its bytes are there instead of scanning the head again on every read.
pub fn message_extent(buf: &[u8], max: usize) -> Result<Option<usize>, ParseError> {
    let Some((head_end, body_start)) = find_head_end(buf) else {
        if buf.len() > max {
            return Err(ParseError::new(K::TooLarge { max }, buf, 0));
        }
        return Ok(None);
    };
    let len = content_length_of(&buf[..head_end]).map_err(|(kind, at)| ParseError::new(kind, buf, at))?;
    let len = len.ok_or_else(|| ParseError::new(K::MissingContentLength, buf, 0))?;
    let total = body_start.saturating_add(len);
    if total > max {
        return Err(ParseError::new(K::TooLarge { max }, buf, 0));
    }
    Ok(Some(total))
}

/// Returns (end of the last header line, start of the body).
fn find_head_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    for nl in memchr::memchr_iter(b'\n', buf) {
        let line = &buf[i..nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() && i > 0 {
            return Some((i, nl + 1));
        }
        i = nl + 1;
    }
    None
}

/// A quick scan of raw header lines for Content-Length (long or compact form), for framing. Continuation lines
/// belong to the header above them (RFC 3261 §7.3.1), as in [`parse`]: one reading `l: 5` is not a header, and a
/// folded Content-Length has its value on the continuation line.
fn content_length_of(head: &[u8]) -> Result<Option<usize>, (K, usize)> {
    let mut found = None;
    // The Content-Length being read: where its line starts, and its value so far.
    let mut cur: Option<(usize, &[u8])> = None;
    let mut off = 0;
    for line in head.split(|&b| b == b'\n') {
        let at = off;
        off += line.len() + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first().is_some_and(|&b| class::is_ws(b)) {
            if let Some((_, v)) = &mut cur {
                match (trim_ws(line), v.is_empty()) {
                    ([], _) => {}
                    (more, true) => *v = more,
                    (_, false) => return Err((K::ContentLength("not a number"), at)),
                }
            }
            continue;
        }
        if let Some((at, v)) = cur.take() {
            found = Some(merge_content_length(found, v, at)?);
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = trim_ws(&line[..colon]);
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            cur = Some((at, trim_ws(&line[colon + 1..])));
        }
    }
    if let Some((at, v)) = cur {
        found = Some(merge_content_length(found, v, at)?);
    }
    Ok(found)
}

fn merge_content_length(found: Option<usize>, v: &[u8], at: usize) -> Result<usize, (K, usize)> {
    let n = parse_u64(v, u64::from(u32::MAX)).ok_or((K::ContentLength("not a number"), at))? as usize;
    if found.is_some_and(|f| f != n) {
        return Err((K::ContentLength("conflicting values"), at));
    }
    Ok(n)
}

fn trim_ws(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !class::is_ws(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|&b| !class::is_ws(b)).map_or(start, |e| e + 1);
    &s[start..end]
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    Datagram,
    Stream,
}

/// Headers every message must have once (RFC 3261 §8.1.1, RFC 4475 §3.3.8).
#[derive(Default)]
struct Seen {
    via: bool,
    from: bool,
    to: bool,
    call_id: bool,
    cseq: bool,
    max_forwards: bool,
    content_type: bool,
    content_length: Option<usize>,
}

fn parse(input: Bytes, framing: Framing) -> Result<Message, ParseError> {
    let err = |kind, at| ParseError::new(kind, &input, at);
    // RFC 3261 §7.5: CRLFs before the start line are ignored.
    let start = input.iter().position(|&b| b != b'\r' && b != b'\n').ok_or_else(|| err(K::Empty, 0))?;
    let mut lines = Lines { buf: &input, pos: start };
    let (sl_at, sl_end) = lines.next().ok_or_else(|| err(K::NoEndOfHeaders, start))?;
    let start_line = parse_start_line(&input, sl_at, sl_end)?;

    let request_method = match &start_line {
        StartLine::Request(m, _) => Some(m.as_bytes()),
        StartLine::Response(..) => None,
    };
    let mut headers = Headers::over(input.clone(), 32);
    let mut seen = Seen::default();
    let mut cur: Option<Pending> = None;
    let body_start = loop {
        let (at, end) = lines.next().ok_or_else(|| err(K::NoEndOfHeaders, lines.pos))?;
        if at == end {
            if let Some(h) = cur.take() {
                finish_header(&input, h, &mut headers, &mut seen, request_method)?;
            }
            break lines.pos;
        }
        let line = &input[at..end];
        if class::is_ws(line[0]) {
            let Some(p) = cur.as_mut() else {
                return Err(err(K::HeaderLine("continuation line before any header"), at));
            };
            let f = p.folded.get_or_insert_with(|| input[p.value_start..p.value_end].to_vec());
            let cont = trim_ws(line);
            if !cont.is_empty() {
                if !f.is_empty() {
                    f.push(b' ');
                }
                f.extend_from_slice(cont);
            }
            continue;
        }
        if let Some(h) = cur.take() {
            finish_header(&input, h, &mut headers, &mut seen, request_method)?;
        }
        let name_end = line.iter().position(|&b| !class::is_token(b)).unwrap_or(line.len());
        if name_end == 0 {
            return Err(err(K::HeaderLine("header name is not a token"), at));
        }
        let after = &line[name_end..];
        let ws = after.iter().position(|&b| !class::is_ws(b)).unwrap_or(after.len());
        if after.get(ws) != Some(&b':') {
            return Err(err(K::HeaderLine("expected ':' after the header name"), at));
        }
        let vs = at + name_end + ws + 1;
        cur = Some(Pending { at, name: at..at + name_end, value_start: vs, value_end: end, folded: None });
    };

    if let StartLine::Request(..) = &start_line {
        if !seen.via || !seen.from || !seen.to || !seen.call_id || !seen.cseq {
            return Err(err(K::MissingHeader(missing(&seen)), start));
        }
    } else if !seen.via || !seen.from || !seen.to || !seen.call_id || !seen.cseq {
        return Err(err(K::MissingHeader(missing(&seen)), start));
    }

    let available = input.len() - body_start;
    let body = match (seen.content_length, framing) {
        (Some(n), _) if n > available => {
            return Err(err(K::ContentLength("larger than the bytes received"), body_start));
        }
        (Some(n), _) => input.slice(body_start..body_start + n),
        (None, Framing::Datagram) => input.slice(body_start..),
        (None, Framing::Stream) => return Err(err(K::MissingContentLength, start)),
    };
    if !body.is_empty() && !seen.content_type {
        return Err(err(K::BodyWithoutContentType, body_start));
    }
    start_line.take_message(headers, body)
}

fn text_error(fault: TextFault, field: Field) -> K {
    match fault {
        TextFault::Control(byte) => K::ControlCharacter { field, byte },
        TextFault::NotUtf8 => K::NotUtf8 { field },
    }
}

fn missing(seen: &Seen) -> &'static str {
    match () {
        _ if !seen.via => "Via",
        _ if !seen.from => "From",
        _ if !seen.to => "To",
        _ if !seen.call_id => "Call-ID",
        _ => "CSeq",
    }
}

/// Iterates lines as (start, end-without-line-terminator); accepts CRLF and, leniently, bare LF.
struct Lines<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Lines<'_> {
    fn next(&mut self) -> Option<(usize, usize)> {
        let nl = memchr::memchr(b'\n', &self.buf[self.pos..])? + self.pos;
        let start = self.pos;
        let end = if nl > start && self.buf[nl - 1] == b'\r' { nl - 1 } else { nl };
        self.pos = nl + 1;
        Some((start, end))
    }
}

enum StartLine {
    Request(Method, Uri),
    Response(u16, Bytes),
}

impl StartLine {
    fn take_message(self, headers: Headers, body: Bytes) -> Result<Message, ParseError> {
        Ok(match self {
            Self::Request(method, uri) => Message::Request(Request { method, uri, headers, body }),
            Self::Response(status, reason) => Message::Response(Response { status, reason, headers, body }),
        })
    }
}

fn is_sip_version(v: &[u8]) -> Result<(), K> {
    if v.len() >= 4 && v[..4].eq_ignore_ascii_case(b"SIP/") {
        if &v[4..] == b"2.0" {
            return Ok(());
        }
        let (major, minor) = v[4..].split_at(v[4..].iter().position(|&b| b == b'.').unwrap_or(v.len() - 4));
        if !major.is_empty() && major.iter().all(u8::is_ascii_digit) && minor.len() > 1 {
            return Err(K::UnsupportedVersion);
        }
    }
    Err(K::StartLine("expected SIP-Version SIP/2.0"))
}

/// RFC 3261 §7.1 Request-Line and §7.2 Status-Line: elements separated by exactly one SP.
fn parse_start_line(input: &Bytes, at: usize, end: usize) -> Result<StartLine, ParseError> {
    let err = |kind, off| ParseError::new(kind, input, off);
    let line = &input[at..end];
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        let sp = memchr::memchr(b' ', line).ok_or_else(|| err(K::StartLine("status line without status code"), at))?;
        is_sip_version(&line[..sp]).map_err(|k| err(k, at))?;
        let rest = &line[sp + 1..];
        let code_len = rest.iter().position(|&b| !b.is_ascii_digit()).unwrap_or(rest.len());
        if code_len != 3 {
            return Err(err(K::StatusCode, at + sp + 1));
        }
        let status = parse_u64(&rest[..3], 699).filter(|&c| c >= 100).ok_or_else(|| err(K::StatusCode, at + sp + 1))?;
        let reason = match &rest[3..] {
            [] => Bytes::new(),
            [b' ', ..] => input.slice(at + sp + 5..end),
            _ => return Err(err(K::StatusCode, at + sp + 1)),
        };
        // §25.1 Reason-Phrase: no control character but HTAB, UTF-8 text.
        check_text(&reason, false).map_err(|f| err(text_error(f, Field::ReasonPhrase), at + sp + 5))?;
        return Ok(StartLine::Response(status as u16, reason));
    }
    let sp1 = memchr::memchr(b' ', line).ok_or_else(|| err(K::StartLine("request line without Request-URI"), at))?;
    let method = &line[..sp1];
    if method.is_empty() || !method.iter().all(|&b| class::is_token(b)) {
        return Err(err(K::StartLine("method is not a token"), at));
    }
    let sp2 = memchr::memrchr(b' ', line)
        .filter(|&i| i > sp1)
        .ok_or_else(|| err(K::StartLine("request line without SIP-Version"), at))?;
    is_sip_version(&line[sp2 + 1..]).map_err(|k| err(k, at + sp2 + 1))?;
    let uri = input.slice(at + sp1 + 1..at + sp2);
    if uri.is_empty() || uri.iter().any(|&b| class::is_ws(b)) {
        return Err(err(K::StartLine("Request-URI empty or with white space"), at + sp1 + 1));
    }
    let uri = Uri::parse(uri).map_err(|w| err(K::BadUri(w), at + sp1 + 1))?;
    // A known method needs no view of the buffer (a reference count up and down per request).
    let method = Method::known(method).unwrap_or_else(|| Method::Other(input.slice(at..at + sp1)));
    Ok(StartLine::Request(method, uri))
}

/// A header being assembled from its line and any continuation lines.
struct Pending {
    /// Offset of its first line, for errors.
    at: usize,
    name: std::ops::Range<usize>,
    value_start: usize,
    value_end: usize,
    /// The unfolded value, once a continuation line was seen.
    folded: Option<Vec<u8>>,
}

fn finish_header(
    input: &Bytes,
    Pending { at, name, value_start: vs, value_end: ve, folded }: Pending,
    headers: &mut Headers,
    seen: &mut Seen,
    request_method: Option<&[u8]>,
) -> Result<(), ParseError> {
    let err = |kind| ParseError::new(kind, input, at);
    let name = HeaderName::known(&input[name.clone()]).unwrap_or_else(|| HeaderName::Other(input.slice(name)));
    // The bytes the value lives in: the message itself (`unfolded` is `None`), or a copy of a folded header.
    let unfolded = folded.map(Bytes::from);
    let (src, range) = match &unfolded {
        None => (input, trim_range(input, vs, ve)),
        Some(u) => (u, trim_range(u, 0, u.len())),
    };
    let keep = |headers: &mut Headers, name: HeaderName, r: std::ops::Range<usize>, lexed| match &unfolded {
        None => headers.push_span(name, r.into(), lexed),
        Some(u) => headers.push(name, u.slice(r)),
    };
    let value = &src[range.clone()];
    check_text(value, name.has_quoted_strings()).map_err(|f| err(text_error(f, Field::Header(name.clone()))))?;
    let bad = |what| err(K::BadHeader { header: name.canonical(), what });
    let once = |flag: &mut bool, n: &'static str| {
        if std::mem::replace(flag, true) {
            Err(err(K::DuplicateHeader(n)))
        } else {
            Ok(())
        }
    };
    match name {
        HeaderName::ContentLength => {
            let n =
                parse_u64(value, u64::from(u32::MAX)).ok_or_else(|| err(K::ContentLength("not a number")))? as usize;
            if seen.content_length.replace(n).is_some_and(|old| old != n) {
                return Err(err(K::ContentLength("conflicting values")));
            }
            return Ok(());
        }
        HeaderName::From => once(&mut seen.from, "From")?,
        HeaderName::To => once(&mut seen.to, "To")?,
        HeaderName::CallId => {
            once(&mut seen.call_id, "Call-ID")?;
            check_call_id(value).map_err(bad)?;
        }
        HeaderName::CSeq => {
            let (_, method) = lex_cseq(value).map_err(bad)?;
            if request_method.is_some_and(|m| m != &value[method]) {
                return Err(err(K::CSeqMethodMismatch));
            }
            if std::mem::replace(&mut seen.cseq, true) {
                return Err(err(K::DuplicateHeader("CSeq")));
            }
        }
        HeaderName::MaxForwards => {
            once(&mut seen.max_forwards, "Max-Forwards")?;
            parse_u64(value, u64::from(u32::MAX)).ok_or_else(|| bad("not a number"))?;
        }
        HeaderName::ContentType => {
            once(&mut seen.content_type, "Content-Type")?;
            lex_media_type(value, &mut |_| {}).map_err(bad)?;
        }
        HeaderName::Via => seen.via = true,
        _ => {}
    }
    // Checks a value (or list element) whose grammar the B2BUA relies on, keeping the positions of its parts.
    let validate = |v: &[u8]| -> Result<Option<Lexed>, ParseError> {
        match name {
            HeaderName::Via => via::lex(v, &mut |_| {}).map(|l| Some(Lexed::Via(l.into()))).map_err(bad),
            HeaderName::Contact if v == b"*" => Ok(None),
            HeaderName::From | HeaderName::To | HeaderName::Contact | HeaderName::Route | HeaderName::RecordRoute => {
                addr::lex(v, &mut |_| {}).map(|l| Some(Lexed::Addr(l.into()))).map_err(bad)
            }
            _ => Ok(None),
        }
    };
    let strict_list =
        matches!(name, HeaderName::Via | HeaderName::Contact | HeaderName::Route | HeaderName::RecordRoute);
    if name.split_on_parse() && has_list_comma(value) {
        for r in ListElements::new(src, range) {
            if r.is_empty() {
                if strict_list {
                    return Err(bad("empty list element"));
                }
                continue;
            }
            let lexed = validate(&src[r.clone()])?;
            keep(headers, name.clone(), r, lexed);
        }
    } else {
        if strict_list && value.is_empty() {
            return Err(bad("empty value"));
        }
        let lexed = validate(value)?;
        keep(headers, name, range, lexed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:bob@198.18.2.10 SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.18.1.10:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@example.com>\r\n\
From: Alice <sip:alice@example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@198.18.1.10>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\r\n";

    fn req(raw: &'static [u8]) -> Request {
        match parse_datagram(Bytes::from_static(raw)).expect("valid") {
            Message::Request(r) => r,
            Message::Response(_) => panic!("expected a request"),
        }
    }

    #[test]
    fn message_extent_is_known_once_the_head_is_complete() {
        // INVITE's body is "v=0\r\n", of which Content-Length 4 counts "v=0\r".
        let (head, total) = (INVITE.len() - 5, INVITE.len() - 1);
        assert_eq!(message_extent(&INVITE[..head - 1], 65535), Ok(None), "the empty line is not complete");
        assert_eq!(message_extent(&INVITE[..head], 65535), Ok(Some(total)), "body not there yet");
        assert_eq!(message_extent(INVITE, 65535), Ok(Some(total)));
        assert!(message_extent(&INVITE[..head], total - 1).is_err(), "over the maximum");
    }

    #[test]
    fn invite_with_typed_accessors() {
        let r = req(INVITE);
        assert_eq!(r.method, Method::Invite);
        assert_eq!(&r.body[..], b"v=0\r");
        assert_eq!(r.headers.call_id().expect("call-id"), b"a84b4c76e66710@pc33.example.com");
        assert_eq!(r.headers.cseq().expect("cseq").seq, 314159);
        assert_eq!(r.headers.from().expect("from").tag().expect("tag"), b"1928301774");
        assert!(r.headers.to().expect("to").tag().is_none());
        let via = r.headers.top_via().expect("via");
        assert_eq!(via.branch().expect("branch"), b"z9hG4bK776asdhds");
        assert_eq!(r.headers.max_forwards().expect("mf"), Some(70));
        assert!(r.headers.content_type().expect("ct").expect("present").is("application", "sdp"));
        assert!(r.headers.get(&HeaderName::ContentLength).is_none(), "framing is not a header");
    }

    #[test]
    fn accessors_from_parser_parts_equal_a_fresh_parse() {
        use crate::msg::{Contacts, NameAddr, Via};
        let raw = b"INVITE sip:bob@198.18.2.10 SIP/2.0\r\n\
v: SIP/2.0/UDP 198.18.1.10:5060;branch=z9hG4bK1 , SIP/2.0/TCP [2001:db8::1]:5070;received=x;branch=z9hG4bK2\r\n\
f: \"A, B\" <sip:alice@example.com;user=phone>;tag=1\r\nt: sip:bob@example.com;tag=2\r\n\
i: c1\r\nCSeq: 1 INVITE\r\nm: <sip:a@198.18.1.10>;expires=60, sip:b@h;q=0.5\r\n\
Route: <sip:p1;lr>, <sip:p2;lr>\r\nContact:\r\n <sip:folded@h>\r\n\r\n";
        let h = req(raw).headers;
        let fresh = |name| NameAddr::parse(&h.get_bytes(&name).expect("present")).expect("valid");
        assert_eq!(h.from().expect("from"), fresh(HeaderName::From));
        assert_eq!(h.to().expect("to"), fresh(HeaderName::To));
        let vias: Vec<_> = h.get_all_bytes(&HeaderName::Via).map(|v| Via::parse(&v).expect("valid")).collect();
        assert_eq!(h.vias().expect("vias"), vias);
        assert_eq!(vias.len(), 2);
        assert_eq!(h.top_via().expect("top"), vias[0]);
        let contacts: Vec<_> =
            h.get_all_bytes(&HeaderName::Contact).map(|v| NameAddr::parse(&v).expect("valid")).collect();
        assert_eq!(contacts.len(), 3, "two split at parse time, one unfolded");
        assert_eq!(h.contacts().expect("contacts"), Contacts::Addrs(contacts));
        let routes: Vec<_> = h.get_all_bytes(&HeaderName::Route).map(|v| NameAddr::parse(&v).expect("valid")).collect();
        assert_eq!(h.routes().expect("routes"), routes);
        // Edits move entries and their parts together.
        let mut h = h;
        h.push_front(HeaderName::Via, "SIP/2.0/UDP 198.18.2.1;branch=z9hG4bK0");
        h.remove(&HeaderName::To);
        assert_eq!(h.vias().expect("vias")[1], vias[0]);
        assert_eq!(h.from().expect("from").tag().expect("tag"), b"1");
    }

    #[test]
    fn response_and_errors_say_where() {
        let ok = parse_datagram(Bytes::from_static(
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        ))
        .expect("valid");
        assert!(matches!(ok, Message::Response(Response { status: 200, .. })));
        let e = parse_datagram(Bytes::from_static(b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom x\r\n\r\n"))
            .expect_err("no colon");
        assert_eq!((e.line, e.offset), (3, 44));
        assert_eq!(e.kind, K::HeaderLine("expected ':' after the header name"));
    }

    #[test]
    fn stream_framing() {
        assert_eq!(frame(b"\r\n\r\nINV", 1000), Ok(Framed::KeepAlive(4)));
        assert_eq!(frame(&INVITE[..100], 1000), Ok(Framed::Incomplete));
        assert_eq!(frame(INVITE, 1000), Ok(Framed::Message(INVITE.len() - 1)));
        let mut two = INVITE[..INVITE.len() - 1].to_vec();
        two.extend_from_slice(INVITE);
        assert_eq!(frame(&two, 1000), Ok(Framed::Message(INVITE.len() - 1)));
        assert!(matches!(frame(INVITE, 100), Err(ParseError { kind: K::TooLarge { max: 100 }, .. })));
        let no_cl = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n\r\n";
        assert!(matches!(frame(no_cl, 1000), Err(ParseError { kind: K::MissingContentLength, .. })));
    }

    #[test]
    fn framing_reads_continuation_lines_as_the_parser_does() {
        let head = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\n\
                    To: <sip:a@b>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n";
        // A continuation of Subject that reads like a compact Content-Length is not one.
        let m = format!("{head}Subject: x\r\n l: 5\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(frame(m.as_bytes(), 1000), Ok(Framed::Message(m.len())));
        assert_eq!(
            parse_stream(Bytes::from(m)).expect("valid").headers().get(&HeaderName::Subject),
            Some(&b"x l: 5"[..])
        );
        let m = format!("{head}Subject: x\r\n l: 5\r\n\r\nhello");
        assert!(matches!(frame(m.as_bytes(), 1000), Err(ParseError { kind: K::MissingContentLength, .. })));
        // A folded Content-Length has its value on the continuation line (and a body needs its Content-Type).
        let m = format!("{head}Content-Type: text/plain\r\nContent-Length:\r\n 5\r\n\r\nhello");
        assert_eq!(frame(m.as_bytes(), 1000), Ok(Framed::Message(m.len())));
        assert_eq!(&parse_stream(Bytes::from(m)).expect("valid").body()[..], b"hello");
        let m = format!("{head}Content-Length: 1\r\n 5\r\n\r\nhello");
        assert!(matches!(frame(m.as_bytes(), 1000), Err(ParseError { kind: K::ContentLength(_), .. })));
    }

    /// An OPTIONS with `lines` (CRLF-terminated header lines, From among them) after its mandatory headers.
    fn options_with(lines: &[u8], body: &[u8]) -> Bytes {
        let mut m = b"OPTIONS sip:a@198.18.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.1.10;branch=z9hG4bK1\r\n\
To: <sip:a@198.18.2.10>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n"
            .to_vec();
        m.extend_from_slice(lines);
        m.extend_from_slice(b"\r\n");
        m.extend_from_slice(body);
        Bytes::from(m)
    }

    const FROM: &[u8] = b"From: <sip:x@198.18.1.10>;tag=1\r\n";

    fn with_from(line: &[u8]) -> Bytes {
        options_with(&[FROM, line].concat(), b"")
    }

    #[test]
    fn control_characters_in_header_values_are_refused_naming_the_header() {
        let x_note = HeaderName::Other(Bytes::from_static(b"X-Note"));
        for (line, header, byte) in [
            (&b"Subject: a\0b\r\n"[..], HeaderName::Subject, 0u8),
            (b"Subject: bare\rCR\r\n", HeaderName::Subject, b'\r'),
            (b"X-Note: \x1b[2J\r\n", x_note.clone(), 0x1b),
            (b"X-Note: ok\r\n  folded \x07 line\r\n", x_note, 0x07),
            (b"User-Agent: del\x7f\r\n", HeaderName::UserAgent, 0x7f),
            (b"Contact: \"A\x01\" <sip:x@198.18.1.10>\r\n", HeaderName::Contact, 0x01),
            // Subject has no quoted strings: a backslash there escapes nothing.
            (b"Subject: \"\\\0\"\r\n", HeaderName::Subject, 0),
        ] {
            let e = parse_datagram(with_from(line)).expect_err("control character");
            assert_eq!(e.kind, K::ControlCharacter { field: Field::Header(header), byte }, "{line:?}");
            assert_eq!((e.line, e.status(), e.reason()), (7, 400, "control_character"), "{line:?}");
        }
        let e = parse_datagram(with_from(b"Subject: a\0b\r\n")).expect_err("NUL");
        assert_eq!(e.to_string(), "line 7 (byte 169): control character 0x00 in the Subject header");
        let e = parse_datagram(options_with(b"From: <sip:x@198.18.1.10>;tag=1\0\r\n", b"")).expect_err("NUL in From");
        assert_eq!(e.kind, K::ControlCharacter { field: Field::Header(HeaderName::From), byte: 0 });
    }

    #[test]
    fn htab_and_escaped_controls_in_quoted_strings_are_text() {
        let m = parse_datagram(with_from(b"Subject: a\tb\r\nContact: \"NUL:\\\0 BEL:\\\x07\" <sip:x@198.18.1.10>\r\n"))
            .expect("HTAB and quoted-pairs are legal");
        assert_eq!(m.headers().get(&HeaderName::Subject), Some(&b"a\tb"[..]));
        // An unterminated quoted string is no quoted string: its backslash escapes nothing.
        let e = parse_datagram(with_from(b"Contact: \"\\\0 <sip:x@198.18.1.10>\r\n")).expect_err("unterminated");
        assert!(matches!(e.kind, K::ControlCharacter { byte: 0, .. }), "{e:?}");
    }

    #[test]
    fn text_that_is_not_utf8_is_refused_and_utf8_accepted() {
        for (line, header) in [
            (&b"Subject: caf\xe9\r\n"[..], HeaderName::Subject),
            (b"Organization: \xff\xfe\r\n", HeaderName::Organization),
            (b"Contact: \"Bj\xf6rn\" <sip:x@198.18.1.10>\r\n", HeaderName::Contact),
            (b"Warning: 399 h \"\xc3\"\r\n", HeaderName::Warning),
            (b"X-Note: lone \x80\r\n", HeaderName::Other(Bytes::from_static(b"X-Note"))),
        ] {
            let e = parse_datagram(with_from(line)).expect_err("not UTF-8");
            assert_eq!(e.kind, K::NotUtf8 { field: Field::Header(header) }, "{line:?}");
            assert_eq!((e.line, e.status(), e.reason()), (7, 400, "not_utf8"));
        }
        let utf8 = "Subject: Grüße ☎\r\nContact: \"Björn\" <sip:x@198.18.1.10>\r\n";
        let m = parse_datagram(with_from(utf8.as_bytes())).expect("UTF-8 text");
        assert_eq!(m.headers().get(&HeaderName::Subject), Some("Grüße ☎".as_bytes()));
    }

    #[test]
    fn reason_phrase_must_be_utf8_text_without_controls() {
        let resp = |reason: &[u8]| {
            let mut m = b"SIP/2.0 486 ".to_vec();
            m.extend_from_slice(reason);
            m.extend_from_slice(
                b"\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\n\
Call-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
            );
            parse_datagram(Bytes::from(m))
        };
        let e = resp(b"Busy\0Here").expect_err("NUL");
        assert_eq!(e.kind, K::ControlCharacter { field: Field::ReasonPhrase, byte: 0 });
        assert_eq!(
            resp(b"Busy\rHere").expect_err("CR").kind,
            K::ControlCharacter { field: Field::ReasonPhrase, byte: b'\r' }
        );
        assert_eq!(resp(b"Besetzt \xfc").expect_err("Latin-1").kind, K::NotUtf8 { field: Field::ReasonPhrase });
        assert!(resp("Besetzt\tü".as_bytes()).is_ok());
    }

    #[test]
    fn non_empty_body_without_content_type_is_refused() {
        let e = parse_datagram(options_with(&[FROM, b"Content-Length: 5\r\n"].concat(), b"hello"))
            .expect_err("body without Content-Type");
        assert_eq!(
            (e.kind.clone(), e.status(), e.reason()),
            (K::BodyWithoutContentType, 400, "body_without_content_type")
        );
        assert_eq!(e.offset, 190, "the error points at the body");
        // Over UDP without Content-Length, the rest of the datagram is the body.
        let e = parse_datagram(options_with(FROM, b"v=0\r\n")).expect_err("unframed body");
        assert_eq!(e.kind, K::BodyWithoutContentType);
        let e = parse_stream(options_with(&[FROM, b"l: 2\r\n"].concat(), b"hi")).expect_err("stream too");
        assert_eq!(e.kind, K::BodyWithoutContentType);
        // An empty body needs none, and octets beyond Content-Length are no body (RFC 3261 §18.3).
        parse_datagram(options_with(&[FROM, b"Content-Length: 0\r\n"].concat(), b"")).expect("no body");
        parse_datagram(options_with(&[FROM, b"Content-Length: 0\r\n"].concat(), b"junk")).expect("trailing octets");
        let m = parse_datagram(options_with(&[FROM, b"c: text/plain\r\nContent-Length: 5\r\n"].concat(), b"hello"))
            .expect("typed body");
        assert_eq!(&m.body()[..], b"hello");
    }

    #[test]
    fn garbage_never_panics() {
        for junk in [&b""[..], b"\r\n", b"SIP/2.0", b"SIP/2.0 ", b"A B C\r\n\r\n", b"\xff\xfe\r\n\r\n", b" : \r\n\r\n"]
        {
            assert!(parse_datagram(Bytes::copy_from_slice(junk)).is_err(), "{junk:?}");
        }
    }
}
