//! Keeps the program's cached next hops fresh: a thread that bumps `relay_nh_gen` whenever the kernel
//! announces a neighbour, route, address or link change (rtnetlink multicast), so that every flow looks its next
//! hop up again at its next packet (see `struct relay_target` in `ebpf/include/relay_abi.h`).
//!
//! Hand-written on a raw netlink socket (nix) rather than with an rtnetlink crate: nothing in a message is read,
//! only that one came, and a receive timeout lets the thread see that it should stop.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use aya::maps::{Array, MapData};
use nix::{
    errno::Errno,
    sys::{
        socket::{
            bind, recv, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol,
            SockType,
        },
        time::TimeVal,
    },
};
use tracing::{debug, warn};

use super::{abi, XdpError};

/// `RTMGRP_LINK | RTMGRP_NEIGH | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_IFADDR | RTMGRP_IPV6_ROUTE`
/// (linux/rtnetlink.h).
const GROUPS: u32 = 0x1 | 0x4 | 0x10 | 0x40 | 0x100 | 0x400;
/// How often the thread looks at its stop flag while no change comes.
const POLL: Duration = Duration::from_millis(200);

/// Bumps the generation on every change until dropped.
#[derive(Debug)]
pub(super) struct NextHopWatch {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Sets the generation to 1 (0 means "not set up": the program then passes every packet), subscribes to the
/// changes and starts the thread.
pub(super) fn start(gen_map: aya::maps::Map) -> Result<NextHopWatch, XdpError> {
    let mut gen: Array<MapData, u32> =
        Array::try_from(gen_map).map_err(|source| XdpError::Map { map: abi::MAP_NH_GEN, source })?;
    let fd = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkRoute)
        .map_err(|e| XdpError::NextHop(format!("open a netlink route socket: {e}")))?;
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &NetlinkAddr::new(0, GROUPS))
        .map_err(|e| XdpError::NextHop(format!("join the rtnetlink groups: {e}")))?;
    setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(0, POLL.as_micros() as i64))
        .map_err(|e| XdpError::NextHop(format!("set the netlink receive timeout: {e}")))?;
    // Subscribed before the first generation is set: a change from now on is not missed.
    let mut current = 1u32;
    gen.set(0, current, 0).map_err(|source| XdpError::Map { map: abi::MAP_NH_GEN, source })?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let thread = std::thread::Builder::new()
        .name("xdp-next-hop".into())
        .spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while !stopped.load(Ordering::Relaxed) {
                match recv(std::os::fd::AsRawFd::as_raw_fd(&fd), &mut buf, MsgFlags::empty()) {
                    // ENOBUFS: notifications were lost, so something changed.
                    Ok(_) | Err(Errno::ENOBUFS) => {}
                    Err(Errno::EAGAIN | Errno::EINTR) => continue,
                    Err(e) => {
                        warn!(error = %e, "xdp: netlink route socket failed; next hops no longer refreshed");
                        return;
                    }
                }
                // Drain what else came at once: one bump covers them.
                while recv(std::os::fd::AsRawFd::as_raw_fd(&fd), &mut buf, MsgFlags::MSG_DONTWAIT).is_ok() {}
                current = current.wrapping_add(1).max(1);
                match gen.set(0, current, 0) {
                    Ok(()) => debug!(generation = current, "xdp: routing change, next hops looked up again"),
                    Err(e) => warn!(error = %e, "xdp: relay_nh_gen not bumped"),
                }
            }
        })
        .map_err(|e| XdpError::NextHop(format!("start the thread: {e}")))?;
    Ok(NextHopWatch { stop, thread: Some(thread) })
}

impl Drop for NextHopWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
