//! Loading, attaching, and the map writer.

use std::{collections::HashMap as StdHashMap, time::Duration};

use aya::{
    maps::{Array, DevMapHash, HashMap, MapData, MapError, PerCpuArray, PerCpuHashMap, PerCpuValues},
    programs::{
        xdp::XdpLinkId, BtfTracePoint, ProgramError, TestRun as _, TestRunOptions, Xdp as XdpProgram,
        XdpMode as AyaMode,
    },
    Btf, Ebpf, EbpfLoader,
};
use tracing::{debug, info, warn};

use super::{
    abi::{self, RelayAddr, RelayAddr4, RelayFlowStats, RelayIfaceDrops, RelayIfaceKey, RelayTarget, RelayTarget4},
    egress::{FeatureWatch, NetdevFeatures},
    next_hop, objects, ActionCounters, AttachedMode, DropCounters, EgressChange, FlowKey, FlowTarget, KernelCounters,
    XdpError, XdpMode,
};

/// The loaded relay program and its maps. See the [module docs](super).
#[derive(Debug)]
pub struct Xdp {
    inner: Option<Inner>,
    mode: AttachedMode,
}

struct Inner {
    // Field order = drop order: the links (inside `ebpf`'s program) go first, detaching the program.
    ebpf: Ebpf,
    /// IPv4 flows (8-byte key) and IPv6 flows.
    flows4: HashMap<MapData, RelayAddr4, RelayTarget4>,
    flows: HashMap<MapData, RelayAddr, RelayTarget>,
    stats: PerCpuArray<MapData, RelayFlowStats>,
    actions: PerCpuArray<MapData, u64>,
    /// The interfaces that take XDP frames now (redirect and XDP_TX targets): see [`Xdp::sync_egress`].
    devmap: DevMapHash<MapData>,
    /// Frames lost after the program, per interface (entries inserted here, counted by the tracing programs),
    /// keyed by this process's network namespace and the ifindex.
    drops: PerCpuHashMap<MapData, RelayIfaceKey, RelayIfaceDrops>,
    /// The inode number of this process's network namespace, where its interfaces are.
    netns: u32,
    /// Banned source addresses (port 0) and their reason codes; `ban_count` slot 0 is how many (the program
    /// skips the lookup while there are none); `ban_drops` counts what was dropped per reason.
    bans: HashMap<MapData, RelayAddr, u32>,
    ban_count: Array<MapData, u32>,
    ban_drops: PerCpuArray<MapData, u64>,
    banned: std::collections::HashSet<std::net::IpAddr>,
    /// The interfaces given, in order, and whether each is in `devmap` now.
    ifaces: Vec<Iface>,
    /// Asks the kernel which interfaces take XDP frames (native mode only: the generic path sends through the
    /// stack, which every device takes).
    features: Option<NetdevFeatures>,
    watch: Option<FeatureWatch>,
    /// Per counter slot: the packet count at the last read and when (CLOCK_MONOTONIC ns) it was last seen to
    /// grow, which stands for the time of the last packet (see [`KernelCounters::last_seen_ns`]).
    seen: std::sync::Mutex<StdHashMap<u32, (u64, u64)>>,
    /// Counter slot of every installed flow (we are the only writer, so this mirrors `relay_flows4` and `relay_flows`).
    slots: StdHashMap<FlowKey, u32>,
    /// Packets forwarded by the flows removed so far (their last read): with the live flows' counters, every
    /// packet the program forwarded, from which [`Xdp::actions`] derives the redirects it does not count.
    retired_packets: u64,
    free: Vec<u32>,
    next_slot: u32,
    capacity: u32,
    cpus: usize,
    attached: Vec<(String, XdpLinkId)>,
    /// Bumps `relay_nh_gen` on routing changes (the program's next-hop cache); stopped on drop.
    _next_hop: next_hop::NextHopWatch,
}

/// The inode number of this process's network namespace: what the kernel's `net->ns.inum` holds, which the
/// tracing programs read from the device of each event.
fn own_netns() -> Result<u32, XdpError> {
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata("/proc/self/ns/net").map_err(|e| XdpError::Netns(e.to_string()))?.ino();
    u32::try_from(ino).map_err(|_| XdpError::Netns(format!("inode {ino} beyond 32 bits")))
}

#[derive(Debug)]
struct Iface {
    name: String,
    index: u32,
    in_devmap: bool,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("flows", &self.slots.len())
            .field("capacity", &self.capacity)
            .field("attached", &self.attached)
            .finish_non_exhaustive()
    }
}

