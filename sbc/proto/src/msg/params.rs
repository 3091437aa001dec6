//! `;name=value` parameter lists of headers (RFC 3261 §25.1 generic-param) and of URIs (uri-parameter).

use super::scan::{class, Cursor};
use bytes::Bytes;
use std::ops::Range;

/// One parameter. Names compare case-insensitively; values are kept as received (a quoted value keeps its quotes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// The parameter name, as received.
    pub name: Bytes,
    /// The value, if the parameter had `=value`.
    pub value: Option<Bytes>,
}

/// An ordered parameter list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<Param>);

impl Params {
    /// The value of parameter `name`: `Some(None)` for a parameter without value, `None` if absent.
    pub fn get(&self, name: &str) -> Option<Option<&Bytes>> {
        self.0
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name.as_bytes()))
            .map(|p| p.value.as_ref())
    }

    /// The value of `name` when it has one.
    pub fn value(&self, name: &str) -> Option<&Bytes> {
        self.get(name).flatten()
    }

    /// Whether `name` is present, with or without value.
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Writes `;name=value` for each parameter.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        for p in &self.0 {
            out.push(b';');
            out.extend_from_slice(&p.name);
            if let Some(v) = &p.value {
                out.push(b'=');
                out.extend_from_slice(v);
            }
        }
    }
}

/// One lexed parameter: ranges into the value being lexed.
pub(crate) type ParamRanges = (Range<usize>, Option<Range<usize>>);

impl Params {
    /// Builds the list by running `lex` with a sink that cuts each parameter out of `src`.
    pub(crate) fn collect<E>(
        src: &Bytes,
        lex: impl FnOnce(&mut dyn FnMut(ParamRanges)) -> Result<(), E>,
    ) -> Result<Self, E> {
        let mut params = Vec::new();
        lex(&mut |(n, v)| {
            params.push(Param {
                name: src.slice(n),
                value: v.map(|v| src.slice(v)),
            })
        })?;
        Ok(Self(params))
    }
}

/// Lexes `*( SEMI generic-param )` with optional white space around `;` and `=`, up to the end of the cursor,
/// handing each parameter to `sink`. `gen-value = token / host / quoted-string`.
pub(crate) fn header_params(
    c: &mut Cursor<'_>,
    sink: &mut dyn FnMut(ParamRanges),
) -> Result<(), &'static str> {
    loop {
        c.skip_ws();
        if c.at_end() {
            return Ok(());
        }
        if !c.eat(b';') {
            return Err("expected ';' before parameter");
        }
        c.skip_ws();
        let name = c.token().ok_or("empty parameter name")?;
        let value = if c.eat_sep(b'=') {
            Some(gen_value(c).ok_or("bad parameter value")?)
        } else {
            None
        };
        sink((name, value));
    }
}

fn gen_value(c: &mut Cursor<'_>) -> Option<Range<usize>> {
    match c.peek()? {
        b'"' => c.quoted_string(),
        b'[' => {
            let v = c.take_while(|b| {
                b.is_ascii_hexdigit() || b == b':' || b == b'.' || b == b'[' || b == b']'
            });
            (v.len() > 2 && c.whole()[v.end - 1] == b']').then_some(v)
        }
        // Unbracketed IPv6 occurs in Via `received` (RFC 3261 §20.42 via-received), hence ':' here.
        _ => {
            let v = c.take_while(|b| class::is_token(b) || b == b':');
            (!v.is_empty()).then_some(v)
        }
    }
}

/// `paramchar` of a URI parameter: param-unreserved / unreserved / escaped (checked separately).
const fn is_uri_paramchar(b: u8) -> bool {
    class::is_unreserved(b) || matches!(b, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$' | b'%')
}

/// Lexes URI parameters in `s[range]` (which starts right after the first `;`), no white space allowed.
pub(crate) fn uri_params(
    s: &[u8],
    range: Range<usize>,
    sink: &mut dyn FnMut(ParamRanges),
) -> Result<(), &'static str> {
    let mut start = range.start;
    loop {
        let end = memchr::memchr(b';', &s[start..range.end]).map_or(range.end, |i| start + i);
        let part = &s[start..end];
        if part.is_empty() {
            return Err("empty URI parameter");
        }
        if !part.iter().all(|&b| is_uri_paramchar(b) || b == b'=') {
            return Err("invalid character in URI parameter");
        }
        check_escapes(part)?;
        match memchr::memchr(b'=', part) {
            Some(i) => {
                if i == 0 || i + 1 == part.len() {
                    return Err("empty URI parameter name or value");
                }
                sink((start..start + i, Some(start + i + 1..end)));
            }
            None => sink((start..end, None)),
        }
        if end == range.end {
            return Ok(());
        }
        start = end + 1;
    }
}

/// Checks that every `%` is followed by two hex digits (RFC 3261 `escaped`).
pub(crate) fn check_escapes(s: &[u8]) -> Result<(), &'static str> {
    let mut i = 0;
    while let Some(off) = memchr::memchr(b'%', &s[i..]) {
        let p = i + off;
        if p + 2 >= s.len() {
            return Err("truncated %-escape");
        }
        if !(s[p + 1].is_ascii_hexdigit() && s[p + 2].is_ascii_hexdigit()) {
            return Err("%-escape without two hex digits");
        }
        i = p + 3;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(v: &'static [u8]) -> Result<Params, &'static str> {
        let b = Bytes::from_static(v);
        Params::collect(&b, |sink| header_params(&mut Cursor::new(v), sink))
    }

    #[test]
    fn header_params_with_white_space() {
        let p = hp(b" ;   tag    = 1918181833n ; q = 0.33; lr").expect("valid");
        assert_eq!(p.value("TAG").map(|v| &v[..]), Some(&b"1918181833n"[..]));
        assert_eq!(p.value("q").map(|v| &v[..]), Some(&b"0.33"[..]));
        assert!(p.has("lr"));
        let p = hp(b";received=[2001:db8::1];maddr=2001:db8::2").expect("ipv6");
        assert_eq!(
            p.value("received").map(|v| &v[..]),
            Some(&b"[2001:db8::1]"[..])
        );
    }

    #[test]
    fn empty_params_are_rejected() {
        assert!(hp(b";;").is_err());
        assert!(uri_params(b"lr;;x", 0..5, &mut |_| {}).is_err());
        assert!(uri_params(b"lr;x", 0..4, &mut |_| {}).is_ok());
    }

    #[test]
    fn escapes_need_two_hex_digits() {
        assert!(check_escapes(b"a%20b").is_ok());
        assert!(check_escapes(b"a%2").is_err());
        assert!(check_escapes(b"a%zz").is_err());
    }
}
