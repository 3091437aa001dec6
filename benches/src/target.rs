//! Where a scenario's calls go, and the guard that keeps the load where it belongs.
//!
//! A target is named on the command line (`--target`, `--compare`):
//!
//! - `local` (or `local:PATH`, another `sbc` build): our `sbc`, started by the harness in the single-SBC netns
//!   topology of DESIGN.md. Caller (SIPp UAC, RTP) in A 198.18.1.10 → the SBC at 198.18.1.1:5060 → carrier B
//!   198.18.2.10:5060 (SIPp UAS, RTP).
//! - `local-unguarded` (or `local-unguarded:PATH`): the same `sbc` with the public edge's checks switched off
//!   (`[edge] enabled = false`, `[overload] enabled = false` appended to its configuration), so that `cps --target
//!   local --compare local-unguarded` measures what the checks cost in one run.
//! - `local-hep` (or `local-hep:PATH`): the same `sbc` exporting every SIP message over HEP to a collector
//!   address on host C (`[hep] collector = "udp:198.18.2.11:9060"` appended, [`HEP_CONFIG`]), so that `cps --target
//!   local-hep --compare local` measures what HEP export costs in one run.
//! - `local-tls` (or `local-tls:PATH`): the same SBC with SIP over TLS on both legs: the caller's SIPp talks TCP to a
//!   stunnel client in A (198.18.1.10:5070), which talks TLS to the SBC at 198.18.1.1:5061; the SBC opens a TLS
//!   connection to carrier B's stunnel server at 198.18.2.10:5061 (certificate checked against a CA the harness
//!   makes, name `carrier-b.example.net`), which hands TCP to SIPp at 198.18.2.10:5060. Debian's SIPp has no TLS
//!   of its own; the stunnels run next to SIPp (on its core when pinned), so their TLS work is on the harness's
//!   side of the ledger. Next to `local` in the same run (`--target local-tls --compare local`) it gives the cost
//!   of TLS signalling as a ratio of ceilings.
//! - `kamailio-rtpengine`: another vendor's SBC, Kamailio 5.6 (tm, dialog, topos) with rtpengine anchoring every
//!   call's media, started by the harness in the SBC namespace with our `sbc`'s addresses and core
//!   ([`crate::kamailio`], benches/kamailio/sbc.cfg): `cps --target local --compare kamailio-rtpengine`.
//! - `kamailio-ng`, `kamailio-ng-xdp`: the same Kamailio with the same configuration, its NG address pointed at our
//!   `media-relay --ng` in rtpengine's place, user space only (`--xdp off`) or with the XDP fast path native on the
//!   SBC's veths (issue 17; `sbc-bench ng` measures all three in one run).
//! - `direct`: SIPp UAC straight to SIPp UAS, no SBC: the harness's own ceiling, so that a result can say which side
//!   was the bottleneck. In the netns topology when one is built (UAC in C 198.18.2.11 → B), else on this host
//!   (`--uac-ip` → `--uas`).
//! - `ADDR:PORT`: an SBC already running (ours or another vendor's). The UAC here sends to ADDR:PORT from
//!   `--uac-ip`; the SBC must route the calls (any number) to the UAS the harness runs at `--uas`. RTP endpoints sit
//!   on the same addresses.
//!
//! A load test aimed at a production address is an outage, so the harness refuses every address outside loopback
//! (and outside the namespaces it builds itself) unless it is given `--allow-remote`. The check covers the SIP
//! target and every media address a target's SDP names. Names are not resolved: what is checked is what is used.

use ::tests::netns::{addr, Host, Topology, CALLER, CARRIER_B, CARRIER_C, SBC_A};
use ::tests::Sbc;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A target as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `local` / `local:PATH`: our `sbc` (the workspace's release build, or the binary at PATH) in the harness's
    /// own namespaces.
    Local(Option<PathBuf>),
    /// `local-unguarded` / `local-unguarded:PATH`: as [`Target::Local`], with the edge guard and overload control
    /// switched off ([`UNGUARDED_CONFIG`]): the baseline of what the checks cost.
    LocalUnguarded(Option<PathBuf>),
    /// `local-hep` / `local-hep:PATH`: as [`Target::Local`], exporting HEP ([`HEP_CONFIG`]).
    LocalHep(Option<PathBuf>),
    /// `local-tls` / `local-tls:PATH`: our `sbc` like [`Target::Local`], with SIP over TLS on both legs.
    LocalTls(Option<PathBuf>),
    /// `kamailio-rtpengine`: Kamailio with rtpengine in the harness's own namespaces ([`crate::kamailio`]).
    KamailioRtpengine,
    /// `kamailio-ng`: the same Kamailio steering our `media-relay --ng` (user space) over NG.
    KamailioNg,
    /// `kamailio-ng-xdp`: the same with the relay's XDP fast path native on a0 and b0.
    KamailioNgXdp,
    /// `direct`: SIPp to SIPp, no SBC.
    Direct,
    /// `ADDR:PORT`: an SBC already running there.
    Remote(SocketAddr),
}

