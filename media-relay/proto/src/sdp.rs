//! SDP for media anchoring: read the media lines of an offer or answer, and rewrite it so that the other side
//! only ever sees the relay.
//!
//! The SBC is a B2BUA that anchors media. Every SDP body crossing it goes through two calls:
//!
//! - [`parse`] tells the session layer what the peer described: one [`MediaLine`] per `m=` line, with where the
//!   peer receives RTP and RTCP, its direction and the clock rate of each payload type (for jitter statistics).
//! - [`rewrite`] produces the SDP that goes to the other leg: every address of the peer (the `o=` line, every
//!   `c=` line, `a=rtcp`) becomes the relay's, every anchored `m=` port becomes the relay port, and, toward plain
//!   RTP, the ICE attributes are removed. What the peer says about itself inside attributes goes too: each
//!   `a=ssrc:<id> cname:` (RFC 5576) gets a token in place of the CNAME (phones build it from their address:
//!   baresip's is `sip:alice@198.18.1.10`), the other `a=ssrc` attributes are removed, and so are the
//!   originator's `u=`, `e=` and `p=` lines. Everything else (codecs, `a=fmtp`, `a=ptime`, `b=`, crypto, unknown
//!   attributes) is kept, in its order. This is topology hiding: no address of one side reaches the other.
//!
//! Parsing and printing are done by [`rtc_sdp`] (the webrtc-rs sans-IO line, chosen in DESIGN.md): it keeps the
//! attributes as an ordered list of key/value strings, so a parse → edit → marshal round trip preserves whatever
//! this module does not touch, and it does no I/O, matching this crate's sans-IO rule.
//!
//! # What rtc-sdp accepts, and what it changes
//!
//! Checked against SIPp's default SDP, Asterisk, FreeSWITCH and Cisco-style bodies, T.38 and a WebRTC offer: all
//! parse. Its limits, none of which ordinary SIP equipment hits, are:
//!
//! - The line order of RFC 4566 §5 is enforced at session level (for example `c=` must come before `t=`, and no
//!   `a=` before `t=`); at media level `i=`, `c=`, `b=`, `k=` and `a=` are accepted in any order.
//! - Media types are limited to `audio`, `video`, `text`, `application`, `message` and `image`; an `m=` line
//!   needs at least one format (`m=video 0 RTP/AVP` without a payload type, which some equipment sends when
//!   rejecting a stream, is refused, as RFC 4566 says it must be).
//! - `o=` session id and version must fit in a `u64`; `v=` must be 0; unknown line types (`y=`, `x=`) are refused;
//!   a `u=` line must be a valid URL.
//! - Line ends may be CRLF or LF (output is always CRLF); blank lines are skipped; trailing blanks of a line are
//!   trimmed; lines come out in RFC 4566 order (media `c=` before `b=` before `a=`), attributes in their order.
//! - `r=` and `z=` shorthand time units (`7d`) come out in seconds, and a multicast TTL in `c=` is kept within the
//!   address string (we replace the whole address anyway).

use std::io::Cursor;
use std::net::IpAddr;

mod in_place;

use rtc_sdp::description::common::{Address, Attribute, ConnectionInformation};
use rtc_sdp::description::media::{MediaDescription, RangedPort};
use rtc_sdp::description::session::SessionDescription;

/// Direction attribute of a media line (RFC 4566 §6 / RFC 3264 §5.1); sendrecv when absent (at media or session
/// level).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// `a=sendrecv`, or no direction attribute at all.
    SendRecv,
    /// `a=sendonly`: the peer sends, and does not want to receive.
    SendOnly,
    /// `a=recvonly`: the peer receives, and will not send.
    RecvOnly,
    /// `a=inactive`: neither.
    Inactive,
}

/// One m= line as the peer described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaLine {
    /// The media type: "audio", "video", "image", ...
    pub kind: String,
    /// The transport: "RTP/AVP", "RTP/SAVP", "UDP/TLS/RTP/SAVPF", "udptl", ...
    pub proto: String,
    /// The base port of the `m=` line (a port range `49170/2` gives 49170); 0 = rejected/disabled stream.
    pub port: u16,
    /// Where the peer receives RTP: media-level c= else session-level c=; None when there is no c= at all.
    pub address: Option<IpAddr>,
    /// c= is 0.0.0.0 (or ::): old-style hold (RFC 2543), the peer wants no media sent to it.
    ///
    /// Not set when the SDP uses ICE (an `a=candidate` or `a=ice-ufrag` anywhere): there 0.0.0.0 is the JSEP
    /// placeholder of a trickle-ICE offer (RFC 8840 §4.1.1), not hold, and [`rewrite`] replaces it too.
    pub hold_address: bool,
    /// Where the peer receives RTCP: a=rtcp (RFC 3605, with its own address if given), else port+1 on `address`.
    ///
    /// 0 when the line's port is 0, or 65535 without a=rtcp (no port+1). With `rtcp_mux` the peer actually
    /// receives RTCP on `port` as well; this field still says what a=rtcp / port+1 says.
    pub rtcp_port: u16,
    /// The address of a=rtcp when it has one (it may be 0.0.0.0: WebRTC's `a=rtcp:9 IN IP4 0.0.0.0`), else
    /// `address`.
    pub rtcp_address: Option<IpAddr>,
    /// a=rtcp-mux present (RFC 5761).
    pub rtcp_mux: bool,
    /// The media-level direction attribute, else the session-level one, else sendrecv.
    pub direction: Direction,
    /// (payload type, clock rate) for each RTP payload type of the m= formats, in their order: from a=rtpmap,
    /// else the static payload types of RFC 3551 (0 PCMU 8000, 3 GSM 8000, 4 G723 8000, 8 PCMA 8000, 9 G722 8000,
    /// 18 G729 8000, 13 CN 8000, ...). A dynamic type without a usable a=rtpmap is left out, and so is an
    /// a=rtpmap for a type the m= line does not list. Empty for non-RTP transports (udptl, TCP/MSRP, ...).
    pub clock_rates: Vec<(u8, u32)>,
    /// The values of the line's `a=crypto` attributes (SDES keys, RFC 4568 §9.1), in their order; read by
    /// [`crate::sdes::CryptoAttr::parse`].
    pub crypto: Vec<String>,
}

/// What [`rewrite`] puts in place of a media line's transport and SDES keys: the relay terminates SRTP, so the
/// other leg gets its own (see [`crate::negotiate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transport {
    /// The transport of the `m=` line (`RTP/SAVP`, `RTP/AVP`, ...).
    pub proto: String,
    /// The values of the `a=crypto` attributes the line carries instead of the peer's; empty: none.
    pub crypto: Vec<String>,
}

/// What the relay puts into one m= line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    /// The relay's RTP port, for the m= line.
    pub port: u16,
    /// The relay's RTCP port, for a=rtcp when the line has one (the session layer allocates port+1).
    pub rtcp_port: u16,
}

/// Why an SDP body could not be read or rewritten.
#[derive(Debug, thiserror::Error)]
pub enum SdpError {
    /// The body is not UTF-8 text, so it cannot be SDP.
    #[error("SDP body is not UTF-8")]
    NotUtf8,
    /// rtc-sdp refused the body: it is not SDP, or uses something rtc-sdp does not accept (see the module doc);
    /// the text is rtc-sdp's message.
    #[error("malformed SDP: {0}")]
    Parse(String),
    /// A connection address (c= or a=rtcp) that is not an IP literal, such as a host name: the relay cannot send
    /// to it (no DNS in a sans-IO crate). Only [`parse`] reports it; [`rewrite`] replaces such an address anyway.
    #[error("connection address {0:?} is not an IP address")]
    Address(String),
    /// An a=rtcp attribute that is not `<port> [IN IP4|IP6 <address>]` (RFC 3605). Only [`parse`] reports it.
    #[error("malformed a=rtcp:{0}")]
    Rtcp(String),
    /// [`rewrite`] was given a different number of anchors than the SDP has m= lines.
    #[error("{anchors} anchors for {media} m= lines")]
    AnchorCount {
        /// Number of m= lines in the SDP.
        media: usize,
        /// Number of anchors given.
        anchors: usize,
    },
}

/// The ICE attributes (RFC 8839 §5, RFC 8840) removed by [`rewrite`] with `strip_ice`.
const ICE_ATTRIBUTES: [&str; 9] = [
    "candidate",
    "ice-ufrag",
    "ice-pwd",
    "ice-options",
    "ice-lite",
    "ice-mismatch",
    "end-of-candidates",
    "remote-candidates",
    "ice-pacing",
];

