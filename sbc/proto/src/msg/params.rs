//! `;name=value` parameter lists of headers (RFC 3261 §25.1 generic-param) and of URIs (uri-parameter).

use super::scan::{class, Cursor};
use bytes::Bytes;

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

/// Parses `*( SEMI generic-param )` with optional white space around `;` and `=`, up to the end of the cursor.
/// `gen-value = token / host / quoted-string`; IPv6 references (`[...]`) are accepted as host.
pub(crate) fn header_params(c: &mut Cursor<'_>) -> Result<Params, &'static str> {
    let mut params = Vec::new();
    loop {
        c.skip_ws();
        if c.at_end() {
            return Ok(Params(params));
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
        params.push(Param { name, value });
    }
}

fn gen_value(c: &mut Cursor<'_>) -> Option<Bytes> {
    match c.peek()? {
        b'"' => c.quoted_string(),
        b'[' => {
            let start = c.pos();
            let v = c.take_while(|b| {
                b.is_ascii_hexdigit() || b == b':' || b == b'.' || b == b'[' || b == b']'
            });
            (v.last() == Some(&b']') && v.len() > 2).then(|| c.slice(start, c.pos()))
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

/// Parses URI parameters from `s` (which starts right after the first `;`), with no white space allowed.
pub(crate) fn uri_params(s: &Bytes) -> Result<Params, &'static str> {
    let mut params = Vec::new();
    for part in s.split(|&b| b == b';') {
        let start = part.as_ptr() as usize - s.as_ptr() as usize;
        let part_b = s.slice(start..start + part.len());
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
                params.push(Param {
                    name: part_b.slice(..i),
                    value: Some(part_b.slice(i + 1..)),
                });
            }
            None => params.push(Param {
                name: part_b,
                value: None,
            }),
        }
    }
    Ok(Params(params))
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

    #[test]
    fn header_params_with_white_space() {
        let v = Bytes::from_static(b" ;   tag    = 1918181833n ; q = 0.33; lr");
        let p = header_params(&mut Cursor::new(&v)).expect("valid");
        assert_eq!(p.value("TAG").map(|v| &v[..]), Some(&b"1918181833n"[..]));
        assert_eq!(p.value("q").map(|v| &v[..]), Some(&b"0.33"[..]));
        assert!(p.has("lr"));
    }

    #[test]
    fn empty_params_are_rejected() {
        let v = Bytes::from_static(b";;");
        assert!(header_params(&mut Cursor::new(&v)).is_err());
        assert!(uri_params(&Bytes::from_static(b"lr;;x")).is_err());
    }

    #[test]
    fn escapes_need_two_hex_digits() {
        assert!(check_escapes(b"a%20b").is_ok());
        assert!(check_escapes(b"a%2").is_err());
        assert!(check_escapes(b"a%zz").is_err());
    }
}
