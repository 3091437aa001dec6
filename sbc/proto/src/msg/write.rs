//! Serializing messages (RFC 3261 §7): canonical header names, one line per list element, Content-Length from the
//! body.

use super::header::Headers;
use super::message::{Message, Request, Response};
use bytes::{BufMut, Bytes, BytesMut};

fn write_headers(headers: &Headers, body: &Bytes, out: &mut BytesMut) {
    for (name, value) in headers.iter() {
        out.put_slice(name.as_bytes());
        out.put_slice(b": ");
        out.put_slice(value);
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"Content-Length: ");
    let mut buf = itoa_buf(body.len());
    out.put_slice(buf.as_bytes_mut());
    out.put_slice(b"\r\n\r\n");
    out.put_slice(body);
}

fn estimate(headers: &Headers, body: &Bytes) -> usize {
    headers.size_hint() + body.len() + 64
}

impl Request {
    /// Appends the request to `out`.
    pub fn write_to(&self, out: &mut BytesMut) {
        out.reserve(estimate(&self.headers, &self.body) + self.uri.as_bytes().len());
        out.put_slice(self.method.as_bytes());
        out.put_u8(b' ');
        out.put_slice(self.uri.as_bytes());
        out.put_slice(b" SIP/2.0\r\n");
        write_headers(&self.headers, &self.body, out);
    }

    /// The request as bytes.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.write_to(&mut out);
        out.freeze()
    }
}

impl Response {
    /// Appends the response to `out`.
    pub fn write_to(&self, out: &mut BytesMut) {
        out.reserve(estimate(&self.headers, &self.body) + self.reason.len());
        out.put_slice(b"SIP/2.0 ");
        out.put_slice(itoa_buf(usize::from(self.status)).as_bytes_mut());
        out.put_u8(b' ');
        out.put_slice(&self.reason);
        out.put_slice(b"\r\n");
        write_headers(&self.headers, &self.body, out);
    }

    /// The response as bytes.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.write_to(&mut out);
        out.freeze()
    }
}

impl Message {
    /// Appends the message to `out`.
    pub fn write_to(&self, out: &mut BytesMut) {
        match self {
            Self::Request(r) => r.write_to(out),
            Self::Response(r) => r.write_to(out),
        }
    }

    /// The message as bytes.
    pub fn to_bytes(&self) -> Bytes {
        match self {
            Self::Request(r) => r.to_bytes(),
            Self::Response(r) => r.to_bytes(),
        }
    }
}

/// Decimal digits of `n` without going through `fmt` (this is on the path of every message).
struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    fn as_bytes_mut(&mut self) -> &[u8] {
        &self.buf[self.start..]
    }
}

fn itoa_buf(mut n: usize) -> Digits {
    let mut d = Digits { buf: [0; 20], start: 20 };
    loop {
        d.start -= 1;
        d.buf[d.start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return d;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse_datagram, HeaderName, Method, Uri};
    use super::*;

    #[test]
    fn compact_folded_and_list_headers_come_out_canonical() {
        let raw = b"OPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h1;branch=z9hG4bK1, SIP/2.0/UDP h2\r\nf: <sip:x@y>;tag=1\r\nt: <sip:a@b>\r\ni: cid\r\nCSeq: 1\r\n OPTIONS\r\nl: 0\r\n\r\n";
        let m = parse_datagram(Bytes::from_static(raw)).expect("valid");
        let out = m.to_bytes();
        assert_eq!(
            &out[..],
            &b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h1;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP h2\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: cid\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"[..]
        );
        assert_eq!(parse_datagram(out).expect("reparse"), m);
    }

    #[test]
    fn built_request_serializes() {
        let mut r = Request::new(Method::Bye, Uri::parse(Bytes::from_static(b"sip:b@h")).expect("uri"));
        r.headers.push(HeaderName::CallId, "c");
        r.body = Bytes::from_static(b"1234567890");
        assert_eq!(&r.to_bytes()[..], b"BYE sip:b@h SIP/2.0\r\nCall-ID: c\r\nContent-Length: 10\r\n\r\n1234567890");
    }
}
