//! One leg's dialog (RFC 3261 §12): the identifiers, the CSeq space and where in-dialog requests go.
//!
//! The SBC is a UA on each leg: the UAS towards the caller (leg A), the UAC towards the carrier (leg B). Each leg
//! has its own dialog; nothing in one is derived from the other's identifiers (topology hiding), and the
//! [`b2bua`](crate::b2bua) is the only module that sees both.

use crate::msg::{HeaderName, Method, Request, Uri};
use crate::transport::Peer;
use bytes::Bytes;

/// The state of one leg's dialog, from our side.
#[derive(Debug, Clone)]
pub struct Dialog {
    /// Call-ID of this leg.
    pub call_id: Bytes,
    /// Our tag: the To tag we put on responses (leg A) or the From tag of our requests (leg B).
    pub local_tag: Bytes,
    /// The peer's tag, once known (an early or confirmed dialog).
    pub remote_tag: Option<Bytes>,
    /// Our address-of-record on this leg, as a name-addr without tag.
    pub local_uri: Bytes,
    /// The peer's, as a name-addr without tag.
    pub remote_uri: Bytes,
    /// The peer's Contact URI: the Request-URI of in-dialog requests (§12.2.1.1).
    pub remote_target: Bytes,
    /// Route set, in the order Route headers of our requests carry it (§12.1.1, §12.1.2).
    pub route_set: Vec<Bytes>,
    /// The last CSeq number we used.
    pub local_cseq: u32,
    /// Where and how this leg's peer is reached. In-dialog requests go to the address the dialog was set up with,
    /// whatever Contact and Route say: trunks are addressed by IP, and a customer behind NAT is reachable only
    /// there (symmetric signalling, RFC 3581's logic applied to requests).
    pub peer: Peer,
    /// Our Contact on this leg (a name-addr).
    pub contact: Bytes,
}

impl Dialog {
    /// The From value of our requests: our URI with our tag.
    pub fn local_with_tag(&self) -> Bytes {
        with_tag(&self.local_uri, Some(&self.local_tag))
    }

    /// The To value of our requests: the peer's URI with its tag, if known.
    pub fn remote_with_tag(&self) -> Bytes {
        with_tag(&self.remote_uri, self.remote_tag.as_deref())
    }

    /// Moves the dialog's text into one allocation of its exact size. Why: a field taken from a received message
    /// points into its datagram and keeps all of it alive (the whole INVITE, for a field of 20 bytes), and each
    /// field we build is an allocation of its own; a call's dialogs live as long as the call, so their text is
    /// made compact once the call is answered (benches/README.md, "Memory per call"). A field set later (a target
    /// refresh) simply gets an allocation of its own again.
    pub fn compact(&mut self) {
        let route_len: usize = self.route_set.iter().map(Bytes::len).sum();
        let len = self.call_id.len()
            + self.local_tag.len()
            + self.remote_tag.as_ref().map_or(0, Bytes::len)
            + self.local_uri.len()
            + self.remote_uri.len()
            + self.remote_target.len()
            + self.contact.len()
            + route_len;
        let mut text = Vec::with_capacity(len);
        let mut put = |b: &Bytes| {
            let start = text.len();
            text.extend_from_slice(b);
            start..text.len()
        };
        let call_id = put(&self.call_id);
        let local_tag = put(&self.local_tag);
        let remote_tag = self.remote_tag.as_ref().map(&mut put);
        let local_uri = put(&self.local_uri);
        let remote_uri = put(&self.remote_uri);
        let remote_target = put(&self.remote_target);
        let contact = put(&self.contact);
        let routes: Vec<_> = self.route_set.iter().map(&mut put).collect();
        let text = Bytes::from(text);
        self.call_id = text.slice(call_id);
        self.local_tag = text.slice(local_tag);
        self.remote_tag = remote_tag.map(|r| text.slice(r));
        self.local_uri = text.slice(local_uri);
        self.remote_uri = text.slice(remote_uri);
        self.remote_target = text.slice(remote_target);
        self.contact = text.slice(contact);
        self.route_set = routes.into_iter().map(|r| text.slice(r)).collect();
    }

    /// A new in-dialog request (§12.2.1.1) with the next CSeq, our Via with `branch`, and no body. The caller adds
    /// a body and anything method-specific.
    pub fn request(&mut self, method: Method, branch: &str) -> Request {
        self.local_cseq += 1;
        let cseq = self.local_cseq;
        self.request_with_cseq(method, branch, cseq)
    }

    /// An ACK for the 2xx of the INVITE with CSeq `cseq` (§13.2.2.4): same CSeq number, its own branch.
    pub fn ack(&self, cseq: u32, branch: &str) -> Request {
        self.request_with_cseq(Method::Ack, branch, cseq)
    }

