//! The Rust mirror of `ebpf/include/relay_abi.h`: the maps' keys and values, flags, names and action indices.
//! Change both together; the assertions below catch a size or offset that drifts from the C layout.
//!
//! This is the one file of the crate with `unsafe`: aya reads and writes map values as raw bytes and so requires
//! `unsafe impl aya::Pod` for them. That is sound for these types: they are `#[repr(C)]`, `Copy`, made only
//! of integers and byte arrays (every bit pattern is valid) and have no implicit padding (the asserted sizes are
//! the sums of their fields).
#![allow(unsafe_code)]

use std::mem::{offset_of, size_of};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

pub const MAP_FLOWS: &str = "relay_flows";
pub const MAP_FLOWS4: &str = "relay_flows4";
pub const MAP_STATS: &str = "relay_stats";
pub const MAP_ACTIONS: &str = "relay_actions";
pub const MAP_DEVMAP: &str = "relay_devmap";
pub const MAP_DROPS: &str = "relay_drops";
pub const MAP_BANS: &str = "relay_bans";
pub const MAP_BAN_COUNT: &str = "relay_ban_count";
pub const MAP_BAN_DROPS: &str = "relay_ban_drops";
/// The object's `.bss`: only the global `relay_nh_gen` (u32), seen from user space as an array of one slot.
pub const MAP_NH_GEN: &str = ".bss";
/// Flows per address family when no capacity is given (`RELAY_MAX_FLOWS`, the object's own size of
/// `relay_flows4`, `relay_flows` and `relay_stats`); the loader sizes the three to the relay's capacity.
pub const DEFAULT_MAX_FLOWS: u32 = 65_536;
/// The largest flow capacity the loader takes: a bound on the kernel memory a mistyped setting can pin (each
/// flow costs some 150 bytes of hash entry per family and 16 bytes of counters per CPU).
pub const LIMIT_MAX_FLOWS: u32 = 1 << 20;
/// `RELAY_BAN_REASONS`: slots of `relay_ban_drops` (ban reason codes; a larger code counts in slot 0).
pub const BAN_REASONS: u32 = 8;
pub const MAP_BENCH_DEVMAP: &str = "relay_bench_devmap";
pub const PROG_XDP: &str = "relay_xdp";
pub const PROG_PASS: &str = "relay_pass";
pub const PROG_BARE_REDIRECT: &str = "relay_bare_redirect";
/// The tracing programs counting into `relay_drops`, each with the `xdp` tracepoint it attaches to.
pub const PROGS_DROPS: [(&str, &str); 4] = [
    ("relay_redirect_err", "xdp_redirect_err"),
    ("relay_devmap_xmit", "xdp_devmap_xmit"),
    ("relay_bulk_tx", "xdp_bulk_tx"),
    ("relay_exception", "xdp_exception"),
];

pub const AF_INET: u8 = 4;
pub const AF_INET6: u8 = 6;
/// `RELAY_F_STRICT`: forward only packets whose source is `expect`.
pub const F_STRICT: u32 = 1;
/// `RELAY_F_PASS_RTCP`: pass RTCP (RFC 5761 §4) to user space, which rewrites its SDES.
pub const F_PASS_RTCP: u32 = 2;

/// `enum relay_action`: indices into `relay_actions`.
pub const ACT_REDIRECT: u32 = 0;
pub const ACT_TX: u32 = 1;
pub const ACT_PASS_MISS: u32 = 2;
pub const ACT_PASS_SOURCE: u32 = 3;
pub const ACT_PASS_FIB: u32 = 4;
pub const ACT_PASS_TTL: u32 = 5;
pub const ACT_PASS_FRAG: u32 = 6;
pub const ACT_PASS_OTHER: u32 = 7;
pub const ACT_PASS_EGRESS: u32 = 8;
pub const ACT_PASS_CSUM: u32 = 9;
pub const ACT_PASS_RTCP: u32 = 10;
pub const ACT_MAX: u32 = 11;

/// `struct relay_addr`: address (IPv4 in the first 4 bytes) and port, both in network order, and family.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RelayAddr {
    pub addr: [u8; 16],
    pub port: [u8; 2],
    pub family: u8,
    pub pad: u8,
}

/// `struct relay_addr4`: the key of `relay_flows4` (IPv4 flows), address and port in network order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RelayAddr4 {
    pub addr: [u8; 4],
    pub port: [u8; 2],
    pub pad: [u8; 2],
}

/// `struct relay_nh`: a flow's next hop, the program's cache (user space writes it zero).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayNextHop {
    pub gen: u32,
    pub iif: u32,
    pub oif: u32,
    pub len: u16,
    pub smac: [u8; 6],
    pub dmac: [u8; 6],
    pub pad: [u8; 2],
}

