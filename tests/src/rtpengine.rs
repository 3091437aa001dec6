//! rtpengine (Debian's `rtpengine-daemon`, 10.5, user space only) as a reference relay inside a namespace, steered
//! over its NG control protocol ([`relay_proto::ng`]) by [`NgClient`].
//!
//! [`RtpEngine::start`] runs the binary in the foreground (its Debian service is never used), with one logical
//! interface per side (`a` on 198.18.1.1, `b` on 198.18.2.1 in [`crate::netns::Topology::single_sbc`]'s SBC
//! namespace), NG on 127.0.0.1 there, `--table=-1` (no kernel forwarding), logging to stderr (its `.err` file),
//! and waits until it answers `ping`. [`RtpEngine::call`] creates a call with one audio stream per pair of
//! addresses (offer naming the caller's, answer naming the callee's) and returns the ports rtpengine allocated.
//!
//! [`RtpEngine::start_media_relay`] starts our `media-relay --ng` in its place, with the same interface names, NG
//! address and port range, so that one test body proves both speak the same protocol (issue 17).

use crate::netns::{Host, Process, Topology};
use anyhow::{bail, Context, Result};
use relay_proto::ng::{self, Command, Reply, Request};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where rtpengine listens for NG inside its namespace.
pub const NG_ADDR: &str = "127.0.0.1:2223";
/// Its media port range (distinct from media-relay's 30000+, should both run in one namespace).
pub const PORT_MIN: u16 = 40000;
/// The top of [`PORT_MIN`]'s range.
pub const PORT_MAX: u16 = 44999;
/// The logical interface facing A (the caller).
pub const IFACE_A: &str = "a";
/// The logical interface facing B (the callee).
pub const IFACE_B: &str = "b";

/// The `rtpengine` binary, or an error saying how to install it.
pub fn binary() -> Result<PathBuf> {
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin"] {
        let p = PathBuf::from(dir).join("rtpengine");
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("rtpengine is not installed (Debian package rtpengine-daemon): run `make deps` as root")
}

/// An NG client whose UDP socket lives in a namespace (so it reaches rtpengine's loopback listener there).
#[derive(Debug)]
pub struct NgClient {
    socket: UdpSocket,
    server: SocketAddr,
    /// Cookies are `<pid>_<n>`: unique per request (rtpengine answers a repeated cookie from its cache).
    next: u64,
}

