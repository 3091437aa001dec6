//! The messages the B2BUA writes: leg B's INVITE, responses relayed to leg A, requests relayed across. Each
//! builds its headers from our own dialog state; of the other leg only the body, its type and a trunk's allowlist
//! of headers cross (topology hiding).

use crate::dialog::{self, Dialog};
use crate::msg::{HeaderName, Method, Request, Response, Uri};
use crate::transport::Peer;
use bytes::Bytes;

/// Headers the B2BUA writes itself for each leg (or carries by its own rules: the body's type, session timers),
/// and credentials, which belong to one hop. A trunk's `pass_headers` may never name these (lower case).
pub const BUILT_HEADERS: &[&str] = &[
    "via",
    "from",
    "to",
    "call-id",
    "cseq",
    "contact",
    "route",
    "record-route",
    "max-forwards",
    "content-length",
    "content-type",
    "session-expires",
    "min-se",
    "supported",
    "require",
    "authorization",
    "proxy-authorization",
    "www-authenticate",
    "proxy-authenticate",
];

/// Copies the body, its Content-Type, and headers named in `pass` (lower-case) from `src` to `dst`.
pub(super) fn carry_body_and_allowed(
    src_headers: &crate::msg::Headers,
    body: &Bytes,
    pass: &[String],
    dst: &mut crate::msg::Headers,
) {
    // Most trunks pass nothing: then no header is even looked at. Names compare without allocating (this runs
    // for every relayed message).
    if !pass.is_empty() {
        let named = |list: &[&str], n: &[u8]| list.iter().any(|p| p.as_bytes().eq_ignore_ascii_case(n));
        for (name, value) in src_headers.iter() {
            let n = name.as_bytes();
            if pass.iter().any(|p| p.as_bytes().eq_ignore_ascii_case(n)) && !named(BUILT_HEADERS, n) {
                dst.push(name.clone(), Bytes::copy_from_slice(value));
            }
        }
    }
    // Session timers (RFC 4028) pass through: the interval, its floor, and the `timer` option tag; so does `100rel`
    // (RFC 3262): reliable provisionals keep their RSeq across and PRACK is relayed with its RAck mapped to the
    // other leg's INVITE. Other option tags (replaces) name extensions this B2BUA does not carry end to end.
    for name in [HeaderName::SessionExpires, HeaderName::MinSe] {
        if let Some(v) = src_headers.get_bytes(&name) {
            dst.push(name, v);
        }
    }
    for name in [HeaderName::Supported, HeaderName::Require] {
        for tag in ["timer", "100rel"] {
            if src_headers.list(&name).any(|t| t.eq_ignore_ascii_case(tag.as_bytes())) {
                dst.push(name.clone(), tag);
            }
        }
    }
    if !body.is_empty() {
        if let Some(ct) = src_headers.get_bytes(&HeaderName::ContentType) {
            dst.push(HeaderName::ContentType, ct);
        }
    }
}

/// A reliable provisional response (RFC 3262) of the other leg stays reliable on this one: its RSeq is relayed
/// unchanged (each leg sees the same sequence, one for one), so a PRACK's RAck maps back by CSeq alone.
pub(super) fn carry_reliable(src: &Response, dst: &mut Response) {
    let reliable = src.headers.list(&HeaderName::Require).any(|t| t.eq_ignore_ascii_case(b"100rel"));
    if let (true, Some(rseq)) = (reliable, src.headers.get_bytes(&HeaderName::RSeq)) {
        if !dst.headers.list(&HeaderName::Require).any(|t| t.eq_ignore_ascii_case(b"100rel")) {
            dst.headers.push(HeaderName::Require, "100rel");
        }
        dst.headers.push(HeaderName::RSeq, rseq);
    }
}

/// The RSeq of a reliable provisional response (`Require: 100rel` and an RSeq that parses), else `None`.
pub(super) fn rseq_of_reliable(r: &Response) -> Option<u32> {
    if !r.headers.list(&HeaderName::Require).any(|t| t.eq_ignore_ascii_case(b"100rel")) {
        return None;
    }
    std::str::from_utf8(r.headers.get(&HeaderName::RSeq)?).ok()?.trim().parse().ok()
}

/// The RSeq a PRACK acknowledges: the first number of its RAck (RFC 3262 §7.2).
pub(super) fn rack_rseq(prack: &Request) -> Option<u32> {
    let v = std::str::from_utf8(prack.headers.get(&HeaderName::RAck)?).ok()?;
    v.split_whitespace().next()?.parse().ok()
}

