//! Shared helpers for the integration tests: the `sbc` process under test, SIPp runs, tool checks.
//!
//! Every helper that starts something also stops it on drop, so a failing assertion cleans up too.

use anyhow::{bail, Context, Result};
use std::io::Read;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod baresip;
pub mod browser;
pub mod capture;
pub mod fleet;
pub mod netns;
pub mod procfs;
pub mod rtp;
pub mod rtpengine;
pub mod setup_drill;
pub mod sipp;
pub mod tls;
pub mod tone;
pub mod ws;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Fails with a clear message when an external tool is missing. `make test` installs them; a test run without it
/// must say what to do rather than pass or skip silently.
pub fn require_tool(tool: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(tool))
        .find(|p| p.is_file());
    match found {
        Some(p) => p,
        None => panic!(
            "`{tool}` is not installed (Debian package `{package}`); run `make deps` as root, or `make test` which does{}",
            if std::env::var("CI").as_deref() == Ok("true") { " (CI=true: this is a failure, not a skip)" } else { "" }
        ),
    }
}

/// The `sbc` binary of this workspace, brought up to date once per test process (`cargo test` does not rebuild
/// another package's binary, and a stale one would test old code). `SBC_BINARY=/path/to/sbc` uses that binary
/// instead, unbuilt (for CI jobs that test a release build, or while the workspace does not compile).
pub fn sbc_binary() -> Result<PathBuf> {
    workspace_binary("SBC_BINARY", "sbc", "sbc")
}

/// The `sbcctl` binary (the admin API's command line), built like [`sbc_binary`] (`SBCCTL_BINARY` overrides).
pub fn sbcctl_binary() -> Result<PathBuf> {
    workspace_binary("SBCCTL_BINARY", "sbc", "sbcctl")
}

/// The standalone `media-relay` binary, built like [`sbc_binary`] (`MEDIA_RELAY_BINARY` overrides).
pub fn media_relay_binary() -> Result<PathBuf> {
    workspace_binary("MEDIA_RELAY_BINARY", "media-relay", "media-relay")
}

/// Binary `bin` of workspace package `package`, built (debug) once per test process unless the environment
/// variable `env` names one.
fn workspace_binary(env: &str, package: &'static str, bin: &'static str) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("{env}={} is not a file", path.display());
        }
        return Ok(path);
    }
    static BUILT: std::sync::Mutex<Vec<(&'static str, Result<PathBuf, String>)>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // Keyed by binary: one package (sbc) has several (sbc, sbcctl).
    if let Some((_, r)) = built.iter().find(|(b, _)| *b == bin) {
        return r.clone().map_err(anyhow::Error::msg);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target"));
    let result = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", package, "--bin", bin])
        .current_dir(repo_root())
        .status()
        .map_err(|e| format!("running cargo build -p {package}: {e}"))
        .and_then(|s| {
            if s.success() {
                Ok(target.join("debug").join(bin))
            } else {
                Err(format!("cargo build -p {package} failed"))
            }
        });
    built.push((bin, result.clone()));
    result.map_err(anyhow::Error::msg)
}

/// An `sbc` that stands in for the next release in the rolling-upgrade test: this tree built with the `format-next`
/// feature (replication record format 4, a new optional record field, software version `…+format-next`), once per
/// test process, unless `SBC_NEXT_BINARY` names another build (a real newer or older release, for the same test by
/// hand). It is kept as `target/format-next/sbc`; the ordinary build is made again afterwards, so
/// `target/debug/sbc` stays the ordinary one.
pub fn sbc_next_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("SBC_NEXT_BINARY") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("SBC_NEXT_BINARY={} is not a file", path.display());
        }
        return Ok(path);
    }
    static BUILT: std::sync::Mutex<Option<Result<PathBuf, String>>> = std::sync::Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(r) = built.as_ref() {
        return r.clone().map_err(anyhow::Error::msg);
    }
    let cargo = |extra: &[&str]| {
        Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "sbc", "--bin", "sbc"])
            .args(extra)
            .current_dir(repo_root())
            .stderr(Stdio::inherit())
            .output()
    };
    let result = cargo(&["--features", "format-next", "--message-format=json"])
        .map_err(|e| format!("running cargo build --features format-next: {e}"))
        .and_then(|out| {
            if !out.status.success() {
                return Err("cargo build -p sbc --features format-next failed".to_owned());
            }
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == "sbc")
                .find_map(|v| v["executable"].as_str().map(PathBuf::from))
                .ok_or_else(|| "cargo named no sbc executable for the format-next build".to_owned())
        })
        .and_then(|built| {
            // Cargo puts every build of `sbc` at the same path: keep this one aside before the ordinary build
            // takes the path back.
            let dir = built.parent().and_then(Path::parent).unwrap_or(Path::new(".")).join("format-next");
            std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
            let kept = dir.join("sbc");
            std::fs::copy(&built, &kept).map_err(|e| format!("copying {}: {e}", built.display()))?;
            Ok(kept)
        })
        .and_then(|next| match cargo(&[]) {
            Ok(o) if o.status.success() => Ok(next),
            _ => Err("rebuilding the ordinary sbc after the format-next build failed".to_owned()),
        });
    *built = Some(result.clone());
    result.map_err(anyhow::Error::msg)
}

