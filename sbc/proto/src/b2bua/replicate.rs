//! Hot standby, the calls' side: records out of the active core at a call's transitions, foreign calls held by
//! the standby core, and the takeover that makes them its own (see [`crate::ha`]). Answered calls are adopted
//! here; calls still being set up are resumed by [`super::resume`].

use super::{kept, AckB, Call, CallRef, Calls, Ctx, Kept, Leg, LegB, State, Timer};
use crate::dialog::Dialog;
use crate::endpoint::{Observation, Output};
use crate::ha::{
    AttemptRecord, CallRecord, CandidateRecord, DialogRecord, Record, ReliableRecord, SetupRecord, CSEQ_MARGIN,
};
use crate::msg::{parse_datagram, Message, Request};
use crate::transport::{Peer, Transport};
use crate::txn::TransactionKey;
use bytes::Bytes;
use relay_proto::control::SessionId;
use std::cmp::Reverse;
use std::time::{Duration, Instant};

pub(super) fn text(b: &Bytes) -> Option<String> {
    String::from_utf8(b.to_vec()).ok()
}

pub(super) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub(super) fn dialog_record(d: &Dialog) -> Option<DialogRecord> {
    Some(DialogRecord {
        call_id: text(&d.call_id)?,
        local_tag: text(&d.local_tag)?,
        remote_tag: match &d.remote_tag {
            Some(t) => Some(text(t)?),
            None => None,
        },
        local_uri: text(&d.local_uri)?,
        remote_uri: text(&d.remote_uri)?,
        remote_target: text(&d.remote_target)?,
        route_set: d.route_set.iter().map(text).collect::<Option<_>>()?,
        local_cseq: d.local_cseq,
        transport: d.peer.transport.as_str().to_owned(),
        local: d.peer.local,
        remote: d.peer.remote,
        contact: text(&d.contact)?,
    })
}

pub(super) fn dialog_of(r: &DialogRecord) -> Option<Dialog> {
    let transport = match r.transport.as_str() {
        "udp" => Transport::Udp,
        "tcp" => Transport::Tcp,
        "tls" => Transport::Tls,
        "ws" => Transport::Ws,
        "wss" => Transport::Wss,
        _ => return None,
    };
    Some(Dialog {
        call_id: Bytes::from(r.call_id.clone()),
        local_tag: Bytes::from(r.local_tag.clone()),
        remote_tag: r.remote_tag.clone().map(Bytes::from),
        local_uri: Bytes::from(r.local_uri.clone()),
        remote_uri: Bytes::from(r.remote_uri.clone()),
        remote_target: Bytes::from(r.remote_target.clone()),
        route_set: r.route_set.iter().cloned().map(Bytes::from).collect(),
        // Requests this box sends must be above whatever the old active sent since its last record.
        local_cseq: r.local_cseq.saturating_add(CSEQ_MARGIN),
        // A connection of the old box does not exist here; UDP needs none, TCP peers reconnect.
        peer: Peer { transport, local: r.local, remote: r.remote, conn: None },
        contact: Bytes::from(r.contact.clone()),
    })
}

pub(super) fn request_of(raw: &str) -> Option<Request> {
    match parse_datagram(Bytes::from(raw.to_owned())).ok()? {
        Message::Request(r) => Some(r),
        Message::Response(_) => None,
    }
}

impl Calls {
    /// Turns replication records on: calls being set up, answered calls, their changes and their ends come out as
    /// [`Output::Replicate`].
    pub fn set_replication(&mut self, on: bool) {
        self.replicate = on;
    }

    /// Whether replication records are made (this box is the active of a pair).
    pub fn replicates(&self) -> bool {
        self.replicate
    }

    /// What resuming call `id`, being set up, needs beyond its answered record; `None` once answered or ending.
    fn setup_record(&self, call: &Call, b: &LegB, now: Instant) -> Option<SetupRecord> {
        if call.state != State::Routing {
            return None;
        }
        let candidate = |c: &crate::routing::Candidate| CandidateRecord {
            trunk: call.plan.trunk(c.trunk).name.clone(),
            priority: c.priority,
            weight: c.weight,
        };
        let current = call.attempts.current().filter(|c| c.trunk == b.trunk)?;
        Some(SetupRecord {
            a_provisional: text(&call.a_provisional.as_ref()?.to_bytes())?,
            b_sent_ms_ago: ms(now.saturating_duration_since(b.sent)),
            b_provisional: b.provisional,
            b_authed: b.authed,
            tries: call.attempts.tries(),
            current: candidate(current),
            remaining: call.attempts.remaining().iter().map(candidate).collect(),
            post_dial_in_ms: ms(call.attempts.post_dial_deadline().saturating_duration_since(now)),
            reliable: call.reliable.map(|r| ReliableRecord { rseq: r.rseq, pracked: r.pracked }),
        })
    }

