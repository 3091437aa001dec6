//! A cursor over a header value or URI, with the lexical rules of RFC 3261 §25.1.
//!
//! Header values reach the cursor already unfolded (folding replaced by a single SP), so linear white space here is
//! only SP and HTAB. Every slice handed out is a `Bytes` view of the input: no copies.

#[cfg(test)]
use bytes::Bytes;
use std::ops::Range;

/// Classes of bytes, from RFC 3261 §25.1, looked up in a table (these run once per byte of every message).
pub(crate) mod class {
    const TOKEN: u8 = 1;
    const WORD: u8 = 2;
    const USER: u8 = 8;
    const PASSWORD: u8 = 16;
    const URI_HEADER: u8 = 32;
    const URI_PARAM: u8 = 64;
    const HOST: u8 = 128;

    const fn classify(b: u8) -> u8 {
        let alnum = b.is_ascii_alphanumeric();
        let token = alnum || matches!(b, b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~');
        let word = token
            || matches!(b, b'(' | b')' | b'<' | b'>' | b':' | b'\\' | b'"' | b'/' | b'[' | b']' | b'?' | b'{' | b'}');
        let unreserved = alnum || matches!(b, b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')');
        // RFC 3261 §25.1: user, password, hnv-unreserved and paramchar, each with `escaped` (checked apart).
        let user = unreserved || matches!(b, b'%' | b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/');
        let password = unreserved || matches!(b, b'%' | b'&' | b'=' | b'+' | b'$' | b',');
        let header = unreserved || matches!(b, b'%' | b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$' | b'=' | b'&');
        let param = unreserved || matches!(b, b'%' | b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$' | b'=');
        let host = alnum || matches!(b, b'-' | b'.');
        let mut c = 0;
        if token {
            c |= TOKEN;
        }
        if word {
            c |= WORD;
        }
        if user {
            c |= USER;
        }
        if password {
            c |= PASSWORD;
        }
        if header {
            c |= URI_HEADER;
        }
        if param {
            c |= URI_PARAM;
        }
        if host {
            c |= HOST;
        }
        c
    }

    const CLASSES: [u8; 256] = {
        let mut t = [0u8; 256];
        let mut i = 0;
        while i < 256 {
            t[i] = classify(i as u8);
            i += 1;
        }
        t
    };

    /// A URI user part character (with `%`).
    #[inline]
    pub const fn is_user(b: u8) -> bool {
        CLASSES[b as usize] & USER != 0
    }

    /// A URI password character (with `%`).
    #[inline]
    pub const fn is_password(b: u8) -> bool {
        CLASSES[b as usize] & PASSWORD != 0
    }

    /// A URI `?headers` character (with `%`, `=` and `&`).
    #[inline]
    pub const fn is_uri_header(b: u8) -> bool {
        CLASSES[b as usize] & URI_HEADER != 0
    }

    /// A URI parameter character (paramchar with `%`, plus `=`).
    #[inline]
    pub const fn is_uri_param(b: u8) -> bool {
        CLASSES[b as usize] & URI_PARAM != 0
    }

    /// A host name or IPv4 address character.
    #[inline]
    pub const fn is_host(b: u8) -> bool {
        CLASSES[b as usize] & HOST != 0
    }

    /// `token` characters: alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~".
    #[inline]
    pub const fn is_token(b: u8) -> bool {
        CLASSES[b as usize] & TOKEN != 0
    }

    /// `word` characters (Call-ID): token plus ( ) < > : \ " / [ ] ? { }.
    #[inline]
    pub const fn is_word(b: u8) -> bool {
        CLASSES[b as usize] & WORD != 0
    }

    #[inline]
    pub const fn is_ws(b: u8) -> bool {
        b == b' ' || b == b'\t'
    }
}

/// A cursor over one header value (or URI). It hands out byte ranges, not `Bytes`: validating a message must not
/// pay a reference-count round trip per token (that was a third of the parse time); callers that keep a value cut
/// it from the message's `Bytes` with the range.
pub(crate) struct Cursor<'a> {
    src: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(src: &'a [u8]) -> Self {
        Self { src, pos: 0 }
    }

    /// The whole input, for reading back a range.
    pub fn whole(&self) -> &'a [u8] {
        self.src
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn set_pos(&mut self, pos: usize) {
        self.pos = pos;
    }

    pub fn at_end(&self) -> bool {
        self.pos >= self.src.len()
    }

    pub fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    pub fn rest(&self) -> &'a [u8] {
        &self.src[self.pos.min(self.src.len())..]
    }

    /// Consumes `b` if it is next.
    pub fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Skips SP and HTAB; returns whether any was skipped.
    pub fn skip_ws(&mut self) -> bool {
        let start = self.pos;
        while self.peek().is_some_and(class::is_ws) {
            self.pos += 1;
        }
        self.pos > start
    }

    /// Consumes `sep` surrounded by optional white space (RFC 3261 SEMI, EQUAL, SLASH, COLON, COMMA).
    pub fn eat_sep(&mut self, sep: u8) -> bool {
        let save = self.pos;
        self.skip_ws();
        if self.eat(sep) {
            self.skip_ws();
            true
        } else {
            self.pos = save;
            false
        }
    }

    /// Consumes bytes while `f` holds and returns their range.
    pub fn take_while(&mut self, f: impl Fn(u8) -> bool) -> Range<usize> {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        start..self.pos
    }

    /// A non-empty token.
    pub fn token(&mut self) -> Option<Range<usize>> {
        let t = self.take_while(class::is_token);
        (!t.is_empty()).then_some(t)
    }

    /// A quoted-string (RFC 3261 §25.1), its range including the quotes, escapes untouched. `None` if the next byte
    /// is not `"` or the string is unterminated.
    pub fn quoted_string(&mut self) -> Option<Range<usize>> {
        let start = self.pos;
        if !self.eat(b'"') {
            return None;
        }
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'"' => return Some(start..self.pos),
                // quoted-pair: any byte but CR and LF may follow the backslash.
                b'\\' => {
                    if matches!(self.peek(), None | Some(b'\r') | Some(b'\n')) {
                        break;
                    }
                    self.pos += 1;
                }
                _ => {}
            }
        }
        self.pos = start;
        None
    }
}

