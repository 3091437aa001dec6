//! Gateways named by DNS (RFC 3263): what the configuration names, what the resolver found for it, and the order in
//! which one call tries those targets.
//!
//! The lookups themselves run in the server, off the call path; it hands each answer to the core
//! (`Endpoint::set_targets`). Here the answer becomes an order per call: lowest SRV priority first and, within one
//! priority, the weighted draw of RFC 2782, made from a hash of the call's Call-ID so that the core stays
//! deterministic and one call always gets the same order.

use super::trunk::Gateway;
use crate::transport::Transport;

/// A gateway named by a host name rather than an address (`sip:carrier.example.net`, `tls:carrier.example.net:5061`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsGateway {
    /// Where it stands in the trunk's `gateways` list: its targets are tried in its place, after the gateways listed
    /// before it and before those listed after it.
    pub position: usize,
    /// The domain, lower-case, without a trailing dot. For TLS targets it is also the name their certificates must
    /// carry (RFC 5922).
    pub host: String,
    /// The port, if given: then only A/AAAA records are looked up (RFC 3263 §4.2).
    pub port: Option<u16>,
    /// The transport, if given (`;transport=`, or a `udp:`/`tcp:`/`tls:` prefix): then NAPTR is skipped and only
    /// that transport's SRV records are looked up. `None` with no port: NAPTR decides (RFC 3263 §4.1).
    pub transport: Option<Transport>,
}

impl DnsGateway {
    /// How it was written in the configuration, for logs and metrics labels.
    pub fn display(&self) -> String {
        let mut s = format!("sip:{}", self.host);
        if let Some(p) = self.port {
            s.push_str(&format!(":{p}"));
        }
        if let Some(t) = self.transport {
            s.push_str(&format!(";transport={}", t.as_str()));
        }
        s
    }
}

/// One target a name resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// SRV priority: lower first. Names resolved by A/AAAA alone have 0.
    pub priority: u16,
    /// SRV weight within its priority (RFC 2782): the share of first tries it gets.
    pub weight: u16,
    /// Where and how to send.
    pub gateway: Gateway,
}

/// The targets in the order one call tries them: priority ascending; within a priority, RFC 2782's weighted draw
/// without replacement, each draw from `seed` (a hash of the Call-ID) mixed with the draw's number.
pub fn order(targets: &[Target], seed: u64) -> Vec<Gateway> {
    let mut sorted: Vec<Target> = targets.to_vec();
    sorted.sort_by_key(|t| t.priority);
    let mut out = Vec::with_capacity(sorted.len());
    let mut draw = 0u64;
    for group in sorted.chunk_by(|a, b| a.priority == b.priority) {
        // RFC 2782: weight-0 entries first in the list, so that they have a very small chance when others exist.
        let mut left: Vec<Target> = group.iter().filter(|t| t.weight == 0).copied().collect();
        left.extend(group.iter().filter(|t| t.weight > 0));
        while !left.is_empty() {
            let total: u64 = left.iter().map(|t| u64::from(t.weight)).sum();
            let r = mix(seed, draw) % (total + 1);
            draw += 1;
            let mut sum = 0u64;
            let i = left
                .iter()
                .position(|t| {
                    sum += u64::from(t.weight);
                    sum >= r
                })
                .unwrap_or(0);
            out.push(left.remove(i).gateway);
        }
    }
    out
}

/// A 64-bit hash of a Call-ID (FNV-1a), the seed of [`order`].
pub fn seed_of(call_id: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in call_id {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// SplitMix64 of `seed` and `n`: Call-IDs that differ in their last bytes spread over the whole range.
fn mix(seed: u64, n: u64) -> u64 {
    let mut h = seed.wrapping_add(n.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(priority: u16, weight: u16, last: u8) -> Target {
        let addr = std::net::SocketAddr::from(([198, 18, 2, last], 5060));
        Target { priority, weight, gateway: Gateway { transport: Transport::Udp, addr } }
    }

    #[test]
    fn lower_priority_always_comes_first() {
        let targets = [t(20, 100, 11), t(10, 1, 10), t(30, 0, 12)];
        for n in 0..200u32 {
            let o = order(&targets, seed_of(format!("call-{n}").as_bytes()));
            assert_eq!(o, vec![targets[1].gateway, targets[0].gateway, targets[2].gateway]);
        }
    }

    #[test]
    fn weights_80_20_split_first_tries_within_two_points_over_10000_call_ids() {
        let targets = [t(10, 80, 10), t(10, 20, 11)];
        let n = 10_000;
        let first_b = (0..n)
            .filter(|i| order(&targets, seed_of(format!("{i}@198.18.1.10").as_bytes()))[0] == targets[0].gateway)
            .count();
        let share = first_b as f64 / n as f64;
        assert!((0.78..=0.82).contains(&share), "share of the weight-80 target: {share}");
    }

    #[test]
    fn every_target_is_tried_once_and_the_same_call_id_gets_the_same_order() {
        let targets = [t(10, 50, 10), t(10, 30, 11), t(10, 20, 12), t(20, 0, 13)];
        let a = order(&targets, seed_of(b"abc"));
        assert_eq!(a.len(), 4);
        let distinct: std::collections::HashSet<_> = a.iter().map(|g| g.addr).collect();
        assert_eq!(distinct.len(), 4);
        assert_eq!(a, order(&targets, seed_of(b"abc")));
    }
}
