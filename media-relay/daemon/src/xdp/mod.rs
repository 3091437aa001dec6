//! The XDP fast path: the loader of `ebpf/src/relay_xdp.bpf.c` and the ONLY writer of its maps.
//!
//! The relay's forwarding thread owns one [`Xdp`]: [`Xdp::attach`] at start, [`Xdp::install`] when a flow is
//! kernelized, [`Xdp::counters`] to read what the kernel forwarded, [`Xdp::remove`] (returning the final
//! counters) when it is not any more. Dropping it detaches the program (links are `bpf_link`s, so a killed
//! process leaves nothing attached either). Nothing is pinned, so bpffs is not needed and not mounted.
//!
//! What the program forwards and what it passes to the kernel (and so to the user-space relay) is described
//! at the top of the C file; the map layouts are in [`abi`] / `ebpf/include/relay_abi.h`.
//!
//! Host requirements for packets to be forwarded (else they are passed, counted in [`ActionCounters`]):
//! forwarding enabled on the attached interfaces (`net.ipv4.conf.IF.forwarding=1`, and
//! `net.ipv6.conf.IF.forwarding=1` for IPv6), the peers in the neighbour table, and in native mode an egress
//! interface that takes XDP frames. The last is asked of the kernel ([`egress`]) at attach and whenever it
//! announces a device change: only such interfaces are in `relay_devmap`, and flows out of the others are
//! passed (`pass_egress`). A veth takes them only while its PEER has an XDP program ([`PassProgram`]) or GRO
//! on; without either it would drop every redirected frame, which is why an explicit `native` refuses to start
//! on one and `auto` keeps its flows in user space. Frames the kernel fails to send after the program returned
//! (a full ring, a device that changed in between) are counted per interface by tracing programs
//! ([`Xdp::drops`]): no loss after the program is invisible.
//!
//! The program caches each flow's next hop (egress interface, MACs) from `bpf_fib_lookup` in the flow's entry;
//! a thread (`next_hop.rs`) bumps a generation on every neighbour, route, address or link change the kernel
//! announces, and the flow's next packet looks up again. A flow's last-seen time is taken in user space, when a
//! read of its counters finds them grown (the program reads no clock).
//!
//! A frame sent by a local socket over veth (another namespace or container on this host) is
//! `CHECKSUM_PARTIAL`: its UDP checksum field holds only the pseudo-header sum, to be completed by "hardware".
//! The program recognises it (the field equals the pseudo-header sum) and passes it (`pass_csum`): the kernel
//! completes the checksum on the way through user space. Frames from a real NIC are complete. To have
//! same-host veth senders forwarded by XDP, turn off their tx checksum offload (`ethtool -K IF tx off`).

pub mod abi;
pub mod egress;
mod loader;
mod next_hop;
pub mod reference;

use std::{fmt, net::SocketAddr, str::FromStr, time::Duration};

pub use loader::{PassProgram, TestRunOutput, Xdp};

/// The embedded objects (built by `build.rs` from `ebpf/src`), for tests and benches that load them themselves.
pub mod objects {
    /// `relay_xdp.bpf.c`: the relay program `relay_xdp` and its maps.
    pub static RELAY_XDP: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/relay_xdp.bpf.o"));
    /// `pass.bpf.c`: `relay_pass` (XDP_PASS) and `relay_bare_redirect` (everything to `relay_bench_devmap[0]`).
    pub static PASS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/pass.bpf.o"));
    /// `reference_relay.bpf.c`: the reference relay program (a yardstick for benchmarks, never attached).
    pub static REFERENCE: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/reference_relay.bpf.o"));
    /// `gen.bpf.c`: the benchmark's live-frames RTP generator `gen_rtp` (never attached; run by `sbc-bench`).
    pub static GEN: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/gen.bpf.o"));
    /// `sink.bpf.c`: the benchmark's counting RTP sink `sink_rtp` (attached by `sbc-bench`, never by the relay).
    pub static SINK: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sink.bpf.o"));
}

/// How to attach (the `xdp` setting).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver (fastest); fails where the driver has no XDP support.
    Native,
    /// In the kernel's generic path (any interface; slower than native, still skips the socket path).
    Generic,
    /// No XDP: the user-space relay forwards everything.
    Off,
    /// Native, else generic, else off.
    #[default]
    Auto,
}