/// What is wrong with the text of a header value or a reason phrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TextFault {
    /// A raw control character: 0x00-0x1F but HTAB, or 0x7F.
    Control(u8),
    /// Octets that are not UTF-8 (RFC 3629).
    NotUtf8,
}

/// Checks the text of a header value or reason phrase against RFC 3261 §25.1: no control character but HTAB
/// (TEXT-UTF8char, qdtext, ctext and LWS hold none), except as a quoted-pair inside a closed quoted string when
/// `quoted_pairs` (the header's grammar has quoted strings: `"BEL:\<0x07>"` is legal, RFC 4475 §3.1.1.2), and
/// octets above 0x7F only as UTF-8. The grammar's UTF8-NONASCII still has RFC 2279's five- and six-octet forms
/// and lets a header-value hold a lone UTF8-CONT; neither is UTF-8 since RFC 3629, and both are refused.
///
/// Every other production of §25.1 is ASCII, so this is one rule for every value: UTF-8 where text may be, and
/// nowhere else any octet above 0x7F, which the grammar has no room for either.
#[inline]
pub(crate) fn check_text(v: &[u8], quoted_pairs: bool) -> Result<(), TextFault> {
    // Runs over every header value: a fold without early exit, which the compiler vectorises. Nearly every value
    // is printable ASCII and ends here.
    let unusual = v.iter().fold(false, |acc, &b| acc | (b.wrapping_sub(0x20) > 0x5e));
    if !unusual {
        return Ok(());
    }
    text_fault(v, quoted_pairs)
}

