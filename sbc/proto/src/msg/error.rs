//! What went wrong while parsing a SIP message, and where.

use super::HeaderName;
use std::fmt;

/// A malformed SIP message: what is wrong ([`ParseErrorKind`]) and where (1-based line, 0-based byte offset into
/// the input as received).
///
/// The offset points at the start of the offending line or element, not necessarily the exact byte: enough for
/// an engineer to find it in a capture (`sbc lint-sip` prints both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// What is wrong.
    pub kind: ParseErrorKind,
    /// 1-based line of the input where the problem was found (folded header lines count separately).
    pub line: usize,
    /// 0-based byte offset into the input where the offending line or element starts.
    pub offset: usize,
}

impl ParseError {
    pub(crate) fn new(kind: ParseErrorKind, input: &[u8], offset: usize) -> Self {
        let offset = offset.min(input.len());
        let line = 1 + memchr::memchr_iter(b'\n', &input[..offset]).count();
        Self { kind, line, offset }
    }

    /// The status a server answers with when this error is found in a request (RFC 3261 §8.2, §21.5.6):
    /// 505 for a SIP version other than 2.0, 513 for oversized messages, 400 otherwise. Responses with errors are
    /// dropped (RFC 3261 §18.1.2), never answered.
    pub fn status(&self) -> u16 {
        match self.kind {
            ParseErrorKind::UnsupportedVersion => 505,
            ParseErrorKind::TooLarge { .. } => 513,
            _ => 400,
        }
    }

    /// A short, stable, label-safe name of the error kind, for metrics.
    pub fn reason(&self) -> &'static str {
        self.kind.reason()
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {} (byte {}): {}", self.line, self.offset, self.kind)
    }
}

impl std::error::Error for ParseError {}