/// `struct relay_target`: the value of `relay_flows` (IPv6 flows).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayTarget {
    pub expect: RelayAddr,
    pub from: RelayAddr,
    pub to: RelayAddr,
    pub flags: u32,
    pub stats_index: u32,
    pub nh: RelayNextHop,
}

/// `struct relay_target4`: the value of `relay_flows4` (IPv4 flows); addresses and ports in network order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayTarget4 {
    pub expect_addr: [u8; 4],
    pub from_addr: [u8; 4],
    pub to_addr: [u8; 4],
    pub expect_port: [u8; 2],
    pub from_port: [u8; 2],
    pub to_port: [u8; 2],
    pub pad: [u8; 2],
    pub flags: u32,
    pub stats_index: u32,
    pub nh: RelayNextHop,
}

impl RelayTarget4 {
    /// The IPv4 form of `t`; `None` unless its `from` and `to` are IPv4. An `expect` of another family becomes
    /// 0.0.0.0:0, which no packet comes from: a strict flow then passes every packet up, as the 96-byte form's
    /// family check did.
    pub fn from_target(t: &RelayTarget) -> Option<Self> {
        let v4 = |a: &RelayAddr| (a.family == AF_INET).then(|| ([a.addr[0], a.addr[1], a.addr[2], a.addr[3]], a.port));
        let ((from_addr, from_port), (to_addr, to_port)) = (v4(&t.from)?, v4(&t.to)?);
        let (expect_addr, expect_port) = v4(&t.expect).unwrap_or_default();
        Some(Self {
            expect_addr,
            from_addr,
            to_addr,
            expect_port,
            from_port,
            to_port,
            pad: [0; 2],
            flags: t.flags,
            stats_index: t.stats_index,
            nh: t.nh,
        })
    }
}

/// `struct relay_flow_stats`: the per-CPU value of `relay_stats`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayFlowStats {
    pub packets: u64,
    pub bytes: u64,
}

/// `struct relay_iface_key`: the key of `relay_drops`, an interface by network namespace (inode number of
/// /proc/self/ns/net) and ifindex.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayIfaceKey {
    pub netns: u32,
    pub ifindex: u32,
}

/// `struct relay_iface_drops`: the per-CPU value of `relay_drops`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayIfaceDrops {
    pub redirect_errors: u64,
    pub xmit_drops: u64,
    pub tx_drops: u64,
    pub exceptions: u64,
}

/// `struct bpf_devmap_val` (linux/bpf.h): the value of `relay_devmap` (aya writes it; mirrored for the size check).
const DEVMAP_VAL_SIZE: usize = 8;

const _: () = assert!(size_of::<RelayAddr4>() == 8);
const _: () = assert!(offset_of!(RelayAddr4, port) == 4);
const _: () = assert!(size_of::<RelayAddr>() == 20);
const _: () = assert!(offset_of!(RelayAddr, port) == 16);
const _: () = assert!(offset_of!(RelayAddr, family) == 18);
const _: () = assert!(size_of::<RelayNextHop>() == 28);
const _: () = assert!(offset_of!(RelayNextHop, len) == 12);
const _: () = assert!(offset_of!(RelayNextHop, smac) == 14);
const _: () = assert!(offset_of!(RelayNextHop, dmac) == 20);
const _: () = assert!(size_of::<RelayTarget>() == 96);
const _: () = assert!(offset_of!(RelayTarget, expect) == 0);
const _: () = assert!(offset_of!(RelayTarget, from) == 20);
const _: () = assert!(offset_of!(RelayTarget, to) == 40);
const _: () = assert!(offset_of!(RelayTarget, flags) == 60);
const _: () = assert!(offset_of!(RelayTarget, stats_index) == 64);
const _: () = assert!(offset_of!(RelayTarget, nh) == 68);
const _: () = assert!(size_of::<RelayTarget4>() == 56);
const _: () = assert!(offset_of!(RelayTarget4, expect_port) == 12);
const _: () = assert!(offset_of!(RelayTarget4, to_port) == 16);
const _: () = assert!(offset_of!(RelayTarget4, flags) == 20);
const _: () = assert!(offset_of!(RelayTarget4, stats_index) == 24);
const _: () = assert!(offset_of!(RelayTarget4, nh) == 28);
const _: () = assert!(size_of::<RelayFlowStats>() == 16);
const _: () = assert!(offset_of!(RelayFlowStats, bytes) == 8);
const _: () = assert!(size_of::<RelayIfaceKey>() == 8);
const _: () = assert!(size_of::<RelayIfaceDrops>() == 32);
const _: () = assert!(offset_of!(RelayIfaceDrops, xmit_drops) == 8);
const _: () = assert!(offset_of!(RelayIfaceDrops, tx_drops) == 16);
const _: () = assert!(offset_of!(RelayIfaceDrops, exceptions) == 24);
const _: () = assert!(DEVMAP_VAL_SIZE == 2 * size_of::<u32>());

