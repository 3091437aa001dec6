/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * bench_abi.h - the ABI between the benchmark's XDP traffic programs (ebpf/src/gen.bpf.c, ebpf/src/sink.bpf.c)
 * and their driver (benches/src/live/progs.rs, which mirrors every struct here with size and offset assertions:
 * change both together). Not part of the relay.
 *
 * A generated frame is Ethernet / IPv4 (no options) / UDP / RTP (12-byte header) / payload. Flow i of N:
 * destination address daddr_base + i / span, destination port dport_base + (i % span) * dport_stride, source
 * port sport_base + i % span (source address as in the template), SSRC ssrc_base + i. Packet n of the generator
 * (a per-CPU counter) belongs to flow n % N and carries RTP sequence number n / N (mod 2^16) and timestamp
 * (n / N) * ts_step: every flow's sequence numbers increase by one per packet.
 *
 * Latency: the payload's first 8 bytes (BENCH_STAMP_OFF) are 0 in the template; a stamping generator writes its
 * send time there (CLOCK_MONOTONIC ns, host byte order: bpf_ktime_get_ns() reads the same clock), and a sink with
 * latency on adds now - stamp to a histogram of BENCH_LAT_BUCKETS buckets: 1 us wide below 1024 us, 16 us wide
 * above (the last bucket holds everything from 1024 + 16 * 1023 = 17,392 us up).
 */
#ifndef BENCH_ABI_H
#define BENCH_ABI_H

#include <linux/types.h>

#ifndef BENCH_MAX_FLOWS
#define BENCH_MAX_FLOWS 131072 /* sink_flows slots: flows the sink tells apart */
#endif
/* Bytes of the template the generator writes into every frame: Ethernet 14 + IPv4 20 + UDP 8 + RTP 12. */
#define BENCH_HDR_LEN 54
/* Where the send time lies (the payload's first 8 bytes) and how far a frame must reach to carry it. */
#define BENCH_STAMP_OFF BENCH_HDR_LEN
#define BENCH_STAMPED_LEN (BENCH_STAMP_OFF + 8)
#define BENCH_LAT_BUCKETS 2048
#define BENCH_LAT_LINEAR 1024 /* buckets 1 us wide, then 16 us wide */

/* gen_cfg[0]: what gen_rtp sends. Numbers in host order; hdr in wire order, with valid IPv4 and UDP checksums
 * for flow 0, packet 0 (sequence number 0, timestamp 0). 92 bytes. */
struct gen_cfg {
	__u32 flows;        /* N, >= 1 */
	__u32 span;         /* flows per destination address, >= 1 */
	__u32 daddr_base;   /* destination address of flows 0..span-1 */
	__u32 ssrc_base;
	__u32 ts_step;      /* RTP timestamp increment per packet of a flow */
	__u16 sport_base;
	__u16 dport_base;
	__u16 dport_stride;
	__u16 stamp;        /* nonzero: write the send time at BENCH_STAMP_OFF */
	__u8 hdr[BENCH_HDR_LEN];
	__u8 pad2[10];
};

/* sink_cfg[0]: which packets the sink counts. 16 bytes. */
struct sink_cfg {
	__u32 flows;        /* SSRCs ssrc_base .. ssrc_base + flows - 1 are counted (flows <= BENCH_MAX_FLOWS) */
	__u32 ssrc_base;
	__u32 latency;      /* nonzero: stamped packets' latency into sink_lat */
	__u32 pad;
};

/* sink_flows[i] (per CPU): flow i's packets. 16 bytes. */
struct sink_flow {
	__u64 packets;
	__u16 next_seq;     /* the sequence number expected next */
	__u16 pad;
	__u32 seq_gaps;     /* packets whose sequence number was not the one expected (a loss or reordering) */
};

/* sink_stats[0] (per CPU). 56 bytes. */
struct sink_stats {
	__u64 packets;      /* RTP v2 packets of a known SSRC: counted per flow, dropped */
	__u64 bytes;        /* their UDP payload bytes */
	__u64 not_rtp;      /* UDP packets with an RTP-sized payload that were not RTP v2 of a known SSRC: passed */
	__u64 bad_ip_csum;  /* counted packets whose IPv4 header checksum was wrong */
	__u64 stamped;      /* with latency on: packets that carried a send time (in sink_lat) */
	__u64 lat_sum_ns;   /* their latencies' sum */
	__u64 lat_max_ns;   /* and the largest */
};

#endif /* BENCH_ABI_H */
