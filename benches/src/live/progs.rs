//! The live benchmark's XDP programs from the user side: the generator `gen_rtp` (ebpf/src/gen.bpf.c) run with
//! `BPF_PROG_RUN` in live-frames mode, and the sink `sink_rtp` (ebpf/src/sink.bpf.c) attached and read. The structs
//! mirror ebpf/include/bench_abi.h, with their layout checked at compile time.
#![allow(unsafe_code)]

use anyhow::{bail, Context, Result};
use aya::maps::{Array, MapData, PerCpuArray, PerCpuValues};
use aya::programs::{Xdp as XdpProgram, XdpMode};
use aya::{Ebpf, EbpfLoader};
use media_relay::xdp::objects;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd};

/// `BENCH_MAX_FLOWS`: the flows the sink tells apart.
pub const MAX_FLOWS: u32 = 131_072;
/// `BENCH_HDR_LEN`: Ethernet + IPv4 + UDP + RTP header.
pub const HDR_LEN: usize = 54;
const RTP_HDR_LEN: usize = 12;
/// `BENCH_STAMP_OFF`: where a stamping generator writes the send time (8 bytes, host order).
pub const STAMP_OFF: usize = HDR_LEN;
/// `BENCH_LAT_BUCKETS` and `BENCH_LAT_LINEAR`: the sink's latency histogram (1 us buckets, then 16 us).
const LAT_BUCKETS: u32 = 2048;
const LAT_LINEAR: u32 = 1024;

/// `struct gen_cfg`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct GenCfg {
    flows: u32,
    span: u32,
    daddr_base: u32,
    ssrc_base: u32,
    ts_step: u32,
    sport_base: u16,
    dport_base: u16,
    dport_stride: u16,
    stamp: u16,
    hdr: [u8; HDR_LEN],
    pad2: [u8; 10],
}

/// `struct sink_cfg`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct SinkCfg {
    flows: u32,
    ssrc_base: u32,
    latency: u32,
    pad: u32,
}

/// `struct sink_flow`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct SinkFlow {
    packets: u64,
    next_seq: u16,
    pad: u16,
    seq_gaps: u32,
}

/// `struct sink_stats`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct SinkStats {
    packets: u64,
    bytes: u64,
    not_rtp: u64,
    bad_ip_csum: u64,
    stamped: u64,
    lat_sum_ns: u64,
    lat_max_ns: u64,
}

const _: () = assert!(std::mem::size_of::<GenCfg>() == 92);
const _: () = assert!(std::mem::offset_of!(GenCfg, hdr) == 28);
const _: () = assert!(std::mem::size_of::<SinkCfg>() == 16);
const _: () = assert!(std::mem::size_of::<SinkFlow>() == 16);
const _: () = assert!(std::mem::size_of::<SinkStats>() == 56);

// SAFETY (all four): repr(C), Copy, integer fields only, no implicit padding (sizes asserted above).
unsafe impl aya::Pod for GenCfg {}
// SAFETY: as above.
unsafe impl aya::Pod for SinkCfg {}
// SAFETY: as above.
unsafe impl aya::Pod for SinkFlow {}
// SAFETY: as above.
unsafe impl aya::Pod for SinkStats {}

/// What the generator sends: the flows and the frame they share (see bench_abi.h for the numbering).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlowLayout {
    /// N flows (1 ..= [`MAX_FLOWS`]).
    pub flows: u32,
    /// Flows per destination address: flow i goes to `daddr_base + i / span`.
    pub span: u32,
    /// The source address of every flow.
    pub saddr: Ipv4Addr,
    pub daddr_base: Ipv4Addr,
    /// Flow i's source port: `sport_base + i % span`.
    pub sport_base: u16,
    /// Flow i's destination port: `dport_base + (i % span) * dport_stride`.
    pub dport_base: u16,
    pub dport_stride: u16,
    /// Flow i's SSRC: `ssrc_base + i` (what the sink counts by).
    pub ssrc_base: u32,
    /// RTP payload bytes.
    pub payload: u16,
}

impl FlowLayout {
    /// The layout with the widest span that keeps every port within 16 bits, for `flows` flows from
    /// `saddr:sport_base..` to `daddr_base:dport_base..` (stride `dport_stride`).
    pub fn new(
        flows: u32,
        saddr: Ipv4Addr,
        daddr_base: Ipv4Addr,
        sport_base: u16,
        dport_base: u16,
        dport_stride: u16,
    ) -> Self {
        let room = |base: u16, stride: u16| {
            if stride == 0 {
                u32::MAX
            } else {
                (u32::from(u16::MAX - base)) / u32::from(stride) + 1
            }
        };
        let span = flows.min(room(sport_base, 1)).min(room(dport_base, dport_stride)).max(1);
        Self {
            flows,
            span,
            saddr,
            daddr_base,
            sport_base,
            dport_base,
            dport_stride,
            ssrc_base: 0x5bc0_0000,
            payload: 160,
        }
    }