/// Writes `text` to `path` through a rename, so a process polling for the file never reads half of it.
pub fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

/// The `netprobe` helper binary of this crate (UDP echo/ping, HTTP GET, run inside namespaces).
pub fn netprobe_binary() -> Result<PathBuf> {
    helper_binary("netprobe")
}

/// A helper binary of this crate (`src/bin/NAME.rs`: `netprobe`, `tcpflood`, ...). Cargo builds them with the
/// integration tests, next to their `deps/` directory.
pub fn helper_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("current_exe")?;
    let candidates = [exe.parent().map(|d| d.join(name)), exe.parent().and_then(Path::parent).map(|d| d.join(name))];
    candidates.into_iter().flatten().find(|p| p.is_file()).with_context(|| {
        format!("the {name} helper is not built next to {}; run `cargo build -p tests --bins`", exe.display())
    })
}

/// Every CDR in the JSON-lines files `paths`, in file order (a missing file has none). A line that is not JSON
/// panics: the CDR writer never leaves one, even when killed (it writes whole lines).
pub fn read_cdrs(paths: &[&Path]) -> Vec<serde_json::Value> {
    paths
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .map(|l| {
                    serde_json::from_str(l).unwrap_or_else(|e| panic!("a CDR line of {} is not JSON: {e}", p.display()))
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// [`read_cdrs`], polling up to `limit` until there are at least `n` (CDRs are written when a call's media
/// figures arrive, shortly after the BYE).
pub fn wait_cdrs(paths: &[&Path], n: usize, limit: Duration) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + limit;
    loop {
        let found = read_cdrs(paths);
        if found.len() >= n || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A free port on 127.0.0.1 for both UDP and TCP (bound and released; good enough for tests run serially per
/// process, and each test uses its own ports).
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let port = udp.local_addr().expect("addr").port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 after 100 tries");
}

/// A running `sbc`, killed on drop. Its stderr goes to a log file whose tail is printed if a test fails.
#[derive(Debug)]
pub struct Sbc {
    child: Child,
    /// SIP address (UDP and TCP) on loopback.
    pub sip: SocketAddr,
    /// Admin API address.
    pub api: SocketAddr,
    /// Where its log goes.
    pub log: PathBuf,
    dir: PathBuf,
    /// The network namespace it runs in, if any (the admin API is then reached from inside it).
    netns: Option<String>,
    /// Keep `dir` (log, config) when dropped: the process ended on its own.
    keep: bool,
}

impl Sbc {
    /// Starts `sbc` with a config listening on fresh loopback ports, plus `extra` TOML appended, and waits until
    /// `/health` answers.
    pub fn start(name: &str, extra: &str) -> Result<Self> {
        Self::start_with(name, "", extra)
    }

    /// [`Sbc::start`] with `sip_keys` (TOML lines) added to its `[sip]` table.
    pub fn start_with(name: &str, sip_keys: &str, extra: &str) -> Result<Self> {
        let sip_port = free_port();
        let api_port = free_port();
        let dir = std::env::temp_dir().join(format!("sbc-test-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("sbc.toml");
        std::fs::write(
            &config,
            format!(
                "[sip]\nlisten = [\"udp:127.0.0.1:{sip_port}\", \"tcp:127.0.0.1:{sip_port}\"]\n{sip_keys}\n\n[api]\nlisten = \"127.0.0.1:{api_port}\"\n\n[log]\nlevel = \"info\"\n{extra}"
            ),
        )?;
        let log = dir.join("sbc.log");
        let child = Command::new(sbc_binary()?)
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("spawning sbc")?;
        let mut sbc = Self {
            child,
            sip: SocketAddr::from(([127, 0, 0, 1], sip_port)),
            api: SocketAddr::from(([127, 0, 0, 1], api_port)),
            log,
            dir,
            netns: None,
            keep: false,
        };
        sbc.wait_healthy()?;
        Ok(sbc)
    }

    /// Starts `sbc` inside network namespace `netns` with the complete `config` (TOML, written as given), whose
    /// SIP and admin API addresses the caller states as `sip` and `api` (both inside the namespace; the API is
    /// queried from inside it). Waits until `/health` answers. For the topologies of [`netns::Topology`].
    pub fn start_in(netns: &str, name: &str, config: &str, sip: SocketAddr, api: SocketAddr) -> Result<Self> {
        Self::start_binary_in(&sbc_binary()?, netns, name, config, sip, api)
    }

    /// [`Sbc::start_in`] with the `sbc` binary at `binary` (a load test comparing two builds).
    pub fn start_binary_in(
        binary: &Path,
        netns: &str,
        name: &str,
        config: &str,
        sip: SocketAddr,
        api: SocketAddr,
    ) -> Result<Self> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("sbc-test-{name}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let config_path = dir.join("sbc.toml");
        std::fs::write(&config_path, config)?;
        let log = dir.join("sbc.log");
        let child = netns::command(Some(netns), binary)
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("spawning sbc in {netns}"))?;
        let mut sbc = Self { child, sip, api, log, dir, netns: Some(netns.to_owned()), keep: false };
        sbc.wait_healthy()?;
        Ok(sbc)
    }

    fn wait_healthy(&mut self) -> Result<()> {
        let sbc = self;
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = sbc.child.try_wait()? {
                bail!("sbc exited early with {status}; log:\n{}", sbc.log_tail());
            }
            if sbc.http_get("/health").is_ok_and(|b| b.trim() == "ok") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("sbc did not answer /health within 20 s; log:\n{}", sbc.log_tail())
    }

    /// A plain HTTP/1.0 GET on the admin API; returns the body.
    pub fn http_get(&self, path: &str) -> Result<String> {
        if let Some(ns) = &self.netns {
            let probe = netprobe_binary()?;
            return netns::run(netns::command(Some(ns), probe).args(["http-get", &self.api.to_string(), path]));
        }
        let mut s = TcpStream::connect_timeout(&self.api, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        std::io::Write::write_all(&mut s, format!("GET {path} HTTP/1.0\r\nHost: sbc\r\n\r\n").as_bytes())?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        let (head, body) = out.split_once("\r\n\r\n").context("no HTTP header end")?;
        if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
            bail!("GET {path}: {}", head.lines().next().unwrap_or(""));
        }
        Ok(body.to_owned())
    }

    /// The value of a Prometheus sample whose line starts with `prefix` (name plus labels), summed over matches.
    pub fn metric(&self, prefix: &str) -> Result<f64> {
        let text = self.http_get("/metrics")?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// The last 40 lines of the log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<_> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The process id (`ip netns exec` execs `sbc`, so this is the SBC's own pid also inside a namespace).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The working directory of this instance (config, log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// How the process ended (exit code or signal), once it has; and its files are kept for a post-mortem.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.try_wait().ok().flatten();
        if status.is_some() {
            self.keep = true;
        }
        status
    }

    /// Sends SIGTERM and waits up to `timeout` for a clean exit; returns whether it exited with status 0.
    pub fn terminate(&mut self, timeout: Duration) -> Result<bool> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.success());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("sbc did not exit within {timeout:?} of SIGTERM")
    }
}

impl Drop for Sbc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() || self.keep {
            eprintln!("--- sbc log ({}) ---\n{}", self.log.display(), self.log_tail());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
