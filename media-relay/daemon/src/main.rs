//! `media-relay`: the relay as its own program, steered by an `sbc` (or any controller) over its control socket.

use anyhow::{Context, Result};
use clap::Parser;
use media_relay::relay::{Relay, RelayConfig};
use relay_proto::ng_server::NgServer;
use relay_proto::session::{Interface, MediaConfig};
use std::net::SocketAddr;
use std::sync::Arc;

/// The SBC's media relay, standalone.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Where the controller connects (TCP, JSON lines). Keep it on loopback or a management network: it has no
    /// authentication.
    #[arg(long, default_value = "127.0.0.1:2223")]
    control: SocketAddr,
    /// A session with no packet this long is reported idle to the controller.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    rtp_timeout: std::time::Duration,
    /// The kernel fast path: auto (native, else generic, else off), native, generic or off.
    #[arg(long, default_value = "off")]
    xdp: media_relay::xdp::XdpMode,
    /// A network device to attach the XDP program to (repeat for each side).
    #[arg(long = "interface")]
    interfaces: Vec<String>,
    /// Flows the XDP fast path holds per address family (its maps are sized to it at start): at least the relay
    /// ports in use at once, 1 to 1048576.
    #[arg(
        long,
        default_value_t = media_relay::xdp::abi::DEFAULT_MAX_FLOWS,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(media_relay::xdp::abi::LIMIT_MAX_FLOWS))
    )]
    xdp_max_flows: u32,
    /// Only attach an XDP_PASS program to the `--interface` devices and wait for SIGTERM: the veth peers of the
    /// relay's interfaces need one for XDP redirects into them to arrive (containers, test namespaces).
    #[arg(long)]
    pass_only: bool,
    /// Forwarding threads (sessions are spread over them). Default: the cores this process may run on.
    #[arg(long, value_parser = clap::value_parser!(std::num::NonZeroUsize))]
    threads: Option<std::num::NonZeroUsize>,
    /// Wake-up coalescing: under load a forwarding thread reads its sockets at most once per this interval (adds at
    /// most this to latency, only under load; less CPU per packet). 0 turns it off; at most 5ms.
    #[arg(long, default_value = "500us", value_parser = parse_coalesce)]
    coalesce: std::time::Duration,
    /// Also answer rtpengine's NG control protocol (bencode over UDP) here, for Kamailio's and OpenSIPS's
    /// rtpengine modules. Like `--control`, it has no authentication: keep it on loopback or a management network.
    #[arg(long)]
    ng: Option<SocketAddr>,
    /// A logical interface of NG calls, as rtpengine's `--interface`: NAME/ADDRESS (repeat for each; NG's
    /// `direction` names them; without `direction` a call uses the first).
    #[arg(long = "ng-interface", value_parser = parse_ng_interface)]
    ng_interfaces: Vec<Interface>,
    /// The port range of NG calls (RTP even, RTCP the next), FIRST-LAST.
    #[arg(long, default_value = "30000-39999", value_parser = parse_port_range)]
    ng_ports: (u16, u16),
}

fn parse_coalesce(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d > media_relay::coalesce::MAX {
        return Err(format!("at most {}", humantime::format_duration(media_relay::coalesce::MAX)));
    }
    Ok(d)
}

fn parse_ng_interface(s: &str) -> Result<Interface, String> {
    let (name, address) = s.split_once('/').ok_or("expected NAME/ADDRESS")?;
    let address = address.parse().map_err(|e| format!("address '{address}': {e}"))?;
    Ok(Interface { name: name.to_owned(), address })
}

fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s.split_once('-').ok_or("expected FIRST-LAST")?;
    let port = |p: &str| p.trim().parse::<u16>().map_err(|e| format!("port '{p}': {e}"));
    Ok((port(a)?, port(b)?))
}

