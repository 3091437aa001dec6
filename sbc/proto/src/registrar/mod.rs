//! The SBC as registrar (RFC 3261 §10.3) for a configured set of users, so that clients that cannot be reached at a
//! fixed address (browsers, softphones behind NAT) can receive calls.
//!
//! A user is authenticated by digest (401 with qop=auth; a nonce older than its lifetime gets `stale=true`), then
//! its Contacts are bound to its address-of-record. A binding remembers the flow the REGISTER came in on
//! ([`Peer`]: transport, our address, the source address, and the driver's connection for reliable transports):
//! a call to the user goes back over that flow (RFC 5626 §5.3), not to the Contact's host, which behind a NAT or in
//! a browser (`.invalid`, RFC 7118) is no address at all. Bindings expire on their own ([`Registrar::handle_timeout`])
//! and leave with their connection ([`Registrar::flow_closed`]).
//!
//! Calls from users are challenged (407) and routed like a trunk's: the users form one pseudo-trunk
//! ([`RegistrarConfig::trunk`]) named in routes and CDRs. A route to that trunk reaches the user named by the called
//! number ([`Registrar::lookup`]): 404 for no such user, 480 when it has no binding.
//!
//! What the transports must do (the interface for TCP, TLS and WebSocket): a REGISTER comes in through
//! `Endpoint::handle_message` with the [`Peer`] it arrived on, its `conn` set for a connection; a request to that
//! user later comes out as `Output::Transmit` with that same `Peer`, `conn` included, and must be written to that
//! connection (never dialled at the Contact, whose host may be `.invalid`). When a connection closes, the driver calls
//! `Endpoint::flow_closed(now, conn)`: the bindings made over it are removed (and the removal replicated). A standby
//! holds the active's bindings without their connection (`conn: None`): after a takeover a request to a UDP user goes
//! to its address, to a TCP/TLS user over a new connection to its address, and a WebSocket user (which cannot be
//! dialled) must register again on the new active.
//!
//! Everything here is sans-IO: the time comes in as `Instant`s, nonces are made from the pair's shared secret and the
//! driver's wall clock ([`NonceConfig`]), so a binding and a nonce made on the active are good on the standby.

mod register;
mod replicate;
#[cfg(test)]
mod tests;

use crate::policy::digest::{NonceConfig, NonceIssuer, Secret};
use crate::routing::TrunkId;
use crate::transport::{ConnId, Peer};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use register::{Registered, OUTBOUND};

/// How long a nonce of a REGISTER challenge stays good: clients reuse it (with nc) for refreshes.
const NONCE_LIFETIME_SECS: u64 = 300;

/// A user who may register, and call with the same credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user part of the address-of-record (`sip:NAME@domain`), also the digest username. Calls to this number
    /// reach the user.
    pub name: String,
    /// The digest password.
    pub password: Secret,
}

/// The registrar's settings (`[registrar]` in the configuration).
#[derive(Debug, Clone)]
pub struct RegistrarConfig {
    /// Domains we are registrar for: the host of a REGISTER's Request-URI must be one of them. Empty: any host.
    pub domains: Vec<String>,
    /// Digest realm of the REGISTER challenge (401).
    pub realm: String,
    /// The users.
    pub users: Vec<User>,
    /// Shortest registration accepted (RFC 3261 §10.3 step 7: shorter ones get 423 with Min-Expires).
    pub min_expires: u32,
    /// Longest registration granted: longer requests are cut to this.
    pub max_expires: u32,
    /// Granted when the REGISTER asks for no expiry.
    pub default_expires: u32,
    /// Most bindings of one user; a new Contact beyond this replaces the user's oldest binding.
    pub max_contacts: usize,
    /// The pseudo-trunk of the users: calls from users come in on it, routes to it reach users.
    pub trunk: TrunkId,
    /// Seconds sent as `Flow-Timer` in the 200 to an outbound registration (RFC 5626 §6): how long the flow may
    /// stay without a keep-alive before we may take it for dead. The server derives it from the stream idle
    /// timeout (`sip.tcp_idle_timeout`) so that a client's keep-alive, sent at 80–100 % of it (§4.4.1), comes
    /// before the idle close.
    pub flow_timer: u32,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        Self {
            domains: Vec::new(),
            realm: "sbc".into(),
            users: Vec::new(),
            min_expires: 60,
            max_expires: 3600,
            default_expires: 600,
            max_contacts: 5,
            trunk: TrunkId(0),
            flow_timer: 270,
        }
    }
}

