//! The generator's second engine: an AF_XDP socket in copy mode on the sender's veth, for kernels where
//! `BPF_PROG_RUN` in live-frames mode is refused (this machine's answers EPERM). User space writes the frames
//! (the same flows, sequence numbers, timestamps and incrementally updated checksums as `gen_rtp`, see
//! [`patch`]) into a shared memory area and hands their descriptors to the kernel, which sends them out of the
//! interface; one `sendto` moves up to 32 frames (the kernel's batch in copy mode).
//!
//! Hand-written against the kernel's AF_XDP ABI (include/uapi/linux/if_xdp.h) with libc: the crates that wrap it
//! (xsk-rs, libxdp bindings) need libbpf/libxdp built in C, and this needs only the TX side.
#![allow(unsafe_code)]

use super::progs::{FlowLayout, HDR_LEN, STAMP_OFF};
use anyhow::{bail, Result};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

const SOL_XDP: libc::c_int = 283;
const XDP_MMAP_OFFSETS: libc::c_int = 1;
const XDP_TX_RING: libc::c_int = 3;
const XDP_UMEM_REG: libc::c_int = 4;
const XDP_UMEM_FILL_RING: libc::c_int = 5;
const XDP_UMEM_COMPLETION_RING: libc::c_int = 6;
const XDP_PGOFF_TX_RING: libc::off_t = 0x8000_0000;
const XDP_UMEM_PGOFF_FILL_RING: libc::off_t = 0x1_0000_0000;
const XDP_UMEM_PGOFF_COMPLETION_RING: libc::off_t = 0x1_8000_0000;
const XDP_COPY: u16 = 1 << 1;

/// Frames in the shared area (and entries of the TX and completion rings).
const FRAMES: u32 = 4096;
const FRAME_SIZE: u32 = 2048;

#[repr(C)]
#[derive(Default)]
struct UmemReg {
    addr: u64,
    len: u64,
    chunk_size: u32,
    headroom: u32,
    flags: u32,
    tx_metadata_len: u32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct RingOffset {
    producer: u64,
    consumer: u64,
    desc: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct MmapOffsets {
    rx: RingOffset,
    tx: RingOffset,
    fr: RingOffset,
    cr: RingOffset,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct XdpDesc {
    addr: u64,
    len: u32,
    options: u32,
}

#[repr(C)]
struct SockaddrXdp {
    family: u16,
    flags: u16,
    ifindex: u32,
    queue_id: u32,
    shared_umem_fd: u32,
}

/// One mapped ring: its producer and consumer words and its entries.
struct Ring {
    map: *mut libc::c_void,
    map_len: usize,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    desc: *mut u8,
    mask: u32,
}

impl Ring {
    fn map(fd: &OwnedFd, off: &RingOffset, pgoff: libc::off_t, entries: u32, entry_size: usize) -> Result<Self> {
        let map_len = off.desc as usize + entries as usize * entry_size;
        // SAFETY: a shared mapping of the socket's ring at the kernel's page offset, of the size the offsets give;
        // checked for MAP_FAILED.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                pgoff,
            )
        };
        if map == libc::MAP_FAILED {
            bail!("mmap of an AF_XDP ring: {}", std::io::Error::last_os_error());
        }
        let base = map.cast::<u8>();
        // SAFETY: the offsets lie within the mapping (the kernel's layout); the words are u32, 4-aligned.
        unsafe {
            Ok(Self {
                map,
                map_len,
                producer: base.add(off.producer as usize).cast(),
                consumer: base.add(off.consumer as usize).cast(),
                desc: base.add(off.desc as usize),
                mask: entries - 1,
            })
        }
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points into the live mapping (self owns it), aligned, shared with the kernel as an atomic word.
        unsafe { &*self.producer }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as producer().
        unsafe { &*self.consumer }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what map() mapped.
        unsafe { libc::munmap(self.map, self.map_len) };
    }
}

/// An AF_XDP socket bound to one interface's queue 0 in copy mode, TX only, with its frames pre-written.
pub struct XskSender {
    fd: OwnedFd,
    umem: *mut u8,
    umem_len: usize,
    tx: Ring,
    cq: Ring,
    _fq: Ring,
    free: Vec<u64>,
    frame_len: u32,
    layout: FlowLayout,
    template: Vec<u8>,
    /// The next packet's number (as gen_rtp's per-CPU counter).
    next: u64,
    /// Frames the kernel completed (sent out of the interface, or dropped by it).
    pub completed: u64,
}

impl std::fmt::Debug for XskSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XskSender").field("completed", &self.completed).finish_non_exhaustive()
    }
}

