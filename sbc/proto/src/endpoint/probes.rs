//! OPTIONS probes of carrier gateways (trunk health): one probe per gateway per interval; a probe still
//! unanswered when the next one is due counts as failed, so a dead gateway is found after `down_after`
//! intervals rather than after `down_after` expiries of timer F (32 s each). Gateways named by DNS are probed at
//! every target they resolved to, and the set follows each new answer ([`Probes::set_targets`]).

use super::{IdGenerator, Observation, Output};
use crate::msg::{HeaderName, Method, Request, Response, Uri};
use crate::routing::{Gateway, GatewayHealth, Plan, Target, TrunkId};
use crate::transport::{Peer, Transport};
use crate::txn::{TransactionKey, Transactions};
use bytes::Bytes;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

#[derive(Debug)]
struct Gw {
    trunk: TrunkId,
    peer: Peer,
    health: GatewayHealth,
    inflight: Option<TransactionKey>,
    /// The trunk's DNS-named gateway (index into `dns_gateways`) this target was resolved from; `None`: configured
    /// by address.
    dns: Option<usize>,
}

/// Every probed gateway.
#[derive(Debug, Default)]
pub(super) struct Probes {
    gws: Vec<Gw>,
    by_key: HashMap<TransactionKey, usize>,
    /// Whether a gateway went up or down since [`Probes::take_down_changed`] last looked.
    down_changed: bool,
}

impl Probes {
    /// The gateways of every trunk with a `probe` setting, reachable from one of `locals`.
    pub(super) fn new(plan: &Plan, locals: &[(Transport, SocketAddr)]) -> Self {
        let mut gws = Vec::new();
        for (i, t) in plan.trunks.iter().enumerate() {
            let Some(cfg) = t.probe else { continue };
            for g in &t.gateways {
                let Some(local) = crate::b2bua::pick_local(locals, g.transport, g.addr) else { continue };
                gws.push(Gw {
                    trunk: TrunkId(i as u32),
                    peer: Peer { transport: g.transport, local, remote: g.addr, conn: None },
                    health: GatewayHealth::new(cfg),
                    inflight: None,
                    dns: None,
                });
            }
        }
        Self { gws, by_key: HashMap::new(), down_changed: false }
    }

    /// The probes of a reloaded `plan` (trunk ids kept from `old`, see [`crate::routing::Plan::trunk`]): a gateway
    /// still probed with the same settings keeps its health and any probe in flight, so a reload does not make a
    /// down carrier usable again; new gateways start fresh, those no longer listed are dropped. Returns the trunks
    /// whose state changed.
    pub(super) fn reload(
        &mut self,
        old: &Plan,
        plan: &Plan,
        locals: &[(Transport, SocketAddr)],
    ) -> Vec<(TrunkId, bool)> {
        let before: Vec<bool> = (0..plan.trunks.len()).map(|i| self.trunk_up(TrunkId(i as u32))).collect();
        let same_probe = |t: TrunkId| {
            old.trunks.get(t.0 as usize).map(|o| o.probe) == plan.trunks.get(t.0 as usize).map(|n| n.probe)
        };
        let mut old_gws: Vec<Gw> = std::mem::take(&mut self.gws).into_iter().filter(|g| same_probe(g.trunk)).collect();
        let fresh = Self::new(plan, locals);
        for g in fresh.gws {
            let same = |o: &Gw| o.trunk == g.trunk && o.dns.is_none() && o.peer == g.peer;
            let gw = match old_gws.iter().position(same) {
                Some(i) => old_gws.swap_remove(i),
                None => g,
            };
            self.gws.push(gw);
        }
        // DNS-named gateways are the same names across a reload (the server refuses to change them): their
        // resolved targets stay probed.
        self.gws.extend(old_gws.into_iter().filter(|g| g.dns.is_some()));
        self.by_key.clear();
        for (i, g) in self.gws.iter().enumerate() {
            if let Some(k) = &g.inflight {
                self.by_key.insert(k.clone(), i);
            }
        }
        self.down_changed = true;
        (0..plan.trunks.len())
            .map(|i| TrunkId(i as u32))
            .filter(|&t| before.get(t.0 as usize).copied() != Some(self.trunk_up(t)))
            .map(|t| (t, self.trunk_up(t)))
            .collect()
    }

    /// The targets DNS-named gateway `dns` of `trunk` resolved to now: each is probed (a target kept from the last
    /// answer keeps its health), those no longer named are not. Returns trunk state changes.
    pub(super) fn set_targets(
        &mut self,
        plan: &Plan,
        locals: &[(Transport, SocketAddr)],
        trunk: TrunkId,
        dns: usize,
        targets: &[Target],
    ) -> Vec<(TrunkId, bool)> {
        let Some(cfg) = plan.trunks.get(trunk.0 as usize).and_then(|t| t.probe) else { return Vec::new() };
        let before = self.trunk_up(trunk);
        let mut old: Vec<Gw> = Vec::new();
        let mut kept = Vec::with_capacity(self.gws.len());
        for g in self.gws.drain(..) {
            if g.trunk == trunk && g.dns == Some(dns) {
                old.push(g);
            } else {
                kept.push(g);
            }
        }
        for t in targets {
            let g = t.gateway;
            let Some(local) = crate::b2bua::pick_local(locals, g.transport, g.addr) else { continue };
            let peer = Peer { transport: g.transport, local, remote: g.addr, conn: None };
            let same = |o: &Gw| o.peer.remote == peer.remote && o.peer.transport == peer.transport;
            if kept.iter().any(|k| k.trunk == trunk && same(k)) {
                continue;
            }
            let gw = match old.iter().position(same) {
                Some(i) => old.swap_remove(i),
                None => Gw { trunk, peer, health: GatewayHealth::new(cfg), inflight: None, dns: Some(dns) },
            };
            kept.push(gw);
        }
        self.gws = kept;
        // Indexes moved: a probe still out for a target that stays is found again; the others are forgotten.
        self.by_key.clear();
        for (i, g) in self.gws.iter().enumerate() {
            if let Some(k) = &g.inflight {
                self.by_key.insert(k.clone(), i);
            }
        }
        self.down_changed = true;
        let after = self.trunk_up(trunk);
        if before == after {
            Vec::new()
        } else {
            vec![(trunk, after)]
        }
    }