impl FromStr for XdpMode {
    type Err = XdpError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "native" => Ok(Self::Native),
            "generic" => Ok(Self::Generic),
            "off" => Ok(Self::Off),
            "auto" => Ok(Self::Auto),
            other => Err(XdpError::BadMode(other.to_owned())),
        }
    }
}

impl fmt::Display for XdpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Native => "native",
            Self::Generic => "generic",
            Self::Off => "off",
            Self::Auto => "auto",
        })
    }
}

/// What [`Xdp::attach`] ended up with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachedMode {
    Native,
    Generic,
    /// Nothing attached: [`Xdp::install`] fails with [`XdpError::Off`]; the user-space relay forwards everything.
    Off,
}

impl fmt::Display for AttachedMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Native => "native",
            Self::Generic => "generic",
            Self::Off => "off",
        })
    }
}

/// Packets arriving at this relay address:port. An IPv4-mapped IPv6 address counts as the IPv4 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub local: SocketAddr,
}

/// Where the kernel sends packets for a [`FlowKey`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowTarget {
    /// The latched peer: with `strict`, packets from any other source are passed to user space.
    pub expect: SocketAddr,
    /// New source: the relay's address:port on the other side.
    pub from: SocketAddr,
    /// New destination: the other peer.
    pub to: SocketAddr,
    pub strict: bool,
    /// Pass RTCP (RFC 5761 §4) to user space, which rewrites its SDES items; RTP is still forwarded here.
    pub pass_rtcp: bool,
}

/// A flow's counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelCounters {
    /// Packets forwarded.
    pub packets: u64,
    /// UDP payload bytes forwarded (as the user-space relay counts them).
    pub bytes: u64,
    /// `CLOCK_MONOTONIC` (ns) of the first read of these counters that found the packet count grown (the
    /// program reads no clock: see `struct relay_flow_stats`): the last packet came at most one read interval
    /// before; 0 = none yet.
    pub last_seen_ns: u64,
}

impl KernelCounters {
    /// `last_seen_ns` as a duration since boot on `CLOCK_MONOTONIC` (`None` if no packet yet).
    pub fn last_seen(&self) -> Option<Duration> {
        (self.last_seen_ns != 0).then(|| Duration::from_nanos(self.last_seen_ns))
    }
}

/// What the program did with the packets it saw, summed over CPUs (`enum relay_action`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ActionCounters {
    pub redirect: u64,
    pub tx: u64,
    pub pass_miss: u64,
    pub pass_source: u64,
    pub pass_fib: u64,
    pub pass_ttl: u64,
    pub pass_frag: u64,
    pub pass_other: u64,
    /// The egress interface cannot take XDP frames now (or is not one of ours): the flow stays in user space.
    pub pass_egress: u64,
    /// A partial UDP checksum (a sender on this host with checksum offload): only the kernel can complete it.
    pub pass_csum: u64,
    /// RTCP multiplexed on an RTP flow whose RTCP user space rewrites (topology hiding).
    pub pass_rtcp: u64,
}

/// Why the program passed packets to user space, as metrics label it: the order of [`ActionCounters::passed`].
pub const PASS_REASONS: [&str; 9] = ["miss", "source", "fib", "ttl", "fragment", "other", "egress", "checksum", "rtcp"];

impl ActionCounters {
    /// The passed packets by reason, in the order of [`PASS_REASONS`].
    pub fn passed(&self) -> [u64; 9] {
        [
            self.pass_miss,
            self.pass_source,
            self.pass_fib,
            self.pass_ttl,
            self.pass_frag,
            self.pass_other,
            self.pass_egress,
            self.pass_csum,
            self.pass_rtcp,
        ]
    }
}

/// Frames the kernel failed to send after the program returned XDP_REDIRECT or XDP_TX, summed over the attached
/// interfaces and CPUs (`struct relay_iface_drops`). A driver may report one lost frame under two reasons.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropCounters {
    /// The redirect itself failed (e.g. the target could not take XDP frames).
    pub redirect_errors: u64,
    /// The egress driver refused frames redirected to it.
    pub xmit_drops: u64,
    /// XDP_TX frames the driver could not send back out.
    pub tx_drops: u64,
    /// The driver dropped a frame it was told to send.
    pub exceptions: u64,
}