/// What one `BPF_PROG_TEST_RUN` returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestRunOutput {
    /// The XDP action (`XDP_PASS` = 2, `XDP_TX` = 3, `XDP_REDIRECT` = 4).
    pub action: u32,
    /// The frame after the program ran (the last run's, with `repeat` > 1).
    pub frame: Vec<u8>,
    /// Mean run time per repetition, as the kernel measured it.
    pub duration: Duration,
}

impl Xdp {
    /// Loads the program and attaches it to `interfaces` (names) in `mode`; `Auto` tries native, then generic,
    /// then off, and logs which. Fills `relay_devmap` with the interfaces' ifindexes (the redirect targets).
    /// Nothing is pinned: bpffs is not needed and not mounted. Attaching uses `bpf_link` (aya falls back to
    /// netlink only on kernels without XDP links, before 5.9).
    pub fn attach(mode: XdpMode, interfaces: &[String]) -> Result<(Self, AttachedMode), XdpError> {
        Self::attach_sized(mode, interfaces, abi::DEFAULT_MAX_FLOWS)
    }

    /// As [`Xdp::attach`], with room for `max_flows` flows of each address family (the flow maps and the
    /// counter slots are sized at load; 1 to [`abi::LIMIT_MAX_FLOWS`]).
    pub fn attach_sized(
        mode: XdpMode,
        interfaces: &[String],
        max_flows: u32,
    ) -> Result<(Self, AttachedMode), XdpError> {
        if mode == XdpMode::Off {
            info!("xdp: off (configured); the user-space relay forwards everything");
            return Ok((Self { inner: None, mode: AttachedMode::Off }, AttachedMode::Off));
        }
        if interfaces.is_empty() {
            return Err(XdpError::NoInterfaces);
        }
        let tries: &[AttachedMode] = match mode {
            XdpMode::Native => &[AttachedMode::Native],
            XdpMode::Generic => &[AttachedMode::Generic],
            XdpMode::Auto | XdpMode::Off => &[AttachedMode::Native, AttachedMode::Generic],
        };
        let mut inner = Inner::load(interfaces, max_flows)?;
        // Without the drop counters a loss after the program would be invisible: no attach without them.
        inner.attach_drop_counters()?;
        let mut last_err = None;
        for &want in tries {
            match inner.attach_all(want, interfaces).and_then(|()| inner.check_egress(mode, want)) {
                Ok(()) => {
                    info!(mode = %want, ?interfaces, "xdp: relay_xdp attached");
                    warn_forwarding(interfaces);
                    return Ok((Self { inner: Some(inner), mode: want }, want));
                }
                Err(e) => {
                    inner.detach_all();
                    if mode == XdpMode::Auto {
                        warn!(error = %e, "xdp: {want} attach failed");
                    }
                    last_err = Some(e);
                }
            }
        }
        match (mode, last_err) {
            (XdpMode::Auto, _) => {
                warn!("xdp: neither native nor generic XDP attached: off; the user-space relay forwards everything");
                Ok((Self { inner: None, mode: AttachedMode::Off }, AttachedMode::Off))
            }
            (_, Some(e)) => Err(e),
            (_, None) => Err(XdpError::NoInterfaces),
        }
    }

    /// Loads the program and fills `relay_devmap` with `interfaces`, attaching nothing: for
    /// [`Xdp::test_run`] (packet tests, benchmarks). [`Xdp::mode`] is `Off`, but flows can be installed.
    pub fn load_unattached(interfaces: &[String]) -> Result<Self, XdpError> {
        Self::load_unattached_sized(interfaces, abi::DEFAULT_MAX_FLOWS)
    }

    /// As [`Xdp::load_unattached`], with room for `max_flows` flows (see [`Xdp::attach_sized`]).
    pub fn load_unattached_sized(interfaces: &[String], max_flows: u32) -> Result<Self, XdpError> {
        Ok(Self { inner: Some(Inner::load(interfaces, max_flows)?), mode: AttachedMode::Off })
    }

    /// How many flows the maps hold (per address family; also the counter slots).
    pub fn capacity(&self) -> u32 {
        self.inner.as_ref().map_or(0, |i| i.capacity)
    }

    /// How the program is attached.
    pub fn mode(&self) -> AttachedMode {
        self.mode
    }

    /// Wakes up when an interface's XDP features may have changed (native mode on Linux 6.3 and newer): call
    /// [`Xdp::sync_egress`] then.
    pub fn feature_watch(&self) -> Option<FeatureWatch> {
        self.inner.as_ref().and_then(|i| i.watch.clone())
    }

