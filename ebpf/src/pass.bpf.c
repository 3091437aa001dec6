// SPDX-License-Identifier: GPL-2.0-only
/*
 * Two trivial XDP programs:
 * - relay_pass: XDP_PASS. Attached to the PEER of a veth that relay_xdp redirects into: veth only accepts
 *   XDP_REDIRECTed frames (ndo_xdp_xmit) when its peer has an XDP program (or GRO enabled, which gives it NAPI).
 * - relay_bare_redirect: redirects every packet to relay_bench_devmap[0] with no parsing, lookup or rewrite:
 *   the ceiling for benchmarks of relay_xdp.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "relay_abi.h"

/* relay_bench_devmap: slot 0 = the interface relay_bare_redirect sends everything to. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__type(key, __u32);
	__type(value, struct bpf_devmap_val);
	__uint(max_entries, 1);
} relay_bench_devmap SEC(".maps");

SEC("xdp")
int relay_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("xdp")
int relay_bare_redirect(struct xdp_md *ctx)
{
	return bpf_redirect_map(&relay_bench_devmap, 0, XDP_PASS);
}

char LICENSE[] SEC("license") = "GPL";
