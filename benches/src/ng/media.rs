//! One media window of `sbc-bench ng`: calls held through Kamailio with RTP both ways, and what moving their
//! packets cost the relay and the machine.
//!
//! The calls: SIPp (benches/sipp/uac.xml and uas.xml, the RTP endpoints 198.18.1.10:7078 and 198.18.2.10:7080 in
//! every SDP) places `--calls` calls through Kamailio, which has the relay anchor each; the relay's ports of every
//! call are read from the SDP each SIPp received. One `rtpfleet` per side sends one stream per call, from the
//! address its SDP named to that call's relay port, and counts the other side's streams by SSRC.
//!
//! The cost: over an idle window (calls up, no packets) and then the media window, the relay's utime + stime
//! (/proc/PID/stat, all threads), for XDP its programs' run time (`run_time_ns` with `kernel.bpf_stats_enabled`,
//! [`crate::xdp::prog_stats`]), the whole machine's busy and softirq ticks (/proc/stat), and the fleets' own CPU
//! time. The XDP program runs in the softirq of the CPU that receives, which /proc/PID/stat does not see; its run
//! time is counted from the kernel's statistics, and the machine's figure (busy time less the idle baseline
//! scaled to the window, less the generators) holds whatever else the kernel spent (redirects, veth transfers).

use super::Options;
use crate::calls::{self, UAC_RTP_PORT, UAS_RTP_PORT};
use crate::target::{self, Harness, Target};
use ::tests::netns::{Host, Process, Topology, CALLER, CARRIER_B, SBC_A, SBC_B};
use ::tests::procfs::cpu_ticks;
use ::tests::rtp::Rtpfleet;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// `USER_HZ`: the unit of /proc/PID/stat and /proc/stat.
const TICKS_PER_SEC: f64 = 100.0;
/// The caller's and the callee's first SSRC (call i: base + i).
const SSRC_CALLER: u32 = 0xA100_0000;
const SSRC_CALLEE: u32 = 0xB100_0000;
/// A fleet exits this long after its last packet arrived, once it has sent everything.
const FLEET_IDLE: Duration = Duration::from_secs(1);
/// A window passes with less than this share of the packets sent lost (both directions), percent.
pub const MAX_LOSS_PCT: f64 = 0.1;
/// A fleet that fell this far behind its schedule was the limit of the window, not the relay.
pub const MAX_SEND_LAG_MS: f64 = 100.0;
/// How often the fleets are polled (and their CPU time read) while they run.
const POLL: Duration = Duration::from_millis(50);

/// The figures of one target's media window in one run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Measurement {
    /// 1-based.
    pub run: u32,
    /// The target's label.
    pub target: String,
    /// Calls up on both sides (each with one stream each way).
    pub calls_up: u64,
    /// Packets the fleets sent, caller → callee and back.
    pub a_to_b_sent: u64,
    pub b_to_a_sent: u64,
    /// Distinct intact packets the other side received.
    pub a_to_b_received: u64,
    pub b_to_a_received: u64,
    /// Packets the relay forwarded: what arrived, both directions.
    pub forwarded: u64,
    /// `1 - forwarded / sent`, percent.
    pub loss_pct: f64,
    /// How far a fleet fell behind its schedule at worst, ms.
    pub max_send_lag_ms: f64,
    /// The media window (targets written to the fleets' exit), seconds.
    pub window_secs: f64,
    /// The idle window, seconds.
    pub idle_secs: f64,
    /// The relay process's utime + stime over the media window, seconds.
    pub relay_process_s: Option<f64>,
    /// Over the idle window, scaled to the media window's length, seconds.
    pub relay_idle_s: Option<f64>,
    /// The run time of the relay's XDP programs over the media window, seconds (kamailio-ng-xdp).
    pub prog_run_s: Option<f64>,
    /// Program runs (packets the programs saw).
    pub prog_run_cnt: Option<u64>,
    /// The relay's own CPU: `relay_process_s + prog_run_s`.
    pub relay_cpu_s: Option<f64>,
    /// `relay_cpu_s / (forwarded / 1e6)`: **the figure quoted** for the relay's cost.
    pub relay_cpu_s_per_mpkt: Option<f64>,
    /// The whole machine's busy time (user, nice, system, irq, softirq) over the media window, seconds.
    pub machine_busy_s: Option<f64>,
    /// The same over the idle window, scaled to the media window's length.
    pub machine_idle_busy_s: Option<f64>,
    /// The whole machine's softirq time over the media window, and over the idle window scaled, seconds.
    pub softirq_s: Option<f64>,
    pub idle_softirq_s: Option<f64>,
    /// The fleets' utime + stime over the media window (the generators), seconds.
    pub generator_s: Option<f64>,
    /// `machine_busy_s - machine_idle_busy_s - generator_s`: what the media cost the machine besides its generators
    /// (relay, XDP, the kernel's forwarding and socket work, Kamailio's share if any).
    pub machine_net_s: Option<f64>,
    /// `machine_net_s / (forwarded / 1e6)`: the machine's figure (noisy on a shared machine: other load lands in it).
    pub machine_net_s_per_mpkt: Option<f64>,
    /// `(softirq_s - idle_softirq_s) / (forwarded / 1e6)`.
    pub softirq_net_s_per_mpkt: Option<f64>,
    /// A fleet fell more than [`MAX_SEND_LAG_MS`] behind: the generator limited the window.
    pub generator_limited: bool,
    /// Why the window could not be measured, if it could not.
    pub error: Option<String>,
    /// Measured, every call up, loss < [`MAX_LOSS_PCT`] %, not generator-limited.
    pub pass: bool,
}

