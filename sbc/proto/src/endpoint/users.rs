//! The endpoint's side of the registrar ([`crate::registrar`]): REGISTERs in, bindings expiring, connections
//! closing, bindings replicated to and applied on the standby.

use super::{Endpoint, Observation, Output};
use crate::ha::BindingRecord;
use crate::msg::Request;
use crate::registrar::BindingChange;
use crate::transport::{ConnId, Peer};
use crate::txn;
use std::time::Instant;

impl Endpoint {
    /// A REGISTER outside any dialog, on server transaction `key`, from `peer` (the flow a binding remembers).
    pub(super) fn on_register(&mut self, now: Instant, key: txn::TransactionKey, peer: Peer, req: &Request) {
        let Some(registrar) = self.registrar.as_mut() else { return };
        let ids = &mut self.ids;
        let done = registrar.handle_register(now, peer, req, || ids.call_id());
        self.observe(Observation::UserRegister { result: done.result });
        if let Some(username) = done.wrong_credentials {
            let offence = crate::policy::Offence::AuthFailed { username: Some(username) };
            self.out.push_back(Output::Offence { source: peer.remote, offence });
        }
        let resp = self.with_to_tag(done.response);
        if self.txns.respond(now, &key, resp).is_err() {
            self.observe(Observation::Dropped { reason: "response_without_transaction" });
        }
        self.drain_txns(now);
        self.binding_changes(now, done.changes);
    }

    /// Bindings made, refreshed or removed: counted, and replicated by the active of a pair.
    fn binding_changes(&mut self, now: Instant, changes: Vec<BindingChange>) {
        if changes.is_empty() {
            return;
        }
        if self.calls.replicates() {
            for c in &changes {
                self.out.push_back(Output::Replicate(c.record(now)));
            }
        }
        let active = self.registrar.as_ref().map_or(0, |r| r.active());
        self.observe(Observation::UserBindings { active });
    }

    /// Bindings whose time ran out. Each box expires its own (the standby too), so no removal record is sent.
    pub(super) fn expire_bindings(&mut self, now: Instant) {
        let Some(registrar) = self.registrar.as_mut() else { return };
        if registrar.poll_timeout().is_some_and(|at| at <= now) && !registrar.handle_timeout(now).is_empty() {
            let active = registrar.active();
            self.observe(Observation::UserBindings { active });
        }
    }

    /// A connection of a reliable transport closed (the driver tells): the users registered on it cannot be
    /// reached on it any more, so their bindings are removed (RFC 5626 §5.3), here and on the standby.
    pub fn flow_closed(&mut self, now: Instant, conn: ConnId) {
        let Some(registrar) = self.registrar.as_mut() else { return };
        let gone = registrar.flow_closed(conn);
        self.binding_changes(now, gone);
    }

    /// The bindings as records, for a standby's snapshot.
    pub(super) fn binding_records(&self, now: Instant) -> Vec<crate::ha::Record> {
        self.registrar.as_ref().map_or_else(Vec::new, |r| r.snapshot().iter().map(|c| c.record(now)).collect())
    }

    /// A binding record from the active (the standby's side): held at once, so the standby answers for the user
    /// when it takes over.
    pub(super) fn apply_binding(&mut self, now: Instant, record: &BindingRecord) {
        let Some(registrar) = self.registrar.as_mut() else { return };
        let Some(change) = BindingChange::from_record(record, now) else {
            return self.observe(Observation::Dropped { reason: "binding_record_unreadable" });
        };
        registrar.apply(change);
        let active = registrar.active();
        self.observe(Observation::UserBindings { active });
    }

    /// Bindings held now (for the admin API and tests).
    pub fn user_bindings(&self) -> usize {
        self.registrar.as_ref().map_or(0, |r| r.active())
    }
}
