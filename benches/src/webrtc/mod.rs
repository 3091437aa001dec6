//! `sbc-bench webrtc`: issue 18's bench against a real `media-relay` process (release build), steered over its
//! JSON control protocol as the SBC steers it:
//!
//! 1. **Handshakes per second**: `--legs` WebRTC legs, each created over the control protocol (leg A with keys
//!    pending, leg B, `Webrtc` with the relay as DTLS client), the bench's browser doing ICE (binding requests with
//!    MESSAGE-INTEGRITY and FINGERPRINT) and the DTLS server side, at most `--concurrency` at once, each removed
//!    once its handshake completed. Handshakes/s, the relay's CPU per handshake (its utime + stime over the phase,
//!    so creating and removing the leg are in it), p50/p99 handshake time, failures, and whether the browsers'
//!    core was saturated (then the bench, not the relay, set the pace).
//! 2. **DTLS-SRTP ↔ RTP next to RTP ↔ RTP**: `--calls` WebRTC legs handshaken and bridged each to a carrier
//!    socket, `--rate` packets/s in all for `--media-secs` (browser → carrier: the relay decrypts; carrier →
//!    browser: it encrypts), every packet checked at its receiver; then (or first: the order alternates by run) the
//!    same number of plain calls through the same relay. The relay's CPU-seconds per million packets of each and
//!    their ratio, loss per direction.
//!
//! Everything runs in a network namespace of the bench's own (`unshare(CLONE_NEWNET)`, loopback only), so fixed
//! ports collide with nothing and the namespace goes with the processes, also on failure. The relay runs on core
//! [`RELAY_CORE`] (`taskset`), the bench's browsers and carriers on [`CLIENT_CORE`] (one thread).

mod browser;
mod handshakes;
mod media;
mod relay;
pub mod report;

use anyhow::{bail, Context as _, Result};
use relay_proto::control::{Command, EndpointSpec, Leg, SessionId};
use report::{Handshakes, Media, Run};
use serde::Serialize;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The core `media-relay` runs on.
pub const RELAY_CORE: usize = 1;
/// The core of the bench's browsers and carriers.
pub const CLIENT_CORE: usize = 0;
/// Most legs of the handshake phase (their relay ports, two per leg from [`HANDSHAKE_PORTS`], stay below the
/// kernel's ephemeral range, where the browsers' sockets are).
pub const MAX_LEGS: usize = 5000;
/// Most calls of a media window.
pub const MAX_CALLS: usize = 2000;
/// The relay's first port of the handshake phase.
const HANDSHAKE_PORTS: u16 = 10_000;
/// The relay's first port of the WebRTC media window, and of the plain one.
const WEBRTC_PORTS: u16 = 20_000;
const PLAIN_PORTS: u16 = 24_000;
/// After the WebRTC calls' handshakes, the relay gets this long to take our last flights before media starts.
const SETTLE: Duration = Duration::from_millis(300);

/// What `webrtc` was asked to do.
#[derive(Debug, Clone, Serialize)]
pub struct Options {
    /// Complete runs (each: a fresh relay, the handshake phase, both media windows).
    pub runs: u32,
    /// WebRTC legs of the handshake phase.
    pub legs: usize,
    /// Handshakes in flight at most.
    pub concurrency: usize,
    /// Calls of each media window.
    pub calls: usize,
    /// Packets per second in all, both directions together.
    pub rate: u32,
    /// Seconds of media per window (the relay's consent timer is 30 s, and the bench's browsers send no consent
    /// checks once connected: at most 20).
    pub media_secs: u32,
    /// The `media-relay` binary used.
    pub relay_binary: PathBuf,
}

/// Enters a network namespace of this process's own, with loopback up. Call before any other thread starts: the
/// namespace is the calling thread's, and threads and processes started after it inherit it.
pub fn enter_private_namespace() -> Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .context("unshare(CLONE_NEWNET): `webrtc` needs root (CAP_SYS_ADMIN) for its own network namespace")?;
    let status = std::process::Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .context("running `ip link set lo up` (iproute2: `make deps`)")?;
    if !status.success() {
        bail!("`ip link set lo up` failed in the bench's namespace");
    }
    Ok(())
}

