//! The NG listener of a standalone relay (`media-relay --ng ADDR`): rtpengine's control protocol over UDP, for
//! Kamailio's and OpenSIPS's rtpengine modules. The decisions are [`relay_proto::ng_server`]'s; this only moves
//! datagrams, hands the core's commands to the relay, and feeds it the relay's events.

use crate::relay::Relay;
use relay_proto::control::Event;
use relay_proto::ng_server::{NgRecord, NgServer};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// An NG datagram is at most this long (an SDP of a few kilobytes fits many times; UDP's own limit).
const MAX_DATAGRAM: usize = 65_535;

/// The core, shared by the socket loop and the event loop.
pub type SharedNg = Arc<Mutex<NgServer>>;

/// How often the core's timeouts are checked (its only timer: a `delete` reply's wait for figures, 1 s).
const TICK: Duration = Duration::from_millis(50);

/// Where the core's outputs go: commands to the relay, late replies to their clients through the socket, and,
/// in a pair (`sbc`'s embedded relay), replication records to the standby.
#[derive(Debug, Clone)]
pub struct Outputs {
    /// The NG socket.
    pub socket: Arc<UdpSocket>,
    /// The relay the sessions live on.
    pub relay: Arc<Relay>,
    /// Replication records ([`NgServer::poll_record`]); `None`: a relay alone replicates nothing.
    pub records: Option<mpsc::UnboundedSender<NgRecord>>,
}

/// Answers NG datagrams on the socket until it fails.
pub async fn serve(ng: SharedNg, out: Outputs) -> std::io::Result<()> {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, source) = out.socket.recv_from(&mut buf).await?;
        let reply = {
            let mut core = ng.lock().unwrap_or_else(|p| p.into_inner());
            let reply = core.handle_datagram(Instant::now(), source, &buf[..n]);
            drain(&mut core, &out);
            reply
        };
        if let Some(reply) = reply {
            send(&out.socket, source, &reply);
        }
    }
}

/// Fires the core's timeouts until the task is dropped.
pub async fn tick(ng: SharedNg, out: Outputs) {
    let mut every = tokio::time::interval(TICK);
    loop {
        every.tick().await;
        let mut core = ng.lock().unwrap_or_else(|p| p.into_inner());
        if core.poll_timeout().is_some_and(|t| t <= Instant::now()) {
            core.handle_timeout(Instant::now());
            drain(&mut core, &out);
        }
    }
}

/// The core's commands to the relay, its late replies to their clients, its records to the standby: to be called
/// after every call into the core.
pub fn drain(core: &mut NgServer, out: &Outputs) {
    while let Some(cmd) = core.poll_command() {
        out.relay.send(cmd);
    }
    while let Some((to, reply)) = core.poll_transmit() {
        send(&out.socket, to, &reply);
    }
    while let Some(record) = core.poll_record() {
        if let Some(tx) = &out.records {
            let _ = tx.send(record);
        }
    }
}

/// Replies are small and the socket's buffer is deep: a full buffer loses the reply, which the client's
/// retransmission gets from the cache.
fn send(socket: &UdpSocket, to: std::net::SocketAddr, reply: &[u8]) {
    if let Err(e) = socket.try_send_to(reply, to) {
        tracing::warn!(%to, error = %e, "NG reply not sent");
    }
}

/// Routes the relay's events: those of NG sessions to the core (an idle session is deleted there, and its
/// removal goes to the relay), every other to `others` (the control socket's controller).
pub async fn route_events(
    mut events: mpsc::UnboundedReceiver<Event>,
    ng: SharedNg,
    out: Outputs,
    others: mpsc::UnboundedSender<Event>,
) {
    while let Some(event) = events.recv().await {
        let session = match &event {
            Event::Idle { session }
            | Event::BindFailed { session, .. }
            | Event::Latched { session, .. }
            | Event::WebrtcEnded { session, .. }
            | Event::WebrtcKeyed { session, .. }
            | Event::SrtpRollover { session, .. } => Some(*session),
            Event::Stats(s) | Event::Figures(s) => Some(s.session),
            Event::Pong { .. } => None,
        };
        if session.is_some_and(NgServer::owns) {
            if let Event::BindFailed { session, local, error } = &event {
                tracing::warn!(?session, %local, %error, "NG session: relay socket not opened");
            }
            let mut core = ng.lock().unwrap_or_else(|p| p.into_inner());
            core.handle_event(Instant::now(), &event);
            drain(&mut core, &out);
        } else {
            let _ = others.send(event);
        }
    }
}
