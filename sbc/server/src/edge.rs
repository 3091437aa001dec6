//! The edge guard as the transports and the driver share it: [`sbc_proto::policy::Edge`] behind a lock, with the
//! routing plan that says which sources are trunks, and the metrics of what it decided.
//!
//! The transports ask it about every message right after the read ([`EdgeGuard::admit`]), before anything is
//! queued for the driver, so a flood from a banned or over-rate source costs one lookup per datagram and never
//! takes a place in the queue. The driver tells it of offences the core found, and carries out its ban events
//! (the XDP ban map through the relay, the standby of a pair, the log).

use sbc_proto::policy::{BanEvent, Edge, EdgeConfig, Offence, Verdict};
use sbc_proto::routing::Plan;
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Instant;

/// Messages dropped by the guard, by `reason` (banned, rate, table_full).
pub const DROPPED: &str = "sbc_edge_dropped_total";
/// Bans made, by `reason` (rate, auth_failures, malformed, scanner) and `origin` (local, peer).
pub const BANS: &str = "sbc_edge_bans_total";
/// Bans in force.
pub const BANS_ACTIVE: &str = "sbc_edge_bans_active";
/// Offences reported, by `kind` (malformed, auth_failed, scanner).
pub const OFFENCES: &str = "sbc_edge_offences_total";
/// Sources tracked.
pub const SOURCES: &str = "sbc_edge_sources_tracked";

/// The shared guard. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EdgeGuard {
    edge: Arc<Mutex<Edge>>,
    /// Shared by every clone, so a reload ([`EdgeGuard::set_plan`]) reaches every transport task at once.
    plan: Arc<RwLock<Arc<Plan>>>,
    /// Addresses DNS-named gateways resolved to: carriers as much as the plan's own gateways.
    resolved: Arc<RwLock<HashSet<IpAddr>>>,
}

impl EdgeGuard {
    /// A guard with `config`; `plan` tells trunks from unknown sources.
    pub fn new(config: EdgeConfig, plan: Arc<Plan>) -> Self {
        for r in sbc_proto::policy::BanReason::ALL {
            metrics::counter!(BANS, "reason" => r.label(), "origin" => "local").absolute(0);
        }
        for reason in ["banned", "rate", "table_full"] {
            metrics::counter!(DROPPED, "reason" => reason).absolute(0);
        }
        metrics::gauge!(BANS_ACTIVE).set(0.0);
        Self {
            edge: Arc::new(Mutex::new(Edge::new(config))),
            plan: Arc::new(RwLock::new(plan)),
            resolved: Arc::default(),
        }
    }

    /// Tells trunks from unknown sources by `plan` from now on (a reload).
    pub fn set_plan(&self, plan: Arc<Plan>) {
        *self.plan.write().unwrap_or_else(std::sync::PoisonError::into_inner) = plan;
    }

    fn lock(&self) -> MutexGuard<'_, Edge> {
        // The guard's state stays consistent between calls; a panic elsewhere must not stop the edge.
        self.edge.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a message from `remote` may go on (false: drop it; counted here).
    pub fn admit(&self, remote: SocketAddr) -> bool {
        self.admit_from(remote, None)
    }

    /// [`EdgeGuard::admit`] for a message on a TLS connection whose client certificate named `identity`: a
    /// certificate that names a trunk (`match.tls`) makes the source that trunk's, whatever its address, so its
    /// rate is `rate_trusted`.
    pub fn admit_from(&self, remote: SocketAddr, identity: Option<&sbc_proto::transport::TlsIdentity>) -> bool {
        let plan = Arc::clone(&self.plan.read().unwrap_or_else(std::sync::PoisonError::into_inner));
        let trusted = plan.is_known_peer(remote, identity) || self.is_resolved(remote.ip());
        let verdict = self.lock().check(Instant::now(), remote.ip(), trusted);
        let reason = match verdict {
            Verdict::Pass => return true,
            Verdict::Banned(_) => "banned",
            Verdict::OverRate => "rate",
            Verdict::TableFull => "table_full",
        };
        metrics::counter!(DROPPED, "reason" => reason).increment(1);
        false
    }

    /// Makes `ip` a carrier's address (a DNS-named gateway resolved to it): its messages get `rate_trusted`. Kept
    /// for the process's life: a carrier's old address may still answer calls it was given.
    pub fn add_known(&self, ip: IpAddr) {
        if !self.is_resolved(ip) {
            self.resolved.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(ip);
        }
    }

    fn is_resolved(&self, ip: IpAddr) -> bool {
        self.resolved.read().unwrap_or_else(std::sync::PoisonError::into_inner).contains(&ip)
    }

    /// Whether `addr` is banned now (a TCP connection from it is refused at accept).
    pub fn banned(&self, addr: IpAddr) -> bool {
        self.lock().banned(Instant::now(), addr).is_some()
    }

    /// An offence the core found.
    pub fn report(&self, source: SocketAddr, offence: &Offence) {
        let kind = match offence {
            Offence::Malformed => "malformed",
            Offence::AuthFailed { .. } => "auth_failed",
            Offence::Scanner => "scanner",
        };
        metrics::counter!(OFFENCES, "kind" => kind).increment(1);
        self.lock().report(Instant::now(), source.ip(), offence);
    }

    /// A ban made by the active of the pair.
    pub fn apply_replicated(&self, addr: IpAddr, reason: &str, remaining: std::time::Duration) {
        let Some(reason) = sbc_proto::policy::BanReason::from_label(reason) else {
            tracing::warn!(%addr, reason, "replicated ban with an unknown reason: ignored");
            return;
        };
        self.lock().apply_replicated(Instant::now(), addr, reason, remaining);
    }

    /// Lifts expired bans, forgets quiet sources, and returns the ban changes to carry out.
    pub fn poll(&self) -> Vec<BanEvent> {
        let mut edge = self.lock();
        edge.handle_timeout(Instant::now());
        let events: Vec<BanEvent> = std::iter::from_fn(|| edge.poll_event()).collect();
        metrics::gauge!(BANS_ACTIVE).set(edge.bans(Instant::now()).len() as f64);
        metrics::gauge!(SOURCES).set(edge.tracked() as f64);
        events
    }

    /// Every ban in force, with what is left of it.
    pub fn bans(&self) -> Vec<(IpAddr, sbc_proto::policy::BanReason, std::time::Duration)> {
        self.lock().bans(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sbc_proto::transport::TlsIdentity;

    #[test]
    fn a_certificate_that_names_a_trunk_gets_the_trunks_rate_from_any_address() {
        let mut trunk = sbc_proto::routing::Trunk::new("pbx");
        trunk.tls_identities = vec!["pbx.example.net".into()];
        let plan = Arc::new(Plan { trunks: vec![trunk], ..Plan::default() });
        let config = EdgeConfig { rate_unknown: Some(5), ..EdgeConfig::default() };
        let guard = EdgeGuard::new(config, plan);
        let id = TlsIdentity::new(["pbx.example.net".to_owned()]);
        let (pbx, stranger) = ("203.0.113.7:40000".parse().expect("addr"), "203.0.113.8:40000".parse().expect("addr"));
        let passed = (0..50).filter(|_| guard.admit_from(pbx, Some(&id))).count();
        assert_eq!(passed, 50, "the trunk's rate (unlimited) applies");
        let passed = (0..50).filter(|_| guard.admit(stranger)).count();
        assert!(passed <= 6, "{passed} of 50 passed at a rate_unknown of 5/s");
    }
}