impl NgClient {
    /// Opens a socket inside network namespace `netns` (a name under /run/netns) for `server`. The socket is
    /// created by a short-lived thread that joins the namespace; a socket keeps the namespace it was created in.
    pub fn open_in(netns: &str, server: SocketAddr) -> Result<Self> {
        let path = format!("/run/netns/{netns}");
        let socket = std::thread::scope(|s| {
            s.spawn(|| -> Result<UdpSocket> {
                let ns = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
                nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).context("setns (needs root)")?;
                Ok(UdpSocket::bind("127.0.0.1:0")?)
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the setns thread panicked"))?
        })?;
        Ok(Self { socket, server, next: 0 })
    }

    /// Sends `datagram` as it is (a chosen cookie, a malformed body) and returns the first datagram that comes
    /// back within `timeout`.
    pub fn exchange_raw(&mut self, datagram: &[u8], timeout: Duration) -> Result<Vec<u8>> {
        self.socket.send_to(datagram, self.server).context("sending an NG datagram")?;
        self.socket.set_read_timeout(Some(timeout))?;
        let mut buf = vec![0u8; 65536];
        let n =
            self.socket.recv(&mut buf).with_context(|| format!("no reply from {} within {timeout:?}", self.server))?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Sends `req` and waits for its reply, sending it again every 500 ms (same cookie: rtpengine treats that as a
    /// retransmission), for up to `timeout`.
    pub fn request(&mut self, req: &Request, timeout: Duration) -> Result<Reply> {
        self.next += 1;
        let cookie = format!("{}_{}", std::process::id(), self.next);
        let datagram = req.encode(&cookie);
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 65536];
        loop {
            self.socket.send_to(&datagram, self.server).context("sending an NG request")?;
            let resend = Instant::now() + Duration::from_millis(500);
            while Instant::now() < resend.min(deadline) {
                let left = resend.min(deadline).saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
                self.socket.set_read_timeout(Some(left))?;
                let n = match self.socket.recv(&mut buf) {
                    Ok(n) => n,
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                        continue
                    }
                    Err(e) => return Err(e).context("receiving an NG reply"),
                };
                let Ok((c, body)) = ng::decode(&buf[..n]) else { continue };
                if c == cookie {
                    return Reply::from_value(body)
                        .with_context(|| format!("NG {} to {}", req.command.name(), self.server));
                }
            }
            if Instant::now() >= deadline {
                bail!("no NG reply to {} from {} within {timeout:?}", req.command.name(), self.server);
            }
        }
    }

    /// Creates call `call_id` with one audio stream (PCMU) per entry of `streams`: an offer with the callers'
    /// addresses (A on interface `a`, B on `b`), an answer with the callees', `trust-address` (the SDP's addresses
    /// are the peers', the NG client being elsewhere). Returns rtpengine's ports per stream, in order.
    pub fn call(&mut self, call_id: &str, streams: &[StreamPeers]) -> Result<Vec<StreamPorts>> {
        if streams.is_empty() {
            bail!("a call needs at least one stream");
        }
        let sdp_of = |side: &dyn Fn(&StreamPeers) -> SocketAddr| {
            let first = side(&streams[0]);
            let mut s = format!("v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n", ip = first.ip());
            for p in streams {
                let a = side(p);
                // a=rtcp away from the other streams' RTP ports (stream i's port + 1 is stream i+1's RTP).
                s.push_str(&format!(
                    "m=audio {} RTP/AVP 0\r\nc=IN IP4 {}\r\na=rtpmap:0 PCMU/8000\r\na=rtcp:{}\r\na=sendrecv\r\n",
                    a.port(),
                    a.ip(),
                    a.port().wrapping_add(10000)
                ));
            }
            s
        };
        let timeout = Duration::from_secs(5);
        let mut offer = Request::new(Command::Offer, call_id, "caller");
        offer.sdp = Some(sdp_of(&|p| p.a));
        offer.flags = vec!["trust-address".to_owned()];
        offer.direction = Some([IFACE_A.to_owned(), IFACE_B.to_owned()]);
        let offered = self.request(&offer, timeout)?;
        let mut answer = Request::new(Command::Answer, call_id, "caller");
        answer.to_tag = Some("callee".to_owned());
        answer.sdp = Some(sdp_of(&|p| p.b));
        answer.flags = vec!["trust-address".to_owned()];
        answer.direction = Some([IFACE_B.to_owned(), IFACE_A.to_owned()]);
        let answered = self.request(&answer, timeout)?;
        let media = |reply: &Reply, what: &str| -> Result<Vec<SocketAddr>> {
            let sdp = reply.sdp.as_deref().with_context(|| format!("rtpengine's {what} reply has no SDP"))?;
            let lines = relay_proto::sdp::parse(sdp.as_bytes()).with_context(|| format!("rtpengine's {what} SDP"))?;
            lines
                .iter()
                .map(|m| Ok(SocketAddr::new(m.address.context("no c= line")?, m.port)))
                .collect::<Result<Vec<_>>>()
        };
        let b_sides = media(&offered, "offer")?;
        let a_sides = media(&answered, "answer")?;
        if a_sides.len() != streams.len() || b_sides.len() != streams.len() {
            bail!("rtpengine returned {}/{} media lines for {} streams", b_sides.len(), a_sides.len(), streams.len());
        }
        Ok(a_sides.into_iter().zip(b_sides).map(|(a_side, b_side)| StreamPorts { a_side, b_side }).collect())
    }
}

/// One stream of a call: where the caller (leg A) and the callee (leg B) send and receive RTP.
#[derive(Debug, Clone, Copy)]
pub struct StreamPeers {
    /// The caller's address (named in the offer).
    pub a: SocketAddr,
    /// The callee's address (named in the answer).
    pub b: SocketAddr,
}

/// Where rtpengine relays one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamPorts {
    /// Its address facing A: the caller sends here (from the answer's SDP).
    pub a_side: SocketAddr,
    /// Its address facing B: the callee sends here (from the offer's SDP).
    pub b_side: SocketAddr,
}

/// A running rtpengine and its NG client; killed on drop.
#[derive(Debug)]
pub struct RtpEngine {
    /// The process (its pid is rtpengine's: `ip netns exec` and `taskset` exec it).
    pub process: Process,
    /// Its NG client.
    pub ng: NgClient,
}

