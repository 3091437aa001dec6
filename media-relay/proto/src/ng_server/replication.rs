//! NG calls in a hot-standby pair: the active's [`NgServer`] emits a versioned [`NgRecord`] when a call is
//! created or changed by `offer`/`answer`, when the relay latches a new peer, and when it is deleted (by `delete`
//! or the idle timeout); the standby keeps the newest version of each call as *foreign* and adopts them all into
//! its own sessions when it takes over ([`NgServer::take_over`]): the same ports on the service addresses, the same
//! tags, labels and latched peers, so that `query` and `delete` find them and the media goes on.

use super::{NgCall, NgServer};
use crate::control::SessionId;
use crate::sdes::SrtpMode;
use crate::session::SessionRecord;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// One NG call as replicated: what the NG core knows of it besides the relay's figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NgCallRecord {
    /// The NG `call-id`.
    pub call_id: String,
    /// Counts up with each record of the call; the standby applies newer versions only.
    pub version: u64,
    /// The relay session (from [`super::NG_SESSION_BASE`]).
    pub session: u64,
    /// Leg A's tag (the first offer's `from-tag`).
    pub from_tag: String,
    /// Leg B's tag, from the first answer.
    #[serde(default)]
    pub to_tag: Option<String>,
    /// `label` per leg.
    #[serde(default)]
    pub labels: [Option<String>; 2],
    /// `transport-protocol` asked for each leg.
    #[serde(default)]
    pub srtp: [SrtpMode; 2],
    /// The media: interfaces, ports, peers (latched included).
    pub media: SessionRecord,
}

/// What the NG core sends to the standby.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NgRecord {
    /// A call, new or changed.
    Call(Box<NgCallRecord>),
    /// The call was deleted.
    Ended {
        /// Its `call-id`.
        call_id: String,
        /// Its last version + 1.
        version: u64,
    },
}

impl NgServer {
    /// Whether calls are replicated from now on (this box is the active of a pair). Off by default: a box alone
    /// queues no record.
    pub fn set_replication(&mut self, on: bool) {
        self.replicate = on;
        if !on {
            self.records.clear();
        }
    }

    /// The next record for the standby.
    pub fn poll_record(&mut self) -> Option<NgRecord> {
        self.records.pop_front()
    }

    /// Every call as a record: the snapshot for a standby that (re)connects.
    pub fn snapshot(&self) -> Vec<NgRecord> {
        self.calls.iter().map(|(id, call)| NgRecord::Call(Box::new(self.record(id, call, call.version)))).collect()
    }

    /// A record from the active (the standby's side): the newest version of each call is kept until
    /// [`NgServer::take_over`]; a call's end forgets it.
    pub fn apply_record(&mut self, record: NgRecord) {
        match record {
            NgRecord::Call(r) => {
                if self.foreign.get(&r.call_id).is_none_or(|f| f.version < r.version) {
                    self.foreign.insert(r.call_id.clone(), *r);
                }
            }
            NgRecord::Ended { call_id, version } => {
                if self.foreign.get(&call_id).is_some_and(|f| f.version < version) {
                    self.foreign.remove(&call_id);
                }
            }
        }
    }

    /// Forgets the peer's calls (before a fresh snapshot is applied).
    pub fn clear_foreign(&mut self) {
        self.foreign.clear();
    }

    /// The peer's calls held here.
    pub fn foreign_calls(&self) -> usize {
        self.foreign.len()
    }

    /// The standby becomes active: every foreign call becomes ours, its media opened on this box's relay (the
    /// commands wait in [`NgServer::poll_command`]). Returns how many; a call whose ports are taken here is
    /// dropped and counted in [`super::NgCounters::adopt_failed`].
    pub fn take_over(&mut self, now: Instant) -> usize {
        let mut adopted = 0;
        for (call_id, r) in std::mem::take(&mut self.foreign) {
            let session = SessionId(r.session);
            if self.calls.contains_key(&call_id) || !self.sessions.adopt(now, session, r.media) {
                self.counters.adopt_failed += 1;
                continue;
            }
            self.by_session.insert(session, call_id.clone());
            self.next_session = self.next_session.max(r.session + 1);
            let call = NgCall {
                session,
                from_tag: r.from_tag,
                to_tag: r.to_tag,
                labels: r.labels,
                srtp: r.srtp,
                stats: None,
                version: r.version,
            };
            self.calls.insert(call_id, call);
            adopted += 1;
        }
        adopted
    }

    /// This box hands its calls to the peer (which holds them from the records): each becomes foreign again
    /// and its media is closed here. Returns how many.
    pub fn demote(&mut self, now: Instant) -> usize {
        let calls = std::mem::take(&mut self.calls);
        let n = calls.len();
        for (call_id, call) in calls {
            let record = self.record(&call_id, &call, call.version);
            self.by_session.remove(&call.session);
            self.sessions.remove(now, call.session);
            self.foreign.insert(call_id, record);
        }
        n
    }

    pub(super) fn replicate_call(&mut self, call_id: &str) {
        if !self.replicate {
            return;
        }
        let Some(call) = self.calls.get_mut(call_id) else { return };
        call.version += 1;
        let call = &self.calls[call_id];
        let record = self.record(call_id, call, call.version);
        self.records.push_back(NgRecord::Call(Box::new(record)));
    }

    pub(super) fn replicate_end(&mut self, call_id: &str, call: &NgCall) {
        if self.replicate {
            self.records.push_back(NgRecord::Ended { call_id: call_id.to_owned(), version: call.version + 1 });
        }
    }

    fn record(&self, call_id: &str, call: &NgCall, version: u64) -> NgCallRecord {
        NgCallRecord {
            call_id: call_id.to_owned(),
            version,
            session: call.session.0,
            from_tag: call.from_tag.clone(),
            to_tag: call.to_tag.clone(),
            labels: call.labels.clone(),
            srtp: call.srtp,
            media: self.sessions.export(call.session).unwrap_or_default(),
        }
    }
}