/// Measures `target`'s media window of run `run`; a failure is recorded in the measurement.
pub fn measure(harness: &Harness, opts: &Options, target: &Target, label: &str, run: u32) -> Measurement {
    let mut m = Measurement { run, target: label.to_owned(), ..Measurement::default() };
    if let Err(e) = window(harness, opts, target, &mut m) {
        m.error = Some(format!("{e:#}"));
    }
    m.pass = m.error.is_none()
        && m.calls_up == u64::from(opts.calls)
        && m.forwarded > 0
        && m.loss_pct < MAX_LOSS_PCT
        && !m.generator_limited;
    m
}

/// One line of progress.
pub fn progress(runs: u32, m: &Measurement) -> String {
    let f = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
    let verdict = match (&m.error, m.pass) {
        (Some(e), _) => format!("error: {e}"),
        (None, true) => "pass".to_owned(),
        (None, false) if m.generator_limited => "generator-limited".to_owned(),
        (None, false) => "FAIL".to_owned(),
    };
    format!(
        "[run {}/{runs}] {:<18} media: {} calls, {} packets forwarded ({:.3} % lost), relay {} s/Mpkt \
         (process {} s, XDP programs {} s), machine net {} s/Mpkt, softirq net {} s/Mpkt, send lag {:.0} ms -> {verdict}",
        m.run,
        m.target,
        m.calls_up,
        m.forwarded,
        m.loss_pct,
        f(m.relay_cpu_s_per_mpkt),
        f(m.relay_process_s),
        f(m.prog_run_s),
        f(m.machine_net_s_per_mpkt),
        f(m.softirq_net_s_per_mpkt),
        m.max_send_lag_ms,
    )
}

