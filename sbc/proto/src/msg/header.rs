//! Header names (with compact forms) and the ordered header list of a message (RFC 3261 §7.3, §20).

use super::scan::Span;
use super::{addr, via};
use bytes::Bytes;
use std::fmt;

macro_rules! header_names {
    ($( $variant:ident => $canon:literal $(, $compact:literal)? ; list: $list:literal ;)*) => {
        /// A header name. Known names are matched case-insensitively and from their compact forms
        /// (RFC 3261 §7.3.3), and always written in their canonical long form; any other name is kept as received.
        #[derive(Debug, Clone)]
        pub enum HeaderName {
            $(
                #[doc = concat!("`", $canon, "`")]
                $variant,
            )*
            /// A header this parser does not know; its value stays opaque.
            Other(Bytes),
        }

        impl HeaderName {
            /// Maps a received header name (already checked to be a token) to a [`HeaderName`].
            pub fn from_bytes(name: Bytes) -> Self {
                Self::known(&name).unwrap_or(Self::Other(name))
            }

            /// The known header called `name` (long or compact form, any case), if any.
            pub fn known(name: &[u8]) -> Option<Self> {
                if name.len() == 1 {
                    let c = name[0].to_ascii_lowercase();
                    $($( if c == $compact { return Some(Self::$variant); } )?)*
                    return None;
                }
                // The names of each length, so a lookup compares against two or three candidates, not sixty.
                static BY_LEN: std::sync::LazyLock<Vec<Vec<(&'static [u8], HeaderName)>>> =
                    std::sync::LazyLock::new(|| {
                        let mut t: Vec<Vec<(&'static [u8], HeaderName)>> = Vec::new();
                        $(
                            if t.len() <= $canon.len() {
                                t.resize($canon.len() + 1, Vec::new());
                            }
                            t[$canon.len()].push(($canon.as_bytes(), HeaderName::$variant));
                        )*
                        t
                    });
                BY_LEN
                    .get(name.len())?
                    .iter()
                    .find(|(canon, _)| token_eq_ignore_case(name, canon))
                    .map(|(_, h)| h.clone())
            }

            /// The canonical (long form) name, or the received name of an unknown header.
            pub fn as_bytes(&self) -> &[u8] {
                match self {
                    $( Self::$variant => $canon.as_bytes(), )*
                    Self::Other(n) => n,
                }
            }

            /// The canonical name of a known header; `"extension"` for others.
            pub fn canonical(&self) -> &'static str {
                match self {
                    $( Self::$variant => $canon, )*
                    Self::Other(_) => "extension",
                }
            }

            /// Whether values of this header are comma-separated lists (RFC 3261 §7.3.1). Headers whose values
            /// contain commas for other reasons (Date, WWW-Authenticate, Authorization) and unknown headers are
            /// not. [`Headers::list`] splits any list header on demand.
            pub fn is_list(&self) -> bool {
                match self {
                    $( Self::$variant => $list, )*
                    Self::Other(_) => false,
                }
            }
        }
    };
}

header_names! {
    // The headers of nearly every message come first: `known` tries them in this order.
    Via => "Via", b'v'; list: true;
    From => "From", b'f'; list: false;
    To => "To", b't'; list: false;
    CallId => "Call-ID", b'i'; list: false;
    CSeq => "CSeq"; list: false;
    Contact => "Contact", b'm'; list: true;
    MaxForwards => "Max-Forwards"; list: false;
    ContentType => "Content-Type", b'c'; list: false;
    ContentLength => "Content-Length", b'l'; list: false;
    Route => "Route"; list: true;
    RecordRoute => "Record-Route"; list: true;
    Allow => "Allow"; list: true;
    Supported => "Supported", b'k'; list: true;
    UserAgent => "User-Agent"; list: false;
    Server => "Server"; list: false;
    PAssertedIdentity => "P-Asserted-Identity"; list: true;
    SessionExpires => "Session-Expires", b'x'; list: false;
    MinSe => "Min-SE"; list: false;
    Require => "Require"; list: true;
    Privacy => "Privacy"; list: false;
    Expires => "Expires"; list: false;
    Accept => "Accept"; list: true;
    AcceptContact => "Accept-Contact", b'a'; list: true;
    AcceptEncoding => "Accept-Encoding"; list: true;
    AcceptLanguage => "Accept-Language"; list: true;
    AlertInfo => "Alert-Info"; list: true;
    AllowEvents => "Allow-Events", b'u'; list: true;
    AuthenticationInfo => "Authentication-Info"; list: false;
    Authorization => "Authorization"; list: false;
    CallInfo => "Call-Info"; list: true;
    ContentDisposition => "Content-Disposition"; list: false;
    ContentEncoding => "Content-Encoding", b'e'; list: true;
    ContentLanguage => "Content-Language"; list: true;
    Date => "Date"; list: false;
    ErrorInfo => "Error-Info"; list: true;
    Event => "Event", b'o'; list: false;
    Identity => "Identity", b'y'; list: false;
    InReplyTo => "In-Reply-To"; list: true;
    MinExpires => "Min-Expires"; list: false;
    MimeVersion => "MIME-Version"; list: false;
    Organization => "Organization"; list: false;
    PPreferredIdentity => "P-Preferred-Identity"; list: true;
    Priority => "Priority"; list: false;
    ProxyAuthenticate => "Proxy-Authenticate"; list: false;
    ProxyAuthorization => "Proxy-Authorization"; list: false;
    ProxyRequire => "Proxy-Require"; list: true;
    RAck => "RAck"; list: false;
    Reason => "Reason"; list: true;
    ReferTo => "Refer-To", b'r'; list: false;
    ReferredBy => "Referred-By", b'b'; list: false;
    RejectContact => "Reject-Contact", b'j'; list: true;
    ReplyTo => "Reply-To"; list: false;
    RetryAfter => "Retry-After"; list: false;
    RSeq => "RSeq"; list: false;
    Subject => "Subject", b's'; list: false;
    SubscriptionState => "Subscription-State"; list: false;
    Timestamp => "Timestamp"; list: false;
    Unsupported => "Unsupported"; list: true;
    Warning => "Warning"; list: true;
    WwwAuthenticate => "WWW-Authenticate"; list: false;
}

/// Case-insensitive equality of a token (`name`, already checked to be one) with a known header name, eight bytes
/// at a time. Setting bit 5 folds case exactly here: known names hold only letters and `-`, and the only other
/// byte that folds onto one of those is CR (onto `-`), which is no token character.
fn token_eq_ignore_case(name: &[u8], canon: &[u8]) -> bool {
    const FOLD: u64 = 0x2020_2020_2020_2020;
    if name.len() != canon.len() {
        return false;
    }
    let (mut a, mut b) = (name, canon);
    while a.len() >= 8 {
        let (x, y) = (
            u64::from_le_bytes(a[..8].try_into().expect("8 bytes")),
            u64::from_le_bytes(b[..8].try_into().expect("8 bytes")),
        );
        if x | FOLD != y | FOLD {
            return false;
        }
        (a, b) = (&a[8..], &b[8..]);
    }
    a.iter().zip(b).all(|(x, y)| x | 0x20 == y | 0x20)
}

impl HeaderName {
    /// Whether the parser splits this list header into one entry per element as it parses. These are the headers
    /// whose elements the SBC reads or rewrites one by one; the other list headers (Allow, Supported, Accept, …)
    /// are kept as received and split by [`Headers::list`] when asked, which keeps parsing cheap.
    pub fn split_on_parse(&self) -> bool {
        matches!(
            self,
            Self::Via
                | Self::Contact
                | Self::Route
                | Self::RecordRoute
                | Self::PAssertedIdentity
                | Self::PPreferredIdentity
        )
    }

    /// Whether this header's grammar (RFC 3261 §25.1 and its extensions') has quoted strings, whose quoted-pairs
    /// may escape a control character. Free text (Subject, Organization, Server, User-Agent), numbers and token
    /// lists have none, and neither has an unknown header: its `header-value` is TEXT-UTF8 and LWS only.
    pub(crate) fn has_quoted_strings(&self) -> bool {
        !matches!(
            self,
            Self::CallId
                | Self::CSeq
                | Self::MaxForwards
                | Self::ContentLength
                | Self::Allow
                | Self::Supported
                | Self::Require
                | Self::ProxyRequire
                | Self::Unsupported
                | Self::UserAgent
                | Self::Server
                | Self::Subject
                | Self::Organization
                | Self::Expires
                | Self::MinExpires
                | Self::Date
                | Self::Timestamp
                | Self::RSeq
                | Self::RAck
                | Self::MimeVersion
                | Self::Priority
                | Self::InReplyTo
                | Self::ContentEncoding
                | Self::ContentLanguage
                | Self::AllowEvents
                | Self::Privacy
                | Self::Other(_)
        )
    }
}

impl PartialEq for HeaderName {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Other(a), Self::Other(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }
}

impl Eq for HeaderName {}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}

