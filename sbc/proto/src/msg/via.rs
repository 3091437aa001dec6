//! The Via header (RFC 3261 §20.42, §18.2.1 received/rport from RFC 3581).

use super::params::{self, header_params, ParamRanges, Params};
use super::scan::{parse_u64, Cursor, Span};
use super::uri::host_port;
use bytes::Bytes;
use std::ops::Range;

/// One Via value: `SIP/2.0/UDP host:port;branch=…;received=…;rport`. It keeps the value as received and the
/// positions of its parts, so reading a Via costs one reference count, not one per part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    raw: Bytes,
    protocol: Span,
    version: Span,
    transport: Span,
    host: Span,
    /// sent-by port, if given.
    pub port: Option<u16>,
    params: Span,
}

/// Where the parts of a Via are, in its value: kept by the parser so that reading a Via it validated does not lex
/// it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Parts {
    protocol: Span,
    version: Span,
    transport: Span,
    host: Span,
    port: Option<u16>,
    params: Span,
}

impl From<Lexed> for Parts {
    fn from(l: Lexed) -> Self {
        Self {
            protocol: l.protocol.into(),
            version: l.version.into(),
            transport: l.transport.into(),
            host: l.host.into(),
            port: l.port,
            params: l.params.into(),
        }
    }
}

/// The RFC 3261 magic cookie that marks a branch as globally unique (§8.1.1.7).
pub const MAGIC_COOKIE: &[u8] = b"z9hG4bK";

/// A Via value checked against its grammar, as ranges into the value.
pub(crate) struct Lexed {
    protocol: Range<usize>,
    version: Range<usize>,
    transport: Range<usize>,
    host: Range<usize>,
    port: Option<u16>,
    params: Range<usize>,
}

/// Checks one Via value, allowing white space around `/`, `:` and `;` (RFC 4475 §3.1.1.1), and hands its
/// parameters to `sink`.
pub(crate) fn lex(value: &[u8], sink: &mut dyn FnMut(ParamRanges)) -> Result<Lexed, &'static str> {
    let mut c = Cursor::new(value);
    c.skip_ws();
    let protocol = c.token().ok_or("missing protocol name")?;
    if !c.eat_sep(b'/') {
        return Err("expected '/' after protocol name");
    }
    let version = c.token().ok_or("missing protocol version")?;
    if !c.eat_sep(b'/') {
        return Err("expected '/' after protocol version");
    }
    let transport = c.token().ok_or("missing transport")?;
    if !c.skip_ws() {
        return Err("expected white space before sent-by");
    }
    let host = if c.peek() == Some(b'[') {
        c.take_while(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.' | b'[' | b']'))
    } else {
        c.take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'))
    };
    let (host, mut port) = host_port(value, host)?;
    // COLON may carry white space around it: `host : 5060` (a bracketed IPv6 host took its port already).
    if port.is_none() && c.eat_sep(b':') {
        let digits = c.take_while(|b| b.is_ascii_digit());
        port = Some(parse_u64(&value[digits], u64::from(u16::MAX)).ok_or("bad port")? as u16);
    }
    let params = c.pos()..value.len();
    header_params(&mut c, sink)?;
    Ok(Lexed { protocol, version, transport, host, port, params })
}

