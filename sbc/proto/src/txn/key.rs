//! Transaction identity and matching (RFC 3261 §17.1.3, §17.2.3, with the RFC 2543 fallback).

use crate::msg::{HeaderName, Method, Request, Response};
use bytes::Bytes;
use std::sync::Arc;

/// Which end of the transaction we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// We sent the request.
    Client,
    /// We received it.
    Server,
}

/// Identifies a transaction. For RFC 3261 peers: the top Via branch, its sent-by, and the method (ACK counts as
/// INVITE, since it belongs to the INVITE transaction for non-2xx). For RFC 2543 peers (no magic cookie): the
/// Request-URI, From tag, Call-ID, CSeq number and top Via, as §17.2.3 prescribes.
///
/// All of it is one shared allocation, the method's token last after a space (which neither a branch, a sent-by
/// nor a method has): an INVITE's two transactions outlive its answer by 32 s, and each key is held by several
/// maps (the transactions, their timers, the call and its indexes), so a key of 24 bytes instead of 80 and one
/// allocation instead of two are a few hundred bytes per call (benches/README.md, "Memory per call").
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransactionKey {
    id: Arc<[u8]>,
    side: Side,
}

fn method_class(m: &Method) -> Method {
    match m {
        Method::Ack => Method::Invite,
        other => other.clone(),
    }
}

impl TransactionKey {
    fn new(side: Side, mut id: Vec<u8>, method: &Method) -> Self {
        id.push(b' ');
        id.extend_from_slice(method_class(method).as_bytes());
        Self { id: Arc::from(id), side }
    }

    /// The side.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The branch of a client transaction's key (what our request's top Via carries); `None` for a server one.
    pub fn branch(&self) -> Option<&[u8]> {
        let end = self.id.iter().rposition(|c| *c == b' ')?;
        (self.side == Side::Client).then(|| &self.id[..end])
    }

    /// The method of the transaction (INVITE for an ACK's transaction).
    pub fn method(&self) -> Method {
        let token = self.id.rsplit(|c| *c == b' ').next().unwrap_or_default();
        Method::from_token(Bytes::copy_from_slice(token))
    }

    /// The key of the server transaction `req` belongs to (for ACK: the INVITE's transaction).
    pub fn for_request(req: &Request) -> Option<Self> {
        Self::server(req, method_class(&req.method))
    }

    /// The key of the INVITE server transaction a CANCEL targets (§9.2: same key, method INVITE).
    pub fn cancelled_invite(cancel: &Request) -> Option<Self> {
        Self::server(cancel, Method::Invite)
    }

    fn server(req: &Request, method: Method) -> Option<Self> {
        let via = req.headers.top_via().ok()?;
        let sent_by = match via.port {
            Some(p) => format!("{}:{p}", String::from_utf8_lossy(via.host())),
            None => String::from_utf8_lossy(via.host()).into_owned(),
        };
        let id = if via.has_rfc3261_branch() {
            let mut id = via.branch()?.to_vec();
            id.push(b'|');
            id.extend_from_slice(sent_by.to_ascii_lowercase().as_bytes());
            id
        } else {
            // RFC 2543: §17.2.3's tuple. The To tag is left out so that the ACK (which carries our tag) and the
            // INVITE (which does not) share the key.
            let mut id = b"2543|".to_vec();
            id.extend_from_slice(req.uri.as_bytes());
            id.push(b'|');
            if let Ok(from) = req.headers.from() {
                id.extend_from_slice(from.tag().map_or(&b""[..], |t| t));
            }
            id.push(b'|');
            id.extend_from_slice(req.headers.call_id().ok()?);
            id.push(b'|');
            id.extend_from_slice(req.headers.cseq().ok()?.seq.to_string().as_bytes());
            id.push(b'|');
            id.extend_from_slice(req.headers.get(&HeaderName::Via)?);
            id
        };
        Some(Self::new(Side::Server, id, &method))
    }

    /// The key of a client transaction for a request we send (its top Via must carry our branch).
    pub fn for_sent_request(req: &Request) -> Option<Self> {
        let via = req.headers.top_via().ok()?;
        Some(Self::new(Side::Client, via.branch()?.to_vec(), &req.method))
    }

    /// The key of the client transaction a response belongs to (§17.1.3: branch and CSeq method).
    pub fn for_response(resp: &Response) -> Option<Self> {
        let via = resp.headers.top_via().ok()?;
        let method = resp.headers.cseq().ok()?.method;
        Some(Self::new(Side::Client, via.branch()?.to_vec(), &method))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{parse_datagram, Message};

    fn req(raw: &str) -> Request {
        match parse_datagram(Bytes::from(raw.to_owned())).expect("valid") {
            Message::Request(r) => r,
            Message::Response(_) => panic!("request"),
        }
    }

    fn msg(method: &str, via: &str, to: &str) -> Request {
        req(&format!(
            "{method} sip:b@h SIP/2.0\r\nVia: {via}\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>{to}\r\nCall-ID: c\r\nCSeq: 1 {method}\r\n\r\n"
        ))
    }

    #[test]
    fn ack_and_cancel_find_their_invite() {
        let inv = msg("INVITE", "SIP/2.0/UDP h:5060;branch=z9hG4bKa", "");
        let ack = msg("ACK", "SIP/2.0/UDP h:5060;branch=z9hG4bKa", ";tag=x");
        let cancel = msg("CANCEL", "SIP/2.0/UDP h:5060;branch=z9hG4bKa", "");
        let k = TransactionKey::for_request(&inv).expect("key");
        assert_eq!(TransactionKey::for_request(&ack), Some(k.clone()));
        assert_ne!(TransactionKey::for_request(&cancel), Some(k.clone()));
        assert_eq!(TransactionKey::cancelled_invite(&cancel), Some(k.clone()));
        assert_eq!(k.method(), Method::Invite);
        assert_eq!(TransactionKey::for_request(&cancel).expect("key").method(), Method::Cancel);
        assert_eq!(std::mem::size_of::<TransactionKey>(), 24, "see the type");
        assert_eq!(k.branch(), None, "a server key's branch is the peer's business");
        let mut ours = msg("INVITE", "SIP/2.0/UDP h:5060;branch=z9hG4bKours", "");
        ours.method = Method::Invite;
        assert_eq!(TransactionKey::for_sent_request(&ours).expect("key").branch(), Some(&b"z9hG4bKours"[..]));
    }

    #[test]
    fn same_branch_from_another_sent_by_is_another_transaction() {
        let a = msg("OPTIONS", "SIP/2.0/UDP h1:5060;branch=z9hG4bKa", "");
        let b = msg("OPTIONS", "SIP/2.0/UDP h2:5060;branch=z9hG4bKa", "");
        assert_ne!(TransactionKey::for_request(&a), TransactionKey::for_request(&b));
    }

    #[test]
    fn rfc2543_requests_match_by_their_tuple() {
        let inv = msg("INVITE", "SIP/2.0/UDP h:5060", "");
        let again = msg("INVITE", "SIP/2.0/UDP h:5060", "");
        let ack = msg("ACK", "SIP/2.0/UDP h:5060", ";tag=ours");
        let k = TransactionKey::for_request(&inv).expect("key");
        assert_eq!(TransactionKey::for_request(&again), Some(k.clone()));
        assert_eq!(TransactionKey::for_request(&ack), Some(k));
        let bare_cookie = msg("INVITE", "SIP/2.0/UDP h:5060;branch=z9hG4bK", "");
        assert!(
            String::from_utf8_lossy(&TransactionKey::for_request(&bare_cookie).expect("key").id).starts_with("2543|")
        );
    }
}