impl RegistrarConfig {
    /// The user called `name`.
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }
}

/// One Contact bound to a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The Contact URI as registered: the Request-URI of requests to the user.
    pub contact: Bytes,
    /// RFC 5626 `+sip.instance`, if the client gave one: a new REGISTER of the same instance (and `reg_id`)
    /// replaces this binding.
    pub instance: Option<Bytes>,
    /// RFC 5626 `reg-id`, kept only together with `instance`: such a binding is an outbound registration, keyed by
    /// (AOR, instance, reg-id) (§6), so one instance may hold one binding per flow (per reg-id) side by side.
    pub reg_id: Option<u32>,
    /// The flow the REGISTER came in on: requests to the user go back on it.
    pub flow: Peer,
    /// When the binding lapses.
    pub expires: Instant,
    /// Call-ID and CSeq of the REGISTER that made or refreshed it (§10.3 step 7: older ones are refused).
    pub call_id: Bytes,
    /// See `call_id`.
    pub cseq: u32,
}

impl Binding {
    /// The RFC 5626 key of an outbound registration's binding; `None` for any other.
    pub fn flow_key(&self) -> Option<FlowKey> {
        Some(FlowKey { instance: self.instance.clone()?, reg_id: self.reg_id? })
    }
}

/// What identifies an outbound registration's binding within its AOR (RFC 5626 §6): the instance and reg-id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// `+sip.instance`, as the client sent it (quotes and angle brackets included).
    pub instance: Bytes,
    /// `reg-id`.
    pub reg_id: u32,
}

/// What a lookup of a called user found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// No such user: 404.
    Unknown,
    /// A user without a binding now: 480.
    NotRegistered,
    /// The user's most recent binding.
    Bound(&'a Binding),
}

/// A change of a binding, for the standby ([`crate::ha::Record::Binding`]) and for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingChange {
    /// The user.
    pub user: String,
    /// The binding as it is now; `None`: removed (un-REGISTER, expiry, closed flow).
    pub binding: Option<Binding>,
    /// The Contact URI, also for a removal.
    pub contact: Bytes,
    /// The binding's [`FlowKey`] for an outbound registration, also for a removal: the standby matches such a
    /// change by it, not by the Contact (two flows of one instance may register the same Contact URI).
    pub flow_key: Option<FlowKey>,
}

impl BindingChange {
    /// The removal of `b` of `user`.
    pub fn removal(user: &str, b: &Binding) -> Self {
        Self { user: user.to_owned(), binding: None, contact: b.contact.clone(), flow_key: b.flow_key() }
    }

    /// Whether this change is about binding `b`: the same [`FlowKey`] for an outbound one, else the same Contact.
    fn concerns(&self, b: &Binding) -> bool {
        match &self.flow_key {
            Some(k) => b.flow_key().as_ref() == Some(k),
            None => b.contact == self.contact,
        }
    }
}

/// The bindings of all users, and the nonces of REGISTER challenges.
#[derive(Debug)]
pub struct Registrar {
    config: Arc<RegistrarConfig>,
    bindings: HashMap<String, Vec<Binding>>,
    nonce_config: NonceConfig,
    nonces: Option<NonceIssuer>,
    nonce_epoch: Option<Instant>,
}

impl Registrar {
    /// A registrar with no bindings yet, making nonces as `nonces` says.
    pub fn new(config: Arc<RegistrarConfig>, nonces: NonceConfig) -> Self {
        Self { config, bindings: HashMap::new(), nonce_config: nonces, nonces: None, nonce_epoch: None }
    }

    /// The settings.
    pub fn config(&self) -> &RegistrarConfig {
        &self.config
    }

    /// Bindings held now, over all users (the `sbc_registrar_bindings` gauge).
    pub fn active(&self) -> usize {
        self.bindings.values().map(Vec::len).sum()
    }

