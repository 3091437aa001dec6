//! Network-namespace topologies for tests that need real addresses (DESIGN.md, "Test topology"), and processes run
//! inside them.
//!
//! The single-SBC topology, per test, with a unique tag `T` (see [`Topology::single_sbc`]):
//!
//! ```text
//!   T-a  eth0 198.18.1.10/24 ── veth ── a0 198.18.1.1/24  T-sbc  b0 198.18.2.1/24 ──┐
//!                                                                                    veth
//!   T-sw  br0 (bridge; ports p-sbc, p-b, p-c) ─────────────────────────────────────────────┘
//!     ├── veth ── eth0 198.18.2.10/24  T-b (carrier b)
//!     └── veth ── eth0 198.18.2.11/24  T-c (carrier c)
//! ```
//!
//! The hot-standby pair topology ([`Topology::pair`]): two SBC boxes on both service networks and a replication
//! link between them; the service addresses (VIPs 198.18.1.1 and 198.18.2.1) are not configured by the topology
//! but by whichever box is active:
//!
//! ```text
//!   T-sw  bra (bridge, side a)                         brb (bridge, side b)
//!     ├── eth0 198.18.1.10/24  T-a (caller)              ├── eth0 198.18.2.10/24  T-b (carrier b)
//!     ├── a0 198.18.1.2/24  T-sbc1  b0 198.18.2.2/24 ────┤── eth0 198.18.2.11/24  T-c (carrier c)
//!     └── a0 198.18.1.3/24  T-sbc2  b0 198.18.2.3/24 ────┘
//!   T-sbc1 r0 198.18.3.1/24 ── veth ── r0 198.18.3.2/24 T-sbc2   (replication link)
//! ```
//!
//! In the single-SBC topology, side a is a direct veth pair (two hosts only); side b is shared by the SBC and both
//! carriers, so it is a real L2 segment: a Linux bridge in its own namespace `T-sw`. No forwarding is enabled
//! anywhere, so side a and side b can only talk through a process in `T-sbc` (the SBC), as in production. The same
//! holds for the pair, whose side a is a bridge too (three hosts).
//!
//! Everything is torn down on drop (also when a test panics): processes still running in the namespaces are
//! killed, then the namespaces are deleted, which deletes their veths and the bridge.

use anyhow::{bail, Context, Result};
use std::ffi::OsStr;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The caller (customer PBX / carrier A) on side a.
pub const CALLER: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 10);
/// The SBC's side-a address (interface `a0`).
pub const SBC_A: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
/// The SBC's side-b address (interface `b0`).
pub const SBC_B: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
/// Carrier b on side b.
pub const CARRIER_B: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 10);
/// Carrier c on side b.
pub const CARRIER_C: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 11);
/// The pair's side-a service address (VIP), held by the active box on its `a0`.
pub const VIP_A: Ipv4Addr = SBC_A;
/// The pair's side-b service address (VIP), held by the active box on its `b0`.
pub const VIP_B: Ipv4Addr = SBC_B;
/// Box 1 of the pair: its own addresses on side a (`a0`), side b (`b0`) and the replication link (`r0`).
pub const SBC1_A: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
/// Box 1's side-b address.
pub const SBC1_B: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 2);
/// Box 1's replication-link address.
pub const SBC1_R: Ipv4Addr = Ipv4Addr::new(198, 18, 3, 1);
/// Box 2 of the pair: side a.
pub const SBC2_A: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 3);
/// Box 2's side-b address.
pub const SBC2_B: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 3);
/// Box 2's replication-link address.
pub const SBC2_R: Ipv4Addr = Ipv4Addr::new(198, 18, 3, 2);

/// Every tag starts with this, followed by the owning process id, `n` and a per-process counter (`sbt4711n0`).
/// Namespace names are `<tag>-<host>`.
pub const TAG_PREFIX: &str = "sbt";

