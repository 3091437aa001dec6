//! What an operator asks of the calls (the admin API): a snapshot of each call, hanging one up, taking a trunk out
//! of routing and back, and which carriers a number would try. Every answer is a value; nothing here waits.

use super::{Call, CallRef, Calls, Ctx, State};
use crate::routing::{select, Selection, TrunkId};
use crate::transport::Transport;
use relay_proto::control::SessionId;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Where a call stands, as the admin API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    /// A carrier is being tried; the caller has no final answer yet.
    Setup,
    /// Answered: both legs are confirmed.
    Answered,
    /// Ending: BYEs or a CANCEL are out, waiting for their answers.
    Ending,
}

impl CallState {
    /// `setup`, `answered` or `ending` (the `state` filter of `GET /calls`).
    pub fn label(self) -> &'static str {
        match self {
            Self::Setup => "setup",
            Self::Answered => "answered",
            Self::Ending => "ending",
        }
    }
}

/// One leg of a call, as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegSnapshot {
    /// The leg's Call-ID (leg A: the caller's; leg B: ours).
    pub call_id: String,
    /// Our tag on this leg.
    pub local_tag: String,
    /// The peer's tag, once it has answered (always known on leg A).
    pub remote_tag: Option<String>,
    /// The trunk on this side.
    pub trunk: TrunkId,
    /// The transport of the leg.
    pub transport: Transport,
    /// Our address on this leg.
    pub local: SocketAddr,
    /// The peer's address.
    pub remote: SocketAddr,
}

/// One call, both legs, as it stands now.
#[derive(Debug, Clone, PartialEq)]
pub struct CallSnapshot {
    /// The call's number: the path component of `/calls/{id}`, and the media session id at the relay.
    pub id: u64,
    /// Where it stands.
    pub state: CallState,
    /// Leg A (from the caller).
    pub a: LegSnapshot,
    /// Leg B (the carrier answering or being tried), if one is tried.
    pub b: Option<LegSnapshot>,
    /// The calling number (From user of leg A).
    pub caller: String,
    /// The called number as received.
    pub called_in: String,
    /// The called number as sent to the carrier.
    pub called_out: String,
    /// The route prefix that matched (empty: the catch-all route).
    pub route_prefix: String,
    /// How long ago leg A's INVITE came.
    pub since_setup: Duration,
    /// How long ago the call was answered.
    pub since_answer: Option<Duration>,
    /// Carriers tried before the current one.
    pub failed_attempts: usize,
    /// The call's media session at the relay, when its media is anchored.
    pub media_session: Option<SessionId>,
}

/// Why a call could not be hung up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HangupError {
    /// No call has this number (it ended, or never was): nothing to do.
    #[error("no call {0}")]
    NotFound(u64),
    /// The call is already ending; it goes away when its peers answer.
    #[error("call {0} is already ending")]
    AlreadyEnding(u64),
    /// A call the peer box of a pair owns (held here as a standby's copy): hang it up there.
    #[error("call {0} belongs to the peer")]
    Foreign(u64),
}

/// A trunk name the admin API gave is not in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no trunk named {0:?}")]
pub struct UnknownTrunk(pub String);

/// Which carriers a called number would try, in order, and which it would leave out and why: the answer of
/// [`Calls::route_lookup`], made by the same selection as a real call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteLookup {
    /// The number as routes see it (separators removed, the inbound trunk's number rules applied).
    pub number: String,
    /// The route prefix that matched (empty: the catch-all route).
    pub prefix: String,
    /// The selection: usable carriers in the order this lookup drew, and those left out with their reason.
    pub selection: Selection,
    /// Priorities whose order is a weighted draw (more than one usable carrier with a weight): another lookup, or a
    /// real call, may order them differently, in proportion to the weights.
    pub drawn: Vec<u32>,
}

impl Calls {
    /// Every call in progress (foreign calls of a standby excepted), ordered by number, as of `now`.
    pub fn list(&self, now: Instant) -> Vec<CallSnapshot> {
        let mut out: Vec<CallSnapshot> = self.calls.iter().map(|(id, c)| self.snapshot_of(*id, c, now)).collect();
        out.sort_by_key(|c| c.id);
        out
    }

    /// One call by number, as of `now`.
    pub fn one(&self, id: u64, now: Instant) -> Option<CallSnapshot> {
        self.calls.get(&CallRef(id)).map(|c| self.snapshot_of(CallRef(id), c, now))
    }