impl std::str::FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "local" => Ok(Target::Local(None)),
            "local-unguarded" => Ok(Target::LocalUnguarded(None)),
            "local-tls" => Ok(Target::LocalTls(None)),
            "local-hep" => Ok(Target::LocalHep(None)),
            "direct" => Ok(Target::Direct),
            "kamailio-rtpengine" => Ok(Target::KamailioRtpengine),
            "kamailio-ng" => Ok(Target::KamailioNg),
            "kamailio-ng-xdp" => Ok(Target::KamailioNgXdp),
            _ => {
                if let Some(path) = s.strip_prefix("local:") {
                    return Ok(Target::Local(Some(PathBuf::from(path))));
                }
                if let Some(path) = s.strip_prefix("local-unguarded:") {
                    return Ok(Target::LocalUnguarded(Some(PathBuf::from(path))));
                }
                if let Some(path) = s.strip_prefix("local-hep:") {
                    return Ok(Target::LocalHep(Some(PathBuf::from(path))));
                }
                if let Some(path) = s.strip_prefix("local-tls:") {
                    return Ok(Target::LocalTls(Some(PathBuf::from(path))));
                }
                s.parse::<SocketAddr>().map(Target::Remote).map_err(|_| {
                    format!(
                        "`{s}` is not a target: give `local`, `local:PATH-TO-SBC`, `local-unguarded`, \
                         `local-unguarded:PATH-TO-SBC`, `local-tls`, `local-tls:PATH`, `local-hep`, `local-hep:PATH`, `kamailio-rtpengine`, `kamailio-ng`, `kamailio-ng-xdp`, `direct` or an SBC's IP:PORT \
                         (a literal address: names are not resolved, so the address checked is the one loaded)"
                    )
                })
            }
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Local(None) => f.write_str("local"),
            Target::Local(Some(path)) => write!(f, "local:{}", path.display()),
            Target::LocalUnguarded(None) => f.write_str("local-unguarded"),
            Target::LocalUnguarded(Some(path)) => write!(f, "local-unguarded:{}", path.display()),
            Target::LocalHep(None) => f.write_str("local-hep"),
            Target::LocalHep(Some(path)) => write!(f, "local-hep:{}", path.display()),
            Target::LocalTls(None) => f.write_str("local-tls"),
            Target::LocalTls(Some(path)) => write!(f, "local-tls:{}", path.display()),
            Target::KamailioRtpengine => f.write_str("kamailio-rtpengine"),
            Target::KamailioNg => f.write_str("kamailio-ng"),
            Target::KamailioNgXdp => f.write_str("kamailio-ng-xdp"),
            Target::Direct => f.write_str("direct"),
            Target::Remote(addr) => write!(f, "{addr}"),
        }
    }
}

impl Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Target {
    /// A short name for tables and plots: `local`, `local:<file name>`, `local-unguarded[:<file name>]`, `direct`,
    /// `ADDR:PORT`.
    pub fn label(&self) -> String {
        let file = |path: &Path| {
            path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
        };
        match self {
            Target::Local(Some(path)) => format!("local:{}", file(path)),
            Target::LocalUnguarded(Some(path)) => format!("local-unguarded:{}", file(path)),
            Target::LocalTls(Some(path)) => format!("local-tls:{}", file(path)),
            Target::LocalHep(Some(path)) => format!("local-hep:{}", file(path)),
            other => other.to_string(),
        }
    }

    /// Whether the harness starts this target's SBC itself.
    pub fn is_local(&self) -> bool {
        matches!(self, Target::Local(_) | Target::LocalUnguarded(_) | Target::LocalTls(_) | Target::LocalHep(_))
    }

    /// Whether the harness starts this target itself in its netns topology (our `sbc` or Kamailio + a relay).
    pub fn started_here(&self) -> bool {
        self.is_local() || self.is_kamailio()
    }

    /// Whether this target is Kamailio with a media relay over NG (rtpengine or ours).
    pub fn is_kamailio(&self) -> bool {
        matches!(self, Target::KamailioRtpengine | Target::KamailioNg | Target::KamailioNgXdp)
    }

