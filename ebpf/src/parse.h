/* SPDX-License-Identifier: GPL-2.0-only */
/* Header parsing for the relay's XDP program: Ethernet, one optional VLAN tag, IPv4 or IPv6, UDP.
 * Every access is bounds-checked against data_end; anything unexpected makes the parser return -1 and the
 * caller passes the packet to the kernel. */
#ifndef RELAY_PARSE_H
#define RELAY_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "relay_abi.h"

#ifndef ETH_P_8021Q
#define ETH_P_8021Q 0x8100
#endif
#ifndef ETH_P_8021AD
#define ETH_P_8021AD 0x88A8
#endif
#define RELAY_IP_MF 0x2000
#define RELAY_IP_OFFSET 0x1fff

struct relay_vlan_hdr {
	__be16 tci;
	__be16 encap_proto;
};

/* The headers of one packet. Exactly one of ip4/ip6 is set. */
struct relay_pkt {
	struct ethhdr *eth;
	int vlan;            /* 1 if the frame carries one 802.1Q/802.1AD tag */
	struct iphdr *ip4;
	struct ipv6hdr *ip6;
	struct udphdr *udp;
	__u8 family;         /* RELAY_AF_INET or RELAY_AF_INET6 */
};

/* Parse return codes: 0 = UDP packet parsed; otherwise the relay_action to count. */
static __always_inline int relay_parse(void *data, void *data_end, struct relay_pkt *p)
{
	struct ethhdr *eth = data;
	void *l3;
	__be16 proto;

	if ((void *)(eth + 1) > data_end)
		return RELAY_ACT_PASS_OTHER;
	p->eth = eth;
	proto = eth->h_proto;
	l3 = eth + 1;
	p->vlan = 0;
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		struct relay_vlan_hdr *vh = l3;

		if ((void *)(vh + 1) > data_end)
			return RELAY_ACT_PASS_OTHER;
		proto = vh->encap_proto;
		l3 = vh + 1;
		p->vlan = 1;
		/* A second tag (QinQ) is not handled: the inner proto is not IP, so it falls through to pass. */
	}

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = l3;
		__u32 ihl, tot_len, ulen;

		if ((void *)(ip + 1) > data_end)
			return RELAY_ACT_PASS_OTHER;
		if (ip->version != 4)
			return RELAY_ACT_PASS_OTHER;
		ihl = ip->ihl;
		if (ihl < 5)
			return RELAY_ACT_PASS_OTHER;
		if (ip->protocol != IPPROTO_UDP)
			return RELAY_ACT_PASS_OTHER;
		if (ip->frag_off & bpf_htons(RELAY_IP_MF | RELAY_IP_OFFSET))
			return RELAY_ACT_PASS_FRAG;
		/* Options are kept as they are: the UDP header follows them (ihl is 5..15 words). */
		p->udp = (void *)ip + ihl * 4;
		if ((void *)(p->udp + 1) > data_end)
			return RELAY_ACT_PASS_OTHER;
		/* The datagram must be all there (a frame may carry padding after it, not less). */
		tot_len = bpf_ntohs(ip->tot_len);
		ulen = bpf_ntohs(p->udp->len);
		if (tot_len < ihl * 4 + sizeof(struct udphdr) || (void *)ip + tot_len > data_end)
			return RELAY_ACT_PASS_OTHER;
		if (ulen < sizeof(struct udphdr) || ulen > tot_len - ihl * 4)
			return RELAY_ACT_PASS_OTHER;
		p->ip4 = ip;
		p->ip6 = NULL;
		p->family = RELAY_AF_INET;
		return 0;
	}
	if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;
		__u32 plen, ulen;

		if ((void *)(ip6 + 1) > data_end)
			return RELAY_ACT_PASS_OTHER;
		if (ip6->version != 6)
			return RELAY_ACT_PASS_OTHER;
		/* No extension headers: anything but UDP right after the fixed header is passed. */
		if (ip6->nexthdr != IPPROTO_UDP)
			return RELAY_ACT_PASS_OTHER;
		p->udp = (void *)(ip6 + 1);
		if ((void *)(p->udp + 1) > data_end)
			return RELAY_ACT_PASS_OTHER;
		plen = bpf_ntohs(ip6->payload_len);
		ulen = bpf_ntohs(p->udp->len);
		if ((void *)(p->udp) + plen > data_end || ulen < sizeof(struct udphdr) || ulen > plen)
			return RELAY_ACT_PASS_OTHER;
		p->ip4 = NULL;
		p->ip6 = ip6;
		p->family = RELAY_AF_INET6;
		return 0;
	}
	return RELAY_ACT_PASS_OTHER;
}

/* The source address of an IPv4 or IPv6 packet (any protocol), as a relay_addr with port 0, for the ban map.
 * Returns 0 when found, -1 for anything else (ARP, truncated). */
static __always_inline int relay_parse_source(void *data, void *data_end, struct relay_addr *key)
{
	struct ethhdr *eth = data;
	void *l3;
	__be16 proto;

	if ((void *)(eth + 1) > data_end)
		return -1;
	proto = eth->h_proto;
	l3 = eth + 1;
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		struct relay_vlan_hdr *vh = l3;

		if ((void *)(vh + 1) > data_end)
			return -1;
		proto = vh->encap_proto;
		l3 = vh + 1;
	}
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = l3;

		if ((void *)(ip + 1) > data_end)
			return -1;
		__builtin_memcpy(key->addr, &ip->saddr, 4);
		key->family = RELAY_AF_INET;
		return 0;
	}
	if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;

		if ((void *)(ip6 + 1) > data_end)
			return -1;
		__builtin_memcpy(key->addr, &ip6->saddr, 16);
		key->family = RELAY_AF_INET6;
		return 0;
	}
	return -1;
}

#endif /* RELAY_PARSE_H */