/// Where a header value lives: in the received message, or in bytes of its own (built in code, or unfolded).
#[derive(Debug, Clone)]
enum Value {
    /// A position in [`Headers::buf`]: no reference count per header, which was a fifth of the parse time. The
    /// second field is 1 + the index in [`Headers::lexed`] of what the parser learnt about the value, or 0.
    In(Span, u8),
    Own(Bytes),
}

/// The positions of the parts of a value, found while the parser validated it. The typed accessors start from
/// them instead of lexing the value a second time (which cost a quarter of parse + accessors).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Lexed {
    Addr(addr::Parts),
    Via(via::Parts),
}

#[derive(Debug, Clone)]
struct Entry {
    name: HeaderName,
    value: Value,
}

/// The headers of a message in the order received (RFC 3261 §7.3.1: order matters among same-named headers and
/// is kept across all of them). Values are unfolded and trimmed of surrounding white space; a list header split
/// at parse time ([`HeaderName::split_on_parse`]) has one entry per element. Content-Length is not kept here: it
/// is framing, and the serializer writes it from the body.
///
/// Parsed values stay where they were received: `get` lends them as `&[u8]`; `get_bytes` hands out a `Bytes`
/// view (one reference count) for values that must outlive the message.
#[derive(Debug, Clone, Default)]
pub struct Headers {
    buf: Bytes,
    entries: Vec<Entry>,
    /// Parts of received values, referred to from [`Value::In`]; entries move with their index, so editing the
    /// list never invalidates it.
    lexed: Vec<Lexed>,
}