    /// Flow `i`'s destination address and port.
    pub fn destination(&self, i: u32) -> (Ipv4Addr, u16) {
        let addr = Ipv4Addr::from(u32::from(self.daddr_base) + i / self.span);
        (addr, self.dport_base.wrapping_add(((i % self.span) as u16).wrapping_mul(self.dport_stride)))
    }

    /// Flow `i`'s source port.
    pub fn source_port(&self, i: u32) -> u16 {
        self.sport_base.wrapping_add((i % self.span) as u16)
    }

    /// Destination addresses used.
    pub fn addresses(&self) -> u32 {
        self.flows.div_ceil(self.span)
    }

    /// The frame of flow 0, packet 0 (`src_mac` -> `dst_mac`) with full IPv4 and UDP checksums: the generator's
    /// template and the data of every run.
    pub fn template(&self, src_mac: [u8; 6], dst_mac: [u8; 6]) -> Vec<u8> {
        let (daddr, dport) = self.destination(0);
        let mut rtp = vec![0u8; RTP_HDR_LEN + usize::from(self.payload)];
        rtp[0] = 0x80; // version 2
        rtp[8..12].copy_from_slice(&self.ssrc_base.to_be_bytes());
        for (i, b) in rtp[RTP_HDR_LEN..].iter_mut().enumerate() {
            *b = 0xd5 ^ i as u8; // G.711 A-law silence-ish, varied so checksums see real data
        }
        // Where a stamping generator writes the send time: zero in the template, so that the checksum update
        // adds the stamp's words as they are.
        let stamp = STAMP_OFF - HDR_LEN + RTP_HDR_LEN;
        let end = rtp.len().min(stamp + 8);
        rtp[stamp..end].fill(0);
        let ulen = (8 + rtp.len()) as u16;
        let mut udp = Vec::with_capacity(usize::from(ulen));
        udp.extend_from_slice(&self.source_port(0).to_be_bytes());
        udp.extend_from_slice(&dport.to_be_bytes());
        udp.extend_from_slice(&ulen.to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(&rtp);
        let pseudo: Vec<u8> =
            [&self.saddr.octets()[..], &daddr.octets()[..], &[0, 17], &ulen.to_be_bytes()[..]].concat();
        let c = !sum16(&[&pseudo, &udp]);
        udp[6..8].copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
        let mut ip = vec![0x45, 0x00];
        ip.extend_from_slice(&(20 + ulen).to_be_bytes());
        ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
        ip.extend_from_slice(&self.saddr.octets());
        ip.extend_from_slice(&daddr.octets());
        let c = !sum16(&[&ip]);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        [&dst_mac[..], &src_mac[..], &[0x08, 0x00], &ip, &udp].concat()
    }
}

/// RFC 1071 one's-complement sum, folded, not inverted.
pub fn sum16(chunks: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for c in chunks {
        for pair in c.chunks(2) {
            sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

fn load_prog<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut XdpProgram> {
    let prog: &mut XdpProgram =
        ebpf.program_mut(name).with_context(|| format!("no program {name} in the object"))?.try_into()?;
    prog.load().with_context(|| format!("loading {name} (needs root)"))?;
    Ok(prog)
}

/// `gen_rtp` loaded with its template, ready to be run.
pub struct Generator {
    ebpf: Ebpf,
    frame: Vec<u8>,
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator").field("frame_len", &self.frame.len()).finish_non_exhaustive()
    }
}

/// `BPF_PROG_TEST_RUN` (the `bpf` command number).
const BPF_PROG_TEST_RUN: libc::c_long = 10;
/// `BPF_F_TEST_XDP_LIVE_FRAMES`: the program's XDP_TX and XDP_REDIRECT really send (kernel 5.18 or newer).
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;
/// The largest `batch_size` of a live-frames run (net/bpf/test_run.c).
const TEST_XDP_MAX_BATCH: u32 = 256;

/// The `test` member of `union bpf_attr` (include/uapi/linux/bpf.h), up to `batch_size`.
#[repr(C)]
#[derive(Debug, Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    pad: u32,
}
const _: () = assert!(std::mem::offset_of!(TestRunAttr, flags) == 64);
const _: () = assert!(std::mem::offset_of!(TestRunAttr, batch_size) == 72);

impl Generator {
    /// Loads `gen_rtp` with `layout`, frames from `src_mac` to `dst_mac`; with `stamp`, each frame carries its send
    /// time (bench_abi.h).
    pub fn load(layout: &FlowLayout, src_mac: [u8; 6], dst_mac: [u8; 6], stamp: bool) -> Result<Self> {
        if layout.flows == 0 || layout.flows > MAX_FLOWS || layout.span == 0 {
            bail!("flows must be 1..={MAX_FLOWS} (got {}, span {})", layout.flows, layout.span);
        }
        if stamp && usize::from(layout.payload) < 8 {
            bail!("a stamped frame needs a payload of 8 bytes at least (got {})", layout.payload);
        }
        let frame = layout.template(src_mac, dst_mac);
        let mut hdr = [0u8; HDR_LEN];
        hdr.copy_from_slice(&frame[..HDR_LEN]);
        let cfg = GenCfg {
            flows: layout.flows,
            span: layout.span,
            daddr_base: u32::from(layout.daddr_base),
            ssrc_base: layout.ssrc_base,
            ts_step: u32::from(layout.payload),
            sport_base: layout.sport_base,
            dport_base: layout.dport_base,
            dport_stride: layout.dport_stride,
            stamp: u16::from(stamp),
            hdr,
            pad2: [0; 10],
        };
        let mut ebpf = EbpfLoader::new().load(objects::GEN).context("loading gen.bpf.o (needs root)")?;
        let mut map: Array<_, GenCfg> = Array::try_from(ebpf.map_mut("gen_cfg").context("no gen_cfg map")?)?;
        map.set(0, cfg, 0).context("writing gen_cfg")?;
        load_prog(&mut ebpf, "gen_rtp")?;
        Ok(Self { ebpf, frame })
    }

    /// Runs the program `repeat` times in live-frames mode as if received on `ifindex`: every run's frame is sent
    /// out of that interface (XDP_TX), to its veth peer. Returns when all were handed on.
    pub fn send(&self, ifindex: u32, repeat: u32) -> Result<()> {
        self.run(ifindex, repeat, BPF_F_TEST_XDP_LIVE_FRAMES, None).map(drop)
    }

    /// Makes the next frame the first (frame 0): every run, live or not, takes the next frame number from the
    /// program's counter, so a test run must not use one up.
    pub fn restart(&mut self) -> Result<()> {
        let cpus = aya::util::nr_cpus().map_err(|(what, e)| anyhow::anyhow!("{what}: {e}"))?;
        let mut count: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.ebpf.map_mut("gen_count").context("no gen_count map")?)?;
        count.set(0, PerCpuValues::try_from(vec![0u64; cpus])?, 0).context("resetting gen_count")?;
        Ok(())
    }

    /// Runs the program once, not live, and returns the frame it wrote (for checks of what it sends).
    pub fn run_once(&self, ifindex: u32) -> Result<Vec<u8>> {
        let mut out = vec![0u8; self.frame.len() + 256];
        let len = self.run(ifindex, 1, 0, Some(&mut out))?;
        out.truncate(len);
        Ok(out)
    }

    fn run(&self, ifindex: u32, repeat: u32, flags: u32, out: Option<&mut Vec<u8>>) -> Result<usize> {
        let prog: &XdpProgram =
            self.ebpf.program("gen_rtp").context("no gen_rtp")?.try_into().context("gen_rtp is not XDP")?;
        let fd = prog.fd()?.as_fd().as_raw_fd();
        // struct xdp_md { data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex }
        let ctx: [u32; 6] = [0, self.frame.len() as u32, 0, ifindex, 0, 0];
        let (out_ptr, out_len) = match out {
            Some(o) => (o.as_mut_ptr() as u64, o.len() as u32),
            None => (0, 0),
        };
        let mut attr = TestRunAttr {
            prog_fd: fd as u32,
            data_size_in: self.frame.len() as u32,
            data_in: self.frame.as_ptr() as u64,
            data_out: out_ptr,
            data_size_out: out_len,
            repeat,
            ctx_size_in: std::mem::size_of_val(&ctx) as u32,
            ctx_in: ctx.as_ptr() as u64,
            flags,
            // Frames per page-pool round and per redirect flush: the kernel's most (TEST_XDP_MAX_BATCH; 64, a NAPI
            // poll's, when left 0), so that each flush hands the veth a full ring's worth.
            batch_size: if flags & BPF_F_TEST_XDP_LIVE_FRAMES != 0 { TEST_XDP_MAX_BATCH } else { 0 },
            ..TestRunAttr::default()
        };
        // Hand-written because aya 0.14's test_run has no flags (live frames) field.
        // SAFETY: attr is a valid, fully initialised bpf_attr prefix; the pointers in it (frame, ctx, out) outlive
        // the call and their sizes are the ones given.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_TEST_RUN,
                &mut attr as *mut TestRunAttr,
                std::mem::size_of::<TestRunAttr>() as u32,
            )
        };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            bail!("BPF_PROG_TEST_RUN of gen_rtp (flags {flags:#x}): {e} (live frames need kernel 5.18 or newer)");
        }
        if attr.retval != 3 {
            bail!("gen_rtp returned {} instead of XDP_TX (3)", attr.retval);
        }
        Ok(attr.data_size_out as usize)
    }
}

