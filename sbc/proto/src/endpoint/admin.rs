//! What the admin API asks of the core, as plain calls that return values: the calls, hanging one up, the trunks
//! with their gateways' probe state and their registration, taking a trunk out of routing, and route lookup.
//! The driver calls these between two inputs; hanging up produces outputs like any input.

use super::Endpoint;
use crate::b2bua::{CallSnapshot, HangupError, RouteLookup, UnknownTrunk};
use crate::routing::{Gateway, HealthState, Limits, TrunkId};
use std::time::{Duration, Instant};

/// A trunk as it stands: configuration, state, counters.
#[derive(Debug, Clone, PartialEq)]
pub struct TrunkStatus {
    /// Its index in the configuration.
    pub id: TrunkId,
    /// Its name.
    pub name: String,
    /// Whether routing may send calls to it now (probes and registration say so; disabling is apart).
    pub up: bool,
    /// Disabled in the configuration (`disabled = true`).
    pub disabled_by_config: bool,
    /// Taken out of routing by the admin API.
    pub disabled_by_admin: bool,
    /// Calls counted against its limits now (both directions, attempts included).
    pub active: u32,
    /// Calls in progress that came from it.
    pub calls_from: usize,
    /// Calls in progress sent to it (answered or being tried).
    pub calls_to: usize,
    /// Its limits.
    pub limits: Limits,
    /// Its gateways, configured ones first, then targets of DNS names, with their probe state.
    pub gateways: Vec<GatewayStatus>,
    /// Its registration with the carrier, if it registers.
    pub registration: Option<RegistrationStatus>,
}

/// One gateway of a trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayStatus {
    /// Where.
    pub gateway: Gateway,
    /// Resolved from a DNS name (RFC 3263) rather than configured by address.
    pub from_dns: bool,
    /// What its OPTIONS probes say; `None`: the trunk is not probed.
    pub probe: Option<HealthState>,
}

/// The registration of a trunk with its carrier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationStatus {
    /// Where REGISTERs go.
    pub registrar: Gateway,
    /// The address-of-record registered.
    pub aor: String,
    /// Whether the registrar holds our binding.
    pub registered: bool,
    /// How long the binding still holds.
    pub expires_in: Option<Duration>,
    /// Consecutive failed attempts.
    pub failures: u32,
    /// Whether this box registers at all (not the standby of a pair).
    pub running: bool,
}

impl Endpoint {
    /// Every call in progress as of `now`, by number.
    pub fn calls_snapshot(&self, now: Instant) -> Vec<CallSnapshot> {
        self.calls.list(now)
    }

    /// Call `id` as of `now`.
    pub fn call_snapshot(&self, id: u64, now: Instant) -> Option<CallSnapshot> {
        self.calls.one(id, now)
    }

    /// Hangs up call `id` at `now` (BYE on both legs of an answered call; CANCEL and 480 for one being set up);
    /// its CDR says release cause `admin`. Drain [`Endpoint::poll_output`] afterwards.
    pub fn hang_up(&mut self, now: Instant, id: u64) -> Result<(), HangupError> {
        self.last_now = Some(now);
        let (mut ctx, calls) = self.ctx(now);
        let result = calls.hang_up(&mut ctx, id);
        self.drain_txns(now);
        result
    }

    /// Every trunk as it stands at `now`, in configuration order.
    pub fn trunk_status(&self, now: Instant) -> Vec<TrunkStatus> {
        let plan = self.calls.plan();
        let per_trunk = self.calls.calls_per_trunk();
        (0..plan.trunks.len() as u32)
            .map(TrunkId)
            .map(|id| {
                let t = plan.trunk(id);
                let probed = self.probes.gateways_of(id);
                let state_of = |g: &Gateway| probed.iter().find(|(p, _)| p == g).map(|(_, s)| *s);
                let mut gateways: Vec<GatewayStatus> = t
                    .gateways
                    .iter()
                    .map(|g| GatewayStatus { gateway: *g, from_dns: false, probe: state_of(g) })
                    .collect();
                for (g, s) in &probed {
                    if !t.gateways.contains(g) {
                        gateways.push(GatewayStatus { gateway: *g, from_dns: true, probe: Some(*s) });
                    }
                }
                let (calls_from, calls_to) = per_trunk.get(id.0 as usize).copied().unwrap_or_default();
                TrunkStatus {
                    id,
                    name: t.name.clone(),
                    up: self.calls.trunk_usable(id),
                    disabled_by_config: t.disabled,
                    disabled_by_admin: self.calls.trunk_disabled_by_admin(id),
                    active: self.calls.active_on(id),
                    calls_from,
                    calls_to,
                    limits: t.limits,
                    gateways,
                    registration: self.registrations.status_of(id, now),
                }
            })
            .collect()
    }

    /// Takes trunk `name` out of routing (`enabled` false) or puts it back; calls up on it are untouched. Returns
    /// whether its state changed.
    pub fn set_trunk_enabled(&mut self, name: &str, enabled: bool) -> Result<bool, UnknownTrunk> {
        let id = self.calls.plan().by_name(name).ok_or_else(|| UnknownTrunk(name.to_owned()))?;
        Ok(self.calls.set_trunk_disabled(id, !enabled))
    }

    /// Which carriers a call to `number` from trunk `from` (by name, for its number rules; `None`: none) would try
    /// at `now`, without placing a call: the selection a real call makes, with this core's random draws.
    /// `Ok(None)`: no route matches.
    pub fn route_lookup(
        &mut self,
        number: &str,
        from: Option<&str>,
        now: Instant,
    ) -> Result<Option<RouteLookup>, UnknownTrunk> {
        let from = match from {
            Some(name) => Some(self.calls.plan().by_name(name).ok_or_else(|| UnknownTrunk(name.to_owned()))?),
            None => None,
        };
        let ids = &mut self.ids;
        Ok(self.calls.route_lookup(number, from, now, &mut || ids.random()))
    }
}
