//! The peers' side of a scenario: turning steps into the bytes a customer PBX, a carrier or a stranger sends.

use super::scenario::{Actor, Answer, Body, Ids, Method};
use crate::msg::{HeaderName, Message, Request, Response};
use std::fmt::Write;
use std::net::SocketAddr;

/// The customer PBX.
pub(super) const CUSTOMER: &str = "198.18.1.10:5060";
/// Carrier b's gateway.
pub(super) const CARRIER_B: &str = "198.18.2.10:5060";
/// Carrier c's gateway.
pub(super) const CARRIER_C: &str = "198.18.2.11:5060";
const STRANGER: &str = "198.18.1.99:5060";
/// The endpoint's address facing the customer side.
pub(super) const SBC_A: &str = "198.18.1.1:5060";
/// The endpoint's address facing the carriers.
pub(super) const SBC_B: &str = "198.18.2.1:5060";
/// Where a peer that moved its Contact receives requests.
const MOVED: &str = "198.18.2.77:5070";

/// Statuses a peer answers with.
const STATUSES: [(u16, &str); 24] = [
    (100, "Trying"),
    (180, "Ringing"),
    (181, "Forwarded"),
    (183, "Session Progress"),
    (200, "OK"),
    (202, "Accepted"),
    (302, "Moved Temporarily"),
    (401, "Unauthorized"),
    (403, "Forbidden"),
    (404, "Not Found"),
    (407, "Proxy Authentication Required"),
    (408, "Request Timeout"),
    (415, "Unsupported Media Type"),
    (480, "Temporarily Unavailable"),
    (481, "Call/Transaction Does Not Exist"),
    (486, "Busy Here"),
    (487, "Request Terminated"),
    (488, "Not Acceptable Here"),
    (491, "Request Pending"),
    (500, "Server Internal Error"),
    (503, "Service Unavailable"),
    (504, "Server Time-out"),
    (600, "Busy Everywhere"),
    (603, "Decline"),
];

const NUMBERS: [&str; 4] = ["+493012345", "+4930999", "110", ""];

pub(super) fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a literal address")
}

impl Actor {
    /// Where the actor sends from.
    pub(super) fn address(self) -> SocketAddr {
        addr(match self {
            Self::Customer => CUSTOMER,
            Self::CarrierB => CARRIER_B,
            Self::CarrierC => CARRIER_C,
            Self::Stranger => STRANGER,
        })
    }

    /// The endpoint's address the actor sends to.
    pub(super) fn sbc(self) -> SocketAddr {
        addr(match self {
            Self::Customer | Self::Stranger => SBC_A,
            Self::CarrierB | Self::CarrierC => SBC_B,
        })
    }
}

impl Method {
    fn token(self) -> &'static str {
        match self {
            Self::Invite => "INVITE",
            Self::Ack => "ACK",
            Self::Bye => "BYE",
            Self::Cancel => "CANCEL",
            Self::Prack => "PRACK",
            Self::Update => "UPDATE",
            Self::Info => "INFO",
            Self::Options => "OPTIONS",
        }
    }
}

/// A branch from the pool of six; some without the magic cookie, matched the RFC 2543 way.
pub(super) fn branch(n: u8) -> String {
    if n >= 128 && n & 1 == 1 {
        format!("old{}", n % 6)
    } else {
        format!("z9hG4bK-f{}", n % 6)
    }
}

/// Content-Type and body lines, ending the message.
fn body_lines(body: Body, sender: SocketAddr, out: &mut String) {
    let (ct, text) = match body {
        Body::None => (None, String::new()),
        Body::Sdp(port) => {
            let ip = sender.ip();
            let port = 30000 + 2 * u16::from(port % 4);
            let sdp = format!(
                "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n\
                 a=rtpmap:0 PCMU/8000\r\n"
            );
            (Some("application/sdp"), sdp)
        }
        Body::JunkSdp => (Some("application/sdp"), "this is no SDP\r\n".to_owned()),
        Body::Text => (Some("text/plain"), "hello".to_owned()),
    };
    if let Some(ct) = ct {
        let _ = write!(out, "Content-Type: {ct}\r\n");
    }
    let _ = write!(out, "Content-Length: {}\r\n\r\n{text}", text.len());
}