impl Via {
    /// Parses one Via value (see [`lex`]).
    pub fn parse(value: &Bytes) -> Result<Self, &'static str> {
        Ok(Self::from_parts(value.clone(), lex(value, &mut |_| {})?.into()))
    }

    /// A Via whose parts the parser found in `raw` already.
    pub(crate) fn from_parts(raw: Bytes, p: Parts) -> Self {
        let Parts { protocol, version, transport, host, port, params } = p;
        Self { raw, protocol, version, transport, host, port, params }
    }

    /// Protocol name (`SIP`).
    pub fn protocol(&self) -> &[u8] {
        &self.raw[self.protocol.range()]
    }

    /// Protocol version (`2.0`).
    pub fn version(&self) -> &[u8] {
        &self.raw[self.version.range()]
    }

    /// Transport token as received (`UDP`, `TCP`, `TLS`, `WS`, `SCTP`, or an extension).
    pub fn transport(&self) -> &[u8] {
        &self.raw[self.transport.range()]
    }

    /// sent-by host: a name, an IPv4 address, or an IPv6 reference with its brackets.
    pub fn host(&self) -> &[u8] {
        &self.raw[self.host.range()]
    }

    /// The value of parameter `name`: `Some(None)` for a parameter without value, `None` if absent.
    pub fn param(&self, name: &str) -> Option<Option<&[u8]>> {
        params::lookup(&self.raw[self.params.range()], false, name)
    }

    /// The parameters.
    pub fn params(&self) -> Params {
        Params::header(self.raw.slice(self.params.range()))
    }

    /// Sets parameter `name` (replacing it in place, or appending it), as the transport layer does with
    /// `received` and `rport` (RFC 3261 §18.2.1, RFC 3581 §4).
    pub fn set_param(&mut self, name: &str, value: Option<&[u8]>) {
        let mut p = self.params();
        p.set(name, value);
        let mut raw = self.raw[..self.params.range().start].to_vec();
        let start = raw.len();
        p.write_to(&mut raw);
        self.params = (start..raw.len()).into();
        self.raw = Bytes::from(raw);
    }

    /// The branch parameter.
    pub fn branch(&self) -> Option<&[u8]> {
        self.param("branch").flatten()
    }

    /// Whether the branch starts with the RFC 3261 magic cookie and has something after it (RFC 4475 §3.2.1:
    /// a bare cookie is no identifier, so such requests are matched the RFC 2543 way).
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch().is_some_and(|b| b.len() > MAGIC_COOKIE.len() && b.starts_with(MAGIC_COOKIE))
    }

    /// The `received` parameter.
    pub fn received(&self) -> Option<&[u8]> {
        self.param("received").flatten()
    }

    /// The `rport` parameter: `Some(None)` when present without a value (a request asking for it, RFC 3581),
    /// `Some(Some(port))` when filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.param("rport").map(|v| v.and_then(|v| super::scan::parse_u64(v, u64::from(u16::MAX)).map(|p| p as u16)))
    }

    /// Writes the value back (`SIP/2.0/UDP host:port;params`).
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(self.protocol());
        out.push(b'/');
        out.extend_from_slice(self.version());
        out.push(b'/');
        out.extend_from_slice(self.transport());
        out.push(b' ');
        out.extend_from_slice(self.host());
        if let Some(p) = self.port {
            out.extend_from_slice(format!(":{p}").as_bytes());
        }
        self.params().write_to(&mut out);
        out.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn via(s: &'static str) -> Result<Via, &'static str> {
        Via::parse(&Bytes::from_static(s.as_bytes()))
    }

    #[test]
    fn plain_via_with_rport() {
        let v = via("SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-d87543;rport").expect("valid");
        assert_eq!(v.transport(), b"UDP");
        assert_eq!(v.host(), b"127.0.0.1");
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.rport(), Some(None));
        assert!(v.has_rfc3261_branch());
    }

    #[test]
    fn white_space_everywhere() {
        let v = via("SIP  / 2.0  / TCP     spindle.example.com   ;  branch  =   z9hG4bK9ikj8").expect("valid");
        assert_eq!(v.transport(), b"TCP");
        assert_eq!(v.host(), b"spindle.example.com");
        assert_eq!(v.branch().expect("branch"), b"z9hG4bK9ikj8");
    }

    #[test]
    fn ipv6_sent_by_and_received() {
        let v = via("SIP/2.0/UDP [2001:db8::9:1]:5060;received=2001:db8::9:255;branch=z9hG4bKas3").expect("valid");
        assert_eq!(v.host(), b"[2001:db8::9:1]");
        assert_eq!(v.received().expect("received"), b"2001:db8::9:255");
    }

    #[test]
    fn bare_cookie_is_not_an_rfc3261_branch() {
        assert!(!via("SIP/2.0/UDP h;branch=z9hG4bK").expect("valid").has_rfc3261_branch());
    }

    #[test]
    fn malformed_vias() {
        for bad in ["SIP/2.0/UDP 192.0.2.15;;", "SIP/2.0 host", "", "SIP/2.0/UDP", "SIP/2.0/UDP host:99999"] {
            assert!(via(bad).is_err(), "{bad}");
        }
    }
}
