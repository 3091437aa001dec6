//! The index of our dialogs: which call and leg an in-dialog message belongs to, by its Call-ID and our tag.
//!
//! Why not a map keyed by the two: an entry of two `Bytes` is 80 bytes, a map keeps room for up to twice its
//! entries, and every call has two dialogs, so the index alone came to about 300 bytes per call (benches/README.md,
//! "Memory per call"). Our tags are 64 bits we generate ([`crate::endpoint::ids::IdGenerator::tag`], 16 hex
//! digits; one generator never repeats one), so the index is keyed by those bits, in entries of 24 bytes, and a
//! hit is confirmed against the call's own dialog (the caller's `is_it`) before it counts. A tag of another form,
//! or the same bits from the other box of a pair, goes to an exact map instead, so no dialog ever hides another.

use super::{CallRef, Leg};
use bytes::Bytes;
use std::collections::HashMap;

#[derive(Debug, Default)]
pub(super) struct DialogIndex {
    by_tag: HashMap<u64, (CallRef, Leg)>,
    exact: HashMap<(Bytes, Bytes), (CallRef, Leg)>,
}

/// Our tag's 64 bits: exactly 16 lowercase hex digits, as we write them.
fn bits(tag: &[u8]) -> Option<u64> {
    if tag.len() != 16 || !tag.iter().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c)) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(tag).ok()?, 16).ok()
}

impl DialogIndex {
    pub(super) fn insert(&mut self, call_id: &Bytes, tag: &Bytes, call: (CallRef, Leg)) {
        match bits(tag) {
            Some(k) if !self.by_tag.contains_key(&k) => {
                self.by_tag.insert(k, call);
            }
            _ => {
                self.exact.insert((call_id.clone(), tag.clone()), call);
            }
        }
    }

    /// The call and leg of dialog (`call_id`, `tag`): the entry under the tag's bits if `is_it` confirms it is
    /// that dialog, else the exact entry.
    pub(super) fn get(
        &self,
        call_id: &[u8],
        tag: &[u8],
        is_it: impl Fn(CallRef, Leg) -> bool,
    ) -> Option<(CallRef, Leg)> {
        if let Some(&(id, leg)) = bits(tag).and_then(|k| self.by_tag.get(&k)) {
            if is_it(id, leg) {
                return Some((id, leg));
            }
        }
        if self.exact.is_empty() {
            return None;
        }
        self.exact.get(&(Bytes::copy_from_slice(call_id), Bytes::copy_from_slice(tag))).copied()
    }

    /// Removes dialog (`call_id`, `tag`) of `call`.
    pub(super) fn remove(&mut self, call_id: &Bytes, tag: &Bytes, call: (CallRef, Leg)) {
        if let Some(k) = bits(tag).filter(|k| self.by_tag.get(k) == Some(&call)) {
            self.by_tag.remove(&k);
        } else {
            self.exact.remove(&(call_id.clone(), tag.clone()));
        }
    }

    #[cfg(any(test, feature = "fuzzing"))]
    pub(super) fn is_empty(&self) -> bool {
        self.by_tag.is_empty() && self.exact.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_tags_go_by_their_bits_and_anything_else_or_a_repeat_goes_exact() {
        let mut ix = DialogIndex::default();
        let (c1, c2, c3) = (Bytes::from_static(b"c1"), Bytes::from_static(b"c2"), Bytes::from_static(b"c3"));
        let ours = Bytes::from_static(b"00000000deadbeef");
        let theirs = Bytes::from_static(b"As-1");
        ix.insert(&c1, &ours, (CallRef(1), Leg::A));
        ix.insert(&c2, &ours, (CallRef(2), Leg::B));
        ix.insert(&c3, &theirs, (CallRef(3), Leg::A));
        assert_eq!((ix.by_tag.len(), ix.exact.len()), (1, 2));
        // The caller confirms a hit by the call's own dialog.
        let is = |want: u64| move |id: CallRef, _| id.0 == want;
        assert_eq!(ix.get(b"c1", b"00000000deadbeef", is(1)), Some((CallRef(1), Leg::A)));
        assert_eq!(ix.get(b"c2", b"00000000deadbeef", is(2)), Some((CallRef(2), Leg::B)), "the same bits, exact");
        assert_eq!(ix.get(b"c9", b"00000000deadbeef", is(0)), None, "a hit not confirmed is no hit");
        assert_eq!(ix.get(b"c3", b"As-1", is(0)), Some((CallRef(3), Leg::A)));
        assert_eq!(ix.get(b"c1", b"00000000DEADBEEF", is(1)), None, "tags compare as written");
        ix.remove(&c2, &ours, (CallRef(2), Leg::B));
        assert_eq!(ix.get(b"c1", b"00000000deadbeef", is(1)), Some((CallRef(1), Leg::A)), "the other stays");
        ix.remove(&c1, &ours, (CallRef(1), Leg::A));
        ix.remove(&c3, &theirs, (CallRef(3), Leg::A));
        assert!(ix.is_empty());
    }
}