/// Pins the calling thread (and the threads it starts later) to `core`.
pub fn pin_to(core: usize) -> Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(core).with_context(|| format!("core {core}"))?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .with_context(|| format!("pinning to core {core}"))
}

/// Every run, in order. `log` receives the relay's log of the current run.
pub fn run(opts: &Options, pin: bool, log: &std::path::Path) -> Result<Vec<Run>> {
    let mut runs = Vec::new();
    for n in 1..=opts.runs {
        crate::media::check_stop()?;
        let r = one_run(opts, n, pin, log).with_context(|| format!("run {n}"))?;
        eprintln!("{}", report::progress(opts.runs, &r));
        runs.push(r);
    }
    Ok(runs)
}

fn one_run(opts: &Options, n: u32, pin: bool, log: &std::path::Path) -> Result<Run> {
    let mut relay = relay::RelayProcess::start(&opts.relay_binary, pin.then_some(RELAY_CORE), log)?;
    let mut ctl = relay::Control::connect(Duration::from_secs(10))
        .with_context(|| format!("media-relay did not answer (its log: {})", log.display()))?;
    let browser = browser::Browser::new()?;
    let mut session = 0u64;
    let mut next_session = || {
        session += 1;
        SessionId(session)
    };

    // 1. Handshakes: a carrier address that nobody sends from (leg B only needs a peer).
    let carrier: SocketAddr = "127.0.0.1:9".parse().expect("a literal address");
    let plans: Vec<handshakes::Plan> = (0..opts.legs)
        .map(|i| handshakes::Plan {
            session: next_session(),
            relay_a: loopback(HANDSHAKE_PORTS + 2 * i as u16),
            relay_b: loopback(HANDSHAKE_PORTS + 2 * i as u16 + 1),
            carrier,
        })
        .collect();
    let deadline = Instant::now() + handshakes::LEG_TIMEOUT + Duration::from_secs(opts.legs as u64 / 10 + 10);
    let (relay0, client0, start) = (relay.cpu_s()?, own_cpu_s()?, Instant::now());
    let outcomes = handshakes::run(&mut ctl, &browser, &plans, opts.concurrency, false, deadline)?;
    // Every removal handled before the CPU is read.
    let seq = ctl.ping()?;
    ctl.wait_pong(seq, Instant::now() + Duration::from_secs(30))?;
    let wall = start.elapsed().as_secs_f64();
    let (relay1, client1) = (relay.cpu_s()?, own_cpu_s()?);
    relay.check_alive()?;
    let times: Vec<Duration> = outcomes.iter().filter_map(|o| o.time).collect();
    let failures: Vec<String> = outcomes.iter().filter_map(|o| o.error.clone()).collect();
    let hs = Handshakes::new(opts.concurrency, &times, failures, wall, relay1 - relay0, client1 - client0);

    // 2. Media, WebRTC and plain, the order alternating by run so that a drift of the machine hits both.
    let mut webrtc = None;
    let mut plain = None;
    for webrtc_now in if n % 2 == 1 { [true, false] } else { [false, true] } {
        crate::media::check_stop()?;
        if webrtc_now {
            webrtc = Some(webrtc_window(opts, &mut ctl, &mut relay, &browser, &mut next_session)?);
        } else {
            plain = Some(plain_window(opts, &mut ctl, &mut relay, &mut next_session)?);
        }
    }
    let (webrtc, plain) = (webrtc.expect("measured"), plain.expect("measured"));
    drop(ctl);
    drop(relay);
    let cpu_ratio_webrtc_over_plain = report::cpu_ratio(&webrtc, &plain);
    Ok(Run { run: n, handshakes: hs, webrtc, plain, cpu_ratio_webrtc_over_plain })
}

