//! Tags, branches and Call-IDs we generate (RFC 3261 §19.3, §8.1.1.7).
//!
//! The core has no access to the OS's randomness (it is sans-IO), so the driver seeds a generator once at start.
//! SplitMix64 is enough here: the identifiers must be unique and unguessable to an outside observer who does not
//! know the seed, not cryptographically strong against someone who sees many of them.

/// A source of unique identifiers, seeded by the driver.
#[derive(Debug, Clone)]
pub struct IdGenerator {
    state: u64,
}

impl IdGenerator {
    /// A generator seeded by the driver (from the OS's randomness, or fixed in tests).
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// 64 random bits, for weighted carrier selection.
    pub fn random(&mut self) -> u64 {
        self.next()
    }

    /// A From/To tag: 64 random bits in hex (RFC 3261 §19.3 asks for at least 32).
    pub fn tag(&mut self) -> String {
        format!("{:016x}", self.next())
    }

    /// A Via branch with the magic cookie (RFC 3261 §8.1.1.7).
    pub fn branch(&mut self) -> String {
        format!("z9hG4bK{:016x}{:08x}", self.next(), self.next() as u32)
    }

    /// A Call-ID that reveals nothing about either side (topology hiding): 128 random bits.
    pub fn call_id(&mut self) -> String {
        format!("{:016x}{:016x}", self.next(), self.next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_distinct_and_well_formed() {
        let mut g = IdGenerator::new(7);
        let a = g.tag();
        let b = g.tag();
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
        assert!(g.branch().starts_with("z9hG4bK"));
        assert_eq!(g.call_id().len(), 32);
    }
}
