//! Wiring: binds the listeners, starts the transports, the admin API and the driver, and stops them in order.

use crate::config::Config;
use crate::driver::{self, Sockets};
use anyhow::{Context, Result};
use sbc_proto::endpoint::{self, Endpoint};
use std::future::Future;

/// Runs the SBC until `shutdown` resolves. With `source` (the file `config` was loaded from), SIGHUP and `POST
/// /config/reload` reload it.
pub async fn serve(
    config: Config,
    source: Option<crate::reload::Source>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let prometheus = crate::metrics::install().context("installing the metrics recorder")?;
    crate::drain::describe();
    // SIGTERM drains from the start; the first is caught even before the driver runs (it waits in the queue).
    let (drain_tx, drain_rx) = crate::drain::channel();
    crate::drain::on_sigterm(drain_tx.clone());
    let (tx, rx) = crate::transport::queues();
    let guard = crate::edge::EdgeGuard::new(config.edge.guard.clone(), config.plan.clone());
    let admission = std::sync::Arc::new(sbc_proto::policy::AdmissionGate::new());
    let shed = std::sync::Arc::new(crate::transport::Shedder::new(
        admission.clone(),
        config.sip.user_agent.clone(),
        config.edge.overload.retry_after,
    ));
    let mut sockets = Sockets::default();
    let limits = config.sip.stream_limits();
    let trunks = crate::transport::stream::TrunkSources::from_plan(&config.plan);
    // Bound addresses (a configured port 0 becomes the real one), for leg B's Via and Contact.
    let mut locals = Vec::new();
    let acceptor = match &config.sip.tls {
        Some(s) => Some(crate::tls::Acceptor::start(s).context("sip.tls")?),
        None => None,
    };
    let reload_every = config.sip.tls.as_ref().map_or(crate::config::DEFAULT_TLS_RELOAD_EVERY, |t| t.reload_every);
    let mut targets = std::collections::HashMap::new();
    for d in &config.dial {
        let tls = match &d.tls {
            Some(s) => Some(
                crate::tls::Connector::start(&d.trunk, s, reload_every)
                    .with_context(|| format!("trunk {}: tls", d.trunk))?,
            ),
            None => None,
        };
        targets.insert((d.transport, d.addr), crate::transport::dial::DialTarget { trunk: d.trunk.clone(), tls });
    }
    // One report per WebSocket connection that closes; bounded by the connection cap, so it never waits long.
    let (ws_closed, flows_closed) = tokio::sync::mpsc::channel(limits.max_connections.max(1));
    sockets.flows_closed = Some(flows_closed);
    let mut listeners = crate::listeners::Listeners::new(crate::listeners::Context {
        queues: tx.clone(),
        guard: guard.clone(),
        shed: shed.clone(),
        max_message_size: config.sip.max_message_size,
        limits,
        trunks: trunks.clone(),
        streams: sockets.streams.clone(),
        acceptor: acceptor.clone(),
        ws_policy: std::sync::Arc::new(config.sip.ws.clone()),
        ws_closed,
    });
    for l in &config.sip.listen {
        let bound = listeners.bind(l).with_context(|| format!("binding sip.listen {}:{}", l.transport, l.addr))?;
        listeners.start(bound);
    }
    sockets.udp.extend(listeners.udp_sockets());
    locals.extend(listeners.locals());
    let listeners = std::sync::Arc::new(std::sync::Mutex::new(listeners));
    if !targets.is_empty() || !config.dns.names.is_empty() {
        let settings = crate::transport::dial::DialSettings {
            limits,
            connect_timeout: config.sip.connect_timeout,
            keepalive: config.sip.connection_keepalive,
        };
        let (dialer, failed) =
            crate::transport::dial::Dialer::new(targets, sockets.streams.clone(), settings, guard.clone(), tx.clone());
        sockets.dialer = Some(dialer);
        sockets.dial_failures = Some(failed);
    }
    drop(tx);
    sockets.dns = crate::dns::start(&config.dns, sockets.dialer.clone(), guard.clone(), reload_every)
        .context("starting the resolver of gateway names ([dns])")?;

    let ha = match &config.ha {
        Some(h) => {
            let handle = crate::ha::start(h).context("starting the HA pair (ha.paths, ha.listen)")?;
            let groups: Vec<String> = h
                .groups
                .iter()
                .map(|g| format!("{}(priority {}, {} addresses)", g.name, g.priority, g.vips.len()))
                .collect();
            tracing::info!(node = %h.node, peer = %h.peer, ?groups, "HA pair: starting as standby");
            if h.secret.is_some() {
                tracing::info!(
                    "ha: digest nonces are made with the pair's shared secret: the peer accepts them after a takeover"
                );
            } else {
                tracing::warn!("ha: no secret_env or secret_file: nothing is shared for digest nonces, so after a takeover the new active challenges callers again");
            }
            Some(handle)
        }
        None => None,
    };
    let ha_api = ha.as_ref().map(|h| crate::admin::HaApi {
        status: h.status.clone(),
        demote: h.demote.clone(),
        set_role: h.set_role.clone(),
    });
    let trunks: Vec<String> = config.plan.trunks.iter().map(|t| t.name.clone()).collect();
    crate::metrics::describe_calls(&trunks);
    crate::metrics::describe_call_ends(&trunks);
    let registering: Vec<String> =
        config.plan.trunks.iter().filter(|t| t.register.is_some()).map(|t| t.name.clone()).collect();
    crate::metrics::describe_registrations(&registering);
    if let Some(r) = &config.registrar {
        crate::metrics::describe_registrar();
        tracing::info!(users = r.users.len(), domains = ?r.domains, trunk = %config.plan.trunk(r.trunk).name, "registrar");
    }
    let canaries: Vec<String> =
        config.plan.trunks.iter().filter(|t| t.canary.is_some()).map(|t| t.name.clone()).collect();
    crate::metrics::describe_canaries(&canaries);
    let cdr = match &config.cdr_path {
        Some(path) => {
            Some(crate::cdr_sink::CdrSink::open(path).with_context(|| format!("opening cdr.path {}", path.display()))?)
        }
        None => None,
    };
    tracing::info!(trunks = trunks.len(), cdr = ?config.cdr_path, "routing plan loaded");
    let mut core = endpoint::Config {
        server: config.sip.user_agent.clone(),
        plan: config.plan.clone(),
        locals,
        media: config.media.as_ref().map(|m| m.core.clone()),
        scanners: config.edge.scanners.clone(),
        overload: config.edge.overload,
        admission,
        nonces: sbc_proto::policy::digest::NonceConfig {
            secret: config.ha.as_ref().and_then(|h| h.secret.clone()),
            // Nonces carry Unix seconds, so the two boxes of a pair agree on their age.
            unix_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .map(|d| (std::time::Instant::now(), d.as_secs())),
        },
        groups: config
            .ha
            .iter()
            .filter(|h| h.active_active())
            .flat_map(|h| h.groups.iter().map(|g| g.vips.iter().map(|v| v.address).collect()))
            .collect(),
        call_id_base: config
            .ha
            .as_ref()
            .filter(|h| h.active_active())
            .map_or(0, |h| sbc_proto::ha::call_id_base(&h.node)),
        registrar: config.registrar.clone(),
        ..Default::default()
    };
    let media = match &config.media {
        Some(m) => {
            let signalling: Vec<std::net::IpAddr> = config.sip.listen.iter().map(|l| l.addr.ip()).collect();
            let vip_devices: Vec<String> = config.ha.iter().flat_map(|h| h.vips().map(|v| v.dev.clone())).collect();
            let pair = ha.as_ref().map(crate::ha::HaHandle::replicator);
            let link = crate::media_link::MediaLink::start(m, &signalling, &vip_devices, pair)
                .context("starting the media relay")?;
            let ifaces: Vec<String> = m.core.interfaces.iter().map(|i| format!("{}={}", i.name, i.address)).collect();
            tracing::info!(relay = ?m.relay, interfaces = ?ifaces, ports = %format!("{}-{}", m.core.first_port, m.core.last_port), "media anchored");
            if m.relay == crate::config::RelayMode::Embedded {
                warn_ephemeral_overlap(m.core.first_port, m.core.last_port);
            }
            Some(link)
        }
        None => {
            tracing::info!("no [media]: SDP crosses untouched, media is not anchored");
            None
        }
    };
    // The relay's certificate exists once it started: its fingerprint goes into the core as a value, for the SDP
    // of browser legs (docs/webrtc-media.md).
    if let (Some(link), Some(m)) = (&media, core.media.as_mut()) {
        m.dtls_fingerprint = link.dtls_fingerprint();
    }
    let (reloader, reload_rx) = match source {
        Some(s) => {
            let (r, rx) = crate::reload::Reloader::new(s, config.clone(), listeners.clone());
            (Some(r), Some(rx))
        }
        None => (None, None),
    };
    let sighup = match &reloader {
        Some(r) => Some(r.on_sighup().context("listening for SIGHUP (reload)")?),
        None => None,
    };
    let (admin_stop_tx, admin_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (admin_driver, admin_requests) = crate::api::DriverHandle::channel();
    // Last of the start: /health answers once everything above runs (a relay that fails to start must not
    // have been reported healthy first).
    let admin = match &config.api {
        Some(api) => {
            let listener = tokio::net::TcpListener::bind(api.listen)
                .await
                .with_context(|| format!("binding api.listen {}", api.listen))?;
            let auth = if api.token.is_some() { "bearer token" } else { "none (loopback)" };
            tracing::info!(listen = %api.listen, auth, "admin API listening (docs/admin-api.md)");
            // The operator's routes: calls and trunks, drain, and the configuration when it can be reloaded.
            let mut operator = crate::api::routes(admin_driver.clone()).merge(crate::drain::routes(drain_tx));
            if let Some(r) = reloader.clone() {
                operator = operator.merge(crate::reload::routes(r));
            }
            Some(tokio::spawn(crate::admin::serve(listener, prometheus, ha_api, operator, api.token.clone(), async {
                let _ = admin_stop_rx.await;
            })))
        }
        None => None,
    };

    let endpoint = Endpoint::new(core, seed());
    // Every listener is bound and the relay started: systemd may consider the start done.
    crate::service::ready();
    let shutdown = async {
        shutdown.await;
        crate::service::stopping();
    };
    let mut records = driver::Records::new(cdr, trunks, media, ha, guard).with_admin(admin_requests);
    records.drain = Some(crate::drain::DrainLink { requests: drain_rx, deadline: config.drain_deadline });
    records.reload = reload_rx;
    records.hep = config.hep.as_ref().map(crate::hep::HepExport::start);
    driver::run(endpoint, sockets, rx, shutdown, records).await;
    if let Some(h) = sighup {
        h.abort();
    }

    listeners.lock().unwrap_or_else(std::sync::PoisonError::into_inner).stop();
    let _ = admin_stop_tx.send(());
    if let Some(a) = admin {
        let _ = a.await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Seed for the core's identifiers, from the process's hash randomness (std draws it from the OS).
fn seed() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one((std::process::id(), std::time::SystemTime::now()))
}

/// Warns when the embedded relay's port range lies in the host's ephemeral range: the kernel hands those ports to
/// client sockets (ours and every other program's), and the relay then fails to bind some of its pool.
fn warn_ephemeral_overlap(first: u16, last: u16) {
    let Ok(range) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range") else {
        return;
    };
    if let Some((a, b)) = crate::config::ephemeral_overlap(first, last, &range) {
        tracing::warn!(
            ports = %format!("{first}-{last}"),
            ephemeral = %range.split_whitespace().collect::<Vec<_>>().join("-"),
            overlap = %format!("{a}-{b}"),
            "media.ports overlaps the host's ephemeral port range (net.ipv4.ip_local_port_range): client sockets \
             take ports from it and calls then fail with bind_failed; move media.ports below it (the default is \
             16384-32767) or reserve the range (net.ipv4.ip_local_reserved_ports)"
        );
    }
}