fn setsockopt<T>(fd: &OwnedFd, opt: libc::c_int, value: &T) -> Result<()> {
    // SAFETY: value is a live T of the size given.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            SOL_XDP,
            opt,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        bail!("setsockopt(SOL_XDP, {opt}): {}", std::io::Error::last_os_error());
    }
    Ok(())
}

impl XskSender {
    /// Opens the socket on `ifindex` and writes the template frame (`layout`, MACs) into every frame.
    pub fn open(ifindex: u32, layout: &FlowLayout, src_mac: [u8; 6], dst_mac: [u8; 6]) -> Result<Self> {
        let template = layout.template(src_mac, dst_mac);
        if template.len() > FRAME_SIZE as usize {
            bail!("frames of {} bytes do not fit the {FRAME_SIZE}-byte chunks", template.len());
        }
        // SAFETY: plain socket(2); the fd is owned from here on.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            bail!("socket(AF_XDP): {}", std::io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh, valid fd.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let umem_len = (FRAMES * FRAME_SIZE) as usize;
        // SAFETY: an anonymous private mapping, checked for MAP_FAILED, unmapped in Drop.
        let umem = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                umem_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if umem == libc::MAP_FAILED {
            bail!("mmap of the AF_XDP frame area: {}", std::io::Error::last_os_error());
        }
        let umem = umem.cast::<u8>();
        let reg = UmemReg { addr: umem as u64, len: umem_len as u64, chunk_size: FRAME_SIZE, ..UmemReg::default() };
        let opened = (|| -> Result<(Ring, Ring, Ring)> {
            setsockopt(&fd, XDP_UMEM_REG, &reg)?;
            let small: libc::c_int = 64;
            let entries = FRAMES as libc::c_int;
            setsockopt(&fd, XDP_UMEM_FILL_RING, &small)?;
            setsockopt(&fd, XDP_UMEM_COMPLETION_RING, &entries)?;
            setsockopt(&fd, XDP_TX_RING, &entries)?;
            let mut off = MmapOffsets::default();
            let mut len = std::mem::size_of::<MmapOffsets>() as libc::socklen_t;
            // SAFETY: off is a live MmapOffsets and len its size.
            let rc = unsafe {
                libc::getsockopt(
                    fd.as_raw_fd(),
                    SOL_XDP,
                    XDP_MMAP_OFFSETS,
                    (&mut off as *mut MmapOffsets).cast(),
                    &mut len,
                )
            };
            if rc != 0 {
                bail!("getsockopt(XDP_MMAP_OFFSETS): {}", std::io::Error::last_os_error());
            }
            let tx = Ring::map(&fd, &off.tx, XDP_PGOFF_TX_RING, FRAMES, std::mem::size_of::<XdpDesc>())?;
            let cq = Ring::map(&fd, &off.cr, XDP_UMEM_PGOFF_COMPLETION_RING, FRAMES, 8)?;
            let fq = Ring::map(&fd, &off.fr, XDP_UMEM_PGOFF_FILL_RING, 64, 8)?;
            let sa =
                SockaddrXdp { family: libc::AF_XDP as u16, flags: XDP_COPY, ifindex, queue_id: 0, shared_umem_fd: 0 };
            // The previous step's socket on the same queue may still be going away (its release is deferred):
            // EBUSY for a moment.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
            loop {
                // SAFETY: sa is a live sockaddr_xdp of the size given.
                let rc = unsafe {
                    libc::bind(
                        fd.as_raw_fd(),
                        (&sa as *const SockaddrXdp).cast(),
                        std::mem::size_of::<SockaddrXdp>() as libc::socklen_t,
                    )
                };
                if rc == 0 {
                    break;
                }
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EBUSY) || std::time::Instant::now() > deadline {
                    bail!("bind(AF_XDP, ifindex {ifindex}, queue 0, copy mode): {e}");
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Ok((tx, cq, fq))
        })();
        let (tx, cq, fq) = match opened {
            Ok(r) => r,
            Err(e) => {
                // SAFETY: unmaps the area mapped above, not used after.
                unsafe { libc::munmap(umem.cast(), umem_len) };
                return Err(e);
            }
        };
        for i in 0..FRAMES {
            // SAFETY: frame i lies within the area (i < FRAMES, template <= FRAME_SIZE).
            unsafe {
                std::ptr::copy_nonoverlapping(template.as_ptr(), umem.add((i * FRAME_SIZE) as usize), template.len())
            };
        }
        Ok(Self {
            fd,
            umem,
            umem_len,
            tx,
            cq,
            _fq: fq,
            free: (0..FRAMES).rev().map(|i| u64::from(i * FRAME_SIZE)).collect(),
            frame_len: template.len() as u32,
            layout: layout.clone(),
            template,
            next: 0,
            completed: 0,
        })
    }

    /// Takes back the frames the kernel is done with.
    fn reap(&mut self) {
        let prod = self.cq.producer().load(Ordering::Acquire);
        let mut cons = self.cq.consumer().load(Ordering::Relaxed);
        while cons != prod {
            // SAFETY: entry (cons & mask) of the completion ring, within its mapping; the kernel published it.
            let addr = unsafe { *self.cq.desc.cast::<u64>().add((cons & self.cq.mask) as usize) };
            self.free.push(addr);
            cons = cons.wrapping_add(1);
            self.completed += 1;
        }
        self.cq.consumer().store(cons, Ordering::Release);
    }

    /// Queues up to `n` frames (fewer when the ring or the free frames run out) and kicks the kernel until it
    /// took them. Returns the number queued. `stamp`: the frames' send time (CLOCK_MONOTONIC ns, see
    /// [`monotonic_ns`]), or 0 for none.
    pub fn send(&mut self, n: u32, stamp: u64) -> Result<u32> {
        self.reap();
        let prod = self.tx.producer().load(Ordering::Relaxed);
        let room = FRAMES - prod.wrapping_sub(self.tx.consumer().load(Ordering::Acquire));
        let n = n.min(room).min(self.free.len() as u32);
        for k in 0..n {
            let addr = self.free.pop().unwrap_or_default();
            // SAFETY: addr is a frame offset of the area (from `free`), frame_len <= FRAME_SIZE.
            let frame =
                unsafe { std::slice::from_raw_parts_mut(self.umem.add(addr as usize), self.frame_len as usize) };
            patch(frame, &self.template, &self.layout, self.next, stamp);
            self.next += 1;
            let slot = prod.wrapping_add(k) & self.tx.mask;
            // SAFETY: entry `slot` of the TX ring, within its mapping; not yet published to the kernel.
            unsafe {
                *self.tx.desc.cast::<XdpDesc>().add(slot as usize) = XdpDesc { addr, len: self.frame_len, options: 0 }
            };
        }
        self.tx.producer().store(prod.wrapping_add(n), Ordering::Release);
        // Copy mode sends at most 32 frames per call: kick until the ring is drained.
        let target = prod.wrapping_add(n);
        let mut spins = 0u32;
        while self.tx.consumer().load(Ordering::Acquire) != target {
            // SAFETY: sendto with no buffer on our socket: the AF_XDP "kick".
            let rc = unsafe {
                libc::sendto(self.fd.as_raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT, std::ptr::null(), 0)
            };
            if rc < 0 {
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN) | Some(libc::EBUSY) | Some(libc::ENOBUFS) => {
                        self.reap();
                        spins += 1;
                        if spins > 1_000_000 {
                            bail!("the AF_XDP TX ring does not drain: {e}");
                        }
                    }
                    _ => bail!("AF_XDP sendto: {e}"),
                }
            }
        }
        self.reap();
        Ok(n)
    }

    /// Waits (up to a second) until every queued frame has completed.
    pub fn drain(&mut self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        while self.free.len() < FRAMES as usize && std::time::Instant::now() < deadline {
            self.reap();
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }
}

