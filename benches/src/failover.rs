//! `failover --local`: fire drills on a hot-standby pair. Each drill places one call with RTP both ways through
//! the pair's service addresses, hands the active role over in the middle of it (a demotion through the admin API,
//! or `kill -9` of the active box, which then restarts as standby), and measures what the call noticed: the
//! media gap each way (the longest interval between consecutive packets at the receivers, from rtpgen's report),
//! how long the takeover took, whether the call survived to its BYE on both sides, and whether it got exactly one
//! CDR across both boxes.
//!
//! `--kind setup` catches calls while they are being set up instead ([`setup`]).
//!
//! One pair topology ([`Topology::pair`]) serves the whole invocation; every wait is bounded.

pub mod setup;

use crate::stats::median;
use ::tests::netns::{addr, http_request, pair_sbc_config, Host, Topology, CALLER, CARRIER_B, VIP_A, VIP_B};
use ::tests::rtp::{read_report, rtpgen_binary, Report, Rtpgen};
use ::tests::sipp::{sdp_ports, Sipp};
use ::tests::{write_atomically, Sbc};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How the active role is taken away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DrillKind {
    /// `POST /ha/demote` on the active (a fire drill).
    Demote,
    /// `kill -9` of the active box (it restarts as standby before the next drill).
    Kill,
    /// `kill -9` of the active box while calls are being set up (trying, ringing, early media, waiting for a
    /// PRACK): how many of them complete on the other box ([`setup`]).
    Setup,
}

/// What one drill measured.
#[derive(Debug, Clone, Serialize)]
pub struct Drill {
    /// 1-based.
    pub index: u32,
    /// The box that was active before the drill (1 or 2).
    pub from: u8,
    /// From the drill to the other box reporting active.
    pub takeover_ms: f64,
    /// Longest interval between packets at A and at B.
    pub gap_a_ms: f64,
    /// See `gap_a_ms`.
    pub gap_b_ms: f64,
    /// Every packet up to the last arrived (media resumed) and both SIPp sides completed the call.
    pub survived: bool,
    /// CDRs of this call across both boxes (1 is right).
    pub cdrs: usize,
    /// `--xdp native`: packets the new active's relay handled in user space from the drill to the end of the
    /// call, per flow (the bound: at most 2; the rest is forwarded by the XDP program).
    pub user_packets_per_flow: Option<f64>,
    /// `--xdp native`: packets the new active's XDP program forwarded over the same time.
    pub kernel_packets: Option<f64>,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

/// Options of a run.
#[derive(Debug, Clone)]
pub struct Options {
    /// How many drills.
    pub drills: u32,
    /// Demote or kill.
    pub kind: DrillKind,
    /// `--kind setup`: calls caught in setup per drill, split among the setup states.
    pub setup_calls: u32,
    /// `--xdp native`: both boxes' relays forward in the kernel (native XDP on the pair's veths).
    pub xdp: bool,
    /// `--dead-after`: the pair's `dead_after` (heartbeats at a third of it); default the configs' 300 ms.
    pub dead_after: Option<Duration>,
}

const RTP_PORT: u16 = 7078;
const PPS: u32 = 50;
/// The call lasts HOLD; the drill comes DRILL_AT into it; media runs for COUNT packets at PPS.
const HOLD: Duration = Duration::from_secs(7);
const DRILL_AT: Duration = Duration::from_secs(3);
const COUNT: u64 = 300;
const LIMIT: Duration = Duration::from_secs(30);

fn api() -> std::net::SocketAddr {
    addr([127, 0, 0, 1].into(), 8080)
}

struct Pair {
    topo: Topology,
    boxes: [Option<Sbc>; 2],
    cdr: [PathBuf; 2],
    /// Appended to each box's config (keys of `[ha]`, then tables of its own).
    extra: String,
    /// `[media] xdp`.
    xdp: &'static str,
    /// `[ha] heartbeat` and `dead_after`, if not the configs' own.
    detection: Option<(Duration, Duration)>,
    /// `--xdp native`: the pass programs on the switch's ends of the veths (native XDP needs one on each end).
    _xdp_helpers: Vec<::tests::netns::Process>,
}

impl Pair {
    /// The pair topology with both boxes started, one active and the other standby.
    fn up(extra: String) -> Result<Self> {
        Self::up_with(extra, false, None)
    }

