//! The `kamailio-rtpengine` target: another vendor's SBC built the way operators build one, Kamailio 5.6 (tm,
//! dialog, topos topology hiding on Redis) with rtpengine anchoring every call's media in user space, started by the
//! harness in the SBC namespace of its netns topology with the addresses our `sbc` has (198.18.1.1:5060 facing the
//! caller, 198.18.2.1 facing carrier B). The configuration is benches/kamailio/sbc.cfg; the three daemons run on the
//! core our `sbc` gets, and their CPU time (every Kamailio process, every rtpengine and Redis thread) counts as the
//! target's.
//!
//! The `kamailio-ng` and `kamailio-ng-xdp` targets (issue 17) run the same configuration with our `media-relay
//! --ng` in rtpengine's place ([`Relay`]): nothing differs but the NG address Kamailio is given (`RTPENGINE_SOCK`),
//! the relay's interfaces, port range and core being rtpengine's.

use ::tests::netns::{Host, Process, Topology};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Kamailio's configuration, relative to the repository root.
pub const CONFIG: &str = "benches/kamailio/sbc.cfg";
/// Where rtpengine listens for Kamailio's NG commands, in the SBC namespace.
const NG_SOCKET: &str = "127.0.0.1:2223";
/// Where our `media-relay --ng` listens for them instead: the one line of Kamailio's configuration that differs.
const OUR_NG_SOCKET: &str = "127.0.0.1:2225";
/// Our relay's own control socket (unused here; away from both NG ports).
const OUR_CONTROL_SOCKET: &str = "127.0.0.1:2224";
/// The relay's media ports, both relays alike.
const PORT_RANGE: (u16, u16) = (16384, 32767);

/// The media relay Kamailio steers over NG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relay {
    /// rtpengine 10.5, user space (`--table=-1`).
    Rtpengine,
    /// Our `media-relay --ng` (this binary), user space only (`xdp: false`, `--xdp off`) or with its XDP fast path
    /// native on the SBC namespace's a0 and b0 (the topology prepared for it by the harness).
    Ours { binary: PathBuf, xdp: bool },
}
/// Where Redis (topos's storage) listens, in the SBC namespace.
const REDIS_PORT: u16 = 6379;
/// Kamailio's shared memory, MB: tm keeps each finished transaction 5 s, dialog each finished dialog a while.
const SHM_MB: &str = "1024";

/// Kamailio, rtpengine and Redis running in the SBC namespace; stopped when dropped.
pub struct KamailioRig {
    // Kamailio first: it stops its children on SIGTERM.
    kamailio: Option<Process>,
    /// rtpengine or our media-relay ([`Relay`]).
    relay: Process,
    redis: Process,
    /// Kamailio's child processes at start (receivers, timers, ...): fixed for its lifetime.
    children: Vec<u32>,
    /// Kamailio's runtime directory, removed when dropped.
    dir: PathBuf,
}

impl KamailioRig {
    /// Starts Redis and the media relay, then Kamailio pointed at the relay's NG address, in `topo`'s SBC
    /// namespace, all pinned to `core` if given (`name` names the logs in the topology's directory).
    pub fn start(topo: &Topology, name: &str, core: Option<usize>, relay: &Relay) -> Result<Self> {
        require_programs()?;
        let dir = topo.dir().join(format!("{name}-kamailio"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("run"))?;
        let pin = |program: &str, args: Vec<String>| -> (String, Vec<String>) {
            match core {
                Some(c) => ("taskset".into(), [vec!["-c".into(), c.to_string(), program.into()], args].concat()),
                None => (program.into(), args),
            }
        };
        let (program, args) = pin(
            "rtpengine",
            [
                "--config-file=none",
                "--table=-1",
                "--foreground",
                "--log-stderr",
                "--log-level=3",
                "--interface=a/198.18.1.1",
                "--interface=b/198.18.2.1",
                &format!("--listen-ng={NG_SOCKET}"),
                &format!("--port-min={}", PORT_RANGE.0),
                &format!("--port-max={}", PORT_RANGE.1),
                // Sessions go when the BYE deletes them, as our sbc frees its ports at once.
                "--delete-delay=0",
                // As many workers as it has cores: one (its default is one per core of the machine, whose
                // second core is SIPp's). Extra workers on a single core only add wake-ups and switches.
                "--num-threads=1",
            ]
            .map(String::from)
            .to_vec(),
        );
        let (redis_program, redis_args) = pin(
            "redis-server",
            // In memory only, on the namespace's loopback.
            ["--bind", "127.0.0.1", "--port", &REDIS_PORT.to_string(), "--save", "", "--appendonly", "no"]
                .map(String::from)
                .to_vec(),
        );
        let mut redis = topo.spawn(Host::Sbc, &format!("{name}-redis"), &redis_program, &redis_args)?;
        wait_tcp(topo, &mut redis, REDIS_PORT)?;
        let (relay, ng_socket) = match relay {
            Relay::Rtpengine => {
                let mut p = topo.spawn(Host::Sbc, &format!("{name}-rtpengine"), &program, &args)?;
                wait_udp(topo, &mut p, port_of(NG_SOCKET))?;
                (p, NG_SOCKET)
            }
            Relay::Ours { binary, xdp } => {
                let mut args: Vec<String> = [
                    format!("--control={OUR_CONTROL_SOCKET}"),
                    format!("--ng={OUR_NG_SOCKET}"),
                    "--ng-interface=a/198.18.1.1".into(),
                    "--ng-interface=b/198.18.2.1".into(),
                    format!("--ng-ports={}-{}", PORT_RANGE.0, PORT_RANGE.1),
                    format!("--xdp={}", if *xdp { "native" } else { "off" }),
                ]
                .to_vec();
                if *xdp {
                    args.extend(["--interface=a0".into(), "--interface=b0".into()]);
                }
                let (program, args) = pin(&binary.display().to_string(), args);
                let mut p = topo.spawn(Host::Sbc, &format!("{name}-media-relay"), &program, &args)?;
                wait_udp(topo, &mut p, port_of(OUR_NG_SOCKET))?;
                (p, OUR_NG_SOCKET)
            }
        };
        let (program, args) = pin(
            "kamailio",
            vec![
                "-f".into(),
                config_path()?.display().to_string(),
                "-DD".into(),
                "-E".into(),
                // The fast memory manager: Debian's default, q_malloc with debugging, costs about 3x the CPU.
                "-x".into(),
                "fm".into(),
                "-m".into(),
                SHM_MB.into(),
                "-Y".into(),
                dir.join("run").display().to_string(),
                "-P".into(),
                dir.join("kamailio.pid").display().to_string(),
                "-A".into(),
                format!("REDIS_ADDR=\"name=tps;addr=127.0.0.1;port={REDIS_PORT}\""),
                "-A".into(),
                format!("RTPENGINE_SOCK=\"udp:{ng_socket}\""),
            ],
        );
        let mut kamailio = topo.spawn(Host::Sbc, &format!("{name}-kamailio"), &program, &args)?;
        wait_udp(topo, &mut kamailio, 5060)?;
        // Its children are forked before it binds its sockets; give the last helpers a moment.
        std::thread::sleep(Duration::from_millis(300));
        let children = children(kamailio.id());
        if children.is_empty() {
            bail!("kamailio runs without child processes: {}", kamailio.output_tail());
        }
        Ok(Self { kamailio: Some(kamailio), relay, redis, children, dir })
    }

    /// Every process whose CPU time is the target's: Kamailio and its children, the relay and Redis (all their
    /// threads).
    pub fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.kamailio.iter().map(Process::id).collect();
        pids.extend(&self.children);
        pids.extend([self.relay.id(), self.redis.id()]);
        pids
    }

