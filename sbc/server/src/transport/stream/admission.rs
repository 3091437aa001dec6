//! Who may open a connection: the per-source and global caps, decided at accept before any byte is read.
//!
//! Sans-IO: [`SourceTable`] counts open connections per source and answers [`SourceTable::admit`] with an
//! [`Admitted`] ticket or a [`Refusal`]; the transport closes the socket and counts the refusal. Every admitted
//! connection must be [`released`](SourceTable::release) exactly once (the TCP transport does it from a drop guard).
//! The table holds an entry only for sources with open connections, so its size is bounded by the global cap.

use super::StreamLimits;
use ipnet::IpNet;
use sbc_proto::routing::Plan;
use std::collections::HashMap;
use std::net::IpAddr;

/// A source as the caps see it: an IPv4 address, or the /64 of an IPv6 address (one subscriber usually holds a
/// whole /64, so counting single IPv6 addresses would let one host open unbounded connections).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceKey(IpAddr);

impl SourceKey {
    /// The key of `ip`; an IPv4-mapped IPv6 address (a dual-stack listener) counts as its IPv4 address.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => Self(IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into())),
            },
        }
    }
}

/// How a source is treated by the caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceClass {
    /// An address in some trunk's `match.source`: the higher per-source limit, and the reserve.
    Trunk,
    /// Anyone else.
    Other,
    /// A connection we opened ourselves (towards a gateway): always admitted, counted in the total.
    Ours,
}

impl SourceClass {
    /// Label value for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Trunk => "trunk",
            Self::Other => "other",
            Self::Ours => "ours",
        }
    }
}

/// The trunk source networks of a routing plan, for [`SourceClass`] at accept.
#[derive(Debug, Clone, Default)]
pub struct TrunkSources(std::sync::Arc<std::sync::RwLock<Vec<IpNet>>>);

impl TrunkSources {
    /// Every `match.source` network of every trunk. A source narrowed to a port still marks its address as a
    /// trunk's: a TCP client connects from an ephemeral port, so only the address can be judged at accept
    /// (`Plan::identify` still checks the port of each message).
    pub fn from_plan(plan: &Plan) -> Self {
        Self(std::sync::Arc::new(std::sync::RwLock::new(Self::nets(plan))))
    }

    fn nets(plan: &Plan) -> Vec<IpNet> {
        plan.trunks.iter().flat_map(|t| t.sources.iter().map(|s| s.net)).collect()
    }

    /// The sources of `plan` from now on (a reload), for every listener sharing these.
    pub fn set_plan(&self, plan: &Plan) {
        *self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Self::nets(plan);
    }

    /// The class of a connection from `ip` (accepted, not ours).
    pub fn classify(&self, ip: IpAddr) -> SourceClass {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).iter().any(|n| n.contains(&ip)) {
            SourceClass::Trunk
        } else {
            SourceClass::Other
        }
    }
}

/// Why a connection was refused at accept. Counted as `sbc_tcp_connections_rejected_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// `tcp_max_connections` connections are open.
    #[error("the global connection cap is reached")]
    MaxConnections,
    /// Only the part of the global cap reserved for trunks is left, and the source is no trunk.
    #[error("only the connections reserved for trunks are left")]
    TrunkReserve,
    /// The source has its per-source limit of connections open.
    #[error("the source has its limit of connections open")]
    PerSource,
}

impl Refusal {
    /// Every refusal, for zero-valued metric series.
    pub const ALL: [Refusal; 3] = [Refusal::MaxConnections, Refusal::TrunkReserve, Refusal::PerSource];

    /// Label value for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::MaxConnections => "max_connections",
            Self::TrunkReserve => "trunk_reserve",
            Self::PerSource => "per_source",
        }
    }
}

/// An admitted connection; hand it back to [`SourceTable::release`] when the connection closes.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "an admitted connection must be released when it closes"]
pub struct Admitted {
    /// The source it counts against.
    pub source: SourceKey,
    /// How the source was treated.
    pub class: SourceClass,
    /// Connections this source has open, this one included.
    pub source_count: usize,
}

