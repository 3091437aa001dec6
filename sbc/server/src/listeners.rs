//! The SIP listeners (`[sip] listen`): bound at start, and added or removed by a reload.
//!
//! A reload binds the listeners it adds before anything changes ([`Listeners::prepare`]), so an address that cannot
//! be bound refuses the whole reload; once the driver has the new sockets and local addresses, the receiving tasks
//! start and those of removed listeners stop ([`Listeners::commit`]). Connections accepted on a removed TCP, TLS or
//! WebSocket listener stay open: their calls go on.

use crate::config::ListenAddr;
use crate::edge::EdgeGuard;
use crate::transport::stream::{StreamLimits, TrunkSources};
use crate::transport::{registry::Connections, tcp, udp, Queues, Shedder, Transport};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::UdpSocket;

/// What every listener's task needs.
#[derive(Debug, Clone)]
pub struct Context {
    /// The driver's queues.
    pub queues: Queues,
    /// The edge guard.
    pub guard: EdgeGuard,
    /// The overload shedder of UDP receivers.
    pub shed: Arc<Shedder>,
    /// `sip.max_message_size`.
    pub max_message_size: usize,
    /// Limits of accepted connections.
    pub limits: StreamLimits,
    /// Trunk source networks, for TCP admission.
    pub trunks: TrunkSources,
    /// The open connections.
    pub streams: Connections,
    /// The TLS listeners' configuration, if `[sip.tls]` is set (also that of `wss:` listeners).
    pub acceptor: Option<crate::tls::Acceptor>,
    /// How `ws:` and `wss:` listeners judge upgrades (`[sip.ws]`).
    pub ws_policy: Arc<crate::transport::stream::UpgradePolicy>,
    /// Where WebSocket connections report that they closed, for the driver (their calls end).
    pub ws_closed: tokio::sync::mpsc::Sender<sbc_proto::transport::Peer>,
}

/// A bound listener, its task not started yet.
#[derive(Debug)]
pub struct Bound {
    spec: ListenAddr,
    /// The bound address (a configured port 0 becomes the real one).
    pub local: SocketAddr,
    socket: Socket,
}

#[derive(Debug)]
enum Socket {
    Udp(Arc<UdpSocket>),
    Tcp(tokio::net::TcpListener),
}

/// A running listener.
#[derive(Debug)]
struct Open {
    spec: ListenAddr,
    local: SocketAddr,
    udp: Option<Arc<UdpSocket>>,
    task: tokio::task::JoinHandle<()>,
}

/// What a reload changes in the listeners: bound, not yet running.
#[derive(Debug, Default)]
pub struct Change {
    /// Listeners to add, bound.
    pub added: Vec<Bound>,
    /// Listeners to remove.
    pub removed: Vec<ListenAddr>,
}

impl Change {
    /// The UDP sockets the driver sends on from now on, by local address.
    pub fn udp_added(&self) -> Vec<(SocketAddr, Arc<UdpSocket>)> {
        self.added
            .iter()
            .filter_map(|b| match &b.socket {
                Socket::Udp(s) => Some((b.local, s.clone())),
                Socket::Tcp(_) => None,
            })
            .collect()
    }

    /// One line per listener added or removed, for the reload's change list.
    pub fn describe(&self) -> Vec<String> {
        let added = self.added.iter().map(|b| format!("listener {}:{} added", b.spec.transport, b.local));
        let removed = self.removed.iter().map(|l| format!("listener {}:{} removed", l.transport, l.addr));
        added.chain(removed).collect()
    }
}

/// The running listeners.
#[derive(Debug)]
pub struct Listeners {
    ctx: Context,
    open: Vec<Open>,
}

impl Listeners {
    /// No listener yet.
    pub fn new(ctx: Context) -> Self {
        Self { ctx, open: Vec::new() }
    }

    /// Binds `l` (not started).
    pub fn bind(&self, l: &ListenAddr) -> anyhow::Result<Bound> {
        let socket = match l.transport {
            Transport::Udp => Socket::Udp(udp::bind(l.addr)?),
            Transport::Tcp => Socket::Tcp(tcp::bind(l.addr)?),
            Transport::Tls if self.ctx.acceptor.is_some() => Socket::Tcp(tcp::bind(l.addr)?),
            Transport::Tls => anyhow::bail!("no [sip.tls]: a TLS listener needs its certificate"),
            Transport::Ws => Socket::Tcp(tcp::bind(l.addr)?),
            Transport::Wss if self.ctx.acceptor.is_some() => Socket::Tcp(tcp::bind(l.addr)?),
            Transport::Wss => anyhow::bail!("no [sip.tls]: a wss: listener needs its certificate"),
        };
        let local = match &socket {
            Socket::Udp(s) => s.local_addr()?,
            Socket::Tcp(s) => s.local_addr()?,
        };
        Ok(Bound { spec: *l, local, socket })
    }