impl Drop for XskSender {
    fn drop(&mut self) {
        // The rings (and the socket) go first: the kernel holds the area while the socket is bound.
        // SAFETY: unmaps exactly the area mapped in open().
        unsafe { libc::munmap(self.umem.cast(), self.umem_len) };
    }
}

/// CLOCK_MONOTONIC in ns: the clock of the sink's `bpf_ktime_get_ns()`, so a stamp from here and the sink's reading
/// subtract. (`Instant` reads the same clock but does not expose its value.)
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a live timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Writes packet `n`'s fields into `frame` (a copy of `template`): as gen_rtp does, flow `n % N`, sequence
/// number `n / N`, timestamp `(n / N) * payload`, SSRC `ssrc_base + flow`, the send time `stamp` (0: none; the
/// template's zeros) where the payload is long enough, checksums updated from the template's.
pub fn patch(frame: &mut [u8], template: &[u8], layout: &FlowLayout, n: u64, stamp: u64) {
    let flow = (n % u64::from(layout.flows)) as u32;
    let round = (n / u64::from(layout.flows)) as u32;
    let (daddr, dport) = layout.destination(flow);
    let sport = layout.source_port(flow);
    let stamp = stamp.to_ne_bytes();
    let stamped = frame.len() >= STAMP_OFF + 8;
    let fields: [(usize, &[u8]); 7] = [
        (30, &daddr.octets()),
        (34, &sport.to_be_bytes()),
        (36, &dport.to_be_bytes()),
        (44, &(round as u16).to_be_bytes()),
        (46, &round.wrapping_mul(u32::from(layout.payload)).to_be_bytes()),
        (50, &(layout.ssrc_base.wrapping_add(flow)).to_be_bytes()),
        (STAMP_OFF, if stamped { &stamp } else { &[] }),
    ];
    let word = |b: &[u8], i: usize| u32::from(u16::from_be_bytes([b[i], b[i + 1]]));
    // RFC 1624: HC' = ~(~HC + ~m + m'), over the 16-bit words that change.
    let mut ip = u32::from(!u16::from_be_bytes([template[24], template[25]]));
    let mut udp = u32::from(!u16::from_be_bytes([template[40], template[41]]));
    for (off, new) in fields {
        for w in (0..new.len()).step_by(2) {
            let delta = (!word(template, off + w) & 0xffff) + word(new, w);
            udp += delta;
            if off == 30 {
                ip += delta;
            }
        }
        frame[off..off + new.len()].copy_from_slice(new);
    }
    let fold = |mut s: u32| {
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    };
    frame[24..26].copy_from_slice(&fold(ip).to_be_bytes());
    let u = fold(udp);
    frame[40..42].copy_from_slice(&(if u == 0 { 0xffff } else { u }).to_be_bytes());
    debug_assert!(frame.len() >= HDR_LEN);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn patched_frames_have_valid_checksums_and_per_flow_sequences() {
        let layout =
            FlowLayout::new(100_000, Ipv4Addr::new(198, 18, 1, 10), Ipv4Addr::new(198, 18, 1, 1), 7000, 30000, 2);
        assert_eq!(layout.span, 17_768);
        assert_eq!(layout.addresses(), 6);
        let template = layout.template([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let mut frame = template.clone();
        for n in [0u64, 1, 17_767, 17_768, 99_999, 100_000, 100_001, 12_345_678_901] {
            let stamp = if n % 2 == 0 { 0 } else { monotonic_ns() };
            patch(&mut frame, &template, &layout, n, stamp);
            assert_eq!(frame[STAMP_OFF..STAMP_OFF + 8], stamp.to_ne_bytes(), "send time of packet {n}");
            let flow = (n % 100_000) as u32;
            crate::live::helpers::check_frame(&frame, &layout, flow).unwrap_or_else(|e| panic!("packet {n}: {e:#}"));
            assert_eq!(u16::from_be_bytes([frame[44], frame[45]]), (n / 100_000) as u16, "sequence of packet {n}");
        }
    }
}