    /// The gateways their probes say are down, if that set changed since the last call.
    pub(super) fn take_down_changed(&mut self) -> Option<HashSet<Gateway>> {
        if !std::mem::take(&mut self.down_changed) {
            return None;
        }
        let down = self.gws.iter().filter(|g| !g.health.is_up());
        Some(down.map(|g| Gateway { transport: g.peer.transport, addr: g.peer.remote }).collect())
    }

    /// The next probe due. Gateways never probed are probed at the endpoint's first timeout, which the driver
    /// runs at start.
    pub(super) fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        self.gws.iter().map(|g| g.health.next_probe_at(now)).filter(|&t| t != now).min()
    }

    /// Whether `trunk` has a gateway up (trunks without probes are always up).
    pub(super) fn trunk_up(&self, trunk: TrunkId) -> bool {
        let mut probed = self.gws.iter().filter(|g| g.trunk == trunk).peekable();
        probed.peek().is_none() || probed.any(|g| g.health.is_up())
    }

    /// Whether the probes of the gateway at `peer` (its transport and address) say it is down.
    pub(super) fn gateway_down(&self, peer: &Peer) -> bool {
        self.gws.iter().any(|g| g.peer.remote == peer.remote && g.peer.transport == peer.transport && !g.health.is_up())
    }

    /// Sends the probes due at `now`; returns trunks whose state changed, with their new state.
    pub(super) fn send_due(
        &mut self,
        now: Instant,
        txns: &mut Transactions,
        ids: &mut IdGenerator,
        server: &str,
    ) -> Vec<(TrunkId, bool)> {
        let mut changed = Vec::new();
        for i in 0..self.gws.len() {
            if self.gws[i].health.next_probe_at(now) > now {
                continue;
            }
            if let Some(old) = self.gws[i].inflight.take() {
                self.by_key.remove(&old);
                changed.extend(self.result(i, false));
            }
            let g = &mut self.gws[i];
            let req = options(&g.peer, ids, server);
            g.health.on_probe_sent(now);
            if let Ok(k) = txns.send_request(now, g.peer, req) {
                g.inflight = Some(k.clone());
                self.by_key.insert(k, i);
            }
        }
        changed
    }

    pub(super) fn owns(&self, key: &TransactionKey) -> bool {
        self.by_key.contains_key(key)
    }

    /// The probed gateways of `trunk` (DNS targets included) and the state their probes give each.
    pub(super) fn gateways_of(&self, trunk: TrunkId) -> Vec<(Gateway, crate::routing::HealthState)> {
        let of = self.gws.iter().filter(|g| g.trunk == trunk);
        of.map(|g| (Gateway { transport: g.peer.transport, addr: g.peer.remote }, g.health.state())).collect()
    }

    /// The answer (or `None`: timer F) to probe `key`.
    pub(super) fn on_result(&mut self, key: &TransactionKey, resp: Option<&Response>) -> Vec<(TrunkId, bool)> {
        if resp.is_some_and(Response::is_provisional) {
            return Vec::new();
        }
        let Some(i) = self.by_key.remove(key) else { return Vec::new() };
        self.gws[i].inflight = None;
        // Any final answer means the gateway is alive, except 408 and 503, which say it cannot take calls.
        let ok = resp.is_some_and(|r| r.status != 408 && r.status != 503);
        self.result(i, ok).into_iter().collect()
    }

    fn result(&mut self, i: usize, ok: bool) -> Option<(TrunkId, bool)> {
        let trunk = self.gws[i].trunk;
        let before = self.trunk_up(trunk);
        self.gws[i].health.on_probe_result(ok)?;
        self.down_changed = true;
        let after = self.trunk_up(trunk);
        (before != after).then_some((trunk, after))
    }

    /// Reports trunk state changes.
    pub(super) fn observe(out: &mut VecDeque<Output>, changes: Vec<(TrunkId, bool)>) {
        for (trunk, up) in changes {
            out.push_back(Output::Observe(Observation::TrunkState { trunk, up }));
        }
    }
}

fn options(peer: &Peer, ids: &mut IdGenerator, server: &str) -> Request {
    let uri = Uri::parse(Bytes::from(format!("sip:{}", peer.remote))).expect("an IP URI parses");
    let mut r = Request::new(Method::Options, uri);
    r.headers.push(HeaderName::Via, crate::dialog::via(peer, &ids.branch()));
    r.headers.push(HeaderName::MaxForwards, "70");
    r.headers.push(HeaderName::From, format!("<sip:ping@{}>;tag={}", peer.local.ip(), ids.tag()));
    r.headers.push(HeaderName::To, format!("<sip:{}>", peer.remote));
    r.headers.push(HeaderName::CallId, ids.call_id());
    r.headers.push(HeaderName::CSeq, "1 OPTIONS");
    r.headers.push(HeaderName::UserAgent, server.to_owned());
    r
}