    /// Puts into `relay_devmap` exactly the attached interfaces that take XDP frames now, and returns what
    /// changed (logged here). Flows out of an interface that is not in it are passed to user space
    /// (`ACT_PASS_EGRESS`): slower, never lost. In generic mode every interface stays in (the kernel sends
    /// generic XDP frames through the stack, which any device takes).
    pub fn sync_egress(&mut self) -> Vec<EgressChange> {
        let Some(inner) = self.inner.as_mut() else { return Vec::new() };
        if self.mode != AttachedMode::Native {
            return Vec::new();
        }
        inner.sync_egress()
    }

    /// The attached interfaces that cannot take XDP frames now (their flows stay in user space).
    pub fn blocked_egress(&self) -> Vec<String> {
        let Some(inner) = self.inner.as_ref() else { return Vec::new() };
        inner.ifaces.iter().filter(|i| !i.in_devmap).map(|i| i.name.clone()).collect()
    }

    /// Drops every packet from `addr` (any protocol, any port) in the kernel from now on, counted under `reason`
    /// (a code below [`abi::BAN_REASONS`]). Without XDP attached this does nothing: the caller bans in user space
    /// as well.
    pub fn ban(&mut self, addr: std::net::IpAddr, reason: u32) -> Result<(), XdpError> {
        let Some(inner) = self.inner.as_mut() else { return Ok(()) };
        let key = RelayAddr::from(std::net::SocketAddr::new(addr, 0));
        inner.bans.insert(key, reason, 0).map_err(|source| XdpError::Map { map: abi::MAP_BANS, source })?;
        inner.banned.insert(addr);
        inner.set_ban_count()
    }

    /// Lifts the ban on `addr`.
    pub fn unban(&mut self, addr: std::net::IpAddr) -> Result<(), XdpError> {
        let Some(inner) = self.inner.as_mut() else { return Ok(()) };
        let key = RelayAddr::from(std::net::SocketAddr::new(addr, 0));
        match inner.bans.remove(&key) {
            Ok(()) | Err(MapError::KeyNotFound) => {}
            Err(source) => return Err(XdpError::Map { map: abi::MAP_BANS, source }),
        }
        inner.banned.remove(&addr);
        inner.set_ban_count()
    }

    /// Packets dropped from banned sources, per reason code (index), summed over CPUs.
    pub fn ban_drops(&self) -> Result<[u64; abi::BAN_REASONS as usize], XdpError> {
        let mut out = [0u64; abi::BAN_REASONS as usize];
        let Some(inner) = self.inner.as_ref() else { return Ok(out) };
        for (i, slot) in out.iter_mut().enumerate() {
            let values = inner
                .ban_drops
                .get(&(i as u32), 0)
                .map_err(|source| XdpError::Map { map: abi::MAP_BAN_DROPS, source })?;
            *slot = values.iter().copied().fold(0u64, u64::wrapping_add);
        }
        Ok(out)
    }

    /// Frames the kernel failed to send after the program redirected or transmitted them, summed over the
    /// attached interfaces and CPUs.
    pub fn drops(&self) -> Result<DropCounters, XdpError> {
        let Some(inner) = self.inner.as_ref() else { return Ok(DropCounters::default()) };
        let mut total = DropCounters::default();
        for iface in &inner.ifaces {
            let key = RelayIfaceKey { netns: inner.netns, ifindex: iface.index };
            let values = match inner.drops.get(&key, 0) {
                Ok(v) => v,
                Err(MapError::KeyNotFound) => continue,
                Err(source) => return Err(XdpError::Map { map: abi::MAP_DROPS, source }),
            };
            for v in values.iter() {
                total.redirect_errors = total.redirect_errors.wrapping_add(v.redirect_errors);
                total.xmit_drops = total.xmit_drops.wrapping_add(v.xmit_drops);
                total.tx_drops = total.tx_drops.wrapping_add(v.tx_drops);
                total.exceptions = total.exceptions.wrapping_add(v.exceptions);
            }
        }
        Ok(total)
    }

    fn inner(&self) -> Result<&Inner, XdpError> {
        self.inner.as_ref().ok_or(XdpError::Off)
    }

