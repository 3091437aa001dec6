//! The forwarding threads. Each owns a data-plane table and the relay sockets of its sessions, on a thread of its
//! own so that media never waits behind signalling (and the reverse); sessions are spread over the threads
//! ([`RelayConfig::threads`], [`relay_proto::threads`]), so a packet never crosses a thread or takes a lock.
//! Commands come in over a channel per thread and never block the sender; events of every thread go back over
//! one channel. The XDP program is one for the relay: its map writer sits behind a lock that only flow changes,
//! bans and the periodic counter reads take, and the owner thread ([`relay_proto::threads::OWNER`]) does its
//! relay-wide work (egress sync, action and ban counters, bans).
//!
//! Each socket is read in batches (quinn-udp: recvmmsg, and GRO where the kernel coalesces); a batch that all
//! goes to one peer leaves in one GSO send. Payloads are forwarded untouched, except RTCP of readable RTP streams,
//! whose SDES items the table rewrites (topology hiding, `relay_proto::rtcp`), and media of SRTP legs, which the
//! table decrypts and encrypts (`relay_proto::srtp`): such a datagram leaves from the rewritten copy. RTCP endpoints are never handed to XDP, and kernelized RTP flows pass RTCP
//! multiplexed on them up to here, so every RTCP packet is rewritten.

use crate::poller::Poller;
use crate::xdp::{egress::FeatureWatch, AttachedMode, FlowKey, FlowTarget, KernelCounters, Xdp, XdpMode, DROP_REASONS};
use quinn_udp::{RecvMeta, Transmit, UdpSocketState, BATCH_SIZE};
use relay_proto::control::{Command, Event};
use relay_proto::flow::{Drop as DropReason, Forward, KernelChange, SocketChange, Table};
use relay_proto::srtp::Failure as SrtpFailure;
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

#[path = "relay_webrtc.rs"]
mod webrtc_io;

/// Settings of the relay.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// A session with no packet on any of its sockets this long is reported idle (its call is ended).
    pub rtp_timeout: Duration,
    /// How often the idle check runs.
    pub idle_check: Duration,
    /// Receive buffer of each relay socket, in bytes (absorbs bursts while the thread is busy). Set with
    /// SO_RCVBUFFORCE when the relay may (root), so the host's rmem_max does not cap it.
    pub socket_buffer: usize,
    /// The kernel fast path: `Off` (default) forwards everything in user space.
    pub xdp: XdpMode,
    /// The network devices the XDP program attaches to (those holding the relay's addresses).
    pub xdp_interfaces: Vec<String>,
    /// Flows the XDP maps hold per address family (sized at load): at least the relay ports in use at once.
    pub xdp_max_flows: u32,
    /// Forwarding threads; sessions are spread over them. Default: the cores this process may run on
    /// ([`default_threads`]).
    pub threads: NonZeroUsize,
    /// Wake-up coalescing ([`crate::coalesce`]): under load a forwarding thread reads its sockets at most once per
    /// this interval, adding at most this to a packet's latency. Zero: every arrival is served at once.
    pub coalesce: Duration,
}

/// The cores this process may run on (its CPU affinity, which a cpuset or `taskset` narrows), at least 1.
pub fn default_threads() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            rtp_timeout: Duration::from_secs(60),
            idle_check: Duration::from_secs(1),
            socket_buffer: 4 * 1024 * 1024,
            xdp: XdpMode::Off,
            xdp_interfaces: Vec::new(),
            xdp_max_flows: crate::xdp::abi::DEFAULT_MAX_FLOWS,
            threads: default_threads(),
            coalesce: crate::coalesce::DEFAULT,
        }
    }
}

/// What one forwarding thread has done, for metrics: each thread writes its own (no cache line shared between
/// threads per packet); [`Relay::snapshot`] adds them up.
#[derive(Debug, Default)]
pub struct Counters {
    /// Datagrams received on relay sockets.
    pub received: AtomicU64,
    /// Datagrams forwarded.
    pub forwarded: AtomicU64,
    /// Bytes forwarded.
    pub forwarded_bytes: AtomicU64,
    /// Dropped: from a source other than the latched peer (strict mode).
    pub dropped_foreign: AtomicU64,
    /// Dropped: the other leg's peer is not known yet or on hold.
    pub dropped_no_target: AtomicU64,
    /// Dropped: the socket's session is gone.
    pub dropped_unknown: AtomicU64,
    /// Dropped: RTCP whose SDES had to be rewritten but did not parse.
    pub dropped_malformed_rtcp: AtomicU64,
    /// RTCP packets forwarded with their SDES rewritten (CNAME replaced, other items removed).
    pub rtcp_rewritten: AtomicU64,
    /// SRTP/SRTCP packets from SRTP legs, authenticated and decrypted.
    pub srtp_unprotected: AtomicU64,
    /// Packets encrypted for SRTP legs.
    pub srtp_protected: AtomicU64,
    /// Dropped: SRTP/SRTCP that failed authentication (wrong key, forged, corrupted, too short).
    pub srtp_auth_failures: AtomicU64,
    /// Dropped: SRTP/SRTCP replayed (or older than the replay window).
    pub srtp_replay_failures: AtomicU64,
    /// Dropped: packets that could not be protected for an SRTP leg (SSRC limit, key exhausted).
    pub srtp_protect_failures: AtomicU64,
    /// Dropped: packets from or for an SRTP leg whose keys were not agreed yet.
    pub srtp_no_keys: AtomicU64,
    /// Sends that failed (full send buffer, unreachable network).
    pub send_errors: AtomicU64,
    /// Sessions held now.
    pub sessions: AtomicU64,
    /// Sockets open now.
    pub sockets: AtomicU64,
    /// recvmmsg calls that returned packets: `received / receive_calls` is the batch size achieved.
    pub receive_calls: AtomicU64,
    /// Packets the XDP program forwarded for flows in the table (as of the last counter read).
    pub kernel_forwarded: AtomicU64,
    /// Flows in the kernel now.
    pub kernelized: AtomicU64,
    /// Flow installs and removals the kernel refused.
    pub kernel_errors: AtomicU64,
    /// Packets the XDP program passed to user space, by reason (in the order of [`crate::xdp::PASS_REASONS`]).
    pub kernel_passed: [AtomicU64; 9],
    /// Frames the kernel failed to send after the XDP program forwarded them, by reason (in the order of
    /// [`DROP_REASONS`]): lost media, which must never go unseen.
    pub kernel_dropped: [AtomicU64; 4],
    /// Attached interfaces that cannot take XDP frames now: media through them stays in user space.
    pub xdp_egress_blocked: AtomicU64,
    /// Packets the XDP program dropped from banned sources, by ban reason code.
    pub ban_drops: [AtomicU64; 8],
    /// The XDP mode attached: 0 off, 1 generic, 2 native.
    pub xdp_mode: AtomicU64,
    /// Times the thread was held back before waiting, to coalesce wake-ups under load ([`crate::coalesce`]).
    pub coalesce_holds: Arc<AtomicU64>,
}

