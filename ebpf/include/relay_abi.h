/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * relay_abi.h - the ONE definition of the ABI between the XDP fast path of the media relay
 * (ebpf/src/relay_xdp.bpf.c) and its only map writer (media-relay/daemon/src/xdp/abi.rs, which mirrors
 * every struct here with compile-time size and offset assertions: change both together).
 *
 * Byte order: addresses and ports are in NETWORK order (as on the wire), everything else in host order.
 * Addresses are 16 bytes; an IPv4 address takes the first 4 bytes and the other 12 are zero.
 * All structs are padded explicitly: no implicit holes, so a zeroed user-space value hashes the same as
 * the kernel's key.
 */
#ifndef RELAY_ABI_H
#define RELAY_ABI_H

#include <linux/types.h>

/* Map names (the ELF symbol names the loader looks up). */
#define RELAY_MAP_FLOWS "relay_flows"
#define RELAY_MAP_FLOWS4 "relay_flows4"
#define RELAY_MAP_STATS "relay_stats"
#define RELAY_MAP_ACTIONS "relay_actions"
#define RELAY_MAP_DEVMAP "relay_devmap"
#define RELAY_MAP_DROPS "relay_drops"
#define RELAY_MAP_BANS "relay_bans"
#define RELAY_MAP_BAN_COUNT "relay_ban_count"
#define RELAY_MAP_BAN_DROPS "relay_ban_drops"
#define RELAY_MAP_NH_GEN ".bss" /* holds only the global relay_nh_gen (u32) */
/* Program names (the C function names). */
#define RELAY_PROG_XDP "relay_xdp"
#define RELAY_PROG_PASS "relay_pass"
/* The tracing programs that count frames the kernel failed to send after relay_xdp returned
 * XDP_REDIRECT or XDP_TX (tp_btf on the xdp tracepoints; see struct relay_iface_drops). */
#define RELAY_PROG_REDIRECT_ERR "relay_redirect_err"
#define RELAY_PROG_DEVMAP_XMIT "relay_devmap_xmit"
#define RELAY_PROG_BULK_TX "relay_bulk_tx"
#define RELAY_PROG_EXCEPTION "relay_exception"
#define RELAY_PROG_BARE_REDIRECT "relay_bare_redirect"
#define RELAY_MAP_BENCH_DEVMAP "relay_bench_devmap"

/* Limits: max_entries of the maps. Override with -D at build time; the loader reads the real sizes from the
 * object. */
#ifndef RELAY_MAX_FLOWS
/* relay_flows4 and relay_flows entries each, and relay_stats slots (one per flow): the object's default; the loader
 * sizes the three to the relay's flow capacity at load (aya EbpfLoader::map_max_entries; abi.rs DEFAULT_MAX_FLOWS). */
#define RELAY_MAX_FLOWS 65536
#endif
#ifndef RELAY_MAX_IFACES
#define RELAY_MAX_IFACES 64 /* relay_devmap entries: interfaces the program may redirect to */
#endif
#ifndef RELAY_MAX_BANS
#define RELAY_MAX_BANS 65536 /* relay_bans entries: banned source addresses */
#endif
/* relay_ban_drops slots: the ban reason codes of the signalling side's edge guard (sbc-proto policy::edge
 * BanReason: 1 rate, 2 auth failures, 3 malformed, 4 scanner; 0 none given); a larger code counts in slot 0. */
#define RELAY_BAN_REASONS 8

/* relay_addr.family */
#define RELAY_AF_INET 4
#define RELAY_AF_INET6 6

/* relay_target.flags */
#define RELAY_F_STRICT (1U << 0) /* forward only packets whose source is relay_target.expect (strict latching) */
#define RELAY_F_PASS_RTCP (1U << 1) /* pass RTCP (RFC 5761 §4: version 2, second byte 192..223) to user space, which
                                     * rewrites its SDES items (topology hiding); only RTP is forwarded here */

/* The key of relay_flows4 (IPv4 flows): the relay's own IPv4 address and UDP port a packet arrives at. 8 bytes. */
struct relay_addr4 {
	__be32 addr;    /* network order */
	__be16 port;    /* network order */
	__u8 pad[2];    /* zero */
};

/* An address and UDP port: the key of relay_flows (IPv6 flows: the relay's own address:port a packet arrives
 * at), and the three endpoints of a relay_target. 20 bytes. */
struct relay_addr {
	__u8 addr[16];  /* IPv4: addr[0..4], addr[4..16] zero */
	__be16 port;    /* network order */
	__u8 family;    /* RELAY_AF_INET or RELAY_AF_INET6 */
	__u8 pad;       /* zero */
};

/* relay_bans is keyed by a struct relay_addr with port 0: every packet from that address is dropped (value: the
 * ban's reason code, __u32). */

/* A flow's next hop as bpf_fib_lookup last answered it, cached by the PROGRAM in the flow's entry (user space
 * writes it zero): valid while gen equals the global relay_nh_gen, which user space bumps whenever the kernel
 * announces a neighbour, route, address or link change (so a change reaches the flows at their next packet), and
 * only for packets from ingress interface iif no longer than len (the lookup checked the MTU for that length). A
 * flow pays one bpf_fib_lookup per change instead of one per packet. 28 bytes, 4-aligned. */
struct relay_nh {
	__u32 gen;              /* relay_nh_gen when the next hop was cached; 0 = none (offset 0) */
	__u32 iif;              /* ingress ifindex of the lookup (offset 4) */
	__u32 oif;              /* egress ifindex (offset 8) */
	__u16 len;              /* the largest IP length the lookup's MTU check passed (offset 12) */
	__u8 smac[6];           /* egress interface's MAC (offset 14) */
	__u8 dmac[6];           /* next hop's MAC (offset 20) */
	__u8 pad[2];            /* zero (offset 26) */
};

