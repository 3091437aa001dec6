//! `;name=value` parameter lists of headers (RFC 3261 §25.1 generic-param) and of URIs (uri-parameter).

use super::scan::find;
use super::scan::{class, Cursor};
use bytes::Bytes;
use std::ops::Range;

/// An ordered parameter list, kept as the bytes it was received as (`;branch=z9hG4bK1;rport`) and read on demand:
/// parsing a header does not allocate a list or cut a `Bytes` per parameter that nobody asks about. Names compare
/// case-insensitively; values are returned as received (a quoted value keeps its quotes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    /// From the first `;` to the end of the parameters; empty when there are none. Validated when built.
    raw: Bytes,
    style: Style,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Style {
    /// Header parameters: white space allowed around `;` and `=` (RFC 3261 §7.3.1).
    #[default]
    Header,
    /// URI parameters: no white space (RFC 3261 §19.1.1).
    Uri,
}

impl Params {
    /// Header parameters from an already validated span.
    pub(crate) fn header(raw: Bytes) -> Self {
        Self { raw, style: Style::Header }
    }

    /// URI parameters from an already validated span that starts with `;`.
    pub(crate) fn uri(raw: Bytes) -> Self {
        Self { raw, style: Style::Uri }
    }

    /// Calls `f` with each parameter until it returns `true`.
    fn find<'s>(&'s self, f: impl FnMut(&'s [u8], Option<&'s [u8]>) -> bool) {
        each(&self.raw, self.style == Style::Uri, f);
    }

    /// The value of parameter `name`: `Some(None)` for a parameter without value, `None` if absent.
    pub fn get(&self, name: &str) -> Option<Option<&[u8]>> {
        lookup(&self.raw, self.style == Style::Uri, name)
    }

    /// The value of `name` when it has one.
    pub fn value(&self, name: &str) -> Option<&[u8]> {
        self.get(name).flatten()
    }

    /// Whether `name` is present, with or without value.
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Every parameter, in order.
    pub fn to_vec(&self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let mut out = Vec::new();
        self.find(|n, v| {
            out.push((n.to_vec(), v.map(<[u8]>::to_vec)));
            false
        });
        out
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.raw.iter().all(|&b| b == b' ' || b == b'\t')
    }

    /// Sets `name` to `value` (or to no value), replacing an existing parameter of that name in place or adding
    /// it at the end.
    pub fn set(&mut self, name: &str, value: Option<&[u8]>) {
        let mut out = Vec::with_capacity(self.raw.len() + name.len() + value.map_or(0, <[u8]>::len) + 2);
        let mut replaced = false;
        let push = |out: &mut Vec<u8>, n: &[u8], v: Option<&[u8]>| {
            out.push(b';');
            out.extend_from_slice(n);
            if let Some(v) = v {
                out.push(b'=');
                out.extend_from_slice(v);
            }
        };
        self.find(|n, v| {
            if n.eq_ignore_ascii_case(name.as_bytes()) {
                if !replaced {
                    push(&mut out, name.as_bytes(), value);
                }
                replaced = true;
            } else {
                push(&mut out, n, v);
            }
            false
        });
        if !replaced {
            push(&mut out, name.as_bytes(), value);
        }
        self.raw = Bytes::from(out);
    }

    /// Writes `;name=value` for each parameter, without the white space it may have been received with.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        self.find(|n, v| {
            out.push(b';');
            out.extend_from_slice(n);
            if let Some(v) = v {
                out.push(b'=');
                out.extend_from_slice(v);
            }
            false
        });
    }
}

