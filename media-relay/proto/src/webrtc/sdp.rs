//! SDP between a WebRTC leg and a plain leg (JSEP, RFC 8829; RFC 5763/5764; RFC 8843 BUNDLE; RFC 5761
//! rtcp-mux): what the relay says to a browser, and what it says to the SIP peer on the other side.
//!
//! A browser's offer is large (Chromium 156: 8 codecs, RED, extmap, msid, ssrc, rtcp-fb, mDNS candidates, about
//! 1,800 bytes once in an INVITE), and every WebRTC-only line means nothing to a carrier. So the relay does not
//! rewrite it line by line as [`crate::sdp::rewrite`] does for SIP peers: it reads what matters into an
//! [`AudioLine`] and writes each side a fresh SDP of its own kind:
//!
//! - towards the SIP peer ([`offer_to_sip`], [`answer_to_sip`]; [`offer_to_plain`], [`answer_to_plain`] for plain
//!   RTP): `RTP/AVP`, or `RTP/SAVP` with the relay's own `a=crypto` keys when the peer's trunk wants SDES-SRTP
//!   (the [`Transport`] the caller drew with [`crate::negotiate::StreamCrypto`]), the relay's address, no ICE,
//!   fingerprint, setup, mid, extmap, msid, ssrc or rtcp-fb, only the codecs the relay can pass through unchanged
//!   (PCMU, PCMA, Opus, and telephone-event at a kept codec's clock rate). No transcoding: a call without such a
//!   codec in common fails with [`WebrtcSdpError::NoSharedCodec`] (a 488).
//! - towards the browser ([`answer_to_browser`], [`offer_to_browser`]): `UDP/TLS/RTP/SAVPF` with `a=ice-lite`, the
//!   relay's ICE credentials and one host candidate (the relay's address and port for the leg),
//!   `a=fingerprint:sha-256` of the relay's certificate, `a=setup` (`active` in answers to a browser, as
//!   RFC 5763 §5 recommends and Chromium accepts; `actpass` in offers), `a=rtcp-mux` (Chromium refuses a call
//!   without it), the browser's `a=mid` echoed with `a=group:BUNDLE`, and the codec(s) chosen.
//!
//! Payload type numbers are kept as the offerer wrote them (RFC 3264 §6.1 asks the answerer to use them), so the
//! relay never renumbers RTP. Other m= lines (a browser's video, a carrier's T.38) are answered with port 0.
//!
//! Parsing is done by [`rtc_sdp`], as in [`crate::sdp`]; the output is written here directly, as the few lines
//! it has are fixed by this module's rules (and checked by parsing them back with rtc-sdp in the tests).

use super::dtls::{Fingerprint, FingerprintError, Setup};
use super::ice::IceCredentials;
use crate::sdp::{Direction, Transport};
use rtc_sdp::description::common::Attribute;
use rtc_sdp::description::media::MediaDescription;
use rtc_sdp::description::session::SessionDescription;
use std::fmt::Write as _;
use std::io::Cursor;
use std::net::IpAddr;

/// The transport of a WebRTC media line (RFC 5764 §8, RFC 8843).
pub const WEBRTC_PROTO: &str = "UDP/TLS/RTP/SAVPF";
/// The transport towards plain peers.
pub const PLAIN_PROTO: &str = "RTP/AVP";

/// Why an SDP could not be used for a call between a WebRTC leg and a plain leg.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebrtcSdpError {
    /// rtc-sdp could not read the body (the text is its message).
    #[error("malformed SDP: {0}")]
    Parse(String),
    /// No audio m= line with a port: nothing the relay bridges.
    #[error("no active audio stream in the SDP")]
    NoAudio,
    /// A browser's SDP without what WebRTC needs: the named attribute or transport.
    #[error("WebRTC SDP without {0}")]
    NotWebrtc(&'static str),
    /// The browser's `a=fingerprint` is not one we check.
    #[error("{0}")]
    Fingerprint(#[from] FingerprintError),
    /// An `a=setup` that leaves no DTLS role (`holdconn`, or `actpass` in an answer).
    #[error("a=setup:{0} leaves no DTLS role")]
    Setup(&'static str),
    /// No codec both sides can use without transcoding (PCMU, PCMA, Opus): the call is refused with 488.
    #[error("no codec in common that the relay passes through (PCMU, PCMA, Opus)")]
    NoSharedCodec,
}

impl WebrtcSdpError {
    /// The SIP status the signalling side answers an offer with: 400 for a body that is no SDP, else 488 Not
    /// Acceptable Here (RFC 3261 §21.4.26).
    pub fn sip_status(&self) -> u16 {
        match self {
            Self::Parse(_) => 400,
            _ => 488,
        }
    }
}

/// A codec the relay passes between a browser and a plain peer without transcoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodecKind {
    /// G.711 µ-law (static PT 0).
    Pcmu,
    /// G.711 A-law (static PT 8).
    Pcma,
    /// Opus (RFC 7587), 48000/2.
    Opus,
    /// DTMF events (RFC 4733), at the clock rate of a kept codec.
    TelephoneEvent,
}

/// One payload type of an audio m= line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    /// The payload type number, as the offerer wrote it.
    pub pt: u8,
    /// The encoding name as written (`opus`, `PCMU`, `telephone-event`).
    pub name: String,
    /// The clock rate.
    pub clock: u32,
    /// The encoding parameters (channels), when given (`2` for Opus).
    pub params: Option<String>,
    /// The `a=fmtp` value after the payload type, when given.
    pub fmtp: Option<String>,
}

