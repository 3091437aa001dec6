//! Requests, responses, and the typed accessors a B2BUA needs on their headers.

use super::addr::NameAddr;
use super::error::HeaderError;
use super::header::{HeaderName, Headers, Lexed};
use super::method::Method;
use super::uri::Uri;
use super::values::{CSeq, Contacts, MediaType};
use super::via::Via;
use bytes::Bytes;

/// A SIP request (RFC 3261 §7.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method of the Request-Line.
    pub method: Method,
    /// The Request-URI.
    pub uri: Uri,
    /// Headers in order, Content-Length excluded.
    pub headers: Headers,
    /// The body, exactly Content-Length bytes.
    pub body: Bytes,
}

/// A SIP response (RFC 3261 §7.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code, 100..=699.
    pub status: u16,
    /// Reason phrase as received (may be empty, may be UTF-8).
    pub reason: Bytes,
    /// Headers in order, Content-Length excluded.
    pub headers: Headers,
    /// The body, exactly Content-Length bytes.
    pub body: Bytes,
}

/// Either kind of message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

impl Message {
    /// The headers, whichever the kind.
    pub fn headers(&self) -> &Headers {
        match self {
            Self::Request(r) => &r.headers,
            Self::Response(r) => &r.headers,
        }
    }

    /// The body, whichever the kind.
    pub fn body(&self) -> &Bytes {
        match self {
            Self::Request(r) => &r.body,
            Self::Response(r) => &r.body,
        }
    }
}

impl Request {
    /// A request with no headers and no body; add headers with [`Headers::push`].
    pub fn new(method: Method, uri: Uri) -> Self {
        Self { method, uri, headers: Headers::new(), body: Bytes::new() }
    }
}

impl Response {
    /// A response to `req` with the headers RFC 3261 §8.2.6.2 says to copy: every Via in order, From, To,
    /// Call-ID and CSeq. The caller adds a To tag where one is needed, and anything else.
    pub fn to_request(req: &Request, status: u16, reason: &'static str) -> Self {
        let headers = req.headers.subset(|n| {
            matches!(n, HeaderName::Via | HeaderName::From | HeaderName::To | HeaderName::CallId | HeaderName::CSeq)
        });
        Self { status, reason: Bytes::from_static(reason.as_bytes()), headers, body: Bytes::new() }
    }

    /// 1xx.
    pub fn is_provisional(&self) -> bool {
        self.status < 200
    }