/// A request from the pools (step `Request`).
pub(super) fn pooled_request(from: Actor, method: Method, ids: Ids, number: u8, body: Body) -> Vec<u8> {
    let (me, sbc) = (from.address(), from.sbc());
    let number = NUMBERS[usize::from(number) % NUMBERS.len()];
    let uri = if number.is_empty() { format!("sip:{sbc}") } else { format!("sip:{number}@{sbc}") };
    let to_tag = ids.to_tag.map_or(String::new(), |t| format!(";tag=t{}", t % 3));
    let cseq = 1 + ids.cseq % 4;
    let mut m = format!(
        "{m} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={b};rport\r\nMax-Forwards: 70\r\n\
         From: \"Caller\" <sip:+4940111@{ip}>;tag=f{ft}\r\nTo: <{uri}>{to_tag}\r\nCall-ID: c{call}@fuzz\r\n\
         CSeq: {cseq} {m}\r\nContact: <sip:{me}>\r\n",
        m = method.token(),
        b = branch(ids.branch),
        ip = me.ip(),
        ft = ids.from_tag % 3,
        call = ids.call % 4,
    );
    if method == Method::Prack {
        let _ = write!(m, "RAck: 1 {cseq} INVITE\r\n");
    }
    body_lines(body, me, &mut m);
    m.into_bytes()
}

/// A peer's response to `req` (step `Answer`), sent from `peer`.
pub(super) fn answer(req: &Request, peer: SocketAddr, a: Answer) -> Vec<u8> {
    let (status, reason) = STATUSES[usize::from(a.status) % STATUSES.len()];
    let mut r = Response::to_request(req, status, reason);
    let h = &mut r.headers;
    if status > 100 {
        if let Some(to) = req.headers.get(&HeaderName::To) {
            let tagged =
                if has_tag(to) { to.to_vec() } else { [to, format!(";tag=t{}", a.to_tag % 3).as_bytes()].concat() };
            h.set(HeaderName::To, tagged);
        }
        let contact = if a.moved_contact { MOVED.to_owned() } else { peer.to_string() };
        match status {
            300..=399 => h.push(HeaderName::Contact, format!("<sip:+493012345@{CARRIER_C}>")),
            _ => h.push(HeaderName::Contact, format!("<sip:{contact}>")),
        }
        if a.record_route {
            h.push(HeaderName::RecordRoute, "<sip:198.18.2.50;lr>");
        }
    }
    let challenge = format!("Digest realm=\"carrier\", nonce=\"n{}\", qop=\"auth\", algorithm=MD5", a.to_tag % 3);
    match status {
        401 => h.push(HeaderName::WwwAuthenticate, challenge),
        407 => h.push(HeaderName::ProxyAuthenticate, challenge),
        101..=199 if a.reliable => {
            h.push(HeaderName::Require, "100rel");
            h.push(HeaderName::RSeq, format!("{}", 1 + a.to_tag % 3));
        }
        200..=299 if a.session_timer => {
            h.push(HeaderName::Require, "timer");
            h.push(HeaderName::SessionExpires, "90;refresher=uas");
        }
        _ => {}
    }
    let mut head = String::from_utf8_lossy(&r.to_bytes()).into_owned();
    // `to_bytes` ended the head with Content-Length: 0; the body decides.
    let cut = head.rfind("Content-Length:").expect("written by to_bytes");
    head.truncate(cut);
    body_lines(a.body, peer, &mut head);
    head.into_bytes()
}

fn has_tag(v: &[u8]) -> bool {
    v.to_ascii_lowercase().windows(5).any(|w| w == b";tag=")
}

fn header(m: &Message, name: &HeaderName) -> String {
    String::from_utf8_lossy(m.headers().get(name).unwrap_or_default()).into_owned()
}