impl Codec {
    /// What the relay makes of the codec: `None` for anything it does not pass (RED, G.722, CN, iLBC, ...).
    pub fn kind(&self) -> Option<CodecKind> {
        let name = self.name.to_ascii_lowercase();
        match (name.as_str(), self.clock) {
            ("pcmu", 8000) => Some(CodecKind::Pcmu),
            ("pcma", 8000) => Some(CodecKind::Pcma),
            ("opus", 48000) => Some(CodecKind::Opus),
            ("telephone-event", _) => Some(CodecKind::TelephoneEvent),
            _ => None,
        }
    }

    /// Whether `other` is the same codec (name, clock and channels; the payload type may differ).
    fn same_as(&self, other: &Codec) -> bool {
        self.name.eq_ignore_ascii_case(&other.name)
            && self.clock == other.clock
            && self.params.as_deref().unwrap_or("1") == other.params.as_deref().unwrap_or("1")
    }

    fn rtpmap(&self) -> String {
        match &self.params {
            Some(p) => format!("{} {}/{}/{}", self.pt, self.name, self.clock, p),
            None => format!("{} {}/{}", self.pt, self.name, self.clock),
        }
    }
}

/// The browser's ICE credentials and DTLS parameters, from its SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebrtcParams {
    /// `a=ice-ufrag` (media level, else session level).
    pub ice_ufrag: String,
    /// `a=ice-pwd`.
    pub ice_pwd: String,
    /// `a=fingerprint` (sha-256).
    pub fingerprint: Fingerprint,
    /// `a=setup` (absent: `actpass` in offers, RFC 5763 §5 leaves no default in answers: `active` assumed as
    /// RFC 4145 §4 does).
    pub setup: Setup,
}

/// Another m= line of the SDP (video, T.38, a second audio line): answered with port 0.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OtherLine {
    kind: String,
    proto: String,
    format: String,
    mid: Option<String>,
}

/// What the relay reads from one side's SDP: its first active audio line, and the other lines to reject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioLine {
    /// The transport of the line (`UDP/TLS/RTP/SAVPF`, `RTP/AVP`, ...).
    pub proto: String,
    /// The payload types, in the m= line's order (dynamic ones without `a=rtpmap` left out).
    pub codecs: Vec<Codec>,
    /// The media-level direction, else the session-level one, else sendrecv.
    pub direction: Direction,
    /// `a=mid`, when given.
    pub mid: Option<String>,
    /// `a=ptime`, when given.
    pub ptime: Option<String>,
    /// `a=rtcp-mux` present.
    pub rtcp_mux: bool,
    /// ICE and DTLS parameters, when the line has all of them (a WebRTC line).
    pub webrtc: Option<WebrtcParams>,
    /// Where the side receives RTP according to its SDP (`c=` and port), for a plain side; browsers' addresses
    /// come from ICE instead (their `c=` is a placeholder or an mDNS name).
    pub address: Option<(IpAddr, u16)>,
    /// The values of the line's `a=crypto` attributes (SDES keys of a SIP peer, RFC 4568), in their order.
    pub crypto: Vec<String>,
    index: usize,
    others: Vec<(usize, OtherLine)>,
}