    /// 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

fn single(h: &Headers, name: &HeaderName) -> Result<Bytes, HeaderError> {
    h.get_bytes(name).ok_or(HeaderError::Missing(name.canonical()))
}

/// An address from the parts the parser found, or parsed now for a value built in code.
fn to_addr(name: &HeaderName, v: Bytes, lexed: Option<Lexed>) -> Result<NameAddr, HeaderError> {
    match lexed {
        Some(Lexed::Addr(p)) => Ok(NameAddr::from_parts(v, p)),
        _ => NameAddr::parse(&v).map_err(malformed(name)),
    }
}

fn to_via(v: Bytes, lexed: Option<Lexed>) -> Result<Via, HeaderError> {
    match lexed {
        Some(Lexed::Via(p)) => Ok(Via::from_parts(v, p)),
        _ => Via::parse(&v).map_err(malformed(&HeaderName::Via)),
    }
}

fn malformed(name: &HeaderName) -> impl Fn(&'static str) -> HeaderError + '_ {
    move |what| HeaderError::Malformed { header: name.canonical(), what }
}

impl Headers {
    /// Call-ID (RFC 3261 §20.8).
    pub fn call_id(&self) -> Result<&[u8], HeaderError> {
        self.get(&HeaderName::CallId).ok_or(HeaderError::Missing("Call-ID"))
    }

    /// CSeq (§20.16).
    pub fn cseq(&self) -> Result<CSeq, HeaderError> {
        // Borrowed first: a known method needs no view of the buffer (a reference count up and down).
        let v = self.get(&HeaderName::CSeq).ok_or(HeaderError::Missing("CSeq"))?;
        let (seq, method) = super::values::lex_cseq(v).map_err(malformed(&HeaderName::CSeq))?;
        match Method::known(&v[method.clone()]) {
            Some(m) => Ok(CSeq { seq, method: m }),
            None => CSeq::parse(&single(self, &HeaderName::CSeq)?).map_err(malformed(&HeaderName::CSeq)),
        }
    }

    /// From (§20.20).
    pub fn from(&self) -> Result<NameAddr, HeaderError> {
        self.addr(&HeaderName::From)
    }

    /// To (§20.39).
    pub fn to(&self) -> Result<NameAddr, HeaderError> {
        self.addr(&HeaderName::To)
    }

    fn addr(&self, name: &HeaderName) -> Result<NameAddr, HeaderError> {
        let (v, lexed) = self.get_lexed(name).ok_or(HeaderError::Missing(name.canonical()))?;
        to_addr(name, v, lexed)
    }

    /// The topmost Via (§20.42): the one this hop added or must answer to.
    pub fn top_via(&self) -> Result<Via, HeaderError> {
        let (v, lexed) = self.get_lexed(&HeaderName::Via).ok_or(HeaderError::Missing("Via"))?;
        to_via(v, lexed)
    }

    /// Every Via, top first.
    pub fn vias(&self) -> Result<Vec<Via>, HeaderError> {
        self.get_all_lexed(&HeaderName::Via).map(|(v, lexed)| to_via(v, lexed)).collect()
    }

    /// Max-Forwards (§20.22), absent in RFC 2543 requests.
    pub fn max_forwards(&self) -> Result<Option<u32>, HeaderError> {
        self.get(&HeaderName::MaxForwards)
            .map(|v| {
                super::scan::parse_u64(v, u64::from(u32::MAX))
                    .map(|n| n as u32)
                    .ok_or(HeaderError::Malformed { header: "Max-Forwards", what: "not a number" })
            })
            .transpose()
    }

    /// Contact (§20.10): `*` or addresses, in order.
    pub fn contacts(&self) -> Result<Contacts, HeaderError> {
        let mut addrs = Vec::new();
        for (v, lexed) in self.get_all_lexed(&HeaderName::Contact) {
            if &v[..] == b"*" {
                return Ok(Contacts::Star);
            }
            addrs.push(to_addr(&HeaderName::Contact, v, lexed)?);
        }
        Ok(Contacts::Addrs(addrs))
    }

    /// Route (§20.34), in order.
    pub fn routes(&self) -> Result<Vec<NameAddr>, HeaderError> {
        self.addr_list(&HeaderName::Route)
    }

    /// Record-Route (§20.30), in order.
    pub fn record_routes(&self) -> Result<Vec<NameAddr>, HeaderError> {
        self.addr_list(&HeaderName::RecordRoute)
    }

    fn addr_list(&self, name: &HeaderName) -> Result<Vec<NameAddr>, HeaderError> {
        self.get_all_lexed(name).map(|(v, lexed)| to_addr(name, v, lexed)).collect()
    }

    /// Whether the body is `application/sdp` (what media anchoring rewrites).
    pub fn is_sdp(&self) -> bool {
        self.content_type().ok().flatten().is_some_and(|t| t.is("application", "sdp"))
    }

    /// Content-Type (§20.15), if present.
    pub fn content_type(&self) -> Result<Option<MediaType>, HeaderError> {
        let Some(v) = self.get(&HeaderName::ContentType) else { return Ok(None) };
        // `application/sdp` is on nearly every message with a body: answered without views of the buffer (and
        // byte for byte what parsing it would give).
        if v == b"application/sdp" {
            return Ok(Some(MediaType::sdp()));
        }
        self.get_bytes(&HeaderName::ContentType)
            .map(|v| MediaType::parse(&v).map_err(malformed(&HeaderName::ContentType)))
            .transpose()
    }
}