    /// Starts the task of a bound listener.
    pub fn start(&mut self, b: Bound) {
        let c = &self.ctx;
        let (udp, task) = match b.socket {
            Socket::Udp(sock) => {
                let task = tokio::spawn(udp::receive(
                    sock.clone(),
                    c.max_message_size,
                    c.guard.clone(),
                    c.shed.clone(),
                    c.queues.clone(),
                ));
                (Some(sock), task)
            }
            Socket::Tcp(listener) => {
                let ws = |tls: Option<&crate::tls::Acceptor>| {
                    tcp::Security::WebSocket(crate::transport::ws::WsListener {
                        tls: tls.cloned(),
                        policy: c.ws_policy.clone(),
                        closed: c.ws_closed.clone(),
                    })
                };
                let security = match (&c.acceptor, b.spec.transport) {
                    (Some(a), Transport::Tls) => tcp::Security::Tls(a.clone()),
                    (Some(a), Transport::Wss) => ws(Some(a)),
                    (_, Transport::Ws) => ws(None),
                    _ => tcp::Security::Plain,
                };
                let task = tokio::spawn(tcp::listen(
                    listener,
                    security,
                    c.limits,
                    c.trunks.clone(),
                    c.streams.clone(),
                    c.guard.clone(),
                    c.queues.clone(),
                ));
                (None, task)
            }
        };
        tracing::info!(listen = %format!("{}:{}", b.spec.transport, b.local), "SIP listening");
        self.open.push(Open { spec: b.spec, local: b.local, udp, task });
    }

    /// Bound addresses by transport, for the core (leg B's Via and Contact).
    pub fn locals(&self) -> Vec<(sbc_proto::transport::Transport, SocketAddr)> {
        self.open.iter().map(|o| (o.spec.transport, o.local)).collect()
    }

    /// The UDP sockets, by local address, for the driver to send on.
    pub fn udp_sockets(&self) -> impl Iterator<Item = (SocketAddr, Arc<UdpSocket>)> + '_ {
        self.open.iter().filter_map(|o| o.udp.clone().map(|s| (o.local, s)))
    }

    /// The change from the running listeners to `wanted`: those to add are bound now. `Err((index, reason))`: the
    /// listener `sip.listen[index]` cannot be bound (nothing is kept bound).
    pub fn prepare(&self, wanted: &[ListenAddr]) -> Result<Change, (usize, String)> {
        let mut change = Change::default();
        for (i, l) in wanted.iter().enumerate() {
            if !self.open.iter().any(|o| o.spec == *l) {
                change
                    .added
                    .push(self.bind(l).map_err(|e| (i, format!("cannot bind {}:{}: {e:#}", l.transport, l.addr)))?);
            }
        }
        change.removed = self.open.iter().map(|o| o.spec).filter(|s| !wanted.contains(s)).collect();
        Ok(change)
    }

    /// The local addresses once `change` is carried out.
    pub fn locals_after(&self, change: &Change) -> Vec<(sbc_proto::transport::Transport, SocketAddr)> {
        let kept = self.open.iter().filter(|o| !change.removed.contains(&o.spec)).map(|o| (o.spec.transport, o.local));
        kept.chain(change.added.iter().map(|b| (b.spec.transport, b.local))).collect()
    }

    /// The local addresses of the UDP listeners `change` removes.
    pub fn udp_removed(&self, change: &Change) -> Vec<SocketAddr> {
        let removed = self.open.iter().filter(|o| o.udp.is_some() && change.removed.contains(&o.spec));
        removed.map(|o| o.local).collect()
    }

    /// Tells trunk sources from others at accept by `plan` from now on (a reload).
    pub fn set_plan(&self, plan: &sbc_proto::routing::Plan) {
        self.ctx.trunks.set_plan(plan);
    }

    /// Carries out `change` once the driver has taken it: starts the added listeners, stops the removed ones.
    pub fn commit(&mut self, change: Change) {
        for l in &change.removed {
            if let Some(i) = self.open.iter().position(|o| o.spec == *l) {
                let o = self.open.remove(i);
                o.task.abort();
                tracing::info!(listen = %format!("{}:{}", l.transport, o.local), "SIP listener closed by a reload");
            }
        }
        for b in change.added {
            self.start(b);
        }
    }

    /// Stops every listener.
    pub fn stop(&mut self) {
        for o in self.open.drain(..) {
            o.task.abort();
        }
    }
}
