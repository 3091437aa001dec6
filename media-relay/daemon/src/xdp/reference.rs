//! The yardsticks of the relay program's cost (`sbc-bench xdp-cost`): `reference_relay` from
//! `ebpf/src/reference_relay.bpf.c` (the least a relay must do on a hit) and the empty `relay_pass`, both loaded
//! and never attached, run through `BPF_PROG_TEST_RUN` only.
#![allow(unsafe_code)]

use std::net::SocketAddrV4;

use aya::{
    maps::{DevMapHash, HashMap, MapData},
    programs::Xdp as XdpProgram,
    Ebpf, EbpfLoader,
};

use super::{loader::test_run_prog, objects, TestRunOutput, XdpError};

const PROG: &str = "reference_relay";
const MAP_FLOWS: &str = "ref_flows";
const MAP_DEVMAP: &str = "ref_devmap";

/// `struct ref_key` of reference_relay.bpf.c.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct RefKey {
    addr: [u8; 4],
    port: [u8; 2],
    pad: u16,
}

/// `struct ref_target` of reference_relay.bpf.c.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct RefTarget {
    saddr: [u8; 4],
    daddr: [u8; 4],
    sport: [u8; 2],
    dport: [u8; 2],
    ifindex: u32,
    smac: [u8; 6],
    dmac: [u8; 6],
}

const _: () = assert!(std::mem::size_of::<RefKey>() == 8);
const _: () = assert!(std::mem::size_of::<RefTarget>() == 28);
const _: () = assert!(std::mem::offset_of!(RefTarget, ifindex) == 12);

// SAFETY: repr(C), Copy, integer fields only, no padding (the sizes asserted above are the sums of the fields).
unsafe impl aya::Pod for RefKey {}
// SAFETY: as above.
unsafe impl aya::Pod for RefTarget {}

/// A relay flow of the reference program: packets to `key` leave as `from` -> `to` by `ifindex`, with MACs
/// `smac` -> `dmac`.
#[derive(Clone, Copy, Debug)]
pub struct ReferenceFlow {
    pub key: SocketAddrV4,
    pub from: SocketAddrV4,
    pub to: SocketAddrV4,
    pub ifindex: u32,
    pub smac: [u8; 6],
    pub dmac: [u8; 6],
}

/// `reference_relay` loaded, with its flows and devmap.
pub struct Reference {
    ebpf: Ebpf,
    flows: HashMap<MapData, RefKey, RefTarget>,
    devmap: DevMapHash<MapData>,
}

impl std::fmt::Debug for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reference").finish_non_exhaustive()
    }
}

fn prog<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut XdpProgram, XdpError> {
    ebpf.program_mut(name)
        .ok_or(XdpError::Missing("reference or empty program"))?
        .try_into()
        .map_err(|source| XdpError::Program { name, source })
}

impl Reference {
    /// Loads the program (not attached).
    pub fn load() -> Result<Self, XdpError> {
        let mut ebpf = EbpfLoader::new().load(objects::REFERENCE).map_err(XdpError::Load)?;
        prog(&mut ebpf, PROG)?.load().map_err(|source| XdpError::Program { name: PROG, source })?;
        let map_err = |map: &'static str| move |source| XdpError::Map { map, source };
        let flows = HashMap::try_from(ebpf.take_map(MAP_FLOWS).ok_or(XdpError::Missing(MAP_FLOWS))?)
            .map_err(map_err(MAP_FLOWS))?;
        let devmap = DevMapHash::try_from(ebpf.take_map(MAP_DEVMAP).ok_or(XdpError::Missing(MAP_DEVMAP))?)
            .map_err(map_err(MAP_DEVMAP))?;
        Ok(Self { ebpf, flows, devmap })
    }

    /// Installs a flow (and its egress interface in the devmap).
    pub fn install(&mut self, flow: &ReferenceFlow) -> Result<(), XdpError> {
        self.devmap
            .insert(flow.ifindex, flow.ifindex, None, 0)
            .map_err(|source| XdpError::Devmap { iface: flow.ifindex.to_string(), source })?;
        let key = RefKey { addr: flow.key.ip().octets(), port: flow.key.port().to_be_bytes(), pad: 0 };
        let value = RefTarget {
            saddr: flow.from.ip().octets(),
            daddr: flow.to.ip().octets(),
            sport: flow.from.port().to_be_bytes(),
            dport: flow.to.port().to_be_bytes(),
            ifindex: flow.ifindex,
            smac: flow.smac,
            dmac: flow.dmac,
        };
        self.flows.insert(key, value, 0).map_err(|source| XdpError::Map { map: MAP_FLOWS, source })
    }

    /// `BPF_PROG_TEST_RUN`, as [`super::Xdp::test_run`].
    pub fn test_run(&mut self, frame: &[u8], ingress_ifindex: u32, repeat: u32) -> Result<TestRunOutput, XdpError> {
        test_run_prog(prog(&mut self.ebpf, PROG)?, PROG, frame, ingress_ifindex, repeat)
    }

    /// Attaches the program to `iface` in native mode, for the live benchmark's `reference` path (detached when
    /// this is dropped).
    pub fn attach_native(&mut self, iface: &str) -> Result<(), XdpError> {
        prog(&mut self.ebpf, PROG)?.attach(iface, aya::programs::XdpMode::Driver).map(drop).map_err(|source| {
            XdpError::Attach {
                mode: super::AttachedMode::Native,
                iface: iface.to_owned(),
                source,
                hint: "is another XDP program attached (`ip link show`)?",
            }
        })
    }
}

/// The empty XDP program (`relay_pass`: returns XDP_PASS), loaded and not attached: the floor of a test run.
pub struct EmptyProgram {
    ebpf: Ebpf,
}

impl std::fmt::Debug for EmptyProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmptyProgram").finish_non_exhaustive()
    }
}

impl EmptyProgram {
    /// Loads `relay_pass` (not attached).
    pub fn load() -> Result<Self, XdpError> {
        let name = super::abi::PROG_PASS;
        let mut ebpf = EbpfLoader::new().load(objects::PASS).map_err(XdpError::Load)?;
        prog(&mut ebpf, name)?.load().map_err(|source| XdpError::Program { name, source })?;
        Ok(Self { ebpf })
    }

    /// `BPF_PROG_TEST_RUN`, as [`super::Xdp::test_run`].
    pub fn test_run(&mut self, frame: &[u8], ingress_ifindex: u32, repeat: u32) -> Result<TestRunOutput, XdpError> {
        let name = super::abi::PROG_PASS;
        test_run_prog(prog(&mut self.ebpf, name)?, name, frame, ingress_ifindex, repeat)
    }
}