/// A copy of the counters at one instant (of one thread, or of the relay: the sum of its threads').
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct CounterSnapshot {
    pub received: u64,
    pub forwarded: u64,
    pub forwarded_bytes: u64,
    pub dropped_foreign: u64,
    pub dropped_no_target: u64,
    pub dropped_unknown: u64,
    pub dropped_malformed_rtcp: u64,
    pub rtcp_rewritten: u64,
    pub srtp_unprotected: u64,
    pub srtp_protected: u64,
    pub srtp_auth_failures: u64,
    pub srtp_replay_failures: u64,
    pub srtp_protect_failures: u64,
    pub srtp_no_keys: u64,
    pub send_errors: u64,
    pub sessions: u64,
    pub sockets: u64,
    pub receive_calls: u64,
    pub kernel_forwarded: u64,
    pub kernelized: u64,
    pub kernel_errors: u64,
    pub kernel_passed: [u64; 9],
    pub kernel_dropped: [u64; 4],
    pub xdp_egress_blocked: u64,
    pub ban_drops: [u64; 8],
    pub xdp_mode: u64,
    pub coalesce_holds: u64,
}

impl std::ops::AddAssign for CounterSnapshot {
    /// Adds another thread's counters. Relay-wide figures (the XDP program's, `xdp_mode`) are written by the owner
    /// thread only, so adding leaves them as they are.
    fn add_assign(&mut self, o: Self) {
        fn each<const N: usize>(a: &mut [u64; N], b: [u64; N]) {
            a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
        }
        self.received += o.received;
        self.forwarded += o.forwarded;
        self.forwarded_bytes += o.forwarded_bytes;
        self.dropped_foreign += o.dropped_foreign;
        self.dropped_no_target += o.dropped_no_target;
        self.dropped_unknown += o.dropped_unknown;
        self.dropped_malformed_rtcp += o.dropped_malformed_rtcp;
        self.rtcp_rewritten += o.rtcp_rewritten;
        self.srtp_unprotected += o.srtp_unprotected;
        self.srtp_protected += o.srtp_protected;
        self.srtp_auth_failures += o.srtp_auth_failures;
        self.srtp_replay_failures += o.srtp_replay_failures;
        self.srtp_protect_failures += o.srtp_protect_failures;
        self.srtp_no_keys += o.srtp_no_keys;
        self.send_errors += o.send_errors;
        self.sessions += o.sessions;
        self.sockets += o.sockets;
        self.receive_calls += o.receive_calls;
        self.kernel_forwarded += o.kernel_forwarded;
        self.kernelized += o.kernelized;
        self.kernel_errors += o.kernel_errors;
        each(&mut self.kernel_passed, o.kernel_passed);
        each(&mut self.kernel_dropped, o.kernel_dropped);
        self.xdp_egress_blocked += o.xdp_egress_blocked;
        each(&mut self.ban_drops, o.ban_drops);
        self.xdp_mode += o.xdp_mode;
        self.coalesce_holds += o.coalesce_holds;
    }
}

impl Counters {
    /// The counters now.
    pub fn snapshot(&self) -> CounterSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CounterSnapshot {
            received: l(&self.received),
            forwarded: l(&self.forwarded),
            forwarded_bytes: l(&self.forwarded_bytes),
            dropped_foreign: l(&self.dropped_foreign),
            dropped_no_target: l(&self.dropped_no_target),
            dropped_unknown: l(&self.dropped_unknown),
            dropped_malformed_rtcp: l(&self.dropped_malformed_rtcp),
            rtcp_rewritten: l(&self.rtcp_rewritten),
            srtp_unprotected: l(&self.srtp_unprotected),
            srtp_protected: l(&self.srtp_protected),
            srtp_auth_failures: l(&self.srtp_auth_failures),
            srtp_replay_failures: l(&self.srtp_replay_failures),
            srtp_protect_failures: l(&self.srtp_protect_failures),
            srtp_no_keys: l(&self.srtp_no_keys),
            send_errors: l(&self.send_errors),
            sessions: l(&self.sessions),
            sockets: l(&self.sockets),
            receive_calls: l(&self.receive_calls),
            kernel_forwarded: l(&self.kernel_forwarded),
            kernelized: l(&self.kernelized),
            kernel_errors: l(&self.kernel_errors),
            kernel_passed: self.kernel_passed.each_ref().map(l),
            kernel_dropped: self.kernel_dropped.each_ref().map(l),
            xdp_egress_blocked: l(&self.xdp_egress_blocked),
            ban_drops: self.ban_drops.each_ref().map(l),
            xdp_mode: l(&self.xdp_mode),
            coalesce_holds: l(&self.coalesce_holds),
        }
    }
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// A running relay: send it commands; its events come out of the receiver [`Relay::start`] returned.
#[derive(Debug)]
pub struct Relay {
    workers: Vec<Worker>,
    /// The fingerprint of the relay's DTLS certificate, for `a=fingerprint` towards browsers.
    dtls_fingerprint: relay_proto::webrtc::dtls::Fingerprint,
}

