// SPDX-License-Identifier: GPL-2.0-only
/*
 * reference_relay: the least an XDP media relay must do on a hit, as a yardstick for relay_xdp's cost
 * (`sbc-bench xdp-cost`; issue 15). Never attached by the relay.
 *
 * IPv4/UDP only: parse Ethernet, IPv4 (no options, no fragments) and UDP; look up the destination address:port in
 * ref_flows; rewrite source and destination address and port with incremental IP and UDP checksums (RFC 1624);
 * set both MACs from the map value (the next hop is kept in the map, refreshed by whoever writes it); count
 * packets and bytes in a per-CPU slot; redirect through a DEVMAP_HASH to the ifindex of the map value.
 * Anything else is XDP_PASS. No TTL decrement, no source check, no RTCP check, no ban map: those are relay_xdp's
 * own policy, which the comparison is meant to show the price of.
 */
#include <linux/bpf.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "relay_abi.h"
#include "csum.h"
#include "parse.h"

#ifndef REF_MAX_FLOWS
#define REF_MAX_FLOWS 131072 /* ref_flows entries: the live benchmark installs up to 100,000 flows */
#endif

/* Key of ref_flows: destination address and port as on the wire. 8 bytes. */
struct ref_key {
	__be32 addr;
	__be16 port;
	__u16 pad; /* zero */
};

/* Value of ref_flows: the rewrite and the next hop. 28 bytes. */
struct ref_target {
	__be32 saddr;   /* new source address */
	__be32 daddr;   /* new destination address */
	__be16 sport;   /* new source port */
	__be16 dport;   /* new destination port */
	__u32 ifindex;  /* egress interface (key of ref_devmap) */
	__u8 smac[6];   /* egress interface's MAC */
	__u8 dmac[6];   /* next hop's MAC */
};

struct ref_stats {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct ref_key);
	__type(value, struct ref_target);
	__uint(max_entries, REF_MAX_FLOWS);
} ref_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct ref_stats);
	__uint(max_entries, 1);
} ref_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__type(key, __u32);
	__type(value, struct bpf_devmap_val);
	__uint(max_entries, RELAY_MAX_IFACES);
} ref_devmap SEC(".maps");

SEC("xdp")
int reference_relay(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	struct ref_key key = {};
	struct ref_target *t;
	struct ref_stats *s;
	__u32 zero = 0, acc;
	__u16 check;

	if ((void *)(udp + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || ip->version != 4 || ip->ihl != 5 || ip->protocol != IPPROTO_UDP ||
	    (ip->frag_off & bpf_htons(RELAY_IP_MF | RELAY_IP_OFFSET)))
		return XDP_PASS;
	key.addr = ip->daddr;
	key.port = udp->dest;
	t = bpf_map_lookup_elem(&ref_flows, &key);
	if (!t)
		return XDP_PASS;

	if (udp->check) {
		acc = csum_start(udp->check);
		acc = csum_acc32(acc, (const __u8 *)&ip->saddr, (const __u8 *)&t->saddr);
		acc = csum_acc32(acc, (const __u8 *)&ip->daddr, (const __u8 *)&t->daddr);
		acc = csum_acc16(acc, udp->source, t->sport);
		acc = csum_acc16(acc, udp->dest, t->dport);
		check = csum_finish(acc);
		udp->check = check ? check : 0xffff;
	}
	acc = csum_start(ip->check);
	acc = csum_acc32(acc, (const __u8 *)&ip->saddr, (const __u8 *)&t->saddr);
	acc = csum_acc32(acc, (const __u8 *)&ip->daddr, (const __u8 *)&t->daddr);
	ip->check = csum_finish(acc);
	ip->saddr = t->saddr;
	ip->daddr = t->daddr;
	udp->source = t->sport;
	udp->dest = t->dport;
	__builtin_memcpy(eth->h_dest, t->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, t->smac, ETH_ALEN);

	s = bpf_map_lookup_elem(&ref_stats, &zero);
	if (s) {
		s->packets += 1;
		s->bytes += bpf_ntohs(udp->len);
	}
	return bpf_redirect_map(&ref_devmap, t->ifindex, XDP_PASS);
}

char LICENSE[] SEC("license") = "GPL";
