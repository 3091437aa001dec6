//! rtpengine's NG control protocol, sans-IO: the messages, not the socket.
//!
//! A datagram (UDP) is `<cookie> <bencoded dictionary>`: the cookie is an opaque token chosen by the client,
//! unique per request, echoed in the reply (rtpengine also uses it to answer retransmissions from a cache, so
//! reusing one returns the old reply). A request dictionary has `command` (`ping`, `offer`, `answer`, `delete`,
//! `query`, ...), the call's `call-id`, `from-tag`, `to-tag`, an `sdp` and options (`flags`, `direction`,
//! `replace`, ...); the reply has `result` (`ok`, `pong`, `error`, `load limit`), `error-reason` with `error`, an
//! optional `warning`, and for offer and answer the rewritten `sdp`.
//!
//! This module builds requests ([`Request`]) and reads replies ([`Reply`]) for a client; issue 17's server side
//! (our relay answering NG) reuses the framing ([`encode`], [`decode`]) and [`crate::bencode`].

use crate::bencode::{DecodeError, Value};

/// Why a datagram is not a usable NG message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NgError {
    /// No space separates the cookie from the body.
    #[error("NG: no cookie (no space in the datagram)")]
    NoCookie,
    /// The body is not bencode.
    #[error("NG: {0}")]
    Bencode(#[from] DecodeError),
    /// The body is not a dictionary.
    #[error("NG: the body is not a dictionary")]
    NotADict,
    /// The reply has no `result`.
    #[error("NG: the reply has no result")]
    NoResult,
    /// The server refused the request: `result` is `error` (or `load limit`), with its reason.
    #[error("NG: rtpengine refused the request: {0}")]
    Refused(String),
}

/// Frames `body` with `cookie` into one datagram.
pub fn encode(cookie: &str, body: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(cookie.len() + 256);
    out.extend_from_slice(cookie.as_bytes());
    out.push(b' ');
    body.encode_into(&mut out);
    out
}

/// Splits a datagram into its cookie and its (dictionary) body.
pub fn decode(datagram: &[u8]) -> Result<(String, Value), NgError> {
    let space = datagram.iter().position(|&b| b == b' ').ok_or(NgError::NoCookie)?;
    let cookie = String::from_utf8_lossy(&datagram[..space]).into_owned();
    let body = Value::decode(&datagram[space + 1..])?;
    if !matches!(body, Value::Dict(_)) {
        return Err(NgError::NotADict);
    }
    Ok((cookie, body))
}

/// The commands this client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Liveness; the reply's result is `pong`.
    Ping,
    /// The caller's SDP (leg A); the reply's SDP goes to the callee.
    Offer,
    /// The callee's SDP (leg B); the reply's SDP goes to the caller.
    Answer,
    /// Ends the call (or the branch named by `to-tag`).
    Delete,
    /// The call's state and counters.
    Query,
    /// The Call-IDs of the calls held.
    List,
    /// The relay's counters.
    Statistics,
}

impl Command {
    /// The `command` value on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Command::Ping => "ping",
            Command::Offer => "offer",
            Command::Answer => "answer",
            Command::Delete => "delete",
            Command::Query => "query",
            Command::List => "list",
            Command::Statistics => "statistics",
        }
    }
}

/// One NG request. Empty options are left out of the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// What to do.
    pub command: Command,
    /// The SIP Call-ID the call is keyed on (not sent with ping).
    pub call_id: String,
    /// The caller's tag.
    pub from_tag: String,
    /// The callee's tag (answer; delete of one branch).
    pub to_tag: Option<String>,
    /// The SDP body (offer, answer).
    pub sdp: Option<String>,
    /// Flags such as `trust-address`, `symmetric`, `asymmetric`, `strict-source`.
    pub flags: Vec<String>,
    /// The logical interfaces (`--interface NAME/...`) of the message's sender and receiver: in an offer
    /// `[caller's, callee's]`, in an answer `[callee's, caller's]` (rtpengine 10.5 takes the pair in the
    /// direction of the message: an answer with the offer's order puts both sides on the callee's interface).
    pub direction: Option<[String; 2]>,
    /// SDP fields rtpengine replaces (`origin`, `session-connection`, ...).
    pub replace: Vec<String>,
}

