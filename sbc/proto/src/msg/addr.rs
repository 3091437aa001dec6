//! name-addr and addr-spec values of From, To, Contact, Route, Record-Route (RFC 3261 §20.10, §25.1).

use super::params::{self, header_params, ParamRanges, Params};
use super::scan::find;
use super::scan::{class, trim_range, Cursor, Span};
use super::uri::{self, Uri};
use bytes::Bytes;
use std::ops::Range;

/// `[display-name] <uri> *(;param)` or `uri *(;param)`. It keeps the value as received and the positions of its
/// parts: reading the tag costs nothing, and the URI and parameter list are cut out only when asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    raw: Bytes,
    parts: Parts,
}

/// Where the parts of an address are, in its value: kept by the parser so that reading an address it validated
/// does not lex it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Parts {
    display: Option<Span>,
    uri: Span,
    uri_parts: uri::Lexed,
    params: Span,
}

impl From<Lexed> for Parts {
    fn from(Lexed { display, uri, uri_parts, params }: Lexed) -> Self {
        Self { display: display.map(Span::from), uri: uri.into(), uri_parts, params: params.into() }
    }
}

/// An address checked against its grammar, as ranges into the value.
pub(crate) struct Lexed {
    pub display: Option<Range<usize>>,
    pub uri: Range<usize>,
    /// The URI's parts, relative to `uri.start`.
    pub uri_parts: uri::Lexed,
    pub params: Range<usize>,
}

/// Checks one element of an address header and hands its parameters to `sink`. When the URI is not in angle
/// brackets, everything after the first `;` is a header parameter (RFC 3261 §20.10).
pub(crate) fn lex(value: &[u8], sink: &mut dyn FnMut(ParamRanges)) -> Result<Lexed, &'static str> {
    let mut c = Cursor::new(value);
    c.skip_ws();
    let mut display = None;
    match c.peek() {
        Some(b'"') => {
            display = Some(c.quoted_string().ok_or("unterminated quoted display name")?);
            c.skip_ws();
        }
        Some(b'<') => {}
        Some(_) => {
            // Tokens separated by white space are a display name if `<` follows (RFC 4475 §3.1.1.6: the white
            // space before `<` may be missing); otherwise this is an addr-spec.
            let start = c.pos();
            while c.token().is_some() {
                c.skip_ws();
            }
            if c.peek() == Some(b'<') {
                let d = trim_range(value, start, c.pos());
                display = (!d.is_empty()).then_some(d);
            } else {
                let end = find(b';', &value[start..]).map_or(value.len(), |i| start + i);
                let uri = trim_range(value, start, end);
                if value[uri.clone()].iter().any(|&b| class::is_ws(b)) {
                    return Err("white space inside address");
                }
                let uri_parts = uri::lex(&value[uri.clone()])?;
                c.set_pos(end);
                header_params(&mut c, sink)?;
                return Ok(Lexed { display: None, uri, uri_parts, params: end..value.len() });
            }
        }
        None => return Err("empty address"),
    }
    if !c.eat(b'<') {
        return Err("expected '<' after display name");
    }
    let start = c.pos();
    let close = find(b'>', c.rest()).ok_or("missing '>'")? + start;
    let uri_parts = uri::lex(&value[start..close])?;
    c.set_pos(close + 1);
    header_params(&mut c, sink)?;
    Ok(Lexed { display, uri: start..close, uri_parts, params: close + 1..value.len() })
}

impl NameAddr {
    /// Parses one element of an address header (see [`lex`] for the grammar).
    pub fn parse(value: &Bytes) -> Result<Self, &'static str> {
        Ok(Self { raw: value.clone(), parts: lex(value, &mut |_| {})?.into() })
    }

    /// An address whose parts the parser found in `raw` already.
    pub(crate) fn from_parts(raw: Bytes, parts: Parts) -> Self {
        Self { raw, parts }
    }

    /// The display name as received: a quoted-string with its quotes, or space-separated tokens.
    pub fn display(&self) -> Option<&[u8]> {
        self.parts.display.map(|d| &self.raw[d.range()])
    }

    /// The URI.
    pub fn uri(&self) -> Uri {
        Uri::from_lexed(self.raw.slice(self.parts.uri.range()), self.parts.uri_parts)
    }

    /// The URI as received.
    pub fn uri_bytes(&self) -> &[u8] {
        &self.raw[self.parts.uri.range()]
    }

    /// Header parameters after the address (`;tag=…`, `;expires=…`, `;q=…`).
    pub fn params(&self) -> Params {
        Params::header(self.raw.slice(self.parts.params.range()))
    }

    /// The value of parameter `name`: `Some(None)` for a parameter without value, `None` if absent.
    pub fn param(&self, name: &str) -> Option<Option<&[u8]>> {
        params::lookup(&self.raw[self.parts.params.range()], false, name)
    }

    /// The `tag` parameter (RFC 3261 §19.3).
    pub fn tag(&self) -> Option<&[u8]> {
        self.param("tag").flatten()
    }

    /// Writes the address as `"display" <uri>;params` (always with angle brackets, which is never wrong).
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(self.raw.len() + 8);
        if let Some(d) = self.display() {
            out.extend_from_slice(d);
            out.push(b' ');
        }
        out.push(b'<');
        out.extend_from_slice(self.uri_bytes());
        out.push(b'>');
        self.params().write_to(&mut out);
        out.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn na(s: &'static str) -> Result<NameAddr, &'static str> {
        NameAddr::parse(&Bytes::from_static(s.as_bytes()))
    }

    #[test]
    fn forms_of_address() {
        let a = na("\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com> ; tag = 98asjd8").expect("quoted");
        assert_eq!(a.tag().expect("tag"), b"98asjd8");
        let b = na("caller<sip:caller@example.com>;tag=323").expect("no space before <");
        assert_eq!(b.display().expect("display"), b"caller");
        let c = na("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n").expect("addr-spec");
        assert_eq!(c.tag().expect("tag"), b"1918181833n");
        assert_eq!(c.uri_bytes(), b"sip:vivekg@chair-dnrc.example.com");
        let d = na("token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;tag=x").expect("token display");
        assert_eq!(d.display().expect("display"), b"token1~` token2'+_ token3*%!.-");
    }

    #[test]
    fn malformed_addresses() {
        assert!(na("\"Mr. J. User <sip:j.user@example.com>").is_err());
        assert!(na("\"Joe\" <sip:joe@example.org>;;;;").is_err());
        assert!(na("< sip:t.watson@example.org >").is_err());
        assert!(na("<sip:x@y").is_err());
        assert!(na("").is_err());
    }

    #[test]
    fn round_trips_through_to_bytes() {
        let a = na("\"A\" <sip:a@b;lr>;tag=1").expect("valid");
        assert_eq!(NameAddr::parse(&a.to_bytes()).expect("reparse"), a);
    }
}
