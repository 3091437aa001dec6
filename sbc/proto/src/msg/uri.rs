//! SIP, SIPS and TEL URIs (RFC 3261 §19.1, §25.1; RFC 3966), zero-copy over the received bytes.

use super::params::{check_escapes, uri_params, ParamRanges, Params};
use super::scan::{class, find, Span};
use bytes::Bytes;
use std::fmt;
use std::ops::Range;

/// A URI as received, with the positions of its parts. Equality compares the bytes as received (what a
/// re-serialized message must reproduce); comparison by RFC 3261 §19.1.4 rules is a separate question for routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    raw: Bytes,
    parts: Lexed,
}

/// The scheme of a URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `sip:`.
    Sip,
    /// `sips:`.
    Sips,
    /// `tel:` (RFC 3966).
    Tel,
    /// Any other absolute URI (`http:`, `isbn:`, `urn:`…): well formed but opaque (RFC 4475 §3.3.2, §3.3.4).
    Other,
}

/// The parts of a `sip:`/`sips:` URI, borrowed from the URI's bytes, escapes not decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri<'a> {
    /// `sips:` rather than `sip:`.
    pub secure: bool,
    /// The user part, if any (may be a telephone-subscriber with `;` parameters of its own).
    pub user: Option<&'a [u8]>,
    /// The password, if any (deprecated by RFC 3261, still parsed).
    pub password: Option<&'a [u8]>,
    /// Host name, IPv4 address, or IPv6 reference with its brackets.
    pub host: &'a [u8],
    /// The port, if given.
    pub port: Option<u16>,
    /// URI parameters (`;transport=tcp;lr`).
    pub params: Params,
    /// The raw `?`-headers part without the `?`, if any.
    pub headers: Option<&'a [u8]>,
}

/// The parts of a `tel:` URI, borrowed from the URI's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelUri<'a> {
    /// The number, with visual separators as received.
    pub number: &'a [u8],
    /// Parameters (`;phone-context=…`).
    pub params: Params,
}

impl Uri {
    /// Parses a URI. `raw` must be the URI alone, without angle brackets or surrounding white space.
    pub fn parse(raw: Bytes) -> Result<Self, &'static str> {
        let parts = lex(&raw)?;
        Ok(Self { raw, parts })
    }

    /// A URI whose bytes were already checked by [`lex`].
    pub(crate) fn from_lexed(raw: Bytes, parts: Lexed) -> Self {
        Self { raw, parts }
    }

    /// The URI as received (or as built).
    pub fn as_bytes(&self) -> &Bytes {
        &self.raw
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        match self.parts {
            Lexed::Sip { secure: false, .. } => Scheme::Sip,
            Lexed::Sip { secure: true, .. } => Scheme::Sips,
            Lexed::Tel { .. } => Scheme::Tel,
            Lexed::Other => Scheme::Other,
        }
    }

    fn params(&self, p: Option<Span>) -> Params {
        p.map_or_else(Params::default, |p| Params::uri(self.raw.slice(p.range())))
    }

    /// The SIP parts, if this is a `sip:`/`sips:` URI.
    pub fn sip(&self) -> Option<SipUri<'_>> {
        let Lexed::Sip { secure, user, password, host, port, params, headers } = self.parts else { return None };
        let at = |s: Span| &self.raw[s.range()];
        Some(SipUri {
            secure,
            user: user.map(at),
            password: password.map(at),
            host: at(host),
            port,
            params: self.params(params),
            headers: headers.map(at),
        })
    }

    /// The TEL parts, if this is a `tel:` URI.
    pub fn tel(&self) -> Option<TelUri<'_>> {
        let Lexed::Tel { number, params } = self.parts else { return None };
        Some(TelUri { number: &self.raw[number.range()], params: self.params(params) })
    }

    /// The user part of a SIP URI or the number of a TEL URI: what routing matches on.
    pub fn user(&self) -> Option<&[u8]> {
        match self.parts {
            Lexed::Sip { user, .. } => user.map(|u| &self.raw[u.range()]),
            Lexed::Tel { number, .. } => Some(&self.raw[number.range()]),
            Lexed::Other => None,
        }
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.raw))
    }
}