/* The value of relay_flows (IPv6 flows): what to do with a packet that arrives at the key. 96 bytes. */
struct relay_target {
	struct relay_addr expect; /* the only source accepted when RELAY_F_STRICT (offset 0) */
	struct relay_addr from;   /* new source: the relay's address:port on the other side (offset 20) */
	struct relay_addr to;     /* new destination: the peer (offset 40) */
	__u32 flags;              /* RELAY_F_* (offset 60) */
	__u32 stats_index;        /* slot in relay_stats, < its max_entries (offset 64) */
	struct relay_nh nh;       /* the cached next hop (offset 68) */
};

/* The value of relay_flows4 (IPv4 flows): as struct relay_target with IPv4 addresses only. 56 bytes: with the
 * kernel's element header and the key, an entry is 112 bytes against relay_target's 152, so that a hit touches
 * a cache line less on average; at 100,000 flows, where the entries no longer fit in a core's cache, each line is
 * a miss (the live ladder measured our hit at 0.87-0.90 of the reference relay's there with the 96-byte value). */
struct relay_target4 {
	__be32 expect_addr;     /* the only source accepted when RELAY_F_STRICT (offset 0) */
	__be32 from_addr;       /* new source address: the relay's on the other side (offset 4) */
	__be32 to_addr;         /* new destination address: the peer's (offset 8) */
	__be16 expect_port;     /* (offset 12) */
	__be16 from_port;       /* (offset 14) */
	__be16 to_port;         /* (offset 16) */
	__u16 pad;              /* zero (offset 18) */
	__u32 flags;            /* RELAY_F_* (offset 20) */
	__u32 stats_index;      /* slot in relay_stats, < its max_entries (offset 24) */
	struct relay_nh nh;     /* the cached next hop (offset 28) */
};

/* The value of relay_stats (per CPU; user space sums the CPUs). 16 bytes. No time of the last packet: a clock
 * read (bpf_ktime_get_ns) would cost a hit as much again as the rest of the counting; user space tells when a
 * flow was last seen from its packet count growing between two reads. */
struct relay_flow_stats {
	__u64 packets;      /* packets forwarded */
	__u64 bytes;        /* UDP payload bytes forwarded (as the user-space relay counts) */
};

/* Index into relay_actions (per-CPU __u64 packet counters): what the program did and why. */
enum relay_action {
	RELAY_ACT_REDIRECT = 0, /* rewritten and redirected to another interface (bpf_redirect_map): NOT counted by
	                         * the program (a second per-CPU counter on every hit); user space derives it exactly
	                         * as every forwarded packet (the relay_stats of the flows, live and removed) less TX */
	RELAY_ACT_TX = 1,       /* rewritten and sent back out of the ingress interface (XDP_TX) */
	RELAY_ACT_PASS_MISS = 2,   /* UDP packet to an address:port with no flow */
	RELAY_ACT_PASS_SOURCE = 3, /* strict flow, packet from another source than expect */
	RELAY_ACT_PASS_FIB = 4,    /* bpf_fib_lookup did not succeed (no route/neighbour, forwarding off, MTU) */
	RELAY_ACT_PASS_TTL = 5,    /* TTL / hop limit <= 1 */
	RELAY_ACT_PASS_FRAG = 6,   /* IPv4 fragment */
	RELAY_ACT_PASS_OTHER = 7,  /* not IPv4/IPv6 UDP, truncated, IPv6 extension headers, cross-family target,
	                            * IPv6 UDP checksum 0, VLAN-tagged packet that would leave by another interface */
	RELAY_ACT_PASS_EGRESS = 8, /* the egress interface is not in relay_devmap: one the program is not attached
	                            * to, or one that cannot take XDP frames now (user space keeps in the map only
	                            * the interfaces whose driver accepts them, e.g. a veth only while its peer has
	                            * an XDP program or GRO on) */
	RELAY_ACT_PASS_CSUM = 9,   /* the UDP checksum is partial (CHECKSUM_PARTIAL: sent by a socket on this host
	                            * through a veth with tx checksum offload); only the kernel can complete it */
	RELAY_ACT_PASS_RTCP = 10,  /* RTCP multiplexed on a RELAY_F_PASS_RTCP flow: user space rewrites it */
	RELAY_ACT_MAX = 11,
};

/* The key of relay_drops: an interface relay_xdp is attached to, by its network namespace (the inode number of
 * /proc/self/ns/net) and ifindex. Both, because the xdp tracepoints fire for every namespace and ifindexes are
 * numbered per namespace: keyed by ifindex alone, another namespace's device of the same number (a container's,
 * another relay's) counted its losses as ours. 8 bytes. */
struct relay_iface_key {
	__u32 netns;
	__u32 ifindex;
};

/* The value of relay_drops (per CPU; entries inserted by user space, so events of other interfaces find no entry
 * and are not counted). Frames relay_xdp handed to the kernel (counted as REDIRECT or TX) that the kernel then
 * failed to send: without these the loss would be invisible. 32 bytes. */
struct relay_iface_drops {
	__u64 redirect_errors; /* xdp_redirect_err: the redirect itself failed (e.g. the target cannot take frames) */
	__u64 xmit_drops;      /* xdp_devmap_xmit: frames the egress driver refused (ndo_xdp_xmit), from here */
	__u64 tx_drops;        /* xdp_bulk_tx: XDP_TX frames the driver could not send back out */
	__u64 exceptions;      /* xdp_exception: the driver dropped an XDP_TX or XDP_REDIRECT frame */
};

#endif /* RELAY_ABI_H */