    /// The media relay's process (rtpengine or media-relay: `taskset` and `ip netns exec` exec it).
    pub fn relay_pid(&self) -> u32 {
        self.relay.id()
    }

    /// Why the rig is no longer whole, if it is not: a daemon exited (with its log).
    pub fn exited(&mut self) -> Option<String> {
        for p in self.kamailio.iter_mut().chain([&mut self.relay, &mut self.redis]) {
            if let Ok(Some(status)) = p.try_wait() {
                return Some(format!("exited ({status}): {}", p.output_tail()));
            }
        }
        None
    }
}

impl Drop for KamailioRig {
    fn drop(&mut self) {
        if let Some(mut k) = self.kamailio.take() {
            // SIGTERM: Kamailio's main process stops its children; a SIGKILL would leave them running.
            let _ = k.terminate(Duration::from_secs(5));
        }
        for &child in &self.children {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &child.to_string()])
                .stderr(std::process::Stdio::null())
                .status();
        }
        self.relay.kill();
        self.redis.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The port of a literal `IP:PORT`.
fn port_of(socket: &str) -> u16 {
    socket.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0)
}

/// benches/kamailio/sbc.cfg in the repository, from any working directory.
fn config_path() -> Result<PathBuf> {
    let path = ::tests::repo_root().join(CONFIG);
    std::fs::canonicalize(&path).with_context(|| format!("{} not found", path.display()))
}

fn require_programs() -> Result<()> {
    for (program, package) in [
        ("kamailio", "kamailio kamailio-extra-modules kamailio-redis-modules"),
        ("rtpengine", "rtpengine-daemon"),
        ("redis-server", "redis-server"),
    ] {
        if std::process::Command::new(program).arg("--version").output().is_err() {
            bail!("the kamailio-rtpengine target needs `{program}`: run `make deps` as root (Debian: {package})");
        }
    }
    Ok(())
}

/// Waits until `process` listens on UDP `port` in the SBC namespace; fails with its log if it exits first.
fn wait_udp(topo: &Topology, process: &mut Process, port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = process.try_wait()? {
            bail!("exited ({status}) at start: {}", process.output_tail());
        }
        if topo.wait_udp_listening(Host::Sbc, port, Duration::from_millis(100)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("nothing listens on UDP {port} after 10 s: {}", process.output_tail());
        }
    }
}

/// Waits until `process` listens on TCP `port` in the SBC namespace; fails with its log if it exits first.
fn wait_tcp(topo: &Topology, process: &mut Process, port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = process.try_wait()? {
            bail!("exited ({status}) at start: {}", process.output_tail());
        }
        let out = topo.exec(Host::Sbc, "ss", &["-Hltn", "sport", "=", &format!(":{port}")])?;
        if !out.trim().is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("nothing listens on TCP {port} after 10 s: {}", process.output_tail());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The child processes of `pid` (every thread's, from /proc).
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| s.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<u32>>())
        .collect()
}