/// One forwarding thread, as the relay's handle sees it.
#[derive(Debug)]
struct Worker {
    tx: mpsc::UnboundedSender<Command>,
    counters: Arc<Counters>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The XDP program, shared by the forwarding threads: one map writer, locked for flow changes, bans and counter
/// reads (never per packet).
type SharedXdp = Arc<Mutex<Option<Xdp>>>;

impl Relay {
    /// Attaches the XDP program as `config.xdp` says and starts `config.threads` forwarding threads. An explicit
    /// `native` or `generic` that cannot attach is an error; `auto` falls back and says so in the log and in
    /// [`Counters::xdp_mode`].
    pub fn start(config: RelayConfig) -> io::Result<(Self, mpsc::UnboundedReceiver<Event>)> {
        let xdp: SharedXdp = Arc::new(Mutex::new(attach(&config).map_err(io::Error::other)?));
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        // One certificate for every WebRTC leg of the relay, made at start (browsers check its fingerprint).
        let certificate = relay_proto::webrtc::dtls::DtlsCertificate::generate().map_err(io::Error::other)?;
        let dtls_fingerprint = certificate.fingerprint();
        let mut relay = Self { workers: Vec::with_capacity(config.threads.get()), dtls_fingerprint };
        // Each thread says when it is set up, so that a caller that sees `start` return sees the relay as it runs
        // (its `xdp_mode` above all: a reader that found 0 there would think the fast path off).
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        for index in 0..config.threads.get() {
            let (tx, rx) = mpsc::unbounded_channel();
            let counters = Arc::new(Counters::default());
            let (c, x, ev, cfg) = (counters.clone(), xdp.clone(), ev_tx.clone(), config.clone());
            let cert = certificate.clone();
            let ready = ready_tx.clone();
            // On failure, `relay` drops here and stops the threads already started.
            let thread = std::thread::Builder::new().name(format!("media-relay-{index}")).spawn(move || {
                let mut rt = tokio::runtime::Builder::new_current_thread();
                rt.enable_all();
                if !cfg.coalesce.is_zero() {
                    let pacer = Arc::new(crate::coalesce::Pacer::new(cfg.coalesce, c.coalesce_holds.clone()));
                    let p = pacer.clone();
                    rt.on_thread_unpark(move || p.unparked()).on_thread_park(move || pacer.parking());
                }
                let rt = rt.build().expect("a tokio runtime");
                let local = tokio::task::LocalSet::new();
                local.block_on(&rt, run(cfg, index, x, rx, ev, c, cert, ready));
            })?;
            relay.workers.push(Worker { tx, counters, thread: Some(thread) });
        }
        drop(ready_tx);
        for _ in 0..config.threads.get() {
            // A thread that died in its setup dropped its sender without a word.
            ready_rx
                .recv_timeout(Duration::from_secs(10))
                .map_err(|_| io::Error::other("a media relay forwarding thread did not start"))?;
        }
        tracing::info!(
            threads = config.threads.get(),
            coalesce_us = config.coalesce.as_micros() as u64,
            "media relay forwarding threads started"
        );
        Ok((relay, ev_rx))
    }

    /// Queues a command for the thread that holds its session (never blocks). False if that thread has stopped.
    pub fn send(&self, cmd: Command) -> bool {
        let n = NonZeroUsize::new(self.workers.len()).expect("a relay has at least one thread");
        self.workers[relay_proto::threads::thread_for(&cmd, n)].tx.send(cmd).is_ok()
    }

    /// The relay's counters now: the sum of its threads'.
    pub fn snapshot(&self) -> CounterSnapshot {
        let mut sum = CounterSnapshot::default();
        for w in &self.workers {
            sum += w.counters.snapshot();
        }
        sum
    }

    /// Each forwarding thread's counters, in thread order (which thread carried what).
    pub fn thread_snapshots(&self) -> Vec<CounterSnapshot> {
        self.workers.iter().map(|w| w.counters.snapshot()).collect()
    }

    /// The fingerprint of the relay's DTLS certificate: what SDP towards a browser says in `a=fingerprint`.
    pub fn dtls_fingerprint(&self) -> relay_proto::webrtc::dtls::Fingerprint {
        self.dtls_fingerprint
    }

    /// How many forwarding threads run.
    pub fn threads(&self) -> usize {
        self.workers.len()
    }

