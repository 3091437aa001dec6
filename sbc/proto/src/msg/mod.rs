//! SIP messages: a zero-copy parser and a serializer over `bytes` (RFC 3261 §7, §20, §25).
//!
//! [`parse_datagram`] and [`parse_stream`] (with [`frame`] to cut messages from a stream) validate the start line,
//! the framing, and the headers a B2BUA cannot work without (Via, From, To, Call-ID, CSeq, Max-Forwards, Contact,
//! Route, Record-Route, Content-Type); every other header stays opaque bytes. Header values are views into the
//! received buffer, copied only when a header was folded over several lines. Typed accessors on [`Headers`] parse a
//! value when asked. Malformed input gives a [`ParseError`] that says what and where, never a panic.
//!
//! Strict where leniency is an attack: a raw control character in a header value or the reason phrase, text that
//! is not UTF-8 there, and a non-empty body without Content-Type are errors, so that nothing the next parser
//! might read differently is ever passed on.

mod addr;
mod error;
mod header;
mod message;
mod method;
mod params;
mod parse;
pub mod peek;
pub(crate) mod scan;
mod uri;
mod values;
mod via;
mod write;

pub use addr::NameAddr;
pub use error::{Field, HeaderError, ParseError, ParseErrorKind};
pub use header::{HeaderName, Headers};
pub use message::{Message, Request, Response};
pub use method::Method;
pub use params::Params;
pub use parse::{frame, message_extent, parse_datagram, parse_stream, Framed};
pub use uri::{Scheme, SipUri, TelUri, Uri};
pub use values::{CSeq, Contacts, MediaType};
pub use via::{Via, MAGIC_COOKIE};
