//! The processes of the live benchmark, each run inside a namespace by the harness: the generator (`xdp-gen`, in
//! A), the sink (`xdp-sink`, where the forwarded frames land; driven over stdin/stdout), the reference relay
//! (`xdp-reference`, in the SBC namespace), our relay program filled by the relay's loader (`xdp-maps`, in the SBC
//! namespace) and the XDP_PASS program that lets a veth take XDP frames (`xdp-pass`).

use super::progs::{FlowLayout, Generator, Sink};
use anyhow::{bail, Context, Result};
use media_relay::xdp::reference::{Reference, ReferenceFlow};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

/// `sbc-bench xdp-gen`.
#[derive(Debug, Clone, clap::Args)]
pub struct GenArgs {
    /// The sender's interface (its veth peer receives the frames).
    #[arg(long)]
    pub iface: String,
    /// The frames' destination MAC (the peer's).
    #[arg(long)]
    pub dst_mac: String,
    /// The flows, as JSON ([`FlowLayout`]).
    #[arg(long)]
    pub layout: String,
    /// Packets per second over all flows; 0: as fast as the core goes.
    #[arg(long)]
    pub rate: u32,
    /// Packets to send.
    #[arg(long)]
    pub count: u64,
    /// How to send.
    #[arg(long, value_enum, default_value = "auto")]
    pub engine: Engine,
    /// Write each frame's send time into its payload (for the sink's latency histogram).
    #[arg(long)]
    pub stamp: bool,
    /// Frames per batch instead of about a millisecond's worth ([`batch_for`]): a latency step sends small
    /// batches, so that a frame's time in the sender's own burst does not dominate what is measured.
    #[arg(long)]
    pub batch: Option<u32>,
}

/// What `xdp-gen` printed (one JSON line).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct GenReport {
    /// Frames the program generated and handed to the interface.
    pub sent: u64,
    /// Time from the first to the end of the last batch (pacing sleeps included).
    pub secs: f64,
    /// `BPF_PROG_RUN` calls (live) or batches (AF_XDP).
    pub calls: u64,
    /// How the frames were sent.
    pub engine: Engine,
}

/// Batch (frames per `BPF_PROG_RUN`) for `rate`: about a millisecond of traffic, at least 64 (the kernel's own
/// batch), so that each call's set-up (a page pool per call) is spread over many frames.
pub fn batch_for(rate: u32) -> u32 {
    if rate == 0 {
        8192
    } else {
        (rate / 1000).clamp(64, 16384)
    }
}

/// How `xdp-gen` sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// Live frames if the kernel allows them, else AF_XDP.
    Auto,
    /// `gen_rtp` run with `BPF_PROG_RUN` in live-frames mode (XDP_TX out of the interface).
    Live,
    /// An AF_XDP socket in copy mode ([`super::afxdp`]).
    Afxdp,
}

enum Sender {
    Live(Generator, u32),
    Xsk(super::afxdp::XskSender),
}

impl Sender {
    /// Sends up to `n` frames; returns how many were handed over. `stamp`: write the send time (the live
    /// generator reads the clock per frame itself; AF_XDP's frames of one batch share one reading).
    fn send(&mut self, n: u32, stamp: bool) -> Result<u32> {
        match self {
            Sender::Live(g, ifindex) => g.send(*ifindex, n).map(|()| n),
            Sender::Xsk(x) => x.send(n, if stamp { super::afxdp::monotonic_ns() } else { 0 }),
        }
    }
}