#[cold]
fn text_fault(v: &[u8], quoted_pairs: bool) -> Result<(), TextFault> {
    let is_control = |b: u8| (b < 0x20 && b != b'\t') || b == 0x7f;
    let mut i = 0;
    while i < v.len() {
        let b = v[i];
        if b == b'"' && quoted_pairs {
            let mut cur = Cursor::new(v);
            cur.set_pos(i);
            if let Some(q) = cur.quoted_string() {
                let mut j = q.start + 1;
                while j < q.end - 1 {
                    match v[j] {
                        // quoted-pair: `\` and any of %x00-09 / %x0B-0C / %x0E-7F (CR and LF end the string).
                        b'\\' => j += 1,
                        c if is_control(c) => return Err(TextFault::Control(c)),
                        _ => {}
                    }
                    j += 1;
                }
                i = q.end;
                continue;
            }
        }
        if is_control(b) {
            return Err(TextFault::Control(b));
        }
        i += 1;
    }
    std::str::from_utf8(v).map(|_| ()).map_err(|_| TextFault::NotUtf8)
}

/// `[start, end)` of `s` without leading and trailing SP/HTAB.
pub(crate) fn trim_range(s: &[u8], mut start: usize, mut end: usize) -> Range<usize> {
    while start < end && class::is_ws(s[start]) {
        start += 1;
    }
    while end > start && class::is_ws(s[end - 1]) {
        end -= 1;
    }
    start..end
}

/// The elements of a comma-separated header value in `s[range]`, respecting quoted strings and `<...>`
/// (RFC 3261 §7.3.1), each trimmed of white space. Empty elements are yielded so the caller can reject them.
pub(crate) struct ListElements<'a> {
    s: &'a [u8],
    pos: usize,
    end: usize,
    done: bool,
}

impl<'a> ListElements<'a> {
    pub fn new(s: &'a [u8], range: Range<usize>) -> Self {
        Self { s, pos: range.start, end: range.end, done: false }
    }
}

impl Iterator for ListElements<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        if self.done {
            return None;
        }
        let start = self.pos;
        let (mut in_quote, mut in_angle) = (false, false);
        let mut i = start;
        while i < self.end {
            match self.s[i] {
                b'\\' if in_quote => i += 1,
                b'"' if !in_angle => in_quote = !in_quote,
                b'<' if !in_quote => in_angle = true,
                b'>' if !in_quote => in_angle = false,
                b',' if !in_quote && !in_angle => {
                    self.pos = i + 1;
                    return Some(trim_range(self.s, start, i));
                }
                _ => {}
            }
            i += 1;
        }
        self.done = true;
        Some(trim_range(self.s, start, self.end))
    }
}

/// Splits a comma-separated header value into its elements (see [`ListElements`]).
#[cfg(test)]
pub(crate) fn split_commas(value: &Bytes) -> Vec<Bytes> {
    ListElements::new(value, 0..value.len()).map(|r| value.slice(r)).collect()
}