    /// Installs (or replaces) the flow for `key`. A new flow gets a free counter slot, zeroed first; a replaced
    /// one keeps its slot and counters.
    pub fn install(&mut self, key: FlowKey, target: FlowTarget) -> Result<(), XdpError> {
        let inner = self.inner.as_mut().ok_or(XdpError::Off)?;
        let key = FlowKey { local: abi::canonical(key.local) };
        let (expect, from, to) =
            (RelayAddr::from(target.expect), RelayAddr::from(target.from), RelayAddr::from(target.to));
        let kaddr = RelayAddr::from(key.local);
        if from.family != kaddr.family || to.family != kaddr.family {
            return Err(XdpError::CrossFamily { key: key.local, to: target.to });
        }
        let slot = match inner.slots.get(&key) {
            Some(&slot) => slot,
            None => {
                let slot = match inner.free.pop() {
                    Some(slot) => slot,
                    None if inner.next_slot < inner.capacity => {
                        inner.next_slot += 1;
                        inner.next_slot - 1
                    }
                    None => return Err(XdpError::Full(inner.capacity)),
                };
                if let Err(e) = inner.zero_slot(slot) {
                    inner.free.push(slot);
                    return Err(e);
                }
                slot
            }
        };
        let flags = if target.strict { abi::F_STRICT } else { 0 } | if target.pass_rtcp { abi::F_PASS_RTCP } else { 0 };
        let value = RelayTarget { expect, from, to, flags, stats_index: slot, ..RelayTarget::default() };
        let inserted = match kaddr.v4_key() {
            Some(k4) => {
                // Checked above: the key's family is the targets'.
                let value =
                    RelayTarget4::from_target(&value).ok_or(XdpError::CrossFamily { key: key.local, to: target.to })?;
                inner.flows4.insert(k4, value, 0).map_err(|source| XdpError::Map { map: abi::MAP_FLOWS4, source })
            }
            None => inner.flows.insert(kaddr, value, 0).map_err(|source| XdpError::Map { map: abi::MAP_FLOWS, source }),
        };
        if let Err(e) = inserted {
            if !inner.slots.contains_key(&key) {
                inner.free.push(slot);
            }
            return Err(e);
        }
        inner.slots.insert(key, slot);
        debug!(local = %key.local, ?target, slot, "xdp: flow installed");
        Ok(())
    }

    /// Removes the flow for `key`; returns its final counters (`None` if it was not installed).
    pub fn remove(&mut self, key: &FlowKey) -> Result<Option<KernelCounters>, XdpError> {
        let Some(inner) = self.inner.as_mut() else { return Ok(None) };
        let key = FlowKey { local: abi::canonical(key.local) };
        let Some(&slot) = inner.slots.get(&key) else { return Ok(None) };
        let kaddr = RelayAddr::from(key.local);
        let removed = match kaddr.v4_key() {
            Some(k4) => inner.flows4.remove(&k4).map_err(|e| (abi::MAP_FLOWS4, e)),
            None => inner.flows.remove(&kaddr).map_err(|e| (abi::MAP_FLOWS, e)),
        };
        match removed {
            Ok(()) | Err((_, MapError::KeyNotFound)) => {}
            Err((map, source)) => return Err(XdpError::Map { map, source }),
        }
        // Read after the delete: a packet in flight on another CPU may still count, which is what we want.
        let counters = inner.read_slot(slot)?;
        inner.retired_packets = inner.retired_packets.wrapping_add(counters.packets);
        inner.slots.remove(&key);
        inner.free.push(slot);
        debug!(local = %key.local, ?counters, "xdp: flow removed");
        Ok(Some(counters))
    }

    /// The counters of the flow for `key`, summed over CPUs (`None` if not installed or XDP is off).
    pub fn counters(&self, key: &FlowKey) -> Result<Option<KernelCounters>, XdpError> {
        let Some(inner) = self.inner.as_ref() else { return Ok(None) };
        let key = FlowKey { local: abi::canonical(key.local) };
        match inner.slots.get(&key) {
            Some(&slot) => inner.read_slot(slot).map(Some),
            None => Ok(None),
        }
    }

    /// The program's action counters, summed over CPUs (all zero when off).
    ///
    /// The program does not count redirects (a second per-CPU counter on every hit): `redirect` is every packet
    /// the flows forwarded (a fresh read of every installed flow's counters, plus the removed flows' last read)
    /// less `tx`, exact as long as no slot's counters wrap. So this reads one counter slot per installed flow.
    pub fn actions(&self) -> Result<ActionCounters, XdpError> {
        let Some(inner) = self.inner.as_ref() else { return Ok(ActionCounters::default()) };
        let get = |i: u32| -> Result<u64, XdpError> {
            let values = inner.actions.get(&i, 0).map_err(|source| XdpError::Map { map: abi::MAP_ACTIONS, source })?;
            Ok(values.iter().copied().fold(0u64, u64::wrapping_add))
        };
        let tx = get(abi::ACT_TX)?;
        let mut forwarded = inner.retired_packets;
        for &slot in inner.slots.values() {
            forwarded = forwarded.wrapping_add(inner.read_slot(slot)?.packets);
        }
        Ok(ActionCounters {
            redirect: forwarded.wrapping_sub(tx),
            tx,
            pass_miss: get(abi::ACT_PASS_MISS)?,
            pass_source: get(abi::ACT_PASS_SOURCE)?,
            pass_fib: get(abi::ACT_PASS_FIB)?,
            pass_ttl: get(abi::ACT_PASS_TTL)?,
            pass_frag: get(abi::ACT_PASS_FRAG)?,
            pass_other: get(abi::ACT_PASS_OTHER)?,
            pass_egress: get(abi::ACT_PASS_EGRESS)?,
            pass_csum: get(abi::ACT_PASS_CSUM)?,
            pass_rtcp: get(abi::ACT_PASS_RTCP)?,
        })
    }

