//! The `media-relay` process under test and its control connection (TCP, JSON lines) on loopback of the bench's
//! own network namespace.

use anyhow::{bail, Context as _, Result};
use relay_proto::control::{self, Command, Event, SessionId, SessionStats};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The relay's control socket (the bench's namespace has its own loopback: no other program is there).
pub const CONTROL: &str = "127.0.0.1:2223";
/// `USER_HZ`: the unit of /proc/PID/stat (100 on every Linux architecture in practice).
const CLOCK_TICKS_PER_SEC: f64 = 100.0;

/// A running `media-relay`, killed on drop (also when the bench fails half-way).
#[derive(Debug)]
pub struct RelayProcess {
    child: Child,
    log: std::path::PathBuf,
}

impl RelayProcess {
    /// Starts `binary` with one forwarding thread, pinned to `core` (`taskset`) when given, its log to `log`.
    pub fn start(binary: &Path, core: Option<usize>, log: &Path) -> Result<Self> {
        let mut cmd = match core {
            Some(core) => {
                let mut c = std::process::Command::new("taskset");
                c.args(["-c", &core.to_string()]).arg(binary);
                c
            }
            None => std::process::Command::new(binary),
        };
        let file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        cmd.args(["--control", CONTROL, "--threads", "1", "--rtp-timeout", "60s"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file);
        let child = cmd.spawn().with_context(|| format!("starting {}", binary.display()))?;
        Ok(Self { child, log: log.to_owned() })
    }

    /// The process id (`taskset` execs the relay: the same process).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The relay's utime + stime so far, seconds (all threads).
    pub fn cpu_s(&self) -> Result<f64> {
        process_cpu_s(self.pid())
    }

    /// Fails when the relay has exited, with the end of its log.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(10).collect();
            bail!("media-relay exited ({status}): {}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
        Ok(())
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// utime + stime of process `pid` in seconds, from /proc/PID/stat.
pub fn process_cpu_s(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("/proc/{pid}/stat"))?;
    parse_stat_cpu_ticks(&stat)
        .map(|t| t as f64 / CLOCK_TICKS_PER_SEC)
        .with_context(|| format!("parsing /proc/{pid}/stat"))
}

/// utime + stime (fields 14 and 15) in clock ticks; the command name (field 2) may hold spaces and parentheses.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, index 11 here.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// The control connection: commands out, events from a reader thread.
#[derive(Debug)]
pub struct Control {
    stream: TcpStream,
    events: mpsc::Receiver<Event>,
    next_ping: u64,
}

impl Control {
    /// Connects to [`CONTROL`] (retrying while the relay starts, up to `timeout`) and checks the relay answers.
    pub fn connect(timeout: Duration) -> Result<Self> {
        let addr: SocketAddr = CONTROL.parse().expect("a literal address");
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => {
                    return Err(e).with_context(|| format!("connecting to media-relay at {addr}"))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        stream.set_nodelay(true)?;
        let reader = stream.try_clone()?;
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                if let Ok(ev) = control::decode::<Event>(&line) {
                    if tx.send(ev).is_err() {
                        break;
                    }
                }
            }
        });
        let mut c = Self { stream, events, next_ping: 1 };
        let seq = c.ping()?;
        c.wait_pong(seq, Instant::now() + timeout)?;
        Ok(c)
    }

    /// Sends one command.
    pub fn send(&mut self, cmd: &Command) -> Result<()> {
        let mut line = control::encode(cmd);
        line.push('\n');
        self.stream.write_all(line.as_bytes()).context("writing to media-relay's control socket")
    }

    /// Sends a ping; the relay answers once it has handled every command sent before. Returns its number.
    pub fn ping(&mut self) -> Result<u64> {
        let seq = self.next_ping;
        self.next_ping += 1;
        self.send(&Command::Ping { seq })?;
        Ok(seq)
    }

    /// The next event, if one is there.
    pub fn try_event(&self) -> Option<Event> {
        self.events.try_recv().ok()
    }

    /// The next event within `deadline`.
    pub fn event(&self, deadline: Instant) -> Result<Event> {
        match self.events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(e) => Ok(e),
            Err(mpsc::RecvTimeoutError::Timeout) => bail!("no answer from media-relay in time"),
            Err(mpsc::RecvTimeoutError::Disconnected) => bail!("media-relay closed the control connection"),
        }
    }

    /// Waits for the pong `seq`; fails on a socket the relay could not bind.
    pub fn wait_pong(&mut self, seq: u64, deadline: Instant) -> Result<()> {
        loop {
            match self.event(deadline)? {
                Event::Pong { seq: s } if s == seq => return Ok(()),
                Event::BindFailed { local, error, .. } => bail!("media-relay could not bind {local}: {error}"),
                _ => {}
            }
        }
    }

    /// Removes `sessions` and collects their final figures (within `timeout`).
    pub fn remove_all(&mut self, sessions: &[SessionId], timeout: Duration) -> Result<Vec<SessionStats>> {
        for &session in sessions {
            self.send(&Command::Remove { session })?;
        }
        let deadline = Instant::now() + timeout;
        let mut stats = Vec::with_capacity(sessions.len());
        while stats.len() < sessions.len() {
            match self.event(deadline) {
                Ok(Event::Stats(s)) if sessions.contains(&s.session) => stats.push(s),
                Ok(_) => {}
                Err(e) => bail!("{} of {} sessions reported their figures: {e}", stats.len(), sessions.len()),
            }
        }
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_is_utime_plus_stime_even_with_a_parenthesis_in_the_name() {
        let stat = "4242 (media (relay)) S 1 4242 4242 0 -1 4194560 100 0 0 0 123 45 0 0 20 0 3 0 1 2 3";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(168));
        assert_eq!(parse_stat_cpu_ticks("4242 (x) S 1"), None);
    }
}