/// The user part of `uri` for a new From/To on the other leg, kept as presented.
pub(super) fn user_of(uri: &Uri) -> String {
    uri.user().map(|u| String::from_utf8_lossy(u).into_owned()).unwrap_or_default()
}

/// A `sip:user@host` URI string; without user when `user` is empty.
pub(super) fn sip_uri(user: &str, host: impl std::fmt::Display) -> String {
    if user.is_empty() {
        format!("sip:{host}")
    } else {
        format!("sip:{user}@{host}")
    }
}

/// The `;transport=` parameter of a `sip:` URI for `t` (none for UDP, the default, RFC 3261 §19.1.1).
pub(crate) fn transport_param(t: crate::transport::Transport) -> &'static str {
    use crate::transport::Transport;
    match t {
        Transport::Udp => "",
        Transport::Tcp => ";transport=tcp",
        Transport::Tls => ";transport=tls",
        // RFC 7118 §5.2: `ws` for both; a secure WebSocket is told by the `sips:` scheme, not the parameter.
        Transport::Ws | Transport::Wss => ";transport=ws",
    }
}

/// How leg B addresses its carrier: the URI scheme, the host (the trunk's certificate name or the gateway's
/// address) and the transport.
pub(super) struct Target {
    /// `sips:` URIs (TLS gateways of a trunk with `tls.sips`).
    pub sips: bool,
    host: String,
    host_port: String,
    transport: crate::transport::Transport,
}

impl Target {
    /// The target of `trunk`'s gateway `gw`.
    pub(super) fn of(trunk: &crate::routing::Trunk, gw: crate::routing::Gateway) -> Self {
        // A carrier addressed by its DNS name keeps the URI it was configured with (RFC 3263: the port a target got
        // from SRV is not the URI's).
        let named = trunk.uri_host.as_ref().and_then(|h| trunk.dns_gateways.iter().find(|d| &d.host == h));
        let (host, host_port) = match (&trunk.uri_host, named) {
            (Some(h), Some(d)) => (h.clone(), d.port.map_or_else(|| h.clone(), |p| format!("{h}:{p}"))),
            (Some(h), None) => (h.clone(), format!("{h}:{}", gw.addr.port())),
            (None, _) => (gw.addr.ip().to_string(), gw.addr.to_string()),
        };
        let host = if gw.addr.is_ipv6() && trunk.uri_host.is_none() { format!("[{host}]") } else { host };
        let sips = trunk.sips && gw.transport == crate::transport::Transport::Tls;
        Self { sips, host, host_port, transport: gw.transport }
    }

    /// `user` at the target: with port and transport for the Request-URI (`request`), bare for To.
    pub(super) fn to_uri(&self, user: &str, request: bool) -> String {
        let scheme = if self.sips { "sips" } else { "sip" };
        let at = if user.is_empty() { String::new() } else { format!("{user}@") };
        if !request {
            return format!("{scheme}:{at}{}", self.host);
        }
        let param = if self.sips { "" } else { transport_param(self.transport) };
        format!("{scheme}:{at}{}{param}", self.host_port)
    }
}

/// Leg B's initial INVITE: everything fresh (Call-ID, tags, Via, Contact), the called number towards the
/// gateway, the calling number as presented from our address.
pub(super) struct InviteB<'a> {
    pub dialog: &'a Dialog,
    pub branch: &'a str,
    pub max_forwards: u32,
    pub a_invite: &'a Request,
    /// A's body as it goes to B (its SDP anchored at the relay).
    pub body: Bytes,
    pub pass: &'a [String],
    pub extra: Vec<(HeaderName, String)>,
}

impl InviteB<'_> {
    pub(super) fn build(self) -> Request {
        let d = self.dialog;
        // The target was built by [`Target::to_uri`]; a called number that makes it unparseable falls back to the
        // gateway's address.
        let uri = Uri::parse(d.remote_target.clone())
            .unwrap_or_else(|_| Uri::parse(Bytes::from(format!("sip:{}", d.peer.remote))).expect("an IP URI parses"));
        let mut r = Request::new(Method::Invite, uri);
        r.headers.push(HeaderName::Via, dialog::via(&d.peer, self.branch));
        r.headers.push(HeaderName::MaxForwards, self.max_forwards.to_string());
        r.headers.push(HeaderName::From, d.local_with_tag());
        r.headers.push(HeaderName::To, d.remote_uri.clone());
        r.headers.push(HeaderName::CallId, d.call_id.clone());
        r.headers.push(HeaderName::CSeq, format!("{} INVITE", d.local_cseq));
        r.headers.push(HeaderName::Contact, d.contact.clone());
        r.headers.push(HeaderName::Allow, crate::endpoint::answer::ALLOW);
        for (name, value) in self.extra {
            r.headers.push(name, value);
        }
        carry_body_and_allowed(&self.a_invite.headers, &self.body, self.pass, &mut r.headers);
        r.body = self.body;
        r
    }
}