    fn snapshot_of(&self, id: CallRef, call: &Call, now: Instant) -> CallSnapshot {
        let text = |b: &bytes::Bytes| String::from_utf8_lossy(b).into_owned();
        let leg = |d: &crate::dialog::Dialog, trunk: TrunkId| LegSnapshot {
            call_id: text(&d.call_id),
            local_tag: text(&d.local_tag),
            remote_tag: d.remote_tag.as_ref().map(text),
            trunk,
            transport: d.peer.transport,
            local: d.peer.local,
            remote: d.peer.remote,
        };
        let state = match call.state {
            State::Routing => CallState::Setup,
            State::Confirmed => CallState::Answered,
            State::Ending => CallState::Ending,
        };
        let media = self.media.as_ref().is_some_and(|m| m.contains(SessionId(id.0)));
        CallSnapshot {
            id: id.0,
            state,
            a: leg(&call.a, call.a_trunk),
            b: call.b.as_ref().map(|b| leg(&b.dialog, b.trunk)),
            caller: call.caller.clone(),
            called_in: call.called_in.clone(),
            called_out: call.called_out.clone(),
            route_prefix: call.route_prefix.clone(),
            since_setup: now.saturating_duration_since(call.setup),
            since_answer: call.answer.map(|a| now.saturating_duration_since(a)),
            failed_attempts: call.cdr_attempts.len(),
            media_session: media.then_some(SessionId(id.0)),
        }
    }

    /// Hangs up call `id` on an operator's word: an answered call gets a BYE on both legs, a call being set up a
    /// CANCEL to its carrier and 480 to its caller. Its CDR names release cause `admin`, released by `sbc`.
    pub fn hang_up(&mut self, ctx: &mut Ctx, id: u64) -> Result<(), HangupError> {
        let call_ref = CallRef(id);
        let Some(call) = self.calls.get_mut(&call_ref) else {
            return Err(if self.foreign.contains_key(&id) {
                HangupError::Foreign(id)
            } else {
                HangupError::NotFound(id)
            });
        };
        match call.state {
            State::Ending => Err(HangupError::AlreadyEnding(id)),
            State::Confirmed => {
                call.release = Some(("admin", "sbc", 200));
                self.end_call(ctx, call_ref, None);
                Ok(())
            }
            State::Routing => {
                self.abort_setup(ctx, call_ref, 480, "Temporarily Unavailable", ("admin", "sbc"));
                Ok(())
            }
        }
    }

    /// Takes `trunk` out of routing (`disabled`) or puts it back: a disabled trunk is skipped for new calls with
    /// reason `disabled`, counted like any skip; calls up on it are untouched. Returns whether the state changed.
    pub fn set_trunk_disabled(&mut self, trunk: TrunkId, disabled: bool) -> bool {
        let Some(d) = self.admin_disabled.get_mut(trunk.0 as usize) else { return false };
        std::mem::replace(d, disabled) != disabled
    }

    /// Whether the admin API took `trunk` out of routing.
    pub fn trunk_disabled_by_admin(&self, trunk: TrunkId) -> bool {
        self.admin_disabled.get(trunk.0 as usize).copied().unwrap_or(false)
    }

    /// Calls in progress per trunk (by `TrunkId`), in each direction: (from it, to it). One pass over the calls.
    pub fn calls_per_trunk(&self) -> Vec<(usize, usize)> {
        let mut per = vec![(0, 0); self.plan.trunks.len()];
        for c in self.calls.values() {
            if let Some(p) = per.get_mut(c.a_trunk.0 as usize) {
                p.0 += 1;
            }
            if let Some(p) = c.b.as_ref().and_then(|b| per.get_mut(b.trunk.0 as usize)) {
                p.1 += 1;
            }
        }
        per
    }

    /// The route of `number` (as routes see it) and its carriers ordered for one call at `now`: the one selection
    /// both a real call ([`Calls::new_invite`]) and [`Calls::route_lookup`] use, so they cannot disagree.
    pub(super) fn route_for(
        &self,
        number: &str,
        now: Instant,
        random: &mut impl FnMut() -> u64,
    ) -> Option<(String, Selection)> {
        let (prefix, candidates) = self.plan.route(number)?;
        let selection = select(candidates, |t| self.usable(t, now), random);
        Some((prefix.to_owned(), selection))
    }

    /// Which carriers a call to `called` (as a caller would dial it) from trunk `from` (its number rules apply;
    /// `None`: none) would try at `now`, in order, and which it would leave out and why, without placing a call.
    /// `None`: no route matches (a real call gets 404).
    pub fn route_lookup(
        &self,
        called: &str,
        from: Option<TrunkId>,
        now: Instant,
        random: &mut impl FnMut() -> u64,
    ) -> Option<RouteLookup> {
        let normal = super::normalise(called);
        let number = match from {
            Some(t) => self.plan.trunk(t).numbers_in.apply(&normal),
            None => normal,
        };
        let (prefix, selection) = self.route_for(&number, now, random)?;
        let mut drawn: Vec<u32> = Vec::new();
        for c in &selection.ordered {
            let peers = selection.ordered.iter().filter(|o| o.priority == c.priority && o.weight > 0).count();
            if peers > 1 && !drawn.contains(&c.priority) {
                drawn.push(c.priority);
            }
        }
        Some(RouteLookup { number, prefix, selection, drawn })
    }
}