/// Whether `value` holds a comma outside quotes and angle brackets, i.e. whether splitting would change it.
pub(crate) fn has_list_comma(value: &[u8]) -> bool {
    // Whole values (a Via is ~100 bytes) are long enough for memchr's vector loop to pay off.
    if memchr::memchr(b',', value).is_none() {
        return false;
    }
    let (mut in_quote, mut in_angle) = (false, false);
    let mut i = 0;
    while i < value.len() {
        match value[i] {
            b'\\' if in_quote => i += 1,
            b'"' if !in_angle => in_quote = !in_quote,
            b'<' if !in_quote => in_angle = true,
            b'>' if !in_quote => in_angle = false,
            b',' if !in_quote && !in_angle => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

/// A compact `start..end` into a message or value (messages are far below 4 GiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    start: u32,
    end: u32,
}

impl Span {
    pub fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

impl From<Range<usize>> for Span {
    fn from(r: Range<usize>) -> Self {
        Self { start: r.start as u32, end: r.end as u32 }
    }
}

/// Position of `b` in `s`. Header elements are tens of bytes long, where a plain loop beats `memchr`'s set-up
/// (which showed as 13% of parse time).
#[inline]
pub(crate) fn find(b: u8, s: &[u8]) -> Option<usize> {
    s.iter().position(|&x| x == b)
}

/// Parses an unsigned decimal of at most `max` value; `None` on anything else (sign, empty, overflow).
pub(crate) fn parse_u64(digits: &[u8], max: u64) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    (n <= max).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_respects_quotes_and_angles() {
        let v = Bytes::from_static(b"\"a, b\" <sip:x@y;p=1,2>;q=1 , <sip:z> ,");
        let parts = split_commas(&v);
        assert_eq!(parts.len(), 3);
        assert_eq!(&parts[0][..], b"\"a, b\" <sip:x@y;p=1,2>;q=1");
        assert_eq!(&parts[1][..], b"<sip:z>");
        assert_eq!(&parts[2][..], b"");
    }

    #[test]
    fn quoted_string_with_escapes() {
        let v = b"\"J Rosenberg \\\\\\\"\" rest";
        let mut c = Cursor::new(v);
        let q = c.quoted_string().expect("terminated");
        assert_eq!(&v[q], b"\"J Rosenberg \\\\\\\"\"");
        assert_eq!(c.rest(), b" rest");
    }

    #[test]
    fn unterminated_quote_is_none() {
        assert!(Cursor::new(b"\"Mr. J. User <sip:j@x>").quoted_string().is_none());
    }

    #[test]
    fn text_without_controls_and_in_utf8_passes() {
        for ok in [&b""[..], b"plain ASCII value;p=1", b"tab\there", "Bj\u{f6}rn \u{1f4de}".as_bytes(), b"\"a\\\"b\""] {
            assert_eq!(check_text(ok, true), Ok(()), "{ok:?}");
            assert_eq!(check_text(ok, false), Ok(()), "{ok:?}");
        }
    }

    #[test]
    fn raw_controls_are_faults_wherever_they_are() {
        for (v, byte) in [
            (&b"a\0b"[..], 0u8),
            (b"a\rb", b'\r'),
            (b"\x1b[31m", 0x1b),
            (b"del\x7f", 0x7f),
            (b"\"in \x01 quotes\"", 0x01),
            (b"\"unterminated \\\0", 0),
            (b"outside \\\0 quotes", 0),
        ] {
            assert_eq!(check_text(v, true), Err(TextFault::Control(byte)), "{v:?}");
        }
    }

    #[test]
    fn escaped_controls_pass_only_in_closed_quoted_strings_of_headers_that_have_them() {
        // RFC 4475 §3.1.1.2: `"BEL:\<07> NUL:\<00> DEL:\<7F>"` is a legal display name.
        let v = b"\"BEL:\\\x07 NUL:\\\0 DEL:\\\x7f\" <sip:x@y>";
        assert_eq!(check_text(v, true), Ok(()));
        assert_eq!(check_text(v, false), Err(TextFault::Control(0x07)));
        assert_eq!(check_text(b"\"\\\r\"", true), Err(TextFault::Control(b'\r')), "CR is no quoted-pair");
    }

    #[test]
    fn octets_above_0x7f_must_be_utf8() {
        for bad in
            [&b"\xff"[..], b"caf\xe9", b"\xc3", b"lone \x80 continuation", b"\xf8\x88\x80\x80\x80", b"\xed\xa0\x80"]
        {
            assert_eq!(check_text(bad, true), Err(TextFault::NotUtf8), "{bad:?}");
        }
        assert_eq!(check_text(b"\"\xe9\"", true), Err(TextFault::NotUtf8), "in quotes too");
    }

    #[test]
    fn numbers_reject_sign_and_overflow() {
        assert_eq!(parse_u64(b"0009", u32::MAX.into()), Some(9));
        assert_eq!(parse_u64(b"-999", u64::MAX), None);
        assert_eq!(parse_u64(b"4294967296", u32::MAX.into()), None);
        assert_eq!(parse_u64(b"", 10), None);
    }
}