    /// Runs the program once (or `repeat` times on the same buffer: a rewritten frame is fed back in) on
    /// `frame` through `BPF_PROG_TEST_RUN`, as if received on `ingress_ifindex` (0 = none: then
    /// `bpf_fib_lookup` fails and hits are passed). Counters and maps are the real ones.
    pub fn test_run(&self, frame: &[u8], ingress_ifindex: u32, repeat: u32) -> Result<TestRunOutput, XdpError> {
        test_run_prog(self.inner()?.program()?, abi::PROG_XDP, frame, ingress_ifindex, repeat)
    }
}

impl Drop for Xdp {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.as_mut() {
            let attached = std::mem::take(&mut inner.attached);
            if let Ok(prog) = inner.program_mut() {
                for (iface, link) in attached {
                    match prog.detach(link) {
                        Ok(()) => debug!(iface, "xdp: detached"),
                        Err(e) => warn!(iface, error = %e, "xdp: detach failed"),
                    }
                }
            }
        }
    }
}

impl Inner {
    fn load(interfaces: &[String], max_flows: u32) -> Result<Self, XdpError> {
        if max_flows == 0 || max_flows > abi::LIMIT_MAX_FLOWS {
            return Err(XdpError::Capacity(max_flows));
        }
        let ifindexes = interfaces.iter().map(|name| ifindex(name)).collect::<Result<Vec<_>, _>>()?;
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(abi::MAP_FLOWS4, max_flows)
            .map_max_entries(abi::MAP_FLOWS, max_flows)
            .map_max_entries(abi::MAP_STATS, max_flows)
            .load(objects::RELAY_XDP)
            .map_err(XdpError::Load)?;
        let prog: &mut XdpProgram = ebpf
            .program_mut(abi::PROG_XDP)
            .ok_or(XdpError::Missing("program relay_xdp"))?
            .try_into()
            .map_err(|source| XdpError::Program { name: abi::PROG_XDP, source })?;
        prog.load().map_err(|source| XdpError::Program { name: abi::PROG_XDP, source })?;
        let mut take = |name: &'static str| ebpf.take_map(name).ok_or(XdpError::Missing(name));
        let map_err = |map: &'static str| move |source| XdpError::Map { map, source };
        let flows4 = HashMap::try_from(take(abi::MAP_FLOWS4)?).map_err(map_err(abi::MAP_FLOWS4))?;
        let flows = HashMap::try_from(take(abi::MAP_FLOWS)?).map_err(map_err(abi::MAP_FLOWS))?;
        let stats: PerCpuArray<MapData, RelayFlowStats> =
            PerCpuArray::try_from(take(abi::MAP_STATS)?).map_err(map_err(abi::MAP_STATS))?;
        let actions = PerCpuArray::try_from(take(abi::MAP_ACTIONS)?).map_err(map_err(abi::MAP_ACTIONS))?;
        let mut devmap = DevMapHash::try_from(take(abi::MAP_DEVMAP)?).map_err(map_err(abi::MAP_DEVMAP))?;
        for (name, &index) in interfaces.iter().zip(&ifindexes) {
            devmap.insert(index, index, None, 0).map_err(|source| XdpError::Devmap { iface: name.clone(), source })?;
        }
        let drops = PerCpuHashMap::try_from(take(abi::MAP_DROPS)?).map_err(map_err(abi::MAP_DROPS))?;
        let netns = own_netns()?;
        let bans = HashMap::try_from(take(abi::MAP_BANS)?).map_err(map_err(abi::MAP_BANS))?;
        let ban_count = Array::try_from(take(abi::MAP_BAN_COUNT)?).map_err(map_err(abi::MAP_BAN_COUNT))?;
        let ban_drops = PerCpuArray::try_from(take(abi::MAP_BAN_DROPS)?).map_err(map_err(abi::MAP_BAN_DROPS))?;
        let next_hop = next_hop::start(take(abi::MAP_NH_GEN)?)?;
        let cpus = aya::util::nr_cpus().map_err(|(what, e)| XdpError::Cpus(format!("{what}: {e}")))?;
        let capacity = stats.len();
        let ifaces = interfaces
            .iter()
            .zip(&ifindexes)
            .map(|(name, &index)| Iface { name: name.clone(), index, in_devmap: true })
            .collect();
        Ok(Self {
            ebpf,
            flows4,
            flows,
            stats,
            actions,
            devmap,
            drops,
            netns,
            bans,
            ban_count,
            ban_drops,
            banned: std::collections::HashSet::new(),
            ifaces,
            features: None,
            watch: None,
            seen: std::sync::Mutex::new(StdHashMap::new()),
            slots: StdHashMap::new(),
            retired_packets: 0,
            free: Vec::new(),
            next_slot: 0,
            capacity,
            cpus,
            attached: Vec::new(),
            _next_hop: next_hop,
        })
    }

