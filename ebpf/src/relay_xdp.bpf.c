// SPDX-License-Identifier: GPL-2.0-only
/*
 * relay_xdp: the XDP fast path of the media relay (DESIGN.md "Media fast path").
 *
 * A UDP packet whose destination address:port is a relay endpoint with a flow in relay_flows (and, for a
 * strict flow, whose source is the latched peer) is rewritten as the user-space relay would send it (new
 * source = the relay's endpoint on the other side, new destination = the other peer, TTL/hop limit - 1,
 * checksums updated incrementally), its MACs set from the flow's next hop, and sent: XDP_TX when the egress
 * interface is the ingress one, else bpf_redirect_map into relay_devmap.
 *
 * The next hop (egress interface, MACs) is bpf_fib_lookup's answer, cached in the flow's entry (struct
 * relay_nh) and valid while relay_nh_gen is what it was at the lookup: user space bumps it on every
 * neighbour, route, address or link change the kernel announces, and the flow's next packet looks up again. So
 * a hit costs one lookup per change instead of one per packet (bpf_fib_lookup is most of a hit's cost), and a
 * changed neighbour or route still reaches every flow at its next packet.
 *
 * On a flow marked RELAY_F_PASS_RTCP, RTCP multiplexed on the RTP port (RFC 5761 §4: version 2 and a second
 * byte in 192..223, which no RTP payload type used with multiplexing gives) is passed: user space rewrites its
 * SDES items before forwarding (topology hiding), which this program cannot do. RTP is forwarded here as usual.
 *
 * Everything else is XDP_PASS, untouched: every check (flow, source, TTL, partial checksum, route, neighbour,
 * devmap) is done BEFORE the first write to the packet, so a passed packet is always the original. The program
 * drops only the packets of banned sources (relay_bans, written by user space from the signalling side's edge
 * guard): a packet that is not forwarded is checked against it before it is passed, so a flood from a banned
 * source costs the sockets and the processes nothing, and forwarded media costs no extra lookup.
 *
 * The egress interface (also the ingress one, for XDP_TX) must be in relay_devmap, where user space keeps only
 * the interfaces whose driver takes XDP frames now: a veth, for one, takes them only while its peer has an XDP
 * program or GRO on, and silently drops them otherwise. The kernel may still fail to send a frame after we
 * returned XDP_REDIRECT or XDP_TX (a full ring, a device that changed): the tracing programs at the end count
 * those per interface in relay_drops, so that no loss is invisible.
 *
 * A packet sent by a socket on this host through a veth with tx checksum offload carries a partial UDP checksum
 * (the pseudo-header sum only; CHECKSUM_PARTIAL, which XDP cannot see): rewritten and redirected, it would
 * arrive with a bad checksum and be dropped by the receiver. Such a packet is recognised (its checksum field
 * equals the pseudo-header sum; a complete checksum does so by chance once in 65535 packets, which then only
 * takes the slower path) and passed.
 *
 * VLAN: one 802.1Q/802.1AD tag is parsed. A tagged packet is forwarded only when the egress interface is the
 * ingress one (XDP_TX, tag kept: same VLAN out as in); a tagged packet that would leave by another interface
 * (e.g. a VLAN sub-interface, whose tag we would have to rewrite) is passed (RELAY_ACT_PASS_OTHER). An
 * untagged packet leaves untagged.
 *
 * Requirements on the host: forwarding enabled on the ingress interface (net.ipv4.conf.IF.forwarding /
 * net.ipv6.conf.IF.forwarding), else bpf_fib_lookup answers FWD_DISABLED and every packet is passed; the peer
 * must be in the neighbour table (else passed: the user-space send resolves it).
 */
#include <linux/bpf.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "relay_abi.h"
#include "csum.h"
#include "parse.h"

#define RELAY_SYS_AF_INET 2
#define RELAY_SYS_AF_INET6 10