impl PartialEq for Headers {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().zip(other.iter()).all(|(a, b)| a == b)
    }
}

impl Eq for Headers {}

impl Headers {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty list whose values will be positions in `buf` (the received message).
    pub(crate) fn over(buf: Bytes, capacity: usize) -> Self {
        Self { buf, entries: Vec::with_capacity(capacity), lexed: Vec::with_capacity(8) }
    }

    /// Appends a value received in the message, at `span` of the buffer, with the parts the parser found in it.
    #[inline]
    pub(crate) fn push_span(&mut self, name: HeaderName, span: Span, lexed: Option<Lexed>) {
        let tag = match lexed {
            Some(l) if self.lexed.len() < usize::from(u8::MAX) => {
                self.lexed.push(l);
                self.lexed.len() as u8
            }
            _ => 0,
        };
        self.entries.push(Entry { name, value: Value::In(span, tag) });
    }

    fn lexed_of(&self, v: &Value) -> Option<Lexed> {
        match v {
            Value::In(_, tag) if *tag > 0 => self.lexed.get(usize::from(*tag) - 1).copied(),
            _ => None,
        }
    }

    /// The first value of `name` as `Bytes`, with the parts the parser found in it, if it did.
    pub(crate) fn get_lexed(&self, name: &HeaderName) -> Option<(Bytes, Option<Lexed>)> {
        self.entries.iter().find(|h| &h.name == name).map(|h| (self.value_bytes(&h.value), self.lexed_of(&h.value)))
    }