/// A host of the single-SBC topology (`Sbc`) or of the pair topology (`Sbc1`, `Sbc2`); the others are in both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// The caller, 198.18.1.10 (`<tag>-a`).
    A,
    /// The SBC, 198.18.1.1 on `a0` and 198.18.2.1 on `b0` (`<tag>-sbc`).
    Sbc,
    /// Carrier b, 198.18.2.10 (`<tag>-b`).
    B,
    /// Carrier c, 198.18.2.11 (`<tag>-c`).
    C,
    /// The switch (`<tag>-sw`); no addresses. Bridge `br0` (side b) in the single-SBC topology, `bra` (side a) and
    /// `brb` (side b) in the pair topology.
    Switch,
    /// Box 1 of the pair: 198.18.1.2 on `a0`, 198.18.2.2 on `b0`, 198.18.3.1 on `r0` (`<tag>-sbc1`).
    Sbc1,
    /// Box 2 of the pair: 198.18.1.3 on `a0`, 198.18.2.3 on `b0`, 198.18.3.2 on `r0` (`<tag>-sbc2`).
    Sbc2,
}

impl Host {
    /// Box `node` (1 or 2) of the pair topology.
    pub fn pair_box(node: u8) -> Host {
        match node {
            1 => Host::Sbc1,
            2 => Host::Sbc2,
            _ => panic!("the pair has boxes 1 and 2, not {node}"),
        }
    }

    /// The namespace name suffix.
    pub fn suffix(self) -> &'static str {
        match self {
            Host::A => "a",
            Host::Sbc => "sbc",
            Host::B => "b",
            Host::C => "c",
            Host::Switch => "sw",
            Host::Sbc1 => "sbc1",
            Host::Sbc2 => "sbc2",
        }
    }

    /// The host's address (the side-a one for an SBC box: its own, not the VIP, for the pair); `None` for the
    /// switch.
    pub fn ip(self) -> Option<Ipv4Addr> {
        match self {
            Host::A => Some(CALLER),
            Host::Sbc => Some(SBC_A),
            Host::B => Some(CARRIER_B),
            Host::C => Some(CARRIER_C),
            Host::Switch => None,
            Host::Sbc1 => Some(SBC1_A),
            Host::Sbc2 => Some(SBC2_A),
        }
    }
}