/* relay_flows4: relay IPv4 address:port a packet arrives at -> where to send it (written only by user space). A
 * map of its own with an 8-byte key and a 56-byte value: hashing and comparing the 20-byte key of relay_flows was a
 * tenth of an IPv4 hit's cost, and the smaller entry is a cache line less per hit (see struct relay_target4). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct relay_addr4);
	__type(value, struct relay_target4);
	__uint(max_entries, RELAY_MAX_FLOWS);
} relay_flows4 SEC(".maps");

/* relay_flows: relay IPv6 address:port a packet arrives at -> where to send it (written only by user space). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct relay_addr);
	__type(value, struct relay_target);
	__uint(max_entries, RELAY_MAX_FLOWS);
} relay_flows SEC(".maps");

/* relay_stats: per-CPU per-flow counters, slot = relay_target.stats_index (allocated by user space). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct relay_flow_stats);
	__uint(max_entries, RELAY_MAX_FLOWS);
} relay_stats SEC(".maps");

/* relay_actions: per-CPU packet counters per enum relay_action (what the program did and why). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, RELAY_ACT_MAX);
} relay_actions SEC(".maps");

/* relay_devmap: ifindex -> same ifindex, for every interface the program is attached to that can take XDP frames
 * now (redirect and XDP_TX targets; written only by user space). */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__type(key, __u32);
	__type(value, struct bpf_devmap_val);
	__uint(max_entries, RELAY_MAX_IFACES);
} relay_devmap SEC(".maps");

/* relay_nh_gen: generation of the routing state (neighbours, routes, addresses, links), bumped by user space on
 * every change the kernel announces; never 0 once user space set it up. A global (the object's only .bss, an
 * array map of one slot to user space) rather than a map of its own: the program reads it with one load, no
 * helper call, which would clobber registers the hit path keeps live. */
volatile __u32 relay_nh_gen;

/* relay_bans: source address (port 0) -> ban reason code; its packets are dropped (written only by user space). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct relay_addr);
	__type(value, __u32);
	__uint(max_entries, RELAY_MAX_BANS);
} relay_bans SEC(".maps");

/* relay_ban_count: slot 0 = entries in relay_bans (kept by user space), so no lookup is made while there are none. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} relay_ban_count SEC(".maps");

/* relay_ban_drops: per-CPU packets dropped from banned sources, per reason code. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, RELAY_BAN_REASONS);
} relay_ban_drops SEC(".maps");

/* Whether the packet comes from a banned source; if so counts it under the ban's reason. */
static __always_inline int relay_banned(void *data, void *data_end)
{
	struct relay_addr key = {};
	__u32 zero = 0, slot;
	__u32 *n, *reason;
	__u64 *c;

	n = bpf_map_lookup_elem(&relay_ban_count, &zero);
	if (!n || *n == 0)
		return 0;
	if (relay_parse_source(data, data_end, &key))
		return 0;
	reason = bpf_map_lookup_elem(&relay_bans, &key);
	if (!reason)
		return 0;
	slot = *reason < RELAY_BAN_REASONS ? *reason : 0;
	c = bpf_map_lookup_elem(&relay_ban_drops, &slot);
	if (c)
		*c += 1;
	return 1;
}

static __always_inline void relay_count(__u32 act)
{
	__u64 *c = bpf_map_lookup_elem(&relay_actions, &act);

	if (c)
		*c += 1;
}

static __always_inline int relay_addr_eq6(const __u8 *a, const struct in6_addr *b)
{
	const __u32 *x = (const __u32 *)a;

	return x[0] == b->in6_u.u6_addr32[0] && x[1] == b->in6_u.u6_addr32[1] &&
	       x[2] == b->in6_u.u6_addr32[2] && x[3] == b->in6_u.u6_addr32[3];
}

/* Looks the next hop of a flow up with bpf_fib_lookup (as the kernel would route the rewritten packet from
 * from:sport to to:dport, received on ingress, tot_len bytes long) and caches it in nh under generation gen;
 * nonzero when there is none (no route, no neighbour, forwarding off, MTU exceeded): the packet is then passed.
 * from and to are 4 (v4) or 16 bytes. Another CPU may fill the same entry at the same time; both write the same
 * answer, and nh->gen is written last, after a compiler barrier (x86 keeps the store order), so a reader that sees
 * the generation sees the hop. */
