//! Drives WebRTC legs through the relay's control protocol and the bench's browsers, a bounded number at a time:
//! for each leg, `Upsert` of leg A (the browser's, `srtp_pending`) and leg B (the carrier's), `Webrtc` with the
//! browser's ufrag and fingerprint and the relay as DTLS client, a `Ping`; once the pong says the relay holds the
//! leg, the browser's binding requests and the DTLS handshake (the relay sends the ClientHello when the first
//! authenticated check latches the browser). One thread, one `poll(2)` over the legs' sockets.

use super::browser::{Browser, BrowserLeg, Progress, SrtpPair, BROWSER_UFRAG, RELAY_PWD, RELAY_UFRAG};
use super::relay::Control;
use anyhow::{bail, Context as _, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use relay_proto::control::{Command, EndpointSpec, Event, Leg, SessionId};
use relay_proto::webrtc::dtls::DtlsRole;
use relay_proto::webrtc::ice::IceCredentials;
use relay_proto::webrtc::leg::WebrtcSpec;
use std::collections::{HashMap, VecDeque};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// A handshake not complete this long after its leg was created failed (the relay's own handshake deadline).
pub const LEG_TIMEOUT: Duration = relay_proto::webrtc::dtls::HANDSHAKE_TIMEOUT;
/// A completed leg that is not kept is removed this long after the handshake completed on the browser's side, so
/// that the relay has our last flight (and completes too) before the leg goes.
const LINGER: Duration = Duration::from_millis(100);

/// One leg to create.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Its session (one leg per session).
    pub session: SessionId,
    /// The relay's socket facing the browser.
    pub relay_a: SocketAddr,
    /// The relay's socket facing the carrier.
    pub relay_b: SocketAddr,
    /// The carrier's address (leg B's peer).
    pub carrier: SocketAddr,
}

/// How one leg went.
#[derive(Debug, Default)]
pub struct Outcome {
    /// From the pong (the relay holds the leg) to the handshake's completion on the browser's side.
    pub time: Option<Duration>,
    /// Why it failed.
    pub error: Option<String>,
    /// The browser's socket and SRTP contexts, when asked to keep the leg.
    pub kept: Option<(UdpSocket, SrtpPair)>,
}

enum State {
    /// Commands sent, waiting for the pong `seq`.
    Creating {
        socket: UdpSocket,
    },
    Handshaking {
        socket: UdpSocket,
        leg: Box<BrowserLeg>,
    },
}

/// The specs of a WebRTC leg: leg A (the browser's, keys pending), leg B (the carrier's), the WebRTC spec.
pub fn leg_commands(plan: &Plan, browser: &Browser) -> [Command; 3] {
    let spec = |leg: Leg, local: SocketAddr, partner: SocketAddr, peer: Option<SocketAddr>| EndpointSpec {
        session: plan.session,
        leg,
        stream: 0,
        rtcp: false,
        local,
        partner,
        peer,
        latched: None,
        strict: true,
        clock_rates: vec![(0, 8000)],
        cname_key: None,
        srtp: None,
        srtp_pending: leg == Leg::A,
    };
    [
        Command::Upsert(spec(Leg::A, plan.relay_a, plan.relay_b, None)),
        Command::Upsert(spec(Leg::B, plan.relay_b, plan.relay_a, Some(plan.carrier))),
        Command::Webrtc(Box::new(WebrtcSpec {
            session: plan.session,
            local: plan.relay_a,
            ice: IceCredentials { ufrag: RELAY_UFRAG.into(), pwd: RELAY_PWD.into() },
            remote_ufrag: BROWSER_UFRAG.into(),
            remote_fingerprint: browser.fingerprint(),
            role: DtlsRole::Client,
        })),
    ]
}