/// What the sink counted since its last reset.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SinkCounts {
    /// RTP v2 packets of the generator's SSRCs.
    pub packets: u64,
    /// Their RTP bytes (header + payload).
    pub bytes: u64,
    /// UDP packets with an RTP-sized payload that were not (passed).
    pub not_rtp: u64,
    /// Counted packets with a wrong IPv4 header checksum.
    pub bad_ip_csum: u64,
    /// Flows of the configured ones with at least one packet.
    pub flows_seen: u32,
    /// Fewest and most packets of a flow (over all configured flows).
    pub min_flow_packets: u64,
    pub max_flow_packets: u64,
    /// Packets whose RTP sequence number was not the flow's last plus one (each lost packet makes at most one).
    pub seq_gaps: u64,
    /// With latency on: the one-way latency of the packets that carried their send time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
}

/// One-way latency from the generator's send time to the sink's XDP program, over a step's stamped packets.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    pub samples: u64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl Latency {
    /// From the histogram (`buckets[i]`: packets in bucket i) and the exact sum and maximum. A percentile is the
    /// upper edge of the bucket that holds it (1 us resolution below 1024 us, 16 us above).
    fn from_histogram(buckets: &[u64], sum_ns: u64, max_ns: u64) -> Option<Self> {
        let samples: u64 = buckets.iter().sum();
        if samples == 0 {
            return None;
        }
        let upper = |b: u32| -> f64 {
            if b < LAT_LINEAR {
                f64::from(b + 1)
            } else {
                f64::from(LAT_LINEAR + (b - LAT_LINEAR + 1) * 16)
            }
        };
        let max_us = max_ns as f64 / 1000.0;
        let pct = |q: f64| {
            let want = ((samples as f64) * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (b, n) in buckets.iter().enumerate() {
                seen += n;
                if seen >= want {
                    // The last bucket is open above: the maximum bounds it.
                    return if b as u32 == LAT_BUCKETS - 1 { max_us } else { upper(b as u32).min(max_us.ceil()) };
                }
            }
            max_us
        };
        Some(Self {
            samples,
            mean_us: sum_ns as f64 / samples as f64 / 1000.0,
            p50_us: pct(0.5),
            p90_us: pct(0.9),
            p99_us: pct(0.99),
            p999_us: pct(0.999),
            max_us,
        })
    }
}