static __always_inline int relay_next_hop(struct xdp_md *ctx, struct relay_pkt *p, struct relay_nh *nh,
					  const void *from, const void *to, __be16 sport, __be16 dport,
					  __u32 ingress, __u32 tot_len, __u32 gen, const int v4)
{
	struct bpf_fib_lookup fib = {};

	fib.ifindex = ingress;
	fib.l4_protocol = IPPROTO_UDP;
	fib.sport = sport;
	fib.dport = dport;
	fib.tot_len = tot_len;
	if (v4) {
		fib.family = RELAY_SYS_AF_INET;
		fib.tos = p->ip4->tos;
		__builtin_memcpy(&fib.ipv4_src, from, 4);
		__builtin_memcpy(&fib.ipv4_dst, to, 4);
	} else {
		fib.family = RELAY_SYS_AF_INET6;
		fib.flowinfo = *(__be32 *)p->ip6 & bpf_htonl(0x0FFFFFFF);
		__builtin_memcpy(fib.ipv6_src, from, 16);
		__builtin_memcpy(fib.ipv6_dst, to, 16);
	}
	if (bpf_fib_lookup(ctx, &fib, sizeof(fib), 0) != BPF_FIB_LKUP_RET_SUCCESS)
		return -1;
	/* Within one generation the largest length that passed is kept (RTP sizes vary a little). */
	if (nh->gen == gen && nh->iif == ingress && nh->oif == fib.ifindex && nh->len > tot_len)
		tot_len = nh->len;
	nh->iif = ingress;
	nh->oif = fib.ifindex;
	nh->len = tot_len;
	__builtin_memcpy(nh->smac, fib.smac, ETH_ALEN);
	__builtin_memcpy(nh->dmac, fib.dmac, ETH_ALEN);
	asm volatile("" ::: "memory");
	nh->gen = gen;
	return 0;
}

/* Whether a packet on a RELAY_F_PASS_RTCP flow is RTCP multiplexed on the RTP port (RFC 5761 §4): the second byte
 * first, since RTP's (marker and payload type: outside 192..223) ends the test. */
static __always_inline int relay_is_rtcp(struct udphdr *udp, void *data_end)
{
	__u8 *rtp = (__u8 *)(udp + 1);

	return (void *)(rtp + 2) <= data_end && (__u8)(rtp[1] - 192) < 32 && (rtp[0] >> 6) == 2 &&
	       bpf_ntohs(udp->len) >= sizeof(*udp) + 2;
}

/* The part of a forward common to both families once the flow's checks passed: the next hop (cached, or looked up
 * and cached), the VLAN rule and the redirect. Returns XDP_REDIRECT or XDP_TX with *act set, or XDP_PASS with *act
 * the reason (the packet still untouched). */
static __always_inline int relay_egress(struct xdp_md *ctx, struct relay_pkt *p, struct relay_nh *nh,
					const void *from, const void *to, __be16 sport, __be16 dport,
					__u32 tot_len, __u32 *act, const int v4)
{
	__u32 ingress = ctx->ingress_ifindex;
	__u32 egress, gen;
	long ret;

	/* Read before a lookup, so that a change announced meanwhile makes the next packet look up again. */
	gen = relay_nh_gen;
	if (!gen || nh->gen != gen || nh->iif != ingress || tot_len > nh->len) {
		if (!gen || relay_next_hop(ctx, p, nh, from, to, sport, dport, ingress, tot_len, gen, v4)) {
			*act = RELAY_ACT_PASS_FIB;
			return XDP_PASS;
		}
	}
	egress = nh->oif;
	/* A tagged packet leaving by another interface would need another tag: let the kernel do it. */
	if (p->vlan && egress != ingress) {
		*act = RELAY_ACT_PASS_OTHER;
		return XDP_PASS;
	}
	/* XDP_TX needs of the ingress what a redirect needs of the egress (a veth sends both to its peer).
	 * bpf_redirect_map looks the egress up in relay_devmap (XDP_PASS when it is not there) and only records
	 * the target: the frame goes after the program returns, so the rewrite that follows still goes with it, and
	 * the one lookup serves as check and redirect. For XDP_TX the recorded target is not used. */
	ret = bpf_redirect_map(&relay_devmap, egress, XDP_PASS);
	if (ret != XDP_REDIRECT) {
		*act = RELAY_ACT_PASS_EGRESS;
		return XDP_PASS;
	}
	if (egress == ingress) {
		*act = RELAY_ACT_TX;
		return XDP_TX;
	}
	*act = RELAY_ACT_REDIRECT;
	return XDP_REDIRECT;
}