    /// The `sbc` binary of a local target, if it names its own.
    fn binary(&self) -> Option<&Path> {
        match self {
            Target::Local(b) | Target::LocalUnguarded(b) | Target::LocalTls(b) | Target::LocalHep(b) => b.as_deref(),
            _ => None,
        }
    }
}

/// What `local-unguarded` appends to a local target's configuration: the edge guard and overload control off (the
/// keys are documented for measuring their cost, never for a public address).
pub const UNGUARDED_CONFIG: &str = "\n[edge]\nenabled = false\n\n[overload]\nenabled = false\n";

/// What `local-hep` appends to a local target's configuration: every SIP message to a HEP collector address on host
/// C, idle in a comparison with `local` (nothing listens there: the datagrams cost the SBC what they would with a
/// real collector; host C's kernel answers a few with ICMP, rate-limited).
pub const HEP_CONFIG: &str = "\n[hep]\ncollector = \"udp:198.18.2.11:9060\"\n";

impl Target {
    /// A local target's whole configuration: `config` (from [`local_config`]), plus [`UNGUARDED_CONFIG`] for
    /// `local-unguarded` and [`HEP_CONFIG`] for `local-hep`.
    pub fn local_config(&self, config: &str) -> String {
        match self {
            Target::LocalUnguarded(_) => format!("{config}{UNGUARDED_CONFIG}"),
            Target::LocalHep(_) => format!("{config}{HEP_CONFIG}"),
            _ => config.to_owned(),
        }
    }
}

/// Two labels must differ (two targets with the same file name get their run index appended by the caller).
pub fn labels(targets: &[Target]) -> Vec<String> {
    let mut out: Vec<String> = targets.iter().map(Target::label).collect();
    for i in 0..out.len() {
        if out[..i].contains(&out[i]) {
            out[i] = format!("{} #{}", out[i], i + 1);
        }
    }
    out
}

/// The refusal of addresses outside loopback and the harness's own namespaces.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Guard {
    /// `--allow-remote`: the operator takes responsibility for the addresses given.
    pub allow_remote: bool,
}

impl Guard {
    /// Accepts `ip` as a destination of load (`what` names it in the error).
    pub fn check(&self, what: &str, ip: IpAddr) -> Result<()> {
        if ip.is_unspecified() || ip.is_multicast() || ip == IpAddr::V4(Ipv4Addr::BROADCAST) {
            bail!("{what} {ip} is not a host address");
        }
        if ip.is_loopback() || self.allow_remote {
            return Ok(());
        }
        bail!(
            "{what} {ip} is outside loopback: sbc-bench sends load only to loopback and into the network namespaces \
             it builds itself (--local), unless given --allow-remote. Aim it at a lab SBC, never at production: a \
             load test is an outage for live calls"
        )
    }
}

/// Where the harness's own SIP and RTP endpoints sit for `direct` without namespaces and for remote targets: in the
/// namespace the harness runs in.
#[derive(Debug, Clone, Serialize)]
pub struct Here {
    /// The caller's address (SIPp UAC, RTP), `--uac-ip`.
    pub uac_ip: IpAddr,
    /// The caller's SIP port, `--uac-port`.
    pub uac_port: u16,
    /// Where the callee (SIPp UAS) listens, `--uas`; its RTP endpoint takes the same address.
    pub uas: SocketAddr,
}

/// One side of a call path: where a SIPp (and its RTP endpoint) runs.
#[derive(Debug, Clone)]
pub struct Side {
    /// The network namespace, or `None` for the harness's own.
    pub ns: Option<String>,
    /// Its address.
    pub ip: IpAddr,
    /// Its SIP port.
    pub port: u16,
}

/// Where one target's calls go: the caller, the address it dials, the callee.
#[derive(Debug, Clone)]
pub struct CallPath {
    pub uac: Side,
    /// Where the UAC sends its INVITEs.
    pub to: SocketAddr,
    pub uas: Side,
    /// The address the caller's media goes to is the target's to choose (its SDP); in the netns topology it is
    /// one of ours, elsewhere it is checked by the [`Guard`].
    pub in_own_namespaces: bool,
    /// SIPp's transport: `u1` (UDP), or `t1` (TCP to the stunnels of `local-tls`).
    pub transport: &'static str,
}