    fn program(&self) -> Result<&XdpProgram, XdpError> {
        self.ebpf
            .program(abi::PROG_XDP)
            .ok_or(XdpError::Missing("program relay_xdp"))?
            .try_into()
            .map_err(|source| XdpError::Program { name: abi::PROG_XDP, source })
    }

    fn program_mut(&mut self) -> Result<&mut XdpProgram, XdpError> {
        self.ebpf
            .program_mut(abi::PROG_XDP)
            .ok_or(XdpError::Missing("program relay_xdp"))?
            .try_into()
            .map_err(|source| XdpError::Program { name: abi::PROG_XDP, source })
    }

    /// Attaches to every interface in `mode`, or to none (undoing the ones done) and returns the first error.
    fn attach_all(&mut self, mode: AttachedMode, interfaces: &[String]) -> Result<(), XdpError> {
        let mut done = Vec::new();
        let prog = self.program_mut()?;
        for iface in interfaces {
            match attach_one(prog, iface, mode) {
                Ok(link) => done.push((iface.clone(), link)),
                Err(e) => {
                    for (_, link) in done {
                        let _ = prog.detach(link);
                    }
                    return Err(e);
                }
            }
        }
        self.attached = done;
        Ok(())
    }

    fn detach_all(&mut self) {
        let attached = std::mem::take(&mut self.attached);
        if let Ok(prog) = self.program_mut() {
            for (_, link) in attached {
                let _ = prog.detach(link);
            }
        }
    }

    /// Loads and attaches the tracing programs that count frames lost after relay_xdp, with a zeroed
    /// `relay_drops` entry for every interface (events of other interfaces find none and are not counted).
    fn attach_drop_counters(&mut self) -> Result<(), XdpError> {
        let btf = Btf::from_sys_fs().map_err(|e| XdpError::Btf(e.to_string()))?;
        for iface in &self.ifaces {
            let zeros = PerCpuValues::try_from(vec![RelayIfaceDrops::default(); self.cpus])
                .map_err(|e| XdpError::Cpus(e.to_string()))?;
            let key = RelayIfaceKey { netns: self.netns, ifindex: iface.index };
            self.drops.insert(key, zeros, 0).map_err(|source| XdpError::Map { map: abi::MAP_DROPS, source })?;
        }
        for (name, tracepoint) in abi::PROGS_DROPS {
            let prog: &mut BtfTracePoint = self
                .ebpf
                .program_mut(name)
                .ok_or(XdpError::Missing(name))?
                .try_into()
                .map_err(|source| XdpError::Program { name, source })?;
            prog.load(tracepoint, &btf).map_err(|source| XdpError::Program { name, source })?;
            prog.attach().map_err(|source| XdpError::Program { name, source })?;
        }
        Ok(())
    }

