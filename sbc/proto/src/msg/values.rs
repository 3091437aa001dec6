//! Small typed header values: CSeq (§20.16), Content-Type (§20.15), Contact lists (§20.10).

use super::addr::NameAddr;
use super::method::Method;
use super::params::{header_params, ParamRanges, Params};
use super::scan::{class, parse_u64, Cursor};
use bytes::Bytes;
use std::ops::Range;

/// `CSeq: 4711 INVITE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// The sequence number, at most 2**31-1 when we generate it, at most 2**32-1 accepted (RFC 3261 §8.1.1.5).
    pub seq: u32,
    /// The method.
    pub method: Method,
}

/// Checks `1*DIGIT LWS Method` and returns the number and the method's range.
pub(crate) fn lex_cseq(value: &[u8]) -> Result<(u32, Range<usize>), &'static str> {
    let mut c = Cursor::new(value);
    c.skip_ws();
    let digits = c.take_while(|b| b.is_ascii_digit());
    let seq = parse_u64(&value[digits], u64::from(u32::MAX)).ok_or("sequence number missing or above 2**32-1")?;
    if !c.skip_ws() {
        return Err("expected white space after the sequence number");
    }
    let method = c.token().ok_or("missing method")?;
    c.skip_ws();
    if !c.at_end() {
        return Err("trailing characters after the method");
    }
    Ok((seq as u32, method))
}

impl CSeq {
    /// Parses `1*DIGIT LWS Method`.
    pub fn parse(value: &Bytes) -> Result<Self, &'static str> {
        let (seq, method) = lex_cseq(value)?;
        Ok(Self {
            seq,
            method: Method::known(&value[method.clone()]).unwrap_or_else(|| Method::Other(value.slice(method))),
        })
    }

    /// Writes `seq METHOD`.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = self.seq.to_string().into_bytes();
        out.push(b' ');
        out.extend_from_slice(self.method.as_bytes());
        out.into()
    }
}

/// `Content-Type: application/sdp; charset=utf-8`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaType {
    /// `application`.
    pub kind: Bytes,
    /// `sdp`.
    pub subtype: Bytes,
    /// Parameters.
    pub params: Params,
}

/// Type, subtype and parameter ranges of a media type.
pub(crate) type MediaTypeRanges = (Range<usize>, Range<usize>, Range<usize>);

/// Checks `m-type SLASH m-subtype *(SEMI m-parameter)`; returns the type, subtype and parameter ranges.
pub(crate) fn lex_media_type(value: &[u8], sink: &mut dyn FnMut(ParamRanges)) -> Result<MediaTypeRanges, &'static str> {
    let mut c = Cursor::new(value);
    c.skip_ws();
    let kind = c.token().ok_or("missing media type")?;
    if !c.eat_sep(b'/') {
        return Err("expected '/' in media type");
    }
    let subtype = c.token().ok_or("missing media subtype")?;
    let params = c.pos()..value.len();
    header_params(&mut c, sink)?;
    Ok((kind, subtype, params))
}

impl MediaType {
    /// `application/sdp` without parameters.
    pub fn sdp() -> Self {
        Self {
            kind: Bytes::from_static(b"application"),
            subtype: Bytes::from_static(b"sdp"),
            params: Params::default(),
        }
    }

    /// Parses `m-type SLASH m-subtype *(SEMI m-parameter)`.
    pub fn parse(value: &Bytes) -> Result<Self, &'static str> {
        let (kind, subtype, params) = lex_media_type(value, &mut |_| {})?;
        Ok(Self { kind: value.slice(kind), subtype: value.slice(subtype), params: Params::header(value.slice(params)) })
    }

    /// Whether this is `type/subtype`, compared case-insensitively.
    pub fn is(&self, kind: &str, subtype: &str) -> bool {
        self.kind.eq_ignore_ascii_case(kind.as_bytes()) && self.subtype.eq_ignore_ascii_case(subtype.as_bytes())
    }
}

/// The Contact header of a message: `*` (only in REGISTER, RFC 3261 §10.2.2) or addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contacts {
    /// `Contact: *`.
    Star,
    /// Zero or more addresses.
    Addrs(Vec<NameAddr>),
}

/// Checks a Call-ID: `word ["@" word]` (RFC 3261 §25.1).
pub(crate) fn check_call_id(v: &[u8]) -> Result<(), &'static str> {
    let mut parts = v.splitn(2, |&b| b == b'@');
    let ok = |w: &[u8]| !w.is_empty() && w.iter().all(|&b| class::is_word(b));
    match (parts.next(), parts.next()) {
        (Some(a), None) if ok(a) => Ok(()),
        (Some(a), Some(b)) if ok(a) && ok(b) => Ok(()),
        _ => Err("not word[@word]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cseq_forms() {
        let c = CSeq::parse(&Bytes::from_static(b"0009 INVITE")).expect("valid");
        assert_eq!((c.seq, &c.method), (9, &Method::Invite));
        assert!(CSeq::parse(&Bytes::from_static(b"36893488147419103232 INVITE")).is_err());
        assert!(CSeq::parse(&Bytes::from_static(b"INVITE")).is_err());
        assert!(CSeq::parse(&Bytes::from_static(b"1 INVITE x")).is_err());
        assert_eq!(&c.to_bytes()[..], b"9 INVITE");
    }

    #[test]
    fn media_type() {
        let m = MediaType::parse(&Bytes::from_static(b"multipart/mixed;boundary=7a9cbec02ceef655")).expect("valid");
        assert!(m.is("Multipart", "MIXED"));
        assert_eq!(m.params.value("boundary").expect("boundary"), b"7a9cbec02ceef655");
    }

    #[test]
    fn call_ids() {
        assert!(check_call_id(b"intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{").is_ok());
        assert!(check_call_id(b"a@b@c").is_err());
        assert!(check_call_id(b"").is_err());
        assert!(check_call_id(b"has space").is_err());
    }
}
