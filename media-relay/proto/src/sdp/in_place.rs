//! The fast path of [`super::parse`] and [`super::rewrite`]: SDP that is already in the form rtc-sdp prints is read
//! and rewritten line by line, addresses and ports replaced in place, without building rtc-sdp's
//! `SessionDescription` (a few dozen `String`s and `Vec`s per body, then printed again). Every call of the SBC
//! with media anchored went through that twice per SDP: about a tenth of the sbc's CPU per call (benches/README.md,
//! "Where the CPU of a call goes").
//!
//! [`scan`] accepts only text whose rtc-sdp round trip is the identity: CRLF after every line, no blank line, no
//! blank at either end of a value, single spaces between the fields of `o=`, `c=`, `t=` and `m=`, numbers without
//! sign or leading zeros, and the lines in the order rtc-sdp prints them (`v o s i? c? b* t a* (m i? c? b* a*)*`).
//! Anything else (LF line ends, `u=`/`e=`/`p=`/`k=`/`r=`/`z=`, repeated `t=`, a port range, a `c=` without
//! address, media-level lines out of order, any error) returns `None` and the caller takes rtc-sdp's path, which
//! gives the same result or the same error as before. On the text it accepts, the output is byte for byte what
//! the rtc-sdp path gives: the crate's unit tests run both paths on every SDP they use and compare.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::{
    address_type, direction_of, is_hold, parse_ip, parse_rtcp, rewrite_rtcp, rewrite_ssrc, select_clock_rates, Anchor,
    Direction, MediaLine, Transport, ICE_ATTRIBUTES,
};

/// One SDP line: its type letter and the text after `x=`.
#[derive(Clone, Copy)]
struct Line<'a> {
    kind: u8,
    value: &'a str,
}

/// A body in rtc-sdp's printed form: its lines, and where each media section starts.
pub(super) struct Canonical<'a> {
    lines: Vec<Line<'a>>,
    /// Index in `lines` of each `m=` line.
    media: Vec<usize>,
}

impl<'a> Canonical<'a> {
    /// The lines of the session section (before the first `m=`).
    fn session(&self) -> &[Line<'a>] {
        &self.lines[..self.media.first().copied().unwrap_or(self.lines.len())]
    }

    /// The lines of media section `i`, its `m=` line first.
    fn section(&self, i: usize) -> &[Line<'a>] {
        let end = self.media.get(i + 1).copied().unwrap_or(self.lines.len());
        &self.lines[self.media[i]..end]
    }

    fn sections(&self) -> impl Iterator<Item = &[Line<'a>]> {
        (0..self.media.len()).map(|i| self.section(i))
    }
}

/// Position of a line type in the order rtc-sdp prints (session, then media); `None`: not on the fast path.
fn rank(kind: u8, in_media: bool) -> Option<u8> {
    Some(match (in_media, kind) {
        (false, b'v') => 0,
        (false, b'o') => 1,
        (false, b's') => 2,
        (false, b'i') => 3,
        (false, b'c') => 4,
        (false, b'b') => 5,
        (false, b't') => 6,
        (false, b'a') => 7,
        (true, b'i') => 11,
        (true, b'c') => 12,
        (true, b'b') => 13,
        (true, b'a') => 14,
        (_, b'm') => 10,
        _ => return None,
    })
}

/// `text` as lines, when printing rtc-sdp's parse of it would give `text` back (see the module doc).
pub(super) fn scan(text: &str) -> Option<Canonical<'_>> {
    let body = text.strip_suffix("\r\n")?;
    let mut lines = Vec::with_capacity(16);
    let mut media = Vec::new();
    let (mut last, mut seen_t) = (None::<u8>, false);
    for raw in body.split("\r\n") {
        let bytes = raw.as_bytes();
        if bytes.len() < 2 || bytes[1] != b'=' || raw.contains(['\r', '\n']) {
            return None;
        }
        let (kind, value) = (bytes[0], &raw[2..]);
        if value.trim().len() != value.len() {
            return None;
        }
        let r = rank(kind, !media.is_empty())?;
        // Repeats only where rtc-sdp allows them and prints them as they came: b= and a= lines.
        let repeats = matches!(kind, b'b' | b'a');
        // The first three lines are v=, o=, s=; after them each line ranks after the one before it (an m= line
        // starts a section, and the ranks again).
        if let Some(&first) = [b'v', b'o', b's'].get(lines.len()) {
            if kind != first {
                return None;
            }
        } else if kind != b'm' && last.is_some_and(|l| r < l || (r == l && !repeats)) {
            return None;
        }
        if kind == b'm' && !seen_t {
            return None;
        }
        let valid = match kind {
            b'v' => value == "0",
            b'o' => origin_ok(value),
            b'c' => connection(value).is_some(),
            b't' => fields(value).is_some_and(|f| f.len() == 2 && f.iter().all(|n| number::<u64>(n))),
            b'b' => bandwidth_ok(value),
            b'm' => media_ok(value),
            b'a' => !value.is_empty() && !value.starts_with(':'),
            _ => true,
        };
        if !valid {
            return None;
        }
        seen_t |= kind == b't';
        if kind == b'm' {
            media.push(lines.len());
        }
        lines.push(Line { kind, value });
        last = Some(r);
    }
    seen_t.then_some(Canonical { lines, media })
}