/// `sbc-bench xdp-gen`: loads the generator, sends `count` frames at `rate`, prints a [`GenReport`].
pub fn gen_main(args: &GenArgs) -> Result<()> {
    let layout: FlowLayout = serde_json::from_str(&args.layout).context("--layout")?;
    let src_mac = read_mac(&args.iface)?;
    let dst_mac = parse_mac(&args.dst_mac)?;
    let ifindex = nix::net::if_::if_nametoindex(args.iface.as_str())
        .with_context(|| format!("no interface {} here", args.iface))?;
    // Frames already sent (and counted by the sink) before the paced loop: the live-frames probe's.
    let mut probed = 0u64;
    let mut sender = match args.engine {
        Engine::Afxdp => Sender::Xsk(super::afxdp::XskSender::open(ifindex, &layout, src_mac, dst_mac)?),
        Engine::Live | Engine::Auto => {
            let mut generator = Generator::load(&layout, src_mac, dst_mac, args.stamp)?;
            // One run not live first: it checks what the program writes (and that the syscall works at all).
            let first = generator.run_once(ifindex).context("a test run of gen_rtp")?;
            check_frame(&first, &layout, 0).context("gen_rtp's first frame")?;
            // The test run used frame 0 up without sending it; the live probe below sends frame 0, and the loop
            // goes on from frame 1, so that the sink sees every frame once (it counted one twice before).
            generator.restart()?;
            match generator.send(ifindex, 1) {
                Ok(()) => {
                    probed = 1;
                    Sender::Live(generator, ifindex)
                }
                Err(e) if args.engine == Engine::Auto => {
                    eprintln!("live frames refused ({e:#}); sending with AF_XDP instead");
                    Sender::Xsk(super::afxdp::XskSender::open(ifindex, &layout, src_mac, dst_mac)?)
                }
                Err(e) => return Err(e),
            }
        }
    };
    let engine = match sender {
        Sender::Live(..) => Engine::Live,
        Sender::Xsk(_) => Engine::Afxdp,
    };
    let batch = args.batch.unwrap_or_else(|| batch_for(args.rate)).max(1);
    let started = Instant::now();
    let (mut sent, mut calls) = (probed, 0u64);
    while sent < args.count {
        let n = u64::from(batch).min(args.count - sent) as u32;
        sent += u64::from(sender.send(n, args.stamp)?);
        calls += 1;
        if args.rate > 0 {
            let due = started + Duration::from_secs_f64(sent as f64 / f64::from(args.rate));
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        if crate::cps::STOP.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    if let Sender::Xsk(x) = &mut sender {
        x.drain();
        // What the kernel took from the ring and finished with (sent, or dropped by the interface).
        sent = x.completed;
    }
    let report = GenReport { sent, secs, calls, engine };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// Checks a frame of the generator: flow `flow`'s destination and SSRC, RTP v2, IPv4 and UDP checksums right.
pub fn check_frame(frame: &[u8], layout: &FlowLayout, flow: u32) -> Result<()> {
    use super::progs::sum16;
    if frame.len() < super::progs::HDR_LEN {
        bail!("frame of {} bytes", frame.len());
    }
    let (ip, udp) = (&frame[14..34], &frame[34..]);
    if sum16(&[ip]) != 0xffff {
        bail!("bad IPv4 header checksum");
    }
    let ulen = u16::from_be_bytes([udp[4], udp[5]]);
    if usize::from(ulen) != udp.len() {
        bail!("UDP length {ulen} for {} bytes", udp.len());
    }
    let pseudo: Vec<u8> = [&ip[12..20], &[0, 17], &ulen.to_be_bytes()[..]].concat();
    if sum16(&[&pseudo, udp]) != 0xffff {
        bail!("bad UDP checksum");
    }
    let (daddr, dport) = layout.destination(flow);
    if ip[16..20] != daddr.octets() || udp[2..4] != dport.to_be_bytes() {
        bail!("not flow {flow}'s destination {daddr}:{dport}");
    }
    let rtp = &udp[8..];
    if rtp[0] >> 6 != 2 || rtp[8..12] != (layout.ssrc_base + flow).to_be_bytes() {
        bail!("not RTP v2 with flow {flow}'s SSRC");
    }
    Ok(())
}

/// `sbc-bench xdp-sink IFACE FLOWS SSRC_BASE`: attaches the sink, prints `attached`, then answers each stdin line:
/// `reset` (zero the counts; prints `ok`), `latency on` / `latency off` (the latency histogram; prints `ok`) or
/// `read` (prints the counts as one JSON line). Detaches at EOF.
pub fn sink_main(iface: &str, flows: u32, ssrc_base: u32) -> Result<()> {
    let mut sink = Sink::attach(iface, flows, ssrc_base)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "attached")?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        match line.trim() {
            "reset" => {
                sink.reset()?;
                writeln!(out, "ok")?;
            }
            "latency on" | "latency off" => {
                sink.set_latency(line.trim() == "latency on")?;
                writeln!(out, "ok")?;
            }
            "read" => writeln!(out, "{}", serde_json::to_string(&sink.read()?)?)?,
            other => bail!("unknown sink command {other:?}"),
        }
        out.flush()?;
    }
    Ok(())
}

/// `sbc-bench xdp-reference`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReferenceArgs {
    /// Where the generator's frames arrive (the program is attached here).
    #[arg(long)]
    pub ingress: String,
    /// Where they leave.
    #[arg(long)]
    pub egress: String,
    /// The generator's flows, as JSON ([`FlowLayout`]): one entry per flow.
    #[arg(long)]
    pub layout: String,
    /// The new source address of every flow (the egress side's).
    #[arg(long)]
    pub from: Ipv4Addr,
    /// The new destination address of every flow (the peer behind the egress).
    #[arg(long)]
    pub to: Ipv4Addr,
    /// The MAC of the peer behind the egress.
    #[arg(long)]
    pub to_mac: String,
}

