//! Hot standby: a call that was still being set up on the box that failed, resumed here (see [`crate::ha`]). It
//! comes back in `State::Routing` with its indexes, both INVITE transactions re-created from the recorded messages,
//! its post-dial timer and its failover state, so that what the peers do next (the carrier answers, fails or
//! times out; the caller cancels or sends PRACK) is handled as on the box that failed: a 200 connects the call
//! with the original setup and ringing times in its CDR, a failure tries the next carrier.

use super::replicate::{dialog_of, request_of};
use super::{presented_by, Call, CallRef, Calls, Ctx, Kept, Leg, LegB, Purpose, Reliable, State, Timer};
use crate::endpoint::{Observation, Output};
use crate::ha::{CallRecord, CandidateRecord};
use crate::msg::{parse_datagram, Message, Response};
use crate::routing::{Attempts, Candidate, FailoverLimits, TrunkId};
use bytes::Bytes;
use relay_proto::control::SessionId;
use std::cmp::Reverse;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn response_of(raw: &str) -> Option<Response> {
    match parse_datagram(Bytes::from(raw.to_owned())).ok()? {
        Message::Response(r) => Some(r),
        Message::Request(_) => None,
    }
}

impl Calls {
    /// Resumes call `r` (a record with its setup section) received at `received`; `None` when the record does not
    /// fit this box (an unknown trunk, a message that does not parse, a call number in use).
    pub(super) fn resume(&mut self, ctx: &mut Ctx, r: &CallRecord, received: Instant) -> Option<()> {
        let setup = r.setup.as_ref()?;
        let id = CallRef(r.id);
        if self.calls.contains_key(&id) {
            return None;
        }
        let plan = Arc::clone(&self.plan);
        let trunk_id = |name: &str| {
            let i = plan.trunks.iter().position(|t| t.name == name)?;
            u32::try_from(i).ok().map(TrunkId)
        };
        let candidate = |c: &CandidateRecord| {
            Some(Candidate { trunk: trunk_id(&c.trunk)?, priority: c.priority, weight: c.weight })
        };
        let (a_trunk, b_trunk) = (trunk_id(&r.a_trunk)?, trunk_id(&r.b_trunk)?);
        let current = candidate(&setup.current).filter(|c| c.trunk == b_trunk)?;
        // A carrier this box's config does not know is left out of the rest of the route.
        let remaining: Vec<Candidate> = setup.remaining.iter().filter_map(candidate).collect();
        let a_invite = request_of(&r.a_invite)?;
        let b_invite = request_of(&r.b_invite)?;
        let a_provisional = response_of(&setup.a_provisional)?;
        let (a, b) = (dialog_of(&r.a)?, dialog_of(&r.b)?);
        let at = |ago: u64| received.checked_sub(Duration::from_millis(ago)).unwrap_or(received);
        let (setup_at, b_sent) = (at(r.setup_ms_ago), at(setup.b_sent_ms_ago));

        // Everything parsed: the transactions now. Leg B's times out where it would have on the other box.
        let a_invite_key = ctx.txns.adopt_server_invite(a.peer, a_invite.clone(), a_provisional.clone()).ok()?;
        let b_key = match ctx.txns.adopt_client_invite(
            ctx.now,
            b.peer,
            b_invite.clone(),
            setup.b_provisional,
            b_sent + 64 * ctx.t1,
        ) {
            Ok(k) => k,
            Err(_) => {
                ctx.txns.abandon(&a_invite_key);
                return None;
            }
        };
        if let Some(media) = &r.media {
            if let Some(m) = self.media.as_mut() {
                if !m.adopt(ctx.now, SessionId(r.id), media.clone()) {
                    ctx.observe(Observation::MediaError { reason: "adopt_failed" });
                }
                while let Some(cmd) = m.poll_command() {
                    ctx.out.push_back(Output::Media(cmd));
                }
            }
        }
        let limits = FailoverLimits { max_tries: plan.max_tries, max_post_dial: plan.max_post_dial };
        let attempts = Attempts::resume(remaining, limits, setup_at, setup.tries.saturating_sub(1), current, b_sent);
        // The calling identity is not in the record: it follows from A's INVITE and trunk A's rules, as it did
        // there, and shapes the INVITE to the next carrier should this one fail.
        let mut presented = presented_by(&a_invite);
        presented.rewrite(&plan.trunk(a_trunk).numbers_in);
        let call = Call {
            plan: Arc::clone(&plan),
            state: State::Routing,
            a,
            a_trunk,
            a_invite: Kept::new(a_invite),
            a_invite_key: a_invite_key.clone(),
            b: Some(LegB {
                // The record names the carrier's address, not the gateway's index: the one it matches, so that a
                // transport error after the takeover tries the trunk's next gateway.
                gateway: plan
                    .trunk(b_trunk)
                    .gateways
                    .iter()
                    .position(|g| g.addr == b.peer.remote && g.transport == b.peer.transport)
                    .unwrap_or(0),
                dialog: b,
                trunk: b_trunk,
                invite: Kept::new(b_invite),
                invite_key: b_key.clone(),
                sent: b_sent,
                provisional: setup.b_provisional,
                cancel_wanted: false,
                cancel_sent: false,
                authed: setup.b_authed,
                ack: None,
            }),
            attempts,
            called_in: r.called_in.clone(),
            called_routed: r.called_routed.clone(),
            called_out: r.called_out.clone(),
            caller: r.caller.clone(),
            presented,
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
            setup: setup_at,
            ringing: r.ringing_ms_ago.map(at),
            answer: None,
            pending_2xx: None,
            a_provisional: Some(Box::new(a_provisional)),
            reliable: setup.reliable.map(|r| Reliable { rseq: r.rseq, pracked: r.pracked }),
            release: None,
            byes: 0,
            ended: None,
            session_expiry: None,
            ha_version: r.version,
            // The configured gateways, as the index above counts them (a DNS target is not recorded: a transport
            // error after the takeover goes on to the next carrier).
            b_gateways: plan.trunk(b_trunk).gateways.iter().map(|&g| (g, false)).collect(),
        };
        self.by_dialog.insert(&call.a.call_id, &call.a.local_tag, (id, Leg::A));
        if let Some(b) = &call.b {
            self.by_dialog.insert(&b.dialog.call_id, &b.dialog.local_tag, (id, Leg::B));
        }
        self.by_invite.insert(a_invite_key, id);
        self.by_client.insert(b_key, (id, Purpose::InviteB));
        self.counters[a_trunk.0 as usize].start(ctx.now);
        self.counters[b_trunk.0 as usize].start(ctx.now);
        ctx.observe(Observation::CallResumed { trunk_in: a_trunk, trunk_out: b_trunk });
        let post_dial = received + Duration::from_millis(setup.post_dial_in_ms);
        self.timers.push(Reverse((post_dial.max(ctx.now), id, Timer::PostDial)));
        self.saw_id(r.id);
        self.calls.insert(id, Box::new(call));
        Some(())
    }
}