/// A `Command` for `program`, run inside `netns` (via `ip netns exec`) when given, else directly.
pub fn command(netns: Option<&str>, program: impl AsRef<OsStr>) -> Command {
    match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// Runs `ip ARGS` to completion; the error names the command and carries its stderr.
pub fn ip(args: &[&str]) -> Result<String> {
    run(Command::new("ip").args(args))
}

/// Runs a command to completion (stdin closed); the error names the command and carries its stderr.
pub fn run(cmd: &mut Command) -> Result<String> {
    let shown = show(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run `{shown}` (is iproute2 installed? `make deps`)"))?;
    if !out.status.success() {
        bail!("`{shown}` failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn show(cmd: &Command) -> String {
    std::iter::once(cmd.get_program()).chain(cmd.get_args()).map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
}

/// The names of all network namespaces (`ip netns list`).
pub fn list_namespaces() -> Result<Vec<String>> {
    Ok(ip(&["netns", "list"])?.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_owned).collect())
}

/// Whether a namespace of this name exists.
pub fn namespace_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// Deletes namespaces left by earlier test processes that were killed before their `Drop` ran: those named
/// `sbt<pid>n...` whose process no longer exists. Namespaces of live processes (tests running side by side) are
/// left alone. Returns the names deleted.
pub fn cleanup_stale() -> Vec<String> {
    let mut removed = Vec::new();
    for name in list_namespaces().unwrap_or_default() {
        let Some(pid) =
            name.strip_prefix(TAG_PREFIX).and_then(|r| r.split('n').next()).and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            kill_all_in(&name);
            if ip(&["netns", "del", &name]).is_ok() {
                removed.push(name);
            }
        }
    }
    removed
}

/// SIGKILLs every process in namespace `name` (only ever called on namespaces this crate created).
fn kill_all_in(name: &str) {
    if let Ok(pids) = ip(&["netns", "pids", name]) {
        for pid in pids.split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", pid]).stderr(Stdio::null()).status();
        }
    }
}

/// Fails with a clear message unless we may create namespaces (root, `ip` installed).
pub fn require_netns() {
    crate::require_tool("ip", "iproute2");
    let uid = std::fs::read_to_string("/proc/self/status").ok().and_then(|s| {
        s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
    });
    if uid != Some(0u32) {
        panic!(
            "network-namespace tests need root (CAP_SYS_ADMIN, CAP_NET_ADMIN); run them as root, e.g. `make test`{}",
            if std::env::var("CI").as_deref() == Ok("true") { " (CI=true: this is a failure, not a skip)" } else { "" }
        );
    }
}

/// The single-SBC topology of DESIGN.md in its own namespaces; removed on drop.
#[derive(Debug)]
pub struct Topology {
    tag: String,
    /// Namespaces created so far, in creation order (deleted in reverse).
    namespaces: Vec<String>,
    dir: PathBuf,
}

impl Topology {
    /// Builds the single-SBC topology (see the module docs) under a fresh tag. Stale namespaces of killed earlier
    /// runs are removed first (once per process). A failure says which command failed with its stderr; whatever
    /// was created before it is removed again.
    pub fn single_sbc() -> Result<Self> {
        Self::create(Self::build)
    }

    /// Builds the hot-standby pair topology (see the module docs) under a fresh tag, like [`Topology::single_sbc`]:
    /// namespaces `<tag>-{a,sbc1,sbc2,b,c,sw}`; bridges `bra` (side a: the caller and both boxes' `a0`) and `brb`
    /// (side b: both carriers and both boxes' `b0`) in the switch; a veth `r0` straight between the boxes. No VIP
    /// is configured: the active box adds 198.18.1.1/24 on `a0` and 198.18.2.1/24 on `b0` itself.
    pub fn pair() -> Result<Self> {
        Self::create(Self::build_pair)
    }

    /// One namespace, `<tag>-sbc` ([`Host::Sbc`]), with only its loopback: for what runs on 127.0.0.1 as on a
    /// user's host (the `make run` demo), without meeting anything else on the machine's own loopback.
    pub fn loopback_only() -> Result<Self> {
        Self::create(|t| t.add_namespaces(&[Host::Sbc]))
    }

    /// A fresh tag and scratch directory, then `build`; removes whatever was created if that fails.
    fn create(build: fn(&mut Self) -> Result<()>) -> Result<Self> {
        require_netns();
        static CLEANED: std::sync::Once = std::sync::Once::new();
        CLEANED.call_once(|| {
            let removed = cleanup_stale();
            if !removed.is_empty() {
                eprintln!("removed stale test namespaces: {}", removed.join(" "));
            }
        });
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let tag = format!("{TAG_PREFIX}{}n{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        let dir = std::env::temp_dir().join(format!("netns-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut topo = Self { tag, namespaces: Vec::new(), dir };
        build(&mut topo).with_context(|| format!("building the test topology {}", topo.tag))?;
        Ok(topo)
    }

    /// Creates the namespaces of `hosts` (loopback up), recording each for removal.
    fn add_namespaces(&mut self, hosts: &[Host]) -> Result<()> {
        for &host in hosts {
            let ns = self.ns(host);
            if namespace_exists(&ns) {
                bail!("namespace {ns} exists already");
            }
            ip(&["netns", "add", &ns])?;
            self.namespaces.push(ns.clone());
            ip(&["-n", &ns, "link", "set", "dev", "lo", "up"])?;
        }
        Ok(())
    }

    fn build(&mut self) -> Result<()> {
        self.add_namespaces(&[Host::A, Host::Sbc, Host::B, Host::C, Host::Switch])?;
        let (a, sbc, b, c, sw) =
            (self.ns(Host::A), self.ns(Host::Sbc), self.ns(Host::B), self.ns(Host::C), self.ns(Host::Switch));

        // Side a: a direct veth pair caller <-> sbc. The kernel creates each end directly in its target namespace,
        // so equal names in different tests (or in the root namespace) never collide.
        ip(&["link", "add", "eth0", "netns", &a, "type", "veth", "peer", "name", "a0", "netns", &sbc])?;
        self.address(&a, "eth0", "198.18.1.10/24")?;
        self.address(&sbc, "a0", "198.18.1.1/24")?;

        // Side b: a bridge in the switch namespace with one port per host.
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "dev", "br0", "up"])?;
        for (ns, port, dev, cidr) in [
            (&sbc, "p-sbc", "b0", "198.18.2.1/24"),
            (&b, "p-b", "eth0", "198.18.2.10/24"),
            (&c, "p-c", "eth0", "198.18.2.11/24"),
        ] {
            ip(&["link", "add", dev, "netns", ns, "type", "veth", "peer", "name", port, "netns", &sw])?;
            ip(&["-n", &sw, "link", "set", "dev", port, "master", "br0"])?;
            ip(&["-n", &sw, "link", "set", "dev", port, "up"])?;
            self.address(ns, dev, cidr)?;
        }
        Ok(())
    }

    fn build_pair(&mut self) -> Result<()> {
        self.add_namespaces(&[Host::A, Host::Sbc1, Host::Sbc2, Host::B, Host::C, Host::Switch])?;
        let (a, sbc1, sbc2, b, c, sw) = (
            self.ns(Host::A),
            self.ns(Host::Sbc1),
            self.ns(Host::Sbc2),
            self.ns(Host::B),
            self.ns(Host::C),
            self.ns(Host::Switch),
        );
        for bridge in ["bra", "brb"] {
            ip(&["-n", &sw, "link", "add", bridge, "type", "bridge"])?;
            ip(&["-n", &sw, "link", "set", "dev", bridge, "up"])?;
        }
        for (ns, dev, bridge, port, cidr) in [
            (&a, "eth0", "bra", "pa-a", "198.18.1.10/24"),
            (&sbc1, "a0", "bra", "pa-sbc1", "198.18.1.2/24"),
            (&sbc2, "a0", "bra", "pa-sbc2", "198.18.1.3/24"),
            (&sbc1, "b0", "brb", "pb-sbc1", "198.18.2.2/24"),
            (&sbc2, "b0", "brb", "pb-sbc2", "198.18.2.3/24"),
            (&b, "eth0", "brb", "pb-b", "198.18.2.10/24"),
            (&c, "eth0", "brb", "pb-c", "198.18.2.11/24"),
        ] {
            ip(&["link", "add", dev, "netns", ns, "type", "veth", "peer", "name", port, "netns", &sw])?;
            ip(&["-n", &sw, "link", "set", "dev", port, "master", bridge])?;
            ip(&["-n", &sw, "link", "set", "dev", port, "up"])?;
            self.address(ns, dev, cidr)?;
        }
        // The replication link: a veth straight from one box to the other.
        ip(&["link", "add", "r0", "netns", &sbc1, "type", "veth", "peer", "name", "r0", "netns", &sbc2])?;
        self.address(&sbc1, "r0", "198.18.3.1/24")?;
        self.address(&sbc2, "r0", "198.18.3.2/24")?;
        Ok(())
    }

    fn address(&self, ns: &str, dev: &str, cidr: &str) -> Result<()> {
        ip(&["-n", ns, "addr", "add", cidr, "dev", dev])?;
        ip(&["-n", ns, "link", "set", "dev", dev, "up"])?;
        Ok(())
    }

    /// The tag shared by this topology's namespaces.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The namespace name of `host`: `<tag>-<suffix>`.
    pub fn ns(&self, host: Host) -> String {
        format!("{}-{}", self.tag, host.suffix())
    }

    /// The namespaces created, in creation order.
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    /// A scratch directory for this topology (process logs); removed on drop unless a test panicked.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Prepares this topology for the relay's XDP fast path and returns the helper processes (stopped on drop):
    /// - forwarding on the SBC's a0 and b0: bpf_fib_lookup answers "forwarding disabled" without it;
    /// - full UDP checksums from the hosts' veths (`ethtool -K eth0 tx off`): a packet sent from a local socket
    ///   carries only a partial checksum, which XDP cannot see or finish, so a rewritten one would arrive bad;
    /// - an XDP_PASS program (`media-relay --pass-only`) on the veth peers the relay redirects into (A's eth0 and
    ///   the switch's p-sbc): a veth drops redirected frames when its peer has no XDP program.
    pub fn prepare_xdp(&self, media_relay: &Path) -> Result<Vec<Process>> {
        self.enable_forwarding()?;
        self.full_checksums()?;
        let mut helpers = Vec::new();
        for (host, dev) in [(Host::A, "eth0"), (Host::Switch, "p-sbc")] {
            helpers.push(self.pass_program(host, dev, media_relay)?);
        }
        Ok(helpers)
    }

    /// Prepares the pair topology for the relay's XDP fast path on both boxes, as [`Topology::prepare_xdp`] does
    /// for the single SBC: forwarding on each box's a0 and b0, full checksums from the hosts, and an XDP_PASS
    /// program on the bridge ports the boxes' a0 and b0 send into (their veth peers in the switch).
    pub fn prepare_xdp_pair(&self, media_relay: &Path) -> Result<Vec<Process>> {
        for host in [Host::Sbc1, Host::Sbc2] {
            for dev in ["a0", "b0"] {
                self.exec(host, "sysctl", &["-qw", &format!("net.ipv4.conf.{dev}.forwarding=1")])?;
            }
        }
        self.full_checksums()?;
        let mut helpers = Vec::new();
        for dev in ["pa-sbc1", "pa-sbc2", "pb-sbc1", "pb-sbc2"] {
            helpers.push(self.pass_program(Host::Switch, dev, media_relay)?);
        }
        Ok(helpers)
    }

    /// `media-relay --pass-only` on `dev` in `host`, waited for until the device shows the program.
    fn pass_program(&self, host: Host, dev: &str, media_relay: &Path) -> Result<Process> {
        let p = self.spawn(host, &format!("xdp-pass-{dev}"), media_relay, &["--pass-only", "--interface", dev])?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = self.exec(host, "ip", &["link", "show", "dev", dev])?;
            if out.contains("xdp") {
                return Ok(p);
            }
            if Instant::now() > deadline {
                bail!("no XDP program on {dev} in {} after 10 s: {}", self.ns(host), p.output_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Forwarding on the SBC's a0 and b0, as on a router or a container host (bpf_fib_lookup needs it).
    pub fn enable_forwarding(&self) -> Result<()> {
        for dev in ["a0", "b0"] {
            self.exec(Host::Sbc, "sysctl", &["-qw", &format!("net.ipv4.conf.{dev}.forwarding=1")])?;
        }
        Ok(())
    }

    /// Full UDP checksums from the hosts A, B and C (`ethtool -K eth0 tx off`), as a NIC delivers them: a veth
    /// with tx checksum offload on leaves only the pseudo-header sum in a locally sent packet.
    pub fn full_checksums(&self) -> Result<()> {
        for host in [Host::A, Host::B, Host::C] {
            self.exec(host, "ethtool", &["-K", "eth0", "tx", "off"])?;
        }
        Ok(())
    }

    /// Runs `program args` inside `host` to completion; the error names the command and carries its stderr.
    pub fn exec<S: AsRef<OsStr>>(&self, host: Host, program: &str, args: &[S]) -> Result<String> {
        run(command(Some(&self.ns(host)), program).args(args))
    }

    /// Starts `program args` inside `host`, its stdout and stderr going to `<dir>/<name>.out` and `.err`; killed on
    /// drop.
    pub fn spawn<S: AsRef<OsStr>>(
        &self,
        host: Host,
        name: &str,
        program: impl AsRef<OsStr>,
        args: &[S],
    ) -> Result<Process> {
        Process::spawn(Some(&self.ns(host)), name, program, args, &self.dir)
    }

    /// Waits until something in `host` listens on UDP `port` (per `ss`, from iproute2).
    pub fn wait_udp_listening(&self, host: Host, port: u16, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.exec(host, "ss", &["-Hlun", "sport", "=", &format!(":{port}")])?;
            if !out.trim().is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("nothing listens on UDP port {port} in {} after {timeout:?}", self.ns(host));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A real UDP round trip: an echo server on `to` in `to_host`, a client bound to `from` in `from_host` that
    /// sends until it gets its datagram back from `to` (within `timeout`). Uses the `netprobe` helper binary.
    pub fn udp_exchange(
        &self,
        from_host: Host,
        from: Ipv4Addr,
        to_host: Host,
        to: SocketAddrV4,
        timeout: Duration,
    ) -> Result<()> {
        let probe = crate::netprobe_binary()?;
        let ms = timeout.as_millis().to_string();
        let label = format!("echo-{}-{}", to.ip(), to.port());
        let mut echo = self.spawn(to_host, &label, &probe, &["udp-echo", &to.to_string(), &ms])?;
        let ping = self.exec(
            from_host,
            probe.to_str().context("netprobe path")?,
            &["udp-ping", &from.to_string(), &to.to_string(), &ms],
        );
        let echoed = echo.wait_timeout(timeout + Duration::from_secs(2));
        let out = ping.with_context(|| {
            format!(
                "no UDP exchange {from} ({}) -> {to} ({}); echo side: {}",
                self.ns(from_host),
                self.ns(to_host),
                echo.output_tail()
            )
        })?;
        let status = echoed?;
        if !status.success() {
            bail!("echo server on {to} ended with {status}: {}", echo.output_tail());
        }
        if !out.contains(&format!("reply from {to}")) {
            bail!("unexpected udp-ping output: {out}");
        }
        Ok(())
    }

    /// Deletes everything now (what drop does), reporting the first failure.
    pub fn remove(mut self) -> Result<()> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<()> {
        let mut first_err = None;
        while let Some(ns) = self.namespaces.pop() {
            kill_all_in(&ns);
            if let Err(e) = ip(&["netns", "del", &ns]) {
                first_err.get_or_insert(e);
            }
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("tearing down topology {}: {e:#}", self.tag);
        }
    }
}

/// A child process (optionally inside a namespace) with stdout and stderr in log files; killed on drop.
#[derive(Debug)]
pub struct Process {
    child: Child,
    name: String,
    /// Its stdout.
    pub stdout: PathBuf,
    /// Its stderr.
    pub stderr: PathBuf,
    exited: Option<ExitStatus>,
}

impl Process {
    /// Starts `program args` in `netns` (or here), stdout and stderr to `<dir>/<name>.out` and `<dir>/<name>.err`.
    /// `ip netns exec` execs the program, so [`Process::id`] is the program's own pid.
    pub fn spawn<S: AsRef<OsStr>>(
        netns: Option<&str>,
        name: &str,
        program: impl AsRef<OsStr>,
        args: &[S],
        dir: &Path,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let stdout = dir.join(format!("{name}.out"));
        let stderr = dir.join(format!("{name}.err"));
        let mut cmd = command(netns, program);
        cmd.args(args);
        let shown = show(&cmd);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(File::create(&stdout)?)
            .stderr(File::create(&stderr)?)
            .spawn()
            .with_context(|| format!("spawning `{shown}`"))?;
        Ok(Self { child, name: name.to_owned(), stdout, stderr, exited: None })
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status if it has exited.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait()?;
        }
        Ok(self.exited)
    }

    /// Waits up to `limit` for it to exit; kills it and fails after that.
    pub fn wait_timeout(&mut self, limit: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.try_wait()? {
                return Ok(s);
            }
            if Instant::now() > deadline {
                self.kill();
                bail!("{} did not exit within {limit:?}; output: {}", self.name, self.output_tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits up to `timeout`; SIGKILL after that. Returns the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus> {
        if let Some(s) = self.try_wait()? {
            return Ok(s);
        }
        let _ = Command::new("kill").args(["-TERM", &self.id().to_string()]).status();
        self.wait_timeout(timeout)
    }

    /// Kills it (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            self.exited = self.child.wait().ok();
        }
    }

    /// The last 40 lines of its stdout and stderr.
    pub fn output_tail(&self) -> String {
        let tail = |p: &Path| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            let lines: Vec<_> = text.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        };
        format!("[{} stdout]\n{}\n[{} stderr]\n{}", self.name, tail(&self.stdout), self.name, tail(&self.stderr))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The socket address `ip:port` (for building targets from the constants).
pub fn addr(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(ip, port))
}

/// The `sbc` configuration for [`Topology::single_sbc`]: listeners on both sides, the API on 127.0.0.1:8080 in
/// the SBC's namespace, trunk `customer-pbx` (source 198.18.1.10), carriers `carrier-b` and `carrier-c`, and every
/// number routed to b, then (with `failover_to_c`) to c. `pbx`, `b` and `c` are extra keys for each trunk; `cdr`
/// is the CDR file, if any.
pub fn sbc_config(pbx: &str, b: &str, c: &str, failover_to_c: bool, cdr: Option<&Path>) -> String {
    let route_c = if failover_to_c { r#", { trunk = "carrier-c", priority = 2 }"# } else { "" };
    let cdr = cdr.map(|p| format!("\n[cdr]\npath = \"{}\"\n", p.display())).unwrap_or_default();
    format!(
        r#"[sip]
listen = ["udp:{SBC_A}:5060", "udp:{SBC_B}:5060"]

[api]
listen = "127.0.0.1:8080"

[log]
level = "info"

[[trunk]]
name = "customer-pbx"
match = {{ source = ["{CALLER}/32"] }}
{pbx}

[[trunk]]
name = "carrier-b"
gateways = ["udp:{CARRIER_B}:5060"]
{b}

[[trunk]]
name = "carrier-c"
gateways = ["udp:{CARRIER_C}:5060"]
{c}

[[route]]
prefix = ""
to = [{{ trunk = "carrier-b", priority = 1 }}{route_c}]
{cdr}"#
    )
}

/// The pair's shared secret in [`pair_sbc_config`] (the file's trailing newline is the editor's, not the secret's).
pub const PAIR_SECRET: &str = "a secret both boxes share\n";

/// The `sbc` configuration of box `node` (1 or 2) of [`Topology::pair`] with HA `priority` (higher is preferred as
/// active) and CDR file `cdr`: the trunks and route of [`sbc_config`] (carrier b only), SIP listeners and media
/// interfaces on the VIPs (bound with IP_FREEBIND, so the standby binds them too), the API on 127.0.0.1:8080 in the
/// box's namespace, relay ports 30000-31999 without XDP, and the `[ha]` section: the replication link on `r0`
/// (TCP port 7070), UDP heartbeats every 100 ms on port 7071 of each path (replication link, side a, side b), the
/// peer dead after 300 ms of silence on all paths, the VIPs the active box adds, and the pair's shared secret
/// ([`PAIR_SECRET`], in `pair.secret` next to `cdr`), so that the pair's links are the secured ones.
pub fn pair_sbc_config(node: u8, priority: u32, cdr: &Path) -> String {
    let secret = cdr.with_file_name("pair.secret");
    std::fs::write(&secret, PAIR_SECRET).unwrap_or_else(|e| panic!("{}: {e}", secret.display()));
    let (me, peer) = match node {
        1 => ([SBC1_R, SBC1_A, SBC1_B], [SBC2_R, SBC2_A, SBC2_B]),
        2 => ([SBC2_R, SBC2_A, SBC2_B], [SBC1_R, SBC1_A, SBC1_B]),
        _ => panic!("the pair has boxes 1 and 2, not {node}"),
    };
    let paths = me
        .iter()
        .zip(peer)
        .map(|(l, p)| format!("  {{ local = \"{l}:7071\", peer = \"{p}:7071\" }},\n"))
        .collect::<String>();
    let mut config = sbc_config("", "", "", false, Some(cdr));
    config.push_str(&format!(
        r#"
[media]
interfaces = [{{ name = "a", address = "{VIP_A}" }}, {{ name = "b", address = "{VIP_B}" }}]
ports = "30000-31999"
xdp = "off"

[ha]
node = "sbc{node}"
priority = {priority}
listen = "{}:7070"
peer = "{}:7070"
paths = [
{paths}]
vips = ["{VIP_A}/24 dev a0", "{VIP_B}/24 dev b0"]
heartbeat = "100ms"
dead_after = "300ms"
secret_file = "{}"
"#,
        me[0],
        peer[0],
        secret.display()
    ));
    config
}

/// An HTTP/1.0 request `method path` (no body) to `addr` from inside namespace `netns`, via bash's `/dev/tcp` (so it
/// needs no tool beyond bash; bounded by `timeout` to 5 s). Returns the status code and the body, whatever the
/// status.
pub fn http_request(netns: &str, method: &str, addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    const SCRIPT: &str = r#"exec 3<>"/dev/tcp/$1/$2" || exit 3
printf '%s %s HTTP/1.0\r\nHost: sbc\r\nContent-Length: 0\r\n\r\n' "$3" "$4" >&3
cat <&3"#;
    let (host, port) = (addr.ip().to_string(), addr.port().to_string());
    let out =
        run(command(Some(netns), "timeout").args(["5", "bash", "-c", SCRIPT, "http", &host, &port, method, path]))?;
    let status = out
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .with_context(|| format!("{method} {path} on {addr} in {netns}: no HTTP status line in {out:?}"))?;
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    Ok((status, body))
}