impl AudioLine {
    /// Reads `sdp`: errors for a body rtc-sdp refuses or one without an active audio line.
    pub fn parse(sdp: &[u8]) -> Result<Self, WebrtcSdpError> {
        let text = std::str::from_utf8(sdp).map_err(|_| WebrtcSdpError::Parse("not UTF-8".into()))?;
        let desc = SessionDescription::unmarshal(&mut Cursor::new(text.as_bytes()))
            .map_err(|e| WebrtcSdpError::Parse(e.to_string()))?;
        let index = desc
            .media_descriptions
            .iter()
            .position(|md| md.media_name.media == "audio" && md.media_name.port.value != 0)
            .ok_or(WebrtcSdpError::NoAudio)?;
        let md = &desc.media_descriptions[index];
        let others = desc
            .media_descriptions
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != index)
            .map(|(i, md)| {
                let line = OtherLine {
                    kind: md.media_name.media.clone(),
                    proto: md.media_name.protos.join("/"),
                    format: md.media_name.formats.first().cloned().unwrap_or_else(|| "0".into()),
                    mid: value(&md.attributes, "mid").map(str::to_owned),
                };
                (i, line)
            })
            .collect();
        let at = |key: &str| value(&md.attributes, key).or_else(|| value(&desc.attributes, key));
        let webrtc = match (at("ice-ufrag"), at("ice-pwd"), at("fingerprint")) {
            (Some(ufrag), Some(pwd), Some(fp)) => Some(WebrtcParams {
                ice_ufrag: ufrag.trim().to_owned(),
                ice_pwd: pwd.trim().to_owned(),
                fingerprint: fp.parse()?,
                setup: at("setup").and_then(Setup::from_name).unwrap_or(Setup::ActPass),
            }),
            _ => None,
        };
        let connection = md.connection_information.as_ref().or(desc.connection_information.as_ref());
        let ip = connection.and_then(|c| c.address.as_ref()).and_then(|a| a.address.parse::<IpAddr>().ok());
        let port = u16::try_from(md.media_name.port.value).unwrap_or(0);
        Ok(Self {
            proto: md.media_name.protos.join("/"),
            codecs: codecs(md),
            direction: direction(&md.attributes).or_else(|| direction(&desc.attributes)).unwrap_or(Direction::SendRecv),
            mid: value(&md.attributes, "mid").map(|m| m.trim().to_owned()),
            ptime: value(&md.attributes, "ptime").map(|p| p.trim().to_owned()),
            rtcp_mux: md.attributes.iter().any(|a| a.key == "rtcp-mux"),
            webrtc,
            address: ip.map(|ip| (ip, port)),
            crypto: md.attributes.iter().filter(|a| a.key == "crypto").filter_map(|a| a.value.clone()).collect(),
            index,
            others,
        })
    }

    /// Whether this is a WebRTC line: `UDP/TLS/RTP/SAVPF` with ICE credentials and a fingerprint. A leg whose
    /// offer is one is terminated by the relay as a WebRTC leg.
    pub fn is_webrtc(&self) -> bool {
        self.proto.eq_ignore_ascii_case(WEBRTC_PROTO) && self.webrtc.is_some()
    }

    /// The line's ICE and DTLS parameters, or what is missing for a WebRTC leg.
    pub fn webrtc_params(&self) -> Result<&WebrtcParams, WebrtcSdpError> {
        if !self.proto.eq_ignore_ascii_case(WEBRTC_PROTO) {
            return Err(WebrtcSdpError::NotWebrtc("UDP/TLS/RTP/SAVPF"));
        }
        self.webrtc.as_ref().ok_or(WebrtcSdpError::NotWebrtc("a=ice-ufrag, a=ice-pwd and a=fingerprint"))
    }
}

/// The relay's side of a leg, as its SDP describes it.
#[derive(Debug, Clone, Copy)]
pub struct RelaySide<'a> {
    /// The relay's address on the leg's interface (`c=`, `o=`, the host candidate).
    pub address: IpAddr,
    /// The relay's port for the leg (RTP and, muxed, RTCP).
    pub port: u16,
    /// `o=` session id and version (the version goes up with every new SDP of the leg, RFC 3264 §8).
    pub origin: (u64, u64),
    /// Towards a browser: our ICE credentials for the leg and our certificate's fingerprint. `None` towards a
    /// plain peer.
    pub webrtc: Option<(&'a IceCredentials, Fingerprint)>,
}

/// The plain transport towards a SIP peer: `RTP/AVP`, no keys.
fn plain() -> Transport {
    Transport { proto: PLAIN_PROTO.to_owned(), crypto: Vec::new() }
}

/// The offer towards the plain peer for a browser's offer: `RTP/AVP` with the codecs the relay can pass
/// ([`offer_to_sip`] with no keys).
pub fn offer_to_plain(browser_offer: &AudioLine, relay: &RelaySide<'_>) -> Result<String, WebrtcSdpError> {
    offer_to_sip(browser_offer, relay, &plain())
}

/// The offer towards the SIP peer for a browser's offer, in `transport` (its proto, `RTP/AVP` or `RTP/SAVP`, and
/// the relay's own `a=crypto` values for that leg, from [`crate::negotiate::StreamCrypto::make_offer`]), with the
/// codecs the relay can pass. [`WebrtcSdpError::NoSharedCodec`] when the browser offered none of PCMU, PCMA, Opus.
pub fn offer_to_sip(
    browser_offer: &AudioLine,
    relay: &RelaySide<'_>,
    transport: &Transport,
) -> Result<String, WebrtcSdpError> {
    let kept = passable(&browser_offer.codecs)?;
    let mut out = header(relay, None);
    media(&mut out, relay, transport, &kept, browser_offer.direction, browser_offer.ptime.as_deref());
    Ok(out)
}

