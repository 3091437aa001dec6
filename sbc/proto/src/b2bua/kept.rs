//! The requests a call keeps (leg A's INVITE, leg B's INVITE and ACK): parsed while the call is set up, when
//! responses, retries and B's INVITE are built from them; once the call is answered, only their wire form, and
//! the INVITEs only on a box that replicates its calls: after the answer nothing but a standby's record needs
//! them (the ACK is resent when B repeats its 2xx).
//!
//! Why: a parsed request is its received or built bytes plus a list of header entries (80 bytes each) and, for a
//! built one, a separate allocation per header value. Kept parsed for the life of every call, the three came to
//! about 4 KB of the memory per call (benches/README.md, "Memory per call"); their wire form is one allocation of
//! the message's size.

use crate::msg::{parse_datagram, Message, Request};
use bytes::Bytes;
use std::borrow::Cow;

/// A request a call keeps: see the module.
#[derive(Debug, Clone)]
pub(super) enum Kept {
    /// While the call is set up. Boxed, so that the wire form does not carry the parsed form's size inline.
    Parsed(Box<Request>),
    /// Once it is answered: the request as it would be sent, in an allocation of its exact size.
    Wire(Bytes),
    /// Once it is answered, on a box that makes no records for a standby: nothing needs it any more.
    Dropped,
}

impl Kept {
    pub(super) fn new(request: Request) -> Self {
        Self::Parsed(Box::new(request))
    }

    /// The request: borrowed while parsed, else parsed again from its wire form. `None` once dropped, or if the
    /// wire form does not parse, which our own serializer's output always does (tested below).
    pub(super) fn request(&self) -> Option<Cow<'_, Request>> {
        match self {
            Self::Parsed(r) => Some(Cow::Borrowed(r)),
            Self::Wire(b) => match parse_datagram(b.clone()).ok()? {
                Message::Request(r) => Some(Cow::Owned(r)),
                Message::Response(_) => None,
            },
            Self::Dropped => None,
        }
    }

    /// The request as it would be sent; `None` once dropped.
    pub(super) fn to_bytes(&self) -> Option<Bytes> {
        match self {
            Self::Parsed(r) => Some(r.to_bytes()),
            Self::Wire(b) => Some(b.clone()),
            Self::Dropped => None,
        }
    }

    /// The call was answered: keeps the wire form if a standby's record may need it (`for_records`), else
    /// nothing.
    pub(super) fn settle(&mut self, for_records: bool) {
        if for_records {
            self.freeze();
        } else {
            *self = Self::Dropped;
        }
    }

    /// Keeps only the wire form from now on: the message as received when it is byte for byte what the request
    /// serializes to (leg A's INVITE, untouched since and written as we write: no copy at all, and the dialog's
    /// fields, which point into it, keep it anyway), else as it would be sent. One serialization either way, no
    /// parse: a request that serializes to the received bytes is what those bytes parse to (the parser's round
    /// trip, `tests/roundtrip.rs`).
    pub(super) fn freeze(&mut self) {
        if let Self::Parsed(r) = self {
            let out = r.to_bytes();
            let received = r.headers.source();
            *self = Self::Wire(if *received == out { received.clone() } else { Bytes::from(out.to_vec()) });
        }
    }
}

/// `request` as it would be sent, in an allocation of its exact size (the serializer's buffer reserves room
/// beyond the message).
pub(super) fn wire(request: &Request) -> Bytes {
    Bytes::from(request.to_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:+15551234567@198.18.1.2 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 198.18.0.1:5060;branch=z9hG4bK-1;rport\r\n\
        Max-Forwards: 69\r\n\
        From: <sip:alice@198.18.0.2>;tag=a1\r\n\
        To: <sip:+15551234567@198.18.1.2>\r\n\
        Call-ID: kept-1@198.18.0.2\r\n\
        CSeq: 1 INVITE\r\n\
        Contact: <sip:alice@198.18.0.2:5060>\r\n\
        Content-Type: application/sdp\r\n\
        Content-Length: 4\r\n\
        \r\n\
        v=0\n";

    #[test]
    fn a_frozen_request_is_the_same_request_and_the_same_bytes() {
        let Ok(Message::Request(r)) = parse_datagram(Bytes::from_static(INVITE)) else { panic!("parses") };
        let mut kept = Kept::new(r.clone());
        let before = kept.to_bytes().expect("kept");
        kept.freeze();
        assert!(matches!(kept, Kept::Wire(_)));
        assert_eq!(kept.to_bytes(), Some(before.clone()), "the wire form is what the parsed form serialized to");
        assert_eq!(*kept.request().expect("parses again"), r, "and parses back to the same request");
        kept.freeze();
        assert_eq!(kept.to_bytes(), Some(before), "freezing twice changes nothing");
    }

    #[test]
    fn settling_without_records_keeps_nothing() {
        let Ok(Message::Request(r)) = parse_datagram(Bytes::from_static(INVITE)) else { panic!("parses") };
        let mut kept = Kept::new(r.clone());
        kept.settle(true);
        assert!(matches!(kept, Kept::Wire(_)), "a box that replicates keeps the wire form");
        let mut kept = Kept::new(r);
        kept.settle(false);
        assert!(matches!(kept, Kept::Dropped));
        assert!(kept.request().is_none() && kept.to_bytes().is_none());
    }

    #[test]
    fn a_received_request_freezes_to_its_datagram_unless_changed() {
        let datagram = Bytes::from_static(INVITE);
        let Ok(Message::Request(r)) = parse_datagram(datagram.clone()) else { panic!("parses") };
        let mut kept = Kept::new(r.clone());
        kept.freeze();
        let Kept::Wire(w) = &kept else { panic!("frozen") };
        assert_eq!(w.as_ptr(), datagram.as_ptr(), "the received bytes themselves, not a copy");
        assert_eq!(*kept.request().expect("parses"), r);

        let mut changed = r.clone();
        changed.headers.set(crate::msg::HeaderName::MaxForwards, "68");
        let mut kept = Kept::new(changed.clone());
        kept.freeze();
        let Kept::Wire(w) = &kept else { panic!("frozen") };
        assert_ne!(w.as_ptr(), datagram.as_ptr(), "a changed request is written out");
        assert_eq!(*kept.request().expect("parses"), changed);
    }
}