/// Calls `f` with each parameter of an already validated span until it returns `true`. `uri` selects URI
/// parameters (the span starts with `;`, no white space) over header parameters.
pub(crate) fn each<'s>(raw: &'s [u8], uri: bool, mut f: impl FnMut(&'s [u8], Option<&'s [u8]>) -> bool) {
    let mut done = false;
    let mut sink = |(n, v): ParamRanges| {
        if !done {
            done = f(&raw[n], v.map(|v| &raw[v]));
        }
    };
    // The span was validated when it was lexed the first time, so lexing cannot fail here.
    let _ = match uri {
        false => header_params(&mut Cursor::new(raw), &mut sink),
        true if raw.len() > 1 => uri_params(raw, 1..raw.len(), &mut sink),
        true => Ok(()),
    };
}

/// The value of parameter `name` in an already validated span: `Some(None)` for a parameter without value.
pub(crate) fn lookup<'s>(raw: &'s [u8], uri: bool, name: &str) -> Option<Option<&'s [u8]>> {
    let mut found = None;
    each(raw, uri, |n, v| {
        let hit = n.eq_ignore_ascii_case(name.as_bytes());
        if hit {
            found = Some(v);
        }
        hit
    });
    found
}

/// One lexed parameter: ranges into the value being lexed.
pub(crate) type ParamRanges = (Range<usize>, Option<Range<usize>>);

/// Lexes `*( SEMI generic-param )` with optional white space around `;` and `=`, up to the end of the cursor,
/// handing each parameter to `sink`. `gen-value = token / host / quoted-string`.
pub(crate) fn header_params(c: &mut Cursor<'_>, sink: &mut dyn FnMut(ParamRanges)) -> Result<(), &'static str> {
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
        let value = if c.eat_sep(b'=') { Some(gen_value(c).ok_or("bad parameter value")?) } else { None };
        sink((name, value));
    }
}

fn gen_value(c: &mut Cursor<'_>) -> Option<Range<usize>> {
    match c.peek()? {
        b'"' => c.quoted_string(),
        b'[' => {
            let v = c.take_while(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.' || b == b'[' || b == b']');
            (v.len() > 2 && c.whole()[v.end - 1] == b']').then_some(v)
        }
        // Unbracketed IPv6 occurs in Via `received` (RFC 3261 §20.42 via-received), hence ':' here.
        _ => {
            let v = c.take_while(|b| class::is_token(b) || b == b':');
            (!v.is_empty()).then_some(v)
        }
    }
}

/// Lexes URI parameters in `s[range]` (which starts right after the first `;`), no white space allowed.
pub(crate) fn uri_params(s: &[u8], range: Range<usize>, sink: &mut dyn FnMut(ParamRanges)) -> Result<(), &'static str> {
    let mut start = range.start;
    loop {
        let end = find(b';', &s[start..range.end]).map_or(range.end, |i| start + i);
        let part = &s[start..end];
        if part.is_empty() {
            return Err("empty URI parameter");
        }
        if !part.iter().all(|&b| class::is_uri_param(b)) {
            return Err("invalid character in URI parameter");
        }
        check_escapes(part)?;
        match find(b'=', part) {
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
    while let Some(off) = find(b'%', &s[i..]) {
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
        header_params(&mut Cursor::new(v), &mut |_| {})?;
        Ok(Params::header(Bytes::from_static(v)))
    }

    #[test]
    fn header_params_with_white_space() {
        let p = hp(b" ;   tag    = 1918181833n ; q = 0.33; lr").expect("valid");
        assert_eq!(p.value("TAG"), Some(&b"1918181833n"[..]));
        assert_eq!(p.value("q"), Some(&b"0.33"[..]));
        assert!(p.has("lr"));
        assert_eq!(p.get("lr"), Some(None));
        let mut p = p;
        p.set("q", Some(b"1"));
        p.set("received", Some(b"198.18.0.1"));
        let mut out = Vec::new();
        p.write_to(&mut out);
        assert_eq!(out, b";tag=1918181833n;q=1;lr;received=198.18.0.1");
        let p = hp(b";received=[2001:db8::1];maddr=2001:db8::2").expect("ipv6");
        assert_eq!(p.value("received"), Some(&b"[2001:db8::1]"[..]));
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