/* Sets the MACs of the next hop and counts the forwarded packet in the flow's slot. */
static __always_inline void relay_finish(struct relay_pkt *p, struct relay_nh *nh, __u32 slot, __u16 ulen)
{
	struct relay_flow_stats *s;

	__builtin_memcpy(p->eth->h_dest, nh->dmac, ETH_ALEN);
	__builtin_memcpy(p->eth->h_source, nh->smac, ETH_ALEN);
	s = bpf_map_lookup_elem(&relay_stats, &slot);
	if (s) {
		s->packets += 1;
		s->bytes += ulen > sizeof(struct udphdr) ? ulen - sizeof(struct udphdr) : 0;
	}
}

/* Decides what to do with a parsed IPv4 UDP packet (the general path: a VLAN tag, XDP_TX, a next hop to look up,
 * and every reason to pass); on a hit rewrites it and returns XDP_TX/XDP_REDIRECT with *act set, else returns
 * XDP_PASS with *act the reason (and the packet untouched). */
static __always_inline int relay_forward4(struct xdp_md *ctx, struct relay_pkt *p, __u32 *act)
{
	struct relay_addr4 key = {};
	struct relay_target4 *t;
	struct udphdr *udp = p->udp;
	struct iphdr *ip = p->ip4;
	__u32 acc;
	__u16 check, old_ttl_word;
	int ret;

	key.addr = ip->daddr;
	key.port = udp->dest;
	t = bpf_map_lookup_elem(&relay_flows4, &key);
	if (!t) {
		*act = RELAY_ACT_PASS_MISS;
		return XDP_PASS;
	}
	/* relay_flows4 has IPv4 targets only (user space refuses others: Xdp::install, XdpError::CrossFamily). */
	if ((t->flags & RELAY_F_PASS_RTCP) && relay_is_rtcp(udp, (void *)(long)ctx->data_end)) {
		*act = RELAY_ACT_PASS_RTCP;
		return XDP_PASS;
	}
	if ((t->flags & RELAY_F_STRICT) && (t->expect_addr != ip->saddr || t->expect_port != udp->source)) {
		*act = RELAY_ACT_PASS_SOURCE;
		return XDP_PASS;
	}
	if (ip->ttl <= 1) {
		*act = RELAY_ACT_PASS_TTL;
		return XDP_PASS;
	}
	if (udp->check && udp->check == csum_pseudo4((const __u8 *)&ip->saddr, (const __u8 *)&ip->daddr, udp->len)) {
		*act = RELAY_ACT_PASS_CSUM;
		return XDP_PASS;
	}
	ret = relay_egress(ctx, p, &t->nh, &t->from_addr, &t->to_addr, t->from_port, t->to_port,
			   bpf_ntohs(ip->tot_len), act, 1);
	if (ret == XDP_PASS)
		return ret;

	/* Every check passed: rewrite. Checksums first (they read the old values from the packet). */
	old_ttl_word = *(__u16 *)&ip->ttl;
	if (udp->check) {
		acc = csum_start(udp->check);
		acc = csum_acc32(acc, (const __u8 *)&ip->saddr, (const __u8 *)&t->from_addr);
		acc = csum_acc32(acc, (const __u8 *)&ip->daddr, (const __u8 *)&t->to_addr);
		acc = csum_acc16(acc, udp->source, t->from_port);
		acc = csum_acc16(acc, udp->dest, t->to_port);
		check = csum_finish(acc);
		udp->check = check ? check : 0xffff;
	}
	acc = csum_start(ip->check);
	acc = csum_acc32(acc, (const __u8 *)&ip->saddr, (const __u8 *)&t->from_addr);
	acc = csum_acc32(acc, (const __u8 *)&ip->daddr, (const __u8 *)&t->to_addr);
	ip->ttl--;
	acc = csum_acc16(acc, old_ttl_word, *(__u16 *)&ip->ttl);
	ip->check = csum_finish(acc);
	ip->saddr = t->from_addr;
	ip->daddr = t->to_addr;
	udp->source = t->from_port;
	udp->dest = t->to_port;
	relay_finish(p, &t->nh, t->stats_index, bpf_ntohs(udp->len));
	return ret;
}