/// The media lines of `sdp`, in order.
///
/// An SDP without any m= line gives an empty list (RFC 3264 allows it; whether to accept it is the caller's
/// choice). Errors: [`SdpError::NotUtf8`], [`SdpError::Parse`], [`SdpError::Address`] for a c= or a=rtcp address
/// that is not an IP literal, [`SdpError::Rtcp`] for a malformed a=rtcp.
pub fn parse(sdp: &[u8]) -> Result<Vec<MediaLine>, SdpError> {
    let fast = std::str::from_utf8(sdp).ok().and_then(in_place::scan).and_then(|c| in_place::parse(&c));
    #[cfg(test)]
    if let Some(fast) = &fast {
        assert_eq!(Ok(fast), parse_with_rtc_sdp(sdp).as_ref().map_err(ToString::to_string), "fast path differs");
    }
    match fast {
        Some(lines) => Ok(lines),
        None => parse_with_rtc_sdp(sdp),
    }
}

/// [`parse`] through rtc-sdp's `SessionDescription`: every body the fast path ([`in_place`]) does not take.
fn parse_with_rtc_sdp(sdp: &[u8]) -> Result<Vec<MediaLine>, SdpError> {
    let desc = unmarshal(sdp)?;
    let ice = uses_ice(&desc);
    let session_address = match &desc.connection_information {
        Some(c) => connection_ip(c)?,
        None => None,
    };
    let session_direction = direction_of(pairs(&desc.attributes));

    desc.media_descriptions
        .iter()
        .map(|md| {
            let media_address = match &md.connection_information {
                Some(c) => connection_ip(c)?,
                None => None,
            };
            let address = media_address.or(session_address);
            let port = u16::try_from(md.media_name.port.value).unwrap_or(0);
            let (rtcp_port, rtcp_address) = match attribute_value(&md.attributes, "rtcp") {
                Some(value) => {
                    let (rtcp_port, rtcp_address) = parse_rtcp(value)?;
                    (rtcp_port, rtcp_address.or(address))
                }
                None if port == 0 => (0, address),
                None => (port.checked_add(1).unwrap_or(0), address),
            };
            Ok(MediaLine {
                kind: md.media_name.media.clone(),
                proto: md.media_name.protos.join("/"),
                port,
                address,
                hold_address: !ice && address.is_some_and(|a| a.is_unspecified()),
                rtcp_port,
                rtcp_address,
                rtcp_mux: md.attributes.iter().any(|a| a.key == "rtcp-mux"),
                direction: direction_of(pairs(&md.attributes)).or(session_direction).unwrap_or(Direction::SendRecv),
                clock_rates: clock_rates(md),
                crypto: md
                    .attributes
                    .iter()
                    .filter(|a| a.key.eq_ignore_ascii_case("crypto"))
                    .map(|a| a.value.clone().unwrap_or_default())
                    .collect(),
            })
        })
        .collect()
}

/// `sdp` rewritten for the relay at `address`: `anchors[i]` for the i-th m= line (None leaves the line's port as
/// is: used for port-0 lines). Returns the new SDP text with CRLF line ends.
///
/// - `o=`: the unicast address becomes `address` (IP4/IP6 to match); user name, session id and version are kept.
/// - Every `c=` (session and media level): the address becomes `address`, except 0.0.0.0 / `::` (old-style
///   hold), which is kept so hold is still signalled (unless the SDP uses ICE, see [`MediaLine::hold_address`]).
///   When the SDP has no session-level `c=` and some m= line has none either, a session-level `c=` with
///   `address` is added, so that every line has one.
/// - `m=` port: `anchors[i].port` when `anchors[i]` is Some and the port is not 0; port-0 lines stay 0. A port
///   range (`49170/2`) becomes the single anchor port: the range count is dropped.
/// - `a=rtcp` (RFC 3605): `a=rtcp:<anchor.rtcp_port> IN IP4|IP6 <address>` on an anchored line. On a line left
///   as is (None, or port 0) the port is kept and an address, if any and not 0.0.0.0 / `::`, becomes `address`.
///   No a=rtcp is added where there was none (the peer derives port+1).
/// - `strip_ice`: removes the ICE attributes at session and media level (candidate, ice-ufrag, ice-pwd,
///   ice-options, ice-lite, ice-mismatch, end-of-candidates, remote-candidates, ice-pacing). With `strip_ice`
///   false they are kept verbatim, and `a=candidate` / `a=remote-candidates` carry the peer's addresses: the
///   caller must then terminate or replace ICE itself, or topology hiding is lost.
/// - `a=ssrc:<id> cname:<cname>` (RFC 5576 §6.1) becomes `a=ssrc:<id> cname:<cname(cname)>`: the caller's
///   `cname` gives the token that stands for it on this leg ([`crate::cname`]), the same the relay puts into
///   this source's RTCP SDES. Every other `a=ssrc` attribute (`msid`, `mslabel`, `label`, `fmtp`,
///   `previous-ssrc`, unknown ones) is removed: their values are free text chosen by the peer, and dropping
///   them costs nothing to SIP peers (WebRTC legs, which use `msid`, are terminated by the relay, not passed
///   through). An `a=ssrc:<id>` without attribute and `a=ssrc-group` (only SSRC numbers) are kept. A token
///   rather than no `a=ssrc` line at all keeps RFC 5576's binding of SSRC to participant, which receivers use
///   before the first RTCP arrives, and matches what RTCP then says.
/// - The session-level `u=`, `e=` and `p=` lines (the originator's URI, e-mail address and phone number,
///   RFC 4566 §5.5, §5.6) are removed: they identify the other side and are optional.
/// - `transports[i]` (when given; a shorter slice leaves the rest as they are): the i-th `m=` line's transport
///   becomes its `proto`, every `a=crypto` and `k=` of the line goes, and its `crypto` values take the place of the
///   first `a=crypto` (at the end of the line's attributes when it had none). This is how the relay terminates
///   SDES-SRTP: each leg sees only its own keys ([`crate::negotiate`]).
/// - Session-level `a=crypto` (which RFC 4568 §9.1 does not allow) and `k=` (RFC 4566 §5.12, keys in the clear)
///   are removed: keys never cross.
/// - Everything else (rtcp-mux, direction, rtpmap/fmtp/ptime, fingerprint, b=, `s=`, `i=`, `a=tool`, `a=msid`,
///   unknown attributes, and `a=crypto` of a line without a transport) is kept, in its order. Other attributes
///   that could carry an address (`a=source-filter`, MSRP `a=path`) are not touched.
///
/// The caller owns the `o=` version rule of RFC 3264 §8: the peer's version is copied, so when the relay
/// changes what it puts in (new ports) for an unchanged peer SDP, the caller must bump the version itself.
///
/// Errors: [`SdpError::NotUtf8`], [`SdpError::Parse`], [`SdpError::AnchorCount`].
pub fn rewrite(
    sdp: &[u8],
    address: IpAddr,
    anchors: &[Option<Anchor>],
    transports: &[Option<Transport>],
    strip_ice: bool,
    cname: &dyn Fn(&str) -> String,
) -> Result<String, SdpError> {
    let fast = std::str::from_utf8(sdp)
        .ok()
        .and_then(in_place::scan)
        .and_then(|c| in_place::rewrite(&c, address, anchors, transports, strip_ice, cname));
    #[cfg(test)]
    if let Some(fast) = &fast {
        let slow = rewrite_with_rtc_sdp(sdp, address, anchors, transports, strip_ice, cname);
        assert_eq!(Ok(fast), slow.as_ref().map_err(ToString::to_string), "fast path differs");
    }
    match fast {
        Some(out) => Ok(out),
        None => rewrite_with_rtc_sdp(sdp, address, anchors, transports, strip_ice, cname),
    }
}

/// [`rewrite`] through rtc-sdp's parse, edit and print: every body the fast path ([`in_place`]) does not take.
fn rewrite_with_rtc_sdp(
    sdp: &[u8],
    address: IpAddr,
    anchors: &[Option<Anchor>],
    transports: &[Option<Transport>],
    strip_ice: bool,
    cname: &dyn Fn(&str) -> String,
) -> Result<String, SdpError> {
    let mut desc = unmarshal(sdp)?;
    if anchors.len() != desc.media_descriptions.len() {
        return Err(SdpError::AnchorCount { media: desc.media_descriptions.len(), anchors: anchors.len() });
    }
    let ice = uses_ice(&desc);
    let address_type = address_type(address);

    desc.origin.unicast_address = address.to_string();
    desc.origin.address_type = address_type.to_owned();
    desc.uri = None;
    desc.email_address = None;
    desc.phone_number = None;
    desc.encryption_key = None;
    desc.attributes.retain(|a| !a.key.eq_ignore_ascii_case("crypto"));

    match desc.connection_information.as_mut() {
        Some(c) => rewrite_connection(c, address, ice),
        None if desc.media_descriptions.iter().any(|md| md.connection_information.is_none()) => {
            desc.connection_information = Some(ConnectionInformation {
                network_type: "IN".to_owned(),
                address_type: address_type.to_owned(),
                address: Some(relay_address(address)),
            });
        }
        None => {}
    }
    rewrite_attributes(&mut desc.attributes, address, None, strip_ice, cname);

    for (i, (md, anchor)) in desc.media_descriptions.iter_mut().zip(anchors).enumerate() {
        if let Some(c) = md.connection_information.as_mut() {
            rewrite_connection(c, address, ice);
        }
        let anchor = anchor.filter(|_| md.media_name.port.value != 0);
        if let Some(anchor) = anchor {
            md.media_name.port = RangedPort { value: anchor.port as isize, range: None };
        }
        rewrite_attributes(&mut md.attributes, address, anchor, strip_ice, cname);
        if let Some(t) = transports.get(i).and_then(Option::as_ref) {
            set_transport(md, t);
        }
    }

    Ok(desc.marshal())
}

