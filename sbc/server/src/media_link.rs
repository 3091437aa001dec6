//! The link from the driver to the media relay: the embedded relay thread, or a standalone `media-relay` over
//! its control socket. Either way commands never block the driver, and what comes back arrives as
//! [`LinkEvent`]s in the driver's loop.
//!
//! A remote relay is pinged every second; three seconds without a pong (or a lost connection) is
//! [`LinkEvent::Down`], and new calls are refused with 503 until it is back ([`LinkEvent::Up`]), when the driver
//! replays every session so that a restarted relay learns them again.

use crate::config::{MediaSettings, RelayMode, XdpSetting};
use media_relay::relay::{CounterSnapshot, Relay, RelayConfig};
use media_relay::xdp::XdpMode;
use relay_proto::control::{self, Command, Event};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// What the relay side says.
#[derive(Debug)]
pub enum LinkEvent {
    /// An event of the relay (boxed: final figures are large, Up/Down tiny).
    Relay(Box<Event>),
    /// The remote relay answers (again).
    Up,
    /// The remote relay stopped answering.
    Down,
}

/// The network devices holding `addresses` (where the XDP program attaches), in order, without repeats. An
/// address on no device, or on loopback, is left out (the relay then serves it from user space only).
pub fn devices_for(addresses: &[std::net::IpAddr]) -> Vec<String> {
    let Ok(ifs) = nix::ifaddrs::getifaddrs() else { return Vec::new() };
    let ifs: Vec<_> = ifs.collect();
    let mut out: Vec<String> = Vec::new();
    // Loopback carries no media worth a fast path (and has no native XDP).
    for a in addresses.iter().filter(|a| !a.is_loopback()) {
        let found = ifs.iter().find(|i| {
            i.address.as_ref().is_some_and(|sa| {
                sa.as_sockaddr_in().map(|v4| std::net::IpAddr::V4(v4.ip())) == Some(*a)
                    || sa.as_sockaddr_in6().map(|v6| std::net::IpAddr::V6(v6.ip())) == Some(*a)
            })
        });
        if let Some(i) = found {
            if !out.contains(&i.interface_name) {
                out.push(i.interface_name.clone());
            }
        }
    }
    out
}

/// How often a remote relay is pinged, and how long it may stay silent.
const PING_EVERY: Duration = Duration::from_secs(1);
const DEAD_AFTER: Duration = Duration::from_secs(3);

#[derive(Debug)]
enum Kind {
    Embedded(std::sync::Arc<Relay>),
    Remote(mpsc::UnboundedSender<Command>),
}

/// The relay, as the driver sees it.
#[derive(Debug)]
pub struct MediaLink {
    kind: Kind,
    relay_events: Option<mpsc::UnboundedReceiver<Event>>,
    link_events: Option<mpsc::UnboundedReceiver<LinkEvent>>,
    /// `[media] ng`: the NG listener on the embedded relay.
    ng: Option<crate::ng_link::NgLink>,
}

impl MediaLink {
    /// Starts the embedded relay thread, or the task that keeps a connection to the remote one. The embedded
    /// relay's XDP program goes on the devices of the media interfaces and of `signalling` (the SIP listen
    /// addresses), where it also drops the packets of banned sources.
    ///
    /// `devices` are more devices to attach to by name: those a pair's service addresses move to (`[ha] vips`),
    /// which a standby does not hold at start.
    ///
    /// `pair`: where the NG listener's calls are replicated, in a pair.
    pub fn start(
        settings: &MediaSettings,
        signalling: &[std::net::IpAddr],
        devices: &[String],
        pair: Option<crate::ha::Replicator>,
    ) -> std::io::Result<Self> {
        match settings.relay {
            RelayMode::Embedded => {
                let mut addresses: Vec<std::net::IpAddr> = settings.core.interfaces.iter().map(|i| i.address).collect();
                addresses.extend(signalling.iter().filter(|a| !a.is_unspecified()));
                let mut xdp_interfaces = devices_for(&addresses);
                for d in devices {
                    if !xdp_interfaces.contains(d) {
                        xdp_interfaces.push(d.clone());
                    }
                }
                let config = RelayConfig {
                    rtp_timeout: settings.rtp_timeout,
                    xdp: match settings.xdp {
                        XdpSetting::Native => XdpMode::Native,
                        XdpSetting::Generic => XdpMode::Generic,
                        XdpSetting::Off => XdpMode::Off,
                        XdpSetting::Auto => XdpMode::Auto,
                    },
                    xdp_interfaces,
                    // Every relay socket is a port of `media.ports` on a media interface: size the XDP flow maps
                    // to that (never below their default).
                    xdp_max_flows: (u32::from(settings.core.last_port.saturating_sub(settings.core.first_port)) + 1)
                        .saturating_mul(settings.core.interfaces.len().max(1) as u32)
                        .clamp(media_relay::xdp::abi::DEFAULT_MAX_FLOWS, media_relay::xdp::abi::LIMIT_MAX_FLOWS),
                    threads: settings.threads.unwrap_or_else(media_relay::relay::default_threads),
                    coalesce: settings.coalesce,
                    ..RelayConfig::default()
                };
                let (relay, events) = Relay::start(config)?;
                let relay = std::sync::Arc::new(relay);
                // NG sessions' events go to the NG core; the driver sees only its own calls'.
                let (ng, events) = match &settings.ng {
                    Some(ng) => {
                        let (link, others) = crate::ng_link::NgLink::start(ng, relay.clone(), events, pair)?;
                        (Some(link), others)
                    }
                    None => (None, events),
                };
                Ok(Self { kind: Kind::Embedded(relay), relay_events: Some(events), link_events: None, ng })
            }
            RelayMode::Remote(addr) => {
                let (tx, rx) = mpsc::unbounded_channel();
                let (ev_tx, ev_rx) = mpsc::unbounded_channel();
                tokio::spawn(remote(addr, rx, ev_tx));
                Ok(Self { kind: Kind::Remote(tx), relay_events: None, link_events: Some(ev_rx), ng: None })
            }
        }
    }