// SAFETY: see the module comment: repr(C), Copy, integer fields only, no padding.
unsafe impl aya::Pod for RelayAddr {}
// SAFETY: as above.
unsafe impl aya::Pod for RelayAddr4 {}
// SAFETY: as above.
unsafe impl aya::Pod for RelayTarget {}
// SAFETY: as above.
unsafe impl aya::Pod for RelayTarget4 {}
// SAFETY: as above.
unsafe impl aya::Pod for RelayFlowStats {}
// SAFETY: as above.
unsafe impl aya::Pod for RelayIfaceDrops {}
// SAFETY: as above.
unsafe impl aya::Pod for RelayIfaceKey {}

/// Canonical form of a socket address for the ABI: an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a
/// dual-stack socket reports) is the IPv4 address it maps, since that is what the packets carry.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, v6.port())),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

impl From<SocketAddr> for RelayAddr {
    fn from(addr: SocketAddr) -> Self {
        let addr = canonical(addr);
        let mut out = RelayAddr { port: addr.port().to_be_bytes(), ..RelayAddr::default() };
        match addr.ip() {
            IpAddr::V4(ip) => {
                out.addr[..4].copy_from_slice(&ip.octets());
                out.family = AF_INET;
            }
            IpAddr::V6(ip) => {
                out.addr = ip.octets();
                out.family = AF_INET6;
            }
        }
        out
    }
}

impl RelayAddr {
    /// The `relay_flows4` key of an IPv4 address (`None` for IPv6).
    pub fn v4_key(&self) -> Option<RelayAddr4> {
        (self.family == AF_INET).then(|| RelayAddr4 {
            addr: [self.addr[0], self.addr[1], self.addr[2], self.addr[3]],
            port: self.port,
            pad: [0; 2],
        })
    }

    /// Back to a socket address; `None` for an unknown family.
    pub fn to_socket_addr(&self) -> Option<SocketAddr> {
        let port = u16::from_be_bytes(self.port);
        match self.family {
            AF_INET => {
                let ip = Ipv4Addr::new(self.addr[0], self.addr[1], self.addr[2], self.addr[3]);
                Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
            }
            AF_INET6 => Some(SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(self.addr), port, 0, 0))),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv4_target_packs_into_the_56_byte_form() {
        let a = |s: &str| RelayAddr::from(s.parse::<SocketAddr>().unwrap());
        let t = RelayTarget {
            expect: a("198.18.0.2:5000"),
            from: a("198.18.1.1:40002"),
            to: a("198.18.1.2:6000"),
            flags: F_STRICT,
            stats_index: 7,
            ..RelayTarget::default()
        };
        let t4 = RelayTarget4::from_target(&t).expect("IPv4");
        assert_eq!((t4.expect_addr, t4.expect_port), ([198, 18, 0, 2], 5000u16.to_be_bytes()));
        assert_eq!((t4.from_addr, t4.from_port), ([198, 18, 1, 1], 40002u16.to_be_bytes()));
        assert_eq!((t4.to_addr, t4.to_port), ([198, 18, 1, 2], 6000u16.to_be_bytes()));
        assert_eq!((t4.flags, t4.stats_index, t4.nh), (F_STRICT, 7, RelayNextHop::default()));
        let v6_expect = RelayTarget { expect: a("[2001:db8::1]:5000"), ..t };
        let t4 = RelayTarget4::from_target(&v6_expect).expect("from and to are IPv4");
        assert_eq!((t4.expect_addr, t4.expect_port), ([0; 4], [0; 2]), "no packet comes from 0.0.0.0:0");
        assert_eq!(RelayTarget4::from_target(&RelayTarget { to: a("[2001:db8::2]:6000"), ..t }), None);
    }

    #[test]
    fn addr_round_trip_and_mapped_v4() {
        let a: SocketAddr = "198.18.0.1:40000".parse().unwrap();
        let r = RelayAddr::from(a);
        assert_eq!(r.family, AF_INET);
        assert_eq!(&r.addr[..4], &[198, 18, 0, 1]);
        assert_eq!(&r.addr[4..], &[0; 12]);
        assert_eq!(r.port, [0x9c, 0x40]);
        assert_eq!(r.to_socket_addr(), Some(a));
        let mapped: SocketAddr = "[::ffff:198.18.0.1]:40000".parse().unwrap();
        assert_eq!(RelayAddr::from(mapped), r);
        let v6: SocketAddr = "[2001:db8::1]:5".parse().unwrap();
        assert_eq!(RelayAddr::from(v6).to_socket_addr(), Some(v6));
    }
}