/* As relay_forward4, for IPv6 (relay_flows, struct relay_target). */
static __always_inline int relay_forward6(struct xdp_md *ctx, struct relay_pkt *p, __u32 *act)
{
	struct relay_addr key = { .family = RELAY_AF_INET6 };
	struct relay_target *t;
	struct udphdr *udp = p->udp;
	struct ipv6hdr *ip6 = p->ip6;
	__u32 acc;
	__u16 check;
	int ret;

	if (!ip6)
		goto other;
	key.port = udp->dest;
	__builtin_memcpy(key.addr, &ip6->daddr, 16);
	t = bpf_map_lookup_elem(&relay_flows, &key);
	if (!t) {
		*act = RELAY_ACT_PASS_MISS;
		return XDP_PASS;
	}
	/* Same family in and out only. */
	if (t->from.family != RELAY_AF_INET6 || t->to.family != RELAY_AF_INET6)
		goto other;
	if ((t->flags & RELAY_F_PASS_RTCP) && relay_is_rtcp(udp, (void *)(long)ctx->data_end)) {
		*act = RELAY_ACT_PASS_RTCP;
		return XDP_PASS;
	}
	if ((t->flags & RELAY_F_STRICT) &&
	    (t->expect.family != RELAY_AF_INET6 || !relay_addr_eq6(t->expect.addr, &ip6->saddr) ||
	     t->expect.port != udp->source)) {
		*act = RELAY_ACT_PASS_SOURCE;
		return XDP_PASS;
	}
	if (ip6->hop_limit <= 1) {
		*act = RELAY_ACT_PASS_TTL;
		return XDP_PASS;
	}
	/* A zero UDP checksum is invalid over IPv6 and cannot be updated incrementally. */
	if (udp->check == 0)
		goto other;
	if (udp->check == csum_pseudo6((const __u8 *)&ip6->saddr, (const __u8 *)&ip6->daddr, udp->len)) {
		*act = RELAY_ACT_PASS_CSUM;
		return XDP_PASS;
	}
	ret = relay_egress(ctx, p, &t->nh, t->from.addr, t->to.addr, t->from.port, t->to.port,
			   bpf_ntohs(ip6->payload_len) + sizeof(struct ipv6hdr), act, 0);
	if (ret == XDP_PASS)
		return ret;

	/* Every check passed: rewrite. Checksums first (they read the old values from the packet). */
	acc = csum_start(udp->check);
	acc = csum_acc128(acc, (const __u8 *)&ip6->saddr, t->from.addr);
	acc = csum_acc128(acc, (const __u8 *)&ip6->daddr, t->to.addr);
	acc = csum_acc16(acc, udp->source, t->from.port);
	acc = csum_acc16(acc, udp->dest, t->to.port);
	check = csum_finish(acc);
	udp->check = check ? check : 0xffff;
	ip6->hop_limit--;
	__builtin_memcpy(&ip6->saddr, t->from.addr, 16);
	__builtin_memcpy(&ip6->daddr, t->to.addr, 16);
	udp->source = t->from.port;
	udp->dest = t->to.port;
	relay_finish(p, &t->nh, t->stats_index, bpf_ntohs(udp->len));
	return ret;

other:
	*act = RELAY_ACT_PASS_OTHER;
	return XDP_PASS;
}

/* The IPv4 hit path, the common case written out on its own: an untagged Ethernet frame, IPv4 without options or
 * fragments, UDP, a flow in relay_flows4, every policy check passed and the next hop cached and valid. Returns
 * XDP_REDIRECT or XDP_TX with the packet rewritten and counted, or -1 with the packet untouched and nothing counted
 * when it is anything else: relay_forward4 then does everything again and counts why. Written apart so that the
 * compiler keeps the hit in registers (the general path's act out-parameter, the VLAN and family branches and the
 * fib lookup's stack frame made it spill to the stack) and so that the two checksums share the address change.
 *
 * relay_flows4's targets are IPv4 by their type (struct relay_target4). */