/// Open connections per source and in total.
#[derive(Debug, Default)]
pub struct SourceTable {
    by_source: HashMap<SourceKey, usize>,
    total: usize,
    /// The most connections one source of each class held at once: (trunk, other).
    peak: (usize, usize),
}

impl SourceTable {
    /// Decides on a new connection from `ip` of class `class` under `limits`. Checks run cheapest first and the
    /// global cap before the per-source one, so a flood from many sources is counted as what it is.
    pub fn admit(&mut self, ip: IpAddr, class: SourceClass, limits: &StreamLimits) -> Result<Admitted, Refusal> {
        let source = SourceKey::of(ip);
        let open = self.by_source.get(&source).copied().unwrap_or(0);
        match class {
            SourceClass::Ours => {}
            SourceClass::Trunk => {
                if self.total >= limits.max_connections {
                    return Err(Refusal::MaxConnections);
                }
                if open >= limits.max_per_trunk_source {
                    return Err(Refusal::PerSource);
                }
            }
            SourceClass::Other => {
                if self.total >= limits.max_connections {
                    return Err(Refusal::MaxConnections);
                }
                if self.total >= limits.max_connections.saturating_sub(limits.trunk_reserve) {
                    return Err(Refusal::TrunkReserve);
                }
                if open >= limits.max_per_source {
                    return Err(Refusal::PerSource);
                }
            }
        }
        let source_count = open + 1;
        self.by_source.insert(source, source_count);
        self.total += 1;
        match class {
            SourceClass::Trunk => self.peak.0 = self.peak.0.max(source_count),
            SourceClass::Other => self.peak.1 = self.peak.1.max(source_count),
            SourceClass::Ours => {}
        }
        Ok(Admitted { source, class, source_count })
    }

    /// A connection admitted earlier has closed.
    pub fn release(&mut self, admitted: Admitted) {
        if let Some(n) = self.by_source.get_mut(&admitted.source) {
            *n -= 1;
            if *n == 0 {
                self.by_source.remove(&admitted.source);
            }
            self.total -= 1;
        }
    }

    /// Open connections in total.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Sources with at least one open connection.
    pub fn sources(&self) -> usize {
        self.by_source.len()
    }

