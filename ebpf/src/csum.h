/* SPDX-License-Identifier: GPL-2.0-only */
/* Incremental Internet checksum update (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')).
 * All 16-bit words are taken as they lie in memory (network order): the one's-complement sum is
 * byte-order independent as long as every word is read the same way. */
#ifndef RELAY_CSUM_H
#define RELAY_CSUM_H

#include <linux/types.h>
#include <bpf/bpf_endian.h>

/* Folds a 32-bit one's-complement accumulator to 16 bits (not inverted). */
static __always_inline __u16 csum_fold32(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

/* Adds the change of one 16-bit word (old -> new) to the accumulator ~HC. */
static __always_inline __u32 csum_acc16(__u32 acc, __u16 old, __u16 new)
{
	return acc + (__u16)~old + new;
}

/* Adds the change of a 4-byte field to the accumulator. */
static __always_inline __u32 csum_acc32(__u32 acc, const __u8 *old, const __u8 *new)
{
	acc = csum_acc16(acc, *(const __u16 *)old, *(const __u16 *)new);
	acc = csum_acc16(acc, *(const __u16 *)(old + 2), *(const __u16 *)(new + 2));
	return acc;
}

/* Adds the change of a 16-byte field (an IPv6 address) to the accumulator. */
static __always_inline __u32 csum_acc128(__u32 acc, const __u8 *old, const __u8 *new)
{
#pragma unroll
	for (int i = 0; i < 16; i += 2)
		acc = csum_acc16(acc, *(const __u16 *)(old + i), *(const __u16 *)(new + i));
	return acc;
}

/* Starts an update of checksum field value `check`: returns ~HC as the accumulator. */
static __always_inline __u32 csum_start(__u16 check)
{
	return (__u16)~check;
}

/* Finishes an update: returns HC' = ~fold(acc). */
static __always_inline __u16 csum_finish(__u32 acc)
{
	return (__u16)~csum_fold32(acc);
}

/* The UDP pseudo-header sum, folded and not inverted: what the checksum field of a CHECKSUM_PARTIAL packet holds
 * (the stack leaves the rest of the sum to the "hardware"). `ulen` is the UDP length as in the header. */
static __always_inline __u16 csum_pseudo4(const __u8 *saddr, const __u8 *daddr, __u16 ulen)
{
	__u32 sum = *(const __u16 *)saddr + *(const __u16 *)(saddr + 2) + *(const __u16 *)daddr +
		    *(const __u16 *)(daddr + 2);

	/* IPPROTO_UDP (17) as the 16-bit word 0x0011 in network order, read as it would lie in memory. */
	sum += bpf_htons(17) + ulen;
	return csum_fold32(sum);
}

/* As csum_pseudo4 for IPv6 (RFC 8200 section 8.1: the upper-layer length is the UDP length). */
static __always_inline __u16 csum_pseudo6(const __u8 *saddr, const __u8 *daddr, __u16 ulen)
{
	__u32 sum = bpf_htons(17) + ulen;

#pragma unroll
	for (int i = 0; i < 16; i += 2)
		sum += *(const __u16 *)(saddr + i) + *(const __u16 *)(daddr + i);
	return csum_fold32(sum);
}

#endif /* RELAY_CSUM_H */
