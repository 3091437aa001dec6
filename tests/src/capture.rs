//! Packet captures inside a test namespace with `dumpcap` (Debian `tshark` brings it), bounded in time and size,
//! and a reader for what they wrote.
//!
//! The reader is written here: the classic pcap format (`dumpcap -P`) is a 24-byte file header and a 16-byte
//! header per frame (pcap-savefile(5)), and the frames are Ethernet/IPv4 in our topologies; a crate for that
//! would be a dependency for thirty lines.

use anyhow::{bail, Context, Result};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::netns::{Host, Process, Topology};

/// A running capture of every frame on one interface; stopped by [`Capture::finish`] or on drop.
#[derive(Debug)]
pub struct Capture {
    process: Process,
    file: PathBuf,
}

impl Capture {
    /// Starts `dumpcap` on `dev` in `host`, writing `<topology dir>/<name>.pcap`; it stops by itself after
    /// `limit` or 20 MB. Returns once dumpcap says it is capturing.
    pub fn start(topo: &Topology, host: Host, dev: &str, name: &str, limit: Duration) -> Result<Self> {
        let dumpcap = crate::require_tool("dumpcap", "tshark");
        let file = topo.dir().join(format!("{name}.pcap"));
        let duration = format!("duration:{}", limit.as_secs().max(1));
        let args = ["-q", "-P", "-i", dev, "-a", &duration, "-a", "filesize:20000", "-w"];
        let mut full: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        full.push(file.display().to_string());
        let mut process = topo.spawn(host, &format!("dumpcap-{name}"), dumpcap, &full)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let err = std::fs::read_to_string(&process.stderr).unwrap_or_default();
            if err.contains("Capturing on") {
                return Ok(Self { process, file });
            }
            if let Some(status) = process.try_wait()? {
                bail!("dumpcap on {dev} in {} ended with {status}: {}", topo.ns(host), process.output_tail());
            }
            if Instant::now() > deadline {
                bail!("dumpcap on {dev} in {} did not start within 10 s: {}", topo.ns(host), process.output_tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the capture (SIGTERM: dumpcap writes what it has and exits) and returns the pcap file, for a reader
    /// of its own (tshark).
    pub fn stop(mut self) -> Result<PathBuf> {
        self.process.terminate(Duration::from_secs(10))?;
        Ok(self.file.clone())
    }

    /// Stops the capture (SIGTERM: dumpcap writes what it has and exits) and reads every frame it wrote.
    pub fn finish(mut self) -> Result<Vec<Vec<u8>>> {
        self.process.terminate(Duration::from_secs(10))?;
        read_pcap(&self.file)
    }
}

/// Every frame of the classic pcap file at `path` (either byte order, micro- or nanosecond stamps).
pub fn read_pcap(path: &Path) -> Result<Vec<Vec<u8>>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() < 24 {
        bail!("{}: {} bytes, not a pcap file", path.display(), bytes.len());
    }
    let little = match bytes[..4] {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => bail!("{}: not a classic pcap file (pcapng? dumpcap needs -P)", path.display()),
    };
    let u32_at = |at: usize| {
        let b = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    if u32_at(20) != 1 {
        bail!("{}: link type {}, not Ethernet", path.display(), u32_at(20));
    }
    let mut frames = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let len = u32_at(at + 8) as usize;
        let start = at + 16;
        // A capture stopped mid-write may end in a partial frame: keep what is whole.
        let Some(frame) = bytes.get(start..start + len) else { break };
        frames.push(frame.to_vec());
        at = start + len;
    }
    Ok(frames)
}

/// A UDP datagram of a captured Ethernet/IPv4 frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Udp<'a> {
    /// Source address and port.
    pub src: SocketAddrV4,
    /// Destination address and port.
    pub dst: SocketAddrV4,
    /// The UDP payload.
    pub payload: &'a [u8],
}

/// The UDP datagram in `frame` (Ethernet, optionally one VLAN tag, IPv4, not a fragment), if it is one.
pub fn udp(frame: &[u8]) -> Option<Udp<'_>> {
    let mut l3 = 14;
    let mut ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    if ethertype == 0x8100 {
        ethertype = u16::from_be_bytes([*frame.get(16)?, *frame.get(17)?]);
        l3 = 18;
    }
    let ip = frame.get(l3..)?;
    if ethertype != 0x0800 || ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != 17 {
        return None;
    }
    if u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
    let udp = ip.get(ihl..total)?;
    let len = usize::from(u16::from_be_bytes([*udp.get(4)?, *udp.get(5)?]));
    let payload = udp.get(8..len.min(udp.len()))?;
    let addr =
        |a: &[u8], p: &[u8]| SocketAddrV4::new(Ipv4Addr::new(a[0], a[1], a[2], a[3]), u16::from_be_bytes([p[0], p[1]]));
    Some(Udp { src: addr(&ip[12..16], &udp[0..2]), dst: addr(&ip[16..20], &udp[2..4]), payload })
}

/// Whether `needle` occurs anywhere in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00]);
        let total = (20 + 8 + payload.len()) as u16;
        f.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 198, 18, 2, 1, 198, 18, 2, 10]);
        f[16..18].copy_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&30000u16.to_be_bytes());
        f.extend_from_slice(&10000u16.to_be_bytes());
        f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn pcap_frames_and_udp_payloads_are_read_back() {
        let frames = [frame(b"hello"), frame(&[0x80, 0, 1, 2])];
        let mut file = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0];
        for f in &frames {
            file.extend_from_slice(&[0; 8]);
            file.extend_from_slice(&(f.len() as u32).to_le_bytes());
            file.extend_from_slice(&(f.len() as u32).to_le_bytes());
            file.extend_from_slice(f);
        }
        file.extend_from_slice(&[1, 2, 3]); // a partial record header at the end
        let path = std::env::temp_dir().join(format!("capture-{}.pcap", std::process::id()));
        std::fs::write(&path, file).unwrap();
        let read = read_pcap(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(read, frames);
        let u = udp(&read[0]).unwrap();
        assert_eq!(u.src, "198.18.2.1:30000".parse::<std::net::SocketAddrV4>().unwrap());
        assert_eq!(u.dst, "198.18.2.10:10000".parse::<std::net::SocketAddrV4>().unwrap());
        assert_eq!(u.payload, b"hello");
        assert!(contains(&read[1], &[198, 18, 2, 10]));
        assert!(!contains(u.payload, &[198, 18, 2, 10]));
        assert!(udp(&read[0][..30]).is_none(), "truncated");
    }
}
