//! A real browser softphone for the integration tests: headless Chromium (Debian `chromium`) driven by
//! puppeteer-core, JsSIP 3.13 in the page (tests/js/browser.js), run inside a test's network namespace with
//! `ip netns exec` so that it reaches the SBC on 198.18.x.x.
//!
//! How the rig fits together:
//! - the page is `https://<origin>/`, served by the Node script through request interception (no server socket);
//!   name that origin in the SBC's `[sip.ws] allowed_origins`. An https page is a secure context, as
//!   `getUserMedia` and WebRTC need;
//! - the microphone is a WAV file (`--use-fake-device-for-media-stream`, `--use-file-for-fake-audio-capture`):
//!   write one with [`crate::baresip::write_tone`], check what a carrier received with [`crate::tone`];
//! - `wss:` is trusted by the SBC certificate's public key ([`spki_hash`], Chromium's
//!   `--ignore-certificate-errors-spki-list`): precise, no CA store to set up;
//! - [`Browser`] sends commands as JSON lines and reads JSON lines back (results and JsSIP events); every wait is
//!   bounded, the Node script itself gives up after [`BrowserOptions::limit`], and drop kills Node and
//!   Chromium's whole process group (puppeteer starts Chromium as a group leader), also when a test fails.
//!
//! Needs `make deps`: the `chromium` Debian package and `npm ci` in tests/js (puppeteer-core, jssip, esbuild).

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::Digest as _;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Where Debian's `chromium` puts the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// How long Chromium may take to start and load the page (a loaded 2-core machine takes about 7 s).
pub const START_LIMIT: Duration = Duration::from_secs(40);

/// The base64 SHA-256 of a PEM private key's SubjectPublicKeyInfo: what Chromium's
/// `--ignore-certificate-errors-spki-list` names to trust a certificate carrying that key.
pub fn spki_hash(key_pem: &str) -> Result<String> {
    use rcgen::PublicKeyData as _;
    let key = rcgen::KeyPair::from_pem(key_pem).context("parsing the certificate's key")?;
    Ok(base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(key.subject_public_key_info())))
}

/// How the browser starts.
#[derive(Debug, Clone)]
pub struct BrowserOptions {
    /// The page's origin (`https://name`), sent as `Origin` on the WebSocket upgrade.
    pub origin: String,
    /// The fake microphone (a PCM WAV file); `None`: Chromium's built-in beep.
    pub wav: Option<PathBuf>,
    /// SPKI hashes to trust ([`spki_hash`]).
    pub spki: Vec<String>,
    /// The whole run's bound: the Node script closes Chromium and exits after it.
    pub limit: Duration,
}

impl Default for BrowserOptions {
    fn default() -> Self {
        Self {
            origin: "https://phone.example.test".into(),
            wav: None,
            spki: Vec::new(),
            limit: Duration::from_secs(120),
        }
    }
}

/// A running headless Chromium with the test page loaded.
#[derive(Debug)]
pub struct Browser {
    node: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    /// Events read while waiting for something else, oldest first.
    events: VecDeque<Value>,
    chromium_pid: Option<i32>,
    next_id: u64,
    stderr: PathBuf,
    /// Chromium's version string, as it reports it.
    pub version: String,
    /// Chromium's user data dir (its command line names it: [`processes_naming`] finds what is left of it).
    pub profile: PathBuf,
}

/// The ids of the processes whose command line contains `needle` (from /proc).
pub fn processes_naming(needle: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains(needle))
        })
        .collect()
}

