//! `media-relay`: the relay as its own program, steered by an `sbc` (or any controller) over its control socket.

use anyhow::{Context, Result};
use clap::Parser;
use media_relay::relay::{Relay, RelayConfig};
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
    /// Only attach an XDP_PASS program to the `--interface` devices and wait for SIGTERM: the veth peers of the
    /// relay's interfaces need one for XDP redirects into them to arrive (containers, test namespaces).
    #[arg(long)]
    pass_only: bool,
    /// Forwarding threads (sessions are spread over them). Default: the cores this process may run on.
    #[arg(long, value_parser = clap::value_parser!(std::num::NonZeroUsize))]
    threads: Option<std::num::NonZeroUsize>,
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
        threads: args.threads.unwrap_or_else(media_relay::relay::default_threads),
        ..RelayConfig::default()
    };
    let (relay, events) = Relay::start(config).context("starting the relay threads")?;
    let relay = Arc::new(relay);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.control)
            .await
            .with_context(|| format!("binding --control {}", args.control))?;
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