static __always_inline int relay_fast4(struct xdp_md *ctx, void *data, void *data_end)
{
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	struct relay_addr4 key = {};
	struct relay_flow_stats *s;
	struct relay_target4 *t;
	__u32 ingress, egress, gen, tot_len, ulen, flags, addr_acc, acc, slot;
	__u16 check, old_ttl_word;
	long ret;

	if ((void *)(udp + 1) > data_end)
		return -1;
	/* Version 4 and ihl 5 in one byte: no options. */
	if (eth->h_proto != bpf_htons(ETH_P_IP) || *(__u8 *)ip != 0x45 || ip->protocol != IPPROTO_UDP ||
	    (ip->frag_off & bpf_htons(RELAY_IP_MF | RELAY_IP_OFFSET)))
		return -1;
	/* As relay_parse: the datagram all there, the UDP length within it. */
	tot_len = bpf_ntohs(ip->tot_len);
	ulen = bpf_ntohs(udp->len);
	if ((void *)ip + tot_len > data_end || ulen < sizeof(*udp) || ulen + sizeof(*ip) > tot_len)
		return -1;
	key.addr = ip->daddr;
	key.port = udp->dest;
	t = bpf_map_lookup_elem(&relay_flows4, &key);
	if (!t)
		return -1;
	flags = t->flags;
	if (flags & RELAY_F_PASS_RTCP) {
		__u8 *rtp = (__u8 *)(udp + 1);

		/* As relay_is_rtcp: RTP's second byte (outside 192..223) ends the test. */
		if ((void *)(rtp + 2) <= data_end && (__u8)(rtp[1] - 192) < 32 && (rtp[0] >> 6) == 2 &&
		    ulen >= sizeof(*udp) + 2)
			return -1;
	}
	if ((flags & RELAY_F_STRICT) && (t->expect_addr != ip->saddr || t->expect_port != udp->source))
		return -1;
	if (ip->ttl <= 1)
		return -1;
	if (udp->check && udp->check == csum_pseudo4((const __u8 *)&ip->saddr, (const __u8 *)&ip->daddr, udp->len))
		return -1;
	ingress = ctx->ingress_ifindex;
	gen = relay_nh_gen;
	if (!gen || t->nh.gen != gen || t->nh.iif != ingress || tot_len > t->nh.len)
		return -1;
	egress = t->nh.oif;
	/* As relay_egress: the redirect's devmap lookup is the check that the egress takes XDP frames. */
	ret = bpf_redirect_map(&relay_devmap, egress, XDP_PASS);
	if (ret != XDP_REDIRECT)
		return -1;

	/* The address change is common to both checksums (the UDP pseudo-header has the same addresses). */
	addr_acc = csum_acc32(0, (const __u8 *)&ip->saddr, (const __u8 *)&t->from_addr);
	addr_acc = csum_acc32(addr_acc, (const __u8 *)&ip->daddr, (const __u8 *)&t->to_addr);
	if (udp->check) {
		acc = csum_start(udp->check) + addr_acc;
		acc = csum_acc16(acc, udp->source, t->from_port);
		acc = csum_acc16(acc, udp->dest, t->to_port);
		check = csum_finish(acc);
		udp->check = check ? check : 0xffff;
	}
	old_ttl_word = *(__u16 *)&ip->ttl;
	ip->ttl--;
	acc = csum_start(ip->check) + addr_acc;
	acc = csum_acc16(acc, old_ttl_word, *(__u16 *)&ip->ttl);
	ip->check = csum_finish(acc);
	ip->saddr = t->from_addr;
	ip->daddr = t->to_addr;
	udp->source = t->from_port;
	udp->dest = t->to_port;
	/* Word reads: nh.smac is 2-aligned in the map value, nh.dmac 4-aligned (struct ethhdr is packed, so clang still
	 * splits some stores into bytes). */
	*(__u32 *)eth->h_dest = *(const __u32 *)t->nh.dmac;
	*(__u16 *)(eth->h_dest + 4) = *(const __u16 *)(t->nh.dmac + 4);
	*(__u16 *)eth->h_source = *(const __u16 *)t->nh.smac;
	*(__u32 *)(eth->h_source + 2) = *(const __u32 *)(t->nh.smac + 2);

	slot = t->stats_index;
	s = bpf_map_lookup_elem(&relay_stats, &slot);
	if (s) {
		s->packets += 1;
		s->bytes += ulen - sizeof(*udp);
	}
	/* A redirect is not counted in relay_actions: user space derives it from the per-flow counters (see
	 * RELAY_ACT_REDIRECT). */
	if (egress == ingress) {
		relay_count(RELAY_ACT_TX);
		return XDP_TX;
	}
	return ret;
}