    /// The record of call `id` now, if it has a leg B (answered, or being set up) and its identifiers are text.
    fn record(&self, id: CallRef, call: &Call, now: Instant) -> Option<CallRecord> {
        let b = call.b.as_ref()?;
        let ago = |t: Instant| ms(now.saturating_duration_since(t));
        let setup = match call.state {
            State::Routing => Some(self.setup_record(call, b, now)?),
            State::Confirmed => None,
            State::Ending => return None,
        };
        Some(CallRecord {
            id: id.0,
            version: call.ha_version,
            a_invite: text(&call.a_invite.to_bytes()?)?,
            a: dialog_record(&call.a)?,
            a_trunk: call.plan.trunk(call.a_trunk).name.clone(),
            b_invite: text(&b.invite.to_bytes()?)?,
            b: dialog_record(&b.dialog)?,
            b_trunk: call.plan.trunk(b.trunk).name.clone(),
            b_ack: match &b.ack {
                Some(_) => Some(text(&kept::wire(&b.ack_request()?))?),
                None => None,
            },
            caller: call.caller.clone(),
            called_in: call.called_in.clone(),
            called_routed: call.called_routed.clone(),
            called_out: call.called_out.clone(),
            route_prefix: call.route_prefix.clone(),
            attempts: call
                .cdr_attempts
                .iter()
                .map(|a| AttemptRecord { trunk: a.trunk.clone(), call_id: a.call_id.clone(), status: a.status })
                .collect(),
            setup_ms_ago: ago(call.setup),
            ringing_ms_ago: call.ringing.map(ago),
            answer_ms_ago: match (&setup, call.answer) {
                (None, Some(at)) => ago(at),
                (None, None) => return None,
                (Some(_), _) => 0,
            },
            session_expires_in_ms: call.session_expiry.map(|t| ms(t.saturating_duration_since(now))),
            media: self.media.as_ref().and_then(|m| m.export(SessionId(id.0))),
            #[cfg(feature = "format-next")]
            next: Some(format!("written by a format-{} build", crate::ha::FORMAT)),
            setup,
        })
    }

    /// Emits the current record of a call being set up or answered (a new version).
    pub(super) fn replicate_call(&mut self, ctx: &mut Ctx, id: CallRef) {
        if !self.replicate {
            return;
        }
        let Some(call) = self.calls.get_mut(&id) else { return };
        if !matches!(call.state, State::Routing | State::Confirmed) {
            return;
        }
        call.ha_version += 1;
        let Some(call) = self.calls.get(&id) else { return };
        match self.record(id, call, ctx.now) {
            Some(r) => ctx.out.push_back(Output::Replicate(Record::Call(Box::new(r)))),
            None => ctx.observe(Observation::Dropped { reason: "call_not_replicable" }),
        }
    }

