//! Running SIPp as a real peer, bounded in calls and time, and reading its statistics.
//!
//! [`Sipp`] builds one SIPp command line (UAC when it has a target, UAS otherwise), optionally inside a network
//! namespace; [`Sipp::run`] waits for it, [`Sipp::spawn`] starts it in the background (a UAS, usually) and
//! [`Running::wait`] collects its [`Run`]. Every run is bounded: SIPp's own `-timeout ... -timeout_error`, plus a
//! kill 10 s after that.

use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A SIPp scenario file: a file name under tests/sipp/, or a path of its own (absolute, or with a directory, from
/// the repository root: `benches/sipp/uac.xml`).
pub fn scenario(name: &str) -> PathBuf {
    if name.contains('/') {
        crate::repo_root().join(name)
    } else {
        crate::repo_root().join("tests/sipp").join(name)
    }
}

/// What a finished SIPp run reported.
#[derive(Debug)]
pub struct Run {
    /// SIPp's exit code: 0 when every call succeeded.
    pub exit_code: i32,
    /// The last line of the `-trace_stat` CSV, by column name (cumulative `(C)` columns are what tests read).
    pub stats: HashMap<String, String>,
    /// Its stderr, for failure messages.
    pub stderr: String,
    /// The command line that ran, SIPp's error log (`-trace_err`), its `-trace_logs` log and the tail of the
    /// message trace (if enabled): for failure messages.
    pub diagnostics: String,
    /// SIPp's working directory (its stat, error and log files, and any file it writes there itself, such as the
    /// `-trace_rtt` CSV). Removed after a run that exited 0 unless [`Sipp::keep_files`] was set; the caller then
    /// removes it.
    pub dir: PathBuf,
}

impl Run {
    /// A cumulative counter from the stat file, e.g. `SuccessfulCall(C)`; `u64::MAX` when missing.
    pub fn count(&self, column: &str) -> u64 {
        self.stats.get(column).and_then(|v| v.trim().parse().ok()).unwrap_or(u64::MAX)
    }

    /// Fails unless SIPp exited 0 with exactly `calls` successful and no failed calls.
    pub fn assert_all_successful(&self, calls: u64) -> Result<()> {
        let got = (self.exit_code, self.count("SuccessfulCall(C)"), self.count("FailedCall(C)"));
        if got != (0, calls, 0) {
            bail!(
                "expected exit 0, {calls} successful and 0 failed calls; got exit {}, {} successful, {} failed\n{}\n{}",
                got.0,
                got.1,
                got.2,
                self.stderr,
                self.diagnostics
            );
        }
        Ok(())
    }
}

/// Runs a SIPp UAC scenario against `target` on loopback: `calls` calls at `rate` per second, over `transport`
/// (`u1` or `t1`), killed after `limit`.
pub fn uac(
    target: SocketAddr,
    scenario_file: &str,
    calls: u32,
    rate: u32,
    transport: &str,
    limit: Duration,
) -> Result<Run> {
    Sipp::new(scenario_file).target(target).calls(calls).rate(rate).transport(transport).limit(limit).run()
}

/// One SIPp invocation, built up and then run or spawned.
#[derive(Debug, Clone)]
pub struct Sipp {
    scenario: String,
    netns: Option<String>,
    local_ip: IpAddr,
    local_port: Option<u16>,
    media_port: Option<u16>,
    target: Option<SocketAddr>,
    calls: u32,
    rate: u32,
    transport: String,
    limit: Duration,
    pause: Option<Duration>,
    service: Option<String>,
    keys: Vec<(String, String)>,
    globals: Vec<(String, String)>,
    trace_msg: bool,
    extra: Vec<String>,
    cpu: Option<usize>,
    keep_files: bool,
}

impl Sipp {
    /// A run of `scenario_file` (under tests/sipp/): by default 1 call at 10/s over UDP (`u1`), on 127.0.0.1 with a
    /// free port, limited to 30 s, as a UAS (no target).
    pub fn new(scenario_file: &str) -> Self {
        Self {
            scenario: scenario_file.to_owned(),
            netns: None,
            local_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            local_port: None,
            media_port: None,
            target: None,
            calls: 1,
            rate: 10,
            transport: "u1".to_owned(),
            limit: Duration::from_secs(30),
            pause: None,
            service: None,
            keys: Vec::new(),
            globals: Vec::new(),
            trace_msg: false,
            extra: Vec::new(),
            cpu: None,
            keep_files: false,
        }
    }

    /// Runs inside network namespace `ns` (`ip netns exec`). The local port then defaults to 5060.
    pub fn netns(mut self, ns: &str) -> Self {
        self.netns = Some(ns.to_owned());
        self
    }

    /// The local address (`-i`, bound with `-bind_local`; also the media address `-mi`).
    pub fn local_ip(mut self, ip: impl Into<IpAddr>) -> Self {
        self.local_ip = ip.into();
        self
    }

    /// The local SIP port (`-p`); default: 5060 in a namespace, a free port on loopback.
    pub fn local_port(mut self, port: u16) -> Self {
        self.local_port = Some(port);
        self
    }

    /// The local media port (`-mp`, `[media_port]` in SDP); SIPp's default is 6000.
    pub fn media_port(mut self, port: u16) -> Self {
        self.media_port = Some(port);
        self
    }

    /// Makes it a UAC sending to `target`.
    pub fn target(mut self, target: SocketAddr) -> Self {
        self.target = Some(target);
        self
    }

    /// How many calls (`-m`): a UAC places that many, a UAS exits after handling that many.
    pub fn calls(mut self, calls: u32) -> Self {
        self.calls = calls;
        self
    }

    /// Calls per second (`-r`), UAC only.
    pub fn rate(mut self, rate: u32) -> Self {
        self.rate = rate;
        self
    }

    /// `u1` (one UDP socket) or `t1` (one TCP connection).
    pub fn transport(mut self, transport: &str) -> Self {
        self.transport = transport.to_owned();
        self
    }

    /// SIPp's global timeout (`-timeout`, with `-timeout_error`); it is killed 10 s after that.
    pub fn limit(mut self, limit: Duration) -> Self {
        self.limit = limit;
        self
    }

    /// The duration of every `<pause/>` without attributes (`-d`): hold, ringing or early-media time.
    pub fn pause(mut self, pause: Duration) -> Self {
        self.pause = Some(pause);
        self
    }

    /// The dialled user, `[service]` in the Request-URI (`-s`).
    pub fn service(mut self, service: &str) -> Self {
        self.service = Some(service.to_owned());
        self
    }

    /// A scenario keyword `[name]` (`-key name value`).
    pub fn key(mut self, name: &str, value: &str) -> Self {
        self.keys.push((name.to_owned(), value.to_owned()));
        self
    }

    /// A global scenario variable `[$name]` (`-set name value`; the scenario declares it in `<Global>`).
    pub fn set(mut self, name: &str, value: &str) -> Self {
        self.globals.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Records every message (`-trace_msg`) for the diagnostics of a failed run.
    pub fn trace_messages(mut self, on: bool) -> Self {
        self.trace_msg = on;
        self
    }

    /// Any other SIPp argument(s).
    pub fn arg(mut self, arg: &str) -> Self {
        self.extra.push(arg.to_owned());
        self
    }

    /// Pins SIPp to CPU core `core` (runs it under `taskset -c CORE`, which execs SIPp, so the pid stays SIPp's).
    /// For load tests that keep the load generator off the cores of the system under test.
    pub fn cpu(mut self, core: usize) -> Self {
        self.cpu = Some(core);
        self
    }

    /// Keeps SIPp's working directory ([`Run::dir`]) also after a successful run, for files the caller reads
    /// itself (e.g. `-trace_rtt`); the caller removes it.
    pub fn keep_files(mut self, keep: bool) -> Self {
        self.keep_files = keep;
        self
    }

    /// The SIPp arguments (after the program name) for a run whose files go to `dir`.
    pub fn args(&self, dir: &Path) -> Vec<String> {
        let port = self.local_port.unwrap_or_else(|| if self.netns.is_some() { 5060 } else { crate::free_port() });
        let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
        let mut a = Vec::new();
        if let Some(t) = self.target {
            a.push(t.to_string());
        }
        a.extend(["-sf".to_owned(), scenario(&self.scenario).to_string_lossy().into_owned()]);
        a.extend(["-i", &self.local_ip.to_string(), "-p", &port.to_string(), "-bind_local"].map(str::to_owned));
        a.extend(["-mi".to_owned(), self.local_ip.to_string()]);
        if let Some(mp) = self.media_port {
            a.extend(["-mp".to_owned(), mp.to_string()]);
        }
        a.extend(["-m".to_owned(), self.calls.to_string(), "-t".to_owned(), self.transport.clone()]);
        if self.target.is_some() {
            a.extend(["-r".to_owned(), self.rate.to_string()]);
        }
        if let Some(d) = self.pause {
            a.extend(["-d".to_owned(), d.as_millis().to_string()]);
        }
        if let Some(s) = &self.service {
            a.extend(["-s".to_owned(), s.clone()]);
        }
        for (k, v) in &self.keys {
            a.extend(["-key".to_owned(), k.clone(), v.clone()]);
        }
        for (k, v) in &self.globals {
            a.extend(["-set".to_owned(), k.clone(), v.clone()]);
        }
        a.extend(["-trace_stat", "-fd", "1", "-stf"].map(str::to_owned));
        a.push(path("stat.csv"));
        a.extend(["-trace_err", "-error_file"].map(str::to_owned));
        a.push(path("errors.log"));
        a.extend(["-trace_logs", "-log_file"].map(str::to_owned));
        a.push(path("logs.log"));
        if self.trace_msg {
            a.extend(["-trace_msg", "-message_file"].map(str::to_owned));
            a.push(path("messages.log"));
        }
        a.extend(
            ["-nostdin", "-timeout", &format!("{}s", self.limit.as_secs().max(1)), "-timeout_error"].map(str::to_owned),
        );
        a.extend(self.extra.iter().cloned());
        a
    }

    /// Starts SIPp in the background; [`Running::wait`] collects the result, drop kills it.
    pub fn spawn(self) -> Result<Running> {
        let sipp = crate::require_tool("sipp", "sip-tester");
        static RUN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "sipp-{}-{n}-{}",
            std::process::id(),
            self.scenario.replace(['.', '/'], "_")
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let mut args = self.args(&dir);
        let mut program = sipp.into_os_string();
        if let Some(core) = self.cpu {
            let taskset = crate::require_tool("taskset", "util-linux");
            args.splice(0..0, ["-c".to_owned(), core.to_string(), program.to_string_lossy().into_owned()]);
            program = taskset.into_os_string();
        }
        let command = format!(
            "{}{} {}",
            self.netns.as_ref().map(|ns| format!("ip netns exec {ns} ")).unwrap_or_default(),
            if self.cpu.is_some() { "taskset" } else { "sipp" },
            args.join(" ")
        );
        let child = crate::netns::command(self.netns.as_deref(), program)
            .args(&args)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr.log"))?)
            .spawn()
            .with_context(|| format!("spawning {command}"))?;
        Ok(Running {
            child: Some(child),
            dir,
            command,
            limit: self.limit,
            started: Instant::now(),
            keep_files: self.keep_files,
        })
    }

    /// Runs SIPp to completion.
    pub fn run(self) -> Result<Run> {
        self.spawn()?.wait()
    }
}

/// A SIPp started in the background; killed on drop.
#[derive(Debug)]
pub struct Running {
    child: Option<Child>,
    dir: PathBuf,
    /// The command line, for messages.
    pub command: String,
    limit: Duration,
    started: Instant,
    keep_files: bool,
}

/// Every `m=audio` port whose SDP has a `c=` line naming exactly `ip`, in a SIPp message log, in order (repeats
/// kept: a re-INVITE names its port again). `198.18.1.1` does not match the caller's own `198.18.1.10`.
pub fn sdp_ports(log: &str, ip: &str) -> Vec<u16> {
    let needle = format!("c=IN IP4 {ip}");
    log.match_indices(&needle)
        .filter_map(|(at, _)| {
            let rest = &log[at + needle.len()..];
            if rest.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
                return None;
            }
            let m = rest.find("m=audio ")?;
            rest[m + 8..].chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()
        })
        .collect()
}

/// [`sdp_ports`] without repeats, in order of first appearance: one port per call.
pub fn distinct_sdp_ports(log: &str, ip: &str) -> Vec<u16> {
    let mut seen = std::collections::HashSet::new();
    sdp_ports(log, ip).into_iter().filter(|p| seen.insert(*p)).collect()
}

impl Running {
    /// The SIP messages this SIPp sent and received so far (`trace_messages(true)`), or "" before any.
    pub fn messages(&self) -> String {
        std::fs::read_to_string(self.dir().join("messages.log")).unwrap_or_default()
    }

    /// SIPp's working directory (stat, error and log files). Kept after drop (a killed run leaves it behind): a
    /// caller that kills SIPp on purpose removes it.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Waits until something listens on UDP or TCP `port` in `ns` (a UAS ready for calls over `u1` or `t1`),
    /// failing early if SIPp exits.
    pub fn wait_listening(&mut self, ns: Option<&str>, port: u16, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.as_mut().context("already waited")?.try_wait()? {
                bail!("sipp exited early with {status}: {}\n{}", self.read("stderr.log"), self.diagnostics());
            }
            let out =
                crate::netns::run(crate::netns::command(ns, "ss").args(["-Hltun", "sport", "=", &format!(":{port}")]))?;
            if !out.trim().is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("sipp does not listen on port {port} after {timeout:?}: {}", self.command);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for SIPp to exit (killing it 10 s after its own `-timeout`) and reads its statistics. The run's
    /// directory is removed when it exited 0 and kept (and named in the diagnostics) otherwise.
    pub fn wait(mut self) -> Result<Run> {
        let mut child = self.child.take().context("already waited")?;
        let deadline = self.started + self.limit + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = child.try_wait()? {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("sipp did not finish within {:?}: {}\n{}", self.limit, self.command, self.diagnostics());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let stderr = self.read("stderr.log");
        let diagnostics = self.diagnostics();
        let stat = self.dir.join("stat.csv");
        let csv = std::fs::read_to_string(&stat)
            .with_context(|| format!("reading {} ({status}): {stderr}\n{diagnostics}", stat.display()))?;
        let mut lines = csv.lines().filter(|l| !l.trim().is_empty());
        let header = lines.next().context("empty stat file")?;
        let last = lines.next_back().context("stat file without samples")?;
        let stats = header.split(';').map(str::to_owned).zip(last.split(';').map(str::to_owned)).collect();
        let exit_code = status.code().unwrap_or(-1);
        if exit_code == 0 && !self.keep_files {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        Ok(Run { exit_code, stats, stderr, diagnostics, dir: self.dir.clone() })
    }

    /// Whether SIPp has exited, without waiting (`None`: still running; an error once [`Running::wait`]ed).
    pub fn try_wait(&mut self) -> Result<Option<std::process::ExitStatus>> {
        Ok(self.child.as_mut().context("already waited")?.try_wait()?)
    }

    /// Sends SIPp signal `name` (`USR1`: stop placing calls and exit once the calls in progress have ended;
    /// `TERM`: exit now, writing the final statistics line). SIPp is the process spawned: `ip netns exec` and
    /// `taskset` exec it.
    pub fn signal(&self, name: &str) {
        if let Some(child) = &self.child {
            let _ = std::process::Command::new("kill")
                .args([&format!("-{name}"), &child.id().to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }

    /// What SIPp said: its stderr, the tail of its error log and its command line.
    pub fn said(&self) -> String {
        let errors = self.read("errors.log");
        let tail: Vec<&str> = errors.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect();
        format!("{} {}\n[{}]", self.read("stderr.log").trim(), tail.join("\n"), self.command)
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }

    fn diagnostics(&self) -> String {
        let tail = |text: String, n: usize| {
            let lines: Vec<_> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        };
        format!(
            "command: {}\nfiles kept in {}\n[errors.log]\n{}\n[logs.log]\n{}\n[messages.log, tail]\n{}",
            self.command,
            self.dir.display(),
            tail(self.read("errors.log"), 30),
            tail(self.read("logs.log"), 30),
            tail(self.read("messages.log"), 80)
        )
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