/// `t`'s transport and keys in place of the line's own.
fn set_transport(md: &mut MediaDescription, t: &Transport) {
    md.media_name.protos = t.proto.split('/').map(str::to_owned).collect();
    md.encryption_key = None;
    let is_crypto = |a: &Attribute| a.key.eq_ignore_ascii_case("crypto");
    let at = md.attributes.iter().position(is_crypto).unwrap_or(md.attributes.len());
    md.attributes.retain(|a| !is_crypto(a));
    let ours = t.crypto.iter().map(|v| Attribute { key: "crypto".to_owned(), value: Some(v.clone()) });
    let at = at.min(md.attributes.len());
    md.attributes.splice(at..at, ours);
}

fn unmarshal(sdp: &[u8]) -> Result<SessionDescription, SdpError> {
    let text = std::str::from_utf8(sdp).map_err(|_| SdpError::NotUtf8)?;
    SessionDescription::unmarshal(&mut Cursor::new(text.as_bytes())).map_err(|e| SdpError::Parse(e.to_string()))
}

/// Whether the SDP uses ICE anywhere, in which case a 0.0.0.0 `c=` is a placeholder rather than hold.
fn uses_ice(desc: &SessionDescription) -> bool {
    let ice = |attrs: &[Attribute]| attrs.iter().any(|a| a.key == "candidate" || a.key == "ice-ufrag");
    ice(&desc.attributes) || desc.media_descriptions.iter().any(|md| ice(&md.attributes))
}

/// The IP of a c= line, None for a c= without address. The multicast `/ttl[/range]` suffix is ignored.
fn connection_ip(c: &ConnectionInformation) -> Result<Option<IpAddr>, SdpError> {
    match &c.address {
        None => Ok(None),
        Some(a) => parse_ip(&a.address).map(Some).ok_or_else(|| SdpError::Address(a.address.clone())),
    }
}

fn parse_ip(address: &str) -> Option<IpAddr> {
    address.split('/').next().and_then(|ip| ip.parse().ok())
}

fn is_hold(address: &str) -> bool {
    parse_ip(address).is_some_and(|ip| ip.is_unspecified())
}

fn address_type(address: IpAddr) -> &'static str {
    if address.is_ipv4() {
        "IP4"
    } else {
        "IP6"
    }
}

fn relay_address(address: IpAddr) -> Address {
    Address { address: address.to_string(), ttl: None, range: None }
}

fn attribute_value<'a>(attributes: &'a [Attribute], key: &str) -> Option<&'a str> {
    attributes.iter().find(|a| a.key == key).map(|a| a.value.as_deref().unwrap_or(""))
}

/// rtc-sdp's attributes as (key, value) pairs, the form the fast path reads them in.
fn pairs(attributes: &[Attribute]) -> impl Iterator<Item = (&str, Option<&str>)> {
    attributes.iter().map(|a| (a.key.as_str(), a.value.as_deref()))
}

/// The first direction attribute among `attributes` (key, value).
fn direction_of<'a>(mut attributes: impl Iterator<Item = (&'a str, Option<&'a str>)>) -> Option<Direction> {
    attributes.find_map(|(key, _)| match key {
        "sendrecv" => Some(Direction::SendRecv),
        "sendonly" => Some(Direction::SendOnly),
        "recvonly" => Some(Direction::RecvOnly),
        "inactive" => Some(Direction::Inactive),
        _ => None,
    })
}

/// `a=rtcp:<port> [<nettype> <addrtype> <connection-address>]` (RFC 3605 §2.1).
fn parse_rtcp(value: &str) -> Result<(u16, Option<IpAddr>), SdpError> {
    let bad = || SdpError::Rtcp(value.to_owned());
    let tokens: Vec<&str> = value.split_whitespace().collect();
    match tokens.as_slice() {
        [port] => Ok((port.parse().map_err(|_| bad())?, None)),
        [port, "IN", "IP4" | "IP6", address] => {
            let port = port.parse().map_err(|_| bad())?;
            let ip = parse_ip(address).ok_or_else(|| SdpError::Address((*address).to_owned()))?;
            Ok((port, Some(ip)))
        }
        _ => Err(bad()),
    }
}

/// The clock rate of an RTP payload type with a static assignment (RFC 3551 §6, tables 4 and 5).
fn static_clock_rate(pt: u8) -> Option<u32> {
    match pt {
        0 | 3 | 4 | 5 | 7 | 8 | 9 | 12 | 13 | 15 | 18 => Some(8000),
        6 => Some(16000),
        10 | 11 => Some(44100),
        16 => Some(11025),
        17 => Some(22050),
        14 | 25 | 26 | 28 | 31 | 32 | 33 | 34 => Some(90000),
        _ => None,
    }
}

/// `a=rtpmap:<payload type> <encoding name>/<clock rate>[/<encoding parameters>]`.
fn parse_rtpmap(value: &str) -> Option<(u8, u32)> {
    let mut tokens = value.split_whitespace();
    let pt = tokens.next()?.parse().ok()?;
    let rate = tokens.next()?.split('/').nth(1)?.parse().ok()?;
    Some((pt, rate))
}

fn clock_rates(md: &MediaDescription) -> Vec<(u8, u32)> {
    let rtpmaps = md.attributes.iter().filter(|a| a.key == "rtpmap").filter_map(|a| a.value.as_deref());
    select_clock_rates(
        md.media_name.protos.iter().map(String::as_str),
        md.media_name.formats.iter().map(String::as_str),
        rtpmaps,
    )
}

/// [`MediaLine::clock_rates`] of a line with transport `protos`, `m=` `formats` and `a=rtpmap` values `rtpmaps`.
fn select_clock_rates<'a>(
    mut protos: impl Iterator<Item = &'a str>,
    formats: impl Iterator<Item = &'a str>,
    rtpmaps: impl Iterator<Item = &'a str>,
) -> Vec<(u8, u32)> {
    if !protos.any(|p| p.eq_ignore_ascii_case("RTP")) {
        return Vec::new();
    }
    let rtpmaps: Vec<(u8, u32)> = rtpmaps.filter_map(parse_rtpmap).collect();
    formats
        .filter_map(|f| f.parse::<u8>().ok())
        .filter(|pt| *pt < 128)
        .filter_map(|pt| {
            let rate = rtpmaps.iter().find(|(p, _)| *p == pt).map(|(_, r)| *r).or_else(|| static_clock_rate(pt))?;
            Some((pt, rate))
        })
        .collect()
}

fn rewrite_connection(c: &mut ConnectionInformation, address: IpAddr, ice: bool) {
    if let Some(a) = &c.address {
        if !ice && is_hold(&a.address) {
            return;
        }
    }
    c.address_type = address_type(address).to_owned();
    c.address = Some(relay_address(address));
}

/// ICE removal, a=ssrc and a=rtcp rewriting on one attribute list; `anchor` is the anchor applied to the line, if
/// any.
fn rewrite_attributes(
    attributes: &mut Vec<Attribute>,
    address: IpAddr,
    anchor: Option<Anchor>,
    strip_ice: bool,
    cname: &dyn Fn(&str) -> String,
) {
    if strip_ice {
        attributes.retain(|a| !ICE_ATTRIBUTES.iter().any(|k| a.key.eq_ignore_ascii_case(k)));
    }
    attributes.retain_mut(|a| {
        if !a.key.eq_ignore_ascii_case("ssrc") {
            return true;
        }
        match rewrite_ssrc(a.value.as_deref().unwrap_or(""), cname) {
            Some(value) => {
                a.value = Some(value);
                true
            }
            None => false,
        }
    });
    for a in attributes.iter_mut().filter(|a| a.key == "rtcp") {
        let value = a.value.as_deref().unwrap_or("");
        a.value = Some(rewrite_rtcp(value, address, anchor));
    }
}

/// `<ssrc-id> <attribute>[:<value>]` (RFC 5576 §4.1) as it goes to the other leg: `cname` with its token, no
/// attribute as it is, anything else `None` (removed).
fn rewrite_ssrc(value: &str, cname: &dyn Fn(&str) -> String) -> Option<String> {
    let Some((id, attribute)) = value.trim().split_once(' ') else { return Some(value.to_owned()) };
    let attribute = attribute.trim_start();
    let (name, text) = attribute.split_once(':').unwrap_or((attribute, ""));
    name.eq_ignore_ascii_case("cname").then(|| format!("{id} cname:{}", cname(text)))
}