/// What the targets of one invocation share: the netns topology (when any target is local), the endpoints here,
/// the guard.
pub struct Harness {
    pub topo: Option<Topology>,
    pub here: Here,
    pub guard: Guard,
    /// `--sbc-cpu`: every local `sbc` started runs in this group.
    pub cpu_limit: Option<CpuLimit>,
    /// With a `local-tls` target: the stunnels in front of the caller's and the callee's SIPp, and the directory
    /// holding the certificates.
    pub tls: Option<TlsRig>,
    /// With a `kamailio-ng-xdp` target: the topology prepared for XDP (forwarding on a0/b0, checksum offload off
    /// at the peers, XDP_PASS on the veth peers), for every target of the invocation alike; the helpers holding
    /// the peers' programs, stopped before the namespaces go.
    pub xdp_helpers: Vec<::tests::netns::Process>,
}

/// The TLS side of a `local-tls` target, alive as long as the harness.
pub struct TlsRig {
    /// Where the CA, the SBC's and the carrier's certificates are.
    pub dir: PathBuf,
    /// The stunnel client in A and server in B, stopped when dropped.
    pub _tunnels: Vec<::tests::netns::Process>,
}

/// Where the caller's stunnel accepts SIPp's TCP for `local-tls`.
const TLS_TUNNEL_PORT: u16 = 5070;

impl TlsRig {
    /// Certificates (a CA, the SBC's for sbc.example.net and its addresses, carrier B's for carrier-b.example.net)
    /// and the two stunnels, pinned to `core` if given.
    fn start(topo: &Topology, core: Option<usize>) -> Result<Self> {
        use ::tests::tls::{stunnel, TestCa, Tunnel};
        let dir = topo.dir().join("tls");
        std::fs::create_dir_all(&dir)?;
        let ca = TestCa::new("sbc-bench CA")?;
        std::fs::write(dir.join("ca.pem"), ca.pem())?;
        let sbc = ca.issue("sbc.example.net", &["sbc.example.net"], &[SBC_A.into(), ::tests::netns::SBC_B.into()])?;
        std::fs::write(dir.join("sbc.pem"), sbc.combined())?;
        let carrier = ca.issue("carrier-b.example.net", &["carrier-b.example.net"], &[])?.write(&dir, "carrier-b")?;
        let caller = Tunnel {
            client: true,
            accept: addr(CALLER, TLS_TUNNEL_PORT),
            connect: addr(SBC_A, 5061),
            cert: None,
            verify: Some((dir.join("ca.pem"), "sbc.example.net".into())),
        };
        let callee = Tunnel {
            client: false,
            accept: addr(CARRIER_B, 5061),
            connect: addr(CARRIER_B, 5060),
            cert: Some(carrier),
            verify: None,
        };
        let tunnels = vec![
            stunnel(topo, Host::A, "bench-tls-caller", &caller)?,
            stunnel(topo, Host::B, "bench-tls-callee", &callee)?,
        ];
        if let Some(core) = core {
            for t in &tunnels {
                pin(t.id(), core)?;
            }
        }
        Ok(Self { dir, _tunnels: tunnels })
    }
}

impl Harness {
    /// Checks every target against the guard and builds the netns topology if a target needs it.
    pub fn new(targets: &[Target], here: Here, guard: Guard) -> Result<Self> {
        for t in targets {
            if let Target::Remote(a) = t {
                guard.check("target", a.ip())?;
            }
        }
        let remote_or_direct_here =
            targets.iter().any(|t| matches!(t, Target::Remote(_))) || !targets.iter().any(Target::started_here);
        if remote_or_direct_here {
            guard.check("--uas", here.uas.ip())?;
            guard.check("--uac-ip", here.uac_ip)?;
        }
        let topo = if targets.iter().any(Target::started_here) {
            require_root("a local target")?;
            Some(Topology::single_sbc().context("building the netns topology (needs root)")?)
        } else {
            None
        };
        let tls = match (&topo, targets.iter().any(|t| matches!(t, Target::LocalTls(_)))) {
            (Some(topo), true) => {
                let core = crate::cps::pinning_possible().then_some(crate::cps::SIPP_CORE);
                Some(TlsRig::start(topo, core).context("starting the stunnels of local-tls (Debian: stunnel4)")?)
            }
            _ => None,
        };
        let xdp_helpers = match (&topo, targets.contains(&Target::KamailioNgXdp)) {
            (Some(topo), true) => {
                eprintln!(
                    "preparing the topology for XDP (forwarding on a0/b0, checksum offload off, XDP_PASS on peers)"
                );
                topo.prepare_xdp(&media_relay_binary()?).context("preparing the topology for XDP")?
            }
            _ => Vec::new(),
        };
        Ok(Self { topo, here, guard, cpu_limit: None, tls, xdp_helpers })
    }

