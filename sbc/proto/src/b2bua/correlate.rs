//! Which call a message belongs to, for captures (HEP): both legs of a call are known by leg A's Call-ID, since leg
//! B has a Call-ID of its own (topology hiding).

use super::{Calls, Leg};
use crate::msg::{HeaderName, Message};
use bytes::Bytes;

impl Calls {
    /// Leg A's Call-ID when `msg` is of a leg B of a call in progress (found by its Call-ID and our tag in From or
    /// To, whichever side sent it); `None` for any other message, leg A's included.
    pub fn leg_a_call_id(&self, msg: &Message) -> Option<Bytes> {
        let headers = msg.headers();
        let call_id = headers.get_bytes(&HeaderName::CallId)?;
        let tags = [headers.from().ok(), headers.to().ok()];
        tags.iter().flatten().filter_map(|a| a.tag()).find_map(|tag| match self.find_dialog(&call_id, tag) {
            Some((id, Leg::B)) => self.calls.get(&id).map(|c| c.a.call_id.clone()),
            _ => None,
        })
    }
}