fn rewrite_rtcp(value: &str, address: IpAddr, anchor: Option<Anchor>) -> String {
    let mut tokens = value.split_whitespace();
    let port = tokens.next().unwrap_or("");
    let has_address = tokens.next().is_some();
    let ours = format!("IN {} {}", address_type(address), address);
    match anchor {
        Some(anchor) => format!("{} {ours}", anchor.rtcp_port),
        // Not anchored: keep the port, hide the address (unless it is a placeholder with nothing to hide).
        None if has_address && !tokens.last().is_some_and(is_hold) => format!("{port} {ours}"),
        None => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cname::CnameKey;
    use crate::control::{Leg, SessionId};
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// The CNAME token of these tests: leg A's of call 1 under seed 7, as the session layer makes it.
    fn token(cname: &str) -> String {
        CnameKey::derive(7, SessionId(1)).token(Leg::A, cname.as_bytes()).to_string()
    }

    /// [`super::rewrite`] with the tests' CNAME tokens; it shadows the glob import, so every test below that
    /// does not care about `a=ssrc` reads as before.
    fn rewrite(sdp: &[u8], address: IpAddr, anchors: &[Option<Anchor>], strip_ice: bool) -> Result<String, SdpError> {
        super::rewrite(sdp, address, anchors, &[], strip_ice, &token)
    }

    const RELAY: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1));
    const RELAY6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100));

    const SIPP: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 198.18.1.10\r\ns=-\r\nc=IN IP4 198.18.1.10\r\n\
                        t=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

    const ASTERISK: &str = "v=0\r\n\
        o=- 1234567890 1234567891 IN IP4 192.0.2.20\r\n\
        s=Asterisk\r\n\
        c=IN IP4 192.0.2.20\r\n\
        t=0 0\r\n\
        m=audio 10000 RTP/AVP 0 8 3 101\r\n\
        a=rtpmap:0 PCMU/8000\r\n\
        a=rtpmap:8 PCMA/8000\r\n\
        a=rtpmap:3 GSM/8000\r\n\
        a=rtpmap:101 telephone-event/8000\r\n\
        a=fmtp:101 0-16\r\n\
        a=ptime:20\r\n\
        a=maxptime:150\r\n\
        a=sendrecv\r\n";

    const FREESWITCH: &str = "v=0\r\n\
        o=FreeSWITCH 1700000000 1700000001 IN IP4 198.51.100.5\r\n\
        s=FreeSWITCH\r\n\
        c=IN IP4 198.51.100.5\r\n\
        t=0 0\r\n\
        m=audio 16384 RTP/AVP 9 0 8 101 13\r\n\
        a=rtpmap:9 G722/8000\r\n\
        a=rtpmap:0 PCMU/8000\r\n\
        a=rtpmap:8 PCMA/8000\r\n\
        a=rtpmap:101 telephone-event/8000\r\n\
        a=fmtp:101 0-15\r\n\
        a=rtpmap:13 CN/8000\r\n\
        a=ptime:20\r\n\
        a=rtcp:16385 IN IP4 198.51.100.5\r\n";

    const CISCO: &str = "v=0\r\n\
        o=CiscoSystemsSIP-GW-UserAgent 3512 6047 IN IP4 10.20.30.40\r\n\
        s=SIP Call\r\n\
        c=IN IP4 10.20.30.40\r\n\
        t=0 0\r\n\
        m=audio 16434 RTP/AVP 18 101 19\r\n\
        c=IN IP4 10.20.30.40\r\n\
        b=AS:24\r\n\
        a=rtpmap:18 G729/8000\r\n\
        a=fmtp:18 annexb=no\r\n\
        a=rtpmap:101 telephone-event/8000\r\n\
        a=fmtp:101 0-15\r\n\
        a=rtpmap:19 CN/8000\r\n\
        a=ptime:20\r\n";

    const WEBRTC: &str = "v=0\r\n\
        o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
        s=-\r\n\
        t=0 0\r\n\
        a=group:BUNDLE 0\r\n\
        a=extmap-allow-mixed\r\n\
        a=msid-semantic: WMS stream\r\n\
        a=ice-lite\r\n\
        m=audio 54400 UDP/TLS/RTP/SAVPF 111 0 8 126\r\n\
        c=IN IP4 198.51.100.7\r\n\
        a=rtcp:9 IN IP4 0.0.0.0\r\n\
        a=candidate:842163049 1 udp 1677729535 198.51.100.7 54400 typ srflx raddr 10.0.0.5 rport 54400 generation 0\r\n\
        a=candidate:1 1 udp 2122260223 10.0.0.5 54400 typ host generation 0\r\n\
        a=ice-ufrag:F7gI\r\n\
        a=ice-pwd:x9cml/YzichV2+XlhiMu8g\r\n\
        a=ice-options:trickle\r\n\
        a=fingerprint:sha-256 D2:FA:0E:C3:22:59:5E:14:95:69:92:3D:13:B4:84:24:2C:C2:A2:C0:3E:FD:34:8E:5E:EA:6F:AF:52:CE:E6:0F\r\n\
        a=setup:actpass\r\n\
        a=mid:0\r\n\
        a=sendrecv\r\n\
        a=msid:stream track\r\n\
        a=rtcp-mux\r\n\
        a=rtpmap:111 opus/48000/2\r\n\
        a=fmtp:111 minptime=10;useinbandfec=1\r\n\
        a=rtpmap:126 telephone-event/8000\r\n\
        a=ssrc:1001 cname:abc\r\n\
        a=end-of-candidates\r\n";

    const AUDIO_VIDEO: &str = "v=0\r\n\
        o=alice 2890844526 2890844527 IN IP4 192.0.2.101\r\n\
        s=-\r\n\
        t=0 0\r\n\
        m=audio 49170 RTP/AVP 0 96\r\n\
        c=IN IP4 192.0.2.101\r\n\
        a=rtpmap:96 opus/48000/2\r\n\
        m=video 51372 RTP/AVP 31 99\r\n\
        c=IN IP4 192.0.2.102\r\n\
        b=AS:512\r\n\
        a=rtpmap:99 H264/90000\r\n\
        a=fmtp:99 profile-level-id=42e01f\r\n";

    const T38: &str = "v=0\r\n\
        o=gw 100 101 IN IP4 192.0.2.30\r\n\
        s=-\r\n\
        c=IN IP4 192.0.2.30\r\n\
        t=0 0\r\n\
        m=audio 20000 RTP/AVP 8\r\n\
        m=image 20002 udptl t38\r\n\
        a=T38FaxVersion:0\r\n\
        a=T38MaxBitRate:14400\r\n\
        a=T38FaxRateManagement:transferredTCF\r\n\
        a=T38FaxMaxDatagram:400\r\n\
        a=T38FaxUdpEC:t38UDPRedundancy\r\n";

    const IPV6: &str = "v=0\r\n\
        o=bob 1 1 IN IP6 2001:db8::55\r\n\
        s=-\r\n\
        c=IN IP6 2001:db8::55\r\n\
        t=0 0\r\n\
        m=audio 30000 RTP/AVP 8\r\n\
        a=rtcp:30011 IN IP6 2001:db8::56\r\n";

    fn anchor(port: u16) -> Option<Anchor> {
        Some(Anchor { port, rtcp_port: port + 1 })
    }

    fn lines(sdp: &str) -> Vec<&str> {
        sdp.split("\r\n").filter(|l| !l.is_empty()).collect()
    }

    fn one(sdp: &str) -> MediaLine {
        let mut media = parse(sdp.as_bytes()).unwrap();
        assert_eq!(media.len(), 1);
        media.remove(0)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    // ---- parse ----

    #[test]
    fn sipp_default_sdp_parses() {
        let m = one(SIPP);
        assert_eq!(
            m,
            MediaLine {
                kind: "audio".into(),
                proto: "RTP/AVP".into(),
                port: 6000,
                address: Some(ip("198.18.1.10")),
                hold_address: false,
                rtcp_port: 6001,
                rtcp_address: Some(ip("198.18.1.10")),
                rtcp_mux: false,
                direction: Direction::SendRecv,
                clock_rates: vec![(0, 8000)],
                crypto: vec![],
            }
        );
    }

    const SAVP: &str = "v=0\r\no=alice 1 1 IN IP4 198.18.1.10\r\ns=-\r\nc=IN IP4 198.18.1.10\r\n\
        t=0 0\r\nk=clear:secret\r\na=crypto:9 AES_CM_128_HMAC_SHA1_80 inline:c2Vzc2lvbiBsZXZlbCBrZXkgaXMgbm90IGFsbG93ZWQ\r\n\
        m=audio 6000 RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\n\
        a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20\r\n\
        a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj\r\na=sendrecv\r\n\
        m=image 6002 udptl t38\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\r\n";

    #[test]
    fn crypto_lines_are_read_in_order() {
        let media = parse(SAVP.as_bytes()).unwrap();
        assert_eq!(media[0].proto, "RTP/SAVP");
        assert_eq!(
            media[0].crypto,
            [
                "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20",
                "2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj"
            ]
        );
        assert_eq!(one(SIPP).crypto, Vec::<String>::new());
    }

    #[test]
    fn a_transport_replaces_the_lines_keys_in_place_and_no_key_crosses_at_session_level() {
        let ours = Transport { proto: "RTP/AVP".into(), crypto: vec!["1 AEAD_AES_128_GCM inline:OURS".into()] };
        let strip = Transport { proto: "udptl".into(), crypto: vec![] };
        let out = super::rewrite(
            SAVP.as_bytes(),
            RELAY,
            &[anchor(20000), anchor(20002)],
            &[Some(ours), Some(strip)],
            true,
            &token,
        )
        .unwrap();
        assert!(
            out.contains(
                "m=audio 20000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=crypto:1 AEAD_AES_128_GCM inline:OURS\r\n\
                 a=sendrecv\r\n"
            ),
            "{out}"
        );
        assert!(out.contains("m=image 20002 udptl t38\r\n") && out.ends_with("udptl t38\r\n"), "{out}");
        for gone in ["PS1uQCVe", "NzB4d1BI", "c2Vzc2lv", "k=clear"] {
            assert!(!out.contains(gone), "{gone} crossed:\n{out}");
        }
        // A line without a transport keeps what it has (the session layer gives every line with keys one).
        let kept = super::rewrite(SAVP.as_bytes(), RELAY, &[anchor(20000), anchor(20002)], &[], true, &token).unwrap();
        assert!(kept.contains("a=crypto:2 AES_CM_128_HMAC_SHA1_32"), "{kept}");
        assert!(!kept.contains("c2Vzc2lv") && !kept.contains("k=clear"), "session level never: {kept}");
        // Keys where the line had none go at the end of its attributes.
        let t = Transport { proto: "RTP/SAVP".into(), crypto: vec!["1 AES_CM_128_HMAC_SHA1_80 inline:X".into()] };
        let out = super::rewrite(SIPP.as_bytes(), RELAY, &[anchor(20000)], &[Some(t)], true, &token).unwrap();
        assert!(
            out.ends_with(
                "m=audio 20000 RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:X\r\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn asterisk_offer_with_telephone_event_and_ptime_parses() {
        let m = one(ASTERISK);
        assert_eq!(m.port, 10000);
        assert_eq!(m.clock_rates, vec![(0, 8000), (8, 8000), (3, 8000), (101, 8000)]);
        assert_eq!(m.direction, Direction::SendRecv);
    }

    #[test]
    fn freeswitch_offer_with_rtcp_attribute_parses() {
        let m = one(FREESWITCH);
        assert_eq!(m.clock_rates, vec![(9, 8000), (0, 8000), (8, 8000), (101, 8000), (13, 8000)]);
        assert_eq!(m.rtcp_port, 16385);
        assert_eq!(m.rtcp_address, Some(ip("198.51.100.5")));
    }

    #[test]
    fn cisco_offer_with_media_level_connection_and_bandwidth_parses() {
        let m = one(CISCO);
        assert_eq!(m.address, Some(ip("10.20.30.40")));
        assert_eq!(m.clock_rates, vec![(18, 8000), (101, 8000), (19, 8000)]);
    }

    #[test]
    fn webrtc_offer_with_ice_and_fingerprint_parses() {
        let m = one(WEBRTC);
        assert_eq!(m.proto, "UDP/TLS/RTP/SAVPF");
        assert_eq!(m.port, 54400);
        assert_eq!(m.address, Some(ip("198.51.100.7")));
        assert!(m.rtcp_mux);
        assert_eq!(m.rtcp_port, 9);
        assert_eq!(m.rtcp_address, Some(ip("0.0.0.0")));
        assert_eq!(m.clock_rates, vec![(111, 48000), (0, 8000), (8, 8000), (126, 8000)]);
    }

    #[test]
    fn static_payload_types_get_rfc3551_clock_rates_without_rtpmap() {
        let sdp = SIPP.replace("RTP/AVP 0\r\na=rtpmap:0 PCMU/8000", "RTP/AVP 0 3 4 8 9 18 13 6 34 96");
        assert_eq!(
            one(&sdp).clock_rates,
            vec![
                (0, 8000),
                (3, 8000),
                (4, 8000),
                (8, 8000),
                (9, 8000),
                (18, 8000),
                (13, 8000),
                (6, 16000),
                (34, 90000)
            ]
        );
    }

    #[test]
    fn rtpmap_for_unlisted_payload_type_is_ignored() {
        let sdp = format!("{SIPP}a=rtpmap:96 opus/48000/2\r\n");
        assert_eq!(one(&sdp).clock_rates, vec![(0, 8000)]);
    }

    #[test]
    fn non_rtp_media_has_no_clock_rates() {
        let media = parse(T38.as_bytes()).unwrap();
        assert_eq!(media[1].kind, "image");
        assert_eq!(media[1].proto, "udptl");
        assert_eq!(media[1].port, 20002);
        assert!(media[1].clock_rates.is_empty());
    }

    #[test]
    fn direction_absent_media_level_and_session_level() {
        assert_eq!(one(SIPP).direction, Direction::SendRecv);
        let media_level = format!("{SIPP}a=sendonly\r\n");
        assert_eq!(one(&media_level).direction, Direction::SendOnly);
        let session_level = SIPP.replace("t=0 0\r\n", "t=0 0\r\na=recvonly\r\n");
        assert_eq!(one(&session_level).direction, Direction::RecvOnly);
        let both = format!("{session_level}a=inactive\r\n");
        assert_eq!(one(&both).direction, Direction::Inactive);
    }

    #[test]
    fn direction_serializes_lowercase() {
        assert_eq!(serde_json::to_string(&Direction::SendRecv).unwrap(), "\"sendrecv\"");
        assert_eq!(serde_json::to_string(&Direction::RecvOnly).unwrap(), "\"recvonly\"");
        assert_eq!(serde_json::from_str::<Direction>("\"inactive\"").unwrap(), Direction::Inactive);
        assert_eq!(serde_json::from_str::<Direction>("\"sendonly\"").unwrap(), Direction::SendOnly);
    }

    #[test]
    fn parse_reports_hold_address() {
        let m = one(&SIPP.replace("c=IN IP4 198.18.1.10", "c=IN IP4 0.0.0.0"));
        assert!(m.hold_address);
        assert_eq!(m.address, Some(ip("0.0.0.0")));
        let m = one(&IPV6.replace("c=IN IP6 2001:db8::55", "c=IN IP6 ::"));
        assert!(m.hold_address);
        assert!(!one(SIPP).hold_address);
    }

    #[test]
    fn webrtc_placeholder_address_is_not_hold() {
        let m = one(&WEBRTC.replace("c=IN IP4 198.51.100.7", "c=IN IP4 0.0.0.0"));
        assert!(!m.hold_address);
    }

    #[test]
    fn parse_rtcp_defaults_to_port_plus_one() {
        let m = one(ASTERISK);
        assert_eq!((m.rtcp_port, m.rtcp_address), (10001, Some(ip("192.0.2.20"))));
    }

    #[test]
    fn parse_rtcp_attribute_without_address_uses_connection_address() {
        let m = one(&format!("{SIPP}a=rtcp:7005\r\n"));
        assert_eq!((m.rtcp_port, m.rtcp_address), (7005, Some(ip("198.18.1.10"))));
    }

    #[test]
    fn parse_rtcp_attribute_with_ipv6_address() {
        let m = one(IPV6);
        assert_eq!(m.address, Some(ip("2001:db8::55")));
        assert_eq!((m.rtcp_port, m.rtcp_address), (30011, Some(ip("2001:db8::56"))));
    }

    #[test]
    fn malformed_rtcp_attribute_is_an_error() {
        assert!(matches!(parse(format!("{SIPP}a=rtcp:abc\r\n").as_bytes()), Err(SdpError::Rtcp(_))));
        assert!(matches!(parse(format!("{SIPP}a=rtcp:7005 IN\r\n").as_bytes()), Err(SdpError::Rtcp(_))));
        assert!(matches!(
            parse(format!("{SIPP}a=rtcp:7005 IN IP4 rtcp.example.com\r\n").as_bytes()),
            Err(SdpError::Address(_))
        ));
    }

    #[test]
    fn rejected_stream_parses_with_port_zero() {
        let sdp = AUDIO_VIDEO.replace("m=video 51372", "m=video 0");
        let media = parse(sdp.as_bytes()).unwrap();
        assert_eq!((media[1].port, media[1].rtcp_port), (0, 0));
    }

    #[test]
    fn per_media_connection_without_session_level_parses() {
        let media = parse(AUDIO_VIDEO.as_bytes()).unwrap();
        assert_eq!(media.len(), 2);
        assert_eq!(media[0].address, Some(ip("192.0.2.101")));
        assert_eq!(media[1].address, Some(ip("192.0.2.102")));
        assert_eq!(media[1].clock_rates, vec![(31, 90000), (99, 90000)]);
    }

    #[test]
    fn media_connection_overrides_session_connection() {
        let sdp = format!("{SIPP}c=IN IP4 198.18.1.99\r\n");
        assert_eq!(one(&sdp).address, Some(ip("198.18.1.99")));
    }

    #[test]
    fn no_connection_line_at_all_gives_no_address() {
        let m = one(&SIPP.replace("c=IN IP4 198.18.1.10\r\n", ""));
        assert_eq!((m.address, m.rtcp_address), (None, None));
    }

    #[test]
    fn host_name_in_connection_line_is_an_address_error() {
        let sdp = SIPP.replace("c=IN IP4 198.18.1.10", "c=IN IP4 media.example.com");
        assert!(matches!(parse(sdp.as_bytes()), Err(SdpError::Address(a)) if a == "media.example.com"));
    }

    #[test]
    fn multicast_connection_with_ttl_parses() {
        let sdp = SIPP.replace("c=IN IP4 198.18.1.10", "c=IN IP4 224.2.1.1/127");
        assert_eq!(one(&sdp).address, Some(ip("224.2.1.1")));
    }

    #[test]
    fn sdp_without_media_lines_parses_to_empty_list() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n";
        assert!(parse(sdp.as_bytes()).unwrap().is_empty());
        assert_eq!(rewrite(sdp.as_bytes(), RELAY, &[], true).unwrap(), sdp.replace("192.0.2.1", "203.0.113.1"));
    }

    // ---- rewrite ----

    #[test]
    fn origin_address_replaced_user_id_version_kept() {
        let out = rewrite(SIPP.as_bytes(), RELAY, &[anchor(20000)], false).unwrap();
        assert_eq!(lines(&out)[1], "o=user1 53655765 2353687637 IN IP4 203.0.113.1");
    }

    #[test]
    fn origin_becomes_ip6_for_ipv6_relay_and_ip4_from_ipv6_peer() {
        let out = rewrite(SIPP.as_bytes(), RELAY6, &[anchor(20000)], false).unwrap();
        assert_eq!(lines(&out)[1], "o=user1 53655765 2353687637 IN IP6 2001:db8::100");
        assert!(out.contains("c=IN IP6 2001:db8::100\r\n"));
        let out = rewrite(IPV6.as_bytes(), RELAY, &[anchor(20000)], false).unwrap();
        assert_eq!(lines(&out)[1], "o=bob 1 1 IN IP4 203.0.113.1");
        assert!(out.contains("c=IN IP4 203.0.113.1\r\n"));
    }

    #[test]
    fn ipv6_peer_to_ipv6_relay_rewrites_everything() {
        let out = rewrite(IPV6.as_bytes(), RELAY6, &[anchor(40000)], false).unwrap();
        assert_eq!(
            lines(&out),
            [
                "v=0",
                "o=bob 1 1 IN IP6 2001:db8::100",
                "s=-",
                "c=IN IP6 2001:db8::100",
                "t=0 0",
                "m=audio 40000 RTP/AVP 8",
                "a=rtcp:40001 IN IP6 2001:db8::100",
            ]
        );
    }

    #[test]
    fn session_and_media_connection_lines_rewritten() {
        let out = rewrite(CISCO.as_bytes(), RELAY, &[anchor(20000)], false).unwrap();
        assert_eq!(out.matches("c=IN IP4 203.0.113.1\r\n").count(), 2);
    }

    #[test]
    fn hold_address_survives_rewrite() {
        let held = SIPP.replace("c=IN IP4 198.18.1.10", "c=IN IP4 0.0.0.0");
        let out = rewrite(held.as_bytes(), RELAY, &[anchor(20000)], false).unwrap();
        assert!(out.contains("c=IN IP4 0.0.0.0\r\n"));
        assert!(out.contains("o=user1 53655765 2353687637 IN IP4 203.0.113.1\r\n"));
        assert!(out.contains("m=audio 20000 RTP/AVP 0\r\n"));

        let held6 = IPV6.replace("c=IN IP6 2001:db8::55", "c=IN IP6 ::");
        let out = rewrite(held6.as_bytes(), RELAY6, &[anchor(20000)], false).unwrap();
        assert!(out.contains("c=IN IP6 ::\r\n"));

        let media_level = format!("{SIPP}c=IN IP4 0.0.0.0\r\n");
        let out = rewrite(media_level.as_bytes(), RELAY, &[anchor(20000)], false).unwrap();
        assert_eq!(lines(&out)[3], "c=IN IP4 203.0.113.1");
        assert!(out.ends_with("c=IN IP4 0.0.0.0\r\na=rtpmap:0 PCMU/8000\r\n"));
    }

    #[test]
    fn webrtc_placeholder_address_is_replaced() {
        let sdp = WEBRTC.replace("c=IN IP4 198.51.100.7", "c=IN IP4 0.0.0.0");
        let out = rewrite(sdp.as_bytes(), RELAY, &[anchor(20000)], true).unwrap();
        assert!(out.contains("c=IN IP4 203.0.113.1\r\n"));
        assert!(!out.contains("0.0.0.0"));
    }

    #[test]
    fn media_port_replaced_by_anchor() {
        let out = rewrite(SIPP.as_bytes(), RELAY, &[anchor(20000)], false).unwrap();
        assert!(out.contains("m=audio 20000 RTP/AVP 0\r\n"));
        assert_eq!(one(&out).port, 20000);
    }

    #[test]
    fn rejected_stream_port_stays_zero_whatever_the_anchor() {
        let sdp = AUDIO_VIDEO.replace("m=video 51372", "m=video 0");
        let out = rewrite(sdp.as_bytes(), RELAY, &[anchor(20000), anchor(20002)], false).unwrap();
        assert!(out.contains("m=video 0 RTP/AVP 31 99\r\n"));
        let out = rewrite(sdp.as_bytes(), RELAY, &[anchor(20000), None], false).unwrap();
        assert!(out.contains("m=video 0 RTP/AVP 31 99\r\n"));
        assert!(!out.contains("192.0.2.102"));
    }

    #[test]
    fn none_anchor_leaves_port_as_is() {
        let out = rewrite(SIPP.as_bytes(), RELAY, &[None], false).unwrap();
        assert!(out.contains("m=audio 6000 RTP/AVP 0\r\n"));
        assert!(out.contains("c=IN IP4 203.0.113.1\r\n"));
    }

    #[test]
    fn port_range_replaced_by_anchor_port_and_count_dropped() {
        let sdp = SIPP.replace("m=audio 6000 ", "m=audio 6000/2 ");
        assert_eq!(one(&sdp).port, 6000);
        let out = rewrite(sdp.as_bytes(), RELAY, &[anchor(20000)], false).unwrap();
        assert!(out.contains("m=audio 20000 RTP/AVP 0\r\n"));
        let out = rewrite(sdp.as_bytes(), RELAY, &[None], false).unwrap();
        assert!(out.contains("m=audio 6000/2 RTP/AVP 0\r\n"));
    }

    #[test]
    fn rtcp_attribute_with_address_rewritten_to_relay() {
        let out = rewrite(FREESWITCH.as_bytes(), RELAY, &[anchor(20000)], false).unwrap();
        assert!(out.contains("a=rtcp:20001 IN IP4 203.0.113.1\r\n"));
        let m = one(&out);
        assert_eq!((m.rtcp_port, m.rtcp_address), (20001, Some(RELAY)));
    }

    #[test]
    fn rtcp_attribute_without_address_gets_relay_address() {
        let sdp = format!("{SIPP}a=rtcp:7005\r\n");
        let out = rewrite(sdp.as_bytes(), RELAY, &[Some(Anchor { port: 20000, rtcp_port: 20001 })], false).unwrap();
        assert!(out.ends_with("a=rtcp:20001 IN IP4 203.0.113.1\r\n"));
        let out = rewrite(sdp.as_bytes(), RELAY6, &[anchor(20000)], false).unwrap();
        assert!(out.ends_with("a=rtcp:20001 IN IP6 2001:db8::100\r\n"));
    }

    #[test]
    fn rtcp_attribute_of_unanchored_line_keeps_port_but_hides_address() {
        let out = rewrite(FREESWITCH.as_bytes(), RELAY, &[None], false).unwrap();
        assert!(out.contains("a=rtcp:16385 IN IP4 203.0.113.1\r\n"));
        let sdp = format!("{SIPP}a=rtcp:7005\r\n");
        let out = rewrite(sdp.as_bytes(), RELAY, &[None], false).unwrap();
        assert!(out.ends_with("a=rtcp:7005\r\n"));
    }

    #[test]
    fn no_rtcp_attribute_is_added() {
        let out = rewrite(ASTERISK.as_bytes(), RELAY, &[anchor(20000)], false).unwrap();
        assert!(!out.contains("a=rtcp"));
    }

    #[test]
    fn rtcp_mux_direction_and_unknown_attributes_kept_in_order() {
        let sdp = format!(
            "{SIPP}a=X-nat:0\r\na=rtcp-mux\r\na=fmtp:101 0-15\r\na=sendonly\r\na=ptime:20\r\na=x-empty:\r\n\
             a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32\r\n"
        );
        let out = rewrite(sdp.as_bytes(), RELAY, &[anchor(20000)], false).unwrap();
        let out_lines = lines(&out);
        let tail = &out_lines[out_lines.len() - 8..];
        assert_eq!(
            tail,
            [
                "a=rtpmap:0 PCMU/8000",
                "a=X-nat:0",
                "a=rtcp-mux",
                "a=fmtp:101 0-15",
                "a=sendonly",
                "a=ptime:20",
                "a=x-empty:",
                "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32",
            ]
        );
        let m = one(&out);
        assert!(m.rtcp_mux);
        assert_eq!(m.direction, Direction::SendOnly);
    }

    #[test]
    fn ice_attributes_removed_toward_plain_rtp() {
        let sdp = WEBRTC.replace("a=ice-lite\r\n", "a=ice-lite\r\na=ice-ufrag:sess\r\na=ice-pwd:sesspwd\r\n");
        let sdp = sdp.replace(
            "a=end-of-candidates\r\n",
            "a=end-of-candidates\r\na=ice-mismatch\r\na=remote-candidates:1 10.0.0.9 5000\r\na=ice-pacing:50\r\n",
        );
        let out = rewrite(sdp.as_bytes(), RELAY, &[anchor(20000)], true).unwrap();
        for attr in ICE_ATTRIBUTES {
            assert!(!out.contains(&format!("a={attr}")), "{attr} left in\n{out}");
        }
        for kept in ["a=group:BUNDLE 0", "a=fingerprint:sha-256 D2:FA", "a=setup:actpass", "a=mid:0", "a=rtcp-mux"] {
            assert!(out.contains(kept), "{kept} missing\n{out}");
        }
        assert!(out.contains("a=rtcp:20001 IN IP4 203.0.113.1\r\n"));
    }

    #[test]
    fn ice_attributes_kept_when_not_stripping() {
        let out = rewrite(WEBRTC.as_bytes(), RELAY, &[anchor(20000)], false).unwrap();
        for attr in ["a=ice-lite", "a=candidate:1 1 udp", "a=ice-ufrag:F7gI", "a=ice-pwd:", "a=end-of-candidates"] {
            assert!(out.contains(attr), "{attr} missing\n{out}");
        }
        assert_eq!(out.matches("a=candidate:").count(), 2);
    }

    #[test]
    fn audio_and_video_each_get_their_own_anchor() {
        let out = rewrite(AUDIO_VIDEO.as_bytes(), RELAY, &[anchor(20000), anchor(20010)], false).unwrap();
        let media = parse(out.as_bytes()).unwrap();
        assert_eq!((media[0].port, media[1].port), (20000, 20010));
        assert_eq!((media[0].address, media[1].address), (Some(RELAY), Some(RELAY)));
        assert!(out.contains("m=audio 20000 RTP/AVP 0 96\r\nc=IN IP4 203.0.113.1\r\n"));
        assert!(out.contains("m=video 20010 RTP/AVP 31 99\r\nc=IN IP4 203.0.113.1\r\nb=AS:512\r\n"));
    }

    #[test]
    fn audio_and_t38_image_each_get_their_own_anchor() {
        let out = rewrite(T38.as_bytes(), RELAY, &[anchor(20000), anchor(20002)], false).unwrap();
        assert!(out.contains("m=audio 20000 RTP/AVP 8\r\n"));
        assert!(out.contains("m=image 20002 udptl t38\r\na=T38FaxVersion:0\r\na=T38MaxBitRate:14400\r\n"));
        assert!(out.ends_with("a=T38FaxUdpEC:t38UDPRedundancy\r\n"));
    }

    #[test]
    fn anchor_count_mismatch_is_an_error() {
        assert!(matches!(
            rewrite(AUDIO_VIDEO.as_bytes(), RELAY, &[anchor(20000)], false),
            Err(SdpError::AnchorCount { media: 2, anchors: 1 })
        ));
        assert!(matches!(
            rewrite(SIPP.as_bytes(), RELAY, &[anchor(20000), None], false),
            Err(SdpError::AnchorCount { media: 1, anchors: 2 })
        ));
        assert!(matches!(rewrite(SIPP.as_bytes(), RELAY, &[], false), Err(SdpError::AnchorCount { .. })));
    }

    #[test]
    fn per_media_connection_without_session_level_is_rewritten_in_place() {
        let out = rewrite(AUDIO_VIDEO.as_bytes(), RELAY, &[anchor(20000), anchor(20010)], false).unwrap();
        assert_eq!(lines(&out)[3], "t=0 0", "no session-level c= added when every m= has one");
        assert_eq!(out.matches("c=IN IP4 203.0.113.1\r\n").count(), 2);
    }

    #[test]
    fn session_level_connection_only_is_rewritten() {
        let out = rewrite(T38.as_bytes(), RELAY, &[anchor(20000), anchor(20002)], false).unwrap();
        assert_eq!(out.matches("c=").count(), 1);
        assert_eq!(lines(&out)[3], "c=IN IP4 203.0.113.1");
    }

    #[test]
    fn missing_connection_line_gets_a_session_level_one() {
        let sdp = SIPP.replace("c=IN IP4 198.18.1.10\r\n", "");
        let out = rewrite(sdp.as_bytes(), RELAY, &[anchor(20000)], false).unwrap();
        assert_eq!(lines(&out)[3], "c=IN IP4 203.0.113.1");
        assert_eq!(one(&out).address, Some(RELAY));
    }

    #[test]
    fn host_name_connection_is_replaced_on_rewrite() {
        let sdp = SIPP.replace("c=IN IP4 198.18.1.10", "c=IN IP4 media.example.com");
        let out = rewrite(sdp.as_bytes(), RELAY, &[anchor(20000)], false).unwrap();
        assert!(!out.contains("example.com"));
    }

    #[test]
    fn lf_only_input_gives_crlf_output() {
        let lf = SIPP.replace("\r\n", "\n");
        assert_eq!(parse(lf.as_bytes()).unwrap(), parse(SIPP.as_bytes()).unwrap());
        let out = rewrite(lf.as_bytes(), RELAY, &[anchor(20000)], false).unwrap();
        assert_eq!(out, rewrite(SIPP.as_bytes(), RELAY, &[anchor(20000)], false).unwrap());
        assert_eq!(out.matches('\n').count(), out.matches("\r\n").count());
        assert!(out.ends_with("\r\n"));
    }

    #[test]
    fn trailing_newline_optional_and_extra_blank_lines_tolerated() {
        let expected = rewrite(SIPP.as_bytes(), RELAY, &[anchor(20000)], false).unwrap();
        for variant in [SIPP.trim_end().to_owned(), format!("{SIPP}\r\n"), format!("{SIPP}\n\n")] {
            assert_eq!(rewrite(variant.as_bytes(), RELAY, &[anchor(20000)], false).unwrap(), expected, "{variant:?}");
        }
    }

    #[test]
    fn bandwidth_lines_kept() {
        let sdp = SIPP.replace("c=IN IP4 198.18.1.10\r\n", "c=IN IP4 198.18.1.10\r\nb=CT:128\r\n");
        let sdp = format!("{sdp}b=AS:64\r\nb=TIAS:64000\r\n");
        let out = rewrite(sdp.as_bytes(), RELAY, &[anchor(20000)], false).unwrap();
        assert!(out.contains("c=IN IP4 203.0.113.1\r\nb=CT:128\r\nt=0 0\r\n"));
        assert!(out.contains("m=audio 20000 RTP/AVP 0\r\nb=AS:64\r\nb=TIAS:64000\r\na=rtpmap:0 PCMU/8000\r\n"));
    }

    #[test]
    fn rewrite_only_changes_addresses_ports_and_ice() {
        let out = rewrite(ASTERISK.as_bytes(), RELAY, &[anchor(20000)], false).unwrap();
        let expected = ASTERISK.replace("192.0.2.20", "203.0.113.1").replace("m=audio 10000", "m=audio 20000");
        assert_eq!(out, expected);
    }

    /// An SDP, the peer addresses it contains, and the anchors for its m= lines.
    type LeakCase = (&'static str, &'static [&'static str], Vec<Option<Anchor>>);

    #[test]
    fn original_peer_address_absent_after_rewrite() {
        let cases: [LeakCase; 7] = [
            (SIPP, &["198.18.1.10"], vec![anchor(20000)]),
            (FREESWITCH, &["198.51.100.5"], vec![anchor(20000)]),
            (CISCO, &["10.20.30.40"], vec![None]),
            (AUDIO_VIDEO, &["192.0.2.101", "192.0.2.102"], vec![anchor(20000), anchor(20010)]),
            (IPV6, &["2001:db8::55", "2001:db8::56"], vec![anchor(20000)]),
            (WEBRTC, &["198.51.100.7", "10.0.0.5", "127.0.0.1"], vec![anchor(20000)]),
            (include_str!("../tests/sdp/baresip.in.sdp"), &["198.18.1.10", "alice"], vec![anchor(20000)]),
        ];
        for (sdp, peer, anchors) in cases {
            for relay in [RELAY, RELAY6] {
                let out = rewrite(sdp.as_bytes(), relay, &anchors, true).unwrap();
                for addr in peer {
                    assert!(!out.contains(addr), "{addr} leaked into\n{out}");
                }
                for m in parse(out.as_bytes()).unwrap() {
                    assert_eq!(m.address, Some(relay));
                }
            }
        }
    }

    #[test]
    fn ssrc_cname_gets_the_callers_token_and_nothing_else_of_the_ssrc_lines_survives() {
        let sdp = include_str!("../tests/sdp/ssrc-attributes.in.sdp");
        let seen = std::cell::RefCell::new(Vec::new());
        let out = super::rewrite(sdp.as_bytes(), RELAY, &[anchor(20000)], &[], true, &|c| {
            seen.borrow_mut().push(c.to_owned());
            format!("T{}", seen.borrow().len())
        })
        .unwrap();
        assert_eq!(*seen.borrow(), ["alice@pbx.example.com", "alice@pbx.example.com"], "each CNAME, as written");
        assert!(out.contains("a=ssrc:11111 cname:T1\r\na=ssrc:22222 cname:T2\r\na=ssrc:44444\r\n"), "{out}");
        for gone in ["192.0.2.33", "pbx.example.com", "msid:stream-", "mslabel", "label:track", "previous-ssrc"] {
            assert!(!out.contains(gone), "{gone} left in\n{out}");
        }
        for gone in ["u=", "e=", "p="] {
            assert!(!out.lines().any(|l| l.starts_with(gone)), "{gone} left in\n{out}");
        }
    }

    #[test]
    fn golden_rewrites() {
        let cases = [
            (
                include_str!("../tests/sdp/sipp.in.sdp"),
                include_str!("../tests/sdp/sipp.out.sdp"),
                vec![anchor(20000)],
                false,
            ),
            (
                include_str!("../tests/sdp/freeswitch-video.in.sdp"),
                include_str!("../tests/sdp/freeswitch-video.out.sdp"),
                vec![anchor(30000), Some(Anchor { port: 30002, rtcp_port: 30003 })],
                false,
            ),
            (
                include_str!("../tests/sdp/webrtc.in.sdp"),
                include_str!("../tests/sdp/webrtc.out.sdp"),
                vec![anchor(40000)],
                true,
            ),
            // baresip's offer as it sent it: its CNAME is its SIP address.
            (
                include_str!("../tests/sdp/baresip.in.sdp"),
                include_str!("../tests/sdp/baresip.out.sdp"),
                vec![anchor(20000)],
                true,
            ),
            // Every kind of a=ssrc attribute, and the originator's u=, e=, p=.
            (
                include_str!("../tests/sdp/ssrc-attributes.in.sdp"),
                include_str!("../tests/sdp/ssrc-attributes.out.sdp"),
                vec![anchor(20000)],
                true,
            ),
        ];
        for (input, expected, anchors, strip_ice) in cases {
            let out = rewrite(input.as_bytes(), RELAY, &anchors, strip_ice).unwrap();
            assert!(!out.replace("\r\n", "").contains('\n'), "bare LF in output");
            assert_eq!(out.replace("\r\n", "\n"), expected.replace("\r\n", "\n"));
        }
    }

    // ---- not SDP, rtc-sdp limits, robustness ----

    #[test]
    fn body_that_is_not_sdp_is_an_error() {
        let sip = "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1\r\n\r\n";
        for body in ["", "\r\n", "hello", "{\"v\":0}", sip, "v=1\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n"] {
            assert!(matches!(parse(body.as_bytes()), Err(SdpError::Parse(_))), "{body:?}");
            assert!(matches!(rewrite(body.as_bytes(), RELAY, &[], false), Err(SdpError::Parse(_))), "{body:?}");
        }
    }

    #[test]
    fn non_utf8_body_is_an_error() {
        let mut body = SIPP.as_bytes().to_vec();
        body.extend_from_slice(b"a=x:\xff\xfe\r\n");
        assert!(matches!(parse(&body), Err(SdpError::NotUtf8)));
        assert!(matches!(rewrite(&body, RELAY, &[None], false), Err(SdpError::NotUtf8)));
    }

    #[test]
    fn rtc_sdp_limits_documented_in_module_doc() {
        // No format on an m= line, an unknown media type, an unknown line type, a= before t=.
        let refused = [
            SIPP.replace("RTP/AVP 0", "RTP/AVP"),
            SIPP.replace("m=audio", "m=foo"),
            format!("{SIPP}y=0123456789\r\n"),
            SIPP.replace("t=0 0\r\n", "a=tool:x\r\nt=0 0\r\n"),
        ];
        for sdp in refused {
            assert!(matches!(parse(sdp.as_bytes()), Err(SdpError::Parse(_))), "{sdp}");
        }
    }

    /// A small deterministic generator: no proptest needed to show the parser does not panic.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut state = 0x9E37_79B9_7F4A_7C15;
        let alphabet = b"vosctmab=:/ \r\n0123456789.IPN4a-";
        for round in 0..2000 {
            let len = (xorshift(&mut state) % 200) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    let r = xorshift(&mut state);
                    // Half the rounds raw bytes, half SDP-looking characters.
                    if round % 2 == 0 {
                        r as u8
                    } else {
                        alphabet[(r % alphabet.len() as u64) as usize]
                    }
                })
                .collect();
            let _ = parse(&bytes);
            let _ = rewrite(&bytes, RELAY, &[None], true);
        }
    }

    #[test]
    fn truncations_and_mutations_never_panic() {
        for sdp in [SIPP, ASTERISK, FREESWITCH, CISCO, WEBRTC, AUDIO_VIDEO, T38, IPV6] {
            let bytes = sdp.as_bytes();
            let count = parse(bytes).unwrap().len();
            for end in 0..=bytes.len() {
                let cut = &bytes[..end];
                if let Ok(media) = parse(cut) {
                    let anchors: Vec<Option<Anchor>> = media.iter().map(|_| anchor(20000)).collect();
                    rewrite(cut, RELAY, &anchors, true).unwrap();
                }
                let _ = rewrite(cut, RELAY6, &vec![anchor(20000); count], false);
            }
            let mut state = bytes.len() as u64 | 1;
            for _ in 0..300 {
                let mut mutated = bytes.to_vec();
                let at = (xorshift(&mut state) % mutated.len() as u64) as usize;
                mutated[at] = xorshift(&mut state) as u8;
                let _ = parse(&mutated);
                let _ = rewrite(&mutated, RELAY, &vec![anchor(20000); count], true);
            }
        }
    }

    /// The bodies of ordinary equipment take the fast path; what it does not take (LF line ends, `k=`, a port
    /// written with a leading zero, lines out of rtc-sdp's order) goes through rtc-sdp. In these tests every call
    /// of `parse` and `rewrite` that took the fast path was also compared with rtc-sdp's result.
    #[test]
    fn bodies_in_printed_form_are_rewritten_in_place_and_the_rest_by_rtc_sdp() {
        for sdp in [SIPP, ASTERISK, FREESWITCH, CISCO, WEBRTC, AUDIO_VIDEO, T38, IPV6] {
            let canonical = in_place::scan(sdp).unwrap_or_else(|| panic!("not on the fast path:\n{sdp}"));
            let count = parse(sdp.as_bytes()).unwrap().len();
            let anchors = vec![anchor(20000); count];
            let ours =
                Transport { proto: "RTP/SAVP".into(), crypto: vec!["1 AES_CM_128_HMAC_SHA1_80 inline:K".into()] };
            for transports in [vec![], vec![Some(ours); count]] {
                for strip_ice in [true, false] {
                    let fast = in_place::rewrite(&canonical, RELAY, &anchors, &transports, strip_ice, &token).unwrap();
                    let slow = rewrite_with_rtc_sdp(sdp.as_bytes(), RELAY, &anchors, &transports, strip_ice, &token);
                    assert_eq!(fast, slow.unwrap());
                }
            }
        }
        let lf = SIPP.replace("\r\n", "\n");
        let leading_zero = SIPP.replace("audio 6000", "audio 06000");
        let out_of_order = ASTERISK.replace("c=IN IP4 192.0.2.20\r\nt=0 0\r\n", "t=0 0\r\nc=IN IP4 192.0.2.20\r\n");
        for sdp in [lf.as_str(), SAVP, leading_zero.as_str(), out_of_order.as_str()] {
            assert!(in_place::scan(sdp).is_none(), "{sdp}");
        }
        // rtc-sdp reads the leading zero and prints the port without it.
        assert!(rewrite(leading_zero.as_bytes(), RELAY, &[None], true).unwrap().contains("m=audio 6000 "));
    }
}
