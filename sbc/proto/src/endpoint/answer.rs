//! Requests the SBC answers itself, outside any dialog: OPTIONS pings, methods it does not implement, and
//! in-dialog requests for dialogs that do not exist.

use crate::msg::{HeaderName, Method, Request, Response};

/// What we implement, for `Allow` (RFC 3261 §20.5). Sent in OPTIONS answers and 405s.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, PRACK, INFO";
/// Bodies we understand (RFC 3261 §11.2).
pub const ACCEPT: &str = "application/sdp";
/// Extensions we support (RFC 3262 100rel, RFC 3311 UPDATE via Allow, RFC 4028 timer).
pub const SUPPORTED: &str = "100rel, timer, replaces";

/// How the core disposes of a request that no transaction, dialog or call claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Answer with this response (the To tag is added by the caller when the response is final).
    Respond(Response),
    /// Silently absorb (an ACK that belongs to nothing: RFC 3261 §17.2.3 gives it no response).
    Absorb,
    /// A new call: hand it to the B2BUA.
    NewCall,
}

/// Decides what to do with a request that matched no transaction and no dialog. `server` is our Server header.
pub fn out_of_dialog(req: &Request, server: &str) -> Disposition {
    let has_to_tag = req.headers.to().ok().and_then(|t| t.tag().map(<[u8]>::to_vec)).is_some();
    let resp = |status, reason| {
        let mut r = Response::to_request(req, status, reason);
        r.headers.push(HeaderName::Server, server.to_owned());
        r
    };
    match &req.method {
        Method::Ack => Disposition::Absorb,
        Method::Options => {
            // RFC 3261 §11.2: answered like an INVITE would be, with our capabilities; a To tag names no dialog
            // here, so an in-dialog OPTIONS is answered the same way (a keep-alive outside a live dialog).
            let mut r = resp(200, "OK");
            r.headers.push(HeaderName::Allow, ALLOW);
            r.headers.push(HeaderName::Accept, ACCEPT);
            r.headers.push(HeaderName::Supported, SUPPORTED);
            Disposition::Respond(r)
        }
        // §9.2: a CANCEL matching no transaction.
        Method::Cancel => Disposition::Respond(resp(481, "Call/Transaction Does Not Exist")),
        // §12.2.2: a request within a dialog we do not have (these methods exist only inside one).
        Method::Bye | Method::Prack | Method::Update | Method::Info => {
            Disposition::Respond(resp(481, "Call/Transaction Does Not Exist"))
        }
        _ if has_to_tag => Disposition::Respond(resp(481, "Call/Transaction Does Not Exist")),
        Method::Invite => Disposition::NewCall,
        Method::Other(_) => Disposition::Respond(resp(501, "Not Implemented")),
        // Known methods we do not serve outside a dialog (REGISTER, SUBSCRIBE, MESSAGE, …): §8.2.1.
        _ => {
            let mut r = resp(405, "Method Not Allowed");
            r.headers.push(HeaderName::Allow, ALLOW);
            Disposition::Respond(r)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{parse_datagram, Message};
    use bytes::Bytes;

    fn req(method: &str, to_tag: bool) -> Request {
        let to = if to_tag { "<sip:b@h>;tag=x" } else { "<sip:b@h>" };
        let raw = format!(
            "{method} sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.1.10;branch=z9hG4bKa\r\nFrom: <sip:a@h>;tag=1\r\n\
             To: {to}\r\nCall-ID: c\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        );
        match parse_datagram(Bytes::from(raw)).expect("valid") {
            Message::Request(r) => r,
            Message::Response(_) => panic!("request expected"),
        }
    }

    fn status(d: Disposition) -> u16 {
        match d {
            Disposition::Respond(r) => r.status,
            other => panic!("expected a response, got {other:?}"),
        }
    }

    #[test]
    fn options_gets_200_with_capabilities() {
        let Disposition::Respond(r) = out_of_dialog(&req("OPTIONS", false), "sbc") else { panic!("respond") };
        assert_eq!(r.status, 200);
        assert_eq!(r.headers.get(&HeaderName::Allow), Some(ALLOW.as_bytes()));
        assert!(r.headers.get(&HeaderName::Accept).is_some());
        assert!(r.headers.get(&HeaderName::Supported).is_some());
        assert_eq!(r.headers.call_id().expect("copied"), &Bytes::from_static(b"c"));
    }

    #[test]
    fn unknown_methods_and_missing_dialogs() {
        assert_eq!(status(out_of_dialog(&req("FROBNICATE", false), "sbc")), 501);
        assert_eq!(status(out_of_dialog(&req("BYE", true), "sbc")), 481);
        assert_eq!(status(out_of_dialog(&req("CANCEL", false), "sbc")), 481);
        assert_eq!(status(out_of_dialog(&req("INVITE", true), "sbc")), 481);
        assert_eq!(status(out_of_dialog(&req("REGISTER", false), "sbc")), 405);
        assert_eq!(out_of_dialog(&req("ACK", true), "sbc"), Disposition::Absorb);
        assert_eq!(out_of_dialog(&req("INVITE", false), "sbc"), Disposition::NewCall);
    }
}
