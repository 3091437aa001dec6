//! Calls from and to registered users ([`crate::registrar`]): the users form one pseudo-trunk. A call from a user
//! is known by its digest username and checked against that user's password; a call routed to the pseudo-trunk goes
//! to the called user's binding, on the flow it registered on.

use super::{Calls, Ctx};
use crate::msg::Request;
use crate::registrar::{Lookup, RegistrarConfig};
use crate::routing::{Credentials, Gateway, TrunkId};
use crate::transport::Peer;
use bytes::Bytes;
use std::sync::Arc;

impl Calls {
    /// Registered users, when configured.
    pub fn set_users(&mut self, users: Option<Arc<RegistrarConfig>>) {
        self.users = users;
    }

    /// Whether users are configured: then an INVITE nobody else claims is challenged, for it may be a user's.
    pub fn has_users(&self) -> bool {
        self.users.as_ref().is_some_and(|u| !u.users.is_empty())
    }

    /// Whether `trunk` is the users' pseudo-trunk.
    pub(super) fn is_users_trunk(&self, trunk: TrunkId) -> bool {
        self.users.as_ref().is_some_and(|u| u.trunk == trunk)
    }

    /// The users' trunk, when `username` is a user's.
    pub(super) fn user_trunk(&self, username: &str) -> Option<TrunkId> {
        self.users.as_ref().filter(|u| u.user(username).is_some()).map(|u| u.trunk)
    }

    /// The credentials an INVITE on `trunk` must carry when it is the users' trunk: those of the user named in
    /// its Proxy-Authorization.
    pub(super) fn user_credentials(&self, trunk: TrunkId, req: &Request) -> Option<Credentials> {
        let users = self.users.as_ref().filter(|u| u.trunk == trunk)?;
        let username = super::proxy_credentials(req)?.username;
        let user = users.user(&username)?;
        Some(Credentials { username: user.name.clone(), password: user.password.clone() })
    }

    /// Where leg B of call `id` goes when `trunk` is the users' trunk: `Ok(None)` for any other trunk, the flow of
    /// the called user's binding as a gateway, or the status of a user that cannot be called (404 unknown, 480 not
    /// registered).
    pub(super) fn user_gateway(&self, ctx: &Ctx, id: super::CallRef, trunk: TrunkId) -> Result<Option<Gateway>, u16> {
        let (Some(users), Some(call)) = (self.users.as_ref(), self.calls.get(&id)) else { return Ok(None) };
        if users.trunk != trunk {
            return Ok(None);
        }
        let called = call.plan.trunk(trunk).numbers_out.apply(&call.called_routed);
        match ctx.users.map_or(Lookup::Unknown, |r| r.lookup(&called)) {
            Lookup::Unknown => Err(404),
            Lookup::NotRegistered => Err(480),
            Lookup::Bound(b) => Ok(Some(Gateway { transport: b.flow.transport, addr: b.flow.remote })),
        }
    }

    /// The flow and Contact of `called`'s binding when `trunk` is the users' trunk.
    pub(super) fn user_flow(
        ctx: &Ctx,
        users: Option<&RegistrarConfig>,
        trunk: TrunkId,
        called: &str,
    ) -> Option<(Peer, Bytes)> {
        users.filter(|u| u.trunk == trunk)?;
        match ctx.users?.lookup(called) {
            Lookup::Bound(b) => Some((b.flow, b.contact.clone())),
            Lookup::Unknown | Lookup::NotRegistered => None,
        }
    }
}