    /// Where `target`'s calls go.
    pub fn path(&self, target: &Target) -> CallPath {
        let here = || CallPath {
            uac: Side { ns: None, ip: self.here.uac_ip, port: self.here.uac_port },
            to: self.here.uas,
            uas: Side { ns: None, ip: self.here.uas.ip(), port: self.here.uas.port() },
            in_own_namespaces: false,
            transport: "u1",
        };
        match (target, &self.topo) {
            (
                Target::Local(_)
                | Target::LocalUnguarded(_)
                | Target::LocalHep(_)
                | Target::KamailioRtpengine
                | Target::KamailioNg
                | Target::KamailioNgXdp,
                Some(topo),
            ) => CallPath {
                uac: Side { ns: Some(topo.ns(Host::A)), ip: CALLER.into(), port: 5060 },
                to: addr(SBC_A, 5060),
                uas: Side { ns: Some(topo.ns(Host::B)), ip: CARRIER_B.into(), port: 5060 },
                in_own_namespaces: true,
                transport: "u1",
            },
            (Target::LocalTls(_), Some(topo)) => CallPath {
                uac: Side { ns: Some(topo.ns(Host::A)), ip: CALLER.into(), port: 5060 },
                to: addr(CALLER, TLS_TUNNEL_PORT),
                uas: Side { ns: Some(topo.ns(Host::B)), ip: CARRIER_B.into(), port: 5060 },
                in_own_namespaces: true,
                transport: "t1",
            },
            (Target::Direct, Some(topo)) => CallPath {
                uac: Side { ns: Some(topo.ns(Host::C)), ip: CARRIER_C.into(), port: 5060 },
                to: addr(CARRIER_B, 5060),
                uas: Side { ns: Some(topo.ns(Host::B)), ip: CARRIER_B.into(), port: 5060 },
                in_own_namespaces: true,
                transport: "u1",
            },
            (Target::Remote(to), _) => CallPath { to: *to, ..here() },
            // `Harness::new` builds the topology whenever a target is local.
            (
                Target::Local(_)
                | Target::LocalUnguarded(_)
                | Target::LocalHep(_)
                | Target::LocalTls(_)
                | Target::KamailioRtpengine
                | Target::KamailioNg
                | Target::KamailioNgXdp
                | Target::Direct,
                _,
            ) => here(),
        }
    }

    /// Starts a local target's `sbc` in the SBC namespace with `config` (from [`local_config`]; `local-unguarded`
    /// appends [`UNGUARDED_CONFIG`]), all its threads pinned to `core` if given. `sbc` is the workspace's build (see
    /// `prepare_binaries` in main.rs) unless the target names its own.
    pub fn start_local(&self, target: &Target, name: &str, config: &str, core: Option<usize>) -> Result<Sbc> {
        let (true, Some(topo)) = (target.is_local(), &self.topo) else {
            bail!("{target} is not a local target");
        };
        let config = target.local_config(config);
        let config = config.as_str();
        let binary = match target.binary() {
            Some(path) => path.to_owned(),
            None => ::tests::sbc_binary()?,
        };
        let binary = std::fs::canonicalize(&binary).with_context(|| format!("sbc binary {}", binary.display()))?;
        let sbc = Sbc::start_binary_in(
            &binary,
            &topo.ns(Host::Sbc),
            name,
            config,
            addr(SBC_A, 5060),
            addr([127, 0, 0, 1].into(), 8080),
        )
        .with_context(|| format!("starting {}", binary.display()))?;
        if let Some(core) = core {
            pin(sbc.id(), core)?;
        }
        if let Some(limit) = &self.cpu_limit {
            limit.add(sbc.id())?;
        }
        Ok(sbc)
    }

    /// Starts Kamailio and its relay (target `kamailio-rtpengine`, `kamailio-ng` or `kamailio-ng-xdp`) in the SBC
    /// namespace, pinned to `core` if given, in the `--sbc-cpu` group if any.
    pub fn start_kamailio(
        &self,
        target: &Target,
        name: &str,
        core: Option<usize>,
    ) -> Result<crate::kamailio::KamailioRig> {
        use crate::kamailio::Relay;
        let Some(topo) = &self.topo else {
            bail!("{target} needs the netns topology");
        };
        let relay = match target {
            Target::KamailioRtpengine => Relay::Rtpengine,
            Target::KamailioNg => Relay::Ours { binary: media_relay_binary()?, xdp: false },
            Target::KamailioNgXdp => Relay::Ours { binary: media_relay_binary()?, xdp: true },
            other => bail!("{other} is not a Kamailio target"),
        };
        let rig = crate::kamailio::KamailioRig::start(topo, name, core, &relay)
            .with_context(|| format!("starting Kamailio and its relay ({target})"))?;
        if let Some(limit) = &self.cpu_limit {
            for pid in rig.pids() {
                limit.add(pid)?;
            }
        }
        Ok(rig)
    }

