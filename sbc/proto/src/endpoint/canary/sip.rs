//! The SIP and SDP a canary call sends and reads: its INVITE with a PCMU offer, the RTP address of the answer, the
//! dialog a 2xx confirms, and the ACK and BYE for an answer that came too late.

use super::super::IdGenerator;
use crate::dialog::Dialog;
use crate::msg::{HeaderName, Method, Request, Response, Uri};
use crate::transport::Peer;
use crate::txn::{TransactionKey, Transactions};
use bytes::Bytes;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

/// Our INVITE for `dialog` with the SDP `body`.
pub(super) fn invite(dialog: &Dialog, branch: &str, server: &str, body: &str) -> Request {
    let uri = Uri::parse(dialog.remote_target.clone())
        .unwrap_or_else(|_| Uri::parse(Bytes::from(format!("sip:{}", dialog.peer.remote))).expect("an IP URI parses"));
    let mut r = Request::new(Method::Invite, uri);
    r.headers.push(HeaderName::Via, crate::dialog::via(&dialog.peer, branch));
    r.headers.push(HeaderName::MaxForwards, "70");
    r.headers.push(HeaderName::From, dialog.local_with_tag());
    r.headers.push(HeaderName::To, dialog.remote_uri.clone());
    r.headers.push(HeaderName::CallId, dialog.call_id.clone());
    r.headers.push(HeaderName::CSeq, format!("{} INVITE", dialog.local_cseq));
    r.headers.push(HeaderName::Contact, dialog.contact.clone());
    r.headers.push(HeaderName::Allow, crate::endpoint::answer::ALLOW);
    r.headers.push(HeaderName::UserAgent, server.to_owned());
    r.headers.push(HeaderName::ContentType, "application/sdp");
    r.body = Bytes::from(body.to_owned());
    r
}

/// An SDP offer of one PCMU stream at `media` (RFC 4566; PCMU is the codec every carrier takes).
pub(super) fn offer(media: SocketAddr, ids: &mut IdGenerator) -> String {
    let family = if media.is_ipv4() { "IP4" } else { "IP6" };
    let ip = media.ip();
    let session: String = ids.tag().chars().filter(char::is_ascii_digit).take(9).collect();
    let session = if session.is_empty() { "1".to_owned() } else { session };
    format!(
        "v=0\r\no=- {session} 1 IN {family} {ip}\r\ns=canary\r\nc=IN {family} {ip}\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n",
        media.port()
    )
}

/// The RTP address of the first audio stream of an SDP answer: its connection address (media-level `c=` over
/// session-level) and port. Hand-written: the canary reads two lines, the relay's SDP module rewrites whole
/// bodies and wants a session of its own.
pub(super) fn answer_media(body: &[u8]) -> Option<SocketAddr> {
    let text = std::str::from_utf8(body).ok()?;
    let mut session_c: Option<IpAddr> = None;
    let mut port: Option<u16> = None;
    let mut media_c: Option<IpAddr> = None;
    let conn = |l: &str| l.split_whitespace().nth(2).and_then(|a| a.split('/').next()?.parse::<IpAddr>().ok());
    for line in text.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            if port.is_some() {
                break;
            }
            let mut f = m.split_whitespace();
            if f.next() == Some("audio") {
                port = f.next().and_then(|p| p.parse().ok());
            }
        } else if let Some(c) = line.strip_prefix("c=") {
            if port.is_some() {
                media_c = conn(c);
            } else {
                session_c = conn(c);
            }
        }
    }
    let port = port.filter(|p| *p != 0)?;
    Some(SocketAddr::new(media_c.or(session_c)?, port))
}

/// The dialog confirmed by 2xx `r` (§12.1.2): the far end's tag, target and route set.
pub(super) fn confirm(dialog: &mut Dialog, r: &Response) {
    dialog.remote_tag = r.headers.to().ok().and_then(|t| t.tag().map(Bytes::copy_from_slice));
    if let Ok(crate::msg::Contacts::Addrs(a)) = r.headers.contacts() {
        if let Some(c) = a.first() {
            dialog.remote_target = Bytes::copy_from_slice(c.uri_bytes());
        }
    }
    let mut rr: Vec<Bytes> = r.headers.get_all_bytes(&HeaderName::RecordRoute).collect();
    rr.reverse();
    dialog.route_set = rr;
}

/// A 2xx that came after the canary gave up: acknowledged and hung up at once, so no call stays up at the far end.
/// Returns the BYE's transaction.
pub(super) fn late_answer(
    r: &Response,
    peer: Option<Peer>,
    txns: &mut Transactions,
    ids: &mut IdGenerator,
    now: Instant,
) -> Option<TransactionKey> {
    let peer = peer?;
    let local_tag = r.headers.from().ok()?.tag().map(Bytes::copy_from_slice)?;
    let strip = |v: &[u8]| -> Bytes {
        let s = String::from_utf8_lossy(v);
        Bytes::from(s.split(";tag=").next().unwrap_or_default().to_owned())
    };
    let mut dialog = Dialog {
        call_id: r.headers.get_bytes(&HeaderName::CallId).unwrap_or_default(),
        local_tag,
        remote_tag: None,
        local_uri: strip(r.headers.get(&HeaderName::From).unwrap_or_default()),
        remote_uri: strip(r.headers.get(&HeaderName::To).unwrap_or_default()),
        remote_target: Bytes::from(format!("sip:{}", peer.remote)),
        route_set: Vec::new(),
        local_cseq: r.headers.cseq().map(|c| c.seq).unwrap_or(1),
        peer,
        contact: Bytes::new(),
    };
    confirm(&mut dialog, r);
    let ack = dialog.ack(dialog.local_cseq, &ids.branch());
    txns.send_ack(peer, ack);
    let bye = dialog.request(Method::Bye, &ids.branch());
    txns.send_request(now, peer, bye).ok()
}

/// An address as the host part of a URI (IPv6 in brackets).
pub(super) fn host_of(a: SocketAddr) -> String {
    match a.ip() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// An address with its port as the host part of a URI.
pub(super) fn peer_host(a: SocketAddr) -> String {
    a.to_string()
}