/// Why the kernel lost frames after the program, as metrics label it: the order of [`DropCounters::by_reason`].
pub const DROP_REASONS: [&str; 4] = ["redirect_error", "xmit", "tx", "exception"];

impl DropCounters {
    /// By reason, in the order of [`DROP_REASONS`].
    pub fn by_reason(&self) -> [u64; 4] {
        [self.redirect_errors, self.xmit_drops, self.tx_drops, self.exceptions]
    }

    /// Every reason together.
    pub fn total(&self) -> u64 {
        self.by_reason().iter().fold(0u64, |a, n| a.wrapping_add(*n))
    }
}

/// An attached interface that started or stopped taking XDP frames ([`Xdp::sync_egress`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EgressChange {
    pub iface: String,
    /// True: its flows are forwarded in the kernel again; false: they stay in user space.
    pub ready: bool,
}

/// Errors of the XDP fast path; the messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error("unknown xdp mode {0:?}: use \"native\", \"generic\", \"off\" or \"auto\"")]
    BadMode(String),
    #[error("XDP is off (not attached): the user-space relay forwards this flow")]
    Off,
    #[error("no interfaces given to attach XDP to: set the relay's XDP interfaces, or xdp = \"off\"")]
    NoInterfaces,
    #[error("no network interface {name:?} ({source}): check the relay's XDP interface names (`ip link`)")]
    UnknownInterface { name: String, source: std::io::Error },
    #[error(
        "load the XDP program: {0}; this needs root (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON) and a kernel with BTF \
         and XDP (5.10 or newer)"
    )]
    Load(#[source] aya::EbpfError),
    #[error("the XDP object has no {0}: rebuild media-relay (ebpf/ and src/xdp/abi.rs out of step?)")]
    Missing(&'static str),
    #[error("XDP program {name}: {source}")]
    Program { name: &'static str, source: aya::programs::ProgramError },
    #[error("attach {mode} XDP to {iface}: {source}; {hint}")]
    Attach { mode: AttachedMode, iface: String, source: aya::programs::ProgramError, hint: &'static str },
    #[error("BPF map {map}: {source}")]
    Map { map: &'static str, source: aya::maps::MapError },
    #[error("add {iface} to relay_devmap: {source}")]
    Devmap { iface: String, source: aya::maps::xdp::XdpMapError },
    #[error(
        "the XDP flow table is full ({0} flows): raise the relay's XDP flow capacity (media-relay --xdp-max-flows; \
         the embedded relay's is media.ports x interfaces)"
    )]
    Full(u32),
    #[error("XDP flow capacity (--xdp-max-flows) {0}: must be 1 to {max}", max = abi::LIMIT_MAX_FLOWS)]
    Capacity(u32),
    #[error("flow {key} -> {to}: address families differ; the fast path only relays IPv4->IPv4 and IPv6->IPv6")]
    CrossFamily { key: SocketAddr, to: SocketAddr },
    #[error("count the CPUs: {0}")]
    Cpus(String),
    #[error(
        "read the kernel's BTF (/sys/kernel/btf/vmlinux): {0}; the XDP path counts the frames the kernel fails to \
         send with BTF tracing programs and is not attached without them (a kernel with CONFIG_DEBUG_INFO_BTF)"
    )]
    Btf(String),
    #[error("keep the XDP next hops fresh (neighbour and route changes): {0}")]
    NextHop(String),
    #[error("read this process's network namespace (/proc/self/ns/net), which keys its drop counters: {0}")]
    Netns(String),
    #[error("cannot learn which interfaces take XDP frames in native mode: {0}")]
    Features(String),
    #[error(
        "{iface} cannot take XDP frames (its driver reports no ndo-xmit; for a veth: its peer has no XDP program \
         and GRO off), so native XDP would lose the media it redirects there: attach an XDP program to the \
         peer or run `ethtool -K PEER gro on`, or set xdp = \"auto\" (such flows stay in user space) or \
         \"generic\""
    )]
    EgressNotReady { iface: String },
}