    /// Stops the threads, closing every socket.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        // Closing every channel first lets the threads wind down together.
        for w in &mut self.workers {
            let (tx, _) = mpsc::unbounded_channel();
            drop(std::mem::replace(&mut w.tx, tx));
        }
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A relay socket, watched by the thread's [`Poller`] for readability only. Sends never wait (a full buffer loses
/// the packet, as the wire would), and watching for writability too would wake the thread once per packet sent.
struct Sock {
    io: std::net::UdpSocket,
    state: UdpSocketState,
}

/// Loads and attaches the XDP program as configured; `None` when the fast path is off or fell back to off.
fn attach(config: &RelayConfig) -> Result<Option<Xdp>, String> {
    if config.xdp == XdpMode::Off {
        tracing::info!("xdp off: the user-space relay forwards all media");
        return Ok(None);
    }
    if config.xdp_interfaces.is_empty() {
        tracing::warn!(
            "xdp: no network device other than loopback holds a relay address; user space forwards all media"
        );
        return Ok(None);
    }
    match Xdp::attach_sized(config.xdp, &config.xdp_interfaces, config.xdp_max_flows) {
        Ok((_, AttachedMode::Off)) => {
            tracing::warn!(interfaces = ?config.xdp_interfaces, "xdp: could not attach; user space forwards all media");
            Ok(None)
        }
        Ok((x, mode)) => {
            tracing::info!(%mode, interfaces = ?config.xdp_interfaces, "xdp attached: confirmed flows are forwarded in the kernel");
            Ok(Some(x))
        }
        Err(e) if config.xdp == XdpMode::Auto => {
            tracing::warn!(error = %e, "xdp: could not attach; user space forwards all media");
            Ok(None)
        }
        Err(e) => Err(e.to_string()),
    }
}

struct Shared {
    table: RefCell<Table>,
    /// The kernel fast path, when attached: one map writer for every thread, behind its lock.
    xdp: SharedXdp,
    /// Whether this is the owner thread ([`relay_proto::threads::OWNER`]), which does the relay-wide work.
    owner: bool,
    socks: RefCell<relay_proto::addr_map::AddrMap<Sock>>,
    /// IPv6 sockets by their descriptor, their `poller` token ([`token_of`]).
    v6_by_fd: RefCell<HashMap<RawFd, SocketAddr>>,
    /// Readiness of every socket of the thread, read by its one receive task ([`receive`]).
    poller: Poller,
    /// One set of receive buffers for every socket: the thread reads one socket at a time.
    bufs: RefCell<Vec<Vec<u8>>>,
    /// The receive metadata that goes with `bufs`, shared for the same reason.
    meta: RefCell<[RecvMeta; BATCH_SIZE]>,
    counters: Arc<Counters>,
    events: mpsc::UnboundedSender<Event>,
    socket_buffer: usize,
    /// When an SRTP failure was last logged: at most one line per [`SRTP_LOG_EVERY`] (they are counted anyway).
    srtp_logged: std::cell::Cell<Option<Instant>>,
    /// The datagrams of a [`Run`], back to back, for its GSO send.
    joined: RefCell<Vec<u8>>,
}

/// How often an SRTP authentication or replay failure may be logged.
const SRTP_LOG_EVERY: Duration = Duration::from_secs(10);

/// Large enough for a GRO batch of datagrams.
const BUF_SIZE: usize = 64 * 1024;

impl Shared {
    /// The XDP program, locked. A thread that panicked holding it left no half-written map entry that matters (the
    /// user-space table still holds the truth), so a poisoned lock is taken over.
    fn xdp(&self) -> MutexGuard<'_, Option<Xdp>> {
        self.xdp.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[allow(clippy::too_many_arguments)] // a thread's whole equipment, handed over once
async fn run(
    config: RelayConfig,
    index: usize,
    xdp: SharedXdp,
    mut rx: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Event>,
    counters: Arc<Counters>,
    certificate: relay_proto::webrtc::dtls::DtlsCertificate,
    ready: std::sync::mpsc::Sender<()>,
) {
    let owner = index == relay_proto::threads::OWNER;
    let mut table = Table::new(config.rtp_timeout);
    table.set_dtls_certificate(certificate);
    let mode = xdp.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref().map(Xdp::mode);
    if mode.is_some() {
        table.enable_kernel();
    }
    let poller = match Poller::new() {
        Ok(p) => p,
        Err(e) => {
            // `start` sees this thread's ready signal never come, and fails.
            tracing::error!(thread = index, error = %e, "media relay thread: no epoll instance");
            return;
        }
    };
    let shared = Rc::new(Shared {
        table: RefCell::new(table),
        xdp,
        owner,
        socks: RefCell::new(relay_proto::addr_map::AddrMap::new()),
        v6_by_fd: RefCell::new(HashMap::new()),
        poller,
        bufs: RefCell::new((0..BATCH_SIZE).map(|_| vec![0u8; BUF_SIZE]).collect()),
        meta: RefCell::new([RecvMeta::default(); BATCH_SIZE]),
        counters,
        events,
        socket_buffer: config.socket_buffer,
        srtp_logged: std::cell::Cell::new(None),
        joined: RefCell::new(Vec::with_capacity(BATCH_SIZE * JOIN_MAX)),
    });
    let watch = if owner { shared.xdp().as_ref().and_then(Xdp::feature_watch) } else { None };
    sync_egress(&shared);
    // The mode last, after the first egress check: a reader that sees XDP attached sees which egresses it blocked.
    if let (true, Some(mode)) = (owner, mode) {
        shared.counters.xdp_mode.store(if mode == AttachedMode::Native { 2 } else { 1 }, Ordering::Relaxed);
    }
    tokio::task::spawn_local(receive(shared.clone()));
    let _ = ready.send(());
    let mut tick = tokio::time::interval(config.idle_check);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let webrtc_due = webrtc_io::next_timer(&shared);
        tokio::select! {
            () = webrtc_io::sleep_until(webrtc_due) => webrtc_io::fire_timers(&shared),
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { break };
                apply(&shared, cmd);
                while let Ok(cmd) = rx.try_recv() {
                    apply(&shared, cmd);
                }
            }
            () = feature_change(watch.as_ref()) => sync_egress(&shared),
            _ = tick.tick() => {
                // Also here, in case a change notification was lost (a full netlink socket buffer).
                sync_egress(&shared);
                let locals: Vec<SocketAddr> = shared.table.borrow().kernelized().collect();
                read_kernel(&shared, &locals);
                read_xdp_counters(&shared);
                let mut ev = Vec::new();
                shared.table.borrow_mut().poll_idle(Instant::now(), &mut ev);
                for e in ev {
                    let _ = shared.events.send(e);
                }
            }
        }
    }
    shared.v6_by_fd.borrow_mut().clear();
    shared.socks.borrow_mut().clear();
    // Dropping the program detaches it (bpf_link): nothing forwards to sessions that no longer exist. The other
    // threads are stopping too (their channels closed together); they find it gone.
    if owner {
        shared.xdp().take();
    }
}

/// A device changed (native XDP only); never resolves without a watch.
async fn feature_change(watch: Option<&FeatureWatch>) {
    match watch {
        Some(w) => w.changed().await,
        None => std::future::pending().await,
    }
}

/// Keeps `relay_devmap` to the interfaces that take XDP frames now ([`Xdp::sync_egress`], which logs changes).
fn sync_egress(shared: &Shared) {
    if !shared.owner {
        return;
    }
    let mut xdp = shared.xdp();
    let Some(x) = xdp.as_mut() else { return };
    x.sync_egress();
    shared.counters.xdp_egress_blocked.store(x.blocked_egress().len() as u64, Ordering::Relaxed);
}

/// The program's action counters and the frames lost after it, into [`Counters`].
fn read_xdp_counters(shared: &Shared) {
    if !shared.owner {
        return;
    }
    let xdp = shared.xdp();
    let Some(x) = xdp.as_ref() else { return };
    let c = &shared.counters;
    if let Ok(a) = x.actions() {
        c.kernel_forwarded.store(a.redirect + a.tx, Ordering::Relaxed);
        for (slot, n) in c.kernel_passed.iter().zip(a.passed()) {
            slot.store(n, Ordering::Relaxed);
        }
    }
    if let Ok(d) = x.ban_drops() {
        for (slot, n) in c.ban_drops.iter().zip(d) {
            slot.store(n, Ordering::Relaxed);
        }
    }
    match x.drops() {
        Ok(d) => {
            for ((slot, reason), n) in c.kernel_dropped.iter().zip(DROP_REASONS).zip(d.by_reason()) {
                let before = slot.swap(n, Ordering::Relaxed);
                if n > before {
                    tracing::warn!(
                        frames = n - before,
                        reason,
                        "xdp: the kernel failed to send frames the XDP program forwarded (media lost)"
                    );
                }
            }
        }
        Err(e) => tracing::debug!(error = %e, "xdp: drop counters unread"),
    }
}

/// Reads the kernel's counters of `locals` into the table, so figures and the idle check count every packet.
fn read_kernel(shared: &Shared, locals: &[SocketAddr]) {
    if locals.is_empty() {
        return;
    }
    let xdp = shared.xdp();
    let Some(x) = xdp.as_ref() else { return };
    let mut table = shared.table.borrow_mut();
    for &local in locals {
        if let Ok(Some(c)) = x.counters(&FlowKey { local }) {
            table.kernel_counters(local, c.packets, c.bytes, last_seen(&c));
        }
    }
}

/// The kernel's last-seen time (CLOCK_MONOTONIC, as std's `Instant` on Linux) as an `Instant`.
fn last_seen(c: &KernelCounters) -> Option<Instant> {
    let seen = c.last_seen()?;
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).ok()?;
    let now = Duration::new(u64::try_from(now.tv_sec()).ok()?, u32::try_from(now.tv_nsec()).ok()?);
    Instant::now().checked_sub(now.saturating_sub(seen))
}