/// A response on leg A to A's `request`, relaying `status`/`reason` and the body of `from` (a response of the
/// other leg, if any), with our To tag and Contact.
pub(super) fn response_to(
    request: &Request,
    status: u16,
    reason: Bytes,
    a: &Dialog,
    from: Option<&Response>,
    pass: &[String],
    server: &str,
) -> Response {
    let mut r = Response::to_request(request, status, "");
    r.reason = reason;
    if status > 100 && request.headers.to().is_ok_and(|t| t.tag().is_none()) {
        let v = dialog::with_tag(request.headers.get(&HeaderName::To).unwrap_or_default(), Some(&a.local_tag));
        r.headers.set(HeaderName::To, v);
    }
    if (101..300).contains(&status) && matches!(request.method, Method::Invite | Method::Update | Method::Subscribe) {
        r.headers.push(HeaderName::Contact, a.contact.clone());
    }
    r.headers.push(HeaderName::Server, server.to_owned());
    if let Some(src) = from {
        carry_body_and_allowed(&src.headers, &src.body, pass, &mut r.headers);
        r.body = src.body.clone();
    }
    r
}

/// A request on `to` relaying `src` (an in-dialog request of the other leg): method, body, allowed headers.
pub(super) fn relay_request(src: &Request, to: &mut Dialog, branch: &str, pass: &[String]) -> Request {
    let mut r = to.request(src.method.clone(), branch);
    carry_body_and_allowed(&src.headers, &src.body, pass, &mut r.headers);
    r.body = src.body.clone();
    r
}

/// A CANCEL for our INVITE `invite` (§9.1): same Request-URI, top Via, Call-ID, From, To, CSeq number.
pub(crate) fn cancel_for(invite: &Request) -> Request {
    let mut r = Request::new(Method::Cancel, invite.uri.clone());
    let keep = |n: &HeaderName| {
        matches!(
            n,
            HeaderName::From | HeaderName::To | HeaderName::CallId | HeaderName::Route | HeaderName::MaxForwards
        )
    };
    if let Some(via) = invite.headers.get_bytes(&HeaderName::Via) {
        r.headers.push(HeaderName::Via, via);
    }
    for (n, v) in invite.headers.iter().filter(|(n, _)| keep(n)) {
        r.headers.push(n.clone(), Bytes::copy_from_slice(v));
    }
    let seq = invite.headers.cseq().map(|c| c.seq).unwrap_or(1);
    r.headers.push(HeaderName::CSeq, format!("{seq} CANCEL"));
    r
}

/// The local address to send from towards `remote`: the listen address of that transport sharing the longest
/// address prefix with it (the interface on the carrier's side), else the first of that transport.
pub fn pick_local(
    locals: &[(crate::transport::Transport, std::net::SocketAddr)],
    transport: crate::transport::Transport,
    remote: std::net::SocketAddr,
) -> Option<std::net::SocketAddr> {
    let common = |a: std::net::SocketAddr| match (a.ip(), remote.ip()) {
        (std::net::IpAddr::V4(x), std::net::IpAddr::V4(y)) => (u32::from(x) ^ u32::from(y)).leading_zeros(),
        (std::net::IpAddr::V6(x), std::net::IpAddr::V6(y)) => (u128::from(x) ^ u128::from(y)).leading_zeros(),
        _ => 0,
    };
    locals
        .iter()
        .filter(|(t, a)| *t == transport && a.is_ipv4() == remote.is_ipv4())
        .max_by_key(|(_, a)| common(*a))
        .map(|(_, a)| *a)
}

/// A peer for UDP sends from `local` to `remote`.
pub(super) fn peer(
    transport: crate::transport::Transport,
    local: std::net::SocketAddr,
    remote: std::net::SocketAddr,
) -> Peer {
    Peer { transport, local, remote, conn: None }
}
