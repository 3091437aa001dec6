//! The media window: K calls, each a browser socket and a carrier socket on either side of the relay, RTP at a
//! fixed total rate in both directions (browser → carrier and carrier → browser, half each), every packet checked
//! at its receiver (SRTP authenticated and decrypted there on the WebRTC path). One thread, paced sends, one
//! `poll(2)` over every socket.

use super::browser::SrtpPair;
use anyhow::{Context as _, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde::Serialize;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// RTP payload bytes (G.711 at 20 ms).
pub const PAYLOAD: usize = 160;
const PAYLOAD_BYTE: u8 = 0xd5;
/// After the last send, receivers wait at most this long for what is still in flight.
const DRAIN: Duration = Duration::from_millis(500);

/// One call of the window.
#[derive(Debug)]
pub struct Call {
    /// The browser's socket (leg A's peer).
    pub browser: UdpSocket,
    /// The carrier's socket (leg B's peer).
    pub carrier: UdpSocket,
    /// The relay's socket facing the browser.
    pub relay_a: SocketAddr,
    /// The relay's socket facing the carrier.
    pub relay_b: SocketAddr,
    /// The browser's SRTP contexts (WebRTC calls); `None`: plain RTP on both legs.
    pub srtp: Option<SrtpPair>,
}

/// The SSRC of call `call`'s stream from the browser (`up`) or from the carrier.
pub fn ssrc(call: usize, up: bool) -> u32 {
    (if up { 0x1000_0000 } else { 0x2000_0000 }) + call as u32
}

/// An RTP packet (version 2, PCMU, 20 ms of 8 kHz) with `seq`, its timestamp, and `ssrc`.
pub fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + PAYLOAD);
    p.extend_from_slice(&[0x80, 0]);
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq).wrapping_mul(160)).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.resize(12 + PAYLOAD, PAYLOAD_BYTE);
    p
}

/// Whether `packet` is one of ours for `ssrc`, intact.
pub fn intact(packet: &[u8], ssrc: u32) -> bool {
    packet.len() == 12 + PAYLOAD
        && packet[0] == 0x80
        && packet[8..12] == ssrc.to_be_bytes()
        && packet[12..].iter().all(|&b| b == PAYLOAD_BYTE)
}

/// One direction's counts.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Direction {
    /// Packets sent.
    pub sent: u64,
    /// Intact packets received (SRTP authenticated and decrypted first where the receiver is a browser).
    pub received: u64,
    /// Datagrams received that were not an intact packet of the call (or failed SRTP authentication).
    pub bad: u64,
}

/// What the window counted; the caller adds the CPU figures around it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    /// Browser → relay → carrier.
    pub up: Direction,
    /// Carrier → relay → browser.
    pub down: Direction,
    /// From the first send to the last.
    pub send_secs: f64,
    /// From the first send to the end of the drain.
    pub wall_secs: f64,
}

/// Sends `rate` packets/s in all (half each way, spread round-robin over the calls) for `secs`, receiving and
/// checking everything, then drains for up to [`DRAIN`].
pub fn run(calls: &mut [Call], rate: u32, secs: u32) -> Result<Counts> {
    let streams = calls.len() * 2;
    let planned = u64::from(rate) * u64::from(secs);
    let mut seqs = vec![0u16; streams];
    let mut counts = Counts::default();
    for c in calls.iter() {
        c.browser.set_nonblocking(true)?;
        c.carrier.set_nonblocking(true)?;
    }
    let mut buf = vec![0u8; 2048];
    let start = Instant::now();
    let mut sent = 0u64;
    let mut send_end = None;
    loop {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(start);
        if sent < planned {
            let due = ((elapsed.as_secs_f64() * f64::from(rate)) as u64).min(planned);
            while sent < due {
                let stream = (sent % streams as u64) as usize;
                let (i, up) = (stream / 2, stream.is_multiple_of(2));
                seqs[stream] = seqs[stream].wrapping_add(1);
                let packet = rtp(seqs[stream], ssrc(i, up));
                let call = &mut calls[i];
                let ok = if up {
                    let wire = match &mut call.srtp {
                        Some(s) => s.outbound.encrypt_rtp(&packet).context("protecting SRTP")?.to_vec(),
                        None => packet,
                    };
                    call.browser.send_to(&wire, call.relay_a).is_ok()
                } else {
                    call.carrier.send_to(&packet, call.relay_b).is_ok()
                };
                let d = if up { &mut counts.up } else { &mut counts.down };
                d.sent += u64::from(ok);
                sent += 1;
            }
            if sent == planned {
                send_end = Some(Instant::now());
            }
        }
        let received = counts.up.received + counts.down.received;
        if let Some(end) = send_end {
            if received >= counts.up.sent + counts.down.sent || now.saturating_duration_since(end) > DRAIN {
                break;
            }
        }
        // Wake by the next millisecond's packets at the latest.
        let ready: Vec<usize> = {
            let mut fds: Vec<PollFd> = calls
                .iter()
                .flat_map(|c| [c.browser.as_fd(), c.carrier.as_fd()])
                .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
                .collect();
            if poll(&mut fds, PollTimeout::from(1u8)).unwrap_or(0) <= 0 {
                continue;
            }
            fds.iter().enumerate().filter(|(_, fd)| fd.any().unwrap_or(false)).map(|(k, _)| k).collect()
        };
        for k in ready {
            let (i, at_browser) = (k / 2, k.is_multiple_of(2));
            let call = &mut calls[i];
            let socket = if at_browser { &call.browser } else { &call.carrier };
            while let Ok((n, _)) = socket.recv_from(&mut buf) {
                // What the browser receives went carrier → browser (down), and the other way round.
                let expected = ssrc(i, !at_browser);
                let good = match (&mut call.srtp, at_browser) {
                    (Some(s), true) => s.inbound.decrypt_rtp(&buf[..n]).is_ok_and(|p| intact(&p, expected)),
                    _ => intact(&buf[..n], expected),
                };
                let d = if at_browser { &mut counts.down } else { &mut counts.up };
                if good {
                    d.received += 1;
                } else {
                    d.bad += 1;
                }
            }
        }
    }
    let end = Instant::now();
    counts.send_secs = send_end.unwrap_or(end).saturating_duration_since(start).as_secs_f64();
    counts.wall_secs = end.saturating_duration_since(start).as_secs_f64();
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_packets_carry_sequence_timestamp_and_ssrc_and_are_checked_whole() {
        let p = rtp(3, ssrc(5, true));
        assert_eq!(p.len(), 172);
        assert_eq!(&p[2..4], &[0, 3]);
        assert_eq!(u32::from_be_bytes([p[4], p[5], p[6], p[7]]), 480);
        assert!(intact(&p, 0x1000_0005));
        assert!(!intact(&p, ssrc(5, false)), "the other direction's SSRC");
        let mut damaged = p.clone();
        damaged[100] ^= 1;
        assert!(!intact(&damaged, 0x1000_0005));
        assert!(!intact(&p[..171], 0x1000_0005));
    }
}