/// `sbc-bench xdp-reference`: loads the reference relay, installs one flow per generator flow (its destination
/// -> `from`:same port -> `to`:the flow's source port, out of `egress`), attaches it, prints `attached` and waits
/// to be killed.
pub fn reference_main(args: &ReferenceArgs) -> Result<()> {
    let layout: FlowLayout = serde_json::from_str(&args.layout).context("--layout")?;
    let ifindex =
        nix::net::if_::if_nametoindex(args.egress.as_str()).with_context(|| format!("no interface {}", args.egress))?;
    let smac = read_mac(&args.egress)?;
    let dmac = parse_mac(&args.to_mac)?;
    let mut reference = Reference::load().context("loading reference_relay")?;
    for i in 0..layout.flows {
        let (daddr, dport) = layout.destination(i);
        reference
            .install(&ReferenceFlow {
                key: SocketAddrV4::new(daddr, dport),
                from: SocketAddrV4::new(args.from, dport),
                to: SocketAddrV4::new(args.to, layout.source_port(i)),
                ifindex,
                smac,
                dmac,
            })
            .with_context(|| format!("installing flow {i}"))?;
    }
    reference.attach_native(&args.ingress)?;
    println!("attached");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// `sbc-bench xdp-maps`.
#[derive(Debug, Clone, clap::Args)]
pub struct MapsArgs {
    /// The generator's flows, as JSON ([`FlowLayout`]).
    #[arg(long)]
    pub layout: String,
}

/// `sbc-bench xdp-maps`: our `relay_xdp`, attached natively to a0 and b0 by the relay's own loader
/// (`media_relay::xdp::Xdp`, with its next-hop generation thread and its egress check) and given exactly the flows
/// the `xdp` path's relay installs for its latched streams (both directions of each, strict, RTCP passed up),
/// without the relay's process: no sockets, so no open-file limit on the flow count. Prints `attached` and waits to
/// be killed.
pub fn maps_main(args: &MapsArgs) -> Result<()> {
    use media_relay::xdp::{FlowKey, FlowTarget, XdpMode};
    use std::net::SocketAddr;
    let layout: FlowLayout = serde_json::from_str(&args.layout).context("--layout")?;
    let max_flows = (2 * layout.flows).max(media_relay::xdp::abi::DEFAULT_MAX_FLOWS);
    let (mut xdp, _) =
        media_relay::xdp::Xdp::attach_sized(XdpMode::Native, &["a0".to_owned(), "b0".to_owned()], max_flows)
            .context("attaching relay_xdp to a0 and b0")?;
    let sa = |ip: Ipv4Addr, port: u16| SocketAddr::V4(SocketAddrV4::new(ip, port));
    for i in 0..layout.flows {
        let (daddr, dport) = layout.destination(i);
        let a = sa(daddr, dport);
        let b = sa(super::relay::b_side(&layout, i), dport);
        let sport = layout.source_port(i);
        let (caller, carrier) = (sa(::tests::netns::CALLER, sport), sa(::tests::netns::CARRIER_B, sport));
        for (local, expect, from, to) in [(a, caller, b, carrier), (b, carrier, a, caller)] {
            xdp.install(FlowKey { local }, FlowTarget { expect, from, to, strict: true, pass_rtcp: true })
                .with_context(|| format!("installing flow {i}"))?;
        }
    }
    println!("attached");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// `sbc-bench xdp-pass IFACE`: `relay_pass` (XDP_PASS) on IFACE, so that its veth takes XDP frames and passes them
/// to the stack; prints `attached` and waits to be killed.
pub fn pass_main(iface: &str) -> Result<()> {
    let _prog = media_relay::xdp::PassProgram::attach(&[iface.to_owned()], false)
        .with_context(|| format!("attaching relay_pass to {iface}"))?;
    println!("attached");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// The MAC of `iface` in this namespace.
pub fn read_mac(iface: &str) -> Result<[u8; 6]> {
    let s = std::fs::read_to_string(format!("/sys/class/net/{iface}/address"))
        .with_context(|| format!("reading the MAC of {iface}"))?;
    parse_mac(s.trim())
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let bytes: Vec<u8> = s.split(':').map(|b| u8::from_str_radix(b, 16)).collect::<Result<_, _>>()?;
    bytes.try_into().map_err(|_| anyhow::anyhow!("not a MAC address: {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parsing_and_batches() {
        assert_eq!(parse_mac("02:00:00:00:0a:ff").unwrap(), [2, 0, 0, 0, 0x0a, 0xff]);
        assert!(parse_mac("02:00:00").is_err());
        assert_eq!(batch_for(10_000), 64);
        assert_eq!(batch_for(3_000_000), 3000);
        assert_eq!(batch_for(0), 8192);
    }
}