    /// Whether the relay is usable from the start (a remote one is not until it answers).
    pub fn initially_up(&self) -> bool {
        matches!(self.kind, Kind::Embedded(_))
    }

    /// The fingerprint of the embedded relay's DTLS certificate, for SDP towards browsers; `None` for a relay in
    /// its own process (its certificate is not known here: calls from browsers then get no WebRTC leg).
    pub fn dtls_fingerprint(&self) -> Option<relay_proto::webrtc::dtls::Fingerprint> {
        match &self.kind {
            Kind::Embedded(r) => Some(r.dtls_fingerprint()),
            Kind::Remote(_) => None,
        }
    }

    /// Queues a command for the relay.
    pub fn send(&self, cmd: Command) {
        let ok = match &self.kind {
            Kind::Embedded(r) => r.send(cmd),
            Kind::Remote(tx) => tx.send(cmd).is_ok(),
        };
        if !ok {
            metrics::counter!("sbc_media_commands_lost_total").increment(1);
        }
    }

    /// The next event; pending forever when there is none to come.
    pub async fn recv(&mut self) -> LinkEvent {
        if let Some(rx) = self.relay_events.as_mut() {
            if let Some(e) = rx.recv().await {
                return LinkEvent::Relay(Box::new(e));
            }
        }
        if let Some(rx) = self.link_events.as_mut() {
            if let Some(e) = rx.recv().await {
                return e;
            }
        }
        std::future::pending().await
    }

    /// The NG listener, when `[media] ng` is set.
    pub fn ng(&self) -> Option<&crate::ng_link::NgLink> {
        self.ng.as_ref()
    }

    /// The embedded relay's counters.
    pub fn counters(&self) -> Option<CounterSnapshot> {
        match &self.kind {
            Kind::Embedded(r) => Some(r.snapshot()),
            Kind::Remote(_) => None,
        }
    }
}

async fn remote(
    addr: SocketAddr,
    mut cmds: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<LinkEvent>,
) {
    loop {
        let conn = tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await;
        let Ok(Ok(stream)) = conn else {
            // While the relay is away, commands have nowhere to go; sessions are replayed when it is back.
            while cmds.try_recv().is_ok() {
                metrics::counter!("sbc_media_commands_lost_total").increment(1);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        tracing::info!(relay = %addr, "media relay connected");
        if events.send(LinkEvent::Up).is_err() {
            return;
        }
        let (r, mut w) = stream.into_split();
        let mut lines = BufReader::new(r).lines();
        let mut tick = tokio::time::interval(PING_EVERY);
        let mut last_pong = tokio::time::Instant::now();
        let mut seq = 0u64;
        loop {
            tokio::select! {
                cmd = cmds.recv() => {
                    let Some(cmd) = cmd else { return };
                    let mut line = control::encode(&cmd);
                    line.push('\n');
                    if w.write_all(line.as_bytes()).await.is_err() { break }
                }
                line = lines.next_line() => match line {
                    Ok(Some(l)) => match control::decode::<Event>(&l) {
                        Ok(Event::Pong { .. }) => last_pong = tokio::time::Instant::now(),
                        Ok(e) => { let _ = events.send(LinkEvent::Relay(Box::new(e))); }
                        Err(e) => tracing::warn!(error = %e, "bad line from the media relay"),
                    },
                    _ => break,
                },
                _ = tick.tick() => {
                    if last_pong.elapsed() > DEAD_AFTER { break }
                    seq += 1;
                    let mut line = control::encode(&Command::Ping { seq });
                    line.push('\n');
                    if w.write_all(line.as_bytes()).await.is_err() { break }
                }
            }
        }
        tracing::warn!(relay = %addr, "media relay lost: new calls are refused until it is back");
        if events.send(LinkEvent::Down).is_err() {
            return;
        }
    }
}