/// Carries out the table's kernel changes: the one place that installs and removes XDP flows.
fn apply_kernel(shared: &Shared) {
    let changes: Vec<KernelChange> = shared.table.borrow_mut().poll_kernel().collect();
    if changes.is_empty() {
        return;
    }
    let mut xdp = shared.xdp();
    let Some(x) = xdp.as_mut() else { return };
    for change in changes {
        let result = match change {
            KernelChange::Install { local, expect, from, to, pass_rtcp } => {
                x.install(FlowKey { local }, FlowTarget { expect, from, to, strict: true, pass_rtcp }).map(|()| None)
            }
            KernelChange::Remove { local, reason } => {
                tracing::debug!(%local, reason, "flow back to user space");
                x.remove(&FlowKey { local }).map(|c| c.map(|c| (local, c)))
            }
        };
        match result {
            Ok(Some((local, c))) => shared.table.borrow_mut().kernel_removed(local, c.packets, c.bytes, last_seen(&c)),
            Ok(None) => {}
            Err(e) => {
                // The flow stays in user space, which still forwards it: slower, never broken.
                add(&shared.counters.kernel_errors, 1);
                tracing::warn!(error = %e, "xdp flow change refused");
            }
        }
    }
    let table = shared.table.borrow();
    shared.counters.kernelized.store(table.kernelized().count() as u64, Ordering::Relaxed);
}