    /// After attaching in `attached` mode (asked: `asked`): learns which interfaces take XDP frames and keeps
    /// only those in `relay_devmap`. An explicit `native` refuses an interface that cannot (its media would
    /// only go through user space, which is not what was asked for); `auto` keeps such flows in user space
    /// and says so, and without the kernel's answer (before Linux 6.3) takes generic mode, which needs none.
    fn check_egress(&mut self, asked: XdpMode, attached: AttachedMode) -> Result<(), XdpError> {
        if attached != AttachedMode::Native {
            for iface in &mut self.ifaces {
                if !iface.in_devmap {
                    self.devmap
                        .insert(iface.index, iface.index, None, 0)
                        .map_err(|source| XdpError::Devmap { iface: iface.name.clone(), source })?;
                    iface.in_devmap = true;
                }
            }
            return Ok(());
        }
        match NetdevFeatures::open() {
            Ok((features, watch)) => {
                self.features = Some(features);
                self.watch = Some(watch);
            }
            Err(e) if asked == XdpMode::Auto => return Err(XdpError::Features(e.to_string())),
            Err(e) => {
                warn!(error = %e, "xdp: cannot learn which interfaces take XDP frames; assuming all do");
                return Ok(());
            }
        }
        self.sync_egress();
        let blocked: Vec<&Iface> = self.ifaces.iter().filter(|i| !i.in_devmap).collect();
        if asked == XdpMode::Native {
            if let Some(iface) = blocked.first() {
                return Err(XdpError::EgressNotReady { iface: iface.name.clone() });
            }
        }
        Ok(())
    }

    fn sync_egress(&mut self) -> Vec<EgressChange> {
        let Some(features) = self.features.as_ref() else { return Vec::new() };
        let mut changes = Vec::new();
        for iface in &mut self.ifaces {
            let ready = match features.xmit_ready(iface.index) {
                Ok(ready) => ready,
                Err(e) => {
                    // Gone or unanswered: not a target until the kernel says it is.
                    debug!(iface = iface.name, error = %e, "xdp: xdp-features unknown");
                    false
                }
            };
            if ready == iface.in_devmap {
                continue;
            }
            let result = if ready {
                self.devmap.insert(iface.index, iface.index, None, 0).map_err(|e| e.to_string())
            } else {
                match self.devmap.remove(iface.index) {
                    Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
                    Err(e) => Err(e.to_string()),
                }
            };
            if let Err(e) = result {
                warn!(iface = iface.name, error = %e, "xdp: relay_devmap not updated");
                continue;
            }
            iface.in_devmap = ready;
            if ready {
                info!(
                    iface = iface.name,
                    "xdp: {} takes XDP frames now: its flows are forwarded in the kernel", iface.name
                );
            } else {
                warn!(
                    iface = iface.name,
                    "xdp: {} cannot take XDP frames (for a veth: its peer has no XDP program and GRO off): media \
                     through it stays in user space; an XDP program on the peer or `ethtool -K PEER gro on` \
                     lets the kernel forward it",
                    iface.name
                );
            }
            changes.push(EgressChange { iface: iface.name.clone(), ready });
        }
        changes
    }

    fn set_ban_count(&mut self) -> Result<(), XdpError> {
        let n = u32::try_from(self.banned.len()).unwrap_or(u32::MAX);
        self.ban_count.set(0, n, 0).map_err(|source| XdpError::Map { map: abi::MAP_BAN_COUNT, source })
    }

    fn zero_slot(&mut self, slot: u32) -> Result<(), XdpError> {
        let zeros = PerCpuValues::try_from(vec![RelayFlowStats::default(); self.cpus])
            .map_err(|e| XdpError::Cpus(e.to_string()))?;
        self.stats.set(slot, zeros, 0).map_err(|source| XdpError::Map { map: abi::MAP_STATS, source })?;
        self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&slot);
        Ok(())
    }

    fn read_slot(&self, slot: u32) -> Result<KernelCounters, XdpError> {
        let values = self.stats.get(&slot, 0).map_err(|source| XdpError::Map { map: abi::MAP_STATS, source })?;
        let mut c = values.iter().fold(KernelCounters::default(), |acc, v| KernelCounters {
            packets: acc.packets.wrapping_add(v.packets),
            bytes: acc.bytes.wrapping_add(v.bytes),
            last_seen_ns: 0,
        });
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = seen.entry(slot).or_insert((0, 0));
        if c.packets != entry.0 {
            *entry = (c.packets, monotonic_ns());
        }
        c.last_seen_ns = entry.1;
        Ok(c)
    }
}

/// `BPF_PROG_TEST_RUN` of a loaded XDP program: see [`Xdp::test_run`].
pub(super) fn test_run_prog(
    prog: &XdpProgram,
    name: &'static str,
    frame: &[u8],
    ingress_ifindex: u32,
    repeat: u32,
) -> Result<TestRunOutput, XdpError> {
    // struct xdp_md { data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex }
    let ctx: Vec<u8> = [0, frame.len() as u32, 0, ingress_ifindex, 0, 0].iter().flat_map(|v| v.to_ne_bytes()).collect();
    let mut out = vec![0u8; frame.len() + 256];
    let opts = TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ctx_in: Some(&ctx),
        repeat: repeat.max(1),
        ..TestRunOptions::default()
    };
    let res = prog.test_run(opts).map_err(|source| XdpError::Program { name, source })?;
    out.truncate(res.data_size_out as usize);
    Ok(TestRunOutput { action: res.return_value, frame: out, duration: res.duration })
}

