// SPDX-License-Identifier: GPL-2.0-only
/*
 * sink_rtp: the benchmark's RTP sink (`sbc-bench media --generator xdp`; issue 15), attached to the first veth the
 * forwarded frames land on. Counts every RTP v2 packet of a known SSRC (sink_cfg) per CPU and per flow (flow =
 * SSRC - ssrc_base), checks its sequence number against the flow's last one and its IPv4 header checksum, and
 * drops it: a socket sink cannot keep up with millions of packets per second, this counts at the rate XDP runs.
 * Anything else (ARP, other traffic) is passed untouched. With latency on (sink_cfg.latency) a packet that carries
 * its send time (bench_abi.h) adds its one-way latency to sink_lat: measured here, at XDP, it holds no socket
 * wake-up or scheduling delay of a sink process, only the path's.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "bench_abi.h"
#include "csum.h"

#define RTP_HDR_LEN 12

/* sink_cfg[0]: the SSRCs counted. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct sink_cfg);
	__uint(max_entries, 1);
} sink_cfg SEC(".maps");

/* sink_flows[flow]: per-flow packets and sequence check (per CPU). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct sink_flow);
	__uint(max_entries, BENCH_MAX_FLOWS);
} sink_flows SEC(".maps");

/* sink_stats[0]: totals (per CPU). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct sink_stats);
	__uint(max_entries, 1);
} sink_stats SEC(".maps");

/* sink_lat[bucket] (per CPU): stamped packets per latency bucket (bench_abi.h). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, BENCH_LAT_BUCKETS);
} sink_lat SEC(".maps");

static __always_inline void add_latency(struct sink_stats *st, __u64 stamp)
{
	__u64 now = bpf_ktime_get_ns(), ns = now > stamp ? now - stamp : 0, us = ns / 1000;
	__u32 bucket;
	__u64 *n;

	if (us < BENCH_LAT_LINEAR)
		bucket = us;
	else if (us - BENCH_LAT_LINEAR < 16 * (BENCH_LAT_BUCKETS - BENCH_LAT_LINEAR - 1))
		bucket = BENCH_LAT_LINEAR + (us - BENCH_LAT_LINEAR) / 16;
	else
		bucket = BENCH_LAT_BUCKETS - 1;
	n = bpf_map_lookup_elem(&sink_lat, &bucket);
	if (n)
		*n += 1;
	st->stamped += 1;
	st->lat_sum_ns += ns;
	if (ns > st->lat_max_ns)
		st->lat_max_ns = ns;
}

/* The IPv4 header checksum over a 20-byte header is right when the folded sum of its words is 0xffff. */
static __always_inline int ip_csum_ok(const struct iphdr *ip)
{
	const __u16 *w = (const __u16 *)ip;
	__u32 sum = 0;

#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	return csum_fold32(sum) == 0xffff;
}

SEC("xdp")
int sink_rtp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	__u8 *rtp = (void *)(udp + 1);
	struct sink_stats *st;
	struct sink_flow *f;
	struct sink_cfg *cfg;
	__u32 zero = 0, flow;
	__u16 seq;

	if ((void *)(rtp + RTP_HDR_LEN) > data_end)
		return XDP_PASS;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 || ip->protocol != IPPROTO_UDP)
		return XDP_PASS;
	cfg = bpf_map_lookup_elem(&sink_cfg, &zero);
	st = bpf_map_lookup_elem(&sink_stats, &zero);
	if (!cfg || !st)
		return XDP_PASS;
	flow = bpf_ntohl(*(__be32 *)(rtp + 8)) - cfg->ssrc_base;
	if ((rtp[0] >> 6) != 2 || flow >= cfg->flows) {
		st->not_rtp += 1;
		return XDP_PASS;
	}
	f = bpf_map_lookup_elem(&sink_flows, &flow);
	if (!f)
		return XDP_PASS;
	seq = bpf_ntohs(*(__be16 *)(rtp + 2));
	if (f->packets && seq != f->next_seq)
		f->seq_gaps += 1;
	f->next_seq = seq + 1;
	f->packets += 1;
	st->packets += 1;
	st->bytes += bpf_ntohs(udp->len) - sizeof(*udp);
	if (!ip_csum_ok(ip))
		st->bad_ip_csum += 1;
	if (cfg->latency && (void *)(rtp + RTP_HDR_LEN + 8) <= data_end) {
		__u64 stamp;

		__builtin_memcpy(&stamp, rtp + RTP_HDR_LEN, 8);
		if (stamp)
			add_latency(st, stamp);
	}
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