fn window(harness: &Harness, opts: &Options, target: &Target, m: &mut Measurement) -> Result<()> {
    let Some(topo) = &harness.topo else { bail!("{target} needs the netns topology") };
    let core = opts.pinned.then_some(crate::cps::SBC_CORE);
    let gen_core = opts.pinned.then_some(crate::cps::SIPP_CORE);
    let rig = harness.start_kamailio(target, &format!("bench-ng-media-run{}", m.run), core)?;
    let relay = rig.relay_pid();
    let xdp = *target == Target::KamailioNgXdp;
    let _bpf_stats =
        if xdp { Some(crate::xdp::BpfStats::enable().context("enabling BPF run-time statistics")?) } else { None };
    let path = harness.path(target);
    let ramp = Duration::from_secs_f64(f64::from(opts.calls) / f64::from(opts.call_rate.max(1))) * 5 / 4
        + Duration::from_secs(5);
    let hold = ramp
        + Duration::from_secs(u64::from(opts.idle_secs + opts.media_secs))
        + FLEET_IDLE * 2
        + Duration::from_secs(5);
    let limit = hold * 2 + Duration::from_secs(20);
    let mut uas = calls::uas(&path, opts.calls * 2 + 100, limit + Duration::from_secs(5), gen_core)
        .trace_messages(true)
        .spawn()
        .context("starting the callee (SIPp UAS)")?;
    uas.wait_listening(path.uas.ns.as_deref(), path.uas.port, Duration::from_secs(5))?;
    let uac = calls::uac(&path, opts.calls, opts.call_rate, hold, limit, gen_core)
        .trace_messages(true)
        .spawn()
        .context("starting the caller (SIPp UAC)")?;
    let dirs = [uac.dir().to_owned(), uas.dir().to_owned()];
    // The relay's ports of every call: side a in the 200s the caller got, side b in the INVITEs the callee got.
    let deadline = Instant::now() + ramp;
    let (to_b, to_a) = loop {
        let a = relay_ports(&uac.messages(), SBC_A);
        let b = relay_ports(&uas.messages(), SBC_B);
        if a.len() >= opts.calls as usize && b.len() >= opts.calls as usize {
            break (a, b);
        }
        if Instant::now() > deadline {
            bail!(
                "after {ramp:?}, {} of {} calls up on the caller's side, {} on the callee's (SIPp files in {} and {})",
                a.len(),
                opts.calls,
                b.len(),
                dirs[0].display(),
                dirs[1].display()
            );
        }
        crate::media::check_stop()?;
        std::thread::sleep(Duration::from_millis(200));
    };
    m.calls_up = opts.calls.into();
    let n = opts.calls as usize;
    let to_callee: Vec<SocketAddr> = to_b[..n].iter().map(|&p| crate::media::sock(SBC_A, p)).collect();
    let to_caller: Vec<SocketAddr> = to_a[..n].iter().map(|&p| crate::media::sock(SBC_B, p)).collect();

    // The idle window: the calls are up, nothing is sent.
    let idle_started = Instant::now();
    let before = Snapshot::take(relay, xdp);
    std::thread::sleep(Duration::from_secs(opts.idle_secs.into()));
    let idle = Snapshot::take(relay, xdp).since(&before, idle_started.elapsed());

    let scratch = topo.dir().join(format!("ng-media-run{}-{}", m.run, m.target));
    std::fs::create_dir_all(&scratch)?;
    let mut caller = Fleet::start(topo, opts, &scratch, Host::A, "caller", CALLER, UAC_RTP_PORT, gen_core)?;
    let mut callee = Fleet::start(topo, opts, &scratch, Host::B, "callee", CARRIER_B, UAS_RTP_PORT, gen_core)?;
    let started = Instant::now();
    let before = Snapshot::take(relay, xdp);
    caller.go(&to_callee)?;
    callee.go(&to_caller)?;
    let fleet_limit = Duration::from_secs(u64::from(opts.media_secs) + 30);
    while !(caller.exited()? && callee.exited()?) {
        if started.elapsed() > fleet_limit {
            bail!("the fleets still run {fleet_limit:?} after the media started");
        }
        crate::media::check_stop()?;
        std::thread::sleep(POLL);
    }
    let media = Snapshot::take(relay, xdp).since(&before, started.elapsed());
    let (a, b) = (caller.report()?, callee.report()?);
    m.a_to_b_sent = num(&a, "sent");
    m.b_to_a_sent = num(&b, "sent");
    m.a_to_b_received = num(&b, "received");
    m.b_to_a_received = num(&a, "received");
    m.forwarded = m.a_to_b_received + m.b_to_a_received;
    let sent = m.a_to_b_sent + m.b_to_a_sent;
    m.loss_pct = if sent == 0 { 100.0 } else { 100.0 * sent.saturating_sub(m.forwarded) as f64 / sent as f64 };
    m.max_send_lag_ms = [&a, &b].iter().map(|r| r["max_send_lag_ms"].as_f64().unwrap_or(0.0)).fold(0.0, f64::max);
    m.generator_limited = m.max_send_lag_ms > MAX_SEND_LAG_MS;
    m.window_secs = media.secs;
    m.idle_secs = idle.secs;
    let scale = media.secs / idle.secs.max(1e-3);
    m.relay_process_s = media.relay_s;
    m.relay_idle_s = idle.relay_s.map(|s| s * scale);
    m.prog_run_s = media.prog_s;
    m.prog_run_cnt = media.prog_cnt;
    m.relay_cpu_s = if xdp { media.relay_s.zip(media.prog_s).map(|(r, p)| r + p) } else { media.relay_s };
    m.machine_busy_s = Some(media.busy_s);
    m.machine_idle_busy_s = Some(idle.busy_s * scale);
    m.softirq_s = Some(media.softirq_s);
    m.idle_softirq_s = Some(idle.softirq_s * scale);
    m.generator_s = caller.cpu_s().zip(callee.cpu_s()).map(|(a, b)| a + b);
    m.machine_net_s = m.generator_s.map(|g| media.busy_s - idle.busy_s * scale - g);
    let per_mpkt = |s: f64| (m.forwarded > 0).then(|| s / (m.forwarded as f64 / 1e6));
    m.relay_cpu_s_per_mpkt = m.relay_cpu_s.and_then(per_mpkt);
    m.machine_net_s_per_mpkt = m.machine_net_s.and_then(per_mpkt);
    m.softirq_net_s_per_mpkt = per_mpkt(media.softirq_s - idle.softirq_s * scale);

    // The calls end with the caller's BYEs (bounded by SIPp's -timeout and the helper's kill).
    let run = uac.wait().context("waiting for the caller (SIPp UAC)")?;
    drop(uas);
    drop(rig);
    if run.count("SuccessfulCall(C)") != u64::from(opts.calls) {
        eprintln!(
            "note: {} of {} media calls completed with a BYE ({})",
            run.count("SuccessfulCall(C)"),
            opts.calls,
            m.target
        );
    }
    for dir in dirs.iter().chain([&scratch]) {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(())
}

/// The relay's ports (one per call) in the SDPs of a SIPp message log naming `relay`. A relay that added a
/// media-level `c=` line would make [`::tests::sipp::sdp_ports`] read the next message's port too, which may be
/// SIPp's own: those are left out.
fn relay_ports(log: &str, relay: std::net::Ipv4Addr) -> Vec<u16> {
    ::tests::sipp::distinct_sdp_ports(log, &relay.to_string())
        .into_iter()
        .filter(|&p| p != UAC_RTP_PORT && p != UAS_RTP_PORT)
        .collect()
}

fn num(v: &serde_json::Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

/// CPU counters at one instant.
#[derive(Debug, Clone, Copy)]
struct Snapshot {
    relay: Option<u64>,
    prog: Option<crate::xdp::ProgStats>,
    busy: u64,
    softirq: u64,
}

/// CPU used between two snapshots, seconds.
#[derive(Debug, Clone, Copy)]
struct Used {
    secs: f64,
    relay_s: Option<f64>,
    prog_s: Option<f64>,
    prog_cnt: Option<u64>,
    busy_s: f64,
    softirq_s: f64,
}

impl Snapshot {
    fn take(relay: u32, xdp: bool) -> Self {
        let (busy, softirq) = machine_ticks().unwrap_or((0, 0));
        Self { relay: cpu_ticks(relay), prog: xdp.then(|| crate::xdp::prog_stats(relay)).flatten(), busy, softirq }
    }

    fn since(&self, before: &Snapshot, elapsed: Duration) -> Used {
        let ticks = |a: u64, b: u64| b.saturating_sub(a) as f64 / TICKS_PER_SEC;
        let prog = before.prog.zip(self.prog);
        Used {
            secs: elapsed.as_secs_f64(),
            relay_s: before.relay.zip(self.relay).map(|(a, b)| ticks(a, b)),
            prog_s: prog.map(|(a, b)| b.run_time_ns.saturating_sub(a.run_time_ns) as f64 / 1e9),
            prog_cnt: prog.map(|(a, b)| b.run_cnt.saturating_sub(a.run_cnt)),
            busy_s: ticks(before.busy, self.busy),
            softirq_s: ticks(before.softirq, self.softirq),
        }
    }
}

/// The whole machine's busy ticks (user, nice, system, irq, softirq) and softirq ticks, from /proc/stat.
fn machine_ticks() -> Option<(u64, u64)> {
    parse_machine_ticks(&std::fs::read_to_string("/proc/stat").ok()?)
}

fn parse_machine_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.split_whitespace().next() == Some("cpu"))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).map(|x| x.parse().ok()).collect::<Option<_>>()?;
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    Some((at(0) + at(1) + at(2) + at(5) + at(6), at(6)))
}