impl Request {
    /// A request for `command` on the call `call_id` / `from_tag`, without options.
    pub fn new(command: Command, call_id: &str, from_tag: &str) -> Self {
        Self {
            command,
            call_id: call_id.to_owned(),
            from_tag: from_tag.to_owned(),
            to_tag: None,
            sdp: None,
            flags: Vec::new(),
            direction: None,
            replace: Vec::new(),
        }
    }

    /// A `ping`.
    pub fn ping() -> Self {
        Self::new(Command::Ping, "", "")
    }

    /// The request's dictionary.
    pub fn to_value(&self) -> Value {
        let mut pairs = vec![("command", Value::str(self.command.name()))];
        if !matches!(self.command, Command::Ping | Command::List | Command::Statistics) {
            pairs.push(("call-id", Value::str(&self.call_id)));
            pairs.push(("from-tag", Value::str(&self.from_tag)));
        }
        if let Some(t) = &self.to_tag {
            pairs.push(("to-tag", Value::str(t)));
        }
        if let Some(s) = &self.sdp {
            pairs.push(("sdp", Value::str(s)));
        }
        if !self.flags.is_empty() {
            pairs.push(("flags", Value::str_list(&self.flags)));
        }
        if let Some(d) = &self.direction {
            pairs.push(("direction", Value::str_list(d)));
        }
        if !self.replace.is_empty() {
            pairs.push(("replace", Value::str_list(&self.replace)));
        }
        Value::dict(pairs)
    }

    /// The datagram of this request with `cookie`.
    pub fn encode(&self, cookie: &str) -> Vec<u8> {
        encode(cookie, &self.to_value())
    }
}

/// A successful reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// `ok` or `pong`.
    pub result: String,
    /// The rewritten SDP (offer, answer).
    pub sdp: Option<String>,
    /// A warning the server attached.
    pub warning: Option<String>,
    /// The whole dictionary (delete and query carry statistics).
    pub body: Value,
}

impl Reply {
    /// Reads a reply body; a `result` other than `ok`/`pong` is [`NgError::Refused`] with the server's reason.
    pub fn from_value(body: Value) -> Result<Self, NgError> {
        if !matches!(body, Value::Dict(_)) {
            return Err(NgError::NotADict);
        }
        let result = body.get("result").and_then(Value::as_str).ok_or(NgError::NoResult)?.to_owned();
        if result != "ok" && result != "pong" {
            let reason = body.get("error-reason").and_then(Value::as_str).unwrap_or("no reason given");
            return Err(NgError::Refused(format!("{result}: {reason}")));
        }
        let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_owned);
        Ok(Self { result, sdp: text("sdp"), warning: text("warning"), body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offer_is_framed_with_its_cookie_and_sorted_keys() {
        let mut r = Request::new(Command::Offer, "c1", "ft");
        r.sdp = Some("v=0\r\n".into());
        r.flags = vec!["trust-address".into()];
        r.direction = Some(["a".into(), "b".into()]);
        let dgram = r.encode("42_1");
        assert_eq!(
            dgram,
            b"42_1 d7:call-id2:c17:command5:offer9:directionl1:a1:be5:flagsl13:trust-addresse8:from-tag2:ft3:sdp5:v=0\r\ne"
        );
        let (cookie, body) = decode(&dgram).unwrap();
        assert_eq!(cookie, "42_1");
        assert_eq!(body, r.to_value());
        assert_eq!(Request::ping().encode("x"), b"x d7:command4:pinge");
    }

    #[test]
    fn replies_ok_and_refused() {
        let (_, body) = decode(b"c d6:result2:ok3:sdp3:v=0e").unwrap();
        let reply = Reply::from_value(body).unwrap();
        assert_eq!(reply.sdp.as_deref(), Some("v=0"));
        let (_, body) = decode(b"c d6:result5:error12:error-reason12:Unknown calle").unwrap();
        assert_eq!(Reply::from_value(body), Err(NgError::Refused("error: Unknown call".into())));
        let (_, body) = decode(b"c d1:xi1ee").unwrap();
        assert_eq!(Reply::from_value(body), Err(NgError::NoResult));
    }

    #[test]
    fn malformed_datagrams_are_typed_errors() {
        assert_eq!(decode(b"nocookie"), Err(NgError::NoCookie));
        assert_eq!(decode(b"c li1ee"), Err(NgError::NotADict));
        assert!(matches!(decode(b"c d6:result"), Err(NgError::Bencode(DecodeError::UnexpectedEnd(_)))));
    }
}
