//! Cuts SIP messages out of a stream buffer (RFC 3261 §18.3) with work in proportion to the bytes received.
//!
//! `sbc_proto::msg::frame` scans the whole buffer on each call. A reader that calls it after every read does work
//! quadratic in the message size when a peer sends a large message in tiny pieces: a peer within every limit
//! (64 KiB of header lines, one small segment at a time, inside the message deadline) would cost far more CPU than
//! it sends. [`Framer`] remembers how far the search for the end of the head got, and reads the message's length
//! once, when its head is complete; after that, bytes of the body cost nothing until the message is whole.

use bytes::{Bytes, BytesMut};
use sbc_proto::msg::{message_extent, ParseError};

/// The framing state of one connection: what is known of the message being received.
#[derive(Debug, Clone, Default)]
pub struct Framer {
    /// Bytes at the front of the buffer known not to hold the end of the head.
    searched: usize,
    /// The length of the message being received, once its head is complete.
    extent: Option<usize>,
    /// Keep-alive pings (`\r\n\r\n` between messages) seen since [`Framer::take_pings`].
    pings: usize,
}

impl Framer {
    /// Cuts every whole message off the front of `buf`, dropping keep-alive CRLFs between messages. `buf` must
    /// only grow at its end between calls. An error (a message over `max` bytes, no usable Content-Length) means
    /// the stream cannot be resynchronised: close the connection.
    pub fn drain(&mut self, buf: &mut BytesMut, max: usize) -> Result<Vec<Bytes>, ParseError> {
        let mut out = Vec::new();
        loop {
            if let Some(total) = self.extent {
                if buf.len() < total {
                    return Ok(out);
                }
                out.push(buf.split_to(total).freeze());
                *self = Self { pings: self.pings, ..Self::default() };
                continue;
            }
            // `\r\n\r\n` is a keep-alive ping, a lone `\r\n` its pong (RFC 5626 §3.5.1).
            let crlf = buf.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
            if crlf > 0 {
                // A ping comes in one piece; pongs (a lone CRLF each) are never four bytes in one read.
                self.pings += crlf / 4;
                drop(buf.split_to(crlf));
                self.searched = 0;
                continue;
            }
            if buf.is_empty() {
                return Ok(out);
            }
            // Only the new bytes can end the head, with the two before them that may begin its empty line.
            let from = self.searched.saturating_sub(2);
            if !ends_head(&buf[from..]) && buf.len() <= max {
                self.searched = buf.len();
                return Ok(out);
            }
            match message_extent(buf, max)? {
                Some(total) => self.extent = Some(total),
                None => {
                    self.searched = buf.len();
                    return Ok(out);
                }
            }
        }
    }
}

impl Framer {
    /// The keep-alive pings seen since the last call: each is owed a pong (`\r\n`, RFC 5626 §4.4.1).
    pub fn take_pings(&mut self) -> usize {
        std::mem::take(&mut self.pings)
    }
}