/// Runs every plan's leg to a completed handshake or a failure, at most `concurrency` at once, within `deadline`.
/// With `keep`, completed legs stay in the relay and their sockets and SRTP contexts come back; without, each is
/// removed right after (so the relay's CPU covers creating, handshaking and removing a leg).
pub fn run(
    ctl: &mut Control,
    browser: &Browser,
    plans: &[Plan],
    concurrency: usize,
    keep: bool,
    deadline: Instant,
) -> Result<Vec<Outcome>> {
    let mut outcomes: Vec<Outcome> = plans.iter().map(|_| Outcome::default()).collect();
    let mut active: HashMap<usize, (State, Instant)> = HashMap::new();
    let mut by_ping: HashMap<u64, usize> = HashMap::new();
    let by_local: HashMap<SocketAddr, usize> = plans.iter().enumerate().map(|(i, p)| (p.relay_a, i)).collect();
    let mut lingering: VecDeque<(Instant, SessionId)> = VecDeque::new();
    let mut next = 0;
    let mut buf = vec![0u8; 2048];
    let mut finished = 0;
    while finished < plans.len() {
        let now = Instant::now();
        if now > deadline {
            bail!("{finished} of {} handshakes finished before the deadline", plans.len());
        }
        while active.len() < concurrency.max(1) && next < plans.len() {
            let socket = UdpSocket::bind("127.0.0.1:0").context("binding a browser socket")?;
            socket.set_nonblocking(true)?;
            for cmd in leg_commands(&plans[next], browser) {
                ctl.send(&cmd)?;
            }
            let seq = ctl.ping()?;
            by_ping.insert(seq, next);
            active.insert(next, (State::Creating { socket }, now));
            next += 1;
        }
        while let Some(ev) = ctl.try_event() {
            match ev {
                Event::Pong { seq } => {
                    let Some(i) = by_ping.remove(&seq) else { continue };
                    if let Some((State::Creating { socket, .. }, _)) = active.remove(&i) {
                        let leg = browser.leg(socket.local_addr()?, plans[i].relay_a, now);
                        active.insert(i, (State::Handshaking { socket, leg: Box::new(leg) }, now));
                    }
                }
                Event::WebrtcEnded { local, reason, .. } => {
                    if let Some(&i) = by_local.get(&local) {
                        if active.remove(&i).is_some() {
                            outcomes[i].error = Some(format!("the relay ended the leg: {reason}"));
                            finished += 1;
                            ctl.send(&Command::Remove { session: plans[i].session })?;
                        }
                    }
                }
                Event::BindFailed { local, error, .. } => bail!("media-relay could not bind {local}: {error}"),
                _ => {}
            }
        }
        while lingering.front().is_some_and(|(t, _)| *t <= now) {
            let (_, session) = lingering.pop_front().expect("checked");
            ctl.send(&Command::Remove { session })?;
        }
        // Timers, then what they (or the last round's datagrams) queued.
        let mut failed = Vec::new();
        for (&i, (state, created)) in active.iter_mut() {
            if now.saturating_duration_since(*created) > LEG_TIMEOUT {
                failed.push((i, format!("no handshake within {LEG_TIMEOUT:?}")));
                continue;
            }
            if let State::Handshaking { socket, leg } = state {
                if let Err(e) = leg.handle_timeout(now) {
                    failed.push((i, format!("{e:#}")));
                    continue;
                }
                flush(socket, leg, plans[i].relay_a);
            }
        }
        for (i, why) in failed {
            active.remove(&i);
            outcomes[i].error = Some(why);
            finished += 1;
            ctl.send(&Command::Remove { session: plans[i].session })?;
        }
        // Wait for datagrams; wake for the next timer, and every millisecond for the control events.
        let ids: Vec<usize> =
            active.iter().filter(|(_, (s, _))| matches!(s, State::Handshaking { .. })).map(|(&i, _)| i).collect();
        let ready: Vec<usize> = {
            let mut fds: Vec<PollFd> = ids
                .iter()
                .map(|i| match &active[i].0 {
                    State::Handshaking { socket, .. } => PollFd::new(socket.as_fd(), PollFlags::POLLIN),
                    State::Creating { .. } => unreachable!("filtered"),
                })
                .collect();
            if poll(&mut fds, PollTimeout::from(1u8)).unwrap_or(0) <= 0 {
                continue;
            }
            ids.iter().zip(&fds).filter(|(_, fd)| fd.any().unwrap_or(false)).map(|(&i, _)| i).collect()
        };
        let now = Instant::now();
        for i in ready {
            let Some((State::Handshaking { socket, leg }, _)) = active.get_mut(&i) else { continue };
            let mut result = Ok(Progress::None);
            while let Ok((n, _)) = socket.recv_from(&mut buf) {
                match leg.handle_datagram(now, &buf[..n]) {
                    Ok(Progress::Connected) => result = Ok(Progress::Connected),
                    Ok(_) => {}
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            flush(socket, leg, plans[i].relay_a);
            match result {
                Ok(Progress::Connected) => {
                    let Some((State::Handshaking { socket, leg }, _)) = active.remove(&i) else { unreachable!() };
                    outcomes[i].time = leg.handshake_time();
                    finished += 1;
                    if keep {
                        outcomes[i].kept = Some((socket, leg.srtp()?));
                    } else {
                        lingering.push_back((now + LINGER, plans[i].session));
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    active.remove(&i);
                    outcomes[i].error = Some(format!("{e:#}"));
                    finished += 1;
                    ctl.send(&Command::Remove { session: plans[i].session })?;
                }
            }
        }
    }
    for (at, session) in lingering {
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        ctl.send(&Command::Remove { session })?;
    }
    Ok(outcomes)
}

fn flush(socket: &UdpSocket, leg: &mut BrowserLeg, relay: SocketAddr) {
    while let Some(d) = leg.poll_transmit() {
        // A full socket buffer loses the datagram as the network would; DTLS retransmits.
        let _ = socket.send_to(&d, relay);
    }
}