fn apply(shared: &Rc<Shared>, cmd: Command) {
    match &cmd {
        Command::Ban { addr, reason } => return ban(shared, *addr, Some(*reason)),
        Command::Unban { addr } => return ban(shared, *addr, None),
        _ => {}
    }
    if let Command::Remove { session } | Command::Query { session } = &cmd {
        // The kernel's counts join the session's figures before they are read (final ones on removal).
        let locals = shared.table.borrow().locals_of(*session);
        read_kernel(shared, &locals);
    }
    let (mut changes, mut events) = (Vec::new(), Vec::new());
    shared.table.borrow_mut().apply(Instant::now(), cmd, &mut changes, &mut events);
    for change in changes {
        match change {
            SocketChange::Open(local) => match open(local, shared.socket_buffer, &shared.poller) {
                Ok(sock) => {
                    if local.is_ipv6() {
                        shared.v6_by_fd.borrow_mut().insert(sock.io.as_raw_fd(), local);
                    }
                    shared.socks.borrow_mut().insert(local, sock);
                }
                Err(e) => {
                    tracing::warn!(%local, error = %e, "media socket could not be opened");
                    if let Some(ev) = shared.table.borrow_mut().bind_failed(local, e.to_string()) {
                        events.push(ev);
                    }
                }
            },
            // Closed here and now: the port is free before the events below go out, so a controller that reuses
            // it at once (on another thread, which knows nothing of this one's sockets) can bind it.
            SocketChange::Close(local) => {
                if let Some(s) = shared.socks.borrow_mut().remove(&local) {
                    shared.v6_by_fd.borrow_mut().remove(&s.io.as_raw_fd());
                    shared.poller.remove(&s.io);
                }
            }
        }
    }
    apply_kernel(shared);
    let (sessions, _) = shared.table.borrow().counts();
    shared.counters.sessions.store(sessions as u64, Ordering::Relaxed);
    shared.counters.sockets.store(shared.socks.borrow().len() as u64, Ordering::Relaxed);
    for e in events {
        let _ = shared.events.send(e);
    }
}

/// Bans `addr` in the kernel (`Some(reason)`) or lifts its ban (`None`).
fn ban(shared: &Shared, addr: std::net::IpAddr, reason: Option<u32>) {
    let mut xdp = shared.xdp();
    let Some(x) = xdp.as_mut() else { return };
    let result = match reason {
        Some(r) => x.ban(addr, r),
        None => x.unban(addr),
    };
    if let Err(e) = result {
        add(&shared.counters.kernel_errors, 1);
        tracing::warn!(%addr, error = %e, "xdp ban map not updated; the ban holds in user space");
    }
}

/// A non-blocking UDP socket on `local`, watched by `poller`. IP_FREEBIND lets a standby bind the service addresses
/// it does not hold yet.
fn open(local: SocketAddr, buffer: usize, poller: &Poller) -> io::Result<Sock> {
    let s =
        socket2::Socket::new(socket2::Domain::for_address(local), socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    s.set_nonblocking(true)?;
    let _ = s.set_freebind(true);
    if nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::RcvBufForce, &buffer).is_err() {
        let _ = s.set_recv_buffer_size(buffer);
    }
    s.bind(&local.into())?;
    let std: std::net::UdpSocket = s.into();
    let state = UdpSocketState::new((&std).into())?;
    poller.add(&std, token_of(local, std.as_raw_fd()))?;
    Ok(Sock { io: std, state })
}

/// The thread's one receive task: every socket the poller reports readable is drained in turn.
async fn receive(shared: Rc<Shared>) {
    let mut ready: Vec<u64> = Vec::new();
    loop {
        ready.clear();
        if let Err(e) = shared.poller.ready(&mut ready).await {
            tracing::error!(error = %e, "media relay: epoll failed; this thread forwards nothing more");
            return;
        }
        for &token in &ready {
            if let Some(local) = local_of(&shared, token) {
                drain(&shared, local);
            }
        }
    }
}

/// Marks a token that holds an IPv4 socket address itself.
const V4_TOKEN: u64 = 1 << 63;

/// The poller token of the socket on `local` (descriptor `fd`): an IPv4 address and port fit in it whole, so the
/// common socket needs no map entry to be found from its readiness (an entry per socket was 40 bytes of map, and
/// more in the room a map keeps); an IPv6 socket's token is its descriptor, looked up in `Shared::v6_by_fd`.
fn token_of(local: SocketAddr, fd: RawFd) -> u64 {
    match local {
        SocketAddr::V4(a) => V4_TOKEN | u64::from(a.ip().to_bits()) << 16 | u64::from(a.port()),
        SocketAddr::V6(_) => fd as u64,
    }
}

/// The socket a poller token names (see [`token_of`]).
fn local_of(shared: &Shared, token: u64) -> Option<SocketAddr> {
    v4_of(token).or_else(|| shared.v6_by_fd.borrow().get(&(token as RawFd)).copied())
}

fn v4_of(token: u64) -> Option<SocketAddr> {
    let ip = std::net::Ipv4Addr::from_bits((token >> 16) as u32);
    (token & V4_TOKEN != 0).then(|| SocketAddr::from((ip, token as u16)))
}

/// Reads `local` until the kernel has nothing more for it (its registration is edge-triggered), a batch at a time.
fn drain(shared: &Shared, local: SocketAddr) {
    loop {
        {
            let mut bufs = shared.bufs.borrow_mut();
            let mut meta = shared.meta.borrow_mut();
            let n = {
                let socks = shared.socks.borrow();
                let Some(s) = socks.get(&local) else { return };
                let mut it = bufs.iter_mut();
                let mut iov: [IoSliceMut<'_>; BATCH_SIZE] =
                    std::array::from_fn(|_| IoSliceMut::new(it.next().expect("BATCH_SIZE buffers")));
                match s.state.recv((&s.io).into(), &mut iov, &mut *meta) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(e) => {
                        tracing::debug!(%local, error = %e, "media receive error");
                        return;
                    }
                }
            };
            add(&shared.counters.receive_calls, 1);
            let now = Instant::now();
            let mut run = Run::default();
            for (m, buf) in meta.iter().zip(bufs.iter()).take(n) {
                let data = &buf[..m.len];
                if m.stride == 0 || m.stride >= data.len() {
                    forward_one(shared, now, local, m.addr, data, &mut run);
                } else {
                    run.flush(shared);
                    forward_datagrams(shared, now, local, m, data);
                }
            }
            run.flush(shared);
            store_totals(shared);
            // A first packet may have confirmed a peer: hand the flow to the kernel now, and tell the signalling
            // side (it replicates latches to the standby of a pair).
            apply_kernel(shared);
            webrtc_io::send_transmits(shared);
            while let Some(ev) = shared.table.borrow_mut().poll_event() {
                let _ = shared.events.send(ev);
            }
            // Fewer datagrams than there was room for: the kernel found the queue empty, so the socket is drained
            // (edge-triggered epoll reports the next arrival). At media rates most wakeups find one datagram, and
            // this saves the recvmmsg that would only say EAGAIN.
            if n < BATCH_SIZE {
                return;
            }
        }
    }
}

