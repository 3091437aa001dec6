//! Bencode (the BitTorrent encoding, BEP 3), the body format of rtpengine's NG control protocol ([`crate::ng`]):
//! integers `i42e`, byte strings `4:spam`, lists `l...e` and dictionaries `d...e` with byte-string keys.
//!
//! Hand-written rather than taken from a crate: the NG protocol needs an untyped [`Value`] tree (its dictionaries
//! carry open sets of keys, and a server must echo what it does not know), which the serde-based crates
//! (`serde_bencode`, `bendy`) offer only as a side feature with errors that carry no position; the format is four
//! productions, and owning the decoder lets it bound nesting depth and string lengths against a hostile peer, with
//! typed errors that say where the input went wrong.
//!
//! Decoding is strict where it costs nothing (no leading zeros, no `-0`, keys must be byte strings) and lenient
//! where peers differ: dictionary keys out of order or repeated are accepted (the last one wins), since rtpengine
//! and its clients do not all sort them. Encoding always sorts keys (a [`BTreeMap`]).

use std::collections::BTreeMap;

/// Nesting deeper than this is refused: NG messages nest three or four levels; a deep input is an attack on the
/// decoder's stack.
pub const MAX_DEPTH: usize = 32;

/// One bencoded value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `i<decimal>e`, signed 64-bit.
    Int(i64),
    /// `<length>:<bytes>`: arbitrary bytes (NG strings are UTF-8, SDP included).
    Bytes(Vec<u8>),
    /// `l<values>e`.
    List(Vec<Value>),
    /// `d<key value ...>e`, keys sorted on output.
    Dict(BTreeMap<Vec<u8>, Value>),
}

/// Why a byte string is not one bencoded value. Every variant carries the byte offset where decoding stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended inside a value.
    #[error("bencode: input ends inside a value at byte {0}")]
    UnexpectedEnd(usize),
    /// A byte that cannot start or continue the value being read.
    #[error("bencode: unexpected byte {byte:#04x} at byte {at}")]
    UnexpectedByte {
        /// The byte found.
        byte: u8,
        /// Its offset.
        at: usize,
    },
    /// An integer or string length that is empty, has leading zeros, is `-0` or does not fit.
    #[error("bencode: malformed number at byte {0}")]
    BadNumber(usize),
    /// A dictionary key that is not a byte string.
    #[error("bencode: dictionary key is not a string at byte {0}")]
    KeyNotString(usize),
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("bencode: nesting deeper than {MAX_DEPTH} levels at byte {0}")]
    TooDeep(usize),
    /// Bytes left after the value.
    #[error("bencode: {extra} byte(s) after the value at byte {at}")]
    TrailingBytes {
        /// Where the value ended.
        at: usize,
        /// How many bytes follow it.
        extra: usize,
    },
}

impl Value {
    /// A byte string from text.
    pub fn str(s: &str) -> Self {
        Value::Bytes(s.as_bytes().to_vec())
    }

    /// A list of byte strings from text.
    pub fn str_list<S: AsRef<str>>(items: &[S]) -> Self {
        Value::List(items.iter().map(|s| Value::str(s.as_ref())).collect())
    }

    /// A dictionary from `(key, value)` pairs.
    pub fn dict<'a>(pairs: impl IntoIterator<Item = (&'a str, Value)>) -> Self {
        Value::Dict(pairs.into_iter().map(|(k, v)| (k.as_bytes().to_vec(), v)).collect())
    }

    /// The value under `key` when this is a dictionary that has it.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(d) => d.get(key.as_bytes()),
            _ => None,
        }
    }

    /// The text of a byte string that is UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The integer, when this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The encoding of this value.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Appends the encoding of this value to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(i) => {
                out.push(b'i');
                out.extend_from_slice(i.to_string().as_bytes());
                out.push(b'e');
            }
            Value::Bytes(b) => encode_bytes(b, out),
            Value::List(items) => {
                out.push(b'l');
                for item in items {
                    item.encode_into(out);
                }
                out.push(b'e');
            }
            Value::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    encode_bytes(k, out);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }

    /// Decodes `input`, which must hold exactly one value.
    pub fn decode(input: &[u8]) -> Result<Self, DecodeError> {
        let (value, end) = Self::decode_prefix(input)?;
        if end != input.len() {
            return Err(DecodeError::TrailingBytes { at: end, extra: input.len() - end });
        }
        Ok(value)
    }

    /// Decodes the value at the start of `input` and returns it with the offset just after it.
    pub fn decode_prefix(input: &[u8]) -> Result<(Self, usize), DecodeError> {
        let mut d = Decoder { input, pos: 0 };
        let v = d.value(0)?;
        Ok((v, d.pos))
    }
}

fn encode_bytes(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
}