/// The target of a request in the dialog `m` established: its Contact, else where it came from.
fn target(m: &Message, fallback: SocketAddr) -> String {
    match m.headers().contacts() {
        Ok(crate::msg::Contacts::Addrs(a)) if !a.is_empty() => String::from_utf8_lossy(a[0].uri_bytes()).into_owned(),
        _ => format!("sip:{fallback}"),
    }
}

/// What a step `InDialog` sends: a request from the peer `peer` in the dialog of `m`, a message the endpoint sent
/// it from `local`: the dialog's From and To as in a response of ours, swapped from a request of ours.
#[allow(clippy::too_many_arguments)]
pub(super) fn in_dialog(
    m: &Message,
    peer: SocketAddr,
    local: SocketAddr,
    method: Method,
    to_tag: u8,
    branch_n: u8,
    cseq: u8,
    body: Body,
) -> Vec<u8> {
    let (from, to) = match m {
        Message::Response(_) => (header(m, &HeaderName::From), header(m, &HeaderName::To)),
        Message::Request(_) => {
            let to = header(m, &HeaderName::To);
            let from = if has_tag(to.as_bytes()) { to } else { format!("{to};tag=t{}", to_tag % 3) };
            (from, header(m, &HeaderName::From))
        }
    };
    let seq = m.headers().cseq().map_or(1, |c| c.seq).saturating_add(1 + u32::from(cseq % 4));
    let mut out = format!(
        "{meth} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {peer};branch={b}\r\nMax-Forwards: 70\r\nFrom: {from}\r\n\
         To: {to}\r\nCall-ID: {call_id}\r\nCSeq: {seq} {meth}\r\nContact: <sip:{peer}>\r\n",
        meth = method.token(),
        target = target(m, local),
        b = branch(branch_n),
        call_id = header(m, &HeaderName::CallId),
    );
    if method == Method::Prack {
        let rseq = m.headers().get(&HeaderName::RSeq).map_or("1".into(), |v| String::from_utf8_lossy(v).into_owned());
        let invite = m.headers().cseq().map_or(1, |c| c.seq);
        let _ = write!(out, "RAck: {rseq} {invite} INVITE\r\n");
    }
    body_lines(body, peer, &mut out);
    out.into_bytes()
}

/// The caller's ACK for `resp`, a final response the endpoint sent it from `local` (step `Ack`).
pub(super) fn ack(resp: &Response, peer: SocketAddr, local: SocketAddr, same_branch: bool, body: Body) -> Vec<u8> {
    let m = Message::Response(resp.clone());
    let seq = resp.headers.cseq().map_or(1, |c| c.seq);
    let via = if same_branch {
        header(&m, &HeaderName::Via)
    } else {
        // The ACK of a 2xx is a transaction of its own (RFC 3261 §13.2.2.4), with a branch from the pool.
        format!("SIP/2.0/UDP {peer};branch={}", branch(seq as u8))
    };
    let mut out = format!(
        "ACK {target} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
         CSeq: {seq} ACK\r\n",
        target = target(&m, local),
        from = header(&m, &HeaderName::From),
        to = header(&m, &HeaderName::To),
        call_id = header(&m, &HeaderName::CallId),
    );
    body_lines(body, peer, &mut out);
    out.into_bytes()
}

/// The CANCEL of `invite`, an INVITE a peer sent (step `Cancel`): its Request-URI, top Via, From, To, Call-ID and
/// CSeq number (RFC 3261 §9.1).
pub(super) fn cancel(invite: &Request) -> Vec<u8> {
    let m = Message::Request(invite.clone());
    format!(
        "CANCEL {uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
         CSeq: {seq} CANCEL\r\nContent-Length: 0\r\n\r\n",
        uri = String::from_utf8_lossy(invite.uri.as_bytes()),
        via = header(&m, &HeaderName::Via),
        from = header(&m, &HeaderName::From),
        to = header(&m, &HeaderName::To),
        call_id = header(&m, &HeaderName::CallId),
        seq = invite.headers.cseq().map_or(1, |c| c.seq),
    )
    .into_bytes()
}