fn attach_one(prog: &mut XdpProgram, iface: &str, mode: AttachedMode) -> Result<XdpLinkId, XdpError> {
    let (aya_mode, hint) = match mode {
        AttachedMode::Native => (AyaMode::Driver, "try xdp = \"generic\" (this driver may have no native XDP)"),
        _ => (AyaMode::Skb, "is another XDP program attached (`ip link show`)? or set xdp = \"off\""),
    };
    prog.attach(iface, aya_mode).map_err(|source| XdpError::Attach { mode, iface: iface.to_owned(), source, hint })
}

/// CLOCK_MONOTONIC in ns (what `Instant` reads on Linux), never 0 (0 means "never seen").
fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| (t.tv_sec() as u64).saturating_mul(1_000_000_000).saturating_add(t.tv_nsec() as u64))
        .unwrap_or(1)
        .max(1)
}

fn ifindex(name: &str) -> Result<u32, XdpError> {
    nix::net::if_::if_nametoindex(name)
        .map_err(|e| XdpError::UnknownInterface { name: name.to_owned(), source: std::io::Error::from(e) })
}

/// bpf_fib_lookup answers FWD_DISABLED (and every packet is passed) when forwarding is off on the ingress
/// interface: say so once at attach.
fn warn_forwarding(interfaces: &[String]) {
    for iface in interfaces {
        for fam in ["ipv4", "ipv6"] {
            let path = format!("/proc/sys/net/{fam}/conf/{iface}/forwarding");
            if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == "0") {
                warn!(
                    iface,
                    "xdp: {fam} forwarding is off on {iface}: the fast path will pass every {fam} packet \
                              to user space; set net.{fam}.conf.{iface}.forwarding=1"
                );
            }
        }
    }
}

/// `relay_pass` (or `relay_bare_redirect`) attached to some interfaces, detached on drop. `relay_pass` goes on
/// the PEER of a veth that `relay_xdp` redirects into: veth drops XDP_REDIRECTed frames unless its peer has an
/// XDP program (or GRO on, which gives the peer NAPI).
#[derive(Debug)]
pub struct PassProgram {
    ebpf: Ebpf,
}

impl PassProgram {
    /// Attaches `relay_pass` to every interface in `interfaces`, in native mode, or generic if `generic`.
    pub fn attach(interfaces: &[String], generic: bool) -> Result<Self, XdpError> {
        Self::attach_prog(abi::PROG_PASS, interfaces, generic, None)
    }

    /// Attaches `relay_bare_redirect` to `ingress`, redirecting every packet to `egress` untouched (a
    /// benchmark ceiling).
    pub fn bare_redirect(ingress: &str, egress: &str, generic: bool) -> Result<Self, XdpError> {
        Self::attach_prog(abi::PROG_BARE_REDIRECT, &[ingress.to_owned()], generic, Some(egress))
    }

    fn attach_prog(
        name: &'static str,
        interfaces: &[String],
        generic: bool,
        egress: Option<&str>,
    ) -> Result<Self, XdpError> {
        let mut ebpf = EbpfLoader::new().load(objects::PASS).map_err(XdpError::Load)?;
        if let Some(egress) = egress {
            let index = ifindex(egress)?;
            let map = ebpf.map_mut(abi::MAP_BENCH_DEVMAP).ok_or(XdpError::Missing(abi::MAP_BENCH_DEVMAP))?;
            let mut devmap = aya::maps::DevMap::try_from(map)
                .map_err(|source| XdpError::Map { map: abi::MAP_BENCH_DEVMAP, source })?;
            devmap.set(0, index, None, 0).map_err(|source| XdpError::Devmap { iface: egress.to_owned(), source })?;
        }
        let prog: &mut XdpProgram = ebpf
            .program_mut(name)
            .ok_or(XdpError::Missing("pass program"))?
            .try_into()
            .map_err(|source: ProgramError| XdpError::Program { name, source })?;
        prog.load().map_err(|source| XdpError::Program { name, source })?;
        let mode = if generic { AttachedMode::Generic } else { AttachedMode::Native };
        for iface in interfaces {
            attach_one(prog, iface, mode)?;
        }
        Ok(Self { ebpf })
    }

    /// The loaded object (maps, program).
    pub fn ebpf(&self) -> &Ebpf {
        &self.ebpf
    }
}