/// The answer to the browser, from the plain peer's answer to [`offer_to_plain`]: the codecs of that answer
/// that the browser offered, with our ICE-lite and DTLS attributes (`a=setup:active` for a browser's `actpass`).
/// [`WebrtcSdpError::NoSharedCodec`] when nothing is left (the call then fails with 488 towards the browser).
pub fn answer_to_browser(
    browser_offer: &AudioLine,
    plain_answer: &AudioLine,
    relay: &RelaySide<'_>,
    setup: Setup,
) -> Result<String, WebrtcSdpError> {
    let chosen: Vec<Codec> = plain_answer
        .codecs
        .iter()
        .filter_map(|a| {
            let offered = browser_offer.codecs.iter().find(|o| o.same_as(a) && o.kind().is_some())?;
            // The browser's payload type (the answerer should have kept it), the answerer's fmtp.
            Some(Codec { pt: offered.pt, fmtp: a.fmtp.clone().or_else(|| offered.fmtp.clone()), ..a.clone() })
        })
        .collect();
    let chosen = with_events(chosen)?;
    Ok(webrtc_sdp(browser_offer, relay, &chosen, plain_answer.direction, setup, plain_answer.ptime.as_deref()))
}

/// The offer towards a browser for a plain peer's offer (a carrier calling a registered browser user):
/// `UDP/TLS/RTP/SAVPF`, `a=setup:actpass`, mid `0` in a BUNDLE group, the codecs the relay can pass.
pub fn offer_to_browser(plain_offer: &AudioLine, relay: &RelaySide<'_>) -> Result<String, WebrtcSdpError> {
    let kept = passable(&plain_offer.codecs)?;
    let mut template = plain_offer.clone();
    template.mid = Some("0".into());
    template.others.clear();
    template.index = 0;
    Ok(webrtc_sdp(&template, relay, &kept, plain_offer.direction, Setup::ActPass, plain_offer.ptime.as_deref()))
}

/// The answer to the plain peer from the browser's answer to [`offer_to_browser`]: in the plain offer's transport
/// without keys, with the codecs the browser chose (among those offered), the plain offer's other m= lines
/// rejected ([`answer_to_sip`] with no keys).
pub fn answer_to_plain(
    plain_offer: &AudioLine,
    browser_answer: &AudioLine,
    relay: &RelaySide<'_>,
) -> Result<String, WebrtcSdpError> {
    let transport = Transport { proto: plain_offer.proto.clone(), crypto: Vec::new() };
    answer_to_sip(plain_offer, browser_answer, relay, &transport)
}

/// The answer to the SIP peer from the browser's answer to [`offer_to_browser`], in `transport` (the peer's
/// offered proto and the relay's own `a=crypto` answer for that leg, from
/// [`crate::negotiate::StreamCrypto::make_answer`]), with the codecs the browser chose (among those offered), the
/// plain offer's other m= lines rejected.
pub fn answer_to_sip(
    plain_offer: &AudioLine,
    browser_answer: &AudioLine,
    relay: &RelaySide<'_>,
    transport: &Transport,
) -> Result<String, WebrtcSdpError> {
    let chosen: Vec<Codec> = browser_answer
        .codecs
        .iter()
        .filter_map(|a| {
            let offered = plain_offer.codecs.iter().find(|o| o.same_as(a) && o.kind().is_some())?;
            Some(Codec { pt: offered.pt, fmtp: a.fmtp.clone().or_else(|| offered.fmtp.clone()), ..a.clone() })
        })
        .collect();
    let chosen = with_events(chosen)?;
    let mut out = header(relay, None);
    for i in 0..=plain_offer.others.len() {
        if i == plain_offer.index {
            let ptime = browser_answer.ptime.as_deref().or(plain_offer.ptime.as_deref());
            media(&mut out, relay, transport, &chosen, browser_answer.direction, ptime);
        } else if let Some((_, other)) = plain_offer.others.iter().find(|(j, _)| *j == i) {
            rejected(&mut out, other);
        }
    }
    Ok(out)
}

/// The codecs of `codecs` the relay passes, telephone-event only at a kept codec's clock rate; an error when no
/// voice codec is among them.
fn passable(codecs: &[Codec]) -> Result<Vec<Codec>, WebrtcSdpError> {
    with_events(codecs.iter().filter(|c| c.kind().is_some()).cloned().collect())
}

/// `codecs` with each telephone-event kept only when a voice codec of its clock rate is kept (RFC 4733 §2.1);
/// [`WebrtcSdpError::NoSharedCodec`] without a voice codec.
fn with_events(codecs: Vec<Codec>) -> Result<Vec<Codec>, WebrtcSdpError> {
    let voice: Vec<u32> =
        codecs.iter().filter(|c| c.kind().is_some_and(|k| k != CodecKind::TelephoneEvent)).map(|c| c.clock).collect();
    if voice.is_empty() {
        return Err(WebrtcSdpError::NoSharedCodec);
    }
    Ok(codecs.into_iter().filter(|c| c.kind() != Some(CodecKind::TelephoneEvent) || voice.contains(&c.clock)).collect())
}

