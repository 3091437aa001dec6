//! The driver's side of the admin API: the requests it answers, between two inputs, from the core it owns. Each
//! answer is a value copied out of the core; nothing here waits.

use relay_proto::control::{Command, SessionId, SessionStats};
use sbc_proto::b2bua::{CallSnapshot, HangupError, RouteLookup, UnknownTrunk};
use sbc_proto::endpoint::admin::TrunkStatus;
use sbc_proto::endpoint::Endpoint;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Trunk names by `TrunkId`, as the core's plan has them when the answer was made.
pub type TrunkNames = Arc<[String]>;

/// One question or command of the admin API for the driver.
#[derive(Debug)]
pub enum Request {
    /// Every call in progress.
    Calls {
        /// Where the answer goes.
        reply: oneshot::Sender<(Vec<CallSnapshot>, TrunkNames)>,
    },
    /// One call by number.
    Call {
        /// The call's number.
        id: u64,
        /// Where the answer goes.
        reply: oneshot::Sender<(Option<CallSnapshot>, TrunkNames)>,
    },
    /// Hang a call up (CDR cause `admin`).
    Hangup {
        /// The call's number.
        id: u64,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<(), HangupError>>,
    },
    /// Every trunk's state.
    Trunks {
        /// Where the answer goes.
        reply: oneshot::Sender<Vec<TrunkStatus>>,
    },
    /// Take a trunk out of routing or put it back.
    SetTrunk {
        /// The trunk's name.
        name: String,
        /// Back in routing (true) or out (false).
        enabled: bool,
        /// Where the answer goes: whether the state changed.
        reply: oneshot::Sender<Result<bool, UnknownTrunk>>,
    },
    /// Which carriers a number would try.
    Route {
        /// The called number.
        number: String,
        /// The inbound trunk whose number rules apply.
        from: Option<String>,
        /// Where the answer goes.
        reply: oneshot::Sender<(Result<Option<RouteLookup>, UnknownTrunk>, TrunkNames)>,
    },
    /// A live call's media figures from the relay.
    Figures {
        /// The call's media session.
        session: SessionId,
        /// Where the relay's answer goes; dropped when media is not anchored.
        reply: oneshot::Sender<SessionStats>,
    },
}

/// Admin requests waiting for the relay's figures of a session.
#[derive(Debug, Default)]
pub struct FigureWaiters(HashMap<SessionId, Vec<oneshot::Sender<SessionStats>>>);

impl FigureWaiters {
    /// The relay's figures came: every request waiting for them gets them.
    pub fn answer(&mut self, stats: SessionStats) {
        for w in self.0.remove(&stats.session).unwrap_or_default() {
            let _ = w.send(stats);
        }
    }
}

fn names(endpoint: &Endpoint) -> TrunkNames {
    endpoint.calls().plan().trunks.iter().map(|t| t.name.clone()).collect()
}

/// Answers `req` from `endpoint`; a hangup leaves outputs in the core, flushed by the driver's loop as usual.
/// `relay` is where a figures query goes; `waiters` keeps it until the relay answers.
pub fn handle(
    endpoint: &mut Endpoint,
    relay: Option<&crate::media_link::MediaLink>,
    waiters: &mut FigureWaiters,
    req: Request,
) {
    let now = std::time::Instant::now();
    // A requester that gave up (timed out) finds its answer dropped: nothing to do about it here.
    match req {
        Request::Calls { reply } => {
            let _ = reply.send((endpoint.calls_snapshot(now), names(endpoint)));
        }
        Request::Call { id, reply } => {
            let _ = reply.send((endpoint.call_snapshot(id, now), names(endpoint)));
        }
        Request::Hangup { id, reply } => {
            let result = endpoint.hang_up(now, id);
            if result.is_ok() {
                tracing::info!(call = id, "call hung up by the admin API");
            }
            let _ = reply.send(result);
        }
        Request::Trunks { reply } => {
            let _ = reply.send(endpoint.trunk_status(now));
        }
        Request::SetTrunk { name, enabled, reply } => {
            let result = endpoint.set_trunk_enabled(&name, enabled);
            if result == Ok(true) {
                let v = if enabled { 0.0 } else { 1.0 };
                metrics::gauge!(crate::metrics::TRUNK_ADMIN_DISABLED, "trunk" => name.clone()).set(v);
                let what = if enabled { "back in routing" } else { "out of routing (disabled)" };
                tracing::warn!(trunk = %name, "trunk {what} by the admin API");
            }
            let _ = reply.send(result);
        }
        Request::Route { number, from, reply } => {
            let lookup = endpoint.route_lookup(&number, from.as_deref(), now);
            let _ = reply.send((lookup, names(endpoint)));
        }
        Request::Figures { session, reply } => {
            let Some(relay) = relay else { return };
            // Requests whose relay never answered (a remote relay away) have timed out by now: forget them.
            waiters.0.retain(|_, w| {
                w.retain(|r| !r.is_closed());
                !w.is_empty()
            });
            relay.send(Command::Query { session });
            waiters.0.entry(session).or_default().push(reply);
        }
    }
}