/// `sink_rtp` attached to an interface (detached on drop).
pub struct Sink {
    _ebpf: Ebpf,
    flows: u32,
    flow_map: PerCpuArray<MapData, SinkFlow>,
    stats: PerCpuArray<MapData, SinkStats>,
    lat: PerCpuArray<MapData, u64>,
    cfg: Array<MapData, SinkCfg>,
    ssrc_base: u32,
    latency: bool,
    cpus: usize,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink").field("flows", &self.flows).finish_non_exhaustive()
    }
}

impl Sink {
    /// Loads `sink_rtp` counting `flows` flows from `ssrc_base` and attaches it to `iface` in native mode.
    pub fn attach(iface: &str, flows: u32, ssrc_base: u32) -> Result<Self> {
        if flows == 0 || flows > MAX_FLOWS {
            bail!("the sink counts 1..={MAX_FLOWS} flows (got {flows})");
        }
        let mut ebpf = EbpfLoader::new().load(objects::SINK).context("loading sink.bpf.o (needs root)")?;
        let mut cfg: Array<_, SinkCfg> = Array::try_from(ebpf.take_map("sink_cfg").context("no sink_cfg map")?)?;
        cfg.set(0, SinkCfg { flows, ssrc_base, latency: 0, pad: 0 }, 0).context("writing sink_cfg")?;
        let flow_map = PerCpuArray::try_from(ebpf.take_map("sink_flows").context("no sink_flows map")?)?;
        let stats = PerCpuArray::try_from(ebpf.take_map("sink_stats").context("no sink_stats map")?)?;
        let lat = PerCpuArray::try_from(ebpf.take_map("sink_lat").context("no sink_lat map")?)?;
        let prog = load_prog(&mut ebpf, "sink_rtp")?;
        prog.attach(iface, XdpMode::Driver).with_context(|| format!("attaching sink_rtp to {iface} (native)"))?;
        let cpus = aya::util::nr_cpus().map_err(|(what, e)| anyhow::anyhow!("{what}: {e}"))?;
        Ok(Self { _ebpf: ebpf, flows, flow_map, stats, lat, cfg, ssrc_base, latency: false, cpus })
    }