/// What is wrong with a message. New kinds may be added; count them, don't branch on all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// No bytes, or only CRLFs (a keep-alive, not a message).
    Empty,
    /// The header section does not end with an empty line (RFC 3261 §7: the CRLF MUST be present).
    NoEndOfHeaders,
    /// The message is larger than the configured maximum.
    TooLarge {
        /// The configured maximum in bytes.
        max: usize,
    },
    /// The request or status line does not have the form RFC 3261 §7.1/§7.2 requires.
    StartLine(&'static str),
    /// A SIP version other than SIP/2.0 (answered 505).
    UnsupportedVersion,
    /// A status code outside 100..=699.
    StatusCode,
    /// A header line that is not `name: value`.
    HeaderLine(&'static str),
    /// A header value that does not follow its grammar.
    BadHeader {
        /// The header's canonical name.
        header: &'static str,
        /// What is wrong with it.
        what: &'static str,
    },
    /// A header every request or response must carry is missing (RFC 3261 §8.1.1).
    MissingHeader(&'static str),
    /// A header that may appear only once appears more than once (RFC 4475 §3.3.8).
    DuplicateHeader(&'static str),
    /// The CSeq method differs from the request method (RFC 3261 §8.1.1.5).
    CSeqMethodMismatch,
    /// Content-Length is not a number, or says more bytes than the datagram holds (RFC 3261 §18.3).
    ContentLength(&'static str),
    /// A stream transport message without Content-Length (RFC 3261 §18.3: MUST be present on streams).
    MissingContentLength,
    /// A request URI or a URI in a header that does not follow RFC 3261 §25.1 (or RFC 3966 for tel).
    BadUri(&'static str),
    /// A raw control character (0x00-0x1F but HTAB, or 0x7F) in a header value or the reason phrase: RFC 3261
    /// §25.1 allows none there (only escaped, as a quoted-pair inside a quoted string). Refused rather than passed
    /// on, because a NUL or a bare CR means different things to the parsers behind the other leg.
    ControlCharacter {
        /// Where it is.
        field: Field,
        /// The offending byte.
        byte: u8,
    },
    /// Text that is not valid UTF-8 (RFC 3629) in a header value or the reason phrase: RFC 3261 §25.1 allows
    /// octets above 0x7F only as UTF-8 (TEXT-UTF8char, UTF8-NONASCII in quoted strings and comments).
    NotUtf8 {
        /// Where it is.
        field: Field,
    },
    /// A non-empty body without Content-Type (RFC 3261 §20.15: it MUST be present then): what the body is would
    /// be left to each receiver to guess.
    BodyWithoutContentType,
}

/// Where in a message a text problem ([`ParseErrorKind::ControlCharacter`], [`ParseErrorKind::NotUtf8`]) is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// The reason phrase of a status line.
    ReasonPhrase,
    /// The value of this header (an unknown header keeps its name as received).
    Header(HeaderName),
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReasonPhrase => f.write_str("reason phrase"),
            Self::Header(h) => write!(f, "{h} header"),
        }
    }
}

impl ParseErrorKind {
    fn reason(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::NoEndOfHeaders => "no_end_of_headers",
            Self::TooLarge { .. } => "too_large",
            Self::StartLine(_) => "start_line",
            Self::UnsupportedVersion => "version",
            Self::StatusCode => "status_code",
            Self::HeaderLine(_) => "header_line",
            Self::BadHeader { .. } => "bad_header",
            Self::MissingHeader(_) => "missing_header",
            Self::DuplicateHeader(_) => "duplicate_header",
            Self::CSeqMethodMismatch => "cseq_method",
            Self::ContentLength(_) => "content_length",
            Self::MissingContentLength => "missing_content_length",
            Self::BadUri(_) => "bad_uri",
            Self::ControlCharacter { .. } => "control_character",
            Self::NotUtf8 { .. } => "not_utf8",
            Self::BodyWithoutContentType => "body_without_content_type",
        }
    }
}

impl fmt::Display for ParseErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty message"),
            Self::NoEndOfHeaders => f.write_str("header section does not end with an empty line"),
            Self::TooLarge { max } => write!(f, "message larger than {max} bytes"),
            Self::StartLine(what) => write!(f, "malformed start line: {what}"),
            Self::UnsupportedVersion => f.write_str("unsupported SIP version (only SIP/2.0)"),
            Self::StatusCode => f.write_str("status code outside 100..=699"),
            Self::HeaderLine(what) => write!(f, "malformed header line: {what}"),
            Self::BadHeader { header, what } => write!(f, "malformed {header} header: {what}"),
            Self::MissingHeader(h) => write!(f, "missing mandatory {h} header"),
            Self::DuplicateHeader(h) => write!(f, "{h} header appears more than once"),
            Self::CSeqMethodMismatch => f.write_str("CSeq method differs from the request method"),
            Self::ContentLength(what) => write!(f, "bad Content-Length: {what}"),
            Self::MissingContentLength => f.write_str("Content-Length is required on stream transports"),
            Self::BadUri(what) => write!(f, "malformed URI: {what}"),
            Self::ControlCharacter { field, byte } => write!(f, "control character 0x{byte:02X} in the {field}"),
            Self::NotUtf8 { field } => write!(f, "{field} is not valid UTF-8"),
            Self::BodyWithoutContentType => f.write_str("non-empty body without Content-Type"),
        }
    }
}

/// Error of a typed header accessor on an already parsed or built message: the header is missing or does not
/// follow its grammar. Messages from [`crate::msg::parse_datagram`] have their mandatory headers validated, so
/// on those this only happens for optional headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// The header is not present.
    Missing(&'static str),
    /// The header is present but malformed.
    Malformed {
        /// The header's canonical name.
        header: &'static str,
        /// What is wrong with it.
        what: &'static str,
    },
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing(h) => write!(f, "missing {h} header"),
            Self::Malformed { header, what } => write!(f, "malformed {header} header: {what}"),
        }
    }
}

impl std::error::Error for HeaderError {}