/// The NG core over the `--ng-interface` list and `--ng-ports`.
fn ng_server(args: &Args) -> Result<NgServer> {
    anyhow::ensure!(!args.ng_interfaces.is_empty(), "--ng needs at least one --ng-interface NAME/ADDRESS");
    let config = MediaConfig {
        interfaces: args.ng_interfaces.clone(),
        first_port: args.ng_ports.0,
        last_port: args.ng_ports.1,
        quarantine: std::time::Duration::from_secs(5),
        strict: true,
        // Keys the calls' CNAME tokens; RandomState is seeded from the OS's randomness.
        cname_seed: std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), 0u8),
        dtls_fingerprint: None,
    };
    NgServer::new(config).map_err(|e| anyhow::anyhow!("--ng-ports: {e}"))
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args = Args::parse();
    if args.pass_only {
        return pass_only(&args.interfaces);
    }
    let config = RelayConfig {
        rtp_timeout: args.rtp_timeout,
        xdp: args.xdp,
        xdp_interfaces: args.interfaces.clone(),
        xdp_max_flows: args.xdp_max_flows,
        threads: args.threads.unwrap_or_else(media_relay::relay::default_threads),
        coalesce: args.coalesce,
        ..RelayConfig::default()
    };
    let ng = args.ng.map(|_| ng_server(&args)).transpose()?.map(|s| Arc::new(std::sync::Mutex::new(s)));
    let (relay, events) = Relay::start(config).context("starting the relay threads")?;
    let relay = Arc::new(relay);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.control)
            .await
            .with_context(|| format!("binding --control {}", args.control))?;
        let events = match (&ng, args.ng) {
            (Some(core), Some(addr)) => {
                let socket = tokio::net::UdpSocket::bind(addr).await.with_context(|| format!("binding --ng {addr}"))?;
                let socket = Arc::new(socket);
                let (others_tx, others_rx) = tokio::sync::mpsc::unbounded_channel();
                let out = media_relay::ng::Outputs { socket, relay: relay.clone(), records: None };
                tokio::spawn(media_relay::ng::route_events(events, core.clone(), out.clone(), others_tx));
                tokio::spawn(media_relay::ng::tick(core.clone(), out.clone()));
                let core = core.clone();
                tokio::spawn(async move {
                    if let Err(e) = media_relay::ng::serve(core, out).await {
                        tracing::error!(error = %e, "NG socket failed");
                    }
                });
                tracing::info!(ng = %addr, interfaces = ?args.ng_interfaces, "NG listener ready");
                others_rx
            }
            _ => events,
        };
        // The handlers are in place before READY=1: a stop sent the moment the start is reported must be caught.
        use tokio::signal::unix::{signal, SignalKind};
        let (mut term, mut int) = (signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?);
        tracing::info!(control = %args.control, rtp_timeout = ?args.rtp_timeout, "media relay ready");
        // systemd's Type=notify (ops/systemd/media-relay.service); a no-op when not started by systemd.
        notify(sd_notify::NotifyState::Ready);
        let stop = async {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            anyhow::Ok(())
        };
        tokio::select! {
            _ = media_relay::control::serve(listener, relay.clone(), events) => {}
            r = stop => r?,
        }
        tracing::info!("media relay stopping");
        notify(sd_notify::NotifyState::Stopping);
        anyhow::Ok(())
    })?;
    drop(relay);
    Ok(())
}

/// Tells the service manager `state`; one that does not hear us only costs a log line.
fn notify(state: sd_notify::NotifyState) {
    if let Err(error) = sd_notify::notify(false, &[state]) {
        tracing::warn!(%error, "could not notify the service manager");
    }
}

fn pass_only(interfaces: &[String]) -> Result<()> {
    let _pass = media_relay::xdp::PassProgram::attach(interfaces, false)
        .with_context(|| format!("attaching the XDP_PASS program to {interfaces:?}"))?;
    tracing::info!(?interfaces, "XDP_PASS attached; waiting for SIGTERM");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        anyhow::Ok(())
    })
}