SEC("xdp")
int relay_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct relay_pkt p = {};
	__u32 act;
	int ret;

	ret = relay_fast4(ctx, data, data_end);
	if (ret >= 0)
		return ret;
	act = relay_parse(data, data_end, &p);
	if (!act) {
		ret = p.ip4 ? relay_forward4(ctx, &p, &act) : relay_forward6(ctx, &p, &act);
		if (ret != XDP_PASS) {
			/* Forwarded, counted in relay_stats; REDIRECT is derived from those by user space. */
			if (act == RELAY_ACT_TX)
				relay_count(act);
			return ret;
		}
	}
	/* Not forwarded: a banned source's packet goes no further (not counted as passed). */
	if (relay_banned(data, data_end))
		return XDP_DROP;
	relay_count(act);
	return XDP_PASS;
}

/* The kernel's side of a redirect or XDP_TX, after relay_xdp returned: tp_btf programs on the xdp tracepoints
 * (arguments as in include/trace/events/xdp.h) count the frames it failed to send, per interface of ours. */

/* Only the fields we read; CO-RE (preserve_access_index) finds their offsets in the running kernel's BTF. */
struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct net {
	struct ns_common ns;
} __attribute__((preserve_access_index));

struct net_device {
	int ifindex;
	struct {
		struct net *net;
	} nd_net;
} __attribute__((preserve_access_index));

/* relay_drops: (netns, ifindex) of an interface relay_xdp is attached to -> frames lost after it (entries inserted
 * only by user space; the tracing programs only add to them). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__type(key, struct relay_iface_key);
	__type(value, struct relay_iface_drops);
	__uint(max_entries, RELAY_MAX_IFACES);
} relay_drops SEC(".maps");

static __always_inline struct relay_iface_drops *relay_drops_of(const struct net_device *dev)
{
	struct relay_iface_key key = { .ifindex = dev->ifindex };
	struct net *net = dev->nd_net.net;

	if (!net)
		return 0;
	key.netns = net->ns.inum;
	return bpf_map_lookup_elem(&relay_drops, &key);
}

/* xdp_redirect_err(dev, xdp, tgt, err, map_type, map_id, index): the redirect from dev failed, one frame. */
SEC("tp_btf/xdp_redirect_err")
int relay_redirect_err(__u64 *ctx)
{
	struct relay_iface_drops *d = relay_drops_of((const struct net_device *)ctx[0]);

	if (d)
		d->redirect_errors += 1;
	return 0;
}

/* xdp_devmap_xmit(from_dev, to_dev, sent, drops, err): a bulk of frames redirected from from_dev was sent. */
SEC("tp_btf/xdp_devmap_xmit")
int relay_devmap_xmit(__u64 *ctx)
{
	struct relay_iface_drops *d = relay_drops_of((const struct net_device *)ctx[0]);
	int drops = (int)ctx[3];

	if (d && drops > 0)
		d->xmit_drops += drops;
	return 0;
}

/* xdp_bulk_tx(dev, sent, drops, err): a bulk of XDP_TX frames was sent back out of dev. */
SEC("tp_btf/xdp_bulk_tx")
int relay_bulk_tx(__u64 *ctx)
{
	struct relay_iface_drops *d = relay_drops_of((const struct net_device *)ctx[0]);
	int drops = (int)ctx[2];

	if (d && drops > 0)
		d->tx_drops += drops;
	return 0;
}

/* xdp_exception(dev, xdp, act): the driver dropped a frame; ours return only PASS, TX and REDIRECT. */
SEC("tp_btf/xdp_exception")
int relay_exception(__u64 *ctx)
{
	struct relay_iface_drops *d = relay_drops_of((const struct net_device *)ctx[0]);
	__u32 act = (__u32)ctx[2];

	if (d && (act == XDP_TX || act == XDP_REDIRECT))
		d->exceptions += 1;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
