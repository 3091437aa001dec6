//! The `xdp` path of the live ladders: `media-relay --xdp native` on a0/b0 with one relayed stream per generator
//! flow, every endpoint upserted as already latched (`EndpointSpec::latched`), so that the relay puts both
//! directions of every stream into its XDP program before the first packet.

use super::progs::FlowLayout;
use ::tests::netns::{Host, Topology, CALLER, CARRIER_B};
use anyhow::{bail, Context, Result};
use relay_proto::control::{self, Command, EndpointSpec, Event, Leg, SessionId};
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The relay's control socket inside the SBC namespace.
pub const CONTROL: &str = "127.0.0.1:2224";
/// Streams per session (the stream index is 16 bits).
const STREAMS_PER_SESSION: u32 = 50_000;

/// The relay's b-side address of flow `i` (198.18.2.1, .2, ... as the a side's addresses go up).
pub fn b_side(layout: &FlowLayout, i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 2, 1)) + i / layout.span)
}

/// The relay's control connection through `sbc-bench control-proxy` in the SBC namespace.
#[derive(Debug)]
pub struct RelayControl {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl RelayControl {
    /// Connects (the proxy retries for 10 s while the relay starts) and checks the relay answers.
    pub fn open(topo: &Topology) -> Result<Self> {
        let exe = std::env::current_exe().context("current_exe")?;
        let mut child = ::tests::netns::command(Some(&topo.ns(Host::Sbc)), exe)
            .args(["control-proxy", CONTROL])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the control proxy")?;
        let stdin = child.stdin.take().context("proxy stdin")?;
        let stdout = child.stdout.take().context("proxy stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut c = Self { child, stdin, lines };
        c.ping(1, Duration::from_secs(15))?;
        Ok(c)
    }

    fn send(&mut self, cmd: &Command) -> Result<()> {
        let mut line = control::encode(cmd);
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).context("writing to the relay's control socket")
    }

    /// Pings and waits for the answer: every command sent before has been handled. Fails on a bind failure.
    fn ping(&mut self, seq: u64, timeout: Duration) -> Result<Vec<Event>> {
        self.send(&Command::Ping { seq })?;
        self.stdin.flush()?;
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line =
                self.lines.recv_timeout(left).map_err(|_| anyhow::anyhow!("no answer from media-relay in time"))?;
            match control::decode::<Event>(&line) {
                Ok(Event::Pong { seq: s }) if s == seq => return Ok(seen),
                Ok(Event::BindFailed { local, error, .. }) => bail!("media-relay could not bind {local}: {error}"),
                Ok(e) => seen.push(e),
                Err(_) => {}
            }
        }
    }

    /// One relayed stream per flow of `layout`: leg A's socket is the flow's destination, leg B's the same port
    /// on [`b_side`]; A's peer the flow's source, B's peer B's address at the flow's source port; both latched.
    pub fn install(&mut self, layout: &FlowLayout) -> Result<()> {
        let sa = |ip: Ipv4Addr, port: u16| SocketAddr::V4(SocketAddrV4::new(ip, port));
        for i in 0..layout.flows {
            let (daddr, dport) = layout.destination(i);
            let a = sa(daddr, dport);
            let b = sa(b_side(layout, i), dport);
            let sport = layout.source_port(i);
            for (leg, local, partner, peer) in [(Leg::A, a, b, sa(CALLER, sport)), (Leg::B, b, a, sa(CARRIER_B, sport))]
            {
                self.send(&Command::Upsert(EndpointSpec {
                    session: SessionId(u64::from(i / STREAMS_PER_SESSION) + 1),
                    leg,
                    stream: (i % STREAMS_PER_SESSION) as u16,
                    rtcp: false,
                    local,
                    partner,
                    peer: Some(peer),
                    latched: Some(peer),
                    strict: true,
                    clock_rates: vec![(0, 8000)],
                    cname_key: Some(relay_proto::cname::CnameKey::default()),
                    srtp: None,
                    srtp_pending: false,
                }))?;
            }
        }
        self.ping(2, Duration::from_secs(120)).context("installing the flows")?;
        Ok(())
    }

    /// Removes the sessions; returns (packets leg A received, of them forwarded by the XDP program).
    pub fn remove(&mut self, layout: &FlowLayout) -> Result<(u64, u64)> {
        let sessions = layout.flows.div_ceil(STREAMS_PER_SESSION);
        for s in 1..=sessions {
            self.send(&Command::Remove { session: SessionId(u64::from(s)) })?;
        }
        self.stdin.flush()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let (mut received, mut kernel, mut stats) = (0, 0, 0);
        while stats < sessions {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .map_err(|_| anyhow::anyhow!("{stats} of {sessions} sessions reported their figures in time"))?;
            if let Ok(Event::Stats(s)) = control::decode::<Event>(&line) {
                received += s.legs[Leg::A.index()].received.packets;
                kernel += s.legs[Leg::A.index()].kernel_packets;
                stats += 1;
            }
        }
        Ok((received, kernel))
    }
}

impl Drop for RelayControl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