/// The largest datagram joined into a [`Run`]: a GSO segment must fit the egress path's MTU (or the send fails),
/// and 1 200 bytes fits any IPv6 path (1 280 minus headers). Voice RTP is far smaller; larger datagrams go alone.
const JOIN_MAX: usize = 1200;

/// Consecutive datagrams of one receive that go out of the same socket to the same peer untouched, all of the
/// first's size but the last (no larger): they leave in one GSO send instead of one sendmsg each. Most of the
/// kernel's cost is per send (route, veth, the peer's wakeup), and at media rates a receive often holds several
/// datagrams of one stream (a sender's burst) but never GRO-coalesced ones on veth.
#[derive(Default)]
struct Run<'a> {
    open: Option<Open<'a>>,
}

/// A run being gathered.
struct Open<'a> {
    to: Forward,
    /// The segment size: the first datagram's.
    size: usize,
    /// The first datagram, copied into [`Shared::joined`] only once a second one joins it.
    first: &'a [u8],
    count: usize,
    /// The socket's GSO limit.
    max: usize,
    /// A shorter datagram ended the run (GSO allows one, last).
    closed: bool,
}

impl<'a> Run<'a> {
    /// Adds a datagram the table forwards untouched, or sends the run so far and starts a new one with it.
    fn push(&mut self, shared: &Shared, f: Forward, data: &'a [u8]) {
        if let Some(o) = &mut self.open {
            if o.to == f && !o.closed && o.count < o.max && data.len() <= o.size {
                let mut joined = shared.joined.borrow_mut();
                if o.count == 1 {
                    joined.clear();
                    joined.extend_from_slice(o.first);
                }
                joined.extend_from_slice(data);
                o.count += 1;
                o.closed = data.len() < o.size;
                return;
            }
        }
        self.flush(shared);
        if data.is_empty() || data.len() > JOIN_MAX {
            return send(shared, f, data, None);
        }
        let max = shared.socks.borrow().get(&f.from).map_or(1, |s| s.state.max_gso_segments());
        self.open = Some(Open { to: f, size: data.len(), first: data, count: 1, max, closed: false });
    }

    /// Sends the run: alone as it came, or joined in one GSO send.
    fn flush(&mut self, shared: &Shared) {
        match self.open.take() {
            Some(o) if o.count == 1 => send(shared, o.to, o.first, None),
            Some(o) => send(shared, o.to, &shared.joined.borrow(), Some(o.size)),
            None => {}
        }
    }
}

/// Forwards one datagram (not GRO-coalesced): untouched ones join `run`, anything else goes after it.
fn forward_one<'a>(
    shared: &Shared,
    now: Instant,
    local: SocketAddr,
    src: SocketAddr,
    data: &'a [u8],
    run: &mut Run<'a>,
) {
    add(&shared.counters.received, 1);
    // A rewritten datagram (RTCP, about one in a hundred; every packet of an SRTP leg) needs a buffer of its own;
    // plain RTP never touches it.
    let mut rewritten = Vec::new();
    let v = shared.table.borrow_mut().on_packet(now, local, src, data, &mut rewritten);
    if let Err(DropReason::Srtp(f @ (SrtpFailure::Auth | SrtpFailure::Replay))) = v {
        log_srtp_failure(shared, now, local, src, data, f);
    }
    match v {
        Ok(f) if !f.rewritten => run.push(shared, f, data),
        Ok(_) => {
            run.flush(shared);
            send_one(shared, v, data, &rewritten);
        }
        Err(_) => send_one(shared, v, data, &rewritten),
    }
}

/// What the table did to packets' contents (RTCP hidden, SRTP decrypted and encrypted), into [`Counters`].
fn store_totals(shared: &Shared) {
    let t = shared.table.borrow().totals();
    let c = &shared.counters;
    c.rtcp_rewritten.store(t.rtcp_rewritten, Ordering::Relaxed);
    c.srtp_unprotected.store(t.srtp_unprotected, Ordering::Relaxed);
    c.srtp_protected.store(t.srtp_protected, Ordering::Relaxed);
}