/// The space-separated fields of a value, when single spaces are its only blanks.
fn fields(value: &str) -> Option<Vec<&str>> {
    if value.chars().any(|c| c.is_whitespace() && c != ' ') {
        return None;
    }
    let f: Vec<&str> = value.split(' ').collect();
    f.iter().all(|s| !s.is_empty()).then_some(f)
}

/// A decimal rtc-sdp reads as a `T` and prints as it was: digits only, no leading zero.
fn number<T: std::str::FromStr>(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'))
        && s.parse::<T>().is_ok()
}

fn origin_ok(value: &str) -> bool {
    fields(value).is_some_and(|f| {
        f.len() == 6 && number::<u64>(f[1]) && number::<u64>(f[2]) && f[3] == "IN" && matches!(f[4], "IP4" | "IP6")
    })
}

/// `c=IN IP4|IP6 <address>`: the address (any token: a host name is kept as rtc-sdp keeps it).
fn connection(value: &str) -> Option<&str> {
    let f = fields(value)?;
    (f.len() == 3 && f[0] == "IN" && matches!(f[1], "IP4" | "IP6")).then(|| f[2])
}

fn bandwidth_ok(value: &str) -> bool {
    let Some((kind, n)) = value.split_once(':') else { return false };
    let kind = kind.strip_prefix("X-").unwrap_or(kind);
    !kind.is_empty() && kind.bytes().all(|b| b.is_ascii_alphanumeric()) && number::<u64>(n)
}

fn media_ok(value: &str) -> bool {
    fields(value).is_some_and(|f| {
        f.len() >= 4
            && matches!(f[0], "audio" | "video" | "text" | "application" | "message" | "image")
            && number::<u16>(f[1])
            && f[2].split('/').all(|p| !p.is_empty())
    })
}

/// An `a=` value as rtc-sdp splits it: the key, and the value after the first `:`.
fn attribute(value: &str) -> (&str, Option<&str>) {
    match value.split_once(':') {
        Some((k, v)) => (k, Some(v)),
        None => (value, None),
    }
}

fn attributes<'a, 'b>(lines: &'b [Line<'a>]) -> impl Iterator<Item = (&'a str, Option<&'a str>)> + 'b {
    lines.iter().filter(|l| l.kind == b'a').map(|l| attribute(l.value))
}

fn connection_of<'a>(lines: &[Line<'a>]) -> Option<&'a str> {
    lines.iter().find(|l| l.kind == b'c').and_then(|l| connection(l.value))
}

fn uses_ice(sdp: &Canonical<'_>) -> bool {
    attributes(&sdp.lines).any(|(k, _)| k == "candidate" || k == "ice-ufrag")
}

/// [`super::parse`] on the fast path; `None` hands the body to rtc-sdp (which reports any error).
pub(super) fn parse(sdp: &Canonical<'_>) -> Option<Vec<MediaLine>> {
    let ice = uses_ice(sdp);
    let ip = |a: Option<&str>| -> Option<Option<IpAddr>> {
        match a {
            None => Some(None),
            Some(a) => parse_ip(a).map(Some),
        }
    };
    let session = sdp.session();
    let session_address = ip(connection_of(session))?;
    let session_direction = direction_of(attributes(session));
    sdp.sections()
        .map(|section| {
            let m: Vec<&str> = section[0].value.split(' ').collect();
            let address = ip(connection_of(section))?.or(session_address);
            let port: u16 = m[1].parse().ok()?;
            let (rtcp_port, rtcp_address) = match attributes(section).find(|(k, _)| *k == "rtcp") {
                Some((_, value)) => {
                    let (p, a) = parse_rtcp(value.unwrap_or("")).ok()?;
                    (p, a.or(address))
                }
                None if port == 0 => (0, address),
                None => (port.checked_add(1).unwrap_or(0), address),
            };
            let rtpmaps = attributes(section).filter(|(k, _)| *k == "rtpmap").filter_map(|(_, v)| v);
            Some(MediaLine {
                kind: m[0].to_owned(),
                proto: m[2].to_owned(),
                port,
                address,
                hold_address: !ice && address.is_some_and(|a| a.is_unspecified()),
                rtcp_port,
                rtcp_address,
                rtcp_mux: attributes(section).any(|(k, _)| k == "rtcp-mux"),
                direction: direction_of(attributes(section)).or(session_direction).unwrap_or(Direction::SendRecv),
                clock_rates: select_clock_rates(m[2].split('/'), m[3..].iter().copied(), rtpmaps),
                crypto: attributes(section)
                    .filter(|(k, _)| k.eq_ignore_ascii_case("crypto"))
                    .map(|(_, v)| v.unwrap_or("").to_owned())
                    .collect(),
            })
        })
        .collect()
}