    /// Turns the latency histogram on or off (it costs a clock read and a map update per packet, so the ceiling
    /// steps run without it).
    pub fn set_latency(&mut self, on: bool) -> Result<()> {
        let cfg = SinkCfg { flows: self.flows, ssrc_base: self.ssrc_base, latency: u32::from(on), pad: 0 };
        self.cfg.set(0, cfg, 0).context("writing sink_cfg")?;
        self.latency = on;
        Ok(())
    }

    /// Zeroes every count (between steps, while nothing is sent).
    pub fn reset(&mut self) -> Result<()> {
        let zeros = |n| PerCpuValues::try_from(vec![SinkFlow::default(); n]);
        for i in 0..self.flows {
            self.flow_map.set(i, zeros(self.cpus)?, 0)?;
        }
        self.stats.set(0, PerCpuValues::try_from(vec![SinkStats::default(); self.cpus])?, 0)?;
        if self.latency {
            for b in 0..LAT_BUCKETS {
                self.lat.set(b, PerCpuValues::try_from(vec![0u64; self.cpus])?, 0)?;
            }
        }
        Ok(())
    }

    /// The counts since the last reset.
    pub fn read(&self) -> Result<SinkCounts> {
        let mut c = SinkCounts { min_flow_packets: u64::MAX, ..SinkCounts::default() };
        let (mut lat_sum, mut lat_max) = (0u64, 0u64);
        for s in self.stats.get(&0, 0)?.iter() {
            c.packets += s.packets;
            c.bytes += s.bytes;
            c.not_rtp += s.not_rtp;
            c.bad_ip_csum += s.bad_ip_csum;
            lat_sum += s.lat_sum_ns;
            lat_max = lat_max.max(s.lat_max_ns);
        }
        if self.latency {
            let buckets =
                (0..LAT_BUCKETS).map(|b| Ok(self.lat.get(&b, 0)?.iter().sum::<u64>())).collect::<Result<Vec<u64>>>()?;
            c.latency = Latency::from_histogram(&buckets, lat_sum, lat_max);
        }
        for i in 0..self.flows {
            let per_cpu = self.flow_map.get(&i, 0)?;
            let packets: u64 = per_cpu.iter().map(|f| f.packets).sum();
            c.seq_gaps += per_cpu.iter().map(|f| u64::from(f.seq_gaps)).sum::<u64>();
            c.flows_seen += u32::from(packets > 0);
            c.min_flow_packets = c.min_flow_packets.min(packets);
            c.max_flow_packets = c.max_flow_packets.max(packets);
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_percentiles_are_upper_bucket_edges_bounded_by_the_maximum() {
        let mut b = vec![0u64; LAT_BUCKETS as usize];
        b[20] = 98; // 20-21 us
        b[300] = 1; // 300-301 us
        b[LAT_LINEAR as usize + 2] = 1; // 1056-1072 us
        let l = Latency::from_histogram(&b, 100 * 30_000, 1_060_500).expect("samples");
        assert_eq!(l.samples, 100);
        assert_eq!((l.p50_us, l.p90_us), (21.0, 21.0));
        assert_eq!(l.p99_us, 301.0);
        assert_eq!(l.p999_us, 1061.0, "the bucket's edge (1072) bounded by the maximum, rounded up");
        assert_eq!(l.mean_us, 30.0);
        let mut open = vec![0u64; LAT_BUCKETS as usize];
        open[LAT_BUCKETS as usize - 1] = 1;
        assert_eq!(Latency::from_histogram(&open, 40_000_000, 40_000_000).unwrap().p50_us, 40_000.0);
        assert!(Latency::from_histogram(&[0; 4], 0, 0).is_none());
    }
}
