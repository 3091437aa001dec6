//! Calls whose peer is reachable only over one connection (a WebSocket client, RFC 7118): when that connection
//! closes, the peer is gone, and its calls end at once instead of waiting for a keepalive or media timeout.

use super::{CallRef, Calls, Leg, State};
use crate::b2bua::Ctx;
use crate::transport::ConnId;

/// The release cause of a call ended because its peer's connection closed (CDR `release_cause`).
pub const CONNECTION_CLOSED: &str = "connection_closed";

impl Calls {
    /// The flow-bound connection `conn` closed (see `Transport::is_flow_bound`): every call with a leg on it ends.
    /// A confirmed call gets a BYE on its other leg only; one being set up is refused towards leg A (487 when leg
    /// A went, which nobody reads; 480 when leg B went) and leg B is cancelled. CDRs say [`CONNECTION_CLOSED`],
    /// released by the leg whose connection closed. Returns how many calls were ended.
    pub fn connection_closed(&mut self, ctx: &mut Ctx, conn: ConnId) -> usize {
        let on_conn = |peer: &crate::transport::Peer| peer.transport.is_flow_bound() && peer.conn == Some(conn);
        let hit: Vec<(CallRef, Leg)> = self
            .calls
            .iter()
            .filter_map(|(id, c)| {
                if on_conn(&c.a.peer) {
                    Some((*id, Leg::A))
                } else if c.b.as_ref().is_some_and(|b| on_conn(&b.dialog.peer)) {
                    Some((*id, Leg::B))
                } else {
                    None
                }
            })
            .collect();
        for &(id, leg) in &hit {
            let Some(call) = self.calls.get_mut(&id) else { continue };
            match call.state {
                State::Routing => {
                    let (status, reason) = match leg {
                        Leg::A => (487, "Request Terminated"),
                        Leg::B => (480, "Temporarily Unavailable"),
                    };
                    self.abort_setup(ctx, id, status, reason, (CONNECTION_CLOSED, leg.label()));
                }
                State::Confirmed => {
                    call.release = Some((CONNECTION_CLOSED, leg.label(), 200));
                    self.end_call(ctx, id, Some(leg));
                }
                // BYEs are out already; the one to the closed leg fails or times out and the call finishes.
                State::Ending => {}
            }
        }
        hit.len()
    }
}