fn webrtc_window(
    opts: &Options,
    ctl: &mut relay::Control,
    relay: &mut relay::RelayProcess,
    browser: &browser::Browser,
    next_session: &mut impl FnMut() -> SessionId,
) -> Result<Media> {
    let carriers = bind_sockets(opts.calls)?;
    let plans: Vec<handshakes::Plan> = (0..opts.calls)
        .map(|i| {
            Ok(handshakes::Plan {
                session: next_session(),
                relay_a: loopback(WEBRTC_PORTS + 2 * i as u16),
                relay_b: loopback(WEBRTC_PORTS + 2 * i as u16 + 1),
                carrier: carriers[i].local_addr()?,
            })
        })
        .collect::<Result<_>>()?;
    let deadline = Instant::now() + handshakes::LEG_TIMEOUT + Duration::from_secs(opts.calls as u64 / 10 + 10);
    let outcomes = handshakes::run(ctl, browser, &plans, opts.concurrency, true, deadline)?;
    if let Some((i, o)) = outcomes.iter().enumerate().find(|(_, o)| o.kept.is_none()) {
        bail!("the WebRTC call {} of the media window did not connect: {}", i + 1, o.error.as_deref().unwrap_or("?"));
    }
    std::thread::sleep(SETTLE);
    let mut calls: Vec<media::Call> = outcomes
        .into_iter()
        .zip(carriers)
        .zip(&plans)
        .map(|((o, carrier), p)| {
            let (browser, srtp) = o.kept.expect("checked");
            media::Call { browser, carrier, relay_a: p.relay_a, relay_b: p.relay_b, srtp: Some(srtp) }
        })
        .collect();
    window("webrtc", opts, ctl, relay, &mut calls, &plans.iter().map(|p| p.session).collect::<Vec<_>>())
}

fn plain_window(
    opts: &Options,
    ctl: &mut relay::Control,
    relay: &mut relay::RelayProcess,
    next_session: &mut impl FnMut() -> SessionId,
) -> Result<Media> {
    let (browsers, carriers) = (bind_sockets(opts.calls)?, bind_sockets(opts.calls)?);
    let mut calls = Vec::with_capacity(opts.calls);
    let mut sessions = Vec::with_capacity(opts.calls);
    for (i, (browser, carrier)) in browsers.into_iter().zip(carriers).enumerate() {
        let session = next_session();
        let (relay_a, relay_b) = (loopback(PLAIN_PORTS + 2 * i as u16), loopback(PLAIN_PORTS + 2 * i as u16 + 1));
        for (leg, local, partner, peer) in
            [(Leg::A, relay_a, relay_b, browser.local_addr()?), (Leg::B, relay_b, relay_a, carrier.local_addr()?)]
        {
            ctl.send(&Command::Upsert(EndpointSpec {
                session,
                leg,
                stream: 0,
                rtcp: false,
                local,
                partner,
                peer: Some(peer),
                latched: None,
                strict: true,
                clock_rates: vec![(0, 8000)],
                cname_key: None,
                srtp: None,
                srtp_pending: false,
            }))?;
        }
        sessions.push(session);
        calls.push(media::Call { browser, carrier, relay_a, relay_b, srtp: None });
    }
    let seq = ctl.ping()?;
    ctl.wait_pong(seq, Instant::now() + Duration::from_secs(30)).context("creating the plain calls")?;
    window("plain", opts, ctl, relay, &mut calls, &sessions)
}

/// One media window over `calls`, the relay's CPU around it; the sessions are removed afterwards.
fn window(
    path: &'static str,
    opts: &Options,
    ctl: &mut relay::Control,
    relay: &mut relay::RelayProcess,
    calls: &mut [media::Call],
    sessions: &[SessionId],
) -> Result<Media> {
    let (relay0, client0) = (relay.cpu_s()?, own_cpu_s()?);
    let counts = media::run(calls, opts.rate, opts.media_secs)?;
    let (relay1, client1) = (relay.cpu_s()?, own_cpu_s()?);
    relay.check_alive()?;
    let stats = ctl.remove_all(sessions, Duration::from_secs(30))?;
    let dropped = stats
        .iter()
        .flat_map(|s| s.legs.iter())
        .map(|l| l.dropped_foreign + l.dropped_no_target + l.dropped_srtp)
        .sum();
    Ok(Media::new(path, calls.len(), opts.rate, &counts, relay1 - relay0, client1 - client0, dropped))
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn bind_sockets(n: usize) -> Result<Vec<UdpSocket>> {
    (0..n).map(|_| UdpSocket::bind("127.0.0.1:0").context("binding a client socket")).collect()
}

/// This process's utime + stime, seconds: the browsers' and carriers' side (and the control reader).
fn own_cpu_s() -> Result<f64> {
    relay::process_cpu_s(std::process::id())
}