    /// [`Pair::up`] with native XDP on both boxes when `xdp`, and `dead_after` (heartbeats at a third of it).
    fn up_with(extra: String, xdp: bool, dead_after: Option<Duration>) -> Result<Self> {
        let topo = Topology::pair().context("building the pair topology (needs root)")?;
        let dir = topo.dir().to_owned();
        let cdr = [dir.join("cdr-sbc1.jsonl"), dir.join("cdr-sbc2.jsonl")];
        let helpers = if xdp {
            let relay = crate::binaries::binary(crate::binaries::release_dir(), "media-relay")?;
            topo.prepare_xdp_pair(&relay).context("native XDP on the pair topology")?
        } else {
            Vec::new()
        };
        let xdp = if xdp { "native" } else { "off" };
        let detection = dead_after.map(|d| (d / 3, d));
        let mut pair = Pair { topo, boxes: [None, None], cdr, extra, xdp, detection, _xdp_helpers: helpers };
        pair.start(1)?;
        pair.start(2)?;
        pair.wait("a box active and the other standby", Duration::from_secs(10), |p| {
            let (r1, r2) = (p.role(1), p.role(2));
            (r1 == "active" && r2 == "standby") || (r1 == "standby" && r2 == "active")
        })?;
        Ok(pair)
    }

    fn start(&mut self, node: u8) -> Result<()> {
        let priority = if node == 1 { 200 } else { 100 };
        let mut config = pair_sbc_config(node, priority, &self.cdr[usize::from(node - 1)])
            .replace("xdp = \"off\"", &format!("xdp = \"{}\"", self.xdp));
        if let Some((heartbeat, dead_after)) = self.detection {
            config = config
                .replace("heartbeat = \"100ms\"", &format!("heartbeat = \"{}ms\"", heartbeat.as_millis()))
                .replace("dead_after = \"300ms\"", &format!("dead_after = \"{}ms\"", dead_after.as_millis()));
        }
        config += &self.extra;
        let sbc = Sbc::start_in(
            &self.topo.ns(Host::pair_box(node)),
            &format!("bench-ha-sbc{node}"),
            &config,
            addr(VIP_A, 5060),
            api(),
        )
        .with_context(|| format!("starting sbc{node}"))?;
        self.boxes[usize::from(node - 1)] = Some(sbc);
        Ok(())
    }