    /// A call being set up began to end here (the caller cancelled, the post-dial timer, a shutdown): the
    /// standby forgets it now, as resuming it would try the next carrier once the cancelled one answers 487. Its
    /// CDR comes from this box when the carrier's INVITE ends.
    pub(super) fn replicate_setup_end(&mut self, ctx: &mut Ctx, id: CallRef) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        if self.replicate && call.ha_version > 0 {
            ctx.out.push_back(Output::Replicate(Record::Ended { id: id.0, version: call.ha_version + 1 }));
            // Said once: `finish` has nothing left to tell the standby.
            call.ha_version = 0;
        }
    }

    /// Emits the end of a call that was replicated.
    pub(super) fn replicate_end(&mut self, ctx: &mut Ctx, id: CallRef, version: u64) {
        if self.replicate && version > 0 {
            ctx.out.push_back(Output::Replicate(Record::Ended { id: id.0, version: version + 1 }));
        }
    }

    /// Every call being set up or answered, as records: the snapshot a standby gets when it (re)connects.
    pub fn snapshot(&self, now: Instant) -> Vec<Record> {
        let mut ids: Vec<&CallRef> = self.calls.keys().collect();
        ids.sort();
        ids.into_iter()
            .filter_map(|id| {
                let call = self.calls.get(id).filter(|c| matches!(c.state, State::Routing | State::Confirmed))?;
                self.record(*id, call, now).map(|r| Record::Call(Box::new(r)))
            })
            .collect()
    }

    /// A record from the active, received at `now`: kept as a foreign call if newer than what we hold. Its
    /// "ago" times are taken from `now`, so the time until a takeover still counts.
    pub fn apply_record(&mut self, now: Instant, record: Record) {
        // Not calls of the B2BUA: bans go to the edge guard, NG records to the NG core (the driver's).
        if matches!(record, Record::Ban { .. } | Record::NgCall(_) | Record::NgEnded { .. }) {
            return;
        }
        let id = record.id();
        if self.foreign.get(&id).is_some_and(|(r, _)| r.version() >= record.version()) {
            return;
        }
        self.foreign.insert(id, (record, now));
    }

    /// Foreign calls held, ended ones excluded.
    pub fn foreign_calls(&self) -> usize {
        self.foreign.values().filter(|(r, _)| matches!(r, Record::Call(_))).count()
    }

    /// Forgets every foreign call (before a resync from a new snapshot).
    pub fn clear_foreign(&mut self) {
        self.foreign.clear();
    }

    /// Takes over: every foreign call becomes ours, with its dialogs, timers, trunk counters and media. Returns how
    /// many calls were adopted; the rest (a record that no longer fits this box's config) are counted as dropped.
    /// `group`: only the calls of that group, and those of none (active/active); `None`: all.
    pub fn take_over(&mut self, ctx: &mut Ctx, group: Option<usize>) -> usize {
        let ids: Vec<u64> = self
            .foreign
            .iter()
            .filter(|(_, (r, _))| group.is_none() || self.record_group(r).is_none_or(|g| Some(g) == group))
            .map(|(id, _)| *id)
            .collect();
        let mut records: Vec<(Record, Instant)> = ids.iter().filter_map(|id| self.foreign.remove(id)).collect();
        records.sort_by_key(|(r, _)| r.id());
        let mut adopted = 0;
        for (r, received) in records {
            let Record::Call(r) = r else { continue };
            let taken = match r.setup {
                Some(_) => self.resume(ctx, &r, received),
                None => self.adopt(ctx, &r, received),
            };
            if taken.is_some() {
                adopted += 1;
            } else {
                ctx.observe(Observation::Dropped { reason: "foreign_call_not_adoptable" });
            }
        }
        adopted
    }

    /// Gives the calls up (fire drill, or yielding after a split brain): answered calls become foreign again, as
    /// the peer now owns them (no BYE, no CDR here; the peer writes it). Calls still being set up are handed over
    /// the same way when `peer_has_calls` (a handover to a peer that received their records: it resumes them, and
    /// their transactions here are dropped without a word); otherwise (a split brain: the peer never heard of them)
    /// they are refused 503 and get their CDR. Their media sockets close. Returns how many calls were handed over.
    /// `group`: only the calls of that group (active/active); `None`: all.
    pub fn demote(&mut self, ctx: &mut Ctx, peer_has_calls: bool, group: Option<usize>) -> usize {
        let ids: Vec<CallRef> = self
            .calls
            .iter()
            .filter(|(_, c)| group.is_none() || self.group_of(c.a.peer.local.ip()) == group)
            .map(|(id, _)| *id)
            .collect();
        let mut handed = 0;
        for id in ids {
            let Some(call) = self.calls.get(&id) else { continue };
            match call.state {
                State::Confirmed => {}
                State::Routing if peer_has_calls => {}
                State::Routing => {
                    self.abort_setup(ctx, id, 503, "Service Unavailable", ("demoted", "sbc"));
                    continue;
                }
                State::Ending => continue,
            }
            let Some(record) = self.record(id, call, ctx.now) else {
                if call.state == State::Routing {
                    self.abort_setup(ctx, id, 503, "Service Unavailable", ("demoted", "sbc"));
                }
                continue;
            };
            let Some(call) = self.calls.remove(&id) else { continue };
            self.by_dialog.remove(&call.a.call_id, &call.a.local_tag, (id, Leg::A));
            self.by_invite.remove(&call.a_invite_key);
            self.counters[call.a_trunk.0 as usize].end();
            if call.state == State::Routing {
                // The peer answers A and hears B from now on; these would only retransmit from an address gone.
                ctx.txns.abandon(&call.a_invite_key);
                if let Some(b) = &call.b {
                    ctx.txns.abandon(&b.invite_key);
                    self.by_client.remove(&b.invite_key);
                }
            }
            if let Some(b) = &call.b {
                self.by_dialog.remove(&b.dialog.call_id, &b.dialog.local_tag, (id, Leg::B));
                self.counters[b.trunk.0 as usize].end();
                ctx.observe(Observation::CallEnded { trunk: b.trunk });
            }
            ctx.observe(Observation::CallEnded { trunk: call.a_trunk });
            if let Some(m) = self.media.as_mut() {
                m.remove(ctx.now, SessionId(id.0));
                while let Some(cmd) = m.poll_command() {
                    ctx.out.push_back(Output::Media(cmd));
                }
            }
            self.foreign.insert(id.0, (Record::Call(Box::new(record)), ctx.now));
            handed += 1;
        }
        handed
    }

    fn adopt(&mut self, ctx: &mut Ctx, r: &CallRecord, received: Instant) -> Option<()> {
        let id = CallRef(r.id);
        if self.calls.contains_key(&id) {
            return None;
        }
        let trunk = |name: &str| self.plan.trunks.iter().position(|t| t.name == name);
        let a_trunk = crate::routing::TrunkId(u32::try_from(trunk(&r.a_trunk)?).ok()?);
        let b_trunk = crate::routing::TrunkId(u32::try_from(trunk(&r.b_trunk)?).ok()?);
        let a_invite = request_of(&r.a_invite)?;
        let b_invite = request_of(&r.b_invite)?;
        let a_invite_key = TransactionKey::for_request(&a_invite)?;
        let (mut a, mut b) = (dialog_of(&r.a)?, dialog_of(&r.b)?);
        // As the active box keeps an answered call's dialogs ([`Dialog::compact`]).
        a.compact();
        b.compact();
        let at = |ago: u64| received.checked_sub(Duration::from_millis(ago)).unwrap_or(received);
        let answer = at(r.answer_ms_ago);
        let plan = self.plan.clone();
        let limits = crate::routing::FailoverLimits { max_tries: plan.max_tries, max_post_dial: plan.max_post_dial };
        let (mut attempts, _) = crate::routing::Attempts::start(Vec::new(), limits, at(r.setup_ms_ago));
        attempts.on_outcome(crate::routing::Outcome::Answered, &plan.trunk(b_trunk).failover, ctx.now);
        let call = Call {
            plan: std::sync::Arc::clone(&plan),
            state: State::Confirmed,
            a,
            a_trunk,
            // Answered: kept in their wire form, as the active box keeps them ([`super::kept`]).
            a_invite: Kept::Wire(super::kept::wire(&a_invite)),
            a_invite_key,
            b: Some(LegB {
                dialog: b,
                trunk: b_trunk,
                // An answered call fails over no more: which gateway it was set up through does not matter.
                gateway: 0,
                invite_key: TransactionKey::for_request(&b_invite)?,
                invite: Kept::Wire(super::kept::wire(&b_invite)),
                sent: at(r.setup_ms_ago),
                provisional: true,
                cancel_wanted: false,
                cancel_sent: false,
                authed: true,
                ack: r.b_ack.as_deref().and_then(request_of).map(|a| AckB::Wire(super::kept::wire(&a))),
            }),
            attempts,
            called_in: r.called_in.clone(),
            called_routed: r.called_routed.clone(),
            called_out: r.called_out.clone(),
            caller: r.caller.clone(),
            presented: Default::default(),
            route_prefix: r.route_prefix.clone(),
            cdr_attempts: r
                .attempts
                .iter()
                .map(|a| crate::cdr::CdrAttempt {
                    trunk: a.trunk.clone(),
                    call_id: a.call_id.clone(),
                    status: a.status,
                })
                .collect(),
            setup: at(r.setup_ms_ago),
            ringing: r.ringing_ms_ago.map(at),
            answer: Some(answer),
            pending_2xx: None,
            a_provisional: None,
            reliable: None,
            release: None,
            byes: 0,
            ended: None,
            session_expiry: r.session_expires_in_ms.map(|ms| received + Duration::from_millis(ms)),
            ha_version: r.version,
            b_gateways: Vec::new(),
        };
        if let Some(media) = &r.media {
            let m = self.media.as_mut()?;
            if !m.adopt(ctx.now, SessionId(r.id), media.clone()) {
                ctx.observe(Observation::MediaError { reason: "adopt_failed" });
            }
            while let Some(cmd) = m.poll_command() {
                ctx.out.push_back(Output::Media(cmd));
            }
        }
        self.by_dialog.insert(&call.a.call_id, &call.a.local_tag, (id, Leg::A));
        let b = call.b.as_ref()?;
        self.by_dialog.insert(&b.dialog.call_id, &b.dialog.local_tag, (id, Leg::B));
        self.counters[a_trunk.0 as usize].start(ctx.now);
        self.counters[b_trunk.0 as usize].start(ctx.now);
        ctx.observe(Observation::CallAdopted { trunk_in: a_trunk, trunk_out: b_trunk });
        if let Some(max) = plan.max_duration {
            self.timers.push(Reverse(((answer + max).max(ctx.now), id, Timer::MaxDuration)));
        }
        if let Some(every) = plan.keepalive {
            self.timers.push(Reverse((ctx.now + every, id, Timer::Keepalive)));
        }
        if let Some(at) = call.session_expiry {
            self.timers.push(Reverse((at, id, Timer::SessionExpiry)));
        }
        self.saw_id(r.id);
        self.calls.insert(id, Box::new(call));
        Some(())
    }
}
