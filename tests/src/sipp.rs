//! Running SIPp as a real peer, bounded in calls and time, and reading its statistics.

use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A SIPp scenario file under tests/sipp/.
pub fn scenario(name: &str) -> PathBuf {
    crate::repo_root().join("tests/sipp").join(name)
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
}

impl Run {
    /// A cumulative counter from the stat file, e.g. `SuccessfulCall(C)`.
    pub fn count(&self, column: &str) -> u64 {
        self.stats.get(column).and_then(|v| v.trim().parse().ok()).unwrap_or(u64::MAX)
    }
}

/// Runs a SIPp UAC scenario against `target`: `calls` calls at `rate` per second, over `transport` (`u1` or
/// `t1`), killed after `limit`.
pub fn uac(
    target: SocketAddr,
    scenario_file: &str,
    calls: u32,
    rate: u32,
    transport: &str,
    limit: Duration,
) -> Result<Run> {
    let sipp = crate::require_tool("sipp", "sip-tester");
    static RUN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("sipp-{}-{n}-{}", std::process::id(), scenario_file.replace('.', "_")));
    std::fs::create_dir_all(&dir)?;
    let stat = dir.join("stat.csv");
    let mut child = Command::new(sipp)
        .arg(target.to_string())
        .args(["-sf"])
        .arg(scenario(scenario_file))
        .args(["-m", &calls.to_string(), "-r", &rate.to_string(), "-t", transport])
        .args(["-i", "127.0.0.1", "-p", &crate::free_port().to_string()])
        .args(["-trace_stat", "-fd", "1", "-stf"])
        .arg(&stat)
        .args(["-nostdin", "-timeout", &format!("{}s", limit.as_secs()), "-timeout_error"])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning sipp")?;
    let deadline = Instant::now() + limit + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("sipp did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    let csv = std::fs::read_to_string(&stat).with_context(|| format!("reading {}", stat.display()))?;
    let mut lines = csv.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().context("empty stat file")?;
    let last = lines.next_back().context("stat file without samples")?;
    let stats = header.split(';').map(str::to_owned).zip(last.split(';').map(str::to_owned)).collect();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Run { exit_code: status.code().unwrap_or(-1), stats, stderr })
}