    /// [`Self::get_lexed`] for every value of `name`.
    pub(crate) fn get_all_lexed<'a>(
        &'a self,
        name: &'a HeaderName,
    ) -> impl Iterator<Item = (Bytes, Option<Lexed>)> + 'a {
        self.entries
            .iter()
            .filter(move |h| &h.name == name)
            .map(|h| (self.value_bytes(&h.value), self.lexed_of(&h.value)))
    }

    fn value<'a>(&'a self, v: &'a Value) -> &'a [u8] {
        match v {
            Value::In(s, _) => &self.buf[s.range()],
            Value::Own(b) => b,
        }
    }

    fn value_bytes(&self, v: &Value) -> Bytes {
        match v {
            Value::In(s, _) => self.buf.slice(s.range()),
            Value::Own(b) => b.clone(),
        }
    }

    /// Appends a header. No validation: values built in code are trusted to be well formed.
    pub fn push(&mut self, name: HeaderName, value: impl Into<Bytes>) {
        self.entries.push(Entry { name, value: Value::Own(value.into()) });
    }

    /// Inserts a header before all others (used for Via, which is stacked on top).
    pub fn push_front(&mut self, name: HeaderName, value: impl Into<Bytes>) {
        self.entries.insert(0, Entry { name, value: Value::Own(value.into()) });
    }

    /// The headers for which `keep` holds, in order, sharing this list's buffer.
    pub(crate) fn subset(&self, keep: impl Fn(&HeaderName) -> bool) -> Headers {
        Headers {
            buf: self.buf.clone(),
            entries: self.entries.iter().filter(|e| keep(&e.name)).cloned().collect(),
            lexed: self.lexed.clone(),
        }
    }

    /// The first value of `name`.
    pub fn get(&self, name: &HeaderName) -> Option<&[u8]> {
        self.entries.iter().find(|h| &h.name == name).map(|h| self.value(&h.value))
    }

    /// The first value of `name`, as `Bytes` that can outlive the message.
    pub fn get_bytes(&self, name: &HeaderName) -> Option<Bytes> {
        self.entries.iter().find(|h| &h.name == name).map(|h| self.value_bytes(&h.value))
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.entries.iter().filter(move |h| &h.name == name).map(|h| self.value(&h.value))
    }

    /// Every value of `name`, in order, as `Bytes`.
    pub fn get_all_bytes<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = Bytes> + 'a {
        self.entries.iter().filter(move |h| &h.name == name).map(|h| self.value_bytes(&h.value))
    }

    /// Every element of list header `name` across all its values, in order, split at commas outside quotes and
    /// angle brackets, empty elements skipped (`Allow: INVITE, ACK` and `Allow: INVITE` + `Allow: ACK` read alike).
    pub fn list<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.get_all(name).flat_map(|v| {
            crate::msg::scan::ListElements::new(v, 0..v.len()).filter(|r| !r.is_empty()).map(move |r| &v[r])
        })
    }

    /// How many values of `name` there are.
    pub fn count(&self, name: &HeaderName) -> usize {
        self.entries.iter().filter(|h| &h.name == name).count()
    }

    /// Removes every value of `name`; returns how many were removed.
    pub fn remove(&mut self, name: &HeaderName) -> usize {
        let before = self.entries.len();
        self.entries.retain(|h| &h.name != name);
        before - self.entries.len()
    }

    /// Replaces every value of `name` with one value, at the position of the first one (or at the end).
    pub fn set(&mut self, name: HeaderName, value: impl Into<Bytes>) {
        let value = Value::Own(value.into());
        match self.entries.iter().position(|h| h.name == name) {
            Some(i) => {
                self.entries[i].value = value;
                let mut seen = 0;
                self.entries.retain(|h| {
                    if h.name == name {
                        seen += 1;
                        seen == 1
                    } else {
                        true
                    }
                });
            }
            None => self.entries.push(Entry { name, value }),
        }
    }

    /// Removes the first value of `name` and returns it (used to pop the top Via of a response).
    pub fn remove_first(&mut self, name: &HeaderName) -> Option<Bytes> {
        let i = self.entries.iter().position(|h| &h.name == name)?;
        let e = self.entries.remove(i);
        Some(self.value_bytes(&e.value))
    }

    /// All headers in order, as (name, value).
    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &[u8])> + '_ {
        self.entries.iter().map(|e| (&e.name, self.value(&e.value)))
    }

    /// Bytes the headers take when written, give or take: for a parsed message the size of what was received
    /// (one pass less over the headers when serializing); for a built one, counted.
    pub(crate) fn size_hint(&self) -> usize {
        if self.buf.is_empty() {
            self.iter().map(|(n, v)| n.as_bytes().len() + v.len() + 4).sum()
        } else {
            // Compact names grow when written in long form; edits add what they add.
            self.buf.len()
                + 128
                + self.entries.iter().map(|e| if let Value::Own(b) = &e.value { b.len() } else { 0 }).sum::<usize>()
        }
    }

    /// The received message these headers were parsed from (empty for a built list): what a parsed message's
    /// values point into.
    pub fn source(&self) -> &Bytes {
        &self.buf
    }

    /// Gives back the room the list keeps for more headers: the parser makes room for 32 (2 KiB), and a message
    /// a call keeps for its whole life should not keep that room too.
    pub fn shrink_to_fit(&mut self) {
        self.entries.shrink_to_fit();
        self.lexed.shrink_to_fit();
    }

    /// Number of header entries (list elements split at parse time count separately).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_case_insensitive_names() {
        for (raw, want) in [
            (&b"v"[..], HeaderName::Via),
            (b"V", HeaderName::Via),
            (b"vIa", HeaderName::Via),
            (b"i", HeaderName::CallId),
            (b"call-id", HeaderName::CallId),
            (b"l", HeaderName::ContentLength),
            (b"m", HeaderName::Contact),
            (b"k", HeaderName::Supported),
            (b"cseq", HeaderName::CSeq),
        ] {
            assert_eq!(HeaderName::from_bytes(Bytes::copy_from_slice(raw)), want, "{raw:?}");
        }
        let x = HeaderName::from_bytes(Bytes::from_static(b"X-Custom"));
        assert_eq!(x, HeaderName::Other(Bytes::from_static(b"x-custom")));
        assert_eq!(x.as_bytes(), b"X-Custom");
    }

    #[test]
    fn every_known_name_is_found_in_any_case() {
        for h in [HeaderName::PPreferredIdentity, HeaderName::AuthenticationInfo, HeaderName::Via, HeaderName::RSeq] {
            let lower = h.as_bytes().to_ascii_lowercase();
            assert_eq!(HeaderName::known(&lower), Some(h.clone()), "{h}");
        }
        assert_eq!(HeaderName::known(b"X-Very-Long-Name-Beyond-Any-Known-One"), None);
    }

    #[test]
    fn list_splits_on_demand() {
        let mut h = Headers::new();
        h.push(HeaderName::Allow, "INVITE, ACK,BYE");
        h.push(HeaderName::Allow, "\"odd, one\", OPTIONS");
        let all: Vec<_> = h.list(&HeaderName::Allow).collect();
        assert_eq!(all, ["INVITE", "ACK", "BYE", "\"odd, one\"", "OPTIONS"].map(str::as_bytes));
    }

    #[test]
    fn set_replaces_all_values_in_place() {
        let mut h = Headers::new();
        h.push(HeaderName::Via, "a");
        h.push(HeaderName::To, "t");
        h.push(HeaderName::Via, "b");
        h.set(HeaderName::Via, "c");
        let values: Vec<_> = h.iter().map(|(_, v)| v).collect();
        assert_eq!(values, vec![&b"c"[..], &b"t"[..]]);
    }
}