fn ip_kind(address: IpAddr) -> &'static str {
    if address.is_ipv4() {
        "IP4"
    } else {
        "IP6"
    }
}

fn header(relay: &RelaySide<'_>, bundle: Option<&str>) -> String {
    let mut out = String::with_capacity(512);
    let kind = ip_kind(relay.address);
    let _ = write!(out, "v=0\r\no=- {} {} IN {kind} {}\r\ns=-\r\n", relay.origin.0, relay.origin.1, relay.address);
    let _ = write!(out, "c=IN {kind} {}\r\nt=0 0\r\n", relay.address);
    if let Some(mid) = bundle {
        let _ = write!(out, "a=group:BUNDLE {mid}\r\n");
    }
    if relay.webrtc.is_some() {
        out.push_str("a=ice-lite\r\n");
    }
    out
}

/// An `m=` line with its codecs, SDES keys, direction and (for WebRTC) nothing else: the caller adds the rest.
fn media(
    out: &mut String,
    relay: &RelaySide<'_>,
    t: &Transport,
    codecs: &[Codec],
    dir: Direction,
    ptime: Option<&str>,
) {
    let pts: Vec<String> = codecs.iter().map(|c| c.pt.to_string()).collect();
    let _ = write!(out, "m=audio {} {} {}\r\n", relay.port, t.proto, pts.join(" "));
    for c in codecs {
        let _ = write!(out, "a=rtpmap:{}\r\n", c.rtpmap());
        if let Some(f) = &c.fmtp {
            let _ = write!(out, "a=fmtp:{} {f}\r\n", c.pt);
        }
    }
    for crypto in &t.crypto {
        let _ = write!(out, "a=crypto:{crypto}\r\n");
    }
    if let Some(p) = ptime {
        let _ = write!(out, "a=ptime:{p}\r\n");
    }
    let _ = write!(out, "a={}\r\n", direction_name(dir));
}

fn rejected(out: &mut String, other: &OtherLine) {
    let _ = write!(out, "m={} 0 {} {}\r\n", other.kind, other.proto, other.format);
    if let Some(mid) = &other.mid {
        let _ = write!(out, "a=mid:{mid}\r\n");
    }
}

/// A whole SDP towards a browser, laid out after `template`'s m= lines (its audio line ours, the rest rejected).
fn webrtc_sdp(
    template: &AudioLine,
    relay: &RelaySide<'_>,
    codecs: &[Codec],
    dir: Direction,
    setup: Setup,
    ptime: Option<&str>,
) -> String {
    let mid = template.mid.as_deref();
    let mut out = header(relay, mid);
    for i in 0..=template.others.len() {
        if i != template.index {
            if let Some((_, other)) = template.others.iter().find(|(j, _)| *j == i) {
                rejected(&mut out, other);
            }
            continue;
        }
        let transport = Transport { proto: WEBRTC_PROTO.to_owned(), crypto: Vec::new() };
        media(&mut out, relay, &transport, codecs, dir, ptime);
        if let Some(mid) = mid {
            let _ = write!(out, "a=mid:{mid}\r\n");
        }
        if let Some((ice, fingerprint)) = relay.webrtc {
            let _ = write!(out, "a=ice-ufrag:{}\r\na=ice-pwd:{}\r\n", ice.ufrag, ice.pwd);
            let _ = write!(out, "a=fingerprint:{fingerprint}\r\na=setup:{}\r\n", setup.name());
            // One host candidate (RFC 8839 §5.1): priority of type host (126), local preference 65535,
            // component 1.
            let _ = write!(out, "a=candidate:1 1 udp 2130706431 {} {} typ host\r\n", relay.address, relay.port);
            out.push_str("a=end-of-candidates\r\n");
        }
        out.push_str("a=rtcp-mux\r\n");
    }
    out
}

fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::SendRecv => "sendrecv",
        Direction::SendOnly => "sendonly",
        Direction::RecvOnly => "recvonly",
        Direction::Inactive => "inactive",
    }
}

fn value<'a>(attributes: &'a [Attribute], key: &str) -> Option<&'a str> {
    attributes.iter().find(|a| a.key == key).map(|a| a.value.as_deref().unwrap_or(""))
}

fn direction(attributes: &[Attribute]) -> Option<Direction> {
    attributes.iter().find_map(|a| match a.key.as_str() {
        "sendrecv" => Some(Direction::SendRecv),
        "sendonly" => Some(Direction::SendOnly),
        "recvonly" => Some(Direction::RecvOnly),
        "inactive" => Some(Direction::Inactive),
        _ => None,
    })
}