/// A URI checked against its grammar, with the positions of its parts (compact: a URI sits in every request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lexed {
    Sip {
        secure: bool,
        user: Option<Span>,
        password: Option<Span>,
        host: Span,
        port: Option<u16>,
        /// From the `;` before the first parameter.
        params: Option<Span>,
        headers: Option<Span>,
    },
    Tel {
        number: Span,
        params: Option<Span>,
    },
    Other,
}

/// Checks a URI against RFC 3261 §25.1 (sip, sips), RFC 3966 (tel) or the generic absoluteURI syntax.
pub(crate) fn lex(raw: &[u8]) -> Result<Lexed, &'static str> {
    lex_with(raw, &mut |_| {})
}

/// [`lex`], handing the URI parameters to `sink`.
fn lex_with(raw: &[u8], sink: &mut dyn FnMut(ParamRanges)) -> Result<Lexed, &'static str> {
    let colon = find(b':', raw).ok_or("no scheme")?;
    let scheme = &raw[..colon];
    if scheme.is_empty()
        || !scheme[0].is_ascii_alphabetic()
        || !scheme.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    {
        return Err("bad scheme");
    }
    let rest = colon + 1;
    if scheme.eq_ignore_ascii_case(b"sip") || scheme.eq_ignore_ascii_case(b"sips") {
        lex_sip(raw, rest, scheme.len() == 4, sink)
    } else if scheme.eq_ignore_ascii_case(b"tel") {
        lex_tel(raw, rest, sink)
    } else {
        let r = &raw[rest..];
        if r.is_empty() || !r.iter().all(|&b| b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'"')) {
            return Err("bad character in absolute URI");
        }
        check_escapes(r)?;
        Ok(Lexed::Other)
    }
}

fn lex_sip(raw: &[u8], rest: usize, secure: bool, sink: &mut dyn FnMut(ParamRanges)) -> Result<Lexed, &'static str> {
    // One pass over the user part: user characters never include `:` or `@` (RFC 3261 §25.1), so the first other
    // character says whether a userinfo is there (`@`), maybe with a password (`:` … `@`), or not at all.
    let mut i = rest;
    let mut escaped = false;
    while let Some(&b) = raw.get(i).filter(|&&b| class::is_user(b)) {
        escaped |= b == b'%';
        i += 1;
    }
    let (user, password, hp_start) = match raw.get(i) {
        Some(b'@') => (Some(rest..i), None, i + 1),
        Some(b':') => {
            let mut j = i + 1;
            while let Some(&b) = raw.get(j).filter(|&&b| class::is_password(b)) {
                escaped |= b == b'%';
                j += 1;
            }
            if raw.get(j) == Some(&b'@') {
                (Some(rest..i), Some(i + 1..j), j + 1)
            } else {
                (None, None, rest)
            }
        }
        _ => (None, None, rest),
    };
    if let Some(u) = &user {
        if u.is_empty() {
            return Err("bad user part");
        }
        if escaped {
            check_escapes(&raw[u.start..hp_start - 1])?;
        }
    }
    let hp_end = raw[hp_start..].iter().position(|&b| b == b';' || b == b'?').map_or(raw.len(), |i| hp_start + i);
    let (host, port) = host_port(raw, hp_start..hp_end)?;
    let mut i = hp_end;
    let mut params = None;
    if raw.get(i) == Some(&b';') {
        let p_end = raw[i + 1..].iter().position(|&b| b == b'?').map_or(raw.len(), |q| i + 1 + q);
        uri_params(raw, i + 1..p_end, sink)?;
        params = Some(i..p_end);
        i = p_end;
    }
    let headers = if raw.get(i) == Some(&b'?') {
        let h = &raw[i + 1..];
        if h.is_empty() || !h.iter().all(|&b| class::is_uri_header(b)) {
            return Err("bad URI headers");
        }
        check_escapes(h)?;
        Some(i + 1..raw.len())
    } else {
        None
    };
    Ok(Lexed::Sip {
        secure,
        user: user.map(Span::from),
        password: password.map(Span::from),
        host: host.into(),
        port,
        params: params.map(Span::from),
        headers: headers.map(Span::from),
    })
}