/// Whether `b` holds an empty line after a line: `\n\n` or `\n\r\n` (the head's end as the parser finds it).
fn ends_head(b: &[u8]) -> bool {
    b.windows(2).any(|w| w == b"\n\n") || b.windows(3).any(|w| w == b"\n\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use sbc_proto::msg::{frame, Framed};

    const MSG: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nl: 3\r\n\r\nabc";

    /// Every message `frame` would cut from `bytes`, calling it on the whole buffer.
    fn reference(bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut buf = bytes.to_vec();
        let mut out = Vec::new();
        loop {
            match frame(&buf, 65535).expect("frames") {
                Framed::Incomplete => return out,
                Framed::KeepAlive(n) => drop(buf.drain(..n)),
                Framed::Message(n) => out.push(buf.drain(..n).collect()),
            }
        }
    }

    fn stream() -> Vec<u8> {
        let bare_lf = b"MESSAGE sip:a@b SIP/2.0\nContent-Length: 2\n\nhi";
        [b"\r\n\r\n".as_slice(), MSG, b"\r\n", MSG, bare_lf, MSG, &MSG[..20]].concat()
    }

    #[test]
    fn drains_whole_messages_and_keeps_the_partial_one() {
        let msg = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 3\r\n\r\nabc";
        let mut buf = BytesMut::new();
        buf.extend_from_slice(b"\r\n\r\n");
        buf.extend_from_slice(msg);
        buf.extend_from_slice(msg);
        buf.extend_from_slice(&msg[..10]);
        let got = Framer::default().drain(&mut buf, 1000).expect("framed");
        assert_eq!(got.len(), 2);
        assert_eq!(&got[0][..], &msg[..]);
        assert_eq!(&buf[..], &msg[..10]);
    }

    #[test]
    fn double_crlf_pings_are_counted_and_single_crlf_pongs_are_not() {
        let mut f = Framer::default();
        let mut buf = BytesMut::from(&b"\r\n\r\n"[..]);
        assert!(f.drain(&mut buf, 1000).expect("ok").is_empty());
        assert_eq!(f.take_pings(), 1);
        buf.extend_from_slice(b"\r\n");
        f.drain(&mut buf, 1000).expect("ok");
        buf.extend_from_slice(MSG);
        buf.extend_from_slice(b"\r\n\r\n");
        assert_eq!(f.drain(&mut buf, 1000).expect("ok").len(), 1);
        assert_eq!((f.take_pings(), f.take_pings()), (1, 0));
    }

    #[test]
    fn oversized_message_is_an_error() {
        let mut buf = BytesMut::from(&b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 5000\r\n\r\n"[..]);
        assert!(Framer::default().drain(&mut buf, 1000).is_err());
    }

    #[test]
    fn fed_one_byte_at_a_time_it_cuts_what_frame_cuts_from_the_whole() {
        let bytes = stream();
        let (mut f, mut buf, mut got) = (Framer::default(), BytesMut::new(), Vec::new());
        for b in &bytes {
            buf.extend_from_slice(std::slice::from_ref(b));
            got.extend(f.drain(&mut buf, 65535).expect("frames").into_iter().map(|m| m.to_vec()));
        }
        assert_eq!(got, reference(&bytes));
        assert_eq!(got.len(), 4);
        assert_eq!(&buf[..], &MSG[..20], "the partial message stays buffered");
    }

    #[test]
    fn fed_in_one_piece_it_cuts_every_message_at_once() {
        let bytes = stream();
        let mut buf = BytesMut::from(&bytes[..]);
        let got: Vec<Vec<u8>> =
            Framer::default().drain(&mut buf, 65535).expect("frames").into_iter().map(|m| m.to_vec()).collect();
        assert_eq!(got, reference(&bytes));
    }

    #[test]
    fn a_trickled_head_is_searched_once_and_the_body_not_at_all() {
        let mut f = Framer::default();
        let mut buf = BytesMut::new();
        let head_end = MSG.len() - 3;
        for (i, b) in MSG[..head_end - 1].iter().enumerate() {
            buf.extend_from_slice(std::slice::from_ref(b));
            assert!(f.drain(&mut buf, 65535).expect("ok").is_empty());
            assert_eq!(f.searched, i + 1, "each call searches only the new byte (and two before it)");
        }
        buf.extend_from_slice(&MSG[head_end - 1..head_end + 1]);
        assert!(f.drain(&mut buf, 65535).expect("ok").is_empty());
        assert_eq!(f.extent, Some(MSG.len()), "the length is known before the body is there");
        buf.extend_from_slice(&MSG[head_end + 1..]);
        assert_eq!(f.drain(&mut buf, 65535).expect("ok").len(), 1);
        assert!(buf.is_empty());
    }

    #[test]
    fn a_head_that_never_ends_is_an_error_one_byte_past_the_maximum() {
        let mut f = Framer::default();
        let mut buf = BytesMut::new();
        for _ in 0..100 {
            buf.extend_from_slice(b"X-Filler: 0123456789\r\n");
            if buf.len() > 1024 {
                assert!(f.drain(&mut buf, 1024).is_err());
                return;
            }
            assert!(f.drain(&mut buf, 1024).is_ok());
        }
        panic!("never refused");
    }
}