/// The m= line's payload types with their `a=rtpmap` (static PCMU/PCMA without one) and `a=fmtp`.
fn codecs(md: &MediaDescription) -> Vec<Codec> {
    let attr = |key: &str, pt: u8| {
        md.attributes.iter().filter(|a| a.key == key).find_map(|a| {
            let v = a.value.as_deref()?;
            let (p, rest) = v.split_once(' ')?;
            (p.parse::<u8>().ok()? == pt).then(|| rest.trim().to_owned())
        })
    };
    md.media_name
        .formats
        .iter()
        .filter_map(|f| f.parse::<u8>().ok())
        .filter_map(|pt| {
            let map = attr("rtpmap", pt);
            let (name, clock, params) = match (map.as_deref(), pt) {
                (Some(m), _) => {
                    let mut parts = m.split('/');
                    let name = parts.next()?.to_owned();
                    let clock = parts.next()?.parse().ok()?;
                    (name, clock, parts.next().map(str::to_owned))
                }
                (None, 0) => ("PCMU".to_owned(), 8000, None),
                (None, 8) => ("PCMA".to_owned(), 8000, None),
                (None, _) => return None,
            };
            Some(Codec { pt, name, clock, params, fmtp: attr("fmtp", pt) })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An offer as Chromium 156 with JsSIP sends it (written after Chromium's SDP: 8 audio codecs with RED,
    /// extmap, msid, ssrc, rtcp-fb, an mDNS host candidate).
    const CHROMIUM_OFFER: &str = "v=0\r\n\
        o=- 6307837442470342391 2 IN IP4 127.0.0.1\r\n\
        s=-\r\n\
        t=0 0\r\n\
        a=group:BUNDLE 0\r\n\
        a=extmap-allow-mixed\r\n\
        a=msid-semantic: WMS 2c6fb0f1-8b0a-4f3b-9a7d-3b1c2d5e6f70\r\n\
        m=audio 54321 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n\
        c=IN IP4 198.18.1.10\r\n\
        a=rtcp:9 IN IP4 0.0.0.0\r\n\
        a=candidate:2999745851 1 udp 2122260223 6f1e2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b.local 54321 typ host generation 0 network-id 1 network-cost 10\r\n\
        a=candidate:1510613869 1 udp 1686052607 198.18.1.10 54321 typ srflx raddr 0.0.0.0 rport 0 generation 0 network-id 1 network-cost 10\r\n\
        a=ice-ufrag:Xk3R\r\n\
        a=ice-pwd:q8FhR1pTqK5bH0yVb9mZc2Lw\r\n\
        a=ice-options:trickle\r\n\
        a=fingerprint:sha-256 4F:1A:9C:E2:77:0B:5D:63:A8:10:C4:3E:92:58:F1:0D:B6:27:4A:E9:13:7C:D5:82:60:FF:3B:A1:4E:C9:08:75\r\n\
        a=setup:actpass\r\n\
        a=mid:0\r\n\
        a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
        a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n\
        a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
        a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
        a=sendrecv\r\n\
        a=msid:2c6fb0f1-8b0a-4f3b-9a7d-3b1c2d5e6f70 9d8c7b6a-5f4e-4d3c-2b1a-0f9e8d7c6b5a\r\n\
        a=rtcp-mux\r\n\
        a=rtcp-rsize\r\n\
        a=rtpmap:111 opus/48000/2\r\n\
        a=rtcp-fb:111 transport-cc\r\n\
        a=fmtp:111 minptime=10;useinbandfec=1\r\n\
        a=rtpmap:63 red/48000/2\r\n\
        a=fmtp:63 111/111\r\n\
        a=rtpmap:9 G722/8000\r\n\
        a=rtpmap:0 PCMU/8000\r\n\
        a=rtpmap:8 PCMA/8000\r\n\
        a=rtpmap:13 CN/8000\r\n\
        a=rtpmap:110 telephone-event/48000\r\n\
        a=rtpmap:126 telephone-event/8000\r\n\
        a=ssrc:3735928559 cname:Wq2kX9pLm4vB7nC1\r\n\
        a=ssrc:3735928559 msid:2c6fb0f1-8b0a-4f3b-9a7d-3b1c2d5e6f70 9d8c7b6a-5f4e-4d3c-2b1a-0f9e8d7c6b5a\r\n";

    const CARRIER_ANSWER: &str = "v=0\r\n\
        o=carrier 1 1 IN IP4 198.18.2.10\r\n\
        s=-\r\n\
        c=IN IP4 198.18.2.10\r\n\
        t=0 0\r\n\
        m=audio 6000 RTP/AVP 0 126\r\n\
        a=rtpmap:0 PCMU/8000\r\n\
        a=rtpmap:126 telephone-event/8000\r\n\
        a=fmtp:126 0-15\r\n\
        a=ptime:20\r\n\
        a=sendrecv\r\n";

    const CARRIER_OFFER: &str = "v=0\r\n\
        o=carrier 1 1 IN IP4 198.18.2.10\r\n\
        s=-\r\n\
        c=IN IP4 198.18.2.10\r\n\
        t=0 0\r\n\
        m=audio 6000 RTP/AVP 18 8 0 101\r\n\
        a=rtpmap:18 G729/8000\r\n\
        a=rtpmap:101 telephone-event/8000\r\n\
        a=fmtp:101 0-16\r\n\
        m=image 0 udptl t38\r\n";

    fn creds() -> IceCredentials {
        IceCredentials { ufrag: "relayUfr".into(), pwd: "relayPasswordOf24Chars00".into() }
    }

    fn our_fingerprint() -> Fingerprint {
        Fingerprint([0xab; 32])
    }

    fn plain_side() -> RelaySide<'static> {
        RelaySide { address: "198.18.2.1".parse().unwrap(), port: 30002, origin: (77, 1), webrtc: None }
    }

    fn lines(sdp: &str) -> Vec<&str> {
        sdp.split("\r\n").filter(|l| !l.is_empty()).collect()
    }

    /// The output parses back with rtc-sdp.
    fn reparse(sdp: &str) -> AudioLine {
        AudioLine::parse(sdp.as_bytes()).unwrap_or_else(|e| panic!("{e}: {sdp}"))
    }

    #[test]
    fn chromium_offer_is_a_webrtc_leg_and_its_parameters_are_read() {
        let offer = AudioLine::parse(CHROMIUM_OFFER.as_bytes()).unwrap();
        assert!(offer.is_webrtc());
        let p = offer.webrtc_params().unwrap();
        assert_eq!((p.ice_ufrag.as_str(), p.ice_pwd.as_str()), ("Xk3R", "q8FhR1pTqK5bH0yVb9mZc2Lw"));
        assert_eq!(p.setup, Setup::ActPass);
        assert_eq!(p.fingerprint.0[0], 0x4f);
        assert_eq!(offer.mid.as_deref(), Some("0"));
        assert!(offer.rtcp_mux);
        let pts: Vec<u8> = offer.codecs.iter().map(|c| c.pt).collect();
        assert_eq!(pts, [111, 63, 9, 0, 8, 13, 110, 126], "8 codecs");
        let plain = AudioLine::parse(CARRIER_ANSWER.as_bytes()).unwrap();
        assert!(!plain.is_webrtc());
        assert_eq!(plain.webrtc_params(), Err(WebrtcSdpError::NotWebrtc("UDP/TLS/RTP/SAVPF")));
        assert_eq!(plain.address, Some(("198.18.2.10".parse().unwrap(), 6000)));
    }

    #[test]
    fn chromium_offer_becomes_a_small_plain_offer_for_the_carrier() {
        let offer = AudioLine::parse(CHROMIUM_OFFER.as_bytes()).unwrap();
        let to_carrier = offer_to_plain(&offer, &plain_side()).unwrap();
        assert!(
            to_carrier.len() < 600,
            "{} bytes (Chromium's: {}): {to_carrier}",
            to_carrier.len(),
            CHROMIUM_OFFER.len()
        );
        assert!(CHROMIUM_OFFER.len() > 2 * to_carrier.len());
        assert!(lines(&to_carrier).contains(&"m=audio 30002 RTP/AVP 111 0 8 110 126"), "{to_carrier}");
        assert!(lines(&to_carrier).contains(&"c=IN IP4 198.18.2.1"));
        assert!(lines(&to_carrier).contains(&"a=fmtp:111 minptime=10;useinbandfec=1"));
        for webrtc_only in [
            "ice",
            "candidate",
            "fingerprint",
            "setup",
            "mid",
            "extmap",
            "msid",
            "ssrc",
            "rtcp-fb",
            "rtcp-mux",
            "BUNDLE",
            "red/",
            "G722",
            "CN/",
            "198.18.1.10",
            ".local",
        ] {
            assert!(!to_carrier.contains(webrtc_only), "{webrtc_only} left in: {to_carrier}");
        }
        let back = reparse(&to_carrier);
        assert_eq!(back.proto, "RTP/AVP");
        assert_eq!(back.codecs.len(), 5);
    }

    #[test]
    fn answer_to_chromium_has_ice_lite_fingerprint_setup_active_rtcp_mux_and_the_echoed_mid() {
        let offer = AudioLine::parse(CHROMIUM_OFFER.as_bytes()).unwrap();
        let carrier = AudioLine::parse(CARRIER_ANSWER.as_bytes()).unwrap();
        let ice = creds();
        let side = RelaySide {
            address: "198.18.1.1".parse().unwrap(),
            port: 30000,
            origin: (78, 1),
            webrtc: Some((&ice, our_fingerprint())),
        };
        let (_, setup) = crate::webrtc::dtls::DtlsRole::answering(offer.webrtc_params().unwrap().setup).unwrap();
        let answer = answer_to_browser(&offer, &carrier, &side, setup).unwrap();
        let l = lines(&answer);
        for expected in [
            "a=group:BUNDLE 0",
            "a=ice-lite",
            "m=audio 30000 UDP/TLS/RTP/SAVPF 0 126",
            "c=IN IP4 198.18.1.1",
            "a=mid:0",
            "a=ice-ufrag:relayUfr",
            "a=ice-pwd:relayPasswordOf24Chars00",
            "a=setup:active",
            "a=rtcp-mux",
            "a=candidate:1 1 udp 2130706431 198.18.1.1 30000 typ host",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:126 telephone-event/8000",
            "a=fmtp:126 0-15",
            "a=sendrecv",
        ] {
            assert!(l.contains(&expected), "{expected} missing: {answer}");
        }
        let fp = format!("a=fingerprint:{}", our_fingerprint());
        assert!(l.contains(&fp.as_str()));
        assert!(!answer.contains("198.18.2.10"), "no carrier address towards the browser");
        let back = reparse(&answer);
        assert!(back.is_webrtc());
        assert_eq!(back.webrtc_params().unwrap().setup, Setup::Active);
    }

    #[test]
    fn no_shared_codec_is_a_488() {
        let g722_only =
            CHROMIUM_OFFER.replace("111 63 9 0 8 13 110 126", "9 13 126").replace("a=rtpmap:111 opus/48000/2\r\n", "");
        let offer = AudioLine::parse(g722_only.as_bytes()).unwrap();
        let e = offer_to_plain(&offer, &plain_side()).unwrap_err();
        assert_eq!((e.clone(), e.sip_status()), (WebrtcSdpError::NoSharedCodec, 488));
        // The carrier answers with a codec the browser never offered.
        let offer = AudioLine::parse(CHROMIUM_OFFER.as_bytes()).unwrap();
        let g729 = CARRIER_ANSWER.replace("RTP/AVP 0 126", "RTP/AVP 18 126").replace("0 PCMU", "18 G729");
        let carrier = AudioLine::parse(g729.as_bytes()).unwrap();
        let ice = creds();
        let side = RelaySide { webrtc: Some((&ice, our_fingerprint())), ..plain_side() };
        assert_eq!(answer_to_browser(&offer, &carrier, &side, Setup::Active), Err(WebrtcSdpError::NoSharedCodec));
        assert_eq!(AudioLine::parse(b"not sdp").unwrap_err().sip_status(), 400);
    }

    #[test]
    fn carrier_offer_to_browser_and_the_browser_answer_back_reject_t38_and_keep_payload_types() {
        let carrier = AudioLine::parse(CARRIER_OFFER.as_bytes()).unwrap();
        let ice = creds();
        let side = RelaySide {
            address: "198.18.1.1".parse().unwrap(),
            port: 30000,
            origin: (79, 1),
            webrtc: Some((&ice, our_fingerprint())),
        };
        let to_browser = offer_to_browser(&carrier, &side).unwrap();
        let l = lines(&to_browser);
        for expected in ["m=audio 30000 UDP/TLS/RTP/SAVPF 8 0 101", "a=setup:actpass", "a=mid:0", "a=group:BUNDLE 0"] {
            assert!(l.contains(&expected), "{expected} missing: {to_browser}");
        }
        assert!(!to_browser.contains("image") && !to_browser.contains("G729"), "{to_browser}");
        assert!(reparse(&to_browser).is_webrtc());

        // Chromium answers PCMA and telephone-event, setup active (it is the DTLS client then).
        let browser_answer = CHROMIUM_OFFER
            .replace("111 63 9 0 8 13 110 126", "8 101")
            .replace("a=setup:actpass", "a=setup:active")
            .replace("a=rtpmap:126 telephone-event/8000", "a=rtpmap:101 telephone-event/8000");
        let answer = AudioLine::parse(browser_answer.as_bytes()).unwrap();
        assert_eq!(answer.webrtc_params().unwrap().setup, Setup::Active);
        let to_carrier = answer_to_plain(&carrier, &answer, &plain_side()).unwrap();
        let l = lines(&to_carrier);
        assert!(l.contains(&"m=audio 30002 RTP/AVP 8 101"), "{to_carrier}");
        assert!(l.contains(&"a=fmtp:101 0-16"), "the carrier's fmtp kept: {to_carrier}");
        assert_eq!(l.iter().filter(|x| x.starts_with("m=")).count(), 2, "as many m= lines as offered");
        assert!(l.contains(&"m=image 0 udptl t38"), "{to_carrier}");
        assert!(!to_carrier.contains("fingerprint") && !to_carrier.contains("ice"));
    }
}