    fn request_with_cseq(&self, method: Method, branch: &str, cseq: u32) -> Request {
        let uri = Uri::parse(self.remote_target.clone()).unwrap_or_else(|_| {
            // The target was checked when the dialog was built; a peer-supplied one that does not parse is
            // replaced by the peer's address.
            Uri::parse(Bytes::from(format!("sip:{}", self.peer.remote))).expect("an IP URI parses")
        });
        let mut r = Request::new(method.clone(), uri);
        r.headers.push(HeaderName::Via, via(&self.peer, branch));
        r.headers.push(HeaderName::MaxForwards, "70");
        for route in &self.route_set {
            r.headers.push(HeaderName::Route, route.clone());
        }
        r.headers.push(HeaderName::From, self.local_with_tag());
        r.headers.push(HeaderName::To, self.remote_with_tag());
        r.headers.push(HeaderName::CallId, self.call_id.clone());
        r.headers.push(HeaderName::CSeq, format!("{cseq} {}", String::from_utf8_lossy(method.as_bytes())));
        if matches!(method, Method::Invite | Method::Update | Method::Notify | Method::Subscribe | Method::Refer) {
            r.headers.push(HeaderName::Contact, self.contact.clone());
        }
        r
    }
}

/// Our Via for a request sent to `peer`, asking for rport (RFC 3581) so that answers find us through NAT.
pub fn via(peer: &Peer, branch: &str) -> String {
    format!("SIP/2.0/{} {};branch={branch};rport", peer.transport.via_token(), peer.local)
}

/// `uri;tag=…`.
pub fn with_tag(uri: &[u8], tag: Option<&[u8]>) -> Bytes {
    let mut v = uri.to_vec();
    if let Some(t) = tag {
        v.extend_from_slice(b";tag=");
        v.extend_from_slice(t);
    }
    v.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{parse_datagram, Message};
    use crate::transport::Transport;

    fn dialog() -> Dialog {
        Dialog {
            call_id: Bytes::from_static(b"c1"),
            local_tag: Bytes::from_static(b"ours"),
            remote_tag: Some(Bytes::from_static(b"theirs")),
            local_uri: Bytes::from_static(b"<sip:+4940123@198.18.2.1>"),
            remote_uri: Bytes::from_static(b"<sip:+4930123@198.18.2.10>"),
            remote_target: Bytes::from_static(b"sip:gw@198.18.2.10:5060"),
            route_set: vec![Bytes::from_static(b"<sip:198.18.2.10;lr>")],
            local_cseq: 1,
            peer: Peer {
                transport: Transport::Udp,
                local: "198.18.2.1:5060".parse().unwrap(),
                remote: "198.18.2.10:5060".parse().unwrap(),
                conn: None,
            },
            contact: Bytes::from_static(b"<sip:198.18.2.1:5060>"),
        }
    }

    #[test]
    fn a_compact_dialog_is_the_same_dialog_in_one_allocation() {
        let mut d = dialog();
        d.route_set.push(Bytes::from_static(b"<sip:198.18.2.11;lr>"));
        let before = d.clone();
        d.compact();
        assert_eq!(format!("{d:?}"), format!("{before:?}"), "every field as it was");
        let (start, end) = (d.call_id.as_ptr() as usize, d.route_set[1].as_ptr() as usize);
        assert!(end > start && end - start < 200, "in one allocation, in order");
        let mut refreshed = d.clone();
        refreshed.remote_target = Bytes::from_static(b"sip:gw@198.18.2.12");
        assert_eq!(refreshed.request(Method::Bye, "z9hG4bKx2").uri.as_bytes(), &b"sip:gw@198.18.2.12"[..]);
    }

    #[test]
    fn in_dialog_bye_carries_the_dialog_and_parses() {
        let mut d = dialog();
        let bye = d.request(Method::Bye, "z9hG4bKx1");
        assert_eq!(d.local_cseq, 2);
        let Message::Request(r) = parse_datagram(bye.to_bytes()).expect("our BYE parses") else { panic!() };
        assert_eq!(r.uri.as_bytes(), &b"sip:gw@198.18.2.10:5060"[..]);
        assert_eq!(r.headers.from().unwrap().tag(), Some(&b"ours"[..]));
        assert_eq!(r.headers.to().unwrap().tag(), Some(&b"theirs"[..]));
        assert_eq!(r.headers.cseq().unwrap().seq, 2);
        assert_eq!(r.headers.top_via().unwrap().branch(), Some(&b"z9hG4bKx1"[..]));
        assert_eq!(r.headers.routes().unwrap().len(), 1);
        let ack = d.ack(1, "z9hG4bKx2");
        assert_eq!(ack.headers.cseq().unwrap().seq, 1);
        assert_eq!(ack.headers.cseq().unwrap().method, Method::Ack);
    }
}