    /// The configuration of local target `target` ([`local_config`]; for `local-tls`, [`local_tls_config`]).
    pub fn config(&self, target: &Target, media: bool) -> String {
        match (target, &self.tls) {
            (Target::LocalTls(_), Some(tls)) => local_tls_config(&tls.dir, media),
            _ => local_config(media),
        }
    }

    /// Removes the namespaces, if any (the stunnels and XDP helpers first).
    pub fn remove(mut self) -> Result<()> {
        drop(self.tls.take());
        for mut helper in self.xdp_helpers.drain(..) {
            helper.kill();
        }
        match self.topo {
            Some(topo) => topo.remove(),
            None => Ok(()),
        }
    }
}

/// The release build of `media-relay` (what is measured is always the release build; see binaries.rs), or the
/// program `SBC_BENCH_MEDIA_RELAY` names: another build, or a wrapper that adds options (`exec media-relay
/// --coalesce 0s "$@"`), for a before/after comparison of the targets that run our relay (`kamailio-ng*`).
pub fn media_relay_binary() -> Result<PathBuf> {
    match std::env::var_os("SBC_BENCH_MEDIA_RELAY") {
        Some(p) => std::fs::canonicalize(&p).with_context(|| format!("SBC_BENCH_MEDIA_RELAY={}", p.to_string_lossy())),
        None => crate::binaries::binary(crate::binaries::release_dir(), "media-relay"),
    }
}

/// The configuration of a local target: every number to carrier B, log level `info` as shipped, no CDR file;
/// with `media`, the embedded relay anchors RTP on 198.18.1.1 / 198.18.2.1 (user space only: the XDP fast path is
/// the `media` scenario's subject, and an XDP test needs the topology prepared for it), with ports 10000-32767 per
/// interface: 11 384 pairs, room for `concurrent`'s 10 000 calls (a pair per leg and interface) and the quarantine.
pub fn local_config(media: bool) -> String {
    let mut config = ::tests::netns::sbc_config("", "", "", false, None);
    if media {
        config.push_str(&format!(
            "\n[media]\ninterfaces = [{{ name = \"a\", address = \"{SBC_A}\" }}, {{ name = \"b\", address = \"{}\" }}]\n\
             ports = \"10000-32767\"\nxdp = \"off\"\n",
            ::tests::netns::SBC_B
        ));
    }
    config
}

/// A CPU limit for the local `sbc` (`--sbc-cpu`): a cgroup whose CFS quota is a share of one core, with the
/// kernel's least quota (1 ms) over the period that makes the share (4 ms for 25 %), so that the throttled process
/// waits at most a few ms at a time rather than most of a 100 ms period, which would look like queueing to the
/// SBC's own overload control. On a 2-core machine, where SIPp can
/// offer at most about 3x what a whole core of `sbc` takes, this makes a smaller deployment whose ceiling SIPp
/// can really exceed several times. cgroup v1 (`cpu` controller) or v2 (`cpu.max`); removed on drop.
#[derive(Debug)]
pub struct CpuLimit {
    dir: PathBuf,
}

/// The CFS quota of [`CpuLimit`], microseconds: the least the kernel takes.
const CPU_QUOTA_US: u64 = 1_000;

impl CpuLimit {
    /// A new cgroup limited to `share` of one core (0.05 to 1).
    pub fn new(share: f64) -> Result<Self> {
        if !(0.05..=1.0).contains(&share) {
            bail!("--sbc-cpu must be between 0.05 and 1 (a share of one core)");
        }
        let (quota, period) = (CPU_QUOTA_US, (CPU_QUOTA_US as f64 / share).round() as u64);
        let name = format!("sbc-bench-{}", std::process::id());
        let v1 = Path::new("/sys/fs/cgroup/cpu");
        let v2 = Path::new("/sys/fs/cgroup");
        let dir = if v1.join("cpu.cfs_quota_us").exists() {
            let dir = v1.join(&name);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating the cgroup {}", dir.display()))?;
            std::fs::write(dir.join("cpu.cfs_period_us"), period.to_string()).context("cpu.cfs_period_us")?;
            std::fs::write(dir.join("cpu.cfs_quota_us"), quota.to_string()).context("cpu.cfs_quota_us")?;
            dir
        } else if std::fs::read_to_string(v2.join("cgroup.controllers")).is_ok_and(|c| c.contains("cpu")) {
            let _ = std::fs::write(v2.join("cgroup.subtree_control"), "+cpu");
            let dir = v2.join(&name);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating the cgroup {}", dir.display()))?;
            std::fs::write(dir.join("cpu.max"), format!("{quota} {period}")).context("cpu.max")?;
            dir
        } else {
            bail!("--sbc-cpu needs the cgroup cpu controller (v1 /sys/fs/cgroup/cpu or v2 cpu.max) and root");
        };
        Ok(Self { dir })
    }