impl Decoder<'_> {
    fn peek(&self) -> Result<u8, DecodeError> {
        self.input.get(self.pos).copied().ok_or(DecodeError::UnexpectedEnd(self.pos))
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep(self.pos));
        }
        match self.peek()? {
            b'i' => {
                self.pos += 1;
                let i = self.number(b'e', true)?;
                Ok(Value::Int(i))
            }
            b'0'..=b'9' => self.bytes().map(Value::Bytes),
            b'l' => {
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                self.pos += 1;
                let mut dict = BTreeMap::new();
                while self.peek()? != b'e' {
                    if !self.peek()?.is_ascii_digit() {
                        return Err(DecodeError::KeyNotString(self.pos));
                    }
                    let key = self.bytes()?;
                    let value = self.value(depth + 1)?;
                    dict.insert(key, value);
                }
                self.pos += 1;
                Ok(Value::Dict(dict))
            }
            byte => Err(DecodeError::UnexpectedByte { byte, at: self.pos }),
        }
    }

    fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        let start = self.pos;
        let len = usize::try_from(self.number(b':', false)?).map_err(|_| DecodeError::BadNumber(start))?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|&e| e <= self.input.len())
            .ok_or(DecodeError::UnexpectedEnd(self.input.len()))?;
        let b = self.input[self.pos..end].to_vec();
        self.pos = end;
        Ok(b)
    }

    /// Reads a decimal number up to `end` (consumed), BEP 3's canonical form only.
    fn number(&mut self, end: u8, signed: bool) -> Result<i64, DecodeError> {
        let start = self.pos;
        let rel =
            self.input[start..].iter().position(|&b| b == end).ok_or(DecodeError::UnexpectedEnd(self.input.len()))?;
        let text = &self.input[start..start + rel];
        let digits = if signed { text.strip_prefix(b"-").unwrap_or(text) } else { text };
        let canonical = !digits.is_empty()
            && digits.iter().all(u8::is_ascii_digit)
            && (digits == b"0" || digits[0] != b'0')
            && text != b"-0";
        if !canonical {
            return Err(match text.iter().position(|b| !b.is_ascii_digit() && *b != b'-') {
                Some(i) => DecodeError::UnexpectedByte { byte: text[i], at: start + i },
                None => DecodeError::BadNumber(start),
            });
        }
        let n = std::str::from_utf8(text).ok().and_then(|s| s.parse().ok()).ok_or(DecodeError::BadNumber(start))?;
        self.pos = start + rel + 1;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_kind() {
        let v = Value::dict([
            ("command", Value::str("offer")),
            ("flags", Value::str_list(&["trust-address", "symmetric"])),
            ("n", Value::Int(-42)),
            ("zero", Value::Int(0)),
            ("big", Value::Int(i64::MAX)),
            ("sdp", Value::Bytes(b"v=0\r\nm=audio 7000 RTP/AVP 0\r\n".to_vec())),
            ("empty", Value::List(vec![])),
            ("nested", Value::dict([("a", Value::List(vec![Value::Int(1), Value::dict([])]))])),
        ]);
        let bytes = v.encode();
        assert_eq!(Value::decode(&bytes), Ok(v));
    }

    #[test]
    fn encodes_canonically_with_sorted_keys() {
        let v = Value::dict([("z", Value::Int(1)), ("a", Value::str("x")), ("m", Value::List(vec![Value::Int(-3)]))]);
        assert_eq!(v.encode(), b"d1:a1:x1:mli-3ee1:zi1ee");
        assert_eq!(Value::Int(0).encode(), b"i0e");
        assert_eq!(Value::str("").encode(), b"0:");
    }

    #[test]
    fn accepts_unsorted_keys_last_wins() {
        let v = Value::decode(b"d1:bi1e1:ai2e1:bi3ee").unwrap();
        assert_eq!(v.get("a"), Some(&Value::Int(2)));
        assert_eq!(v.get("b"), Some(&Value::Int(3)));
    }

    #[test]
    fn malformed_input_gives_typed_errors_with_positions() {
        use DecodeError::*;
        let cases: &[(&[u8], DecodeError)] = &[
            (b"", UnexpectedEnd(0)),
            (b"i42", UnexpectedEnd(3)),
            (b"ie", BadNumber(1)),
            (b"i042e", BadNumber(1)),
            (b"i-0e", BadNumber(1)),
            (b"i4x2e", UnexpectedByte { byte: b'x', at: 2 }),
            (b"i99999999999999999999e", BadNumber(1)),
            (b"5:abc", UnexpectedEnd(5)),
            (b"03:abc", BadNumber(0)),
            (b"l1:a", UnexpectedEnd(4)),
            (b"di1e1:ae", KeyNotString(1)),
            (b"x", UnexpectedByte { byte: b'x', at: 0 }),
            (b"i1ei2e", TrailingBytes { at: 3, extra: 3 }),
        ];
        for (input, want) in cases {
            assert_eq!(Value::decode(input).as_ref(), Err(want), "input {:?}", String::from_utf8_lossy(input));
        }
        let deep = [vec![b'l'; MAX_DEPTH + 2], vec![b'e'; MAX_DEPTH + 2]].concat();
        assert_eq!(Value::decode(&deep), Err(TooDeep(MAX_DEPTH + 1)));
        let ok_deep = [vec![b'l'; MAX_DEPTH + 1], vec![b'e'; MAX_DEPTH + 1]].concat();
        assert!(Value::decode(&ok_deep).is_ok());
    }

    #[test]
    fn prefix_decoding_reports_the_end() {
        assert_eq!(Value::decode_prefix(b"4:spam rest"), Ok((Value::str("spam"), 6)));
    }
}
