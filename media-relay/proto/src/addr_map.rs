//! A map keyed by a relay socket's address, in entries that fit the address: 8 bytes for IPv4.
//!
//! Why: a `SocketAddr` is 32 bytes (it has room for IPv6), a call has four relay sockets, and the relay keeps two
//! maps by socket (its endpoints, its sockets) that keep room for up to twice their entries: with `SocketAddr` keys
//! the two came to about 650 bytes per call of the `sbc`'s memory (benches/README.md, "Memory per call"), most of
//! it the keys. IPv4 addresses are packed into a `u64` (address and port); IPv6 ones keep a map of their own.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// See the module.
#[derive(Debug)]
pub struct AddrMap<V> {
    v4: HashMap<u64, V>,
    v6: HashMap<SocketAddrV6, V>,
}

impl<V> Default for AddrMap<V> {
    fn default() -> Self {
        Self { v4: HashMap::new(), v6: HashMap::new() }
    }
}

fn pack(a: &SocketAddrV4) -> u64 {
    u64::from(a.ip().to_bits()) << 16 | u64::from(a.port())
}

fn unpack(k: u64) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from_bits((k >> 16) as u32), k as u16))
}

impl<V> AddrMap<V> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value at `a`.
    pub fn get(&self, a: &SocketAddr) -> Option<&V> {
        match a {
            SocketAddr::V4(a) => self.v4.get(&pack(a)),
            SocketAddr::V6(a) => self.v6.get(a),
        }
    }

    /// The value at `a`, mutable.
    pub fn get_mut(&mut self, a: &SocketAddr) -> Option<&mut V> {
        match a {
            SocketAddr::V4(a) => self.v4.get_mut(&pack(a)),
            SocketAddr::V6(a) => self.v6.get_mut(a),
        }
    }

    /// Whether `a` has a value.
    pub fn contains_key(&self, a: &SocketAddr) -> bool {
        self.get(a).is_some()
    }

    /// Sets the value at `a`; the one it replaces, if any.
    pub fn insert(&mut self, a: SocketAddr, v: V) -> Option<V> {
        match a {
            SocketAddr::V4(a) => self.v4.insert(pack(&a), v),
            SocketAddr::V6(a) => self.v6.insert(a, v),
        }
    }

    /// Takes the value at `a` out.
    pub fn remove(&mut self, a: &SocketAddr) -> Option<V> {
        match a {
            SocketAddr::V4(a) => self.v4.remove(&pack(a)),
            SocketAddr::V6(a) => self.v6.remove(a),
        }
    }

    /// How many addresses have a value.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Whether none has.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.v4.clear();
        self.v6.clear();
    }

    /// Every address and its value, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, &V)> + '_ {
        let v4 = self.v4.iter().map(|(k, v)| (unpack(*k), v));
        v4.chain(self.v6.iter().map(|(a, v)| (SocketAddr::V6(*a), v)))
    }

    /// Every address with a value, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.iter().map(|(a, _)| a)
    }

    /// Every value, in no particular order.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> + '_ {
        self.v4.values_mut().chain(self.v6.values_mut())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_families_round_trip_through_the_map() {
        let mut m = AddrMap::new();
        let addrs: Vec<SocketAddr> =
            ["198.18.0.1:40000", "255.255.255.255:65535", "0.0.0.0:0", "[2001:db8::1]:40000", "[::1]:9"]
                .iter()
                .map(|s| s.parse().expect("address"))
                .collect();
        for (i, a) in addrs.iter().enumerate() {
            assert_eq!(m.insert(*a, i), None);
        }
        assert_eq!(m.len(), addrs.len());
        for (i, a) in addrs.iter().enumerate() {
            assert_eq!(m.get(a), Some(&i));
        }
        let mut keys: Vec<SocketAddr> = m.keys().collect();
        keys.sort();
        let mut want = addrs.clone();
        want.sort();
        assert_eq!(keys, want, "addresses come back as they went in");
        assert_eq!(m.get(&"198.18.0.1:40001".parse().unwrap()), None, "the port is part of the key");
        assert_eq!(m.get(&"198.18.0.2:40000".parse().unwrap()), None, "and the address");
        assert_eq!(m.remove(&addrs[3]), Some(3));
        assert_eq!(m.len(), addrs.len() - 1);
        m.clear();
        assert!(m.is_empty());
    }
}