    fn role(&self, node: u8) -> String {
        let Some(sbc) = &self.boxes[usize::from(node - 1)] else { return "down".into() };
        sbc.http_get("/ha")
            .ok()
            .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
            .and_then(|v| v["role"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "unknown".into())
    }

    fn field(&self, node: u8, key: &str) -> u64 {
        let Some(sbc) = &self.boxes[usize::from(node - 1)] else { return 0 };
        sbc.http_get("/ha")
            .ok()
            .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
            .and_then(|v| v[key].as_u64())
            .unwrap_or(0)
    }

    fn active(&self) -> Option<u8> {
        [1, 2].into_iter().find(|n| self.role(*n) == "active")
    }

    fn wait(&self, what: &str, timeout: Duration, ok: impl Fn(&Self) -> bool) -> Result<Duration> {
        let start = Instant::now();
        while !ok(self) {
            if start.elapsed() > timeout {
                bail!("{what}: not after {timeout:?} (roles: sbc1 {}, sbc2 {})", self.role(1), self.role(2));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(start.elapsed())
    }

    /// `kill -9` of box `node`.
    fn kill(&self, node: u8) -> Result<()> {
        let pid = self.boxes[usize::from(node - 1)].as_ref().map(Sbc::id).context("no process")?;
        let status = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status()?;
        if !status.success() {
            bail!("kill -KILL {pid}: {status}");
        }
        Ok(())
    }

    /// A metric of box `node` (0 when it cannot be read).
    fn metric(&self, node: u8, name: &str) -> f64 {
        self.boxes[usize::from(node - 1)].as_ref().and_then(|s| s.metric(name).ok()).unwrap_or(0.0)
    }

    fn cdrs_with(&self, call_id_part: &str) -> usize {
        self.cdr
            .iter()
            .map(|p| {
                std::fs::read_to_string(p).unwrap_or_default().lines().filter(|l| l.contains(call_id_part)).count()
            })
            .sum()
    }
}

/// Runs the drills; the namespaces and processes are gone when this returns, also on error.
pub fn run(opts: &Options) -> Result<Vec<Drill>> {
    if opts.kind == DrillKind::Setup {
        bail!("--kind setup drills are run by failover::setup::run");
    }
    let mut pair = Pair::up_with(String::new(), opts.xdp, opts.dead_after)?;
    let dir = pair.topo.dir().to_owned();
    let rtpgen = rtpgen_binary()?;
    let mut drills = Vec::new();
    for i in 1..=opts.drills {
        let d = drill(&mut pair, &rtpgen, i, opts, &dir).unwrap_or_else(|e| Drill {
            index: i,
            from: 0,
            takeover_ms: f64::NAN,
            gap_a_ms: f64::NAN,
            gap_b_ms: f64::NAN,
            survived: false,
            cdrs: 0,
            user_packets_per_flow: None,
            kernel_packets: None,
            error: Some(format!("{e:#}")),
        });
        eprintln!(
            "[drill {i}/{}] {:?} of sbc{}: takeover {:.0} ms, media gap A {:.0} ms / B {:.0} ms, survived {}, CDRs {}{}{}",
            opts.drills,
            opts.kind,
            d.from,
            d.takeover_ms,
            d.gap_a_ms,
            d.gap_b_ms,
            d.survived,
            d.cdrs,
            d.user_packets_per_flow
                .map(|u| format!(", new active: {u:.1} packets per flow in user space, {:.0} in XDP", d.kernel_packets.unwrap_or(0.0)))
                .unwrap_or_default(),
            d.error.as_deref().map(|e| format!(", error: {e}")).unwrap_or_default()
        );
        drills.push(d);
    }
    Ok(drills)
}

fn drill(pair: &mut Pair, rtpgen: &Path, i: u32, opts: &Options, dir: &Path) -> Result<Drill> {
    let kind = opts.kind;
    let from = pair.active().context("no active box before the drill")?;
    let other = 3 - from;
    // The standby must hold the calls before it can take them: wait until it has resynced.
    pair.wait("the standby connected", Duration::from_secs(10), |p| p.role(other) == "standby")?;
    let ns_b = pair.topo.ns(Host::B);
    let mut uas = Sipp::new(&crate::target::scenario("uas.xml"))
        .netns(&ns_b)
        .local_ip(CARRIER_B)
        .local_port(5060)
        .key("rtp_ip", &CARRIER_B.to_string())
        .key("rtp_port", &RTP_PORT.to_string())
        .limit(LIMIT)
        .trace_messages(true)
        .spawn()?;
    uas.wait_listening(Some(&ns_b), 5060, Duration::from_secs(5))?;
    let (a_target, b_target) = (dir.join(format!("a{i}.target")), dir.join(format!("b{i}.target")));
    let (a_report, b_report) = (dir.join(format!("a{i}.json")), dir.join(format!("b{i}.json")));
    let stream = |bind, to: &Path, ssrc, expect, report: &Path| {
        Rtpgen::new(bind)
            .to_file(to)
            .count(COUNT)
            .pps(PPS)
            .ssrc(ssrc)
            .expect_ssrc(expect)
            .duration(LIMIT)
            .idle_exit(Duration::from_secs(2))
            .report(report)
            .args()
    };
    let mut rtp_b = pair.topo.spawn(
        Host::B,
        &format!("rtp-b{i}"),
        rtpgen,
        &stream(addr(CARRIER_B, RTP_PORT), &b_target, 0xB000 + i, 0xA000 + i, &b_report),
    )?;
    let mut rtp_a = pair.topo.spawn(
        Host::A,
        &format!("rtp-a{i}"),
        rtpgen,
        &stream(addr(CALLER, RTP_PORT), &a_target, 0xA000 + i, 0xB000 + i, &a_report),
    )?;
    let uac = Sipp::new(&crate::target::scenario("uac.xml"))
        .netns(&pair.topo.ns(Host::A))
        .local_ip(CALLER)
        .local_port(5060)
        .target(addr(VIP_A, 5060))
        .service(crate::calls::DIALLED)
        .key("rtp_ip", &CALLER.to_string())
        .key("rtp_port", &RTP_PORT.to_string())
        .pause(HOLD)
        .limit(LIMIT)
        .trace_messages(true)
        .spawn()?;
    let started = Instant::now();
    let (mut pa, mut pb) = (None, None);
    while pa.is_none() || pb.is_none() {
        if started.elapsed() > Duration::from_secs(10) {
            bail!("no relay ports in the SIPp logs after 10 s");
        }
        pa = pa.or_else(|| sdp_ports(&uac.messages(), &VIP_A.to_string()).first().copied());
        pb = pb.or_else(|| sdp_ports(&uas.messages(), &VIP_B.to_string()).first().copied());
        std::thread::sleep(Duration::from_millis(20));
    }
    write_atomically(&b_target, &format!("{VIP_B}:{}\n", pb.unwrap_or_default()))?;
    write_atomically(&a_target, &format!("{VIP_A}:{}\n", pa.unwrap_or_default()))?;
    pair.wait("the call replicated", Duration::from_secs(5), |p| p.field(other, "foreign_calls") >= 1)?;
    std::thread::sleep(DRILL_AT.saturating_sub(started.elapsed()));

    // The relay counters of the box about to take over (cumulative over earlier drills, where it may have been
    // active): what it does from here on is this drill's.
    const USER: &str = "sbc_media_packets_received_total";
    const KERNEL: &str = "sbc_media_kernel_packets_total";
    let before = (pair.metric(other, USER), pair.metric(other, KERNEL));
    let at = Instant::now();
    match kind {
        DrillKind::Demote => {
            let (status, body) = http_request(&pair.topo.ns(Host::pair_box(from)), "POST", api(), "/ha/demote")?;
            if !(200..300).contains(&status) {
                bail!("POST /ha/demote: {status} {body}");
            }
        }
        DrillKind::Kill | DrillKind::Setup => pair.kill(from)?,
    }
    pair.wait("the other box active", Duration::from_secs(5), |p| p.role(other) == "active")?;
    let takeover = at.elapsed();
    if kind != DrillKind::Demote {
        pair.boxes[usize::from(from - 1)] = None;
        pair.start(from)?;
    }

    for p in [&mut rtp_a, &mut rtp_b] {
        p.wait_timeout(LIMIT)?;
    }
    let (user_packets_per_flow, kernel_packets) = if opts.xdp {
        // The relay's counters reach the metrics every second.
        std::thread::sleep(Duration::from_millis(1500));
        let user = pair.metric(other, USER) - before.0;
        (Some(user / 2.0), Some(pair.metric(other, KERNEL) - before.1))
    } else {
        (None, None)
    };
    let (ra, rb): (Report, Report) = (read_report(&a_report)?, read_report(&b_report)?);
    let call_id = uac.messages().lines().find_map(|l| l.trim().strip_prefix("Call-ID:").map(|v| v.trim().to_owned()));
    let sipp_ok = uac.wait().and_then(|r| r.assert_all_successful(1)).is_ok()
        && uas.wait().and_then(|r| r.assert_all_successful(1)).is_ok();
    let resumed = |r: &Report| r.last_index == Some(COUNT - 1) && r.corrupt == 0;
    // The CDRs that name this call's leg-A Call-ID (SIPp's, unique per drill), across both boxes.
    let cdrs = match call_id {
        Some(id) => {
            let needle = format!("\"a_call_id\":\"{id}\"");
            let until = Instant::now() + Duration::from_secs(3);
            let mut n = pair.cdrs_with(&needle);
            while n == 0 && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(100));
                n = pair.cdrs_with(&needle);
            }
            n
        }
        None => 0,
    };
    Ok(Drill {
        index: i,
        from,
        takeover_ms: takeover.as_secs_f64() * 1000.0,
        gap_a_ms: ra.max_gap_ms,
        gap_b_ms: rb.max_gap_ms,
        survived: sipp_ok && resumed(&ra) && resumed(&rb),
        cdrs,
        user_packets_per_flow,
        kernel_packets,
        error: None,
    })
}

/// The summary of all drills.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Drills run.
    pub drills: usize,
    /// Median over drills of the larger of the two directions' gaps.
    pub gap_p50_ms: f64,
    /// The largest gap seen.
    pub gap_max_ms: f64,
    /// Median takeover time.
    pub takeover_p50_ms: f64,
    /// Calls that survived.
    pub survived: usize,
    /// Calls without a CDR, and calls with more than one.
    pub cdrs_lost: usize,
    /// See `cdrs_lost`.
    pub cdrs_doubled: usize,
    /// `--xdp native`: the most packets per flow the new active handled in user space, over all drills.
    pub user_packets_per_flow_max: Option<f64>,
}

/// Sums the drills up.
pub fn summarize(drills: &[Drill]) -> Summary {
    let mut gaps: Vec<f64> = drills.iter().map(|d| d.gap_a_ms.max(d.gap_b_ms)).filter(|g| g.is_finite()).collect();
    let mut takeovers: Vec<f64> = drills.iter().map(|d| d.takeover_ms).filter(|t| t.is_finite()).collect();
    gaps.sort_by(f64::total_cmp);
    takeovers.sort_by(f64::total_cmp);
    Summary {
        drills: drills.len(),
        gap_p50_ms: median(&gaps).unwrap_or(f64::NAN),
        gap_max_ms: gaps.last().copied().unwrap_or(f64::NAN),
        takeover_p50_ms: median(&takeovers).unwrap_or(f64::NAN),
        survived: drills.iter().filter(|d| d.survived).count(),
        cdrs_lost: drills.iter().filter(|d| d.cdrs == 0).count(),
        cdrs_doubled: drills.iter().filter(|d| d.cdrs > 1).count(),
        user_packets_per_flow_max: drills.iter().filter_map(|d| d.user_packets_per_flow).reduce(f64::max),
    }
}
/// The figure of a run: per drill, the media gap each way and the takeover time.
pub fn plot(path: &Path, kind: DrillKind, drills: &[Drill]) -> Result<()> {
    use crate::plot::{Panel, Series};
    let per = |f: fn(&Drill) -> f64| drills.iter().map(|d| (f64::from(d.index), f(d))).collect::<Vec<_>>();
    crate::plot::write_svg(
        path,
        &format!("sbc-bench failover: {kind:?} drills"),
        &[Panel {
            title: "media gap at each receiver and takeover time, per drill".into(),
            x_label: "drill".into(),
            y_label: "ms".into(),
            log_y: false,
            series: vec![
                Series::new("A: gap receiving from B", per(|d| d.gap_a_ms)),
                Series::new("B: gap receiving from A", per(|d| d.gap_b_ms)),
                Series { dashed: true, ..Series::new("takeover (until /ha says active)", per(|d| d.takeover_ms)) },
            ],
        }],
    )
}