impl Browser {
    /// Starts Node + Chromium in `netns` (a name under /run/netns), files (profile, Node's stderr) under `dir`, and
    /// waits for the page to load. Fails with what to install when Chromium or the npm packages are missing.
    pub fn launch(netns: &str, dir: &Path, opts: &BrowserOptions) -> Result<Self> {
        let node = crate::require_tool("node", "nodejs");
        if !Path::new(CHROMIUM).is_file() {
            bail!("{CHROMIUM} is missing: install the Debian package `chromium` (`make deps` as root)");
        }
        let js = crate::repo_root().join("tests/js");
        for pkg in ["puppeteer-core", "jssip", "esbuild"] {
            if !js.join("node_modules").join(pkg).join("package.json").is_file() {
                bail!("npm package {pkg} is not installed in {}: run `make deps` (npm ci there)", js.display());
            }
        }
        std::fs::create_dir_all(dir)?;
        let stderr = dir.join("browser.err");
        let profile = dir.join("chromium-profile");
        let mut cmd = crate::netns::command(Some(netns), node);
        cmd.arg(js.join("browser.js"))
            .env("CHROMIUM", CHROMIUM)
            .env("ORIGIN", &opts.origin)
            .env("PROFILE", &profile)
            .env("LIMIT_S", opts.limit.as_secs().max(1).to_string())
            .env("SPKI", opts.spki.join(","))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr)?)
            // Its own process group, so that drop can end Node with everything it started.
            .process_group(0);
        if let Some(wav) = &opts.wav {
            cmd.env("WAV", wav);
        }
        let mut child = cmd.spawn().context("spawning node tests/js/browser.js")?;
        let stdin = child.stdin.take().context("node's stdin")?;
        let stdout = child.stdout.take().context("node's stdout")?;
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut b = Self {
            node: child,
            stdin,
            lines,
            events: VecDeque::new(),
            chromium_pid: None,
            next_id: 1,
            stderr,
            version: String::new(),
            profile,
        };
        let ready = b.event("ready", START_LIMIT).context("Chromium did not load the test page")?;
        b.chromium_pid = ready["chromium_pid"].as_i64().and_then(|p| i32::try_from(p).ok());
        b.version = ready["version"].as_str().unwrap_or_default().to_owned();
        Ok(b)
    }

    /// The next line from Node as JSON, within `left`; `Ok(None)` on timeout. Node's exit is an error that
    /// carries its stderr.
    fn next_line(&mut self, left: Duration) -> Result<Option<Value>> {
        match self.lines.recv_timeout(left) {
            Ok(line) => Ok(Some(
                serde_json::from_str(&line)
                    .with_context(|| format!("browser.js printed a line that is not JSON: {line}"))?,
            )),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => bail!("browser.js exited\n{}", self.stderr_tail()),
        }
    }

    /// Runs command `cmd` with `args` (a JSON object) in the page and returns its result within `timeout`; events
    /// that arrive meanwhile are kept for [`Browser::event`].
    pub fn request(&mut self, cmd: &str, args: Value, timeout: Duration) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = if args.is_object() { args } else { json!({}) };
        msg["id"] = json!(id);
        msg["cmd"] = json!(cmd);
        writeln!(self.stdin, "{msg}").with_context(|| format!("sending {cmd} to browser.js"))?;
        self.stdin.flush()?;
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let Some(v) = self.next_line(left)? else {
                bail!("no answer to {cmd} within {timeout:?}; events: {:?}", self.events);
            };
            if v.get("id").and_then(Value::as_u64) == Some(id) {
                if v["ok"] == json!(true) {
                    return Ok(v["result"].clone());
                }
                bail!("{cmd} failed in the page: {}", v["error"]);
            }
            self.events.push_back(v);
        }
    }

    /// The first event called `name` (already received or arriving within `timeout`); events before it stay queued.
    pub fn event(&mut self, name: &str, timeout: Duration) -> Result<Value> {
        if let Some(i) = self.events.iter().position(|e| e["event"] == name) {
            return Ok(self.events.remove(i).unwrap_or_default());
        }
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.next_line(left)? {
                Some(v) if v["event"] == name => return Ok(v),
                Some(v) => self.events.push_back(v),
                None => bail!("no {name} event within {timeout:?}; events: {:?}", self.events),
            }
        }
    }

    /// The first of the events `names` to arrive within `timeout` (queued ones first).
    pub fn first_event(&mut self, names: &[&str], timeout: Duration) -> Result<Value> {
        if let Some(i) = self.events.iter().position(|e| names.iter().any(|n| e["event"] == *n)) {
            return Ok(self.events.remove(i).unwrap_or_default());
        }
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.next_line(left)? {
                Some(v) if names.iter().any(|n| v["event"] == *n) => return Ok(v),
                Some(v) => self.events.push_back(v),
                None => bail!("none of {names:?} within {timeout:?}; events: {:?}", self.events),
            }
        }
    }

    /// Every event received so far and not yet taken.
    pub fn pending_events(&self) -> &VecDeque<Value> {
        &self.events
    }

    /// `getUserMedia({audio: true})`: the audio tracks the page got (kind, label, readyState).
    pub fn get_user_media(&mut self) -> Result<Value> {
        self.request("media", json!({}), Duration::from_secs(15))
    }

    /// Starts a JsSIP UA on WebSocket `url` as `uri` (REGISTERs at start when `register`) and waits for its
    /// socket to connect.
    pub fn connect(&mut self, url: &str, uri: &str, password: Option<&str>, register: bool) -> Result<()> {
        self.request("connect", json!({"url": url, "uri": uri, "password": password, "register": register}), WAIT)?;
        Ok(())
    }

    /// Sends OPTIONS to `target`; returns the final status (or `null` with JsSIP's cause).
    pub fn options(&mut self, target: &str) -> Result<Value> {
        self.request("options", json!({"target": target}), WAIT)
    }

    /// Sends REGISTER; watch for `registered` or `registrationFailed` with [`Browser::first_event`].
    pub fn register(&mut self) -> Result<()> {
        self.request("register", json!({}), WAIT).map(drop)
    }

    /// Calls `target` with the fake microphone (call [`Browser::get_user_media`] first); watch the call's events
    /// (`progress`, `confirmed`, `failed`, `ended`, each with `status`, `cause`, `originator`).
    pub fn call(&mut self, target: &str) -> Result<()> {
        self.request("call", json!({"target": target}), WAIT).map(drop)
    }

    /// Answers the incoming call (after a `newRTCSession` event with originator `remote`).
    pub fn answer(&mut self) -> Result<()> {
        self.request("answer", json!({}), WAIT).map(drop)
    }

    /// Ends the current call (CANCEL, reject or BYE as JsSIP sees fit).
    pub fn hangup(&mut self) -> Result<()> {
        self.request("hangup", json!({}), WAIT).map(drop)
    }

    /// The current call's `getStats()`: `{inbound: {packetsReceived, audioLevel, packetsLost}, outbound:
    /// {packetsSent}}`, `null` parts when there is no such stream.
    pub fn stats(&mut self) -> Result<Value> {
        self.request("stats", json!({}), WAIT)
    }

    /// The current call's local and remote SDP (`{local, remote}`).
    pub fn sdp(&mut self) -> Result<Value> {
        self.request("sdp", json!({}), WAIT)
    }

    /// Closes the browser (as a closed tab: the WebSocket goes without BYE) and waits for Node to exit.
    pub fn close(mut self) -> Result<()> {
        let _ = self.request("close", json!({}), WAIT);
        let end = Instant::now() + WAIT;
        while Instant::now() < end {
            if self.node.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("browser.js did not exit within {WAIT:?} of close")
    }

    /// The last lines Node (and Chromium through it) wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let lines: Vec<_> = text.lines().collect();
        format!("[browser.js stderr]\n{}", lines[lines.len().saturating_sub(30)..].join("\n"))
    }
}

/// The bound of one page command.
const WAIT: Duration = Duration::from_secs(20);

impl Drop for Browser {
    fn drop(&mut self) {
        // Chromium leads its own process group (puppeteer detaches it), Node leads the one we gave it: end both
        // groups by their ids, so that no renderer outlives a failed test.
        let groups = [self.chromium_pid, i32::try_from(self.node.id()).ok()];
        for pgid in groups.into_iter().flatten().filter(|p| *p > 1) {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{pgid}")]).status();
        }
        let _ = self.node.kill();
        let _ = self.node.wait();
    }
}