    /// Moves process `pid` (every thread) into the limited group.
    pub fn add(&self, pid: u32) -> Result<()> {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string())
            .with_context(|| format!("moving {pid} into {}", self.dir.display()))
    }
}

impl Drop for CpuLimit {
    fn drop(&mut self) {
        // The group can go once its processes have exited: try for a while, never fail.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("could not remove the cgroup {}", self.dir.display());
    }
}

/// [`local_config`] with SIP over TLS on both legs: TLS listeners on 198.18.1.1:5061 and 198.18.2.1:5061 with the
/// certificate in `dir` (made by the harness), the customer still known by its address, carrier B reached at
/// `tls:198.18.2.10:5061` and checked for `carrier-b.example.net` against the harness's CA.
pub fn local_tls_config(dir: &Path, media: bool) -> String {
    let plain = local_config(media);
    let sbc = dir.join("sbc.pem");
    let tls = format!(
        "listen = [\"tls:{SBC_A}:5061\", \"tls:{b}:5061\"]\ntls = {{ cert = \"{sbc}\", key = \"{sbc}\" }}",
        b = ::tests::netns::SBC_B,
        sbc = sbc.display()
    );
    let gateway = format!(
        "gateways = [\"tls:{CARRIER_B}:5061\"]\ntls = {{ server_name = \"carrier-b.example.net\", ca = \"{}\" }}",
        dir.join("ca.pem").display()
    );
    plain
        .replacen(&format!("listen = [\"udp:{SBC_A}:5060\", \"udp:{}:5060\"]", ::tests::netns::SBC_B), &tls, 1)
        .replacen(&format!("gateways = [\"udp:{CARRIER_B}:5060\"]"), &gateway, 1)
}