impl RtpEngine {
    /// Starts rtpengine in `host` (interfaces `a`/`b` on `a_ip`/`b_ip`), pinned to `core` with `taskset` when
    /// given, and waits (up to 10 s) until it answers `ping`.
    pub fn start(
        topo: &Topology,
        host: Host,
        name: &str,
        a_ip: IpAddr,
        b_ip: IpAddr,
        core: Option<usize>,
    ) -> Result<Self> {
        let rtpengine = binary()?;
        let mut args: Vec<String> = Vec::new();
        let program = match core {
            Some(c) => {
                args.extend(["-c".to_owned(), c.to_string(), rtpengine.display().to_string()]);
                PathBuf::from("taskset")
            }
            None => rtpengine,
        };
        args.extend([
            // No config file: the package's /etc/rtpengine/rtpengine.conf asks for kernel table 0.
            "--config-file=none".to_owned(),
            "--table=-1".to_owned(),
            "--foreground".to_owned(),
            "--log-stderr".to_owned(),
            // Notices and worse: no per-packet or per-command lines in the measured process.
            "--log-level=5".to_owned(),
            format!("--interface={IFACE_A}/{a_ip}"),
            format!("--interface={IFACE_B}/{b_ip}"),
            format!("--listen-ng={NG_ADDR}"),
            format!("--port-min={PORT_MIN}"),
            format!("--port-max={PORT_MAX}"),
            // A deleted call's ports are free at once (the default keeps them for 30 s).
            "--delete-delay=0".to_owned(),
            "--timeout=60".to_owned(),
        ]);
        let process = topo.spawn(host, name, program, &args).context("starting rtpengine")?;
        Self::wait_for_ping(topo, host, process, "rtpengine")
    }

    /// Starts our `media-relay` answering NG instead, with rtpengine's interfaces (`a`, `b` on `[a_ip, b_ip]`), NG address and
    /// port range, from `binary` ([`crate::media_relay_binary`] in tests), pinned to `core` with `taskset` when given; `xdp` is `--xdp`'s value (`off`, `native`, ...), attached to the SBC's `a0` and `b0` when not
    /// `off`. Waits (up to 10 s) until it answers `ping`.
    pub fn start_media_relay(
        topo: &Topology,
        host: Host,
        name: &str,
        [a_ip, b_ip]: [IpAddr; 2],
        xdp: &str,
        core: Option<usize>,
        binary: &std::path::Path,
    ) -> Result<Self> {
        let binary = binary.to_path_buf();
        let mut args: Vec<String> = Vec::new();
        let program = match core {
            Some(c) => {
                args.extend(["-c".to_owned(), c.to_string(), binary.display().to_string()]);
                PathBuf::from("taskset")
            }
            None => binary,
        };
        args.extend([
            // Its JSON control socket is unused here; kept off NG's port for clarity.
            "--control=127.0.0.1:2224".to_owned(),
            format!("--ng={NG_ADDR}"),
            format!("--ng-interface={IFACE_A}/{a_ip}"),
            format!("--ng-interface={IFACE_B}/{b_ip}"),
            format!("--ng-ports={PORT_MIN}-{PORT_MAX}"),
            format!("--xdp={xdp}"),
        ]);
        if xdp != "off" {
            args.extend(["--interface=a0".to_owned(), "--interface=b0".to_owned()]);
        }
        let process = topo.spawn(host, name, program, &args).context("starting media-relay")?;
        Self::wait_for_ping(topo, host, process, "media-relay")
    }

    fn wait_for_ping(topo: &Topology, host: Host, mut process: Process, what: &str) -> Result<Self> {
        let mut ng = NgClient::open_in(&topo.ns(host), NG_ADDR.parse()?)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = process.try_wait()? {
                bail!("{what} exited at start ({status}):\n{}", process.output_tail());
            }
            match ng.request(&Request::ping(), Duration::from_millis(500)) {
                Ok(r) if r.result == "pong" => break,
                Ok(r) => bail!("{what} answered ping with {}", r.result),
                Err(e) if Instant::now() > deadline => {
                    return Err(e).with_context(|| format!("{what} did not answer ping:\n{}", process.output_tail()))
                }
                Err(_) => {}
            }
        }
        Ok(Self { process, ng })
    }

    /// Creates call `call_id` with one audio stream per entry of `streams` ([`NgClient::call`]).
    pub fn call(&mut self, call_id: &str, streams: &[StreamPeers]) -> Result<Vec<StreamPorts>> {
        self.ng.call(call_id, streams)
    }

    /// Deletes call `call_id`; returns rtpengine's final statistics (the reply's `totals`, if any).
    pub fn delete(&mut self, call_id: &str) -> Result<Reply> {
        self.ng.request(&Request::new(Command::Delete, call_id, "caller"), Duration::from_secs(5))
    }

    /// Stops it (SIGTERM, then SIGKILL after 5 s).
    pub fn stop(mut self) -> Result<()> {
        self.process.terminate(Duration::from_secs(5)).map(|_| ())
    }
}