/// [`super::rewrite`] on the fast path (same arguments, same output); `None` hands the body to rtc-sdp.
pub(super) fn rewrite(
    sdp: &Canonical<'_>,
    address: IpAddr,
    anchors: &[Option<Anchor>],
    transports: &[Option<Transport>],
    strip_ice: bool,
    cname: &dyn Fn(&str) -> String,
) -> Option<String> {
    if anchors.len() != sdp.media.len() {
        return None;
    }
    let ice = uses_ice(sdp);
    let family = address_type(address);
    let mut out = String::with_capacity(sdp.lines.iter().map(|l| l.value.len() + 4).sum::<usize>() + 64);
    let connection_line = |out: &mut String, value: &str| {
        if !ice && connection(value).is_some_and(is_hold) {
            push_line(out, "c=", value);
        } else {
            let _ = write!(out, "c=IN {family} {address}\r\n");
        }
    };

    let session = sdp.session();
    // A session-level c= for the m= lines that have none, where rtc-sdp prints it (before b= and t=).
    let mut add_connection = connection_of(session).is_none() && sdp.sections().any(|s| connection_of(s).is_none());
    for line in session {
        if add_connection && matches!(line.kind, b'b' | b't') {
            let _ = write!(out, "c=IN {family} {address}\r\n");
            add_connection = false;
        }
        match line.kind {
            b'o' => {
                let f: Vec<&str> = line.value.split(' ').collect();
                let _ = write!(out, "o={} {} {} IN {family} {address}\r\n", f[0], f[1], f[2]);
            }
            b'c' => connection_line(&mut out, line.value),
            b'a' => {
                let (key, value) = attribute(line.value);
                if !key.eq_ignore_ascii_case("crypto") {
                    push_attribute(&mut out, key, value, address, None, strip_ice, cname);
                }
            }
            _ => push_verbatim(&mut out, line),
        }
    }

    for (i, (section, anchor)) in sdp.sections().zip(anchors).enumerate() {
        let m: Vec<&str> = section[0].value.splitn(4, ' ').collect();
        let anchor = anchor.filter(|_| m[1] != "0");
        let transport = transports.get(i).and_then(Option::as_ref);
        out.push_str("m=");
        out.push_str(m[0]);
        out.push(' ');
        match anchor {
            Some(a) => {
                let _ = write!(out, "{}", a.port);
            }
            None => out.push_str(m[1]),
        }
        out.push(' ');
        out.push_str(transport.map_or(m[2], |t| t.proto.as_str()));
        out.push(' ');
        out.push_str(m[3]);
        out.push_str("\r\n");
        let mut keys_placed = false;
        for line in &section[1..] {
            match line.kind {
                b'c' => connection_line(&mut out, line.value),
                b'a' => {
                    let (key, value) = attribute(line.value);
                    if let (Some(t), true) = (transport, key.eq_ignore_ascii_case("crypto")) {
                        if !keys_placed {
                            push_crypto(&mut out, t);
                            keys_placed = true;
                        }
                        continue;
                    }
                    push_attribute(&mut out, key, value, address, anchor, strip_ice, cname);
                }
                _ => push_verbatim(&mut out, line),
            }
        }
        if let (Some(t), false) = (transport, keys_placed) {
            push_crypto(&mut out, t);
        }
    }
    Some(out)
}

fn push_line(out: &mut String, prefix: &str, value: &str) {
    out.push_str(prefix);
    out.push_str(value);
    out.push_str("\r\n");
}

fn push_verbatim(out: &mut String, line: &Line<'_>) {
    out.push(char::from(line.kind));
    out.push('=');
    out.push_str(line.value);
    out.push_str("\r\n");
}

fn push_crypto(out: &mut String, t: &Transport) {
    for c in &t.crypto {
        push_line(out, "a=crypto:", c);
    }
}

/// One attribute as [`super::rewrite_attributes`] leaves it: removed (ICE, `a=ssrc` other than cname), rewritten
/// (`a=ssrc` cname, `a=rtcp`) or as it was.
fn push_attribute(
    out: &mut String,
    key: &str,
    value: Option<&str>,
    address: IpAddr,
    anchor: Option<Anchor>,
    strip_ice: bool,
    cname: &dyn Fn(&str) -> String,
) {
    if strip_ice && ICE_ATTRIBUTES.iter().any(|k| key.eq_ignore_ascii_case(k)) {
        return;
    }
    if key.eq_ignore_ascii_case("ssrc") {
        if let Some(v) = rewrite_ssrc(value.unwrap_or(""), cname) {
            out.push_str("a=");
            out.push_str(key);
            push_line(out, ":", &v);
        }
        return;
    }
    if key == "rtcp" {
        out.push_str("a=rtcp");
        push_line(out, ":", &rewrite_rtcp(value.unwrap_or(""), address, anchor));
        return;
    }
    out.push_str("a=");
    out.push_str(key);
    match value {
        Some(v) => push_line(out, ":", v),
        None => out.push_str("\r\n"),
    }
}