    /// Open connections of `ip`'s source.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        self.by_source.get(&SourceKey::of(ip)).copied().unwrap_or(0)
    }

    /// The most connections one source of `class` held at once since the start (0 for [`SourceClass::Ours`]).
    pub fn peak(&self, class: SourceClass) -> usize {
        match class {
            SourceClass::Trunk => self.peak.0,
            SourceClass::Other => self.peak.1,
            SourceClass::Ours => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn limits() -> StreamLimits {
        StreamLimits {
            max_connections: 10,
            max_per_source: 2,
            max_per_trunk_source: 5,
            trunk_reserve: 4,
            ..Default::default()
        }
    }

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(198, 18, 2, last))
    }

    #[test]
    fn a_source_over_its_limit_is_refused_until_one_of_its_connections_closes() {
        let (mut t, l) = (SourceTable::default(), limits());
        let a = t.admit(v4(11), SourceClass::Other, &l).expect("first");
        let _b = t.admit(v4(11), SourceClass::Other, &l).expect("second");
        assert_eq!(t.admit(v4(11), SourceClass::Other, &l), Err(Refusal::PerSource));
        assert!(t.admit(v4(12), SourceClass::Other, &l).is_ok(), "another source is not affected");
        t.release(a);
        assert_eq!(t.open_from(v4(11)), 1);
        assert_eq!(t.admit(v4(11), SourceClass::Other, &l).expect("room again").source_count, 2);
        assert_eq!((t.total(), t.sources(), t.peak(SourceClass::Other)), (3, 2, 2));
    }

    #[test]
    fn trunk_sources_get_their_higher_limit_and_the_reserve() {
        let (mut t, l) = (SourceTable::default(), limits());
        // Six unknown sources use the 10 - 4 slots open to them; the seventh is refused by the reserve.
        let mut others: Vec<_> = (1..=6).map(|i| t.admit(v4(i), SourceClass::Other, &l).expect("other")).collect();
        assert_eq!(t.admit(v4(7), SourceClass::Other, &l), Err(Refusal::TrunkReserve));
        // The reserve is the trunks': one trunk address takes four connections, more than anyone else's two.
        for n in 1..=4 {
            assert_eq!(t.admit(v4(10), SourceClass::Trunk, &l).expect("trunk").source_count, n);
        }
        assert_eq!(t.admit(v4(10), SourceClass::Trunk, &l), Err(Refusal::MaxConnections), "10 open: the global cap");
        for a in others.drain(..2) {
            t.release(a);
        }
        assert_eq!(t.admit(v4(10), SourceClass::Trunk, &l).map(|a| a.source_count), Ok(5));
        assert_eq!(t.admit(v4(10), SourceClass::Trunk, &l), Err(Refusal::PerSource), "the trunk limit is 5");
        assert_eq!(t.admit(v4(20), SourceClass::Trunk, &l).map(|a| a.source_count), Ok(1));
        assert_eq!((t.total(), t.peak(SourceClass::Trunk), t.peak(SourceClass::Other)), (10, 5, 1));
    }

    #[test]
    fn our_own_connections_are_always_admitted_and_counted() {
        let (mut t, l) = (SourceTable::default(), limits());
        for _ in 0..12 {
            let _ = t.admit(v4(10), SourceClass::Ours, &l).expect("ours");
        }
        assert_eq!(t.total(), 12);
        assert_eq!(t.admit(v4(1), SourceClass::Trunk, &l), Err(Refusal::MaxConnections));
        assert_eq!(t.peak(SourceClass::Other), 0);
    }

    #[test]
    fn ipv6_sources_count_per_64_and_mapped_ipv4_as_ipv4() {
        let (mut t, l) = (SourceTable::default(), limits());
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        let _ = t.admit(a, SourceClass::Other, &l).expect("a");
        let _ = t.admit(b, SourceClass::Other, &l).expect("b, same /64");
        assert_eq!(t.admit(a, SourceClass::Other, &l), Err(Refusal::PerSource));
        assert!(t.admit(c, SourceClass::Other, &l).is_ok(), "another /64");
        let mapped = IpAddr::V6(Ipv4Addr::new(198, 18, 2, 11).to_ipv6_mapped());
        assert_eq!(SourceKey::of(mapped), SourceKey::of(v4(11)));
        assert_ne!(SourceKey::of(IpAddr::V6(Ipv6Addr::LOCALHOST)), SourceKey::of(a));
    }

    #[test]
    fn releasing_everything_leaves_an_empty_table() {
        let (mut t, l) = (SourceTable::default(), limits());
        let tickets: Vec<_> = (0..2).map(|_| t.admit(v4(1), SourceClass::Other, &l).expect("ok")).collect();
        for a in tickets {
            t.release(a);
        }
        assert_eq!((t.total(), t.sources()), (0, 0));
    }

    #[test]
    fn trunk_sources_come_from_match_source_ignoring_the_port() {
        let mut plan = Plan::default();
        let mut trunk = sbc_proto::routing::Trunk::new("pbx");
        trunk
            .sources
            .push(sbc_proto::routing::SourceMatch { net: "198.18.1.0/24".parse().expect("net"), port: Some(5060) });
        plan.trunks.push(trunk);
        let s = TrunkSources::from_plan(&plan);
        assert_eq!(s.classify("198.18.1.10".parse().expect("ip")), SourceClass::Trunk);
        assert_eq!(s.classify(IpAddr::V6(Ipv4Addr::new(198, 18, 1, 10).to_ipv6_mapped())), SourceClass::Trunk);
        assert_eq!(s.classify("198.18.2.11".parse().expect("ip")), SourceClass::Other);
    }
}