/// Forwards the datagrams of one receive (several when GRO coalesced them, `stride` bytes each).
fn forward_datagrams(shared: &Shared, now: Instant, local: SocketAddr, m: &RecvMeta, data: &[u8]) {
    let stride = if m.stride == 0 { data.len().max(1) } else { m.stride };
    let segments = data.len().div_ceil(stride);
    add(&shared.counters.received, segments as u64);
    let mut table = shared.table.borrow_mut();
    let mut common: Option<Forward> = None;
    let mut all_same = true;
    let mut verdicts = Vec::with_capacity(if segments > 1 { segments } else { 0 });
    // A rewritten datagram (RTCP, about one in a hundred; every packet of an SRTP leg) needs a buffer of its own;
    // plain RTP never touches it.
    let mut rewritten = Vec::new();
    for seg in data.chunks(stride) {
        let v = table.on_packet(now, local, m.addr, seg, &mut rewritten);
        if let Err(DropReason::Srtp(f @ (SrtpFailure::Auth | SrtpFailure::Replay))) = v {
            log_srtp_failure(shared, now, local, m.addr, seg, f);
        }
        match (&v, common) {
            (Ok(f), None) => common = Some(*f),
            (Ok(f), Some(c)) if *f == c => {}
            _ => all_same = false,
        }
        if segments == 1 {
            drop(table);
            return send_one(shared, v, data, &rewritten);
        }
        let copy = if v.as_ref().is_ok_and(|f| f.rewritten) { std::mem::take(&mut rewritten) } else { Vec::new() };
        verdicts.push((v, copy));
    }
    drop(table);
    match common {
        // The whole batch goes to one peer: one GSO send, untouched, as it came in.
        Some(f) if all_same && !f.rewritten && gso_ok(shared, f.from, segments) => send(shared, f, data, Some(stride)),
        // The same, rewritten alike (SRTP): one GSO send when every datagram but the last has the first's size.
        Some(f) if all_same && gso_ok(shared, f.from, segments) && uniform(&verdicts) => {
            let size = verdicts[0].1.len();
            let joined: Vec<u8> = verdicts.iter().flat_map(|(_, copy)| copy.iter().copied()).collect();
            send(shared, f, &joined, Some(size))
        }
        _ => {
            for ((v, copy), seg) in verdicts.into_iter().zip(data.chunks(stride)) {
                send_one(shared, v, seg, &copy);
            }
        }
    }
}

/// Logs an SRTP failure (a wrong key, a forgery, a replay), at most once per [`SRTP_LOG_EVERY`].
fn log_srtp_failure(shared: &Shared, now: Instant, local: SocketAddr, src: SocketAddr, seg: &[u8], f: SrtpFailure) {
    if shared.srtp_logged.get().is_some_and(|t| now.saturating_duration_since(t) < SRTP_LOG_EVERY) {
        return;
    }
    shared.srtp_logged.set(Some(now));
    let rtcp = relay_proto::rtcp::is_rtcp(seg);
    tracing::warn!(%local, %src, len = seg.len(), rtcp, reason = f.label(), "srtp packet dropped (logged once per 10 s)");
}

/// Whether the rewritten datagrams can be one GSO send: all of the first's size (not empty), the last no larger.
fn uniform(verdicts: &[(Result<Forward, DropReason>, Vec<u8>)]) -> bool {
    let size = verdicts.first().map_or(0, |(_, c)| c.len());
    let Some(((_, last), rest)) = verdicts.split_last() else { return false };
    size > 0 && last.len() <= size && !last.is_empty() && rest.iter().all(|(_, c)| c.len() == size)
}

fn gso_ok(shared: &Shared, from: SocketAddr, segments: usize) -> bool {
    segments > 1 && shared.socks.borrow().get(&from).is_some_and(|s| s.state.max_gso_segments() >= segments)
}

/// Sends one datagram as the table decided: `seg` as received, or `rewritten` when the table rewrote it.
fn send_one(shared: &Shared, v: Result<Forward, DropReason>, seg: &[u8], rewritten: &[u8]) {
    let c = &shared.counters;
    match v {
        Ok(f) if f.rewritten => send(shared, f, rewritten, None),
        Ok(f) => send(shared, f, seg, None),
        Err(DropReason::ForeignSource) => add(&c.dropped_foreign, 1),
        Err(DropReason::NoTarget) => add(&c.dropped_no_target, 1),
        Err(DropReason::MalformedRtcp) => add(&c.dropped_malformed_rtcp, 1),
        Err(DropReason::Srtp(SrtpFailure::Auth)) => add(&c.srtp_auth_failures, 1),
        Err(DropReason::Srtp(SrtpFailure::Replay)) => add(&c.srtp_replay_failures, 1),
        Err(DropReason::Srtp(SrtpFailure::Protect)) => add(&c.srtp_protect_failures, 1),
        Err(DropReason::Srtp(SrtpFailure::NoKeys)) => add(&c.srtp_no_keys, 1),
        // A WebRTC leg's STUN or DTLS, consumed by the table (counted in `received`).
        Err(DropReason::Control) => {}
        // Unauthenticated STUN, DTLS or media from an address ICE did not latch.
        Err(DropReason::Webrtc(_)) => add(&c.dropped_foreign, 1),
        Err(_) => add(&c.dropped_unknown, 1),
    }
}

fn send(shared: &Shared, f: Forward, contents: &[u8], segment_size: Option<usize>) {
    let socks = shared.socks.borrow();
    let Some(s) = socks.get(&f.from) else {
        add(&shared.counters.dropped_unknown, 1);
        return;
    };
    let n = segment_size.map_or(1, |s| contents.len().div_ceil(s)) as u64;
    let t = Transmit { destination: f.to, ecn: None, contents, segment_size, src_ip: None };
    match s.state.try_send((&s.io).into(), &t) {
        Ok(()) => {
            add(&shared.counters.forwarded, n);
            add(&shared.counters.forwarded_bytes, contents.len() as u64);
        }
        // A full send buffer: the packet is lost, as it would be on the wire; counted.
        Err(_) => add(&shared.counters.send_errors, n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv4_socket_is_its_own_token_and_an_ipv6_one_its_descriptor() {
        for a in ["198.18.1.1:30000", "0.0.0.0:1", "255.255.255.255:65535"] {
            let a: SocketAddr = a.parse().unwrap();
            assert_eq!(v4_of(token_of(a, 7)), Some(a));
        }
        let v6: SocketAddr = "[2001:db8::1]:30000".parse().unwrap();
        assert_eq!(token_of(v6, 7), 7);
        assert_eq!(v4_of(7), None);
    }
}
