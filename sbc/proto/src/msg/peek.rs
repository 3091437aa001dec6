//! A glance at a message before it is parsed: which of the driver's queues it goes to (DESIGN.md "The public
//! edge": under overload, responses and in-dialog requests keep priority over new requests).
//!
//! Read only as far as the start line and the To header; nothing is validated here (the parser does that later),
//! so a message that lies about itself only changes its place in the queue, and its source's rate limit still
//! counts it.

use memchr::memmem;

/// Where a message waits for the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    /// Responses, and requests within a transaction or dialog (ACK, CANCEL, BYE, PRACK, UPDATE, INFO, NOTIFY, or
    /// any request whose To carries a tag): the calls that are up, or being set up, depend on them.
    High,
    /// Requests that may start something new (an INVITE without To tag, OPTIONS, REGISTER, ...): the ones to
    /// shed first.
    Low,
}

/// Requests that exist only within a dialog or a transaction (RFC 3261 §9, §12; RFC 3262, 3311, 6086, 6665).
const IN_DIALOG: &[&[u8]] = &[b"ACK", b"CANCEL", b"BYE", b"PRACK", b"UPDATE", b"INFO", b"NOTIFY"];

/// Which queue `bytes` (one whole message) goes to.
pub fn urgency(bytes: &[u8]) -> Urgency {
    if bytes.starts_with(b"SIP/") {
        return Urgency::High;
    }
    let method = bytes.split(|&b| b == b' ').next().unwrap_or_default();
    if IN_DIALOG.contains(&method) {
        return Urgency::High;
    }
    if to_has_tag(bytes) {
        Urgency::High
    } else {
        Urgency::Low
    }
}

/// Whether the To header (`To:` or compact `t:`, any case) carries a tag parameter, within the header section.
fn to_has_tag(bytes: &[u8]) -> bool {
    let head = match memmem::find(bytes, b"\r\n\r\n") {
        Some(end) => &bytes[..end + 2],
        None => bytes,
    };
    for line in head.split(|&b| b == b'\n').skip(1) {
        let name_end = line.iter().position(|&b| b == b':').unwrap_or(line.len());
        let name = line[..name_end].trim_ascii();
        if name.eq_ignore_ascii_case(b"to") || name.eq_ignore_ascii_case(b"t") {
            let value = &line[(name_end + 1).min(line.len())..];
            return value.windows(4).any(|w| w.eq_ignore_ascii_case(b"tag="));
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, to: &str) -> String {
        format!(
            "{method} sip:x@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\n{to}\r\n\
             Call-ID: c\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        )
    }

    #[test]
    fn responses_and_in_dialog_requests_are_high_new_requests_low() {
        assert_eq!(urgency(b"SIP/2.0 200 OK\r\n\r\n"), Urgency::High);
        assert_eq!(urgency(req("INVITE", "To: <sip:x@h>").as_bytes()), Urgency::Low);
        assert_eq!(urgency(req("INVITE", "To: <sip:x@h>;tag=9").as_bytes()), Urgency::High, "re-INVITE");
        assert_eq!(urgency(req("INVITE", "t: <sip:x@h>;TAG=9").as_bytes()), Urgency::High, "compact form, any case");
        assert_eq!(urgency(req("OPTIONS", "To: <sip:x@h>").as_bytes()), Urgency::Low);
        assert_eq!(urgency(req("REGISTER", "To: <sip:x@h>").as_bytes()), Urgency::Low);
        for m in ["ACK", "CANCEL", "BYE", "PRACK"] {
            assert_eq!(urgency(req(m, "To: <sip:x@h>").as_bytes()), Urgency::High, "{m}");
        }
        // A tag in the body or in another header does not count.
        let body =
            req("INVITE", "To: <sip:x@h>").replace("Content-Length: 0\r\n\r\n", "Content-Length: 5\r\n\r\nt:tag=");
        assert_eq!(urgency(body.as_bytes()), Urgency::Low);
        assert_eq!(urgency(b""), Urgency::Low);
        assert_eq!(urgency(b"\x00\x01garbage"), Urgency::Low);
    }
}