/// One side's `rtpfleet`: bound first, then given its targets; its CPU time read while it runs (the last reading
/// before it exits is its total, up to one poll).
struct Fleet {
    process: Process,
    targets: std::path::PathBuf,
    report: std::path::PathBuf,
    last_ticks: Option<u64>,
    first_ticks: Option<u64>,
    done: bool,
}

impl Fleet {
    #[allow(clippy::too_many_arguments)]
    fn start(
        topo: &Topology,
        opts: &Options,
        scratch: &Path,
        host: Host,
        name: &str,
        ip: std::net::Ipv4Addr,
        port: u16,
        core: Option<usize>,
    ) -> Result<Self> {
        let targets = scratch.join(format!("{name}.targets"));
        let report = scratch.join(format!("{name}.json"));
        let (ssrc, expect) = if host == Host::A { (SSRC_CALLER, SSRC_CALLEE) } else { (SSRC_CALLEE, SSRC_CALLER) };
        let args = Rtpfleet::new(
            crate::media::sock(ip, port),
            &targets,
            opts.calls as usize,
            opts.pps,
            opts.media_secs.into(),
            ssrc,
            &report,
        )
        .payload(opts.payload.into())
        .expect_ssrc_base(expect)
        .idle_exit(FLEET_IDLE)
        .duration(Duration::from_secs(u64::from(opts.media_secs) + 20))
        .args();
        let mut process = topo.spawn(host, &format!("ng-fleet-{name}"), &opts.rtpfleet, &args)?;
        if let Some(core) = core {
            target::pin(process.id(), core)?;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while topo.exec(host, "ss", &["-Hlun", "sport", "=", &format!(":{port}")])?.trim().is_empty() {
            if let Some(status) = process.try_wait()? {
                bail!("rtpfleet {name} ended ({status}) before it bound: {}", process.output_tail());
            }
            if Instant::now() > deadline {
                bail!("rtpfleet {name} has not bound {ip}:{port} after 5 s: {}", process.output_tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self { process, targets, report, last_ticks: None, first_ticks: None, done: false })
    }

    /// Starts the streams: one per address, in order.
    fn go(&mut self, to: &[SocketAddr]) -> Result<()> {
        self.first_ticks = cpu_ticks(self.process.id());
        let text: String = to.iter().map(|a| format!("{a}\n")).collect();
        ::tests::write_atomically(&self.targets, &text)
    }

    /// Whether it has exited (reading its CPU time until then: a zombie still shows its times).
    fn exited(&mut self) -> Result<bool> {
        if self.done {
            return Ok(true);
        }
        if let Some(t) = cpu_ticks(self.process.id()) {
            self.last_ticks = Some(t);
        }
        if zombie(self.process.id()) || self.process.try_wait()?.is_some() {
            self.process.wait_timeout(Duration::from_secs(5)).context("rtpfleet")?;
            self.done = true;
        }
        Ok(self.done)
    }

    fn cpu_s(&self) -> Option<f64> {
        self.first_ticks.zip(self.last_ticks).map(|(a, b)| b.saturating_sub(a) as f64 / TICKS_PER_SEC)
    }

    fn report(&mut self) -> Result<serde_json::Value> {
        let text = std::fs::read_to_string(&self.report)
            .with_context(|| format!("reading {}: {}", self.report.display(), self.process.output_tail()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", self.report.display()))
    }
}

/// Whether process `pid` has exited and not yet been reaped.
fn zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_ticks_are_busy_and_softirq_of_the_cpu_line() {
        let stat = "cpu  100 5 40 900 7 3 11 2 0 0\ncpu0 50 2 20 450 3 1 6 1 0 0\n";
        assert_eq!(parse_machine_ticks(stat), Some((100 + 5 + 40 + 3 + 11, 11)));
        assert_eq!(parse_machine_ticks("intr 1\n"), None);
    }

    #[test]
    fn a_window_passes_only_without_loss_and_generator_limit() {
        let m = Measurement { calls_up: 10, forwarded: 1000, loss_pct: 0.0, ..Measurement::default() };
        assert!(!m.generator_limited && m.error.is_none());
        let line = progress(3, &Measurement { pass: true, ..m.clone() });
        assert!(line.contains("1000 packets forwarded") && line.ends_with("pass"), "{line}");
        let lagging = Measurement { generator_limited: true, ..m };
        assert!(progress(3, &lagging).ends_with("generator-limited"));
    }
}