    /// The bindings of `user`, oldest first.
    pub fn bindings(&self, user: &str) -> &[Binding] {
        self.bindings.get(user).map_or(&[], Vec::as_slice)
    }

    /// Where a call to `user` goes: its most recently refreshed binding (forking to several contacts is not done:
    /// the newest registration is the device in use).
    pub fn lookup(&self, user: &str) -> Lookup<'_> {
        if self.config.user(user).is_none() {
            return Lookup::Unknown;
        }
        match self.bindings(user).iter().max_by_key(|b| b.expires) {
            Some(b) => Lookup::Bound(b),
            None => Lookup::NotRegistered,
        }
    }

    /// The earliest instant a binding lapses.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.bindings.values().flatten().map(|b| b.expires).min()
    }

    /// Removes the bindings that lapsed by `now`; returns them as removals.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<BindingChange> {
        self.remove_where(|b| b.expires <= now)
    }

    /// A connection closed: its bindings go with it (RFC 5626 §5.3: the flow is the way to the user; without it the
    /// user cannot be reached until it registers again on a new one).
    pub fn flow_closed(&mut self, conn: ConnId) -> Vec<BindingChange> {
        self.remove_where(|b| b.flow.conn == Some(conn))
    }

    fn remove_where(&mut self, gone: impl Fn(&Binding) -> bool) -> Vec<BindingChange> {
        let mut out = Vec::new();
        for (user, list) in &mut self.bindings {
            list.retain(|b| {
                let keep = !gone(b);
                if !keep {
                    out.push(BindingChange::removal(user, b));
                }
                keep
            });
        }
        self.bindings.retain(|_, l| !l.is_empty());
        out
    }

    /// Applies a change made elsewhere (the active's, on a standby): newer Call-ID/CSeq wins as in §10.3. A flow's
    /// connection number is the other box's: it is dropped, so a call goes to the address (a reliable transport
    /// dials it anew).
    pub fn apply(&mut self, change: BindingChange) {
        let list = self.bindings.entry(change.user.clone()).or_default();
        list.retain(|b| !change.concerns(b));
        if let Some(mut b) = change.binding {
            b.flow.conn = None;
            list.push(b);
        }
        self.bindings.retain(|_, l| !l.is_empty());
    }

    /// Every binding held, as changes that recreate it (the snapshot a standby gets on (re)connect).
    pub fn snapshot(&self) -> Vec<BindingChange> {
        let mut out: Vec<BindingChange> = self
            .bindings
            .iter()
            .flat_map(|(user, list)| {
                list.iter().map(|b| BindingChange {
                    user: user.clone(),
                    binding: Some(b.clone()),
                    contact: b.contact.clone(),
                    flow_key: b.flow_key(),
                })
            })
            .collect();
        out.sort_by(|a, b| {
            (&a.user, &a.contact, a.flow_key.as_ref().map(|k| k.reg_id)).cmp(&(
                &b.user,
                &b.contact,
                b.flow_key.as_ref().map(|k| k.reg_id),
            ))
        });
        out
    }

    fn nonce_secs(&mut self, now: Instant) -> u64 {
        let epoch = *self.nonce_epoch.get_or_insert(now);
        self.nonce_config.secs(now, epoch)
    }

    /// The issuer of our nonces; `fresh_secret` is used once when no shared secret is configured.
    fn issuer(&mut self, fresh_secret: impl FnOnce() -> String) -> &NonceIssuer {
        let shared = self.nonce_config.secret.clone();
        self.nonces.get_or_insert_with(|| {
            NonceIssuer::new(shared.unwrap_or_else(|| Secret::new(fresh_secret())), NONCE_LIFETIME_SECS)
        })
    }
}

/// Seconds left of a binding at `now`, as a Contact's `expires` parameter (at least 1 while it lives).
pub fn seconds_left(b: &Binding, now: Instant) -> u64 {
    b.expires.saturating_duration_since(now).as_secs().max(1)
}

/// How long `secs` is.
fn secs(secs: u32) -> Duration {
    Duration::from_secs(u64::from(secs))
}
