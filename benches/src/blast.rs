//! `sbc-bench blast` (hidden): a faster RTP sender than `rtpgen` for `media`. It sends the same packets as
//! `rtpgen` (RTP header, index and send timestamp, pattern: `tests::rtp`), so `rtpgen` sinks check them and
//! measure one-way latency, but in batches with `sendmmsg` (one system call per [`BATCH`] packets) and one
//! sleep per batch instead of one per packet. Pacing: packet i is due at i / pps seconds after the start; late
//! packets go at once (in batches), without a catch-up limit, like `rtpgen`. It writes an `rtpgen`-compatible
//! report (`tests::rtp::Report`, only the sender's fields filled) after waiting `idle_ms` (as an `rtpgen` sender
//! does before exiting), so the bench reads both alike.
//!
//! With `--srtp-key` it sends SRTP (AES_CM_128_HMAC_SHA1_80, the key and salt in base64 as SDES writes them),
//! encrypted with relay-proto's own SRTP code (rtc-srtp): the `srtp` path of `media`, where the relay decrypts.

use anyhow::{Context, Result};
use nix::sys::socket::{sendmmsg, MsgFlags, MultiHeaders, SockaddrIn};
use relay_proto::sdes::{KeyMaterial, SrtpKeys, Suite};
use relay_proto::srtp::EndpointCrypto;
use std::io::IoSlice;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tests::rtp::{self, Report, RtpHeader};

/// Packets per `sendmmsg`.
pub const BATCH: usize = 32;

/// What to send.
#[derive(Debug, clap::Args)]
pub struct BlastArgs {
    /// The local address to send from.
    #[arg(long)]
    bind: SocketAddrV4,
    /// Where to send.
    #[arg(long)]
    to: SocketAddrV4,
    /// Packets to send.
    #[arg(long)]
    count: u64,
    /// Packets per second.
    #[arg(long)]
    pps: u32,
    /// RTP payload bytes.
    #[arg(long, default_value_t = 160)]
    payload: usize,
    /// SSRC.
    #[arg(long, default_value_t = 0x5bc0_0001)]
    ssrc: u32,
    /// Wait this long after the last packet before writing the report and exiting.
    #[arg(long, default_value_t = 300)]
    idle_ms: u64,
    /// Write the report here (also printed on stdout).
    #[arg(long)]
    report: PathBuf,
    /// Send SRTP with this key (AES_CM_128_HMAC_SHA1_80; 30 bytes of key and salt in base64).
    #[arg(long)]
    srtp_key: Option<String>,
}

fn unix_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Runs the sender (see the module docs).
pub fn main(args: BlastArgs) -> Result<()> {
    let sock = UdpSocket::bind(args.bind).with_context(|| format!("binding {}", args.bind))?;
    let fd = sock.as_raw_fd();
    let to = SockaddrIn::from(args.to);
    let started = Instant::now();
    let mut headers = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
    let mut bufs: Vec<Vec<u8>> = vec![Vec::new(); BATCH];
    let (mut sent, mut errors, mut next) = (0u64, 0u64, 0u64);
    let mut last_error = None;
    let per = Duration::from_secs_f64(1.0 / f64::from(args.pps.max(1)));
    let mut srtp = match &args.srtp_key {
        Some(text) => {
            let suite = Suite::AesCm128HmacSha1_80;
            let key = KeyMaterial::from_base64(text)
                .filter(|k| k.bytes().len() == suite.material_len())
                .context("--srtp-key: base64 of 30 bytes")?;
            Some(EndpointCrypto::new(&SrtpKeys { suite, ours: key.clone(), theirs: key }))
        }
        None => None,
    };
    while next < args.count {
        let elapsed = started.elapsed();
        let due = ((elapsed.as_secs_f64() * f64::from(args.pps)) as u64 + 1).min(args.count);
        if due <= next {
            let at = per.mul_f64(next as f64);
            std::thread::sleep(at.saturating_sub(elapsed));
            continue;
        }
        let n = ((due - next) as usize).min(BATCH);
        for (k, buf) in bufs.iter_mut().take(n).enumerate() {
            let i = next + k as u64;
            let header = RtpHeader::for_packet(args.ssrc, 0, i, args.payload);
            let payload = rtp::build_payload(args.ssrc, i, unix_ns(), args.payload);
            buf.clear();
            buf.extend_from_slice(&header.to_bytes());
            buf.extend_from_slice(&payload);
            if let Some(c) = srtp.as_mut() {
                let protected = c.protect(buf, false).map_err(|f| anyhow::anyhow!("SRTP: {}", f.label()))?;
                buf.clear();
                buf.extend_from_slice(&protected);
            }
        }
        let slices: Vec<[IoSlice<'_>; 1]> = bufs[..n].iter().map(|b| [IoSlice::new(b)]).collect();
        let addrs = vec![Some(to); n];
        match sendmmsg(fd, &mut headers, &slices, &addrs, [], MsgFlags::empty()) {
            Ok(results) => {
                let k = results.count().max(1) as u64;
                sent += k;
                next += k;
            }
            Err(e) => {
                // The first message failed: count it and skip it (its index is used up, like rtpgen).
                errors += 1;
                last_error = Some(format!("sendmmsg to {}: {e}", args.to));
                next += 1;
            }
        }
    }
    std::thread::sleep(Duration::from_millis(args.idle_ms));
    let report = Report {
        bind: SocketAddr::V4(args.bind),
        to: Some(SocketAddr::V4(args.to)),
        ssrc: args.ssrc,
        expect_ssrc: None,
        sent,
        send_errors: errors,
        last_send_error: last_error,
        received: 0,
        corrupt: 0,
        reordered: 0,
        duplicates: 0,
        lost: 0,
        seq_mismatch: 0,
        other_ssrc: 0,
        not_rtp: 0,
        first_index: None,
        last_index: None,
        first_source: None,
        sources: Vec::new(),
        foreign_sources: 0,
        latency_us: None,
        first_rx_unix_ns: None,
        last_rx_unix_ns: None,
        max_gap_ms: 0.0,
        jitter_us: None,
        elapsed_ms: started.elapsed().as_millis() as u64,
        exit_reason: "sent".to_owned(),
    };
    let line = serde_json::to_string(&report)?;
    std::fs::write(&args.report, format!("{line}\n")).with_context(|| format!("writing {}", args.report.display()))?;
    println!("{line}");
    Ok(())
}