/// Splits `host[:port]` in `s[range]`; hosts are host names, IPv4 addresses or bracketed IPv6 references.
pub(crate) fn host_port(s: &[u8], range: Range<usize>) -> Result<(Range<usize>, Option<u16>), &'static str> {
    let hp = &s[range.clone()];
    let host_len = if hp.first() == Some(&b'[') {
        let close = find(b']', hp).ok_or("unterminated IPv6 reference")?;
        if close < 3 || !hp[1..close].iter().all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return Err("bad IPv6 reference");
        }
        close + 1
    } else {
        let n = hp.iter().position(|&b| !class::is_host(b)).unwrap_or(hp.len());
        if n == 0 {
            return Err("empty host");
        }
        n
    };
    let port = match &hp[host_len..] {
        [] => None,
        [b':', digits @ ..] => Some(super::scan::parse_u64(digits, u64::from(u16::MAX)).ok_or("bad port")? as u16),
        _ => return Err("bad character in host"),
    };
    Ok((range.start..range.start + host_len, port))
}

fn lex_tel(raw: &[u8], rest: usize, sink: &mut dyn FnMut(ParamRanges)) -> Result<Lexed, &'static str> {
    let end = find(b';', &raw[rest..]).map_or(raw.len(), |i| rest + i);
    let number = &raw[rest..end];
    let ok = |b: u8| b.is_ascii_hexdigit() || matches!(b, b'*' | b'#' | b'+' | b'-' | b'.' | b'(' | b')' | b'p' | b'w');
    if number.is_empty() || !number.iter().all(|&b| ok(b.to_ascii_lowercase())) {
        return Err("bad telephone number");
    }
    let params = if end < raw.len() {
        uri_params(raw, end + 1..raw.len(), sink)?;
        Some(end..raw.len())
    } else {
        None
    };
    Ok(Lexed::Tel { number: (rest..end).into(), params: params.map(Span::from) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &'static str) -> Uri {
        Uri::parse(Bytes::from_static(s.as_bytes())).expect(s)
    }

    #[test]
    fn full_sip_uri() {
        let whole = uri("sips:alice:secret@[2001:db8::1]:5061;transport=tls;lr?Subject=hi&Priority=urgent");
        assert_eq!(whole.scheme(), Scheme::Sips);
        let u = whole.sip().expect("sip");
        assert!(u.secure);
        assert_eq!(u.user.expect("user"), b"alice");
        assert_eq!(u.password.expect("pw"), b"secret");
        assert_eq!(u.host, b"[2001:db8::1]");
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.params.value("transport"), Some(&b"tls"[..]));
        assert!(u.params.has("lr"));
        assert_eq!(u.headers.expect("headers"), b"Subject=hi&Priority=urgent");
    }

    #[test]
    fn user_with_semicolon_and_escapes() {
        let whole = uri("sip:user;par=u%40example.net@example.com");
        let u = whole.sip().expect("sip");
        assert_eq!(u.user.expect("user"), b"user;par=u%40example.net");
        assert_eq!(u.host, b"example.com");
    }

    #[test]
    fn tel_and_other_schemes() {
        let t = Uri::parse(Bytes::from_static(b"tel:+1-201-555-0123;phone-context=example.com")).expect("tel");
        assert_eq!(t.user().expect("number"), b"+1-201-555-0123");
        let o = Uri::parse(Bytes::from_static(b"soap.beep://192.0.2.103:3002")).expect("other");
        assert_eq!(o.scheme(), Scheme::Other);
        assert_eq!(t.tel().expect("tel").params.value("phone-context"), Some(&b"example.com"[..]));
    }

    #[test]
    fn malformed_uris_are_rejected() {
        for bad in ["sip:", "sip:user@", "sip:host:99999", "sip:ho st", "sip:a@b;;x", "sip:u%4@h", "nocolon", "1x:y"] {
            assert!(Uri::parse(Bytes::from_static(bad.as_bytes())).is_err(), "{bad}");
        }
    }
}
