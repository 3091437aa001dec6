// SPDX-License-Identifier: GPL-2.0-only
/*
 * gen_rtp: the benchmark's RTP generator (`sbc-bench media --generator xdp`; issue 15). Never attached: its driver
 * runs it with BPF_PROG_RUN and BPF_F_TEST_XDP_LIVE_FRAMES on the sender's veth, so that every XDP_TX it returns
 * is a frame really sent to the veth's peer, at millions of frames per second from one CPU.
 *
 * The frames of a live run come from a page pool whose pages are reused without being copied again from the
 * template, after whatever the path downstream wrote into them (a relay rewrites addresses, ports and MACs in
 * place): so the whole header is written on every run, from gen_cfg, and then the fields of the flow and packet.
 * Flow and packet numbering: see bench_abi.h. Checksums are updated incrementally from the template's (RFC 1624).
 * With gen_cfg.stamp, each frame also carries its send time (bpf_ktime_get_ns) at BENCH_STAMP_OFF, where the
 * template holds zeros, for the sink's latency histogram.
 */
#include <linux/bpf.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "bench_abi.h"
#include "csum.h"

#define OFF_IP_CHECK 24
#define OFF_DADDR 30
#define OFF_SPORT 34
#define OFF_DPORT 36
#define OFF_UDP_CHECK 40
#define OFF_SEQ 44
#define OFF_TS 46
#define OFF_SSRC 50

/* gen_cfg[0]: the template and the flow layout. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct gen_cfg);
	__uint(max_entries, 1);
} gen_cfg SEC(".maps");

/* gen_count[0]: packets generated on this CPU (the next packet's number). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} gen_count SEC(".maps");

static __always_inline __u16 load16(const __u8 *p)
{
	return *(const __u16 *)p;
}

SEC("xdp")
int gen_rtp(struct xdp_md *ctx)
{
	__u8 *data = (void *)(long)ctx->data;
	__u8 *data_end = (void *)(long)ctx->data_end;
	struct gen_cfg *cfg;
	__u32 zero = 0, flow, round, i, acc;
	__be32 daddr, ts, ssrc;
	__be16 sport, dport, seq;
	__u16 check;
	__u64 *count, n, stamp = 0;
	const __u16 *sw = (const __u16 *)&stamp;

	cfg = bpf_map_lookup_elem(&gen_cfg, &zero);
	count = bpf_map_lookup_elem(&gen_count, &zero);
	if (!cfg || !count || cfg->flows == 0 || cfg->span == 0)
		return XDP_ABORTED;
	if (data + BENCH_HDR_LEN > data_end)
		return XDP_ABORTED;
	if (cfg->stamp) {
		if (data + BENCH_STAMPED_LEN > data_end)
			return XDP_ABORTED;
		stamp = bpf_ktime_get_ns();
	}
	n = *count;
	*count = n + 1;
	flow = n % cfg->flows;
	round = n / cfg->flows;
	i = flow % cfg->span;

	__builtin_memcpy(data, cfg->hdr, BENCH_HDR_LEN);
	daddr = bpf_htonl(cfg->daddr_base + flow / cfg->span);
	sport = bpf_htons(cfg->sport_base + i);
	dport = bpf_htons(cfg->dport_base + i * cfg->dport_stride);
	seq = bpf_htons((__u16)round);
	ts = bpf_htonl(round * cfg->ts_step);
	ssrc = bpf_htonl(cfg->ssrc_base + flow);

	/* The template's checksums hold for flow 0, packet 0: add what differs from it. */
	acc = csum_start(load16(data + OFF_IP_CHECK));
	acc = csum_acc32(acc, data + OFF_DADDR, (const __u8 *)&daddr);
	*(__u16 *)(data + OFF_IP_CHECK) = csum_finish(acc);

	acc = csum_start(load16(data + OFF_UDP_CHECK));
	acc = csum_acc32(acc, data + OFF_DADDR, (const __u8 *)&daddr);
	acc = csum_acc16(acc, load16(data + OFF_SPORT), sport);
	acc = csum_acc16(acc, load16(data + OFF_DPORT), dport);
	acc = csum_acc16(acc, load16(data + OFF_SEQ), seq);
	acc = csum_acc32(acc, data + OFF_TS, (const __u8 *)&ts);
	acc = csum_acc32(acc, data + OFF_SSRC, (const __u8 *)&ssrc);
	/* The template's stamp is zero: each word of the new one is added as it is. */
	acc += sw[0] + sw[1] + sw[2] + sw[3];
	check = csum_finish(acc);
	*(__u16 *)(data + OFF_UDP_CHECK) = check ? check : 0xffff;

	__builtin_memcpy(data + OFF_DADDR, &daddr, 4);
	__builtin_memcpy(data + OFF_SPORT, &sport, 2);
	__builtin_memcpy(data + OFF_DPORT, &dport, 2);
	__builtin_memcpy(data + OFF_SEQ, &seq, 2);
	__builtin_memcpy(data + OFF_TS, &ts, 4);
	__builtin_memcpy(data + OFF_SSRC, &ssrc, 4);
	if (cfg->stamp && data + BENCH_STAMPED_LEN <= data_end)
		__builtin_memcpy(data + BENCH_STAMP_OFF, &stamp, 8);
	return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";