/// Pins every thread of process `pid` to `core` (taskset, util-linux).
pub fn pin(pid: u32, core: usize) -> Result<()> {
    let out = Command::new("taskset")
        .args(["-a", "-cp", &core.to_string(), &pid.to_string()])
        .output()
        .context("running taskset (util-linux)")?;
    if !out.status.success() {
        bail!("taskset -a -cp {core} {pid}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Fails unless the process runs as root (network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN).
pub fn require_root(what: &str) -> Result<()> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:"))?.split_whitespace().nth(2)?.parse::<u32>().ok());
    if uid != Some(0) {
        bail!("{what} builds network namespaces and needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN): run it as root");
    }
    if Command::new("ip").arg("-V").output().is_err() {
        bail!("{what} needs `ip` (iproute2) for network namespaces: run `make deps` as root");
    }
    Ok(())
}

/// The bench's SIPp scenarios, under benches/sipp/ (relative to the repository root, as `tests::sipp` takes them).
pub fn scenario(name: &str) -> String {
    Path::new("benches/sipp").join(name).display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!("local".parse::<Target>().unwrap(), Target::Local(None));
        assert_eq!("local:/opt/sbc".parse::<Target>().unwrap(), Target::Local(Some("/opt/sbc".into())));
        assert_eq!("direct".parse::<Target>().unwrap(), Target::Direct);
        let k: Target = "kamailio-rtpengine".parse().unwrap();
        assert_eq!((k.to_string(), k.is_local(), k.started_here()), ("kamailio-rtpengine".into(), false, true));
        for (name, t) in [("kamailio-ng", Target::KamailioNg), ("kamailio-ng-xdp", Target::KamailioNgXdp)] {
            let parsed: Target = name.parse().unwrap();
            assert_eq!(parsed, t);
            assert_eq!((parsed.to_string(), parsed.is_local(), parsed.started_here()), (name.into(), false, true));
            assert!(parsed.is_kamailio());
        }
        assert!(!Target::Local(None).is_kamailio() && !Target::Direct.is_kamailio());
        assert_eq!("local-unguarded".parse::<Target>().unwrap(), Target::LocalUnguarded(None));
        let u: Target = "local-unguarded:/opt/sbc".parse().unwrap();
        assert_eq!(
            (u.to_string(), u.label(), u.is_local()),
            ("local-unguarded:/opt/sbc".into(), "local-unguarded:sbc".into(), true)
        );
        let config = u.local_config("[sip]\n");
        assert!(config.ends_with("[edge]\nenabled = false\n\n[overload]\nenabled = false\n"), "{config}");
        assert_eq!(Target::Local(None).local_config("[sip]\n"), "[sip]\n");
        assert_eq!("local-tls".parse::<Target>().unwrap(), Target::LocalTls(None));
        assert_eq!("local-tls:/opt/sbc".parse::<Target>().unwrap().label(), "local-tls:sbc");
        assert!(Target::LocalTls(None).is_local());
        let h: Target = "local-hep:/opt/sbc".parse().unwrap();
        assert_eq!(
            (h.to_string(), h.label(), h.is_local()),
            ("local-hep:/opt/sbc".into(), "local-hep:sbc".into(), true)
        );
        let config = Target::LocalHep(None).local_config("[sip]\n");
        assert!(config.ends_with("[hep]\ncollector = \"udp:198.18.2.11:9060\"\n"), "{config}");
        assert_eq!("127.0.0.1:5060".parse::<Target>().unwrap(), Target::Remote("127.0.0.1:5060".parse().unwrap()));
        assert_eq!("[::1]:5060".parse::<Target>().unwrap().to_string(), "[::1]:5060");
        let e = "sbc.example.net:5060".parse::<Target>().unwrap_err();
        assert!(e.contains("names are not resolved"), "{e}");
        assert_eq!(
            labels(&["local:/a/sbc".parse().unwrap(), "local:/b/sbc".parse().unwrap()]),
            ["local:sbc", "local:sbc #2"]
        );
    }

    #[test]
    fn the_tls_config_has_tls_on_both_legs() {
        let dir = std::env::temp_dir().join(format!("sbc-bench-tls-config-{}", std::process::id()));
        let text = local_tls_config(&dir, false);
        assert!(text.contains("listen = [\"tls:198.18.1.1:5061\", \"tls:198.18.2.1:5061\"]"), "{text}");
        assert!(text.contains("gateways = [\"tls:198.18.2.10:5061\"]"), "{text}");
        for udp in ["udp:198.18.1.1:5060", "udp:198.18.2.1:5060", "udp:198.18.2.10:5060"] {
            assert!(!text.contains(udp), "no UDP signalling left on the call path ({udp}): {text}");
        }
    }

    #[test]
    fn guard_refuses_what_is_not_loopback() {
        let strict = Guard { allow_remote: false };
        strict.check("target", "127.0.0.1".parse().unwrap()).unwrap();
        strict.check("target", "127.5.6.7".parse().unwrap()).unwrap();
        strict.check("target", "::1".parse().unwrap()).unwrap();
        for ip in ["192.0.2.1", "10.0.0.1", "198.18.1.1", "2001:db8::1"] {
            let e = strict.check("target", ip.parse().unwrap()).unwrap_err().to_string();
            assert!(e.contains("--allow-remote") && e.contains(ip), "{e}");
        }
        let open = Guard { allow_remote: true };
        open.check("target", "192.0.2.1".parse().unwrap()).unwrap();
        for ip in ["0.0.0.0", "224.0.0.1", "255.255.255.255", "::"] {
            assert!(open.check("target", ip.parse().unwrap()).is_err(), "{ip}");
        }
    }

    #[test]
    fn remote_targets_are_checked_before_anything_is_built() {
        let here =
            Here { uac_ip: "127.0.0.1".parse().unwrap(), uac_port: 5061, uas: "127.0.0.1:5070".parse().unwrap() };
        let e = Harness::new(&["192.0.2.7:5060".parse().unwrap()], here.clone(), Guard { allow_remote: false })
            .err()
            .expect("refused");
        assert!(e.to_string().contains("192.0.2.7"), "{e}");
        let e = Harness::new(
            &["127.0.0.1:5060".parse().unwrap()],
            Here { uas: "192.0.2.8:5070".parse().unwrap(), ..here.clone() },
            Guard { allow_remote: false },
        )
        .err()
        .expect("refused");
        assert!(e.to_string().contains("--uas 192.0.2.8"), "{e}");
        let h = Harness::new(&["127.0.0.1:5060".parse().unwrap(), Target::Direct], here, Guard { allow_remote: false })
            .expect("loopback is fine");
        assert!(h.topo.is_none());
        let p = h.path(&Target::Direct);
        assert_eq!((p.to, p.uac.port), ("127.0.0.1:5070".parse().unwrap(), 5061));
        assert_eq!(
            h.path(&"127.0.0.1:5060".parse().unwrap()).to,
            "127.0.0.1:5060".parse::<std::net::SocketAddr>().unwrap()
        );
    }
}
